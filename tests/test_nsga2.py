"""NSGA-II on pymoo: operators delegate to the space, duplicates, determinism, exact resume, bounds,
and a small NB201 accuracy/latency search against random search."""

import json
import re

import numpy as np
import pytest

from nassearch.metrics import hypervolume_ratio, pareto_front, worst_point
from nassearch.objectives import Objective
from nassearch.runner import true_front
from nassearch.predictors.xgb import XGBPredictor
from nassearch.searchers.nsga2 import NSGA2
from nassearch.searchers.random_search import RandomSearch

TWO = [Objective("val_acc", "max"), Objective("lat", "min")]


def synthetic(arch) -> dict[str, float]:
    """A conflicting pair: accuracy grows with conv ops (3, 2), latency with ops 3 and 2 too."""
    return {"val_acc": 10.0 * arch.count(3) + 4.0 * arch.count(2) + sum(arch) / 100,
            "lat": 3.0 * arch.count(3) + 1.0 * arch.count(2) + arch[0] / 10}


def run(searcher, make_trial, asks: int, batch: int, metrics=synthetic) -> list:
    """``asks`` ask/tell rounds of ``batch``; returns every asked arch."""
    asked = []
    for _ in range(asks):
        archs = searcher.ask(batch)
        searcher.tell([make_trial(len(asked) + i, metrics(a), arch=a) for i, a in enumerate(archs)])
        asked.extend(archs)
    return asked


def test_offspring_are_mutations_of_the_population(nb201_space, make_trial, hamming):
    searcher = NSGA2(nb201_space, TWO, seed=0, population_size=12, crossover_prob=0.0)
    first = run(searcher, make_trial, 1, 12)
    children = searcher.ask(12)
    assert len(children) == 12
    assert all(min(hamming(c, p) for p in first) == 1 for c in children)


def test_offspring_are_crossovers_of_the_population(nb201_space, make_trial):
    searcher = NSGA2(nb201_space, TWO, seed=1, population_size=12, crossover_prob=1.0, mutation_prob=0.0)
    first = run(searcher, make_trial, 1, 12)
    for child in searcher.ask(12):  # every edge's op comes from some parent
        assert all(any(p[e] == op for p in first) for e, op in enumerate(child))
        assert child not in first


def test_duplicates_are_eliminated_by_key(nb201_space, make_trial):
    asked = run(NSGA2(nb201_space, TWO, seed=2, population_size=20), make_trial, 15, 20)
    assert len({nb201_space.key(a) for a in asked}) == len(asked) == 300


def test_same_seed_same_archs(nb201_space, make_trial):
    a = run(NSGA2(nb201_space, TWO, seed=3, population_size=10), make_trial, 5, 4)
    b = run(NSGA2(nb201_space, TWO, seed=3, population_size=10), make_trial, 5, 4)
    c = run(NSGA2(nb201_space, TWO, seed=4, population_size=10), make_trial, 5, 4)
    assert a == b != c


@pytest.mark.parametrize("rounds", [0, 3, 5, 9])
def test_state_round_trip_resumes_exactly(nb201_space, make_trial, rounds):
    original = NSGA2(nb201_space, TWO, seed=5, population_size=10)
    before = run(original, make_trial, rounds, 4)  # batches of 4 straddle the generations of 10
    restored = NSGA2(nb201_space, TWO, seed=99, population_size=10)
    restored.load_state_dict(json.loads(json.dumps(original.state_dict())),
                             [make_trial(i, synthetic(a), arch=a) for i, a in enumerate(before)])
    assert run(restored, make_trial, 8, 4) == run(original, make_trial, 8, 4)


def test_failed_trials_are_worst_and_never_on_the_front(nb201_space, make_trial):
    searcher = NSGA2(nb201_space, TWO, seed=6, population_size=10)
    archs = searcher.ask(10)
    searcher.tell([make_trial(i, synthetic(a), status="ok" if i % 2 else "failed", arch=a)
                   for i, a in enumerate(archs)])
    front = set(searcher.algorithm.opt.get("X")[:, 0])
    assert front and front <= set(archs[1::2])


def test_bounds_become_constraints(nb201_space, make_trial):
    bounded = [Objective("val_acc", "max"), Objective("lat", "min", bound=4.0)]
    searcher = NSGA2(nb201_space, bounded, seed=7, population_size=20)
    assert searcher.problem.n_ieq_constr == 1
    run(searcher, make_trial, 6, 20)
    final = searcher.algorithm.opt.get("X")[:, 0]
    assert len(final) and all(synthetic(a)["lat"] <= 4.0 for a in final)
    assert max(synthetic(a)["val_acc"] for a in final) >= 14  # near the feasible optimum (16.x), not trivial


