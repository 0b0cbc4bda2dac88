// CUDA kernels of the propagation ops (schemas in csrc/module.cpp; CPU twin csrc/cpu/propagation_cpu.cpp;
// reference recbole_hnlm/ops/reference.py). One SpMM kernel serves all four ops:
//
//   out[r, :] (+)= sum_{e in row r} val[e] * x[col[e], :]
//
// Scheduling copes with power-law degrees by splitting *edges*, not rows: warp w owns the edge range
// [w*E, (w+1)*E) (E = kEdgesPerWarp) whatever rows it crosses, finds its first row by binary search on rowptr,
// and walks the rows of its range. A row that lies wholly inside the range is stored; a row cut by a range
// boundary (a hub item spans hundreds of warps) is added with atomics into the zero-initialised output. So a hub of
// degree 1,700 costs ~27 warps of equal work instead of one warp doing 1,700 serial gathers.
//
// The order of those atomic adds is not fixed, so with three or more pieces a cut row's float sum can differ in its
// last bits from run to run. Under torch.use_deterministic_algorithms(True) the cut rows are summed in a fixed order
// instead, in two launches: the warp holding a cut row's first edge (its leader) stores its piece, every later warp
// of the row writes its piece to a carry buffer ([warps, d], op-math type), and spmm_carry_kernel then adds the
// carries to the leader's piece in warp order. Bitwise reproducible at the cost of a second, short launch and the
// carry traffic: one op-math row per 64 edges, filled with NaN by torch (deterministic mode fills new tensors),
// written and read, ~5 % of the gathered bytes in float32, ~9 % in bf16.
//
// Lanes hold VEC consecutive features each (float4 / float2 loads, or 4-16 byte loads of half/bfloat16, when
// aligned); 32*VEC features per pass, more passes for wider rows. Accumulation is in the op-math type (float for
// half/bfloat16, double for double).
//
// The layer ops compose this kernel with ATen element-wise ops, exactly as the CPU kernels compose their sweep:
//   lightgcn_mean     sum = E0; E_k = A E_{k-1} (rounded to the feature dtype, as on the CPU); mean = sum/(K+1)
//   lightgcn_layers   stack[:, k] = A stack[:, k-1], written in place (strided)
//   ..._backward      Horner: h_K = g_K, h_k = g_k + A h_{k+1} (A_hat symmetric), result h_0
// Nothing but the graph is saved for backward (autograd lives in recbole_hnlm/ops/propagation.py).

#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "utils.cuh"

namespace {

using namespace hnlm_cuda;

constexpr int64_t kEdgesPerWarp = 64;
// Gathers a warp issues before it adds them (see the edge loop of spmm_edge_split_kernel).
constexpr int kUnroll = 4;

template <typename index_t>
__device__ __forceinline__ int64_t first_row_containing(const index_t* __restrict__ rowptr, int64_t n_rows,
                                                        int64_t edge) {
  // largest r with rowptr[r] <= edge (then rowptr[r + 1] > edge because rowptr is non-decreasing)
  int64_t lo = 0, hi = n_rows;  // answer in [0, n_rows - 1]
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (static_cast<int64_t>(rowptr[mid]) <= edge) lo = mid; else hi = mid - 1;
  }
  return lo;
}

