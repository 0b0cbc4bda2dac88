"""Item and user profiles (paper eq. 2 and eq. 3), stored as resumable JSONL keyed by token.

Item profile (eq. 2): title + attributes + training-review text -> ``{"summarization", "reasoning"}``.
User profile (eq. 3): the user's most recent training interactions (title, rating, *item profile*) -> idem; item
profiles are therefore generated first. Only ``summarization`` is used downstream.

Each JSONL record: ``{"kind", "key", "input_sha", "generator", "settings", "prompt_version", "ok", "summarization",
"raw", "attempts", "error"}``. Records are appended per batch (flushed + fsynced); the last valid record per (kind,
key) is what prompts read. A profile whose ``input_sha`` (the prompt), generator and ``settings`` (the LLM's
numerics, answer budget, retries and seed: what else decides the answer) match a record is reused; an earlier record
that later ones of other settings or another split's history followed is appended again (so it is the latest of its
key). A line cut by a killed run is cut off the file before the next append. A failed profile stays a failure record
while those match (the same settings would fail again): a user whose profile failed gets no negatives; an item
whose profile failed is described by its raw title/attributes inside user prompts (counted and logged). Changing
e.g. ``hnlm_profile_max_new_tokens`` or ``hnlm_retries`` generates the profiles again.
"""
import hashlib
import json
import logging
import os
from typing import Dict, Iterable, List, Optional

from tqdm.auto import tqdm

from recbole_hnlm.files import check_writable, exclusive_lock, lock_file, write_failed, write_failure_errno
from .dataset_text import DatasetText
from .generation import Generator
from .prompts import ChatFormatter, PromptTemplate
from .throughput import CPU_PROFILES_PER_SECOND, long_on_this_machine, rough_duration

__all__ = ["ProfileBook", "item_profile_prompt", "user_profile_prompt", "build_profiles"]

logger = logging.getLogger(__name__)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _identity(kind: str, key: str, input_sha, generator, settings) -> tuple:
    """What a profile record answers: its prompt, generator and generation settings."""
    return kind, key, input_sha, generator, json.dumps(settings, sort_keys=True)


