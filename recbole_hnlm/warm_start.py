"""Warm start: a new run's backbone weights from another run's checkpoint (``--init_from=<file>``).

``resume_from`` continues the same run; ``init_from`` starts a new one (epoch 0, fresh optimizer, early stopping and
random streams) from the weights of a finished or interrupted run of the same backbone on the same dataset, trained
with any sampler. The usual case: a hard negative sampler (DNS, MixGCF, AHNS, HNLMRec) started from an RNS run,
so that the first hard negatives are drawn from a model that already ranks (docs/results.md: SGL on ml-100k,
warm-started).

Checkpoints record two digests (:func:`data_digests`): the dataset's user and item tokens in id order, so weights are
never laid onto other users or items when the dataset or its filtering options changed but the counts did not; and
the training split's (user, item) pairs, so a run never starts from weights that were trained on its own validation
or test interactions (another ``split_seed``, split ratios or training fraction); they are compared right after the
split, before the sampler's preparation (:func:`check_checkpoint_data`). The sampler's own parameters (HNLMRec's eq. 6
adapter) are taken only from a run of the same sampler on the same input (:func:`warm_start`).
"""
import hashlib
import logging
import os

import numpy as np

from recbole_hnlm.checkpoint import read_model_weights, read_trainer_state
from recbole_hnlm.config import split_seed
from recbole_hnlm.errors import ConfigError
from recbole_hnlm.resume import option_checkpoint_state

__all__ = ["id_map_digest", "train_pairs_digest", "dataset_digests", "data_digests", "record_eval_split",
           "warn_about_changed_eval_split", "check_same_data",
           "check_checkpoint_data", "check_checkpoint_shapes", "check_init_from", "warm_start", "load_backbone",
           "weights_mismatch"]

_SAMPLER_PREFIX = "sampler."
#: The remedy of a warm start whose weights do not fit (check_checkpoint_shapes and _checked_backbone).
_SAME_BACKBONE = "use the same backbone options as that run (embedding_size, n_layers ...)"


def _backbone_weights(weights: dict) -> dict:
    """The backbone's entries of a ``name -> tensor`` map (the sampler's parameters left out)."""
    return {k: v for k, v in weights.items() if not k.startswith(_SAMPLER_PREFIX)}


def id_map_digest(dataset) -> str:
    """SHA-256 of the user and item tokens in internal-id order: equal exactly when every id means the same user
    or item."""
    digest = hashlib.sha256()
    for field in (dataset.uid_field, dataset.iid_field):
        digest.update(f"{field}\0{len(dataset.field2id_token[field])}\0".encode())
        for token in dataset.field2id_token[field]:
            digest.update(str(token).encode())
            digest.update(b"\0")
    return digest.hexdigest()


def train_pairs_digest(users, items) -> str:
    """SHA-256 of the set of training (user id, item id) pairs, independent of their order."""
    users, items = np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)
    width = int(items.max()) + 1 if items.size else 1
    keys = np.unique(users * width + items)  # sorted, duplicates once
    return hashlib.sha256(f"{width}\0".encode() + keys.astype("<i8").tobytes()).hexdigest()


def _dataset_pairs_digest(dataset) -> str:
    """:func:`train_pairs_digest` of a RecBole dataset's (user, item) pairs."""
    return train_pairs_digest(np.asarray(dataset.inter_feat[dataset.uid_field]),
                              np.asarray(dataset.inter_feat[dataset.iid_field]))


def dataset_digests(train_dataset) -> dict:
    """``{"id_map", "train_split"}`` of the dataset a model trains on (``train_data._dataset``), as checkpoints store
    them."""
    return {"id_map": id_map_digest(train_dataset), "train_split": _dataset_pairs_digest(train_dataset)}


def eval_split_digest(valid_dataset, test_dataset) -> str:
    """The validation and test pairs' digests, joined."""
    return ":".join(_dataset_pairs_digest(d) for d in (valid_dataset, test_dataset))


def record_eval_split(model, valid_data, test_data) -> None:
    """Add the digest of the run's validation and test pairs to a plugin backbone's ``data_digests`` (its
    checkpoints store it), so that evaluating the checkpoint later can say when they changed."""
    if getattr(model, "data_digests", None) is not None:
        model.data_digests["eval_split"] = eval_split_digest(valid_data._dataset, test_data._dataset)


