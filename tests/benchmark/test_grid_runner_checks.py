"""Gaps found by a mutation audit of ``benchmark/grid.py`` and ``benchmark/runner.py``: each test passes on the
code as it is and fails on one small change of it that the other tests let through. Pure functions where they
suffice; grids with the constructed cell runner of test_grid_consistency (no training); one tiny real cell."""
import json
import logging
import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from recbole_hnlm.benchmark.grid import (SettingsMismatch, check_one_split_for_llm_artifacts, expand_cells,
                                         grid_settings, load_result, pending_cells, plugin_defaults, recorded_device,
                                         result_path, run_grid, source_digests, warning_once)
from recbole_hnlm.benchmark.runner import (LLM_ARTIFACT_OPTIONS, Cell, RecordingMixin, cell_config_dict, check_cell,
                                           split_fingerprint, use_own_llm_artifacts)
from recbole_hnlm.errors import ConfigError
from test_grid_consistency import DataRunner, FakeRunner


def grid(out, samplers, seeds, runner, models=("MF",), dataset="toy", **kwargs):
    return run_grid(dataset, list(models), list(samplers), list(seeds), str(out), progress=False, cell_runner=runner,
                    cell_checker=None, **kwargs)


def _edit_result(out, key, edit):
    path = os.path.join(out, "runs", f"{key}.json")
    with open(path) as f:
        result = json.load(f)
    edit(result)
    with open(path, "w") as f:
        json.dump(result, f)


@pytest.fixture
def properties(tmp_path, monkeypatch):
    """A copy of the plugin's property files that the test may edit (``config.PROPERTIES_DIR`` points to it)."""
    from recbole_hnlm import config as config_module

    folder = tmp_path / "properties"
    shutil.copytree(config_module.PROPERTIES_DIR, folder)
    monkeypatch.setattr(config_module, "PROPERTIES_DIR", str(folder))
    return folder


# --- cells and their names ------------------------------------------------------------------------------------------

def test_sparsity_cells_follow_every_main_cell_one_ratio_after_another():
    cells = expand_cells(["MF"], ["RNS", "DNS"], [1, 2], ("sparsity",), (0.2, 0.4))
    assert [c.key for c in cells] == [
        "MF-RNS-seed1", "MF-RNS-seed2", "MF-DNS-seed1", "MF-DNS-seed2",
        "MF-RNS-seed1-train20", "MF-RNS-seed2-train20", "MF-DNS-seed1-train20", "MF-DNS-seed2-train20",
        "MF-RNS-seed1-train40", "MF-RNS-seed2-train40", "MF-DNS-seed1-train40", "MF-DNS-seed2-train40"]
    assert expand_cells(["MF"], ["RNS"], ["3"]) == [Cell("MF", "RNS", 3)]  # no sparsity asked: main cells only


@pytest.mark.parametrize("ratio", [0.29, 0.57, 0.58])
def test_a_sparsity_cell_is_named_by_its_rounded_percent(ratio):
    """int(0.29 * 100) is 28: a truncated name would call the 29 % cell 28 %."""
    assert Cell("MF", "RNS", 1, ratio).key == f"MF-RNS-seed1-train{round(ratio * 100)}"


def test_a_cell_sets_its_own_sampler_seed_and_folder_and_writes_no_resume_state():
    shared = {"sampler": "DNS", "seed": 9, "checkpoint_dir": "elsewhere", "save_resume_state": True, "epochs": 2}
    built = cell_config_dict(Cell("MF", "RNS", 3), "out", shared)
    assert built["sampler"] == "RNS" and built["seed"] == 3 and built["epochs"] == 2
    assert built["checkpoint_dir"] == os.path.join("out", "checkpoints", "MF-RNS-seed3")
    assert built["save_resume_state"] is False
    quiet = cell_config_dict(Cell("MF", "RNS", 3), "out", {})
    assert quiet["show_progress"] is False and quiet["state"] == "WARNING"  # tqdm stays the grid's alone
    assert cell_config_dict(Cell("MF", "RNS", 3), "out", {"show_progress": True})["show_progress"] is True


