"""One benchmark cell: train a backbone with a sampler on one seed, record the validation curve and the wall time of
every epoch, test the best checkpoint, and run the requested analyses.

The run follows :func:`recbole_hnlm.quick_start.run_recbole_hnlm` step by step (``init_seed`` before
``create_dataset``, so the same seed gives the same split for every sampler and backbone; the sampler's ``prepare``
before the model; ``init_seed`` again before the model), with two differences:

* the trainer is the plugin's trainer with :class:`RecordingMixin` in front, which records per epoch the training
  wall time, the training loss, the validation result (``ndcg@20`` etc.) and, with the ``fhn`` analysis, the
  false-hard-negative rate (:func:`recbole_hnlm.benchmark.analysis.false_hard_negative_rate`);
* with ``train_ratio < 1`` (the sparsity analysis) each user's training interactions are subsampled after the split
  (:func:`recbole_hnlm.benchmark.analysis.subsample_per_user`); validation, test and the evaluation mask stay those of
  the full split, so every ratio is scored on the same held-out items.

RecBole's ``Config`` reads ``sys.argv``; the harness builds it with ``command_line=False`` so that its own arguments
never leak into a cell (every setting arrives through the config dict). ``split_seed`` (default: the cell's seed)
seeds the split alone: with ``--split_seed=2020`` every seed trains on one split (and HNLMRec's LLM artifacts,
which depend on the training pairs, are computed once), and seeds vary initialisation and sampling only.
"""
import contextlib
import hashlib
import logging
import os
import platform
import shutil
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from recbole_hnlm.benchmark.analysis import POPULARITY_GROUPS

#: Metrics of the paper's tables (RecBole result keys).
METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
#: How error hints spell the grid's model and sampler options (``recbole_hnlm.utils.get_model``).
GRID_OPTIONS = {"model": "--models ", "sampler": "--samplers "}
#: Analyses computed on the trained model of a cell (``sparsity`` adds cells instead, see ``grid.expand_cells``).
CELL_ANALYSES = ("popularity", "fhn")
#: Keys of a stored result (:func:`run_cell`) that the report reads from every run.
REPORTED_KEYS = ("cell", "model", "sampler", "seed", "train_ratio", "dataset", "valid_metric", "best_valid_score",
                 "best_epoch", "test_result", "epochs_run", "mean_epoch_time", "total_time", "split")


def result_problem(result) -> Optional[str]:
    """What keeps ``result`` (a stored result file's JSON) from being a finished run the report can read, else
    ``None``: not an object, a missing key of :data:`REPORTED_KEYS`, or a ``test_result`` / ``split`` that is not
    an object (``split`` with its ``fingerprint``)."""
    if not isinstance(result, dict):
        return "not a JSON object"
    missing = [key for key in REPORTED_KEYS if key not in result]
    if missing:
        return "no " + ", ".join(repr(key) for key in missing)
    if not isinstance(result["test_result"], dict):
        return "'test_result' is not an object"
    if not isinstance(result["split"], dict) or "fingerprint" not in result["split"]:
        return "'split' has no 'fingerprint'"
    return _analysis_problem(result.get("analysis", {}))


def _analysis_problem(analysis) -> Optional[str]:
    """What keeps a result's ``analysis`` from being read by the report: the fhn section needs its rate and
    threshold, the popularity section every group with the metrics the report prints."""
    if not isinstance(analysis, dict):
        return "'analysis' is not an object"
    fhn = analysis.get("fhn")
    if fhn and (not isinstance(fhn, dict) or not {"rate", "threshold"} <= set(fhn)):
        return "'analysis.fhn' needs 'rate' and 'threshold'"
    popularity = analysis.get("popularity")
    if popularity:
        for group in ("All",) + POPULARITY_GROUPS:
            values = popularity.get(group) if isinstance(popularity, dict) else None
            if not isinstance(values, dict) or not {"recall@20", "ndcg@20", "n_items", "n_test"} <= set(values):
                return (f"'analysis.popularity' has no {group!r} group with 'recall@20', 'ndcg@20', 'n_items' and "
                        "'n_test'")
    return None


