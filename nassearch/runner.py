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
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm import tqdm

from evaluators.base import Evaluator
from nassearch import config as cfg
from nassearch.errors import RunDirError
from nassearch.executors import Failure, Outcome
from nassearch.metrics import pareto_front, pareto_mask, worst_point
from nassearch.objectives import Objective
from nassearch.plots import plot_pareto, plot_search_curves
from nassearch.report import aggregate, format_table, incumbent_curve, pareto_summary, summarize_run
from nassearch.store import TrialStore
from searchers.base import Searcher, Trial
from spaces.base import SearchSpace

log = logging.getLogger(__name__)

#: Spaces whose best architecture ``nassearch retrain`` trains with a final protocol, and that protocol.
RETRAIN_CONFIGS = {"darts": "experiments/darts_retrain.yaml"}


@dataclass
class Components:
    """What a config builds once and shares across seeds (the evaluator's tables load once)."""

    space: SearchSpace
    evaluator: Evaluator
    executor: Any


def build_components(config: cfg.RunConfig, data_dir: str | None = None) -> Components:
    """Instantiate space, evaluator and executor, and check the metrics the config names."""
    space = cfg.build_component("space", config.space, data_dir=data_dir)
    evaluator = cfg.build_component("evaluator", config.evaluator, space=space, data_dir=data_dir)
    cfg.check_metrics(config, evaluator.metrics, config.evaluator["name"])
    executor = cfg.build_component("executor", config.executor)
    return Components(space, evaluator, executor)


def build_searcher(config: cfg.RunConfig, parts: Components, seed: int) -> Searcher:
    """The seed's searcher, with a fresh predictor of that seed when the config names one."""
    predictor = cfg.build_component("predictor", config.predictor, seed=seed) if config.predictor else None
    return cfg.build_component("searcher", config.searcher, space=parts.space, objectives=config.objectives,
                               seed=seed, predictor=predictor)


def _batch_size(budget: dict[str, Any], history: Sequence[Trial]) -> int:
    """How many architectures to ask for next; 0 when the budget is spent.

    A cost budget is checked between batches, so the last batch may run past it.
    """
    if budget["evaluations"] is not None:
        return min(budget["batch_size"], budget["evaluations"] - len(history))
    spent = sum(t.cost_s for t in history)
    return budget["batch_size"] if spent < budget["cost_seconds"] else 0


def _trial_from_record(space: SearchSpace, record: dict[str, Any]) -> Trial:
    return Trial(index=record["idx"], arch=space.from_str(record["arch"]), arch_str=record["arch"],
                 metrics=record["metrics"], cost_s=record["cost_s"], wall_s=record["wall_s"],
                 status=record["status"], started=record["started"], finished=record["finished"])


def _comparable(config_dict: dict[str, Any]) -> dict[str, Any]:
    """A config with today's defaults filled in (a run started before a new option existed stays
    resumable) and without the keys that may change between a run and its resumption."""
    resolved = cfg.validate(config_dict).to_dict()
    output = {k: v for k, v in resolved["output"].items() if k != "progress"}
    return {**resolved, "output": output}


@dataclass
class SeedRun:
    """One seed's trials in ask order, the index where its search phase starts (``search_start``), and the
    seconds its searcher spent in ask / tell (``searcher_s``, summed over resumptions) and in its named
    phases (``timings``)."""

    trials: list[Trial]
    search_start: int
    searcher_s: float
    timings: dict[str, float]

    @property
    def search_trials(self) -> list[Trial]:
        """The trials of the search phase (all but the searcher's own training set)."""
        return self.trials[self.search_start:]


