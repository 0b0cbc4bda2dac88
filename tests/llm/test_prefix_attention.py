"""The prefix/segment attention of the fine-tuned fast path against dense masked SDPA (float64, random inputs)."""
import pytest
import torch
import torch.nn.functional as F

from recbole_hnlm.llm.prefix_attention import prefix_segment_attention


def _dense_reference(q, k, v, zone, seg, valid, scale):
    """Plain SDPA over the whole row with the block mask spelled out (the definition of the layout)."""
    batch, heads, length, _ = q.shape
    k, v = k.repeat_interleave(heads // k.shape[1], 1), v.repeat_interleave(heads // v.shape[1], 1)
    index = torch.arange(length)
    segment = torch.where(index < zone, -1, (index - zone).div(seg, rounding_mode="floor"))
    visible = (index[None, :] <= index[:, None]) & ((segment[None, :] == -1) | (segment[None, :] == segment[:, None]))
    visible = visible.expand(batch, -1, -1).clone()
    visible[:, zone:, :zone] &= valid[:, None, :]  # suffixes never see prefix pads
    return F.scaled_dot_product_attention(q, k, v, attn_mask=visible[:, None], scale=scale)


@pytest.mark.parametrize("heads,kv_heads,seg,n,prefix_lengths", [
    (6, 2, 2, 5, [7, 3, 1]),   # grouped-query attention, padded prefixes, the default 2-token suffixes
    (4, 4, 3, 4, [5, 5]),      # multi-head, 3-token segments (2 soft tokens + [EOS])
    (2, 1, 1, 1, [4]),         # one 1-token segment, B = 1
    (2, 2, 2, 0, [6, 2]),      # no segments: plain causal prefix
])
def test_matches_dense_masked_attention(heads, kv_heads, seg, n, prefix_lengths):
    torch.manual_seed(len(prefix_lengths) * 10 + seg)
    batch, dim, zone = len(prefix_lengths), 8, max(prefix_lengths)
    length = zone + n * seg
    q = torch.randn(batch, heads, length, dim, dtype=torch.float64, requires_grad=True)
    k = torch.randn(batch, kv_heads, length, dim, dtype=torch.float64, requires_grad=True)
    v = torch.randn(batch, kv_heads, length, dim, dtype=torch.float64, requires_grad=True)
    valid = torch.arange(zone)[None] < torch.tensor(prefix_lengths)[:, None]
    scale = dim ** -0.5
    out = prefix_segment_attention(q, k, v, zone, seg, valid, scale)
    ref = _dense_reference(q, k, v, zone, seg, valid, scale)
    # rows' prefix pads are garbage by design (never read): compare real prefix queries and every segment query
    real = torch.ones(batch, length, dtype=torch.bool)
    real[:, :zone] = valid
    real = real[:, None, :, None].expand_as(out)
    assert out.shape == (batch, heads, length, dim)
    torch.testing.assert_close(out[real], ref[real], rtol=1e-10, atol=1e-12)
    weight = torch.randn_like(out) * real  # gradients of a loss that reads only the real queries
    grads = torch.autograd.grad((out * weight).sum(), (q, k, v))
    grads_ref = torch.autograd.grad((ref * weight).sum(), (q, k, v))
    for g, r in zip(grads, grads_ref):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def test_float32_within_tolerance():
    torch.manual_seed(3)
    q, k, v = torch.randn(2, 9, 3 + 2 * 64, 64), torch.randn(2, 3, 3 + 2 * 64, 64), torch.randn(2, 3, 3 + 2 * 64, 64)
    valid = torch.tensor([[True, True, True], [True, False, False]])
    out = prefix_segment_attention(q, k, v, 3, 2, valid, 0.125)
    ref = _dense_reference(q, k, v, 3, 2, valid, 0.125)
    torch.testing.assert_close(out[:, :, 3:], ref[:, :, 3:], rtol=1e-5, atol=1e-5)
