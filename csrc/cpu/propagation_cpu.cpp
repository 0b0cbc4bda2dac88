#include "propagation_cpu.h"

#include <algorithm>
#include <vector>

#include "../utils.h"

namespace {

// A row costs its gathered neighbours plus writing its own d outputs; weighting the row count this
// way keeps long runs of low-degree rows (most users) from all landing on one thread while a few
// hub items fill the others.
constexpr int64_t kRowCost = 4;
// Below this much work per part the OpenMP fork costs more than it saves.
constexpr int64_t kMinPartCost = 1 << 14;
// Parts are claimed dynamically (parallel_for_chunks); a few dozen per thread keep the tail short.
constexpr int64_t kPartsPerThread = 32;
// Gathers issued ahead of use; ~a memory latency worth of 64-float rows.
constexpr int64_t kPrefetch = 12;

template <typename index_t>
int64_t row_cost_prefix(const index_t* rowptr, int64_t r) {
  return static_cast<int64_t>(rowptr[r]) + kRowCost * r;
}

// Row boundaries of n_parts chunks of roughly equal nnz (+ row) cost: binary search on the monotone
// prefix cost instead of equal row counts, because power-law degrees make equal row counts badly
// unbalanced (one part gets the hub items).
template <typename index_t>
std::vector<int64_t> balanced_row_splits(const index_t* rowptr, int64_t n_rows) {
  const int64_t total = row_cost_prefix(rowptr, n_rows);
  const int64_t n_parts =
      std::max<int64_t>(1, std::min<int64_t>(kPartsPerThread * at::get_num_threads(), total / kMinPartCost));
  std::vector<int64_t> splits(n_parts + 1, n_rows);
  splits[0] = 0;
  for (int64_t p = 1; p < n_parts; ++p) {
    const int64_t target = total / n_parts * p;
    int64_t lo = splits[p - 1], hi = n_rows;
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (row_cost_prefix(rowptr, mid) < target) lo = mid + 1; else hi = mid;
    }
    splits[p] = lo;
  }
  return splits;
}

// One pass over the rows of A_hat: acc = sum_j val_j * x[col_j] in the op-math type, then hand the
// finished row to `epilogue(row, acc)`, which decides where it goes (plain output, running mean,
// Horner step). Rows of x may be strided so that layer k of an [N, K+1, d] stack is read in place.
// kD > 0 fixes the feature width at compile time so the accumulator lives in registers.
template <int kD, typename scalar_t, typename index_t, typename Epilogue>
void csr_sweep_impl(const index_t* rowptr, const index_t* col, const at::opmath_type<scalar_t>* val,
                    const scalar_t* x, int64_t x_row_stride, int64_t n_rows, int64_t dyn_d,
                    const Epilogue& epilogue) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t d = kD > 0 ? kD : dyn_d;
  TORCH_CHECK_VALUE(rowptr[0] == 0, "rowptr[0] must be 0, got ", static_cast<int64_t>(rowptr[0]));
  const auto splits = balanced_row_splits(rowptr, n_rows);
  const int64_t nnz = rowptr[n_rows];
  const int64_t row_bytes = d * static_cast<int64_t>(sizeof(scalar_t));
  parallel_for_chunks(static_cast<int64_t>(splits.size()) - 1, [&](int64_t part) {
    std::vector<acc_t> acc_buffer(kD > 0 ? kD : d);
    acc_t* __restrict__ acc = acc_buffer.data();
    for (int64_t r = splits[part]; r < splits[part + 1]; ++r) {
      const int64_t e0 = rowptr[r], e1 = rowptr[r + 1];
      // Every row's range is checked before it is read: the ends alone (rowptr[0] == 0, rowptr[-1] == nnz) do
      // not bound a row in the middle, and another thread may not have reached the row that breaks the order.
      TORCH_CHECK_VALUE(0 <= e0 && e0 <= e1 && e1 <= nnz, "rowptr must be non-decreasing from 0 to nnz = ", nnz,
                        ", violated at row ", r, " (rowptr[", r, "] = ", e0, ", rowptr[", r + 1, "] = ", e1, ")");
      for (int64_t k = 0; k < d; ++k) acc[k] = acc_t(0);
      for (int64_t e = e0; e < e1; ++e) {
        const int64_t c = static_cast<int64_t>(col[e]);
        TORCH_CHECK_VALUE(static_cast<uint64_t>(c) < static_cast<uint64_t>(n_rows), "col[", e, "] = ", c,
                          " is out of range [0, ", n_rows, ")");
        // The gathers are random rows of a table larger than the private caches: issue the loads of
        // the row kPrefetch edges ahead so that several misses are in flight (hardware prefetchers
        // cannot predict indirect addresses).
        if (e + kPrefetch < nnz) {
          const char* ahead = reinterpret_cast<const char*>(x + static_cast<int64_t>(col[e + kPrefetch]) * x_row_stride);
          for (int64_t line = 0; line < row_bytes; line += 64) __builtin_prefetch(ahead + line);
        }
        const acc_t w = val[e];
        const scalar_t* __restrict__ xr = x + c * x_row_stride;
#pragma omp simd
        for (int64_t k = 0; k < d; ++k) acc[k] += w * static_cast<acc_t>(xr[k]);
      }
      epilogue(r, static_cast<const acc_t*>(acc));
    }
  });
}

