// CUDA kernels of the negative-selection ops (schemas in csrc/module.cpp; CPU twin
// csrc/cpu/negative_mixing_cpu.cpp; reference recbole_hnlm/ops/reference.py).
//
// One warp per batch row b (or per (b, m) for candidate_scores). Lanes split the feature dimension; a dot product
// is a per-lane partial sum reduced with a butterfly shuffle, so every lane knows every score and keeps the same
// running argmax: no shared memory, no divergence. Candidate rows are gathered straight from the item table; nothing
// of shape [B, M, L, d] or [B, M, d] is formed.
//
//   mixgcf_mix           by the argmax identity (algorithms.md §3) score raw candidates per layer, keep the best,
//                        then write z = a*p + (1-a)*e_best for that layer and the chosen id
//   mixgcf_mix_backward  grad_pos = a*g; grad_items[chosen] += (1-a)*g (atomics: several rows may pick one item;
//                        the order of those adds is not fixed, unlike the CPU kernel)
//   candidate_scores     s[b, m] = <u_b, e_{C[b,m]}>
//   select_candidates    argmax_m s[b, m] (DNS) or argmin_m |s[b, m] - t_b| (AHNS)
//
// Ties pick the smallest position and the first NaN wins (torch.argmax/argmin), as on the CPU. Ids outside
// [0, I) trip a device assertion.

#include "utils.cuh"

namespace {

using namespace hnlm_cuda;

// Layers whose running argmax a warp holds in registers at once; deeper stacks are scored in chunks of this many
// layers (the candidate ids are re-read per chunk, the rows once per layer as always).
constexpr int kMaxLayers = 16;

#define HNLM_DISPATCH_FLOATING(type, name, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, type, name, __VA_ARGS__)

template <typename scalar_t, typename acc_t>
__device__ __forceinline__ acc_t warp_dot(const scalar_t* __restrict__ a, const scalar_t* __restrict__ b, int64_t d,
                                          int lane) {
  acc_t partial = acc_t(0);
  for (int64_t k = lane; k < d; k += kWarp) partial += static_cast<acc_t>(a[k]) * static_cast<acc_t>(b[k]);
  return warp_sum(partial);
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kBlock) mixgcf_mix_kernel(
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
    for (int64_t m = 0; m < M; ++m) {
      const int64_t c = cand[m];
      CUDA_KERNEL_ASSERT(c >= 0 && c < I);
      const scalar_t* row = items + c * item_stride;
#pragma unroll
      for (int l = 0; l < kMaxLayers; ++l) {
        if (l >= layers) break;
        const int layer = l0 + l;
        const acc_t s = warp_dot<scalar_t, acc_t>(per_layer_query ? q + layer * d : q, row + layer * d, d, lane);
        if (m == 0 || improves<true>(s, best[l])) {
          best[l] = s;
          best_m[l] = m;
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
      const scalar_t* p = pos + r * d;
      const scalar_t* n = items + item * item_stride + layer * d;
      for (int64_t k = lane; k < d; k += kWarp)
        z[r * d + k] =
            static_cast<scalar_t>(a * static_cast<acc_t>(p[k]) + (acc_t(1) - a) * static_cast<acc_t>(n[k]));
    }
  }
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

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kBlock) candidate_scores_kernel(
    const scalar_t* __restrict__ user, const scalar_t* __restrict__ items, const int64_t* __restrict__ candidates,
    scalar_t* __restrict__ scores, int64_t B, int64_t M, int64_t d, int64_t I) {
  const int64_t bm = global_warp();
  const int lane = lane_id();
  if (bm >= B * M) return;
  const int64_t c = candidates[bm];
  CUDA_KERNEL_ASSERT(c >= 0 && c < I);
  const acc_t s = warp_dot<scalar_t, acc_t>(user + (bm / M) * d, items + c * d, d, lane);
  if (lane == 0) scores[bm] = static_cast<scalar_t>(s);
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
  for (int64_t m = 0; m < M; ++m) {
    const int64_t c = candidates[b * M + m];
    CUDA_KERNEL_ASSERT(c >= 0 && c < I);
    const acc_t s = warp_dot<scalar_t, acc_t>(user + b * d, items + c * d, d, lane);
    // AHNS: with an inf/nan target every |s - t| is inf/nan, so position 0 wins, as in torch.argmin.
    const acc_t key = target != nullptr ? abs(s - target[b]) : s;
    const bool better = target != nullptr ? improves<false>(key, best) : improves<true>(key, best);
    if (m == 0 || better) {
      best = key;
      best_m = m;
    }
  }
  if (lane == 0) positions[b] = best_m;
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
  HNLM_DISPATCH_FLOATING(pos_c.scalar_type(), "mixgcf_mix_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    launch_kernel(mixgcf_mix_kernel<scalar_t, acc_t>, blocks_for_warps(B), kBlock,
        query_c.data_ptr<scalar_t>(), query_c.dim() == 3, pos_c.data_ptr<scalar_t>(), items_c.data_ptr<scalar_t>(),
        candidates_c.data_ptr<int64_t>(), alpha_c.data_ptr<acc_t>(), z.data_ptr<scalar_t>(),
        chosen.data_ptr<int64_t>(), B, candidates_c.size(1), static_cast<int>(L), d, items_c.size(0));
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
    HNLM_DISPATCH_FLOATING(grad_c.scalar_type(), "mixgcf_mix_backward_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      launch_kernel(mixgcf_scatter_kernel<scalar_t, acc_t>, blocks_for_warps(rows), kBlock,
          grad_c.data_ptr<scalar_t>(), chosen_c.data_ptr<int64_t>(), alpha_c.data_ptr<acc_t>(),
          grad_items.data_ptr<acc_t>(), rows, static_cast<int>(L), d, num_items);
    });
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
  HNLM_DISPATCH_FLOATING(user_c.scalar_type(), "select_candidates_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto target_c = has_target ? target->to(c10::CppTypeToScalarType<acc_t>::value).contiguous() : at::Tensor();
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
