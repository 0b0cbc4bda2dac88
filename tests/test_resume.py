"""Resuming an interrupted run (``--resume_from``): the continuation reaches the uninterrupted run's weights bit for
bit, and unusable resume files stop the run with one line naming the option."""
import contextlib
import json
import os
import random
import re

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from recbole_hnlm.checkpoint import read_trainer_state
from recbole_hnlm.errors import ConcurrentWriterError, ConfigError, TrainingInterrupted
from recbole_hnlm.model.abstract import SampledRecommender
from recbole_hnlm.quick_start import main, run_recbole_hnlm
from recbole_hnlm.rng_state import capture_rng_state, restore_rng_state


def _model_tensors(path):
    return {k: v for k, v in load_file(path).items() if k.startswith("model.")}


def _assert_same_weights(path_a, path_b):
    a, b = _model_tensors(path_a), _model_tensors(path_b)
    assert a.keys() == b.keys() and a
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture
def ctrl_c_in_epoch(monkeypatch):
    """``ctrl_c_in_epoch(e)``: the next run gets a KeyboardInterrupt at its second batch of epoch ``e`` (as from
    Ctrl-C: the first batch of that epoch has already updated the weights)."""
    def arm(epoch):
        seen = {"epoch": -1, "batches": 0}
        hook, loss = SampledRecommender.on_epoch_start, SampledRecommender.calculate_loss

        def on_epoch_start(self, epoch_idx):
            seen.update(epoch=epoch_idx, batches=0)
            return hook(self, epoch_idx)

        def calculate_loss(self, interaction):
            seen["batches"] += 1
            if seen["epoch"] == epoch and seen["batches"] == 2:
                monkeypatch.undo()  # disarmed once fired
                raise KeyboardInterrupt
            return loss(self, interaction)

        monkeypatch.setattr(SampledRecommender, "on_epoch_start", on_epoch_start)
        monkeypatch.setattr(SampledRecommender, "calculate_loss", calculate_loss)
    return arm


def test_rng_state_round_trip():
    generator = torch.Generator().manual_seed(5)
    random.gauss(0, 1), np.random.normal()  # each keeps the second normal of its pair for the next draw: state too
    tensors, meta = capture_rng_state({"loader": generator})

    def draw():
        return (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), np.random.normal(),
                torch.rand(3).tolist(), torch.rand(3, generator=generator).tolist())

    first = draw()
    draw()
    restore_rng_state(tensors, meta, {"loader": generator})
    assert draw() == first
    with pytest.raises(ValueError, match="no generator 'other'"):
        restore_rng_state(tensors, meta, {"other": torch.Generator()})


# MF+RNS draws its negatives from NumPy (RecBole's loader), LightGCN+MixGCF from torch, SGL+DNS also redraws its
# graph views every epoch; all of them shuffle with the loader's own generator. Leaving out any one stream breaks one.
# With eval_step=2, the LightGCN+DNS run is interrupted before its first validation (no best checkpoint yet).
# With a negative warm-up of 2 epochs, the resumed run must go on warming up in epoch 1 and switch at epoch 2.
@pytest.mark.parametrize("model,sampler,eval_step,interrupt_epoch,warmup", [
    ("MF", "RNS", 1, 2, 0), ("LightGCN", "MixGCF", 1, 2, 0), ("SGL", "DNS", 1, 2, 0), ("LightGCN", "DNS", 2, 1, 0),
    ("LightGCN", "MixGCF", 1, 1, 2), ("LightGCN", "DNS", 1, 2, 1)])
def test_interrupted_run_resumes_bit_for_bit(fast_config, tmp_path, ctrl_c_in_epoch, model, sampler, eval_step,
                                             interrupt_epoch, warmup):
    settings = {**fast_config, "epochs": 3, "sampler": sampler, "eval_step": eval_step,
                "negative_warmup_epochs": warmup}
    straight = run_recbole_hnlm(model=model, config_dict={**settings, "checkpoint_dir": str(tmp_path / "straight")})

    ctrl_c_in_epoch(interrupt_epoch)
    with pytest.raises(TrainingInterrupted) as interrupted:
        run_recbole_hnlm(model=model, config_dict={**settings, "checkpoint_dir": str(tmp_path / "interrupted")})
    resume_file = interrupted.value.resume_file
    assert resume_file.endswith(".resume.safetensors")
    assert read_trainer_state(resume_file)["epoch"] == interrupt_epoch - 1
    restarted_at_interruption = read_trainer_state(resume_file)["selection_restarted"]

    resumed = run_recbole_hnlm(model=model, config_dict={**settings, "checkpoint_dir": str(tmp_path / "resumed"),
                                                          "resume_from": resume_file})
    assert resumed["resume_state"] == resume_file  # the run goes on writing to its own two files
    assert resumed["checkpoint"] == resume_file.replace(".resume.safetensors", ".safetensors")
    _assert_same_weights(straight["resume_state"], resumed["resume_state"])
    if warmup:  # model selection restarted after the warm-up, in the run and (once, before or after) its continuation
        assert read_trainer_state(straight["resume_state"])["selection_restarted"]
        assert restarted_at_interruption == (interrupt_epoch > warmup)
        assert read_trainer_state(resumed["resume_state"])["selection_restarted"]
    _assert_same_weights(straight["checkpoint"], resumed["checkpoint"])
    assert resumed["best_valid_result"] == straight["best_valid_result"]
    assert resumed["test_result"] == straight["test_result"]


