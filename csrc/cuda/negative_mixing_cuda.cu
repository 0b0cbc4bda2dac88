// CUDA kernels of the negative-selection ops (schemas in csrc/module.cpp; CPU twin
// csrc/cpu/negative_mixing_cpu.cpp; reference recbole_hnlm/ops/reference.py).
//
// One warp per batch row b (or per (b, m) for candidate_scores). Lanes split the feature dimension; a dot product
// is a per-lane partial sum reduced with a butterfly shuffle, so every lane knows every score and keeps the same
// running argmax: no shared memory, no divergence. The argmax kernels score kCandidatesInFlight candidates at once
// (their gathers overlap) and fold them into the running argmax in position order. Candidate rows are gathered
// straight from the item table; nothing of shape [B, M, L, d] or [B, M, d] is formed.
//
//   mixgcf_mix           by the argmax identity (algorithms.md §3) score raw candidates per layer, keep the best,
//                        then write z = a*p + (1-a)*e_best for that layer and the chosen id
//   mixgcf_mix_backward  grad_pos = a*g; grad_items[chosen] += (1-a)*g (atomics: several rows may pick one item;
//                        the order of those adds is not fixed, unlike the CPU kernel). Under
//                        torch.use_deterministic_algorithms(True): the rows are sorted by (item, layer), stably, and
//                        one warp sums each item's rows in batch order, the CPU kernel's order (no atomics; the CPU
//                        rounds bf16/half after each add, and nvcc may fuse w * g + s, so the bits can differ)
//   candidate_scores     s[b, m] = <u_b, e_{C[b,m]}>
//   select_candidates    argmax_m s[b, m] (DNS) or argmin_m |s[b, m] - t_b| (AHNS)
//
// Ties pick the smallest position and the first NaN wins (torch.argmax/argmin), as on the CPU. Ids outside
// [0, I) trip a device assertion.
//
// An experiment for the GPU benchmark, off by default: RECBOLE_HNLM_ARGMAX_GROUPS = 1, 2 or 4 switches mixgcf_mix and
// select_candidates to "split" kernels. MixGCF gets one warp per (batch row, layer) instead of one per batch row
// (the layers' argmaxes are independent: 4x the warps for K = 3), and the warp is cut into that many groups of lanes
// that score different candidates with vector loads (2 groups of 16 lanes x float4 cover two d = 64 rows per load
// instruction). The groups' running argmaxes are merged by a butterfly under the same rule (first NaN, else the
// first extremum), so the chosen position is the same; the scores are summed in another order (not the same bits).

#include <cstdlib>
#include <limits>
#include <string>
#include <type_traits>

#include "utils.cuh"

namespace {

using namespace hnlm_cuda;

// Layers whose running argmax a warp holds in registers at once; deeper stacks are scored in chunks of this many
// layers (the candidate ids are re-read per chunk, the rows once per layer as always). 4 covers K = 3, the usual
// depth, in one chunk; with __launch_bounds__(kBlock, 2) the kernel then fits 128 registers without spilling (nvcc 13,
// sm_80/sm_90), so two blocks share an SM and a batch of 2,048 rows (warps) runs on an H100 in one wave.
constexpr int kMaxLayers = 4;
// Candidates a warp scores at once. One warp per batch row gives the GPU few warps (B = 2,048 is ~16 per SM), so the
// gathers' latency must be hidden inside the warp: the rows of U candidates are loaded back to back, and their
// U dot products reduced together, instead of one gather, one butterfly, then the next.
constexpr int kCandidatesInFlight = 4;

#define HNLM_DISPATCH_FLOATING(type, name, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, type, name, __VA_ARGS__)

// <q, rows[u]> for U rows at once, every lane holding every score. Each score is a per-lane partial sum over
// features lane, lane + 32, ... reduced by warp_sum's butterfly, so its value does not depend on U.
template <int U, typename scalar_t, typename acc_t>
__device__ __forceinline__ void warp_dots(const scalar_t* __restrict__ q, const scalar_t* const (&rows)[U], int64_t d,
                                          int lane, acc_t (&scores)[U]) {
#pragma unroll
  for (int u = 0; u < U; ++u) scores[u] = acc_t(0);
  for (int64_t k = lane; k < d; k += kWarp) {
    const acc_t qk = static_cast<acc_t>(q[k]);
#pragma unroll
    for (int u = 0; u < U; ++u) scores[u] += qk * static_cast<acc_t>(rows[u][k]);
  }
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset >>= 1) {
#pragma unroll
    for (int u = 0; u < U; ++u) scores[u] += __shfl_xor_sync(0xffffffffu, scores[u], offset);
  }
}

