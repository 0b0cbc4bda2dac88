"""Mutation audit of files.py, load.py and recommend.py: behaviour no other test pinned down (each test names the
mutants it kills, e.g. "F24: shutil.copyfile's target named second")."""
import errno
import hashlib
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import time
import unicodedata
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from lock_holder import held_by_another_process
from test_recommend_output import _Scored
from recbole_hnlm import files
from recbole_hnlm.errors import ConcurrentWriterError, ConfigError, WriteError


@pytest.fixture
def small_files():
    """Files of this process may grow to ``limit`` bytes (Python ignores SIGXFSZ: a write past it fails with EFBIG, as
    a full disk fails with ENOSPC); the limit is restored afterwards."""
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)

    def limit(size):  # None: as before
        resource.setrlimit(resource.RLIMIT_FSIZE, limits if size is None else (size, limits[1]))

    yield limit
    resource.setrlimit(resource.RLIMIT_FSIZE, limits)


def _mode(path):
    return os.stat(path).st_mode & 0o777


def _umask():
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


# ---- files.py: temporary names, lock and work folder names


def test_names_beside_a_folder_given_with_a_trailing_slash_are_beside_it_not_inside_it(tmp_path):
    """F10, F48, F49: ``adapter/`` gave ``adapter/.tmp-...``, ``adapter/.lock`` and ``adapter/.work``: inside the
    folder that the atomic write replaces, and a lock or work folder other than the one ``adapter`` gets."""
    folder = str(tmp_path / "adapter")
    assert os.path.dirname(files.temporary_name(folder + os.sep)) == str(tmp_path)
    assert os.path.basename(files.temporary_name(folder + os.sep)).startswith("adapter.tmp-")
    assert files.lock_file(folder + os.sep) == files.lock_file(folder) == folder + ".lock"
    assert files.work_folder(folder + os.sep) == files.work_folder(folder) == folder + ".work"