template <typename scalar_t, typename acc_t, typename index_t, int VEC, int GROUPS>
__global__ void __launch_bounds__(kBlock) spmm_edge_split_kernel(
    const index_t* __restrict__ rowptr, const index_t* __restrict__ col, const acc_t* __restrict__ val,
    const scalar_t* __restrict__ x, int64_t x_stride, acc_t* __restrict__ out, int64_t out_stride,
    acc_t* __restrict__ carry, const index_t* __restrict__ warp_rows, bool batched_tail, int64_t n_rows, int64_t nnz,
    int64_t d) {
  // carry == nullptr: cut rows are added with atomics; otherwise a cut row's leader stores and the rest write carries.
  // warp_rows (RECBOLE_HNLM_SPMM_SHORT_CHAINS): each warp's first row, read instead of found by a binary search (~17
  // dependent loads at Yelp2018 size); batched_tail: a row's last < kUnroll edges issue their gathers together.
  // Neither changes the order of the adds, so the sums are the same bits.
  // GROUPS > 1 splits the warp into GROUPS groups of kLanes lanes that gather different edges of the same row (group g
  // takes edges g, g + GROUPS, ...), so one load instruction fetches GROUPS rows; the groups' sums are then added by
  // a butterfly in a fixed order (deterministic, but not the bits of GROUPS = 1).
  constexpr int kLanes = kWarp / GROUPS;
  const int64_t warp = global_warp();
  const int lane = lane_id();
  const int group = lane / kLanes, sub = lane % kLanes;
  const int64_t e0 = warp * kEdgesPerWarp;
  if (e0 >= nnz) return;
  const int64_t e1 = min(nnz, e0 + kEdgesPerWarp);
  const int64_t row0 = warp_rows != nullptr ? static_cast<int64_t>(warp_rows[warp])
                                             : first_row_containing(rowptr, n_rows, e0);

  const int64_t passes = ceil_div(d, kLanes * VEC);  // 1 pass for d = 64 (float2, or float4 with 2 groups)
  for (int64_t pass = 0; pass < passes; ++pass) {
    // every lane runs every pass (uniform trip counts keep the warp converged on the col/val loads)
    const int64_t f0 = (pass * kLanes + sub) * VEC;
    const bool active = f0 < d;
    int64_t r = row0;
    int64_t e = e0;
    while (e < e1) {
      while (static_cast<int64_t>(rowptr[r + 1]) <= e) ++r;  // skip empty rows
      const int64_t row_begin = rowptr[r], row_end_all = rowptr[r + 1];
      const int64_t row_end = min(row_end_all, e1);
      acc_t acc[VEC];
#pragma unroll
      for (int i = 0; i < VEC; ++i) acc[i] = acc_t(0);
      // kUnroll edges at a time: their index loads, then their row gathers, are issued back to back, so a warp
      // has kUnroll gathers in flight instead of one (the gathers are latency-bound: too few warps per SM to hide a
      // DRAM round trip each). The sum keeps its edge order, so results are bitwise those of one edge at a time.
      int64_t k = e + group;
      for (; k + (kUnroll - 1) * GROUPS < row_end; k += kUnroll * GROUPS) {
        int64_t c[kUnroll];
        acc_t w[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          c[u] = static_cast<int64_t>(col[k + u * GROUPS]);
          w[u] = val[k + u * GROUPS];
          CUDA_KERNEL_ASSERT(c[u] >= 0 && c[u] < n_rows);
        }
        if (active) {
          acc_t v[kUnroll][VEC];
#pragma unroll
          for (int u = 0; u < kUnroll; ++u) load_vec<scalar_t, acc_t, VEC>(x + c[u] * x_stride + f0, v[u]);
#pragma unroll
          for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
            for (int i = 0; i < VEC; ++i) acc[i] += w[u] * v[u][i];
          }
        }
      }
      if (batched_tail && k < row_end) {  // the < kUnroll edges left, their index loads and gathers issued together
        const int64_t left = ceil_div(row_end - k, GROUPS);
        int64_t c[kUnroll - 1];
        acc_t w[kUnroll - 1];
#pragma unroll
        for (int u = 0; u < kUnroll - 1; ++u) {  // positions past the row repeat its last edge: loaded, never added
          const int64_t edge = min(k + u * GROUPS, row_end - 1);
          c[u] = static_cast<int64_t>(col[edge]);
          w[u] = val[edge];
          CUDA_KERNEL_ASSERT(c[u] >= 0 && c[u] < n_rows);
        }
        if (active) {
          acc_t v[kUnroll - 1][VEC];
#pragma unroll
          for (int u = 0; u < kUnroll - 1; ++u) load_vec<scalar_t, acc_t, VEC>(x + c[u] * x_stride + f0, v[u]);
#pragma unroll
          for (int u = 0; u < kUnroll - 1; ++u) {
            if (u < left) {
#pragma unroll
              for (int i = 0; i < VEC; ++i) acc[i] += w[u] * v[u][i];
            }
          }
        }
        k = row_end;
      }
      for (; k < row_end; k += GROUPS) {
        const int64_t c = static_cast<int64_t>(col[k]);
        CUDA_KERNEL_ASSERT(c >= 0 && c < n_rows);
        const acc_t w = val[k];
        if (active) {
          acc_t v[VEC];
          load_vec<scalar_t, acc_t, VEC>(x + c * x_stride + f0, v);
#pragma unroll
          for (int i = 0; i < VEC; ++i) acc[i] += w * v[i];
        }
      }
      e = row_end;
      if constexpr (GROUPS > 1) {  // every lane gets the sum over the groups (the lanes are converged again here)
#pragma unroll
        for (int offset = kLanes; offset < kWarp; offset *= 2) {
#pragma unroll
          for (int i = 0; i < VEC; ++i) acc[i] += __shfl_xor_sync(0xffffffffu, acc[i], offset);
        }
      }
      if (active && group == 0) {
        acc_t* dst = out + r * out_stride + f0;
        if (row_begin >= e0 && row_end_all <= e1) {
#pragma unroll
          for (int i = 0; i < VEC; ++i) dst[i] = acc[i];
        } else if (carry == nullptr) {  // the row continues in a neighbouring warp's range
#pragma unroll
          for (int i = 0; i < VEC; ++i) gpuAtomicAdd(dst + i, acc[i]);
        } else {  // deterministic: the leader (the row starts in this range) stores, a later warp writes its carry
          acc_t* piece = row_begin >= e0 ? dst : carry + warp * d + f0;  // only row0 can start before e0
#pragma unroll
          for (int i = 0; i < VEC; ++i) piece[i] = acc[i];
        }
      }
    }
  }
}