def run_seed(config: cfg.RunConfig, parts: Components, seed: int, directory: Path,
             progress: bool = True) -> SeedRun:
    """Run (or resume) the search of one seed in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    seed_config = config.with_seed(seed)
    with TrialStore(directory / "trials.sqlite") as store:
        stored_config = store.meta("config")
        if stored_config is None:
            store.set_meta("config", seed_config.to_dict())
            (directory / "config.yaml").write_text(yaml.safe_dump(seed_config.to_dict(), sort_keys=False))
        elif _comparable(stored_config) != _comparable(seed_config.to_dict()):
            raise RunDirError(f"{directory} was run with a different config; resume it with the config in "
                              f"{directory / 'config.yaml'} or start a new run directory")
        searcher = build_searcher(config, parts, seed)
        store.set_meta("search_start", searcher.search_start)
        stored = {r["idx"]: _trial_from_record(parts.space, r) for r in store.trials()}
        told = 0
        checkpoint = store.checkpoint()
        if checkpoint is not None:
            told, state = checkpoint
            searcher.load_state_dict(state)
        history = [stored[i] for i in range(told)]
        searcher_s = float(store.meta("searcher_seconds", 0.0))
        budget = config.budget
        total = budget["evaluations"] or budget["cost_seconds"]
        bar = tqdm(total=total, initial=_progress(budget, history), desc=f"{config.name} seed {seed}",
                   file=sys.stderr, disable=not progress, leave=False, dynamic_ncols=True)
        while (n := _batch_size(budget, history)) > 0:
            start = time.perf_counter()
            archs = searcher.ask(n)
            searcher_s += time.perf_counter() - start
            batch = _replay(parts.space, archs, stored, len(history), directory)
            fresh = [position for position in range(len(archs)) if position not in batch]
            for i, outcome in parts.executor.run(parts.evaluator, [archs[p] for p in fresh]):
                position = fresh[i]
                index = len(history) + position
                batch[position] = _record(store, parts.space, index, archs[position], outcome)
            batch_trials = [batch[position] for position in range(len(archs))]
            start = time.perf_counter()
            searcher.tell(batch_trials)
            searcher_s += time.perf_counter() - start
            history.extend(batch_trials)
            store.save_checkpoint(len(history), searcher.state_dict())
            store.set_meta("searcher_seconds", searcher_s)
            bar.update(_progress(budget, history) - bar.n)
        bar.close()
    return SeedRun(history, searcher.search_start, searcher_s, searcher.timings())


def _progress(budget: dict[str, Any], history: Sequence[Trial]) -> float:
    return len(history) if budget["evaluations"] is not None else sum(t.cost_s for t in history)


def _record(store: TrialStore, space: SearchSpace, index: int, arch: Any, outcome: Outcome) -> Trial:
    """Commit one evaluation's outcome as trial ``index`` and return it."""
    now = time.time()
    if isinstance(outcome, Failure):
        trial = Trial(index=index, arch=arch, arch_str=space.to_str(arch), status="failed", started=now,
                      finished=now)
    else:
        trial = Trial(index=index, arch=arch, arch_str=space.to_str(arch), metrics=outcome.metrics,
                      cost_s=outcome.cost_s, wall_s=outcome.wall_s, status="ok", started=now - outcome.wall_s,
                      finished=now)
    store.add_trial(trial.index, trial.arch_str, trial.metrics, trial.cost_s, trial.wall_s, trial.status,
                    trial.started, trial.finished)
    return trial


def _replay(space: SearchSpace, archs: Sequence[Any], stored: dict[int, Trial], first: int,
            directory: Path) -> dict[int, Trial]:
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


@dataclass
class SearchOutcome:
    """What ``run`` returns: where it wrote, the per-seed trials and summaries, the printed table."""

    run_dir: Path
    trials: dict[int, list[Trial]]
    summary: dict[str, Any]
    table: str


def prepare_run_dir(config: cfg.RunConfig, resume: str | Path | None, overwrite: bool) -> Path:
    """The run directory: fresh (refusing to clobber one unless ``overwrite``) or the one to resume."""
    if resume is not None:
        run_dir = Path(resume)
        stored = run_dir / "config.yaml"
        if not stored.is_file():
            raise RunDirError(f"--resume {run_dir}: no config.yaml there; it is not a nassearch run directory")
        previous = yaml.safe_load(stored.read_text())
        if _comparable(previous) != _comparable(config.to_dict()):
            raise RunDirError(f"--resume {run_dir}: the config differs from the one it was started with "
                              f"({stored}); pass that config")
        return run_dir
    run_dir = Path(config.output["dir"]) / config.name
    if run_dir.exists():
        if not overwrite:
            raise RunDirError(f"run directory {run_dir} already exists: continue it with --resume {run_dir}, "
                              "replace it with --overwrite, or choose another output.dir / name")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return run_dir


