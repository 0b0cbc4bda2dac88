"""The grid: backbones x samplers x seeds (x training ratios for the sparsity analysis), resumable.

Layout of the output folder ``out``::

    out/grid.json                    the last invocation: dataset, lists, shared settings (and the sha256 of the
                                     ``init_from`` checkpoint, when there is one), environment, and whether it ran
                                     every cell (``completed``: false while it runs and after an interruption)
    out/runs/<cell>.json             one result per finished cell (runner.run_cell), written atomically
    out/runs/<cell>.error.txt        traceback of a failed cell (removed when the cell later succeeds)
    out/logs/<cell>.log              RecBole's log of the cell
    out/checkpoints/<cell>/          the cell's best checkpoint (safetensors)
    out/locks/<cell>.lock            held by the process running the cell (kept afterwards, like every lock file)

A cell is *finished* when ``runs/<cell>.json`` exists, was produced with the same dataset and shared settings, and
holds every analysis asked for now; finished cells are skipped, so an interrupted grid resumes where it stopped. A
stored cell of a (backbone, sampler) row this command runs whose settings differ from the current ones (or whose
``init_from`` checkpoint or ``config_files`` have other content now, or whose FHN rate used another ``fhn_pairs``)
stops the grid before anything runs, and so does one that ran with other defaults of the plugin's property files (a
newer recbole_hnlm): a table row must average runs of one configuration. Use another ``out`` folder.
Settings that only change what a run prints (:data:`PRESENTATION_KEYS`) are not compared. So does a cell that cannot
start (unknown model or sampler, invalid sampler setting, missing dataset files: ``runner.check_cell``), before
anything is written. A cell failing while it runs is recorded and the grid goes on. Model and sampler names are
spelled as their classes (``--models mf`` runs ``MF``), so one cell never has two files.
HNLMRec cells to run that join a row whose stored HNLMRec results lack ``init_rule`` (:data:`INIT_RULE`) are warned
about: results without it may predate commit 0d96dcd, whose HNLMRec runs started from other initial weights.

Two processes may run the same grid on one ``out`` (e.g. on two machines or GPUs sharing the folder): each cell is run
by the process that takes its lock first. A cell another process is running is put off; after its own cells, the
grid waits for those, then skips each one the other process finished and runs any it left unfinished. A cell whose
files another process is writing (HNLMRec's LLM artifacts, which the cells of one split share) is put off likewise,
then tried every :data:`BUSY_RETRY_SECONDS` until they are free.
"""
import json
import logging
import os
import sys
import time
import traceback
from contextlib import ExitStack
from itertools import product

from tqdm import tqdm

from recbole_hnlm.benchmark.runner import CELL_ANALYSES, Cell, check_cell, environment, result_problem, run_cell
from recbole_hnlm.config import read_config_files
from recbole_hnlm.config_checks import foreign_option_messages, run_never_reads
from recbole_hnlm.data_checks import checks_remembered
from recbole_hnlm.errors import ConcurrentWriterError, ConfigError, WriteError
from recbole_hnlm.files import (exclusive_lock, file_sha256, unguarded_write_failure, write_json_atomic,
                                write_text_atomic)
from recbole_hnlm.resume import NOT_TRAINING_OPTIONS

#: Training ratios of the sparsity analysis (1.0 is the main cell).
SPARSITY_RATIOS = (0.2, 0.4, 0.6, 0.8)
ANALYSES = CELL_ANALYSES + ("sparsity",)


