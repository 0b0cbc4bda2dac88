"""Importing a published train/test split (LightGCN adjacency or SELFRec pairs) as RecBole pre-split atomic files:
formats, the seeded validation hold-out, bad input, reruns, and that RecBole trains and tests on exactly the pairs
written."""
import json
import os

import numpy as np
import pytest

from recbole_hnlm.errors import DataError
from recbole_hnlm.split_import import (PARTS, detect_format, hold_out_validation, import_split, main, read_id_list,
                                       read_split_file)
from tests.conftest import ml100k_dir


def write(path, lines):
    path.write_text("".join(f"{line}\n" for line in lines))
    return str(path)


def read_inter(path):
    with open(path) as handle:
        assert handle.readline() == "user_id:token\titem_id:token\n"
        return [tuple(map(int, line.split("\t"))) for line in handle]


def ml100k_published_split(tmp_path, test_share=0.2, seed=0):
    """ml-100k cut into adjacency-format train.txt/test.txt, as LightGCN publishes Yelp2018."""
    rng = np.random.default_rng(seed)
    train, test = {}, {}
    with open(os.path.join(ml100k_dir(), "ml-100k.inter")) as handle:
        handle.readline()
        for line in handle:
            user, item = map(int, line.split("\t")[:2])
            (test if rng.random() < test_share else train).setdefault(user, []).append(item)
    paths = []
    for name, lists in (("train", train), ("test", test)):
        paths.append(write(tmp_path / f"{name}.txt", [" ".join(map(str, [u, *items])) for u, items in lists.items()]))
    return paths, train, test


def test_adjacency_and_pairs_read_the_same_pairs(tmp_path):
    adjacency = write(tmp_path / "adj.txt", ["0 5 7 9 11", "1 5", "2 3 4 5 6 7"])
    pairs = write(tmp_path / "pairs.txt", ["0 5 1", "0 7 1", "0 9 1", "0 11 1", "1 5 1", "2 3 1", "2 4 1", "2 5 1",
                                           "2 6 1", "2 7 1"])
    assert detect_format(adjacency) == "adjacency" and detect_format(pairs) == "pairs"
    assert read_split_file(adjacency).pairs == read_split_file(pairs).pairs == [
        (0, 5), (0, 7), (0, 9), (0, 11), (1, 5), (2, 3), (2, 4), (2, 5), (2, 6), (2, 7)]
    # a SELFRec file read as adjacency would make item 1 everyone's positive: the explicit format decides
    assert (1, 1) not in read_split_file(pairs, "pairs").pairs
    assert (0, 1) in read_split_file(pairs, "adjacency").pairs


def test_ambiguous_three_column_files_need_a_format(tmp_path):
    ambiguous = write(tmp_path / "amb.txt", ["0 5 7", "1 5 9", "2 3"])
    with pytest.raises(DataError, match="amb.txt.*--format pairs or --format adjacency"):
        detect_format(ambiguous)
    assert read_split_file(ambiguous, "adjacency").pairs == [(0, 5), (0, 7), (1, 5), (1, 9), (2, 3)]
    # a published test file is often short; its training file decides
    train = write(tmp_path / "train.txt", ["0 1 2 3 4", "1 2"])
    assert detect_format(train, ambiguous) == "adjacency"
    manifest = import_split("amb", train, ambiguous, str(tmp_path / "atomic"), valid_ratio=0.5)
    assert manifest["options"]["format"] == "adjacency" and manifest["counts"]["test_pairs"] == 5
    weighted = write(tmp_path / "weighted.txt", ["0 5 4.5", "1 5 3.0"])
    assert detect_format(weighted) == "pairs"
    # weighted pairs with one stray longer line were read as adjacency lists (the weight became an item)
    stray = write(tmp_path / "stray.txt", [f"{u} {u + 5} 1" for u in range(12)] + ["2 6 1 9"])
    with pytest.raises(DataError, match="stray.txt: 12 lines have three fields and only 1 more"):
        detect_format(stray)
    # two-field lines beside one 'user item item' line: its third column is trivially constant, and was taken for a
    # weight (item 9 dropped); constant weights are recognised only when every line has them
    mixed = write(tmp_path / "mixed.txt", ["0 1", "1 2", "7 3 9"])
    with pytest.raises(DataError, match=r"mixed.txt: every line has at most three fields \(1 have three\)"):
        detect_format(mixed)
    assert detect_format(write(tmp_path / "ones.txt", ["0 5 1", "1 5 1", "2 3 1"])) == "pairs"


