r"""``SampledRecommender``: the RecBole skeleton shared by the plugin's backbones.

A backbone implements :meth:`SampledRecommender.propagate`; this class owns the negative sampler, the candidate
generator, the pairwise loss and RecBole's prediction interface. Per training batch: one propagation, candidates if the
sampler needs them, the sampler's negatives, then

.. math::
    \mathcal L = \frac1B \sum_b \sum_{t=1}^{N} \operatorname{softplus}\big(s(u_b, j_{bt}) - s(u_b, i_b)\big)
      + \frac{\lambda}{2B}\big(\|E^{(0)}_u\|^2 + \|E^{(0)}_i\|^2 + \|E^{(0)}_j\|^2\big)

which is BPR (algorithms.md §0; MixGCF/AHNS ``create_bpr_loss`` with one negative), plus the sampler's and the
backbone's auxiliary losses, each logged as its own ``train_loss`` column by RecBole's trainer. Only DNS's
``shi_sum`` returns ``N > 1`` negatives: their BPR terms are summed over the negatives, as in Shi et al., and averaged
over the batch like every other term (Shi et al. also sum over the batch, algorithms.md §2.2, which only weighs the
ranking term B times more against the L2 term); ``create_bpr_loss`` would take
:math:`\log(1 + \sum_t e^{s_{j_t} - s_i})` instead.
"""
import logging

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType

from recbole_hnlm.errors import ConfigError
from recbole_hnlm.ops import gather_rows
from recbole_hnlm.sampler.base import Propagation, SamplingContext, gather_items
from recbole_hnlm.sampler.candidates import CandidateGenerator
from recbole_hnlm.warm_start import dataset_digests


