"""Findings of a Python-API fuzz of recbole_hnlm.llm: damaged stores, teachers and chunks, adversarial answers and
templates. Each test fails on the code before its fix."""
import json
import os
import time

import pytest
import torch
from safetensors.torch import save_file

from recbole_hnlm.llm.chunks import ChunkedRun
from recbole_hnlm.llm.json_answer import MalformedAnswer, first_json_block, parse_json_answer
from recbole_hnlm.llm.prompts import ChatFormatter, PromptTemplate
from recbole_hnlm.llm.store import PairEmbeddingStore, StoreError, write_pair_store
from recbole_hnlm.llm.teacher import TEACHER_FORMAT, Teacher

MANIFEST = {"variant": "semantic", "dataset": "x", "dataset_hash": "h"}


def _store(tmp_path, emb=None, users=("1", "2"), items=("3", "4")):
    path = str(tmp_path / "x.hnlm-semantic.safetensors")
    emb = torch.arange(4.0).view(2, 2) if emb is None else emb
    write_pair_store(path, list(users), list(items), emb, MANIFEST)
    return path


def _edit_header(path, edit):
    """Rewrite the safetensors header of ``path`` through ``edit(header)``; the data bytes stay as they are."""
    raw = open(path, "rb").read()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + size])
    edit(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as handle:
        handle.write(len(text).to_bytes(8, "little") + text + raw[8 + size:])
    if os.path.exists(path + ".manifest.json"):
        os.remove(path + ".manifest.json")


# --- json_answer ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ['{"a": ' * 3000 + '"b"' + "}" * 3000,  # nesting past Python's recursion limit
                                  '{"a": "b", "n": ' + "9" * 5000 + "}"])  # an int past Python's digit limit
def test_parse_json_answer_raises_malformed_on_json_the_decoder_refuses(text):
    """json.loads raises RecursionError / ValueError (not JSONDecodeError) here: the answer is malformed, a retry's
    business, not an exception that ends the whole generation run."""
    with pytest.raises(MalformedAnswer):
        parse_json_answer(text, required=("x",))


def test_first_json_block_is_linear_in_unclosed_braces():
    """An answer of unclosed ``{`` used to cost one scan per brace (quadratic: ~15 s for 16k braces)."""
    text = "{" * 20000 + 'then {"a": "b"}'
    started = time.perf_counter()
    assert first_json_block(text) == '{"a": "b"}'
    assert parse_json_answer("{" * 20000, allow_truncated=True) == {}  # closed "{}" is the innermost one
    assert time.perf_counter() - started < 5


def test_first_json_block_still_honours_strings_per_start():
    """The shortcut keeps the per-start reading: a brace inside a string of an earlier start is scanned on its own."""
    assert first_json_block('{"x {"a": 1}') == '{"a": 1}'
    assert first_json_block('{{} x') == "{}"
    assert first_json_block('a { "b": "}" } c') == '{ "b": "}" }'


@pytest.mark.parametrize("text", ['{"a": 1' + ', x' * 1000,  # a thousand top-level commas
                                  '{"a": 1 ' * 1000,  # a thousand openings, each never closed
                                  '{"a": 1, "b": [1' + ', {"c": 2' * 1000])  # commas inside lists are not top level
def test_a_cut_answer_is_repaired_with_bounded_work(text, monkeypatch):
    """Closing a cut answer tried every top-level comma from every ``{``: 5,000 fields took 86 s, ``{`` repeated
    2,000 times 23 s. The repairs tried are bounded (MAX_OPENINGS openings, MAX_COMMAS + 1 closings each)."""
    from recbole_hnlm.llm import json_answer

    parsed, loads = [], json_answer._loads_lenient
    monkeypatch.setattr(json_answer, "_loads_lenient", lambda block: parsed.append(block) or loads(block))
    with pytest.raises(MalformedAnswer):
        parse_json_answer(text, ["hard_negative_item"], allow_truncated=True)
    assert len(parsed) <= 1 + json_answer.MAX_OPENINGS * (json_answer.MAX_COMMAS + 1)


@pytest.mark.parametrize("fields", [3, 2000])
def test_a_cut_answer_keeps_its_first_fields_past_many_others(fields):
    """Past MAX_COMMAS commas the object is still closed right after its first fields (the required one, which the
    prompt asks for first), and, when what follows parses, after its last ones."""
    head = '{"hard_negative_item": "Heat", "reasoning": "r"'
    assert parse_json_answer(head + ", x" * fields, ["hard_negative_item"], allow_truncated=True) == {
        "hard_negative_item": "Heat", "reasoning": "r"}
    whole = parse_json_answer(head + ''.join(f', "k{i}": {i}' for i in range(fields)) + ', "cut', ["reasoning"],
                              allow_truncated=True)
    assert len(whole) == 2 + fields and whole[f"k{fields - 1}"] == fields - 1


# --- prompts -------------------------------------------------------------------------------------------------------

