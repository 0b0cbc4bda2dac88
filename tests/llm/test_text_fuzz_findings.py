"""Findings of the text-side fuzz (hostile item titles and LLM answers): each test failed before its fix."""
import json

import pytest
import torch

from recbole_hnlm.llm.generation import Generator
from recbole_hnlm.llm.prompts import ChatFormatter, PromptTemplate, quote
from recbole_hnlm.llm.semantic import NEGATIVE_TEMPLATE, negative_problem

PREFIX = '{"hard_negative_item": "'
#: The split marker render_split used; a title or profile holding it split the prompt inside that value.
MARKER = "\u2063HNLM_ITEM_BLOCK\u2063"


class _NoChat:
    """A tokenizer without a chat template (ChatFormatter's plain rendering)."""


@pytest.mark.parametrize("profile", [MARKER, f"likes {MARKER} films", MARKER + "\u2063" * 3])
def test_render_split_is_not_split_inside_a_value_holding_its_marker(profile):
    """prefix + item block + tail is the full prompt, and the user's JSON line holds the whole profile."""
    template = PromptTemplate.load(NEGATIVE_TEMPLATE)
    formatter = ChatFormatter(_NoChat())
    values = {"user_id": quote("u1"), "user_profile": quote(profile)}
    item = {"item_id": quote("7"), "item_title": quote("Heat (1995)"), "item_profile": quote("crime")}
    prefix, tail = formatter.render_split(template, values)
    full = formatter.render(template.sections["system"], template.user_message(values, item), template.answer_prefix,
                            template.format)
    assert prefix + template.render_item_block(item) + tail == full
    line = next(x for x in prefix.split("\n") if x.startswith("USER INFORMATION: "))
    assert json.loads(line[len("USER INFORMATION: "):])["user_profile"] == profile
    assert tail.count("INTERACTED ITEM") == 0 and prefix.count("INTERACTED ITEM") == 0


def test_hybrid_prefix_ends_at_its_item_slot_when_a_title_holds_the_marker():
    """The hybrid query's user text (history titles) holding the marker: the prefix still ends with 'ITEM:'."""
    template = PromptTemplate.load("hybrid_query.v3")
    user_text = f"liked: Heat; {MARKER} evil; Casino"
    prefix, tail = ChatFormatter(_NoChat()).render_split(template, {"user_embedding": "<u>", "user_profile": user_text})
    assert prefix.endswith(user_text + "\nITEM:") and tail == ""


@pytest.mark.parametrize("title", ["!!!", "\U0001F3AC\U0001F37F", "(1994)", "...?"])
def test_an_answer_naming_a_sign_only_title_is_refused(title):
    """A title without letters or digits named as written is the interacted item (or a history item), not a
    negative; before, its empty comparison key matched nothing and the answer was stored. Since v17 an answer without
    a letter or digit names no item whatever the titles, so only "(1994)" reaches the title comparison."""
    why = "interacted item itself" if any(ch.isdigit() for ch in title) else "no letter or digit"
    assert why in negative_problem({"hard_negative_item": title}, title)
    assert why in negative_problem({"hard_negative_item": f" {title.upper()} "}, title)
    assert ("user's history" if why != "no letter or digit" else why) in negative_problem(
        {"hard_negative_item": title}, "Heat (1995)", "1995", history=[(title, None)])


def test_sign_only_titles_do_not_refuse_other_answers():
    """The sign-only comparison matches only that title: other names, a namesake of another year and other signs
    with a digit, are accepted."""
    for answer in ("Heat", "Casino (1995)", "!!! (1999)", "\U0001F3AC 2"):
        assert negative_problem({"hard_negative_item": answer}, "!!! (2001)",
                                history=[("\U0001F3AC\U0001F37F", None)]) is None, answer


@pytest.mark.parametrize("answer", ["?", "...", " - ", "\u2014", "\U0001F3AC\U0001F37F", "**?**", "\u200b!\u200b"])
def test_an_answer_without_a_letter_or_digit_names_no_item(answer):
    """Punctuation or emoji alone ("?", "...") was stored as a hard negative: a text embedding of it is noise."""
    problem = negative_problem({"hard_negative_item": answer}, "Heat (1995)", "1995")
    assert problem is not None and "no letter or digit" in problem


