"""Run a backbone with a negative sampler end to end: the plugin's counterpart of RecBole's ``run_recbole``.

It never imports ``recbole.quick_start`` (which pulls in ray) and builds the run from ``recbole.config``,
``recbole.data`` and ``recbole.utils``::

    python run_recbole_hnlm.py --model=LightGCN --sampler=MixGCF --dataset=ml-100k
    python run_recbole_hnlm.py --model=LightGCN --sampler=DNS --dataset=yelp2018 --data_path=/data/atomic --dns_topn=2
"""
import argparse
import logging
import os
import sys
import warnings
from logging import getLogger

from recbole.data import create_dataset, data_preparation
from recbole.utils import init_logger, init_seed, set_color

from recbole_hnlm.checkpoint import read_model_weights, read_trainer_state
from recbole_hnlm.config import Config, read_config_files, split_seed
from recbole_hnlm.config_checks import foreign_option_messages, run_never_reads, unknown_option_messages
from recbole_hnlm.data_checks import (check_dataset_files, check_read_dataset, check_splits_not_empty,
                                      dataset_errors_named)
from recbole_hnlm.denormals import flush_denormals
from recbole_hnlm.determinism import deterministic_algorithms
from recbole_hnlm.errors import (ConcurrentWriterError, ConfigError, DataError, TrainingInterrupted, WriteError,
                                 exit_status)
from recbole_hnlm.ops._ext import kernel_experiments, kernels_in_use
from recbole_hnlm.resume import changed_options, check_resume_from
from recbole_hnlm.signals import interrupted_status, say_interrupted, sigterm_as_interrupt
from recbole_hnlm.trainer import check_resume_not_in_use
from recbole_hnlm.utils import get_sampler, get_trainer, model_class_of
from recbole_hnlm.warm_start import (check_checkpoint_data, check_checkpoint_shapes, check_init_from, load_backbone,
                                     record_eval_split, warm_start, warn_about_changed_eval_split, weights_mismatch)


def run_recbole_hnlm(model=None, dataset=None, config_file_list=None, config_dict=None, saved=True):
    """Train and test ``model`` on ``dataset`` with the configured ``sampler``.

    Args:
        model (str or type, optional): backbone name, or a model class (e.g. a subclass of
            :class:`recbole_hnlm.model.abstract.SampledRecommender` of your own); read from the config when ``None``.
        dataset (str, optional): dataset name; read from the config when ``None``.
        config_file_list (list of str, optional): yaml files (one path alone is one file).
        config_dict (dict, optional): parameters (lower priority than the command line).
        saved (bool): save the best model's checkpoint (safetensors) and test it.

    Returns:
        dict: ``model`` (its name, as RecBole's objective function gives it), ``best_valid_score``,
        ``valid_score_bigger``, ``best_valid_result``, ``test_result``, ``checkpoint`` and ``resume_state`` (the
        file ``resume_from`` takes to train on; ``None`` when the run wrote none: ``save_resume_state=False``,
        ``saved=False`` or a RecBole model). With ``eval_only`` the ``init_from``
        checkpoint is evaluated instead of training (:func:`evaluate_checkpoint`): the valid and test results are
        its own, and ``checkpoint`` is that file.

    Raises:
        TrainingInterrupted: Ctrl-C after the first epoch; its ``resume_file`` continues the run (``best_only``: a
            run without resume state, interrupted after a best checkpoint, which ``resume_from`` also takes).
    """
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    with deterministic_algorithms(config["use_deterministic_algorithms"]):
        init_seed(config["seed"], config["reproducibility"])
        _init_run_logger(config)
        logger = getLogger()
        logger.info(sys.argv)
        logger.info(config)
        for message in unknown_option_messages(config.unknown_options):
            logger.warning(message)
        for message in foreign_option_messages(config.foreign_options,
                                               run_never_reads(config["model"], config["sampler"])) + \
                config.option_warnings:
            logger.warning(message)
        logger.info(f"recbole_hnlm ops on {config['device']}: {kernels_in_use(config['device'])}")
        experiments = kernel_experiments()
        if experiments:  # variants of the CUDA kernels (same sums or positions; their speed is being measured)
            logger.info("CUDA kernel experiments set in the environment: " +
                        ", ".join(f"{name}={value}" for name, value in experiments.items()))
        flush_denormals(config["flush_denormal"])  # before the run's first parallel torch operation
        if config["dataset"] == "ml-100k" and "data_path" in config.external_config_dict:
            logger.warning(f"ml-100k is RecBole's bundled example: RecBole reads {config['data_path']} and ignores "
                           f"data_path={config.external_config_dict['data_path']!r}. Give your copy another name "
                           "(e.g. ml-100k-local) to use it.")
        check_dataset_files(config)
        check_resume_from(config)
        if config["resume_from"]:
            check_resume_not_in_use(config["resume_from"])  # before HNLMRec's LLM stage; the trainer checks again
        check_init_from(config)

        dataset = read_dataset(config)
        logger.info(dataset)
        check_read_dataset(config, dataset)
        train_data, valid_data, test_data = split_dataset(config, dataset)
        check_splits_not_empty(config, valid_data, test_data)
        if config["eval_only"]:
            return evaluate_checkpoint(config, train_data, valid_data, test_data, logger)
        model = build_model(config, dataset, train_data, logger)
        record_eval_split(model, valid_data, test_data)

        trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
        if config["resume_from"]:
            try:
                resume(trainer, config, logger)
            except BaseException:  # a refused resume writes nothing: give up the file names the trainer reserved
                trainer.close()
                raise
        writes_resume_state = saved and trainer.save_resume_state
        try:
            best_valid_score, best_valid_result = trainer.fit(
                train_data, valid_data, saved=saved, show_progress=config["show_progress"])
            test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
        except KeyboardInterrupt as interrupt:
            if writes_resume_state and os.path.isfile(trainer.resume_state_file):
                raise TrainingInterrupted(trainer.resume_state_file) from interrupt
            resumable = getattr(model, "resumable", False)  # a plugin backbone: resume_from takes a best checkpoint
            if saved and resumable and os.path.isfile(trainer.saved_model_file):
                why = "its first resume state was not written yet" if writes_resume_state else \
                    "this run writes none (save_resume_state=False)"
                raise TrainingInterrupted(trainer.saved_model_file, best_only=True, why=why) from interrupt
            raise

        logger.info(set_color("best valid ", "yellow") + f": {best_valid_result}")
        logger.info(set_color("test result", "yellow") + f": {test_result}")
        return {
            "model": config["model"],
            "best_valid_score": best_valid_score,
            "valid_score_bigger": config["valid_metric_bigger"],
            "best_valid_result": best_valid_result,
            "test_result": test_result,
            "checkpoint": trainer.saved_model_file if saved else None,
            "resume_state": trainer.resume_state_file if writes_resume_state else None,
        }


