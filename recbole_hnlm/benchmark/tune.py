"""Hyper-parameter search for one backbone and sampler: RecBole's ``run_hyper.py``, on the benchmark grid::

    python -m recbole_hnlm.benchmark.tune --model LightGCN --sampler MixGCF --dataset ml-100k \\
        --params_file benchmarks/hyper/mixgcf.hyper --seeds 2020 2021 --out results/tune-lightgcn-mixgcf --epochs 100
    python -m recbole_hnlm.benchmark.tune --model MF --sampler DNS --params_file benchmarks/hyper/dns.hyper \\
        --algo random --max_evals 20

(``python benchmarks/tune.py`` is the same command from a checkout.) The params file is RecBole's (``search_space.py``).
Every trial is a grid of one backbone, one sampler and the seeds (``grid.py``), trained with the trial's values on top
of the shared ``--key=value`` settings; trials are ranked by their mean validation score over the seeds (RecBole's
``valid_metric``). The test metrics are reported beside it and play no part in the choice.

Layout of ``out``::

    out/search.json            the search: space, algorithm, settings, and per trial its values, status, folder,
                               validation and test means (rewritten after every trial)
    out/search.md              the trials ranked by validation, the best one first
    out/trials/<trial>/        the trial's grid: grid.json, runs/<cell>.json, logs/, checkpoints/

Everything is checked before the first trial runs: the params file, the names it searches (options, not set on the
command line too, and none that would change what the trials are ranked on: ``valid_metric``, ``eval_args``,
``split_seed``, ``data_path``, the dataset filters, ``metrics``, ``topk``: :data:`FIXED_KEYS`), every trial's values
(``Config``'s type and range checks, ``runner.check_cell``), and what ``out`` already holds (the same search,
trials with the same dataset and settings). Rerunning the same command resumes: finished cells are skipped, so
finished trials cost nothing.

Exit status: 0 when every trial finished; 1 when a cell failed (its ``error.txt`` is named) or a file could not be
written (a full disk); 2 for bad input, before anything runs; 130 when interrupted (143 by SIGTERM).
"""
import json
import math
import os
import shlex
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
from tqdm import tqdm

from recbole_hnlm.benchmark.grid import (SettingsMismatch, canonical_names, check_out_folder, expand_cells,
                                         grid_settings, pending_cells, run_grid, source_digests, warning_once)
from recbole_hnlm.benchmark.report import METRIC_NAMES
from recbole_hnlm.benchmark.runner import METRICS, Cell, check_cell, run_cell
from recbole_hnlm.benchmark.search_space import ALGORITHMS, make_trials, read_params_file, trial_key
from recbole_hnlm.config_checks import foreign_option_messages, run_never_reads
from recbole_hnlm.data_checks import checks_remembered
from recbole_hnlm.errors import ConfigError, WriteError
from recbole_hnlm.files import write_json_atomic, write_text_atomic

__all__ = ["run_search", "search_report", "main"]

#: How error hints spell this command's model and sampler options (compare.py's are ``--models``/``--samplers``).
TUNE_OPTIONS = {"model": "--model ", "sampler": "--sampler "}
#: Settings each trial's cells set themselves, and the option that sets them.
TRIAL_KEYS = {"model": "--model", "sampler": "--sampler", "seed": "--seeds", "checkpoint_dir": "--out",
              "dataset": "--dataset"}
#: A search of at least this many trials shows a bar while it checks them (about 0.05 s each) before the first runs.
CHECK_BAR_TRIALS = 20
#: Settings a search must not vary, and why: the trials are ranked on one validation split and one metric.
FIXED_KEYS = {
    "valid_metric": "the trials are ranked by one validation metric",
    "valid_metric_bigger": "the trials are ranked by one validation metric",
    "eval_args": "the trials are ranked on one validation split",
    "split_seed": "the trials are ranked on one validation split",
    "data_path": "the trials are ranked on one dataset",
    **dict.fromkeys(("user_inter_num_interval", "item_inter_num_interval", "filter_inter_by_user_or_item",
                     "val_interval", "rm_dup_inter", "threshold", "load_col", "unload_col", "unused_col",
                     "benchmark_filename"),
                    "it filters the interactions the validation split is drawn from, and the trials are ranked on "
                    "one dataset"),
    **dict.fromkeys(("metrics", "topk", "metric_decimal_place"),
                    "the trials are compared on one set of metrics, rounded alike"),
    "resume_from": "a search resumes by itself (rerun the same command: finished cells are kept)",
    "save_resume_state": "a search resumes by itself (rerun the same command: finished cells are kept)",
}


