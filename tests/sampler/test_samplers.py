"""Sampler invariants on random embeddings: what each one selects, shapes, gradients, determinism."""
import dataclasses
import logging

import pytest
import torch

from recbole_hnlm.model.abstract import concat_pool, mean_pool
from recbole_hnlm.sampler import AHNS, DNS, RNS, CandidateGenerator, MixGCF, Propagation, SamplingContext

N_USERS, N_ITEMS, D, L, B, M = 30, 50, 8, 3, 16, 10


def propagation(layerwise=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    user_layers = torch.randn(N_USERS, L, D, generator=g, dtype=torch.float64, requires_grad=True)
    item_layers = torch.randn(N_ITEMS, L, D, generator=g, dtype=torch.float64, requires_grad=True)
    pool = concat_pool if layerwise else mean_pool
    return Propagation(user_ego=user_layers[:, 0], item_ego=item_layers[:, 0], user=pool(user_layers),
                       item=pool(item_layers), pool=pool, user_layers=user_layers, item_layers=item_layers,
                       layerwise_query=layerwise)


def context(emb, seed=1):
    g = torch.Generator().manual_seed(seed)
    user = torch.randint(0, N_USERS, (B,), generator=g)
    pos = torch.randint(1, N_ITEMS, (B,), generator=g)
    neg = torch.randint(1, N_ITEMS, (B,), generator=g)
    candidates = torch.randint(1, N_ITEMS, (B, M), generator=g)
    return SamplingContext(user=user, pos=pos, neg=neg, emb=emb, candidates=candidates)


def scores(ctx):
    return (ctx.emb.user[ctx.user].unsqueeze(1) * ctx.emb.item[ctx.candidates]).sum(-1)


def test_rns_returns_the_loader_negative():
    ctx = context(propagation())
    out = RNS({}, None)(ctx)
    assert torch.equal(out.item_ids[:, 0], ctx.neg)
    assert torch.allclose(out.pooled[:, 0], ctx.emb.item[ctx.neg])


def test_dns_picks_the_highest_scoring_candidate():
    ctx = context(propagation())
    sampler = DNS({"dns_candidates": M, "dns_topn": 1, "dns_variant": "single"}, None)
    out = sampler(ctx)
    expected = ctx.candidates.gather(1, scores(ctx).argmax(1, keepdim=True))
    assert torch.equal(out.item_ids, expected)
    out.pooled.sum().backward()  # gradients reach the chosen item rows only
    touched = ctx.emb.item_layers.grad.abs().sum((1, 2)) > 0
    assert set(torch.nonzero(touched).flatten().tolist()) == set(expected.flatten().tolist())


def test_dns_mn_variants():
    ctx = context(propagation())
    top3 = scores(ctx).topk(3, dim=1).indices
    shi = DNS({"dns_candidates": M, "dns_topn": 3, "dns_variant": "shi_sum"}, None)(ctx)
    assert shi.pooled.shape == (B, 3, D)
    assert torch.equal(shi.item_ids, ctx.candidates.gather(1, top3))
    single = DNS({"dns_candidates": M, "dns_topn": 3, "dns_variant": "single"}, None)(ctx)
    assert single.item_ids.shape == (B, 1)
    allowed = ctx.candidates.gather(1, top3)
    assert bool((single.item_ids == allowed).any(1).all())


def test_dns_single_draws_uniformly_among_the_top_n():
    """DNS(M, N) 'single': one of the N best candidates, each with probability 1/N (membership alone passed a
    sampler that always took the best one, or never the N-th)."""
    ctx = context(propagation())
    top3 = ctx.candidates.gather(1, scores(ctx).topk(3, dim=1).indices)  # best first
    sampler = DNS({"dns_candidates": M, "dns_topn": 3, "dns_variant": "single"}, None)
    torch.manual_seed(0)
    distinct = (top3[:, :1] != top3[:, 1:]).all(1) & (top3[:, 1] != top3[:, 2])  # candidates may repeat an item
    assert int(distinct.sum()) >= B // 2
    ranks = torch.cat([(sampler(ctx).item_ids == top3).int().argmax(1)[distinct] for _ in range(1000)])
    shares = torch.bincount(ranks, minlength=3).double() / ranks.numel()
    assert torch.allclose(shares, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.02), shares  # > 8,000 draws


def test_ahns_picks_the_candidate_closest_to_the_target_hardness():
    ctx = context(propagation())
    config = {"ahns_candidates": M, "ahns_alpha": 1.0, "ahns_beta": 0.1, "ahns_p": -2}
    sampler = AHNS(config, None)
    out = sampler(ctx)
    s_pos = (ctx.emb.user[ctx.user] * ctx.emb.item[ctx.pos]).sum(-1)
    target = 0.1 * (s_pos + 1.0).pow(-1)
    expected = ctx.candidates.gather(1, (scores(ctx) - target[:, None]).abs().argmin(1, keepdim=True))
    assert torch.equal(out.item_ids, expected)
    assert sampler.nonpositive_base == int(((s_pos + 1.0) <= 0).sum())


def test_ahns_counts_only_training_rows():
    """An eval-mode probe (the fhn analysis) added its rows to the epoch's 'rows had s+ + alpha <= 0' count."""
    ctx = context(propagation())
    sampler = AHNS({"ahns_candidates": M, "ahns_alpha": -10.0, "ahns_beta": 0.1, "ahns_p": -2.5}, None)
    sampler.eval()
    sampler(ctx)
    assert sampler.nonpositive_base == 0 and sampler.undefined_target == 0
    sampler.train()
    sampler(ctx)
    assert sampler.nonpositive_base == B and sampler.undefined_target == B  # every base negative, p + 1 not integer


def test_ahns_with_its_defaults_picks_as_dns_while_the_scores_are_small():
    """As documented (AHNS docstring, docs/results.md): early in training every candidate scores below the target
    beta / (s+ + 1) ~ 0.1, so the closest candidate is the highest-scored one."""
    emb = propagation()
    ctx = context(dataclasses.replace(emb, user=emb.user * 0.01, item=emb.item * 0.01))
    ahns = AHNS({"ahns_candidates": M, "ahns_alpha": 1.0, "ahns_beta": 0.1, "ahns_p": -2}, None)(ctx)
    dns = DNS({"dns_candidates": M, "dns_topn": 1, "dns_variant": "single"}, None)(ctx)
    assert float(scores(ctx).detach().abs().max()) < 0.05
    assert torch.equal(ahns.item_ids, dns.item_ids)
    ctx = context(emb)  # at the test's unit scale some candidates pass the target, and the two part
    assert not torch.equal(AHNS({"ahns_candidates": M, "ahns_alpha": 1.0, "ahns_beta": 0.1, "ahns_p": -2}, None)(ctx)
                           .item_ids, DNS({"dns_candidates": M, "dns_topn": 1, "dns_variant": "single"}, None)(ctx)
                           .item_ids)


def test_ahns_counts_and_reports_rows_without_a_target(caplog):
    """A non-integer p leaves rows with s+ + alpha < 0 without a target (NaN): they take their first candidate."""
    ctx = context(propagation())
    sampler = AHNS({"ahns_candidates": M, "ahns_alpha": 0.0, "ahns_beta": 0.1, "ahns_p": -1.5}, None)
    out = sampler(ctx)
    s_pos = (ctx.emb.user[ctx.user] * ctx.emb.item[ctx.pos]).sum(-1)
    negative = s_pos < 0
    assert 0 < int(negative.sum()) < B  # both kinds of rows in this draw
    assert sampler.undefined_target == int(negative.sum())
    assert torch.equal(out.item_ids[negative, 0], ctx.candidates[negative, 0])
    with caplog.at_level("INFO"):
        sampler.epoch_report()
    assert f"AHNS: {int(negative.sum())} rows had no finite target hardness" in caplog.text
    assert "ahns_p=-1.5" in caplog.text
    assert sampler.undefined_target == 0 and sampler.nonpositive_base == 0
    integer = AHNS({"ahns_candidates": M, "ahns_alpha": 0.0, "ahns_beta": 0.1, "ahns_p": -2}, None)
    integer(ctx)
    assert integer.undefined_target == 0 and integer.nonpositive_base == int((s_pos <= 0).sum())
    # a base of exactly 0: (0)^(p+1) is infinite for p < -1, also no target
    alpha = -float(s_pos[0].detach())
    at_zero = AHNS({"ahns_candidates": M, "ahns_alpha": alpha, "ahns_beta": 0.1, "ahns_p": -2}, None)
    at_zero(ctx)
    assert at_zero.undefined_target >= 1


@pytest.mark.parametrize("layerwise", [False, True])
def test_mixgcf_synthesises_the_official_negative(layerwise):
    ctx = context(propagation(layerwise))
    torch.manual_seed(7)
    out = MixGCF({"mixgcf_candidates": M}, None)(ctx)
    torch.manual_seed(7)
    alpha = torch.rand(B, L, dtype=torch.float64)
    # official formulation (MixGCF modules/LightGCN.py): mix every candidate, score, argmax per layer, pool
    pos = ctx.emb.item_layers[ctx.pos].detach()
    cand = ctx.emb.item_layers[ctx.candidates].detach()  # [B, M, L, D]
    mixed = alpha[:, None, :, None] * pos[:, None] + (1 - alpha[:, None, :, None]) * cand
    query = ctx.emb.user_layers[ctx.user].detach() if layerwise else ctx.emb.user[ctx.user].detach()[:, None]
    score = (mixed * query[:, None]).sum(-1)  # [B, M, L]
    chosen = score.argmax(1)  # [B, L]
    z = mixed[torch.arange(B)[:, None], chosen, torch.arange(L)[None]]
    pooled = concat_pool(z) if layerwise else mean_pool(z)
    assert torch.allclose(out.pooled[:, 0], pooled, atol=1e-12)
    assert torch.allclose(out.ego[:, 0], z[:, 0], atol=1e-12)
    out.pooled.sum().backward()
    assert ctx.emb.item_layers.grad is not None and ctx.emb.item_layers.grad.abs().sum() > 0


def test_mixgcf_on_a_bfloat16_stack():
    """LightGCN's ``layers_dtype``: float32 pooled embeddings, bf16 layer stack. MixGCF scores and mixes in bf16
    (float32 sums) and hands back float32 negatives: the official formulation on the rounded stack, in float64."""
    stack_dtype = torch.bfloat16
    g = torch.Generator().manual_seed(5)
    user_layers = torch.randn(N_USERS, L, D, generator=g).to(stack_dtype)
    item_layers = torch.randn(N_ITEMS, L, D, generator=g).to(stack_dtype).requires_grad_()
    emb = Propagation(user_ego=user_layers[:, 0].float(), item_ego=item_layers[:, 0].float(),
                      user=user_layers.mean(1, dtype=torch.float32), item=item_layers.mean(1, dtype=torch.float32),
                      pool=mean_pool, user_layers=user_layers, item_layers=item_layers)
    ctx = context(emb)
    torch.manual_seed(7)
    out = MixGCF({"mixgcf_candidates": M}, None)(ctx)
    assert out.pooled.dtype == torch.float32 and out.ego.dtype == torch.float32
    torch.manual_seed(7)
    alpha = torch.rand(B, L).double()  # drawn in the pooled (float32) dtype, whatever the stack's
    pos = item_layers[ctx.pos].detach().double()
    cand = item_layers[ctx.candidates].detach().double()
    query = emb.user[ctx.user].to(stack_dtype).double()
    chosen = (cand * query[:, None, None]).sum(-1).argmax(1)  # raw-candidate argmax (algorithms.md §3)
    z = alpha[..., None] * pos + (1 - alpha[..., None]) * cand[torch.arange(B)[:, None], chosen, torch.arange(L)[None]]
    torch.testing.assert_close(out.pooled[:, 0].double(), mean_pool(z), atol=2e-2, rtol=2e-2)
    out.pooled.sum().backward()
    assert item_layers.grad.dtype == stack_dtype and item_layers.grad.abs().sum() > 0


def test_hard_samplers_are_harder_than_uniform():
    ctx = context(propagation(), seed=3)
    u = ctx.emb.user[ctx.user]
    hard = DNS({"dns_candidates": M, "dns_topn": 1, "dns_variant": "single"}, None)(ctx).pooled[:, 0]
    easy = RNS({}, None)(ctx).pooled[:, 0]
    assert (u * hard).sum(-1).mean() > (u * easy).sum(-1).mean()


@pytest.mark.parametrize("device_rounds", [0, 3, 100], ids=["host-checked", "3-device-rounds", "all-device-rounds"])
def test_candidates_exclude_training_positives_and_are_seeded(device_rounds):
    """Whatever share of the redraw rounds runs without host checks (the GPU default is 3), no training positive is
    left and the draws are seeded; users 0-19 have ~15 of 39 items each, so every round has hits to redraw."""
    g = torch.Generator().manual_seed(0)
    users = torch.randint(0, 20, (400,), generator=g)
    items = torch.randint(1, 40, (400,), generator=g)
    generator = CandidateGenerator(users, items, n_items=40, device_rounds=device_rounds)
    batch = torch.arange(20).repeat(5)
    torch.manual_seed(5)
    first = generator(batch, 64)
    torch.manual_seed(5)
    second = generator(batch, 64)
    assert torch.equal(first, second)
    assert first.shape == (100, 64) and int(first.min()) >= 1 and int(first.max()) < 40
    positives = set(zip(users.tolist(), items.tolist()))
    leaked = sum((u, c) in positives for u, row in zip(batch.tolist(), first.tolist()) for c in row)
    assert leaked == 0 and generator.leaked == 0


@pytest.mark.parametrize("device_rounds", [100, None])
def test_device_rounds_keep_candidates_uniform_over_non_positives(device_rounds):
    """Replacing hits from full fresh draws (device rounds) or by per-hit redraws (the host rounds, the CPU's
    default) must leave every allowed item equally likely, the last one included."""
    users = torch.zeros(30, dtype=torch.long)
    items = torch.arange(1, 31)  # user 0 owns items 1..30 of 1..39: 9 allowed items
    generator = CandidateGenerator(users, items, n_items=40, max_rounds=100, device_rounds=device_rounds)
    torch.manual_seed(0)
    draws = generator(torch.zeros(400, dtype=torch.long), 90).flatten()
    assert int(draws.min()) >= 31 and generator.leaked == 0
    counts = torch.bincount(draws - 31, minlength=9).double()
    expected = draws.numel() / 9
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 26.1, counts  # chi-square, 8 degrees of freedom, p = 0.001


@pytest.mark.parametrize("max_rounds,device_rounds", [(0, 0), (5, 0), (5, 2), (2, 7)])
def test_candidate_redraws_stop_after_max_rounds_and_count_what_is_left(max_rounds, device_rounds, caplog):
    """A user who owns every item: exactly ``max_rounds`` redraw rounds (device rounds included, never more than
    max_rounds), then every remaining positive is kept, counted in ``leaked`` and warned about once."""

    class CountingGenerator(CandidateGenerator):
        checks = 0

        def is_positive(self, user, items):
            CountingGenerator.checks += 1
            return super().is_positive(user, items)

    users, items = torch.zeros(9, dtype=torch.long), torch.arange(1, 10)
    generator = CountingGenerator(users, items, n_items=10, max_rounds=max_rounds, device_rounds=device_rounds)
    with caplog.at_level("WARNING"):
        generator(torch.zeros(3, dtype=torch.long), 4)
        generator(torch.zeros(3, dtype=torch.long), 4)
    assert CountingGenerator.checks == 2 * (1 + max_rounds)
    assert generator.leaked == 2 * 3 * 4
    assert caplog.text.count("still training positives after") == 1


def test_ahns_counts_a_base_of_exactly_zero_as_nonpositive():
    """AHNS counts a base s+ + alpha of exactly 0 as non-positive (its target is undefined there)."""
    user = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    item = torch.tensor([[0.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [0.5, 0.0]])
    emb = Propagation(user_ego=user, item_ego=item, user=user, item=item, pool=mean_pool)
    sampler = AHNS({"ahns_candidates": 2, "ahns_alpha": 1.0, "ahns_beta": 0.1, "ahns_p": -2}, None).train()
    ctx = SamplingContext(user=torch.tensor([0]), pos=torch.tensor([1]), neg=torch.tensor([2]), emb=emb,
                          candidates=torch.tensor([[2, 3]]))  # s+ = -1, base = s+ + alpha = 0 exactly
    sampler(ctx)
    assert sampler.nonpositive_base == 1 and sampler.undefined_target == 1


def test_the_first_leak_is_warned_about(caplog):
    """Candidates that stay training positives after every redraw are warned about from the first one."""
    gen = CandidateGenerator(torch.tensor([0, 0, 0]), torch.tensor([1, 2, 3]), n_items=4, max_rounds=2)
    with caplog.at_level(logging.WARNING):
        gen(torch.tensor([0]), 3)
    assert gen.leaked == 3 and "still training positives" in caplog.text
