"""python -m recbole_hnlm.recommend: top-k lists of a trained run, checked against the model's own embeddings."""
import os

import unicodedata

import pytest
import torch

from recbole_hnlm.load import load_data_and_model
from recbole_hnlm.quick_start import run_recbole_hnlm
from recbole_hnlm.recommend import main


@pytest.fixture
def checkpoint(fast_config, tmp_path):
    result = run_recbole_hnlm(model="LightGCN", config_dict={**fast_config, "sampler": "RNS",
                                                             "checkpoint_dir": str(tmp_path / "run")})
    return result["checkpoint"]


def _read(path):
    with open(path, encoding="utf-8") as f:
        header = f.readline()
        rows = [line.rstrip("\n").split("\t") for line in f]
    return header, rows


def _interactions(ml_slice):
    """``{user token: set of item tokens}`` of every interaction in the slice's .inter file."""
    data_path, name = ml_slice
    seen = {}
    with open(os.path.join(data_path, name, f"{name}.inter"), encoding="utf-8") as f:
        next(f)
        for line in f:
            user, item = line.split("\t")[:2]
            seen.setdefault(user, set()).add(item)
    return seen


def _expected(checkpoint, user_tokens, k, seen):
    """The top-k item tokens per user from the pooled embeddings' dot products, leaving out ``seen`` items."""
    _, model, dataset, *_ = load_data_and_model(checkpoint)
    user_e, item_e = model.forward()
    expected = {}
    for token in user_tokens:
        uid = int(dataset.token2id(dataset.uid_field, token))
        score = (user_e[uid] @ item_e.T).detach().clone()
        score[0] = -torch.inf
        for item in seen.get(token, ()):
            score[int(dataset.token2id(dataset.iid_field, item))] = -torch.inf
        expected[token] = list(dataset.id2token(dataset.iid_field, score.topk(k).indices.numpy()))
    return expected


def test_recommendations_leave_out_seen_items_and_follow_the_scores(checkpoint, ml_slice, tmp_path, capsys):
    out = tmp_path / "recs.tsv"
    assert main(["--checkpoint", checkpoint, "--out", str(out), "--k", "5", "--users", "1,2,3"]) == 0
    header, rows = _read(out)
    assert header == "user_id\trank\titem_id\tscore\n"
    seen = _interactions(ml_slice)
    expected = _expected(checkpoint, ["1", "2", "3"], 5, seen)
    for user in ("1", "2", "3"):
        mine = [row for row in rows if row[0] == user]
        assert [int(row[1]) for row in mine] == [1, 2, 3, 4, 5]
        assert [row[2] for row in mine] == expected[user]
        assert not {row[2] for row in mine} & seen[user]  # training, validation and test items all left out
        scores = [float(row[3]) for row in mine]
        assert scores == sorted(scores, reverse=True)
    assert "15 recommendations for 3 users (at most 5 each)" in capsys.readouterr().out


def test_every_user_and_seen_items_kept_on_request(checkpoint, ml_slice, tmp_path):
    out = tmp_path / "all.tsv"
    assert main(["--checkpoint", checkpoint, "--out", str(out), "--k", "3", "--keep_seen", "--batch_size", "7"]) == 0
    _, rows = _read(out)
    users = {row[0] for row in rows}
    assert users == set(_interactions(ml_slice)) and len(rows) == 3 * len(users)
    expected = _expected(checkpoint, ["1"], 3, seen={})
    assert [row[2] for row in rows if row[0] == "1"] == expected["1"]


def test_a_users_file_and_more_than_the_unseen_items(checkpoint, ml_slice, tmp_path):
    """A users file with a byte-order mark and blank lines; k above the number of unseen items gives every unseen
    item once and nothing that was seen."""
    users = tmp_path / "users.txt"
    users.write_bytes("\ufeff2\n\n  1  \n2\n".encode("utf-8"))
    out = tmp_path / "recs.tsv"
    assert main(["--checkpoint", checkpoint, "--out", str(out), "--users_file", str(users), "--k", "100000"]) == 0
    _, rows = _read(out)
    blocks = [user for i, user in enumerate(row[0] for row in rows) if i == 0 or rows[i - 1][0] != user]
    assert blocks == ["2", "1", "2"]  # the file's order, repeats included
    _, _, dataset, *_ = load_data_and_model(checkpoint)
    all_items = set(dataset.field2token_id[dataset.iid_field]) - {"[PAD]"}
    seen = _interactions(ml_slice)
    for user in ("1", "2"):
        mine = [row[2] for row in rows if row[0] == user]
        expected = all_items - seen[user]
        assert set(mine) == expected and len(mine) == len(expected) * (2 if user == "2" else 1)


