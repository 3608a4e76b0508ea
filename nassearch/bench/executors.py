"""``nassearch bench executor``: the wall time of one search seed with the serial executor and with the
config's executor, every evaluation slowed to a fixed ``delay`` (``nassearch.evaluators.delayed``), so the table
shows how much evaluation time parallel workers hide. Both runs must find the same best architecture.

Startup (timed apart from the search) is the executor's ``start()`` plus, for executors with workers, one
warm-up round: as many architectures as the executor runs at once, each delayed by a second so that every
worker takes one and imports the evaluator's modules, as the workers of a running cluster already have."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from nassearch.evaluators.delayed import Delayed
from nassearch import config as cfg
from nassearch.bench.harness import aligned_table
from nassearch.report import best_trial
from nassearch.runner import Components, build_components, run_seed


def executor_rows(config: cfg.RunConfig, delay_s: float, data_dir: str | None = None) -> list[dict[str, Any]]:
    """One row per executor (serial first, then the config's unless it is serial)."""
    parts = build_components(config, data_dir)
    evaluator = Delayed(parts.evaluator, delay_s)
    specs = [cfg.resolve_component("executor", {"name": "serial"})]
    if config.executor["name"] != "serial":
        specs.append(config.executor)
    rows = []
    for spec in specs:
        executor = cfg.build_component("executor", spec)
        start = time.perf_counter()
        executor.start()
        if spec["name"] != "serial":
            rng = np.random.default_rng(config.seed)
            slots = spec.get("max_concurrent") or config.budget.batch_size
            list(executor.run(Delayed(parts.evaluator, 1.0), [parts.space.sample(rng) for _ in range(slots)]))
        startup_s = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as directory:
            start = time.perf_counter()
            seed_run = run_seed(config, Components(parts.space, evaluator, executor), config.seed, Path(directory),
                                progress=False)
            wall_s = time.perf_counter() - start
        best = best_trial(seed_run.trials, config.objectives[0])
        rows.append({"executor": spec["name"], "max_concurrent": spec.get("max_concurrent", 1) or "batch",
                     "evaluations": len(seed_run.trials), "failed": sum(not t.ok for t in seed_run.trials),
                     "startup_s": startup_s, "wall_s": wall_s, "evals_per_s": len(seed_run.trials) / wall_s,
                     "best": best.arch_str})
    return rows


def format_executor_rows(rows: list[dict[str, Any]], title: str) -> str:
    """The benchmark table; the last column says whether each executor's best equals the serial one's."""
    header = ["executor", "max_concurrent", "evaluations", "failed", "startup s", "wall s", "evals/s",
              "same best as serial"]
    return aligned_table(title, header, [
        [row["executor"], str(row["max_concurrent"]), str(row["evaluations"]), str(row["failed"]),
         f"{row['startup_s']:.1f}", f"{row['wall_s']:.1f}", f"{row['evals_per_s']:.2f}",
         "yes" if row["best"] == rows[0]["best"] else "NO"] for row in rows])

