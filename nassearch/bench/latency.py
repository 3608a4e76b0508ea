"""Latency-predictor benchmark (``nassearch bench latency CONFIG``): MAPE, Acc(δ) and Kendall's tau.

Metrics (NAR-Former V2 supplement, eqs 7-8, after NNLQP), over the n test networks with true latency
y_i > 0 and prediction y'_i::

    MAPE     = 1/n Σ |y_i - y'_i| / y_i × 100 %
    Acc(δ)   = 1/n Σ cnt(|y_i - y'_i| / y_i <= δ) × 100 %      (δ = 5 %, 10 %; the boundary counts)

plus Kendall's tau of predictions against true latencies, and fit / predict wall times.

Sources (``benchmark.source``):

- ``{name: nb201, devices: all | [1080ti_bs1, ...]}``: the NB201 latency table (HELP; 15,625 networks,
  27 devices, ms). The networks' whole-network graphs (input 1x3x32x32, batch 1, about 215 nodes) are
  built once per run and shared by every device. For seed s, train_fraction x 15,625 (rounded half up:
  1,563 for 10 %) training networks are drawn by :func:`nassearch.bench.harness.train_indices` (the same
  networks on every device); the test set is every held-out network, or with ``test_size`` a random
  subset of that many of them (drawn by ``default_rng([s, n_train, test_size])``; the table says so).
- ``{name: help_ofa, devices: all | [2080ti_bs1, ...]}``: HELP's latencies of 5,000 OFA MobileNetV3 subnets
  (``ofa/help_ofa_5k_latency_ms.csv``; 4 GPUs at batch 1, 32 and 64, ms). Each subnet's whole-network graph
  is traced at its own resolution (input Bx3xRxR, R 128-224, about 290 nodes) with the device's batch size B,
  once per batch size the devices need, and shared by those devices; splits as for ``nb201``.
- ``{name: file, path: data.npz, splits: [random, leave_family_out]}``: a
  :class:`~nassearch.data.latency_dataset.LatencyDataset` file (e.g. ``nassearch data measure-latency``);
  ``path`` is relative to the working directory. ``random``: train on a seeded ``train_fraction`` of the
  networks, test on the rest; ``leave_family_out``: for each network family in turn, train on all other
  families and test on that one (the seed then only changes the predictor's initialisation and the
  ``test_size`` subset).

For each predictor, task (device x split) and seed in ``seed .. seed + seeds - 1``, a fresh predictor
(built with that seed) is fit on the training networks' latencies in ms and predicts the test networks
(in chunks of :data:`PREDICT_CHUNK`, torch on one thread).

Outputs in ``output.dir/name/``: ``results.csv`` (one row per cell, appended as each finishes; a cell
already there is skipped, so rerunning a killed benchmark continues it), ``results.md`` (mean ± std over
seeds per device x split x predictor, and the mean over devices), the resolved ``config.yaml``,
``source.json`` (what the data was: a file's sha256), ``predictions/`` (test predictions of the first
seed's cells, .npz) and ``plots/scatter_<predictor>.png`` (predicted vs true latency, one panel per task,
first seed). Source, train fraction, test size and a predictor's settings must not change between runs
in one directory (devices, splits, seeds and predictors may be added); ``--overwrite`` starts afresh.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from nassearch import run_dir as dirs
from nassearch.bench.harness import (OUTPUT_DEFAULTS, BenchConfigBase, BenchOutcome, CellRun, PredictorFactory,
                                     ResultColumns, at_least_one, benchmark_section, build_predictor,
                                     check_resumable, load_raw, markdown_header, markdown_row, mean_std,
                                     predictor_specs, single_thread, train_indices)
from nassearch.validation import reject_unknown, typed, validate_header
from nassearch.errors import ConfigError, DataError, RunDirError
from nassearch.graph import ArchGraph
from nassearch.predictors.base import Predictor

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

#: The latency columns of the NB201 latency table (``lat_<device>``), in its column order.
NB201_DEVICES: tuple[str, ...] = (
    "1080ti_bs1", "1080ti_bs32", "1080ti_bs256", "2080ti_bs1", "2080ti_bs32", "2080ti_bs256",
    "essential_ph1", "eyeriss", "fpga", "gold_6226", "gold_6240", "pixel2", "pixel3", "raspi4",
    "samsung_a50", "samsung_s7", "silver_4114", "silver_4210r", "titan_rtx_bs1", "titan_rtx_bs32",
    "titan_rtx_bs256", "titanx_bs1", "titanx_bs32", "titanx_bs256", "titanxp_bs1", "titanxp_bs32",
    "titanxp_bs256")
#: The latency columns of HELP's OFA table (``lat_<gpu>_bs<batch>``), in its column order.
HELP_OFA_DEVICES: tuple[str, ...] = tuple(f"{gpu}_bs{batch}" for gpu in ("2080ti", "titan_rtx", "titan_xp", "v100")
                                          for batch in (1, 32, 64))
SOURCES = ("nb201", "file", "help_ofa")
SPLITS = ("random", "leave_family_out")
TOP_LEVEL = ("name", "seed", "benchmark", "output")
BENCHMARK_KEYS = ("source", "train_fraction", "test_size", "seeds", "predictors", "workers")
SOURCE_KEYS: dict[str, tuple[str, ...]] = {"nb201": ("name", "devices"), "help_ofa": ("name", "devices"),
                                          "file": ("name", "path", "splits")}
#: The devices of the table sources, and the table's name in messages.
TABLE_DEVICES: dict[str, tuple[tuple[str, ...], str]] = {"nb201": (NB201_DEVICES, "NB201"),
                                                         "help_ofa": (HELP_OFA_DEVICES, "HELP OFA")}
BENCHMARK_DEFAULTS: dict[str, Any] = {"train_fraction": 0.1, "test_size": None, "seeds": 3, "workers": 2}
#: ``results.csv``: a cell (predictor label, device, split, seed), its train and test sizes and its numbers.
RESULTS = ResultColumns({"predictor": str, "device": str, "split": str, "seed": int, "train_size": int,
                         "test_size": int, **dict.fromkeys(("mape", "acc5", "acc10", "kendall", "fit_s", "predict_s"),
                                                           float)}, key=4)
COLUMNS = RESULTS.names
METRIC_COLUMNS = COLUMNS[6:]
#: Test graphs per ``predict`` call: whole-network features of 14,000 graphs would take gigabytes.
PREDICT_CHUNK = 512
#: Relative slack on Acc(δ)'s boundary so that |y - y'| / y == δ counts despite rounding.
BOUNDARY_SLACK = 1e-12


# ---------------------------------------------------------------------------------------------
# Metrics


def _checked(true: Any, pred: Any) -> tuple[np.ndarray, np.ndarray]:
    true, pred = np.asarray(true, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    if true.ndim != 1 or true.shape != pred.shape or not len(true):
        raise ValueError(f"need two non-empty 1-d arrays of one length, got shapes {true.shape} and {pred.shape}")
    if not np.all(true > 0):
        raise ValueError("relative errors need true latencies > 0")
    return true, pred


def mape(true: Any, pred: Any) -> float:
    """Mean absolute percentage error, eq. (7): mean |y - y'| / y x 100 (percent)."""
    true, pred = _checked(true, pred)
    return float(np.mean(np.abs(true - pred) / true) * 100.0)


