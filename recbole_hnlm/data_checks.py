"""Checks of a dataset before and after RecBole loads it: atomic files present and well-formed, no RecBole pickle
in the way, enough items for the cut-offs, non-empty evaluation splits. Each failure names the file or option;
duplicate interactions, which RecBole keeps, are a warning."""
import codecs
import contextlib
import copy
import csv
import difflib
import functools
import glob
import logging
import os
import re

import numpy as np

from recbole_hnlm.config_checks import labeled_phases, recbole_properties_dir
from recbole_hnlm.errors import DataError

logger = logging.getLogger(__name__)

#: The values pandas' ``read_csv`` (RecBole's reader) takes as missing by default, besides the empty field: an id
#: written so ("NA", "None", "null") is dropped with its row, or misread (pandas' documented ``na_values`` list).
PANDAS_NA_STRINGS = frozenset(("#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                               "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"))

#: Atomic-file suffixes RecBole can split into train/valid/test on its own.
_SPLIT_SUFFIXES = ("inter",)


def dataset_file(config, suffix: str) -> str:
    """The path of the atomic file ``<data_path>/<dataset>.<suffix>`` (``suffix`` such as ``item`` or
    ``train.inter``)."""
    return os.path.join(config["data_path"], f"{config['dataset']}.{suffix}")


def _inter_files(config):
    """Paths of the ``.inter`` file(s) RecBole reads: ``<dataset>.inter`` or the ``benchmark_filename`` parts."""
    if config["benchmark_filename"]:
        return [dataset_file(config, f"{part}.inter") for part in config["benchmark_filename"]]
    return [dataset_file(config, suffix) for suffix in _SPLIT_SUFFIXES]


def atomic_files_read(config) -> list:
    """The atomic files a run of ``config`` reads: its ``.inter`` file(s), the loaded ``.user`` / ``.item``, and an
    ``.item`` file RecBole does not load when the sampler reads it itself (HNLMRec's prompts)."""
    from recbole_hnlm.utils import get_sampler

    paths = _inter_files(config) + [path for path, _ in _side_files(config)]
    item = dataset_file(config, "item")
    if get_sampler(config["sampler"]).reads_item_file and item not in paths and os.path.isfile(item):
        paths.append(item)
    return paths


#: The file checks already passed inside :func:`checks_remembered`: ``(settings read, files' stats)`` pairs.
_passed_file_checks = None


@contextlib.contextmanager
def checks_remembered():
    """Within this block, :func:`check_dataset_files` reads a dataset's files once per distinct set of the settings
    the checks read (and per state of the files): a grid or search checks many cells that differ only in settings
    the file checks never read (a learning rate, a seed), and each check reads the whole ``.inter`` file (seconds at
    Yelp2018 size). A check that passed is not repeated, and so neither are its warnings."""
    global _passed_file_checks
    outer, _passed_file_checks = _passed_file_checks, ([] if _passed_file_checks is None else _passed_file_checks)
    try:
        yield
    finally:
        _passed_file_checks = outer


class _SettingsRead:
    """A config that records each setting read through it (by ``[]`` or ``in``), the key of a passed check."""

    def __init__(self, config):
        self._config, self.read = config, {}

    def __getitem__(self, key):
        value = self._config[key]
        self.read.setdefault(("value", key), copy.deepcopy(value))
        return value

    def __contains__(self, key):
        found = key in self._config
        self.read.setdefault(("in", key), found)
        return found


def _settings_equal(config, read) -> bool:
    """Whether ``config`` holds the settings ``read`` recorded: equal and written alike (``1 == True``, but RecBole
    tests ``filter_inter_by_user_or_item is True``)."""
    return all(_same(key in config if how == "in" else config[key], value) for (how, key), value in read.items())


def _same(value, recorded) -> bool:
    return value == recorded and repr(value) == repr(recorded)


def _files_state(config):
    """Size, modification and change time and inode of the atomic files of ``config``'s dataset folder (``None``
    when it is not a folder): a file edited between two checks is read again, also when the edit restored its
    modification time (``cp -p``, ``tar x``: the change time, which no program sets, moves on)."""
    folder = config["data_path"]
    try:
        with os.scandir(folder) as entries:
            return sorted((e.name, s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino)
                          for e in entries if e.is_file() for s in [e.stat()])
    except OSError:
        return None


def _own_folder_hint(config, missing) -> str:
    """A hint when ``data_path`` names the dataset's own folder: RecBole looks in ``<data_path>/<dataset>/``, so
    ``--data_path=data/amz`` for ``data/amz/amz.inter`` searched ``data/amz/amz/amz.inter``."""
    given = os.path.dirname(os.path.normpath(config["data_path"]))  # RecBole's data_path is <given>/<dataset>
    if not missing or not all(os.path.isfile(os.path.join(given, os.path.basename(path))) for path in missing):
        return ""
    parent = os.path.dirname(given) or "."
    return (f" The files are in {given}, the dataset's own folder: data_path names the folder that holds it "
            f"(--data_path={parent}).")


def _close_name_hint(config) -> str:
    """A dataset name close to the one given: a folder beside its own that holds that name's ``.inter`` file(s), or
    RecBole's bundled ml-100k."""
    dataset = config["dataset"]
    root = os.path.dirname(os.path.normpath(config["data_path"]))  # RecBole's data_path is <root>/<dataset>

    def holds_dataset(folder, name):
        return os.path.isfile(os.path.join(folder, f"{name}.inter")) or os.path.isfile(
            os.path.join(folder, f"{name}.train.inter"))
    try:
        with os.scandir(root) as entries:
            names = [e.name for e in entries if e.is_dir() and holds_dataset(e.path, e.name)]
    except OSError:
        names = []
    by_lower = {n.lower(): n for n in sorted(set(names) | {"ml-100k"}) if n != dataset}  # 'Amz' for 'amz' too
    close = difflib.get_close_matches(dataset.lower(), list(by_lower), n=1, cutoff=0.75)
    return f" Did you mean --dataset={by_lower[close[0]]}?" if close else ""


def check_dataset_files(config):
    """Fail fast, naming the paths searched, when a dataset's atomic files are missing (RecBole would otherwise
    try to download it). Inside :func:`checks_remembered` a check that passed with the same settings read and the
    same files is not repeated."""
    if _passed_file_checks is None:
        _check_dataset_files(config)
    else:
        state = _files_state(config)
        if not any(files == state and _settings_equal(config, read) for read, files in _passed_file_checks):
            recorder = _SettingsRead(config)
            _check_dataset_files(recorder)
            _passed_file_checks.append((recorder.read, state))
    check_no_recbole_pickles(config)  # cheap, and each cell has its own checkpoint folder


def _check_dataset_files(config):
    dataset = config["dataset"]
    paths = _inter_files(config)
    for path in paths:
        _refuse_folder(path)  # "not found" would send the user looking for a file that is there
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        from recbole_hnlm.split_import import BENCHMARK_FILENAME, PARTS

        presplit = [dataset_file(config, f"{part}.inter") for part in PARTS]
        hint = (" The folder holds a pre-split dataset (from python -m recbole_hnlm.split_import): add "
                f"\"--benchmark_filename={BENCHMARK_FILENAME}\"."
                if not config["benchmark_filename"] and all(map(os.path.isfile, presplit)) else "")
        bundled = (" ml-100k is RecBole's bundled example: RecBole reads it from its own folder and ignores "
                   "data_path, so files of your own need another dataset name (e.g. ml-100k-split)."
                   if dataset == "ml-100k" else "")  # RecBole maps this name to its copy whatever data_path says
        elsewhere = _own_folder_hint(config, missing) or _close_name_hint(config)
        hint = bundled + hint + elsewhere
        if config["benchmark_filename"]:
            wanted = ", ".join(f"{dataset}.{part}.inter" for part in config["benchmark_filename"])
            whole = dataset_file(config, "inter")
            hint = bundled + (f" {whole} exists: drop --benchmark_filename to let RecBole split it."
                              if os.path.isfile(whole) else "") + elsewhere
            raise FileNotFoundError(f"Dataset '{dataset}' not found: missing {', '.join(missing)}.{hint} Put the "
                                    f"pre-split files there, or pass --data_path=DIR where DIR/{dataset}/ holds "
                                    f"{wanted}.")
        raise FileNotFoundError(
            f"Dataset '{dataset}' not found: missing {', '.join(missing)}.{hint} Put the RecBole atomic files there, "
            f"or pass --data_path=DIR where DIR/{dataset}/{dataset}.inter exists (ml-100k needs no files: it ships "
            "with RecBole)."
        )
    side_ids = {config[id_key]: (path, ids) for path, id_key in _side_files(config)
                for ids in [check_side_file(path, id_key, config)] if ids is not None}
    known = side_ids if _filters_by_side_files(config) else None
    headers = [check_inter_header(path, config, warn_load_col=k == 0, known=known)  # parts share their header
               for k, path in enumerate(paths)]
    _check_parts_agree(paths, headers, _loaded_columns(config), _unloaded_columns(config, "inter"))
    warn_unapplied_options(config)


#: RecBole's interaction filters and the values that filter nothing (its defaults).
_FILTERS = {"user_inter_num_interval": (None, "[0,inf)"), "item_inter_num_interval": (None, "[0,inf)"),
            "val_interval": (None,), "rm_dup_inter": (None,)}


def _applied_filters(config):
    """``key=value`` of each interaction filter set to something that filters."""
    return [f"{key}={config[key]!r}" for key, unset in _FILTERS.items() if config[key] not in unset]


def warn_unapplied_options(config):
    """Warn about dataset options RecBole takes without a word but that change nothing here: interaction filters
    with pre-split files (RecBole reads those as they are), and ``threshold`` (a 0/1 label that RecBole's
    general recommenders, and so the samplers, never read: every interaction trains and is tested)."""
    if config["benchmark_filename"]:
        ignored = _applied_filters(config)
        if ignored:
            logger.warning(f"benchmark_filename: RecBole reads pre-split files as they are, so {', '.join(ignored)} "
                           f"{'is' if len(ignored) == 1 else 'are'} not applied. Filter the interactions before "
                           "splitting them (python -m recbole_hnlm.split_import writes the files it is given).")
    if config["threshold"] is not None:
        logger.warning(f"threshold={config['threshold']!r} gives each interaction a 0/1 label, which the general "
                       "recommenders and their samplers never read: every interaction still trains and counts as a "
                       "positive in evaluation. To drop low-rated interactions, use val_interval instead (e.g. "
                       "--val_interval=\"{'rating': '[4,inf)'}\", with rating in load_col).")


#: Options that name a field of the interactions (RecBole's "Field [x] not defined" names none of them).
_FIELD_OPTIONS = ("val_interval", "threshold", "normalize_field", "numerical_features", "preload_weight",
                  "alias_of_user_id", "alias_of_item_id", "unused_col")


def dataset_error(config, error, dataset=None):
    """RecBole's message for filters that leave nothing, an option naming a field that is not loaded, or users who
    interacted with every item (``dataset`` names them), as an error that names the options; ``None`` for others."""
    text = str(error)
    name = config["dataset"]
    if "Some users have interacted with all items" in text and dataset is not None:
        return _users_with_every_item_error(config, dataset)
    if "Some feat is empty" in text:
        filters = _applied_filters(config)
        if _filters_by_side_files(config):
            filters += [f"filter_inter_by_user_or_item=True with {path}" for path, _ in _side_files(config)
                        if _loads_a_field_of(path, config)]
        return DataError(f"Dataset '{name}': the interaction filters leave no interactions "
                         f"({', '.join(filters) or 'no filter option set'}): loosen them.")
    missing = re.match(r"\[([^\]]+)\] is not exist in interaction|Wrong type of by \[(None)\]", text)  # the split
    # sorts by a field that is not loaded, or by TIME_FIELD=None
    if missing:
        return DataError(f"Dataset '{name}': the split (eval_args order {config['eval_args'].get('order')!r}) sorts "
                         f"by field '{missing.group(1) or missing.group(2)}' (TIME_FIELD), which is not loaded: set "
                         f"TIME_FIELD to the time column and load it (load_col, now {config['load_col']!r}), or use "
                         "order 'RO'.")
    match = re.fullmatch(r"Field \[(.+)\] not (?:defined in dataset|in inter_feat)\.", text)
    if match:
        field = match.group(1)
        options = [key for key in _FIELD_OPTIONS if key in config and field in _named_fields(config[key])]
        return DataError(f"Dataset '{name}': {' and '.join(options) or 'an option'} name{'s' * (len(options) < 2)} "
                         f"field '{field}', which is not loaded: add it to load_col (now {config['load_col']!r}) or "
                         "drop it from that option.")
    return None


def _users_with_every_item_error(config, dataset):
    """RecBole's negative sampler refuses users with every item, naming neither them nor a remedy that works for
    pre-split files (RecBole filters those not at all)."""
    feat = dataset.inter_feat
    n_items = dataset.item_num - 1  # id 0 is padding
    keys = np.unique(feat[dataset.uid_field].numpy().astype(np.int64) * dataset.item_num
                     + feat[dataset.iid_field].numpy())
    users, counts = np.unique(keys // dataset.item_num, return_counts=True)
    full = users[counts >= n_items]
    tokens = ", ".join(repr(str(t)) for t in dataset.id2token(dataset.uid_field, full[:5]))
    more = f" and {len(full) - 5} more" if len(full) > 5 else ""
    if config["benchmark_filename"]:
        remedy = ("RecBole filters no pre-split files: remove some of their pairs, or the users, from the files "
                  f"({', '.join(config['benchmark_filename'])})")
    else:
        remedy = (f"leave them out with user_inter_num_interval=\"[0,{n_items})\" (users with fewer interactions), or "
                  "remove some of their pairs from the .inter file")
    return DataError(f"Dataset '{config['dataset']}': user{'s' * (len(full) > 1)} {tokens}{more} interacted with "
                     f"every one of the {n_items} items, so no negative item can be drawn for them (RecBole's sampler "
                     f"refuses): {remedy}.")


@contextlib.contextmanager
def dataset_errors_named(config, dataset=None):
    """Context manager around RecBole's dataset reading and splitting: an error :func:`dataset_error` recognises is
    raised as its :class:`DataError` (RecBole's own message may print the whole interaction table); others pass.
    ``dataset``: the dataset being split (names the users of RecBole's sampler error)."""
    try:
        yield
    except (ValueError, TypeError) as error:
        clear = dataset_error(config, error, dataset)
        if clear is None:
            raise
        raise clear from None


def _named_fields(value):
    """The field names an option's value holds: a dict's keys (and listed values), a list's items, a name."""
    if isinstance(value, dict):
        return set(value) | {name for names in value.values() if isinstance(names, (list, tuple)) for name in names}
    if isinstance(value, (list, tuple)):
        return set(value)
    return {value}


def _side_files(config):
    """``(path, id option)`` of the ``.user`` / ``.item`` files RecBole will read: present, and loaded by
    ``load_col`` (every file when it is ``None``)."""
    load_col = config["load_col"]
    for suffix, id_key in (("user", "USER_ID_FIELD"), ("item", "ITEM_ID_FIELD")):
        path = dataset_file(config, suffix)
        if os.path.isfile(path) and (load_col is None or (isinstance(load_col, dict) and suffix in load_col)):
            yield path, id_key


def check_side_file(path, id_key, config):
    """A ``.user`` / ``.item`` file RecBole will read: ``encoding`` text without a byte-order mark, a ``name:type``
    header that holds the id field (RecBole fails on these with a ``UnicodeDecodeError`` or "iid_field must be
    loaded if item_feat is loaded"), and lines as RecBole's reader splits them (:func:`check_records`).
    Returns the set of its ids, or ``None`` when ``load_col`` names none of its fields (RecBole then loads no such
    file).

    Raises:
        DataError: naming the file and what to change.
    """
    encoding = config["encoding"] or "utf-8"
    separator = config["field_separator"] or "\t"
    try:
        with open(path, encoding=encoding) as f:
            header = f.readline().rstrip("\r\n")
            names = _parse_header(path, header, separator, f"{config[id_key]}:token{separator}name:token_seq")
    except UnicodeDecodeError as error:
        raise encoding_error(path, encoding, error) from None
    if config[id_key] not in names:
        raise DataError(f"{path}: no '{config[id_key]}' field in the header {header!r} ({id_key} = "
                        f"{config[id_key]!r}): RecBole needs it to join this file to the interactions.")
    suffix = os.path.splitext(path)[1][1:]
    load_col = config["load_col"]
    loaded = _listed_fields(config, suffix)
    if loaded is not None and not set(loaded) & set(names):
        _warn_unknown_loaded(path, suffix, config, names)
        return None  # RecBole loads no column of it: no user/item features, and nothing filtered by them
    if loaded is not None and config[id_key] not in loaded:  # RecBole: a ValueError, after the .inter
        raise DataError(f"{path}: load_col['{suffix}'] = {list(loaded)} does not load the {id_key} field "
                        f"'{config[id_key]}', which RecBole needs to join the file to the interactions: add it to "
                        "load_col.")
    numeric = _numeric_fields(names, loaded, _unloaded_columns(config, suffix))
    ids = set()
    if not check_records(path, encoding, separator, id_field=config[id_key], numeric=numeric, ids=ids,
                         seq_separator=config["seq_separator"] or " "):
        kept = ({key: value for key, value in load_col.items() if key != suffix} if isinstance(load_col, dict)
                else {"inter": [config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]]})
        raise DataError(f"{path} has a header but no rows, and RecBole fails on a loaded file without rows: add "
                        f"its rows, delete it, or give load_col a dict without '{suffix}' (e.g. \"--load_col="
                        f"{kept}\").")
    _warn_unknown_loaded(path, suffix, config, names)
    return ids


@functools.lru_cache(maxsize=None)
def _recbole_default_load_col(dataset):
    """RecBole's ``load_col`` for ``dataset`` when no option sets it: its dataset yaml's (ml-100k's names a
    timestamp), else ``sample.yaml``'s (the two id fields). Read once per dataset name (each checked file asks)."""
    import yaml

    folder = os.path.join(recbole_properties_dir(), "dataset")
    path = os.path.join(folder, f"{dataset}.yaml")
    with open(path if os.path.isfile(path) else os.path.join(folder, "sample.yaml"), encoding="utf-8") as f:
        return (yaml.safe_load(f) or {}).get("load_col")


def _warn_unknown_loaded(path, suffix, config, names):
    """Warn about the fields ``load_col[suffix]`` names that the file's header lacks: RecBole loads the others
    without a word (a misspelt ``timestmp`` left the interactions unordered). RecBole's default ``load_col`` is not
    warned about (ml-100k's names a timestamp that the user's own files need not have)."""
    listed = _listed_fields(config, suffix)
    if listed is None or config["load_col"] == _recbole_default_load_col(config["dataset"]):
        return
    unknown = [name for name in listed if name not in names]
    if unknown:
        logger.warning(f"load_col['{suffix}'] names {', '.join(map(repr, unknown))}, which {path} does not have (its "
                       f"fields: {', '.join(names)}): RecBole loads the other fields without it.")


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


def _loads_a_field_of(path, config):
    """Whether ``load_col`` loads a field of the side file at ``path`` (checked already by :func:`check_side_file`):
    a list for its suffix that names none of the header's fields makes RecBole load no such file."""
    loaded = _listed_fields(config, os.path.splitext(path)[1][1:])
    if loaded is None:
        return True
    separator = config["field_separator"] or "\t"
    with open(path, encoding=config["encoding"] or "utf-8") as f:
        header = f.readline().rstrip("\r\n")
    return bool(set(loaded) & set(_parse_header(path, header, separator, f"id:token{separator}name:token_seq")))


def _filters_by_side_files(config):
    """Whether RecBole drops the interactions of ids its loaded ``.user``/``.item`` lack: only with
    ``filter_inter_by_user_or_item`` True (RecBole tests ``is True``), and never for pre-split files (no filter
    runs on them)."""
    return config["filter_inter_by_user_or_item"] is True and not config["benchmark_filename"]


def _check_parts_agree(paths, headers, loaded, unloaded=frozenset()):
    """Pre-split ``.inter`` parts load the same fields with the same types: RecBole stacks them by field name, so a
    field one part lacks was filled in without a word, and a type that differs re-typed the others' column (the LLM
    stage refused such parts, after the run had begun)."""
    def loaded_fields(fields):
        return [f"{name}:{kind}" for name, kind in fields.items()
                if (loaded is None or name in loaded) and name not in unloaded]

    first = loaded_fields(headers[0])
    for path, fields in zip(paths[1:], headers[1:]):
        if sorted(loaded_fields(fields)) != sorted(first):
            raise DataError(f"{path}: loads the fields {', '.join(loaded_fields(fields))}, but {paths[0]} loads "
                            f"{', '.join(first)}: RecBole stacks the pre-split files by field name, so every part "
                            "needs the same loaded fields and types (give them one header, or narrow load_col).")


def check_inter_header(path, config, warn_load_col=True, known=None):
    """Check an ``.inter`` file before RecBole parses it: a ``name:type`` header split by ``field_separator``, the
    user and item id fields present as ``token`` (and loaded, ``load_col``), then every line: as many fields as the
    header (pandas would otherwise shift the columns without a word), loaded ``float`` fields numeric, no id that
    pandas reads as missing ("NA", "None"; an empty one in pre-split files, read as they are, or for an item on a
    line after an empty user id), and the ``load_col`` fields the header lacks warned about (``warn_load_col``: once
    for a dataset's pre-split parts). Text in another encoding than ``encoding`` and a byte-order mark are named.
    ``known`` (``{id field: (side file, its ids)}``, :func:`check_dataset_files`): interactions of ids missing from
    a loaded ``.user``/``.item`` file, which RecBole drops without a word (``filter_inter_by_user_or_item``), are
    warned about, and an error when that leaves no interaction. Returns the header's ``{name: type}``.
    About 1.5 s for Yelp2018's 1.5M lines on an idle machine.

    Raises:
        DataError: naming the file (and line), the field and what to write instead.
    """
    separator = config["field_separator"] or "\t"
    encoding = config["encoding"] or "utf-8"
    example = f"user_id:token{separator}item_id:token"
    known = known or {}
    try:
        with open(path, encoding=encoding, newline="") as f:  # as pandas opens it: the reader sees \r\n and \r
            lines = _line_ends_checked(path, f)
            header = next(lines, "").rstrip("\r\n")
            loaded = _loaded_columns(config)
            fields = _header_fields(path, header, separator, example, config, loaded)
            rows, unknown, dropped, kept = _check_rows(path, lines, header, fields, separator, config, loaded, known)
    except UnicodeDecodeError as error:
        raise encoding_error(path, encoding, error) from None
    if not rows:
        raise DataError(f"{path} has a header but no interactions.")
    _report_unknown_ids(path, rows, unknown, dropped, kept, known, _filters_before_side_files(config))
    if warn_load_col:
        _warn_unknown_loaded(path, "inter", config, list(fields))
    return fields


def encoding_error(path, encoding, error: UnicodeDecodeError) -> DataError:
    """The error for an atomic file that is not ``encoding`` text (RecBole's option), naming the first bad byte."""
    remedy = ("save it as UTF-8, or pass --encoding=<its encoding> (e.g. latin-1)"
              if codecs.lookup(encoding).name == "utf-8" else
              f"pass --encoding=<its encoding> (e.g. utf-8), or save it as {encoding}")
    return DataError(f"{path} is not {encoding} text (byte {error.object[error.start:error.start + 1]!r}: "
                     f"{error.reason}): {remedy}.")


#: Id fields of public datasets' atomic files (RecBole's converted Yelp, Amazon, Book-Crossing, Douban, LFM ...) that
#: an error names as the likely USER_ID_FIELD or ITEM_ID_FIELD.
_KNOWN_ID_FIELDS = {
    "USER_ID_FIELD": ("user_id", "uid", "userid", "reviewer_id", "customer_id"),
    "ITEM_ID_FIELD": ("item_id", "business_id", "product_id", "parent_asin", "asin", "book_id", "isbn", "movie_id",
                      "track_id", "artist_id", "song_id", "venue_id", "poi_id", "anime_id", "recipe_id", "game_id"),
}


def _header_fields(path, header, separator, example, config, loaded):
    """``{name: type}`` of a header line, with the id fields checked (``loaded``: see :func:`_loaded_columns`)."""
    fields = _parse_header(path, header, separator, example)
    for key in ("USER_ID_FIELD", "ITEM_ID_FIELD"):
        name = config[key]
        if name not in fields:
            remedy = f"--{key}=<its name> \"--load_col={{'inter': ['<user field>', '<item field>']}}\""
            known = [n for n in _KNOWN_ID_FIELDS[key] if fields.get(n) == "token"]
            if len(known) == 1:  # RecBole's own Yelp files: business_id
                remedy = f"--{key}={known[0]}"
                if loaded is not None:  # the columns load_col lists that the file has, this one renamed
                    columns = [known[0] if column == name else column for column in loaded
                               if column == name or column in fields]
                    remedy += f" \"--load_col={{'inter': {columns!r}}}\""
            raise DataError(f"{path}: no '{name}' field in the header {header!r} ({key} = {name!r}; rename the "
                            f"column, or name it and load it: {remedy}).")
        if fields[name] != "token":
            raise DataError(f"{path}: field '{name}' is '{name}:{fields[name]}'; ids must be '{name}:token'.")
        if loaded is not None and name not in loaded:
            raise DataError(f"{path}: load_col['inter'] = {sorted(loaded)} does not load the {key} field '{name}': "
                            "add it to load_col.")
    return fields


def _parse_header(path, header, separator, example):
    """``{name: type}`` of an atomic file's header line; an empty line, a byte-order mark or a field that is not
    ``name:type`` with one of RecBole's types is an error (``example``: a header to show)."""
    if not header.strip():
        raise DataError(f"{path} is empty: its first line must be a header such as {example!r}.")
    if header.startswith("\ufeff"):
        raise DataError(f"{path} starts with a byte-order mark (saved as 'UTF-8 with BOM'): save it without one, or "
                        "pass --encoding=utf-8-sig.")
    fields = {}
    for column in header.split(separator):
        name, colon, kind = column.partition(":")
        if not colon or kind not in _ATOMIC_TYPES:
            used = [sep for sep in ("\t", ",", ";", "|", " ") if sep in header.strip()]
            hint = (f" Fields must be separated by field_separator ({separator!r} here, a tab by default); this "
                    f"header holds {used[0]!r}." if used and separator not in header else "")
            raise DataError(f"{path}: header field {column!r} is not 'name:type' with a type in {_ATOMIC_TYPES}."
                            f"{hint} Example header: {example!r}.")
        if name in fields:
            raise _named_twice(path, header, name)
        fields[name] = kind
    return fields


def _named_twice(path, header, name) -> DataError:
    """The error for a header that names a field twice (pandas renames the second copy without a word)."""
    return DataError(f"{path}: the header {header!r} names field '{name}' twice: give each column its own name.")


def _numeric_fields(fields, loaded, unloaded):
    """``{name: kind}`` of the ``float``/``float_seq`` fields of a header's ``fields`` that RecBole reads: named by
    ``loaded`` (``None``: all) and not by ``unloaded``."""
    return {name: kind for name, kind in fields.items() if kind in ("float", "float_seq") and name not in unloaded
            and (loaded is None or name in loaded)}


def _listed_fields(config, suffix):
    """The fields ``load_col`` lists for the ``.<suffix>`` file, or ``None`` when it lists none (every field of a
    loaded file is read)."""
    load_col = config["load_col"]
    listed = load_col.get(suffix) if isinstance(load_col, dict) else None
    return listed if isinstance(listed, (list, tuple)) else None


def _unloaded_columns(config, suffix):
    """The fields of the ``.<suffix>`` file that ``unload_col`` leaves out: RecBole never reads them."""
    unload_col = config["unload_col"]
    return set(unload_col.get(suffix) or ()) if isinstance(unload_col, dict) else set()


def _refuse_folder(path):
    """A folder where an atomic file should be is an error naming it."""
    if os.path.isdir(path):
        raise DataError(f"{path} is a folder, not an atomic file: move it away or replace it with the file.")


def _loaded_columns(config):
    """The ``.inter`` fields RecBole loads (``load_col['inter']``, in its order, each once), or ``None`` for all of
    them."""
    load_col = config["load_col"]
    if isinstance(load_col, dict) and isinstance(load_col.get("inter"), (list, tuple)):
        return list(dict.fromkeys(load_col["inter"]))
    return None


def _records(lines, separator, quoted=True):
    """``(first line, last line, values)`` of each record after the header, split as RecBole's reader splits it:
    pandas' Python engine with a one-character separator is a strict ``csv.reader`` that takes ``"`` as a quote
    (a quoted field may hold the separator, or run on over several lines). A longer separator is a regular
    expression to pandas, which knows no quotes: plain splitting. ``quoted=False``: plain lines split at
    ``separator`` (quotes are text)."""
    if not quoted:
        for line_no, line in enumerate(lines, 2):
            yield line_no, line_no, line.rstrip("\r\n").split(separator)
        return
    if len(separator) != 1:
        pattern = re.compile(separator)
        for line_no, line in enumerate(lines, 2):
            yield line_no, line_no, pattern.split(line.strip())
        return
    reader = csv.reader(lines, delimiter=separator, quotechar='"', doublequote=True, strict=True)
    end = 1  # the header
    while True:
        start = end + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield start, 1 + reader.line_num, error
            return
        end = 1 + reader.line_num
        yield start, end, values


def _line_ends_checked(path, lines, refuse_nul=False):
    """``lines`` (read with ``newline=""``, the header first), refusing a bare carriage return in a file whose lines
    end in ``\\n``: pandas (RecBole's reader and the LLM stage's) ends the row there, so a stray ``\\r`` in a title
    made an extra row (a phantom item) and cut the title. A ``\\r`` that ends the file splits nothing: it passes.
    ``refuse_nul``: a NUL byte is refused too (the LLM stage's reader, pandas' C parser, ends a field there where
    RecBole's Python-engine reader keeps it)."""
    bare, newline, ends_in_r = None, False, None
    for line_no, line in enumerate(lines, 1):
        if refuse_nul and "\x00" in line:
            raise DataError(f"{path}:{line_no}: a NUL byte (\\x00) in the line: the LLM stage's reader ends the field "
                            "there while RecBole's reader keeps it, so the prompts would name another id or a cut "
                            "title. Remove it.")
        if ends_in_r:  # the previous line's \r has a line after it
            bare = bare or ends_in_r
        ends_in_r = line_no if line.endswith("\r") else None
        if line.endswith("\n"):
            newline = True
        if bare and newline:
            raise DataError(f"{path}:{bare}: a carriage return (\\r) inside the line, which RecBole's reader (pandas) "
                            "takes as a line end (the rest of the line becomes a row of its own): remove it.")
        yield line


def _filled_records(path, lines, separator, quoted=True):
    """``(line, values)`` of each non-blank record (:func:`_records`) of ``lines`` (:func:`_line_ends_checked`, past
    the header); a quote that fails pandas or runs over lines is an error naming the file and line."""
    for start, end, values in _records(lines, separator, quoted):
        if isinstance(values, csv.Error):
            raise _quote_error(path, start, end, values)
        if len(values) <= 1 and not "".join(values).strip():
            continue  # a blank line: pandas skips it (a line of separators only is a row of missing values)
        if end > start:
            raise _quote_error(path, start, end, None)
        yield start, values


def check_records(path, encoding="utf-8", separator="\t", quoted=True, id_field=None, numeric=None, ids=None,
                  seq_separator=" ", refuse_nul=False):
    """Any atomic file, split as RecBole's reader splits it (:func:`_records`; ``quoted=False``: plain lines, for
    files RecBole does not load, which the LLM stage reads with quotes as text): a header of ``name:type`` fields,
    each named once; quotes that would merge lines or fail pandas, lines with more fields than the header, and an
    ``id_field`` value that pandas reads as missing (:data:`PANDAS_NA_STRINGS`), a value of a ``numeric`` field
    (``{name: "float" | "float_seq"}``, the loaded ones; a sequence split at ``seq_separator``) that is no number,
    and a carriage return inside a line are errors naming the file and line (pandas fills a shorter line's last
    fields as empty). For files the LLM stage reads and the side files RecBole loads. ``ids``, a set, receives the
    ``id_field`` values; ``refuse_nul``: a NUL byte is an error (the LLM stage's files). Returns whether there was a
    record.

    Raises:
        DataError: naming the file and line.
    """
    _refuse_folder(path)  # open() would say IsADirectoryError, in a traceback
    has_rows = False
    try:
        with open(path, encoding=encoding, newline="") as f:
            lines = _line_ends_checked(path, f, refuse_nul)
            header = next(lines, "").rstrip("\r\n").lstrip("\ufeff")  # pandas drops a byte-order mark
            names = header.split(separator)
            if not header.strip() or any(":" not in name for name in names):
                raise DataError(f"{path}: the first line {header!r} is not a header of 'name:type' fields separated "
                                f"by {separator!r} (e.g. 'item_id:token{separator}title:token_seq').")
            plain = [name.partition(":")[0] for name in names]
            twice = next((name for k, name in enumerate(plain) if name in plain[:k]), None)
            if twice is not None:  # pandas renames the second; the LLM stage read the wrong column as the title
                raise _named_twice(path, header, twice)
            id_column = plain.index(id_field) if id_field in plain else None
            numeric_columns = [(plain.index(name), name, kind) for name, kind in (numeric or {}).items()
                               if name in plain]
            for start, values in _filled_records(path, lines, separator, quoted):
                has_rows = True
                if len(values) > len(names):
                    hint = (" Double quotes are text here (the file is not in load_col, so RecBole does not load "
                            "it and the LLM stage reads it as plain lines): to read quoted fields as RecBole does, "
                            "add the file to load_col." if not quoted and '"' in separator.join(values) else "")
                    raise DataError(f"{path}:{start}: {len(values)} fields, but the header {header!r} has "
                                    f"{len(names)}: every line needs one value per header field, separated by "
                                    f"{separator!r}.{hint}")
                if id_column is not None and id_column < len(values):
                    _check_id_value(path, start, id_field, values[id_column])
                    if ids is not None:
                        ids.add(values[id_column])
                for k, name, kind in numeric_columns:  # RecBole's reader fails on them with a traceback
                    if k < len(values):
                        _check_number(path, start, name, kind, values[k], seq_separator)
    except UnicodeDecodeError as error:
        raise encoding_error(path, encoding, error) from None
    return has_rows


def _check_id_value(path, line_no, name, value):
    """An id that pandas reads as a missing value (:data:`PANDAS_NA_STRINGS`) is an error naming it: RecBole drops
    its row with a warning (and, after a row of a missing user id, drops other rows for missing item ids)."""
    if value in PANDAS_NA_STRINGS:
        raise DataError(f"{path}:{line_no}: '{name}' is {value!r}, which RecBole's reader (pandas) reads as a missing "
                        "value, so the row would be dropped: rename the id in the dataset's files (e.g. "
                        f"{value + '_' + name.split('_')[0]!r}).")


def _quote_error(path, start, end, error):
    """A record RecBole's reader would take apart at a double quote (it takes ``"`` as a CSV quote character)."""
    fix = ("remove the double quotes from the field, or quote the whole field and double each quote inside it "
           '(\"a \"\"quoted\"\" word\")')
    if isinstance(error, csv.Error) and "field larger than field limit" in str(error):
        return DataError(f"{path}:{start}: a field longer than {csv.field_size_limit():,} characters, which RecBole's "
                         "reader (pandas' Python engine) cannot read: shorten it.")
    if isinstance(error, csv.Error) and "unexpected end of data" in str(error):
        return DataError(f"{path}:{start}: a field opens a double quote that is never closed, so RecBole's reader "
                         f"(pandas, which takes '\"' as a CSV quote) fails at the end of the file: {fix}.")
    if isinstance(error, csv.Error):
        return DataError(f"{path}:{start}: a double quote that RecBole's reader (pandas, which takes '\"' as a CSV "
                         f"quote) cannot parse ({error}, line {end}): {fix}.")
    return DataError(f"{path}:{start}: a field opens a double quote that is closed only on line {end}, so RecBole's "
                     f"reader (pandas, which takes '\"' as a CSV quote) would read lines {start}-{end} as one row (an "
                     f"atomic file holds one per line): {fix}, or close the quote on its own line.")


def _check_number(path, line, name, kind, value, seq_separator=" "):
    """A loaded ``float`` field's value (``float_seq``: each of its parts split at ``seq_separator``, empty parts
    skipped, as RecBole splits them) is a number or empty: RecBole's reader fails on anything else, spaces alone
    included, with a traceback that names no line."""
    for part in value.split(seq_separator) if kind == "float_seq" else [value]:
        if part:
            try:
                float(part)
            except ValueError:
                raise DataError(f"{path}:{line}: field '{name}' is {part!r}, not a number (it is "
                                f"'{name}:{kind}').") from None


def _check_rows(path, lines, header, fields, separator, config, loaded, known):
    """Every non-blank record after the header, split as RecBole's reader splits it (:func:`_records`): the
    header's field count, numbers in loaded float fields, no id pandas reads as missing (an empty one only in
    pre-split files, or for an item after an empty user id); quotes that would merge lines or
    fail pandas are named, and ids with surrounding spaces (RecBole keeps them: ``'U1 '`` is not ``'U1'``) are
    counted in a warning. Returns the number of records, ``{id field: (count, first line, first value)}`` of the
    records whose id ``known`` (``{id field: (side file, its ids)}``) lacks, how many records lack one, and how many
    have both ids, neither empty nor lacking."""
    names = list(fields)
    numeric = [names.index(name) for name in _numeric_fields(fields, loaded, _unloaded_columns(config, "inter"))]
    seq_separator = config["seq_separator"] or " "
    ids = [names.index(config["USER_ID_FIELD"]), names.index(config["ITEM_ID_FIELD"])]
    presplit = bool(config["benchmark_filename"])
    rows, spaced, first_spaced = 0, 0, None
    first_empty_user, last_empty_item = None, None
    checked = [(k, names[k], known[names[k]][1]) for k in ids if names[k] in known]
    unknown, dropped, kept = {}, 0, 0
    for start, values in _filled_records(path, lines, separator):
        rows += 1
        if len(values) != len(names):
            count = len(values)
            raise DataError(f"{path}:{start}: {count} field{'s' * (count != 1)}, but the header {header!r} has "
                            f"{len(names)}. Every line needs one value per header field, separated by "
                            f"field_separator {separator!r} (no trailing separator); RecBole would read the columns "
                            "shifted.")
        for k in numeric:
            _check_number(path, start, names[k], fields[names[k]], values[k], seq_separator)
        for position, k in enumerate(ids):
            value = values[k]
            if presplit and not value.strip():
                raise DataError(f"{path}:{start}: empty '{names[k]}'. RecBole reads pre-split files as they are (no "
                                "row with a missing id is dropped): remove the line.")
            if not value:
                if position == 0:
                    first_empty_user = first_empty_user or start
                else:
                    last_empty_item = start
            elif value in PANDAS_NA_STRINGS:
                _check_id_value(path, start, names[k], value)
            if value != value.strip():
                spaced += 1
                first_spaced = first_spaced or (start, names[k], value)
        lacking = [(name, values[k]) for k, name, side in checked if values[k] and values[k] not in side]
        for name, value in lacking:  # (an empty id: RecBole drops the row as missing, above)
            count, line, first = unknown.get(name, (0, start, value))
            unknown[name] = (count + 1, line, first)
        dropped += bool(lacking)
        kept += not lacking and all(values[k] for k in ids)  # RecBole drops a row with an empty id as missing
    if first_empty_user and last_empty_item and last_empty_item > first_empty_user:
        user, item = names[ids[0]], names[ids[1]]
        raise DataError(f"{path}: empty '{user}' on line {first_empty_user} and empty '{item}' on line "
                        f"{last_empty_item}: RecBole 1.2.1 drops the rows of missing user ids, then takes the line "
                        "numbers of missing item ids after them as positions, so it would drop other interactions "
                        "and keep this one: remove the lines with an empty id.")
    if spaced:
        line_no, name, value = first_spaced
        logger.warning(f"{path}:{line_no}: '{name}' is {value!r}, with spaces around it; RecBole keeps them, so it is "
                       f"another id than {value.strip()!r} ({spaced} such id{'s' * (spaced != 1)} in the file). "
                       "Remove the spaces if they are not part of the ids.")
    return rows, unknown, dropped, kept


def _filters_before_side_files(config):
    """``key=value`` of the filters RecBole applies before its side-file filter (``_data_filtering``'s order), so
    that it may drop fewer interactions than the file's lines counted."""
    return [f"{key}={config[key]!r}" for key in ("rm_dup_inter", "val_interval") if config[key] not in _FILTERS[key]]


def _report_unknown_ids(path, rows, unknown, dropped, kept, known, filtered_first=()):
    """Warn about the interactions whose id a loaded ``.user``/``.item`` file lacks (:func:`_check_rows`): RecBole
    drops them without a word (``filter_inter_by_user_or_item``); an error when no interaction would be left
    (``kept``: those rows and the ones with an empty id gone). The counts are the file's lines; ``filtered_first``
    names the filters that remove some of them before (:func:`_filters_before_side_files`)."""
    if not unknown:
        return
    parts = [f"{count} of {rows} interactions have a '{name}' that {known[name][0]} lacks (first: line {line}, "
             f"{value!r})" for name, (count, line, value) in unknown.items()]
    first = (f"; counted in the file: {' and '.join(filtered_first)} remove{'s' * (len(filtered_first) == 1)} "
             "some interactions before, so it may drop fewer" if filtered_first else "")
    message = (f"{path}: {'; '.join(parts)}. RecBole drops those {dropped} interactions "
               f"(filter_inter_by_user_or_item: True{first})")
    if not kept:
        empty = ", and the rows with an empty id" if dropped < rows else ""
        raise DataError(f"{message}{empty}, which leaves none: add the ids to the side file, or check that its ids "
                        "are written as in the interactions.")
    logger.warning(f"{message}: add the ids to the side file to keep them, or set "
                   "--filter_inter_by_user_or_item=False to keep them without user or item features.")


def check_topk_fits(config, dataset):
    """Full ranking needs more items than the largest cut-off (RecBole fails only after the first epoch)."""
    largest, items = max(config["topk"]), dataset.item_num - 1  # RecBole's Config turns an int topk into a list
    if largest > items:
        small = min(10, items)
        raise DataError(f"Dataset '{config['dataset']}' has {items} items, fewer than the largest cut-off topk = "
                        f"{largest}: lower it (e.g. --topk=[{small}] --valid_metric=NDCG@{small}) or use more items.")


def check_label_field(config, dataset):
    """``eval_args`` mode ``labeled`` scores the data's own interactions against their label: without a label field
    (no ``threshold``, no loaded label column) RecBole fails after the first epoch (``KeyError: 'label'``)."""
    labeled = labeled_phases(config)
    if labeled and config["LABEL_FIELD"] not in dataset.field2type:
        raise DataError(f"Option 'eval_args' mode 'labeled' ({', '.join(labeled)}) evaluates the label field "
                        f"'{config['LABEL_FIELD']}', which dataset '{config['dataset']}' does not have (no threshold, "
                        "and no such column loaded): use mode full, uni100 or pop100, or give the .inter file a label "
                        "column (LABEL_FIELD) or set threshold.")


def check_read_dataset(config, dataset):
    """The checks of a run's dataset once RecBole has read it, before it is split (runs and grid cells alike)."""
    check_topk_fits(config, dataset)
    check_label_field(config, dataset)
    check_duplicate_interactions(config, dataset)


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
        sizes = list(getattr(dataset, "file_size_list", [len(keys)]))
        _warn_presplit_duplicates(config, keys, sizes)
        _warn_presplit_unseen(config, users, items, sizes)
        return
    _, counts = np.unique(keys, return_counts=True)
    repeated = counts[counts > 1]
    if len(repeated):
        logger.warning(f"{' and '.join(_inter_files(config))}: {len(repeated)} (user, item) pairs occur on more than "
                       f"one row ({int(repeated.sum()) - len(repeated)} extra of {len(users)} rows). RecBole keeps "
                       "them, so they count several times in training and a pair can be both a training and a test "
                       "item, which RecBole's full ranking does not mask (an easy hit). Set rm_dup_inter: first (or "
                       "--rm_dup_inter=first) to keep only the first of each (the earliest when a timestamp field is "
                       "loaded, load_col).")


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


def _warn_presplit_unseen(config, users, items, sizes):
    """Pre-split files: count evaluation users and items that the training file never names. Cold users and items
    can be intended, but ids written differently in the files (``7`` and ``7.0``) look the same way."""
    paths = _inter_files(config)
    bounds = np.cumsum([0] + sizes)
    train_users, train_items = set(users[:bounds[1]].tolist()), set(items[:bounds[1]].tolist())
    for path, start, end in zip(paths[1:], bounds[1:-1], bounds[2:]):
        new_users = set(users[start:end].tolist()) - train_users
        new_items = set(items[start:end].tolist()) - train_items
        if new_users or new_items:
            logger.warning(f"{path}: {len(new_users)} users and {len(new_items)} items that {paths[0]} never names "
                           "(cold: the model has only their untrained embeddings). Check that the files write ids "
                           "alike (e.g. '7' and '7.0' are different tokens).")


def check_splits_not_empty(config, valid_data, test_data):
    """An empty validation or test split would end the run with ``test result: None``."""
    split = config["eval_args"]["split"]
    ratios = split.get("RS") if isinstance(split, dict) else None
    for index, (name, data) in enumerate((("validation", valid_data), ("test", test_data))):
        if data is None or len(data.dataset):
            continue
        if (isinstance(split, dict) and split.get("LS") in ("valid_only", "test_only")
                or isinstance(ratios, (list, tuple)) and len(ratios) == 3 and not ratios[1 + index]):
            raise DataError(f"The {name} split of dataset '{config['dataset']}' is empty: eval_args split {split} "
                            f"gives it no interaction. The plugin's runs validate and test: give both splits a "
                            "share, e.g. \"--eval_args={'split': {'RS': [0.8, 0.1, 0.1]}}\" or {'LS': "
                            "'valid_and_test'}.")
        raise DataError(f"The {name} split of dataset '{config['dataset']}' is empty: RecBole splits each user's "
                        f"interactions by eval_args split {split}, and users with too few interactions leave that "
                        "split empty. Use a dataset with more interactions per user (e.g. a k-core filter: "
                        "--user_inter_num_interval=\"[5,inf)\").")
