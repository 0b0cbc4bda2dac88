"""The subnormal benchmark builds the weights it claims and prints its table (timings themselves are not asserted)."""
import os
import subprocess
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

from bench_subnormal import run, subnormal_weights  # noqa: E402


def test_the_weights_hold_the_asked_share_of_subnormals():
    torch.set_flush_denormal(False)
    weights = subnormal_weights(256, 128, share=0.36)
    tiny = torch.finfo(torch.float32).tiny
    subnormal = ((weights != 0) & (weights.abs() < tiny)).float().mean().item()
    assert abs(subnormal - 0.36) < 0.02 and (weights != 0).all()


def test_run_leaves_flushing_off_and_the_script_prints_both_rows():
    times = run(batch=8, in_dim=16, out_dim=8, reps=1, rounds=1)
    assert set(times) == {False, True} and all(t > 0 for t in times.values())
    assert torch.tensor([1e-39]).item() != 0.0  # flushing is off again
    process = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "bench_subnormal.py"), "--batch", "8",
                              "--in-dim", "16", "--out-dim", "8", "--reps", "1"],
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-2000:]
    rows = [line for line in process.stdout.splitlines() if line.startswith("| kept") or line.startswith("| flushed")]
    assert len(rows) == 2, process.stdout
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    kept, flushed, ratio = float(cells[0][1]), float(cells[1][1]), float(cells[0][2])
    assert flushed > 0, process.stdout  # printed in microseconds' precision: a 3-decimal second was 0.000 here
    # the kept time over the flushed one, up to the rounding of the printed numbers
    assert abs(ratio - kept / flushed) <= 0.005 + 0.0000005 * (1 + ratio) / flushed, process.stdout
