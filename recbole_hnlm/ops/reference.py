"""Pure-PyTorch references of every kernel: the specification, the test oracle and the fallback.

Each function here defines what the matching op in :mod:`recbole_hnlm.ops` computes; the C++/CUDA kernels must
agree with it (values to floating-point tolerance; ids exactly, except between candidates whose scores are equal in
exact arithmetic but round apart, as the kernels sum each dot product in another order). Gradients come from
ordinary autograd. bfloat16/float16 inputs are computed in float32 and cast back, as the kernels accumulate in
float32.

``mixgcf_mix_official`` is not a fallback: it is the original mix-then-score formulation of MixGCF
(algorithms.md §3, steps 1-4) kept as the oracle for the argmax identity and as the eager benchmark baseline.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from .gather import gather_rows
from .graph import CSRGraph

__all__ = [
    "spmm_reference",
    "lightgcn_propagate_reference",
    "mixgcf_mix_reference",
    "mixgcf_mix_official",
    "candidate_scores_reference",
    "select_candidates_reference",
    "compute_dtype",
]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The precision inputs of ``dtype`` are summed and scored in: float32 for 16-bit inputs, else their own."""
    return torch.float32 if dtype in _LOW_PRECISION else dtype


def spmm_reference(graph: CSRGraph, x: Tensor) -> Tensor:
    """``A_hat @ x`` with ``torch.sparse.mm`` (differentiable w.r.t. ``x``). Shapes: ``[N, d] -> [N, d]``."""
    compute = compute_dtype(x.dtype)
    out = torch.sparse.mm(graph.to_sparse_csr(compute), x.to(compute))
    return out.to(x.dtype)


_STACK_DTYPES = (torch.bfloat16,)


def check_layers_dtype(ego: Tensor, layers_dtype: Optional[torch.dtype], return_layers: bool) -> torch.dtype:
    """The dtype of the layer stack for ``layers_dtype`` (``None``: ``ego.dtype``); ValueError unless it is ``ego``'s
    or bfloat16 with ``return_layers`` (float16 is refused: LightGCN's gradients underflow its range). A
    ``return_layers`` other than a boolean is a TypeError (the string ``"no"`` would have returned the stack)."""
    if return_layers not in (True, False):
        raise TypeError(f"return_layers must be True or False, got {return_layers!r}")
    if layers_dtype is None or layers_dtype == ego.dtype:
        return ego.dtype
    if not return_layers:
        raise ValueError("layers_dtype applies to the layer stack: pass return_layers=True or leave it None")
    if layers_dtype not in _STACK_DTYPES:
        raise ValueError(f"layers_dtype must be {ego.dtype} (ego's dtype) or torch.bfloat16 (float16 gradients "
                         f"underflow), got {layers_dtype}")
    return layers_dtype


def lightgcn_propagate_reference(
    graph: CSRGraph,
    ego: Tensor,
    num_layers: int,
    return_layers: bool = False,
    layers_dtype: Optional[torch.dtype] = None,
) -> Tensor:
    r"""The LightGCN autograd chain: ``E_{k+1} = A_hat E_k`` per layer, then stack (and mean).

    This is how the official LightGCN/MixGCF code propagates (``torch.sparse.mm`` per layer + ``stack`` + ``mean``).
    ``layers_dtype`` (with ``return_layers``) is the dtype of the returned stack (see :func:`check_layers_dtype`);
    the layers are computed from ``ego`` rounded to it, in float32 for bfloat16.

    Shapes: ``ego [N, d]`` -> ``[N, d]`` (mean of the K+1 layers) or ``[N, K+1, d]`` when ``return_layers``.
    """
    layers_dtype = check_layers_dtype(ego, layers_dtype, return_layers)
    if layers_dtype != ego.dtype:
        return lightgcn_propagate_reference(graph, ego.to(layers_dtype), num_layers, return_layers=True)
    if num_layers < 0:
        raise ValueError(f"num_layers must be >= 0, got {num_layers}")
    compute = compute_dtype(ego.dtype)
    adj = graph.to_sparse_csr(compute)
    layers = [ego.to(compute)]
    for _ in range(num_layers):
        layers.append(torch.sparse.mm(adj, layers[-1]))
    stack = torch.stack(layers, dim=1)
    out = stack if return_layers else stack.mean(dim=1)
    return out.to(ego.dtype)


def _layer_queries(query: Tensor, num_layers: int) -> Tensor:
    """``[B, d]`` (same query for every layer) or ``[B, L, d]`` -> ``[B, L, d]`` view."""
    if query.dim() == 2:
        return query[:, None, :].expand(-1, num_layers, -1)
    return query


