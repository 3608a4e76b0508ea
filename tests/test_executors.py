"""Executors: serial and Ray evaluation of ask batches; trials stored in ask order whatever the finish order,
interrupted parallel batches resumed, failed evaluations retried and recorded, a killed Ray worker's trial
rerun. The Ray tests start one local Ray instance with 2 CPUs for the module."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from nassearch.evaluators.base import Result
from nassearch.evaluators.delayed import Delayed
from nassearch import config as cfg
from nassearch import runner
from nassearch.errors import ConfigError
from nassearch.executors import Failure, RayExecutor, SerialExecutor
from nassearch.report import best_trial
from nassearch.spaces.nasbench201 import NasBench201Space
from nassearch.store import TrialStore

SPACE = NasBench201Space()


def run_one_seed(make_config, data_dir, executor, directory, evaluator=None):
    """Run seed 0 of a small NB201 regularized-evolution config (batches of 4) in ``directory`` with ``executor``
    (and the evaluator wrapped by ``evaluator`` when given)."""
    config = cfg.load(make_config(budget={"evaluations": 16, "batch_size": 4}))
    parts = runner.build_components(config, str(data_dir))
    parts = runner.Components(parts.space, evaluator(parts.evaluator) if evaluator else parts.evaluator, executor)
    return config, runner.run_seed(config, parts, 0, directory, progress=False), directory


def stored(directory):
    with TrialStore(directory / "trials.sqlite") as store:
        return store.trials(SPACE)


class ReversedExecutor:
    """Evaluates a batch serially but reports it last-first, like parallel workers finishing out of order."""

    def start(self):
        pass

    def run(self, evaluator, archs):
        results = [evaluator.evaluate(a) for a in archs]
        yield from reversed(list(enumerate(results)))


class InterruptedExecutor(ReversedExecutor):
    """Reports two results of the ``batch``-th batch out of order, then dies like a killed driver."""

    def __init__(self, batch):
        self.batch, self.calls = batch, 0

    def run(self, evaluator, archs):
        self.calls += 1
        outcomes = super().run(evaluator, archs)
        if self.calls == self.batch:
            yield next(outcomes)
            next(outcomes)
            yield next(outcomes)
            raise KeyboardInterrupt
        yield from outcomes


class FailingExecutor(SerialExecutor):
    """Serial, but the third evaluation of every batch fails."""

    def run(self, evaluator, archs):
        for position, outcome in super().run(evaluator, archs):
            yield position, (Failure("RuntimeError: out of memory", 3) if position == 2 else outcome)


def test_serial_executor_yields_every_position_in_order(nb201_evaluator, random_archs):
    archs = random_archs(5, 0)
    outcomes = list(SerialExecutor().run(nb201_evaluator, archs))
    assert [p for p, _ in outcomes] == list(range(5))
    assert [r.metrics for _, r in outcomes] == [nb201_evaluator.evaluate(a).metrics for a in archs]


def test_serial_executor_hands_a_batched_evaluator_whole_batches_and_nothing_when_empty(nb201_evaluator,
                                                                                         random_archs, monkeypatch):
    archs = random_archs(5, 1)
    calls = []
    original = type(nb201_evaluator).evaluate_batch
    monkeypatch.setattr(type(nb201_evaluator), "evaluate_batch",
                        lambda self, batch: calls.append(len(batch)) or original(self, batch))
    assert nb201_evaluator.batched
    results = list(SerialExecutor().run(nb201_evaluator, archs))
    assert calls == [5] and [p for p, _ in results] == list(range(5))
    assert list(SerialExecutor().run(nb201_evaluator, [])) == [] and calls == [5]  # a resumed, complete batch


@pytest.mark.slow
def test_store_order_is_ask_order_when_results_finish_out_of_order(make_config, data_dir, tmp_path):
    _, serial, serial_dir = run_one_seed(make_config, data_dir, SerialExecutor(), directory=tmp_path / "serial")
    _, reversed_, reversed_dir = run_one_seed(make_config, data_dir, ReversedExecutor(), directory=tmp_path / "rev")
    assert [t.arch_str for t in reversed_.trials] == [t.arch_str for t in serial.trials]
    rows = stored(reversed_dir)
    assert [r.index for r in rows] == list(range(16))
    assert [(r.arch_str, r.metrics) for r in rows] == [(r.arch_str, r.metrics) for r in stored(serial_dir)]


@pytest.mark.slow
def test_interrupted_parallel_batch_resumes_without_losing_or_repeating(make_config, data_dir, tmp_path):
    _, serial, _ = run_one_seed(make_config, data_dir, SerialExecutor(), directory=tmp_path / "serial")
    with pytest.raises(KeyboardInterrupt):
        run_one_seed(make_config, data_dir, InterruptedExecutor(batch=3), directory=tmp_path / "run")
    held = [r.index for r in stored(tmp_path / "run")]
    assert held == [0, 1, 2, 3, 4, 5, 6, 7, 9, 11]  # batch 3 (trials 8-11) stored 11 and 9 before dying
    _, resumed, _ = run_one_seed(make_config, data_dir, SerialExecutor(), directory=tmp_path / "run")
    assert [r.index for r in stored(tmp_path / "run")] == list(range(16))
    assert [(t.arch_str, t.metrics) for t in resumed.trials] == [(t.arch_str, t.metrics) for t in serial.trials]


def test_failed_evaluations_are_recorded_and_never_win(make_config, data_dir, tmp_path):
    config, seed_run, directory = run_one_seed(make_config, data_dir, FailingExecutor(), directory=tmp_path / "f")
    rows = stored(directory)
    assert [r.index for r in rows] == list(range(16))
    assert [r.status for r in rows] == ["failed" if i % 4 == 2 else "ok" for i in range(16)]
    assert all(r.metrics == {} for r in rows if r.status == "failed")
    assert best_trial(seed_run.trials, config.objectives[0]).ok


@pytest.mark.parametrize("spec, message", [
    ({"max_concurrent": 0}, "max_concurrent must be >= 1"),
    ({"max_retries": -1}, "max_retries must be >= 0"),
    ({"num_gpus_per_trial": -1}, "num_gpus_per_trial must be >= 0"),
    ({"address": "auto", "num_cpus": 4}, "num_cpus sizes a local Ray instance"),
    ({"workers": 4}, "workers"),
])
def test_bad_ray_settings_are_config_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        cfg.build_component("executor", cfg.resolve_component("executor", {"name": "ray", **spec}))


# --- Ray ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    yield ray
    ray.shutdown()


def _worker_pids(task_name: str) -> list[int]:
    """PIDs of processes whose title is Ray's ``ray::<task_name>`` (a worker running that task)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode()
        except (OSError, ValueError):
            continue
        if title.startswith(f"ray::{task_name}"):
            pids.append(int(entry.name))
    return pids