template <typename scalar_t, typename index_t, typename Epilogue>
void csr_sweep(const index_t* rowptr, const index_t* col, const at::opmath_type<scalar_t>* val,
               const scalar_t* x, int64_t x_row_stride, int64_t n_rows, int64_t d, const Epilogue& epilogue) {
  if (d == 64) {
    csr_sweep_impl<64>(rowptr, col, val, x, x_row_stride, n_rows, d, epilogue);
  } else {
    csr_sweep_impl<0>(rowptr, col, val, x, x_row_stride, n_rows, d, epilogue);
  }
}

struct Csr {
  at::Tensor rowptr, col, val;  // val already in the op-math type of the features
};

Csr prepare(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& val, const at::Tensor& x) {
  check_csr_graph(rowptr, col, val);
  check_node_features(rowptr, val, x);
  CHECK_CPU(rowptr);
  CHECK_CPU(x);
  const auto acc_type = at::toOpMathType(x.scalar_type());
  Csr g{rowptr.contiguous(), col.contiguous(), val.to(acc_type).contiguous()};
  check_csr_ends(g.rowptr, g.col.numel());
  return g;
}

#define HNLM_DISPATCH_CSR(x, rowptr, name, ...)                                                 \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, (x).scalar_type(), \
                                  name, [&] { AT_DISPATCH_INDEX_TYPES((rowptr).scalar_type(), name, __VA_ARGS__); })

}  // namespace

at::Tensor spmm_cpu(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& val, const at::Tensor& x) {
  const auto g = prepare(rowptr, col, val, x);
  const auto xc = x.contiguous();
  const int64_t n = xc.size(0), d = xc.size(1);
  auto out = zeros_large_cpu(xc.sizes(), xc.options());
  if (n == 0 || d == 0) return out;
  HNLM_DISPATCH_CSR(xc, g.rowptr, "spmm_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    scalar_t* y = out.data_ptr<scalar_t>();
    csr_sweep(g.rowptr.data_ptr<index_t>(), g.col.data_ptr<index_t>(), g.val.data_ptr<acc_t>(),
              xc.data_ptr<scalar_t>(), d, n, d, [&](int64_t r, const acc_t* acc) {
                scalar_t* yr = y + r * d;
                for (int64_t k = 0; k < d; ++k) yr[k] = static_cast<scalar_t>(acc[k]);
              });
  });
  return out;
}

at::Tensor lightgcn_mean_cpu(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& val,
                             const at::Tensor& ego, int64_t num_layers) {
  TORCH_CHECK(num_layers >= 0, "num_layers must be >= 0, got ", num_layers);
  const auto g = prepare(rowptr, col, val, ego);
  const auto ego_c = ego.contiguous();
  if (num_layers == 0) return ego_c.clone();
  const int64_t n = ego_c.size(0), d = ego_c.size(1);
  auto out = zeros_large_cpu(ego_c.sizes(), ego_c.options());
  if (n == 0 || d == 0) return out;
  const auto acc_type = at::toOpMathType(ego_c.scalar_type());
  // The running sum needs op-math precision; for float/double the output itself is that buffer.
  auto sum = acc_type == ego_c.scalar_type() ? out : zeros_large_cpu(ego_c.sizes(), ego_c.options().dtype(acc_type));
  // Two ping-pong layer buffers are enough for any K: layer k is read once, by layer k+1.
  at::Tensor layer_buffers[2];
  for (int i = 0; i < 2 && i < num_layers - 1; ++i) layer_buffers[i] = zeros_large_cpu(ego_c.sizes(), ego_c.options());

  HNLM_DISPATCH_CSR(ego_c, g.rowptr, "lightgcn_mean_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t scale = acc_t(1) / static_cast<acc_t>(num_layers + 1);
    const scalar_t* ego_ptr = ego_c.data_ptr<scalar_t>();
    acc_t* sum_ptr = sum.data_ptr<acc_t>();
    scalar_t* out_ptr = out.data_ptr<scalar_t>();
    const scalar_t* cur = ego_ptr;
    for (int64_t layer = 1; layer <= num_layers; ++layer) {
      const bool first = layer == 1, last = layer == num_layers;
      scalar_t* next = last ? nullptr : layer_buffers[(layer - 1) % 2].data_ptr<scalar_t>();
      csr_sweep(g.rowptr.data_ptr<index_t>(), g.col.data_ptr<index_t>(), g.val.data_ptr<acc_t>(), cur, d, n, d,
                [&](int64_t r, const acc_t* acc) {
                  const int64_t off = r * d;
                  if (!last) {
                    for (int64_t k = 0; k < d; ++k) next[off + k] = static_cast<scalar_t>(acc[k]);
                  }
                  acc_t* s = sum_ptr + off;
                  if (first && last) {
                    for (int64_t k = 0; k < d; ++k)
                      out_ptr[off + k] = static_cast<scalar_t>((static_cast<acc_t>(ego_ptr[off + k]) + acc[k]) * scale);
                  } else if (first) {
                    for (int64_t k = 0; k < d; ++k) s[k] = static_cast<acc_t>(ego_ptr[off + k]) + acc[k];
                  } else if (last) {
                    for (int64_t k = 0; k < d; ++k) out_ptr[off + k] = static_cast<scalar_t>((s[k] + acc[k]) * scale);
                  } else {
                    for (int64_t k = 0; k < d; ++k) s[k] += acc[k];
                  }
                });
      cur = next;
    }
  });
  return out;
}

