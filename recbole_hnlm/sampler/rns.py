r"""RNS
################################################
Reference:
    Steffen Rendle et al. "BPR: Bayesian Personalized Ranking from Implicit Feedback." in UAI 2009.
"""
from recbole_hnlm.sampler.base import NegativeSampler, Negatives, SamplingContext, gather_items


class RNS(NegativeSampler):
    r"""Uniform random negative sampling: the data loader's negative :math:`j \sim U(\mathcal I \setminus
    \mathcal I_u^+)`, one per positive pair (algorithms.md §1)."""

    name = "RNS"

    def forward(self, ctx: SamplingContext) -> Negatives:
        return gather_items(ctx.emb, ctx.neg.unsqueeze(1))
