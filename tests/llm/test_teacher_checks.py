"""Mutation-audit checks of warm_start.py, llm/teacher.py and llm/teacher_training.py: behaviour no other test pinned
down (digests, the checkpoint checks' corner cases, the teacher file's format checks, the teacher's training and its
resume state). Small real inputs: the tiny ml-100k slices of the shared fixtures, hand-written checkpoint headers."""
import glob
import json
import logging
import os
import random
import re
import types

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from recbole_hnlm.checkpoint import FORMAT, read_trainer_state
from recbole_hnlm.errors import ConfigError, DataError
from recbole_hnlm.llm import teacher_training
from recbole_hnlm.llm.teacher import TEACHER_FORMAT, Teacher, check_replaceable_teacher, export_teacher, \
    training_settings
from recbole_hnlm.llm.teacher_training import ensure_teacher, teacher_config, train_teacher
from recbole_hnlm.warm_start import (_warn_if_not_the_best_epoch, backbone_option_changes, check_init_from,
                                     check_same_data, eval_split_digest, train_pairs_digest,
                                     warn_about_changed_eval_split)
import test_llm_finetune
import test_teacher_training
from test_finetune_checks import HalfOfThePositive, _small_teacher
from test_teacher_training import _interrupt_in_epoch_1
from test_warm_start import _with_trainer_state

# the shared fixtures: the tiny RecBole dataset of the teacher-file tests, the plugin Config of a fine-tuned run
mini_recbole, hnlm_finetuned_config = test_llm_finetune.mini_recbole, test_teacher_training.hnlm_finetuned_config


def _checkpoint(path, **trainer):
    """A recbole_hnlm checkpoint of one tensor whose trainer state is MF+RNS on ml-slice with ``trainer`` applied."""
    state = {"model": "MF", "sampler": "RNS", "dataset": "ml-slice", "epoch": 1, **trainer}
    save_file({"model.user_embedding.weight": torch.zeros(2, 4)}, str(path),
              metadata={"recbole_hnlm": json.dumps({"format": FORMAT, "trainer": state})})
    return str(path)


# ------------------------------------------------------------------------------------------------------- warm start

def test_the_pair_digest_keeps_the_largest_item_apart_from_the_next_users_first():
    """Mutants: the key width was the largest item id, not one more: (user 1, item 0) then fell on (user 0, item 2);
    the width was left out of the digest: {(1, 0), (0, 2)} (width 3) and {(0, 3), (0, 2)} (width 4) share their keys."""
    assert train_pairs_digest(np.array([0, 1]), np.array([2, 0])) != train_pairs_digest(np.array([0]), np.array([2]))
    assert train_pairs_digest(np.array([1, 0]), np.array([0, 2])) != train_pairs_digest(np.array([0, 0]),
                                                                                        np.array([3, 2]))


@pytest.fixture(scope="module")
def mini_split(data_root, tmp_path_factory):
    """``(train, valid, test)`` dataloaders of the tiny slice."""
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation

    config = Config(model="BPR", dataset="mini", config_dict={
        "data_path": data_root, "show_progress": False, "checkpoint_dir": str(tmp_path_factory.mktemp("ck")),
        "eval_args": {"split": {"RS": [0.6, 0.2, 0.2]}, "order": "RO", "group_by": "user", "mode": "full"}})
    return data_preparation(config, create_dataset(config))


def test_the_eval_split_warning_needs_a_stored_digest_that_differs(mini_split, tmp_path, caplog):
    """Mutants: a checkpoint without the digest (older than it) was warned about; equal digests were warned about."""
    _, valid, test = mini_split
    caplog.set_level(logging.WARNING)
    same = _checkpoint(tmp_path / "same.safetensors", eval_split=eval_split_digest(valid._dataset, test._dataset))
    for path in (_checkpoint(tmp_path / "old.safetensors"), same):
        warn_about_changed_eval_split(path, valid, test, "eval_only")
    assert caplog.text == ""
    warn_about_changed_eval_split(_checkpoint(tmp_path / "other.safetensors", eval_split="0:0"), valid, test, "who")
    assert "who: the validation or test pairs differ from those the run of other.safetensors was evaluated on" in \
        caplog.text


