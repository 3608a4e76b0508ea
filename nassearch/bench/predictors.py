"""Predictor benchmark (``nassearch bench predictors CONFIG``): rank correlation of surrogate predictors.

Protocol. The population is every architecture the evaluator answers (``space.enumerate()``; its size
must equal the evaluator's table, e.g. NB201's 15,625 cells or the 11,000 cells of the shared NB101
table with ``restrict_to_table: true``). Every architecture is encoded once. For each predictor, train
size N and seed s in ``seed .. seed + seeds - 1``: N training architectures are drawn without
replacement by ``np.random.default_rng([s, N])``; a fresh predictor (built with ``seed=s``) is fit on
their ``target`` metric and predicts the whole population in one call. Kendall's tau and Spearman's rho
of the predictions against ``test_metric`` are reported on (a) the held-out architectures and (b) all
architectures (training set included), with fit and predict wall times.

Outputs in ``output.dir/name/``: ``results.csv`` (one row per predictor x N x seed), ``results.md``
(mean ± std over seeds), the resolved ``config.yaml`` and ``plots/scatter_<predictor>.png``
(predicted vs true on the held-out architectures, largest N, first seed).

Resumability: each cell's row is appended to ``results.csv`` as soon as it finishes, and a cell whose
(predictor, train_size, seed) row is already there is skipped; so rerunning a killed benchmark with the
same config continues where it stopped. Space, evaluator, metrics and the settings of a predictor must
not change between runs in one directory (train sizes, seeds and predictors may be added).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from nassearch import config as cfg
from nassearch import run_dir as dirs
from nassearch.bench.harness import (OUTPUT_DEFAULTS, BenchConfigBase, BenchOutcome, CellRun, PredictorFactory,
                                     ResultColumns, at_least_one, benchmark_section, build_predictor,
                                     check_resumable, load_raw, markdown_header, markdown_row, mean_std,
                                     predictor_specs, single_thread, train_indices)
from nassearch.validation import typed, validate_header
from nassearch.errors import ConfigError
from nassearch.graph import ArchGraph
from nassearch.plots import plot_prediction_scatter
from nassearch.predictors.base import Predictor

log = logging.getLogger(__name__)

TOP_LEVEL = ("name", "seed", "space", "evaluator", "benchmark", "output")
BENCHMARK_KEYS = ("train_sizes", "seeds", "target", "test_metric", "predictors", "workers")
BENCHMARK_DEFAULTS: dict[str, Any] = {"seeds": 5, "target": "val_acc", "test_metric": "test_acc", "workers": 2}
#: ``results.csv``: a cell (predictor label, train size, seed) and its numbers.
RESULTS = ResultColumns({"predictor": str, "train_size": int, "seed": int, **dict.fromkeys((
    "kendall_heldout", "spearman_heldout", "kendall_all", "spearman_all", "fit_s", "predict_s",
    "predict_archs_per_s"), float)}, key=3)
COLUMNS = RESULTS.names
#: Architectures evaluated one by one to check that the table values line up with the population.
ALIGNMENT_CHECKS = 5


@dataclass(frozen=True)
class BenchConfig(BenchConfigBase):
    """A validated predictor-benchmark config with every default filled in."""

    space: dict[str, Any]
    evaluator: dict[str, Any]
    benchmark: dict[str, Any]
    output: dict[str, Any]


# ---------------------------------------------------------------------------------------------
# Config


def validate_bench(raw: dict[str, Any], resolve_predictors: bool = True) -> BenchConfig:
    """Check a raw benchmark config and fill in defaults; raise ConfigError naming the key.

    With ``resolve_predictors=False`` predictor sections only need a ``name`` (an injected factory
    builds them, so the registry is not consulted).
    """
    raw = copy.deepcopy(raw)
    name, seed, output = validate_header(raw, TOP_LEVEL, ("name", "space", "evaluator", "benchmark"),
                                         "a predictor benchmark", OUTPUT_DEFAULTS)
    return BenchConfig(name=name, seed=seed, space=cfg.resolve_component("space", raw["space"]),
                       evaluator=cfg.resolve_component("evaluator", raw["evaluator"]),
                       benchmark=_benchmark(raw["benchmark"], resolve_predictors), output=output)


def _benchmark(raw: Any, resolve_predictors: bool) -> dict[str, Any]:
    bench = benchmark_section(raw, BENCHMARK_KEYS, BENCHMARK_DEFAULTS, ("train_sizes", "predictors"),
                              "{train_sizes: [100], predictors: [xgb]}")
    sizes = typed("benchmark.train_sizes", bench["train_sizes"], list[int])
    if not sizes or min(sizes) < 2 or len(set(sizes)) != len(sizes):
        raise ConfigError(f"benchmark.train_sizes: expected distinct integers >= 2, got {sizes}")
    at_least_one(bench, ("seeds", "workers"))
    typed("benchmark.target", bench["target"], str)
    typed("benchmark.test_metric", bench["test_metric"], str)
    bench["predictors"] = predictor_specs(bench["predictors"], resolve_predictors)
    return bench


# ---------------------------------------------------------------------------------------------
# Population


@dataclass
class Population:
    """Every architecture the evaluator answers, encoded once, with its target and test values."""

    graphs: list[ArchGraph]
    target: np.ndarray
    test: np.ndarray


def build_population(config: BenchConfig, data_dir: str | None) -> Population:
    """Build space and evaluator, enumerate and encode the population, look up both metrics."""
    space = cfg.build_component("space", config.space, data_dir=data_dir)
    evaluator = cfg.build_component("evaluator", config.evaluator, space=space, data_dir=data_dir)
    for key in ("target", "test_metric"):
        metric = config.benchmark[key]
        if evaluator.reference_values(metric) is None:
            raise ConfigError(f"benchmark.{key}: {metric!r} is not a table metric of evaluator "
                              f"{config.evaluator['name']!r}; available: {', '.join(evaluator.metrics)}")
    table_size = len(evaluator.reference_values(config.benchmark["target"]))
    if space.size() != table_size:
        raise ConfigError(f"space: {config.space['name']} has {space.size():,} architectures but evaluator "
                          f"{config.evaluator['name']!r} answers {table_size:,}; the benchmark needs the "
                          "space to be exactly the table (nasbench101: set restrict_to_table: true)")
    archs = list(space.enumerate())
    metrics = [config.benchmark["target"], config.benchmark["test_metric"]]
    values = _aligned_values(evaluator, archs, metrics)
    log.info("population: %d architectures; encoding", len(archs))
    return Population([space.encode(a) for a in archs], *values)


def _aligned_values(evaluator: Any, archs: list[Any], metrics: list[str]) -> list[np.ndarray]:
    """Each metric over ``archs`` in their order: the evaluator's table when it is in enumeration order
    (checked by evaluating a few architectures), else every architecture evaluated in one batch."""
    tables = [evaluator.reference_values(m) for m in metrics]
    probe = np.linspace(0, len(archs) - 1, ALIGNMENT_CHECKS).astype(int)
    results = evaluator.evaluate_batch([archs[i] for i in probe])
    if all(r.metrics[m] == t[i] for i, r in zip(probe, results) for m, t in zip(metrics, tables)):
        return tables
    log.info("evaluator table is not in enumeration order: evaluating all %d architectures", len(archs))
    results = evaluator.evaluate_batch(archs)
    values = [np.array([r.metrics[m] for r in results]) for m in metrics]
    if not all(np.array_equal(np.sort(v), np.sort(t)) for v, t in zip(values, tables)):
        raise ConfigError("space: the enumerated architectures are not exactly the evaluator's table")
    return values


# ---------------------------------------------------------------------------------------------
# One cell


def _correlations(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    return float(stats.kendalltau(pred, true).statistic), float(stats.spearmanr(pred, true).statistic)


def run_cell(predictor: Predictor, population: Population, train_size: int,
             seed: int) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Fit on N sampled architectures, predict all (torch on one thread); return metrics, predictions
    and the held-out mask."""
    train = train_indices(len(population.graphs), train_size, seed)
    with single_thread():
        start = time.perf_counter()
        predictor.fit([population.graphs[i] for i in train], population.target[train])
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        pred = np.asarray(predictor.predict(population.graphs), dtype=float)
        predict_s = time.perf_counter() - start
    if pred.shape != population.test.shape:
        raise ValueError(f"predictor returned shape {pred.shape} for {len(population.graphs)} graphs")
    heldout = np.ones(len(pred), dtype=bool)
    heldout[train] = False
    tau_h, rho_h = _correlations(pred[heldout], population.test[heldout])
    tau_a, rho_a = _correlations(pred, population.test)
    return ({"kendall_heldout": tau_h, "spearman_heldout": rho_h, "kendall_all": tau_a, "spearman_all": rho_a,
             "fit_s": fit_s, "predict_s": predict_s, "predict_archs_per_s": len(pred) / max(predict_s, 1e-12)},
            pred, heldout)


