"""The grid: backbones x samplers x seeds (x training ratios for the sparsity analysis), resumable.

Layout of the output folder ``out``::

    out/grid.json                    the last invocation: dataset, lists, shared settings (and the sha256 of the
                                     ``init_from`` checkpoint, when there is one), environment
    out/runs/<cell>.json             one result per finished cell (runner.run_cell), written atomically
    out/runs/<cell>.error.txt        traceback of a failed cell (removed when the cell later succeeds)
    out/logs/<cell>.log              RecBole's log of the cell
    out/checkpoints/<cell>/          the cell's best checkpoint (safetensors)

A cell is *finished* when ``runs/<cell>.json`` exists, was produced with the same dataset and shared settings, and
holds every analysis asked for now; finished cells are skipped, so an interrupted grid resumes where it stopped. A
finished cell whose settings differ from the current ones (or whose ``init_from`` checkpoint has other content now)
stops the grid before anything runs (mixing them would corrupt the table): use another ``out`` folder. So does a cell
that cannot start (unknown model or sampler, invalid sampler setting, missing dataset files: ``runner.check_cell``),
before anything is written. A cell failing while it runs is recorded and the grid goes on.
"""
import json
import logging
import os
import traceback
from itertools import product

from tqdm import tqdm

from recbole_hnlm.benchmark.runner import CELL_ANALYSES, Cell, check_cell, environment, run_cell
from recbole_hnlm.files import file_sha256, write_json_atomic

#: Training ratios of the sparsity analysis (1.0 is the main cell).
SPARSITY_RATIOS = (0.2, 0.4, 0.6, 0.8)
ANALYSES = CELL_ANALYSES + ("sparsity",)


class SettingsMismatch(RuntimeError):
    """A finished cell in the output folder was produced with other settings."""


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
    """The stored result at ``path``, or ``None`` when it is missing or unreadable (then the cell runs again)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _needs_run(result, dataset, settings, cell_analyses, init_from_sha256=None):
    """``False`` when ``result`` is a finished run for these settings; raise :class:`SettingsMismatch` when it was
    produced with other settings, or warm-started from a checkpoint whose content has changed since (results stored
    before the content digest was recorded are compared by path only)."""
    if result is None:
        return True
    if result.get("dataset") != dataset or result.get("settings") != settings:
        raise SettingsMismatch(
            f"{result.get('cell')}: stored with dataset={result.get('dataset')!r} settings={result.get('settings')}, "
            f"now dataset={dataset!r} settings={settings}. Use another --out folder (or delete the old runs).")
    stored_sha256 = result.get("init_from_sha256")
    if stored_sha256 is not None and init_from_sha256 is not None and stored_sha256 != init_from_sha256:
        raise SettingsMismatch(
            f"{result.get('cell')}: warm-started from init_from={settings.get('init_from')!r} with sha256 "
            f"{stored_sha256[:12]}..., but that file now has sha256 {init_from_sha256[:12]}...: the source checkpoint "
            "changed. Use another --out folder (or delete the old runs).")
    return any(name not in result.get("analysis", {}) for name in cell_analyses)


def warning_once():
    """A ``warn(message)`` for cell checkers that logs each distinct message once (cells share their settings)."""
    warned = set()

    def warn(message):
        if message not in warned:
            warned.add(message)
            logging.getLogger().warning(message)

    return warn


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


def pending_cells(out, dataset, cells, settings, cell_analyses=(), init_from_sha256=None):
    """``(todo, finished)``: the cells of ``cells`` still to run, and ``{key: stored result}`` of the finished ones.

    Raises:
        SettingsMismatch: a stored cell was produced with another dataset or other settings (see :func:`_needs_run`).
    """
    todo, finished = [], {}
    for cell in cells:
        stored = load_result(result_path(out, cell))
        if _needs_run(stored, dataset, settings, cell_analyses, init_from_sha256):
            todo.append(cell)
        else:
            finished[cell.key] = stored
    return todo, finished


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
            per (model, sampler) pair still to run, before anything runs or is written, with ``warn`` logging each
            distinct warning once. ``None`` skips the checks.
        **cell_kwargs: passed to ``cell_runner`` (e.g. ``fhn_pairs``).

    Returns:
        dict: ``ran``, ``skipped``, ``failed`` (lists of cell keys), ``errors`` (failed key -> its error file) and
        ``results`` (key -> result of every finished cell of this grid).

    Raises:
        SettingsMismatch: a finished cell in ``out`` was produced with other settings.
        ConfigError, FileNotFoundError: from ``cell_checker``: a bad name or value, missing dataset files.
    """
    analyses = tuple(analyses)
    unknown = [a for a in analyses if a not in ANALYSES]
    if unknown:
        raise ValueError(f"unknown analysis {unknown}; choose from {', '.join(ANALYSES)}")
    cell_analyses = tuple(a for a in analyses if a in CELL_ANALYSES)
    settings = grid_settings(config_dict, config_file_list)
    init_from_sha256 = init_from_sha256_of(settings)
    cells = expand_cells(models, samplers, seeds, analyses, ratios)
    todo, finished = pending_cells(out, dataset, cells, settings, cell_analyses, init_from_sha256)
    summary = {"ran": [], "skipped": list(finished), "failed": [], "errors": {}, "results": dict(finished)}
    if cell_checker is not None:  # a typo or a bad value stops the grid here, not in every cell's error file
        first_of_pair = {}
        for cell in todo:
            first_of_pair.setdefault((cell.model, cell.sampler), cell)
        warn_once = warning_once()  # the pairs share their settings, hence their warnings
        for cell in first_of_pair.values():
            cell_checker(cell, dataset, out, config_dict=dict(config_dict or {}), config_file_list=config_file_list,
                         analyses=cell_analyses, warn=warn_once)
    os.makedirs(os.path.join(out, "runs"), exist_ok=True)
    write_json_atomic(os.path.join(out, "grid.json"), {
        "dataset": dataset, "models": list(models), "samplers": list(samplers), "seeds": [int(s) for s in seeds],
        "analyses": list(analyses), "ratios": list(ratios), "settings": settings, "init_from_sha256": init_from_sha256,
        "environment": environment()})

    logger = logging.getLogger()
    bar = tqdm(todo, desc=f"{dataset} grid", unit="cell", disable=not progress, dynamic_ncols=True)
    if progress and summary["skipped"]:
        bar.write(f"resuming: {len(summary['skipped'])} finished cell(s) skipped, {len(todo)} to run")
    for cell in bar:
        bar.set_postfix_str(cell.key)
        try:
            result = cell_runner(cell, dataset, out, config_dict=dict(config_dict or {}),
                                 config_file_list=config_file_list, analyses=cell_analyses, **cell_kwargs)
            result["settings"] = settings
            if init_from_sha256 is not None:
                result["init_from_sha256"] = init_from_sha256
        except Exception as error:  # record and go on: one broken sampler must not stop the grid
            message = f"{type(error).__name__}: {error}"
            with open(error_path(out, cell), "w") as f:
                f.write(f"{cell.key}\n{message}\n\n{traceback.format_exc()}")
            logger.error(f"benchmark cell {cell.key} failed: {message}")
            if progress:
                bar.write(f"FAILED {cell.key}: {message} (see {error_path(out, cell)})")
            summary["failed"].append(cell.key)
            summary["errors"][cell.key] = error_path(out, cell)
            continue
        write_json_atomic(result_path(out, cell), result)
        if os.path.exists(error_path(out, cell)):
            os.remove(error_path(out, cell))
        summary["ran"].append(cell.key)
        summary["results"][cell.key] = result
    return summary
