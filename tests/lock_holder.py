"""A file lock held by another process, for the tests of runs started side by side."""
import contextlib
import subprocess
import sys


@contextlib.contextmanager
def held_by_another_process(path, content=None, shared=False, truncate=False):
    """``path`` locked with ``flock`` (a reader's lock with ``shared``) by a child process for the ``with`` block, which
    writes ``content`` into it once locked (``truncate``: over what was there); the child is killed afterwards."""
    script = ("import fcntl, time\n"
              f"handle = open({path!r}, {'w' if truncate else 'a+'!r})\n"
              f"fcntl.flock(handle.fileno(), fcntl.{'LOCK_SH' if shared else 'LOCK_EX'})\n"
              + (f"handle.write({content!r}); handle.flush()\n" if content is not None else "")
              + "print('held', flush=True)\n"
              "time.sleep(120)\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held", "the child process did not take the lock"
        yield child
    finally:
        child.kill()
        child.wait(timeout=60)


def seen_held_by_another_process(path):
    """Whether a child process finds ``path`` locked (``files.held_by_another``, as other runs look)."""
    probe = [sys.executable, "-c", f"from recbole_hnlm.files import held_by_another; print(held_by_another({path!r}))"]
    return subprocess.run(probe, capture_output=True, text=True, timeout=120).stdout.strip() == "True"
