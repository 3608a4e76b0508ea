"""``nassearch bench evaluator``: an evaluator's queries per second; it prints a table, it never asserts."""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence

import numpy as np

from nassearch.bench.harness import aligned_table
from nassearch.evaluators.base import Evaluator
from nassearch.spaces.base import SearchSpace


def _sample(space: SearchSpace, rng: np.random.Generator, n: int) -> list:
    return [space.sample(rng) for _ in range(n)]


def evaluator_throughput(space: SearchSpace, evaluator: Evaluator, batch_sizes: Sequence[int],
                         rounds: int = 5, seed: int = 0) -> list[dict[str, float]]:
    """Queries per second of ``query_batch`` (array API, when the evaluator has one) and of
    ``evaluate_batch`` (Result objects) for each batch size; the median over ``rounds`` timings.

    As ``timeit`` does, the garbage collector is off while a call is timed: its full collections scan every live
    object of the process, so their cost depends on what else the process holds, not on the evaluator."""
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
                gc.disable()
                try:
                    start = time.perf_counter()
                    call(archs)
                    times.append(time.perf_counter() - start)
                finally:
                    gc.enable()
            median = float(np.median(times))
            rows.append({"api": api, "batch_size": size, "seconds": median, "queries_per_s": size / median})
    return rows


def format_throughput(rows: list[dict[str, float]], title: str) -> str:
    """The throughput rows as a fixed-width table."""
    cells = [[row["api"], f"{row['batch_size']:d}", f"{row['seconds']:.6f}", f"{row['queries_per_s']:,.0f}"]
             for row in rows]
    return aligned_table(title, ["api", "batch", "seconds", "queries/s"], cells, specs=["<16", ">10", ">14", ">16"],
                         sep="")
