"""Shared fixtures: the benchmark data directory, the NB201 space/evaluator/table, small helpers.

Tests that need benchmark tables take ``data_dir``: without ``$NASSEARCH_DATA`` they are skipped;
with it set, a missing or broken table makes them fail (nothing here skips on missing files).

Tests marked ``slow`` (training runs, multi-minute fault and kill tests, wheel builds) run only with
``--all`` or when ``$CI`` is ``true`` (as ``.ci/run`` sets it); the default loop is the fast set.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from nassearch.trial import Trial

NB201_12EPOCH = "nasbench201/nb201_12epoch.csv.gz"
NB201_200EPOCH_SUBSET = "nasbench201/nb201_200epoch_subset.csv"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--all", action="store_true", help="also run the tests marked slow (as CI does)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: training-heavy or multi-minute test; runs with --all or CI=true")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--all") or os.environ.get("CI", "").lower() == "true":
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The benchmark data directory from ``$NASSEARCH_DATA``; skip the test when it is not set."""
    if not os.environ.get("NASSEARCH_DATA"):
        pytest.skip("NASSEARCH_DATA not set")
    return Path(os.environ["NASSEARCH_DATA"])


@pytest.fixture(scope="session")
def nb201_space():
    """One default NB201 space (CIFAR-10 network) shared by the session, so its unit costs are measured once."""
    from nassearch.spaces.nasbench201 import NasBench201Space

    return NasBench201Space()


@pytest.fixture(scope="session")
def nb201_evaluator(data_dir):
    """The CIFAR-10 NB201 tabular evaluator, built once (loading the table takes about a second)."""
    from nassearch.evaluators.tabular import NasBench201Tabular
    from nassearch.spaces.nasbench201 import NasBench201Space

    return NasBench201Tabular(NasBench201Space(), data_dir=str(data_dir))


@pytest.fixture(scope="session")
def nb201_table(data_dir) -> pd.DataFrame:
    """The raw 12-epoch NB201 table read with pandas (independently of nassearch.data.tables)."""
    return pd.read_csv(data_dir / NB201_12EPOCH)


@pytest.fixture(scope="session")
def nb201_200epoch_subset(data_dir) -> pd.DataFrame:
    """The raw NASLib 200-epoch subset (783 archs x 3 datasets, official params/FLOPs)."""
    return pd.read_csv(data_dir / NB201_200EPOCH_SUBSET)


def _random_archs(n: int, seed: int) -> list[tuple[int, ...]]:
    """``n`` uniform NB201 archs (tuples of 6 Python ints in 0..4) from a fixed-seed Generator."""
    rng = np.random.default_rng(seed)
    return [tuple(int(op) for op in row) for row in rng.integers(0, 5, size=(n, 6))]


@pytest.fixture
def random_archs():
    """``random_archs(n, seed)``: a deterministic list of uniform NB201 op tuples."""
    return _random_archs


def _hamming(a, b) -> int:
    """Number of positions where two equal-length op tuples differ."""
    assert len(a) == len(b)
    return sum(x != y for x, y in zip(a, b))


@pytest.fixture
def hamming():
    """``hamming(a, b)``: number of edges on which two NB201 op tuples differ."""
    return _hamming


@pytest.fixture
def make_trial():
    """``make_trial(index, metrics, status='ok', arch=None)``: a Trial with a dummy arch and string."""

    def factory(index: int, metrics: dict[str, float], status: str = "ok", arch=None, **kwargs) -> Trial:
        arch = arch if arch is not None else (index,)
        return Trial(index=index, arch=arch, arch_str=f"arch-{index}", metrics=dict(metrics), status=status,
                     **kwargs)

    return factory


@pytest.fixture
def make_config(tmp_path):
    """``make_config(name='t', **sections)``: write a small NB201 config into tmp_path and return its path.

    Defaults: regularized evolution (population 20, sample 5), 60 evaluations, val_acc, runs under
    ``tmp_path/runs``, no progress bar. Keyword arguments replace whole top-level sections.
    """
    import yaml

    def factory(name: str = "t", **sections) -> Path:
        raw = {"name": name, "seed": 0, "space": {"name": "nasbench201"}, "evaluator": {"name": "nb201_tabular"},
               "searcher": {"name": "regularized_evolution", "population_size": 20, "sample_size": 5},
               "budget": {"evaluations": 60}, "objectives": [{"metric": "val_acc", "mode": "max"}],
               "output": {"dir": str(tmp_path / "runs"), "progress": False}}
        raw.update(sections)
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return path

    return factory


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine more threads make small forwards far slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
