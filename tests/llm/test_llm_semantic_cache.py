"""Semantic store and profiles: what makes a cached artifact stale, and what a killed run leaves behind."""
import json
import os

import pytest
import torch

from llm_helpers import make_scripted_generator, write_slice
from recbole_hnlm.llm.config import LLMConfig
from recbole_hnlm.llm.dataset_text import DatasetText
from recbole_hnlm.llm.models import TextEncoder
from recbole_hnlm.llm.pipeline import run_negatives
from recbole_hnlm.llm.profiles import ProfileBook
from recbole_hnlm.llm.store import PairEmbeddingStore


def _run(root, store, tiny_tokenizer, tiny_encoder_dir, on_chunk=None, **overrides):
    """The semantic variant on ``root``'s mini dataset with the scripted generator (answers = hash of the prompt)."""
    settings = {"hnlm_variant": "semantic", "hnlm_chunk_size": 7, "hnlm_max_pairs": 20, "hnlm_generator": "scripted"}
    settings.update({f"hnlm_{k}": v for k, v in overrides.items()})
    cfg = LLMConfig.from_config(settings)
    return run_negatives(cfg, DatasetText(root, "mini"), store, progress=False, on_chunk=on_chunk,
                         generator=make_scripted_generator(tiny_tokenizer),
                         encoder=TextEncoder(tiny_encoder_dir, batch_size=8), generator_name="scripted")


def _profiles(root):
    return os.path.join(root, "mini", "mini.hnlm-profiles.jsonl")


@pytest.fixture
def root(tmp_path):
    return write_slice(str(tmp_path / "data"))


def test_store_dtype_and_item_file_are_part_of_the_cache_key(root, tmp_path, tiny_tokenizer, tiny_encoder_dir):
    store = str(tmp_path / "s.safetensors")
    _run(root, store, tiny_tokenizer, tiny_encoder_dir)
    assert PairEmbeddingStore.open(store).emb.dtype == torch.float16
    chunks = []
    _run(root, store, tiny_tokenizer, tiny_encoder_dir, on_chunk=chunks.append)
    assert chunks == []  # same request: a cache hit
    _run(root, store, tiny_tokenizer, tiny_encoder_dir, on_chunk=chunks.append, store_dtype="float32")
    assert chunks and PairEmbeddingStore.open(store).emb.dtype == torch.float32
    # new titles in the .item file reach every prompt: the store is computed again
    item_file = os.path.join(root, "mini", "mini.item")
    with open(item_file, encoding="utf-8") as handle:
        header, *rows = handle.read().splitlines()
    with open(item_file, "w", encoding="utf-8") as handle:
        handle.write("\n".join([header] + [row.replace("\t", "\tRenamed ", 1) for row in rows]) + "\n")
    chunks.clear()
    _run(root, store, tiny_tokenizer, tiny_encoder_dir, on_chunk=chunks.append, store_dtype="float32")
    assert chunks


def test_without_item_profiles_no_stored_item_profile_reaches_the_prompts(tmp_path, tiny_tokenizer, tiny_encoder_dir):
    """hnlm_item_profiles=False describes items by their raw attributes even when an earlier run wrote item
    profiles into the same profiles file: the store equals one computed where no item profile was ever made."""
    used, fresh = write_slice(str(tmp_path / "used")), write_slice(str(tmp_path / "fresh"))
    _run(used, str(tmp_path / "with.safetensors"), tiny_tokenizer, tiny_encoder_dir)
    assert any(json.loads(line)["kind"] == "item" for line in open(_profiles(used), encoding="utf-8"))
    _run(used, str(tmp_path / "a.safetensors"), tiny_tokenizer, tiny_encoder_dir, item_profiles=False)
    _run(fresh, str(tmp_path / "b.safetensors"), tiny_tokenizer, tiny_encoder_dir, item_profiles=False)
    a, b = (PairEmbeddingStore.open(str(tmp_path / f"{name}.safetensors")) for name in "ab")
    assert a.num_pairs > 0 and a.user_tokens == b.user_tokens and torch.equal(a.emb, b.emb)
    texts = [open(str(tmp_path / f"{n}.safetensors.texts.jsonl"), encoding="utf-8").read() for n in "ab"]
    assert texts[0] == texts[1]


