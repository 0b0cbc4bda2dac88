"""Hard-negative selection over candidate pools: MixGCF mixing, DNS scoring / argmax, AHNS argmin-to-target.

References (algorithms.md §2-§4):
    Tinglin Huang et al. "MixGCF: An Improved Training Method for Graph Neural Network-based Recommender Systems."
    in KDD 2021 (positive mixing and hop mixing).
    Weinan Zhang et al. "Optimizing Top-N Collaborative Filtering via Dynamic Negative Item Sampling." in SIGIR 2013.
    Riwei Lai et al. "Adaptive Hardness Negative Sampling for Collaborative Filtering." in AAAI 2024.

Kernels own no RNG: MixGCF's ``alpha`` is drawn by the caller (``torch.rand``), so ``torch.manual_seed`` governs
the kernel and the reference alike. Ties pick the smallest candidate position, as ``torch.argmax``/``argmin``.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from . import _ext
from .gather import gather_rows
from .reference import candidate_scores_reference, compute_dtype, mixgcf_mix_reference, select_candidates_reference

__all__ = ["mixgcf_mix", "candidate_scores", "select_candidates"]


class _MixGCFMix(torch.autograd.Function):
    @staticmethod
    def forward(ctx, query, pos_layers, item_layers, candidates, alpha):
        z, chosen = _ext.ops.mixgcf_mix(query, pos_layers, item_layers, candidates, alpha)
        ctx.save_for_backward(chosen, alpha)
        ctx.num_items = item_layers.size(0)
        ctx.mark_non_differentiable(chosen)
        return z, chosen

    @staticmethod
    def backward(ctx, grad_z, _grad_chosen):
        chosen, alpha = ctx.saved_tensors
        if not (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
            return None, None, None, None, None
        grad_pos, grad_items = _MixGCFScatter.apply(grad_z.contiguous(), chosen, alpha, ctx.num_items)
        return (
            None,
            grad_pos if ctx.needs_input_grad[1] else None,
            grad_items if ctx.needs_input_grad[2] else None,
            None,
            None,
        )


class _MixGCFScatter(torch.autograd.Function):
    """MixGCF's backward, :math:`G \\mapsto (\\alpha G,\\ \\text{scatter}_{chosen}((1-\\alpha) G))`, as an autograd
    node: it is linear in :math:`G`, and its own backward (the gather below) gives ``create_graph=True`` its second
    derivatives."""

    @staticmethod
    def forward(ctx, grad_z, chosen, alpha, num_items):
        ctx.save_for_backward(chosen, alpha)
        return _ext.ops.mixgcf_mix_backward(grad_z, chosen, alpha, num_items)

    @staticmethod
    def backward(ctx, grad_grad_pos, grad_grad_items):
        chosen, alpha = ctx.saved_tensors
        B, L, d = grad_grad_pos.shape
        compute = torch.promote_types(grad_grad_items.dtype, torch.float32)  # float32 sums for 16-bit stacks
        a = alpha.to(compute)[..., None]
        layer = torch.arange(L, device=chosen.device).expand(B, L)
        flat = grad_grad_items.reshape(grad_grad_items.size(0) * L, d)  # row item * L + layer (d = 0 too)
        winners = gather_rows(flat, chosen * L + layer).to(compute)
        grad = a * grad_grad_pos.to(compute) + (1 - a) * winners
        return grad.to(grad_grad_pos.dtype), None, None, None


def _check_candidates(candidates: Tensor, batch: int) -> None:
    if candidates.dim() != 2 or candidates.size(0) != batch or candidates.size(1) < 1:
        raise ValueError(f"candidates must have shape [B={batch}, M>=1], got {tuple(candidates.shape)}")
    if candidates.dtype != torch.int64:
        raise TypeError(f"candidates must be int64, got {candidates.dtype}")


def _check_candidate_range(candidates: Tensor, num_items: int) -> None:
    """The reference path's range check (the kernels check the range while reading), for a clear message."""
    if candidates.numel() and (int(candidates.min()) < 0 or int(candidates.max()) >= num_items):
        raise IndexError(f"candidates must lie in [0, {num_items})")


