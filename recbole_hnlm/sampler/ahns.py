r"""AHNS
################################################
Reference:
    Riwei Lai et al. "Adaptive Hardness Negative Sampling for Collaborative Filtering." in AAAI 2024.

Reference code:
    https://github.com/Riwei-HEU/AHNS (``adaptive_negative_sampling``)
"""
import logging

import torch

from recbole_hnlm.config_checks import is_number
from recbole_hnlm.ops import gather_rows, select_candidates
from recbole_hnlm.ops.reference import compute_dtype
from recbole_hnlm.sampler.base import NegativeSampler, Negatives, SamplingContext, gather_items, require


class AHNS(NegativeSampler):
    r"""Adaptive hardness negative sampling, AHNS\ :sub:`p<0`.

    The target hardness depends on the positive's score :math:`s^+_b = \langle \bar e_u, \bar e_i \rangle`
    (criteria C1-C3 of the paper); the candidate whose score is closest to it is chosen:

    .. math::
        j_b = \arg\min_{m} \big|\, S_{bm} - \beta\,(s^+_b + \alpha)^{p+1} \big|

    As in the official code, the target is not clamped when :math:`s^+_b + \alpha \le 0`; how often that happens is
    counted in :attr:`nonpositive_base` and logged every epoch by the model. A row whose target is not finite (a
    negative base to a non-integer :math:`p`, a base of exactly 0, or diverged scores) takes its first candidate, a
    uniform negative; those rows are counted in :attr:`undefined_target` and logged as well.

    The defaults (``alpha`` 1, ``beta`` 0.1) are the authors' for mean-pooled MF and LightGCN. With NGCF's
    concatenated layers the scores live on another scale (three of the four blocks are unit-normalised), so the same
    values set another hardness there: tune them for NGCF. While every score is near 0 (early training) the target
    :math:`\beta (s^+_b + \alpha)^{p+1}` (0.1 with the defaults) lies above every candidate's score, so the choice is
    DNS's (the highest-scored candidate) until the scores grow past it.

    Config:
        ahns_candidates (int): ``M``. Default 32.
        ahns_alpha (float): :math:`\alpha`. Default 1.0.
        ahns_beta (float): :math:`\beta > 0`. Default 0.1.
        ahns_p (float): :math:`p < -1` (the paper's AHNS\ :sub:`p<0` with a decreasing target). Default -2. A
            non-integer ``p`` is accepted (see above).
    """

    name = "AHNS"
    n_candidates_key = "ahns_candidates"

    def __init__(self, config, dataset, pooled_size=None):
        super().__init__(config, dataset, pooled_size)
        self.alpha = float(config["ahns_alpha"])
        self.beta = float(config["ahns_beta"])
        self.p = config["ahns_p"]
        self.nonpositive_base = 0
        self.undefined_target = 0

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        require(config, "ahns_alpha", is_number, "a number")
        require(config, "ahns_beta", lambda v: is_number(v) and v > 0, "a number > 0")
        require(config, "ahns_p", lambda v: is_number(v) and v < -1,
                "a number < -1 (AHNS_{p<0}: the target hardness must fall as the positive score rises)")

    @torch.no_grad()
    def target(self, ctx: SamplingContext) -> torch.Tensor:
        """``[B]`` target score :math:`\\beta (s^+ + \\alpha)^{p+1}`, in the precision the candidates are scored in
        (float64 for a float64 model, else float32)."""
        user, pos = gather_rows(ctx.emb.user, ctx.user), gather_rows(ctx.emb.item, ctx.pos)
        base = (user * pos).sum(-1, dtype=compute_dtype(user.dtype)) + self.alpha
        target = self.beta * base.pow(self.p + 1)
        if self.training:  # an epoch's counts: not those of an eval-mode model's probes (fhn analysis)
            self.nonpositive_base += int((base <= 0).sum())
            self.undefined_target += int((~torch.isfinite(target)).sum())
        return target

    @torch.no_grad()
    def select(self, ctx: SamplingContext) -> torch.Tensor:
        user = gather_rows(ctx.emb.user, ctx.user)  # not indexing: a negative id is an error, not the last user
        position = select_candidates(user, ctx.emb.item, ctx.candidates, target=self.target(ctx))
        return ctx.candidates.gather(1, position.unsqueeze(1))

    def forward(self, ctx: SamplingContext) -> Negatives:
        return gather_items(ctx.emb, self.select(ctx))

    def epoch_report(self):
        """Log and reset the counts of rows with a non-positive base ``s+ + alpha`` and with no defined target."""
        if self.nonpositive_base:
            logging.getLogger().info(f"AHNS: {self.nonpositive_base} rows had s+ + alpha <= 0 this epoch")
        if self.undefined_target:
            logging.getLogger().warning(
                f"AHNS: {self.undefined_target} rows had no finite target hardness this epoch ((s+ + alpha)^(p+1) "
                f"with ahns_p={self.p}: s+ + alpha < 0 and a non-integer p, s+ + alpha = 0, or non-finite scores); "
                "they took a uniform negative. Use an integer ahns_p or a larger ahns_alpha.")
        self.nonpositive_base = 0
        self.undefined_target = 0
