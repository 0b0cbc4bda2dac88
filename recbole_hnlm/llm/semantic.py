"""Semantic negative sampling (paper eq. 4-5): the LLM names a hard negative per (user, item) training pair, the
text encoder embeds it (mean over several negatives), and the vectors go to the side-car store (variant semantic).

Per chunk, pairs are grouped by user (they are contiguous, see :class:`DatasetText`); the shared prefix
(instruction + user profile) is prefilled once per user and its KV cache reused for that user's items
(``prefix_cache``). Answers must be ``{"hard_negative_item": ..., "reasoning": ...}``. A malformed answer, a
"None"-like item (or the prompt's placeholder echoed), the interacted item itself and any other item of the user's
training history (a positive, not a negative; titles compared up to case, punctuation and a trailing article, and
the year when the answer gives one) are retried with sampling; after the retries they are failure records
(``<store>.texts.jsonl``) and the pair gets no row (paper eq. 4 asks for an item the user would not interact with:
the positive is never one).
"""
import hashlib
import json
import logging
import re
import unicodedata
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch

from recbole_hnlm.files import work_folder, write_text_atomic
from .chunks import ChunkedRun, finished_meanwhile
from .config import LLMConfig
from .dataset_text import DatasetText
from .generation import Generator
from .profiles import ProfileBook, _item_description
from .prompts import ChatFormatter, PromptTemplate, quote
from .store import split_sha256, write_pair_store

__all__ = ["pairs_sha256", "semantic_manifest", "run_semantic_negatives", "NEGATIVE_TEMPLATE"]

logger = logging.getLogger(__name__)
NEGATIVE_TEMPLATE = "hard_negative.v1"
#: What answers are refused (in the manifest: a store written under other checks is computed again).
ANSWER_CHECKS = ("v17: none-like, placeholder (also behind a label), no letter or digit ('?', '...'), the pair's item "
                 "or user id from the prompt, item "
                 "attributes copied ('Year: 1994, genres: Crime Drama', also bold or underlined, as a numbered, "
                 "lettered or roman-numbered list item or behind the prompt's key), the "
                 "interacted item or a "
                 "training item of the user (also as a start of the answer that a sentence break ends, or opening a "
                 "sentence about it after a preamble, a recommending phrase or a quote; a year right with the title "
                 "names a namesake; a 'Title:'/'Answer:' label, also with an em dash, or a list number, letter or "
                 "roman numeral with a period or a bracket, also in bold or with only the sign in bold, before it "
                 "read through; '_' as "
                 "punctuation; a title of signs only, '!!!' or emoji, as written less a trailing year), the user's "
                 "profile repeated (its start, or an undated sentence of its words); titles and ids compared up to "
                 "accents, compatibility forms, invisible characters and case folding ('ß' as 'ss')")
_NONE_ANSWERS = {"none", "null", "n a", "na", "nothing", "unknown", "no item", "none found", "not applicable",
                 "item name", "none of the above"}
_NONE_STARTS = ("no hard negative", "none of the ", "not applicable", "there is no ")
#: Articles RecBole's datasets move to the end of a title ("Usual Suspects, The", "Boot, Das", "Postino, Il").
_ARTICLES = ("the", "a", "an", "das", "der", "die", "le", "la", "les", "il", "el", "los", "las")
#: How a model recommends a title ("I recommend Heat", "Try Heat, a crime film", "You might enjoy Heat").
_RECOMMENDING = re.compile(
    r"^(?:i\s+think\s+)?(?:i\s*(?:would|['\u2019]d|['\u2019]ll|can|might)?\s*(?:strongly\s+|highly\s+)?"
    r"(?:recommend|suggest)|try|consider|how\s+about|check\s+out"
    r"|you\s*(?:might|may|would|could|will|should|['\u2019]d|['\u2019]ll)?\s+(?:also\s+)?(?:like|enjoy|love|try)"
    r"|(?:my|a)\s+(?:good\s+|great\s+)?(?:recommendation|suggestion|pick|choice|option)\s+(?:is|would\s+be)"
    r"|recommended|recommendation|suggestion)\b[\s:]*(?:(?:watching|reading|visiting|trying)\s+)?",
    re.IGNORECASE)
