"""Two runs writing the same LLM artifacts at once: refused (chunked stores) or serialised (the profile book)."""
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from llm_helpers import make_scripted_generator, simulate_read_only, write_slice
from lock_holder import held_by_another_process, seen_held_by_another_process
import recbole_hnlm.llm.chunks as chunks
from recbole_hnlm.errors import ConcurrentWriterError
from recbole_hnlm.llm.chunks import ChunkedRun
from recbole_hnlm.llm.profiles import ProfileBook


def _save(run, k, value):
    rows = torch.tensor(list(run.chunk_rows(k)))
    run.save_chunk(k, rows, torch.full((len(rows), 2), float(value)), [{"run": value}] * len(rows))


def test_a_second_run_into_the_same_work_folder_is_refused(tmp_path):
    """The second run (other settings) discarded the first one's folder and wrote its chunks there, and the first
    merged them into its own store."""
    work = str(tmp_path / "store.safetensors.work")
    with ChunkedRun(work, {"seed": 1}, 4, 2) as first:
        _save(first, 0, 1)
        with pytest.raises(ConcurrentWriterError, match=r"store\.safetensors\.work\.lock: another process \(pid \d+\)"):
            with ChunkedRun(work, {"seed": 2}, 4, 2):
                pass
        _save(first, 1, 1)
        rows, emb, records = first.merge()
        assert bool((emb == 1).all()) and {r["run"] for r in records} == {1}
    with ChunkedRun(work, {"seed": 2}, 4, 2) as second:  # free again: the other plan discards the chunks
        assert second.pending() == [0, 1]


def test_a_run_that_is_not_entered_cannot_write():
    run = ChunkedRun("/nonexistent/work", {}, 2, 1)
    with pytest.raises(RuntimeError, match="context manager"):
        run.run_pending(lambda rows, advance: None, "x", progress=False)


