"""Audit of recbole_hnlm.data_checks: behaviour the other tests left unpinned (found by hand-made mutants): encodings
and byte-order marks, side files (separators, load_col lists, encodings), numeric fields, error-message details,
pre-split checks, RecBole error translations and the checks of a read dataset."""
import logging
import re
import types

import pytest

from recbole_hnlm.config import Config
from recbole_hnlm.data_checks import (check_dataset_files, check_duplicate_interactions, check_inter_header,
                                      check_no_recbole_pickles, check_records, check_side_file, check_splits_not_empty,
                                      check_topk_fits, dataset_error, dataset_errors_named)
from recbole_hnlm.errors import DataError

IDS = {"inter": ["user_id", "item_id"]}
LOADED = {"inter": ["user_id", "item_id"], "user": ["user_id", "age"], "item": ["item_id", "title"]}
HEADER = "user_id:token\titem_id:token\n"
PARTS = ["train", "valid", "test"]


def _config(tmp_path, name="toy", **options):
    options.setdefault("checkpoint_dir", str(tmp_path / "saved"))
    return Config(model="MF", dataset=name, command_line=False, config_dict=dict(data_path=str(tmp_path), **options))


def _folder(tmp_path, name="toy", **files):
    """Write ``<tmp_path>/<name>/<name>.<suffix>`` for each ``suffix=text`` (``train_inter`` is ``train.inter``)."""
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    for suffix, text in files.items():
        path = folder / f"{name}.{suffix.replace('_', '.')}"
        path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    return folder


def _decode_error(data, encoding="utf-8"):
    """Python's own report of the first byte of ``data`` that is not ``encoding``: ``(byte, reason)``."""
    try:
        data.decode(encoding)
    except UnicodeDecodeError as error:
        return error.object[error.start:error.start + 1], error.reason
    raise AssertionError("decodes")


def _warnings(caplog, call):
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="recbole_hnlm.data_checks"):
        call()
    return [r.getMessage() for r in caplog.records if r.name == "recbole_hnlm.data_checks"]


# ---- encodings and byte-order marks ----

def test_a_side_file_is_read_in_the_configured_encoding_and_the_error_names_the_byte(tmp_path):
    """``encoding`` applies to .user/.item files as to .inter (their ids decoded so); in utf-8 the error names the
    first bad byte and the decoder's reason."""
    data = "item_id:token\ttitle:token_seq\ncaf\u00e9\tA\ni2\tB\n".encode("latin-1")
    path = tmp_path / "l.item"
    path.write_bytes(data)
    load_col = {"inter": ["user_id", "item_id"], "item": ["item_id", "title"]}
    assert check_side_file(str(path), "ITEM_ID_FIELD", _config(tmp_path, load_col=load_col,
                                                               encoding="latin-1")) == {"caf\u00e9", "i2"}
    byte, reason = _decode_error(data)
    with pytest.raises(DataError) as error:
        check_side_file(str(path), "ITEM_ID_FIELD", _config(tmp_path, load_col=load_col))
    assert f"{path} is not utf-8 text (byte {byte!r}: {reason}): save it as UTF-8" in str(error.value)


def test_the_encoding_error_of_another_configured_encoding_does_not_tell_to_save_as_utf8(tmp_path):
    """With --encoding=ascii, a UTF-8 file's error said "save it as UTF-8", which it already is; it now points at
    the option first (its remedy), then at the configured encoding."""
    path = tmp_path / "a.item"
    path.write_bytes("item_id:token\ttitle:token_seq\ni1\tCaf\u00e9\n".encode("utf-8"))
    with pytest.raises(DataError) as error:
        check_records(str(path), encoding="ascii")
    message = str(error.value)
    assert "a.item is not ascii text (byte b'\\xc3': ordinal not in range(128)): pass --encoding=<its encoding> " \
           "(e.g. utf-8), or save it as ascii." in message
    assert "UTF-8" not in message


