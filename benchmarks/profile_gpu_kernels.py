"""Launch the CUDA kernels of one workload a few times, for Nsight Compute (``ncu``) to profile (issue 4).

The GPU benchmark (run_gpu_benchmarks.py) says how fast each op is; this says why: run under ``ncu`` it gives each
kernel's memory throughput, L2 hit rate, achieved occupancy and warp stall reasons. Workloads (Yelp2018-size graph,
d = 64, K = 3, B = 2048, M = 64, as in the benchmark):

* ``spmm``: one propagation layer in float32, the default kernel, then ``RECBOLE_HNLM_SPMM_GROUPS`` = 2 and 4, then
  ``RECBOLE_HNLM_SPMM_SHORT_CHAINS=1``;
* ``mixgcf``: one MixGCF step, forward (``mixgcf_mix_kernel``) and backward (``mixgcf_scatter_kernel``), then the
  forward of the split kernel (``mixgcf_mix_split_kernel``) with ``RECBOLE_HNLM_ARGMAX_GROUPS`` = 1, 2 and 4.

Each kernel runs ``--repeat`` times (default 1) after a warm-up; profile them all, e.g.::

    ncu --kernel-name regex:spmm_edge_split \\
        --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section WarpStateStats \\
        python benchmarks/profile_gpu_kernels.py spmm

(``scripts/gpu_check.sh`` does so when ``ncu`` is on the PATH.) Without ``ncu`` the script prints each launch's time
from CUDA events, which is a smoke test, not a benchmark.
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from synthetic_graph import YELP2018  # noqa: E402
from run_gpu_benchmarks import argmax_groups, spmm_groups, spmm_short_chains  # noqa: E402
from workloads import D, mixgcf_inputs, yelp_graph  # noqa: E402

from recbole_hnlm.ops import mixgcf_mix, spmm  # noqa: E402


def timed(label, fn, repeat, device):
    """fn run ``1 + repeat`` times (one warm-up); prints the time of each timed launch (CUDA events on a GPU)."""
    fn()
    for _ in range(repeat):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            milliseconds = start.elapsed_time(end)
        else:
            begin = time.perf_counter()
            fn()
            milliseconds = (time.perf_counter() - begin) * 1e3
        print(f"{label}: {milliseconds:.3f} ms", flush=True)


def spmm_case(device, repeat):
    graph = yelp_graph().to(device)
    x = torch.randn(graph.num_nodes, D, device=device)
    for groups in (1, 2, 4):
        timed(f"spmm, RECBOLE_HNLM_SPMM_GROUPS={groups}", spmm_groups(groups, lambda: spmm(graph, x)), repeat, device)
    timed("spmm, RECBOLE_HNLM_SPMM_SHORT_CHAINS=1", spmm_short_chains(lambda: spmm(graph, x)), repeat, device)


def mixgcf_case(device, repeat):
    query, pos, items, cand, alpha, up = mixgcf_inputs(YELP2018["n_items"], device)
    timed("mixgcf step fwd+bwd",
          lambda: torch.autograd.grad(mixgcf_mix(query, pos, items, cand, alpha)[0], [pos, items], up), repeat,
          device)
    with torch.no_grad():
        for groups in (1, 2, 4):
            timed(f"mixgcf forward, RECBOLE_HNLM_ARGMAX_GROUPS={groups}",
                  argmax_groups(groups, lambda: mixgcf_mix(query, pos, items, cand, alpha)), repeat, device)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", choices=["spmm", "mixgcf"])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--device", default="cuda", help="cpu: smoke-test the script itself (the CPU kernels run)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"torch {torch.__version__} sees no CUDA GPU: this script launches CUDA kernels for ncu "
                     "(--device cpu smoke-tests it)")
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    {"spmm": spmm_case, "mixgcf": mixgcf_case}[args.case](device, args.repeat)


if __name__ == "__main__":
    main()
