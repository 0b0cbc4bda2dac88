"""HNLMRec sampler (eq. 6-10): mixing, alignment loss, missing-pair policy, and end-to-end training on a store."""
import logging
import os
import re

import pytest
import torch
import torch.nn.functional as F

from recbole_hnlm.errors import ConfigError
from recbole_hnlm.llm.store import write_pair_store
from recbole_hnlm.quick_start import run_recbole_hnlm
from recbole_hnlm.sampler.base import SamplingContext

D_LLM = 24


_TRAINING_PAIRS = {}


def training_pairs(ml_slice):
    """``(user, item)`` tokens of the slice's training split (RecBole's default split, seed 2020), as the LLM stage
    builds its store for: a store holding other pairs is refused."""
    if ml_slice not in _TRAINING_PAIRS:
        from recbole.data import create_dataset, data_preparation
        from recbole.utils import init_seed

        from recbole_hnlm.config import Config
        from recbole_hnlm.llm.recbole_pairs import train_pairs_from_dataset

        data_path, name = ml_slice
        config = Config(model="LightGCN", dataset=name, config_dict={
            "data_path": data_path, "sampler": "RNS", "load_col": {"inter": ["user_id", "item_id", "rating",
                                                                             "timestamp"]}}, command_line=False)
        init_seed(config["seed"], True)
        train_data, _, _ = data_preparation(config, create_dataset(config))
        _TRAINING_PAIRS[ml_slice] = train_pairs_from_dataset(train_data)
    return _TRAINING_PAIRS[ml_slice]


def write_store(ml_slice, path, fraction=1.0, seed=0, pairs=None):
    """A store with one random LLM vector per training pair of the slice (or a fraction of them, or ``pairs``)."""
    _, name = ml_slice
    pairs = training_pairs(ml_slice) if pairs is None else pairs
    pairs = pairs[: int(len(pairs) * fraction)]
    emb = torch.randn(len(pairs), D_LLM, generator=torch.Generator().manual_seed(seed))
    write_pair_store(str(path), [u for u, _ in pairs], [i for _, i in pairs], emb,
                     {"variant": "semantic", "dataset": name, "dataset_hash": "test"}, dtype=torch.float32)
    return str(path)


def config_for(fast_config, store, **extra):
    return {**fast_config, "sampler": "HNLMRec", "hnlm_file": store, "hnlm_adapter_hidden": [16],
            "epochs": 1, **extra}


def build(fast_config, store, **extra):
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_hnlm.config import Config
    from recbole_hnlm.model.lightgcn import LightGCN

    config = Config(model="LightGCN", config_dict=config_for(fast_config, store, **extra))
    init_seed(config["seed"], True)
    train_data, _, _ = data_preparation(config, create_dataset(config))
    return LightGCN(config, train_data._dataset), next(iter(train_data))


def test_mixing_follows_eq7_and_alignment_is_added(fast_config, ml_slice, tmp_path):
    store = write_store(ml_slice, tmp_path / "s.safetensors")
    model, batch = build(fast_config, store, hnlm_lambda=0.3, hnlm_h_norm="none", hnlm_adapter_reg_weight=0.0)
    sampler = model.sampler
    assert isinstance(sampler.adapter[-1], torch.nn.Linear)  # eq. 6: no activation after the last layer
    from recbole_hnlm.sampler.base import SamplingContext

    user, pos, neg = batch["user_id"], batch["item_id"], batch["neg_item_id"]
    emb = model.propagate(with_layers=False)
    out = sampler(SamplingContext(user=user, pos=pos, neg=neg, emb=emb))
    x, found = sampler.pairs.lookup(user, pos)
    assert bool(found.all())
    expected = 0.3 * sampler.adapter(x) + 0.7 * emb.item[neg]
    assert torch.allclose(out.pooled[:, 0], expected, atol=1e-6)
    assert len(out.aux_losses) == 1 and float(out.aux_losses[0].detach()) > 0
    loss = model.calculate_loss(batch)
    assert isinstance(loss, tuple) and len(loss) == 2
    sum(loss).backward()
    assert sampler.adapter[0].weight.grad is not None and sampler.adapter[0].weight.grad.abs().sum() > 0


def test_item_norm_bounds_the_llm_part_and_adapter_is_regularised(fast_config, ml_slice, tmp_path):
    store = write_store(ml_slice, tmp_path / "s.safetensors")
    model, batch = build(fast_config, store, hnlm_lambda=1.0, hnlm_h_norm="item", hnlm_adapter_reg_weight=0.01,
                         hnlm_cl_weight=0.0)
    sampler = model.sampler
    from recbole_hnlm.sampler.base import SamplingContext

    user, pos, neg = batch["user_id"], batch["item_id"], batch["neg_item_id"]
    emb = model.propagate(with_layers=False)
    with torch.no_grad():  # a huge adapter output must not reach the ranking loss at its own scale
        sampler.adapter[-1].weight.mul_(1e4)
    out = sampler(SamplingContext(user=user, pos=pos, neg=neg, emb=emb))
    x, _ = sampler.pairs.lookup(user, pos)
    h = sampler.adapter(x)
    # lambda = 1: the negative is h, rescaled to the norm of the random negative it replaces, same direction
    assert torch.allclose(out.pooled[:, 0].norm(dim=1), emb.item[neg].norm(dim=1), rtol=1e-5)
    assert torch.allclose(torch.nn.functional.cosine_similarity(out.pooled[:, 0], h), torch.ones(len(h)), atol=1e-5)
    # the parameter term of eq. 10 on the adapter's weights (not its biases)
    frobenius = sum(float(m.weight.detach().pow(2).sum()) for m in sampler.adapter if isinstance(m, torch.nn.Linear))
    assert len(out.aux_losses) == 1
    assert float(out.aux_losses[0].detach()) == pytest.approx(0.01 * frobenius, rel=1e-5)


