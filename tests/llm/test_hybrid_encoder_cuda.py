"""The fine-tuned variant's hybrid prompt encoder on a GPU (skipped without one).

Kept apart from test_llm_finetune.py, whose fixtures build RecBole datasets: this file needs only torch,
transformers, peft and RecBole's bundled ml-100k titles (the tiny tokenizer's corpus), so it runs on the GPU image
through ``scripts/gpu_check.sh`` with RecBole's wheel installed ``--no-deps``.
"""
import pytest
import torch

from recbole_hnlm.llm.hybrid_encoder import HybridPromptEncoder, PromptGroup
from recbole_hnlm.llm.models import load_causal_lm

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="needs a GPU: the encoder's own parts follow the LLM there")]


def test_encoder_parts_live_on_the_llms_device_and_agree_with_the_cpu(tiny_llama_dir):
    """The soft-token and target MLPs follow the LLM onto CUDA (every forward crashed before 3d85a38); the grouped
    prefix forward there gives the CPU's [EOS] states and targets (float32; atol/rtol 1e-4: attention and matmul
    kernels differ, TF32 is off by default for float32 matmuls)."""
    model, tokenizer, _ = load_causal_lm(tiny_llama_dir, device="cuda")
    torch.manual_seed(0)
    encoder = HybridPromptEncoder(model, tokenizer, 8, 2, lora=dict(r=4, alpha=8, dropout=0.0)).eval()
    assert {p.device.type for p in encoder.parameters()} == {"cuda"}
    cf = torch.randn(5, 8)
    groups = [PromptGroup("likes Heat", cf[0], ["Fargo", "Casino Nixon Balto"], cf[1:3]),
              PromptGroup("likes Clueless and Sabrina", cf[3], ["Heat"], cf[4:])]
    with torch.no_grad():
        out, targets = encoder.encode_groups(groups), encoder.targets(cf)
        assert out.shape == (3, encoder.hidden) and out.device.type == "cuda" and torch.isfinite(out).all()
        assert targets.device.type == "cuda"
        encoder.cpu()
        assert encoder.device.type == "cpu"
        torch.testing.assert_close(out.cpu(), encoder.encode_groups(groups), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(targets.cpu(), encoder.targets(cf), atol=1e-4, rtol=1e-4)