def _check_params(params, config_dict, sampler=None):
    """A searched name must be an option, not set on the command line too, not one the search sets itself, not
    one that changes what the trials are ranked on (:data:`FIXED_KEYS`), and not an option of another sampler than
    ``sampler`` (its trials would repeat one run)."""
    from recbole_hnlm.config import PROPERTIES_DIR
    from recbole_hnlm.config_checks import ALSO_READS, plugin_option_owners, unknown_options
    from recbole_hnlm.utils import get_sampler

    where = {p.name: p.where for p in params}
    for name, hint in unknown_options(list(where), PROPERTIES_DIR):
        raise ConfigError(f"{where[name]}: '{name}' is not a RecBole or recbole_hnlm option"
                          + (f": did you mean '{hint}'?" if hint else ""))
    if sampler is not None:
        sampler = get_sampler(sampler).name
        readers = {sampler, *ALSO_READS.get(sampler, ())}
        options = {name: keys for (kind, name), keys in plugin_option_owners(PROPERTIES_DIR).items()
                   if kind == "sampler"}
        for name in where:
            owners = [owner for owner, names in options.items() if name in names]
            if owners and not readers & set(owners):
                raise ConfigError(f"{where[name]}: '{name}' is an option of the {'/'.join(owners)} sampler, which "
                                  f"a search with --sampler {sampler} never reads: its values would repeat one run. "
                                  f"Drop the line, or search it with --sampler {owners[0]}.")
    for name in where:
        if name in TRIAL_KEYS:
            raise ConfigError(f"{where[name]}: '{name}' is set by the search itself: use {TRIAL_KEYS[name]}")
        if name in FIXED_KEYS:
            raise ConfigError(f"{where[name]}: '{name}' cannot be searched: {FIXED_KEYS[name]}")
        if name in (config_dict or {}):
            raise ConfigError(f"{where[name]}: '{name}' is searched here and also set with --{name}=...: drop one")


def _values(trial) -> str:
    return ", ".join(f"{k}={v}" for k, v in trial.items())


def _seed_summary(values: Sequence[float]) -> Dict[str, Optional[float]]:
    return {"mean": float(np.mean(values)),
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else None}


def trial_summary(values, folder, seeds, model, sampler, grid_summary) -> Dict[str, object]:
    """One trial of ``search.json``: its values and folder, ``status`` (``finished`` / ``failed`` / ``pending``), and
    over its seeds the validation score, the test metrics and the best epochs."""
    keys = [Cell(model, sampler, int(seed)).key for seed in seeds]
    results = [grid_summary["results"][k] for k in keys if k in grid_summary.get("results", {})]
    failed = [k for k in keys if k in grid_summary.get("failed", ())]
    finished = not failed and len(results) == len(keys)
    entry = {"values": values, "folder": folder,
             "status": "failed" if failed else ("finished" if finished else "pending"),
             "errors": [grid_summary["errors"][k] for k in failed]}
    if finished:
        entry["valid_metric"] = results[0]["valid_metric"]
        entry["valid_metric_bigger"] = results[0].get("valid_metric_bigger", True)
        entry["valid"] = _seed_summary([r["best_valid_score"] for r in results])
        entry["test"] = {m: _seed_summary([r["test_result"][m] for r in results]) for m in METRICS
                         if all(m in r["test_result"] for r in results)}
        entry["best_epochs"] = [r["best_epoch"] for r in results]
    return entry


def ranked(trials: List[Dict[str, object]]) -> List[Dict[str, object]]:
    """The finished trials, best mean validation score first (smaller first when the metric is not bigger-better;
    a NaN score last); ties keep the run order."""
    def key(trial):
        score = trial["valid"]["mean"]
        return (math.isnan(score), -score if trial["valid_metric_bigger"] else score)

    return sorted([t for t in trials if t["status"] == "finished"], key=key)


