"""Hyper-parameter search spaces in the params-file format of RecBole's ``run_hyper.py``, and the trials drawn from
them.

One parameter per line, ``<name> <type> <values>``; blank lines and lines starting with ``#`` are skipped::

    learning_rate choice [0.01, 0.005, 0.001]
    mixgcf_candidates quniform 16,64,16
    reg_weight loguniform -11.5,-4.6
    ahns_beta uniform 0.05,0.5

As in hyperopt (which RecBole's ``run_hyper.py`` uses): ``uniform`` draws from U(low, high), ``quniform``
round(U(low, high) / q) * q, ``loguniform`` exp(U(low, high)) (so ``-11.5,-4.6`` spans 1e-5 to 1e-2).
``choice`` values are Python literals read with ``ast.literal_eval`` (RecBole evaluates them with ``eval``; nothing
is executed here). ``quniform`` gives integers when ``low``, ``high`` and ``q`` are whole numbers.

Exhaustive search (RecBole's default ``algo``) takes every combination of the ``choice`` lines, in file order, the
last line varying fastest. Random search draws trials from a generator seeded by ``seed``; ``uniform`` and
``loguniform`` draws are rounded to 4 significant digits and kept within their bounds, ``quniform`` draws to the
decimals of ``q`` (a multiple of it, without float noise), so a trial's name and the values it ran with are the
same; a drawn combination that is already in the list is drawn again.
"""
import ast
import decimal
import hashlib
import json
import logging
import math
import re
from dataclasses import dataclass
from itertools import product
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from recbole_hnlm.errors import ConfigError

__all__ = ["ALGORITHMS", "Param", "read_params_file", "make_trials", "trial_key"]

ALGORITHMS = ("exhaustive", "random")
_KINDS = ("choice", "uniform", "quniform", "loguniform")
_MAX_KEY_LENGTH = 120
_MAX_LOG = 700.0  # exp(709.8) is the largest float64
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Param:
    """One line of a params file.

    Attributes:
        name (str): the option (a RecBole or sampler setting).
        kind (str): ``choice``, ``uniform``, ``quniform`` or ``loguniform``.
        values (tuple): the ``choice`` values.
        bounds (tuple): ``(low, high)`` or, for ``quniform``, ``(low, high, q)``.
        where (str): ``file:line``, for error messages.
    """

    name: str
    kind: str
    values: Tuple = ()
    bounds: Tuple = ()
    where: str = ""

    def draw(self, rng: np.random.Generator):
        """One value, from ``rng``."""
        if self.kind == "choice":
            return self.values[int(rng.integers(len(self.values)))]
        low, high = self.bounds[:2]
        if self.kind == "uniform":
            return _round_within(rng.uniform(low, high), low, high)
        if self.kind == "loguniform":
            return _round_within(math.exp(rng.uniform(low, high)), math.exp(low), math.exp(high))
        q = self.bounds[2]
        steps = round(rng.uniform(low, high) / q)
        if all(float(b).is_integer() for b in self.bounds):
            return int(steps * q)
        return round(steps * q, max(0, -decimal.Decimal(repr(float(q))).as_tuple().exponent))


def _round_within(value: float, low: float, high: float) -> float:
    """``value`` to 4 significant digits, the nearest bound where rounding left ``[low, high]``."""
    return min(max(float(f"{value:.4g}"), low), high)


def _numbers(text: str, count: int, param: str, where: str) -> Tuple[float, ...]:
    parts = [p.strip() for p in text.split(",")]
    try:
        numbers = tuple(float(p) for p in parts)
    except ValueError:
        numbers = ()
    if len(numbers) != count or not all(math.isfinite(n) for n in numbers):
        shape = "low,high" if count == 2 else "low,high,q"
        raise ConfigError(f"{where}: '{param}' expects {count} comma-separated numbers {shape}, got {text!r}")
    return numbers


