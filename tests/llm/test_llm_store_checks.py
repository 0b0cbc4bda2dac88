"""The side-car store's and the chunked resume's checks: identity fields, damaged or foreign files, repeated pairs,
lookups at the ends, empty stores, chunk plans (a mutation audit found them untested; each test names its mutant)."""
import json
import os

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from recbole_hnlm.llm.store import (FORMAT, AlignedPairEmbeddings, PairEmbeddingStore, StoreError, manifest_mismatch,
                                    write_pair_store)

BASE = dict(variant="semantic", dataset="x", dataset_hash="h")


def _write(tmp_path, users, items, dim=4, name="s.safetensors", dtype=torch.float32, **manifest):
    path = str(tmp_path / name)
    emb = torch.randn(len(users), dim)
    write_pair_store(path, users, items, emb, {**BASE, **manifest}, dtype)
    return path, emb


def _rewrite(path, tensors=None, **manifest_changes):
    """The store at ``path`` written again by hand with other tensors or manifest fields (None: field removed), as a
    damaged or foreign file would be; its manifest.json goes (it would differ)."""
    with safe_open(path, framework="pt") as handle:
        meta = handle.metadata()
    manifest = json.loads(meta["manifest"])
    for key, value in manifest_changes.items():
        if value is None:
            manifest.pop(key, None)
        else:
            manifest[key] = value
    fmt = manifest_changes.get("format", meta["format"])
    save_file(tensors if tensors is not None else load_file(path), path,
              metadata={"format": fmt, "manifest": json.dumps(manifest)})
    if os.path.exists(path + ".manifest.json"):
        os.remove(path + ".manifest.json")


def _raw_safetensors(path, header, payload=b""):
    data = json.dumps(header).encode()
    with open(path, "wb") as handle:
        handle.write(len(data).to_bytes(8, "little") + data + payload)


def test_tokens_beyond_int64_are_keyed_as_text(tmp_path):
    """Kills S02 (``<= 2 ** 63``) and S03 (``abs`` dropped): 2**63 and -(2**63 + 1) do not fit an int64 tensor."""
    for k, token in enumerate(["9223372036854775808", "-9223372036854775809"]):  # one per store: either alone
        path, emb = _write(tmp_path, [token, "9223372036854775807"], ["1", "2"], name=f"big{k}.safetensors")
        store = PairEmbeddingStore.open(path)
        assert store.manifest["key_type"] == "tsv" and store.user_tokens == [token, "9223372036854775807"]
        assert torch.equal(store.emb, emb)
    path, _ = _write(tmp_path, ["9223372036854775807", "-9223372036854775807"], ["1", "2"], name="fits.safetensors")
    assert PairEmbeddingStore.open(path).manifest["key_type"] == "int64"


@pytest.mark.parametrize("field", ["format", "variant", "dataset", "dataset_hash", "pairs_hash", "generator",
                                   "encoder", "prompt_version", "negatives_per_pair", "adapter_hash", "teacher_hash",
                                   "max_pairs", "seed", "settings", "dtype", "answer_checks"])
def test_every_identity_field_decides_a_cache_hit(tmp_path, field):
    """Kills S07 (seed), S08 (dtype), S09 (adapter_hash), S10 (encoder) dropped from IDENTITY_FIELDS: a store of
    another seed, store dtype, fine-tuned adapter or encoder was reused as a cache hit."""
    path, _ = _write(tmp_path, ["1"], ["2"], **({} if field in ("format", "dtype") else {field: "stored"}))
    store = PairEmbeddingStore.open(path)
    with pytest.raises(StoreError, match=f"manifest field '{field}'"):
        store.check({field: "requested"})
    store.check({field: store.manifest[field]})


def test_settings_keys_equal_by_value_are_not_named():
    """Kills S11 (``is not`` for ``!=``): values read back from JSON are equal to, not the same objects as, those
    asked for; only the key that differs is named."""
    stored = json.loads('{"settings": {"compute": "float32", "max_history": 1000, "retries": 1}}')
    wanted = {"settings": {"compute": "float" + str(32), "max_history": 999 + int("1"), "retries": 2}}
    assert manifest_mismatch(stored, wanted) == "manifest field 'settings.retries': stored 1 != requested 2"


