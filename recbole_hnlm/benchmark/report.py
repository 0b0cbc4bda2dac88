"""Tables of a grid: a CSV of every run and a markdown report.

The report has, per backbone, the mean ± sample standard deviation (``ddof=1``) over seeds of Recall/NDCG@10,20 on the
test split and the training wall time per epoch (median over a run's epochs, robust to the first epoch's warm-up
and to load spikes on a shared machine; mean over seeds); then the relative improvement of each sampler's mean over RNS
and over the best ID-based sampler (DNS, MixGCF, AHNS: the one with the highest mean for that metric and backbone),
each with a paired t-test across the seeds both samplers ran on the same split (``scipy.stats.ttest_rel``; pairs
share a seed and a split fingerprint), the improvement then also over those pairs. With fewer than two pairs there is
no test and the cell says ``n<2`` (``unpaired`` when no seed shares a split); when the paired
differences are all equal the t statistic is undefined and the cell says ``p=n/a``. Analysis sections (popularity
groups, false-hard-negative rate, sparsity) follow when the runs hold them. Only main cells (``train_ratio == 1``)
enter the main table. The report also lists the settings of its rows (each row's when they differ), names ties for
the best ID-based sampler, and names the cells of the last grid command (``grid.json``) that left neither a result
nor an error file. All statistics use RecBole's metrics as reported, rounded to ``metric_decimal_place`` decimals.
"""
import csv
import glob
import io
import json
import math
import os

import numpy as np
from scipy import stats

from recbole_hnlm.benchmark.analysis import POPULARITY_GROUPS
from recbole_hnlm.benchmark.runner import METRICS, result_problem
from recbole_hnlm.files import write_text_atomic

#: ID-based hard negative samplers (the "best ID-based" reference).
ID_BASED = ("DNS", "MixGCF", "AHNS")
SAMPLER_ORDER = ("RNS", "DNS", "MixGCF", "AHNS", "HNLMRec")
MODEL_ORDER = ("MF", "NGCF", "LightGCN", "SGL")
METRIC_NAMES = {"recall@10": "Recall@10", "recall@20": "Recall@20", "ndcg@10": "NDCG@10", "ndcg@20": "NDCG@20"}


def _order(values, preferred):
    values = list(dict.fromkeys(values))
    return [v for v in preferred if v in values] + sorted(v for v in values if v not in preferred)


def load_results(out):
    """Every finished result in ``out/runs`` (sorted by file name).

    Raises:
        ValueError: a result file is not readable JSON, or not a finished run's record (the message names it).
    """
    results = []
    for path in sorted(glob.glob(os.path.join(out, "runs", "*.json"))):
        try:
            with open(path) as f:
                result = json.load(f)
            problem = result_problem(result)
            if problem:
                raise ValueError(problem)
        except ValueError as error:
            raise ValueError(f"{path} is not a readable result ({error}): delete it, or rerun the grid command that "
                             "made it (a grid reruns a cell whose result it cannot read)") from None
        results.append(result)
    return results


def load_errors(out):
    """``{cell: first line of the error}`` of the failed cells in ``out/runs``."""
    errors = {}
    for path in sorted(glob.glob(os.path.join(out, "runs", "*.error.txt"))):
        with open(path) as f:
            lines = f.read().splitlines()
        errors[os.path.basename(path)[:-len(".error.txt")]] = lines[1] if len(lines) > 1 else ""
    return errors


def flatten(result):
    """One CSV row of a result."""
    row = {
        "dataset": result["dataset"], "model": result["model"], "sampler": result["sampler"], "seed": result["seed"],
        "train_ratio": result["train_ratio"],
    }
    row.update({metric: result["test_result"].get(metric) for metric in METRICS})
    row.update({
        "valid_" + result["valid_metric"].lower(): result["best_valid_score"],
        "best_epoch": result["best_epoch"], "epochs_run": result["epochs_run"],
        "mean_epoch_time_s": result["mean_epoch_time"], "median_epoch_time_s": result.get("median_epoch_time"),
        "total_time_s": result["total_time"],
    })
    popularity = result.get("analysis", {}).get("popularity")
    if popularity:
        for group, values in popularity.items():
            row[f"{group}_recall@20"] = values["recall@20"]
            row[f"{group}_ndcg@20"] = values["ndcg@20"]
    fhn = result.get("analysis", {}).get("fhn")
    if fhn:
        row["fhn_rate"] = fhn["rate"]
    row["split"] = result["split"]["fingerprint"][:12]
    row["cell"] = result["cell"]
    return row


