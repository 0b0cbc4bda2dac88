"""Run a benchmark grid and write its report::

    python -m recbole_hnlm.benchmark --dataset ml-100k --models LightGCN MF \\
        --samplers RNS DNS MixGCF AHNS HNLMRec --seeds 2020 2021 2022 --split_seed=2020 --out results/my-grid
    python -m recbole_hnlm.benchmark --dataset ml-100k --models MF --samplers RNS DNS --seeds 2020 --epochs 10 \\
        --analysis popularity,fhn,sparsity --out results/ml-100k-mf --learning_rate=0.002
    python -m recbole_hnlm.benchmark --out results/ml-100k --report-only

Every other ``--key=value`` is a RecBole / sampler setting shared by all cells (values are Python literals when they
parse as one, else strings), e.g. ``--data_path=/data/atomic --stopping_step=10 --dns_candidates=64``.
Rerunning the same command skips finished cells (``out/runs/<cell>.json``).

Exit status: 0 when every cell finished; 1 when a cell failed (the summary names its ``out/runs/<cell>.error.txt``)
or a file could not be written (a full disk); 2 for bad input, caught before any cell runs or anything is written (a
malformed option such as ``--ratios abc``, unknown model or sampler, invalid setting, missing dataset files, a
finished cell with other settings in ``out``, ``--report-only`` on a folder without runs); 130 when interrupted
(143 by SIGTERM; finished cells are kept, the rerun resumes). Bad input is one ``error:`` line on stderr, without
a traceback.
"""
import argparse
import os
import sys
import warnings

from recbole_hnlm.cli_settings import parse_settings, parser_flags

#: Defaults of the issue's grid.
DEFAULT_MODELS = ("LightGCN", "MF")
DEFAULT_SAMPLERS = ("RNS", "DNS", "MixGCF", "AHNS", "HNLMRec")
DEFAULT_SEEDS = (2020, 2021, 2022)
#: ``--key=value`` settings that every cell sets itself, and the option to use instead.
CELL_KEYS = {"model": "--models", "sampler": "--samplers", "seed": "--seeds", "checkpoint_dir": "--out"}
_MAX_SEED = 2 ** 32 - 1  # numpy's limit (RecBole's init_seed)
#: The line a grid or a search prints when Ctrl-C or SIGTERM stops it.
INTERRUPTED = "interrupted: finished cells are saved; rerun the same command to resume"


class UsageError(ValueError):
    """A malformed command line; ``main`` reports it as one ``error:`` line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _integer(low, high=None, what="an integer"):
    """An argparse ``type``: an integer in ``[low, high]``, else an error saying ``what`` is expected."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    return parse


def _ratios(text):
    """``0.2,0.4`` -> ``(0.2, 0.4)``: shares of the training split, each giving its own cell name."""
    from recbole_hnlm.benchmark.runner import Cell

    expected = f"comma-separated numbers strictly between 0 and 1 (e.g. 0.2,0.4,0.6,0.8), got {text!r}"
    try:
        ratios = tuple(float(r) for r in text.split(",") if r.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}") from None
    if not ratios or not all(0.0 < r < 1.0 for r in ratios):
        raise argparse.ArgumentTypeError(f"expected {expected}")
    keys = [Cell("M", "S", 0, r).key.rsplit("-", 1)[1] for r in ratios]  # cells are named by whole percent
    for k, key in enumerate(keys):
        if key in keys[:k]:
            other = ratios[keys.index(key)]
            raise argparse.ArgumentTypeError(f"{other} and {ratios[k]} both name their cells {key}: give ratios "
                                             "that differ by at least 0.01")
    return ratios


def _analyses(text):
    """``popularity,fhn`` -> ``["popularity", "fhn"]``."""
    from recbole_hnlm.benchmark.grid import ANALYSES

    names = [a.strip() for a in text.split(",") if a.strip()]
    unknown = [a for a in names if a not in ANALYSES]
    if unknown:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {', '.join(ANALYSES)}, got {text!r}")
    return names


def _no_repeats(parser, option, values, key=str):
    seen = {}
    for value in values:
        if key(value) in seen:
            first = seen[key(value)]
            parser.error(f"argument {option}: {value} is listed twice" if value == first else
                         f"argument {option}: {value} repeats {first} (names are case-insensitive)")
        seen[key(value)] = value


def shared_settings(parser, args, extra, cell_keys, resume_note):
    """The ``--key=value`` settings of a grid-like command line, checked: none that the cells set themselves
    (``cell_keys``: key -> the option to use), no resume options (``resume_note`` says why), ``--epochs`` folded in;
    ``args.config_files`` split into a list of existing files. Errors go through ``parser.error``."""
    config = parse_settings(extra, parser.error, flags=parser_flags(parser))
    for key, option in cell_keys.items():
        if key in config:
            parser.error(f"--{key}={config[key]} is set by each cell here: use {option} instead")
    for key in ("resume_from", "save_resume_state"):
        if key in config:
            parser.error(f"--{key} is for single runs of the run script; {resume_note}")
    if args.epochs is not None:
        config["epochs"] = args.epochs
    args.config_files = args.config_files.split() if args.config_files else None
    missing = [path for path in args.config_files or () if not os.path.isfile(path)]
    if missing:
        parser.error(f"argument --config_files: {', '.join(missing)} not found")
    return config