def _cell_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The config values a finished cell's numbers depend on (besides its predictor's settings)."""
    return {"space": config["space"], "evaluator": config["evaluator"],
            "benchmark.target": config["benchmark"]["target"],
            "benchmark.test_metric": config["benchmark"]["test_metric"]}


# ---------------------------------------------------------------------------------------------
# Table


def format_results(config: BenchConfig, rows: list[dict[str, Any]]) -> str:
    """Markdown table: mean ± std over seeds per predictor and train size."""
    header = ["predictor", "N", "seeds", "kendall held-out", "spearman held-out", "kendall all", "fit s",
              "predict archs/s"]
    lines = [f"### {config.name}: {config.space['name']} / {config.evaluator['name']}, train on "
             f"{config.benchmark['target']}, rank against {config.benchmark['test_metric']}", "",
             *markdown_header(header)]
    for spec in config.benchmark["predictors"]:
        for size in config.benchmark["train_sizes"]:
            cell = [r for r in rows if r["predictor"] == spec["label"] and r["train_size"] == size]
            if not cell:
                continue
            column = {c: [r[c] for r in cell] for c in COLUMNS[3:]}
            lines.append(markdown_row([
                spec["label"], str(size), str(len(cell)), mean_std(column["kendall_heldout"], ".3f"),
                mean_std(column["spearman_heldout"], ".3f"), mean_std(column["kendall_all"], ".3f"),
                mean_std(column["fit_s"], ".3g"), mean_std(column["predict_archs_per_s"], ",.0f")]))
    return "\n".join(lines)


def _ms_per_arch(call: Callable[[list[ArchGraph]], Any], chunks: list[list[ArchGraph]]) -> float:
    start = time.perf_counter()
    for chunk in chunks:
        call(chunk)
    return (time.perf_counter() - start) / sum(map(len, chunks)) * 1e3


def measure_speed(bench: BenchConfig, population: Population, factory: PredictorFactory,
                  single_calls: int = 200, batch: int = 1024) -> str:
    """Markdown table of prediction speed with all torch threads: the whole population in one ``predict``
    call (archs/s), and ms per architecture at batch 1 and ``batch``, split into encoding (``featurize``,
    for predictors that have one; "–" and the whole call otherwise) and the rest. Each predictor is fit
    on the smallest train size first (speed does not depend on the weights)."""
    size = min(bench.benchmark["train_sizes"])
    train = train_indices(len(population.graphs), size, bench.seed)
    graphs = population.graphs
    ones = [[g] for g in graphs[:single_calls]]
    batches = [graphs[i:i + batch] for i in range(0, min(len(graphs), 4 * batch), batch)]
    lines = [f"### prediction speed ({torch.get_num_threads()} threads, {len(graphs):,} architectures)", "",
             *markdown_header(["predictor", "all in one call, archs/s", "batch 1: encode ms", "batch 1: predict ms",
                               f"batch {batch}: encode ms/arch", f"batch {batch}: predict ms/arch"])]
    for spec in bench.benchmark["predictors"]:
        predictor = factory(spec, bench.seed).fit([graphs[i] for i in train], population.target[train])
        start = time.perf_counter()
        predictor.predict(graphs)
        batch_all = len(graphs) / (time.perf_counter() - start)
        cells = [f"{batch_all:,.0f}"]
        for chunks in (ones, batches):
            total = _ms_per_arch(predictor.predict, chunks)
            encode = _ms_per_arch(predictor.featurize, chunks) if hasattr(predictor, "featurize") else None
            cells += ["–", f"{total:.4f}"] if encode is None else [f"{encode:.4f}", f"{total - encode:.4f}"]
        lines.append(markdown_row([spec["label"], *cells]))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Driver


def run_predictor_bench(config: str | Path | dict[str, Any], overrides: Sequence[str] = (),
                        data_dir: str | Path | None = None,
                        predictor_factory: PredictorFactory | None = None) -> BenchOutcome:
    """Run (or continue) the predictor benchmark a config describes; write CSV, markdown, config, plots.

    ``predictor_factory(spec, seed)`` builds each cell's predictor (default: the predictor registry);
    when it is given, predictor sections are passed to it without checking them against the registry.
    """
    bench = validate_bench(load_raw(config, overrides), resolve_predictors=predictor_factory is None)
    factory = predictor_factory or build_predictor
    run_dir = Path(bench.output["dir"]) / bench.name
    check_resumable(run_dir, bench, _cell_settings, "choose another name or output.dir")
    population = build_population(bench, None if data_dir is None else str(data_dir))
    too_big = [n for n in bench.benchmark["train_sizes"] if n >= len(population.graphs)]
    if too_big:
        raise ConfigError(f"benchmark.train_sizes: {too_big} leave no held-out architectures "
                          f"(population {len(population.graphs):,})")
    with dirs.open_or_create(run_dir, "benchmark", overwrite=False):
        return _run_cells(bench, population, factory, run_dir)


def _run_cells(bench: BenchConfig, population: Population, factory: PredictorFactory, run_dir: Path) -> BenchOutcome:
    """The benchmark's missing cells, then its table (``run_dir`` is locked by the caller)."""
    scatter_cell = (max(bench.benchmark["train_sizes"]), bench.seed)
    cells = CellRun(run_dir, bench, RESULTS, {
        (spec["label"], size, seed): (spec, size, seed, (size, seed) == scatter_cell)
        for spec in bench.benchmark["predictors"] for size in sorted(bench.benchmark["train_sizes"], reverse=True)
        for seed in bench.seeds})
    for spec, size, seed, metrics, kept in cells.run(_cell_job, (population, factory), bench.benchmark["workers"]):
        log.info("%s N=%d seed=%d: kendall held-out %.4f, fit %.2f s, predict %.2f s", spec["label"], size, seed,
                 metrics["kendall_heldout"], metrics["fit_s"], metrics["predict_s"])
        if kept is not None:
            _plot_scatter(bench, spec["label"], size, seed, metrics, *kept, population, run_dir)
        cells.add({"predictor": spec["label"], "train_size": size, "seed": seed, **metrics})
    return cells.finish(lambda rows: format_results(bench, rows) + "\n\n" + measure_speed(bench, population, factory))


def _cell_job(job: tuple[dict[str, Any], int, int, bool],
              shared: tuple[Population, PredictorFactory]) -> tuple[Any, ...]:
    """Run one cell in this process; keep predictions only for the cell that gets the scatter plot."""
    spec, size, seed, keep = job
    population, factory = shared
    metrics, pred, heldout = run_cell(factory(spec, seed), population, size, seed)
    return spec, size, seed, metrics, (pred, heldout) if keep else None


def _plot_scatter(bench: BenchConfig, name: str, size: int, seed: int, metrics: dict[str, float],
                  pred: np.ndarray, heldout: np.ndarray, population: Population, run_dir: Path) -> None:
    plot_prediction_scatter(
        pred[heldout], population.test[heldout], run_dir / "plots" / f"scatter_{name}.png",
        f"{name}, N={size}, seed {seed}: kendall {metrics['kendall_heldout']:.3f} "
        f"on {int(heldout.sum()):,} held-out", bench.benchmark["target"], bench.benchmark["test_metric"])
