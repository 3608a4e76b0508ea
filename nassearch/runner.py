"""The search loop: budget, seeds, executor, store, checkpoints, resume, repeats and reports.

A run directory (``output.dir/name`` unless resumed elsewhere) holds the resolved ``config.yaml``,
``summary.json`` over all seeds, ``plots/`` and one ``seed-<s>/`` folder per seed with its own
``trials.sqlite``, ``config.yaml`` and ``summary.json``.

Resume semantics: the searcher checkpoint stores its state after the last ``tell``. On resume the
searcher is restored, asked again (its random state makes it propose the same architectures), and
trials already in the store are replayed from the store instead of being evaluated again; so a run
killed at any point ends with exactly the trials of an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from nassearch import config as cfg
from nassearch import run_dir as dirs
from nassearch.api import SeedRun, search_seed
from nassearch.evaluators.base import Evaluator
from nassearch.errors import RunDirError
from nassearch.metrics import normalised_reference, pareto_front, pareto_mask, worst_point
from nassearch.objectives import Objective
from nassearch.plots import benchmark_title, plot_pareto, plot_search_curves
from nassearch.repair import DamagedSeed, StoredSeed, read_seed
from nassearch.report import aggregate, format_table, incumbent_curve, pareto_summary, summarize_run
from nassearch.store import TrialStore
from nassearch.validation import shown
from nassearch.searchers.base import Searcher
from nassearch.trial import Trial
from nassearch.spaces.base import SearchSpace

log = logging.getLogger(__name__)

#: Spaces whose best architecture ``nassearch retrain`` trains with a final protocol, and that protocol.
RETRAIN_CONFIGS = {"darts": "experiments/darts_retrain.yaml"}


@dataclass
class Components:
    """What a config builds once and shares across seeds (the evaluator's tables load once)."""

    space: SearchSpace
    evaluator: Evaluator
    executor: Any
    data_dir: str | None = None


def build_components(config: cfg.RunConfig, data_dir: str | None = None) -> Components:
    """Instantiate space, evaluator and executor, and check the metrics the config names."""
    space = cfg.build_component("space", config.space, data_dir=data_dir)
    evaluator = cfg.build_component("evaluator", config.evaluator, space=space, data_dir=data_dir)
    cfg.check_metrics(config.objectives, config.output.report_metric, evaluator.metrics, config.evaluator["name"])
    executor = cfg.build_component("executor", config.executor)
    return Components(space, evaluator, executor, data_dir)


def build_searcher(config: cfg.RunConfig, parts: Components, seed: int) -> Searcher:
    """The seed's searcher, with a fresh predictor of that seed when the config names one."""
    predictor = (cfg.build_component("predictor", config.predictor, seed=seed, space=parts.space)
                 if config.predictor else None)
    return cfg.build_component("searcher", config.searcher, space=parts.space, objectives=config.objectives,
                               seed=seed, predictor=predictor,
                               build_evaluator=cfg.evaluator_builder(parts.space, parts.data_dir))


def _comparable(config_dict: dict[str, Any]) -> dict[str, Any]:
    """A config with today's defaults filled in (a run started before a new option existed stays
    resumable) and without the keys that may change between a run and its resumption."""
    resolved = cfg.validate(config_dict).to_dict()
    output = {k: v for k, v in resolved["output"].items() if k != "progress"}
    return {**resolved, "output": output}


def config_differences(stored: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """The dotted keys whose values differ between two resolved configs (``--resume`` refusals name them)."""
    if isinstance(stored, dict) and isinstance(given, dict):
        keys = list(stored) + [k for k in given if k not in stored]
        return [f"{k}.{d}" if d else str(k) for k in keys
                for d in config_differences(stored.get(k), given.get(k))]
    if isinstance(stored, list) and isinstance(given, list) and len(stored) == len(given):
        return [f"{i}.{d}" if d else str(i) for i, (a, b) in enumerate(zip(stored, given))
                for d in config_differences(a, b)]
    return [] if stored == given else [""]


def _check_same_config(stored: dict[str, Any], given: dict[str, Any], where: Path, fix: str) -> None:
    differences = config_differences(_comparable(stored), _comparable(given))
    if differences:
        shown = ", ".join(differences[:8]) + (f" and {len(differences) - 8} more" if len(differences) > 8 else "")
        raise RunDirError(f"{where} was run with a different config (differs in {shown}); {fix}")


def run_seed(config: cfg.RunConfig, parts: Components, seed: int, directory: Path,
             progress: bool = True, repair: bool = False) -> SeedRun:
    """Run (or resume) the search of one seed in ``directory`` with :func:`nassearch.api.search_seed`; its
    store must have been run with this config (else it is refused), and ``config.yaml`` is written beside it."""
    seed_config = config.with_seed(seed)

    def before_writing(stored: StoredSeed | None) -> None:
        if stored is not None and "config" in stored.meta:
            _check_same_config(stored.meta["config"], seed_config.to_dict(), directory,
                               f"resume it with the config in {directory / 'config.yaml'} or start a new run directory")
            return
        dirs.atomic_write_text(directory / "config.yaml", yaml.safe_dump(seed_config.to_dict(), sort_keys=False))

    return search_seed(parts.space, parts.evaluator, parts.executor, lambda: build_searcher(config, parts, seed),
                       config.budget, directory, meta={"config": seed_config.to_dict()}, before_writing=before_writing,
                       progress=f"{config.name} seed {seed}" if progress else None, repair=repair)


@dataclass
class SearchOutcome:
    """What ``run`` returns: where it wrote, the per-seed trials and summaries, the printed table."""

    run_dir: Path
    trials: dict[int, list[Trial]]
    summary: dict[str, Any]
    table: str


def open_run_dir(config: cfg.RunConfig, resume: str | Path | None, overwrite: bool,
                 repair: bool = False) -> tuple[Path, dirs.DirectoryLock]:
    """The run directory, locked: a new one (``output.dir/name``; an existing one only replaced with
    ``overwrite`` and only if nassearch made it), or the one to resume, whose config must match (with
    ``repair``, a damaged config.yaml is rewritten from ``config``)."""
    if resume is None:
        run_dir = Path(config.output.dir) / config.name
        lock = dirs.create(run_dir, "search run", overwrite, f"continue it with --resume {run_dir}")
        try:
            dirs.atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
        except RunDirError:
            lock.release()
            raise
        return run_dir, lock
    run_dir = Path(resume)
    lock = dirs.open_existing(run_dir, "search run", "config.yaml")
    try:
        _check_resumable(run_dir, config, repair)
    except BaseException:
        lock.release()
        raise
    return run_dir, lock


def _check_resumable(run_dir: Path, config: cfg.RunConfig, repair: bool) -> None:
    stored = run_dir / "config.yaml"
    try:
        previous = read_run_config(run_dir).to_dict()
    except RunDirError as exc:
        if not repair:
            raise RunDirError(f"{exc}; `--repair` rewrites it from the config you pass (each seed's store is "
                              "checked against it)") from None
        for seed, directory in seed_dirs(run_dir):
            _check_seed_config(directory, config.with_seed(seed))
        stored.replace(stored.with_name(f"config.yaml.damaged-{time.strftime('%Y%m%d-%H%M%S')}"))
        dirs.atomic_write_text(stored, yaml.safe_dump(config.to_dict(), sort_keys=False))
        log.warning("repaired %s: rewritten from the given config", stored)
        return
    _check_same_config(previous, config.to_dict(), run_dir, f"pass the config it was started with ({stored})")


def _check_seed_config(directory: Path, config: cfg.RunConfig) -> None:
    """Refuse ``config`` if the seed store in ``directory`` (when readable) was run with another one."""
    try:
        with TrialStore(directory / "trials.sqlite", readonly=True) as store:
            stored = store.meta("config")
    except (RunDirError, sqlite3.DatabaseError, ValueError):
        return  # no store yet, or a damaged one: its own check reports it
    if stored is not None:
        _check_same_config(stored, config.to_dict(), directory, "pass the config it was started with")


def read_run_config(run_dir: Path) -> cfg.RunConfig:
    """The validated config.yaml of a run directory; RunDirError saying what is wrong with it."""
    path = run_dir / "config.yaml"
    try:
        raw = cfg.read_yaml(path, "run config")
        if not isinstance(raw, dict):
            raise cfg.ConfigError("not a mapping of config sections")
        return cfg.validate(raw)
    except cfg.ConfigError as exc:
        raise RunDirError(f"{path} is damaged: {exc}") from None


def run(config: cfg.RunConfig, repeats: int = 1, resume: str | Path | None = None, overwrite: bool = False,
        data_dir: str | None = None, repair: bool = False) -> SearchOutcome:
    """Search with seeds ``seed .. seed + repeats - 1``; write trials, summaries and plots. The run directory
    is locked for the whole run; ``repair`` cuts damaged seed stores back to their intact trials."""
    if repeats < 1:
        raise RunDirError(f"--repeats must be >= 1, got {repeats}")
    if repair and resume is None:
        raise RunDirError("--repair repairs a run directory being resumed: add --resume RUN_DIR")
    parts = build_components(config, data_dir)
    build_searcher(config, parts, config.seed)  # a settings error the searcher or predictor finds leaves no run dir
    run_dir, lock = open_run_dir(config, resume, overwrite, repair)
    try:
        return _search(config, parts, repeats, run_dir, repair)
    except KeyboardInterrupt as exc:
        raise Interrupted(run_dir) from exc
    except OSError as exc:
        if exc.errno not in dirs.WRITE_ERRNOS:
            raise
        raise dirs.write_error(Path(exc.filename) if exc.filename else run_dir, exc) from None
    finally:
        lock.release()


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; ``run_dir`` is where its trials are, to resume."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(str(run_dir))
        self.run_dir = run_dir


def _search(config: cfg.RunConfig, parts: Components, repeats: int, run_dir: Path, repair: bool) -> SearchOutcome:
    objective = config.objectives[0]
    report_metric = config.output.report_metric
    reference = parts.evaluator.reference_values(report_metric) if report_metric else None
    space_reference = whole_space_reference(config, parts.evaluator)
    all_trials: dict[int, list[Trial]] = {}
    summaries: dict[int, dict[str, Any]] = {}
    for seed in range(config.seed, config.seed + repeats):
        directory = run_dir / f"seed-{seed}"
        seed_run = run_seed(config, parts, seed, directory, progress=config.output.progress, repair=repair)
        all_trials[seed] = trials = seed_run.search_trials
        summaries[seed] = {**summarize_run(trials, objective, report_metric, reference, config.objectives),
                           "searcher_s": seed_run.searcher_s, "seed_wall_s": seed_run.seed_wall_s,
                           **seed_run.timings}
    multi_objective = len(config.objectives) > 1
    if multi_objective:
        fronts = {seed: pareto_front(trials, config.objectives)[1] for seed, trials in all_trials.items()}
        front = true_front(parts.evaluator, config.objectives)
        pareto_reference = (space_reference if space_reference is not None
                            else pareto_reference_point(config, fronts.values(), front))
        for seed, trials in all_trials.items():
            summaries[seed].update(pareto_summary(trials, config.objectives, pareto_reference, front))
    for seed, seed_summary in summaries.items():
        _write_json(run_dir / f"seed-{seed}" / "summary.json", seed_summary)
    aggregated = aggregate(summaries, objective, report_metric)
    summary = {"name": config.name, "space": config.space["name"], "evaluator": config.evaluator["name"],
               "searcher": config.searcher["name"], "objective": objective.metric, "mode": objective.mode,
               "budget": config.budget.to_dict(), "search_start": seed_run.search_start, **aggregated}
    if parts.evaluator.source:
        summary["evaluator_source"] = parts.evaluator.source
    if multi_objective:
        summary["pareto_reference"] = [float(v) for v in pareto_reference]
    if config.output.plots and report_metric is not None:
        curves = {config.searcher["name"]: _stack([incumbent_curve(t, objective, report_metric, config.objectives)
                                                   for t in all_trials.values()])}
        best = None if reference is None else float(reference.max() if objective.mode == "max" else reference.min())
        summary["plots"] = [str(plot_search_curves(curves, report_metric, run_dir / "plots" / "search_curve.png",
                                                   best, title=benchmark_title(config)))]
    if config.output.plots and multi_objective:
        summary.setdefault("plots", []).append(str(plot_pareto(
            {config.searcher["name"]: np.concatenate(list(fronts.values()))}, list(config.objectives),
            run_dir / "plots" / "pareto.png", front, title=benchmark_title(config))))
    if config.space["name"] in RETRAIN_CONFIGS:
        summary["retrain_command"] = (f"nassearch retrain {run_dir} --config "
                                      f"{RETRAIN_CONFIGS[config.space['name']]}")
    _write_json(run_dir / "summary.json", summary)
    title = (f"{config.name}: {config.searcher['name']} on {config.space['name']} / {config.evaluator['name']}, "
             f"{repeats} seed(s), budget {config.budget}, search metric {objective.metric}"
             + (f" ({parts.evaluator.source})" if parts.evaluator.source else ""))
    return SearchOutcome(run_dir, all_trials, summary, format_table(title, summaries, aggregated, objective,
                                                                     report_metric))


def true_front(evaluator: Evaluator, objectives: Sequence[Objective]) -> np.ndarray | None:
    """The benchmark's feasible Pareto front over the objectives' metrics (objectives' units), or None
    when the evaluator has no whole-space reference values for one of them."""
    columns = [evaluator.reference_values(o.metric) for o in objectives]
    if any(c is None for c in columns):
        return None
    points = np.column_stack(columns)
    return points[pareto_mask(points, objectives)]


def whole_space_reference(config: cfg.RunConfig, evaluator: Evaluator) -> np.ndarray | None:
    """The reference point of ``output.pareto_reference: normalised`` (see ``metrics.normalised_reference``), or
    None for the other settings; a ConfigError, before anything runs, when the evaluator lacks a whole-space
    column for one of the objectives."""
    if config.output.pareto_reference != "normalised":
        return None
    columns = [evaluator.reference_values(o.metric) for o in config.objectives]
    missing = [o.metric for o, c in zip(config.objectives, columns) if c is None]
    if missing:
        raise cfg.ConfigError(f"output.pareto_reference: normalised needs every objective's values over the whole "
                              f"space, and evaluator {config.evaluator['name']} has none for {', '.join(missing)}; "
                              f"give one reference value per objective instead, in its units")
    return normalised_reference(columns, config.objectives)


def pareto_reference_point(config: cfg.RunConfig, fronts: Any, front: np.ndarray | None) -> np.ndarray:
    """The hypervolume reference point: ``output.pareto_reference`` when set to values, else per objective the
    worst value on the true front when known, else the worst value on the union of the seeds' fronts."""
    if isinstance(config.output.pareto_reference, tuple):
        return np.asarray(config.output.pareto_reference, dtype=float)
    return worst_point(front if front is not None else np.concatenate(list(fronts)), config.objectives)


def _stack(curves: list[np.ndarray]) -> np.ndarray:
    length = min(len(c) for c in curves)
    return np.stack([c[:length] for c in curves])


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    dirs.atomic_write_text(path, json.dumps(payload, indent=2, allow_nan=True) + "\n")


def seed_dirs(run_dir: Path) -> list[tuple[int, Path]]:
    """``(seed, directory)`` of every ``seed-<s>`` entry of a run directory, by seed."""
    found = [(int(p.name[5:]), p) for p in run_dir.iterdir() if re.fullmatch(r"seed-\d{1,10}", p.name)]
    return sorted(found)


def _load_run(run_dir: str | Path, data_dir: str | None = None) -> tuple[cfg.RunConfig, list[list[Trial]]]:
    """The config and the per-seed search-phase trials (a searcher's training set, before ``search_start``,
    left out as in the run's summary) of a run directory, each seed's store validated first."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise RunDirError(f"{run_dir} is not a nassearch run directory (no config.yaml)")
    config = read_run_config(run_dir)
    space = cfg.build_component("space", config.space, data_dir=data_dir)
    seeds = []
    for _, directory in seed_dirs(run_dir):
        try:
            stored = read_seed(directory, space, config.budget.batch_size)
        except DamagedSeed as exc:
            raise DamagedSeed(exc.damage, run_dir) from None
        if stored is None:
            continue
        trials = [stored.trials[i] for i in range(stored.contiguous)][stored.meta.get("search_start", 0):]
        if trials:
            seeds.append(trials)
    if not seeds:
        raise RunDirError(f"{run_dir} holds no trials yet")
    return config, seeds


def load_run_curves(run_dir: str | Path, metric: str | None = None,
                    data_dir: str | None = None) -> tuple[str, str, np.ndarray]:
    """(label, metric, curves over seeds) of a finished run directory, read back from its stores."""
    config, seeds = _load_run(run_dir, data_dir)
    metric = metric or config.output.report_metric or config.objectives[0].metric
    recorded = sorted({m for trials in seeds for t in trials for m in t.metrics})
    if metric not in recorded:
        raise cfg.ConfigError(f"--metric {shown(metric)}: the trials of {run_dir} hold no such metric; "
                              f"choose one of {', '.join(recorded)}")
    curves = [incumbent_curve(trials, config.objectives[0], metric, config.objectives) for trials in seeds]
    return f"{config.name} ({config.searcher['name']})", metric, _stack(curves)


def load_run_front(run_dir: str | Path, data_dir: str | None = None
                   ) -> tuple[str, list[Objective], np.ndarray, np.ndarray | None]:
    """(label, objectives, Pareto-front points of all seeds together, the benchmark's true front or None)
    of a run directory; the true front needs the run's evaluator (its tables are loaded)."""
    config, seeds = _load_run(run_dir, data_dir)
    objectives = list(config.objectives)
    if len(objectives) < 2:
        raise RunDirError(f"{run_dir} searched a single objective ({objectives[0].metric}): it has no Pareto front")
    points = np.concatenate([pareto_front(trials, objectives)[1] for trials in seeds])
    front = true_front(build_components(config, data_dir).evaluator, objectives)
    return f"{config.name} ({config.searcher['name']})", objectives, points, front