// Rows of the candidates m0 .. m0 + U - 1 of one batch row (positions past M repeat candidate M - 1: loaded, never
// compared), each checked against [0, I).
template <int U, typename scalar_t>
__device__ __forceinline__ void candidate_rows(const int64_t* __restrict__ cand, int64_t m0, int64_t M,
                                               const scalar_t* items, int64_t row_stride, int64_t I,
                                               const scalar_t* (&rows)[U]) {
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int64_t c = cand[min(m0 + u, M - 1)];
    CUDA_KERNEL_ASSERT(c >= 0 && c < I);
    rows[u] = items + c * row_stride;
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kBlock, 2) mixgcf_mix_kernel(
    const scalar_t* __restrict__ query, bool per_layer_query, const scalar_t* __restrict__ pos,
    const scalar_t* __restrict__ items, const int64_t* __restrict__ candidates, const acc_t* __restrict__ alpha,
    scalar_t* __restrict__ z, int64_t* __restrict__ chosen, int64_t B, int64_t M, int L, int64_t d, int64_t I) {
  const int64_t b = global_warp();
  const int lane = lane_id();
  if (b >= B) return;
  const scalar_t* q = query + (per_layer_query ? b * L * d : b * d);
  const int64_t* cand = candidates + b * M;
  const int64_t item_stride = static_cast<int64_t>(L) * d;
  for (int l0 = 0; l0 < L; l0 += kMaxLayers) {
    const int layers = min(kMaxLayers, L - l0);
    acc_t best[kMaxLayers];
    int64_t best_m[kMaxLayers];
    for (int64_t m0 = 0; m0 < M; m0 += kCandidatesInFlight) {
      const scalar_t* rows[kCandidatesInFlight];
      candidate_rows(cand, m0, M, items, item_stride, I, rows);
#pragma unroll
      for (int l = 0; l < kMaxLayers; ++l) {
        if (l >= layers) break;
        const int layer = l0 + l;
        const scalar_t* layer_rows[kCandidatesInFlight];
#pragma unroll
        for (int u = 0; u < kCandidatesInFlight; ++u) layer_rows[u] = rows[u] + layer * d;
        acc_t s[kCandidatesInFlight];
        warp_dots(per_layer_query ? q + layer * d : q, layer_rows, d, lane, s);
#pragma unroll
        for (int u = 0; u < kCandidatesInFlight; ++u) {  // in position order: ties and NaN as torch.argmax
          const int64_t m = m0 + u;
          if (m < M && (m == 0 || improves<true>(s[u], best[l]))) {
            best[l] = s[u];
            best_m[l] = m;
          }
        }
      }
    }
#pragma unroll
    for (int l = 0; l < kMaxLayers; ++l) {
      if (l >= layers) break;
      const int layer = l0 + l;
      const int64_t item = cand[best_m[l]];
      const int64_t r = b * L + layer;
      if (lane == 0) chosen[r] = item;
      const acc_t a = alpha[r];
      CUDA_KERNEL_ASSERT(a >= acc_t(0) && a < acc_t(1));  // the argmax identity needs 1 - alpha > 0
      const scalar_t* p = pos + r * d;
      const scalar_t* n = items + item * item_stride + layer * d;
      for (int64_t k = lane; k < d; k += kWarp)
        z[r * d + k] =
            static_cast<scalar_t>(a * static_cast<acc_t>(p[k]) + (acc_t(1) - a) * static_cast<acc_t>(n[k]));
    }
  }
}

// Does the score `key` at position m win over the running best (best_key at best_m) under torch.argmax (maximize) or
// torch.argmin: the first NaN, else the first extremum? A position < 0 is "no candidate". Unlike improves(), the
// positions may come in any order, so the running bests of several candidate groups can be merged.
template <typename acc_t>
__device__ __forceinline__ bool wins(bool maximize, acc_t key, int m, acc_t best_key, int best_m) {
  if (m < 0) return false;
  if (best_m < 0) return true;
  const bool key_nan = isnan(key), best_nan = isnan(best_key);
  if (key_nan || best_nan) return key_nan && (!best_nan || m < best_m);
  if (key == best_key) return m < best_m;
  return maximize ? key > best_key : key < best_key;
}

