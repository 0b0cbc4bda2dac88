"""Fixtures of the LLM tests (helpers live in llm_helpers.py)."""
from llm_helpers import data_root, tiny_encoder_dir, tiny_llama_dir, tiny_tokenizer  # noqa: F401
