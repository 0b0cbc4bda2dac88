"""A grid folder's rows average runs of one configuration, and its report never loses a table: checks of
``grid.run_grid`` and ``report`` with a constructed cell runner (no training), plus the up-front cell checks."""
import json
import os

import pytest

from recbole_hnlm.benchmark.__main__ import main as cli_main
from recbole_hnlm.benchmark.grid import SettingsMismatch, canonical_names, run_grid
from recbole_hnlm.benchmark.report import compare, write_report
from recbole_hnlm.benchmark.runner import METRICS, Cell, check_cell
from recbole_hnlm.benchmark.search_space import read_params_file
from recbole_hnlm.errors import ConfigError
from recbole_hnlm.files import file_sha256


class FakeRunner:
    """A cell runner returning a result shaped like ``run_cell``'s: NDCG and Recall ``base + seed / 100`` (plus
    ``bonus[sampler]``), on the split ``split(cell)``; it records the cells it ran."""

    def __init__(self, bonus=None, split=lambda cell: "0" * 40, metrics=METRICS, fhn_pairs=None):
        self.bonus, self.split, self.metrics, self.calls = bonus or {}, split, metrics, []

    def __call__(self, cell, dataset, out, config_dict=None, analyses=(), fhn_pairs=2048, **kwargs):
        self.calls.append(cell.key)
        value = 0.1 + cell.seed / 100 + self.bonus.get(cell.sampler, 0.0)
        analysis = ({"fhn": {"rate": 0.0, "threshold": 0.9, "pairs": 10, "requested_pairs": fhn_pairs}}
                    if "fhn" in analyses else {})
        return {"cell": cell.key, "model": cell.model, "sampler": cell.sampler, "seed": cell.seed,
                "train_ratio": cell.train_ratio, "dataset": dataset, "valid_metric": "NDCG@10",
                "best_valid_score": value, "best_epoch": 0, "epochs_run": 1, "mean_epoch_time": 1.0,
                "total_time": 1.0, "analysis": analysis, "test_result": {m: value for m in self.metrics},
                "epochs": [{"epoch": 0, "train_time": 1.0, "train_loss": 1.0, "valid_score": value, "ndcg@10": value}],
                "split": {"fingerprint": self.split(cell),
                          **({"train_negatives": "subsample"} if cell.train_ratio < 1 else {})}}


def grid(out, samplers, seeds, runner, models=("MF",), **kwargs):
    return run_grid("toy", list(models), list(samplers), list(seeds), str(out), progress=False, cell_runner=runner,
                    cell_checker=None, **kwargs)


def test_a_changed_config_file_stops_the_resume(tmp_path):
    """Only the yaml's path was stored: a rerun with other content in it mixed two learning rates in one row."""
    yaml_file = tmp_path / "cf.yaml"
    yaml_file.write_text("learning_rate: 0.01\n")
    grid(tmp_path / "out", ["RNS"], [1], FakeRunner(), config_file_list=[str(yaml_file)])
    runner = FakeRunner()
    grid(tmp_path / "out", ["RNS"], [1], runner, config_file_list=[str(yaml_file)])  # same content: finished
    assert runner.calls == []
    yaml_file.write_text("learning_rate: 0.0001\n")
    with pytest.raises(SettingsMismatch, match="the source config files changed"):
        grid(tmp_path / "out", ["RNS"], [1, 2], runner, config_file_list=[str(yaml_file)])
    assert runner.calls == []


def test_a_changed_dataset_file_stops_the_resume(tmp_path):
    """Only the dataset's name was compared: a dataset imported again into the same folder (another split) reused
    the finished trials of a search, and a row averaged runs of both splits."""
    from recbole_hnlm.files import file_sha256

    data = tmp_path / "toy.inter"
    data.write_text("user_id:token\titem_id:token\n1\t2\n")

    class DataRunner(FakeRunner):
        def __call__(self, *args, **kwargs):
            return {**super().__call__(*args, **kwargs), "data_files_sha256": {str(data): file_sha256(str(data))}}

    out = tmp_path / "out"
    grid(out, ["RNS"], [1], DataRunner())
    old = file_sha256(str(data))
    runner = DataRunner()
    grid(out, ["RNS"], [1], runner)  # the same bytes: finished
    assert runner.calls == []
    data.write_text("user_id:token\titem_id:token\n1\t3\n4\t2\n")
    with pytest.raises(SettingsMismatch, match=f"MF-RNS-seed1: ran on the dataset file {data} of sha256 {old[:12]}"
                                               rf"\.\.\., but it now has sha256 {file_sha256(str(data))[:12]}"):
        grid(out, ["RNS"], [2], runner)  # another seed of the row: it would be averaged with the first
    assert runner.calls == []
    data.unlink()  # a file no longer there is not compared: a finished grid's folder stays readable without its data
    grid(out, ["RNS"], [1], runner)
    assert runner.calls == []


