"""The SQLite trial store: trials, checkpoint, metadata, and refusing files that are not stores."""

import math
import sqlite3
from contextlib import closing

import pytest

from nassearch.errors import RunDirError
from nassearch.spaces.nasbench201 import NasBench201Space
from nassearch.store import TrialStore
from nassearch.trial import Trial

SPACE = NasBench201Space()
A = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
B = "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"

TRIALS = [
    (0, "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", {"val_acc": 10.0, "test_acc": 10.5}, 1.0, 0.01, "ok",
     100.0, 100.5),
    (1, "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|",
     {"val_acc": 63.36399998046875, "params": 0.073306, "lat_1080ti_bs1": 10.75437}, 1.0, 0.02, "ok", 101.0, 101.5),
    (2, "|skip_connect~0|+|none~0|none~1|+|none~0|none~1|none~2|", {}, 0.0, 0.03, "failed", 102.0, 102.25),
]


def record(row, error=""):
    """The Trial of a row (with an error text)."""
    index, arch, metrics, cost_s, wall_s, status, started, finished = row
    return Trial(index, SPACE.from_str(arch), arch, metrics, cost_s, wall_s, status, started, finished, error)


@pytest.fixture
def store(tmp_path):
    with TrialStore(tmp_path / "trials.sqlite") as s:
        yield s


def test_new_store_is_empty(store):
    assert store.trials(SPACE) == [] and store.num_trials() == 0
    assert store.checkpoint() is None and store.meta("anything") is None


def test_trials_round_trip_with_metrics_as_json(store):
    for row in TRIALS:
        store.add_trial(record(row))
    assert store.num_trials() == 3
    assert store.trials(SPACE) == [record(row) for row in TRIALS]
    assert store.trials(SPACE)[1].metrics["val_acc"] == 63.36399998046875  # exact float through JSON


def test_nan_and_infinite_metrics_survive(store):
    store.add_trial(record((0, A, {"val_acc": float("nan"), "loss": float("inf")}, 0.0, 0.0, "failed", 0.0, 0.0)))
    metrics = store.trials(SPACE)[0].metrics
    assert math.isnan(metrics["val_acc"]) and metrics["loss"] == math.inf


def test_trials_come_back_in_index_order(store):
    for row in (TRIALS[1], TRIALS[0], TRIALS[2]):
        store.add_trial(record(row))
    assert [t.index for t in store.trials(SPACE)] == [0, 1, 2]


def test_a_trial_index_cannot_be_written_twice(store):
    store.add_trial(record(TRIALS[0]))
    with pytest.raises(sqlite3.IntegrityError):
        store.add_trial(record(TRIALS[0]))
    assert store.num_trials() == 1


def test_each_trial_is_committed_and_visible_to_another_connection(tmp_path):
    path = tmp_path / "trials.sqlite"
    with TrialStore(path) as writer:
        writer.add_trial(record(TRIALS[0]))
        with TrialStore(path) as reader:
            assert reader.num_trials() == 1
    with TrialStore(path) as reopened:
        assert reopened.trials(SPACE) == [record(TRIALS[0])]


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


def test_a_failed_trial_keeps_its_reason(store):
    store.add_trial(record(TRIALS[2], "evaluator returned val_acc=nan"))
    assert store.trials(SPACE) == [record(TRIALS[2], "evaluator returned val_acc=nan")]


def test_a_store_without_its_trials_table_is_damaged_not_recreated(tmp_path):
    path = tmp_path / "trials.sqlite"
    with TrialStore(path) as store:
        store.add_trial(record(TRIALS[0]))
    with closing(sqlite3.connect(path)) as raw:
        raw.execute("DROP TABLE trials")
        raw.commit()
    with pytest.raises(RunDirError, match="damaged: missing table trials"):
        TrialStore(path)
    with closing(sqlite3.connect(path)) as raw:
        assert raw.execute("SELECT name FROM sqlite_master WHERE name = 'trials'").fetchone() is None


def test_a_store_written_before_error_texts_gains_the_column(tmp_path):
    path = tmp_path / "trials.sqlite"
    old_schema = SCHEMA_BEFORE_ERRORS
    with closing(sqlite3.connect(path)) as raw:
        raw.executescript(old_schema)
        raw.execute(f"INSERT INTO trials VALUES (0, '{A}', '{{}}', 0, 0, 'ok', 0, 0)")
        raw.commit()
    with TrialStore(path) as store:
        assert store.trials(SPACE)[0].error == ""
        store.add_trial(record((1, B, {}, 0.0, 0.0, "failed", 0.0, 0.0), "boom"))
        assert store.trials(SPACE)[1].error == "boom"


def test_readonly_store_reads_but_never_creates(tmp_path):
    path = tmp_path / "trials.sqlite"
    with pytest.raises(RunDirError, match="missing"):
        TrialStore(path, readonly=True)
    assert not path.exists()
    with TrialStore(path) as store:
        store.add_trial(record(TRIALS[0]))
    with TrialStore(path, readonly=True) as reader:
        assert reader.trials(SPACE) == [record(TRIALS[0])]
        with pytest.raises(RunDirError, match="cannot write"):
            reader.set_meta("x", 1)


def test_a_store_deleted_during_the_run_is_written_back_and_stops_the_run(tmp_path):
    path = tmp_path / "trials.sqlite"
    store = TrialStore(path)
    store.add_trial(record(TRIALS[0]))
    store.add_trial(record(TRIALS[1]))
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"trials.sqlite{suffix}").unlink(missing_ok=True)
    with pytest.raises(RunDirError, match="was deleted while the run was writing to it; its 2 trials were written back"):
        store.add_trial(record(TRIALS[2]))
    store.close()
    with TrialStore(path) as restored:
        assert restored.trials(SPACE) == [record(TRIALS[0]), record(TRIALS[1])]


def test_a_store_replaced_during_the_run_is_rescued_beside_it(tmp_path):
    path = tmp_path / "trials.sqlite"
    store = TrialStore(path)
    store.add_trial(record(TRIALS[0]))
    path.unlink()
    path.write_text("someone else's file")
    with pytest.raises(RunDirError, match="replaced by another file"):
        store.save_checkpoint(1, {"rng": 1})
    assert path.read_text() == "someone else's file"
    with TrialStore(tmp_path / "trials.sqlite.rescued") as rescued:
        assert rescued.trials(SPACE) == [record(TRIALS[0])]


SCHEMA_BEFORE_ERRORS = """
CREATE TABLE trials (idx INTEGER PRIMARY KEY, arch TEXT NOT NULL, metrics TEXT NOT NULL, cost_s REAL NOT NULL,
                     wall_s REAL NOT NULL, status TEXT NOT NULL, started REAL NOT NULL, finished REAL NOT NULL);
CREATE TABLE checkpoint (id INTEGER PRIMARY KEY CHECK (id = 0), num_trials INTEGER NOT NULL, state TEXT NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def test_an_in_memory_store_holds_trials_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with TrialStore(None) as store:
        store.add_trial(record(TRIALS[0]))
        store.save_checkpoint(1, {"rng": 1})
        assert store.trials(SPACE) == [record(TRIALS[0])] and store.checkpoint() == (1, {"rng": 1})
    assert list(tmp_path.iterdir()) == []


def test_a_row_that_does_not_parse_is_named(store):
    store.add_trial(record(TRIALS[0]))
    store._db.execute("UPDATE trials SET status = 'maybe'")
    with pytest.raises(ValueError, match="trial 0: status 'maybe' is not one of ok, failed"):
        store.trials(SPACE)
