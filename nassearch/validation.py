"""Checks every config kind shares (run, benchmark, retrain): typed values with "did you mean" errors, the
name / seed / output header, limits on user input, and short quoting of user values in messages.

Nothing here knows a component: config.py validates run configs with these, the benchmark harnesses their
own configs, retrain its settings, and components their constructor arguments (``require_positive``).
"""

from __future__ import annotations

import collections.abc
import difflib
import inspect
import math
import re
import reprlib
import types
import typing
from collections.abc import Sequence
from typing import Any

from nassearch.errors import ConfigError

#: A run name is one plain path component: letters, digits, '_', '.', '-', not starting with '.' or '-'
#: (so never '.', '..', a hidden name or an option), at most 100 characters.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")

# Limits on user input, generous for any real run; beyond them a value is refused in one line instead of
# hanging or exhausting memory.
#: Bytes of a YAML file the tool reads (configs are a few KiB).
MAX_YAML_BYTES = 2**20
#: Nesting depth of YAML mappings and lists (configs nest three or four levels).
MAX_YAML_DEPTH = 32
#: Values (scalars, lists, mappings) of a YAML document once its aliases are expanded.
MAX_YAML_VALUES = 100_000
#: Characters of one YAML integer literal.
MAX_INT_CHARS = 100
#: Largest seed (32 bits, which every seeded library accepts).
MAX_SEED = 2**32 - 1
#: Largest ``budget.evaluations``.
MAX_EVALUATIONS = 10**7
#: Largest ``budget.cost_seconds`` (about 32 years of training).
MAX_COST_SECONDS = 1e9
#: Largest magnitude of any other integer setting: population and pool sizes, epochs, widths, batch sizes.
MAX_SETTING = 10**6


_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 80


def shown(value: Any) -> str:
    """``repr(value)`` shortened to about 80 characters, for messages that quote user input."""
    try:
        return _SHOWN.repr(value)
    except ValueError:  # an integer with more digits than Python converts to text
        return "(a value holding an integer too long to print)"


def require_positive(**values: int) -> None:
    """Raise ValueError naming the first of ``values`` that is below 1 (network sizes, counts): the
    constructor check components share (``build_component`` words it as a ConfigError)."""
    for key, value in values.items():
        if value < 1:
            raise ValueError(f"{key} must be >= 1, got {value}")


def check_name(name: str) -> None:
    """ConfigError unless ``name`` is a plain single path component (see ``NAME_PATTERN``): the run directory
    is ``output.dir/name``, so a name must never reach outside ``output.dir`` or stand for it."""
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"name: {shown(name)} is not a plain directory name: use 1-100 letters, digits, '_', '.', '-', "
                          "starting with a letter, digit or '_' (e.g. nb201_regevo)")


def check_seed(value: Any, path: str = "seed") -> int:
    """A seed: an integer in ``0..MAX_SEED``."""
    seed = typed(path, value, int, MAX_SEED)
    if seed < 0:
        raise ConfigError(f"{path}: must be >= 0, got {seed}")
    return seed


def validate_header(raw: Any, top_level: Sequence[str], required: Sequence[str], kind: str,
                    output_defaults: dict[str, Any]) -> tuple[str, int, dict[str, Any]]:
    """The keys every config kind (run, benchmarks) shares: check the top level and the required keys, ``name``,
    ``seed`` and ``output`` (keys checked against ``output_defaults`` and filled with them; ``output.dir`` a
    string); ConfigError naming the key otherwise. The caller checks its other output keys."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{kind} config is a mapping of {', '.join(top_level)}")
    reject_unknown(raw, top_level, "", " at the top level")
    for key in required:
        if raw.get(key) is None:
            raise ConfigError(f"{key}: missing; {kind} needs {', '.join(required)}")
    name = typed("name", raw["name"], str)
    check_name(name)
    seed = check_seed(raw.get("seed", 0))
    output = raw.get("output") or {}
    if not isinstance(output, dict):
        raise ConfigError("output: expected a mapping, e.g. output: {dir: runs}")
    reject_unknown(output, list(output_defaults), "output")
    output = {**output_defaults, **output}
    typed("output.dir", output["dir"], str)
    return name, seed, output


def reject_unknown(section: dict[str, Any], allowed: tuple[str, ...] | list[str], path: str,
                    owner: str = "") -> None:
    """Raise for the first key of ``section`` not in ``allowed``; ``path`` is the section's config path."""
    for key in section:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            where = f"{path}.{key}" if path else str(key)
            listing = ", ".join(allowed) or "none"
            raise ConfigError(f"{where}: unknown key{owner}{hint}; allowed: {listing}")


def typed(path: str, value: Any, annotation: Any, limit: int = MAX_SETTING) -> Any:
    """Check ``value`` against a type annotation (int, float, str, bool, Literal, list, tuple, Sequence,
    dict, Mapping, Optional): numbers must be finite, integers within ``-limit..limit``."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return value
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{path}: {shown(value)} is not allowed; allowed values: {', '.join(map(str, args))}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [arg for arg in args if arg is not type(None)]
        if len(options) == 1:  # Optional[X]: X's own message (a NaN, a range) says more
            return typed(path, value, options[0], limit)
        for arg in options:
            try:
                return typed(path, value, arg, limit)
            except ConfigError:
                continue
        raise ConfigError(f"{path}: {shown(value)} has the wrong type; expected {type_name(annotation)}")
    if origin in (list, tuple, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)) or (origin is list and not isinstance(value, list)):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__} {shown(value)}")
        return [typed(f"{path}[{i}]", v, args[0] if args else Any, limit) for i, v in enumerate(value)]
    if origin in (dict, collections.abc.Mapping) or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__} {shown(value)}")
        if args:
            return {typed(f"{path} key", k, args[0], limit): typed(f"{path}.{k}", v, args[1], limit)
                    for k, v in value.items()}
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {type(value).__name__} {shown(value)}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float's range
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(f"{path}: expected a finite number, got {shown(value)}")
        return number
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {type(value).__name__} {shown(value)}")
        if not -limit <= value <= limit:
            raise ConfigError(f"{path}: {shown(value)} is out of range; the limit is {limit:,}")
        return value
    if annotation in (str, bool) and not isinstance(value, annotation):
        raise ConfigError(f"{path}: expected {annotation.__name__}, got {type(value).__name__} {shown(value)}")
    return value


def type_name(annotation: Any) -> str:
    args = typing.get_args(annotation)
    if args:
        return " or ".join(type_name(a) for a in args)
    return "null" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))
