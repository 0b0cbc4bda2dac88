r"""LightGCN
################################################
Reference:
    Xiangnan He et al. "LightGCN: Simplifying and Powering Graph Convolution Network for Recommendation." in SIGIR 2020.
"""
import torch
from torch import nn

from recbole_hnlm.errors import ConfigError
from recbole_hnlm.model.abstract import SampledRecommender, mean_pool
from recbole_hnlm.ops import bipartite_normalized_graph, lightgcn_propagate
from recbole_hnlm.sampler.base import Propagation


STACK_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def stack_dtype(name) -> torch.dtype:
    """The torch dtype of the ``layers_dtype`` option (``None``: float32)."""
    if name is None:
        return torch.float32
    if name not in STACK_DTYPES:
        raise ConfigError(f"Option 'layers_dtype' must be one of {sorted(STACK_DTYPES)}, got {name!r}.")
    return STACK_DTYPES[name]


class LightGCN(SampledRecommender):
    r"""LightGCN with a pluggable negative sampler.

    .. math::
        E^{(k+1)} = \hat A E^{(k)}, \qquad \bar E = \frac{1}{K+1} \sum_{k=0}^{K} E^{(k)}, \qquad
        \hat A = D^{-1/2} \begin{bmatrix} 0 & R \\ R^\top & 0 \end{bmatrix} D^{-1/2}

    Propagation runs through :func:`recbole_hnlm.ops.lightgcn_propagate` (C++ kernel, one autograd op); the layer
    stack is materialised only for samplers that need it (MixGCF).

    Config:
        n_layers (int): ``K``. Default 3 (MixGCF/AHNS setting).
        layers_dtype (str): dtype of the layer stack when a sampler asks for it (MixGCF): ``float32`` (default) or
            ``bfloat16``, which halves the stack's memory and the bytes of every candidate row MixGCF gathers. The
            embeddings and their gradient stay float32 and every sum is float32, but the stack and its gradient are
            rounded to bfloat16, and so is what the training loss sees: the pooled embeddings of such a batch are the
            float32 mean of the rounded layers, while evaluation pools unrounded float32 layers (they differ at
            bfloat16 precision, ~0.4 %, as in any mixed-precision training).
    """

    ranking_options = ("n_layers",)

    @classmethod
    def check_config(cls, config):
        super().check_config(config)
        stack_dtype(config["layers_dtype"])

    required_options = ("embedding_size", "n_layers", "reg_weight")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.n_layers = config["n_layers"]
        self.layers_dtype = stack_dtype(config["layers_dtype"])
        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        users, items = self.training_pairs(dataset)
        self.graph = bipartite_normalized_graph(users, items, self.n_users, self.n_items).to(self.device)

    def ego_embeddings(self):
        return torch.cat([self.user_embedding.weight, self.item_embedding.weight], dim=0)

    def propagate_graph(self, graph, with_layers: bool) -> Propagation:
        """Propagate the ego embeddings over ``graph`` (the training graph, or an augmented view for SGL)."""
        ego = self.ego_embeddings()
        n = self.n_users
        if with_layers:
            layers = lightgcn_propagate(graph, ego, self.n_layers, return_layers=True, layers_dtype=self.layers_dtype)
            pooled = layers.mean(dim=1, dtype=ego.dtype)
        else:
            layers, pooled = None, lightgcn_propagate(graph, ego, self.n_layers)
        emb = Propagation(user_ego=ego[:n], item_ego=ego[n:], user=pooled[:n], item=pooled[n:], pool=mean_pool)
        if layers is not None:
            emb.user_layers, emb.item_layers = layers[:n], layers[n:]
        return emb

    def propagate(self, with_layers: bool) -> Propagation:
        return self.propagate_graph(self.graph, with_layers)
