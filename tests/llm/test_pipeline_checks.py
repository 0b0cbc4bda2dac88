"""Mutation audit of the LLM stage's chunked work (chunks.py) and its stage orchestration (pipeline.py): behaviour
that no other test pinned down."""
import json
import logging
import os
import re

import pytest
import torch

import recbole_hnlm.llm.chunks as chunks
from recbole_hnlm.llm.chunks import ChunkedRun, hold_work_folder, user_aligned_starts


def _rows_of(run, k):
    return torch.tensor(list(run.chunk_rows(k)))


def _save(run, k, dim=3):
    rows = _rows_of(run, k)
    run.save_chunk(k, rows, rows[:, None].float().repeat(1, dim), [{"row": int(r)} for r in rows])


# ---------------------------------------------------------------------------------------------- user_aligned_starts


def test_the_first_pair_opens_a_chunk_whoever_the_last_pair_belongs_to(tmp_path):
    """Row 0 was compared with pairs[-1]: a user owning the first and the last pair (or the only user) opened no
    chunk at row 0, and the run refused the starts."""
    assert user_aligned_starts([("u", "a"), ("u", "b")], 1) == [0]
    assert user_aligned_starts([("u", "a"), ("v", "b"), ("u", "c")], 1) == [0, 1, 2]
    pairs = [("u", "a"), ("u", "b"), ("v", "c")]
    assert ChunkedRun(str(tmp_path / "w"), {}, 3, 1, starts=user_aligned_starts(pairs, 1)).num_chunks == 2


# ------------------------------------------------------------------------------------------------ ChunkedRun checks


def test_a_chunk_size_of_zero_is_refused_even_with_starts_given(tmp_path):
    with pytest.raises(ValueError, match="chunk_size must be positive, got 0"):
        ChunkedRun(str(tmp_path / "w"), {}, 4, 0, starts=[0, 2])


def test_chunk_starts_must_open_at_row_0(tmp_path):
    """Starts from row 1 left row 0 in no chunk: the merge lacked it without a word."""
    with pytest.raises(ValueError, match="rise strictly from 0 below 4"):
        ChunkedRun(str(tmp_path / "w"), {}, 4, 2, starts=[1, 3])


def test_a_plan_that_cannot_be_read_releases_the_lock(tmp_path):
    """A failure while adopting the plan (here a folder where plan.json belongs) released the folder's lock only
    once the run object was garbage: the caller holding the traceback (or the run) kept every later run refused."""
    work = str(tmp_path / "w")
    os.makedirs(os.path.join(work, "plan.json"))
    run = ChunkedRun(work, {}, 4, 2)
    with pytest.raises(IsADirectoryError):
        run.__enter__()
    with hold_work_folder(work):  # free again, while ``run`` still lives
        pass
    os.rmdir(os.path.join(work, "plan.json"))
    with ChunkedRun(work, {}, 4, 2) as again:
        assert again.pending() == [0, 1]
    assert run is not None


def test_a_plan_json_that_is_not_json_is_named_and_its_chunks_computed_again(tmp_path, caplog):
    """An edited or half-copied plan.json raised a bare JSONDecodeError naming no file, at every later run, until
    the work folder was deleted by hand: it is treated as another plan (warned about, by name)."""
    work = str(tmp_path / "w")
    with ChunkedRun(work, {}, 4, 2) as run:
        _save(run, 0)
    with open(os.path.join(work, "plan.json"), "w", encoding="utf-8") as handle:
        handle.write("{")
    with ChunkedRun(work, {}, 4, 2) as run:
        assert run.pending() == [0, 1]
    assert f"{os.path.join(work, 'plan.json')}: unreadable (Expecting property name" in caplog.text
    assert "its 1 chunk(s) are computed again" in caplog.text and "plan changed" not in caplog.text  # one warning


def test_a_chunk_without_embeddings_is_computed_again(tmp_path):
    from safetensors.torch import save_file

    work = str(tmp_path / "w")
    with ChunkedRun(work, {}, 4, 2) as run:
        _save(run, 0)
        save_file({"rows": torch.tensor([2, 3])}, run.chunk_path(1), metadata={"records": "[{}, {}]"})
    with ChunkedRun(work, {}, 4, 2) as run:
        assert run.pending() == [1] and not os.path.exists(run.chunk_path(1))


