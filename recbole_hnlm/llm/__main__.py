"""Command line of the LLM stage.

    python -m recbole_hnlm.llm profiles  --dataset ml-100k [--max_pairs 2000]
    python -m recbole_hnlm.llm negatives --dataset ml-100k [--max_pairs 2000]       # variant semantic
    python -m recbole_hnlm.llm teacher   --dataset ml-100k [--overwrite]            # MixGCF teacher (finetuned)
    python -m recbole_hnlm.llm finetune  --dataset ml-100k                          # adapter only
    python -m recbole_hnlm.llm embed     --dataset ml-100k                          # variant finetuned
    python -m recbole_hnlm.llm keys                                                 # list hnlm_* settings

``--data_path`` defaults to RecBole's bundled folder for ml-100k, else ``dataset/``. ``--split recbole`` (default)
takes the training split from RecBole with the given ``--config_files`` (so profiles and negatives never see
validation/test interactions); ``--split all`` uses every interaction. Any ``--hnlm_<key>=<value>`` overrides a
setting; other ``--<key>=<value>`` go to RecBole's config of the split (e.g. ``--load_col``, ``--split_seed``).
Every stage is resumable: run the same command again after an interruption. A finished teacher file is reused, as
the run script reuses it (the fine-tuned adapter and store are keyed by its hash): ``--overwrite`` trains it again.
"""
import argparse
import contextlib
import logging
import os
import sys
from typing import Optional

from recbole_hnlm.cli_settings import parse_settings, parser_flags
from recbole_hnlm.errors import ConcurrentWriterError, ConfigError, DataError, WriteError, exit_status
from recbole_hnlm.signals import interrupted_status, say_interrupted, sigterm_as_interrupt

from .config import LLMConfig
from .paths import artifact_dir


def _default_data_path(dataset: str) -> str:
    import importlib.util

    if dataset == "ml-100k":
        spec = importlib.util.find_spec("recbole")
        return os.path.join(os.path.dirname(spec.origin), "dataset_example")
    return "dataset"


def recbole_split(dataset: str, data_path: str, config_files, model: Optional[str], settings=None,
                  for_teacher: bool = False):
    """RecBole's training dataloader and the plugin Config, built exactly as the run script builds them (same
    seed before the split), so the pairs prepared here are the pairs the HNLMRec run trains on. ``model`` ``None``:
    LightGCN, or ``for_teacher`` the teacher's backbone (``hnlm_teacher_model``), so that backbone options such as
    ``--learning_rate`` are the teacher's (they reach a teacher of the run's own backbone only)."""
    from recbole_hnlm.data_checks import check_dataset_files, check_duplicate_interactions
    from recbole_hnlm.quick_start import read_dataset, split_dataset

    from .teacher_training import _teacher_choice

    config = _recbole_config(dataset, data_path, config_files, model or "LightGCN", settings)
    teacher_model = _teacher_choice(config)[0] if model is None and for_teacher else "LightGCN"
    if teacher_model != "LightGCN":
        config = _recbole_config(dataset, data_path, config_files, teacher_model, settings)
    check_dataset_files(config)
    built = read_dataset(config)  # under the split seed, as a run
    check_duplicate_interactions(config, built)  # a warning, as in a run
    train, _, _ = split_dataset(config, built)
    return train, config


def _recbole_config(dataset: str, data_path: str, config_files, model: str, settings):
    """The plugin Config of an HNLMRec run of ``model`` with these files and settings, as the run script builds it."""
    from recbole_hnlm.config import Config

    return Config(model=model, dataset=dataset, config_file_list=config_files or None,
                  config_dict=dict(settings or {}, data_path=data_path, show_progress=False, sampler="HNLMRec"),
                  command_line=False)


def _where_recbole_reads(rb_config, dataset: str, data_path: str) -> str:
    """The folder RecBole reads ``dataset`` from with these settings (its bundled ml-100k whatever ``data_path``
    says), said when it is not ``data_path``: the stage reads the run's files and keeps its artifacts where the run
    script looks for them."""
    from .pipeline import root_data_path

    read_from = root_data_path(rb_config, dataset)
    if os.path.abspath(read_from) != os.path.abspath(data_path):
        logging.getLogger(__name__).warning(
            "--data_path %s: RecBole reads %s from %s, so the LLM stage reads it from there too, and keeps its "
            "artifacts where the run script looks for them (%s)", data_path, dataset, read_from,
            artifact_dir(read_from, dataset))
    return read_from


def _checked_data_path(dataset: str, data_path: str, config_files, model: Optional[str], settings) -> str:
    """``--split all`` reads the atomic files itself, without RecBole: check them first as a run does (headers,
    fields per line, numbers, ids, side files), so the LLM stage spends no hours on files the run would refuse.
    Returns the folder the run reads them from (:func:`_where_recbole_reads`)."""
    from recbole_hnlm.data_checks import check_dataset_files

    config = _recbole_config(dataset, data_path, config_files, model or "LightGCN", settings)
    check_dataset_files(config)
    return _where_recbole_reads(config, dataset, data_path)


