"""The HNLMRec epoch benchmark script runs end to end and prints its table (timings themselves are not asserted)."""
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_hnlmrec_epoch_benchmark_prints_every_variant():
    process = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "bench_hnlmrec_epoch.py"), "--rounds", "1", "--dim", "16"],
        capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-2000:]
    rows = [line for line in process.stdout.splitlines() if re.match(r"\| (RNS|HNLMRec)", line)]
    assert len(rows) == 5, process.stdout
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert cells[0][3] == "-"  # RNS, the baseline, has no adapter work
    base = float(cells[0][1])
    for cell in cells:  # each ratio is the row's time over RNS's, up to the rounding of the printed numbers
        ratio = float(cell[2])
        assert abs(ratio - float(cell[1]) / base) <= 0.005 + 0.0005 * (1 + ratio) / base, cell
    # adapter work of D=16 over 80,808 rows: [512] = 2*(2*(16*512 + 512*64) + 512*64) * 80808 flops
    assert float(cells[1][3]) == round(2 * (2 * (16 * 512 + 512 * 64) + 512 * 64) * 80808 / 1e9, 1)
    assert all(float(c[1]) > 0 for c in cells)
