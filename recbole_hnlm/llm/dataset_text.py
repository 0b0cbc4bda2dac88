"""Text of a RecBole dataset, read straight from its atomic files (no RecBole ``Dataset``: fast, no filtering).

Reads ``<data_path>/<ds>/<ds>.inter`` (or the pre-split ``<ds>.<part>.inter`` files of RecBole's
``benchmark_filename``) and, when present, ``<ds>.item``. Headers are ``name:type``. Known fields:

* item title: ``movie_title`` (ml-100k), ``title`` (Amazon), ``name`` (Yelp), ``item_name``
* item attributes: ``release_year``/``year``, ``class``/``genre``/``genres`` (ml-100k genres), ``categories``/
  ``category`` (Python list or set literals of RecBole's Amazon converters read as plain names:
  :func:`plain_categories`), ``brand``, ``city``/``state`` (Yelp), ``description``, ``price``
* interaction rating: ``rating``/``stars``/``score``; review text: ``review``/``review_text``/``reviewText``/``text``/
  ``summary``; order: RecBole's ``TIME_FIELD``, else ``timestamp``/``date``/``time`` (file order when a value is
  not a number)

Without an ``.item`` file, or without any of its title/attribute fields, items are described by their ids alone (the
LLM's negatives are then weak): logged once as a warning that names the file and the fields to provide.

Only *training* interactions may feed profiles (the test items would otherwise leak into the negatives). Pass the
training split as a set of ``(user_token, item_token)`` pairs; without it every interaction counts as training
(documented fallback for stand-alone precompute, logged as a warning).
"""
import ast
import csv
import hashlib
import logging
import os
import random
import warnings
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

import pandas as pd

from recbole_hnlm.data_checks import check_records
from recbole_hnlm.errors import DataError
from recbole_hnlm.files import file_sha256

__all__ = ["ItemText", "Interaction", "DatasetText", "atomic_file", "plain_categories"]

logger = logging.getLogger(__name__)

TITLE_FIELDS = ("movie_title", "title", "name", "item_name")
ATTRIBUTE_FIELDS = (("release_year", "year"), ("year", "year"), ("class", "genres"), ("genre", "genres"),
                    ("genres", "genres"), ("categories", "categories"), ("category", "categories"),
                    ("brand", "brand"), ("city", "city"), ("state", "state"), ("price", "price"),
                    ("description", "description"))
RATING_FIELDS = ("rating", "stars", "score")
REVIEW_FIELDS = ("review", "review_text", "reviewText", "text", "summary")
TIME_FIELDS = ("timestamp", "date", "time")
#: An ``.inter`` file larger than this is announced before it is read (Amazon-Book's 3M lines: ~25 s of silence).
LARGE_INTER_BYTES = 20_000_000


def atomic_file(data_path: str, dataset: str, suffix: str) -> str:
    return os.path.join(data_path, dataset, f"{dataset}.{suffix}")


def _read_atomic(path: str, encoding: str = "utf-8", quoted: bool = True) -> pd.DataFrame:
    """Read an atomic file as strings; columns renamed from ``name:type`` to ``name``. ``quoted``: as RecBole reads
    it (``"`` a CSV quote), for the files RecBole loads; otherwise quotes are text (an ``.item`` file outside
    ``load_col`` may hold titles such as ``"Weird Al" Yankovic``). Text that is not ``encoding`` (RecBole's option),
    quotes that would merge lines, lines with more fields than the header and a NUL byte (where pandas' C parser
    ends a field, RecBole's reader does not) are errors naming the file (:func:`check_records`): replaced or cut
    text would reach the prompts without a word. (pandas drops a UTF-8 byte-order mark.)"""
    check_records(path, encoding, quoted=quoted, refuse_nul=True)
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, encoding=encoding,
                        quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE)
    names = []
    for column in frame.columns:
        if ":" not in column:
            raise DataError(f"{path}: header field {column!r} is not 'name:type'")
        names.append(column.split(":", 1)[0])
    frame.columns = names
    return frame


