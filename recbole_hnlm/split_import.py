"""Import a published train/test split as RecBole atomic files, to compare on the split the papers report::

    python -m recbole_hnlm.split_import --dataset yelp2018 --train yelp2018/train.txt --test yelp2018/test.txt \\
        --out /data/atomic
    python run_recbole_hnlm.py --model=LightGCN --sampler=MixGCF --dataset=yelp2018 --data_path=/data/atomic \\
        "--benchmark_filename=['train','valid','test']"

MixGCF, AHNS and LightGCN publish Yelp2018 and Amazon-Book as ``train.txt``/``test.txt`` in *adjacency* format (one
line per user: ``user item item ...``); HNLMRec's SELFRec code reads *pairs* (``user item [weight]`` per line).
``--format auto`` (the default) tells them apart and stops when a file could be either.

The papers have no validation split: they pick their best epoch on the test split. RecBole early-stops and picks the
best epoch on a validation split, so ``--valid`` chooses one:

* ``holdout`` (default): a seeded per-user hold-out of the published training file (``--valid_ratio``, ``--seed``;
  every user keeps at least one training pair). Model selection never sees the test split, but the model trains on
  ``1 - valid_ratio`` of the training pairs, so its numbers sit a little below a run on the whole file.
* ``test``: the validation file is a copy of the test file, the papers' protocol (the whole training file trains,
  the best epoch is picked on the test split, so the test numbers are optimistic). RecBole does not mask a user's
  test items at test time even when they are also validation items, so this ranks as the papers' code does.

The published test split is written unchanged, unless ``--drop_test_pairs_in_train`` removes its pairs that are also
training pairs: RecBole ranks such a pair's item at test time (it masks only the *other* training items of a user),
where the papers' code masks every training item.

Written to ``<out>/<dataset>/``: ``<dataset>.{train,valid,test}.inter`` (``user_id:token``, ``item_id:token``, ids
as in the source files, or the original ids of ``--user_list``/``--item_list``: the ``user_list.txt`` and
``item_list.txt`` LightGCN's data ships, ``org_id remap_id`` per line, so that the ids join RecBole's
``.item``/``.user`` files and HNLMRec's LLM stages find each item's text) and ``<dataset>.split.json`` (the sources'
and outputs' sha256, the options, counts and warnings). RecBole reads pre-split files as they are, without
filtering or k-core, so what is written is what trains and evaluates. Rerunning with the same sources and options
changes nothing; other sources or options, or output files changed since, need ``--overwrite``.
"""
import argparse
import json
import logging
import os
import shlex
import sys
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from recbole_hnlm.data_checks import PANDAS_NA_STRINGS
from recbole_hnlm.errors import DataError, WriteError, exit_status
from recbole_hnlm.files import atomic_path, file_sha256, write_failed, write_failure_errno, write_json_atomic
from recbole_hnlm.signals import interrupted_status, say_interrupted, sigterm_as_interrupt

logger = logging.getLogger(__name__)

PARTS = ("train", "valid", "test")
FORMATS = ("auto", "adjacency", "pairs")
VALID_SOURCES = ("holdout", "test")
HEADER = "user_id:token\titem_id:token\n"
#: The RecBole option that reads the three files, as written on a command line.
BENCHMARK_FILENAME = "[" + ",".join(f"'{part}'" for part in PARTS) + "]"


@dataclass
class SplitFile:
    """One source file read as ``(user, item)`` pairs, first occurrence kept, in file order."""

    path: str
    format: str
    pairs: list = field(default_factory=list)
    duplicates: int = 0
    users_without_items: int = 0
    weights: set = field(default_factory=set)


def _is_id(token: str) -> bool:
    """A non-negative integer written in ASCII digits (``str.isdigit`` alone also accepts e.g. superscripts)."""
    return token.isascii() and token.isdigit()