// Second launch of the deterministic SpMM: warp w leads the row holding its last edge if that row starts in w's range
// and continues past it; it adds the carries of the warps w+1, w+2, ... that the row spans, in that order.
template <typename acc_t, typename index_t>
__global__ void __launch_bounds__(kBlock) spmm_carry_kernel(
    const index_t* __restrict__ rowptr, const acc_t* __restrict__ carry, acc_t* __restrict__ out, int64_t out_stride,
    int64_t n_rows, int64_t nnz, int64_t d) {
  const int64_t warp = global_warp();
  const int lane = lane_id();
  const int64_t e0 = warp * kEdgesPerWarp;
  if (e0 >= nnz) return;
  const int64_t e1 = min(nnz, e0 + kEdgesPerWarp);
  const int64_t r = first_row_containing(rowptr, n_rows, e1 - 1);
  const int64_t row_begin = rowptr[r], row_end = rowptr[r + 1];
  if (row_begin < e0 || row_end <= e1) return;  // this warp leads no cut row
  const int64_t last_warp = (row_end - 1) / kEdgesPerWarp;
  for (int64_t k = lane; k < d; k += kWarp) {
    acc_t sum = out[r * out_stride + k];
    for (int64_t w = warp + 1; w <= last_warp; ++w) sum += carry[w * d + k];
    out[r * out_stride + k] = sum;
  }
}

struct CsrCuda {
  at::Tensor rowptr, col, val;  // val in the op-math type of the features
  int64_t nnz;
  at::Tensor warp_rows;  // RECBOLE_HNLM_SPMM_SHORT_CHAINS: the first row of each warp's edge range, else undefined
};

// RECBOLE_HNLM_SPMM_SHORT_CHAINS=1 shortens each warp's chain of dependent loads (spmm_edge_split_kernel: the warps'
// first rows from a table, the row tails' gathers issued together; the same bits). An experiment for the GPU
// benchmark, read at every call, until a measurement picks the default (docs/performance.md).
bool spmm_short_chains() {
  const char* value = std::getenv("RECBOLE_HNLM_SPMM_SHORT_CHAINS");
  if (value == nullptr || *value == '\0') return false;
  const std::string text(value);
  TORCH_CHECK(text == "0" || text == "1", "RECBOLE_HNLM_SPMM_SHORT_CHAINS must be 0 or 1, got '", text, "'");
  return text == "1";
}

// The rowptr checks read values from the device: three host synchronisations per op call, each of which also drains
// the launch queue (a LightGCN step calls the ops twice per batch). So a rowptr tensor that passed is remembered, by
// a weak reference and its version counter, and later calls on the same unmodified tensor skip the checks. Any
// in-place change through PyTorch bumps the version and the tensor is checked again; writes that bypass the version
// counter (through `.data`, a storage alias made with `set_`, DLPack, other libraries' kernels) are not seen.
// Inference tensors have no version counter, and a non-contiguous rowptr is copied on every call: both are always
// checked.
class CheckedRowptrs {
 public:
  static bool cacheable(const at::Tensor& rowptr) { return !rowptr.is_inference() && rowptr.is_contiguous(); }

