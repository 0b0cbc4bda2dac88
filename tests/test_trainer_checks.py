"""Mutation audit of the trainer (``recbole_hnlm/trainer.py``) and the checkpoint files
(``recbole_hnlm/checkpoint.py``): behaviour the end-to-end tests left open. Each test names the mutants it kills."""
import json
import os
import re

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from recbole_hnlm.checkpoint import FORMAT, load_checkpoint, read_rng_state, read_trainer_state, save_checkpoint
from recbole_hnlm.errors import ConcurrentWriterError
from recbole_hnlm.trainer import _HELD_MARKERS, _drop_marker, _reserve_stem, check_resume_not_in_use

NAMES = {"model": "MF", "sampler": "RNS", "dataset": "ml-slice"}


class Tiny(torch.nn.Module):
    """A small real module with RecBole's ``other_parameter`` pair (what SGL-like models keep beside the weights)."""

    def __init__(self, extra=False, tied=False):
        super().__init__()
        self.w = torch.nn.Parameter(torch.arange(6, dtype=torch.float32).reshape(2, 3))
        if extra:
            self.v = torch.nn.Parameter(torch.zeros(2))
        if tied:
            self.w_out = self.w  # one tensor under two state_dict names
        self.cache, self.loaded = None, "never called"

    def other_parameter(self):
        return {"cache": self.cache, "unset": None}

    def load_other_parameter(self, para):
        self.loaded = para


def _edited_copy(path, out, edit):
    """A copy of checkpoint ``path`` at ``out`` whose metadata dict went through ``edit``."""
    with safe_open(path, framework="pt") as f:
        meta = json.loads(f.metadata()["recbole_hnlm"])
    edit(meta)
    save_file(load_file(path), str(out), metadata={"recbole_hnlm": json.dumps(meta)})
    return str(out)


# --- checkpoint.py -------------------------------------------------------------------------------------------------

def test_numpy_scalars_are_stored_as_python_numbers_and_other_objects_are_refused(tmp_path):
    """C01: NumPy scalars (scripts pass np.int64 options) were refused as "cannot store int64"; C02: an object JSON
    cannot hold must stop the write, not be stored as its str()."""
    path = str(tmp_path / "c.safetensors")
    save_checkpoint(path, Tiny(), trainer_state={**NAMES, "epoch": np.int64(3), "best_valid_score": np.float32(0.5)})
    state = read_trainer_state(path)
    assert state["epoch"] == 3 and type(state["epoch"]) is int and state["best_valid_score"] == 0.5
    with pytest.raises(TypeError, match="cannot store object in a checkpoint's metadata"):
        save_checkpoint(str(tmp_path / "d.safetensors"), Tiny(), trainer_state={**NAMES, "x": object()})
    assert not os.path.exists(tmp_path / "d.safetensors")


def test_other_parameter_tensors_round_trip(tmp_path):
    """C04: ``other_parameter()`` tensors are stored and given back to ``load_other_parameter`` (None stays None)."""
    model, path = Tiny(), str(tmp_path / "c.safetensors")
    model.cache = torch.tensor([1.0, 2.0, 3.0])
    save_checkpoint(path, model, trainer_state=NAMES)
    fresh = Tiny()
    load_checkpoint(path, fresh)
    assert set(fresh.loaded) == {"cache", "unset"} and fresh.loaded["unset"] is None
    assert torch.equal(fresh.loaded["cache"], model.cache)


