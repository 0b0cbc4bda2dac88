"""The atomic-file checks against what RecBole 1.2.1 reads: interactions of ids a loaded ``.user``/``.item`` lacks
(``filter_inter_by_user_or_item``), float fields as pandas parses them (``seq_separator``, ``unload_col``), side files
``load_col`` reads without their id or not at all, and carriage returns inside lines."""
import logging

import pytest

from recbole_hnlm.config import Config
from recbole_hnlm.data_checks import check_dataset_files, check_inter_header, check_records, check_side_file
from recbole_hnlm.errors import DataError

LOADED = {"inter": ["user_id", "item_id"], "user": ["user_id", "age"], "item": ["item_id", "title"]}


def _config(tmp_path, name="toy", **options):
    return Config(model="MF", dataset=name, command_line=False, config_dict=dict(data_path=str(tmp_path), **options))


def _dataset(tmp_path, inter, user, item="item_id:token\ttitle:token_seq\ni1\tA\ni2\tB\n", name="toy"):
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.inter").write_text(inter)
    (folder / f"{name}.user").write_text(user)
    (folder / f"{name}.item").write_text(item)


def _drop_warnings(caplog, config):
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        check_dataset_files(config)
    return [r.getMessage() for r in caplog.records if "RecBole drops" in r.getMessage()]


@pytest.mark.parametrize("value", [None, 1, "yes"])
def test_only_a_filter_option_that_is_true_warns_as_recbole_filters_only_then(tmp_path, caplog, value):
    """RecBole filters only when filter_inter_by_user_or_item `is True` (None, 1, 'yes' keep every row)."""
    _dataset(tmp_path, "user_id:token\titem_id:token\nu1\ti1\nu9\ti1\n", "user_id:token\tage:float\nu1\t3\n")
    assert _drop_warnings(caplog, _config(tmp_path, load_col=LOADED, filter_inter_by_user_or_item=value)) == []
    assert len(_drop_warnings(caplog, _config(tmp_path, load_col=LOADED))) == 1


def test_an_empty_id_is_not_counted_as_missing_from_the_side_file(tmp_path, caplog):
    """An empty item id is a missing value (RecBole drops the row itself, with its own warning), not an id the
    .item file lacks."""
    _dataset(tmp_path, "user_id:token\titem_id:token\nu1\ti1\nu2\t\nu1\ti2\n",
             "user_id:token\tage:float\nu1\t3\nu2\t4\n")
    assert _drop_warnings(caplog, _config(tmp_path, load_col=LOADED)) == []


@pytest.mark.parametrize("inter_user, user_file", [
    ("u1 ", "user_id:token\tage:float\nu1\t3\nu2\t4\n"),       # spaced in .inter
    ("u1", "user_id:token\tage:float\nu1 \t3\nu2\t4\n"),       # spaced in .user
])
def test_ids_with_spaces_are_other_ids_for_the_side_file_look_up(tmp_path, caplog, inter_user, user_file):
    """RecBole keeps the spaces ('u1 ' is not 'u1'), so its filter drops the row: the warning counts it."""
    _dataset(tmp_path, f"user_id:token\titem_id:token\n{inter_user}\ti1\nu2\ti1\nu2\ti2\n", user_file)
    said = _drop_warnings(caplog, _config(tmp_path, load_col=LOADED))
    assert len(said) == 1 and "1 of 3 interactions have a 'user_id'" in said[0] and f"{inter_user!r})" in said[0]


def test_a_side_file_with_its_id_in_the_last_column_is_read(tmp_path, caplog):
    _dataset(tmp_path, "user_id:token\titem_id:token\nu1\ti1\nu2\ti1\nu9\ti2\n",
             "age:float\tuser_id:token\n3\tu1\n4\tu2\n")
    said = _drop_warnings(caplog, _config(tmp_path, load_col=LOADED))
    assert len(said) == 1 and "1 of 3 interactions have a 'user_id'" in said[0] and "'u9')" in said[0]


def test_the_error_is_for_no_row_left_exactly(tmp_path, caplog):
    _dataset(tmp_path, "user_id:token\titem_id:token\nu1\ti1\nu8\ti1\nu9\ti2\n", "user_id:token\tage:float\nu1\t3\n")
    said = _drop_warnings(caplog, _config(tmp_path, load_col=LOADED))
    assert len(said) == 1 and "RecBole drops those 2 interactions" in said[0]  # one left: a warning
    (tmp_path / "toy" / "toy.inter").write_text("user_id:token\titem_id:token\nu9\ti1\n")
    with pytest.raises(DataError, match="1 of 1 interactions .* which leaves none"):
        check_dataset_files(_config(tmp_path, load_col=LOADED))


