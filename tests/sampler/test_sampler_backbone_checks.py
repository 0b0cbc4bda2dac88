"""Mutation-audit tests of the samplers (DNS, AHNS, MixGCF, RNS, candidates) and the backbones (MF, LightGCN, NGCF,
SGL, the shared loss): behaviour no earlier test pinned down (each test names the gap it closes)."""
import logging
import os
import sys

import pytest
import torch

from recbole_hnlm.errors import ConfigError
from recbole_hnlm.sampler import DNS, CandidateGenerator
from test_samplers import M, context, propagation, scores

sys.path.insert(0, os.path.normpath(os.path.join(os.path.dirname(__file__), os.pardir, "model")))
from test_backbones import build  # noqa: E402  (tests/model is not on sys.path when this file runs alone)
from test_config import make  # noqa: E402  (tests/ is, through its conftest)


# -- DNS ---------------------------------------------------------------------------------------------------------------
def test_dns_mn_with_n_two_keeps_both_of_the_top_two():
    """N = 2 took the N = 1 path (the argmax alone) unseen: the earlier tests used N = 1 and N = 3 only."""
    ctx = context(propagation())
    top2 = ctx.candidates.gather(1, scores(ctx).topk(2, dim=1).indices)
    shi = DNS({"dns_candidates": M, "dns_topn": 2, "dns_variant": "shi_sum"}, None)(ctx)
    assert torch.equal(shi.item_ids, top2)
    single = DNS({"dns_candidates": M, "dns_topn": 2, "dns_variant": "single"}, None)
    torch.manual_seed(0)
    picks = torch.cat([single(ctx).item_ids for _ in range(40)], dim=1)  # [B, 40]
    assert bool((picks == top2[:, :1]).logical_or(picks == top2[:, 1:]).all())
    distinct = top2[:, 0] != top2[:, 1]
    assert int(distinct.sum()) > 0
    assert bool((picks[distinct] == top2[distinct, 1:]).any(1).all())  # the second best is drawn too


@pytest.mark.parametrize("key,value", [("dns_topn", 0), ("ahns_p", -1), ("ahns_p", -1.0), ("ahns_beta", 0)])
def test_sampler_option_bounds_are_refused_at_the_edge(fast_config, key, value):
    """The bounds themselves: N = 0 (no negative at all), p = -1 (a constant target beta, no adaptive hardness), and
    beta = 0 (the target 0 whatever the positive) passed; only values far outside were tested."""
    sampler = {"dns": "DNS", "ahns": "AHNS"}[key.split("_")[0]]
    with pytest.raises(ConfigError, match=f"'{key}'"):
        make(fast_config, model="LightGCN", sampler=sampler, **{key: value})


def test_sampler_option_bounds_inside_are_accepted(fast_config):
    assert make(fast_config, model="LightGCN", sampler="DNS", dns_topn=32, dns_candidates=32)["dns_topn"] == 32
    assert make(fast_config, model="LightGCN", sampler="AHNS", ahns_p=-1.01, ahns_beta=1e-9)["ahns_p"] == -1.01


# -- AHNS through the model --------------------------------------------------------------------------------------------
def test_a_models_epoch_end_logs_and_resets_the_ahns_counts(fast_config, caplog):
    """The model's on_epoch_end runs the sampler's epoch report: the count of rows with s+ + alpha <= 0 (alpha = -10:
    every row) is logged at INFO and reset. Neither the hook's call nor that INFO line was tested (only the warning
    about rows without a target, on a bare sampler)."""
    model, batch, _ = build(fast_config, "MF", sampler="AHNS", ahns_alpha=-10.0, ahns_candidates=4)
    model.on_epoch_start(0)
    model.calculate_loss(batch)
    rows = len(batch[model.USER_ID])
    assert model.sampler.nonpositive_base == rows and model.sampler.undefined_target == 0  # p = -2: all defined
    with caplog.at_level(logging.INFO):
        model.on_epoch_end(0)
    assert f"AHNS: {rows} rows had s+ + alpha <= 0 this epoch" in caplog.text
    assert "no finite target hardness" not in caplog.text
    assert model.sampler.nonpositive_base == 0
    caplog.clear()
    with caplog.at_level(logging.INFO):
        model.on_epoch_end(1)  # an epoch without such rows says nothing
    assert "AHNS:" not in caplog.text