def mixgcf_mix(
    query: Tensor, pos_layers: Tensor, item_layers: Tensor, candidates: Tensor, alpha: Tensor
) -> Tuple[Tensor, Tensor]:
    r"""MixGCF positive mixing + hop mixing: one synthetic hard negative per row and layer.

    .. math::
        Q'_{b,m,l} = \alpha_{b,l} P_{b,l} + (1-\alpha_{b,l}) E^{(l)}_{C_{b,m}}, \qquad
        m^*_{b,l} = \arg\max_m \langle q_{b,l}, Q'_{b,m,l} \rangle, \qquad Z_{b,l} = Q'_{b,m^*_{b,l},l}

    Because :math:`\alpha_{b,l}` does not depend on :math:`m` and :math:`1-\alpha>0`, the argmax equals the argmax
    over the raw candidates (algorithms.md §3); the kernel scores raw rows in one pass and never forms the
    :math:`[B, M, L, d]` tensor. Backward writes :math:`\alpha g` into ``pos_layers`` and scatter-adds
    :math:`(1-\alpha) g` into the chosen rows of ``item_layers``; it saves only ``chosen`` and ``alpha``.

    Args:
        query (Tensor): the scoring user, mean-pooled ``[B, d]`` (LightGCN) or per layer ``[B, L, d]`` (NGCF /
            concat pooling). Receives no gradient.
        pos_layers (Tensor): the positive item's layer stack :math:`P`.
        item_layers (Tensor): the layer stack of all items.
        candidates (Tensor): int64 item ids in ``[0, I)``.
        alpha (Tensor): mixing coefficients in ``[0, 1)``, one per row and layer (``torch.rand(B, L)``); a value
            outside it is an error (on a GPU, a device-side assertion).

    Shapes:
        query :math:`(B, d)` or :math:`(B, L, d)`, pos_layers :math:`(B, L, d)`, item_layers :math:`(I, L, d)`,
        candidates :math:`(B, M)`, alpha :math:`(B, L)` -> Z :math:`(B, L, d)`, chosen item ids :math:`(B, L)`.

    Returns:
        (Tensor, Tensor): the mixed negatives Z (differentiable w.r.t. ``pos_layers`` and ``item_layers``) and the
        chosen item id per row and layer.
    """
    _check_tensors(pos_layers, query=query, pos_layers=pos_layers, item_layers=item_layers, candidates=candidates,
                   alpha=alpha)
    if pos_layers.dim() != 3 or pos_layers.size(1) < 1:
        raise ValueError(f"pos_layers must be [B, L, d] with L >= 1, got {tuple(pos_layers.shape)}")
    B, L, d = pos_layers.shape
    if query.shape not in ((B, d), (B, L, d)):
        raise ValueError(f"query must be [B={B}, d={d}] or [B, L={L}, d], got {tuple(query.shape)}")
    if item_layers.dim() != 3 or item_layers.shape[1:] != (L, d):
        raise ValueError(f"item_layers must be [I, L={L}, d={d}], got {tuple(item_layers.shape)}")
    if alpha.shape != (B, L):
        raise ValueError(f"alpha must be [B={B}, L={L}], got {tuple(alpha.shape)}")
    _check_floating(pos_layers, "pos_layers")
    _check_floating(alpha, "alpha")
    _check_same_dtype(query, "query", pos_layers, "pos_layers")
    _check_same_dtype(item_layers, "item_layers", pos_layers, "pos_layers")
    _check_candidates(candidates, B)
    if _ext.use_kernel("mixgcf_mix", pos_layers.device):  # the kernels check the ids and alpha while reading them
        return _MixGCFMix.apply(query.detach(), pos_layers, item_layers, candidates, alpha.detach())
    _check_candidate_range(candidates, item_layers.size(0))
    _check_alpha(alpha, pos_layers.dtype)
    return mixgcf_mix_reference(query, pos_layers, item_layers, candidates, alpha)


def _check_scoring(user: Tensor, items: Tensor, candidates: Tensor) -> None:
    """The scoring ops' shape and dtype checks, made before the op decides on a kernel (whose fallback warning would
    come first); the candidates' range is checked on the reference path only."""
    _check_tensors(user, user=user, items=items, candidates=candidates)
    if user.dim() != 2 or items.dim() != 2 or items.size(1) != user.size(1):
        raise ValueError(f"user must be [B, d] and items [I, d], got {tuple(user.shape)} and {tuple(items.shape)}")
    _check_floating(user, "user")
    _check_same_dtype(user, "user", items, "items")
    _check_candidates(candidates, user.size(0))


