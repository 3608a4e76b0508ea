"""nar_sampling: Alg. 2 on hand-made histograms, constrained candidates, the search loop and its state."""

import json

import numpy as np
import pytest

from nassearch.errors import ConfigError
from nassearch.objectives import Objective
from nassearch.predictors.nar import NARPredictor
from nassearch.searchers.nar_sampling import CANDIDATE_BUILDERS, NARSampling, select_distribution
from nassearch.spaces.nasbench201 import OPS

TOP = np.array([0.0, 0.1, 0.1, 0.0])       # tier 1: bins 2-3
FAR = np.array([0.1, 0.0, 0.0, 0.1])       # a low tier elsewhere: KL(top || far) is huge
ALIKE = np.array([0.0, 0.1, 0.1, 0.0])     # a low tier with the same distribution: KL = 0


def histograms(*low_tiers):
    return np.stack([TOP, np.full(4, 0.05), np.full(4, 0.05), *low_tiers])


def test_distribution_kept_when_top_tier_differs_from_low_tiers():
    probs = select_distribution(histograms(FAR, FAR), top_count=51, batch_size=256, batch_factor=0.1,
                                kl_threshold=2.5, tier_index=4)
    np.testing.assert_allclose(probs, [0.0, 0.5, 0.5, 0.0])


def test_interval_when_a_low_tier_is_alike():
    skewed = np.array([[0.0, 0.15, 0.0, 0.05], *histograms(FAR, FAR)[1:4], [0.0, 0.15, 0.0, 0.05]])
    probs = select_distribution(skewed, top_count=51, batch_size=256, batch_factor=0.1, kl_threshold=2.5,
                                tier_index=4)
    np.testing.assert_allclose(probs, [0.0, 1 / 3, 1 / 3, 1 / 3])  # uniform over bins 2..4, the interval


def test_interval_when_top_tier_has_too_few_samples():
    probs = select_distribution(np.stack([np.array([0.0, 0.3, 0.0, 0.1]), *histograms(FAR, FAR)[1:]]),
                                top_count=20, batch_size=256, batch_factor=0.1, kl_threshold=2.5, tier_index=4)
    np.testing.assert_allclose(probs, [0.0, 1 / 3, 1 / 3, 1 / 3])


def test_only_tiers_from_the_tier_index_are_compared():
    h = histograms(FAR, FAR)
    h[1] = ALIKE  # tier 2 alike, but β = 4 compares tiers 4 and 5 only
    probs = select_distribution(h, top_count=51, batch_size=256, batch_factor=0.1, kl_threshold=2.5, tier_index=4)
    np.testing.assert_allclose(probs, [0.0, 0.5, 0.5, 0.0])


def small_nar(**overrides):
    return NARPredictor(**{**dict(dim=16, ffn=32, layers=1, rank_hidden=32, tier_hidden=32, epochs=2,
                                  batch_size=50, warmup_steps=5, lr_mul=0.3, bins=5, device="cpu"), **overrides})


def target(arch) -> float:
    return float(arch.count(3) - arch.count(0))


def searcher(nb201_space, seed=0, **overrides):
    settings = dict(train_size=150, val_size=50, iterations=3, sample_size=40, top_k=5, reuse=10)
    return NARSampling(nb201_space, [Objective("val_acc", "max")], seed, predictor=small_nar(seed=seed),
                       **{**settings, **overrides})


def run(search, make_trial, evaluations, start=0):
    history = []
    while len(history) < evaluations:
        archs = search.ask(min(64, evaluations - len(history)))
        trials = [make_trial(start + len(history) + i, {"val_acc": target(a)}, arch=a) for i, a in enumerate(archs)]
        search.tell(trials)
        history += archs
    return history


@pytest.mark.slow
def test_constrained_candidates_satisfy_the_active_constraints(one_torch_thread, nb201_space, make_trial):
    search = searcher(nb201_space)
    run(search, make_trial, 200)
    search._fit()
    batch = search.predictor.tier_statistics.batches[0]
    _, build = CANDIDATE_BUILDERS["nasbench201"]
    op_probs = np.full(len(OPS), 1 / len(OPS))
    for flops_bin, params_bin in [(0, 0), (2, 1), (4, 4)]:
        bounds = (batch.flops_edges[flops_bin:flops_bin + 2], batch.params_edges[params_bin:params_bin + 2])
        accepted = search._constrained(build, op_probs, bounds, 10)
        params, flops = nb201_space.cost_batch(accepted) if accepted else (np.zeros(0), np.zeros(0))
        assert np.all((bounds[0][0] <= flops) & (flops <= bounds[0][1]))
        assert np.all((bounds[1][0] <= params) & (params <= bounds[1][1]))
    assert len(search._statistics_candidates(20)) == 20


