"""Compatibility shims that let RecBole 1.2.1 run on the modern scientific stack.

RecBole still uses the numpy aliases ``np.float``, ``np.bool``, ``np.long`` ... at run time (metrics, interaction,
dataset), and its ``Config.compatibility_settings`` builds them from ``np.float_`` and friends, which numpy 2 removed.
:func:`install_numpy_aliases` restores the aliases from names that exist on numpy 1 and 2 alike.
"""
import numpy as np

_NUMPY_ALIASES = {
    "bool": np.bool_,
    "int": np.int_,
    "float": np.float64,
    "complex": np.complex128,
    "object": np.object_,
    "str": np.str_,
    "long": np.int_,
    "unicode": np.str_,
}


def install_numpy_aliases():
    """Define the numpy 1.x aliases RecBole relies on; safe to call repeatedly, on numpy 1 or 2."""
    for name, value in _NUMPY_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, value)