def test_a_resume_from_a_relative_path_names_both_files_relative(fast_config, tmp_path, ctrl_c_in_epoch):
    """The result of a run resumed from a relative path gives its best checkpoint relative too, beside the resume
    state (it was absolute, the resume state relative)."""
    settings = {**fast_config, "epochs": 3, "sampler": "RNS", "checkpoint_dir": "run"}
    with contextlib.chdir(tmp_path):
        ctrl_c_in_epoch(2)
        with pytest.raises(TrainingInterrupted) as interrupted:
            run_recbole_hnlm(model="MF", config_dict=settings)
        resume_file = interrupted.value.resume_file
        assert not os.path.isabs(resume_file)
        resumed = run_recbole_hnlm(model="MF", config_dict={**settings, "resume_from": resume_file})
        assert resumed["resume_state"] == resume_file
        assert resumed["checkpoint"] == resume_file.replace(".resume.safetensors", ".safetensors")
        assert os.path.isfile(resumed["checkpoint"])


def test_another_seed_on_the_same_split_resumes_bit_for_bit_without_a_warning(fast_config, tmp_path,
                                                                              ctrl_c_in_epoch, caplog):
    """A resume state carries every random stream, so a continuation given another ``seed`` (the split's seed
    unchanged) repeats the uninterrupted run and is not warned about; from a best-epoch checkpoint (fresh streams,
    drawn from the seed) the seed is listed. Without ``split_seed`` another seed is another split: refused."""
    import logging

    settings = {**fast_config, "epochs": 3, "sampler": "DNS", "seed": 2020, "split_seed": 2020}
    straight = run_recbole_hnlm(model="MF", config_dict={**settings, "checkpoint_dir": str(tmp_path / "straight")})
    ctrl_c_in_epoch(1)
    with pytest.raises(TrainingInterrupted) as interrupted:
        run_recbole_hnlm(model="MF", config_dict={**settings, "checkpoint_dir": str(tmp_path / "interrupted")})
    resume_file = interrupted.value.resume_file
    with caplog.at_level(logging.WARNING):
        resumed = run_recbole_hnlm(model="MF", config_dict={**settings, "seed": 7, "split_seed": 2020,
                                                            "resume_from": resume_file})
    assert "options changed" not in caplog.text
    _assert_same_weights(straight["resume_state"], resumed["resume_state"])
    assert resumed["test_result"] == straight["test_result"]

    caplog.clear()  # a changed option is still listed beside the seed's change, which is not
    with caplog.at_level(logging.WARNING):
        run_recbole_hnlm(model="MF", config_dict={**settings, "seed": 7, "learning_rate": 0.002,
                                                  "checkpoint_dir": str(tmp_path / "lr"),
                                                  "resume_from": resumed["resume_state"]})
    assert "learning_rate: 0.001 -> 0.002" in caplog.text and "seed:" not in caplog.text

    caplog.clear()  # a best-epoch checkpoint's continuation draws from the seed
    with caplog.at_level(logging.WARNING):
        run_recbole_hnlm(model="MF", config_dict={**settings, "epochs": 4, "seed": 7,
                                                  "checkpoint_dir": str(tmp_path / "best"),
                                                  "resume_from": straight["checkpoint"]})
    assert "options changed" in caplog.text and "seed: 2020 -> 7" in caplog.text

    unsplit = {**settings, "split_seed": None, "checkpoint_dir": str(tmp_path / "unsplit")}
    first = run_recbole_hnlm(model="MF", config_dict={**unsplit, "epochs": 1})
    with pytest.raises(ConfigError, match=r"resume_from: .* another training split .*split_seed \(the seed when "
                                          r"split_seed is unset\)"):
        run_recbole_hnlm(model="MF", config_dict={**unsplit, "seed": 7, "resume_from": first["resume_state"]})


def test_finished_run_trains_on_with_more_epochs(fast_config, tmp_path, caplog):
    settings = {**fast_config, "sampler": "RNS"}
    straight = run_recbole_hnlm(model="MF", config_dict={**settings, "epochs": 4,
                                                         "checkpoint_dir": str(tmp_path / "straight")})
    first = run_recbole_hnlm(model="MF", config_dict={**settings, "epochs": 2, "checkpoint_dir": str(tmp_path / "a")})
    with open(first["checkpoint"], "rb") as f:
        best_bytes = f.read()

    again = run_recbole_hnlm(model="MF", config_dict={**settings, "epochs": 2, "checkpoint_dir": str(tmp_path / "b"),
                                                      "resume_from": first["resume_state"]})
    assert "Nothing to train: all 2 epochs are done" in caplog.text
    with open(first["checkpoint"], "rb") as f:
        assert f.read() == best_bytes  # RecBole's fit would have saved the last weights over the best epoch's
    assert again["test_result"] == first["test_result"]
    assert "options changed" not in caplog.text  # epochs and checkpoint_dir do not count

    more = run_recbole_hnlm(model="MF", config_dict={**settings, "epochs": 4, "checkpoint_dir": str(tmp_path / "c"),
                                                     "resume_from": first["resume_state"]})
    _assert_same_weights(straight["resume_state"], more["resume_state"])
    assert more["test_result"] == straight["test_result"]


def test_early_stopped_run_is_not_trained_further(fast_config, tmp_path, caplog):
    # stopping_step=0: the first validation without a new best ends the run
    settings = {**fast_config, "sampler": "RNS", "stopping_step": 0}
    long = run_recbole_hnlm(model="MF", config_dict={**settings, "epochs": 12, "checkpoint_dir": str(tmp_path / "a")})
    stop_epoch = read_trainer_state(long["resume_state"])["epoch"]
    assert read_trainer_state(long["resume_state"])["stopped_early"] and stop_epoch < 11

    # the same stop on the run's very last epoch must be recorded as a stop too
    short = run_recbole_hnlm(model="MF", config_dict={**settings, "epochs": stop_epoch + 1,
                                                      "checkpoint_dir": str(tmp_path / "b")})
    assert read_trainer_state(short["resume_state"])["stopped_early"]
    resumed = run_recbole_hnlm(model="MF", config_dict={**settings, "epochs": 12, "checkpoint_dir": str(tmp_path / "c"),
                                                        "resume_from": short["resume_state"]})
    assert "Nothing to train: early stopping ended it" in caplog.text
    assert resumed["test_result"] == long["test_result"]


