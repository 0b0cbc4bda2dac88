"""Continuing an interrupted training run from its resume state (``--resume_from=<file>``).

A run writes ``<checkpoint_dir>/<model>-<time>.resume.safetensors`` after every epoch (``save_resume_state``,
:class:`recbole_hnlm.trainer.SafeCheckpointMixin`). These checks run before any data is loaded: the file exists, is a
recbole_hnlm checkpoint of the same model, sampler and dataset, and the run's best checkpoint is still there; options
that changed since the interrupted run are listed, since the continuation then no longer repeats it.
"""
import json
import os

from recbole_hnlm.checkpoint import read_trainer_state
from recbole_hnlm.errors import ConfigError

#: Options that change where things go or what is shown, not what is trained.
_NOT_TRAINING_OPTIONS = frozenset({
    "epochs", "resume_from", "save_resume_state", "show_progress", "state", "checkpoint_dir", "log_wandb",
    "wandb_project", "gpu_id", "worker", "eval_batch_size", "data_path", "config_files", "device", "use_gpu",
    "single_spec", "local_rank", "nproc", "world_size", "offset", "ip", "port", "encoding",
})


def _jsonable(value):
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


def training_options(config) -> dict:
    """The options that decide what a run trains, as JSON values (stored in the resume state and compared)."""
    return {key: _jsonable(value) for key, value in config.final_config_dict.items() if key not in _NOT_TRAINING_OPTIONS}


def check_resume_from(config) -> None:
    """Raise :class:`ConfigError` when ``resume_from`` cannot continue this run; a no-op when it is unset."""
    path = config["resume_from"]
    if not isinstance(config["save_resume_state"], bool):
        raise ConfigError(f"Option 'save_resume_state' must be True or False, got {config['save_resume_state']!r}.")
    if path is None:
        return
    if not isinstance(path, str) or not path:
        raise ConfigError(f"Option 'resume_from' must be the path of a .resume.safetensors file, got {path!r}.")
    if not os.path.isfile(path):
        raise ConfigError(f"resume_from: no file {path}. A run writes its resume state after every epoch to "
                          f"<checkpoint_dir>/<model>-<time>.resume.safetensors (checkpoint_dir is "
                          f"{config['checkpoint_dir']}).")
    try:
        state = read_trainer_state(path)
    except Exception as error:  # safetensors raises its own error type for a file that is not safetensors
        raise ConfigError(f"resume_from: {path} is not a recbole_hnlm checkpoint ({error}).") from error
    for key in ("model", "sampler", "dataset"):
        if str(state.get(key)).lower() != str(config[key]).lower():
            raise ConfigError(f"resume_from: {path} was trained with {key}={state.get(key)}, this run has "
                              f"{key}={config[key]}. Resume with --{key}={state.get(key)}, or start afresh "
                              "without resume_from.")
    best = state.get("best_checkpoint")
    if state.get("resume_state") and best and not os.path.isfile(best):
        raise ConfigError(f"resume_from: the interrupted run's best checkpoint {best} is missing; the final test "
                          "loads it. Put it back, or start afresh without resume_from.")


def changed_options(config, path) -> list:
    """``"name: old -> new"`` for every training option that differs from the run that wrote ``path``."""
    stored = read_trainer_state(path).get("options")
    if stored is None:
        return []
    current = training_options(config)
    return [f"{key}: {stored.get(key)!r} -> {current.get(key)!r}"
            for key in sorted(set(stored) | set(current)) if stored.get(key) != current.get(key)]
