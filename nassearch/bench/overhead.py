"""``nassearch bench overhead CONFIG...``: the search engine's own cost per query early and late in a long run.

Definition. The per-query overhead of a window of queries ``[a, b)`` is

    (finished[b-1] - finished[a-1]  -  evaluator time  -  predictor fit/predict time) / (b - a)

where ``finished[i]`` is the timestamp the store recorded for trial ``i`` (as it committed it), and the
evaluator's and the predictor's time are summed over the calls that ended inside that span. The span
holds, for exactly ``b - a`` queries, everything the runner's loop does: ``ask`` and ``tell``, key sets,
replay, the store's commit of each trial, checkpoint serialisation and write, metadata, budget and
progress. The overhead is reported split into *searcher* (``ask`` + ``tell`` without the predictor) and
*engine* (the rest). The predictor's fit/predict time is reported on its own: predictor-guided
evolution refits on all N evaluated architectures each round, which grows with N by design. The
encoding of those N architectures before the fit (``space.encode``) is the searcher's, so it counts as
overhead. Windows should start and end on batch boundaries (``budget.batch_size``; checked).

Each config is a plain run config (``budget.evaluations`` the run's length) and runs once, for its seed,
through ``runner.run_seed`` (the real loop, store and checkpoints; serial executor) in a temporary directory, with the
config's evaluator wrapped to time it and the searcher's ``ask`` / ``tell`` and its predictor's ``fit`` /
``predict`` timed on the instance (``runner.build_searcher`` is swapped for the duration of the
benchmark). The early window is ``[early, early + window)``, the late one the last ``window`` queries.

``prefill``: for searchers listed there the late window is timed without searching up to it: the run
stops after the early window, the store is filled with distinct uniformly sampled architectures (each
evaluated by the config's evaluator) up to one batch before the late window, the checkpoint (the
searcher's state after the early window) is moved to that point, and the run is resumed through the real
resume path (``load_state_dict`` rebuilds the searcher from all the told trials) for its last queries.
The searcher then carries the data structures of a long run (N evaluated architectures, keys, the
predictor's training set) without the hours a real search to 100,000 trials would take for a searcher
that refits on everything each round. NSGA-II replays its generations from the told trials on resume, so it
cannot be pre-filled (refused).
"""

from __future__ import annotations

import bisect
import contextlib
import json
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nassearch.evaluators.base import Evaluator, Result
from nassearch import config as cfg
from nassearch import runner
from nassearch.errors import ConfigError
from nassearch.store import TrialStore
from nassearch.searchers.base import Searcher
from nassearch.spaces.base import Arch
from nassearch.trial import Trial, TrialStatus

#: The acceptance limit of late / early overhead (issue 15).
MAX_RATIO = 1.5
#: Searchers whose ``load_state_dict`` cannot take a pre-filled history (they replay their own proposals).
NOT_PREFILLABLE = {"nsga2": "it replays its generations from the told trials on resume"}
#: Architectures evaluated per evaluator call while pre-filling a store.
PREFILL_CHUNK = 1000

DEFINITION = (
    "per-query overhead = (store `finished` of a window's last query - that of the query before it - evaluator "
    "time - predictor fit/predict time) / queries in the window;\n"
    "  searcher = ask + tell without the predictor; engine = the rest of the runner's loop (replay, store "
    "commits, checkpoint\n  serialisation and write, metadata, budget); predictor fit/predict ms/query is "
    "reported apart (it grows with N by design).")
VERDICTS = (f"<={MAX_RATIO:g}: yes = ratio within the limit; load = only the CPU-time ratio is (other processes "
            "slowed the late window: the evaluator's time grows alike); NO = neither")


