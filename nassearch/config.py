"""Run configuration: read YAML, apply ``--set`` overrides, validate, resolve defaults, build components.

A config has the sections ``name, seed, space, evaluator, predictor (optional), searcher, budget,
objectives, executor, output``. Component sections (space, evaluator, predictor, searcher, executor)
name a registered class; their other keys are that class's constructor keywords, checked against its
signature and type hints, so every component documents its options in one place. Every mistake is a
:class:`ConfigError` naming the key, what is wrong and what is allowed.
"""

from __future__ import annotations

import collections.abc
import copy
import difflib
import inspect
import math
import re
import reprlib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nassearch.errors import ConfigError
from nassearch.objectives import Objective
from nassearch.registry import EVALUATORS, EXECUTORS, PREDICTORS, SEARCHERS, SPACES, Registry

COMPONENTS: dict[str, Registry] = {"space": SPACES, "evaluator": EVALUATORS, "predictor": PREDICTORS,
                                   "searcher": SEARCHERS, "executor": EXECUTORS}
#: Constructor arguments the engine supplies itself; a config cannot set them.
CONTEXT_ARGS = frozenset({"self", "space", "evaluator", "predictor", "objectives", "seed", "data_dir"})
TOP_LEVEL = ("name", "seed", "space", "evaluator", "predictor", "searcher", "budget", "objectives",
             "executor", "output", "threads")
BUDGET_DEFAULTS: dict[str, Any] = {"evaluations": None, "cost_seconds": None, "batch_size": 1}
OUTPUT_DEFAULTS: dict[str, Any] = {"dir": "runs", "report_metric": "test_acc", "progress": True, "plots": True,
                                   "pareto_reference": None}
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


@dataclass(frozen=True)
class RunConfig:
    """A validated config with every default filled in (what ``config.yaml`` of a run holds)."""

    name: str
    seed: int
    space: dict[str, Any]
    evaluator: dict[str, Any]
    predictor: dict[str, Any] | None
    searcher: dict[str, Any]
    budget: dict[str, Any]
    objectives: tuple[Objective, ...]
    executor: dict[str, Any]
    output: dict[str, Any]
    threads: int | None = None  # CPU threads of the math libraries; None: nassearch.threads.default_threads()

    def to_dict(self) -> dict[str, Any]:
        """Plain data for YAML; ``validate(to_dict())`` gives back an equal config."""
        return {
            "name": self.name, "seed": self.seed, "space": dict(self.space), "evaluator": dict(self.evaluator),
            "predictor": dict(self.predictor) if self.predictor else None, "searcher": dict(self.searcher),
            "budget": dict(self.budget),
            "objectives": [{"metric": o.metric, "mode": o.mode, "bound": o.bound} for o in self.objectives],
            "executor": dict(self.executor), "output": dict(self.output), "threads": self.threads,
        }

    def with_seed(self, seed: int) -> RunConfig:
        """The same config with another seed."""
        return validate({**self.to_dict(), "seed": seed})


# ---------------------------------------------------------------------------------------------
# Reading and overriding


class _Refused(yaml.MarkedYAMLError):
    """YAML that parses but is refused: over a limit, a recursive alias, a tag other than plain YAML's."""