def test_a_checkpoint_missing_either_digest_is_taken_with_the_warning(caplog):
    """Mutant: only a missing id_map was warned about; a state with the ids but not the training split is checked by
    its shapes only too."""
    caplog.set_level(logging.WARNING)
    check_same_data({"id_map": "a"}, {"id_map": "a", "train_split": "b"}, "init_from", "old.safetensors", "ml")
    assert "init_from: old.safetensors predates the dataset and split digests" in caplog.text
    caplog.clear()
    check_same_data({"id_map": "a", "train_split": "b"}, {"id_map": "a", "train_split": "b"}, "init_from", "p", "ml")
    assert caplog.text == ""
    for state in ({"id_map": None, "train_split": "b"}, {"id_map": "a", "train_split": None}):
        caplog.clear()  # a null digest is no digest either (it was compared with nothing, and not warned about)
        check_same_data(state, {"id_map": "a", "train_split": "b"}, "init_from", "old.safetensors", "ml")
        assert "init_from: old.safetensors predates the dataset and split digests" in caplog.text


def _init_config(init_from, **changes):
    return {"init_from": init_from, "eval_only": False, "resume_from": None, "checkpoint_dir": "saved",
            "model": "MF", "dataset": "ml-slice", "seed": 2020, "split_seed": None, **changes}


def test_resuming_a_warm_started_run_with_its_init_from_given_relative(tmp_path, monkeypatch):
    """The resume state records init_from as an absolute path; the same option given relative to the working folder
    is the same run (mutant: compared as typed, so `--init_from=rns.safetensors` was refused with "Drop
    --init_from")."""
    source = _checkpoint(tmp_path / "rns.safetensors")
    resume = _checkpoint(tmp_path / "MF-x.resume.safetensors", sampler="DNS", init_from=source)
    monkeypatch.chdir(tmp_path)
    config = _init_config("rns.safetensors", resume_from=resume)
    check_init_from(config)
    assert config["init_from"] is None  # the resume state holds the weights


def test_resuming_a_warm_started_run_with_its_init_from_given_through_a_link(tmp_path):
    """The same checkpoint reached through a symbolic link (a "latest" link, a linked data folder) was refused with
    "Drop --init_from": the paths were compared as absolute paths, not as the files they name."""
    (tmp_path / "runs").mkdir()
    source = _checkpoint(tmp_path / "runs" / "rns.safetensors")
    os.symlink(tmp_path / "runs", tmp_path / "latest")
    resume = _checkpoint(tmp_path / "MF-x.resume.safetensors", sampler="DNS", init_from=source)
    config = _init_config(str(tmp_path / "latest" / "rns.safetensors"), resume_from=resume)
    check_init_from(config)
    assert config["init_from"] is None
    other = _checkpoint(tmp_path / "runs" / "other.safetensors")
    with pytest.raises(ConfigError, match="Drop --init_from"):
        check_init_from(_init_config(other, resume_from=resume))


def test_init_from_names_compare_in_any_case_and_an_old_checkpoint_has_no_split_seed(tmp_path):
    """RecBole finds models and samplers by any case (mutant: compared as spelt); a checkpoint without split_seed (older
    than it) is not compared (mutant: int(None))."""
    path = _checkpoint(tmp_path / "ck.safetensors")
    check_init_from(_init_config(path, model="mf", dataset="ML-Slice"))
    with pytest.raises(ConfigError, match="Add --split_seed=2020"):
        check_init_from(_init_config(_checkpoint(tmp_path / "s.safetensors", split_seed=2020), seed=7))
    with pytest.raises(ConfigError, match="holds dataset=ml-slice, this run has dataset=other"):
        check_init_from(_init_config(path, dataset="other"))


def test_ranking_option_changes_take_the_stored_value_over_the_defaults_of_older_checkpoints(fast_config):
    """Mutants: the defaults of options added later overrode a stored value (NGCF trained with self_loop False was not
    reported against True); a ranking option missing from an old checkpoint was a KeyError; a checkpoint without stored
    options was a TypeError."""
    from recbole_hnlm.config import Config

    ngcf = Config(model="NGCF", config_dict={**fast_config, "sampler": "RNS"})
    assert backbone_option_changes(ngcf, {"options": {"self_loop": False}}) == ["self_loop: False -> True"]
    lightgcn = Config(model="LightGCN", config_dict={**fast_config, "sampler": "RNS"})
    assert backbone_option_changes(lightgcn, {"options": {"embedding_size": 64}}) == []
    assert backbone_option_changes(lightgcn, {}) == []


@pytest.mark.parametrize("state, warned", [
    ({"resume_state": True, "best_epoch": 1, "epoch": 3}, True),
    ({"resume_state": False, "best_epoch": 1, "epoch": 3}, False),  # a best checkpoint: tested as it is
    ({"resume_state": True, "best_epoch": 3, "epoch": 3}, False),
    ({"resume_state": True, "epoch": 3}, False),
])
def test_only_a_resume_state_past_its_best_epoch_is_warned_about(state, warned, caplog):
    caplog.set_level(logging.WARNING)
    _warn_if_not_the_best_epoch("MF-x.resume.safetensors", state)
    said = "holds the weights of epoch 3, the last one trained, not those of the best epoch 1" in caplog.text
    assert said == warned


