"""Hyper-parameter search for one backbone and sampler, RecBole's params-file format (thin wrapper of
``recbole_hnlm.benchmark.tune``).

    python benchmarks/tune.py --model LightGCN --sampler MixGCF --dataset ml-100k \\
        --params_file benchmarks/hyper/mixgcf.hyper --seeds 2020 2021 --out results/tune-lightgcn-mixgcf --epochs 100

Writes out/search.json, out/search.md (trials ranked by validation) and out/trials/<trial>/ (one grid per trial;
rerunning resumes). Any other --key=value is a RecBole or sampler setting shared by every trial.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout, uninstalled

from recbole_hnlm.signals import load_main  # noqa: E402

if __name__ == "__main__":  # loading torch and RecBole takes seconds: a Ctrl-C then is one line too
    sys.exit(load_main("recbole_hnlm.benchmark.tune")(prog="python benchmarks/tune.py"))
