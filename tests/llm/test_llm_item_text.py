"""Items without text: a dataset with no ``.item`` file, or one without title/attribute fields, gets one warning
that names the file, says the LLM sees only item ids and lists the fields to provide."""
import json
import logging
import os
import shutil

import pandas as pd
import pytest

from llm_helpers import make_scripted_generator
from recbole_hnlm.llm.config import LLMConfig
from recbole_hnlm.llm.dataset_text import DatasetText
from recbole_hnlm.llm.pipeline import profiles_path, run_profiles


def _copy_inter(data_root, root, name):
    os.makedirs(os.path.join(root, name))
    shutil.copy(os.path.join(data_root, "mini", "mini.inter"), os.path.join(root, name, f"{name}.inter"))
    return os.path.join(root, name, f"{name}.item")


def _item_text_warnings(caplog):
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "the hard negatives it writes or embeds will be weak" in r.getMessage()]


def test_profile_stage_warns_once_without_an_item_file(data_root, tiny_tokenizer, tmp_path, caplog):
    item_path = _copy_inter(data_root, str(tmp_path), "bare")
    caplog.set_level(logging.WARNING)
    text = DatasetText(str(tmp_path), "bare")
    pairs = text.select_pairs(20, seed=0)
    run_profiles(LLMConfig.from_config({"hnlm_generator": "scripted"}), text, pairs,
                 generator=make_scripted_generator(tiny_tokenizer), generator_name="scripted", progress=False)
    warnings = _item_text_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"{item_path} not found: ") and "only item ids" in warnings[0]
    assert "movie_title, title, name, item_name" in warnings[0] and "categories" in warnings[0]
    with open(profiles_path(str(tmp_path), "bare"), encoding="utf-8") as f:  # the stage still ran, on ids alone
        assert any(json.loads(line)["kind"] == "item" for line in f)


def test_item_file_without_text_fields_is_named_with_its_fields(data_root, tmp_path, caplog):
    item_path = _copy_inter(data_root, str(tmp_path), "numeric")
    items = sorted({i for _, i in DatasetText(data_root, "mini").pairs})
    with open(item_path, "w", encoding="utf-8") as f:
        f.write("item_id:token\tpopularity:float\n" + "".join(f"{i}\t1.0\n" for i in items))
    caplog.set_level(logging.WARNING)
    DatasetText(str(tmp_path), "numeric")
    warnings = _item_text_warnings(caplog)
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{item_path} has none of the text fields recbole_hnlm reads (its fields: "
                                  "item_id, popularity)")


def test_items_with_text_give_no_warning_and_missing_rows_are_counted(data_root, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    DatasetText(data_root, "mini")
    assert _item_text_warnings(caplog) == []
    item_path = _copy_inter(data_root, str(tmp_path), "partial")
    with open(os.path.join(data_root, "mini", "mini.item"), encoding="utf-8") as f:
        header, first, *_ = f.read().splitlines()
    with open(item_path, "w", encoding="utf-8") as f:
        f.write(f"{header}\n{first}\n")
    text = DatasetText(str(tmp_path), "partial")
    used = len({i for _, i in text.pairs})
    assert _item_text_warnings(caplog) == []
    assert any(f"{item_path} has no row for {used - 1} of the {used} items" in r.getMessage()
               for r in caplog.records)
    assert text.items[first.split("\t")[0]].attributes  # the rows present keep their text


def test_review_text_is_mentioned_when_present(tmp_path, caplog):
    os.makedirs(tmp_path / "rev")
    (tmp_path / "rev" / "rev.inter").write_text("user_id:token\titem_id:token\treview:token_seq\nu1\ti1\tgreat\n"
                                                "u1\ti2\tdull\nu2\ti1\tfine\n")
    caplog.set_level(logging.WARNING)
    DatasetText(str(tmp_path), "rev")
    warnings = _item_text_warnings(caplog)
    assert len(warnings) == 1 and "only item ids and the review text of the .inter file" in warnings[0]


def _write_items(item_path, data, encoding="utf-8"):
    with open(item_path, "wb") as f:
        f.write(data.encode(encoding))


def test_item_text_in_another_encoding_is_an_error_not_replaced_characters(data_root, tmp_path):
    """A latin-1 .item file reached the prompts as 'Caf\ufffd Cr\ufffdme' without a word; now it names the file and the
    remedy, and --encoding (RecBole's option, passed by the pipeline) reads it right."""
    import pytest

    from recbole_hnlm.errors import DataError
    from recbole_hnlm.llm.pipeline import load_dataset_text

    item_path = _copy_inter(data_root, str(tmp_path), "latin")
    items = sorted({i for _, i in DatasetText(data_root, "mini").pairs})
    rows = "".join(f"{i}\tCaf\u00e9 Cr\u00e8me {i}\n" for i in items)
    _write_items(item_path, "item_id:token\ttitle:token_seq\n" + rows, "latin-1")
    with pytest.raises(DataError, match=f"{item_path} is not utf-8 text .*--encoding=<its encoding>"):
        DatasetText(str(tmp_path), "latin")
    text = load_dataset_text({"encoding": "latin-1"}, "latin", str(tmp_path))
    assert text.items[items[0]].title == f"Caf\u00e9 Cr\u00e8me {items[0]}"
    _write_items(item_path, "\ufeffitem_id:token\ttitle:token_seq\n" + "".join(f"{i}\tT{i}\n" for i in items))
    assert DatasetText(str(tmp_path), "latin").items[items[0]].title == f"T{items[0]}"  # pandas drops the mark


def test_empty_titles_and_repeated_item_rows_are_warned_about(data_root, tmp_path, caplog):
    item_path = _copy_inter(data_root, str(tmp_path), "gaps")
    items = sorted({i for _, i in DatasetText(data_root, "mini").pairs})
    rows = ([f"{i}\t\n" for i in items[:3]] + [f"{i}\tTitle {i}\n" for i in items[3:]]
            + [f"{items[4]}\tAgain\n", f"{items[4]}\tThird\n"])
    _write_items(item_path, "item_id:token\ttitle:token_seq\n" + "".join(rows))
    caplog.set_level(logging.WARNING)
    text = DatasetText(str(tmp_path), "gaps")
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"{item_path}: 3 of its {len(items)} items have an empty 'title'") for m in messages)
    assert any(m.startswith(f"{item_path}: 1 item ids occur on more than one row (e.g. {items[4]}); the first row")
               for m in messages)
    assert text.items[items[0]].title == items[0]  # the id, not an empty title
    assert text.items[items[4]].title == f"Title {items[4]}"  # the first row, as RecBole keeps


