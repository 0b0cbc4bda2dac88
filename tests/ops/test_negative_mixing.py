"""mixgcf_mix / candidate_scores / select_candidates: kernel vs reference vs the official MixGCF formulation.

Ids must match exactly; float32 values atol=rtol=1e-5, float64 1e-10. Random Gaussian inputs make score ties
vanishingly unlikely except where a test creates them on purpose (duplicate candidates).
"""
import contextlib

import pytest
import torch

from recbole_hnlm.ops import WITH_EXT, candidate_scores, mixgcf_mix, select_candidates
from recbole_hnlm.ops import _ext
from recbole_hnlm.ops.reference import (
    candidate_scores_reference,
    mixgcf_mix_official,
    mixgcf_mix_reference,
    select_candidates_reference,
)

# switched off by RECBOLE_HNLM_DISABLE_EXT, the kernel-vs-reference tests would compare the reference with itself
requires_ext = pytest.mark.skipif(not (WITH_EXT and _ext.is_enabled()),
                                  reason="recbole_hnlm._C is not built, or RECBOLE_HNLM_DISABLE_EXT switches it off")

TOL = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.float64: dict(atol=1e-10, rtol=1e-10)}

# (B, M, L, d, I)
SHAPES = [(1, 1, 1, 8, 5), (6, 7, 4, 64, 50), (33, 16, 2, 13, 40), (0, 4, 3, 8, 10), (17, 64, 1, 3, 200)]


def mixgcf_inputs(B, M, L, d, I, dtype, per_layer_query, seed=0):
    gen = torch.Generator().manual_seed(seed)
    query = torch.randn((B, L, d) if per_layer_query else (B, d), generator=gen, dtype=dtype)
    pos = torch.randn(B, L, d, generator=gen, dtype=dtype)
    items = torch.randn(I, L, d, generator=gen, dtype=dtype)
    candidates = torch.randint(0, I, (B, M), generator=gen)
    alpha = torch.rand(B, L, generator=gen, dtype=dtype)
    return query, pos, items, candidates, alpha


@requires_ext
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("per_layer_query", [False, True])
def test_mixgcf_mix_matches_reference(shape, dtype, per_layer_query):
    query, pos, items, candidates, alpha = mixgcf_inputs(*shape, dtype, per_layer_query)
    pos.requires_grad_()
    items.requires_grad_()
    pos_ref, items_ref = pos.detach().clone().requires_grad_(), items.detach().clone().requires_grad_()
    z, chosen = mixgcf_mix(query, pos, items, candidates, alpha)
    z_ref, chosen_ref = mixgcf_mix_reference(query, pos_ref, items_ref, candidates, alpha)
    assert chosen.dtype == torch.int64 and chosen.shape == shape[:1] + shape[2:3]
    assert torch.equal(chosen, chosen_ref)
    torch.testing.assert_close(z, z_ref, **TOL[dtype])
    upstream = torch.randn_like(z)
    (z * upstream).sum().backward()
    (z_ref * upstream).sum().backward()
    if shape[0] == 0:
        return
    torch.testing.assert_close(pos.grad, pos_ref.grad, **TOL[dtype])
    torch.testing.assert_close(items.grad, items_ref.grad, **TOL[dtype])


