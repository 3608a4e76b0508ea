"""Search objectives: which metric to optimise, in which direction, and optional bounds."""

from __future__ import annotations

import math
from collections.abc import Mapping
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

    def better(self, a: float, b: float) -> bool:
        """Whether metric value ``a`` is strictly better than ``b``."""
        return a > b if self.mode == "max" else a < b
