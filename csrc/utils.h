#pragma once

#include "extensions.h"

#include <algorithm>
#include <atomic>

#if defined(__linux__)
#include <sys/mman.h>
#endif

// Every message names the offending argument, so a failing call from Python reads like
// "candidates must be int64, got Int" instead of an ATen-internal error.

#define CHECK_CPU(x) TORCH_CHECK((x).device().is_cpu(), #x " must be a CPU tensor, got device ", (x).device())
#define CHECK_CUDA(x) TORCH_CHECK((x).device().is_cuda(), #x " must be a CUDA tensor, got device ", (x).device())
#define CHECK_CONTIGUOUS(x) TORCH_CHECK((x).is_contiguous(), #x " must be contiguous")
#define CHECK_INPUT(x) \
  CHECK_CUDA(x);       \
  CHECK_CONTIGUOUS(x)
#define CHECK_DIM(x, n) TORCH_CHECK((x).dim() == (n), #x " must be ", (n), "-D, got shape ", (x).sizes())
#define CHECK_SIZE(x, dim, n) \
  TORCH_CHECK((x).size(dim) == (n), #x ".size(", (dim), ") must be ", (n), ", got shape ", (x).sizes())
#define CHECK_SHAPE(x, ...)                                              \
  TORCH_CHECK((x).sizes() == at::IntArrayRef({__VA_ARGS__}),             \
              #x " must have shape (" #__VA_ARGS__ ") = ", at::IntArrayRef({__VA_ARGS__}), ", got ", (x).sizes())
#define CHECK_FLOATING(x)                                                                        \
  TORCH_CHECK(at::isFloatingType((x).scalar_type()), #x " must be a floating tensor (float32, " \
              "float64, bfloat16 or float16), got ", (x).scalar_type())
#define CHECK_INDEX_DTYPE(x)                                                                                \
  TORCH_CHECK((x).scalar_type() == at::kInt || (x).scalar_type() == at::kLong, #x " must be int32 or int64, " \
              "got ", (x).scalar_type())
#define CHECK_LONG(x) TORCH_CHECK((x).scalar_type() == at::kLong, #x " must be int64, got ", (x).scalar_type())
#define CHECK_SAME_DTYPE(x, y)                                                                           \
  TORCH_CHECK((x).scalar_type() == (y).scalar_type(), #x " and " #y " must have the same dtype, got ", \
              (x).scalar_type(), " and ", (y).scalar_type())
#define CHECK_SAME_DEVICE(x, y)                                                                                 \
  TORCH_CHECK((x).device() == (y).device(), #x " and " #y " must be on the same device, got ", (x).device(), \
              " and ", (y).device())

// Shape/dtype contracts shared by every backend (CPU now, CUDA later), so that both reject the
// same inputs with the same messages. Value-range checks that need a pass over the data (column
// indices of the graph, candidate ids) stay inside the kernels, where the data is read anyway.

inline void check_csr_graph(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& val) {
  CHECK_DIM(rowptr, 1);
  CHECK_DIM(col, 1);
  CHECK_DIM(val, 1);
  CHECK_INDEX_DTYPE(rowptr);
  CHECK_SAME_DTYPE(rowptr, col);
  CHECK_FLOATING(val);
  TORCH_CHECK(rowptr.numel() >= 1, "rowptr must have num_nodes + 1 >= 1 entries");
  TORCH_CHECK(col.numel() == val.numel(), "col and val must have the same length (nnz), got ", col.numel(),
              " and ", val.numel());
  CHECK_SAME_DEVICE(rowptr, col);
  CHECK_SAME_DEVICE(rowptr, val);
}

inline void check_node_features(const at::Tensor& rowptr, const at::Tensor& val, const at::Tensor& x) {
  CHECK_FLOATING(x);
  CHECK_DIM(x, 2);
  CHECK_SIZE(x, 0, rowptr.numel() - 1);
  CHECK_SAME_DEVICE(rowptr, x);
  TORCH_CHECK(val.scalar_type() == x.scalar_type() || val.scalar_type() == at::kFloat,
              "val must be float32 or have the dtype of the features, got ", val.scalar_type(), " and ",
              x.scalar_type());
}

inline void check_candidates(const at::Tensor& items, const at::Tensor& candidates, int64_t batch) {
  CHECK_LONG(candidates);
  CHECK_DIM(candidates, 2);
  CHECK_SIZE(candidates, 0, batch);
  TORCH_CHECK(candidates.size(1) >= 1, "candidates must have at least one column (M >= 1), got shape ",
              candidates.sizes());
  CHECK_SAME_DEVICE(items, candidates);
}

// rowptr[0] == 0 and rowptr[-1] == nnz (reads two entries; on CUDA, two small device-to-host copies).
// Checks of the graph's and the candidates' contents raise c10::ValueError / c10::IndexError (Python ValueError /
// IndexError), what the PyTorch fallback raises for the same input; shape and dtype checks raise RuntimeError.
inline void check_csr_ends(const at::Tensor& rowptr, int64_t nnz) {
  TORCH_CHECK_VALUE(nnz == 0 || rowptr.numel() > 1, "a graph with nnz > 0 must have at least one node");
  const int64_t first = rowptr[0].item<int64_t>(), last = rowptr[-1].item<int64_t>();
  TORCH_CHECK_VALUE(first == 0, "rowptr[0] must be 0, got ", first);
  TORCH_CHECK_VALUE(last == nnz, "rowptr[-1] must equal nnz = ", nnz, ", got ", last);
}

// mixgcf_mix(query, pos_layers, item_layers, candidates, alpha): shapes and dtypes (not the device).
inline void check_mixgcf_mix_args(const at::Tensor& query, const at::Tensor& pos_layers, const at::Tensor& item_layers,
                                  const at::Tensor& candidates, const at::Tensor& alpha) {
  CHECK_DIM(pos_layers, 3);
  const int64_t B = pos_layers.size(0), L = pos_layers.size(1), d = pos_layers.size(2);
  TORCH_CHECK(L >= 1, "pos_layers must have at least one layer (L >= 1), got shape ", pos_layers.sizes());
  TORCH_CHECK(query.dim() == 2 || query.dim() == 3, "query must be [B, d] or [B, L, d], got shape ",
              query.sizes());
  if (query.dim() == 2) {
    CHECK_SHAPE(query, B, d);
  } else {
    CHECK_SHAPE(query, B, L, d);
  }
  CHECK_DIM(item_layers, 3);
  CHECK_SIZE(item_layers, 1, L);
  CHECK_SIZE(item_layers, 2, d);
  CHECK_SHAPE(alpha, B, L);
  CHECK_FLOATING(pos_layers);
  CHECK_FLOATING(alpha);
  CHECK_SAME_DTYPE(query, pos_layers);
  CHECK_SAME_DTYPE(item_layers, pos_layers);
  check_candidates(item_layers, candidates, B);
  for (const auto* t : {&query, &item_layers, &alpha}) CHECK_SAME_DEVICE(pos_layers, (*t));
}

// mixgcf_mix_backward(grad_z, chosen, alpha, num_items): shapes and dtypes (not the device).
inline void check_mixgcf_backward_args(const at::Tensor& grad_z, const at::Tensor& chosen, const at::Tensor& alpha,
                                       int64_t num_items) {
  CHECK_DIM(grad_z, 3);
  CHECK_FLOATING(grad_z);
  CHECK_FLOATING(alpha);  // an integer alpha read as 0 (the Python wrapper refuses it before the op)
  CHECK_LONG(chosen);
  CHECK_SHAPE(chosen, grad_z.size(0), grad_z.size(1));
  CHECK_SHAPE(alpha, grad_z.size(0), grad_z.size(1));
  TORCH_CHECK(num_items >= 0, "num_items must be >= 0, got ", num_items);
  CHECK_SAME_DEVICE(grad_z, chosen);
  CHECK_SAME_DEVICE(grad_z, alpha);
}

// candidate_scores / select_candidates(user, items, candidates[, target]): shapes and dtypes (not the device).
inline void check_scoring_args(const at::Tensor& user, const at::Tensor& items, const at::Tensor& candidates,
                               const c10::optional<at::Tensor>& maybe_target = c10::nullopt) {
  CHECK_DIM(user, 2);
  CHECK_DIM(items, 2);
  CHECK_FLOATING(user);
  CHECK_SAME_DTYPE(user, items);
  CHECK_SIZE(items, 1, user.size(1));
  check_candidates(items, candidates, user.size(0));
  CHECK_SAME_DEVICE(user, items);
  if (maybe_target.has_value() && maybe_target->defined()) {
    const at::Tensor& target = *maybe_target;
    CHECK_FLOATING(target);
    CHECK_SHAPE(target, user.size(0));
    CHECK_SAME_DEVICE(user, target);
  }
}

// A zero-filled CPU tensor. Buffers of several MB (layer stacks, the [I, L, d] item gradient) are mapped
// directly with transparent huge pages: glibc serves them with a fresh mmap on every call, and faulting
// them in 4 KB pages cost more than the kernels that fill them (e.g. 64 ms for a 71 MB stack on the
// 2-core CI VM vs 8 ms to write it). Fresh anonymous pages are already zero, so no memset either.
inline at::Tensor zeros_large_cpu(at::IntArrayRef sizes, const at::TensorOptions& options) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr size_t kHugePage = size_t(2) << 20;
  const size_t bytes = static_cast<size_t>(c10::multiply_integers(sizes)) * options.dtype().itemsize();
  if (bytes >= 2 * kHugePage) {
    const size_t mapped = bytes + kHugePage;  // room to start on a huge-page boundary
    void* base = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base != MAP_FAILED) {
      const auto start = (reinterpret_cast<uintptr_t>(base) + kHugePage - 1) & ~(uintptr_t(kHugePage) - 1);
      void* data = reinterpret_cast<void*>(start);
      madvise(data, bytes, MADV_HUGEPAGE);
      return at::from_blob(data, sizes, [base, mapped](void*) { munmap(base, mapped); },
                           options.device(at::kCPU));
    }
  }
#endif
  return at::zeros(sizes, options);
}

// at::parallel_for hands each OpenMP thread one fixed slice. On a small shared machine (the 2-core CI VM)
// another process often holds one core, and the whole call then waits for the descheduled thread's slice.
// Here the threads claim `num_chunks` small chunks from an atomic counter instead, so a thread that runs
// takes over the work of one that does not. fn(chunk_index) must be safe to run concurrently.
template <typename F>
inline void parallel_for_chunks(int64_t num_chunks, const F& fn) {
  if (num_chunks <= 0) return;
  std::atomic<int64_t> next{0};
  const int64_t workers = std::min<int64_t>(at::get_num_threads(), num_chunks);
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    for (int64_t c = next.fetch_add(1); c < num_chunks; c = next.fetch_add(1)) fn(c);
  });
}
