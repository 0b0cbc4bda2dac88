"""Tolerant parsing of the JSON object an LLM was asked to answer with.

Accepted deviations, in this order: code fences (```json ... ```), text before/after the object (the first balanced
``{...}`` block is used), trailing commas, single-quoted strings, Python literals (True/False/None), unquoted keys;
the repairs touch the text between string literals only. A ``\\u`` escape of half a character (a lone surrogate,
which no UTF-8 file can hold) is malformed. An object cut off by the token budget is closed
(:func:`close_truncated`; the text is the model's own, only the closing quote/brace is added) and must still hold
every required key. Anything else raises :class:`MalformedAnswer`; callers retry and then record a failure, they
never invent a value.
"""
import json
import re
from typing import Dict, List, Optional, Sequence

__all__ = ["MalformedAnswer", "parse_json_answer", "first_json_block"]

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_UNQUOTED_KEY = re.compile(r'([{,]\s*)([A-Za-z_][A-Za-z0-9_]*)\s*:')
_PY_LITERALS = re.compile(r"\b(True|False|None)\b")
_OPENS_NESTED = re.compile(r"\{\s*[{\[]")


#: Bounds of the repair of an answer the token budget cut: the first openings ``{`` it is closed from, and the
#: top-level commas it is also closed at. Answers are a few hundred tokens with a few fields; a long text given to the
#: API (5,000 fields, or ``{`` repeated) took minutes, every opening and comma tried in full.
MAX_OPENINGS, MAX_COMMAS = 8, 16


class MalformedAnswer(ValueError):
    """The model's answer holds no usable JSON object with the required keys."""


def _scan(text: str, start: int):
    """Yield ``(pos, char, quote)`` for ``text[start:]``, where ``quote`` is the delimiter of the string still open
    after ``char`` (``None`` outside strings); backslash escapes inside strings are honoured."""
    quote, escaped = None, False
    for pos in range(start, len(text)):
        char = text[pos]
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        yield pos, char, quote


def first_json_block(text: str) -> Optional[str]:
    """Return the first balanced ``{...}`` block, honouring quoted strings; None when there is none."""
    # a "{" that one scan saw outside strings is balanced from there exactly when that scan matched it (the scan from
    # it would read the same text the same way), so it needs no scan of its own: linear for "{{{{..." answers
    known: Dict[int, Optional[int]] = {}  # "{" position -> position of its "}" (None: never closed)
    start = text.find("{")
    while start != -1:
        if start not in known:
            opened = []
            for pos, char, quote in _scan(text, start):
                if quote is None and char == "{":
                    opened.append(pos)
                    known.setdefault(pos, None)
                elif quote is None and char == "}" and opened:
                    known[opened.pop()] = pos
                    if not opened:
                        break
        end = known[start]
        if end is not None:
            return text[start:end + 1]
        start = text.find("{", start + 1)
    return None


