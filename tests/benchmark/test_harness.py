"""Benchmark harness on a tiny real grid (MF x {RNS, DNS} x one seed x two epochs on a 120-user slice of ml-100k,
plus the 40 % sparsity cells), and the analysis and statistics functions on constructed cases."""
import json
import math
import os

import numpy as np
import pytest
import torch
from scipy import stats

from recbole_hnlm.benchmark import analysis as A
from recbole_hnlm.benchmark.__main__ import main as cli_main
from recbole_hnlm.benchmark.grid import SettingsMismatch, result_path, run_grid
from recbole_hnlm.benchmark.report import load_results, paired_test, write_report
from recbole_hnlm.benchmark.runner import METRICS, Cell, preserved_rng, run_cell

SAMPLERS = ["RNS", "DNS"]
SEED = 2020


class CountingRunner:
    """``run_cell`` that counts its calls (to prove that resume trains nothing)."""

    def __init__(self, inner=run_cell):
        self.inner, self.calls = inner, []

    def __call__(self, cell, *args, **kwargs):
        self.calls.append(cell.key)
        return self.inner(cell, *args, **kwargs)


@pytest.fixture(scope="module")
def grid(ml_slice, tmp_path_factory):
    """The tiny grid, run once for the module: ``(out, settings, summary, report paths, runner)``."""
    data_path, dataset = ml_slice  # conftest: the first 120 users of RecBole's bundled ml-100k, dataset "ml-slice"
    assert dataset == "ml-slice"
    out = str(tmp_path_factory.mktemp("out"))
    settings = {"data_path": data_path, "epochs": 2, "train_batch_size": 1024, "eval_step": 1, "stopping_step": 10,
                "use_gpu": False, "dns_candidates": 16}
    runner = CountingRunner()
    summary = run_grid("ml-slice", ["MF"], SAMPLERS, [SEED], out, config_dict=settings,
                       analyses=("popularity", "fhn", "sparsity"), ratios=(0.4,), progress=False,
                       cell_runner=runner, fhn_pairs=512)
    paths = write_report(out)
    return out, settings, summary, paths, runner


def _result(out, sampler, ratio=1.0):
    with open(result_path(out, Cell("MF", sampler, SEED, ratio))) as f:
        return json.load(f)


def _table_row(table, sampler, section="## MF"):
    lines = table.split(section, 1)[1].splitlines()
    row = next(line for line in lines if line.startswith(f"| {sampler} |"))
    return [cell.strip() for cell in row.strip("|").split("|")]


def test_every_cell_ran_and_wrote_its_result(grid):
    from recbole_hnlm.files import file_sha256

    out, settings, summary, _, runner = grid
    inter = os.path.join(settings["data_path"], "ml-slice", "ml-slice.inter")  # as data_path gives it
    expected = ["MF-RNS-seed2020", "MF-DNS-seed2020", "MF-RNS-seed2020-train40", "MF-DNS-seed2020-train40"]
    assert runner.calls == expected
    assert summary["ran"] == expected and not summary["failed"] and not summary["skipped"]
    for sampler in SAMPLERS:
        result = _result(out, sampler)
        assert result["sampler"] == sampler and result["seed"] == SEED
        assert set(result["test_result"]) == set(METRICS) and result["metric_decimal_place"] == 4  # as RecBole's
        # the bytes of the files it read, which a resume compares (grid._needs_run)
        files = result["data_files_sha256"]
        assert inter in files and all(files[path] == file_sha256(path) for path in files), files
        assert all(0.0 <= v <= 1.0 for v in result["test_result"].values())
        assert result["test_result"]["ndcg@20"] > 0.0
        # the per-epoch log: two epochs, each with its wall time and validation NDCG@20
        assert [e["epoch"] for e in result["epochs"]] == [0, 1]
        assert all(e["train_time"] > 0 and 0 <= e["ndcg@20"] <= 1 for e in result["epochs"])
        assert result["best_valid_score"] == max(e["ndcg@20"] for e in result["epochs"])
        assert result["mean_epoch_time"] == pytest.approx(np.mean([e["train_time"] for e in result["epochs"]]))
        # per-cell isolation: the cell's checkpoint lives in the output folder
        assert os.path.isfile(os.path.join(out, result["checkpoint"]))
        assert result["checkpoint"].startswith(os.path.join("checkpoints", result["cell"]))
        # no per-epoch resume state: the grid resumes per cell, and the write would count in the epoch times
        assert not [n for n in os.listdir(os.path.join(out, "checkpoints", result["cell"])) if ".resume." in n]
    assert not [n for n in os.listdir(os.path.join(out, "runs")) if n.startswith(".tmp")]


