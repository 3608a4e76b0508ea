"""NAR search by sampling with tier statistics (Guo et al., 2022, §3.3, Alg. 2, App. B).

Phase 1: propose ``train_size + val_size`` distinct uniform architectures; once all are evaluated, fit the
NAR predictor on the first ``train_size`` (validation: the rest). Phase 2, one iteration per
``top_k`` proposals: draw ``sample_size`` candidates, a ``random_proportion`` of them uniformly from the
space and the rest built from the tier statistics (``mode="statistics"``; ``mode="random"`` draws them
all uniformly), classify them with the ranker, keep those predicted in the top tier and propose the
``top_k`` with the highest scores (topped up by score from the other tiers when fewer are top-tier;
never an architecture already proposed).

Statistics sampling: iteration ``t`` uses the statistics of training batch ``t mod batches``. Alg. 2
(``select_distribution``) picks, for FLOPs and params separately, the top tier's histogram, or only its
interval (uniform over the bins from its first to its last non-empty bin) when the top tier holds fewer
than ``batch_factor * batch size`` architectures or KL(top || tier i) < ``kl_threshold`` for some
i >= ``tier_index`` (1-based). A constraint is one bin drawn from the selected distribution for each of
FLOPs and params, reused for ``reuse`` candidates; a candidate is built node by node (NB101: each node
after the input connects from a random earlier node and takes an operation drawn from the top tier's
operation distribution, then 3 more random edges; NB201: an operation per edge from that distribution)
and rejected unless its FLOPs and params (``space.cost_batch``) lie in the constraint's bins. After
``max_trials * reuse`` draws without enough accepted candidates a fresh constraint is drawn. A space
restricted to a benchmark table (NB101 with ``restrict_to_table``: 11,000 of 423,624 cells) draws its
candidates uniformly among the table's cells within the constraint instead (the table's costs are computed
once): node-by-node construction almost never lands on a table cell.

Query counting: the paper counts only search-phase queries (Table 8: 50 iterations x top-5 = 250) and
treats the 1,000 + 256 (NB201) or 4,236 + 1,024 (NB101) training architectures as a separately
evaluated data set. Here those architectures are evaluated through the runner like any other
proposal, so they are trials and count towards ``budget.evaluations``: a paper-settings run needs
``train_size + val_size + iterations * top_k`` evaluations. The search-phase trials are those with
index >= ``search_start`` (= ``train_size + val_size``); run summaries, ranks and curves cover only them.

State: everything but the fitted ranker is saved; on resume the ranker is refit from its seed on the same
data (deterministic), so a resumed search proposes exactly what the original would have.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
from scipy.stats import entropy

from nassearch.errors import SearchError
from nassearch.predictors.nar import BatchStatistics, NARPredictor
from nassearch.protocols import PredictsTiers, check_requirements
from nassearch.searchers.base import HistorySearcher
from nassearch.trial import Trial
from nassearch.spaces.base import Arch, SearchSpace
from nassearch.spaces.nasbench101_cell import INPUT, MAX_EDGES, MAX_VERTICES, OPS as NB101_OPS, OUTPUT, NB101Cell
from nassearch.spaces.nasbench201 import NUM_EDGES, OPS as NB201_OPS

log = logging.getLogger(__name__)

#: Constraint redraws per candidate before the sampler gives up (the statistics admit no architecture).
MAX_CONSTRAINTS = 100
KL_EPSILON = 1e-8


def select_distribution(histograms: np.ndarray, top_count: int, batch_size: int, batch_factor: float,
                        kl_threshold: float, tier_index: int) -> np.ndarray:
    """Alg. 2: the probabilities over bins to draw a constraint from: the top tier's histogram, or uniform
    over its interval (first to last non-empty bin) when it is too small or too like a low tier's.

    ``histograms`` (T, bins) for one quantity; ``tier_index`` is 1-based (β).
    """
    top = histograms[0]
    if top.sum() <= 0:
        raise ValueError("the top tier's histogram is empty")
    top = top / top.sum()
    for i in range(tier_index - 1, len(histograms)):
        other = histograms[i] / max(histograms[i].sum(), KL_EPSILON)
        divergence = entropy(top + KL_EPSILON, other + KL_EPSILON)
        if top_count < batch_factor * batch_size or divergence < kl_threshold:
            filled = np.nonzero(top)[0]
            interval = np.zeros_like(top)
            interval[filled[0]:filled[-1] + 1] = 1.0
            return interval / interval.sum()
    return top


def _nb201_candidate(space: SearchSpace, op_probs: np.ndarray, rng: np.random.Generator) -> Arch:
    return tuple(int(i) for i in rng.choice(len(NB201_OPS), size=NUM_EDGES, p=op_probs))


def _nb101_candidate(space: SearchSpace, op_probs: np.ndarray, rng: np.random.Generator) -> Arch:
    matrix = np.zeros((MAX_VERTICES, MAX_VERTICES), dtype=np.int64)
    for v in range(1, MAX_VERTICES):
        matrix[int(rng.integers(v)), v] = 1
    for _ in range(MAX_EDGES - (MAX_VERTICES - 1)):
        src, dst = sorted(rng.choice(MAX_VERTICES, size=2, replace=False))
        matrix[src, dst] = 1
    interior = rng.choice(len(NB101_OPS), size=MAX_VERTICES - 2, p=op_probs)
    return NB101Cell.from_arrays(matrix, (INPUT, *(NB101_OPS[i] for i in interior), OUTPUT))


#: Space name -> (operations the statistics choose among, node-by-node candidate builder).
CANDIDATE_BUILDERS: dict[str, tuple[tuple[str, ...], Callable[[SearchSpace, np.ndarray, np.random.Generator], Arch]]] = {
    "nasbench101": (NB101_OPS, _nb101_candidate),
    "nasbench201": (NB201_OPS, _nb201_candidate),
}


def _inside(bounds: tuple[np.ndarray, np.ndarray], flops: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Which architectures' FLOPs and params lie within ``bounds`` ((low, high) each)."""
    return (bounds[0][0] <= flops) & (flops <= bounds[0][1]) & (bounds[1][0] <= params) & (params <= bounds[1][1])