@pytest.mark.parametrize("lines, fmt, message", [
    (["user item", "0 5"], "auto", r"bad.txt:1: user 'user' is not a non-negative integer id"),
    (["0 5", "1 x7"], "adjacency", r"bad.txt:2: item 'x7'"),
    (["0 5", "1 -3"], "adjacency", r"bad.txt:2: item '-3'"),
    (["0 5 1", "1 5 6 7"], "pairs", r"bad.txt:2: 4 fields; pairs format"),
    (["", "  "], "auto", r"bad.txt has no \(user, item\) pairs"),
    (["0 5", "1 \u00b2"], "adjacency", r"bad.txt:2: item '\u00b2'"),  # str.isdigit() is true for it
    (["0 5 7", "1 07"], "adjacency", r"bad.txt:2: item '07' has a leading zero"),  # '07' and '7' were one id
    (["0 5 x", "1 5 1"], "pairs", r"bad.txt:1: weight 'x' is not a number"),
    (["0 5 4 881250949", "1 7 3 881250950"], "auto", r"bad.txt: every line has 4 fields, like a table"),
])
def test_malformed_files_name_file_and_line(tmp_path, lines, fmt, message):
    path = write(tmp_path / "bad.txt", lines)
    with pytest.raises(DataError, match=message):
        read_split_file(path, fmt)


def test_duplicates_and_users_without_items_are_counted(tmp_path):
    source = read_split_file(write(tmp_path / "t.txt", ["0 5 5 7", "1", "0 7 9"]), "adjacency")
    assert source.pairs == [(0, 5), (0, 7), (0, 9)]
    assert source.duplicates == 2 and source.users_without_items == 1


def test_hold_out_partitions_each_user_and_is_seeded():
    rng = np.random.default_rng(3)
    pairs = [(user, int(item)) for user in range(200)
             for item in rng.choice(1000, size=int(rng.integers(1, 40)), replace=False)]
    train, valid = hold_out_validation(pairs, 0.1, seed=7)
    assert sorted(train + valid) == sorted(pairs) and not set(train) & set(valid)
    assert [p for p in pairs if p in set(train)] == train  # file order kept
    users = {user for user, _ in pairs}
    assert users == {user for user, _ in train}  # every user keeps a training pair
    singles = {user for user in users if sum(u == user for u, _ in pairs) == 1}
    assert singles and not singles & {user for user, _ in valid}
    assert abs(len(valid) / len(pairs) - 0.1) < 0.02
    assert hold_out_validation(pairs, 0.1, seed=7) == (train, valid)
    assert hold_out_validation(pairs, 0.1, seed=8)[1] != valid
    for ratio in (0.0, 1.0, -0.1):
        with pytest.raises(DataError, match="--valid_ratio must be in"):
            hold_out_validation(pairs, ratio, seed=7)


def test_import_writes_three_files_and_manifest_and_reruns_idempotently(tmp_path):
    (train_txt, test_txt), train, test = ml100k_published_split(tmp_path)
    manifest = import_split("pub", train_txt, test_txt, str(tmp_path / "atomic"), valid_ratio=0.1, seed=5)
    folder = tmp_path / "atomic" / "pub"
    written = {part: read_inter(folder / f"pub.{part}.inter") for part in PARTS}
    assert sorted(written["train"] + written["valid"]) == sorted((u, i) for u, items in train.items() for i in items)
    assert written["test"] == [(u, i) for u, items in test.items() for i in items]
    assert manifest == json.loads((folder / "pub.split.json").read_text())
    assert manifest["counts"]["valid_pairs"] == len(written["valid"]) and manifest["options"]["seed"] == 5
    assert manifest["sources"]["train"]["format"] == "adjacency" and len(manifest["sources"]["test"]["sha256"]) == 64
    assert not [name for name in os.listdir(folder) if ".tmp-" in name]

    before = {name: os.stat(folder / name).st_mtime_ns for name in os.listdir(folder)}
    assert import_split("pub", train_txt, test_txt, str(tmp_path / "atomic"), valid_ratio=0.1, seed=5) == manifest
    assert {name: os.stat(folder / name).st_mtime_ns for name in os.listdir(folder)} == before
    with pytest.raises(DataError, match="pub.split.json records other sources or options; pass --overwrite"):
        import_split("pub", train_txt, test_txt, str(tmp_path / "atomic"), valid_ratio=0.1, seed=6)
    assert read_inter(folder / "pub.valid.inter") == written["valid"]  # refused: nothing touched
    again = import_split("pub", train_txt, test_txt, str(tmp_path / "atomic"), valid_ratio=0.1, seed=6,
                         overwrite=True)
    assert again["options"]["seed"] == 6 and read_inter(folder / "pub.valid.inter") != written["valid"]