def test_write_refuses_what_it_cannot_store_faithfully(tmp_path):
    """Kills S12 (rows of emb vs tokens not compared), S13 (bfloat16 accepted: the store then cannot be opened) and
    S15 (a newline in a token: the keys file gets an extra line and a shifted pairing)."""
    path = str(tmp_path / "w.safetensors")
    with pytest.raises(StoreError, match="does not match 2 users"):
        write_pair_store(path, ["1", "2"], ["3", "4"], torch.randn(3, 4), BASE)
    with pytest.raises(StoreError, match="float16 or float32"):
        write_pair_store(path, ["1"], ["3"], torch.randn(1, 4), BASE, dtype=torch.bfloat16)
    with pytest.raises(StoreError, match="tab or newline"):
        write_pair_store(path, ["a\nb", "c"], ["x", "y"], torch.randn(2, 4), BASE)
    with pytest.raises(StoreError, match="tab or newline"):
        write_pair_store(path, ["a", "c"], ["x\ty", "z"], torch.randn(2, 4), BASE)
    assert not os.path.exists(path)


def test_a_text_keyed_store_rewritten_with_integer_tokens_leaves_no_keys_file(tmp_path):
    """Kills S17: the old keys.tsv stayed beside the new integer-keyed store."""
    path, _ = _write(tmp_path, ["a", "b"], ["x", "y"])
    assert os.path.exists(path + ".keys.tsv")
    path, emb = _write(tmp_path, ["1", "2"], ["3", "4"])
    assert sorted(os.listdir(tmp_path)) == ["s.safetensors", "s.safetensors.manifest.json"]
    assert PairEmbeddingStore.open(path).user_tokens == ["1", "2"]


def test_damaged_headers_are_store_errors(tmp_path):
    """Kills S18 (no upper bound on the header size: read(2**63) raised OverflowError, a traceback instead of a
    recompute), S19 (a header that is a JSON list: AttributeError) and S20 (a byte range that does not match the
    shape: memory-mapped past the tensor)."""
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes((2 ** 63).to_bytes(8, "little") + b"{}")
    with pytest.raises(StoreError, match="huge.safetensors: not a safetensors file \\(header size"):
        PairEmbeddingStore.open(str(huge))
    listed = tmp_path / "list.safetensors"
    _raw_safetensors(listed, [1, 2])
    with pytest.raises(StoreError, match="list.safetensors: not a safetensors file \\(header is not a JSON object"):
        PairEmbeddingStore.open(str(listed))
    manifest = dict(BASE, format=FORMAT, dim=4, num_pairs=2, key_type="int64", dtype="float32")
    short = tmp_path / "short.safetensors"
    _raw_safetensors(short, {"__metadata__": {"format": FORMAT, "manifest": json.dumps(manifest)},
                             "emb": {"dtype": "F32", "shape": [2, 4], "data_offsets": [0, 16]}}, b"\0" * 64)
    with pytest.raises(StoreError, match="short.safetensors: tensor 'emb' byte range does not match its shape"):
        PairEmbeddingStore.open(str(short))


@pytest.mark.parametrize("entry", [{"dtype": "F32", "shape": [1, 4]}, 5, {"dtype": "F32", "shape": "x",
                                                                          "data_offsets": [0, 16]}])
def test_a_malformed_tensor_entry_is_a_store_error(tmp_path, entry):
    """An entry without data_offsets, one that is no object or a shape that is no list of sizes raised KeyError or
    TypeError: a traceback where a cached store should be computed again (the cache catches StoreError)."""
    manifest = dict(BASE, format=FORMAT, dim=4, num_pairs=1, key_type="int64", dtype="float32")
    path = tmp_path / "entry.safetensors"
    _raw_safetensors(path, {"__metadata__": {"format": FORMAT, "manifest": json.dumps(manifest)}, "emb": entry},
                     b"\0" * 16)
    with pytest.raises(StoreError, match="entry.safetensors: tensor 'emb' has a malformed header entry"):
        PairEmbeddingStore.open(str(path))


def test_an_empty_store_opens_and_aligns_to_nothing(tmp_path):
    """Kills S44/S45 (lookups in an empty alignment); guards the empty-tensor branch of _mmap_tensor (S23, dropping it,
    is equivalent with the NumPy in use, whose zero-length memory map works)."""
    path, _ = _write(tmp_path, [], [])
    store = PairEmbeddingStore.open(path)
    assert store.num_pairs == 0 and tuple(store.emb.shape) == (0, 4) and store.user_tokens == []
    aligned = AlignedPairEmbeddings(torch.zeros(0, dtype=torch.int64), torch.zeros(0, 4), 10, 0.0)
    out, found = aligned.lookup(torch.tensor([1, 2]), torch.tensor([3, 4]))
    assert tuple(out.shape) == (2, 4) and not bool(out.any()) and found.tolist() == [False, False]
    assert aligned.pair_coverage(torch.tensor([1]), torch.tensor([3])) == 0.0


