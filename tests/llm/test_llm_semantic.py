"""Semantic path (eq. 2-5): dataset text, parser, generation mechanics, resumable store, ensure_negatives."""
import json
import os
import subprocess
import sys

import pytest
import torch

from llm_helpers import make_scripted_generator
from recbole_hnlm.llm.config import LLMConfig
from recbole_hnlm.llm.dataset_text import DatasetText
from recbole_hnlm.llm.json_answer import MalformedAnswer, parse_json_answer
from recbole_hnlm.llm.models import TextEncoder, load_causal_lm, resolve_encoder
from recbole_hnlm.llm.pipeline import ensure_negatives, run_negatives
from recbole_hnlm.llm.semantic import negative_problem, title_key
from recbole_hnlm.llm.store import PairEmbeddingStore


@pytest.mark.parametrize("raw, expected", [
    ('{"a": "x", "b": "y"}', "x"),
    ('Sure! ```json\n{"a": "x",}\n```', "x"),
    ("prefix {'a': 'it\\'s x', 'b': None} suffix", "it's x"),
    ('{"a": "x", "nested": {"k": [1, 2,],},} tail {"a": "second"}', "x"),
    ('{a: "x"}', "x"),
    ('{"a": "brace } inside", "b": 1}', "brace } inside"),
    ('{"a": "cut off by the token bud', "cut off by the token bud"),  # truncated: closed, text kept
    ('{"a": "done", "reaso', "done"),  # dangling partial key dropped
    # the repairs mend the syntax between strings, never the model's text inside them
    ("{'a': 'True Lies', 'ok': True}", "True Lies"),
    ("{'a': 'None But the Brave'}", "None But the Brave"),
    ('{"a": "A, ]B", "r": 1,}', "A, ]B"),
    ('{"a": "Star Wars, Episode: IV", reasoning: "x"}', "Star Wars, Episode: IV"),
])
def test_parser_tolerates_common_defects(raw, expected):
    assert parse_json_answer(raw, required=["a"], allow_truncated=True)["a"] == expected


def test_parser_closes_only_budget_truncated_answers():
    with pytest.raises(MalformedAnswer):
        parse_json_answer('{"a": "stopped without closing', required=["a"], allow_truncated=False)


@pytest.mark.parametrize("raw", ["no json here", '{"b": "x"}', '{"a": ""}', '{"rea', "[1, 2]", '{"b": "x", "a'])
def test_parser_rejects_unusable_answers(raw):
    with pytest.raises(MalformedAnswer):
        parse_json_answer(raw, required=["a"], allow_truncated=True)


@pytest.mark.parametrize("name, interacted, refused", [
    ("Heavyweights", "Heavyweights (1994)", True),
    ("Sabrina (1954)", "Sabrina (1995)", False),  # a remake: another item of the same title
    ("Psycho (1960)", "Psycho (1960)", True),
    ("Nothing (2003)", "Heat (1995)", False),  # a film, not a none-like answer
    # SmolLM2 writes sentences: the title an answer starts with counts (the whole answer was compared)
    ("That Thing You Do! In fact, that's a classic comedy", "That Thing You Do!", True),
    ("Chinatown (film)", "Chinatown", True),
    ("Usual Suspects", "Usual Suspects, The (1995)", True),
    ("Das Boot", "Boot, Das (1981)", True),
    ("Toy Story 2", "Toy Story (1995)", False),  # a sequel
    ("Star Wars: Episode V", "Star Wars (1977)", False),
    ("It Happened One Night", "It (1990)", False),
    ("None of the above", "Heat (1995)", True),
    ("No hard negative item found", "Heat (1995)", True),
    ("No Country for Old Men", "Heat (1995)", False),
    ("the usual suspects (1995)", "Usual Suspects, The (1995)", True),
    ("Toy Story ( 1995 )", "Toy Story (1995)", True),
    ("Heavyweights 2", "Heavyweights (1994)", False),
    ("N/A", "Heat (1995)", True),
    ("No hard negative.", "Heat (1995)", True),
    ("<item name, at most 20", "Heat (1995)", True),  # the prompt's placeholder echoed, cut by the budget
    # a sentence about the item, with its year or after a preamble (a helper's real SmolLM2 run stored these)
    ("Pulp Fiction is a great choice for fans of action movies", "Pulp Fiction (1994)", True),
    ("Pulp Fiction (1994) is great", "Pulp Fiction (1994)", True),
    ("Pulp Fiction (1994), a crime film", "Pulp Fiction (1994)", True),
    ("The original 1989 classic Sex, Lies, and Videotape, which ...", "Sex, Lies, and Videotape (1989)", True),
    ("It is a horror film", "It (1990)", True),
    ("Jackie Brown, a lesser-known film than Pulp Fiction", "Pulp Fiction (1994)", False),
    ("Toy Story 2 is a fine sequel", "Toy Story (1995)", False),
    ("Star Wars: The Empire Strikes Back", "Star Wars (1977)", False),
    ("Batman Returns", "Batman (1989)", False),
    ("Heat and Dust", "Heat (1995)", False),
    ("Sabrina (1954) is a classic", "Sabrina (1995)", False),
    ("The 1954 classic Sabrina, with Audrey Hepburn", "Sabrina (1995)", False),
    # a reviewer's: titles that go on with a preposition, a preamble with nothing after, a year before a comma
    ("Die Hard: With a Vengeance", "Die Hard (1988)", False),
    ("North by Northwest", "North (1994)", True),  # the one ml-100k pair the continuation words refuse (the
    # sentence and aside breaks refuse a few more: "M. Butterfly" for M, "Clean Slate (Coup de Torchon)")
    ("Heat with its dark tone", "Heat (1995)", True),
    ("Heat stars Al Pacino", "Heat (1995)", True),  # a second reviewer's: words that go on about the item
    ("Heat that explores obsession", "Heat (1995)", True),
    ("Heat is a crime thriller in the vein of Thief (1981) and Ronin", "Heat (1995)", True),  # Thief's year
    ("Heat is darker than Ran (1985), a samurai epic", "Heat (1995)", True),
    ("The 1995 film Heat", "Heat (1995)", True),
    ("The original 1989 classic Sex, Lies, and Videotape", "Sex, Lies, and Videotape (1989)", True),
    ("The 1986 film Heat", "Heat (1995)", False),
    ("Sabrina (1954), a film", "Sabrina (1995)", False),
    ("Sabrina (1995), a film", "Sabrina (1995)", True),
    ("Shall We Dance? (1937) is a film", "Shall We Dance? (1996)", False),
    ("Scarlet Letter, The (1926) is a film", "Scarlet Letter, The (1995)", False),
    # a recommending phrase or a quote before the title (accepted up to v7)
    ("I recommend Heat", "Heat (1995)", True),
    ("I would recommend Heat.", "Heat (1995)", True),
    ("Try Heat, a crime film", "Heat (1995)", True),
    ("How about Heat?", "Heat (1995)", True),
    ("You might enjoy Heat (1995)", "Heat (1995)", True),
    ("My recommendation is: Heat", "Heat (1995)", True),
    ('"Il Postino" is a gentle Italian film', "Postino, Il (1994)", True),
    ('"Il Postino", a film', "Postino, Il (1994)", True),
    ("I recommend Heat (1986)", "Heat (1995)", False),
    ("Try Casino, a crime film", "Heat (1995)", False),
    ("I recommend Heat and Dust", "Heat (1995)", False),
    ('"Il Postino" is a gentle Italian film', "Heat (1995)", False),
    ("I recommend watching Heat", "Heat (1995)", True),  # a reviewer's: more phrasings, a curly apostrophe
    ("You\u2019ll love Heat", "Heat (1995)", True),
    ("I think you'd enjoy Heat", "Heat (1995)", True),
    ("Check out Heat, a crime film", "Heat (1995)", True),
    ("A good choice is Heat", "Heat (1995)", True),
    # a title that starts with a recommending word names itself (v8's first draft let it through)
    ("Consider the Lobster", "Consider the Lobster (2005)", True),
    ("Try Not to Breathe", "Try Not to Breathe", True),
    ("How About Never", "How About Never", True),
    ("Consider the Lobster", "Heat (1995)", False),
    # every phrasing of the pattern (a test audit's mutants dropped these and no row failed)
    ("I suggest Heat", "Heat (1995)", True),
    ("Consider Heat", "Heat (1995)", True),
    ("Recommendation: Heat", "Heat (1995)", True),
    ("Suggestion: Heat", "Heat (1995)", True),
    ("Recommended: Heat", "Heat (1995)", True),
    ("I suggest Casino", "Heat (1995)", False),
    ("Recommended: Casino", "Heat (1995)", False),
])
def test_a_negative_naming_the_interacted_item_or_nothing_is_refused(name, interacted, refused):
    """The LLM named the positive itself as its hard negative ("Heavyweights" for Heavyweights (1994)), and it was
    stored; a cut placeholder or "No hard negative" passed as an item."""
    assert (negative_problem({"hard_negative_item": name}, interacted) is not None) == refused


