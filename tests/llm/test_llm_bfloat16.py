"""The bfloat16 compute path of the fine-tuned variant (`hnlm_dtype: bfloat16`, used by the documented GPU commands),
run on the CPU with the tiny model: the LM in bf16, the soft-token MLPs and LoRA trained through it."""
import torch

from recbole_hnlm.llm.hybrid_encoder import HybridPromptEncoder, PromptGroup, info_nce
from recbole_hnlm.llm.models import load_causal_lm


def _groups(seed):
    g = torch.Generator().manual_seed(seed)
    users = ["liked: Fargo; Heat", "liked: Toy Story (1995); Babe; Casino; Clerks; Seven"]
    return [PromptGroup(u, torch.randn(8, generator=g), [""] * k, torch.randn(k, 8, generator=g))
            for u, k in zip(users, (4, 2))]


def test_bfloat16_forward_matches_float32_and_trains(tiny_llama_dir):
    """bf16 [EOS] states agree with the fp32 model's (same weights) to bf16 precision on both attention paths, and an
    InfoNCE step gives finite gradients to LoRA and the soft-token MLP."""
    lm32, tok, _ = load_causal_lm(tiny_llama_dir, device="cpu")
    lm16, tok16, _ = load_causal_lm(tiny_llama_dir, dtype="bfloat16", device="cpu")
    assert lm16.get_input_embeddings().weight.dtype == torch.bfloat16
    torch.manual_seed(3)
    enc32 = HybridPromptEncoder(lm32, tok, cf_dim=8, soft_tokens=1, lora=dict(r=4, alpha=8, dropout=0.0)).eval()
    torch.manual_seed(3)
    enc16 = HybridPromptEncoder(lm16, tok16, cf_dim=8, soft_tokens=1, lora=dict(r=4, alpha=8, dropout=0.0)).eval()
    groups = _groups(0)
    with torch.no_grad():
        ref = enc32.encode_groups(groups)
        rows = enc16._rows(groups)
        for got in (enc16.encode_groups(groups), enc16._forward_segments(rows, 2), enc16._forward_masked(rows)):
            assert got.dtype == torch.float32 and got.shape == ref.shape
            cos = torch.nn.functional.cosine_similarity(got, ref, dim=-1)
            assert cos.min() > 0.99, cos  # bf16 keeps 8 mantissa bits: ~0.4 % per element
    enc16.train()
    q = enc16.encode_groups(groups)
    loss = info_nce(q, enc16.targets(torch.randn(q.shape[0], 8)), None, 0.05)
    loss.backward()
    trained = {n: p.grad for n, p in enc16.named_parameters() if p.requires_grad}
    assert any("lora_B" in n for n in trained) and all(g is not None and torch.isfinite(g).all()
                                                        for g in trained.values())
    assert any(g.abs().sum() > 0 for n, g in trained.items() if "lora" not in n)  # the soft-token MLP learns
