"""Exceptions the command lines report as one clear line instead of a traceback."""


class ConfigError(ValueError):
    """A user-facing configuration error: unknown name, bad hyper-parameter, incompatible model and sampler."""


class DataError(ValueError):
    """A user-facing data error: an atomic file or a side-car file that cannot be used as it is (the message names
    the file and what to change)."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, once a resume state exists: ``resume_file`` continues the run (``--resume_from``)."""

    def __init__(self, resume_file):
        super().__init__(resume_file)
        self.resume_file = resume_file