def test_check_records_names_another_encoding_and_reads_the_given_one(tmp_path):
    """check_records turns a UnicodeDecodeError into the file's DataError, and reads ``encoding`` text."""
    path = tmp_path / "r.item"
    path.write_bytes("item_id:token\ttitle:token_seq\ni1\tCaf\u00e9\n".encode("latin-1"))
    with pytest.raises(DataError, match="r.item is not utf-8 text"):
        check_records(str(path))
    ids = set()
    assert check_records(str(path), encoding="latin-1", id_field="item_id", ids=ids) and ids == {"i1"}


def test_the_side_file_filter_reads_a_side_header_in_the_configured_encoding(tmp_path):
    """The empty-dataset error looks at the loaded .user's header in ``encoding`` (a latin-1 field name)."""
    _folder(tmp_path, inter=HEADER + "u1\ti1\n", user="user_id:token\t\u00e2ge:float\nu1\t3\n".encode("latin-1"))
    config = _config(tmp_path, load_col={"inter": ["user_id", "item_id"], "user": ["user_id", "\u00e2ge"]},
                     encoding="latin-1")
    error = dataset_error(config, ValueError("Some feat is empty, please check the filtering settings."))
    assert f"filter_inter_by_user_or_item=True with {tmp_path / 'toy' / 'toy.user'}" in str(error)


def test_the_byte_order_mark_remedy_works_and_check_records_reads_past_a_mark(tmp_path):
    """The error's remedy, --encoding=utf-8-sig, makes the files pass; check_records skips a mark as pandas does
    (the id field after it is still the id field)."""
    inter = tmp_path / "b.inter"
    inter.write_text("\ufeff" + HEADER + "u1\ti1\n", encoding="utf-8")
    with pytest.raises(DataError, match="starts with a byte-order mark .*--encoding=utf-8-sig"):
        check_inter_header(str(inter), _config(tmp_path))
    assert list(check_inter_header(str(inter), _config(tmp_path, encoding="utf-8-sig"))) == ["user_id", "item_id"]
    item = tmp_path / "b.item"
    item.write_text("\ufeffitem_id:token\ttitle:token_seq\ni1\tHeat\n", encoding="utf-8")
    ids = set()
    assert check_records(str(item), id_field="item_id", ids=ids) and ids == {"i1"}


# ---- side files ----

def test_a_side_file_is_split_at_field_separator(tmp_path):
    path = tmp_path / "c.user"
    path.write_text("user_id:token,age:float\nu1,3\nu2,4\n")
    config = _config(tmp_path, field_separator=",", load_col={"inter": ["user_id", "item_id"],
                                                               "user": ["user_id", "age"]})
    assert check_side_file(str(path), "USER_ID_FIELD", config) == {"u1", "u2"}


def test_a_side_file_missing_one_listed_field_is_still_checked_and_the_field_warned_about(tmp_path, caplog):
    """load_col['user'] naming a field the file lacks: RecBole loads the others, so the file is read (its ids
    returned, a bad number named) and the missing field is warned about."""
    path = tmp_path / "p.user"
    path.write_text("user_id:token\tage:float\nu1\t3\nu2\t4\n")
    config = _config(tmp_path, load_col={"inter": ["user_id", "item_id"], "user": ["user_id", "age", "gender"]})
    said = _warnings(caplog, lambda: check_side_file(str(path), "USER_ID_FIELD", config))
    assert len(said) == 1 and "load_col['user'] names 'gender', which" in said[0] and str(path) in said[0]
    assert check_side_file(str(path), "USER_ID_FIELD", config) == {"u1", "u2"}
    path.write_text("user_id:token\tage:float\nu1\told\n")
    with pytest.raises(DataError, match=r"p.user:2: field 'age' is 'old'"):
        check_side_file(str(path), "USER_ID_FIELD", config)


