"""Checks of a dataset before and after RecBole loads it: atomic files present and well-formed, no RecBole pickle
in the way, enough items for the cut-offs, non-empty evaluation splits. Each failure names the file or option;
duplicate interactions, which RecBole keeps, are a warning."""
import glob
import logging
import os

import numpy as np

from recbole_hnlm.errors import DataError

logger = logging.getLogger(__name__)

#: Atomic-file suffixes RecBole can split into train/valid/test on its own.
_SPLIT_SUFFIXES = ("inter",)


def _inter_files(config):
    """Paths of the ``.inter`` file(s) RecBole reads: ``<dataset>.inter`` or the ``benchmark_filename`` parts."""
    dataset, data_path = config["dataset"], config["data_path"]
    names = [f"{dataset}.{suffix}" for suffix in _SPLIT_SUFFIXES]
    if config["benchmark_filename"]:
        names = [f"{dataset}.{part}.inter" for part in config["benchmark_filename"]]
    return [os.path.join(data_path, name) for name in names]


def check_dataset_files(config):
    """Fail fast, naming the paths searched, when a dataset's atomic files are missing (RecBole would otherwise
    try to download it)."""
    dataset = config["dataset"]
    paths = _inter_files(config)
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        from recbole_hnlm.split_import import BENCHMARK_FILENAME, PARTS

        presplit = [os.path.join(config["data_path"], f"{dataset}.{part}.inter") for part in PARTS]
        hint = (" The folder holds a pre-split dataset (from python -m recbole_hnlm.split_import): add "
                f"\"--benchmark_filename={BENCHMARK_FILENAME}\"."
                if not config["benchmark_filename"] and all(map(os.path.isfile, presplit)) else "")
        raise FileNotFoundError(
            f"Dataset '{dataset}' not found: missing {', '.join(missing)}.{hint} Put the RecBole atomic files there, "
            f"or pass --data_path=DIR where DIR/{dataset}/{dataset}.inter exists (ml-100k needs no files: it ships "
            "with RecBole)."
        )
    for path in paths:
        check_inter_header(path, config)
    check_no_recbole_pickles(config)


def check_no_recbole_pickles(config):
    """RecBole unpickles ``<checkpoint_dir>/<dataset>-*.pth`` (a saved dataset or dataloader) when such a file
    exists; recbole_hnlm never loads a pickle, so one stops the run instead (the options that name such files are
    refused in ``config_checks``)."""
    pattern = os.path.join(config["checkpoint_dir"], f"{glob.escape(config['dataset'])}-*.pth")
    found = sorted(glob.glob(pattern))
    if found:
        raise DataError(f"RecBole would unpickle {found[0]} (a saved dataset or dataloader); recbole_hnlm never loads "
                        f"a pickle. Move or delete {', '.join(found)}.")


#: Field types of RecBole's atomic files (``recbole.utils.FeatureType``).
_ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")


def check_inter_header(path, config):
    """Check an ``.inter`` file's header before RecBole parses it: ``name:type`` fields split by
    ``field_separator``, the user and item id fields present as ``token``, and at least one interaction line.

    Raises:
        DataError: naming the file, the field and what to write instead.
    """
    separator = config["field_separator"] or "\t"
    with open(path, encoding=config["encoding"] or "utf-8") as f:
        header = f.readline().rstrip("\r\n")
        has_rows = any(line.strip() for line in f)
    example = f"user_id:token{separator}item_id:token"
    if not header.strip():
        raise DataError(f"{path} is empty: its first line must be a header such as {example!r}.")
    fields = {}
    for column in header.split(separator):
        name, colon, kind = column.partition(":")
        if not colon or kind not in _ATOMIC_TYPES:
            hint = (" Fields must be separated by field_separator (a tab by default)."
                    if any(sep in header for sep in (",", ";", " ")) and separator not in header else "")
            raise DataError(f"{path}: header field {column!r} is not 'name:type' with a type in {_ATOMIC_TYPES}."
                            f"{hint} Example header: {example!r}.")
        fields[name] = kind
    for key in ("USER_ID_FIELD", "ITEM_ID_FIELD"):
        name = config[key]
        if name not in fields:
            raise DataError(f"{path}: no '{name}' field in the header {header!r} ({key} = {name!r}; rename the "
                            f"column or set --{key}=<its name>).")
        if fields[name] != "token":
            raise DataError(f"{path}: field '{name}' is '{name}:{fields[name]}'; ids must be '{name}:token'.")
    if not has_rows:
        raise DataError(f"{path} has a header but no interactions.")