def test_quoted_item_text_is_read_as_recbole_reads_it(data_root, tmp_path, monkeypatch):
    """An .item file RecBole loads (load_col) is read as RecBole reads it, '"' a CSV quote: a tab inside a quoted title
    split the row (a pandas traceback after the teacher had trained), and a quote that would merge lines is named by
    file and line before the teacher trains. One RecBole does not load keeps its quotes as text ("Weird Al")."""
    import pytest

    from recbole_hnlm.errors import DataError
    from recbole_hnlm.llm import teacher_training
    from recbole_hnlm.sampler.hnlmrec import HNLMRec

    item_path = _copy_inter(data_root, str(tmp_path), "quoted")
    items = sorted({i for _, i in DatasetText(data_root, "mini").pairs})
    rows = "".join(f"{i}\t\"Sushi\tRamen {i}\"\n" for i in items)
    _write_items(item_path, "item_id:token\ttitle:token_seq\n" + rows)
    assert DatasetText(str(tmp_path), "quoted", item_quoted=True).items[items[0]].title == f"Sushi\tRamen {items[0]}"
    with pytest.raises(DataError, match=f"{item_path}:2: 3 fields, but the header"):
        DatasetText(str(tmp_path), "quoted")  # quotes as text: the tab splits the title

    unclosed = "item_id:token\ttitle:token_seq\tgenre:token\n" + f"{items[0]}\t\"Weird Al\" Yankovic\n" + "".join(
        f"{i}\tT{i}\tpop\n" for i in items[1:])
    _write_items(item_path, unclosed)
    text = DatasetText(str(tmp_path), "quoted")  # a short row is filled, as pandas fills it
    assert text.items[items[0]].title == '"Weird Al" Yankovic' and text.items[items[1]].attributes == {"genres": "pop"}
    with pytest.raises(DataError, match=f"{item_path}:2: a double quote that RecBole's reader"):
        DatasetText(str(tmp_path), "quoted", item_quoted=True)
    trained = []
    monkeypatch.setattr(teacher_training, "ensure_teacher", lambda *args: trained.append(args))
    config = {"hnlm_file": None, "negative_warmup_epochs": 0, "epochs": 1, "hnlm_variant": "finetuned",
              "data_path": os.path.join(str(tmp_path), "quoted"), "dataset": "quoted", "encoding": "utf-8",
              "load_col": {"inter": ["user_id", "item_id"], "item": ["item_id", "title"]}}
    with pytest.raises(DataError, match="quoted.item:2: a double quote that RecBole's reader"):
        HNLMRec.prepare(config, None, None)
    assert trained == []


