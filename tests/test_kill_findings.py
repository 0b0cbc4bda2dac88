"""Findings of an interruption fuzz (Ctrl-C, SIGTERM and SIGKILL at random moments of real runs): the commands
promise one ``interrupted:`` line, exit status 130 (143 for SIGTERM) and nothing half-written; these moments broke it.
Each test delivers a real signal to a real process (itself or a child) at a fixed point of the work."""
import os
import re
import signal
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOAD_COL = "--load_col={'inter': ['user_id', 'item_id', 'rating', 'timestamp']}"

# Sends the signal to its own process at the first call of a function of the modules whose names start with `prefix`
# (and of that name, when `function` is given), then runs `run`. With "recbole.": while a command's imports (torch,
# RecBole: seconds, more on a busy machine) are still loading.
_SIGNAL_AT_FIRST_CALL = """
import os, runpy, signal, sys
def hook(frame, event, arg):
    if event == "call" and str(frame.f_globals.get("__name__", "")).startswith({prefix!r}) and \\
            {function!r} in ("", frame.f_code.co_name):
        sys.setprofile(None)
        os.kill(os.getpid(), signal.{sig})
sys.setprofile(hook)
sys.argv = sys.argv[1:]
{run}
"""
_AS_SCRIPT = 'runpy.run_path(sys.argv[0], run_name="__main__")'
_AS_MODULE = 'runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)'  # python -m