@pytest.mark.slow
def test_killed_ray_worker_trial_is_rerun_and_the_run_matches_serial(local_ray, make_config, data_dir, tmp_path,
                                                                      caplog):
    _, serial, _ = run_one_seed(make_config, data_dir, SerialExecutor(), directory=tmp_path / "serial")
    killed = []

    def kill_one_worker_mid_trial():
        deadline = time.monotonic() + 240
        while not killed and time.monotonic() < deadline:
            pids = _worker_pids("evaluate_one")
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_worker_mid_trial, daemon=True)
    killer.start()
    with caplog.at_level(logging.WARNING, logger="nassearch.executors"):
        _, ray_run, directory = run_one_seed(make_config, data_dir, RayExecutor(max_concurrent=2),
                                             evaluator=lambda e: Delayed(e, 0.5), directory=tmp_path / "ray")
    killer.join()
    assert killed, "no Ray worker was seen running a trial"
    assert any("failed on attempt 1" in r.message and "retrying" in r.message for r in caplog.records)
    rows = stored(directory)
    assert [r.index for r in rows] == list(range(16)) and all(r.status == "ok" for r in rows)
    assert [t.arch_str for t in ray_run.trials] == [t.arch_str for t in serial.trials]
    objective = cfg.load(make_config()).objectives[0]
    assert best_trial(ray_run.trials, objective).arch_str == best_trial(serial.trials, objective).arch_str


@pytest.mark.slow
def test_ray_evaluator_error_is_retried_then_reported(local_ray, nb201_evaluator, random_archs):
    good = random_archs(2, 0)
    outcomes = dict(RayExecutor(max_retries=1).run(nb201_evaluator, [good[0], "not an architecture", good[1]]))
    assert sorted(outcomes) == [0, 1, 2]
    assert isinstance(outcomes[0], Result) and outcomes[0].metrics == nb201_evaluator.evaluate(good[0]).metrics
    assert isinstance(outcomes[2], Result)
    assert isinstance(outcomes[1], Failure) and outcomes[1].attempts == 2
    assert outcomes[1].error and "\n" not in outcomes[1].error


@pytest.mark.slow
def test_ray_that_cannot_start_is_one_clear_error(monkeypatch):
    import ray

    from nassearch.errors import ExecutorError

    def refuse(**_):
        raise ConnectionError("GCS at 10.0.0.1:6379 unreachable")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(ExecutorError, match=r"could not connect to the Ray cluster at '10.0.0.1:6379' \(GCS at "
                                            r"10.0.0.1:6379 unreachable\); check executor.address"):
        RayExecutor(address="10.0.0.1:6379").start()


@pytest.mark.slow
def test_a_ray_search_leaves_the_callers_print_alone(data_dir):
    """Ray's tqdm support replaces ``builtins.print`` of the driver process unless RAY_TQDM_PATCH_PRINT=0; the
    executor sets that default, so a Python user's ``print`` is still the built-in after a Ray search."""
    import subprocess
    import sys

    script = ("import builtins, nassearch\n"
              "before = builtins.print\n"
              "nassearch.search('nasbench201', {'name': 'nb201_tabular', 'dataset': 'cifar10'}, 'random_search', "
              "budget=8, executor={'name': 'ray', 'num_cpus': 2})\n"
              "assert builtins.print is before, builtins.print\n")
    env = {key: value for key, value in os.environ.items() if key != "RAY_TQDM_PATCH_PRINT"}
    done = subprocess.run([sys.executable, "-c", script], env={**env, "NASSEARCH_DATA": str(data_dir)},
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
