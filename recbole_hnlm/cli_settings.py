"""``--key=value`` settings of the plugin's command lines (``python -m recbole_hnlm.llm``, ``... .benchmark``).

Values are Python literals when they parse as one (``10``, ``1e-3``, ``[64, 32]``, ``None``, ``True``), the
lower-case words ``true``/``false``/``none`` as in RecBole's yaml, and plain strings otherwise.
"""
import ast
from typing import Callable, Dict, Iterable

__all__ = ["parse_value", "parse_settings"]


def parse_value(text: str):
    """One ``--key=value`` value (see the module docstring)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def parse_settings(items: Iterable[str], error: Callable[[str], None], hint: str = "") -> Dict[str, object]:
    """``{key: value}`` of ``--key=value`` arguments; anything else is reported through ``error`` (argparse's)."""
    settings = {}
    for item in items:
        if not item.startswith("--") or "=" not in item:
            error(f"unrecognised argument {item!r}: settings are written --key=value{hint}")
        key, value = item[2:].split("=", 1)
        settings[key] = parse_value(value)
    return settings