def test_bad_input_is_named_and_writes_nothing(checkpoint, tmp_path, capsys):
    out = tmp_path / "recs.tsv"
    assert main(["--checkpoint", checkpoint, "--out", str(out), "--users", "1,no-such-user"]) == 2
    assert "--users: 1 user(s) not in the dataset" in capsys.readouterr().err and not out.exists()
    assert main(["--checkpoint", checkpoint, "--out", str(out), "--users", "[PAD]"]) == 2  # RecBole's padding
    assert "not in the dataset" in capsys.readouterr().err and not out.exists()
    assert main(["--checkpoint", checkpoint, "--out", str(out), "--users", " , "]) == 2
    assert "no user tokens given" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit):
        main(["--checkpoint", checkpoint, "--out", str(tmp_path)])
    assert "is a folder" in capsys.readouterr().err
    assert main(["--checkpoint", str(tmp_path / "missing.safetensors"), "--out", str(out)]) == 2
    assert "missing.safetensors does not exist" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit):
        main(["--checkpoint", checkpoint, "--out", str(out), "--k", "0"])
    with pytest.raises(SystemExit):
        main(["--checkpoint", checkpoint, "--out", str(out), "--keep-seen"])
    assert "did you mean --keep_seen?" in capsys.readouterr().err and not out.exists()


