"""Mutation audit of the run script (recbole_hnlm/quick_start.py, run_recbole_hnlm.py): behaviour of the end-to-end
run that no other test pinned down (each test names the mutants it kills)."""
import json
import logging
import os
import subprocess
import sys

import pytest
import torch
from recbole.utils import init_seed
from safetensors import safe_open
from safetensors.torch import save_file

from lock_holder import held_by_another_process
from recbole_hnlm.errors import ConcurrentWriterError, ConfigError
from recbole_hnlm.quick_start import main, run_recbole_hnlm
import test_resume
import test_warm_start
from test_warm_start import _with_trainer_state

# the shared fixtures: the Ctrl-C of test_resume, and the MF+RNS run and first-epoch weights of test_warm_start
ctrl_c_in_epoch = test_resume.ctrl_c_in_epoch
first_epoch_weights, rns_run = test_warm_start.first_epoch_weights, test_warm_start.rns_run


def test_a_run_logs_misspelt_foreign_and_unapplied_options_before_it_reads_the_data(tmp_path, caplog):
    """The three kinds of option warnings were tested only as Config attributes and message functions: the run
    dropping any of them went unnoticed (mutants: each loop or list left out)."""
    caplog.set_level(logging.WARNING)
    settings = {"sampler": "AHNS", "data_path": str(tmp_path), "epochz": 3, "n_layers": 5,
                "valid_metric_bigger": False, "state": "WARNING", "use_gpu": False, "show_progress": False}
    with pytest.raises(FileNotFoundError, match="Dataset .nosuch. not found"):
        run_recbole_hnlm(model="MF", dataset="nosuch", config_dict=settings)
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert "Unknown option 'epochz' is ignored: did you mean 'epochs'?" in warnings
    assert ("Option 'n_layers' is ignored: it is an option of the LightGCN/SGL model, which a MF run with the AHNS "
            "sampler never reads.") in warnings
    assert ("Option 'valid_metric_bigger' = False is not applied: RecBole sets it from valid_metric (NDCG@20: "
            "True).") in warnings


def test_the_bundled_ml100k_warning_needs_a_data_path(tmp_path, caplog):
    """ml-100k read from RecBole's bundled copy is worth a warning only when a data_path was given (mutant: the
    warning on every ml-100k run). The run stops at the resume_from check, after the warning, before any data."""
    caplog.set_level(logging.WARNING)
    settings = {"resume_from": str(tmp_path / "nosuch.resume.safetensors"), "state": "WARNING", "use_gpu": False}
    with pytest.raises(ConfigError, match="resume_from: .* does not exist"):
        run_recbole_hnlm(model="MF", dataset="ml-100k", config_dict=settings)
    assert "bundled example" not in caplog.text
    with pytest.raises(ConfigError, match="resume_from: .* does not exist"):
        run_recbole_hnlm(model="MF", dataset="ml-100k", config_dict={**settings, "data_path": str(tmp_path)})
    assert f"ignores data_path={str(tmp_path)!r}" in caplog.text


def test_a_resume_the_trainer_refuses_gives_up_the_reserved_names(fast_config, tmp_path):
    """A resume state whose optimizer state does not load (two parameter groups for MF's one) passes every check
    before the trainer: the trainer's refusal is one ConfigError naming torch's last line, and the names the trainer
    reserved are given up (mutants: no trainer.close(); the first instead of the last line of the error)."""
    settings = {**fast_config, "sampler": "RNS", "epochs": 1, "checkpoint_dir": str(tmp_path)}
    first = run_recbole_hnlm(model="MF", config_dict=settings)
    path = first["resume_state"]
    with safe_open(path, framework="pt") as handle:
        tensors, meta = {k: handle.get_tensor(k) for k in handle.keys()}, json.loads(handle.metadata()["recbole_hnlm"])
    meta["optimizer"]["param_groups"] *= 2
    save_file(tensors, path, metadata={"recbole_hnlm": json.dumps(meta)})
    with pytest.raises(ConfigError) as refused:
        run_recbole_hnlm(model="MF", config_dict={**settings, "epochs": 2, "resume_from": path})
    assert str(refused.value) == (f"resume_from: the weights in {path} fit this MF, but the rest of its state "
                                  "(optimizer, trainer) does not load (loaded state dict has a different number of "
                                  "parameter groups): resume with the options of the interrupted run (learner ...), "
                                  "or start again without resume_from.")
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".reserved")]