@requires_ext
@pytest.mark.parametrize("per_layer_query", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_chosen_ids_equal_official_mix_then_score(per_layer_query, seed):
    """The argmax identity (algorithms.md §3): scoring raw candidates picks what scoring mixed candidates picks."""
    B, M, L, d, I = 64, 64, 4, 32, 500
    query, pos, items, candidates, alpha = mixgcf_inputs(B, M, L, d, I, torch.float64, per_layer_query, seed)
    z, chosen = mixgcf_mix(query, pos, items, candidates, alpha)
    z_official, chosen_official = mixgcf_mix_official(query, pos, items, candidates, alpha)
    assert torch.equal(chosen, chosen_official)
    torch.testing.assert_close(z, z_official, atol=1e-12, rtol=1e-12)
    # and the official formulation really does pick per-layer, not one candidate for all layers
    assert (chosen_official != chosen_official[:, :1]).any()


@requires_ext
def test_mixgcf_gradcheck():
    query, pos, items, candidates, alpha = mixgcf_inputs(4, 6, 3, 5, 7, torch.float64, False, seed=3)
    candidates[0] = 2  # several rows and layers choose item 2: the scatter must accumulate
    candidates[1, :] = 2
    pos.requires_grad_()
    items.requires_grad_()
    assert torch.autograd.gradcheck(lambda p, i: mixgcf_mix(query, p, i, candidates, alpha)[0], (pos, items))
    query3, pos3, items3, candidates3, alpha3 = mixgcf_inputs(3, 4, 2, 6, 5, torch.float64, True, seed=4)
    pos3.requires_grad_()
    items3.requires_grad_()
    assert torch.autograd.gradcheck(lambda p, i: mixgcf_mix(query3, p, i, candidates3, alpha3)[0], (pos3, items3))


@requires_ext
def test_mixgcf_repeated_choice_accumulates():
    B, M, L, d, I = 300, 3, 2, 8, 3  # only 3 items: every item is chosen by ~200 (row, layer) pairs
    query, pos, items, candidates, alpha = mixgcf_inputs(B, M, L, d, I, torch.float32, False, seed=5)
    items.requires_grad_()
    z, chosen = mixgcf_mix(query, pos, items, candidates, alpha)
    z.sum().backward()
    expected = torch.zeros(I, L, d)
    for b in range(B):
        for l in range(L):
            expected[chosen[b, l], l] += 1 - alpha[b, l]
    torch.testing.assert_close(items.grad, expected, atol=1e-4, rtol=1e-5)


@requires_ext
def test_mixgcf_saves_only_ids_and_alpha():
    query, pos, items, candidates, alpha = mixgcf_inputs(64, 16, 4, 32, 100, torch.float32, False)
    items.requires_grad_()
    packed = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: packed.append(t) or t, lambda t: t):
        z, _ = mixgcf_mix(query, pos, items, candidates, alpha)
    assert sorted(tuple(t.shape) for t in packed) == [(64, 4), (64, 4)]
    assert z.requires_grad


def test_official_mixgcf_keeps_the_mixed_candidates_for_backward_as_mixgcfs_code_does():
    """The eager baseline detached the query, so autograd kept only the [B, M, L, d] gather's indices: 3.3 MB saved
    for backward where MixGCF's own code (its pooled user embedding requires grad) keeps the mixed tensor, 134 MB at
    the benchmark's B = 2048, M = 64. Its outputs and gradients do not change (the argmax has no gradient)."""
    B, M, L, d, I = 16, 8, 4, 32, 100
    query, pos, items, candidates, alpha = mixgcf_inputs(B, M, L, d, I, torch.float32, False)
    pos.requires_grad_(), items.requires_grad_()
    saved = {}
    for name, q in (("detached", query), ("with_grad", query.clone().requires_grad_())):
        sizes = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t, lambda t: t):
            z, chosen = mixgcf_mix_official(q, pos, items, candidates, alpha)
        saved[name] = sum(sizes)
        assert torch.equal(chosen, mixgcf_mix_official(query, pos, items, candidates, alpha)[1])
    assert saved["with_grad"] >= saved["detached"] + B * M * L * d  # the mixed candidates


@requires_ext
def test_mixgcf_query_gets_no_gradient():
    query, pos, items, candidates, alpha = mixgcf_inputs(5, 4, 3, 8, 9, torch.float64, False)
    query.requires_grad_()
    pos.requires_grad_()
    z, chosen = mixgcf_mix(query, pos, items, candidates, alpha)
    z.sum().backward()
    assert query.grad is None and not chosen.requires_grad
    torch.testing.assert_close(pos.grad, alpha[..., None].expand_as(pos))


