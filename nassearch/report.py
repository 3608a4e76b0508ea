"""Run summaries: the best architecture, how it ranks within the benchmark, incumbent curves, and for
multi-objective runs the hypervolume of the Pareto front found."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nassearch.errors import SearchError
from nassearch.metrics import hypervolume, hypervolume_ratio, pareto_front
from nassearch.objectives import Objective, fitness
from nassearch.trial import Trial


def best_trial(trials: Sequence[Trial], objective: Objective, bounds: Sequence[Objective] = ()) -> Trial:
    """The successful trial best by ``objective`` among those within the ``bounds`` objectives' bounds (the
    earliest on ties); SearchError when there is none."""
    objectives = [objective, *bounds]
    ok = [t for t in trials if t.ok and fitness(objectives, t.metrics) > -np.inf]
    if not ok:
        within = " within the objectives' bounds" if any(o.bound is not None for o in objectives) else ""
        raise SearchError(f"no successful trial{within} to report among {len(trials)} trial(s)")
    return max(ok, key=lambda t: (objective.signed(t.metrics), -t.index))


def incumbent_curve(trials: Sequence[Trial], objective: Objective, metric: str,
                    bounds: Sequence[Objective] = ()) -> np.ndarray:
    """After each trial: ``metric`` of the best-so-far trial by ``objective`` among those within the
    ``bounds`` (NaN before the first such trial)."""
    objectives = [objective, *bounds]
    curve = np.full(len(trials), np.nan)
    best_score, best_value = -np.inf, np.nan
    for i, trial in enumerate(trials):
        score = fitness(objectives, trial.metrics) if trial.ok else -np.inf
        if score > best_score:
            best_score, best_value = score, trial.metrics.get(metric, np.nan)
        curve[i] = best_value
    return curve


def standing(value: float, reference: np.ndarray, higher_is_better: bool) -> dict[str, float]:
    """Rank (1 = best), percentile (% of the space strictly worse) and regret of ``value``."""
    if np.isnan(value):
        raise ValueError("a NaN value has no standing")
    ref = reference[~np.isnan(reference)]
    better = ref > value if higher_is_better else ref < value
    worse = ref < value if higher_is_better else ref > value
    best = ref.max() if higher_is_better else ref.min()
    return {"rank": int(better.sum()) + 1, "space_size": int(ref.size),
            "percentile": float(100.0 * worse.sum() / ref.size),
            "regret": float(best - value if higher_is_better else value - best)}


def summarize_run(trials: Sequence[Trial], objective: Objective, report_metric: str | None,
                  reference: np.ndarray | None, bounds: Sequence[Objective] = ()) -> dict[str, Any]:
    """Summary of one seed: counts, costs, the best trial (within the ``bounds``), and its standing in the
    benchmark."""
    best = best_trial(trials, objective, bounds)
    summary: dict[str, Any] = {
        "num_trials": len(trials),
        "cost_s": float(sum(t.cost_s for t in trials)),
        "wall_s": float(sum(t.wall_s for t in trials)),
        "best": {"trial": best.index, "arch": best.arch_str, "metrics": best.metrics},
    }
    if report_metric is not None:
        summary["report_metric"] = report_metric
        if reference is not None and not np.isnan(best.metrics.get(report_metric, np.nan)):
            summary["best"]["standing"] = standing(best.metrics[report_metric], reference, objective.mode == "max")
    return summary


#: Per-seed summary fields of multi-objective runs that ``aggregate`` averages over seeds.
PARETO_FIELDS = ("hypervolume", "hypervolume_ratio")
#: Per-seed seconds spent by the searcher itself (ask / tell, and a predictor's fitting), averaged too.
TIMING_FIELDS = ("searcher_s", "predictor_fit_s", "fit_s_per_round", "seed_wall_s")


def pareto_summary(trials: Sequence[Trial], objectives: Sequence[Objective], reference: Sequence[float],
                   true_front: np.ndarray | None) -> dict[str, Any]:
    """Size and hypervolume (up to ``reference``) of the trials' Pareto front, and its ratio to the
    hypervolume of ``true_front`` when given."""
    _, front = pareto_front(trials, objectives)
    summary: dict[str, Any] = {"front_size": len(front), "hypervolume": hypervolume(front, reference, objectives)}
    if true_front is not None:
        summary["hypervolume_ratio"] = hypervolume_ratio(front, true_front, reference, objectives)
    return summary


def aggregate(seed_summaries: dict[int, dict[str, Any]], objective: Objective,
              report_metric: str | None) -> dict[str, Any]:
    """Mean and std over seeds of the best trial's objective, report metric and standing."""
    fields: dict[str, list[float]] = {}
    for summary in seed_summaries.values():
        best = summary["best"]
        values = {objective.metric: best["metrics"][objective.metric]}
        if report_metric is not None:
            values[report_metric] = best["metrics"][report_metric]
        values.update({k: v for k, v in best.get("standing", {}).items() if k != "space_size"})
        values.update({k: summary[k] for k in PARETO_FIELDS + TIMING_FIELDS if k in summary})
        for key, value in values.items():
            fields.setdefault(key, []).append(float(value))
    stats = {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "min": float(np.min(v)),
                 "max": float(np.max(v))} for k, v in fields.items()}
    return {"seeds": sorted(seed_summaries), "stats": stats,
            "per_seed": {str(s): seed_summaries[s] for s in sorted(seed_summaries)}}


def format_table(title: str, seed_summaries: dict[int, dict[str, Any]], aggregated: dict[str, Any],
                 objective: Objective, report_metric: str | None) -> str:
    """A plain-text table: one row per seed, then mean ± std."""
    columns = [objective.metric] + ([report_metric] if report_metric and report_metric != objective.metric else [])
    has_standing = any("standing" in s["best"] for s in seed_summaries.values())
    extra = (["rank", "percentile", "regret"] if has_standing else []) + [
        k for k in PARETO_FIELDS + TIMING_FIELDS if k in aggregated["stats"]]
    header = ["seed", *[f"best {c}" if c == objective.metric else c for c in columns], *extra, "trials", "arch"]
    rows = []
    for seed in sorted(seed_summaries):
        best = seed_summaries[seed]["best"]
        extra_values = {**best.get("standing", {}), **seed_summaries[seed]}
        rows.append([str(seed), *[f"{best['metrics'][c]:.3f}" for c in columns],
                     *[_fmt(extra_values.get(k)) for k in extra],
                     str(seed_summaries[seed]["num_trials"]), best["arch"]])
    stats = aggregated["stats"]
    rows.append(["mean±std", *[f"{stats[c]['mean']:.3f}±{stats[c]['std']:.3f}" for c in columns],
                 *[f"{stats[k]['mean']:.4g}±{stats[k]['std']:.3g}" for k in extra], "", ""])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = [title]
    for row in [header, *rows]:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return str(value) if isinstance(value, int) else f"{value:.4g}"