def _parse_id(token: str, path: str, line_no: int, what: str) -> int:
    if not _is_id(token):
        raise DataError(f"{path}:{line_no}: {what} {token!r} is not a non-negative integer id (a header line? "
                        "the published files have none).")
    if len(token) > 1 and token[0] == "0":
        raise DataError(f"{path}:{line_no}: {what} {token!r} has a leading zero; ids are written back as integers, "
                        f"so it and {str(int(token))!r} would be one id. Strip the zeros, or rename the ids.")
    return int(token)


def _rows(path: str):
    """``(line number, whitespace-split fields)`` of every non-blank line."""
    try:
        handle = open(path, encoding="utf-8-sig")  # a byte-order mark is not part of the first id
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None
    line_no = 0
    with handle:
        try:
            for line_no, line in enumerate(handle, 1):
                fields = line.split()
                if fields:
                    yield line_no, fields
        except UnicodeDecodeError:
            raise DataError(f"{path}:{_first_undecodable_line(path)}: not UTF-8 text (a compressed file? gunzip it "
                            "first).") from None


def _first_undecodable_line(path: str) -> int:
    """The number of the first line that is not UTF-8 (the text reader decodes whole blocks, so the line it had
    reached when the error came can be hundreds of lines earlier)."""
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, 1):
            try:
                raw.decode("utf-8")  # no UTF-8 character holds the byte of "\n": a line split cuts none
            except UnicodeDecodeError:
                return line_no
    return 1


def detect_format(*paths: str) -> str:
    """``adjacency`` or ``pairs``, from the column counts and the third column of all ``paths`` together (a
    published split is in one format; its test file alone is often ambiguous).

    Adjacency lists vary in length; a line with more than three fields is only possible in that format, unless every
    line has the same four or more fields (a table such as ``user item rating timestamp``: refused). When every line
    has two fields both formats read the same pairs. When the longest lines have three fields, a non-integer
    third column is a weight (pairs), and so is a constant one when every line has three fields ('user item 1');
    anything else could be either (two-field lines beside a few 'user item item' lines: a constant third column of
    one line says nothing), and the caller must say which. So must they when three-field lines outnumber the longer
    ones nine to one (weighted pairs with a few malformed lines).
    """
    lengths, thirds = Counter(), set()
    for path in paths:
        for _, fields in _rows(path):
            lengths[len(fields)] += 1
            if len(fields) == 3:
                thirds.add(fields[2])
    counts = set(lengths)
    if not counts or max(counts) <= 2:
        return "pairs"
    if max(counts) > 3:
        longer = sum(n for length, n in lengths.items() if length > 3)
        if lengths[3] >= 9 * longer:  # 'user item weight' lines with a few stray longer ones
            raise DataError(f"{', '.join(paths)}: {lengths[3]} lines have three fields and only {longer} more, so "
                            "they look like 'user item weight' pairs with a few malformed lines, or short adjacency "
                            "lists; pass --format pairs or --format adjacency.")
        if len(counts) == 1:
            raise DataError(f"{', '.join(paths)}: every line has {max(counts)} fields, like a table (user item rating "
                            "timestamp?) rather than adjacency lists 'user item item ...', whose lengths vary; pass "
                            "--format adjacency if they are lists, or cut the file to 'user item' pairs.")
        return "adjacency"
    if not all(map(_is_id, thirds)) or (len(thirds) == 1 and set(lengths) == {3}):
        return "pairs"
    raise DataError(f"{', '.join(paths)}: every line has at most three fields ({lengths[3]} have three), so they "
                    "could be 'user item weight' pairs or 'user item item' adjacency lists; pass --format pairs or "
                    "--format adjacency.")


