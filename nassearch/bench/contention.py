"""``nassearch bench contention``: the wall time of one search run alone and beside CPU-bound processes, so
the table shows what sharing the machine costs at the run's thread cap (issue 15's bound: 3x the quiet time).

Each run is ``nassearch run CONFIG --quiet`` in a fresh process, timed from start to exit as a user sees it,
with an empty cache directory (``NASSEARCH_CACHE``) so that every run measures the NB301 cost model, torch's
heaviest work in a DARTS search; ``warm_cache`` gives both runs one cache filled by an untimed run instead.
The competitors are Python processes spinning on the CPU, started before the run and killed after it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nassearch.errors import NassearchError
from nassearch.bench.harness import aligned_table


@contextmanager
def busy_processes(count: int) -> Iterator[None]:
    """``count`` processes spinning on the CPU while the block runs."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def timed_run(command: Sequence[str], cache: Path) -> float:
    """Seconds ``command`` (a ``nassearch run``) takes with ``cache`` as its cache directory."""
    start = time.perf_counter()
    done = subprocess.run(command, env={**os.environ, "NASSEARCH_CACHE": str(cache)}, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    wall_s = time.perf_counter() - start
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise NassearchError(f"bench contention: the run failed ({last})")
    return wall_s


def contention_rows(config: str, overrides: Sequence[str], threads: int, competitors: int,
                    data_dir: str | None = None, warm_cache: bool = False) -> list[dict[str, Any]]:
    """The quiet row, then the row beside ``competitors`` busy processes; both runs cap themselves at ``threads``."""
    with tempfile.TemporaryDirectory(prefix="nassearch-contention-") as scratch:
        root = Path(scratch)

        def command(label: str) -> list[str]:
            return [sys.executable, "-m", "nassearch", "run", config, "--quiet", "--threads", str(threads),
                    *(f"--set={o}" for o in overrides), f"--set=output.dir={root / label}",
                    *(["--data-dir", data_dir] if data_dir else [])]

        shared = root / "cache"
        if warm_cache:
            timed_run(command("fill-cache"), shared)
        quiet_s = timed_run(command("quiet"), shared if warm_cache else root / "cache-quiet")
        with busy_processes(competitors):
            competing_s = timed_run(command("competing"), shared if warm_cache else root / "cache-competing")
    return [{"condition": "quiet", "competitors": 0, "wall_s": quiet_s, "ratio": 1.0},
            {"condition": "competing", "competitors": competitors, "wall_s": competing_s,
             "ratio": competing_s / quiet_s}]


def format_contention_rows(rows: list[dict[str, Any]], title: str) -> str:
    """The benchmark table: wall seconds and the ratio to the quiet run."""
    return aligned_table(title, ["condition", "busy processes", "wall s", "x quiet"], [
        [row["condition"], str(row["competitors"]), f"{row['wall_s']:.1f}", f"{row['ratio']:.2f}"] for row in rows])
