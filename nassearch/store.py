"""The trial store: one SQLite file per run holding every trial, the searcher checkpoint and metadata.

Each trial is committed on its own before the searcher hears of it, so a run killed at any point
loses nothing that was evaluated. The checkpoint row holds the searcher state after the last ``tell``
together with the number of trials it has seen; resuming restores it and replays the rest.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from nassearch.errors import RunDirError

SCHEMA = """
CREATE TABLE IF NOT EXISTS trials (
    idx INTEGER PRIMARY KEY,
    arch TEXT NOT NULL,
    metrics TEXT NOT NULL,
    cost_s REAL NOT NULL,
    wall_s REAL NOT NULL,
    status TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    num_trials INTEGER NOT NULL,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class TrialStore:
    """SQLite-backed record of a run's trials (in ask order), searcher checkpoint and metadata."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise RunDirError(f"trial store {self.path} cannot be opened ({exc}); "
                              "it is not a nassearch trials.sqlite or is damaged") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> TrialStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # trials -------------------------------------------------------------------------------

    def add_trial(self, idx: int, arch: str, metrics: dict[str, float], cost_s: float, wall_s: float,
                  status: str, started: float, finished: float) -> None:
        """Commit one trial under its ask-order index ``idx`` (a parallel batch may commit out of order)."""
        with self._db:
            self._db.execute("INSERT INTO trials VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (idx, arch, json.dumps(metrics), cost_s, wall_s, status, started, finished))

    def trials(self) -> list[dict[str, Any]]:
        """Every trial in ask order, as dicts with the column names as keys and metrics decoded."""
        rows = self._db.execute("SELECT idx, arch, metrics, cost_s, wall_s, status, started, finished "
                                "FROM trials ORDER BY idx").fetchall()
        keys = ("idx", "arch", "metrics", "cost_s", "wall_s", "status", "started", "finished")
        out = []
        for row in rows:
            record = dict(zip(keys, row))
            record["metrics"] = json.loads(record["metrics"])
            out.append(record)
        return out

    def num_trials(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM trials").fetchone()[0])

    # checkpoint and metadata --------------------------------------------------------------

    def save_checkpoint(self, num_trials: int, state: dict[str, Any]) -> None:
        """Replace the searcher checkpoint (taken after telling it ``num_trials`` trials)."""
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO checkpoint VALUES (0, ?, ?)", (num_trials, json.dumps(state)))

    def checkpoint(self) -> tuple[int, dict[str, Any]] | None:
        """``(num_trials, state)`` of the last checkpoint, or None."""
        row = self._db.execute("SELECT num_trials, state FROM checkpoint WHERE id = 0").fetchone()
        return (int(row[0]), json.loads(row[1])) if row else None

    def set_meta(self, key: str, value: Any) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def meta(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default