def read_split_file(path: str, file_format: str = "auto") -> SplitFile:
    """Read ``path`` in ``adjacency`` (``user item item ...``) or ``pairs`` (``user item [weight]``) format."""
    if file_format not in FORMATS:
        raise DataError(f"--format must be one of {FORMATS}, got {file_format!r}")
    if file_format == "auto":
        file_format = detect_format(path)
    result = SplitFile(path=path, format=file_format)
    seen = set()
    for line_no, fields in _rows(path):
        user = _parse_id(fields[0], path, line_no, "user")
        if file_format == "pairs":
            if len(fields) not in (2, 3):
                raise DataError(f"{path}:{line_no}: {len(fields)} fields; pairs format is 'user item' or "
                                "'user item weight' (lists of items are --format adjacency).")
            items = [_parse_id(fields[1], path, line_no, "item")]
            if len(fields) == 3:
                try:
                    result.weights.add(float(fields[2]))
                except ValueError:
                    raise DataError(f"{path}:{line_no}: weight {fields[2]!r} is not a number.") from None
        else:
            items = [_parse_id(token, path, line_no, "item") for token in fields[1:]]
            if not items:
                result.users_without_items += 1
        for item in items:
            if (user, item) in seen:
                result.duplicates += 1
                continue
            seen.add((user, item))
            result.pairs.append((user, item))
    if not result.pairs:
        raise DataError(f"{path} has no (user, item) pairs.")
    return result


def hold_out_validation(train_pairs, valid_ratio: float, seed: int):
    """``(train, valid)``: each user's pairs split at random, ``valid_ratio`` of them held out in expectation.

    A user with ``n`` pairs gives ``floor(n * r)`` pairs, plus one more with probability ``frac(n * r)``, and keeps
    at least one: users with one pair keep it. Users are visited in id order and pairs keep their file order, so the
    split depends only on the pairs, ``valid_ratio`` and ``seed``.
    """
    if not 0.0 < valid_ratio < 1.0:
        raise DataError(f"--valid_ratio must be in (0, 1), got {valid_ratio}")
    by_user = {}
    for user, item in train_pairs:
        by_user.setdefault(user, []).append(item)
    rng = np.random.default_rng(seed)
    held = set()
    for user in sorted(by_user):
        items = by_user[user]
        share = len(items) * valid_ratio
        count = int(share) + int(rng.random() < share - int(share))
        count = min(count, len(items) - 1)
        if count > 0:
            for index in rng.choice(len(items), size=count, replace=False):
                held.add((user, items[index]))
    train = [pair for pair in train_pairs if pair not in held]
    valid = [pair for pair in train_pairs if pair in held]
    return train, valid


def _summary(parts, train_file, test_file, training_pairs, valid_source, dropped, user_names=None):
    """Counts and the warnings worth reading before a run (``training_pairs``: the set of the training file's;
    ``user_names``: ``{remap_id: org_id}`` of a user list, whose ids the warnings name, as the written files do)."""
    train, test = parts["train"], parts["test"]
    train_users, train_items = {user for user, _ in train}, {item for _, item in train}
    test_users, test_items = {user for user, _ in test}, {item for _, item in test}
    counts = {f"{part}_pairs": len(pairs) for part, pairs in parts.items()}
    counts.update({
        "users": len({user for user, _ in train_file.pairs} | test_users),
        "items": len({item for _, item in train_file.pairs} | test_items),
        "test_users": len(test_users),
        "test_users_without_training_pairs": len(test_users - train_users),
        "test_items_without_training_pairs": len(test_items - train_items),
        "test_pairs_also_in_train": sum(pair in training_pairs for pair in test),
        "test_pairs_in_train_dropped": dropped,
        "duplicate_pairs_dropped": train_file.duplicates + test_file.duplicates,
        "users_listed_without_items": train_file.users_without_items + test_file.users_without_items,
    })
    if valid_source == "holdout":
        counts["items_only_in_validation"] = len({item for _, item in parts["valid"]} - train_items)
    warnings = []
    if counts["test_pairs_also_in_train"]:
        warnings.append(f"{counts['test_pairs_also_in_train']} test pairs are also training pairs. RecBole's full "
                        "ranking does not mask a training item that is also the user's test item, so these are easy "
                        "hits that raise Recall/NDCG (the papers' code masks every training item); "
                        "--drop_test_pairs_in_train removes them from the test file.")
    if dropped:
        warnings.append(f"{dropped} test pairs that are also training pairs were dropped from the test file.")
    if counts["duplicate_pairs_dropped"]:
        warnings.append(f"{counts['duplicate_pairs_dropped']} repeated (user, item) pairs were dropped "
                        f"({train_file.duplicates} in {train_file.path}, {test_file.duplicates} in {test_file.path}).")
    if counts["test_users_without_training_pairs"]:
        warnings.append(f"{counts['test_users_without_training_pairs']} test users have no training pairs (cold "
                        "users, ranked from an untrained embedding).")
    if counts["test_items_without_training_pairs"]:
        warnings.append(f"{counts['test_items_without_training_pairs']} test items have no training pairs (cold "
                        "items, ranked from an untrained embedding: their test pairs are near-certain misses).")
    if counts.get("items_only_in_validation"):
        also_cold = len(({item for _, item in parts["valid"]} - train_items) & (test_items - train_items))
        warnings.append(f"{counts['items_only_in_validation']} items have all their training pairs in the validation "
                        "hold-out, so the model never trains on them" + (
                            f" ({also_cold} of them among the test items above)." if also_cold else "."))
    every_item = [user_names[user] if user_names else user for user in _users_with_every_item(parts)]
    if every_item:
        warnings.append(f"{len(every_item)} user{'s' * (len(every_item) > 1)} ({', '.join(map(str, every_item[:5]))}"
                        f"{' ...' * (len(every_item) > 5)}) interacted with every item of the files, so RecBole's "
                        "sampler has no negative item for them and a run stops: remove some of their pairs (RecBole "
                        "filters no pre-split files).")
    if valid_source == "test":
        warnings.append("The validation file is the test file (--valid test, the papers' protocol): the best epoch is "
                        "picked on the test split, so the test numbers are optimistic.")
    for source in (train_file, test_file):
        if len(source.weights) > 1:
            warnings.append(f"{source.path}: the third column (weights) varies; it is not imported, every pair is a "
                            "positive as in the papers.")
    return counts, warnings