def write_csv(results, path):
    """CSV with one row per run (columns: the union of :func:`flatten`'s keys, in first-seen order)."""
    rows = [flatten(r) for r in results]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    write_text_atomic(path, text.getvalue())
    return path


def paired_test(a, b):
    """Paired t-test of ``a`` against ``b`` (same length, pairs by position).

    Returns:
        dict: ``n``, ``t``, ``p`` (``None`` when ``n < 2``; ``nan`` when the differences are constant) and ``note``.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.shape} vs {b.shape}")
    n = int(a.size)
    if n < 2:
        return {"n": n, "t": None, "p": None, "note": "n<2"}
    diff = a - b
    if np.allclose(diff, diff.mean(), rtol=1e-9, atol=1e-12):  # equal up to float noise (0.4-0.3 vs 0.3-0.2)
        return {"n": n, "t": float("nan"), "p": float("nan"), "note": "constant differences"}
    result = stats.ttest_rel(a, b)
    return {"n": n, "t": float(result.statistic), "p": float(result.pvalue), "note": ""}


def _main_runs(results):
    return [r for r in results if float(r["train_ratio"]) == 1.0]


def _by_seed(results, model, sampler, metric):
    """``{seed: (value, split fingerprint)}`` of the runs of a row that report ``metric``."""
    return {r["seed"]: (r["test_result"][metric], r.get("split", {}).get("fingerprint")) for r in results
            if r["model"] == model and r["sampler"] == sampler and r["test_result"].get(metric) is not None}


def summarize(results):
    """Per (model, sampler): ``n``, seeds, mean and std of every metric, mean s/epoch; computed on main cells."""
    main = _main_runs(results)
    summary = {}
    for model in _order([r["model"] for r in main], MODEL_ORDER):
        for sampler in _order([r["sampler"] for r in main if r["model"] == model], SAMPLER_ORDER):
            runs = [r for r in main if r["model"] == model and r["sampler"] == sampler]
            entry = {"n": len(runs), "seeds": sorted(r["seed"] for r in runs)}
            for metric in METRICS:  # a metric the runs did not compute (topk without 20) stays NaN: "-"
                values = np.array([r["test_result"].get(metric, np.nan) for r in runs], dtype=float)
                entry[metric] = (float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else float("nan"))
            times = [r.get("median_epoch_time", r["mean_epoch_time"]) for r in runs if r["mean_epoch_time"] is not None]
            entry["s_per_epoch"] = float(np.mean(times)) if times else float("nan")
            entry["epochs_run"] = float(np.mean([r["epochs_run"] for r in runs]))
            best = [r["best_epoch"] for r in runs if r["best_epoch"] is not None]
            entry["best_epoch"] = float(np.mean(best)) if best else float("nan")
            summary[(model, sampler)] = entry
    return summary


def compare(results, model, sampler, reference, metric):
    """Relative improvement (%) of ``sampler``'s mean over ``reference``'s and the paired t-test, both over the
    *pairs*: seeds both ran on the same split (equal split fingerprints). Without pairs (other seeds, or splits
    that differ, e.g. one ran with ``split_seed`` and the other without) the improvement compares the two means and
    ``note`` says ``unpaired``."""
    main = _main_runs(results)
    a, b = _by_seed(main, model, sampler, metric), _by_seed(main, model, reference, metric)
    if not a or not b:
        return {"improvement": float("nan"), "n": 0, "t": None, "p": None, "note": "n<2"}
    seeds = sorted(s for s in set(a) & set(b) if a[s][1] == b[s][1])
    if seeds:
        mean_a, mean_b = np.mean([a[s][0] for s in seeds]), np.mean([b[s][0] for s in seeds])
    else:
        mean_a, mean_b = np.mean([v for v, _ in a.values()]), np.mean([v for v, _ in b.values()])
    improvement = (mean_a - mean_b) / mean_b * 100.0 if mean_b else float("nan")
    improvement = round(improvement, 9) + 0.0  # equal means summed in another order: float noise, not "-0.0%"
    test = paired_test([a[s][0] for s in seeds], [b[s][0] for s in seeds])
    if not seeds:
        test["note"] = "unpaired"
    return {"improvement": float(improvement), **test}


def best_id_based(summary, model, metric):
    """The ID-based sampler with the highest mean ``metric`` on ``model`` (of equal means, the last name in
    alphabetical order; :func:`tied_with_best` names the others), or ``None``."""
    candidates = [(summary[(model, s)][metric][0], s) for s in ID_BASED if (model, s) in summary]
    candidates = [c for c in candidates if not math.isnan(c[0])]
    return max(candidates)[1] if candidates else None


def tied_with_best(summary, model, metric, best):
    """The other ID-based samplers whose mean ``metric`` equals that of ``best``."""
    if best is None:
        return []
    top = summary[(model, best)][metric][0]
    return [s for s in ID_BASED if s != best and (model, s) in summary and summary[(model, s)][metric][0] == top]


def settings_section(results):
    """Markdown lines with the shared settings of the main runs and, when rows were trained with other settings
    (cells added to a grid's folder by a later command, e.g. a tuned confirmation), each row's differences."""
    rows = {}
    for r in _main_runs(results):
        rows.setdefault((r["model"], r["sampler"]), r.get("settings") or {})  # one row holds one set of settings
    if not rows:
        return []
    rows = {(m, s): rows[(m, s)] for m in _order([m for m, _ in rows], MODEL_ORDER)
            for s in _order([s for m2, s in rows if m2 == m], SAMPLER_ORDER)}
    keys = sorted({key for settings in rows.values() for key in settings})
    missing = object()

    def shown(value):
        return "(default)" if value is missing else json.dumps(value) if not isinstance(value, str) else value

    shared = [key for key in keys if len({shown(s.get(key, missing)) for s in rows.values()}) == 1]
    first = next(iter(rows.values()))
    text = ", ".join(f"{key}={shown(first[key])}" for key in shared)
    lines = ["", f"Settings of every row: {text or 'the defaults'}."]
    differing = [key for key in keys if key not in shared]
    if differing:
        lines += ["", f"**Rows trained with different settings** (compare them with care; unlisted of "
                      f"{', '.join(differing)}: the default):", ""]
        lines += [f"* {model} + {sampler}: " + (", ".join(f"{key}={shown(settings[key])}" for key in differing
                                                         if key in settings) or "none of them set")
                  for (model, sampler), settings in rows.items()]
    return lines


def _fmt_mean_std(mean, std, places=4):
    if math.isnan(mean):
        return "-"
    if math.isnan(std):
        return f"{mean:.{places}f}"
    return f"{mean:.{places}f} ± {std:.{places}f}"


def _fmt_count(mean):
    """An epoch count averaged over seeds: ``12`` when whole (one seed, or seeds that agree), else ``12.3``."""
    return f"{mean:.0f}" if float(mean).is_integer() else f"{mean:.1f}"


def _fmt_compare(c):
    if math.isnan(c["improvement"]):
        return "-"
    sign = "+" if c["improvement"] >= 0 else ""
    text = f"{sign}{c['improvement']:.1f}%"
    if c["note"] == "unpaired":
        return f"{text} (unpaired: no seed on a shared split)"
    if c["p"] is None:
        return f"{text} (n<2)"
    if math.isnan(c["p"]):
        return f"{text} (p=n/a, n={c['n']})"
    return f"{text} (p={c['p']:.3g}, n={c['n']})"


def _rounded_as_recbole(run, value):
    """``value`` rounded to the run's ``metric_decimal_place`` (:func:`_decimal_places`), as its reported metrics
    are."""
    return round(float(value), _decimal_places(run))


def _decimal_places(run) -> int:
    """The run's ``metric_decimal_place``: its own record of it (a config file may set it), else its settings'
    (results of earlier versions), else RecBole's default 4."""
    places = run.get("metric_decimal_place", (run.get("settings") or {}).get("metric_decimal_place"))
    return int(places) if places is not None else 4


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_report(results, errors=None, title=None, not_finished=()):
    """The markdown report of ``results`` (see the module docstring); ``not_finished``: keys of the cells of the last
    grid command that have neither a result nor an error file."""
    summary = summarize(results)
    places = max((_decimal_places(r) for r in results), default=4)  # the tables show every digit RecBole reported
    names = [METRIC_NAMES[m] for m in METRICS]
    dataset = ", ".join(sorted({r["dataset"] for r in results})) or "-"
    parts = [f"# {title or 'Benchmark'}: {dataset}", ""]
    parts.append("Test split, full ranking; mean ± sample std over seeds (n = runs); s/epoch: median training wall "
                 "time per epoch (mean over seeds); epochs (best): epochs trained and the best validation epoch "
                 "(0-based). Every statistic is computed on the metrics as RecBole reports them, rounded to its "
                 "`metric_decimal_place` (4 unless set): differences below the last digit read as ties.")
    parts += settings_section(results)
    models = _order([m for m, _ in summary], MODEL_ORDER)
    for model in models:
        samplers = _order([s for m, s in summary if m == model], SAMPLER_ORDER)
        rows = []
        for sampler in samplers:
            e = summary[(model, sampler)]
            rows.append([sampler, e["n"]] + [_fmt_mean_std(*e[m], places) for m in METRICS]
                        + [f"{e['s_per_epoch']:.2f}", f"{_fmt_count(e['epochs_run'])} ({_fmt_count(e['best_epoch'])})"])
        parts += ["", f"## {model}", "", _table(["Sampler", "n"] + names + ["s/epoch", "epochs (best)"], rows)]
        if len(samplers) < 2:  # nothing to compare with (a search trial's table): no empty comparison naming itself
            continue

        comparison_rows = []
        best = {m: best_id_based(summary, model, m) for m in METRICS}
        for sampler in samplers:
            row = [sampler]
            row += ["—" if sampler == "RNS" or (model, "RNS") not in summary
                    else _fmt_compare(compare(results, model, sampler, "RNS", m)) for m in METRICS]
            row += ["—" if best[m] is None or sampler == best[m]
                    else _fmt_compare(compare(results, model, sampler, best[m], m)) for m in METRICS]
            comparison_rows.append(row)
        best_text = ", ".join(f"{METRIC_NAMES[m]}: {best[m] or '-'}"
                              + "".join(f" (tied with {t})" for t in tied_with_best(summary, model, m, best[m]))
                              for m in METRICS)
        parts += ["", "Relative improvement of the mean over the seeds both samplers ran on the same split (it can "
                      "differ from the ratio of the means above when their seeds differ), paired t-test across those "
                      f"seeds; the best ID-based sampler (of the hard-negative samplers {', '.join(ID_BASED)}: never "
                      f"RNS, which has its own columns) is chosen on these test means ({best_text}).",
                  "", _table(["Sampler"] + [f"vs RNS {n}" for n in names] + [f"vs best ID {n}" for n in names],
                             comparison_rows)]

    popularity = [r for r in _main_runs(results) if r.get("analysis", {}).get("popularity")]
    if popularity:
        rows = []
        for model in _order([r["model"] for r in popularity], MODEL_ORDER):
            for sampler in _order([r["sampler"] for r in popularity if r["model"] == model], SAMPLER_ORDER):
                runs = [r for r in popularity if r["model"] == model and r["sampler"] == sampler]
                row = [model, sampler, len(runs)]
                for group in ("All",) + POPULARITY_GROUPS:  # rounded as RecBole rounds: "All" is the main table's
                    values = np.array([[_rounded_as_recbole(r, r["analysis"]["popularity"][group][m])
                                        for m in ("recall@20", "ndcg@20")] for r in runs], dtype=float)
                    finite = int(np.isfinite(values[:, 0]).sum())  # a group without test users is NaN in a split
                    cell = " / ".join(f"{np.nanmean(values[:, j]):.{places}f}" if finite else "-" for j in (0, 1))
                    row.append(cell if finite == len(runs) else f"{cell} (n={finite})")
                rows.append(row)
        def span(group, key):  # the splits of different seeds may give the groups other sizes
            values = sorted({r["analysis"]["popularity"][group][key] for r in popularity})
            return f"{values[0]}" if len(values) == 1 else f"{values[0]}–{values[-1]}"

        size_text = ", ".join(f"{g} {span(g, 'n_items')} items / {span(g, 'n_test')} test pairs"
                              for g in POPULARITY_GROUPS)
        parts += ["", "## Popularity groups (Recall@20 / NDCG@20, mean over seeds)", "", f"Groups: {size_text}.", "",
                  _table(["Model", "Sampler", "n", "All", *POPULARITY_GROUPS], rows)]

    fhn = [r for r in _main_runs(results) if r.get("analysis", {}).get("fhn")]
    if fhn:
        rows = []
        for model in _order([r["model"] for r in fhn], MODEL_ORDER):
            for sampler in _order([r["sampler"] for r in fhn if r["model"] == model], SAMPLER_ORDER):
                runs = [r for r in fhn if r["model"] == model and r["sampler"] == sampler]
                rates = [r["analysis"]["fhn"]["rate"] for r in runs]
                first = [r["epochs"][0].get("fhn_rate", float("nan")) for r in runs if r["epochs"]]
                rows.append([model, sampler, len(runs), f"{np.nanmean(first):.2%}", f"{np.nanmean(rates):.2%}"])
        threshold = fhn[0]["analysis"]["fhn"]["threshold"]
        parts += ["", f"## False hard negatives (cosine > {threshold} with a test positive of the user)", "",
                  _table(["Model", "Sampler", "n", "after epoch 0", "best checkpoint"], rows)]

    sparse = [r for r in results if float(r["train_ratio"]) < 1.0]
    if sparse:
        ratios = sorted({float(r["train_ratio"]) for r in results})
        rows = []
        for model in _order([r["model"] for r in sparse], MODEL_ORDER):
            for sampler in _order([r["sampler"] for r in sparse if r["model"] == model], SAMPLER_ORDER):
                row = [model, sampler]
                for ratio in ratios:
                    values = [r["test_result"]["ndcg@20"] for r in results if r["model"] == model
                              and r["sampler"] == sampler and float(r["train_ratio"]) == ratio
                              and r["test_result"].get("ndcg@20") is not None]
                    row.append(f"{np.mean(values):.{places}f} (n={len(values)})" if values else "-")
                rows.append(row)
        parts += ["", "## Sparsity (test NDCG@20, mean over n seeds, by share of training interactions kept)", "",
                  _table(["Model", "Sampler"] + [f"{int(round(r * 100))}%" for r in ratios], rows)]

    if errors:
        parts += ["", "## Failed cells", ""] + [f"* `{cell}`: {message}" for cell, message in errors.items()]
    if not_finished:
        parts += ["", "## Not finished", "",
                  "Cells of the last grid command (`grid.json`) with neither a result nor an "
                  "error file: interrupted, killed or not run yet (the same command runs them), so the rows above "
                  "hold fewer seeds.", ""] + [f"* `{cell}`" for cell in not_finished]
    return "\n".join(parts) + "\n"


def not_finished_cells(out, results, errors):
    """Keys of the cells that ``out/grid.json`` (the last grid command) lists and ``out/runs`` holds neither a
    result nor an error file for: all of them when that command was interrupted (``completed`` false), else those
    in rows (model, sampler, training ratio) that hold results; ``[]`` without a readable ``grid.json``."""
    from recbole_hnlm.benchmark.grid import expand_cells

    try:
        with open(os.path.join(out, "grid.json")) as f:
            grid = json.load(f)
        cells = expand_cells(grid["models"], grid["samplers"], grid["seeds"], grid.get("analyses", ()),
                             grid.get("ratios", ()))
    except (OSError, ValueError, KeyError, TypeError):
        return []
    done = {r.get("cell") for r in results} | set(errors)
    if grid.get("completed") is False:  # an interrupted command: its rows that never started too
        return [cell.key for cell in cells if cell.key not in done]
    rows = {(r.get("model"), r.get("sampler"), float(r.get("train_ratio", 1.0))) for r in results}
    # only rows the tables show: a folder whose grid.json is another command's (runs moved by hand) names no
    # row that was never there
    return [cell.key for cell in cells
            if cell.key not in done and (cell.model, cell.sampler, float(cell.train_ratio)) in rows]


def write_report(out, plots=True):
    """Write ``out/runs.csv``, ``out/table.md`` and (``plots``) the PNG figures; return their paths.

    Raises:
        FileNotFoundError: ``out/runs`` holds no result and no error file (nothing is written then).
    """
    results = load_results(out)
    errors = load_errors(out)
    if not results and not errors:
        raise FileNotFoundError(f"No runs found in '{out}': expected {os.path.join(out, 'runs', '<cell>.json')} "
                                f"from a grid run with --out {out}.")
    # built before anything is written: a failure leaves the old files
    report = markdown_report(results, errors, not_finished=not_finished_cells(out, results, errors))
    paths = {"csv": write_csv(results, os.path.join(out, "runs.csv"))}
    table = os.path.join(out, "table.md")
    write_text_atomic(table, report)
    paths["table"] = table
    if plots and results:
        from recbole_hnlm.benchmark.plots import write_plots

        paths.update(write_plots(results, os.path.join(out, "plots")))
    return paths
