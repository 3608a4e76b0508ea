"""The Python API: the README's script in memory and with a store (resumed), resuming a killed search,
refusing a different one, and the same trials as the YAML runner."""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

import nassearch
from nassearch import config as cfg
from nassearch import runner
from nassearch.errors import ConfigError, RunDirError
from nassearch.evaluators.base import Evaluator

README = Path(__file__).parents[1] / "README.md"
EXPERIMENTS = Path(__file__).parents[1] / "experiments"


def readme_script() -> str:
    """The first python block after the README's "## Python API" heading."""
    text = README.read_text()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def run_script(source: str, capsys) -> tuple[nassearch.SearchResult, str]:
    namespace: dict = {}
    exec(compile(source, str(README), "exec"), namespace)
    return namespace["result"], capsys.readouterr().out


def stored_count(directory: Path) -> int:
    with closing(sqlite3.connect(directory / "trials.sqlite")) as db:
        return db.execute("SELECT COUNT(*) FROM trials").fetchone()[0]


class Counting(Evaluator):
    """Wraps an evaluator, counting evaluations; raises KeyboardInterrupt (a kill) after ``stop_after``."""

    def __init__(self, inner: Evaluator, stop_after: int | None = None) -> None:
        super().__init__(inner.space)
        self.inner, self.stop_after, self.calls = inner, stop_after, 0
        self.name = inner.name

    @property
    def metrics(self) -> tuple[str, ...]:
        return self.inner.metrics

    def evaluate(self, arch):
        if self.stop_after is not None and self.calls >= self.stop_after:
            raise KeyboardInterrupt
        self.calls += 1
        return self.inner.evaluate(arch)


def nb201(data_dir):
    space = nassearch.api.build("space", "nasbench201")
    return space, nassearch.api.build("evaluator", {"name": "nb201_tabular", "dataset": "cifar10"}, space=space,
                                      data_dir=str(data_dir))


