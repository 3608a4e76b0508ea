"""OFA's evolutionary search: generations of parents (top parent_ratio), mutated and crossed-over children;
bounds keep infeasible children out of the parents; exact resume mid-generation."""

import json

import numpy as np
import pytest

import nassearch
from nassearch.errors import ConfigError
from nassearch.objectives import Objective
from nassearch.searchers.ofa_evolution import OFAEvolution
from nassearch.evaluators.base import Result
from nassearch.trial import Trial
from tests.test_searchers import fitness_of

OBJECTIVES = [Objective("val_acc")]


def run(searcher, space, generations, batch=7, metrics=lambda a: {"val_acc": fitness_of(a)}):
    """Drive the searcher as the runner does; the told trials and each ask's size."""
    told, sizes = [], []
    while len(told) < generations * searcher.population_size:
        archs = searcher.ask(batch)
        sizes.append(len(archs))
        trials = [Trial(len(told) + i, a, space.to_str(a), metrics(a)) for i, a in enumerate(archs)]
        searcher.tell(trials)
        told += trials
    return told, sizes


def test_generations_keep_the_best_quarter_and_breed_from_it_only(nb201_space, hamming):
    searcher = OFAEvolution(nb201_space, OBJECTIVES, 0, population_size=20)
    told, sizes = run(searcher, nb201_space, generations=3)
    assert sizes[:3] == [7, 7, 6]  # an ask never crosses into the next generation
    first = sorted(told[:20], key=lambda t: -t.metrics["val_acc"])[:5]
    parents = [t.arch for t in first]
    children = [t.arch for t in told[20:40]]
    mutants, crossed = children[:10], children[10:]
    assert all(min(hamming(c, p) for p in parents) == 1 for c in mutants)
    assert all(all(any(c[i] == p[i] for p in parents) for i in range(6)) for c in crossed)
    assert searcher.parents_size == 5 and searcher.mutations == 10
    best = [max(t.metrics["val_acc"] for t in told[:g * 20]) for g in (1, 2, 3)]
    assert best == sorted(best) and best[-1] > best[0]


def test_children_outside_a_bound_are_never_parents(nb201_space):
    bounded = [Objective("val_acc"), Objective("params", "min", bound=2.0)]
    searcher = OFAEvolution(nb201_space, bounded, 1, population_size=20)
    costs = {}

    def metrics(arch):
        params = float(arch.count(3))  # a stand-in for a cost: the number of 3x3 convolutions
        costs[nb201_space.to_str(arch)] = params
        return {"val_acc": fitness_of(arch), "params": params}

    run(searcher, nb201_space, generations=2, metrics=metrics)
    searcher.ask(1)  # selects generation 2's parents from generation 1's complete pool
    parents = searcher.pool[:searcher.parents_size]
    assert all(np.isfinite(f) and costs[nb201_space.to_str(a)] <= 2.0 for a, f in parents)
    assert max(costs.values()) > 2.0  # the unbounded fitness (3x3 convolutions) pulls against the bound


def test_a_resumed_search_proposes_what_the_original_did(nb201_space):
    original = OFAEvolution(nb201_space, OBJECTIVES, 2, population_size=12)
    told, _ = run(original, nb201_space, generations=2, batch=5)
    state = json.loads(json.dumps(original.state_dict()))
    resumed = OFAEvolution(nb201_space, OBJECTIVES, 2, population_size=12)
    resumed.load_state_dict(state, [Trial(t.index, nb201_space.from_str(t.arch_str), t.arch_str, t.metrics)
                                    for t in told])
    for _ in range(6):
        a, b = original.ask(5), resumed.ask(5)
        assert [nb201_space.to_str(x) for x in a] == [nb201_space.to_str(x) for x in b]
        trials = [Trial(0, x, nb201_space.to_str(x), {"val_acc": fitness_of(x)}) for x in a]
        original.tell(trials)
        resumed.tell(trials)


@pytest.mark.slow  # loads the NB101 and NB201 tables
def test_it_needs_crossover_and_runs_through_the_api(data_dir):
    with pytest.raises(ConfigError, match="searcher 'ofa_evolution' needs a space with SupportsCrossover"):
        nassearch.search("nasbench101", "nb101_tabular", "ofa_evolution", budget=200, data_dir=str(data_dir))
    result = nassearch.search("nasbench201", "nb201_tabular", {"name": "ofa_evolution", "population_size": 20},
                              budget=100, seed=0, data_dir=str(data_dir))
    assert len(result.trials) == 100 and result.best.metrics["val_acc"] > 80


# ------------------------------------------------------------- OFA's efficiency predictor and predicted fitness


class Conv3Count:
    """A stand-in efficiency evaluator: ``params`` = the number of 3x3 convolutions of an NB201 cell."""

    metrics = ("params",)

    def __init__(self):
        self.calls = 0

    def evaluate_batch(self, archs):
        self.calls += len(archs)
        return [Result({"params": float(a.count(3))}, 1.0, 0.0) for a in archs]


BOUNDED = [Objective("val_acc"), Objective("params", "min", bound=2.0)]


