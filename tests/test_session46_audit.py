"""Mutation audit of the 2026-12-07 changes (QA helper, session 46): a subclass's property files, the backbone's option
checks, the score-only-model message, a model of the user's own and foreign options, the grid's warning about results
stored before ``init_rule``, the answer-check version tags and the command lines' exit status."""
import json
import logging
import os
import shutil

import pytest
import yaml

from recbole_hnlm.config import Config
from recbole_hnlm.errors import ConcurrentWriterError, ConfigError, DataError, WriteError, exit_status
from recbole_hnlm.model.abstract import SampledRecommender
from recbole_hnlm.model.mf import MF


class MyMF(MF):
    """A model of the user's own (a subclass of the plugin's MF, which has no property file of its own)."""


class TheirMF(SampledRecommender):
    """A model of the user's own written on the plugin's base class: no property file gives it anything."""


def _settings(fast_config, **extra):
    return {**fast_config, "sampler": "RNS", **extra}


# -- config.py: the model's lineage of property files ------------------------------------------------------------------
def test_a_subclass_own_plugin_property_file_wins_over_its_bases(fast_config, tmp_path, monkeypatch):
    """The plugin's model yamls are read along the MRO, the farthest base first and the class itself last, so that a
    subclass's own file overrides its base's keys and keeps the rest (config.py precedence list, item 3)."""
    import recbole_hnlm.config as config_module

    properties = tmp_path / "properties"
    shutil.copytree(config_module.PROPERTIES_DIR, properties)
    with open(properties / "model" / "LightGCN.yaml", encoding="utf-8") as f:
        base = yaml.safe_load(f)
    own_layers = base["n_layers"] + 2
    (properties / "model" / "DeepLightGCN.yaml").write_text(f"n_layers: {own_layers}\n")
    monkeypatch.setattr(config_module, "PROPERTIES_DIR", str(properties))
    from recbole_hnlm.model.lightgcn import LightGCN

    DeepLightGCN = type("DeepLightGCN", (LightGCN,), {})
    config = Config(model=DeepLightGCN, config_dict=_settings(fast_config), command_line=False)
    assert config["n_layers"] == own_layers  # its own file, read after its base's
    assert config["embedding_size"] == base["embedding_size"]  # the rest from the base's file
    assert float(config["reg_weight"]) == float(base["reg_weight"])


# -- model/abstract.py: check_options_set ---------------------------------------------------------------------------
def test_a_recbole_config_without_a_sampler_is_refused_even_with_candidate_max_rounds(fast_config, monkeypatch):
    """``check_options_set`` asks for the plugin's Config when the sampler is unset, also where the user copied
    ``candidate_max_rounds`` into RecBole's own Config (not only when that option is missing)."""
    from recbole.config import Config as RecBoleConfig

    from recbole_hnlm.model.lightgcn import LightGCN

    monkeypatch.setattr("sys.argv", ["prog"])
    config = RecBoleConfig(model=LightGCN, config_dict={**fast_config, "candidate_max_rounds": 4})
    assert "candidate_max_rounds" in config and config["sampler"] is None  # the case this test is about
    with pytest.raises(ConfigError, match=r"recbole_hnlm\.config\.Config"):
        LightGCN.check_options_set(config)


def test_a_zero_reg_weight_of_a_users_model_counts_as_set(fast_config):
    """Only ``None`` is "not set" for :attr:`required_options`: ``reg_weight: 0`` (no L2 term) is a value."""
    given = {"embedding_size": 8, "reg_weight": 0.0}
    config = Config(model=TheirMF, config_dict=_settings(fast_config, **given), command_line=False)
    assert config["reg_weight"] == 0.0
    with pytest.raises(ConfigError, match="'reg_weight' of TheirMF are not set"):
        Config(model=TheirMF, config_dict=_settings(fast_config, embedding_size=8), command_line=False)