def test_no_resume_state_when_switched_off_or_for_recbole_models(fast_config, tmp_path):
    result = run_recbole_hnlm(model="MF", config_dict={**fast_config, "sampler": "RNS", "save_resume_state": False})
    assert result["resume_state"] is None and result["checkpoint"]
    bpr = run_recbole_hnlm(model="BPR", config_dict={**fast_config, "sampler": "RNS", "epochs": 1})
    assert bpr["resume_state"] is None and not [n for n in os.listdir(fast_config["checkpoint_dir"]) if ".resume." in n]
    with pytest.raises(ConfigError, match="resume_from: BPR cannot be resumed; only the plugin's backbones"):
        run_recbole_hnlm(model="BPR", config_dict={**fast_config, "sampler": "RNS", "resume_from": bpr["checkpoint"]})


def test_resuming_from_a_best_checkpoint_leaves_it_unchanged(fast_config, tmp_path, caplog):
    """A best-epoch checkpoint given to resume_from: training goes on from its epoch into the new run's own pair of
    files (the best file starts as the checkpoint's copy), and the checkpoint itself is not written over."""
    import logging

    from recbole_hnlm.files import file_sha256

    settings = {**fast_config, "sampler": "RNS", "checkpoint_dir": str(tmp_path)}
    first = run_recbole_hnlm(model="MF", config_dict={**settings, "epochs": 2})
    before = file_sha256(first["checkpoint"])
    with caplog.at_level(logging.WARNING):
        more = run_recbole_hnlm(model="MF", config_dict={**settings, "epochs": 4, "resume_from": first["checkpoint"]})
    assert "is a best-epoch checkpoint, not a resume state" in caplog.text and "left as it is" in caplog.text
    assert file_sha256(first["checkpoint"]) == before
    assert more["checkpoint"] != first["checkpoint"]
    assert more["resume_state"] == more["checkpoint"].replace(".safetensors", ".resume.safetensors")
    assert read_trainer_state(more["resume_state"])["epoch"] == 3
    assert read_trainer_state(more["checkpoint"])["epoch"] >= read_trainer_state(first["checkpoint"])["epoch"]


def test_a_best_checkpoint_carries_its_validation_result(fast_config, tmp_path, caplog):
    """A run resumed from a best-epoch checkpoint that finds no better epoch reports that checkpoint's validation
    result (it reported ``best valid : None``)."""
    import logging

    settings = {**fast_config, "sampler": "RNS", "checkpoint_dir": str(tmp_path)}
    first = run_recbole_hnlm(model="MF", config_dict={**settings, "epochs": 3})
    stored = read_trainer_state(first["checkpoint"])
    assert stored["best_valid_result"] == pytest.approx(first["best_valid_result"], abs=0)
    with caplog.at_level(logging.INFO):
        again = run_recbole_hnlm(model="MF", config_dict={**settings, "epochs": stored["epoch"] + 1,
                                                          "resume_from": first["checkpoint"]})
    assert "Nothing to train" in caplog.text
    assert again["best_valid_result"] == first["best_valid_result"] and again["best_valid_result"]
    assert type(again["best_valid_result"]) is type(first["best_valid_result"])  # RecBole's OrderedDict, logged alike
    assert again["best_valid_score"] == first["best_valid_score"]
    assert again["test_result"] == first["test_result"]


def _stored_optimizer_groups(path):
    with safe_open(path, framework="pt") as f:
        return json.loads(f.metadata()["recbole_hnlm"])["optimizer"]["param_groups"]


def test_resume_errors_name_the_option(fast_config, tmp_path, caplog):
    settings = {**fast_config, "sampler": "RNS", "epochs": 1}
    missing = str(tmp_path / "nosuch.resume.safetensors")
    with pytest.raises(ConfigError, match="resume_from: .*nosuch.resume.safetensors does not exist"):
        run_recbole_hnlm(model="MF", config_dict={**settings, "resume_from": missing})
    with pytest.raises(ConfigError, match="is a folder, not a file"):
        run_recbole_hnlm(model="MF", config_dict={**settings, "resume_from": str(tmp_path)})
    not_ours = tmp_path / "notes.txt"
    not_ours.write_text("hello")
    with pytest.raises(ConfigError, match="is not a recbole_hnlm checkpoint"):
        run_recbole_hnlm(model="MF", config_dict={**settings, "resume_from": str(not_ours)})
    foreign = str(tmp_path / "foreign.safetensors")
    save_file({"w": torch.zeros(2)}, foreign)
    with pytest.raises(ConfigError) as error:
        run_recbole_hnlm(model="MF", config_dict={**settings, "resume_from": foreign})
    assert str(error.value).count("is not a recbole_hnlm checkpoint") == 1, str(error.value)

    first = run_recbole_hnlm(model="MF", config_dict=settings)
    with pytest.raises(ConfigError, match="trained with model=MF, this run has model=LightGCN"):
        run_recbole_hnlm(model="LightGCN", config_dict={**settings, "resume_from": first["resume_state"]})
    with pytest.raises(ConfigError, match="trained with learner=adam, this run has learner=sgd"):
        run_recbole_hnlm(model="MF", config_dict={**settings, "learner": "sgd", "resume_from": first["resume_state"]})
    with pytest.raises(ConfigError, match=r"the weights in .* do not fit this MF \(\w+_embedding.weight is "
                                          r"\(\d+, 64\) there and \(\d+, 32\) here\); resume with the options of the "
                                          r"interrupted run \(changed since: .*embedding_size: 64 -> 32"):
        run_recbole_hnlm(model="MF", config_dict={**settings, "embedding_size": 32, "epochs": 2,
                                                  "resume_from": first["resume_state"]})
    # the refused resume gave up the file names its trainer had reserved (a hidden marker stayed behind)
    assert not [n for n in os.listdir(settings["checkpoint_dir"]) if n.endswith(".reserved")]

    caplog.clear()  # a changed learning rate is listed, and applied
    assert [g["lr"] for g in _stored_optimizer_groups(first["resume_state"])] == [0.001]
    run_recbole_hnlm(model="MF", config_dict={**settings, "epochs": 2, "learning_rate": 0.01,
                                              "resume_from": first["resume_state"]})
    assert "options changed" in caplog.text and "learning_rate: 0.001 -> 0.01" in caplog.text
    assert [g["lr"] for g in _stored_optimizer_groups(first["resume_state"])] == [0.01]

    os.remove(first["checkpoint"])
    # a state whose best epoch is an earlier one (or of a version that did not record it) cannot give it back
    state = read_trainer_state(first["resume_state"])
    for best_epoch in (state["epoch"] - 1, None):
        _set_trainer_state(first["resume_state"], best_epoch=best_epoch)
        with pytest.raises(ConfigError, match="best checkpoint .* is missing"):
            run_recbole_hnlm(model="MF", config_dict={**settings, "resume_from": first["resume_state"]})
    # when the best epoch is the state's own, the state holds its weights: the best file is written from them
    _set_trainer_state(first["resume_state"], best_epoch=state["epoch"])
    again = run_recbole_hnlm(model="MF", config_dict={**settings, "epochs": 2, "resume_from": first["resume_state"]})
    assert read_trainer_state(again["checkpoint"])["epoch"] == state["epoch"]
    assert _model_tensors(again["checkpoint"]).keys() == _model_tensors(first["resume_state"]).keys()
    for key, value in _model_tensors(again["checkpoint"]).items():
        assert torch.equal(value, _model_tensors(first["resume_state"])[key]), key


