"""Warm start (``--init_from``): a new run starts from another run's backbone weights, any sampler; checkpoints of
other models, datasets, ids or shapes stop the run with one line naming the option."""
import json
import logging
import os
import re

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from recbole_hnlm.checkpoint import read_trainer_state
from recbole_hnlm.errors import ConfigError
from recbole_hnlm.files import file_sha256
from recbole_hnlm.model.abstract import SampledRecommender
from recbole_hnlm.quick_start import main, run_recbole_hnlm
from recbole_hnlm.warm_start import id_map_digest, train_pairs_digest


def _weights(path):
    return {k: v for k, v in load_file(path).items() if k.startswith("model.")}


def _with_trainer_state(path, out, drop=(), **changes):
    """A copy of checkpoint ``path`` at ``out`` whose stored trainer state has ``changes`` applied and ``drop``
    removed."""
    with safe_open(path, framework="pt") as f:
        meta = json.loads(f.metadata()["recbole_hnlm"])
    meta["trainer"].update(changes)
    for key in drop:
        del meta["trainer"][key]
    save_file(load_file(path), str(out), metadata={"recbole_hnlm": json.dumps(meta)})
    return str(out)


@pytest.fixture
def rns_run(fast_config, tmp_path):
    """An MF+RNS run of two epochs: the checkpoint the warm starts take."""
    return run_recbole_hnlm(model="MF", config_dict={**fast_config, "sampler": "RNS",
                                                     "checkpoint_dir": str(tmp_path / "rns")})


@pytest.fixture
def first_epoch_weights(monkeypatch):
    """The weights each run has when its first training epoch starts (recorded by the trainer's epoch hook)."""
    seen = []
    hook = SampledRecommender.on_epoch_start

    def on_epoch_start(self, epoch_idx):
        if epoch_idx == 0:
            seen.append({f"model.{k}": v.detach().clone() for k, v in self.state_dict().items()})
        return hook(self, epoch_idx)

    monkeypatch.setattr(SampledRecommender, "on_epoch_start", on_epoch_start)
    return seen


@pytest.mark.parametrize("source", ["checkpoint", "resume_state"])
def test_a_new_run_starts_from_the_checkpoint_weights(fast_config, rns_run, tmp_path, source, first_epoch_weights):
    settings = {**fast_config, "sampler": "DNS", "epochs": 1}
    warm = run_recbole_hnlm(model="MF", config_dict={**settings, "init_from": rns_run[source],
                                                     "checkpoint_dir": str(tmp_path / "warm")})
    cold = run_recbole_hnlm(model="MF", config_dict={**settings, "checkpoint_dir": str(tmp_path / "cold")})
    (warm_start, cold_start), stored = first_epoch_weights, _weights(rns_run[source])
    assert stored.keys() == warm_start.keys() and stored
    assert all(torch.equal(stored[k], warm_start[k]) for k in stored)
    assert not torch.equal(stored["model.user_embedding.weight"], cold_start["model.user_embedding.weight"])
    assert warm["test_result"] != cold["test_result"]

    state = read_trainer_state(warm["checkpoint"])
    assert state["sampler"] == "DNS" and state["epoch"] == 0  # a new run: epoch 0, not the source's epoch 1
    steps = {name: load_file(path)["optimizer.0.step"] for name, path in (("warm", warm["checkpoint"]),
                                                                          ("source", rns_run["resume_state"]))}
    assert 2 * steps["warm"] == steps["source"] > 0  # a fresh optimizer: one epoch of Adam steps, not three
    assert state["init_from"] == os.path.abspath(rns_run[source])
    source_state = read_trainer_state(rns_run["checkpoint"])
    assert state["id_map"] == source_state["id_map"] and state["train_split"] == source_state["train_split"]


