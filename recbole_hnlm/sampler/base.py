"""The contract between backbones and negative samplers.

A sampler is an ``nn.Module`` strategy owned by the model (so its parameters are trained, moved and checkpointed with
it). The model propagates once per batch, wraps the result in :class:`Propagation`, and calls the sampler with a
:class:`SamplingContext`; the sampler returns :class:`Negatives`. Selection (argmax, argmin, top-N) runs without
gradients; only the chosen or synthesised embeddings carry them. Samplers draw random numbers from torch's global RNG,
which ``init_seed`` seeds, and never switch the model between ``train()`` and ``eval()``.
"""
import logging
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from recbole_hnlm.config_checks import is_integer
from recbole_hnlm.errors import ConfigError
from recbole_hnlm.ops import gather_rows


@dataclass
class Propagation:
    """One propagation of a backbone.

    Attributes:
        user_ego, item_ego: layer-0 (ego) embeddings ``[n_users, d]`` / ``[n_items, d]``, used for L2 regularisation.
        user, item: pooled embeddings ``[n_users, d']`` / ``[n_items, d']`` that score pairs (``d' = d`` for mean
            pooling, ``(K+1) d`` for NGCF's concatenation).
        user_layers, item_layers: layer stacks ``[n, K+1, d]`` when the sampler asked for them, else ``None``.
        pool: maps a stack ``[..., K+1, d]`` to pooled ``[..., d']`` (mean or concat).
        layerwise_query: ``True`` when layer ``l`` is scored with the user's layer-``l`` embedding (concat pooling),
            ``False`` when every layer is scored with the pooled user embedding (mean pooling; MixGCF §3.2).
    """

    user_ego: torch.Tensor
    item_ego: torch.Tensor
    user: torch.Tensor
    item: torch.Tensor
    pool: Callable[[torch.Tensor], torch.Tensor]
    user_layers: Optional[torch.Tensor] = None
    item_layers: Optional[torch.Tensor] = None
    layerwise_query: bool = False


@dataclass
class SamplingContext:
    """What a sampler sees for one training batch of ``B`` positive pairs.

    Attributes:
        user, pos: ``[B]`` internal user and positive item ids.
        neg: ``[B]`` the data loader's uniform negative (positives excluded); RNS and HNLMRec's random negative.
        emb: the batch's :class:`Propagation`.
        candidates: ``[B, M]`` uniform candidates without training positives, when the sampler needs them.
    """

    user: torch.Tensor
    pos: torch.Tensor
    neg: torch.Tensor
    emb: Propagation
    candidates: Optional[torch.Tensor] = None


@dataclass
class Negatives:
    """A sampler's answer for one batch.

    Attributes:
        pooled: ``[B, N, d']`` negative embeddings that enter the ranking loss (``N`` negatives per positive).
        ego: ``[B, N, d]`` their layer-0 part, regularised like the user and positive ego embeddings.
        item_ids: ``[B, N]`` ids when the negatives are real items (``None`` for synthetic ones).
        aux_losses: extra loss terms (e.g. HNLMRec's InfoNCE alignment), added to the total and logged separately.
        margin: when set, the model ranks with the hinge ``relu(s_neg - s_pos + margin)`` instead of BPR (only to
            reproduce HNLMRec's official code, algorithms.md §6.2).
    """

    pooled: torch.Tensor
    ego: torch.Tensor
    item_ids: Optional[torch.Tensor] = None
    aux_losses: tuple = ()
    margin: Optional[float] = None


def gather_items(emb: Propagation, ids: torch.Tensor) -> Negatives:
    """Negatives that are real items ``ids`` (any shape ``[B, N]``): pooled and ego rows, with gradients."""
    return Negatives(pooled=gather_rows(emb.item, ids), ego=gather_rows(emb.item_ego, ids), item_ids=ids)