def test_a_resume_of_a_run_still_writing_stays_a_concurrent_writer_error(fast_config, tmp_path):
    """A run that starts writing the files between the run's own check and the trainer's is a ConcurrentWriterError
    (exit status 1: it works once the other process ends), not a ConfigError about weights that do not fit (mutant:
    the ``except ConcurrentWriterError: raise`` clause left out)."""
    from recbole.data import create_dataset, data_preparation

    from recbole_hnlm.config import Config
    from recbole_hnlm.model.mf import MF
    from recbole_hnlm.quick_start import resume
    from recbole_hnlm.utils import get_trainer

    settings = {**fast_config, "sampler": "RNS", "epochs": 1, "checkpoint_dir": str(tmp_path)}
    path = run_recbole_hnlm(model="MF", config_dict=settings)["resume_state"]
    config = Config(model="MF", config_dict={**settings, "epochs": 2, "resume_from": path})
    train_data = data_preparation(config, create_dataset(config))[0]
    trainer = get_trainer(config["MODEL_TYPE"], "MF")(config, MF(config, train_data._dataset))
    marker = os.path.join(str(tmp_path), "." + os.path.basename(path)[:-len(".resume.safetensors")] + ".reserved")
    try:
        with held_by_another_process(marker, f"{os.getpid()}\n", truncate=True):
            with pytest.raises(ConcurrentWriterError, match="is still writing this run's files"):
                resume(trainer, config, logging.getLogger())
    finally:
        trainer.close()


def test_an_unsaved_run_names_no_files(fast_config):
    """``saved=False`` (the objective function's option too) writes no checkpoint and no resume state, and its
    result names none (mutants: the checkpoint or the resume state named whatever ``saved`` says; the objective
    function saving always)."""
    from recbole_hnlm.quick_start import objective_function

    settings = {**fast_config, "model": "MF", "sampler": "RNS", "epochs": 1}
    for result in (run_recbole_hnlm(config_dict=settings, saved=False),
                   objective_function(config_dict=settings, saved=False)):
        assert result["model"] == "MF" and result["test_result"]["ndcg@20"] > 0
        assert result["checkpoint"] is None and result["resume_state"] is None
    assert not [name for name in os.listdir(fast_config["checkpoint_dir"]) if name.endswith(".safetensors")]


def test_ctrl_c_before_any_file_is_written_is_a_plain_interrupt(fast_config, ctrl_c_in_epoch, capsys):
    """Ctrl-C in the first epoch (no resume state, no best checkpoint yet) names no file to resume from, and the
    command line says to rerun it, without the LLM hint of an RNS run (mutants: the resume state's existence not
    checked; the LLM hint given whatever the sampler)."""
    settings = {**fast_config, "sampler": "RNS", "epochs": 2}
    ctrl_c_in_epoch(0)
    with pytest.raises(KeyboardInterrupt) as interrupted:
        run_recbole_hnlm(model="MF", config_dict=settings)
    assert type(interrupted.value) is KeyboardInterrupt
    assert not [name for name in os.listdir(fast_config["checkpoint_dir"]) if not name.startswith(".")]
    argv = ["--model=MF", "--sampler=RNS", f"--dataset={fast_config['dataset']}",
            f"--data_path={fast_config['data_path']}", "--epochs=2", "--state=WARNING", "--show_progress=False",
            "--load_col={'inter': ['user_id', 'item_id']}", f"--checkpoint_dir={fast_config['checkpoint_dir']}"]
    ctrl_c_in_epoch(0)
    assert main(argv) == 130
    assert capsys.readouterr().err.splitlines()[-1] == ("interrupted: nothing half-written is left; rerun the "
                                                        "command to start the run again")