def test_the_sweep_of_dead_writers_files_leaves_other_targets_files_and_recent_ones(tmp_path):
    """F13: a dead writer's temporary file of another target whose name is as long as this one's was removed (only
    the pid after the prefix was looked at). F16: a leftover changed two minutes ago stays (its writer, in another
    container sharing the folder, may still be writing it)."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=60)
    old = time.time() - files.STALE_WRITE_SECONDS - 60
    other = tmp_path / f"resulx.json.tmp-{dead.pid}-0a0b0c0d"  # another target, of the same length
    recent = tmp_path / f"result.json.tmp-{dead.pid}-1a1b1c1d"
    stale = tmp_path / f"result.json.tmp-{dead.pid}-2a2b2c2d"
    for path, age in ((other, old), (recent, time.time() - 120), (stale, old)):
        path.write_text("half")
        os.utime(path, (age, age))
    files.write_text_atomic(str(tmp_path / "result.json"), "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["result.json", other.name, recent.name])


# ---- files.py: locks


def test_lock_open_file_waits_for_the_holder_when_told_to(tmp_path):
    """F03: ``wait=True`` took the lock without waiting (LOCK_NB), so it failed while another process held it."""
    path = str(tmp_path / "marker")
    script = ("import fcntl, sys, time\n"
              f"handle = open({path!r}, 'a+')\n"
              "fcntl.flock(handle.fileno(), fcntl.LOCK_EX)\n"
              "print('held', flush=True)\n"
              "time.sleep(1.0)\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with open(path, encoding="utf-8") as handle:
            assert files.lock_open_file(handle, wait=False) is False  # held: not taken without waiting
            started = time.monotonic()
            assert files.lock_open_file(handle, wait=True) is True  # taken once the child lets go
            assert time.monotonic() - started > 0.2
    finally:
        child.wait(timeout=60)


def test_lock_open_file_without_locks_says_false(tmp_path, monkeypatch):
    """F04: a file system without locks (ENOLCK) raised instead of answering False; F05: without fcntl (Windows) it
    answered True, as if the file were locked."""
    path = tmp_path / "marker"
    path.write_text("")

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    with open(path, encoding="utf-8") as handle:
        monkeypatch.setattr(files.fcntl, "flock", no_locks)
        assert files.lock_open_file(handle) is False
        monkeypatch.undo()
        monkeypatch.setattr(files, "fcntl", None)
        assert files.lock_open_file(handle) is False


def test_held_by_another_cannot_tell_for_a_missing_file(tmp_path):
    """F07: a file that is not there (its run removed it) is "cannot tell" (None), not "free" (False)."""
    assert files.held_by_another(str(tmp_path / "gone")) is None


def test_a_refused_writer_names_the_holders_pid(tmp_path):
    """F64b: the pid was read from where the append-mode handle stood (the end of the file), so every refusal said
    "pid unknown"."""
    path = str(tmp_path / "store.work.lock")
    with held_by_another_process(path, "4242\n", truncate=True):
        with pytest.raises(ConcurrentWriterError, match=r"another process \(pid 4242\) is writing the store"):
            with files.exclusive_lock(path, "the store"):
                pass


def test_a_refused_writer_whose_holder_wrote_no_pid_yet_says_unknown(tmp_path):
    """F64: "another process (pid ) is writing": a holder that has not written its pid yet is "unknown"."""
    path = str(tmp_path / "store.work.lock")
    with held_by_another_process(path):
        with pytest.raises(ConcurrentWriterError, match=r"another process \(pid unknown\) is writing the store"):
            with files.exclusive_lock(path, "the store"):
                pass


def _refusing_lock_files(monkeypatch, code):
    """``open`` of ``*.lock`` files for writing fails with ``code`` (root opens any file: the tests run as root)."""
    import builtins

    real_open = builtins.open

    def refusing(path, mode="r", *args, **kwargs):
        if str(path).endswith(".lock") and mode != "r":
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing)


def test_a_lock_in_a_folder_the_user_cannot_write_is_skipped(tmp_path, monkeypatch, caplog):
    """F56: a lock file that cannot be created in a folder the user may not write (EACCES, not a read-only mount)
    was then opened for reading, which failed (FileNotFoundError): a reused adapter in another user's folder could
    not be read."""
    from llm.llm_helpers import simulate_read_only  # tests/llm/llm_helpers.py

    simulate_read_only(monkeypatch, tmp_path)
    _refusing_lock_files(monkeypatch, errno.EACCES)
    ran = []
    with caplog.at_level(logging.INFO, logger=files.__name__):
        with files.exclusive_lock(str(tmp_path / "adapter.lock"), "the adapter"):
            ran.append(True)
    assert ran == [True] and "no lock taken (Permission denied); nothing in its folder can be written" in caplog.text


def test_a_lock_file_that_cannot_be_opened_for_another_reason_is_an_error(tmp_path, monkeypatch):
    """F56b: an I/O error opening an existing lock file for writing was taken for another user's lock file: the
    work went on under a reader's handle of a file the disk fails on."""
    lock = tmp_path / "adapter.lock"
    lock.write_text("")
    _refusing_lock_files(monkeypatch, errno.EIO)
    with pytest.raises(OSError, match="Input/output error"):
        with files.exclusive_lock(str(lock), "the adapter"):
            pass


def test_a_lock_error_other_than_held_is_not_taken_for_another_writer(tmp_path, monkeypatch):
    """F63: an I/O error from flock was reported as "another process (pid unknown) is writing": the user would wait
    for a writer that does not exist."""
    def failing(fd, operation):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(files.fcntl, "flock", failing)
    with pytest.raises(OSError, match="Input/output error") as raised:
        with files.exclusive_lock(str(tmp_path / "x.lock"), "x"):
            pass
    assert not isinstance(raised.value, ConcurrentWriterError)


# ---- files.py: write failures


