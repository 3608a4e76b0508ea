"""Random search and regularized evolution on the NB201 space (synthetic fitness, no tables needed)."""

import json

import numpy as np
import pytest

from nassearch.objectives import Objective
from nassearch.searchers.random_search import RandomSearch
from nassearch.searchers.regularized_evolution import RegularizedEvolution

OBJECTIVES = [Objective("val_acc")]


def fitness_of(arch) -> float:
    """A deterministic synthetic val_acc, distinct for every NB201 arch (base-5 code as a tie-breaker)."""
    code = sum(op * 5 ** i for i, op in enumerate(arch))
    return 10.0 * arch.count(3) + 3.0 * arch.count(2) + code / 15625.0


def ask_and_tell(searcher, make_trial, steps: int, batch: int = 1, start: int = 0) -> list:
    """Run ``steps`` ask/tell rounds of ``batch`` archs with ``fitness_of``; returns every asked arch."""
    asked = []
    for _ in range(steps):
        archs = searcher.ask(batch)
        trials = [make_trial(start + len(asked) + i, {"val_acc": fitness_of(a)}, arch=a) for i, a in enumerate(archs)]
        searcher.tell(trials)
        asked.extend(archs)
    return asked


def json_round_trip(state: dict) -> dict:
    return json.loads(json.dumps(state))


def history_of(asked: list, make_trial) -> list:
    """The trials ``ask_and_tell`` told for ``asked`` (what a resumed searcher is handed)."""
    return [make_trial(i, {"val_acc": fitness_of(a)}, arch=a) for i, a in enumerate(asked)]


# --------------------------------------------------------------------------------------- random search


def test_random_search_never_repeats_within_2000_asks(nb201_space, make_trial):
    searcher = RandomSearch(nb201_space, OBJECTIVES, seed=0)
    asked = ask_and_tell(searcher, make_trial, steps=1500, batch=1)
    for n in (1, 7, 100, 392):
        asked.extend(searcher.ask(n))  # asked but not told: still never repeated
    assert len(asked) == 2000
    assert len({nb201_space.key(a) for a in asked}) == 2000
    assert searcher.seen == {nb201_space.key(a) for a in asked}


def test_random_search_does_not_propose_told_archs(nb201_space, make_trial):
    searcher = RandomSearch(nb201_space, OBJECTIVES, seed=1)
    rng = np.random.default_rng(1)
    told = [nb201_space.sample(rng) for _ in range(20)]  # exactly the searcher's own next 20 draws
    assert len(set(told)) == 20
    searcher.tell([make_trial(i, {"val_acc": 1.0}, arch=a) for i, a in enumerate(told)])
    asked = searcher.ask(50)
    assert not {nb201_space.key(a) for a in asked} & {nb201_space.key(a) for a in told}


def test_random_search_is_deterministic_per_seed(nb201_space):
    assert RandomSearch(nb201_space, OBJECTIVES, 3).ask(20) == RandomSearch(nb201_space, OBJECTIVES, 3).ask(20)
    assert RandomSearch(nb201_space, OBJECTIVES, 3).ask(20) != RandomSearch(nb201_space, OBJECTIVES, 4).ask(20)


def test_random_search_state_round_trips_through_json(nb201_space, make_trial):
    original = RandomSearch(nb201_space, OBJECTIVES, seed=5)
    before = ask_and_tell(original, make_trial, steps=30, batch=3)
    restored = RandomSearch(nb201_space, OBJECTIVES, seed=999)
    restored.load_state_dict(json_round_trip(original.state_dict()), history_of(before, make_trial))
    assert restored.seen == original.seen
    future = original.ask(300)
    assert restored.ask(300) == future
    assert not {nb201_space.key(a) for a in future} & {nb201_space.key(a) for a in before}


# --------------------------------------------------------------------------------------- regularized evolution


def test_first_population_size_asks_are_random_samples(nb201_space, make_trial):
    searcher = RegularizedEvolution(nb201_space, OBJECTIVES, seed=7, population_size=20, sample_size=5)
    rng = np.random.default_rng(7)
    expected = [nb201_space.sample(rng) for _ in range(20)]
    assert ask_and_tell(searcher, make_trial, steps=4, batch=5) == expected
    assert searcher.random_asked == 20


def test_children_are_single_edge_mutations_of_population_members(nb201_space, make_trial, hamming):
    searcher = RegularizedEvolution(nb201_space, OBJECTIVES, seed=8, population_size=20, sample_size=5)
    ask_and_tell(searcher, make_trial, steps=20)
    for step in range(200):
        members = [arch for arch, _ in searcher.population]
        (child,) = searcher.ask(1)
        assert any(hamming(child, m) == 1 for m in members), step  # it may also equal another member
        searcher.tell([make_trial(20 + step, {"val_acc": fitness_of(child)}, arch=child)])
    assert searcher.random_asked == 20


