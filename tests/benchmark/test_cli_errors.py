"""Exit codes and up-front checks of the benchmark command line: 1 when a cell fails, 2 for bad input caught before
any cell runs (names, dataset files, sampler settings) and for ``--report-only`` on a folder without runs."""
import os
import subprocess
import sys

import pytest

from recbole_hnlm.benchmark.__main__ import main as cli_main
from recbole_hnlm.benchmark.grid import run_grid
from recbole_hnlm.benchmark.report import write_report
from recbole_hnlm.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cli(argv, capsys):
    """``(exit code, stdout, lines of stderr that start with 'error:')`` of one in-process run."""
    code = cli_main(argv + ["--no-progress", "--no-plots"])
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if line.startswith("error:")]


@pytest.fixture
def broken_dataset(tmp_path):
    """``(data_path, name)`` of a well-formed dataset where every user has one interaction: it passes the up-front
    checks, and every cell fails once the data is split (empty validation split)."""
    folder = tmp_path / "data" / "broken"
    folder.mkdir(parents=True)
    rows = "".join(f"u{u}\ti{u % 30}\n" for u in range(60))
    (folder / "broken.inter").write_text("user_id:token\titem_id:token\n" + rows)
    return str(tmp_path / "data"), "broken"


def test_failed_cells_give_exit_code_1_and_name_their_error_files(broken_dataset, tmp_path, capsys):
    data_path, dataset = broken_dataset
    out = str(tmp_path / "out")
    code, stdout, errors = _cli(["--dataset", dataset, "--models", "MF", "--samplers", "RNS", "DNS", "--seeds", "1",
                                 "--out", out, f"--data_path={data_path}"], capsys)
    assert code == 1
    assert "cells: 0 ran, 0 skipped (finished), 2 failed: MF-RNS-seed1, MF-DNS-seed1" in stdout
    error_files = [os.path.join(out, "runs", f"MF-{s}-seed1.error.txt") for s in ("RNS", "DNS")]
    assert len(errors) == 1 and "2 cell(s) failed" in errors[0]
    for path in error_files:
        assert path in errors[0] and os.path.isfile(path)
    with open(os.path.join(out, "table.md")) as f:  # the report is still written, with the failures listed
        assert "## Failed cells" in f.read()


@pytest.mark.parametrize("grid_args, expected", [
    (["--models", "MF", "MFX"], "Unknown model 'MFX'"),
    (["--samplers", "RNS", "DNZ"], "Unknown sampler 'DNZ'"),
    (["--dataset", "nosuch"], "Dataset 'nosuch' not found"),
    (["--samplers", "RNS", "DNS", "--dns_candidates=0"], "Invalid value for 'dns_candidates': 0"),
    (["--samplers", "RNS", "AHNS", "--ahns_beta=-1"], "Invalid value for 'ahns_beta': -1"),
    (["--models", "BPR", "--samplers", "RNS", "DNS"], "Sampler DNS needs the propagated"),
    (["--models", "BPR", "--samplers", "RNS", "--analysis", "fhn"], "--analysis fhn needs a recbole_hnlm backbone"),
], ids=["model", "sampler", "dataset", "dns_candidates", "ahns_beta", "pair", "fhn"])
def test_bad_input_stops_before_any_cell_with_exit_code_2(grid_args, expected, ml_slice, tmp_path, capsys):
    data_path, dataset = ml_slice
    out = str(tmp_path / "out")
    defaults = {"--dataset": dataset, "--models": "MF", "--samplers": "RNS"}
    argv = [arg for key, value in defaults.items() if key not in grid_args for arg in (key, value)]
    argv += grid_args + ["--seeds", "1", "--epochs", "1", "--out", out, f"--data_path={data_path}"]
    code, _, errors = _cli(argv, capsys)
    assert code == 2
    assert len(errors) == 1 and expected in errors[0]
    assert not os.path.exists(out)  # no cell ran (a cell writes its log there), no grid.json, no table


def test_run_grid_checks_every_pair_before_running_a_cell(ml_slice, tmp_path):
    data_path, dataset = ml_slice
    calls = []
    with pytest.raises(ConfigError, match="'dns_candidates': 0"):
        run_grid(dataset, ["MF"], ["RNS", "DNS"], [1, 2], str(tmp_path / "out"), progress=False,
                 config_dict={"data_path": data_path, "dns_candidates": 0},
                 cell_runner=lambda cell, *args, **kwargs: calls.append(cell.key))
    assert calls == []
    assert not os.path.exists(tmp_path / "out")


def test_report_only_without_runs_is_an_error_and_writes_nothing(tmp_path, capsys):
    missing = str(tmp_path / "nonexistent")
    code, stdout, errors = _cli(["--report-only", "--out", missing], capsys)
    assert code == 2 and stdout == ""
    assert len(errors) == 1 and "No runs found" in errors[0] and missing in errors[0]
    assert not os.path.exists(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _cli(["--report-only", "--out", str(empty)], capsys)[0] == 2
    assert os.listdir(empty) == []
    with pytest.raises(FileNotFoundError, match="No runs found"):
        write_report(str(empty))


def test_compare_script_exit_code_for_a_missing_dataset(tmp_path):
    out = str(tmp_path / "out")
    process = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "compare.py"), "--dataset", "nosuch", "--models", "MF",
         "--samplers", "RNS", "--seeds", "1", "--out", out, "--no-progress", "--no-plots",
         f"--data_path={tmp_path}"], capture_output=True, text=True, timeout=300)
    assert process.returncode == 2, process.stderr
    assert "error: Dataset 'nosuch' not found" in process.stderr and "cells:" not in process.stdout
    assert not os.path.exists(out)