def test_a_warm_start_of_a_sampler_without_parameters_says_nothing_about_them(fast_config, tmp_path, caplog):
    """The summary line of DNS started from an RNS run names the source and epoch 0, and no sampler parameters (mutant:
    'DNS parameters freshly initialised', for a sampler that has none); the source recorded its evaluation pairs;
    eval_only names the shapes the right way round."""
    from recbole_hnlm.quick_start import run_recbole_hnlm

    settings = {**fast_config, "epochs": 1, "state": "INFO"}
    source = run_recbole_hnlm(model="MF", config_dict={**settings, "sampler": "RNS",
                                                       "checkpoint_dir": str(tmp_path / "a")})["checkpoint"]
    caplog.set_level(logging.INFO)
    run_recbole_hnlm(model="MF", config_dict={**settings, "sampler": "DNS", "init_from": source,
                                              "checkpoint_dir": str(tmp_path / "b")})
    assert f"init_from: backbone weights of {source} (MF+RNS, epoch 0); training starts at epoch 0." in caplog.text
    # the run recorded its validation and test pairs (mutant: a plugin backbone's were never recorded, so eval_only
    # could not say when they changed)
    assert re.fullmatch("[0-9a-f]{64}:[0-9a-f]{64}", read_trainer_state(source)["eval_split"])
    # eval_only compares the shapes as it loads: the checkpoint's first (mutant: the two maps swapped, so the message
    # gave this run's shape as the checkpoint's)
    with pytest.raises(ConfigError, match=r"item_embedding.weight is \(\d+, 64\) there and \(\d+, 32\) here"):
        run_recbole_hnlm(model="MF", config_dict={**settings, "sampler": "RNS", "init_from": source,
                                                  "eval_only": True, "embedding_size": 32})


# ----------------------------------------------------------------------------------------------------- teacher file

def test_pooled_embeddings_of_another_dataset_are_refused(mini_recbole, tmp_path):
    dataset, train = mini_recbole
    with pytest.raises(ValueError, match=r"pooled_embeddings\(\) shapes .* do not match the dataset"):
        export_teacher(HalfOfThePositive(dataset.user_num - 1, dataset.item_num), dataset, train,
                       str(tmp_path / "t.safetensors"))
    with pytest.raises(ValueError, match="do not match the dataset"):
        export_teacher(HalfOfThePositive(dataset.user_num, dataset.item_num + 1), dataset, train,
                       str(tmp_path / "t.safetensors"))
    assert not os.path.exists(tmp_path / "t.safetensors")


def test_a_teacher_of_no_pairs_round_trips_and_records_its_seed(mini_recbole, tmp_path):
    """Mutants: the empty negatives were 1-D (the loaded file failed its own check), validate read min() of an empty
    tensor; the file's ``seed`` metadata was not the seed given."""
    dataset, _ = mini_recbole
    path = export_teacher(HalfOfThePositive(dataset.user_num, dataset.item_num), dataset,
                          (torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)),
                          str(tmp_path / "t.safetensors"), seed=7)
    teacher = Teacher.load(path)
    assert teacher.neg_emb.shape == (0, 8) and teacher.token_pairs() == [] and teacher.dim == 8
    with safe_open(path, framework="pt") as handle:
        meta = handle.metadata()
    assert meta["seed"] == "7" and meta["source"] == "HalfOfThePositive" and meta["format"] == TEACHER_FORMAT


def test_the_training_pairs_may_come_from_an_object_with_a_dataset(mini_recbole, tmp_path):
    """A torch-style loader has ``.dataset``, not RecBole's ``._dataset`` (mutant: only ``._dataset`` was looked at)."""
    dataset, train = mini_recbole
    model = HalfOfThePositive(dataset.user_num, dataset.item_num)
    a = Teacher.load(export_teacher(model, dataset, train, str(tmp_path / "a.safetensors")))
    b = Teacher.load(export_teacher(model, dataset, types.SimpleNamespace(dataset=train._dataset), str(
        tmp_path / "b.safetensors")))
    assert a.token_pairs() == b.token_pairs() and len(a.token_pairs()) == len(train._dataset.inter_feat)


