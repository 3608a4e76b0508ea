"""The Evaluator interface and its Result."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from nassearch.spaces.base import Arch, SearchSpace


class Result(NamedTuple):
    """What one evaluation produced (an immutable record: a NamedTuple, cheap to create by the hundred thousand).

    Attributes:
        metrics: metric name -> value (``val_acc``, ``test_acc`` in percent, ``params``/``flops`` in
            millions, latencies in ms, ...).
        cost_s: seconds of training this evaluation stands for (the search budget's currency).
        wall_s: seconds the evaluation really took here.
    """

    metrics: dict[str, float]
    cost_s: float = 0.0
    wall_s: float = 0.0


class Evaluator(ABC):
    """Turns architectures of one space into Results. Never sees the searcher."""

    name: str = ""
    #: The dataset its metrics are measured on, for plot titles (a ``dataset`` setting of the config names it
    #: where an evaluator answers for several).
    dataset: str = "cifar10"
    #: Whether ``evaluate_batch`` is one vectorised query (table lookups): the serial executor then hands it
    #: whole batches instead of one architecture at a time.
    batched: bool = False
    #: Which data (table, schedule) answers, for the run summary; empty where the name says it all.
    source: str = ""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    @property
    @abstractmethod
    def metrics(self) -> tuple[str, ...]:
        """Names of the metrics every Result of this evaluator carries."""

    @abstractmethod
    def evaluate(self, arch: Arch) -> Result:
        """Evaluate one architecture."""

    def evaluate_batch(self, archs: Sequence[Arch]) -> list[Result]:
        """Evaluate several architectures; table-backed evaluators override with a vectorised query."""
        return [self.evaluate(a) for a in archs]

    def reference_values(self, metric: str) -> np.ndarray | None:
        """The metric over the whole space, when this evaluator knows it (finite tables); else None.

        Reports use it for the rank, percentile and regret of a found architecture.
        """
        return None