def test_ctrl_c_in_a_recbole_models_run_names_no_checkpoint_to_resume_from(fast_config, monkeypatch):
    """RecBole's models cannot be resumed: a Ctrl-C after their best checkpoint is written stays a plain interrupt
    (mutants: ``resumable`` taken as True, or not asked)."""
    from recbole_hnlm.trainer import SafeCheckpointMixin

    train_epoch = SafeCheckpointMixin._train_epoch

    def ctrl_c_in_epoch_1(self, train_data, epoch_idx, *args, **kwargs):
        if epoch_idx == 1:
            raise KeyboardInterrupt
        return train_epoch(self, train_data, epoch_idx, *args, **kwargs)

    monkeypatch.setattr(SafeCheckpointMixin, "_train_epoch", ctrl_c_in_epoch_1)
    with pytest.raises(KeyboardInterrupt) as interrupted:
        run_recbole_hnlm(model="BPR", config_dict={**fast_config, "sampler": "RNS", "epochs": 3})
    assert type(interrupted.value) is KeyboardInterrupt
    written = [name for name in os.listdir(fast_config["checkpoint_dir"]) if name.endswith(".safetensors")]
    assert len(written) == 1 and written[0].startswith("BPR-")  # epoch 0's best checkpoint was there


def test_a_smaller_is_better_validation_metric_is_reported_as_such(fast_config, tmp_path):
    """``valid_score_bigger`` (what RecBole's HyperTuning reads to rank trials) is the run's, for a training run and
    for eval_only (mutants: True in either result)."""
    settings = {**fast_config, "sampler": "RNS", "epochs": 1, "topk": [10], "metrics": ["Recall", "GiniIndex"],
                "valid_metric": "GiniIndex@10"}
    trained = run_recbole_hnlm(model="MF", config_dict=settings)
    assert trained["valid_score_bigger"] is False
    assert trained["best_valid_score"] == trained["best_valid_result"]["giniindex@10"]
    evaluated = run_recbole_hnlm(model="MF", config_dict={**settings, "init_from": trained["checkpoint"],
                                                          "eval_only": True,
                                                          "checkpoint_dir": str(tmp_path / "eval")})
    assert evaluated["valid_score_bigger"] is False


def test_the_model_is_built_under_the_runs_seed_not_the_split_seed(fast_config, first_epoch_weights):
    """The backbone's initial weights are those of the run's ``seed`` (after the sampler's preparation, whatever it
    drew), not of ``split_seed`` (mutants: no init_seed before the model is built; the split seed)."""
    from recbole_hnlm.config import Config
    from recbole_hnlm.model.mf import MF
    from recbole_hnlm.quick_start import read_dataset, split_dataset

    settings = {**fast_config, "sampler": "DNS", "epochs": 1, "seed": 7, "split_seed": 2020}
    run_recbole_hnlm(model="MF", config_dict=settings)
    config = Config(model="MF", config_dict=settings)
    train_data = split_dataset(config, read_dataset(config))[0]
    init_seed(7, True)
    expected = {f"model.{k}": v for k, v in MF(config, train_data._dataset).state_dict().items()}
    (seen,) = first_epoch_weights
    assert seen.keys() == expected.keys() and seen
    for key in expected:
        assert torch.equal(seen[key], expected[key]), key


def test_eval_only_checks_the_checkpoints_ids(fast_config, rns_run, tmp_path):
    """eval_only refuses a checkpoint trained on other users or items even when the shapes agree (mutant: the data
    check of checkpoint_backbone left out: the weights loaded onto the wrong rows and were evaluated)."""
    shuffled = _with_trainer_state(rns_run["checkpoint"], tmp_path / "ids.safetensors", id_map="0" * 64)
    with pytest.raises(ConfigError, match="init_from: .*ids.safetensors was trained on other users or items"):
        run_recbole_hnlm(model="MF", config_dict={**fast_config, "sampler": "RNS", "init_from": shuffled,
                                                  "eval_only": True})


def test_eval_only_warns_about_other_evaluation_pairs_and_is_quiet_about_rns(fast_config, rns_run, tmp_path,
                                                                              caplog):
    """eval_only says when the checkpoint's run was evaluated on other validation or test pairs (mutant: the warning
    left out); with the uniform sampler ("rns" in any case) it says nothing about the sampler (mutant: always)."""
    caplog.set_level(logging.INFO)
    settings = {**fast_config, "sampler": "rns", "eval_only": True, "checkpoint_dir": str(tmp_path / "eval"),
                "state": "INFO"}
    same = run_recbole_hnlm(model="MF", config_dict={**settings, "init_from": rns_run["checkpoint"]})
    assert same["test_result"] == rns_run["test_result"]
    assert "pairs differ" not in caplog.text and "plays no part in evaluation" not in caplog.text
    edited = _with_trainer_state(rns_run["checkpoint"], tmp_path / "pairs.safetensors", eval_split="0" * 64)
    other = run_recbole_hnlm(model="MF", config_dict={**settings, "init_from": edited})
    assert other["test_result"] == rns_run["test_result"]  # the same weights and pairs: only the stored digest differs
    assert ("eval_only: the validation or test pairs differ from those the run of pairs.safetensors was evaluated "
            "on") in caplog.text

