"""End to end: every backbone x sampler trains and evaluates; checkpoints reload without pickle; clear errors."""
import json
import os
import subprocess
import sys

import pytest
import torch
from recbole.utils import init_seed
from safetensors import safe_open

from lock_holder import held_by_another_process, seen_held_by_another_process
from recbole_hnlm.quick_start import main, run_recbole_hnlm

BACKBONES = ["MF", "NGCF", "LightGCN", "SGL"]
SAMPLERS = ["RNS", "DNS", "MixGCF", "AHNS"]


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("model", BACKBONES)
def test_every_backbone_trains_with_every_sampler(fast_config, model, sampler):
    config = {**fast_config, "epochs": 1, "mixgcf_candidates": 16, "dns_candidates": 16, "ahns_candidates": 16}
    result = run_recbole_hnlm(model=model, config_dict={**config, "sampler": sampler})
    test = result["test_result"]
    assert set(test) == {"recall@10", "recall@20", "ndcg@10", "ndcg@20"}
    assert all(0.0 <= value <= 1.0 for value in test.values())
    assert test["ndcg@20"] > 0.0  # one epoch already ranks some held-out items
    with safe_open(result["checkpoint"], framework="pt") as f:
        assert any(key.startswith("model.") for key in f.keys())


def test_lightgcn_mixgcf_with_a_bfloat16_layer_stack(fast_config):
    from recbole_hnlm.errors import ConfigError

    config = {**fast_config, "epochs": 1, "mixgcf_candidates": 16, "sampler": "MixGCF", "layers_dtype": "bfloat16"}
    result = run_recbole_hnlm(model="LightGCN", config_dict=config)
    assert result["test_result"]["ndcg@20"] > 0.0
    with safe_open(result["checkpoint"], framework="pt") as f:  # parameters stay float32
        dtypes = {key: f.get_tensor(key).dtype for key in f.keys() if key.endswith("_embedding.weight")}
    assert len(dtypes) == 2 and set(dtypes.values()) == {torch.float32}, dtypes

    from recbole.data import create_dataset, data_preparation

    from recbole_hnlm.config import Config
    from recbole_hnlm.model.lightgcn import LightGCN

    model_config = Config(model="LightGCN", config_dict=config)
    train_data, _, _ = data_preparation(model_config, create_dataset(model_config))
    emb = LightGCN(model_config, train_data._dataset).propagate(with_layers=True)
    assert emb.item_layers.dtype == torch.bfloat16 and emb.item.dtype == torch.float32
    for refused in ("int8", "float16"):
        with pytest.raises(ConfigError, match="layers_dtype"):
            run_recbole_hnlm(model="LightGCN", config_dict={**config, "layers_dtype": refused})


def test_checkpoint_round_trip_gives_identical_scores(fast_config):
    from recbole.data import create_dataset, data_preparation

    from recbole_hnlm.checkpoint import load_checkpoint
    from recbole_hnlm.config import Config
    from recbole_hnlm.model.lightgcn import LightGCN

    result = run_recbole_hnlm(model="LightGCN", config_dict={**fast_config, "sampler": "DNS"})
    umask = os.umask(0o022)
    os.umask(umask)
    assert os.stat(result["checkpoint"]).st_mode & 0o777 == 0o666 & ~umask  # readable as any file the user writes
    assert not [f for f in os.listdir(os.path.dirname(result["checkpoint"])) if ".tmp" in f]
    config = Config(model="LightGCN", config_dict={**fast_config, "sampler": "DNS"})
    init_seed(config["seed"], config["reproducibility"])  # the same split as the run
    train_data, _, test_data = data_preparation(config, create_dataset(config))
    model = LightGCN(config, train_data._dataset)
    state = load_checkpoint(result["checkpoint"], model)
    assert state["sampler"] == "DNS" and state["epoch"] >= 0
    from recbole_hnlm.trainer import HNLMTrainer
    trainer = HNLMTrainer(config, model)
    again = trainer.evaluate(test_data, load_best_model=False)
    assert again == pytest.approx(result["test_result"], abs=1e-6)