def run(config: cfg.RunConfig, repeats: int = 1, resume: str | Path | None = None, overwrite: bool = False,
        data_dir: str | None = None) -> SearchOutcome:
    """Search with seeds ``seed .. seed + repeats - 1``; write trials, summaries and plots."""
    if repeats < 1:
        raise RunDirError(f"--repeats must be >= 1, got {repeats}")
    parts = build_components(config, data_dir)
    run_dir = prepare_run_dir(config, resume, overwrite)
    objective = config.objectives[0]
    report_metric = config.output["report_metric"]
    reference = parts.evaluator.reference_values(report_metric) if report_metric else None
    all_trials: dict[int, list[Trial]] = {}
    summaries: dict[int, dict[str, Any]] = {}
    for seed in range(config.seed, config.seed + repeats):
        directory = run_dir / f"seed-{seed}"
        seed_run = run_seed(config, parts, seed, directory, progress=config.output["progress"])
        all_trials[seed] = trials = seed_run.search_trials
        summaries[seed] = {**summarize_run(trials, objective, report_metric, reference),
                           "searcher_s": seed_run.searcher_s, **seed_run.timings}
    multi_objective = len(config.objectives) > 1
    if multi_objective:
        fronts = {seed: pareto_front(trials, config.objectives)[1] for seed, trials in all_trials.items()}
        front = true_front(parts.evaluator, config.objectives)
        pareto_reference = pareto_reference_point(config, fronts.values(), front)
        for seed, trials in all_trials.items():
            summaries[seed].update(pareto_summary(trials, config.objectives, pareto_reference, front))
    for seed, seed_summary in summaries.items():
        _write_json(run_dir / f"seed-{seed}" / "summary.json", seed_summary)
    aggregated = aggregate(summaries, objective, report_metric)
    summary = {"name": config.name, "space": config.space["name"], "evaluator": config.evaluator["name"],
               "searcher": config.searcher["name"], "objective": objective.metric, "mode": objective.mode,
               "budget": config.budget, "search_start": seed_run.search_start, **aggregated}
    if multi_objective:
        summary["pareto_reference"] = [float(v) for v in pareto_reference]
    if config.output["plots"] and report_metric is not None:
        curves = {config.searcher["name"]: _stack([incumbent_curve(t, objective, report_metric)
                                                   for t in all_trials.values()])}
        best = None if reference is None else float(reference.max() if objective.mode == "max" else reference.min())
        summary["plots"] = [str(plot_search_curves(curves, report_metric, run_dir / "plots" / "search_curve.png",
                                                   best))]
    if config.output["plots"] and multi_objective:
        summary.setdefault("plots", []).append(str(plot_pareto(
            {config.searcher["name"]: np.concatenate(list(fronts.values()))}, list(config.objectives),
            run_dir / "plots" / "pareto.png", front)))
    if config.space["name"] in RETRAIN_CONFIGS:
        summary["retrain_command"] = (f"nassearch retrain {run_dir} --config "
                                      f"{RETRAIN_CONFIGS[config.space['name']]}")
    _write_json(run_dir / "summary.json", summary)
    title = (f"{config.name}: {config.searcher['name']} on {config.space['name']} / {config.evaluator['name']}, "
             f"{repeats} seed(s), budget {_budget_text(config.budget)}, search metric {objective.metric}")
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


def pareto_reference_point(config: cfg.RunConfig, fronts: Any, front: np.ndarray | None) -> np.ndarray:
    """The hypervolume reference point: ``output.pareto_reference`` when set, else per objective the worst
    value on the true front when known, else the worst value on the union of the seeds' fronts."""
    if config.output["pareto_reference"] is not None:
        return np.asarray(config.output["pareto_reference"], dtype=float)
    return worst_point(front if front is not None else np.concatenate(list(fronts)), config.objectives)


def _budget_text(budget: dict[str, Any]) -> str:
    if budget["evaluations"] is not None:
        return f"{budget['evaluations']} evaluations"
    return f"{budget['cost_seconds']:g} cost-seconds"


def _stack(curves: list[np.ndarray]) -> np.ndarray:
    length = min(len(c) for c in curves)
    return np.stack([c[:length] for c in curves])


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")


def _load_run(run_dir: str | Path) -> tuple[cfg.RunConfig, list[list[Trial]]]:
    """The config and the per-seed search-phase trials (archs left as strings; a searcher's training
    set, before ``search_start``, left out as in the run's summary) of a run directory."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise RunDirError(f"{run_dir} is not a nassearch run directory (no config.yaml)")
    config = cfg.validate(yaml.safe_load(config_path.read_text()))
    seeds = []
    for seed_dir in sorted(run_dir.glob("seed-*")):
        with TrialStore(seed_dir / "trials.sqlite") as store:
            records = store.trials()[store.meta("search_start", 0):]
        trials = [Trial(index=r["idx"], arch=r["arch"], arch_str=r["arch"], metrics=r["metrics"],
                        status=r["status"]) for r in records]
        if trials:
            seeds.append(trials)
    if not seeds:
        raise RunDirError(f"{run_dir} holds no trials yet")
    return config, seeds


def load_run_curves(run_dir: str | Path, metric: str | None = None) -> tuple[str, str, np.ndarray]:
    """(label, metric, curves over seeds) of a finished run directory, read back from its stores."""
    config, seeds = _load_run(run_dir)
    metric = metric or config.output["report_metric"] or config.objectives[0].metric
    curves = [incumbent_curve(trials, config.objectives[0], metric) for trials in seeds]
    return f"{config.name} ({config.searcher['name']})", metric, _stack(curves)


def load_run_front(run_dir: str | Path, data_dir: str | None = None
                   ) -> tuple[str, list[Objective], np.ndarray, np.ndarray | None]:
    """(label, objectives, Pareto-front points of all seeds together, the benchmark's true front or None)
    of a run directory; the true front needs the run's evaluator (its tables are loaded)."""
    config, seeds = _load_run(run_dir)
    objectives = list(config.objectives)
    if len(objectives) < 2:
        raise RunDirError(f"{run_dir} searched a single objective ({objectives[0].metric}): it has no Pareto front")
    points = np.concatenate([pareto_front(trials, objectives)[1] for trials in seeds])
    front = true_front(build_components(config, data_dir).evaluator, objectives)
    return f"{config.name} ({config.searcher['name']})", objectives, points, front
