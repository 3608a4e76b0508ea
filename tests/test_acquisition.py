"""Acquisition functions: mean, UCB, expected improvement and independent Thompson sampling of an ensemble."""

import numpy as np
import pytest
from scipy.stats import norm

from nassearch.searchers.acquisition import acquisition_scores

#: 3 members x 4 candidates: candidate 0 certain and good, 1 uncertain and good, 2 certain and bad, 3 uncertain.
PREDICTIONS = np.array([[0.9, 0.6, 0.1, 0.0],
                        [0.9, 1.0, 0.1, 0.5],
                        [0.9, 1.1, 0.1, 1.0]])


def test_mean_and_ucb():
    rng = np.random.default_rng(0)
    mean = acquisition_scores("mean", PREDICTIONS, 0.0, rng)
    np.testing.assert_allclose(mean, [0.9, 0.9, 0.1, 0.5])
    np.testing.assert_allclose(acquisition_scores("mean", PREDICTIONS[0], 0.0, rng), PREDICTIONS[0])  # one model
    ucb = acquisition_scores("ucb", PREDICTIONS, 0.0, rng, kappa=2.0)
    np.testing.assert_allclose(ucb, mean + 2 * PREDICTIONS.std(axis=0))
    assert ucb[1] > ucb[0] and ucb[3] > ucb[0]  # uncertainty lifts the uncertain ones above the certain 0.9


def test_expected_improvement_matches_the_closed_form_and_is_zero_for_certain_losers():
    best = 0.95
    ei = acquisition_scores("ei", PREDICTIONS, best, np.random.default_rng(0))
    mu, sigma = PREDICTIONS.mean(axis=0), PREDICTIONS.std(axis=0)
    z = (mu[1] - best) / sigma[1]
    assert ei[1] == pytest.approx((mu[1] - best) * norm.cdf(z) + sigma[1] * norm.pdf(z))
    assert ei[0] == 0 and ei[2] == 0  # certain and below the best: no improvement expected
    assert ei[1] > ei[3] > 0


def test_thompson_sampling_draws_around_the_mean_reproducibly():
    draws = np.stack([acquisition_scores("its", PREDICTIONS, 0.0, np.random.default_rng(seed)) for seed in range(2000)])
    np.testing.assert_allclose(draws.mean(axis=0), PREDICTIONS.mean(axis=0), atol=0.02)
    np.testing.assert_allclose(draws.std(axis=0), PREDICTIONS.std(axis=0), atol=0.02)
    assert np.all(draws[:, 0] == 0.9)  # no spread, no exploration
    again = acquisition_scores("its", PREDICTIONS, 0.0, np.random.default_rng(7))
    np.testing.assert_array_equal(again, acquisition_scores("its", PREDICTIONS, 0.0, np.random.default_rng(7)))
    with pytest.raises(ValueError, match="acquisition must be one of mean, ucb, ei, its"):
        acquisition_scores("pi", PREDICTIONS, 0.0, np.random.default_rng(0))