@pytest.mark.parametrize("bad_args, expected", [
    (["--ratios", "abc"], "argument --ratios: expected comma-separated numbers strictly between 0 and 1"),
    (["--ratios", "0.2,1.0"], "argument --ratios: expected comma-separated numbers strictly between 0 and 1"),
    (["--ratios", "0.2,0.201"], "argument --ratios: 0.2 and 0.201 both name their cells train20"),
    (["--seeds", "x"], "argument --seeds: expected integers from 0 to 4294967295, got 'x'"),
    (["--seeds", "-1"], "argument --seeds: expected integers from 0 to 4294967295, got '-1'"),
    (["--seeds", "1", "2", "1"], "argument --seeds: 1 is listed twice"),
    (["--epochs", "abc"], "argument --epochs: expected an integer >= 1, got 'abc'"),
    (["--epochs", "0"], "argument --epochs: expected an integer >= 1, got '0'"),
    (["--fhn-pairs", "-5"], "argument --fhn-pairs: expected an integer >= 1, got '-5'"),
    (["--analysis", "popularity,fnh"], "argument --analysis: expected a comma-separated subset of popularity, fhn"),
    (["--models", "MF", "mf"], "argument --models: mf repeats MF (names are case-insensitive)"),
    (["--config_files", "nosuch.yaml"], "argument --config_files: nosuch.yaml not found"),
    (["--sampler=DNS"], "--sampler=DNS is set by each cell here: use --samplers instead"),
    (["--seed=3"], "--seed=3 is set by each cell here: use --seeds instead"),
    (["--resume_from=x.resume.safetensors"], "--resume_from is for single runs of the run script; the grid resumes"),
    (["--save_resume_state=True"], "--save_resume_state is for single runs of the run script"),
    (["--init_from=saved/MF-x.safetensors", "--analysis", "sparsity"],
     "--init_from cannot be combined with --analysis sparsity: the checkpoint was trained on the whole"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_malformed_options_are_one_error_line_naming_the_option(bad_args, expected, tmp_path, capsys):
    out = str(tmp_path / "out")
    code, stdout, errors = _cli(["--dataset", "nosuch", "--models", "MF", "--samplers", "RNS", "--out", out]
                                + bad_args, capsys)
    assert code == 2 and stdout == ""
    assert len(errors) == 1 and expected in errors[0], errors
    assert not os.path.exists(out)


def test_compare_script_malformed_ratios_without_traceback(tmp_path):
    out = str(tmp_path / "out")
    process = subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", "compare.py"), "--ratios", "abc", "--out", out],
        capture_output=True, text=True, timeout=300)
    assert process.returncode == 2, process.stderr
    assert "Traceback" not in process.stderr
    errors = [line for line in process.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--ratios" in errors[0] and "'abc'" in errors[0]
    assert not os.path.exists(out)


@pytest.mark.parametrize("grid_args, expected", [
    (["--models", "MFX"], "also runs with --samplers RNS."),
    (["--models", "BPR", "--samplers", "RNS", "DNS"],
     "Use --models <one of MF, NGCF, LightGCN, SGL> or --samplers RNS."),
], ids=["model", "pair"])
def test_name_errors_hint_at_the_grid_options(grid_args, expected, ml_slice, tmp_path, capsys):
    from recbole_hnlm.utils import get_model

    data_path, dataset = ml_slice
    out = str(tmp_path / "out")
    argv = ["--dataset", dataset, "--samplers", "RNS"] if "--samplers" not in grid_args else ["--dataset", dataset]
    code, _, errors = _cli(argv + grid_args + ["--seeds", "1", "--out", out, f"--data_path={data_path}"], capsys)
    assert code == 2 and len(errors) == 1
    assert expected in errors[0] and "--sampler=" not in errors[0] and "--model=" not in errors[0]
    with pytest.raises(ConfigError, match="also runs with --sampler=RNS"):  # the run script keeps its own wording
        get_model("MFX")


def test_unknown_option_warnings_are_printed_once_per_grid(ml_slice, tmp_path, caplog):
    data_path, dataset = ml_slice
    ran = []
    run_grid(dataset, ["MF", "LightGCN"], ["RNS", "DNS"], [1], str(tmp_path / "out"), progress=False,
             config_dict={"data_path": data_path, "epochz": 3},
             cell_runner=lambda cell, *args, **kwargs: ran.append(cell.key) or {"cell": cell.key})
    assert len(ran) == 4  # four (model, sampler) pairs checked, each with the same settings
    warnings = [r.getMessage() for r in caplog.records if "Unknown option 'epochz'" in r.getMessage()]
    assert warnings == ["Unknown option 'epochz' is ignored: did you mean 'epochs'?"]


def test_options_no_cell_reads_are_warned_about_once(ml_slice, tmp_path, caplog):
    """A grid accepted another backbone's or sampler's option without a word (``--n_layers`` for a grid of MF
    cells); an option that some cell reads (LightGCN's ``n_layers`` in an MF + LightGCN grid) is not warned about."""
    data_path, dataset = ml_slice

    def warnings(models, samplers, **options):
        caplog.clear()
        run_grid(dataset, models, samplers, [1], str(tmp_path / "-".join(models + samplers)), progress=False,
                 config_dict={"data_path": data_path, **options},
                 cell_runner=lambda cell, *args, **kwargs: {"cell": cell.key})
        return [r.getMessage() for r in caplog.records if "is ignored" in r.getMessage()]

    assert warnings(["MF"], ["RNS", "DNS"], n_layers=2, dns_candidates=8) == [
        "Option 'n_layers' is ignored: it is an option of the LightGCN/SGL model, which none of this grid's 2 "
        "model-sampler pairs to run reads."]
    assert warnings(["MF"], ["RNS"], dns_candidates=8) == [
        "Option 'dns_candidates' is ignored: it is an option of the DNS sampler, which a MF run with the RNS sampler "
        "never reads."]
    assert warnings(["MF", "LightGCN"], ["RNS"], n_layers=2) == []


@pytest.mark.parametrize("bench", ["selection", "spmm_forward"])
def test_kernel_benches_refuse_to_run_with_the_kernels_off(bench):
    """With the kernels switched off the "ours" rows time the PyTorch reference against itself; only the
    propagation benches (those taking the graph fixture) refused, the negative-mixing ones ran and exited 0."""
    env = dict(os.environ, RECBOLE_HNLM_DISABLE_EXT="1")
    done = subprocess.run([sys.executable, "-m", "pytest", os.path.join(REPO, "benchmarks"), "--benchmark-only",
                           "--benchmark-enable", "-k", bench, "-q", "-p", "no:cacheprovider"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert done.returncode == 2 and "run PyTorch references (RECBOLE_HNLM_DISABLE_EXT=1" in done.stdout + done.stderr


def test_hnlmrec_over_seeds_needs_one_split(ml_slice, tmp_path, capsys):
    """The README's grid (HNLMRec, seeds 2020-2022, no --split_seed) failed every HNLMRec cell but the first seed's:
    the teacher file serves one split. It is refused before anything runs, naming the option; one seed, or
    --split_seed given on the command line or in a config file, passes the check."""
    data_path, dataset = ml_slice
    out = str(tmp_path / "out")
    common = ["--dataset", dataset, "--models", "MF", "--samplers", "RNS", "HNLMRec", "--out", out,
              f"--data_path={data_path}"]
    code, _, errors = _cli(common + ["--seeds", "2020", "2021"], capsys)
    assert code == 2 and errors == [
        "error: --samplers HNLMRec with --seeds 2020 2021: without --split_seed each seed splits the data its own way, "
        "but HNLMRec's LLM artifacts (teacher, adapter, store) serve one training split. Give --split_seed=2020: one "
        "split for every cell, each seed still its own initialisation and sampling (as docs/results.md's grids)."]
    assert not os.path.exists(out)
    from recbole_hnlm.benchmark.grid import check_one_split_for_llm_artifacts
    from recbole_hnlm.benchmark.runner import Cell

    cells = [Cell("MF", "HNLMRec", seed) for seed in (2020, 2021)]
    settings = tmp_path / "split.yaml"
    settings.write_text("split_seed: 7\n")
    check_one_split_for_llm_artifacts(cells, {"split_seed": 2020})
    check_one_split_for_llm_artifacts(cells, {"benchmark_filename": ["train", "valid", "test"]})  # pre-split files
    check_one_split_for_llm_artifacts(cells, {"eval_args": {"order": "TO", "split": {"RS": [0.8, 0.1, 0.1]}}})
    check_one_split_for_llm_artifacts(cells, None, [str(settings)])
    check_one_split_for_llm_artifacts(cells[:1] + [Cell("MF", "RNS", 2021)])
    with pytest.raises(ConfigError, match="--split_seed=2020"):
        check_one_split_for_llm_artifacts(cells)


def test_help_names_the_default_grid_and_what_it_needs(capsys):
    """The bare command's grid (HNLMRec over three seeds) is refused without --split_seed: --help said neither the
    defaults nor that (a docs audit)."""
    from recbole_hnlm.benchmark.__main__ import DEFAULT_MODELS, DEFAULT_SAMPLERS, DEFAULT_SEEDS

    with pytest.raises(SystemExit) as done:
        cli_main(["--help"])
    assert done.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert f"(default: {' '.join(DEFAULT_MODELS)})" in shown and f"(default: {' '.join(DEFAULT_SAMPLERS)})" in shown
    assert f"(default: {' '.join(map(str, DEFAULT_SEEDS))}); HNLMRec over several seeds needs --split_seed=N" in shown