@dataclass(frozen=True)
class Cell:
    """One run of the grid.

    Attributes:
        model (str): backbone name (``MF``, ``NGCF``, ``LightGCN``, ``SGL``).
        sampler (str): sampler name (``RNS``, ``DNS``, ``MixGCF``, ``AHNS``, ``HNLMRec``).
        seed (int): RecBole ``seed`` (split, initialisation and sampling).
        train_ratio (float): share of each user's training interactions used for training (1.0 = all).
    """

    model: str
    sampler: str
    seed: int
    train_ratio: float = 1.0

    @property
    def key(self) -> str:
        """File-name stem of the cell, e.g. ``MF-DNS-seed2020`` or ``MF-DNS-seed2020-train40``."""
        key = f"{self.model}-{self.sampler}-seed{self.seed}"
        if self.train_ratio < 1.0:
            key += f"-train{int(round(self.train_ratio * 100)):02d}"
        return key


def make_config(model, dataset, config_dict, config_file_list=None):
    """The plugin's ``Config`` for one cell, built from ``config_dict`` only (no command line)."""
    from recbole_hnlm.config import Config

    return Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict,
                  command_line=False)


#: The options naming HNLMRec's LLM artifacts; each serves the one training split it was built on.
LLM_ARTIFACT_OPTIONS = ("hnlm_file", "hnlm_teacher_path", "hnlm_adapter_path", "hnlm_store_path")


def use_own_llm_artifacts(config, cell):
    """Give an HNLMRec sparsity cell (``train_ratio < 1``) LLM artifacts of its own: its training split is a per-user
    subsample drawn with the cell's seed, while the dataset's default teacher, adapter and store serve the full
    split (the teacher of another split is refused). The cell's defaults are those of the dataset's artifact folder
    with ``.train<NN>-seed<S>`` after the dataset name (e.g. ``ml-100k.train40-seed2020.hnlm-teacher.safetensors``),
    and ``-split<T>`` after it where the split's seed ``split_seed`` is not the cell's seed (the subsample of another
    split is another training set), so each subsample trains its teacher, fine-tunes its adapter and embeds its
    store once, and a rerun reuses them.

    Raises:
        ConfigError: the settings name one of :data:`LLM_ARTIFACT_OPTIONS` (one split's artifacts for every cell).
    """
    if cell.sampler != "HNLMRec" or cell.train_ratio >= 1.0:
        return
    from recbole_hnlm.config import split_seed
    from recbole_hnlm.errors import ConfigError
    from recbole_hnlm.llm.config import LLMConfig
    from recbole_hnlm.llm.finetune_pipeline import default_adapter_path
    from recbole_hnlm.llm.pipeline import root_data_path
    from recbole_hnlm.llm.store import default_store_path
    from recbole_hnlm.llm.teacher import default_teacher_path

    named = [key for key in LLM_ARTIFACT_OPTIONS if config[key] is not None]
    if named:
        raise ConfigError(
            f"--analysis sparsity with --samplers HNLMRec: {', '.join(named)} names the LLM artifacts of one training "
            "split, but each sparsity cell trains on its own subsample (and HNLMRec's teacher, adapter and store "
            "must come from that subsample's pairs). Leave it unset: the grid gives each sparsity cell its own "
            "files next to the dataset's (<dataset>.train<NN>-seed<S>.hnlm-*).")
    dataset, root = config["dataset"], root_data_path(config, config["dataset"])
    split = split_seed(config)
    tag = f"{dataset}.train{int(round(cell.train_ratio * 100)):02d}-seed{cell.seed}" + (
        f"-split{split}" if split != cell.seed else "")
    defaults = {"hnlm_teacher_path": default_teacher_path(root, dataset),
                "hnlm_adapter_path": default_adapter_path(root, dataset),
                "hnlm_store_path": default_store_path(root, dataset, LLMConfig.from_config(config).variant)}
    for key, path in defaults.items():
        folder, name = os.path.split(path)
        config[key] = os.path.join(folder, tag + name[len(dataset):])


def cell_config_dict(cell, out_dir, config_dict=None):
    """The config dict of one cell: the shared settings plus the cell's sampler, seed and checkpoint folder. Cells
    write no per-epoch resume state (the grid resumes per finished cell, and the write would count in epoch times)."""
    return {"state": "WARNING", "show_progress": False, **dict(config_dict or {}), "sampler": cell.sampler,
            "seed": cell.seed, "checkpoint_dir": os.path.join(out_dir, "checkpoints", cell.key),
            "save_resume_state": False}


