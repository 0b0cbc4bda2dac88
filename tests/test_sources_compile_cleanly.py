"""Every module of the package compiles with warnings as errors: an invalid escape sequence in a docstring
("\\mathcal", "\\_") is a SyntaxWarning on the user's console from Python 3.12 on (every run of a fresh checkout),
a compile error under ``-W error``, and a wrong docstring on every version ("\\frac" read as a form feed)."""
import glob
import os
import warnings

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recbole_hnlm")
SOURCES = sorted(glob.glob(os.path.join(PACKAGE, "**", "*.py"), recursive=True))


def compile_strictly(source, path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compile(source, path, "exec")


def test_every_module_of_the_package_is_checked():
    walked = {os.path.join(root, name) for root, _, files in os.walk(PACKAGE) for name in files if name.endswith(".py")}
    assert len(SOURCES) > 50 and set(SOURCES) == walked


def test_the_check_refuses_an_invalid_escape():
    with pytest.raises(SyntaxError):
        compile_strictly('"""\\mathcal"""\n', "bad.py")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: os.path.relpath(p, PACKAGE))
def test_a_module_compiles_without_warnings(path):
    with open(path, encoding="utf-8") as file:
        compile_strictly(file.read(), path)
