"""Benchmark harness: samplers x backbones x seeds on one dataset, with tables, plots, significance and the paper's
analyses (popularity groups, sparsity, false hard negatives).

Command line (same as ``benchmarks/compare.py``)::

    python -m recbole_hnlm.benchmark --dataset ml-100k --models LightGCN MF \\
        --samplers RNS DNS MixGCF AHNS HNLMRec --seeds 2020 2021 2022 --out results/ml-100k

In Python::

    from recbole_hnlm.benchmark import run_grid, write_report
    run_grid("ml-100k", ["MF"], ["RNS", "DNS"], [2020], "results/ml-100k", config_dict={"epochs": 10})
    write_report("results/ml-100k")
"""
from recbole_hnlm.files import write_json_atomic
from recbole_hnlm.benchmark.grid import expand_cells, run_grid
from recbole_hnlm.benchmark.report import load_results, markdown_report, paired_test, write_csv, write_report
from recbole_hnlm.benchmark.runner import Cell, run_cell

__all__ = ["Cell", "run_cell", "run_grid", "expand_cells", "write_json_atomic", "load_results", "markdown_report",
           "paired_test", "write_csv", "write_report", "main"]


def main(argv=None):
    """Command line entry point (see :mod:`recbole_hnlm.benchmark.__main__`)."""
    from recbole_hnlm.benchmark.__main__ import main as _main

    return _main(argv)