def check_cell(cell: Cell, dataset: str, out_dir: str, config_dict=None, config_file_list=None, analyses=(),
               warn=None, options=GRID_OPTIONS):
    """Validate one cell without loading data or training: the model and sampler names, their pairing and the
    sampler's hyper-parameters (all checked by ``Config``), the dataset's atomic files and what the analyses need.
    Unknown options (likely typos) go to ``warn`` (default: the root logger's ``warning``) before the files are
    checked, so ``--data_pth=...`` is named next to the missing dataset. ``options`` spells the command's model and
    sampler options in the messages (:data:`GRID_OPTIONS`).

    Returns:
        list: ``[(key, owners)]``, the options of other backbones or samplers that this cell never reads
        (``Config.foreign_options``); the grid warns about those that no cell reads.

    Raises:
        ConfigError: an unknown name, an incompatible pair or an invalid value (the message names it, and the
            benchmark's own options: ``--models``, ``--samplers``).
        FileNotFoundError: the dataset's atomic files (or a config file) are missing.
    """
    from recbole_hnlm.config_checks import unknown_option_messages
    from recbole_hnlm.data_checks import check_dataset_files
    from recbole_hnlm.errors import ConfigError
    from recbole_hnlm.utils import check_model_sampler_pair, get_model, get_sampler
    from recbole_hnlm.warm_start import check_init_from

    check_model_sampler_pair(get_model(cell.model, options), get_sampler(cell.sampler), options)
    config = make_config(cell.model, dataset, cell_config_dict(cell, out_dir, config_dict), config_file_list)
    use_own_llm_artifacts(config, cell)
    for message in unknown_option_messages(config.unknown_options) + config.option_warnings:
        (warn or logging.getLogger().warning)(message)
    if config["eval_only"]:
        raise ConfigError("eval_only evaluates one checkpoint with the run script (run_recbole_hnlm.py "
                          "--init_from=<file> --eval_only=True); the cells of a grid train.")
    check_dataset_files(config)
    check_init_from(config)
    if "fhn" in analyses and not hasattr(config.model_class, "hard_negatives"):
        raise ConfigError(f"--analysis fhn needs a recbole_hnlm backbone with hard_negatives; {cell.model} has none.")
    if "popularity" in analyses and not hasattr(config.model_class, "pooled_embeddings"):
        raise ConfigError(f"--analysis popularity needs a recbole_hnlm backbone with pooled_embeddings (it ranks "
                          f"every item by its embedding); {cell.model} has none.")
    return config.foreign_options


@contextlib.contextmanager
def cell_logging(config, log_file: Optional[str]):
    """RecBole-style logging for one cell: INFO and above into ``log_file``; the console shows only records at or
    above the configured ``state`` (default WARNING in the harness), so tqdm's progress bar stays readable. The root
    logger is left with the handlers and levels it had: a console added for the cell is removed again."""
    from recbole.utils.logger import RemoveColorFilter

    from recbole_hnlm.log_output import PLAIN_FORMAT, plain_when_redirected

    root = logging.getLogger()
    level = getattr(logging, str(config["state"] or "INFO").upper(), logging.INFO)
    added_console = None
    if not any(type(h) is logging.StreamHandler for h in root.handlers):
        added_console = logging.StreamHandler()
        added_console.setFormatter(logging.Formatter(PLAIN_FORMAT, "%d %b %H:%M"))
        root.addHandler(added_console)
    plain_when_redirected(root)
    consoles = [h for h in root.handlers if type(h) is logging.StreamHandler]
    console_levels = [h.level for h in consoles]
    for handler in consoles:
        handler.setLevel(level)
    old_level = root.level
    root.setLevel(min(level, logging.INFO))
    handler = None
    if log_file:
        os.makedirs(os.path.dirname(log_file), exist_ok=True)
        handler = logging.FileHandler(log_file, mode="w")
        handler.setLevel(logging.INFO)
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT, "%a %d %b %Y %H:%M:%S"))
        handler.addFilter(RemoveColorFilter())
        root.addHandler(handler)
    try:
        yield
    finally:
        if handler is not None:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(old_level)
        for console, console_level in zip(consoles, console_levels):
            console.setLevel(console_level)
        if added_console is not None:  # left behind, it kept the stream of its cell (a closed one, in a notebook)
            root.removeHandler(added_console)


