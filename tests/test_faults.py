"""Faults while a run writes: two writers racing for one run directory, SIGKILL inside the lock, a store
commit and a checkpoint write, a full disk, a read-only output directory, and the store deleted mid-run.
Each ends in one clear line (or a silent death for SIGKILL), loses nothing committed, and a resume gives
exactly the trials of an uninterrupted run.

Runs happen in child processes (``python -c``: a fault to inject is a few lines of code run before the
CLI) whose stderr goes to a file."""

import errno
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nassearch.cli import main
from nassearch.repair import read_seed
from nassearch.run_dir import LOCK
from nassearch.store import TrialStore
from nassearch.spaces.nasbench201 import NasBench201Space

SPACE = NasBench201Space()
pytestmark = pytest.mark.slow  # minutes of subprocess runs; CI runs them (tests/conftest.py)

BUDGET = 1500


def trial_rows(run_dir: Path, seed: int = 0) -> list[tuple]:
    with TrialStore(run_dir / f"seed-{seed}" / "trials.sqlite") as store:
        return [(t.index, t.arch_str, t.metrics, t.status) for t in store.trials(SPACE)]


def spawn(argv: list[str], err_path: Path, fault: str = "", preexec=None) -> subprocess.Popen:
    """Start ``nassearch argv`` in a child process that first runs the Python code ``fault``."""
    code = f"{fault}\nimport sys\nfrom nassearch.cli import main\nsys.exit(main({argv!r}))\n"
    with err_path.open("w") as err:
        return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=err,
                                preexec_fn=preexec)


def finish(process: subprocess.Popen, err_path: Path, timeout: float = 300) -> tuple[int, list[str]]:
    process.wait(timeout)
    lines = [line for line in err_path.read_text().splitlines() if line.strip()]
    return process.returncode, lines


def assert_one_line(code: int, lines: list[str], *words: str) -> None:
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("nassearch: error: ") and "Traceback" not in lines[0], lines
    for word in words:
        assert word in lines[0], lines


@pytest.fixture
def clean_run(make_config, data_dir, tmp_path):
    """(config path, the trials of an uninterrupted run of it)."""
    path = make_config(budget={"evaluations": BUDGET})
    assert main(["run", str(path), "--set", "name=clean", "--data-dir", str(data_dir), "--quiet"]) == 0
    return path, trial_rows(tmp_path / "runs" / "clean")


def run_argv(path: Path, data_dir: Path, *extra: str) -> list[str]:
    return ["run", str(path), "--data-dir", str(data_dir), "--quiet", *extra]


# --------------------------------------------------------------------------------------- two writers