class NARSampling(HistorySearcher):
    """Fit the NAR on a random training set, then sample, classify, score and evaluate the top-k."""

    name = "nar_sampling"
    requires_predictor = (PredictsTiers,)

    def __init__(self, space, objectives, seed: int, predictor: NARPredictor | None = None,
                 mode: Literal["statistics", "random"] = "statistics", train_size: int = 1000, val_size: int = 256,
                 iterations: int = 50, sample_size: int = 256, top_k: int = 5, random_proportion: float = 0.5,
                 reuse: int = 25, kl_threshold: float = 2.5, batch_factor: float = 0.1, tier_index: int = 4,
                 force_interval: bool = False, max_trials: int = 100) -> None:
        super().__init__(space, objectives, seed)
        check_requirements(type(self), space, predictor)
        if mode not in ("statistics", "random"):
            raise ValueError(f"mode must be 'statistics' or 'random', got {mode!r}")
        if mode == "statistics" and space.name not in CANDIDATE_BUILDERS:
            raise ValueError(f"nar_sampling mode 'statistics' builds candidates for {sorted(CANDIDATE_BUILDERS)}, "
                             f"not {space.name!r}; use mode: random")
        if train_size < predictor.tiers or val_size < 0 or iterations < 1 or reuse < 1 or max_trials < 1:
            raise ValueError("train_size must be >= the predictor's tiers, val_size >= 0, iterations, reuse and "
                             "max_trials >= 1")
        if not 1 <= top_k <= sample_size:
            raise ValueError(f"top_k ({top_k}) must lie in 1..sample_size ({sample_size})")
        if not 0 <= random_proportion <= 1 or not 0 <= batch_factor <= 1 or not kl_threshold >= 0:
            raise ValueError("random_proportion and batch_factor must lie in [0, 1], kl_threshold >= 0")
        if space.size() is not None and train_size + val_size > space.size():
            raise ValueError(f"train_size + val_size ({train_size + val_size:,}) distinct architectures exceed the "
                             f"{space.size():,} of space {space.name}")
        if not 2 <= tier_index <= predictor.tiers:
            raise ValueError(f"tier_index must lie in 2..{predictor.tiers} (the predictor's tiers), got {tier_index}")
        self.predictor = predictor
        self.mode, self.train_size, self.val_size, self.iterations = mode, train_size, val_size, iterations
        self.sample_size, self.top_k, self.random_proportion, self.reuse = sample_size, top_k, random_proportion, reuse
        self.kl_threshold, self.batch_factor, self.tier_index = kl_threshold, batch_factor, tier_index
        self.force_interval, self.max_trials = force_interval, max_trials
        self.initial: list[Arch] = []
        self.iteration = 0
        self.fitted = False
        self.fit_s = 0.0
        self._table: tuple[list[Arch], np.ndarray, np.ndarray] | None = None  # cells, params, flops

    @classmethod
    def training_evaluations(cls, settings: dict[str, Any]) -> int:
        return settings["train_size"] + settings["val_size"]

    @property
    def search_start(self) -> int:
        return self.training_evaluations({"train_size": self.train_size, "val_size": self.val_size})

    # phases ---------------------------------------------------------------------------------

    def ask(self, n: int) -> list[Arch]:
        """Up to ``n`` proposals; fewer when the training set ends, as its evaluations must come first."""
        proposals = []
        while len(proposals) < n:
            if len(self.initial) < self.train_size + self.val_size:
                proposals.append(self._initial_sample())
                continue
            if proposals and not self.fitted:
                break
            if not self.queue:
                self._fit()
                self.queue = self._iterate()
                if not self.queue:
                    raise SearchError(f"nar_sampling: iteration {self.iteration} found no architecture it has not "
                                      f"proposed before (the {self.space.name} space is used up); lower the budget")
            proposals.append(self.queue.pop(0))
        return proposals

    def _initial_sample(self) -> Arch:
        while True:
            arch = self.space.sample(self.rng)
            key = self.space.key(arch)
            if key not in self.seen:
                self.seen.add(key)
                self.initial.append(arch)
                return arch

    def _fit(self) -> None:
        if self.fitted:
            return
        initial = self.evaluated[: self.train_size + self.val_size]
        if len(initial) < self.train_size + self.val_size:
            raise RuntimeError("nar_sampling needs its training architectures evaluated before the search phase")
        graphs = [self.space.encode(a) for a, _ in initial]
        y = np.array([f for _, f in initial])
        val = (graphs[self.train_size:], y[self.train_size:]) if self.val_size else None
        start = time.perf_counter()
        self.predictor.fit(graphs[: self.train_size], y[: self.train_size], val)
        self.fit_s = time.perf_counter() - start
        self.fitted = True

    def _iterate(self) -> list[Arch]:
        """One search iteration: sample a batch, keep the predicted top tier, return its top-k by score."""
        n_random = self.sample_size if self.mode == "random" else round(self.random_proportion * self.sample_size)
        candidates = [self.space.sample(self.rng) for _ in range(n_random)]
        candidates += self._statistics_candidates(self.sample_size - n_random)
        keys = [self.space.key(a) for a in candidates]
        fresh = [i for i, k in enumerate(keys) if k not in self.seen and k not in keys[:i]]
        graphs = [self.space.encode(candidates[i]) for i in fresh]
        scores = self.predictor.predict(graphs)
        top_tier = (np.argmax(self.predictor.predict_tiers(graphs), axis=1) == 0
                    if self.predictor.capabilities.predict_tiers else np.ones(len(fresh), dtype=bool))
        order = np.lexsort((-scores, ~top_tier))[: self.top_k]  # top tier first, then by score
        chosen = [candidates[fresh[i]] for i in order]
        self.seen.update(keys[fresh[i]] for i in order)
        self.iteration += 1
        log.info("iteration %d: %d fresh candidates, %d in the top tier, best score %.4g", self.iteration,
                 len(fresh), int(top_tier.sum()), scores[order[0]] if len(order) else float("nan"))
        return chosen

    # statistics sampling --------------------------------------------------------------------

    def _constraint_probabilities(self, batch: BatchStatistics) -> tuple[np.ndarray, np.ndarray]:
        threshold = self.kl_threshold if not self.force_interval else np.inf
        return tuple(select_distribution(h, int(batch.tier_counts[0]), batch.size, self.batch_factor, threshold,
                                         self.tier_index) for h in (batch.flops_hist, batch.params_hist))

    def _statistics_candidates(self, n: int) -> list[Arch]:
        if n == 0:
            return []
        statistics = self.predictor.tier_statistics
        batch = statistics.batches[self.iteration % len(statistics.batches)]
        names, build = CANDIDATE_BUILDERS[self.space.name]
        distribution = statistics.op_distribution(0)
        op_probs = np.array([distribution.get(name, 0.0) for name in names])
        op_probs = op_probs / op_probs.sum() if op_probs.sum() > 0 else np.full(len(names), 1 / len(names))
        flops_p, params_p = self._constraint_probabilities(batch)
        accepted: list[Arch] = []
        for _ in range(MAX_CONSTRAINTS * -(-n // self.reuse)):
            if len(accepted) == n:
                return accepted
            flops_bin, params_bin = (int(self.rng.choice(len(p), p=p)) for p in (flops_p, params_p))
            bounds = (batch.flops_edges[flops_bin:flops_bin + 2], batch.params_edges[params_bin:params_bin + 2])
            accepted += self._constrained(build, op_probs, bounds, min(self.reuse, n - len(accepted)))
        raise RuntimeError(f"nar_sampling found no {self.space.name} architecture within the constraints of the "
                           f"tier statistics after {MAX_CONSTRAINTS} constraint draws per {self.reuse} candidates")

    def _constrained(self, build, op_probs: np.ndarray, bounds: tuple[np.ndarray, np.ndarray],
                     wanted: int) -> list[Arch]:
        """Up to ``wanted`` candidates whose FLOPs and params lie within ``bounds`` ((low, high) each)."""
        if getattr(self.space, "restrict_to_table", False):
            return self._constrained_from_table(bounds, wanted)
        accepted: list[Arch] = []
        for _ in range(self.max_trials):
            drawn = [build(self.space, op_probs, self.rng) for _ in range(wanted)]
            params, flops = self.space.cost_batch(drawn)
            accepted += [a for a, ok in zip(drawn, _inside(bounds, flops, params)) if ok]
            if len(accepted) >= wanted:
                return accepted[:wanted]
        return accepted

    def _constrained_from_table(self, bounds: tuple[np.ndarray, np.ndarray], wanted: int) -> list[Arch]:
        """A table-restricted space: ``wanted`` uniform draws among the table's cells within ``bounds`` (the
        distribution of uniform table draws rejected outside them, without the rejections)."""
        if self._table is None:
            cells = list(self.space.enumerate())
            self._table = (cells, *self.space.cost_batch(cells))
        cells, params, flops = self._table
        inside = np.flatnonzero(_inside(bounds, flops, params))
        return [cells[i] for i in self.rng.choice(inside, size=wanted)] if len(inside) else []

    # learning and state ---------------------------------------------------------------------

    def timings(self) -> dict[str, float]:
        return {"predictor_fit_s": self.fit_s}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "iteration": self.iteration, "fitted": self.fitted, "fit_s": self.fit_s}

    def load_state_dict(self, state: dict[str, Any], history: Sequence[Trial]) -> None:
        """The training set is the first ``train_size + val_size`` told trials."""
        super().load_state_dict(state, history)
        self.iteration = int(state["iteration"])
        self.initial = [t.arch for t in history[: self.train_size + self.val_size]]
        self.fitted = False
        if state["fitted"]:
            self._fit()  # deterministic from the predictor's seed and the same data
        self.fit_s = float(state.get("fit_s", self.fit_s))  # the original fit's time, not the refit's
