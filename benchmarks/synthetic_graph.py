"""Seeded power-law user-item interactions of a given size (default: the Yelp2018 LightGCN training split).

A bipartite Chung-Lu model: each interaction draws its user with probability proportional to a Pareto user
activity and its item proportional to a Zipf item popularity; duplicate pairs are dropped and the set is trimmed
to exactly ``n_edges``. Both degree sequences are heavy tailed like the real data (docs/perf_anchors.md §1, §5), and
generation takes about a second.

    python benchmarks/synthetic_graph.py      # prints the statistics of the default graph
"""
from typing import Tuple

import torch

YELP2018 = dict(n_users=31_668, n_items=38_048, n_edges=1_237_259)


def power_law_interactions(
    n_users: int = YELP2018["n_users"],
    n_items: int = YELP2018["n_items"],
    n_edges: int = YELP2018["n_edges"],
    seed: int = 2018,
    user_tail: float = 1.6,
    item_exponent: float = 0.8,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``n_edges`` unique (user, item) pairs with power-law user activity and item popularity.

    Args:
        user_tail: Pareto shape of user activity (smaller = heavier tail).
        item_exponent: Zipf exponent of item popularity, ``p(rank r) ~ r^-item_exponent``.

    Returns:
        (user_ids, item_ids): int64 tensors of length ``n_edges``.
    """
    generator = torch.Generator().manual_seed(seed)
    if n_edges > n_users * n_items // 2:
        raise ValueError("n_edges is too dense for a sparse power-law graph")
    activity = (1 - torch.rand(n_users, generator=generator, dtype=torch.float64)).pow(-1 / user_tail)
    activity = activity.clamp(max=activity.sum() / n_users * 50)  # cap hubs below ~50x the mean degree
    rank = torch.randperm(n_items, generator=generator).double() + 1
    popularity = rank.pow(-item_exponent)
    popularity = popularity.clamp(max=popularity.sum() / n_items * 50)
    pairs = torch.empty(0, dtype=torch.long)
    draw = n_edges
    while pairs.numel() < n_edges:
        draw = int(draw * 1.15) + 1024
        users = torch.multinomial(activity, draw, replacement=True, generator=generator)
        items = torch.multinomial(popularity, draw, replacement=True, generator=generator)
        pairs = torch.unique(torch.cat([pairs, users * n_items + items]))
    keep = torch.randperm(pairs.numel(), generator=generator)[:n_edges]
    pairs = pairs[keep].sort().values
    return pairs // n_items, pairs % n_items


if __name__ == "__main__":
    import argparse
    import time

    argparse.ArgumentParser(description="Build the Yelp2018-size power-law graph (seed 2018) and print its degree "
                                        "statistics and build time.").parse_args()
    start = time.perf_counter()
    u, i = power_law_interactions()
    took = time.perf_counter() - start
    du, di = torch.bincount(u), torch.bincount(i)
    print(f"{u.numel()} edges in {took:.2f}s; user degree max {int(du.max())} median {float(du.median())}; "
          f"item degree max {int(di.max())} median {float(di.median())}; isolated items {int((di == 0).sum())}")
