"""Predictor-guided evolution: initial samples, rounds of mutation pools ranked by the predictor, resume."""

import json

import numpy as np
import pytest

from nassearch.objectives import Objective
from nassearch.predictors.xgb import XGBPredictor
from nassearch.searchers.predictor_evolution import PredictorGuidedEvolution
from nassearch.trial import Trial
from nassearch.searchers.random_search import RandomSearch
from tests.test_searchers import ask_and_tell, fitness_of, history_of

OBJECTIVES = [Objective("val_acc")]


class OracleOfFitness:
    """A 'predictor' that knows ``fitness_of`` exactly (reads the NB201 op of each edge node)."""

    def __init__(self) -> None:
        self.fits: list[int] = []

    def fit(self, graphs, y, val=None):
        self.fits.append(len(graphs))
        return self

    def predict(self, graphs):
        return np.array([fitness_of(tuple(int(op) - 1 for op in g.ops[1:-1])) for g in graphs])


def make_searcher(space, seed=0, predictor=None, **kwargs):
    return PredictorGuidedEvolution(space, OBJECTIVES, seed, predictor=predictor or OracleOfFitness(), **kwargs)


def test_initial_samples_are_distinct_random_then_rounds_fit_on_everything(nb201_space, make_trial):
    oracle = OracleOfFitness()
    searcher = make_searcher(nb201_space, seed=3, predictor=oracle, initial_samples=10, evaluations_per_round=10)
    asked = ask_and_tell(searcher, make_trial, steps=5, batch=10)
    assert len({nb201_space.key(a) for a in asked}) == 50
    assert oracle.fits == [10, 20, 30, 40]  # one fit per round, on all evaluated so far
    assert searcher.rounds == 4


def test_each_round_proposes_the_predicted_best_mutants_of_the_top_parents(nb201_space, make_trial, hamming):
    searcher = make_searcher(nb201_space, seed=1, initial_samples=20, num_parents=5, pool_size=50,
                             evaluations_per_round=10)
    first = ask_and_tell(searcher, make_trial, steps=1, batch=20)
    parents = sorted(first, key=fitness_of, reverse=True)[:5]
    chosen = searcher.ask(10)
    assert all(min(hamming(c, p) for p in parents) == 1 for c in chosen)
    scores = [fitness_of(c) for c in chosen]
    assert scores == sorted(scores, reverse=True)
    # the oracle's top 10 of a 50-child pool beat the parents' neighbourhood average
    assert np.mean(scores) > np.mean([fitness_of(nb201_space.mutate(p, np.random.default_rng(i)))
                                      for i, p in enumerate(parents * 20)])


def test_never_proposes_an_architecture_twice(nb201_space, make_trial):
    searcher = make_searcher(nb201_space, seed=2, initial_samples=10, pool_size=30, evaluations_per_round=7)
    asked = ask_and_tell(searcher, make_trial, steps=30, batch=3)
    assert len({nb201_space.key(a) for a in asked}) == len(asked) == 90


def test_state_round_trips_mid_round(nb201_space, make_trial):
    original = make_searcher(nb201_space, seed=4, initial_samples=10, evaluations_per_round=10)
    before = ask_and_tell(original, make_trial, steps=13, batch=1)  # 3 proposals into the first round
    restored = make_searcher(nb201_space, seed=99, initial_samples=10, evaluations_per_round=10)
    restored.load_state_dict(json.loads(json.dumps(original.state_dict())), history_of(before, make_trial))
    assert restored.seen == original.seen and restored.evaluated == original.evaluated
    assert ask_and_tell(restored, make_trial, steps=25, batch=2) == ask_and_tell(original, make_trial, steps=25,
                                                                                  batch=2)


class NoisyOracle(OracleOfFitness):
    """The oracle plus noise that depends on the training set, so ensemble members (bootstrap resamples) differ."""

    def fit(self, graphs, y, val=None):
        super().fit(graphs, y, val)
        self.offset = float(np.mean(y))
        return self

    def predict(self, graphs):
        return super().predict(graphs) + self.offset


