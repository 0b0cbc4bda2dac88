"""PNG figures of a grid (matplotlib, Agg backend; no display needed).

* ``metrics.png``: the table as grouped bars, one panel per backbone, one bar per sampler and metric, error bars =
  sample std over seeds;
* ``convergence.png``: validation NDCG@20 per epoch (the paper's Figure 4c/d), mean over the seeds that reached the
  epoch, one panel per backbone;
* ``epoch_time.png``: training wall time per epoch (median over epochs, mean over seeds);
* ``popularity.png``, ``fhn.png``, ``sparsity.png`` when the runs hold those analyses (Figures 5b, 6, 5a).
"""
import os

import numpy as np

from recbole_hnlm.benchmark.analysis import POPULARITY_GROUPS
from recbole_hnlm.benchmark.report import METRIC_NAMES, MODEL_ORDER, SAMPLER_ORDER, _order, summarize
from recbole_hnlm.benchmark.runner import METRICS


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _panels(plt, n, width=5.0):
    fig, axes = plt.subplots(1, n, figsize=(width * n, 3.6), squeeze=False)
    return fig, axes[0]


def _save(fig, path):
    """Write ``fig`` atomically (a stopped grid leaves the previous plot, never a cut one)."""
    from recbole_hnlm.files import atomic_path

    fig.tight_layout()
    with atomic_path(path) as tmp:  # the temporary name has no extension: name the format
        fig.savefig(tmp, dpi=120, format=os.path.splitext(path)[1].lstrip(".") or "png")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def plot_metrics(results, path):
    """Grouped bar chart of mean ± std Recall/NDCG@10,20 per backbone and sampler."""
    plt = _pyplot()
    summary = summarize(results)
    models = _order([m for m, _ in summary], MODEL_ORDER)
    fig, axes = _panels(plt, len(models))
    for ax, model in zip(axes, models):
        samplers = _order([s for m, s in summary if m == model], SAMPLER_ORDER)
        width = 0.8 / max(len(samplers), 1)
        x = np.arange(len(METRICS))
        for k, sampler in enumerate(samplers):
            entry = summary[(model, sampler)]
            means = [entry[m][0] for m in METRICS]
            stds = [0.0 if np.isnan(entry[m][1]) else entry[m][1] for m in METRICS]
            ax.bar(x + (k - (len(samplers) - 1) / 2) * width, means, width, yerr=stds, capsize=2,
                   label=f"{sampler} (n={entry['n']})")
        ax.set_xticks(x, [METRIC_NAMES[m] for m in METRICS])
        ax.set_title(model)
        _legend(ax)
    return _save(fig, path)


def _curves(results, model, sampler, key):
    runs = [r for r in results if r["model"] == model and r["sampler"] == sampler and float(r["train_ratio"]) == 1.0]
    points = {}
    for run in runs:
        for entry in run["epochs"]:
            if key in entry:
                points.setdefault(entry["epoch"], []).append(entry[key])
    epochs = sorted(points)
    return epochs, [float(np.mean(points[e])) for e in epochs]


def _legend(ax):
    """The panel's legend, when it has labelled lines (an empty one, e.g. results with no logged ``fhn_rate``,
    made matplotlib warn "No artists with labels found")."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def plot_curve(results, path, key="ndcg@20", ylabel="validation NDCG@20"):
    """``key`` of the per-epoch log against the epoch, mean over seeds, per backbone and sampler."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator
    main = [r for r in results if float(r["train_ratio"]) == 1.0]
    models = _order([r["model"] for r in main], MODEL_ORDER)
    fig, axes = _panels(plt, max(len(models), 1))
    for ax, model in zip(axes, models):
        for sampler in _order([r["sampler"] for r in main if r["model"] == model], SAMPLER_ORDER):
            epochs, values = _curves(main, model, sampler, key)
            if epochs:
                ax.plot(epochs, values, marker="o", markersize=2, label=sampler)
        ax.set_title(model)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole: no 0.5 ticks on short runs
        ax.set_ylabel(ylabel)
        _legend(ax)
    return _save(fig, path)