#: Settings that change what a run prints, not what it computes: not compared on resume.
PRESENTATION_KEYS = ("state", "show_progress")
#: Property-file defaults changed before results stored theirs (key, old value, whether it applied to a result).
LEGACY_DEFAULTS = (
    ("hnlm_adapter_reg_weight", 1e-4, lambda result, dataset: result.get("sampler") == "HNLMRec"),  # session 21
    ("hnlm_lambda", 1e-4, lambda result, dataset: result.get("sampler") == "HNLMRec" and dataset == "amazon-toys"),
)
#: Defaults not compared on resume: options that do not change what a cell computes (where files go, what is shown;
#: the resume check's list, but ``epochs`` sets a cell's result) and those each cell sets itself.
_UNCOMPARED_DEFAULTS = (NOT_TRAINING_OPTIONS - {"epochs"}) | set(PRESENTATION_KEYS) | {"sampler", "seed"}
#: Stored in every result (``init_rule``): each cell's sampler is built under a forked random stream, so every
#: sampler's run of a seed starts from the same backbone weights (since commit 0d96dcd, 2026-12-06). An HNLMRec result
#: without it may be older: its adapter was drawn from the seeded stream first, so its backbone started elsewhere.
INIT_RULE = "sampler built under a forked random stream (0d96dcd)"
#: Digests of the files a grid's settings name, stored in every result and compared on resume.
SOURCE_DIGESTS = {"init_from_sha256": "checkpoint", "config_files_sha256": "config files"}


class SettingsMismatch(RuntimeError):
    """A finished cell in the output folder was produced with other settings."""


def canonical_names(models, samplers):
    """``(models, samplers)`` spelled as their classes (``mf`` -> ``MF``, ``mixgcf`` -> ``MixGCF``); a name that
    is neither is kept as given, for the cell checker to report."""
    from recbole_hnlm.utils import get_model, get_sampler

    def canonical(name, lookup, spelling):
        try:
            return spelling(lookup(name))
        except ValueError:  # ConfigError: unknown name
            return name

    return ([canonical(m, get_model, lambda c: c.__name__) for m in models],
            [canonical(s, get_sampler, lambda c: c.name) for s in samplers])


def expand_cells(models, samplers, seeds, analyses=(), ratios=SPARSITY_RATIOS):
    """The cells of a grid, backbone-major: every (model, sampler, seed), then, with ``sparsity``, the same with each
    training ratio in ``ratios``."""
    cells = [Cell(m, s, int(seed)) for m, s, seed in product(models, samplers, seeds)]
    if "sparsity" in analyses:
        cells += [Cell(m, s, int(seed), float(r)) for r in ratios for m, s, seed in product(models, samplers, seeds)]
    return cells


def result_path(out, cell):
    return os.path.join(out, "runs", f"{cell.key}.json")


def error_path(out, cell):
    return os.path.join(out, "runs", f"{cell.key}.error.txt")


def load_result(path):
    """The stored result at ``path``, or ``None`` when it is missing or unreadable, including a JSON file that is not
    a finished run (:func:`~.runner.result_problem`): then the cell runs again."""
    return _read_result(path)[0]


def _read_result(path):
    """``(result, None)``; ``(None, None)`` when ``path`` is missing; ``(None, why)`` when it cannot be read."""
    if not os.path.lexists(path):
        return None, None
    try:
        with open(path) as f:
            result = json.load(f)
    except (OSError, ValueError) as error:
        return None, f"{type(error).__name__}: {error}"
    problem = result_problem(result)
    return (None, problem) if problem else (result, None)


def _comparable(settings):
    return {k: v for k, v in (settings or {}).items() if k not in PRESENTATION_KEYS}


class _DefaultsNow:
    """The plugin defaults stored results are compared with, for one check of a folder: the keys this grid fixes
    itself (its settings, its config files, options that do not change what a cell computes) and each row's
    property-file defaults, each read once."""

    def __init__(self, dataset, settings):
        self.dataset = dataset
        self.fixed = set(settings) | set(read_config_files(settings.get("config_files") or [])) | _UNCOMPARED_DEFAULTS
        self._rows = {}

    def of(self, model, sampler):
        if (model, sampler) not in self._rows:
            self._rows[model, sampler] = plugin_defaults(model, sampler, self.dataset)
        return self._rows[model, sampler]