def test_bad_input_writes_nothing(tmp_path):
    good = write(tmp_path / "train.txt", ["0 1 2 3", "1 2 3"])
    bad = write(tmp_path / "test.txt", ["0 4", "1 oops"])
    with pytest.raises(DataError, match="test.txt:2"):
        import_split("pub", good, bad, str(tmp_path / "atomic"))
    with pytest.raises(DataError, match="cannot read .*missing.txt"):
        import_split("pub", good, str(tmp_path / "missing.txt"), str(tmp_path / "atomic"))
    with pytest.raises(DataError, match="--dataset must be a plain folder name"):
        import_split("../up", good, good, str(tmp_path / "atomic"))
    with pytest.raises(DataError, match="--dataset ml-100k is RecBole's bundled example.*another name"):
        import_split("ml-100k", good, good, str(tmp_path / "atomic"))
    gz = tmp_path / "test.txt.gz"
    gz.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(128, 200)))
    with pytest.raises(DataError, match=r"test.txt.gz:1: not UTF-8 text \(a compressed file"):
        import_split("pub", good, str(gz), str(tmp_path / "atomic"))
    assert not (tmp_path / "atomic").exists()
    late = tmp_path / "late.txt"  # the text reader decodes in blocks: the error came on the block's first line
    lines = "".join(f"{u} {u % 7} {u % 5 + 7}\n" for u in range(5000)).encode()
    late.write_bytes(lines.replace(b"3000 4", b"3000 \xff"))
    with pytest.raises(DataError, match=r"late.txt:3001: not UTF-8 text"):
        import_split("pub", str(late), good, str(tmp_path / "atomic"))
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(DataError, match="--out .*a-file: cannot write"):
        import_split("pub", good, write(tmp_path / "ok.txt", ["0 4", "1 4"]), str(tmp_path / "a-file"), valid="test")


def test_warnings_for_leaks_duplicates_cold_users_and_weights(tmp_path):
    train = write(tmp_path / "train.txt", ["0 1 4", "0 2 4", "0 1 4", "1 2 5"])
    test = write(tmp_path / "test.txt", ["0 1 1", "2 3 1"])
    manifest = import_split("w", train, test, str(tmp_path / "atomic"), file_format="pairs", valid_ratio=0.5)
    counts, warnings = manifest["counts"], " ".join(manifest["warnings"])
    assert counts["test_pairs_also_in_train"] == 1 and "easy hits" in warnings
    assert counts["duplicate_pairs_dropped"] == 1 and "1 repeated" in warnings
    assert counts["test_users_without_training_pairs"] == 1 and counts["test_items_without_training_pairs"] == 1
    assert "1 test users have no training pairs" in warnings and "1 test items have no training pairs" in warnings
    assert "train.txt: the third column (weights) varies" in warnings and "test.txt: the third" not in warnings


