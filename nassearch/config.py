"""Run configuration: read YAML, apply ``--set`` overrides, validate, resolve defaults, build components.

A config has the sections ``name, seed, space, evaluator, predictor (optional), searcher, budget,
objectives, executor, output``. Component sections (space, evaluator, predictor, searcher, executor)
name a registered class; their other keys are that class's constructor keywords, checked against its
signature and type hints, so every component documents its options in one place. Every mistake is a
:class:`ConfigError` naming the key, what is wrong and what is allowed.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import re
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
             "executor", "output")
BUDGET_DEFAULTS: dict[str, Any] = {"evaluations": None, "cost_seconds": None, "batch_size": 1}
OUTPUT_DEFAULTS: dict[str, Any] = {"dir": "runs", "report_metric": "test_acc", "progress": True, "plots": True,
                                   "pareto_reference": None}
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")


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

    def to_dict(self) -> dict[str, Any]:
        """Plain data for YAML; ``validate(to_dict())`` gives back an equal config."""
        return {
            "name": self.name, "seed": self.seed, "space": dict(self.space), "evaluator": dict(self.evaluator),
            "predictor": dict(self.predictor) if self.predictor else None, "searcher": dict(self.searcher),
            "budget": dict(self.budget),
            "objectives": [{"metric": o.metric, "mode": o.mode, "bound": o.bound} for o in self.objectives],
            "executor": dict(self.executor), "output": dict(self.output),
        }

    def with_seed(self, seed: int) -> RunConfig:
        """The same config with another seed."""
        return validate({**self.to_dict(), "seed": seed})


# ---------------------------------------------------------------------------------------------
# Reading and overriding


def read_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Raw config from a YAML file with ``section.key=value`` overrides applied (values parsed as YAML)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"config {path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
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
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
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
    if not NAME_PATTERN.match(name):
        raise ConfigError(f"name: {name!r} may only contain letters, digits, '_', '.', '-'")
    seed = _typed("seed", raw.get("seed", 0), int)
    if seed < 0:
        raise ConfigError(f"seed: must be >= 0, got {seed}")
    predictor = raw.get("predictor")
    objectives = _objectives(raw["objectives"])
    output = _output(raw.get("output") or {})
    if output["pareto_reference"] is not None and len(output["pareto_reference"]) != len(objectives):
        raise ConfigError(f"output.pareto_reference: {len(output['pareto_reference'])} values for "
                          f"{len(objectives)} objectives; give one value per objective, in their units")
    return RunConfig(
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
    )


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


def _typed(path: str, value: Any, annotation: Any) -> Any:
    """Check ``value`` against a type annotation (int, float, str, bool, Literal, list, dict, Optional)."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return value
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{path}: {value!r} is not allowed; allowed values: {', '.join(map(str, args))}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _typed(path, value, arg)
            except ConfigError:
                continue
        raise ConfigError(f"{path}: {value!r} has the wrong type; expected {_type_name(annotation)}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__} {value!r}")
        return [_typed(f"{path}[{i}]", v, args[0] if args else Any) for i, v in enumerate(value)]
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__} {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if annotation in (str, bool) and not isinstance(value, annotation):
        raise ConfigError(f"{path}: expected {annotation.__name__}, got {type(value).__name__} {value!r}")
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
    if budget["evaluations"] is not None and _typed("budget.evaluations", budget["evaluations"], int) < 1:
        raise ConfigError(f"budget.evaluations: must be >= 1, got {budget['evaluations']}")
    if budget["cost_seconds"] is not None:
        budget["cost_seconds"] = _typed("budget.cost_seconds", budget["cost_seconds"], float)
        if budget["cost_seconds"] <= 0:
            raise ConfigError(f"budget.cost_seconds: must be > 0, got {budget['cost_seconds']}")
    if _typed("budget.batch_size", budget["batch_size"], int) < 1:
        raise ConfigError(f"budget.batch_size: must be >= 1, got {budget['batch_size']}")
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