def _differences(stored, now):
    """``key: stored -> now`` for each key whose value differs between two settings dicts, sorted by key."""
    unset = object()
    return [f"{key}: {'unset' if stored.get(key, unset) is unset else repr(stored[key])} -> "
            f"{'unset' if now.get(key, unset) is unset else repr(now[key])}"
            for key in sorted(set(stored) | set(now)) if stored.get(key, unset) != now.get(key, unset)]


def _legacy_settings(result, dataset, settings, defaults_now):
    """The stored settings of ``result``, comparable with ``settings``. A result written before the defaults were
    stored ran with the old value of each :data:`LEGACY_DEFAULTS` key where it applied, and never read the key where
    its row has no such option: a command giving that old value explicitly (as docs/results.md's commands do) asks
    for what it ran with."""
    stored = _comparable(result.get("settings"))
    if result.get("defaults") is not None:
        return stored
    read_by_row = defaults_now.of(result.get("model"), result.get("sampler"))
    for key, old, applies in LEGACY_DEFAULTS:
        if key not in stored and key in settings and settings[key] == old and (
                applies(result, dataset) or key not in read_by_row):
            stored[key] = settings[key]
    return stored


def _needs_run(result, dataset, settings, cell_analyses, digests=None, fhn_pairs=None, defaults_now=None):
    """``False`` when ``result`` is a finished run for these settings; raise :class:`SettingsMismatch` when it was
    produced with other settings (:data:`PRESENTATION_KEYS` aside), from files that have other content now
    (``digests``: :func:`source_digests`; results stored before a digest was recorded are compared by path only),
    on dataset files whose content changed since (its ``data_files_sha256``, read again where the settings' data_path
    now points: a relative one from this working folder; a file no longer there is not compared),
    with other property-file defaults than ``defaults_now`` (a :class:`_DefaultsNow`) gives, or measured its FHN rate
    on another number of pairs than ``fhn_pairs``."""
    if result is None:
        return True
    defaults_now = defaults_now or _DefaultsNow(dataset, settings)
    differing = _differences(_legacy_settings(result, dataset, settings, defaults_now), _comparable(settings))
    if result.get("dataset") != dataset:
        differing.insert(0, f"dataset: {result.get('dataset')!r} -> {dataset!r}")
    if differing:
        raise SettingsMismatch(
            f"{result.get('cell')}: stored with other settings than now ({'; '.join(differing)}; stored -> now, "
            "'unset' where a side does not set it). Use another --out folder (or delete the old runs).")
    for key, now in (digests or {}).items():
        stored = result.get(key)
        if stored is not None and now is not None and stored != now:
            what = SOURCE_DIGESTS[key]
            raise SettingsMismatch(
                f"{result.get('cell')}: ran with the {what} {_named_files(key, settings)} of sha256 {_short(stored)}, "
                f"but they now have sha256 {_short(now)}: the source {what} changed. Use another --out folder (or "
                "delete the old runs).")
    for path, stored in (result.get("data_files_sha256") or {}).items():  # absent in results before 2026-12-06
        now = _dataset_file_sha256(path)
        if now is not None and now != stored:
            raise SettingsMismatch(
                f"{result.get('cell')}: ran on the dataset file {path} of sha256 {_short(stored)}, but it now has "
                f"sha256 {_short(now)}: the dataset changed since (edited, re-imported or split again), and a table "
                "row must not average runs of both. Use another --out folder (or delete the old runs).")
    stored_defaults = result.get("defaults")
    now = defaults_now.of(result.get("model"), result.get("sampler"))
    if stored_defaults is None:  # results written before the defaults were stored: the changes known since
        stored_defaults = {key: old for key, old, applies in LEGACY_DEFAULTS if applies(result, dataset)}
        now = {key: now.get(key) for key in stored_defaults}
    if stored_defaults or now:
        changed = [f"{key}: {stored_defaults.get(key)!r} -> {now.get(key)!r}" for key in sorted(set(stored_defaults)
                   | set(now)) if stored_defaults.get(key) != now.get(key) and key not in defaults_now.fixed]
        if changed:
            raise SettingsMismatch(
                f"{result.get('cell')}: ran with other defaults of the plugin's property files ({'; '.join(changed)}): "
                "recbole_hnlm was updated since. Use another --out folder (or delete the old runs).")
    if float(result.get("train_ratio", 1.0)) < 1.0 and (result.get("split") or {}).get("train_negatives") != \
            "subsample":
        raise SettingsMismatch(
            f"{result.get('cell')}: a sparsity cell of an earlier recbole_hnlm, whose RNS and HNLMRec negatives "
            "never picked the training items its subsample dropped (fixed 2026-12-05). Delete its runs/"
            f"{result.get('cell')}.json (and the other sparsity cells' files) to run them again, or use another "
            "--out folder.")
    requested = result.get("analysis", {}).get("fhn", {}).get("requested_pairs")  # absent in older results
    if requested is not None and fhn_pairs is not None and "fhn" in cell_analyses and requested != fhn_pairs:
        raise SettingsMismatch(
            f"{result.get('cell')}: its FHN rate was measured with --fhn-pairs {requested}, now --fhn-pairs "
            f"{fhn_pairs}. Use another --out folder (or delete the old runs).")
    return any(name not in result.get("analysis", {}) for name in cell_analyses)