def test_a_chunk_that_cannot_be_opened_is_computed_again(tmp_path, caplog):
    """A dangling link (a folder copied without its targets): safe_open raises FileNotFoundError, an OSError; it is
    removed and computed again instead of failing every run as it starts."""
    work = str(tmp_path / "w")
    os.makedirs(work)
    link = os.path.join(work, "chunk_000001.safetensors")
    os.symlink(str(tmp_path / "gone"), link)
    with ChunkedRun(work, {}, 4, 2) as run:
        assert run.pending() == [0, 1] and not os.path.lexists(link)
        _save(run, 0)
        _save(run, 1)
        assert run.merge()[0].tolist() == [0, 1, 2, 3]
    assert f"{link}: unreadable chunk (FileNotFoundError" in caplog.text


def test_a_folder_named_as_a_chunk_is_computed_again(tmp_path, caplog):
    """A folder ``chunk_000000.safetensors`` in the work folder ended the run in an IsADirectoryError (os.remove)."""
    work = str(tmp_path / "w")
    folder = os.path.join(work, "chunk_000000.safetensors")
    os.makedirs(os.path.join(folder, "inside"))
    with ChunkedRun(work, {}, 4, 2) as run:
        assert run.pending() == [0, 1] and not os.path.lexists(folder)
        _save(run, 0)
        _save(run, 1)
        assert run.merge()[0].tolist() == [0, 1, 2, 3]
    assert f"{folder}: unreadable chunk (a folder); it is computed again" in caplog.text


def test_a_run_that_is_not_entered_cannot_save_a_chunk(tmp_path):
    run = ChunkedRun(str(tmp_path / "w"), {}, 2, 1)
    with pytest.raises(RuntimeError, match="context manager"):
        run.save_chunk(0, torch.tensor([0]), torch.zeros(1, 2), [{}])
    assert not os.path.exists(str(tmp_path / "w"))


def _compute(rows, advance):
    rows = torch.tensor(list(rows))
    return rows, rows[:, None].float().repeat(1, 3), [{"row": int(r)} for r in rows]


def test_only_a_run_with_chunks_done_says_it_resumes(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=chunks.__name__)
    work = str(tmp_path / "w")
    with ChunkedRun(work, {}, 4, 2) as run:
        run.run_pending(_compute, "x", progress=False)
    assert "resuming" not in caplog.text
    with ChunkedRun(work, {}, 4, 2) as run:
        os.remove(run.chunk_path(1))
        run.run_pending(_compute, "x", progress=False)
    assert f"{work}: resuming, 1/2 chunks already done" in caplog.text


def _recording_bar(monkeypatch):
    seen = {"initial": [], "updates": []}

    class Recording(chunks.tqdm):
        def __init__(self, *args, **kwargs):
            seen["initial"].append(kwargs.get("initial"))
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            seen["updates"].append(n)
            return super().update(n)

    monkeypatch.setattr(chunks, "tqdm", Recording)
    return seen


def test_a_resumed_bar_starts_at_the_pairs_already_done(tmp_path, monkeypatch):
    seen = _recording_bar(monkeypatch)
    with ChunkedRun(str(tmp_path / "w"), {}, 10, 4) as run:
        _save(run, 1)
        run.run_pending(_compute, "x", progress=False)
    assert seen["initial"] == [4] and seen["updates"] == [4, 2]


def test_a_step_back_within_a_chunk_does_not_move_the_bar_back(tmp_path, monkeypatch):
    seen = _recording_bar(monkeypatch)

    def compute(rows, advance):
        advance(2)
        advance(-5)
        return _compute(rows, advance)

    with ChunkedRun(str(tmp_path / "w"), {}, 4, 4) as run:
        run.run_pending(compute, "x", progress=False)
    assert seen["updates"] == [2, 0, 2]


# ------------------------------------------------------------------------------------------------- save_chunk, merge