class SampledRecommender(GeneralRecommender):
    """Base class of recbole_hnlm backbones (MF, NGCF, LightGCN, SGL).

    Config:
        embedding_size (int): ``d``.
        reg_weight (float): :math:`\\lambda` of the layer-0 L2 term (squared norms, as MixGCF/AHNS: RecBole's
            ``EmbLoss(require_pow=True)``; RecBole's ``require_pow`` option is not read, and setting it is warned
            about).
        sampler (str): negative sampler name; its hyper-parameters come from ``properties/sampler/<name>.yaml``.
        candidate_max_rounds (int): redraw rounds that remove training positives from candidates.
        negative_warmup_epochs (int): the first ``N`` epochs train with the loader's uniform negative (RNS), without
            the sampler's own loss terms; the sampler takes over from epoch ``N``, on embeddings that already rank.
            0 (default): from the start.
    """

    input_type = InputType.PAIRWISE
    #: Every bit of training state is in the weights, the optimizer and the random streams, so a run can be resumed
    #: exactly (:mod:`recbole_hnlm.resume`); several RecBole models keep counters outside them (MultiVAE's annealing).
    resumable = True
    #: Options besides the weights that change how the trained model ranks (LightGCN's ``n_layers``): evaluating a
    #: checkpoint under other values warns (``eval_only``, :func:`recbole_hnlm.load.load_data_and_model`).
    ranking_options = ()

    def __init__(self, config, dataset):
        type(self).check_config(config)
        type(self).check_options_set(config)
        super().__init__(config, dataset)
        from recbole_hnlm.utils import get_sampler

        self.embedding_size = config["embedding_size"]
        self.reg_weight = config["reg_weight"]
        users, items = self.training_pairs(dataset)
        self.data_digests = dataset_digests(dataset)  # stored in checkpoints (recbole_hnlm.warm_start)
        with torch.random.fork_rng(devices=[]):  # a sampler's own weights (HNLMRec's adapter) come from a stream
            # derived from the seeded one, which they leave where it was: every sampler's run of a seed starts from
            # the same backbone weights (and the two draw no common numbers)
            torch.random.default_generator.manual_seed(int(torch.randint(2**62, ())))
            self.sampler = get_sampler(config["sampler"])(config, dataset, pooled_size=self.pooled_size(config))
        self.candidate_generator = CandidateGenerator(users, items, self.n_items, config["candidate_max_rounds"])
        self.negative_warmup_epochs = int(config["negative_warmup_epochs"] or 0)
        self.warming_up = False  # set before every training epoch by on_epoch_start (a loaded model is past it)
        self._announced_warm_up = None
        self._announced_losses = None
        self._epoch_hooks_called = False  # RecBole's own Trainer calls none: said once at the first loss
        self.restore_user_e = None  # inference cache of the pooled embeddings (not stored in checkpoints: it
        self.restore_item_e = None  # follows the weights and the backbone options, see _drop_inference_cache)

    def training_pairs(self, dataset):
        """``(users, items)`` int64 tensors of the training interactions the model was built with."""
        return (dataset.inter_feat[dataset.uid_field].long(), dataset.inter_feat[dataset.iid_field].long())

    # -- what a backbone implements ------------------------------------------------------------------------------
    @classmethod
    def check_config(cls, config):
        """Reject a bad backbone option with a message naming it. :class:`recbole_hnlm.config.Config` calls this
        before the dataset loads, and the constructor again (for configurations built another way)."""
        args = config["train_neg_sample_args"] or {}
        sample_num = args.get("sample_num")
        if args.get("distribution") == "none" or not isinstance(sample_num, int) or sample_num < 1:
            raise ConfigError(f"Option 'train_neg_sample_args' = {config['train_neg_sample_args']}: the plugin's "
                              "backbones train pairwise (BPR) and need an integer sample_num >= 1 loader negatives "
                              "per pair, e.g. {'distribution': 'uniform', 'sample_num': 1} (the default).")
        if str(config["learner"]).lower() == "sparse_adam":
            raise ConfigError("Option 'learner' = 'sparse_adam' needs sparse gradients, and the plugin's backbones "
                              "have dense ones (PyTorch's SparseAdam fails at the first step): use adam or adamw.")

    #: Options the backbone reads that have no usable ``None`` (the shipped backbones' property files set them), in
    #: the order a configuration that leaves several unset names them.
    required_options = ("embedding_size", "reg_weight")

    @classmethod
    def check_options_set(cls, config):
        """Refuse a configuration without the plugin's property layers (RecBole's own ``Config``: the sampler's
        options are missing) or without a value for one of :attr:`required_options` (a model of the user's own that
        is no subclass of a shipped backbone gets no property file): both failed inside torch once the data loaded."""
        if "candidate_max_rounds" not in config or config["sampler"] is None:
            raise ConfigError(f"{cls.__name__} is a recbole_hnlm backbone and needs the plugin's options (sampler, "
                              "candidate_max_rounds and the sampler's own): build its configuration with "
                              "recbole_hnlm.config.Config, which loads the plugin's property files (RecBole's "
                              "Config does not).")
        missing = [key for key in cls.required_options if config[key] is None]
        if missing:
            from recbole_hnlm.config import plugin_model_defaults

            defaults = plugin_model_defaults(cls)
            for key in missing:  # a backbone's default set to None (--reg_weight=None, a searched None)
                if defaults.get(key) is not None:
                    raise ConfigError(f"Option '{key}' of the {cls.__name__} model needs a value (its default is "
                                      f"{defaults[key]}), got None.")
            raise ConfigError(f"Option(s) {', '.join(repr(key) for key in missing)} of {cls.__name__} are not set: "
                              "only the shipped backbones (MF, NGCF, LightGCN, SGL) and their subclasses take defaults "
                              "from the plugin's properties/model/<name>.yaml; another model of your own needs them "
                              "in config_dict or a config file.")

    def pooled_size(self, config):
        """Width ``d'`` of the pooled embeddings that score pairs (``d`` for mean pooling)."""
        return config["embedding_size"]

    def propagate(self, with_layers: bool) -> Propagation:
        """Propagate once and return ego, pooled and (if ``with_layers``) per-layer embeddings."""
        raise NotImplementedError

    def extra_losses(self, interaction, emb: Propagation) -> tuple:
        """Backbone-specific loss terms (SGL's contrastive loss); none by default."""
        return ()

    def extra_loss_names(self) -> tuple:
        """What each of :meth:`extra_losses` is, in order."""
        return ()

    def loss_names(self) -> tuple:
        """The loss columns RecBole logs (``train_loss1``, ...) in the order :meth:`calculate_loss` returns them."""
        sampler_terms = () if self.warming_up else self.sampler.aux_loss_names()
        return ("BPR + reg_weight x L2",) + sampler_terms + self.extra_loss_names()

    # -- RecBole interface ---------------------------------------------------------------------------------------
    def forward(self):
        emb = self.propagate(with_layers=False)
        return emb.user, emb.item

    def calculate_loss(self, interaction):
        if not self._epoch_hooks_called:
            self._epoch_hooks_called = True
            logging.getLogger().warning(
                f"{type(self).__name__}.calculate_loss ran before on_epoch_start: RecBole's own Trainer does not call "
                "the plugin's epoch hooks, so negative_warmup_epochs, SGL's views redrawn per epoch and the "
                "samplers' epoch reports are skipped, and its checkpoints are pickles (its evaluate with "
                "load_best_model fails). Train with recbole_hnlm.utils.get_trainer(config['MODEL_TYPE'], "
                "config['model']), or call model.on_epoch_start(epoch) before each epoch of a loop of your own.")
        self._drop_inference_cache()
        user, pos, neg = interaction[self.USER_ID], interaction[self.ITEM_ID], interaction[self.NEG_ITEM_ID]
        if self.warming_up:  # negative_warmup_epochs: the loader's uniform negative, as RNS
            emb = self.propagate(with_layers=False)
            negatives = gather_items(emb, neg.unsqueeze(1))
        else:
            emb = self.propagate(with_layers=self.sampler.needs_layers)
            candidates = None
            if self.sampler.n_candidates:
                candidates = self.candidate_generator(user, self.sampler.n_candidates)
            negatives = self.sampler(SamplingContext(user=user, pos=pos, neg=neg, emb=emb, candidates=candidates))

        u, i = gather_rows(emb.user, user), gather_rows(emb.item, pos)
        pos_score = (u * i).sum(-1, keepdim=True)
        neg_score = (u.unsqueeze(1) * negatives.pooled).sum(-1)
        if negatives.margin is None:
            rank_loss = F.softplus(neg_score - pos_score).sum(1).mean()
        else:
            rank_loss = F.relu(neg_score - pos_score + negatives.margin).sum(1).mean()
        reg_loss = self.reg_weight * (
            gather_rows(emb.user_ego, user).pow(2).sum() + gather_rows(emb.item_ego, pos).pow(2).sum()
            + negatives.ego.pow(2).sum()
        ) / (2 * user.shape[0])
        aux = tuple(negatives.aux_losses) + tuple(self.extra_losses(interaction, emb))
        if aux:
            return (rank_loss + reg_loss,) + aux
        return rank_loss + reg_loss

    def on_epoch_start(self, epoch_idx):
        """Called by the trainer before every training epoch (also the first epoch of a resumed run)."""
        self._epoch_hooks_called = True
        self.warming_up = epoch_idx < self.negative_warmup_epochs
        if self.negative_warmup_epochs and self.warming_up != self._announced_warm_up:  # the run's start, the switch
            self._announced_warm_up = self.warming_up
            logging.getLogger().info(
                f"negative_warmup_epochs={self.negative_warmup_epochs}: from epoch {epoch_idx} training uses "
                + ("the uniform negative (RNS)" if self.warming_up else f"the {self.sampler.name} sampler"))
        names = self.loss_names()
        if len(names) > 1 and names != self._announced_losses:  # RecBole logs them as train_loss1, 2, ... only
            self._announced_losses = names
            columns = ", ".join(f"train_loss{k} = {name}" for k, name in enumerate(names, 1))
            logging.getLogger().info(f"loss columns from epoch {epoch_idx}: {columns}")

    def on_epoch_end(self, epoch_idx):
        """Called by the trainer after every training epoch: the sampler logs what it counted in it."""
        report = getattr(self.sampler, "epoch_report", None)
        if report is not None:
            report()

    def _drop_inference_cache(self):
        self.restore_user_e = self.restore_item_e = None

    def train(self, mode=True):
        """``nn.Module.train``/``eval``; each evaluation (RecBole calls ``eval()`` first) propagates afresh."""
        self._drop_inference_cache()
        return super().train(mode)

    def load_state_dict(self, state_dict, strict=True, assign=False):
        """New weights: the inference cache no longer matches them."""
        self._drop_inference_cache()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def load_other_parameter(self, para):
        """Checkpoints written before session 22 hold the inference cache (RecBole's ``other_parameter``): it is
        ignored, since it was computed with the options of the run that wrote it (a changed ``n_layers`` was
        tested with the old ranking)."""
        self._drop_inference_cache()

    def _pooled_for_inference(self):
        if self.restore_user_e is None or self.restore_item_e is None:
            user_e, item_e = self.forward()
            self.restore_user_e, self.restore_item_e = user_e.detach(), item_e.detach()
        return self.restore_user_e, self.restore_item_e

    def predict(self, interaction):
        user_e, item_e = self._pooled_for_inference()
        # gather_rows, not indexing: a negative id is an error, not the score of a row from the end
        return (gather_rows(user_e, interaction[self.USER_ID]) * gather_rows(item_e, interaction[self.ITEM_ID])).sum(-1)

    def full_sort_predict(self, interaction):
        user_e, item_e = self._pooled_for_inference()
        return (gather_rows(user_e, interaction[self.USER_ID]) @ item_e.T).view(-1)

    # -- used by the LLM module (teacher export) -----------------------------------------------------------------
    @torch.no_grad()
    def pooled_embeddings(self):
        """``(user [n_users, d'], item [n_items, d'])`` pooled embeddings, without gradients."""
        emb = self.propagate(with_layers=False)
        return emb.user.detach(), emb.item.detach()

    @torch.no_grad()
    def hard_negatives(self, user, pos):
        """``[B, d']`` pooled hard negatives of the configured sampler for the pairs ``(user, pos)``, without
        gradients (the teacher targets of HNLMRec's fine-tuning; algorithms.md §10.13). Inside the negative warm-up
        these are the uniform negatives training draws at that point."""
        if self.warming_up:
            emb = self.propagate(with_layers=False)
            return gather_items(emb, self.candidate_generator(user, 1)).pooled[:, 0].detach()
        emb = self.propagate(with_layers=self.sampler.needs_layers)
        if self.sampler.n_candidates:
            candidates = self.candidate_generator(user, self.sampler.n_candidates)
            # not read by the candidate samplers; drawn so that their exports keep the random stream they had
            neg = torch.randint(1, self.n_items, user.shape, device=user.device)
        else:  # RNS, HNLMRec: a uniform negative that is not a training positive, as the training loader draws
            candidates, neg = None, self.candidate_generator(user, 1)[:, 0]
        ctx = SamplingContext(user=user, pos=pos, neg=neg, emb=emb, candidates=candidates)
        return self.sampler(ctx).pooled[:, 0].detach()


def mean_pool(layers):
    """Mean over the layer axis: ``[..., K+1, d] -> [..., d]``."""
    return layers.mean(dim=-2)


def concat_pool(layers):
    """Concatenate the layers: ``[..., K+1, d] -> [..., (K+1) d]`` (NGCF)."""
    return layers.flatten(-2)
