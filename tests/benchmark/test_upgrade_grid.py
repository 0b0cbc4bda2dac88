"""A grid folder written by an older recbole_hnlm, resumed by this one (upgrade audit): results from before commit
0d96dcd (HNLMRec's adapter drawn from the seeded stream before the backbone) carry no ``init_rule``; a resume that
runs new HNLMRec cells into their row says so instead of averaging both initialisations without a word."""
import json
import logging

from test_grid_consistency import FakeRunner, grid


def _as_before_0d96dcd(path):
    """Rewrite a stored result as results were before ``init_rule`` was recorded (the key absent)."""
    result = json.loads(path.read_text())
    result.pop("init_rule", None)
    path.write_text(json.dumps(result))


def _upgrade_warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "0d96dcd" in r.getMessage()]


def test_each_result_records_how_its_initial_weights_were_drawn(tmp_path):
    """Every cell the grid stores carries the initialisation rule it ran under (what a later version compares)."""
    grid(tmp_path / "out", ["RNS", "HNLMRec"], [1], FakeRunner())
    for name in ("MF-RNS-seed1", "MF-HNLMRec-seed1"):
        rule = json.loads((tmp_path / "out" / "runs" / f"{name}.json").read_text()).get("init_rule")
        assert isinstance(rule, str) and "forked" in rule


def test_new_hnlmrec_cells_joining_an_older_row_are_warned_about(tmp_path, caplog):
    """An HNLMRec cell stored without ``init_rule`` (an older version's) is named when this grid runs other HNLMRec
    cells of its row; the stored cell is still kept (it may be a post-0d96dcd result of a version without the key)."""
    out = tmp_path / "out"
    grid(out, ["RNS", "HNLMRec"], [1], FakeRunner())
    _as_before_0d96dcd(out / "runs" / "MF-HNLMRec-seed1.json")
    _as_before_0d96dcd(out / "runs" / "MF-RNS-seed1.json")
    runner = FakeRunner()
    with caplog.at_level(logging.WARNING):
        summary = grid(out, ["RNS", "HNLMRec"], [1, 2], runner)
    assert sorted(runner.calls) == ["MF-HNLMRec-seed2", "MF-RNS-seed2"]
    assert "MF-HNLMRec-seed1" in summary["skipped"]
    (message,) = _upgrade_warnings(caplog)
    assert message.startswith("MF-HNLMRec-seed1: ") and "runs/<cell>.json" in message
    assert "MF-RNS-seed1" not in message  # RNS never drew sampler parameters: its runs are the same in both versions


def test_no_warning_without_new_hnlmrec_cells_or_for_this_versions_results(tmp_path, caplog):
    """Rebuilding an older folder's table (nothing to run), running only other samplers, or resuming results this
    version wrote says nothing: no row mixes two initialisations then."""
    older, own = tmp_path / "older", tmp_path / "own"
    grid(older, ["HNLMRec"], [1], FakeRunner())
    _as_before_0d96dcd(older / "runs" / "MF-HNLMRec-seed1.json")
    grid(own, ["HNLMRec"], [1], FakeRunner())
    with caplog.at_level(logging.WARNING):
        grid(older, ["HNLMRec"], [1], FakeRunner())  # every cell finished
        grid(older, ["RNS", "HNLMRec"], [1], FakeRunner())  # only the RNS cell runs
        grid(own, ["HNLMRec"], [1, 2], FakeRunner())  # a new HNLMRec cell next to one with the record
    assert _upgrade_warnings(caplog) == []