at::Tensor lightgcn_layers_cpu(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& val,
                               const at::Tensor& ego, int64_t num_layers) {
  TORCH_CHECK(num_layers >= 0, "num_layers must be >= 0, got ", num_layers);
  const auto g = prepare(rowptr, col, val, ego);
  const auto ego_c = ego.contiguous();
  const int64_t n = ego_c.size(0), d = ego_c.size(1), width = num_layers + 1;
  auto out = zeros_large_cpu({n, width, d}, ego_c.options());
  if (n == 0 || d == 0) return out;
  out.select(1, 0).copy_(ego_c);
  HNLM_DISPATCH_CSR(ego_c, g.rowptr, "lightgcn_layers_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    scalar_t* stack = out.data_ptr<scalar_t>();
    for (int64_t layer = 1; layer <= num_layers; ++layer) {
      scalar_t* dst = stack + layer * d;
      csr_sweep(g.rowptr.data_ptr<index_t>(), g.col.data_ptr<index_t>(), g.val.data_ptr<acc_t>(),
                stack + (layer - 1) * d, width * d, n, d, [&](int64_t r, const acc_t* acc) {
                  scalar_t* yr = dst + r * width * d;
                  for (int64_t k = 0; k < d; ++k) yr[k] = static_cast<scalar_t>(acc[k]);
                });
    }
  });
  return out;
}

at::Tensor lightgcn_layers_backward_cpu(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& val,
                                        const at::Tensor& grad_layers) {
  CHECK_DIM(grad_layers, 3);
  TORCH_CHECK(grad_layers.size(1) >= 1, "grad_layers must have K+1 >= 1 layers, got shape ",
              grad_layers.sizes());
  const auto grads_c = grad_layers.contiguous();
  const auto g = prepare(rowptr, col, val, grads_c.select(1, 0));
  const int64_t n = grads_c.size(0), width = grads_c.size(1), d = grads_c.size(2);
  const int64_t num_layers = width - 1;
  if (num_layers == 0 || n == 0 || d == 0) return grads_c.select(1, 0).clone(at::MemoryFormat::Contiguous);
  auto out = zeros_large_cpu({n, d}, grads_c.options());
  at::Tensor buffers[2];
  for (int i = 0; i < 2 && i < num_layers - 1; ++i) buffers[i] = zeros_large_cpu(out.sizes(), out.options());

  HNLM_DISPATCH_CSR(grads_c, g.rowptr, "lightgcn_layers_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* grads = grads_c.data_ptr<scalar_t>();
    // Horner: h_K = g_K (read in place from the stack), h_k = g_k + A_hat h_{k+1}, result h_0.
    const scalar_t* h = grads + num_layers * d;
    int64_t h_stride = width * d;
    for (int64_t layer = num_layers - 1; layer >= 0; --layer) {
      scalar_t* dst =
          layer == 0 ? out.data_ptr<scalar_t>() : buffers[(num_layers - 1 - layer) % 2].data_ptr<scalar_t>();
      const scalar_t* g_layer = grads + layer * d;
      csr_sweep(g.rowptr.data_ptr<index_t>(), g.col.data_ptr<index_t>(), g.val.data_ptr<acc_t>(), h, h_stride, n, d,
                [&](int64_t r, const acc_t* acc) {
                  const scalar_t* gr = g_layer + r * width * d;
                  scalar_t* yr = dst + r * d;
                  for (int64_t k = 0; k < d; ++k) yr[k] = static_cast<scalar_t>(static_cast<acc_t>(gr[k]) + acc[k]);
                });
      h = dst;
      h_stride = d;
    }
  });
  return out;
}