def plugin_defaults(model, sampler, dataset):
    """The values the plugin's property files give a cell of ``model`` + ``sampler`` on ``dataset`` (overall, model,
    sampler and dataset yaml, in ``Config``'s order), as JSON holds them: stored with every result, so that a grid
    resumed after a default changed (a newer recbole_hnlm) does not average both in one row."""
    from recbole_hnlm.config import PROPERTIES_DIR  # read at each call (tests point it elsewhere)

    paths = [os.path.join(PROPERTIES_DIR, "overall.yaml")] + [
        os.path.join(PROPERTIES_DIR, kind, f"{name}.yaml") for kind, name in
        (("model", model), ("sampler", sampler), ("dataset", dataset))]
    return json.loads(json.dumps(read_config_files([p for p in paths if os.path.isfile(p)]), default=str))


def _short(digest):
    return ", ".join(d[:12] + "..." for d in ([digest] if isinstance(digest, str) else digest))


_DATASET_FILE_DIGESTS = {}


def _dataset_file_sha256(path):
    """The sha256 of a dataset file now (``None`` when it is gone), read once per file and state: a grid compares
    every stored result of its rows with the same few files. The key is the file the path names now (a relative
    path from the current working folder, which a process may change between two grids) and its size, modification
    and status-change times (a copy that kept the old modification time still has a new ctime)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    key = (os.path.realpath(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if key not in _DATASET_FILE_DIGESTS:
        _DATASET_FILE_DIGESTS[key] = file_sha256(path)
    return _DATASET_FILE_DIGESTS[key]


def _named_files(key, settings):
    return settings.get("init_from") if key == "init_from_sha256" else ", ".join(settings.get("config_files", []))


def warning_once():
    """A ``warn(message)`` for cell checkers that logs each distinct message once (cells share their settings)."""
    warned = set()

    def warn(message):
        if message not in warned:
            warned.add(message)
            logging.getLogger().warning(message)

    return warn


def check_out_folder(out):
    """Raise :class:`ConfigError` when ``--out`` names a file (a missing folder is created later)."""
    if os.path.lexists(out) and not os.path.isdir(out):  # lexists: a dangling link was tune's FileExistsError
        raise ConfigError(f"--out {out}: a file is there (or a broken link); give a folder (it is created when "
                          "missing)")


def check_one_split_for_llm_artifacts(cells, config_dict=None, config_file_list=None):
    """Refuse, before any cell runs, HNLMRec cells of several seeds whose random splits follow the seed (no
    ``split_seed``, no pre-split files, no split in time order): each seed would split the data its own way, while
    HNLMRec's LLM artifacts (the teacher, adapter and store in the dataset's artifact folder) serve one training
    split, so every seed but the first failed (the teacher of another split). The sparsity analysis's subsampled
    cells are other training splits too: each builds its own artifacts (``runner.use_own_llm_artifacts``)."""
    from recbole_hnlm.config import read_config_files

    seeds = sorted({cell.seed for cell in cells if cell.sampler == "HNLMRec"})
    if len(seeds) < 2:
        return
    options = {**read_config_files(config_file_list), **(config_dict or {})}
    eval_args = options.get("eval_args")
    if (options.get("split_seed") is not None or options.get("benchmark_filename")
            or (isinstance(eval_args, dict) and eval_args.get("order") == "TO")):
        return  # one split for every seed: given, pre-split files, or a split in time order
    raise ConfigError(
        f"--samplers HNLMRec with --seeds {' '.join(map(str, seeds))}: without --split_seed each seed splits the data "
        "its own way, but HNLMRec's LLM artifacts (teacher, adapter, store) serve one training split. Give "
        f"--split_seed={seeds[0]}: one split for every cell, each seed still its own initialisation and sampling "
        "(as docs/results.md's grids).")


def grid_settings(config_dict=None, config_file_list=None):
    """The shared settings of a grid as its results store them: ``config_dict`` plus ``config_files``, as they read
    back from JSON (tuples become lists)."""
    settings = dict(config_dict or {})
    if config_file_list:
        settings["config_files"] = list(config_file_list)
    return json.loads(json.dumps(settings))


def init_from_sha256_of(settings):
    """The sha256 of the ``init_from`` checkpoint named in ``settings``; ``None`` when there is none (or no file)."""
    init_from = settings.get("init_from")  # a missing file is left to the cell checker's error
    return file_sha256(init_from) if isinstance(init_from, str) and os.path.isfile(init_from) else None


def recorded_device(settings):
    """``"cpu"`` where ``use_gpu`` is off in the grid's settings or, below them, its config files; else ``None``
    (the GPU when there is one): the device ``grid.json``'s environment describes."""
    merged = {**read_config_files([p for p in settings.get("config_files") or [] if os.path.isfile(p)]), **settings}
    return None if merged.get("use_gpu", True) else "cpu"