@pytest.mark.parametrize("rows, emb", [(torch.tensor([0, 1]), torch.zeros(2)),
                                       (torch.tensor([0, 1]), torch.zeros(3, 2))],
                         ids=["one_dimensional", "one_row_more"])
def test_a_chunk_whose_embeddings_do_not_match_its_rows_is_refused(tmp_path, rows, emb):
    with ChunkedRun(str(tmp_path / "w"), {}, 4, 2) as run:
        with pytest.raises(ValueError, match=re.escape(f"chunk 0: rows (2,) vs emb {tuple(emb.shape)}")):
            run.save_chunk(0, rows, emb, [{}, {}])
        assert run.pending() == [0, 1]


def test_the_merge_gives_int64_rows_and_float32_embeddings_whatever_was_saved(tmp_path):
    with ChunkedRun(str(tmp_path / "w"), {}, 4, 2) as run:
        run.save_chunk(0, torch.tensor([0, 1], dtype=torch.int32), torch.tensor([[0.5], [1.5]], dtype=torch.bfloat16),
                       [{"row": 0}, {"row": 1}])
        run.save_chunk(1, torch.tensor([3], dtype=torch.int16), torch.tensor([[2.25]], dtype=torch.float64),
                       [{"row": 3}])
        rows, emb, records = run.merge()
    assert rows.dtype == torch.int64 and rows.tolist() == [0, 1, 3]
    assert emb.dtype == torch.float32 and emb[:, 0].tolist() == [0.5, 1.5, 2.25]
    assert [r["row"] for r in records] == [0, 1, 3]


def test_merging_before_every_chunk_is_saved_names_the_missing_chunks(tmp_path):
    with ChunkedRun(str(tmp_path / "w"), {}, 6, 2) as run:
        _save(run, 1)
        with pytest.raises(RuntimeError, match=r"chunks \[0, 2\]\.\.\. not finished"):
            run.merge()


def test_a_chunk_where_every_pair_failed_merges_whatever_its_width(tmp_path):
    """A chunk of no successful pair may come back as an empty [0, 0] tensor (no width known): it merges with the
    [n, D] chunks, in chunk order."""
    with ChunkedRun(str(tmp_path / "w"), {}, 6, 2) as run:
        _save(run, 2)
        run.save_chunk(1, torch.zeros(0, dtype=torch.int64), torch.zeros(0, 0), [{"row": 2}, {"row": 3}])
        _save(run, 0)
        rows, emb, records = run.merge()
    assert rows.tolist() == [0, 1, 4, 5] and emb.shape == (4, 3) and emb[:, 0].tolist() == [0, 1, 4, 5]
    assert [r["row"] for r in records] == [0, 1, 2, 3, 4, 5]


# --------------------------------------------------------------------------------------------- pipeline: paths, keys


def test_a_store_path_naming_another_kind_of_file_is_refused_a_store_is_replaced(tmp_path):
    from recbole_hnlm.llm.config import LLMConfig
    from recbole_hnlm.llm.pipeline import store_path_for
    from recbole_hnlm.llm.store import StoreError
    from safetensors.torch import save_file

    data = tmp_path / "data.csv"
    data.write_text("user,item\n1,2\n", encoding="utf-8")
    with pytest.raises(StoreError, match=r"data\.csv is not a safetensors file, so not a store this plugin wrote"):
        store_path_for(LLMConfig(store_path=str(data)), str(tmp_path), "mini")
    assert data.read_text(encoding="utf-8") == "user,item\n1,2\n"
    store = str(tmp_path / "s.safetensors")
    save_file({"x": torch.zeros(1)}, store)
    assert store_path_for(LLMConfig(store_path=store), str(tmp_path), "mini") == store
    for variant in ("semantic", "finetuned"):
        assert store_path_for(LLMConfig(variant=variant), str(tmp_path), "mini") == os.path.join(
            str(tmp_path), "mini", f"mini.hnlm-{variant}.safetensors")


def test_root_data_path_is_the_folder_above_the_dataset_however_it_is_written():
    from recbole_hnlm.llm.pipeline import root_data_path

    assert root_data_path({"data_path": "/d/ml-100k"}, "ml-100k") == "/d"
    assert root_data_path({"data_path": "/d/ml-100k/"}, "ml-100k") == "/d"
    assert root_data_path({"data_path": "/d/./ml-100k"}, "ml-100k") == "/d"
    assert root_data_path({"data_path": "/d"}, "ml-100k") == "/d"


