"""Tabular evaluators: answer from benchmark tables instead of training (NAS-Bench-201, NAS-Bench-101).

``nb201_tabular`` reads ``nasbench201/nb201_12epoch.csv.gz`` (NB201's 12-epoch schedule, the mean
over seeds; see the data README) and, when latencies are asked for, ``nb201_latency_ms.csv.gz``.
Params and FLOPs come from the space's own cost model for the dataset's network (classes and input
size). The table carries no training times, so each query costs the documented constant
``cost_per_query_s`` (default 1 s: a cost budget then counts queries).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from nassearch.evaluators.base import Evaluator, Result
from nassearch.data.tables import TABLES, fix_hint, load_csv
from nassearch.errors import DataError
from nassearch.data.nb101_table import DEFAULT_TABLES, load_nb101_table
from nassearch.spaces.nasbench101 import NasBench101Space
from nassearch.spaces.nasbench101_cell import NB101Cell
from nassearch.spaces.nasbench201 import NUM_EDGES, OPS, NasBench201Space, NB201Arch, arch_codes, parse_arch

#: dataset -> (validation column, test column, classes, input size)
NB201_DATASETS: dict[str, tuple[str, str, int, int]] = {
    "cifar10": ("cifar10_valid_val_acc", "cifar10_test_acc", 10, 32),
    "cifar100": ("cifar100_val_acc", "cifar100_test_acc", 100, 32),
    "ImageNet16-120": ("imagenet16_val_acc", "imagenet16_test_acc", 120, 16),
}


#: Tables ``nb201_tabular`` reads: the shared 12-epoch table, or one imported from the official release.
NB201_TABLES = ("nb201_12epoch", "nb201_official")


class NasBench201Tabular(Evaluator):
    """NAS-Bench-201 answered from a table: accuracies, params, FLOPs, device latencies.

    ``table``: ``nb201_12epoch`` (the shared table, 12-epoch schedule) or ``nb201_official`` (made by
    ``nassearch data import nasbench201``; ``epochs`` 200, the papers' schedule, by default, or 12).
    Metrics: ``val_acc`` (cifar10: trained on the 25k train split, scored on the 25k valid split; cifar100 and
    ImageNet16-120: the ``x-valid`` half of the evaluation set), ``test_acc`` (cifar10: trained on train + valid,
    scored on the test set; the others: the ``x-test`` half), both the mean over the official seeds at the final
    epoch; ``params`` and ``flops`` (millions), and ``lat_<device>`` (ms) for each device named in
    ``latency_devices`` (columns of the latency table without the ``lat_`` prefix, e.g. ``1080ti_bs1``).
    """

    batched = True
    name = "nb201_tabular"

    def __init__(self, space: NasBench201Space, data_dir: str | None = None, dataset: str = "cifar10",
                 latency_devices: list[str] | None = None, cost_per_query_s: float = 1.0,
                 table: str = "nb201_12epoch", epochs: int | None = None) -> None:
        super().__init__(space)
        if not isinstance(space, NasBench201Space):
            raise ValueError(f"nb201_tabular answers only for space nasbench201, not {space.name!r}")
        if (space.channels, space.cells_per_stage) != (16, 5):
            raise ValueError("nb201_tabular holds results of the NB201 network with channels=16 and "
                             f"cells_per_stage=5; the space is configured with {space.channels} and "
                             f"{space.cells_per_stage}: remove those space settings")
        if dataset not in NB201_DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(NB201_DATASETS)}, got {dataset!r}")
        if cost_per_query_s <= 0:
            raise ValueError(f"cost_per_query_s must be > 0 (a cost budget charges it per query), got {cost_per_query_s}")
        self.dataset = dataset
        self.cost_per_query_s = float(cost_per_query_s)
        val_col, test_col, classes, size = NB201_DATASETS[dataset]
        self.table_name, self.epochs = table, self._schedule(table, epochs)
        self.source = f"{table}, {self.epochs}-epoch schedule, mean over the official seeds"

        frame = load_csv(self.table_name, data_dir)
        if self.table_name == "nb201_official":
            val_col, test_col = f"{val_col}_e{self.epochs}", f"{test_col}_e{self.epochs}"
            if frame[[val_col, test_col]].isna().any().any():
                raise ValueError(f"the imported table nb201_official has no {self.epochs}-epoch results for {dataset} "
                                 f"(NAS-Bench-201 v1.0 has 12-epoch results for cifar10-valid only): set epochs: "
                                 "200, or import v1.1 / NATS-Bench")
        archs = [parse_arch(s) for s in frame["arch_str"]]
        codes = arch_codes(archs)
        if len(np.unique(codes)) != len(codes):
            spec = TABLES[self.table_name]
            raise DataError(f"{spec.path} repeats an architecture; {fix_hint(spec)}")
        self._row_of_code = np.full(len(OPS) ** NUM_EDGES, -1, dtype=np.int64)
        self._row_of_code[codes] = np.arange(len(codes))
        self.official_index = frame["index"].to_numpy(np.int64)
        self.archs: list[NB201Arch] = archs

        cost_space = NasBench201Space(space.channels, space.cells_per_stage, classes, size)
        params, flops = cost_space.cost_batch(archs)
        columns = {"val_acc": frame[val_col].to_numpy(float), "test_acc": frame[test_col].to_numpy(float),
                   "params": params, "flops": flops}
        columns.update(self._latency_columns(latency_devices or [], frame["arch_str"], data_dir))
        self._metric_names = tuple(columns)
        self._values = np.column_stack(list(columns.values()))

    @staticmethod
    def _schedule(table: str, epochs: int | None) -> int:
        """The training schedule (epochs) the table answers for, checked against the table."""
        if table not in NB201_TABLES:
            raise ValueError(f"table must be one of {', '.join(NB201_TABLES)}, got {table!r}")
        if table == "nb201_12epoch":
            if epochs not in (None, 12):
                raise ValueError(f"table nb201_12epoch holds the 12-epoch schedule only, not epochs: {epochs}; for "
                                 "the papers' 200-epoch results import the official file (nassearch data import "
                                 "nasbench201 FILE) and set table: nb201_official")
            return 12
        if epochs not in (None, 12, 200):
            raise ValueError(f"epochs must be 200 or 12 (the official schedules), got {epochs!r}")
        return 200 if epochs is None else epochs

    @staticmethod
    def _latency_columns(devices: list[str], arch_strs, data_dir: str | None) -> dict[str, np.ndarray]:
        if not devices:
            return {}
        latency = load_csv("nb201_latency", data_dir)
        available = [c[len("lat_"):] for c in latency.columns if c.startswith("lat_")]
        unknown = [d for d in devices if d not in available]
        if unknown:
            raise ValueError(f"latency_devices: unknown device(s) {', '.join(unknown)}; "
                             f"known: {', '.join(available)}")
        if not np.array_equal(latency["arch_str"].to_numpy(), arch_strs.to_numpy()):
            raise DataError("nasbench201/nb201_latency_ms.csv.gz rows are not in the accuracy table's order")
        return {f"lat_{d}": latency[f"lat_{d}"].to_numpy(float) for d in devices}

    @property
    def metrics(self) -> tuple[str, ...]:
        return self._metric_names

    def rows(self, archs: Sequence[NB201Arch] | np.ndarray) -> np.ndarray:
        """Table row of each architecture (op-index tuples or an int array (n, 6))."""
        rows = self._row_of_code[arch_codes(archs)]
        if np.any(rows < 0):
            raise DataError(f"an architecture is missing from {TABLES[self.table_name].path}; "
                            f"{fix_hint(TABLES[self.table_name])}")
        return rows

    def query_batch(self, archs: Sequence[NB201Arch] | np.ndarray) -> np.ndarray:
        """Vectorised lookup: float array (n, len(metrics)) in the order of ``metrics``."""
        return self._values[self.rows(archs)]

    def index_of(self, arch: NB201Arch) -> int:
        """The official NAS-Bench-201 index of an architecture."""
        return int(self.official_index[self.rows([arch])[0]])

    def evaluate(self, arch: NB201Arch) -> Result:
        return self.evaluate_batch([arch])[0]

    def evaluate_batch(self, archs: Sequence[NB201Arch]) -> list[Result]:
        start = time.perf_counter()
        values = self.query_batch(archs)
        wall = (time.perf_counter() - start) / max(len(archs), 1)
        return [Result(dict(zip(self._metric_names, map(float, row))), self.cost_per_query_s, wall)
                for row in values]

    def reference_values(self, metric: str) -> np.ndarray | None:
        if metric not in self._metric_names:
            return None
        return self._values[:, self._metric_names.index(metric)]


class NasBench101Tabular(Evaluator):
    """NAS-Bench-101 answered from the NB101 tables in the data directory.

    Metrics (percent): ``val_acc`` at the configured ``epochs`` budget, ``val_acc_epoch4/12/36/108`` (the
    budgets the tables hold: an import of ``nasbench_only108.tfrecord`` has 108 only), ``test_acc`` where
    the table has test accuracy (an imported official table; the shared tables have none), ``params``
    (millions, the table's trainable parameters) and ``train_time_s``. The cost of a
    query is the table's 108-epoch training time, scaled by ``epochs / 108`` for shorter budgets.
    The shared tables hold 11,000 of the 423,624 cells: asking for another cell is an error (use
    ``space: {name: nasbench101, restrict_to_table: true}``).
    """

    name = "nb101_tabular"

    def __init__(self, space: NasBench101Space, data_dir: str | None = None, tables: list[str] | None = None,
                 epochs: Literal[4, 12, 36, 108] = 108) -> None:
        super().__init__(space)
        if not isinstance(space, NasBench101Space):
            raise ValueError(f"nb101_tabular answers only for space nasbench101, not {space.name!r}")
        if space.network != NasBench101Space().network:
            raise ValueError("nb101_tabular holds results of the NB101 network with its default settings; "
                             "remove the space's network settings")
        self.tables = tuple(tables or DEFAULT_TABLES)
        table = load_nb101_table(data_dir, self.tables)
        self.epochs = epochs
        self.hashes = table["hash"].to_numpy()
        self._row_of_hash = {h: i for i, h in enumerate(self.hashes)}
        accuracies = self._accuracies(table)
        if f"val_acc_epoch{epochs}" not in accuracies:
            held = [name.removeprefix("val_acc_epoch") for name in accuracies if name.startswith("val_acc_epoch")]
            raise DataError(f"NAS-Bench-101 tables {', '.join(self.tables)} hold no results at {epochs} epochs: set "
                            f"epochs to {' or '.join(held)}, or import nasbench_full.tfrecord, which has every budget")
        columns = {"val_acc": accuracies[f"val_acc_epoch{epochs}"], **accuracies}
        columns["params"] = table["trainable_params"].to_numpy(float) / 1e6
        columns["train_time_s"] = table["train_time_s"].to_numpy(float)
        self._metric_names = tuple(columns)
        self._values = np.column_stack(list(columns.values()))
        self._cost = columns["train_time_s"] * epochs / 108

    def _accuracies(self, table: pd.DataFrame) -> dict[str, np.ndarray]:
        """Accuracy metrics (percent) of the budgets the tables hold; a column empty for some cells only is an
        error (a damaged table), one empty for all cells a budget the release lacks (nasbench_only108)."""
        sources = {f"val_acc_epoch{e}": f"val_acc_epoch{e}" for e in (4, 12, 36, 108)}
        if "test_acc_epoch108" in table:
            sources["test_acc"] = "test_acc_epoch108"
        accuracies = {}
        for metric, column in sources.items():
            missing = table[column].isna().to_numpy()
            if missing.all():
                continue
            if missing.any():
                raise DataError(f"NAS-Bench-101 tables {', '.join(self.tables)} lack {column} for {missing.sum()} "
                                f"of {len(table)} cells (e.g. {table['hash'][missing].iloc[0]}): replace or "
                                "re-import the damaged table")
            accuracies[metric] = 100.0 * table[column].to_numpy(float)
        return accuracies

    @property
    def metrics(self) -> tuple[str, ...]:
        return self._metric_names

    def row(self, cell: NB101Cell) -> int:
        """Table row of a cell (by its NB101 fingerprint); DataError if the tables lack it."""
        key = self.space.key(cell)
        if key not in self._row_of_hash:
            raise DataError(f"NAS-Bench-101 cell {key} ({self.space.to_str(cell)}) is not in the tables "
                            f"{', '.join(self.tables)} ({len(self.hashes)} cells): set space.restrict_to_table: "
                            "true, or import the full table with `nassearch data import nasbench101`")
        return self._row_of_hash[key]

    def evaluate(self, cell: NB101Cell) -> Result:
        start = time.perf_counter()
        row = self.row(cell)
        metrics = dict(zip(self._metric_names, map(float, self._values[row])))
        return Result(metrics, float(self._cost[row]), time.perf_counter() - start)

    def reference_values(self, metric: str) -> np.ndarray | None:
        if metric not in self._metric_names:
            return None
        return self._values[:, self._metric_names.index(metric)]
