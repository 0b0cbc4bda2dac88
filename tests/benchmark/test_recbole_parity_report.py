"""benchmarks/recbole_parity.py without training: the table's arithmetic, which stored runs a report reads (a run of
other settings is an error, never reused: it put another dataset's numbers in parity.md), and option errors."""
import importlib.util
import json
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def parity(monkeypatch):
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # main() cuts sys.argv to its first item
    path = os.path.join(REPO, "benchmarks", "recbole_parity.py")
    spec = importlib.util.spec_from_file_location("recbole_parity", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(side, model, seed, valid, test, epochs=20, dataset="ml-100k", split_seed=2020, require_pow=True):
    return dict(side=side, model=model, seed=seed, dataset=dataset, data_path=None, split_seed=split_seed,
                epochs=epochs, require_pow=require_pow if side == "recbole" else None,
                best_valid=dict(zip(("recall@20", "ndcg@20"), valid)), test=dict(zip(("recall@20", "ndcg@20"), test)),
                seconds=1.0)


def store(out, name, run):
    os.makedirs(out / "runs", exist_ok=True)
    (out / "runs" / name).write_text(json.dumps(run))


def test_the_table_has_every_run_and_the_means_differences_and_spreads(parity):
    records = {("ours", "MF", 1): record("ours", "MF", 1, (0.11, 0.05), (0.30, 0.20)),
               ("ours", "MF", 2): record("ours", "MF", 2, (0.12, 0.06), (0.32, 0.22)),
               ("recbole", "MF", 1): record("recbole", "BPR", 1, (0.13, 0.07), (0.25, 0.15)),
               ("recbole", "MF", 2): record("recbole", "BPR", 2, (0.14, 0.08), (0.29, 0.19))}
    text = parity.table(records, ["MF"], [1, 2])
    assert text.startswith("RecBole's models trained with squared L2 (require_pow: True), as ours.")
    assert "| MF | ours | 2 | 20 | 0.1200 | 0.0600 | 0.3200 | 0.2200 |" in text
    assert "| BPR | recbole | 1 | 20 | 0.1300 | 0.0700 | 0.2500 | 0.1500 |" in text
    # ours (0.30 + 0.32) / 2 against RecBole's (0.25 + 0.29) / 2; spreads 0.02 and 0.04
    assert "| MF vs BPR | recall@20 | 0.3100 | 0.2700 | +0.0400 | 0.0200 / 0.0400 |" in text
    assert "| MF vs BPR | ndcg@20 | 0.2100 | 0.1700 | +0.0400 | 0.0200 / 0.0400 |" in text
    assert "unsquared L2 (require_pow: False)" in parity.table(records, ["MF"], [1, 2], require_pow=False)


def test_report_only_reads_the_runs_of_its_settings(parity, tmp_path, capsys):
    out = tmp_path / "out"
    store(out, "ours-LightGCN-2020.json", record("ours", "LightGCN", 2020, (0.1, 0.1), (0.2, 0.1)))
    store(out, "recbole-LightGCN-2020.json", record("recbole", "LightGCN", 2020, (0.1, 0.1), (0.2, 0.1)))
    store(out, "recbole-LightGCN-2020-unsquared.json",
          record("recbole", "LightGCN", 2020, (0.1, 0.1), (0.1234, 0.1), require_pow=False))
    base = ["--models", "LightGCN", "--seeds", "2020", "2021", "--out", str(out), "--report-only"]
    assert parity.main(base) == 0  # LightGCN's default 20 epochs, split seed 2020 and ml-100k are the runs'
    text = (out / "parity.md").read_text()
    assert "| LightGCN | ours | 2020 | 20 |" in text and "| LightGCN | recbole | 2020 | 20 |" in text
    assert "0.1234" not in text and "| 2021 |" not in text  # seed 2021 has no runs: nothing trained
    assert "no stored run " + str(out / "runs" / "ours-LightGCN-2021.json") in capsys.readouterr().err  # and said
    assert parity.main(base + ["--require_pow", "false"]) == 0  # our run and RecBole's unsquared one
    text = (out / "parity.md").read_text()
    assert "| LightGCN | ours | 2020 |" in text and "0.1234" in text and "unsquared L2" in text


@pytest.mark.parametrize("option, differs", [(["--epochs", "5"], "epochs 20, now 5"),
                                             (["--dataset", "yelp"], "dataset 'ml-100k', now 'yelp'"),
                                             (["--split_seed", "7"], "split_seed 2020, now 7"),
                                             (["--data_path", "elsewhere"], "data_path None, now '")])
@pytest.mark.parametrize("report_only", [True, False])
def test_a_stored_run_of_other_settings_is_an_error_not_reused(parity, tmp_path, capsys, monkeypatch, option,
                                                               differs, report_only):
    monkeypatch.setattr(parity, "train", lambda *args: pytest.fail(f"trained {args[:3]}: the stored run was replaced"))
    out = tmp_path / "out"
    store(out, "ours-MF-2020.json", record("ours", "MF", 2020, (0.1, 0.1), (0.2, 0.1), epochs=20))
    (out / "parity.md").write_text("the last report\n")
    with pytest.raises(SystemExit) as done:
        parity.main(["--models", "MF", "--seeds", "2020", "--epochs", "20", "--out", str(out), *option]
                    + (["--report-only"] if report_only else []))
    assert done.value.code == 2
    error = capsys.readouterr().err
    assert "ours-MF-2020.json was trained with other settings" in error and differs in error, error
    assert (out / "parity.md").read_text() == "the last report\n"  # nothing written


def test_a_run_stored_without_its_settings_is_not_taken_for_this_one(parity, tmp_path, capsys):
    out = tmp_path / "out"
    run = record("ours", "MF", 2020, (0.1, 0.1), (0.2, 0.1), epochs=40)
    del run["dataset"], run["split_seed"]
    store(out, "ours-MF-2020.json", run)
    with pytest.raises(SystemExit):
        parity.main(["--models", "MF", "--seeds", "2020", "--out", str(out), "--report-only"])
    assert "dataset '(not recorded)', now 'ml-100k'" in capsys.readouterr().err


@pytest.mark.parametrize("option, message", [(["--models", "BPR"], "invalid choice: 'BPR'"),
                                             (["--require_pow", "yes"], "must be true or false, got 'yes'"),
                                             (["--epochs", "0"], "--epochs: must be >= 1, got 0")])
def test_bad_options_are_usage_errors(parity, tmp_path, capsys, monkeypatch, option, message):
    monkeypatch.setattr(parity, "train", lambda *args: pytest.fail(f"trained {args[:3]} under a bad option"))
    with pytest.raises(SystemExit) as done:
        parity.main(["--out", str(tmp_path), *option])
    assert done.value.code == 2 and message in capsys.readouterr().err


def test_each_run_gets_the_split_seed_epochs_and_no_early_stop(parity, tmp_path, monkeypatch):
    calls = []

    def train_nothing(side, model, seed, settings, require_pow):  # records what train() would get
        calls.append((side, seed, dict(settings), require_pow, list(sys.argv)))
        return record(side, model, seed, (0.1, 0.1), (0.2, 0.1), epochs=settings["epochs"],
                      split_seed=settings["split_seed"])

    monkeypatch.setattr(parity, "train", train_nothing)
    monkeypatch.setattr(sys, "argv", ["recbole_parity.py", "--models=MF", f"--out={tmp_path}", "--split_seed=7"])
    assert parity.main() == 0
    assert [(side, seed) for side, seed, *_ in calls] == [("ours", 2020), ("recbole", 2020), ("ours", 2021),
                                                         ("recbole", 2021)]
    for _, _, settings, require_pow, argv in calls:
        assert settings["epochs"] == 40 and settings["split_seed"] == 7 and require_pow is True
        assert settings["stopping_step"] >= settings["epochs"]  # every epoch trains
        assert argv == ["recbole_parity.py"]  # RecBole's Config would read "--out=..." as one of its options
    assert json.loads((tmp_path / "runs" / "recbole-MF-2021.json").read_text())["split_seed"] == 7


@pytest.mark.parametrize("folder, options", [("ml-100k-recbole-parity", []),
                                             ("ml-100k-recbole-parity-sgl60", ["--epochs", "60"])])
def test_the_shipped_table_is_what_its_runs_give(parity, tmp_path, folder, options):
    """results/<folder>/parity.md (docs/results.md quotes it) is rebuilt from its runs, byte for byte."""
    import shutil

    shipped = os.path.join(REPO, "results", folder)
    shutil.copytree(os.path.join(shipped, "runs"), tmp_path / "runs")
    models = [model for model in ("MF", "LightGCN", "NGCF", "SGL")
              if os.path.exists(os.path.join(shipped, "runs", f"ours-{model}-2020.json"))]
    assert parity.main(["--models", *models, "--out", str(tmp_path), "--report-only", *options]) == 0
    with open(os.path.join(shipped, "parity.md"), encoding="utf-8") as file:
        assert (tmp_path / "parity.md").read_text(encoding="utf-8") == file.read()
    with open(os.path.join(REPO, "docs", "results.md"), encoding="utf-8") as file:
        assert file.read().count((tmp_path / "parity.md").read_text(encoding="utf-8").split("\n", 2)[2]) == 1


def test_report_only_without_any_stored_run_is_an_error_that_keeps_the_table(parity, tmp_path, capsys):
    """It wrote a table of headers over parity.md and exited 0 (a seed or a folder without runs)."""
    store(tmp_path, "ours-MF-2020.json", record("ours", "MF", 2020, (0.1, 0.1), (0.2, 0.1), epochs=40))
    (tmp_path / "parity.md").write_text("the last report\n")
    with pytest.raises(SystemExit) as done:
        parity.main(["--seeds", "2030", "--out", str(tmp_path), "--report-only"])
    assert done.value.code == 2 and "no stored run of these models and seeds" in capsys.readouterr().err
    assert (tmp_path / "parity.md").read_text() == "the last report\n"
    assert parity.main(["--out", str(tmp_path), "--report-only"]) == 0  # every model by default, SGL's too
    assert "| MF | ours | 2020 | 40 |" in (tmp_path / "parity.md").read_text()
    assert "ours-SGL-2021.json: left out" in capsys.readouterr().err


def test_every_stored_run_is_checked_before_anything_trains(parity, tmp_path, capsys, monkeypatch):
    """A stale run of the second model stopped the command after the first model's runs had trained."""
    monkeypatch.setattr(parity, "train", lambda *args: pytest.fail(f"trained {args[:3]} before the conflict"))
    out = tmp_path / "out"
    store(out, "ours-LightGCN-2020.json", record("ours", "LightGCN", 2020, (0.1, 0.1), (0.2, 0.1), epochs=3))
    with pytest.raises(SystemExit) as done:
        parity.main(["--models", "MF", "LightGCN", "--seeds", "2020", "--out", str(out)])
    assert done.value.code == 2 and "ours-LightGCN-2020.json was trained with other settings" in \
        capsys.readouterr().err


def test_a_relative_data_path_is_stored_absolute(parity, tmp_path, monkeypatch):
    """The same relative --data_path from two working folders names two folders: the run records where it read."""
    def train_nothing(side, model, seed, settings, require_pow):
        return {**record(side, model, seed, (0.1, 0.1), (0.2, 0.1), epochs=settings["epochs"]),
                "data_path": settings["data_path"]}

    monkeypatch.setattr(parity, "train", train_nothing)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    monkeypatch.chdir(tmp_path / "a")
    out = str(tmp_path / "out")
    assert parity.main(["--models", "MF", "--seeds", "2020", "--out", out, "--data_path", "data"]) == 0
    stored = json.loads((tmp_path / "out" / "runs" / "ours-MF-2020.json").read_text())
    assert stored["data_path"] == str(tmp_path / "a" / "data")
    monkeypatch.chdir(tmp_path / "b")
    with pytest.raises(SystemExit) as done:
        parity.main(["--models", "MF", "--seeds", "2020", "--out", out, "--data_path", "data"])
    assert done.value.code == 2


@pytest.mark.parametrize("option, message", [(["--seeds", "2020", "2020"], "argument --seeds: 2020 listed twice"),
                                             (["--models", "MF", "MF"], "argument --models: MF listed twice")])
def test_repeated_models_or_seeds_are_usage_errors(parity, tmp_path, capsys, monkeypatch, option, message):
    """A repeated seed was planned twice before its run existed: trained twice, and counted twice in the means."""
    monkeypatch.setattr(parity, "train", lambda *args: pytest.fail(f"trained {args[:3]}"))
    with pytest.raises(SystemExit) as done:
        parity.main(["--out", str(tmp_path), *option])
    assert done.value.code == 2 and message in capsys.readouterr().err
