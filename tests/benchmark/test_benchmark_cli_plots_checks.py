"""What the benchmark's figures show (bar heights, error bars, curves, axes, which files) and what its command line
passes on to the grid: checks of ``benchmark.plots`` on hand-built results and of ``benchmark.__main__``."""
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from recbole_hnlm.benchmark import plots
from recbole_hnlm.benchmark.analysis import POPULARITY_GROUPS
from recbole_hnlm.benchmark.report import METRIC_NAMES
from recbole_hnlm.benchmark.runner import METRICS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def result(model, sampler, seed, value, ratio=1.0, epochs=None, epoch_time=1.0, analysis=None,
           valid_metric="NDCG@20"):
    """A finished cell's record (the fields the figures read): every test metric ``value + k / 1000``."""
    return {"cell": f"{model}-{sampler}-seed{seed}", "model": model, "sampler": sampler, "seed": seed,
            "train_ratio": ratio, "valid_metric": valid_metric, "best_epoch": 0, "epochs_run": 1,
            "mean_epoch_time": epoch_time, "median_epoch_time": epoch_time, "analysis": analysis or {},
            "test_result": {m: value + k / 1000 for k, m in enumerate(METRICS)},
            "epochs": epochs if epochs is not None else [{"epoch": 0, "ndcg@20": value}]}


@pytest.fixture
def figures(monkeypatch):
    """``{file name: figure}`` of every figure saved (the real ``_save`` still writes it)."""
    saved = {}
    real = plots._save

    def spy(fig, path):
        saved[os.path.basename(path)] = fig
        return real(fig, path)

    monkeypatch.setattr(plots, "_save", spy)
    return saved


def png_size(path):
    """``(width, height)`` in pixels from a PNG's IHDR chunk."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head.startswith(b"\x89PNG")
    return struct.unpack(">II", head[16:24])


def bars(ax):
    """``[(label, [(x centre, height, width, error)])]`` of each bar group of ``ax``, in drawing order."""
    from matplotlib.container import BarContainer

    groups = []
    for container in [c for c in ax.containers if isinstance(c, BarContainer)]:
        errors = [0.0] * len(container.patches)
        if container.errorbar is not None:
            segments = container.errorbar.lines[2][0].get_segments()
            errors = [(seg[1][1] - seg[0][1]) / 2 for seg in segments]
        groups.append((container.get_label(), [(p.get_x() + p.get_width() / 2, p.get_height(), p.get_width(), e)
                                               for p, e in zip(container.patches, errors)]))
    return groups


def test_metric_bars_are_seed_means_with_sample_std_in_the_papers_order(tmp_path, figures):
    """metrics.png: one panel per backbone (MF before LightGCN), samplers in the paper's order, bars = mean over
    seeds, error bars = sample std (0 for one seed), bars of a metric side by side around its tick; sparsity cells
    and the figure's size (5 in per panel at 120 dpi) as documented."""
    results = [result("LightGCN", "DNS", 1, 0.30), result("LightGCN", "DNS", 2, 0.34),
               result("LightGCN", "RNS", 1, 0.2),
               result("MF", "HNLMRec", 1, 0.5), result("MF", "RNS", 1, 0.1), result("MF", "RNS", 2, 0.2),
               result("MF", "RNS", 3, 0.6), result("MF", "RNS", 1, 0.9, ratio=0.4)]
    path = plots.plot_metrics(results, str(tmp_path / "metrics.png"))
    assert png_size(path) == (2 * 5 * 120, int(3.6 * 120))
    axes = figures["metrics.png"].axes
    assert [ax.get_title() for ax in axes] == ["MF", "LightGCN"]
    assert [t.get_text() for t in axes[0].get_xticklabels()] == [METRIC_NAMES[m] for m in METRICS]
    mf, lightgcn = bars(axes[0]), bars(axes[1])
    assert [label for label, _ in mf] == ["RNS (n=3)", "HNLMRec (n=1)"]
    assert [label for label, _ in lightgcn] == ["RNS (n=1)", "DNS (n=2)"]
    rns = np.array([0.1, 0.2, 0.6])
    for k, (x, height, width, error) in enumerate(mf[0][1]):
        assert x == pytest.approx(k - 0.2) and width == pytest.approx(0.4)
        assert height == pytest.approx(rns.mean() + k / 1000)
        assert error == pytest.approx(rns.std(ddof=1))
    assert [bar[3] for bar in mf[1][1]] == [0.0] * 4  # one seed: no spread, not NaN
    assert [bar[0] for bar in mf[1][1]] == pytest.approx([k + 0.2 for k in range(4)])
    assert lightgcn[1][1][0][1] == pytest.approx(0.32) and lightgcn[1][1][0][3] == pytest.approx(np.std([.3, .34],
                                                                                                         ddof=1))