@pytest.mark.parametrize("name, refused", [
    ("B00DFT27EQ", True),  # a helper's real SmolLM2 run on Amazon-format data stored the item's own ASIN
    ("item_id: B00DFT27EQ", True),
    ("B00DFT27EQ, a plush toy", True),
    ('"b00dft27eq"', True),
    ("A2SUAM1J3GNN3B", True),  # the user's id
    ("242", False),  # not this pair's ids
    ("b00dft27eq, a plush toy", False),  # inside an answer an id is matched as written
    ("LEGO Classic Bricks", False),
])
def test_an_answer_echoing_an_id_from_the_prompt_is_refused(name, refused):
    """The hard-negative prompt shows the pair's user and item ids; an answer that is one names no item (its text
    embedding is noise), and was stored."""
    problem = negative_problem({"hard_negative_item": name}, "LEGO Plush Bear", None, (), "",
                               ids=("B00DFT27EQ", "A2SUAM1J3GNN3B"))
    assert (problem is not None and "an id from the prompt" in problem) == refused, problem
    short = negative_problem({"hard_negative_item": name}, "Heat", "1995", ids=("242", "196"))
    assert (short is not None) == (name == "242")  # a short id only as the whole answer
    assert negative_problem({"hard_negative_item": "Item #242"}, "Heat", "1995", ids=("242", "196")) is not None
    assert negative_problem({"hard_negative_item": "2420 Nights"}, "Heat", "1995", ids=("242", "196")) is None
    for answer in ("242.", "'242'.", "item 242!"):  # SmolLM2's echo on ml-100k, with trailing punctuation
        assert "an id from the prompt" in negative_problem({"hard_negative_item": answer}, "Heat", "1995",
                                                           ids=("242", "196"))
    assert negative_problem({"hard_negative_item": "Apollo 13"}, "Heat", "1995", ids=("13", "196")) is None
    # six characters and more are matched inside an answer, five only as the whole answer
    assert negative_problem({"hard_negative_item": "A1B2C3, a toy"}, "LEGO Bear", None, ids=("A1B2C3",)) is not None
    assert negative_problem({"hard_negative_item": "A1B2C, a toy"}, "LEGO Bear", None, ids=("A1B2C",)) is None
    # ids that are words (user names) are matched only as the whole answer, also when written as in the title
    for user in ("george", "George"):
        assert negative_problem({"hard_negative_item": "George of the Jungle"}, "Heat", "1995", ids=(user,)) is None
        assert negative_problem({"hard_negative_item": user}, "Heat", "1995", ids=(user,)) is not None


@pytest.mark.parametrize("name, refused", [
    ("Year: 1994, genres: Crime Drama", True),  # SmolLM2's stored answer in session 29: the item's own attributes
    ("genres: Comedy", True),
    ("Categories: Toys & Games, Puzzles", True),
    ("  City: Austin", True),
    ("Release year: 1995", True),
    ("Title: Casino", False),  # a label before a name still names an item
    ("Year of the Dragon", False),
    ("Brandy: A Love Story", False),
    ("Casino", False),
    # every label of the prompts' item descriptions, written as models write them (a mutation audit dropped each)
    ("Genre: Drama", True),
    ("Category: Toys", True),
    ("Brand: LEGO", True),
    ("State: TX", True),
    ("Price: $9.99", True),
    ("Description: A plush toy", True),
    ("**Year:** 1994", True),
    ("Year : 1994", True),
    ("Sin City: A Dame to Kill For", False),  # a label inside a title is not one
    ("1. Year: 1994", True),  # as a list item
    ("**Year**: 1994", True),  # bold, the colon outside (a review of v10)
    ("item_profile: year: 1994, genres: Crime Drama", True),  # the prompt's own JSON key echoed
    ("Title: Year: 1994, genres: Crime Drama", True),  # behind a title label
    ("2001: A Space Odyssey", False),
])
def test_an_answer_copying_item_attributes_is_refused(name, refused):
    problem = negative_problem({"hard_negative_item": name}, "Pulp Fiction (1994)")
    assert (problem is not None and "copies item attributes" in problem) == refused, problem


def test_a_title_label_before_the_interacted_or_a_history_item_is_read_through():
    """"Title: Pulp Fiction" was accepted as Pulp Fiction's own hard negative (the label hid the name from the checks;
    a mutation audit found it): the name after the label is checked; a labelled other title still passes."""
    for answer in ("Title: Pulp Fiction", "Title: Pulp Fiction, Year: 1994, genres: Crime Drama", "**Movie title:** "
                   "Pulp Fiction", "1. Name: Pulp Fiction", "1. Pulp Fiction", "Item: Pulp Fiction", "Answer: Pulp "
                   "Fiction", "hard_negative_item: Pulp Fiction", "Title - Pulp Fiction"):
        assert "names the interacted item itself" in negative_problem({"hard_negative_item": answer},
                                                                      "Pulp Fiction (1994)", "1994"), answer
    assert "names an item of the user's history" in negative_problem({"hard_negative_item": "Title: Heat"}, "Fargo",
                                                                      "1996", [("Heat", "1995")])
    for answer in ("Title: Casino", "Name of the Rose", "Entertainment Weekly: the best of 1996", "Item: Casino",
                   "2001: A Space Odyssey"):
        assert negative_problem({"hard_negative_item": answer}, "Fargo", "1996", [("Heat", "1995")]) is None, answer
    for answer in ("Title: 242", "Name: 196", "Title: item_id: 242"):  # an id behind the label is still the id
        assert "an id from the prompt" in negative_problem({"hard_negative_item": answer}, "Fargo", "1996",
                                                           ids=("242", "196")), answer


