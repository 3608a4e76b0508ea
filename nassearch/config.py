"""Run configuration: read YAML, apply ``--set`` overrides, validate, resolve defaults, build components.

A config has the sections ``name, seed, space, evaluator, predictor (optional), searcher, budget,
objectives, executor, output``. Component sections (space, evaluator, predictor, searcher, executor)
name a registered class; their other keys are that class's constructor keywords, checked against its
signature and type hints, so every component documents its options in one place. Every mistake is a
:class:`ConfigError` naming the key, what is wrong and what is allowed.
"""

from __future__ import annotations

import copy
import inspect
import typing
from dataclasses import asdict, dataclass, fields
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from nassearch.errors import ConfigError
from nassearch.objectives import Objective
from nassearch.protocols import check_requirements
from nassearch.registry import COMPONENTS, PREDICTORS, SEARCHERS, SPACES
from nassearch.validation import (MAX_COST_SECONDS, MAX_EVALUATIONS, MAX_INT_CHARS, MAX_YAML_BYTES, MAX_YAML_DEPTH,
                                  MAX_YAML_VALUES, reject_unknown, shown, typed,
                                  validate_header)

#: Constructor arguments the engine supplies itself; a config cannot set them.
CONTEXT_ARGS = frozenset({"self", "space", "evaluator", "predictor", "objectives", "seed", "data_dir",
                          "build_evaluator"})
TOP_LEVEL = ("name", "seed", "space", "evaluator", "predictor", "searcher", "budget", "objectives",
             "executor", "output", "threads")


@dataclass(frozen=True)
class Budget:
    """What each seed of a search may spend: ``evaluations`` (architectures evaluated) or ``cost_seconds``
    (the training seconds the evaluator's results stand for; checked between batches, so the last batch may
    run past it), asked for ``batch_size`` architectures at a time. Give exactly one of the two limits."""

    evaluations: int | None = None
    cost_seconds: float | None = None
    batch_size: int = 1

    def __post_init__(self) -> None:
        """Check the limits (ConfigError naming the key); a whole-number ``cost_seconds`` becomes a float."""
        evaluations, cost_seconds, batch_size = self.evaluations, self.cost_seconds, self.batch_size
        if (evaluations is None) == (cost_seconds is None):
            raise ConfigError("budget: give exactly one of evaluations (number of queries) or cost_seconds")
        if evaluations is not None and typed("budget.evaluations", evaluations, int, MAX_EVALUATIONS) < 1:
            raise ConfigError(f"budget.evaluations: must be >= 1, got {evaluations}")
        if cost_seconds is not None:
            object.__setattr__(self, "cost_seconds", typed("budget.cost_seconds", cost_seconds, float))
            if not 0 < self.cost_seconds <= MAX_COST_SECONDS:
                raise ConfigError(f"budget.cost_seconds: must lie in (0, {MAX_COST_SECONDS:g}], got {self.cost_seconds}")
        if typed("budget.batch_size", batch_size, int) < 1:
            raise ConfigError(f"budget.batch_size: must be >= 1, got {batch_size}")
        if evaluations is not None and batch_size > evaluations:
            raise ConfigError(f"budget.batch_size: {batch_size} is more than budget.evaluations ({evaluations}); "
                              "give at most the number of evaluations")

    @classmethod
    def from_raw(cls, raw: Any) -> Budget:
        """A checked budget from the config's ``budget`` mapping; ConfigError naming the key otherwise."""
        if not isinstance(raw, dict):
            raise ConfigError("budget: expected a mapping, e.g. budget: {evaluations: 150}")
        reject_unknown(raw, [f.name for f in fields(cls)], "budget")
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for YAML."""
        return asdict(self)

    def __str__(self) -> str:
        if self.evaluations is not None:
            return f"{self.evaluations} evaluations"
        return f"{self.cost_seconds:g} cost-seconds"


@dataclass(frozen=True)
class Output:
    """Where and what a YAML run writes: run directories under ``dir``, the benchmark metric its reports and
    plots quote (``report_metric``), a progress bar, plots, and the hypervolume reference point."""

    dir: str = "runs"
    report_metric: str | None = "test_acc"
    progress: bool = True
    plots: bool = True
    pareto_reference: tuple[float, ...] | Literal["normalised"] | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Output:
        """A checked output section from a mapping whose keys ``validate_header`` already checked."""
        typed("output.dir", raw["dir"], str)
        typed("output.report_metric", raw["report_metric"], str | None)
        typed("output.progress", raw["progress"], bool)
        typed("output.plots", raw["plots"], bool)
        reference = raw["pareto_reference"]
        if isinstance(reference, str) and reference != "normalised":
            raise ConfigError(f"output.pareto_reference: {shown(reference)} is not allowed; give one value per "
                              f"objective in its units, or `normalised` (each objective min-max normalised over "
                              f"the whole space, reference point 1.1)")
        if not isinstance(reference, str):
            reference = typed("output.pareto_reference", reference, list[float] | None)
            reference = None if reference is None else tuple(reference)
        return cls(raw["dir"], raw["report_metric"], raw["progress"], raw["plots"], reference)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for YAML."""
        reference = self.pareto_reference
        return {**asdict(self), "pareto_reference": list(reference) if isinstance(reference, tuple) else reference}


