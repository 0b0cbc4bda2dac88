"""Import a published train/test split as RecBole atomic files, to compare on the split the papers report::

    python -m recbole_hnlm.split_import --dataset yelp2018 --train yelp2018/train.txt --test yelp2018/test.txt \\
        --out /data/atomic
    python run_recbole_hnlm.py --model=LightGCN --sampler=MixGCF --dataset=yelp2018 --data_path=/data/atomic \\
        "--benchmark_filename=['train','valid','test']"

MixGCF, AHNS and LightGCN publish Yelp2018 and Amazon-Book as ``train.txt``/``test.txt`` in *adjacency* format (one
line per user: ``user item item ...``); HNLMRec's SELFRec code reads *pairs* (``user item [weight]`` per line).
``--format auto`` (the default) tells them apart and stops when a file could be either.

The papers select their best epoch on the test split and have no validation split. RecBole needs one, and it cannot
reuse the test split: its full ranking masks the training *and validation* items of each user at test time, so a copy
of the test split as validation would hide every test item. The validation split is therefore held out of the
published training split, per user and seeded (``--valid_ratio``, ``--seed``): every user keeps at least one training
item, and the published test split is written unchanged. Model selection then never sees the test split.

Written to ``<out>/<dataset>/``: ``<dataset>.{train,valid,test}.inter`` (``user_id:token``, ``item_id:token``, ids
as in the source files) and ``<dataset>.split.json`` (the sources' sha256, the options, counts and warnings). RecBole
reads pre-split files as they are, without filtering or k-core, so what is written is what trains and evaluates.
Rerunning with the same sources and options changes nothing; other sources or options need ``--overwrite``.
"""
import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from recbole_hnlm.errors import DataError
from recbole_hnlm.files import atomic_path, file_sha256, write_json_atomic

logger = logging.getLogger(__name__)

PARTS = ("train", "valid", "test")
FORMATS = ("auto", "adjacency", "pairs")
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


def _parse_id(token: str, path: str, line_no: int, what: str) -> int:
    if not token.isdigit():
        raise DataError(f"{path}:{line_no}: {what} {token!r} is not a non-negative integer id (a header line? "
                        "the published files have none).")
    return int(token)


def _rows(path: str):
    """``(line number, whitespace-split fields)`` of every non-blank line."""
    try:
        handle = open(path, encoding="utf-8")
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None
    with handle:
        for line_no, line in enumerate(handle, 1):
            fields = line.split()
            if fields:
                yield line_no, fields


def detect_format(*paths: str) -> str:
    """``adjacency`` or ``pairs``, from the column counts and the third column of all ``paths`` together (a
    published split is in one format; its test file alone is often ambiguous).

    A line with more than three fields is only possible in adjacency format. When every line has two fields both
    formats read the same pairs. When the longest lines have three fields, a non-integer or constant third column is
    a weight (pairs); anything else could be either, and the caller must say which.
    """
    longest, thirds = 0, set()
    for path in paths:
        for _, fields in _rows(path):
            longest = max(longest, len(fields))
            if longest > 3:
                return "adjacency"
            if len(fields) == 3:
                thirds.add(fields[2])
    if longest <= 2:
        return "pairs"
    if len(thirds) == 1 or any(not value.isdigit() for value in thirds):
        return "pairs"
    raise DataError(f"{', '.join(paths)}: every line has at most three fields, so they could be 'user item weight' "
                    "pairs or 'user item item' adjacency lists; pass --format pairs or --format adjacency.")


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
                result.weights.add(fields[2])
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


def _summary(parts, train_file, test_file):
    """Counts and the warnings worth reading before a run."""
    train_users = {user for user, _ in parts["train"]} | {user for user, _ in parts["valid"]}
    train_items = {item for _, item in parts["train"]} | {item for _, item in parts["valid"]}
    train_set = set(parts["train"]) | set(parts["valid"])
    test = parts["test"]
    counts = {f"{part}_pairs": len(pairs) for part, pairs in parts.items()}
    counts.update({
        "users": len(train_users | {user for user, _ in test}),
        "items": len(train_items | {item for _, item in test}),
        "test_users": len({user for user, _ in test}),
        "test_users_without_training_pairs": len({user for user, _ in test} - train_users),
        "test_items_without_training_pairs": len({item for _, item in test} - train_items),
        "test_pairs_also_in_train": sum(pair in train_set for pair in test),
        "duplicate_pairs_dropped": train_file.duplicates + test_file.duplicates,
    })
    warnings = []
    if counts["test_pairs_also_in_train"]:
        warnings.append(f"{counts['test_pairs_also_in_train']} test pairs are also training pairs; RecBole masks a "
                        "user's training items when it ranks for the test, so these can never be hit.")
    if counts["duplicate_pairs_dropped"]:
        warnings.append(f"{counts['duplicate_pairs_dropped']} repeated (user, item) pairs were dropped "
                        f"({train_file.duplicates} in {train_file.path}, {test_file.duplicates} in {test_file.path}).")
    if counts["test_users_without_training_pairs"]:
        warnings.append(f"{counts['test_users_without_training_pairs']} test users have no training pairs (cold "
                        "users, ranked from an untrained embedding).")
    for source in (train_file, test_file):
        if len(source.weights) > 1:
            warnings.append(f"{source.path}: the third column (weights) varies; it is not imported, every pair is a "
                            "positive as in the papers.")
    return counts, warnings


