r"""HNLMRec
################################################
Reference:
    "Can LLM-Driven Hard Negative Sampling Empower Collaborative Filtering?" (HNLMRec), §3.1 and §4.3.

Reference code:
    https://github.com/user683/HNLMRec (``model_training/model/graph/LightGCN.py``); where it departs from the paper
    (algorithms.md §6.2) the paper is implemented and the code's choices are flags.
"""
import hashlib
import json
import logging
import os

import torch
import torch.nn.functional as F
from torch import nn

from recbole_hnlm.config_checks import is_integer, is_number
from recbole_hnlm.errors import ConfigError
from recbole_hnlm.llm.config import LLMConfig
from recbole_hnlm.ops import gather_rows
from recbole_hnlm.sampler.base import NegativeSampler, Negatives, SamplingContext, require

MISSING_POLICIES = ("error", "random")
NORM_POLICIES = ("none", "item")


def parameter_fingerprint(manifest, config) -> str:
    """SHA-256 of the store's identity (LLM, prompts, dataset, variant: ``IDENTITY_FIELDS``) and the options that
    change what the adapter sees or computes with the same shapes (centring, final ReLU)."""
    from recbole_hnlm.llm.store import IDENTITY_FIELDS

    identity = {key: manifest.get(key) for key in IDENTITY_FIELDS + ("dim",)}
    settings = {"hnlm_center": bool(config["hnlm_center"]), "hnlm_final_relu": bool(config["hnlm_final_relu"])}
    return hashlib.sha256(json.dumps([identity, settings], sort_keys=True, default=str).encode()).hexdigest()


def _distinct_pairs(dataset) -> int:
    """Distinct (user, item) pairs among the dataset's interactions (fewer than its rows when rows repeat)."""
    users, items = dataset.inter_feat[dataset.uid_field].long(), dataset.inter_feat[dataset.iid_field].long()
    return int(torch.unique(users * dataset.item_num + items).numel())


