"""Versioned prompt templates (``recbole_hnlm/llm/prompts/<name>.v<N>.txt``) and chat formatting.

A template file has ``### <section>`` headers: ``system``, ``user`` (the user message, ``$name`` placeholders,
``string.Template`` syntax so JSON braces need no escaping), optional ``item_block`` (the per-pair part, inserted at
``$item_block``; everything before it is the shared per-user prefix whose KV cache can be reused) and optional
``answer_prefix`` (the start of the assistant turn, e.g. ``{"summarization": "``, which keeps small models on JSON)
and optional ``format`` (``chat`` default, or ``raw``: no chat wrapping, so nothing follows the item block; used by
the fine-tuned query, whose per-pair suffix is then only the item soft token(s), the item text and [EOS]) and
optional ``start`` (``tokenizer``: the prompt opens with the start-of-text tokens the tokenizer puts before any text
by default, e.g. Llama-3's ``<|begin_of_text|>``, which a raw prompt gets from no chat template;
:func:`recbole_hnlm.llm.models.sequence_start_ids`).

The version recorded in manifests is ``<name>.v<N>@<sha256[:8]>``, so an edited file never matches an old cache.
"""
import hashlib
import json
import os
import re
from dataclasses import dataclass
from string import Template
from typing import Dict, Optional, Tuple

__all__ = ["PromptTemplate", "ChatFormatter", "quote", "PROMPT_DIR"]

PROMPT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prompts")
_SECTION = re.compile(r"^### (\w+)\s*$", re.M)
_SENTINEL = "\u2063HNLM_ITEM_BLOCK\u2063"


def quote(value) -> str:
    """Escape a value for use inside a double-quoted JSON string of a prompt."""
    return json.dumps(str(value), ensure_ascii=False)[1:-1]


@dataclass
class PromptTemplate:
    name: str
    sections: Dict[str, str]
    sha256: str

    @classmethod
    def load(cls, name: str, prompt_dir: Optional[str] = None) -> "PromptTemplate":
        """Load ``<prompt_dir>/<name>.txt`` (``name`` like ``hard_negative.v1``) or a path to a ``.txt`` file."""
        path = name if name.endswith(".txt") else os.path.join(prompt_dir or PROMPT_DIR, f"{name}.txt")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: prompt template not found")
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        parts = _SECTION.split(text)
        sections = {parts[k]: parts[k + 1].strip("\n") for k in range(1, len(parts) - 1, 2)}
        for required in ("system", "user"):
            if required not in sections:
                raise ValueError(f"{path}: section '### {required}' missing")
        if "$item_block" in sections["user"] and "item_block" not in sections:
            raise ValueError(f"{path}: '$item_block' used but section '### item_block' missing")
        base = os.path.basename(path)[:-4]
        return cls(base, sections, hashlib.sha256(text.encode("utf-8")).hexdigest())

    @property
    def version(self) -> str:
        return f"{self.name}@{self.sha256[:8]}"

    @property
    def format(self) -> str:
        """``chat`` (tokenizer chat template, default) or ``raw`` (system + newline + user, nothing appended)."""
        return self.sections.get("format", "chat").strip()

    @property
    def opens_with_start_tokens(self) -> bool:
        """``### start`` is ``tokenizer``: the tokenizer's default start-of-text tokens come first."""
        start = self.sections.get("start", "").strip()
        if start not in ("", "tokenizer"):
            raise ValueError(f"template {self.name}: '### start' must be 'tokenizer' or absent, got {start!r}")
        return start == "tokenizer"

    @property
    def answer_prefix(self) -> str:
        return self.sections.get("answer_prefix", "")

    def user_message(self, values: Dict[str, str], item_values: Optional[Dict[str, str]] = None,
                     sentinel: str = _SENTINEL) -> str:
        """The user message; without ``item_values`` the item block is ``sentinel`` (:meth:`ChatFormatter.render_split`
        splits there)."""
        user = self.sections["user"]
        if "item_block" in self.sections:
            block = sentinel if item_values is None else Template(self.sections["item_block"]).substitute(item_values)
            user = user.replace("$item_block", block.replace("$", "$$"))
        return Template(user).substitute(values)

    def render_item_block(self, item_values: Dict[str, str]) -> str:
        return Template(self.sections["item_block"]).substitute(item_values)


class ChatFormatter:
    """Turns (system, user) messages into model text: the tokenizer's chat template when it has one, else plain."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.has_chat_template = bool(getattr(tokenizer, "chat_template", None))

    def render(self, system: str, user: str, answer_prefix: str = "", fmt: str = "chat") -> str:
        if fmt == "raw":
            return f"{system}\n{user}{answer_prefix}"
        if self.has_chat_template:
            messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = f"{system}\n\n{user}\n\nAnswer:\n"
        return text + answer_prefix

    def render_split(self, template: PromptTemplate, values: Dict[str, str]) -> Tuple[str, str]:
        """Render with the item block left open -> (shared prefix text, tail text after the item block). The split
        marker is one that no value holds (a title or profile holding the default one split the prompt inside it) and
        that the rendered text holds once (a value ending in the marker's start, right before ``$item_block``)."""
        if template.sections["user"].count("$item_block") > 1:  # the marker would be there twice, however long
            raise ValueError(f"template {template.name}: $item_block appears more than once in '### user'")
        sentinel = _SENTINEL
        # a marker longer than every value and the template's text together is held by none of them: a rendering
        # that still holds it twice repeats the user message (a chat template), which no marker can split
        longest = len(_SENTINEL) + sum(len(str(v)) for v in values.values()) + sum(map(len, template.sections.values()))
        while True:
            if len(sentinel) > longest:
                raise ValueError(f"template {template.name}: the rendered prompt holds $item_block more than once")
            if not any(sentinel in str(value) for value in values.values()):
                full = self.render(template.sections["system"], template.user_message(values, sentinel=sentinel),
                                   template.answer_prefix, template.format)
                if sentinel not in full:
                    raise ValueError(f"template {template.name}: no $item_block to split at")
                if full.find(sentinel) == full.rfind(sentinel):
                    break
            sentinel += "\u2063"
        prefix, tail = full.split(sentinel, 1)
        return prefix, tail