@pytest.mark.parametrize("change, message", [
    (dict(user_emb=torch.zeros(3, 4)), "user_emb rows != len"),
    (dict(item_emb=torch.zeros(2, 4)), "item_emb rows != len"),
    (dict(pair_user=torch.tensor([-1, 0])), "pair_user out of range"),
])
def test_more_inconsistent_teachers_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        _small_teacher(**change).validate()


def _teacher_file(path, **tensors):
    """A teacher file of two users, three items and two pairs, ``tensors`` replaced (None: left out)."""
    base = dict(user_emb=torch.zeros(2, 4), item_emb=torch.zeros(3, 4), pair_user=torch.tensor([0, 1]),
                pair_item=torch.tensor([2, 0]), neg_emb=torch.zeros(2, 4))
    base.update(tensors)
    save_file({k: v for k, v in base.items() if v is not None}, str(path), metadata={
        "format": TEACHER_FORMAT, "user_tokens": json.dumps(["u1", "u2"]), "item_tokens": json.dumps(["a", "b", "c"])})
    return str(path)


def test_a_teacher_file_is_checked_as_it_loads(tmp_path):
    """Mutants: a file without neg_emb gave the raw safetensors error instead of naming the tensor; a file whose pairs
    point past its users loaded without its consistency check."""
    assert Teacher.load(_teacher_file(tmp_path / "ok.safetensors")).token_pairs() == [("u1", "c"), ("u2", "a")]
    with pytest.raises(DataError, match=r"not a readable teacher file \(tensors \['neg_emb'\] missing\)"):
        Teacher.load(_teacher_file(tmp_path / "no-neg.safetensors", neg_emb=None))
    with pytest.raises(ValueError, match="pair_user out of range"):
        Teacher.load(_teacher_file(tmp_path / "range.safetensors", pair_user=torch.tensor([0, 2])))