def test_the_teacher_path_defaults_into_the_datasets_folder_or_is_the_one_given(tmp_path):
    from recbole_hnlm.llm.pipeline import teacher_path_for

    config = {"dataset": "mini", "data_path": os.path.join(str(tmp_path), "mini")}
    assert teacher_path_for(config) == os.path.join(str(tmp_path), "mini", "mini.hnlm-teacher.safetensors")
    given = str(tmp_path / "t.safetensors")
    assert teacher_path_for(dict(config, hnlm_teacher_path=given)) == given


@pytest.mark.parametrize("config, loaded", [
    (None, False), ({}, False), ({"load_col": None}, True), ({"load_col": {"inter": ["user_id"]}}, False),
    ({"load_col": {"inter": ["user_id"], "item": ["item_id"]}}, True), ({"load_col": ["item"]}, False)],
    ids=["no_config", "no_load_col", "every_file", "inter_only", "item_named", "not_a_dict"])
def test_the_item_file_counts_as_loaded_as_recbole_decides(config, loaded):
    from recbole_hnlm.llm.pipeline import item_file_loaded

    assert item_file_loaded(config) is loaded


def _write(path, lines, encoding="utf-8"):
    with open(path, "w", encoding=encoding) as handle:
        handle.write("\n".join(lines) + "\n")


def test_the_stage_reads_the_dataset_with_recboles_fields_files_encoding_and_time(tmp_path):
    """ID fields, benchmark_filename, encoding, TIME_FIELD and load_col of the run's config reach the stage's text."""
    from recbole_hnlm.llm.pipeline import load_dataset_text

    folder = tmp_path / "d"
    folder.mkdir()
    _write(folder / "d.train.inter", ["uid:token\tiid:token\twhen:float", "u1\ti1\t3", "u1\ti2\t1", "u2\ti1\t2"])
    _write(folder / "d.item", ["iid:token\ttitle:token_seq", "i1\tCaf\u00e9 Society", "i2\tHeat"], encoding="latin-1")
    config = {"USER_ID_FIELD": "uid", "ITEM_ID_FIELD": "iid", "benchmark_filename": ["train"], "encoding": "latin-1",
              "TIME_FIELD": "when", "load_col": None}
    text = load_dataset_text(config, "d", str(tmp_path), [("u1", "i1"), ("u1", "i2"), ("u2", "i1")])
    assert text.inter_paths == [str(folder / "d.train.inter")] and text.item_quoted
    assert text.pairs == [("u1", "i2"), ("u1", "i1"), ("u2", "i1")]  # u1's pairs in the order of `when`
    assert text.items["i1"].title == "Caf\u00e9 Society"


def test_id_fields_left_empty_are_recboles_defaults():
    from recbole_hnlm.llm.pipeline import _id_fields

    assert _id_fields({"USER_ID_FIELD": "", "ITEM_ID_FIELD": None}) == ("user_id", "item_id")
    assert _id_fields({"USER_ID_FIELD": "uid", "ITEM_ID_FIELD": "iid"}) == ("uid", "iid")
    assert _id_fields(None) == ("user_id", "item_id")


# ------------------------------------------------------------------------------------------ pipeline: cache, threads


def test_a_store_is_reused_only_for_its_manifest_and_only_a_check_that_says_so_warns(tmp_path, caplog):
    from recbole_hnlm.llm.pipeline import _cached
    from recbole_hnlm.llm.store import write_pair_store

    missing = str(tmp_path / "none.safetensors")
    assert _cached(missing, {"max_pairs": 3}) is False and not caplog.text
    store = str(tmp_path / "s.safetensors")
    write_pair_store(store, ["1", "2"], ["5", "6"], torch.ones(2, 3),
                     dict(variant="semantic", dataset="x", dataset_hash="h", max_pairs=3),
                     torch.float32)
    assert _cached(store, {"max_pairs": 3}) is True and not caplog.text
    assert _cached(store, {"max_pairs": 4}, say=False) is False and not caplog.text
    assert _cached(store, {"max_pairs": 4}) is False
    assert "was built with other settings or data (manifest field 'max_pairs': stored 3 != requested 4)" in caplog.text
    caplog.clear()
    broken = tmp_path / "b.safetensors"
    broken.write_bytes(b"not a store")
    assert _cached(str(broken), {"max_pairs": 3}, say=False) is False and not caplog.text
    assert _cached(str(broken), {"max_pairs": 3}) is False
    assert "b.safetensors: unreadable store, recomputing" in caplog.text