def test_amazon_category_literals_reach_prompts_as_plain_names(data_root, tmp_path):
    """RecBole's Amazon converters write categories as a set's repr without braces (``'Toys & Games', 'Puzzles'``,
    ``et(`` for none): the prompts show the names, not Python's quotes; other values are kept as written."""
    from recbole_hnlm.llm.prompts import ChatFormatter, PromptTemplate
    from recbole_hnlm.llm.profiles import item_profile_prompt

    item_path = _copy_inter(data_root, str(tmp_path), "amazon")
    items = sorted({i for _, i in DatasetText(data_root, "mini").pairs})
    categories = ["'Toys & Games', 'Puzzles', 'Jigsaw Puzzles'", "\"Kids' Toys\", 'Games'", "et(",
                  "[['Books', 'Comics'], ['Books']]", "Pizza, Restaurants", "'unclosed, 'Toys",
                  str([["Children's Books", "Books"]]), "{'Toys', 'Toys'}", "'Line\\nbreak'"]
    frame = pd.DataFrame({"item_id:token": items, "title:token_seq": [f"Title {item}" for item in items],
                          "categories:token_seq": [categories[k % len(categories)] for k in range(len(items))]})
    frame.to_csv(item_path, sep="\t", index=False)  # as the converters write it: a '"' field is quoted, '""' inside
    for quoted in (False, True):  # as text, and as RecBole reads a loaded .item file
        text = DatasetText(str(tmp_path), "amazon", item_quoted=quoted)
        seen = [text.items[item].attributes.get("categories") for item in items[:len(categories)]]
        assert seen == ["Toys & Games, Puzzles, Jigsaw Puzzles", "Kids' Toys, Games", None, "Books, Comics",
                        "Pizza, Restaurants", "'unclosed, 'Toys", "Children's Books, Books", "Toys", "Line break"]
    prompt = item_profile_prompt(ChatFormatter(None), PromptTemplate.load("item_profile.v1"), text, items[0], 5)
    assert '"categories": "Toys & Games, Puzzles, Jigsaw Puzzles"' in prompt and "'Toys" not in prompt
    # stores made when the prompts showed the literals are not reused: the reading is in the dataset hash
    assert text.categories_rewritten
    literal_reading = text.dataset_hash()
    text.categories_rewritten = False
    assert text.dataset_hash() != literal_reading
    frame["categories:token_seq"] = "Pizza, Restaurants"
    frame.to_csv(item_path, sep="\t", index=False)
    assert not DatasetText(str(tmp_path), "amazon", item_quoted=True).categories_rewritten


def test_a_large_interaction_file_is_announced_before_it_is_read(data_root, tmp_path, caplog, monkeypatch):
    """Amazon-Book's 3M lines took ~25 s before the LLM stage's first line: a large file is named first."""
    import recbole_hnlm.llm.dataset_text as dataset_text

    caplog.set_level(logging.INFO)
    DatasetText(data_root, "mini")
    assert "interactions for the LLM stage's texts" not in caplog.text
    monkeypatch.setattr(dataset_text, "LARGE_INTER_BYTES", 10)
    DatasetText(data_root, "mini")
    assert f"{os.path.join(data_root, 'mini', 'mini.inter')}: reading 0 MB of interactions for the LLM stage" \
        in caplog.text


@pytest.mark.parametrize("value, shown", [
    ("set()", ""), ("{}", ""),  # an empty set written whole, an empty dict: nothing, not Python's spelling
    ("('Toys', 'Games')", "Toys, Games"),  # a tuple literal reads as a list does
    ("['Toys', '', ' ']", "Toys"),  # empty names are dropped, not shown as ", ,"
    ("[1, 2]", "[1, 2]"), ("['Toys', 1]", "['Toys', 1]"),  # not a literal of names: kept as written
    ("['Toys', Games]", "['Toys', Games]"), ("(Blank)", "(Blank)"),  # not a literal at all: kept, no error
])
def test_category_values_that_are_not_names_are_kept_and_empty_ones_dropped(value, shown):
    """A mutation audit dropped each of these cases from plain_categories and no test failed."""
    from recbole_hnlm.llm.dataset_text import plain_categories

    assert plain_categories(value) == shown


def test_a_category_with_an_invalid_escape_is_read_without_a_warning():
    import warnings

    from recbole_hnlm.llm.dataset_text import plain_categories

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert plain_categories(r"'Tools\d', 'Hardware'") == r"Tools\d, Hardware"
    assert caught == []


def test_only_categories_are_read_as_literals_and_any_rewritten_one_is_in_the_hash(data_root, tmp_path):
    """The first item's category list is a literal, the last one's plain text: the reading is still recorded (the
    last value decided it in a mutant); other attributes (brand) are shown as written."""
    item_path = _copy_inter(data_root, str(tmp_path), "mixed")
    items = sorted({i for _, i in DatasetText(data_root, "mini").pairs})
    frame = pd.DataFrame({"item_id:token": items, "title:token_seq": [f"Title {item}" for item in items],
                          "categories:token_seq": ["'Toys', 'Games'"] + ["Games"] * (len(items) - 1),
                          "brand:token": ["['Acme']"] * len(items)})
    frame.to_csv(item_path, sep="\t", index=False)
    text = DatasetText(str(tmp_path), "mixed")
    assert text.items[items[0]].attributes == {"categories": "Toys, Games", "brand": "['Acme']"}
    assert text.items[items[-1]].attributes["categories"] == "Games"
    assert text.categories_rewritten