class _LimitedLoader(yaml.SafeLoader):
    """SafeLoader that bounds nesting depth and the alias-expanded size while composing (before any value
    is built), refuses long integers and non-plain tags, and reports bad scalars (dates) as YAML errors."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._expanded: dict[int, int] = {}  # id(node) -> values in it once aliases are expanded

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._expanded:
                raise _Refused(problem=f"alias *{event.anchor} refers to a value that contains it",
                               problem_mark=event.start_mark)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise _Refused(problem=f"values nested more than {MAX_YAML_DEPTH} levels deep",
                           problem_mark=event.start_mark)
        node = super().compose_node(parent, index)
        self._depth -= 1
        children = ([] if isinstance(node, yaml.ScalarNode) else node.value if isinstance(node, yaml.SequenceNode)
                    else [child for pair in node.value for child in pair])
        size = 1 + sum(self._expanded[id(child)] for child in children)
        if size > MAX_YAML_VALUES:
            raise _Refused(problem=f"more than {MAX_YAML_VALUES:,} values once aliases are expanded; "
                                   "write the values out instead of nesting aliases", problem_mark=event.start_mark)
        self._expanded[id(node)] = size
        return node

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:
            raise _Refused(problem=f"{shown(node.value)} is not a valid {node.tag.rsplit(':', 1)[-1]} "
                                   f"({exc})", problem_mark=node.start_mark) from None

    def construct_limited_int(self, node: Any) -> int:
        if len(node.value) > MAX_INT_CHARS:
            raise _Refused(problem=f"an integer of {len(node.value):,} characters is out of range",
                           problem_mark=node.start_mark)
        return self.construct_yaml_int(node)

    def construct_undefined(self, node: Any) -> Any:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        raise _Refused(problem=f"tag {tag} is not allowed; use plain YAML values (mappings, lists, strings, "
                               "numbers, true/false, null)", problem_mark=node.start_mark)


_LimitedLoader.add_constructor("tag:yaml.org,2002:int", _LimitedLoader.construct_limited_int)
_LimitedLoader.add_constructor(None, _LimitedLoader.construct_undefined)


def _yaml_error(source: str, exc: yaml.YAMLError) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or exc
    if isinstance(exc, _Refused):
        return ConfigError(f"{source}{where}: {problem}")
    context = getattr(exc, "context", None)
    return ConfigError(f"{source} is not valid YAML{where}: {context + ', ' if context else ''}{problem}")


def parse_yaml(text: str, source: str) -> Any:
    """YAML text a user wrote (a config, a ``--set`` value) as plain data, within the MAX_YAML_* limits;
    any problem is a one-line ConfigError starting with ``source`` (e.g. ``config runs/x.yaml``)."""
    try:
        return yaml.load(text, Loader=_LimitedLoader)
    except yaml.YAMLError as exc:
        raise _yaml_error(source, exc) from None


def read_yaml(path: str | Path, what: str = "config") -> Any:
    """A user's YAML file (``what``: how messages name it) read by ``parse_yaml``; refused unread when it is
    larger than MAX_YAML_BYTES, and refused when it is not UTF-8 text."""
    path = Path(path)
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_YAML_BYTES:
        raise ConfigError(f"{what} {path} is larger than {MAX_YAML_BYTES // 2**20} MiB, the limit for a YAML "
                          f"{what}; is it the right file?")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    return parse_yaml(text, f"{what} {path}")


def read_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Raw config from a YAML file with ``section.key=value`` overrides applied (values parsed as YAML)."""
    path = Path(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path} must be a YAML mapping of sections ({', '.join(TOP_LEVEL)})")
    for override in overrides:
        apply_override(raw, override)
    return raw


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set ``a.b.c=value`` in ``raw`` (list items by index: ``objectives.0.metric=test_acc``)."""
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {override!r}: expected section.key=value, e.g. searcher.population_size=50")
    try:
        value = yaml.load(text, Loader=_LimitedLoader)
    except (yaml.scanner.ScannerError, yaml.parser.ParserError, yaml.composer.ComposerError):
        value = text  # not YAML syntax: the text itself, e.g. a: b: c
    except yaml.YAMLError as exc:
        raise _yaml_error(f"--set {shown(override)}", exc) from None
    parts = key.split(".")
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        node = _child(node, part, ".".join(parts[: depth + 1]), override)
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(node, last, key, override)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"--set {override!r}: {'.'.join(parts[:-1])} is not a section")


def _child(node: Any, part: str, path: str, override: str) -> Any:
    if isinstance(node, list):
        return node[_list_index(node, part, path, override)]
    if not isinstance(node, dict):
        raise ConfigError(f"--set {override!r}: {path} is not a section")
    if node.get(part) is None:
        node[part] = {}
    return node[part]


def _list_index(node: list, part: str, path: str, override: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--set {override!r}: {path} must be an index below {len(node)}")
    return int(part)


# ---------------------------------------------------------------------------------------------
# Validation


def validate(raw: dict[str, Any]) -> RunConfig:
    """Check every section of a raw config and fill in defaults; raise ConfigError on the first problem."""
    raw = copy.deepcopy(raw)
    _reject_unknown(raw, TOP_LEVEL, "", " at the top level")
    for required in ("name", "space", "evaluator", "searcher", "budget", "objectives"):
        if raw.get(required) is None:
            raise ConfigError(f"{required}: missing; every config needs {', '.join(TOP_LEVEL[:8])}")
    name = _typed("name", raw["name"], str)
    check_name(name)
    seed = _typed("seed", raw.get("seed", 0), int, MAX_SEED)
    if seed < 0:
        raise ConfigError(f"seed: must be >= 0, got {seed}")
    predictor = raw.get("predictor")
    objectives = _objectives(raw["objectives"])
    output = _output(raw.get("output") or {})
    if output["pareto_reference"] is not None and len(output["pareto_reference"]) != len(objectives):
        raise ConfigError(f"output.pareto_reference: {len(output['pareto_reference'])} values for "
                          f"{len(objectives)} objectives; give one value per objective, in their units")
    config = RunConfig(
        name=name,
        seed=seed,
        space=resolve_component("space", raw["space"]),
        evaluator=resolve_component("evaluator", raw["evaluator"]),
        predictor=resolve_component("predictor", predictor) if predictor is not None else None,
        searcher=resolve_component("searcher", raw["searcher"]),
        budget=_budget(raw["budget"]),
        objectives=objectives,
        executor=resolve_component("executor", raw.get("executor") or {"name": "serial"}),
        output=output,
        threads=_typed("threads", raw.get("threads"), int | None),
    )
    _check_threads_and_budget(config)
    return config


def _check_threads_and_budget(config: RunConfig) -> None:
    """``threads`` is positive; ``budget.evaluations`` leaves the searcher evaluations after its own training set."""
    if config.threads is not None and config.threads < 1:
        raise ConfigError(f"threads: must be >= 1 (or null for the default), got {config.threads}")
    evaluations = config.budget["evaluations"]
    training = SEARCHERS.get(config.searcher["name"]).training_evaluations(config.searcher)
    if evaluations is not None and evaluations <= training:
        raise ConfigError(f"budget.evaluations: {evaluations:,} leaves no search: searcher {config.searcher['name']!r} "
                          f"spends its first {training:,} evaluations on its own training set; give more than "
                          f"{training:,} or a smaller training set")


def check_name(name: str) -> None:
    """ConfigError unless ``name`` is a plain single path component (see ``NAME_PATTERN``): the run directory
    is ``output.dir/name``, so a name must never reach outside ``output.dir`` or stand for it."""
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"name: {shown(name)} is not a plain directory name: use 1-100 letters, digits, '_', '.', '-', "
                          "starting with a letter, digit or '_' (e.g. nb201_regevo)")


def _reject_unknown(section: dict[str, Any], allowed: tuple[str, ...] | list[str], path: str,
                    owner: str = "") -> None:
    """Raise for the first key of ``section`` not in ``allowed``; ``path`` is the section's config path."""
    for key in section:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            where = f"{path}.{key}" if path else str(key)
            listing = ", ".join(allowed) or "none"
            raise ConfigError(f"{where}: unknown key{owner}{hint}; allowed: {listing}")