@pytest.mark.parametrize("kwargs, message", [({"population_size": 1}, "population_size must be >= 2"),
                                             ({"crossover_prob": 1.5}, "crossover_prob must lie in"),
                                             ({"mutation_prob": -0.1}, "mutation_prob must lie in"),
                                             ({"prescreen": 0}, "prescreen must be >= 1"),
                                             ({"prescreen": 5}, "prescreen > 1 needs a predictor")])
def test_bad_settings_raise(nb201_space, kwargs, message):
    with pytest.raises(ValueError, match=message):
        NSGA2(nb201_space, TWO, seed=0, **kwargs)


class Oracle(XGBPredictor):
    """Predicts one synthetic objective (minimisation form) exactly from the NB201 graph (its ops are the arch)."""

    column = 0

    def fit(self, graphs, y, val=None):
        self.fitted_on = len(graphs)

    def predict(self, graphs):
        values = [synthetic(tuple(int(op) - 1 for op in g.ops[1:-1])) for g in graphs]
        return np.array([-v["val_acc"] if self.column == 0 else v["lat"] for v in values])


def test_prescreen_evaluates_the_offspring_predicted_best(nb201_space, make_trial):
    """With a predictor, each generation after the first is the rank-and-crowding best of ``prescreen`` times as
    many bred candidates on predicted values: with exact predictions, every candidate the screen drops is
    dominated by, or no better than, the kept ones' fronts (no dropped candidate dominates a kept one)."""
    searcher = NSGA2(nb201_space, TWO, seed=8, population_size=10, prescreen=6, predictor=Oracle(0))
    searcher.predictors[1].column = 1
    screened = []
    original = searcher._screen

    def recording(candidates, n):
        kept = original(candidates, n)
        screened.append((candidates, kept))
        return kept

    searcher.algorithm.screen = recording
    asked = run(searcher, make_trial, 3, 10)
    assert len(screened) == 2 and searcher.fits == 2 and searcher.timings()["fit_s_per_round"] >= 0
    state = json.loads(json.dumps(searcher.state_dict()))
    resumed = NSGA2(nb201_space, TWO, seed=8, population_size=10, prescreen=6, predictor=Oracle(0))
    resumed.predictors[1].column = 1
    resumed.load_state_dict(state, [make_trial(i, synthetic(a), arch=a) for i, a in enumerate(asked)])  # the replay refits twice; the timings stay the saved run's
    assert resumed.fits == 2 and resumed.timings() == searcher.timings()
    assert [p.fitted_on for p in searcher.predictors] == [20, 20]  # every told trial of the first two generations
    for candidates, kept in screened:
        assert len(candidates) > 10 and len(kept) == 10
        values = np.array([[-synthetic(a)["val_acc"], synthetic(a)["lat"]] for a in candidates])
        dropped = np.setdiff1d(np.arange(len(candidates)), kept)
        for i in kept:
            dominates = np.all(values[dropped] <= values[i], axis=1) & np.any(values[dropped] < values[i], axis=1)
            assert not dominates.any()


def test_prescreen_one_is_plain_nsga2(nb201_space, make_trial):
    plain = run(NSGA2(nb201_space, TWO, seed=9, population_size=10), make_trial, 4, 10)
    same = run(NSGA2(nb201_space, TWO, seed=9, population_size=10, predictor=XGBPredictor(0)), make_trial, 4, 10)
    assert plain == same


def test_nsga2_beats_random_search_on_nb201_latency(data_dir, nb201_space, make_trial):
    from nassearch.evaluators.tabular import NasBench201Tabular

    evaluator = NasBench201Tabular(nb201_space, data_dir=str(data_dir), latency_devices=["1080ti_bs1"])
    objectives = [Objective("val_acc", "max"), Objective("lat_1080ti_bs1", "min")]
    front = true_front(evaluator, objectives)
    reference = worst_point(front, objectives)

    def metrics(arch):
        return evaluator.evaluate(arch).metrics

    ratios = {}
    for name, cls, kwargs in (("nsga2", NSGA2, {"population_size": 20}), ("random", RandomSearch, {})):
        ratios[name] = []
        for seed in range(3):
            searcher = cls(nb201_space, objectives, seed, **kwargs)
            asked = run(searcher, make_trial, 10, 20, metrics)
            trials = [make_trial(i, metrics(a), arch=a) for i, a in enumerate(asked)]
            ratios[name].append(hypervolume_ratio(pareto_front(trials, objectives)[1], front, reference, objectives))
    assert np.median(ratios["nsga2"]) > np.median(ratios["random"])
    assert np.median(ratios["nsga2"]) > 0.95


