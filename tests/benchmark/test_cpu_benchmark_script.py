"""The CPU benchmark script's smoke test (``--quick --rounds 1``): every case is printed in the table form of
docs/performance.md, after the correctness cross-check. Times mean nothing here."""
import os
import re
import subprocess
import sys

import pytest

from recbole_hnlm.ops import _ext

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "benchmarks", "run_cpu_benchmarks.py")
CASES = ["SpMM forward, 1 layer", "LightGCN propagation fwd+bwd, mean", "LightGCN propagation fwd+bwd, layer stack",
         "MixGCF mixing fwd+bwd", "MixGCF mixing fwd", "DNS select (argmax)", "AHNS select (argmin to target)",
         "DNS(M,N) candidate scores"]


def run(*args, env=None):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=600, cwd=REPO,
                          env=env)


@pytest.mark.skipif(not _ext.is_enabled(), reason="the script times the C++ kernels (refused without them)")
def test_quick_run_prints_every_case_as_the_docs_table_shows_it():
    process = run("--quick", "--rounds", "1")
    assert process.returncode == 0, process.stderr[-3000:]
    assert "correctness cross-check: ok" in process.stdout
    # the header and the cells use the docs' en dash and multiplication sign (it printed "min-max" and "2.1x")
    assert "| case | variant | median ms | min–max ms | speed-up of ours |" in process.stdout
    rows = [line.split(" | ") for line in process.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    rows = [row for row in rows if row[0] != "| case"]
    assert sorted({row[0][2:] for row in rows}) == sorted(CASES)
    for row in rows:
        assert float(row[2]) >= 0 and re.fullmatch(r"[0-9.]+–[0-9.]+", row[3]), row
        assert re.fullmatch(r"1\.0 \(ours\) \||\*\*[0-9.]+×\*\* \|", row[4]), row
    assert sum(row[4].startswith("1.0 (ours)") for row in rows) == len(CASES)


@pytest.mark.parametrize("args, message", [(["--rounds", "0"], "--rounds must be >= 1"),
                                           (["--only", "nonesuch"], "matches no case")])
def test_bad_options_are_usage_errors(args, message):
    process = run("--quick", *args)
    assert process.returncode == 2 and message in process.stderr, process.stderr


def test_the_script_refuses_to_time_the_references_as_ours():
    process = run("--quick", env=dict(os.environ, RECBOLE_HNLM_DISABLE_EXT="1"))
    assert process.returncode == 1 and "nothing to benchmark" in process.stderr, process.stderr
    assert "|" not in process.stdout