def test_a_row_lacking_both_ids_counts_as_one_dropped_interaction(tmp_path, caplog):
    _folder(tmp_path, inter=HEADER + "u1\ti1\nu9\ti9\nu1\ti2\n", user="user_id:token\tage:float\nu1\t3\n",
            item="item_id:token\ttitle:token_seq\ni1\tA\ni2\tB\n")
    said = _warnings(caplog, lambda: check_dataset_files(_config(tmp_path, load_col=LOADED)))
    assert len(said) == 1 and "RecBole drops those 1 interactions" in said[0], said
    assert "1 of 3 interactions have a 'user_id'" in said[0] and "1 of 3 interactions have a 'item_id'" in said[0]


@pytest.mark.parametrize("options, named", [
    ({"val_interval": {"age": "[0,inf)"}}, "val_interval={'age': '[0,inf)'} removes some"),
    ({"val_interval": {"age": "[0,inf)"}, "rm_dup_inter": "first"},
     "rm_dup_inter='first' and val_interval={'age': '[0,inf)'} remove some"),
])
def test_the_drop_count_names_every_filter_run_before_the_side_file_filter(tmp_path, caplog, options, named):
    _folder(tmp_path, inter=HEADER + "u1\ti1\nu9\ti1\n", user="user_id:token\tage:float\nu1\t3\n")
    said = _warnings(caplog, lambda: check_dataset_files(_config(tmp_path, load_col=LOADED, **options)))
    assert len(said) == 1 and f"counted in the file: {named} interactions before" in said[0], said


def test_no_row_left_mentions_empty_ids_only_when_some_row_had_one(tmp_path):
    _folder(tmp_path, inter=HEADER + "u8\ti1\nu9\ti1\n", user="user_id:token\tage:float\nu1\t3\n")
    with pytest.raises(DataError) as error:
        check_dataset_files(_config(tmp_path, load_col=LOADED))
    assert "RecBole drops those 2 interactions (filter_inter_by_user_or_item: True), which leaves none" in \
        str(error.value) and "empty id" not in str(error.value)


def test_pre_split_files_are_not_filtered_by_side_files(tmp_path, caplog):
    """RecBole runs no filter on pre-split files: ids a .user lacks are kept, so nothing is warned about."""
    rows = HEADER + "u1\ti1\nu9\ti1\n"
    _folder(tmp_path, train_inter=rows, valid_inter=rows, test_inter=rows, user="user_id:token\tage:float\nu1\t3\n")
    config = _config(tmp_path, load_col=LOADED, benchmark_filename=PARTS)
    assert not [m for m in _warnings(caplog, lambda: check_dataset_files(config)) if "RecBole drops" in m]


def test_the_empty_dataset_error_names_a_side_file_when_every_column_is_loaded(tmp_path):
    _folder(tmp_path, inter=HEADER + "u1\ti1\n", user="user_id:token\tage:float\nu1\t3\n")
    error = dataset_error(_config(tmp_path, load_col=None), ValueError("Some feat is empty, please check."))
    assert f"filter_inter_by_user_or_item=True with {tmp_path / 'toy' / 'toy.user'}" in str(error), error


# ---- headers ----

def test_a_header_of_spaces_is_empty_and_ids_must_be_plain_tokens(tmp_path):
    path = tmp_path / "h.inter"
    path.write_text("   \nu1\ti1\n")
    with pytest.raises(DataError, match="h.inter is empty: its first line must be a header"):
        check_inter_header(str(path), _config(tmp_path))
    path.write_text("user_id:token\titem_id:token_seq\nu1\ti1\n")
    with pytest.raises(DataError, match="field 'item_id' is 'item_id:token_seq'; ids must be 'item_id:token'"):
        check_inter_header(str(path), _config(tmp_path))


