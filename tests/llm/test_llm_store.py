"""Side-car store: round trip, manifest validation, alignment against a real RecBole dataset."""
import json
import os

import pytest
import torch

from recbole_hnlm.llm.store import (FORMAT, AlignedPairEmbeddings, PairEmbeddingStore, StoreError, manifest_mismatch,
                                    write_pair_store)

from llm_helpers import ML100K
from lock_holder import held_by_another_process


def _write(tmp_path, users, items, dim=8, dtype=torch.float32, name="s.safetensors"):
    path = str(tmp_path / name)
    emb = torch.randn(len(users), dim)
    manifest = write_pair_store(path, users, items, emb, dict(variant="semantic", dataset="x", dataset_hash="h"),
                                dtype)
    return path, emb, manifest


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_round_trip_integer_tokens(tmp_path, dtype):
    path, emb, manifest = _write(tmp_path, ["1", "2", "30"], ["5", "6", "7"], dtype=dtype)
    store = PairEmbeddingStore.open(path)
    assert store.dim == 8 and store.num_pairs == 3 and store.manifest == manifest
    assert manifest["key_type"] == "int64" and manifest["format"] == FORMAT
    assert not os.path.exists(path + ".keys.tsv")
    assert store.user_tokens == ["1", "2", "30"] and store.item_tokens == ["5", "6", "7"]
    assert torch.equal(store.emb.float(), emb.to(dtype).float())


def test_round_trip_string_tokens_use_keys_file(tmp_path):
    path, emb, manifest = _write(tmp_path, ["a", "007", "c"], ["x", "y", "z"])
    assert manifest["key_type"] == "tsv" and os.path.exists(path + ".keys.tsv")
    store = PairEmbeddingStore.open(path)
    assert store.user_tokens == ["a", "007", "c"]  # "007" must not become 7
    assert torch.equal(store.emb, emb)
    path, _, manifest = _write(tmp_path, ["-0", "5"], ["1", "2"], name="minus-zero.safetensors")
    assert manifest["key_type"] == "tsv" and PairEmbeddingStore.open(path).user_tokens == ["-0", "5"]


def test_errors_name_the_file_and_field(tmp_path):
    with pytest.raises(StoreError, match="not found"):
        PairEmbeddingStore.open(str(tmp_path / "missing.safetensors"))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x01")
    with pytest.raises(StoreError, match="bad.safetensors"):
        PairEmbeddingStore.open(str(bad))
    path, _, _ = _write(tmp_path, ["1"], ["2"])
    with open(path + ".manifest.json", "w") as handle:
        json.dump({"edited": True}, handle)
    with pytest.raises(StoreError, match="manifest.json"):
        PairEmbeddingStore.open(path)
    path, _, _ = _write(tmp_path, ["a"], ["b"], name="t.safetensors")
    os.remove(path + ".keys.tsv")
    with pytest.raises(StoreError, match="keys.tsv"):
        PairEmbeddingStore.open(path)
    # corrupt files are store errors (a cache check then recomputes), not tracebacks
    path, _, _ = _write(tmp_path, ["1", "2"], ["3", "4"], name="cut.safetensors")
    with open(path, "rb") as handle:
        data = handle.read()
    with open(path, "wb") as handle:
        handle.write(data[:-10])
    with pytest.raises(StoreError, match="cut.safetensors: tensor .* past the end of the file"):
        PairEmbeddingStore.open(path)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes((16).to_bytes(8, "little") + b"\xff" * 16)
    with pytest.raises(StoreError, match="garbage.safetensors: not a safetensors file"):
        PairEmbeddingStore.open(str(garbage))
    path, _, _ = _write(tmp_path, ["1"], ["2"], name="side.safetensors")
    with open(path + ".manifest.json", "wb") as handle:
        handle.write(b"\xff{")
    with pytest.raises(StoreError, match="side.safetensors.manifest.json: not a JSON manifest"):
        PairEmbeddingStore.open(path)
    # a keys file of another write of the same size (the write cut off between the two files) is refused
    path, _, _ = _write(tmp_path, ["a", "b"], ["x", "y"], name="k.safetensors")
    with open(path + ".keys.tsv", "w") as handle:
        handle.write("b\tx\na\ty\n")
    with pytest.raises(StoreError, match="k.safetensors.keys.tsv: not the keys file written with"):
        PairEmbeddingStore.open(path)