def read_dataset(config):
    """RecBole's dataset of the run, read under the split seed (the seed RecBole's run sets before reading and
    splitting, so the split follows ``split_seed``)."""
    init_seed(split_seed(config), config["reproducibility"])
    with warnings.catch_warnings():  # RecBole's chained fillna(inplace=True): works on the pinned pandas 2
        warnings.filterwarnings("ignore", message="A value is trying to be set on a copy", category=FutureWarning,
                                module=r"recbole\.")
        with dataset_errors_named(config):
            return create_dataset(config)


def split_dataset(config, dataset):
    """RecBole's ``data_preparation``, its errors about the options (a split by a field that is not loaded) as one
    :class:`DataError` naming them."""
    with dataset_errors_named(config, dataset):
        return data_preparation(config, dataset)


def build_model(config, dataset, train_data, logger):
    """The run's model once the data is split: the resume/warm-start checkpoint's data checked against the split
    (before the sampler's preparation, which is HNLMRec's LLM stage), the sampler prepared, the model built under
    the run's seed and, with ``init_from``, warm-started. Shared by the run script and the grid's cells."""
    check_checkpoint_data(config, train_data._dataset)
    check_checkpoint_shapes(config, train_data._dataset)
    get_sampler(config["sampler"]).prepare(config, dataset, train_data)
    model = _seeded_model(config, train_data)
    logger.info(model)
    if config["init_from"]:
        logger.info(warm_start(model, config))
    return model


def _seeded_model(config, train_data):
    """The run's model on its device, built on the training split right after seeding with the run's seed."""
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    return model_class_of(config)(config, train_data._dataset).to(config["device"])


def checkpoint_backbone(config, train_data):
    """``(model, summary line)``: the ``init_from`` checkpoint's backbone for evaluation. Its ids and split are checked
    against ``train_data`` as for a warm start; the model is built under the run's seed with the uniform sampler (a
    sampler only shapes training, so HNLMRec's LLM stage never runs; ``config["sampler"]`` is left ``RNS``).
    Shared by ``eval_only`` and :func:`recbole_hnlm.load.load_data_and_model`."""
    check_checkpoint_data(config, train_data._dataset)
    config["sampler"] = "RNS"
    model = _seeded_model(config, train_data)
    return model, load_backbone(model, config)