def source_digests(settings):
    """``{key: digest}`` of the files ``settings`` names (:data:`SOURCE_DIGESTS`; ``None`` where there is none):
    the ``init_from`` checkpoint's sha256 and the list of the ``config_files``' sha256."""
    config_files = settings.get("config_files") or []
    readable = all(os.path.isfile(path) for path in config_files)  # a missing file is left to the checks' error
    return {"init_from_sha256": init_from_sha256_of(settings),
            "config_files_sha256": [file_sha256(path) for path in config_files] if config_files and readable else None}


def _stored_row_results(out, pairs, skip=()):
    """The stored results in ``out/runs`` whose (model, sampler) is in ``pairs``, any seed or training ratio, except
    the cells ``skip`` names (already read)."""
    found = []
    for name in sorted(os.listdir(os.path.join(out, "runs"))) if os.path.isdir(os.path.join(out, "runs")) else ():
        if name.endswith(".json") and name[:-len(".json")] not in skip:
            result = load_result(os.path.join(out, "runs", name))
            if result is not None and (result.get("model"), result.get("sampler")) in pairs:
                found.append(result)
    return found


def pending_cells(out, dataset, cells, settings, cell_analyses=(), digests=None, fhn_pairs=None, say_unreadable=True):
    """``(todo, finished)``: the cells of ``cells`` still to run, and ``{key: stored result}`` of the finished ones.
    Every stored result of the same (model, sampler) rows, other seeds and training ratios included, must have been
    produced with these settings: a row of the table averages them. A result file that cannot be read is warned about
    (``say_unreadable``, which also gates :func:`_warn_about_older_initialisation`), and its cell is to run.

    Raises:
        SettingsMismatch: a stored cell was produced with another dataset or other settings (see :func:`_needs_run`).
    """
    todo, finished = [], {}
    defaults_now = _DefaultsNow(dataset, settings)
    stored_rows = []
    for cell in cells:
        path = result_path(out, cell)
        stored, problem = _read_result(path)
        if problem and say_unreadable:  # a cut or edited file: said, as the report says it (it ran without a word)
            logging.getLogger().warning(f"{path} is not a readable result ({problem}): cell {cell.key} runs again")
        if _needs_run(stored, dataset, settings, cell_analyses, digests, fhn_pairs, defaults_now):
            todo.append(cell)
        else:
            finished[cell.key] = stored
        if stored is not None:
            stored_rows.append(stored)
    rows, keys = {(cell.model, cell.sampler) for cell in cells}, {cell.key for cell in cells}
    for stored in _stored_row_results(out, rows, skip=keys):  # the rows' other seeds and training ratios
        _needs_run(stored, dataset, settings, cell_analyses, digests, fhn_pairs, defaults_now)  # checked, not run
        stored_rows.append(stored)
    if say_unreadable:  # a search checks its trials first and says this when the trial runs, as for unreadable files
        _warn_about_older_initialisation(todo, stored_rows)
    return todo, finished