def lock_holder(run_dir: Path) -> int | None:
    """The PID the run directory's lock file names, if it can be read."""
    try:
        return json.loads((run_dir / LOCK).read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


def wait_for(go: Path) -> str:
    """Fault code: import the engine, then wait until the file ``go`` exists (a start-up free start signal)."""
    return f"import pathlib, time\nimport nassearch.runner\nwhile not pathlib.Path({str(go)!r}).exists():\n" \
           "    time.sleep(0.001)\n"


def pause_at_evaluations(points: list[int], flags: Path) -> str:
    """Fault code: before its evaluation number ``points[r]`` (counted over all seeds) the run creates
    ``flags/paused-r`` and waits until ``flags/resume-r`` exists."""
    return f"""
import pathlib, time
from nassearch.evaluators.tabular import NasBench201Tabular
evaluate, calls, points, flags = NasBench201Tabular.evaluate, [0], {points!r}, pathlib.Path({str(flags)!r})
def paced(self, arch):
    if calls[0] in points:
        race = points.index(calls[0])
        (flags / f"paused-{{race}}").touch()
        while not (flags / f"resume-{{race}}").exists():
            time.sleep(0.001)
    calls[0] += 1
    return evaluate(self, arch)
NasBench201Tabular.evaluate = paced
NasBench201Tabular.batched = False  # one evaluate() per architecture, so the pacing applies
"""


def test_a_second_writer_is_always_refused(make_config, data_dir, tmp_path):
    """20 races: a run of 20 seeds is held at a random trial of each seed while a second process (started up
    beforehand) resumes it, overwrites it or starts it afresh. The second is refused in one line every time;
    the first ends normally, its stores validate and hold exactly the trials of an undisturbed run."""
    budget, races = 200, 20
    path = make_config(budget={"evaluations": budget})
    assert main(run_argv(path, data_dir, "--set", "name=clean", "--repeats", str(races))) == 0
    rng = np.random.default_rng(0)
    points = [race * budget + int(rng.integers(0, budget)) for race in range(races)]
    run_dir, flags = tmp_path / "runs" / "t", tmp_path / "flags"
    flags.mkdir()
    modes = (["--resume", str(run_dir)], ["--overwrite"], [])

    def second(race: int) -> subprocess.Popen:
        return spawn(run_argv(path, data_dir, *modes[race % 3]), tmp_path / f"second-{race}.err",
                     wait_for(flags / f"go-{race}"))

    first = spawn(run_argv(path, data_dir, "--repeats", str(races)), tmp_path / "first.err",
                  pause_at_evaluations(points, flags))
    waiting = second(0)
    outcomes = set()
    for race in range(races):
        while not (flags / f"paused-{race}").exists():
            assert first.poll() is None, (tmp_path / "first.err").read_text()
            time.sleep(0.001)
        current, waiting = waiting, second(race + 1) if race + 1 < races else None
        (flags / f"go-{race}").touch()
        code, lines = finish(current, tmp_path / f"second-{race}.err")
        (flags / f"resume-{race}").touch()
        assert_one_line(code, lines)
        reason = next((r for r in ("in use by another nassearch process (PID", "already exists") if r in lines[0]),
                      None)
        assert reason is not None, lines
        outcomes.add(reason)
    assert finish(first, tmp_path / "first.err")[0] == 0
    for seed in range(races):
        assert read_seed(run_dir / f"seed-{seed}", NasBench201Space(), 1) is not None
        assert trial_rows(run_dir, seed) == trial_rows(tmp_path / "runs" / "clean", seed), f"seed {seed}"
    assert outcomes == {"in use by another nassearch process (PID", "already exists"}


# --------------------------------------------------------------------------------------- SIGKILL at chosen points


def kill_on_statement(prefix: str, nth: int, steps: int = 0) -> str:
    """Fault code: SIGKILL the process when its store starts the ``nth`` SQL statement beginning with ``prefix``
    (before it writes), or with ``steps`` > 0 that many SQLite VM steps into it (in the middle of its write)."""
    return f"""
import os, signal, sqlite3
from nassearch import store
connect, seen = sqlite3.connect, [0]
def die():
    os.kill(os.getpid(), signal.SIGKILL)
def traced_connect(*args, **kwargs):
    connection = connect(*args, **kwargs)
    def trace(statement):
        if statement.lstrip().upper().startswith({prefix!r}):
            seen[0] += 1
            if seen[0] == {nth}:
                if {steps} == 0:
                    die()
                connection.set_progress_handler(die, {steps})
    connection.set_trace_callback(trace)
    return connection
store.sqlite3.connect = traced_connect
"""


KILL_HOLDING_THE_LOCK = """
import fcntl, os, signal
flock = fcntl.flock
def flock_then_die(fd, operation):
    flock(fd, operation)
    if operation & fcntl.LOCK_EX:
        os.kill(os.getpid(), signal.SIGKILL)
fcntl.flock = flock_then_die
"""


@pytest.mark.parametrize("where, fault", [
    ("inside the lock", KILL_HOLDING_THE_LOCK),
    ("inside a trial commit", kill_on_statement("INSERT INTO TRIALS", 700)),
    ("in the middle of a trial's write", kill_on_statement("INSERT INTO TRIALS", 801, steps=12)),
    ("in the middle of a checkpoint's write", kill_on_statement("INSERT OR REPLACE INTO CHECKPOINT", 1001, steps=12)),
    ("inside a checkpoint write", kill_on_statement("INSERT OR REPLACE INTO CHECKPOINT", 900)),
])
def test_sigkill_at_a_chosen_point_then_resume_gives_the_uninterrupted_trials(clean_run, data_dir, tmp_path,
                                                                            where, fault):
    path, clean = clean_run
    run_dir = tmp_path / "runs" / "t"
    process = spawn(run_argv(path, data_dir), tmp_path / "killed.err", fault)
    assert process.wait(300) == -signal.SIGKILL, where
    if (run_dir / "config.yaml").exists():
        assert main(run_argv(path, data_dir, "--resume", str(run_dir))) == 0
    else:  # killed before the run directory held anything: a new run takes it over
        assert main(run_argv(path, data_dir)) == 0
    assert trial_rows(run_dir) == clean


# --------------------------------------------------------------------------------------- full disk, read-only


def limit_file_size(size: int):
    """A preexec function: files may not grow past ``size`` bytes (Python ignores SIGXFSZ, so such a write
    fails with EFBIG, as on a full disk)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def test_a_full_disk_is_one_line_and_the_resume_completes_identically(clean_run, data_dir, tmp_path):
    path, clean = clean_run
    run_dir = tmp_path / "runs" / "t"
    process = spawn(run_argv(path, data_dir), tmp_path / "full.err", preexec=limit_file_size(96 * 1024))
    code, lines = finish(process, tmp_path / "full.err")
    assert_one_line(code, lines, "cannot write", "--resume")
    committed = trial_rows(run_dir)
    assert 0 < len(committed) < BUDGET and committed == clean[:len(committed)]
    assert main(run_argv(path, data_dir, "--resume", str(run_dir))) == 0
    assert trial_rows(run_dir) == clean


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory that refuses writes even to root: a read-only tmpfs when we may mount, else chmod 555.
    Yields a function that toggles it writable (True) or read-only (False)."""
    target = tmp_path / "ro"
    target.mkdir()
    if os.geteuid() == 0:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(target)], check=True)

        def set_writable(writable: bool) -> None:
            subprocess.run(["mount", "-o", f"remount,{'rw' if writable else 'ro'}", str(target)], check=True)
    else:
        def set_writable(writable: bool) -> None:
            target.chmod(0o755 if writable else 0o555)
    yield target, set_writable
    if os.geteuid() == 0:
        subprocess.run(["umount", str(target)], check=True)
    else:
        target.chmod(0o755)