def _typed(path: str, value: Any, annotation: Any, limit: int = MAX_SETTING) -> Any:
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
            return _typed(path, value, options[0], limit)
        for arg in options:
            try:
                return _typed(path, value, arg, limit)
            except ConfigError:
                continue
        raise ConfigError(f"{path}: {shown(value)} has the wrong type; expected {_type_name(annotation)}")
    if origin in (list, tuple, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)) or (origin is list and not isinstance(value, list)):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__} {shown(value)}")
        return [_typed(f"{path}[{i}]", v, args[0] if args else Any, limit) for i, v in enumerate(value)]
    if origin in (dict, collections.abc.Mapping) or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__} {shown(value)}")
        if args:
            return {_typed(f"{path} key", k, args[0], limit): _typed(f"{path}.{k}", v, args[1], limit)
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


def _type_name(annotation: Any) -> str:
    args = typing.get_args(annotation)
    if args:
        return " or ".join(_type_name(a) for a in args)
    return "null" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))


def component_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """Constructor parameters of a component that a config may set."""
    params = inspect.signature(cls.__init__).parameters
    return {k: p for k, p in params.items()
            if k not in CONTEXT_ARGS and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def resolve_component(section: str, spec: Any) -> dict[str, Any]:
    """Validate a component section against its class's signature; return it with all defaults."""
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or "name" not in spec:
        raise ConfigError(f"{section}: expected a mapping with a 'name' key, e.g. {section}: {{name: ...}}")
    name = _typed(f"{section}.name", spec["name"], str)
    cls = COMPONENTS[section].get(name)
    params = component_parameters(cls)
    _reject_unknown({k: v for k, v in spec.items() if k != "name"}, list(params), section,
                    f" for {section} {name!r}")
    hints = typing.get_type_hints(cls.__init__)
    resolved: dict[str, Any] = {"name": name}
    for key, param in params.items():
        if key in spec:
            resolved[key] = _typed(f"{section}.{key}", spec[key], hints.get(key, param.annotation))
        elif param.default is inspect.Parameter.empty:
            raise ConfigError(f"{section}.{key}: missing; {section} {name!r} requires it")
        else:
            resolved[key] = copy.deepcopy(param.default)
    return resolved


def _budget(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError("budget: expected a mapping, e.g. budget: {evaluations: 150}")
    _reject_unknown(raw, list(BUDGET_DEFAULTS), "budget")
    budget = {**BUDGET_DEFAULTS, **raw}
    if (budget["evaluations"] is None) == (budget["cost_seconds"] is None):
        raise ConfigError("budget: give exactly one of evaluations (number of queries) or cost_seconds")
    if budget["evaluations"] is not None and _typed("budget.evaluations", budget["evaluations"], int,
                                                    MAX_EVALUATIONS) < 1:
        raise ConfigError(f"budget.evaluations: must be >= 1, got {budget['evaluations']}")
    if budget["cost_seconds"] is not None:
        budget["cost_seconds"] = _typed("budget.cost_seconds", budget["cost_seconds"], float)
        if not 0 < budget["cost_seconds"] <= MAX_COST_SECONDS:
            raise ConfigError(f"budget.cost_seconds: must lie in (0, {MAX_COST_SECONDS:g}], got {budget['cost_seconds']}")
    if _typed("budget.batch_size", budget["batch_size"], int) < 1:
        raise ConfigError(f"budget.batch_size: must be >= 1, got {budget['batch_size']}")
    if budget["evaluations"] is not None and budget["batch_size"] > budget["evaluations"]:
        raise ConfigError(f"budget.batch_size: {budget['batch_size']} is more than budget.evaluations "
                          f"({budget['evaluations']}); give at most the number of evaluations")
    return budget


def _objectives(raw: Any) -> tuple[Objective, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError("objectives: expected a non-empty list, e.g. objectives: [{metric: val_acc, mode: max}]")
    objectives = []
    for i, item in enumerate(raw):
        where = f"objectives[{i}]"
        if not isinstance(item, dict) or "metric" not in item:
            raise ConfigError(f"{where}: expected a mapping with 'metric' (and optional 'mode', 'bound')")
        _reject_unknown(item, ["metric", "mode", "bound"], where)
        objectives.append(Objective(
            metric=_typed(f"{where}.metric", item["metric"], str),
            mode=_typed(f"{where}.mode", item.get("mode", "max"), typing.Literal["max", "min"]),
            bound=_typed(f"{where}.bound", item.get("bound"), float | None),
        ))
    return tuple(objectives)


def _output(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError("output: expected a mapping, e.g. output: {dir: runs}")
    _reject_unknown(raw, list(OUTPUT_DEFAULTS), "output")
    output = {**OUTPUT_DEFAULTS, **raw}
    _typed("output.dir", output["dir"], str)
    _typed("output.report_metric", output["report_metric"], str | None)
    _typed("output.progress", output["progress"], bool)
    _typed("output.plots", output["plots"], bool)
    output["pareto_reference"] = _typed("output.pareto_reference", output["pareto_reference"], list[float] | None)
    return output


def load(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read, override and validate a config file."""
    return validate(read_config(path, overrides))


# ---------------------------------------------------------------------------------------------
# Building


def build_component(section: str, spec: dict[str, Any], **context: Any) -> Any:
    """Instantiate a resolved component; constructor ValueErrors become ConfigErrors naming the section."""
    cls = COMPONENTS[section].get(spec["name"])
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    kwargs.update({k: v for k, v in context.items() if k in accepted})
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"{section} ({spec['name']}): {exc}") from None


def check_metrics(config: RunConfig, available: tuple[str, ...], evaluator_name: str) -> None:
    """Objectives and the report metric must name metrics the evaluator produces."""
    wanted = [(f"objectives[{i}].metric", o.metric) for i, o in enumerate(config.objectives)]
    if config.output["report_metric"] is not None:
        wanted.append(("output.report_metric", config.output["report_metric"]))
    for where, metric in wanted:
        if metric not in available:
            raise ConfigError(f"{where}: {metric!r} is not a metric of evaluator {evaluator_name!r}; "
                              f"available: {', '.join(available)}")