def _set_trainer_state(path, **changes):
    """Edit the trainer state stored in a checkpoint's metadata (as another version, or a run stopped elsewhere,
    would have left it)."""
    with safe_open(path, framework="pt") as handle:
        tensors, meta = {k: handle.get_tensor(k) for k in handle.keys()}, json.loads(handle.metadata()["recbole_hnlm"])
    meta["trainer"].update(changes)
    save_file(tensors, path, metadata={"recbole_hnlm": json.dumps(meta)})


def test_command_line_names_the_resume_file_on_ctrl_c(fast_config, tmp_path, ctrl_c_in_epoch, capsys):
    argv = ["--model=MF", "--sampler=RNS", f"--dataset={fast_config['dataset']}",
            f"--data_path={fast_config['data_path']}", "--epochs=3", "--state=WARNING", "--show_progress=False",
            "--load_col={'inter': ['user_id', 'item_id']}"]
    assert main(argv + [f"--checkpoint_dir={tmp_path / 'straight'}"]) == 0
    ctrl_c_in_epoch(1)
    assert main(argv + [f"--checkpoint_dir={tmp_path / 'cut'}"]) == 130
    err = capsys.readouterr().err
    assert "the run's state after epoch 0 is saved" in err and "--resume_from=" in err
    resume_file = err.split("--resume_from=")[1].split()[0]
    assert main(argv + [f"--checkpoint_dir={tmp_path / 'cut'}", f"--resume_from={resume_file}"]) == 0
    straight = [n for n in os.listdir(tmp_path / "straight") if n.endswith(".resume.safetensors")]
    _assert_same_weights(str(tmp_path / "straight" / straight[0]), resume_file)
    assert main(argv + ["--resume_from=/nonexistent.resume.safetensors"]) == 2
    assert "resume_from: /nonexistent.resume.safetensors does not exist" in capsys.readouterr().err
    # without a resume state the message named the LLM stages; it now points to the best checkpoint so far
    ctrl_c_in_epoch(2)
    assert main(argv + [f"--checkpoint_dir={tmp_path / 'nostate'}", "--save_resume_state=False"]) == 130
    err = capsys.readouterr().err
    assert "no resume state (this run writes none (save_resume_state=False))" in err and "after epoch 1" in err
    assert "LLM" not in err
    best = err.split("--resume_from=")[1].split()[0]
    assert os.path.dirname(best) == str(tmp_path / "nostate") and not best.endswith(".resume.safetensors")


