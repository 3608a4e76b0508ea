"""Predictor-guided evolution (NPENAS, Wei et al. 2022), the search protocol of NAR-Former §2.3.

The first ``initial_samples`` proposals are distinct uniform samples. After that the search runs in
rounds: fit the predictor on every architecture evaluated so far (graph -> first objective), mutate
each of the ``num_parents`` best evaluated architectures into ``pool_size / num_parents`` distinct new
children (never an architecture already evaluated or proposed; children the predictor passes over may
return in later pools), predict the whole pool in one batch,
and propose the ``evaluations_per_round`` children the predictor ranks best. With the NAR-Former
settings (100 evaluations, 10 initial, 10 per round) that is 9 rounds of predictor training.

Any predictor of the registry works; the searcher fits it afresh each round (predictors re-initialise
from their own seed on ``fit``), so a resumed search refits to the same model and proposes the same pool.

Exploration beyond the seeds' protocol (whose settings are the defaults):

- ``ensemble: K`` fits K copies of the predictor, each on a bootstrap resample of the evaluated architectures,
  and ``acquisition`` (:mod:`nassearch.searchers.acquisition`: ``mean``, ``ucb``, ``ei``, ``its``) turns their
  predictions into the scores the pool is ranked by (BANANAS' ensemble + independent Thompson sampling).
- ``mutation_edits`` lists how many mutations make a child (cycled over the children: ``[1, 2, 3]`` gives
  children at one, two and three edits from their parent), and ``random_fraction`` of the pool are fresh
  uniform samples, so a search whose early best is a local optimum can still leave it.

- ``refit_steps: N`` (neural predictors) warm-starts the loop: the first round trains each network as its
  settings say, every later round continues it for about N optimiser steps on all data instead of training a
  new one, so a round's fit costs N steps, not a whole training. A resumed run replays the fits.

The seconds spent fitting are reported per seed (``predictor_fit_s``, and ``fit_s_per_round``).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from nassearch.graph import ArchGraph
from nassearch.predictors.base import Predictor
from nassearch.predictors.neural import NeuralPredictor
from nassearch.searchers.acquisition import ACQUISITIONS, Acquisition, acquisition_scores
from nassearch.searchers.base import HistorySearcher
from nassearch.trial import Trial
from nassearch.spaces.base import Arch

log = logging.getLogger(__name__)

#: Attempts per wanted child (or initial sample) before giving up on finding a new architecture.
MAX_DRAWS = 100


class PredictorGuidedEvolution(HistorySearcher):
    """Rounds of fit predictor -> mutate the best -> predict the pool -> evaluate the predicted best."""

    name = "predictor_evolution"

    def __init__(self, space, objectives, seed: int, predictor: Predictor | None = None, initial_samples: int = 10,
                 num_parents: int = 10, pool_size: int = 100, evaluations_per_round: int = 10, ensemble: int = 1,
                 acquisition: Acquisition = "mean", ucb_kappa: float = 1.0, mutation_edits: list[int] | None = None,
                 random_fraction: float = 0.0, refit_steps: int | None = None) -> None:
        super().__init__(space, objectives, seed)
        if predictor is None:
            raise ValueError("needs a predictor: add a `predictor:` section to the config, e.g. predictor: "
                             "{name: narformer}")
        if initial_samples < 2:
            raise ValueError(f"initial_samples must be >= 2 (the predictor needs data), got {initial_samples}")
        if num_parents < 1 or evaluations_per_round < 1:
            raise ValueError("num_parents and evaluations_per_round must be >= 1")
        if pool_size < max(num_parents, evaluations_per_round):
            raise ValueError(f"pool_size ({pool_size}) must be >= num_parents ({num_parents}) and "
                             f">= evaluations_per_round ({evaluations_per_round})")
        edits = [1] if mutation_edits is None else list(mutation_edits)
        if ensemble < 1 or not edits or min(edits) < 1:
            raise ValueError("ensemble must be >= 1 and mutation_edits a non-empty list of counts >= 1")
        if acquisition not in ACQUISITIONS:
            raise ValueError(f"acquisition must be one of {', '.join(ACQUISITIONS)}, got {acquisition!r}")
        if acquisition != "mean" and ensemble < 2:
            raise ValueError(f"acquisition {acquisition} needs the spread of an ensemble: set ensemble >= 2")
        if not 0 <= random_fraction <= 1 or ucb_kappa < 0:
            raise ValueError("random_fraction must lie in [0, 1] and ucb_kappa be >= 0")
        if refit_steps is not None and (refit_steps < 1 or not isinstance(predictor, NeuralPredictor)
                                        or not predictor.supports_refit):
            raise ValueError(f"refit_steps warm-starts the networks of neural predictors (mlp, gcn, narformer, "
                             f"narformer_v2; not tnasp or the two-stage gcn) and must be >= 1; got {refit_steps} "
                             f"with {type(predictor).__name__}: remove refit_steps (the predictor then refits from "
                             "scratch every round)")
        self.seed, self.refit_steps = seed, refit_steps
        self.fit_sizes: list[int] = []  # warm starts: how many trials each round's fit saw, for the resume replay
        self.predictor = predictor
        self.members = [predictor] + [copy.deepcopy(predictor) for _ in range(ensemble - 1)]
        self.acquisition, self.ucb_kappa = acquisition, ucb_kappa
        self.mutation_edits, self.random_fraction = edits, random_fraction
        self.fit_s = 0.0
        self.initial_samples = initial_samples
        self.num_parents = num_parents
        self.pool_size = pool_size
        self.evaluations_per_round = evaluations_per_round
        self.random_asked = 0
        self.rounds = 0
        self.graphs: list[ArchGraph] = []  # the encoding of each architecture in ``evaluated``, made once
        self.scores: list[float] = []  # the fitness of each, as a flat list (a round's arrays are built from it)

    def ask(self, n: int) -> list[Arch]:
        proposals = []
        while len(proposals) < n:
            if self.random_asked < self.initial_samples:
                self.random_asked += 1
                proposals.append(self._new_sample())
                continue
            if not self.queue:
                self.queue = self._round()
            proposals.append(self.queue.pop(0))
        return proposals

    def _new_sample(self) -> Arch:
        for _ in range(MAX_DRAWS):
            arch = self.space.sample(self.rng)
            if self.space.key(arch) not in self.seen:
                break
        self.seen.add(self.space.key(arch))
        return arch

    def tell(self, trials: Sequence[Trial]) -> None:
        super().tell(trials)
        self.graphs.extend(self.space.encode(t.arch) for t in trials)
        self.scores.extend(f for _, f in self.evaluated[len(self.scores):])

    def _round(self) -> list[Arch]:
        """One round: fit, build the pool, return the candidates the acquisition scores best (best first)."""
        fitness = np.asarray(self.scores)
        finite = np.flatnonzero(np.isfinite(fitness))
        if len(finite) < 2:
            raise RuntimeError("predictor_evolution needs at least 2 successful evaluations before its first round")
        start = time.perf_counter()
        self._fit(finite, fitness)
        fitted = time.perf_counter() - start
        self.fit_s += fitted
        pool = self._pool(fitness, finite)
        if not pool:
            pool = [self._new_sample()]
        graphs = [self.space.encode(a) for a in pool]
        predictions = np.stack([member.predict(graphs) for member in self.members])
        scores = acquisition_scores(self.acquisition, predictions, fitness[finite].max(), self.rng, self.ucb_kappa)
        order = np.argsort(-scores, kind="stable")[: self.evaluations_per_round]
        self.rounds += 1
        log.info("round %d: fit %d predictor(s) on %d architectures in %.2f s, pool %d, best score %.4g",
                 self.rounds, len(self.members), len(finite), fitted, len(pool), scores[order[0]])
        chosen = [pool[i] for i in order]
        self.seen.update(self.space.key(a) for a in chosen)
        return chosen

    def _fit(self, finite: np.ndarray, fitness: np.ndarray) -> None:
        """Fit the predictor on every successful evaluation; an ensemble's members each on a bootstrap resample."""
        if self.refit_steps is not None:
            self._warm_fit(len(self.fit_sizes), finite, fitness)
            self.fit_sizes.append(len(fitness))
            return
        if len(self.members) == 1:
            graphs = self.graphs if len(finite) == len(fitness) else [self.graphs[i] for i in finite]
            self.predictor.fit(list(graphs), fitness[finite])
            return
        for member in self.members:
            sample = self.rng.choice(finite, size=len(finite), replace=True)
            member.fit([self.graphs[i] for i in sample], fitness[sample])

    def _warm_fit(self, round_index: int, finite: np.ndarray, fitness: np.ndarray) -> None:
        """``refit_steps``: the first round fits each member from scratch, later rounds continue its network for
        ``refit_steps`` steps. Bootstrap resamples and batch orders come from (seed, round, member), not from the
        searcher's generator, so that ``load_state_dict`` can replay the fits and a resumed run stays exact."""
        for k, member in enumerate(self.members):
            sample = (finite if len(self.members) == 1 else
                      np.random.default_rng([self.seed, round_index, k]).choice(finite, size=len(finite)))
            graphs = [self.graphs[i] for i in sample]
            if round_index == 0:
                member.fit(graphs, fitness[sample])
            else:
                member.refit(graphs, fitness[sample], self.refit_steps, seed=member.seed + round_index)

    def _pool(self, fitness: np.ndarray, finite: np.ndarray) -> list[Arch]:
        """The round's candidates: mutations of the ``num_parents`` best evaluated architectures, and
        ``random_fraction`` of the pool as fresh uniform samples."""
        fresh = round(self.random_fraction * self.pool_size)
        best = finite[np.argsort(-fitness[finite], kind="stable")[: self.num_parents]]  # earliest first on ties
        pool = self._mutation_pool([self.evaluated[i][0] for i in best], self.pool_size - fresh)
        self.fill_with_samples(pool, MAX_DRAWS * fresh)
        return pool

    def fill_with_samples(self, pool: list[Arch], draws: int) -> None:
        """Append distinct uniform samples not yet evaluated, proposed or in ``pool`` until it holds ``pool_size``
        architectures or ``draws`` samples were drawn."""
        keys = {self.space.key(a) for a in pool}
        for _ in range(draws):
            if len(pool) == self.pool_size:
                break
            arch = self.space.sample(self.rng)
            key = self.space.key(arch)
            if key not in self.seen and key not in keys:
                keys.add(key)
                pool.append(arch)

    def _mutation_pool(self, parents: Sequence[Arch], size: int) -> list[Arch]:
        """Up to ``size`` distinct new children, as many of each parent, each ``mutation_edits[i]`` mutations
        away from it (the counts cycled over a parent's children)."""
        per_parent = -(-size // len(parents))
        pool: list[Arch] = []
        keys: set[str] = set()
        for parent in parents:
            children = 0
            for draw in range(MAX_DRAWS * per_parent):
                if children == per_parent or len(pool) == size:
                    break
                child = parent
                for _ in range(self.mutation_edits[draw % len(self.mutation_edits)]):
                    child = self.space.mutate(child, self.rng)
                key = self.space.key(child)
                if key not in self.seen and key not in keys:
                    keys.add(key)
                    pool.append(child)
                    children += 1
        return pool

    def timings(self) -> dict[str, float]:
        return {"predictor_fit_s": self.fit_s, "fit_s_per_round": self.fit_s / max(self.rounds, 1)}

    def state_dict(self) -> dict[str, Any]:
        # fit_sizes grows by one int per round (not per trial): the warm-start replay needs it
        return {**super().state_dict(), "random_asked": self.random_asked, "rounds": self.rounds,
                "fit_s": self.fit_s, "fit_sizes": self.fit_sizes}

    def load_state_dict(self, state: dict[str, Any], history: Sequence[Trial]) -> None:
        super().load_state_dict(state, history)
        self.graphs = [self.space.encode(t.arch) for t in history]
        self.scores = [f for _, f in self.evaluated]
        self.random_asked = int(state["random_asked"])
        self.rounds = int(state["rounds"])
        self.fit_s = float(state.get("fit_s", 0.0))
        self.fit_sizes = [int(size) for size in state.get("fit_sizes", [])]
        if self.refit_steps is not None:  # rebuild the warm-started networks fit by fit
            for round_index, size in enumerate(self.fit_sizes):
                fitness = np.asarray(self.scores[:size])
                self._warm_fit(round_index, np.flatnonzero(np.isfinite(fitness)), fitness)