class ProfileBook:
    """Append-only JSONL of profiles, with an in-memory index of the latest record per (kind, key) (the one the
    prompts read) and of the latest record per identity (:meth:`find`)."""

    def __init__(self, path: str):
        self.path = path
        self.records: Dict[tuple, Dict] = {}
        self._by_identity: Dict[tuple, Dict] = {}
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    if not line.endswith("\n"):  # cut by a killed run, even if it parses: the next append cuts it
                        break
                    try:
                        self._index(json.loads(line))
                    except (json.JSONDecodeError, KeyError, TypeError):
                        continue  # a line cut by a killed run

    def _index(self, record: Dict) -> None:
        self.records[(record["kind"], record["key"])] = record
        self._by_identity[_identity(record["kind"], record["key"], record.get("input_sha"), record.get("generator"),
                                    record.get("settings"))] = record

    def find(self, kind: str, key: str, input_sha: str, generator: str, settings: Dict) -> Optional[Dict]:
        """The latest record of this prompt, generator and settings, even when a later one of other settings (another
        split's history) followed it; None when there is none."""
        return self._by_identity.get(_identity(kind, key, input_sha, generator, settings))

    def get(self, kind: str, key: str, input_sha: Optional[str] = None, generator: Optional[str] = None,
            settings: Optional[Dict] = None):
        record = self.records.get((kind, key))
        if record is None:
            return None
        if input_sha is not None and record.get("input_sha") != input_sha:
            return None
        if generator is not None and record.get("generator") != generator:
            return None
        if settings is not None and record.get("settings") != settings:
            return None
        return record

    def summary(self, kind: str, key: str) -> Optional[str]:
        record = self.records.get((kind, key))
        return record["summarization"] if record and record.get("ok") else None

    def append(self, records: Iterable[Dict]) -> None:
        records = list(records)
        if not records:
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        # another run may append to the same book: its last line is complete once it releases the lock
        with exclusive_lock(lock_file(self.path), "profiles", wait=True):
            _cut_partial_last_line(self.path)
            size = os.path.getsize(self.path) if os.path.exists(self.path) else 0
            try:
                with open(self.path, "a", encoding="utf-8") as handle:
                    handle.write("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError as error:  # a full disk: the records are not stored, nor is a cut one left behind
                try:
                    os.truncate(self.path, size)
                except OSError:
                    pass  # the next append cuts it
                if write_failure_errno(error):
                    raise write_failed(self.path, error, kept=False) from None
                raise
            for record in records:
                self._index(record)


def _cut_partial_last_line(path: str) -> None:
    """Cut a last line without its newline (a record a killed run was writing), so the next append starts a line of
    its own instead of being glued to it and lost on the next read."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return
    with open(path, "rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return
        handle.seek(0)
        data = handle.read()
        handle.truncate(data.rfind(b"\n") + 1)


def generation_settings(generator: Generator, compute: str) -> Dict:
    """What decides a profile's answer besides its prompt and model: part of each record's identity."""
    return dict(compute=compute, max_new_tokens=generator.max_new_tokens, retries=generator.retries,
                seed=generator.seed)


#: Words kept of each attribute value (a description) and of each review in an item-profile prompt: a long text
#: would push the prompt past the model's context, whose start (the instructions) is then cut off.
ITEM_TEXT_WORDS = 200


def _words(text: str, words: int) -> str:
    parts = text.split()
    return text if len(parts) <= words else " ".join(parts[:words]) + " ..."


def _item_info(text: DatasetText, item: str) -> Dict[str, str]:
    info = text.items[item]
    attributes = {key: _words(value, ITEM_TEXT_WORDS) for key, value in info.attributes.items()}
    return dict({"item_id": item, "title": info.title}, **attributes)


def _item_description(text: DatasetText, book: Optional[ProfileBook], item: str, words: int) -> str:
    """The item's generated profile (eq. 2) from ``book``, else (no book: ``item_profiles`` off, or the profile
    failed) its raw attributes; cut to ``words`` words."""
    profile = book.summary("item", item) if book is not None else None
    if profile is None:
        info = text.items[item]
        profile = ", ".join(f"{k}: {v}" for k, v in info.attributes.items()) or "no description"
    return " ".join(profile.split()[:words])


def item_profile_prompt(formatter: ChatFormatter, template: PromptTemplate, text: DatasetText, item: str,
                        max_reviews: int) -> str:
    reviews = [_words(review, ITEM_TEXT_WORDS) for review in text.item_reviews.get(item, [])[:max_reviews]]
    user = template.user_message({"item_info": json.dumps(_item_info(text, item), ensure_ascii=False),
                                  "reviews": json.dumps(reviews, ensure_ascii=False)})
    return formatter.render(template.sections["system"], user, template.answer_prefix)


def user_profile_prompt(formatter: ChatFormatter, template: PromptTemplate, text: DatasetText,
                        book: Optional[ProfileBook],
                        user: str, max_history: int, profile_words: int) -> str:
    lines = []
    for event in text.user_history(user, max_history):
        rating = event.rating if event.rating is not None else "-"
        description = _item_description(text, book, event.item, profile_words)
        line = f"- {text.items[event.item].title} | {rating} | {description}"
        if event.review:
            line += f" | review: {' '.join(event.review.split()[:profile_words])}"
        lines.append(line)
    user_msg = template.user_message({"history": "\n".join(lines)})
    return formatter.render(template.sections["system"], user_msg, template.answer_prefix)


def _generate_kind(kind: str, keys: List[str], prompts: List[str], generator: Generator, template: PromptTemplate,
                   book: ProfileBook, generator_name: str, settings: Dict, progress: bool,
                   flush_every: Optional[int] = None) -> str:
    """Generate the missing profiles of one kind; each ``generate`` batch (``flush_every``, default the generator's
    batch size) is appended to ``book`` as it finishes, so a kill loses at most one batch. Returns a warning naming
    the failed profiles among ``keys`` (cached ones included), or ``""``."""
    flush_every = flush_every or generator.batch_size
    todo, earlier, shas = [], [], [_sha(prompt) for prompt in prompts]
    for key, prompt, sha in zip(keys, prompts, shas):
        if book.get(kind, key, sha, generator_name, settings) is not None:
            continue
        found = book.find(kind, key, sha, generator_name, settings)
        if found is not None:
            earlier.append(found)
        else:
            todo.append((key, prompt, sha))
    if todo or earlier:  # before the LLM loads and generates, not at the first append
        check_writable(book.path, "the profiles file (the dataset's artifact folder, docs/llm.md)")
    # a profile of these settings that a later record of other ones (another split's history) followed: appended
    # again, so it is the latest record of its key, which prompts read, without a generation
    book.append(earlier)
    if long_on_this_machine(len(todo)):  # a Yelp2018-size dataset: ~70k profiles, about a week on 2 cores
        logger.warning("%d %s profiles to generate, each an LLM answer (docs/llm.md measures about %s profiles/s on 2 "
                       "CPU cores: %s); they resume where they stop. hnlm_max_pairs=N limits the users%s.", len(todo),
                       kind, CPU_PROFILES_PER_SECOND, rough_duration(len(todo) / CPU_PROFILES_PER_SECOND),
                       " and items, hnlm_item_profiles=False describes items by their attributes" if kind == "item"
                       else "")
    failures = 0
    # no bar when every profile is cached: "user profiles: 0user [00:00, ?user/s]" read as a stage that ran
    bar = tqdm(total=len(todo), desc=f"{kind} profiles", disable=not progress or not todo, unit=kind)
    for start in range(0, len(todo), flush_every):
        batch = todo[start:start + flush_every]
        results = generator.generate([p for _, p, _ in batch], required=["summarization"],
                                     answer_prefix=template.answer_prefix)
        records = []
        for (key, _, sha), result in zip(batch, results):
            failures += not result["ok"]
            records.append(dict(kind=kind, key=key, input_sha=sha, generator=generator_name, settings=settings,
                                prompt_version=template.version, ok=result["ok"],
                                summarization=result["answer"]["summarization"] if result["ok"] else None,
                                raw=result["raw"], attempts=result["attempts"], error=result["error"]))
        book.append(records)
        bar.update(len(batch))
    bar.close()
    failed = sum(not (book.get(kind, key, sha, generator_name, settings) or {}).get("ok")
                 for key, sha in zip(keys, shas))
    if not failed:
        return ""
    return (f"{failed}/{len(keys)} {kind} profiles failed ({failures} of the {len(todo)} generated in this run; "
            f"recorded in {book.path})")


def build_profiles(text: DatasetText, generator: Generator, generator_name: str, book: ProfileBook,
                   users: Optional[List[str]] = None, items: Optional[List[str]] = None,
                   item_template: str = "item_profile.v1", user_template: str = "user_profile.v1",
                   max_history: int = 15, max_reviews: int = 5, profile_words: int = 30,
                   item_profiles: bool = True, progress: bool = True, compute: str = "float32") -> Dict[str, str]:
    """Generate missing item profiles, then user profiles (resumable). Returns the prompt versions used.

    Args:
        users: users to profile (default: every training user); ``items``: items to profile (default: every item
            in the users' prompt histories).
        item_profiles: False describes items by raw title/attributes instead of generated profiles (cheaper).
        max_history: most recent training interactions per user prompt.  profile_words: item profile words kept
            inside a user prompt.
        compute: the LLM's numerics (``LLMConfig.compute``), recorded with each profile.
    """
    formatter = ChatFormatter(generator.tokenizer)
    item_t, user_t = PromptTemplate.load(item_template), PromptTemplate.load(user_template)
    users = text.users() if users is None else users
    if items is None:
        items = sorted({e.item for u in users for e in text.user_history(u, max_history)})
    versions = {"user_profile": user_t.version}
    settings = generation_settings(generator, compute)
    if item_profiles:
        versions["item_profile"] = item_t.version
        prompts = [item_profile_prompt(formatter, item_t, text, i, max_reviews) for i in items]
        failed = _generate_kind("item", items, prompts, generator, item_t, book, generator_name, settings, progress)
        if failed:
            logger.warning("%s; user prompts describe those items by their raw attributes", failed)
    prompts = [user_profile_prompt(formatter, user_t, text, book if item_profiles else None, u,
                                   max_history, profile_words) for u in users]
    failed = _generate_kind("user", users, prompts, generator, user_t, book, generator_name, settings, progress)
    if failed:
        logger.warning("%s; their pairs get no negatives", failed)
    if generator.prompts_cut:
        logger.warning("%d prompts were longer than the model's context and lost their start (the instructions); "
                       "their profiles are unreliable: shorten the histories (hnlm_max_history, hnlm_profile_words)",
                       generator.prompts_cut)
    return versions
