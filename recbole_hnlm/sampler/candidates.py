"""Uniform candidate items without the user's training positives, drawn on the model's device."""
import logging

import torch
from recbole.utils import set_color
from torch import nn


class CandidateGenerator(nn.Module):
    """Draws ``[B, M]`` candidate items uniformly from ``[1, n_items)`` (id 0 is RecBole's padding), redrawing every
    draw that hits one of the user's training positives (as MixGCF's, AHNS's and RecBole's samplers do).

    Training positives are kept as sorted keys ``user * n_items + item``; membership is a ``searchsorted``.

    Args:
        users, items: ``[nnz]`` training interactions (internal ids).
        n_items (int): number of items including padding.
        max_rounds (int): redraw rounds before giving up on a row (a user who interacted with almost every item);
            remaining collisions are counted in :attr:`leaked` and logged once.
        device_rounds (int, optional): rounds run first without any host synchronisation: every hit is replaced by
            a fresh draw of a full ``[B, M]`` tensor (same distribution as redrawing only the hits). Each later round
            reads ``hit.any()`` on the host, which on a GPU stalls the queue of kernels the CPU runs ahead with.
            (default: 3 off the CPU, 0 on it, where full draws cost more than a check)
    """

    def __init__(self, users, items, n_items, max_rounds=100, device_rounds=None):
        super().__init__()
        self.n_items = int(n_items)
        self.max_rounds = int(max_rounds)
        self.device_rounds = device_rounds
        keys = torch.unique(users.long() * self.n_items + items.long())
        self.register_buffer("positive_keys", keys, persistent=False)
        self.leaked = 0

    def is_positive(self, user, items):
        """Mask of ``items`` (``[B, M]``, or ``[P]`` with ``user`` ``[P]``) that are training positives of the user."""
        if items.dim() == user.dim() + 1:
            user = user.unsqueeze(-1)
        keys = user.long() * self.n_items + items
        if self.positive_keys.numel() == 0:
            return torch.zeros_like(items, dtype=torch.bool)
        pos = torch.searchsorted(self.positive_keys, keys).clamp_(max=self.positive_keys.numel() - 1)
        return self.positive_keys[pos] == keys

    @torch.no_grad()
    def forward(self, user, num_candidates):
        """Return ``[B, num_candidates]`` int64 candidate ids for the users ``user`` ``[B]``."""
        shape = (user.shape[0], int(num_candidates))
        candidates = torch.randint(1, self.n_items, shape, device=user.device)
        hit = self.is_positive(user, candidates)
        device_rounds = self.device_rounds if self.device_rounds is not None else (user.device.type != "cpu") * 3
        rounds = min(int(device_rounds), self.max_rounds)
        for _ in range(rounds):
            candidates = torch.where(hit, torch.randint(1, self.n_items, shape, device=user.device), candidates)
            hit = self.is_positive(user, candidates)
        any_hit = bool(hit.any())  # with device rounds first, normally the call's one host sync
        while rounds < self.max_rounds and any_hit:
            redraw = torch.randint(1, self.n_items, (int(hit.sum()),), device=user.device)
            candidates[hit] = redraw
            hit[hit.clone()] = self.is_positive(user.unsqueeze(-1).expand(shape)[hit], redraw)
            rounds += 1
            any_hit = bool(hit.any())
        if any_hit:
            if self.leaked == 0:
                logging.getLogger().warning(set_color(
                    f"CandidateGenerator: {int(hit.sum())} candidates are still training positives after "
                    f"{self.max_rounds} redraw rounds (users with almost every item); they are kept.", "yellow"))
            self.leaked += int(hit.sum())
        return candidates
