"""Batched text generation with JSON answers, retries and recorded failures (paper eq. 2-4).

Two paths give the same kind of output:

* :meth:`Generator.generate`: independent prompts, left padding, one ``model.generate`` per batch;
* :meth:`Generator.generate_with_prefix`: prompts sharing a prefix (instruction + user profile); the prefix is run
  once, its KV cache is repeated over the batch, and only the per-pair suffixes are prefilled (suffixes are
  left-padded *between* prefix and suffix; positions come from the attention mask, so they are identical to an
  unpadded prompt).

Greedy decoding by default. A malformed answer, or one the caller's ``check`` refuses (e.g. a hard negative that
names the interacted item), is retried with sampling; after ``retries`` attempts it becomes a failure record, never a
made-up value. Sampling draws from one generator per prompt, seeded by the prompt and the
attempt (:class:`RowSampler`), so a sampled answer does not depend on which prompts share its batch or chunk, on
``gen_batch_size`` or on a resume (tested).
"""
import hashlib
import logging
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from .json_answer import MalformedAnswer, parse_json_answer
from .models import stop_token_ids

__all__ = ["Generator", "GenerationResult", "RowSampler"]

logger = logging.getLogger(__name__)


class GenerationResult(dict):
    """``{"ok": bool, "answer": dict|None, "raw": str, "attempts": int, "error": str|None, "errors": [str]}``:
    ``error`` is the last attempt's (None when it succeeded), ``errors`` every failed attempt's, in order."""


def _seed_for(text: str, attempt: int, seed: int) -> int:
    digest = hashlib.sha256(f"{seed}:{attempt}:{text}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFFFFFFFFFFFFFF


class RowSampler:
    """Temperature + nucleus (top-p) sampling with one ``torch.Generator`` per batch row, as a logits processor for
    greedy ``generate``: it keeps only the drawn token of each row, so greedy search emits it. (``generate``'s own
    sampling draws every row from the global generator, so a row's tokens would depend on its neighbours.)"""

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float, device):
        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]
        self.temperature, self.top_p = temperature, top_p

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # the nucleus: the most likely tokens until their mass reaches top_p (the first one always)
        sorted_probs = sorted_probs * ((sorted_probs.cumsum(-1) - sorted_probs) < self.top_p)
        drawn = torch.stack([torch.multinomial(row, 1, generator=gen)
                             for row, gen in zip(sorted_probs, self.generators)])
        tokens = order.gather(1, drawn)
        return torch.full_like(scores, float("-inf")).scatter_(1, tokens, 0.0)


