"""Performance benchmarks run by ``nassearch bench``: they print tables, they never assert."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from evaluators.base import Evaluator
from spaces.base import SearchSpace


def _sample(space: SearchSpace, rng: np.random.Generator, n: int) -> list:
    return [space.sample(rng) for _ in range(n)]


def evaluator_throughput(space: SearchSpace, evaluator: Evaluator, batch_sizes: Sequence[int],
                         rounds: int = 5, seed: int = 0) -> list[dict[str, float]]:
    """Queries per second of ``query_batch`` (array API, when the evaluator has one) and of
    ``evaluate_batch`` (Result objects) for each batch size; the median over ``rounds`` timings."""
    rng = np.random.default_rng(seed)
    rows = []
    for size in batch_sizes:
        archs = _sample(space, rng, size)
        apis = {"evaluate_batch": evaluator.evaluate_batch}
        if hasattr(evaluator, "query_batch"):
            apis = {"query_batch": evaluator.query_batch, **apis}
        for api, call in apis.items():
            call(archs)  # warm-up
            times = []
            for _ in range(rounds):
                start = time.perf_counter()
                call(archs)
                times.append(time.perf_counter() - start)
            median = float(np.median(times))
            rows.append({"api": api, "batch_size": size, "seconds": median, "queries_per_s": size / median})
    return rows


def format_throughput(rows: list[dict[str, float]], title: str) -> str:
    """The throughput rows as a fixed-width table."""
    lines = [title, f"{'api':<16}{'batch':>10}{'seconds':>14}{'queries/s':>16}"]
    for row in rows:
        lines.append(f"{row['api']:<16}{row['batch_size']:>10d}{row['seconds']:>14.6f}{row['queries_per_s']:>16,.0f}")
    return "\n".join(lines)