def test_a_log_name_held_by_another_run_gets_a_handler_like_recboles(tmp_path):
    """The ``-2.log`` handler that replaces RecBole's keeps its level, format and colour filter, is the run's (so the
    next run removes it), holds its lock, and RecBole's handler of the held file is closed and taken off (mutants:
    each of those left out)."""
    from recbole.utils.logger import RemoveColorFilter

    from recbole_hnlm.quick_start import _own_log_file

    held = str(tmp_path / "MF-run.log")
    recboles = logging.FileHandler(held)
    recboles.setLevel(logging.WARNING)
    recboles.setFormatter(logging.Formatter("%(levelname)s  %(message)s"))
    recboles.addFilter(RemoveColorFilter())
    logger = logging.Logger("qa41c-run")
    logger.addHandler(recboles)
    with held_by_another_process(held):
        _own_log_file(logger, recboles)
    (own,) = logger.handlers
    try:
        assert own.baseFilename == str(tmp_path / "MF-run-2.log") and recboles.stream is None
        assert own.level == logging.WARNING and own.formatter is recboles.formatter
        assert own.filters == recboles.filters and len(own.filters) == 1
        assert own._recbole_hnlm_run is True and not own._recbole_hnlm_lock.closed
        logger.warning("\x1b[1;33mbest valid \x1b[0m: 0.5")
        logger.info("not at this level")
        own.flush()
        assert (tmp_path / "MF-run-2.log").read_text() == "WARNING  best valid : 0.5\n"
    finally:
        own.close()
        own._recbole_hnlm_lock.close()


