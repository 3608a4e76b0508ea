"""Reading a seed's trial store with validation, and ``--repair`` of a damaged one.

Before a run is resumed or read, every seed directory is checked: the store opens and has its tables,
trial indices are contiguous (only the last ask batch, after the checkpoint, may have gaps), every
trial's architecture parses, its metrics are JSON numbers (finite for a successful trial), its status
and times are sane, the checkpoint is JSON within the stored trials, and the metadata is JSON. The first
problem is a :class:`Damage`: what is wrong and how many leading trials are intact. ``--repair`` keeps
those trials, drops the rest (and the checkpoint when it is not usable), keeps a backup of the store,
and the run resumes from there by replaying what it kept.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nassearch.errors import RunDirError
from nassearch.run_dir import LOCK, MARKER
from nassearch.store import TrialStore, parse_trial
from nassearch.trial import Trial
from nassearch.spaces.base import SearchSpace

STORE = "trials.sqlite"


@dataclass(frozen=True)
class Damage:
    """What is wrong with a seed directory; ``keep`` leading trials are intact and survive ``--repair``."""

    directory: Path
    what: str
    keep: int
    drop_checkpoint: bool = False
    bad_meta: tuple[str, ...] = ()

    @property
    def fix(self) -> str:
        """What ``--repair`` does about it."""
        if self.keep == 0:
            return "moves this seed's directory aside and starts the seed again from trial 0"
        return f"keeps trials 0-{self.keep - 1}, drops the rest and resumes from there"


class DamagedSeed(RunDirError):
    """A seed directory failed validation; ``damage`` says what and what ``--repair`` would keep."""

    def __init__(self, damage: Damage, run_dir: Path | None = None) -> None:
        command = f"nassearch run CONFIG --resume {run_dir or damage.directory.parent} --repair"
        super().__init__(f"{damage.directory} is damaged: {damage.what}; `{command}` {damage.fix} "
                         "(a backup is kept)")
        self.damage = damage


@dataclass
class StoredSeed:
    """A validated seed store: trials by index, the checkpoint (``told`` trials and the searcher state, or
    0 and None) and the metadata."""

    trials: dict[int, Trial]
    told: int
    state: dict[str, Any] | None
    meta: dict[str, Any]

    @property
    def history(self) -> list[Trial]:
        """The trials the checkpointed searcher was told, in ask order."""
        return [self.trials[i] for i in range(self.told)]

    @property
    def contiguous(self) -> int:
        """How many leading trials (0, 1, ...) are stored without a gap."""
        count = 0
        while count in self.trials:
            count += 1
        return count


def read_seed(directory: Path, space: SearchSpace, batch_size: int) -> StoredSeed | None:
    """The validated contents of a seed directory; None when it holds nothing yet; DamagedSeed otherwise."""
    if not directory.exists():
        return None
    if not directory.is_dir():
        raise DamagedSeed(Damage(directory, "it is not a directory", 0))
    path = directory / STORE
    if not path.exists():
        if any(p.name not in ("config.yaml", MARKER, LOCK) for p in directory.iterdir()):
            raise DamagedSeed(Damage(directory, f"{STORE} is missing", 0))
        return None
    try:
        store = TrialStore(path, readonly=True)
    except RunDirError as exc:
        raise DamagedSeed(Damage(directory, str(exc), 0)) from None
    with store:
        try:
            return _validate(store, directory, space, batch_size)
        except sqlite3.DatabaseError as exc:
            raise DamagedSeed(Damage(directory, f"{STORE} cannot be read ({exc})", 0)) from None


def _validate(store: TrialStore, directory: Path, space: SearchSpace, batch_size: int) -> StoredSeed:
    missing = store.missing_columns()
    if "trials" in missing:
        raise DamagedSeed(Damage(directory, f"{STORE} has lost its trials table or columns", 0))
    meta: dict[str, Any] = {}
    bad_meta = []
    for key, value in ([] if "meta" in missing else store.raw_meta()):
        try:
            meta[key] = json.loads(value)
        except (TypeError, ValueError):
            bad_meta.append(key)
    start = meta.get("search_start", 0)
    if not isinstance(start, int) or isinstance(start, bool) or start < 0:
        bad_meta.append("search_start")
        meta.pop("search_start")
    trials: dict[int, Trial] = {}
    problems = []
    for row in store.raw_trials():
        try:
            trial = parse_trial(row, space)
        except ValueError as exc:
            problems.append(f"trial {row[0]}: {exc}")
            break
        trials[trial.index] = trial
    stored = StoredSeed(trials, 0, None, meta)
    prefix = stored.contiguous
    told, state, checkpoint_problem = 0, None, None
    if "checkpoint" in missing:
        checkpoint_problem = "the checkpoint table is missing"
    elif (row := store.raw_checkpoint()) is not None:
        told, state, checkpoint_problem = _checkpoint(row)
    if checkpoint_problem is None and told > prefix:
        checkpoint_problem = f"the checkpoint counts {told} told trials but only {prefix} are stored in order"
    limit = told + batch_size if checkpoint_problem is None else prefix + 1  # the last batch may have gaps
    beyond = [i for i in trials if i > prefix and i >= limit]
    if not problems and beyond:
        problems.append(f"trial {prefix} is missing, yet trial {max(beyond)} is stored after it")
    if checkpoint_problem is not None:
        problems.append(checkpoint_problem)
    if bad_meta:
        problems.append(f"metadata {', '.join(bad_meta)} is not valid JSON of its kind")
    if problems:
        raise DamagedSeed(Damage(directory, "; ".join(problems), prefix,
                                 checkpoint_problem is not None or told > prefix, tuple(bad_meta)))
    stored.told, stored.state = told, state
    return stored


def _checkpoint(row: tuple[Any, Any]) -> tuple[int, dict[str, Any] | None, str | None]:
    """(told, state, problem) of a raw checkpoint row."""
    num_trials, text = row
    if not isinstance(num_trials, int) or num_trials < 0:
        return 0, None, f"the checkpoint's trial count {num_trials!r} is not a count"
    try:
        state = json.loads(text)
    except (TypeError, ValueError):
        return 0, None, "the searcher checkpoint is not JSON"
    if not isinstance(state, dict) or not state:
        return 0, None, "the searcher checkpoint is empty or not a JSON object"
    return num_trials, state, None


def repair_seed(damage: Damage) -> Path:
    """Keep ``damage.keep`` leading trials, drop the rest (and the checkpoint or metadata when they are bad),
    after backing up the store; with nothing to keep, the whole seed directory is moved aside instead.
    Returns the backup's path."""
    directory = damage.directory
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if damage.keep == 0:
        backup = directory.with_name(f"{directory.name}.damaged-{stamp}")
        directory.rename(backup)
        return backup
    path = directory / STORE
    backup = directory / f"{STORE}.damaged-{stamp}"
    _copy_store(path, backup)
    with TrialStore(path) as store:
        store.truncate(damage.keep)
        if damage.drop_checkpoint:
            store.drop_checkpoint()
        for key in damage.bad_meta:
            store.delete_meta(key)
    return backup


def _copy_store(path: Path, backup: Path) -> None:
    """A consistent copy of a store (its WAL included) through SQLite, or of its bytes when SQLite cannot."""
    try:
        with closing(sqlite3.connect(path)) as source, closing(sqlite3.connect(backup)) as target:
            source.backup(target)
    except sqlite3.DatabaseError:
        backup.unlink(missing_ok=True)
        shutil.copy2(path, backup)
