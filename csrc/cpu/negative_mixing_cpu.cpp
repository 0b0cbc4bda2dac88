#include "negative_mixing_cpu.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "../utils.h"

namespace {

// torch.argmax / torch.argmin semantics on CPU: the first NaN wins, otherwise the first extremum
// (strict comparison keeps the smallest position on ties).
template <bool kMax, typename acc_t>
inline bool improves(acc_t value, acc_t best) {
  if (std::isnan(best)) return false;
  if (std::isnan(value)) return true;
  return kMax ? value > best : value < best;
}

// kD > 0 fixes the width at compile time so the reduction unrolls fully.
template <int kD, typename scalar_t, typename acc_t = at::opmath_type<scalar_t>>
inline acc_t dot(const scalar_t* __restrict__ a, const scalar_t* __restrict__ b, int64_t dyn_d) {
  const int64_t d = kD > 0 ? kD : dyn_d;
  acc_t s = acc_t(0);
#pragma omp simd reduction(+ : s)
  for (int64_t k = 0; k < d; ++k) s += static_cast<acc_t>(a[k]) * static_cast<acc_t>(b[k]);
  return s;
}

// Calls fn with std::integral_constant<int, 64> (the embedding size of every default config) or <int, 0>.
template <typename F>
inline void with_width(int64_t d, const F& fn) {
  if (d == 64) {
    fn(std::integral_constant<int, 64>{});
  } else {
    fn(std::integral_constant<int, 0>{});
  }
}

inline int64_t checked_candidate(const int64_t* candidates, int64_t index, int64_t num_items) {
  const int64_t c = candidates[index];
  TORCH_CHECK_INDEX(static_cast<uint64_t>(c) < static_cast<uint64_t>(num_items), "candidates contains item id ", c,
                    " outside [0, ", num_items, ")");
  return c;
}

// Candidate rows ahead of use (running into the next batch row): about one memory latency of work.
constexpr int64_t kPrefetchRows = 8;

template <typename scalar_t>
inline void prefetch_row(const scalar_t* table, int64_t row, int64_t num_rows, int64_t bytes, int64_t stride) {
  // Clamp rather than return early: with an early return GCC 12 drops the whole prefetch loop.
  // (An invalid id is reported by checked_candidate when its own turn comes.)
  row = static_cast<uint64_t>(row) < static_cast<uint64_t>(num_rows) ? row : 0;
  const char* p = reinterpret_cast<const char*>(table + row * stride);
  for (int64_t line = 0; line < bytes; line += 64) __builtin_prefetch(p + line);
}

// Each batch row reads M candidate rows of a few KB; a grain of this many rows amortises the fork.
constexpr int64_t kBatchGrain = 16;
// Items per chunk of the gradient scatter; every chunk re-reads the B*L chosen ids (64 KB), so keep
// chunks large enough that this stays small next to the rows they own.
constexpr int64_t kItemGrain = 2048;

#define HNLM_DISPATCH_FLOATING(type, name, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, type, name, __VA_ARGS__)

}  // namespace