def test_non_tensor_optimizer_state_round_trips(tmp_path):
    """C05/C17: an optimizer state entry that is not a tensor (SparseAdam's integer ``step``, one of RecBole's
    learners) is stored in the metadata and restored with the tensors; dropped, the restored optimizer failed at its
    next step (KeyError 'step')."""
    def trained():
        torch.manual_seed(0)
        emb = torch.nn.Embedding(5, 2, sparse=True)
        opt = torch.optim.SparseAdam(emb.parameters(), lr=0.1)
        for _ in range(2):
            opt.zero_grad()
            emb(torch.tensor([1, 3])).sum().backward()
            opt.step()
        return emb, opt

    emb, opt = trained()
    path = str(tmp_path / "c.safetensors")
    save_checkpoint(path, emb, opt, trainer_state=NAMES)
    fresh = torch.nn.Embedding(5, 2, sparse=True)
    fresh_opt = torch.optim.SparseAdam(fresh.parameters(), lr=0.1)
    load_checkpoint(path, fresh, fresh_opt)
    got = fresh_opt.state_dict()["state"][0]
    assert got["step"] == 2 and type(got["step"]) is int
    assert torch.equal(got["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    for optimizer, module in ((opt, emb), (fresh_opt, fresh)):  # both take the same next step
        optimizer.zero_grad()
        module(torch.tensor([1, 3])).sum().backward()
        optimizer.step()
    assert torch.equal(fresh.weight, emb.weight)


def test_weights_that_do_not_fit_the_model_are_refused(tmp_path):
    """C18: a checkpoint without one of the model's parameters must not load silently (the parameter would keep its
    random initial value)."""
    path = str(tmp_path / "c.safetensors")
    save_checkpoint(path, Tiny(), trainer_state=NAMES)
    with pytest.raises(RuntimeError, match="Missing key"):
        load_checkpoint(path, Tiny(extra=True))


def test_a_model_with_tied_weights_is_saved(tmp_path):
    """C20: the tensors are copied before writing; safetensors refuses tensors that share memory."""
    model, path = Tiny(tied=True), str(tmp_path / "c.safetensors")
    assert model.state_dict()["w"].data_ptr() == model.state_dict()["w_out"].data_ptr()
    save_checkpoint(path, model, trainer_state=NAMES)
    stored = load_file(path)
    assert torch.equal(stored["model.w"], model.w) and torch.equal(stored["model.w_out"], model.w)


@pytest.mark.parametrize("metadata", [None, {"format": "pt"}])
def test_a_safetensors_file_of_someone_else_is_named(tmp_path, metadata):
    """C07: a safetensors file without our metadata is "not a recbole_hnlm checkpoint" (KeyError without the check)."""
    path = str(tmp_path / "foreign.safetensors")
    save_file({"w": torch.zeros(2)}, path, metadata=metadata)
    for read in (read_trainer_state, read_rng_state, lambda p: load_checkpoint(p, Tiny())):
        with pytest.raises(ValueError, match="foreign.safetensors is not a recbole_hnlm checkpoint"):
            read(path)


@pytest.mark.parametrize("edit, message", [
    (lambda meta: meta.update(format="recbole_hnlm/checkpoint/v0"),  # C08
     f"unsupported checkpoint format 'recbole_hnlm/checkpoint/v0', expected {FORMAT!r}"),
    (lambda meta: meta["trainer"].update(epoch=True), "'epoch' is True, not an integer"),  # C09
    (lambda meta: meta["trainer"].update(cur_step=False), "'cur_step' is False, not an integer"),  # C09
    (lambda meta: meta["trainer"].update(best_valid_score="high"), "'best_valid_score' is 'high', not a number"),
    (lambda meta: meta["trainer"].update(best_valid_score=True), "'best_valid_score' is True, not a number"),  # C10
    (lambda meta: meta["trainer"].update(best_valid_result={"ndcg@20": True}),  # C11
     "'best_valid_result' is {'ndcg@20': True}, not a mapping"),
    (lambda meta: meta["trainer"].update(model=""), "'model' is '', not a name"),  # C12
])
def test_damaged_metadata_is_named(tmp_path, edit, message):
    path = str(tmp_path / "c.safetensors")
    save_checkpoint(path, Tiny(), trainer_state={**NAMES, "epoch": 0, "cur_step": 0, "best_valid_score": 0.1})
    edited = _edited_copy(path, tmp_path / "edited.safetensors", edit)
    for read in (read_trainer_state, lambda p: load_checkpoint(p, Tiny())):
        with pytest.raises(ValueError, match=f"edited.safetensors: .*{re.escape(message)}"):
            read(edited)


def test_rng_state_is_read_back_or_none(tmp_path):
    """C14: a best-epoch checkpoint has no random streams: ``read_rng_state`` says None (it raised KeyError)."""
    plain, with_rng = str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")
    save_checkpoint(plain, Tiny(), trainer_state=NAMES)
    assert read_rng_state(plain) is None
    save_checkpoint(with_rng, Tiny(), trainer_state=NAMES, rng_state=({"torch": torch.arange(3)}, {"python": [1]}))
    tensors, meta = read_rng_state(with_rng)
    assert list(tensors) == ["torch"] and torch.equal(tensors["torch"], torch.arange(3)) and meta == {"python": [1]}


# --- trainer.py: name markers --------------------------------------------------------------------------------------

@pytest.mark.parametrize("taken_by", ["MF-x.safetensors", "MF-x.resume.safetensors"])
def test_a_name_whose_best_file_or_resume_state_exists_is_not_reserved(tmp_path, taken_by):
    """T03/T04: a run with save_resume_state=False leaves only its best file (and a teacher only its resume state):
    a later run of the same second must not take that name and write over it."""
    (tmp_path / taken_by).write_bytes(b"x")
    stem, marker = _reserve_stem(str(tmp_path / "MF-x"))
    try:
        assert stem == str(tmp_path / "MF-x-2") and marker == str(tmp_path / ".MF-x-2.reserved")
    finally:
        _drop_marker(marker)


def test_markers_without_a_pid_are_left_to_their_runs(tmp_path):
    """T18: a marker without a pid (written by versions before session 25, which may still run) is neither swept nor
    taken over by a new run."""
    legacy_other, legacy_same = tmp_path / ".NGCF-old.reserved", tmp_path / ".MF-x.reserved"
    legacy_other.write_text("")
    legacy_same.write_text("")
    stem, marker = _reserve_stem(str(tmp_path / "MF-x"))
    try:
        assert stem == str(tmp_path / "MF-x-2")
        assert legacy_other.exists() and legacy_same.exists()
    finally:
        _drop_marker(marker)


def test_an_unlocked_marker_with_this_processs_pid_does_not_refuse_the_resume(tmp_path):
    """T14: where no lock could be taken (a file system without flock) this process's own marker holds only its pid:
    that pid is alive, but it is this process, so the resume is not refused."""
    marker = tmp_path / ".MF-y.reserved"
    marker.write_text(f"{os.getpid()}\n")
    assert os.path.abspath(marker) not in _HELD_MARKERS
    check_resume_not_in_use(str(tmp_path / "MF-y.resume.safetensors"))
    marker.write_text("1\n")  # pid 1 runs (init): another live process
    with pytest.raises(ConcurrentWriterError, match=r"pid 1\)"):
        check_resume_not_in_use(str(tmp_path / "MF-y.resume.safetensors"))


# --- trainer.py: the trainer's records -----------------------------------------------------------------------------

def _mf_run(fast_config, **options):
    """``(config, train_data, valid_data, test_data)`` of an MF + RNS run on the slice, split as the run script
    splits (the seed set first), its checkpoint folder created."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_hnlm.config import Config

    config = Config(model="MF", config_dict={**fast_config, "sampler": "RNS", **options})
    init_seed(config["seed"], config["reproducibility"])
    os.makedirs(config["checkpoint_dir"], exist_ok=True)
    return (config, *data_preparation(config, create_dataset(config)))


def test_the_trainer_state_records_what_a_run_is_checked_against(fast_config, monkeypatch):
    """T02/T23 (relative paths are stored absolute: load_data_and_model and the resume's init_from check run from
    another folder), T24/T25/T27/T29 (each record a later check reads)."""
    from recbole_hnlm.model.mf import MF
    from recbole_hnlm.trainer import HNLMTrainer

    data_root = fast_config["data_path"]
    monkeypatch.chdir(os.path.dirname(data_root))
    config, train_data, _, _ = _mf_run(fast_config, data_path=os.path.basename(data_root),
                                       init_from=os.path.join("elsewhere", "MF-a.safetensors"), split_seed=5)
    trainer = HNLMTrainer(config, MF(config, train_data._dataset))
    try:
        state = trainer._trainer_state(4)
    finally:
        trainer.close()
    assert (state["model"], state["sampler"], state["dataset"], state["epoch"]) == ("MF", "RNS", "ml-slice", 4)
    assert state["init_from"] == os.path.join(os.path.dirname(data_root), "elsewhere", "MF-a.safetensors")
    assert state["run_settings"]["data_path"] == data_root and os.path.isabs(data_root)
    assert state["split_seed"] == 5 and state["selection_restarted"] is False
    assert state["id_map"] == trainer.model.data_digests["id_map"] and state["train_split"]
    assert state["options"]["learning_rate"] == config["learning_rate"]


def test_make_safe_trainer_wraps_a_trainer_class_once():
    """T70: a class that is already safe is returned as it is (wrapped again, its MRO cannot be built)."""
    from recbole.trainer import Trainer

    from recbole_hnlm.trainer import HNLMTrainer, SafeCheckpointMixin, make_safe_trainer

    assert make_safe_trainer(HNLMTrainer) is HNLMTrainer
    safe = make_safe_trainer(Trainer)
    assert safe.__name__ == "SafeTrainer" and safe.__mro__[1:3] == (SafeCheckpointMixin, Trainer)


def test_the_epoch_hooks_run_around_each_epoch(fast_config, monkeypatch):
    """T67/T68: the model's ``on_epoch_start``/``on_epoch_end`` run around every training epoch (the samplers' epoch
    reports hang on the latter), and ``on_epoch_trained`` gets each epoch's index, duration and loss (HNLMRec's
    teacher checks with them whether its loss moved)."""
    from recbole_hnlm.model.abstract import SampledRecommender
    from recbole_hnlm.model.mf import MF
    from recbole_hnlm.trainer import HNLMTrainer

    events = []
    for name in ("on_epoch_start", "on_epoch_end"):
        hook = getattr(SampledRecommender, name)

        def recorded(self, epoch_idx, hook=hook, name=name):
            events.append((name, epoch_idx))
            return hook(self, epoch_idx)

        monkeypatch.setattr(SampledRecommender, name, recorded)
    config, train_data, _, _ = _mf_run(fast_config)
    trainer = HNLMTrainer(config, MF(config, train_data._dataset))
    trained = []
    trainer.on_epoch_trained = lambda epoch, seconds, loss: trained.append((epoch, seconds, loss))
    trainer.fit(train_data, None, saved=False)
    assert events == [("on_epoch_start", 0), ("on_epoch_end", 0), ("on_epoch_start", 1), ("on_epoch_end", 1)]
    assert [epoch for epoch, _, _ in trained] == [0, 1] and all(seconds > 0 for _, seconds, _ in trained)
    assert all(isinstance(loss, float) and loss > 0 for _, _, loss in trained)
    assert trained[1][2] < trained[0][2]  # MF's BPR loss falls from the first epoch to the second


def test_the_final_test_loads_the_checkpoint_it_is_given(fast_config, tmp_path):
    """T64: ``evaluate(model_file=...)`` tests that file's weights, not the run's own best file."""
    from recbole_hnlm.model.mf import MF
    from recbole_hnlm.trainer import HNLMTrainer

    config, train_data, _, test_data = _mf_run(fast_config)
    other = MF(config, train_data._dataset)
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.mul_(3.0)
    other_file = str(tmp_path / "other.safetensors")
    save_checkpoint(other_file, other, trainer_state=NAMES)
    trainer = HNLMTrainer(config, MF(config, train_data._dataset))
    assert not os.path.exists(trainer.saved_model_file)
    result = trainer.evaluate(test_data, load_best_model=True, model_file=other_file)
    assert result["ndcg@20"] >= 0
    for name, value in other.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[name], value), name
    assert trainer._name_marker is None  # a final test: the trainer gave up its reserved names


def test_the_states_written_at_a_new_best_epoch_name_its_file_and_result(fast_config, tmp_path, monkeypatch):
    """At a new best epoch the resume state is written before the best file (a run stopped between the two goes on
    from it): it must already name that best file (T35) and hold the new best's result, which RecBole records only
    after the save (T36). A checkpoint of an epoch that was not validated stores no result (T31)."""
    from recbole_hnlm.model.abstract import SampledRecommender
    from recbole_hnlm.model.mf import MF
    from recbole_hnlm.trainer import HNLMTrainer

    seen, hook = [], SampledRecommender.on_epoch_start

    def on_epoch_start(self, epoch_idx):  # epoch 1 starts: the files epoch 0 left, as a stop here would leave them
        if epoch_idx == 1:
            seen.append((read_trainer_state(trainer.resume_state_file), read_trainer_state(trainer.saved_model_file)))
        return hook(self, epoch_idx)

    monkeypatch.setattr(SampledRecommender, "on_epoch_start", on_epoch_start)
    config, train_data, valid_data, _ = _mf_run(fast_config)
    trainer = HNLMTrainer(config, MF(config, train_data._dataset))
    trainer.fit(train_data, valid_data, saved=True)
    (resume, best), = seen
    assert (resume["epoch"], resume["best_epoch"], best["epoch"]) == (0, 0, 0)
    assert resume["best_checkpoint"] == os.path.abspath(trainer.saved_model_file)
    assert best["best_valid_result"]["ndcg@20"] > 0 and resume["best_valid_result"] == best["best_valid_result"]
    later = str(tmp_path / "later.safetensors")
    trainer._save_checkpoint(5, saved_model_file=later, verbose=False)
    assert read_trainer_state(later)["epoch"] == 5 and "best_valid_result" not in read_trainer_state(later)


def test_a_resume_says_where_it_writes_as_a_warning_unless_checkpoint_dir_was_left_at_its_default(
        fast_config, tmp_path, monkeypatch, caplog):
    """T51: the run goes on writing beside its resume state; a checkpoint_dir set to another folder is worth a
    warning, the default one (``saved``, which the user did not choose) only an info line. T52: a finished run's best
    file is its state's best epoch, so nothing is mended."""
    import logging

    from recbole_hnlm.quick_start import run_recbole_hnlm

    settings = {**fast_config, "sampler": "RNS", "epochs": 1, "state": "INFO"}
    first = run_recbole_hnlm(model="MF", config_dict={**settings, "checkpoint_dir": str(tmp_path / "run")})
    monkeypatch.chdir(tmp_path)
    for checkpoint_dir, level in ((str(tmp_path / "elsewhere"), logging.WARNING), ("saved", logging.INFO)):
        caplog.clear()
        with caplog.at_level(logging.INFO):
            run_recbole_hnlm(model="MF", config_dict={**settings, "checkpoint_dir": checkpoint_dir,
                                                      "resume_from": first["resume_state"]})
        said = [r for r in caplog.records if "the run goes on writing its files in" in r.getMessage()]
        assert [r.levelno for r in said] == [level], checkpoint_dir
        assert f"in {tmp_path / 'run'}, beside its resume state" in said[0].getMessage()
        # T52: the best file of the state's best epoch is there: it is not rewritten, nor said to be missing
        assert "the run stopped before it wrote the best checkpoint" not in caplog.text
