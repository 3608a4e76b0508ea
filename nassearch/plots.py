"""Figures: search curves (incumbent metric vs queries, mean ± std over seeds) and predictor scatter plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

#: Overlaid runs often coincide (same seeds, same random start): vary the dash so each stays visible.
LINESTYLES = ("-", "--", ":", "-.")


def plot_search_curves(curves: dict[str, np.ndarray], metric: str, path: str | Path,
                       reference_best: float | None = None) -> Path:
    """Draw one line per label: mean over seeds (rows) of the incumbent ``metric``, ± std shaded.

    Curves of different lengths are cut to the shortest within a label. ``reference_best`` (the best
    value in the benchmark) is drawn as a dashed line when given.
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
    ax.set_ylabel(f"{metric} of best-so-far architecture")
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
    ax.set_xlabel(f"true {metric}")
    ax.set_ylabel(f"predicted {target}")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
