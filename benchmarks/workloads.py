"""The benchmark workloads shared by the pytest-benchmark files and ``run_cpu_benchmarks.py``.

Each ``*_case`` returns ``{variant name: zero-argument callable}`` over identical inputs; the first variant is
ours, the others are baselines. Backward passes use ``torch.autograd.grad`` with a fixed upstream gradient, so no
variant pays for ``.grad`` accumulation or an expanded ``sum()`` gradient.

Sizes follow docs/perf_anchors.md §1/§6: Yelp2018 training graph (31,668 users, 38,048 items, 1,237,259 edges,
synthetic power-law), d = 64, K = 3; MixGCF B = 2048, M = 64, L = K + 1 = 4.
"""
import warnings
from typing import Callable, Dict

import torch

from recbole_hnlm.ops import bipartite_normalized_graph, candidate_scores, lightgcn_propagate, mixgcf_mix
from recbole_hnlm.ops import select_candidates, spmm
from recbole_hnlm.ops.reference import (
    candidate_scores_reference,
    lightgcn_propagate_reference,
    mixgcf_mix_official,
    select_candidates_reference,
)

try:
    from synthetic_graph import YELP2018, power_law_interactions
except ImportError:  # imported as benchmarks.workloads
    from .synthetic_graph import YELP2018, power_law_interactions

D, K = 64, 3
B, M = 2048, 64


def yelp_graph():
    users, items = power_law_interactions(**YELP2018)
    return bipartite_normalized_graph(users, items, YELP2018["n_users"], YELP2018["n_items"])


def _coo(graph):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return graph.to_sparse_csr().to_sparse_coo().coalesce()


def spmm_case(graph) -> Dict[str, Callable]:
    x = torch.randn(graph.num_nodes, D, generator=torch.Generator().manual_seed(0))
    csr = graph.to_sparse_csr()
    return {"ours spmm": lambda: spmm(graph, x), "torch.sparse.mm CSR": lambda: torch.sparse.mm(csr, x)}


def propagation_case(graph, return_layers: bool) -> Dict[str, Callable]:
    gen = torch.Generator().manual_seed(1)
    ego = torch.randn(graph.num_nodes, D, generator=gen).requires_grad_()
    shape = (graph.num_nodes, K + 1, D) if return_layers else (graph.num_nodes, D)
    upstream = torch.randn(shape, generator=gen)
    coo = _coo(graph)

    def chain(adj):
        layers = [ego]
        for _ in range(K):
            layers.append(torch.sparse.mm(adj, layers[-1]))
        stack = torch.stack(layers, dim=1)
        return stack if return_layers else stack.mean(dim=1)

    def fwd_bwd(fn):
        return lambda: torch.autograd.grad(fn(), [ego], upstream)

    return {
        "ours lightgcn_propagate": fwd_bwd(lambda: lightgcn_propagate(graph, ego, K, return_layers)),
        "reference chain (CSR)": fwd_bwd(lambda: lightgcn_propagate_reference(graph, ego, K, return_layers)),
        "reference chain (COO, as MixGCF)": fwd_bwd(lambda: chain(coo)),
    }


def mixgcf_inputs(n_items: int, device="cpu"):
    """``(query, pos_layers, item_layers, candidates, alpha, upstream)`` of one MixGCF step, drawn on the CPU from a
    fixed seed and moved to ``device``; the layer stacks require gradients, and so does the query, as a model's
    pooled user embedding does (eager MixGCF then keeps its ``[B, M, L, d]`` mixed tensor for backward)."""
    gen = torch.Generator().manual_seed(2)
    item_layers = torch.randn(n_items, K + 1, D, generator=gen)
    pos_layers = torch.randn(B, K + 1, D, generator=gen)
    query = torch.randn(B, D, generator=gen)
    candidates = torch.randint(0, n_items, (B, M), generator=gen)
    alpha = torch.rand(B, K + 1, generator=gen)
    upstream = torch.randn(B, K + 1, D, generator=gen)
    query, pos_layers, item_layers, candidates, alpha, upstream = (
        t.to(device) for t in (query, pos_layers, item_layers, candidates, alpha, upstream))
    return (query.requires_grad_(), pos_layers.requires_grad_(), item_layers.requires_grad_(), candidates, alpha,
            upstream)


def mixgcf_case(n_items: int = YELP2018["n_items"], backward: bool = True) -> Dict[str, Callable]:
    query, pos, items, candidates, alpha, upstream = mixgcf_inputs(n_items)

    def run(fn):
        if backward:
            return lambda: torch.autograd.grad(fn(query, pos, items, candidates, alpha)[0], [pos, items], upstream)

        def forward_only():
            with torch.no_grad():
                return fn(query, pos, items, candidates, alpha)

        return forward_only

    return {"ours mixgcf_mix": run(mixgcf_mix), "eager official MixGCF": run(mixgcf_mix_official)}


def scoring_case(kind: str, n_items: int = YELP2018["n_items"]) -> Dict[str, Callable]:
    gen = torch.Generator().manual_seed(3)
    user, items = torch.randn(B, D, generator=gen), torch.randn(n_items, D, generator=gen)
    candidates = torch.randint(0, n_items, (B, M), generator=gen)
    target = torch.randn(B, generator=gen)
    if kind == "dns":
        return {"ours select_candidates": lambda: select_candidates(user, items, candidates),
                "eager gather+bmm+argmax": lambda: select_candidates_reference(user, items, candidates)}
    if kind == "ahns":
        return {"ours select_candidates": lambda: select_candidates(user, items, candidates, target),
                "eager gather+bmm+argmin": lambda: select_candidates_reference(user, items, candidates, target)}
    return {"ours candidate_scores": lambda: candidate_scores(user, items, candidates),
            "eager gather+bmm": lambda: candidate_scores_reference(user, items, candidates)}


def check_correctness(graph) -> None:
    """Cross-check ours against the baselines on the benchmark inputs before timing anything."""
    x = torch.randn(graph.num_nodes, D)
    torch.testing.assert_close(spmm(graph, x), torch.sparse.mm(graph.to_sparse_csr(), x), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(lightgcn_propagate(graph, x, K), lightgcn_propagate_reference(graph, x, K),
                               atol=1e-4, rtol=1e-4)
    query, pos, items, candidates, alpha, _ = mixgcf_inputs(YELP2018["n_items"])
    z, chosen = mixgcf_mix(query, pos, items, candidates, alpha)
    z_off, chosen_off = mixgcf_mix_official(query, pos, items, candidates, alpha)
    agree = (chosen == chosen_off).float().mean().item()
    assert agree > 0.999, f"chosen ids agree on only {agree:.4%} of (row, layer) pairs"
    torch.testing.assert_close(z[chosen == chosen_off], z_off[chosen == chosen_off], atol=1e-4, rtol=1e-4)