def test_a_main_hnlmrec_cell_keeps_the_datasets_llm_artifacts():
    """Only a sparsity cell (train_ratio < 1) gets artifacts of its own; the main cell's settings are untouched."""
    config = dict.fromkeys(LLM_ARTIFACT_OPTIONS)
    assert use_own_llm_artifacts(config, Cell("LightGCN", "HNLMRec", 1, 1.0)) is None
    assert config == dict.fromkeys(LLM_ARTIFACT_OPTIONS)


@pytest.mark.parametrize("split_seed, tag", [(None, "train40-seed3"), (3, "train40-seed3"),
                                             (7, "train40-seed3-split7")])
def test_a_sparsity_cells_llm_artifacts_name_the_split_its_subsample_comes_from(fast_config, split_seed, tag):
    """Two grids of one seed on the splits of two split_seeds subsample two training sets: named alike, the second
    found the first one's teacher and was refused ("the teacher of another split")."""
    from recbole_hnlm.config import Config

    settings = cell_config_dict(Cell("LightGCN", "HNLMRec", 3, 0.4), "out", dict(fast_config, split_seed=split_seed))
    config = Config(model="LightGCN", dataset=fast_config["dataset"], config_dict=settings)
    use_own_llm_artifacts(config, Cell("LightGCN", "HNLMRec", 3, 0.4))
    names = {key: os.path.basename(config[key]) for key in ("hnlm_teacher_path", "hnlm_adapter_path")}
    assert names == {"hnlm_teacher_path": f"{fast_config['dataset']}.{tag}.hnlm-teacher.safetensors",
                     "hnlm_adapter_path": f"{fast_config['dataset']}.{tag}.hnlm-adapter"}


def test_grid_json_describes_the_cpu_when_a_config_file_turns_the_gpu_off(tmp_path):
    """use_gpu was read from the --key=value settings only: a yaml's use_gpu: False recorded the GPU's kernels."""
    yaml_file = tmp_path / "cpu.yaml"
    yaml_file.write_text("use_gpu: False\n")
    assert recorded_device(grid_settings({}, [str(yaml_file)])) == "cpu"
    assert recorded_device(grid_settings({"use_gpu": True}, [str(yaml_file)])) is None  # the command line wins
    assert recorded_device(grid_settings({"use_gpu": False}, ())) == "cpu"
    assert recorded_device(grid_settings({}, ())) is None


# --- stored results and what makes a cell finished ------------------------------------------------------------------

def test_a_result_file_that_is_not_json_is_run_again(tmp_path, caplog):
    """... and said so (it was run again without a word, while the report names such a file)."""
    grid(tmp_path, ["RNS"], [1], FakeRunner())
    path = result_path(str(tmp_path), Cell("MF", "RNS", 1))
    with open(path, "w") as f:
        f.write("{cut short")
    assert load_result(path) is None
    runner = FakeRunner()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        summary = grid(tmp_path, ["RNS"], [1], runner)
    assert f"{path} is not a readable result (JSONDecodeError: " in caplog.text
    assert "cell MF-RNS-seed1 runs again" in caplog.text
    assert runner.calls == ["MF-RNS-seed1"] and summary["ran"] == ["MF-RNS-seed1"]
    assert load_result(path)["cell"] == "MF-RNS-seed1"


def test_a_newly_asked_analysis_runs_the_finished_cell_again(tmp_path):
    grid(tmp_path, ["RNS"], [1], FakeRunner())
    runner = FakeRunner()
    summary = grid(tmp_path, ["RNS"], [1], runner, analyses=("fhn",), fhn_pairs=64)
    assert runner.calls == ["MF-RNS-seed1"] and summary["skipped"] == []
    runner = FakeRunner()
    grid(tmp_path, ["RNS"], [1], runner)  # holding more analyses than asked is finished
    assert runner.calls == []


def test_the_summary_holds_the_result_of_every_finished_cell(tmp_path):
    grid(tmp_path, ["RNS"], [1], FakeRunner())
    summary = grid(tmp_path, ["RNS"], [1, 2], FakeRunner())
    assert summary["ran"] == ["MF-RNS-seed2"] and summary["skipped"] == ["MF-RNS-seed1"]
    assert summary["results"] == {key: load_result(os.path.join(tmp_path, "runs", f"{key}.json"))
                                  for key in ("MF-RNS-seed1", "MF-RNS-seed2")}


