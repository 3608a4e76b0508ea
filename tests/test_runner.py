"""The search loop end to end on the NB201 table: trials, summaries, resume after a crash, repeats."""

import json
from pathlib import Path

import pytest
import yaml

from nassearch.evaluators.tabular import NasBench201Tabular
from nassearch import config as cfg
from nassearch import runner
from nassearch.errors import RunDirError
from nassearch.spaces.nasbench201 import NasBench201Space
from nassearch.store import TrialStore

SPACE = NasBench201Space()


def trial_rows(run_dir, seed=0):
    with TrialStore(run_dir / f"seed-{seed}" / "trials.sqlite") as store:
        return [(t.index, t.arch_str, t.metrics, t.cost_s) for t in store.trials(SPACE)]


@pytest.mark.slow
def test_run_writes_trials_config_summary_and_plot(make_config, data_dir):
    config = cfg.load(make_config(budget={"evaluations": 40}))
    outcome = runner.run(config, repeats=2, data_dir=str(data_dir))
    run_dir = outcome.run_dir
    assert (run_dir / "config.yaml").is_file() and (run_dir / "plots" / "search_curve.png").is_file()
    assert yaml.safe_load((run_dir / "config.yaml").read_text()) == config.to_dict()
    for seed in (0, 1):
        rows = trial_rows(run_dir, seed)
        assert [r[0] for r in rows] == list(range(40))
        seed_summary = json.loads((run_dir / f"seed-{seed}" / "summary.json").read_text())
        best = max(rows, key=lambda r: r[2]["val_acc"])
        assert seed_summary["best"]["arch"] == best[1]
        assert seed_summary["best"]["metrics"]["test_acc"] == best[2]["test_acc"]
        standing = seed_summary["best"]["standing"]
        assert standing["space_size"] == 15625 and 1 <= standing["rank"] <= 15625
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["seeds"] == [0, 1]
    tests = [summary["per_seed"][s]["best"]["metrics"]["test_acc"] for s in ("0", "1")]
    assert summary["stats"]["test_acc"]["mean"] == pytest.approx(sum(tests) / 2)
    assert "mean±std" in outcome.table


@pytest.mark.slow
def test_same_seed_same_trials_different_seed_different(make_config, data_dir, tmp_path):
    config = cfg.load(make_config(budget={"evaluations": 30}))
    a = runner.run(config, data_dir=str(data_dir)).run_dir
    b = runner.run(cfg.validate({**config.to_dict(), "name": "again"}), data_dir=str(data_dir)).run_dir
    c = runner.run(cfg.validate({**config.to_dict(), "name": "other", "seed": 1}), data_dir=str(data_dir)).run_dir
    assert trial_rows(a) == trial_rows(b)
    assert [r[1] for r in trial_rows(a)] != [r[1] for r in trial_rows(c, seed=1)]


@pytest.mark.slow
def test_existing_run_dir_is_not_clobbered(make_config, data_dir):
    config = cfg.load(make_config(budget={"evaluations": 5}))
    run_dir = runner.run(config, data_dir=str(data_dir)).run_dir
    with pytest.raises(RunDirError, match="already exists: continue it with --resume"):
        runner.run(config, data_dir=str(data_dir))
    assert runner.run(config, overwrite=True, data_dir=str(data_dir)).run_dir == run_dir


@pytest.mark.slow
def test_resume_refuses_a_different_config(make_config, data_dir):
    config = cfg.load(make_config(budget={"evaluations": 5}))
    run_dir = runner.run(config, data_dir=str(data_dir)).run_dir
    other = cfg.validate({**config.to_dict(), "searcher": {"name": "random_search"}})
    with pytest.raises(RunDirError, match=r"different config \(differs in searcher.name, searcher.population_size"):
        runner.run(other, resume=run_dir, data_dir=str(data_dir))


class Crash(Exception):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [1, 7])
@pytest.mark.parametrize("crash_at", [1, 19, 20, 21, 58])
def test_crash_then_resume_gives_the_uninterrupted_trials(make_config, data_dir, monkeypatch, crash_at, batch_size):
    """A crash after ``crash_at`` evaluations (mid-batch included) and a resume equal a clean run."""
    searcher = {"name": "regularized_evolution", "population_size": 20, "sample_size": 5}
    config = cfg.load(make_config(searcher=searcher, budget={"evaluations": 60, "batch_size": batch_size}))
    clean = runner.run(cfg.validate({**config.to_dict(), "name": "clean"}), data_dir=str(data_dir)).run_dir

    original = NasBench201Tabular.evaluate
    calls = {"n": 0}

    def crashing(self, arch):
        calls["n"] += 1
        if calls["n"] > crash_at:
            raise Crash()
        return original(self, arch)

    monkeypatch.setattr(NasBench201Tabular, "evaluate", crashing)
    monkeypatch.setattr(NasBench201Tabular, "batched", False)  # one evaluate() per architecture
    with pytest.raises(Crash):
        runner.run(config, data_dir=str(data_dir))
    monkeypatch.setattr(NasBench201Tabular, "evaluate", original)
    run_dir = Path(config.output.dir) / config.name
    assert len(trial_rows(run_dir)) == crash_at
    resumed = runner.run(config, resume=run_dir, data_dir=str(data_dir)).run_dir
    assert trial_rows(resumed) == trial_rows(clean)


@pytest.mark.slow
def test_resume_extends_repeats_and_budget_is_by_cost(make_config, data_dir):
    config = cfg.load(make_config(budget={"cost_seconds": 12.5}, evaluator={"name": "nb201_tabular",
                                                                         "cost_per_query_s": 2.0}))
    run_dir = runner.run(config, data_dir=str(data_dir)).run_dir
    assert len(trial_rows(run_dir)) == 7  # 6 queries cost 12 s < 12.5, the 7th crosses the budget
    outcome = runner.run(config, repeats=2, resume=run_dir, data_dir=str(data_dir))
    assert sorted(outcome.trials) == [0, 1] and len(trial_rows(run_dir, 1)) == 7


def test_load_run_curves_reads_back_incumbents(make_config, data_dir):
    config = cfg.load(make_config(budget={"evaluations": 25}))
    run_dir = runner.run(config, repeats=3, data_dir=str(data_dir)).run_dir
    label, metric, curves = runner.load_run_curves(run_dir)
    assert metric == "test_acc" and curves.shape == (3, 25)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert curves[0, -1] == summary["per_seed"]["0"]["best"]["metrics"]["test_acc"]
