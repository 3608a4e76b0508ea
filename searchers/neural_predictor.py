"""Neural Predictor search (Wen et al., ECCV 2020; seed 003): train a predictor on N random architectures,
predict a large candidate pool, and evaluate the K it ranks best.

The first ``initial_samples`` proposals (N) are distinct uniform samples. The predictor (the paper's GCN by
default: ``predictor: {name: gcn}``) is then fitted on every architecture evaluated so far, it predicts a
pool of candidates never evaluated, and the ``evaluations_per_round`` (K) it ranks best are evaluated, best
first. The pool is the whole space when it is finite and holds at most ``pool_size`` architectures (NB201:
all 15,625; the paper predicts all of NAS-Bench-101), else ``pool_size`` distinct uniform samples (the
ProxylessNAS space). With K at least the budget left after N this is the paper's one-stage search; a
smaller K refits after every K evaluations on everything evaluated so far (rounds). The fit-predict-rank
round is predictor-guided evolution's (``predictor_evolution``), with this pool instead of mutations.
"""

from __future__ import annotations

import numpy as np

from nassearch.predictors.base import Predictor
from nassearch.protocols import Enumerable
from nassearch.searchers.predictor_evolution import MAX_DRAWS, PredictorGuidedEvolution
from nassearch.spaces.base import Arch


class NeuralPredictorSearch(PredictorGuidedEvolution):
    """N random evaluations, then rounds of fit predictor -> predict a pool -> evaluate the predicted top K."""

    name = "neural_predictor"

    def __init__(self, space, objectives, seed: int, predictor: Predictor | None = None, initial_samples: int = 172,
                 evaluations_per_round: int = 1000, pool_size: int = 100_000) -> None:
        super().__init__(space, objectives, seed, predictor=predictor, initial_samples=initial_samples,
                         num_parents=1, pool_size=pool_size, evaluations_per_round=evaluations_per_round)

    def _pool(self, fitness: np.ndarray, finite: np.ndarray) -> list[Arch]:
        """Every architecture not yet evaluated or proposed when the space is finite and small enough, else
        ``pool_size`` distinct new uniform samples."""
        if isinstance(self.space, Enumerable) and (self.space.size() or np.inf) <= self.pool_size:
            return [a for a in self.space.enumerate() if self.space.key(a) not in self.seen]
        pool: list[Arch] = []
        self.fill_with_samples(pool, MAX_DRAWS * self.pool_size)
        return pool
