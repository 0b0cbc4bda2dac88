"""Build and install recbole-hnlm.

The C++ extension ``recbole_hnlm._C`` is always built for the CPU (OpenMP through ATen's
``at::parallel_for``). CUDA sources under ``csrc/cuda`` are added when torch has CUDA and nvcc is
found, or when ``FORCE_CUDA=1``. Switches: ``FORCE_ONLY_CPU=1`` (never build CUDA),
``RECBOLE_HNLM_SKIP_EXT=1`` (pure-Python install; every op falls back to its PyTorch reference),
``TORCH_CUDA_ARCH_LIST`` (default "8.0;9.0"), ``NVCC_FLAGS`` (extra nvcc flags), ``MAX_JOBS``.

The extension is compiled against the torch of the build environment, and the package then requires that torch's
minor version: build with ``--no-build-isolation`` in the environment that runs it (``scripts/setup.sh`` does), or
an isolated build takes the newest torch from PyPI. ``MANIFEST.in`` puts every ``csrc/`` file in the sdist.
"""
import glob
import os
import shlex
import subprocess
import sysconfig

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name):
    return os.environ.get(name, "0").lower() in ("1", "true", "yes")


def _shared_libstdcxx_link_args():
    """``-l:libstdc++.so.6``: link the C++ runtime the process already has, never a static copy of it.

    A GPU image (gcc 13, Ubuntu 24.04) linked ``libstdc++.a`` into ``_C``: the extension defined
    ``std::ostream::_M_insert<long>`` and ``codecvt<char16_t>::do_unshift`` itself (``.text`` 1.4 MB instead of 0.7),
    as ``-static-libstdc++`` or a toolchain without ``libstdc++.so`` does. Streams built by torch's header code then
    mixed the two runtimes, and every error message that formats an integer (``TORCH_CHECK(..., "got ", n)``)
    crashed the process instead of raising. Named before the compiler's own ``-lstdc++`` (static or not), the shared
    runtime resolves every libstdc++ symbol, so nothing of the archive is linked; where it is linked dynamically
    already, the flag changes nothing. Left out when the compiler cannot find ``libstdc++.so.6``, and for a fully
    static link (``-static`` or ``-Wl,-Bstatic`` in ``LDFLAGS``), which cannot take a shared library.
    """
    ldflags = shlex.split(os.environ.get("LDFLAGS", ""))
    if any(flag == "-static" or "-Bstatic" in flag for flag in ldflags):
        return []
    compiler = shlex.split(os.environ.get("CXX") or sysconfig.get_config_var("CXX") or "c++")
    try:
        found = subprocess.run(compiler + ["-print-file-name=libstdc++.so.6"], capture_output=True, text=True,
                               timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return []
    return ["-l:libstdc++.so.6"] if os.path.isabs(found) and os.path.exists(found) else []


def extensions():
    if _flag("RECBOLE_HNLM_SKIP_EXT"):
        return [], {}
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    with_cuda = (torch.cuda.is_available() and CUDA_HOME is not None) or _flag("FORCE_CUDA")
    if _flag("FORCE_ONLY_CPU"):
        with_cuda = False
    sources = sorted(glob.glob("csrc/*.cpp")) + sorted(glob.glob("csrc/cpu/*.cpp"))
    # no -std: BuildExtension picks the standard torch's headers need (C++20 for torch 2.13, C++17 before), and
    # nvcc accepts one -std only
    cxx_flags = ["-O3"]
    # at::parallel_for is header-inlined `#pragma omp parallel`: without -fopenmp it runs serially.
    if "parallel backend: OpenMP" in torch.__config__.parallel_info():
        cxx_flags.append("-fopenmp")
    define_macros = []
    extra_compile_args = {"cxx": cxx_flags}
    Extension = CppExtension
    if with_cuda:
        Extension = CUDAExtension
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        define_macros.append(("WITH_CUDA", None))
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
        nvcc_flags = ["-O3", "--expt-relaxed-constexpr"]
        nvcc_flags += os.environ.get("NVCC_FLAGS", "").split()
        extra_compile_args["nvcc"] = nvcc_flags
    ext = Extension(
        "recbole_hnlm._C",
        sources,
        include_dirs=[os.path.join(ROOT, "csrc")],
        define_macros=define_macros,
        extra_compile_args=extra_compile_args,
        extra_link_args=_shared_libstdcxx_link_args(),
    )
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = extensions()


def torch_requirement():
    """``torch==X.Y.*`` of the torch the extension is compiled against (``_C`` links torch's C++ library, whose ABI
    changes between minor versions: a wheel built on 2.13 does not load under 2.14); ``torch>=2.1`` without it."""
    if not ext_modules:
        return "torch>=2.1"
    import torch

    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    return f"torch=={major}.{minor}.*"


setup(
    name="recbole-hnlm",
    version="0.1.0",
    description="LLM-driven and ID-based hard negative sampling for RecBole, with C++/CUDA kernels",
    long_description=open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    if os.path.exists(os.path.join(ROOT, "README.md")) else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",  # our numpy<2 and scipy 1.11 pins (RecBole 1.2.1) have no 3.13 wheels
    packages=find_packages(include=["recbole_hnlm", "recbole_hnlm.*"]) + ["recbole_hnlm.properties"],
    package_dir={"recbole_hnlm.properties": "properties"},
    package_data={"recbole_hnlm.properties": ["*.yaml", "*/*.yaml"], "recbole_hnlm.llm": ["prompts/*.txt"]},
    include_package_data=True,
    zip_safe=False,
    # torch and recbole are listed for metadata; scripts/setup.sh installs them first (torch pinned to the
    # CPU wheel, recbole with --no-deps) and installs this package with --no-deps. See README.md.
    install_requires=[
        torch_requirement(),
        "recbole==1.2.1",
        "numpy>=1.26,<2",
        "pandas>=2.2,<3",
        "scipy>=1.11",
        "safetensors>=0.4",
        "tqdm",
        "pyyaml",
    ],
    extras_require={
        # lowest releases measured (docs/install.md): transformers < 4.56 take no from_pretrained(dtype=), 4.56.0
        # and 4.56.1 return None from get_decoder(); gguf 0.10.0 imports sentencepiece without declaring it
        "llm": ["transformers>=4.56.2,<5", "peft>=0.13", "sentence-transformers>=3.0", "gguf>=0.11",
                "bitsandbytes; platform_system=='Linux'"],
        "test": ["pytest>=8", "pytest-benchmark>=4"],
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    entry_points={"console_scripts": ["recbole-hnlm=recbole_hnlm.__main__:main"]},
)
