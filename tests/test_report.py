"""Run summaries on hand-made trials: incumbents, standing in the space, best trial, aggregation."""

import math

import numpy as np
import pytest

from nassearch.errors import SearchError
from nassearch.objectives import Objective
from nassearch.report import aggregate, best_trial, format_table, incumbent_curve, standing, summarize_run

VAL_MAX = Objective("val_acc")
PARAMS_MIN = Objective("params", mode="min")


@pytest.fixture
def trials(make_trial):
    """val_acc / test_acc per trial; trial 3 failed (with a tempting val_acc), trial 4 ties trial 2."""
    rows = [(50, 51), (40, 90), (60, 61), (99, 99), (60, 0), (70, 71)]
    return [make_trial(i, {"val_acc": v, "test_acc": t}, status="failed" if i == 3 else "ok",
                       cost_s=1.0 + i, wall_s=0.5) for i, (v, t) in enumerate(rows)]


# --------------------------------------------------------------------------------------- incumbent_curve


def test_incumbent_curve_tracks_best_so_far_ignoring_failures_and_ties(trials):
    np.testing.assert_array_equal(incumbent_curve(trials, VAL_MAX, "test_acc"), [51, 51, 61, 61, 61, 71])
    np.testing.assert_array_equal(incumbent_curve(trials, VAL_MAX, "val_acc"), [50, 50, 60, 60, 60, 70])


def test_incumbent_curve_in_min_mode(make_trial):
    params = [3.0, 1.0, 2.0, 1.0, 0.5, 4.0]
    trials = [make_trial(i, {"params": p, "val_acc": 10.0 * i}) for i, p in enumerate(params)]
    np.testing.assert_array_equal(incumbent_curve(trials, PARAMS_MIN, "params"), [3, 1, 1, 1, 0.5, 0.5])
    np.testing.assert_array_equal(incumbent_curve(trials, PARAMS_MIN, "val_acc"), [0, 10, 10, 10, 40, 40])


def test_incumbent_curve_is_nan_until_the_first_successful_trial(make_trial):
    trials = [make_trial(0, {}, status="failed"), make_trial(1, {"val_acc": float("nan")}),
              make_trial(2, {"test_acc": 5.0}), make_trial(3, {"val_acc": 1.0, "test_acc": 7.0}),
              make_trial(4, {"val_acc": 2.0})]
    curve = incumbent_curve(trials, VAL_MAX, "test_acc")
    assert np.isnan(curve[:3]).all()  # failed, NaN objective, missing objective
    assert curve[3] == 7.0
    assert np.isnan(curve[4])  # the new incumbent lacks the reported metric
    assert incumbent_curve([], VAL_MAX, "val_acc").shape == (0,)


# --------------------------------------------------------------------------------------- standing

REFERENCE = np.array([1.0, 2.0, 2.0, 3.0, 3.0, 3.0, 5.0, np.nan])  # NaN is ignored: 7 values


@pytest.mark.parametrize("value, higher, rank, worse, regret", [
    (3.0, True, 2, 3, 2.0),    # one value (5) better; 1, 2, 2 strictly worse; ties neither
    (5.0, True, 1, 6, 0.0),
    (1.0, True, 7, 0, 4.0),    # the other six are all better
    (2.0, True, 5, 1, 3.0),    # 3, 3, 3, 5 better -> rank 5; tie with the other 2 does not count
    (4.0, True, 2, 6, 1.0),    # a value not in the table
    (2.0, False, 2, 4, 1.0),   # lower is better: 1 better; 3, 3, 3, 5 worse
    (1.0, False, 1, 6, 0.0),
    (5.0, False, 7, 0, 4.0),
])
def test_standing_with_ties(value, higher, rank, worse, regret):
    result = standing(value, REFERENCE, higher)
    assert result == {"rank": rank, "space_size": 7, "percentile": pytest.approx(100.0 * worse / 7),
                      "regret": pytest.approx(regret)}
    assert type(result["rank"]) is int and type(result["space_size"]) is int


# --------------------------------------------------------------------------------------- best_trial


def test_best_trial_skips_failures_and_picks_the_earliest_on_ties(trials):
    assert best_trial(trials, VAL_MAX).index == 5
    assert best_trial(trials[:5], VAL_MAX).index == 2  # 60 at trials 2 and 4; failed 99 ignored


