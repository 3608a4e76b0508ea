"""Components from outside nassearch: registered by decorator or found by package entry point, then searched
through the Python API and the YAML CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import nassearch
from nassearch.errors import ConfigError
from nassearch.registry import EVALUATORS, SPACES, Registry

PLUGIN_DIR = Path(__file__).parent / "plugin_example"
BEST = "11111111"


@pytest.fixture
def toy_module(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    import toy_nas

    return toy_nas


@pytest.fixture
def decorated(toy_module, monkeypatch):
    """The toy components registered with the decorator (and unregistered afterwards)."""
    monkeypatch.setattr(SPACES, "_entries", dict(SPACES._entries))
    monkeypatch.setattr(EVALUATORS, "_entries", dict(EVALUATORS._entries))
    nassearch.register("space")(toy_module.BitSpace)
    nassearch.register("evaluator", "toy_ones")(toy_module.OnesEvaluator)
    return toy_module


def write_entry_points(root: Path) -> None:
    """A minimal installed distribution declaring the toy components as entry points."""
    info = root / "toy_nas-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-nas\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[nassearch.spaces]\ntoy_bits = toy_nas:BitSpace\n\n"
                                           "[nassearch.evaluators]\ntoy_ones = toy_nas:OnesEvaluator\n")


def test_a_decorated_space_is_searched_through_the_api(decorated):
    result = nassearch.search("toy_bits", "toy_ones", {"name": "regularized_evolution", "population_size": 10,
                                                        "sample_size": 3}, budget=60, seed=0)
    assert "toy_bits" in SPACES.names() and len(result.trials) == 60
    assert result.best.arch_str == BEST and result.best.metrics["val_acc"] == pytest.approx(83.6)


def test_objects_need_no_registration(toy_module):
    space = toy_module.BitSpace()
    result = nassearch.search(space, toy_module.OnesEvaluator(space), "random_search", budget=256, seed=1)
    assert len({t.arch_str for t in result.trials}) == 256 and result.best.arch_str == BEST


def test_nsga2_takes_the_plugin_space_because_it_declares_crossover(decorated):
    result = nassearch.search("toy_bits", "toy_ones", {"name": "nsga2", "population_size": 8},
                              objectives=["val_acc", {"metric": "test_acc", "mode": "min"}], budget=24, seed=0)
    assert len(result.trials) == 24


def test_a_taken_name_is_refused(decorated):
    class Other(decorated.BitSpace):
        pass

    with pytest.raises(ConfigError, match="'toy_bits' is already registered for toy_nas:BitSpace"):
        nassearch.register("space", "toy_bits")(Other)
    with pytest.raises(ConfigError, match="unknown kind 'spaces'"):
        nassearch.register("spaces", "x")


def test_entry_points_are_found_without_an_import(toy_module, tmp_path, monkeypatch):
    write_entry_points(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    spaces = Registry("space", "nassearch.spaces", {})
    assert spaces.names() == ["toy_bits"] and spaces.get("toy_bits") is toy_module.BitSpace


def test_a_broken_entry_point_is_one_clear_error(tmp_path, monkeypatch):
    info = tmp_path / "broken-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[nassearch.spaces]\nbroken = no_such_module:Space\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="'broken' is registered as no_such_module:Space, which cannot be imported"):
        Registry("space", "nassearch.spaces", {}).get("broken")


def test_an_entry_point_space_runs_from_the_yaml_cli(tmp_path):
    write_entry_points(tmp_path / "site")
    config = {"name": "toy", "space": {"name": "toy_bits"}, "evaluator": {"name": "toy_ones"},
              "searcher": {"name": "regularized_evolution", "population_size": 10, "sample_size": 3},
              "budget": {"evaluations": 60}, "objectives": [{"metric": "val_acc"}],
              "output": {"dir": str(tmp_path / "runs"), "plots": False}}
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(PLUGIN_DIR)])}
    done = subprocess.run([sys.executable, "-m", "nassearch", "run", str(path)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert BEST in done.stdout
    summary = yaml.safe_load((tmp_path / "runs" / "toy" / "summary.json").read_text())
    assert summary["space"] == "toy_bits" and summary["per_seed"]["0"]["best"]["arch"] == BEST
