"""load_data_and_model: a finished run rebuilt from its checkpoint alone (settings, data, split, weights)."""
import json

import logging
import os

import numpy as np
import pytest
import torch
from recbole.utils.case_study import full_sort_topk
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from recbole_hnlm.errors import ConfigError
from recbole_hnlm.load import load_data_and_model
from recbole_hnlm.quick_start import run_recbole_hnlm
from recbole_hnlm.utils import get_trainer


@pytest.fixture
def dns_run(fast_config, tmp_path, monkeypatch):
    """A LightGCN+DNS run of two epochs on the split of seed 2020, with non-default options: one that changes the
    weights' shapes (embedding_size), one that does not (n_layers, given as a NumPy integer as scripts often do),
    and the training machine's GPUs (RecBole exports them to CUDA_VISIBLE_DEVICES: restored after the test)."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return run_recbole_hnlm(model="LightGCN", config_dict={**fast_config, "sampler": "DNS", "seed": 7,
                                                           "split_seed": 2020, "embedding_size": 16,
                                                           "n_layers": np.int64(1), "gpu_id": (0, 1),
                                                           "checkpoint_dir": str(tmp_path / "run")})


def _evaluate(config, model, data):
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    try:
        return trainer.evaluate(data, load_best_model=False)
    finally:
        trainer.close()


def test_a_run_is_rebuilt_from_its_checkpoint(dns_run, tmp_path, caplog):
    elsewhere = {"checkpoint_dir": str(tmp_path / "eval")}  # the evaluating trainer's own (empty) folder
    with caplog.at_level(logging.WARNING):
        config, model, dataset, train_data, valid_data, test_data = load_data_and_model(dns_run["checkpoint"],
                                                                                        elsewhere)
    assert "load_data_and_model" not in caplog.text  # every option as the run had it
    assert config["model"] == "LightGCN" and config["sampler"] == "DNS"  # the run's, from the checkpoint
    assert config["embedding_size"] == 16 and config["seed"] == 7 and config["split_seed"] == 2020
    assert config["n_layers"] == 1 and model.n_layers == 1
    assert config["gpu_id"] not in ((0, 1), [0, 1], "[0, 1]")  # the training machine's devices are not reused
    assert os.environ["CUDA_VISIBLE_DEVICES"] == str(config["gpu_id"])
    assert config["init_from"] is None and config["eval_only"] is False  # not a warm start, not an evaluation
    assert not model.training
    stored = {k[len("model."):]: v for k, v in load_file(dns_run["checkpoint"]).items() if k.startswith("model.")}
    own = model.state_dict()
    assert stored.keys() <= own.keys() and all(torch.equal(own[k], stored[k]) for k in stored)
    # the same data, split and weights: the run's own validation and test numbers
    assert _evaluate(config, model, test_data) == dns_run["test_result"]
    assert _evaluate(config, model, valid_data) == dns_run["best_valid_result"]
    # RecBole's case-study helpers work on what it returns
    uid = dataset.token2id(dataset.uid_field, ["1", "2"])
    scores, iids = full_sort_topk(uid, model, test_data, k=10, device=config["device"])
    assert iids.shape == (2, 10) and bool((scores[:, :-1] >= scores[:, 1:]).all())
    assert len(dataset.id2token(dataset.iid_field, iids.cpu())[0]) == 10


def test_overrides_and_refusals(dns_run, fast_config, tmp_path):
    with pytest.raises(ConfigError, match="load_data_and_model: .*missing.safetensors does not exist"):
        load_data_and_model(str(tmp_path / "missing.safetensors"))
    not_a_checkpoint = tmp_path / "x.safetensors"
    not_a_checkpoint.write_text("hello")
    with pytest.raises(ConfigError, match="is not a recbole_hnlm checkpoint"):
        load_data_and_model(str(not_a_checkpoint))
    with pytest.raises(ConfigError, match=r"load_data_and_model\(.*\.safetensors\): .*split of seed 2020.*"
                                          r"config_dict"):  # another split would test on training pairs
        load_data_and_model(dns_run["checkpoint"], {"split_seed": 3})
    with pytest.raises(ConfigError, match="do not fit this LightGCN"):
        load_data_and_model(dns_run["checkpoint"], {"embedding_size": 8})
    assert load_data_and_model(dns_run["checkpoint"], {"sampler": "MixGCF"})[0]["sampler"] == "MixGCF"
    # no epoch is selected here: other cut-offs and metrics need not hold the run's validation metric
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger().addHandler(handler)
    try:
        assert load_data_and_model(dns_run["checkpoint"], {"topk": [5], "metrics": ["Hit"]})[0]["topk"] == [5]
    finally:
        logging.getLogger().removeHandler(handler)
    assert any("valid_metric' = 'NDCG@20' is not computed" in r.getMessage() and "fine for evaluating" in r.getMessage()
               for r in records)
    bpr = run_recbole_hnlm(model="BPR", config_dict={**fast_config, "sampler": "RNS", "epochs": 1,
                                                     "checkpoint_dir": str(tmp_path / "bpr")})
    with pytest.raises(ConfigError, match=r"load_data_and_model\(.*\): BPR cannot be loaded; only the plugin's"):
        load_data_and_model(bpr["checkpoint"])
    for key, value in (("dataset", "ml-100k"), ("dataset", "ML-SLICE"), ("model", "MF")):  # were ignored
        with pytest.raises(ConfigError, match=rf"load_data_and_model\(.*\): {key}={value} was given, but the "
                                              rf"checkpoint holds {key}="):
            load_data_and_model(dns_run["checkpoint"], {key: value})
    assert load_data_and_model(dns_run["checkpoint"], {"model": "lightgcn", "dataset": "ml-slice"})[0]["model"] == \
        "LightGCN"  # the checkpoint's own, in any case
    # a checkpoint written before run settings were stored: the dataset options come from config_dict
    with safe_open(dns_run["checkpoint"], framework="pt") as f:
        meta = json.loads(f.metadata()["recbole_hnlm"])
    del meta["trainer"]["run_settings"]
    older = str(tmp_path / "older.safetensors")
    save_file(load_file(dns_run["checkpoint"]), older, metadata={"recbole_hnlm": json.dumps(meta)})
    with pytest.raises(FileNotFoundError, match="Dataset 'ml-slice' not found"):  # not in the default data_path
        load_data_and_model(older)
    options = {k: fast_config[k] for k in ("data_path", "load_col")}
    caplog_records = []
    handler = logging.Handler()
    handler.emit = caplog_records.append
    logging.getLogger().addHandler(handler)
    try:  # n_layers is missing and does not change shapes: the rebuilt model differs, and a warning says so
        config, model, *_, test_data = load_data_and_model(older, {**options, "split_seed": 2020, "seed": 7,
                                                                   "embedding_size": 16,
                                                                   "checkpoint_dir": str(tmp_path / "eval")})
    finally:
        logging.getLogger().removeHandler(handler)
    warned = " ".join(record.getMessage() for record in caplog_records)
    assert "n_layers: 1 -> 3" in warned and "embedding_size" not in warned and "split_seed" not in warned
    assert warned.count("n_layers") == 1  # once, not by the options' check and again by the backbone's
    assert "load_data_and_model: config_dict; recommend: --key=value" in warned  # both ways to pass them
    config, model, *_, test_data = load_data_and_model(older, {**options, "split_seed": 2020, "embedding_size": 16,
                                                               "n_layers": 1, "checkpoint_dir": str(tmp_path / "e")})
    assert _evaluate(config, model, test_data) == dns_run["test_result"]


def test_changed_validation_or_test_pairs_are_named(fast_config, tmp_path, caplog):
    """Only the ids and the training pairs were compared: a checkpoint evaluated on an edited .test file reported
    other metrics than its run logged, without a word."""
    folder = tmp_path / "data" / "presplit"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    splits = {"train": [], "valid": [], "test": []}
    for user in range(40):
        items = rng.choice(60, 10, replace=False)
        splits["train"] += [(user, item) for item in items[:8]]
        splits["valid"].append((user, items[8]))
        splits["test"].append((user, items[9]))

    def write(name, pairs):
        (folder / f"presplit.{name}.inter").write_text(
            "user_id:token\titem_id:token\n" + "".join(f"u{u}\ti{i}\n" for u, i in pairs))

    for name, pairs in splits.items():
        write(name, pairs)
    settings = {**fast_config, "dataset": "presplit", "data_path": str(tmp_path / "data"), "epochs": 1,
                "benchmark_filename": ["train", "valid", "test"], "load_col": {"inter": ["user_id", "item_id"]},
                "checkpoint_dir": str(tmp_path / "run")}
    run = run_recbole_hnlm(model="MF", config_dict={**settings, "sampler": "RNS"})
    with caplog.at_level(logging.WARNING):
        load_data_and_model(run["checkpoint"])
    assert "differ" not in caplog.text
    splits["valid"][0], splits["test"][0] = splits["test"][0], splits["valid"][0]  # same ids, same training pairs
    write("valid", splits["valid"])
    write("test", splits["test"])
    with caplog.at_level(logging.WARNING):
        load_data_and_model(run["checkpoint"])
    assert "the validation or test pairs differ from those the run of" in caplog.text


def test_a_resume_state_is_loaded_with_a_word_about_its_epoch(fast_config, tmp_path, caplog):
    """A resume state holds the last epoch trained; with eval_step=2 over three epochs the run tested epoch 1's
    weights, and loading the resume state ranked with epoch 2's without a word."""
    run = run_recbole_hnlm(model="MF", config_dict={**fast_config, "sampler": "RNS", "epochs": 3, "eval_step": 2,
                                                    "checkpoint_dir": str(tmp_path / "run")})
    resume = run["checkpoint"].replace(".safetensors", ".resume.safetensors")
    elsewhere = {"checkpoint_dir": str(tmp_path / "eval")}
    with caplog.at_level(logging.WARNING):
        config, model, *_, test_data = load_data_and_model(run["checkpoint"], elsewhere)
    assert "resume state" not in caplog.text
    assert _evaluate(config, model, test_data) == run["test_result"]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_data_and_model(resume, elsewhere)
    assert (f"{resume} is a resume state: it holds the weights of epoch 2, the last one trained, not those of the "
            f"best epoch 1 that the run tested; give {run['checkpoint']} for the best model") in caplog.text