def _check_teacher_of_split(path: str, rb_config, dataset: str, train_pairs) -> None:
    """The ``teacher`` stage reuses an existing file: say now, not at the fine-tuning, when it was trained on another
    split than the one these settings give."""
    from .finetune_pipeline import check_teacher_split
    from .pipeline import root_data_path, load_dataset_text
    from .teacher import Teacher

    text = load_dataset_text(rb_config, dataset, root_data_path(rb_config, dataset), train_pairs)
    teacher = Teacher.load(path)
    check_teacher_split(teacher, text)
    logging.getLogger(__name__).info("HNLMRec teacher: %s checked: its %d training pairs are training pairs of this "
                                     "split; reused", path, teacher.pair_user.numel())  # "checked next" said before


def _stage_key(key: str) -> bool:
    """The settings the LLM stage takes from RecBole's configuration (``load_col``: whether RecBole loads the
    ``.item`` file, and so reads its quotes as CSV quotes: the run's prompts and dataset hash follow it)."""
    return key.startswith("hnlm_") or key.endswith("_FIELD") or key in ("benchmark_filename", "encoding", "load_col")


def _yaml_settings(config_files) -> dict:
    """The stage's settings in ``--config_files`` (``--split all`` reads them from the files: its RecBole
    configuration serves the file checks only)."""
    from recbole_hnlm.config import read_config_files

    return {k: v for k, v in read_config_files(config_files).items() if _stage_key(k)}


@contextlib.contextmanager
def _quiet_third_party_output():
    """``--quiet`` for what other packages print, until the stage ends: bars made with plain tqdm (transformers' GGUF
    loader; tqdm reads its ``TQDM_DISABLE`` variable only when it is imported), RecBole's pandas FutureWarnings, and
    transformers' own bars and notices (GGUF de-quantising), whose verbosity and bar switch are restored afterwards
    (``main`` may run in-process). ``tqdm.notebook`` passes ``disable`` itself, so in Jupyter the GGUF loader's bar
    still shows."""
    import warnings

    from transformers.utils import logging as transformers_logging

    from .models import plain_tqdm_silenced

    verbosity, bars = transformers_logging.get_verbosity(), transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    try:
        with plain_tqdm_silenced(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"recbole\.")
            yield
    finally:
        transformers_logging.set_verbosity(verbosity)
        if bars:
            transformers_logging.enable_progress_bar()


def _warn_unread_options(args, overrides) -> None:
    """Name the options the chosen stage does not read (they were ignored without a word)."""
    log = logging.getLogger(__name__)
    if args.stage in ("teacher", "finetune") and "hnlm_max_pairs" in overrides:
        log.warning("--max_pairs is ignored: the %s stage %s; it limits the pairs the negatives and embed stages "
                    "compute", args.stage, "trains on every training pair" if args.stage == "teacher" else
                    "fine-tunes on hnlm_ft_max_train_pairs pairs")
    if args.overwrite and args.stage != "teacher":
        log.warning("--overwrite is ignored: only the teacher stage reads it (the %s stage computes its artifacts "
                    "again when their inputs or settings change)", args.stage)


def main(argv=None) -> int:
    """Run one stage; bad input is one ``error:`` line and exit status 2, an interruption exit status 130 (143 by
    SIGTERM)."""
    try:
        with contextlib.ExitStack() as quiet, sigterm_as_interrupt():
            return _run_stage(argv, quiet)
    except (ConfigError, DataError, FileNotFoundError, ConcurrentWriterError, WriteError) as error:
        print(f"error: {error}", file=sys.stderr)
        return exit_status(error)
    except KeyboardInterrupt:
        say_interrupted("interrupted: finished work is saved; run the same command again to resume")
        return interrupted_status()