class DataRunner(FakeRunner):
    """A :class:`FakeRunner` whose results record the digest of ``data/toy.inter`` (relative, as data_path gives
    it) as read from the current working folder."""

    def __call__(self, *args, **kwargs):
        path = os.path.join("data", "toy.inter")
        return {**super().__call__(*args, **kwargs), "data_files_sha256": {path: file_sha256(path)}}


def test_a_relative_data_path_is_read_again_from_the_resuming_folder(tmp_path, monkeypatch):
    """RecBole's data_path is relative by default: the same settings started from another working folder read other
    files, and a resume that re-hashed the first folder's files reused its cells for them."""
    for folder, line in (("A", "1\t2"), ("B", "1\t3\n4\t2")):
        (tmp_path / folder / "data").mkdir(parents=True)
        (tmp_path / folder / "data" / "toy.inter").write_text(f"user_id:token\titem_id:token\n{line}\n")

    monkeypatch.chdir(tmp_path / "A")
    grid(tmp_path / "out", ["RNS"], [1], DataRunner())
    runner = DataRunner()
    grid(tmp_path / "out", ["RNS"], [1], runner)
    assert runner.calls == []
    monkeypatch.chdir(tmp_path / "B")
    with pytest.raises(SettingsMismatch, match="ran on the dataset file data/toy.inter of sha256"):
        grid(tmp_path / "out", ["RNS"], [1, 2], runner)
    assert runner.calls == []


def test_another_seed_of_a_row_must_share_its_settings(tmp_path):
    """A later command adding a seed with other settings averaged both into one row; other rows may differ (a
    tuned sampler's settings), and settings that only change the output (state) are not compared."""
    out = tmp_path / "out"
    grid(out, ["DNS"], [1], FakeRunner(), config_dict={"dns_candidates": 4})
    runner = FakeRunner()
    with pytest.raises(SettingsMismatch,
                       match=r"MF-DNS-seed1: stored with other settings than now \(dns_candidates: 4 -> 32;"):
        grid(out, ["DNS"], [2], runner, config_dict={"dns_candidates": 32})
    assert runner.calls == [] and not os.path.exists(out / "runs" / "MF-DNS-seed2.json")
    grid(out, ["RNS"], [2], runner, config_dict={"learning_rate": 0.01})  # another row: its own settings
    grid(out, ["DNS"], [2], runner, config_dict={"dns_candidates": 4, "state": "INFO"})
    assert runner.calls == ["MF-RNS-seed2", "MF-DNS-seed2"]


def test_names_are_spelled_as_their_classes(tmp_path):
    """``--samplers rns`` wrote MF-rns-seed1.json beside MF-RNS-seed1.json, and the report counted the seed twice."""
    assert canonical_names(["mf", "lightgcn", "bpr"], ["rns", "mixgcf", "ahns"]) == (
        ["MF", "LightGCN", "BPR"], ["RNS", "MixGCF", "AHNS"])
    assert canonical_names(["NoSuchModel"], ["nosuch"]) == (["NoSuchModel"], ["nosuch"])  # left to the checker
    grid(tmp_path, ["RNS"], [1], FakeRunner())
    runner = FakeRunner()
    summary = grid(tmp_path, ["rns"], [1], runner, models=["mf"])
    assert runner.calls == [] and summary["skipped"] == ["MF-RNS-seed1"]
    assert sorted(os.listdir(tmp_path / "runs")) == ["MF-RNS-seed1.json"]


def test_a_backbone_with_one_sampler_has_no_comparison_table(tmp_path):
    """A search trial's report (one sampler) printed an empty "vs RNS / vs best ID" table naming DNS the best
    ID-based sampler, compared with nothing; a backbone with two samplers keeps it."""
    from recbole_hnlm.benchmark.report import markdown_report

    grid(tmp_path, ["DNS"], [1], FakeRunner())
    grid(tmp_path, ["RNS", "DNS"], [1], FakeRunner(), models=["LightGCN"])
    results = [json.loads((tmp_path / "runs" / name).read_text()) for name in os.listdir(tmp_path / "runs")]
    report = markdown_report(results)
    mf, lightgcn = report.split("## MF")[1].split("## LightGCN")[0], report.split("## LightGCN")[1]
    assert "## MF" in report and "| DNS | 1 |" in mf and "Relative improvement" not in mf and "vs RNS" not in mf
    assert "Relative improvement" in lightgcn and "| DNS | " in lightgcn.split("vs best ID", 1)[1]
    other = tmp_path / "no-rns"  # two samplers without RNS: compared with each other ("vs best ID")
    grid(other, ["DNS", "MixGCF"], [1], FakeRunner(bonus={"MixGCF": 0.01}))
    report = markdown_report([json.loads((other / "runs" / n).read_text()) for n in os.listdir(other / "runs")])
    assert "Relative improvement" in report and "NDCG@20: MixGCF" in report