def test_the_separator_hint_is_given_for_a_space_separated_header_only(tmp_path):
    """A header split by spaces gets the field_separator hint; a tab-separated header with a bad type does not."""
    path = tmp_path / "s.inter"
    path.write_text("user_id:token item_id:token\nu1 i1\n")
    with pytest.raises(DataError, match="Fields must be separated by field_separator"):
        check_inter_header(str(path), _config(tmp_path))
    path.write_text("user_id:token\titem_id:token\ttags:token seq\nu1\ti1\ta\n")
    with pytest.raises(DataError) as error:
        check_inter_header(str(path), _config(tmp_path))
    assert "header field 'tags:token seq'" in str(error.value) and "Fields must be" not in str(error.value)


def test_check_records_refuses_a_field_without_type_and_a_name_given_twice(tmp_path):
    path = tmp_path / "t.item"
    path.write_text("item_id:token\ttitle\ni1\tHeat\n")
    with pytest.raises(DataError, match=r"t.item: the first line .* is not a header of 'name:type' fields"):
        check_records(str(path))
    path.write_text("item_id:token\ttitle:token_seq\ttitle:token\ni1\tHeat\tx\n")
    with pytest.raises(DataError, match="names field 'title' twice"):
        check_records(str(path))


# ---- records, quotes and numbers ----

def test_a_short_side_line_without_its_id_is_read_as_pandas_fills_it(tmp_path):
    """pandas fills a shorter line's last fields as missing: an id in the last column that a line lacks is not an
    error (and not an id)."""
    path = tmp_path / "short.item"
    path.write_text("title:token_seq\titem_id:token\nHeat\ti1\nFargo\n")
    ids = set()
    assert check_records(str(path), id_field="item_id", ids=ids) and ids == {"i1"}


def test_plain_line_errors_name_the_line_and_the_quote_hint_when_quotes_are_there(tmp_path):
    path = tmp_path / "q.item"
    path.write_text('item_id:token\ttitle:token_seq\ni1\tHeat\ni2\t"Fargo"\tagain\n')
    with pytest.raises(DataError) as error:
        check_records(str(path), quoted=False)
    assert f"{path}:3: 3 fields" in str(error.value) and "Double quotes are text here" in str(error.value)


def test_an_id_pandas_reads_as_missing_gets_a_renamed_example(tmp_path):
    path = tmp_path / "na.item"
    path.write_text("item_id:token\ttitle:token_seq\nnull\tHeat\n")
    with pytest.raises(DataError, match=re.escape("(e.g. 'null_item')")):
        check_records(str(path), id_field="item_id")


def test_a_field_longer_than_the_csv_limit_is_named(tmp_path):
    import csv

    path = tmp_path / "long.inter"
    long = "x" * (csv.field_size_limit() + 10)
    path.write_text(HEADER.rstrip("\n") + f"\treview:token_seq\nu1\ti1\tok\nu1\ti2\t{long}\n")
    with pytest.raises(DataError, match=f"long.inter:3: a field longer than {csv.field_size_limit():,} characters"):
        check_inter_header(str(path), _config(tmp_path))


def test_quote_errors_name_the_lines_they_span(tmp_path):
    reviews = HEADER.rstrip("\n") + "\treview:token_seq\n"
    path = tmp_path / "q.inter"
    path.write_text(reviews + 'u1\ti0\tok\nu1\ti1\t"so good\nstill\nthe end"\nu1\ti2\tok\n')
    with pytest.raises(DataError, match="q.inter:3: .* would read lines 3-5 as one row"):
        check_inter_header(str(path), _config(tmp_path))
    path.write_text(reviews + 'u1\ti0\tok\nu1\ti1\t"Best toy, 12" tall\n')
    with pytest.raises(DataError, match=r"q.inter:3: a double quote .* cannot parse \(.*, line 3\)"):
        check_inter_header(str(path), _config(tmp_path))


def test_a_decimal_comma_is_not_a_number(tmp_path):
    """pandas' float parser (decimal '.') fails on '4,5'."""
    path = tmp_path / "d.inter"
    path.write_text(HEADER.rstrip("\n") + "\trating:float\nu1\ti1\t4,5\n")
    with pytest.raises(DataError, match=r"d.inter:2: field 'rating' is '4,5', not a number"):
        check_inter_header(str(path), _config(tmp_path, load_col=None))