def test_write_failed_messages_errno_and_filename():
    """F17 (the message of a refused append said the earlier version is unchanged), F18 (the errno and filename of
    the WriteError not set), F28 (EROFS and EDQUOT not taken for write failures)."""
    failure = files.write_failed("/d/p.jsonl", OSError(errno.ENOSPC, "No space left on device"), kept=False)
    assert str(failure) == ("/d/p.jsonl: cannot be written (No space left on device); the records were not added, the "
                            "earlier ones are unchanged. Free space on its disk and run the command again")
    assert failure.errno == errno.ENOSPC and failure.filename == "/d/p.jsonl"
    quota = files.write_failed("/d/a.json", OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert str(quota).endswith("; its earlier version, if any, is unchanged. Free space within the disk quota and run "
                               "the command again")
    assert files.write_failure_errno(OSError(errno.EDQUOT, "Disk quota exceeded")) == errno.EDQUOT
    assert files.write_failure_errno(OSError(errno.EROFS, "Read-only file system")) == errno.EROFS
    assert "Make its folder writable (its file system is read-only)" in str(
        files.write_failed("/d/a.json", OSError(errno.EROFS, "Read-only file system")))


def test_a_write_error_is_not_wrapped_again_by_an_outer_atomic_write(tmp_path):
    """F25: a WriteError (an OSError) of an inner write was taken for the outer file's own failure: the message named
    the outer file, not the one the disk refused."""
    inner = files.write_failed(str(tmp_path / "inner.json"), OSError(errno.ENOSPC, "No space left on device"))
    assert files.write_failure_errno(inner) is None
    with pytest.raises(WriteError) as raised:
        with files.atomic_path(str(tmp_path / "outer.json")):
            raise inner
    assert raised.value is inner


def test_a_safetensors_write_that_hits_the_file_size_limit_names_the_target(tmp_path, small_files):
    """F19 (safetensors' "(os error 27)" read for the message: it showed safetensors' own text), F26 (the errno of a
    two-digit "os error NN" misread), F34 (a SafetensorError inside an atomic write passed on unnamed, with the
    temporary file's cause lost)."""
    path = str(tmp_path / "w.safetensors")
    small_files(4096)
    with pytest.raises(WriteError) as raised:
        with files.atomic_path(path) as tmp:
            save_file({"w": torch.zeros(10_000)}, tmp)
    small_files(None)
    assert str(raised.value).startswith(f"{path}: cannot be written (File too large); its earlier version")
    assert "Raise the file-size limit (ulimit -f)" in str(raised.value) and raised.value.errno == errno.EFBIG
    assert os.listdir(tmp_path) == []


def test_a_copy_into_an_atomic_write_that_hits_the_limit_is_the_targets_write_failure(tmp_path, small_files):
    """F24: ``shutil.copyfile`` names its source first and the target (the temporary file) second; a copy that ran
    out of room part-way was passed on as an error about the source file."""
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(1 << 20))
    path = str(tmp_path / "copy.bin")
    small_files(64 * 1024)  # the first block fits: the error comes part-way, naming both files
    with pytest.raises(WriteError) as raised:
        with files.atomic_path(path) as tmp:
            shutil.copyfile(source, tmp)
    small_files(None)
    assert str(raised.value).startswith(f"{path}: cannot be written (File too large)")
    assert sorted(os.listdir(tmp_path)) == ["source.bin"]


# ---- files.py: permissions and folders


def test_atomic_writes_give_files_the_users_permissions(tmp_path):
    """F29, F38: files created 0600 (as safetensors and peft write them) kept 0600, unreadable to the group that
    reads the user's other results."""
    path = str(tmp_path / "w.bin")
    with files.atomic_path(path) as tmp:
        os.close(os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600))
    assert _mode(path) == 0o666 & ~_umask()
    folder = str(tmp_path / "adapter")
    with files.atomic_folder(folder) as tmp:
        os.close(os.open(os.path.join(tmp, "adapter_model.safetensors"), os.O_CREAT | os.O_WRONLY, 0o600))
    assert _mode(os.path.join(folder, "adapter_model.safetensors")) == 0o666 & ~_umask()


def test_ctrl_c_between_the_renames_of_a_folder_puts_the_earlier_folder_back(tmp_path, monkeypatch):
    """F42: Ctrl-C after the earlier folder was moved aside and before the new one was renamed into place left no
    folder, and the earlier one, moved aside, was then removed: both versions lost."""
    folder = str(tmp_path / "x.hnlm-adapter")
    with files.atomic_folder(folder) as tmp:
        (tmp_path / tmp / "hybrid.json").write_text("old")
    real, calls = os.replace, []

    def interrupted(source, target):
        calls.append(source)
        if len(calls) == 2:  # the new folder's rename
            raise KeyboardInterrupt
        return real(source, target)

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        with files.atomic_folder(folder) as tmp:
            (tmp_path / tmp / "hybrid.json").write_text("new")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["x.hnlm-adapter"]
    assert (tmp_path / "x.hnlm-adapter" / "hybrid.json").read_text() == "old"