def test_hnlm_threads_1_holds_inside_the_stage_only(monkeypatch):
    from recbole_hnlm.llm.config import LLMConfig
    from recbole_hnlm.llm.pipeline import llm_threads

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with llm_threads(LLMConfig(threads=1)):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_busy_machine_hint_is_said_once_per_process(monkeypatch, caplog):
    import recbole_hnlm.llm.pipeline as pipeline
    from recbole_hnlm.llm.config import LLMConfig

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(os, "getloadavg", lambda: (7.0, 6.0, 5.0))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(pipeline, "_BUSY_MACHINE_SAID", [])
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        for _ in range(3):
            with pipeline.llm_threads(LLMConfig()):
                pass
    finally:
        torch.set_num_threads(before)
    assert caplog.text.count("HNLMRec LLM stage: the machine is busy (load average 7.0 on 2 cores)") == 1, caplog.text


# ------------------------------------------------------------------------------------ pipeline: the semantic stage


@pytest.fixture
def slice_root(tmp_path):
    from llm_helpers import write_slice

    return write_slice(str(tmp_path / "data"))


def _budget_recording_generator(tiny_tokenizer):
    """The scripted generator of llm_helpers, noting the answer budget of every profile and negative prompt."""
    from llm_helpers import make_scripted_generator

    gen = make_scripted_generator(tiny_tokenizer)
    gen.budgets = []
    answer = gen._answer

    def recording(ids, sample):
        kind = "negative" if "negative" in gen.tokenizer.decode(ids).split("assistant")[-1] else "profile"
        gen.budgets.append((kind, gen.max_new_tokens))
        return answer(ids, sample)

    gen._answer = recording
    return gen


def _semantic(root, tiny_tokenizer, tiny_encoder_dir, store=None, generator_name="scripted", **settings):
    from recbole_hnlm.llm.config import LLMConfig
    from recbole_hnlm.llm.dataset_text import DatasetText
    from recbole_hnlm.llm.models import TextEncoder
    from recbole_hnlm.llm.pipeline import run_negatives

    cfg = LLMConfig.from_config({"hnlm_variant": "semantic", "hnlm_chunk_size": 4, "hnlm_max_pairs": 6,
                                 "hnlm_generator": "scripted", **{f"hnlm_{k}": v for k, v in settings.items()}})
    gen = _budget_recording_generator(tiny_tokenizer)
    text = DatasetText(root, "mini")
    path = run_negatives(cfg, text, store, progress=False, generator=gen,
                         encoder=TextEncoder(tiny_encoder_dir, batch_size=8), generator_name=generator_name)
    return path, gen, cfg, text


def test_profiles_and_negatives_are_generated_with_their_own_answer_budgets(slice_root, tiny_tokenizer,
                                                                          tiny_encoder_dir, caplog):
    """Profiles answer within hnlm_profile_max_new_tokens, negatives within hnlm_max_new_tokens, whatever budget the
    given generator came with; the default store is the dataset's semantic one; a run whose prompts fit says nothing
    about prompts cut."""
    from recbole_hnlm.llm.store import PairEmbeddingStore

    path, gen, _, text = _semantic(slice_root, tiny_tokenizer, tiny_encoder_dir, max_new_tokens=9,
                                   profile_max_new_tokens=13, seed=5)
    assert path == os.path.join(slice_root, "mini", "mini.hnlm-semantic.safetensors")
    kinds = {kind for kind, _ in gen.budgets}
    assert kinds == {"profile", "negative"}
    assert {budget for kind, budget in gen.budgets if kind == "profile"} == {13}
    assert {budget for kind, budget in gen.budgets if kind == "negative"} == {9}
    assert "prompts were longer than the model's context" not in caplog.text
    store = PairEmbeddingStore.open(path)
    with open(path + ".texts.jsonl", encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle]
    assert [(r["user"], r["item"]) for r in records] == text.select_pairs(6, 5)
    assert set(zip(store.user_tokens, store.item_tokens)) <= set(text.select_pairs(6, 5))


