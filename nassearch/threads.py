"""How many CPU threads a command's math libraries use: torch (intra- and inter-op), xgboost, onnxruntime
(sessions created afterwards read ``thread_limit``) and, when threadpoolctl is installed, numpy's BLAS.

Each library defaults to one thread per core. When another process shares those cores, threads that wait for
each other at the end of every operation lose their time slices, and small operations (a predictor's forward
pass, the DARTS cost model's networks) run tens of times slower: on 2 cores shared with other jobs, the cost
model took 5 s with one torch thread and 86 s with two. The default cap leaves half the CPUs to others.
"""

from __future__ import annotations

import logging
import os

from nassearch.errors import ConfigError

log = logging.getLogger(__name__)

#: The default never exceeds this many threads: predictor and surrogate operations are small.
MAX_DEFAULT_THREADS = 4

_limit: int | None = None  # the cap ``limit_threads`` last set in this process


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_threads() -> int:
    """Half the usable CPUs, at least 1 and at most ``MAX_DEFAULT_THREADS``."""
    return max(1, min(MAX_DEFAULT_THREADS, usable_cpus() // 2))


def thread_limit() -> int:
    """The threads a library may use in this process: the last ``limit_threads`` cap, else the default."""
    return default_threads() if _limit is None else _limit


def limit_threads(threads: int | None = None) -> int:
    """Cap this process's math libraries at ``threads`` (None: ``default_threads()``); return the cap."""
    global _limit
    import torch
    import xgboost

    cap = default_threads() if threads is None else threads
    if cap < 1:
        raise ConfigError(f"threads: must be >= 1, got {cap}")
    torch.set_num_threads(cap)
    if _limit is None:  # torch sizes its inter-op pool once per process, before the pool's first use
        try:
            torch.set_num_interop_threads(cap)
        except RuntimeError:
            log.info("torch's inter-op pool has started already; it keeps %d threads", torch.get_num_interop_threads())
    xgboost.set_config(nthread=cap)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        log.info("threadpoolctl is not installed: numpy's BLAS keeps its own thread count (OPENBLAS_NUM_THREADS)")
    else:
        threadpool_limits(cap)
    _limit = cap
    return cap