def test_a_checkpoint_replaced_while_it_is_read_is_read_again(dns_run, tmp_path, monkeypatch, caplog):
    """A run replaces its resume state after every epoch: the settings and checks came from one epoch's file and the
    weights from a later one's. A replaced file is now read again from the start, and refused after three tries."""
    import shutil

    import recbole_hnlm.load as load

    checkpoint, copy = dns_run["checkpoint"], str(tmp_path / "copy.safetensors")
    shutil.copyfile(checkpoint, copy)
    real, reads = load.read_dataset, []

    def read_while_a_run_writes(config, replace=1):
        reads.append(1)
        if len(reads) <= replace:  # the run writes its next version meanwhile (atomically: a new file)
            shutil.copyfile(copy, checkpoint + ".new")
            os.replace(checkpoint + ".new", checkpoint)
        return real(config)

    monkeypatch.setattr(load, "read_dataset", read_while_a_run_writes)
    elsewhere = {"checkpoint_dir": str(tmp_path / "eval")}
    with caplog.at_level(logging.INFO):
        config, model, *_ = load_data_and_model(checkpoint, elsewhere)
    assert len(reads) == 2 and "was replaced while it was read (a run is writing it); reading it again" in caplog.text
    assert config["embedding_size"] == 16 and not model.training
    reads.clear()
    monkeypatch.setattr(load, "read_dataset", lambda config: read_while_a_run_writes(config, replace=99))
    with pytest.raises(ConfigError, match="the file was replaced while it was read, 3 times in a row"):
        load_data_and_model(checkpoint, elsewhere)
    assert len(reads) == 3


