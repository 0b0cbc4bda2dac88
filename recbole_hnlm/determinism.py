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
import warnings

import torch

from recbole_hnlm.errors import ConfigError

#: cuBLAS's reproducible workspace setting (torch.use_deterministic_algorithms' documentation).
CUBLAS_WORKSPACE_CONFIG = ":4096:8"


@contextlib.contextmanager
def deterministic_algorithms(enabled):
    """Run the block under ``torch.use_deterministic_algorithms(True, warn_only=True)`` when ``enabled``.

    A caller's strict mode (``warn_only=False``) stays strict; the previous mode is restored on exit. With
    ``enabled`` false the block runs under whatever mode is set. ``CUBLAS_WORKSPACE_CONFIG`` is set for the block
    when unset; cuBLAS reads it when CUDA starts, so a process that has used CUDA already is warned to export it.

    Raises:
        ConfigError: ``enabled`` is not a bool (option ``use_deterministic_algorithms``).
    """
    if not isinstance(enabled, bool):
        raise ConfigError(f"Option 'use_deterministic_algorithms' must be True or False, got {enabled!r}.")
    if not enabled:
        yield
        return
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    set_cublas = "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    if set_cublas:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            warnings.warn("use_deterministic_algorithms: CUDA was started before CUBLAS_WORKSPACE_CONFIG was set, so "
                          "cuBLAS may not honour it; export CUBLAS_WORKSPACE_CONFIG=:4096:8 before starting Python.")
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE_CONFIG
    torch.use_deterministic_algorithms(True, warn_only=before[1] if before[0] else True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        if set_cublas:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
