"""What a user installing from the sdist or the wheel receives: every file a build needs, and the torch the compiled
extension was built against."""
import glob
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import tarfile

import pytest
import torch

import recbole_hnlm.ops as ops

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _files(pattern):
    return {os.path.relpath(path, REPO) for path in glob.glob(os.path.join(REPO, pattern), recursive=True)
            if os.path.isfile(path)}


def test_the_sdist_holds_every_file_a_build_needs(tmp_path):
    """The sdist held the five .cpp sources only: no header, no CUDA source, so building it failed."""
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".whl", "build", "saved", "results", "log", "log_tensorboard", "*.so", "*.egg-info",
        "__pycache__", ".pytest_cache"))
    done = subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path / "dist")],
                          cwd=source, env={**os.environ, "RECBOLE_HNLM_SKIP_EXT": "1"}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    (archive,) = (tmp_path / "dist").glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    needed = (_files("csrc/**/*") | _files("properties/**/*.yaml") | _files("recbole_hnlm/llm/prompts/*.txt")
              | _files("requirements/*.txt") | {"scripts/setup.sh", "setup.py", "pyproject.toml", "README.md"})
    assert {"csrc/utils.h", "csrc/cuda/utils.cuh"} <= needed
    assert not needed - names, sorted(needed - names)


@pytest.mark.skipif(not ops.WITH_EXT, reason="the installed package has no compiled extension")
def test_the_package_requires_the_torch_its_extension_was_built_against():
    """``torch>=2.1`` let pip pair the compiled ``_C`` with another torch, which does not load it."""
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    assert f"torch=={major}.{minor}.*" in importlib.metadata.requires("recbole-hnlm")


@pytest.mark.parametrize("module", ["recbole_hnlm", "recbole_hnlm.benchmark", "recbole_hnlm.benchmark.tune",
                                    "recbole_hnlm.llm", "recbole_hnlm.recommend", "recbole_hnlm.split_import"])
def test_each_command_line_tool_names_the_command_that_runs_it(module):
    """``python -m recbole_hnlm.benchmark.tune --help`` named itself ``python benchmarks/tune.py``, a file an installed
    package does not have."""
    done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith(f"usage: python -m {module} "), done.stdout[:200]


@pytest.mark.parametrize("script", ["benchmarks/compare.py", "benchmarks/tune.py"])
def test_each_checkout_script_names_itself(script):
    """``python benchmarks/compare.py --help`` printed ``usage: python -m recbole_hnlm.benchmark``."""
    done = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith(f"usage: python {script} "), done.stdout[:200]


def test_python_requires_admits_the_tested_pythons_and_refuses_313():
    """3.10 and 3.12 passed the tests (docs/install.md); 3.13 has no wheels of our numpy/scipy pins."""
    import ast

    from packaging.specifiers import SpecifierSet

    with open(os.path.join(REPO, "setup.py"), encoding="utf-8") as file:
        tree = ast.parse(file.read())
    (requires,) = [keyword.value.value for node in ast.walk(tree) if isinstance(node, ast.Call)
                   for keyword in node.keywords if keyword.arg == "python_requires"]
    spec = SpecifierSet(requires)
    assert all(version in spec for version in ("3.10.0", "3.11.7", "3.12.9", platform.python_version()))
    assert not any(version in spec for version in ("3.9.18", "3.13.0", "3.14.0"))


def _declared_requirements():
    """Canonical name -> SpecifierSet of each literal requirement of setup.py (install_requires and the extras)."""
    import ast

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    with open(os.path.join(REPO, "setup.py"), encoding="utf-8") as file:
        tree = ast.parse(file.read())
    keywords = {keyword.arg: keyword.value for node in ast.walk(tree) if isinstance(node, ast.Call)
                for keyword in node.keywords if keyword.arg in ("install_requires", "extras_require")}
    texts = [item.value for item in keywords["install_requires"].elts if isinstance(item, ast.Constant)]
    texts += [text for group in ast.literal_eval(keywords["extras_require"]).values() for text in group]
    return {canonicalize_name(requirement.name): requirement.specifier for requirement in map(Requirement, texts)}


def test_the_tested_pins_lie_inside_the_declared_ranges():
    """requirements/*.txt pin the versions the tests ran with: setup.py's ranges must admit each of them."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    declared, checked = _declared_requirements(), set()
    for path in glob.glob(os.path.join(REPO, "requirements", "*.txt")):
        with open(path, encoding="utf-8") as file:
            for line in file:
                text = line.split("#", 1)[0].strip()
                if "==" not in text:
                    continue
                requirement = Requirement(text)
                name, (pin,) = canonicalize_name(requirement.name), requirement.specifier
                if name in declared:
                    assert pin.version in declared[name], (os.path.basename(path), text, str(declared[name]))
                    checked.add(name)
    assert {"numpy", "pandas", "scipy", "transformers", "peft", "sentence-transformers", "gguf"} <= checked


@pytest.mark.parametrize("name, broken, lowest", [
    ("transformers", "4.55.4", "4.56.2"), ("transformers", "4.56.1", "4.56.2"), ("gguf", "0.10.0", "0.11.0")])
def test_the_llm_extra_refuses_the_releases_measured_broken(name, broken, lowest):
    """Measured with the lowest admitted releases (docs/install.md): transformers < 4.56 hands the loader's ``dtype=``
    to the model (``LlamaForCausalLM.__init__() got an unexpected keyword argument 'dtype'``), 4.56.0 and 4.56.1
    return None from ``LlamaForCausalLM.get_decoder()`` (the hybrid encoder fails), and gguf 0.10.0 imports
    sentencepiece without declaring it."""
    spec = _declared_requirements()[name]
    assert broken not in spec and lowest in spec, (name, str(spec))