def test_a_data_error_is_one_line(checkpoint, ml_slice, tmp_path, capsys):
    """A dataset that fails its checks (here a byte-order mark) is an ``error:`` line and exit 2, as in the run
    script (it was a traceback)."""
    import shutil

    data_path, name = ml_slice
    copy = tmp_path / "data"
    shutil.copytree(os.path.join(data_path, name), copy / name)
    inter = copy / name / f"{name}.inter"
    inter.write_text("\ufeff" + inter.read_text(encoding="utf-8"), encoding="utf-8")
    out = tmp_path / "recs.tsv"
    assert main(["--checkpoint", checkpoint, "--out", str(out), f"--data_path={copy}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "starts with a byte-order mark" in err and "Traceback" not in err
    assert not out.exists()


def test_a_misspelt_setting_is_named(checkpoint, tmp_path, capsys):
    out = tmp_path / "recs.tsv"
    assert main(["--checkpoint", checkpoint, "--out", str(out), "--users", "1", "--show_progres=False"]) == 0
    assert "Unknown option 'show_progres' is ignored: did you mean 'show_progress'?" in capsys.readouterr().err


def test_seen_items_match_the_interactions(ml_slice, checkpoint):
    """The CSR lookup gives, for any batch of users (repeats and users without interactions included), exactly the
    dataset's (user, item) pairs."""
    from recbole_hnlm.recommend import SeenItems

    _, _, dataset, *_ = load_data_and_model(checkpoint)
    seen = SeenItems(dataset)
    users = torch.tensor([3, 0, 1, 3, dataset.user_num - 1])
    rows, items = seen.positions(users)
    got = sorted(zip(users[rows].tolist(), items.tolist()))
    inter = dataset.inter_feat
    pairs = list(zip(inter[dataset.uid_field].tolist(), inter[dataset.iid_field].tolist()))
    expected = sorted(pair for user in users.tolist() for pair in pairs if pair[0] == user)
    assert got == expected and len(got) > 0


def test_out_as_a_link_a_pipe_or_standard_output(checkpoint, tmp_path, capsys):
    """A link given as --out was replaced by a regular file (its target kept the old content) and /dev/stdout
    became a file, both reported as written."""
    target = tmp_path / "real.tsv"
    target.write_text("old\n")
    link = tmp_path / "latest.tsv"
    link.symlink_to(target)
    assert main(["--checkpoint", checkpoint, "--out", str(link), "--users", "1", "--k", "3"]) == 0
    assert link.is_symlink() and _read(target)[0] == "user_id\trank\titem_id\tscore\n" and len(_read(link)[1]) == 3
    capsys.readouterr()
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    for special in (str(pipe), "/dev/stdout"):  # /dev/stdout: the atomic write replaced a redirect's file
        with pytest.raises(SystemExit):
            main(["--checkpoint", checkpoint, "--out", special, "--users", "1", "--k", "3"])
        assert f"--out {special} is not a regular file" in capsys.readouterr().err
    assert main(["--checkpoint", checkpoint, "--out", "-", "--users", "1,2", "--k", "3"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == "user_id\trank\titem_id\tscore" and len(lines) == 7
    assert "stdout: 6 recommendations for 2 users" in captured.err and not os.path.exists("-")


def test_equal_scores_are_listed_in_item_id_order():
    """topk leaves the order of equal scores unspecified (two machines could list tied items differently): they
    come in the order of the internal item ids, the k-th place included."""
    from recbole_hnlm.recommend import top_k

    scores = torch.tensor([[0.0, 0.5, 0.9, 0.5, 0.9, 0.5, 0.1, 0.5],
                           [0.0, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]])

    class Scored:  # what a model's full_sort_predict returns for the rows of ``table``
        USER_ID, device = "user_id", torch.device("cpu")

        def __init__(self, table):
            self.table, self.n_items = table, table.shape[1]

        def full_sort_predict(self, interaction):
            return self.table[interaction[self.USER_ID]].flatten()

    values, items = top_k(Scored(scores), torch.tensor([0, 1]), 4)
    assert items.tolist() == [[2, 4, 1, 3], [1, 2, 3, 4]]
    assert torch.equal(values[0], scores[0, [2, 4, 1, 3]])
    generator = torch.Generator().manual_seed(0)
    many = torch.randint(0, 3, (3, 2000), generator=generator).float()  # 3 scores over 2000 items: ties everywhere
    _, got = top_k(Scored(many), torch.tensor([0, 1, 2]), 700)
    for row, ids in zip(many, got):  # exactly the first 700 of the full order by (-score, id), item 0 left out
        expected = sorted(range(1, 2000), key=lambda i: (-float(row[i]), i))[:700]
        assert ids.tolist() == expected
    # a diverged model's NaN scores are left out (topk ranked them first, and the tie cut lost or crashed on them)
    nan = float("nan")
    values, items = top_k(Scored(torch.tensor([[0.0, nan, nan, 5.0, 5.0, 5.0, 1.0]])), torch.tensor([0]), 4)
    assert items.tolist() == [[3, 4, 5, 6]] and not bool(values.isnan().any())


def test_the_header_names_both_id_fields():
    from types import SimpleNamespace

    from recbole_hnlm.recommend import header

    assert header(SimpleNamespace(uid_field="uid", iid_field="business_id")) == "uid\trank\tbusiness_id\tscore\n"


def test_the_header_names_the_datasets_id_fields_and_ids_may_start_with_a_dash(ml_slice, tmp_path, capsys,
                                                                                monkeypatch):
    """RecBole's Yelp files name items business_id, and Yelp ids may start with '-': the header said item_id, and
    `--users -co810M6sQBkTY7eLQlIx4` was taken for an option (docs/usage.md gives the `--users=...` form)."""
    data_path, name = ml_slice
    folder = tmp_path / "data" / "yelpish"
    folder.mkdir(parents=True)
    with open(os.path.join(data_path, name, f"{name}.inter"), encoding="utf-8") as source, \
            open(folder / "yelpish.inter", "w", encoding="utf-8") as target:
        next(source)
        target.write("user_id:token\tbusiness_id:token\n")
        for line in source:
            user, item = line.split("\t")[:2]
            target.write(f"{'-' if user == '1' else ''}u{user}\tb{item}\n")
    result = run_recbole_hnlm(model="MF", dataset="yelpish", config_dict={
        "data_path": str(tmp_path / "data"), "ITEM_ID_FIELD": "business_id", "epochs": 1, "use_gpu": False,
        "load_col": {"inter": ["user_id", "business_id"]}, "checkpoint_dir": str(tmp_path / "run"),
        "show_progress": False})
    out = tmp_path / "recs.tsv"
    import sys

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a terminal: the silent rebuild is announced
    assert main(["--checkpoint", result["checkpoint"], "--out", str(out), "--k", "3", "--users=-u1,u2"]) == 0
    header, rows = _read(out)
    assert header == "user_id\trank\tbusiness_id\tscore\n"
    assert [row[0] for row in rows] == ["-u1"] * 3 + ["u2"] * 3 and all(row[2].startswith("b") for row in rows)
    assert "rebuilding its dataset" in capsys.readouterr().err  # said before a silent minute at Yelp's size


def test_a_user_id_in_another_unicode_normalisation_is_named(fast_config, tmp_path):
    """'Zoe' + a combining diaeresis (NFD, as some tools write it) was refused as "not in the dataset, e.g. 'Zoë'",
    which reads exactly as the dataset's precomposed 'Zoë' (NFC)."""
    import unicodedata

    from recbole.data import create_dataset

    from recbole_hnlm.config import Config
    from recbole_hnlm.errors import ConfigError
    from recbole_hnlm.recommend import _user_ids

    folder = tmp_path / "names"
    folder.mkdir()
    users = ["Zo\u00eb", "Ren\u00e9", "Ann"]
    (folder / "names.inter").write_text("user_id:token\titem_id:token\n" + "".join(
        f"{u}\ti{k}\n" for u in users for k in range(6)), encoding="utf-8")
    dataset = create_dataset(Config(model="MF", dataset="names", config_dict={
        **fast_config, "dataset": "names", "data_path": str(tmp_path), "load_col": {"inter": ["user_id", "item_id"]}},
        command_line=False))
    assert _user_ids(dataset, ["Zo\u00eb"]).tolist() == [dataset.field2token_id["user_id"]["Zo\u00eb"]]
    decomposed = unicodedata.normalize("NFD", "Zo\u00eb")
    with pytest.raises(ConfigError) as error:
        _user_ids(dataset, [decomposed, "Bob"])
    assert "2 user(s) not in the dataset names" in str(error.value)
    assert ("'Zoe\\u0308' is the dataset's 'Zo\\xeb' in another Unicode normalisation: write it as the dataset "
            "does.") in str(error.value)
    assert "'Bob' is" not in str(error.value)


def test_a_precomposed_user_id_is_named_for_a_decomposed_dataset_id_also_after_another_unknown(fast_config,
                                                                                             tmp_path):
    """The other direction of the normalisation hint: the dataset writes 'Zoë' decomposed (NFD) and --users the
    precomposed form (mutant: NFC only); and the hint is given for any of the first five unknown ids, not only the
    first (mutant: unknown[:1])."""
    from recbole.data import create_dataset

    from recbole_hnlm.config import Config
    from recbole_hnlm.errors import ConfigError
    from recbole_hnlm.recommend import _user_ids

    folder = tmp_path / "nfd"
    folder.mkdir()
    users = [unicodedata.normalize("NFD", "Zo\u00eb"), "Ann"]
    (folder / "nfd.inter").write_text("user_id:token\titem_id:token\n" + "".join(
        f"{u}\ti{k}\n" for u in users for k in range(6)), encoding="utf-8")
    dataset = create_dataset(Config(model="MF", dataset="nfd", config_dict={
        **fast_config, "dataset": "nfd", "data_path": str(tmp_path), "load_col": {"inter": ["user_id", "item_id"]}},
        command_line=False))
    with pytest.raises(ConfigError) as error:
        _user_ids(dataset, ["Bob", "Zo\u00eb"])
    assert "'Zo\\xeb' is the dataset's 'Zoe\\u0308' in another Unicode normalisation" in str(error.value)


def test_a_full_disk_is_one_line_naming_the_output_with_exit_status_1(checkpoint, tmp_path, capsys):
    """recommend said a full disk like bad input (exit status 2, "[Errno 28] No space left on device", no file)."""
    import resource

    out = tmp_path / "recs.tsv"
    out.write_text("the earlier list\n")
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64, limits[1]))  # the header and a row fit, not the list
    try:
        code = main(["--checkpoint", checkpoint, "--out", str(out), "--k", "5", "--users", "1,2,3"])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
    assert code == 1
    assert f"error: {out}: cannot be written (File too large)" in capsys.readouterr().err
    assert out.read_text() == "the earlier list\n" and sorted(p.name for p in tmp_path.iterdir()) == ["recs.tsv", "run"]


def test_standard_output_into_a_reader_that_stops_early_ends_quietly(checkpoint, tmp_path):
    """``--out - | head -1``: the closed pipe ended in "error: [Errno 32] Broken pipe" and exit status 2 (bad input);
    the reader had what it wanted, as with ``llm keys | head``."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "recbole_hnlm.recommend", "--checkpoint", checkpoint, "--out",
                                "-", "--k", "50"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    assert process.stdout.readline().decode() == "user_id\trank\titem_id\tscore\n"
    process.stdout.close()  # more than a pipe's buffer is still to come
    err = process.stderr.read().decode()
    assert process.wait(timeout=300) == 0, err
    assert "Broken pipe" not in err and "Traceback" not in err and "error:" not in err