def test_a_store_of_another_format_or_with_fields_missing_or_wrong_is_refused(tmp_path):
    """Kills S24 (only the presence of a format checked), S25 (required manifest fields not checked: KeyError),
    S26 (emb's width not compared with the manifest's dim), S29 (a keys line of three fields accepted) and S30
    (the item tensor's length not compared with num_pairs)."""
    path, _ = _write(tmp_path, ["1", "2"], ["3", "4"], name="f.safetensors")
    _rewrite(path, format="recbole_hnlm/pair-neg-emb/v0")
    with pytest.raises(StoreError, match="f.safetensors: format 'recbole_hnlm/pair-neg-emb/v0'"):
        PairEmbeddingStore.open(path)
    path, _ = _write(tmp_path, ["1", "2"], ["3", "4"], name="m.safetensors")
    _rewrite(path, dim=None)
    with pytest.raises(StoreError, match="m.safetensors: manifest lacks field 'dim'"):
        PairEmbeddingStore.open(path)
    path, _ = _write(tmp_path, ["1", "2"], ["3", "4"], name="d.safetensors")
    _rewrite(path, dim=5)
    with pytest.raises(StoreError, match=r"d.safetensors: emb shape \(2, 4\) != manifest \[num_pairs=2, dim=5\]"):
        PairEmbeddingStore.open(path)
    path, _ = _write(tmp_path, ["a", "b"], ["x", "y"], name="k.safetensors")
    _rewrite(path, keys_sha256=None)  # a store of before the keys digest
    with open(path + ".keys.tsv", "w") as handle:
        handle.write("a\tx\textra\nb\ty\n")
    with pytest.raises(StoreError, match="k.safetensors.keys.tsv: every line must be 'user<TAB>item'"):
        PairEmbeddingStore.open(path)
    path, _ = _write(tmp_path, ["1", "2"], ["3", "4"], name="i.safetensors")
    tensors = load_file(path)
    tensors["item"] = tensors["item"][:1].clone()
    _rewrite(path, tensors=tensors)
    with pytest.raises(StoreError, match="i.safetensors: 2 keys for num_pairs=2"):
        PairEmbeddingStore.open(path)


class _Dataset:
    """What :meth:`PairEmbeddingStore.align` reads of a RecBole dataset."""
    uid_field, iid_field = "user_id", "item_id"

    def __init__(self, users, items):
        self.field2token_id = {"user_id": {"[PAD]": 0, **{u: k + 1 for k, u in enumerate(users)}},
                               "item_id": {"[PAD]": 0, **{i: k + 1 for k, i in enumerate(items)}}}
        self.item_num = len(items) + 1


def test_a_repeated_pair_keeps_its_first_row_and_counts_once(tmp_path):
    """Kills S33 (the last row of a repeated pair kept), S34 (repeats not removed: num_pairs counts them) and S35
    (coverage counted from the rows found, repeats included)."""
    path, emb = _write(tmp_path, ["1", "2", "1"], ["10", "11", "10"], dim=3)
    store = PairEmbeddingStore.open(path)
    aligned = store.align(_Dataset(["1", "2"], ["10", "11"]))
    assert aligned.num_pairs == 2 and aligned.coverage == pytest.approx(2 / 3)
    out, found = aligned.lookup(torch.tensor([1, 2]), torch.tensor([1, 2]))
    assert bool(found.all()) and torch.equal(out, emb[[0, 1]])


def test_the_first_row_of_a_pair_repeated_many_times_is_kept(tmp_path):
    """align's comment says "keep the first row of each key"; its torch.sort was not stable, and on the CPU it
    reorders equal keys once there are more than 16 or so: a hand-written store kept an arbitrary row."""
    users = [str(u) for u in range(1, 6)] * 40
    items = [str(10 + k % 3) for k in range(len(users))]  # the pair of row k depends on k mod 15: 15 pairs
    path, emb = _write(tmp_path, users, items, dim=3)
    aligned = PairEmbeddingStore.open(path).align(_Dataset([str(u) for u in range(1, 6)], ["10", "11", "12"]))
    first = {}
    for row, pair in enumerate(zip(users, items)):
        first.setdefault(pair, row)
    assert aligned.num_pairs == len(first) == 15
    uid = torch.tensor([int(u) for u, _ in first])
    iid = torch.tensor([int(i) - 9 for _, i in first])
    out, found = aligned.lookup(uid, iid)
    assert bool(found.all()) and torch.equal(out, emb[list(first.values())])