  bool contains(const at::Tensor& rowptr, int64_t nnz) {
    if (!cacheable(rowptr)) return false;
    const std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& entry : entries_) {
      if (entry.nnz == nnz && entry.version == rowptr._version() &&
          entry.impl.lock().get() == rowptr.unsafeGetTensorImpl())
        return true;
    }
    return false;
  }

  // `version`: the tensor's version when its checks began (a change during them is then seen next time)
  void add(const at::Tensor& rowptr, int64_t version, int64_t nnz) {
    const std::lock_guard<std::mutex> lock(mutex_);
    if (entries_.size() == kCapacity) entries_.erase(entries_.begin());
    entries_.push_back({Weak(rowptr.getIntrusivePtr()), version, nnz});
  }

 private:
  using Weak = c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>;
  struct Entry {
    Weak impl;
    int64_t version, nnz;
  };
  static constexpr size_t kCapacity = 16;  // graphs in use at once (train/eval graphs, SGL's two views, ...)
  std::mutex mutex_;
  std::vector<Entry> entries_;
};

CheckedRowptrs& checked_rowptrs() {
  static CheckedRowptrs instance;
  return instance;
}

CsrCuda prepare_cuda(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& val, const at::Tensor& x) {
  check_csr_graph(rowptr, col, val);
  check_node_features(rowptr, val, x);
  CHECK_CUDA(rowptr);
  CHECK_CUDA(x);
  const auto acc_type = at::toOpMathType(x.scalar_type());
  CsrCuda g{rowptr.contiguous(), col.contiguous(), val.to(acc_type).contiguous(), col.numel()};
  if (!checked_rowptrs().contains(rowptr, g.nnz)) {
    const bool remember = CheckedRowptrs::cacheable(rowptr);
    const int64_t version = remember ? rowptr._version() : 0;
    check_csr_ends(g.rowptr, g.nnz);
    // the CPU sweep checks this row by row; here one reduction (a decreasing rowptr would give wrong sums silently)
    TORCH_CHECK_VALUE(g.rowptr.numel() < 2 || (g.rowptr.slice(0, 1) >= g.rowptr.slice(0, 0, -1)).all().item<bool>(),
                      "rowptr must be non-decreasing");
    if (remember) checked_rowptrs().add(rowptr, version, g.nnz);
  }
  if (spmm_short_chains() && g.nnz > 0) {  // largest r with rowptr[r] <= e for every warp's first edge e
    const auto starts = at::arange(0, g.nnz, kEdgesPerWarp, g.rowptr.options());
    g.warp_rows = at::searchsorted(g.rowptr, starts, /*out_int32=*/g.rowptr.scalar_type() == at::kInt,
                                   /*right=*/true).sub_(1);
  }
  return g;
}

template <typename scalar_t, typename index_t, int VEC, int GROUPS>
void launch_spmm(const CsrCuda& g, const at::Tensor& x, int64_t x_stride, const at::Tensor& out, int64_t out_stride,
                 int64_t n, int64_t d) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t warps = ceil_div(g.nnz, kEdgesPerWarp);
  // the carry kernel reads only rows that the first launch wrote (torch's NaN fill of new tensors in deterministic
  // mode would show any other read in the tests)
  const at::Tensor carry = at::globalContext().deterministicAlgorithms()
      ? at::empty({warps, d}, out.options()) : at::Tensor();
  acc_t* carry_ptr = carry.defined() ? carry.data_ptr<acc_t>() : nullptr;
  launch_kernel(spmm_edge_split_kernel<scalar_t, acc_t, index_t, VEC, GROUPS>, blocks_for_warps(warps), kBlock,
                g.rowptr.data_ptr<index_t>(), g.col.data_ptr<index_t>(), g.val.data_ptr<acc_t>(),
                x.data_ptr<scalar_t>(), x_stride, out.data_ptr<acc_t>(), out_stride, carry_ptr,
                g.warp_rows.defined() ? g.warp_rows.data_ptr<index_t>() : nullptr, g.warp_rows.defined(), n, g.nnz,
                d);
  if (carry_ptr != nullptr)
    launch_kernel(spmm_carry_kernel<acc_t, index_t>, blocks_for_warps(warps), kBlock, g.rowptr.data_ptr<index_t>(),
                  static_cast<const acc_t*>(carry_ptr), out.data_ptr<acc_t>(), out_stride, n, g.nnz, d);
}