def test_inter_float_seq_values_are_split_at_seq_separator(tmp_path):
    path = tmp_path / "e.inter"
    path.write_text(HEADER.rstrip("\n") + "\temb:float_seq\nu1\ti1\t1.0,2.5\n")
    check_inter_header(str(path), _config(tmp_path, seq_separator=",", load_col=None))
    path.write_text(HEADER.rstrip("\n") + "\temb:float_seq\nu1\ti1\t1.0,x\n")
    with pytest.raises(DataError, match=r"e.inter:2: field 'emb' is 'x'"):
        check_inter_header(str(path), _config(tmp_path, seq_separator=",", load_col=None))


def test_a_blank_id_in_a_pre_split_file_is_empty(tmp_path):
    """pandas reads an id of spaces as text, but in a pre-split file (kept as it is) it is refused as empty."""
    path = tmp_path / "p.inter"
    path.write_text(HEADER + "u1\ti1\n \ti2\n")
    with pytest.raises(DataError, match="p.inter:3: empty 'user_id'"):
        check_inter_header(str(path), _config(tmp_path, benchmark_filename=PARTS))


def test_multi_character_separators_strip_each_line_as_pandas_does(tmp_path, caplog):
    """pandas splits a regex-separated line after stripping it: spaces at its ends are no part of the ids."""
    import pandas as pd

    path = tmp_path / "m.inter"
    path.write_text("user_id:token::item_id:token\n u1::i1 \nu2::i2\n")
    frame = pd.read_csv(path, sep="::", engine="python", dtype=str)
    assert frame.iloc[0].tolist() == ["u1", "i1"]  # pandas' own reading
    assert _warnings(caplog, lambda: check_inter_header(str(path), _config(tmp_path, field_separator="::"))) == []


# ---- check_dataset_files: missing files, pre-split parts, options ----

def test_the_pre_split_hint_needs_every_part(tmp_path):
    _folder(tmp_path, train_inter=HEADER + "u1\ti1\n")
    with pytest.raises(FileNotFoundError) as error:
        check_dataset_files(_config(tmp_path))
    assert "pre-split" not in str(error.value)
    _folder(tmp_path, valid_inter=HEADER + "u1\ti1\n", test_inter=HEADER + "u1\ti1\n")
    with pytest.raises(FileNotFoundError, match="holds a pre-split dataset .*--benchmark_filename="):
        check_dataset_files(_config(tmp_path))


def test_missing_parts_suggest_dropping_benchmark_filename_only_when_the_whole_file_exists(tmp_path):
    _folder(tmp_path, train_inter=HEADER + "u1\ti1\n")
    with pytest.raises(FileNotFoundError) as error:
        check_dataset_files(_config(tmp_path, benchmark_filename=PARTS))
    assert "drop --benchmark_filename" not in str(error.value) and "toy.valid.inter" in str(error.value)


def test_load_col_fields_the_parts_lack_are_warned_about_once(tmp_path, caplog):
    rows = HEADER + "u1\ti1\n"
    _folder(tmp_path, train_inter=rows, valid_inter=rows, test_inter=rows)
    config = _config(tmp_path, benchmark_filename=PARTS, load_col={"inter": ["user_id", "item_id", "timestmp"]})
    said = [m for m in _warnings(caplog, lambda: check_dataset_files(config)) if "'timestmp'" in m]
    assert len(said) == 1 and "toy.train.inter" in said[0], said


