"""Gaps of tests/test_split_import.py found by a mutation audit of recbole_hnlm/split_import.py: format detection at
its boundaries, the hold-out's promises (every user keeps a pair, id order), the manifest's counts, the options an
up-to-date rerun compares, the dataset name, and that the command line passes each option on. Small synthetic files
only."""
import json
import logging
import os
import shlex

import pytest

from recbole_hnlm.errors import DataError
from recbole_hnlm.split_import import PARTS, detect_format, hold_out_validation, import_split, main
from test_split_import import read_inter, write


def test_nine_three_field_lines_to_one_longer_is_the_ambiguity_threshold(tmp_path):
    """Nine 'user item weight'-looking lines to one longer line is ambiguous (mutants: '>' for '>=', 10 for 9)."""
    nine = write(tmp_path / "nine.txt", [f"{u} {u + 5} {u + 6}" for u in range(9)] + ["9 1 2 3"])
    with pytest.raises(DataError, match="nine.txt: 9 lines have three fields and only 1 more"):
        detect_format(nine)
    eight = write(tmp_path / "eight.txt", [f"{u} {u + 5} {u + 6}" for u in range(8)] + ["9 1 2 3"])
    assert detect_format(eight) == "adjacency"


def test_a_third_column_with_any_non_integer_is_a_weight(tmp_path):
    """Integer and decimal weights side by side are pairs (mutant: only when no third column is an integer)."""
    assert detect_format(write(tmp_path / "w.txt", ["0 5 1", "1 5 4.5", "2 6 3"])) == "pairs"


def test_every_user_keeps_a_training_pair_at_a_high_ratio():
    """Users with a single pair keep it whatever the ratio (mutant: a single pair held out with probability r)."""
    pairs = [(user, 1) for user in range(300)] + [(1000 + user, item) for user in range(5) for item in range(4)]
    train, valid = hold_out_validation(pairs, 0.9, seed=0)
    assert {user for user, _ in train} == {user for user, _ in pairs}
    assert valid and all(user >= 1000 for user, _ in valid)


def test_hold_out_does_not_depend_on_the_order_of_users_in_the_file():
    """Users are visited in id order (docstring), so listing the users in another order holds out the same pairs."""
    pairs = [(user, item) for user in range(40) for item in range(user % 7 + 2)]
    by_id = hold_out_validation(pairs, 0.3, seed=11)[1]
    reversed_users = [pair for user in reversed(range(40)) for pair in pairs if pair[0] == user]
    assert set(hold_out_validation(reversed_users, 0.3, seed=11)[1]) == set(by_id)


def _count_files(tmp_path):
    # training file: user 3 lists no item, (1, 3) repeats; every user has two pairs, so a 0.5 hold-out takes one each
    train = write(tmp_path / "train.txt", ["0 1 2", "1 1 3 3", "2 2 4", "3"])
    # test file: (0, 1) and (0, 2) are training pairs, (0, 5) repeats, user 4 and items 5, 6 are test-only, user 5
    # lists no item
    test = write(tmp_path / "test.txt", ["0 1 2 5", "0 5", "4 6", "5"])
    return train, test


def test_manifest_counts_users_items_leaks_repeats_and_empty_users_of_both_files(tmp_path):
    train, test = _count_files(tmp_path)
    manifest = import_split("c", train, test, str(tmp_path / "atomic"), file_format="adjacency", valid_ratio=0.5)
    counts = manifest["counts"]
    assert counts["train_pairs"] == counts["valid_pairs"] == 3 and counts["test_pairs"] == 4
    assert counts["users"] == 4  # 0, 1, 2 and the test-only 4 (3 and 5 have no pair)
    assert counts["items"] == 6  # 1-4 and the test-only 5, 6
    assert counts["test_users"] == 2 and counts["test_users_without_training_pairs"] == 1
    # one of (0, 1), (0, 2) is in the validation hold-out: both are still pairs of the training file
    assert counts["test_pairs_also_in_train"] == 2
    assert counts["duplicate_pairs_dropped"] == 2 and counts["users_listed_without_items"] == 2
    assert "2 repeated (user, item) pairs were dropped (1 in " in " ".join(manifest["warnings"])


def test_dropped_test_pairs_are_warned_about(tmp_path):
    train, test = _count_files(tmp_path)
    manifest = import_split("d", train, test, str(tmp_path / "atomic"), file_format="adjacency", valid_ratio=0.5,
                            drop_test_pairs_in_train=True)
    assert manifest["counts"]["test_pairs_in_train_dropped"] == 2
    assert "2 test pairs that are also training pairs were dropped from the test file." in manifest["warnings"]
    assert read_inter(tmp_path / "atomic" / "d" / "d.test.inter") == [(0, 5), (4, 6)]


