"""The evolutionary search of Once-for-All (Cai et al., ICLR 2020; its ``EvolutionFinder``), and the search of
NAR-Former §2.4: the same evolution with a trained predictor as the fitness.

Generation 0 is ``population_size`` uniform samples. Each later generation keeps the ``parent_ratio`` best
of the previous generation's pool as parents and adds ``population_size`` children:
``mutation_ratio * population_size`` of them mutate a parent drawn uniformly (the space's ``mutate``: OFA's
per-gene mutation for ``ofa_mbv3``), the rest cross two parents drawn uniformly (``crossover``). The next
pool is the parents plus their children.

Constraints are objective ``bound`` s. With an ``efficiency`` evaluator (OFA's efficiency predictor, e.g.
``{name: note10_latency}``: a lookup table, not a query) every sample and child is redrawn until the
efficiency evaluator puts it within the bounds it can answer, as OFA does (a mutation is retried on the same
parent, a crossover on the same pair). Without one, every proposal is evaluated and an infeasible child
spends a query and gets the worst fitness, so it is never a parent.

Two modes:

- **evaluated fitness** (no ``predictor``): every generation is evaluated by the run's evaluator; ``ask``
  stops at the end of a generation, so the next one is selected from a complete pool.
- **predicted fitness** (a ``predictor`` and ``initial_samples`` N): the first N proposals are uniform samples
  (the predictor's training set; bounds do not apply to them, and run summaries leave them out). The
  predictor is then fitted on them (graph -> first objective) and the whole evolution, ``generations``
  generations (OFA's ``max_time_budget``, 500), runs on its predictions, with the efficiency evaluator for the
  bounds. The rest of the budget evaluates the distinct architectures of the last pool that were not
  training samples, best predicted first: a budget of N + 1 is OFA's search, which returns the best one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from nassearch.predictors.base import Predictor
from nassearch.protocols import SupportsCrossover
from nassearch.searchers.base import Searcher
from nassearch.spaces.base import Arch
from nassearch.trial import Trial

log = logging.getLogger(__name__)

#: Draws (samples, mutations of one parent, crossovers of one pair) before a bound is declared unreachable.
MAX_FEASIBLE_DRAWS = 10_000


class OFAEvolution(Searcher):
    """OFA's evolution: top ``parent_ratio`` survive, children by mutation and crossover (100, 0.25, 0.5);
    optionally on a predictor's fitness (``predictor``, ``initial_samples``, ``generations``) and with OFA's
    redraw of candidates outside the bounds (``efficiency``: an evaluator config)."""

    name = "ofa_evolution"
    requires_space = (SupportsCrossover,)

    def __init__(self, space, objectives, seed: int, population_size: int = 100, parent_ratio: float = 0.25,
                 mutation_ratio: float = 0.5, predictor: Predictor | None = None, initial_samples: int = 0,
                 generations: int = 500, efficiency: dict[str, Any] | None = None,
                 build_evaluator: Callable[[dict[str, Any]], Any] | None = None) -> None:
        super().__init__(space, objectives, seed)
        if population_size < 2:
            raise ValueError(f"population_size must be >= 2, got {population_size}")
        if not 0 < parent_ratio <= 1 or not 0 <= mutation_ratio <= 1:
            raise ValueError("parent_ratio must lie in (0, 1] and mutation_ratio in [0, 1]")
        if predictor is not None and initial_samples < 2:
            raise ValueError(f"with a predictor, initial_samples (its training set) must be >= 2, got {initial_samples}")
        if predictor is None and initial_samples:
            raise ValueError("initial_samples trains a predictor: add a `predictor:` section to the config "
                             "(e.g. predictor: {name: narformer}) or drop initial_samples")
        if generations < 1:
            raise ValueError(f"generations must be >= 1, got {generations}")
        self.population_size = population_size
        self.parents_size = max(1, round(parent_ratio * population_size))
        self.mutations = round(mutation_ratio * population_size)
        self.predictor = predictor
        self.initial_samples = initial_samples
        self.generations = generations
        self.efficiency = self._efficiency_evaluator(efficiency, build_evaluator)
        self.pool: list[tuple[Arch, float]] = []  # this generation's parents, then its told children
        self.queue: list[Arch] = []  # proposals not asked yet
        self.generation = -1
        self.random_asked = 0
        self.training: list[Trial] = []  # predicted mode: the told initial samples
        self.evolution_rng: dict[str, Any] | None = None  # predicted mode: the generator's state before evolving
        self._timings = {"predictor_fit_s": 0.0, "evolution_s": 0.0}

    def _efficiency_evaluator(self, spec: dict[str, Any] | None, build: Callable | None) -> Any:
        """The built efficiency evaluator (None without ``efficiency``); every bounded objective must be one of
        its metrics in predicted mode (nothing else can check it there)."""
        if spec is None:
            if self.predictor is not None and any(o.bound is not None for o in self.objectives):
                raise ValueError("with a predictor, bounds are checked by an efficiency evaluator: add efficiency: "
                                 "{name: ...} (e.g. note10_latency) to the searcher")
            return None
        if build is None:
            raise ValueError("efficiency needs the engine to build it (run through nassearch run / nassearch.search)")
        evaluator = build(spec)
        unanswered = [o.metric for o in self.objectives if o.bound is not None and o.metric not in evaluator.metrics]
        if self.predictor is not None and unanswered:
            raise ValueError(f"the efficiency evaluator {spec.get('name')!r} answers {', '.join(evaluator.metrics)}, "
                             f"not the bounded {', '.join(unanswered)}")
        if not any(o.bound is not None and o.metric in evaluator.metrics for o in self.objectives):
            raise ValueError(f"efficiency: no objective has a bound on a metric of {spec.get('name')!r} "
                             f"({', '.join(evaluator.metrics)}); add one, e.g. {{metric: {evaluator.metrics[0]}, "
                             "mode: min, bound: 25}")
        return evaluator

    @property
    def search_start(self) -> int:
        return self.initial_samples

    @classmethod
    def training_evaluations(cls, settings: dict[str, Any]) -> int:
        return int(settings.get("initial_samples", 0))

    def timings(self) -> dict[str, float]:
        return dict(self._timings) if self.predictor is not None else {}

    # ------------------------------------------------------------------------------------------ proposals

    def ask(self, n: int) -> list[Arch]:
        if self.predictor is not None:
            return self._ask_predicted(n)
        if not self.queue:
            self.queue = self._next_generation()
        proposals, self.queue = self.queue[:n], self.queue[n:]
        return proposals

    def _ask_predicted(self, n: int) -> list[Arch]:
        proposals = []
        while len(proposals) < n and self.random_asked < self.initial_samples:
            self.random_asked += 1
            proposals.append(self.space.sample(self.rng))
        if len(proposals) < n and self.evolution_rng is None and len(self.training) == self.initial_samples:
            self.evolution_rng = self.rng.bit_generator.state
            self.queue = self._evolve_on_predictions()
        if len(proposals) < n and self.evolution_rng is not None:
            if not self.queue:
                raise RuntimeError(f"{self.name}: the budget after the {self.initial_samples} initial samples is "
                                   "larger than the last predicted pool; give at most initial_samples + "
                                   f"{self.population_size} evaluations")
            taken, self.queue = self.queue[:n - len(proposals)], self.queue[n - len(proposals):]
            proposals += taken
        return proposals

    def _next_generation(self) -> list[Arch]:
        self.generation += 1
        if self.generation == 0:
            return [self._feasible(lambda: self.space.sample(self.rng)) for _ in range(self.population_size)]
        self.pool = self._parents(self.pool)
        return self._children([arch for arch, _ in self.pool])

    def _children(self, parents: Sequence[Arch]) -> list[Arch]:
        """``population_size`` children of ``parents``: mutations first, then crossovers (each within the
        bounds when there is an efficiency evaluator)."""
        def pick() -> Arch:
            return parents[int(self.rng.integers(len(parents)))]

        children = []
        for _ in range(self.mutations):
            parent = pick()
            children.append(self._feasible(lambda: self.space.mutate(parent, self.rng)))
        for _ in range(self.population_size - self.mutations):
            first, second = pick(), pick()
            children.append(self._feasible(lambda: self.space.crossover(first, second, self.rng)))
        return children

    def _feasible(self, propose: Callable[[], Arch]) -> Arch:
        """``propose()`` again until the efficiency evaluator puts it within the bounds (once without one)."""
        if self.efficiency is None:
            return propose()
        for _ in range(MAX_FEASIBLE_DRAWS):
            arch = propose()
            metrics = self.efficiency.evaluate_batch([arch])[0].metrics
            if all(o.within_bound(metrics) for o in self.objectives if o.metric in metrics):
                return arch
        bounds = ", ".join(f"{o.metric} {'<=' if o.mode == 'min' else '>='} {o.bound:g}"
                           for o in self.objectives if o.bound is not None)
        raise RuntimeError(f"{self.name}: no candidate within {bounds} in {MAX_FEASIBLE_DRAWS} draws; "
                           "loosen the bound")

    def _parents(self, pool: list[tuple[Arch, float]]) -> list[tuple[Arch, float]]:
        """The ``parents_size`` fittest of a pool."""
        return _ranked(pool)[: self.parents_size]

    def _evolve_on_predictions(self) -> list[Arch]:
        """Predicted mode: fit the predictor on the initial samples, run ``generations`` generations on its
        predictions and return the distinct architectures of the last pool that were not training samples,
        best predicted first."""
        start = time.perf_counter()
        ok = [t for t in self.training if t.ok and np.isfinite(self.objective.signed(t.metrics))]
        if len(ok) < 2:
            raise RuntimeError(f"{self.name} needs at least 2 successful initial evaluations to fit its predictor")
        self.predictor.fit([self.space.encode(t.arch) for t in ok],
                           np.array([self.objective.signed(t.metrics) for t in ok]))
        fitted = time.perf_counter()
        pool: list[tuple[Arch, float]] = []
        for generation in range(self.generations + 1):
            if generation == 0:
                candidates = [self._feasible(lambda: self.space.sample(self.rng)) for _ in range(self.population_size)]
            else:
                pool = self._parents(pool)
                candidates = self._children([arch for arch, _ in pool])
            predicted = self.predictor.predict([self.space.encode(a) for a in candidates])
            pool += list(zip(candidates, predicted.tolist()))
        ranked, keys = [], {self.space.key(t.arch) for t in self.training}
        for arch, _ in _ranked(pool):
            if self.space.key(arch) not in keys:
                keys.add(self.space.key(arch))
                ranked.append(arch)
        self._timings = {"predictor_fit_s": fitted - start, "evolution_s": time.perf_counter() - fitted}
        log.info("%s: predictor fitted on %d architectures in %.1f s; %d generations on its predictions in %.1f s",
                 self.name, len(ok), self._timings["predictor_fit_s"], self.generations, self._timings["evolution_s"])
        return ranked

    # ------------------------------------------------------------------------------------------- learning

    def tell(self, trials: Sequence[Trial]) -> None:
        if self.predictor is not None:
            self.training.extend(trials[: self.initial_samples - len(self.training)])
            return
        self.pool.extend((t.arch, self.fitness(t)) for t in trials)

    def state_dict(self) -> dict[str, Any]:
        """Predicted mode keeps the generator's state from before the evolution instead of the ranked pool, so
        the state does not grow with it; evaluated mode keeps the generation's unasked proposals."""
        if self.predictor is not None:
            return {**super().state_dict(), "random_asked": self.random_asked, "evolution_rng": self.evolution_rng}
        return {**super().state_dict(), "generation": self.generation,
                "queue": [self.space.to_str(a) for a in self.queue]}

    def load_state_dict(self, state: dict[str, Any], history: Sequence[Trial]) -> None:
        """Predicted mode: the training set is the first ``initial_samples`` of ``history``; once evolved, the
        predictor is refitted and the evolution rerun from the saved generator state (both deterministic), less
        the proposals ``history`` already holds. Evaluated mode: the pool is replayed from ``history``
        (generation g holds trials ``g * population_size`` onwards)."""
        super().load_state_dict(state, history)
        self.pool, self.training = [], []
        if self.predictor is not None:
            self.random_asked = int(state["random_asked"])
            self.evolution_rng = state["evolution_rng"]
            self.tell(history)
            if self.evolution_rng is not None:
                self.rng.bit_generator.state = self.evolution_rng
                self.queue = self._evolve_on_predictions()[len(history) - self.initial_samples:]
                self.rng.bit_generator.state = state["rng"]
            return
        self.generation = int(state["generation"])
        self.queue = [self.space.from_str(s) for s in state["queue"]]
        for start in range(0, len(history), self.population_size):
            if start:
                self.pool = self._parents(self.pool)
            self.tell(history[start:start + self.population_size])


def _ranked(pool: list[tuple[Arch, float]]) -> list[tuple[Arch, float]]:
    """A pool fittest first (the earlier on ties, as a stable sort keeps them)."""
    order = np.argsort(-np.array([f for _, f in pool]), kind="stable")
    return [pool[i] for i in order]
