"""Session 45 audit (mutation testing of the day's changes): behaviour the earlier tests did not pin.

split_import's interruption message (``_unfinished_import``) for each state an import can leave; recommend's and
split_import's exit status and line for SIGTERM, delivered for real in this process; the ``recbole-hnlm`` entry point
(``recbole_hnlm.__main__.main``) runs nothing on import and names the command in its usage line; a stale name marker
is judged by its file's identity, not by its contents.
"""
import contextlib
import os
import runpy
import signal
import sys

import pytest

from recbole_hnlm import split_import
from recbole_hnlm import trainer as T


def _published_split(folder):
    """A train.txt and test.txt in LightGCN's adjacency form (``user item item ...``)."""
    (folder / "train.txt").write_text("".join(f"{u} " + " ".join(str(u + i) for i in range(6)) + "\n"
                                              for u in range(8)))
    (folder / "test.txt").write_text("".join(f"{u} {u + 6}\n" for u in range(8)))
    return str(folder / "train.txt"), str(folder / "test.txt")


@pytest.fixture
def imported(tmp_path):
    """A finished import of dataset ``pub`` under ``tmp_path/out``: (out, folder)."""
    train, test = _published_split(tmp_path)
    out = str(tmp_path / "out")
    split_import.import_split("pub", train, test, out)
    return out, os.path.join(out, "pub")


_RERUN = "the import did not finish; rerun the command"


def test_an_import_interrupted_before_writing_says_to_rerun(tmp_path):
    """Nothing written (no folder, or an empty one): a plain rerun."""
    assert split_import._unfinished_import(str(tmp_path / "out"), "pub") == _RERUN
    os.makedirs(tmp_path / "out" / "pub")
    assert split_import._unfinished_import(str(tmp_path / "out"), "pub") == _RERUN


def test_a_finished_import_beside_its_manifest_is_not_called_incomplete(imported):
    """Interrupted before it touched an earlier import (its split files and manifest all there): a plain rerun, not
    ``--overwrite`` (which only an incomplete set needs)."""
    out, folder = imported
    assert sorted(os.listdir(folder)) == sorted([f"pub.{part}.inter" for part in split_import.PARTS] +
                                                ["pub.split.json"])
    assert split_import._unfinished_import(out, "pub") == _RERUN


@pytest.mark.parametrize("kept", split_import.PARTS)
def test_any_split_file_without_the_manifest_is_an_incomplete_set(imported, kept):
    """The manifest goes first when an import replaces another: any one split file left without it (train, valid or
    test) is an incomplete set that only ``--overwrite`` replaces."""
    out, folder = imported
    os.remove(os.path.join(folder, "pub.split.json"))
    for part in split_import.PARTS:
        if part != kept:
            os.remove(os.path.join(folder, f"pub.{part}.inter"))
    assert split_import._unfinished_import(out, "pub") == (
        f"the split files in {folder} are incomplete; rerun the command with --overwrite")


def _sigterm_at(monkeypatch, module, name):
    """Deliver a real SIGTERM to this process when ``module.name`` is first called (the original runs after, unless
    the signal's handler raised)."""
    original = getattr(module, name)

    def signalled(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, signalled)


def test_split_import_stopped_by_sigterm_exits_143_and_says_overwrite(imported, tmp_path, monkeypatch, capsys):
    """SIGTERM (``timeout``, Slurm) while an import replaces an earlier one, after its manifest went: exit status
    143 (128 + 15, not Ctrl-C's 130), one last line saying the files are incomplete, and the handler given back."""
    out, folder = imported
    before = signal.getsignal(signal.SIGTERM)
    _sigterm_at(monkeypatch, split_import, "write_json_atomic")
    status = split_import.main(["--dataset", "pub", "--train", str(tmp_path / "train.txt"), "--test",
                                str(tmp_path / "test.txt"), "--out", out, "--valid", "test", "--overwrite"])
    assert status == 128 + signal.SIGTERM
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"interrupted: the split files in {folder} are incomplete; rerun the command with --overwrite")
    assert not os.path.exists(os.path.join(folder, "pub.split.json"))
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize("out", ["recs.tsv", "-"])
def test_recommend_stopped_by_sigterm_exits_143_and_names_out_as_given(out, tmp_path, monkeypatch, capsys):
    """SIGTERM while recommend loads the run: exit status 143 and one line that names ``--out`` as the user wrote
    it (a relative name stays relative), or says standard output's lines are incomplete; nothing written."""
    import recbole_hnlm.load
    from recbole_hnlm import recommend

    monkeypatch.chdir(tmp_path)
    _sigterm_at(monkeypatch, recbole_hnlm.load, "load_data_and_model")
    status = recommend.main(["--checkpoint", "run.safetensors", "--out", out])
    assert status == 128 + signal.SIGTERM
    wanted = "the lines on standard output are incomplete" if out == "-" else f"nothing was written to {out}"
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"interrupted: {wanted}; rerun the command"
    assert os.listdir(tmp_path) == []