def _manifest(train_file, test_file, options, counts, warnings):
    return {
        "sources": {part: {"path": os.path.abspath(source.path), "sha256": file_sha256(source.path),
                           "format": source.format}
                    for part, source in (("train", train_file), ("test", test_file))},
        "options": options,
        "counts": counts,
        "warnings": warnings,
        "benchmark_filename": list(PARTS),
    }


def _same_import(old: dict, new: dict) -> bool:
    keys = ("options", "benchmark_filename")
    return (all(old.get(key) == new.get(key) for key in keys)
            and {part: src.get("sha256") for part, src in old.get("sources", {}).items()}
            == {part: src["sha256"] for part, src in new["sources"].items()})


def import_split(dataset: str, train_path: str, test_path: str, out: str, valid_ratio: float = 0.1,
                 seed: int = 2020, file_format: str = "auto", overwrite: bool = False) -> dict:
    """Write ``<out>/<dataset>/<dataset>.{train,valid,test}.inter`` and ``<dataset>.split.json``; return the
    manifest. Nothing is written when an input is bad, and existing files of another import are kept unless
    ``overwrite``."""
    if not dataset or os.sep in dataset or dataset.startswith("."):
        raise DataError(f"--dataset must be a plain folder name, got {dataset!r}")
    if file_format == "auto":
        file_format = detect_format(train_path, test_path)
    train_file = read_split_file(train_path, file_format)
    test_file = read_split_file(test_path, file_format)
    train, valid = hold_out_validation(train_file.pairs, valid_ratio, seed)
    parts = {"train": train, "valid": valid, "test": test_file.pairs}
    counts, warnings = _summary(parts, train_file, test_file)
    options = {"valid_ratio": valid_ratio, "seed": seed, "format": file_format}
    manifest = _manifest(train_file, test_file, options, counts, warnings)

    folder = os.path.join(out, dataset)
    manifest_path = os.path.join(folder, f"{dataset}.split.json")
    targets = {part: os.path.join(folder, f"{dataset}.{part}.inter") for part in PARTS}
    existing = [path for path in [*targets.values(), manifest_path] if os.path.exists(path)]
    if existing and not overwrite:
        old = None
        if os.path.exists(manifest_path):
            with open(manifest_path, encoding="utf-8") as handle:
                old = json.load(handle)
        if old is not None and _same_import(old, manifest) and all(map(os.path.exists, targets.values())):
            logger.info("%s is up to date (same sources and options); nothing written", folder)
            return old
        origin = ("was imported from other sources or with other options (see its split.json)" if old is not None
                  else "already exists")
        raise DataError(f"{existing[0]} {origin}; pass --overwrite to replace {folder}'s split files, or choose "
                        "another --out or --dataset.")
    for message in warnings:
        logger.warning(message)
    with atomic_path(targets["train"]) as tmp_train, atomic_path(targets["valid"]) as tmp_valid, \
            atomic_path(targets["test"]) as tmp_test:
        for tmp, part in ((tmp_train, "train"), (tmp_valid, "valid"), (tmp_test, "test")):
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(HEADER)
                handle.writelines(f"{user}\t{item}\n" for user, item in parts[part])
    write_json_atomic(manifest_path, manifest)  # last: its presence says the three files are complete
    return manifest


def run_command(dataset: str, out: str) -> str:
    """The run that trains on the imported split."""
    return (f"python run_recbole_hnlm.py --model=LightGCN --sampler=MixGCF --dataset={dataset} "
            f"--data_path={os.path.abspath(out)} \"--benchmark_filename={BENCHMARK_FILENAME}\"")


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
    parser.add_argument("--valid_ratio", type=float, default=0.1,
                        help="share of each user's training pairs held out for validation (default 0.1)")
    parser.add_argument("--seed", type=int, default=2020, help="seed of the validation hold-out (default 2020)")
    parser.add_argument("--overwrite", action="store_true", help="replace the split files of another import")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        manifest = import_split(args.dataset, args.train, args.test, args.out, valid_ratio=args.valid_ratio,
                                seed=args.seed, file_format=args.format, overwrite=args.overwrite)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    counts = manifest["counts"]
    print(f"{args.dataset}: {counts['users']} users, {counts['items']} items; train {counts['train_pairs']}, "
          f"valid {counts['valid_pairs']}, test {counts['test_pairs']} pairs -> "
          f"{os.path.join(args.out, args.dataset)}")
    print(f"run: {run_command(args.dataset, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