def check_topk_fits(config, dataset):
    """Full ranking needs more items than the largest cut-off (RecBole fails only after the first epoch)."""
    largest, items = max(config["topk"]), dataset.item_num - 1  # RecBole's Config turns an int topk into a list
    if largest > items:
        small = min(10, items)
        raise DataError(f"Dataset '{config['dataset']}' has {items} items, fewer than the largest cut-off topk = "
                        f"{largest}: lower it (e.g. --topk=[{small}] --valid_metric=NDCG@{small}) or use more items.")


def check_duplicate_interactions(config, dataset):
    """Warn when a (user, item) pair occurs on several rows of the built dataset: RecBole keeps them unless
    ``rm_dup_inter`` is set, so they weigh more in training and a pair can land in both training and test.
    One sort of ``user * n_items + item``: about 0.1 s on a CPU for Yelp2018's 1.5M rows.

    Pre-split files (``benchmark_filename``) are read as they are, ``rm_dup_inter`` included. For them the warning
    counts repeats inside the training file and evaluation pairs that are also training pairs (RecBole ranks those
    as easy hits); a validation file that repeats the test file is a protocol choice, not counted."""
    users = np.asarray(dataset.inter_feat[dataset.uid_field], dtype=np.int64)  # a DataFrame column before build()
    items = np.asarray(dataset.inter_feat[dataset.iid_field], dtype=np.int64)
    keys = users * dataset.item_num + items
    if config["benchmark_filename"]:
        _warn_presplit_duplicates(config, keys, list(getattr(dataset, "file_size_list", [len(keys)])))
        return
    _, counts = np.unique(keys, return_counts=True)
    repeated = counts[counts > 1]
    if len(repeated):
        logger.warning(f"{' and '.join(_inter_files(config))}: {len(repeated)} (user, item) pairs occur on more than "
                       f"one row ({int(repeated.sum()) - len(repeated)} extra of {len(users)} rows). RecBole keeps "
                       "them, so they count several times in training and a pair can be both a training and a test "
                       "item, which RecBole's full ranking does not mask (an easy hit). Set rm_dup_inter: first (or "
                       "--rm_dup_inter=first) to keep only the first of each (the earliest, when there is a timestamp "
                       "field).")


def _warn_presplit_duplicates(config, keys, sizes):
    """The pre-split form of :func:`check_duplicate_interactions` (the first file trains, the others evaluate)."""
    paths = _inter_files(config)
    bounds = np.cumsum([0] + sizes)
    train = keys[bounds[0]:bounds[1]]
    unique_train = np.unique(train)
    problems = []
    if len(unique_train) < len(train):
        problems.append(f"{paths[0]} repeats {len(train) - len(unique_train)} (user, item) rows, which count several "
                        "times in training")
    for path, start, end in zip(paths[1:], bounds[1:-1], bounds[2:]):
        leaked = int(np.isin(np.unique(keys[start:end]), unique_train).sum())
        if leaked:
            problems.append(f"{path} has {leaked} (user, item) pairs that are also training pairs, which RecBole's "
                            "full ranking does not mask: easy hits that raise its metrics")
    if problems:
        logger.warning("; ".join(problems) + ". RecBole reads pre-split files (benchmark_filename) as they are, "
                       "rm_dup_inter included: remove those rows from the files (python -m recbole_hnlm.split_import "
                       "drops repeats within each file, and test pairs that are also training pairs with "
                       "--drop_test_pairs_in_train).")


def check_splits_not_empty(config, valid_data, test_data):
    """An empty validation or test split would end the run with ``test result: None``."""
    for name, data in (("validation", valid_data), ("test", test_data)):
        if data is not None and len(data.dataset) == 0:
            raise DataError(f"The {name} split of dataset '{config['dataset']}' is empty: RecBole splits each user's "
                            f"interactions by eval_args split {config['eval_args']['split']}, and users with too few "
                            "interactions leave that split empty. Use a dataset with more interactions per "
                            "user (e.g. a k-core filter: --user_inter_num_interval=\"[5,inf)\").")