#: The output section's keys and defaults.
OUTPUT_DEFAULTS: dict[str, Any] = Output().to_dict()


@dataclass(frozen=True)
class RunConfig:
    """A validated config with every default filled in (what ``config.yaml`` of a run holds)."""

    name: str
    seed: int
    space: dict[str, Any]
    evaluator: dict[str, Any]
    predictor: dict[str, Any] | None
    searcher: dict[str, Any]
    budget: Budget
    objectives: tuple[Objective, ...]
    executor: dict[str, Any]
    output: Output
    threads: int | None = None  # CPU threads of the math libraries; None: nassearch.threads.default_threads()

    def to_dict(self) -> dict[str, Any]:
        """Plain data for YAML; ``validate(to_dict())`` gives back an equal config."""
        return {
            "name": self.name, "seed": self.seed, "space": dict(self.space), "evaluator": dict(self.evaluator),
            "predictor": dict(self.predictor) if self.predictor else None, "searcher": dict(self.searcher),
            "budget": self.budget.to_dict(),
            "objectives": [{"metric": o.metric, "mode": o.mode, "bound": o.bound} for o in self.objectives],
            "executor": dict(self.executor), "output": self.output.to_dict(), "threads": self.threads,
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
    name, seed, output = validate_header(raw, TOP_LEVEL, ("name", "space", "evaluator", "searcher", "budget",
                                                          "objectives"), "every config", OUTPUT_DEFAULTS)
    predictor = raw.get("predictor")
    objectives = parse_objectives(raw["objectives"])
    output = Output.from_dict(output)
    if isinstance(output.pareto_reference, tuple) and len(output.pareto_reference) != len(objectives):
        raise ConfigError(f"output.pareto_reference: {len(output.pareto_reference)} values for "
                          f"{len(objectives)} objectives; give one value per objective, in their units")
    config = RunConfig(
        name=name,
        seed=seed,
        space=resolve_component("space", raw["space"]),
        evaluator=resolve_component("evaluator", raw["evaluator"]),
        predictor=resolve_component("predictor", predictor) if predictor is not None else None,
        searcher=resolve_component("searcher", raw["searcher"]),
        budget=Budget.from_raw(raw["budget"]),
        objectives=objectives,
        executor=resolve_component("executor", raw.get("executor") or {"name": "serial"}),
        output=output,
        threads=typed("threads", raw.get("threads"), int | None),
    )
    _check_threads_and_budget(config)
    return config


def _check_threads_and_budget(config: RunConfig) -> None:
    """``threads`` is positive; the searcher's needs are met by the budget, space and predictor."""
    if config.threads is not None and config.threads < 1:
        raise ConfigError(f"threads: must be >= 1 (or null for the default), got {config.threads}")
    searcher = SEARCHERS.get(config.searcher["name"])
    check_budget(config.budget, searcher.training_evaluations(config.searcher), config.searcher["name"])
    predictor = PREDICTORS.get(config.predictor["name"]) if config.predictor else None
    check_requirements(searcher, SPACES.get(config.space["name"]), predictor)


def check_budget(budget: Budget, training: int, searcher_name: str) -> None:
    """``budget.evaluations`` must leave the searcher evaluations after its own ``training`` set."""
    if budget.evaluations is not None and budget.evaluations <= training:
        raise ConfigError(f"budget.evaluations: {budget.evaluations:,} leaves no search: searcher {searcher_name!r} "
                          f"spends its first {training:,} evaluations on its own training set; give more than "
                          f"{training:,} or a smaller training set")


def component_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """Constructor parameters of a component that a config may set."""
    params = inspect.signature(cls.__init__).parameters
    return {k: p for k, p in params.items()
            if k not in CONTEXT_ARGS and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def resolve_component(section: str, spec: Any, label: str | None = None) -> dict[str, Any]:
    """Validate a component section against its class's signature; return it with all defaults. Messages
    name ``label`` (default: the section)."""
    label = label or section
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or "name" not in spec:
        raise ConfigError(f"{label}: expected a mapping with a 'name' key, e.g. {label}: {{name: ...}}")
    name = typed(f"{label}.name", spec["name"], str)
    cls = COMPONENTS[section].get(name, f"{label}.name")
    params = component_parameters(cls)
    reject_unknown({k: v for k, v in spec.items() if k != "name"}, list(params), label,
                    f" for {section} {name!r}")
    hints = typing.get_type_hints(cls.__init__)
    resolved: dict[str, Any] = {"name": name}
    for key, param in params.items():
        if key in spec:
            resolved[key] = typed(f"{label}.{key}", spec[key], hints.get(key, param.annotation))
        elif param.default is inspect.Parameter.empty:
            raise ConfigError(f"{label}.{key}: missing; {section} {name!r} requires it")
        else:
            resolved[key] = copy.deepcopy(param.default)
    return resolved


def parse_objectives(raw: Any) -> tuple[Objective, ...]:
    """The ``objectives`` list: each item a metric name (maximised), a mapping with ``metric`` and optional
    ``mode`` (max | min) and ``bound``, or an :class:`Objective`."""
    if isinstance(raw, (str, Objective)):
        raw = [raw]
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ConfigError("objectives: expected a non-empty list, e.g. objectives: [{metric: val_acc, mode: max}]")
    objectives = []
    for i, item in enumerate(raw):
        where = f"objectives[{i}]"
        if isinstance(item, Objective):
            item = {"metric": item.metric, "mode": item.mode, "bound": item.bound}
        elif isinstance(item, str):
            item = {"metric": item}
        if not isinstance(item, dict) or "metric" not in item:
            raise ConfigError(f"{where}: expected a metric name or a mapping with 'metric' (and optional 'mode', "
                              "'bound')")
        reject_unknown(item, ["metric", "mode", "bound"], where)
        objectives.append(Objective(
            metric=typed(f"{where}.metric", item["metric"], str),
            mode=typed(f"{where}.mode", item.get("mode", "max"), typing.Literal["max", "min"]),
            bound=typed(f"{where}.bound", item.get("bound"), float | None),
        ))
    return tuple(objectives)


def load(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Read, override and validate a config file."""
    return validate(read_config(path, overrides))


# ---------------------------------------------------------------------------------------------
# Building


def build_component(section: str, spec: dict[str, Any], label: str | None = None, **context: Any) -> Any:
    """Instantiate a resolved component; constructor ValueErrors become ConfigErrors naming the section
    (``label``, where the section sits elsewhere in the config, e.g. ``searcher.efficiency``)."""
    cls = COMPONENTS[section].get(spec["name"])
    label = label or section
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    kwargs.update({k: v for k, v in context.items() if k in accepted})
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"{label} ({spec['name']}): {exc}") from None


def evaluator_builder(space: Any, data_dir: str | None, label: str = "searcher.efficiency") -> Callable[[Any], Any]:
    """What the engine hands a component that builds an evaluator of its own (``ofa_evolution``'s
    ``efficiency``): config section -> evaluator of ``space``, checked like the ``evaluator`` section and
    named ``label`` in messages."""

    def build(spec: Any) -> Any:
        return build_component("evaluator", resolve_component("evaluator", spec, label), label, space=space,
                               data_dir=data_dir)

    return build


def check_metrics(objectives: Sequence[Objective], report_metric: str | None, available: tuple[str, ...],
                  evaluator_name: str) -> None:
    """Objectives and the report metric must name metrics the evaluator produces."""
    wanted = [(f"objectives[{i}].metric", o.metric) for i, o in enumerate(objectives)]
    if report_metric is not None:
        wanted.append(("output.report_metric", report_metric))
    for where, metric in wanted:
        if metric not in available:
            raise ConfigError(f"{where}: {metric!r} is not a metric of evaluator {evaluator_name!r}; "
                              f"available: {', '.join(available)}")
