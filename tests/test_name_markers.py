"""Checkpoint name markers (``.<stem>.reserved``): a live run's is locked, whatever its pid means here (another
container's process, or one with this process's pid), and this process's own never refuses its resume."""
import errno
import os

import pytest

from lock_holder import held_by_another_process, seen_held_by_another_process
from recbole_hnlm.errors import ConcurrentWriterError
from recbole_hnlm.trainer import (_HELD_MARKERS, _claim_marker, _create_marker, _drop_marker,
                                  check_resume_not_in_use)


def test_a_locked_marker_without_a_pid_yet_is_live(tmp_path):
    with held_by_another_process(str(tmp_path / ".MF-x.reserved"), "", truncate=True):
        with pytest.raises(ConcurrentWriterError, match=r"pid unknown"):
            check_resume_not_in_use(str(tmp_path / "MF-x.resume.safetensors"))


def test_this_processs_own_marker_does_not_refuse_its_resume(tmp_path):
    marker = str(tmp_path / ".MF-y.reserved")
    assert _create_marker(marker)
    try:
        check_resume_not_in_use(str(tmp_path / "MF-y.resume.safetensors"))
    finally:
        _drop_marker(marker)


def test_claiming_a_marker_a_live_run_holds_returns_its_pid_and_leaves_it(tmp_path):
    """The trainer's own check (the run script refuses first): without it a resume took a live run's marker over,
    and two processes wrote one checkpoint pair."""
    marker = str(tmp_path / ".MF-z.reserved")
    with held_by_another_process(marker, "4194305\n", truncate=True):  # a pid no process has here
        assert _claim_marker(marker) == 4194305
        assert open(marker).read().strip() == "4194305"


def test_a_marker_made_where_no_hard_link_can_be_is_locked_too(tmp_path, monkeypatch):
    def no_link(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    marker = str(tmp_path / ".MF-w.reserved")
    assert _create_marker(marker) and not _create_marker(marker)
    try:
        assert seen_held_by_another_process(marker)
        assert open(marker).read().strip() == str(os.getpid())
        assert os.listdir(tmp_path) == [".MF-w.reserved"]  # no temporary file left
    finally:
        _drop_marker(marker)


def test_a_dropped_marker_is_no_longer_this_processs(tmp_path):
    """After its run let go of the name, a marker another process creates at that path is that process's."""
    marker = str(tmp_path / ".MF-v.reserved")
    assert _create_marker(marker)
    _drop_marker(marker)
    assert os.path.abspath(marker) not in _HELD_MARKERS and not os.path.exists(marker)
    with held_by_another_process(marker, "4194305\n", truncate=True):
        with pytest.raises(ConcurrentWriterError):
            check_resume_not_in_use(str(tmp_path / "MF-v.resume.safetensors"))


def test_a_closed_trainer_holds_no_marker(fast_config):
    """A grid runs many trainers in one process: each lets go of its marker's open file (or the process runs out of
    file descriptors)."""
    from recbole.data import create_dataset, data_preparation

    from recbole_hnlm.config import Config
    from recbole_hnlm.model.mf import MF
    from recbole_hnlm.trainer import HNLMTrainer

    config = Config(model="MF", config_dict={**fast_config, "sampler": "RNS", "epochs": 1})
    train_data, _, _ = data_preparation(config, create_dataset(config))
    os.makedirs(fast_config["checkpoint_dir"], exist_ok=True)
    before = dict(_HELD_MARKERS)
    trainer = HNLMTrainer(config, MF(config, train_data._dataset))
    assert len(_HELD_MARKERS) == len(before) + 1
    trainer.close()
    assert _HELD_MARKERS == before
