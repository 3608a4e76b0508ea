"""The benchmark harness: what the benchmarks behind ``nassearch bench`` share, each keeping only its own logic.

The resumable benchmarks (``predictors``, ``latency``) run a grid of *cells* (e.g. predictor x train size x
seed), each a fresh predictor fit and scored, in ``output.dir/name/``:

- config: :class:`BenchConfigBase` (``name``, ``seed``, ``to_dict``, ``seeds``), :func:`load_raw`,
  :func:`benchmark_section`, :func:`at_least_one`, :func:`predictor_specs` (the ``benchmark.predictors`` list)
  and :data:`OUTPUT_DEFAULTS`; the name / seed / output header is :func:`nassearch.validation.validate_header`'s;
- :func:`check_resumable`: a directory whose stored config would make its finished cells differ is refused;
- :class:`ResultColumns`: ``results.csv``, one typed row per cell keyed by its first columns, rewritten
  atomically (a half-written last row dropped) when a run starts and appended to as each cell finishes;
- :class:`CellRun`: the cell loop: config.yaml, the cells with no row yet run in order, serially or in a pool
  of forked worker processes that share the benchmark's data, each row appended as its cell finishes (so a
  killed benchmark rerun with the same config continues where it stopped), then the table in ``results.md``;
- for the cells: :func:`build_predictor`, :func:`train_indices` (the seeded training draw), :func:`single_thread`;
- tables: :func:`mean_std`, :func:`markdown_header` / :func:`markdown_row` (the resumable benchmarks'
  markdown) and :func:`aligned_table` (the fixed-width tables of the executor, evaluator and contention
  benchmarks).
"""

from __future__ import annotations

import copy
import csv
import multiprocessing
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from nassearch import config as cfg
from nassearch.errors import ConfigError, RunDirError
from nassearch.predictors.base import Predictor
from nassearch.validation import reject_unknown, shown, typed

#: The ``output`` section of a benchmark config: only the directory that holds ``name/``.
OUTPUT_DEFAULTS: dict[str, Any] = {"dir": "runs"}

#: Builds a cell's predictor from its config section (with ``label``) and the cell's seed.
PredictorFactory = Callable[[dict[str, Any], int], Predictor]

# ---------------------------------------------------------------------------------------------
# Config


@dataclass(frozen=True)
class BenchConfigBase:
    """The fields and methods every benchmark config shares; a subclass adds its sections (``benchmark`` among
    them, with ``seeds``), which follow ``name`` and ``seed`` in ``to_dict``."""

    name: str
    seed: int

    def to_dict(self) -> dict[str, Any]:
        """Plain data for YAML (what ``config.yaml`` holds)."""
        return asdict(self)

    @property
    def seeds(self) -> list[int]:
        """The cells' seeds: ``seed .. seed + benchmark.seeds - 1``."""
        return list(range(self.seed, self.seed + self.benchmark["seeds"]))