def test_valid_test_copies_the_test_file_as_written_after_dropping(tmp_path):
    """--valid test with --drop_test_pairs_in_train: the validation file is the written test file (mutant: the
    test file before dropping)."""
    train = write(tmp_path / "train.txt", ["0 1 2 3 4", "1 2 3 4 5"])
    test = write(tmp_path / "test.txt", ["0 5 1", "1 6"])
    import_split("v", train, test, str(tmp_path / "atomic"), valid="test", drop_test_pairs_in_train=True)
    folder = tmp_path / "atomic" / "v"
    assert read_inter(folder / "v.valid.inter") == read_inter(folder / "v.test.inter") == [(0, 5), (1, 6)]


def test_the_training_file_alone_does_not_decide_the_format(tmp_path):
    """A training file of two-field lines reads the same in both formats; the test file's lists decide (mutant:
    detected on the training file only, so the test file was read as pairs and refused)."""
    train = write(tmp_path / "train.txt", ["0 1", "1 2", "2 3", "0 4", "1 5", "2 6"])
    test = write(tmp_path / "test.txt", ["0 7 8 9", "1 7", "2 8 9"])
    manifest = import_split("f", train, test, str(tmp_path / "atomic"), valid_ratio=0.5)
    assert manifest["options"]["format"] == "adjacency" and manifest["counts"]["test_pairs"] == 6


def test_another_valid_ratio_is_not_up_to_date(tmp_path):
    train = write(tmp_path / "train.txt", [f"{u} " + " ".join(str(i) for i in range(1, 11)) for u in range(20)])
    test = write(tmp_path / "test.txt", [f"{u} {11 + u % 3}" for u in range(20)])
    out = str(tmp_path / "atomic")
    import_split("r", train, test, out, valid_ratio=0.1)
    valid = read_inter(tmp_path / "atomic" / "r" / "r.valid.inter")
    with pytest.raises(DataError, match="records other sources or options"):
        import_split("r", train, test, out, valid_ratio=0.3)
    assert read_inter(tmp_path / "atomic" / "r" / "r.valid.inter") == valid
    assert import_split("r", train, test, out, valid_ratio=0.3, overwrite=True)["options"]["valid_ratio"] == 0.3


@pytest.mark.parametrize("name", [".", "..", ".hidden"])
def test_dataset_names_starting_with_a_dot_are_refused(tmp_path, name):
    """'..' wrote '....train.inter' next to --out, '.' wrote into --out itself (mutant: the dot check dropped)."""
    train = write(tmp_path / "train.txt", ["0 1 2 3", "1 2 3 4"])
    test = write(tmp_path / "test.txt", ["0 4", "1 5"])
    out = tmp_path / "out" / "sub"
    with pytest.raises(DataError, match="--dataset must be a plain folder name"):
        import_split(name, train, test, str(out), valid="test")
    assert not (tmp_path / "out").exists()
    assert sorted(os.listdir(tmp_path)) == ["test.txt", "train.txt"]


def test_a_manifest_that_is_not_an_object_is_named(tmp_path):
    train = write(tmp_path / "train.txt", ["0 1 2 3", "1 2 3 4"])
    test = write(tmp_path / "test.txt", ["0 4", "1 5"])
    out = str(tmp_path / "atomic")
    import_split("m", train, test, out, valid="test")
    (tmp_path / "atomic" / "m" / "m.split.json").write_text("[]")
    with pytest.raises(DataError, match=r"m.split.json is not a split manifest; pass --overwrite"):
        import_split("m", train, test, out, valid="test")


