"""A trained run back in memory for inference: the plugin's counterpart of RecBole's ``load_data_and_model``.

RecBole's version unpickles the ``Config`` and the dataset stored with a ``torch.save`` checkpoint; the plugin's
checkpoints are safetensors and hold no pickle. They record the run's own settings instead (``run_settings``: the
config files, dict and command-line values it was started with), so the configuration, the dataset and the split
are rebuilt from the atomic files::

    from recbole.utils.case_study import full_sort_topk
    from recbole_hnlm.load import load_data_and_model

    config, model, dataset, train_data, valid_data, test_data = load_data_and_model("saved/LightGCN-....safetensors")
    uid = dataset.token2id(dataset.uid_field, ["196", "186"])
    scores, iids = full_sort_topk(uid, model, test_data, k=10, device=config["device"])
    dataset.id2token(dataset.iid_field, iids.cpu())
"""
import logging
import os

from recbole_hnlm.config import Config
from recbole_hnlm.config_checks import check_valid_metric
from recbole_hnlm.data_checks import check_dataset_files
from recbole_hnlm.errors import ConfigError
from recbole_hnlm.quick_start import checkpoint_backbone, read_dataset, split_dataset
from recbole_hnlm.resume import changed_options, checkpoint_state
from recbole_hnlm.warm_start import check_init_from, warn_about_changed_eval_split

#: Settings of the training run that do not describe the model or its data: where it wrote, what it continued, and
#: the devices of the machine it ran on (the loading machine's RecBole defaults apply; ``config_dict`` chooses).
_NOT_REUSED = ("checkpoint_dir", "resume_from", "init_from", "eval_only", "save_resume_state", "gpu_id", "use_gpu")
#: Options that may differ from the run's without changing the model it rebuilds (``hnlm_file``: the run's HNLMRec
#: sampler filled it in; loading does not prepare the sampler).
_NOT_COMPARED = frozenset(_NOT_REUSED + ("sampler", "device", "data_path", "hnlm_file"))


def load_data_and_model(checkpoint, config_dict=None, model_class=None):
    """``(config, model, dataset, train_data, valid_data, test_data)`` of the run that wrote ``checkpoint``.

    The configuration is the run's stored settings, updated with ``config_dict`` (e.g. ``data_path`` on another
    machine, or ``gpu_id``); the data are read and split as in the run, and the split is checked against the
    checkpoint's digests of the ids and of the training split before its weights are loaded. The backbone's weights
    are loaded and the model is returned in eval mode; the sampler plays no part in ranking, so it is not prepared
    (HNLMRec's LLM stage does not run): ``model.sampler`` is the uniform one while ``config["sampler"]`` names the
    run's (to train on, start a run with ``init_from``). Validation or test pairs that differ from those the run was
    evaluated on are warned about (its logged metrics will not be reproduced). The file is read several times (its
    settings, its digests, its weights): when a run replaces it meanwhile (a resume state is written after every
    epoch), everything is read again, so settings and weights always come from one version of it.

    Args:
        checkpoint (str): a best-epoch checkpoint or a resume state (``.safetensors``) of the plugin's trainer.
        config_dict (dict, optional): settings that override the stored ones. Checkpoints written before run
            settings were stored need the run's dataset options here (``data_path``, ``load_col``, ``split_seed``
            ...); their split is still checked.
        model_class (type, optional): the class of a model of your own (``run_recbole_hnlm(model=<class>)``): the
            checkpoint stores its name, and only the plugin's backbones and RecBole's models are found by name.

    Raises:
        ConfigError: the file is not such a checkpoint, or its weights, ids or split do not fit the rebuilt run, or it
            was replaced while it was read, each of several times.
        FileNotFoundError: the dataset's atomic files are not where the settings say (pass ``data_path``).
    """
    checkpoint = os.path.abspath(str(checkpoint))
    for _ in range(_READ_ATTEMPTS):
        before = _file_version(checkpoint)
        loaded = _load_once(checkpoint, config_dict, model_class)
        if _file_version(checkpoint) == before:
            return loaded
        logging.getLogger().info(f"load_data_and_model: {checkpoint} was replaced while it was read (a run is "
                                 "writing it); reading it again")
    raise ConfigError(f"load_data_and_model({os.path.basename(checkpoint)}): the file was replaced while it was read, "
                      f"{_READ_ATTEMPTS} times in a row (a run writes it): copy it and load the copy.")


#: Reads of a checkpoint that a run keeps replacing before :func:`load_data_and_model` gives up.
_READ_ATTEMPTS = 3


