"""Executors: how the evaluations of one ``ask`` batch are run.

``run(evaluator, archs)`` yields ``(position, outcome)`` pairs as evaluations finish, ``position`` being
the architecture's index in ``archs`` and ``outcome`` its ``Result`` or, after the executor's retries
are used up, a ``Failure``. The runner stores each outcome under its ask-order index as it arrives,
so the store's order is the ask order whatever the finish order.
"""

from __future__ import annotations

import atexit
import ipaddress
import logging
import os
import signal
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from nassearch.evaluators.base import Evaluator, Result
from nassearch.errors import ExecutorError
from nassearch.spaces.base import Arch

log = logging.getLogger(__name__)


#: Environment of a local Ray instance: every Ray server on loopback (Ray's own setting for single-machine
#: platforms, read when ``ray`` is imported) and token authentication on by choice, which Ray otherwise
#: announces on stderr. Set before ``import ray``; inherited by the processes Ray starts.
LOCAL_RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token"}
#: Ray's tqdm integration replaces ``builtins.print`` of the driver process for good unless this is "0"; nassearch
#: does not use it and must not patch its caller's ``print`` (a value the user set wins).
DRIVER_RAY_ENV = {"RAY_TQDM_PATCH_PRINT": "0"}


#: Set once SIGTERM has interrupted this process (Ray turns the handler's exception into a plain
#: KeyboardInterrupt when it arrives during a Ray call, so the exception cannot say it).
TERMINATED = threading.Event()


def _interrupt_on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM: unwind like Ctrl-C, so that committed trials stay and the local Ray instance is shut down at
    exit; a second SIGTERM ends the process at once."""
    TERMINATED.set()
    signal.signal(signum, signal.SIG_DFL)
    raise KeyboardInterrupt


def _own_local_ray(ray: Any) -> None:
    """Checks and exit handling for the local Ray instance this process just started: refuse it unless it
    listens on loopback only; shut it down at exit, and on SIGTERM (replacing Ray's handler, which exits
    without waiting for Ray's processes)."""
    node_ip = ray.util.get_node_ip_address()
    if not ipaddress.ip_address(node_ip).is_loopback:
        ray.shutdown()
        raise ExecutorError(f"executor ray: the local Ray instance would listen on {node_ip}, not only on loopback "
                            "(ray was imported before the executor started, or RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER is "
                            "set); start Ray yourself and give executor.address, or unset that variable")
    atexit.register(ray.shutdown)  # runs before Ray's own exit handler, outside interpreter teardown
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt_on_sigterm)


@dataclass(frozen=True)
class Failure:
    """An evaluation that failed on every attempt: the last error's first line and the attempts made."""

    error: str
    attempts: int


Outcome = Result | Failure


class SerialExecutor:
    """Evaluates one architecture after the other in this process; evaluator errors propagate."""

    name = "serial"

    def start(self) -> None:
        """Nothing to start."""

    def run(self, evaluator: Evaluator, archs: Sequence[Arch]) -> Iterator[tuple[int, Outcome]]:
        """Yield ``(position, Result)`` for each architecture, in order: one vectorised query for a
        ``batched`` evaluator, else one evaluation after the other (each stored as soon as it is done)."""
        if evaluator.batched:
            if archs:  # a resumed batch may have nothing left to evaluate
                yield from enumerate(evaluator.evaluate_batch(list(archs)))
            return
        for position, arch in enumerate(archs):
            yield position, evaluator.evaluate(arch)


def evaluate_one(evaluator: Evaluator, arch: Arch) -> Result:
    """The body of one Ray task."""
    return evaluator.evaluate(arch)


