"""Figures: search curves (incumbent metric vs queries, mean ± std over seeds), Pareto fronts and predictor
scatter plots. Axes name each metric with its unit; titles name the benchmark and its dataset."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from nassearch.metrics import non_dominated, to_minimisation  # noqa: E402
from nassearch.objectives import Objective  # noqa: E402
from nassearch.registry import EVALUATORS  # noqa: E402

#: Overlaid runs often coincide (same seeds, same random start): vary the dash so each stays visible.
LINESTYLES = ("-", "--", ":", "-.")
#: (metric name pattern, unit) of the evaluators' metrics; the first match wins, unlisted metrics have none.
METRIC_UNITS = ((r".*_acc(_.*)?", "%"), (r"params", "M parameters"), (r"flops", "M FLOPs"), (r"lat_.*", "ms"),
                (r".*_s", "s"))


def metric_label(metric: str) -> str:
    """``metric`` with its unit, e.g. ``val_acc (%)``, ``lat_1080ti_bs1 (ms)``; losses as they are."""
    unit = next((unit for pattern, unit in METRIC_UNITS if re.fullmatch(pattern, metric)), None)
    return f"{metric} ({unit})" if unit else metric


def benchmark_title(config: Any) -> str:
    """What a run config searched: space, evaluator and dataset (the evaluator's ``dataset`` setting, else the
    dataset its class answers for), e.g. ``nasbench201 / nb201_tabular, cifar10``."""
    name = config.evaluator["name"]
    return f"{config.space['name']} / {name}, {config.evaluator.get('dataset') or EVALUATORS.get(name).dataset}"


def plot_search_curves(curves: dict[str, np.ndarray], metric: str, path: str | Path,
                       reference_best: float | None = None, title: str | None = None) -> Path:
    """Draw one line per label: mean over seeds (rows) of the incumbent ``metric``, ± std shaded.

    Curves of different lengths are cut to the shortest within a label. ``reference_best`` (the best
    value in the benchmark) is drawn as a dashed line when given; ``title`` (``benchmark_title``) above.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for i, (label, runs) in enumerate(curves.items()):
        runs = np.atleast_2d(runs)
        queries = np.arange(1, runs.shape[1] + 1)
        mean, std = np.nanmean(runs, axis=0), np.nanstd(runs, axis=0)
        line, = ax.plot(queries, mean, linestyle=LINESTYLES[i % len(LINESTYLES)], label=f"{label} (n={runs.shape[0]})")
        ax.fill_between(queries, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
    if reference_best is not None:
        ax.axhline(reference_best, color="black", linestyle="--", linewidth=0.8, label="best in benchmark")
    ax.set_xlabel("queries (evaluated architectures)")
    ax.set_ylabel(f"{metric_label(metric)} of best-so-far architecture")
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_prediction_scatter(predicted: np.ndarray, true: np.ndarray, path: str | Path, title: str,
                            target: str, metric: str) -> Path:
    """Predicted ``target`` vs true ``metric``, one dot per architecture."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.0, 5.0), dpi=120)
    ax.scatter(true, predicted, s=2, alpha=0.3, linewidths=0, rasterized=True)
    ax.set_xlabel(f"true {metric_label(metric)}")
    ax.set_ylabel(f"predicted {metric_label(target)}")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _front(points: np.ndarray, objectives: list[Objective]) -> np.ndarray:
    """The distinct non-dominated ``points`` (objectives' units), from the best to the worst first objective."""
    points = np.unique(points, axis=0)
    minimised = to_minimisation(points, objectives)
    mask = non_dominated(minimised)
    return points[mask][np.argsort(minimised[mask, 0], kind="stable")]


def _staircase(front: np.ndarray, objectives: list[Objective]) -> np.ndarray:
    """Vertices of the attainment staircase through a 2-objective front (as ``_front`` sorts it)."""
    minimised = to_minimisation(front, objectives)
    corners = np.column_stack([minimised[1:, 0], minimised[:-1, 1]])
    steps = np.empty((2 * len(minimised) - 1, 2))
    steps[0::2], steps[1::2] = minimised, corners
    return to_minimisation(steps, objectives)  # negating twice restores the objectives' units


def _objective_label(objective: Objective) -> str:
    return f"{metric_label(objective.metric)}, {'higher' if objective.mode == 'max' else 'lower'} is better"


def plot_pareto(runs: dict[str, np.ndarray], objectives: list[Objective], path: str | Path,
                true_front: np.ndarray | None = None, title: str | None = None) -> Path:
    """Draw each run's non-dominated set of ``points`` (n, k) in the objectives' units.

    Two objectives: one scatter plus attainment staircase per run, the ``true_front`` (when given) in
    grey underneath. Three or more: a grid with one scatter per pair of objectives. ``title`` above all.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    objectives = list(objectives)
    pairs = [(i, j) for i in range(len(objectives)) for j in range(i + 1, len(objectives))]
    cols = min(len(pairs), 3)
    rows = -(-len(pairs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.6 * cols, 4.4 * rows), dpi=120, squeeze=False)
    layers = ([("true front", true_front, {"color": "grey", "alpha": 0.6, "zorder": 1})] if true_front is not None
              else []) + [(label, points, {"zorder": 2}) for label, points in runs.items()]
    for ax, (i, j) in zip(axes.flat, pairs):
        for k, (label, points, style) in enumerate(layers):
            front = _front(np.asarray(points, dtype=float), objectives)
            dots = ax.scatter(front[:, i], front[:, j], s=12, label=f"{label} ({len(front)})", **style)
            if len(objectives) == 2 and len(front):
                steps = _staircase(front, objectives)
                ax.plot(steps[:, 0], steps[:, 1], color=dots.get_facecolor()[0], linewidth=0.9,
                        linestyle=LINESTYLES[k % len(LINESTYLES)], zorder=style["zorder"])
        ax.set_xlabel(_objective_label(objectives[i]))
        ax.set_ylabel(_objective_label(objectives[j]))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(pairs):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
