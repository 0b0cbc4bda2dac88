"""Every CUDA op, run on the host warp emulator over varied shapes, for valgrind's memcheck: an out-of-bounds read or
write in a kernel (a GPU's compute-sanitizer memcheck finding) shows up here without a GPU.

    valgrind --tool=memcheck --undef-value-errors=no --error-limit=no --log-file=/tmp/vg.log \\
        .venv/bin/python scripts/memcheck_emulated_kernels.py

(~25 min on 2 cores; expect "client switching stacks" warnings from the emulator's fibers and a few invalid reads in
ld.so's strncmp while libraries load, none under csrc/.) Also runs, in seconds, without valgrind.
"""
import contextlib
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests", "ops")]

import cuda_emulation  # noqa: E402  (tests/ops/cuda_emulation.py)
from test_propagation import random_graph  # noqa: E402
from recbole_hnlm.ops import (_ext, candidate_scores, lightgcn_propagate, mixgcf_mix,  # noqa: E402
                              select_candidates, spmm)


def main():
    torch.manual_seed(0)
    for deterministic in (False, True):  # True: the fixed-order paths (SpMM carry buffer, MixGCF segment sums)
        torch.use_deterministic_algorithms(deterministic)
        run_every_op()
        run_kernel_experiments()
    torch.use_deterministic_algorithms(False)
    print("every emulated op ran, with atomics and in deterministic mode, and every kernel experiment")


@contextlib.contextmanager
def environment(**values):
    """The kernel experiments' switches (read by the kernels at every call), restored afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_kernel_experiments():
    """The paths of ``_ext.KERNEL_EXPERIMENTS`` (off by default, csrc/cuda/README.md): SpMM lane groups and short
    chains, and MixGCF/DNS/AHNS candidate groups."""
    with _ext.library(cuda_emulation.build()), cuda_emulation.warp_schedule(7):
        for groups, short_chains in [("2", "0"), ("4", "1"), ("1", "1")]:
            with environment(RECBOLE_HNLM_SPMM_GROUPS=groups, RECBOLE_HNLM_SPMM_SHORT_CHAINS=short_chains):
                for n_users, n_items, n_edges in [(3, 4, 4), (40, 30, 300)]:
                    graph = random_graph(n_users, n_items, n_edges, seed=1, hub=True)
                    for d, dtype in [(7, torch.float32), (64, torch.float32), (256, torch.bfloat16),
                                     (10, torch.bfloat16)]:
                        x = torch.randn(graph.num_nodes, d, dtype=dtype, requires_grad=True)
                        spmm(graph, x.detach())
                        out = lightgcn_propagate(graph, x, 2, True)
                        out.backward(torch.randn_like(out))
        for groups in ("1", "2", "4"):
            with environment(RECBOLE_HNLM_ARGMAX_GROUPS=groups):
                for B, M, L, d, I in [(1, 1, 1, 8, 5), (9, 6, 5, 64, 40), (5, 9, 2, 200, 30)]:
                    for dtype in (torch.float32, torch.bfloat16):
                        query, pos = torch.randn(B, L, d, dtype=dtype), torch.randn(B, L, d, dtype=dtype)
                        items = torch.randn(I, L, d, dtype=dtype)
                        candidates, alpha = torch.randint(0, I, (B, M)), torch.rand(B, L)
                        mixgcf_mix(query, pos, items, candidates, alpha)
                        mixgcf_mix(query[:, 0], pos, items, candidates, alpha)  # one query for every layer
                        user, table = torch.randn(B, d, dtype=dtype), torch.randn(I, d, dtype=dtype)
                        select_candidates(user, table, candidates)
                        select_candidates(user, table, candidates, torch.randn(B))


def run_every_op():
    with _ext.library(cuda_emulation.build()), cuda_emulation.warp_schedule(7):
        for n_users, n_items, n_edges in [(3, 4, 4), (40, 30, 120), (600, 120, 3000)]:
            graph = random_graph(n_users, n_items, n_edges, seed=1, hub=True)
            for d in (1, 7, 64, 128, 256):  # bf16 d = 256: 16-byte loads
                for dtype in (torch.float32, torch.float64, torch.bfloat16):
                    x = torch.randn(graph.num_nodes, d, dtype=dtype, requires_grad=True)
                    spmm(graph, x.detach())
                    for return_layers in (False, True):
                        out = lightgcn_propagate(graph, x, 3, return_layers)
                        out.backward(torch.randn_like(out))
        for B, M, L, d, I in [(1, 1, 1, 8, 5), (33, 5, 3, 7, 20), (9, 6, 20, 8, 40), (64, 16, 4, 64, 300),
                              (17, 9, 5, 64, 50)]:  # M = 9: a short last candidate group; L = 5: two layer chunks
            for dtype in (torch.float32, torch.bfloat16):
                query = torch.randn(B, L, d, dtype=dtype)
                pos = torch.randn(B, L, d, dtype=dtype, requires_grad=True)
                items = torch.randn(I, L, d, dtype=dtype, requires_grad=True)
                candidates, alpha = torch.randint(0, I, (B, M)), torch.rand(B, L)
                z, _ = mixgcf_mix(query, pos, items, candidates, alpha)
                z.backward(torch.randn_like(z))
                user, table = torch.randn(B, d, dtype=dtype), torch.randn(I, d, dtype=dtype)
                candidate_scores(user, table, candidates)
                select_candidates(user, table, candidates)
                select_candidates(user, table, candidates, torch.randn(B))


if __name__ == "__main__":
    main()
