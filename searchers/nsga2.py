"""NSGA-II (Deb et al. 2002) on pymoo's ask/tell interface, with the space's own variation operators.

pymoo runs the algorithm (binary tournament on rank and crowding, rank-and-crowding survival); the
architectures live as Python objects in pymoo's ``X`` (one ``dtype=object`` column), and the pymoo
operators below delegate to the space: ``sample``, ``crossover`` and ``mutate`` draw from the searcher's
``rng``, duplicates are recognised by ``space.key`` (also against every architecture proposed before).

Objectives are minimised by pymoo: ``mode: min`` metrics as they are, ``mode: max`` ones negated. An
objective's ``bound`` becomes an inequality constraint ``G <= 0``. Failed trials and missing metrics get
the value ``WORST`` on every objective (and so violate every bound).

NSGA-II proposes whole generations: ``ask(n)`` hands out the current generation ``n`` at a time and asks
pymoo for the next one only when every member of the current one has been told, so a batch never spans
two generations (the last batch of a generation may be smaller than ``n``).

Predictor-assisted NSGA-II (``predictor`` + ``prescreen: K``, issue #19): from the second generation on, pymoo's
mating breeds K times the offspring it needs; one copy of the predictor per objective, fitted on every told trial
(graph -> the objective in minimisation form), predicts them all in one batch, and pymoo's rank-and-crowding
survival on the predicted values (bounds as predicted constraints) keeps the generation's offspring. Only those
are evaluated, so the budget still counts real queries. ``prescreen: 1`` (the default) is plain NSGA-II.

Resume: pymoo's algorithm object is not JSON, so ``state_dict`` keeps how many proposals were handed out
and the random state at construction; the told objective values come from the told trials.
``load_state_dict`` rebuilds the algorithm from the same seed and replays every generation's ask/tell, which
is deterministic and so restores exactly the state (random generators included) the original searcher had.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2 as PymooNSGA2
from pymoo.core.crossover import Crossover
from pymoo.core.duplicate import DuplicateElimination
from pymoo.core.evaluator import Evaluator
from pymoo.core.mutation import Mutation
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.core.sampling import Sampling
from pymoo.operators.survival.rank_and_crowding import RankAndCrowding
from pymoo.problems.static import StaticProblem

from nassearch.graph import ArchGraph
from nassearch.objectives import Objective
from nassearch.predictors.base import Predictor
from nassearch.protocols import SupportsCrossover
from nassearch.searchers.base import Searcher
from nassearch.trial import Trial
from nassearch.spaces.base import Arch, SearchSpace

#: How many architectures' keys the duplicate check remembers before starting afresh.
CACHED_KEYS = 10_000
#: Minimisation-form value of every objective of a failed trial (finite, so crowding distances stay defined).
WORST = 1e30


def minimisation_form(metrics: Sequence[dict[str, float]], objectives: Sequence[Objective]) -> np.ndarray:
    """(n, len(objectives)) values to minimise: ``min`` metrics as they are, ``max`` ones negated;
    missing or NaN metrics become ``WORST``."""
    values = -np.array([[o.signed(m) for o in objectives] for m in metrics], dtype=float).reshape(-1, len(objectives))
    return np.where(np.isfinite(values), values, WORST)


def _column(archs: Sequence[Arch]) -> np.ndarray:
    """Architectures as pymoo's X: an object array (n, 1) (filled item by item so tuples stay whole)."""
    X = np.empty((len(archs), 1), dtype=object)
    for i, arch in enumerate(archs):
        X[i, 0] = arch
    return X


class SpaceSampling(Sampling):
    """Uniform samples from the space."""

    def __init__(self, space: SearchSpace, rng: np.random.Generator) -> None:
        super().__init__()
        self.space, self.rng = space, rng

    def _do(self, problem, n_samples, *args, **kwargs):
        return _column([self.space.sample(self.rng) for _ in range(n_samples)])


class SpaceCrossover(Crossover):
    """One child per pair of parents by ``space.crossover``."""

    def __init__(self, space: SearchSpace, rng: np.random.Generator, prob: float) -> None:
        super().__init__(n_parents=2, n_offsprings=1, prob=prob)
        self.space, self.rng = space, rng

    def _do(self, problem, X, *args, **kwargs):
        children = [self.space.crossover(a, b, self.rng) for a, b in zip(X[0, :, 0], X[1, :, 0])]
        return _column(children)[None]


class SpaceMutation(Mutation):
    """``space.mutate`` of each individual (pymoo applies it with probability ``prob``)."""

    def __init__(self, space: SearchSpace, rng: np.random.Generator, prob: float) -> None:
        super().__init__(prob=prob)
        self.space, self.rng = space, rng

    def _do(self, problem, X, *args, **kwargs):
        return _column([self.space.mutate(arch, self.rng) for arch in X[:, 0]])