@pytest.mark.parametrize("title, answer", [
    ("Amélie (2001)", "Amelie"), ("Amelie (2001)", "AMÉLIE"), ("Amélie (2001)", "Ame\u0301lie"),  # NFD accent
    ("Amélie (2001)", "Amé\u200blie"), ("Heat (1995)", "\u202aHeat\u202c"), ("Heat (1995)", "\uff28\uff45\uff41\uff54"),
    ("Straße (1999)", "STRASSE"), ("Official Story, The (1985)", "The O\ufb03cial Story"),  # the ffi ligature
])
def test_the_interacted_title_written_otherwise_is_refused(title, answer):
    """Accents, decomposed accents, zero-width or bidi characters, full-width letters, ligatures and ß/SS wrote the
    interacted title so that it was stored as its own hard negative (the checks folded case only)."""
    problem = negative_problem({"hard_negative_item": answer}, title)
    assert problem is not None and "interacted item itself" in problem, problem
    assert "user's history" in negative_problem({"hard_negative_item": answer}, "Casino (1995)",
                                                history=[(title, None)])


def test_folding_keeps_other_titles_apart():
    """Only how a title is written is folded: Amélie is not Amelia, nor Heat Heath."""
    assert negative_problem({"hard_negative_item": "Amélie"}, "Amelia (2009)") is None
    assert negative_problem({"hard_negative_item": "Heath"}, "Heat (1995)") is None


def test_an_id_written_with_an_invisible_character_is_the_id():
    assert "an id from the prompt" in negative_problem({"hard_negative_item": "2\u200b42"}, "Heat (1995)",
                                                       ids=("242", "u1"))


class _Recording(Generator):
    """A Generator whose model calls record the prompt ids they get and answer valid JSON (the cutting under test
    happens before them, in generate_with_prefix)."""

    def __init__(self, tokenizer, limit):
        super().__init__(torch.nn.Linear(1, 1), tokenizer, max_new_tokens=4, retries=0, max_prompt_tokens=limit)
        self.lengths = []

    def prefix_cache(self, prefix, reserve=0):
        return {"ids": self._encode(prefix, reserve), "kv": None}

    def _generate_prefixed(self, cache, prefix_len, suffixes, seeds):
        self.lengths += [prefix_len + len(s) for s in suffixes]
        return [('Heat", "reasoning": "r"}', False)] * len(suffixes)

    def _generate_ids(self, id_lists, seeds):
        self.lengths += [len(ids) for ids in id_lists]
        return [('Heat", "reasoning": "r"}', False)] * len(id_lists)


@pytest.mark.parametrize("use_cache", [True, False])
def test_a_suffix_longer_than_the_prompt_limit_is_cut_to_it(tiny_tokenizer, use_cache):
    """max_prompt_tokens holds for prefix + suffix even when one suffix (an item block with a huge title) alone is
    longer: it is cut from the left and counted, and the prefix keeps at least one token."""
    limit = 20
    gen = _Recording(tiny_tokenizer, limit)
    suffixes = ["Heat " * 60, "Casino Fargo"]
    long_ids = tiny_tokenizer(suffixes[0], add_special_tokens=False)["input_ids"]
    assert len(long_ids) > limit  # the case under test
    results = gen.generate_with_prefix("Heat Casino Fargo Nixon", suffixes, required=["hard_negative_item"],
                                       answer_prefix=PREFIX, use_cache=use_cache)
    assert all(r["ok"] for r in results)
    assert len(gen.lengths) == 2 and max(gen.lengths) <= limit
    assert gen.prompts_cut >= 1


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("long_suffix", [False, True])
def test_a_cut_prefix_counts_every_prompt_it_starts(tiny_tokenizer, use_cache, long_suffix):
    """A user's prefix (profile, instructions) longer than the limit cuts all of that user's prompts, but counted
    once in prompts_cut (3 cut prompts reported as 1); each prompt counts once, also when its suffix was cut too."""
    gen = _Recording(tiny_tokenizer, 20)
    suffixes = ["Heat", "Casino", "Fargo"] + (["Nixon " * 60] if long_suffix else [])
    gen.generate_with_prefix("Heat Casino Fargo Nixon " * 10, suffixes, required=["hard_negative_item"],
                             answer_prefix=PREFIX, use_cache=use_cache)
    assert gen.prompts_cut == len(suffixes)
    gen.generate_with_prefix("Heat", ["Casino", "Nixon " * 60], required=["hard_negative_item"],
                             answer_prefix=PREFIX, use_cache=use_cache)  # the long suffix only: one more
    assert gen.prompts_cut == len(suffixes) + 1
    gen.generate_with_prefix("Heat", ["Casino", "Fargo"], required=["hard_negative_item"], answer_prefix=PREFIX,
                             use_cache=use_cache)
    assert gen.prompts_cut == len(suffixes) + 1