def test_inter_float_fields_are_checked_exactly_when_loaded(tmp_path):
    path = tmp_path / "f.inter"
    path.write_text("user_id:token\titem_id:token\tscore:float\temb:float_seq\nu1\ti1\t1\t0.5 x\n")
    with pytest.raises(DataError, match=r"f.inter:2: field 'emb' is 'x'"):
        check_inter_header(str(path), _config(tmp_path, load_col=None))
    with pytest.raises(DataError, match=r"f.inter:2: field 'emb' is 'x'"):
        check_inter_header(str(path), _config(tmp_path, load_col={"inter": ["user_id", "item_id", "emb"]}))
    check_inter_header(str(path), _config(tmp_path, load_col={"inter": ["user_id", "item_id", "score"]}))


# M49 (a short line's missing float field indexed)
def test_every_float_field_of_a_side_file_is_checked_and_a_short_line_passes(tmp_path):
    path = tmp_path / "s.user"
    path.write_text("user_id:token\tage:float\theight:float\nu1\t3\t1.8\nu2\t4\ttall\n")
    for load_col in (None, {"inter": ["user_id", "item_id"], "user": ["user_id", "age", "height"]}):
        with pytest.raises(DataError, match=r"s.user:3: field 'height' is 'tall'"):
            check_side_file(str(path), "USER_ID_FIELD", _config(tmp_path, load_col=load_col))
    path.write_text("user_id:token\tage:float\theight:float\nu1\t3\t1.8\nu2\t4\n")  # pandas fills height as missing
    assert check_side_file(str(path), "USER_ID_FIELD", _config(tmp_path, load_col=None)) == {"u1", "u2"}


def test_crlf_line_ends_are_line_ends_and_the_first_stray_carriage_return_is_named(tmp_path):
    item = tmp_path / "cr.item"
    item.write_bytes(b"item_id:token\ttitle:token_seq\ni1\tHeat\r\ni2\tFargo\n")  # mixed, but every line ends
    assert check_records(str(item))
    item.write_bytes(b"item_id:token\ttitle:token_seq\r\ni1\tHeat\r\ni2\tMovie\rWith CR\r\n")
    with pytest.raises(DataError, match=r"cr.item:3: a carriage return"):
        check_records(str(item))
    item.write_bytes(b"item_id:token\ttitle:token_seq\ni1\tA\rB\rC\ni2\tD\n")
    with pytest.raises(DataError, match=r"cr.item:2: a carriage return"):
        check_records(str(item))


def test_a_carriage_return_that_ends_the_file_passes(tmp_path):
    """The last line's bare \\r splits nothing (pandas reads the same rows as without it), so it is no error (it was
    refused as a carriage return inside the line); one with a line after it still is."""
    import pandas as pd

    item = tmp_path / "end.item"
    item.write_bytes(b"item_id:token\ttitle:token_seq\ni1\tHeat\ni2\tFargo\r")
    assert check_records(str(item))
    assert pd.read_csv(item, sep="\t").values.tolist() == [["i1", "Heat"], ["i2", "Fargo"]]
    item.write_bytes(b"item_id:token\ttitle:token_seq\ni1\tHeat\ni2\tFargo\rX\n")
    with pytest.raises(DataError, match=r"end.item:3: a carriage return"):
        check_records(str(item))


# ---- bugs (these fail on 5eddce5 and pass with the prototype fix) ----

def test_a_float_field_of_spaces_only_is_named_as_pandas_fails_on_it(tmp_path):
    """pandas (python engine, dtype float64) reads '' as missing but fails on ' ': "Unable to convert column
    r:float to type float64", a traceback naming no line."""
    path = tmp_path / "b.inter"
    path.write_text("user_id:token\titem_id:token\tr:float\nu1\ti1\t 1.5 \nu2\ti1\t\nu2\ti2\t \n")
    with pytest.raises(DataError, match=r"b.inter:4: field 'r' is ' ', not a number"):
        check_inter_header(str(path), _config(tmp_path, load_col=None))


def test_float_seq_values_are_split_at_seq_separator_as_recbole_splits_them(tmp_path):
    path = tmp_path / "e.item"
    path.write_text("item_id:token\temb:float_seq\ni1\t1.0,2.0\ni2\t3,4\n")
    config = _config(tmp_path, load_col={"inter": ["user_id", "item_id"], "item": ["item_id", "emb"]},
                     seq_separator=",")
    assert check_side_file(str(path), "ITEM_ID_FIELD", config) == {"i1", "i2"}  # RecBole reads [1., 2.] and [3., 4.]
    path.write_text("item_id:token\temb:float_seq\ni1\t1.0,x\n")
    with pytest.raises(DataError, match=r"e.item:2: field 'emb' is 'x'"):
        check_side_file(str(path), "ITEM_ID_FIELD", config)


def test_a_float_field_unload_col_leaves_out_is_not_read(tmp_path):
    path = tmp_path / "u.user"
    path.write_text("user_id:token\tage:float\nu1\tunknown\nu2\t4\n")
    assert check_side_file(str(path), "USER_ID_FIELD", _config(tmp_path, load_col=None, unload_col={"user": ["age"]}))
    inter = tmp_path / "u.inter"
    inter.write_text("user_id:token\titem_id:token\tr:float\nu1\ti1\tn/a-r\n")
    check_inter_header(str(inter), _config(tmp_path, load_col=None, unload_col={"inter": ["r"]}))