class Timings:
    """Timed calls per kind (``evaluator``, ``ask``, ``tell``, ``predictor``), each as ``(end, seconds,
    cpu_end, cpu_seconds)``: ``end`` is ``time.time()`` like the store's timestamps, ``seconds`` from
    ``time.perf_counter()``, the CPU values from ``time.process_time()``."""

    def __init__(self) -> None:
        self.intervals: dict[str, list[tuple[float, float, float, float]]] = {}
        self.ends: list[float] = []  # every call's end, in order
        self.cpu_ends: list[float] = []

    def record(self, kind: str, end: float, seconds: float, cpu_end: float, cpu_seconds: float) -> None:
        """Add one call of ``kind`` that ended at ``end`` (and ``cpu_end``) after ``seconds`` (``cpu_seconds``)."""
        self.intervals.setdefault(kind, []).append((end, seconds, cpu_end, cpu_seconds))
        self.ends.append(end)
        self.cpu_ends.append(cpu_end)

    def timed(self, kind: str, function: Callable[..., Any]) -> Callable[..., Any]:
        """``function`` with every call's duration recorded under ``kind``."""
        def call(*args: Any, **kwargs: Any) -> Any:
            start, cpu_start = time.perf_counter(), time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                cpu_end = time.process_time()
                self.record(kind, time.time(), time.perf_counter() - start, cpu_end, cpu_end - cpu_start)
        return call

    def total(self, kind: str, start: float, end: float, cpu: bool = False) -> float:
        """Seconds (CPU seconds with ``cpu``) of the ``kind`` calls that ended in ``(start, end]``."""
        return sum(c if cpu else s for t, s, _, c in self.intervals.get(kind, ()) if start < t <= end)

    def cpu_at(self, when: float) -> float:
        """The process's CPU clock at the end of the last call that ended by ``when``."""
        i = bisect.bisect_right(self.ends, when)
        if i == 0:
            raise ValueError("no timed call ended before the window")
        return self.cpu_ends[i - 1]


class TimedEvaluator(Evaluator):
    """A benchmark device: ``inner``'s results unchanged, the time of each call recorded in ``timings``."""

    name = "timed"

    def __init__(self, inner: Evaluator, timings: Timings) -> None:
        super().__init__(inner.space)
        self.inner, self.timings = inner, timings
        self._evaluate = timings.timed("evaluator", inner.evaluate)
        self._evaluate_batch = timings.timed("evaluator", inner.evaluate_batch)

    @property
    def metrics(self) -> tuple[str, ...]:
        return self.inner.metrics

    def evaluate(self, arch: Arch) -> Result:
        return self._evaluate(arch)

    def evaluate_batch(self, archs: Sequence[Arch]) -> list[Result]:
        return self._evaluate_batch(archs)

    def reference_values(self, metric: str) -> np.ndarray | None:
        return self.inner.reference_values(metric)


@contextlib.contextmanager
def timed_searchers(timings: Timings) -> Iterator[None]:
    """While active, every searcher ``runner.run_seed`` builds has its ``ask`` / ``tell`` (and its predictor's
    ``fit`` / ``predict``) timed into ``timings`` (on the instance; the classes are untouched)."""
    build = runner.build_searcher

    def build_timed(config: cfg.RunConfig, parts: runner.Components, seed: int) -> Searcher:
        searcher = build(config, parts, seed)
        searcher.ask = timings.timed("ask", searcher.ask)
        searcher.tell = timings.timed("tell", searcher.tell)
        predictor = getattr(searcher, "predictor", None)
        if predictor is not None:
            predictor.fit = timings.timed("predictor", predictor.fit)
            predictor.predict = timings.timed("predictor", predictor.predict)
        return searcher

    runner.build_searcher = build_timed
    try:
        yield
    finally:
        runner.build_searcher = build


@dataclass(frozen=True)
class Window:
    """Milliseconds per query of one window ``[start, end)``; ``cpu_overhead_ms`` is the overhead in this
    process's CPU time (what other processes' load on the machine does not inflate)."""

    start: int
    end: int
    wall_ms: float
    evaluator_ms: float
    predictor_ms: float
    searcher_ms: float
    cpu_overhead_ms: float

    @property
    def overhead_ms(self) -> float:
        """The engine's own time per query: wall time less the evaluator's and the predictor's."""
        return self.wall_ms - self.evaluator_ms - self.predictor_ms

    @property
    def engine_ms(self) -> float:
        """The overhead less the searcher's ``ask`` / ``tell``."""
        return self.overhead_ms - self.searcher_ms


def window_costs(finished: Sequence[float], timings: Timings, start: int, end: int) -> Window:
    """The costs per query of queries ``[start, end)`` from the trials' ``finished`` timestamps (indexed by
    trial) and the recorded calls (see the module docstring). The CPU overhead spans the same queries, from
    the CPU clock at the last timed call before each bound (the evaluation of the trial recorded there)."""
    if not 1 <= start < end <= len(finished):
        raise ValueError(f"window [{start}, {end}) needs trials 0..{end - 1} and start >= 1 ({len(finished)} stored)")
    t0, t1 = finished[start - 1], finished[end - 1]
    per_query = 1000.0 / (end - start)
    predictor = timings.total("predictor", t0, t1)
    searcher = timings.total("ask", t0, t1) + timings.total("tell", t0, t1) - predictor
    cpu = (timings.cpu_at(t1) - timings.cpu_at(t0) - timings.total("evaluator", t0, t1, cpu=True)
           - timings.total("predictor", t0, t1, cpu=True))
    return Window(start, end, (t1 - t0) * per_query, timings.total("evaluator", t0, t1) * per_query,
                  predictor * per_query, searcher * per_query, cpu * per_query)