def test_parts_may_order_columns_differently_and_differ_in_unloaded_fields(tmp_path):
    """RecBole stacks parts by field name: another column order is the same fields; a field unload_col leaves out
    is never read."""
    _folder(tmp_path, train_inter=HEADER + "u1\ti1\n", valid_inter="item_id:token\tuser_id:token\ni1\tu1\n",
            test_inter=HEADER.rstrip("\n") + "\tnote:token\nu1\ti1\tx\n")
    with pytest.raises(DataError, match="toy.test.inter: loads the fields"):
        check_dataset_files(_config(tmp_path, benchmark_filename=PARTS, load_col=None))
    check_dataset_files(_config(tmp_path, benchmark_filename=PARTS, load_col=None, unload_col={"inter": ["note"]}))


@pytest.mark.parametrize("options, expected", [
    ({"user_inter_num_interval": "[0,inf)"}, None),
    ({"user_inter_num_interval": "[5,inf)"}, "user_inter_num_interval='[5,inf)' is not applied"),
    ({"user_inter_num_interval": "[5,inf)", "rm_dup_inter": "first"},
     "user_inter_num_interval='[5,inf)', rm_dup_inter='first' are not applied"),
    ({"threshold": {"rating": 4}}, "threshold={'rating': 4} gives each interaction a 0/1 label"),
])
def test_options_that_change_nothing_are_warned_about_by_the_file_check(tmp_path, caplog, options, expected):
    rows = HEADER + "u1\ti1\n"
    _folder(tmp_path, train_inter=rows, valid_inter=rows, test_inter=rows)
    config = _config(tmp_path, benchmark_filename=PARTS, **options)
    said = [m for m in _warnings(caplog, lambda: check_dataset_files(config)) if "not applied" in m or "0/1" in m]
    assert said == [] if expected is None else (len(said) == 1 and expected in said[0]), said


def test_pickles_are_found_for_dataset_names_with_glob_characters_and_all_named(tmp_path):
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "toy1-x.pth").write_text("")  # matched by the unescaped pattern 'toy[1]-*.pth' only
    config = _config(tmp_path, name="toy[1]")
    check_no_recbole_pickles(config)
    (saved / "toy[1]-dataset.pth").write_text("")
    (saved / "toy[1]-loaders.pth").write_text("")
    with pytest.raises(DataError) as error:
        check_no_recbole_pickles(config)
    assert f"Move or delete {saved / 'toy[1]-dataset.pth'}, {saved / 'toy[1]-loaders.pth'}." in str(error.value)


# ---- RecBole's errors, named ----

def test_recbole_errors_of_unloaded_fields_name_the_options(tmp_path):
    plain = _config(tmp_path)
    error = dataset_error(plain, ValueError("Field [rating] not in inter_feat."))
    assert "Dataset 'toy': an option names field 'rating', which is not loaded" in str(error), error
    two = _config(tmp_path, val_interval={"rating": "[3,inf)"}, normalize_field=["rating"])
    error = dataset_error(two, ValueError("Field [rating] not defined in dataset."))
    assert "val_interval and normalize_field name field 'rating'" in str(error), error
    unused = _config(tmp_path, unused_col={"inter": ["rating"]})
    error = dataset_error(unused, ValueError("Field [rating] not defined in dataset."))
    assert "unused_col names field 'rating'" in str(error), error


def test_recbole_type_error_of_a_sort_by_no_time_field_is_named(tmp_path):
    """RecBole's Interaction.sort raises TypeError("Wrong type of by [None].") when TIME_FIELD is None."""
    with pytest.raises(DataError, match=r"sorts by field 'None' \(TIME_FIELD\)"):
        with dataset_errors_named(_config(tmp_path)):
            raise TypeError("Wrong type of by [None].")


def test_the_every_item_error_needs_the_dataset(tmp_path):
    assert dataset_error(_config(tmp_path), ValueError("Some users have interacted with all items, which ...")) is None


def _built(tmp_path, name, rows, **options):
    from recbole.data import create_dataset

    _folder(tmp_path, name, inter=HEADER + "".join(f"{u}\t{i}\n" for u, i in rows))
    config = _config(tmp_path, name=name, load_col=IDS, **options)
    return config, create_dataset(config)