def test_the_readme_script_runs_in_memory_and_with_a_store_that_resumes(data_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NASSEARCH_DATA", str(data_dir))
    script = readme_script()
    in_memory, printed = run_script(script, capsys)
    assert len(in_memory.trials) == 150 and in_memory.storage is None
    assert printed.split() == [in_memory.best.arch_str, str(in_memory.best.metrics["test_acc"]), "150"]
    assert list(tmp_path.iterdir()) == []

    stored_script = script.replace("storage=None,", f"storage={str(tmp_path / 'store')!r},")
    assert stored_script != script
    first, _ = run_script(stored_script, capsys)
    assert stored_count(tmp_path / "store") == 150
    again, printed_again = run_script(stored_script, capsys)  # resumes: everything is replayed from the store
    for result in (first, again):
        assert [t.arch_str for t in result.trials] == [t.arch_str for t in in_memory.trials]
        assert [t.metrics for t in result.trials] == [t.metrics for t in in_memory.trials]
    assert printed_again == printed and stored_count(tmp_path / "store") == 150


@pytest.mark.parametrize("kill_after", [1, pytest.param(37, marks=pytest.mark.slow), pytest.param(149, marks=pytest.mark.slow)])
def test_a_killed_search_resumes_to_the_uninterrupted_trials(data_dir, tmp_path, kill_after):
    space, evaluator = nb201(data_dir)
    searcher = {"name": "regularized_evolution", "population_size": 20, "sample_size": 5}
    whole = nassearch.search(space, evaluator, searcher, budget=150, seed=3)
    with pytest.raises(KeyboardInterrupt):
        nassearch.search(space, Counting(evaluator, stop_after=kill_after), searcher, budget=150, seed=3,
                         storage=tmp_path)
    assert stored_count(tmp_path) == kill_after
    counting = Counting(evaluator)
    resumed = nassearch.search(space, counting, searcher, budget=150, seed=3, storage=tmp_path)
    assert counting.calls == 150 - kill_after
    assert [t.arch_str for t in resumed.trials] == [t.arch_str for t in whole.trials]
    assert resumed.best == whole.best or resumed.best.arch_str == whole.best.arch_str


def test_a_store_of_another_search_is_refused(data_dir, tmp_path):
    space, evaluator = nb201(data_dir)
    nassearch.search(space, evaluator, "random_search", budget=10, seed=0, storage=tmp_path)
    with pytest.raises(RunDirError, match=r"holds a search with other settings \(differs in budget, seed\)"):
        nassearch.search(space, evaluator, "random_search", budget=20, seed=1, storage=tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match=r"mine is not a nassearch search storage directory \(no trials.sqlite\)"):
        nassearch.search(space, evaluator, "random_search", budget=10, seed=0, storage=mine)
    with pytest.raises(RunDirError, match="notes.txt is not a directory"):
        nassearch.search(space, evaluator, "random_search", budget=10, seed=0, storage=mine / "notes.txt")
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def test_the_api_gives_the_yaml_runners_trials(data_dir, tmp_path):
    config = cfg.validate({**cfg.read_config(EXPERIMENTS / "nb201_regevo.yaml"),
                           "output": {"dir": str(tmp_path), "plots": False, "progress": False}})
    outcome = runner.run(config, data_dir=str(data_dir))
    result = nassearch.search(config.space, config.evaluator, config.searcher, objectives=config.objectives,
                              budget=config.budget, seed=config.seed, data_dir=str(data_dir))
    assert [t.arch_str for t in result.trials] == [t.arch_str for t in outcome.trials[0]]
    assert result.summary["best"] == {k: v for k, v in outcome.summary["per_seed"]["0"]["best"].items()
                                      if k != "standing"}


@pytest.mark.parametrize("arguments, message", [
    ({"space": "nasbench202"}, r"space.name: unknown space 'nasbench202'; known: darts, nasbench101"),
    ({"budget": {"evaluation": 10}}, r"budget.evaluation: unknown key \(did you mean 'evaluations'\?\)"),
    ({"budget": 0}, r"budget.evaluations: must be >= 1, got 0"),
    ({"objectives": ["val_accuracy"]}, r"objectives\[0\].metric: 'val_accuracy' is not a metric"),
    ({"searcher": {"name": "regularized_evolution", "populaton_size": 5}},
     r"searcher.populaton_size: unknown key for searcher 'regularized_evolution' \(did you mean 'population_size'\?\)"),
    ({"space": "nasbench101", "evaluator": "nb101_tabular", "searcher": "nsga2"},
     r"searcher 'nsga2' needs a space with SupportsCrossover \(A space that can recombine two architectures\); "
     r"space 'nasbench101' has none"),
    ({"searcher": "nar_sampling", "budget": 2000}, r"searcher 'nar_sampling' needs a predictor with PredictsTiers"),
    ({"evaluator": 3}, r"evaluator: expected a registered name, a \{'name': ...\} mapping or a built Evaluator, got int"),
    ({"seed": -1}, r"seed: must be >= 0, got -1"),
])
def test_bad_arguments_are_one_clear_error_before_anything_runs(data_dir, arguments, message):
    given = {"space": "nasbench201", "evaluator": {"name": "nb201_tabular", "dataset": "cifar10"},
             "searcher": "random_search", "budget": 10, **arguments}
    with pytest.raises(ConfigError, match=message):
        nassearch.search(**given, data_dir=str(data_dir))


def test_a_budget_object_and_cost_budgets(data_dir):
    space, evaluator = nb201(data_dir)
    result = nassearch.search(space, evaluator, "random_search", budget=nassearch.Budget(cost_seconds=25.0,
                                                                                        batch_size=4))
    assert len(result.trials) == 28 and result.summary["cost_s"] == 28.0  # the table's queries cost 1 s each
    with pytest.raises(ConfigError, match="give exactly one of evaluations"):
        nassearch.Budget(evaluations=3, cost_seconds=2.0)


def test_both_executors_are_executors():
    from nassearch.executors import RayExecutor, SerialExecutor
    from nassearch.protocols import Executor

    assert isinstance(SerialExecutor(), Executor) and issubclass(RayExecutor, Executor)
