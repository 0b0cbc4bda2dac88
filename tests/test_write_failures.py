"""A write that fails with an error (full disk, file-size limit, I/O error) while the process lives on: the error
names the file, the earlier version stays usable, no temporary file is left behind."""
import errno
import os
import resource

import pytest
import torch

from recbole_hnlm import files
from recbole_hnlm.errors import WriteError


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_atomic_write_names_the_file_and_keeps_the_old_one(tmp_path):
    path = str(tmp_path / "result.json")
    files.write_json_atomic(path, {"old": 1})
    with pytest.raises(WriteError, match=r"result\.json: cannot be written \(No space left on device\)"):
        with files.atomic_path(path) as tmp:
            with open(tmp, "w") as handle:
                handle.write("partial")
            _full_disk()
    assert os.listdir(tmp_path) == ["result.json"]
    assert open(path).read() == '{\n  "old": 1\n}\n'


def test_a_folder_whose_rename_fails_keeps_the_old_folder(tmp_path, monkeypatch):
    folder = str(tmp_path / "x.hnlm-adapter")
    with files.atomic_folder(folder) as tmp:
        open(os.path.join(tmp, "hybrid.json"), "w").write("old")
    real, new = os.replace, []

    def replace(source, target):  # the rename of the new folder into place fails
        if new and source == new[0]:
            _full_disk()
        return real(source, target)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(WriteError, match="x.hnlm-adapter: cannot be written"):
        with files.atomic_folder(folder) as tmp:
            new.append(tmp)
            open(os.path.join(tmp, "hybrid.json"), "w").write("new")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["x.hnlm-adapter"]
    assert open(os.path.join(folder, "hybrid.json")).read() == "old"


def test_a_string_keyed_store_survives_a_failed_rewrite(tmp_path, monkeypatch):
    from recbole_hnlm.llm import store

    path = str(tmp_path / "s.safetensors")
    manifest = dict(variant="semantic", dataset="x", dataset_hash="h")
    store.write_pair_store(path, [f"u{i}" for i in range(4)], [f"i{i}" for i in range(4)], torch.randn(4, 8), manifest)
    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "save_file", _full_disk)
    with pytest.raises(WriteError, match="s.safetensors: cannot be written"):
        store.write_pair_store(path, [f"u{i}" for i in range(3)], [f"j{i}" for i in range(3)], torch.randn(3, 8),
                               manifest)
    monkeypatch.undo()
    assert store.PairEmbeddingStore.open(path).item_tokens == ["i0", "i1", "i2", "i3"]
    assert not [name for name in os.listdir(tmp_path) if ".tmp-" in name]


def test_a_failed_profile_append_leaves_no_cut_line_and_no_record_in_memory(tmp_path):
    from recbole_hnlm.llm.profiles import ProfileBook

    path = str(tmp_path / "p.jsonl")
    record = lambda key: dict(kind="user", key=key, input_sha="s", generator="g", settings={}, ok=True,  # noqa: E731
                              summarization="x" * 200)
    book = ProfileBook(path)
    book.append([record("a")])
    size = os.path.getsize(path)
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, limits[1]))  # Python ignores SIGXFSZ: write gets EFBIG
    try:
        with pytest.raises(WriteError, match="p.jsonl: cannot be written"):
            book.append([record("b"), record("c")])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
    assert os.path.getsize(path) == size
    assert sorted(key for _, key in book.records) == ["a"]
    assert sorted(key for _, key in ProfileBook(path).records) == ["a"]


def test_the_run_script_names_the_checkpoint_a_full_disk_refused(tmp_path, ml_slice):
    """A checkpoint write that failed (here the file-size limit, as a full disk would) ended the run with a
    safetensors traceback naming no file; now one ``error:`` line names the checkpoint, exit status 1."""
    import subprocess
    import sys

    data_path, name = ml_slice
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "run_recbole_hnlm.py")
    limit = 200 * 1024  # the log is smaller; MF's checkpoint of the slice (1,800 rows of 64 floats) is larger

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    done = subprocess.run([sys.executable, script, "--model=MF", f"--dataset={name}", f"--data_path={data_path}",
                           "--epochs=1", "--show_progress=False", f"--checkpoint_dir={tmp_path / 'saved'}",
                           "--load_col={'inter': ['user_id', 'item_id', 'rating', 'timestamp']}"],
                          capture_output=True, text=True, cwd=tmp_path, preexec_fn=small_files, timeout=300)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {tmp_path / 'saved'}{os.sep}MF-")
    assert ".safetensors: cannot be written (File too large); its earlier version, if any, is unchanged. Raise the " \
        "file-size limit (ulimit -f) and run the command again" in errors[0]
    assert not [f for f in os.listdir(tmp_path / "saved") if ".tmp-" in f]


