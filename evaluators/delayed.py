"""An evaluator that answers from another one after a fixed sleep: a stand-in for expensive evaluations
when measuring parallel executors (``nassearch bench executor``) and in their tests."""

from __future__ import annotations

import time

import numpy as np

from nassearch.evaluators.base import Evaluator, Result
from nassearch.spaces.base import Arch


class Delayed(Evaluator):
    """``inner``'s results, each after sleeping ``seconds``; ``wall_s`` is the real time taken."""

    name = "delayed"

    def __init__(self, inner: Evaluator, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds}")
        super().__init__(inner.space)
        self.inner, self.seconds = inner, seconds

    @property
    def metrics(self) -> tuple[str, ...]:
        return self.inner.metrics

    def evaluate(self, arch: Arch) -> Result:
        start = time.perf_counter()
        time.sleep(self.seconds)
        result = self.inner.evaluate(arch)
        return Result(result.metrics, result.cost_s, time.perf_counter() - start)

    def reference_values(self, metric: str) -> np.ndarray | None:
        return self.inner.reference_values(metric)