def test_importing_the_entry_points_module_runs_nothing(monkeypatch, capsys):
    """The console script imports ``recbole_hnlm.__main__`` and calls its ``main``: the import itself parses no
    command line and exits nowhere (here with arguments that would make the run script exit)."""
    import importlib

    monkeypatch.setattr(sys, "argv", ["recbole-hnlm", "--no_such_option"])
    monkeypatch.delitem(sys.modules, "recbole_hnlm.__main__", raising=False)
    module = importlib.import_module("recbole_hnlm.__main__")
    assert callable(module.main)
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("how", ["console script", "python -m"])
def test_the_usage_line_names_the_command_that_was_run(how, monkeypatch, capsys):
    """``recbole-hnlm --help`` names ``recbole-hnlm`` (the script's name), ``python -m recbole_hnlm --help`` names
    that command, not ``__main__.py``."""
    monkeypatch.setattr(sys, "argv", [os.path.join("bin", "recbole-hnlm") if how == "console script" else
                                      "__main__.py", "--help"])
    with pytest.raises(SystemExit) as stop:
        if how == "console script":
            from recbole_hnlm.__main__ import main
            main()
        else:
            monkeypatch.delitem(sys.modules, "recbole_hnlm.__main__", raising=False)
            runpy.run_module("recbole_hnlm", run_name="__main__")
    assert stop.value.code == 0
    usage = capsys.readouterr().out.split()
    assert usage[0] == "usage:"
    assert usage[1:4][:1 if how == "console script" else 3] == (
        ["recbole-hnlm"] if how == "console script" else ["python", "-m", "recbole_hnlm"])


# --- stale name markers: judged by file identity, removed in turn ---------------------------------------------------

def _dead_pid():
    """The pid of a process that has ended (reaped)."""
    import subprocess

    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)


def _same_length_pids(dead, live):
    """Both pids written with leading zeros to one width (markers of equal size: only their identity differs)."""
    width = max(len(str(dead)), len(str(live)))
    return f"{dead:0{width}d}\n", f"{live:0{width}d}\n"


@pytest.fixture
def stale_marker(tmp_path):
    """A hard-killed run's marker (its pid ended, nothing holds its lock), and what a new run's marker of the same
    size would hold (this test's parent process: alive)."""
    marker = T._marker_of(str(tmp_path / "MF-Dec-07-2026_20-00-00"))
    stale, fresh = _same_length_pids(_dead_pid(), os.getppid())
    with open(marker, "w", encoding="utf-8") as handle:
        handle.write(stale)
    yield marker, fresh
    if os.path.abspath(marker) in T._HELD_MARKERS:
        T._drop_marker(marker)


def _replace(marker, content):
    """The stale marker's run ends for good and a new run takes the name: a new file (another inode) at its path."""
    os.remove(marker)
    with open(marker, "w", encoding="utf-8") as handle:
        handle.write(content)


def _replaced_after_first_call(monkeypatch, name, marker, fresh):
    """Wrap the trainer's ``name`` so that right after its first call returns, ``marker`` is replaced by a new file
    holding ``fresh``; the returned list gets that call's value."""
    original, first = getattr(T, name), []

    def wrapped(arg):
        value = original(arg)
        if not first:
            first.append(value)
            _replace(marker, fresh)
        return value

    monkeypatch.setattr(T, name, wrapped)
    return first