def test_show_progress_is_not_compared_on_resume(tmp_path):
    grid(tmp_path, ["RNS"], [1], FakeRunner(), config_dict={"epochs": 2, "show_progress": True})
    runner = FakeRunner()
    grid(tmp_path, ["RNS"], [1, 2], runner, config_dict={"epochs": 2, "show_progress": False})
    assert runner.calls == ["MF-RNS-seed2"]


def test_another_dataset_in_the_folder_stops_the_resume(tmp_path):
    grid(tmp_path, ["RNS"], [1], FakeRunner(), dataset="toy")
    runner = FakeRunner()
    with pytest.raises(SettingsMismatch, match="MF-RNS-seed1: stored with other settings than now "
                                               ".dataset: 'toy' -> 'other'; stored -> now"):
        grid(tmp_path, ["RNS"], [1, 2], runner, dataset="other")
    assert runner.calls == []


def test_the_settings_mismatch_names_each_differing_key(tmp_path):
    """The error used to print both settings dicts whole, leaving the reader to find the key that differs."""
    grid(tmp_path, ["RNS"], [1], FakeRunner(), config_dict={"epochs": 2, "train_batch_size": 64})
    with pytest.raises(SettingsMismatch) as error:
        grid(tmp_path, ["RNS"], [1, 2], FakeRunner(), config_dict={"epochs": 3, "learning_rate": 0.01})
    assert "(epochs: 2 -> 3; learning_rate: unset -> 0.01; train_batch_size: 64 -> unset; stored -> now" \
        in str(error.value)


def test_tuple_settings_resume_as_the_lists_json_stored(tmp_path):
    assert grid_settings({"topk": (10, 20)}, ("a.yaml",)) == {"topk": [10, 20], "config_files": ["a.yaml"]}
    grid(tmp_path, ["RNS"], [1], FakeRunner(), config_dict={"topk": (10, 20)})
    runner = FakeRunner()
    grid(tmp_path, ["RNS"], [1], runner, config_dict={"topk": (10, 20)})
    assert runner.calls == []


def test_an_older_result_keeps_its_own_explicit_value_of_a_changed_default(tmp_path):
    """A result written before the defaults were stored, which ran with --hnlm_adapter_reg_weight=1e-3 given
    explicitly, is not the run of a command giving the old default 1e-4."""
    grid(tmp_path, ["HNLMRec"], [1], FakeRunner(), models=["LightGCN"],
         config_dict={"hnlm_adapter_reg_weight": 1e-3})
    _edit_result(str(tmp_path), "LightGCN-HNLMRec-seed1", lambda result: result.pop("defaults"))
    runner = FakeRunner()
    with pytest.raises(SettingsMismatch, match=r"LightGCN-HNLMRec-seed1: stored with other settings than now "
                                               r"\(hnlm_adapter_reg_weight: 0\.001 -> 0\.0001; stored -> now"):
        grid(tmp_path, ["HNLMRec"], [1, 2], runner, models=["LightGCN"],
             config_dict={"hnlm_adapter_reg_weight": 1e-4})
    assert runner.calls == []


def test_a_checkpoint_no_longer_there_leaves_finished_cells_finished(tmp_path):
    """A missing init_from file is the cell checker's error for cells still to run; the finished ones ran on the
    digest they recorded, and a grid with nothing left to run does not refuse them."""
    source = tmp_path / "source.safetensors"
    source.write_bytes(b"weights")
    settings = {"init_from": str(source)}
    grid(tmp_path / "out", ["RNS"], [1], FakeRunner(), config_dict=settings)
    source.unlink()
    runner = FakeRunner()
    summary = grid(tmp_path / "out", ["RNS"], [1], runner, config_dict=settings)
    assert runner.calls == [] and summary["skipped"] == ["MF-RNS-seed1"]


