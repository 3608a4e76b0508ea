"""Neural Predictor search: N random architectures, then the predicted best of a whole-space (or random)
pool, best first, in rounds of K; exact resume."""

import numpy as np
import pytest

from nassearch import config as cfg
from nassearch.objectives import Objective
from nassearch.searchers.neural_predictor import NeuralPredictorSearch
from tests.test_predictor_evolution import OracleOfFitness
from tests.test_searchers import ask_and_tell, fitness_of

OBJECTIVES = [Objective("val_acc")]


class FiniteOnlyByName:
    """An NB201 space that hides its ``enumerate`` (so the pool is drawn at random)."""

    def __init__(self, space):
        self._space = space

    def __getattr__(self, name):
        if name == "enumerate":
            raise AttributeError(name)
        return getattr(self._space, name)


@pytest.mark.slow  # predicts all 15,625 NB201 cells each round
def test_after_n_random_it_proposes_the_oracle_best_of_the_whole_space(nb201_space, make_trial):
    oracle = OracleOfFitness()
    searcher = NeuralPredictorSearch(nb201_space, OBJECTIVES, 0, predictor=oracle, initial_samples=20,
                                     evaluations_per_round=30)
    first = ask_and_tell(searcher, make_trial, steps=1, batch=20)
    chosen = searcher.ask(30)
    seen = {nb201_space.key(a) for a in first}
    best_unseen = sorted((fitness_of(a) for a in nb201_space.enumerate() if nb201_space.key(a) not in seen),
                         reverse=True)[:30]
    assert [fitness_of(a) for a in chosen] == best_unseen and oracle.fits == [20]


@pytest.mark.slow  # predicts all 15,625 NB201 cells each round
def test_rounds_of_k_refit_on_everything_evaluated(nb201_space, make_trial):
    oracle = OracleOfFitness()
    searcher = NeuralPredictorSearch(nb201_space, OBJECTIVES, 1, predictor=oracle, initial_samples=10,
                                     evaluations_per_round=5)
    asked = ask_and_tell(searcher, make_trial, steps=6, batch=5)
    assert oracle.fits == [10, 15, 20, 25] and len({nb201_space.key(a) for a in asked}) == 30


def test_a_space_it_cannot_enumerate_gets_a_random_pool_of_new_architectures(nb201_space, make_trial):
    space = FiniteOnlyByName(nb201_space)
    searcher = NeuralPredictorSearch(space, OBJECTIVES, 2, predictor=OracleOfFitness(), initial_samples=10,
                                     evaluations_per_round=10, pool_size=200)
    first = ask_and_tell(searcher, make_trial, steps=1, batch=10)
    pool = searcher._pool(np.asarray(searcher.scores), np.arange(10))
    keys = [nb201_space.key(a) for a in pool]
    assert len(pool) == 200 == len(set(keys)) and not set(keys) & {nb201_space.key(a) for a in first}


def test_it_is_registered_and_needs_a_predictor():
    config = cfg.validate({"name": "t", "space": "nasbench201", "evaluator": {"name": "nb201_tabular"},
                           "searcher": {"name": "neural_predictor", "initial_samples": 100,
                                        "evaluations_per_round": 50},
                           "predictor": {"name": "gcn"}, "budget": {"evaluations": 150},
                           "objectives": [{"metric": "val_acc"}]})
    assert config.searcher == {"name": "neural_predictor", "initial_samples": 100, "evaluations_per_round": 50,
                               "pool_size": 100_000}
    with pytest.raises(ValueError, match="needs a predictor"):
        NeuralPredictorSearch(None, OBJECTIVES, 0)
