"""Races between real processes, found by the concurrency fuzz (two terminals or a scheduler starting jobs at once).

Name markers (``.<stem>.reserved``): two resumes of a hard-killed run (two terminals, or a scheduler retrying a job)
both found its marker stale and removed it *by name*; the slower one removed the marker that the faster one had
created meanwhile, took the name too, and both went on writing the same resume state and best checkpoint. The
interleaving is pinned here: a real second process claims the marker while this one is between judging the stale
marker and removing it (the wrapper below runs the original ``_remove_dead_writes`` after handing over; it replaces
no behaviour). The LLM stage's race is in tests/llm/test_concurrent_runs.py.
"""
import os
import queue
import subprocess
import sys
import threading

import pytest

from recbole_hnlm import trainer as T
from recbole_hnlm.files import held_by_another

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CLAIMER = """
import sys
from recbole_hnlm import trainer as T
print("ready", flush=True)
sys.stdin.readline()
holder = T._claim_marker(sys.argv[1])
print("refused" if holder is not None else "claimed", flush=True)
sys.stdin.readline()  # holds the marker (when claimed) until told to end
"""


def _dead_pid():
    """The pid of a process that has ended (reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(proc.stdout)


class _Claimer:
    """A second real process that calls ``_claim_marker`` on ``marker`` when told to, and reports the outcome."""

    def __init__(self, marker):
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen([sys.executable, "-c", _CLAIMER, marker], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        self.lines = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(line.strip()) for line in self.proc.stdout],
                         daemon=True).start()
        assert self.lines.get(timeout=60) == "ready"

    def go(self, wait):
        """Let it claim; its outcome if it came within ``wait`` seconds, else None (it waits for its turn)."""
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        try:
            return self.lines.get(timeout=wait)
        except queue.Empty:
            return None

    def end(self):
        try:
            self.proc.stdin.write("end\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        self.proc.wait(timeout=30)


@pytest.fixture
def stale_marker(tmp_path):
    """The marker of a hard-killed run: its pid runs no process, nothing holds its lock."""
    marker = T._marker_of(str(tmp_path / "MF-Dec-07-2026_20-00-00"))
    with open(marker, "w", encoding="utf-8") as handle:
        handle.write(f"{_dead_pid()}\n")
    yield marker
    if os.path.abspath(marker) in T._HELD_MARKERS:
        T._drop_marker(marker)


def _hand_over_while_judged(monkeypatch, claimer, outcome):
    """Let ``claimer`` claim the marker at the moment this process has judged it stale and not yet removed it."""
    original = T._remove_dead_writes

    def remove_dead_writes(marker):
        if not outcome:
            outcome.append(claimer.go(wait=3))
        original(marker)

    monkeypatch.setattr(T, "_remove_dead_writes", remove_dead_writes)


def test_two_resumes_of_a_killed_run_never_both_claim_its_files(stale_marker, monkeypatch):
    """Of two processes claiming a hard-killed run's marker at once, one holds it and the other is refused
    (`resume_from` then says another process writes the run's files): the old code let both claim it."""
    claimer, outcome = _Claimer(stale_marker), []
    try:
        _hand_over_while_judged(monkeypatch, claimer, outcome)
        holder = T._claim_marker(stale_marker)
        other = outcome[0] or claimer.lines.get(timeout=30)
        claimed_here = holder is None
        assert claimed_here != (other == "claimed"), f"this process claimed: {claimed_here}, the other: {other}"
        with open(stale_marker, encoding="utf-8") as handle:  # the marker names the one holder
            assert int(handle.read()) == (os.getpid() if claimed_here else claimer.proc.pid)
    finally:
        claimer.end()


def test_removing_a_stale_marker_never_removes_the_one_another_run_just_took(stale_marker, monkeypatch):
    """A new run tidying the folder (``_remove_dead_markers``) while a resume takes the stale marker over removes the
    stale file only: the resume's own marker stays, held by it (the old code removed it, so a third run could take
    the same name)."""
    claimer, outcome = _Claimer(stale_marker), []
    try:
        _hand_over_while_judged(monkeypatch, claimer, outcome)
        T._remove_dead_markers(os.path.dirname(stale_marker))
        assert (outcome[0] or claimer.lines.get(timeout=30)) == "claimed"
        assert os.path.exists(stale_marker), "the marker the other run holds was removed"
        assert held_by_another(stale_marker) is True
        with open(stale_marker, encoding="utf-8") as handle:
            assert int(handle.read()) == claimer.proc.pid
    finally:
        claimer.end()