class KeyDuplicateElimination(DuplicateElimination):
    """Duplicates by ``space.key``: within a population, against ``other``, and against ``seen`` keys."""

    def __init__(self, space: SearchSpace, seen: set[str]) -> None:
        super().__init__()
        self.space, self.seen = space, seen
        self._keys: dict[int, tuple[Arch, str]] = {}  # id -> (arch, key): pymoo asks about the same objects often

    def _key(self, arch: Arch) -> str:
        """``space.key(arch)``, computed once per architecture object (the entry keeps the object alive, so its
        id is not reused; the cache is emptied when it outgrows a few generations)."""
        entry = self._keys.get(id(arch))
        if entry is None:
            if len(self._keys) > CACHED_KEYS:
                self._keys.clear()
            entry = self._keys[id(arch)] = (arch, self.space.key(arch))
        return entry[1]

    def _do(self, pop, other, is_duplicate):
        keys = [self._key(arch) for arch in pop.get("X")[:, 0]]
        if other is not None:
            known = {self._key(arch) for arch in other.get("X")[:, 0]}
            return np.array([key in known for key in keys])
        first = set()
        for i, key in enumerate(keys):
            is_duplicate[i] = key in first or key in self.seen
            first.add(key)
        return is_duplicate


class PrescreenedNSGA2(PymooNSGA2):
    """pymoo's NSGA-II whose offspring are the ``n_offsprings`` that ``screen(candidates, n)`` picks (as indices)
    from ``factor`` times as many bred by the usual mating."""

    def __init__(self, screen: Callable[[list[Arch], int], np.ndarray], factor: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.screen, self.factor = screen, factor

    def _infill(self):
        offspring = self.mating.do(self.problem, self.pop, self.n_offsprings * self.factor, algorithm=self,
                                   random_state=self.random_state)
        if len(offspring) == 0:
            self.termination.force_termination = True
            return None
        return offspring[self.screen(list(offspring.get("X")[:, 0]), self.n_offsprings)]


class NSGA2(Searcher):
    """NSGA-II over the config's objectives (population 50, crossover 0.9, mutation 1.0), optionally with
    offspring pre-screened by a predictor (``prescreen``)."""

    name = "nsga2"
    requires_space = (SupportsCrossover,)

    def __init__(self, space, objectives, seed: int, population_size: int = 50, crossover_prob: float = 0.9,
                 mutation_prob: float = 1.0, predictor: Predictor | None = None, prescreen: int = 1) -> None:
        super().__init__(space, objectives, seed)
        if population_size < 2:
            raise ValueError(f"population_size must be >= 2, got {population_size}")
        if prescreen < 1:
            raise ValueError(f"prescreen must be >= 1 (candidates bred per offspring evaluated), got {prescreen}")
        if prescreen > 1 and predictor is None:
            raise ValueError("prescreen > 1 needs a predictor: add a `predictor:` section to the config, e.g. "
                             "predictor: {name: xgb}")
        for key, prob in (("crossover_prob", crossover_prob), ("mutation_prob", mutation_prob)):
            if not 0.0 <= prob <= 1.0:
                raise ValueError(f"{key} must lie in [0, 1], got {prob}")
        self.population_size = population_size
        self.crossover_prob = crossover_prob
        self.mutation_prob = mutation_prob
        self.predictor, self.prescreen = predictor, prescreen
        screened = prescreen > 1  # a predictor with prescreen 1 is never fitted: nothing is encoded or kept for it
        self.predictors = [predictor] + [copy.deepcopy(predictor) for _ in self.objectives[1:]] if screened else []
        self.fit_s, self.fits = 0.0, 0
        self.bounds = [(j, o.bound if o.mode == "min" else -o.bound)
                       for j, o in enumerate(self.objectives) if o.bound is not None]
        self._initial_rng = self.rng.bit_generator.state
        self._reset()

    def _reset(self) -> None:
        """A fresh pymoo algorithm, the random state of construction, nothing proposed or told."""
        self.rng.bit_generator.state = self._initial_rng
        self.seen: set[str] = set()
        self.generation: Population | None = None  # asked from pymoo, not yet told back
        self.handed = 0  # members of ``generation`` handed out by ask
        self.num_told = 0  # trials told so far
        self.pending: list[list[float]] = []  # those of the current generation
        self.graphs: list[ArchGraph] = []  # encodings of the told architectures (for the predictors)
        self.told: list[list[float]] = []  # their minimisation-form values
        self.problem = Problem(n_var=1, n_obj=len(self.objectives), n_ieq_constr=len(self.bounds), vtype=object)
        self.algorithm = PrescreenedNSGA2(
            screen=self._screen, factor=self.prescreen,
            pop_size=self.population_size,
            sampling=SpaceSampling(self.space, self.rng),
            crossover=SpaceCrossover(self.space, self.rng, self.crossover_prob),
            mutation=SpaceMutation(self.space, self.rng, self.mutation_prob),
            eliminate_duplicates=KeyDuplicateElimination(self.space, self.seen),
        )
        self.algorithm.setup(self.problem, seed=int(self.rng.integers(2 ** 31)), verbose=False)

    def _constraints(self, F: np.ndarray) -> np.ndarray | None:
        return np.stack([F[:, j] - bound for j, bound in self.bounds], axis=1) if self.bounds else None

    def _screen(self, candidates: list[Arch], n: int) -> np.ndarray:
        """Indices of the ``n`` candidates that rank-and-crowding survival keeps on predicted objective values."""
        if self.prescreen == 1 or len(candidates) <= n:
            return np.arange(min(n, len(candidates)))
        start = time.perf_counter()
        F = np.asarray(self.told)
        graphs = [self.space.encode(arch) for arch in candidates]
        predicted = np.empty((len(candidates), len(self.objectives)))
        for j, predictor in enumerate(self.predictors):
            ok = np.flatnonzero(F[:, j] < WORST)
            predictor.fit([self.graphs[i] for i in ok], F[ok, j])
            predicted[:, j] = predictor.predict(graphs)
        self.fit_s += time.perf_counter() - start
        self.fits += 1
        pool = Population.new(X=_column(candidates), index=np.arange(len(candidates)))
        Evaluator().eval(StaticProblem(self.problem, F=predicted, G=self._constraints(predicted)), pool)
        kept = RankAndCrowding().do(self.problem, pool, n_survive=n, random_state=self.algorithm.random_state)
        return np.sort(kept.get("index").astype(int))

    def _next_generation(self) -> None:
        generation = self.algorithm.ask()
        if generation is None or len(generation) == 0:
            raise RuntimeError("NSGA-II could not produce a new unique architecture (the space is exhausted)")
        self.generation, self.handed = generation, 0
        self.seen.update(self.space.key(arch) for arch in generation.get("X")[:, 0])

    def ask(self, n: int) -> list[Arch]:
        if self.generation is None:
            self._next_generation()
        if self.handed == len(self.generation):
            raise RuntimeError("nsga2: tell the trials of the current generation before asking for more")
        archs = list(self.generation.get("X")[self.handed:self.handed + n, 0])
        self.handed += len(archs)
        return archs

    def tell(self, trials: Sequence[Trial]) -> None:
        F = minimisation_form([t.metrics if t.ok else {} for t in trials], self.objectives)
        self._tell_values(F.tolist())

    def _tell_values(self, rows: list[list[float]]) -> None:
        if self.generation is None or len(self.pending) + len(rows) > self.handed:
            raise RuntimeError("nsga2: told more trials than were asked")
        self.num_told += len(rows)
        self.pending.extend(rows)
        if len(self.pending) == len(self.generation):
            F = np.array(self.pending)
            if self.predictors:
                self.graphs.extend(self.space.encode(arch) for arch in self.generation.get("X")[:, 0])
                self.told.extend(self.pending)
            Evaluator().eval(StaticProblem(self.problem, F=F, G=self._constraints(F)), self.generation)
            self.algorithm.tell(infills=self.generation)
            self.generation, self.handed, self.pending = None, 0, []

    @property
    def asked(self) -> int:
        """How many architectures ``ask`` has handed out so far."""
        return self.num_told - len(self.pending) + self.handed

    def timings(self) -> dict[str, float]:
        if not self.predictors:
            return {}
        return {"predictor_fit_s": self.fit_s, "fit_s_per_round": self.fit_s / max(self.fits, 1)}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "initial_rng": self._initial_rng, "asked": self.asked, "fit_s": self.fit_s,
                "fits": self.fits}

    def load_state_dict(self, state: dict[str, Any], history: Sequence[Trial]) -> None:
        """Rebuild the algorithm from the seed and replay every ask/tell (see the module docstring)."""
        self._initial_rng = state["initial_rng"]
        self._reset()
        told = minimisation_form([t.metrics if t.ok else {} for t in history], self.objectives).tolist()
        asked = int(state["asked"])
        while self.asked < asked:
            archs = self.ask(asked - self.asked)
            rows = told[self.num_told:self.num_told + len(archs)]
            if rows:
                self._tell_values(rows)
        if self.rng.bit_generator.state != state["rng"]:
            raise ValueError("nsga2 state: replaying the told trials did not reproduce the saved random state")
        # the replay refitted the predictors; the search's fitting time is what the saved run spent, not the replay
        self.fit_s, self.fits = float(state.get("fit_s", 0.0)), int(state.get("fits", 0))