def ratio(early: Window, late: Window, cpu: bool = False) -> float:
    """Late over early per-query overhead (in CPU time with ``cpu``)."""
    a, b = (early.cpu_overhead_ms, late.cpu_overhead_ms) if cpu else (early.overhead_ms, late.overhead_ms)
    return b / a if a > 0 else float("inf")


def verdict(early: Window, late: Window) -> str:
    """``yes`` when the ratio is within ``MAX_RATIO``; ``load`` when only the CPU-time ratio is (the late
    window's wall time was inflated by other processes); ``NO`` when neither is."""
    if ratio(early, late) <= MAX_RATIO:
        return "yes"
    return "load" if ratio(early, late, cpu=True) <= MAX_RATIO else "NO"


# ---------------------------------------------------------------------------------------------
# Running


def check_windows(config: cfg.RunConfig, early: int, window: int) -> tuple[int, int]:
    """``(early window start, late window start)``; ConfigError unless both fit the budget apart and align
    with its batches."""
    evaluations, batch = config.budget.evaluations, config.budget.batch_size
    if evaluations is None:
        raise ConfigError(f"{config.name}: bench overhead needs budget.evaluations (the run's length in queries)")
    if early < 1 or window < 1:
        raise ConfigError(f"--early must be >= 1 and --window >= 1, got {early} and {window}")
    late = evaluations - window
    if early + window > late:
        raise ConfigError(f"{config.name}: the early window [{early}, {early + window}) must end before the late one "
                          f"[{late}, {evaluations}); raise budget.evaluations or lower --early / --window")
    if any(value % batch for value in (early, window, evaluations)):
        raise ConfigError(f"{config.name}: --early ({early}), --window ({window}) and budget.evaluations "
                          f"({evaluations}) must be multiples of budget.batch_size ({batch})")
    return early, late


def measure(config: cfg.RunConfig, parts: runner.Components, early: int = 1000, window: int = 1000,
            prefill: bool = False, directory: Path | None = None) -> dict[str, Any]:
    """Run ``config``'s seed and return its row: the early and late ``Window``, the ratio and what was done."""
    early_start, late_start = check_windows(config, early, window)
    name = config.searcher["name"]
    if prefill and name in NOT_PREFILLABLE:
        raise ConfigError(f"{config.name}: {name} cannot be timed on a pre-filled store ({NOT_PREFILLABLE[name]}); "
                          "leave it out of --prefill")
    timings = Timings()
    timed = runner.Components(parts.space, TimedEvaluator(parts.evaluator, timings), parts.executor)
    resume_at = late_start - config.budget.batch_size
    prefill = prefill and resume_at > early_start + window
    with contextlib.ExitStack() as stack:
        if directory is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nassearch-overhead-")))
        seed_dir = directory / f"{config.name}-seed-{config.seed}"
        start = time.perf_counter()
        with timed_searchers(timings):
            if prefill:
                head = cfg.validate({**config.to_dict(), "budget": {**config.budget.to_dict(),
                                                                   "evaluations": early_start + window}})
                runner.run_seed(head, timed, config.seed, seed_dir, progress=config.output.progress)
                _prefill(config, parts, seed_dir, resume_at)
            seed_run = runner.run_seed(config, timed, config.seed, seed_dir, progress=config.output.progress)
        wall_s = time.perf_counter() - start
    finished = [t.finished for t in seed_run.trials]
    early_w = window_costs(finished, timings, early_start, early_start + window)
    late_w = window_costs(finished, timings, late_start, late_start + window)
    return {"config": config.name, "searcher": name, "queries": len(seed_run.trials),
            "late_by": f"pre-filled to {resume_at}" if prefill else "searched",
            "early": early_w, "late": late_w, "ratio": ratio(early_w, late_w),
            "cpu_ratio": ratio(early_w, late_w, cpu=True), "verdict": verdict(early_w, late_w), "wall_s": wall_s}


