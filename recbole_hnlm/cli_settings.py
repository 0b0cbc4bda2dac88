"""``--key=value`` settings of the plugin's command lines (``python -m recbole_hnlm.llm``, ``... .benchmark``).

Values are Python literals when they parse as one (``10``, ``1e-3``, ``[64, 32]``, ``None``, ``True``), the
lower-case words ``true``/``false``/``none`` and YAML's ``~`` (``None``), and plain strings otherwise.
"""
import ast
import difflib
from typing import Callable, Dict, Iterable, List

__all__ = ["parse_value", "parse_settings", "parser_flags"]


def parse_value(text: str):
    """One ``--key=value`` value (see the module docstring)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):  # "{[1]: 2}": unhashable, "[[[..."
        return {"true": True, "false": False, "none": None, "~": None}.get(text.lower(), text)


def parser_flags(parser) -> List[str]:
    """The ``--long`` option strings of an ``argparse`` parser (for :func:`parse_settings`' suggestions)."""
    return [flag for action in parser._actions for flag in action.option_strings if flag.startswith("--")]


def parse_settings(items: Iterable[str], error: Callable[[str], None], hint: str = "",
                   flags: Iterable[str] = ()) -> Dict[str, object]:
    """``{key: value}`` of ``--key=value`` arguments; anything else is reported through ``error`` (argparse's),
    with the closest of the command's own ``flags`` when one is close (``--keep-seen``: ``--keep_seen``). A key
    with a dash is refused too (``--max-evals=3`` is no RecBole option, and was taken for one)."""
    settings = {}
    flags = list(flags)
    for item in items:
        if not item.startswith("--") or "=" not in item:
            name = item.split("=", 1)[0]
            if name.startswith("--"):
                name = "--" + name[2:].replace("-", "_")
            close = difflib.get_close_matches(name, flags, n=1, cutoff=0.75)
            if close:
                error(f"unrecognised argument {item!r}: did you mean {close[0]}?")
            error(f"unrecognised argument {item!r}: settings are written --key=value{hint}")
        key, value = item[2:].split("=", 1)
        if not key:  # "--=5" names no option
            error(f"unrecognised argument {item!r}: settings are written --key=value{hint}")
        if "-" in key:
            underscored = "--" + key.replace("-", "_")
            error(f"unrecognised argument {item!r}: " + (f"did you mean {underscored}={value}?" if underscored in flags
                                                          else f"option names have underscores: {underscored}"))
        settings[key] = parse_value(value)
    return settings
