"""NAS-Bench-101 results as one table: the shared tables (or an imported official one) normalised.

Every source becomes rows of ``hash, num_vertices, adjacency (49-char padded), ops, val_acc_epoch4/12/36/108
(fractions), train_time_s, trainable_params`` plus ``test_acc_epoch108`` where the source has test accuracy.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from nassearch.data.tables import TABLES, load_csv, load_json
from nassearch.errors import DataError

COLUMNS = ("hash", "num_vertices", "adjacency", "ops", "val_acc_epoch4", "val_acc_epoch12", "val_acc_epoch36",
           "val_acc_epoch108", "train_time_s", "trainable_params")
DEFAULT_TABLES = ("nb101_10k", "nb101_1k_specs")
NB101_TABLES = ("nb101_10k", "nb101_1k_specs", "nb101_official")
MAX_VERTICES = 7  # NAS-Bench-101's cell size limit; adjacency is stored padded to 7 x 7


def _padded(matrix: Sequence[Sequence[int]]) -> str:
    full = np.zeros((MAX_VERTICES, MAX_VERTICES), dtype=np.int64)
    v = len(matrix)
    full[:v, :v] = np.asarray(matrix)
    return "".join(map(str, full.ravel()))


def _from_specs_json(data_dir: str | os.PathLike | None) -> pd.DataFrame:
    archs = load_json("nb101_1k_specs", data_dir)["archs"]
    return pd.DataFrame({
        "hash": [a["key"] for a in archs], "num_vertices": [a["num_vertices"] for a in archs],
        "adjacency": [_padded(a["adjacency"]) for a in archs], "ops": [",".join(a["ops"]) for a in archs],
        **{c: [a[c] for a in archs] for c in COLUMNS[4:]},
    })


def _check_cells(frame: pd.DataFrame, name: str) -> None:
    """DataError naming the first row whose cell columns are malformed (adjacency not 49 bits, vertex count
    outside 2..7): the space would otherwise fail on it mid-run."""
    adjacency = frame["adjacency"].astype(str).str.fullmatch(r"[01]{%d}" % (MAX_VERTICES * MAX_VERTICES))
    vertices = pd.to_numeric(frame["num_vertices"], errors="coerce").between(2, MAX_VERTICES)
    bad = np.flatnonzero(~(adjacency & vertices).to_numpy())
    if len(bad):
        row = frame.iloc[bad[0]]
        raise DataError(f"NAS-Bench-101 table {name}: row {bad[0]} (cell {row['hash']}) has adjacency "
                        f"{str(row['adjacency'])[:60]!r} and {row['num_vertices']!r} vertices; expected "
                        f"{MAX_VERTICES * MAX_VERTICES} 0/1 characters and 2-{MAX_VERTICES} vertices: the table is "
                        "damaged; make it again from the official release (nassearch data import nasbench101 ...)")


def load_nb101_table(data_dir: str | os.PathLike | None = None,
                     tables: Sequence[str] = DEFAULT_TABLES) -> pd.DataFrame:
    """The named NB101 tables concatenated (they must not share a cell), indexed 0..n-1."""
    frames = []
    for name in tables:
        if name not in NB101_TABLES:
            raise ValueError(f"unknown NAS-Bench-101 table {name!r}; known: {', '.join(NB101_TABLES)}")
        frame = _from_specs_json(data_dir) if TABLES[name].path.endswith(".json") else load_csv(name, data_dir)
        keep = [c for c in frame.columns if c in COLUMNS or c == "test_acc_epoch108"]
        _check_cells(frame, name)
        frames.append(frame[keep])
    table = pd.concat(frames, ignore_index=True)
    repeated = table["hash"][table["hash"].duplicated()]
    if len(repeated):
        raise DataError(f"NAS-Bench-101 tables {', '.join(tables)} both hold cell {repeated.iloc[0]}; "
                        "use tables that do not overlap")
    return table
