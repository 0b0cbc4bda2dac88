"""``data_checks.checks_remembered``: a grid or search checks its dataset files once per distinct set of the settings
the checks read, and reads them again when such a setting or a file changes; the pickle check still runs per cell."""
import logging
import os

import pytest

from recbole_hnlm import data_checks
from recbole_hnlm.benchmark import grid, tune
from recbole_hnlm.config import Config
from recbole_hnlm.data_checks import check_dataset_files, checks_remembered
from recbole_hnlm.errors import DataError

INTER = "user_id:token\titem_id:token\trating:float\n" + "".join(f"u{u}\ti{(u * 7 + k) % 9}\t{1 + k % 5}\n"
                                                                 for u in range(6) for k in range(4))
THRESHOLD = "threshold={'rating': 4} gives each interaction a 0/1 label"


def _config(tmp_path, **options):
    options.setdefault("checkpoint_dir", str(tmp_path / "saved"))
    return Config(model="MF", dataset="toy", command_line=False,
                  config_dict={"data_path": str(tmp_path), "threshold": {"rating": 4}, **options})


@pytest.fixture
def toy(tmp_path):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "toy.inter").write_text(INTER)
    return tmp_path


def _threshold_warnings(caplog, calls):
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="recbole_hnlm.data_checks"):
        for call in calls:
            call()
    return sum(THRESHOLD in r.getMessage() for r in caplog.records)


def test_a_passed_check_is_not_repeated_for_settings_it_never_reads(toy, caplog):
    first, other_lr = _config(toy), _config(toy, learning_rate=0.5, embedding_size=8)
    calls = [lambda: check_dataset_files(first), lambda: check_dataset_files(other_lr)]
    assert _threshold_warnings(caplog, calls) == 2  # outside the block: every check reads and warns
    with checks_remembered():
        assert _threshold_warnings(caplog, calls) == 1
    assert data_checks._passed_file_checks is None  # the block leaves nothing behind
    assert _threshold_warnings(caplog, calls) == 2


def test_a_setting_the_checks_read_is_checked_again(toy, caplog):
    with checks_remembered():
        check_dataset_files(_config(toy))
        with caplog.at_level(logging.WARNING, logger="recbole_hnlm.data_checks"):  # the same files, another load_col
            check_dataset_files(_config(toy, load_col={"inter": ["user_id", "item_id", "genre"]}))
        assert "load_col['inter'] names 'genre'" in caplog.text
        separator_hint = r"field_separator \(',' here, a tab by default\); this header holds '\\t'"
        with pytest.raises(ValueError, match=separator_hint):  # another separator: the same header is wrong
            check_dataset_files(_config(toy, field_separator=","))


def test_an_edited_file_is_read_again(toy):
    with checks_remembered():
        check_dataset_files(_config(toy))
        inter = toy / "toy" / "toy.inter"
        inter.write_text(INTER.replace("\ti3\t", "\ti3\t\t", 1))  # one row gains a field
        os.utime(inter, ns=(1, 1))  # a different modification time whatever the clock's resolution
        with pytest.raises(ValueError, match="toy.inter"):
            check_dataset_files(_config(toy))


def test_the_pickle_check_runs_for_every_cell(toy):
    (toy / "cell2").mkdir()
    (toy / "cell2" / "toy-dataset.pth").write_bytes(b"")
    with checks_remembered():
        check_dataset_files(_config(toy))
        with pytest.raises(DataError, match="toy-dataset.pth"):
            check_dataset_files(_config(toy, checkpoint_dir=str(toy / "cell2")))


def test_nested_blocks_share_the_outer_memory(toy, caplog):
    config = _config(toy)
    with checks_remembered():
        check_dataset_files(config)
        with checks_remembered():
            assert _threshold_warnings(caplog, [lambda: check_dataset_files(config)]) == 0
        assert _threshold_warnings(caplog, [lambda: check_dataset_files(config)]) == 0


def _count_file_checks(monkeypatch):
    """Count the real file checks run (the real function still runs; reading ``config`` here would make the read
    setting part of the memory's key)."""
    calls = []
    real = data_checks._check_dataset_files

    def counted(config):
        calls.append(config)
        return real(config)
    monkeypatch.setattr(data_checks, "_check_dataset_files", counted)
    return calls


def _not_trained(*args, **kwargs):
    raise RuntimeError("not trained in this test")


def test_a_search_reads_the_dataset_files_once_and_shows_a_bar_over_many_trials(toy, tmp_path, monkeypatch, capsys):
    calls = _count_file_checks(monkeypatch)
    values = ", ".join(f"{k}e-4" for k in range(1, tune.CHECK_BAR_TRIALS + 1))
    (tmp_path / "space.hyper").write_text(f"learning_rate choice [{values}]\n")
    search = tune.run_search("toy", "MF", "RNS", [1], str(tmp_path / "space.hyper"), str(tmp_path / "search"),
                             config_dict={"data_path": str(toy), "epochs": 1}, cell_runner=_not_trained)
    assert len(search["trials"]) == tune.CHECK_BAR_TRIALS
    assert len(calls) == 1
    assert "checking trials" in capsys.readouterr().err


def test_a_grid_reads_the_dataset_files_once_for_its_pairs(toy, tmp_path, monkeypatch):
    calls = _count_file_checks(monkeypatch)
    summary = grid.run_grid("toy", ["MF", "LightGCN"], ["RNS", "DNS"], [1], str(tmp_path / "grid"),
                            config_dict={"data_path": str(toy), "epochs": 1}, progress=False,
                            cell_runner=_not_trained)
    assert len(summary["failed"]) == 4 and len(calls) == 1