def test_a_result_written_before_the_digests_is_compared_by_path(tmp_path):
    yaml_file = tmp_path / "cf.yaml"
    yaml_file.write_text("learning_rate: 0.01\n")
    grid(tmp_path / "out", ["RNS"], [1], FakeRunner(), config_file_list=[str(yaml_file)])
    _edit_result(str(tmp_path / "out"), "MF-RNS-seed1", lambda result: result.pop("config_files_sha256"))
    yaml_file.write_text("learning_rate: 0.01  # a comment\n")
    runner = FakeRunner()
    grid(tmp_path / "out", ["RNS"], [1], runner, config_file_list=[str(yaml_file)])
    assert runner.calls == []


def test_the_changed_config_files_are_named(tmp_path):
    yaml_file = tmp_path / "cf.yaml"
    yaml_file.write_text("learning_rate: 0.01\n")
    grid(tmp_path / "out", ["RNS"], [1], FakeRunner(), config_file_list=[str(yaml_file)])
    yaml_file.write_text("learning_rate: 0.001\n")
    with pytest.raises(SettingsMismatch, match=f"ran with the config files {yaml_file} of sha256"):
        grid(tmp_path / "out", ["RNS"], [1], FakeRunner(), config_file_list=[str(yaml_file)])


def test_more_fhn_pairs_stop_the_resume_too(tmp_path):
    grid(tmp_path, ["RNS"], [1], FakeRunner(), analyses=("fhn",), fhn_pairs=512)
    with pytest.raises(SettingsMismatch, match="--fhn-pairs 512, now --fhn-pairs 4096"):
        grid(tmp_path, ["RNS"], [1], FakeRunner(), analyses=("fhn",), fhn_pairs=4096)


def test_fhn_pairs_do_not_matter_when_the_fhn_rate_is_not_asked(tmp_path):
    grid(tmp_path, ["RNS"], [1], FakeRunner(), analyses=("fhn",), fhn_pairs=512)
    todo, finished = pending_cells(str(tmp_path), "toy", [Cell("MF", "RNS", 1)], {}, cell_analyses=(),
                                   fhn_pairs=100)
    assert todo == [] and list(finished) == ["MF-RNS-seed1"]


# --- the plugin's defaults ------------------------------------------------------------------------------------------

def test_plugin_defaults_layer_the_dataset_yaml_over_the_overall_one(properties):
    overall = plugin_defaults("MF", "RNS", "toy")["candidate_max_rounds"]
    (properties / "dataset" / "toy.yaml").write_text(f"candidate_max_rounds: {overall + 3}\nepochs: 5\n")
    defaults = plugin_defaults("MF", "RNS", "toy")
    assert defaults["candidate_max_rounds"] == overall + 3 and defaults["epochs"] == 5


def test_a_changed_epochs_default_stops_the_resume(tmp_path, properties):
    """epochs sets what a cell computes: unlike the other options that do not train (where files go), a changed
    default of it is compared."""
    (properties / "dataset" / "toy.yaml").write_text("epochs: 5\n")
    grid(tmp_path / "out", ["RNS"], [1], FakeRunner())
    (properties / "dataset" / "toy.yaml").write_text("epochs: 6\n")
    with pytest.raises(SettingsMismatch, match="epochs: 5 -> 6"):
        grid(tmp_path / "out", ["RNS"], [1, 2], FakeRunner())


# --- digests of the files the settings name -------------------------------------------------------------------------

def test_source_digests_are_none_without_files_and_for_a_missing_one(tmp_path):
    assert source_digests({}) == {"init_from_sha256": None, "config_files_sha256": None}
    assert source_digests({"config_files": [str(tmp_path / "missing.yaml")]}) == {
        "init_from_sha256": None, "config_files_sha256": None}
    grid(tmp_path / "out", ["RNS"], [1], FakeRunner())
    stored = load_result(result_path(str(tmp_path / "out"), Cell("MF", "RNS", 1)))
    assert "config_files_sha256" not in stored and "init_from_sha256" not in stored


# --- up-front checks ------------------------------------------------------------------------------------------------