def _prefill(config: cfg.RunConfig, parts: runner.Components, seed_dir: Path, until: int) -> None:
    """Fill the seed store with distinct uniform samples up to trial ``until`` and move the checkpoint there
    (see the module docstring); the store's config becomes the full run's."""
    space, evaluator = parts.space, parts.evaluator
    rng = np.random.default_rng([config.seed, until])
    with TrialStore(seed_dir / "trials.sqlite") as store:
        told, state = store.checkpoint()
        keys = {space.key(t.arch) for t in store.trials(space)}
        index = told
        while index < until:
            archs: list[Arch] = []
            while len(archs) < min(PREFILL_CHUNK, until - index):
                arch = space.sample(rng)
                key = space.key(arch)
                if key not in keys:
                    keys.add(key)
                    archs.append(arch)
            for arch, result in zip(archs, evaluator.evaluate_batch(archs)):
                now = time.time()
                store.add_trial(Trial(index, arch, space.to_str(arch), result.metrics, result.cost_s, result.wall_s,
                                      TrialStatus.OK, now - result.wall_s, now))
                index += 1
        store.set_meta("config", config.with_seed(config.seed).to_dict())
        store.save_checkpoint(until, state)


def overhead_rows(configs: Sequence[cfg.RunConfig], early: int = 1000, window: int = 1000,
                  prefill: Sequence[str] = (), data_dir: str | None = None,
                  progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """One row per config, in order; components are built once per (space, evaluator) and warmed up with one
    evaluation before timing (the NB301 surrogate measures its cost model on first use)."""
    unknown = set(prefill) - {c.searcher["name"] for c in configs}
    if unknown:
        raise ConfigError(f"--prefill {', '.join(sorted(unknown))}: no given config uses that searcher")
    for config in configs:
        check_windows(config, early, window)
    built: dict[str, runner.Components] = {}
    serial = cfg.build_component("executor", cfg.resolve_component("executor", {"name": "serial"}))
    rows = []
    for config in configs:
        key = json.dumps([config.space, config.evaluator], sort_keys=True)
        if key not in built:
            built[key] = parts = runner.build_components(config, data_dir)
            parts.evaluator.evaluate(parts.space.sample(np.random.default_rng(config.seed)))
        parts = built[key]
        row = measure(config, runner.Components(parts.space, parts.evaluator, serial), early, window,
                      config.searcher["name"] in prefill)
        rows.append(row)
        if progress is not None:
            progress(f"{row['config']}: overhead {row['early'].overhead_ms:.3f} -> {row['late'].overhead_ms:.3f} "
                     f"ms/query (ratio {row['ratio']:.2f}, CPU time {row['cpu_ratio']:.2f}), {row['wall_s']:.0f} s")
    return rows


# ---------------------------------------------------------------------------------------------
# Table


def format_rows(rows: Sequence[dict[str, Any]], title: str, early: int, window: int) -> str:
    """The benchmark table: per config the overhead (ms/query) in both windows and their ratio, the same in
    CPU time, the verdict, then the searcher / engine split, the predictor and the evaluator per query, and
    the run's wall time."""
    header = ["config", "searcher", "queries", "late window", "overhead early", "overhead late", "ratio",
              "cpu early", "cpu late", "cpu ratio", f"<={MAX_RATIO:g}", "searcher e/l", "engine e/l",
              "predictor e/l", "evaluator e/l", "wall s"]
    table = [header]
    for row in rows:
        e, l = row["early"], row["late"]
        table.append([row["config"], row["searcher"], str(row["queries"]), row["late_by"], f"{e.overhead_ms:.3f}",
                      f"{l.overhead_ms:.3f}", f"{row['ratio']:.2f}", f"{e.cpu_overhead_ms:.3f}",
                      f"{l.cpu_overhead_ms:.3f}", f"{row['cpu_ratio']:.2f}", row["verdict"],
                      f"{e.searcher_ms:.3f}/{l.searcher_ms:.3f}", f"{e.engine_ms:.3f}/{l.engine_ms:.3f}",
                      f"{e.predictor_ms:.2f}/{l.predictor_ms:.2f}", f"{e.evaluator_ms:.3f}/{l.evaluator_ms:.3f}",
                      f"{row['wall_s']:.0f}"])
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = [title, DEFINITION, f"ms/query; early = queries {early}..{early + window - 1}, late = the last {window} "
                                f"(e/l: early/late); ratio = late / early overhead; cpu: the same in this process's "
                                f"CPU time;\n  {VERDICTS}", ""]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in table]
    return "\n".join(lines)