def _file_version(path):
    """What changes when ``path`` is replaced or rewritten (None when it is not there)."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


def _load_once(checkpoint, config_dict, model_class=None):
    """One read of :func:`load_data_and_model`'s ``checkpoint`` (an absolute path)."""
    state = checkpoint_state(checkpoint, "load_data_and_model",
                             "Give a checkpoint of a run: <checkpoint_dir>/<model>-<time>.safetensors.")
    settings = {k: v for k, v in (state.get("run_settings") or {}).items() if k not in _NOT_REUSED}
    settings["sampler"] = state.get("sampler") or "RNS"
    for key in ("model", "dataset"):  # Config takes both from the checkpoint below: a different one would be ignored
        wanted = (config_dict or {}).get(key)
        same = (str(wanted).lower() == str(state.get(key)).lower() if key == "model"  # model names: any case
                else str(wanted) == str(state.get(key)))  # dataset names are folder names
        if wanted is not None and not same:
            raise ConfigError(f"load_data_and_model({os.path.basename(checkpoint)}): {key}={wanted} was given, but "
                              f"the checkpoint holds {key}={state.get(key)}, and a checkpoint is loaded with its own "
                              f"{key}. Drop {key}, or give a checkpoint of that {key}.")
    if model_class is not None and not isinstance(model_class, type):
        raise ConfigError(f"load_data_and_model({os.path.basename(checkpoint)}): model_class must be a class (that "
                          f"of the checkpoint's model, {state.get('model')}), got {model_class!r}.")
    if model_class is not None and model_class.__name__ != state.get("model"):
        raise ConfigError(f"load_data_and_model({os.path.basename(checkpoint)}): model_class={model_class!r} was "
                          f"given, but the checkpoint holds model={state.get('model')}: give that model's class.")
    settings.update(config_dict or {})
    settings.update(init_from=checkpoint, eval_only=True, resume_from=None)
    try:
        config = Config(model=model_class or state.get("model"), dataset=state.get("dataset"), config_dict=settings,
                        command_line=False)
        check_init_from(config)  # model, dataset and split seed against the checkpoint
    except ConfigError as error:
        raise _for_this_function(error, checkpoint) from error
    _warn_about_changed_options(config, checkpoint, overridden=set(config_dict or ()))
    check_dataset_files(config)
    dataset = read_dataset(config)
    train_data, valid_data, test_data = split_dataset(config, dataset)
    sampler = config["sampler"]
    try:
        model, _ = checkpoint_backbone(config, train_data)  # the same ids and training split, then the weights
    except ConfigError as error:
        raise _for_this_function(error, checkpoint) from error
    warn_about_changed_eval_split(checkpoint, valid_data, test_data,
                                  f"load_data_and_model({os.path.basename(checkpoint)})")
    config["sampler"], config["init_from"], config["eval_only"] = sampler, None, False  # as the run had them
    try:
        check_valid_metric(config)  # skipped while loading: evaluating selects no epoch
    except ConfigError as error:
        logging.getLogger().warning(f"load_data_and_model: {error} That is fine for evaluating; training with this "
                                    "config needs a valid_metric among them (RecBole fails after the first epoch).")
    model.eval()
    return config, model, dataset, train_data, valid_data, test_data


def _for_this_function(error, checkpoint):
    """The option checks' error, worded for this function (their ``init_from:``/``--option`` are command-line)."""
    message = str(error).replace("init_from: ", "", 1).replace("cannot be evaluated with eval_only", "cannot be loaded")
    return ConfigError(f"load_data_and_model({os.path.basename(checkpoint)}): {message} (Options go in config_dict "
                       "as {'key': value}; for recommend, on its command line as --key=value.)")


def _warn_about_changed_options(config, checkpoint, overridden):
    """Warn when the rebuilt configuration differs from the run's final one in an option not set by the caller: a
    property-file default changed since, or a setting the checkpoint could not store. Best-epoch checkpoints of earlier
    versions hold no final options (their resume states do): nothing to compare, no warning."""
    ranking = set(getattr(config.model_class, "ranking_options", ()))  # the backbone's load warns about those
    changed = [line for line in changed_options(config, checkpoint)
               if line.split(":", 1)[0] not in _NOT_COMPARED | overridden | ranking]
    if changed:
        logging.getLogger().warning(
            f"load_data_and_model: {checkpoint} was trained with other values of these options than the rebuilt "
            f"configuration has (run -> now); pass the run's values in config_dict (recommend: as --key=value): "
            f"{'; '.join(changed)}")