def test_convergence_curve_is_the_mean_over_the_seeds_that_reached_each_epoch(tmp_path, figures):
    """convergence.png: the validation metric the runs logged (``valid_metric``, lower-cased) per epoch, averaged
    over the seeds that reached the epoch, epochs in order; epochs without it and sparsity cells are left out."""
    def epochs(*values):
        return [{"epoch": e, "recall@10": v} for e, v in values]

    results = [result("MF", "DNS", 1, 0.1, epochs=epochs((2, 0.5), (0, 0.1), (1, 0.3)) + [{"epoch": 3}],
                      valid_metric="Recall@10"),
               result("MF", "DNS", 2, 0.1, epochs=epochs((0, 0.3), (1, 0.5)), valid_metric="Recall@10"),
               result("MF", "DNS", 3, 0.1, ratio=0.2, epochs=epochs((0, 9.0), (5, 9.0)), valid_metric="Recall@10"),
               result("MF", "RNS", 1, 0.1, epochs=epochs((0, 0.2)), valid_metric="Recall@10")]
    paths = plots.write_plots(results, str(tmp_path))
    ax = figures["convergence.png"].axes[0]
    assert ax.get_ylabel() == "validation Recall@10" and ax.get_xlabel() == "epoch"
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines) == ["RNS", "DNS"]
    assert list(lines["DNS"].get_xdata()) == [0, 1, 2]
    assert list(lines["DNS"].get_ydata()) == pytest.approx([0.2, 0.4, 0.5])
    assert list(lines["RNS"].get_xdata()) == [0] and list(lines["RNS"].get_ydata()) == pytest.approx([0.2])
    assert all(float(tick).is_integer() for tick in ax.xaxis.get_major_locator().tick_values(0, 2))
    assert paths["convergence_png"] == str(tmp_path / "convergence.png")


def test_a_sampler_without_any_logged_value_draws_no_line(figures, tmp_path):
    """A run whose epochs never logged the key adds no empty line (and no legend entry) to the panel."""
    results = [result("MF", "RNS", 1, 0.1, epochs=[{"epoch": 0}]), result("MF", "DNS", 1, 0.1)]
    plots.plot_curve(results, str(tmp_path / "c.png"))
    assert [line.get_label() for line in figures["c.png"].axes[0].get_lines()] == ["DNS"]


def test_epoch_time_bars_are_the_mean_over_seeds_of_each_runs_median(tmp_path, figures):
    """epoch_time.png: one panel per backbone (4 in wide), a bar per sampler = mean over seeds of the run's median
    epoch time, labelled s / epoch."""
    results = [result("MF", "RNS", 1, 0.1, epoch_time=2.0), result("MF", "RNS", 2, 0.1, epoch_time=4.0),
               result("MF", "DNS", 1, 0.1, epoch_time=7.0), result("NGCF", "RNS", 1, 0.1, epoch_time=1.5)]
    path = plots.plot_epoch_time(results, str(tmp_path / "epoch_time.png"))
    assert png_size(path)[0] == 2 * 4 * 120
    axes = figures["epoch_time.png"].axes
    assert [ax.get_title() for ax in axes] == ["MF", "NGCF"] and axes[0].get_ylabel() == "s / epoch"
    assert [p.get_height() for p in axes[0].patches] == pytest.approx([3.0, 7.0])
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["RNS", "DNS"]
    assert [p.get_height() for p in axes[1].patches] == pytest.approx([1.5])