def test_render_split_refuses_a_template_with_two_item_blocks(tmp_path):
    """Two ``$item_block`` put the split marker in the prompt twice whatever its length: render_split lengthened it
    forever (a hang with growing memory)."""
    path = tmp_path / "twice.v1.txt"
    path.write_text("### system\nS\n### user\n$x $item_block and $item_block\n### item_block\n$i\n")
    with pytest.raises(ValueError, match="more than once"):
        ChatFormatter(None).render_split(PromptTemplate.load(str(path)), {"x": "1"})


# --- store ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e6])  # 1e6 is inf as float16
def test_write_pair_store_refuses_non_finite_embeddings(tmp_path, value):
    """A diverged model's NaN, or a value past float16's range, was stored and later trained on without a word."""
    emb = torch.tensor([[0.5, 1.0], [value, 0.0]])
    with pytest.raises(StoreError, match="NaN or inf"):
        _store(tmp_path, emb)
    assert not os.path.exists(tmp_path / "x.hnlm-semantic.safetensors")


def _data_start_and_offsets(path, name):
    raw = open(path, "rb").read()
    size = int.from_bytes(raw[:8], "little")
    return 8 + size, json.loads(raw[8:8 + size])[name]["data_offsets"]


def test_align_refuses_a_store_whose_bytes_turned_into_nan(tmp_path):
    """A flipped exponent byte in the float16 data makes a NaN that ``open`` cannot see (no checksum); ``align``
    (which copies the rows it keeps) refuses it instead of handing NaN to the sampler."""
    path = _store(tmp_path)
    start, (begin, _) = _data_start_and_offsets(path, "emb")
    raw = bytearray(open(path, "rb").read())
    raw[start + begin + 1] |= 0x7E  # high byte of row 0's first float16: exponent all ones, mantissa set -> NaN
    open(path, "wb").write(bytes(raw))
    store = PairEmbeddingStore.open(path)
    assert torch.isnan(store.emb[0, 0])

    class Dataset:  # the two maps and the item count align() reads
        uid_field, iid_field, item_num = "user_id", "item_id", 5
        field2token_id = {"user_id": {"[PAD]": 0, "1": 1, "2": 2}, "item_id": {"[PAD]": 0, "3": 3, "4": 4}}

    with pytest.raises(StoreError, match="NaN or inf"):
        store.align(Dataset())


@pytest.mark.parametrize("manifest", [["format", "variant", "dataset", "dataset_hash", "dim", "num_pairs", "key_type",
                                       "dtype"], "format variant dataset dataset_hash dim num_pairs key_type dtype", 5])
def test_open_refuses_a_manifest_that_is_no_object(tmp_path, manifest):
    """A list or string holding every field name passed the ``field in manifest`` checks, then crashed (TypeError)."""
    path = _store(tmp_path)

    def edit(header):
        header["__metadata__"]["manifest"] = manifest if manifest == 5 else json.dumps(manifest)
    _edit_header(path, edit)
    with pytest.raises(StoreError, match="manifest"):
        PairEmbeddingStore.open(path)


def test_open_refuses_metadata_that_is_no_object(tmp_path):
    path = _store(tmp_path)
    _edit_header(path, lambda header: header.__setitem__("__metadata__", "x"))
    with pytest.raises(StoreError, match="__metadata__"):
        PairEmbeddingStore.open(path)


def _set(name, **fields):
    return lambda header: header[name].update(fields)


@pytest.mark.parametrize("edit", [
    _set("emb", shape=[-2, -2]),  # np.memmap: ValueError negative dimensions
    _set("emb", data_offsets=[-8, 0], shape=[2, 2], dtype="F16"),  # points into the header
    _set("user", shape=[2, 1]),  # tokens "[1]", "[2]"
], ids=["negative-shape", "negative-offset", "2d-user-keys"])
def test_open_refuses_damaged_tensor_entries(tmp_path, edit):
    """Header entries a hand edit or a foreign writer can produce: a StoreError (the cache recomputes), not a crash
    or tokens of another kind."""
    path = _store(tmp_path, torch.arange(4.0).view(2, 2))
    _edit_header(path, edit)
    with pytest.raises(StoreError):
        PairEmbeddingStore.open(path)


def test_open_refuses_a_manifest_dtype_other_than_the_stored_one(tmp_path):
    """``dtype`` is an identity field: a manifest saying float32 over float16 data matched a float32 request."""
    path = _store(tmp_path)

    def edit(header):
        manifest = json.loads(header["__metadata__"]["manifest"])
        manifest["dtype"] = "float32"
        header["__metadata__"]["manifest"] = json.dumps(manifest)
    _edit_header(path, edit)
    with pytest.raises(StoreError, match="dtype"):
        PairEmbeddingStore.open(path)