def test_same_seed_gives_every_sampler_the_same_split(grid):
    out = grid[0]
    prints = {_result(out, s)["split"]["fingerprint"] for s in SAMPLERS}
    prints |= {_result(out, s, 0.4)["split"]["fingerprint"] for s in SAMPLERS}
    assert len(prints) == 1


def test_table_holds_the_runs_numbers(grid):
    out = grid[0]
    with open(grid[3]["table"]) as f:
        table = f.read()
    results = {s: _result(out, s)["test_result"] for s in SAMPLERS}
    for sampler in SAMPLERS:
        row = _table_row(table, sampler)
        assert row[1] == "1"
        assert row[2:6] == [f"{results[sampler][m]:.4f}" for m in METRICS]  # n = 1: mean, no std
        run = _result(out, sampler)
        assert row[7] == f"{run['epochs_run']} ({run['best_epoch']})"  # whole epochs for one seed, not "2.0 (1.0)"
    rel = (results["DNS"]["ndcg@20"] - results["RNS"]["ndcg@20"]) / results["RNS"]["ndcg@20"] * 100
    comparison = table.split("Relative improvement", 1)[1]
    row = _table_row(comparison, "DNS", section="|---")
    assert row[4] == f"{'+' if rel >= 0 else ''}{rel:.1f}% (n<2)"  # vs RNS NDCG@20, and no test with one seed