def test_the_profiles_of_a_stage_leave_the_generators_budget_as_it_was(slice_root, tiny_tokenizer):
    from recbole_hnlm.llm.config import LLMConfig
    from recbole_hnlm.llm.dataset_text import DatasetText
    from recbole_hnlm.llm.pipeline import run_profiles

    gen = _budget_recording_generator(tiny_tokenizer)
    text = DatasetText(slice_root, "mini")
    cfg = LLMConfig(profile_max_new_tokens=13, max_history=3)
    pairs = text.pairs[:1]
    book, _ = run_profiles(cfg, text, pairs, gen, "scripted", progress=False)
    assert gen.max_new_tokens == 16 and {budget for _, budget in gen.budgets} == {13}
    user = pairs[0][0]
    history = {e.item for e in text.user_history(user, 3)}
    profiled = {key for kind, key in book.records if kind != "user"}
    assert len(history) == 3 and profiled == history | {pairs[0][1]}  # items of the pairs and of the histories
    assert {key for kind, key in book.records if kind == "user"} == {user}


def test_the_stores_manifest_names_the_generator_and_encoder_the_stage_used(slice_root, tiny_tokenizer,
                                                                           tiny_encoder_dir):
    from recbole_hnlm.llm.models import resolve_encoder
    from recbole_hnlm.llm.store import PairEmbeddingStore

    path, _, _, _ = _semantic(slice_root, tiny_tokenizer, tiny_encoder_dir, generator_name="scripted-v2")
    manifest = PairEmbeddingStore.open(path).manifest
    assert manifest["generator"] == "scripted-v2" and manifest["encoder"] == resolve_encoder(tiny_encoder_dir).name
    with open(os.path.join(slice_root, "mini", "mini.hnlm-profiles.jsonl"), encoding="utf-8") as handle:
        assert {json.loads(line)["generator"] for line in handle} == {"scripted-v2"}


def test_a_cache_hit_removes_the_work_folder_its_run_left_behind(slice_root, tiny_tokenizer, tiny_encoder_dir):
    path, _, _, _ = _semantic(slice_root, tiny_tokenizer, tiny_encoder_dir)
    work = path + ".work"
    os.makedirs(work)
    with open(os.path.join(work, "chunk_000000.safetensors"), "wb") as handle:
        handle.write(b"old")
    written = os.stat(path).st_mtime
    os.utime(os.path.join(work, "chunk_000000.safetensors"), (written - 60, written - 60))
    gen_path, gen, _, _ = _semantic(slice_root, tiny_tokenizer, tiny_encoder_dir)
    assert gen_path == path and not gen.budgets and not os.path.exists(work)


def test_prompt_versions_name_the_item_profile_template_only_when_item_profiles_are_written():
    from recbole_hnlm.llm.config import LLMConfig
    from recbole_hnlm.llm.pipeline import _prompt_versions

    assert set(_prompt_versions(LLMConfig())) == {"user_profile", "hard_negative", "item_profile"}
    assert set(_prompt_versions(LLMConfig(item_profiles=False))) == {"user_profile", "hard_negative"}


