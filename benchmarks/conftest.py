"""pytest-benchmark setup: collect ``bench_*.py`` and share the Yelp2018-size synthetic graph.

    .venv/bin/python -m pytest benchmarks/ --benchmark-only --benchmark-enable

(``--benchmark-enable`` overrides the ``--benchmark-disable`` in pyproject's addopts.)
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from workloads import check_correctness, yelp_graph  # noqa: E402


def pytest_collect_file(file_path, parent):
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


@pytest.fixture(scope="session", autouse=True)
def kernels_on():
    """Every bench times the ops against the PyTorch reference: with the kernels off, the "ours" rows would be the
    reference timed against itself."""
    from recbole_hnlm.ops import _ext

    if not _ext.has_kernels("cpu"):
        pytest.exit(f"the ops run {_ext.kernels_in_use('cpu')}: nothing to compare")


@pytest.fixture(scope="session")
def graph():
    g = yelp_graph()
    check_correctness(g)
    return g