def test_no_ml100k_title_is_refused_as_another_pairs_negative():
    """The label rules (attributes, ids, titles) and the none-like answers must not refuse a catalogue title."""
    import recbole

    path = os.path.join(os.path.dirname(recbole.__file__), "dataset_example", "ml-100k", "ml-100k.item")
    with open(path, encoding="utf-8", errors="replace") as f:
        titles = [line.split("\t")[1] for line in f.read().splitlines()[1:]]
    assert len(titles) == 1682
    refused = {title: negative_problem({"hard_negative_item": title}, "Some Other Movie", "1990") for title in titles}
    assert not {title: why for title, why in refused.items() if why}


def test_a_negative_naming_an_item_of_the_users_training_history_is_refused():
    """An item the user interacted with is a positive of theirs: it was stored as their hard negative."""
    history = [("Heat", "1995"), ("Usual Suspects, The", "1995")]
    for answer in ("The Usual Suspects", "The movie Heat."):
        assert "names an item of the user's history" in negative_problem({"hard_negative_item": answer}, "Fargo",
                                                                          "1996", history)
    assert negative_problem({"hard_negative_item": "Heat (1986)"}, "Fargo", "1996", history) is None  # another Heat
    assert "names an item of the user's history" in negative_problem({"hard_negative_item": "I recommend Heat"},
                                                                      "Fargo", "1996", history)
    assert negative_problem({"hard_negative_item": "I recommend Casino"}, "Fargo", "1996", history) is None
    assert negative_problem({"hard_negative_item": "Casino"}, "Fargo", "1996", history) is None


def test_an_answer_repeating_the_users_profile_is_refused():
    """16 of 27 stored negatives in a real SmolLM2 run were the user's own profile text."""
    profile = "Likes Ransom style movies, tense thrillers and heist films of the nineties."
    assert "repeats the user's profile" in negative_problem(
        {"hard_negative_item": "likes Ransom style movies, tense thrillers"}, "Heat", "1995", (), profile)
    assert negative_problem({"hard_negative_item": "Casino"}, "Heat", "1995", (), profile) is None
    # a one-word change at the start passed (a helper's real SmolLM2 run stored it as the pair's negative)
    profile = "This user enjoys a variety of items, including comedies, dramas and some thrillers."
    assert "repeats the user's profile" in negative_problem(
        {"hard_negative_item": "The user enjoys a variety of items, including a variety of items"}, "Heat", "1995", (),
        profile)
    for title in ("Star Wars", "Die Hard: With a Vengeance", "Some Like It Hot", "A Variety of Comedies and Dramas"):
        assert negative_problem({"hard_negative_item": title}, "Heat", "1995", (), profile) is None, title
    # a dated answer names a title, even one whose words the profile has (a reviewer's examples)
    profile = "Loved Star Wars: Return of the Jedi and The War, the Love and the Comedy; likes sci-fi"
    for title in ("Star Wars: Return of the Jedi (1983)", "The War, the Love and the Comedy (1999)"):
        assert negative_problem({"hard_negative_item": title}, "Heat", "1995", (), profile) is None, title


def test_the_item_year_from_its_attributes_tells_remakes_apart():
    """ml-100k's titles carry no year (release_year is a field of its own): Sabrina (1954) is not the 1995 item."""
    assert negative_problem({"hard_negative_item": "Sabrina (1954)"}, "Sabrina", "1995") is None
    assert negative_problem({"hard_negative_item": "Sabrina (1995)"}, "Sabrina", "1995") is not None
    assert negative_problem({"hard_negative_item": "Sabrina"}, "Sabrina", "1995") is not None


def test_dataset_text_uses_only_training_pairs(data_root):
    full = DatasetText(data_root, "mini")
    assert len(full.pairs) == 12 * 8 and full.items[full.pairs[0][1]].attributes["genres"]
    train = full.pairs[::2]
    text = DatasetText(data_root, "mini", train_pairs=train)
    assert sorted(text.pairs) == sorted(train)
    held_out = set(full.pairs) - set(train)
    assert not any((e.user, e.item) in held_out for events in text.history.values() for e in events)
    users = [u for u, _ in text.pairs]
    assert all(users.index(u) + users.count(u) - 1 == len(users) - 1 - users[::-1].index(u) for u in set(users))
    assert len(text.dataset_hash()) == 64
    with pytest.raises(FileNotFoundError, match="nope.inter"):
        DatasetText(data_root, "nope")


def test_a_training_pair_on_several_rows_shows_no_rating_or_review(tmp_path, data_root, caplog):
    """With a (user, item) pair on two rows, RecBole may train on one and test on the other; the prompts took the
    first row in the file, so a test copy's rating (or review) reached them. Now none is shown, with a warning."""
    import logging

    folder = tmp_path / "dup"
    folder.mkdir()
    with open(os.path.join(data_root, "mini", "mini.inter"), encoding="utf-8") as handle:
        header, *rows = handle.read().splitlines()
    fields = header.split("\t")
    rating = next(k for k, name in enumerate(fields) if name.startswith("rating"))
    copy = rows[3].split("\t")
    copy[rating] = "9"  # the test copy's rating, first in the file
    (folder / "dup.inter").write_text("\n".join([header, "\t".join(copy)] + rows) + "\n", encoding="utf-8")
    user, item = copy[0], copy[1]
    train = [tuple(row.split("\t")[:2]) for row in rows]
    caplog.set_level(logging.WARNING)
    text = DatasetText(str(tmp_path), "dup", train_pairs=train)
    events = {(e.user, e.item): e for history in text.history.values() for e in history}
    assert events[(user, item)].rating is None and sorted(text.pairs) == sorted(set(train))
    assert sum(e.rating is not None for e in events.values()) == len(events) - 1  # the others keep theirs
    assert "1 training pairs occur on more than one row" in caplog.text
    caplog.clear()
    DatasetText(data_root, "mini", train_pairs=train)  # no repeated row: no warning
    assert "more than one row" not in caplog.text


def test_histories_follow_recboles_time_field_or_the_file_order(tmp_path, data_root, caplog):
    """The history order came from a field named timestamp/date/time only (RecBole's TIME_FIELD was not read), and
    a file with some non-numeric times mixed times and row numbers."""
    import logging

    with open(os.path.join(data_root, "mini", "mini.inter"), encoding="utf-8") as handle:
        header, *rows = handle.read().splitlines()
    fields = [name.split(":")[0] for name in header.split("\t")]
    when = fields.index("timestamp")
    rows = [row.split("\t") for row in rows]

    def write(name, header_fields, table):
        (tmp_path / name).mkdir()
        lines = ["\t".join(header_fields)] + ["\t".join(row) for row in table]
        (tmp_path / name / f"{name}.inter").write_text("\n".join(lines) + "\n", encoding="utf-8")

    renamed = header.split("\t")
    renamed[when] = "ts:float"
    write("ts", renamed, rows)
    user = rows[0][0]
    by_time = [row[1] for row in sorted((r for r in rows if r[0] == user), key=lambda r: float(r[when]))]
    in_file = [row[1] for row in rows if row[0] == user]
    assert by_time != in_file
    assert [e.item for e in DatasetText(str(tmp_path), "ts", time_field="ts").history[user]] == by_time
    assert [e.item for e in DatasetText(str(tmp_path), "ts").history[user]] == in_file  # no known time field
    broken = [list(row) for row in rows]
    broken[-1][when] = "yesterday"
    write("broken", header.split("\t"), broken)
    caplog.set_level(logging.WARNING)
    assert [e.item for e in DatasetText(str(tmp_path), "broken").history[user]] == in_file
    assert "field 'timestamp' holds a value that is not a number ('yesterday'): histories are in file order" \
        in caplog.text