def test_ctrl_c_during_the_final_test_points_to_the_resume_state(fast_config, monkeypatch):
    from recbole_hnlm.trainer import SafeCheckpointMixin

    evaluate = SafeCheckpointMixin.evaluate

    def interrupted_test(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model:  # the final test (validation passes False)
            raise KeyboardInterrupt
        return evaluate(self, eval_data, load_best_model=False, show_progress=show_progress)

    settings = {**fast_config, "sampler": "RNS"}
    monkeypatch.setattr(SafeCheckpointMixin, "evaluate", interrupted_test)
    with pytest.raises(TrainingInterrupted) as interrupted:
        run_recbole_hnlm(model="MF", config_dict=settings)
    monkeypatch.undo()
    done = run_recbole_hnlm(model="MF", config_dict={**settings, "resume_from": interrupted.value.resume_file})
    assert done["test_result"]["ndcg@20"] > 0  # nothing left to train: straight to the test


@pytest.mark.parametrize("option, value, expected", [
    ("save_resume_state", "yes", "Option 'save_resume_state' must be True or False, got 'yes'"),
    ("resume_from", 3, "Option 'resume_from' must be the path of a .resume.safetensors file, got 3"),
])
def test_resume_option_types(fast_config, option, value, expected):
    with pytest.raises(ConfigError, match=re.escape(expected)):
        run_recbole_hnlm(model="MF", config_dict={**fast_config, "sampler": "RNS", option: value})


def test_a_copied_or_moved_run_folder_resumes_into_itself(fast_config, tmp_path, ctrl_c_in_epoch, caplog):
    """The resume state stored its best checkpoint's absolute path: resuming a copy of the folder wrote into the
    original run's best file, and a moved folder was refused as "missing" with the file beside it."""
    import shutil

    settings = {**fast_config, "epochs": 3, "sampler": "DNS", "dns_candidates": 8}
    ctrl_c_in_epoch(2)
    with pytest.raises(TrainingInterrupted) as interrupted:
        run_recbole_hnlm(model="MF", config_dict={**settings, "checkpoint_dir": str(tmp_path / "original")})
    resume_name = os.path.basename(interrupted.value.resume_file)
    best_name = resume_name.replace(".resume.safetensors", ".safetensors")
    shutil.copytree(tmp_path / "original", tmp_path / "copy")
    original_best = (tmp_path / "original" / best_name).read_bytes()
    resumed = run_recbole_hnlm(model="MF", config_dict={
        **settings, "checkpoint_dir": str(tmp_path / "copy"), "resume_from": str(tmp_path / "copy" / resume_name)})
    assert resumed["checkpoint"] == str(tmp_path / "copy" / best_name)
    assert "is not beside the resume state" not in caplog.text  # the copy's own best file, not the original's
    assert read_trainer_state(resumed["resume_state"])["best_checkpoint"] == str(tmp_path / "copy" / best_name)
    assert (tmp_path / "original" / best_name).read_bytes() == original_best  # the original run is untouched
    (tmp_path / "links").mkdir()  # a folder of links to the run's files: the writes replace the links, not the files
    original_resume = (tmp_path / "original" / resume_name).read_bytes()
    for name in (resume_name, best_name):
        (tmp_path / "links" / name).symlink_to(tmp_path / "original" / name)
    run_recbole_hnlm(model="MF", config_dict={
        **settings, "checkpoint_dir": str(tmp_path / "links"), "resume_from": str(tmp_path / "links" / resume_name)})
    assert (tmp_path / "original" / best_name).read_bytes() == original_best
    assert (tmp_path / "original" / resume_name).read_bytes() == original_resume
    (tmp_path / "lonely").mkdir()  # the resume state copied alone: the run goes on with a copy of the best file
    shutil.copyfile(tmp_path / "original" / resume_name, tmp_path / "lonely" / resume_name)
    lonely = run_recbole_hnlm(model="MF", config_dict={
        **settings, "checkpoint_dir": str(tmp_path / "lonely"), "resume_from": str(tmp_path / "lonely" / resume_name)})
    assert lonely["checkpoint"] == str(tmp_path / "lonely" / best_name)
    assert "is not beside the resume state" in caplog.text
    assert (tmp_path / "original" / best_name).read_bytes() == original_best
    _assert_same_weights(resumed["resume_state"], lonely["resume_state"])
    os.rename(tmp_path / "original", tmp_path / "moved")
    moved = run_recbole_hnlm(model="MF", config_dict={
        **settings, "checkpoint_dir": str(tmp_path / "moved"), "resume_from": str(tmp_path / "moved" / resume_name)})
    assert moved["checkpoint"] == str(tmp_path / "moved" / best_name)
    _assert_same_weights(resumed["resume_state"], moved["resume_state"])


def test_resume_refuses_another_validation_metric(fast_config, tmp_path, ctrl_c_in_epoch):
    """The stored best score was selected by NDCG@20; compared with Recall@10 scores, better epochs were never
    saved and the old epoch was reported as best."""
    settings = {**fast_config, "epochs": 3, "sampler": "RNS"}
    ctrl_c_in_epoch(2)
    with pytest.raises(TrainingInterrupted) as interrupted:
        run_recbole_hnlm(model="MF", config_dict=settings)
    resume = {**settings, "resume_from": interrupted.value.resume_file}
    with pytest.raises(ConfigError, match=r"selects its best epoch by valid_metric=NDCG@20, this run has "
                                          r"valid_metric=Recall@10.*--valid_metric=NDCG@20.*--init_from="):
        run_recbole_hnlm(model="MF", config_dict={**resume, "valid_metric": "Recall@10"})
    run_recbole_hnlm(model="MF", config_dict={**resume, "valid_metric": "ndcg@20"})  # the same metric, any case


@pytest.mark.parametrize("edit, message", [
    (lambda meta: meta["trainer"].update(epoch="three"), "damaged checkpoint metadata: 'epoch' is 'three', not an "
                                                          "integer"),
    (lambda meta: meta.update(trainer="x"), "damaged checkpoint metadata: 'trainer' is str, not a mapping"),
    (lambda meta: meta["trainer"].update(best_valid_result=[0.1]), "damaged checkpoint metadata: "
                                                                    "'best_valid_result' is [0.1], not a mapping"),
    (None, "its recbole_hnlm metadata is not valid JSON"),
    (lambda meta: meta["trainer"].pop("model"), "damaged checkpoint metadata: 'model' is missing"),  # "model=None"
    (lambda meta: meta["trainer"].update(sampler=None), "damaged checkpoint metadata: 'sampler' is None, not a name"),
])
def test_hand_edited_checkpoint_metadata_is_named(fast_config, tmp_path, edit, message):
    """A hand-edited trainer state crashed deep inside the resume (TypeError, AttributeError); malformed metadata
    gave json's message without the file."""
    settings = {**fast_config, "sampler": "RNS", "epochs": 1}
    first = run_recbole_hnlm(model="MF", config_dict=settings)
    with safe_open(first["resume_state"], framework="pt") as f:
        meta = json.loads(f.metadata()["recbole_hnlm"])
    text = "{not json" if edit is None else (edit(meta), json.dumps(meta))[1]
    edited = str(tmp_path / "edited.resume.safetensors")
    save_file(load_file(first["resume_state"]), edited, metadata={"recbole_hnlm": text})
    for option in ("resume_from", "init_from"):
        with pytest.raises(ConfigError, match=f"{option}: .*edited.resume.safetensors: {re.escape(message)}"):
            run_recbole_hnlm(model="MF", config_dict={**settings, option: edited})


def test_a_resumed_run_tests_the_model_as_now_configured(fast_config, tmp_path):
    """Checkpoints stored the inference cache (pooled embeddings) and the test reused it: a finished LightGCN run
    resumed with another n_layers reported the old ranking's metrics under the new options."""
    settings = {**fast_config, "sampler": "RNS", "epochs": 1, "checkpoint_dir": str(tmp_path)}
    first = run_recbole_hnlm(model="LightGCN", config_dict=settings)
    with safe_open(first["checkpoint"], framework="pt") as f:
        assert not [name for name in f.keys() if name.startswith("other.")]
    again = run_recbole_hnlm(model="LightGCN", config_dict={**settings, "n_layers": 1,
                                                               "resume_from": first["resume_state"]})
    evaluated = run_recbole_hnlm(model="LightGCN", config_dict={**settings, "n_layers": 1, "eval_only": True,
                                                                   "init_from": first["checkpoint"]})
    assert again["test_result"] == evaluated["test_result"] != first["test_result"]


@pytest.mark.parametrize("stop,epoch", [("after_best_file", 1), ("before_best_file", 1), ("before_best_file", 0)])
def test_a_run_stopped_around_a_best_checkpoint_resumes_to_a_consistent_pair(fast_config, tmp_path, monkeypatch,
                                                                              stop, epoch):
    """Ctrl-C right after epoch 1's best checkpoint was written left a resume state of epoch 0 beside it: resumed
    with epochs=1 ("Nothing to train"), the run reported epoch 0's validation and tested epoch 1's weights. The
    resume state is now written first; stopped between the two writes, the resumed run writes the best file from the
    state's weights (also at the first best epoch, when no best file exists yet), and goes on as the uninterrupted
    run."""
    from recbole_hnlm import trainer as trainer_module

    settings = {**fast_config, "sampler": "RNS", "epochs": 2}
    straight = run_recbole_hnlm(model="MF", config_dict={**settings, "checkpoint_dir": str(tmp_path / "straight")})
    assert read_trainer_state(straight["checkpoint"])["epoch"] == 1  # epoch 1 is a new best in this setting
    real_save = trainer_module.save_checkpoint

    def stopped_at_a_best(path, model, optimizer, state, **kwargs):
        best_file = not path.endswith(".resume.safetensors")
        if best_file and state["epoch"] == epoch and stop == "before_best_file":
            monkeypatch.setattr(trainer_module, "save_checkpoint", real_save)
            raise KeyboardInterrupt
        real_save(path, model, optimizer, state, **kwargs)
        if best_file and state["epoch"] == epoch:
            monkeypatch.setattr(trainer_module, "save_checkpoint", real_save)
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module, "save_checkpoint", stopped_at_a_best)
    with pytest.raises(TrainingInterrupted) as interrupted:
        run_recbole_hnlm(model="MF", config_dict={**settings, "checkpoint_dir": str(tmp_path / "interrupted")})
    resume_file = interrupted.value.resume_file
    assert read_trainer_state(resume_file)["epoch"] == epoch  # the state covers the best epoch
    for epochs in (epoch + 1, 2):  # no epoch left to train, or the uninterrupted run's epochs
        resumed = run_recbole_hnlm(model="MF", config_dict={**settings, "epochs": epochs, "resume_from": resume_file})
        best = read_trainer_state(resumed["checkpoint"])
        assert best["epoch"] == epochs - 1 and best["best_valid_result"] == resumed["best_valid_result"]
        if epochs == 2:
            _assert_same_weights(straight["checkpoint"], resumed["checkpoint"])
            assert resumed["best_valid_result"] == straight["best_valid_result"]
            assert resumed["test_result"] == straight["test_result"]


