"""The GPU profiling script's epoch case: its busy-time arithmetic, and a CPU smoke run (``--device cpu``)."""
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "benchmarks", "profile_gpu_kernels.py")


@pytest.fixture(scope="module")
def script():
    sys.path.insert(0, os.path.dirname(SCRIPT))
    try:
        import profile_gpu_kernels
        yield profile_gpu_kernels
    finally:
        sys.path.remove(os.path.dirname(SCRIPT))


@pytest.mark.parametrize("intervals, expected", [
    ([], 0.0),
    ([(0, 5)], 5.0),
    ([(10, 12), (0, 5)], 7.0),  # apart, in any order
    ([(0, 5), (3, 9)], 9.0),  # overlapping
    ([(0, 10), (2, 4), (5, 6)], 10.0),  # nested
    ([(0, 5), (5, 7)], 7.0),  # touching
    ([(0, 4), (1, 2), (3, 8), (20, 21)], 9.0),
])
def test_busy_time_is_the_union_of_the_intervals(script, intervals, expected):
    assert script.busy_microseconds(intervals) == expected


def test_epoch_case_runs_on_the_cpu():
    process = subprocess.run([sys.executable, SCRIPT, "epoch", "--device", "cpu", "--quick", "--batches", "2"],
                             capture_output=True, text=True, timeout=600, cwd=REPO)
    assert process.returncode == 0, process.stderr[-2000:]
    assert re.search(r"^epoch of 2 batches \(wall\): [0-9.]+ ms$", process.stdout, re.M), process.stdout
    match = re.search(r"^per batch: wall ([0-9.]+) ms .*CPU issue ([0-9.]+) ms \(no sync, 2 batches\)$",
                      process.stdout, re.M)
    assert match and float(match.group(1)) > 0 and float(match.group(2)) > 0, process.stdout
    assert "recbole_hnlm::lightgcn_layers_backward" in process.stdout
    assert "recbole_hnlm::mixgcf_mix" in process.stdout


def test_epoch_case_refuses_zero_batches():
    process = subprocess.run([sys.executable, SCRIPT, "epoch", "--device", "cpu", "--batches", "0"],
                             capture_output=True, text=True, timeout=120, cwd=REPO)
    assert process.returncode == 2 and "--batches must be >= 1" in process.stderr


def test_device_activity_keeps_gpu_work_and_leaves_out_annotation_ranges(script):
    """The profiler mirrors record_function ranges (Optimizer.step#Adam.step) onto the GPU timeline: they are not
    GPU work, and counting them would fill the gaps inside the optimizer step."""
    import torch
    from torch.autograd.profiler_util import FunctionEvent

    cuda, cpu = torch.autograd.DeviceType.CUDA, torch.autograd.DeviceType.CPU

    class Profile:
        @staticmethod
        def events():
            return [FunctionEvent(0, "kernel_a", 1, 10, 20, device_type=cuda),
                    FunctionEvent(1, "Optimizer.step#Adam.step", 1, 0, 100, device_type=cuda,
                                  is_user_annotation=True),
                    FunctionEvent(2, "aten::mm", 1, 5, 30, device_type=cpu),
                    FunctionEvent(3, "Memset (Device)", 1, 40, 45, device_type=cuda)]

    assert script.device_activity(Profile()) == [("kernel_a", 10, 20), ("Memset (Device)", 40, 45)]