def _warn_about_older_initialisation(todo, stored_rows):
    """Warn when HNLMRec cells to run join a row whose stored results lack ``init_rule`` (:data:`INIT_RULE`): those
    may come from before commit 0d96dcd, whose HNLMRec runs started from other backbone weights, and the row would
    average (and its paired tests pair) runs of both initialisations without a word."""
    models, rerun = {cell.model for cell in todo if cell.sampler == "HNLMRec"}, {cell.key for cell in todo}
    older = sorted({str(result.get("cell")) for result in stored_rows if result.get("sampler") == "HNLMRec"
                    and result.get("model") in models and result.get("cell") not in rerun
                    and result.get("init_rule") is None})
    if older:
        logging.getLogger().warning(
            f"{', '.join(older)}: stored without a record of how the run's initial weights were drawn, so possibly "
            "written before commit 0d96dcd (2026-12-06). Before it an HNLMRec run started from other backbone "
            "weights than the other samplers' runs of its seed; the HNLMRec cells this grid runs now start from the "
            "same weights as those runs, so the row would average (and its paired tests pair) runs of both kinds. "
            "If these results are that old, delete their runs/<cell>.json files to run them again, or use another "
            "--out folder.")


def cell_lock_path(out, cell) -> str:
    """The lock file held by the process running ``cell`` (``out/locks/<cell>.lock``)."""
    return os.path.join(out, "locks", f"{cell.key}.lock")


def _cell_lock(out, cell, wait):
    """The held lock of ``cell`` as a context manager, or ``None`` when another process holds it (``wait=False``)."""
    stack = ExitStack()
    try:
        stack.enter_context(exclusive_lock(cell_lock_path(out, cell), f"the grid cell {cell.key}", wait=wait))
    except ConcurrentWriterError:
        return None
    return stack


#: Seconds between two tries of a cell whose LLM artifacts another process is writing.
BUSY_RETRY_SECONDS = 30