@requires_ext
def test_mixgcf_low_precision():
    query, pos, items, candidates, alpha = mixgcf_inputs(16, 8, 4, 64, 30, torch.float32, False)
    z, chosen = mixgcf_mix(query.bfloat16(), pos.bfloat16(), items.bfloat16(), candidates, alpha)
    assert z.dtype == torch.bfloat16
    # the chosen id of every (row, layer) reaches the best raw score up to bf16 rounding of the inputs
    q, it = query.bfloat16().float(), items.bfloat16().float()
    scores = torch.einsum("bd,bmld->bml", q, it[candidates])
    chosen_scores = torch.einsum("bd,bld->bl", q, it[chosen, torch.arange(4)])
    torch.testing.assert_close(chosen_scores, scores.max(1).values, atol=1e-3, rtol=1e-3)
    expected = alpha[..., None] * pos.bfloat16().float() + (1 - alpha[..., None]) * it[chosen, torch.arange(4)]
    torch.testing.assert_close(z.float(), expected, atol=2e-2, rtol=2e-2)


def test_mixgcf_rejects_bad_inputs():
    query, pos, items, candidates, alpha = mixgcf_inputs(3, 4, 2, 5, 6, torch.float32, False)
    with pytest.raises(IndexError, match="6"):  # both paths: IndexError
        bad = candidates.clone()
        bad[1, 2] = 6
        mixgcf_mix(query, pos, items, bad, alpha)
    with pytest.raises(TypeError, match="int64"):
        mixgcf_mix(query, pos, items, candidates.int(), alpha)
    with pytest.raises(ValueError, match="alpha"):
        mixgcf_mix(query, pos, items, candidates, alpha[:, :1])
    with pytest.raises(ValueError, match="query"):
        mixgcf_mix(query[:, :3], pos, items, candidates, alpha)
    with _ext.disabled(), pytest.raises(IndexError, match="candidates"):
        bad = candidates.clone()
        bad[0, 0] = -1
        mixgcf_mix(query, pos, items, bad, alpha)


@requires_ext
def test_kernel_checks_name_the_argument():
    query, pos, items, candidates, alpha = mixgcf_inputs(3, 4, 2, 5, 6, torch.float32, False)
    with pytest.raises(RuntimeError, match="candidates must be int64"):
        torch.ops.recbole_hnlm.mixgcf_mix(query, pos, items, candidates.int(), alpha)
    with pytest.raises(RuntimeError, match="item_layers.size"):
        torch.ops.recbole_hnlm.mixgcf_mix(query, pos, items[:, :1], candidates, alpha)
    bad = candidates.clone()
    bad[2, 3] = 99
    with pytest.raises(IndexError, match="outside"):  # the fallback's exception type
        torch.ops.recbole_hnlm.mixgcf_mix(query, pos, items, bad, alpha)
    with pytest.raises(IndexError, match="outside"):
        torch.ops.recbole_hnlm.candidate_scores(query, items[:, 0], bad)