def test_runs_started_in_the_same_second_keep_their_own_checkpoints(fast_config, monkeypatch):
    import recbole_hnlm.trainer

    monkeypatch.setattr(recbole_hnlm.trainer, "get_local_time", lambda: "Dec-03-2026_12-00-00")  # one clock second
    runs = [run_recbole_hnlm(model="MF", config_dict={**fast_config, "sampler": sampler, "epochs": 1})
            for sampler in ("RNS", "DNS", "RNS")]
    stems = [os.path.basename(r["checkpoint"]) for r in runs]
    assert stems == ["MF-Dec-03-2026_12-00-00.safetensors", "MF-Dec-03-2026_12-00-00-2.safetensors",
                     "MF-Dec-03-2026_12-00-00-3.safetensors"]
    assert [r["resume_state"] for r in runs] == [r["checkpoint"].replace(".safetensors", ".resume.safetensors")
                                                 for r in runs]
    with safe_open(runs[0]["checkpoint"], framework="pt") as f:  # not overwritten by the later runs
        assert '"sampler": "RNS"' in f.metadata()["recbole_hnlm"]
    with safe_open(runs[1]["checkpoint"], framework="pt") as f:
        assert '"sampler": "DNS"' in f.metadata()["recbole_hnlm"]
    assert not [name for name in os.listdir(fast_config["checkpoint_dir"]) if name.endswith(".reserved")]


def test_trainers_started_together_get_their_own_names(fast_config, monkeypatch):
    """Runs launched side by side (e.g. one per seed) reserve their names before either has written a file."""
    from recbole.data import create_dataset, data_preparation

    import recbole_hnlm.trainer
    from recbole_hnlm.config import Config
    from recbole_hnlm.model.mf import MF
    from recbole_hnlm.trainer import HNLMTrainer

    monkeypatch.setattr(recbole_hnlm.trainer, "get_local_time", lambda: "Dec-03-2026_12-00-00")
    config = Config(model="MF", config_dict={**fast_config, "sampler": "RNS", "epochs": 1})
    train_data, valid_data, _ = data_preparation(config, create_dataset(config))
    first, second = (HNLMTrainer(config, MF(config, train_data._dataset)) for _ in range(2))
    assert first.saved_model_file != second.saved_model_file and not os.path.exists(first.saved_model_file)
    assert first.resume_state_file != second.resume_state_file
    folder = fast_config["checkpoint_dir"]
    assert len([name for name in os.listdir(folder) if name.endswith(".reserved")]) == 2
    first.fit(train_data, valid_data)
    second.fit(train_data, valid_data)
    assert not [name for name in os.listdir(folder) if name.endswith(".reserved")]
    third = HNLMTrainer(config, MF(config, train_data._dataset))  # the first two names are taken by their files now
    assert third.saved_model_file.endswith("MF-Dec-03-2026_12-00-00-3.safetensors")


@pytest.fixture
def dead_and_live_pids():
    """``(pid of a process that has ended, pid of one that runs)``: the owners of the markers the tests write."""
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=60)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield dead.pid, live.pid
    finally:
        live.kill()
        live.wait(timeout=60)


def _mf_trainer_inputs(fast_config):
    """``(config, training dataset)`` of a one-epoch MF + RNS run on the slice, its checkpoint folder created."""
    from recbole.data import create_dataset, data_preparation

    from recbole_hnlm.config import Config

    config = Config(model="MF", config_dict={**fast_config, "sampler": "RNS", "epochs": 1})
    train_data, _, _ = data_preparation(config, create_dataset(config))
    os.makedirs(fast_config["checkpoint_dir"], exist_ok=True)
    return config, train_data._dataset


def test_a_hard_killed_runs_name_marker_is_taken_over(fast_config, monkeypatch, dead_and_live_pids):
    """A run killed with SIGKILL left its hidden marker for good (14 of them after 16 kills, a helper found): a
    marker whose pid no longer runs frees its name, a live run's does not."""
    import recbole_hnlm.trainer
    from recbole_hnlm.model.mf import MF
    from recbole_hnlm.trainer import HNLMTrainer

    monkeypatch.setattr(recbole_hnlm.trainer, "get_local_time", lambda: "Dec-05-2026_12-00-00")
    config, dataset = _mf_trainer_inputs(fast_config)
    folder = fast_config["checkpoint_dir"]
    dead, live = dead_and_live_pids
    with open(os.path.join(folder, ".MF-Dec-05-2026_12-00-00.reserved"), "w") as handle:
        handle.write(f"{dead}\n")
    with open(os.path.join(folder, ".MF-Dec-05-2026_12-00-00-2.reserved"), "w") as handle:
        handle.write(f"{live}\n")
    first = HNLMTrainer(config, MF(config, dataset))
    second = HNLMTrainer(config, MF(config, dataset))
    assert first.saved_model_file.endswith("MF-Dec-05-2026_12-00-00.safetensors")  # the dead run's name
    assert second.saved_model_file.endswith("MF-Dec-05-2026_12-00-00-3.safetensors")  # not the live run's
    with open(os.path.join(folder, ".MF-Dec-05-2026_12-00-00.reserved")) as handle:
        assert handle.read().strip() == str(os.getpid())
    first.close()
    second.close()


