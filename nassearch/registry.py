"""Registries: config names -> component classes, imported lazily so listing names stays cheap.

Adding a component means adding one line here (and its module); nothing registers itself at import.
"""

from __future__ import annotations

import importlib

from nassearch.errors import ConfigError


class Registry:
    """Names of one kind of component (space, evaluator, ...) mapped to ``"module:Class"`` paths."""

    def __init__(self, kind: str, entries: dict[str, str]) -> None:
        self.kind = kind
        self._entries = dict(entries)

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._entries)

    def get(self, name: str) -> type:
        """The class registered as ``name``; an unknown name raises ConfigError listing the known ones."""
        if name not in self._entries:
            known = ", ".join(self.names()) or "(none yet)"
            raise ConfigError(f"{self.kind}.name: unknown {self.kind} {name!r}; known: {known}")
        module_name, attr = self._entries[name].split(":")
        return getattr(importlib.import_module(module_name), attr)


SPACES = Registry("space", {
    "darts": "spaces.darts:DartsSpace",
    "nasbench101": "spaces.nasbench101:NasBench101Space",
    "nasbench201": "spaces.nasbench201:NasBench201Space",
})
EVALUATORS = Registry("evaluator", {
    "nb101_tabular": "evaluators.tabular:NasBench101Tabular",
    "nb201_tabular": "evaluators.tabular:NasBench201Tabular",
    "train": "evaluators.training:TrainingEvaluator",
    "nb301_surrogate": "evaluators.surrogate:NasBench301Surrogate",
})
SEARCHERS = Registry("searcher", {
    "nar_sampling": "searchers.nar_sampling:NARSampling",
    "predictor_evolution": "searchers.predictor_evolution:PredictorGuidedEvolution",
    "nsga2": "searchers.nsga2:NSGA2",
    "random_search": "searchers.random_search:RandomSearch",
    "regularized_evolution": "searchers.regularized_evolution:RegularizedEvolution",
})
PREDICTORS = Registry("predictor", {
    "gcn": "nassearch.predictors.gcn:GCNPredictor",
    "mlp": "nassearch.predictors.mlp:MLPPredictor",
    "nar": "nassearch.predictors.nar:NARPredictor",
    "narformer": "nassearch.predictors.narformer:NARFormerPredictor",
    "narformer_v2": "nassearch.predictors.narformer_v2:NARFormerV2Predictor",
    "static_xgb": "nassearch.predictors.static_xgb:StaticXGBPredictor",
    "tnasp": "nassearch.predictors.tnasp:TNASPPredictor",
    "xgb": "nassearch.predictors.xgb:XGBPredictor",
})
EXECUTORS = Registry("executor", {
    "ray": "nassearch.executors:RayExecutor",
    "serial": "nassearch.executors:SerialExecutor",
})