@pytest.mark.parametrize("full, listed, more", [(7, 5, " and 2 more"), (5, 5, ""), (1, 1, "")])
def test_users_with_every_item_are_listed_five_at_most(tmp_path, full, listed, more):
    """The error names at most five of the users (and how many more), in the singular for one, and the interval
    that leaves them out."""
    rows = [(f"u{u}", f"i{i}") for u in range(1, full + 1) for i in range(1, 4)] + [("u9", "i1")]
    from recbole.data import data_preparation

    config, dataset = _built(tmp_path, "every", rows)
    with pytest.raises(DataError) as error:
        with dataset_errors_named(config, dataset):  # RecBole's sampler refuses, with its own ValueError
            data_preparation(config, dataset)
    text = str(error.value)
    named = re.findall(r"'(u\d)'", text.split(" interacted")[0])
    assert len(named) == listed and set(named) <= {f"u{u}" for u in range(1, full + 1)}, text
    assert f"{'users' if full > 1 else 'user'} '" in text and f"{more} interacted with every one of the 3 items" in text
    assert 'user_inter_num_interval="[0,3)"' in text and (" more " in text) == bool(more)


# ---- the read dataset ----

def test_topk_may_equal_the_number_of_items(tmp_path):
    config, dataset = _built(tmp_path, "small", [("u1", "i1"), ("u1", "i2"), ("u2", "i3")], topk=[3],
                              valid_metric="NDCG@3")
    check_topk_fits(config, dataset)
    config = _config(tmp_path, name="small", load_col=IDS, topk=[4], valid_metric="NDCG@4")
    with pytest.raises(DataError, match=re.escape("has 3 items, fewer than the largest cut-off topk = 4: lower it "
                                                  "(e.g. --topk=[3] --valid_metric=NDCG@3)")):
        check_topk_fits(config, dataset)


def test_duplicate_counts_are_pairs_and_extra_rows(tmp_path, caplog):
    rows = [("u1", "i1")] * 3 + [("u2", "i2")] * 2 + [("u3", "i3")]
    config, dataset = _built(tmp_path, "dup", rows)
    said = _warnings(caplog, lambda: check_duplicate_interactions(config, dataset))
    assert len(said) == 1 and "2 (user, item) pairs occur on more than one row (3 extra of 6 rows)" in said[0], said


def test_pre_split_leaks_and_cold_ids_are_counted_in_every_evaluation_file(tmp_path, caplog):
    from recbole.data import create_dataset

    parts = {"train": [("u1", "i1"), ("u1", "i2"), ("u2", "i3")], "valid": [("u1", "i1"), ("u1", "i1"), ("u2", "i9")],
             "test": [("u2", "i3"), ("u3", "i1")]}
    _folder(tmp_path, "ps", **{f"{part}_inter": HEADER + "".join(f"{u}\t{i}\n" for u, i in rows)
                               for part, rows in parts.items()})
    config = _config(tmp_path, name="ps", load_col=IDS, benchmark_filename=PARTS)
    said = " | ".join(_warnings(caplog, lambda: check_duplicate_interactions(config, create_dataset(config))))
    assert "ps.valid.inter has 1 (user, item) pairs that are also training pairs" in said, said
    assert "ps.test.inter has 1 (user, item) pairs that are also training pairs" in said, said
    assert "ps.valid.inter: 0 users and 1 items that" in said and "ps.test.inter: 1 users and 0 items that" in said


def _loader(rows):
    return types.SimpleNamespace(dataset=list(range(rows)))


@pytest.mark.parametrize("split, valid, test, named", [
    ({"LS": "test_only"}, 0, 2, "The validation split of dataset 'toy' is empty: eval_args split"),
    ({"RS": [0.8, 0.2, 0.0]}, 2, 0, "The test split of dataset 'toy' is empty: eval_args split"),
    ({"RS": [0.8, 0.2]}, 2, 0, "The test split of dataset 'toy' is empty: RecBole splits each user's"),
])
def test_an_empty_split_is_blamed_on_the_split_option_only_when_it_gives_none(split, valid, test, named):
    config = {"dataset": "toy", "eval_args": {"split": split}}
    with pytest.raises(DataError, match=re.escape(named)):
        check_splits_not_empty(config, _loader(valid), _loader(test))