def _users_with_every_item(parts):
    """The users whose pairs, over every part, name every item the parts name (sorted)."""
    items_of = {}
    for pairs in parts.values():
        for user, item in pairs:
            items_of.setdefault(user, set()).add(item)
    n_items = len(set().union(*items_of.values())) if items_of else 0
    return sorted(user for user, items in items_of.items() if len(items) == n_items)


def read_id_list(path: str, what: str) -> dict:
    """``{remapped integer id: original token}`` of a LightGCN ``user_list.txt``/``item_list.txt`` (``org_id remap_id
    [freebase_id]`` per line, after an optional header line)."""
    mapping, originals = {}, {}
    for line_no, fields in _rows(path):
        if line_no == 1 and fields[:2] == ["org_id", "remap_id"]:
            continue  # the header
        if len(fields) < 2 or not _is_id(fields[1]):
            raise DataError(f"{path}:{line_no}: expected 'org_id remap_id' (the {what} list of LightGCN's data: the "
                            f"original id, then the integer of train.txt/test.txt), got {' '.join(fields)!r}")
        original, remapped = fields[0], _parse_id(fields[1], path, line_no, "remap_id")
        if original.startswith('"'):  # the run would stop at the atomic file's line instead
            raise DataError(f"{path}:{line_no}: org_id {original!r} starts with a double quote, which RecBole reads "
                            f"as a CSV quote in the atomic files; remove the quote from the list")
        if original in PANDAS_NA_STRINGS:
            raise DataError(f"{path}:{line_no}: org_id {original!r} is what RecBole's reader (pandas) takes as a "
                            f"missing value, so its rows would be dropped; rename it in the list (e.g. "
                            f"{original + '_' + what!r})")
        if remapped in mapping:
            raise DataError(f"{path}:{line_no}: remap_id {remapped} is listed twice")
        if original in originals:
            raise DataError(f"{path}:{line_no}: org_id {original!r} is listed twice (remap_id {originals[original]} "
                            f"and {remapped})")
        mapping[remapped], originals[original] = original, remapped
    if not mapping:
        raise DataError(f"{path}: no ids listed")
    return mapping