def test_an_atomic_write_creates_the_folders_on_the_way(tmp_path):
    """F35: a file in a folder not made yet (a new checkpoint_dir, a store path of the user's) failed with
    FileNotFoundError for its temporary file."""
    path = tmp_path / "new" / "deeper" / "r.json"
    files.write_json_atomic(str(path), {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1} and os.listdir(path.parent) == ["r.json"]


def test_json_is_written_with_sorted_keys(tmp_path):
    """F47: keys in insertion order: equal results written by two runs differed byte for byte."""
    path = tmp_path / "r.json"
    files.write_json_atomic(str(path), {"b": 1, "a": {"d": 2, "c": 3}})
    assert path.read_text() == '{\n  "a": {\n    "c": 3,\n    "d": 2\n  },\n  "b": 1\n}\n'


# ---- files.py: stale work folders


def _work_beside(tmp_path, ages, sub_ages=()):
    """A finished artifact and its work folder with files ``ages`` seconds older than it (negative: newer), and in
    its subfolder files ``sub_ages`` seconds older."""
    artifact = tmp_path / "s.safetensors"
    artifact.write_bytes(b"done")
    written = os.path.getmtime(artifact)
    work = tmp_path / "s.safetensors.work"
    for folder, folder_ages in ((work, ages), (work / "sub", sub_ages)):
        folder.mkdir(parents=True, exist_ok=True)
        for k, age in enumerate(folder_ages):
            path = folder / f"chunk_{k}.safetensors"
            path.write_bytes(b"x")
            os.utime(path, (written - age, written - age))
    return str(artifact), work


def test_stale_work_is_kept_when_any_file_in_it_is_newer_even_in_a_subfolder(tmp_path):
    """F52b: one newer file among older ones was not enough to keep the folder; F54: a newer file in a subfolder was
    not looked at."""
    for ages, sub_ages in (((60, -60, 60), ()), ((60,), (60, -60))):
        artifact, work = _work_beside(tmp_path, ages, sub_ages)
        files.discard_stale_work(artifact)
        assert work.is_dir(), (ages, sub_ages)
        shutil.rmtree(work)
    artifact, work = _work_beside(tmp_path, (60, 60), (60,))
    files.discard_stale_work(artifact)
    assert not work.exists()


def test_stale_work_written_in_the_same_instant_as_the_artifact_is_removed(tmp_path):
    """F52: the last chunk, written within the file system's time resolution of the store, kept the folder for good
    (nothing in it is newer than the store)."""
    artifact, work = _work_beside(tmp_path, (0,))
    files.discard_stale_work(artifact)
    assert not work.exists()


def test_stale_work_holding_a_dangling_link_is_removed(tmp_path):
    """A dangling link in the work folder (a folder copied without its targets) ended a cache hit in a
    FileNotFoundError traceback: its age was read through the link. It is judged by the link's own age."""
    artifact, work = _work_beside(tmp_path, (60,))
    link = work / "chunk_9.safetensors"
    os.symlink(tmp_path / "gone", link)
    written = os.path.getmtime(artifact)
    os.utime(link, (written - 60, written - 60), follow_symlinks=False)
    files.discard_stale_work(artifact)
    assert not work.exists()


# ---- files.py: digests and safetensors heads


def test_file_sha256_reads_past_the_first_block(tmp_path):
    """F65: only the first MiB was hashed: two checkpoints differing after it had one digest."""
    path = tmp_path / "big.bin"
    data = os.urandom(3 * (1 << 20) + 5)
    path.write_bytes(data)
    assert files.file_sha256(str(path)) == hashlib.sha256(data).hexdigest()


def test_is_safetensors_file_tells_safetensors_heads_from_other_files(tmp_path):
    """F66, F66b, F66c: a head whose ninth byte is no ``{``, a file of eight bytes, a zero or absurd header length."""
    real = tmp_path / "w.safetensors"
    save_file({"w": torch.zeros(2)}, str(real))
    assert files.is_safetensors_file(str(real))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(real.read_bytes()[:9])  # a damaged store: still a safetensors head, replaced by the next write
    assert files.is_safetensors_file(str(cut))
    for name, head in (("csv", (40).to_bytes(8, "little") + b"user"), ("eight", real.read_bytes()[:8]),
                       ("zero", (0).to_bytes(8, "little") + b"{"), ("huge", (1 << 40).to_bytes(8, "little") + b"{")):
        (tmp_path / name).write_bytes(head)
        assert not files.is_safetensors_file(str(tmp_path / name)), name
    assert not files.is_safetensors_file(str(tmp_path / "missing"))


# ---- load.py


def test_a_replaced_checkpoint_of_the_same_size_and_time_counts_as_replaced(tmp_path):
    """L13: a new file renamed over the checkpoint (as every write of a resume state is) with the same size and
    time went unseen: only its inode tells."""
    from recbole_hnlm.load import _file_version

    path, new = tmp_path / "c.safetensors", tmp_path / "c.safetensors.new"
    for target in (path, new):
        target.write_bytes(b"a" * 10)
        os.utime(target, ns=(1, 1_000_000_000))
    before = _file_version(str(path))
    os.replace(new, path)
    assert _file_version(str(path)) != before


@pytest.fixture
def mf_dns_run(fast_config, tmp_path):
    """An MF+DNS run of one epoch that wrote no resume state, on the CPU."""
    from recbole_hnlm.quick_start import run_recbole_hnlm

    return run_recbole_hnlm(model="MF", config_dict={**fast_config, "sampler": "DNS", "epochs": 1,
                                                     "save_resume_state": False,
                                                     "checkpoint_dir": str(tmp_path / "run")})


def test_loading_words_its_refusals_for_itself_and_keeps_the_runs_sampler(mf_dns_run, fast_config, tmp_path, caplog):
    """L14 (the option checks' "init_from: " left in the message: no such option was given), L15 (the backbone's
    refusal passed on unworded: "init_from: the weights ... do not fit", no word of config_dict), L01/L02 (the
    training machine's use_gpu and the run's save_resume_state reused), L04 (a checkpoint without run settings
    rebuilt with the default sampler, not the run's)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from recbole_hnlm.config import Config
    from recbole_hnlm.load import load_data_and_model

    checkpoint = mf_dns_run["checkpoint"]
    name = os.path.basename(checkpoint)
    elsewhere = {"checkpoint_dir": str(tmp_path / "eval")}
    for change, refusal in (({"split_seed": 3}, "split of seed"), ({"embedding_size": 8}, "do not fit this MF")):
        with pytest.raises(ConfigError) as raised:
            load_data_and_model(checkpoint, {**elsewhere, **change})
        message = str(raised.value)
        assert message.startswith(f"load_data_and_model({name}): ") and refusal in message
        assert "init_from" not in message and "(Options go in config_dict as {'key': value}" in message
    config, *_ = load_data_and_model(checkpoint, elsewhere)
    assert config["sampler"] == "DNS"
    assert config["save_resume_state"] is True  # the property file's, not the run's
    default = Config(model="MF", dataset=fast_config["dataset"], config_dict={"data_path": fast_config["data_path"]},
                     command_line=False)["use_gpu"]
    assert config["use_gpu"] == default and default is not fast_config["use_gpu"]  # this machine's default
    with safe_open(checkpoint, framework="pt") as handle:
        meta = json.loads(handle.metadata()["recbole_hnlm"])
    del meta["trainer"]["run_settings"]
    older = str(tmp_path / "older.safetensors")
    save_file(load_file(checkpoint), older, metadata={"recbole_hnlm": json.dumps(meta)})
    options = {k: fast_config[k] for k in ("data_path", "load_col")}
    assert load_data_and_model(older, {**options, **elsewhere})[0]["sampler"] == "DNS"


# ---- recommend.py


def _dataset(n_users, pairs=(), tokens=()):
    """What recommend reads of a RecBole dataset: id fields, user count, interactions, user tokens."""
    users, items = zip(*pairs) if pairs else ((), ())
    return SimpleNamespace(uid_field="user_id", iid_field="item_id", dataset_name="toy", user_num=n_users,
                           inter_feat={"user_id": torch.tensor(users, dtype=torch.long),
                                       "item_id": torch.tensor(items, dtype=torch.long)},
                           field2token_id={"user_id": {"[PAD]": 0, **{t: k for k, t in enumerate(tokens, 1)}}})


def test_seen_items_when_the_last_users_have_no_interactions():
    """R01: the offsets were one row short when the highest user ids had no interactions (bincount stops at the
    highest id seen): building SeenItems failed."""
    from recbole_hnlm.recommend import SeenItems

    seen = SeenItems(_dataset(6, pairs=[(2, 1), (1, 3), (2, 4)]))
    assert seen.offsets.tolist() == [0, 0, 1, 3, 3, 3, 3]
    rows, items = seen.positions(torch.tensor([5, 2, 4]))
    assert sorted(zip(rows.tolist(), items.tolist())) == [(1, 1), (1, 4)]


def test_nan_scores_are_counted_in_the_warning_and_infinite_scores_stay_infinite(caplog):
    """R03: beside NaN scores, a score of +inf became the largest float (3.40282e+38 in the file); R04, R05: the
    warning's counts (scores, then users) swapped, or no warning."""
    from recbole_hnlm.recommend import top_k

    nan, inf = float("nan"), float("inf")
    table = torch.tensor([[0.0, nan, nan, inf, 1.0], [0.0, 2.0, nan, 1.0, 3.0], [0.0, 1.0, 2.0, 3.0, 4.0]])
    with caplog.at_level(logging.WARNING, logger="recbole_hnlm.recommend"):
        values, items = top_k(_Scored(table), torch.tensor([0, 1, 2]), 2)
    assert "recommend: 3 scores of 2 users are NaN" in caplog.text
    assert items.tolist() == [[3, 4], [4, 1], [4, 3]] and values[0].tolist() == [inf, 1.0]


def test_unknown_users_are_counted_all_and_shown_five_with_a_hint_only_for_real_look_alikes():
    """R12: every unknown token was listed (a users file of thousands of wrong ids gave a message as long); R25: a
    token in another Unicode normalisation was called "the dataset's" other form when that form is not in the
    dataset either; R30: a token mapped to the padding id 0 taken for a user."""
    from recbole_hnlm.recommend import _user_ids

    dataset = _dataset(3, tokens=["Ann", "Bob"])
    with pytest.raises(ConfigError) as raised:
        _user_ids(dataset, [f"x{k}" for k in range(7)] + ["Ann"])
    assert str(raised.value) == "--users: 7 user(s) not in the dataset toy, e.g. 'x0', 'x1', 'x2', 'x3', 'x4'."
    with pytest.raises(ConfigError) as raised:
        _user_ids(dataset, [unicodedata.normalize("NFD", "Zo\u00eb")])
    assert "normalisation" not in str(raised.value)
    with pytest.raises(ConfigError, match=r"1 user\(s\) not in the dataset toy, e.g. '\[PAD\]'"):
        _user_ids(dataset, ["Ann", "[PAD]"])
    assert _user_ids(dataset, ["Bob", "Ann", "Bob"]).tolist() == [2, 1, 2]


def test_special_files_are_found_through_chains_of_relative_links(tmp_path):
    """R15 (one link followed: a link to a link to a file was refused), R16 (a relative link resolved against the
    working folder: a link in another folder to a pipe was taken for a new file), R17 (a path not there yet, the
    usual --out, taken for a special file), R18 (/proc/self/fd/1 not taken for a standard stream)."""
    from recbole_hnlm.recommend import _out_problem

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "real.tsv").write_text("")
    os.mkfifo(tmp_path / "b" / "pipe")
    os.symlink("../b/real.tsv", tmp_path / "a" / "one")
    os.symlink("one", tmp_path / "a" / "two")
    os.symlink("../b/pipe", tmp_path / "a" / "to_pipe")
    os.symlink("to_pipe", tmp_path / "a" / "to_to_pipe")
    assert not _out_problem(str(tmp_path / "a" / "two"))
    assert _out_problem(str(tmp_path / "a" / "to_to_pipe"))
    assert not _out_problem(str(tmp_path / "a" / "new.tsv"))
    assert _out_problem("/proc/self/fd/1")


