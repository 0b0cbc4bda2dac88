r"""MF
################################################
Reference:
    Steffen Rendle et al. "BPR: Bayesian Personalized Ranking from Implicit Feedback." in UAI 2009.
"""
from torch import nn

from recbole_hnlm.model.abstract import SampledRecommender, mean_pool
from recbole_hnlm.sampler.base import Propagation


class MF(SampledRecommender):
    r"""Matrix factorisation, :math:`s(u, i) = \langle e_u, e_i \rangle`, trained with any sampler.

    It has a single "layer" (``K = 0``), so MixGCF reduces to positive mixing plus DNS-style selection.
    """

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)

    def propagate(self, with_layers: bool) -> Propagation:
        user, item = self.user_embedding.weight, self.item_embedding.weight
        emb = Propagation(user_ego=user, item_ego=item, user=user, item=item, pool=mean_pool)
        if with_layers:
            emb.user_layers, emb.item_layers = user.unsqueeze(1), item.unsqueeze(1)
        return emb
