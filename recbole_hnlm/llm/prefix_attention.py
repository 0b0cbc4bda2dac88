"""Attention for rows laid out as ``prefix zone | n segments of L tokens`` (the hybrid encoder's fast path).

A row of the fine-tuned forward holds one user's prompt prefix and many short pair suffixes (``<soft_i> [EOS]``,
L = 2 by default). Each suffix token may attend to the row's prefix and to the earlier tokens of its own segment.
A dense block mask makes every suffix token score against every other suffix of the row too (``T^2`` work, then
masked away: 85% of the attention of a 256-pair row). Here the prefix zone runs plain causal attention and each
suffix token scores only against the prefix keys (``Z``) plus its own segment (``L``): ``n L (Z + L)`` instead of
``(Z + n L)^2``. The dense-mask path of :class:`~recbole_hnlm.llm.hybrid_encoder.HybridPromptEncoder` stays the
reference (and the path for suffixes of unequal lengths); the tests check both against plain per-pair forwards.

Row layout (positions are given separately as ``position_ids``)::

    [ prefix_b (P_b tokens) | pads to Z ] [ seg 1: L ] [ seg 2: L ] ... [ seg n: L ]   (unused segments = padding)
"""
import contextlib
from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["IMPLEMENTATION", "prefix_segment_attention", "prefix_segment_forward"]

IMPLEMENTATION = "hnlm_prefix_segments"


def prefix_segment_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, prefix_zone: int,
                             segment_len: int, prefix_valid: torch.Tensor, scale: float,
                             dropout: float = 0.0) -> torch.Tensor:
    """``query [B, H, T, D]``, ``key/value [B, H_kv, T, D]``, ``prefix_valid [B, Z]`` bool -> ``[B, H, T, D]``.

    ``prefix_valid[b, j]``: key ``j`` of the zone is a real prefix token of row ``b`` (pads are never attended by
    suffixes; causal prefix queries cannot reach them, as they follow the real prefix).
    """
    batch, heads, length, dim = query.shape
    if key.shape[1] != heads:  # grouped-query attention: share each key/value head across its query heads
        key = key.repeat_interleave(heads // key.shape[1], dim=1)
        value = value.repeat_interleave(heads // value.shape[1], dim=1)
    zone, seg = prefix_zone, segment_len
    n = (length - zone) // seg
    prefix_out = F.scaled_dot_product_attention(query[:, :, :zone], key[:, :, :zone], value[:, :, :zone],
                                                is_causal=True, scale=scale, dropout_p=dropout)
    if n == 0:
        return prefix_out
    q = query[:, :, zone:].reshape(batch, heads, n, seg, dim)
    k_own = key[:, :, zone:].reshape(batch, heads, n, seg, dim)
    v_own = value[:, :, zone:].reshape(batch, heads, n, seg, dim)
    to_prefix = torch.matmul(q.reshape(batch, heads, n * seg, dim), key[:, :, :zone].transpose(-1, -2)) * scale
    to_prefix = to_prefix.masked_fill(~prefix_valid[:, None, None, :], float("-inf"))
    to_own = torch.matmul(q, k_own.transpose(-1, -2)) * scale  # [B, H, n, L, L]
    later = torch.ones(seg, seg, dtype=torch.bool, device=query.device).triu(1)
    to_own = to_own.masked_fill(later, float("-inf"))
    scores = torch.cat([to_prefix.reshape(batch, heads, n, seg, zone), to_own], dim=-1)
    weights = torch.softmax(scores, dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32)).to(value.dtype)
    if dropout > 0:
        weights = F.dropout(weights, dropout)
    out = torch.matmul(weights[..., :zone].reshape(batch, heads, n * seg, zone), value[:, :, :zone])
    out = out + torch.matmul(weights[..., zone:], v_own).reshape(batch, heads, n * seg, dim)
    return torch.cat([prefix_out, out], dim=2)


def _attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0,
                       scaling: Optional[float] = None, **kwargs):
    """transformers attention interface: the fast path when the layout keywords are given, else plain SDPA."""
    layout = kwargs.get("hnlm_layout")
    if layout is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    zone, seg, valid = layout
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    out = prefix_segment_attention(query, key, value, zone, seg, valid, scale, dropout)
    return out.transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(IMPLEMENTATION, _attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(IMPLEMENTATION, sdpa_mask)


@contextlib.contextmanager
def prefix_segment_forward(config):
    """Run a model whose ``config`` this is with the prefix/segment attention for the duration of the block."""
    _register()
    previous = config._attn_implementation
    config._attn_implementation = IMPLEMENTATION
    try:
        yield
    finally:
        config._attn_implementation = previous