def test_hnlmrec_over_two_seeds_needs_one_split():
    cells = [Cell("LightGCN", "HNLMRec", 1), Cell("LightGCN", "HNLMRec", 2)]
    with pytest.raises(ConfigError, match="--seeds 1 2: without --split_seed"):
        check_one_split_for_llm_artifacts(cells, {})
    check_one_split_for_llm_artifacts(cells, {"split_seed": 0})  # seed 0 is a split seed too
    check_one_split_for_llm_artifacts(cells, {"eval_args": {"order": "TO"}})  # a split in time order
    check_one_split_for_llm_artifacts([Cell("MF", "RNS", 1), Cell("MF", "RNS", 2), Cell("MF", "HNLMRec", 1)], {})


def test_the_command_lines_split_wins_over_a_config_files(tmp_path):
    yaml_file = tmp_path / "to.yaml"
    yaml_file.write_text("eval_args:\n  order: TO\n")
    cells = [Cell("LightGCN", "HNLMRec", 1), Cell("LightGCN", "HNLMRec", 2)]
    check_one_split_for_llm_artifacts(cells, {}, [str(yaml_file)])
    with pytest.raises(ConfigError, match="without --split_seed"):
        check_one_split_for_llm_artifacts(cells, {"eval_args": {"order": "RO"}}, [str(yaml_file)])


def test_an_unknown_analysis_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown analysis"):
        grid(tmp_path / "out", ["RNS"], [1], FakeRunner(), analyses=("popularity", "nosuch"))
    assert not os.path.exists(tmp_path / "out")


def test_the_sparsity_cells_of_a_pair_are_checked_too(tmp_path):
    """A sparsity cell is refused settings its main cell accepts (HNLMRec's artifact paths): one is checked."""
    checked = []

    def checker(cell, *args, **kwargs):
        checked.append(cell.key)
        return []

    run_grid("toy", ["MF"], ["RNS"], [1, 2], str(tmp_path), analyses=("sparsity",), ratios=(0.2, 0.4),
             progress=False, cell_runner=FakeRunner(), cell_checker=checker)
    assert checked == ["MF-RNS-seed1", "MF-RNS-seed1-train20"]


def test_a_warning_is_logged_once(caplog):
    warn = warning_once()
    with caplog.at_level(logging.WARNING):
        warn("first")
        warn("first")
        warn("second")
    assert [record.getMessage() for record in caplog.records] == ["first", "second"]


def test_eval_only_is_refused_for_a_grid_cell(ml_slice, tmp_path):
    data_path, dataset = ml_slice
    with pytest.raises(ConfigError, match="the cells of a grid train"):
        check_cell(Cell("MF", "RNS", 1), dataset, str(tmp_path), config_dict={"data_path": data_path,
                                                                               "eval_only": True})


# --- what a cell records --------------------------------------------------------------------------------------------

def test_the_recorded_loss_sums_the_parts_of_a_tuple():
    class Base:
        def __init__(self, config, model):
            pass

        def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
            return (1.5, 0.25)

    trainer = type("Recording", (RecordingMixin, Base), {})(None, None)
    assert trainer._train_epoch(None, 0) == (1.5, 0.25)
    assert trainer.epochs_log[0]["train_loss"] == 1.75 and trainer.epochs_log[0]["epoch"] == 0


def _part(pairs):
    users, items = torch.tensor([u for u, _ in pairs]), torch.tensor([i for _, i in pairs])
    return SimpleNamespace(inter_feat={"user_id": users, "item_id": items}, uid_field="user_id", iid_field="item_id")


def test_the_split_fingerprint_does_not_depend_on_the_row_order():
    train, valid, test = [(1, 2), (1, 3), (2, 4)], [(1, 5)], [(2, 6)]
    first = split_fingerprint(_part(train), _part(valid), _part(test))
    assert split_fingerprint(_part(train[::-1]), _part(valid), _part(test)) == first
    assert split_fingerprint(_part(train[:2]), _part(valid + train[2:]), _part(test)) != first