def run_grid(dataset, models, samplers, seeds, out, config_dict=None, config_file_list=None, analyses=(),
             ratios=SPARSITY_RATIOS, progress=True, cell_runner=run_cell, cell_checker=check_cell, **cell_kwargs):
    """Run every unfinished cell of the grid and store one JSON file per cell.

    Args:
        dataset (str): RecBole dataset name.
        models, samplers (list of str): backbones and samplers.
        seeds (list of int): seeds; the same seed gives every backbone and sampler the same split.
        out (str): output folder (see the module docstring).
        config_dict (dict, optional): settings shared by every cell (``epochs``, ``data_path``, ...); part of each
            result's ``settings`` and checked on resume.
        config_file_list (list of str, optional): yaml files shared by every cell.
        analyses (iterable of str): any of ``popularity``, ``fhn``, ``sparsity``.
        ratios (tuple of float): training ratios of the sparsity cells.
        progress (bool): show a tqdm bar over the cells.
        cell_runner (callable): runs one cell (``runner.run_cell``; replaceable in tests).
        cell_checker (callable, optional): validates one cell without training (``runner.check_cell``); called once
            per (model, sampler) pair still to run, and once more for its sparsity cells, before anything runs or is
            written, with ``warn`` logging each distinct warning once. ``None`` skips the checks.
        **cell_kwargs: passed to ``cell_runner`` (e.g. ``fhn_pairs``).

    Returns:
        dict: ``ran``, ``skipped``, ``failed`` (lists of cell keys), ``errors`` (failed key -> its error file) and
        ``results`` (key -> result of every finished cell of this grid).

    Raises:
        SettingsMismatch: a stored cell of a row in ``out`` was produced with other settings.
        ConfigError, FileNotFoundError: ``out`` is a file or cannot be created; from ``cell_checker``: a bad name or
            value, missing dataset files.
    """
    analyses = tuple(analyses)
    unknown = [a for a in analyses if a not in ANALYSES]
    if unknown:
        raise ValueError(f"unknown analysis {unknown}; choose from {', '.join(ANALYSES)}")
    cell_analyses = tuple(a for a in analyses if a in CELL_ANALYSES)
    check_out_folder(out)
    settings = grid_settings(config_dict, config_file_list)
    digests = source_digests(settings)
    models, samplers = canonical_names(models, samplers)
    cells = expand_cells(models, samplers, seeds, analyses, ratios)
    todo, finished = pending_cells(out, dataset, cells, settings, cell_analyses, digests,
                                   cell_kwargs.get("fhn_pairs", 2048) if "fhn" in cell_analyses else None)
    summary = {"ran": [], "skipped": list(finished), "failed": [], "errors": {}, "results": dict(finished)}
    if cell_checker is not None:  # a typo or a bad value stops the grid here, not in every cell's error file
        check_one_split_for_llm_artifacts(cells, config_dict, config_file_list)
        first_of_pair = {}
        for cell in todo:  # a sparsity cell is checked too: HNLMRec's are refused what its main cell accepts
            first_of_pair.setdefault((cell.model, cell.sampler, cell.train_ratio < 1.0), cell)
        warn_once = warning_once()  # the pairs share their settings, hence their warnings
        unread = None  # options of other backbones or samplers that no cell to run reads
        with checks_remembered():  # the pairs read the same files
            for cell in first_of_pair.values():
                foreign = cell_checker(cell, dataset, out, config_dict=dict(config_dict or {}),
                                       config_file_list=config_file_list, analyses=cell_analyses, warn=warn_once)
                foreign = dict(foreign or ())
                unread = foreign if unread is None else {key: unread[key] for key in unread if key in foreign}
        pairs = sorted({(model, sampler) for model, sampler, _ in first_of_pair})
        never_read_by = (run_never_reads(*pairs[0]) if len(pairs) == 1 else
                         f"none of this grid's {len(pairs)} model-sampler pairs to run reads")
        for message in foreign_option_messages(list((unread or {}).items()), never_read_by):
            warn_once(message)
    try:
        os.makedirs(os.path.join(out, "runs"), exist_ok=True)
    except OSError as error:
        raise ConfigError(f"--out {out}: cannot create the folder ({error.strerror})") from None
    record = {
        "dataset": dataset, "models": list(models), "samplers": list(samplers), "seeds": [int(s) for s in seeds],
        "analyses": list(analyses), "ratios": list(ratios), "settings": settings, **digests,
        "environment": environment(recorded_device(settings))}
    write_json_atomic(os.path.join(out, "grid.json"), {**record, "completed": False})  # true once every cell ran

    fhn_pairs = cell_kwargs.get("fhn_pairs", 2048) if "fhn" in cell_analyses else None

    def run_claimed(cell):
        """Run ``cell`` under its lock and store its result, or record its error and go on; skipped when a process
        that held the lock before finished it meanwhile. Returns the :class:`ConcurrentWriterError` of a cell whose
        files another process is writing (HNLMRec's LLM artifacts, shared by the cells of one split), which is not a
        failure: it is retried later; else None."""
        stored = load_result(result_path(out, cell))
        if stored is not None and not _needs_run(stored, dataset, settings, cell_analyses, digests, fhn_pairs):
            summary["skipped"].append(cell.key)
            summary["results"][cell.key] = stored
            return None
        try:
            result = cell_runner(cell, dataset, out, config_dict=dict(config_dict or {}),
                                 config_file_list=config_file_list, analyses=cell_analyses, **cell_kwargs)
            result["settings"] = settings
            result["defaults"] = plugin_defaults(cell.model, cell.sampler, dataset)
            result["init_rule"] = INIT_RULE
            result.update({key: digest for key, digest in digests.items() if digest is not None})
        except ConcurrentWriterError as busy:
            return busy
        except WriteError:  # a full disk fails every later cell too, after its training: stop the grid (exit 1)
            raise
        except Exception as error:  # record and go on: one broken sampler must not stop the grid
            failure = unguarded_write_failure(error, f"a file of cell {cell.key}")  # RecBole's tensorboard events
            if failure is not None:  # on a full disk: every later cell would fail alike
                raise failure from error
            message = f"{type(error).__name__}: {error}"
            write_text_atomic(error_path(out, cell), f"{cell.key}\n{message}\n\n{traceback.format_exc()}")
            logging.getLogger().error(f"benchmark cell {cell.key} failed: {message}")
            if progress:
                bar.write(f"FAILED {cell.key}: {message} (see {error_path(out, cell)})")
            summary["failed"].append(cell.key)
            summary["errors"][cell.key] = error_path(out, cell)
            return None
        write_json_atomic(result_path(out, cell), result)
        if os.path.exists(error_path(out, cell)):
            os.remove(error_path(out, cell))
        summary["ran"].append(cell.key)
        summary["results"][cell.key] = result
        return None

    bar = tqdm(todo, desc=f"{dataset} grid", unit="cell", disable=not progress, dynamic_ncols=True)
    if progress and summary["skipped"]:
        bar.write(f"resuming: {len(summary['skipped'])} finished cell(s) skipped, {len(todo)} to run")
    put_off = []  # cells another process was running when their turn came
    for cell in bar:
        bar.set_postfix_str(cell.key)
        lock = _cell_lock(out, cell, wait=False)
        if lock is None:
            tqdm.write(f"{cell.key}: another process is running it (its pid is in {cell_lock_path(out, cell)}); "
                       "put off until this grid's other cells are done", file=sys.stderr)
            put_off.append(cell)
            continue
        with lock:
            busy = run_claimed(cell)
        if busy is not None:
            tqdm.write(f"{cell.key}: put off until this grid's other cells are done: {busy}", file=sys.stderr)
            put_off.append(cell)
    for cell in put_off:  # each waited for, then run unless the other process finished it
        tqdm.write(f"{cell.key}: waiting for the other process", file=sys.stderr)
        while True:
            with _cell_lock(out, cell, wait=True):
                busy = run_claimed(cell)
            if busy is None:
                break
            time.sleep(BUSY_RETRY_SECONDS)  # its LLM artifacts are still being written: no lock to wait on here
    write_json_atomic(os.path.join(out, "grid.json"), {**record, "completed": True})
    return summary
