"""Shared fixtures: a small real dataset cut from RecBole's bundled ml-100k, and fast run settings."""
import os

import pytest


def ml100k_dir():
    """RecBole's bundled ml-100k (imported here, not at module level: tests/ops runs on a GPU image without RecBole)."""
    import recbole

    return os.path.join(os.path.dirname(recbole.__file__), "dataset_example", "ml-100k")


def write_ml100k_slice(root, name="ml-slice", max_user=120):
    """Copy the interactions of users ``1..max_user`` (and every item line) of ml-100k into ``root/name``."""
    folder, source = os.path.join(root, name), ml100k_dir()
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(source, "ml-100k.inter")) as src, open(os.path.join(folder, f"{name}.inter"), "w") as dst:
        dst.write(src.readline())
        for line in src:
            if int(line.split("\t", 1)[0]) <= max_user:
                dst.write(line)
    with open(os.path.join(source, "ml-100k.item")) as src, open(os.path.join(folder, f"{name}.item"), "w") as dst:
        dst.write(src.read())
    return root


@pytest.fixture(autouse=True)
def _idle_machine_load(monkeypatch):
    """The LLM stage warns about a busy CPU from the load average (recbole_hnlm.llm.throughput): tests see an idle
    machine, whatever else runs beside them, unless a test sets another load."""
    if hasattr(os, "getloadavg"):
        monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))


@pytest.fixture(scope="session")
def ml_slice(tmp_path_factory):
    """``(data_path, dataset_name)`` of a ~12k-interaction slice of ml-100k (120 users)."""
    root = tmp_path_factory.mktemp("data")
    return str(write_ml100k_slice(str(root))), "ml-slice"


@pytest.fixture
def fast_config(ml_slice, tmp_path):
    """Config dict for quick end-to-end runs on the slice (few epochs, outputs in a temp dir)."""
    data_path, name = ml_slice
    return {
        "dataset": name,
        "data_path": data_path,
        "epochs": 2,
        "train_batch_size": 1024,
        "eval_step": 1,
        "stopping_step": 10,
        "show_progress": False,
        "checkpoint_dir": str(tmp_path / "saved"),
        "log_wandb": False,
        "state": "WARNING",
        "gpu_id": "",
        "use_gpu": False,
        "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
    }


def pytest_make_parametrize_id(config, val, argname):
    """Readable ids for torch dtypes (``float32``, not ``dtype1``), so ``-k "hub5000 and float32"`` selects cases."""
    import torch

    if isinstance(val, torch.dtype):
        return str(val).removeprefix("torch.")
    return None