def test_a_missing_split_loader_is_not_an_empty_split():
    check_splits_not_empty({"dataset": "toy", "eval_args": {"split": {"RS": [1.0, 0.0, 0.0]}}}, None, None)


def test_a_header_only_side_file_with_every_column_loaded_suggests_loading_both_ids(tmp_path):
    item = tmp_path / "e.item"
    item.write_text("item_id:token\ttitle:token_seq\n")
    with pytest.raises(DataError, match=re.escape("(e.g. \"--load_col={'inter': ['user_id', 'item_id']}\")")):
        check_side_file(str(item), "ITEM_ID_FIELD", _config(tmp_path, load_col=None))


@pytest.mark.parametrize("name", ["ml-100k", "ml-100k-split"])
def test_only_ml100k_is_explained_as_recboles_bundled_example(tmp_path, name):
    with pytest.raises(FileNotFoundError) as error:
        check_dataset_files(_config(tmp_path, name=name, benchmark_filename=PARTS))
    assert ("RecBole's bundled example" in str(error.value)) == (name == "ml-100k"), str(error.value)


def test_a_carriage_return_inside_an_inter_line_is_named_at_its_line(tmp_path):
    """The .inter file is read with the line ends pandas sees: a bare '\\r' inside a line is named, not taken as a
    line end (universal newlines would hide it)."""
    path = tmp_path / "cr.inter"
    path.write_bytes(b"user_id:token\titem_id:token\nu1\ti1\nu2\ti\r2\nu3\ti3\n")
    with pytest.raises(DataError, match=r"cr.inter:3: a carriage return"):
        check_inter_header(str(path), _config(tmp_path))


def test_a_load_col_tuple_lists_fields_as_a_list_does(tmp_path, caplog):
    path = tmp_path / "t.inter"
    path.write_text(HEADER + "u1\ti1\n")
    config = _config(tmp_path)
    config["load_col"] = {"inter": ("user_id", "item_id", "timestmp")}
    said = _warnings(caplog, lambda: check_inter_header(str(path), config))
    assert len(said) == 1 and "load_col['inter'] names 'timestmp'" in said[0], said


def test_an_unknown_encoding_is_an_option_error_not_a_lookup_traceback(tmp_path):
    """bug: --encoding=latin1x passed the option checks and every atomic file's open() raised LookupError."""
    from recbole_hnlm.errors import ConfigError

    with pytest.raises(ConfigError, match="Option 'encoding' must name a text encoding .*got 'latin1x'"):
        _config(tmp_path, encoding="latin1x")
    assert _config(tmp_path, encoding="latin-1")["encoding"] == "latin-1"


def test_the_read_dataset_check_includes_the_duplicate_warning(tmp_path, caplog):
    from recbole_hnlm.data_checks import check_read_dataset

    config, dataset = _built(tmp_path, "rd", [("u1", "i1"), ("u1", "i1"), ("u2", "i2"), ("u2", "i3")], topk=[2],
                             valid_metric="NDCG@2")
    said = _warnings(caplog, lambda: check_read_dataset(config, dataset))
    assert len(said) == 1 and "1 (user, item) pairs occur on more than one row (1 extra of 4 rows)" in said[0], said


def test_the_first_bare_carriage_return_is_named_when_the_first_newline_comes_later(tmp_path):
    item = tmp_path / "late.item"
    item.write_bytes(b"item_id:token\ttitle:token_seq\ri1\tA\ri2\tB\n")
    with pytest.raises(DataError, match=r"late.item:1: a carriage return"):
        check_records(str(item))