def _check_same_search(out, search):
    """``out`` may hold an earlier run of this search only: another dataset, backbone or sampler would replace its
    ``search.json`` and drop its trials from the report."""
    path = os.path.join(out, "search.json")
    if not os.path.exists(path):
        return
    try:
        with open(path, encoding="utf-8") as handle:
            stored = json.load(handle)
        if not isinstance(stored, dict):
            raise ValueError("not a JSON object")
        trials = stored.get("trials", [])
        if not isinstance(trials, list) or not all(isinstance(t, dict) and isinstance(t.get("values", {}), dict)
                                                   for t in trials):
            raise ValueError("'trials' is not a list of trial records")
    except (ValueError, UnicodeDecodeError) as error:
        raise SettingsMismatch(f"{path}: not a search record of this tool ({error}). Use another --out folder, or "
                               "delete the file to start the report afresh (finished trials are kept).") from None
    for key in ("dataset", "model", "sampler"):
        same = (stored.get(key) == search[key] if key == "dataset"  # names of earlier versions kept their case
                else str(stored.get(key)).lower() == str(search[key]).lower())
        if not same:
            raise SettingsMismatch(f"{path}: a search of {key}={stored.get(key)!r}, now {key}={search[key]!r}. Use "
                                   "another --out folder.")
    return stored


#: What a search writes into ``out`` (``confirm``: the grid its report suggests running).
_SEARCH_OUTPUT = {"search.json", "search.md", "trials", "confirm"}


def _warn_about_other_files(out, warn) -> None:
    """A new search in a folder of other files (a grid's results, another tool's) mixed its report in among them
    without a word."""
    others = sorted(set(os.listdir(out)) - _SEARCH_OUTPUT) if os.path.isdir(out) else []
    if others:
        warn(f"--out {out} holds files that are no output of a search ({', '.join(others[:3])}"
             f"{' ...' if len(others) > 3 else ''}); the search writes search.json, search.md and trials/ beside them "
             "(another --out folder keeps them apart)")


def _warn_about_dropped_trials(stored, folders, out, warn) -> None:
    """A changed space (or --max_evals, --search_seed) leaves trials of the earlier search out of the new report;
    their folders stay in ``out``."""
    dropped = [t for t in (stored or {}).get("trials", ()) if t.get("folder") not in folders]
    if dropped:
        warn(f"{out} holds {len(dropped)} trial(s) of an earlier search that this search's report leaves out (their "
             "folders stay): " + "; ".join(_values(t.get("values", {})) for t in dropped[:5])
             + ("; ..." if len(dropped) > 5 else ""))


