"""The GPU benchmark script's smoke test on the CPU (``--device cpu --quick``): every case of the table is printed,
after the cross-checks against the references that run before timing. Times on the CPU mean nothing here."""
import os
import re
import subprocess
import sys

import pytest

from recbole_hnlm.ops import _ext

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "benchmarks", "run_gpu_benchmarks.py")
CASES = ["1 layer", "propagation fwd+bwd K=3", "layer stack fwd+bwd K=3", "MixGCF step fwd+bwd B=2048 M=64",
         "DNS select", "AHNS select", "LightGCN+MixGCF epoch (GPU sampling)"]


@pytest.mark.skipif(not _ext.is_enabled(), reason="the script times the C++ kernels (refused without them)")
def test_quick_run_on_the_cpu_prints_every_case():
    process = subprocess.run([sys.executable, SCRIPT, "--device", "cpu", "--quick", "--graphs", "yelp2018",
                              "--dtypes", "float32"], capture_output=True, text=True, timeout=900, cwd=REPO)
    assert process.returncode == 0, process.stderr[-3000:]
    assert "rounds 2" in process.stdout  # --quick's default
    rows = [line.split(" | ") for line in process.stdout.splitlines() if line.startswith("| yelp2018 | float32 |")]
    assert [case for case in CASES if case not in {row[2] for row in rows}] == []
    for row in rows:
        assert float(row[4]) > 0 and re.fullmatch(r"1\.0 \(ours\)|[0-9.]+x", row[5]), row
    layer = {row[3] for row in rows if row[2] == "1 layer"}  # the CPU baseline is not named after cuSPARSE
    assert "torch.sparse.mm CSR (CPU)" in layer and not [v for v in layer if "cuSPARSE" in v], layer
    notes = {(row[2], row[3]): row[6].rstrip(" |") for row in rows}
    # the target's measure (gathered rows only, perf_anchors.md) first; it counted written rows and indices too
    bandwidth = re.fullmatch(r"(\d+) GB/s gathered, (\d+) GB/s of every byte moved", notes[("1 layer", "ours spmm")])
    assert bandwidth and int(bandwidth.group(1)) <= int(bandwidth.group(2))  # the gathered bytes are part of all
    mixgcf = next(case for case in CASES if case.startswith("MixGCF step"))
    eager = float(re.fullmatch(r"saved for backward ([0-9.]+) MB", notes[(mixgcf, "eager official MixGCF")]).group(1))
    assert eager >= 2048 * 64 * 4 * 64 * 4 / 1e6  # MixGCF's code keeps its mixed [B, M, L, d] candidates (was 3.3 MB)
    epochs = [row for row in rows if row[2] == CASES[-1]]
    assert len(epochs) == 7 and all(row[6].startswith("2 batches") for row in epochs)


def test_cuda_device_without_a_gpu_is_refused_with_the_smoke_test_named():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    process = subprocess.run([sys.executable, SCRIPT, "--rounds", "1"], capture_output=True, text=True, timeout=300,
                             cwd=REPO)
    assert process.returncode == 2 and "--device cpu --quick" in process.stderr, process.stderr


def test_the_script_refuses_to_time_the_references_as_ours():
    env = dict(os.environ, RECBOLE_HNLM_DISABLE_EXT="1")
    process = subprocess.run([sys.executable, SCRIPT, "--device", "cpu", "--quick"], capture_output=True, text=True,
                             timeout=300, cwd=REPO, env=env)
    assert process.returncode == 1 and "nothing to benchmark" in process.stderr, process.stderr
    assert "run PyTorch references (RECBOLE_HNLM_DISABLE_EXT=1" in process.stderr and "|" not in process.stdout


def test_an_unknown_dtype_is_a_usage_error_before_the_graphs_are_built():
    process = subprocess.run([sys.executable, SCRIPT, "--device", "cpu", "--quick", "--dtypes", "float16"],
                             capture_output=True, text=True, timeout=300, cwd=REPO)
    assert process.returncode == 2 and "invalid choice: 'float16'" in process.stderr, process.stderr


@pytest.fixture
def script(monkeypatch):
    """The script as a module, its command line set by ``run(*args)``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_gpu_benchmarks", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def run(*args):
        monkeypatch.setattr(sys, "argv", [SCRIPT, "--device", "cpu", "--quick", "--graphs", "yelp2018", "--dtypes",
                                          "float32", "--rounds", "1", "--skip-epoch", *args])
        module.main()

    module.run = run
    return module


@pytest.mark.skipif(not _ext.is_enabled(), reason="the script times the C++ kernels (refused without them)")
def test_an_op_off_by_1e_3_is_caught_before_anything_is_timed(script, monkeypatch, capsys):
    """The float32 checks use the tests' tolerance (1e-4): at 3e-2 a propagation 1e-3 off was timed as correct."""
    propagate = script.lightgcn_propagate
    monkeypatch.setattr(script, "lightgcn_propagate", lambda *args, **kwargs: propagate(*args, **kwargs) + 1e-3)
    with pytest.raises(AssertionError, match="not close"):  # the cross-check's, not another assertion's
        script.run()
    assert "| yelp2018 |" not in capsys.readouterr().out


@pytest.mark.skipif(not _ext.is_enabled(), reason="the script times the C++ kernels (refused without them)")
def test_mixgcf_rows_off_by_1e_3_are_caught_before_they_are_timed(script, monkeypatch, capsys):
    mix = script.mixgcf_mix

    def off(*args, **kwargs):
        z, chosen = mix(*args, **kwargs)
        return z + 1e-3, chosen

    monkeypatch.setattr(script, "mixgcf_mix", off)
    with pytest.raises(AssertionError, match="not close"):  # the cross-check's, not another assertion's
        script.run()
    assert "MixGCF step" not in capsys.readouterr().out


def test_the_eager_epoch_baseline_keeps_its_mixed_candidates(script):
    """MixGCF's code keeps its [B, M, L, d] mixed candidates for backward (for the query's gradient): a baseline epoch
    that detached the query saved none and ran faster than MixGCF does."""
    import torch

    graph, sizes = script.build_graph("yelp2018", torch.device("cpu"), True)
    epoch, _ = script.epoch_step_factory(graph, sizes, torch.device("cpu"), torch.float32, use_kernels=False,
                                         max_batches=1)
    shapes = []

    def pack(tensor):
        shapes.append(tuple(tensor.shape))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        epoch(1)
    assert (script.B, script.M, script.K + 1, script.D) in shapes, shapes