_ATTRIBUTE_NAMES = r"(?:release\s+)?(?:year|genres?|categor(?:y|ies)|brand|city|state|price|description)"
#: Markdown emphasis ("**", "__"), other signs, and list numbers or letters ("1.", "2)", "(1)", "a)", "A.", "ii.",
#: "iv)") before a label.
_LABEL_PREFIX = r"^(?:[\W_]|\d+[.)]|[a-z][.)]|[ivx]{2,}[.)])*"  # one way to read each sign: no backtracking
#: An attribute label of an item description the prompt showed, first in an answer: SmolLM2 answered "Year: 1994,
#: genres: Crime Drama" (the interacted item's own attributes), and it was stored as a negative.
_ATTRIBUTE_LABEL = re.compile(rf"{_LABEL_PREFIX}(?:{_ATTRIBUTE_NAMES}|item_profile)[\s*_]*:", re.IGNORECASE)
#: A label before a name ("Title: Pulp Fiction", "1. Movie title: Heat", "Answer: Heat", the prompt's
#: "hard_negative_item: Heat"): the checks read the name after it, and the ids and attributes behind it (the
#: prompt's item descriptions are labelled JSON, and "Title: <the interacted item>" was accepted as its negative).
_TITLE_LABEL = re.compile(rf"{_LABEL_PREFIX}(?:(?:(?:item|movie|film|book|product|business|restaurant)\s+)?"
                          r"(?:title|name)|item|answer|hard[_\s]negative(?:[_\s]item)?)[\W_]*[:\-\u2013\u2014]"
                          r"(?:[^\w<]|_)*", re.IGNORECASE)  # "<" kept: "Answer: <item name>" is the placeholder
#: The prompt's placeholder ("<item name, at most 20 words>") copied behind a label; "Item: <Aladdin>" names a title.
_PLACEHOLDER = re.compile(r"<\s*(?:item\s+name|at\s+most|one\s+short)", re.IGNORECASE)
#: A list number, letter or roman numeral before a name ("1. Pulp Fiction", "1.Heat", "2) Heat", "(1) Heat", "a) Heat",
#: "B. Heat", "ii. Heat", "iv) Heat", also in bold: "**1. Heat**", "**B.** Heat"; not "9.5 Weeks"). The answer is also
#: checked as written: "A. I. Artificial Intelligence" is a title.
_LIST_NUMBER = re.compile(r"^\s*[*_]*\s*(?:\d+[.)](?!\d)[*_]*\s*|\(\s*(?:\d+|[a-z]|[ivx]+)\s*\)[*_]*\s*|"
                          r"(?:[a-z]|[ivx]+)\)[*_]*\s*|(?:[a-z]|[ivx]+)\.(?:[*_]+\s*|\s+))", re.IGNORECASE)
#: A label before an id the prompt showed: "item_id: B00DFT27EQ", "Item #242", "ASIN B00DFT27EQ".
_ID_LABEL = re.compile(r"^(?:(?:item|user|business|product)(?:[\s_-]*id)?|id|asin)\b\s*[:#=]?\s*", re.IGNORECASE)
#: Ids this long (with a digit, as written) are matched inside a longer answer too ("B00DFT27EQ, a plush toy");
#: shorter ones only as the whole answer.
_LONG_ID = 6
#: What a model writes before a title ("The movie 2001: A Space Odyssey.").
_LEAD_IN = re.compile(r"^(?:the\s+)?(?:movie|film)\s*:?\s+", re.IGNORECASE)
#: Where a sentence or an aside starts after a leading title: ". ", "! ", ", ", "; ", " - ", " (film)".
_TITLE_END = re.compile(r"[.!?;,](?:\s|$)|\s[-\u2013\u2014]\s|\s\((?!\s*\d{4}\s*\))")
#: Words that, right after a title, go on with a sentence about it ("Pulp Fiction is a great choice") rather than
#: name a longer title ("Toy Story 2", "Batman Returns", "Star Wars: The Empire Strikes Back").
# "North by Northwest" for North (1994) is refused (the one ml-100k pair these words catch); the breaks above refuse
# a few more, whatever the year: "M. Butterfly (1993)" for M (". "), "Clean Slate (Coup de Torchon)" for Clean Slate.
_CONTINUATIONS = frozenset(
    "is was are were would could should might may will can has had have offers features provides delivers remains "
    "shares tells follows explores which that who whose directed starring stars also because since but as for from "
    "with by it its this".split())
