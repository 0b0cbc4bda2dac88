"""Side-by-side CPU benchmark of the recbole_hnlm kernels, printed as a markdown table with ratios.

    .venv/bin/python benchmarks/run_cpu_benchmarks.py [--rounds 5] [--quick] [--only TEXT]   # repository root

Variants of one case run interleaved (round r times every variant once), so a noisy shared machine slows them
alike; the table reports per-variant medians and the ratio baseline median / ours median. Correctness is
cross-checked first. ``--quick`` uses a 10x smaller graph (smoke run).
"""
import argparse
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import workloads  # noqa: E402
from recbole_hnlm.ops import _ext  # noqa: E402


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def time_interleaved(variants, rounds):
    for fn in variants.values():  # warm-up
        fn()
    samples = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return samples


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per case, interleaved (default 5)")
    parser.add_argument("--quick", action="store_true", help="a 10x smaller graph: a check that the script runs")
    parser.add_argument("--only", default="", help="run only the cases whose title contains this text")
    args = parser.parse_args()
    cases = [  # built lazily: each case allocates its own inputs (graph, n_items: set below)
        ("SpMM forward, 1 layer", lambda: workloads.spmm_case(graph)),
        ("LightGCN propagation fwd+bwd, mean", lambda: workloads.propagation_case(graph, return_layers=False)),
        ("LightGCN propagation fwd+bwd, layer stack", lambda: workloads.propagation_case(graph, return_layers=True)),
        ("MixGCF mixing fwd+bwd", lambda: workloads.mixgcf_case(n_items, backward=True)),
        ("MixGCF mixing fwd", lambda: workloads.mixgcf_case(n_items, backward=False)),
        ("DNS select (argmax)", lambda: workloads.scoring_case("dns", n_items)),
        ("AHNS select (argmin to target)", lambda: workloads.scoring_case("ahns", n_items)),
        ("DNS(M,N) candidate scores", lambda: workloads.scoring_case("scores", n_items)),
    ]
    if args.rounds < 1:
        parser.error("--rounds must be >= 1 (timed rounds after one warm-up call)")
    if not any(args.only.lower() in title.lower() for title, _ in cases):
        parser.error(f"--only {args.only!r} matches no case; the cases are: {'; '.join(title for title, _ in cases)}")
    if not _ext.has_kernels("cpu"):  # "ours" would silently be the PyTorch reference timed against itself
        sys.exit(f"the ops run {_ext.kernels_in_use('cpu')}: nothing to benchmark")
    if args.quick:
        workloads.YELP2018 = dict(n_users=3_167, n_items=3_805, n_edges=123_726)

    print(f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} intra-op threads, "
          f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')}, "
          f"load average {os.getloadavg()[0]:.1f} (other work on the cores moves the ratios)")
    start = time.perf_counter()
    graph = workloads.yelp_graph()
    print(f"- graph: {graph.num_nodes} nodes, nnz {graph.nnz} (built in {time.perf_counter() - start:.1f} s); "
          f"d={workloads.D}, K={workloads.K}; MixGCF B={workloads.B}, M={workloads.M}, L={workloads.K + 1}")
    workloads.check_correctness(graph)
    print("- correctness cross-check: ok\n")

    n_items = workloads.YELP2018["n_items"]
    print("| case | variant | median ms | min–max ms | speed-up of ours |")
    print("|---|---|---|---|---|")
    for title, variants in cases:
        if args.only.lower() not in title.lower():
            continue
        variants = variants()
        samples = time_interleaved(variants, args.rounds)
        ours_name = next(iter(variants))
        ours = statistics.median(samples[ours_name])
        for name, values in samples.items():
            median = statistics.median(values)
            ratio = "1.0 (ours)" if name == ours_name else f"**{median / ours:.1f}×**"
            spread = f"{min(values) * 1e3:.1f}–{max(values) * 1e3:.1f}"
            print(f"| {title} | {name} | {median * 1e3:.1f} | {spread} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
