"""Loading of the compiled extension ``recbole_hnlm._C`` and the decision kernel-or-reference per call.

Importing ``recbole_hnlm._C`` registers the ops under ``torch.ops.recbole_hnlm``. When it is missing (a
``RECBOLE_HNLM_SKIP_EXT=1`` install, a failed build) or when a tensor's device has no kernel (e.g. CUDA tensors with a
CPU-only build), every public op falls back to its pure-PyTorch reference in :mod:`recbole_hnlm.ops.reference`
and warns once per reason.

Switches:
    * environment variable ``RECBOLE_HNLM_DISABLE_EXT=1`` (read at import): use the references everywhere, silently;
    * the CUDA kernels' experiments (:data:`KERNEL_EXPERIMENTS`, read at every call; csrc/cuda/README.md), which a run
      logs when they are set (:func:`kernel_experiments`);
    * :func:`set_enabled` / the :func:`disabled` context manager: the same at run time (tests use it);
    * the :func:`library` context manager: route the ops to another library with the same schemas. The tests use it
      to run the CUDA sources on the host warp emulator (library ``recbole_hnlm_cuda_emulation``, CPU tensors).
"""
import contextlib
import os
import warnings
from typing import Dict, Tuple

import torch

__all__ = ["WITH_EXT", "WITH_CUDA_EXT", "DISABLE_ENV", "LIBRARY", "KERNEL_EXPERIMENTS", "is_enabled", "set_enabled",
           "disabled", "library", "use_kernel", "ops", "kernel_experiments", "kernels_in_use", "has_kernels"]

DISABLE_ENV = "RECBOLE_HNLM_DISABLE_EXT"
#: Environment variables that switch the CUDA kernels to variants under measurement (docs/performance.md).
KERNEL_EXPERIMENTS = ("RECBOLE_HNLM_SPMM_GROUPS", "RECBOLE_HNLM_SPMM_SHORT_CHAINS", "RECBOLE_HNLM_ARGMAX_GROUPS")
LIBRARY = "recbole_hnlm"
_library = LIBRARY

try:
    from recbole_hnlm import _C  # noqa: F401  (registers torch.ops.recbole_hnlm.*)

    WITH_EXT = True
    _IMPORT_ERROR = None
except ImportError as error:  # pragma: no cover - depends on the build
    WITH_EXT = False
    _IMPORT_ERROR = error


def _has_kernel(op: str, dispatch_key: str, namespace: str = LIBRARY) -> bool:
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(f"{namespace}::{op}", dispatch_key)
    except RuntimeError:
        return False


WITH_CUDA_EXT = WITH_EXT and _has_kernel("spmm", "CUDA")

#: ``torch.device.type`` -> the dispatch key of its kernels.
_DISPATCH_KEYS = {"cpu": "CPU", "cuda": "CUDA"}
_enabled = os.environ.get(DISABLE_ENV, "0").strip().lower() not in ("1", "true", "yes", "on")
_kernel_cache: Dict[Tuple[str, str, str], bool] = {}
_warned = set()


def is_enabled() -> bool:
    """Whether the compiled kernels are used when available."""
    return _enabled


def set_enabled(enabled: bool) -> None:
    """Turn the compiled kernels on or off for the whole process (off = always the reference)."""
    global _enabled
    _enabled = bool(enabled)


@contextlib.contextmanager
def library(namespace: str):
    """Context manager routing every public op to ``torch.ops.<namespace>``, a library that defines the same schemas
    (:data:`LIBRARY`'s), e.g. the CUDA sources built for the host emulator. Kernels of the routed library are looked
    up per device like those of ``recbole_hnlm``; with none for a device the ops fall back to the reference."""
    global _library
    previous = _library
    _library = namespace
    try:
        yield
    finally:
        _library = previous


@contextlib.contextmanager
def disabled():
    """Context manager running the enclosed code on the references only."""
    previous = _enabled
    set_enabled(False)
    try:
        yield
    finally:
        set_enabled(previous)


def _warn_once(key: str, message: str) -> None:
    """Warn about ``key`` once per process, at the line that called the op (op -> use_kernel -> here)."""
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def _references_reason(device: torch.device):
    """"PyTorch references (why)" when the ops on ``device`` run the references, None when they run kernels."""
    if not _enabled:
        return f"PyTorch references ({DISABLE_ENV}=1 or set_enabled(False))"
    if _library == LIBRARY and not WITH_EXT:
        return f"PyTorch references (recbole_hnlm._C is not available: {_IMPORT_ERROR})"
    dispatch_key = _DISPATCH_KEYS.get(device.type)
    if dispatch_key is None or not _has_kernel("spmm", dispatch_key, _library):
        name = "recbole_hnlm._C" if _library == LIBRARY else f"torch.ops.{_library}"
        return f"PyTorch references on {device.type} ({name} has no {device.type} kernels)"
    return None


def has_kernels(device) -> bool:
    """Whether the ops on ``device`` run compiled kernels (benchmarks refuse to time the references as "ours")."""
    return _references_reason(torch.device(device)) is None


def kernels_in_use(device) -> str:
    """One line for a run's log: do the ops on ``device`` run the compiled kernels or the PyTorch references?"""
    device = torch.device(device)
    references = _references_reason(device)
    if references is not None:
        return references
    kind = "CUDA" if device.type == "cuda" else "C++"
    return f"{kind} kernels of recbole_hnlm._C" if _library == LIBRARY else f"kernels of torch.ops.{_library}"


def use_kernel(op: str, device: torch.device) -> bool:
    """True when ``<op>`` of the library the ops are routed to (``torch.ops.recbole_hnlm``, or the one
    :func:`library` names) has a kernel for ``device`` and the kernels are enabled.

    Otherwise returns False (the caller runs the reference) and warns once per reason, unless the kernels were
    switched off on purpose.
    """
    if not _enabled:
        return False
    if _library == LIBRARY and not WITH_EXT:
        _warn_once(
            "missing",
            f"recbole_hnlm._C is not available ({_IMPORT_ERROR}); recbole_hnlm.ops falls back to the slower "
            "pure-PyTorch reference. Build it against the installed torch: `bash scripts/setup.sh` in a checkout, "
            "else `pip install --no-build-isolation --no-deps .` (docs/install.md).",
        )
        return False
    key = (_library, op, device.type)
    if key not in _kernel_cache:
        dispatch_key = _DISPATCH_KEYS.get(device.type)
        _kernel_cache[key] = dispatch_key is not None and _has_kernel(op, dispatch_key, _library)
    if not _kernel_cache[key]:
        _warn_once(
            f"device:{_library}:{device.type}",
            f"{_library} has no {device.type} kernels (op {op}); falling back to the pure-PyTorch reference.",
        )
    return _kernel_cache[key]


class _Ops:
    """``torch.ops.recbole_hnlm`` (or the library routed to by :func:`library`), resolved lazily so that importing
    this module never fails."""

    def __getattr__(self, name):
        return getattr(getattr(torch.ops, _library), name)


ops = _Ops()


def kernel_experiments() -> Dict[str, str]:
    """The kernel experiments set in the environment (name -> value), for a run's log."""
    return {name: os.environ[name] for name in KERNEL_EXPERIMENTS if os.environ.get(name)}