def _run_stage(argv, quiet: contextlib.ExitStack) -> int:
    parser = argparse.ArgumentParser(prog="python -m recbole_hnlm.llm", description=__doc__, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["profiles", "negatives", "teacher", "finetune", "embed", "keys"])
    parser.add_argument("--dataset", "-d", default="ml-100k", help="RecBole dataset name (atomic files "
                        "<data_path>/<dataset>/<dataset>.inter, .item)")
    parser.add_argument("--data_path", default=None, help="folder of the dataset folders (default: RecBole's bundled "
                        "one for ml-100k, else dataset/)")
    parser.add_argument("--max_pairs", type=int, default=None, help="= --hnlm_max_pairs")
    parser.add_argument("--split", choices=["recbole", "all"], default="recbole",
                        help="training split of RecBole's data preparation, or every interaction (not for teacher)")
    parser.add_argument("--config_files", nargs="*", default=None, help="RecBole yaml files (their hnlm_* keys and "
                        "the split's settings): separate arguments, or one string as the run script takes them")
    parser.add_argument("--model", default=None, help="model name for RecBole's config (the split; default "
                        "LightGCN, for teacher --hnlm_teacher_model, whose options such as --learning_rate the "
                        "teacher then takes)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, and warnings and errors only")
    parser.add_argument("--overwrite", action="store_true", help="teacher: train again over an existing file")
    args, rest = parser.parse_known_args(argv)
    if args.stage == "keys":
        given = list(sys.argv[1:] if argv is None else argv)
        given.remove("keys")
        if given:
            parser.error(f"keys lists the hnlm_* settings and takes no options: got {' '.join(given)}")
        try:
            print(LLMConfig.help_table(), flush=True)
        except BrokenPipeError:  # `keys | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    if args.config_files:  # the run script's form too: one string of space-separated files
        args.config_files = [part for entry in args.config_files
                             for part in ([entry] if os.path.exists(entry) else entry.split())]
    overrides = parse_settings(rest, parser.error, hint=" (hnlm_* keys, or RecBole dataset keys such as --load_col)",
                               flags=parser_flags(parser))
    if args.max_pairs is not None:
        if args.max_pairs < 0:  # named as typed (LLMConfig's check names hnlm_max_pairs)
            parser.error(f"--max_pairs must be an integer >= 0 (0 = every training pair): got {args.max_pairs}")
        if "hnlm_max_pairs" in overrides and overrides["hnlm_max_pairs"] != args.max_pairs:
            parser.error(f"--max_pairs={args.max_pairs} and --hnlm_max_pairs={overrides['hnlm_max_pairs']!r} disagree: "
                         "give one of them")
        overrides["hnlm_max_pairs"] = args.max_pairs
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from recbole_hnlm.log_output import plain_when_redirected

    plain_when_redirected()  # RecBole's dataset lines carry colour codes
    _warn_unread_options(args, overrides)
    from recbole_hnlm.config import PROPERTIES_DIR, read_config_files
    from recbole_hnlm.config_checks import unknown_option_messages, unknown_options

    in_files = [key for key in read_config_files(args.config_files) if key not in overrides]  # as the run script
    for message in unknown_option_messages(unknown_options(list(overrides) + in_files, PROPERTIES_DIR)):
        logging.getLogger(__name__).warning(message)
    if args.quiet:
        quiet.enter_context(_quiet_third_party_output())
    data_path = args.data_path or _default_data_path(args.dataset)
    if args.stage == "teacher" and args.split != "recbole":
        parser.error("the teacher trains on RecBole's training split: drop --split all")
    train_pairs, config = None, {}
    if args.split == "recbole":
        from .recbole_pairs import train_pairs_from_dataset

        train, rb_config = recbole_split(args.dataset, data_path, args.config_files, args.model, overrides,
                                         for_teacher=args.stage == "teacher")
        if args.stage == "teacher":
            from .pipeline import teacher_path_for
            from .teacher_training import ensure_teacher

            from recbole_hnlm.determinism import deterministic_algorithms

            rb_config["show_progress"] = not args.quiet
            path = teacher_path_for(rb_config)
            reused = os.path.exists(path) and not args.overwrite  # a teacher trained now is of this split
            with deterministic_algorithms(rb_config["use_deterministic_algorithms"]):  # as inside a run
                ensure_teacher(rb_config, train, path, overwrite=args.overwrite)
            if reused:
                _check_teacher_of_split(path, rb_config, args.dataset, train_pairs_from_dataset(train))
            print(path)
            return 0
        train_pairs = train_pairs_from_dataset(train)
        config = {k: rb_config[k] for k in rb_config.final_config_dict if _stage_key(k)}  # yaml files too
        data_path = _where_recbole_reads(rb_config, args.dataset, data_path)
    else:
        config = _yaml_settings(args.config_files)
    config.update(overrides)
    if args.stage in ("negatives", "finetune", "embed"):  # finetune: the fine-tuned variant's checks hold
        variant = "semantic" if args.stage == "negatives" else "finetuned"
        if overrides.get("hnlm_variant") not in (None, variant):  # given on the command line (the yaml has one)
            logging.getLogger(__name__).warning("--hnlm_variant=%s is ignored: the %s stage computes the %s variant",
                                                overrides["hnlm_variant"], args.stage, variant)
        config["hnlm_variant"] = variant
    cfg = LLMConfig.from_config(config)
    if args.split == "all":  # after the settings' errors, as with RecBole's split
        data_path = _checked_data_path(args.dataset, data_path, args.config_files, args.model, overrides)
    from .pipeline import load_dataset_text, profiles_path, run_negatives, run_profiles, store_path_for

    text = load_dataset_text(config, args.dataset, data_path, train_pairs)
    progress = not args.quiet
    if args.stage == "profiles":
        run_profiles(cfg, text, text.select_pairs(cfg.max_pairs, cfg.seed), progress=progress)
        out = profiles_path(data_path, args.dataset)
    elif args.stage == "negatives":
        out = run_negatives(cfg, text, store_path_for(cfg, data_path, args.dataset), progress)
    else:
        from .finetune_pipeline import ensure_finetuned

        out = ensure_finetuned(cfg, text, store_path_for(cfg, data_path, args.dataset), progress,
                               embed=args.stage == "embed")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
