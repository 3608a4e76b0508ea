"""NeuralPredictor: the common fit/predict of predictors that are torch networks.

A subclass says how graphs become tensors (``featurize``) and which network reads them
(``make_network``); this class normalises the targets (z-score; ``predict`` returns the original
scale), seeds everything from the predictor's seed without touching the global random state, trains
with :mod:`nassearch.predictors.training`, and predicts in large batches.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from nassearch.graph import ArchGraph
from nassearch.predictors.base import Predictor
from nassearch.predictors.training import ExtraLoss, Inputs, TrainSettings, predict_scores, train


class NeuralPredictor(Predictor):
    """A predictor whose model is a torch network trained on z-scored targets."""

    def __init__(self, seed: int, settings: TrainSettings) -> None:
        self.seed = seed
        self.settings = settings
        self.network: nn.Module | None = None
        self.mean, self.std = 0.0, 1.0

    @abstractmethod
    def featurize(self, graphs: Sequence[ArchGraph]) -> Inputs:
        """Tensors (first axis = graph) that ``network(**inputs)`` reads."""

    @abstractmethod
    def make_network(self, inputs: Inputs) -> nn.Module:
        """A fresh network for inputs shaped like ``inputs``; forward returns scores (B,)."""

    def featurize_train(self, graphs: Sequence[ArchGraph]) -> Inputs:
        """The training inputs (``featurize`` unless a predictor adds e.g. augmented views)."""
        return self.featurize(graphs)

    def extra_loss(self) -> ExtraLoss | None:
        """A predictor-specific loss term added to every training step (none by default)."""
        return None

    def _scaled(self, y: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((np.asarray(y, dtype=np.float64) - self.mean) / self.std, dtype=torch.float32)

    def fit(self, graphs: Sequence[ArchGraph], y: np.ndarray,
            val: tuple[Sequence[ArchGraph], np.ndarray] | None = None) -> NeuralPredictor:
        y = np.asarray(y, dtype=np.float64)
        if len(graphs) != len(y) or len(y) < 2:
            raise ValueError(f"fit needs at least 2 graphs with one target each, got {len(graphs)} and {len(y)}")
        self.mean, self.std = float(y.mean()), float(y.std()) or 1.0
        inputs = self.featurize_train(graphs)
        val_tensors = (self.featurize(val[0]), self._scaled(val[1])) if val is not None else None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.network = self.make_network(inputs)
            self.network = train(self.network, inputs, self._scaled(y), self.settings, self.seed, val_tensors,
                                 self.extra_loss())
        return self

    @property
    def supports_refit(self) -> bool:
        """Whether :meth:`refit` can continue this predictor's network (predictors whose fit does more than
        train one network on every example say no)."""
        return True

    def refit(self, graphs: Sequence[ArchGraph], y: np.ndarray, steps: int, seed: int) -> NeuralPredictor:
        """Continue training the fitted network for about ``steps`` optimiser steps on (``graphs``, ``y``) (a
        warm start: the first fit's target scaling is kept); ``seed`` orders the batches. Unfitted: ``fit``."""
        if self.network is None:
            return self.fit(graphs, y)
        if not self.supports_refit:
            raise ValueError(f"{type(self).__name__} cannot be warm-started: its fit does more than train one network")
        if steps < 1:
            raise ValueError(f"refit needs steps >= 1, got {steps}")
        inputs = self.featurize_train(graphs)
        settings = dataclasses.replace(self.settings, max_steps=steps, patience=None)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.network = train(self.network, inputs, self._scaled(np.asarray(y, dtype=np.float64)), settings, seed,
                                 None, self.extra_loss())
        return self

    def predict(self, graphs: Sequence[ArchGraph]) -> np.ndarray:
        if self.network is None:
            raise RuntimeError(f"{type(self).__name__}.predict called before fit")
        scores = predict_scores(self.network, self.featurize(graphs))
        return scores.double().numpy() * self.std + self.mean