#: A year given right after a title that a break or an aside ended: "Shall We Dance? (1937)", "Scarlet Letter, The
#: (1926)".
_YEAR_AFTER = re.compile(rf"[\s?!.]*(?:,\s*(?:{'|'.join(_ARTICLES)})\s*)?\(\s*(\d{{4}})\s*\)", re.IGNORECASE)
#: What a model writes before a title, as a title_key: "The original 1989 classic Sex, Lies, and Videotape".
_PREAMBLE = re.compile(r"^(?:(?:the|a|an|original|classic|cult|iconic|acclaimed|beloved|movie|film|\d{4})\s+)+")


def pairs_sha256(pairs: Sequence[Tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for u, i in pairs:
        digest.update(f"{u}\t{i}\n".encode("utf-8"))
    return digest.hexdigest()


def semantic_manifest(cfg: LLMConfig, text: DatasetText, pairs, generator_name: str, encoder_name: str,
                      prompt_versions: Dict[str, str]) -> Dict:
    """Identity of a semantic run: what a cached store must match to be reused."""
    return dict(variant="semantic", dataset=text.dataset, dataset_hash=text.dataset_hash(),
                pairs_hash=pairs_sha256(pairs), generator=generator_name, encoder=encoder_name,
                prompt_version=",".join(f"{k}={v}" for k, v in sorted(prompt_versions.items())),
                negatives_per_pair=cfg.negatives_per_pair, max_pairs=text.effective_max_pairs(cfg.max_pairs),
                split_hash=split_sha256(text.split_pairs), seed=cfg.seed,
                dtype=cfg.store_dtype, answer_checks=ANSWER_CHECKS,
                settings=dict(max_history=cfg.max_history, max_reviews=cfg.max_reviews,
                              profile_words=cfg.profile_words, item_profiles=cfg.item_profiles,
                              max_new_tokens=cfg.max_new_tokens, profile_max_new_tokens=cfg.profile_max_new_tokens,
                              retries=cfg.retries, compute=cfg.compute))


def folded(text: str) -> str:
    """``text`` as the answer checks compare it: accents, compatibility forms (full-width letters, ligatures) and
    invisible characters (zero-width spaces and joiners, bidi marks, variation selectors) taken off, case folded
    (``ß`` as ``ss``): "Amelie", "ＡＭＥＬＩＥ" and "Ame\u200blie" write *Amélie* otherwise, not another title."""
    decomposed = unicodedata.normalize("NFKD", str(text))
    return "".join(ch for ch in decomposed if unicodedata.category(ch) not in ("Mn", "Cf")).casefold()


def title_key(title: str) -> str:
    """A title compared loosely (after :func:`folded`): no trailing ``(1994)``, no leading or trailing article (``Usual
    Suspects, The`` and ``The Usual Suspects`` as ``usual suspects``), punctuation (``_`` too: Markdown's
    ``__Heat__``) as spaces; a title without a letter or digit (``!!!``, emoji only) as written, in lower case, less
    a trailing year."""
    written = " ".join(folded(title).split())
    undated = re.sub(r"\s*\(\s*\d{4}\s*\)\s*$", "", written)
    key = re.sub(r"^(?:[^\w(]|_)+", "", undated)  # a quote first: '"Il Postino" is ...' as "postino is ..."
    key = re.sub(rf"^(.*),\s*(?:{'|'.join(_ARTICLES)})$", r"\1", key)  # "Usual Suspects, The" as "usual suspects"
    key = re.sub(rf"^(?:{'|'.join(_ARTICLES)})\s+(?=\S)", "", key)  # "The Usual Suspects" likewise
    key = " ".join(re.sub(r"[\W_]+", " ", key).split())
    # a title of signs only ("!!!", an emoji name) has no words: compared as written, up to case, spaces and a
    # trailing year ("!!! (2001)" as "!!!", as "Heat (1995)" as "heat"); a title that is only a year ("(1994)") keeps it
    return key or undated or written


def negative_name(answer: Dict) -> str:
    """The answer's item name, whitespace collapsed."""
    return " ".join(str(answer.get("hard_negative_item", "")).split())


def title_year(title: str) -> Optional[str]:
    """The trailing ``(1994)`` of a title, or None."""
    found = re.search(r"\(\s*(\d{4})\s*\)\s*$", str(title))
    return found.group(1) if found else None


class _Answer(NamedTuple):
    """An answer as the checks compare it: the :func:`title_key` of the whole answer and its trailing year, the key
    and year of each start of it that a sentence break or an aside ends (after a lead-in, "The movie ...";
    "Mr. Holland's Opus, a film", "Seven (Se7en), a film"), and the keys of the starts a colon follows."""
    key: str
    year: Optional[str]
    starts: Tuple[Tuple[str, Optional[str]], ...]
    subtitled: frozenset  # "Die Hard: With a Vengeance": a longer title, not a sentence about Die Hard

    @classmethod
    def forms(cls, name: str) -> List["_Answer"]:
        """The answer parsed, and parsed again without its recommending phrase when it starts with one."""
        return [cls.parse(name)] + ([cls.parse(name, recommending=True)] if _RECOMMENDING.match(name.strip()) else [])

    @classmethod
    def parse(cls, name: str, recommending: bool = False) -> "_Answer":
        """``recommending``: drop a recommending phrase first ("I recommend Heat"); an answer is checked both ways,
        since a title may start with one ("Consider the Lobster")."""
        name = _RECOMMENDING.sub("", name.strip()) if recommending else name.strip()
        text = _LEAD_IN.sub("", name)
        starts = []
        for end in [m.start() for m in _TITLE_END.finditer(text)] or [len(text)]:
            after = _YEAR_AFTER.match(text[end:])
            starts.append((title_key(text[:end]), title_year(text[:end]) or (after.group(1) if after else None)))
        return cls(title_key(name), title_year(name), tuple(starts),
                   frozenset(title_key(text[:colon.start()]) for colon in re.finditer(":", text)))


def _names(answer: _Answer, title: str, year: Optional[str]) -> bool:
    """Whether ``answer`` names the item ``title`` (released in ``year``, when the title or the item's attributes
    tell): as the whole answer, as its leading title, or opening a sentence about it. The year given right with the
    title, when it differs from the item's, names another item of the same title (*Sabrina (1954)* for the 1995
    *Sabrina*); a year later in the sentence is another title's ("Heat is ... like Thief (1981)")."""
    item_year = title_year(title) or (str(year).strip() if year else None)
    key = title_key(title)
    if not key:
        return False
    for answer_key, answer_year in ((answer.key, answer.year),) + answer.starts:
        if answer_key == key:
            return not (answer_year and item_year and answer_year != item_year)
    return _opens_sentence_about(answer.key, key, item_year, subtitled=key in answer.subtitled)


def _opens_sentence_about(answer_key: str, key: str, item_year: Optional[str], subtitled: bool = False) -> bool:
    """Whether an answer (its ``title_key``) opens, after an optional preamble, with the title ``key`` and goes on
    with its year or a sentence about it ("Pulp Fiction (1994) is great", "The original 1989 classic Sex, Lies, and
    Videotape, which ..."). A year in the preamble or after the title other than the item's names a namesake; a
    title that a colon follows (``subtitled``) starts a longer title ("Die Hard: With a Vengeance")."""
    preamble = _PREAMBLE.match(answer_key)
    for start in {0, preamble.end() if preamble else 0}:
        rest = answer_key[start:]
        if start and rest == key:  # "The 1995 film Heat"
            return not item_year or all(y == item_year for y in re.findall(r"\b\d{4}\b", answer_key[:start]))
        if not rest.startswith(key + " "):
            continue
        after = rest[len(key) + 1:].split()  # not empty: title keys have no trailing space
        dated = re.fullmatch(r"\d{4}", after[0]) is not None  # "Pulp Fiction (1994), a crime film"
        years = re.findall(r"\b\d{4}\b", answer_key[:start]) + after[:dated]
        if item_year and any(y != item_year for y in years):
            continue
        if dated or (after[0] in _CONTINUATIONS and not (subtitled and start == 0)):
            return True
    return False


def _repeats(key: str, profile_key: str, dated: bool) -> bool:
    """Whether an answer (``title_key``) copies the user's profile: its start, or, for an answer without a year (a
    dated answer names a title), a sentence of six or more distinct words nearly all of which (5 in 6) are the
    profile's ("The user enjoys a variety of items" from a profile opening "This user enjoys a variety of items")."""
    summary = profile_key[:40]
    if len(summary) >= 20 and (key.startswith(summary) or (len(key) >= 20 and summary.startswith(key))):
        return True
    words, known = set(key.split()), set(profile_key.split())
    return not dated and len(words) >= 6 and len(words & known) >= 5 / 6 * len(words)


def _echoes_an_id(name: str, ids: Sequence[str]) -> bool:
    """Whether an answer is one of the prompt's ``ids`` (the pair's item and user tokens), bare or labelled ("242",
    "item_id: 242"), or holds a long one (an ASIN, a Yelp id) as a word. A title that is a number ("187") is refused
    only for the pair whose id it is."""
    bare = folded(_ID_LABEL.sub("", name.strip().strip("\"'`")).strip().strip("\"'`.,;!"))
    for token in map(str, ids):
        if bare == folded(token) or (len(token) >= _LONG_ID and any(c.isdigit() for c in token) and re.search(
                rf"(?<![\w-]){re.escape(token)}(?![\w-])", name)):  # an id like a word ("george") names a title
            return True
    return False


def negative_problem(answer: Dict, interacted_title: str, interacted_year: Optional[str] = None,
                     history: Sequence[Tuple[str, Optional[str]]] = (), profile: str = "",
                     ids: Sequence[str] = ()) -> Optional[str]:
    """Why a parsed answer names no usable hard negative for a pair whose item is ``interacted_title`` (released in
    ``interacted_year``), or None: no item, an id the prompt showed (``ids``: the pair's item and user tokens; SmolLM2
    echoed the item's), attributes copied from a description ("Year: 1994, genres: ..."), the interacted item
    itself, an item of the user's training ``history`` (``(title, year)`` pairs; a positive of the user, not a
    negative), or the user's ``profile`` repeated (SmolLM2 copied it as its answer)."""
    name = negative_name(answer)
    labelled = _TITLE_LABEL.sub("", name, count=1)  # "Title: Pulp Fiction": Pulp Fiction
    named = _LIST_NUMBER.sub("", labelled, count=1)  # "1. Pulp Fiction": Pulp Fiction
    # the answer as written too when a list sign went: "A. I. Artificial Intelligence" is a title
    forms = _Answer.forms(named) + (_Answer.forms(labelled) if labelled != named else [])
    parsed = forms[0]
    key, answer_year = parsed.key, parsed.starts[0][1] or parsed.year
    placeholder = name.startswith("<") or _PLACEHOLDER.match(named.lstrip("*_\"'` ")) is not None  # behind a label
    if placeholder or (answer_year is None and (key in _NONE_ANSWERS or key.startswith(_NONE_STARTS))):
        return f"no item named: {name[:120]!r}"
    if not any(ch.isalnum() for ch in folded(name)):  # "?", "...", "🎬🍿": nothing a text encoder places near an item
        return f"no item named (no letter or digit): {name[:120]!r}"
    if _echoes_an_id(name, ids) or _echoes_an_id(named, ids):
        return f"the answer is an id from the prompt, not an item's name: {name[:120]!r}"
    if _ATTRIBUTE_LABEL.match(name) or _ATTRIBUTE_LABEL.match(named):
        return f"the answer copies item attributes, not an item's name: {name[:120]!r}"
    if _repeats(key, title_key(profile), answer_year is not None):
        return f"the answer repeats the user's profile: {name[:120]!r}"
    if any(_names(form, interacted_title, interacted_year) for form in forms):
        return f"the answer names the interacted item itself: {name[:120]!r}"
    if any(_names(form, title, year) for title, year in history for form in forms):
        return f"the answer names an item of the user's history: {name[:120]!r}"
    return None


def _chunk_negatives(rows: range, pairs, text: DatasetText, book: ProfileBook, generator: Generator, encoder,
                     template: PromptTemplate, formatter: ChatFormatter, cfg: LLMConfig,
                     advance: Callable[[int], None] = lambda n: None):
    """Generate + embed one chunk -> (row indices that succeeded, [n, D] embeddings, records); ``advance(n)`` after
    each user's pairs (a chunk takes minutes on a CPU)."""
    records, ok_rows, ok_texts = [], [], []
    groups: Dict[str, List[int]] = {}
    for row in rows:
        groups.setdefault(pairs[row][0], []).append(row)
    for user, user_rows in groups.items():
        profile = book.summary("user", user)
        if profile is None:
            for row in user_rows:
                records.append(dict(row=row, user=user, item=pairs[row][1], ok=False, negatives=[], reasoning=[],
                                    error="user profile missing or failed", attempts=[], refused=[]))
            advance(len(user_rows))
            continue
        prefix, tail = formatter.render_split(template, {"user_id": quote(user), "user_profile": quote(profile)})
        suffixes = []
        for row in user_rows:
            item = pairs[row][1]
            suffixes.append(template.render_item_block({
                "item_id": quote(item), "item_title": quote(text.items[item].title),
                "item_profile": quote(_item_description(text, book if cfg.item_profiles else None, item,
                                                        cfg.profile_words))}) + tail)
        per_pair: List[List[str]] = [[] for _ in user_rows]
        errors: List[List[str]] = [[] for _ in user_rows]
        refused: List[List[str]] = [[] for _ in user_rows]  # every failed attempt, of every draw
        attempts: List[List[int]] = [[] for _ in user_rows]
        reasons: List[List[str]] = [[] for _ in user_rows]
        titles = [(text.items[pairs[row][1]].title, text.items[pairs[row][1]].attributes.get("year"))
                  for row in user_rows]
        history = [(text.items[e.item].title, text.items[e.item].attributes.get("year"))
                   for e in text.history.get(user, ()) if e.item in text.items]
        for draw in range(cfg.negatives_per_pair):
            generator.do_sample, generator.seed = draw > 0, cfg.seed + draw
            results = generator.generate_with_prefix(prefix, suffixes, required=["hard_negative_item"],
                                                     answer_prefix=template.answer_prefix,
                                                     use_cache=cfg.prefix_cache,
                                                     check=lambda k, answer: negative_problem(
                                                         answer, *titles[k], history=history, profile=profile,
                                                         ids=(pairs[user_rows[k]][1], user)))
            for k, result in enumerate(results):
                attempts[k].append(result["attempts"])
                refused[k].extend(result["errors"])
                if result["ok"]:
                    per_pair[k].append(negative_name(result["answer"]))
                    reasons[k].append(str(result["answer"].get("reasoning", "")))
                else:
                    errors[k].append(result["error"])
        generator.do_sample, generator.seed = False, cfg.seed
        for k, row in enumerate(user_rows):
            ok = bool(per_pair[k])
            records.append(dict(row=row, user=user, item=pairs[row][1], ok=ok, negatives=per_pair[k],
                                reasoning=reasons[k], error=None if ok else "; ".join(errors[k]),
                                attempts=attempts[k], refused=refused[k]))
            if ok:
                ok_rows.append(row)
                ok_texts.append(per_pair[k])
        advance(len(user_rows))
    flat = [t for texts in ok_texts for t in texts]
    vectors = encoder.encode(flat) if flat else torch.zeros(0, encoder.dim)
    emb, start = [], 0
    for texts in ok_texts:  # eq. 5: mean over the pair's negatives
        emb.append(vectors[start:start + len(texts)].mean(0))
        start += len(texts)
    emb = torch.stack(emb) if emb else torch.zeros(0, encoder.dim)
    return torch.tensor(ok_rows, dtype=torch.int64), emb, records


def run_semantic_negatives(cfg: LLMConfig, text: DatasetText, pairs: List[Tuple[str, str]], store_path: str,
                           generator: Generator, encoder, book: ProfileBook, manifest: Dict,
                           on_chunk: Optional[Callable[[int], None]] = None, progress: bool = True) -> Dict:
    """Compute the negatives of ``pairs`` chunk by chunk (resumable), then merge into ``store_path``.

    Args:
        manifest: from :func:`semantic_manifest`; pins the work folder and is written into the store.
        on_chunk: called with the chunk index after each chunk is saved (tests use it to simulate a kill).
    """
    template = PromptTemplate.load(NEGATIVE_TEMPLATE)
    formatter = ChatFormatter(generator.tokenizer)

    def compute(rows_range, advance):
        rows, emb, records = _chunk_negatives(rows_range, pairs, text, book, generator, encoder, template,
                                              formatter, cfg, advance)
        return rows, emb.reshape(-1, encoder.dim), records

    with ChunkedRun(work_folder(store_path), dict(manifest=manifest), len(pairs), cfg.chunk_size) as run:
        if finished_meanwhile(store_path, manifest, run):
            return None
        run.run_pending(compute, "semantic negatives", progress, on_chunk)
        rows, emb, records = run.merge()
        failures = sum(not r["ok"] for r in records)
        full = dict(manifest, num_failures=failures, num_requested=len(pairs))
        dtype = getattr(torch, cfg.store_dtype)
        # the texts first: the store is the cache key, so once it exists everything beside it must be complete
        write_text_atomic(store_path + ".texts.jsonl",
                          "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        written = write_pair_store(store_path, [pairs[r][0] for r in rows.tolist()],
                                   [pairs[r][1] for r in rows.tolist()], emb, full, dtype)
        run.cleanup()
    if failures:
        logger.warning("%s: %d/%d pairs failed (no negative stored; see %s.texts.jsonl)", store_path, failures,
                       len(pairs), store_path)
    logger.info("%s: wrote %d pair embeddings of dim %d", store_path, written["num_pairs"], written["dim"])
    return written
