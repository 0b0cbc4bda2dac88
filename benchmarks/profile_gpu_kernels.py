"""Launch the CUDA kernels of one workload a few times, for Nsight Compute (``ncu``) to profile (issue 4).

The GPU benchmark (run_gpu_benchmarks.py) says how fast each op is; this says why: run under ``ncu`` it gives each
kernel's memory throughput, L2 hit rate, achieved occupancy and warp stall reasons. Workloads (Yelp2018-size graph,
d = 64, K = 3, B = 2048, M = 64, as in the benchmark):

* ``spmm``: one propagation layer in float32, the default kernel, then ``RECBOLE_HNLM_SPMM_GROUPS`` = 2 and 4, then
  ``RECBOLE_HNLM_SPMM_SHORT_CHAINS=1``;
* ``mixgcf``: one MixGCF step, forward (``mixgcf_mix_kernel``) and backward (``mixgcf_scatter_kernel``), then the
  forward of the split kernel (``mixgcf_mix_split_kernel``) with ``RECBOLE_HNLM_ARGMAX_GROUPS`` = 1, 2 and 4;
* ``epoch``: where a batch of the benchmark's LightGCN + MixGCF epoch goes (no ``ncu``: run it plainly). It prints
  the wall time per batch, the time the CPU takes to issue a batch, the GPU's busy time (the union of its kernel,
  memset and memcpy intervals, from ``torch.profiler``) and each kernel's share of it. Wall well above busy means
  the GPU waits for the CPU (launch-bound); busy near wall means the kernels themselves set the epoch's time.

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
from run_gpu_benchmarks import (argmax_groups, build_graph, epoch_step_factory, spmm_groups,  # noqa: E402
                                spmm_short_chains)
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


def busy_microseconds(intervals):
    """Length of the union of ``(start, end)`` intervals (overlapping kernels count once)."""
    total, reach = 0.0, None
    for start, end in sorted(intervals):
        if reach is None or start > reach:
            total += end - start
            reach = end
        elif end > reach:
            total += end - reach
            reach = end
    return total


def device_activity(prof):
    """``(name, start_us, end_us)`` of every kernel, memset and memcpy the profiler saw on a GPU (not the
    ``record_function`` ranges it mirrors onto the GPU's timeline, e.g. ``Optimizer.step#Adam.step``)."""
    return [(e.name, e.time_range.start, e.time_range.end) for e in prof.events()
            if e.device_type == torch.autograd.DeviceType.CUDA and not getattr(e, "is_user_annotation", False)]


def epoch_case(device, repeat, batches, quick):
    """The benchmark's epoch cut to ``batches`` batches (float32, default kernels): wall, issue and busy time."""
    from torch.profiler import ProfilerActivity, profile

    graph, sizes = build_graph("yelp2018", device, quick)
    epoch, n = epoch_step_factory(graph, sizes, device, torch.float32, True, max_batches=batches)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    timed(f"epoch of {n} batches (wall)", epoch, repeat, device)
    # the CPU's issue time, on a few batches: a launch queue of ~1,000 kernels would make a longer run wait on it
    issued = min(n, 4)
    sync()
    begin = time.perf_counter()
    epoch(issued)
    issue_ms = (time.perf_counter() - begin) * 1e3 / issued
    sync()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities):  # a first session takes the profiler's start-up cost
        epoch(issued)
        sync()
    with profile(activities=activities) as prof:
        begin = time.perf_counter()
        epoch()
        sync()
        wall_ms = (time.perf_counter() - begin) * 1e3 / n
    print(f"per batch: wall {wall_ms:.3f} ms (under the profiler), CPU issue {issue_ms:.3f} ms (no sync, {issued} "
          "batches)")
    if not cuda:  # smoke test: the CPU ops by self time
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=-1))  # every op (order varies)
        return
    activity = device_activity(prof)
    busy_ms = busy_microseconds([(start, end) for _, start, end in activity]) / 1e3 / n
    print(f"per batch: GPU busy {busy_ms:.3f} ms ({100 * busy_ms / wall_ms:.0f} % of wall), "
          f"{len(activity) / n:.1f} kernels, memsets and memcpys")
    totals = {}
    for name, start, end in activity:
        count, micros = totals.get(name, (0, 0.0))
        totals[name] = (count + 1, micros + end - start)
    print("| kernel | launches per batch | us per batch | share of busy |\n|---|---|---|---|")
    for name, (count, micros) in sorted(totals.items(), key=lambda item: -item[1][1])[:20]:
        print(f"| {name[:90]} | {count / n:.1f} | {micros / n:.1f} | {micros / n / 10 / busy_ms:.1f} % |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", choices=["spmm", "mixgcf", "epoch"])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--batches", type=int, default=20, help="epoch: batches profiled")
    parser.add_argument("--quick", action="store_true", help="epoch: a 20x smaller graph (smoke test)")
    parser.add_argument("--device", default="cuda", help="cpu: smoke-test the script itself (the CPU kernels run)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"torch {torch.__version__} sees no CUDA GPU: this script launches CUDA kernels for ncu "
                     "(--device cpu smoke-tests it)")
    if args.repeat < 1 or args.batches < 1:
        parser.error("--repeat and --batches must be >= 1")
    if args.case == "epoch":
        epoch_case(device, args.repeat, args.batches, args.quick)
    else:
        {"spmm": spmm_case, "mixgcf": mixgcf_case}[args.case](device, args.repeat)


if __name__ == "__main__":
    main()
