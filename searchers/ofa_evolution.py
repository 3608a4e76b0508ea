"""The evolutionary search of Once-for-All (Cai et al., ICLR 2020; its ``EvolutionFinder``), the search of
NAR-Former §2.4 with NAR-Former's predictor as the fitness.

Generation 0 is ``population_size`` uniform samples. Each later generation keeps the ``parent_ratio`` best
of the previous generation's pool as parents and adds ``population_size`` children:
``mutation_ratio * population_size`` of them mutate a parent drawn uniformly (the space's ``mutate``: OFA's
per-gene mutation for ``ofa_mbv3``), the rest cross two parents drawn uniformly (``crossover``). The next
pool is the parents plus their evaluated children. A latency (or any) constraint is an objective ``bound``:
a child outside it has the worst fitness, so it is never a parent. (OFA redraws such a child before
evaluating it, with a latency predictor; here every proposal is evaluated, so an infeasible child spends a
query.) ``ask`` stops at the end of a generation, so the next one is selected from a complete pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nassearch.protocols import SupportsCrossover
from nassearch.searchers.base import Searcher
from nassearch.spaces.base import Arch
from nassearch.trial import Trial


class OFAEvolution(Searcher):
    """OFA's evolution: top ``parent_ratio`` survive, children by mutation and crossover (100, 0.25, 0.5)."""

    name = "ofa_evolution"
    requires_space = (SupportsCrossover,)

    def __init__(self, space, objectives, seed: int, population_size: int = 100, parent_ratio: float = 0.25,
                 mutation_ratio: float = 0.5) -> None:
        super().__init__(space, objectives, seed)
        if population_size < 2:
            raise ValueError(f"population_size must be >= 2, got {population_size}")
        if not 0 < parent_ratio <= 1 or not 0 <= mutation_ratio <= 1:
            raise ValueError("parent_ratio must lie in (0, 1] and mutation_ratio in [0, 1]")
        self.population_size = population_size
        self.parents_size = max(1, round(parent_ratio * population_size))
        self.mutations = round(mutation_ratio * population_size)
        self.pool: list[tuple[Arch, float]] = []  # this generation's parents, then its told children
        self.queue: list[Arch] = []  # this generation's proposals not asked yet
        self.generation = -1

    def ask(self, n: int) -> list[Arch]:
        if not self.queue:
            self.queue = self._next_generation()
        proposals, self.queue = self.queue[:n], self.queue[n:]
        return proposals

    def _next_generation(self) -> list[Arch]:
        self.generation += 1
        if self.generation == 0:
            return [self.space.sample(self.rng) for _ in range(self.population_size)]
        self.pool = self._parents(self.pool)
        parents = [arch for arch, _ in self.pool]

        def pick() -> Arch:
            return parents[int(self.rng.integers(len(parents)))]

        children = [self.space.mutate(pick(), self.rng) for _ in range(self.mutations)]
        children += [self.space.crossover(pick(), pick(), self.rng) for _ in range(self.population_size - self.mutations)]
        return children

    def _parents(self, pool: list[tuple[Arch, float]]) -> list[tuple[Arch, float]]:
        """The ``parents_size`` fittest of a pool (the earlier on ties, as a stable sort keeps them)."""
        order = np.argsort(-np.array([f for _, f in pool]), kind="stable")[: self.parents_size]
        return [pool[i] for i in order]

    def tell(self, trials: Sequence[Trial]) -> None:
        self.pool.extend((t.arch, self.fitness(t)) for t in trials)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "generation": self.generation,
                "queue": [self.space.to_str(a) for a in self.queue]}

    def load_state_dict(self, state: dict[str, Any], history: Sequence[Trial]) -> None:
        """The pool is replayed from ``history``: generation g holds trials ``g * population_size`` onwards."""
        super().load_state_dict(state, history)
        self.generation = int(state["generation"])
        self.queue = [self.space.from_str(s) for s in state["queue"]]
        self.pool = []
        for start in range(0, len(history), self.population_size):
            if start:
                self.pool = self._parents(self.pool)
            self.tell(history[start:start + self.population_size])