# -- utils.py: the message for a score-only model -------------------------------------------------------------------
def test_score_only_models_are_named_by_whose_they_are(fast_config):
    """A hard sampler with a score-only model: RecBole's own class is "RecBole's BPR" (no hint to subclass
    SampledRecommender); a class of another package, even one whose name starts with "recbole", is "X (not a
    recbole_hnlm backbone)" with the hint."""
    from recbole.model.general_recommender import BPR

    extra = type("ExtraBPR", (BPR,), {"__module__": "recbole_extras.models"})  # a user package named recbole_*
    with pytest.raises(ConfigError) as theirs:
        Config(model=extra, config_dict=_settings(fast_config, sampler="DNS"), command_line=False)
    assert "ExtraBPR (not a recbole_hnlm backbone) only exposes scores" in str(theirs.value)
    assert "RecBole's ExtraBPR" not in str(theirs.value) and "SampledRecommender" in str(theirs.value)
    with pytest.raises(ConfigError) as recboles:
        Config(model=BPR, config_dict=_settings(fast_config, sampler="DNS"), command_line=False)
    assert "RecBole's BPR only exposes scores" in str(recboles.value)
    assert "SampledRecommender" not in str(recboles.value)


# -- config_checks.py: foreign options of a model of the user's own -------------------------------------------------
def test_foreign_options_own_model_rule(fast_config):
    """A model of the user's own may read any model's option, RecBole's included (``mess_dropout``, only RecBole's
    KG models define it): nothing is named for it. RecBole's BPR has a property file: the plugin's backbone option
    ``n_layers`` is still named for it."""
    given = {"embedding_size": 8, "reg_weight": 1e-4}
    mine = Config(model=TheirMF, config_dict=_settings(fast_config, mess_dropout=0.1, **given), command_line=False)
    assert mine.foreign_options == []
    bpr = Config(model="BPR", config_dict=_settings(fast_config, n_layers=2), command_line=False)
    assert [key for key, _ in bpr.foreign_options] == ["n_layers"]


# -- load.py: model_class ------------------------------------------------------------------------------------------
def test_load_data_and_model_refuses_a_model_class_that_is_not_a_class(fast_config, monkeypatch):
    """``model_class`` is a class: its name given instead (even the checkpoint's own) is a ConfigError saying so and
    naming the checkpoint's model, not an AttributeError."""
    from recbole_hnlm.load import load_data_and_model
    from recbole_hnlm.quick_start import run_recbole_hnlm

    monkeypatch.setattr("sys.argv", ["prog"])
    run = run_recbole_hnlm(model="MF", config_dict=_settings(fast_config, epochs=1))
    with pytest.raises(ConfigError, match=r"model_class must be a class \(that of the checkpoint's model, MF\)"):
        load_data_and_model(run["checkpoint"], model_class="MF")


# -- resume.py: _beside ---------------------------------------------------------------------------------------------
def test_beside_keeps_a_relative_resume_files_folder_relative():
    """The best checkpoint is looked for in the resume state's folder, written as the resume file was (relative for
    a relative one), whatever folder the stored best checkpoint named."""
    from recbole_hnlm.resume import _beside

    assert _beside(os.path.join("run", "MF-x.resume.safetensors"), "/elsewhere/MF-x.safetensors") == \
        os.path.join("run", "MF-x.safetensors")
    assert _beside("/abs/run/MF-x.resume.safetensors", "MF-x.safetensors") == "/abs/run/MF-x.safetensors"


# -- benchmark/grid.py: results stored before init_rule -------------------------------------------------------------
def _result(cell, dataset):
    value = 0.1 + cell.seed / 100
    return {"cell": cell.key, "model": cell.model, "sampler": cell.sampler, "seed": cell.seed,
            "train_ratio": cell.train_ratio, "dataset": dataset, "valid_metric": "NDCG@10", "best_valid_score": value,
            "best_epoch": 0, "epochs_run": 1, "mean_epoch_time": 1.0, "total_time": 1.0, "analysis": {},
            "test_result": {"ndcg@10": value}, "epochs": [], "split": {"fingerprint": "0" * 40}}


