"""SIGTERM handled as Ctrl-C by the command lines: ``timeout``, Slurm, ``docker stop`` and Kubernetes stop a job with
it, and the job should leave the same saved state and print the same resume hint as after Ctrl-C, not exit silently
(with the name marker and temporary files of an unfinished write behind)."""
import contextlib
import signal
import threading

__all__ = ["sigterm_as_interrupt"]


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` in the main thread (the previous handler comes back
    afterwards). Outside the main thread, where Python cannot install handlers, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
