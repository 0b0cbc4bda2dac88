"""Profiles, prompts and dataset text pinned on small hand-written inputs: what each prompt line shows, which record
the profile book reuses, how a template is read and rendered, and what DatasetText reads from the atomic files."""
import json
import logging
import os

import pytest
import torch

from llm_helpers import make_scripted_generator
from recbole_hnlm.errors import DataError
from recbole_hnlm.llm.generation import Generator
from recbole_hnlm.llm.dataset_text import DatasetText, plain_categories
from recbole_hnlm.llm.profiles import (ITEM_TEXT_WORDS, ProfileBook, build_profiles, generation_settings,
                                       item_profile_prompt, user_profile_prompt)
from recbole_hnlm.llm.prompts import ChatFormatter, PromptTemplate, quote

INTER = ("user_id:token\titem_id:token\trating:float\treview:token_seq\ttimestamp:float\n"
         "u1\ti1\t5\tgreat heist movie with a long final shootout\t30\n"
         "u1\ti2\t3\t\t10\n"
         "u1\ti3\t\t\t20\n"
         "u2\ti2\t4\tcosy cafe story\t5\n"
         "u2\ti4\t2\t\t6\n")
ITEM = ("item_id:token\ttitle:token_seq\tyear:token\tgenre:token_seq\n"
        "i1\tHeat\t1995\tCrime Thriller\n"
        "i2\tCaf\u00e9 Noir\t2001\tDrama\n"
        "i3\t\t\t\n")


def _write(root, name, inter=INTER, item=ITEM):
    os.makedirs(os.path.join(root, name), exist_ok=True)
    with open(os.path.join(root, name, f"{name}.inter"), "w", encoding="utf-8") as handle:
        handle.write(inter)
    if item is not None:
        with open(os.path.join(root, name, f"{name}.item"), "w", encoding="utf-8") as handle:
            handle.write(item)
    return root


@pytest.fixture
def hand(tmp_path):
    """A five-row dataset: ratings, reviews and times on u1's three items; i3 untitled, i4 without an item row."""
    return DatasetText(_write(str(tmp_path), "hand"), "hand")


def _history_lines(text, book, user, max_history=15, profile_words=30):
    template = PromptTemplate.load("user_profile.v1")
    prompt = user_profile_prompt(ChatFormatter(None), template, text, book, user, max_history, profile_words)
    return [line for line in prompt.splitlines() if line.startswith("- ")]


# --- user and item prompts ---------------------------------------------------------------------------------------

def test_a_user_prompt_lists_title_rating_and_description_oldest_first(hand):
    """One line per training item in time order: the raw attributes without an item profile, "-" for no rating,
    "no description" for an item without attributes, the review cut to ``profile_words``."""
    assert _history_lines(hand, None, "u1") == [
        "- Caf\u00e9 Noir | 3 | year: 2001, genres: Drama",
        "- i3 | - | no description",
        "- Heat | 5 | year: 1995, genres: Crime Thriller | review: great heist movie with a long final shootout"]
    assert _history_lines(hand, None, "u2") == [
        "- Caf\u00e9 Noir | 4 | year: 2001, genres: Drama | review: cosy cafe story", "- item i4 | 2 | no description"]


def test_a_user_prompt_keeps_the_most_recent_items_and_cuts_profiles_and_reviews(hand, tmp_path):
    book = ProfileBook(str(tmp_path / "p.jsonl"))
    book.append([dict(kind="item", key="i1", ok=True, summarization="fans of tense crime dramas and long heists"),
                 dict(kind="item", key="i3", ok=False, summarization=None)])
    assert _history_lines(hand, book, "u1", max_history=2, profile_words=3) == [
        "- i3 | - | no description",  # a failed profile: the raw attributes
        "- Heat | 5 | fans of tense | review: great heist movie"]
    assert _history_lines(hand, book, "u1", max_history=0)[0].startswith("- Caf\u00e9 Noir | 3 |")  # 0: every item
    prompt = user_profile_prompt(ChatFormatter(None), PromptTemplate.load("user_profile.v1"), hand, book, "u1", 2, 3)
    assert "(title | rating | description):\n- i3 | - | no description\n- Heat | 5 |" in prompt


