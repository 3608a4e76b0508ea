"""Gradient-boosted trees (xgboost) on one-hot operations + flattened adjacency: the classical baseline."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xgboost

from nassearch.graph import ArchGraph
from nassearch.predictors.base import Predictor
from nassearch.predictors.encoders import flat_features


class XGBPredictor(Predictor):
    """Boosted regression trees (``xgboost.train``) on ``flat_features``; deterministic for a seed."""

    name = "xgb"

    def __init__(self, seed: int = 0, n_estimators: int = 500, max_depth: int = 6, learning_rate: float = 0.05,
                 subsample: float = 0.9, colsample_bytree: float = 0.9, min_child_weight: float = 1.0) -> None:
        if n_estimators < 1 or max_depth < 1 or not 0 < learning_rate <= 1:
            raise ValueError("n_estimators and max_depth must be >= 1 and learning_rate in (0, 1]")
        if not 0 < subsample <= 1 or not 0 < colsample_bytree <= 1 or not min_child_weight >= 0:
            raise ValueError("subsample and colsample_bytree must lie in (0, 1], min_child_weight >= 0")
        self.rounds = n_estimators
        self.params = {"objective": "reg:squarederror", "max_depth": max_depth, "eta": learning_rate,
                       "subsample": subsample, "colsample_bytree": colsample_bytree,
                       "min_child_weight": min_child_weight, "seed": seed, "tree_method": "exact", "nthread": 1}
        self.booster: xgboost.Booster | None = None

    def features(self, graphs: Sequence[ArchGraph]) -> np.ndarray:
        """The matrix the trees read, one row per graph (subclasses choose other features)."""
        return flat_features(graphs)

    def fit(self, graphs: Sequence[ArchGraph], y: np.ndarray, val=None) -> XGBPredictor:
        data = xgboost.DMatrix(self.features(graphs), label=np.asarray(y, dtype=np.float64))
        self.booster = xgboost.train(self.params, data, num_boost_round=self.rounds)
        return self

    def predict(self, graphs: Sequence[ArchGraph]) -> np.ndarray:
        if self.booster is None:
            raise RuntimeError("XGBPredictor.predict called before fit")
        return self.booster.predict(xgboost.DMatrix(self.features(graphs))).astype(np.float64)
