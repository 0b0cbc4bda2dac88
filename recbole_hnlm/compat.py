"""Compatibility shims that let RecBole 1.2.1 run on the modern scientific stack, and one fix of a RecBole bug.

RecBole still uses the numpy aliases ``np.float``, ``np.bool``, ``np.long`` ... at run time (metrics, interaction,
dataset), and its ``Config.compatibility_settings`` builds them from ``np.float_`` and friends, which numpy 2 removed.
:func:`install_numpy_aliases` restores the aliases from names that exist on numpy 1 and 2 alike.

:class:`EvalCollector` is RecBole's evaluation collector without its crash on the item-count resources
(RUCAIBox/RecBole#2131): the plugin's trainers use it.
"""
import copy

import numpy as np
import torch
from recbole.evaluator.collector import Collector

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


class EvalCollector(Collector):
    """RecBole's :class:`~recbole.evaluator.collector.Collector`, whose ``get_data_struct`` called ``.cpu()`` on every
    collected resource: ``data.num_items`` (an int) and ``data.count_items`` (a Counter), collected for ItemCoverage,
    GiniIndex, AveragePopularity and TailPercentage, made every evaluation with those metrics fail. Only tensors are
    moved here; the rest is as RecBole's."""

    def get_data_struct(self):
        for key, value in self.data_struct._data_dict.items():
            if isinstance(value, torch.Tensor):
                self.data_struct._data_dict[key] = value.cpu()
        returned = copy.deepcopy(self.data_struct)
        for key in ["rec.topk", "rec.meanrank", "rec.score", "rec.items", "data.label"]:
            if key in self.data_struct:
                del self.data_struct[key]
        return returned