def test_a_read_only_output_directory_is_one_line(make_config, data_dir, tmp_path, read_only_dir, capsys):
    target, set_writable = read_only_dir
    set_writable(False)
    path = make_config(budget={"evaluations": 50}, output={"dir": str(target / "runs"), "progress": False})
    assert main(run_argv(path, data_dir)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write" in err[0] and ("Read-only" in err[0] or "ermission" in err[0]), err


def test_a_run_directory_turned_read_only_then_writable_resumes_identically(make_config, data_dir, tmp_path,
                                                                          read_only_dir, capsys):
    target, set_writable = read_only_dir
    set_writable(True)
    path = make_config(budget={"evaluations": 50}, output={"dir": str(target / "runs"), "progress": False})
    assert main(run_argv(path, data_dir, "--set", "name=clean")) == 0
    clean = trial_rows(target / "runs" / "clean")
    assert main(run_argv(path, data_dir, "--set", "budget.evaluations=50")) == 0
    run_dir = target / "runs" / "t"
    with TrialStore(run_dir / "seed-0" / "trials.sqlite") as store:
        store.truncate(20)
        store.drop_checkpoint()
    capsys.readouterr()
    set_writable(False)
    assert main(run_argv(path, data_dir, "--resume", str(run_dir))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot" in err[0] and "Traceback" not in err[0], err
    set_writable(True)
    assert main(run_argv(path, data_dir, "--resume", str(run_dir))) == 0
    assert trial_rows(run_dir) == clean


# --------------------------------------------------------------------------------------- store deleted mid-run


def test_a_store_deleted_mid_run_stops_the_run_and_loses_nothing(clean_run, data_dir, tmp_path):
    path, clean = clean_run
    run_dir = tmp_path / "runs" / "t"
    db = run_dir / "seed-0" / "trials.sqlite"
    process = spawn(run_argv(path, data_dir), tmp_path / "deleted.err")
    while process.poll() is None:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1) as conn:
                if conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0] >= 400:
                    break
        except sqlite3.Error:
            pass
        time.sleep(0.002)
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(f"{db}{suffix}")
        except OSError as exc:
            assert exc.errno == errno.ENOENT
    code, lines = finish(process, tmp_path / "deleted.err")
    assert_one_line(code, lines, "was deleted while the run was writing to it", "written back")
    assert 400 <= len(trial_rows(run_dir)) < BUDGET
    assert main(run_argv(path, data_dir, "--resume", str(run_dir))) == 0
    assert trial_rows(run_dir) == clean
