"""Checks of RecBole's own options once the configuration is merged: types and ranges, pickle options, misspelt keys.

RecBole passes ``--epochs=abc`` or ``learning_rate: 1e-3x`` straight to the trainer (a ``TypeError`` deep inside
torch), runs ``--train_batch_size=-5`` forever, and ignores ``--epochz=3`` without a word. These checks turn each
into one line that names the option.
"""
import codecs
import difflib
import glob
import math
import os
from numbers import Integral, Real

import numpy as np
import yaml

from recbole_hnlm.errors import ConfigError

#: option -> (predicate, what it must be). Checked when the option is set (not ``None``); ``None`` is refused for
#: the options in :data:`_NEVER_NONE`.
_INTEGER_RULES = {
    "epochs": (lambda v: v >= 1, "an integer >= 1"),
    "train_batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "eval_batch_size": (lambda v: v >= 1, "an integer >= 1"),
    "embedding_size": (lambda v: v >= 1, "an integer >= 1"),
    "stopping_step": (lambda v: v >= 0, "an integer >= 0"),
    "n_layers": (lambda v: v >= 0, "an integer >= 0"),
    "negative_warmup_epochs": (lambda v: v >= 0, "an integer >= 0"),
    "candidate_max_rounds": (lambda v: v >= 0, "an integer >= 0 (0: candidates may be training positives)"),
    "eval_step": (lambda v: True, "an integer"),
    "seed": (lambda v: True, "an integer"),
    "split_seed": (lambda v: True, "an integer, or ~ for the run's seed"),
}
_NUMBER_RULES = {
    "learning_rate": (lambda v: v > 0, "a finite number > 0"),
    "reg_weight": (lambda v: v >= 0, "a finite number >= 0"),
    "weight_decay": (lambda v: v >= 0, "a finite number >= 0"),
}
#: Options every run reads, which RecBole's overall.yaml sets: ``--learning_rate=None`` (or a searched ``None``)
#: failed inside torch's optimizer once the data had loaded.
_NEVER_NONE = frozenset({"epochs", "train_batch_size", "eval_batch_size", "stopping_step", "eval_step", "seed",
                         "learning_rate", "weight_decay", "candidate_max_rounds"})
#: RecBole options that write pickles (``torch.save`` of whole objects); users receive no pickle from this plugin.
_PICKLE_WRITERS = ("save_dataset", "save_dataloaders")
#: RecBole options that name pickles to load; this plugin never loads one.
_PICKLE_READERS = ("dataset_save_path", "dataloaders_save_path")