def test_a_lock_taken_on_a_full_disk_holds_without_its_pid(tmp_path):
    """Writing the holder's pid into a lock file on a full disk ended the command with a bare OSError traceback
    before any work; the lock is held without it, and the work's own writes say which file the disk refused."""
    import subprocess
    import sys

    path = str(tmp_path / "x.lock")
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, limits[1]))  # every write that grows a file fails (EFBIG)
    try:
        with files.exclusive_lock(path, "the test's work"):
            probe = subprocess.run([sys.executable, "-c", "import sys; from recbole_hnlm.files import held_by_another;"
                                    " sys.exit(0 if held_by_another(sys.argv[1]) else 3)", path], timeout=60,
                                   preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, limits))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
    assert probe.returncode == 0  # another process sees it held
    assert os.path.getsize(path) == 0


def test_an_adapter_folder_that_is_a_link_is_replaced_without_a_stray_link(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "hybrid.json").write_text("old")
    folder = str(tmp_path / "x.hnlm-adapter")
    os.symlink("real", folder)
    with files.atomic_folder(folder) as tmp:
        open(os.path.join(tmp, "hybrid.json"), "w").write("new")
    assert sorted(os.listdir(tmp_path)) == ["real", "x.hnlm-adapter"]
    assert open(os.path.join(folder, "hybrid.json")).read() == "new" and (real / "hybrid.json").read_text() == "old"


def test_a_folder_whose_restore_fails_too_is_kept_aside(tmp_path, monkeypatch):
    folder = str(tmp_path / "x.hnlm-adapter")
    with files.atomic_folder(folder) as tmp:
        open(os.path.join(tmp, "hybrid.json"), "w").write("old")
    real, calls = os.replace, []

    def replace(source, target):  # the new folder's rename and the old one's way back both fail
        calls.append(source)
        if len(calls) >= 2:
            raise OSError(errno.EIO, "Input/output error")
        return real(source, target)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(WriteError):
        with files.atomic_folder(folder) as tmp:
            open(os.path.join(tmp, "hybrid.json"), "w").write("new")
    monkeypatch.undo()
    kept = [name for name in os.listdir(tmp_path) if name.startswith("x.hnlm-adapter.tmp-")]
    assert len(kept) == 1 and open(os.path.join(tmp_path, kept[0], "hybrid.json")).read() == "old"


def test_a_grid_stops_at_a_full_disk(tmp_path):
    from recbole_hnlm.benchmark import grid

    ran = []

    def runner(cell, *args, **kwargs):
        ran.append(cell.key)
        raise files.write_failed("/disk/MF.safetensors", OSError(errno.ENOSPC, "No space left on device"))

    with pytest.raises(WriteError):
        grid.run_grid("ml-100k", ["MF"], ["RNS", "DNS"], [1], str(tmp_path), config_dict={"epochs": 1},
                      cell_runner=runner, cell_checker=None, progress=False)
    assert len(ran) == 1


def test_a_read_error_inside_an_atomic_write_is_not_the_targets_write_failure(tmp_path):
    """A checkpoint copied from a failing disk inside an atomic write was reported as the target's write failure,
    naming the wrong file and disk; errors that are no write failure (a missing input) pass on unchanged too."""
    path = str(tmp_path / "best.safetensors")
    with pytest.raises(OSError) as raised:
        with files.atomic_path(path):
            raise OSError(errno.EIO, "Input/output error", "/other/disk/source.safetensors")
    assert not isinstance(raised.value, WriteError) and raised.value.filename == "/other/disk/source.safetensors"
    with pytest.raises(FileNotFoundError):
        with files.atomic_path(path) as tmp:
            import shutil

            shutil.copyfile(str(tmp_path / "missing"), tmp)
    with pytest.raises(WriteError, match=r"best\.safetensors: cannot be written \(Input/output error\).*Check its"):
        with files.atomic_path(path) as tmp:
            raise OSError(errno.EIO, "Input/output error", tmp)
    assert os.listdir(tmp_path) == []



