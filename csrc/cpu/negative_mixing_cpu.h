#pragma once

#include <tuple>

#include "../extensions.h"

// Hard-negative selection kernels (algorithms.md §2-§4). Kernels own no RNG: MixGCF's alpha arrives
// as a tensor. Selection scores raw candidates; ties keep the smallest position (torch.argmax/argmin).

// MixGCF select + positive mixing. query: [B, d] or [B, L, d]; pos_layers: [B, L, d];
// item_layers: [I, L, d]; candidates: [B, M] int64; alpha: [B, L].
// Returns Z [B, L, d] and chosen item ids [B, L] int64.
std::tuple<at::Tensor, at::Tensor> mixgcf_mix_cpu(const at::Tensor& query, const at::Tensor& pos_layers,
                                                  const at::Tensor& item_layers, const at::Tensor& candidates,
                                                  const at::Tensor& alpha);

// grad_pos = alpha * grad_z; grad_items = scatter-add of (1 - alpha) * grad_z into rows chosen, [I, L, d].
std::tuple<at::Tensor, at::Tensor> mixgcf_mix_backward_cpu(const at::Tensor& grad_z, const at::Tensor& chosen,
                                                           const at::Tensor& alpha, int64_t num_items);

// <user_b, items[candidates_bm]>.  user: [B, d], items: [I, d], candidates: [B, M] -> [B, M]
at::Tensor candidate_scores_cpu(const at::Tensor& user, const at::Tensor& items, const at::Tensor& candidates);

// Positions in [0, M): argmax_m score (target undefined) or argmin_m |score - target_b|. -> [B] int64
at::Tensor select_candidates_cpu(const at::Tensor& user, const at::Tensor& items, const at::Tensor& candidates,
                                 const c10::optional<at::Tensor>& target);
