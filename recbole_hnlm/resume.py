"""Continuing an interrupted training run from its resume state (``--resume_from=<file>``).

A run writes ``<checkpoint_dir>/<model>-<time>.resume.safetensors`` after every epoch (``save_resume_state``,
:class:`recbole_hnlm.trainer.SafeCheckpointMixin`). These checks run before any data is loaded: the file exists, is a
recbole_hnlm checkpoint of the same model, sampler and dataset, and the run's best checkpoint is still there; options
that changed since the interrupted run are listed, since the continuation then no longer repeats it.
"""
import json
import os

import numpy as np

from recbole_hnlm.checkpoint import read_trainer_state
from recbole_hnlm.errors import ConfigError
from recbole_hnlm.utils import PLUGIN_MODELS, model_class_of

#: Options that change where things go or what is shown, not what is trained (``worker`` and the device do change
#: the random draws, so they are compared). ``init_from`` only sets the first epoch's weights: a resumed run takes
#: its weights from the resume state (which records the warm start's origin).
NOT_TRAINING_OPTIONS = frozenset({
    "epochs", "resume_from", "save_resume_state", "init_from", "show_progress", "state", "checkpoint_dir",
    "log_wandb", "wandb_project", "eval_batch_size", "config_files", "single_spec", "local_rank", "nproc",
    "world_size", "offset", "ip", "port", "encoding",
})


#: Options added after checkpoints were first written, with the value that describes what those checkpoints did
#: (NGCF always had the self term): a checkpoint without the option is compared with that value.
OPTIONS_ADDED = {"self_loop": True}


def json_value(value):
    """``value`` as JSON holds it: NumPy scalars (scripts pass np.int64 options) become the same Python number.

    Raises:
        TypeError, ValueError: JSON cannot hold the value.
    """
    if isinstance(value, np.generic):
        value = value.item()
    json.dumps(value)
    return value


def _jsonable(value):
    try:
        return json_value(value)
    except (TypeError, ValueError):
        return repr(value)


def training_options(config) -> dict:
    """The options that decide what a run trains, as JSON values (stored in the resume state and compared)."""
    return {key: _jsonable(value) for key, value in config.final_config_dict.items()
            if key not in NOT_TRAINING_OPTIONS}


def option_checkpoint_state(config, option: str, hint: str, refusal: str, reason: str = "") -> dict:
    """The trainer state stored in the checkpoint ``config[option]`` names (``resume_from``, ``init_from``).

    Raises:
        ConfigError: naming ``option``, when the file is missing or a folder (followed by ``hint``), when the run's
            model is not one of the plugin's backbones (``refusal``: what such a model cannot do, then ``reason``)
            or when the file is not a recbole_hnlm checkpoint.
    """
    path = config[option]
    _check_is_file(path, option, hint)
    if not getattr(model_class_of(config), "resumable", False):  # SampledRecommender: the plugin's backbones
        raise ConfigError(f"{option}: {config['model']} {refusal}; only the plugin's backbones "
                          f"({', '.join(PLUGIN_MODELS)}) can.{reason}")
    return checkpoint_state(path, option, hint)


def checkpoint_state(path, option: str, hint: str) -> dict:
    """The trainer state stored in the checkpoint ``path``.

    Raises:
        ConfigError: naming ``option`` (the option or function that was given ``path``), when the file is missing or
            a folder (followed by ``hint``) or is not a recbole_hnlm checkpoint.
    """
    _check_is_file(path, option, hint)
    try:
        return read_trainer_state(path)
    except ValueError as error:  # ours: the message names the file
        raise ConfigError(f"{option}: {error}.") from error
    except Exception as error:  # safetensors' own error type: not a safetensors file at all
        raise ConfigError(f"{option}: {path} is not a recbole_hnlm checkpoint ({error}).") from error


def _check_is_file(path, option, hint):
    if not os.path.isfile(path):
        what = "is a folder, not a file" if os.path.isdir(path) else "does not exist"
        raise ConfigError(f"{option}: {path} {what}. {hint}")


