r"""SGL
################################################
Reference:
    Jiancan Wu et al. "Self-supervised Graph Learning for Recommendation." in SIGIR 2021.
"""
import torch
import torch.nn.functional as F

from recbole_hnlm.config_checks import is_number
from recbole_hnlm.model.lightgcn import LightGCN
from recbole_hnlm.ops import bipartite_normalized_graph, gather_rows
from recbole_hnlm.sampler.base import require

SGL_AUGMENTATIONS = ("ED", "ND")


class SGL(LightGCN):
    r"""LightGCN plus SGL's self-supervised contrast between two augmented graph views.

    Each epoch two views are drawn: edge dropout (``type: ED``) or node dropout (``type: ND``) with ``drop_ratio``.
    For the batch's users (and, separately, positive items), InfoNCE over all users (items) of the other view:

    .. math::
        \mathcal L_{ssl} = \frac{1}{|\mathcal B|} \sum_{u \in \mathcal B} -\log \frac{\exp(\cos(z'_u, z''_u)/\tau)}
        {\sum_{v \in \mathcal U} \exp(\cos(z'_u, z''_v)/\tau)}

    (paper eq. 10), weighted by ``ssl_weight`` and logged as its own loss column. The denominators sum over the
    dataset's users (items), not RecBole's padding id 0, which RecBole's own SGL counts in them. Eq. 10 and the
    official code sum over the batch, as they sum BPR; our BPR is a batch mean (MixGCF's ``create_bpr_loss``), so the
    contrastive term is a batch mean too, which keeps SGL's ratio of the two losses and so the meaning of
    ``ssl_weight``.

    Config:
        type (str): ``ED`` or ``ND``. drop_ratio (float): in [0, 1). ssl_tau (float): > 0. ssl_weight (float):
        >= 0.
    """

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        require(config, "type", lambda v: v in SGL_AUGMENTATIONS, f"one of {SGL_AUGMENTATIONS} (RecBole's RW, an edge "
                "dropout per layer, is not implemented)")
        require(config, "drop_ratio", lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)")
        require(config, "ssl_tau", lambda v: is_number(v) and v > 0, "a number > 0")
        require(config, "ssl_weight", lambda v: is_number(v) and v >= 0, "a number >= 0 (0 turns SGL into LightGCN)")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.augmentation = config["type"]
        self.drop_ratio = float(config["drop_ratio"])
        self.ssl_tau = float(config["ssl_tau"])
        self.ssl_weight = float(config["ssl_weight"])
        self.train_users, self.train_items = self.training_pairs(dataset)
        self.views = None

    def augmented_graph(self):
        """One random view of the training graph."""
        users, items = self.train_users, self.train_items
        if self.augmentation == "ED":
            keep = torch.rand(users.shape[0]) >= self.drop_ratio
        else:
            drop_user = torch.rand(self.n_users) < self.drop_ratio
            drop_item = torch.rand(self.n_items) < self.drop_ratio
            keep = ~(drop_user[users] | drop_item[items])
        return bipartite_normalized_graph(users[keep], items[keep], self.n_users, self.n_items).to(self.device)

    def on_epoch_start(self, epoch_idx):
        super().on_epoch_start(epoch_idx)
        self.views = (self.augmented_graph(), self.augmented_graph())

    @staticmethod
    def info_nce(view1, view2, index, tau):
        """Mean over ``index`` of eq. 10's InfoNCE: row ``index`` of ``view1`` against every row of ``view2``."""
        z1 = F.normalize(gather_rows(view1, index), dim=1)
        z_all = F.normalize(view2, dim=1)
        logits = z1 @ z_all.T / tau
        positive = (z1 * gather_rows(z_all, index)).sum(1) / tau
        return (torch.logsumexp(logits, dim=1) - positive).mean()

    def extra_loss_names(self):
        return ("ssl_weight x SGL's self-supervised InfoNCE",) if self.ssl_weight > 0 else ()

    def extra_losses(self, interaction, emb):
        if self.views is None:
            self.views = (self.augmented_graph(), self.augmented_graph())
        if self.ssl_weight == 0:  # LightGCN: the views are drawn all the same (the same random stream), not propagated
            return ()
        view1 = self.propagate_graph(self.views[0], with_layers=False)
        view2 = self.propagate_graph(self.views[1], with_layers=False)
        # row 0 is RecBole's padding id, neither a user nor an item: it stays out of eq. 10's denominators
        user, pos = interaction[self.USER_ID] - 1, interaction[self.ITEM_ID] - 1
        ssl = self.info_nce(view1.user[1:], view2.user[1:], user, self.ssl_tau) + self.info_nce(
            view1.item[1:], view2.item[1:], pos, self.ssl_tau)
        return (self.ssl_weight * ssl,)
