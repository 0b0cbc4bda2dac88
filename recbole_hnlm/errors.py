"""Exceptions the command lines report as one clear line instead of a traceback."""


class ConfigError(ValueError):
    """A user-facing configuration error: unknown name, bad hyper-parameter, incompatible model and sampler."""


class DataError(ValueError):
    """A user-facing data error: an atomic file, a side-car file or a damaged checkpoint that cannot be used as it is
    (the message names the file and what to change)."""


class ConcurrentWriterError(RuntimeError):
    """Another process holds the lock of the files this one was about to write (the message names the lock file and
    the holder's pid)."""


class WriteError(OSError):
    """A file could not be written (a full disk, a file-size limit, an I/O error): the message names the file and
    says that its earlier version, if any, is unchanged."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, once a resume state exists: ``resume_file`` continues the run (``--resume_from``).
    With ``best_only`` the run wrote no resume state and ``resume_file`` is its best checkpoint so far, from which
    ``--resume_from`` goes on with fresh random streams."""

    def __init__(self, resume_file, best_only=False, why=""):
        super().__init__(resume_file)
        self.resume_file = resume_file
        self.best_only = best_only
        self.why = why  # best_only: why there is no resume state


def exit_status(error) -> int:
    """The exit status of a command line that reports ``error`` as one ``error:`` line: 1 where the command works
    as it is once another process ends or the disk has room (:class:`ConcurrentWriterError`, :class:`WriteError`),
    2 for bad input."""
    return 1 if isinstance(error, (ConcurrentWriterError, WriteError)) else 2