std::tuple<at::Tensor, at::Tensor> mixgcf_mix_cpu(const at::Tensor& query, const at::Tensor& pos_layers,
                                                  const at::Tensor& item_layers, const at::Tensor& candidates,
                                                  const at::Tensor& alpha) {
  check_mixgcf_mix_args(query, pos_layers, item_layers, candidates, alpha);
  const int64_t B = pos_layers.size(0), L = pos_layers.size(1), d = pos_layers.size(2);
  for (const auto* t : {&query, &pos_layers, &item_layers, &candidates, &alpha}) CHECK_CPU(*t);

  const auto query_c = query.contiguous(), pos_c = pos_layers.contiguous(), items_c = item_layers.contiguous();
  const auto candidates_c = candidates.contiguous();
  const auto alpha_c = alpha.to(at::toOpMathType(pos_c.scalar_type())).contiguous();
  const int64_t M = candidates_c.size(1), I = items_c.size(0);
  const bool per_layer_query = query_c.dim() == 3;
  auto z = at::empty({B, L, d}, pos_c.options());
  auto chosen = at::empty({B, L}, candidates_c.options());

  HNLM_DISPATCH_FLOATING(pos_c.scalar_type(), "mixgcf_mix_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* q_ptr = query_c.data_ptr<scalar_t>();
    const scalar_t* p_ptr = pos_c.data_ptr<scalar_t>();
    const scalar_t* it_ptr = items_c.data_ptr<scalar_t>();
    const int64_t* c_ptr = candidates_c.data_ptr<int64_t>();
    const acc_t* a_ptr = alpha_c.data_ptr<acc_t>();
    scalar_t* z_ptr = z.data_ptr<scalar_t>();
    int64_t* chosen_ptr = chosen.data_ptr<int64_t>();
    const int64_t item_stride = L * d;
    const int64_t item_bytes = item_stride * static_cast<int64_t>(sizeof(scalar_t));
    with_width(d, [&](auto width) {
    constexpr int kD = decltype(width)::value;
    parallel_for_chunks(at::divup(B, kBatchGrain), [&, B, M, I, L, d, per_layer_query](int64_t chunk) {
      // Sizes are captured by value: by reference, every store to best_m (int64) could alias them
      // and the compiler would reload loop bounds inside the hot loop.
      std::vector<acc_t> best_buffer(L);
      std::vector<int64_t> best_m_buffer(L);
      acc_t* __restrict__ best = best_buffer.data();
      int64_t* __restrict__ best_m = best_m_buffer.data();
      for (int64_t b = chunk * kBatchGrain; b < std::min(B, (chunk + 1) * kBatchGrain); ++b) {
        const scalar_t* q = q_ptr + (per_layer_query ? b * L * d : b * d);
        const int64_t* cand = c_ptr + b * M;
        // By the argmax identity (algorithms.md §3), mixing with alpha*P never changes which
        // candidate wins, so one pass over the raw candidate rows suffices and nothing [B,M,L,d]
        // is formed.
        for (int64_t m = 0; m < M; ++m) {
          const scalar_t* row = it_ptr + checked_candidate(cand, m, I) * item_stride;
          // Candidate rows are random; fetch a later candidate's whole stack while scoring this one
          // (cand is the flat [B, M] row-major array, so m + kPrefetchRows may be in row b + 1).
          if (b * M + m + kPrefetchRows < B * M)
            prefetch_row(it_ptr, cand[m + kPrefetchRows], I, item_bytes, item_stride);
          for (int64_t l = 0; l < L; ++l) {
            const acc_t s = dot<kD, scalar_t>(per_layer_query ? q + l * d : q, row + l * d, d);
            if (m == 0 || improves<true>(s, best[l])) {
              best[l] = s;
              best_m[l] = m;
            }
          }
        }
        for (int64_t l = 0; l < L; ++l) {
          const int64_t item = cand[best_m[l]];
          chosen_ptr[b * L + l] = item;
          const acc_t a = a_ptr[b * L + l];
          // The argmax identity above needs 1 - alpha > 0 (NaN fails the check too).
          TORCH_CHECK_VALUE(a >= acc_t(0) && a < acc_t(1), "alpha[", b, ", ", l, "] = ", static_cast<double>(a),
                            " is outside [0, 1), which MixGCF's positive mixing requires");
          const scalar_t* p = p_ptr + (b * L + l) * d;
          const scalar_t* n = it_ptr + item * item_stride + l * d;
          scalar_t* out = z_ptr + (b * L + l) * d;
          for (int64_t k = 0; k < d; ++k)
            out[k] = static_cast<scalar_t>(a * static_cast<acc_t>(p[k]) + (acc_t(1) - a) * static_cast<acc_t>(n[k]));
        }
      }
    });
    });
  });
  return {z, chosen};
}

std::tuple<at::Tensor, at::Tensor> mixgcf_mix_backward_cpu(const at::Tensor& grad_z, const at::Tensor& chosen,
                                                           const at::Tensor& alpha, int64_t num_items) {
  check_mixgcf_backward_args(grad_z, chosen, alpha, num_items);
  const int64_t B = grad_z.size(0), L = grad_z.size(1), d = grad_z.size(2);
  for (const auto* t : {&grad_z, &chosen, &alpha}) CHECK_CPU(*t);
  const auto grad_z_c = grad_z.contiguous(), chosen_c = chosen.contiguous();
  const auto alpha_c = alpha.to(at::toOpMathType(grad_z_c.scalar_type())).contiguous();
  auto grad_pos = at::empty_like(grad_z_c);
  auto grad_items = zeros_large_cpu({num_items, L, d}, grad_z_c.options());

  HNLM_DISPATCH_FLOATING(grad_z_c.scalar_type(), "mixgcf_mix_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* g_ptr = grad_z_c.data_ptr<scalar_t>();
    const int64_t* chosen_ptr = chosen_c.data_ptr<int64_t>();
    const acc_t* a_ptr = alpha_c.data_ptr<acc_t>();
    scalar_t* gp_ptr = grad_pos.data_ptr<scalar_t>();
    scalar_t* gi_ptr = grad_items.data_ptr<scalar_t>();
    const int64_t rows = B * L;
    at::parallel_for(0, rows, 256, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        checked_candidate(chosen_ptr, r, num_items);
        const acc_t a = a_ptr[r];
        for (int64_t k = 0; k < d; ++k)
          gp_ptr[r * d + k] = static_cast<scalar_t>(a * static_cast<acc_t>(g_ptr[r * d + k]));
      }
    });
    // Each chunk owns a contiguous range of items and accumulates exactly the (b, l) rows whose chosen
    // item falls in it, in batch order: no atomics, deterministic, and items picked by many rows
    // accumulate correctly. Re-scanning the B*L ids per chunk is small next to the [I, L, d] gradient.
    const int64_t item_stride = L * d;
    parallel_for_chunks(at::divup(num_items, kItemGrain), [&](int64_t chunk) {
      const int64_t i0 = chunk * kItemGrain, i1 = std::min(num_items, i0 + kItemGrain);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t item = chosen_ptr[r];
        if (item < i0 || item >= i1) continue;
        const int64_t l = r % L;
        const acc_t w = acc_t(1) - a_ptr[r];
        const scalar_t* g = g_ptr + r * d;
        scalar_t* dst = gi_ptr + item * item_stride + l * d;
        for (int64_t k = 0; k < d; ++k)
          dst[k] = static_cast<scalar_t>(static_cast<acc_t>(dst[k]) + w * static_cast<acc_t>(g[k]));
      }
    });
  });
  return {grad_pos, grad_items};
}