def test_a_second_run_in_one_process_takes_its_log_file_back(fast_config, tmp_path):
    """A run's lock on its log file is let go when the next run of the process starts: a run of the same name and
    second gets that name again, not ``-2.log`` (mutant: the lock not closed). In a subprocess: pytest's handlers on
    the root logger keep RecBole from adding any here."""
    script = """
import json, logging, sys
import recbole.utils.logger
from recbole_hnlm.config import Config
from recbole_hnlm.quick_start import _init_run_logger

recbole.utils.logger.get_local_time = lambda: "Dec-06-2026_12-00-00"  # the same second
settings = json.loads(sys.argv[1])
config = Config(model="MF", dataset=settings["dataset"], config_dict=settings, command_line=False)
names = []
for _ in range(2):
    _init_run_logger(config)
    names += [h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
print(json.dumps(names))
"""
    done = subprocess.run([sys.executable, "-c", script, json.dumps({**fast_config, "state": "INFO"})],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    first, second = json.loads(done.stdout)
    assert first == second and first.endswith(".log") and not first.endswith("-2.log")


def test_the_run_script_writes_its_error_line_to_the_log_file_once_on_the_console(ml_slice, tmp_path):
    """An error after the log file is opened (a missing dataset) goes into the run's log file and once onto the
    console, and the script's exit status is main's (mutants: not written to the log; written through the console
    handler too; the script's ``sys.exit`` left out)."""
    data_path, _ = ml_slice
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "run_recbole_hnlm.py")
    done = subprocess.run([sys.executable, script, "--model=MF", "--dataset=nosuch", f"--data_path={data_path}",
                           "--state=WARNING"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    line = (f"error: Dataset 'nosuch' not found: missing {os.path.join(data_path, 'nosuch', 'nosuch.inter')}. Put the "
            "RecBole atomic files there")
    assert (done.stdout + done.stderr).count(line) == 1, done.stderr[-3000:]
    (log,) = (tmp_path / "log" / "MF").glob("*.log")
    assert f"ERROR  {line}" in log.read_text()


def test_a_setting_repeated_with_the_same_value_is_not_warned_about(capsys):
    """Only a repeated key whose values differ is worth a warning (mutant: every repetition warned about)."""
    from recbole_hnlm.quick_start import _last_setting_wins

    assert _last_setting_wins(["--epochs=1", "--model=MF", "--epochs=1"]) == ["--model=MF", "--epochs=1"]
    assert capsys.readouterr().err == ""


def test_space_separated_command_flags_take_their_last_value_and_the_sampler(tmp_path, capsys):
    """``--model MF --model NGCF``: argparse takes the last (mutant: the repeated-key rule taking ``--model`` without
    '=' for a setting, which left ``MF`` as a stray word); ``--sampler Bogus`` reaches the run only through the
    config dict, as RecBole's reader skips space-separated values (mutant: the config dict dropped)."""
    common = ["--dataset=nosuch", f"--data_path={tmp_path}"]
    assert main(common + ["--model", "MF", "--model", "Bogus"]) == 2
    assert "error: Unknown model 'Bogus'" in capsys.readouterr().err
    assert main(common + ["--model=MF", "--sampler", "Bogus"]) == 2
    assert "error: Unknown sampler 'Bogus'" in capsys.readouterr().err


def test_a_stray_existing_file_of_any_name_gets_the_config_files_hint(tmp_path, capsys):
    """The hint about quoting several config files is given for a stray word naming a file, whatever its suffix
    (mutant: only for .yaml/.yml words)."""
    first, second = tmp_path / "a.yaml", tmp_path / "b.conf"
    first.write_text("epochs: 1\n")
    second.write_text("epochs: 1\n")
    assert main(["--model=MF", "--config_files", str(first), str(second)]) == 2
    assert (f"unrecognised argument '{second}': settings are written --key=value (several config files go in one "
            "quoted --config_files: --config_files='a.yaml b.yaml')") in capsys.readouterr().err


def test_an_abbreviated_flag_is_not_taken_for_the_dataset(tmp_path, capsys):
    """``--data=...`` is not ``--dataset`` (mutant: argparse's abbreviations allowed)."""
    assert main(["--model=MF", "--dataset=other", "--data=nosuch", f"--data_path={tmp_path}"]) == 2
    # the error line only: after other tests a logging handler may print a traceback quoting this test's source
    error, = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert os.path.join(str(tmp_path), "other", "other.inter") in error and "nosuch" not in error


def test_config_files_split_on_any_spacing(tmp_path, capsys):
    """``--config_files='a.yaml  b.yaml'`` (two spaces) names two files (mutant: RecBole's split(" "), which gave an
    empty third name)."""
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(f"dataset: nosuch\ndata_path: {tmp_path}\n")
    second.write_text("model: Bogus\n")
    assert main([f"--config_files={first}  {second}"]) == 2
    assert "error: Unknown model 'Bogus'" in capsys.readouterr().err


def test_without_a_model_anywhere_the_run_trains_lightgcn(tmp_path, caplog):
    """``--help`` says the model defaults to LightGCN (mutant: another default); the foreign-option warning names the
    run's backbone before the missing dataset stops it."""
    caplog.set_level(logging.WARNING)
    assert main(["--dataset=nosuch", f"--data_path={tmp_path}", "--message_dropout=0.1"]) == 2
    assert "which a LightGCN run with the RNS sampler never reads" in caplog.text


def test_the_command_line_leaves_sys_argv_as_it_was(tmp_path):
    """RecBole's Config reads ``sys.argv``: main sets it for the run and puts the caller's back (mutant: not put
    back), whether the run ends with an error or not."""
    before = list(sys.argv)
    assert main(["--model=MF", "--dataset=nosuch", f"--data_path={tmp_path}"]) == 2
    assert sys.argv == before


def _stop_the_llm_stage(monkeypatch, how):
    """The next HNLMRec run stops at its LLM stage's first step (the teacher), by ``how()`` (a Ctrl-C or SIGTERM)."""
    import recbole_hnlm.llm.teacher_training as teacher_training

    def interrupted(*args, **kwargs):
        how()
        raise AssertionError("not interrupted")

    monkeypatch.setattr(teacher_training, "ensure_teacher", interrupted)


def _ctrl_c():
    raise KeyboardInterrupt


def test_the_llm_hint_follows_a_sampler_of_any_case_or_from_a_config_file_and_sigterm_keeps_its_status(
        fast_config, tmp_path, monkeypatch, capsys):
    """An interrupted LLM stage gets the hint about what is kept when the sampler is HNLMRec in any spelling or may
    come from a config file (mutants: the case compared; the config files not counted), and SIGTERM there ends with
    143, not Ctrl-C's 130 (mutant: 130 for every interrupt outside training)."""
    import signal

    settings = tmp_path / "run.yaml"
    settings.write_text(f"dataset: {fast_config['dataset']}\ndata_path: {fast_config['data_path']}\n"
                        "sampler: HNLMRec\nstate: WARNING\nshow_progress: False\n"
                        "load_col: {inter: [user_id, item_id]}\n")
    base = ["--model=MF", f"--checkpoint_dir={tmp_path / 'saved'}"]
    hint = "interrupted: nothing half-written is left; rerun the command to start the run again (finished LLM"
    _stop_the_llm_stage(monkeypatch, _ctrl_c)
    assert main(base + [f"--config_files={settings}"]) == 130
    assert hint in capsys.readouterr().err
    assert main(base + ["--sampler=hnlmrec", f"--dataset={fast_config['dataset']}", "--state=WARNING",
                        f"--data_path={fast_config['data_path']}", "--show_progress=False",
                        "--load_col={'inter': ['user_id', 'item_id']}"]) == 130
    assert hint in capsys.readouterr().err
    _stop_the_llm_stage(monkeypatch, lambda: os.kill(os.getpid(), signal.SIGTERM))
    assert main(base + [f"--config_files={settings}"]) == 143
    assert hint in capsys.readouterr().err


def test_a_full_disk_outside_the_atomic_writes_is_one_error_line_and_other_os_errors_pass_on(monkeypatch, capsys):
    """An OSError of a full disk from a file no atomic write guards (RecBole's tensorboard events) ends the command
    with one ``error:`` line and status 1; any other OSError is not dressed up as one (mutant: every OSError re-raised).
    The run is replaced by one that fails as the disk would: a real full disk cannot be made here."""
    import errno

    import recbole_hnlm.quick_start as quick_start

    def full_disk(**kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "/disk/log_tensorboard/events.out")

    monkeypatch.setattr(quick_start, "run_recbole_hnlm", full_disk)
    assert main(["--model=MF"]) == 1
    assert capsys.readouterr().err.startswith("error: /disk/log_tensorboard/events.out: cannot be written (No space "
                                              "left on device)")

    def refused(**kwargs):
        raise OSError(errno.EPERM, "Operation not permitted", "/disk/x")

    monkeypatch.setattr(quick_start, "run_recbole_hnlm", refused)
    with pytest.raises(OSError, match="Operation not permitted"):
        main(["--model=MF"])


def test_the_commands_own_flags_in_their_space_form_are_not_called_unused(tmp_path, caplog):
    """``--model MF -s DNS --dataset NAME`` (the space form the usage line allows) printed RecBole's "command line
    args [--model MF -s DNS --dataset NAME] will not be used in RecBole", and the run trained MF with DNS on NAME."""
    caplog.set_level(logging.WARNING)
    assert main(["--model", "MF", "-s", "DNS", "--dataset", "nosuch", f"--data_path={tmp_path}", "--n_layers=2"]) == 2
    assert "which a MF run with the DNS sampler never reads" in caplog.text  # the flags were used
    assert "will not be used in RecBole" not in caplog.text


@pytest.mark.parametrize("form", ["space", "equals"])
def test_a_config_file_in_a_folder_holding_an_equals_sign_is_not_called_unused(tmp_path, caplog, capsys, form):
    """``--config_files lr=0.1/run.yaml`` (a folder named after a setting) printed RecBole's "command line args
    [--config_files=lr=0.1/run.yaml] will not be used in RecBole" (its reader cannot split a value holding '='),
    although the run read the file."""
    folder = tmp_path / "lr=0.1"
    folder.mkdir()
    (folder / "run.yaml").write_text(f"dataset: nosuch\ndata_path: {tmp_path}\n")
    flag = ["--config_files", str(folder / "run.yaml")] if form == "space" else [f"--config_files={folder}/run.yaml"]
    caplog.set_level(logging.WARNING)
    assert main(["--model=MF"] + flag) == 2
    assert "nosuch" in capsys.readouterr().err  # the file was read
    assert "will not be used in RecBole" not in caplog.text
