"""HNLMRec gap tests (mutation audit of recbole_hnlm/sampler/hnlmrec.py and sampler/base.py): eq. 6, 7 and 9 against
a small written-out reference (3 users, 4 items, 2-dimensional LLM vectors, a hand-set adapter), the option checks at
their edges, the adapter's fingerprint, the coverage check near 100 %, and prepare()'s checks before the teacher."""
import math
import os
from types import SimpleNamespace

import pytest
import torch

from recbole_hnlm.errors import ConfigError, DataError
from recbole_hnlm.llm.store import write_pair_store
from recbole_hnlm.model.abstract import mean_pool
from recbole_hnlm.sampler.base import Propagation, SamplingContext
from recbole_hnlm.sampler.hnlmrec import HNLMRec, parameter_fingerprint
from tests.sampler.test_hnlmrec import build, config_for, training_pairs, write_store

# the toy dataset: RecBole ids (0 is padding), training pairs, and one stored LLM vector per pair
USERS, ITEMS = ["u1", "u2", "u3"], ["a", "b", "c", "d"]
PAIRS = [("u1", "a"), ("u1", "b"), ("u2", "c"), ("u3", "d")]
X = torch.tensor([[1.0, 2.0], [-1.0, 0.5], [0.0, -3.0], [2.0, 2.0]])
# pooled embeddings of users 0..3 and items 0..4 (rows 0: padding)
USER_EMB = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.6, 0.8], [-1.0, 1.0]])
ITEM_EMB = torch.tensor([[0.0, 0.0], [2.0, 1.0], [0.0, 1.0], [1.0, -1.0], [-2.0, 0.5]])


def toy_dataset(pairs=PAIRS, name="toy"):
    """What HNLMRec reads of a RecBole dataset: token maps, item count, training interactions, name."""
    uid = {u: k for k, u in enumerate(["[PAD]"] + USERS)}
    iid = {i: k for k, i in enumerate(["[PAD]"] + ITEMS)}
    return SimpleNamespace(uid_field="user_id", iid_field="item_id", item_num=len(iid), dataset_name=name,
                           field2token_id={"user_id": uid, "item_id": iid},
                           inter_feat={"user_id": torch.tensor([uid[u] for u, _ in pairs]),
                                       "item_id": torch.tensor([iid[i] for _, i in pairs])})


def toy_config(path, **extra):
    return {"hnlm_file": path, "hnlm_lambda": 0.25, "hnlm_cl_weight": 0.5, "hnlm_cl_temperature": 0.5,
            "hnlm_cl_in_batch": False, "hnlm_missing": "error", "hnlm_margin": None, "hnlm_detach_in_bpr": False,
            "hnlm_h_norm": "none", "hnlm_center": False, "hnlm_final_relu": False, "hnlm_frozen_adapter": False,
            "hnlm_adapter_reg_weight": 0.0, "hnlm_adapter_hidden": [], "embedding_size": 2, "dataset": "toy",
            **extra}


def toy_sampler(tmp_path, pairs=PAIRS, x=X, dataset_pairs=PAIRS, store_dataset="toy", **extra):
    """An HNLMRec over the toy store, with eq. 6 set by hand: h = W x + b."""
    path = str(tmp_path / "toy.safetensors")
    write_pair_store(path, [u for u, _ in pairs], [i for _, i in pairs], x,
                     {"variant": "semantic", "dataset": store_dataset, "dataset_hash": "test"}, dtype=torch.float32)
    sampler = HNLMRec(toy_config(path, **extra), toy_dataset(dataset_pairs))
    if not extra.get("hnlm_adapter_hidden"):
        with torch.no_grad():
            sampler.adapter[0].weight.copy_(torch.tensor([[2.0, 0.0], [1.0, -1.0]]))
            sampler.adapter[0].bias.copy_(torch.tensor([0.5, 0.0]))
    return sampler.train()


def toy_context(user, pos, neg, dtype=torch.float32):
    user_emb, item_emb = USER_EMB.to(dtype).requires_grad_(), ITEM_EMB.to(dtype).requires_grad_()
    emb = Propagation(user_ego=user_emb, item_ego=item_emb, user=user_emb, item=item_emb, pool=mean_pool)
    return SamplingContext(user=torch.tensor(user), pos=torch.tensor(pos), neg=torch.tensor(neg), emb=emb)


