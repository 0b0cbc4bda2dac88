"""A semantic store written by an older recbole_hnlm under older answer checks (upgrade audit): it is computed again,
and the warning saying so names the checks' versions, not their ~1,000-character rule lists."""
import logging

import pytest
import torch

from recbole_hnlm.llm.pipeline import _cached
from recbole_hnlm.llm.semantic import ANSWER_CHECKS
from recbole_hnlm.llm.store import write_pair_store


def _older(tag: str) -> str:
    """The current rules under an older version tag, one clause shorter (as each version bump added one)."""
    current, rules = ANSWER_CHECKS.split(":", 1)
    assert current.startswith("v") and current[1:].isdigit()
    return f"{tag}:" + rules.rsplit(";", 1)[0]


def _store(tmp_path, answer_checks):
    path = str(tmp_path / "toy.hnlm-semantic.safetensors")
    manifest = {"variant": "semantic", "dataset": "toy", "dataset_hash": "d", "seed": 1}
    if answer_checks is not None:
        manifest["answer_checks"] = answer_checks
    write_pair_store(path, ["1", "2"], ["3", "4"], torch.ones(2, 3), manifest)
    return path


@pytest.mark.parametrize("stored, shown", [("v16", "stored v16 != requested"), (None, "stored (absent) != requested")])
def test_an_older_stores_recompute_warning_names_the_versions(tmp_path, caplog, stored, shown):
    """The warning before hours of generation leads with what happens, and names the two versions of the checks."""
    path = _store(tmp_path, _older(stored) if stored else None)
    wanted = {"variant": "semantic", "dataset": "toy", "dataset_hash": "d", "seed": 1, "answer_checks": ANSWER_CHECKS}
    with caplog.at_level(logging.WARNING):
        assert _cached(path, wanted) is False
    (message,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"{shown} {ANSWER_CHECKS.split(':', 1)[0]}" in message
    assert "computed again and replaced" in message and len(message) < 600  # the rule texts are left out


def test_reworded_checks_under_one_version_are_told_apart(tmp_path, caplog):
    """Checks reworded without a new tag still miss the cache, and the warning says they were reworded (it would
    otherwise read 'stored v17 != requested v17')."""
    tag = ANSWER_CHECKS.split(":", 1)[0]
    path = _store(tmp_path, _older(tag))
    with caplog.at_level(logging.WARNING):
        assert _cached(path, {"answer_checks": ANSWER_CHECKS}) is False
    assert f"stored {tag} != requested {tag} (the rules that refuse an LLM answer were reworded)" in caplog.text