def test_the_digest_tells_how_the_item_file_is_read(data_root):
    """With load_col naming the .item file RecBole reads it with quotes ("Kolya" -> Kolya), so the prompts differ; the
    digest was the same, and a store built from the other reading counted as a cache hit."""
    plain, quoted = DatasetText(data_root, "mini"), DatasetText(data_root, "mini", item_quoted=True)
    assert plain.dataset_hash() != quoted.dataset_hash()
    assert plain.dataset_hash() == DatasetText(data_root, "mini").dataset_hash()


def test_dataset_text_reads_pre_split_files(data_root, tmp_path):
    """``benchmark_filename`` parts: the same pairs, history and items as one ``.inter`` file holding their rows; a
    digest that changes with any part; one header for all parts."""
    import shutil

    full = DatasetText(data_root, "mini")
    folder = tmp_path / "mini"
    shutil.copytree(os.path.join(data_root, "mini"), folder)
    lines = (folder / "mini.inter").read_text().splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    cut = [0, len(rows) // 2, 3 * len(rows) // 4, len(rows)]
    for part, start, end in zip(("train", "valid", "test"), cut, cut[1:]):
        (folder / f"mini.{part}.inter").write_text(header + "".join(rows[start:end]))
    (folder / "mini.inter").unlink()
    split = DatasetText(str(tmp_path), "mini", inter_parts=["train", "valid", "test"])
    assert split.pairs == full.pairs and split.items == full.items
    assert split.history == full.history
    digest = split.dataset_hash()
    assert len(digest) == 64 and digest != full.dataset_hash()
    with open(folder / "mini.test.inter", "a") as handle:
        handle.write(rows[0])
    assert DatasetText(str(tmp_path), "mini", inter_parts=["train", "valid", "test"]).dataset_hash() != digest
    def reordered(line):  # the first two fields swapped
        first, second, *rest = line.rstrip("\n").split("\t")
        return "\t".join([second, first, *rest]) + "\n"

    valid = (folder / "mini.valid.inter").read_text()
    (folder / "mini.valid.inter").write_text("".join(map(reordered, valid.splitlines(keepends=True))))
    reread = DatasetText(str(tmp_path), "mini", inter_parts=["train", "valid", "test"])  # pandas aligns by name
    assert reread.pairs == split.pairs and reread.history == split.history
    (folder / "mini.valid.inter").write_text(header.replace("\t", "\tx:float\t", 1) + "".join(
        row.replace("\t", "\t1\t", 1) for row in rows[cut[1]:cut[2]]))
    with pytest.raises(ValueError, match="mini.valid.inter: fields .* differ from .*mini.train.inter"):
        DatasetText(str(tmp_path), "mini", inter_parts=["train", "valid", "test"])
    with pytest.raises(FileNotFoundError, match="mini.other.inter"):
        DatasetText(str(tmp_path), "mini", inter_parts=["train", "other"])


def test_generation_prefix_cache_matches_full_prefill(tiny_llama_dir):
    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    from recbole_hnlm.llm.generation import Generator

    gen = Generator(model, tokenizer, max_new_tokens=6, batch_size=3, retries=0)
    prefix = "<|im_start|>user\nUSER INFORMATION : profile of a user who likes Heat"
    suffixes = ["\nINTERACTED ITEM : Toy Story", "\nINTERACTED ITEM : GoldenEye 1995 Action", " Fargo"]
    cached = gen.generate_with_prefix(prefix, suffixes, use_cache=True)
    full = gen.generate_with_prefix(prefix, suffixes, use_cache=False)
    assert [r["raw"] for r in cached] == [r["raw"] for r in full]
    # a random model does not answer JSON: every result is a recorded failure, never an invented value
    assert all(not r["ok"] and r["answer"] is None and r["error"] for r in cached)
    # batching does not change greedy answers
    single = [gen.generate_with_prefix(prefix, [s], use_cache=True)[0]["raw"] for s in suffixes]
    assert single == [r["raw"] for r in cached]


def test_prompts_are_cut_only_beyond_the_model_context(tiny_llama_dir):
    """Prompts were cut at a fixed 1,024 tokens (SmolLM2 reads 8,192), losing their instructions at default settings
    on datasets with reviews; the default limit is the model's context less the answer budget."""
    from recbole_hnlm.llm.generation import Generator

    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    context = model.config.max_position_embeddings
    gen = Generator(model, tokenizer, max_new_tokens=3, retries=0)
    assert gen.prompt_limit() == context - 3
    gen.generate(["Heat " * (context - 10), "Heat " * (context + 10)])
    assert gen.prompts_cut == 1
    for use_cache in (True, False):  # a shared prefix leaves room for the longest suffix after it
        prefixed = Generator(model, tokenizer, max_new_tokens=3, retries=0)
        prefixed.generate_with_prefix("Heat " * (context - 8), [" Fargo" * 10, " Balto"], use_cache=use_cache)
        assert prefixed.prompts_cut == 2  # both prompts the cut prefix starts


def test_item_profile_prompts_cut_long_descriptions_and_reviews():
    """A 7,000-word description filled the prompt; each attribute and review keeps ITEM_TEXT_WORDS words."""
    from recbole_hnlm.llm.dataset_text import ItemText
    from recbole_hnlm.llm.profiles import ITEM_TEXT_WORDS, item_profile_prompt
    from recbole_hnlm.llm.prompts import ChatFormatter, PromptTemplate

    class Text:  # the two fields item_profile_prompt reads of a DatasetText
        items = {"i1": ItemText("i1", "Golden Dragon", {"description": "tasty " * 7000, "city": "Austin"})}
        item_reviews = {"i1": ["great " * 500, "short review"]}

    prompt = item_profile_prompt(ChatFormatter(None), PromptTemplate.load("item_profile.v1"), Text(), "i1", 5)
    assert prompt.count("tasty") == ITEM_TEXT_WORDS and prompt.count("great") == ITEM_TEXT_WORDS
    assert "short review" in prompt and "Austin" in prompt and "Golden Dragon" in prompt


def test_sampled_answers_do_not_depend_on_their_batch(tiny_llama_dir):
    """Sampling (retries, extra negatives) draws per prompt: the same answer alone, next to other prompts, with
    another batch size, through the prefix cache; another seed draws otherwise; top_p ~ 0 is greedy."""
    from recbole_hnlm.llm.generation import Generator, RowSampler

    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    prompts = ["profile of a user who likes Heat", "INTERACTED ITEM : Toy Story", "Fargo Casino 1995", "Balto"]

    def answers(batch_size, seed=7, texts=prompts, prefix=None):
        gen = Generator(model, tokenizer, max_new_tokens=8, batch_size=batch_size, retries=0, do_sample=True,
                        seed=seed)
        results = gen.generate_with_prefix(prefix, texts) if prefix else gen.generate(texts)
        return [r["raw"] for r in results]

    together = answers(4)
    assert answers(1) == together and answers(3) == together
    assert answers(4, texts=prompts[::-1]) == together[::-1]
    assert answers(4, seed=8) != together
    greedy = Generator(model, tokenizer, max_new_tokens=8, batch_size=4, retries=0)
    assert [r["raw"] for r in greedy.generate(prompts)] != together
    suffixes = [" Toy Story", " GoldenEye", " Fargo"]
    assert answers(3, texts=suffixes, prefix="USER : likes Heat") == [
        answers(1, texts=[s], prefix="USER : likes Heat")[0] for s in suffixes]
    # and they are drawn there too: another seed, other answers (the semantic stage's retries take this path)
    assert answers(3, texts=suffixes, prefix="USER : likes Heat", seed=8) != answers(3, texts=suffixes,
                                                                                     prefix="USER : likes Heat")
    cut = Generator(model, tokenizer, max_new_tokens=2, retries=0, max_prompt_tokens=4)
    cut.generate(["Heat Casino Fargo Clueless Se7en", "Heat"])
    assert cut.prompts_cut == 1  # counted (and logged once) instead of cut without a word
    scores = torch.randn(3, 50)
    kept = RowSampler([1, 2, 3], temperature=0.7, top_p=1e-6, device="cpu")(None, scores.clone())
    assert torch.equal(kept.argmax(1), scores.argmax(1)) and torch.isinf(kept).sum() == 3 * 49


def _run(data_root, store, tiny_tokenizer, tiny_encoder_dir, on_chunk=None, **overrides):
    cfg = LLMConfig.from_config({"hnlm_variant": "semantic", "hnlm_chunk_size": 7, "hnlm_max_pairs": 40,
                                 "hnlm_generator": "scripted"},
                                **overrides)
    text = DatasetText(data_root, "mini")
    gen = make_scripted_generator(tiny_tokenizer)
    enc = TextEncoder(tiny_encoder_dir, batch_size=8)
    return run_negatives(cfg, text, store, progress=False, on_chunk=on_chunk, generator=gen, encoder=enc,
                         generator_name="scripted")


def _remove_profiles(data_root):
    """Start from no profiles: the shared slice's book holds those of other tests' scripted generators, all named
    ``scripted`` with the same settings, so their records (failures included) would be reused."""
    profiles = os.path.join(data_root, "mini", "mini.hnlm-profiles.jsonl")
    if os.path.exists(profiles):
        os.remove(profiles)


def test_semantic_store_resume_equals_uninterrupted(tmp_path, data_root, tiny_tokenizer, tiny_encoder_dir):
    _remove_profiles(data_root)
    ref_path = str(tmp_path / "ref.safetensors")
    _run(data_root, ref_path, tiny_tokenizer, tiny_encoder_dir)
    ref = PairEmbeddingStore.open(ref_path)
    assert ref.manifest["num_requested"] == 40 and ref.dim == 24
    assert 0 < ref.num_pairs < 40 and ref.manifest["num_failures"] == 40 - ref.num_pairs
    records = [json.loads(x) for x in open(ref_path + ".texts.jsonl")]
    texts = {(r["user"], r["item"]): tuple(r["negatives"]) for r in records if r["ok"]}
    distinct_texts = len({texts[p] for p in zip(ref.user_tokens, ref.item_tokens)})
    assert distinct_texts > ref.num_pairs // 2  # embeddings differ across pairs exactly as the texts do
    assert len({tuple(r) for r in ref.emb.tolist()}) == distinct_texts
    failed = [r for r in records if not r["ok"]]
    assert failed and all(r["error"] and not r["negatives"] for r in failed)
    assert {(r["user"], r["item"]) for r in records if r["ok"]} == set(zip(ref.user_tokens, ref.item_tokens))

    path = str(tmp_path / "resumed.safetensors")

    class Killed(RuntimeError):
        pass

    def kill_after_two(k):
        if k == 1:
            raise Killed()

    with pytest.raises(Killed):
        _run(data_root, path, tiny_tokenizer, tiny_encoder_dir, on_chunk=kill_after_two)
    assert not os.path.exists(path) and len(os.listdir(path + ".work")) == 3  # plan + 2 chunks
    done = []
    _run(data_root, path, tiny_tokenizer, tiny_encoder_dir, on_chunk=done.append)
    assert done == [2, 3, 4, 5]  # only the missing chunks ran
    resumed = PairEmbeddingStore.open(path)
    assert resumed.user_tokens == ref.user_tokens and resumed.item_tokens == ref.item_tokens
    assert torch.equal(resumed.emb, ref.emb)
    assert not os.path.exists(path + ".work")


def test_ensure_negatives_cache_hit_and_miss(tmp_path, data_root, tiny_tokenizer, tiny_encoder_dir, monkeypatch,
                                            caplog):
    store = str(tmp_path / "e.safetensors")
    _run(data_root, store, tiny_tokenizer, tiny_encoder_dir)
    calls = []
    import recbole_hnlm.llm.pipeline as pipeline

    monkeypatch.setattr(pipeline, "_generator", lambda *a, **k: calls.append(1) or (_ for _ in ()).throw(
        AssertionError("model loaded on a cache hit")))
    monkeypatch.setattr("recbole_hnlm.llm.models.resolve_generator",
                        lambda *a, **k: type("R", (), {"name": "scripted"}))
    encoder_name = resolve_encoder(tiny_encoder_dir).name
    monkeypatch.setattr("recbole_hnlm.llm.models.resolve_encoder",
                        lambda *a, **k: type("R", (), {"name": encoder_name}))
    config = {"hnlm_variant": "semantic", "hnlm_chunk_size": 7, "hnlm_max_pairs": 40, "hnlm_store_path": store,
              "hnlm_generator": "scripted", "hnlm_encoder": tiny_encoder_dir}
    assert ensure_negatives(config, "mini", data_root) == store and not calls
    with pytest.raises(AssertionError, match="cache hit"):  # another subset -> miss -> would load the model
        ensure_negatives(dict(config, hnlm_max_pairs=41), "mini", data_root)
    # the miss replaces the store: a warning (it was an INFO line, hidden by the CLI's --quiet)
    assert any(r.levelname == "WARNING" and "built with other settings or data" in r.getMessage()
               and "pairs_hash" in r.getMessage() for r in caplog.records)


def test_ensure_negatives_recbole_call_form(tmp_path, data_root, tiny_tokenizer, tiny_encoder_dir, monkeypatch):
    """ensure_negatives(config, train_dataset): name, data_path (RecBole joins it) and split come from them."""
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation

    import recbole_hnlm.llm.pipeline as pipeline

    config = Config(model="BPR", dataset="mini", config_dict={"data_path": data_root, "show_progress": False,
                                                              "checkpoint_dir": str(tmp_path),
                                                              "hnlm_variant": "semantic"})
    train, _, _ = data_preparation(config, create_dataset(config))
    seen = {}

    def fake_run(cfg, text, path, progress):
        seen.update(text=text, path=path)
        return path

    monkeypatch.setattr(pipeline, "run_negatives", fake_run)
    path = ensure_negatives(config, train._dataset)
    assert path == os.path.join(data_root, "mini", "mini.hnlm-semantic.safetensors")
    assert 0 < len(seen["text"].pairs) < 96  # the training split only, not every interaction


def test_an_answer_naming_the_interacted_item_is_retried_then_a_failure(tmp_path, data_root, tiny_tokenizer,
                                                                         tiny_encoder_dir, monkeypatch):
    """A model that answers each pair's own title greedily: the sampled retries name other items; without retries
    the pairs are failure records, never stored with the positive as their negative."""
    _remove_profiles(data_root)
    import re

    scripted = make_scripted_generator
    echoed = []

    def echoing_generator(tokenizer):
        generator = scripted(tokenizer, always_bad_mod=10 ** 9, first_bad_mod=10 ** 9)  # no garbage answers
        generator.retries = retries  # as the pipeline builds it from hnlm_retries
        answer = type(generator)._answer

        def _answer(self, ids, sample):
            prompt = self.tokenizer.decode(ids)
            title = re.findall(r'title " : " (.*?) " ?,', prompt)
            if title and not sample and "negative" in prompt.split("assistant")[-1]:
                echoed.append(title[-1])
                return f'{title[-1]}", "reasoning": "same"}}'
            return answer(self, ids, sample)

        type(generator)._answer = _answer
        return generator

    monkeypatch.setitem(globals(), "make_scripted_generator", echoing_generator)  # the generator _run builds
    text = DatasetText(data_root, "mini")
    for retries, path in ((0, str(tmp_path / "none.safetensors")), (2, str(tmp_path / "retried.safetensors"))):
        echoed.clear()
        _run(data_root, path, tiny_tokenizer, tiny_encoder_dir, retries=retries)
        records = [json.loads(x) for x in open(path + ".texts.jsonl")]
        assert len(echoed) >= 5  # the greedy answers that named the pair's own item
        for record in records:
            for negative in record["negatives"]:
                assert title_key(negative) != title_key(text.items[record["item"]].title)
        refused = [r for r in records if "names the interacted item itself" in (r["error"] or "")]
        if retries == 0:  # most echoes are refused as the item itself (the rest decode to another title or <unk>)
            assert len(refused) >= len(records) // 2
        else:
            assert not refused and sum(r["ok"] for r in records) == len(records)
            retried = [r for r in records if any("names the interacted item itself" in e for e in r["refused"])]
            assert len(retried) >= len(records) // 2  # the records say what was refused on the way
            assert all(r["attempts"][0] >= 2 for r in retried)


@pytest.mark.parametrize("kind", ["item", "user"])
def test_an_answer_echoing_the_pairs_id_is_a_failure_record(kind, tmp_path, data_root, tiny_tokenizer,
                                                            tiny_encoder_dir, monkeypatch):
    """A model that answers each pair's item (or user) id (the prompt shows both; SmolLM2 did so on Amazon-format
    data): the pairs are failure records, never stored with the id's embedding as their negative."""
    _remove_profiles(data_root)
    import re

    scripted = make_scripted_generator
    echoed = []

    def echoing_generator(tokenizer):
        generator = scripted(tokenizer, always_bad_mod=10 ** 9, first_bad_mod=10 ** 9)  # no garbage answers
        generator.retries = 0
        answer = type(generator)._answer

        def _answer(self, ids, sample):
            prompt = self.tokenizer.decode(ids)
            shown = re.findall(kind + r' _ id " : " (.*?) " ?,', prompt)
            if shown and "negative" in prompt.split("assistant")[-1]:
                echoed.append(shown[-1].replace(" ", ""))
                return f'{echoed[-1]}", "reasoning": "its id"}}'
            return answer(self, ids, sample)

        type(generator)._answer = _answer
        return generator

    monkeypatch.setitem(globals(), "make_scripted_generator", echoing_generator)  # the generator _run builds
    path = str(tmp_path / "echo.safetensors")
    _run(data_root, path, tiny_tokenizer, tiny_encoder_dir, retries=0)
    records = [json.loads(x) for x in open(path + ".texts.jsonl")]
    ids = [e for e in echoed if e in {r[kind] for r in records}]  # a few decode to <unk>
    assert len(ids) >= len(records) // 2
    assert all(negative != record[kind] for record in records for negative in record["negatives"])
    refused = [r for r in records if "an id from the prompt" in (r["error"] or "")]
    assert len(refused) >= len(ids) and not any(r["ok"] for r in refused)


def test_an_answer_naming_an_item_of_the_users_history_is_retried(tmp_path, data_root, tiny_tokenizer,
                                                                  tiny_encoder_dir, monkeypatch):
    """A model that greedily names the first item of the user's own training history: refused, retried."""
    _remove_profiles(data_root)
    import re

    text = DatasetText(data_root, "mini")
    scripted, named = make_scripted_generator, []

    def history_generator(tokenizer):
        generator = scripted(tokenizer, always_bad_mod=10 ** 9, first_bad_mod=10 ** 9)
        answer = type(generator)._answer

        def _answer(self, ids, sample):
            prompt = self.tokenizer.decode(ids)
            user = re.findall(r'user _ id " : " (.*?) " ?,', prompt)
            if user and not sample and "negative" in prompt.split("assistant")[-1]:
                first = text.history[user[-1]][0].item
                named.append((user[-1], first))
                return f'{text.items[first].title}", "reasoning": "seen"}}'
            return answer(self, ids, sample)

        type(generator)._answer = _answer
        return generator

    monkeypatch.setitem(globals(), "make_scripted_generator", history_generator)
    path = str(tmp_path / "h.safetensors")
    _run(data_root, path, tiny_tokenizer, tiny_encoder_dir)
    records = [json.loads(x) for x in open(path + ".texts.jsonl")]
    assert named and all(r["ok"] for r in records)  # the sampled retries named other items
    for record in records:
        own = {title_key(text.items[e.item].title) for e in text.history[record["user"]]}
        assert not own & {title_key(n) for n in record["negatives"]}


def test_the_split_a_store_records_is_the_split_given(data_root):
    """split_hash is compared with the run's training split: it was hashed from the pairs found in the .inter file,
    so a training pair the file lacks (warned about) made the run refuse the store it had just built."""
    from recbole_hnlm.llm.store import split_sha256

    train = DatasetText(data_root, "mini").pairs[::2]
    given = train + [("nobody", "nothing")]
    text = DatasetText(data_root, "mini", train_pairs=given)
    assert sorted(text.pairs) == sorted(train)
    assert split_sha256(text.split_pairs) == split_sha256(given) != split_sha256(text.pairs)
    every = DatasetText(data_root, "mini")  # --split all: every interaction
    assert split_sha256(every.split_pairs) == split_sha256(every.pairs)


@pytest.mark.parametrize("answer", [
    # each qualifier of "<kind> title/name" (the prompts of Amazon, Yelp and MovieLens data)
    "Film title: Pulp Fiction", "Item name: Pulp Fiction", "Book title: Pulp Fiction", "Product name: Pulp Fiction",
    "Business name: Pulp Fiction", "Restaurant name: Pulp Fiction",
    # the prompt's key, written with a space or without its "_item"
    "Hard negative: Pulp Fiction", "Hard negative item: Pulp Fiction", "hard_negative: Pulp Fiction",
    # an en dash as the separator, a bold label with the colon outside
    "Title \u2013 Pulp Fiction", "**Title**: Pulp Fiction", "**Answer** - Pulp Fiction",
    # a list item numbered "2)", and a list number behind a label
    "2) Pulp Fiction", "Answer: 1. Pulp Fiction",
    # a recommending phrase behind a label
    "Answer: I would recommend Pulp Fiction, a crime classic", 'Answer: "I recommend Pulp Fiction"',
])
def test_every_label_form_before_the_interacted_item_is_read_through(answer):
    problem = negative_problem({"hard_negative_item": answer}, "Pulp Fiction (1994)", "1994")
    assert problem is not None and "names the interacted item itself" in problem, (answer, problem)


@pytest.mark.parametrize("answer, interacted, year", [
    ("8 Seconds", "Seconds (1966)", "1966"),  # ml-100k's "8 Seconds" (1994): a number, not a list item
    ("12 Angry Men", "Angry Men", None),
    ("101 Dalmatians", "Dalmatians", None),
])
def test_a_title_starting_with_a_number_is_not_read_as_a_list_item(answer, interacted, year):
    assert negative_problem({"hard_negative_item": answer}, interacted, year) is None


@pytest.mark.parametrize("answer, why", [
    # the prompt's placeholder behind a label (the bare one was refused, this one stored and embedded)
    ("hard_negative_item: <item name, at most 20 words>", "no item named"),
    ("Answer: <item name, at most 20 words>", "no item named"),
    # Markdown's "__" emphasis, as "**" ("_" is a word character: the labels' prefix skipped none)
    ("__Year:__ 1994", "copies item attributes"), ("_Year_: 1994", "copies item attributes"),
    ("__Title:__ Pulp Fiction", "names the interacted item itself"),
    # an em dash as the separator; a lettered list item
    ("Answer \u2014 Pulp Fiction", "names the interacted item itself"), ("a) Year: 1994", "copies item attributes"),
    ("b) Pulp Fiction", "names the interacted item itself"),
])
def test_answer_checks_v12_forms(answer, why):
    """Forms answer checks v11 accepted as hard negatives (a mutation audit and an Amazon-format walkthrough)."""
    problem = negative_problem({"hard_negative_item": answer}, "Pulp Fiction (1994)", "1994")
    assert problem is not None and why in problem, (answer, problem)


@pytest.mark.parametrize("answer, why", [
    # list signs v12 did not read: a letter or roman numeral with a period, a number in brackets, no space
    ("B. Pulp Fiction", "names the interacted item itself"), ("i. Pulp Fiction", "names the interacted item itself"),
    ("ii. Pulp Fiction", "names the interacted item itself"), ("(1) Pulp Fiction", "names the interacted item itself"),
    ("(a) Pulp Fiction", "names the interacted item itself"), ("1.Pulp Fiction", "names the interacted item itself"),
    ("2)Pulp Fiction", "names the interacted item itself"), ("B) Pulp Fiction", "names the interacted item itself"),
    # and before a label
    ("A. Title: Pulp Fiction", "names the interacted item itself"), ("a. Year: 1994", "copies item attributes"),
    ("iii. Year: 1994", "copies item attributes"), ("(1) Title: Pulp Fiction", "names the interacted item itself"),
    # a list sign before a recommending phrase
    ("B. I recommend Pulp Fiction", "names the interacted item itself"),
])
def test_answer_checks_v13_list_signs(answer, why):
    problem = negative_problem({"hard_negative_item": answer}, "Pulp Fiction (1994)", "1994")
    assert problem is not None and why in problem, (answer, problem)


@pytest.mark.parametrize("answer, why", [
    # a roman numeral with a bracket, before a name or a label (v13 read "b)" and "(ii)", not "ii)")
    ("ii) Pulp Fiction", "names the interacted item itself"), ("iv) Pulp Fiction", "names the interacted item itself"),
    ("iii) Title: Pulp Fiction", "names the interacted item itself"), ("ii) Year: 1994", "copies item attributes"),
    ("(ii) Title: Pulp Fiction", "names the interacted item itself"),
    ("Answer: (ii) Pulp Fiction", "names the interacted item itself"),
    # a list number in bold
    ("**1. Pulp Fiction**", "names the interacted item itself"), ("__2)__ Pulp Fiction", "names the interacted item"),
    # Markdown's underscore emphasis around a title ("**Pulp Fiction**" was refused, "__Pulp Fiction__" was not)
    ("__Pulp Fiction__", "names the interacted item itself"), ("_Pulp Fiction_", "names the interacted item itself"),
    # every list form of v13, pinned by a mutation audit: roman numerals and letters in brackets, spaces inside
    # them, no space after them, a roman numeral with a period before a label
    ("ii. Title: Pulp Fiction", "names the interacted item itself"), ("(ii) Pulp Fiction", "names the interacted item"),
    ("(b) Pulp Fiction", "names the interacted item itself"),  # "(a)" passes as an article too
    ("( 1 ) Pulp Fiction", "names the interacted item itself"), ("b)Pulp Fiction", "names the interacted item itself"),
    ("(1)Pulp Fiction", "names the interacted item itself"),
    # the checks behind a list sign: none-like, placeholder, attributes
    ("1. N/A", "no item named"), ("B. None", "no item named"), ("1. <item name, at most 20 words>", "no item named"),
    ("(iv) Year: 1994", "copies item attributes"), ("( 1 ) Year: 1994", "copies item attributes"),
])
def test_answer_checks_v14_list_signs(answer, why):
    problem = negative_problem({"hard_negative_item": answer}, "Pulp Fiction (1994)", "1994")
    assert problem is not None and why in problem, (answer, problem)


def test_an_id_behind_a_list_sign_is_refused():
    for answer in ("1. 242", "B. 242", "(1) 196"):
        problem = negative_problem({"hard_negative_item": answer}, "Heat", "1995", ids=("242", "196"))
        assert problem is not None and "an id from the prompt" in problem, (answer, problem)


def test_list_signs_are_read_one_way_without_backtracking():
    """'[ivx]+' in the label prefix would read "i." two ways (a letter or a numeral): 2^n tries on "i." * n. At
    n = 40 the one-way prefix takes microseconds and the two-way one days (it took 15 s at n = 26 here), so the
    generous time limit of the check's process (its start included) tells the two apart on any machine."""
    check = ("from recbole_hnlm.llm.semantic import negative_problem; "
             "print(negative_problem({'hard_negative_item': 'i.' * 40 + 'zz'}, 'Heat', '1995'))")
    try:
        done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("the answer checks backtrack over list signs: 'i.' * 40 did not finish in 120 s")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("answer, interacted, year, refused", [
    # a title that starts like a list item is also checked as written
    ("A. I. Artificial Intelligence", "A. I. Artificial Intelligence (2001)", "2001", True),
    ("I. Q.", "I. Q. (1994)", "1994", True),
    # a decimal is not a list number; a title that starts like a list item names no other item
    ("9.5 Weeks", "5 Weeks", None, False), ("(500) Days of Summer", "Heat", None, False),
    ("A. I. Artificial Intelligence", "Pulp Fiction (1994)", "1994", False),
    # the price of reading "B. Heat" as a list item: an initial before another item's whole title is refused (no
    # pair of ml-100k titles is)
    ("J. Edgar", "Edgar", None, True),
    # as written behind a label; a title that is itself list-like is also the interacted item; the period of an
    # initial needs a space after it to be a list sign
    ("Title: A. I. Artificial Intelligence", "A. I. Artificial Intelligence (2001)", "2001", True),
    ("V. Try Not to Breathe", "V. Try Not to Breathe", None, True), ("L.A. Confidential", "Confidential", None, False),
])
def test_list_signs_and_titles_that_start_like_them(answer, interacted, year, refused):
    problem = negative_problem({"hard_negative_item": answer}, interacted, year)
    assert (problem is not None) == refused, (answer, interacted, problem)


@pytest.mark.parametrize("answer", ["Item: <Aladdin>", '"<Aladdin>"',  # a title in the placeholder's brackets
                                    "Heat, a crime film", "Brazil; a satire of bureaucracy", "A Fish Called Wanda",
                                    "Price of Glory", "Year of the Horse", "Brand Upon the Brain!",
                                    "Heat, Year: 1995, genres: Action"])  # another title, its own attributes after it
def test_answers_with_attribute_words_but_no_leading_label_stay_accepted(answer):
    assert negative_problem({"hard_negative_item": answer}, "Pulp Fiction (1994)", "1994") is None


@pytest.mark.parametrize("answer, why", [
    # a list number or letter right before a label: only the label prefix reads these (the list-number pattern needs
    # a space and comes after the label; mutants without '[a-z]\)' or with '\d+\.' only in the prefix passed them)
    ("a) Title: Pulp Fiction", "names the interacted item itself"), ("a)Year: 1994", "copies item attributes"),
    ("2) Title: Pulp Fiction", "names the interacted item itself"), ("2)Year: 1994", "copies item attributes"),
    # '__' emphasis between the label and its separator (mutant: '\W*' there, which skips no '_')
    ("__Title__: Pulp Fiction", "names the interacted item itself"),
    ("__Answer__ - Pulp Fiction", "names the interacted item itself"),
    # each placeholder of the prompts behind a label: the hard-negative prompt's reasoning ("<one short sentence>")
    # and the profile prompts' "<at most 50 words>" (mutants dropped either alternative)
    ("Answer: <at most 50 words>", "no item named"), ("hard_negative_item: <one short sentence>", "no item named"),
    # the placeholder in quotes or emphasis without a label (mutant: no lstrip before the match)
    ('"<item name, at most 20 words>"', "no item named"), ("**<item name, at most 20 words>**", "no item named"),
    # a bare answer in angle brackets is a placeholder of the model's own (mutant: only the prompts' words refused)
    ("<movie title>", "no item named"),
])
def test_answer_checks_v12_forms_the_audit_left_untested(answer, why):
    problem = negative_problem({"hard_negative_item": answer}, "Pulp Fiction (1994)", "1994")
    assert problem is not None and why in problem, (answer, problem)


@pytest.mark.parametrize("answer", ["**B.** Pulp Fiction", "**ii.** Pulp Fiction", "__B.__ Pulp Fiction",
                                    "**B.**Pulp Fiction", "**ii)** Pulp Fiction", "**(2)** Pulp Fiction"])
def test_answer_checks_v15_a_list_sign_alone_in_bold(answer):
    """v14 read "**1. Heat**" but not "**B.** Heat": its letter or numeral with a period wanted a space right after."""
    problem = negative_problem({"hard_negative_item": answer}, "Pulp Fiction (1994)", "1994")
    assert problem is not None and "names the interacted item itself" in problem, (answer, problem)


def test_title_keys_read_underscores_as_punctuation():
    assert title_key("__The Usual Suspects__") == title_key("The Usual Suspects") == "usual suspects"


#: The checks' patterns per ANSWER_CHECKS version: a pattern changed without a new version would reuse stores whose
#: negatives the new checks refuse. Changing a pattern: bump the version in semantic.py and add its digest here.
CHECKS_DIGESTS = {"v15": "f9f31ffdafc62064", "v16": "f9f31ffdafc62064", "v17": "f9f31ffdafc62064"}


def answer_check_patterns_digest():
    import hashlib

    from recbole_hnlm.llm import semantic

    parts = [semantic._LABEL_PREFIX, semantic._ATTRIBUTE_NAMES, repr(sorted(semantic._NONE_ANSWERS)),
             repr(semantic._NONE_STARTS), repr(semantic._ARTICLES), repr(sorted(semantic._CONTINUATIONS)),
             str(semantic._LONG_ID)]
    parts += [getattr(semantic, name).pattern for name in sorted(vars(semantic))
              if isinstance(getattr(semantic, name), type(semantic._LIST_NUMBER))]
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:16]


