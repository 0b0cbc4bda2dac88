"""The CUDA sources of ``csrc/cuda`` built for the host warp emulator (``csrc/cuda/emulation``).

:func:`build` compiles them once per source change (ninja, under ``build/cuda_emulation``) into the op library
``recbole_hnlm_cuda_emulation`` and loads it; its kernels serve CPU tensors. ``test_cuda_kernels.py`` runs every
CUDA test case on it, routed with :func:`recbole_hnlm.ops._ext.library`, so the kernels' logic is tested in CI
without a GPU. Linux only (fibers: a hand-written switch on x86-64, glibc's ``ucontext`` elsewhere).
"""
import contextlib
import functools
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
EMULATION = ROOT / "csrc" / "cuda" / "emulation"
LIBRARY = "recbole_hnlm_cuda_emulation"
SOURCES = ("library.cpp", "warp_emulator.cpp", "propagation_emulated.cpp", "negative_mixing_emulated.cpp",
           "self_test.cpp")
SUPPORTED = sys.platform.startswith("linux")
UNSUPPORTED_REASON = f"the CUDA emulator is built for Linux (ELF assembly, glibc ucontext), not {sys.platform}"


@functools.lru_cache(maxsize=None)
def build() -> str:
    """Compile (if needed) and load the emulated library; returns its namespace under ``torch.ops``."""
    from torch.utils import cpp_extension

    build_dir = ROOT / "build" / "cuda_emulation"
    build_dir.mkdir(parents=True, exist_ok=True)
    cpp_extension.load(
        name=LIBRARY,
        sources=[str(EMULATION / name) for name in SOURCES],
        extra_cflags=["-O2", "-DHNLM_CUDA_EMULATION", "-Wno-unknown-pragmas"],
        extra_include_paths=[str(ROOT / "csrc")],
        build_directory=str(build_dir),
        is_python_module=False,
        verbose=False,
    )
    return LIBRARY


_schedule = [0]  # the warp_schedule seed in force (0: grid order)


@contextlib.contextmanager
def warp_schedule(seed: int):
    """Run the emulated launches inside the block with their warps in an order drawn from ``seed`` (not grid order).

    Every order is one a GPU may choose (warp_emulator.h), so a result that changes with the seed depends on the
    schedule, as the order of atomic adds does.
    """
    set_schedule = getattr(torch_ops(), "set_warp_schedule")
    previous, _schedule[0] = _schedule[0], seed
    set_schedule(seed)
    try:
        yield
    finally:
        _schedule[0] = previous
        set_schedule(previous)  # a nested block hands back the outer schedule (restarted from its seed)


def torch_ops():
    import torch

    return getattr(torch.ops, build())