def test_manifest_mismatch_names_field(tmp_path):
    path, _, _ = _write(tmp_path, ["1"], ["2"])
    store = PairEmbeddingStore.open(path)
    store.check({"variant": "semantic", "dataset_hash": "h"})
    with pytest.raises(StoreError, match="dataset_hash"):
        store.check({"dataset_hash": "other"})
    assert manifest_mismatch(store.manifest, {"generator": "m"}) is not None
    # a settings dict names the keys that differ, not both whole dicts (in different key order)
    message = manifest_mismatch({"settings": {"retries": 2, "seed": 1, "compute": "float32"}},
                                {"settings": {"compute": "float32", "seed": 1, "retries": 1, "threads": 2}})
    assert message == ("manifest field 'settings.retries': stored 2 != requested 1; manifest field "
                       "'settings.threads': stored (absent) != requested 2")


def test_atomic_write_leaves_no_temp_files(tmp_path):
    _write(tmp_path, ["1", "2"], ["3", "4"])
    assert sorted(os.listdir(tmp_path)) == ["s.safetensors", "s.safetensors.manifest.json"]


@pytest.fixture(scope="module")
def recbole_dataset(tmp_path_factory):
    """ml-100k through RecBole with a user filter, so some store tokens are dropped."""
    from recbole.config import Config
    from recbole.data import create_dataset

    config = Config(model="BPR", dataset="ml-100k", config_dict={
        "data_path": os.path.dirname(ML100K), "user_inter_num_interval": "[100,inf)", "show_progress": False,
        "checkpoint_dir": str(tmp_path_factory.mktemp("ckpt"))})
    return create_dataset(config)


def test_align_drops_filtered_tokens_and_lookup_is_exact(tmp_path, recbole_dataset):
    ds = recbole_dataset
    with open(os.path.join(ML100K, "ml-100k.inter")) as handle:
        rows = [line.split("\t")[:2] for line in handle.read().splitlines()[1:2001]]
    users, items = [r[0] for r in rows], [r[1] for r in rows]
    users.append("no-such-user")
    items.append(items[0])
    path = str(tmp_path / "a.safetensors")
    emb = torch.randn(len(users), 16)
    write_pair_store(path, users, items, emb, dict(variant="semantic", dataset="ml-100k", dataset_hash="h"),
                     torch.float32)
    aligned = PairEmbeddingStore.open(path).align(ds)
    assert isinstance(aligned, AlignedPairEmbeddings) and aligned.dim == 16
    uid_map, iid_map = ds.field2token_id[ds.uid_field], ds.field2token_id[ds.iid_field]
    kept = [k for k, (u, i) in enumerate(zip(users, items)) if u in uid_map and i in iid_map]
    assert 0 < len(kept) < len(users)
    assert aligned.coverage == pytest.approx(len(kept) / len(users))
    uid = torch.tensor([uid_map[users[k]] for k in kept])
    iid = torch.tensor([iid_map[items[k]] for k in kept])
    out, found = aligned.lookup(uid, iid)
    assert found.all() and out.dtype == torch.float32
    assert torch.equal(out, emb[kept])
    # an unknown pair: not found, zero row; pair_coverage counts it
    miss_u, miss_i = uid[:1], torch.tensor([0])
    out2, found2 = aligned.lookup(torch.cat([uid[:3], miss_u]), torch.cat([iid[:3], miss_i]))
    assert found2.tolist() == [True, True, True, False] and out2[3].abs().sum() == 0
    assert aligned.pair_coverage(torch.cat([uid[:3], miss_u]), torch.cat([iid[:3], miss_i])) == 0.75
    assert "keys" not in aligned.state_dict() and "emb" not in aligned.state_dict()
    assert aligned.to("cpu").keys.device.type == "cpu"