def close_truncated(text: str) -> List[str]:
    """Candidates that close an object cut off by the token budget: the open string, lists and objects are closed
    (each by its own bracket), at the end and at each earlier top-level comma, latest first (dropping a dangling
    partial key; past :data:`MAX_COMMAS` commas, at the first and the last half of them). Empty when there is no
    ``{``."""
    start = text.find("{")
    if start == -1:
        return []
    closers, quote, commas = [], None, []
    for pos, char, quote in _scan(text, start):
        if quote is not None:
            continue
        if char in "{[":
            closers.append("}" if char == "{" else "]")
        elif char in "}]" and closers:
            closers.pop()
        elif char == "," and len(closers) == 1:
            commas.append(pos)
    if not closers:
        return []
    body = text[start:].rstrip()
    if quote is not None and (len(body) - len(body.rstrip("\\"))) % 2:
        body = body[:-1]  # cut inside an escape: the closing quote must not be escaped by it
    candidates = [body + (quote or "") + "".join(reversed(closers))]
    if len(commas) > MAX_COMMAS:  # the object's first fields (a required one first) and its last
        commas = commas[:MAX_COMMAS // 2] + commas[-(MAX_COMMAS // 2):]
    candidates += [text[start:pos] + "}" for pos in reversed(commas)]
    return candidates


def _outside_strings(block: str, repair) -> str:
    """``repair`` applied to the text between string literals only: a title such as ``"Star Wars, Episode: IV"`` or
    ``"True Lies"`` is the model's text, not JSON syntax to mend."""
    parts, start, inside = [], 0, False
    for pos, _, quote in _scan(block, 0):
        if not inside and quote is not None:  # a string opens at pos
            parts.append(repair(block[start:pos]))
            start, inside = pos, True
        elif inside and quote is None:  # and closes at pos
            parts.append(block[start:pos + 1])
            start, inside = pos + 1, False
    parts.append(block[start:] if inside else repair(block[start:]))
    return "".join(parts)


def _single_to_double_quotes(block: str) -> str:
    """Rewrite 'single-quoted' strings as JSON strings; apostrophes inside double-quoted strings are kept."""
    out, pos = [], 0
    while pos < len(block):
        char = block[pos]
        if char == '"':
            end = pos + 1
            while end < len(block) and block[end] != '"':
                end += 2 if block[end] == "\\" else 1
            out.append(block[pos:end + 1])
            pos = end + 1
        elif char == "'":
            end = pos + 1
            buf = []
            while end < len(block) and block[end] != "'":
                if block[end] == "\\" and end + 1 < len(block):
                    buf.append(block[end + 1])
                    end += 2
                    continue
                buf.append(block[end])
                end += 1
            out.append(json.dumps("".join(buf)))
            pos = end + 1
        else:
            out.append(char)
            pos += 1
    return "".join(out)


def _loads_lenient(block: str):
    attempts = [block]
    fixed = _outside_strings(block, lambda text: _TRAILING_COMMA.sub(r"\1", text))
    attempts.append(fixed)
    fixed = _single_to_double_quotes(fixed)
    attempts.append(fixed)
    fixed = _outside_strings(fixed, lambda text: _PY_LITERALS.sub(
        lambda m: {"True": "true", "False": "false", "None": "null"}[m.group(1)], text))
    attempts.append(fixed)
    attempts.append(_outside_strings(fixed, lambda text: _UNQUOTED_KEY.sub(r'\1"\2":', text)))
    for attempt in attempts:
        try:
            return json.loads(attempt, strict=False)
        except (ValueError, RecursionError):  # JSONDecodeError; a number past int's digit limit; nesting too deep
            continue
    raise MalformedAnswer(f"not JSON after repairs: {block[:200]!r}")


def _is_text(obj) -> bool:
    """Whether every string of ``obj`` is Unicode text: a ``\\ud83c`` escape without its pair (an emoji's escape cut
    by the token budget) parses to a lone surrogate, which no UTF-8 file (profiles, texts) can hold."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_json_answer(text: str, required: Sequence[str] = (), allow_truncated: bool = False) -> Dict:
    """Parse an LLM answer into a dict holding every key in ``required`` (non-empty string values).

    ``allow_truncated``: the answer was cut by the token budget (no stop token), so an unclosed object may be
    closed. An answer that *ended* without closing its object stays malformed.

    Raises:
        MalformedAnswer: no object, unparsable object, or a required key missing/empty.
    """
    fence = _FENCE.search(text)
    candidates = [fence.group(1)] if fence else []
    candidates.append(text)
    last_error = None
    for candidate in candidates:
        block = first_json_block(candidate)
        if block is None:
            last_error = MalformedAnswer(f"no JSON object in answer: {text[:200]!r}")
            continue
        try:
            obj = _loads_lenient(block)
        except MalformedAnswer as err:
            last_error = err
            continue
        if not isinstance(obj, dict):
            last_error = MalformedAnswer(f"answer is not a JSON object: {block[:200]!r}")
            continue
        missing = [k for k in required if not isinstance(obj.get(k), str) or not obj.get(k).strip()]
        if missing:
            last_error = MalformedAnswer(f"answer lacks non-empty string field(s) {missing}: {block[:200]!r}")
            continue
        if not _is_text(obj):
            last_error = MalformedAnswer(f"answer holds a \\u escape of half a character (a lone surrogate): "
                                         f"{block[:200]!r}")
            continue
        return obj
    # an object the budget left open, closed from its first "{", then from each later one (MAX_OPENINGS), as
    # first_json_block does (a model that repeats the answer prefix opens an object it never closes before the real one)
    whole = candidates[-1]
    start = whole.find("{") if allow_truncated else -1
    for _ in range(MAX_OPENINGS):
        while start != -1 and _OPENS_NESTED.match(whole, start):  # "{{", "{[": no repair makes it an object
            start = whole.find("{", start + 1)
        if start == -1:
            break
        for candidate in close_truncated(whole[start:]):
            try:
                obj = _loads_lenient(candidate)
            except MalformedAnswer:
                continue
            if isinstance(obj, dict) and all(isinstance(obj.get(k), str) and obj.get(k).strip() for k in required) \
                    and _is_text(obj):
                return obj
        start = whole.find("{", start + 1)
    raise last_error