def mixgcf_mix_reference(
    query: Tensor, pos_layers: Tensor, item_layers: Tensor, candidates: Tensor, alpha: Tensor
) -> Tuple[Tensor, Tensor]:
    r"""MixGCF by the argmax identity (algorithms.md §3): select on raw candidates, then mix only the winners.

    .. math::
        m^*_{b,l} = \arg\max_m \langle q_{b,l}, E^{(l)}_{C_{b,m}} \rangle,\qquad
        Z_{b,l} = \alpha_{b,l} P_{b,l} + (1-\alpha_{b,l}) E^{(l)}_{C_{b,m^*_{b,l}}}

    Shapes: query ``[B, d]`` or ``[B, L, d]``, pos_layers ``[B, L, d]``, item_layers ``[I, L, d]``, candidates
    ``[B, M]`` int64, alpha ``[B, L]`` -> (Z ``[B, L, d]``, chosen ids ``[B, L]`` int64). Z is differentiable w.r.t.
    ``pos_layers`` and ``item_layers`` only.
    """
    B, L, _ = pos_layers.shape
    compute = compute_dtype(pos_layers.dtype)
    with torch.no_grad():
        q = _layer_queries(query.detach(), L).to(compute)
        scores = torch.stack(
            [torch.bmm(item_layers.detach()[candidates, l].to(compute), q[:, l, :, None])[..., 0] for l in range(L)],
            dim=2,
        )  # [B, M, L]
        chosen = candidates.gather(1, scores.argmax(dim=1))  # [B, L]
    layer_index = torch.arange(L, device=pos_layers.device).expand(B, L)
    a = alpha.detach().to(compute)[..., None]
    flat = item_layers.reshape(item_layers.shape[0] * L, item_layers.shape[-1])  # row item * L + layer (d = 0 too)
    z = a * pos_layers.to(compute) + (1 - a) * gather_rows(flat, chosen * L + layer_index).to(compute)
    return z.to(pos_layers.dtype), chosen


def mixgcf_mix_official(
    query: Tensor, pos_layers: Tensor, item_layers: Tensor, candidates: Tensor, alpha: Tensor
) -> Tuple[Tensor, Tensor]:
    r"""MixGCF as published: gather ``[B, M, L, d]``, mix every candidate, score the **mixed** candidates, argmax.

    .. math::
        Q'_{b,m,l} = \alpha_{b,l} P_{b,l} + (1-\alpha_{b,l}) E^{(l)}_{C_{b,m}},\quad
        m^*_{b,l} = \arg\max_m \langle q_{b,l}, Q'_{b,m,l}\rangle,\quad Z_{b,l} = Q'_{b,m^*_{b,l},l}

    Same shapes and outputs as :func:`mixgcf_mix_reference`; memory is ``O(B M L d)`` and the backward goes
    through the advanced-index select, as in the official code. Kept as an oracle and benchmark baseline. The query
    is not detached, as in the official code: when it requires grad (a model's pooled user embedding), autograd
    keeps the mixed ``[B, M, L, d]`` tensor for the scores' backward, which never runs (the argmax has no gradient).
    """
    B, L, _ = pos_layers.shape
    a = alpha[:, None, :, None].to(pos_layers.dtype)  # [B, 1, L, 1]
    mixed = a * pos_layers[:, None] + (1 - a) * item_layers[candidates]  # [B, M, L, d]
    q = _layer_queries(query, L)[:, None]  # [B, 1, L, d]
    scores = (q * mixed).sum(dim=-1)  # [B, M, L]
    best = scores.argmax(dim=1).detach()  # [B, L]
    rows = torch.arange(B, device=pos_layers.device)[:, None]
    layers = torch.arange(L, device=pos_layers.device)[None, :]
    z = mixed.permute(0, 2, 1, 3)[rows, layers, best]  # [B, L, d]
    return z, candidates.gather(1, best)


def candidate_scores_reference(user: Tensor, items: Tensor, candidates: Tensor) -> Tensor:
    """``<user_b, items[C_bm]>`` without gradient. Shapes: ``[B, d], [I, d], [B, M] -> [B, M]``."""
    compute = compute_dtype(user.dtype)
    with torch.no_grad():
        gathered = items.detach()[candidates].to(compute)  # [B, M, d]
        return torch.bmm(gathered, user.detach().to(compute)[:, :, None])[..., 0].to(user.dtype)


def select_candidates_reference(
    user: Tensor, items: Tensor, candidates: Tensor, target: Optional[Tensor] = None
) -> Tensor:
    r"""Positions in ``[0, M)``: DNS :math:`\arg\max_m s_{bm}` or AHNS :math:`\arg\min_m |s_{bm} - t_b|`.

    Scores are compared in float32 for low-precision inputs (float64 stays float64); ``target`` is cast to that
    precision. Ties and NaN follow ``torch.argmax``/``torch.argmin``: the first NaN, else the first extremum. A row
    whose target is inf or NaN has ``|s - t|`` inf/NaN everywhere and therefore selects position 0.
    Shapes: ``[B, d], [I, d], [B, M], [B]`` -> ``[B]`` int64.
    """
    compute = compute_dtype(user.dtype)
    with torch.no_grad():
        gathered = items.detach()[candidates].to(compute)
        scores = torch.bmm(gathered, user.detach().to(compute)[:, :, None])[..., 0]  # [B, M]
        if target is None:
            return scores.argmax(dim=1)
        return (scores - target.detach().to(compute)[:, None]).abs().argmin(dim=1)