def test_a_checkpoint_rewritten_in_place_counts_as_replaced(tmp_path):
    """``cp`` over a checkpoint keeps its inode: its size or time changes."""
    from recbole_hnlm.load import _file_version

    path = tmp_path / "c.safetensors"
    path.write_bytes(b"a" * 10)
    before = _file_version(str(path))
    with open(path, "r+b") as handle:
        handle.write(b"b" * 12)
    os.utime(path, ns=(1, 2))
    assert _file_version(str(path)) != before


def test_the_runs_checkpoint_dir_is_not_reused_and_options_given_are_not_warned_about(dns_run, tmp_path, caplog):
    """Kills L02 (checkpoint_dir reused: a trainer of the loaded config wrote into the run's own folder) and L12
    (options the caller gave in config_dict warned about as changed since the run)."""
    run_dir = os.path.dirname(dns_run["checkpoint"])
    with caplog.at_level(logging.WARNING):
        config, *_ = load_data_and_model(dns_run["checkpoint"], {"topk": [5], "metrics": ["Hit"]})
    assert os.path.abspath(config["checkpoint_dir"]) != os.path.abspath(run_dir)
    assert "trained with other values" not in caplog.text


def test_a_checkpoint_rewritten_with_the_same_size_or_time_counts_as_replaced(tmp_path):
    """Kills L08 (the time left out: a rewrite of the same size, e.g. the next epoch's resume state, went unseen)
    and L09 (the size left out: a rewrite within the file system's time resolution went unseen)."""
    from recbole_hnlm.load import _file_version

    path = tmp_path / "c.safetensors"
    path.write_bytes(b"a" * 10)
    os.utime(path, ns=(1, 1_000_000_000))
    before = _file_version(str(path))
    with open(path, "r+b") as handle:
        handle.write(b"b" * 10)
    os.utime(path, ns=(1, 2_000_000_000))
    assert _file_version(str(path)) != before  # same size, another time
    before = _file_version(str(path))
    with open(path, "ab") as handle:
        handle.write(b"c")
    os.utime(path, ns=(1, 2_000_000_000))
    assert _file_version(str(path)) != before  # same time, another size