def test_profiles_are_generated_again_when_their_settings_change(root, tmp_path, tiny_tokenizer, tiny_encoder_dir):
    _run(root, str(tmp_path / "a.safetensors"), tiny_tokenizer, tiny_encoder_dir)
    first = sum(1 for _ in open(_profiles(root), encoding="utf-8"))
    _run(root, str(tmp_path / "b.safetensors"), tiny_tokenizer, tiny_encoder_dir, max_history=15)
    assert sum(1 for _ in open(_profiles(root), encoding="utf-8")) == first  # same settings: reused
    _run(root, str(tmp_path / "c.safetensors"), tiny_tokenizer, tiny_encoder_dir, profile_max_new_tokens=40)
    records = [json.loads(line) for line in open(_profiles(root), encoding="utf-8")]
    assert len(records) == 2 * first  # every profile again, failures included
    assert {r["settings"]["max_new_tokens"] for r in records} == {96, 40}


def test_a_line_cut_by_a_killed_run_does_not_swallow_the_next_record(tmp_path):
    path = str(tmp_path / "p.jsonl")
    book = ProfileBook(path)
    book.append([dict(kind="user", key=str(k), ok=True, summarization=f"s{k}") for k in (1, 2)])
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"kind": "user", "key": "3", "ok": tr')  # the kill came mid-record
    ProfileBook(path).append([dict(kind="user", key="4", ok=True, summarization="s4")])
    assert sorted(key for _, key in ProfileBook(path).records) == ["1", "2", "4"]
    with open(path, encoding="utf-8") as handle:
        assert all(json.loads(line) for line in handle)


