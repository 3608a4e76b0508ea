"""``nassearch compare``: one markdown row per finished run directory, from its ``summary.json``.

A row holds what search-quality comparisons quote: the searcher, benchmark and budget, the number of seeds, the
mean ± std of the best trial's report metric (else its search metric), and where the evaluator knows the whole
space, the median, mean and worst rank of the found architectures (1 = best); multi-objective runs add the mean
± std hypervolume ratio against the true front.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from nassearch.errors import RunDirError

HEADER = ("run", "searcher", "benchmark", "queries", "seeds", "metric", "mean ± std", "median rank", "mean rank",
          "worst rank", "hypervolume ratio")


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    """The ``summary.json`` of a finished run directory, or a RunDirError saying what is missing."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        raise RunDirError(f"{run_dir} has no summary.json: it is not a finished run directory (run or resume it "
                          f"with `nassearch run`)")
    try:
        summary = json.loads(path.read_text())
        summary["per_seed"], summary["budget"]  # noqa: B018 (the fields a row needs)
    except (ValueError, KeyError, TypeError) as error:
        raise RunDirError(f"{path} is not a run summary ({error}); rerun or resume the run to rewrite it") from None
    return summary


def comparison_row(run_dir: str | Path) -> list[str]:
    """The table row of one run directory."""
    summary = read_summary(run_dir)
    seeds = list(summary["per_seed"].values())
    metric = seeds[0].get("report_metric") or summary["objective"]
    values = np.array([s["best"]["metrics"][metric] for s in seeds], dtype=float)
    ranks = np.array([s["best"]["standing"]["rank"] for s in seeds if "standing" in s["best"]], dtype=float)
    ratios = np.array([s["hypervolume_ratio"] for s in seeds if "hypervolume_ratio" in s], dtype=float)
    budget = summary["budget"]
    queries = budget["evaluations"] if budget.get("evaluations") is not None else f"{budget['cost_seconds']} s"
    full = len(ranks) == len(seeds)
    return [summary["name"], summary["searcher"], _benchmark(Path(run_dir), summary), str(queries),
            str(len(seeds)), metric, f"{values.mean():.3f} ± {values.std():.3f}",
            f"{np.median(ranks):.0f}" if full else "", f"{ranks.mean():.1f}" if full else "",
            f"{ranks.max():.0f}" if full else "",
            f"{ratios.mean():.4f} ± {ratios.std():.4f}" if len(ratios) == len(seeds) else ""]


def _benchmark(run_dir: Path, summary: dict[str, Any]) -> str:
    """``space / evaluator``, with the evaluator's ``dataset`` from the run's config.yaml when it has one."""
    name = f"{summary['space']} / {summary['evaluator']}"
    try:
        dataset = yaml.safe_load((run_dir / "config.yaml").read_text())["evaluator"].get("dataset")
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return name
    return f"{name} {dataset}" if dataset else name


def comparison_table(run_dirs: Sequence[str | Path]) -> str:
    """A markdown table with one row per run directory (columns: :data:`HEADER`)."""
    rows = [comparison_row(d) for d in run_dirs]
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