class NegativeSampler(nn.Module):
    """Base class of all samplers.

    Class attributes:
        name: the value of the ``sampler`` config key (and the yaml file ``properties/sampler/<name>.yaml``).
        needs_layers: the backbone must return per-layer stacks (MixGCF).
        n_candidates_key: config key holding ``M`` when the sampler draws candidates, else ``None``.
        reads_item_file: :meth:`prepare` reads the dataset's ``.item`` file itself, loaded by RecBole or not
            (HNLMRec's LLM prompts): a run's recorded dataset files include it.
    """

    name = ""
    needs_layers = False
    n_candidates_key = None
    reads_item_file = False

    def __init__(self, config, dataset, pooled_size=None):
        super().__init__()
        self.pooled_size = pooled_size
        self.n_candidates = config[self.n_candidates_key] if self.n_candidates_key else 0
        n_items = dataset.item_num - 1 if dataset is not None else None  # id 0 is RecBole's padding
        if n_items is not None and self.n_candidates > n_items:  # a warning: defaults (64) exceed toy datasets
            logging.getLogger().warning(
                f"Option '{self.n_candidates_key}' = {self.n_candidates} exceeds the {n_items} items of dataset "
                f"{config['dataset']!r}: every batch scores all {self.n_candidates} candidates per pair, drawn "
                f"uniformly with replacement outside the user's training positives, so at least "
                f"{self.n_candidates - n_items} of them repeat an item; candidates beyond {n_items} add only repeats.")

    @classmethod
    def check_config(cls, config):
        """Reject bad hyper-parameters at start-up with a message naming the key."""
        if cls.n_candidates_key:
            require(config, cls.n_candidates_key, lambda v: is_integer(v) and v >= 1, "an integer >= 1")

    def aux_loss_names(self) -> tuple:
        """What each of the sampler's ``aux_losses`` is, in order (the log's loss columns after the first)."""
        return ()

    @classmethod
    def option_warnings(cls, config) -> list:
        """Warnings about options this sampler accepts but that change nothing for it (logged at start-up): a
        candidate sampler draws its own uniform candidates, so RecBole's loader-negative distribution and dynamic
        negatives (``train_neg_sample_args``) only cost time (after a negative warm-up, which trains on them)."""
        args = config["train_neg_sample_args"] or {}
        if not cls.n_candidates_key or (args.get("distribution") == "uniform" and not args.get("dynamic")):
            return []
        unread = ([f"its {args.get('distribution')} distribution"] if args.get("distribution") != "uniform" else []) \
            + (["its dynamic negatives"] if args.get("dynamic") else [])
        verb = "changes" if len(unread) == 1 and not args.get("dynamic") else "change"
        warmup = config["negative_warmup_epochs"]
        after = f" after the {warmup}-epoch negative warm-up, which trains on the loader's negatives" if warmup else ""
        repeats = args.get("sample_num") if isinstance(args.get("sample_num"), int) else 1
        return [f"Option 'train_neg_sample_args' = {dict(args)}: the {cls.name} sampler scores "
                f"{config[cls.n_candidates_key]} candidates drawn uniformly ('{cls.n_candidates_key}') and reads no "
                "loader negative (only RNS, HNLMRec's random negative and a negative warm-up do), so "
                f"{' and '.join(unread)} {verb} nothing{after}; RecBole still draws the loader's negatives"
                + (", and its dynamic negatives score every batch (slower)" if args.get("dynamic") else " (slower)")
                + (f". Its sample_num = {repeats} does count: every training pair appears {repeats} times per epoch, "
                   "each with its own candidates." if repeats > 1 else ".")]

    @classmethod
    def prepare(cls, config, dataset, train_data):
        """Run offline work the sampler needs before the model is built (HNLMRec's LLM precompute)."""

    def forward(self, ctx: SamplingContext) -> Negatives:
        raise NotImplementedError


def require(config, key, predicate, expectation):
    """Raise :class:`ConfigError` (a ``ValueError``) naming ``key`` unless ``predicate(config[key])`` holds."""
    value = config[key]
    if value is None or not predicate(value):
        raise ConfigError(f"Invalid value for '{key}': {value!r}; expected {expectation}.")