def error_bound_accuracy(true: Any, pred: Any, delta: float) -> float:
    """Acc(δ), eq. (8): percent of predictions with |y - y'| / y <= δ (boundary inclusive)."""
    if not delta >= 0:
        raise ValueError(f"delta must be >= 0, got {delta}")
    true, pred = _checked(true, pred)
    return float(np.mean(np.abs(true - pred) / true <= delta * (1 + BOUNDARY_SLACK)) * 100.0)


def latency_metrics(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """MAPE, Acc(5%), Acc(10%) (percent) and Kendall's tau (NaN when the predictions are constant)."""
    return {"mape": mape(true, pred), "acc5": error_bound_accuracy(true, pred, 0.05),
            "acc10": error_bound_accuracy(true, pred, 0.10),
            "kendall": float(stats.kendalltau(pred, true).statistic)}


# ---------------------------------------------------------------------------------------------
# Config


@dataclass(frozen=True)
class LatencyBenchConfig(BenchConfigBase):
    """A validated latency-benchmark config with every default filled in."""

    benchmark: dict[str, Any]
    output: dict[str, Any]

    @property
    def source(self) -> dict[str, Any]:
        """The ``benchmark.source`` section."""
        return self.benchmark["source"]


def validate_latency_bench(raw: dict[str, Any], resolve_predictors: bool = True) -> LatencyBenchConfig:
    """Check a raw latency-benchmark config and fill in defaults; raise ConfigError naming the key.

    With ``resolve_predictors=False`` predictor sections only need a ``name`` (an injected factory
    builds them).
    """
    raw = copy.deepcopy(raw)
    name, seed, output = validate_header(raw, TOP_LEVEL, ("name", "benchmark"), "a latency benchmark",
                                         OUTPUT_DEFAULTS)
    return LatencyBenchConfig(name=name, seed=seed, benchmark=_benchmark(raw["benchmark"], resolve_predictors),
                              output=output)


def _benchmark(raw: Any, resolve_predictors: bool) -> dict[str, Any]:
    bench = benchmark_section(raw, BENCHMARK_KEYS, BENCHMARK_DEFAULTS, ("source", "predictors"),
                              "{source: nb201, predictors: [static_xgb]}")
    bench["source"] = _source(bench["source"])
    fraction = typed("benchmark.train_fraction", bench["train_fraction"], float)
    if not 0 < fraction < 1:
        raise ConfigError(f"benchmark.train_fraction: must lie strictly between 0 and 1, got {fraction}")
    bench["train_fraction"] = fraction
    if bench["test_size"] is not None and typed("benchmark.test_size", bench["test_size"], int) < 1:
        raise ConfigError(f"benchmark.test_size: must be >= 1 or null (every held-out network), "
                          f"got {bench['test_size']}")
    at_least_one(bench, ("seeds", "workers"))
    bench["predictors"] = predictor_specs(bench["predictors"], resolve_predictors)
    return bench


def _source(raw: Any) -> dict[str, Any]:
    source = {"name": raw} if isinstance(raw, str) else raw
    if not isinstance(source, dict) or source.get("name") not in SOURCES:
        raise ConfigError(f"benchmark.source: expected {' or '.join(SOURCES)}, e.g. source: {{name: nb201, "
                          f"devices: all}}, {{name: file, path: cpu_latency.npz}} or {{name: help_ofa, devices: "
                          f"[v100_bs1]}}; got {raw!r}")
    source = dict(source)
    reject_unknown(source, SOURCE_KEYS[source["name"]], "benchmark.source", f" for source {source['name']!r}")
    if source["name"] in TABLE_DEVICES:
        source["devices"] = _devices(source.get("devices", "all"), *TABLE_DEVICES[source["name"]])
        return source
    if source.get("path") is None:
        raise ConfigError("benchmark.source.path: missing; the LatencyDataset .npz to benchmark on "
                          "(written by `nassearch data measure-latency --out PATH`)")
    typed("benchmark.source.path", source["path"], str)
    splits = typed("benchmark.source.splits", source.get("splits", ["random"]), list[str])
    bad = [s for s in splits if s not in SPLITS]
    if not splits or bad or len(set(splits)) != len(splits):
        raise ConfigError(f"benchmark.source.splits: expected distinct values among {', '.join(SPLITS)}, "
                          f"got {splits}")
    source["splits"] = splits
    return source


def _devices(raw: Any, known: tuple[str, ...], table: str) -> str | list[str]:
    if raw == "all":
        return "all"
    devices = typed("benchmark.source.devices", raw, list[str])
    devices = [d.removeprefix("lat_") for d in devices]
    unknown = [d for d in devices if d not in known]
    if unknown:
        raise ConfigError(f"benchmark.source.devices: unknown {table} latency device {unknown[0]!r}; "
                          f"known: all, {', '.join(known)}")
    if not devices or len(set(devices)) != len(devices):
        raise ConfigError(f"benchmark.source.devices: expected 'all' or distinct device names, got {raw}")
    return devices


# ---------------------------------------------------------------------------------------------
# Data and tasks


@dataclass(frozen=True)
class LatencyTask:
    """One (device, split) of a benchmark: which networks it trains and tests on for a seed."""

    device: str
    split: str  # "random" or "leave_out:<family>"
    latency_ms: np.ndarray  # (n,) for every network of the source
    graphs: list[ArchGraph] | None = None  # the networks' graphs for this task (its batch size); None: the source's


@dataclass
class LatencyData:
    """The networks of a source (graphs built once), their families, the tasks and a description."""

    graphs: list[ArchGraph]  # shared by the tasks that carry no graphs of their own
    families: np.ndarray
    tasks: list[LatencyTask]
    description: str
    fingerprint: dict[str, Any]


def load_source(bench: LatencyBenchConfig, data_dir: str | Path | None = None) -> LatencyData:
    """Read the benchmark's source: build the NB201 or HELP OFA graphs once or load a LatencyDataset file."""
    source = bench.source
    if source["name"] == "nb201":
        return _load_nb201(source, data_dir)
    if source["name"] == "help_ofa":
        return _load_help_ofa(source, data_dir)
    return _load_file(source)


def _load_nb201(source: dict[str, Any], data_dir: str | Path | None) -> LatencyData:
    from nassearch.data.latency_dataset import nb201_latency_archs, nb201_latency_graphs
    from nassearch.spaces.nasbench201 import NasBench201Space

    devices = list(NB201_DEVICES) if source["devices"] == "all" else source["devices"]
    _, table = nb201_latency_archs(None if data_dir is None else str(data_dir))
    latency = _device_columns(table, devices, "NB201")
    start = time.perf_counter()
    graphs = nb201_latency_graphs(NasBench201Space(), None if data_dir is None else str(data_dir))
    log.info("built %d NB201 whole-network graphs in %.0f s", len(graphs), time.perf_counter() - start)
    tasks = [LatencyTask(d, "random", latency[d]) for d in devices]
    return LatencyData(graphs, np.array(["nb201"] * len(graphs)), tasks,
                       f"NB201 latency table ({len(graphs):,} networks, input 1x3x32x32)",
                       {"source": "nb201", "networks": len(graphs)})


def _load_help_ofa(source: dict[str, Any], data_dir: str | Path | None) -> LatencyData:
    from nassearch.data.latency_dataset import help_ofa_latency_archs, ofa_latency_graphs

    devices = list(HELP_OFA_DEVICES) if source["devices"] == "all" else source["devices"]
    archs, table = help_ofa_latency_archs(data_dir)
    latency = _device_columns(table, devices, "HELP OFA")
    batches = {d: int(d.rpartition("_bs")[2]) for d in devices}
    graphs = {b: ofa_latency_graphs(archs, b) for b in sorted(set(batches.values()))}
    tasks = [LatencyTask(d, "random", latency[d], graphs[batches[d]]) for d in devices]
    return LatencyData([], np.array(["ofa_mbv3"] * len(archs)), tasks,
                       f"HELP's OFA MobileNetV3 latency table ({len(archs):,} subnets, input Bx3xRxR at each "
                       f"subnet's resolution R, batch B of the device)", {"source": "help_ofa", "networks": len(archs)})


def _device_columns(table: pd.DataFrame, devices: list[str], name: str) -> dict[str, np.ndarray]:
    """The ``lat_<device>`` columns of a latency table (a DataFrame), checked to exist and to be positive."""
    missing = [d for d in devices if f"lat_{d}" not in table.columns]
    if missing:
        raise DataError(f"the {name} latency table has no column lat_{missing[0]}; re-download it "
                        "(nassearch data list)")
    return {d: _positive(table[f"lat_{d}"].to_numpy(np.float64), f"the {name} latency table",
                         lambda row, d=d: f"line {row + 2}: column lat_{d}", "re-download it (nassearch data list)")
            for d in devices}


def _load_file(source: dict[str, Any]) -> LatencyData:
    from nassearch.data.latency_dataset import LatencyDataset

    path = Path(source["path"]).expanduser()
    dataset = LatencyDataset.load(path)
    latency = _positive(dataset.latency_ms, str(path), lambda i: f"network {i} ({dataset.names[i]})",
                        "measure it again (nassearch data measure-latency)")
    families = np.array(dataset.families)
    tasks: list[LatencyTask] = []
    for split in source["splits"]:
        if split == "random":
            tasks.append(LatencyTask(dataset.device, "random", latency))
            continue
        names = list(dict.fromkeys(dataset.families))
        if len(names) < 2:
            raise ConfigError(f"benchmark.source.splits: leave_family_out needs networks of at least two "
                              f"families; {path} has only {names}")
        tasks.extend(LatencyTask(dataset.device, f"leave_out:{family}", latency) for family in names)
    counts = ", ".join(f"{f} {int((families == f).sum())}" for f in dict.fromkeys(dataset.families))
    return LatencyData(dataset.graphs, families, tasks, f"{path} ({len(dataset):,} networks: {counts})",
                       {"source": "file", "path": str(path), "networks": len(dataset),
                        "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})


def _positive(latency: np.ndarray, what: str, where: Callable[[int], str], fix: str) -> np.ndarray:
    """``latency`` if every value is finite and > 0; else DataError naming ``what``, ``where(i)`` the first bad
    entry is, and ``fix``."""
    bad = np.flatnonzero(~(np.isfinite(latency) & (latency > 0)))
    if len(bad):
        raise DataError(f"{what}, {where(int(bad[0]))}: latency {latency[bad[0]]:g} ms ({len(bad)} such value(s) in "
                        f"all); latencies must be finite and > 0 (relative errors divide by them); {fix}")
    return latency


def split_indices(task: LatencyTask, families: np.ndarray, train_fraction: float, test_size: int | None,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and test network indices of ``task`` for ``seed`` (sorted test indices).

    ``random``: train_fraction x n (rounded half up) networks drawn by ``harness.train_indices``,
    the others held out; ``leave_out:<family>``: every other family trains, the family tests. With
    ``test_size``, the test set is a random subset of at most that many held-out networks.
    """
    n = len(families)
    if task.split == "random":
        train = train_indices(n, int(math.floor(train_fraction * n + 0.5)), seed)
        held_out = np.setdiff1d(np.arange(n), train)
    else:
        family = task.split.removeprefix("leave_out:")
        train, held_out = np.flatnonzero(families != family), np.flatnonzero(families == family)
    if test_size is not None and test_size < len(held_out):
        held_out = np.sort(np.random.default_rng([seed, len(train), test_size]).choice(held_out, test_size,
                                                                                         replace=False))
    return train, held_out


def _check_split_sizes(bench: LatencyBenchConfig, data: LatencyData) -> None:
    for task in data.tasks:
        train, test = split_indices(task, data.families, bench.benchmark["train_fraction"],
                                    bench.benchmark["test_size"], bench.seed)
        if len(train) < 2 or len(test) < 1:
            raise ConfigError(f"benchmark.train_fraction: {bench.benchmark['train_fraction']} of "
                              f"{len(data.families):,} networks gives {len(train)} training and {len(test)} test "
                              f"networks for {task.device} / {task.split}; need >= 2 and >= 1")


# ---------------------------------------------------------------------------------------------
# One cell


def predict_chunked(predictor: Predictor, graphs: Sequence[ArchGraph], chunk: int = PREDICT_CHUNK) -> np.ndarray:
    """``predictor.predict`` over ``graphs`` in chunks (bounded feature memory), float64 (n,)."""
    parts = [np.asarray(predictor.predict(graphs[i:i + chunk]), dtype=np.float64)
             for i in range(0, len(graphs), chunk)]
    pred = np.concatenate(parts) if parts else np.zeros(0)
    if pred.shape != (len(graphs),):
        raise ValueError(f"predictor returned shape {pred.shape} for {len(graphs)} graphs")
    return pred


def run_latency_cell(predictor: Predictor, graphs: Sequence[ArchGraph], latency_ms: np.ndarray,
                     train: np.ndarray, test: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """Fit on the training networks' latencies, predict the test networks (torch on one thread);
    return the metrics (with fit/predict seconds) and the test predictions."""
    with single_thread():
        start = time.perf_counter()
        predictor.fit([graphs[i] for i in train], latency_ms[train])
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        pred = predict_chunked(predictor, [graphs[i] for i in test])
        predict_s = time.perf_counter() - start
    return {**latency_metrics(latency_ms[test], pred), "fit_s": fit_s, "predict_s": predict_s}, pred


def _latency_job(job: tuple[dict[str, Any], int, int, float, int | None],
                 shared: tuple[LatencyData, PredictorFactory]) -> tuple[Any, ...]:
    """One cell in this process, on the shared data with the shared factory."""
    spec, task_index, seed, fraction, test_size = job
    data, factory = shared
    task = data.tasks[task_index]
    train, test = split_indices(task, data.families, fraction, test_size, seed)
    graphs = data.graphs if task.graphs is None else task.graphs
    metrics, pred = run_latency_cell(factory(spec, seed), graphs, task.latency_ms, train, test)
    return spec, task_index, seed, len(train), test, metrics, pred


# ---------------------------------------------------------------------------------------------
# Run directory


def _cell_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The config values a finished cell's numbers depend on (besides its predictor's settings)."""
    source = {k: v for k, v in config["benchmark"]["source"].items() if k not in ("devices", "splits")}
    return {"benchmark.source": source, "benchmark.train_fraction": config["benchmark"]["train_fraction"],
            "benchmark.test_size": config["benchmark"]["test_size"]}


def _check_fingerprint(run_dir: Path, fingerprint: dict[str, Any]) -> None:
    path = run_dir / "source.json"
    if path.is_file() and json.loads(path.read_text()) != fingerprint:
        raise RunDirError(f"{run_dir} was benchmarked on other data than {fingerprint.get('path', 'this source')} "
                          f"now holds ({path}); choose another name or output.dir, or pass --overwrite")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _prediction_path(run_dir: Path, label: str, task: LatencyTask) -> Path:
    return run_dir / "predictions" / _slug(label) / f"{_slug(task.device)}__{_slug(task.split)}.npz"


# ---------------------------------------------------------------------------------------------
# Table and plots


def _test_note(bench: LatencyBenchConfig, data: LatencyData) -> str:
    fraction = bench.benchmark["train_fraction"]
    note = f"random split: train on {fraction:.0%} of the networks (drawn per seed), test on the held-out ones"
    if bench.source["name"] == "file" and "leave_family_out" in bench.source["splits"]:
        note += "; leave_out:F: train on every other family, test on family F"
    if bench.benchmark["test_size"] is not None:
        note += (f"; **test sets are a seeded random subset of at most {bench.benchmark['test_size']:,} held-out "
                 "networks** (to bound CPU time)")
    return note


def format_latency_results(bench: LatencyBenchConfig, data: LatencyData, rows: list[dict[str, Any]]) -> str:
    """Markdown: mean ± std over seeds per device x split x predictor, then the mean over tasks."""
    header = ["device", "split", "predictor", "seeds", "train", "test", "MAPE %", "Acc(5%) %", "Acc(10%) %",
              "Kendall τ", "fit s", "predict s"]
    lines = [f"### {bench.name}: latency prediction on {data.description}", "",
             _test_note(bench, data) + ". Mean ± std over seeds; MAPE, Acc(δ) in percent.", "",
             *markdown_header(header)]
    per_task: dict[str, list[dict[str, float]]] = {}
    for task in data.tasks:
        for spec in bench.benchmark["predictors"]:
            cell = [r for r in rows if (r["predictor"], r["device"], r["split"]) == (spec["label"], task.device,
                                                                                      task.split)]
            if not cell:
                continue
            column = {c: [r[c] for r in cell] for c in COLUMNS[4:]}
            per_task.setdefault(spec["label"], []).append({c: float(np.mean(v)) for c, v in column.items()})
            lines.append(markdown_row([
                task.device, task.split, spec["label"], str(len(cell)), _sizes(column["train_size"]),
                _sizes(column["test_size"]), _stat(column["mape"], ".2f"), _stat(column["acc5"], ".1f"),
                _stat(column["acc10"], ".1f"), _stat(column["kendall"], ".3f"), _stat(column["fit_s"], ".3g"),
                _stat(column["predict_s"], ".3g")]))
    if len(data.tasks) > 1 and per_task:
        lines += ["", f"Mean over tasks (of the per-task means above; {len(data.tasks)} tasks configured):", "",
                  *markdown_header(["predictor", "tasks", "MAPE %", "Acc(5%) %", "Acc(10%) %", "Kendall τ", "fit s"])]
        for label, means in per_task.items():
            avg = {c: np.mean([m[c] for m in means]) for c in means[0]}
            lines.append(markdown_row([label, str(len(means)), f"{avg['mape']:.2f}", f"{avg['acc5']:.1f}",
                                       f"{avg['acc10']:.1f}", f"{avg['kendall']:.3f}", f"{avg['fit_s']:.3g}"]))
    return "\n".join(lines)


def _stat(values: list[float], digits: str) -> str:
    """mean ± std over seeds, or the one value when there is a single seed."""
    return mean_std(values, digits) if len(values) > 1 else f"{values[0]:{digits}}"


def _sizes(values: list[float]) -> str:
    distinct = sorted({int(v) for v in values})
    return f"{distinct[0]:,}" if len(distinct) == 1 else f"{distinct[0]:,}-{distinct[-1]:,}"


def plot_latency_scatter(panels: list[tuple[str, np.ndarray, np.ndarray]], path: Path, title: str) -> Path:
    """Predicted vs true latency (log-log), one panel per (title, true, pred), with y = x and ±10 % lines."""
    import nassearch.plots  # noqa: F401  (selects the Agg backend)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    cols = min(6, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.7 * cols, 2.7 * rows + 0.4), dpi=110, squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_axis_off()
    for ax, (name, true, pred) in zip(axes.flat, panels):
        shown = np.clip(pred, true.min() / 10, None)  # keep non-positive predictions on the log axis
        dense = len(true) > 2000
        ax.scatter(true, shown, s=2 if dense else 6, alpha=0.3 if dense else 0.6, linewidths=0, rasterized=True)
        low, high = true.min() / 1.2, true.max() * 1.2
        grid = np.array([low, high])
        ax.plot(grid, grid, color="black", linewidth=0.7)
        for factor in (0.9, 1.1):
            ax.plot(grid, grid * factor, color="black", linewidth=0.5, linestyle=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{name}\nMAPE {mape(true, pred):.1f}%, Acc10 {error_bound_accuracy(true, pred, 0.1):.0f}%",
                     fontsize=7)
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_minor_formatter(NullFormatter())
        ax.tick_params(which="both", labelsize=6)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("true latency (ms)", fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("predicted (ms)", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _draw_plots(bench: LatencyBenchConfig, data: LatencyData, run_dir: Path) -> list[Path]:
    paths = []
    for spec in bench.benchmark["predictors"]:
        panels = []
        for task in data.tasks:
            stored = _prediction_path(run_dir, spec["label"], task)
            if stored.is_file():
                with np.load(stored, allow_pickle=False) as npz:
                    panels.append((f"{task.device}" + ("" if task.split == "random" else f" {task.split}"),
                                   npz["true"], npz["pred"]))
        if panels:
            paths.append(plot_latency_scatter(panels, run_dir / "plots" / f"scatter_{_slug(spec['label'])}.png",
                                              f"{spec['label']}: predicted vs true latency on the test networks, "
                                              f"seed {bench.seed}"))
    return paths


# ---------------------------------------------------------------------------------------------
# Driver


def run_latency_bench(config: str | Path | dict[str, Any], overrides: Sequence[str] = (),
                      data_dir: str | Path | None = None, workers: int | None = None, overwrite: bool = False,
                      predictor_factory: PredictorFactory | None = None) -> BenchOutcome:
    """Run (or continue) the latency benchmark a config describes; write CSV, markdown, config, plots.

    ``workers`` overrides ``benchmark.workers``; ``overwrite`` deletes the run directory first.
    ``predictor_factory(spec, seed)`` builds each cell's predictor (default: the predictor registry).
    """
    overrides = list(overrides) + ([f"benchmark.workers={workers}"] if workers is not None else [])
    bench = validate_latency_bench(load_raw(config, overrides), resolve_predictors=predictor_factory is None)
    factory = predictor_factory or build_predictor
    run_dir = Path(bench.output["dir"]) / bench.name
    if not overwrite:
        check_resumable(run_dir, bench, _cell_settings, "choose another name or output.dir, or pass --overwrite")
    data = load_source(bench, data_dir)
    _check_split_sizes(bench, data)
    with dirs.open_or_create(run_dir, "benchmark", overwrite):
        return _run_cells(bench, data, factory, run_dir)


def _run_cells(bench: LatencyBenchConfig, data: LatencyData, factory: PredictorFactory,
               run_dir: Path) -> BenchOutcome:
    """The benchmark's missing cells, then its table and plots (``run_dir`` is locked by the caller)."""
    _check_fingerprint(run_dir, data.fingerprint)
    (run_dir / "source.json").write_text(json.dumps(data.fingerprint, indent=1) + "\n")
    fraction, test_size = bench.benchmark["train_fraction"], bench.benchmark["test_size"]
    # seed-major, so a killed run has whole seeds; slow predictors first within a seed (as configured)
    cells = CellRun(run_dir, bench, RESULTS, {
        (spec["label"], task.device, task.split, seed): (spec, t, seed, fraction, test_size)
        for seed in bench.seeds for spec in bench.benchmark["predictors"] for t, task in enumerate(data.tasks)})
    log.info("%d cells to run (%d already in %s)", len(cells.pending), len(cells.done), cells.path)
    start = time.perf_counter()
    for spec, t, seed, n_train, test, metrics, pred in cells.run(_latency_job, (data, factory),
                                                                 bench.benchmark["workers"]):
        task = data.tasks[t]
        if seed == bench.seed:
            path = _prediction_path(run_dir, spec["label"], task)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(path, index=test, true=task.latency_ms[test], pred=pred)
        cells.add({"predictor": spec["label"], "device": task.device, "split": task.split, "seed": seed,
                   "train_size": n_train, "test_size": len(test), **metrics})
        log.info("[%d/%d, %.0f s] %s %s %s seed %d: MAPE %.2f%%, Acc(10%%) %.1f%%, tau %.3f, fit %.1f s, "
                 "predict %.1f s", cells.computed, len(cells.pending), time.perf_counter() - start, spec["label"],
                 task.device, task.split, seed, metrics["mape"], metrics["acc10"], metrics["kendall"],
                 metrics["fit_s"], metrics["predict_s"])
    outcome = cells.finish(lambda rows: format_latency_results(bench, data, rows))
    _draw_plots(bench, data, run_dir)
    return outcome