class RayExecutor:
    """Evaluates a batch as Ray tasks, at most ``max_concurrent`` at a time, on a local Ray instance
    (``address: local``, ``num_cpus`` logical CPUs, default all) or an existing cluster (``address: auto`` or
    ``host:port``, ``ray://host:port``). Each task reserves ``num_cpus_per_trial`` CPUs and
    ``num_gpus_per_trial`` GPUs. A task whose evaluator raised or whose worker died is resubmitted up to
    ``max_retries`` times, then reported as a ``Failure``; no evaluation is ever dropped.

    On a cluster, every node needs nassearch installed and the benchmark data at the same path.

    A local instance this executor starts listens on loopback only, keeps Ray's token authentication on
    without announcing it, and is shut down when the process exits; SIGTERM unwinds the run like Ctrl-C
    (and sets ``TERMINATED``), so that this shutdown happens and no Ray process outlives the driver.
    """

    name = "ray"

    def __init__(self, address: str = "local", num_cpus: int | None = None, num_cpus_per_trial: float = 1.0,
                 num_gpus_per_trial: float = 0.0, max_concurrent: int | None = None, max_retries: int = 2) -> None:
        if not address:
            raise ValueError("address must be 'local', 'auto' or a cluster address such as 'ray://host:10001'")
        if num_cpus is not None and num_cpus < 1:
            raise ValueError(f"num_cpus must be >= 1, got {num_cpus}")
        if address != "local" and num_cpus is not None:
            raise ValueError("num_cpus sizes a local Ray instance; leave it out with a cluster address")
        if num_cpus_per_trial < 0 or num_gpus_per_trial < 0:
            raise ValueError("num_cpus_per_trial and num_gpus_per_trial must be >= 0")
        if max_concurrent is not None and max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.address, self.num_cpus = address, num_cpus
        self.num_cpus_per_trial, self.num_gpus_per_trial = num_cpus_per_trial, num_gpus_per_trial
        self.max_concurrent, self.max_retries = max_concurrent, max_retries
        self._evaluator: tuple[Evaluator, Any] | None = None  # (evaluator, its object ref)
        self._task: Any = None  # evaluate_one as a Ray remote function, made once

    def start(self) -> Any:
        """Connect to (or start) Ray once; return the ``ray`` module."""
        local = self.address == "local"
        # before ``import ray``: Ray reads the loopback switch then
        for key, value in {**DRIVER_RAY_ENV, **(LOCAL_RAY_ENV if local else {})}.items():
            os.environ.setdefault(key, value)
        import ray

        if not ray.is_initialized():
            try:
                if local:
                    ray.init(num_cpus=self.num_cpus, include_dashboard=False, configure_logging=False)
                else:
                    ray.init(address=self.address, configure_logging=False)
            except Exception as exc:  # Ray raises ConnectionError, TimeoutError or bare Exceptions here
                where = "start a local Ray instance" if local else f"connect to the Ray cluster at {self.address!r}"
                raise ExecutorError(f"executor ray: could not {where} ({exc}); check executor.address, or run "
                                    "with executor: {name: serial}") from None
            if local:
                _own_local_ray(ray)
        return ray

    def _evaluator_ref(self, ray: Any, evaluator: Evaluator) -> Any:
        """The evaluator in Ray's object store, shipped once per evaluator, not once per task."""
        if self._evaluator is None or self._evaluator[0] is not evaluator:
            self._evaluator = (evaluator, ray.put(evaluator))
        return self._evaluator[1]

    def run(self, evaluator: Evaluator, archs: Sequence[Arch]) -> Iterator[tuple[int, Outcome]]:
        """Yield ``(position, outcome)`` as the tasks finish."""
        if not archs:
            return
        ray = self.start()
        if self._task is None:
            self._task = ray.remote(num_cpus=self.num_cpus_per_trial, num_gpus=self.num_gpus_per_trial,
                                    max_retries=0)(evaluate_one)
        evaluator_ref = self._evaluator_ref(ray, evaluator)
        limit = self.max_concurrent or len(archs)
        waiting: deque[tuple[int, int]] = deque((position, 1) for position in range(len(archs)))
        running: dict[Any, tuple[int, int]] = {}
        while waiting or running:
            while waiting and len(running) < limit:
                position, attempt = waiting.popleft()
                running[self._task.remote(evaluator_ref, archs[position])] = (position, attempt)
            (ref,), _ = ray.wait(list(running), num_returns=1)
            position, attempt = running.pop(ref)
            try:
                outcome: Outcome = ray.get(ref)
            except ray.exceptions.RayError as exc:
                error = _describe(ray, exc)
                if attempt <= self.max_retries:
                    log.warning("evaluation %d failed on attempt %d (%s); retrying", position, attempt, error)
                    waiting.appendleft((position, attempt + 1))
                    continue
                log.error("evaluation %d failed on all %d attempts (%s); recorded as failed", position, attempt,
                          error)
                outcome = Failure(error, attempt)
            yield position, outcome


def _describe(ray: Any, exc: Exception) -> str:
    """One line on why a Ray task failed: the evaluator's own exception, or Ray's first line."""
    cause = getattr(exc, "cause", None) if isinstance(exc, ray.exceptions.RayTaskError) else None
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
