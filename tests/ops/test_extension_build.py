"""The built extension uses the process's shared C++ runtime (setup.py's ``-l:libstdc++.so.6``).

A GPU image linked a static copy of libstdc++ into ``recbole_hnlm._C``; every error message that formatted an
integer then crashed the Python process (segmentation fault in ``std::ostream::_M_insert<long>``) instead of
raising. These tests name that failure instead of letting it end the test run.
"""
import os
import shutil
import subprocess
import sys

import pytest

from recbole_hnlm.ops import WITH_EXT

requires_ext = pytest.mark.skipif(not WITH_EXT, reason="recbole_hnlm._C is not built")

#: Symbols that only a static libstdc++ puts into the extension: ostream's integer insertion and a codecvt member.
STATIC_RUNTIME_SYMBOLS = ("_ZNSo9_M_insertIlEERSoT_", "_ZNKSt7codecvtIDsc11__mbstate_tE10do_unshiftERS0_PcS3_RS3_")


@requires_ext
def test_an_error_message_with_numbers_raises_in_a_fresh_process():
    code = "\n".join([
        "import torch",
        "import recbole_hnlm.ops",
        "try:",
        "    ids = torch.tensor([[0, 7], [1, 2]])",
        "    torch.ops.recbole_hnlm.candidate_scores(torch.randn(2, 4), torch.randn(3, 4), ids)",
        "except IndexError as error:",
        "    print(str(error).splitlines()[0])",
    ])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, (f"exit status {done.returncode} (-11: segmentation fault: the extension carries its "
                                  f"own libstdc++, see setup.py)\n{done.stderr[-2000:]}")
    assert "candidates contains item id 7 outside [0, 3)" in done.stdout


@requires_ext
@pytest.mark.skipif(shutil.which("nm") is None, reason="needs nm (binutils)")
def test_the_extension_defines_no_libstdcxx_runtime():
    import recbole_hnlm._C as extension

    # the dynamic symbol table: a stripped extension keeps it (plain `nm` would then list nothing, and pass)
    symbols = subprocess.run(["nm", "-D", "--defined-only", extension.__file__], capture_output=True, text=True,
                             timeout=300, check=True).stdout
    carried = [name for name in STATIC_RUNTIME_SYMBOLS if name in symbols]
    assert not carried, f"{extension.__file__} defines libstdc++'s {carried}: it was linked with a static libstdc++"


def test_the_kernels_in_use_are_described_per_device():
    from recbole_hnlm.ops import WITH_CUDA_EXT, WITH_EXT
    from recbole_hnlm.ops._ext import disabled, has_kernels, kernels_in_use

    with disabled():
        assert kernels_in_use("cpu").startswith("PyTorch references (RECBOLE_HNLM_DISABLE_EXT=1")
        assert not has_kernels("cpu") and not has_kernels("cuda")
    if WITH_EXT:
        assert kernels_in_use("cpu") == "C++ kernels of recbole_hnlm._C" and has_kernels("cpu")
    else:
        assert kernels_in_use("cpu").startswith("PyTorch references (recbole_hnlm._C is not available")
        assert not has_kernels("cpu")
    if WITH_EXT and not WITH_CUDA_EXT:  # a CPU-only build: the benchmarks must not time CUDA references as ours
        assert kernels_in_use("cuda") == "PyTorch references on cuda (recbole_hnlm._C has no cuda kernels)"
        assert not has_kernels("cuda")
    if WITH_CUDA_EXT:
        assert kernels_in_use("cuda") == "CUDA kernels of recbole_hnlm._C" and has_kernels("cuda")