def warn_about_changed_eval_split(path, valid_data, test_data, who) -> None:
    """Warn when the checkpoint ``path`` was evaluated on other validation or test pairs than ``valid_data`` and
    ``test_data`` (its weights are fine: they trained on the same split, which is checked; its logged metrics are not
    comparable). Checkpoints without the digest are not compared."""
    stored = read_trainer_state(path).get("eval_split")
    if stored is not None and stored != eval_split_digest(valid_data._dataset, test_data._dataset):
        logging.getLogger().warning(
            f"{who}: the validation or test pairs differ from those the run of {os.path.basename(path)} was "
            "evaluated on (a changed .valid/.test file, or options that filter the dataset): its metrics here will "
            "differ from the ones it logged, and recommendations leave out other items.")


def data_digests(model) -> dict:
    """The digests of the data a plugin backbone was built on (``{}`` for RecBole's models)."""
    return dict(getattr(model, "data_digests", None) or {})


def check_same_data(state: dict, own: dict, option: str, path: str, dataset: str) -> None:
    """Raise :class:`ConfigError` when the checkpoint ``path`` (trainer ``state``) was trained on other ids or another
    training split than the digests ``own`` of this run; digests the checkpoint does not have are not compared (a
    warning says so)."""
    if state.get("id_map") is not None and "id_map" in own and state["id_map"] != own["id_map"]:
        raise ConfigError(f"{option}: {path} was trained on other users or items than this run's {dataset} (the "
                          "dataset files or their filtering options, e.g. user_inter_num_interval, changed); its "
                          "weights would land on the wrong rows.")
    if state.get("train_split") is not None and "train_split" in own and state["train_split"] != own["train_split"]:
        raise ConfigError(f"{option}: {path} was trained on another training split of {dataset}: the dataset's "
                          "interactions changed (its .inter file, or options that filter it), or split_seed (the "
                          "seed when split_seed is unset), eval_args or the training fraction differ. Its weights may "
                          "have seen this run's validation and test interactions. Use a checkpoint trained with this "
                          "run's data and split.")
    if own and any(state.get(key) is None for key in ("id_map", "train_split")):  # absent, or null (hand-edited)
        logging.getLogger().warning(
            f"{option}: {path} predates the dataset and split digests, so only the weights' shapes are checked: "
            "make sure it was trained on this run's dataset and training split.")


def check_checkpoint_data(config, train_dataset) -> None:
    """Right after the split, before the sampler's preparation (HNLMRec's LLM stage): refuse a ``resume_from`` or
    ``init_from`` checkpoint trained on other ids or another split (:func:`check_same_data`)."""
    own = None
    for option in ("resume_from", "init_from"):
        if config[option] is not None:
            own = own or dataset_digests(train_dataset)
            check_same_data(read_trainer_state(config[option]), own, option, config[option], config["dataset"])


def check_checkpoint_shapes(config, train_dataset) -> None:
    """Before the sampler's preparation (HNLMRec's LLM stage: minutes to hours): refuse a ``resume_from`` or
    ``init_from`` checkpoint whose backbone weights do not fit this run's backbone (another ``embedding_size``,
    ``n_layers`` ...). The backbone is built once with the uniform sampler to read its names and shapes; the
    random streams are put back, so the run that follows is the same."""
    from recbole_hnlm.rng_state import capture_rng_state, restore_rng_state
    from recbole_hnlm.utils import model_class_of

    options = [option for option in ("resume_from", "init_from") if config[option] is not None]
    if not options:
        return
    sampler, streams = config["sampler"], capture_rng_state()
    config["sampler"] = "RNS"  # a sampler shapes no backbone weight (HNLMRec's needs its store, not built yet)
    try:
        own = _backbone_weights(model_class_of(config)(config, train_dataset).state_dict())
    finally:
        config["sampler"] = sampler
        restore_rng_state(*streams)
    for option in options:
        _, stored = read_model_weights(config[option])
        problem = weights_mismatch(_backbone_weights(stored), own)
        if problem:
            if option == "resume_from":
                from recbole_hnlm.resume import changed_options

                changed = changed_options(config, config[option])
                hint = "resume with the options of the interrupted run" + (
                    f" (changed since: {'; '.join(changed)})" if changed else " (embedding_size, n_layers ...)")
            else:
                hint = _SAME_BACKBONE
            raise ConfigError(f"{option}: the weights in {config[option]} do not fit this {config['model']} "
                              f"({problem}); {hint}.")


