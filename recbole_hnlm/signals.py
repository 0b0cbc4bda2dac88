"""SIGTERM handled as Ctrl-C by the command lines: ``timeout``, Slurm, ``docker stop`` and Kubernetes stop a job with
it, and the job should leave the same saved state and print the same resume hint as after Ctrl-C, not exit silently
(with the name marker and temporary files of an unfinished write behind)."""
import contextlib
import signal
import sys
import threading

__all__ = ["sigterm_as_interrupt", "interrupted_status", "say_interrupted", "load_main", "run_interruptible"]

_received = None  # the signal number that stopped the current command, None for Ctrl-C


def _interrupt(signum, frame):
    global _received
    _received = signum
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def interrupted_status() -> int:
    """Exit status of a command stopped inside :func:`sigterm_as_interrupt`: 128 + the signal's number, as a shell
    reports a process that signal killed (143 for SIGTERM, 130 for Ctrl-C)."""
    return 128 + (_received or signal.SIGINT)


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises ``KeyboardInterrupt`` in the main thread (the previous handler comes back
    afterwards). Outside the main thread, where Python cannot install handlers, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    global _received
    _received = None
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def say_interrupted(message: str) -> None:
    """Print a command's ``interrupted: ...`` line on standard error, on a line of its own: on a terminal a progress
    bar the interruption cut short leaves the cursor inside its line."""
    print(("\n" if sys.stderr.isatty() else "") + message, file=sys.stderr)


def load_main(module: str):
    """The ``main`` of ``module``, imported for a command line script: importing it loads torch and RecBole (seconds,
    more on a busy machine), and a Ctrl-C or SIGTERM then showed a ``KeyboardInterrupt`` traceback, or nothing at
    all. Here it prints one ``interrupted:`` line and exits with 130 (143), as later in the run; nothing was written
    yet."""
    import importlib

    try:
        with sigterm_as_interrupt():
            return importlib.import_module(module).main
    except KeyboardInterrupt:
        say_interrupted("interrupted: nothing was started yet; rerun the command")
        sys.exit(interrupted_status())


def run_interruptible(command, message: str):
    """``command()``'s return value; a Ctrl-C or SIGTERM at any point of it prints ``message`` (one
    ``interrupted: ...`` line) and returns 130 (143)."""
    try:
        with sigterm_as_interrupt():
            return command()
    except KeyboardInterrupt:
        say_interrupted(message)
        return interrupted_status()