def test_answer_check_patterns_changed_only_with_a_new_version():
    from recbole_hnlm.llm.semantic import ANSWER_CHECKS

    version = ANSWER_CHECKS.split(":", 1)[0]
    assert version in CHECKS_DIGESTS, f"add {version!r}: {answer_check_patterns_digest()!r} to CHECKS_DIGESTS"
    assert answer_check_patterns_digest() == CHECKS_DIGESTS[version], (
        f"the answer checks' patterns changed under {version}: bump ANSWER_CHECKS's version in semantic.py")


def test_a_second_semantic_run_is_refused_before_it_writes_profiles(tmp_path, data_root, tiny_tokenizer,
                                                                    tiny_encoder_dir):
    """Another process computing the same store: the second run generated every profile (hours on a real dataset)
    and loaded its models before its chunks' lock refused it."""
    from lock_holder import held_by_another_process
    from recbole_hnlm.errors import ConcurrentWriterError

    _remove_profiles(data_root)
    store = str(tmp_path / "s.safetensors")
    with held_by_another_process(store + ".work.lock"):
        with pytest.raises(ConcurrentWriterError, match=r"s\.safetensors\.work\.lock: another process"):
            _run(data_root, store, tiny_tokenizer, tiny_encoder_dir)
    assert not os.path.exists(os.path.join(data_root, "mini", "mini.hnlm-profiles.jsonl"))