def test_run_writes_hypervolume_and_pareto_plot(data_dir, make_config):
    from nassearch import config as cfg
    from nassearch.runner import run as run_search

    path = make_config(searcher={"name": "nsga2", "population_size": 20},
                       evaluator={"name": "nb201_tabular", "latency_devices": ["1080ti_bs1"]},
                       objectives=[{"metric": "val_acc", "mode": "max"}, {"metric": "lat_1080ti_bs1", "mode": "min"}],
                       budget={"evaluations": 60, "batch_size": 20})
    outcome = run_search(cfg.load(path), repeats=2, data_dir=str(data_dir))
    assert (outcome.run_dir / "plots" / "pareto.png").is_file()
    stats = outcome.summary["stats"]
    assert 0 < stats["hypervolume_ratio"]["mean"] <= 1
    seed_summary = json.loads((outcome.run_dir / "seed-1" / "summary.json").read_text())
    assert seed_summary["hypervolume_ratio"] == pytest.approx(outcome.summary["per_seed"]["1"]["hypervolume_ratio"])
    assert "hypervolume_ratio" in outcome.table


def test_normalised_reference_point_is_taken_over_the_whole_space(data_dir, make_config, tmp_path):
    from nassearch import config as cfg
    from nassearch.evaluators.tabular import NasBench201Tabular
    from nassearch.runner import run as run_search
    from nassearch.spaces.nasbench201 import NasBench201Space

    path = make_config(searcher={"name": "nsga2", "population_size": 10, "prescreen": 3},
                       predictor={"name": "xgb", "n_estimators": 20},
                       evaluator={"name": "nb201_tabular", "latency_devices": ["1080ti_bs1"]},
                       objectives=[{"metric": "val_acc", "mode": "max"}, {"metric": "lat_1080ti_bs1", "mode": "min"}],
                       budget={"evaluations": 30, "batch_size": 10},
                       output={"dir": str(tmp_path / "runs"), "plots": False, "progress": False,
                               "pareto_reference": "normalised"})
    outcome = run_search(cfg.load(path), repeats=1, data_dir=str(data_dir))
    evaluator = NasBench201Tabular(NasBench201Space(), data_dir=str(data_dir), latency_devices=["1080ti_bs1"])
    accuracy, latency = evaluator.reference_values("val_acc"), evaluator.reference_values("lat_1080ti_bs1")
    span_acc, span_lat = accuracy.max() - accuracy.min(), latency.max() - latency.min()
    assert outcome.summary["pareto_reference"] == pytest.approx([accuracy.max() - 1.1 * span_acc,
                                                                 latency.min() + 1.1 * span_lat])
    assert outcome.summary["per_seed"]["0"]["fit_s_per_round"] > 0  # two screened generations
    assert 0.5 < outcome.summary["stats"]["hypervolume_ratio"]["mean"] <= 1


def test_unknown_pareto_reference_is_one_clear_error(make_config):
    from nassearch import config as cfg

    path = make_config(output={"dir": "runs", "pareto_reference": "worst"})
    with pytest.raises(cfg.ConfigError, match="output.pareto_reference: 'worst' is not allowed; give one value per"):
        cfg.load(path)


def test_normalised_reference_needs_whole_space_values(make_config):
    from nassearch import config as cfg
    from nassearch.runner import whole_space_reference

    class PartialTable:
        def reference_values(self, metric):
            return np.arange(3.0) if metric == "val_acc" else None

    config = cfg.load(make_config(objectives=[{"metric": "val_acc", "mode": "max"}, {"metric": "lat", "mode": "min"}],
                                  output={"dir": "runs", "pareto_reference": "normalised"}))
    with pytest.raises(cfg.ConfigError, match=re.escape(
            "output.pareto_reference: normalised needs every objective's values over the whole space, and "
            "evaluator nb201_tabular has none for lat; give one reference value per objective")):
        whole_space_reference(config, PartialTable())