def test_popularity_bars_are_recall_at_20_per_group_ignoring_missing_values(tmp_path, figures):
    """popularity.png: Recall@20 per popularity group, averaged over the main cells' seeds (NaN of an empty group
    skipped); a sparsity cell's analysis is not averaged in."""
    def groups(*recalls):
        return {"popularity": {name: {"recall@20": r, "ndcg@20": -1.0} for name, r in zip(POPULARITY_GROUPS, recalls)}}

    results = [result("MF", "RNS", 1, 0.1, analysis=groups(0.1, 0.2, float("nan"))),
               result("MF", "RNS", 2, 0.1, analysis=groups(0.3, 0.4, 0.6)),
               result("MF", "RNS", 3, 0.1, ratio=0.2, analysis=groups(5.0, 5.0, 5.0))]
    paths = plots.write_plots(results, str(tmp_path))
    ax = figures["popularity.png"].axes[0]
    assert ax.get_ylabel() == "Recall@20"
    assert [t.get_text() for t in ax.get_xticklabels()] == list(POPULARITY_GROUPS)
    (label, drawn), = bars(ax)
    assert label == "RNS" and [bar[1] for bar in drawn] == pytest.approx([0.2, 0.3, 0.6])
    assert "popularity_png" in paths


def test_sparsity_curve_is_test_ndcg_at_20_against_the_percent_kept(tmp_path, figures):
    """sparsity.png: test NDCG@20 (mean over seeds) against the share of training interactions in percent, the full
    split (100 %) included; only backbones with sparsity cells get a panel."""
    results = [result("MF", "DNS", 1, 0.40), result("MF", "DNS", 1, 0.10, ratio=0.2),
               result("MF", "DNS", 2, 0.20, ratio=0.2), result("MF", "RNS", 1, 0.05, ratio=0.6),
               result("MF", "RNS", 1, 0.30), result("LightGCN", "DNS", 1, 0.5)]
    ndcg20 = METRICS.index("ndcg@20") / 1000
    plots.write_plots(results, str(tmp_path))
    axes = figures["sparsity.png"].axes
    assert [ax.get_title() for ax in axes] == ["MF"]
    assert axes[0].get_xlabel() == "% of training interactions" and axes[0].get_ylabel() == "test NDCG@20"
    lines = {line.get_label(): line for line in axes[0].get_lines()}
    assert list(lines) == ["RNS", "DNS"]
    assert list(lines["DNS"].get_xdata()) == pytest.approx([20, 100])
    assert list(lines["DNS"].get_ydata()) == pytest.approx([0.15 + ndcg20, 0.40 + ndcg20])
    assert list(lines["RNS"].get_xdata()) == pytest.approx([60, 100])


@pytest.mark.parametrize("analysis, ratios, expected", [
    ({}, [1.0], {"metrics_png", "convergence_png", "epoch_time_png"}),
    ({"fhn": {"rate": 0.1}}, [1.0], {"metrics_png", "convergence_png", "epoch_time_png", "fhn_png"}),
    ({}, [1.0, 0.5], {"metrics_png", "convergence_png", "epoch_time_png", "sparsity_png"}),
    ({}, [0.5], {"sparsity_png"}),
    ({"popularity": {}}, [1.0], {"metrics_png", "convergence_png", "epoch_time_png"}),
], ids=["main", "fhn", "sparsity", "only-sparsity", "empty-popularity"])
@pytest.mark.filterwarnings("error:No artists with labels:UserWarning")
def test_write_plots_makes_exactly_the_figures_the_results_support(analysis, ratios, expected, tmp_path):
    """Each named figure exists as a PNG at ``folder/<name>.png``; nothing else is written and no figure stays open.
    A panel with no line (here: no epoch logged ``fhn_rate``) has no legend rather than matplotlib's warning."""
    import matplotlib.pyplot as plt

    results = [result("MF", "RNS", 1, 0.1, ratio=r, analysis=analysis) for r in ratios]
    before = plt.get_fignums()
    paths = plots.write_plots(results, str(tmp_path))
    assert set(paths) == expected and plt.get_fignums() == before
    for name, path in paths.items():
        assert path == str(tmp_path / (name[:-len("_png")] + ".png"))
        png_size(path)
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in paths.values())