def test_improvement_and_test_use_the_same_pairs(tmp_path):
    """With a seed missing for one sampler, the improvement compared means over different seeds (a helper's grid:
    +130 % where the pairs gave +147 %); runs on different splits are not paired at all."""
    grid(tmp_path, ["RNS"], [1, 2], FakeRunner())
    grid(tmp_path, ["DNS"], [1], FakeRunner(bonus={"DNS": 0.05}))
    results = [json.loads((tmp_path / "runs" / name).read_text()) for name in os.listdir(tmp_path / "runs")]
    dns, rns = 0.11 + 0.05, 0.11  # seed 1 only
    result = compare(results, "MF", "DNS", "RNS", "ndcg@20")
    assert result["improvement"] == pytest.approx((dns - rns) / rns * 100) and result["n"] == 1
    other = tmp_path / "other"
    grid(other, ["RNS"], [1, 2], FakeRunner(split=lambda cell: f"{cell.seed:040d}"))
    grid(other, ["DNS"], [1, 2], FakeRunner(bonus={"DNS": 0.05}, split=lambda cell: "f" * 40))
    results = [json.loads((other / "runs" / name).read_text()) for name in os.listdir(other / "runs")]
    result = compare(results, "MF", "DNS", "RNS", "ndcg@20")
    assert result["n"] == 0 and result["note"] == "unpaired"
    assert result["improvement"] == pytest.approx(0.05 / 0.115 * 100)
    write_report(str(other), plots=False)
    assert "(unpaired: no seed on a shared split)" in (other / "table.md").read_text()


def test_report_without_some_metrics_and_without_losing_the_table(tmp_path):
    """Runs with topk=[10] crashed the report (KeyError 'recall@20') after table.md had been opened, leaving it
    empty; a corrupt result file was a raw JSONDecodeError."""
    grid(tmp_path, ["RNS", "DNS"], [1, 2], FakeRunner(bonus={"DNS": 0.01}))
    write_report(str(tmp_path), plots=False)
    good = (tmp_path / "table.md").read_text()
    grid(tmp_path / "top10", ["RNS", "DNS"], [1, 2], FakeRunner(metrics=("recall@10", "ndcg@10")))
    write_report(str(tmp_path / "top10"), plots=True)
    table = (tmp_path / "top10" / "table.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| DNS | 2 |"))
    assert row.split("|")[4].strip() == "-" and row.split("|")[3].strip().startswith("0.1150")
    broken = json.loads((tmp_path / "runs" / "MF-DNS-seed1.json").read_text())
    del broken["test_result"]
    (tmp_path / "runs" / "MF-DNS-seed1.json").write_text(json.dumps(broken))
    with pytest.raises(ValueError, match=r"MF-DNS-seed1.json is not a readable result \(no 'test_result'\)"):
        write_report(str(tmp_path), plots=False)
    assert (tmp_path / "table.md").read_text() == good
    assert cli_main(["--out", str(tmp_path), "--report-only", "--no-plots"]) == 2  # was a KeyError traceback
    runner = FakeRunner(bonus={"DNS": 0.01})
    grid(tmp_path, ["RNS", "DNS"], [1, 2], runner)  # a grid runs that cell again, and only that one
    assert runner.calls == ["MF-DNS-seed1"]
    write_report(str(tmp_path), plots=False)
    assert (tmp_path / "table.md").read_text() == good
    (tmp_path / "runs" / "MF-DNS-seed1.json").write_text("{not json")
    with pytest.raises(ValueError, match="MF-DNS-seed1.json is not a readable result"):
        write_report(str(tmp_path), plots=False)
    assert cli_main(["--out", str(tmp_path), "--report-only", "--no-plots"]) == 2
    assert (tmp_path / "table.md").read_text() == good


def test_fhn_pairs_are_part_of_a_finished_cell(tmp_path):
    grid(tmp_path, ["RNS"], [1], FakeRunner(), analyses=("fhn",), fhn_pairs=512)
    runner = FakeRunner()
    grid(tmp_path, ["RNS"], [1], runner, analyses=("fhn",), fhn_pairs=512)
    assert runner.calls == []
    with pytest.raises(SettingsMismatch, match="--fhn-pairs 512, now --fhn-pairs 100"):
        grid(tmp_path, ["RNS"], [1], runner, analyses=("fhn",), fhn_pairs=100)


