"""Regularized (aging) evolution, Real et al. 2019, as reproduced in NAS-Bench-101 and Neural Predictor.

The first ``population_size`` proposals are uniform samples. After that each proposal picks
``sample_size`` distinct members of the population uniformly, mutates the fittest of them with the
space's mutation rule, and every told child joins the population while the oldest member leaves.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from nassearch.searchers.base import Searcher
from nassearch.trial import Trial
from nassearch.spaces.base import Arch


class RegularizedEvolution(Searcher):
    """Aging evolution with tournament selection (defaults: population 100, sample 10)."""

    name = "regularized_evolution"

    def __init__(self, space, objectives, seed: int, population_size: int = 100, sample_size: int = 10) -> None:
        super().__init__(space, objectives, seed)
        if population_size < 1:
            raise ValueError(f"population_size must be >= 1, got {population_size}")
        if not 1 <= sample_size <= population_size:
            raise ValueError(f"sample_size must lie in 1..population_size ({population_size}), got {sample_size}")
        self.population_size = population_size
        self.sample_size = sample_size
        self.population: deque[tuple[Arch, float]] = deque()
        self.random_asked = 0

    def ask(self, n: int) -> list[Arch]:
        proposals = []
        for _ in range(n):
            if self.random_asked < self.population_size or not self.population:
                self.random_asked += 1
                proposals.append(self.space.sample(self.rng))
            else:
                proposals.append(self.space.mutate(self._tournament(), self.rng))
        return proposals

    def _tournament(self) -> Arch:
        size = min(self.sample_size, len(self.population))
        picks = self.rng.choice(len(self.population), size=size, replace=False)
        fitness = np.array([self.population[i][1] for i in picks])
        return self.population[int(picks[int(np.argmax(fitness))])][0]

    def tell(self, trials: Sequence[Trial]) -> None:
        for trial in trials:
            self.population.append((trial.arch, self.fitness(trial)))
            if len(self.population) > self.population_size:
                self.population.popleft()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "random_asked": self.random_asked}

    def load_state_dict(self, state: dict[str, Any], history: Sequence[Trial]) -> None:
        """The population is the last ``population_size`` told trials."""
        super().load_state_dict(state, history)
        self.random_asked = int(state["random_asked"])
        self.population = deque()
        RegularizedEvolution.tell(self, history[-self.population_size:])
