"""Fused graph-propagation and hard-negative kernels (C++ ``recbole_hnlm._C``) with pure-PyTorch fallbacks.

Public API: :class:`CSRGraph`, :func:`bipartite_normalized_graph`, :func:`spmm`, :func:`lightgcn_propagate`,
:func:`mixgcf_mix`, :func:`candidate_scores`, :func:`select_candidates`, :func:`gather_rows`. ``WITH_EXT`` tells
whether the compiled kernels loaded; ``RECBOLE_HNLM_DISABLE_EXT=1`` or :func:`recbole_hnlm.ops._ext.disabled` forces
the references.
"""
from ._ext import WITH_CUDA_EXT, WITH_EXT
from .gather import gather_rows
from .graph import CSRGraph, bipartite_normalized_graph, drop_edges, transpose_positions
from .negative_mixing import candidate_scores, mixgcf_mix, select_candidates
from .propagation import lightgcn_propagate, spmm

__all__ = [
    "WITH_EXT",
    "WITH_CUDA_EXT",
    "CSRGraph",
    "bipartite_normalized_graph",
    "drop_edges",
    "transpose_positions",
    "spmm",
    "lightgcn_propagate",
    "mixgcf_mix",
    "candidate_scores",
    "select_candidates",
    "gather_rows",
]