def test_command_line_passes_every_option_on(tmp_path, capsys):
    """Each option of the command line reaches the import (mutants: --format, --valid, --valid_ratio,
    --drop_test_pairs_in_train, --overwrite dropped; --seed 0 refused; the printed counts swapped)."""
    # every line has two or three integer fields: --format auto refuses these files
    train = write(tmp_path / "train.txt", ["0 1 2", "0 3 8", "1 2 3", "1 4", "2 3 4", "2 1"])
    test = write(tmp_path / "test.txt", ["0 5 1", "1 6", "2 7"])  # (0, 1) is a training pair
    out = str(tmp_path / "atomic")
    folder = tmp_path / "atomic" / "cli"
    base = ["--dataset", "cli", "--train", train, "--test", test, "--out", out, "--format", "adjacency",
            "--drop_test_pairs_in_train"]
    assert main(base + ["--valid", "test", "--seed", "0"]) == 0, capsys.readouterr().err
    assert read_inter(folder / "cli.valid.inter") == read_inter(folder / "cli.test.inter") == [(0, 5), (1, 6), (2, 7)]
    assert len(read_inter(folder / "cli.train.inter")) == 10
    assert "train 10, valid 3, test 3 pairs" in capsys.readouterr().out

    assert main(base + ["--valid_ratio", "0.5", "--seed", "3"]) == 2  # other options: refused without --overwrite
    assert "records other sources or options" in capsys.readouterr().err
    assert main(base + ["--valid_ratio", "0.5", "--seed", "3", "--overwrite"]) == 0, capsys.readouterr().err
    manifest = json.loads((folder / "cli.split.json").read_text())
    assert manifest["options"] == {"valid": "holdout", "valid_ratio": 0.5, "seed": 3, "format": "adjacency",
                                   "drop_test_pairs_in_train": True}
    rows = {part: len(read_inter(folder / f"cli.{part}.inter")) for part in PARTS}
    assert rows["train"] + rows["valid"] == 10 and rows["valid"] >= 4 and rows["test"] == 3
    assert f"train {rows['train']}, valid {rows['valid']}, test 3 pairs" in capsys.readouterr().out


def _small_files(tmp_path):
    return (write(tmp_path / "train.txt", ["0 1 2 3", "1 2 3 4"]), write(tmp_path / "test.txt", ["0 4", "1 5"]))


def test_a_failed_write_names_the_file_in_the_way_not_a_temporary_one(tmp_path):
    """A folder where a split file goes: the error named ``<file>.tmp-<pid>-...`` (gone by then)."""
    train, test = _small_files(tmp_path)
    out = str(tmp_path / "atomic")
    import_split("w", train, test, out, valid="test")
    target = tmp_path / "atomic" / "w" / "w.valid.inter"
    target.unlink()
    target.mkdir()
    with pytest.raises(DataError) as error:
        import_split("w", train, test, out, valid="test", overwrite=True)
    assert f"cannot write {target} (" in str(error.value) and ".tmp-" not in str(error.value)
    assert not [name for name in os.listdir(target.parent) if ".tmp-" in name]


def test_overwrite_over_an_unremovable_manifest_is_one_error(tmp_path):
    """The advice of an unreadable manifest (``--overwrite``) ended in a traceback when it could not be removed."""
    train, test = _small_files(tmp_path)
    (tmp_path / "atomic" / "u" / "u.split.json").mkdir(parents=True)
    with pytest.raises(DataError, match="u.split.json is unreadable .*pass --overwrite"):
        import_split("u", train, test, str(tmp_path / "atomic"), valid="test")
    with pytest.raises(DataError, match=r"cannot write .*u.split.json \("):
        import_split("u", train, test, str(tmp_path / "atomic"), valid="test", overwrite=True)


def test_the_printed_run_command_quotes_the_dataset_name(tmp_path, capsys):
    train, test = _small_files(tmp_path)
    assert main(["--dataset", "my data", "--train", train, "--test", test, "--out", str(tmp_path / "o"),
                 "--valid", "test"]) == 0
    command = shlex.split(capsys.readouterr().out.split("run: ", 1)[1])
    assert "--dataset=my data" in command


def test_a_hand_edited_manifest_is_refused_with_the_remedy(tmp_path):
    train, test = _small_files(tmp_path)
    out = str(tmp_path / "atomic")
    import_split("h", train, test, out, valid="test")
    manifest = tmp_path / "atomic" / "h" / "h.split.json"
    edited = json.loads(manifest.read_text())
    edited["sources"] = {"train": "x"}
    manifest.write_text(json.dumps(edited))
    with pytest.raises(DataError, match="records other sources or options; pass --overwrite"):
        import_split("h", train, test, out, valid="test")


def test_hold_out_options_with_valid_test_are_warned_about(tmp_path, caplog):
    train, test = _small_files(tmp_path)
    with caplog.at_level(logging.WARNING):
        assert main(["--dataset", "t", "--train", train, "--test", test, "--out", str(tmp_path / "o"),
                     "--valid", "test", "--valid_ratio", "0.3"]) == 0
    assert "--valid_ratio: not used with --valid test" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main(["--dataset", "t2", "--train", train, "--test", test, "--out", str(tmp_path / "o"),
                     "--valid", "test"]) == 0
    assert "not used" not in caplog.text


@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_a_bad_seed_from_python_is_named(tmp_path, seed):
    train, test = _small_files(tmp_path)
    with pytest.raises(DataError, match="--seed must be an integer >= 0"):
        import_split("s", train, test, str(tmp_path / "o"), seed=seed)
    assert not (tmp_path / "o").exists()
