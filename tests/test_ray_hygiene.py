"""Ray hygiene (issue 15, scope 7), on one ``nassearch run`` with a local Ray instance in a subprocess, sent
SIGTERM while a Ray worker evaluates a trial: every socket Ray's processes listen on is a loopback one, the
driver exits 143 with its one "terminated" line (naming the run directory) and nothing else on stderr, and no
process of the Ray instance is left a few seconds later."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow  # each test starts Ray processes; CI runs them (tests/conftest.py)

#: A nassearch CLI whose registry also has ``slow_nb201``: the NB201 table, half a second per evaluation.
DRIVER = textwrap.dedent("""
    import sys
    import time

    from nassearch.evaluators.tabular import NasBench201Tabular
    from nassearch.cli import main
    import nassearch


    class SlowTabular(NasBench201Tabular):
        def evaluate(self, arch):
            time.sleep(0.5)
            return super().evaluate(arch)


    nassearch.register("evaluator", "slow_nb201")(SlowTabular)
    sys.exit(main(sys.argv[1:]))
""")


def _children() -> dict[int, list[int]]:
    """Parent PID -> child PIDs of every process now running."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    return children


def _descendants(pid: int) -> list[int]:
    children, found, todo = _children(), [], [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return sorted(found)


def _title(pid: int) -> str:
    try:
        return (Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]).decode(errors="replace")
    except OSError:
        return ""


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address of /proc/net/tcp{,6}: 32-bit words in host (little-endian) byte order."""
    raw = bytes.fromhex(hex_address)
    address = ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))
    return getattr(address, "ipv4_mapped", None) or address


def _listening(pids: list[int]) -> list[tuple[int, str]]:
    """(PID, local address) of every TCP socket the processes ``pids`` listen on."""
    listening = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                listening[fields[9]] = _address(fields[1].split(":")[0])
    found = []
    for pid in pids:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        found += [(pid, str(listening[link[8:-1]])) for link in links
                  if link.startswith("socket:[") and link[8:-1] in listening]
    return found


@pytest.fixture(scope="module")
def terminated_run(tmp_path_factory, data_dir):
    """Start the run, wait for a Ray worker to evaluate a trial, note the sockets, send SIGTERM, wait."""
    tmp = tmp_path_factory.mktemp("ray_hygiene")
    (tmp / "driver.py").write_text(DRIVER)
    config = {"name": "ray_hygiene", "space": {"name": "nasbench201"}, "evaluator": {"name": "slow_nb201"},
              "searcher": {"name": "random_search"}, "budget": {"evaluations": 200, "batch_size": 10},
              "objectives": [{"metric": "val_acc", "mode": "max"}],
              "executor": {"name": "ray", "num_cpus": 1, "max_concurrent": 1},
              "output": {"dir": str(tmp / "runs"), "plots": False}}
    (tmp / "config.yaml").write_text(yaml.safe_dump(config))
    driver = subprocess.Popen([sys.executable, str(tmp / "driver.py"), "run", str(tmp / "config.yaml"), "--quiet"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                              env={**os.environ, "NASSEARCH_DATA": str(data_dir)})
    processes: list[int] = []
    try:
        deadline = time.monotonic() + 300
        while not any(_title(pid).startswith("ray::evaluate_one") for pid in processes):
            assert driver.poll() is None and time.monotonic() < deadline, "no Ray worker evaluated a trial"
            time.sleep(0.2)
            processes = _descendants(driver.pid)
        sockets = _listening(processes)
        driver.send_signal(signal.SIGTERM)
        _, stderr = driver.communicate(timeout=120)
        deadline = time.monotonic() + 15
        while (left := [pid for pid in processes if Path(f"/proc/{pid}").exists()]) and time.monotonic() < deadline:
            time.sleep(0.2)
        yield {"returncode": driver.returncode, "stderr": stderr, "sockets": sockets, "processes": processes,
               "left": [(pid, _title(pid)) for pid in left], "run_dir": tmp / "runs" / "ray_hygiene"}
    finally:
        for pid in [driver.pid, *processes]:  # only what this fixture started, should a check have failed
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        driver.wait()


@pytest.mark.slow
def test_local_ray_listens_on_loopback_only(terminated_run):
    assert terminated_run["sockets"], "found no listening socket of the Ray instance"
    exposed = [(pid, _title(pid), address) for pid, address in terminated_run["sockets"]
               if not ipaddress.ip_address(address).is_loopback]
    assert not exposed


def test_sigterm_ends_the_driver_and_every_ray_process(terminated_run):
    assert terminated_run["returncode"] == 128 + signal.SIGTERM
    assert len(terminated_run["processes"]) >= 3  # GCS, raylet, a worker at least
    assert terminated_run["left"] == []


def test_nothing_of_ray_reaches_stderr(terminated_run):
    assert terminated_run["stderr"].splitlines() == [
        f"nassearch: terminated; every finished trial is saved: continue with --resume {terminated_run['run_dir']}"]