def test_an_item_prompt_shows_id_title_attributes_and_reviews_as_json(hand):
    template = PromptTemplate.load("item_profile.v1")
    prompt = item_profile_prompt(ChatFormatter(None), template, hand, "i2", 5)
    assert 'BASIC INFORMATION: {"item_id": "i2", "title": "Caf\u00e9 Noir", "year": "2001", "genres": "Drama"}\n' \
           'USER FEEDBACK: ["cosy cafe story"]\n' in prompt
    assert prompt.endswith('\n\nAnswer:\n{"summarization": "')
    assert 'USER FEEDBACK: []\n' in item_profile_prompt(ChatFormatter(None), template, hand, "i2", 0)


def test_an_item_prompt_cuts_only_texts_longer_than_the_word_limit(tmp_path):
    """``ITEM_TEXT_WORDS`` words (200, docs/llm.md) are kept whole; one more is cut to them plus " ..."; at most
    ``max_reviews``."""
    assert ITEM_TEXT_WORDS == 200
    exact = " ".join(f"w{k}" for k in range(ITEM_TEXT_WORDS))
    longer = exact + " extra"
    inter = "user_id:token\titem_id:token\treview:token_seq\n" + "".join(
        f"u{k}\ti1\t{review}\n" for k, review in enumerate([exact, longer, "third"]))
    item = f"item_id:token\ttitle:token_seq\tdescription:token_seq\ni1\tHeat\t{longer}\n"
    text = DatasetText(_write(str(tmp_path), "long", inter, item), "long")
    prompt = item_profile_prompt(ChatFormatter(None), PromptTemplate.load("item_profile.v1"), text, "i1", 2)
    info = json.loads(prompt.split("BASIC INFORMATION: ")[1].split("\n")[0])
    reviews = json.loads(prompt.split("USER FEEDBACK: ")[1].split("\n")[0])
    assert info == {"item_id": "i1", "title": "Heat", "description": exact + " ..."}
    assert reviews == [exact, exact + " ..."]


# --- the profile book ------------------------------------------------------------------------------------------------

RECORD = {"kind": "user", "key": "u1", "input_sha": "s", "generator": "g", "settings": {"seed": 1}, "ok": True,
          "summarization": "likes Heat"}


def test_a_record_is_reused_only_for_its_prompt_generator_and_settings(tmp_path):
    book = ProfileBook(str(tmp_path / "p.jsonl"))
    book.append([RECORD])
    assert book.get("user", "u1", "s", "g", {"seed": 1}) == RECORD == book.get("user", "u1")
    for other in (dict(input_sha="t"), dict(generator="h"), dict(settings={"seed": 2})):
        ask = dict(dict(input_sha="s", generator="g", settings={"seed": 1}), **other)
        assert book.get("user", "u1", **ask) is None, other
        assert book.find("user", "u1", ask["input_sha"], ask["generator"], ask["settings"]) is None, other
    assert book.get("user", "u2") is None and book.summary("user", "u2") is None
    assert book.summary("user", "u1") == "likes Heat"


def test_lines_that_are_json_but_no_record_are_skipped(tmp_path):
    """A line that parses but holds no kind/key (or no object at all) is skipped like a cut one, not an error."""
    path = tmp_path / "p.jsonl"
    path.write_text("{}\n" + json.dumps({"kind": "user"}) + "\n[1, 2]\nnull\n" + json.dumps(RECORD) + "\n")
    book = ProfileBook(str(path))
    assert book.records == {("user", "u1"): RECORD}


def test_appending_no_record_writes_nothing(tmp_path):
    path = tmp_path / "new" / "p.jsonl"
    ProfileBook(str(path)).append([])
    assert not (tmp_path / "new").exists()


def test_the_line_before_a_cut_one_keeps_its_newline(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(RECORD) + "\n" + '{"kind": "us')
    ProfileBook(str(path)).append([dict(RECORD, key="u2")])
    assert path.read_text() == json.dumps(RECORD) + "\n" + json.dumps(dict(RECORD, key="u2")) + "\n"
    path.write_text('{"kind": "us')  # nothing complete before it
    ProfileBook(str(path)).append([RECORD])
    assert path.read_text() == json.dumps(RECORD) + "\n"