def test_population_is_capped_and_ages_out_the_oldest(nb201_space, make_trial):
    searcher = RegularizedEvolution(nb201_space, OBJECTIVES, seed=9, population_size=10, sample_size=3)
    told = []
    for step in range(35):
        (arch,) = searcher.ask(1)
        searcher.tell([make_trial(step, {"val_acc": fitness_of(arch)}, arch=arch)])
        told.append((arch, fitness_of(arch)))
        assert len(searcher.population) == min(step + 1, 10)
        assert list(searcher.population) == told[-10:]  # the oldest leaves, even when it is the fittest


def test_tournament_of_the_whole_population_mutates_its_best(nb201_space, make_trial, hamming):
    searcher = RegularizedEvolution(nb201_space, OBJECTIVES, seed=10, population_size=15, sample_size=15)
    ask_and_tell(searcher, make_trial, steps=15)
    best = max(searcher.population, key=lambda member: member[1])[0]
    for child in searcher.ask(100):  # no tell: the population stays the same
        assert hamming(child, best) == 1


def test_tournament_winner_is_best_of_its_sample(nb201_space, make_trial, monkeypatch):
    """With sample_size 5 of 20, the parent can never be one of the 4 worst members."""
    searcher = RegularizedEvolution(nb201_space, OBJECTIVES, seed=11, population_size=20, sample_size=5)
    ask_and_tell(searcher, make_trial, steps=20)
    parents = []
    mutate = nb201_space.mutate
    monkeypatch.setattr(nb201_space, "mutate", lambda arch, rng: parents.append(arch) or mutate(arch, rng))
    searcher.ask(500)
    ranked = [arch for arch, _ in sorted(searcher.population, key=lambda member: member[1])]
    position = {arch: i for i, arch in enumerate(ranked)}  # 0 = worst
    positions = [position[p] for p in parents]
    assert len(parents) == 500 and min(positions) >= 4
    assert max(positions) == 19 and len(set(positions)) > 10  # the best wins often, others win too


def test_failed_trials_are_least_fit_and_survive_json(nb201_space, make_trial):
    searcher = RegularizedEvolution(nb201_space, [Objective("params", mode="min")], seed=12,
                                    population_size=3, sample_size=3)
    archs = searcher.ask(3)
    searcher.tell([make_trial(0, {"params": 2.0}, arch=archs[0]), make_trial(1, {}, status="failed", arch=archs[1]),
                   make_trial(2, {"params": 0.5}, arch=archs[2])])
    assert [f for _, f in searcher.population] == [-2.0, -np.inf, -0.5]
    restored = RegularizedEvolution(nb201_space, [Objective("params", mode="min")], seed=0,
                                    population_size=3, sample_size=3)
    restored.load_state_dict(json_round_trip(searcher.state_dict()),
                             [make_trial(0, {"params": 2.0}, arch=archs[0]),
                              make_trial(1, {}, status="failed", arch=archs[1]),
                              make_trial(2, {"params": 0.5}, arch=archs[2])])
    assert list(restored.population) == list(searcher.population)


@pytest.mark.parametrize("told_before_checkpoint", [5, 20, 60])
def test_evolution_state_round_trips_through_json(nb201_space, make_trial, told_before_checkpoint):
    kwargs = dict(population_size=20, sample_size=5)
    original = RegularizedEvolution(nb201_space, OBJECTIVES, seed=13, **kwargs)
    before = ask_and_tell(original, make_trial, steps=told_before_checkpoint)
    restored = RegularizedEvolution(nb201_space, OBJECTIVES, seed=999, **kwargs)
    restored.load_state_dict(json_round_trip(original.state_dict()), history_of(before, make_trial))
    assert list(restored.population) == list(original.population)
    assert restored.random_asked == original.random_asked
    start = told_before_checkpoint
    assert ask_and_tell(restored, make_trial, 40, 2, start) == ask_and_tell(original, make_trial, 40, 2, start)
    assert list(restored.population) == list(original.population)


def test_evolution_is_deterministic_per_seed(nb201_space, make_trial):
    runs = [ask_and_tell(RegularizedEvolution(nb201_space, OBJECTIVES, seed=s, population_size=10, sample_size=3),
                         make_trial, steps=40) for s in (14, 14, 15)]
    assert runs[0] == runs[1] != runs[2]


def test_evolution_improves_on_the_synthetic_fitness(nb201_space, make_trial):
    searcher = RegularizedEvolution(nb201_space, OBJECTIVES, seed=16, population_size=20, sample_size=5)
    asked = ask_and_tell(searcher, make_trial, steps=300)
    assert max(map(fitness_of, asked)) > max(map(fitness_of, asked[:20]))
    assert np.mean([fitness_of(a) for a in asked[-50:]]) > np.mean([fitness_of(a) for a in asked[:20]])


@pytest.mark.parametrize("population_size, sample_size, message", [
    (10, 11, r"sample_size must lie in 1..population_size \(10\), got 11"),
    (10, 0, "sample_size must lie in 1..population_size"),
    (0, 1, "population_size must be >= 1, got 0"),
])
def test_invalid_sizes_are_rejected(nb201_space, population_size, sample_size, message):
    with pytest.raises(ValueError, match=message):
        RegularizedEvolution(nb201_space, OBJECTIVES, seed=0, population_size=population_size,
                             sample_size=sample_size)