namespace {

void check_scoring_args_cpu(const at::Tensor& user, const at::Tensor& items, const at::Tensor& candidates,
                            const c10::optional<at::Tensor>& target = c10::nullopt) {
  check_scoring_args(user, items, candidates, target);
  CHECK_CPU(user);
}

}  // namespace

at::Tensor candidate_scores_cpu(const at::Tensor& user, const at::Tensor& items,
                                const at::Tensor& candidates) {
  check_scoring_args_cpu(user, items, candidates);
  const auto user_c = user.contiguous(), items_c = items.contiguous(), candidates_c = candidates.contiguous();
  const int64_t B = user_c.size(0), d = user_c.size(1), M = candidates_c.size(1), I = items_c.size(0);
  auto scores = at::empty({B, M}, user_c.options());
  HNLM_DISPATCH_FLOATING(user_c.scalar_type(), "candidate_scores_cpu", [&] {
    const scalar_t* u_ptr = user_c.data_ptr<scalar_t>();
    const scalar_t* it_ptr = items_c.data_ptr<scalar_t>();
    const int64_t* c_ptr = candidates_c.data_ptr<int64_t>();
    scalar_t* s_ptr = scores.data_ptr<scalar_t>();
    const int64_t row_bytes = d * static_cast<int64_t>(sizeof(scalar_t));
    with_width(d, [&](auto width) {
    constexpr int kD = decltype(width)::value;
    parallel_for_chunks(at::divup(B, kBatchGrain), [&](int64_t chunk) {
      for (int64_t b = chunk * kBatchGrain; b < std::min(B, (chunk + 1) * kBatchGrain); ++b) {
        for (int64_t m = 0; m < M; ++m) {
          const int64_t item = checked_candidate(c_ptr, b * M + m, I);
          if (b * M + m + kPrefetchRows < B * M) prefetch_row(it_ptr, c_ptr[b * M + m + kPrefetchRows], I, row_bytes, d);
          s_ptr[b * M + m] = static_cast<scalar_t>(dot<kD, scalar_t>(u_ptr + b * d, it_ptr + item * d, d));
        }
      }
    });    });
  });
  return scores;
}

at::Tensor select_candidates_cpu(const at::Tensor& user, const at::Tensor& items,
                                 const at::Tensor& candidates, const c10::optional<at::Tensor>& target) {
  check_scoring_args_cpu(user, items, candidates, target);
  const int64_t B = user.size(0);
  const bool has_target = target.has_value() && target->defined();
  const auto user_c = user.contiguous(), items_c = items.contiguous(), candidates_c = candidates.contiguous();
  const int64_t d = user_c.size(1), M = candidates_c.size(1), I = items_c.size(0);
  auto positions = at::empty({B}, candidates_c.options());
  HNLM_DISPATCH_FLOATING(user_c.scalar_type(), "select_candidates_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const auto target_c = has_target ? target->to(c10::CppTypeToScalarType<acc_t>::value).contiguous() : at::Tensor();
    const acc_t* t_ptr = has_target ? target_c.data_ptr<acc_t>() : nullptr;
    const scalar_t* u_ptr = user_c.data_ptr<scalar_t>();
    const scalar_t* it_ptr = items_c.data_ptr<scalar_t>();
    const int64_t* c_ptr = candidates_c.data_ptr<int64_t>();
    int64_t* pos_ptr = positions.data_ptr<int64_t>();
    const int64_t row_bytes = d * static_cast<int64_t>(sizeof(scalar_t));
    with_width(d, [&](auto width) {
    constexpr int kD = decltype(width)::value;
    parallel_for_chunks(at::divup(B, kBatchGrain), [&](int64_t chunk) {
      for (int64_t b = chunk * kBatchGrain; b < std::min(B, (chunk + 1) * kBatchGrain); ++b) {
        acc_t best = acc_t(0);
        int64_t best_m = 0;
        for (int64_t m = 0; m < M; ++m) {
          const int64_t item = checked_candidate(c_ptr, b * M + m, I);
          if (b * M + m + kPrefetchRows < B * M) prefetch_row(it_ptr, c_ptr[b * M + m + kPrefetchRows], I, row_bytes, d);
          const acc_t s = dot<kD, scalar_t>(u_ptr + b * d, it_ptr + item * d, d);
          // AHNS: with an inf/nan target every |s - t| is inf/nan, so position 0 wins, as in torch.argmin.
          const acc_t key = t_ptr ? std::abs(s - t_ptr[b]) : s;
          const bool better = t_ptr ? improves<false>(key, best) : improves<true>(key, best);
          if (m == 0 || better) {
            best = key;
            best_m = m;
          }
        }
        pos_ptr[b] = best_m;
      }
    });    });
  });
  return positions;
}