def test_a_side_file_load_col_reads_without_its_id_is_named_or_not_loaded(tmp_path, caplog):
    """load_col['user'] without user_id: RecBole fails with "uid_field must be loaded if user_feat is loaded" (a
    traceback, after the check had warned about rows it said RecBole drops). load_col['user'] = []: RecBole loads
    no .user, so it drops no row for it (the check warned that it dropped 2 of 3)."""
    _dataset(tmp_path, "user_id:token\titem_id:token\nu1\ti1\nu9\ti1\nu8\ti2\n", "user_id:token\tage:float\nu1\t3\n")
    with pytest.raises(DataError, match=r"toy.user: load_col\['user'\] = \['age'\] does not load the USER_ID_FIELD"):
        check_dataset_files(_config(tmp_path, load_col={**LOADED, "user": ["age"]}))
    assert _drop_warnings(caplog, _config(tmp_path, load_col={**LOADED, "user": []})) == []


def test_no_row_left_counts_the_rows_of_an_empty_id_too(tmp_path):
    """One row of an empty item id (RecBole drops it as missing) and one of a user the .user lacks: nothing is left,
    which the check only warned about; the run then failed on RecBole's empty-dataset error."""
    _dataset(tmp_path, "user_id:token\titem_id:token\nu1\t\nu9\ti1\n", "user_id:token\tage:float\nu1\t3\n")
    with pytest.raises(DataError, match=r"RecBole drops those 1 interactions \(filter_inter_by_user_or_item: True\), "
                                        r"and the rows with an empty id, which leaves none"):
        check_dataset_files(_config(tmp_path, load_col=LOADED))


def test_a_stray_carriage_return_is_found_when_only_the_header_ends_in_a_newline(tmp_path):
    """The header's line end was not looked at: with one row, cut by a bare \\r, the file passed and pandas read a
    phantom row."""
    item = tmp_path / "h.item"
    item.write_bytes(b"item_id:token\ttitle:token_seq\ni1\tMovie\rWith CR")
    with pytest.raises(DataError, match=r"h.item:2: a carriage return"):
        check_records(str(item))


def test_the_empty_dataset_error_names_the_side_file_filter(tmp_path):
    """RecBole's "Some feat is empty" became "no filter option set" while the side-file filter had dropped them."""
    from recbole_hnlm.data_checks import dataset_error

    _dataset(tmp_path, "user_id:token\titem_id:token\nu1\ti1\n", "user_id:token\tage:float\nu1\t3\n")
    error = dataset_error(_config(tmp_path, load_col=LOADED), ValueError("Some feat is empty, please check."))
    assert "filter_inter_by_user_or_item=True with " + str(tmp_path / "toy" / "toy.user") in str(error), error
    error = dataset_error(_config(tmp_path, load_col=LOADED, filter_inter_by_user_or_item=False),
                          ValueError("Some feat is empty, please check."))
    assert "(no filter option set)" in str(error), error
    # a load_col list naming none of the .user's fields: RecBole loads no such file, so it filters nothing
    error = dataset_error(_config(tmp_path, load_col=dict(LOADED, user=["gender"])),
                          ValueError("Some feat is empty, please check."))
    assert "toy.user" not in str(error) and "filter_inter_by_user_or_item=True with " in str(error), error


def test_the_drop_count_says_when_filters_before_it_may_lower_it(tmp_path, caplog):
    """RecBole removes duplicates (rm_dup_inter) and filters by value (val_interval) before its side-file filter, so
    the warning's count of the file's lines can exceed what it drops: the warning said "drops those 2" where RecBole
    dropped 1."""
    from recbole.data import create_dataset

    _dataset(tmp_path, "user_id:token\titem_id:token\nu1\ti1\nu9\ti1\nu9\ti1\nu1\ti2\n",
             "user_id:token\tage:float\nu1\t3\n")
    plain = _config(tmp_path, load_col=LOADED)
    said = _drop_warnings(caplog, plain)
    assert len(said) == 1 and "RecBole drops those 2 interactions (filter_inter_by_user_or_item: True)" in said[0]
    assert len(create_dataset(plain).inter_feat) == 2  # without rm_dup_inter the count is RecBole's
    deduplicated = _config(tmp_path, load_col=LOADED, rm_dup_inter="first")
    said = _drop_warnings(caplog, deduplicated)
    assert len(said) == 1 and ("RecBole drops those 2 interactions (filter_inter_by_user_or_item: True; counted in "
                               "the file: rm_dup_inter='first' removes some interactions before, so it may drop "
                               "fewer)") in said[0], said
    assert len(create_dataset(deduplicated).inter_feat) == 2  # 4 lines, a duplicate removed, then 1 dropped
