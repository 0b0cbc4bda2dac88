"""Exceptions the run script reports as one clear line instead of a traceback."""


class ConfigError(ValueError):
    """A user-facing configuration error: unknown name, bad hyper-parameter, incompatible model and sampler."""