def test_profile_appends_wait_for_another_writer_to_finish_its_line(tmp_path):
    """A run appending while another was mid-line cut that line (taking it for a killed run's) and the other's
    tail then glued onto nothing: a lost or corrupt record."""
    book_path = str(tmp_path / "p.jsonl")
    other = textwrap.dedent(f"""
        import fcntl, sys, time
        with open({book_path + ".lock"!r}, "a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            with open({book_path!r}, "a") as book:
                book.write('{{"kind": "user", "key": "a", "summa')
                book.flush()
                print("ready", flush=True)
                time.sleep(1.0)
                book.write('rization": "x", "ok": true}}\\n')
    """)
    writer = subprocess.Popen([sys.executable, "-c", other], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "ready"
        ProfileBook(book_path).append([{"kind": "user", "key": "b", "summarization": "y", "ok": True}])
    finally:
        writer.wait(timeout=60)
    lines = open(book_path, encoding="utf-8").read().splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["a", "b"]
    assert set(ProfileBook(book_path).records) == {("user", "a"), ("user", "b")}


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    work = str(tmp_path / "s.work")
    with held_by_another_process(work + ".lock"):
        with pytest.raises(ConcurrentWriterError):
            with ChunkedRun(work, {}, 2, 1):
                pass
    with ChunkedRun(work, {}, 2, 1) as run:
        assert run.pending() == [0, 1] and os.path.isdir(work)


def test_the_bar_moves_within_a_chunk(tmp_path, monkeypatch):
    """Semantic chunks take ~10 minutes on a CPU (256 pairs at 0.4 pairs/s) and the bar moved once per chunk."""
    import recbole_hnlm.llm.chunks as chunks

    seen = []

    class Recording(chunks.tqdm):
        def update(self, n=1):
            seen.append(n)
            return super().update(n)

    monkeypatch.setattr(chunks, "tqdm", Recording)

    def compute(rows, advance):
        advance(1)
        advance(1)
        assert seen[-2:] == [1, 1]  # before the chunk is saved
        advance(10)  # more than the chunk has left: counted up to its end
        return torch.tensor(list(rows)), torch.zeros(len(rows), 2), [{}] * len(rows)

    with ChunkedRun(str(tmp_path / "w"), {}, 6, 4) as run:
        run.run_pending(compute, "x", progress=False)
    assert seen == [1, 1, 2, 0, 1, 1, 0, 0] and sum(seen) == 6


def test_a_run_without_a_bar_logs_its_progress(tmp_path, monkeypatch, caplog):
    """show_progress=False left an embed of 814 pairs silent for 4 minutes on a loaded CPU: a line before the first
    chunk and one every LOG_EVERY_SECONDS (here every chunk) say how far it is; a bar makes them unneeded."""
    import logging

    import recbole_hnlm.llm.chunks as chunks

    caplog.set_level(logging.INFO, logger=chunks.__name__)

    def compute(rows, advance):
        return torch.tensor(list(rows)), torch.zeros(len(rows), 2), [{}] * len(rows)

    with ChunkedRun(str(tmp_path / "w"), {}, 6, 4) as run:
        run.save_chunk(0, *compute(range(0, 4), None))  # done before: the line counts what is left
        monkeypatch.setattr(ChunkedRun, "LOG_EVERY_SECONDS", 0)
        run.run_pending(compute, "fine-tuned embed", progress=False)
    assert "fine-tuned embed: 2 of 6 pairs to compute" in caplog.text
    assert "fine-tuned embed: 6/6 pairs done" in caplog.text
    # timed: a clock moving 100 s per reading, lines at least 300 s apart: the first within the first chunk, then
    # a few, not one per step (8 advances and 2 chunk ends)
    caplog.clear()
    clock = iter(range(0, 10_000, 100))
    monkeypatch.setattr(chunks.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(ChunkedRun, "LOG_EVERY_SECONDS", 300)

    def slow(rows, advance):
        for _ in rows:
            advance(1)
        return compute(rows, advance)

    with ChunkedRun(str(tmp_path / "t"), {}, 8, 4) as run:
        run.run_pending(slow, "semantic", progress=False)
    done = [line for line in caplog.text.splitlines() if "pairs done" in line]
    assert done and done[0].endswith("semantic: 3/8 pairs done") and 2 <= len(done) <= 4, done
    caplog.clear()
    with ChunkedRun(str(tmp_path / "v"), {}, 6, 4) as run:
        run.run_pending(compute, "fine-tuned embed", progress=True)
    assert "pairs to compute" not in caplog.text and "pairs done" not in caplog.text


def test_a_file_system_without_locks_runs_unlocked_after_a_warning(tmp_path, monkeypatch, caplog):
    """NFS without lockd answers flock with ENOLCK: every LLM stage and profile append died with a traceback."""
    import errno

    import recbole_hnlm.files as files

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(files.fcntl, "flock", no_locks)
    with ChunkedRun(str(tmp_path / "w"), {}, 2, 1) as run:
        _save(run, 0, 1)
    ProfileBook(str(tmp_path / "p.jsonl")).append([{"kind": "user", "key": "a", "summarization": "x", "ok": True}])
    assert "takes no locks (No locks available)" in caplog.text
    assert caplog.text.count("takes no locks") == 1  # once per folder (a grid took a lock per cell, each warned)


def test_a_write_removes_the_temporary_files_of_dead_writers_only(tmp_path):
    """A writer killed mid-write (SIGKILL) left `<file>.tmp-<pid>` (a checkpoint's: MBs) that no later run removed.
    One whose pid runs no process here but that changed within STALE_WRITE_SECONDS stays: in another container
    sharing the folder that pid means nothing here, and its writer may still be writing it."""
    from recbole_hnlm.files import STALE_WRITE_SECONDS, atomic_folder, write_text_atomic

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=60)
    old = time.time() - STALE_WRITE_SECONDS - 60

    def leftover(name, age=old, folder=False):
        path = tmp_path / name
        path.mkdir() if folder else path.write_text("half")
        os.utime(path, (age, age))
        return name

    try:
        target = tmp_path / "result.json"
        kept = [leftover(f"result.json.tmp-{live.pid}"), leftover(f"result.json.tmp-{live.pid}-1a2b3c4d"),
                leftover("result.json.tmp-notapid"),
                leftover("result.json.tmp-99999999999999999999"),  # no such pid number: OverflowError
                leftover(f"result.json.tmp-{dead.pid}-5e6f7a8b", age=time.time())]  # being written elsewhere
        leftover(f"result.json.tmp-{dead.pid}")  # an older version's name
        leftover(f"result.json.tmp-{dead.pid}-0a0b0c0d")
        write_text_atomic(str(target), "{}")
        assert target.read_text() == "{}"
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["result.json"] + kept)
        folder = tmp_path / "adapter"
        leftover(f"adapter.tmp-{dead.pid}-0a0b0c0d", folder=True)
        with atomic_folder(str(folder)) as tmp:
            assert re.fullmatch(rf"adapter\.tmp-{os.getpid()}-[0-9a-f]{{8}}", os.path.basename(tmp))
            with open(os.path.join(tmp, "a.txt"), "w") as handle:
                handle.write("a")
        assert (folder / "a.txt").read_text() == "a" and not (tmp_path / f"adapter.tmp-{dead.pid}-0a0b0c0d").exists()
    finally:
        live.kill()
        live.wait(timeout=60)


