r"""MixGCF
################################################
Reference:
    Tinglin Huang et al. "MixGCF: An Improved Training Method for Graph Neural Network-based Recommender Systems."
    in KDD 2021.

Reference code:
    https://github.com/huangtinglin/MixGCF (``modules/LightGCN.py``: ``negative_sampling``)
"""
import torch

from recbole_hnlm.ops import gather_rows, mixgcf_mix
from recbole_hnlm.sampler.base import NegativeSampler, Negatives, SamplingContext


class MixGCF(NegativeSampler):
    r"""Synthesises a hard negative from ``M`` candidates by positive mixing and hop mixing.

    Positive mixing, one :math:`\alpha^{(l)}_b \sim U(0, 1)` per row and layer:

    .. math::
        e'^{(l)}_{c} = \alpha^{(l)} e^{(l)}_i + (1 - \alpha^{(l)})\, e^{(l)}_{c}

    Hop mixing: per layer, the candidate with the highest score against the query (the pooled user for
    mean pooling, the user's layer-``l`` embedding for concat pooling) is kept, and the chosen layers are pooled:

    .. math::
        e^{(l)}_{n} = \arg\max_{c}\, \langle f_Q(u, l), e'^{(l)}_{c} \rangle, \qquad e_n = f_{pool}(e^{(0)}_n, \dots,
        e^{(K)}_n)

    Because :math:`1 - \alpha > 0` is shared by all candidates of a row and layer, the argmax is the same on the raw
    candidates; :func:`recbole_hnlm.ops.mixgcf_mix` exploits this (algorithms.md §3) and returns the mixed stack.

    Config:
        mixgcf_candidates (int): ``M``. Default 64 (Yelp2018), 16 in the paper's Amazon runs.
    """

    name = "MixGCF"
    needs_layers = True
    n_candidates_key = "mixgcf_candidates"

    def forward(self, ctx: SamplingContext) -> Negatives:
        emb = ctx.emb
        user_layers, pos_layers = gather_rows(emb.user_layers, ctx.user), gather_rows(emb.item_layers, ctx.pos)
        query = user_layers if emb.layerwise_query else gather_rows(emb.user, ctx.user)
        alpha = torch.rand(pos_layers.shape[:2], device=pos_layers.device, dtype=emb.user.dtype)
        query = query.detach().to(pos_layers.dtype)  # a bf16 stack (LightGCN's layers_dtype) is scored in bf16
        neg_layers, _ = mixgcf_mix(query, pos_layers, emb.item_layers, ctx.candidates, alpha)
        neg_layers = neg_layers.to(emb.user.dtype)
        return Negatives(pooled=emb.pool(neg_layers).unsqueeze(1), ego=neg_layers[:, 0].unsqueeze(1))