def test_markers_of_dead_runs_of_other_names_are_swept(fast_config, dead_and_live_pids):
    """A hard-killed run that was never resumed left its marker for good: only a run of the same name (the same
    second) took it over. A new run now removes every dead run's marker in its folder, and leaves live ones."""
    from recbole_hnlm.model.mf import MF
    from recbole_hnlm.trainer import HNLMTrainer

    config, dataset = _mf_trainer_inputs(fast_config)
    folder = fast_config["checkpoint_dir"]
    dead, live = dead_and_live_pids
    markers = {".NGCF-Nov-01-2026_10-00-00.reserved": dead, ".MF-Nov-02-2026_10-00-00.reserved": live}
    for name, pid in markers.items():
        with open(os.path.join(folder, name), "w") as handle:
            handle.write(f"{pid}\n")
    run = HNLMTrainer(config, MF(config, dataset))
    left = sorted(name for name in os.listdir(folder) if name.endswith(".reserved"))
    run.close()
    assert ".NGCF-Nov-01-2026_10-00-00.reserved" not in left and ".MF-Nov-02-2026_10-00-00.reserved" in left


def test_a_marker_locked_by_a_run_whose_pid_means_nothing_here_keeps_its_name(fast_config, monkeypatch):
    """Two containers sharing a checkpoint folder see different process ids: a run whose pid was no process here
    had its marker removed and its name taken (both runs wrote one checkpoint). The marker's lock tells instead."""
    import recbole_hnlm.trainer
    from recbole_hnlm.model.mf import MF
    from recbole_hnlm.trainer import HNLMTrainer

    monkeypatch.setattr(recbole_hnlm.trainer, "get_local_time", lambda: "Dec-06-2026_12-00-00")
    config, dataset = _mf_trainer_inputs(fast_config)
    folder = fast_config["checkpoint_dir"]
    marker = os.path.join(folder, ".MF-Dec-06-2026_12-00-00.reserved")
    with held_by_another_process(marker, "4194305\n", truncate=True):  # a pid no process has (above pid_max)
        sweeper = HNLMTrainer(config, MF(config, dataset))  # sweeps dead runs' markers first
        assert sweeper.saved_model_file.endswith("MF-Dec-06-2026_12-00-00-2.safetensors")
        assert open(marker).read().strip() == "4194305"
        sweeper.close()
    after = HNLMTrainer(config, MF(config, dataset))  # that run ended: its lock went with it, and the name is free
    assert after.saved_model_file.endswith("MF-Dec-06-2026_12-00-00.safetensors")
    after.close()
    assert not [name for name in os.listdir(folder) if name.endswith(".reserved")]


def test_a_runs_marker_is_locked_and_a_locked_marker_with_this_pid_is_not_taken_for_ours(fast_config, tmp_path):
    """Other processes see a run's marker locked (the lock, not the pid, tells them it runs), and a marker locked by
    a process of another container that has this process's pid (pid 1 in both, say) is that run's: a resume of it is
    refused, not taken over."""
    from recbole_hnlm.errors import ConcurrentWriterError
    from recbole_hnlm.model.mf import MF
    from recbole_hnlm.trainer import HNLMTrainer, check_resume_not_in_use

    config, dataset = _mf_trainer_inputs(fast_config)
    run = HNLMTrainer(config, MF(config, dataset))
    marker = run._name_marker
    try:
        assert seen_held_by_another_process(marker)
        assert open(marker).read().strip() == str(os.getpid())  # written before anyone could see it
    finally:
        run.close()
    assert not os.path.exists(marker)
    resume = str(tmp_path / "MF-Dec-06-2026_13-00-00.resume.safetensors")
    other_marker = str(tmp_path / ".MF-Dec-06-2026_13-00-00.reserved")
    with held_by_another_process(other_marker, f"{os.getpid()}\n", truncate=True):
        with pytest.raises(ConcurrentWriterError, match=f"another process .pid {os.getpid()}. is still writing"):
            check_resume_not_in_use(resume)
    check_resume_not_in_use(resume)  # that process ended: its lock went with it