def test_command_line_exit_codes_and_run_hint(tmp_path, capsys):
    import shlex

    (train_txt, test_txt), _, _ = ml100k_published_split(tmp_path)
    out = str(tmp_path / "atomic files")  # the printed command quotes the space
    assert main(["--dataset", "pub", "--train", train_txt, "--test", test_txt, "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "--dataset=pub" in printed and "--benchmark_filename=['train','valid','test']" in printed
    command = shlex.split(printed.split("run: ", 1)[1])
    assert f"--data_path={out}" in command and "--benchmark_filename=['train','valid','test']" in command
    assert main(["--dataset", "pub", "--train", train_txt, "--test", test_txt, "--out", out, "--seed", "1"]) == 2
    assert "error: " in capsys.readouterr().err
    assert main(["--dataset", "pub", "--train", train_txt, "--test", test_txt, "--out", out, "--seed", "-1"]) == 2
    assert "error: --seed must be an integer >= 0, got -1" in capsys.readouterr().err


def test_recbole_trains_and_tests_on_exactly_the_imported_pairs(tmp_path, fast_config):
    """Through the plugin's Config and RecBole's data preparation, as a run builds them."""
    from recbole.data import create_dataset, data_preparation

    from recbole_hnlm.config import Config
    from recbole_hnlm.data_checks import check_dataset_files

    (train_txt, test_txt), _, _ = ml100k_published_split(tmp_path, test_share=0.3, seed=1)
    out = str(tmp_path / "atomic")
    import_split("pub", train_txt, test_txt, out)
    folder = os.path.join(out, "pub")
    options = dict(fast_config, dataset="pub", data_path=out, load_col={"inter": ["user_id", "item_id"]})
    with pytest.raises(FileNotFoundError, match=r"pre-split dataset .*--benchmark_filename=\['train','valid','test'\]"):
        check_dataset_files(Config(model="LightGCN", config_dict=options, command_line=False))
    config = Config(model="LightGCN", config_dict=dict(options, benchmark_filename=list(PARTS)), command_line=False)
    check_dataset_files(config)
    dataset = create_dataset(config)
    loaders = data_preparation(config, dataset)
    for part, loader in zip(PARTS, loaders):
        inter = loader.dataset.inter_feat
        users = dataset.id2token("user_id", inter["user_id"].numpy())
        items = dataset.id2token("item_id", inter["item_id"].numpy())
        assert sorted(zip(map(int, users), map(int, items))) == sorted(read_inter(os.path.join(folder,
                                                                                              f"pub.{part}.inter")))


def test_run_on_imported_split(tmp_path, fast_config):
    from recbole_hnlm.quick_start import run_recbole_hnlm

    (train_txt, test_txt), _, _ = ml100k_published_split(tmp_path)
    out = str(tmp_path / "atomic")
    import_split("pub", train_txt, test_txt, out)
    result = run_recbole_hnlm(model="MF", dataset="pub", config_dict=dict(
        fast_config, dataset="pub", data_path=out, sampler="DNS", benchmark_filename=list(PARTS),
        load_col={"inter": ["user_id", "item_id"]}))
    assert result["test_result"]["ndcg@20"] > 0.0 and np.isfinite(result["best_valid_score"])


def test_byte_order_mark_tabs_crlf_and_float_weights(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeff0 5 7\r\n1\t5\t9 \r\n\r\n2 3\r\n".encode("utf-8"))
    assert read_split_file(str(path), "adjacency").pairs == [(0, 5), (0, 7), (1, 5), (1, 9), (2, 3)]
    weights = read_split_file(write(tmp_path / "w.txt", ["0 5 1", "1 5 1.0", "2 5 1e0"]), "pairs")
    assert weights.weights == {1.0}  # the same weight however it is written: no "weights vary" warning


def test_partial_or_edited_outputs_are_never_up_to_date(tmp_path):
    (train_txt, test_txt), _, _ = ml100k_published_split(tmp_path)
    out = str(tmp_path / "atomic")
    folder = tmp_path / "atomic" / "pub"
    first = import_split("pub", train_txt, test_txt, out, seed=5)
    assert set(first["outputs"]) == set(PARTS)
    valid_5 = (folder / "pub.valid.inter").read_text()
    # an --overwrite killed after replacing some files: the manifest went first, so nothing passes as up to date
    import_split("pub", train_txt, test_txt, str(tmp_path / "other"), seed=6)
    (folder / "pub.split.json").unlink()
    (folder / "pub.valid.inter").write_text((tmp_path / "other" / "pub" / "pub.valid.inter").read_text())
    with pytest.raises(DataError, match="pub.train.inter exists without .*pub.split.json; pass --overwrite"):
        import_split("pub", train_txt, test_txt, out, seed=5)
    assert import_split("pub", train_txt, test_txt, out, seed=5, overwrite=True)["outputs"] == first["outputs"]
    assert (folder / "pub.valid.inter").read_text() == valid_5
    # a file edited by hand, or removed
    with open(folder / "pub.train.inter", "a") as handle:
        handle.write("1\t1\n")
    with pytest.raises(DataError, match="a split file changed since it was imported"):
        import_split("pub", train_txt, test_txt, out, seed=5)
    (folder / "pub.train.inter").unlink()
    with pytest.raises(DataError, match=r"pub.train.inter is missing"):
        import_split("pub", train_txt, test_txt, out, seed=5)
    # another source file: its digest differs
    import_split("pub", train_txt, test_txt, out, seed=5, overwrite=True)
    with open(train_txt, "a") as handle:
        handle.write("9999 1 2 3\n")
    with pytest.raises(DataError, match="records other sources or options"):
        import_split("pub", train_txt, test_txt, out, seed=5)
    (folder / "pub.split.json").write_text("{not json")
    with pytest.raises(DataError, match="pub.split.json is unreadable"):
        import_split("pub", train_txt, test_txt, out, seed=5)


def test_drop_test_pairs_in_train_and_papers_protocol(tmp_path):
    train = write(tmp_path / "train.txt", ["0 1 2 3 4", "1 2 3 4 5", "2 3 4"])
    test = write(tmp_path / "test.txt", ["0 5 1", "1 6", "2 7 8"])  # (0, 1) is also a training pair
    kept = import_split("a", train, test, str(tmp_path / "atomic"), valid="test")
    folder = tmp_path / "atomic" / "a"
    assert read_inter(folder / "a.valid.inter") == read_inter(folder / "a.test.inter") == [
        (0, 5), (0, 1), (1, 6), (2, 7), (2, 8)]
    assert len(read_inter(folder / "a.train.inter")) == 10  # the whole training file trains
    assert kept["options"] == {"valid": "test", "format": "adjacency", "drop_test_pairs_in_train": False}
    assert "picked on the test split" in " ".join(kept["warnings"])
    dropped = import_split("b", train, test, str(tmp_path / "atomic"), drop_test_pairs_in_train=True,
                           valid_ratio=0.5)
    assert read_inter(tmp_path / "atomic" / "b" / "b.test.inter") == [(0, 5), (1, 6), (2, 7), (2, 8)]
    assert dropped["counts"]["test_pairs_in_train_dropped"] == 1
    with pytest.raises(DataError, match="--valid must be one of"):
        import_split("c", train, test, str(tmp_path / "atomic"), valid="train")
    with pytest.raises(DataError, match="validation hold-out of .*train1.txt is empty .*--valid test"):
        import_split("c", write(tmp_path / "train1.txt", ["0 1", "1 2", "2 3"]), test, str(tmp_path / "atomic"),
                     file_format="adjacency")
    with pytest.raises(DataError, match="nothing is left to test on"):
        import_split("c", train, train, str(tmp_path / "atomic"), drop_test_pairs_in_train=True)


def test_recbole_ranks_test_items_that_are_training_or_validation_items(tmp_path, fast_config):
    """What the warnings and --valid test rely on: RecBole's test ranking masks a user's used items *minus* the
    test positives, so a test pair that is also a training (or validation) pair is ranked, not masked."""
    from recbole.data import create_dataset, data_preparation

    from recbole_hnlm.config import Config

    (train_txt, test_txt), train, test = ml100k_published_split(tmp_path, test_share=0.3, seed=2)
    user = next(iter(test))
    leaked = train[user][0]
    with open(test_txt, "a") as handle:
        handle.write(f"{user} {leaked}\n")
    out = str(tmp_path / "atomic")
    import_split("pub", train_txt, test_txt, out, valid="test")
    config = Config(model="LightGCN", command_line=False, config_dict=dict(
        fast_config, dataset="pub", data_path=out, benchmark_filename=list(PARTS),
        load_col={"inter": ["user_id", "item_id"]}))
    dataset = create_dataset(config)
    _, valid_data, test_data = data_preparation(config, dataset)
    uid = int(dataset.token2id("user_id", str(user)))
    history = set(dataset.id2token("item_id", test_data.uid2history_item[uid].numpy()).astype(int).tolist())
    positives = set(dataset.id2token("item_id", test_data.uid2positive_item[uid].numpy()).astype(int).tolist())
    assert leaked in positives and leaked not in history  # ranked: an easy hit
    assert set(test[user]) <= positives and not set(test[user]) & history  # validation = test masks nothing
    assert set(train[user]) - {leaked} <= history


def test_presplit_duplicate_warning_counts_training_repeats_and_leaks_not_valid_equal_test(tmp_path, fast_config,
                                                                                            caplog):
    from recbole.data import create_dataset

    from recbole_hnlm.config import Config
    from recbole_hnlm.data_checks import check_dataset_files, check_duplicate_interactions

    folder = tmp_path / "hand"
    folder.mkdir()
    header = "user_id:token\titem_id:token\n"
    rows = {"train": ["1\t1", "1\t2", "1\t2", "2\t3", "2\t4", "3\t5", "3\t6"], "test": ["1\t1", "2\t5", "3\t7"]}
    rows["valid"] = rows["test"]  # the papers' protocol: not a problem in itself
    for part, lines in rows.items():
        (folder / f"hand.{part}.inter").write_text(header + "".join(f"{line}\n" for line in lines))
    config = Config(model="MF", command_line=False, config_dict=dict(
        fast_config, dataset="hand", data_path=str(tmp_path), benchmark_filename=list(PARTS),
        load_col={"inter": ["user_id", "item_id"]}))
    with caplog.at_level("WARNING", logger="recbole_hnlm.data_checks"):
        check_duplicate_interactions(config, create_dataset(config))
    assert "hand.train.inter repeats 1 (user, item) rows" in caplog.text
    assert "hand.valid.inter has 1 (user, item) pairs that are also training pairs" in caplog.text
    assert "hand.test.inter has 1 (user, item) pairs" in caplog.text
    assert "rm_dup_inter included" in caplog.text and "Set rm_dup_inter" not in caplog.text
    assert "hand.test.inter: 0 users and 1 items that" in caplog.text  # item 7 (cold, or written otherwise)
    caplog.clear()
    for part in PARTS:
        (folder / f"hand.{part}.inter").write_text(header + "".join(
            f"{line}\n" for line in sorted(set(rows[part]) - ({"1\t1"} if part != "train" else set()))))
    with caplog.at_level("WARNING", logger="recbole_hnlm.data_checks"):
        check_duplicate_interactions(config, create_dataset(config))
    assert "occur" not in caplog.text and "repeats" not in caplog.text and "also training" not in caplog.text
    (folder / "hand.inter").write_text(header + "1\t1\n")
    (folder / "hand.valid.inter").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing .*hand.valid.inter\. .*hand.inter exists: drop "
                                                r"--benchmark_filename.*holds hand.train.inter, hand.valid.inter"):
        check_dataset_files(config)


def test_items_only_in_validation_that_are_also_cold_test_items_are_counted_once(tmp_path):
    """"2 test items have no training pairs" then "2 items have all their training pairs in the validation
    hold-out" read as four items when they were the same two."""
    train = [f"{u} {i}" for u in range(1, 21) for i in (1, 2, 3)] + ["1 8", "2 9"]
    test = ["3 8", "4 9", "5 1"]
    manifest = import_split("cold", write(tmp_path / "train.txt", train), write(tmp_path / "test.txt", test),
                            str(tmp_path / "atomic"), file_format="pairs", valid_ratio=0.9, seed=0)
    only_valid = manifest["counts"]["items_only_in_validation"]
    cold = manifest["counts"]["test_items_without_training_pairs"]
    assert only_valid == cold == 2, manifest["counts"]  # seed 0 holds out both pairs of 8 and 9: cold test items
    assert f"{only_valid} items have all their training pairs in the validation hold-out, so the model never trains " \
           f"on them ({cold} of them among the test items above)." in manifest["warnings"], manifest["warnings"]


def test_a_user_with_every_item_is_named_at_import_and_at_the_run(tmp_path, fast_config):
    """RecBole's sampler stops a run on a user who interacted with every item, in a traceback naming neither the user
    nor a remedy that works for pre-split files (its hint is a filter, which it never applies to them)."""
    from recbole_hnlm.quick_start import run_recbole_hnlm

    rng = np.random.default_rng(1)
    train, test = [], []
    for user in range(1, 41):
        items = list(range(1, 31)) if user == 7 else rng.choice(np.arange(1, 31), 12, replace=False).tolist()
        train += [f"{user} {item}" for item in items[:-2]]
        test += [f"{user} {item}" for item in items[-2:]]
    manifest = import_split("full", write(tmp_path / "train.txt", train), write(tmp_path / "test.txt", test),
                            str(tmp_path / "atomic"), file_format="pairs")
    assert any("1 user (7) interacted with every item of the files" in w for w in manifest["warnings"])
    users = write(tmp_path / "user_list.txt", ["org_id remap_id"] + [f"alice{u} {u}" for u in range(1, 41)])
    named = import_split("named", str(tmp_path / "train.txt"), str(tmp_path / "test.txt"), str(tmp_path / "atomic"),
                         file_format="pairs", user_list=users)  # the warning names the user as the files do
    assert any("1 user (alice7) interacted with every item" in w for w in named["warnings"]), named["warnings"]
    with pytest.raises(DataError, match=r"Dataset 'full': user '7' interacted with every one of the 30 items, so no "
                                        r"negative item can be drawn .* RecBole filters no pre-split files: remove"):
        run_recbole_hnlm(model="MF", dataset="full", config_dict=dict(
            fast_config, dataset="full", data_path=str(tmp_path / "atomic"), benchmark_filename=list(PARTS),
            load_col={"inter": ["user_id", "item_id"]}, topk=[5], valid_metric="NDCG@5"))
    inter = tmp_path / "plain" / "plain"  # the same pairs as one .inter file: RecBole's filter is the remedy
    inter.mkdir(parents=True)
    (inter / "plain.inter").write_text("user_id:token\titem_id:token\n" + "".join(
        line.replace(" ", "\t") + "\n" for line in train + test))
    with pytest.raises(DataError, match=r"user '7' .* user_inter_num_interval=\"\[0,30\)\""):
        run_recbole_hnlm(model="MF", dataset="plain", config_dict=dict(
            fast_config, dataset="plain", data_path=str(tmp_path / "plain"), load_col={"inter": ["user_id", "item_id"]},
            topk=[5], valid_metric="NDCG@5"))
    result = run_recbole_hnlm(model="MF", dataset="plain", config_dict=dict(  # and it works
        fast_config, dataset="plain", data_path=str(tmp_path / "plain"), load_col={"inter": ["user_id", "item_id"]},
        topk=[5], valid_metric="NDCG@5", user_inter_num_interval="[0,30)", epochs=1))
    assert np.isfinite(result["best_valid_score"])


def test_id_lists_put_the_original_ids_back(tmp_path, capsys, caplog):
    """LightGCN's files number users and items 0..n-1 and ship user_list.txt/item_list.txt (org_id remap_id): the
    import wrote the numbers, so the ids matched no .item file and HNLMRec's LLM stages had no text."""
    (train_txt, test_txt), train, test = ml100k_published_split(tmp_path)
    users = sorted(set(train) | set(test))
    items = sorted({i for lists in (train, test) for items in lists.values() for i in items})
    user_list = write(tmp_path / "user_list.txt", ["org_id remap_id"] + [f"U{u:05d}x {u}" for u in users])
    item_list = write(tmp_path / "item_list.txt", ["org_id remap_id freebase_id"]
                      + [f"B00{i:07d} {i} m.0{i}" for i in items])
    out = str(tmp_path / "atomic")
    plain = import_split("plain", train_txt, test_txt, out, seed=5)
    named = import_split("named", train_txt, test_txt, out, seed=5, user_list=user_list, item_list=item_list)
    assert named["counts"] == plain["counts"] and named["sources"]["item_list"]["format"] == "id list"

    def rows(dataset, part):
        with open(os.path.join(out, dataset, f"{dataset}.{part}.inter")) as handle:
            assert handle.readline() == "user_id:token\titem_id:token\n"
            return [tuple(line.rstrip("\n").split("\t")) for line in handle]

    for part in PARTS:  # the same pairs (the hold-out too), in the original ids
        assert rows("named", part) == [(f"U{int(u):05d}x", f"B00{int(i):07d}") for u, i in rows("plain", part)]
    assert import_split("named", train_txt, test_txt, out, seed=5, user_list=user_list, item_list=item_list) == named
    with pytest.raises(DataError, match="records other sources or options"):  # the lists are part of the import
        import_split("named", train_txt, test_txt, out, seed=5)
    # the LLM stages join the original ids to the dataset's .item file
    from recbole_hnlm.llm.dataset_text import DatasetText

    first_item = rows("named", "train")[0][1]
    write(tmp_path / "atomic" / "named" / "named.item", ["item_id:token\ttitle:token_seq", f"{first_item}\tLEGO Bear"])
    text = DatasetText(out, "named", None, inter_parts=list(PARTS))
    assert text.items[first_item].title == "LEGO Bear"
    # one user list only; lists that do not fit the files
    import_split("users", train_txt, test_txt, out, seed=5, user_list=user_list)
    user, item = rows("plain", "test")[0]
    assert rows("users", "test")[0] == (f"U{int(user):05d}x", item)
    short = write(tmp_path / "short.txt", ["org_id remap_id"] + [f"B{i} {i}" for i in items[:-2]])
    with pytest.raises(DataError, match=r"short.txt: no org_id for 2 item id\(s\) of the split, e\.g\. "):
        import_split("bad", train_txt, test_txt, out, item_list=short)
    twice = write(tmp_path / "twice.txt", ["org_id remap_id", "A 0", "A 1"])
    with pytest.raises(DataError, match="twice.txt:3: org_id 'A' is listed twice"):
        import_split("bad", train_txt, test_txt, out, item_list=twice)
    swapped = write(tmp_path / "swapped.txt", ["org_id remap_id", "0 A"])
    with pytest.raises(DataError, match="swapped.txt:2: expected 'org_id remap_id' .* got '0 A'"):
        import_split("bad", train_txt, test_txt, out, item_list=swapped)
    headless = write(tmp_path / "headless.txt", ["A x"] + [f"B{i} {i}" for i in items])  # not taken for a header
    with pytest.raises(DataError, match="headless.txt:1: expected 'org_id remap_id'"):
        import_split("bad", train_txt, test_txt, out, item_list=headless)
    assert not os.path.exists(os.path.join(out, "bad"))
    caplog.set_level("WARNING")
    import_split("wrong", train_txt, test_txt, out, user_list=item_list)  # the item list, longer than the users
    assert f"{item_list} lists {len(items)} ids, the split has {len(users)} users" in caplog.text
    assert main(["--dataset", "cli", "--train", train_txt, "--test", test_txt, "--out", out,
                 "--item_list", item_list, "--user_list", user_list]) == 0
    assert rows("cli", "test")[0][1].startswith("B00") and rows("cli", "test")[0][0].startswith("U")


def test_id_list_sources_are_recorded_and_bad_lists_named(tmp_path):
    """A list is a source of the import (its path and digest): one edited in place makes the import stale; a list
    that cannot be one (a remap_id twice, leading zeros, a header again, no ids) names the file and line."""
    from recbole_hnlm.files import file_sha256

    (train_txt, test_txt), train, test = ml100k_published_split(tmp_path)
    users = sorted(set(train) | set(test))
    user_list = write(tmp_path / "user_list.txt", ["org_id remap_id"] + [f"U{u} {u}" for u in users])
    out = str(tmp_path / "atomic")
    manifest = import_split("m", train_txt, test_txt, out, user_list=user_list)
    assert manifest["sources"]["user_list"] == {"path": os.path.abspath(user_list), "sha256": file_sha256(user_list),
                                                "format": "id list"}
    write(tmp_path / "user_list.txt", ["org_id remap_id"] + [f"V{u} {u}" for u in users])  # same path, other ids
    with pytest.raises(DataError, match="records other sources or options"):
        import_split("m", train_txt, test_txt, out, user_list=user_list)
    for lines, message in ((["org_id remap_id", "A 0", "B 0"], "bad.txt:3: remap_id 0 is listed twice"),
                           (["org_id remap_id", "A 01"], "leading zero"),
                           (["org_id remap_id", "A 0", "org_id remap_id"], r"bad.txt:3: expected 'org_id remap_id'"),
                           (["org_id remap_id"], "no ids listed"),
                           (["org_id remap_id", 'A 0', '"B 1'], "bad.txt:3: org_id '\"B' starts with a double quote"),
                           (["org_id remap_id", "NA 0"], "bad.txt:2: org_id 'NA' is what RecBole's reader .* "
                                                         "'NA_user'")):
        bad = write(tmp_path / "bad.txt", lines)
        with pytest.raises(DataError, match=message):
            import_split("bad", train_txt, test_txt, out, user_list=bad)
    assert not os.path.exists(os.path.join(out, "bad"))


def test_items_only_in_validation_and_no_cold_test_item_name_no_count(tmp_path):
    train = [f"{u} {i}" for u in range(1, 21) for i in (1, 2, 3)] + ["1 8", "2 9"]
    test = ["5 1", "6 2"]  # items 8 and 9 are no test items
    manifest = import_split("warm", write(tmp_path / "train.txt", train), write(tmp_path / "test.txt", test),
                            str(tmp_path / "atomic"), file_format="pairs", valid_ratio=0.9, seed=0)
    assert manifest["counts"]["items_only_in_validation"] == 2, manifest["counts"]  # as in the neighbouring test
    assert manifest["counts"]["test_items_without_training_pairs"] == 0
    assert "2 items have all their training pairs in the validation hold-out, so the model never trains on them." \
        in manifest["warnings"], manifest["warnings"]
    assert not any("of them among the test items" in w for w in manifest["warnings"]), manifest["warnings"]


def test_an_org_id_with_a_quote_inside_is_kept(tmp_path):
    """Only a leading double quote is a CSV quote to RecBole's reader (pandas reads '12"Inch' as written, and the
    run's checks pass it): such ids are imported (mutant: any quote in the id refused)."""
    path = write(tmp_path / "item_list.txt", ["org_id remap_id", '12"Inch 0', 'B" 1'])
    assert read_id_list(path, "item") == {0: '12"Inch', 1: 'B"'}


def test_a_full_disk_names_the_split_file_it_could_not_write(tmp_path, capsys):
    """A write that failed for lack of room said "choose a writable folder" about a writable folder; it names the
    file and the cause now, exit status 1 (not bad input), and no temporary file stays."""
    import resource

    (train_txt, test_txt), _, _ = ml100k_published_split(tmp_path)
    out = tmp_path / "atomic"
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, limits[1]))  # ml-100k's train file is larger
    try:
        code = main(["--dataset", "pub", "--train", train_txt, "--test", test_txt, "--out", str(out)])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
    err = capsys.readouterr().err
    assert code == 1
    assert f"error: {out / 'pub' / 'pub.train.inter'}: cannot be written (File too large)" in err
    assert "writable folder" not in err
    assert not [name for name in os.listdir(out / "pub") if ".tmp-" in name]
