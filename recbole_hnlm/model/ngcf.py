r"""NGCF
################################################
Reference:
    Xiang Wang et al. "Neural Graph Collaborative Filtering." in SIGIR 2019.
"""
import torch
import torch.nn.functional as F
from torch import nn

from recbole_hnlm.config_checks import is_integer, is_number
from recbole_hnlm.errors import ConfigError
from recbole_hnlm.model.abstract import SampledRecommender, concat_pool
from recbole_hnlm.ops import bipartite_normalized_graph, drop_edges, spmm, transpose_positions
from recbole_hnlm.sampler.base import Propagation, require


class NGCF(SampledRecommender):
    r"""NGCF with a pluggable negative sampler.

    .. math::
        E^{(l+1)} = \mathrm{LeakyReLU}\big((\hat A + I) E^{(l)} W_1^{(l)} + (\hat A E^{(l)} \odot E^{(l)})
        W_2^{(l)}\big)

    (paper eq. 8, RecBole's NGCF), followed by message dropout. ``self_loop: False`` drops the self term
    :math:`E^{(l)} W_1^{(l)}` and sums the neighbours only, :math:`\hat A E^{(l)} W_1^{(l)}`, as the NGCF of the MixGCF
    and AHNS code does (``modules/NGCF.py``: no self-loop in its graph). Each layer is stored L2-row-normalised while
    the next layer is computed from the unnormalised one, as in the official NGCF and MixGCF code (RecBole's NGCF
    carries the normalised one). The final embedding concatenates all layers, so MixGCF scores layer ``l`` with the
    user's layer-``l`` embedding (concat pooling, MixGCF §3.2).

    Config:
        hidden_size_list (list of int): output size of each layer. MixGCF needs every size equal to
            ``embedding_size`` (it mixes layers of one width).
        self_loop (bool): the self term of eq. 8 (default True, the NGCF paper and RecBole); False as in the MixGCF
            and AHNS code, whose published NGCF results the hard samplers come from.
        message_dropout (float): dropout on each layer's output during training. Default 0, as in the MixGCF and
            AHNS code that the samplers' published NGCF results come from; NGCF's own code and RecBole use 0.1. The
            hard samplers select on the same propagation, so with dropout they score dropped-out embeddings.
        node_dropout (float): RecBole's name for dropout on the edges of :math:`\hat A` during training, redrawn at
            every propagation: kept values scaled by :math:`1/(1-p)`, not renormalised
            (:func:`~recbole_hnlm.ops.drop_edges`; both directions of an edge drop together, where RecBole and
            MixGCF drop the two stored entries independently). Default 0, as RecBole and the MixGCF code.

    The biases of :math:`W_1, W_2` are Xavier-uniform initialised as ``[1, d]`` rows, as in the official NGCF and
    the MixGCF code (RecBole: zeros; PyTorch's ``nn.Linear``: uniform in :math:`\pm 1/\sqrt{d}`).
    """

    ranking_options = ("self_loop",)  # hidden_size_list: another one does not fit the weights, which is refused

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        from recbole_hnlm.utils import get_sampler

        require(config, "hidden_size_list",
                lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(is_integer(h) and h >= 1 for h in v),
                "a non-empty list of integers >= 1, the output size of each layer (e.g. [64,64,64]; [] would be MF)")
        require(config, "message_dropout", lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)")
        require(config, "node_dropout", lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)")
        require(config, "self_loop", lambda v: isinstance(v, bool), "True or False")
        sampler = get_sampler(config["sampler"])
        if sampler.needs_layers and any(h != config["embedding_size"] for h in config["hidden_size_list"]):
            raise ConfigError(
                f"Sampler {sampler.name} mixes per-layer embeddings and needs every entry of hidden_size_list "
                f"({list(config['hidden_size_list'])}) equal to embedding_size ({config['embedding_size']})."
            )

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.hidden_sizes = list(config["hidden_size_list"])
        self.message_dropout = float(config["message_dropout"])
        self.node_dropout = float(config["node_dropout"])
        self.self_loop = bool(config["self_loop"])
        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        sizes = [self.embedding_size] + self.hidden_sizes
        self.w1 = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.w2 = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        for module in [self.user_embedding, self.item_embedding, *self.w1, *self.w2]:
            nn.init.xavier_uniform_(module.weight)
        for module in [*self.w1, *self.w2]:
            nn.init.xavier_uniform_(module.bias.view(1, -1))  # the official code's [1, d] bias rows
        users, items = self.training_pairs(dataset)
        self.graph = bipartite_normalized_graph(users, items, self.n_users, self.n_items).to(self.device)
        self.graph_transpose = transpose_positions(self.graph) if self.node_dropout else None

    def pooled_size(self, config):
        return config["embedding_size"] + sum(config["hidden_size_list"])

    def propagate(self, with_layers: bool) -> Propagation:
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight], dim=0)
        layers = [ego]
        x = ego
        graph = self.graph
        if self.training and self.node_dropout:
            graph = drop_edges(self.graph, self.node_dropout, self.graph_transpose)
        for w1, w2 in zip(self.w1, self.w2):
            side = spmm(graph, x)
            x = F.leaky_relu(w1(side + x if self.self_loop else side) + w2(side * x), negative_slope=0.2)
            x = F.dropout(x, p=self.message_dropout, training=self.training)
            layers.append(F.normalize(x, p=2, dim=1))
        pooled = torch.cat(layers, dim=1)
        n = self.n_users
        emb = Propagation(user_ego=ego[:n], item_ego=ego[n:], user=pooled[:n], item=pooled[n:], pool=concat_pool,
                          layerwise_query=True)
        if with_layers:
            stack = torch.stack(layers, dim=1)
            emb.user_layers, emb.item_layers = stack[:n], stack[n:]
        return emb