def with_efficiency(space, seed=0, **options):
    efficiency = Conv3Count()
    searcher = OFAEvolution(space, BOUNDED, seed, efficiency={"name": "conv3"}, build_evaluator=lambda spec: efficiency,
                            **options)
    return searcher, efficiency


def test_an_efficiency_evaluator_redraws_every_proposal_outside_the_bounds(nb201_space):
    searcher, efficiency = with_efficiency(nb201_space, population_size=20)
    told, _ = run(searcher, nb201_space, generations=4,
                  metrics=lambda a: {"val_acc": fitness_of(a), "params": float(a.count(3))})
    assert all(t.arch.count(3) <= 2 for t in told)  # no query spent outside the bound
    assert efficiency.calls > len(told)  # uniform cells have 6/5 3x3 convolutions on average: some were redrawn
    assert max(t.metrics["val_acc"] for t in told) > 20  # the bound binds (two 3x3 convolutions score 20+)


def test_on_predictions_it_trains_on_uniform_samples_then_evaluates_the_predicted_best(nb201_space):
    from nassearch.predictors.xgb import XGBPredictor
    searcher, efficiency = with_efficiency(nb201_space, population_size=20, generations=10, initial_samples=40,
                                           predictor=XGBPredictor(0, n_estimators=50))
    assert searcher.search_start == 40
    told, _ = run(searcher, nb201_space, generations=2.4, batch=8)  # 40 samples, then 8 of the predicted best
    training, chosen = told[:40], told[40:]
    assert any(t.arch.count(3) > 2 for t in training)  # the training set ignores the bound
    assert len(chosen) == 8 and all(t.arch.count(3) <= 2 for t in chosen)
    assert {nb201_space.key(t.arch) for t in chosen}.isdisjoint({nb201_space.key(t.arch) for t in training})
    feasible = [fitness_of(t.arch) for t in training if t.arch.count(3) <= 2]
    assert np.mean([fitness_of(t.arch) for t in chosen]) > np.mean(feasible) + 3  # the predictor guided it
    assert searcher.timings()["predictor_fit_s"] > 0 and searcher.timings()["evolution_s"] > 0


def test_a_budget_beyond_the_last_predicted_pool_is_refused_clearly(nb201_space):
    from nassearch.predictors.xgb import XGBPredictor
    searcher = OFAEvolution(nb201_space, OBJECTIVES, 0, population_size=4, generations=2, initial_samples=10,
                            predictor=XGBPredictor(0, n_estimators=5))
    with pytest.raises(RuntimeError, match="larger than the last predicted pool; give at most initial_samples"):
        run(searcher, nb201_space, generations=10, batch=5)


@pytest.mark.parametrize("options, message", [
    ({"initial_samples": 10}, "initial_samples trains a predictor"),
    ({"predictor": "xgb", "initial_samples": 1}, "initial_samples .its training set. must be >= 2"),
    ({"predictor": "xgb", "initial_samples": 10, "bounded": True}, "bounds are checked by an efficiency evaluator"),
    ({"efficiency": {"name": "conv3"}}, "no objective has a bound on a metric of 'conv3'"),
    ({"efficiency": {"name": "conv3"}, "build": False}, "efficiency needs the engine to build it"),
    ({"generations": 0}, "generations must be >= 1"),
])
def test_bad_options_are_refused_clearly(nb201_space, options, message):
    from nassearch.predictors.xgb import XGBPredictor
    options = dict(options)
    objectives = BOUNDED if options.pop("bounded", False) else OBJECTIVES
    if options.get("predictor") == "xgb":
        options["predictor"] = XGBPredictor(0)
    if options.pop("build", True):
        options["build_evaluator"] = lambda spec: Conv3Count()
    with pytest.raises(ValueError, match=message):
        OFAEvolution(nb201_space, objectives, 0, **options)


@pytest.mark.slow  # reads OFA's tables
def test_nar_former_search_protocol_runs_in_the_ofa_space(data_dir):
    """§2.4 through the API: N uniform samples labelled by ofa_accuracy train the predictor, the evolution runs
    on its predictions under a Note10 bound, and the predicted best within the bound is evaluated."""
    objectives = [{"metric": "val_acc"}, {"metric": "latency_ms", "mode": "min", "bound": 25.0}]
    result = nassearch.search(
        "ofa_mbv3", {"name": "ofa_accuracy", "note10_latency": True},
        {"name": "ofa_evolution", "initial_samples": 60, "generations": 5, "population_size": 20,
         "efficiency": {"name": "note10_latency"}},
        objectives=objectives, predictor={"name": "xgb", "n_estimators": 50}, budget=63, seed=0,
        data_dir=str(data_dir))
    assert len(result.all_trials) == 63 and len(result.trials) == 3
    assert all(t.metrics["latency_ms"] <= 25.0 for t in result.trials)
    with pytest.raises(ConfigError, match="searcher.efficiency.name: unknown evaluator 'note10'"):
        nassearch.search("ofa_mbv3", "ofa_accuracy", {"name": "ofa_evolution", "efficiency": {"name": "note10"}},
                         objectives=objectives[:1], budget=5, data_dir=str(data_dir))
