"""recommend's output on constructed scores (no training run): k above the item count, ranks, score digits, batch
boundaries, users without interactions, --batch_size and --users (a mutation audit found them untested)."""
import numpy as np
import pytest
import torch

from recbole_hnlm.recommend import SeenItems, main, top_k, write_recommendations


class _Scored:
    """A model whose ``full_sort_predict`` returns the rows of ``table`` for the given user ids."""
    USER_ID, device = "user_id", torch.device("cpu")

    def __init__(self, table):
        self.table, self.n_items = table, table.shape[1]

    def full_sort_predict(self, interaction):
        return self.table[interaction[self.USER_ID]].flatten()


class _Dataset:
    """The parts of a RecBole dataset that recommend reads: tokens ``u<id>`` / ``i<id>``, interactions."""
    uid_field, iid_field, dataset_name = "user_id", "item_id", "fake"

    def __init__(self, n_users, n_items, pairs=()):
        self.user_num, self.item_num = n_users, n_items
        users, items = zip(*pairs) if pairs else ((), ())
        self.inter_feat = {"user_id": torch.tensor(users, dtype=torch.long),
                           "item_id": torch.tensor(items, dtype=torch.long)}

    def id2token(self, field, ids):
        prefix = "u" if field == self.uid_field else "i"
        return np.array([f"{prefix}{int(i)}" for i in np.asarray(ids).flatten()]).reshape(np.shape(ids))


def _lines(path):
    with open(path, encoding="utf-8") as handle:
        return [line.rstrip("\n").split("\t") for line in handle][1:]


def test_k_above_the_item_count_gives_every_real_item():
    """Kills R05 (k capped at n_items - 2): with nothing left out, k >= the number of real items lists them all."""
    scores = torch.tensor([[9.0, 0.1, 0.4, 0.3, 0.2]])
    values, items = top_k(_Scored(scores), torch.tensor([0]), 100)
    assert items.tolist() == [[2, 3, 4, 1]] and values[0].tolist() == pytest.approx([0.4, 0.3, 0.2, 0.1])


def test_written_lines_rank_from_one_in_batches_with_six_digit_scores(tmp_path):
    """Kills R10 (left-out items written with score -inf), R11 (ranks from 0), R12 (scores to 3 digits: the
    written order looked tied) and R13 (a user lost at every batch boundary)."""
    table = torch.tensor([[0.0, 0.1231, 0.1234, 0.5, 0.7],
                          [0.0, 0.9, 0.8, 0.7, 0.6],
                          [0.0, 0.1, 0.2, 0.3, 0.4],
                          [0.0, 0.4, 0.3, 0.2, 0.1]])
    dataset = _Dataset(4, 5, pairs=[(1, 1), (1, 2), (1, 3)])
    path = str(tmp_path / "recs.tsv")
    lines = write_recommendations(path, _Scored(table), dataset, torch.tensor([1, 2, 3, 0]), 3, SeenItems(dataset),
                                  batch_size=2)
    rows = _lines(path)
    assert lines == len(rows) == 1 + 3 + 3 + 3  # user 1 has one unseen item left
    assert [row[:3] for row in rows[:4]] == [["u1", "1", "i4"], ["u2", "1", "i4"], ["u2", "2", "i3"],
                                             ["u2", "3", "i2"]]
    assert [row[0] for row in rows[4:]] == ["u3"] * 3 + ["u0"] * 3
    path = str(tmp_path / "close.tsv")
    write_recommendations(path, _Scored(table), dataset, torch.tensor([0]), 4, batch_size=1)
    assert [row[3] for row in _lines(path)] == ["0.7", "0.5", "0.1234", "0.1231"]
    assert [row[2] for row in _lines(path)][2:] == ["i2", "i1"]


def test_seen_items_of_users_without_interactions_are_empty():
    """SeenItems for a user absent from the interactions (and the last user id) gives no positions."""
    dataset = _Dataset(4, 5, pairs=[(3, 1), (1, 2), (3, 4)])
    rows, items = SeenItems(dataset).positions(torch.tensor([2, 3, 1, 3]))
    assert sorted(zip(rows.tolist(), items.tolist())) == [(1, 1), (1, 4), (2, 2), (3, 1), (3, 4)]


def test_a_batch_size_below_one_is_refused_before_loading(tmp_path, capsys):
    """Kills R16: --batch_size 0 reached range(0, n, 0) after the minute of rebuilding the run (ValueError)."""
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "r.tsv"),
              "--batch_size", "0"])
    assert "--k and --batch_size must be >= 1" in capsys.readouterr().err


def test_users_given_on_the_command_line_keep_their_order_and_repeats():
    """Kills R23 (--users deduplicated): the help says "written in this order, repeats included", as for
    --users_file; blanks around and between commas are dropped."""
    from types import SimpleNamespace

    from recbole_hnlm.recommend import _read_users

    assert _read_users(SimpleNamespace(users=" 2,1 ,, 2,", users_file=None)) == ["2", "1", "2"]


# --- top_k's k (the Python-API fuzz, session 44) ---

@pytest.mark.parametrize("k,error", [(0, ValueError), (-1, ValueError), (2.5, TypeError), (None, TypeError)])
def test_top_k_refuses_a_k_that_is_no_positive_integer(k, error):
    """k = 0 failed with "The size of tensor a (5) must match the size of tensor b (0)", k = -1 with an IndexError,
    k = 2.5 was cut to 2 and None raised int()'s message: none named k."""
    scores = torch.tensor([[0.0, 3.0, 1.0, 2.0, 5.0]])
    with pytest.raises(error, match="k must be"):
        top_k(_Scored(scores), torch.tensor([0]), k)
    values, items = top_k(_Scored(scores), torch.tensor([0]), 2)
    assert items.tolist() == [[4, 1]] and values.tolist() == [[5.0, 3.0]]


def test_top_k_takes_integer_like_k_and_refuses_bool():
    """numpy and 0-d integer tensors are integers (``__index__``); True is no count of items."""
    scores = torch.tensor([[0.0, 3.0, 1.0, 2.0, 5.0]])
    for k in (np.int64(1), torch.tensor(1), 1):
        assert top_k(_Scored(scores), torch.tensor([0]), k)[1].tolist() == [[4]]
    with pytest.raises(TypeError, match="k must be an integer"):
        top_k(_Scored(scores), torch.tensor([0]), True)
