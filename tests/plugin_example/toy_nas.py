"""A plug-in from outside nassearch, as a user would write one: an 8-bit toy space and an evaluator that
counts ones. ``tests/test_plugins.py`` registers it by decorator and by entry point."""

from __future__ import annotations

import numpy as np
from torch import nn

from nassearch.errors import InvalidArchitecture
from nassearch.evaluators.base import Evaluator, Result
from nassearch.graph import ArchGraph
from nassearch.model_cost import ModelCost
from nassearch.spaces.base import SearchSpace

BITS = 8


class BitSpace(SearchSpace):
    """Architectures are 8 on/off choices, written as a string of 0s and 1s."""

    name = "toy_bits"

    def sample(self, rng: np.random.Generator) -> tuple[int, ...]:
        return tuple(int(b) for b in rng.integers(0, 2, BITS))

    def mutate(self, arch: tuple[int, ...], rng: np.random.Generator) -> tuple[int, ...]:
        flip = int(rng.integers(BITS))
        return tuple(1 - b if i == flip else b for i, b in enumerate(arch))

    def crossover(self, a: tuple[int, ...], b: tuple[int, ...], rng: np.random.Generator) -> tuple[int, ...]:
        return tuple(x if take else y for x, y, take in zip(a, b, rng.integers(0, 2, BITS)))

    def encode(self, arch: tuple[int, ...]) -> ArchGraph:
        adjacency = np.eye(BITS, k=1, dtype=np.uint8)
        return ArchGraph(np.array(arch, dtype=np.int64), adjacency, ("off", "on"))

    def to_str(self, arch: tuple[int, ...]) -> str:
        return "".join(map(str, arch))

    def from_str(self, text: str) -> tuple[int, ...]:
        if not isinstance(text, str) or len(text) != BITS or set(text) - {"0", "1"}:
            raise InvalidArchitecture(f"toy_bits architecture {text!r}: expected {BITS} characters 0 or 1")
        return tuple(int(c) for c in text)

    def build_model(self, arch: tuple[int, ...], **kwargs: object) -> nn.Module:
        return nn.Sequential(*(nn.Linear(4, 4) for bit in arch if bit), nn.Linear(4, 2))

    def cost(self, arch: tuple[int, ...]) -> ModelCost:
        return ModelCost(params_m=(20 * sum(arch) + 10) / 1e6, flops_m=(16 * sum(arch) + 8) / 1e6)


class OnesEvaluator(Evaluator):
    """``val_acc``: 10 points per on-bit, a little more for earlier bits (so there is one best architecture)."""

    name = "toy_ones"

    @property
    def metrics(self) -> tuple[str, ...]:
        return ("val_acc", "test_acc")

    def evaluate(self, arch: tuple[int, ...]) -> Result:
        score = sum(10.0 * b + 0.1 * b * (BITS - i) for i, b in enumerate(arch))
        return Result({"val_acc": score, "test_acc": score - 1.0}, cost_s=1.0, wall_s=0.0)