def test_csv_rows_match_the_results(grid):
    import csv

    out = grid[0]
    with open(grid[3]["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    for row in rows:
        result = _result(out, row["sampler"], float(row["train_ratio"]))
        assert row["cell"] == result["cell"] and int(row["seed"]) == SEED
        for metric in METRICS:
            assert float(row[metric]) == pytest.approx(result["test_result"][metric])
        assert float(row["fhn_rate"]) == pytest.approx(result["analysis"]["fhn"]["rate"])


def test_plots_are_non_empty_png_files(grid):
    paths = grid[3]
    for name in ("metrics_png", "convergence_png", "epoch_time_png", "popularity_png", "fhn_png", "sparsity_png"):
        with open(paths[name], "rb") as f:
            head = f.read(8)
        assert head == b"\x89PNG\r\n\x1a\n" and os.path.getsize(paths[name]) > 1000, name


def test_resume_skips_finished_cells(grid):
    out, settings, _, _, _ = grid
    files = [os.path.join(out, "runs", n) for n in os.listdir(os.path.join(out, "runs"))]
    mtimes = {p: os.stat(p).st_mtime_ns for p in files}
    runner = CountingRunner()
    summary = run_grid("ml-slice", ["MF"], SAMPLERS, [SEED], out, config_dict=settings,
                       analyses=("popularity", "fhn", "sparsity"), ratios=(0.4,), progress=False, cell_runner=runner,
                       fhn_pairs=512)
    assert runner.calls == [] and summary["ran"] == [] and len(summary["skipped"]) == 4
    assert {p: os.stat(p).st_mtime_ns for p in files} == mtimes


def test_cli_resumes_the_same_grid(grid, capsys):
    out, settings, _, _, _ = grid
    argv = ["--dataset", "ml-slice", "--models", "MF", "--samplers", *SAMPLERS, "--seeds", str(SEED), "--out", out,
            "--epochs", "2", "--analysis", "popularity,fhn,sparsity", "--ratios", "0.4", "--no-progress",
            "--no-plots", "--fhn-pairs", "512"] + [f"--{k}={v}" for k, v in settings.items() if k != "epochs"]
    assert cli_main(argv) == 0
    assert "0 ran, 4 skipped" in capsys.readouterr().out


def test_changed_settings_stop_before_training(grid):
    out, settings, _, _, _ = grid
    runner = CountingRunner()
    with pytest.raises(SettingsMismatch, match="another --out"):
        run_grid("ml-slice", ["MF"], SAMPLERS, [SEED], out, config_dict={**settings, "epochs": 3}, progress=False,
                 cell_runner=runner)
    assert runner.calls == []


def test_popularity_group_all_equals_recbole_test_metrics(grid):
    for sampler in SAMPLERS:
        result = _result(grid[0], sampler)
        groups = result["analysis"]["popularity"]
        for metric in ("recall@20", "ndcg@20"):  # RecBole rounds to 4 decimals
            assert groups["All"][metric] == pytest.approx(result["test_result"][metric], abs=5.1e-5)
        n_items = groups["All"]["n_items"]
        assert [groups[g]["n_items"] for g in A.POPULARITY_GROUPS] == [
            round(0.8 * n_items), n_items - round(0.8 * n_items) - round(0.05 * n_items), round(0.05 * n_items)]
        assert sum(groups[g]["n_test"] for g in A.POPULARITY_GROUPS) == groups["All"]["n_test"]


def test_sparsity_cells_train_on_a_subsample_and_test_on_the_full_split(grid):
    for sampler in SAMPLERS:
        full, sparse = _result(grid[0], sampler), _result(grid[0], sampler, 0.4)
        assert sparse["split"]["n_train"] == full["split"]["n_train_used"] == full["split"]["n_train"]
        assert 0.35 < sparse["split"]["n_train_used"] / full["split"]["n_train"] < 0.45
        assert sparse["split"]["n_test"] == full["split"]["n_test"]


def test_failing_cell_is_recorded_and_the_grid_goes_on(tmp_path):
    def fake(cell, dataset, out, config_dict=None, **kwargs):
        if cell.sampler == "DNS":
            raise RuntimeError("boom")
        return {"cell": cell.key, "model": cell.model, "sampler": cell.sampler, "seed": cell.seed,
                "train_ratio": 1.0, "dataset": dataset, "valid_metric": "NDCG@20", "best_valid_score": 0.1,
                "best_epoch": 0, "epochs_run": 1, "mean_epoch_time": 1.0, "total_time": 1.0, "analysis": {},
                "test_result": {m: 0.1 + 0.01 * cell.seed for m in METRICS}, "epochs": [],
                "split": {"fingerprint": "0" * 40}}

    out = str(tmp_path)
    summary = run_grid("toy", ["MF"], ["RNS", "DNS", "AHNS"], [1, 2], out, progress=False, cell_runner=fake,
                       cell_checker=None)  # "toy" has no atomic files: skip the up-front checks
    assert summary["failed"] == ["MF-DNS-seed1", "MF-DNS-seed2"]
    assert summary["errors"] == {key: os.path.join(out, "runs", f"{key}.error.txt") for key in summary["failed"]}
    assert len(summary["ran"]) == 4
    with open(os.path.join(out, "runs", "MF-DNS-seed1.error.txt")) as f:
        assert "RuntimeError: boom" in f.read()
    assert len(load_results(out)) == 4
    write_report(out, plots=False)
    with open(os.path.join(out, "table.md")) as f:
        table = f.read()
    assert "## Failed cells" in table and "MF-DNS-seed2" in table
    # AHNS - RNS is the same on both seeds: the paired test is undefined, not a crash
    assert "p=n/a, n=2" in table
    # the error file goes away once the cell succeeds
    run_grid("toy", ["MF"], ["DNS"], [1], out, progress=False, cell_checker=None,
             cell_runner=lambda cell, *a, **k: fake(Cell(cell.model, "RNS", cell.seed), *a, **k) | {
                 "cell": cell.key, "sampler": "DNS"})
    assert not os.path.exists(os.path.join(out, "runs", "MF-DNS-seed1.error.txt"))


def test_paired_test_matches_scipy_and_hand_computation():
    a, b = [0.30, 0.32, 0.31], [0.28, 0.29, 0.30]
    result = paired_test(a, b)
    reference = stats.ttest_rel(a, b)
    assert result["n"] == 3
    assert result["t"] == pytest.approx(reference.statistic) and result["p"] == pytest.approx(reference.pvalue)
    # differences 0.02, 0.03, 0.01: mean 0.02, sd 0.01 -> t = 0.02 / (0.01 / sqrt(3)); two-sided p with 2 dof
    assert result["t"] == pytest.approx(2 * math.sqrt(3), rel=1e-6)
    assert result["p"] == pytest.approx(2 * stats.t.sf(2 * math.sqrt(3), 2), rel=1e-6)
    assert paired_test([0.3], [0.2]) == {"n": 1, "t": None, "p": None, "note": "n<2"}
    assert math.isnan(paired_test([0.3, 0.4], [0.2, 0.3])["p"])
    with pytest.raises(ValueError):
        paired_test([0.1, 0.2], [0.1])


def test_popularity_groups_split_80_15_5_by_clicks():
    rng = np.random.default_rng(0)
    counts = np.concatenate([[0], rng.permutation(np.arange(100)) * 3])  # 100 items with distinct click counts
    groups = A.popularity_groups(counts)
    sizes = [int(groups[g].sum()) for g in A.POPULARITY_GROUPS]
    assert sizes == [80, 15, 5]
    assert not any(groups[g][0] for g in A.POPULARITY_GROUPS)  # padding id
    assert (groups["Unpopular"] | groups["Normal"] | groups["Popular"])[1:].all()
    assert counts[groups["Unpopular"]].max() < counts[groups["Normal"]].min()
    assert counts[groups["Normal"]].max() < counts[groups["Popular"]].min()
    assert set(np.flatnonzero(groups["Popular"])) == set(np.argsort(counts)[-5:])


def test_group_metrics_on_a_known_ranking():
    # scores = item id for every user: the ranking is 5, 4, 3, 2, 1 before masking
    n_items = 6
    user_e = torch.ones(3, 1)
    item_e = torch.arange(n_items, dtype=torch.float32).unsqueeze(1)
    exclude = (torch.tensor([1]), torch.tensor([5]))  # user 1 trained on item 5
    test = (torch.tensor([1, 1, 2]), torch.tensor([4, 1, 2]))
    low = np.array([False, True, True, False, False, False])  # items 1, 2
    groups = {"All": np.arange(n_items) > 0, "Low": low}
    out = A.group_metrics(user_e, item_e, exclude, test, groups, k=2)
    # user 1 ranks 4, 3: hit on 4 (of 2 test items); user 2 ranks 5, 4: no hit
    d = 1 / np.log2(np.arange(2, 4))
    assert out["All"]["recall@2"] == pytest.approx((0.5 + 0.0) / 2)
    assert out["All"]["ndcg@2"] == pytest.approx((d[0] / d.sum() + 0.0) / 2)
    assert out["Low"]["recall@2"] == 0.0 and out["Low"]["n_users"] == 2 and out["Low"]["n_test"] == 2
    out = A.group_metrics(user_e, item_e, exclude, test, groups, k=5)
    assert out["All"]["recall@5"] == pytest.approx(1.0)  # with padding and training items masked, all test items rank


def test_false_hard_negative_rate_constructed_cases():
    item_e = torch.eye(6)
    test = (torch.tensor([0, 0, 1]), torch.tensor([2, 3, 4]))
    users = torch.tensor([0, 1, 2])  # user 2 has no test items: not counted
    unrelated = torch.stack([item_e[5], item_e[5], item_e[2]])
    rate, n = A.false_hard_negative_rate(unrelated, users, item_e, test)
    assert (rate, n) == (0.0, 2)
    # user 0's negative points (up to scale and a tiny offset) at its test item 3; user 1's at item 5
    close = torch.stack([2.0 * item_e[3] + 0.01 * item_e[1], item_e[5], item_e[4]])
    rate, n = A.false_hard_negative_rate(close, users, item_e, test)
    assert (rate, n) == (0.5, 2)
    # another user's test item is not a false negative for this user
    rate, _ = A.false_hard_negative_rate(torch.stack([item_e[4], item_e[2]]), torch.tensor([0, 1]), item_e, test)
    assert rate == 0.0
    assert A.false_hard_negative_rate(item_e[:1], torch.tensor([2]), item_e, test)[1] == 0


def test_fhn_probe_measures_in_eval_mode_and_keeps_the_training_mode(fast_config):
    """The per-epoch probe ran with the model in training mode (NGCF's message dropout on) while the best checkpoint
    was probed in eval mode: the two columns of the report measured different models."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_hnlm.config import Config
    from recbole_hnlm.model.ngcf import NGCF

    config = Config(model="NGCF", config_dict={**fast_config, "sampler": "DNS", "message_dropout": 0.5})
    init_seed(config["seed"], True)
    train_data, _, test_data = data_preparation(config, create_dataset(config))
    model = NGCF(config, train_data._dataset)
    users, items = (torch.as_tensor(train_data._dataset.inter_feat[f]) for f in ("user_id", "item_id"))
    test = tuple(torch.as_tensor(test_data._dataset.inter_feat[f]) for f in ("user_id", "item_id"))
    model.eval()
    for threshold in (0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 0.995, 0.999):  # one where some negatives count, not all
        probe = A.FHNProbe(users, items, test, model.n_users, model.n_items, 512, seed=0, threshold=threshold)
        in_eval = probe(model)
        if 0.0 < in_eval < 1.0:
            break
    assert 0.0 < in_eval < 1.0 and not model.training
    model.train()
    assert probe(model) == in_eval and model.training


def test_subsample_per_user_keeps_the_quota_of_every_user():
    users = np.repeat(np.arange(1, 6), [1, 2, 5, 10, 7])
    keep = A.subsample_per_user(users, 0.4, seed=3)
    kept = np.bincount(users[keep], minlength=6)[1:]
    assert kept.tolist() == [max(1, round(0.4 * n)) for n in (1, 2, 5, 10, 7)]
    assert np.all(np.diff(keep) > 0)
    assert np.array_equal(keep, A.subsample_per_user(users, 0.4, seed=3))
    assert not np.array_equal(keep, A.subsample_per_user(users, 0.4, seed=4))
    assert np.array_equal(A.subsample_per_user(users, 1.0, seed=3), np.arange(len(users)))


def test_probe_leaves_the_random_stream_unchanged():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    with preserved_rng():
        torch.rand(100)
    assert torch.equal(torch.rand(3), expected)


def test_a_sparsity_cells_training_negatives_may_be_the_items_it_dropped(ml_slice):
    """The training sampler of a sparsity cell was the full split's: a user's negatives excluded the training items
    the subsample dropped, which in a sparser dataset are not theirs (RNS and HNLMRec's random negative; the
    candidates of DNS, MixGCF and AHNS excluded only the subsample's positives). The evaluation masks stay the full
    split's."""
    from recbole_hnlm.benchmark.runner import build_data
    from recbole_hnlm.config import Config
    from recbole_hnlm.quick_start import read_dataset

    data_path, dataset = ml_slice
    config = Config(model="MF", dataset=dataset, config_dict={"data_path": data_path, "use_gpu": False},
                    command_line=False)
    train, valid, test, full_train = build_data(config, read_dataset(config), train_ratio=0.4, seed=3)

    def items_by_user(data):
        users, items = (data.inter_feat[field].numpy() for field in (data.uid_field, data.iid_field))
        by_user = {}
        for user, item in zip(users, items):
            by_user.setdefault(int(user), set()).add(int(item))
        return by_user

    kept, full = items_by_user(train.dataset), items_by_user(full_train)
    assert sum(map(len, kept.values())) < 0.45 * sum(map(len, full.values()))
    for user, items in full.items():
        assert train._sampler.used_ids[user] == kept.get(user, set()), user
        assert items <= valid._sampler.used_ids[user] and items <= test._sampler.used_ids[user], user  # the masks
    # drawn: the dropped items come up as negatives
    users = torch.tensor(sorted(full), dtype=torch.long).repeat_interleave(200)
    drawn = train._sampler.sample_by_user_ids(users, None, 1).numpy()
    dropped = {(u, i) for u, items in full.items() for i in items - kept.get(u, set())}
    assert any((int(u), int(i)) in dropped for u, i in zip(users.numpy(), drawn))
    assert not any(int(i) in kept.get(int(u), set()) for u, i in zip(users.numpy(), drawn))


def test_split_seed_fixes_the_split_across_training_seeds(ml_slice, tmp_path):
    data_path, dataset = ml_slice
    settings = {"data_path": data_path, "epochs": 1, "train_batch_size": 1024, "use_gpu": False}
    fixed = [run_cell(Cell("MF", "RNS", seed), dataset, str(tmp_path / f"fixed{seed}"), saved=False,
                      config_dict=dict(settings, split_seed=2020)) for seed in (2021, 2022)]
    free = run_cell(Cell("MF", "RNS", 2021), dataset, str(tmp_path / "free"), saved=False, config_dict=settings)
    assert fixed[0]["split"]["fingerprint"] == fixed[1]["split"]["fingerprint"]
    assert fixed[0]["split"]["split_seed"] == 2020 and free["split"]["split_seed"] == 2021
    assert free["split"]["fingerprint"] != fixed[0]["split"]["fingerprint"]
    # the training seed still matters: different initialisation, different scores
    assert fixed[0]["best_valid_result"] != fixed[1]["best_valid_result"]


def test_a_cell_records_its_dataset_files_as_a_relative_data_path_gives_them(ml_slice, tmp_path, monkeypatch):
    """Absolute paths recorded from a relative data_path made a resume from another working folder re-hash the
    first folder's files while the cells to run read others (grid._needs_run reads the recorded paths again)."""
    data_path, dataset = ml_slice
    monkeypatch.chdir(os.path.dirname(data_path))
    settings = {"data_path": os.path.basename(data_path), "epochs": 1, "train_batch_size": 1024, "use_gpu": False}
    result = run_cell(Cell("MF", "RNS", SEED), dataset, str(tmp_path / "out"), saved=False, config_dict=settings)
    files = result["data_files_sha256"]
    assert os.path.join(os.path.basename(data_path), dataset, f"{dataset}.inter") in files
    assert not any(os.path.isabs(path) for path in files), files


def test_best_epoch_is_the_tested_one(ml_slice, tmp_path):
    """The cell's best epoch is the epoch of the checkpoint that is tested (after a negative warm-up, one trained
    with the sampler); without a checkpoint, RecBole's rule on the logged scores."""
    from recbole_hnlm.checkpoint import read_trainer_state

    data_path, dataset = ml_slice
    settings = {"data_path": data_path, "epochs": 4, "train_batch_size": 1024, "use_gpu": False,
                "dns_candidates": 16, "negative_warmup_epochs": 2}
    saved = run_cell(Cell("LightGCN", "DNS", SEED), dataset, str(tmp_path / "saved"), config_dict=settings)
    tested = read_trainer_state(os.path.join(tmp_path, "saved", saved["checkpoint"]))["epoch"]
    assert saved["best_epoch"] == tested >= 2
    unsaved = run_cell(Cell("LightGCN", "DNS", SEED), dataset, str(tmp_path / "unsaved"), saved=False,
                       config_dict=settings)
    scores = {e["epoch"]: e["valid_score"] for e in unsaved["epochs"]}
    after = max(scores[2], scores[3])
    assert unsaved["best_epoch"] == (3 if scores[3] >= after else 2)


def test_best_epoch_rule_without_a_checkpoint():
    """RecBole keeps the later of equal scores; after a negative warm-up only later epochs count (the trainer starts
    model selection afresh at the switch); a smaller-is-better metric picks the minimum."""
    from types import SimpleNamespace

    from recbole_hnlm.benchmark.runner import _best_epoch

    epochs = [{"epoch": e, "valid_score": v} for e, v in enumerate([0.30, 0.50, 0.40, 0.45, 0.45])]
    bigger = {"valid_metric_bigger": True}

    def best(warm_up, config=bigger):
        return _best_epoch(None, SimpleNamespace(negative_warmup_epochs=warm_up), config, epochs, saved=False)

    assert best(0) == 1
    assert best(2) == 4  # the warm-up's 0.50 no longer counts; of the equal 0.45s the later one
    assert best(9) == 1  # no epoch after the warm-up: all of them
    assert best(0, {"valid_metric_bigger": False}) == 0


def test_a_cells_console_is_removed_after_the_cell(tmp_path, capsys):
    """The console a cell added stayed on the root logger, bound to the stream of its time: once that stream was
    closed (a notebook cell's, a test's capture), every later record printed a "--- Logging error ---" traceback."""
    import logging

    from recbole_hnlm.benchmark.runner import cell_logging

    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = [h for h in saved if type(h) is not logging.StreamHandler]
    before, level = root.handlers[:], root.level
    try:
        with cell_logging({"state": None}, str(tmp_path / "logs" / "cell.log")):
            consoles = [h for h in root.handlers if type(h) is logging.StreamHandler]
            logging.getLogger("test").warning("inside the cell")
        after = root.handlers[:]
    finally:
        root.handlers = saved
    assert len(consoles) == 1 and "inside the cell" in capsys.readouterr().err
    assert after == before and root.level == level


def test_a_cells_console_shows_warnings_without_colour_codes(tmp_path, capsys):
    """The grid's console (a redirected `compare.py ... > grid.log`) printed RecBole-coloured warnings raw."""
    import logging

    from recbole.utils import set_color

    from recbole_hnlm.benchmark.runner import cell_logging

    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = [h for h in saved if type(h) is not logging.StreamHandler]  # the cell's console on stderr
    try:
        with cell_logging({"state": None}, str(tmp_path / "logs" / "cell.log")):
            logging.getLogger("test").warning(set_color("candidates redrawn", "red") + " 3 times")
    finally:
        root.handlers = saved
    err = capsys.readouterr().err
    assert "candidates redrawn 3 times" in err and "\x1b[" not in err
    assert (tmp_path / "logs" / "cell.log").read_text().endswith("candidates redrawn 3 times\n")
