"""Gradient-boosted trees on a whole network's four static properties: the cheap latency baseline.

A latency predictor that sees only batch size, FLOPs, parameters and memory access
(:data:`nassearch.graph.STATIC_PROPERTIES`, read from ``graph.graph_attrs``) and none of the layer
structure: what a graph model has to beat. The trees and their settings are :class:`XGBPredictor`'s.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nassearch.graph import STATIC_PROPERTIES, ArchGraph
from nassearch.predictors.xgb import XGBPredictor


def static_features(graphs: Sequence[ArchGraph]) -> np.ndarray:
    """The static properties of each graph, float64 (n, 4); ValueError naming a graph that lacks one
    (NaN in ``graph_attrs`` is kept: xgboost treats it as missing)."""
    rows = []
    for i, graph in enumerate(graphs):
        missing = [p for p in STATIC_PROPERTIES if p not in graph.graph_attrs]
        if missing:
            raise ValueError(f"static_xgb reads whole-network graphs; graph {i} lacks graph_attrs {missing} "
                             f"(needs {', '.join(STATIC_PROPERTIES)})")
        rows.append([graph.graph_attrs[p] for p in STATIC_PROPERTIES])
    return np.array(rows, dtype=np.float64).reshape(len(rows), len(STATIC_PROPERTIES))


class StaticXGBPredictor(XGBPredictor):
    """Boosted regression trees on (batch size, FLOPs, params, memory access); deterministic for a seed."""

    name = "static_xgb"

    def features(self, graphs: Sequence[ArchGraph]) -> np.ndarray:
        return static_features(graphs)