// The winning position among the M candidates `cand` of one warp's row (every lane gets it): scores <q, row_c> of the
// rows items + c * row_stride + offset, ranked by argmax (no target) or by argmin |score - target| (AHNS). The warp
// is cut into GROUPS groups of kWarp / GROUPS lanes; group g scores positions g, g + GROUPS, ... kCandidatesInFlight
// at a time, each lane taking VEC features per load, and the groups' winners are merged by a butterfly.
template <int GROUPS, int VEC, typename scalar_t, typename acc_t>
__device__ __forceinline__ int grouped_argmax(const scalar_t* __restrict__ q, const int64_t* __restrict__ cand,
                                              int M, const scalar_t* __restrict__ items, int64_t row_stride,
                                              int64_t offset, int64_t I, int64_t d, const acc_t* target, int lane) {
  constexpr int kLanes = kWarp / GROUPS;
  constexpr int U = kCandidatesInFlight;
  const int group = lane / kLanes, group_lane = lane % kLanes;
  const bool maximize = target == nullptr;
  const acc_t t = target != nullptr ? *target : acc_t(0);
  acc_t best = acc_t(0);
  int best_m = -1;
  for (int m0 = 0; m0 < M; m0 += U * GROUPS) {
    const scalar_t* rows[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {  // positions past M repeat candidate M - 1: loaded, never compared
      const int64_t c = cand[min(m0 + u * GROUPS + group, M - 1)];
      CUDA_KERNEL_ASSERT(c >= 0 && c < I);
      rows[u] = items + c * row_stride + offset;
    }
    acc_t s[U];
#pragma unroll
    for (int u = 0; u < U; ++u) s[u] = acc_t(0);
    for (int64_t k = int64_t(group_lane) * VEC; k < d; k += int64_t(kLanes) * VEC) {
      acc_t qv[VEC];
      load_vec<scalar_t, acc_t, VEC>(q + k, qv);
#pragma unroll
      for (int u = 0; u < U; ++u) {
        acc_t rv[VEC];
        load_vec<scalar_t, acc_t, VEC>(rows[u] + k, rv);
#pragma unroll
        for (int j = 0; j < VEC; ++j) s[u] += qv[j] * rv[j];
      }
    }
#pragma unroll
    for (int width = kLanes / 2; width > 0; width >>= 1) {  // within the group: the lanes' partial sums
#pragma unroll
      for (int u = 0; u < U; ++u) s[u] += __shfl_xor_sync(0xffffffffu, s[u], width);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {  // this group's positions, in increasing order
      const int m = m0 + u * GROUPS + group;
      const acc_t key = maximize ? s[u] : abs(s[u] - t);
      if (m < M && wins(maximize, key, m, best, best_m)) {
        best = key;
        best_m = m;
      }
    }
  }
#pragma unroll
  for (int width = kLanes; width < kWarp; width <<= 1) {  // across the groups (no-op for one group)
    const acc_t other = __shfl_xor_sync(0xffffffffu, best, width);
    const int other_m = __shfl_xor_sync(0xffffffffu, best_m, width);
    if (wins(maximize, other, other_m, best, best_m)) {
      best = other;
      best_m = other_m;
    }
  }
  return best_m;
}

// mixgcf_mix with one warp per (batch row, layer) r = b * L + layer (RECBOLE_HNLM_ARGMAX_GROUPS): the layer's argmax
// over the raw candidates, then z[r] = a * p + (1 - a) * e_best and the chosen id, as mixgcf_mix_kernel.
template <typename scalar_t, typename acc_t, int VEC, int GROUPS>
__global__ void __launch_bounds__(kBlock) mixgcf_mix_split_kernel(
    const scalar_t* __restrict__ query, bool per_layer_query, const scalar_t* __restrict__ pos,
    const scalar_t* __restrict__ items, const int64_t* __restrict__ candidates, const acc_t* __restrict__ alpha,
    scalar_t* __restrict__ z, int64_t* __restrict__ chosen, int64_t B, int M, int L, int64_t d, int64_t I) {
  const int64_t r = global_warp();
  const int lane = lane_id();
  if (r >= B * L) return;
  const int64_t b = r / L;
  const int64_t layer_offset = (r % L) * d;
  const int64_t item_stride = static_cast<int64_t>(L) * d;
  const int64_t* cand = candidates + b * M;
  const int best_m = grouped_argmax<GROUPS, VEC>(query + (per_layer_query ? r * d : b * d), cand, M, items,
                                                 item_stride, layer_offset, I, d, static_cast<const acc_t*>(nullptr),
                                                 lane);
  const int64_t item = cand[best_m];
  if (lane == 0) chosen[r] = item;
  const acc_t a = alpha[r];
  CUDA_KERNEL_ASSERT(a >= acc_t(0) && a < acc_t(1));  // the argmax identity needs 1 - alpha > 0
  const scalar_t* p = pos + r * d;
  const scalar_t* n = items + item * item_stride + layer_offset;
  for (int64_t k = lane; k < d; k += kWarp)
    z[r * d + k] = static_cast<scalar_t>(a * static_cast<acc_t>(p[k]) + (acc_t(1) - a) * static_cast<acc_t>(n[k]));
}

// select_candidates with candidate groups and vector loads (RECBOLE_HNLM_ARGMAX_GROUPS); one warp per batch row.
template <typename scalar_t, typename acc_t, int VEC, int GROUPS>
__global__ void __launch_bounds__(kBlock) select_candidates_split_kernel(
    const scalar_t* __restrict__ user, const scalar_t* __restrict__ items, const int64_t* __restrict__ candidates,
    const acc_t* __restrict__ target, int64_t* __restrict__ positions, int64_t B, int M, int64_t d, int64_t I) {
  const int64_t b = global_warp();
  const int lane = lane_id();
  if (b >= B) return;
  const int best_m = grouped_argmax<GROUPS, VEC>(user + b * d, candidates + b * M, M, items, d, 0, I, d,
                                                 target != nullptr ? target + b : nullptr, lane);
  if (lane == 0) positions[b] = best_m;
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kBlock) mixgcf_scatter_kernel(
    const scalar_t* __restrict__ grad_z, const int64_t* __restrict__ chosen, const acc_t* __restrict__ alpha,
    acc_t* __restrict__ grad_items, int64_t rows, int L, int64_t d, int64_t I) {
  const int64_t r = global_warp();
  const int lane = lane_id();
  if (r >= rows) return;
  const int64_t item = chosen[r];
  CUDA_KERNEL_ASSERT(item >= 0 && item < I);
  const acc_t w = acc_t(1) - alpha[r];
  acc_t* dst = grad_items + item * L * d + (r % L) * d;
  for (int64_t k = lane; k < d; k += kWarp) gpuAtomicAdd(dst + k, w * static_cast<acc_t>(grad_z[r * d + k]));
}

// Deterministic twin of mixgcf_scatter_kernel. `keys` are the rows' (item * L + layer) sorted stably, `order` the
// rows in that order; the warp at the first position of each key sums the key's rows in batch order and stores.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kBlock) mixgcf_segment_sum_kernel(
    const scalar_t* __restrict__ grad_z, const int64_t* __restrict__ keys, const int64_t* __restrict__ order,
    const acc_t* __restrict__ alpha, acc_t* __restrict__ grad_items, int64_t rows, int64_t d, int64_t num_keys) {
  const int64_t i = global_warp();
  const int lane = lane_id();
  if (i >= rows) return;
  const int64_t key = keys[i];
  if (i > 0 && keys[i - 1] == key) return;  // not the first row of its key
  CUDA_KERNEL_ASSERT(key >= 0 && key < num_keys);
  for (int64_t k = lane; k < d; k += kWarp) {
    acc_t sum = acc_t(0);
    for (int64_t j = i; j < rows && keys[j] == key; ++j) {
      const int64_t r = order[j];
      sum += (acc_t(1) - alpha[r]) * static_cast<acc_t>(grad_z[r * d + k]);
    }
    grad_items[key * d + k] = sum;
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kBlock) candidate_scores_kernel(
    const scalar_t* __restrict__ user, const scalar_t* __restrict__ items, const int64_t* __restrict__ candidates,
    scalar_t* __restrict__ scores, int64_t B, int64_t M, int64_t d, int64_t I) {
  const int64_t bm = global_warp();
  const int lane = lane_id();
  if (bm >= B * M) return;
  const int64_t c = candidates[bm];
  CUDA_KERNEL_ASSERT(c >= 0 && c < I);
  const scalar_t* row[1] = {items + c * d};
  acc_t s[1];
  warp_dots(user + (bm / M) * d, row, d, lane, s);
  if (lane == 0) scores[bm] = static_cast<scalar_t>(s[0]);
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kBlock) select_candidates_kernel(
    const scalar_t* __restrict__ user, const scalar_t* __restrict__ items, const int64_t* __restrict__ candidates,
    const acc_t* __restrict__ target, int64_t* __restrict__ positions, int64_t B, int64_t M, int64_t d, int64_t I) {
  const int64_t b = global_warp();
  const int lane = lane_id();
  if (b >= B) return;
  acc_t best = acc_t(0);
  int64_t best_m = 0;
  const acc_t t = target != nullptr ? target[b] : acc_t(0);
  for (int64_t m0 = 0; m0 < M; m0 += kCandidatesInFlight) {
    const scalar_t* rows[kCandidatesInFlight];
    candidate_rows(candidates + b * M, m0, M, items, d, I, rows);
    acc_t s[kCandidatesInFlight];
    warp_dots(user + b * d, rows, d, lane, s);
#pragma unroll
    for (int u = 0; u < kCandidatesInFlight; ++u) {  // in position order: ties and NaN as torch.argmax/argmin
      const int64_t m = m0 + u;
      // AHNS: with an inf/nan target every |s - t| is inf/nan, so position 0 wins, as in torch.argmin.
      const acc_t key = target != nullptr ? abs(s[u] - t) : s[u];
      const bool better = target != nullptr ? improves<false>(key, best) : improves<true>(key, best);
      if (m < M && (m == 0 || better)) {
        best = key;
        best_m = m;
      }
    }
  }
  if (lane == 0) positions[b] = best_m;
}

// Candidate groups per warp of the split kernels: 0 (the default kernels) unless the environment variable
// RECBOLE_HNLM_ARGMAX_GROUPS asks for 1, 2 or 4. An experiment for the GPU benchmark, read at every call, until a
// measurement picks the default (docs/performance.md).
int argmax_groups() {
  const char* value = std::getenv("RECBOLE_HNLM_ARGMAX_GROUPS");
  if (value == nullptr || *value == '\0') return 0;
  const std::string text(value);
  TORCH_CHECK(text == "1" || text == "2" || text == "4",
              "RECBOLE_HNLM_ARGMAX_GROUPS must be 1, 2 or 4 (or unset), got '", text, "'");
  return text[0] - '0';
}

// launch(VEC, GROUPS) with both as std::integral_constant: GROUPS = `groups`, VEC the widest vector load that keeps
// every row of `rows` aligned with the fewest passes of a group's lanes over d (vector_width, with_vector_width).
template <typename scalar_t, typename Launch>
void dispatch_split(int groups, int64_t d, std::initializer_list<std::pair<const void*, int64_t>> rows,
                    const Launch& launch) {
  with_groups(groups, [&](auto groups_c) {
    const int vec = vector_width(d, rows, sizeof(scalar_t), kWarp / decltype(groups_c)::value);
    with_vector_width<scalar_t>(vec, [&](auto vec_c) { launch(vec_c, groups_c); });
  });
}

// The split kernels count positions in int; their loop steps past M by up to kCandidatesInFlight * 4 (4 groups).
void check_split_positions(int64_t M) {
  constexpr int64_t kMaxM = std::numeric_limits<int>::max() - kCandidatesInFlight * 4;
  TORCH_CHECK(M <= kMaxM, "RECBOLE_HNLM_ARGMAX_GROUPS: at most ", kMaxM, " candidates per row, got M = ", M);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> mixgcf_mix_cuda(const at::Tensor& query, const at::Tensor& pos_layers,
                                                   const at::Tensor& item_layers, const at::Tensor& candidates,
                                                   const at::Tensor& alpha) {
  check_mixgcf_mix_args(query, pos_layers, item_layers, candidates, alpha);
  const int64_t B = pos_layers.size(0), L = pos_layers.size(1), d = pos_layers.size(2);
  CHECK_CUDA(pos_layers);
  const DeviceGuard guard(pos_layers.device());
  const auto query_c = query.contiguous(), pos_c = pos_layers.contiguous(), items_c = item_layers.contiguous();
  const auto candidates_c = candidates.contiguous();
  const auto alpha_c = alpha.to(at::toOpMathType(pos_c.scalar_type())).contiguous();
  auto z = at::empty({B, L, d}, pos_c.options());
  auto chosen = at::empty({B, L}, candidates_c.options());
  if (B == 0) return {z, chosen};
  const int64_t M = candidates_c.size(1);
  const int groups = argmax_groups();
  HNLM_DISPATCH_FLOATING(pos_c.scalar_type(), "mixgcf_mix_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    if (groups > 0) {
      check_split_positions(M);
      const int64_t d_stride = d;  // every query and item-layer row starts a multiple of d elements in
      return dispatch_split<scalar_t>(groups, d, {{query_c.data_ptr(), d_stride}, {items_c.data_ptr(), d_stride}},
          [&](auto vec, auto groups_c) {
            launch_kernel(mixgcf_mix_split_kernel<scalar_t, acc_t, decltype(vec)::value, decltype(groups_c)::value>,
                blocks_for_warps(B * L), kBlock, query_c.data_ptr<scalar_t>(), query_c.dim() == 3,
                pos_c.data_ptr<scalar_t>(), items_c.data_ptr<scalar_t>(), candidates_c.data_ptr<int64_t>(),
                alpha_c.data_ptr<acc_t>(), z.data_ptr<scalar_t>(), chosen.data_ptr<int64_t>(), B,
                static_cast<int>(M), static_cast<int>(L), d, items_c.size(0));
          });
    }
    launch_kernel(mixgcf_mix_kernel<scalar_t, acc_t>, blocks_for_warps(B), kBlock,
        query_c.data_ptr<scalar_t>(), query_c.dim() == 3, pos_c.data_ptr<scalar_t>(), items_c.data_ptr<scalar_t>(),
        candidates_c.data_ptr<int64_t>(), alpha_c.data_ptr<acc_t>(), z.data_ptr<scalar_t>(),
        chosen.data_ptr<int64_t>(), B, M, static_cast<int>(L), d, items_c.size(0));
  });
  return {z, chosen};
}

std::tuple<at::Tensor, at::Tensor> mixgcf_mix_backward_cuda(const at::Tensor& grad_z, const at::Tensor& chosen,
                                                            const at::Tensor& alpha, int64_t num_items) {
  check_mixgcf_backward_args(grad_z, chosen, alpha, num_items);
  const int64_t B = grad_z.size(0), L = grad_z.size(1), d = grad_z.size(2);
  CHECK_CUDA(grad_z);
  const DeviceGuard guard(grad_z.device());
  const auto grad_c = grad_z.contiguous(), chosen_c = chosen.contiguous();
  const auto acc_type = at::toOpMathType(grad_c.scalar_type());
  const auto alpha_c = alpha.to(acc_type).contiguous();
  auto grad_pos = (grad_c.to(acc_type) * alpha_c.unsqueeze(-1)).to(grad_c.scalar_type());
  auto grad_items = at::zeros({num_items, L, d}, grad_c.options().dtype(acc_type));
  const int64_t rows = B * L;
  if (rows > 0 && d > 0) {
    at::Tensor keys, order;  // deterministic mode: the rows sorted by the grad_items row they add into
    if (at::globalContext().deterministicAlgorithms()) {
      // row b*L + l adds into grad_items' row item * L + l; a stable sort keeps batch order within an item
      const auto layer = at::arange(L, chosen_c.options()).repeat({B});
      std::tie(keys, order) =
          at::sort(chosen_c.reshape({rows}) * L + layer, /*stable=*/std::optional<bool>(true), /*dim=*/0);
    }
    HNLM_DISPATCH_FLOATING(grad_c.scalar_type(), "mixgcf_mix_backward_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      if (keys.defined()) {
        launch_kernel(mixgcf_segment_sum_kernel<scalar_t, acc_t>, blocks_for_warps(rows), kBlock,
            grad_c.data_ptr<scalar_t>(), keys.data_ptr<int64_t>(), order.data_ptr<int64_t>(),
            alpha_c.data_ptr<acc_t>(), grad_items.data_ptr<acc_t>(), rows, d, num_items * L);
      } else {
        launch_kernel(mixgcf_scatter_kernel<scalar_t, acc_t>, blocks_for_warps(rows), kBlock,
            grad_c.data_ptr<scalar_t>(), chosen_c.data_ptr<int64_t>(), alpha_c.data_ptr<acc_t>(),
            grad_items.data_ptr<acc_t>(), rows, static_cast<int>(L), d, num_items);
      }
    });
  } else if (rows > 0) {
    // d = 0: no kernel runs to assert on the ids, so they are checked here, as the CPU kernel checks them at any d
    const bool outside = at::logical_or(chosen_c < 0, chosen_c >= num_items).any().item<bool>();
    TORCH_CHECK_INDEX(!outside, "chosen contains an item id outside [0, ", num_items, ")");
  }
  if (grad_items.scalar_type() != grad_c.scalar_type()) grad_items = grad_items.to(grad_c.scalar_type());
  return {grad_pos, grad_items};
}