def test_the_stage_keeps_its_threads_to_itself(root, tmp_path, tiny_tokenizer, tiny_encoder_dir):
    """hnlm_threads holds inside the stage (read at every finished chunk) and the thread count before it comes back
    after it; only the latter was checked, so a stage ignoring hnlm_threads passed."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    inside = []
    try:
        _run(root, str(tmp_path / "s.safetensors"), tiny_tokenizer, tiny_encoder_dir, threads=1,
             on_chunk=lambda k: inside.append(torch.get_num_threads()))
        assert inside and set(inside) == {1}
        assert torch.get_num_threads() == 2  # the CF training after it runs as it would after a cache hit
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("threads, load, cores, busy", [
    (2, 3.1, 2, True), (2, 2.5, 2, False), (2, 2.51, 2, True), (1, 9.0, 2, False), (8, 8.4, 8, False),
    (8, 9.0, 8, True), (2, None, 2, False), (2, 5.0, None, False)])
def test_busy_machine_hint_needs_several_threads_and_a_load_above_the_cores(threads, load, cores, busy):
    from recbole_hnlm.llm.throughput import busy_machine_hint

    hint = busy_machine_hint(threads, load, cores)
    assert (hint is not None) == busy
    if busy:
        assert f"load average {load:.1f} on {cores} cores" in hint and f"runs {threads} torch threads" in hint
        assert "hnlm_threads=1" in hint


def test_a_stage_on_a_busy_cpu_with_default_threads_says_one_thread_may_be_faster(root, tmp_path, tiny_tokenizer,
                                                                                   tiny_encoder_dir, caplog,
                                                                                   monkeypatch):
    """Under a load of 5 on 2 cores the main command's embedding ran 17 pairs/s with torch's 2 threads and 90 with
    hnlm_threads=1, without a word about it; the stage now says so once per process, and not with hnlm_threads set."""
    import logging

    import recbole_hnlm.llm.pipeline as pipeline

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the hint is for CPU stages
    monkeypatch.setattr(os, "getloadavg", lambda: (7.0, 6.0, 5.0))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(pipeline, "_BUSY_MACHINE_SAID", [])
    caplog.set_level(logging.WARNING)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _run(root, str(tmp_path / "set.safetensors"), tiny_tokenizer, tiny_encoder_dir, threads=2)
        assert "machine is busy" not in caplog.text  # the user chose the threads
        _run(root, str(tmp_path / "a.safetensors"), tiny_tokenizer, tiny_encoder_dir)
        _run(root, str(tmp_path / "b.safetensors"), tiny_tokenizer, tiny_encoder_dir)
    finally:
        torch.set_num_threads(before)
    assert caplog.text.count("the machine is busy (load average 7.0 on 2 cores) and the LLM stage runs 2 torch "
                             "threads") == 1
    assert "hnlm_threads=1 (--hnlm_threads=1) makes it use one" in caplog.text


def test_a_kill_while_writing_leaves_no_store_without_its_texts(root, tmp_path, tiny_tokenizer, tiny_encoder_dir,
                                                              monkeypatch):
    import recbole_hnlm.llm.semantic as semantic

    store = str(tmp_path / "s.safetensors")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(semantic, "write_text_atomic", killed)
    with pytest.raises(KeyboardInterrupt):
        _run(root, store, tiny_tokenizer, tiny_encoder_dir)
    assert not os.path.exists(store)  # no cache hit on the next run: it finishes the job
    monkeypatch.undo()
    chunks = []
    _run(root, store, tiny_tokenizer, tiny_encoder_dir, on_chunk=chunks.append)
    assert chunks == [] and os.path.exists(store + ".texts.jsonl") and not os.path.exists(store + ".work")


def test_profiles_are_saved_per_generate_batch(tiny_tokenizer, tmp_path):
    """Profiles were appended every 32 prompts whatever the batch size: a kill lost up to 31 finished profiles
    (about 4 minutes of ml-100k item profiles on 2 cores). Now every batch is on disk as soon as it finishes."""
    from recbole_hnlm.llm.profiles import ProfileBook, _generate_kind
    from recbole_hnlm.llm.prompts import PromptTemplate

    generator = make_scripted_generator(tiny_tokenizer)
    generator.batch_size, batches = 4, []
    generate = generator.generate

    def killed_in_third_batch(prompts, **kwargs):
        batches.append(len(prompts))
        if len(batches) == 3:
            raise KeyboardInterrupt
        return generate(prompts, **kwargs)

    generator.generate = killed_in_third_batch
    book = ProfileBook(str(tmp_path / "profiles.jsonl"))
    keys = [f"i{k}" for k in range(10)]
    with pytest.raises(KeyboardInterrupt):
        _generate_kind("item", keys, [f"item {k} profile please" for k in keys], generator,
                       PromptTemplate.load("item_profile.v1"), book, "scripted", {}, progress=False)
    assert batches == [4, 4, 2] and len(ProfileBook(book.path).records) == 8


def test_max_pairs_of_every_pair_names_the_store_of_every_pair(root, tmp_path, tiny_tokenizer, tiny_encoder_dir):
    """``max_pairs`` at or above the number of training pairs selects them all, as ``max_pairs: 0`` does: the
    store records 0 and the other request is a cache hit (it recorded the number given, so it was computed again)."""
    store = str(tmp_path / "s.safetensors")
    _run(root, store, tiny_tokenizer, tiny_encoder_dir, max_pairs=10 ** 6)
    n_pairs = len(DatasetText(root, "mini").pairs)  # the store holds those with an accepted answer
    assert PairEmbeddingStore.open(store).manifest["max_pairs"] == 0
    from recbole_hnlm.llm.store import split_sha256

    assert PairEmbeddingStore.open(store).manifest["split_hash"] == split_sha256(DatasetText(root, "mini").pairs)
    for max_pairs in (0, n_pairs):
        chunks = []
        _run(root, store, tiny_tokenizer, tiny_encoder_dir, on_chunk=chunks.append, max_pairs=max_pairs)
        assert chunks == [], max_pairs
    chunks = []
    _run(root, store, tiny_tokenizer, tiny_encoder_dir, on_chunk=chunks.append, max_pairs=n_pairs - 1)
    assert chunks and PairEmbeddingStore.open(store).manifest["max_pairs"] == n_pairs - 1


def test_a_long_semantic_run_says_so_before_it_starts(root, tmp_path, tiny_tokenizer, tiny_encoder_dir, caplog,
                                                      monkeypatch):
    """The semantic variant of the main command started hours of generation (about 50 on ml-100k's 80,808 pairs)
    with only a progress bar; a run of more pairs than LONG_CPU_ANSWERS on the CPU names the subset option and how
    long it takes at the measured rate (it said "hours to days" for a Yelp2018-size run of about 37 days)."""
    import logging

    import recbole_hnlm.llm.throughput as throughput

    monkeypatch.setattr(throughput, "LONG_CPU_ANSWERS", 10)
    caplog.set_level(logging.WARNING)
    _run(root, str(tmp_path / "few.safetensors"), tiny_tokenizer, tiny_encoder_dir, max_pairs=10)
    assert "HNLMRec semantic variant" not in caplog.text
    # the profiles before them were started without a word (about a week for a Yelp2018-size dataset)
    assert " item profiles to generate, each an LLM answer (docs/llm.md measures about 0.12 profiles/s on 2 CPU " \
        "cores: about " in caplog.text and "hnlm_item_profiles=False describes items" in caplog.text
    caplog.clear()
    _run(root, str(tmp_path / "many.safetensors"), tiny_tokenizer, tiny_encoder_dir, max_pairs=11)
    assert "HNLMRec semantic variant: 11 pairs, each an LLM answer (docs/llm.md measures about 0.4 pairs/s on 2 " \
        "CPU cores: less than a minute)" in caplog.text
    assert "hnlm_max_pairs=N with hnlm_missing=random writes a subset" in caplog.text


def test_each_kinds_profiles_warning_gives_its_own_duration_and_options(root, tmp_path, tiny_tokenizer,
                                                                        tiny_encoder_dir, caplog, monkeypatch):
    """User and item profiles are announced apart, each at the profiles rate; only items can be left out."""
    import logging
    import re

    import recbole_hnlm.llm.throughput as throughput
    from recbole_hnlm.llm.throughput import CPU_PROFILES_PER_SECOND, rough_duration

    monkeypatch.setattr(throughput, "LONG_CPU_ANSWERS", 1)
    caplog.set_level(logging.WARNING)
    _run(root, str(tmp_path / "s.safetensors"), tiny_tokenizer, tiny_encoder_dir, max_pairs=10)
    said = {}
    for message in caplog.messages:
        found = re.match(r"(\d+) (user|item) profiles to generate", message)
        if found:
            said[found.group(2)] = (int(found.group(1)), message)
    assert set(said) == {"user", "item"}
    for kind, (count, message) in said.items():
        assert f"cores: {rough_duration(count / CPU_PROFILES_PER_SECOND)})" in message, message
        assert ("hnlm_item_profiles=False" in message) == (kind == "item"), message


def test_a_gpu_machine_announces_no_cpu_duration(monkeypatch):
    """The durations are measured CPU rates: a machine with CUDA gets no such warning."""
    import torch

    from recbole_hnlm.llm.throughput import LONG_CPU_ANSWERS, long_on_this_machine

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert long_on_this_machine(LONG_CPU_ANSWERS + 1) and not long_on_this_machine(LONG_CPU_ANSWERS)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert not long_on_this_machine(10 ** 7)


def test_long_stages_are_announced_with_their_duration_in_words():
    from recbole_hnlm.llm.throughput import CPU_PROFILES_PER_SECOND, CPU_SEMANTIC_PAIRS_PER_SECOND, rough_duration

    assert rough_duration(1_276_740 / CPU_SEMANTIC_PAIRS_PER_SECOND) == "about 37 days"  # Yelp2018's training pairs
    assert rough_duration(69_716 / CPU_PROFILES_PER_SECOND) == "about 7 days"
    assert rough_duration(2_001 / CPU_SEMANTIC_PAIRS_PER_SECOND) == "about 83 minutes"
    assert rough_duration(5_400) == "about 2 hours" and rough_duration(30) == "about 1 minute"
    assert rough_duration(29.5) == rough_duration(0.5) == "less than a minute"


def test_the_failed_profiles_warning_counts_the_cached_ones_too(tmp_path, tiny_tokenizer, caplog):
    """"2/15 item profiles failed" counted the failures of this run over every profile it needed, and a fully cached
    rerun hid the earlier failures."""
    from recbole_hnlm.llm.profiles import ProfileBook, _generate_kind
    from recbole_hnlm.llm.prompts import PromptTemplate

    generator = make_scripted_generator(tiny_tokenizer, always_bad_mod=3)
    book = ProfileBook(str(tmp_path / "profiles.jsonl"))
    keys = [f"i{k}" for k in range(12)]
    prompts = [f"item {k} profile please" for k in keys]
    args = (generator, PromptTemplate.load("item_profile.v1"), book, "scripted", {})
    first = _generate_kind("item", keys[:6], prompts[:6], *args, progress=False)
    failed_first = sum(not r["ok"] for r in ProfileBook(book.path).records.values())
    assert failed_first and first.startswith(f"{failed_first}/6 item profiles failed ({failed_first} of the 6 "
                                             "generated in this run")
    both = _generate_kind("item", keys, prompts, *args, progress=False)
    failed = sum(not r["ok"] for r in ProfileBook(book.path).records.values())
    assert failed > failed_first and both.startswith(f"{failed}/12 item profiles failed ({failed - failed_first} of "
                                                     "the 6 generated in this run")
    again = _generate_kind("item", keys, prompts, *args, progress=False)
    assert again.startswith(f"{failed}/12 item profiles failed (0 of the 0 generated in this run")


def test_a_fully_cached_kind_shows_no_progress_bar(tmp_path, tiny_tokenizer, capsys):
    """Every profile cached printed an empty "user profiles: 0user" bar, read as a stage that ran."""
    from recbole_hnlm.llm.profiles import ProfileBook, _generate_kind
    from recbole_hnlm.llm.prompts import PromptTemplate

    args = (make_scripted_generator(tiny_tokenizer), PromptTemplate.load("user_profile.v1"),
            ProfileBook(str(tmp_path / "profiles.jsonl")), "scripted", {})
    keys = ["u1", "u2"]
    prompts = [f"user {k} profile please" for k in keys]
    _generate_kind("user", keys, prompts, *args, progress=True)
    assert "user profiles" in capsys.readouterr().err  # the bar the first run shows
    _generate_kind("user", keys, prompts, *args, progress=True)
    assert "user profiles" not in capsys.readouterr().err


def test_a_profile_of_earlier_settings_is_reused_after_a_record_of_others(tmp_path, tiny_tokenizer):
    """The book indexed the latest record per key only: profiles of the full split were generated again after a
    sparsity cell (another history, so another prompt) had appended its own, hours of LLM work at scale."""
    from recbole_hnlm.llm.profiles import ProfileBook, _generate_kind
    from recbole_hnlm.llm.prompts import PromptTemplate

    generator = make_scripted_generator(tiny_tokenizer)
    template, path = PromptTemplate.load("user_profile.v1"), str(tmp_path / "profiles.jsonl")
    keys = ["u1", "u2", "u3"]
    full, half = ([f"history of {k} on the {split} split" for k in keys] for split in ("full", "half"))
    for prompts in (full, half):
        _generate_kind("user", keys, prompts, generator, template, ProfileBook(path), "scripted", {}, progress=False)
    calls, lines = type(generator).calls, open(path).read().splitlines()
    book = ProfileBook(path)
    _generate_kind("user", keys, full, generator, template, book, "scripted", {}, progress=False)
    assert type(generator).calls == calls  # nothing generated again
    after = open(path).read().splitlines()
    assert after[:len(lines)] == lines and after[len(lines):] == lines[:3]  # the full split's records, appended again
    reread = ProfileBook(path)
    assert [reread.records[("user", k)] for k in keys] == [json.loads(line) for line in lines[:3]]


def test_a_last_line_without_its_newline_is_not_read(tmp_path):
    """A record a killed run had written all but its newline parsed, was read, and was then cut off the file by the
    next append: the run had used a profile the file no longer held."""
    from recbole_hnlm.llm.profiles import ProfileBook

    path = tmp_path / "profiles.jsonl"
    first = {"kind": "user", "key": "u1", "input_sha": "a", "generator": "g", "settings": {}, "ok": True,
             "summarization": "likes Heat"}
    path.write_text(json.dumps(first) + "\n" + json.dumps({**first, "input_sha": "b", "summarization": "x"}))
    book = ProfileBook(str(path))
    assert book.records[("user", "u1")]["summarization"] == "likes Heat"
    assert book.find("user", "u1", "b", "g", {}) is None