def test_generation_settings_name_every_setting_that_decides_an_answer(tiny_tokenizer):
    generator = make_scripted_generator(tiny_tokenizer)
    generator.seed = 7
    assert generation_settings(generator, "bfloat16") == {"compute": "bfloat16", "max_new_tokens": 16, "retries": 2,
                                                          "seed": 7}


# --- building the profiles -------------------------------------------------------------------------------------------

def _sha(text):
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def test_build_profiles_profiles_the_history_items_first_and_records_what_decided_them(hand, tiny_tokenizer, tmp_path):
    generator = make_scripted_generator(tiny_tokenizer)
    book = ProfileBook(str(tmp_path / "p.jsonl"))
    item_t, user_t = PromptTemplate.load("item_profile.v1"), PromptTemplate.load("user_profile.v1")
    versions = build_profiles(hand, generator, "scripted", book, users=["u1"], max_history=1, progress=False,
                              compute="bfloat16")
    assert versions == {"user_profile": user_t.version, "item_profile": item_t.version}
    records = [json.loads(line) for line in open(book.path, encoding="utf-8")]
    assert [(r["kind"], r["key"]) for r in records] == [("item", "i1"), ("user", "u1")]  # u1's last item only
    formatter = ChatFormatter(tiny_tokenizer)
    item_prompt = item_profile_prompt(formatter, item_t, hand, "i1", 5)
    user_prompt = user_profile_prompt(formatter, user_t, hand, book, "u1", 1, 30)
    assert records[0]["summarization"] in user_prompt  # the user prompt describes i1 by its new profile
    for record, prompt, template in zip(records, (item_prompt, user_prompt), (item_t, user_t)):
        assert record["input_sha"] == _sha(prompt) and record["prompt_version"] == template.version
        assert record["settings"] == {"compute": "bfloat16", "max_new_tokens": 16, "retries": 2, "seed": 2020}
        assert record["ok"] and record["raw"].startswith('{"summarization": "' + record["summarization"] + '"')


def test_without_item_profiles_only_users_are_profiled_on_raw_attributes(hand, tiny_tokenizer, tmp_path):
    book = ProfileBook(str(tmp_path / "p.jsonl"))
    book.append([dict(kind="item", key="i1", ok=True, summarization="an old item profile")])
    user_t = PromptTemplate.load("user_profile.v1")
    versions = build_profiles(hand, make_scripted_generator(tiny_tokenizer), "scripted", book, users=["u1"],
                              item_profiles=False, progress=False)
    assert versions == {"user_profile": user_t.version}
    record = book.get("user", "u1")
    assert record["input_sha"] == _sha(user_profile_prompt(ChatFormatter(tiny_tokenizer), user_t, hand, None, "u1",
                                                           15, 30))
    assert [key for kind, key in book.records if kind == "item"] == ["i1"]  # no item profile generated


class _EmptyAnswers(Generator):
    """Answers every prompt with an empty summarization (valid JSON, but nothing to use)."""

    def _generate_ids(self, id_lists, seeds):
        return ['", "reasoning": "none"}'] * len(id_lists)


def test_an_answer_without_a_summarization_is_a_failure_record(hand, tiny_tokenizer, tmp_path, caplog):
    generator = _EmptyAnswers(torch.nn.Linear(1, 1), tiny_tokenizer, max_new_tokens=16, batch_size=4, retries=1)
    book = ProfileBook(str(tmp_path / "p.jsonl"))
    caplog.set_level(logging.WARNING)
    build_profiles(hand, generator, "empty", book, users=["u2"], progress=False)
    records = [json.loads(line) for line in open(book.path, encoding="utf-8")]
    assert [(r["kind"], r["key"], r["ok"], r["summarization"], r["attempts"]) for r in records] == [
        ("item", "i2", False, None, 2), ("item", "i4", False, None, 2), ("user", "u2", False, None, 2)]
    assert f"2/2 item profiles failed (2 of the 2 generated in this run; recorded in {book.path}); user prompts " \
           "describe those items by their raw attributes" in caplog.messages
    assert f"1/1 user profiles failed (1 of the 1 generated in this run; recorded in {book.path}); their pairs get " \
           "no negatives" in caplog.messages