class _Runner:
    """A cell runner that trains nothing (the grid's bookkeeping is under test); records the cells it ran."""

    def __init__(self):
        self.calls = []

    def __call__(self, cell, dataset, out, config_dict=None, analyses=(), fhn_pairs=2048, **kwargs):
        self.calls.append(cell.key)
        result = _result(cell, dataset)
        if "fhn" in analyses:
            result["analysis"] = {"fhn": {"rate": 0.0, "threshold": 0.9, "pairs": 10, "requested_pairs": fhn_pairs}}
        return result


def _grid(out, seeds, models=("MF",), samplers=("HNLMRec",), **kwargs):
    from recbole_hnlm.benchmark.grid import run_grid

    runner = _Runner()
    run_grid("toy", list(models), list(samplers), list(seeds), str(out), progress=False, cell_runner=runner,
             cell_checker=None, **kwargs)
    return runner.calls


def _as_older(out, *cells, rule=None):
    """Rewrite stored results as an older version wrote them (no ``init_rule``), or with another ``rule``."""
    for cell in cells:
        path = out / "runs" / f"{cell}.json"
        result = json.loads(path.read_text())
        result.pop("init_rule")
        if rule is not None:
            result["init_rule"] = rule
        path.write_text(json.dumps(result))


def _warned(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "0d96dcd" in r.getMessage()]


def test_an_older_result_of_another_seed_not_in_this_grid_is_named(tmp_path, caplog):
    """The row's other seeds count (the stored results this grid does not list): running seed 2 alone next to an
    older seed 1 warns, naming it."""
    out = tmp_path / "out"
    _grid(out, [1])
    _as_older(out, "MF-HNLMRec-seed1")
    with caplog.at_level(logging.WARNING):
        assert _grid(out, [2]) == ["MF-HNLMRec-seed2"]
    (message,) = _warned(caplog)
    assert message.startswith("MF-HNLMRec-seed1: ")


def test_the_older_cells_are_named_in_order(tmp_path, caplog):
    """Several older cells are named once each, sorted (a stable message for a stable folder)."""
    out = tmp_path / "out"
    _grid(out, [1, 2, 3])
    _as_older(out, "MF-HNLMRec-seed3", "MF-HNLMRec-seed1", "MF-HNLMRec-seed2")
    with caplog.at_level(logging.WARNING):
        _grid(out, [4])
    (message,) = _warned(caplog)
    assert message.startswith("MF-HNLMRec-seed1, MF-HNLMRec-seed2, MF-HNLMRec-seed3: ")


def test_only_rows_that_gain_a_new_hnlmrec_cell_are_warned_about(tmp_path, caplog):
    """An older MF row is not named when only another model's HNLMRec cell runs: MF's row mixes nothing."""
    out = tmp_path / "out"
    _grid(out, [1, 2], models=("MF",))
    _grid(out, [1], models=("LightGCN",))
    _as_older(out, "MF-HNLMRec-seed1")
    with caplog.at_level(logging.WARNING):
        assert _grid(out, [1, 2], models=("MF", "LightGCN")) == ["LightGCN-HNLMRec-seed2"]
    assert _warned(caplog) == []


def test_an_older_cell_run_again_is_not_named(tmp_path, caplog):
    """A stored older cell that this grid runs again (an analysis it lacks) is replaced, not averaged in: no
    warning names it."""
    out = tmp_path / "out"
    _grid(out, [1])
    _as_older(out, "MF-HNLMRec-seed1")
    with caplog.at_level(logging.WARNING):
        assert _grid(out, [1], analyses=["fhn"]) == ["MF-HNLMRec-seed1"]
    assert _warned(caplog) == []