def test_epoch_report_logs_how_much_the_projected_negatives_differ(fast_config, ml_slice, tmp_path, caplog):
    """mean cos(h, h') over the pairs of a batch: computed as a direct pairwise mean, and 1 for a collapsed adapter."""
    import logging
    import re

    import torch.nn.functional as F

    from recbole_hnlm.sampler.base import SamplingContext

    store = write_store(ml_slice, tmp_path / "s.safetensors")
    model, batch = build(fast_config, store)
    sampler = model.sampler
    user, pos, neg = batch["user_id"], batch["item_id"], batch["neg_item_id"]
    emb = model.propagate(with_layers=False)

    def reported():
        caplog.clear()
        with caplog.at_level(logging.INFO):
            sampler.epoch_report()
        return float(re.search(r"mean cos\(h, h'\) within a batch ([-+0-9.]+)", caplog.text).group(1))

    halves = (slice(0, len(user) // 2), slice(len(user) // 2, None))  # two batches of one epoch
    with torch.no_grad():
        for part in halves:
            sampler(SamplingContext(user=user[part], pos=pos[part], neg=neg[part], emb=emb))
        unit = [F.normalize(sampler.adapter(sampler.pairs.lookup(user[p], pos[p])[0]).double(), dim=1) for p in halves]
    cosines = [u @ u.T for u in unit]
    expected = sum(float(c.sum() - c.diagonal().sum()) for c in cosines) / sum(len(u) * (len(u) - 1) for u in unit)
    assert reported() == pytest.approx(expected, abs=1e-4)
    assert abs(expected) < 0.9  # random LLM vectors through a fresh adapter are not collapsed
    assert "h = 0 in" not in caplog.text
    with torch.no_grad():  # an adapter that ignores its input: every h is the same vector
        sampler.adapter[0].weight.zero_()
        sampler(SamplingContext(user=user, pos=pos, neg=neg, emb=emb))
    assert reported() == pytest.approx(1.0, abs=1e-4)
    with torch.no_grad():  # a dead adapter: every h is 0, which the cosines alone would show as 0
        sampler.adapter[-1].weight.zero_()
        sampler.adapter[-1].bias.zero_()
        sampler(SamplingContext(user=user, pos=pos, neg=neg, emb=emb))
    assert reported() == 0.0 and f"h = 0 in {len(user)} rows" in caplog.text


def test_every_training_epoch_is_reported_the_last_one_included(fast_config, ml_slice, tmp_path, caplog):
    """The sampler's report follows each epoch's training (it was logged at the start of the next epoch, so the last
    epoch's figures never appeared)."""
    import logging
    import re

    store = write_store(ml_slice, tmp_path / "s.safetensors")
    with caplog.at_level(logging.INFO):
        run_recbole_hnlm(model="LightGCN", config_dict={**config_for(fast_config, store, epochs=2), "state": "INFO"})
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", r.getMessage()) for r in caplog.records]  # RecBole's colours
    reports = [i for i, line in enumerate(lines) if line.startswith("HNLMRec: batch coverage")]
    trained = [i for i, line in enumerate(lines) if "training [time" in line]
    assert len(reports) == len(trained) == 2
    assert all(r < t for r, t in zip(reports, trained))  # each just before RecBole's line for its epoch
    assert reports[1] > trained[0]


def test_centering_removes_the_mean_stored_vector(fast_config, ml_slice, tmp_path):
    store = write_store(ml_slice, tmp_path / "s.safetensors")
    model, batch = build(fast_config, store, hnlm_center=False)
    raw = model.sampler.pairs.emb.float()
    centred_model, _ = build(fast_config, store, hnlm_center=True)
    aligned = centred_model.sampler.pairs
    assert torch.allclose(aligned.shift, raw.mean(0), atol=1e-5)
    x, found = aligned.lookup(batch["user_id"], batch["item_id"])
    x_raw, _ = model.sampler.pairs.lookup(batch["user_id"], batch["item_id"])
    assert bool(found.all()) and torch.allclose(x, x_raw - raw.mean(0), atol=1e-5)
    everything = (aligned.emb.float() - aligned.shift).mean(0)
    assert float(everything.abs().max()) < 1e-5


def test_a_store_of_one_vector_is_not_centred_to_zero(fast_config, ml_slice, tmp_path, caplog):
    """A tiny --max_pairs store with one accepted answer: centring made its one LLM vector exactly 0 (a helper's
    sparsity cell), with the log saying it was centred."""
    store = write_store(ml_slice, tmp_path / "one.safetensors", pairs=training_pairs(ml_slice)[:1])
    model, _ = build(fast_config, store, hnlm_center=True, hnlm_missing="random")
    assert float(model.sampler.pairs.emb.float().norm()) > 0
    pairs = model.sampler.pairs
    key = pairs.keys[:1]
    x, found = pairs.lookup(key // pairs.n_items, key % pairs.n_items)
    assert bool(found.all()) and float(x.norm()) > 0
    assert "hnlm_center is not applied" in caplog.text and "holds one vector" in caplog.text


def test_alignment_loss_matches_eq9(fast_config, ml_slice, tmp_path):
    store = write_store(ml_slice, tmp_path / "s.safetensors")
    model, _ = build(fast_config, store)
    g = torch.Generator().manual_seed(1)
    u, i, h = (torch.randn(5, 8, generator=g) for _ in range(3))
    found = torch.tensor([True, True, False, True, True])
    tau = model.sampler.cl_temperature
    cos = torch.nn.functional.cosine_similarity
    pos, negv = torch.exp(cos(u, i) / tau), torch.exp(cos(u, h) / tau)
    expected = (-torch.log(pos / (pos + negv)))[found].mean()
    assert torch.allclose(model.sampler.alignment_loss(u, i, h, found), expected, atol=1e-6)


def test_missing_pairs_are_an_error_unless_a_fallback_is_named(fast_config, ml_slice, tmp_path):
    store = write_store(ml_slice, tmp_path / "half.safetensors", fraction=0.5)
    n = len(training_pairs(ml_slice))
    with pytest.raises(ConfigError, match=rf"\({n // 2}\) of the {n} training pairs have an LLM negative\. .*"
                                          "hnlm_missing=random"):
        build(fast_config, store)
    model, batch = build(fast_config, store, hnlm_missing="random", hnlm_lambda=0.5)
    from recbole_hnlm.sampler.base import SamplingContext

    user, pos, neg = batch["user_id"], batch["item_id"], batch["neg_item_id"]
    emb = model.propagate(with_layers=False)
    out = model.sampler(SamplingContext(user=user, pos=pos, neg=neg, emb=emb))
    _, found = model.sampler.pairs.lookup(user, pos)
    assert 0 < int(found.sum()) < len(found)
    # a pair without an LLM vector gets exactly the random negative: never noise
    assert torch.equal(out.pooled[~found, 0], emb.item[neg[~found]])


def test_a_store_of_other_pairs_is_refused(fast_config, ml_slice, tmp_path, caplog):
    """A store built on another split (it holds pairs this run validates or tests on) trained silently once
    hnlm_missing=random was set, as the coverage error advised; a store of another dataset became an RNS run."""
    data_path, name = ml_slice
    with open(os.path.join(data_path, name, f"{name}.inter")) as f:
        next(f)
        every = [tuple(line.split("\t")[:2]) for line in f]
    store = write_store(ml_slice, tmp_path / "all.safetensors", pairs=every)
    for missing in ("error", "random"):
        with pytest.raises(ConfigError, match=r"hnlm_file: .*all.safetensors holds \d+ \(user, item\) pairs of "
                                              "dataset 'ml-slice' that are not training pairs of this run"):
            build(fast_config, store, hnlm_missing=missing)
    renamed = str(tmp_path / "renamed.safetensors")
    write_pair_store(renamed, [u for u, _ in every], [i for _, i in every], torch.ones(len(every), D_LLM),
                     {"variant": "semantic", "dataset": "ml-1m", "dataset_hash": "test"}, dtype=torch.float32)
    with pytest.raises(ConfigError, match="renamed.safetensors was built for dataset 'ml-1m' \\(its manifest\\)"):
        build(fast_config, renamed)
    write_pair_store(str(tmp_path / "other.safetensors"), ["nobody"], ["nothing"], torch.ones(1, D_LLM),
                     {"variant": "semantic", "dataset": "yelp2018", "dataset_hash": "test"}, dtype=torch.float32)
    with pytest.raises(ConfigError, match=r"0.00% \(0\) of the \d+ training pairs have an LLM negative: "
                                          ".*other.safetensors was built for dataset 'yelp2018'"):
        build(fast_config, str(tmp_path / "other.safetensors"))
    caplog.set_level("WARNING")
    build(fast_config, str(tmp_path / "other.safetensors"), hnlm_missing="random")
    assert "this run trains with the random negative only, as RNS" in caplog.text


def test_a_subset_store_of_another_split_is_refused_though_its_pairs_are_training_pairs(fast_config, ml_slice,
                                                                                        tmp_path):
    """A store of a few pairs (``--max_pairs``) built with ``--split all`` or on another split passed the pair check
    when its pairs happened to be training pairs of this run, yet its prompts held this run's test items: the
    manifest's split_hash names the training pairs it was built from."""
    from recbole_hnlm.llm.store import split_sha256

    data_path, name = ml_slice
    with open(os.path.join(data_path, name, f"{name}.inter")) as f:
        next(f)
        every = [tuple(line.split("\t")[:2]) for line in f]
    train = training_pairs(ml_slice)
    assert len(train) < len(every)
    few = train[:5]

    def store_built_from(split, file_name):
        path = str(tmp_path / file_name)
        write_pair_store(path, [u for u, _ in few], [i for _, i in few], torch.randn(len(few), D_LLM),
                         {"variant": "semantic", "dataset": name, "dataset_hash": "test",
                          "split_hash": split_sha256(split)}, dtype=torch.float32)
        return path

    with pytest.raises(ConfigError, match=r"hnlm_file: .*every.safetensors was built from other training pairs than "
                                          r"this run's \(its manifest's split_hash\)"):
        build(fast_config, store_built_from(every, "every.safetensors"), hnlm_missing="random")
    # the same training pairs in another order, repeated: this run's split
    model, _ = build(fast_config, store_built_from(list(reversed(train)) + train[:3], "same.safetensors"),
                     hnlm_missing="random")
    assert model.sampler.pairs.num_pairs == len(few)


def test_frozen_adapter_flag(fast_config, ml_slice, tmp_path):
    store = write_store(ml_slice, tmp_path / "s.safetensors")
    model, _ = build(fast_config, store, hnlm_frozen_adapter=True, hnlm_final_relu=True)
    assert not any(p.requires_grad for p in model.sampler.adapter.parameters())
    assert isinstance(model.sampler.adapter[-1], torch.nn.ReLU)


def test_training_with_llm_negatives_changes_the_loss(fast_config, ml_slice, tmp_path):
    store = write_store(ml_slice, tmp_path / "s.safetensors")
    rns = run_recbole_hnlm(model="LightGCN", config_dict={**fast_config, "sampler": "RNS", "epochs": 1})
    hnlm = run_recbole_hnlm(model="LightGCN", config_dict=config_for(fast_config, store, hnlm_lambda=0.5))
    assert hnlm["test_result"]["ndcg@20"] > 0
    model0, batch = build(fast_config, store, hnlm_lambda=0.0, hnlm_cl_weight=0.0, hnlm_adapter_reg_weight=0.0)
    torch.manual_seed(0)
    base = float(model0.calculate_loss(batch).detach())
    model1, _ = build(fast_config, store, hnlm_lambda=0.5, hnlm_cl_weight=0.0, hnlm_adapter_reg_weight=0.0)
    torch.manual_seed(0)
    mixed = float(model1.calculate_loss(batch).detach())
    assert abs(mixed - base) > 1e-6  # identical draws (same seed): only the eq. 7 mixing differs
    assert rns["test_result"] != hnlm["test_result"]


def test_bad_hnlm_options_are_rejected(fast_config, ml_slice, tmp_path):
    store = write_store(ml_slice, tmp_path / "s.safetensors")
    from recbole_hnlm.config import Config

    for key, value in [("hnlm_lambda", 1.5), ("hnlm_missing", "noise"), ("hnlm_cl_temperature", 0.0),
                       ("hnlm_h_norm", "unit"), ("hnlm_adapter_reg_weight", -1.0), ("hnlm_center", "yes"),
                       # a bool is no number (--hnlm_lambda=True trained with lambda 1)
                       ("hnlm_lambda", True), ("hnlm_cl_weight", True), ("hnlm_cl_temperature", True),
                       ("hnlm_adapter_reg_weight", False), ("hnlm_adapter_hidden", [True]), ("hnlm_margin", True),
                       # a string switched these on (bool("no") is True); a number was taken as a store path
                       ("hnlm_frozen_adapter", "no"), ("hnlm_cl_in_batch", 1), ("hnlm_final_relu", "yes"),
                       ("hnlm_detach_in_bpr", 0), ("hnlm_file", 5), ("hnlm_file", ""),
                       # a LLM-stage setting of no type: a traceback once the data had loaded
                       ("hnlm_generator", 5), ("hnlm_encoder", ""), ("hnlm_store_path", 3),
                       # the teacher's backbone: said after the data loaded, as if --model were wrong
                       ("hnlm_teacher_model", "Nope"), ("hnlm_teacher_model", "BPR"), ("mixgcf_candidates", 0),
                       ("mixgcf_candidates", 2.5), ("mixgcf_candidates", True)]:
        with pytest.raises(ConfigError, match=key):
            Config(model="LightGCN", config_dict=config_for(fast_config, store, **{key: value}))


def test_warm_start_takes_the_adapter_only_from_an_hnlmrec_run(fast_config, ml_slice, tmp_path, caplog, monkeypatch):
    import logging

    from safetensors.torch import load_file

    from recbole_hnlm.model.abstract import SampledRecommender

    starts, hook = [], SampledRecommender.on_epoch_start

    def on_epoch_start(self, epoch_idx):  # records each run's weights as its first epoch starts
        if epoch_idx == 0:
            starts.append({k: v.detach().clone() for k, v in self.state_dict().items()})
        return hook(self, epoch_idx)

    monkeypatch.setattr(SampledRecommender, "on_epoch_start", on_epoch_start)
    caplog.set_level(logging.INFO)
    store = write_store(ml_slice, tmp_path / "s.safetensors")
    first = run_recbole_hnlm(model="LightGCN", config_dict={**config_for(fast_config, store), "state": "INFO"})
    stored = {k[len("model."):]: v for k, v in load_file(first["checkpoint"]).items() if k.startswith("model.")}
    adapter = [k for k in stored if k.startswith("sampler.")]
    assert adapter and "user_embedding.weight" in stored

    run_recbole_hnlm(model="LightGCN", config_dict={**config_for(fast_config, store), "init_from": first["checkpoint"],
                                                    "state": "INFO"})
    assert all(torch.equal(starts[-1][k], stored[k]) for k in stored)  # backbone and adapter
    assert "HNLMRec parameters loaded" in caplog.text

    # the same shapes, but the adapter would now see uncentred vectors: it starts fresh
    run_recbole_hnlm(model="LightGCN", config_dict={**config_for(fast_config, store), "init_from": first["checkpoint"],
                                                    "hnlm_center": False, "state": "INFO"})
    assert ("HNLMRec parameters freshly initialised (that run used another store or other adapter settings"
            in caplog.text)
    assert not any(torch.equal(starts[-1][k], stored[k]) for k in adapter)
    assert torch.equal(starts[-1]["user_embedding.weight"], stored["user_embedding.weight"])

    rns = run_recbole_hnlm(model="LightGCN", config_dict={**fast_config, "sampler": "RNS", "epochs": 1})
    run_recbole_hnlm(model="LightGCN", config_dict={**config_for(fast_config, store), "init_from": rns["checkpoint"],
                                                    "state": "INFO"})
    assert torch.equal(starts[-1]["user_embedding.weight"], load_file(rns["checkpoint"])["model.user_embedding.weight"])
    assert not any(torch.equal(starts[-1][k], stored[k]) for k in adapter)  # fresh adapter, not the HNLMRec run's
    assert "HNLMRec parameters freshly initialised (the checkpoint's sampler is RNS)" in caplog.text

    run_recbole_hnlm(model="LightGCN", config_dict={**fast_config, "sampler": "DNS", "epochs": 1,
                                                    "init_from": first["checkpoint"]})
    assert starts[-1].keys() == {"user_embedding.weight", "item_embedding.weight"}
    assert all(torch.equal(starts[-1][k], stored[k]) for k in starts[-1])  # the adapter is simply not taken


def test_loading_a_run_whose_store_the_sampler_found_warns_about_nothing(fast_config, ml_slice, tmp_path, caplog,
                                                                          monkeypatch):
    """A run started without ``hnlm_file`` has it filled in by ``HNLMRec.prepare`` (the LLM stage's store, found by
    its manifest); loading the run does not prepare the sampler, and that is not a changed option."""
    import logging

    from recbole_hnlm.load import load_data_and_model
    from recbole_hnlm.sampler.hnlmrec import HNLMRec

    store = write_store(ml_slice, tmp_path / "s.safetensors")

    def found_store(cls, config, dataset, train_data):  # what a cached LLM stage returns, without running it
        config["hnlm_file"] = store

    monkeypatch.setattr(HNLMRec, "prepare", classmethod(found_store))
    run = run_recbole_hnlm(model="LightGCN", config_dict={**config_for(fast_config, None, epochs=1),
                                                          "checkpoint_dir": str(tmp_path / "run")})
    with caplog.at_level(logging.WARNING):
        config, *_ = load_data_and_model(run["checkpoint"])
    assert "trained with other values" not in caplog.text
    assert config["sampler"] == "HNLMRec"


@pytest.mark.parametrize("warm_up,warns", [(3, True), (5, True), (2, False), (None, False)])
def test_a_warm_up_covering_the_run_is_said_before_the_llm_stage(monkeypatch, caplog, warm_up, warns):
    """negative_warmup_epochs >= epochs: the run never uses HNLMRec's negatives, so the (long) LLM stage that builds
    them is announced as such before it runs; it still runs, and its store is kept for later runs."""
    import logging
    import types

    import recbole_hnlm.llm as llm
    from recbole_hnlm.sampler.hnlmrec import HNLMRec

    built = []  # the LLM stage itself is tested in tests/llm; here only what prepare() says and does around it
    monkeypatch.setattr(llm, "ensure_negatives", lambda config, dataset, progress=True: built.append(dataset)
                        or "s.safetensors")
    config = {"hnlm_file": None, "negative_warmup_epochs": warm_up, "epochs": 3, "hnlm_variant": "semantic",
              "data_path": "no-such-folder", "dataset": "x"}
    with caplog.at_level(logging.WARNING):
        HNLMRec.prepare(config, None, types.SimpleNamespace(_dataset="train split"))
    assert built == ["train split"] and config["hnlm_file"] == "s.safetensors"
    assert ("never trains with HNLMRec's negatives" in caplog.text) == warns


def test_default_adapter_keeps_its_weights_under_adam(fast_config, ml_slice, tmp_path):
    """With a Frobenius weight of 1e-4 (the old default) Adam shrinks the adapter towards zero, since the BPR and
    eq. 9 gradients that reach it are far smaller and Adam normalises the sum: h became the output bias. The default
    (0, as the authors' code) leaves the weights at their scale. 60 Adam steps at lr 1e-2 on one batch."""
    store = write_store(ml_slice, tmp_path / "store.safetensors")

    def first_layer_norm_after_training(**extra):
        model, batch = build(fast_config, store, hnlm_adapter_hidden=[32], **extra)
        first = model.sampler.adapter[0].weight
        start = float(first.detach().norm())
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(60):
            optimizer.zero_grad()
            losses = model.calculate_loss(batch)
            sum(losses).backward()
            optimizer.step()
        return float(first.detach().norm()) / start

    assert first_layer_norm_after_training() > 0.8
    assert first_layer_norm_after_training(hnlm_adapter_reg_weight=1e-4) < 0.5


@pytest.mark.parametrize("margin", [None, 0.3])
def test_ranking_loss_is_bpr_or_the_codes_hinge(fast_config, ml_slice, tmp_path, margin):
    """Eq. 8 (BPR, the default) or the authors' hinge ``mean relu(s_neg - s_pos + 0.3)`` (hnlm_margin), written out in
    float64 from the negative the sampler returns, plus the L2 term of the batch's ego embeddings."""
    import torch.nn.functional as F

    from recbole_hnlm.ops import gather_rows
    from recbole_hnlm.sampler.base import SamplingContext

    store = write_store(ml_slice, tmp_path / "s.safetensors")
    model, batch = build(fast_config, store, hnlm_lambda=0.5, hnlm_cl_weight=0.0, hnlm_adapter_reg_weight=0.0,
                         hnlm_margin=margin)
    user, pos, neg = batch["user_id"], batch["item_id"], batch["neg_item_id"]
    with torch.no_grad():  # scores far from 0, so the hinge is cut for some pairs and BPR is not near-linear
        model.user_embedding.weight.mul_(30)
        model.item_embedding.weight.mul_(30)
    got = model.calculate_loss(batch)
    assert not isinstance(got, tuple)  # no alignment or adapter term asked for
    emb = model.propagate(with_layers=False)
    mixed = model.sampler(SamplingContext(user=user, pos=pos, neg=neg, emb=emb)).pooled[:, 0].detach().double()
    u, i = gather_rows(emb.user, user).detach().double(), gather_rows(emb.item, pos).detach().double()
    diff = (u * mixed).sum(-1) - (u * i).sum(-1)
    rank = F.softplus(diff).mean() if margin is None else F.relu(diff + margin).mean()
    ego_u, ego_i = model.user_embedding.weight.detach().double(), model.item_embedding.weight.detach().double()
    reg = model.reg_weight * (ego_u[user].pow(2).sum() + ego_i[pos].pow(2).sum() + ego_i[neg].pow(2).sum()) / (
        2 * len(user))
    assert bool((diff + 0.3 > 0).any()) and bool((diff + 0.3 < 0).any())  # both sides of the hinge's kink
    assert torch.isclose(got.double(), rank + reg, rtol=1e-5, atol=0), (float(got), float(rank + reg))


def test_detach_in_bpr_leaves_the_adapter_to_the_alignment_loss(fast_config, ml_slice, tmp_path):
    """hnlm_detach_in_bpr: the ranking loss sends no gradient into the adapter (it still moves the embeddings), the
    alignment loss (eq. 9) still does; without the flag the ranking loss reaches the adapter."""
    store = write_store(ml_slice, tmp_path / "s.safetensors")

    def adapter_and_embedding_grads(detach, cl_weight):
        model, batch = build(fast_config, store, hnlm_lambda=0.5, hnlm_cl_weight=cl_weight,
                             hnlm_adapter_reg_weight=0.0, hnlm_detach_in_bpr=detach)
        loss = model.calculate_loss(batch)
        (sum(loss) if isinstance(loss, tuple) else loss).backward()
        adapter = sum(float(p.grad.abs().sum()) for p in model.sampler.adapter.parameters() if p.grad is not None)
        return adapter, float(model.item_embedding.weight.grad.abs().sum())

    detached, item_grad = adapter_and_embedding_grads(True, 0.0)
    assert detached == 0.0 and item_grad > 0
    assert adapter_and_embedding_grads(False, 0.0)[0] > 0
    assert adapter_and_embedding_grads(True, 0.1)[0] > 0


@pytest.mark.parametrize("h_norm,in_batch", [("none", False), ("item", True)])
def test_every_loss_term_and_the_adapter_gradient_match_eq6_to_eq10(fast_config, ml_slice, tmp_path, h_norm,
                                                                     in_batch):
    """calculate_loss of an HNLMRec run against eq. 6-10 written out in float64 from the run's options (not the
    sampler's attributes): half the pairs stored (the others keep the random negative), eq. 7's mixing (with the
    item-norm option), BPR + L2 over the random negative's ego row, eq. 9 with tau = 0.3 (2-way or in-batch) between
    the pooled user, the positive and h, and eq. 10's Frobenius term; the adapter's gradients too. Passing eq. 9 the
    random negative, swapping user and item, detaching h or ignoring the temperature passed every earlier test; the
    embedding tables' gradients catch a gradient through the item-norm scale, which only rescales h."""
    import copy

    import torch.nn.functional as F

    from recbole_hnlm.ops import gather_rows

    tau, cl_weight, lam, frobenius_weight = 0.3, 0.5, 0.4, 0.01
    store = write_store(ml_slice, tmp_path / "half.safetensors", fraction=0.5)
    model, batch = build(fast_config, store, hnlm_missing="random", hnlm_lambda=lam, hnlm_h_norm=h_norm,
                         hnlm_cl_weight=cl_weight, hnlm_cl_temperature=tau, hnlm_cl_in_batch=in_batch,
                         hnlm_adapter_reg_weight=frobenius_weight, hnlm_center=False)
    user, pos, neg = batch["user_id"], batch["item_id"], batch["neg_item_id"]
    with torch.no_grad():  # scores away from 0, and an adapter output on the embeddings' scale
        model.user_embedding.weight.mul_(10)
        model.item_embedding.weight.mul_(10)
    losses = model.calculate_loss(batch)
    assert isinstance(losses, tuple) and len(losses) == 3
    sum(losses).backward()
    tables = (model.user_embedding.weight, model.item_embedding.weight)
    table_grads = [t.grad.clone() for t in tables]
    for table in tables:
        table.grad = None
    adapter = copy.deepcopy(model.sampler.adapter).double()
    adapter.zero_grad()
    x, found = model.sampler.pairs.lookup(user, pos)
    assert 0 < int(found.sum()) < len(found)
    emb = model.propagate(with_layers=False)
    u, i, j = (gather_rows(t, r).double() for t, r in ((emb.user, user), (emb.item, pos), (emb.item, neg)))
    h = adapter(x.double())
    h_bpr = F.normalize(h, dim=1) * j.detach().norm(dim=1, keepdim=True) if h_norm == "item" else h  # a scale only
    weight = lam * found.double()[:, None]
    mixed = weight * h_bpr + (1 - weight) * j  # eq. 7
    bpr = F.softplus((u * mixed).sum(1) - (u * i).sum(1)).mean()  # eq. 8
    ego_u, ego_i = model.user_embedding.weight.double(), model.item_embedding.weight.double()
    l2 = model.reg_weight * (ego_u[user].pow(2).sum() + ego_i[pos].pow(2).sum() + ego_i[neg].pow(2).sum()) / (
        2 * len(user))
    un, pn, hn = (F.normalize(t[found], dim=1) for t in (u, i, h))
    positive = (un * pn).sum(1) / tau
    negatives = (un @ hn.T if in_batch else (un * hn).sum(1, keepdim=True)) / tau  # eq. 9's denominator
    alignment = (torch.logsumexp(torch.cat([positive[:, None], negatives], 1), 1) - positive).mean()
    frobenius = sum(layer.weight.pow(2).sum() for layer in adapter if isinstance(layer, torch.nn.Linear))
    expected = (bpr + l2, cl_weight * alignment, frobenius_weight * frobenius)
    for got, want in zip(losses, expected):
        assert torch.isclose(got.detach().double(), want.detach(), rtol=1e-5, atol=0), (float(got), float(want))
    sum(expected).backward()
    for got, want in zip(model.sampler.adapter.parameters(), adapter.parameters()):
        scale = float(want.grad.abs().max())
        assert scale > 0 and float((got.grad.double() - want.grad).abs().max()) <= 1e-4 * scale
    for got, table in zip(table_grads, tables):  # through the propagation (float32) and the reference's float64 tail
        scale = float(table.grad.abs().max())
        assert scale > 0 and float((got - table.grad).abs().max()) <= 1e-4 * scale


def test_probes_of_an_eval_mode_model_stay_out_of_the_epoch_report(fast_config, ml_slice, tmp_path):
    """The fhn analysis probes the model between epochs through hard_negatives (eval mode): its rows were folded
    into the next epoch's coverage and cos(user, h) figures."""
    store = write_store(ml_slice, tmp_path / "s.safetensors")
    model, batch = build(fast_config, store)
    model.train()
    model.calculate_loss(batch)
    after_training = dict(model.sampler._stats)
    assert after_training["rows"] == len(batch["user_id"])
    model.eval()
    model.hard_negatives(batch["user_id"][:100], batch["item_id"][:100])
    assert model.sampler._stats == after_training


@pytest.mark.parametrize("cl_weight, adapter_reg", [(1e-3, 1e-4), (0.0, 0.0)])
def test_the_loss_columns_are_named_in_the_order_the_loss_returns_them(fast_config, ml_slice, tmp_path, caplog,
                                                                       cl_weight, adapter_reg):
    """RecBole logs a tuple loss as train_loss1, 2, ...: which is eq. 9 and which SGL's own term moved with the
    options (hnlm_cl_weight=0 made train_loss2 SGL's), and no log said which."""
    import logging

    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_hnlm.config import Config
    from recbole_hnlm.model.sgl import SGL

    store = write_store(ml_slice, tmp_path / "s.safetensors")
    config = Config(model="SGL", config_dict=config_for(fast_config, store, hnlm_cl_weight=cl_weight,
                                                        hnlm_adapter_reg_weight=adapter_reg,
                                                        negative_warmup_epochs=1))
    init_seed(config["seed"], True)
    train_data, _, _ = data_preparation(config, create_dataset(config))
    model, batch = SGL(config, train_data._dataset), next(iter(train_data))
    caplog.set_level(logging.INFO)
    for epoch, sampler_terms in ((0, ()), (1, ("eq. 9",) * (cl_weight > 0) + ("Frobenius",) * (adapter_reg > 0))):
        caplog.clear()
        model.on_epoch_start(epoch)
        names = model.loss_names()
        assert len(names) == len(model.calculate_loss(batch))
        expected = ("BPR",) + sampler_terms + ("self-supervised",)
        assert len(names) == len(expected) and all(part in name for part, name in zip(expected, names)), names
        said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("loss columns")]
        assert said == [f"loss columns from epoch {epoch}: "
                        + ", ".join(f"train_loss{k} = {name}" for k, name in enumerate(names, 1))] or (
            epoch == 1 and not sampler_terms and said == [])  # the same columns: not said again


def test_a_max_pairs_subset_under_missing_error_is_refused_before_the_llm_stage(fast_config, ml_slice, monkeypatch):
    """hnlm_max_pairs below the training pairs with the default hnlm_missing=error was refused by the coverage check,
    after the whole LLM stage (a MixGCF teacher of 10-40 hours at Amazon-Book size on a CPU)."""
    from recbole.data import create_dataset, data_preparation

    from recbole_hnlm.config import Config
    from recbole_hnlm.llm import teacher_training
    from recbole_hnlm.sampler.hnlmrec import HNLMRec

    config = Config(model="LightGCN", config_dict={**fast_config, "sampler": "HNLMRec", "hnlm_max_pairs": 5})
    train_data, _, _ = data_preparation(config, create_dataset(config))
    started = []
    monkeypatch.setattr(teacher_training, "ensure_teacher", lambda *args, **kwargs: started.append(args))
    n = len(training_pairs(ml_slice))
    with pytest.raises(ConfigError, match=rf"hnlm_max_pairs=5 gives at most 5 of the {n} training pairs an LLM "
                                          "negative, .*set hnlm_missing=random"):
        HNLMRec.prepare(config, train_data._dataset, train_data)
    assert started == []
    for max_pairs, missing in ((n, "error"), (0, "error"), (5, "random")):  # every pair, or the fallback named
        config["hnlm_max_pairs"], config["hnlm_missing"] = max_pairs, missing
        HNLMRec.check_subset_is_allowed(config, train_data)


def test_a_store_of_this_dataset_without_vectors_names_the_failed_answers(fast_config, ml_slice, tmp_path):
    """Every LLM answer failed (SmolLM2 on unfamiliar titles): the error said the store "holds none of this dataset's
    pairs" and to leave hnlm_file unset, which it was."""
    _, name = ml_slice
    path = str(tmp_path / "empty.safetensors")
    write_pair_store(path, [], [], torch.zeros(0, D_LLM), {"variant": "semantic", "dataset": name,
                                                           "dataset_hash": "test"}, dtype=torch.float32)
    with pytest.raises(ConfigError, match=rf"holds no vector: every LLM answer of its stage failed or was refused "
                                          rf"\({path}\.texts\.jsonl records why\)\. A model that answers"):
        build(fast_config, path)
    write_pair_store(path, [], [], torch.zeros(0, D_LLM), {"variant": "finetuned", "dataset": name,
                                                           "dataset_hash": "test"}, dtype=torch.float32)
    with pytest.raises(ConfigError, match=rf"holds no vector: no pair could be embedded \({path}\.failures\.jsonl "
                                          "records why: users or items the teacher lacks"):
        build(fast_config, path)


def test_a_store_without_vectors_under_missing_random_is_one_warning(fast_config, ml_slice, tmp_path, caplog):
    """With hnlm_missing=random the run trains as RNS: one warning naming the failures, not also a centring warning
    about "0 vector(s)" that "centring a single vector leaves 0"."""
    import logging

    _, name = ml_slice
    path = str(tmp_path / "empty.safetensors")
    write_pair_store(path, [], [], torch.zeros(0, D_LLM), {"variant": "semantic", "dataset": name,
                                                           "dataset_hash": "test"}, dtype=torch.float32)
    caplog.set_level(logging.WARNING)
    model, _ = build(fast_config, path, hnlm_missing="random", hnlm_center=True)
    assert model.sampler.pairs.emb.shape[0] == 0
    assert f"holds no vector: every LLM answer of its stage failed or was refused ({path}.texts.jsonl" in caplog.text
    assert "hnlm_center" not in caplog.text and "vector(s)" not in caplog.text


@pytest.mark.parametrize("variant", ["finetuned", "semantic"])
def test_an_empty_store_of_another_dataset_is_named_as_such(fast_config, tmp_path, variant):
    """A store of another dataset is named as one, whether it holds vectors or not (its own remedy, not the failed
    answers of an LLM stage this run never had); a store of this dataset with vectors of none of its pairs is not
    called empty."""
    path = str(tmp_path / "other.safetensors")
    write_pair_store(path, [], [], torch.zeros(0, D_LLM), {"variant": variant, "dataset": "yelp2018",
                                                           "dataset_hash": "test"}, dtype=torch.float32)
    with pytest.raises(ConfigError, match=r"other\.safetensors was built for dataset 'yelp2018'\. Leave hnlm_file "
                                          "unset to build the negatives of this dataset"):
        build(fast_config, path)


def test_a_store_of_this_dataset_with_vectors_of_none_of_its_pairs_is_not_called_empty(fast_config, ml_slice, tmp_path):
    _, name = ml_slice
    path = str(tmp_path / "strangers.safetensors")
    write_pair_store(path, ["nobody"], ["nothing"], torch.ones(1, D_LLM), {"variant": "semantic", "dataset": name,
                                                                           "dataset_hash": "test"}, dtype=torch.float32)
    with pytest.raises(ConfigError, match=r"strangers\.safetensors holds none of this dataset's pairs\. Leave "
                                          "hnlm_file unset"):
        build(fast_config, path)


def test_the_subset_check_counts_distinct_pairs_not_repeated_interactions():
    """A pair interacted with twice is one pair of the LLM stage: hnlm_max_pairs equal to the distinct pairs covers
    them all."""
    from types import SimpleNamespace

    from recbole_hnlm.sampler.hnlmrec import HNLMRec

    dataset = SimpleNamespace(uid_field="user_id", iid_field="item_id", item_num=10,
                              inter_feat={"user_id": torch.tensor([1, 1, 2]), "item_id": torch.tensor([3, 3, 3])})
    train_data = SimpleNamespace(_dataset=dataset)
    HNLMRec.check_subset_is_allowed({"hnlm_max_pairs": 2, "hnlm_missing": "error"}, train_data)
    with pytest.raises(ConfigError, match="hnlm_max_pairs=1 gives at most 1 of the 2 training pairs"):
        HNLMRec.check_subset_is_allowed({"hnlm_max_pairs": 1, "hnlm_missing": "error"}, train_data)


def test_a_store_without_vectors_is_not_announced_as_centred(fast_config, ml_slice, tmp_path, caplog):
    _, name = ml_slice
    path = str(tmp_path / "empty.safetensors")
    write_pair_store(path, [], [], torch.zeros(0, D_LLM), {"variant": "semantic", "dataset": name,
                                                           "dataset_hash": "test"}, dtype=torch.float32)
    caplog.set_level(logging.INFO)
    build(fast_config, path, hnlm_missing="random", hnlm_center=True)
    assert "holds no vector" in caplog.text
    assert "stored vectors centred" not in caplog.text and "hnlm_center is not applied" not in caplog.text


def test_alignment_loss_of_a_batch_without_llm_negatives_is_zero(fast_config, ml_slice, tmp_path):
    """A batch with no covered pair (hnlm_missing=random) adds an alignment loss of 0 with finite gradients (an
    inf/NaN or non-zero term passed unseen)."""
    store = write_store(ml_slice, tmp_path / "half.safetensors", fraction=0.5)
    model, batch = build(fast_config, store, hnlm_missing="random")
    user, pos = batch["user_id"], batch["item_id"]
    _, found = model.sampler.pairs.lookup(user, pos)
    keep = ~found
    emb = model.propagate(with_layers=False)
    out = model.sampler(SamplingContext(user=user[keep], pos=pos[keep], neg=batch["neg_item_id"][keep], emb=emb))
    (cl,) = out.aux_losses[:1]
    assert float(cl.detach()) == 0.0
    cl.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.sampler.adapter.parameters())


def test_epoch_report_mean_cos_user_h_is_the_mean_over_covered_rows(fast_config, ml_slice, tmp_path, caplog):
    """The logged mean cos(user, h), the figure that shows the degenerate solution, is the mean over the epoch's
    covered rows (its sign, axis and averaging were never checked)."""
    store = write_store(ml_slice, tmp_path / "s.safetensors")
    model, batch = build(fast_config, store)
    sampler = model.sampler
    user, pos, neg = batch["user_id"], batch["item_id"], batch["neg_item_id"]
    emb = model.propagate(with_layers=False)
    halves = (slice(0, len(user) // 2), slice(len(user) // 2, None))
    with torch.no_grad():
        for p in halves:
            sampler(SamplingContext(user=user[p], pos=pos[p], neg=neg[p], emb=emb))
        h = sampler.adapter(sampler.pairs.lookup(user, pos)[0])
        expected = float(F.cosine_similarity(emb.user[user].double(), h.double(), dim=1).mean())
    caplog.clear()
    with caplog.at_level(logging.INFO):
        sampler.epoch_report()
    got = float(re.search(r"mean cos\(user, h\) ([-+0-9.]+)", caplog.text).group(1))
    assert got == pytest.approx(expected, abs=1e-4)


def test_a_frozen_adapter_adds_no_frobenius_term(fast_config, ml_slice, tmp_path):
    """A frozen adapter has no Frobenius term (its weight or loss column would be a constant)."""
    store = write_store(ml_slice, tmp_path / "s.safetensors")
    model, batch = build(fast_config, store, hnlm_frozen_adapter=True, hnlm_adapter_reg_weight=1e-2)
    assert model.sampler.adapter_reg_weight == 0.0
    assert not any("Frobenius" in name for name in model.sampler.aux_loss_names())


def test_every_sampler_starts_from_the_backbone_weights_of_its_seed(fast_config, ml_slice, tmp_path):
    """HNLMRec's adapter was drawn from the seeded stream before the backbone's embeddings, so its runs started from
    other embeddings than the RNS/DNS/MixGCF/AHNS runs of their seed: the grids' paired tests paired seeds, not
    initialisations. The adapter now comes from a stream derived from the seeded one: the backbone's weights and the
    stream after the build are every sampler's, while the adapter still follows the seed and shares no numbers with
    the embeddings."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_hnlm.config import Config
    from recbole_hnlm.model.lightgcn import LightGCN

    store = write_store(ml_slice, tmp_path / "s.safetensors")

    def built(sampler, seed):
        config = Config(model="LightGCN", config_dict=config_for(fast_config, store, sampler=sampler, seed=seed))
        init_seed(fast_config.get("seed", 2020), True)  # one split (the store's pairs are its training pairs)
        train_data, _, _ = data_preparation(config, create_dataset(config))
        init_seed(seed, True)  # as quick_start.build_model
        model = LightGCN(config, train_data._dataset)
        return model, torch.rand(4)

    rns, after_rns = built("RNS", 2020)
    for sampler in ("DNS", "MixGCF", "AHNS", "HNLMRec"):
        model, after = built(sampler, 2020)
        assert torch.equal(model.user_embedding.weight, rns.user_embedding.weight), sampler
        assert torch.equal(model.item_embedding.weight, rns.item_embedding.weight), sampler
        assert torch.equal(after, after_rns), sampler
    hnlm, _ = built("HNLMRec", 2020)
    other, _ = built("HNLMRec", 2021)
    first = hnlm.sampler.adapter[0].weight
    assert torch.equal(first, model.sampler.adapter[0].weight)  # the seed decides it
    assert not torch.equal(first, other.sampler.adapter[0].weight)
    init_seed(2020, True)
    from_the_seeded_stream = torch.nn.Linear(*first.T.shape)  # the numbers the backbone's weights are made of
    assert not torch.equal(first, from_the_seeded_stream.weight)


def test_a_negative_warm_up_as_long_as_the_run_is_the_rns_run(fast_config, ml_slice, tmp_path):
    """With the backbone's weights no longer moved by the adapter's draws, HNLMRec's warm-up epochs are an RNS run bit
    for bit, as DNS's, MixGCF's and AHNS's are (tests/test_quick_start.py): a warm-up covering the run reproduces it."""
    store = write_store(ml_slice, tmp_path / "s.safetensors")
    rns = run_recbole_hnlm(model="LightGCN", config_dict={**fast_config, "sampler": "RNS", "epochs": 2})
    warm = run_recbole_hnlm(model="LightGCN", config_dict=config_for(fast_config, store, epochs=2,
                                                                     negative_warmup_epochs=2))
    assert warm["best_valid_result"] == rns["best_valid_result"] and warm["test_result"] == rns["test_result"]
