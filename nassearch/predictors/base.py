"""The Predictor interface: fit on ArchGraphs and targets, predict for many graphs at once."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nassearch.validation import require_positive
from nassearch.graph import ArchGraph


def check_network(dropout: float, **sizes: int) -> None:
    """Raise ValueError unless every network size (width, layers, heads, ...) is >= 1 and ``dropout`` lies
    in [0, 1): the checks every neural predictor's constructor needs."""
    require_positive(**sizes)
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout}")


@dataclass(frozen=True)
class Capabilities:
    """What a predictor declares it can do beyond ``fit``/``predict``."""

    predict_tiers: bool = False
    uncertainty: bool = False
    needs_validation: bool = False


class Predictor(ABC):
    """Learns a scalar target (accuracy, latency, ...) from architecture graphs."""

    name: str = ""
    capabilities = Capabilities()

    @abstractmethod
    def fit(self, graphs: Sequence[ArchGraph], y: np.ndarray,
            val: tuple[Sequence[ArchGraph], np.ndarray] | None = None) -> Predictor:
        """Train on ``graphs`` with targets ``y`` (original scale); ``val`` for model selection."""

    @abstractmethod
    def predict(self, graphs: Sequence[ArchGraph]) -> np.ndarray:
        """Predicted targets (original scale), float array (len(graphs),), batched internally."""

    def requirements(self) -> Capabilities:
        """The declared capabilities (e.g. whether ``fit`` needs a validation split)."""
        return self.capabilities
