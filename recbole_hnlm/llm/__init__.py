"""LLM stage of HNLMRec: profiles (eq. 2-3), semantic negatives (eq. 4-5), hybrid-prompt fine-tuning (§4.2-4.3)
and the side-car store the sampler reads. See docs/llm.md.

Importing this package is cheap: transformers/peft load only when a stage runs.
"""
import importlib

__all__ = ["PairEmbeddingStore", "AlignedPairEmbeddings", "StoreError", "ensure_negatives", "export_teacher",
           "LLMConfig", "train_pairs_from_dataset"]

_LAZY = {
    "PairEmbeddingStore": ".store", "AlignedPairEmbeddings": ".store", "StoreError": ".store",
    "ensure_negatives": ".pipeline", "export_teacher": ".teacher", "LLMConfig": ".config",
    "train_pairs_from_dataset": ".recbole_pairs",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