// Rows a warp gathers per load instruction (spmm_edge_split_kernel's GROUPS): 1, unless the environment variable
// RECBOLE_HNLM_SPMM_GROUPS asks for 2 or 4 (float and 16-bit features). An experiment for the GPU benchmark, read at
// every call, until a measurement picks the default (docs/performance.md).
int spmm_groups() {
  const char* value = std::getenv("RECBOLE_HNLM_SPMM_GROUPS");
  if (value == nullptr || *value == '\0') return 1;
  const std::string text(value);
  TORCH_CHECK(text == "1" || text == "2" || text == "4", "RECBOLE_HNLM_SPMM_GROUPS must be 1, 2 or 4, got '", text,
              "'");
  return text[0] - '0';
}

// Vector loads for float (float2 / float4) and half/bfloat16 (4, 8 or 16 bytes) rows that allow them, sized for the
// kWarp / GROUPS lanes of a group, and GROUPS from RECBOLE_HNLM_SPMM_GROUPS; double rows load element-wise with one
// group (the setting is still checked).
template <typename scalar_t, typename index_t>
void launch_spmm_vectorised(const CsrCuda& g, const at::Tensor& x, int64_t x_stride, const at::Tensor& out,
                            int64_t out_stride, int64_t n, int64_t d) {
  const int groups = spmm_groups();
  if constexpr (std::is_same<scalar_t, float>::value || is_16bit_float<scalar_t>) {
    with_groups(groups, [&](auto groups_c) {
      constexpr int kGroups = decltype(groups_c)::value;
      const int vec = vector_width(d, {{x.data_ptr(), x_stride}, {out.data_ptr(), out_stride}}, sizeof(scalar_t),
                                   kWarp / kGroups);
      with_vector_width<scalar_t>(vec, [&](auto vec_c) {
        launch_spmm<scalar_t, index_t, decltype(vec_c)::value, kGroups>(g, x, x_stride, out, out_stride, n, d);
      });
    });
  } else {
    (void)groups;
    launch_spmm<scalar_t, index_t, 1, 1>(g, x, x_stride, out, out_stride, n, d);
  }
}

// out (op-math dtype, zero-filled, rows `out_stride` apart) += A_hat x (rows of x `x_stride` apart).
void spmm_into(const CsrCuda& g, const at::Tensor& x, int64_t x_stride, const at::Tensor& out, int64_t out_stride) {
  const int64_t n = g.rowptr.numel() - 1, d = x.size(-1);
  if (n == 0 || d == 0 || g.nnz == 0) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, x.scalar_type(), "spmm_cuda", [&] {
    AT_DISPATCH_INDEX_TYPES(g.rowptr.scalar_type(), "spmm_cuda_index", [&] {
      launch_spmm_vectorised<scalar_t, index_t>(g, x, x_stride, out, out_stride, n, d);
    });
  });
}

at::Tensor zeros_acc(int64_t n, int64_t d, const at::Tensor& like) {
  return at::zeros({n, d}, like.options().dtype(at::toOpMathType(like.scalar_type())));
}

// The zeroed accumulator of step `step` of a layer sweep whose next step reads this step's result. Float features
// read the accumulator itself, so two buffers take turns; bf16/half read a rounded copy, so one buffer is reused.
at::Tensor& sweep_accumulator(at::Tensor (&buffers)[2], int64_t step, int64_t n, int64_t d, const at::Tensor& like) {
  const bool read_in_place = at::toOpMathType(like.scalar_type()) == like.scalar_type();
  auto& acc = buffers[read_in_place ? step % 2 : 0];
  if (acc.defined()) acc.zero_(); else acc = zeros_acc(n, d, like);
  return acc;
}

}  // namespace

at::Tensor spmm_cuda(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& val, const at::Tensor& x) {
  const DeviceGuard guard(x.device());
  const auto g = prepare_cuda(rowptr, col, val, x);
  const auto xc = x.contiguous();
  const int64_t n = xc.size(0), d = xc.size(1);
  auto acc = zeros_acc(n, d, xc);
  spmm_into(g, xc, d, acc, d);
  return acc.scalar_type() == xc.scalar_type() ? acc : acc.to(xc.scalar_type());
}