def _best_epoch(trainer, model, config, epochs, saved):
    """The epoch whose weights were tested: the one stored in the best checkpoint; without a checkpoint, the one
    RecBole's early stopping keeps (the later of equal scores; after a negative warm-up, only epochs after it)."""
    from recbole_hnlm.checkpoint import read_trainer_state

    if saved and os.path.isfile(trainer.saved_model_file):
        return read_trainer_state(trainer.saved_model_file).get("epoch")
    scored = [e for e in epochs if "valid_score" in e]
    warm_up = getattr(model, "negative_warmup_epochs", 0)
    scored = [e for e in scored if e["epoch"] >= warm_up] or scored
    best = None
    for entry in scored:
        if best is None or (entry["valid_score"] >= best["valid_score"] if config["valid_metric_bigger"]
                            else entry["valid_score"] <= best["valid_score"]):
            best = entry
    return None if best is None else best["epoch"]


@contextlib.contextmanager
def preserved_rng():
    """Run a probe without changing torch's random streams, so measuring (e.g. the FHN rate every epoch) leaves the
    training trajectory exactly as it is without the measurement."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


class RecordingMixin:
    """Trainer mixin that records, per epoch, the training wall time and loss, and every validation result.

    Attributes:
        epochs_log (list of dict): one entry per trained epoch: ``epoch``, ``train_time`` (s), ``train_loss`` and,
            at validation epochs, ``valid_time`` (s), ``valid_score`` and the metrics (``ndcg@20``, ...); plus
            whatever ``epoch_probe(epoch_idx)`` returned (e.g. ``fhn_rate``).
        epoch_probe (callable, optional): called after every training epoch with the epoch index; returns a dict
            merged into the epoch's entry.
    """

    def __init__(self, config, model):
        super().__init__(config, model)
        self.epochs_log = []
        self.epoch_probe = None

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        start = time.perf_counter()
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        elapsed = time.perf_counter() - start
        total = sum(loss) if isinstance(loss, tuple) else loss
        entry = {"epoch": int(epoch_idx), "train_time": elapsed, "train_loss": float(total)}
        if self.epoch_probe is not None:
            entry.update(self.epoch_probe(epoch_idx))
        self.epochs_log.append(entry)
        return loss

    def _valid_epoch(self, valid_data, show_progress=False):
        start = time.perf_counter()
        score, result = super()._valid_epoch(valid_data, show_progress=show_progress)
        entry = self.epochs_log[-1] if self.epochs_log else {"epoch": -1}
        entry.update({"valid_time": time.perf_counter() - start, "valid_score": float(score)})
        entry.update({key: float(value) for key, value in result.items()})
        return score, result


def make_recording_trainer(trainer_class):
    """``trainer_class`` (a plugin trainer from ``recbole_hnlm.utils.get_trainer``) with :class:`RecordingMixin`."""
    return type(f"Recording{trainer_class.__name__}", (RecordingMixin, trainer_class), {})


def split_fingerprint(train_dataset, valid_dataset, test_dataset):
    """sha1 of the (user, item) pairs of the three splits: equal fingerprints mean an identical split."""
    digest = hashlib.sha1()
    for part in (train_dataset, valid_dataset, test_dataset):
        feat = part.inter_feat
        pairs = torch.stack([feat[part.uid_field].long(), feat[part.iid_field].long()], 1).numpy()
        pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
        digest.update(np.ascontiguousarray(pairs).tobytes())
        digest.update(b"|")
    return digest.hexdigest()


def environment(device=None):
    """Hardware and versions recorded with every result, and whether the ops on ``device`` (default: the GPU when
    there is one) ran the compiled kernels or the PyTorch references."""
    import recbole

    from recbole_hnlm.ops._ext import kernels_in_use

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return {
        "kernels": kernels_in_use(device),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "recbole": recbole.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _pairs(dataset):
    feat = dataset.inter_feat
    return feat[dataset.uid_field].long(), feat[dataset.iid_field].long()


def build_data(config, dataset, train_ratio=1.0, seed=0):
    """Split ``dataset`` as RecBole's ``data_preparation`` does and return ``(train_data, valid_data, test_data,
    full_train_dataset)``; with ``train_ratio < 1`` the training loader holds a per-user subsample of the training
    split, and its sampler knows only the subsample's positives (as in a sparser dataset: an item dropped from a
    user's training interactions may be drawn as their negative), while the evaluation loaders (and their history
    masks) are those of the full split."""
    from recbole.data.utils import create_samplers, get_dataloader

    from recbole_hnlm.benchmark.analysis import subsample_per_user

    from recbole_hnlm.data_checks import dataset_errors_named

    with dataset_errors_named(config, dataset):  # a split by a field that is not loaded, users with every item
        built = dataset.build()
        train_sampler, valid_sampler, test_sampler = create_samplers(config, dataset, built)
    train_dataset, valid_dataset, test_dataset = built
    full_train = train_dataset
    if train_ratio < 1.0:
        users = train_dataset.inter_feat[train_dataset.uid_field].numpy()
        keep = subsample_per_user(users, train_ratio, seed)
        train_dataset = train_dataset.copy(train_dataset.inter_feat[torch.from_numpy(keep)])
        # the full split's sampler excluded every dropped item from the user's negatives (RNS and HNLMRec's random
        # negative; the candidates of DNS, MixGCF and AHNS already excluded only the subsample's positives)
        with dataset_errors_named(config, dataset):
            train_sampler = create_samplers(config, dataset, [train_dataset, valid_dataset, test_dataset])[0]
    train_data = get_dataloader(config, "train")(config, train_dataset, train_sampler, shuffle=config["shuffle"])
    valid_data = get_dataloader(config, "valid")(config, valid_dataset, valid_sampler, shuffle=False)
    test_data = get_dataloader(config, "test")(config, test_dataset, test_sampler, shuffle=False)
    return train_data, valid_data, test_data, full_train


def run_cell(cell: Cell, dataset: str, out_dir: str, config_dict=None, config_file_list=None, analyses=(),
             fhn_pairs=2048, fhn_threshold=0.99, saved=True):
    """Train and test one cell; return a JSON-ready result dict.

    Args:
        cell (Cell): backbone, sampler, seed and training ratio.
        dataset (str): RecBole dataset name.
        out_dir (str): the grid's output folder; the cell's checkpoints go to ``out_dir/checkpoints/<key>`` and its
            log to ``out_dir/logs/<key>.log``.
        config_dict (dict, optional): settings shared by every cell (``epochs``, ``data_path``, ...).
        config_file_list (list of str, optional): yaml files shared by every cell.
        analyses (iterable of str): any of ``popularity`` and ``fhn``.
        fhn_pairs (int): training pairs sampled (once, seeded) to measure the false-hard-negative rate.
        fhn_threshold (float): cosine above which a sampled negative counts as a test positive.
        saved (bool): keep the best checkpoint and test it (else the last epoch's weights are tested).

    Returns:
        dict: ``cell``, ``model``, ``sampler``, ``seed``, ``train_ratio``, ``dataset``, ``settings``,
        ``best_valid_score``, ``best_valid_result``, ``best_epoch``, ``test_result``, ``epochs`` (the per-epoch log of
        :class:`RecordingMixin`), ``mean_epoch_time``, ``median_epoch_time``, ``total_time``, ``split``,
        ``data_files_sha256`` (``{path: sha256}`` of the atomic files read, paths as ``data_path`` gives them),
        ``analysis``, ``checkpoint``, ``environment``.
    """
    from recbole_hnlm.benchmark import analysis as A
    from recbole_hnlm.config import split_seed
    from recbole_hnlm.data_checks import (atomic_files_read, check_dataset_files, check_read_dataset,
                                          check_splits_not_empty)
    from recbole_hnlm.denormals import flush_denormals
    from recbole_hnlm.determinism import deterministic_algorithms
    from recbole_hnlm.files import file_sha256
    from recbole_hnlm.quick_start import build_model, read_dataset
    from recbole_hnlm.utils import get_trainer
    from recbole_hnlm.ops._ext import kernels_in_use
    from recbole_hnlm.warm_start import record_eval_split

    start = time.perf_counter()
    settings = dict(config_dict or {})
    cell_dict = cell_config_dict(cell, out_dir, settings)
    shutil.rmtree(cell_dict["checkpoint_dir"], ignore_errors=True)  # left over by an unfinished run of this cell
    config = make_config(cell.model, dataset, cell_dict, config_file_list)
    use_own_llm_artifacts(config, cell)
    with cell_logging(config, os.path.join(out_dir, "logs", f"{cell.key}.log")), \
            deterministic_algorithms(config["use_deterministic_algorithms"]):
        logger = logging.getLogger()
        logger.info(f"benchmark cell {cell.key}")
        logger.info(config)
        logger.info(f"recbole_hnlm ops on {config['device']}: {kernels_in_use(config['device'])}")
        flush_denormals(config["flush_denormal"])  # before the cell's first parallel torch operation
        check_dataset_files(config)
        # the files' bytes, so that a grid resumed after they changed (re-imported, edited) does not reuse this cell;
        # paths as data_path gives them: a relative one is read again from the resuming command's working folder
        data_files = {path: file_sha256(path) for path in atomic_files_read(config)}
        data = read_dataset(config)  # under the split seed
        logger.info(data)
        check_read_dataset(config, data)
        train_data, valid_data, test_data, full_train = build_data(config, data, cell.train_ratio, cell.seed)
        check_splits_not_empty(config, valid_data, test_data)
        model = build_model(config, data, train_data, logger)
        record_eval_split(model, valid_data, test_data)
        trainer = make_recording_trainer(get_trainer(config["MODEL_TYPE"], config["model"]))(config, model)

        train_users, train_items = _pairs(train_data._dataset)
        full_train_pairs = _pairs(full_train)
        valid_pairs, test_pairs = _pairs(valid_data._dataset), _pairs(test_data._dataset)
        n_users, n_items = model.n_users, model.n_items
        fhn_probe = None
        if "fhn" in analyses:
            if not hasattr(model, "hard_negatives"):
                raise ValueError(f"the fhn analysis needs a recbole_hnlm backbone; {cell.model} has no hard_negatives")
            fhn_probe = A.FHNProbe(train_users, train_items, test_pairs, n_users, n_items, fhn_pairs,
                                   seed=cell.seed, threshold=fhn_threshold, device=config["device"])
            trainer.epoch_probe = lambda epoch: {"fhn_rate": fhn_probe(model)}

        best_valid_score, best_valid_result = trainer.fit(
            train_data, valid_data, saved=saved, show_progress=config["show_progress"])
        test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
        logger.info(f"test result: {dict(test_result)}")

        result_analysis = {}
        if "popularity" in analyses or "fhn" in analyses:
            model.eval()
        if "popularity" in analyses:
            user_e, item_e = model.pooled_embeddings()
            counts = torch.bincount(train_items, minlength=n_items).numpy()
            groups = A.popularity_groups(counts)
            exclude = tuple(torch.cat([full, valid]) for full, valid in zip(full_train_pairs, valid_pairs))
            groups_all = {"All": np.ones(n_items, dtype=bool), **groups}
            groups_all["All"][0] = False
            metrics = A.group_metrics(user_e, item_e, exclude, test_pairs, groups_all, k=20)
            result_analysis["popularity"] = metrics
        if fhn_probe is not None:
            result_analysis["fhn"] = {"rate": fhn_probe(model), "threshold": fhn_threshold,
                                      "pairs": fhn_probe.n_pairs, "requested_pairs": int(fhn_pairs),
                                      "note": "best checkpoint"}

    epochs = trainer.epochs_log
    best_epoch = _best_epoch(trainer, model, config, epochs, saved)
    train_times = [e["train_time"] for e in epochs]
    return {
        "cell": cell.key,
        "model": cell.model,
        "sampler": config["sampler"],
        "seed": cell.seed,
        "train_ratio": cell.train_ratio,
        "metric_decimal_place": config["metric_decimal_place"],  # how RecBole rounded test_result (report.py)
        "dataset": dataset,
        "settings": settings,
        "valid_metric": config["valid_metric"],
        "valid_metric_bigger": bool(config["valid_metric_bigger"]),
        "best_valid_score": float(best_valid_score),
        "best_valid_result": {k: float(v) for k, v in (best_valid_result or {}).items()},
        "best_epoch": best_epoch,
        "test_result": {k: float(v) for k, v in test_result.items()},
        "epochs": epochs,
        "epochs_run": len(epochs),
        "mean_epoch_time": float(np.mean(train_times)) if train_times else None,
        "median_epoch_time": float(np.median(train_times)) if train_times else None,
        "total_time": time.perf_counter() - start,
        "split": {"n_users": int(n_users), "n_items": int(n_items), "n_train": int(len(full_train_pairs[0])),
                  "n_train_used": int(len(train_users)), "n_valid": int(len(valid_pairs[0])),
                  "n_test": int(len(test_pairs[0])),
                  "fingerprint": split_fingerprint(full_train, valid_data._dataset, test_data._dataset),
                  "split_seed": split_seed(config),
                  # the training negatives excluded only the subsample's positives (grid._needs_run asks for it)
                  **({"train_negatives": "subsample"} if cell.train_ratio < 1.0 else {})},
        "data_files_sha256": data_files,
        "analysis": result_analysis,
        "checkpoint": os.path.relpath(trainer.saved_model_file, out_dir) if saved else None,
        "environment": environment(config["device"]),
    }
