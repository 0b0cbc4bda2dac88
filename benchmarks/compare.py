"""Compare negative samplers across backbones and seeds on one dataset (thin wrapper of ``recbole_hnlm.benchmark``).

    python benchmarks/compare.py --dataset ml-100k --models LightGCN MF --samplers RNS DNS MixGCF AHNS HNLMRec \\
        --seeds 2020 2021 2022 --split_seed=2020 --out results/my-grid
    python benchmarks/compare.py --dataset ml-100k --models MF --samplers RNS DNS --seeds 2020 --epochs 10 \\
        --out results/ml-100k-mf --analysis popularity,fhn,sparsity
    python benchmarks/compare.py --out results/ml-100k --report-only

Writes out/runs/<cell>.json (one per finished cell; rerunning skips them), out/runs.csv, out/table.md and
out/plots/*.png. Any other --key=value is a RecBole or sampler setting shared by every cell.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout, uninstalled

from recbole_hnlm.signals import load_main  # noqa: E402

if __name__ == "__main__":  # loading torch and RecBole takes seconds: a Ctrl-C then is one line too
    sys.exit(load_main("recbole_hnlm.benchmark.__main__")(prog="python benchmarks/compare.py"))
