"""Two processes running one grid on the same ``out``: each cell runs once, in the process that locked it first.
Without the cell locks both ran every cell, and the second deleted the first's finished checkpoint folder."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from recbole_hnlm.benchmark.grid import cell_lock_path, run_grid
from recbole_hnlm.benchmark.runner import Cell

pytest.importorskip("fcntl")  # no advisory locks on Windows: the grid runs unlocked there, after a warning

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

OTHER_GRID = textwrap.dedent("""
    import os, sys, time
    sys.path[:0] = [{repo!r}, {here!r}]
    from test_grid_consistency import FakeRunner
    from recbole_hnlm.benchmark.grid import run_grid

    fake = FakeRunner()
    def runner(cell, *args, **kwargs):  # holds the cell until the first process says "go"
        open({started!r}, "w").close()
        while not os.path.exists({go!r}):
            time.sleep(0.05)
        return fake(cell, *args, **kwargs)
    run_grid("toy", ["MF"], ["RNS"], [1], {out!r}, progress=False, cell_runner=runner, cell_checker=None)
""")


def start_other_grid(tmp_path, out):
    started, go = str(tmp_path / "started"), str(tmp_path / "go")
    script = OTHER_GRID.format(repo=REPO, here=HERE, started=started, go=go, out=str(out))
    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    deadline = time.monotonic() + 120
    while not os.path.exists(started):  # the other grid holds MF-RNS-seed1's lock from here on
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("the other grid did not start its cell")
        time.sleep(0.05)
    return process, go


def test_a_cell_another_grid_runs_is_put_off_then_taken_from_its_result(tmp_path, capsys):
    from test_grid_consistency import FakeRunner

    out = tmp_path / "out"
    other, go = start_other_grid(tmp_path, out)
    fake = FakeRunner()

    def runner(cell, *args, **kwargs):  # this grid's own cell lets the other grid finish its one
        open(go, "w").close()
        return fake(cell, *args, **kwargs)

    try:
        summary = run_grid("toy", ["MF"], ["RNS"], [1, 2], str(out), progress=False, cell_runner=runner,
                           cell_checker=None)
        assert other.wait(timeout=120) == 0
    finally:  # never left polling for "go" when the grid failed first
        other.kill()
        other.wait(timeout=60)
    assert fake.calls == ["MF-RNS-seed2"]  # seed 1 was the other process's, and it finished it
    assert summary["ran"] == ["MF-RNS-seed2"] and summary["skipped"] == ["MF-RNS-seed1"]
    assert summary["results"]["MF-RNS-seed1"]["cell"] == "MF-RNS-seed1"
    errors = capsys.readouterr().err
    assert f"MF-RNS-seed1: another process is running it (its pid is in {cell_lock_path(out, Cell('MF', 'RNS', 1))})" \
        in errors and "MF-RNS-seed1: waiting for the other process" in errors
    assert sorted(os.listdir(out / "runs")) == ["MF-RNS-seed1.json", "MF-RNS-seed2.json"]


def test_a_cell_left_unfinished_by_a_killed_grid_is_run_after_the_wait(tmp_path):
    from test_grid_consistency import FakeRunner

    out = tmp_path / "out"
    other, _ = start_other_grid(tmp_path, out)
    fake = FakeRunner()

    def runner(cell, *args, **kwargs):
        if cell.seed == 2:  # the other grid dies holding seed 1: its lock is released with it
            other.send_signal(signal.SIGKILL)
            other.wait(timeout=60)
        return fake(cell, *args, **kwargs)

    try:
        summary = run_grid("toy", ["MF"], ["RNS"], [1, 2], str(out), progress=False, cell_runner=runner,
                           cell_checker=None)
    finally:
        other.kill()
        other.wait(timeout=60)
    assert fake.calls == ["MF-RNS-seed2", "MF-RNS-seed1"]
    assert sorted(summary["ran"]) == ["MF-RNS-seed1", "MF-RNS-seed2"] and summary["skipped"] == []


def test_a_cell_whose_llm_artifacts_another_process_writes_is_retried_not_failed(tmp_path, monkeypatch, capsys):
    """HNLMRec cells of one split share the teacher, adapter and store: a second grid's cell found them locked,
    was recorded FAILED, and the command exited 1 while the first grid did the work."""
    import recbole_hnlm.benchmark.grid as grid
    from recbole_hnlm.errors import ConcurrentWriterError
    from test_grid_consistency import FakeRunner

    sleeps, fake, tries = [], FakeRunner(), []
    monkeypatch.setattr(grid.time, "sleep", sleeps.append)  # recorded, not slept

    def runner(cell, *args, **kwargs):
        tries.append(cell.key)
        if cell.seed == 1 and tries.count(cell.key) <= 2:  # busy when first run and when first retried
            raise ConcurrentWriterError("store.safetensors.work.lock: another process (pid 7) is writing the chunks")
        return fake(cell, *args, **kwargs)

    summary = run_grid("toy", ["MF"], ["RNS"], [1, 2], str(tmp_path / "out"), progress=False, cell_runner=runner,
                       cell_checker=None)
    assert tries == ["MF-RNS-seed1", "MF-RNS-seed2", "MF-RNS-seed1", "MF-RNS-seed1"]
    assert summary["failed"] == [] and summary["ran"] == ["MF-RNS-seed2", "MF-RNS-seed1"]
    assert "MF-RNS-seed1: put off until this grid's other cells are done: store.safetensors.work.lock" in \
        capsys.readouterr().err
    assert not (tmp_path / "out" / "runs" / "MF-RNS-seed1.error.txt").exists()
    assert sleeps == [grid.BUSY_RETRY_SECONDS]  # between the two retries: no busy loop reloading the dataset