def written_out_h(rows):
    """h = W x + b of eq. 6 for the stored rows (W = [[2, 0], [1, -1]], b = [0.5, 0])."""
    return torch.stack([torch.tensor([2 * X[r, 0] + 0.5, X[r, 0] - X[r, 1]]) for r in rows])


def cos(a, b):
    a, b = a.detach(), b.detach()
    return float(a @ b) / (math.hypot(*a.tolist()) * math.hypot(*b.tolist()))


# (user, pos) = (1, a), (1, b), (2, c), (3, d): stored rows 0..3; negatives c, d, a, b
BATCH = ([1, 1, 2, 3], [1, 2, 3, 4], [3, 4, 1, 2])


def test_eq7_mixes_the_projected_llm_vector_with_the_random_negative(tmp_path):
    sampler = toy_sampler(tmp_path)
    out = sampler(toy_context(*BATCH))
    h = written_out_h([0, 1, 2, 3])
    expected = 0.25 * h + 0.75 * ITEM_EMB[BATCH[2]]
    assert out.pooled.shape == (4, 1, 2) and out.item_ids is None and out.margin is None
    torch.testing.assert_close(out.pooled[:, 0], expected)
    torch.testing.assert_close(out.ego[:, 0], ITEM_EMB[BATCH[2]])  # L2 on the random negative's ego row


def test_item_norm_rescales_h_to_the_random_negative_before_eq7(tmp_path):
    sampler = toy_sampler(tmp_path, hnlm_h_norm="item")
    out = sampler(toy_context(*BATCH))
    h = written_out_h([0, 1, 2, 3])
    j = ITEM_EMB[BATCH[2]]
    scaled = torch.stack([h[b] / h[b].norm() * j[b].norm() for b in range(4)])  # row by row, not over the batch
    torch.testing.assert_close(out.pooled[:, 0], 0.25 * scaled + 0.75 * j)


def test_a_pair_without_a_stored_vector_gets_the_random_negative_and_no_alignment(tmp_path):
    """(u2, c) has no vector (hnlm_missing=random): its negative is e_j exactly, and eq. 9 is the mean over the
    three other rows only."""
    stored = [p for p in PAIRS if p != ("u2", "c")]
    sampler = toy_sampler(tmp_path, pairs=stored, x=X[[0, 1, 3]], hnlm_missing="random")
    out = sampler(toy_context(*BATCH))
    h = written_out_h([0, 1, 3])
    h = torch.stack([h[0], h[1], torch.zeros(2), h[2]])
    j = ITEM_EMB[BATCH[2]]
    expected = torch.stack([0.25 * h[b] + 0.75 * j[b] if b != 2 else j[b] for b in range(4)])
    torch.testing.assert_close(out.pooled[:, 0], expected)
    terms = []
    for b in (0, 1, 3):
        u, i = USER_EMB[BATCH[0][b]], ITEM_EMB[BATCH[1][b]]
        pos, neg = math.exp(cos(u, i) / 0.5), math.exp(cos(u, h[b]) / 0.5)
        terms.append(-math.log(pos / (pos + neg)))
    assert float(out.aux_losses[0].detach()) == pytest.approx(0.5 * sum(terms) / 3, rel=1e-5)


def test_eq9_two_way_and_in_batch_written_out(tmp_path):
    h = written_out_h([0, 1, 2, 3])
    for in_batch in (False, True):
        sampler = toy_sampler(tmp_path, hnlm_cl_in_batch=in_batch)
        (cl,) = sampler(toy_context(*BATCH)).aux_losses
        terms = []
        for b in range(4):
            u, i = USER_EMB[BATCH[0][b]], ITEM_EMB[BATCH[1][b]]
            pos = math.exp(cos(u, i) / 0.5)
            negs = [math.exp(cos(u, h[c]) / 0.5) for c in (range(4) if in_batch else [b])]
            terms.append(-math.log(pos / (pos + sum(negs))))
        assert float(cl.detach()) == pytest.approx(0.5 * sum(terms) / 4, rel=1e-5), in_batch


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_a_model_in_another_dtype_runs_the_sampler_in_it(tmp_path, dtype):
    """model.double() (a float64 reference run) or model.to(bfloat16): the lookup (float32 for a half-precision
    store) is cast to the embeddings' dtype before the adapter, which is in that dtype too."""
    sampler = toy_sampler(tmp_path).to(dtype)
    out = sampler(toy_context(*BATCH, dtype=dtype))
    assert out.pooled.dtype == dtype
    expected = 0.25 * written_out_h([0, 1, 2, 3]) + 0.75 * ITEM_EMB[BATCH[2]]
    tol = 1e-12 if dtype == torch.float64 else 5e-2
    torch.testing.assert_close(out.pooled[:, 0].double(), expected.double(), atol=tol, rtol=tol)