def test_prompts_cut_to_the_model_context_are_counted_at_the_end(hand, tiny_tokenizer, tmp_path, caplog):
    generator = make_scripted_generator(tiny_tokenizer)
    generator.max_prompt_tokens = 20
    caplog.set_level(logging.WARNING)
    build_profiles(hand, generator, "scripted", ProfileBook(str(tmp_path / "p.jsonl")), users=["u2"],
                   progress=False)
    assert generator.prompts_cut == 3
    assert any(m.startswith("3 prompts were longer than the model's context and lost their start") and
               "hnlm_max_history, hnlm_profile_words" in m for m in caplog.messages)


def test_a_read_only_book_is_refused_only_when_it_must_be_written(hand, tiny_tokenizer, tmp_path, monkeypatch):
    """Profiles to append again (of settings a later record of others followed) need a writable file as much as new
    ones; a book whose latest records are this run's is read only, and may lie in a read-only folder."""
    from recbole_hnlm.errors import ConfigError
    from recbole_hnlm.llm.profiles import _generate_kind

    from llm_helpers import simulate_read_only

    generator, template = make_scripted_generator(tiny_tokenizer), PromptTemplate.load("user_profile.v1")
    path = str(tmp_path / "book" / "p.jsonl")
    for prompt in ("full history", "half history"):
        _generate_kind("user", ["u1"], [prompt], generator, template, ProfileBook(path), "g", {}, progress=False)
    simulate_read_only(monkeypatch, tmp_path / "book")
    assert _generate_kind("user", ["u1"], ["half history"], generator, template, ProfileBook(path), "g", {},
                          progress=False) == ""
    with pytest.raises(ConfigError, match="the profiles file .* cannot be written"):
        _generate_kind("user", ["u1"], ["full history"], generator, template, ProfileBook(path), "g", {},
                       progress=False)