def check_init_from(config) -> None:
    """Raise :class:`ConfigError` when ``init_from`` cannot start this run; a no-op when it is unset. Runs before
    any data is loaded (file, model, dataset, split seed); :func:`check_checkpoint_data` compares the ids and the
    split once the data is split, and :func:`warm_start` the weights."""
    path = config["init_from"]  # its type is checked with the other options (config_checks)
    if config["eval_only"] and (path is None or config["resume_from"] is not None):
        raise ConfigError("eval_only: evaluates the checkpoint given with --init_from=<file> (a best checkpoint or a "
                          + ("resume state), without --resume_from." if path else "resume state); none was given."))
    if path is None:
        return
    if config["resume_from"] is not None:  # "the same options" of a warm-started run include its init_from
        started_from = read_trainer_state(config["resume_from"]).get("init_from")
        if started_from is not None and os.path.realpath(path) == os.path.realpath(started_from):
            config["init_from"] = None  # the resume state holds the weights; its init_from is kept as the origin
            return
        origin = f"from {started_from}" if started_from else "from random weights"
        raise ConfigError(f"init_from: resume_from continues {config['resume_from']}, a run started {origin}; its "
                          "weights come from the resume state. Drop --init_from.")
    state = option_checkpoint_state(
        config, "init_from",
        hint=("Give a checkpoint of an earlier run: <checkpoint_dir>/<model>-<time>.safetensors or its "
              f".resume.safetensors (checkpoint_dir is {config['checkpoint_dir']})."),
        refusal="cannot be evaluated with eval_only" if config["eval_only"] else "cannot be warm-started")
    for key in ("model", "dataset"):
        if str(state.get(key)).lower() != str(config[key]).lower():
            raise ConfigError(f"init_from: {path} holds {key}={state.get(key)}, this run has {key}={config[key]}; "
                              f"a warm start needs the same {key} (the sampler may differ).")
    stored_split = state.get("split_seed")
    if stored_split is not None and int(stored_split) != split_seed(config):
        raise ConfigError(f"init_from: {path} was trained on the split of seed {stored_split}, this run splits with "
                          f"seed {split_seed(config)}; its weights may have seen this run's validation and test "
                          f"interactions. Add --split_seed={stored_split}.")


def backbone_option_changes(config, state: dict) -> list:
    """``"name: trained -> now"`` for each option that shapes the backbone's ranking (the model class's
    ``ranking_options``, e.g. LightGCN's ``n_layers``) whose value in this run differs from the one the checkpoint
    (trainer ``state``) was trained with; ``[]`` for checkpoints that predate stored options."""
    from recbole_hnlm.resume import OPTIONS_ADDED, training_options
    from recbole_hnlm.utils import model_class_of

    stored = state.get("options")
    if stored is None:
        return []
    stored = {**OPTIONS_ADDED, **stored}  # what checkpoints written before an option existed did
    current = training_options(config)
    return [f"{key}: {stored[key]!r} -> {current.get(key)!r}"
            for key in getattr(model_class_of(config), "ranking_options", ())
            if key in stored and stored[key] != current.get(key)]


def weights_mismatch(stored: dict, wanted: dict) -> str:
    """The first difference between two ``name -> tensor`` maps, in words; ``""`` when names and shapes agree."""
    for name in sorted(set(stored) | set(wanted)):
        if name not in stored:
            return f"{name} is missing from the checkpoint"
        if name not in wanted:
            return f"the checkpoint has {name}, which this model does not"
        if tuple(stored[name].shape) != tuple(wanted[name].shape):
            return f"{name} is {tuple(stored[name].shape)} there and {tuple(wanted[name].shape)} here"
    return ""