def check_resume_from(config) -> None:
    """Raise :class:`ConfigError` when ``resume_from`` cannot continue this run; a no-op when it is unset."""
    path = config["resume_from"]  # its type is checked with the other options (config_checks)
    if path is None:
        return
    state = option_checkpoint_state(
        config, "resume_from",
        hint=("A run writes its resume state after every epoch to <checkpoint_dir>/<model>-<time>.resume.safetensors "
              f"(checkpoint_dir is {config['checkpoint_dir']})."),
        refusal="cannot be resumed",
        reason=" RecBole's models keep training state (annealing counters, extra optimizers) outside their weights.")
    for key in ("model", "sampler", "dataset"):
        if str(state.get(key)).lower() != str(config[key]).lower():
            raise ConfigError(f"resume_from: {path} was trained with {key}={state.get(key)}, this run has "
                              f"{key}={config[key]}. Resume with --{key}={state.get(key)}, or start afresh "
                              "without resume_from.")
    stored_learner = (state.get("options") or {}).get("learner")
    if stored_learner is not None and str(stored_learner).lower() != str(config["learner"]).lower():
        raise ConfigError(f"resume_from: {path} was trained with learner={stored_learner}, this run has "
                          f"learner={config['learner']}; the optimizer state only fits the same learner. Resume with "
                          f"--learner={stored_learner}.")
    stored_options = state.get("options") or {}
    for key in ("valid_metric", "valid_metric_bigger"):  # the stored best score was selected by them
        if key in stored_options and str(stored_options[key]).lower() != str(config[key]).lower():
            raise ConfigError(f"resume_from: {path} selects its best epoch by {key}={stored_options[key]}, this run "
                              f"has {key}={config[key]}: its best score so far ({state.get('best_valid_score')}) "
                              f"is not comparable with the new one. Resume with --{key}={stored_options[key]}, or "
                              f"start a new run from its weights with --init_from={path}.")
    # a run stopped after the resume state of a new best epoch and before its best file: written when resumed
    best_from_state = state.get("best_epoch") is not None and state.get("best_epoch") == state.get("epoch")
    if state.get("resume_state") and state.get("best_checkpoint") and best_checkpoint_of(path, state) is None \
            and not best_from_state:
        beside, written = _beside(path, state["best_checkpoint"]), state["best_checkpoint"]
        elsewhere = f" (nor is it at {written}, where it was written)" if beside != written else ""
        raise ConfigError(f"resume_from: the interrupted run's best checkpoint {beside} is missing{elsewhere}; the "
                          "final test loads it. Put it back, or start afresh without resume_from.")


def _beside(resume_file, best_checkpoint):
    """The file named as ``best_checkpoint`` in ``resume_file``'s folder, a relative path for a relative one (a
    resumed run's result gave its best checkpoint as an absolute path beside a relative resume state)."""
    return os.path.join(os.path.dirname(resume_file), os.path.basename(best_checkpoint))


def best_checkpoint_of(resume_file, state):
    """The best checkpoint of the run whose resume state ``resume_file`` holds (trainer ``state``): the file of that
    name beside the resume state (the two are written side by side, and a folder may have been copied or moved),
    else the path it was written to; ``None`` when the run had no best epoch yet or neither file exists."""
    stored = state.get("best_checkpoint")
    if not stored:
        return None
    for candidate in (_beside(resume_file, stored), stored):
        if os.path.isfile(candidate):
            return candidate
    return None


def _split_seed_of(options: dict):
    return options.get("seed") if options.get("split_seed") is None else options.get("split_seed")


def changed_options(config, path, continued=False) -> list:
    """``"name: old -> new"`` for every training option that differs from the run that wrote ``path``.

    With ``continued`` (``path`` is continued by ``resume_from``) and ``path`` a resume state, ``seed`` and
    ``split_seed`` are left out while the split's seed is the same: the state carries every random stream, so
    the seed draws nothing in the continuation (another split is refused by the split's digest)."""
    state = read_trainer_state(path)
    stored = state.get("options")
    if stored is None:
        return []
    current = training_options(config)
    stored = {**{k: v for k, v in OPTIONS_ADDED.items() if k in current}, **stored}
    ignored = set()
    if continued and state.get("resume_state") and _split_seed_of(stored) == _split_seed_of(current):
        ignored = {"seed", "split_seed"}
    return [f"{key}: {stored.get(key)!r} -> {current.get(key)!r}"
            for key in sorted((set(stored) | set(current)) - ignored) if stored.get(key) != current.get(key)]
