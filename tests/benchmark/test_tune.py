"""Hyper-parameter search: RecBole's params-file format, the trials drawn from it, and the resumable search that
ranks them by validation (``recbole_hnlm.benchmark.search_space`` and ``.tune``)."""
import json
import logging
import math
import os

import numpy as np
import pytest

from recbole_hnlm.benchmark.grid import SettingsMismatch
from recbole_hnlm.benchmark.search_space import Param, make_trials, read_params_file, trial_key
from recbole_hnlm.benchmark.tune import confirm_command, main, ranked, run_search
from recbole_hnlm.errors import ConfigError


def _params(tmp_path, text, name="space.hyper"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_params_file_in_recbole_format(tmp_path):
    path = _params(tmp_path, "# learning rates\nlearning_rate choice [0.01, 0.005]\n\nreg_weight loguniform -9,-4\n"
                             "mixgcf_candidates quniform 8,64,8\nahns_beta uniform 0.05,0.5\n"
                             "hnlm_adapter_hidden choice [[512], [2048, 1024]]\n")
    params = read_params_file(path)
    assert [(p.name, p.kind) for p in params] == [("learning_rate", "choice"), ("reg_weight", "loguniform"),
                                                  ("mixgcf_candidates", "quniform"), ("ahns_beta", "uniform"),
                                                  ("hnlm_adapter_hidden", "choice")]
    assert params[0].values == (0.01, 0.005) and params[1].bounds == (-9.0, -4.0)
    assert params[4].values == ([512], [2048, 1024]) and params[2].where == f"{path}:5"


@pytest.mark.parametrize("text, line, match", [
    ("learning_rate choice [0.1]\nlearning_rate choice [0.2]\n", 2, "already set on .*:1"),
    ("learning_rate normal 0,1\n", 1, "unknown type 'normal'"),
    ("learning_rate choice\n", 1, "expected '<name> <type> <values>'"),
    ("x choice [__import__('os').getcwd()]\n", 1, "Python list of literals"),  # RecBole would eval this
    ("x choice 3\n", 1, "non-empty list"),
    ("x choice []\n", 1, "non-empty list"),
    ("x uniform 1\n", 1, "2 comma-separated numbers low,high"),
    ("x uniform 2,1\n", 1, "low < high"),
    ("x loguniform 1,inf\n", 1, "2 comma-separated numbers"),
    ("x quniform 1,9,0\n", 1, "step q > 0"),
    ("x quniform 1,9\n", 1, "3 comma-separated numbers low,high,q"),
    ("x loguniform -1,1000\n", 1, "natural logarithms"),  # exp(1000) overflows
    ("x choice [0.01, 0.02, 0.01]\n", 1, "repeat 0.01"),
    ("x choice [1, 1.0]\n", 1, "repeat 1, 1.0"),  # one value: two trials that train alike
    ("x choice [0, 0.0, True]\n", 1, "repeat 0, 0.0$"),
    ("x choice [{0.01}]\n", 1, "all finite"),  # a set: not JSON
    ("x choice [1e999]\n", 1, "all finite"),
])
def test_malformed_lines_name_file_and_line(tmp_path, text, line, match):
    path = _params(tmp_path, text)
    with pytest.raises(ConfigError, match=match) as error:
        read_params_file(path)
    assert f"{path}:{line}: " in str(error.value)


def test_a_params_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "latin1.hyper"
    path.write_bytes("x choice ['caf\xe9']\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=f"{path}: not UTF-8 text.*save the params file as UTF-8"):
        read_params_file(str(path))


def test_empty_params_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no parameters"):
        read_params_file(_params(tmp_path, "# nothing\n\n"))


def test_exhaustive_search_takes_every_combination_in_file_order():
    a, b = Param("a", "choice", values=(1, 2, 3)), Param("b", "choice", values=("x", "y"))
    trials = make_trials([a, b], "exhaustive")
    assert trials == [{"a": i, "b": s} for i in (1, 2, 3) for s in ("x", "y")]
    assert make_trials([a, b], "exhaustive", max_evals=4) == trials[:4]
    with pytest.raises(ConfigError, match="f:3: exhaustive search takes only 'choice' lines.*--algo=random"):
        make_trials([a, Param("c", "uniform", bounds=(0.0, 1.0), where="f:3")], "exhaustive")


def test_random_search_draws_from_each_distribution():
    params = [Param("u", "uniform", bounds=(0.05, 0.5)), Param("lu", "loguniform", bounds=(-9.0, -4.0)),
              Param("q", "quniform", bounds=(8.0, 64.0, 8.0)), Param("qf", "quniform", bounds=(0.0, 1.0, 0.25)),
              Param("c", "choice", values=(1, 2))]
    trials = make_trials(params, "random", max_evals=200, seed=7)
    assert len(trials) == 200 and len({trial_key(t) for t in trials}) == 200
    assert trials == make_trials(params, "random", max_evals=200, seed=7)  # seeded
    assert trials != make_trials(params, "random", max_evals=200, seed=8)
    u, lu = np.array([t["u"] for t in trials]), np.array([t["lu"] for t in trials])
    assert u.min() >= 0.05 and u.max() <= 0.5 and u.std() > 0.1  # spread over the range, not a constant
    assert lu.min() >= math.exp(-9) * (1 - 1e-3) and lu.max() <= math.exp(-4) * (1 + 1e-3)
    assert abs(np.log(lu).mean() - (-6.5)) < 0.3  # uniform in log space, as hyperopt's hp.loguniform
    assert all(isinstance(t["q"], int) and t["q"] % 8 == 0 and 8 <= t["q"] <= 64 for t in trials)
    assert {t["qf"] for t in trials} == {0.0, 0.25, 0.5, 0.75, 1.0}
    assert {t["c"] for t in trials} == {1, 2}
    assert all(f"{t['u']:.4g}" == str(t["u"]) for t in trials)  # rounded: the name is the value
    with pytest.raises(ConfigError, match="--max_evals"):
        make_trials(params, "random")


def test_random_search_over_a_small_space_stops_at_its_size_and_says_so(caplog):
    trials = make_trials([Param("a", "choice", values=(1, 2)), Param("b", "choice", values=(3, 4))], "random",
                         max_evals=10)
    assert sorted((t["a"], t["b"]) for t in trials) == [(1, 3), (1, 4), (2, 3), (2, 4)]
    trials = make_trials([Param("n", "quniform", bounds=(1.0, 3.0, 1.0))], "random", max_evals=5)
    assert sorted(t["n"] for t in trials) == [1, 2, 3]
    assert "only 3 distinct trials of --max_evals=5" in caplog.text


def test_trial_keys_are_folder_names_and_stay_distinct():
    assert trial_key({"learning_rate": 0.001, "n": 16}) == "learning_rate=0.001,n=16"
    odd = [trial_key({"h": [512]}), trial_key({"h": [512, 256]}), trial_key({"h": (512,)}), trial_key({"p": "a/b"})]
    assert len(set(odd)) == 4 and all("/" not in k and " " not in k for k in odd)
    long = [trial_key({"name": "x" * 200 + str(i)}) for i in range(3)]
    assert len(set(long)) == 3 and all(len(k) <= 120 for k in long)


@pytest.fixture
def search_args(ml_slice, tmp_path):
    data_path, dataset = ml_slice
    params = _params(tmp_path, "learning_rate choice [0.0001, 0.02]\nembedding_size choice [16]\n")
    return dict(dataset=dataset, model="MF", sampler="RNS", seeds=[1, 2], params_file=params,
                out=str(tmp_path / "search"), progress=False,
                config_dict={"data_path": data_path, "epochs": 2, "train_batch_size": 1024,
                             "load_col": {"inter": ["user_id", "item_id"]}})


def test_search_ranks_trials_by_mean_validation_and_resumes(search_args, caplog):
    search = run_search(**search_args)
    out = search_args["out"]
    with open(os.path.join(out, "search.json")) as f:
        assert json.load(f) == json.loads(json.dumps(search))
    assert [t["status"] for t in search["trials"]] == ["finished", "finished"]
    for trial in search["trials"]:  # the trial's means are those of its stored runs
        runs = []
        for seed in (1, 2):
            with open(os.path.join(out, trial["folder"], "runs", f"MF-RNS-seed{seed}.json")) as f:
                runs.append(json.load(f))
        assert [r["settings"]["learning_rate"] for r in runs] == [trial["values"]["learning_rate"]] * 2
        assert all(r["settings"]["embedding_size"] == 16 for r in runs)
        assert trial["valid"]["mean"] == pytest.approx(np.mean([r["best_valid_score"] for r in runs]), abs=1e-12)
        assert trial["test"]["ndcg@20"]["std"] == pytest.approx(
            np.std([r["test_result"]["ndcg@20"] for r in runs], ddof=1), abs=1e-12)
    order = ranked(search["trials"])
    assert order[0]["valid"]["mean"] > order[1]["valid"]["mean"]  # lr 1e-4 barely moves in two epochs
    assert order[0]["values"]["learning_rate"] == 0.02 and search["trials"][1] is order[0]  # ranked, not run order
    with open(os.path.join(out, "search.md")) as f:
        report = f.read()
    assert "**Best:** learning_rate=0.02, embedding_size=16" in report
    rows = [line for line in report.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |")]
    assert rows[0].startswith("| 1 | 0.02 | 16 | ") and rows[1].startswith("| 2 | 0.0001 | 16 | ")

    command = report.split("```\n", 2)[1].strip()
    assert command == confirm_command(search, order[0]["values"])
    assert command.startswith(f"python benchmarks/compare.py --dataset {search_args['dataset']} --models MF --samplers "
                              "RNS --seeds 1 2 3 4 --out ")
    assert "--learning_rate=0.02 --embedding_size=16" in command and "--epochs=2" in command

    run_file = os.path.join(out, order[0]["folder"], "runs", "MF-RNS-seed1.json")
    written = os.stat(run_file).st_mtime_ns
    assert run_search(**search_args)["trials"] == search["trials"]  # a rerun resumes: nothing trains again
    assert os.stat(run_file).st_mtime_ns == written
    with pytest.raises(SettingsMismatch, match="another --out"):
        run_search(**{**search_args, "config_dict": {**search_args["config_dict"], "epochs": 3}})
    with open(run_file, "w") as f:  # a cut result: its cell runs again, said once (not also by the trial checks)
        f.write("{cut")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert run_search(**search_args)["trials"][0]["values"] == search["trials"][0]["values"]
    assert caplog.text.count(f"{run_file} is not a readable result (JSONDecodeError") == 1
    with open(run_file) as f:
        assert json.load(f)["cell"] == "MF-RNS-seed1"


def test_every_trial_is_checked_before_the_first_one_runs(search_args, tmp_path):
    bad_value = _params(tmp_path, "learning_rate choice [0.01, -1]\n", "bad.hyper")
    with pytest.raises(ConfigError, match="trial learning_rate=-1: .*learning_rate"):
        run_search(**{**search_args, "params_file": bad_value})
    typo = _params(tmp_path, "learnin_rate choice [0.01]\n", "typo.hyper")
    with pytest.raises(ConfigError, match=r"typo.hyper:1: 'learnin_rate' is not .*did you mean 'learning_rate'"):
        run_search(**{**search_args, "params_file": typo})
    twice = _params(tmp_path, "epochs choice [1, 2]\n", "twice.hyper")
    with pytest.raises(ConfigError, match="'epochs' is searched here and also set with --epochs"):
        run_search(**{**search_args, "params_file": twice})
    same_name = _params(tmp_path, "learner choice ['x,state=y', 'x']\n"
                                  "state choice ['z', 'y,state=z']\n", "same.hyper")
    with pytest.raises(ConfigError, match="print the same .*learner=x,state=y,state=z"):
        run_search(**{**search_args, "params_file": same_name})
    other_sampler = _params(tmp_path, "learning_rate choice [0.01]\nmixgcf_candidates choice [16, 64]\n", "other.hyper")
    with pytest.raises(ConfigError, match="other.hyper:2: 'mixgcf_candidates' is an option of the MixGCF sampler, "
                                          "which a search with --sampler RNS never reads"):
        run_search(**{**search_args, "params_file": other_sampler})
    for name, why in (("valid_metric", "one validation metric"), ("split_seed", "one validation split"),
                      ("resume_from", "resumes by itself"), ("user_inter_num_interval", "filters the interactions"),
                      ("item_inter_num_interval", "filters the interactions"), ("val_interval", "filters the"),
                      ("metrics", "one set of metrics"), ("topk", "one set of metrics")):
        fixed = _params(tmp_path, f"{name} choice ['a', 'b']\n", "fixed.hyper")
        with pytest.raises(ConfigError, match=f"fixed.hyper:1: '{name}' cannot be searched: .*{why}"):
            run_search(**{**search_args, "params_file": fixed})
    cell_key = _params(tmp_path, "seed choice [1, 2]\n", "seed.hyper")
    with pytest.raises(ConfigError, match="'seed' is set by the search itself: use --seeds"):
        run_search(**{**search_args, "params_file": cell_key})
    assert not os.path.exists(search_args["out"])  # nothing ran, nothing was written


def test_searches_whose_trials_would_not_differ_or_rank_are_refused_up_front(search_args, tmp_path):
    """A backbone option MF never reads (n_layers), RecBole's require_pow (the plugin's backbones square the norms)
    and a trial without validation (eval_step=0, ranked -inf) used to run, warned about or not."""
    for line, match in (("n_layers choice [1, 2]", "never.hyper:1: 'n_layers' is an option of the LightGCN"),
                        ("require_pow choice [True, False]", "never.hyper:1: 'require_pow' is an option of RecBole's"),
                        ("eval_step choice [0, 1]", "never.hyper:1: eval_step=0 never validates")):
        params = _params(tmp_path, f"{line}\n", "never.hyper")
        with pytest.raises(ConfigError, match=match):
            run_search(**{**search_args, "params_file": params})
    with pytest.raises(ConfigError, match="Unknown model 'XX'") as error:
        run_search(**{**search_args, "model": "XX"})
    assert "trial" not in str(error.value)  # the command's error, not one trial's
    assert not os.path.exists(search_args["out"])


def test_an_out_that_is_a_file_or_holds_a_corrupt_record_is_named(search_args, tmp_path, capsys):
    a = search_args
    argv = ["--model", "MF", "--params_file", a["params_file"], "--no-progress", "--out"]
    (tmp_path / "f").write_text("")
    assert main(argv + [str(tmp_path / "f")]) == 2
    assert f"error: --out {tmp_path / 'f'}: a file is there" in capsys.readouterr().err
    (tmp_path / "o").mkdir()
    for record in ('{"dataset": "x\x01', '{"trials": 5}', '{"trials": [{"folder": "z", "values": [1]}]}'):
        (tmp_path / "o" / "search.json").write_text(record)
        assert main(argv + [str(tmp_path / "o")]) == 2
        assert f"error: {tmp_path / 'o' / 'search.json'}: not a search record of this tool" in capsys.readouterr().err


def test_an_option_some_trials_read_is_searched_with_a_warning(search_args, tmp_path, caplog):
    """hidden_size_list is NGCF's: the trials whose HNLMRec teacher is NGCF read it, so the line is not refused."""
    params = _params(tmp_path, "hnlm_teacher_model choice ['LightGCN', 'NGCF']\nhidden_size_list choice [[8], [16]]\n",
                     "teacher.hyper")

    def not_trained(*args, **kwargs):
        raise RuntimeError("the checks passed")

    search = run_search(**{**search_args, "sampler": "HNLMRec", "params_file": params, "seeds": [1]},
                        cell_runner=not_trained)
    assert [t["status"] for t in search["trials"]] == ["failed"] * 4
    assert "teacher.hyper:2: 'hidden_size_list' is read by some trials only: 2 of 4 never read it" in caplog.text


def test_a_changed_space_says_which_earlier_trials_its_report_leaves_out(search_args, tmp_path, caplog):
    fast = {**search_args, "seeds": [1], "config_dict": {**search_args["config_dict"], "epochs": 1}}
    run_search(**fast)
    smaller = _params(tmp_path, "learning_rate choice [0.02]\nembedding_size choice [16]\n", "smaller.hyper")
    search = run_search(**{**fast, "params_file": smaller})
    assert [t["values"]["learning_rate"] for t in search["trials"]] == [0.02]
    assert "holds 1 trial(s) of an earlier search that this search's report leaves out" in caplog.text
    assert "learning_rate=0.0001" in caplog.text


def test_report_before_any_trial_finished_has_one_valid_column():
    from recbole_hnlm.benchmark.tune import search_report

    search = {"model": "MF", "sampler": "RNS", "dataset": "d", "algo": "exhaustive", "seeds": [1],
              "space": [{"name": "learning_rate"}],
              "trials": [{"status": "failed", "values": {"learning_rate": 0.1}, "errors": []}]}
    header = next(line for line in search_report(search).splitlines() if line.startswith("| rank |"))
    assert header.startswith("| rank | learning_rate | valid | test ") and "valid valid" not in header


def test_hnlmrec_searches_may_tune_its_mixgcf_teacher(tmp_path):
    """HNLMRec's fine-tuned variant trains a MixGCF teacher with the run's settings: MixGCF's options change it."""
    from recbole_hnlm.benchmark.tune import _check_params

    params = read_params_file(_params(tmp_path, "mixgcf_candidates choice [16, 64]\n"))
    _check_params(params, {}, "HNLMRec")
    _check_params(params, {}, "mixgcf")
    with pytest.raises(ConfigError, match="option of the MixGCF sampler, which a search with --sampler DNS"):
        _check_params(params, {}, "dns")


def test_command_line(search_args, tmp_path, capsys):
    a = search_args
    argv = ["--model", "MF", "--sampler", "RNS", "--dataset", a["dataset"], "--params_file", a["params_file"],
            "--seeds", "1", "--epochs", "1", "--out", a["out"], "--no-progress",
            f"--data_path={a['config_dict']['data_path']}", "--load_col={'inter': ['user_id', 'item_id']}"]
    assert main(argv) == 0
    assert "best: learning_rate=" in capsys.readouterr().out
    assert main(argv + ["--algo", "random"]) == 2
    assert "error: argument --max_evals: random search needs the number of trials" in capsys.readouterr().err
    assert main(argv + ["--seed=3"]) == 2
    assert "use --seeds instead" in capsys.readouterr().err
    assert main([arg if arg != a["params_file"] else "/nonexistent.hyper" for arg in argv]) == 2
    assert "error: argument --params_file: /nonexistent.hyper not found" in capsys.readouterr().err


@pytest.mark.parametrize("name, sampler", [("backbone", "RNS"), ("dns", "DNS"), ("mixgcf", "MixGCF"), ("ahns", "AHNS"),
                                           ("hnlmrec", "HNLMRec")])
def test_shipped_params_files_name_real_options_with_valid_values(name, sampler, tmp_path):
    from recbole_hnlm.benchmark.runner import Cell, check_cell
    from recbole_hnlm.benchmark.tune import _check_params

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    params = read_params_file(os.path.join(repo, "benchmarks", "hyper", f"{name}.hyper"))
    _check_params(params, {}, sampler)
    discrete = all(p.kind == "choice" for p in params)
    trials = make_trials(params, "exhaustive" if discrete else "random", None if discrete else 8)
    assert len(trials) >= 2
    for trial in trials:  # Config's type and range checks accept every value
        check_cell(Cell("LightGCN", sampler, 1), "ml-100k", str(tmp_path), config_dict=trial)


def test_an_interrupted_rerun_keeps_the_finished_trials_in_the_report(search_args, tmp_path):
    run_search(**search_args)
    wider = _params(tmp_path, "learning_rate choice [0.005, 0.0001, 0.02]\nembedding_size choice [16]\n", "w.hyper")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_search(**{**search_args, "params_file": wider}, cell_runner=interrupted)
    with open(os.path.join(search_args["out"], "search.json")) as f:
        stored = json.load(f)
    assert [(t["values"]["learning_rate"], t["status"]) for t in stored["trials"]] == [
        (0.005, "pending"), (0.0001, "finished"), (0.02, "finished")]
    assert ranked(stored["trials"])[0]["values"]["learning_rate"] == 0.02


def test_a_failed_trial_is_reported_and_left_out_of_the_ranking(search_args, capsys):
    from recbole_hnlm.benchmark.runner import run_cell

    def fails_for_small_rates(cell, dataset, out, config_dict=None, **kwargs):
        if config_dict["learning_rate"] < 0.001:
            raise RuntimeError("diverged")
        return run_cell(cell, dataset, out, config_dict=config_dict, **kwargs)

    search = run_search(**search_args, cell_runner=fails_for_small_rates)
    failed, finished = search["trials"]
    assert failed["status"] == "failed" and len(failed["errors"]) == 2 and "valid" not in failed
    assert [t["values"]["learning_rate"] for t in ranked(search["trials"])] == [0.02]
    with open(os.path.join(search_args["out"], "search.md")) as f:
        report = f.read()
    assert "Not finished:" in report and "learning_rate=0.0001, embedding_size=16: failed (see " in report


def test_a_shared_option_the_searched_pair_never_reads_is_warned_about_once(search_args, caplog):
    def not_trained(cell, *args, **kwargs):
        raise RuntimeError("not trained in this test")

    run_search(**{**search_args, "config_dict": {**search_args["config_dict"], "n_layers": 2}}, cell_runner=not_trained)
    warnings = [r.getMessage() for r in caplog.records if "is ignored" in r.getMessage()]
    assert warnings == ["Option 'n_layers' is ignored: it is an option of the LightGCN/SGL model, which a MF run with "
                        "the RNS sampler never reads."]  # once for the two trials


def test_ranking_follows_valid_metric_bigger():
    def trial(score, bigger):
        return {"status": "finished", "valid": {"mean": score}, "valid_metric_bigger": bigger}

    assert [t["valid"]["mean"] for t in ranked([trial(0.2, True), trial(0.5, True), trial(0.1, True)])] == [
        0.5, 0.2, 0.1]
    assert [t["valid"]["mean"] for t in ranked([trial(0.2, False), trial(0.5, False), trial(0.1, False)])] == [
        0.1, 0.2, 0.5]
    nan = float("nan")
    assert [t["valid"]["mean"] for t in ranked([trial(nan, True), trial(0.1, True), trial(0.3, True)])][:2] == [
        0.3, 0.1]


def test_an_out_folder_holds_one_search(search_args):
    run_search(**{**search_args, "seeds": [1]})
    with pytest.raises(SettingsMismatch, match="search.json: a search of sampler='RNS', now sampler='DNS'"):
        run_search(**{**search_args, "seeds": [1], "sampler": "DNS"})


def test_the_confirm_command_reads_back_as_the_search_settings(tmp_path):
    import shlex

    from recbole_hnlm.benchmark.__main__ import parse_args

    search = {"dataset": "ml-100k", "model": "MF", "sampler": "DNS", "seeds": [7], "out": str(tmp_path / "my out"),
              "settings": {"epochs": 50, "load_col": {"inter": ["user_id", "item_id"]}, "dns_variant": "shi_sum",
                           "stopping_step": 10, "flag": "True"}}
    (tmp_path / "a.yaml").write_text("epochs: 3\n")
    search["settings"]["config_files"] = [str(tmp_path / "a.yaml")]
    values = {"learning_rate": 0.005, "hnlm_adapter_hidden": [512, 64]}
    args = parse_args(shlex.split(confirm_command(search, values))[2:])
    assert (args.dataset, args.models, args.samplers, args.seeds) == ("ml-100k", ["MF"], ["DNS"], [7, 8, 9])
    assert args.out == str(tmp_path / "my out" / "confirm") and args.config_files == [str(tmp_path / "a.yaml")]
    expected = {k: v for k, v in search["settings"].items() if k != "config_files"}
    assert args.config == {**expected, **values}  # "True" stays a string, lists and dicts stay themselves


def test_the_best_line_says_when_it_is_a_tie_or_the_search_is_unfinished():
    """search.md named the first of two trials tied on validation 'Best' without a word (table.md flags ties), and
    after Ctrl-C it said 'Best' of the trials run so far as if the search were over."""
    from recbole_hnlm.benchmark.tune import search_report

    def trial(lr, valid, status="finished"):
        return {"values": {"learning_rate": lr}, "folder": f"trials/lr{lr}", "status": status, "errors": [],
                "valid": {"mean": valid, "std": None}, "valid_metric": "NDCG@20", "valid_metric_bigger": True,
                "test": {}, "best_epochs": [1]}

    search = {"model": "MF", "sampler": "AHNS", "dataset": "ml-100k", "algo": "random", "seeds": [2020],
              "settings": {}, "out": "out", "space": [{"name": "learning_rate"}]}
    tied = search_report(dict(search, trials=[trial(0.01, 0.0197), trial(0.02, 0.0197), trial(0.03, 0.01)]))
    assert ("**Best:** learning_rate=0.01 (validation NDCG@20 0.0197, test NDCG@20 -; `trials/lr0.01`); tied on "
            "validation with 1 other trial(s) (learning_rate=0.02), the first run kept") in tied
    unfinished = search_report(dict(search, trials=[trial(0.01, 0.02), trial(0.02, 0.0, status="pending")]))
    assert "**Best so far:** learning_rate=0.01" in unfinished and ". 1 of 2 trials finished." in unfinished
    plain = search_report(dict(search, trials=[trial(0.01, 0.02), trial(0.02, 0.01)]))
    assert "**Best:** learning_rate=0.01" in plain and "tied" not in plain and "so far" not in plain


def test_a_new_search_among_other_files_says_so(search_args, caplog):
    """A search into a grid's results folder (or any folder of other files) wrote its report among them silently;
    a search's own folder is no such case."""
    out = search_args["out"]
    os.makedirs(os.path.join(out, "runs"))
    with open(os.path.join(out, "grid.json"), "w") as handle:
        handle.write("{}")

    def not_trained(*args, **kwargs):
        raise RuntimeError("the checks passed")

    run_search(**{**search_args, "seeds": [1]}, cell_runner=not_trained)
    assert f"--out {out} holds files that are no output of a search (grid.json, runs)" in caplog.text
    caplog.clear()
    run_search(**{**search_args, "seeds": [1]}, cell_runner=not_trained)  # the search's own record is there now
    assert "no output of a search" not in caplog.text