def test_a_best_file_newer_than_its_resume_state_restarts_model_selection(fast_config, tmp_path, ctrl_c_in_epoch,
                                                                           caplog):
    """What the order before this fix could leave (a best file of epoch 1 beside a resume state of epoch 0): the best
    epoch's weights are gone, so the resumed run selects afresh, and its best file and result agree again."""
    import shutil

    settings = {**fast_config, "sampler": "RNS", "epochs": 2}
    straight = run_recbole_hnlm(model="MF", config_dict={**settings, "checkpoint_dir": str(tmp_path / "straight")})
    ctrl_c_in_epoch(1)
    with pytest.raises(TrainingInterrupted) as interrupted:
        run_recbole_hnlm(model="MF", config_dict={**settings, "checkpoint_dir": str(tmp_path / "interrupted")})
    resume_file = interrupted.value.resume_file
    best_file = resume_file.replace(".resume.safetensors", ".safetensors")
    assert read_trainer_state(resume_file)["epoch"] == 0 and read_trainer_state(best_file)["epoch"] == 0
    shutil.copyfile(straight["checkpoint"], best_file)  # epoch 1's best file
    _set_trainer_state(resume_file, best_epoch=None)  # a state of that version: no best_epoch
    resumed = run_recbole_hnlm(model="MF", config_dict={**settings, "resume_from": resume_file})
    assert "holds epoch 1, after the resume state's epoch 0" in caplog.text
    best = read_trainer_state(resumed["checkpoint"])
    assert best["epoch"] == 1 and best["best_valid_result"] == resumed["best_valid_result"]
    assert resumed["test_result"] == straight["test_result"]