at::Tensor lightgcn_mean_cuda(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& val,
                              const at::Tensor& ego, int64_t num_layers) {
  TORCH_CHECK(num_layers >= 0, "num_layers must be >= 0, got ", num_layers);
  const DeviceGuard guard(ego.device());
  const auto g = prepare_cuda(rowptr, col, val, ego);
  const auto ego_c = ego.contiguous();
  if (num_layers == 0) return ego_c.clone();
  const int64_t n = ego_c.size(0), d = ego_c.size(1);
  const auto acc_type = at::toOpMathType(ego_c.scalar_type());
  auto sum = ego_c.to(acc_type, /*non_blocking=*/false, /*copy=*/true);
  at::Tensor cur = ego_c;
  at::Tensor buffers[2];
  for (int64_t layer = 1; layer <= num_layers; ++layer) {
    auto& next = sweep_accumulator(buffers, layer - 1, n, d, ego_c);
    spmm_into(g, cur, d, next, d);
    sum.add_(next);
    // the next layer reads E_k in the feature dtype, as the CPU kernel does (the reference chain keeps float32)
    cur = next.scalar_type() == ego_c.scalar_type() ? next : next.to(ego_c.scalar_type());
  }
  return sum.div_(static_cast<double>(num_layers + 1)).to(ego_c.scalar_type());
}

at::Tensor lightgcn_layers_cuda(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& val,
                                const at::Tensor& ego, int64_t num_layers) {
  TORCH_CHECK(num_layers >= 0, "num_layers must be >= 0, got ", num_layers);
  const DeviceGuard guard(ego.device());
  const auto g = prepare_cuda(rowptr, col, val, ego);
  const auto ego_c = ego.contiguous();
  const int64_t n = ego_c.size(0), d = ego_c.size(1), width = num_layers + 1;
  auto stack = at::zeros({n, width, d}, ego_c.options());
  if (n == 0 || d == 0) return stack;
  stack.select(1, 0).copy_(ego_c);
  const bool direct = at::toOpMathType(ego_c.scalar_type()) == ego_c.scalar_type();
  at::Tensor scratch = direct ? at::Tensor() : zeros_acc(n, d, ego_c);
  for (int64_t layer = 1; layer <= num_layers; ++layer) {
    const auto src = stack.select(1, layer - 1);  // strided view [n, d], row stride width*d
    if (direct) {
      spmm_into(g, src, width * d, stack.select(1, layer), width * d);  // in place, zero-initialised
    } else {
      if (layer > 1) scratch.zero_();
      spmm_into(g, src, width * d, scratch, d);
      stack.select(1, layer).copy_(scratch);  // bf16/half stack: rounded once per layer
    }
  }
  return stack;
}

at::Tensor lightgcn_layers_backward_cuda(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& val,
                                         const at::Tensor& grad_layers) {
  CHECK_DIM(grad_layers, 3);
  TORCH_CHECK(grad_layers.size(1) >= 1, "grad_layers must have K+1 >= 1 layers, got shape ", grad_layers.sizes());
  const DeviceGuard guard(grad_layers.device());
  const auto grads = grad_layers.contiguous();
  const auto g = prepare_cuda(rowptr, col, val, grads.select(1, 0));
  const int64_t n = grads.size(0), width = grads.size(1), d = grads.size(2), num_layers = width - 1;
  if (num_layers == 0 || n == 0 || d == 0) return grads.select(1, 0).clone(at::MemoryFormat::Contiguous);
  at::Tensor h = grads.select(1, num_layers);  // strided view
  int64_t h_stride = width * d;
  at::Tensor buffers[2];  // float: h_{k+1} is read from one while h_k is summed into the other (no copy per layer)
  for (int64_t layer = num_layers - 1, step = 0; layer >= 0; --layer, ++step) {
    auto& acc = sweep_accumulator(buffers, step, n, d, grads);
    spmm_into(g, h, h_stride, acc, d);
    acc.add_(grads.select(1, layer));
    h = acc.scalar_type() == grads.scalar_type() ? acc : acc.to(grads.scalar_type());  // bf16/half: rounded per layer
    h_stride = d;
  }
  return h;
}

TORCH_LIBRARY_IMPL(HNLM_CUDA_LIBRARY, HNLM_CUDA_DISPATCH_KEY, m) {
  m.impl("spmm", &spmm_cuda);
  m.impl("lightgcn_mean", &lightgcn_mean_cuda);
  m.impl("lightgcn_layers", &lightgcn_layers_cuda);
  m.impl("lightgcn_layers_backward", &lightgcn_layers_backward_cuda);
}