def load_raw(config: str | Path | dict[str, Any], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """A raw config (from a YAML path or a mapping) with ``--set`` overrides applied."""
    if isinstance(config, dict):
        raw = copy.deepcopy(config)
        for override in overrides:
            cfg.apply_override(raw, override)
        return raw
    return cfg.read_config(config, list(overrides))


def benchmark_section(raw: Any, keys: Sequence[str], defaults: dict[str, Any], required: Sequence[str],
                      example: str) -> dict[str, Any]:
    """A ``benchmark:`` section checked for type, unknown and missing keys, with ``defaults`` filled in."""
    if not isinstance(raw, dict):
        raise ConfigError(f"benchmark: expected a mapping, e.g. benchmark: {example}")
    reject_unknown(raw, keys, "benchmark")
    for key in required:
        if raw.get(key) is None:
            raise ConfigError(f"benchmark.{key}: missing")
    return {**defaults, **raw}


def at_least_one(bench: dict[str, Any], keys: Sequence[str]) -> None:
    """ConfigError unless each of ``bench``'s ``keys`` (e.g. seeds, workers) is an integer >= 1."""
    for key in keys:
        if typed(f"benchmark.{key}", bench[key], int) < 1:
            raise ConfigError(f"benchmark.{key}: must be >= 1, got {bench[key]}")


def predictor_specs(raw: Any, resolve: bool) -> list[dict[str, Any]]:
    """``benchmark.predictors``: each a mapping with a ``name`` (or just the name) and a distinct ``label``
    (default: the name), checked against the predictor registry and filled with its defaults when ``resolve``."""
    if not isinstance(raw, list) or not raw:
        raise ConfigError("benchmark.predictors: expected a non-empty list, e.g. [{name: gcn, epochs: 300}]")
    specs: list[dict[str, Any]] = []
    for i, spec in enumerate(raw):
        where = f"benchmark.predictors[{i}]"
        spec = {"name": spec} if isinstance(spec, str) else spec
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise ConfigError(f"{where}: expected a mapping with a 'name' key, e.g. {{name: gcn}}")
        spec = dict(spec)
        label = spec.pop("label", None) or spec["name"]
        if resolve:
            try:
                spec = cfg.resolve_component("predictor", spec)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        if label in {s["label"] for s in specs}:
            raise ConfigError(f"{where}: predictor {label!r} is listed twice; give variants a distinct 'label'")
        specs.append({**spec, "label": label})
    return specs


def check_resumable(run_dir: Path, config: Any, cell_settings: Callable[[dict[str, Any]], dict[str, Any]],
                    fix: str) -> None:
    """Refuse a directory whose stored config would make its finished cells differ from ``config``'s:
    ``cell_settings`` picks the values a cell depends on besides its predictor's settings, ``fix`` ends the
    message."""
    stored_path = run_dir / "config.yaml"
    if not stored_path.is_file():
        return
    try:
        stored = cfg.read_yaml(stored_path, "benchmark config")
        old = cell_settings(stored)
        old_predictors = {p.get("label", p["name"]): p for p in stored["benchmark"]["predictors"]}
    except (ConfigError, KeyError, TypeError, AttributeError) as exc:
        raise RunDirError(f"{stored_path} is damaged ({shown(exc)}); delete {run_dir} to start the benchmark "
                          "again") from None
    new = cell_settings(config.to_dict())
    for key in new:
        if old.get(key) != new[key]:
            raise RunDirError(f"{run_dir} was benchmarked with another {key} ({stored_path}); {fix}")
    for spec in config.benchmark["predictors"]:
        if spec["label"] in old_predictors and old_predictors[spec["label"]] != spec:
            raise RunDirError(f"{run_dir} holds results of predictor {spec['label']!r} with other settings "
                              f"({stored_path}); {fix}")


# ---------------------------------------------------------------------------------------------
# Cells


def build_predictor(spec: dict[str, Any], seed: int) -> Predictor:
    """The default :data:`PredictorFactory`: the predictor registry's component for ``spec``."""
    return cfg.build_component("predictor", {k: v for k, v in spec.items() if k != "label"}, seed=seed)


def train_indices(population_size: int, train_size: int, seed: int) -> np.ndarray:
    """The training architectures of cell (N, seed): drawn without replacement by rng([seed, N])."""
    return np.random.default_rng([seed, train_size]).choice(population_size, train_size, replace=False)


@contextmanager
def single_thread() -> Iterator[None]:
    """torch on one thread: a cell's numbers must not depend on how many workers run beside it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------
# Results file and cell loop


@dataclass(frozen=True)
class ResultColumns:
    """The columns of a benchmark's ``results.csv`` and their types; the first ``key`` of them name a cell."""

    types: dict[str, type]
    key: int

    @property
    def names(self) -> tuple[str, ...]:
        """The column names, in file order."""
        return tuple(self.types)

    def cell(self, row: dict[str, Any]) -> tuple[Any, ...]:
        """The key of ``row``'s cell."""
        return tuple(row[c] for c in self.names[:self.key])

    def parse(self, row: dict[str, str | None]) -> dict[str, Any] | None:
        """A CSV row with typed values, or None for a malformed (e.g. half-written) row."""
        try:
            return {column: kind(row[column]) for column, kind in self.types.items()}
        except (TypeError, ValueError, KeyError):
            return None

    def read(self, path: Path) -> list[dict[str, Any]]:
        """The well-formed rows of ``path`` (none when it does not exist)."""
        if not path.is_file():
            return []
        with path.open(newline="") as handle:
            rows = [self.parse(r) for r in csv.DictReader(handle)]
        return [r for r in rows if r is not None]

    def write(self, path: Path, rows: Iterable[dict[str, Any]]) -> None:
        """Replace ``path`` with ``rows`` atomically (written beside it, then renamed)."""
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, self.names)
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(path)

    def append(self, path: Path, row: dict[str, Any]) -> None:
        """Append one row to ``path``."""
        with path.open("a", newline="") as handle:
            csv.DictWriter(handle, self.names).writerow(row)