def _original_ids(parts, users, items, lists):
    """``parts`` with the ids of ``users``/``items`` (``{remap_id: org_id}`` or ``None``) put back; an id of the split
    that a list lacks is an error naming the list."""
    for position, what, mapping in ((0, "user", users), (1, "item", items)):
        if mapping is None:
            continue
        path = lists[f"{what}_list"]
        used = {pair[position] for pairs in parts.values() for pair in pairs}
        missing = sorted(used - mapping.keys())
        if missing:
            raise DataError(f"{path}: no org_id for {len(missing)} {what} id(s) of the split, e.g. {missing[:5]}: is "
                            "it the list of these train/test files?")
        if len(mapping) != len(used):  # LightGCN's lists name exactly the users (items) of its files
            logger.warning("%s lists %d ids, the split has %d %ss: is it the %s list of these files?", path,
                           len(mapping), len(used), what, what)
    return {part: [(users[u] if users else u, items[i] if items else i) for u, i in pairs]
            for part, pairs in parts.items()}


def _manifest(train_file, test_file, options, counts, warnings, lists=None):
    sources = [("train", train_file.path, train_file.format), ("test", test_file.path, test_file.format)]
    sources += [(name, path, "id list") for name, path in sorted((lists or {}).items())]
    return {
        "sources": {part: {"path": os.path.abspath(path), "sha256": file_sha256(path), "format": file_format}
                    for part, path, file_format in sources},
        "options": options,
        "counts": counts,
        "warnings": warnings,
        "benchmark_filename": list(PARTS),
    }


def _read_manifest(path: str):
    """The manifest at ``path``, ``None`` when there is none."""
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, ValueError) as error:
        raise DataError(f"{path} is unreadable ({error}); pass --overwrite to import the split again.") from None
    if not isinstance(manifest, dict):
        raise DataError(f"{path} is not a split manifest; pass --overwrite to import the split again.")
    return manifest


def _same_inputs(old, new) -> bool:
    """The same options and source contents (by sha256, wherever the sources now lie)."""
    if any(old.get(key) != new[key] for key in ("options", "benchmark_filename")):
        return False
    sources = old.get("sources")
    if not isinstance(sources, dict) or not all(isinstance(src, dict) for src in sources.values()):
        return False  # a hand-edited manifest: "records other sources", and --overwrite imports again
    return ({part: src.get("sha256") for part, src in sources.items()}
            == {part: src["sha256"] for part, src in new["sources"].items()})


def _up_to_date(old, new, targets) -> bool:
    """Same sources and options, and every output file as that import wrote it."""
    if old is None or not _same_inputs(old, new):
        return False
    outputs = old.get("outputs") or {}
    return all(os.path.exists(path) and outputs.get(part) == file_sha256(path) for part, path in targets.items())


