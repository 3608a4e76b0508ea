"""A search killed with SIGKILL at a random point and resumed ends with the uninterrupted trials."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from nassearch.spaces.nasbench201 import NasBench201Space
from nassearch.store import TrialStore

pytestmark = pytest.mark.slow  # minutes of subprocess runs; CI runs them (tests/conftest.py)

SPACE = NasBench201Space()

BUDGET = 3000


def stored(run_dir):
    with TrialStore(run_dir / "seed-0" / "trials.sqlite") as store:
        return [(t.index, t.arch_str, t.metrics) for t in store.trials(SPACE)]


def count_trials(db):
    try:
        with sqlite3.connect(db, timeout=0.1) as conn:
            return conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
    except sqlite3.Error:
        return 0


def nassearch(*args, data_dir):
    return [sys.executable, "-m", "nassearch", *args, "--data-dir", str(data_dir)]


@pytest.mark.parametrize("kill_seed", [0, 1])
def test_sigkill_then_resume_matches_uninterrupted_run(make_config, data_dir, kill_seed):
    kill_after = int(np.random.default_rng(kill_seed).integers(50, BUDGET - 500))
    path = make_config(budget={"evaluations": BUDGET},
                       searcher={"name": "regularized_evolution", "population_size": 100, "sample_size": 10})
    run_dir = path.parent / "runs" / "t"
    proc = subprocess.Popen(nassearch("run", str(path), "--quiet", data_dir=data_dir),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = run_dir / "seed-0" / "trials.sqlite"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and (not db.exists() or count_trials(db) < kill_after):
        time.sleep(0.002)
    assert proc.poll() is None, f"run ended before the kill point: {proc.stderr.read().decode()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = len(stored(run_dir))
    assert kill_after <= killed_at < BUDGET

    resumed = subprocess.run(nassearch("run", str(path), "--resume", str(run_dir), "--quiet", data_dir=data_dir),
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    clean = subprocess.run(nassearch("run", str(path), "--set", "name=clean", "--quiet", data_dir=data_dir),
                           capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr
    assert stored(run_dir) == stored(path.parent / "runs" / "clean")
    assert len(stored(run_dir)) == BUDGET