@pytest.mark.parametrize("answer, truncated", [
    ('{"hard_negative_item": "Heat \\ud83c", "reasoning": "r"}', False),  # a high surrogate without its pair
    ('{"hard_negative_item": "Heat \\udfac", "reasoning": "r"}', False),  # a low one alone
    ('{"hard_negative_item": "Heat", "reasoning": "fun \\ud83c"}', False),  # in another field (stored too)
    ('{"hard_negative_item": "Heat \\ud83c', True),  # an emoji's escape cut by the token budget
])
def test_an_escape_of_half_a_character_is_malformed(answer, truncated):
    """A lone surrogate is no text: ProfileBook.append and the texts.jsonl write (UTF-8) crashed the stage on it."""
    from recbole_hnlm.llm.json_answer import MalformedAnswer, parse_json_answer

    with pytest.raises(MalformedAnswer):
        parse_json_answer(answer, ["hard_negative_item"], allow_truncated=truncated)


def test_a_whole_escaped_emoji_still_parses():
    """A surrogate pair is one character (json joins it): accepted, and writable as UTF-8."""
    from recbole_hnlm.llm.json_answer import parse_json_answer

    obj = parse_json_answer('{"hard_negative_item": "Heat \\ud83c\\udfac", "reasoning": "r"}', ["hard_negative_item"])
    assert obj["hard_negative_item"] == "Heat \U0001F3AC"
    assert obj["hard_negative_item"].encode("utf-8")


def test_store_keys_with_line_separator_characters_round_trip(tmp_path):
    """Tokens holding characters str.splitlines() breaks at (\\x0b, \\x0c, \\x1c, \\x85, \\u2028) were written to
    the keys file but made the store unreadable ('every line must be user<TAB>item'), so it was computed again."""
    from recbole_hnlm.llm.store import PairEmbeddingStore, write_pair_store

    users = ["u\x0b1", "u\x0c2", "u\x1c3", "u\x854", "u\u20285"]
    items = ["i\u20291", "i2", "i\x1e3", "i4", "i5"]
    path = str(tmp_path / "s.safetensors")
    write_pair_store(path, users, items, torch.randn(5, 3), dict(variant="semantic", dataset="x", dataset_hash="h"))
    store = PairEmbeddingStore.open(path)
    assert (store.user_tokens, store.item_tokens) == (users, items)


@pytest.mark.parametrize("suffix", ["item", "inter"])
def test_a_nul_byte_in_a_file_the_llm_stage_reads_is_an_error_naming_the_line(tmp_path, suffix):
    """pandas' C parser (the LLM stage's reader) ends a field at a NUL byte where RecBole's Python-engine reader
    keeps it: a title reached the prompts cut ('Nul' for 'Nul\\x00Byte'), an id would not match RecBole's."""
    from recbole_hnlm.errors import DataError
    from recbole_hnlm.llm.dataset_text import DatasetText

    folder = tmp_path / "toy"
    folder.mkdir()
    inter = "user_id:token\titem_id:token\nu1\ti1\nu2\ti2\n"
    item = "item_id:token\ttitle:token_seq\ni1\tHeat\ni2\tSeven\n"
    (folder / "toy.inter").write_text(inter)
    (folder / "toy.item").write_text(item)
    assert DatasetText(str(tmp_path), "toy").items["i2"].title == "Seven"
    target = folder / f"toy.{suffix}"
    target.write_text(target.read_text().replace("Seven", "Sev\x00en").replace("u2\t", "u\x002\t"))
    with pytest.raises(DataError, match=rf"toy\.{suffix}:3: a NUL byte"):
        DatasetText(str(tmp_path), "toy")