def is_integer(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_number(value) -> bool:
    """A finite real number (not a bool): ``inf`` (yaml ``.inf``, ``--key=1e999``) and NaN make a loss infinite or
    NaN at the first step, or silently constant (an infinite temperature)."""
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def check_core_options(config) -> None:
    """Raise :class:`ConfigError` naming the first RecBole option with a wrong type or range, or one that would make
    RecBole write or load a pickle."""
    for rules, is_kind in ((_INTEGER_RULES, is_integer), (_NUMBER_RULES, is_number)):
        for key, (ok, expected) in rules.items():
            value = config[key]
            if (value is not None or key in _NEVER_NONE) and not (is_kind(value) and ok(value)):
                raise ConfigError(f"Option '{key}' must be {expected}, got {value!r}.")
    dataset = config["dataset"]
    if not (isinstance(dataset, str) and dataset.strip() and dataset == dataset.strip() and "/" not in dataset
            and dataset not in (".", "..")):  # "../x" was an Errno 2 about RecBole's log file
        raise ConfigError(f"Option 'dataset' must name a dataset, the folder <data_path>/<dataset>/ with its atomic "
                          f"files (e.g. --dataset=ml-100k), got {dataset!r}.")
    if config["eval_only"] is not True:  # evaluating a checkpoint selects no epoch: any topk and metrics will do
        check_valid_metric(config)
    if not isinstance(config["save_resume_state"], bool):
        raise ConfigError(f"Option 'save_resume_state' must be True or False, got {config['save_resume_state']!r}.")
    resume_from = config["resume_from"]
    if resume_from is not None and not (isinstance(resume_from, str) and resume_from):
        raise ConfigError(f"Option 'resume_from' must be the path of a .resume.safetensors file, got {resume_from!r}.")
    init_from = config["init_from"]
    if init_from is not None and not (isinstance(init_from, str) and init_from):
        raise ConfigError(f"Option 'init_from' must be the path of a checkpoint (.safetensors) file, got "
                          f"{init_from!r}.")
    checkpoint_dir = config["checkpoint_dir"]
    if not (isinstance(checkpoint_dir, str) and checkpoint_dir.strip()):  # --checkpoint_dir=5: a TypeError traceback
        raise ConfigError(f"Option 'checkpoint_dir' must be the path of a folder (e.g. --checkpoint_dir=saved), got "
                          f"{checkpoint_dir!r}.")
    if os.path.lexists(checkpoint_dir) and not os.path.isdir(checkpoint_dir):  # the trainer's NotADirectoryError
        raise ConfigError(f"Option 'checkpoint_dir': {checkpoint_dir} is not a folder (a file, device, pipe or broken "
                          "link is there); give a folder, which is created when missing.")
    learner = config["learner"]
    if not (isinstance(learner, str) and learner.strip()):  # --learner=1.5: RecBole's trainer called .lower() on it
        raise ConfigError(f"Option 'learner' must name an optimizer: adam, sgd, adagrad, rmsprop or sparse_adam, got "
                          f"{learner!r}.")
    threshold = config["threshold"]
    if threshold is not None and not (isinstance(threshold, dict) and len(threshold) == 1
                                      and all(isinstance(field, str) and is_number(value)
                                              for field, value in threshold.items())):
        raise ConfigError(f"Option 'threshold' must be one field and a number, e.g. \"--threshold={{'rating': 4}}\" "
                          f"(RecBole's label >= that value), got {threshold!r}.")
    if not isinstance(config["flush_denormal"], bool):
        raise ConfigError(f"Option 'flush_denormal' must be True or False, got {config['flush_denormal']!r}.")
    if not isinstance(config["eval_only"], bool):
        raise ConfigError(f"Option 'eval_only' must be True or False, got {config['eval_only']!r}.")
    parts = config["benchmark_filename"]
    if parts is not None and not (isinstance(parts, (list, tuple)) and len(parts) == 3
                                  and all(isinstance(part, str) and part for part in parts)):
        raise ConfigError(f"Option 'benchmark_filename' must name the three pre-split files in order train, valid, "
                          f"test (e.g. \"--benchmark_filename=['train','valid','test']\" for <dataset>.train.inter "
                          f"...), got {parts!r}.")
    if parts is not None and sorted(parts) == ["test", "train", "valid"] and list(parts) != ["train", "valid", "test"]:
        raise ConfigError(f"Option 'benchmark_filename' lists {list(parts)}: RecBole trains on the first file, selects "
                          "the epoch on the second and reports the third as the test result, so the order must be "
                          "\"--benchmark_filename=['train','valid','test']\".")
    split = (config["eval_args"] or {}).get("split") if isinstance(config["eval_args"], dict) else None
    random_split = isinstance(split, dict) and parts is None and "RS" in split  # pre-split files: unused
    ratios = split["RS"] if random_split else None
    if random_split and not (not isinstance(ratios, (str, dict)) and np.ndim(ratios) == 1 and len(ratios) == 3
                                   and all(is_number(r) and r >= 0 for r in ratios) and sum(ratios) > 0):
        raise ConfigError(f"Option 'eval_args' split {{'RS': {ratios!r}}}: RS takes three ratios [train, valid, test] "
                          "(RecBole scales them to sum to 1), e.g. \"--eval_args={'split': {'RS': [0.8, 0.1, 0.1]}}\" "
                          "(RecBole's own message was an unpacking error).")
    negatives = config["train_neg_sample_args"] if isinstance(config["train_neg_sample_args"], dict) else {}
    candidate_num = negatives.get("candidate_num")
    if negatives.get("dynamic") and not (is_integer(candidate_num) and candidate_num >= 1):  # any model's loader
        raise ConfigError(f"Option 'train_neg_sample_args' = {config['train_neg_sample_args']}: RecBole's dynamic "
                          "negatives pick each one from candidate_num loader candidates by the model's score, so "
                          "dynamic needs an integer candidate_num >= 1, e.g. {'dynamic': True, 'candidate_num': 10} "
                          "(RecBole failed at the first batch).")
    labeled = labeled_phases(config)
    if labeled and str(config["eval_type"]).endswith("RANKING"):
        raise ConfigError(f"Option 'eval_args' mode 'labeled' ({', '.join(labeled)}) scores only the interactions of "
                          f"the data, with no ranking over items, and the ranking metrics {config['metrics']} need "
                          "one (RecBole fails after the first epoch): use full, uni100 or pop100, e.g. "
                          "\"--eval_args={'mode': 'full'}\".")
    for option in ("nproc", "world_size"):
        if is_number(config[option]) and config[option] > 1:
            raise ConfigError(f"Option '{option}' = {config[option]}: recbole_hnlm trains in one process; RecBole's "
                              "multi-process (DDP) training is not supported (its samplers, checkpoints and resume "
                              f"states are per process). Drop --{option}.")
    for key in ("user_inter_num_interval", "item_inter_num_interval"):
        if config[key] is not None and not _intervals_ok(config[key]):
            raise ConfigError(f"Option '{key}' = {config[key]!r} is not an interval such as \"[5,inf)\" (RecBole "
                              "would warn and leave the interactions unfiltered).")
    val_interval = config["val_interval"]
    for field, intervals in (val_interval.items() if isinstance(val_interval, dict) else ()):
        if isinstance(intervals, str) and not _intervals_ok(intervals):  # a list: values of a token field
            raise ConfigError(f"Option 'val_interval' = {val_interval!r}: {intervals!r} for field '{field}' is not an "
                              "interval such as \"[3,inf)\" (RecBole would warn and not filter by it).")
    encoding = config["encoding"]
    if encoding is not None:  # every atomic file is opened in it: an unknown name was a LookupError traceback
        try:
            codecs.lookup(encoding)
        except (LookupError, TypeError):
            raise ConfigError(f"Option 'encoding' must name a text encoding of Python's (e.g. utf-8, latin-1), got "
                              f"{encoding!r}.") from None
    if config["rm_dup_inter"] not in (None, "first", "last", False):
        raise ConfigError(f"Option 'rm_dup_inter' must be first or last (keep that row of a duplicated pair), False "
                          f"(drop every duplicated pair) or None (keep duplicates), got {config['rm_dup_inter']!r}.")
    for key in _PICKLE_WRITERS:
        if config[key]:
            raise ConfigError(f"Option '{key}' makes RecBole write a pickle file; recbole_hnlm writes none. Leave "
                              f"{key}=False: the dataset is rebuilt from the atomic files in seconds.")
    for key in _PICKLE_READERS:
        if config[key]:
            raise ConfigError(f"Option '{key}' makes RecBole load a pickle; recbole_hnlm loads none. Leave it unset: "
                              "the dataset is rebuilt from the atomic files.")


def labeled_phases(config) -> list:
    """The evaluation phases (``valid``, ``test``) that ``eval_args`` puts in mode ``labeled``."""
    modes = config["eval_args"].get("mode") if isinstance(config["eval_args"], dict) else None
    return [phase for phase, mode in (modes.items() if isinstance(modes, dict) else ()) if mode == "labeled"]


def _intervals_ok(intervals) -> bool:
    """Whether RecBole parses ``intervals`` (``"[5,inf)"``, ``"(0,1];[3,4)"``): one it cannot parse is dropped with an
    "illegal interval" warning, and so is the filter (a reversed one is kept, and warned about by RecBole)."""
    for piece in str(intervals).split(";"):
        piece = piece.strip()
        ends = piece[1:-1].split(",")
        if len(piece) < 3 or piece[0] not in "([" or piece[-1] not in ")]" or len(ends) != 2:
            return False
        try:
            float(ends[0]), float(ends[1])
        except ValueError:
            return False
    return True


def check_valid_metric(config) -> None:
    """``valid_metric`` (e.g. ``NDCG@20``; ``GAUC`` or ``AUC`` for metrics without a cut-off) must be one of the
    computed ``metrics``, at one of the ``topk`` cut-offs when the metric has them; RecBole would otherwise fail with
    a ``KeyError`` after the first epoch."""
    from recbole.evaluator.register import metrics_dict

    metric = str(config["valid_metric"] or "")
    if not metric or (is_integer(config["eval_step"]) and config["eval_step"] <= 0):  # no validation: never read
        return
    name, at, cutoff = metric.partition("@")
    metrics = [m.lower() for m in config["metrics"] or []]
    topk = config["topk"]  # always a list: RecBole's Config turns an int into one
    needs = getattr(metrics_dict.get(name.lower()), "metric_need", ())
    cut = any(need in ("rec.topk", "rec.items") for need in needs)  # reported per cut-off, as "<name>@<k>"
    wrong_cutoff = (not cut or cutoff not in [str(k) for k in topk]) if at else cut  # "NDCG@020" is never reported
    if name.lower() not in metrics or wrong_cutoff:
        raise ConfigError(f"Option 'valid_metric' = {metric!r} is not computed: metrics = {config['metrics']}, "
                          f"topk = {topk}. Pick one of them (e.g. --valid_metric={config['metrics'][0]}@{topk[0]}).")


def recbole_properties_dir() -> str:
    """RecBole's own property files (overall, model and dataset yaml)."""
    import recbole

    return os.path.join(os.path.dirname(recbole.__file__), "properties")


def _yaml_keys(folder: str) -> set:
    """The keys of every yaml file under ``folder``."""
    return {key for path in glob.glob(os.path.join(folder, "**", "*.yaml"), recursive=True)
            for key in _yaml_keys_of(path)}


_KNOWN_KEYS = {}
#: Options RecBole reads that no property yaml lists.
_OPTIONS_WITHOUT_YAML = frozenset({"model", "dataset", "config_files", "local_rank", "encoding", "nproc",
                                   "world_size", "offset", "ip", "port"})


def known_option_names(plugin_properties_dir: str) -> set:
    """Every option RecBole or the plugin defines: the keys of all their property yaml files (cached per folder)."""
    if plugin_properties_dir not in _KNOWN_KEYS:
        _KNOWN_KEYS[plugin_properties_dir] = frozenset(_yaml_keys(recbole_properties_dir())
                                                       | _yaml_keys(plugin_properties_dir) | _OPTIONS_WITHOUT_YAML)
    return _KNOWN_KEYS[plugin_properties_dir]


#: Samplers whose runs also read another sampler's options: HNLMRec's fine-tuned variant trains a MixGCF teacher with
#: the run's settings (recbole_hnlm.llm.teacher_training).
ALSO_READS = {"HNLMRec": ("MixGCF",)}
_OWNERS = {}


def plugin_option_owners(plugin_properties_dir: str) -> dict:
    """``{(kind, name): option names}`` of the plugin's ``model/<name>.yaml`` and ``sampler/<name>.yaml`` files
    (cached per folder)."""
    if plugin_properties_dir not in _OWNERS:
        _OWNERS[plugin_properties_dir] = {
            (kind, name): keys for kind in ("model", "sampler")
            for name, keys in _options_by_file(os.path.join(plugin_properties_dir, kind)).items()}
    return _OWNERS[plugin_properties_dir]


def _options_by_file(folder: str) -> dict:
    """``{file name without .yaml: its option names}`` of the yaml files in ``folder``."""
    return {os.path.basename(path)[:-len(".yaml")]: frozenset(_yaml_keys_of(path))
            for path in sorted(glob.glob(os.path.join(folder, "*.yaml")))}


def foreign_options(external_keys, plugin_properties_dir: str, model: str, sampler: str, also_models=()) -> list:
    """``[(key, owners)]`` for each user-set key that only other backbones' or samplers' property files define, so
    that a run of ``model`` with ``sampler`` never reads it (e.g. ``n_layers`` for MF, ``dns_candidates`` for AHNS);
    ``owners`` names them (``"the LightGCN/SGL model"``). ``also_models``: backbones the run also trains (HNLMRec's
    teacher). A model of the user's own (no property file, the plugin's or RecBole's) may read any model's option:
    only the samplers' are named for it."""
    owners = plugin_option_owners(plugin_properties_dir)
    readers = {("model", model), *(("model", m) for m in also_models), ("sampler", sampler),
               *(("sampler", s) for s in ALSO_READS.get(sampler, ()))}
    recbole_file = os.path.join(recbole_properties_dir(), "model", f"{model}.yaml")
    own_model = not os.path.isfile(recbole_file) and ("model", model) not in owners
    read = set(_yaml_keys_of(recbole_file))
    for reader in readers:
        read |= owners.get(reader, frozenset())
    found = []
    for key in external_keys:
        if key in read or _general_option(key, plugin_properties_dir):
            continue
        holders = [(kind, name) for (kind, name), names in owners.items()
                   if key in names and not (own_model and kind == "model")]
        if holders:
            described = [f"the {'/'.join(n for k, n in holders if k == kind)} {kind}" for kind in ("model", "sampler")
                         if any(k == kind for k, _ in holders)]
            found.append((key, " and ".join(described)))
            continue
        recbole_models = [name for name, names in recbole_model_options().items() if key in names]
        if recbole_models and not own_model:  # e.g. the MixGCF code's mess_dropout (RecBole's KGAT/KGIN/MCCLK)
            listed = "/".join(recbole_models[:4]) + ("/..." if len(recbole_models) > 4 else "")
            hint = ([_PLUGIN_NAME_OF[key]] if _PLUGIN_NAME_OF.get(key) in read
                    else difflib.get_close_matches(key, sorted(read), n=1, cutoff=0.75))
            found.append((key, f"RecBole's {listed} model{'s' * (len(recbole_models) > 1)}"
                               + (f" (did you mean '{hint[0]}'?)" if hint else "")))
    return found


_RECBOLE_MODEL_OPTIONS = {}
#: Options of other RecBole models (NCL's contrastive pair, KGAT's as the MixGCF code names NGCF's) and the plugin's
#: name of the same setting, which a close-name match finds poorly ('ssl_temp' is as close to 'ssl_tau' as
#: 'loss_type' to 'layers_dtype').
_PLUGIN_NAME_OF = {"ssl_temp": "ssl_tau", "ssl_reg": "ssl_weight", "mess_dropout": "message_dropout"}


def recbole_model_options() -> dict:
    """``{model name: option names}`` of RecBole's own ``properties/model/*.yaml`` (cached)."""
    if not _RECBOLE_MODEL_OPTIONS:
        _RECBOLE_MODEL_OPTIONS.update(_options_by_file(os.path.join(recbole_properties_dir(), "model")))
    return _RECBOLE_MODEL_OPTIONS


def foreign_option_messages(foreign, never_read_by: str) -> list:
    """One warning line per option that is never read (:func:`foreign_options`); ``never_read_by`` ends the sentence
    (``"a MF run with the AHNS sampler never reads"``)."""
    return [f"Option '{key}' is ignored: it is an option of {owners}, which {never_read_by}."
            for key, owners in foreign]


def run_never_reads(model: str, sampler: str) -> str:
    """The end of a :func:`foreign_option_messages` line for one run."""
    return f"a {model} run with the {sampler} sampler never reads"


_GENERAL_KEYS = {}


def _general_option(key, plugin_properties_dir):
    """An option of RecBole's or the plugin's overall and dataset property files (every run reads those); a
    sampler's or backbone's option that a dataset file sets (amazon-toys' ``hnlm_lambda``) stays theirs."""
    if plugin_properties_dir not in _GENERAL_KEYS:
        recbole_properties = recbole_properties_dir()
        paths = [os.path.join(folder, "overall.yaml") for folder in (recbole_properties, plugin_properties_dir)]
        paths += glob.glob(os.path.join(recbole_properties, "dataset", "*.yaml"))
        owned = set().union(*plugin_option_owners(plugin_properties_dir).values())
        plugin_dataset = {key for path in glob.glob(os.path.join(plugin_properties_dir, "dataset", "*.yaml"))
                          for key in _yaml_keys_of(path)} - owned
        _GENERAL_KEYS[plugin_properties_dir] = (frozenset(key for path in paths for key in _yaml_keys_of(path))
                                                | plugin_dataset | _OPTIONS_WITHOUT_YAML)
    return key in _GENERAL_KEYS[plugin_properties_dir]


def _yaml_keys_of(path):
    """The keys of one yaml file (none when it is missing or not a mapping)."""
    if not os.path.isfile(path):
        return set()
    with open(path, encoding="utf-8") as f:
        content = yaml.safe_load(f)
    return set(content) if isinstance(content, dict) else set()


def unknown_options(external_keys, plugin_properties_dir: str) -> list:
    """``[(key, suggestion or None)]`` for each user-set key that no property file defines (likely a typo). The
    suggestion is the closest known name, else the (at most two shortest) names the key abbreviates, joined as
    ``"dataset' or 'data_path"`` to be quoted whole (``--data=...`` found no name close enough)."""
    known = known_option_names(plugin_properties_dir)
    found = []
    for key in external_keys:
        if key not in known:
            hints = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
            if not hints and len(key) >= 3:
                hints = sorted((name for name in known if name.startswith(key)), key=lambda name: (len(name), name))[:2]
            found.append((key, "' or '".join(hints) or None))
    return found


def unknown_option_messages(unknown) -> list:
    """One warning line per unknown option, with the closest known name when there is one."""
    return [f"Unknown option '{key}' is ignored" + (f": did you mean '{hint}'?" if hint else
                                                     " (no RecBole or recbole_hnlm property file defines it).")
            for key, hint in unknown]
