"""The Python API: :func:`search` and its :class:`SearchResult`, and the search loop of one seed
(:func:`search_seed`) that ``search`` and the YAML runner (``nassearch run``) both drive.

Components are given by registry name (``"nasbench201"``), as a config section (``{"name": ...,
**settings}``) or as built objects. Without ``storage`` the trials live in an in-memory SQLite store;
with a directory every trial is committed to ``DIR/trials.sqlite`` before the searcher hears of it, the
searcher is checkpointed after each ``tell``, and calling ``search`` again with the same arguments
resumes: stored trials are replayed, so a killed search ends with exactly the trials of an
uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from nassearch import config as cfg
from nassearch import run_dir as dirs
from nassearch.config import Budget
from nassearch.errors import ConfigError, RunDirError
from nassearch.evaluators.base import Evaluator
from nassearch.executors import Failure, Outcome
from nassearch.objectives import Objective
from nassearch.predictors.base import Predictor
from nassearch.protocols import Executor, check_requirements
from nassearch.registry import COMPONENTS
from nassearch.repair import STORE, Damage, DamagedSeed, StoredSeed, read_seed, repair_seed
from nassearch.report import best_trial, summarize_run
from nassearch.searchers.base import Searcher
from nassearch.spaces.base import SearchSpace
from nassearch.store import TrialStore
from nassearch.trial import Trial, TrialStatus
from nassearch.validation import check_seed

log = logging.getLogger(__name__)

#: A component as ``search`` takes it: a registry name, a config section, or a built object.
Component = str | dict[str, Any] | object


@dataclass
class SearchResult:
    """What :func:`search` returns: the search's ``trials`` in ask order (a searcher's own training set, e.g.
    NAR's, left out; ``all_trials`` has it), the ``best`` of them under the objectives, the ``summary``
    (counts, costs, best trial, searcher seconds) and the ``storage`` directory or None."""

    trials: list[Trial]
    all_trials: list[Trial]
    best: Trial
    summary: dict[str, Any]
    storage: Path | None


@dataclass
class SeedRun:
    """One seed's trials in ask order, the index where its search phase starts (``search_start``), and the
    seconds its searcher spent in ask / tell (``searcher_s``, summed over resumptions) and in its named
    phases (``timings``), and the seconds the whole seed took (``seed_wall_s``, summed over resumptions)."""

    trials: list[Trial]
    search_start: int
    searcher_s: float
    timings: dict[str, float]
    seed_wall_s: float = 0.0

    @property
    def search_trials(self) -> list[Trial]:
        """The trials of the search phase (all but the searcher's own training set)."""
        return self.trials[self.search_start:]


def search(space: Component, evaluator: Component, searcher: Component, *,
           objectives: Any = ("val_acc",), budget: int | dict[str, Any] | Budget = 100, seed: int = 0,
           predictor: Component | None = None, executor: Component = "serial", storage: str | Path | None = None,
           progress: bool = False, data_dir: str | None = None) -> SearchResult:
    """Search ``space`` with ``searcher``, evaluating with ``evaluator``, until ``budget`` is spent.

    ``objectives``: metric names (maximised), ``Objective`` objects or ``{"metric", "mode", "bound"}``
    mappings; the first is what single-objective searchers optimise. ``budget``: a number of evaluations, a
    ``Budget`` or its mapping. ``predictor`` is built for searchers that take one (by name or section; an
    object is used as it is). A searcher given by name is built with ``seed``; a searcher object keeps its
    own. ``storage``: None (in memory) or a directory for the SQLite store, resumed when it holds one.
    ``data_dir`` overrides where benchmark tables are found (else ``$NASSEARCH_DATA``).
    Bad arguments raise :class:`~nassearch.errors.ConfigError` naming what is wrong."""
    objectives = cfg.parse_objectives(objectives)
    budget = as_budget(budget)
    seed = check_seed(seed)
    space = build("space", space, data_dir=data_dir)
    evaluator = build("evaluator", evaluator, space=space, data_dir=data_dir)
    cfg.check_metrics(objectives, None, evaluator.metrics, evaluator.name or type(evaluator).__name__)
    executor = build("executor", executor)
    make_searcher = _searcher_factory(searcher, predictor, space, objectives, seed, budget, data_dir)
    spec = {"space": space.name, "evaluator": evaluator.name, "searcher": _described(searcher),
            "predictor": _described(predictor), "objectives": [vars(o) for o in objectives],
            "budget": budget.to_dict(), "seed": seed}
    if storage is None:
        run = search_seed(space, evaluator, executor, make_searcher, budget, None, progress="search" if progress else None)
    else:
        directory = Path(storage)
        with _open_storage(directory):
            run = search_seed(space, evaluator, executor, make_searcher, budget, directory,
                              meta={"search": spec}, before_writing=lambda stored: _check_spec(stored, spec, directory),
                              progress=str(directory) if progress else None)
    trials = run.search_trials
    if not trials:
        raise RunDirError("the search made no trials")
    summary = {**summarize_run(trials, objectives[0], None, None, objectives), "searcher_s": run.searcher_s,
               "seed_wall_s": run.seed_wall_s,
               **run.timings}
    return SearchResult(trials, run.trials, best_trial(trials, objectives[0], objectives), summary,
                        None if storage is None else Path(storage))


def build(kind: str, component: Component, **context: Any) -> Any:
    """A component from its registry name or config section (checked like a YAML config's), or the object
    itself when one is given (it must be of the kind's base type)."""
    if isinstance(component, (str, dict)):
        return cfg.build_component(kind, cfg.resolve_component(kind, component), **context)
    base = BASE_TYPES[kind]
    if not isinstance(component, base):
        raise ConfigError(f"{kind}: expected a registered name, a {{'name': ...}} mapping or a built "
                          f"{getattr(base, '__name__', kind)}, got {type(component).__name__}")
    return component


def as_budget(budget: int | dict[str, Any] | Budget) -> Budget:
    """A ``Budget`` from a number of evaluations, a mapping or a ``Budget``."""
    if isinstance(budget, Budget):
        return budget
    if isinstance(budget, numbers.Integral) and not isinstance(budget, bool):
        budget = {"evaluations": int(budget)}
    return Budget.from_raw(budget)


def _described(component: Component | None) -> Any:
    """What a component looked like when the storage was created, to refuse resuming with another one."""
    if component is None or isinstance(component, (str, dict)):
        return component
    return getattr(component, "name", "") or type(component).__name__


def _searcher_factory(searcher: Component, predictor: Component | None, space: SearchSpace,
                      objectives: Sequence[Objective], seed: int, budget: Budget,
                      data_dir: str | None) -> Callable[[], Searcher]:
    """A function building the seed's searcher afresh (for a retry after ``repair``), checked once now."""
    if isinstance(searcher, (str, dict)):
        settings = cfg.resolve_component("searcher", searcher)
        cls = COMPONENTS["searcher"].get(settings["name"])
        cfg.check_budget(budget, cls.training_evaluations(settings), settings["name"])

        def make() -> Searcher:
            built = None if predictor is None else build("predictor", predictor, seed=seed, space=space)
            check_requirements(cls, space, built)
            return cfg.build_component("searcher", settings, space=space, objectives=objectives, seed=seed,
                                       predictor=built, build_evaluator=cfg.evaluator_builder(space, data_dir))
    else:
        built_searcher = build("searcher", searcher)
        check_requirements(type(built_searcher), space, getattr(built_searcher, "predictor", None))
        cfg.check_budget(budget, built_searcher.search_start, built_searcher.name or type(built_searcher).__name__)

        def make() -> Searcher:
            return built_searcher
    return make


def _open_storage(directory: Path) -> dirs.DirectoryLock:
    """The storage directory, locked: created (and marked) when new, else it must hold a store."""
    if not directory.exists() or (directory.is_dir() and not any(directory.iterdir())):
        return dirs.create(directory, "search storage", overwrite=False, hint="")
    return dirs.open_existing(directory, "search storage", STORE)


def _check_spec(stored: StoredSeed | None, spec: dict[str, Any], directory: Path) -> None:
    if stored is None or "search" not in stored.meta:
        return
    differences = [key for key in spec if stored.meta["search"].get(key) != _jsonable(spec[key])]
    if differences:
        raise RunDirError(f"{directory} holds a search with other settings (differs in {', '.join(differences)}); "
                          "pass the same arguments to resume it, or another storage directory")


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


class Spending:
    """What a seed has spent so far (trials and cost) against its budget, kept as running totals so that
    checking it costs the same at trial 100,000 as at trial 10."""

    def __init__(self, budget: Budget, history: Sequence[Trial]) -> None:
        self.budget = budget
        self.trials = len(history)
        self.cost_s = math.fsum(t.cost_s for t in history)

    def add(self, trials: Sequence[Trial]) -> None:
        self.trials += len(trials)
        self.cost_s += math.fsum(t.cost_s for t in trials)

    def next_batch(self) -> int:
        """How many architectures to ask for next; 0 when the budget is spent (a cost budget is checked between
        batches, so the last batch may run past it)."""
        if self.budget.evaluations is not None:
            return min(self.budget.batch_size, self.budget.evaluations - self.trials)
        return self.budget.batch_size if self.cost_s < self.budget.cost_seconds else 0

    @property
    def progress(self) -> float:
        return self.trials if self.budget.evaluations is not None else self.cost_s

    @property
    def total(self) -> float:
        return self.budget.evaluations or self.budget.cost_seconds


def search_seed(space: SearchSpace, evaluator: Evaluator, executor: Executor, make_searcher: Callable[[], Searcher],
                budget: Budget, directory: Path | None, *, meta: dict[str, Any] | None = None,
                before_writing: Callable[[StoredSeed | None], None] | None = None, progress: str | None = None,
                repair: bool = False) -> SeedRun:
    """Run (or resume) the search of one seed: ask, evaluate, store, tell until ``budget`` is spent.

    ``directory`` None keeps the store in memory; otherwise its store is validated and resumed (a damaged
    one is refused with what is wrong, or with ``repair`` cut back to its intact trials first), the directory
    is made, then ``before_writing(stored)`` may refuse it or write beside the store, and ``meta`` entries the store lacks are written.
    ``progress`` is the label of a progress bar on stderr (None: no bar)."""
    searcher, stored = _restore(make_searcher, space, budget.batch_size, directory, repair)
    if directory is not None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise dirs.write_error(directory, exc) from None
    if before_writing is not None:
        before_writing(stored)
    with TrialStore(None if directory is None else directory / STORE) as store:
        for key, value in (meta or {}).items():
            if stored is None or key not in stored.meta:
                store.set_meta(key, value)
        store.set_meta("search_start", searcher.search_start)
        trials = stored.trials if stored is not None else {}
        history = stored.history if stored is not None else []
        searcher_s = float(stored.meta.get("searcher_seconds", 0.0)) if stored is not None else 0.0
        earlier_wall_s = float(stored.meta.get("seed_seconds", 0.0)) if stored is not None else 0.0
        loop_start = time.perf_counter()
        spending = Spending(budget, history)
        bar = tqdm(total=spending.total, initial=spending.progress, desc=progress, file=sys.stderr,
                   disable=progress is None, leave=False, dynamic_ncols=True)
        while (n := spending.next_batch()) > 0:
            start = time.perf_counter()
            archs = searcher.ask(n)
            searcher_s += time.perf_counter() - start
            batch = _replay(space, archs, trials, len(history), directory)
            fresh = [position for position in range(len(archs)) if position not in batch]
            for i, outcome in executor.run(evaluator, [archs[p] for p in fresh]):
                position = fresh[i]
                batch[position] = _record(store, space, len(history) + position, archs[position], outcome)
            batch_trials = [batch[position] for position in range(len(archs))]
            start = time.perf_counter()
            searcher.tell(batch_trials)
            searcher_s += time.perf_counter() - start
            history.extend(batch_trials)
            spending.add(batch_trials)
            store.save_checkpoint(len(history), searcher.state_dict())
            store.set_meta("searcher_seconds", searcher_s)
            store.set_meta("seed_seconds", earlier_wall_s + time.perf_counter() - loop_start)
            bar.update(spending.progress - bar.n)
        bar.close()
        store.check_present()
    return SeedRun(history, searcher.search_start, searcher_s, searcher.timings(),
                   earlier_wall_s + time.perf_counter() - loop_start)


def _restore(make_searcher: Callable[[], Searcher], space: SearchSpace, batch_size: int, directory: Path | None,
             repair: bool) -> tuple[Searcher, StoredSeed | None]:
    """The seed's searcher restored from its validated store (None when the seed has not started); with
    ``repair`` a damaged store is cut back to its intact trials first."""
    while True:
        searcher = make_searcher()
        if directory is None:
            return searcher, None
        try:
            stored = read_seed(directory, space, batch_size)
            if stored is not None and stored.state is not None:
                _load_checkpoint(searcher, stored, directory)
            return searcher, stored
        except DamagedSeed as exc:
            if not repair:
                raise
            backup = repair_seed(exc.damage)
            log.warning("repaired %s (%s): %s; backup in %s", directory, exc.damage.what, exc.damage.fix, backup)
            repair = False  # one repair; what it leaves must validate


def _load_checkpoint(searcher: Searcher, stored: StoredSeed, directory: Path) -> None:
    """Restore the searcher from the checkpoint; a state it cannot take is damage (the trials are intact)."""
    try:
        searcher.load_state_dict(stored.state, stored.history)
    except (KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise DamagedSeed(Damage(directory, f"the searcher checkpoint cannot be restored ({reason})",
                                 stored.contiguous, drop_checkpoint=True)) from None


def _record(store: TrialStore, space: SearchSpace, index: int, arch: Any, outcome: Outcome) -> Trial:
    """Commit one evaluation's outcome as trial ``index`` and return it; an evaluator failure, or a result
    with a non-finite metric or cost, is a failed trial with its reason."""
    now = time.time()
    arch_str = space.to_str(arch)
    problem = outcome.error if isinstance(outcome, Failure) else _invalid_result(outcome.metrics, outcome.cost_s,
                                                                                   outcome.wall_s)
    if problem is not None:
        metrics = {} if isinstance(outcome, Failure) else {k: float(v) for k, v in outcome.metrics.items()
                                                           if _number(v)}
        trial = Trial(index=index, arch=arch, arch_str=arch_str, metrics=metrics, status=TrialStatus.FAILED,
                      started=now, finished=now, error=problem)
    else:
        trial = Trial(index=index, arch=arch, arch_str=arch_str, metrics=outcome.metrics, cost_s=outcome.cost_s,
                      wall_s=outcome.wall_s, started=now - outcome.wall_s, finished=now)
    store.add_trial(trial)
    return trial


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _invalid_result(metrics: dict[str, Any], cost_s: Any, wall_s: Any) -> str | None:
    """Why an evaluator's result cannot count as a successful trial, or None."""
    for name, value in [*metrics.items(), ("cost_s", cost_s), ("wall_s", wall_s)]:
        if not _number(value) or not math.isfinite(value) or (name in ("cost_s", "wall_s") and value < 0):
            return f"the evaluator returned {name}={value!r}"
    return None


def _replay(space: SearchSpace, archs: Sequence[Any], stored: dict[int, Trial], first: int,
            directory: Path | None) -> dict[int, Trial]:
    """Position in ``archs`` -> the trial already stored for it (indices from ``first``; an interrupted
    parallel batch may have stored any subset); a stored trial must hold the same architecture."""
    replayed = {}
    for position, arch in enumerate(archs):
        trial = stored.get(first + position)
        if trial is None:
            continue
        if space.key(arch) != space.key(trial.arch):
            raise RunDirError(f"resuming {directory} diverged at trial {trial.index}: the store holds "
                              f"{trial.arch_str} but the searcher proposed {space.to_str(arch)}; the run "
                              "cannot be resumed reproducibly (was the code or data changed?)")
        replayed[position] = trial
    return replayed


BASE_TYPES: dict[str, Any] = {"space": SearchSpace, "evaluator": Evaluator, "searcher": Searcher,
                              "predictor": Predictor, "executor": Executor}