def test_out_through_a_loop_of_links_is_named_a_loop(tmp_path, capsys):
    """A loop of links was refused as "not a regular file (a device, pipe or standard stream ...)"."""
    import pytest

    from recbole_hnlm.recommend import main

    os.symlink("b.tsv", tmp_path / "a.tsv")
    os.symlink("a.tsv", tmp_path / "b.tsv")
    with pytest.raises(SystemExit) as stop:
        main(["--checkpoint", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "a.tsv")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f"--out {tmp_path / 'a.tsv'} is a loop of symbolic links" in err
    assert "not a regular file" not in err


def test_standard_output_redirected_to_a_file_is_refused_as_out(tmp_path):
    """R19: the special-file check on the resolved --out: /dev/stdout of a command redirected to a file resolves to
    that file, which the atomic write then replaced (the shell's redirect target swapped for a new file)."""
    redirect = tmp_path / "redirect.txt"
    with open(redirect, "w") as stdout:
        done = subprocess.run([sys.executable, "-m", "recbole_hnlm.recommend", "--checkpoint",
                               str(tmp_path / "missing.safetensors"), "--out", "/dev/stdout"],
                              stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=300)
    assert done.returncode == 2 and "--out /dev/stdout is not a regular file" in done.stderr, done.stderr


def test_recommend_shows_no_progress_bar_when_the_run_said_so(mf_dns_run, tmp_path, capsys):
    """R22: a bar on standard error whatever show_progress says (the run's False, stored in its checkpoint)."""
    from recbole_hnlm.recommend import main

    out = tmp_path / "recs.tsv"
    assert main(["--checkpoint", mf_dns_run["checkpoint"], "--out", str(out), "--users", "1,2", "--k", "2",
                 f"--checkpoint_dir={tmp_path / 'eval'}"]) == 0
    captured = capsys.readouterr()
    assert "recommend:" not in captured.err and "batch" not in captured.err
    assert f"{out}: 4 recommendations for 2 users (at most 2 each)" in captured.out
    assert main(["--checkpoint", mf_dns_run["checkpoint"], "--out", str(out), "--users", "1", "--k", "2",
                 "--show_progress=True", f"--checkpoint_dir={tmp_path / 'eval'}"]) == 0
    assert "recommend: 100%" in capsys.readouterr().err  # the bar, when asked for


# ---- bugs found on the way


def test_a_users_file_that_is_not_utf8_is_one_error_line(tmp_path, capsys):
    from recbole_hnlm.recommend import main

    users = tmp_path / "users.txt"
    users.write_bytes("Zo\u00eb\n1\n".encode("latin-1"))
    code = main(["--checkpoint", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "r.tsv"),
                 "--users_file", str(users)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: --users_file: {users} is not UTF-8 text")
    code = main(["--checkpoint", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "r.tsv"),
                 "--users_file", str(tmp_path / "nosuch.txt")])
    assert code == 2 and capsys.readouterr().err == f"error: --users_file: {tmp_path}/nosuch.txt: No such file or " \
                                                   "directory\n"


def test_a_copy_whose_source_cannot_be_read_is_not_the_targets_write_failure(tmp_path, monkeypatch):
    """The case files._about was written for (trainer.py copies a best checkpoint into an atomic write): the source's
    disk fails part-way (here os.sendfile gets EIO on its second block, as from a failing source disk). The error
    said "<target>: cannot be written (Input/output error) ... Check its disk": the wrong file and the wrong disk."""
    source = tmp_path / "source.safetensors"
    source.write_bytes(os.urandom(1 << 20))
    real, calls = os.sendfile, []

    def failing_source(out_fd, in_fd, offset, count):
        calls.append(offset)
        if len(calls) == 2:
            raise OSError(errno.EIO, "Input/output error")
        return real(out_fd, in_fd, offset, min(count, 4096))

    monkeypatch.setattr(os, "sendfile", failing_source)
    target = str(tmp_path / "best.safetensors")
    with pytest.raises(OSError) as raised:
        with files.atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
    assert len(calls) == 2
    assert not isinstance(raised.value, WriteError) and str(source) in str(raised.value)
    assert sorted(os.listdir(tmp_path)) == ["source.safetensors"]