def test_every_differing_identity_field_is_named_settings_first():
    """Only the first differing field was named: 'pairs_hash', not the max_pairs that changed it; the semantic
    variant's answer checks were no identity field, so a store of older checks stayed a cache hit."""
    from recbole_hnlm.llm.store import manifest_mismatch

    message = manifest_mismatch({"pairs_hash": "a", "max_pairs": 30, "answer_checks": "v2"},
                                {"pairs_hash": "b", "max_pairs": 0, "answer_checks": "v4"})
    assert message.index("'max_pairs'") < message.index("'answer_checks'") < message.index("'pairs_hash'")
    assert manifest_mismatch({"answer_checks": "v4"}, {"answer_checks": "v4"}) is None
    assert manifest_mismatch({}, {"max_pairs": 0}) == "manifest field 'max_pairs': stored None != requested 0"


def test_an_unreadable_chunk_is_computed_again(tmp_path, caplog):
    """A chunk cut short (a full disk, a copy) counted as done: every rerun computed the other chunks and then failed
    in the merge with SafetensorError, and never recovered."""
    from recbole_hnlm.llm.chunks import ChunkedRun

    work = str(tmp_path / "store.safetensors.work")

    def save(run, k):
        rows = torch.tensor(list(run.chunk_rows(k)))
        run.save_chunk(k, rows, rows[:, None].float().repeat(1, 3), [{"row": int(r)} for r in rows])

    with ChunkedRun(work, {"seed": 1}, 6, 2) as run:
        for k in range(3):
            save(run, k)
    chunk = run.chunk_path(1)
    with open(chunk, "rb") as handle:
        data = handle.read()
    with open(chunk, "wb") as handle:
        handle.write(data[:-10])
    with ChunkedRun(work, {"seed": 1}, 6, 2) as run:
        assert run.pending() == [1]
        assert f"{chunk}: unreadable chunk (SafetensorError" in caplog.text
        save(run, 1)
        rows, emb, records = run.merge()
    assert rows.tolist() == list(range(6)) and emb[:, 0].tolist() == list(range(6))
    assert [r["row"] for r in records] == list(range(6))


def test_a_store_rewritten_up_to_its_rename_opens_without_the_old_manifest(tmp_path, monkeypatch):
    """A run stopped after the new store's rename and before its manifest.json left the old manifest beside it, and
    the store could not be opened ("differs ... (edited or stale)"), so the next run computed it again."""
    from recbole_hnlm.llm import store as store_module

    path, _, _ = _write(tmp_path, ["1", "2"], ["3", "4"])

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(store_module, "write_json_atomic", stopped)
    with pytest.raises(KeyboardInterrupt):
        write_pair_store(path, ["1", "2", "5"], ["3", "4", "6"], torch.randn(3, 8), dict(variant="semantic",
                         dataset="x", dataset_hash="new"), torch.float32)
    assert not os.path.exists(path + ".manifest.json")
    opened = PairEmbeddingStore.open(path)
    assert opened.num_pairs == 3 and opened.manifest["dataset_hash"] == "new"


def test_stale_work_beside_a_finished_artifact_is_removed_unless_newer_or_in_use(tmp_path):
    """The chunks a run left beside the store it wrote go; those of a later run of other settings, stopped on the way
    (newer than the store), stay for it to resume from, and so does a folder another process works in."""
    import time

    from recbole_hnlm.files import discard_stale_work

    work, store = tmp_path / "s.safetensors.work", tmp_path / "s.safetensors"
    work.mkdir()
    chunk = work / "chunk_000000.safetensors"
    chunk.write_bytes(b"x")
    store.write_bytes(b"store")
    later = time.time() + 60
    os.utime(chunk, (later, later))  # written after the store: another run's
    discard_stale_work(str(store))
    assert chunk.exists()
    os.utime(chunk, (later - 120, later - 120))  # before the store: its writer's leftovers
    with held_by_another_process(str(work) + ".lock"):
        discard_stale_work(str(store))  # another run computes into it
        assert chunk.exists()
    discard_stale_work(str(store))
    assert not work.exists()
    discard_stale_work(str(store))  # nothing there: nothing to do