def test_a_run_whose_log_file_cannot_grow_shows_one_logging_error_and_ends_with_an_error_line(tmp_path, ml_slice):
    """A disk full for every file of the run (its log too) printed logging's traceback for every record, then a
    traceback of the first file that failed (tensorboard's events or a checkpoint), with no ``error:`` line."""
    import subprocess
    import sys

    data_path, name = ml_slice
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "run_recbole_hnlm.py")

    def tiny_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    done = subprocess.run([sys.executable, script, "--model=MF", f"--dataset={name}", f"--data_path={data_path}",
                           "--epochs=2", "--show_progress=False", f"--checkpoint_dir={tmp_path / 'saved'}",
                           "--load_col={'inter': ['user_id', 'item_id', 'rating', 'timestamp']}"],
                          capture_output=True, text=True, cwd=tmp_path, preexec_fn=tiny_files, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]
    assert output.count("--- Logging error ---") == 1 and "are not shown)" in output
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors and all("cannot be written (File too large)" in line for line in errors)


def test_a_grid_stops_at_a_full_disk_outside_the_atomic_writes(tmp_path):
    """A cell that hit a full disk in a file no atomic write guards (RecBole's tensorboard events) was recorded as
    failed, and every later cell trained and failed alike; its error file, written with a plain open, then failed
    with a traceback too."""
    from recbole_hnlm.benchmark import grid

    ran = []

    def runner(cell, *args, **kwargs):
        ran.append(cell.key)
        raise OSError(errno.ENOSPC, "No space left on device", "/disk/log_tensorboard/events.out")

    with pytest.raises(WriteError, match="/disk/log_tensorboard/events.out: cannot be written"):
        grid.run_grid("ml-100k", ["MF"], ["RNS", "DNS"], [1], str(tmp_path), config_dict={"epochs": 1},
                      cell_runner=runner, cell_checker=None, progress=False)
    assert len(ran) == 1


def test_an_atomic_write_takes_a_pathlib_path(tmp_path):
    """``write_recommendations(Path(...), ...)`` failed with "'PosixPath' object has no attribute 'rstrip'" in the
    temporary name and the sweep of dead writers' files, as any ``atomic_path`` caller given a ``pathlib.Path``."""
    target = tmp_path / "out.tsv"
    (tmp_path / "out.tsv.tmp-999999999-00000000").write_text("a dead writer's leftover")
    os.utime(tmp_path / "out.tsv.tmp-999999999-00000000", (0, 0))
    with files.atomic_path(target) as tmp:
        with open(tmp, "w") as handle:
            handle.write("user_id\n")
    assert target.read_text() == "user_id\n" and os.listdir(tmp_path) == ["out.tsv"]


def test_an_atomic_write_blocked_by_what_is_in_the_way_names_the_target_not_its_temporary_file(tmp_path):
    """A folder where a file goes (or a file where a folder goes): the error named ``<path>.tmp-<pid>-...``, a name
    gone by the time the user reads it."""
    (tmp_path / "result.json").mkdir()
    with pytest.raises(IsADirectoryError) as error:
        files.write_json_atomic(str(tmp_path / "result.json"), {"new": 1})
    assert error.value.filename == str(tmp_path / "result.json") and ".tmp-" not in str(error.value)
    (tmp_path / "x.hnlm-adapter").write_text("a file")
    with pytest.raises(NotADirectoryError) as error:
        with files.atomic_folder(str(tmp_path / "x.hnlm-adapter")) as tmp:
            (tmp_path / tmp / "hybrid.json").write_text("{}")
    assert error.value.filename == str(tmp_path / "x.hnlm-adapter") and ".tmp-" not in str(error.value)
    assert sorted(os.listdir(tmp_path)) == ["result.json", "x.hnlm-adapter"]
