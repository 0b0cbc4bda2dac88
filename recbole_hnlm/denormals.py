"""Subnormal floats flushed to zero on the CPU: the ``flush_denormal`` option.

Weights that an L2 term drives towards zero (HNLMRec's adapter, and Adam's moments with them) become subnormal, and
arithmetic on subnormals costs 10-100x on x86 CPUs (``benchmarks/bench_subnormal.py``). ``torch.set_flush_denormal``
sets the flush-to-zero flags of the calling thread only; torch's OpenMP worker threads copy the flags of the thread
that starts them, when they start. So a run sets the flags before its first parallel operation, and then checks
that every intra-op thread flushes: in a process whose thread pool started earlier (torch work before the run) the
workers keep subnormals, which is warned about.
"""
import logging

import torch

__all__ = ["all_threads_flush", "flush_denormals"]


def all_threads_flush() -> bool:
    """Whether every intra-op thread flushes subnormal results to zero: one elementwise product large enough for
    torch to split over all its threads, whose exact results are subnormal."""
    tiny = torch.finfo(torch.float32).tiny
    product = torch.full((max(torch.get_num_threads(), 1) * 65536,), 1e-30) * 1e-9  # exactly ~1e-39: subnormal
    return not bool(((product != 0) & (product.abs() < tiny)).any())


def flush_denormals(enabled: bool) -> bool:
    """With ``enabled``, flush subnormal floats to zero for the rest of the process; returns whether every intra-op
    thread does (``True`` when not ``enabled``: nothing was asked). Call it before the run's first torch operation.
    """
    if not enabled:
        return True
    if not torch.set_flush_denormal(True):  # a CPU without the flags (torch says so): nothing to do
        return False
    if all_threads_flush():
        return True
    threads = torch.get_num_threads()
    logging.getLogger().warning(
        f"flush_denormal: torch's {threads} intra-op threads started before this run turned flushing on, and the "
        "worker threads keep subnormal floats; CPU epochs can slow down 10-30x once weights decay that far. Start "
        "the run before other torch work in this process, or set OMP_NUM_THREADS=1.")
    return False