def test_a_sparsity_cell_records_what_it_ran(ml_slice, tmp_path):
    """One tiny real cell (MF + RNS, 40 % of the split of split_seed 7, seed 1, three epochs)."""
    from recbole_hnlm.benchmark.runner import run_cell

    data_path, dataset = ml_slice
    out = str(tmp_path / "out")
    cell = Cell("MF", "RNS", 1, 0.4)
    leftover = os.path.join(out, "checkpoints", cell.key, "left-over.pth")
    os.makedirs(os.path.dirname(leftover))
    open(leftover, "w").close()
    settings = {"data_path": data_path, "epochs": 3, "train_batch_size": 1024, "eval_step": 1, "stopping_step": 10,
                "use_gpu": False, "split_seed": 7}
    result = run_cell(cell, dataset, out, config_dict=settings, analyses=("popularity", "fhn"), fhn_pairs=10 ** 6)
    assert not os.path.exists(leftover)  # an unfinished earlier run's files do not sit beside the new checkpoint
    assert result["seed"] == 1 and result["split"]["split_seed"] == 7 and result["train_ratio"] == 0.4
    fhn = result["analysis"]["fhn"]
    assert fhn["requested_pairs"] == 10 ** 6 and 0 < fhn["pairs"] < 10 ** 6  # what a resume compares: as asked
    times = [epoch["train_time"] for epoch in result["epochs"]]
    assert len(times) == result["epochs_run"] == 3 and result["mean_epoch_time"] == pytest.approx(np.mean(times))
    assert result["median_epoch_time"] == pytest.approx(np.median(times))
    # the evaluation mask is the full split's: the popularity analysis's "All" is RecBole's test metric
    for metric in ("recall@20", "ndcg@20"):
        assert result["analysis"]["popularity"]["All"][metric] == pytest.approx(result["test_result"][metric],
                                                                                abs=5.1e-5)


def test_each_seed_subsamples_the_training_split_its_own_way(ml_slice, tmp_path):
    from recbole_hnlm.benchmark.analysis import subsample_per_user
    from recbole_hnlm.benchmark.runner import build_data, make_config
    from recbole_hnlm.quick_start import read_dataset

    data_path, dataset = ml_slice
    config = make_config("MF", dataset, cell_config_dict(Cell("MF", "RNS", 1, 0.4), str(tmp_path), {
        "data_path": data_path, "use_gpu": False, "split_seed": 7}))
    kept = {}
    for seed in (1, 2):  # a dataset is built once (build() converts its frames in place)
        train_data, _, _, full = build_data(config, read_dataset(config), 0.4, seed)
        users = full.inter_feat[full.uid_field].numpy()
        expected = full.inter_feat[full.iid_field].numpy()[subsample_per_user(users, 0.4, seed)]
        kept[seed] = train_data._dataset.inter_feat[full.iid_field].numpy()
        assert np.array_equal(kept[seed], expected)
    assert not np.array_equal(kept[1], kept[2])


# --- the digest cache of dataset files (a bug the audit found) --------------------------------------------------

def test_a_relative_data_file_in_another_folder_is_read_again_in_the_same_process(tmp_path, monkeypatch):
    """Two extractions of two versions of a dataset (tar keeps the modification time) whose files have one rating
    changed: same size, same mtime. A process that resumes the grid from folder A, then from folder B (tune.py,
    a notebook, the tests), compared B's file with A's cached digest and reused A's cells for B's data."""
    stamp = 1_700_000_000_000_000_000
    for folder, rating in (("A", "4"), ("B", "5")):
        (tmp_path / folder / "data").mkdir(parents=True)
        path = tmp_path / folder / "data" / "toy.inter"
        path.write_text(f"user_id:token\titem_id:token\trating:float\n1\t2\t{rating}\n")
        os.utime(path, ns=(stamp, stamp))

    monkeypatch.chdir(tmp_path / "A")
    grid(tmp_path / "out", ["RNS"], [1], DataRunner())
    grid(tmp_path / "out", ["RNS"], [1], DataRunner())  # a resume from A: A's digest is now cached
    monkeypatch.chdir(tmp_path / "B")
    runner = DataRunner()
    with pytest.raises(SettingsMismatch, match="ran on the dataset file data/toy.inter of sha256"):
        grid(tmp_path / "out", ["RNS"], [1, 2], runner)
    assert runner.calls == []