at::Tensor candidate_scores_cuda(const at::Tensor& user, const at::Tensor& items, const at::Tensor& candidates) {
  check_scoring_args(user, items, candidates);
  CHECK_CUDA(user);
  const DeviceGuard guard(user.device());
  const auto user_c = user.contiguous(), items_c = items.contiguous(), candidates_c = candidates.contiguous();
  const int64_t B = user_c.size(0), d = user_c.size(1), M = candidates_c.size(1);
  auto scores = at::empty({B, M}, user_c.options());
  if (B == 0) return scores;
  HNLM_DISPATCH_FLOATING(user_c.scalar_type(), "candidate_scores_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    launch_kernel(candidate_scores_kernel<scalar_t, acc_t>, blocks_for_warps(B * M), kBlock,
        user_c.data_ptr<scalar_t>(), items_c.data_ptr<scalar_t>(), candidates_c.data_ptr<int64_t>(),
        scores.data_ptr<scalar_t>(), B, M, d, items_c.size(0));
  });
  return scores;
}

at::Tensor select_candidates_cuda(const at::Tensor& user, const at::Tensor& items, const at::Tensor& candidates,
                                  const c10::optional<at::Tensor>& target) {
  check_scoring_args(user, items, candidates, target);
  CHECK_CUDA(user);
  const int64_t B = user.size(0);
  const bool has_target = target.has_value() && target->defined();
  const DeviceGuard guard(user.device());
  const auto user_c = user.contiguous(), items_c = items.contiguous(), candidates_c = candidates.contiguous();
  const int64_t d = user_c.size(1), M = candidates_c.size(1);
  auto positions = at::empty({B}, candidates_c.options());
  if (B == 0) return positions;
  const int groups = argmax_groups();
  HNLM_DISPATCH_FLOATING(user_c.scalar_type(), "select_candidates_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto target_c = has_target ? target->to(c10::CppTypeToScalarType<acc_t>::value).contiguous() : at::Tensor();
    if (groups > 0) {
      check_split_positions(M);
      return dispatch_split<scalar_t>(groups, d, {{user_c.data_ptr(), d}, {items_c.data_ptr(), d}},
          [&](auto vec, auto groups_c) {
            launch_kernel(
                select_candidates_split_kernel<scalar_t, acc_t, decltype(vec)::value, decltype(groups_c)::value>,
                blocks_for_warps(B), kBlock, user_c.data_ptr<scalar_t>(), items_c.data_ptr<scalar_t>(),
                candidates_c.data_ptr<int64_t>(), has_target ? target_c.data_ptr<acc_t>() : nullptr,
                positions.data_ptr<int64_t>(), B, static_cast<int>(M), d, items_c.size(0));
          });
    }
    launch_kernel(select_candidates_kernel<scalar_t, acc_t>, blocks_for_warps(B), kBlock,
        user_c.data_ptr<scalar_t>(), items_c.data_ptr<scalar_t>(), candidates_c.data_ptr<int64_t>(),
        has_target ? target_c.data_ptr<acc_t>() : nullptr, positions.data_ptr<int64_t>(), B, M, d, items_c.size(0));
  });
  return positions;
}

TORCH_LIBRARY_IMPL(HNLM_CUDA_LIBRARY, HNLM_CUDA_DISPATCH_KEY, m) {
  m.impl("mixgcf_mix", &mixgcf_mix_cuda);
  m.impl("mixgcf_mix_backward", &mixgcf_mix_backward_cuda);
  m.impl("candidate_scores", &candidate_scores_cuda);
  m.impl("select_candidates", &select_candidates_cuda);
}