def test_out_that_is_a_file_is_one_error_line(tmp_path, capsys):
    path = tmp_path / "afile"
    path.write_text("x")
    assert cli_main(["--models", "MF", "--samplers", "RNS", "--seeds", "1", "--out", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and "a file is there" in err and "Traceback" not in err


def test_popularity_analysis_needs_a_plugin_backbone(tmp_path):
    """BPR passed the checks and failed after training, on pooled_embeddings."""
    with pytest.raises(ConfigError, match="--analysis popularity needs a recbole_hnlm backbone"):
        check_cell(Cell("BPR", "RNS", 1), "ml-100k", str(tmp_path), config_dict={"epochs": 1},
                   analyses=("popularity",))


def test_params_file_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "bom.hyper"
    path.write_bytes("learning_rate choice [0.01, 0.001]\n".encode("utf-8-sig"))
    (param,) = read_params_file(str(path))
    assert param.name == "learning_rate" and list(param.values) == [0.01, 0.001]


def test_a_changed_property_file_default_stops_the_resume(tmp_path, monkeypatch):
    """Only explicit settings were compared: a grid resumed after a default changed (this session's
    hnlm_adapter_reg_weight) would average both in one row."""
    import shutil

    from recbole_hnlm import config as config_module

    properties = tmp_path / "properties"
    shutil.copytree(config_module.PROPERTIES_DIR, properties)
    monkeypatch.setattr(config_module, "PROPERTIES_DIR", str(properties))
    grid(tmp_path / "out", ["DNS"], [1], FakeRunner())
    stored = json.loads((tmp_path / "out" / "runs" / "MF-DNS-seed1.json").read_text())
    assert stored["defaults"]["dns_candidates"] == 32 and stored["defaults"]["embedding_size"] == 64
    sampler_file = properties / "sampler" / "DNS.yaml"
    sampler_file.write_text(sampler_file.read_text().replace("dns_candidates: 32", "dns_candidates: 16"))
    runner = FakeRunner()
    with pytest.raises(SettingsMismatch, match=r"ran with other defaults .*dns_candidates: 32 -> 16"):
        grid(tmp_path / "out", ["DNS"], [1, 2], runner)
    assert runner.calls == []


def test_defaults_that_a_run_did_not_use_or_older_results(tmp_path, monkeypatch):
    """A default overridden by a config file, or one that does not change what a cell computes, is not compared;
    results written before defaults were stored are compared on the defaults known to have changed since."""
    import shutil

    from recbole_hnlm import config as config_module

    properties = tmp_path / "properties"
    shutil.copytree(config_module.PROPERTIES_DIR, properties)
    monkeypatch.setattr(config_module, "PROPERTIES_DIR", str(properties))
    yaml_file = tmp_path / "cf.yaml"
    yaml_file.write_text("dns_candidates: 8\n")
    grid(tmp_path / "out", ["DNS"], [1], FakeRunner(), config_file_list=[str(yaml_file)])
    sampler_file = properties / "sampler" / "DNS.yaml"
    sampler_file.write_text(sampler_file.read_text().replace("dns_candidates: 32", "dns_candidates: 16"))
    overall = properties / "overall.yaml"
    overall.write_text(overall.read_text() + "\neval_batch_size: 1234\n")
    runner = FakeRunner()
    grid(tmp_path / "out", ["DNS"], [1, 2], runner, config_file_list=[str(yaml_file)])
    assert runner.calls == ["MF-DNS-seed2"]
    # an HNLMRec result of an earlier version: it ran with the adapter's Frobenius weight 1e-4, the default then
    grid(tmp_path / "old", ["HNLMRec"], [1], FakeRunner(), models=["LightGCN"])
    path = tmp_path / "old" / "runs" / "LightGCN-HNLMRec-seed1.json"
    older = json.loads(path.read_text())
    del older["defaults"]
    path.write_text(json.dumps(older))
    with pytest.raises(SettingsMismatch, match=r"hnlm_adapter_reg_weight: 0\.0001 -> 0"):
        grid(tmp_path / "old", ["HNLMRec"], [1, 2], FakeRunner(), models=["LightGCN"])


def test_older_results_resume_with_their_old_default_given_explicitly(tmp_path):
    """docs/results.md's commands pass --hnlm_adapter_reg_weight=1e-4 (the default its results ran with), and every
    folder written before the defaults were stored was refused with it as "other settings", RNS rows included (they
    never read the option), and without it as "other defaults": those folders could not be resumed at all."""
    settings = {"split_seed": 1, "epochs": 3}
    grid(tmp_path, ["RNS", "HNLMRec"], [1], FakeRunner(), models=["LightGCN"], config_dict=settings)
    for name in ("LightGCN-RNS-seed1.json", "LightGCN-HNLMRec-seed1.json"):  # as an earlier version wrote them
        path = tmp_path / "runs" / name
        older = json.loads(path.read_text())
        del older["defaults"]
        path.write_text(json.dumps(older))
    runner = FakeRunner()
    grid(tmp_path, ["RNS", "HNLMRec"], [1, 2], runner, models=["LightGCN"],
         config_dict=dict(settings, hnlm_adapter_reg_weight=1e-4))
    assert runner.calls == ["LightGCN-RNS-seed2", "LightGCN-HNLMRec-seed2"]
    # another value is other settings; an old value of a default that did not change for this dataset is too
    for other, cell in (({"hnlm_adapter_reg_weight": 1e-3}, "RNS"), ({"hnlm_adapter_reg_weight": 1e-4,
                                                                       "hnlm_lambda": 1e-4}, "HNLMRec")):
        runner = FakeRunner()
        with pytest.raises(SettingsMismatch, match=f"LightGCN-{cell}-seed1: stored with"):
            grid(tmp_path, ["RNS", "HNLMRec"], [1], runner, models=["LightGCN"], config_dict=dict(settings, **other))
        assert runner.calls == []


def test_fhn_pairs_of_another_seed_of_the_row(tmp_path):
    grid(tmp_path, ["RNS"], [1], FakeRunner(), analyses=("fhn",), fhn_pairs=512)
    runner = FakeRunner()
    with pytest.raises(SettingsMismatch, match="--fhn-pairs 512, now --fhn-pairs 100"):
        grid(tmp_path, ["RNS"], [2], runner, analyses=("fhn",), fhn_pairs=100)
    assert runner.calls == []


class KilledAt:
    """A cell runner that stops the grid like Ctrl-C or a kill at ``cell_key`` (no result, no error file)."""

    def __init__(self, cell_key, runner):
        self.cell_key, self.runner = cell_key, runner

    def __call__(self, cell, *args, **kwargs):
        if cell.key == self.cell_key:
            raise KeyboardInterrupt
        return self.runner(cell, *args, **kwargs)


def test_cells_of_the_grid_without_a_result_are_named(tmp_path):
    """An interrupted or killed cell left its row averaged over fewer seeds without a word."""
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        grid(out, ["RNS", "DNS"], [1, 2, 3], KilledAt("MF-DNS-seed2", FakeRunner()))
    text = open(write_report(str(out), plots=False)["table"]).read()
    missing = text.split("## Not finished", 1)[1]
    assert "`MF-DNS-seed2`" in missing and "`MF-DNS-seed3`" in missing and "seed1" not in missing
    grid(out, ["RNS", "DNS"], [1, 2, 3], FakeRunner())
    assert "Not finished" not in open(write_report(str(out), plots=False)["table"]).read()


def test_rows_trained_with_other_settings_are_listed(tmp_path):
    """A later command may add a row with other settings (a tuned sampler) to a grid's folder: the report said
    nothing, and one row's lr looked comparable to the others'."""
    out = tmp_path / "out"
    grid(out, ["RNS"], [1], FakeRunner(), config_dict={"epochs": 2})
    text = open(write_report(str(out), plots=False)["table"]).read()
    assert "Settings of every row: epochs=2." in text and "different settings" not in text
    grid(out, ["DNS"], [1], FakeRunner(), config_dict={"epochs": 3, "dns_candidates": 8})
    text = open(write_report(str(out), plots=False)["table"]).read()
    assert "Settings of every row: the defaults." in text
    assert "* MF + RNS: epochs=2\n* MF + DNS: dns_candidates=8, epochs=3\n" in text


def test_ties_for_the_best_id_based_sampler_and_sparsity_counts_are_shown(tmp_path):
    out = tmp_path / "out"
    grid(out, ["DNS", "AHNS", "RNS"], [1, 2], FakeRunner(), analyses=("sparsity",), ratios=(0.5,))
    os.remove(os.path.join(out, "runs", "MF-RNS-seed2-train50.json"))
    text = open(write_report(str(out), plots=False)["table"]).read()
    assert "NDCG@20: DNS (tied with AHNS)" in text  # equal means: the choice is named, not hidden
    sparsity = text.split("## Sparsity", 1)[1]
    assert "| MF | RNS | 0.1100 (n=1) | 0.1150 (n=2) |" in sparsity
    assert "| MF | DNS | 0.1150 (n=2) | 0.1150 (n=2) |" in sparsity


def test_popularity_group_sizes_of_splits_that_differ_are_ranges():
    """The group sizes were those of the first run's split, whichever seed's split the others had."""
    from recbole_hnlm.benchmark.analysis import POPULARITY_GROUPS
    from recbole_hnlm.benchmark.report import markdown_report

    results = []
    for seed, n_test in ((1, 100), (2, 90)):
        result = FakeRunner()(Cell("MF", "RNS", seed), "toy", None)
        result["analysis"]["popularity"] = {group: {"recall@20": 0.1, "ndcg@20": 0.1, "n_items": 10,
                                                    "n_test": n_test + index}
                                            for index, group in enumerate(("All",) + POPULARITY_GROUPS)}
        results.append(result)
    groups = markdown_report(results).split("Groups: ", 1)[1].split("\n", 1)[0]
    assert groups.startswith(f"{POPULARITY_GROUPS[0]} 10 items / 91–101 test pairs, ")
    results[1]["analysis"]["popularity"][POPULARITY_GROUPS[0]].update({"recall@20": float("nan"),
                                                                       "ndcg@20": float("nan")})
    row = [line for line in markdown_report(results).splitlines() if line.startswith("| MF | RNS | 2 |")][0]
    assert "| 0.1000 / 0.1000 (n=1) |" in row  # the mean of one seed says so: the n column counts two
    assert markdown_report(results[:1]).split("Groups: ", 1)[1].startswith(f"{POPULARITY_GROUPS[0]} 10 items / 101 ")


def test_not_finished_names_only_rows_the_tables_show(tmp_path):
    """A folder whose grid.json came from another command (runs moved in by hand) listed rows that never existed
    as interrupted."""
    out = tmp_path / "out"
    grid(out, ["RNS"], [1, 2], FakeRunner())
    with open(out / "grid.json") as f:
        stored = json.load(f)
    stored["samplers"] = ["RNS", "DNS"]  # a DNS row that has no result at all
    stored["seeds"] = [1, 2, 3]
    with open(out / "grid.json", "w") as f:
        json.dump(stored, f)
    text = open(write_report(str(out), plots=False)["table"]).read()
    assert text.split("## Not finished", 1)[1].count("`MF-") == 1 and "`MF-RNS-seed3`" in text


def test_a_plot_stopped_while_written_leaves_the_previous_one(tmp_path, monkeypatch):
    """The report's PNGs were written in place: a stop during savefig left a cut image in the results folder."""
    import matplotlib.figure

    grid(tmp_path, ["RNS", "DNS"], [1, 2], FakeRunner(bonus={"DNS": 0.01}))
    write_report(str(tmp_path), plots=True)
    plots = tmp_path / "plots"
    pngs = sorted(name for name in os.listdir(plots) if name.endswith(".png"))
    assert pngs
    before = {name: (plots / name).read_bytes() for name in pngs}
    assert all(data.startswith(b"\x89PNG") for data in before.values())

    def cut_short(self, fname, **kwargs):
        with open(fname, "wb") as handle:
            handle.write(b"\x89PNG cut")
        raise KeyboardInterrupt

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", cut_short)
    with pytest.raises(KeyboardInterrupt):
        write_report(str(tmp_path), plots=True)
    assert {name: (plots / name).read_bytes() for name in pngs} == before
    assert not [name for name in os.listdir(plots) if ".tmp-" in name]


def test_an_interrupted_grid_names_the_rows_it_never_started(tmp_path):
    """Ctrl-C in the first DNS cell left a table of the RNS row alone with no 'Not finished' section: a complete
    grid to the eye. grid.json records whether the command ran every cell; an interrupted one lists them all."""
    class StopAtDNS(FakeRunner):
        def __call__(self, cell, *args, **kwargs):
            if cell.sampler == "DNS":
                raise KeyboardInterrupt
            return super().__call__(cell, *args, **kwargs)

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        grid(out, ["RNS", "DNS"], [1, 2], StopAtDNS())
    assert json.loads((out / "grid.json").read_text())["completed"] is False
    text = open(write_report(str(out), plots=False)["table"]).read()
    listed = text.split("## Not finished", 1)[1]
    assert "`MF-DNS-seed1`" in listed and "`MF-DNS-seed2`" in listed and "MF-RNS" not in listed
    grid(out, ["RNS", "DNS"], [1, 2], FakeRunner())  # resumed to the end
    assert json.loads((out / "grid.json").read_text())["completed"] is True
    assert "## Not finished" not in open(write_report(str(out), plots=False)["table"]).read()


def test_the_popularity_tables_all_column_is_the_main_tables_mean():
    """The "All" group averaged unrounded values while the main table averages RecBole's rounded metrics, so the two
    could differ in the last digit (0.1234 against 0.1235 here)."""
    from recbole_hnlm.benchmark.analysis import POPULARITY_GROUPS
    from recbole_hnlm.benchmark.report import markdown_report

    results = []
    for seed, exact in ((1, 0.12336), (2, 0.12346)):  # RecBole reports 0.1234 and 0.1235
        result = FakeRunner()(Cell("MF", "RNS", seed), "toy", None)
        result["test_result"].update({"recall@20": round(exact, 4), "ndcg@20": 0.2})
        result["analysis"]["popularity"] = {group: {"recall@20": exact, "ndcg@20": 0.2, "n_items": 10, "n_test": 5}
                                            for group in ("All",) + POPULARITY_GROUPS}
        results.append(result)
    lines = markdown_report(results).splitlines()
    main = [line for line in lines if line.startswith("| RNS | 2 |")][0].split(" | ")[3]
    popularity = [line for line in lines if line.startswith("| MF | RNS | 2 |")][0].split(" | ")[3]
    assert main.startswith("0.1235 ± ") and popularity == "0.1235 / 0.2000"  # unrounded, the mean 0.12341 read 0.1234
    results[0]["settings"] = results[1]["settings"] = {"metric_decimal_place": 6}  # results of earlier versions
    row = [line for line in markdown_report(results).splitlines() if line.startswith("| MF | RNS | 2 |")][0]
    assert row.split(" | ")[3] == "0.123410 / 0.200000"  # kept to 6 decimals, and shown with 6 (it showed 4)
    for result in results:  # the run's own record wins: a config file may have set it
        result["settings"], result["metric_decimal_place"] = {}, 6
    lines = markdown_report(results).splitlines()
    row = [line for line in lines if line.startswith("| MF | RNS | 2 |")][0]
    assert row.split(" | ")[3] == "0.123410 / 0.200000"
    main = [line for line in lines if line.startswith("| RNS | 2 |")][0].split(" | ")[3]
    assert main.startswith("0.123450 ± 0.000071")  # the main table too: 0.1234 and 0.1235 read as their digits
    results[0]["settings"] = {"metric_decimal_place": 4}  # the run's own record wins over its settings
    results[1]["metric_decimal_place"] = 4  # runs that differ: the most digits any of them has
    lines = markdown_report(results).splitlines()
    assert [line for line in lines if line.startswith("| RNS | 2 |")][0].split(" | ")[3].startswith("0.123450 ± ")
    results[1]["metric_decimal_place"] = 6
    single = markdown_report(results[:1]).splitlines()  # one seed: its mean alone, with the run's digits
    assert [line for line in single if line.startswith("| RNS | 1 |")][0].split(" | ")[3] == "0.123400"
    sparse = FakeRunner()(Cell("MF", "RNS", 1, 0.4), "toy", None)
    sparse["test_result"]["ndcg@20"], sparse["metric_decimal_place"] = 0.031234, 6
    text = markdown_report(results + [sparse])
    assert "| MF | RNS | 0.031234 (n=1) | 0.200000 (n=2) |" in text


def test_sparsity_cells_of_earlier_versions_are_refused_by_name(tmp_path):
    """Sparsity cells written before the subsample's own sampler drew biased RNS/HNLMRec negatives; a resumed grid
    averaged them with new ones without a word."""
    out = tmp_path / "out"
    grid(out, ["RNS"], [1], FakeRunner(), analyses=("sparsity",), ratios=(0.4,))
    sparse = os.path.join(out, "runs", "MF-RNS-seed1-train40.json")
    assert os.path.exists(sparse)
    grid(out, ["RNS"], [1], FakeRunner(), analyses=("sparsity",), ratios=(0.4,))  # a resume: nothing to run
    result = json.loads(open(sparse).read())
    del result["split"]["train_negatives"]
    with open(sparse, "w") as handle:
        json.dump(result, handle)
    with pytest.raises(SettingsMismatch, match="MF-RNS-seed1-train40: a sparsity cell of an earlier recbole_hnlm"):
        grid(out, ["RNS"], [1], FakeRunner(), analyses=("sparsity",), ratios=(0.4,))


class FilesRunner(FakeRunner):
    """A fake cell whose result records the sha256 of ``files`` as run_cell's ``data_files_sha256`` does."""

    def __init__(self, files):
        super().__init__()
        self.files = files

    def __call__(self, *args, **kwargs):
        return {**super().__call__(*args, **kwargs),
                "data_files_sha256": {str(path): file_sha256(str(path)) for path in self.files}}


def _set_mtime(path, ns):
    os.utime(path, ns=(ns, ns))


def test_an_edit_that_keeps_the_files_size_stops_the_resume(tmp_path):
    """One rating changed (4 -> 5) keeps the file's size: the cached digest of the old bytes must not be reused."""
    data = tmp_path / "toy.inter"
    data.write_text("user_id:token\titem_id:token\trating:float\n1\t2\t4\n")
    grid(tmp_path / "out", ["RNS"], [1], FilesRunner([data]))
    runner = FilesRunner([data])
    grid(tmp_path / "out", ["RNS"], [1], runner)  # finished: its digest is now cached
    assert runner.calls == []
    before = data.stat().st_mtime_ns
    data.write_text("user_id:token\titem_id:token\trating:float\n1\t2\t5\n")  # same size
    _set_mtime(data, before + 2_000_000_000)  # a later modification time even on a coarse-grained file system
    with pytest.raises(SettingsMismatch, match=f"ran on the dataset file {data} of sha256"):
        grid(tmp_path / "out", ["RNS"], [1], runner)
    assert runner.calls == []


def test_another_size_under_the_same_modification_time_stops_the_resume(tmp_path):
    """A file copied in with its timestamps kept (cp -p, rsync -t, tar) can carry the old modification time: a new
    size alone must be enough to read it again."""
    data = tmp_path / "toy.inter"
    data.write_text("user_id:token\titem_id:token\n1\t2\n")
    _set_mtime(data, 1_700_000_000_000_000_000)
    grid(tmp_path / "out", ["RNS"], [1], FilesRunner([data]))
    runner = FilesRunner([data])
    grid(tmp_path / "out", ["RNS"], [1], runner)
    assert runner.calls == []
    data.write_text("user_id:token\titem_id:token\n1\t2\n3\t4\n")
    _set_mtime(data, 1_700_000_000_000_000_000)
    with pytest.raises(SettingsMismatch, match="ran on the dataset file"):
        grid(tmp_path / "out", ["RNS"], [1], runner)


def test_every_recorded_file_is_compared_with_its_own_bytes(tmp_path):
    """A run records its .inter and its .item/.user files: two of them with the same size and modification time
    (files of one tar archive) are not mistaken for each other, and a change in any of them (not only the first)
    stops the resume."""
    inter, item = tmp_path / "toy.inter", tmp_path / "toy.item"
    inter.write_text("a:token\n1\n")
    item.write_text("b:token\n2\n")  # the same size
    for path in (inter, item):
        _set_mtime(path, 1_700_000_000_000_000_000)
    grid(tmp_path / "out", ["RNS"], [1], FilesRunner([inter, item]))
    runner = FilesRunner([inter, item])
    grid(tmp_path / "out", ["RNS"], [1], runner)  # nothing changed: finished, no mismatch
    assert runner.calls == []
    item.write_text("b:token\n3\n4\n")  # the second file changes: the item attributes were re-imported
    with pytest.raises(SettingsMismatch, match=f"ran on the dataset file {item} of sha256"):
        grid(tmp_path / "out", ["RNS"], [1], runner)
    assert runner.calls == []


#: What the report reads of every run, spelt out here (not runner.REPORTED_KEYS, which is under test).
REPORT_READS = ("cell", "model", "sampler", "seed", "train_ratio", "dataset", "valid_metric", "best_valid_score",
                "best_epoch", "test_result", "epochs_run", "mean_epoch_time", "total_time", "split")


def _readable_result():
    result = {key: 0 for key in REPORT_READS}
    result.update(valid_metric="NDCG@20", test_result={"ndcg@20": 0.1}, split={"fingerprint": "ab" * 32})
    return result


def test_a_result_missing_any_key_the_report_reads_is_not_a_finished_run():
    from recbole_hnlm.benchmark.runner import result_problem

    assert result_problem(_readable_result()) is None
    for key in REPORT_READS:
        damaged = _readable_result()
        del damaged[key]
        assert result_problem(damaged) == f"no {key!r}"


@pytest.mark.parametrize("damage, problem", [
    (lambda r: [r], "not a JSON object"), (lambda r: None, "not a JSON object"),
    (lambda r: {**r, "test_result": [0.1]}, "'test_result' is not an object"),
    (lambda r: {**r, "split": {"n_users": 3}}, "'split' has no 'fingerprint'"),
    (lambda r: {**r, "split": None}, "'split' has no 'fingerprint'"),
    (lambda r: {**r, "split": "fingerprint"}, "'split' has no 'fingerprint'"),
    (lambda r: {**r, "analysis": []}, "'analysis' is not an object"),
    (lambda r: {**r, "analysis": {"fhn": {"rate": 0.1}}}, "'analysis.fhn' needs 'rate' and 'threshold'"),
    (lambda r: {**r, "analysis": {"fhn": 0.1}}, "'analysis.fhn' needs 'rate' and 'threshold'"),
    (lambda r: {**r, "analysis": {"popularity": {"All": _GROUP}}},
     "'analysis.popularity' has no 'Unpopular' group with 'recall@20', 'ndcg@20', 'n_items' and 'n_test'"),
    (lambda r: {**r, "analysis": {"popularity": {**_POPULARITY, "Popular": {"recall@20": 0.1}}}},
     "'analysis.popularity' has no 'Popular' group with 'recall@20', 'ndcg@20', 'n_items' and 'n_test'"),
])
def test_a_result_of_another_shape_is_not_a_finished_run(damage, problem):
    """The analysis sections too: a hand-made or older result without what the report reads of them was loaded and
    then stopped the report with a bare KeyError ('threshold')."""
    from recbole_hnlm.benchmark.runner import result_problem

    assert result_problem(damage(_readable_result())) == problem


_GROUP = {"recall@20": 0.1, "ndcg@20": 0.05, "n_users": 3, "n_items": 4, "n_test": 5}
_POPULARITY = {group: _GROUP for group in ("All", "Unpopular", "Normal", "Popular")}


def test_a_result_with_complete_analyses_is_read_by_the_report(tmp_path):
    """The analysis sections the runner writes pass the check, and the report prints them."""
    from recbole_hnlm.benchmark.report import load_results, markdown_report
    from recbole_hnlm.benchmark.runner import result_problem

    result = {**_readable_result(), "epochs": [{"epoch": 0, "fhn_rate": 0.25}], "analysis": {
        "popularity": _POPULARITY, "fhn": {"rate": 0.5, "threshold": 0.9, "pairs": 4, "requested_pairs": 4}}}
    assert result_problem(result) is None
    runs = tmp_path / "runs"
    runs.mkdir()
    result.update(cell="MF-RNS-seed0", model="MF", sampler="RNS", seed=0, train_ratio=1.0, dataset="ml",
                  test_result={m: 0.1 for m in ("recall@10", "recall@20", "ndcg@10", "ndcg@20")})
    (runs / "MF-RNS-seed0.json").write_text(json.dumps(result))
    text = markdown_report(load_results(str(tmp_path)))
    assert "cosine > 0.9 with a test positive" in text and "## Popularity groups" in text