def test_the_ahns_target_of_a_float64_model_is_float64():
    """select_candidates scores a float64 model's candidates in float64 and casts the target to it: the target was
    computed in float32 first, so its rounding (~1e-8) could choose another candidate than the formula's."""
    from recbole_hnlm.sampler import AHNS

    ctx = context(propagation())  # float64 embeddings
    sampler = AHNS({"ahns_candidates": M, "ahns_alpha": 1.0, "ahns_beta": 0.1, "ahns_p": -2.5}, None)
    s_pos = (ctx.emb.user[ctx.user] * ctx.emb.item[ctx.pos]).sum(-1).detach()
    target = sampler.target(ctx)
    assert target.dtype == torch.float64
    torch.testing.assert_close(target, 0.1 * (s_pos + 1.0) ** -1.5, rtol=1e-14, atol=0, equal_nan=True)


# -- candidates --------------------------------------------------------------------------------------------------------
def test_candidates_without_any_training_interaction():
    """No training pair at all (an empty key array): searchsorted's clamp would index position -1; every draw is
    allowed, nothing leaks."""
    generator = CandidateGenerator(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), n_items=6)
    torch.manual_seed(0)
    drawn = generator(torch.tensor([0, 1, 2]), 50)
    assert drawn.shape == (3, 50) and int(drawn.min()) >= 1 and int(drawn.max()) <= 5
    assert generator.leaked == 0
    assert not bool(generator.is_positive(torch.tensor([0, 1]), torch.tensor([1, 5])).any())


def test_candidates_on_the_cpu_check_once_when_nothing_collides():
    """On the CPU the default is no device round (full redraws cost more than a check there): a batch without a
    collision is one membership check, and the draws are exactly torch.randint's."""

    class CountingGenerator(CandidateGenerator):
        checks = 0

        def is_positive(self, user, items):
            CountingGenerator.checks += 1
            return super().is_positive(user, items)

    generator = CountingGenerator(torch.tensor([5]), torch.tensor([1]), n_items=10)  # only user 5 owns an item
    torch.manual_seed(3)
    drawn = generator(torch.tensor([0, 1, 2, 3]), 16)
    assert CountingGenerator.checks == 1
    torch.manual_seed(3)
    assert torch.equal(drawn, torch.randint(1, 10, (4, 16)))


# -- backbones ---------------------------------------------------------------------------------------------------------
def _xavier_bound(weight):
    return (6 / (weight.shape[0] + weight.shape[1])) ** 0.5


@pytest.mark.parametrize("model_name", ["MF", "LightGCN", "NGCF"])
def test_embeddings_start_xavier_uniform(fast_config, model_name):
    """Xavier-uniform embeddings (MixGCF/AHNS/LightGCN code, algorithms.md §0); nn.Embedding's own N(0, 1) init went
    unnoticed for either table."""
    model, _, _ = build(fast_config, model_name)
    for weight in (model.user_embedding.weight, model.item_embedding.weight):
        bound, largest = _xavier_bound(weight), float(weight.detach().abs().max())
        assert 0.95 * bound < largest <= bound, (model_name, largest, bound)
        assert abs(float(weight.detach().mean())) < 0.05 * bound


@pytest.mark.parametrize("model_name", ["LightGCN", "SGL"])
def test_the_layers_dtype_option_reaches_the_stack(fast_config, model_name):
    """``layers_dtype: bfloat16`` was checked but could be dropped unseen: the stack MixGCF reads is bfloat16, the
    pooled embeddings and the ego rows stay float32 (and float32 is the default)."""
    model, _, _ = build(fast_config, model_name, sampler="MixGCF", layers_dtype="bfloat16")
    with torch.no_grad():
        emb = model.propagate(with_layers=True)
    assert emb.user_layers.dtype == emb.item_layers.dtype == torch.bfloat16
    assert emb.user.dtype == emb.item_ego.dtype == torch.float32
    default, _, _ = build(fast_config, model_name, sampler="MixGCF")
    with torch.no_grad():
        assert default.propagate(with_layers=True).item_layers.dtype == torch.float32


@pytest.mark.parametrize("key,value", [("message_dropout", 1.0), ("hidden_size_list", [64, 0])])
def test_ngcf_option_bounds_are_refused_at_the_edge(fast_config, key, value):
    """The bounds themselves: a message dropout of exactly 1 (every layer's output zeroed in training) and a layer of
    width 0 could be let through unseen; only 1.5 and -3 were tested."""
    with pytest.raises(ConfigError, match=f"'{key}'"):
        make(fast_config, model="NGCF", sampler="RNS", **{key: value})


def test_ngcf_node_dropout_zero_and_a_layer_of_width_one_are_accepted(fast_config):
    config = make(fast_config, model="NGCF", sampler="RNS", node_dropout=0, message_dropout=0.999,
                  hidden_size_list=[1])
    assert config["node_dropout"] == 0 and config["hidden_size_list"] == [1]