def test_resume_restores_optimizer_state(fast_config, tmp_path):
    from recbole.data import create_dataset, data_preparation

    from recbole_hnlm.config import Config
    from recbole_hnlm.model.mf import MF
    from recbole_hnlm.trainer import HNLMTrainer

    config = Config(model="MF", config_dict={**fast_config, "sampler": "RNS"})
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, _ = data_preparation(config, create_dataset(config))
    model = MF(config, train_data._dataset)
    trainer = HNLMTrainer(config, model)
    trainer.fit(train_data, valid_data, saved=True)
    path = str(tmp_path / "resume.safetensors")
    trainer._save_checkpoint(3, saved_model_file=path, verbose=False)
    fresh = HNLMTrainer(config, MF(config, train_data._dataset))
    fresh.resume_checkpoint(path)
    assert fresh.start_epoch == 4
    for a, b in zip(trainer.model.parameters(), fresh.model.parameters()):
        assert torch.equal(a, b)
    state_a, state_b = trainer.optimizer.state_dict()["state"], fresh.optimizer.state_dict()["state"]
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key]["exp_avg"], state_b[key]["exp_avg"])


def test_missing_dataset_names_the_searched_path(tmp_path, capsys):
    code = main(["--model=LightGCN", "--dataset=yelp2018", f"--data_path={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2
    assert os.path.join(str(tmp_path), "yelp2018", "yelp2018.inter") in err


def test_cli_reports_unknown_sampler(capsys):
    code = main(["--model=LightGCN", "--sampler=Bogus"])
    assert code == 2
    assert "Valid samplers: RNS, DNS, MixGCF, AHNS, HNLMRec" in capsys.readouterr().err


def test_a_setting_given_twice_takes_its_last_value(capsys):
    """As ``scripts/main.sh --sampler=RNS`` does (it passes its own --sampler first); RecBole itself stops with a
    SyntaxError traceback on a repeated key."""
    assert main(["--model=LightGCN", "--sampler=HNLMRec", "--sampler=Bogus"]) == 2
    err = capsys.readouterr().err
    assert "--sampler is given more than once; the last one is used (--sampler=Bogus)" in err
    assert "Unknown sampler 'Bogus'" in err
    assert main(["--model=LightGCN", "--epochs=abc", "--epochs=0"]) == 2
    assert "'epochs' must be an integer >= 1, got 0" in capsys.readouterr().err


def test_use_deterministic_algorithms_option(fast_config):
    """The option runs under torch's deterministic mode (restored afterwards); on the CPU every op of a LightGCN +
    MixGCF run has a deterministic implementation (torch would warn otherwise) and the results do not change."""
    import warnings

    from recbole_hnlm.errors import ConfigError

    config = {**fast_config, "epochs": 1, "mixgcf_candidates": 16, "sampler": "MixGCF"}
    plain = run_recbole_hnlm(model="LightGCN", config_dict=config)
    assert not torch.are_deterministic_algorithms_enabled()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        strict = run_recbole_hnlm(model="LightGCN", config_dict={**config, "use_deterministic_algorithms": True})
    assert not [str(w.message) for w in caught if "determinis" in str(w.message)]
    assert not torch.are_deterministic_algorithms_enabled()
    assert strict["test_result"] == plain["test_result"]
    with pytest.raises(ConfigError, match="use_deterministic_algorithms"):
        run_recbole_hnlm(model="LightGCN", config_dict={**config, "use_deterministic_algorithms": "yes"})


def test_deterministic_algorithms_scope():
    from recbole_hnlm.determinism import deterministic_algorithms

    cublas_before = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    with deterministic_algorithms(True):
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == (cublas_before or ":4096:8")
        with deterministic_algorithms(False):  # False leaves the caller's mode alone
            assert torch.are_deterministic_algorithms_enabled()
    assert not torch.are_deterministic_algorithms_enabled()
    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == cublas_before
    torch.use_deterministic_algorithms(True)
    try:
        with deterministic_algorithms(True):  # a caller's strict mode stays strict
            assert not torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


def test_run_script_shows_no_recbole_pandas_warnings(fast_config):
    """RecBole's chained ``fillna(inplace=True)`` warns about pandas 3 on every run; pandas 2 (pinned < 3) still fills
    in place, so the run script keeps the console free of the warning."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_recbole_hnlm(model="MF", config_dict={**fast_config, "sampler": "RNS", "epochs": 1,
                                                  "load_col": None, "save_resume_state": False})
    assert not [w for w in caught if "set on a copy" in str(w.message)], [str(w.message)[:80] for w in caught]


def test_runs_flush_subnormal_floats_unless_told_not_to(fast_config):
    """Subnormal weights (HNLMRec's adapter decaying under its L2 term) made CPU epochs 20-30x slower."""
    try:
        torch.set_flush_denormal(False)  # earlier runs in this process may have turned it on
        subnormal = torch.tensor([1e-39], dtype=torch.float32)  # created while subnormals are kept
        run_recbole_hnlm(model="MF", config_dict={**fast_config, "sampler": "RNS", "epochs": 1,
                                                  "flush_denormal": False})
        assert (subnormal * 1.0).item() != 0.0
        run_recbole_hnlm(model="MF", config_dict={**fast_config, "sampler": "RNS", "epochs": 1})
        assert (subnormal * 1.0).item() == 0.0
    finally:
        torch.set_flush_denormal(False)


def test_negative_warmup_trains_with_the_uniform_negative_then_switches(fast_config, caplog):
    """``negative_warmup_epochs=N``: the first N epochs are an RNS run (the same weights, bit for bit), then the
    sampler takes over; a warm-up as long as the run is the RNS run itself."""
    import logging

    from recbole_hnlm.checkpoint import read_trainer_state
    from recbole_hnlm.errors import ConfigError

    caplog.set_level(logging.INFO)
    settings = {**fast_config, "epochs": 3, "state": "INFO"}
    rns = run_recbole_hnlm(model="LightGCN", config_dict={**settings, "sampler": "RNS"})
    whole = run_recbole_hnlm(model="LightGCN", config_dict={**settings, "sampler": "MixGCF",
                                                            "negative_warmup_epochs": 3})
    assert whole["best_valid_result"] == rns["best_valid_result"] and whole["test_result"] == rns["test_result"]
    assert "negative_warmup_epochs=3: from epoch 0 training uses the uniform negative (RNS)" in caplog.text
    assert "lies inside the warm-up" in caplog.text and "never with MixGCF" in caplog.text  # what was tested
    caplog.clear()
    switched = run_recbole_hnlm(model="LightGCN", config_dict={**settings, "sampler": "MixGCF",
                                                               "negative_warmup_epochs": 2})
    assert "from epoch 0 training uses the uniform negative" in caplog.text
    assert "negative_warmup_epochs=2: from epoch 2 training uses the MixGCF sampler" in caplog.text
    assert switched["test_result"] != rns["test_result"]  # epoch 2 trained with MixGCF's negatives
    assert "early stopping and the best checkpoint start afresh with MixGCF" in caplog.text
    assert read_trainer_state(switched["checkpoint"])["epoch"] == 2 and "lies inside the warm-up" not in caplog.text
    with pytest.raises(ConfigError, match="Option 'negative_warmup_epochs' must be an integer >= 0, got -1"):
        run_recbole_hnlm(model="LightGCN", config_dict={**settings, "negative_warmup_epochs": -1})


def test_a_run_logs_the_kernel_experiments_set_in_its_environment(fast_config, caplog, monkeypatch):
    """The CUDA kernels' experiment switches (environment variables, read at every op call) are named in the run's
    log when set, so a result can be traced to the kernels that made it; unset, nothing is logged."""
    import logging

    caplog.set_level(logging.INFO)
    settings = {**fast_config, "epochs": 1, "state": "INFO"}
    for name in ("RECBOLE_HNLM_SPMM_GROUPS", "RECBOLE_HNLM_SPMM_SHORT_CHAINS", "RECBOLE_HNLM_ARGMAX_GROUPS"):
        monkeypatch.delenv(name, raising=False)
    run_recbole_hnlm(model="LightGCN", config_dict=settings)
    assert "CUDA kernel experiments" not in caplog.text
    from recbole_hnlm.ops import WITH_EXT

    # which kernels ran was only a stderr warning when the extension was missing, never in the run's log
    assert ("recbole_hnlm ops on cpu: " + ("C++ kernels of recbole_hnlm._C" if WITH_EXT else "PyTorch references")
            in caplog.text)
    caplog.clear()
    monkeypatch.setenv("RECBOLE_HNLM_ARGMAX_GROUPS", "2")
    monkeypatch.setenv("RECBOLE_HNLM_SPMM_SHORT_CHAINS", "1")
    run_recbole_hnlm(model="LightGCN", config_dict=settings)
    assert ("CUDA kernel experiments set in the environment: RECBOLE_HNLM_SPMM_SHORT_CHAINS=1, "
            "RECBOLE_HNLM_ARGMAX_GROUPS=2") in caplog.text


def test_model_selection_starts_afresh_when_the_sampler_takes_over(fast_config):
    """With a warm-up of N epochs: early stopping never ends the run inside it, and the first validation after it
    forgets the warm-up's best score and early-stopping count (so the tested checkpoint is trained with the sampler,
    and the dip after the switch does not end the run); later validations keep them."""
    from recbole.data import create_dataset, data_preparation

    from recbole_hnlm.config import Config
    from recbole_hnlm.utils import get_model, get_trainer

    config = Config(model="LightGCN", config_dict={**fast_config, "sampler": "DNS", "negative_warmup_epochs": 2})
    init_seed(config["seed"], True)
    train_data, valid_data, _ = data_preparation(config, create_dataset(config))
    model = get_model("LightGCN")(config, train_data._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], "LightGCN")(config, model)
    inf = float("inf")
    try:
        for epoch, expected in ((1, (0.5, 0, True)), (3, (-inf, 0, False)), (4, (0.5, 7, True))):
            trainer.best_valid_score, trainer.cur_step, trainer.best_valid_result = 0.5, 7, {"ndcg@20": 0.5}
            trainer._train_epoch(train_data, epoch)  # epoch 2 trains without a validation (e.g. eval_step 2)
            assert model.warming_up == (epoch < 2)
            trainer._valid_epoch(valid_data)
            got = (trainer.best_valid_score, trainer.cur_step, trainer.best_valid_result is not None)
            assert got == expected, epoch
    finally:
        trainer.close()


def test_a_warm_up_without_a_later_validation_keeps_its_best(fast_config, caplog):
    """eval_step 2, warm-up 2, 3 epochs: no validation after the switch, so the warm-up's best stays the result,
    and the run says the tested checkpoint never trained with the sampler."""
    import logging

    caplog.set_level(logging.WARNING)
    result = run_recbole_hnlm(model="LightGCN", config_dict={**fast_config, "sampler": "MixGCF", "epochs": 3,
                                                             "eval_step": 2, "negative_warmup_epochs": 2})
    assert result["best_valid_result"] is not None and result["best_valid_score"] > 0
    assert "lies inside the warm-up" in caplog.text


def test_help_names_the_defaults(capsys):
    from recbole_hnlm.quick_start import main as cli

    with pytest.raises(SystemExit) as exit_info:
        cli(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: LightGCN, or the config files' model)" in text and "(default: RNS" in text
    assert "(default: ml-100k, or the config files' dataset)" in text
    assert "--key=value" in text


def test_item_count_metrics_are_computed(fast_config):
    """RecBole 1.2.1's collector called .cpu() on the item counts that ItemCoverage, GiniIndex, AveragePopularity
    and TailPercentage need: every run with them failed after its first epoch (RUCAIBox/RecBole#2131)."""
    metrics = ["Recall", "NDCG", "ItemCoverage", "GiniIndex", "AveragePopularity", "TailPercentage"]
    result = run_recbole_hnlm(model="MF", config_dict={**fast_config, "sampler": "DNS", "epochs": 1, "topk": [10],
                                                       "metrics": metrics, "valid_metric": "NDCG@10"})
    test = result["test_result"]
    assert set(test) == {f"{m.lower()}@10" for m in metrics}
    assert 0 < test["itemcoverage@10"] <= 1 and 0 <= test["giniindex@10"] <= 1 and test["averagepopularity@10"] > 1
    evaluated = run_recbole_hnlm(model="MF", config_dict={  # eval_only never collected the item counts
        **fast_config, "sampler": "DNS", "topk": [10], "metrics": metrics, "valid_metric": "NDCG@10",
        "init_from": result["checkpoint"], "eval_only": True})
    assert evaluated["test_result"] == test


def test_each_run_in_one_process_writes_its_own_log_file(fast_config, tmp_path):
    """RecBole's init_logger (logging.basicConfig) adds nothing once the root logger has handlers: the second
    run_recbole_hnlm of a process (a notebook) wrote into the first run's log file and left its own empty. Run in a
    subprocess: pytest's own handlers on the root logger keep RecBole from adding any here."""
    settings = {**fast_config, "epochs": 1, "state": "INFO"}
    script = ("import json, sys\nfrom recbole_hnlm.quick_start import run_recbole_hnlm\n"
              "settings = json.loads(sys.argv[1])\n"
              "for model in ('MF', 'LightGCN'):\n"
              "    result = run_recbole_hnlm(model=model, config_dict=dict(settings, sampler='RNS'), saved=False)\n"
              "    assert result['model'] == model\n")
    process = subprocess.run([sys.executable, "-c", script, json.dumps(settings)], cwd=tmp_path, capture_output=True,
                             text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    logs = {model: list((tmp_path / "log" / model).glob("*.log")) for model in ("MF", "LightGCN")}
    assert all(len(files) == 1 for files in logs.values()), logs
    mf, lightgcn = (files[0].read_text() for files in logs.values())
    assert "test result" in mf and "test result" in lightgcn
    assert mf.count("test result") == 1 and lightgcn.count("test result") == 1


def test_an_evaluated_checkpoints_result_names_its_model(fast_config):
    """eval_only returns evaluate_checkpoint's dict: it names the model too (RecBole's HyperTuning reads it; mutant:
    'model' dropped there, and only the training run's result was tested)."""
    config = {**fast_config, "epochs": 1, "sampler": "RNS"}
    result = run_recbole_hnlm(model="MF", config_dict=config)
    evaluated = run_recbole_hnlm(model="MF", config_dict={**config, "init_from": result["checkpoint"],
                                                          "eval_only": True})
    assert result["model"] == evaluated["model"] == "MF"


def test_a_new_runs_logger_keeps_the_users_handlers_and_closes_the_last_runs(fast_config, tmp_path):
    """Only the handlers RecBole's init_logger added for the previous run are taken off (and closed: a notebook
    looping over models kept every log file open); a handler of the user's own is kept. Mutants: every handler
    marked as the run's; no close. In a subprocess: pytest's handlers on the root logger keep RecBole from adding
    any here."""
    script = """
import json, logging, sys
from recbole_hnlm.config import Config
from recbole_hnlm.quick_start import _init_run_logger

settings = json.loads(sys.argv[1])
root = logging.getLogger()
config = Config(model="MF", dataset=settings["dataset"], config_dict=settings, command_line=False)
_init_run_logger(config)
first = [h for h in root.handlers if isinstance(h, logging.FileHandler)]
assert len(first) == 1, root.handlers
_init_run_logger(config)
assert first[0] not in root.handlers and first[0].stream is None, "the first run's file handler is left open"
for handler in list(root.handlers):
    root.removeHandler(handler)
mine = logging.StreamHandler(sys.stdout)
root.addHandler(mine)
_init_run_logger(config)
_init_run_logger(config)
assert mine in root.handlers, "the user's own handler was removed"
"""
    process = subprocess.run([sys.executable, "-c", script, json.dumps({**fast_config, "state": "INFO"})],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]


def test_identical_runs_started_in_the_same_second_log_to_files_of_their_own(fast_config, tmp_path):
    """RecBole names a log by model, dataset, second and a hash of the config: two identical commands started in the
    same second wrote their lines, two test results included, into one file. The second now writes ``<name>-2.log``.
    In subprocesses: pytest's handlers on the root logger keep RecBole from adding any here."""
    script = """
import json, logging, sys
import recbole.utils.logger
from recbole_hnlm.config import Config
from recbole_hnlm.quick_start import _init_run_logger

recbole.utils.logger.get_local_time = lambda: "Dec-06-2026_12-00-00"  # the same second
settings = json.loads(sys.argv[1])
config = Config(model="MF", dataset=settings["dataset"], config_dict=settings, command_line=False)
_init_run_logger(config)
print(next(h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)), flush=True)
if len(sys.argv) > 2:  # the first run: it goes on while the second starts
    sys.stdin.readline()
"""
    settings = json.dumps({**fast_config, "state": "INFO"})
    first = subprocess.Popen([sys.executable, "-c", script, settings, "wait"], cwd=tmp_path, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        first_log = first.stdout.readline().strip()
        second = subprocess.run([sys.executable, "-c", script, settings], cwd=tmp_path, capture_output=True, text=True,
                                timeout=300)
        assert second.returncode == 0, second.stderr[-3000:]
    finally:
        first.communicate("\n", timeout=60)
    assert first_log.endswith("-Dec-06-2026_12-00-00-" + first_log.rsplit("-", 1)[1])
    assert second.stdout.strip() == first_log[:-len(".log")] + "-2.log"
    # a later run of the same second, the first one ended: its file is free again
    third = subprocess.run([sys.executable, "-c", script, settings], cwd=tmp_path, capture_output=True, text=True,
                           timeout=300)
    assert third.stdout.strip() == first_log


def test_a_config_files_model_and_dataset_are_the_runs_unless_the_command_line_names_them(tmp_path, capsys):
    """A yaml's ``model: MF`` / ``dataset: ...`` lost to the command line's defaults: LightGCN trained on ml-100k."""
    settings = tmp_path / "run.yaml"
    settings.write_text(f"model: Bogus\ndataset: my-data\ndata_path: {tmp_path}\n")
    assert main([f"--config_files={settings}"]) == 2
    assert "Unknown model 'Bogus'" in capsys.readouterr().err  # the file's model
    assert main([f"--config_files={settings}", "--model=LightGCN"]) == 2
    assert os.path.join(str(tmp_path), "my-data", "my-data.inter") in capsys.readouterr().err  # the file's dataset
    assert main([f"--config_files={settings}", "--model=LightGCN", "--dataset=other"]) == 2
    assert os.path.join(str(tmp_path), "other", "other.inter") in capsys.readouterr().err  # the command line wins
    # read as RecBole reads it (python tags: yaml.safe_load refused the file, and LightGCN won again); an empty
    # model is no model (RecBole then failed with an AttributeError traceback)
    # (epochs: 1 caps the fallback when a regression reads neither: LightGCN on the embedded ml-100k)
    settings.write_text(f"model: Bogus\nembedding_size: !!python/int 64\ndataset: my-data\ndata_path: {tmp_path}\n"
                        "epochs: 1\n")
    assert main([f"--config_files={settings}"]) == 2
    assert "Unknown model 'Bogus'" in capsys.readouterr().err
    settings.write_text(f"model:\ndataset: my-data\ndata_path: {tmp_path}\nepochs: 1\n")
    assert main([f"--config_files={settings}"]) == 2
    assert os.path.join(str(tmp_path), "my-data", "my-data.inter") in capsys.readouterr().err


def test_the_last_config_file_with_a_model_names_it_and_bad_model_or_dataset_values_are_refused(tmp_path, capsys):
    """RecBole merges the files in order: the model of the second file is the run's. A model or dataset that is not
    a name ended in an AttributeError traceback from ``model.__name__``."""
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(f"dataset: my-data\ndata_path: {tmp_path}\nepochs: 1\n")
    second.write_text("model: Bogus\n")
    assert main([f"--config_files={first} {second}"]) == 2
    assert "Unknown model 'Bogus'" in capsys.readouterr().err
    for line, expected in [("model: 5", "Option 'model' must be a model name such as LightGCN, got 5 (int)"),
                           ("model: [MF]", "got ['MF'] (list)"),
                           ("dataset: 2018", "Option 'dataset' must be a dataset name (its folder's name), got 2018 "
                                             "(int)")]:
        second.write_text(line + "\n")
        assert main([f"--config_files={first} {second}"]) == 2, line
        assert expected in capsys.readouterr().err, line


@pytest.mark.parametrize("content, expected", [("a: [\n", "is not valid YAML"),
                                               ("- model\n- MF\n", "must hold 'key: value' lines, got a YAML list")])
def test_a_config_file_that_is_not_a_mapping_is_one_error_line(tmp_path, capsys, content, expected):
    settings = tmp_path / "run.yaml"
    settings.write_text(content)
    assert main([f"--config_files={settings}"]) == 2
    errors = capsys.readouterr().err
    assert f"Config file '{settings}' {expected}" in errors and "Traceback" not in errors


def test_without_a_dataset_anywhere_the_run_reads_ml_100k(tmp_path, monkeypatch, caplog):
    """``--help`` says the dataset defaults to ml-100k (RecBole's bundled example, whatever --data_path says)."""
    monkeypatch.chdir(tmp_path)  # RecBole's log/ folder
    assert main(["--model=MF", "--epochs=1", "--state=WARNING", "--show_progress=False", "--use_gpu=False",
                 f"--data_path={tmp_path}", f"--checkpoint_dir={tmp_path / 'saved'}"]) == 0
    assert "ml-100k is RecBole's bundled example" in caplog.text


def test_a_later_config_files_empty_model_replaces_an_earlier_files(tmp_path):
    """RecBole merges the files in order, an empty value included: the run then has no model from the files."""
    from recbole_hnlm.quick_start import _keys_set_in_config_files

    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("model: MF\ndataset: x\n")
    second.write_text("model:\n")
    assert _keys_set_in_config_files([str(first), str(second)]) == {"dataset"}