def test_mixed_pools_hold_children_at_every_edit_distance_and_fresh_samples(nb201_space, make_trial, hamming):
    searcher = make_searcher(nb201_space, seed=5, initial_samples=20, num_parents=5, pool_size=60,
                             mutation_edits=[1, 2, 3], random_fraction=0.25)
    ask_and_tell(searcher, make_trial, steps=1, batch=20)
    fitness = np.asarray(searcher.scores)
    parents = [searcher.evaluated[i][0] for i in np.argsort(-fitness, kind="stable")[:5]]
    pool = searcher._pool(fitness, np.arange(20))
    assert len(pool) == 60 and len({nb201_space.key(a) for a in pool}) == 60
    mutants, fresh = pool[:45], pool[45:]
    distances = [hamming(child, parents[i // 9]) for i, child in enumerate(mutants)]
    assert {1, 2, 3} <= set(distances) and max(distances) <= 3  # each child within its edit count of its parent
    assert not any(nb201_space.key(a) in searcher.seen for a in pool)
    assert np.mean([min(hamming(a, p) for p in parents) for a in fresh]) > 2  # uniform samples, not neighbours


def test_an_ensemble_fits_every_member_on_a_bootstrap_and_its_acquisition_ranks(nb201_space, make_trial):
    oracle = NoisyOracle()
    searcher = make_searcher(nb201_space, seed=6, predictor=oracle, initial_samples=10, ensemble=4,
                             acquisition="ucb", ucb_kappa=2.0)
    ask_and_tell(searcher, make_trial, steps=3, batch=10)
    assert len(searcher.members) == 4 and all(m is not oracle for m in searcher.members[1:])
    assert [m.fits for m in searcher.members] == [[10, 20]] * 4  # every member refitted each round
    assert len({m.offset for m in searcher.members}) > 1  # on different resamples
    timings = searcher.timings()
    assert timings["predictor_fit_s"] > 0 and timings["fit_s_per_round"] == timings["predictor_fit_s"] / 2
    original = make_searcher(nb201_space, seed=6, predictor=NoisyOracle(), initial_samples=10, ensemble=3,
                             acquisition="its", mutation_edits=[1, 2], random_fraction=0.1)
    before = ask_and_tell(original, make_trial, steps=15, batch=1)
    restored = make_searcher(nb201_space, seed=0, predictor=NoisyOracle(), initial_samples=10, ensemble=3,
                             acquisition="its", mutation_edits=[1, 2], random_fraction=0.1)
    restored.load_state_dict(json.loads(json.dumps(original.state_dict())), history_of(before, make_trial))
    assert ask_and_tell(restored, make_trial, steps=12, batch=3) == ask_and_tell(original, make_trial, steps=12,
                                                                                  batch=3)


def test_settings_are_checked(nb201_space):
    with pytest.raises(ValueError, match="acquisition ucb needs the spread of an ensemble"):
        make_searcher(nb201_space, acquisition="ucb")
    with pytest.raises(ValueError, match="mutation_edits a non-empty list"):
        make_searcher(nb201_space, mutation_edits=[0])
    with pytest.raises(ValueError, match="random_fraction must lie in"):
        make_searcher(nb201_space, random_fraction=1.5)
    with pytest.raises(ValueError, match="needs a predictor"):
        PredictorGuidedEvolution(nb201_space, OBJECTIVES, 0, predictor=None)
    with pytest.raises(ValueError, match="pool_size"):
        make_searcher(nb201_space, pool_size=5, evaluations_per_round=10)
    with pytest.raises(ValueError, match="initial_samples"):
        make_searcher(nb201_space, initial_samples=1)


@pytest.mark.slow
def test_xgb_guided_evolution_beats_random_search_on_nb201(nb201_space, nb201_evaluator):
    """100 queries of the real NB201 table, 5 seeds: median best val_acc of predictor-guided > random.

    The median, because a local search can stall in a basin of the 12-epoch table (seed 2 here does:
    80.2 after 100 queries) while the other seeds find 83.8-84.9.
    """
    def best_of(searcher) -> float:
        best = -np.inf
        for _ in range(10):
            archs = searcher.ask(10)
            results = nb201_evaluator.evaluate_batch(archs)
            searcher.tell([Trial(i, a, str(a), r.metrics) for i, (a, r) in enumerate(zip(archs, results))])
            best = max(best, *(r.metrics["val_acc"] for r in results))
        return best

    guided = [best_of(make_searcher(nb201_space, seed, XGBPredictor(seed=seed))) for seed in range(5)]
    random = [best_of(RandomSearch(nb201_space, OBJECTIVES, seed)) for seed in range(5)]
    assert np.median(guided) > np.median(random) + 0.5, (guided, random)



def test_summaries_report_fit_time_per_round_and_seed_wall_time(data_dir):
    import nassearch

    result = nassearch.search("nasbench201", {"name": "nb201_tabular", "dataset": "cifar10"},
                              {"name": "predictor_evolution", "ensemble": 2, "acquisition": "its", "pool_size": 50,
                               "mutation_edits": [1, 2], "random_fraction": 0.2},
                              predictor={"name": "xgb", "n_estimators": 20}, budget=30, seed=0,
                              data_dir=str(data_dir))
    summary = result.summary
    assert summary["fit_s_per_round"] == pytest.approx(summary["predictor_fit_s"] / 2)  # 10 initial, 2 rounds of 10
    assert summary["seed_wall_s"] >= summary["searcher_s"] >= summary["predictor_fit_s"] > 0


def tiny_mlp(seed=0):
    from nassearch.predictors.mlp import MLPPredictor

    return MLPPredictor(seed=seed, epochs=20, hidden=[16], batch_size=10, lr=1e-2, device="cpu")


def test_refit_steps_trains_once_then_continues_the_same_networks(nb201_space, make_trial, monkeypatch):
    from nassearch.predictors import training

    steps = []
    real_train = training.train

    def counting_train(model, inputs, targets, settings, seed, *args, **kwargs):
        steps.append((id(model), training.epochs_for(settings, len(targets)) * -(-len(targets) // settings.batch_size)))
        return real_train(model, inputs, targets, settings, seed, *args, **kwargs)

    monkeypatch.setattr("nassearch.predictors.neural.train", counting_train)
    from nassearch.predictors.mlp import MLPPredictor

    made = []
    real_make = MLPPredictor.make_network
    monkeypatch.setattr(MLPPredictor, "make_network", lambda self, inputs: made.append(1) or real_make(self, inputs))
    searcher = make_searcher(nb201_space, seed=5, predictor=tiny_mlp(), initial_samples=10, evaluations_per_round=10,
                             ensemble=2, acquisition="its", refit_steps=6)
    ask_and_tell(searcher, make_trial, steps=4, batch=10)  # 3 rounds: fits at 10, 20, 30 evaluated
    assert searcher.fit_sizes == [10, 20, 30]
    first, later = steps[:2], steps[2:]
    assert [s for _, s in first] == [20, 20] and all(s <= 6 for _, s in later) and len(later) == 4
    assert len(made) == 2  # one network per member, made by the first fit and continued by every refit


def test_refit_steps_resume_replays_the_fits(nb201_space, make_trial):
    def run(restore_after):
        original = make_searcher(nb201_space, seed=6, predictor=tiny_mlp(), initial_samples=10,
                                 evaluations_per_round=10, ensemble=2, acquisition="its", refit_steps=5)
        before = ask_and_tell(original, make_trial, steps=restore_after, batch=5)
        if restore_after is None:
            return before
        restored = make_searcher(nb201_space, seed=6, predictor=tiny_mlp(), initial_samples=10,
                                 evaluations_per_round=10, ensemble=2, acquisition="its", refit_steps=5)
        restored.load_state_dict(json.loads(json.dumps(original.state_dict())), history_of(before, make_trial))
        return before + ask_and_tell(restored, make_trial, steps=12 - restore_after, batch=5)

    uninterrupted = ask_and_tell(make_searcher(nb201_space, seed=6, predictor=tiny_mlp(), initial_samples=10,
                                               evaluations_per_round=10, ensemble=2, acquisition="its",
                                               refit_steps=5), make_trial, steps=12, batch=5)
    assert run(7) == uninterrupted  # restored after three rounds' fits, in the middle of a round


def test_refit_steps_needs_a_warm_startable_neural_predictor(nb201_space):
    from nassearch.predictors.gcn import GCNPredictor

    with pytest.raises(ValueError, match="refit_steps warm-starts"):
        make_searcher(nb201_space, predictor=XGBPredictor(seed=0), refit_steps=10)
    with pytest.raises(ValueError, match="refit_steps warm-starts"):
        make_searcher(nb201_space, predictor=GCNPredictor(seed=0, two_stage=True), refit_steps=10)
    with pytest.raises(ValueError, match="refit_steps warm-starts"):
        make_searcher(nb201_space, predictor=tiny_mlp(), refit_steps=0)