@pytest.mark.parametrize("damage", ["binary", "folder"])
def test_open_reports_an_unreadable_keys_file(tmp_path, damage):
    """UnicodeDecodeError / IsADirectoryError escaped open(); they are a StoreError naming the keys file."""
    path = _store(tmp_path, users=("a", "b"), items=("c", "d"))
    keys = path + ".keys.tsv"
    os.remove(keys)
    if damage == "binary":
        open(keys, "wb").write(b"\xff\t\xfe\n")
    else:
        os.makedirs(keys)
    with pytest.raises(StoreError, match="keys.tsv"):
        PairEmbeddingStore.open(path)


# --- teacher -------------------------------------------------------------------------------------------------------

def _teacher(tmp_path, **changes):
    tensors = {"user_emb": torch.randn(2, 3), "item_emb": torch.randn(3, 3), "pair_user": torch.tensor([0, 1]),
               "pair_item": torch.tensor([2, 0]), "neg_emb": torch.randn(2, 3)}
    metadata = {"format": TEACHER_FORMAT, "user_tokens": json.dumps(["u1", "u2"]),
                "item_tokens": json.dumps(["i1", "i2", "i3"]), "dataset": "x", "seed": "1", "source": "t"}
    for key, value in changes.items():
        (tensors if isinstance(value, torch.Tensor) else metadata)[key] = value
    path = str(tmp_path / "x.hnlm-teacher.safetensors")
    save_file(tensors, path, metadata=metadata)
    return path


@pytest.mark.parametrize("changes", [
    {"user_tokens": json.dumps("ab")},  # a string: its characters became the tokens
    {"user_tokens": json.dumps([1, 2])},  # ints never equal the dataset's string tokens
    {"user_tokens": json.dumps({"a": 0, "b": 1})},  # KeyError 0 in token_pairs
    {"user_tokens": json.dumps(["u1", "u1"])},  # one token, two rows
    {"user_emb": torch.full((2, 3), float("nan"))},
    {"neg_emb": torch.full((2, 3), float("inf"))},
    {"item_emb": torch.ones(3, 3, dtype=torch.int64)},
    {"user_emb": torch.randn(2, 3, 1)},
    {"user_emb": torch.randn(2)},  # IndexError in validate
    {"pair_user": torch.tensor([True, False])},  # indexes as 1, 0
    {"pair_user": torch.tensor([0.0, 1.5])},  # TypeError in token_pairs
], ids=["tokens-str", "tokens-int", "tokens-dict", "tokens-dup", "nan", "inf", "int-emb", "3d-emb", "1d-emb",
        "bool-pairs", "float-pairs"])
def test_teacher_load_refuses_malformed_contents(tmp_path, changes):
    """A teacher file of wrong shapes, dtypes, non-finite values or malformed token lists was loaded (and fine-tuned
    on) or crashed with an error naming no file; now a ValueError names the file."""
    path = _teacher(tmp_path, **changes)
    with pytest.raises(ValueError, match="x.hnlm-teacher.safetensors"):
        Teacher.load(path)


def test_teacher_load_accepts_a_sound_file(tmp_path):
    """The checks above leave a well-formed teacher alone."""
    teacher = Teacher.load(_teacher(tmp_path))
    assert teacher.token_pairs() == [("u1", "i3"), ("u2", "i1")]


# --- chunks --------------------------------------------------------------------------------------------------------

def _compute(rows, advance):
    return torch.tensor(list(rows)), torch.full((len(rows), 3), float(rows.start)), [{"ok": True}] * len(rows)


@pytest.mark.parametrize("chunk", [
    ({"rows": torch.tensor([0, 7]), "emb": torch.ones(2, 3)}, "[]"),  # another chunk's row, and one past the end
    ({"rows": torch.tensor([2, 2]), "emb": torch.ones(2, 3)}, "[]"),  # a row twice
    ({"rows": torch.tensor([2, 3]), "emb": torch.ones(2, 3)}, "["),  # records cut: JSONDecodeError at the merge
    ({"rows": torch.tensor([2, 3]), "emb": torch.ones(6)}, "[]"),  # IndexError at the merge
], ids=["rows-outside", "rows-repeated", "records", "emb-1d"])
def test_damaged_chunk_is_computed_again(tmp_path, chunk):
    """A chunk file edited or written by another plan was merged as is (rows of other pairs, a repeated pair) or
    failed the merge after every other chunk, on every rerun; now it is dropped and computed again."""
    work = str(tmp_path / "work")
    with ChunkedRun(work, {"a": 1}, 4, 2) as run:
        run.run_pending(_compute, "x", progress=False)
    tensors, records = chunk
    save_file(tensors, run.chunk_path(1), metadata={"records": records})
    with ChunkedRun(work, {"a": 1}, 4, 2) as run:
        assert run.pending() == [1]
        run.run_pending(_compute, "x", progress=False)
        rows, emb, merged = run.merge()
    assert rows.tolist() == [0, 1, 2, 3]
    assert emb[:, 0].tolist() == [0.0, 0.0, 2.0, 2.0]
    assert len(merged) == 4