def test_fhn_figure_is_the_rate_per_epoch(tmp_path, figures):
    """fhn.png: the logged ``fhn_rate`` per epoch, labelled as a false-hard-negative rate."""
    epochs = [{"epoch": 0, "ndcg@20": 0.1, "fhn_rate": 0.25}, {"epoch": 1, "ndcg@20": 0.2, "fhn_rate": 0.5}]
    plots.write_plots([result("MF", "RNS", 1, 0.1, epochs=epochs, analysis={"fhn": {"rate": 0.5}})], str(tmp_path))
    ax = figures["fhn.png"].axes[0]
    assert ax.get_ylabel() == "false-hard-negative rate"
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["RNS"]
    (line,) = ax.get_lines()
    assert list(line.get_ydata()) == pytest.approx([0.25, 0.5])


def test_a_figure_is_written_in_the_format_its_name_gives(tmp_path):
    """``_save`` names the format from the extension (its temporary file has none): ``.svg`` is an SVG."""
    path = plots.plot_epoch_time([result("MF", "RNS", 1, 0.1)], str(tmp_path / "t.svg"))
    assert path == str(tmp_path / "t.svg")
    with open(path) as f:
        assert "<svg" in f.read(2000)


def test_plots_need_no_display_whatever_backend_is_configured(tmp_path):
    """The figures use Agg even when MPLBACKEND names an interactive backend and there is no display."""
    code = ("import sys; from recbole_hnlm.benchmark.plots import plot_epoch_time; "
            "r = {'model': 'MF', 'sampler': 'RNS', 'seed': 1, 'train_ratio': 1.0, 'mean_epoch_time': 1.0, "
            "'epochs_run': 1, 'best_epoch': 0, 'test_result': {}}; plot_epoch_time([r], sys.argv[1])")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(MPLBACKEND="TkAgg", PYTHONPATH=REPO)
    process = subprocess.run([sys.executable, "-c", code, str(tmp_path / "t.png")], env=env, capture_output=True,
                             text=True, timeout=120, cwd=REPO)
    assert process.returncode == 0, process.stderr
    png_size(str(tmp_path / "t.png"))


# --- the command line -------------------------------------------------------------------------------------------