def test_a_claim_never_removes_a_marker_that_replaced_the_one_it_judged(stale_marker, monkeypatch):
    """A marker judged stale, then replaced (its holder removed it and a new run created one: neither takes the
    folder's lock) before the removal: the new marker, of the same size, is another file and stays; the claim then
    finds its run alive and returns its pid."""
    marker, fresh = stale_marker
    replaced = _replaced_after_first_call(monkeypatch, "_live_holder", marker, fresh)
    assert T._claim_marker(marker) == os.getppid()
    assert replaced == [None]  # the first look judged the killed run's marker stale
    with open(marker, encoding="utf-8") as handle:
        assert handle.read() == fresh


def test_tidying_never_removes_a_marker_that_replaced_the_one_it_judged(stale_marker, monkeypatch):
    """``_remove_if_dead`` likewise: the marker whose dead pid it read is replaced before the removal, so it removes
    nothing and says so."""
    marker, fresh = stale_marker
    replaced = _replaced_after_first_call(monkeypatch, "pid_alive", marker, fresh)
    assert T._remove_if_dead(marker) is False
    assert replaced == [False]
    with open(marker, encoding="utf-8") as handle:
        assert handle.read() == fresh


@contextlib.contextmanager
def _folder_locked_by_another_process(folder):
    """Another process holding a lock on ``folder`` itself, as one judging a marker there does (a shared lock: an
    exclusive one taken here must still wait for it)."""
    import subprocess

    script = ("import fcntl, os, sys, time\nfd = os.open(sys.argv[1], os.O_RDONLY)\nfcntl.flock(fd, fcntl.LOCK_SH)\n"
              "print('held', flush=True)\ntime.sleep(120)\n")
    child = subprocess.Popen([sys.executable, "-c", script, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        yield child
    finally:
        child.kill()
        child.wait(timeout=60)


@pytest.mark.parametrize("how", ["claim", "tidy"])
def test_a_stale_marker_is_judged_and_removed_only_in_turn(stale_marker, how):
    """While another process judges markers in the folder (its lock on the folder), a claim or a tidy-up waits for
    its turn: the stale marker is still there a second later; once that process lets go, it is taken over
    (claim) or removed (tidy)."""
    import threading

    marker, _ = stale_marker
    outcome = []
    work = (lambda: outcome.append(T._claim_marker(marker))) if how == "claim" else (
        lambda: outcome.append(T._remove_if_dead(marker)))
    with _folder_locked_by_another_process(os.path.dirname(marker)) as child:
        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        thread.join(timeout=1.0)
        waited = thread.is_alive()
        child.kill()
        child.wait(timeout=60)
        thread.join(timeout=60)
    assert waited and outcome, f"the {how} did not wait for the folder's lock" if not waited else "it never ended"
    if how == "claim":
        assert outcome == [None] and os.path.abspath(marker) in T._HELD_MARKERS
        with open(marker, encoding="utf-8") as handle:
            assert int(handle.read()) == os.getpid()
    else:
        assert outcome == [True] and not os.path.exists(marker)


def test_a_folder_that_takes_no_lock_still_has_its_stale_markers_removed(stale_marker, monkeypatch):
    """Where the folder's flock fails (a file system without locks), markers are judged and removed as before the
    lock came, not refused with the OSError."""
    import errno
    import types

    marker, _ = stale_marker

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    import fcntl

    from recbole_hnlm import files

    monkeypatch.setattr(files, "fcntl", types.SimpleNamespace(flock=no_locks, **{
        name: getattr(fcntl, name) for name in ("LOCK_EX", "LOCK_SH", "LOCK_NB", "LOCK_UN")}))
    assert T._remove_if_dead(marker) is True and not os.path.exists(marker)


def test_a_marker_another_process_holds_locked_is_never_tidied_away(stale_marker):
    """A locked marker's run is alive, whatever its pid means here (a process of another container): tidying leaves
    it, though that pid runs no process in this one."""
    from lock_holder import held_by_another_process

    marker, _ = stale_marker
    with open(marker, encoding="utf-8") as handle:
        content = handle.read()
    with held_by_another_process(marker, content, truncate=True):
        assert T._remove_if_dead(marker) is False
        assert os.path.exists(marker)
