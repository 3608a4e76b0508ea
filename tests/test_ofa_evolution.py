"""OFA's evolutionary search: generations of parents (top parent_ratio), mutated and crossed-over children;
bounds keep infeasible children out of the parents; exact resume mid-generation."""

import json

import numpy as np
import pytest

import nassearch
from nassearch.errors import ConfigError
from nassearch.objectives import Objective
from nassearch.searchers.ofa_evolution import OFAEvolution
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