def _parse_line(line: str, where: str) -> Param:
    parts = line.split(None, 2)
    if len(parts) < 3:
        raise ConfigError(f"{where}: expected '<name> <type> <values>' (e.g. 'learning_rate choice [0.01, 0.001]'), "
                          f"got {line!r}")
    name, kind, text = parts
    if kind not in _KINDS:
        raise ConfigError(f"{where}: unknown type {kind!r} for '{name}'; choose from {', '.join(_KINDS)}")
    if kind == "choice":
        try:
            values = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise ConfigError(f"{where}: the values of '{name}' must be a Python list of literals, e.g. "
                              f"[0.01, 0.001] or ['a', 'b'], got {text!r}") from None
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"{where}: the values of '{name}' must be a non-empty list, got {text!r}")
        try:  # trials are stored as JSON (and option values come from yaml): no sets, bytes or infinities
            json.dumps(values, allow_nan=False)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: the values of '{name}' must be numbers, strings, booleans, None, lists or "
                              f"dicts with string keys, all finite; got {text!r}") from None
        # 1 and 1.0 are one value (two trials that train alike); True stays apart from 1
        same = [float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v) for v in values]
        repeated = sorted({str(v) for v, key in zip(values, same) if same.count(key) > 1})
        if repeated:
            raise ConfigError(f"{where}: the values of '{name}' repeat {', '.join(repeated)}")
        return Param(name, kind, values=tuple(values), where=where)
    bounds = _numbers(text, 3 if kind == "quniform" else 2, name, where)
    if bounds[0] > bounds[1] or (kind != "quniform" and bounds[0] == bounds[1]):
        raise ConfigError(f"{where}: '{name}' needs low < high, got {text!r}")
    if kind == "quniform" and bounds[2] <= 0:
        raise ConfigError(f"{where}: '{name}' needs a step q > 0, got {text!r}")
    if kind == "loguniform" and max(abs(bounds[0]), abs(bounds[1])) > _MAX_LOG:
        raise ConfigError(f"{where}: '{name}' is loguniform: low and high are natural logarithms (exp(low) to "
                          f"exp(high), e.g. -11.5,-4.6 for 1e-5 to 1e-2) within +-{_MAX_LOG}, got {text!r}")
    return Param(name, kind, bounds=bounds, where=where)


def read_params_file(path: str) -> List[Param]:
    """The parameters of a params file, in file order.

    Raises:
        FileNotFoundError: no file at ``path``.
        ConfigError: a malformed line, an unknown type or a repeated name (the message names ``path:line``).
    """
    try:
        with open(path, encoding="utf-8-sig") as handle:  # a byte-order mark (Windows editors) is not part of a name
            lines = handle.read().splitlines()
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte {error.start}: {error.reason}); save the params file as "
                          "UTF-8") from None
    params: List[Param] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        param = _parse_line(line, f"{path}:{number}")
        for other in params:
            if other.name == param.name:
                raise ConfigError(f"{param.where}: '{param.name}' is already set on {other.where}")
        params.append(param)
    if not params:
        raise ConfigError(f"{path}: no parameters (lines '<name> <type> <values>', e.g. 'learning_rate choice "
                          "[0.01, 0.001]')")
    return params


def make_trials(params: Sequence[Param], algo: str = "exhaustive", max_evals: Optional[int] = None,
                seed: int = 2020) -> List[Dict[str, object]]:
    """The trials (``{name: value}``) of a search, in the order they run.

    Args:
        params: the search space (:func:`read_params_file`).
        algo: ``exhaustive`` (every combination of ``choice`` lines; at most ``max_evals`` of them when given) or
            ``random`` (``max_evals`` distinct draws, required; fewer when the space has fewer combinations).
        max_evals: the number of trials.
        seed: seed of the random draws.

    Raises:
        ConfigError: an unknown ``algo``, a non-``choice`` line in exhaustive search, or random search without
            ``max_evals``.
    """
    if algo not in ALGORITHMS:
        raise ConfigError(f"unknown search algorithm {algo!r}; choose from {', '.join(ALGORITHMS)}")
    if algo == "exhaustive":
        continuous = [p for p in params if p.kind != "choice"]
        if continuous:
            raise ConfigError(f"{continuous[0].where}: exhaustive search takes only 'choice' lines, and "
                              f"'{continuous[0].name}' is {continuous[0].kind}: use random search (--algo=random "
                              "--max_evals=N) or list its values with choice")
        trials = [dict(zip([p.name for p in params], values)) for values in product(*[p.values for p in params])]
        return trials[:max_evals] if max_evals else trials
    if not max_evals:
        raise ConfigError("random search needs the number of trials: --max_evals=N")
    asked = max_evals
    if all(p.kind == "choice" for p in params):
        max_evals = min(max_evals, math.prod(len(p.values) for p in params))
    rng = np.random.default_rng(seed)
    trials, keys = [], set()
    for _ in range(max_evals * 100):
        trial = {p.name: p.draw(rng) for p in params}
        if trial_key(trial) not in keys:
            keys.add(trial_key(trial))
            trials.append(trial)
            if len(trials) == max_evals:
                break
    if len(trials) < asked:
        logger.warning(f"random search: only {len(trials)} distinct trials of --max_evals={asked} (the space has too "
                       "few, with drawn numbers rounded to 4 significant digits)")
    return trials


def trial_key(trial: Dict[str, object]) -> str:
    """The folder name of a trial: ``name=value`` pairs joined by ``,`` with every character that is not a letter,
    digit or one of ``.=,+-`` replaced by ``_``; names longer than 120 characters keep their start and get a digest
    of the full name (so distinct trials keep distinct folders)."""
    text = ",".join(f"{name}={value}" for name, value in trial.items())
    key = re.sub(r"[^A-Za-z0-9.=,+\-]", "_", text)
    if key != text or len(key) > _MAX_KEY_LENGTH:  # a replaced character could make two names equal
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]
        key = f"{key[:_MAX_KEY_LENGTH - 11]}~{digest}"
    return key
