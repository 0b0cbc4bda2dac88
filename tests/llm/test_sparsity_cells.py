"""HNLMRec cells of the sparsity analysis: each training subsample gets its own teacher, adapter and store."""
import os

import pytest

from llm_helpers import write_slice
from recbole_hnlm.benchmark.runner import Cell, check_cell, run_cell
from recbole_hnlm.errors import ConfigError
from recbole_hnlm.llm.store import PairEmbeddingStore
from recbole_hnlm.llm.teacher import Teacher


def _settings(root, tiny_llama_dir, **extra):
    return dict({"data_path": root, "epochs": 1, "train_batch_size": 64, "eval_step": 1, "gpu_id": "",
                 "use_gpu": False, "hnlm_variant": "finetuned", "hnlm_ft_user_text": "history",
                 "hnlm_teacher_model": "MF", "hnlm_teacher_epochs": 1, "hnlm_ft_max_train_pairs": 16,
                 "hnlm_ft_batch_size": 8, "hnlm_ft_epochs": 1, "hnlm_chunk_size": 16,
                 "hnlm_generator": tiny_llama_dir, "hnlm_missing": "random"}, **extra)


def test_a_sparsity_cell_trains_its_llm_artifacts_on_its_own_subsample(tmp_path, tiny_llama_dir):
    """The dataset's teacher serves the full split, so every HNLMRec sparsity cell failed (a teacher of another
    split). Each cell now builds its own files, named by ratio and seed, from the pairs it trains on."""
    root = write_slice(str(tmp_path / "data"), users=12, per_user=10)
    folder = os.path.join(root, "mini")
    settings = _settings(root, tiny_llama_dir)
    full = run_cell(Cell("MF", "HNLMRec", 1), "mini", str(tmp_path / "out"), settings)
    half = run_cell(Cell("MF", "HNLMRec", 1, 0.5), "mini", str(tmp_path / "out"), settings)
    assert full["test_result"] and half["test_result"]
    own = {name for name in os.listdir(folder) if name.startswith("mini.train50-seed1.hnlm-")}
    assert {"mini.train50-seed1.hnlm-teacher.safetensors", "mini.train50-seed1.hnlm-adapter",
            "mini.train50-seed1.hnlm-finetuned.safetensors"} <= own
    teacher = Teacher.load(os.path.join(folder, "mini.hnlm-teacher.safetensors"))
    subsample = Teacher.load(os.path.join(folder, "mini.train50-seed1.hnlm-teacher.safetensors"))
    n_full, n_half = teacher.pair_user.numel(), subsample.pair_user.numel()
    assert n_half < n_full and not subsample.pairs_outside(teacher.token_pairs())  # a subset of the full split
    store = PairEmbeddingStore.open(os.path.join(folder, "mini.train50-seed1.hnlm-finetuned.safetensors"))
    assert 0 < store.num_pairs and not set(zip(store.user_tokens, store.item_tokens)) - set(subsample.token_pairs())


def test_a_sparsity_cell_refuses_one_splits_llm_artifacts(tmp_path, tiny_llama_dir):
    root = write_slice(str(tmp_path / "data"))
    settings = _settings(root, tiny_llama_dir, hnlm_teacher_path=str(tmp_path / "t.safetensors"))
    check_cell(Cell("MF", "HNLMRec", 1), "mini", str(tmp_path / "out"), settings)  # the main cell may name it
    with pytest.raises(ConfigError, match="hnlm_teacher_path names the LLM artifacts of one training split"):
        check_cell(Cell("MF", "HNLMRec", 1, 0.4), "mini", str(tmp_path / "out"), settings)


def test_the_grid_refuses_them_before_any_cell_runs(tmp_path, tiny_llama_dir):
    """The grid checked the first cell of each model and sampler only, the main one, which may name them: the main
    cells (an HNLMRec one's LLM stage: hours) ran before the sparsity cell failed."""
    from recbole_hnlm.benchmark.grid import run_grid

    ran = []
    root = write_slice(str(tmp_path / "data"))
    for option in ("hnlm_store_path", "hnlm_file"):
        settings = _settings(root, tiny_llama_dir, **{option: str(tmp_path / "s.safetensors")})
        with pytest.raises(ConfigError, match=f"{option} names the LLM artifacts of one training split"):
            run_grid("mini", ["MF"], ["RNS", "HNLMRec"], [1], str(tmp_path / option), config_dict=settings,
                     analyses=("sparsity",), ratios=(0.5,), progress=False, cell_runner=lambda *a, **k: ran.append(a),
                     cell_checker=check_cell)
        assert ran == [] and not os.path.exists(tmp_path / option / "runs")
