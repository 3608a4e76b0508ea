"""Non-dominated sets, Pareto fronts of trials and hypervolume on hand-made examples."""

import numpy as np
import pytest

from nassearch.metrics import hypervolume, hypervolume_ratio, non_dominated, normalised_reference, pareto_front
from nassearch.objectives import Objective

ACC_LAT = [Objective("val_acc", "max"), Objective("lat", "min")]


def test_non_dominated_on_a_hand_made_set():
    points = np.array([[1, 5], [2, 3], [3, 4], [4, 1], [2, 3], [5, 5], [0.5, 6]])
    # [3,4] is dominated by [2,3]; [5,5] by everything but [0.5,6]; equal points [2,3] are both kept
    assert non_dominated(points).tolist() == [True, True, False, True, True, False, True]


def test_pareto_front_uses_the_objectives_units_and_skips_failed_and_infeasible(make_trial):
    trials = [make_trial(0, {"val_acc": 90, "lat": 10}), make_trial(1, {"val_acc": 80, "lat": 5}),
              make_trial(2, {"val_acc": 85, "lat": 12}), make_trial(3, {"val_acc": 99, "lat": 1}, status="failed"),
              make_trial(4, {"val_acc": 70, "lat": 4})]
    indices, points = pareto_front(trials, ACC_LAT)
    assert indices.tolist() == [0, 1, 4]
    assert points.tolist() == [[90, 10], [80, 5], [70, 4]]
    bounded = [Objective("val_acc", "max"), Objective("lat", "min", bound=8.0)]
    assert pareto_front(trials, bounded)[0].tolist() == [1, 4]


def test_hypervolume_of_a_hand_computed_2d_front():
    # minimisation: points (1,3), (2,2), (3,1) up to reference (4,4): 3 + 2 + 1 = 6
    assert hypervolume(np.array([[1, 3], [2, 2], [3, 1]]), [4, 4], [Objective("a", "min"), Objective("b", "min")]) \
        == pytest.approx(6.0)
    # the same front with the first objective maximised (negated): acc 90 / 80 / 70, reference acc 60
    front = np.array([[90, 3], [80, 2], [70, 1]])
    assert hypervolume(front, [60, 4], ACC_LAT) == pytest.approx(10 * 1 + 10 * 2 + 10 * 3)
    assert hypervolume(np.array([[50, 5]]), [60, 4], ACC_LAT) == 0.0  # worse than the reference
    assert hypervolume_ratio(front[1:], front, [60, 4], ACC_LAT) == pytest.approx((10 * 2 + 10 * 3) / 60)


def test_hypervolume_rejects_a_reference_of_the_wrong_length():
    with pytest.raises(ValueError, match="reference point has 3 values for 2 objectives"):
        hypervolume(np.array([[1.0, 2.0]]), [1, 2, 3], ACC_LAT)


def test_normalised_reference_is_the_worst_value_plus_a_tenth_of_the_range():
    accuracy, latency = np.array([10.0, 50.0, 90.0]), np.array([4.0, 9.0, 24.0])
    assert normalised_reference([accuracy, latency], ACC_LAT).tolist() == pytest.approx([2.0, 26.0])
    # the ratio equals the one computed on min-max normalised values with the reference at 1.1
    front, true = np.array([[80.0, 9.0], [50.0, 4.0]]), np.array([[90.0, 9.0], [50.0, 4.0]])
    scaled = [Objective("a", "min"), Objective("b", "min")]
    to_unit = lambda p: np.column_stack([(90 - p[:, 0]) / 80, (p[:, 1] - 4) / 20])  # noqa: E731
    assert hypervolume_ratio(front, true, normalised_reference([accuracy, latency], ACC_LAT), ACC_LAT) == \
        pytest.approx(hypervolume_ratio(to_unit(front), to_unit(true), [1.1, 1.1], scaled))