@pytest.mark.parametrize("variant", ["semantic", "finetuned"])
def test_ensure_negatives_hands_on_the_split_given_and_progress(variant, tmp_path, slice_root, monkeypatch):
    """The RecBole call form with train_pairs given reads those pairs, not the dataset's; progress=False (the
    run's show_progress) reaches the stage of either variant."""
    from recbole.config import Config
    from recbole.data import create_dataset

    import recbole_hnlm.llm.finetune_pipeline as finetune_pipeline
    import recbole_hnlm.llm.pipeline as pipeline

    seen = {}

    def stage(cfg, text, path, progress=True):
        seen.update(variant=cfg.variant, pairs=text.pairs, path=path, progress=progress)
        return path

    monkeypatch.setattr(pipeline, "run_negatives", stage)
    monkeypatch.setattr(finetune_pipeline, "ensure_finetuned", stage)
    config = Config(model="BPR", dataset="mini", config_dict={"data_path": slice_root, "show_progress": False,
                                                              "checkpoint_dir": str(tmp_path), "hnlm_variant": variant})
    dataset = create_dataset(config)
    given = [("196", "242"), ("22", "377")]
    path = pipeline.ensure_negatives(config, dataset, train_pairs=given, progress=False)
    assert path == os.path.join(slice_root, "mini", f"mini.hnlm-{variant}.safetensors")
    assert seen == dict(variant=variant, pairs=given, path=path, progress=False)


def test_the_stages_generator_takes_the_budget_asked_and_the_seed(tiny_llama_dir):
    from recbole_hnlm.errors import ConfigError
    from recbole_hnlm.llm.config import LLMConfig
    from recbole_hnlm.llm.pipeline import _generator

    cfg = LLMConfig(generator=tiny_llama_dir, seed=7, max_new_tokens=48, gen_batch_size=3, retries=1)
    gen, _ = _generator(cfg, 11, progress=False)
    assert (gen.max_new_tokens, gen.seed, gen.batch_size, gen.retries) == (11, 7, 3, 1)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="hnlm_generator: 4-bit loading"):
            _generator(LLMConfig(generator=tiny_llama_dir, load_in_4bit=True), 11)


def test_without_item_profiles_the_stage_writes_user_profiles_only(slice_root, tiny_tokenizer):
    from recbole_hnlm.llm.config import LLMConfig
    from recbole_hnlm.llm.dataset_text import DatasetText
    from recbole_hnlm.llm.pipeline import run_profiles

    text = DatasetText(slice_root, "mini")
    book, _ = run_profiles(LLMConfig(item_profiles=False, dtype="bfloat16"), text, text.pairs[:3],
                           _budget_recording_generator(tiny_tokenizer), "scripted", progress=False)
    assert {kind for kind, _ in book.records} == {"user"}
    assert {record["settings"]["compute"] for record in book.records.values()} == {"bfloat16"}


def test_hnlm_max_reviews_decides_the_item_profile_prompts(tmp_path, tiny_tokenizer):
    from recbole_hnlm.llm.config import LLMConfig
    from recbole_hnlm.llm.dataset_text import DatasetText
    from recbole_hnlm.llm.pipeline import run_profiles

    shas = []
    for max_reviews in (1, 2):
        root = tmp_path / f"r{max_reviews}"
        (root / "d").mkdir(parents=True)
        _write(root / "d" / "d.inter", ["user_id:token\titem_id:token\treview:token_seq", "u1\ti1\tgripping heist",
                                        "u2\ti1\tslow ending", "u2\ti2\tfine"])
        _write(root / "d" / "d.item", ["item_id:token\ttitle:token_seq", "i1\tHeat", "i2\tFargo"])
        text = DatasetText(str(root), "d")
        book, _ = run_profiles(LLMConfig(max_reviews=max_reviews), text, text.pairs[:1],
                               _budget_recording_generator(tiny_tokenizer), "scripted", progress=False)
        shas.append(book.records[("item", "i1")]["input_sha"])
    assert shas[0] != shas[1]


def test_a_semantic_store_in_a_read_only_folder_is_refused_before_any_profile(slice_root, tmp_path, tiny_tokenizer,
                                                                               tiny_encoder_dir, monkeypatch):
    from llm_helpers import simulate_read_only
    from recbole_hnlm.errors import ConfigError

    read_only = tmp_path / "ro"
    read_only.mkdir()
    simulate_read_only(monkeypatch, read_only)
    with pytest.raises(ConfigError, match=r"hnlm_store_path: .*s\.safetensors cannot be written"):
        _semantic(slice_root, tiny_tokenizer, tiny_encoder_dir, store=str(read_only / "s.safetensors"))
    assert not os.path.exists(os.path.join(slice_root, "mini", "mini.hnlm-profiles.jsonl"))
