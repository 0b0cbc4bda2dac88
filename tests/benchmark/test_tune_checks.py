"""Checks of the hyper-parameter search that a mutation audit of ``search_space.py`` and ``tune.py`` found untested:
the params-file edge cases, trial folder names, the per-trial summary, the record and report of ``out``, and the
command line's defaults, messages and exit status."""
import functools
import json
import math
import os

import numpy as np
import pytest

from recbole_hnlm.benchmark import tune
from recbole_hnlm.benchmark.grid import SettingsMismatch
from recbole_hnlm.benchmark.runner import Cell
from recbole_hnlm.benchmark.search_space import Param, make_trials, read_params_file, trial_key
from recbole_hnlm.errors import ConfigError


def _params(tmp_path, text, name="space.hyper"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# --- search_space.py -------------------------------------------------------------------------------------------------

def test_uniform_draws_keep_four_significant_digits():
    """The module promises 4 significant digits (a trial's name is the value it ran with), not fewer."""
    trials = make_trials([Param("u", "uniform", bounds=(0.05, 0.5))], "random", max_evals=50, seed=3)
    values = [t["u"] for t in trials]
    assert all(float(f"{v:.4g}") == v for v in values)
    assert any(float(f"{v:.3g}") != v for v in values)  # some need the fourth digit


def test_choice_values_may_be_a_tuple_and_true_is_not_one(tmp_path):
    """A tuple is a list of literals too (RecBole's eval reads it as hyperopt's choice options); True and 1 are two
    values (a flag and a number), only 1 and 1.0 are one."""
    (param,) = read_params_file(_params(tmp_path, "x choice (1, 2)\n"))
    assert param.values == (1, 2)
    (param,) = read_params_file(_params(tmp_path, "x choice [1, True]\n"))
    assert param.values == (1, True)
    assert len({trial_key(t) for t in make_trials([param])}) == 2


def test_bounds_at_their_limits(tmp_path):
    """uniform/loguniform need low < high, quniform low <= high (one value); loguniform takes +-700 itself."""
    with pytest.raises(ConfigError, match=r"space.hyper:1: 'x' needs low < high, got '1,1'"):
        read_params_file(_params(tmp_path, "x uniform 1,1\n"))
    with pytest.raises(ConfigError, match=r"'x' needs low < high"):
        read_params_file(_params(tmp_path, "x loguniform -3,-3\n"))
    (param,) = read_params_file(_params(tmp_path, "n quniform 4,4,4\n"))
    assert [t["n"] for t in make_trials([param], "random", max_evals=1)] == [4]
    (param,) = read_params_file(_params(tmp_path, "x loguniform -700,700\n"))
    assert param.bounds == (-700.0, 700.0)


def test_an_unknown_algorithm_is_refused():
    with pytest.raises(ConfigError, match="unknown search algorithm 'grid'; choose from exhaustive, random"):
        make_trials([Param("a", "choice", values=(1, 2))], "grid", max_evals=2)


def test_a_random_search_that_draws_every_trial_does_not_warn(caplog):
    make_trials([Param("u", "uniform", bounds=(0.0, 1.0))], "random", max_evals=5)
    make_trials([Param("a", "choice", values=(1, 2))], "random", max_evals=2)
    assert "distinct trials" not in caplog.text


def test_trial_keys_keep_negative_numbers_and_tell_replaced_characters_apart():
    assert trial_key({"reg_weight": -1e-05, "ahns_p": -2}) == "reg_weight=-1e-05,ahns_p=-2"
    slash, underscore, colon = trial_key({"p": "a/b"}), trial_key({"p": "a_b"}), trial_key({"p": "a:b"})
    assert underscore == "p=a_b" and len({slash, underscore, colon}) == 3
    exactly = {"n": "x" * 118}  # "n=" + 118 characters: 120, the longest plain key
    assert trial_key(exactly) == "n=" + "x" * 118
    assert trial_key({"n": "x" * 119}) != "n=" + "x" * 119 and len(trial_key({"n": "x" * 119})) == 120


# --- tune.py: pure parts -----------------------------------------------------------------------------------------

def _result(seed, valid, ndcg):
    return {"valid_metric": "NDCG@20", "valid_metric_bigger": True, "best_valid_score": valid, "best_epoch": seed,
            "test_result": {"recall@10": ndcg, "recall@20": ndcg, "ndcg@10": ndcg, "ndcg@20": ndcg}}


def test_trial_summary_means_over_every_seed_and_one_seed_has_no_std():
    seeds = [1, 2, 3]
    scores = [0.1, 0.2, 0.6]  # mean 0.3, median 0.2
    results = {Cell("MF", "RNS", s).key: _result(s, v, v / 2) for s, v in zip(seeds, scores)}
    entry = tune.trial_summary({"learning_rate": 0.01}, "trials/x", seeds, "MF", "RNS", {"results": results})
    assert entry["status"] == "finished" and entry["best_epochs"] == seeds
    assert entry["valid"]["mean"] == pytest.approx(np.mean(scores))
    assert entry["valid"]["std"] == pytest.approx(np.std(scores, ddof=1))
    assert entry["test"]["ndcg@20"]["mean"] == pytest.approx(np.mean(scores) / 2)
    one = tune.trial_summary({"learning_rate": 0.01}, "trials/x", [1], "MF", "RNS", {"results": results})
    assert one["valid"] == {"mean": 0.1, "std": None}
    assert "±" not in tune._cell(one["valid"])


def test_a_trial_with_some_seeds_run_is_pending_not_ranked():
    """After Ctrl-C in a trial's second seed, the trial has one result of two: no mean over one seed in the ranking."""
    results = {Cell("MF", "RNS", 1).key: _result(1, 0.9, 0.5)}
    entry = tune.trial_summary({"learning_rate": 0.01}, "trials/x", [1, 2], "MF", "RNS", {"results": results})
    assert entry["status"] == "pending" and "valid" not in entry
    assert tune.ranked([entry]) == []


def test_the_dropped_trials_warning_names_the_earlier_trials_only():
    stored = {"trials": [{"folder": "trials/a=1", "values": {"a": 1}}, {"folder": "trials/a=2", "values": {"a": 2}}]}
    warned = []
    tune._warn_about_dropped_trials(stored, ["trials/a=2", "trials/a=3"], "out", warned.append)
    assert warned == ["out holds 1 trial(s) of an earlier search that this search's report leaves out (their folders "
                      "stay): a=1"]
    warned.clear()
    tune._warn_about_dropped_trials(stored, ["trials/a=1", "trials/a=2"], "out", warned.append)
    tune._warn_about_dropped_trials(None, ["trials/a=1"], "out", warned.append)
    assert warned == []


def test_report_escapes_a_pipe_in_a_value():
    search = {"model": "MF", "sampler": "RNS", "dataset": "d", "algo": "exhaustive", "seeds": [1], "settings": {},
              "out": "o", "space": [{"name": "tag"}],
              "trials": [{"values": {"tag": "a|b"}, "folder": "trials/t", "status": "finished", "errors": [],
                          "valid": {"mean": 0.1, "std": None}, "valid_metric": "NDCG@20",
                          "valid_metric_bigger": True, "test": {}, "best_epochs": [1]}]}
    row = next(line for line in tune.search_report(search).splitlines() if line.startswith("| 1 |"))
    assert row.startswith("| 1 | a\\|b | 0.1000 |")
    assert row.count(" | ") == len(search["space"]) + 1 + len(tune.METRICS) + 1  # one cell per column


def _record(tmp_path, content):
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    (out / "search.json").write_text(content if isinstance(content, str) else json.dumps(content))
    return str(out)


def test_an_out_folder_holds_one_dataset_and_backbone(tmp_path):
    search = {"dataset": "ml-100k", "model": "MF", "sampler": "RNS"}
    out = _record(tmp_path, {**search, "trials": []})
    assert tune._check_same_search(out, search) == {**search, "trials": []}
    assert tune._check_same_search(out, {**search, "model": "mf"}) is not None  # earlier versions kept the case
    with pytest.raises(SettingsMismatch, match="a search of model='MF', now model='LightGCN'"):
        tune._check_same_search(out, {**search, "model": "LightGCN"})
    with pytest.raises(SettingsMismatch, match="a search of dataset='ml-100k', now dataset='ML-100k'"):
        tune._check_same_search(out, {**search, "dataset": "ML-100k"})  # dataset names are file names


def test_a_search_record_that_is_no_object_is_named(tmp_path, capsys):
    out = _record(tmp_path, "[1, 2]")
    with pytest.raises(SettingsMismatch, match="search.json: not a search record of this tool .not a JSON object"):
        tune._check_same_search(out, {"dataset": "d", "model": "MF", "sampler": "RNS"})
    params = _params(tmp_path, "learning_rate choice [0.01]\n")
    assert tune.main(["--model", "MF", "--params_file", params, "--no-progress", "--out", out]) == 2
    assert "not a search record of this tool" in capsys.readouterr().err


def test_a_folder_of_an_earlier_search_is_no_other_files(tmp_path):
    """The message for a corrupt search.json says to delete it: the trials/ it leaves are the search's own."""
    out = tmp_path / "out"
    (out / "trials" / "learning_rate=0.01").mkdir(parents=True)
    warned = []
    tune._warn_about_other_files(str(out), warned.append)
    assert warned == []
    (out / "grid.json").write_text("{}")
    tune._warn_about_other_files(str(out), warned.append)
    assert len(warned) == 1 and "(grid.json)" in warned[0]


def test_command_line_defaults_and_a_params_folder(tmp_path, capsys):
    params = _params(tmp_path, "learning_rate choice [0.01]\n")
    args = tune._parse_args(["--model", "MF", "--sampler", "DNS", "--params_file", params])
    assert args.out == "results/tune-ml-100k-MF-DNS" and args.seeds == [2020] and args.algo == "exhaustive"
    assert tune.main(["--model", "MF", "--params_file", str(tmp_path)]) == 2
    assert f"error: argument --params_file: {tmp_path} is a folder; give the params file in it" in \
        capsys.readouterr().err


# --- tune.py: searches (the slice of ml-100k; cells that do not train where the test needs no training) -------------

@pytest.fixture
def search_args(ml_slice, tmp_path):
    data_path, dataset = ml_slice
    params = _params(tmp_path, "learning_rate choice [0.0001, 0.02]\n")
    return dict(dataset=dataset, model="MF", sampler="RNS", seeds=[1], params_file=params,
                out=str(tmp_path / "search"), progress=False,
                config_dict={"data_path": data_path, "epochs": 1, "train_batch_size": 1024,
                             "load_col": {"inter": ["user_id", "item_id"]}})


def _not_trained(*args, **kwargs):
    raise RuntimeError("not trained in this test")


def test_a_random_search_draws_with_its_search_seed(search_args, tmp_path):
    params = _params(tmp_path, "learning_rate loguniform -9,-4\n", "random.hyper")
    searches = [tune.run_search(**{**search_args, "params_file": params, "out": str(tmp_path / f"s{seed}")},
                                algo="random", max_evals=3, search_seed=seed, cell_runner=_not_trained)
                for seed in (5, 6)]
    for search, seed in zip(searches, (5, 6)):
        assert [t["values"] for t in search["trials"]] == make_trials(read_params_file(params), "random", 3, seed)
        assert search["search_seed"] == seed
    assert searches[0]["trials"] != searches[1]["trials"]


def test_the_command_names_the_best_trial_and_exits_1_when_a_trial_failed(search_args, tmp_path, monkeypatch, capsys):
    a = search_args
    argv = ["--model", "MF", "--dataset", a["dataset"], "--params_file", a["params_file"], "--seeds", "1",
            "--epochs", "2", "--out", a["out"], "--no-progress", f"--data_path={a['config_dict']['data_path']}",
            "--load_col={'inter': ['user_id', 'item_id']}", "--train_batch_size=1024"]
    assert tune.main(argv) == 0
    with open(os.path.join(a["out"], "search.json")) as f:
        trials = json.load(f)["trials"]
    best = tune.ranked(trials)[0]
    assert best is not trials[0]  # lr 1e-4 barely moves in two epochs: the best trial is not the first one run
    assert f"best: {tune._values(best['values'])} (valid NDCG@20 {tune._cell(best['valid'])}" in capsys.readouterr().out

    failing = _params(tmp_path, "learning_rate choice [0.005]\n", "failing.hyper")  # a new trial, in the same out
    monkeypatch.setattr(tune, "run_search", functools.partial(tune.run_search, cell_runner=_not_trained))
    status = tune.main([failing if arg == a["params_file"] else arg for arg in argv])
    assert status == 1
    err = capsys.readouterr().err
    assert "error: 1 trial(s) failed; see " in err and "MF-RNS-seed1.error.txt" in err


# --- findings of the audit, fixed --------------------------------------------------------------------------------

def test_eval_step_0_in_a_config_file_is_refused_up_front(search_args, tmp_path):
    (tmp_path / "no_valid.yaml").write_text("eval_step: 0\n")
    with pytest.raises(ConfigError, match="eval_step=0 never validates"):
        tune.run_search(**search_args, config_file_list=[str(tmp_path / "no_valid.yaml")], cell_runner=_not_trained)


def test_a_tie_on_the_mean_is_flagged_whatever_the_stds():
    def trial(lr, mean, std):
        return {"values": {"learning_rate": lr}, "folder": f"trials/lr{lr}", "status": "finished", "errors": [],
                "valid": {"mean": mean, "std": std}, "valid_metric": "NDCG@20", "valid_metric_bigger": True,
                "test": {}, "best_epochs": [1, 1]}

    search = {"model": "MF", "sampler": "RNS", "dataset": "d", "algo": "exhaustive", "seeds": [1, 2], "settings": {},
              "out": "o", "space": [{"name": "learning_rate"}],
              "trials": [trial(0.01, 0.15302, 0.02), trial(0.02, 0.15301, 0.001)]}
    assert "tied on validation with 1 other trial(s) (learning_rate=0.02)" in tune.search_report(search)


def test_rounded_draws_stay_within_their_bounds_and_on_their_step():
    """Rounding a draw to 4 significant digits could leave the bounds (1.23451..1.23459 all rounded to 1.235) and
    the step (a multiple of 0.3 near 1234.5 became 1234 or 1235)."""
    rng = np.random.default_rng(0)
    above = Param("ahns_beta", "uniform", bounds=(1.23451, 1.23459))
    below = Param("ahns_beta", "uniform", bounds=(1.23441, 1.23449))
    logs = Param("reg_weight", "loguniform", bounds=(math.log(1.23451), math.log(1.23459)))
    for _ in range(50):
        assert 1.23451 <= above.draw(rng) <= 1.23459 and 1.23441 <= below.draw(rng) <= 1.23449
        assert 1.23451 * (1 - 1e-12) <= logs.draw(rng) <= 1.23459 * (1 + 1e-12)
    assert {above.draw(rng) for _ in range(5)} == {1.23459} and {below.draw(rng) for _ in range(5)} == {1.23441}
    step = Param("learning_rate", "quniform", bounds=(1000.0, 2000.0, 0.3))
    for value in (step.draw(rng) for _ in range(200)):
        assert isinstance(value, float) and 999.9 <= value <= 2000.1
        assert abs(value / 0.3 - round(value / 0.3)) < 1e-9 and value == round(value, 1)
    small = Param("learning_rate", "quniform", bounds=(0.0001, 0.001, 0.0001))
    assert {small.draw(rng) for _ in range(200)} <= {round(k * 1e-4, 4) for k in range(1, 11)}
    whole = Param("mixgcf_candidates", "quniform", bounds=(16, 64, 16))
    assert {whole.draw(rng) for _ in range(50)} <= {16, 32, 48, 64} and type(whole.draw(rng)) is int