def import_split(dataset: str, train_path: str, test_path: str, out: str, valid: str = "holdout",
                 valid_ratio: float = 0.1, seed: int = 2020, file_format: str = "auto",
                 drop_test_pairs_in_train: bool = False, overwrite: bool = False, user_list: str = None,
                 item_list: str = None) -> dict:
    """Write ``<out>/<dataset>/<dataset>.{train,valid,test}.inter`` and ``<dataset>.split.json``; return the
    manifest. ``user_list``/``item_list``: LightGCN's id lists, whose original ids are written instead of the
    remapped integers (:func:`read_id_list`). Nothing is written when an input is bad, and existing files are kept
    unless they are this very import (then nothing is written) or ``overwrite``."""
    if not dataset or os.sep in dataset or dataset.startswith("."):
        raise DataError(f"--dataset must be a plain folder name, got {dataset!r}")
    if dataset == "ml-100k":
        raise DataError("--dataset ml-100k is RecBole's bundled example: RecBole always reads it from its own folder "
                        "and ignores data_path, so an import under that name could never be used; give it another "
                        "name (e.g. ml-100k-split)")
    if valid not in VALID_SOURCES:
        raise DataError(f"--valid must be one of {VALID_SOURCES}, got {valid!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DataError(f"--seed must be an integer >= 0, got {seed!r}")
    if file_format == "auto":
        file_format = detect_format(train_path, test_path)
    train_file = read_split_file(train_path, file_format)
    test_file = read_split_file(test_path, file_format)
    training_pairs = set(train_file.pairs)
    test, dropped = test_file.pairs, 0
    if drop_test_pairs_in_train:
        test = [pair for pair in test_file.pairs if pair not in training_pairs]
        dropped = len(test_file.pairs) - len(test)
        if not test:
            raise DataError(f"every pair of {test_path} is also a training pair; nothing is left to test on.")
    if valid == "holdout":
        train, valid_pairs = hold_out_validation(train_file.pairs, valid_ratio, seed)
        if not valid_pairs:
            raise DataError(f"the validation hold-out of {train_path} is empty (--valid_ratio {valid_ratio} of users "
                            "with at least two training pairs): raise --valid_ratio, or pass --valid test.")
        options = {"valid": valid, "valid_ratio": valid_ratio, "seed": seed}
    else:
        train, valid_pairs = list(train_file.pairs), list(test)
        options = {"valid": valid}
    options.update(format=file_format, drop_test_pairs_in_train=drop_test_pairs_in_train)
    parts = {"train": train, "valid": valid_pairs, "test": test}
    lists = {name: path for name, path in (("user_list", user_list), ("item_list", item_list)) if path}
    user_names = read_id_list(user_list, "user") if user_list else None
    parts_as_read = parts
    parts = _original_ids(parts, user_names, read_id_list(item_list, "item") if item_list else None, lists)
    counts, warnings = _summary(parts_as_read, train_file, test_file, training_pairs, valid, dropped, user_names)
    manifest = _manifest(train_file, test_file, options, counts, warnings, lists)

    folder = os.path.join(out, dataset)
    manifest_path = os.path.join(folder, f"{dataset}.split.json")
    targets = {part: os.path.join(folder, f"{dataset}.{part}.inter") for part in PARTS}
    existing = [path for path in [*targets.values(), manifest_path] if os.path.exists(path)]
    if existing and not overwrite:
        old = _read_manifest(manifest_path)
        if _up_to_date(old, manifest, targets):
            logger.info("%s is up to date (same sources and options); nothing written", folder)
            return old
        if old is None:
            reason = f"{existing[0]} exists without {manifest_path}"
        elif not all(map(os.path.exists, targets.values())):
            reason = f"{next(p for p in targets.values() if not os.path.exists(p))} is missing"
        elif not _same_inputs(old, manifest):
            reason = f"{manifest_path} records other sources or options"
        else:
            reason = "a split file changed since it was imported"
        raise DataError(f"{folder}: {reason}; pass --overwrite to import the split again, or choose another --out "
                        "or --dataset.")
    for message in warnings:
        logger.warning(message)
    try:
        if os.path.lexists(manifest_path):
            os.remove(manifest_path)  # first: without it, a half-replaced set of files is never taken as up to date
        with atomic_path(targets["train"]) as tmp_train, atomic_path(targets["valid"]) as tmp_valid, \
                atomic_path(targets["test"]) as tmp_test:
            for tmp, part in ((tmp_train, "train"), (tmp_valid, "valid"), (tmp_test, "test")):
                try:
                    with open(tmp, "w", encoding="utf-8") as handle:
                        handle.write(HEADER)
                        handle.writelines(f"{user}\t{item}\n" for user, item in parts[part])
                except OSError as error:  # named here: the innermost of the three writes would name the test file
                    if write_failure_errno(error):
                        raise write_failed(targets[part], error) from error
                    raise
        manifest["outputs"] = {part: file_sha256(path) for part, path in targets.items()}
        write_json_atomic(manifest_path, manifest)  # last: its presence says the three files are complete
    except WriteError:  # a full disk: names the file and its cause already
        raise
    except OSError as error:
        name = error.filename or folder  # an atomic write names its target, never its temporary file
        raise DataError(f"--out {out}: cannot write {name} ({error.strerror}); choose a writable folder, or remove "
                        "what is in the way.") from None
    return manifest


def run_command(dataset: str, out: str) -> str:
    """The run that trains on the imported split."""
    return (f"python run_recbole_hnlm.py --model=LightGCN --sampler=MixGCF {shlex.quote('--dataset=' + dataset)} "
            f"{shlex.quote('--data_path=' + os.path.abspath(out))} \"--benchmark_filename={BENCHMARK_FILENAME}\"")


def _unfinished_import(out: str, dataset: str) -> str:
    """What an interrupted import left, and how to go on: its split files are replaced only after the manifest is
    removed, so split files without a manifest are an incomplete set, which only ``--overwrite`` replaces."""
    folder = os.path.join(out, dataset)
    written = [part for part in PARTS if os.path.exists(os.path.join(folder, f"{dataset}.{part}.inter"))]
    if written and not os.path.exists(os.path.join(folder, f"{dataset}.split.json")):
        return f"the split files in {folder} are incomplete; rerun the command with --overwrite"
    return "the import did not finish; rerun the command"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recbole_hnlm.split_import", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="dataset name: the folder and file stem written")
    parser.add_argument("--train", required=True, help="published training file (train.txt)")
    parser.add_argument("--test", required=True, help="published test file (test.txt)")
    parser.add_argument("--out", required=True, help="RecBole data_path the dataset folder is written into")
    parser.add_argument("--format", choices=FORMATS, default="auto",
                        help="adjacency ('user item item ...', LightGCN/MixGCF/AHNS) or pairs ('user item [weight]', "
                             "SELFRec/HNLMRec); auto detects it")
    parser.add_argument("--valid", choices=VALID_SOURCES, default="holdout",
                        help="holdout: a seeded per-user hold-out of the training file (default); test: a copy of the "
                             "test file, the papers' protocol (best epoch picked on the test split)")
    parser.add_argument("--valid_ratio", type=float,
                        help="share of each user's training pairs held out for validation (default 0.1)")
    parser.add_argument("--seed", type=int, help="seed of the validation hold-out (default 2020)")
    parser.add_argument("--drop_test_pairs_in_train", action="store_true",
                        help="drop test pairs that are also training pairs (RecBole would rank them as easy hits)")
    parser.add_argument("--user_list", help="LightGCN's user_list.txt (org_id remap_id): write the original user ids")
    parser.add_argument("--item_list", help="LightGCN's item_list.txt (org_id remap_id [freebase_id]): write the "
                                            "original item ids, which RecBole's .item file and the LLM stages join on")
    parser.add_argument("--overwrite", action="store_true", help="replace the split files of another import")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    hold_out = {name: getattr(args, name) for name in ("valid_ratio", "seed") if getattr(args, name) is not None}
    if args.valid == "test" and hold_out:  # not given: import_split's defaults
        logger.warning("%s: not used with --valid test (the validation file is a copy of the test file)",
                       " and ".join(f"--{name}" for name in hold_out))
    try:
        with sigterm_as_interrupt():
            manifest = import_split(args.dataset, args.train, args.test, args.out, valid=args.valid, **hold_out,
                                    file_format=args.format,
                                    drop_test_pairs_in_train=args.drop_test_pairs_in_train, overwrite=args.overwrite,
                                    user_list=args.user_list, item_list=args.item_list)
    except (DataError, WriteError) as error:
        print(f"error: {error}", file=sys.stderr)
        return exit_status(error)  # a full disk is not bad input
    except KeyboardInterrupt:
        say_interrupted(f"interrupted: {_unfinished_import(args.out, args.dataset)}")
        return interrupted_status()
    counts = manifest["counts"]
    print(f"{args.dataset}: {counts['users']} users, {counts['items']} items; train {counts['train_pairs']}, "
          f"valid {counts['valid_pairs']}, test {counts['test_pairs']} pairs -> "
          f"{os.path.join(args.out, args.dataset)}")
    print(f"run: {run_command(args.dataset, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