def test_adapter_layers_follow_eq6_and_the_final_relu_flag(tmp_path):
    plain = toy_sampler(tmp_path, hnlm_adapter_hidden=[3, 5])
    assert [type(m).__name__ for m in plain.adapter] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert [(m.in_features, m.out_features) for m in plain.adapter if isinstance(m, torch.nn.Linear)] == [
        (2, 3), (3, 5), (5, 2)]
    relu = toy_sampler(tmp_path, hnlm_adapter_hidden=[3], hnlm_final_relu=True)
    assert [type(m).__name__ for m in relu.adapter] == ["Linear", "ReLU", "Linear", "ReLU"]


def test_a_missing_store_path_is_a_config_error_naming_the_option():
    for value in (None, ""):
        with pytest.raises(ConfigError, match="HNLMRec needs 'hnlm_file'"):
            HNLMRec(toy_config(value), toy_dataset())


def test_the_adapter_fingerprint_follows_the_store_dim_and_the_adapter_settings():
    """A warm start takes the adapter only for an equal fingerprint: each input of it must change it."""
    manifest = {"variant": "semantic", "dataset": "toy", "dataset_hash": "h", "dim": 24}
    settings = {"hnlm_center": True, "hnlm_final_relu": False}
    base = parameter_fingerprint(manifest, settings)
    assert base == parameter_fingerprint(dict(manifest), dict(settings))
    assert base != parameter_fingerprint({**manifest, "dim": 25}, settings)
    assert base != parameter_fingerprint({**manifest, "dataset_hash": "other"}, settings)
    assert base != parameter_fingerprint(manifest, {**settings, "hnlm_center": False})
    assert base != parameter_fingerprint(manifest, {**settings, "hnlm_final_relu": True})


def test_one_uncovered_training_pair_is_refused_under_missing_error(fast_config, ml_slice, tmp_path):
    """Coverage just below 100 % is still refused (only 50 % was tested)."""
    pairs = training_pairs(ml_slice)
    store = write_store(ml_slice, tmp_path / "almost.safetensors", pairs=pairs[1:])
    with pytest.raises(ConfigError, match=rf"\({len(pairs) - 1}\) of the {len(pairs)} training pairs have an LLM "
                                          r"negative\. Set hnlm_missing=random"):
        build(fast_config, store)