def test_a_store_another_process_wrote_while_this_one_loaded_is_reused(tmp_path, data_root, tiny_tokenizer,
                                                                       tiny_encoder_dir, monkeypatch, caplog):
    """The cache was checked only before the models loaded: a store finished by another process meanwhile was
    computed again and replaced once this run took the lock."""
    import logging

    import recbole_hnlm.llm.pipeline as pipeline

    store = str(tmp_path / "s.safetensors")
    _run(data_root, store, tiny_tokenizer, tiny_encoder_dir)
    written = os.stat(store).st_mtime_ns
    real, calls = pipeline._cached, []
    # missing when first checked (the other process still computing), there once this run holds the lock
    monkeypatch.setattr(pipeline, "_cached", lambda *args, **kwargs: calls.append(args) or (
        False if len(calls) == 1 else real(*args, **kwargs)))
    caplog.set_level(logging.INFO)
    done = []
    _run(data_root, store, tiny_tokenizer, tiny_encoder_dir, on_chunk=done.append)
    assert len(calls) == 2 and done == [] and os.stat(store).st_mtime_ns == written
    assert "written by another process meanwhile; reused" in caplog.text and not os.path.exists(store + ".work")


def test_a_store_of_other_settings_is_warned_about_once(tmp_path, data_root, tiny_tokenizer, tiny_encoder_dir, caplog):
    """The cache is checked twice (before the models load, and under the lock): the replacement is said once."""
    store = str(tmp_path / "s.safetensors")
    _run(data_root, store, tiny_tokenizer, tiny_encoder_dir, max_pairs=30)
    caplog.clear()
    _run(data_root, store, tiny_tokenizer, tiny_encoder_dir)
    assert caplog.text.count("was built with other settings or data") == 1, caplog.text