def scoring_inputs(B, M, d, I, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    user = torch.randn(B, d, generator=gen, dtype=dtype)
    items = torch.randn(I, d, generator=gen, dtype=dtype)
    candidates = torch.randint(0, I, (B, M), generator=gen)
    return user, items, candidates


@requires_ext
@pytest.mark.parametrize("B,M,d,I", [(1, 1, 1, 1), (7, 5, 64, 20), (0, 3, 8, 4), (300, 64, 17, 1000)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_scoring_and_selection_match_reference(B, M, d, I, dtype):
    user, items, candidates = scoring_inputs(B, M, d, I, dtype)
    scores = candidate_scores(user, items, candidates)
    torch.testing.assert_close(scores, candidate_scores_reference(user, items, candidates), **TOL[dtype])
    assert scores.shape == (B, M) and scores.dtype == dtype
    dns = select_candidates(user, items, candidates)
    assert dns.dtype == torch.int64 and torch.equal(dns, select_candidates_reference(user, items, candidates))
    target = torch.randn(B, dtype=dtype)
    ahns = select_candidates(user, items, candidates, target)
    assert torch.equal(ahns, select_candidates_reference(user, items, candidates, target))


@requires_ext
def test_selection_ties_pick_smallest_position():
    user, items, _ = scoring_inputs(4, 1, 8, 6)
    # each row holds the same item at several positions: exact ties
    candidates = torch.tensor([[3, 3, 1, 3], [2, 5, 5, 2], [0, 0, 0, 0], [4, 1, 4, 1]])
    dns = select_candidates(user, items, candidates)
    assert torch.equal(dns, select_candidates_reference(user, items, candidates))
    first = [(candidates[b] == candidates[b, dns[b]]).nonzero()[0, 0].item() for b in range(4)]
    assert dns.tolist() == first
    target = torch.zeros(4)
    assert torch.equal(select_candidates(user, items, candidates, target),
                       select_candidates_reference(user, items, candidates, target))


@requires_ext
def test_ahns_inf_and_nan_targets_follow_torch_argmin():
    user, items, candidates = scoring_inputs(4, 6, 8, 30)
    target = torch.tensor([float("inf"), float("-inf"), float("nan"), 0.5])
    got = select_candidates(user, items, candidates, target)
    assert torch.equal(got, select_candidates_reference(user, items, candidates, target))
    assert got[:3].tolist() == [0, 0, 0]


@requires_ext
def test_scoring_low_precision():
    user, items, candidates = scoring_inputs(32, 16, 64, 100)
    ub, ib = user.bfloat16(), items.bfloat16()
    scores = candidate_scores(ub, ib, candidates)
    assert scores.dtype == torch.bfloat16
    torch.testing.assert_close(scores.float(), candidate_scores_reference(ub.float(), ib.float(), candidates),
                               atol=5e-2, rtol=1e-2)
    pos = select_candidates(ub, ib, candidates)
    exact = candidate_scores_reference(ub.float(), ib.float(), candidates)
    torch.testing.assert_close(exact.gather(1, pos[:, None])[:, 0], exact.max(1).values, atol=1e-3, rtol=1e-3)


def test_reference_fallback_through_public_api():
    query, pos, items, candidates, alpha = mixgcf_inputs(8, 5, 3, 6, 12, torch.float64, True)
    user, table, cand = scoring_inputs(8, 5, 6, 12, torch.float64)
    with _ext.disabled():
        z, chosen = mixgcf_mix(query, pos, items, candidates, alpha)
        scores = candidate_scores(user, table, cand)
        dns = select_candidates(user, table, cand)
        ahns = select_candidates(user, table, cand, torch.zeros(8, dtype=torch.float64))
    z_official, chosen_official = mixgcf_mix_official(query, pos, items, candidates, alpha)
    assert torch.equal(chosen, chosen_official)
    torch.testing.assert_close(z, z_official)
    torch.testing.assert_close(scores, (user[:, None] * table[cand]).sum(-1))
    assert torch.equal(dns, scores.argmax(1))
    assert torch.equal(ahns, scores.abs().argmin(1))


def kernels(on: bool):
    """The enclosed calls run on the compiled kernels (``on``) or on the PyTorch fallback."""
    return contextlib.nullcontext() if on else _ext.disabled()


BOTH_PATHS = pytest.mark.parametrize("kernel", [pytest.param(True, marks=requires_ext), False],
                                     ids=["kernel", "fallback"])


@BOTH_PATHS
def test_mixgcf_second_derivatives(kernel):
    """``create_graph=True`` through MixGCF: gradgradcheck, and a gradient penalty's gradient equal on both paths
    (the kernel's backward was once_differentiable, and ``torch.autograd.grad`` then found the inputs unused)."""
    query, pos, items, candidates, alpha = mixgcf_inputs(5, 4, 3, 6, 4, torch.float64, False, seed=5)
    pos.requires_grad_()
    items.requires_grad_()
    with kernels(kernel):
        assert torch.autograd.gradgradcheck(lambda p, i: mixgcf_mix(query, p, i, candidates, alpha)[0], (pos, items))

        def penalty_gradient():
            z = mixgcf_mix(query, pos, items, candidates, alpha)[0]
            grads = torch.autograd.grad(z.square().sum(), (pos, items), create_graph=True)
            return torch.autograd.grad(sum(g.square().sum() for g in grads), (pos, items))

        ours = penalty_gradient()
    chosen = mixgcf_mix_reference(query, pos, items, candidates, alpha)[1]
    a = alpha[..., None]
    z = a * pos + (1 - a) * items[chosen, torch.arange(3)]  # the mixed negatives, by advanced indexing
    grads = torch.autograd.grad(z.square().sum(), (pos, items), create_graph=True)
    expected = torch.autograd.grad(sum(g.square().sum() for g in grads), (pos, items))
    for actual, wanted in zip(ours, expected):
        assert wanted.abs().max() > 1e-3
        torch.testing.assert_close(actual, wanted, **TOL[torch.float64])


@BOTH_PATHS
@pytest.mark.parametrize("value", [1.0, 1.5, -0.25, float("nan")])
def test_mixgcf_refuses_alpha_outside_unit_interval(kernel, value):
    """The argmax identity needs 1 - alpha > 0; alpha >= 1 silently chose other negatives than published MixGCF."""
    query, pos, items, candidates, alpha = mixgcf_inputs(6, 4, 3, 5, 9, torch.float32, False)
    alpha[4, 2] = value
    with kernels(kernel), pytest.raises(ValueError, match="alpha"):
        mixgcf_mix(query, pos, items, candidates, alpha)


@BOTH_PATHS
@pytest.mark.parametrize("stack_dtype", [torch.float32, torch.bfloat16])
def test_mixgcf_checks_alpha_in_the_precision_it_mixes_in(kernel, stack_dtype):
    """float64 alpha = 1 - 1e-9 is 1 in float32: the kernel refused it, the fallback mixed with alpha = 1 (Z = P)."""
    query, pos, items, candidates, alpha = mixgcf_inputs(6, 4, 3, 5, 9, torch.float32, False)
    query, pos, items, alpha = query.to(stack_dtype), pos.to(stack_dtype), items.to(stack_dtype), alpha.double()
    alpha[1, 0] = 1 - 1e-9
    with kernels(kernel), pytest.raises(ValueError, match="alpha"):
        mixgcf_mix(query, pos, items, candidates, alpha)


@BOTH_PATHS
def test_mixgcf_refuses_an_empty_layer_stack(kernel):
    query, pos, items, candidates, alpha = mixgcf_inputs(6, 4, 3, 5, 9, torch.float32, False)
    with kernels(kernel), pytest.raises(ValueError, match="L >= 1"):
        mixgcf_mix(query, pos[:, :0], items[:, :0], candidates, alpha[:, :0])


def test_reference_mixgcf_gives_alpha_no_gradient():
    """Z is differentiable w.r.t. pos_layers and item_layers only, on both paths (the reference let alpha's flow)."""
    query, pos, items, candidates, alpha = mixgcf_inputs(4, 3, 2, 5, 6, torch.float64, False)
    alpha.requires_grad_()
    z, _ = mixgcf_mix_reference(query, pos, items, candidates, alpha)
    assert not z.requires_grad


@BOTH_PATHS
def test_both_paths_refuse_the_same_dtypes(kernel):
    """The kernels' dtype contract holds on the fallback too: code written on one path runs on the other."""
    query, pos, items, candidates, alpha = mixgcf_inputs(3, 4, 2, 5, 6, torch.float32, False)
    user, table, cand = scoring_inputs(3, 4, 5, 6)
    with kernels(kernel):
        with pytest.raises(TypeError, match="query and pos_layers must have the same dtype"):
            mixgcf_mix(query.double(), pos, items, candidates, alpha)
        with pytest.raises(TypeError, match="item_layers and pos_layers must have the same dtype"):
            mixgcf_mix(query, pos, items.double(), candidates, alpha)
        with pytest.raises(TypeError, match="alpha must be a floating tensor"):
            mixgcf_mix(query, pos, items, candidates, torch.zeros(3, 2, dtype=torch.long))
        with pytest.raises(TypeError, match="user and items must have the same dtype"):
            select_candidates(user.double(), table, cand)
        with pytest.raises(TypeError, match="user and items must have the same dtype"):
            candidate_scores(user, table.double(), cand)
        with pytest.raises(TypeError, match="target must be a floating tensor"):
            select_candidates(user, table, cand, torch.zeros(3, dtype=torch.long))
        with pytest.raises(TypeError, match="pos_layers must be a floating tensor"):
            mixgcf_mix(query.long(), pos.long(), items.long(), candidates, alpha)
        for op in (candidate_scores, select_candidates):
            with pytest.raises(TypeError, match="user must be a floating tensor"):
                op(user.long(), table.long(), cand)


@requires_ext
def test_raw_kernel_names_target():
    user, table, cand = scoring_inputs(3, 4, 5, 6)
    with pytest.raises(RuntimeError, match=r"^target must be a floating tensor"):
        torch.ops.recbole_hnlm.select_candidates(user, table, cand, torch.zeros(3, dtype=torch.long))


def test_mixgcf_reference_accepts_an_alpha_of_exactly_zero():
    """The reference path accepts alpha = 0 (torch.rand draws 0.0 with probability 2^-24: about once per 2,000
    MixGCF batches of 8,192 draws, a check of alpha > 0 would fail at random); the positive then has no share."""
    from recbole_hnlm.ops import _ext, mixgcf_mix

    g = torch.Generator().manual_seed(0)
    items = torch.randn(5, 2, 3, generator=g, dtype=torch.float64)
    alpha = torch.tensor([[0.0, 0.5]], dtype=torch.float64)
    with _ext.disabled():
        z, chosen = mixgcf_mix(torch.randn(1, 3, dtype=torch.float64), items[1:2], items, torch.tensor([[2, 3]]), alpha)
    assert torch.equal(z[0, 0], items[chosen[0, 0], 0])


@BOTH_PATHS
def test_mixgcf_with_zero_wide_embeddings(kernel):
    """d = 0 ran on the kernel; the fallback failed reshaping the zero-element stack (``reshape(-1, 0)``). Every
    score is 0, so both pick the first candidate."""
    query, pos, items = torch.randn(2, 0), torch.randn(2, 1, 0), torch.randn(3, 1, 0)
    candidates, alpha = torch.tensor([[1, 0], [2, 2]]), torch.rand(2, 1)
    with kernels(kernel):
        z, chosen = mixgcf_mix(query, pos, items, candidates, alpha)
    assert z.shape == (2, 1, 0) and chosen.tolist() == [[1], [2]]



def test_fallback_mixgcf_returns_16_bit_inputs_in_their_dtype():
    pos, items = torch.randn(3, 2, 4).to(torch.bfloat16), torch.randn(5, 2, 4).to(torch.bfloat16)
    with _ext.disabled():
        z, _ = mixgcf_mix(pos[:, 0], pos, items, torch.randint(0, 5, (3, 4)), torch.rand(3, 2))
    assert z.dtype == torch.bfloat16


def test_reference_candidate_scores_carry_no_gradient():
    user = torch.randn(2, 4, requires_grad=True)
    items = torch.randn(5, 4, requires_grad=True)
    assert not candidate_scores_reference(user, items, torch.randint(0, 5, (2, 3))).requires_grad


def test_ahns_target_is_compared_in_the_scores_precision():
    """A float64 target nearer item 1 in float64 ties in float32 (the scores' precision): the first position wins,
    on the reference as in the kernel."""
    user = torch.ones(1, 1)
    items = torch.tensor([[1.0], [1.0 + 2**-22]])  # float32 scores 2 ulp apart
    target = torch.tensor([1.0 + 2**-23 + 2**-30], dtype=torch.float64)
    candidates = torch.tensor([[0, 1]])
    assert select_candidates_reference(user, items, candidates, target).tolist() == [0]
    if WITH_EXT and _ext.is_enabled():
        assert select_candidates(user, items, candidates, target).tolist() == [0]