class HNLMRec(NegativeSampler):
    r"""Semantic alignment of precomputed LLM hard negatives (paper §3.1 "semantic alignment", §4.3).

    For each training pair the LLM stage stored one vector :math:`x_{ui} \in \mathbb R^D`
    (:mod:`recbole_hnlm.llm`). Per batch:

    .. math::
        h_{ui} = \mathrm{MLP}(x_{ui})                                         \quad \text{(eq. 6, no output activation)}

        \hat e^-_{ui} = \lambda\, h_{ui} + (1 - \lambda)\, \bar e_j            \quad \text{(eq. 7)}

        \mathcal L_{CL} = \frac1B \sum_b -\log \frac{e^{\cos(\bar e_u, \bar e_i)/\tau}}
            {e^{\cos(\bar e_u, \bar e_i)/\tau} + e^{\cos(\bar e_u, h_{ui})/\tau}}  \quad \text{(eq. 9)}

    with :math:`j` the loader's uniform negative; BPR on :math:`\hat e^-` (eq. 8) is computed by the model and
    :math:`\lambda_1 \mathcal L_{CL}` is added (eq. 10). The adapter is trainable (paper) unless
    ``hnlm_frozen_adapter``. Pairs without a stored vector are an error unless ``hnlm_missing: random``, which trains
    them with the pure random negative and no alignment term; coverage is logged. The mean
    :math:`\cos(\bar e_u, h_{ui})` is logged every epoch: the degenerate solution of algorithms.md §6.3 drives it to
    -1 (the "hard" negative becomes an easy one).

    Config:
        hnlm_file (str): side-car store; ``~`` lets :meth:`prepare` build or find it (``recbole_hnlm.llm``).
        hnlm_lambda (float): :math:`\lambda` of eq. 7 in [0, 1]. Default 1e-4 (code, Yelp); 1e-2 for Toys.
        hnlm_adapter_hidden (list of int): hidden widths of the eq. 6 MLP. Default [512] (eq. 6 has one hidden
            layer; the authors' code uses [2048, 1024]).
        hnlm_cl_weight (float): :math:`\lambda_1`. Default 1e-3.  hnlm_cl_temperature (float): :math:`\tau`. 0.2.
        hnlm_cl_in_batch (bool): also contrast against the other rows' :math:`h` (in-batch denominators).
        hnlm_missing (str): ``error`` or ``random``.
        hnlm_h_norm (str): ``item`` (default) rescales :math:`h` to the norm of :math:`\bar e_j` before eq. 7, so
            :math:`\lambda` is the LLM share of the negative; ``none`` leaves it unbounded (the degenerate solution).
        hnlm_center (bool): subtract the mean stored vector before the adapter (anisotropic [EOS] states).
        hnlm_adapter_reg_weight (float): weight of the squared Frobenius norm of the adapter weights (the parameter
            term of eq. 10). Default 0, as the authors' code: the BPR and eq. 9 gradients reaching the adapter are
            ~1e-4 of its weights, so under Adam even 1e-4 shrinks them to ~0 within a few epochs and h becomes the
            output bias, the same vector for every pair (docs/results.md, "The adapter's Frobenius term").
        hnlm_frozen_adapter, hnlm_final_relu (bool), hnlm_margin (float or ~), hnlm_detach_in_bpr (bool): flags that
            reproduce the official code (frozen random adapter, ReLU output, hinge loss with margin 0.3) or the
            degenerate-solution guard (adapter learns from :math:`\mathcal L_{CL}` only).
    """

    name = "HNLMRec"
    reads_item_file = True  # titles and attributes for the prompts

    def __init__(self, config, dataset, pooled_size=None):
        super().__init__(config, dataset, pooled_size)
        from recbole_hnlm.llm.store import PairEmbeddingStore
        if not config["hnlm_file"]:
            raise ConfigError("HNLMRec needs 'hnlm_file' (set by HNLMRec.prepare, or give the store's path).")
        store = PairEmbeddingStore.open(config["hnlm_file"])
        self.pairs = store.align(dataset)
        self.store_path, self.store_dataset = store.path, store.manifest.get("dataset")
        self.store_variant, self.store_vectors = store.manifest.get("variant"), store.num_pairs
        self.check_no_pairs_outside_training(dataset)
        self.check_built_on_this_split(store.manifest, dataset)
        if config["hnlm_center"] and self.pairs.emb.shape[0] == 1:  # its mean is the one vector: centred, it is 0
            logging.getLogger().warning(f"HNLMRec: hnlm_center is not applied: {self.store_path} holds one "
                                        "vector, and centring a single vector leaves 0.")
        elif config["hnlm_center"] and self.pairs.emb.shape[0]:  # none: the coverage check says so, and why
            mean_norm = self.pairs.center()
            logging.getLogger().info(f"HNLMRec: stored vectors centred (norm of their mean {mean_norm:.4g})")
        self.mix = float(config["hnlm_lambda"])
        self.cl_weight = float(config["hnlm_cl_weight"])
        self.cl_temperature = float(config["hnlm_cl_temperature"])
        self.cl_in_batch = bool(config["hnlm_cl_in_batch"])
        self.missing = config["hnlm_missing"]
        self.margin = config["hnlm_margin"]
        self.detach_in_bpr = bool(config["hnlm_detach_in_bpr"])
        self.h_norm = config["hnlm_h_norm"]
        widths = [self.pairs.dim] + list(config["hnlm_adapter_hidden"]) + [pooled_size or config["embedding_size"]]
        layers = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2 or config["hnlm_final_relu"]:
                layers.append(nn.ReLU())
        self.adapter = nn.Sequential(*layers)
        if config["hnlm_frozen_adapter"]:
            self.adapter.requires_grad_(False)
        # a frozen adapter has nothing to regularise
        self.adapter_reg_weight = 0.0 if config["hnlm_frozen_adapter"] else float(config["hnlm_adapter_reg_weight"])
        self._stats = self._empty_stats()
        #: What the adapter's weights were trained on: a warm start (``init_from``) takes them only when it is equal.
        self.parameter_fingerprint = parameter_fingerprint(store.manifest, config)
        logging.getLogger().info(
            f"HNLMRec: {store.path}: {store.num_pairs} stored pairs, dim {store.dim}, "
            f"{self.pairs.num_pairs} mapped into the dataset (coverage {self.pairs.coverage:.4f})")
        self.check_training_coverage(dataset)

    @classmethod
    def check_config(cls, config):
        require(config, "hnlm_lambda", lambda v: is_number(v) and 0 <= v <= 1, "a number in [0, 1]")
        require(config, "hnlm_cl_weight", lambda v: is_number(v) and v >= 0, "a number >= 0")
        require(config, "hnlm_cl_temperature", lambda v: is_number(v) and v > 0, "a number > 0")
        require(config, "hnlm_missing", lambda v: v in MISSING_POLICIES, f"one of {MISSING_POLICIES}")
        require(config, "hnlm_center", lambda v: isinstance(v, bool), "True or False")
        for flag in ("hnlm_cl_in_batch", "hnlm_frozen_adapter", "hnlm_final_relu", "hnlm_detach_in_bpr"):
            if config[flag] is not None:  # ~ reads as False; a string would switch it on (bool("no") is True)
                require(config, flag, lambda v: isinstance(v, bool), "True or False")
        if config["mixgcf_candidates"] is not None:  # read by the fine-tuned variant's MixGCF teacher
            require(config, "mixgcf_candidates", lambda v: is_integer(v) and v >= 1,
                    "an integer >= 1 (the MixGCF teacher's candidates)")
        if config["hnlm_file"] is not None:
            require(config, "hnlm_file", lambda v: isinstance(v, str) and v != "",
                    "~ (build or find the store) or the path of a store file")
        require(config, "hnlm_h_norm", lambda v: v in NORM_POLICIES, f"one of {NORM_POLICIES}")
        require(config, "hnlm_adapter_reg_weight", lambda v: is_number(v) and v >= 0, "a number >= 0")
        require(config, "hnlm_adapter_hidden",
                lambda v: isinstance(v, (list, tuple)) and all(is_integer(w) and w > 0 for w in v),
                "a list of positive integers (may be empty)")
        if config["hnlm_margin"] is not None:
            require(config, "hnlm_margin", lambda v: is_number(v) and v >= 0,
                    "~ (BPR, the paper) or a number >= 0 (hinge, the code)")
        llm = LLMConfig.from_config(config)  # the LLM stage's settings, before a teacher trains for minutes
        cls.check_teacher_model(llm.teacher_model)

    @staticmethod
    def check_teacher_model(name: str) -> None:
        """``hnlm_teacher_model`` names a backbone of this plugin (the teacher trains with MixGCF): said when the run
        starts, naming the option (it was said once the data had loaded, as if ``--model`` were wrong)."""
        from recbole_hnlm.model.abstract import SampledRecommender
        from recbole_hnlm.utils import PLUGIN_MODELS, get_model

        try:
            teacher = get_model(name)
        except ConfigError:
            teacher = None
        if not (isinstance(teacher, type) and issubclass(teacher, SampledRecommender)):
            raise ConfigError(f"hnlm_teacher_model={name!r}: expected a recbole_hnlm backbone "
                              f"({', '.join(PLUGIN_MODELS)}); the teacher trains with the MixGCF sampler, which needs "
                              "one.")

    @classmethod
    def prepare(cls, config, dataset, train_data):
        """Build the LLM negatives when they are missing (``hnlm_variant``, fine-tuned by default) and set
        ``hnlm_file``.

        The fine-tuned variant first trains its MixGCF teacher on this run's training split when the teacher file
        is missing (``recbole_hnlm.llm.teacher_training``).
        """
        if config["hnlm_file"]:
            return
        warm_up, epochs = config["negative_warmup_epochs"] or 0, config["epochs"]
        if epochs is not None and warm_up >= epochs:
            logging.getLogger().warning(
                f"negative_warmup_epochs={warm_up} covers all epochs={epochs}: this run never trains with HNLMRec's "
                "negatives (it is an RNS run), yet their LLM stage runs first (cached for later runs). Lower "
                "negative_warmup_epochs, or use --sampler=RNS.")
        from recbole_hnlm.data_checks import check_records, dataset_file
        from recbole_hnlm.llm import ensure_negatives
        from recbole_hnlm.llm.pipeline import item_file_loaded, teacher_path_for
        from recbole_hnlm.llm.teacher_training import ensure_teacher

        cls.check_subset_is_allowed(config, train_data)
        item_file = dataset_file(config, "item")
        if os.path.isfile(item_file):  # the LLM stage reads it, loaded or not: fail before the teacher trains
            check_records(item_file, config["encoding"] or "utf-8", quoted=item_file_loaded(config))
        llm = LLMConfig.from_config(config)  # as the LLM stage reads its settings: ~ takes the default
        if llm.variant == "finetuned":
            teacher = teacher_path_for(config)
            cls.check_generator_before_the_teacher(llm, teacher)
            ensure_teacher(config, train_data, teacher)
        progress = bool(config["show_progress"]) if "show_progress" in config else True
        config["hnlm_file"] = ensure_negatives(config, train_data._dataset, progress=progress)

    @staticmethod
    def check_generator_before_the_teacher(llm: LLMConfig, teacher: str):
        """A generator path that is not there, or 4-bit loading on a machine that cannot do it, was said only after
        the fine-tuned variant's teacher had trained (30 epochs: minutes on ml-100k, hours at Yelp2018's size):
        check them first. The generator is resolved as the stage resolves it for its cache keys; 4-bit only when
        the ``teacher`` file is missing, since a new teacher means a new fine-tuning (a store made on a GPU is still
        reused on the CPU)."""
        from recbole_hnlm.llm.models import check_4bit, resolve_generator

        resolve_generator(llm.generator)
        if not os.path.exists(teacher):
            check_4bit(llm.load_in_4bit, "hnlm_load_in_4bit")

    @staticmethod
    def check_subset_is_allowed(config, train_data):
        """``hnlm_max_pairs`` below the training pairs leaves the others without a negative, which ``hnlm_missing:
        error`` refuses: say so before the LLM stage (hours at Amazon-Book size), not after it."""
        max_pairs = int((config["hnlm_max_pairs"] if "hnlm_max_pairs" in config else 0) or 0)
        if max_pairs <= 0 or (config["hnlm_missing"] if "hnlm_missing" in config else "error") != "error":
            return
        pairs = _distinct_pairs(train_data._dataset)
        if max_pairs < pairs:
            raise ConfigError(
                f"hnlm_max_pairs={max_pairs} gives at most {max_pairs} of the {pairs} training pairs an LLM "
                "negative, and hnlm_missing=error refuses a run whose training pairs are not all covered (after the "
                "LLM stage): set hnlm_missing=random to train the others with the random negative only, or "
                "hnlm_max_pairs=0.")

    def check_no_pairs_outside_training(self, dataset):
        """Refuse a store that holds pairs of this dataset that are not training pairs of this run: it was built on
        another split (or with ``--split all``), so its negatives come from profiles, or from an LLM fine-tuned on a
        teacher, that saw interactions this run validates and tests on."""
        users, items = self.pairs.pairs_outside(dataset.inter_feat[dataset.uid_field],
                                                dataset.inter_feat[dataset.iid_field])
        if not users.numel():
            return
        if self.store_dataset and self.store_dataset != dataset.dataset_name:
            raise ConfigError(f"hnlm_file: {self.store_path} was built for dataset '{self.store_dataset}' (its "
                              f"manifest), and {users.numel()} of its (user, item) pairs are ids of "
                              f"'{dataset.dataset_name}' that this run does not train on. Leave hnlm_file unset to "
                              "build the negatives of this dataset.")
        user = dataset.id2token(dataset.uid_field, int(users[0]))
        item = dataset.id2token(dataset.iid_field, int(items[0]))
        raise ConfigError(
            f"hnlm_file: {self.store_path} holds {users.numel()} (user, item) pairs of dataset "
            f"'{dataset.dataset_name}' that are not training pairs of this run (e.g. user {user!r}, item "
            f"{item!r}): it was built on another split (other split_seed, eval_args or pre-split files), on "
            "every interaction (--split all) or on more training pairs (a sparsity cell), so its negatives were "
            "made from interactions this run must not see (its validation and test pairs, when the split "
            "differs). Leave hnlm_file unset to build the negatives of this run's training pairs, or run with "
            "the split settings of the run that built it.")

    def check_built_on_this_split(self, manifest, dataset):
        """Refuse a store built from another set of training pairs, even when every pair it holds is a training pair
        of this run (a ``max_pairs`` subset): the histories in its prompts, and the teacher its LLM was fine-tuned
        on, came from that other split, which may hold this run's validation and test interactions. Stores written
        before they recorded their split (no ``split_hash``) are checked by their pairs only."""
        from recbole_hnlm.llm.store import dataset_split_sha256

        stored = manifest.get("split_hash")
        if stored is None or stored == dataset_split_sha256(dataset):
            return
        raise ConfigError(
            f"hnlm_file: {self.store_path} was built from other training pairs than this run's (its manifest's "
            "split_hash): another split (split_seed, eval_args, pre-split files, a filter), every interaction "
            "(--split all) or another .inter file, so its prompts and teacher may hold interactions this run "
            "validates and tests on. Leave hnlm_file unset to build the negatives of this run's training pairs, "
            "or run with the split settings of the run that built it.")

    def check_training_coverage(self, dataset):
        """Refuse (``hnlm_missing: error``) or log training pairs without a stored vector."""
        users = dataset.inter_feat[dataset.uid_field]
        coverage = self.pairs.pair_coverage(users, dataset.inter_feat[dataset.iid_field])
        covered = round(coverage * len(users))  # 2 pairs of 80,808 read "0.00%" alone
        distinct = _distinct_pairs(dataset)
        counted = (f"{len(users)} training pairs" if distinct == len(users) else  # repeated rows (rm_dup_inter unset)
                   f"{len(users)} training interactions ({distinct} distinct pairs)")
        message = f"HNLMRec: {coverage:.2%} ({covered}) of the {counted} have an LLM negative"
        other = self.store_dataset and self.store_dataset != dataset.dataset_name
        if coverage == 0:
            why = (f"{self.store_path} was built for dataset '{self.store_dataset}'" if other else
                   f"{self.store_path} holds none of this dataset's pairs")
            remedy = "Leave hnlm_file unset to build the negatives of this dataset."
            if not other and self.store_vectors == 0 and self.store_variant == "finetuned":
                why = (f"{self.store_path} holds no vector: no pair could be embedded ({self.store_path}"
                       ".failures.jsonl records why: users or items the teacher lacks, failed profiles)")
                remedy = ("Check that the teacher (hnlm_teacher_path) was trained on this run's training pairs, or "
                          "set hnlm_missing=random (the random negative only, as RNS).")
            elif not other and self.store_vectors == 0:  # built for this dataset: every answer failed
                why = (f"{self.store_path} holds no vector: every LLM answer of its stage failed or was refused "
                       f"({self.store_path}.texts.jsonl records why)")
                remedy = ("A model that answers (hnlm_generator, docs/llm.md), or hnlm_missing=random (the random "
                          "negative only, as RNS).")
            if self.missing == "error":
                raise ConfigError(f"{message}: {why}. {remedy}")
            logging.getLogger().warning(f"{message} ({why}): this run trains with the random negative only, as RNS.")
            return
        if coverage < 1.0 and self.missing == "error":
            raise ConfigError(
                f"{message}. Set hnlm_missing=random to train the others with the random negative only, or "
                "precompute negatives for every training pair.")
        if other:
            logging.getLogger().warning(f"HNLMRec: {self.store_path} was built for dataset '{self.store_dataset}', "
                                        f"this run reads '{dataset.dataset_name}'.")
        logging.getLogger().info(message)

    def aux_loss_names(self) -> tuple:
        return ((("hnlm_cl_weight x eq. 9 alignment",) if self.cl_weight > 0 else ())
                + (("hnlm_adapter_reg_weight x adapter Frobenius norm",) if self.adapter_reg_weight > 0 else ()))

    def forward(self, ctx: SamplingContext) -> Negatives:
        emb = ctx.emb
        x, found = self.pairs.lookup(ctx.user, ctx.pos)
        h = self.adapter(x.to(emb.item.dtype))
        user, pos, random_neg = (gather_rows(emb.user, ctx.user), gather_rows(emb.item, ctx.pos),
                                  gather_rows(emb.item, ctx.neg))
        h_bpr = h.detach() if self.detach_in_bpr else h
        if self.h_norm == "item":  # the scale is a constant of the step: no gradient into random_neg through it
            h_bpr = F.normalize(h_bpr, dim=1) * random_neg.detach().norm(dim=1, keepdim=True)
        weight = self.mix * found.to(h.dtype).unsqueeze(1)
        negative = weight * h_bpr + (1 - weight) * random_neg
        aux = ()
        if self.cl_weight > 0:
            aux += (self.cl_weight * self.alignment_loss(user, pos, h, found),)
        if self.adapter_reg_weight > 0:
            aux += (self.adapter_reg_weight * self.adapter_frobenius(),)
        if self.training:  # an epoch's figures: not the probes of an eval-mode model (fhn analysis, teacher export)
            self._record(user, h, found)
        return Negatives(pooled=negative.unsqueeze(1), ego=gather_rows(emb.item_ego, ctx.neg).unsqueeze(1),
                         item_ids=None, aux_losses=aux, margin=self.margin)

    def adapter_frobenius(self):
        """Squared Frobenius norm of the adapter's weight matrices (the parameter term of eq. 10)."""
        return sum(layer.weight.pow(2).sum() for layer in self.adapter if isinstance(layer, nn.Linear))

    def alignment_loss(self, user, pos, h, found):
        """Eq. 9 over the rows that have an LLM negative (2-way softmax; in-batch denominators optional)."""
        if not bool(found.any()):
            return h.sum() * 0.0
        u, i, n = (F.normalize(t[found], dim=1) for t in (user, pos, h))
        positive = (u * i).sum(1, keepdim=True) / self.cl_temperature
        negative = (u @ n.T if self.cl_in_batch else (u * n).sum(1, keepdim=True)) / self.cl_temperature
        logits = torch.cat([positive, negative], dim=1)
        return (torch.logsumexp(logits, dim=1) - positive[:, 0]).mean()

    @staticmethod
    def _empty_stats():
        return {"rows": 0, "found": 0, "cos_sum": 0.0, "pair_cos_sum": 0.0, "pairs": 0, "zero_h": 0}

    @torch.no_grad()
    def _record(self, user, h, found):
        self._stats["rows"] += int(found.numel())
        k = int(found.sum())
        self._stats["found"] += k
        if k:
            self._stats["cos_sum"] += float(F.cosine_similarity(user[found], h[found], dim=1).sum())
            self._stats["zero_h"] += int((h[found].norm(dim=1) == 0).sum())  # a dead adapter (final ReLU): cos 0
        if k > 1:  # sum of cos(h_a, h_b) over the ordered pairs a != b of the batch: |sum of unit rows|^2 - k
            unit = F.normalize(h[found].double(), dim=1)
            self._stats["pair_cos_sum"] += float(unit.sum(0).pow(2).sum()) - float(unit.pow(2).sum())
            self._stats["pairs"] += k * (k - 1)

    def epoch_report(self):
        """Log, for the last epoch, the batch coverage, the mean cos(user, h) and the mean cos(h, h') between the
        projected negatives of a batch, then reset. cos(user, h) near -1 is the degenerate solution of algorithms.md
        §6.3; cos(h, h') near 1 means the adapter's output hardly depends on the LLM vector (as with the constant rows
        the authors' lookup produces, §6.2)."""
        stats = self._stats
        if stats["rows"]:
            cos = stats["cos_sum"] / max(stats["found"], 1)
            message = f"HNLMRec: batch coverage {stats['found'] / stats['rows']:.2%}, mean cos(user, h) {cos:+.4f}"
            if stats["pairs"]:
                message += f", mean cos(h, h') within a batch {stats['pair_cos_sum'] / stats['pairs']:+.4f}"
            if stats["zero_h"]:
                message += f"; h = 0 in {stats['zero_h']} rows (counted as cos 0)"
            logging.getLogger().info(message)
        self._stats = self._empty_stats()
