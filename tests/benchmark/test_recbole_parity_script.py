"""benchmarks/recbole_parity.py end to end on the ml-100k slice: our LightGCN and RecBole's, trained side by side
with the same objective, score the same; the run files and the table (parity.md: not a compare.py report) are
written, and a second call reuses the runs."""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "benchmarks", "recbole_parity.py")


def test_lightgcn_trains_to_recboles_metrics(ml_slice, tmp_path):
    data_path, name = ml_slice
    out = tmp_path / "parity"
    command = [sys.executable, SCRIPT, "--models", "LightGCN", "--seeds", "2020", "--epochs", "2", "--dataset", name,
               "--data_path", data_path, "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    ours, theirs = (json.loads((out / "runs" / f"{side}-LightGCN-2020.json").read_text())
                    for side in ("ours", "recbole"))
    assert ours["model"] == theirs["model"] == "LightGCN" and theirs["require_pow"] is True
    for run in (ours, theirs):  # what a later call checks before reusing the run
        assert (run["dataset"], run["data_path"], run["split_seed"], run["epochs"]) == (name, data_path, 2020, 2)
    for split in ("best_valid", "test"):
        for metric, value in ours[split].items():
            assert value > 0 and abs(value - theirs[split][metric]) <= 1e-4, (split, metric)
    table = (out / "parity.md").read_text()
    assert "| LightGCN vs LightGCN | ndcg@20 |" in table and "+0.0000" in table
    again = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert again.returncode == 0 and "(%s s)" % ours["seconds"] in again.stdout  # read back, not trained again
    (out / "parity.md").unlink()
    report = subprocess.run(command[:command.index("--seeds") + 2] + ["2021"] + command[command.index("--epochs"):]
                            + ["--report-only"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    assert not (out / "runs" / "ours-LightGCN-2021.json").exists()  # nothing trained: seed 2021 has no runs
    assert "| LightGCN | ours | 2020 |" in (out / "parity.md").read_text()
