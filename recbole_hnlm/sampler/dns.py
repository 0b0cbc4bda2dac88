r"""DNS
################################################
Reference:
    Weinan Zhang et al. "Optimizing Top-N Collaborative Filtering via Dynamic Negative Item Sampling." in SIGIR 2013.
    Wentao Shi et al. "On the Theories Behind Hard Negative Sampling for Recommendation." in WWW 2023 (DNS(M, N)).

Reference code:
    https://github.com/Riwei-HEU/AHNS (``dynamic_mn_negative_sampling``), https://github.com/swt-user/WWW_2023_code
"""
import torch

from recbole_hnlm.config_checks import is_integer
from recbole_hnlm.ops import candidate_scores, gather_rows, select_candidates
from recbole_hnlm.sampler.base import NegativeSampler, Negatives, SamplingContext, gather_items, require

DNS_VARIANTS = ("single", "shi_sum")


class DNS(NegativeSampler):
    r"""Dynamic negative sampling, DNS(M, N).

    Scores ``M`` uniform candidates against the pooled user embedding, :math:`S_{bm} = \langle \bar e_{u_b},
    \bar e_{c_{bm}} \rangle`, and keeps the hardest:

    .. math::
        \mathcal T_b = \operatorname{top}_N\,S_{b,:}

    * ``dns_variant: single`` (default; AHNS repo): one negative drawn uniformly from :math:`\mathcal T_b`; with
      ``dns_topn: 1`` this is Zhang et al.'s DNS, :math:`j_b = \arg\max_m S_{bm}`.
    * ``dns_variant: shi_sum`` (Shi et al.): all ``N`` negatives enter the loss, summed over ``N`` (and, as every
      loss term here, averaged over the batch; Shi et al. sum over it). Its candidates leave out the user's training
      positives, as every sampler's here (:class:`~.candidates.CandidateGenerator`); Shi et al.'s code draws them
      from all items (algorithms.md §2.2).

    Config:
        dns_candidates (int): ``M``, candidates per positive pair. Default 32.
        dns_topn (int): ``N``, 1 <= N <= M. Default 1.
        dns_variant (str): ``single`` or ``shi_sum``. Default ``single``.
    """

    name = "DNS"
    n_candidates_key = "dns_candidates"

    def __init__(self, config, dataset, pooled_size=None):
        super().__init__(config, dataset, pooled_size)
        self.top_n = config["dns_topn"]
        self.variant = config["dns_variant"]

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        require(config, "dns_topn", lambda v: is_integer(v) and 1 <= v <= config["dns_candidates"],
                f"an integer in [1, dns_candidates={config['dns_candidates']}]")
        require(config, "dns_variant", lambda v: v in DNS_VARIANTS, f"one of {DNS_VARIANTS}")

    @torch.no_grad()
    def select(self, ctx: SamplingContext) -> torch.Tensor:
        """``[B, N']`` chosen item ids (``N' = 1`` for ``single``, ``N`` for ``shi_sum``)."""
        user, items, candidates = gather_rows(ctx.emb.user, ctx.user), ctx.emb.item, ctx.candidates
        if self.top_n == 1:
            position = select_candidates(user, items, candidates).unsqueeze(1)
        else:
            top = candidate_scores(user, items, candidates).topk(self.top_n, dim=1).indices
            if self.variant == "single":
                pick = torch.randint(0, self.top_n, (top.shape[0], 1), device=top.device)
                position = top.gather(1, pick)
            else:
                position = top
        return candidates.gather(1, position)

    def forward(self, ctx: SamplingContext) -> Negatives:
        return gather_items(ctx.emb, self.select(ctx))