def evaluate_checkpoint(config, train_data, valid_data, test_data, logger):
    """``eval_only``: the ``init_from`` checkpoint's backbone on the validation and test splits, with this run's
    metrics and cut-offs. Its ids and split are checked as for a warm start; the model is built with the uniform
    sampler (a sampler only shapes training), so HNLMRec's LLM stage never runs. No checkpoint is written."""
    sampler = config["sampler"]
    model, summary = checkpoint_backbone(config, train_data)
    warn_about_changed_eval_split(config["init_from"], valid_data, test_data, "eval_only")
    if str(sampler).upper() != "RNS":
        logger.info(f"eval_only: the sampler ({sampler}) plays no part in evaluation and is not prepared")
    logger.info(model)
    logger.info(summary)
    checkpoint_dir_existed = os.path.isdir(config["checkpoint_dir"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.eval_collector.data_collect(train_data)  # item counts (ItemCoverage ...), as RecBole's fit collects them
    try:
        valid_result = trainer.evaluate(valid_data, load_best_model=False, show_progress=config["show_progress"])
        test_result = trainer.evaluate(test_data, load_best_model=False, show_progress=config["show_progress"])
    finally:
        trainer.close()
        if not checkpoint_dir_existed:  # RecBole's trainer creates it; nothing was written there
            try:
                os.rmdir(config["checkpoint_dir"])
            except OSError:  # not empty (another run writes there) or already gone
                pass
    logger.info(set_color("valid result", "yellow") + f": {valid_result}")
    logger.info(set_color("test result", "yellow") + f": {test_result}")
    return {"model": config["model"],
            "best_valid_score": valid_result.get(config["valid_metric"].lower()),  # None: not among the metrics
            "valid_score_bigger": config["valid_metric_bigger"], "best_valid_result": valid_result,
            "test_result": test_result, "checkpoint": config["init_from"], "resume_state": None}


def resume(trainer, config, logger):
    """Load ``config["resume_from"]`` into ``trainer``, warning about options changed since that run."""
    path = config["resume_from"]
    changed = changed_options(config, path, continued=True)
    if changed:
        logger.warning(f"resume_from: options changed since {path} was written, so the continuation will not repeat "
                       f"the uninterrupted run: {'; '.join(changed)}")
    try:
        trainer.resume_checkpoint(path)
    except (ConcurrentWriterError, DataError):  # no mismatch: the run it continues is still writing; a damaged file
        raise
    except (RuntimeError, ValueError, KeyError) as error:  # load_state_dict: missing keys, shapes, optimizer groups
        _, stored = read_model_weights(path)
        mismatch = weights_mismatch(stored, trainer.model.state_dict())
        if mismatch:
            message = (f"resume_from: the weights in {path} do not fit this {config['model']} ({mismatch}); resume "
                       "with the options of the interrupted run (embedding_size, n_layers ...).")
            raise ConfigError(message) from error
        # load_state_dict's first line is only "Error(s) in loading state_dict for MF:"
        problem = next((line.strip() for line in reversed(str(error).splitlines()) if line.strip()),
                       type(error).__name__)
        raise ConfigError(f"resume_from: the weights in {path} fit this {config['model']}, but the rest of its state "
                          f"(optimizer, trainer) does not load ({problem}): resume with the options of the "
                          "interrupted run (learner ...), or start again without resume_from.") from error


def _init_run_logger(config):
    """RecBole's ``init_logger`` for each run of a process: its ``logging.basicConfig`` adds nothing once the root
    logger has handlers, so a second run in one process (a notebook, a script looping over models) logged into the
    first run's file and left its own empty. The handlers the previous run's ``init_logger`` added are removed
    first; handlers of the user's own logging setup are kept (and, as with RecBole, keep ``init_logger`` from
    adding any)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_recbole_hnlm_run", False)]:
        root.removeHandler(handler)
        handler.close()
        if getattr(handler, "_recbole_hnlm_lock", None) is not None:
            handler._recbole_hnlm_lock.close()
    before = set(root.handlers)
    init_logger(config)
    for handler in list(root.handlers):
        if handler not in before:
            handler._recbole_hnlm_run = True
            if isinstance(handler, logging.FileHandler):
                _own_log_file(root, handler)
                _say_write_errors_once(handler)


def _say_write_errors_once(handler):
    """A log file on a full disk printed logging's ``--- Logging error ---`` traceback for every record of the run
    (hundreds over a long one): the first is shown, then one line saying the others are not."""
    shown = []
    show = handler.handleError

    def handle_error(record):
        if not shown:
            shown.append(record)
            show(record)
            sys.stderr.write(f"(later errors writing the log file {handler.baseFilename} are not shown)\n")

    handler.handleError = handle_error


def _own_log_file(root, handler):
    """Give the run a log file of its own: RecBole names it by model, dataset, second and a hash of the config, so two
    identical commands started in the same second wrote into one file. The run locks its file (``flock``); a file
    another run holds is left to it, and this run writes ``<name>-2.log`` (``-3`` ...) instead."""
    from recbole_hnlm.files import held_by_another, lock_open_file

    stem, path, n = handler.baseFilename[:-len(".log")], handler.baseFilename, 1
    while True:
        lock = open(path, "a", encoding="utf-8")
        if lock_open_file(lock, wait=False):
            break
        lock.close()
        if not held_by_another(path):  # no locks here: RecBole's name, as before
            return
        n += 1
        path = f"{stem}-{n}.log"
    if path != handler.baseFilename:
        own = logging.FileHandler(path)
        own.setLevel(handler.level)
        own.setFormatter(handler.formatter)
        for log_filter in handler.filters:
            own.addFilter(log_filter)
        own._recbole_hnlm_run = True
        root.removeHandler(handler)
        handler.close()
        root.addHandler(own)
        handler = own
    handler._recbole_hnlm_lock = lock


def objective_function(config_dict=None, config_file_list=None, saved=True):
    """RecBole-style objective for hyper-parameter tuning: the run's result with the ``model`` name that RecBole's
    ``HyperTuning.trial`` reads."""
    return run_recbole_hnlm(config_dict=config_dict, config_file_list=config_file_list, saved=saved)


def _log_to_files(message):
    """Write ``message`` to the run's log file (RecBole's file handler) without echoing it on the console."""
    record = logging.makeLogRecord({"name": "recbole_hnlm", "levelno": logging.ERROR, "levelname": "ERROR",
                                    "msg": message})
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _last_setting_wins(argv):
    """``argv`` with only the last ``--key=value`` of each key (RecBole stops at a repeated key with a traceback;
    ``scripts/main.sh --sampler=RNS`` repeats the script's own ``--sampler``), saying which value is used."""
    kept, last = [], {}
    for arg in reversed(argv):
        key = arg[2:].split("=", 1)[0] if arg.startswith("--") and "=" in arg else None
        if key in last:
            if arg != last[key]:
                print(f"warning: --{key} is given more than once; the last one is used ({last[key]})", file=sys.stderr)
            continue
        if key is not None:
            last[key] = arg
        kept.append(arg)
    return kept[::-1]


def _refused_setting(items, parser):
    """The message for the first argument RecBole would drop without a word (a stray word, e.g. a second config file
    outside --config_files' quotes; a value holding '=', which RecBole's reader cannot split) or take for an option
    it does not know (``--train-batch-size=5``), else None."""
    from recbole_hnlm.cli_settings import parse_settings, parser_flags

    class Refused(Exception):
        pass

    def refuse(message):
        raise Refused(message)

    for item in items:
        if item.startswith("--") and item.count("=") > 1:
            return (f"option {item.split('=', 1)[0]}: its value holds '=', which RecBole's command line reader cannot "
                    "read (it drops the option); set it in a yaml file given with --config_files")
    try:
        parse_settings(items, refuse, flags=parser_flags(parser))
    except Refused as refusal:
        message = str(refusal)
        stray = next((item for item in items if not item.startswith("-")), "")
        if stray.endswith((".yaml", ".yml")) or os.path.isfile(stray):
            message += " (several config files go in one quoted --config_files: --config_files='a.yaml b.yaml')"
        return message
    return None


def _keys_set_in_config_files(config_file_list) -> set:
    """The keys the yaml files give a value, read and merged by the reader ``Config`` uses (a later file's key
    replaces an earlier one's, an empty value included); files that cannot be read are reported by ``Config``."""
    try:
        merged = read_config_files(config_file_list)
    except ConfigError:
        return set()
    return {key for key, value in merged.items() if value is not None}


def main(argv=None, prog=None):
    """Command line entry point; mirrors ``run_recbole.py``: ``--model``, ``--dataset``, ``--sampler``,
    ``--config_files``, and every other ``--key=value`` is read by ``Config`` (values go through ``eval``). A key
    given twice takes its last value. ``prog``: the command its usage line names (default: the script's name)."""
    argv = _last_setting_wins(sys.argv[1:] if argv is None else list(argv))
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__.splitlines()[0], allow_abbrev=False,  # "--data=..." is not --dataset
        epilog="Every other RecBole or plugin option goes in --key=value form (e.g. --epochs=50, --data_path=DIR); "
               "defaults are in properties/*.yaml.")
    parser.add_argument("--model", "-m", type=str, default=None,
                        help="backbone: MF, NGCF, LightGCN or SGL, or a RecBole model with RNS (default: LightGCN, or "
                             "the config files' model)")
    parser.add_argument("--dataset", "-d", type=str, default=None,
                        help="dataset name, the folder <data_path>/<dataset>/ of atomic files (default: ml-100k, or "
                             "the config files' dataset)")
    parser.add_argument("--sampler", "-s", type=str, default=None,
                        help="RNS, DNS, MixGCF, AHNS or HNLMRec (default: RNS, or the config files' sampler)")
    parser.add_argument("--config_files", type=str, default=None, help="space-separated yaml files")
    args, rest = parser.parse_known_args(argv)
    valueless = [arg for arg in rest if arg.startswith("-") and "=" not in arg]
    if valueless:
        print(f"error: option {valueless[0]} has no value: RecBole options are written --key=value "
              f"(e.g. --epochs=50); only --model, --dataset, --sampler and --config_files also take a space.",
              file=sys.stderr)
        return 2
    refused = _refused_setting(rest, parser)
    if refused:
        print(f"error: {refused}", file=sys.stderr)
        return 2
    config_file_list = args.config_files.split() if args.config_files else None  # RecBole's split(" "), any spacing
    # a config file's model/dataset is the run's unless the command line names one (it was overridden by the defaults)
    in_files = _keys_set_in_config_files(config_file_list)
    model = args.model or (None if "model" in in_files else "LightGCN")
    dataset = args.dataset or (None if "dataset" in in_files else "ml-100k")
    config_dict = {"sampler": args.sampler} if args.sampler else None
    program_argv = sys.argv
    # RecBole's Config reads sys.argv, and warned that the command's own flags in their space form ("--model MF",
    # "-s DNS") "will not be used": they are, so it reads them in the --key=value form it takes; a value holding '='
    # (a config file in "lr=0.1/"), which its reader cannot split, reaches the run through the arguments only
    flags = [f"--{name}={value}" for name, value in vars(args).items() if value is not None and "=" not in value]
    sys.argv = [program_argv[0] if program_argv else "recbole-hnlm"] + flags + rest
    try:
        with sigterm_as_interrupt():
            run_recbole_hnlm(model=model, dataset=dataset, config_file_list=config_file_list,
                             config_dict=config_dict)
    except (ConfigError, DataError, FileNotFoundError, ConcurrentWriterError, WriteError) as error:
        _log_to_files(f"error: {error}")
        print(f"error: {error}", file=sys.stderr)
        return exit_status(error)
    except OSError as error:
        # a full disk refused a file no atomic write guards: RecBole's tensorboard events, a folder, a lock file
        from recbole_hnlm.files import unguarded_write_failure

        failure = unguarded_write_failure(error, "a file of the run (its log, tensorboard events or checkpoint folder)")
        if failure is None:
            raise
        print(f"error: {failure}", file=sys.stderr)
        return 1
    except TrainingInterrupted as interrupt:
        epoch = read_trainer_state(interrupt.resume_file).get("epoch")
        if interrupt.best_only:
            say_interrupted(f"interrupted: no resume state ({interrupt.why}); the best checkpoint so far, after "
                            f"epoch {epoch}, is {interrupt.resume_file}. Go on from it with the same options and "
                            f"--resume_from={interrupt.resume_file} (fresh random streams), or rerun the command.")
        else:
            say_interrupted(f"interrupted: the run's state after epoch {epoch} is saved (later work is lost); "
                            f"continue it with the same options and --resume_from={interrupt.resume_file}")
        return interrupted_status()
    except KeyboardInterrupt:
        from recbole_hnlm.llm.finetune_state import SAVE_EVERY_SECONDS

        llm = (args.sampler or "").lower() == "hnlmrec" or bool(args.config_files)  # config files may set it
        say_interrupted("interrupted: nothing half-written is left; rerun the command to start the run again" + (
            " (finished LLM artifacts are reused; an interrupted profile, negative or embedding stage goes on from "
            "its last finished chunk, the teacher from its last finished epoch, the fine-tuning from its last state, "
            f"saved every {SAVE_EVERY_SECONDS / 60:g} minutes)"
            if llm else ""))
        return interrupted_status()
    finally:
        sys.argv = program_argv
    return 0