def test_a_result_with_an_init_rule_is_not_named(tmp_path, caplog):
    """Only results that lack ``init_rule`` are suspect: one stored with a rule (of this or a later version) is not
    named."""
    out = tmp_path / "out"
    _grid(out, [1])
    _as_older(out, "MF-HNLMRec-seed1", rule="another rule")
    with caplog.at_level(logging.WARNING):
        _grid(out, [2])
    assert _warned(caplog) == []


def test_a_search_checking_its_trials_does_not_warn_yet(tmp_path, caplog):
    """``pending_cells(say_unreadable=False)`` (a search checking its trials before any trains) says nothing about
    older results; with it (the run itself) the warning comes."""
    from recbole_hnlm.benchmark.grid import grid_settings, pending_cells, source_digests
    from recbole_hnlm.benchmark.runner import Cell

    out = tmp_path / "out"
    _grid(out, [1])
    _as_older(out, "MF-HNLMRec-seed1")
    settings = grid_settings(None, None)
    cells = [Cell("MF", "HNLMRec", 1), Cell("MF", "HNLMRec", 2)]
    with caplog.at_level(logging.WARNING):
        todo, _ = pending_cells(str(out), "toy", cells, settings, (), source_digests(settings), say_unreadable=False)
    assert [cell.key for cell in todo] == ["MF-HNLMRec-seed2"] and _warned(caplog) == []
    with caplog.at_level(logging.WARNING):
        pending_cells(str(out), "toy", cells, settings, (), source_digests(settings))
    assert len(_warned(caplog)) == 1


# -- llm/store.py: answer-check versions ----------------------------------------------------------------------------
@pytest.mark.parametrize("stored", ["v2 rules without a colon", 16, ["v2:"]])
def test_answer_checks_without_a_version_tag_are_shown_as_stored(stored):
    """A stored ``answer_checks`` that does not start with ``vN:`` (or is not text) is shown as its repr, not cut to
    a tag it does not have, and does not fail."""
    from recbole_hnlm.llm.semantic import ANSWER_CHECKS
    from recbole_hnlm.llm.store import manifest_mismatch

    tag = ANSWER_CHECKS.split(":", 1)[0]
    message = manifest_mismatch({"answer_checks": stored}, {"answer_checks": ANSWER_CHECKS})
    assert message.startswith(f"manifest field 'answer_checks': stored {stored!r} != requested {tag} ")


# -- quick_start.py: _seeded_model ---------------------------------------------------------------------------------
def test_the_model_is_built_right_after_seeding_with_the_runs_seed(fast_config):
    """``_seeded_model`` seeds with the run's seed before building: random numbers drawn before it (data loading,
    a sampler's preparation) do not change the initial weights, which are those of a model built just after
    ``init_seed(seed)``."""
    import torch
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_hnlm.quick_start import _seeded_model

    config = Config(model="MF", config_dict=_settings(fast_config, seed=7), command_line=False)
    train_data, _, _ = data_preparation(config, create_dataset(config))
    torch.rand(1000)
    first = _seeded_model(config, train_data).state_dict()
    torch.rand(1000)
    again = _seeded_model(config, train_data).state_dict()
    torch.rand(1000)
    init_seed(7, config["reproducibility"])
    expected = MF(config, train_data._dataset).state_dict()
    assert first.keys() == expected.keys() and first
    assert all(first[key].equal(expected[key]) and again[key].equal(expected[key]) for key in expected)


# -- errors.py: exit_status -----------------------------------------------------------------------------------------
def test_exit_status_is_1_for_a_busy_or_full_machine_and_2_for_bad_input():
    """Documented rule: 1 where the command works as it is later (another writer, a full disk), 2 for bad input."""
    assert exit_status(ConcurrentWriterError("locked by pid 1")) == 1
    assert exit_status(WriteError("disk full")) == 1
    for bad_input in (ConfigError("bad option"), DataError("bad file"), FileNotFoundError("no such file")):
        assert exit_status(bad_input) == 2