def test_a_python_without_fcntl_runs_unlocked_after_one_warning(tmp_path, monkeypatch, caplog):
    """Windows has no fcntl: every lock was skipped without a word, while the docs promised a warning."""
    import recbole_hnlm.files as files

    monkeypatch.setattr(files, "fcntl", None)
    monkeypatch.setattr(files, "_warned_no_fcntl", [])
    with ChunkedRun(str(tmp_path / "w"), {}, 2, 1) as run:
        _save(run, 0, 1)
    ProfileBook(str(tmp_path / "p.jsonl")).append([{"kind": "user", "key": "a", "summarization": "x", "ok": True}])
    assert caplog.text.count("no advisory file locks (no fcntl module)") == 1


def test_a_cache_hit_in_a_folder_that_cannot_be_tidied_is_still_used(tmp_path, caplog):
    """A read-only folder made the optional removal of a finished artifact's leftover work folder a traceback, and
    the cached store was not used. The lock file here is a folder: opening it fails for root too."""
    import logging

    from recbole_hnlm.files import discard_stale_work, lock_file, work_folder

    artifact = tmp_path / "s.safetensors"
    os.makedirs(work_folder(str(artifact)))
    (tmp_path / "s.safetensors.work" / "plan.json").write_text("{}")
    artifact.write_bytes(b"done")
    written = os.path.getmtime(artifact)
    os.utime(tmp_path / "s.safetensors.work" / "plan.json", (written - 60, written - 60))  # older than the artifact
    os.makedirs(lock_file(work_folder(str(artifact))))
    with caplog.at_level(logging.INFO):
        discard_stale_work(str(artifact))
    assert os.path.isdir(work_folder(str(artifact))) and "left in place" in caplog.text


def test_artifacts_that_cannot_be_written_are_refused_before_the_work(tmp_path, monkeypatch):
    """A store path in a read-only folder failed after the LLM loaded and the profiles ran, in a traceback."""
    from recbole_hnlm.errors import ConfigError
    from recbole_hnlm.files import check_writable

    read_only = tmp_path / "ro"
    read_only.mkdir()
    simulate_read_only(monkeypatch, read_only)
    check_writable(str(tmp_path / "new" / "deeper" / "s.safetensors"), "hnlm_store_path")  # created when written
    for path in (read_only / "s.safetensors", read_only / "sub" / "s.safetensors"):
        with pytest.raises(ConfigError, match=rf"hnlm_store_path: .*s.safetensors cannot be written \({read_only} is "
                                              r"read-only\); give a path in a writable folder"):
            check_writable(str(path), "hnlm_store_path")


