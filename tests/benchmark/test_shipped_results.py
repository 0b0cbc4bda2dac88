"""The report tables shipped in ``results/`` are what ``compare.py --report-only`` builds from their stored runs now:
a change of the report (rounding, a section) that leaves them stale fails here, not in a user's diff."""
import glob
import os
import shutil
import subprocess

import pytest

from recbole_hnlm.benchmark.report import write_report

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _shipped_tables():
    """The folders of the tables git tracks (a user's own grid in results/, the default --out, is not shipped: its
    table is stale while it resumes); outside a git checkout, every table with its runs."""
    try:
        listed = subprocess.run(["git", "ls-files", "results/*table.md"], cwd=REPO, capture_output=True, text=True,
                                check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        listed = [os.path.relpath(path, REPO) for path in
                  glob.glob(os.path.join(REPO, "results", "**", "table.md"), recursive=True)]
    return sorted(os.path.dirname(path) for path in listed
                  if os.path.basename(path) == "table.md" and os.path.isdir(os.path.join(REPO, os.path.dirname(path),
                                                                                        "runs")))


SHIPPED = _shipped_tables()


def test_results_ship_report_tables():
    assert "results/ml-100k" in SHIPPED and len(SHIPPED) >= 10, SHIPPED


@pytest.mark.parametrize("folder", SHIPPED)
def test_a_shipped_table_is_rebuilt_unchanged_from_its_runs(folder, tmp_path):
    source = os.path.join(REPO, folder)
    shutil.copytree(os.path.join(source, "runs"), tmp_path / "runs")
    if os.path.isfile(os.path.join(source, "grid.json")):  # the last command's cells ("Not finished")
        shutil.copy(os.path.join(source, "grid.json"), tmp_path / "grid.json")
    write_report(str(tmp_path), plots=False)
    with open(os.path.join(source, "table.md"), encoding="utf-8") as f:
        shipped = f.read()
    assert (tmp_path / "table.md").read_text(encoding="utf-8") == shipped, (
        f"{folder}/table.md is stale: rebuild it with python benchmarks/compare.py --out {folder} --report-only "
        "--no-plots")