@dataclass
class BenchOutcome:
    """What a resumable benchmark returns: its directory, the config's rows, the table, cells computed."""

    run_dir: Path
    rows: list[dict[str, Any]]
    table: str
    computed: int


class CellRun:
    """One run of a benchmark's cells in ``run_dir`` (locked by the caller): writes ``config.yaml``, reads
    ``results.csv`` (rewriting it without a half-written row) and knows which of ``cells`` (key -> job, in
    run order) are still ``pending``."""

    def __init__(self, run_dir: Path, config: BenchConfigBase, columns: ResultColumns,
                 cells: dict[tuple[Any, ...], Any]) -> None:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        self.run_dir, self.columns, self.cells = run_dir, columns, cells
        self.path = run_dir / "results.csv"
        self.rows = columns.read(self.path)
        columns.write(self.path, self.rows)
        self.done = {columns.cell(r) for r in self.rows}
        self.pending = [job for key, job in cells.items() if key not in self.done]
        self.computed = 0

    def run(self, job: Callable[[Any, Any], Any], shared: Any, workers: int) -> Iterator[Any]:
        """Yield ``job(j, shared)`` for each pending job ``j`` as it finishes. With several workers the jobs run
        in forked processes, which share ``shared`` (e.g. the encoded population) without copying it."""
        global _WORKER_STATE
        _WORKER_STATE = (job, shared)
        if workers == 1 or len(self.pending) <= 1:
            yield from map(_run_job, self.pending)
            return
        with multiprocessing.get_context("fork").Pool(min(workers, len(self.pending))) as pool:
            yield from pool.imap_unordered(_run_job, self.pending)

    def add(self, row: dict[str, Any]) -> None:
        """Record a finished cell's row: appended to ``results.csv`` at once, so a killed run keeps it."""
        self.columns.append(self.path, row)
        self.rows.append(row)
        self.computed += 1

    def finish(self, table: Callable[[list[dict[str, Any]]], str]) -> BenchOutcome:
        """The outcome: the rows of this config's cells and their ``table`` (also written to ``results.md``)."""
        rows = [r for r in self.rows if self.columns.cell(r) in self.cells]
        text = table(rows)
        (self.run_dir / "results.md").write_text(text + "\n")
        return BenchOutcome(self.run_dir, rows, text, self.computed)


_WORKER_STATE: tuple[Callable[[Any, Any], Any], Any] | None = None


def _run_job(job: Any) -> Any:
    """One job in this process, with the job function and shared data ``CellRun.run`` left for it."""
    function, shared = _WORKER_STATE
    return function(job, shared)


# ---------------------------------------------------------------------------------------------
# Tables


def mean_std(values: Sequence[float], digits: str) -> str:
    """``mean ± std`` of ``values``, each with the format spec ``digits`` (e.g. ``.3f``)."""
    return f"{np.mean(values):{digits}} ± {np.std(values):{digits}}"


def markdown_row(cells: Sequence[str]) -> str:
    """One markdown table row."""
    return "| " + " | ".join(cells) + " |"


def markdown_header(header: Sequence[str]) -> list[str]:
    """A markdown table's header row and its separator."""
    return [markdown_row(header), "|" + "---|" * len(header)]


def aligned_table(title: str, header: Sequence[str], rows: Iterable[Sequence[str]],
                  specs: Sequence[str] | None = None, sep: str = "  ") -> str:
    """``title``, the header and one line per row of (formatted) cells, joined by ``sep``; each header and cell
    placed by its column's format spec in ``specs`` (e.g. ``>10``; default: left-aligned to the header's width)."""
    specs = specs or [f"<{len(h)}" for h in header]
    lines = [title, sep.join(format(h, s) for h, s in zip(header, specs))]
    lines += [sep.join(format(cell, s) for cell, s in zip(cells, specs)) for cells in rows]
    return "\n".join(lines)