def test_only_profiles_still_to_generate_are_announced_as_a_long_stage(tiny_tokenizer, tmp_path, monkeypatch, caplog):
    import recbole_hnlm.llm.throughput as throughput
    from recbole_hnlm.llm.profiles import _generate_kind

    monkeypatch.setattr(throughput, "LONG_CPU_ANSWERS", 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    caplog.set_level(logging.WARNING)
    args = (make_scripted_generator(tiny_tokenizer), PromptTemplate.load("user_profile.v1"),
            ProfileBook(str(tmp_path / "p.jsonl")), "g", {})
    keys = ["u1", "u2", "u3"]
    _generate_kind("user", keys[:2], [f"history of {k}" for k in keys[:2]], *args, progress=False)
    assert [m for m in caplog.messages if "profiles to generate" in m][0].startswith("2 user profiles to generate")
    caplog.clear()
    _generate_kind("user", keys, [f"history of {k}" for k in keys], *args, progress=False)  # one new: not long
    assert not [m for m in caplog.messages if "profiles to generate" in m]


# --- prompt templates ------------------------------------------------------------------------------------------------

def _template(tmp_path, text, name="mine.v1"):
    path = tmp_path / f"{name}.txt"
    path.write_text(text, encoding="utf-8")
    return str(path)


BLOCK = ("### system\nSYS\n### user\nHi $user_id.\n$item_block\nEnd.\n### item_block\nItem: $item_text\n"
         "### answer_prefix\n{\"a\": \"")


def test_a_template_file_is_read_by_path_and_named_with_its_digest(tmp_path):
    import hashlib

    path = _template(tmp_path, BLOCK)
    template = PromptTemplate.load(path)
    assert template.name == "mine.v1"
    assert template.version == f"mine.v1@{hashlib.sha256(BLOCK.encode()).hexdigest()[:8]}"
    assert template.sections == {"system": "SYS", "user": "Hi $user_id.\n$item_block\nEnd.",
                                 "item_block": "Item: $item_text", "answer_prefix": '{"a": "'}
    assert PromptTemplate.load("mine.v1", prompt_dir=str(tmp_path)).sections == template.sections
    assert template.format == "chat" and not template.opens_with_start_tokens
    with pytest.raises(FileNotFoundError, match="mine.v2.txt: prompt template not found"):
        PromptTemplate.load("mine.v2", prompt_dir=str(tmp_path))


@pytest.mark.parametrize("text, message", [
    ("### system\nS\n", "section '### user' missing"),
    ("### user\nU\n", "section '### system' missing"),
    ("### system\nS\n### user\nU $item_block\n", "'\\$item_block' used but section '### item_block' missing"),
])
def test_a_template_without_its_sections_is_refused(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        PromptTemplate.load(_template(tmp_path, text))


def test_a_start_section_other_than_tokenizer_is_refused(tmp_path):
    raw = PromptTemplate.load(_template(tmp_path, "### system\nS\n### user\nU\n### format\nraw\n### start\n"
                                                  "tokenizer\n"))
    assert raw.format == "raw" and raw.opens_with_start_tokens
    bad = PromptTemplate.load(_template(tmp_path, "### system\nS\n### user\nU\n### start\nbos\n", "bad.v1"))
    with pytest.raises(ValueError, match="template bad.v1: '### start' must be 'tokenizer' or absent, got 'bos'"):
        bad.opens_with_start_tokens


def test_item_values_with_dollar_signs_are_inserted_as_they_are(tmp_path):
    template = PromptTemplate.load(_template(tmp_path, BLOCK))
    assert template.user_message({"user_id": "u$1"}, {"item_text": "$5 Tickets $$"}) == \
        "Hi u$1.\nItem: $5 Tickets $$\nEnd."
    assert template.render_item_block({"item_text": "Heat"}) == "Item: Heat"
    with pytest.raises(KeyError):  # a placeholder without a value is an error, never left in the prompt
        template.user_message({})
    with pytest.raises(KeyError):
        template.render_item_block({})


def test_rendering_plain_chat_and_raw(tmp_path, tiny_tokenizer):
    plain = ChatFormatter(None)
    assert not plain.has_chat_template and plain.render("S", "U", "{") == "S\n\nU\n\nAnswer:\n{"
    assert plain.render("S", "U", "{", fmt="raw") == "S\nU{"
    chat = ChatFormatter(tiny_tokenizer)
    assert chat.render("S", "U", "{") == \
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n{"

    class NoTemplate:
        chat_template = None

    assert not ChatFormatter(NoTemplate()).has_chat_template


def test_a_split_render_keeps_the_templates_format(tmp_path):
    raw = PromptTemplate.load(_template(tmp_path, BLOCK + "\n### format\nraw\n"))
    prefix, tail = ChatFormatter(None).render_split(raw, {"user_id": "u1"})
    assert (prefix, tail) == ("SYS\nHi u1.\n", '\nEnd.{"a": "')
    chat = PromptTemplate.load(_template(tmp_path, BLOCK, "chat.v1"))
    assert ChatFormatter(None).render_split(chat, {"user_id": "u1"}) == ("SYS\n\nHi u1.\n",
                                                                        '\nEnd.\n\nAnswer:\n{"a": "')
    no_block = PromptTemplate.load("user_profile.v1")
    with pytest.raises(ValueError, match="template user_profile.v1: no \\$item_block to split at"):
        ChatFormatter(None).render_split(no_block, {"history": "- Heat"})


def test_quote_escapes_for_a_json_string_and_keeps_other_characters():
    assert quote('Caf\u00e9 "Noir"\n') == 'Caf\u00e9 \\"Noir\\"\\n' and quote(7) == "7"


# --- dataset text ----------------------------------------------------------------------------------------------------

def test_the_first_title_field_and_the_first_nonempty_attribute_source_are_read(tmp_path):
    """``title`` before ``name``; ``release_year`` before ``year`` (an empty one falls through); ``class`` before
    ``genre``."""
    inter = "user_id:token\titem_id:token\nu1\ti1\nu1\ti2\n"
    item = ("item_id:token\tname:token_seq\ttitle:token_seq\trelease_year:token\tyear:token\tclass:token_seq\t"
            "genre:token_seq\n"
            "i1\tShop\tHeat\t1995\t1996\tCrime\tDrama\n"
            "i2\tShop 2\tFargo\t\t1996\t\tComedy\n")
    text = DatasetText(_write(str(tmp_path), "fields", inter, item), "fields")
    assert text.items["i1"].title == "Heat" and text.items["i1"].attributes == {"year": "1995", "genres": "Crime"}
    assert text.items["i2"].attributes == {"year": "1996", "genres": "Comedy"}


def test_stars_and_summary_fields_give_ratings_and_reviews(tmp_path):
    inter = "user_id:token\titem_id:token\tstars:float\tsummary:token_seq\nu1\ti1\t4\tloud\n"
    text = DatasetText(_write(str(tmp_path), "yelpish", inter, None), "yelpish")
    assert [(e.rating, e.review) for e in text.history["u1"]] == [("4", "loud")] and text.has_reviews


def test_recboles_time_field_orders_the_history_before_timestamp(tmp_path):
    inter = "user_id:token\titem_id:token\ttimestamp:float\tts:float\nu1\ti1\t1\t3\nu1\ti2\t2\t1\nu1\ti3\t3\t2\n"
    root = _write(str(tmp_path), "timed", inter, None)
    assert [e.item for e in DatasetText(root, "timed", time_field="ts").history["u1"]] == ["i2", "i3", "i1"]
    assert [e.item for e in DatasetText(root, "timed").history["u1"]] == ["i1", "i2", "i3"]
    assert [e.item for e in DatasetText(root, "timed", time_field="absent").history["u1"]] == ["i1", "i2", "i3"]


def test_training_pairs_of_any_id_type_select_rows_and_record_the_split(tmp_path, caplog):
    """Ids given as numbers match the file's tokens; a pair the file lacks is counted and stays in the split."""
    inter = "user_id:token\titem_id:token\trating:float\n1\t10\t5\n1\t11\t4\n2\t10\t3\n"
    root = _write(str(tmp_path), "ids", inter, None)
    caplog.set_level(logging.WARNING)
    text = DatasetText(root, "ids", train_pairs=[(1, 10), (2, 10), (3, 30), (4, 40)])
    assert text.pairs == [("1", "10"), ("2", "10")]
    assert text.split_pairs == {("1", "10"), ("2", "10"), ("3", "30"), ("4", "40")}
    assert any(m.endswith("ids.inter: 2 training pairs are not in the interaction file and are ignored")
               for m in caplog.messages)


def test_a_pair_on_several_rows_is_listed_once(tmp_path, caplog):
    """Without a split its first row counts; with one, which row RecBole trains on is unknown: no rating, and only
    the training pairs of several rows are counted in the warning."""
    inter = ("user_id:token\titem_id:token\trating:float\treview:token_seq\n"
             "u1\ti1\t5\tgood\nu1\ti1\t1\tbad\nu1\ti2\t4\tfine\nu2\ti3\t2\tmeh\nu2\ti3\t3\tok\n")
    root = _write(str(tmp_path), "dup", inter, None)
    text = DatasetText(root, "dup")
    assert text.pairs == [("u1", "i1"), ("u1", "i2"), ("u2", "i3")]
    assert (text.history["u1"][0].rating, text.history["u1"][0].review) == ("5", "good")
    assert text.item_reviews == {"i1": ["good"], "i2": ["fine"], "i3": ["meh"]}
    caplog.set_level(logging.WARNING)
    text = DatasetText(root, "dup", train_pairs=[("u1", "i1"), ("u1", "i2")])
    assert [(e.item, e.rating, e.review) for e in text.history["u1"]] == [("i1", None, None), ("i2", "4", "fine")]
    assert text.item_reviews == {"i2": ["fine"]}
    assert any(": 1 training pairs occur on more than one row" in m for m in caplog.messages)


def test_an_items_first_row_is_used(tmp_path):
    inter = "user_id:token\titem_id:token\nu1\ti1\n"
    item = "item_id:token\ttitle:token_seq\ni1\tHeat\ni1\tHeat (remake)\n"
    assert DatasetText(_write(str(tmp_path), "rows", inter, item), "rows").items["i1"].title == "Heat"


def test_users_keep_their_first_appearance_and_items_sort_by_length(tmp_path):
    inter = "user_id:token\titem_id:token\nu9\ti10\nu1\ti9\nu9\ti2\n"
    text = DatasetText(_write(str(tmp_path), "order", inter, None), "order")
    assert text.users() == ["u9", "u1"] and text.item_tokens() == ["i2", "i9", "i10"]
    assert text.pairs == [("u9", "i10"), ("u9", "i2"), ("u1", "i9")]


def test_pair_subsets_keep_the_grouped_order_and_every_pair_is_recorded_as_zero(hand):
    n = len(hand.pairs)
    assert [hand.effective_max_pairs(k) for k in (None, 0, -1, n - 1, n, n + 1)] == [0, 0, 0, n - 1, 0, 0]
    subset = hand.select_pairs(3, seed=1)
    assert len(subset) == 3 and subset == [p for p in hand.pairs if p in subset]
    assert hand.select_pairs(n, seed=1) == hand.pairs


def test_no_training_pair_is_an_error_naming_the_file(tmp_path):
    root = _write(str(tmp_path), "none", "user_id:token\titem_id:token\nu1\ti1\n", None)
    text = DatasetText(root, "none", train_pairs=[("u2", "i2")])
    with pytest.raises(DataError, match="none.inter: no training pairs"):
        text.select_pairs(None, seed=0)


@pytest.mark.parametrize("inter, item, message", [
    ("user_id:token\titem_id:token\nu1\ti1\n", "id:token\ttitle:token_seq\ni1\tHeat\n",
     "bad.item: field 'item_id' missing"),
    ("user_id:token\tbook_id:token\nu1\ti1\n", None, "bad.inter: field 'item_id' missing"),
])
def test_files_without_their_id_fields_are_errors_naming_them(tmp_path, inter, item, message):
    with pytest.raises(DataError, match=message):
        DatasetText(_write(str(tmp_path), "bad", inter, item), "bad")


def test_quotes_in_an_unloaded_item_file_are_text(tmp_path):
    inter = 'user_id:token\titem_id:token\nu1\ti1\n'
    item = 'item_id:token\ttitle:token_seq\ni1\t"Weird Al" Yankovic\n'
    root = _write(str(tmp_path), "quotes", inter, item)
    assert DatasetText(root, "quotes").items["i1"].title == '"Weird Al" Yankovic'
    item = 'item_id:token\ttitle:token_seq\ni1\t"Kolya"\n'
    root = _write(str(tmp_path), "quoted", inter, item)
    assert DatasetText(root, "quoted", item_quoted=True).items["i1"].title == "Kolya"


@pytest.mark.parametrize("value, shown", [
    ("('Toys', 'Games')", "Toys, Games"),
    ("'Toys',   '  Board   Games '", "Toys, Board Games"),
    ("['Toys', '', ' ']", "Toys"),
    ('"""Kids\' Toys"", \'Games\'"', "Kids' Toys, Games"),
])
def test_category_literals_of_every_kind_read_as_names(value, shown):
    assert plain_categories(value) == shown


def test_the_digest_of_a_lone_interaction_file_is_its_sha256(tmp_path):
    """Manifests record the ``.inter`` file's SHA-256 when nothing else is read; an ``.item`` file adds a listing."""
    import hashlib

    root = _write(str(tmp_path), "lone", INTER, None)
    inter = os.path.join(root, "lone", "lone.inter")
    with open(inter, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    assert DatasetText(root, "lone").dataset_hash() == digest
    _write(str(tmp_path), "lone", INTER, ITEM)
    assert DatasetText(root, "lone").dataset_hash() not in (digest, None)


def test_quoted_interaction_fields_are_read_as_recbole_reads_them(tmp_path):
    inter = 'user_id:token\titem_id:token\treview:token_seq\nu1\ti1\t"loud, long"\n'
    text = DatasetText(_write(str(tmp_path), "q", inter, None), "q")
    assert text.history["u1"][0].review == "loud, long"


def test_one_category_read_as_names_marks_the_whole_file(tmp_path):
    """The digest notes the rewritten reading when any row was rewritten, not only the last one."""
    inter = "user_id:token\titem_id:token\nu1\ti1\nu1\ti2\n"
    item = "item_id:token\ttitle:token_seq\tcategories:token_seq\ni1\tHeat\t'Crime', 'Drama'\ni2\tFargo\tComedy\n"
    text = DatasetText(_write(str(tmp_path), "cats", inter, item), "cats")
    assert text.items["i1"].attributes == {"categories": "Crime, Drama"} and text.categories_rewritten