class Generator:
    """Wraps a causal LM + tokenizer for batched JSON generation.

    Args:
        model, tokenizer: from :func:`recbole_hnlm.llm.models.load_causal_lm` (left padding).
        max_new_tokens: answer budget.  batch_size: prompts per ``generate`` call.
        retries: extra sampled attempts for malformed answers.  temperature/top_p: for the retries only
        (and for every attempt when ``do_sample``).  max_prompt_tokens: prompts are cut from the left beyond this
        (their instructions are lost: warned, counted in ``prompts_cut``); ``None`` (default): what the model's
        context (``max_position_embeddings``, 2048 when unknown) leaves after the answer budget.
        load_model: with ``model=None``, called once to load the model when it is first needed, so a stage whose
        answers are all cached never loads it (minutes for a 7B model).
    """

    def __init__(self, model, tokenizer, max_new_tokens: int = 64, batch_size: int = 8, retries: int = 2,
                 do_sample: bool = False, temperature: float = 0.7, top_p: float = 0.9,
                 max_prompt_tokens: Optional[int] = None, seed: int = 2020,
                 load_model: Optional[Callable[[], torch.nn.Module]] = None):
        if model is None and load_model is None:
            raise ValueError("Generator: give a model, or load_model to load it when first needed")
        self._model, self._load_model, self.tokenizer = model, load_model, tokenizer
        self.max_new_tokens, self.batch_size, self.retries = max_new_tokens, batch_size, retries
        self.do_sample, self.temperature, self.top_p = do_sample, temperature, top_p
        self.max_prompt_tokens, self.seed = max_prompt_tokens, seed
        self.stop_ids = stop_token_ids(tokenizer)
        self.tokens_generated = 0
        self.prompts_cut = 0  # prompts longer than max_prompt_tokens (cut from the left; the first one is logged)

    @property
    def model(self):
        """The causal LM (loaded now when it was deferred to its first use)."""
        if self._model is None:
            self._model = self._load_model()
        return self._model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def prompt_limit(self) -> int:
        """Prompt tokens kept: ``max_prompt_tokens``, or the model's context minus the answer budget."""
        if self.max_prompt_tokens is not None:
            return int(self.max_prompt_tokens)
        context = int(getattr(getattr(self.model, "config", None), "max_position_embeddings", 0) or 2048)
        return max(1, context - self.max_new_tokens)

    def _encode(self, text: str, reserve: int = 0) -> List[int]:
        """Token ids of ``text``, cut from the left to the prompt limit less ``reserve`` (a suffix that follows)."""
        return self._cut(self.tokenizer(text, add_special_tokens=False)["input_ids"], reserve)

    def _cut(self, ids: List[int], reserve: int = 0, reserved_for: str = "the text that follows it") -> List[int]:
        """``ids`` cut from the left to the prompt limit less ``reserve`` tokens (``reserved_for``; warned once,
        counted in ``prompts_cut``)."""
        limit = max(1, self.prompt_limit() - reserve)
        if len(ids) > limit:
            if not self.prompts_cut:
                why = ("max_prompt_tokens" if self.max_prompt_tokens is not None else
                       "the model's context less the answer budget")
                why += f", less the {reserve} token{'s' if reserve != 1 else ''} of {reserved_for}" if reserve else ""
                logger.warning("a prompt of %d tokens is cut to its last %d (%s): the instructions at its start are "
                               "lost; shorten the histories (hnlm_max_history, hnlm_max_reviews, hnlm_profile_words). "
                               "Counted in Generator.prompts_cut and reported when the stage ends.",
                               len(ids), limit, why)
            self.prompts_cut += 1
        return ids[-limit:]

    def _decode(self, rows: torch.Tensor) -> List[Tuple[str, bool]]:
        """-> (text up to the first stop token, True when no stop token came: cut by the token budget)."""
        texts = []
        for row in rows.tolist():
            cut, stopped = len(row), False
            for pos, tok in enumerate(row):
                if tok in self.stop_ids:
                    cut, stopped = pos, True
                    break
            self.tokens_generated += cut
            texts.append((self.tokenizer.decode(row[:cut], skip_special_tokens=True), not stopped))
        return texts

    def _gen_kwargs(self, seeds: Optional[Sequence[int]]) -> Dict:
        """``generate`` arguments: greedy, or (``seeds``: one per row) sampling by :class:`RowSampler`."""
        from transformers import LogitsProcessorList

        kwargs = dict(max_new_tokens=self.max_new_tokens, eos_token_id=self.stop_ids,
                      pad_token_id=self.tokenizer.pad_token_id, do_sample=False, temperature=None, top_p=None,
                      top_k=None)
        if seeds:
            kwargs["logits_processor"] = LogitsProcessorList([RowSampler(seeds, self.temperature, self.top_p,
                                                                         self.device)])
        return kwargs

    @torch.inference_mode()
    def _generate_ids(self, id_lists: Sequence[List[int]], seeds: Optional[Sequence[int]]) -> List[Tuple[str, bool]]:
        width = max(len(ids) for ids in id_lists)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in id_lists], device=self.device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in id_lists], device=self.device)
        out = self.model.generate(input_ids=input_ids, attention_mask=mask, **self._gen_kwargs(seeds))
        return self._decode(out[:, width:])

    @torch.inference_mode()
    def _generate_prefixed(self, prefix_cache, prefix_len: int, suffixes: Sequence[List[int]],
                           seeds: Optional[Sequence[int]]) -> List[Tuple[str, bool]]:
        from transformers import DynamicCache

        batch = len(suffixes)
        width = max(len(s) for s in suffixes)
        pad = self.tokenizer.pad_token_id
        prefix_ids = prefix_cache["ids"]
        rows = [prefix_ids + [pad] * (width - len(s)) + s for s in suffixes]
        mask = [[1] * prefix_len + [0] * (width - len(s)) + [1] * len(s) for s in suffixes]
        legacy = tuple((k.expand(batch, -1, -1, -1).contiguous(), v.expand(batch, -1, -1, -1).contiguous())
                       for k, v in prefix_cache["kv"])
        cache = DynamicCache.from_legacy_cache(legacy)
        input_ids = torch.tensor(rows, device=self.device)
        out = self.model.generate(input_ids=input_ids, attention_mask=torch.tensor(mask, device=self.device),
                                  past_key_values=cache, **self._gen_kwargs(seeds))
        return self._decode(out[:, prefix_len + width:])

    @torch.inference_mode()
    def prefix_cache(self, prefix: str, reserve: int = 0) -> Dict:
        """Run the shared prefix once (cut to leave ``reserve`` tokens for a suffix); returns ``{"ids": [...], "kv":
        legacy cache of batch 1}``."""
        ids = self._encode(prefix, reserve)
        out = self.model(input_ids=torch.tensor([ids], device=self.device), use_cache=True)
        past = out.past_key_values
        legacy = past.to_legacy_cache() if hasattr(past, "to_legacy_cache") else past
        return {"ids": ids, "kv": legacy}

    def _run(self, keys: Sequence[str], call, required: Sequence[str], answer_prefix: str,
             check: Optional[Callable[[int, Dict], Optional[str]]] = None) -> List[GenerationResult]:
        """Generate for all ``keys`` (prompt identities), parse, retry the malformed ones and those ``check`` (prompt
        index, parsed answer -> an error message or None) refuses."""
        results: List[Optional[GenerationResult]] = [None] * len(keys)
        failed: List[List[str]] = [[] for _ in keys]
        todo = list(range(len(keys)))
        for attempt in range(self.retries + 1):
            if not todo:
                break
            sample = self.do_sample or attempt > 0
            for start in range(0, len(todo), self.batch_size):
                batch = todo[start:start + self.batch_size]
                seeds = [_seed_for(keys[k], attempt, self.seed) for k in batch] if sample else None
                texts = call(batch, seeds)
                for index, text in zip(batch, texts):
                    text, truncated = text if isinstance(text, tuple) else (text, False)
                    raw = answer_prefix + text
                    try:
                        answer = parse_json_answer(raw, required, allow_truncated=truncated)
                        problem = check(index, answer) if check else None
                        if problem:
                            raise MalformedAnswer(problem)
                        results[index] = GenerationResult(ok=True, answer=answer, raw=raw, attempts=attempt + 1,
                                                          error=None, errors=list(failed[index]))
                    except MalformedAnswer as err:
                        failed[index].append(str(err))
                        results[index] = GenerationResult(ok=False, answer=None, raw=raw, attempts=attempt + 1,
                                                          error=str(err), errors=list(failed[index]))
            todo = [k for k in todo if not results[k]["ok"]]
        return results

    def generate(self, prompts: Sequence[str], required: Sequence[str] = (),
                 answer_prefix: str = "") -> List[GenerationResult]:
        """Independent prompts (already chat-formatted, ending with ``answer_prefix``)."""
        ids = [self._encode(p) for p in prompts]
        return self._run(prompts, lambda batch, seeds: self._generate_ids([ids[k] for k in batch], seeds),
                         required, answer_prefix)

    def generate_with_prefix(self, prefix: str, suffixes: Sequence[str], required: Sequence[str] = (),
                             answer_prefix: str = "", use_cache: bool = True,
                             check: Optional[Callable[[int, Dict], Optional[str]]] = None) -> List[GenerationResult]:
        """Prompts ``prefix + suffix`` (tokenised separately, then joined).

        With ``use_cache`` the prefix KV cache is computed once and shared by every suffix; without it each prompt
        is prefilled in full (same tokens, used to measure what the cache saves). ``check(k, answer)`` returns an
        error message for a parsed answer to ``suffixes[k]`` that must be retried like a malformed one, else None.
        """
        # a suffix keeps one token of the limit for the prefix (an item block of a 40,000-character title was
        # passed whole, past the model's context)
        counted = self.prompts_cut
        suffix_ids = [self._cut(self.tokenizer(s, add_special_tokens=False)["input_ids"], 1, "the prefix before it")
                      for s in suffixes]
        suffixes_cut = self.prompts_cut - counted
        keys = [prefix + s for s in suffixes]
        reserve = max(map(len, suffix_ids), default=0)  # prefix and longest suffix within the model's context
        prefix_ids = self._encode(prefix, reserve) if not use_cache else None
        cache = self.prefix_cache(prefix, reserve) if use_cache else None
        # a cut prefix cuts every prompt it starts (it counted once): the prompts cut, each once
        self.prompts_cut = counted + (len(suffixes) if self.prompts_cut > counted + suffixes_cut else suffixes_cut)
        if not use_cache:
            return self._run(keys, lambda batch, seeds: self._generate_ids(
                [prefix_ids + suffix_ids[k] for k in batch], seeds), required, answer_prefix, check)
        return self._run(keys, lambda batch, seeds: self._generate_prefixed(
            cache, len(cache["ids"]), [suffix_ids[k] for k in batch], seeds), required, answer_prefix, check)