@pytest.mark.slow
def test_table_restricted_candidates_are_table_cells_within_the_constraints(data_dir):
    from nassearch.spaces.nasbench101 import NasBench101Space

    space = NasBench101Space(restrict_to_table=True, data_dir=str(data_dir))
    search = NARSampling(space, [Objective("val_acc", "max")], 0, predictor=small_nar())
    params, flops = space.cost_batch(list(space.enumerate()))
    bounds = (np.quantile(flops, [0.4, 0.5]), np.quantile(params, [0.3, 0.7]))
    accepted = search._constrained(None, np.ones(1), bounds, 25)
    assert len(accepted) == 25 and all(space.key(a) in space.table_cells[1] for a in accepted)
    p, f = space.cost_batch(accepted)
    assert np.all((bounds[0][0] <= f) & (f <= bounds[0][1]) & (bounds[1][0] <= p) & (p <= bounds[1][1]))
    assert search._constrained(None, np.ones(1), (np.array([-2.0, -1.0]), bounds[1]), 25) == []


@pytest.mark.slow
def test_search_counts_training_set_then_top_k_per_iteration(one_torch_thread, nb201_space, make_trial):
    search = searcher(nb201_space)
    history = run(search, make_trial, 215)
    assert search.iteration == 3 and search.fitted
    keys = [nb201_space.key(a) for a in history]
    assert len(set(keys)) == len(keys)  # nothing proposed twice


@pytest.mark.slow
def test_state_round_trip_resumes_exactly(one_torch_thread, nb201_space, make_trial):
    original = searcher(nb201_space)
    before = run(original, make_trial, 205)
    state = json.loads(json.dumps(original.state_dict()))
    resumed = searcher(nb201_space)
    resumed.load_state_dict(state, [make_trial(i, {"val_acc": target(a)}, arch=a) for i, a in enumerate(before)])
    assert original.ask(7) == resumed.ask(7)


def test_settings_are_checked(nb201_space):
    with pytest.raises(ConfigError, match="needs a predictor with PredictsTiers.*predictor: {name: nar}"):
        NARSampling(nb201_space, [Objective("val_acc", "max")], 0)
    with pytest.raises(ValueError, match="mode"):
        searcher(nb201_space, mode="evolution")
    with pytest.raises(ValueError, match="top_k"):
        searcher(nb201_space, top_k=50)


@pytest.mark.slow
def test_run_summaries_cover_the_search_phase_only(one_torch_thread, make_config, data_dir):
    from nassearch import config as cfg
    from nassearch.runner import run as run_search

    path = make_config(
        predictor={"name": "nar", "dim": 16, "ffn": 32, "layers": 1, "rank_hidden": 32, "tier_hidden": 32,
                   "epochs": 2, "batch_size": 50, "warmup_steps": 5, "bins": 5},
        searcher={"name": "nar_sampling", "train_size": 150, "val_size": 50, "iterations": 2, "sample_size": 40,
                  "top_k": 5, "reuse": 10, "force_interval": True},
        budget={"evaluations": 210, "batch_size": 64})
    outcome = run_search(cfg.load(path), data_dir=str(data_dir))
    assert outcome.summary["search_start"] == 200
    assert [t.index for t in outcome.trials[0]] == list(range(200, 210))
    assert outcome.summary["stats"]["val_acc"]["max"] == max(t.metrics["val_acc"] for t in outcome.trials[0])
    seed_summary = outcome.summary["per_seed"]["0"]
    assert 0 < seed_summary["predictor_fit_s"] <= seed_summary["searcher_s"]
    assert "predictor_fit_s" in outcome.table and "searcher_s" in outcome.table
    from nassearch.runner import load_run_curves

    _, _, curves = load_run_curves(outcome.run_dir)
    assert curves.shape == (1, 10)  # nassearch plot leaves the training set out too