def test_best_trial_in_min_mode_picks_earliest_on_ties(make_trial):
    trials = [make_trial(i, {"params": p}) for i, p in enumerate([5.0, 2.0, 2.0, 7.0])]
    assert best_trial(trials, PARAMS_MIN).index == 1
    assert best_trial(list(reversed(trials)), PARAMS_MIN).index == 1  # by trial index, not list position


def test_best_trial_without_successful_trials_raises(make_trial):
    with pytest.raises(SearchError, match="no successful trial"):
        best_trial([make_trial(0, {"val_acc": 1.0}, status="failed")], VAL_MAX)
    with pytest.raises(SearchError):
        best_trial([], VAL_MAX)


# --------------------------------------------------------------------------------------- summaries


def test_summarize_run_counts_costs_and_ranks_the_best(trials):
    summary = summarize_run(trials, VAL_MAX, "test_acc", np.array([10.0, 71.0, 80.0, 90.0]))
    assert summary["num_trials"] == 6
    assert summary["cost_s"] == sum(1.0 + i for i in range(6)) and summary["wall_s"] == 3.0
    assert summary["best"]["trial"] == 5 and summary["best"]["arch"] == "arch-5"
    assert summary["best"]["metrics"] == {"val_acc": 70, "test_acc": 71}
    assert summary["report_metric"] == "test_acc"
    assert summary["best"]["standing"] == {"rank": 3, "space_size": 4, "percentile": 25.0, "regret": 19.0}
    assert "standing" not in summarize_run(trials, VAL_MAX, "test_acc", None)["best"]
    assert "report_metric" not in summarize_run(trials, VAL_MAX, None, None)


def seed_summary(val: float, test: float, rank: int, percentile: float, regret: float) -> dict:
    return {"num_trials": 10, "best": {"trial": 0, "arch": f"a{val}", "metrics": {"val_acc": val, "test_acc": test},
                                       "standing": {"rank": rank, "space_size": 100, "percentile": percentile,
                                                    "regret": regret}}}


def test_aggregate_mean_std_min_max_over_seeds():
    summaries = {2: seed_summary(80.0, 70.0, 3, 97.0, 1.0), 0: seed_summary(90.0, 72.0, 1, 99.0, 0.0),
                 1: seed_summary(70.0, 74.0, 5, 95.0, 2.0)}
    result = aggregate(summaries, VAL_MAX, "test_acc")
    assert result["seeds"] == [0, 1, 2]
    assert list(result["per_seed"]) == ["0", "1", "2"] and result["per_seed"]["2"] is summaries[2]
    stats = result["stats"]
    assert set(stats) == {"val_acc", "test_acc", "rank", "percentile", "regret"}  # space_size is not averaged
    assert stats["val_acc"] == {"mean": 80.0, "std": pytest.approx(math.sqrt(200 / 3)), "min": 70.0, "max": 90.0}
    assert stats["test_acc"] == {"mean": 72.0, "std": pytest.approx(math.sqrt(8 / 3)), "min": 70.0, "max": 74.0}
    assert stats["rank"]["mean"] == 3.0 and stats["regret"]["std"] == pytest.approx(math.sqrt(2 / 3))
    # population std (ddof=0), as np.std
    assert stats["percentile"]["std"] == pytest.approx(np.std([97.0, 99.0, 95.0]))


def test_aggregate_without_report_metric_or_standing():
    summaries = {0: {"best": {"metrics": {"val_acc": 1.0}}}, 1: {"best": {"metrics": {"val_acc": 3.0}}}}
    result = aggregate(summaries, VAL_MAX, None)
    assert result["stats"] == {"val_acc": {"mean": 2.0, "std": 1.0, "min": 1.0, "max": 3.0}}


def test_format_table_has_a_row_per_seed_and_a_mean_row():
    summaries = {0: seed_summary(90.0, 72.0, 1, 99.0, 0.0), 1: seed_summary(70.0, 74.0, 5, 95.0, 2.0)}
    table = format_table("title", summaries, aggregate(summaries, VAL_MAX, "test_acc"), VAL_MAX, "test_acc")
    lines = table.splitlines()
    assert lines[0] == "title" and len(lines) == 5
    assert lines[1].split()[:3] == ["seed", "best", "val_acc"] and lines[1].rstrip().endswith("arch")
    assert lines[2].split()[0] == "0" and lines[2].endswith("a90.0") and "72.000" in lines[2]
    assert lines[4].startswith("mean±std") and "80.000±10.000" in lines[4]