def _checked_backbone(model, config):
    """``(trainer state, stored weights, backbone weights)`` of ``config["init_from"]``, the backbone's names and
    shapes checked against ``model``.

    Raises:
        ConfigError: the weights do not fit this model.
    """
    path = config["init_from"]
    state, stored = read_model_weights(path)
    backbone = _backbone_weights(stored)
    problem = weights_mismatch(backbone, _backbone_weights(model.state_dict()))
    if problem:
        raise ConfigError(f"init_from: the weights in {path} do not fit this {config['model']} ({problem}); "
                          f"{_SAME_BACKBONE}.")
    return state, stored, backbone


def _warn_if_not_the_best_epoch(path, state) -> None:
    """A resume state holds the last epoch trained, which the run did not test when an earlier epoch validated
    best: evaluating or ranking with it gives other numbers than the run's test result, without a word."""
    best = state.get("best_epoch")
    if not state.get("resume_state") or best is None or int(best) == int(state.get("epoch", best)):
        return
    best_file = state.get("best_checkpoint") or "the run's <model>-<time>.safetensors"
    logging.getLogger().warning(
        f"{path} is a resume state: it holds the weights of epoch {state.get('epoch')}, the last one trained, not "
        f"those of the best epoch {best} that the run tested; give {best_file} for the best model.")


def load_backbone(model, config) -> str:
    """Load the backbone weights of ``config["init_from"]`` into ``model`` for evaluation (``eval_only``): the
    sampler's parameters play no part in ranking. Returns a one-line summary for the log.

    Raises:
        ConfigError: the weights do not fit this model.
    """
    state, _, backbone = _checked_backbone(model, config)
    model.load_state_dict(backbone, strict=False)
    _warn_if_not_the_best_epoch(config["init_from"], state)
    changes = backbone_option_changes(config, state)
    if changes:  # the same weights under other options (n_layers) rank differently: not the model that was trained
        logging.getLogger().warning(
            f"{config['init_from']} was trained with other {config['model']} options than this run's "
            f"({'; '.join(changes)}): the evaluated model is not the trained one. Give the trained values to "
            "evaluate it as trained (the run script: its config file or --key=value; load_data_and_model: "
            "config_dict; recommend: --key=value).")
    return (f"eval_only: weights of {config['init_from']} ({state.get('model')}+{state.get('sampler')}, epoch "
            f"{state.get('epoch')}); no training.")


def warm_start(model, config) -> str:
    """Load the weights of ``config["init_from"]`` into ``model``; return a one-line summary for the log.

    Backbone weights must match in names and shapes (the caller has compared the checkpoint's data digests with
    :func:`check_checkpoint_data` before the sampler's preparation). The sampler's parameters are loaded when the
    checkpoint was trained with the same sampler on the same input (``sampler.parameter_fingerprint``: HNLMRec's
    store and adapter settings) and keep their fresh initialisation otherwise.

    Raises:
        ConfigError: the weights do not fit this model.
    """
    path = config["init_from"]
    state, stored, backbone = _checked_backbone(model, config)
    own = model.state_dict()
    sampler_own = {k: v for k, v in own.items() if k.startswith(_SAMPLER_PREFIX)}
    sampler_stored = {k: v for k, v in stored.items() if k.startswith(_SAMPLER_PREFIX)}
    why_fresh = None
    if str(state.get("sampler")).lower() != str(config["sampler"]).lower():
        why_fresh = f"the checkpoint's sampler is {state.get('sampler')}"
    elif weights_mismatch(sampler_stored, sampler_own):
        why_fresh = f"their names or shapes differ: {weights_mismatch(sampler_stored, sampler_own)}"
    elif state.get("sampler_fingerprint") != getattr(model.sampler, "parameter_fingerprint", None):
        why_fresh = "that run used another store or other adapter settings (hnlm_center, hnlm_final_relu)"
    weights = {**backbone, **(sampler_stored if why_fresh is None else {})}
    model.load_state_dict(weights, strict=False)
    sampler_note = ""
    if sampler_own:
        sampler_note = (f"; {config['sampler']} parameters loaded" if why_fresh is None else
                        f"; {config['sampler']} parameters freshly initialised ({why_fresh})")
    origin = f"{state.get('model')}+{state.get('sampler')}, epoch {state.get('epoch')}"
    return f"init_from: backbone weights of {path} ({origin}){sampler_note}; training starts at epoch 0."
