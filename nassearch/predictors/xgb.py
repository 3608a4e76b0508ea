"""Gradient-boosted trees (xgboost) on one-hot operations + flattened adjacency (the classical baseline), or
on path counts (BANANAS' path encoding)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import xgboost

from nassearch.graph import ArchGraph
from nassearch.predictors.base import Predictor
from nassearch.predictors.encoders import flat_features, path_features, path_length


class XGBPredictor(Predictor):
    """Boosted regression trees (``xgboost.train``); deterministic for a seed.

    ``encoding`` picks the features: ``flat`` (``flat_features``: one-hot operations and adjacency, any
    space) or ``paths`` (``path_features``: counts of input->output paths by their operations, for the
    NAS-Bench-101/-201 cells), which lets the trees see what a cell computes rather than where each
    operation sits (a skip on 0->3 and skips on 0->1->3 give the same identity path). Given the run's
    ``space`` (the engine passes it), ``paths`` encodes one of its architectures up front, so a space it
    cannot read is a settings error before the run rather than a failure at the first fit.
    """

    name = "xgb"

    def __init__(self, seed: int = 0, n_estimators: int = 500, max_depth: int = 6, learning_rate: float = 0.05,
                 subsample: float = 0.9, colsample_bytree: float = 0.9, min_child_weight: float = 1.0,
                 encoding: Literal["flat", "paths"] = "flat", space: Any = None) -> None:
        if n_estimators < 1 or max_depth < 1 or not 0 < learning_rate <= 1:
            raise ValueError("n_estimators and max_depth must be >= 1 and learning_rate in (0, 1]")
        if not 0 < subsample <= 1 or not 0 < colsample_bytree <= 1 or not min_child_weight >= 0:
            raise ValueError("subsample and colsample_bytree must lie in (0, 1], min_child_weight >= 0")
        if encoding not in ("flat", "paths"):
            raise ValueError(f"encoding must be 'flat' or 'paths', got {encoding!r}")
        if encoding != "flat" and type(self).features is not XGBPredictor.features:
            raise ValueError(f"encoding: {self.name} reads features of its own; 'paths' applies to xgb only")
        self.encoding = encoding
        if encoding == "paths" and space is not None:
            path_features([space.encode(space.sample(np.random.default_rng(seed)))])
        self.max_path_length: int | None = None  # ``paths``: set by ``fit`` from the training graphs
        self.rounds = n_estimators
        self.params = {"objective": "reg:squarederror", "max_depth": max_depth, "eta": learning_rate,
                       "subsample": subsample, "colsample_bytree": colsample_bytree,
                       "min_child_weight": min_child_weight, "seed": seed, "tree_method": "exact", "nthread": 1}
        self.booster: xgboost.Booster | None = None

    def features(self, graphs: Sequence[ArchGraph]) -> np.ndarray:
        """The matrix the trees read, one row per graph (subclasses choose other features)."""
        if self.encoding == "flat":
            return flat_features(graphs)
        return path_features(graphs, self.max_path_length)

    def fit(self, graphs: Sequence[ArchGraph], y: np.ndarray, val=None) -> XGBPredictor:
        if self.encoding == "paths":
            self.max_path_length = path_length(graphs)  # longer paths are unseen columns to the trees
        data = xgboost.DMatrix(self.features(graphs), label=np.asarray(y, dtype=np.float64))
        self.booster = xgboost.train(self.params, data, num_boost_round=self.rounds)
        return self

    def predict(self, graphs: Sequence[ArchGraph]) -> np.ndarray:
        if self.booster is None:
            raise RuntimeError("XGBPredictor.predict called before fit")
        return self.booster.predict(xgboost.DMatrix(self.features(graphs))).astype(np.float64)