def test_the_adapter_maps_to_the_pooled_width_of_ngcf(fast_config, ml_slice, tmp_path):
    """NGCF concatenates its layers: the adapter's output is the pooled width (K+1) d, not embedding_size."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_hnlm.config import Config
    from recbole_hnlm.model.ngcf import NGCF

    store = write_store(ml_slice, tmp_path / "s.safetensors")
    config = Config(model="NGCF", config_dict=config_for(fast_config, store))
    init_seed(config["seed"], True)
    train_data, _, _ = data_preparation(config, create_dataset(config))
    model, batch = NGCF(config, train_data._dataset), next(iter(train_data))
    width = model.pooled_size(config)
    assert width != config["embedding_size"]
    assert model.sampler.adapter[-1].out_features == width
    losses = model.calculate_loss(batch)
    assert all(torch.isfinite(term) for term in losses)


@pytest.mark.parametrize("key,value,ok", [("hnlm_adapter_hidden", [0], False), ("hnlm_adapter_hidden", [], True),
                                          ("hnlm_margin", 0.0, True), ("hnlm_lambda", 0.0, True),
                                          ("hnlm_lambda", 1.0, True), ("hnlm_cl_weight", 0.0, True)])
def test_option_edges(fast_config, ml_slice, tmp_path, key, value, ok):
    from recbole_hnlm.config import Config

    store = write_store(ml_slice, tmp_path / "s.safetensors")
    if ok:
        assert Config(model="LightGCN", config_dict=config_for(fast_config, store, **{key: value}))[key] == value
    else:
        with pytest.raises(ConfigError, match=key):
            Config(model="LightGCN", config_dict=config_for(fast_config, store, **{key: value}))


@pytest.mark.parametrize("key", ["hnlm_cl_weight", "hnlm_cl_temperature", "hnlm_margin", "hnlm_adapter_reg_weight"])
@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_infinite_hnlm_numbers_are_refused(fast_config, ml_slice, tmp_path, key, value):
    """is_number let inf and NaN through: an infinite loss (NaN) at the first step, or eq. 9 constant (tau = inf)."""
    from recbole_hnlm.config import Config

    store = write_store(ml_slice, tmp_path / "s.safetensors")
    with pytest.raises(ConfigError, match=f"Invalid value for '{key}': {value}; expected .*a number"):
        Config(model="LightGCN", config_dict=config_for(fast_config, store, **{key: value}))


def test_prepare_checks_the_item_file_before_the_llm_stage(tmp_path, monkeypatch):
    """A malformed .item file is said before the teacher trains or the LLM stage runs."""
    import recbole_hnlm.llm as llm

    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "toy.item").write_text("item_id\ttitle\n1\tA title\n")  # a header without types
    started = []
    monkeypatch.setattr(llm, "ensure_negatives", lambda *args, **kwargs: started.append(args) or "s.safetensors")
    config = {"hnlm_file": None, "negative_warmup_epochs": 0, "epochs": 1, "hnlm_variant": "semantic",
              "data_path": str(folder), "dataset": "toy", "encoding": None}
    with pytest.raises(DataError, match="toy.item: the first line 'item_id\\\\ttitle' is not a header"):
        HNLMRec.prepare(config, None, SimpleNamespace(_dataset="train split"))
    assert started == [] and config["hnlm_file"] is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="4-bit loading may be possible on a GPU")
def test_4bit_is_checked_before_the_teacher_only_when_a_new_teacher_trains(tmp_path):
    from recbole_hnlm.llm.config import LLMConfig

    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + bytes(16))
    llm = LLMConfig(generator=str(gguf), load_in_4bit=True)
    teacher = str(tmp_path / "teacher.safetensors")
    with pytest.raises(ConfigError, match="hnlm_load_in_4bit: 4-bit loading"):
        HNLMRec.check_generator_before_the_teacher(llm, teacher)
    open(teacher, "wb").close()  # a teacher there: its store may be reused on the CPU
    HNLMRec.check_generator_before_the_teacher(llm, teacher)
    os.remove(teacher)


def test_epoch_report_of_a_partly_covered_epoch(tmp_path, caplog):
    """Batch coverage counts every row of the epoch; mean cos(user, h) and cos(h, h') average the covered rows only,
    over both batches (written out on the toy pairs, (u2, c) without a vector)."""
    import logging
    import re

    stored = [p for p in PAIRS if p != ("u2", "c")]
    sampler = toy_sampler(tmp_path, pairs=stored, x=X[[0, 1, 3]], hnlm_missing="random")
    with torch.no_grad():
        sampler(toy_context(BATCH[0][:2], BATCH[1][:2], BATCH[2][:2]))
        sampler(toy_context(BATCH[0][2:], BATCH[1][2:], BATCH[2][2:]))
    h = written_out_h([0, 1, 3])
    users = USER_EMB[[1, 1, 3]]
    mean_cos = sum(cos(users[k], h[k]) for k in range(3)) / 3
    pair_cos = cos(h[0], h[1])  # the only pair of covered rows within one batch (the second has one)
    caplog.set_level(logging.INFO)
    sampler.epoch_report()
    line = re.search(r"HNLMRec: batch coverage ([0-9.]+)%, mean cos\(user, h\) ([-+0-9.]+), mean cos\(h, h'\) within "
                     r"a batch ([-+0-9.]+)", caplog.text)
    assert line, caplog.text
    assert float(line.group(1)) == 75.0
    assert float(line.group(2)) == pytest.approx(mean_cos, abs=1e-4)
    assert float(line.group(3)) == pytest.approx(pair_cos, abs=1e-4)
    caplog.clear()
    sampler.epoch_report()  # reset: an epoch without rows says nothing
    assert "batch coverage" not in caplog.text


def test_a_store_of_another_dataset_name_whose_pairs_are_all_training_pairs_is_warned_about(tmp_path, caplog):
    import logging

    caplog.set_level(logging.INFO)
    toy_sampler(tmp_path, store_dataset="toy-old")
    assert "toy.safetensors was built for dataset 'toy-old', this run reads 'toy'" in caplog.text
    assert "HNLMRec: 100.00% (4) of the 4 training pairs have an LLM negative" in caplog.text


def test_coverage_of_repeated_interactions_names_interactions_and_distinct_pairs(tmp_path, caplog):
    """With repeated rows (rm_dup_inter unset) the coverage counts interactions, and said "of the 5 training pairs"
    where the subset check (hnlm_max_pairs) counts 4 distinct pairs."""
    import logging

    caplog.set_level(logging.INFO)
    toy_sampler(tmp_path, dataset_pairs=PAIRS + [("u1", "a")])
    assert "HNLMRec: 100.00% (5) of the 5 training interactions (4 distinct pairs) have an LLM negative" in caplog.text


@pytest.mark.parametrize("show_progress,expected", [(False, False), (True, True)])
def test_prepare_hands_show_progress_to_the_llm_stage(monkeypatch, show_progress, expected):
    import recbole_hnlm.llm as llm

    seen = []
    monkeypatch.setattr(llm, "ensure_negatives", lambda config, dataset, progress=True: seen.append(progress)
                        or "s.safetensors")
    config = {"hnlm_file": None, "negative_warmup_epochs": 0, "epochs": 1, "hnlm_variant": "semantic",
              "data_path": "no-such-folder", "dataset": "x", "show_progress": show_progress}
    HNLMRec.prepare(config, None, SimpleNamespace(_dataset="train split"))
    assert seen == [expected] and config["hnlm_file"] == "s.safetensors"


def test_real_item_negatives_are_regularised_on_their_ego_rows():
    """gather_items (RNS, DNS, AHNS, a negative warm-up): pooled rows score, layer-0 rows take the L2 term."""
    from recbole_hnlm.sampler.base import gather_items

    ego = ITEM_EMB * 3  # a propagated table differs from its ego layer
    emb = Propagation(user_ego=USER_EMB, item_ego=ego, user=USER_EMB, item=ITEM_EMB, pool=mean_pool)
    ids = torch.tensor([[3, 1], [4, 4]])
    out = gather_items(emb, ids)
    assert torch.equal(out.pooled, ITEM_EMB[ids]) and torch.equal(out.ego, ego[ids]) and torch.equal(out.item_ids, ids)


def test_samplers_without_candidates_draw_none(tmp_path):
    """n_candidates 0 for RNS and HNLMRec: the model draws no candidate batch for them (it would cost time and move
    the RNG stream the loader's draws follow)."""
    from recbole_hnlm.sampler import RNS

    assert RNS({}, None).n_candidates == 0
    assert toy_sampler(tmp_path).n_candidates == 0


def test_centring_subtracts_the_exact_mean_of_the_stored_vectors(tmp_path):
    sampler = toy_sampler(tmp_path, hnlm_center=True)
    torch.testing.assert_close(sampler.pairs.shift, X.mean(0))
    x, found = sampler.pairs.lookup(torch.tensor([1, 3, 2]), torch.tensor([2, 4, 2]))  # (u2, b) is no pair
    torch.testing.assert_close(x, torch.stack([X[1] - X.mean(0), X[3] - X.mean(0), torch.zeros(2)]))
    assert found.tolist() == [True, True, False]


def test_coverage_of_no_pairs_is_zero(tmp_path):
    pairs = toy_sampler(tmp_path).pairs
    empty = torch.zeros(0, dtype=torch.long)
    assert pairs.pair_coverage(empty, empty) == 0.0
    assert pairs.pair_coverage(torch.tensor([1, 2]), torch.tensor([1, 1])) == 0.5
