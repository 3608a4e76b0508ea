"""Registries: config names -> component classes, open to components from outside nassearch.

Built-ins are listed here as ``"module:Class"`` paths and imported lazily, so listing names stays cheap.
A user's own component joins in one of two ways, without editing nassearch:

- the :func:`register` decorator, ``@nassearch.register("space", "my_space")`` on the class (the name works
  once the defining module is imported);
- a package entry point in the kind's group (``nassearch.spaces``, ``nassearch.evaluators``,
  ``nassearch.searchers``, ``nassearch.predictors``, ``nassearch.executors``), e.g. in pyproject.toml
  ``[project.entry-points."nassearch.spaces"] my_space = "my_pkg.space:MySpace"``; found with no import.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any, TypeVar

from nassearch.errors import ConfigError

T = TypeVar("T", bound=type)


class Registry:
    """Names of one kind of component (space, evaluator, ...) mapped to classes or ``"module:Class"`` paths;
    the entry points of ``group`` are added the first time a name is looked up or listed."""

    def __init__(self, kind: str, group: str, entries: dict[str, str]) -> None:
        self.kind = kind
        self.group = group
        self._entries: dict[str, str | type] = dict(entries)
        self._plugins_loaded = False

    def names(self) -> list[str]:
        """All registered names, sorted."""
        self._load_plugins()
        return sorted(self._entries)

    def register(self, name: str, cls: type | str) -> None:
        """Register ``cls`` (a class or ``"module:Class"``) as ``name``; a name already taken by another class is
        refused."""
        current = self._entries.get(name)
        if current is not None and _qualified(current) != _qualified(cls):
            raise ConfigError(f"{self.kind} name {name!r} is already registered for {_qualified(current)}; "
                              f"choose another name for {_qualified(cls)}")
        self._entries[name] = cls

    def get(self, name: str, where: str | None = None) -> type:
        """The class registered as ``name``; an unknown name raises ConfigError listing the known ones, naming
        the config key ``where`` (default ``<kind>.name``)."""
        where = where or f"{self.kind}.name"
        if name not in self._entries:
            self._load_plugins()
        if name not in self._entries:
            known = ", ".join(self.names()) or "(none yet)"
            raise ConfigError(f"{where}: unknown {self.kind} {name!r}; known: {known}")
        entry = self._entries[name]
        if isinstance(entry, type):
            return entry
        module_name, attr = entry.split(":")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"{where}: {name!r} is registered as {entry}, which cannot be imported "
                              f"({type(exc).__name__}: {exc}); fix or reinstall the package that provides it") from None

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for point in entry_points(group=self.group):
            if point.name not in self._entries:
                self._entries[point.name] = point.value


def _qualified(cls: type | str) -> str:
    return cls if isinstance(cls, str) else f"{cls.__module__}:{cls.__qualname__}"


SPACES = Registry("space", "nassearch.spaces", {
    "darts": "nassearch.spaces.darts:DartsSpace",
    "nasbench101": "nassearch.spaces.nasbench101:NasBench101Space",
    "nasbench201": "nassearch.spaces.nasbench201:NasBench201Space",
    "ofa_mbv3": "nassearch.spaces.ofa_mbv3:OFAMobileNetV3Space",
    "proxylessnas": "nassearch.spaces.proxylessnas:ProxylessNASSpace",
})
EVALUATORS = Registry("evaluator", "nassearch.evaluators", {
    "nb101_tabular": "nassearch.evaluators.tabular:NasBench101Tabular",
    "nb201_tabular": "nassearch.evaluators.tabular:NasBench201Tabular",
    "train": "nassearch.evaluators.training:TrainingEvaluator",
    "imagenet_train": "nassearch.evaluators.imagefolder_training:ImageFolderTraining",
    "nb301_surrogate": "nassearch.evaluators.surrogate:NasBench301Surrogate",
    "ofa_accuracy": "nassearch.evaluators.ofa:OFAAccuracy",
    "note10_latency": "nassearch.evaluators.ofa:Note10Latency",
    "measured_latency": "nassearch.evaluators.measured:MeasuredLatency",
})
SEARCHERS = Registry("searcher", "nassearch.searchers", {
    "nar_sampling": "nassearch.searchers.nar_sampling:NARSampling",
    "neural_predictor": "nassearch.searchers.neural_predictor:NeuralPredictorSearch",
    "predictor_evolution": "nassearch.searchers.predictor_evolution:PredictorGuidedEvolution",
    "nsga2": "nassearch.searchers.nsga2:NSGA2",
    "ofa_evolution": "nassearch.searchers.ofa_evolution:OFAEvolution",
    "random_search": "nassearch.searchers.random_search:RandomSearch",
    "regularized_evolution": "nassearch.searchers.regularized_evolution:RegularizedEvolution",
})
PREDICTORS = Registry("predictor", "nassearch.predictors", {
    "gcn": "nassearch.predictors.gcn:GCNPredictor",
    "mlp": "nassearch.predictors.mlp:MLPPredictor",
    "nar": "nassearch.predictors.nar:NARPredictor",
    "narformer": "nassearch.predictors.narformer:NARFormerPredictor",
    "narformer_v2": "nassearch.predictors.narformer_v2:NARFormerV2Predictor",
    "static_xgb": "nassearch.predictors.static_xgb:StaticXGBPredictor",
    "tnasp": "nassearch.predictors.tnasp:TNASPPredictor",
    "xgb": "nassearch.predictors.xgb:XGBPredictor",
})
EXECUTORS = Registry("executor", "nassearch.executors", {
    "ray": "nassearch.executors:RayExecutor",
    "serial": "nassearch.executors:SerialExecutor",
})
#: The registry of each kind of component, by the config section that names it.
COMPONENTS: dict[str, Registry] = {"space": SPACES, "evaluator": EVALUATORS, "predictor": PREDICTORS,
                                   "searcher": SEARCHERS, "executor": EXECUTORS}


def register(kind: str, name: str | None = None) -> Any:
    """Class decorator: make the class available as ``name`` (default: its ``name`` attribute) wherever a
    ``kind`` (space, evaluator, searcher, predictor, executor) is named, in YAML configs and in
    ``nassearch.search``. A class without a ``name`` attribute gets ``name``."""
    if kind not in COMPONENTS:
        raise ConfigError(f"register: unknown kind {kind!r}; kinds: {', '.join(COMPONENTS)}")

    def decorate(cls: T) -> T:
        registered = name or getattr(cls, "name", "")
        if not registered:
            raise ConfigError(f"register: give {cls.__qualname__} a name, e.g. @register({kind!r}, 'my_{kind}')")
        if not getattr(cls, "name", ""):
            cls.name = registered
        COMPONENTS[kind].register(registered, cls)
        return cls

    return decorate
