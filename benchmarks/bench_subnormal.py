"""What subnormal weights cost on the CPU: the HNLMRec adapter's first-layer GEMMs (forward and weight gradient) with
a share of subnormal weights, with and without ``torch.set_flush_denormal(True)`` (the ``flush_denormal`` option).

    python benchmarks/bench_subnormal.py [--batch 2048] [--in-dim 576] [--out-dim 512] [--share 0.36] [--reps 20]

An adapter whose weights decay under their Frobenius term ends with many of them below float32's smallest normal
(1.18e-38): 36 % of the first layer in the LightGCN + HNLMRec run of docs/llm.md. The weight matrix here is random,
with ``--share`` of its entries scaled into the subnormal range; the two settings are timed alternately (two rounds
each, one thread) and printed as a table with their ratio.
"""
import argparse
import statistics
import time

import torch


def subnormal_weights(out_dim: int, in_dim: int, share: float, seed: int = 0) -> torch.Tensor:
    """A random ``[out_dim, in_dim]`` float32 matrix whose entries are subnormal with probability ``share``."""
    generator = torch.Generator().manual_seed(seed)
    weights = torch.randn(out_dim, in_dim, generator=generator) * 1e-3
    mask = torch.rand(out_dim, in_dim, generator=generator) < share
    return torch.where(mask, weights.sign() * 1e-39, weights)  # 1e-39 < 1.18e-38: subnormal


def time_gemms(weights: torch.Tensor, inputs: torch.Tensor, reps: int) -> float:
    """Seconds for ``reps`` forward GEMMs and weight-gradient GEMMs."""
    start = time.perf_counter()
    for _ in range(reps):
        outputs = inputs @ weights.T
        _ = outputs.T @ inputs
    return time.perf_counter() - start


def run(batch=2048, in_dim=576, out_dim=512, share=0.36, reps=20, rounds=2):
    """``{flush: median seconds}`` over ``rounds`` alternating rounds; flushing is off again afterwards. The weights
    are built while subnormals are kept (with flushing on, building them would already give zeros)."""
    torch.set_flush_denormal(False)
    weights = subnormal_weights(out_dim, in_dim, share)
    inputs = torch.randn(batch, in_dim) * 1e-3
    times = {False: [], True: []}
    try:
        for _ in range(rounds):
            for flush in (False, True):
                torch.set_flush_denormal(flush)
                times[flush].append(time_gemms(weights, inputs, reps))
    finally:
        torch.set_flush_denormal(False)
    return {flush: statistics.median(values) for flush, values in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--in-dim", type=int, default=576)
    parser.add_argument("--out-dim", type=int, default=512)
    parser.add_argument("--share", type=float, default=0.36)
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    times = run(args.batch, args.in_dim, args.out_dim, args.share, args.reps)
    print(f"adapter GEMMs, [{args.batch}, {args.in_dim}] x [{args.in_dim}, {args.out_dim}], {args.share:.0%} "
          f"subnormal weights, {args.reps} reps, 1 thread")
    print("| subnormals | s | x flushed |")
    print("|---|---|---|")
    for flush, label in ((False, "kept (flush_denormal=False)"), (True, "flushed (flush_denormal=True)")):
        print(f"| {label} | {times[flush]:.6f} | {times[flush] / times[True]:.2f} |")


if __name__ == "__main__":
    main()
