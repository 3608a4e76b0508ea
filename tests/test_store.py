"""The SQLite trial store: trials, checkpoint, metadata, and refusing files that are not stores."""

import math
import sqlite3
from contextlib import closing

import pytest

from nassearch.errors import RunDirError
from nassearch.store import TrialStore

TRIALS = [
    (0, "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", {"val_acc": 10.0, "test_acc": 10.5}, 1.0, 0.01, "ok",
     100.0, 100.5),
    (1, "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|",
     {"val_acc": 63.36399998046875, "params": 0.073306, "lat_1080ti_bs1": 10.75437}, 1.0, 0.02, "ok", 101.0, 101.5),
    (2, "|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|", {}, 0.0, 0.03, "error", 102.0, 102.25),
]
KEYS = ("idx", "arch", "metrics", "cost_s", "wall_s", "status", "started", "finished")


@pytest.fixture
def store(tmp_path):
    with TrialStore(tmp_path / "trials.sqlite") as s:
        yield s


def test_new_store_is_empty(store):
    assert store.trials() == [] and store.num_trials() == 0
    assert store.checkpoint() is None and store.meta("anything") is None


def test_trials_round_trip_with_metrics_as_json(store):
    for row in TRIALS:
        store.add_trial(*row)
    assert store.num_trials() == 3
    assert store.trials() == [dict(zip(KEYS, row)) for row in TRIALS]
    assert store.trials()[1]["metrics"]["val_acc"] == 63.36399998046875  # exact float through JSON


def test_nan_and_infinite_metrics_survive(store):
    store.add_trial(0, "a", {"val_acc": float("nan"), "loss": float("inf")}, 0.0, 0.0, "ok", 0.0, 0.0)
    metrics = store.trials()[0]["metrics"]
    assert math.isnan(metrics["val_acc"]) and metrics["loss"] == math.inf


def test_trials_come_back_in_index_order(store):
    for row in (TRIALS[1], TRIALS[0], TRIALS[2]):
        store.add_trial(*row)
    assert [t["idx"] for t in store.trials()] == [0, 1, 2]


def test_a_trial_index_cannot_be_written_twice(store):
    store.add_trial(*TRIALS[0])
    with pytest.raises(sqlite3.IntegrityError):
        store.add_trial(*TRIALS[0])
    assert store.num_trials() == 1


def test_each_trial_is_committed_and_visible_to_another_connection(tmp_path):
    path = tmp_path / "trials.sqlite"
    with TrialStore(path) as writer:
        writer.add_trial(*TRIALS[0])
        with TrialStore(path) as reader:
            assert reader.num_trials() == 1
    with TrialStore(path) as reopened:
        assert reopened.trials() == [dict(zip(KEYS, TRIALS[0]))]


def test_checkpoint_is_replaced_not_appended(tmp_path):
    path = tmp_path / "trials.sqlite"
    state1 = {"rng": {"state": 2 ** 100, "inc": 7}, "seen": ["a", "b"]}
    state2 = {"rng": {"state": 1, "inc": 9}, "population": [["x", -math.inf], ["y", 3.5]]}
    with TrialStore(path) as store:
        store.save_checkpoint(3, state1)
        assert store.checkpoint() == (3, state1)
        store.save_checkpoint(5, state2)
        assert store.checkpoint() == (5, state2)
    with TrialStore(path) as store:
        assert store.checkpoint() == (5, state2)
    with closing(sqlite3.connect(path)) as raw:
        assert raw.execute("SELECT COUNT(*) FROM checkpoint").fetchone()[0] == 1


def test_meta_values_are_json_and_overwritable(tmp_path):
    path = tmp_path / "trials.sqlite"
    with TrialStore(path) as store:
        assert store.meta("config", default={"x": 1}) == {"x": 1}
        store.set_meta("config", {"name": "t", "seeds": [0, 1]})
        store.set_meta("version", "0.1")
        store.set_meta("version", "0.2")
        assert store.meta("version") == "0.2"
    with TrialStore(path) as store:
        assert store.meta("config") == {"name": "t", "seeds": [0, 1]} and store.meta("version") == "0.2"


def test_a_file_that_is_not_sqlite_is_refused(tmp_path):
    path = tmp_path / "trials.sqlite"
    path.write_text("this is a run log, not a database\n" * 40)
    with pytest.raises(RunDirError) as info:
        TrialStore(path)
    assert str(path) in str(info.value) and "not a nassearch trials.sqlite" in str(info.value)


def test_an_unreachable_path_is_refused(tmp_path):
    with pytest.raises(RunDirError, match="cannot be opened"):
        TrialStore(tmp_path / "no" / "such" / "dir" / "trials.sqlite")


def test_closed_store_cannot_be_used(tmp_path):
    with TrialStore(tmp_path / "trials.sqlite") as store:
        pass
    with pytest.raises(sqlite3.ProgrammingError):
        store.num_trials()