def _markdown(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _cell(stats) -> str:
    if stats is None:
        return "-"
    return f"{stats['mean']:.4f}" + (f" ± {stats['std']:.4f}" if stats["std"] is not None else "")


def _argument(key, value) -> str:
    """``--key=value`` as the plugin's command lines read it back (``cli_settings.parse_value``), shell-quoted."""
    from recbole_hnlm.cli_settings import parse_value

    text = value if isinstance(value, str) and parse_value(value) == value else repr(value)
    return shlex.quote(f"--{key}={text}")


def confirm_command(search, values) -> str:
    """The ``benchmarks/compare.py`` command that reruns ``values`` with the search's settings on the search's seeds
    and two more, into ``<out>/confirm`` (another sampler's confirmation can share that folder and its table)."""
    seeds = list(search["seeds"])
    seeds += [max(seeds) + 1, max(seeds) + 2]
    settings = dict(search["settings"])
    words = ["python", "benchmarks/compare.py", "--dataset", search["dataset"], "--models", search["model"],
             "--samplers", search["sampler"], "--seeds", *map(str, seeds),
             "--out", shlex.quote(os.path.join(search["out"], "confirm"))]
    if "config_files" in settings:
        words += ["--config_files", shlex.quote(" ".join(settings.pop("config_files")))]
    words += [_argument(k, v) for k, v in {**settings, **values}.items()]
    return " ".join(words)


def search_report(search: Dict[str, object]) -> str:
    """``search.md``: the trials ranked by validation, then the unfinished ones."""
    names = [p["name"] for p in search["space"]]
    order = ranked(search["trials"])
    lines = [f"# Hyper-parameter search: {search['model']} + {search['sampler']} on {search['dataset']}", "",
             f"{search['algo']} search, {len(search['trials'])} trials, seeds {' '.join(map(str, search['seeds']))}; "
             "ranked by the mean over seeds of the validation score (RecBole's valid_metric, best epoch of each run). "
             "Test metrics are shown beside it and take no part in the ranking (mean ± sample std over seeds).", ""]
    if order:
        best = order[0]
        shown = f"{best['valid']['mean']:.4f}"  # the ranked means, equal as the table shows them (stds aside)
        tied = [t for t in order[1:] if f"{t['valid']['mean']:.4f}" == shown]
        pending = len(order) < len(search["trials"])  # an interrupted search: the best so far
        lines += [f"**Best{' so far' if pending else ''}:** {_values(best['values'])} (validation "
                  f"{best['valid_metric']} {_cell(best['valid'])}, test NDCG@20 {_cell(best['test'].get('ndcg@20'))}; "
                  f"`{best['folder']}`)" + (f"; tied on validation with {len(tied)} other trial(s) ("
                                             f"{'; '.join(_values(t['values']) for t in tied)}), the first run kept"
                                             if tied else "")
                  + (f". {len(order)} of {len(search['trials'])} trials finished." if pending else ""), "",
                  "To confirm it on more seeds (these and two more), beside other samplers in one table:", "",
                  "```", confirm_command(search, best["values"]), "```", ""]
    valid = f"valid {order[0]['valid_metric']}" if order else "valid"  # no finished trial names its metric yet
    header = ["rank", *names, valid, *(f"test {METRIC_NAMES[m]}" for m in METRICS), "best epochs"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rank, trial in enumerate(order, start=1):
        cells = [str(rank), *(_markdown(trial["values"][n]) for n in names), _cell(trial["valid"]),
                 *(_cell(trial["test"].get(m)) for m in METRICS), " ".join(map(str, trial["best_epochs"]))]
        lines.append("| " + " | ".join(cells) + " |")
    others = [t for t in search["trials"] if t["status"] != "finished"]
    if others:
        lines += ["", "Not finished:", ""]
        for trial in others:
            lines.append(f"* {_values(trial['values'])}: {trial['status']}" + (f" (see {', '.join(trial['errors'])})"
                                                              if trial["errors"] else ""))
    return "\n".join(lines) + "\n"


def run_search(dataset, model, sampler, seeds, params_file, out, algo="exhaustive", max_evals=None, search_seed=2020,
               config_dict=None, config_file_list=None, progress=True, cell_runner=run_cell, cell_checker=check_cell):
    """Run every unfinished trial of the search and write ``search.json`` and ``search.md`` (see the module
    docstring).

    Args:
        dataset, model, sampler (str): RecBole dataset, backbone and sampler.
        seeds (list of int): each trial runs one cell per seed.
        params_file (str): the search space, in RecBole's params-file format.
        out (str): output folder.
        algo (str): ``exhaustive`` or ``random``; max_evals (int): the number of trials (required for random);
            search_seed (int): seed of the random draws.
        config_dict (dict): settings shared by every trial; config_file_list (list of str): yaml files.
        progress (bool): a tqdm bar over the trials.
        cell_runner, cell_checker: as in :func:`grid.run_grid` (``cell_checker=None`` skips the up-front checks).

    Returns:
        dict: the content of ``search.json`` (``trials`` in run order; :func:`ranked` orders them).

    Raises:
        ConfigError: a malformed params file, a tuned name that is no option, an invalid value in some trial.
        SettingsMismatch: ``out`` holds a trial stored with other settings.
        FileNotFoundError: the params file or the dataset's files are missing.
    """
    from recbole_hnlm.config import read_config_files
    from recbole_hnlm.utils import get_model

    check_out_folder(out)
    params = read_params_file(params_file)
    get_model(model)  # an unknown name is the command's error, not a trial's
    (model,), (sampler,) = canonical_names([model], [sampler])
    config_dict = dict(config_dict or {})
    _check_params(params, config_dict, sampler)
    trials = make_trials(params, algo, max_evals, search_seed)
    folders = [os.path.join("trials", trial_key(t)) for t in trials]
    first_with = {}  # folder -> its first trial
    for index, folder in enumerate(folders):
        first = first_with.setdefault(folder, trials[index])
        if first is not trials[index]:
            raise ConfigError(f"{params_file}: the trials {_values(first)} and {_values(trials[index])} print the same "
                              f"(folder {folder}): give values that differ as text")
    warn_once = warning_once()
    search = {"dataset": dataset, "model": model, "sampler": sampler, "seeds": [int(s) for s in seeds], "out": out,
              "algo": algo, "max_evals": max_evals, "search_seed": search_seed, "params_file": params_file,
              "space": [{"name": p.name, "kind": p.kind, "values": list(p.values), "bounds": list(p.bounds)}
                        for p in params],
              "settings": grid_settings(config_dict, config_file_list), "trials": []}
    stored = _check_same_search(out, search)
    if stored is None:
        _warn_about_other_files(out, warn_once)
    _warn_about_dropped_trials(stored, folders, out, warn_once)
    cells = expand_cells([model], [sampler], seeds)
    summaries = []
    where = {p.name: p.where for p in params}
    never_read = {}  # searched key -> (its owners, the trials that never read it)
    file_settings = read_config_files(config_file_list)  # under config_dict and trial
    checking = tqdm(list(zip(trials, folders)), desc="checking trials", unit="trial", leave=False,
                    disable=not progress or len(trials) < CHECK_BAR_TRIALS, dynamic_ncols=True)
    with checks_remembered(), checking:  # the trials read the same dataset files
        for trial, folder in checking:  # every trial is checked before the first one trains
            trial_dict = {**config_dict, **trial}
            eval_step = {**file_settings, **trial_dict}.get("eval_step")
            if isinstance(eval_step, int) and eval_step <= 0:
                raise ConfigError((f"{where['eval_step']}: " if "eval_step" in trial else "")
                                  + f"eval_step={eval_step} never validates, and a search ranks its trials on "
                                  "validation: give eval_step >= 1")
            settings = grid_settings(trial_dict, config_file_list)
            try:
                _, finished = pending_cells(os.path.join(out, folder), dataset, cells, settings, (),
                                            source_digests(settings), say_unreadable=False)  # said when it runs
            except SettingsMismatch as error:
                raise SettingsMismatch(f"{os.path.join(out, folder)}: {error}") from None
            summaries.append({"results": finished})
            if cell_checker is not None:
                try:
                    foreign = cell_checker(cells[0], dataset, os.path.join(out, folder), config_dict=trial_dict,
                                           config_file_list=config_file_list, warn=warn_once, options=TUNE_OPTIONS)
                except ConfigError as error:
                    raise ConfigError(f"trial {_values(trial)}: {error}") from None
                for key, owners in foreign or []:
                    if key in trial:
                        never_read.setdefault(key, (owners, []))[1].append(trial)
                for message in foreign_option_messages([f for f in foreign or [] if f[0] not in trial],
                                                       run_never_reads(model, sampler)):
                    warn_once(message)  # a shared option of another backbone or sampler
    for key, (owners, unread) in never_read.items():
        if len(unread) == len(trials):  # its values would repeat one run
            raise ConfigError(f"{where[key]}: '{key}' is an option of {owners}, which "
                              f"{run_never_reads(model, sampler)}: its values would repeat one run. Drop the line.")
        warn_once(f"{where[key]}: '{key}' is read by some trials only: {len(unread)} of {len(trials)} never read it "
                  f"(an option of {owners}), e.g. {_values(unread[0])}.")

    def write():
        search["trials"] = [trial_summary(t, f, seeds, model, sampler, s)
                            for t, f, s in zip(trials, folders, summaries)]
        write_json_atomic(os.path.join(out, "search.json"), search)
        write_text_atomic(os.path.join(out, "search.md"), search_report(search))

    write()
    bar = tqdm(list(zip(trials, folders)), desc=f"{model}+{sampler} search", unit="trial", disable=not progress,
               dynamic_ncols=True)
    for index, (trial, folder) in enumerate(bar):
        bar.set_postfix_str(os.path.basename(folder))
        summaries[index] = run_grid(dataset, [model], [sampler], seeds, os.path.join(out, folder),
                                    config_dict={**config_dict, **trial}, config_file_list=config_file_list,
                                    progress=False, cell_runner=cell_runner, cell_checker=None)
        write()
    return search


PROG = "python -m recbole_hnlm.benchmark.tune"


def _parse_args(argv, prog=PROG):
    from recbole_hnlm.benchmark.__main__ import _MAX_SEED, _integer, _no_repeats, _Parser, shared_settings

    parser = _Parser(prog=prog, allow_abbrev=False,
                     description="Hyper-parameter search for one backbone and sampler (RecBole's params-file format).",
                     epilog="Any other --key=value is a RecBole or sampler setting shared by every trial.")
    parser.add_argument("--model", "-m", required=True, help="backbone")
    parser.add_argument("--sampler", "-s", default="RNS", help="sampler (default RNS)")
    parser.add_argument("--dataset", "-d", default="ml-100k", help="RecBole dataset name (default ml-100k)")
    parser.add_argument("--params_file", required=True, help="search space: '<name> <type> <values>' per line")
    parser.add_argument("--algo", choices=ALGORITHMS, default="exhaustive",
                        help="exhaustive: every combination of the choice lines; random: --max_evals draws")
    parser.add_argument("--max_evals", type=_integer(1, what="an integer >= 1"), default=None,
                        help="number of trials (random search; caps exhaustive search)")
    parser.add_argument("--search_seed", type=_integer(0, _MAX_SEED, f"an integer from 0 to {_MAX_SEED}"),
                        default=2020, help="seed of the random draws")
    parser.add_argument("--seeds", nargs="+", type=_integer(0, _MAX_SEED, f"integers from 0 to {_MAX_SEED}"),
                        default=[2020], help="seeds of each trial (default 2020)")
    parser.add_argument("--out", "-o", default=None, help="output folder (default results/tune-<dataset>-<model>-"
                        "<sampler>)")
    parser.add_argument("--epochs", type=_integer(1, what="an integer >= 1"), default=None,
                        help="maximum epochs per run (default: the yaml's)")
    parser.add_argument("--config_files", default=None, help="space-separated yaml files shared by every trial")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args, extra = parser.parse_known_args(argv)
    _no_repeats(parser, "--seeds", args.seeds)
    args.config = shared_settings(parser, args, extra, TRIAL_KEYS, FIXED_KEYS["resume_from"])
    if args.algo == "random" and args.max_evals is None:
        parser.error("argument --max_evals: random search needs the number of trials")
    if not os.path.isfile(args.params_file):
        parser.error(f"argument --params_file: {args.params_file} " +
                     ("is a folder; give the params file in it" if os.path.isdir(args.params_file) else "not found"))
    args.out = args.out or f"results/tune-{args.dataset}-{args.model}-{args.sampler}"
    return args


def main(argv=None, prog=PROG) -> int:
    """Command line (see the module docstring); ``prog``: the command ``--help`` names (``benchmarks/tune.py``).
    Ctrl-C or SIGTERM at any point (the option checks, the trials' checks, a trial) prints one ``interrupted:`` line
    and exits 130 (143)."""
    from recbole_hnlm.benchmark.__main__ import INTERRUPTED
    from recbole_hnlm.signals import run_interruptible

    return run_interruptible(lambda: _main(argv, prog), INTERRUPTED)


def _main(argv, prog) -> int:
    from recbole_hnlm.benchmark.__main__ import fail, parse_command_line

    args, status = parse_command_line(lambda items: _parse_args(items, prog), argv)
    if args is None:
        return status
    try:
        search = run_search(args.dataset, args.model, args.sampler, args.seeds, args.params_file, args.out,
                            algo=args.algo, max_evals=args.max_evals, search_seed=args.search_seed,
                            config_dict=args.config, config_file_list=args.config_files,
                            progress=not args.no_progress)
    except (SettingsMismatch, ValueError, FileNotFoundError, WriteError) as error:  # ConfigError: a ValueError
        return fail(error)
    order = ranked(search["trials"])
    if order:
        best = order[0]
        print(f"best: {_values(best['values'])} "
              f"(valid {best['valid_metric']} {_cell(best['valid'])}, test ndcg@20 "
              f"{_cell(best['test'].get('ndcg@20'))})")
    print(f"report: {os.path.join(args.out, 'search.md')}")
    failed = [t for t in search["trials"] if t["status"] == "failed"]
    if failed:
        errors = [e for t in failed for e in t["errors"]]
        print(f"error: {len(failed)} trial(s) failed; see {', '.join(errors)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