def plot_epoch_time(results, path):
    """Training wall time per epoch (median over epochs, mean over seeds), per backbone and sampler."""
    plt = _pyplot()
    summary = summarize(results)
    models = _order([m for m, _ in summary], MODEL_ORDER)
    fig, axes = _panels(plt, len(models), width=4.0)
    for ax, model in zip(axes, models):
        samplers = _order([s for m, s in summary if m == model], SAMPLER_ORDER)
        ax.bar(samplers, [summary[(model, s)]["s_per_epoch"] for s in samplers])
        ax.set_title(model)
        ax.set_ylabel("s / epoch")
    return _save(fig, path)


def plot_popularity(results, path):
    """Recall@20 per popularity group (Figure 5b), mean over seeds."""
    plt = _pyplot()
    runs = [r for r in results if float(r["train_ratio"]) == 1.0 and r.get("analysis", {}).get("popularity")]
    models = _order([r["model"] for r in runs], MODEL_ORDER)
    fig, axes = _panels(plt, len(models))
    for ax, model in zip(axes, models):
        samplers = _order([r["sampler"] for r in runs if r["model"] == model], SAMPLER_ORDER)
        width = 0.8 / max(len(samplers), 1)
        x = np.arange(len(POPULARITY_GROUPS))
        for k, sampler in enumerate(samplers):
            groups = [r["analysis"]["popularity"] for r in runs if r["model"] == model and r["sampler"] == sampler]
            means = [np.nanmean([g[name]["recall@20"] for g in groups]) for name in POPULARITY_GROUPS]
            ax.bar(x + (k - (len(samplers) - 1) / 2) * width, means, width, label=sampler)
        ax.set_xticks(x, POPULARITY_GROUPS)
        ax.set_ylabel("Recall@20")
        ax.set_title(model)
        _legend(ax)
    return _save(fig, path)


def plot_sparsity(results, path):
    """Test NDCG@20 against the share of training interactions kept (Figure 5a), mean over seeds."""
    plt = _pyplot()
    models = _order([r["model"] for r in results if float(r["train_ratio"]) < 1.0], MODEL_ORDER)
    fig, axes = _panels(plt, len(models))
    for ax, model in zip(axes, models):
        for sampler in _order([r["sampler"] for r in results if r["model"] == model], SAMPLER_ORDER):
            runs = [r for r in results if r["model"] == model and r["sampler"] == sampler]
            ratios = sorted({float(r["train_ratio"]) for r in runs})
            values = [np.mean([r["test_result"].get("ndcg@20", np.nan) for r in runs if float(r["train_ratio"]) == q])
                      for q in ratios]
            ax.plot([q * 100 for q in ratios], values, marker="o", label=sampler)
        ax.set_xlabel("% of training interactions")
        ax.set_ylabel("test NDCG@20")
        ax.set_title(model)
        _legend(ax)
    return _save(fig, path)


def write_plots(results, folder):
    """Every figure the results support, as PNG files in ``folder``; returns ``{name: path}``."""
    main = [r for r in results if float(r["train_ratio"]) == 1.0]
    paths = {}
    if main:
        paths["metrics_png"] = plot_metrics(results, os.path.join(folder, "metrics.png"))
        metric = main[0].get("valid_metric", "NDCG@20")  # what every validation logged
        paths["convergence_png"] = plot_curve(results, os.path.join(folder, "convergence.png"), key=metric.lower(),
                                              ylabel=f"validation {metric}")
        paths["epoch_time_png"] = plot_epoch_time(results, os.path.join(folder, "epoch_time.png"))
    if any(r.get("analysis", {}).get("popularity") for r in main):
        paths["popularity_png"] = plot_popularity(results, os.path.join(folder, "popularity.png"))
    if any(r.get("analysis", {}).get("fhn") for r in main):
        paths["fhn_png"] = plot_curve(results, os.path.join(folder, "fhn.png"), key="fhn_rate",
                                      ylabel="false-hard-negative rate")
    if any(float(r["train_ratio"]) < 1.0 for r in results):
        paths["sparsity_png"] = plot_sparsity(results, os.path.join(folder, "sparsity.png"))
    return paths