def test_warm_started_training_goes_on_and_resumes_with_its_origin(fast_config, rns_run, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    settings = {**fast_config, "sampler": "MixGCF", "init_from": rns_run["checkpoint"], "state": "INFO"}
    warm = run_recbole_hnlm(model="MF", config_dict={**settings, "checkpoint_dir": str(tmp_path / "a")})
    assert f"init_from: backbone weights of {rns_run['checkpoint']} (MF+RNS, epoch" in caplog.text
    assert not torch.equal(_weights(rns_run["checkpoint"])["model.item_embedding.weight"],
                           _weights(warm["resume_state"])["model.item_embedding.weight"])
    caplog.clear()  # "the same options" (init_from included) and --resume_from continue the warm-started run
    run_recbole_hnlm(model="MF", config_dict={**settings, "epochs": 3, "checkpoint_dir": str(tmp_path / "a"),
                                              "resume_from": warm["resume_state"]})
    assert "options changed" not in caplog.text and "init_from: backbone weights" not in caplog.text
    assert read_trainer_state(warm["resume_state"])["init_from"] == os.path.abspath(rns_run["checkpoint"])
    assert read_trainer_state(warm["resume_state"])["epoch"] == 2
    with pytest.raises(ConfigError, match=r"init_from: resume_from continues .*, a run started from "
                                          rf"{re.escape(os.path.abspath(rns_run['checkpoint']))}; its weights come "
                                          "from the resume state. Drop --init_from."):  # another init_from
        run_recbole_hnlm(model="MF", config_dict={**settings, "init_from": rns_run["resume_state"],
                                                  "resume_from": warm["resume_state"]})


def test_unusable_checkpoints_name_the_option(fast_config, ml_slice, rns_run, tmp_path):
    settings = {**fast_config, "sampler": "DNS", "epochs": 1}
    with pytest.raises(ConfigError, match="init_from: .*nosuch.safetensors does not exist"):
        run_recbole_hnlm(model="MF", config_dict={**settings, "init_from": str(tmp_path / "nosuch.safetensors")})
    with pytest.raises(ConfigError, match="is a folder, not a file"):
        run_recbole_hnlm(model="MF", config_dict={**settings, "init_from": str(tmp_path)})
    foreign = str(tmp_path / "foreign.safetensors")
    save_file({"w": torch.zeros(2)}, foreign)
    with pytest.raises(ConfigError, match="init_from: .*foreign.safetensors is not a recbole_hnlm checkpoint"):
        run_recbole_hnlm(model="MF", config_dict={**settings, "init_from": foreign})
    with pytest.raises(ConfigError, match="holds model=MF, this run has model=LightGCN"):
        run_recbole_hnlm(model="LightGCN", config_dict={**settings, "init_from": rns_run["checkpoint"]})
    other_data = _with_trainer_state(rns_run["checkpoint"], tmp_path / "other.safetensors", dataset="yelp2018")
    with pytest.raises(ConfigError, match="holds dataset=yelp2018, this run has dataset=ml-slice"):
        run_recbole_hnlm(model="MF", config_dict={**settings, "init_from": other_data})
    with pytest.raises(ConfigError, match="init_from: BPR cannot be warm-started"):
        run_recbole_hnlm(model="BPR", config_dict={**settings, "sampler": "RNS", "init_from": rns_run["checkpoint"]})
    with pytest.raises(ConfigError, match="init_from: resume_from continues .*, a run started from random weights; "
                                          "its weights come from the resume state. Drop --init_from."):
        run_recbole_hnlm(model="MF", config_dict={**settings, "sampler": "RNS", "init_from": rns_run["checkpoint"],
                                                  "resume_from": rns_run["resume_state"]})
    with pytest.raises(ConfigError, match=re.escape("item_embedding.weight is (1266, 64) there and (1266, 32) here")):
        run_recbole_hnlm(model="MF", config_dict={**settings, "embedding_size": 32,
                                                  "init_from": rns_run["checkpoint"]})
    with pytest.raises(ConfigError, match="init_from: the weights in .* do not fit this NGCF .*w1.0.bias is missing"):
        ngcf = _with_trainer_state(rns_run["checkpoint"], tmp_path / "as-ngcf.safetensors", model="NGCF")
        run_recbole_hnlm(model="NGCF", config_dict={**settings, "init_from": ngcf})


def test_other_users_or_items_are_refused_even_when_the_counts_agree(fast_config, rns_run, tmp_path):
    settings = {**fast_config, "sampler": "DNS", "epochs": 1}
    shuffled = _with_trainer_state(rns_run["checkpoint"], tmp_path / "ids.safetensors", id_map="0" * 64)
    assert _weights(shuffled).keys() == _weights(rns_run["checkpoint"]).keys()  # same shapes, other ids
    with pytest.raises(ConfigError, match="init_from: .*ids.safetensors was trained on other users or items"):
        run_recbole_hnlm(model="MF", config_dict={**settings, "init_from": shuffled})
    with pytest.raises(ConfigError, match="init_from: .* was trained on other users or items"):  # real re-filtering
        run_recbole_hnlm(model="MF", config_dict={**settings, "user_inter_num_interval": "[60,inf)",
                                                  "init_from": rns_run["checkpoint"]})
    with pytest.raises(ConfigError, match="init_from: .* was trained on the split of seed 2020, this run splits with "
                                          "seed 7; .* Add --split_seed=2020."):  # known before any data is read
        run_recbole_hnlm(model="MF", config_dict={**settings, "split_seed": 7, "init_from": rns_run["checkpoint"]})
    resume = _with_trainer_state(rns_run["resume_state"], tmp_path / "ids.resume.safetensors", id_map="0" * 64)
    with pytest.raises(ConfigError, match="resume_from: .* was trained on other users or items"):
        run_recbole_hnlm(model="MF", config_dict={**fast_config, "sampler": "RNS", "resume_from": resume})


def test_a_checkpoint_without_digests_is_taken_with_a_warning(fast_config, rns_run, tmp_path, caplog):
    old = _with_trainer_state(rns_run["checkpoint"], tmp_path / "old.safetensors", drop=("id_map", "train_split"))
    run_recbole_hnlm(model="MF", config_dict={**fast_config, "sampler": "DNS", "epochs": 1, "init_from": old})
    assert "old.safetensors predates the dataset and split digests, so only the weights' shapes are checked" in \
        caplog.text  # a warning: shown at the harness' WARNING console level too


def test_another_split_is_refused_before_the_sampler_prepares(fast_config, rns_run, monkeypatch):
    from recbole_hnlm.sampler.dns import DNS

    prepared = []
    prepare = DNS.prepare.__func__
    monkeypatch.setattr(DNS, "prepare", classmethod(lambda cls, *args: prepared.append(1) or prepare(cls, *args)))
    other_ratios = {"split": {"RS": [0.7, 0.15, 0.15]}, "order": "RO", "group_by": "user", "mode": "full"}
    settings = {**fast_config, "sampler": "DNS", "epochs": 1, "eval_args": other_ratios}  # same split seed
    with pytest.raises(ConfigError, match="init_from: .* was trained on another training split of ml-slice"):
        run_recbole_hnlm(model="MF", config_dict={**settings, "init_from": rns_run["checkpoint"]})
    assert not prepared  # HNLMRec's LLM stage would have run here
    run_recbole_hnlm(model="MF", config_dict=settings)
    assert prepared  # the spy itself works
    with pytest.raises(ConfigError, match="resume_from: .* was trained on another training split"):
        run_recbole_hnlm(model="MF", config_dict={**fast_config, "sampler": "RNS", "eval_args": other_ratios,
                                                  "resume_from": rns_run["resume_state"]})


def test_changed_interactions_are_named_as_a_cause(fast_config, ml_slice, rns_run, tmp_path):
    """One interaction fewer in the .inter file (every user and item still present, so the same ids): the refusal
    names the changed interactions first, not only split options the user did not touch."""
    data_path, name = ml_slice
    lines = open(os.path.join(data_path, name, f"{name}.inter")).read().splitlines()
    items = [line.split("\t")[1] for line in lines[1:]]
    drop = next(i for i in range(len(lines) - 1, 0, -1) if items.count(items[i - 1]) > 1)
    os.makedirs(tmp_path / "edited" / name)
    with open(tmp_path / "edited" / name / f"{name}.inter", "w") as f:
        f.write("\n".join(lines[:drop] + lines[drop + 1:]) + "\n")
    settings = {**fast_config, "sampler": "DNS", "epochs": 1, "data_path": str(tmp_path / "edited")}
    with pytest.raises(ConfigError, match="init_from: .* was trained on another training split of ml-slice: the "
                                          "dataset's interactions changed"):
        run_recbole_hnlm(model="MF", config_dict={**settings, "init_from": rns_run["checkpoint"]})


def test_train_pairs_digest_is_a_digest_of_the_pair_set():
    users, items = np.array([1, 1, 2, 3]), np.array([5, 6, 5, 1])
    digest = train_pairs_digest(users, items)
    order = np.array([3, 0, 2, 1])
    assert train_pairs_digest(users[order], items[order]) == digest  # order does not matter
    assert train_pairs_digest(np.append(users, 1), np.append(items, 5)) == digest  # a repeated row adds nothing
    assert train_pairs_digest(users[:3], items[:3]) != digest  # a pair fewer
    assert train_pairs_digest(np.array([1, 1, 2, 3]), np.array([5, 6, 6, 1])) != digest  # one pair moved
    assert train_pairs_digest(np.array([1, 1]), np.array([10, 1])) != train_pairs_digest(np.array([1, 1]),
                                                                                          np.array([11, 0]))


def test_id_map_digest_follows_the_token_order(fast_config):
    from recbole.data import create_dataset

    from recbole_hnlm.config import Config

    dataset = create_dataset(Config(model="MF", config_dict={**fast_config, "sampler": "RNS"}))
    digest = id_map_digest(dataset)
    assert digest == id_map_digest(dataset) and len(digest) == 64
    tokens = dataset.field2id_token[dataset.iid_field]
    tokens[[1, 2]] = tokens[[2, 1]]  # two items swap ids
    assert id_map_digest(dataset) != digest


def test_init_from_option_on_the_command_line(fast_config, rns_run, capsys):
    with pytest.raises(ConfigError, match=re.escape("Option 'init_from' must be the path of a checkpoint "
                                                    "(.safetensors) file, got 3")):
        run_recbole_hnlm(model="MF", config_dict={**fast_config, "sampler": "RNS", "init_from": 3})
    argv = ["--model=MF", "--sampler=AHNS", f"--dataset={fast_config['dataset']}",
            f"--data_path={fast_config['data_path']}", "--epochs=1", "--state=WARNING", "--show_progress=False",
            f"--checkpoint_dir={fast_config['checkpoint_dir']}", "--load_col={'inter': ['user_id', 'item_id']}"]
    assert main(argv + [f"--init_from={rns_run['checkpoint']}"]) == 0
    assert main(argv + ["--init_from=/nonexistent.safetensors"]) == 2
    assert "error: init_from: /nonexistent.safetensors does not exist" in capsys.readouterr().err


def test_a_comparison_grid_starts_every_cell_from_the_checkpoint(ml_slice, rns_run, tmp_path, capsys):
    from recbole_hnlm.benchmark.__main__ import main as compare_main

    data_path, dataset = ml_slice
    out = str(tmp_path / "grid")
    argv = ["--dataset", dataset, "--samplers", "DNS", "MixGCF", "--seeds", "1", "--epochs", "1", "--out", out,
            f"--data_path={data_path}", f"--init_from={rns_run['checkpoint']}", "--no-progress", "--no-plots",
            "--split_seed=2020"]  # the split of rns_run (seed 2020); the cells' seed 1 would split otherwise
    assert compare_main(argv + ["--models", "LightGCN"]) == 2  # checked before any cell runs
    assert "init_from: " in capsys.readouterr().err and not os.path.exists(os.path.join(out, "runs"))
    no_split_seed = [arg for arg in argv if arg != "--split_seed=2020"]
    assert compare_main(no_split_seed + ["--models", "MF"]) == 2  # each seed would split on its own
    assert "Add --split_seed=2020" in capsys.readouterr().err and not os.path.exists(os.path.join(out, "runs"))
    assert compare_main(argv + ["--models", "MF"]) == 0
    for sampler in ("DNS", "MixGCF"):
        with open(os.path.join(out, "logs", f"MF-{sampler}-seed1.log")) as f:
            assert f"init_from: backbone weights of {rns_run['checkpoint']} (MF+RNS" in f.read()
    with open(os.path.join(out, "grid.json")) as f:
        grid = json.load(f)
    sha256 = file_sha256(rns_run["checkpoint"])
    assert grid["settings"]["init_from"] == rns_run["checkpoint"] and grid["init_from_sha256"] == sha256
    result_file = os.path.join(out, "runs", "MF-DNS-seed1.json")
    with open(result_file) as f:
        assert json.load(f)["init_from_sha256"] == sha256
    written = os.stat(result_file).st_mtime_ns
    assert compare_main(argv + ["--models", "MF"]) == 0  # same file, same content: both cells are finished
    assert os.stat(result_file).st_mtime_ns == written
    # the source is replaced under the same name (e.g. its run was redone): the finished cells no longer match
    _with_trainer_state(rns_run["checkpoint"], rns_run["checkpoint"], epoch=7)
    assert compare_main(argv + ["--models", "MF"]) == 2
    message = capsys.readouterr().err
    assert "the source checkpoint changed" in message and sha256[:12] in message


def test_eval_only_reproduces_the_runs_own_test_result(fast_config, rns_run, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    out = tmp_path / "eval"
    settings = {**fast_config, "init_from": rns_run["checkpoint"], "eval_only": True, "checkpoint_dir": str(out),
                "state": "INFO"}
    result = run_recbole_hnlm(model="MF", config_dict={**settings, "sampler": "RNS"})
    assert result["test_result"] == rns_run["test_result"]  # the same weights on the same split: the same numbers
    assert result["best_valid_result"] == rns_run["best_valid_result"]
    assert result["best_valid_score"] == rns_run["best_valid_score"] and result["checkpoint"] == rns_run["checkpoint"]
    assert "eval_only: weights of" in caplog.text and "no training" in caplog.text
    assert not out.exists()  # no checkpoint, no resume state, no name marker, and no empty folder
    out.mkdir()  # a folder that was there stays
    run_recbole_hnlm(model="MF", config_dict={**settings, "sampler": "RNS"})
    assert out.is_dir() and os.listdir(out) == []
    # another sampler is not prepared (HNLMRec has no store here), and other cut-offs and metrics are computed
    other = run_recbole_hnlm(model="MF", config_dict={**settings, "sampler": "HNLMRec", "topk": [5, 20],
                                                      "metrics": ["Recall", "NDCG", "MRR"]})
    assert set(other["test_result"]) == {f"{m}@{k}" for m in ("recall", "ndcg", "mrr") for k in (5, 20)}
    assert other["test_result"]["ndcg@20"] == rns_run["test_result"]["ndcg@20"]
    assert "the sampler (HNLMRec) plays no part in evaluation" in caplog.text
    # no epoch is selected, so the validation metric need not be among them (it was refused as "not computed")
    hits = run_recbole_hnlm(model="MF", config_dict={**settings, "sampler": "RNS", "topk": [5], "metrics": ["Hit"]})
    assert set(hits["test_result"]) == {"hit@5"} and hits["best_valid_score"] is None


@pytest.mark.parametrize("option", ["init_from", "resume_from"])
def test_weights_of_other_shapes_are_refused_before_the_llm_stage(fast_config, rns_run, monkeypatch, option):
    """docs/usage.md says the checkpoint checks run before HNLMRec's LLM stage: the shapes were compared only once
    the model was built, after the teacher, the fine-tuning and the embedding (minutes to hours)."""
    import recbole_hnlm.llm.teacher_training as teacher_training
    from recbole_hnlm.sampler import RNS

    def llm_stage(*args, **kwargs):
        raise AssertionError("the sampler's preparation ran before the refusal")

    monkeypatch.setattr(teacher_training, "ensure_teacher", llm_stage)  # HNLMRec's first step
    monkeypatch.setattr(RNS, "prepare", classmethod(llm_stage))  # a resume keeps its sampler: RNS here
    path = rns_run["checkpoint" if option == "init_from" else "resume_state"]
    sampler = "HNLMRec" if option == "init_from" else "RNS"
    with pytest.raises(ConfigError, match=rf"{option}: the weights in .* do not fit this MF \(item_embedding.weight "
                                          r"is \(\d+, 64\) there and \(\d+, 32\) here\)"):
        run_recbole_hnlm(model="MF", config_dict={**fast_config, "sampler": sampler, "embedding_size": 32,
                                                  "epochs": 3, option: path})


def test_eval_only_needs_a_usable_checkpoint(fast_config, rns_run, tmp_path):
    settings = {**fast_config, "sampler": "RNS", "eval_only": True}
    with pytest.raises(ConfigError, match="eval_only: evaluates the checkpoint given with --init_from=<file>"):
        run_recbole_hnlm(model="MF", config_dict=settings)
    with pytest.raises(ConfigError, match="without --resume_from"):
        run_recbole_hnlm(model="MF", config_dict={**settings, "init_from": rns_run["checkpoint"],
                                                  "resume_from": rns_run["resume_state"]})
    with pytest.raises(ConfigError, match="init_from: the weights in .* do not fit this MF .*embedding"):
        run_recbole_hnlm(model="MF", config_dict={**settings, "init_from": rns_run["checkpoint"],
                                                  "embedding_size": 8})
    with pytest.raises(ConfigError, match="Add --split_seed=2020"):  # another split would test on training pairs
        run_recbole_hnlm(model="MF", config_dict={**settings, "init_from": rns_run["checkpoint"], "seed": 7})
    with pytest.raises(ConfigError, match="Option 'eval_only' must be True or False"):
        run_recbole_hnlm(model="MF", config_dict={**settings, "eval_only": "yes"})


def test_a_grid_refuses_eval_only(ml_slice, rns_run, tmp_path, capsys):
    from recbole_hnlm.benchmark.__main__ import main as compare_main

    data_path, dataset = ml_slice
    assert compare_main(["--dataset", dataset, "--models", "MF", "--samplers", "RNS", "--seeds", "1", "--out",
                         str(tmp_path / "g"), f"--data_path={data_path}", f"--init_from={rns_run['checkpoint']}",
                         "--eval_only=True", "--no-progress"]) == 2
    assert "eval_only evaluates one checkpoint with the run script" in capsys.readouterr().err


def test_eval_only_warns_when_ranking_options_differ(fast_config, tmp_path, caplog):
    """The same LightGCN weights evaluated with another n_layers rank differently (0.19 vs 0.28 NDCG@20 in a
    helper's run), silently; now a warning names the option and both values."""
    trained = run_recbole_hnlm(model="LightGCN", config_dict={**fast_config, "sampler": "RNS", "epochs": 1,
                                                              "n_layers": 2, "checkpoint_dir": str(tmp_path / "lgn")})
    settings = {**fast_config, "sampler": "RNS", "init_from": trained["checkpoint"], "eval_only": True,
                "checkpoint_dir": str(tmp_path / "eval")}
    caplog.set_level(logging.WARNING)
    same = run_recbole_hnlm(model="LightGCN", config_dict={**settings, "n_layers": 2})
    assert same["test_result"] == trained["test_result"]
    assert "trained with other LightGCN options" not in caplog.text
    other = run_recbole_hnlm(model="LightGCN", config_dict={**settings, "n_layers": 1})
    assert other["test_result"] != trained["test_result"]
    assert "trained with other LightGCN options than this run's (n_layers: 2 -> 1)" in caplog.text


def test_ranking_options_of_checkpoints_older_than_the_option(fast_config):
    """NGCF's self_loop came later: a checkpoint without it was trained with the self term, so evaluating it with
    self_loop False is a change (it was silent), and resuming it with the default lists nothing."""
    from recbole_hnlm.config import Config
    from recbole_hnlm.warm_start import backbone_option_changes

    older = {"options": {"hidden_size_list": [64, 64, 64]}}
    config = Config(model="NGCF", config_dict={**fast_config, "sampler": "RNS", "self_loop": False})
    assert backbone_option_changes(config, older) == ["self_loop: True -> False"]
    config = Config(model="NGCF", config_dict={**fast_config, "sampler": "RNS"})
    assert backbone_option_changes(config, older) == []


def test_the_shape_check_leaves_the_random_streams_and_the_sampler_as_they_were(fast_config, rns_run):
    """check_checkpoint_shapes builds the backbone once (with RNS) before the sampler's preparation: the random
    streams and the run's sampler are put back, so the run that follows is the same as without the check."""
    import random

    from recbole.data import create_dataset, data_preparation

    from recbole_hnlm.config import Config
    from recbole_hnlm.warm_start import check_checkpoint_shapes

    config = Config(model="MF", config_dict={**fast_config, "sampler": "DNS", "init_from": rns_run["checkpoint"]})
    train_data = data_preparation(config, create_dataset(config))[0]

    def draws(check):
        random.seed(3), np.random.seed(3), torch.manual_seed(3)
        if check:
            check_checkpoint_shapes(config, train_data._dataset)
        return random.random(), np.random.rand(2).tolist(), torch.rand(2).tolist()

    assert draws(check=True) == draws(check=False)
    assert config["sampler"] == "DNS"
