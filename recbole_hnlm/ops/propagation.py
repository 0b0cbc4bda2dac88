"""Graph propagation over the normalized user-item adjacency: one SpMM and the fused LightGCN layer sum.

Reference: algorithms.md §0 and §7; Xiangnan He et al. "LightGCN: Simplifying and Powering Graph Convolution Network
for Recommendation." in SIGIR 2020, Eqs. (3)-(4). Both ops are single autograd nodes that keep only the graph for
the backward pass: :math:`\\hat A` is symmetric, so every vector-Jacobian product is the same operator applied to
the incoming gradient. The backward passes are themselves these autograd nodes, so ``create_graph=True`` gives
second derivatives (gradient penalties, Hessian-vector products).
"""
from typing import Optional

import torch
from torch import Tensor

from . import _ext
from .graph import CSRGraph, nonnegative_int
from .reference import check_layers_dtype, lightgcn_propagate_reference, spmm_reference

__all__ = ["spmm", "lightgcn_propagate"]


class _SpMM(torch.autograd.Function):
    """:math:`\\hat A X`; its backward is the same op on the gradient (``\\hat A`` symmetric), so higher
    derivatives (``create_graph=True``) come from the same node."""

    @staticmethod
    def forward(ctx, x, rowptr, col, val):
        ctx.save_for_backward(rowptr, col, val)
        return _ext.ops.spmm(rowptr, col, val, x)

    @staticmethod
    def backward(ctx, grad):
        rowptr, col, val = ctx.saved_tensors
        return _SpMM.apply(grad.contiguous(), rowptr, col, val), None, None, None


class _LightGCNMean(torch.autograd.Function):
    """:math:`\\frac1{K+1}\\sum_k \\hat A^k E`, a symmetric linear map: its backward is itself."""

    @staticmethod
    def forward(ctx, ego, rowptr, col, val, num_layers):
        ctx.save_for_backward(rowptr, col, val)
        ctx.num_layers = num_layers
        return _ext.ops.lightgcn_mean(rowptr, col, val, ego, num_layers)

    @staticmethod
    def backward(ctx, grad):
        rowptr, col, val = ctx.saved_tensors
        return _LightGCNMean.apply(grad.contiguous(), rowptr, col, val, ctx.num_layers), None, None, None, None


class _LightGCNLayers(torch.autograd.Function):
    """``E -> [E, \\hat A E, ..., \\hat A^K E]``; its backward is the adjoint :class:`_LightGCNLayersAdjoint`."""

    @staticmethod
    def forward(ctx, ego, rowptr, col, val, num_layers, layers_dtype):
        ctx.save_for_backward(rowptr, col, val)
        ctx.ego_dtype = ego.dtype
        return _ext.ops.lightgcn_layers(rowptr, col, val, ego.to(layers_dtype), num_layers)

    @staticmethod
    def backward(ctx, grad):
        rowptr, col, val = ctx.saved_tensors
        grad_ego = _LightGCNLayersAdjoint.apply(grad.contiguous(), rowptr, col, val)
        return grad_ego.to(ctx.ego_dtype), None, None, None, None, None


class _LightGCNLayersAdjoint(torch.autograd.Function):
    """``[G_0, ..., G_K] -> \\sum_k \\hat A^k G_k`` by Horner's scheme (the layer stack's backward); its own backward
    is the layer stack again, so second derivatives of the stack work."""

    @staticmethod
    def forward(ctx, grad_layers, rowptr, col, val):
        ctx.save_for_backward(rowptr, col, val)
        ctx.num_layers, ctx.layers_dtype = grad_layers.size(1) - 1, grad_layers.dtype
        return _ext.ops.lightgcn_layers_backward(rowptr, col, val, grad_layers)

    @staticmethod
    def backward(ctx, grad):
        rowptr, col, val = ctx.saved_tensors
        layers = _LightGCNLayers.apply(grad.contiguous(), rowptr, col, val, ctx.num_layers, ctx.layers_dtype)
        return layers, None, None, None


def _check_input(graph: CSRGraph, x: Tensor, name: str) -> None:
    """The input's own checks, made before the op decides on a kernel (whose fallback warning would come first)."""
    if not isinstance(graph, CSRGraph):
        raise TypeError(f"graph must be a CSRGraph (bipartite_normalized_graph), got {type(graph).__name__}")
    graph.validate_structure()  # shapes, dtypes, devices (no host sync): lists as rowptr raised an AttributeError
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(x).__name__}")
    if x.layout != torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor, got layout {x.layout}")
    if x.dim() != 2 or x.size(0) != graph.num_nodes:
        raise ValueError(f"{name} must have shape [num_nodes={graph.num_nodes}, d], got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {x.dtype}")
    if x.device != graph.device:
        raise ValueError(f"{name} is on {x.device} but the graph is on {graph.device}; use graph.to(device)")
    if graph.val.dtype not in (torch.float32, x.dtype):  # the kernels' contract (csrc/utils.h), on both paths
        raise TypeError(f"graph.val must be float32 or {name}'s dtype {x.dtype}, got {graph.val.dtype}")


