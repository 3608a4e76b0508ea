"""Search objectives: which metric to optimise, in which direction, and optional bounds."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Objective:
    """One objective from the config's ``objectives`` list.

    ``bound`` is a constraint: for ``mode: max`` the metric must be >= bound, for ``min`` <= bound.
    """

    metric: str
    mode: Literal["max", "min"] = "max"
    bound: float | None = None

    def signed(self, metrics: Mapping[str, float]) -> float:
        """The metric turned into a quantity to maximise; ``-inf`` when it is missing or NaN."""
        value = metrics.get(self.metric)
        if value is None or math.isnan(value):
            return -math.inf
        return float(value) if self.mode == "max" else -float(value)

    def within_bound(self, metrics: Mapping[str, float]) -> bool:
        """Whether the metric satisfies ``bound`` (always without one; never when missing or NaN)."""
        if self.bound is None:
            return True
        value = metrics.get(self.metric)
        if value is None or math.isnan(value):
            return False
        return value >= self.bound if self.mode == "max" else value <= self.bound

    def better(self, a: float, b: float) -> bool:
        """Whether metric value ``a`` is strictly better than ``b``."""
        return a > b if self.mode == "max" else a < b


def fitness(objectives: Sequence[Objective], metrics: Mapping[str, float]) -> float:
    """The first objective as a value to maximise, ``-inf`` when any objective's bound is violated: what
    single-objective searchers optimise and reports rank by."""
    if not all(o.within_bound(metrics) for o in objectives):
        return -math.inf
    return objectives[0].signed(metrics)
