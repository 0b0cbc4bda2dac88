"""Findings of a fuzz of the command lines: each odd value below ended in a Python traceback (exit status 1) instead
of one ``error:`` line with exit status 2. The option checks run before any data is read, so each case is quick."""
import os
import subprocess
import sys

import pytest

from recbole_hnlm.config import Config, read_config_files
from recbole_hnlm.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build(**options):
    return Config(model="MF", dataset="ml-100k", config_dict=options, command_line=False)


@pytest.mark.parametrize("value", [5, 1.5, True, "", "  "])
def test_checkpoint_dir_that_is_not_a_path_is_refused(value):
    """``--checkpoint_dir=1_000`` (an int) was a TypeError in the pickle check's ``os.path.join``."""
    with pytest.raises(ConfigError, match="Option 'checkpoint_dir' must be the path of a folder"):
        build(checkpoint_dir=value)


def test_checkpoint_dir_that_is_a_file_is_refused(tmp_path):
    """A file (or a FIFO, a device, a dangling link) as checkpoint_dir was a NotADirectoryError once the trainer
    reserved its checkpoint name, after the data had loaded."""
    plain = tmp_path / "plain"
    plain.write_text("")
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    for path in (plain, dangling):
        with pytest.raises(ConfigError, match="Option 'checkpoint_dir'.*is not a folder"):
            build(checkpoint_dir=str(path))


def test_checkpoint_dir_folder_or_missing_is_taken(tmp_path):
    """The check refuses no usable folder: an existing one, or one not made yet (the trainer creates it)."""
    assert build(checkpoint_dir=str(tmp_path))["checkpoint_dir"] == str(tmp_path)
    assert build(checkpoint_dir=str(tmp_path / "new"))["checkpoint_dir"] == str(tmp_path / "new")
    assert build(checkpoint_dir=tmp_path / "path")["checkpoint_dir"] == str(tmp_path / "path")  # RecBole: a str


@pytest.mark.parametrize("value", [1.5, 3, None, ["adam"], ""])
def test_learner_that_is_not_a_name_is_refused(value):
    """``--learner=1.5`` was an AttributeError (``.lower()``) in RecBole's trainer, after the data had loaded."""
    with pytest.raises(ConfigError, match="Option 'learner' must name an optimizer"):
        build(learner=value)


@pytest.mark.parametrize("value", ["[1,", 5, {"rating": 4, "timestamp": 1}, {"rating": "abc"}, {}])
def test_threshold_other_than_one_field_and_a_number_is_refused(value):
    """RecBole takes ``threshold`` as ``{field: number}`` with one entry; ``--threshold=[1,`` ended in RecBole's
    ``ValueError: Threshold length should be 1.`` traceback once the data was read."""
    with pytest.raises(ConfigError, match="Option 'threshold' must be"):
        build(threshold=value)


def test_threshold_of_one_field_is_taken():
    assert build(threshold={"rating": 4})["threshold"] == {"rating": 4}


def test_yaml_key_that_is_not_a_name_is_refused(tmp_path):
    """A yaml file with an integer key (``1: 2``) was a TypeError in the misspelt-option hint (difflib)."""
    path = tmp_path / "int_keys.yaml"
    path.write_text("epochs: 1\n1: 2\n")
    with pytest.raises(ConfigError, match="int_keys.yaml.*1"):
        read_config_files([str(path)])


def _run(*argv, cwd):
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_run_script_checkpoint_dir_int_is_one_error_line(tmp_path):
    """End to end: the run script stops with exit status 2 and an ``error:`` line, no traceback."""
    result = _run(os.path.join(REPO, "run_recbole_hnlm.py"), "--model=MF", "--epochs=1", "--checkpoint_dir=7",
                  cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    assert "error: Option 'checkpoint_dir'" in result.stdout + result.stderr


def test_tune_out_dangling_link_is_one_error_line(tmp_path):
    """``tune.py --out <dangling link>`` was a FileExistsError traceback when the search wrote search.json."""
    params = tmp_path / "p.hyper"
    params.write_text("learning_rate choice [0.01]\n")
    out = tmp_path / "out"
    out.symlink_to(tmp_path / "nowhere")
    result = _run(os.path.join(REPO, "benchmarks", "tune.py"), "--model", "MF", "--params_file", str(params),
                  "--out", str(out), "--epochs", "1", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    assert f"--out {out}" in result.stdout + result.stderr


@pytest.mark.parametrize("name", ["../ml-100k", "sub/ml-100k", "ml-100k/", ".."])
def test_dataset_that_is_a_path_is_refused(name):
    """``--dataset=../tiny`` ended in ``error: [Errno 2] No such file or directory: 'log/MF/MF-../tiny-<time>.log'``
    (RecBole's log file name), which named neither the option nor the cause."""
    with pytest.raises(ConfigError, match="Option 'dataset' must name a dataset"):
        Config(model="MF", dataset=name, config_dict={"data_path": "/nonexistent"}, command_line=False)