def _names_in(value) -> Optional[List[str]]:
    """The strings of a (nested) list, tuple or set literal, in order; ``None`` when it holds anything else."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple, set)):
        names = []
        for element in value:
            inner = _names_in(element)
            if inner is None:
                return None
            names.extend(inner)
        return names
    return None


def plain_categories(value: str) -> str:
    """A category list as the LLM should read it: ``Toys & Games, Puzzles``.

    RecBole's Amazon converters write an item's categories as Python's repr of a set without its braces
    (``'Toys & Games', 'Puzzles'``, ``"Kids' Toys"`` with an apostrophe; ``et(`` for an empty set), other converters
    as a list literal (``[['Toys & Games', 'Puzzles']]``): those become the names joined by ``", "`` (repeats
    dropped, white space and escapes such as ``\\n`` as single spaces; empty for an empty set). A value that is not
    such a literal (Yelp's ``Pizza, Restaurants``, ml-100k's genres) is returned as it is. Parsed with
    :func:`ast.literal_eval` (literals only, nothing is run)."""
    text = value.strip()
    if text in ("et(", "set()", "{}"):  # not literals of strings (empty lists and quotes parse to nothing below)
        return ""
    if not text or text[0] not in "[({'\"":
        return value
    names = None
    if len(text) > 1 and text[0] == text[-1] == '"' and '""' in text:  # CSV-quoted by pandas' writer, read as text
        names = _literal_names(text[1:-1].replace('""', '"'))  # first: the quoted form may parse as other strings
    if names is None:
        names = _literal_names(text)
    if names is None:
        return value
    return ", ".join(dict.fromkeys(" ".join(name.split()) for name in names if name.strip()))


def _literal_names(text: str) -> Optional[List[str]]:
    with warnings.catch_warnings():  # an invalid escape ("\d") warns on Python 3.12+
        warnings.simplefilter("ignore")
        try:
            return _names_in(ast.literal_eval(text))
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return None


def _first(columns: Iterable[str], candidates: Sequence[str]) -> Optional[str]:
    present = set(columns)
    return next((c for c in candidates if c in present), None)


@dataclass
class ItemText:
    token: str
    title: str
    attributes: Dict[str, str] = field(default_factory=dict)


@dataclass
class Interaction:
    user: str
    item: str
    rating: Optional[str]
    review: Optional[str]
    order: float


def _orders(values: List, path: str, field: str) -> List[float]:
    """The time field as numbers that order each user's history; file order for all rows when any value is not a
    number (mixing times and row numbers would order nothing)."""
    orders = []
    for value in values:
        try:
            orders.append(float(value))
        except (TypeError, ValueError):
            logger.warning("%s: field %r holds a value that is not a number (%r): histories are in file order",
                           path, field, value)
            return [float(row) for row in range(len(values))]
    return orders


def _repeated_pairs(users: List[str], items: List[str]) -> Set[Tuple[str, str]]:
    """The ``(user, item)`` pairs on more than one row."""
    once, repeated = set(), set()
    for key in zip(users, items):
        if key in once:
            repeated.add(key)
        once.add(key)
    return repeated


class DatasetText:
    """Items, training interactions and pairs of one dataset, all keyed by original tokens.

    Args:
        data_path: folder containing ``<dataset>/``.
        dataset: dataset name.
        train_pairs: training ``(user_token, item_token)`` pairs; ``None`` = all interactions (fallback).
        uid_field, iid_field: id columns of ``.inter`` (RecBole defaults ``user_id``, ``item_id``).
        inter_parts: RecBole's ``benchmark_filename`` (e.g. ``['train', 'valid', 'test']``): read the pre-split
            ``<dataset>.<part>.inter`` files instead of ``<dataset>.inter``.
        encoding: of the atomic files (RecBole's ``encoding`` option).
        item_quoted: RecBole loads the ``.item`` file too (``load_col``), so it is read as RecBole reads it, with
            ``"`` as a quote; otherwise quotes are part of the text.
        time_field: RecBole's ``TIME_FIELD``, which orders the histories (else the first of :data:`TIME_FIELDS`
            the file has, else file order).
    """

    def __init__(self, data_path: str, dataset: str, train_pairs: Optional[Iterable[Tuple[str, str]]] = None,
                 uid_field: str = "user_id", iid_field: str = "item_id", inter_parts: Optional[Sequence[str]] = None,
                 encoding: str = "utf-8", item_quoted: bool = False, time_field: Optional[str] = None):
        self.data_path, self.dataset, self.item_quoted = data_path, dataset, item_quoted
        suffixes = [f"{part}.inter" for part in inter_parts] if inter_parts else ["inter"]
        self.inter_paths = [atomic_file(data_path, dataset, suffix) for suffix in suffixes]
        self.inter_path = " + ".join(self.inter_paths)  # for messages
        sizes = sum(os.path.getsize(path) for path in self.inter_paths if os.path.exists(path))
        if sizes > LARGE_INTER_BYTES:  # ~25 s per 3M lines in Python, before any other line of the stage
            logger.info("%s: reading %.0f MB of interactions for the LLM stage's texts", self.inter_path, sizes / 1e6)
        frames = []
        for path in self.inter_paths:
            if not os.path.exists(path):
                raise FileNotFoundError(f"{path}: interaction file not found (check --data_path / data_path, "
                                        f"--dataset and benchmark_filename)")
            frame = _read_atomic(path, encoding)
            for name in (uid_field, iid_field):
                if name not in frame.columns:
                    raise DataError(f"{path}: field {name!r} missing (columns: {list(frame.columns)})")
            if frames and sorted(frame.columns) != sorted(frames[0].columns):  # concat aligns them by name
                raise DataError(f"{path}: fields {list(frame.columns)} differ from {self.inter_paths[0]}'s "
                                 f"{list(frames[0].columns)}; the pre-split files need one header")
            frames.append(frame)
        inter = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        rating = _first(inter.columns, RATING_FIELDS)
        review = _first(inter.columns, REVIEW_FIELDS)
        when = _first(inter.columns, ((time_field,) if time_field else ()) + TIME_FIELDS)
        self.has_reviews = review is not None
        train = None if train_pairs is None else {(str(u), str(i)) for u, i in train_pairs}
        if train is None:
            logger.warning("%s: no training split given; every interaction feeds the profiles and negatives",
                           self.inter_path)
        users, items = inter[uid_field].tolist(), inter[iid_field].tolist()
        ratings = inter[rating].tolist() if rating else [None] * len(users)
        reviews = inter[review].tolist() if review else [None] * len(users)
        orders = _orders(inter[when].tolist(), self.inter_path, when) if when else list(range(len(users)))
        self.history: Dict[str, List[Interaction]] = {}
        self.item_reviews: Dict[str, List[str]] = {}
        self.pairs: List[Tuple[str, str]] = []
        seen: Set[Tuple[str, str]] = set()
        repeated = _repeated_pairs(users, items) if train is not None and (rating or review) else set()
        for u, i, r, text, t in zip(users, items, ratings, reviews, orders):
            key = (u, i)
            if (train is not None and key not in train) or key in seen:
                continue
            seen.add(key)
            if key in repeated:  # which of its rows RecBole trains on is unknown: show none's rating or review
                r, text = None, None
            self.history.setdefault(u, []).append(Interaction(u, i, r or None, text or None, t))
            if text:
                self.item_reviews.setdefault(i, []).append(text)
        repeated_in_train = len(repeated & seen)
        if repeated_in_train:
            logger.warning("%s: %d training pairs occur on more than one row (RecBole may have put another row of the "
                           "pair into validation or test, or dropped it with rm_dup_inter): their prompts show no "
                           "rating or review", self.inter_path, repeated_in_train)
        for u, events in self.history.items():
            events.sort(key=lambda e: e.order)
        # pairs grouped by user (first appearance order), items in time order: a user's pairs are contiguous
        for u in self.history:
            self.pairs.extend((u, e.item) for e in self.history[u])
        if train is not None and len(seen) < len(train):
            logger.warning("%s: %d training pairs are not in the interaction file and are ignored",
                           self.inter_path, len(train) - len(seen))
        #: The training split the stage was given (every interaction without one): what a store records as its
        #: split_hash, also for pairs the ``.inter`` file does not hold (warned about above).
        self.split_pairs = train if train is not None else set(self.pairs)
        self.items: Dict[str, ItemText] = {}
        #: Some category value was a Python literal read as plain names (:func:`plain_categories`): in the hash.
        self.categories_rewritten = False
        item_path = self.item_path = atomic_file(data_path, dataset, "item")
        title, attrs, fields = None, [], None
        if os.path.exists(item_path):
            frame = _read_atomic(item_path, encoding, quoted=item_quoted)
            fields = list(frame.columns)
            if iid_field not in frame.columns:
                raise DataError(f"{item_path}: field {iid_field!r} missing")
            title = _first(frame.columns, TITLE_FIELDS)
            attrs = [(src, dst) for src, dst in ATTRIBUTE_FIELDS if src in frame.columns]
            untitled, repeated = [], {}
            for record in frame.to_dict("records"):
                token = record[iid_field]
                if token in self.items:  # RecBole keeps an id's first row too (drop_duplicates, keep="first")
                    repeated.setdefault(token, None)
                    continue
                attributes = {}
                for src, dst in attrs:
                    value = plain_categories(record[src]) if dst == "categories" else record[src]
                    self.categories_rewritten = self.categories_rewritten or value != record[src]
                    if value and dst not in attributes:
                        attributes[dst] = value
                if title and not record[title].strip():
                    untitled.append(token)
                self.items[token] = ItemText(token, record[title] if title and record[title].strip() else token,
                                             attributes)
            if untitled:
                logger.warning("%s: %d of its %d items have an empty '%s' (e.g. %s): the LLM sees their ids instead",
                               item_path, len(untitled), len(self.items), title, ", ".join(untitled[:3]))
            if repeated:
                logger.warning("%s: %d item ids occur on more than one row (e.g. %s); the first row of each is used, "
                               "as RecBole does", item_path, len(repeated), ", ".join(list(repeated)[:3]))
        used = {i for _, i in self.pairs}
        missing = sorted(used - self.items.keys())
        if title is None and not attrs:
            self._warn_no_item_text(item_path, iid_field, fields)
        elif title is None:  # attributes only: the prompts name each item by its id
            logger.warning("%s has no title field (one of %s; its fields: %s): prompts and profiles name each item by "
                           "its id, with its attributes, and the LLM cannot write a hard negative's title it has "
                           "seen. Add a title field if the items have names.", item_path, ", ".join(TITLE_FIELDS),
                           ", ".join(fields))
        if (title is not None or attrs) and missing:
            logger.warning("%s has no row for %d of the %d items in training pairs (e.g. %s): the LLM sees only "
                           "their ids", item_path, len(missing), len(used), ", ".join(missing[:3]))
        for i in missing:
            self.items[i] = ItemText(i, f"item {i}", {})

    def _warn_no_item_text(self, item_path: str, iid_field: str, fields: Optional[List[str]]) -> None:
        """One warning when the items have no title or attribute (``fields``: the ``.item`` file's, ``None`` when
        there is no such file): the LLM then sees bare item ids."""
        if fields is None:
            problem = f"{item_path} not found"
        else:
            problem = f"{item_path} has none of the text fields recbole_hnlm reads (its fields: {', '.join(fields)})"
        sees = "item ids and the review text of the .inter file" if self.has_reviews else "item ids"
        example = "\t".join([f"{iid_field}:token", "title:token_seq", "categories:token_seq"])
        logger.warning("%s: item profiles and prompts show the LLM only %s, so the hard negatives it writes or "
                       "embeds will be weak. Provide %s with a title field (one of %s) and attributes (any of %s), "
                       "e.g. the header %r.", problem, sees, item_path, ", ".join(TITLE_FIELDS),
                       ", ".join(dict.fromkeys(src for src, _ in ATTRIBUTE_FIELDS)), example)

    def dataset_hash(self) -> str:
        """SHA-256 of the ``.inter`` file bytes (recorded in every manifest); for pre-split files, or with a
        ``.item`` file (its titles and attributes are in the prompts), of their names and digests in order, and of
        how the ``.item`` file is read (``item_quoted``: ``"Kolya"`` or ``Kolya`` in the prompts; category literals
        read as names)."""
        has_item_file = os.path.exists(self.item_path)
        paths = self.inter_paths + ([self.item_path] if has_item_file else [])
        if len(paths) == 1:
            return file_sha256(paths[0])
        listing = "\n".join(f"{os.path.basename(path)}:{file_sha256(path)}" for path in paths)
        if has_item_file and self.item_quoted:  # absent otherwise: hashes of the default reading stay as they were
            listing += "\n.item read with RecBole's quoting"
        if self.categories_rewritten:  # stores made when the prompts showed the literal are not reused
            listing += "\ncategories read as plain names"
        return hashlib.sha256(listing.encode()).hexdigest()

    def users(self) -> List[str]:
        return list(self.history)

    def item_tokens(self) -> List[str]:
        """Items that occur in a training pair (only those need a profile)."""
        return sorted({i for _, i in self.pairs}, key=lambda t: (len(t), t))

    def user_history(self, user: str, max_items: int) -> List[Interaction]:
        """The user's most recent ``max_items`` training interactions, oldest first."""
        events = self.history.get(user, [])
        return events[-max_items:] if max_items > 0 else list(events)

    def effective_max_pairs(self, max_pairs: Optional[int]) -> int:
        """``max_pairs`` as stores record it: 0 (every pair) when it selects every training pair, so that a
        ``max_pairs`` of at least the number of pairs and ``max_pairs: 0`` name the same store."""
        if max_pairs is None or max_pairs <= 0 or max_pairs >= len(self.pairs):
            return 0
        return int(max_pairs)

    def select_pairs(self, max_pairs: Optional[int], seed: int) -> List[Tuple[str, str]]:
        """All training pairs, or a seeded uniform subset of ``max_pairs`` kept in user-grouped order."""
        if not self.pairs:
            raise DataError(f"{self.inter_path}: no training pairs (an empty file, or none of the given training "
                            "split's pairs is in it): nothing for the LLM stage to do.")
        if self.effective_max_pairs(max_pairs) == 0:
            return list(self.pairs)
        chosen = sorted(random.Random(seed).sample(range(len(self.pairs)), max_pairs))
        return [self.pairs[k] for k in chosen]
