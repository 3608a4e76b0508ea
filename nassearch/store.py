"""The trial store: one SQLite file per run holding every trial, the searcher checkpoint and metadata.

Each trial is committed on its own before the searcher hears of it, so a run killed at any point
loses nothing that was evaluated. The checkpoint row holds the searcher's (constant-size) state after
the last ``tell`` together with the number of trials it has seen; resuming restores it, hands the
searcher the trials it had seen, and replays the rest.

A store whose file is deleted or replaced while a run writes to it is noticed at the next write: the
trials are written back to the path (or beside it, when something else now stands there) and the run
stops with a :class:`RunDirError`. A full disk or read-only directory is one ``RunDirError`` line too.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from pathlib import Path
from typing import Any

from nassearch.errors import NassearchError, RunDirError
from nassearch.spaces.base import SearchSpace
from nassearch.trial import Trial, TrialStatus

SCHEMA = """
CREATE TABLE IF NOT EXISTS trials (
    idx INTEGER PRIMARY KEY,
    arch TEXT NOT NULL,
    metrics TEXT NOT NULL,
    cost_s REAL NOT NULL,
    wall_s REAL NOT NULL,
    status TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL NOT NULL,
    error TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    num_trials INTEGER NOT NULL,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
#: Columns each table must have (``trials.error`` is added to stores written before it existed).
COLUMNS = {"trials": ("idx", "arch", "metrics", "cost_s", "wall_s", "status", "started", "finished"),
           "checkpoint": ("id", "num_trials", "state"), "meta": ("key", "value")}
TRIAL_KEYS = (*COLUMNS["trials"], "error")


class TrialStore:
    """SQLite-backed record of a run's trials (in ask order), searcher checkpoint and metadata.

    ``TrialStore(path)`` creates a missing file; an existing file must hold all tables (a store with a
    table dropped is damaged, not silently recreated). ``readonly=True`` opens an existing store for
    reading only (validation, reports and plots of a run that may still be writing); its caller checks
    ``missing_columns``. ``TrialStore(None)`` keeps everything in memory (``nassearch.search`` without
    ``storage``)."""

    def __init__(self, path: str | Path | None, readonly: bool = False) -> None:
        if path is None:  # in memory: nothing on disk to vanish or to validate
            self.path, self._identity = None, None
            self._db = sqlite3.connect(":memory:", isolation_level=None)
            self._db.executescript(SCHEMA)
            return
        self.path = Path(path)
        existed = self.path.is_file() and self.path.stat().st_size > 0
        if readonly and not existed:
            raise RunDirError(f"trial store {self.path} is missing or empty")
        try:
            if readonly:
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
                self._db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # is it a database at all?
            else:
                self._db = sqlite3.connect(self.path, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
            if existed and not readonly and (missing := self.missing_columns()):
                raise RunDirError(f"trial store {self.path} is damaged: missing {_describe(missing)}")
            if not readonly:
                self._db.executescript(SCHEMA)
                if "error" not in self._columns("trials"):
                    self._db.execute("ALTER TABLE trials ADD COLUMN error TEXT NOT NULL DEFAULT ''")
        except sqlite3.DatabaseError as exc:
            raise RunDirError(f"trial store {self.path} cannot be opened ({exc}); "
                              "it is not a nassearch trials.sqlite or is damaged") from None
        self._identity = _identity(self.path)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> TrialStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # schema -------------------------------------------------------------------------------

    def _columns(self, table: str) -> list[str]:
        return [row[1] for row in self._db.execute(f"PRAGMA table_info({table})")]

    def missing_columns(self) -> dict[str, tuple[str, ...]]:
        """Table -> the required columns it lacks (all of them when the table is gone); empty when whole."""
        missing = {}
        for table, columns in COLUMNS.items():
            present = set(self._columns(table))
            lacking = tuple(c for c in columns if c not in present)
            if lacking:
                missing[table] = lacking
        return missing

    # trials -------------------------------------------------------------------------------

    def add_trial(self, trial: Trial) -> None:
        """Commit one trial under its ask-order index (a parallel batch may commit out of order)."""
        self._write("INSERT INTO trials VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (trial.index, trial.arch_str, json.dumps(trial.metrics), trial.cost_s, trial.wall_s,
                     trial.status.value, trial.started, trial.finished, trial.error))

    def raw_trials(self) -> list[tuple[Any, ...]]:
        """Every trial row in index order as stored (metrics still JSON text), for validation."""
        return self._db.execute(f"SELECT {', '.join(TRIAL_KEYS)} FROM trials ORDER BY idx").fetchall()

    def trials(self, space: SearchSpace) -> list[Trial]:
        """Every trial in ask order, its architecture parsed by ``space``; ValueError naming the first bad row
        (``nassearch.repair`` validates a store row by row before a resume)."""
        trials = []
        for row in self.raw_trials():
            try:
                trials.append(parse_trial(row, space))
            except ValueError as exc:
                raise ValueError(f"trial store {self.path}, trial {row[0]}: {exc}") from None
        return trials

    def num_trials(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM trials").fetchone()[0])

    def truncate(self, keep: int) -> None:
        """Delete every trial with index >= ``keep`` (``--repair``)."""
        self._write("DELETE FROM trials WHERE idx >= ?", (keep,))

    # checkpoint and metadata --------------------------------------------------------------

    def save_checkpoint(self, num_trials: int, state: dict[str, Any]) -> None:
        """Replace the searcher checkpoint (taken after telling it ``num_trials`` trials)."""
        self._write("INSERT OR REPLACE INTO checkpoint VALUES (0, ?, ?)", (num_trials, json.dumps(state)))

    def raw_checkpoint(self) -> tuple[Any, Any] | None:
        """``(num_trials, state text)`` as stored, or None."""
        return self._db.execute("SELECT num_trials, state FROM checkpoint WHERE id = 0").fetchone()

    def checkpoint(self) -> tuple[int, dict[str, Any]] | None:
        """``(num_trials, state)`` of the last checkpoint, or None."""
        row = self.raw_checkpoint()
        return (int(row[0]), json.loads(row[1])) if row else None

    def drop_checkpoint(self) -> None:
        """Forget the searcher checkpoint: a resume then replays every stored trial from a fresh searcher."""
        self._write("DELETE FROM checkpoint", ())

    def set_meta(self, key: str, value: Any) -> None:
        self._write("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def raw_meta(self) -> list[tuple[str, str]]:
        """Every ``(key, value text)`` of the metadata as stored, for validation."""
        return self._db.execute("SELECT key, value FROM meta").fetchall()

    def delete_meta(self, key: str) -> None:
        self._write("DELETE FROM meta WHERE key = ?", (key,))

    def meta(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # writing safely -----------------------------------------------------------------------

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        """Run one statement in its own transaction; a vanished file or a failed write is a RunDirError."""
        self.check_present()
        try:
            with self._db:
                self._db.execute(sql, params)
        except sqlite3.OperationalError as exc:
            raise RunDirError(f"cannot write trial store {self.path}: {exc} (is the disk full or the directory "
                              "read-only?); free space or fix permissions, then continue with --resume") from None

    def check_present(self) -> None:
        """Raise RunDirError if the store's file was deleted or replaced since it was opened, after saving the
        trials this connection still holds (back to the path, or beside it if another file is there)."""
        if self.path is None or _identity(self.path) == self._identity:
            return
        rescue = self.path.with_name(self.path.name + ".rescued")
        with sqlite3.connect(rescue) as target:
            self._db.backup(target)
        target.close()
        count = self.num_trials()
        self._db.close()
        self._identity = None
        if not self.path.exists():
            os.replace(rescue, self.path)
            raise RunDirError(f"trial store {self.path} was deleted while the run was writing to it; its {count} "
                              "trials were written back there; continue with --resume")
        raise RunDirError(f"trial store {self.path} was replaced by another file while the run was writing to it; "
                          f"the run's {count} trials are saved in {rescue}")


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of ``path``, or None when it does not exist."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def _describe(missing: dict[str, tuple[str, ...]]) -> str:
    return "; ".join(f"table {table}" if columns == COLUMNS[table] else f"{table} columns {', '.join(columns)}"
                     for table, columns in missing.items())


def parse_trial(row: tuple[Any, ...], space: SearchSpace) -> Trial:
    """A stored row (``TRIAL_KEYS`` order, as ``raw_trials`` gives it) as a Trial; ValueError naming the first
    bad field."""
    idx, arch, metrics_text, cost_s, wall_s, status, started, finished, error = row
    if not isinstance(idx, int) or idx < 0:
        raise ValueError(f"index {idx!r} is not a trial index")
    if status not in set(TrialStatus):
        raise ValueError(f"status {status!r} is not one of {', '.join(TrialStatus)}")
    try:
        metrics = json.loads(metrics_text)
    except (TypeError, ValueError):
        raise ValueError("its metrics are not JSON") from None
    if not isinstance(metrics, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in metrics.items()):
        raise ValueError("its metrics are not a JSON object of numbers")
    if status == "ok" and not all(math.isfinite(v) for v in metrics.values()):
        raise ValueError("a successful trial with a non-finite metric")
    for name, value in (("cost_s", cost_s), ("wall_s", wall_s), ("started", started), ("finished", finished)):
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} {value!r} is not a finite number")
    if not isinstance(arch, str):
        raise ValueError("its architecture is not text")
    try:
        parsed = space.from_str(arch)
    except NassearchError as exc:
        raise ValueError(f"its architecture does not parse ({exc})") from None
    return Trial(index=idx, arch=parsed, arch_str=arch, metrics=metrics, cost_s=float(cost_s), wall_s=float(wall_s),
                 status=status, started=float(started), finished=float(finished), error=str(error or ""))