def test_a_lock_in_a_read_only_folder_is_skipped(tmp_path, monkeypatch, caplog):
    """A reused adapter in a read-only folder: taking its lock (creating <adapter>.lock) was a traceback, though
    nothing there can be written. Root opens any file, so the read-only mount's EROFS is raised for the lock."""
    import builtins
    import errno
    import logging

    from recbole_hnlm.files import exclusive_lock

    real_open = builtins.open

    def read_only_open(path, mode="r", *args, **kwargs):
        if str(path).endswith(".lock") and str(tmp_path) in str(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", read_only_open)
    ran = []
    with caplog.at_level(logging.INFO):
        with exclusive_lock(str(tmp_path / "adapter.lock"), "the adapter"):
            ran.append(True)
    assert ran == [True] and "no lock taken (Read-only file system)" in caplog.text
    monkeypatch.setattr(builtins, "open", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(OSError, match="I/O error"):  # other errors are not taken for a read-only folder
        with exclusive_lock(str(tmp_path / "other.lock"), "x"):
            pass


def test_another_users_lock_file_in_a_writable_folder_still_locks(tmp_path, monkeypatch):
    """A lock file another user created (0644) in a shared, writable folder cannot be opened for appending: the
    read-only fallback let a second writer in unlocked while the first held the lock."""
    import builtins
    import errno

    from recbole_hnlm.files import exclusive_lock

    lock = str(tmp_path / "teacher.work.lock")
    real_open = builtins.open

    def others_lock_file(path, mode="r", *args, **kwargs):
        if str(path) == lock and mode != "r":
            raise OSError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, mode, *args, **kwargs)

    with exclusive_lock(lock, "the teacher"):  # the first writer (its own file)
        monkeypatch.setattr(builtins, "open", others_lock_file)
        with pytest.raises(ConcurrentWriterError, match="another process"):
            with exclusive_lock(lock, "the teacher"):
                pass
    with exclusive_lock(lock, "the teacher"):  # once free, taken through a read-only handle
        pass


def test_check_writable_names_a_file_in_the_way(tmp_path):
    from recbole_hnlm.errors import ConfigError
    from recbole_hnlm.files import check_writable

    (tmp_path / "settings.yaml").write_text("")
    with pytest.raises(ConfigError, match=r"hnlm_teacher_path: .* \(.*settings.yaml is a file, not a folder\)"):
        check_writable(str(tmp_path / "settings.yaml" / "t.safetensors"), "hnlm_teacher_path")


def test_profiles_that_cannot_be_written_are_refused_before_the_llm_generates(tmp_path, monkeypatch):
    """The profiles file in a read-only folder failed at its first append, after the LLM had loaded and generated a
    batch."""
    from recbole_hnlm.errors import ConfigError
    from recbole_hnlm.llm.profiles import _generate_kind
    from recbole_hnlm.llm.prompts import PromptTemplate

    simulate_read_only(monkeypatch, tmp_path)
    generated = []

    class Generator:  # the LLM stage's: records what it is asked to generate
        batch_size = 4

        def generate(self, prompts, **kwargs):
            generated.append(prompts)

    with pytest.raises(ConfigError, match="the profiles file .* cannot be written"):
        _generate_kind("user", ["u1"], ["a prompt"], Generator(), PromptTemplate.load("user_profile.v1"),
                       ProfileBook(str(tmp_path / "p.jsonl")), "g", {}, progress=False)
    assert generated == []


def _compute(rows, advance):
    return torch.tensor(list(rows)), torch.zeros(len(rows), 2), [{}] * len(rows)


def _stepping(rows, advance):
    for _ in rows:
        advance(1)
    return _compute(rows, advance)


def _done_lines(caplog):
    return [line for line in caplog.text.splitlines() if "pairs done" in line]


def test_the_counts_of_a_run_of_several_chunks_add_up(tmp_path, monkeypatch, caplog):
    """Every line counts the pairs of the chunks saved before it: with a line at each step, the counts go 1, 2, ...
    up to every pair, across the three chunks."""
    caplog.set_level(logging.INFO, logger=chunks.__name__)
    monkeypatch.setattr(ChunkedRun, "LOG_EVERY_SECONDS", 0)
    with ChunkedRun(str(tmp_path / "w"), {}, 10, 4) as run:
        run.run_pending(_stepping, "semantic", progress=False)
    counts = [int(re.search(r"semantic: (\d+)/10 pairs done", line).group(1)) for line in _done_lines(caplog)]
    assert counts and counts == sorted(counts) and counts[-1] == 10 and set(range(1, 11)) <= set(counts), counts


def test_a_finished_run_and_a_run_with_a_bar_log_no_progress_lines(tmp_path, monkeypatch, caplog):
    """Nothing left to compute: no "0 of N pairs to compute" line; a bar: no lines, however long the chunks take."""
    caplog.set_level(logging.INFO, logger=chunks.__name__)
    monkeypatch.setattr(ChunkedRun, "LOG_EVERY_SECONDS", 0)
    with ChunkedRun(str(tmp_path / "w"), {}, 6, 4) as run:
        run.run_pending(_compute, "fine-tuned embed", progress=False)
    caplog.clear()
    with ChunkedRun(str(tmp_path / "w"), {}, 6, 4) as run:  # every chunk done: resumed with nothing to do
        run.run_pending(_compute, "fine-tuned embed", progress=False)
    assert "pairs to compute" not in caplog.text and not _done_lines(caplog), caplog.text
    caplog.clear()
    with ChunkedRun(str(tmp_path / "bar"), {}, 6, 4) as run:
        run.run_pending(_stepping, "fine-tuned embed", progress=True)
    assert "pairs to compute" not in caplog.text and not _done_lines(caplog), caplog.text


def test_readers_share_a_lock_and_write_no_pid_a_writer_waits_for_them(tmp_path):
    """Readers of one adapter hold its lock together; a writer is refused while they do. Readers wrote their pids
    over each other in the lock file (append mode: "123\\n456"), and a refused writer named the last one."""
    from recbole_hnlm.files import exclusive_lock

    path = str(tmp_path / "adapter.lock")
    with open(path, "w") as handle:
        handle.write("4242\n")  # the last writer's
    with exclusive_lock(path, "the adapter", shared=True), exclusive_lock(path, "the adapter", shared=True):
        assert open(path).read() == "4242\n"
        # the refusal says readers hold it: it named pid 4242, an earlier writer (a user who found that process gone
        # could take the lock for stale, delete it, and fine-tune over the adapter being read)
        with pytest.raises(ConcurrentWriterError, match="other processes are reading the adapter .readers record no "
                                                        "pid.") as refused:
            with exclusive_lock(path, "the adapter"):
                pass
        assert "4242" not in str(refused.value)
    with exclusive_lock(path, "the adapter"):
        assert open(path).read() == f"{os.getpid()}\n"


def test_temporary_names_differ_for_one_path_and_pid():
    """Two containers' writers of one path may have the same pid: their temporary files must not be one file."""
    from recbole_hnlm.files import temporary_name

    assert temporary_name("/x/a.json") != temporary_name("/x/a.json")


def test_the_llm_stage_holds_its_store_from_before_the_llm_generates(tmp_path, tiny_tokenizer, tiny_encoder_dir):
    """Concurrency fuzz: two stages on one store started together both loaded the LLM (the semantic one also wrote
    the same profiles twice), the second refused only at its chunks. While a semantic stage writes its profiles (its
    LLM loaded), another process now finds the store's work folder locked, so a second stage on the same store is
    refused before it loads its LLM; the stage itself still computes and writes the store under that lock, and
    releases it at the end."""
    from recbole_hnlm.llm.config import LLMConfig
    from recbole_hnlm.llm.dataset_text import DatasetText
    from recbole_hnlm.llm.models import TextEncoder
    from recbole_hnlm.llm.pipeline import run_negatives
    from recbole_hnlm.files import lock_file, work_folder
    from recbole_hnlm.llm.store import PairEmbeddingStore

    root, store = write_slice(str(tmp_path / "data")), str(tmp_path / "s.safetensors")
    lock = lock_file(work_folder(store))
    generator, seen = make_scripted_generator(tiny_tokenizer), []
    first_call = generator.generate

    def generate(prompts, **kwargs):  # the LLM's first prompts: what does another process see now?
        if not seen:
            seen.append(seen_held_by_another_process(lock))
        return first_call(prompts, **kwargs)

    generator.generate = generate
    cfg = LLMConfig.from_config({"hnlm_variant": "semantic", "hnlm_chunk_size": 7, "hnlm_max_pairs": 6,
                                 "hnlm_generator": "scripted"})
    run_negatives(cfg, DatasetText(root, "mini"), store, progress=False, generator=generator,
                  encoder=TextEncoder(tiny_encoder_dir, batch_size=8), generator_name="scripted")
    assert seen == [True], "another process found the store free while this one's LLM generated"
    assert PairEmbeddingStore.open(store).manifest["num_requested"] == 6
    assert not seen_held_by_another_process(lock)