def _check_graph(graph: CSRGraph, x: Tensor, use_kernel: bool) -> None:
    """The graph's checks, as much of them as the path taken needs."""
    if x.requires_grad and torch.is_grad_enabled() and not graph.symmetric:  # backward: graph as its transpose
        graph.validate_symmetric_once()
    elif not use_kernel:  # the kernels check the CSR structure while reading it; torch's sparse ops do not
        graph.validate_once()
    else:  # shapes and dtypes as the fallback reports them (ValueError naming the graph, not the kernel's `x`)
        graph.validate_structure()


def spmm(graph: CSRGraph, x: Tensor) -> Tensor:
    r"""Sparse-dense product :math:`\hat A X` (one propagation layer, used by NGCF).

    Differentiable w.r.t. ``x``; the backward is :math:`\hat A\,G` because ``graph`` is symmetric.

    Args:
        graph (CSRGraph): symmetric normalized adjacency (:func:`~recbole_hnlm.ops.bipartite_normalized_graph`).
        x (Tensor): node features, float32/float64 (bfloat16/float16 accumulate in float32).

    Shapes:
        ``x``: :math:`(N, d)` -> :math:`(N, d)`.

    Example:
        >>> g = bipartite_normalized_graph(torch.tensor([0]), torch.tensor([0]), 1, 1)
        >>> spmm(g, torch.tensor([[1.0], [2.0]])).tolist()
        [[2.0], [1.0]]
    """
    _check_input(graph, x, "x")
    use_kernel = _ext.use_kernel("spmm", x.device)
    _check_graph(graph, x, use_kernel)
    if use_kernel:
        return _SpMM.apply(x, graph.rowptr, graph.col, graph.val.detach())  # constants: no grad (as the fallback)
    return spmm_reference(graph, x)


def lightgcn_propagate(
    graph: CSRGraph,
    ego: Tensor,
    num_layers: int,
    return_layers: bool = False,
    layers_dtype: Optional[torch.dtype] = None,
) -> Tensor:
    r"""LightGCN propagation :math:`E^{(k+1)} = \hat A E^{(k)}`, pooled by the mean or returned as the layer stack.

    .. math::
        \bar E = \frac{1}{K+1} \sum_{k=0}^{K} \hat A^k E^{(0)}

    ``return_layers=False`` runs one fused kernel (two ping-pong buffers and a running sum, no ``K+1`` stack) and
    saves nothing dense for backward: the gradient is the same operator applied to the incoming gradient.
    ``return_layers=True`` returns the stack :math:`[E^{(0)}, \dots, E^{(K)}]` (needed by MixGCF's hop mixing); its
    backward is Horner's scheme :math:`G_0 + \hat A (G_1 + \hat A (G_2 + \dots))` and again saves no dense layer.

    ``layers_dtype=torch.bfloat16`` stores the stack in bfloat16 while ``ego`` stays float32: layer 0 is ``ego``
    rounded, each layer is summed in float32 from the stored previous one and rounded once (the reference fallback
    keeps the layers in float32 and rounds at the end; both agree to bfloat16 precision), and the gradient comes back
    to ``ego`` in its own dtype (the backward sweeps run on the bfloat16 incoming gradient, again with float32 sums).
    The stack then costs half the memory, and half the bytes for every gather MixGCF makes from it. float16 is
    refused: LightGCN's per-element gradients (~1e-7) lie below its normal range, and a measured 12 % of them
    rounded to zero; bfloat16 has float32's range.

    Args:
        graph (CSRGraph): symmetric normalized adjacency.
        ego (Tensor): layer-0 embeddings :math:`E^{(0)}` (users then items).
        num_layers (int): :math:`K \ge 0`; ``0`` returns ``ego`` (or ``ego[:, None]``).
        return_layers (bool): return the stack instead of the mean. (default: :obj:`False`)
        layers_dtype (torch.dtype, optional): dtype of the returned stack (``return_layers`` only): ``ego.dtype``
            or ``torch.bfloat16``. (default: :obj:`None`, ``ego.dtype``)

    Shapes:
        ``ego``: :math:`(N, d)` -> :math:`(N, d)`, or :math:`(N, K+1, d)` when ``return_layers``.
    """
    num_layers = nonnegative_int(num_layers, "num_layers")
    _check_input(graph, ego, "ego")
    layers_dtype = check_layers_dtype(ego, layers_dtype, return_layers)
    use_kernel = _ext.use_kernel("lightgcn_layers" if return_layers else "lightgcn_mean", ego.device)
    _check_graph(graph, ego, use_kernel)
    if not use_kernel:
        return lightgcn_propagate_reference(graph, ego, num_layers, return_layers, layers_dtype)
    val = graph.val.detach()  # constants: the output needs no grad for them (as on the fallback)
    if return_layers:
        # the kernels take val in float32 or the stack's dtype: a float64 val with a bfloat16 stack goes in float32
        val = val if val.dtype in (torch.float32, layers_dtype) else val.float()
        return _LightGCNLayers.apply(ego, graph.rowptr, graph.col, val, num_layers, layers_dtype)
    return _LightGCNMean.apply(ego, graph.rowptr, graph.col, val, num_layers)