def _check_tensors(first: Tensor, **tensors) -> None:
    """Every argument a Tensor on ``first``'s device: the kernels' device checks did not run when another device's
    dispatch key won (a meta tensor among CPU ones raised the dispatcher's "no Meta kernel registered")."""
    for name, tensor in tensors.items():
        if not isinstance(tensor, Tensor):
            raise TypeError(f"{name} must be a Tensor, got {type(tensor).__name__}")
    for name, tensor in tensors.items():
        if tensor.device != first.device:
            raise ValueError(f"{name} is on {tensor.device} but the other arguments are on {first.device}")


def _check_floating(x: Tensor, name: str) -> None:
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor (float32, float64, bfloat16 or float16), got {x.dtype}")


def _check_same_dtype(x: Tensor, x_name: str, y: Tensor, y_name: str) -> None:
    """The kernels' dtype contract (csrc/utils.h), enforced on both paths: code that runs on the PyTorch
    fallback must not fail once the extension is built, nor the other way round."""
    if x.dtype != y.dtype:
        raise TypeError(f"{x_name} and {y_name} must have the same dtype, got {x.dtype} and {y.dtype}")


def _check_alpha(alpha: Tensor, stack_dtype: torch.dtype) -> None:
    """MixGCF's argmax identity needs :math:`1 - \\alpha > 0` (the kernels check while reading ``alpha``), for
    ``alpha`` in the precision it is mixed in: a float64 ``1 - 1e-9`` is 1 in float32."""
    alpha = alpha.to(compute_dtype(stack_dtype))
    if alpha.numel() and not bool(((alpha >= 0) & (alpha < 1)).all()):
        raise ValueError("alpha must lie in [0, 1) (torch.rand), as MixGCF's positive mixing requires")


def candidate_scores(user: Tensor, items: Tensor, candidates: Tensor) -> Tensor:
    r"""Scores :math:`s_{bm} = \langle u_b, e_{C_{bm}} \rangle` of every candidate (fused gather + dot, no grad).

    Used by DNS(M, N) to take the top-N of M candidates (algorithms.md §2.2).

    Shapes:
        user :math:`(B, d)`, items :math:`(I, d)`, candidates :math:`(B, M)` int64 -> :math:`(B, M)`.
    """
    _check_scoring(user, items, candidates)
    if _ext.use_kernel("candidate_scores", user.device):
        with torch.no_grad():
            return _ext.ops.candidate_scores(user.detach(), items.detach(), candidates)
    _check_candidate_range(candidates, items.size(0))
    return candidate_scores_reference(user, items, candidates)


def select_candidates(user: Tensor, items: Tensor, candidates: Tensor, target: Optional[Tensor] = None) -> Tensor:
    r"""Position of the hardest candidate per row: DNS argmax, or AHNS argmin distance to a target score.

    .. math::
        m^*_b = \arg\max_m s_{bm} \ \text{(DNS)} \qquad\text{or}\qquad m^*_b = \arg\min_m |s_{bm} - t_b|
        \ \text{(AHNS, } t_b = \beta (s^+_b + \alpha)^{p+1}\text{)}

    Ties pick the smallest position. NaN follows ``torch.argmax``/``torch.argmin`` (the first NaN wins); in
    particular a row whose target is inf or NaN selects position 0, as the reference AHNS code does. Scores are
    accumulated in float32 (float64 for float64 inputs) and ``target`` is cast to that precision. No gradient.

    Args:
        user (Tensor): scoring user embeddings.
        items (Tensor): item embedding table.
        candidates (Tensor): int64 item ids in ``[0, I)``.
        target (Tensor, optional): AHNS target score per row; ``None`` selects the argmax. (default: :obj:`None`)

    Shapes:
        user :math:`(B, d)`, items :math:`(I, d)`, candidates :math:`(B, M)`, target :math:`(B,)` ->
        positions :math:`(B,)` int64 in ``[0, M)`` (use ``candidates.gather(1, pos[:, None])`` for item ids).
    """
    _check_scoring(user, items, candidates)
    if target is not None:
        _check_tensors(user, target=target)
        if target.shape != (user.size(0),):
            raise ValueError(f"target must be [B={user.size(0)}], got {tuple(target.shape)}")
        _check_floating(target, "target")
    if _ext.use_kernel("select_candidates", user.device):
        with torch.no_grad():
            return _ext.ops.select_candidates(
                user.detach(), items.detach(), candidates, None if target is None else target.detach()
            )
    _check_candidate_range(candidates, items.size(0))
    return select_candidates_reference(user, items, candidates, target)