def cli_error(argv, capsys):
    """The one ``error:`` line of a malformed command line (exit status 2)."""
    from recbole_hnlm.benchmark.__main__ import main

    assert main(argv + ["--out", "never-written", "--no-progress"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].endswith("(see --help)")
    return errors[0]


def test_defaults_are_the_documented_grid():
    """No options: the issue's grid (help text), ``results/<dataset>``, the sparsity ratios and FHN pairs of the
    API's defaults, no analyses, no shared settings."""
    import inspect

    from recbole_hnlm.benchmark.__main__ import parse_args
    from recbole_hnlm.benchmark.grid import SPARSITY_RATIOS
    from recbole_hnlm.benchmark.runner import run_cell

    args = parse_args([])
    assert (args.dataset, args.out) == ("ml-100k", os.path.join("results", "ml-100k"))
    assert args.models == ["LightGCN", "MF"] and args.seeds == [2020, 2021, 2022]
    assert args.samplers == ["RNS", "DNS", "MixGCF", "AHNS", "HNLMRec"]
    assert args.analyses == [] and tuple(args.ratios) == tuple(SPARSITY_RATIOS)
    assert args.fhn_pairs == inspect.signature(run_cell).parameters["fhn_pairs"].default
    assert (args.config, args.config_files, args.epochs) == ({}, None, None)
    assert not (args.report_only or args.no_plots or args.no_progress)
    assert parse_args(["-d", "toy"]).out == os.path.join("results", "toy")


def test_option_values_at_their_bounds_and_lenient_lists(tmp_path):
    """The largest seed numpy takes is accepted; ``--epochs 1`` too; empty items of ``--ratios`` and blanks around
    ``--analysis`` names are ignored; ``--epochs`` becomes the shared ``epochs`` setting."""
    from recbole_hnlm.benchmark.__main__ import parse_args

    args = parse_args(["--seeds", "0", str(2 ** 32 - 1), "--epochs", "1", "--ratios", "0.2,,0.5,",
                       "--analysis", " fhn , sparsity", "--fhn-pairs", "1"])
    assert args.seeds == [0, 2 ** 32 - 1] and args.config == {"epochs": 1} and args.fhn_pairs == 1
    assert tuple(args.ratios) == (0.2, 0.5) and args.analyses == ["fhn", "sparsity"]
    assert parse_args(["--ratios", "0.01,0.99"]).ratios == (0.01, 0.99)


@pytest.mark.parametrize("argv, expected", [
    (["--seeds", str(2 ** 32)], f"got '{2 ** 32}'"),
    (["--ratios", ","], "argument --ratios: expected comma-separated numbers strictly between 0 and 1"),
    (["--ratios", "0,0.5"], "argument --ratios: expected comma-separated numbers"),
    (["--ratios", "0.401,0.2,0.4"], "argument --ratios: 0.401 and 0.4 both name their cells train40"),
    (["--samplers", "RNS", "rns"], "argument --samplers: rns repeats RNS (names are case-insensitive)"),
    (["--models", "MF", "MF"], "argument --models: MF is listed twice"),
    (["--checkpoint_dir=x"], "--checkpoint_dir=x is set by each cell here: use --out instead"),
    (["--model=MF"], "--model=MF is set by each cell here: use --models instead"),
    (["--data=ml-1m"], "argument --dataset"),
    (["--no_plots"], "--no-plots"),
], ids=["seed-max", "no-ratio", "ratio-0", "ratio-clash", "sampler-case", "model-twice", "checkpoint_dir", "model",
        "no-abbreviation", "flag-hint"])
def test_more_malformed_command_lines(argv, expected, capsys):
    """One error line naming the problem: each bound, clash and cell-set key (``--data=`` is a RecBole-like setting,
    not an abbreviation of ``--dataset``: it gets no silent meaning)."""
    if argv[0] == "--data=ml-1m":
        from recbole_hnlm.benchmark.__main__ import parse_args

        args = parse_args(argv)  # no abbreviations: a shared setting named 'data', the dataset stays the default
        assert args.dataset == "ml-100k" and args.config == {"data": "ml-1m"}
        return
    assert expected in cli_error(argv, capsys)


def test_config_files_are_split_and_each_must_be_a_file(tmp_path, capsys):
    """``--config_files 'a b'`` is two files; every missing one (or a folder) is named in the error."""
    from recbole_hnlm.benchmark.__main__ import parse_args

    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("epochs: 2\n")
    b.write_text("epochs: 3\n")
    assert parse_args(["--config_files", f"{a} {b}"]).config_files == [str(a), str(b)]
    error = cli_error(["--config_files", f"{tmp_path / 'x.yaml'} {a} {tmp_path / 'y.yaml'}"], capsys)
    assert f"{tmp_path / 'x.yaml'}, {tmp_path / 'y.yaml'} not found" in error
    assert f"{tmp_path} not found" in cli_error(["--config_files", str(tmp_path)], capsys)


def test_fail_exit_status_is_1_only_for_a_failed_write(capsys):
    """``fail``: 1 for a :class:`WriteError` (a full disk), 2 for any other error, the line on stderr."""
    from recbole_hnlm.benchmark.__main__ import fail
    from recbole_hnlm.errors import WriteError

    assert fail(WriteError("disk full")) == 1
    assert fail(FileNotFoundError("gone")) == 2 and fail(ValueError("bad")) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.splitlines() == ["error: disk full", "error: gone", "error: bad"]


def test_main_reads_sys_argv_when_given_no_arguments(tmp_path, monkeypatch, capsys):
    """``main()`` (and the package's ``main``) parse ``sys.argv[1:]`` and return the exit status."""
    import recbole_hnlm.benchmark as benchmark

    missing = str(tmp_path / "none")
    monkeypatch.setattr(sys, "argv", ["compare.py", "--report-only", "--out", missing])
    assert benchmark.main() == 2
    assert f"No runs found in '{missing}'" in capsys.readouterr().err
    assert "main" in benchmark.__all__


class Cells:
    """A cell runner returning a finished result of the shape ``run_cell`` writes (no training); ``fail``: samplers
    whose cells raise."""

    def __init__(self, fail=()):
        self.fail = fail

    def __call__(self, cell, dataset, out, config_dict=None, analyses=(), fhn_pairs=2048, **kwargs):
        if cell.sampler in self.fail:
            raise RuntimeError("boom")
        value = 0.1 + cell.seed / 100
        analysis = ({"fhn": {"rate": 0.0, "threshold": 0.9, "pairs": 10, "requested_pairs": fhn_pairs}}
                    if "fhn" in analyses else {})
        return {**result(cell.model, cell.sampler, cell.seed, value, ratio=cell.train_ratio, analysis=analysis),
                "cell": cell.key, "dataset": dataset, "best_valid_score": value, "total_time": 1.0,
                "split": {"fingerprint": "0" * 40,
                          **({"train_negatives": "subsample"} if cell.train_ratio < 1 else {})}}


@pytest.fixture
def grid_calls(monkeypatch):
    """Every ``run_grid`` call of ``main`` (its keyword arguments), run for real with :class:`Cells` as the cell
    runner and no dataset checks; ``grid_calls.runner`` can be replaced."""
    from recbole_hnlm.benchmark import grid

    real = grid.run_grid

    def spy(*args, **kwargs):
        calls.append(dict(kwargs, positional=args))
        return real(*args, cell_runner=calls.runner, cell_checker=None, **kwargs)

    calls = type("Calls", (list,), {})()
    calls.runner = Cells()
    monkeypatch.setattr(grid, "run_grid", spy)
    return calls


def test_main_passes_every_option_to_the_grid_and_reports(tmp_path, grid_calls, capsys):
    """``main`` hands the grid its names, seeds, folder, shared settings, config files, analyses, ratios, FHN pairs
    and progress choice; it prints the cell counts and each report path, writes the plots unless --no-plots, and a
    rerun skips the finished cells."""
    from recbole_hnlm.benchmark.__main__ import main

    out, yaml = str(tmp_path / "out"), tmp_path / "a.yaml"
    yaml.write_text("epochs: 2\n")
    argv = ["--dataset", "toy", "--models", "MF", "--samplers", "RNS", "DNS", "--seeds", "1", "--out", out,
            "--epochs", "3", "--learning_rate=0.01", "--config_files", str(yaml), "--analysis", "sparsity",
            "--fhn-pairs", "7", "--ratios", "0.5", "--no-progress", "--no-plots"]
    assert main(argv) == 0
    (call,) = grid_calls
    assert call["positional"] == ("toy", ["MF"], ["RNS", "DNS"], [1], out)
    assert call["config_dict"] == {"learning_rate": 0.01, "epochs": 3} and call["config_file_list"] == [str(yaml)]
    assert (call["analyses"], tuple(call["ratios"]), call["fhn_pairs"], call["progress"]) == (["sparsity"], (0.5,), 7,
                                                                                               False)
    stdout = capsys.readouterr().out
    assert "cells: 4 ran, 0 skipped (finished), 0 failed\n" in stdout
    assert f"table: {os.path.join(out, 'table.md')}" in stdout and f"csv: {os.path.join(out, 'runs.csv')}" in stdout
    assert not os.path.exists(os.path.join(out, "plots"))
    assert main(argv) == 0  # the same grid again: nothing to run
    assert "cells: 0 ran, 4 skipped (finished), 0 failed\n" in capsys.readouterr().out
    assert main(["--out", out, "--report-only"]) == 0  # plots unless --no-plots
    assert f"metrics_png: {os.path.join(out, 'plots', 'metrics.png')}" in capsys.readouterr().out
    assert os.path.isfile(os.path.join(out, "plots", "metrics.png"))


def test_report_only_runs_no_grid_and_a_failed_cell_is_exit_status_1(tmp_path, grid_calls, capsys):
    """--report-only rebuilds the report without calling the grid; a grid with a failed cell still reports, then
    returns 1 naming the cell's error file."""
    from recbole_hnlm.benchmark.__main__ import main

    out = str(tmp_path / "out")
    grid_calls.runner = Cells(fail=("DNS",))
    argv = ["--dataset", "toy", "--models", "MF", "--samplers", "RNS", "DNS", "--seeds", "1", "--out", out,
            "--no-progress", "--no-plots"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "cells: 1 ran, 0 skipped (finished), 1 failed: MF-DNS-seed1" in captured.out
    assert os.path.join(out, "runs", "MF-DNS-seed1.error.txt") in captured.err
    assert main(["--out", out, "--report-only", "--no-plots"]) == 0
    assert len(grid_calls) == 1 and "cells:" not in capsys.readouterr().out