def test_sigterm_stops_a_run_as_ctrl_c_does(fast_config, tmp_path, monkeypatch, capsys):
    """timeout, Slurm and docker stop send SIGTERM: the run ended with status -15, no message, and its name marker
    left behind. It now stops as on Ctrl-C: resume state, hint, and status 143 (128 + SIGTERM, as a shell reports
    it; it was 130, Ctrl-C's); a Ctrl-C after it in the same process is 130 again."""
    import signal

    argv = ["--model=MF", "--sampler=RNS", f"--dataset={fast_config['dataset']}",
            f"--data_path={fast_config['data_path']}", "--epochs=3", "--state=WARNING", "--show_progress=False",
            "--load_col={'inter': ['user_id', 'item_id']}", f"--checkpoint_dir={tmp_path}"]
    seen, hook = {"epoch": -1}, SampledRecommender.on_epoch_start

    def on_epoch_start(self, epoch_idx):
        seen["epoch"] = epoch_idx
        if epoch_idx == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return hook(self, epoch_idx)

    monkeypatch.setattr(SampledRecommender, "on_epoch_start", on_epoch_start)
    before = signal.getsignal(signal.SIGTERM)
    assert main(argv) == 143
    err = capsys.readouterr().err
    assert "the run's state after epoch 0 is saved" in err and "--resume_from=" in err and seen["epoch"] == 1
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is the command's only
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".reserved")]

    def ctrl_c(self, epoch_idx):
        if epoch_idx == 1:
            raise KeyboardInterrupt
        return hook(self, epoch_idx)

    monkeypatch.setattr(SampledRecommender, "on_epoch_start", ctrl_c)
    assert main(argv[:-1] + [f"--checkpoint_dir={tmp_path / 'ctrl-c'}"]) == 130


def test_sigterm_as_interrupt_only_inside_its_block():
    import signal

    from recbole_hnlm.signals import sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        with sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next statement
    assert signal.getsignal(signal.SIGTERM) == before


def test_resuming_removes_the_name_marker_a_hard_kill_left(fast_config, tmp_path, ctrl_c_in_epoch):
    """SIGKILL leaves the run's hidden name marker; the run that continues it removed only its own new one."""
    settings = {**fast_config, "sampler": "RNS", "epochs": 2, "checkpoint_dir": str(tmp_path)}
    ctrl_c_in_epoch(1)
    with pytest.raises(TrainingInterrupted) as interrupted:
        run_recbole_hnlm(model="MF", config_dict=settings)
    resume_file = interrupted.value.resume_file
    stem = os.path.basename(resume_file)[:-len(".resume.safetensors")]
    open(os.path.join(tmp_path, f".{stem}.reserved"), "w").close()  # as a killed run (of an earlier version) left it
    run_recbole_hnlm(model="MF", config_dict={**settings, "resume_from": resume_file})
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".reserved")]


def test_a_run_still_writing_its_files_is_not_resumed_beside_it(fast_config, tmp_path, ctrl_c_in_epoch, capsys,
                                                                 monkeypatch):
    """Resuming from the files of a run that still writes them (or that another resume continues) let both write
    the same resume state and best file; the resume is refused naming the live process, and goes ahead once it is
    gone (the resumed run then holds the marker, so a second resume of it is refused in turn)."""
    import subprocess
    import sys

    settings = {**fast_config, "sampler": "RNS", "epochs": 2, "checkpoint_dir": str(tmp_path)}
    ctrl_c_in_epoch(1)
    with pytest.raises(TrainingInterrupted) as interrupted:
        run_recbole_hnlm(model="MF", config_dict=settings)
    resume_file = interrupted.value.resume_file
    marker = os.path.join(tmp_path, "." + os.path.basename(resume_file)[:-len(".resume.safetensors")] + ".reserved")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        with open(marker, "w") as handle:  # the run (or a resume of it) still writing, as its marker says
            handle.write(f"{live.pid}\n")
        before = {name: os.path.getmtime(os.path.join(tmp_path, name)) for name in os.listdir(tmp_path)}
        argv = ["--model=MF", "--sampler=RNS", f"--dataset={fast_config['dataset']}", "--epochs=2",
                f"--data_path={fast_config['data_path']}", "--state=WARNING", "--show_progress=False",
                "--load_col={'inter': ['user_id', 'item_id']}", f"--checkpoint_dir={tmp_path}",
                f"--resume_from={resume_file}"]
        from recbole_hnlm.sampler import RNS

        def prepared(*args, **kwargs):
            raise AssertionError("the sampler's preparation (HNLMRec's LLM stage) ran before the refusal")

        with monkeypatch.context() as patch:
            patch.setattr(RNS, "prepare", classmethod(prepared))
            assert main(argv) == 1
        err = capsys.readouterr().err
        assert f"another process (pid {live.pid}) is still writing this run's files" in err
        assert "If no process of this run is left (a process id reused since), delete that file" in err
        # refused before the sampler's preparation (HNLMRec's LLM stage), not only when the trainer takes over
        from recbole_hnlm.trainer import check_resume_not_in_use

        with pytest.raises(ConcurrentWriterError):
            check_resume_not_in_use(resume_file)
        after = {name: os.path.getmtime(os.path.join(tmp_path, name)) for name in os.listdir(tmp_path)}
        assert after == before  # nothing written, no marker of its own left
    finally:
        live.kill()
        live.wait(timeout=60)
    result = run_recbole_hnlm(model="MF", config_dict={**settings, "resume_from": resume_file})
    assert result["resume_state"] == resume_file and not os.path.exists(marker)