def test_a_damaged_teacher_may_be_replaced_and_a_store_is_named_once(tmp_path):
    """check_replaceable_teacher lets --overwrite replace a truncated teacher (mutant: refused); training_settings of
    a file of another format says "not a readable teacher file" once (mutant: its DataError wrapped in another)."""
    whole = open(_teacher_file(tmp_path / "t.safetensors"), "rb").read()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(whole[: len(whole) // 2])
    check_replaceable_teacher(str(truncated))
    other = str(tmp_path / "other.safetensors")
    save_file({"x": torch.zeros(1)}, other, metadata={"format": "recbole_hnlm/store/v1"})
    with pytest.raises(DataError) as error:
        training_settings(other)
    assert str(error.value).count("not a readable teacher file") == 1
    assert "format 'recbole_hnlm/store/v1', expected" in str(error.value)


# -------------------------------------------------------------------------------------------------- teacher training

def test_the_runs_negative_warm_up_does_not_reach_the_teacher(fast_config):
    """MixGCF from the first epoch (mutant: the run's negative_warmup_epochs trained the teacher with RNS first)."""
    from recbole_hnlm.config import Config

    run = Config(model="MF", dataset=fast_config["dataset"], command_line=False,
                 config_dict=dict(fast_config, sampler="HNLMRec", negative_warmup_epochs=3))
    assert run["negative_warmup_epochs"] == 3
    assert teacher_config(run, "LightGCN", epochs=2)["negative_warmup_epochs"] == 0


def test_unset_teacher_epochs_are_the_documented_30(fast_config):
    """``hnlm_teacher_epochs: ~`` in a yaml file (mutant: another fallback; the existing test reads the yaml's 30)."""
    from recbole_hnlm.config import Config
    from recbole_hnlm.llm.teacher_training import _teacher_choice

    run = Config(model="MF", dataset=fast_config["dataset"], command_line=False,
                 config_dict=dict(fast_config, sampler="HNLMRec", hnlm_teacher_epochs=None))
    assert _teacher_choice(run) == ("LightGCN", 30) and _teacher_choice(run, "mf", 2) == ("MF", 2)


def test_a_folder_as_the_teacher_is_refused_as_not_replaced(hnlm_finetuned_config, tmp_path):
    """Mutant: without --overwrite a folder was read as a teacher (a DataError after looking for its work folder)."""
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(ConfigError, match="is a folder: hnlm_teacher_path names .*; it is not replaced"):
        ensure_teacher(hnlm_finetuned_config, None, str(folder))


def test_a_teacher_exported_without_its_training_record_is_reused(hnlm_finetuned_config, mini_recbole, tmp_path,
                                                                  caplog):
    """export_teacher after the user's own MixGCF run records no training settings: reused without a comparison
    (mutant: None.get, an AttributeError)."""
    dataset, train = mini_recbole
    path = export_teacher(HalfOfThePositive(dataset.user_num, dataset.item_num), dataset, train,
                          str(tmp_path / "own.safetensors"))
    caplog.set_level(logging.WARNING)
    assert ensure_teacher(hnlm_finetuned_config, None, path) == path
    assert "trained with other settings" not in caplog.text


def test_the_teacher_is_its_seeds_and_the_callers_python_and_numpy_streams_go_on(hnlm_finetuned_config, tmp_path):
    """Mutants: Python's and NumPy's streams were left where the teacher's training took them (only torch's and the
    loader's were checked); the teacher's weights followed the caller's torch stream, not the run's seed; the file's
    seed was export_teacher's default instead of the seed it was drawn with."""
    from recbole.data import create_dataset, data_preparation

    from recbole_hnlm.config import Config

    config = Config(model="MF", dataset=hnlm_finetuned_config["dataset"], command_line=False,
                    config_dict=dict(hnlm_finetuned_config.external_config_dict, seed=11, hnlm_teacher_model="MF"))
    train_data, _, _ = data_preparation(config, create_dataset(config))
    files = []
    for caller_seed in (1, 2):
        random.seed(caller_seed), np.random.seed(caller_seed), torch.manual_seed(caller_seed)
        expected = (random.random(), np.random.rand())
        random.seed(caller_seed), np.random.seed(caller_seed), torch.manual_seed(caller_seed)
        files.append(train_teacher(config, train_data, str(tmp_path / f"t{caller_seed}.safetensors"), epochs=1))
        assert (random.random(), np.random.rand()) == expected
    a, b = Teacher.load(files[0]), Teacher.load(files[1])
    for name in ("user_emb", "item_emb", "neg_emb"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    with safe_open(files[0], framework="pt") as handle:
        assert handle.metadata()["seed"] == "11"


def _interrupted_state(config, train_data, path, monkeypatch, **changes):
    """Interrupt the teacher's training at ``path`` in epoch 1 (epoch 0's resume state written), then edit that state's
    trainer metadata with ``changes``; returns the epochs trained record."""
    trained, _ = _interrupt_in_epoch_1(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train_teacher(config, train_data, path, epochs=2)
    (state,) = glob.glob(path + ".work/*.resume.safetensors")
    written = os.path.getmtime(state)
    _with_trainer_state(state, state, **changes)
    os.utime(state, (written, written))
    trained.clear()
    return trained


@pytest.mark.parametrize("changes, epochs, expected", [
    ({"train_split": "0" * 64}, 2, "train_split (the data)"),  # another training split: never resumed
    ({"epoch": 1}, 1, "epochs: 2 done, 1 asked for"),  # trained past the epochs asked for now
])
def test_an_interrupted_teacher_of_other_data_or_more_epochs_trains_afresh(hnlm_finetuned_config, monkeypatch, caplog,
                                                                          changes, epochs, expected):
    """Mutants: the resume state's data digests were not compared (a teacher resumed on another split's weights); a
    state past the epochs asked for was taken as finished (a 2-epoch teacher recorded as a 1-epoch one)."""
    from recbole.data import create_dataset, data_preparation

    config = hnlm_finetuned_config
    train_data, _, _ = data_preparation(config, create_dataset(config))
    path = config["hnlm_teacher_path"]
    trained = _interrupted_state(config, train_data, path, monkeypatch, **changes)
    caplog.set_level(logging.WARNING, logger=teacher_training.__name__)
    train_teacher(config, train_data, path, epochs=epochs)
    assert trained == list(range(epochs))
    assert "had other settings" in caplog.text and expected in caplog.text
    assert Teacher.load(path).training["hnlm_teacher_epochs"] == epochs


def test_a_damaged_resume_state_of_the_teacher_is_trained_over(hnlm_finetuned_config, tmp_path, caplog):
    """Mutant: an unreadable resume state in the work folder (a killed copy) stopped the teacher with its error."""
    from recbole.data import create_dataset, data_preparation

    config = hnlm_finetuned_config
    train_data, _, _ = data_preparation(config, create_dataset(config))
    path = config["hnlm_teacher_path"]
    os.makedirs(path + ".work")
    (tmp_path / "teacher.safetensors.work" / "LightGCN-x.resume.safetensors").write_bytes(b"\x08\x00")
    caplog.set_level(logging.WARNING, logger=teacher_training.__name__)
    train_teacher(config, train_data, path, epochs=1)
    assert "unreadable" in caplog.text and Teacher.load(path).training["hnlm_teacher_epochs"] == 1
    assert not os.path.exists(path + ".work")