def test_a_missing_interaction_file_is_named_with_the_options_to_check(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing\.inter: interaction file not found \(check --data_path"):
        DatasetText(str(tmp_path), "nothing")


def test_items_with_attributes_but_no_title_field_are_warned_about(data_root, tmp_path, caplog):
    """An .item file with categories but no title field named every item by its bare id without a word (a text-less
    file warns, and so do empty titles)."""
    item_path = _copy_inter(data_root, str(tmp_path), "untitled")
    items = sorted({i for _, i in DatasetText(data_root, "mini").pairs})
    _write_items(item_path, "item_id:token\tcategories:token_seq\n" + "".join(f"{i}\tDrama\n" for i in items))
    caplog.set_level(logging.WARNING)
    text = DatasetText(str(tmp_path), "untitled")
    assert text.items[items[0]].title == items[0] and text.items[items[0]].attributes == {"categories": "Drama"}
    about_items = [r.getMessage() for r in caplog.records if r.getMessage().startswith(item_path)]
    assert len(about_items) == 1 and about_items[0].startswith(f"{item_path} has no title field (one of movie_title")


def test_an_unloaded_item_file_naming_a_field_twice_is_an_error(data_root, tmp_path):
    """With ``title`` twice in the header of an .item file load_col leaves out, pandas renamed the second and the
    prompts showed the brand column as every item's title (RecBole's own reader names the field when it loads it)."""
    from recbole_hnlm.errors import DataError

    item_path = _copy_inter(data_root, str(tmp_path), "twice")
    items = sorted({i for _, i in DatasetText(data_root, "mini").pairs})
    _write_items(item_path, "item_id:token\ttitle:token_seq\tbrand:token\ttitle:token_seq\n"
                 + "".join(f"{i}\tT{i}\tAcme\tT{i}\n" for i in items))
    with pytest.raises(DataError, match="twice.item: the header .* names field 'title' twice"):
        DatasetText(str(tmp_path), "twice")


def test_a_quoted_tab_in_an_unloaded_item_file_names_load_col(data_root, tmp_path):
    """Quotes are text in an .item file load_col leaves out: a quoted title holding a tab reads as one field too
    many, and the error now says why and how to read the quotes as RecBole does."""
    from recbole_hnlm.errors import DataError

    item_path = _copy_inter(data_root, str(tmp_path), "tabbed")
    items = sorted({i for _, i in DatasetText(data_root, "mini").pairs})
    _write_items(item_path, "item_id:token\ttitle:token_seq\n" + f'{items[0]}\t"Tab\there"\n'
                 + "".join(f"{i}\tT{i}\n" for i in items[1:]))
    with pytest.raises(DataError, match="tabbed.item:2: 3 fields, .*Double quotes are text here .* add the file to "
                                        "load_col"):
        DatasetText(str(tmp_path), "tabbed")
    assert DatasetText(str(tmp_path), "tabbed", item_quoted=True).items[items[0]].title == "Tab\there"


def _messages(caplog, item_path):
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(item_path)]


def test_the_no_title_and_missing_row_warnings_each_for_their_own_files(data_root, tmp_path, caplog):
    """A titled .item with attributes says nothing about titles (mutant: the no-title warning for any attributes);
    an attributes-only .item that lacks rows gets both warnings (mutants: the missing-row warning only with a title
    field, or only when no title warning came); a dataset without an .item file gets the no-text warning only, not
    "has no row" for a file it does not have (mutant: the missing-row warning for every file)."""
    caplog.set_level(logging.WARNING)
    DatasetText(data_root, "mini")  # titles and attributes
    assert not [m for m in (r.getMessage() for r in caplog.records) if "has no title field" in m]
    item_path = _copy_inter(data_root, str(tmp_path), "untitled")
    items = sorted({i for _, i in DatasetText(data_root, "mini").pairs})
    with open(item_path, "w", encoding="utf-8") as f:
        f.write("item_id:token\tcategories:token_seq\n" + "".join(f"{i}\tDrama\n" for i in items[1:]))
    caplog.clear()
    DatasetText(str(tmp_path), "untitled")
    said = _messages(caplog, item_path)
    assert len(said) == 2 and "has no title field" in said[0], said
    assert f"has no row for 1 of the {len(items)} items" in said[1], said
    bare = _copy_inter(data_root, str(tmp_path), "bare")
    caplog.clear()
    DatasetText(str(tmp_path), "bare")
    said = _messages(caplog, bare)
    assert len(said) == 1 and said[0].startswith(f"{bare} not found: "), said