def test_ctrl_c_in_the_llm_stage_names_what_resumes(fast_config, tmp_path, monkeypatch, capsys):
    """Ctrl-C before training (an HNLMRec run's LLM stage) is not a training interruption: the hint says which LLM
    work is kept and how often the fine-tuning saves its state (the constant the fine-tuning reads)."""
    import recbole_hnlm.llm.teacher_training as teacher_training
    from recbole_hnlm.llm.finetune_state import SAVE_EVERY_SECONDS

    def interrupted(*args, **kwargs):  # Ctrl-C while the teacher trains, the LLM stage's first step
        raise KeyboardInterrupt

    monkeypatch.setattr(teacher_training, "ensure_teacher", interrupted)
    argv = ["--model=MF", "--sampler=HNLMRec", f"--dataset={fast_config['dataset']}",
            f"--data_path={fast_config['data_path']}", "--state=WARNING", "--show_progress=False",
            "--load_col={'inter': ['user_id', 'item_id']}", f"--checkpoint_dir={tmp_path}"]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "interrupted: nothing half-written is left" in err and "finished LLM artifacts are reused" in err
    assert f"the fine-tuning from its last state, saved every {SAVE_EVERY_SECONDS / 60:g} minutes)" in err
    monkeypatch.setattr("recbole_hnlm.llm.finetune_state.SAVE_EVERY_SECONDS", 90.0)
    assert main(argv) == 130
    assert "saved every 1.5 minutes)" in capsys.readouterr().err


def test_the_interrupted_line_starts_its_own_line_on_a_terminal(monkeypatch):
    """On a terminal the line was printed after a progress bar the interruption cut short, on the bar's line."""
    import io
    import sys

    from recbole_hnlm.signals import say_interrupted

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream, expected in ((Terminal(), "\ninterrupted: x\n"), (io.StringIO(), "interrupted: x\n")):
        monkeypatch.setattr(sys, "stderr", stream)
        say_interrupted("interrupted: x")
        assert stream.getvalue() == expected


def test_a_resumed_run_keeps_its_early_stopping_counter(fast_config, tmp_path):
    """The early-stopping counter (cur_step) and the best epoch come back with the resume state. A run whose epochs
    end one validation before early stopping would end it (counter at stopping_step, not above) is not recorded as
    stopped; trained further, it stops at the uninterrupted run's epoch with the same best epoch (a counter restored
    as 0 trained on, a best epoch not restored was saved as None)."""
    settings = {**fast_config, "sampler": "RNS", "stopping_step": 1, "learning_rate": 0.05}  # stops at epoch 3
    straight = run_recbole_hnlm(model="MF", config_dict={**settings, "epochs": 10,
                                                         "checkpoint_dir": str(tmp_path / "straight")})
    final = read_trainer_state(straight["resume_state"])
    assert final["stopped_early"] and final["cur_step"] == 2 and 1 <= final["epoch"] < 9
    short = run_recbole_hnlm(model="MF", config_dict={**settings, "epochs": final["epoch"],
                                                      "checkpoint_dir": str(tmp_path / "short")})
    state = read_trainer_state(short["resume_state"])
    assert state["cur_step"] == 1 and not state["stopped_early"]  # stopping_step reached, not passed: not a stop
    resumed = run_recbole_hnlm(model="MF", config_dict={**settings, "epochs": 10, "checkpoint_dir": str(tmp_path / "c"),
                                                        "resume_from": short["resume_state"]})
    again = read_trainer_state(resumed["resume_state"])
    for key in ("epoch", "cur_step", "stopped_early", "best_epoch", "best_valid_score", "best_valid_result"):
        assert again[key] == final[key], key
    _assert_same_weights(straight["resume_state"], resumed["resume_state"])
    assert resumed["test_result"] == straight["test_result"]
    # a best-epoch checkpoint trained on (fresh streams): its resume states name the epoch its best file holds (they
    # said best_epoch None until a better epoch, so evaluating them gave no "not the best epoch" warning)
    from_best = run_recbole_hnlm(model="MF", config_dict={**settings, "epochs": 10, "checkpoint_dir": str(tmp_path),
                                                          "resume_from": straight["checkpoint"]})
    assert read_trainer_state(from_best["resume_state"])["best_epoch"] == \
        read_trainer_state(from_best["checkpoint"])["epoch"]


def test_resume_applies_a_new_weight_decay_and_refuses_another_sampler(fast_config, caplog):
    """docs/usage.md: a new weight_decay is applied like a new learning_rate; another sampler stops the run."""
    settings = {**fast_config, "sampler": "RNS", "epochs": 1}
    first = run_recbole_hnlm(model="MF", config_dict=settings)
    resume = {**settings, "resume_from": first["resume_state"]}
    with pytest.raises(ConfigError, match="trained with sampler=RNS, this run has sampler=DNS. Resume with "
                                          "--sampler=RNS"):
        run_recbole_hnlm(model="MF", config_dict={**resume, "sampler": "DNS"})
    assert [g["weight_decay"] for g in _stored_optimizer_groups(first["resume_state"])] == [0.0]
    run_recbole_hnlm(model="MF", config_dict={**resume, "epochs": 2, "weight_decay": 1e-4})
    assert "weight_decay: 0.0 -> 0.0001" in caplog.text
    assert [g["weight_decay"] for g in _stored_optimizer_groups(first["resume_state"])] == [1e-4]


def test_checkpoints_older_than_an_option_are_compared_with_what_they_did(fast_config, monkeypatch):
    """An option a checkpoint does not store is listed as a change (``None -> value``), except the options added
    after checkpoints were first written (OPTIONS_ADDED: NGCF's self_loop), which compare with what those did."""
    import recbole_hnlm.resume as resume_module
    from recbole_hnlm.config import Config

    config = Config(model="NGCF", config_dict={**fast_config, "sampler": "RNS"})
    stored = {}
    monkeypatch.setattr(resume_module, "read_trainer_state", lambda path: {"options": stored})
    stored.update({k: v for k, v in resume_module.training_options(config).items() if k != "self_loop"})
    assert resume_module.changed_options(config, "older.resume.safetensors") == []
    no_self_loop = Config(model="NGCF", config_dict={**fast_config, "sampler": "RNS", "self_loop": False})
    assert resume_module.changed_options(no_self_loop, "older.resume.safetensors") == ["self_loop: True -> False"]
    del stored["embedding_size"]
    assert resume_module.changed_options(config, "older.resume.safetensors") == ["embedding_size: None -> 64"]
