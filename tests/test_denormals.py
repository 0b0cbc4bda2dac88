"""flush_denormal reaches every intra-op thread only when set before torch's thread pool starts (checked in fresh
processes: the flags are per thread and outlive a test)."""
import json
import os
import subprocess
import sys
import textwrap


def _run(body):
    code = textwrap.dedent("""
        import json, logging, torch
        torch.set_num_threads(2)
        from recbole_hnlm.denormals import all_threads_flush, flush_denormals
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
    """) + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_set_before_the_pool_starts_every_thread_flushes():
    result, log = _run("""
        ok = flush_denormals(True)
        (torch.randn(2048, 256) @ torch.randn(256, 256)).sum()  # the pool starts after the flags were set
        print(json.dumps([ok, all_threads_flush()]))
    """)
    assert result == [True, True] and "flush_denormal" not in log


def test_a_pool_started_earlier_keeps_subnormals_and_is_warned_about():
    result, log = _run("""
        before = all_threads_flush()  # starts the pool without the flags
        print(json.dumps([before, flush_denormals(True), all_threads_flush(), flush_denormals(False)]))
    """)
    assert result == [False, False, False, True]  # the main thread flushes, the worker does not
    assert "worker threads keep subnormal floats" in log and "OMP_NUM_THREADS=1" in log


def test_a_run_flushes_on_every_thread(fast_config):
    """The run script turns flushing on before its first parallel operation (the dataset, the teacher ...)."""
    result, log = _run(f"""
        from recbole_hnlm.quick_start import run_recbole_hnlm
        run_recbole_hnlm(model="LightGCN", config_dict={{**{fast_config!r}, "sampler": "RNS", "epochs": 1}})
        print(json.dumps([all_threads_flush()]))
    """)
    assert result == [True], log