@pytest.mark.parametrize("learner", ["Sparse_Adam", "SPARSE_ADAM"])
def test_sparse_adam_is_refused_in_any_case(fast_config, learner):
    """RecBole reads ``learner`` case-insensitively (``SPARSE_ADAM`` is SparseAdam, which fails at the first step on
    the dense gradients): only the lower-case spelling was tested."""
    with pytest.raises(ConfigError, match="'learner' = 'sparse_adam' needs sparse gradients"):
        make(fast_config, model="LightGCN", sampler="RNS", learner=learner)


def test_a_config_built_another_way_without_loader_negatives_is_refused():
    """The constructor checks configurations that did not come through Config (whose RecBole layer refuses a
    ``distribution: none`` itself): no loader negative, whatever its sample_num, cannot train pairwise."""
    from recbole_hnlm.model.lightgcn import LightGCN

    with pytest.raises(ConfigError, match="'train_neg_sample_args'.*need an integer sample_num >= 1"):
        LightGCN.check_config({"train_neg_sample_args": {"distribution": "none", "sample_num": 1}, "learner": "adam",
                               "layers_dtype": None})
    LightGCN.check_config({"train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}, "learner": "adam",
                           "layers_dtype": None})


def test_sgl_trains_without_the_epoch_hooks(fast_config):
    """RecBole's own Trainer never calls on_epoch_start: SGL then draws its two views at the first loss (and keeps
    them), instead of failing on views that were never drawn; the loss is BPR and the weighted InfoNCE."""
    model, batch, _ = build(fast_config, "SGL", ssl_weight=0.5)
    assert model.views is None
    bpr, ssl = model.calculate_loss(batch)
    views = model.views
    assert views is not None and views[0] is not views[1]
    assert bool(torch.isfinite(bpr)) and float(ssl.detach()) > 0
    model.calculate_loss(batch)
    assert model.views is views  # kept until an epoch hook redraws them


def test_without_a_warm_up_nothing_is_said_about_one(fast_config, caplog):
    """negative_warmup_epochs = 0 (the default): the start of training names no warm-up switch."""
    model, _, _ = build(fast_config, "LightGCN", sampler="DNS", dns_candidates=4)
    with caplog.at_level(logging.INFO):
        model.on_epoch_start(0)
        model.on_epoch_start(1)
    assert "negative_warmup_epochs" not in caplog.text
    model, _, _ = build(fast_config, "LightGCN", sampler="DNS", dns_candidates=4, negative_warmup_epochs=1)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        for epoch in range(3):
            model.on_epoch_start(epoch)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("negative_warmup_epochs=1")]
    assert said == ["negative_warmup_epochs=1: from epoch 0 training uses the uniform negative (RNS)",
                    "negative_warmup_epochs=1: from epoch 1 training uses the DNS sampler"]


def test_a_dns_export_draws_what_its_training_batch_draws(fast_config):
    """``hard_negatives`` of a candidate sampler draws the candidates and then one loader-like negative it does not
    read, so an export leaves the random stream where a training batch's draws would: the teacher exports of earlier
    runs stay reproducible. Nothing pinned that draw."""
    model, batch, _ = build(fast_config, "LightGCN", sampler="DNS", dns_candidates=8)
    model.eval()
    user, pos = batch[model.USER_ID][:32], batch[model.ITEM_ID][:32]
    torch.manual_seed(11)
    model.hard_negatives(user, pos)
    after_export = torch.rand(3)
    torch.manual_seed(11)
    model.candidate_generator(user, 8)
    torch.randint(1, model.n_items, user.shape)
    assert torch.equal(torch.rand(3), after_export)


@pytest.mark.parametrize("model_name", ["LightGCN", "NGCF"])
def test_a_prediction_between_training_steps_follows_the_step(fast_config, model_name):
    """The inference cache is dropped by every training loss, not only by train()/eval(): a prediction made in
    training mode (RecBole's dynamic negatives call predict between steps) after an optimizer step scores with the
    stepped weights, not with the cache of the prediction before it."""
    from recbole.data.interaction import Interaction

    model, batch, _ = build(fast_config, model_name)
    model.on_epoch_start(0)
    probe = Interaction({"user_id": torch.arange(1, 6)})
    with torch.no_grad():
        before = model.full_sort_predict(probe).clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=10.0)
    model.calculate_loss(batch).backward()
    optimizer.step()
    with torch.no_grad():
        after = model.full_sort_predict(probe)
        user_e, item_e = model.forward()
    assert not torch.allclose(after, before)
    assert torch.allclose(after, (user_e[1:6] @ item_e.T).view(-1), rtol=1e-5, atol=1e-6)
