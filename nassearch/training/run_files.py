"""The files of a final-training run: its output directory's record, ``log.csv``, and ``checkpoint.pt``.

Both trainings (``retrain``'s DARTS protocol and ``recipe_retrain``) write the same way: the record of what the
run trains (``config.yaml``), checked again on ``--resume``; one ``log.csv`` row per finished epoch and the
checkpoint, each replaced atomically after every epoch; checkpoints read with ``weights_only``.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from nassearch import config as cfg
from nassearch.errors import RunDirError

log = logging.getLogger(__name__)

CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "scaler", "log", "train_seconds")
CHECKPOINT_FIX = "delete it to restart the run from epoch 0, or train into another --out"


def short_reason(exc: BaseException) -> str:
    """An exception as one short line: its type and message with whitespace collapsed, at most 200 chars."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= 200 else text[:197] + "..."


def check_out_dir(out: Path, resume: bool, identity: dict[str, str], settings_key: str, settings: dict[str, Any],
                  resumable: Sequence[str] = ()) -> None:
    """Check that ``out`` may be used: empty or absent without ``resume``; with it, a run whose ``config.yaml``
    records the same ``identity`` values (what is trained, e.g. the genotype) and the same ``settings`` under
    ``settings_key`` up to the ``resumable`` keys (those that do not change the run's numbers). Writes nothing."""
    stored_path = out / "config.yaml"
    if not resume:
        if out.exists() and any(out.iterdir()):
            raise RunDirError(f"{out} already holds a retrain run: continue it with --resume, or choose "
                              "another --out")
        return
    if not stored_path.is_file():
        raise RunDirError(f"--resume: {out} holds no retrain run (no config.yaml); drop --resume to start one")
    stored = cfg.read_yaml(stored_path, "retrain run config")
    if (not isinstance(stored, dict) or not all(isinstance(stored.get(key), str) for key in identity)
            or not isinstance(stored.get(settings_key), dict)):
        recorded = " and ".join([*identity, settings_key])
        raise RunDirError(f"--resume: {stored_path} does not record the run's {recorded}; it is damaged: "
                          "choose another --out (or delete the directory to start again)")
    for key, value in identity.items():
        if stored[key] != value:
            raise RunDirError(f"--resume: {out} trains another {key} ({stored_path}); choose another --out")
    for key, value in stored[settings_key].items():
        if key not in resumable and settings.get(key) != value:
            raise RunDirError(f"--resume: {out} was started with {key}={value!r}, not {settings.get(key)!r} "
                              f"({stored_path}); pass the same settings or choose another --out")


def read_checkpoint(path: Path, epochs: int, columns: Sequence[str]) -> dict[str, Any]:
    """A run's checkpoint, read with ``weights_only`` (tensors and plain data only: a crafted pickle is
    refused unrun) and checked for its keys and its log (one row of ``columns`` per finished epoch, at most
    ``epochs``); RunDirError naming the file otherwise."""
    if path.stat().st_size == 0:
        raise RunDirError(f"--resume: checkpoint {path} is empty (0 bytes); {CHECKPOINT_FIX}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's message suggests weights_only=False: not advice to pass on
        raise RunDirError(f"--resume: checkpoint {path} is refused: it is damaged or holds objects other than "
                          f"tensors and plain data (none of it was run); {CHECKPOINT_FIX}") from None
    except (OSError, RuntimeError, EOFError, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise RunDirError(f"--resume: checkpoint {path} cannot be read, it is truncated or not a torch file "
                          f"({short_reason(exc)}); {CHECKPOINT_FIX}") from None
    if not isinstance(checkpoint, dict):
        raise RunDirError(f"--resume: checkpoint {path} holds a {type(checkpoint).__name__}, not a mapping with keys "
                          f"{', '.join(CHECKPOINT_KEYS)}; {CHECKPOINT_FIX}")
    missing = [key for key in CHECKPOINT_KEYS if key not in checkpoint]
    if missing:
        raise RunDirError(f"--resume: checkpoint {path} lacks key(s) {', '.join(missing)}; {CHECKPOINT_FIX}")
    rows, seconds = checkpoint["log"], checkpoint["train_seconds"]
    if not (isinstance(rows, list) and len(rows) <= epochs
            and all(_is_log_row(row, epoch, columns) for epoch, row in enumerate(rows, start=1))):
        raise RunDirError(f"--resume: checkpoint {path} has a log that is not one row ({', '.join(columns)}) "
                          f"per finished epoch 1, 2, ... of at most {epochs}; {CHECKPOINT_FIX}")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < math.inf:
        raise RunDirError(f"--resume: checkpoint {path} has train_seconds {seconds!r}, not a number >= 0; "
                          f"{CHECKPOINT_FIX}")
    return checkpoint


def _is_log_row(row: Any, epoch: int, columns: Sequence[str]) -> bool:
    """Whether ``row`` is epoch ``epoch``'s row of a log: a finite number for every column."""
    return (isinstance(row, dict) and row.get("epoch") == epoch
            and all(isinstance(row.get(column), (int, float)) and math.isfinite(row[column]) for column in columns))


def restore_checkpoint(path: Path, checkpoint: dict[str, Any], **objects: Any) -> tuple[list[dict[str, float]], float]:
    """Load each of ``objects`` (model, optimizer, scheduler, scaler: anything with ``load_state_dict``) from the
    checkpoint's entry of the same name; RunDirError when the checkpoint does not fit them. Returns the logged
    epochs' rows and the training seconds so far."""
    try:
        for key, target in objects.items():
            target.load_state_dict(checkpoint[key])
        return checkpoint["log"], checkpoint["train_seconds"]
    except (RuntimeError, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise RunDirError(f"--resume: checkpoint {path} does not fit the run's network and "
                          f"optimizer ({short_reason(exc)}); {CHECKPOINT_FIX}") from None


def resume_run(path: Path, checkpoint: dict[str, Any] | None, out: Path, epochs: int, main: bool,
               **objects: Any) -> tuple[list[dict[str, float]], float]:
    """``([], 0.0)`` for a fresh run; else :func:`restore_checkpoint` (the main process logs where it resumes)."""
    if checkpoint is None:
        return [], 0.0
    rows, seconds = restore_checkpoint(path, checkpoint, **objects)
    if main:
        log.info("resuming %s after epoch %d of %d", out, len(rows), epochs)
    return rows, seconds


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` into a temporary file beside ``path``, then replace ``path`` with it."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def write_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Replace the checkpoint ``path`` atomically with ``state``."""
    write_atomically(path, lambda tmp: torch.save(state, tmp))


def write_log(path: Path, columns: Sequence[str], rows: list[dict[str, float]]) -> None:
    """Replace ``log.csv`` atomically with a header of ``columns`` and ``rows``."""
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, columns)
            writer.writeheader()
            writer.writerows(rows)

    write_atomically(path, write)