def _signalled(sig, cwd, *command, prefix="recbole.", function="", run=_AS_SCRIPT):
    """The finished process of ``command`` run by ``run`` with ``sig`` sent at the first call the prefix names."""
    code = _SIGNAL_AT_FIRST_CALL.format(prefix=prefix, function=function, sig=sig.name, run=run)
    return subprocess.run([sys.executable, "-c", code, *map(str, command)], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": REPO})


def _interrupted_line(result, sig) -> str:
    """The command's last line, after checking it ended as the commands promise: one ``interrupted:`` line and exit
    status 128 + the signal's number, no traceback."""
    assert result.returncode == 128 + sig, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted:")
    return last


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_run_script_interrupted_while_loading_says_so(sig, tmp_path):
    """Ctrl-C while the run script still imported torch and RecBole printed a ``KeyboardInterrupt`` traceback
    (SIGTERM: a silent exit by the signal); now one ``interrupted:`` line, exit status 128 + the signal's number, and
    nothing written."""
    _interrupted_line(_signalled(sig, tmp_path, os.path.join(REPO, "run_recbole_hnlm.py"), "--model=MF", "--epochs=1"),
                      sig)
    assert os.listdir(tmp_path) == []  # no log, no checkpoint folder


class _Unhandled(Exception):
    """What a SIGTERM raises in this test process when the command under test does not handle it."""


def _raise_unhandled(signum, frame):
    raise _Unhandled(signal.Signals(signum).name)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
@pytest.mark.parametrize("script, args", [("compare.py", ["--models", "MF", "--samplers", "RNS"]),
                                          ("tune.py", ["--model", "MF", "--params_file", "x.hyper"])])
def test_benchmark_scripts_interrupted_while_loading_say_so(sig, script, args, tmp_path):
    """The benchmark scripts imported the grid (torch, RecBole) before their signal handling: Ctrl-C then gave a
    ``KeyboardInterrupt`` traceback, SIGTERM a silent exit by the signal."""
    _interrupted_line(_signalled(sig, tmp_path, os.path.join(REPO, "benchmarks", script), *args, "--out",
                                 tmp_path / "out"), sig)
    assert os.listdir(tmp_path) == []


@pytest.fixture(scope="module")
def finished_grid(ml_slice, tmp_path_factory):
    """``(argv, out)``: a grid of one cell (MF, RNS, one epoch) run to its end by the command line."""
    from recbole_hnlm.benchmark.__main__ import main

    data_path, name = ml_slice
    out = str(tmp_path_factory.mktemp("grid") / "out")
    argv = ["--dataset", name, f"--data_path={data_path}", "--models", "MF", "--samplers", "RNS", "--seeds", "2020",
            "--epochs", "1", "--out", out, LOAD_COL, "--no-plots", "--no-progress"]
    assert main(argv) == 0
    return argv, out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
@pytest.mark.parametrize("report_only", [False, True], ids=["rerun", "report-only"])
def test_compare_interrupted_while_writing_its_report(sig, report_only, finished_grid, monkeypatch, capsys):
    """A signal while compare.py wrote its report (runs.csv, table.md, plots: seconds with plots), after the cells or
    with ``--report-only``, was outside its signal handling: Ctrl-C gave a ``KeyboardInterrupt`` traceback and
    SIGTERM killed it on the spot (a ``.tmp-`` file of the write being made stays behind). Now the documented
    ``interrupted:`` line and 128 + the signal's number, no ``.tmp-`` file, and the rerun writes the report."""
    from recbole_hnlm.benchmark import report
    from recbole_hnlm.benchmark.__main__ import main

    argv, out = finished_grid
    argv = argv + (["--report-only"] if report_only else [])
    for name in ("runs.csv", "table.md"):  # so that the rerun's report is a new one
        if os.path.exists(os.path.join(out, name)):
            os.remove(os.path.join(out, name))
    write_report = report.write_report

    def interrupted_report(*args, **kwargs):
        os.kill(os.getpid(), sig)  # delivered before the first file of the report is written
        return write_report(*args, **kwargs)

    monkeypatch.setattr(report, "write_report", interrupted_report)
    previous = signal.signal(signal.SIGTERM, _raise_unhandled)  # not this test process's end if left unhandled
    try:
        status = main(argv)
    except (KeyboardInterrupt, _Unhandled) as error:
        pytest.fail(f"the command did not handle {sig.name}: {type(error).__name__} {error}")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert status == 128 + sig
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("interrupted:")
    assert not [name for name in os.listdir(out) if ".tmp-" in name]

    monkeypatch.setattr(report, "write_report", write_report)
    assert main(argv) == 0
    assert os.path.isfile(os.path.join(out, "table.md")) and os.path.isfile(os.path.join(out, "runs.csv"))


# SIGKILLs its own process at the N-th os.fsync, which an atomic write calls once its temporary file is complete and
# before it renames it into place: a hard kill in the middle of a checkpoint write.
_SIGKILL_IN_WRITE = """
import os, runpy, signal, sys
left = [int(sys.argv[1])]
def hook(frame, event, arg):
    if event == "c_call" and arg is os.fsync:
        left[0] -= 1
        if not left[0]:
            os.kill(os.getpid(), signal.SIGKILL)
sys.setprofile(hook)
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _killed_in_write(nth, fast_config):
    options = {**fast_config, "model": "MF", "sampler": "RNS", "seed": 2020}
    argv = [f"--{key}={value}" for key, value in options.items() if key != "load_col"] + [LOAD_COL]
    script = os.path.join(REPO, "run_recbole_hnlm.py")
    result = subprocess.run([sys.executable, "-c", _SIGKILL_IN_WRITE, str(nth), script, *argv], capture_output=True,
                            text=True, timeout=300, env={**os.environ, "PYTHONPATH": REPO})
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    folder = fast_config["checkpoint_dir"]
    leftovers = [name for name in os.listdir(folder) if ".tmp-" in name]
    assert len(leftovers) == 1  # the write the kill cut short
    return folder, leftovers[0]


def test_a_checkpoint_write_cut_by_sigkill_is_removed_by_the_rerun(fast_config):
    """SIGKILL during the first resume state's write (no state to resume: the run is started again, under a new name)
    left a checkpoint-sized ``*.resume.safetensors.tmp-<pid>-<random>`` for good: an atomic write removes such a file
    only when it writes the same path again. The next run in the folder removes it (its run's marker shows it
    dead), and leaves a temporary file of a live process's pid alone."""
    from recbole_hnlm.quick_start import run_recbole_hnlm

    folder, leftover = _killed_in_write(1, fast_config)
    assert leftover.endswith(".resume.safetensors" + leftover[leftover.index(".tmp-"):])
    live = leftover.split(".tmp-")[0] + f".tmp-{os.getppid()}-0a0b0c0d"  # a live writer's (this test's parent)
    open(os.path.join(folder, live), "w").close()
    result = run_recbole_hnlm(model="MF", config_dict={**fast_config, "sampler": "RNS", "seed": 2020})
    names = os.listdir(folder)
    assert [name for name in names if ".tmp-" in name] == [live]
    assert os.path.basename(result["resume_state"]) in names and not [n for n in names if n.endswith(".reserved")]


def test_a_best_checkpoint_write_cut_by_sigkill_is_removed_by_the_resume(fast_config):
    """SIGKILL while the first best checkpoint was written (its resume state complete): the resume, as the docs say,
    writes the best file from the state, but the killed write's ``*.safetensors.tmp-<pid>-<random>`` (younger than
    STALE_WRITE_SECONDS) stayed beside it for good. The resume removes it; the continued run's files are whole."""
    from recbole_hnlm.checkpoint import read_trainer_state
    from recbole_hnlm.quick_start import run_recbole_hnlm

    folder, leftover = _killed_in_write(2, fast_config)
    state = os.path.join(folder, leftover.split(".safetensors.tmp-")[0] + ".resume.safetensors")
    assert os.path.isfile(state)
    result = run_recbole_hnlm(model="MF", config_dict={**fast_config, "sampler": "RNS", "seed": 2020,
                                                       "resume_from": state})
    assert [name for name in os.listdir(folder) if ".tmp-" in name] == []
    assert result["resume_state"] == state
    assert read_trainer_state(state)["epoch"] == fast_config["epochs"] - 1
    assert read_trainer_state(result["checkpoint"])["epoch"] is not None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_console_script_interrupted_while_loading_says_so(sig, tmp_path):
    """The ``recbole-hnlm`` console script setup.py declares imported the run (torch, RecBole) before any signal
    handling, so Ctrl-C then was a ``KeyboardInterrupt`` traceback, as the run script's was; the script is run as pip
    writes it (import the entry point's module, exit with its function's value)."""
    with open(os.path.join(REPO, "setup.py"), encoding="utf-8") as handle:
        module, function = re.search(r'"recbole-hnlm=([\w.]+):(\w+)"', handle.read()).groups()
    run = f"import importlib; sys.exit(getattr(importlib.import_module({module!r}), {function!r})())"
    _interrupted_line(_signalled(sig, tmp_path, "recbole-hnlm", "--model=MF", "--epochs=1", run=run), sig)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_recommend_interrupted_while_importing_torch_says_so(sig, tmp_path):
    """``python -m recbole_hnlm.recommend`` imported torch at the top of its module, before any signal handling."""
    _interrupted_line(_signalled(sig, tmp_path, "recbole_hnlm.recommend", "--checkpoint", "run.safetensors", "--out",
                                 "recs.tsv", prefix="torch.", run=_AS_MODULE), sig)
    assert os.listdir(tmp_path) == []


@pytest.fixture(scope="module")
def trained_checkpoint(ml_slice, tmp_path_factory):
    """A checkpoint of a one-epoch MF run on the slice."""
    from recbole_hnlm.quick_start import run_recbole_hnlm

    data_path, name = ml_slice
    folder = tmp_path_factory.mktemp("run")
    result = run_recbole_hnlm(model="MF", config_dict={
        "dataset": name, "data_path": data_path, "epochs": 1, "sampler": "RNS", "show_progress": False,
        "checkpoint_dir": str(folder / "saved"), "log_wandb": False})
    return result["checkpoint"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
@pytest.mark.parametrize("out", ["recs.tsv", "-"])
def test_recommend_interrupted_while_loading_the_run_says_so(sig, out, trained_checkpoint, tmp_path):
    """Ctrl-C while recommend rebuilt the run (RecBole's imports, the dataset: a minute at Yelp2018's size) was a
    ``KeyboardInterrupt`` traceback, SIGTERM a silent exit; now one line that says what was written (a file: nothing,
    standard output: incomplete lines), and a file of an earlier call is left as it was."""
    if out != "-":
        (tmp_path / out).write_text("an earlier call's recommendations\n", encoding="utf-8")
    last = _interrupted_line(_signalled(sig, tmp_path, "recbole_hnlm.recommend", "--checkpoint", trained_checkpoint,
                                        "--out", out, run=_AS_MODULE), sig)
    if out == "-":
        assert "standard output are incomplete" in last
    else:
        assert f"nothing was written to {out}" in last
        assert os.listdir(tmp_path) == [out]
        assert (tmp_path / out).read_text(encoding="utf-8") == "an earlier call's recommendations\n"


def _published_split(folder):
    """A train.txt and test.txt in the adjacency form (``user item item ...``) of LightGCN's data."""
    (folder / "train.txt").write_text("".join(f"{u} " + " ".join(str(u + i) for i in range(10)) + "\n"
                                              for u in range(12)))
    (folder / "test.txt").write_text("".join(f"{u} {u + 10}\n" for u in range(12)))
    return ["--train", folder / "train.txt", "--test", folder / "test.txt", "--dataset", "pub", "--out",
            folder / "out"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_split_import_interrupted_says_how_to_go_on(sig, tmp_path):
    """split_import had no signal handling: Ctrl-C was a traceback, and one in its writes (after it removed an earlier
    import's manifest) left split files that a plain rerun refuses. Interrupted while reading, it says to rerun;
    while writing over an earlier import, that the files are incomplete and ``--overwrite`` replaces them, which a
    rerun with it then does."""
    options = _published_split(tmp_path)
    folder = tmp_path / "out" / "pub"
    last = _interrupted_line(_signalled(sig, tmp_path, "recbole_hnlm.split_import", *options,
                                        prefix="__main__", function="read_split_file",
                                        run=_AS_MODULE), sig)
    assert "did not finish; rerun the command" in last and not folder.exists()

    assert subprocess.run([sys.executable, "-m", "recbole_hnlm.split_import", *map(str, options)], cwd=tmp_path,
                          capture_output=True, env={**os.environ, "PYTHONPATH": REPO}).returncode == 0
    manifest = (folder / "pub.split.json").read_text(encoding="utf-8")
    last = _interrupted_line(_signalled(sig, tmp_path, "recbole_hnlm.split_import", *options, "--valid", "test",
                                        "--overwrite", prefix="recbole_hnlm.files", function="write_json_atomic",
                                        run=_AS_MODULE), sig)
    assert f"the split files in {tmp_path / 'out'}/pub are incomplete; rerun the command with --overwrite" in last
    assert not (folder / "pub.split.json").exists()
    rerun = subprocess.run([sys.executable, "-m", "recbole_hnlm.split_import", *map(str, options), "--valid", "test",
                            "--overwrite"], cwd=tmp_path, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": REPO})
    assert rerun.returncode == 0, rerun.stderr
    assert (folder / "pub.split.json").read_text(encoding="utf-8") != manifest  # the test-copy validation's
    assert (folder / "pub.valid.inter").read_text() == (folder / "pub.test.inter").read_text()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_llm_command_interrupted_while_loading_says_so(sig, tmp_path):
    """``python -m recbole_hnlm.llm`` loads torch and RecBole inside its signal handling (pinned: the fuzz counted it
    among the commands that did not)."""
    _interrupted_line(_signalled(sig, tmp_path, "recbole_hnlm.llm", "negatives", "--dataset", "ml-100k",
                                 "--max_pairs", "1", run=_AS_MODULE), sig)
    assert os.listdir(tmp_path) == []