def test_lookups_past_the_last_stored_key_are_misses():
    """Kills S36 (searchsorted's end position not clamped: IndexError for a pair above every stored one)."""
    aligned = AlignedPairEmbeddings(torch.tensor([5, 9]), torch.tensor([[1.0, 1.0], [2.0, 2.0]]), 4, 1.0)
    out, found = aligned.lookup(torch.tensor([2, 3, 1]), torch.tensor([1, 3, 1]))  # keys 9, 15, 5
    assert found.tolist() == [True, False, True] and out.tolist() == [[2.0, 2.0], [0.0, 0.0], [1.0, 1.0]]
    assert aligned.pair_coverage(torch.tensor([2, 3, 1]), torch.tensor([1, 3, 1])) == pytest.approx(2 / 3)


def test_centre_subtracts_the_exact_mean_and_pairs_outside_names_user_and_item():
    """Kills S40 (the mean divided by n - 1) and S41/S42 (pairs_outside gave the pairs inside, or swapped users and
    items)."""
    emb = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0]])
    aligned = AlignedPairEmbeddings(torch.tensor([1 * 10 + 2, 2 * 10 + 7, 3 * 10 + 4]), emb, 10, 1.0)
    assert aligned.center() == pytest.approx(float(torch.tensor([3.0, 2.0]).norm()))
    out, _ = aligned.lookup(torch.tensor([2]), torch.tensor([7]))
    assert out.tolist() == [[0.0, 0.0]]
    users, items = aligned.pairs_outside(torch.tensor([1, 9]), torch.tensor([2, 9]))
    assert users.tolist() == [2, 3] and items.tolist() == [7, 4]


def test_pair_coverage_of_no_pairs_is_zero():
    """Kills S43 (the mean of nothing: NaN)."""
    aligned = AlignedPairEmbeddings(torch.tensor([5]), torch.ones(1, 2), 4, 1.0)
    assert aligned.pair_coverage(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)) == 0.0


# ---- chunked resume


def _save(run, k, value=0.0):
    rows = torch.tensor(list(run.chunk_rows(k)))
    run.save_chunk(k, rows, torch.full((len(rows), 2), value), [{"row": int(r)} for r in rows])


def test_chunk_starts_must_rise_strictly_and_stay_below_the_row_count(tmp_path):
    """Kills C02 (a repeated start, i.e. an empty chunk, accepted) and C03 (a start at num_rows accepted)."""
    from recbole_hnlm.llm.chunks import ChunkedRun

    with pytest.raises(ValueError, match="rise strictly"):
        ChunkedRun(str(tmp_path / "w"), {}, 4, 2, starts=[0, 2, 2])
    with pytest.raises(ValueError, match="rise strictly"):
        ChunkedRun(str(tmp_path / "w"), {}, 4, 2, starts=[0, 2, 4])
    assert ChunkedRun(str(tmp_path / "w"), {}, 4, 2, starts=[0, 3]).num_chunks == 2


def test_chunks_cut_elsewhere_are_not_resumed(tmp_path):
    """Kills C04: the plan did not pin the chunk starts, so chunks of other user-aligned cuts (same plan, same
    chunk_size) were taken as done and the merge skipped or repeated rows."""
    from recbole_hnlm.llm.chunks import ChunkedRun

    work = str(tmp_path / "w")
    with ChunkedRun(work, {"seed": 1}, 6, 2, starts=[0, 3]) as run:
        _save(run, 0)
    with ChunkedRun(work, {"seed": 1}, 6, 2, starts=[0, 2, 4]) as run:
        assert run.pending() == [0, 1, 2]
        for k in range(3):
            _save(run, k)
        assert run.merge()[0].tolist() == list(range(6))


def test_a_plan_with_a_tuple_resumes_its_chunks(tmp_path):
    """Kills C05: plan.json holds lists, the plan a tuple: compared without the JSON round trip every restart
    discarded the finished chunks."""
    from recbole_hnlm.llm.chunks import ChunkedRun

    work = str(tmp_path / "w")
    with ChunkedRun(work, {"gpus": (0, 1)}, 4, 2) as run:
        _save(run, 0)
    with ChunkedRun(work, {"gpus": (0, 1)}, 4, 2) as run:
        assert run.pending() == [1]


def test_a_chunk_without_records_is_computed_again(tmp_path):
    """Kills C06: a chunk with rows and emb but no records metadata was taken as done and failed the merge."""
    from recbole_hnlm.llm.chunks import ChunkedRun

    work = str(tmp_path / "w")
    with ChunkedRun(work, {}, 4, 2) as run:
        _save(run, 0)
        save_file({"rows": torch.tensor([2, 3]), "emb": torch.zeros(2, 2)}, run.chunk_path(1))
    with ChunkedRun(work, {}, 4, 2) as run:
        assert run.pending() == [1]
