"""Bitwise-reproducible runs on a GPU: the ``use_deterministic_algorithms`` option.

RecBole's ``reproducibility`` seeds the RNGs and fixes cuDNN, yet on a GPU float sums whose order follows the
schedule (atomic adds) still change from run to run in their last bits, and training drifts apart from there:
torch's scatter/index_add kernels, and recbole_hnlm's CUDA SpMM (rows cut between warps) and MixGCF backward
(items picked by several rows). With ``use_deterministic_algorithms: True`` a run executes under
``torch.use_deterministic_algorithms(True, warn_only=True)``: recbole_hnlm's kernels then sum in a fixed order
(csrc/cuda/README.md), torch's ops take their deterministic variants and warn, rather than fail, where they have none.
It costs speed on a GPU and changes nothing on the CPU, whose kernels are deterministic already.
"""
import contextlib
import os

import torch

from recbole_hnlm.errors import ConfigError

#: cuBLAS's reproducible workspace setting (torch.use_deterministic_algorithms' documentation), set if unset.
CUBLAS_WORKSPACE_CONFIG = ":4096:8"


@contextlib.contextmanager
def deterministic_algorithms(enabled):
    """Run the block under ``torch.use_deterministic_algorithms(True, warn_only=True)`` when ``enabled``.

    The previous mode is restored on exit; with ``enabled`` false the block runs under whatever mode is set.

    Raises:
        ConfigError: ``enabled`` is not a bool (option ``use_deterministic_algorithms``).
    """
    if not isinstance(enabled, bool):
        raise ConfigError(f"Option 'use_deterministic_algorithms' must be True or False, got {enabled!r}.")
    if not enabled:
        yield
        return
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
