"""Acquisition functions for predictor-guided search: how an ensemble's predictions become the scores a searcher
ranks candidates by (higher is better).

- ``mean``: the ensemble mean (one predictor: its prediction), the seeds' protocol.
- ``ucb``: upper confidence bound, mean + ``kappa`` x std over the members.
- ``ei``: expected improvement over the best value seen so far, under a normal with the members' mean and std.
- ``its``: independent Thompson sampling (BANANAS, White et al. 2021): one draw per candidate from that normal.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.stats import norm

Acquisition = Literal["mean", "ucb", "ei", "its"]
ACQUISITIONS: tuple[str, ...] = ("mean", "ucb", "ei", "its")


def acquisition_scores(kind: Acquisition, predictions: np.ndarray, best: float, rng: np.random.Generator,
                       kappa: float = 1.0) -> np.ndarray:
    """Scores of the candidates from ``predictions`` (members x candidates); ``best`` is the best value evaluated
    so far (``ei``), ``rng`` draws the samples of ``its``."""
    predictions = np.atleast_2d(np.asarray(predictions, dtype=np.float64))
    mean = predictions.mean(axis=0)
    if kind == "mean":
        return mean
    std = predictions.std(axis=0)
    if kind == "ucb":
        return mean + kappa * std
    if kind == "its":
        return mean + std * rng.standard_normal(mean.shape)
    if kind == "ei":
        safe = np.maximum(std, 1e-12)
        z = (mean - best) / safe
        improvement = (mean - best) * norm.cdf(z) + safe * norm.pdf(z)
        return np.where(std > 0, improvement, np.maximum(mean - best, 0.0))
    raise ValueError(f"acquisition must be one of {', '.join(ACQUISITIONS)}, got {kind!r}")