def parse_command_line(parse, argv):
    """``(args, None)`` from ``parse`` on ``argv`` (default ``sys.argv[1:]``), or ``(None, 2)`` after printing a
    malformed command line's ``error:`` line; RecBole's FutureWarnings (pandas, amp) are silenced for the run."""
    try:
        args = parse(sys.argv[1:] if argv is None else list(argv))
    except UsageError as error:
        return None, fail(f"{error} (see --help)")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"recbole\.")
    return args, None


def fail(error) -> int:
    """One ``error:`` line on stderr; exit status 2 for bad input, 1 for a write that failed (a full disk)."""
    from recbole_hnlm.errors import exit_status

    print(f"error: {error}", file=sys.stderr)
    return exit_status(error)


PROG = "python -m recbole_hnlm.benchmark"


def parse_args(argv, prog=PROG):
    """The parsed command line; a malformed one raises :class:`UsageError` naming the option."""
    parser = _Parser(
        prog=prog, allow_abbrev=False,
        description="Samplers x backbones x seeds on one dataset: per-cell JSON, runs.csv, table.md, plots/*.png.",
        epilog="Any other --key=value is a RecBole or sampler setting shared by every cell.")
    parser.add_argument("--dataset", "-d", default="ml-100k", help="RecBole dataset name (default ml-100k)")
    parser.add_argument("--models", "-m", nargs="+", default=list(DEFAULT_MODELS),
                        help=f"backbones (default: {' '.join(DEFAULT_MODELS)})")
    parser.add_argument("--samplers", "-s", nargs="+", default=list(DEFAULT_SAMPLERS),
                        help=f"samplers (default: {' '.join(DEFAULT_SAMPLERS)})")
    parser.add_argument("--seeds", nargs="+", type=_integer(0, _MAX_SEED, f"integers from 0 to {_MAX_SEED}"),
                        default=list(DEFAULT_SEEDS),
                        help=f"seeds (default: {' '.join(map(str, DEFAULT_SEEDS))}); HNLMRec over several seeds needs "
                             "--split_seed=N (one split for its LLM artifacts)")
    parser.add_argument("--out", "-o", default=None, help="output folder (default results/<dataset>)")
    parser.add_argument("--epochs", type=_integer(1, what="an integer >= 1"), default=None,
                        help="maximum epochs per cell (default: the yaml's)")
    parser.add_argument("--analysis", type=_analyses, default="", dest="analyses", metavar="NAMES",
                        help="comma-separated: popularity, fhn, sparsity")
    parser.add_argument("--ratios", type=_ratios, default="0.2,0.4,0.6,0.8",
                        help="training ratios of the sparsity analysis, each in (0, 1)")
    parser.add_argument("--fhn-pairs", type=_integer(1, what="an integer >= 1"), default=2048,
                        help="training pairs sampled for the FHN rate")
    parser.add_argument("--config_files", default=None, help="space-separated yaml files shared by every cell")
    parser.add_argument("--report-only", action="store_true", help="only rebuild the CSV, table and plots")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args, extra = parser.parse_known_args(argv)
    _no_repeats(parser, "--models", args.models, str.lower)
    _no_repeats(parser, "--samplers", args.samplers, str.lower)
    _no_repeats(parser, "--seeds", args.seeds)
    config = shared_settings(parser, args, extra, CELL_KEYS,
                             "the grid resumes by itself (rerun the same command: finished cells are kept) and its "
                             "cells write no per-epoch resume state")
    if "init_from" in config and "sparsity" in args.analyses:
        parser.error("--init_from cannot be combined with --analysis sparsity: the checkpoint was trained on the whole "
                     "training split, and each sparsity cell trains on a part of it")
    args.config = config
    args.out = args.out or f"results/{args.dataset}"
    return args


def main(argv=None, prog=PROG):
    """Command line (see the module docstring); ``prog``: the command ``--help`` names (``benchmarks/compare.py``).
    Ctrl-C or SIGTERM at any point (loading the libraries, the checks, a cell, the report) prints one
    ``interrupted:`` line and exits 130 (143): the report is written atomically and rebuilt by the rerun."""
    from recbole_hnlm.signals import run_interruptible

    return run_interruptible(lambda: _main(argv, prog), INTERRUPTED)


def _main(argv, prog):
    from recbole_hnlm.benchmark.grid import SettingsMismatch, run_grid
    from recbole_hnlm.benchmark.report import write_report
    from recbole_hnlm.errors import WriteError

    args, status = parse_command_line(lambda items: parse_args(items, prog), argv)
    if args is None:
        return status
    summary = {"failed": []}
    if not args.report_only:
        try:
            summary = run_grid(args.dataset, args.models, args.samplers, args.seeds, args.out,
                               config_dict=args.config, config_file_list=args.config_files,
                               analyses=args.analyses, ratios=args.ratios, progress=not args.no_progress,
                               fhn_pairs=args.fhn_pairs)
        except (SettingsMismatch, ValueError, FileNotFoundError, WriteError) as error:  # ConfigError: a ValueError
            return fail(error)
        print(f"cells: {len(summary['ran'])} ran, {len(summary['skipped'])} skipped (finished), "
              f"{len(summary['failed'])} failed{': ' + ', '.join(summary['failed']) if summary['failed'] else ''}")
    try:
        paths = write_report(args.out, plots=not args.no_plots)
    except (FileNotFoundError, ValueError, WriteError) as error:  # no runs; a result file that is not JSON
        return fail(error)
    for name, path in paths.items():
        print(f"{name}: {path}")
    if summary["failed"]:
        print(f"error: {len(summary['failed'])} cell(s) failed; see {', '.join(summary['errors'].values())}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
