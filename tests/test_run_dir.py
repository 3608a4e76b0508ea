"""Run directories: names that stay inside output.dir, --overwrite only of what nassearch made, one writer
per directory, damaged stores refused or repaired, and a store deleted mid-run written back."""

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
import yaml

from nassearch import config as cfg
from nassearch import runner
from nassearch.cli import main
from nassearch.errors import ConfigError
from nassearch.run_dir import LOCK, DirectoryLock
from nassearch.validation import check_name
from nassearch.spaces.nasbench201 import NasBench201Space
from nassearch.store import TrialStore
from tests.test_cli import one_line_error

SPACE = NasBench201Space()


def trial_rows(run_dir: Path, seed: int = 0) -> list[tuple]:
    with TrialStore(run_dir / f"seed-{seed}" / "trials.sqlite") as store:
        return [(t.index, t.arch_str, t.metrics, t.status) for t in store.trials(SPACE)]


def run_argv(path: Path, data_dir: Path, *extra: str) -> list[str]:
    return ["run", str(path), "--data-dir", str(data_dir), "--quiet", *extra]


# --------------------------------------------------------------------------------------- names and --overwrite


@pytest.mark.parametrize("name", [".", "..", "a/b", "/abs", "x\n", "", "-rf", ".hidden", "a\\b", "x" * 101])
def test_names_that_are_not_plain_directory_names_are_refused(make_config, data_dir, capsys, tmp_path,
                                                              monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    keep = tmp_path / "user_notes.txt"
    keep.write_text("mine")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "other_run.txt").write_text("also mine")
    path = make_config(name="cfg")
    raw = yaml.safe_load(path.read_text())
    raw["name"] = name
    raw["output"]["dir"] = "runs"
    path.write_text(yaml.safe_dump(raw))
    err = one_line_error(capsys, run_argv(path, data_dir, "--overwrite"))
    assert "name:" in err and "plain directory name" in err
    assert keep.read_text() == "mine" and (tmp_path / "runs" / "other_run.txt").read_text() == "also mine"


def test_overwrite_refuses_a_directory_nassearch_did_not_create(make_config, data_dir, capsys, tmp_path):
    path = make_config()
    mine = tmp_path / "runs" / "t"
    mine.mkdir(parents=True)
    (mine / "thesis.tex").write_text("years of work")
    err = one_line_error(capsys, run_argv(path, data_dir, "--overwrite"))
    assert "was not created by nassearch" in err and "not deleted" in err
    assert (mine / "thesis.tex").read_text() == "years of work"


@pytest.mark.slow
def test_overwrite_replaces_a_run_directory_nassearch_made(make_config, data_dir, tmp_path):
    path = make_config(budget={"evaluations": 5})
    assert main(run_argv(path, data_dir)) == 0
    run_dir = tmp_path / "runs" / "t"
    (run_dir / "stale.txt").write_text("from the old run")
    assert main(run_argv(path, data_dir, "--overwrite")) == 0
    assert not (run_dir / "stale.txt").exists() and len(trial_rows(run_dir)) == 5


def test_overwrite_never_follows_a_symlinked_run_directory(make_config, data_dir, capsys, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "data.csv").write_text("1,2,3")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "t").symlink_to(elsewhere)
    err = one_line_error(capsys, run_argv(make_config(), data_dir, "--overwrite"))
    assert "symbolic link" in err and (elsewhere / "data.csv").read_text() == "1,2,3"


def test_check_name_accepts_plain_names():
    for name in ("nb201_regevo", "a", "run.2", "x-1", "_tmp", "9"):
        check_name(name)
    with pytest.raises(ConfigError):
        check_name("..")


# --------------------------------------------------------------------------------------- one writer


@pytest.mark.slow
def test_a_held_directory_refuses_a_second_writer_naming_the_holder(make_config, data_dir, capsys, tmp_path):
    path = make_config(budget={"evaluations": 5})
    assert main(run_argv(path, data_dir)) == 0
    run_dir = tmp_path / "runs" / "t"
    with DirectoryLock(run_dir).acquire():  # as another process would hold it (flock is per open file)
        err = one_line_error(capsys, run_argv(path, data_dir, "--resume", str(run_dir)))
        assert "in use by another nassearch process (PID" in err and "since" in err
        err = one_line_error(capsys, run_argv(path, data_dir, "--overwrite"))
        assert "in use by another nassearch process" in err
    assert len(trial_rows(run_dir)) == 5


@pytest.mark.slow
def test_a_stale_lock_of_a_dead_process_is_taken_over(make_config, data_dir, tmp_path):
    path = make_config(budget={"evaluations": 5})
    assert main(run_argv(path, data_dir)) == 0
    run_dir = tmp_path / "runs" / "t"
    (run_dir / LOCK).write_text(json.dumps({"pid": 999999, "host": "gone", "started": "yesterday"}))
    outcome = runner.run(cfg.load(path), repeats=2, resume=run_dir, data_dir=str(data_dir))
    assert sorted(outcome.trials) == [0, 1] and len(trial_rows(run_dir, 1)) == 5
    assert json.loads((run_dir / LOCK).read_text())["pid"] != 999999


# --------------------------------------------------------------------------------------- damaged run directories


def run_sql(statement: str):
    """A damage: run one SQL statement on the store."""

    def damage(db: Path) -> None:
        with closing(sqlite3.connect(db)) as raw:
            raw.execute(statement)
            raw.commit()

    return damage


def damage_not_a_database(db: Path) -> None:
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    db.write_bytes(b"\x00garbage" * 100)


def damage_store_deleted(db: Path) -> None:
    db.unlink()


def damage_seed_dir_is_a_file(db: Path) -> None:
    seed_dir = db.parent
    for entry in seed_dir.iterdir():
        entry.unlink()
    seed_dir.rmdir()
    seed_dir.write_text("not a directory")


DAMAGES = {  # name -> (damage, words of the message, trials --repair keeps)
    "trial row deleted": (run_sql("DELETE FROM trials WHERE idx = 12"), "trial 12 is missing", 12),
    "metrics not JSON": (run_sql("UPDATE trials SET metrics = '{not json' WHERE idx = 12"),
                         "trial 12: its metrics are not JSON", 12),
    "arch unparsable": (run_sql("UPDATE trials SET arch = '|bogus~0|' WHERE idx = 12"),
                        "trial 12: its architecture does not parse", 12),
    "checkpoint not JSON": (run_sql("UPDATE checkpoint SET state = 'garbage'"), "the searcher checkpoint is not JSON",
                            30),
    "checkpoint empty": (run_sql("UPDATE checkpoint SET state = '{}'"), "checkpoint is empty", 30),
    "checkpoint keys": (run_sql("""UPDATE checkpoint SET state = '{"population": 3}'"""),
                        "the searcher checkpoint cannot be restored", 30),
    "trials table dropped": (run_sql("DROP TABLE trials"), "lost its trials table", 0),
    "search_start garbage": (run_sql("""UPDATE meta SET value = '"x"' WHERE key = 'search_start'"""),
                             "metadata search_start", 30),
    "not a database": (damage_not_a_database, "not a nassearch trials.sqlite", 0),
    "store deleted": (damage_store_deleted, "trials.sqlite is missing", 0),
    "seed dir is a file": (damage_seed_dir_is_a_file, "it is not a directory", 0),
}


@pytest.mark.slow
@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_store_is_refused_then_repaired_to_the_uninterrupted_trials(make_config, data_dir, capsys,
                                                                           tmp_path, damage):
    break_it, words, kept = DAMAGES[damage]
    path = make_config(budget={"evaluations": 30})
    assert main(run_argv(path, data_dir, "--set", "name=clean")) == 0
    assert main(run_argv(path, data_dir)) == 0
    run_dir = tmp_path / "runs" / "t"
    break_it(run_dir / "seed-0" / "trials.sqlite")
    capsys.readouterr()
    err = one_line_error(capsys, run_argv(path, data_dir, "--resume", str(run_dir)))
    assert words in err and "--repair" in err
    assert f"keeps trials 0-{kept - 1}" in err if kept else "starts the seed again from trial 0" in err
    if damage == "checkpoint keys":  # only a searcher can tell; plots read the (intact) trials
        assert main(["plot", str(run_dir)]) == 0
    else:
        assert words in one_line_error(capsys, ["plot", str(run_dir)])
    assert main(run_argv(path, data_dir, "--resume", str(run_dir), "--repair")) == 0
    assert trial_rows(run_dir) == trial_rows(tmp_path / "runs" / "clean")
    backups = list(run_dir.glob("seed-0.damaged-*")) if not kept else \
        list((run_dir / "seed-0").glob("trials.sqlite.damaged-*"))
    assert len(backups) == 1
    assert main(["plot", str(run_dir)]) == 0


@pytest.mark.slow
def test_damaged_config_yaml_is_refused_then_rewritten_by_repair(make_config, data_dir, capsys, tmp_path):
    path = make_config(budget={"evaluations": 10})
    assert main(run_argv(path, data_dir)) == 0
    run_dir = tmp_path / "runs" / "t"
    (run_dir / "config.yaml").write_text("name: [unclosed\n")
    err = one_line_error(capsys, run_argv(path, data_dir, "--resume", str(run_dir)))
    assert "config.yaml is damaged: run config" in err and "is not valid YAML" in err and "--repair" in err
    err = one_line_error(capsys, ["plot", str(run_dir)])
    assert "config.yaml is damaged" in err
    assert main(run_argv(path, data_dir, "--resume", str(run_dir), "--repair", "--set", "budget.evaluations=15")) == 2
    capsys.readouterr()  # a repaired config.yaml must still match what the seed stores were run with
    assert main(run_argv(path, data_dir, "--resume", str(run_dir), "--repair")) == 0
    assert len(trial_rows(run_dir)) == 10 and yaml.safe_load((run_dir / "config.yaml").read_text())["name"] == "t"


def test_repair_without_resume_is_refused(make_config, data_dir, capsys):
    err = one_line_error(capsys, run_argv(make_config(), data_dir, "--repair"))
    assert "--repair" in err and "--resume" in err


def test_resume_of_what_is_not_a_run_directory_writes_nothing_there(make_config, data_dir, capsys, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    err = one_line_error(capsys, run_argv(make_config(), data_dir, "--resume", str(home)))
    assert "not a nassearch search run directory" in err and list(home.iterdir()) == []


# --------------------------------------------------------------------------------------- evaluator outputs


def test_a_nan_metric_becomes_a_failed_trial_with_its_reason(make_config, data_dir, monkeypatch, tmp_path):
    from nassearch.evaluators.base import Result
    from nassearch.evaluators.tabular import NasBench201Tabular

    original = NasBench201Tabular.evaluate

    def sometimes_nan(self, arch):
        result = original(self, arch)
        if arch[0] == 0:
            return Result({**result.metrics, "val_acc": float("nan")}, result.cost_s, result.wall_s)
        return result

    monkeypatch.setattr(NasBench201Tabular, "evaluate", sometimes_nan)
    monkeypatch.setattr(NasBench201Tabular, "batched", False)  # one evaluate() per architecture
    config = cfg.load(make_config(budget={"evaluations": 40}))
    outcome = runner.run(config, data_dir=str(data_dir))
    failed = [t for t in outcome.trials[0] if not t.ok]
    assert failed and all(t.arch[0] == 0 and t.error.startswith("the evaluator returned val_acc=nan") for t in failed)
    with TrialStore(outcome.run_dir / "seed-0" / "trials.sqlite") as store:
        stored = {t.index: t for t in store.trials(SPACE)}
    assert all(stored[t.index].status == "failed" and "val_acc=nan" in stored[t.index].error for t in failed)
    best = outcome.summary["per_seed"]["0"]["best"]
    assert best["metrics"]["val_acc"] == best["metrics"]["val_acc"]  # not NaN


@pytest.mark.slow
def test_objective_bounds_hold_for_single_objective_searchers(make_config, data_dir, tmp_path):
    for searcher in ({"name": "regularized_evolution", "population_size": 20, "sample_size": 5},
                     {"name": "random_search"}):
        name = searcher["name"]
        config = cfg.load(make_config(name=name, searcher=searcher, budget={"evaluations": 60},
                                      objectives=[{"metric": "val_acc", "mode": "max"},
                                                  {"metric": "params", "mode": "min", "bound": 0.5}]))
        outcome = runner.run(config, data_dir=str(data_dir))
        best = outcome.summary["per_seed"]["0"]["best"]["metrics"]
        unbounded = max((t for t in outcome.trials[0] if t.ok), key=lambda t: t.metrics["val_acc"])
        assert best["params"] <= 0.5
        assert unbounded.metrics["params"] > 0.5  # the bound changed the answer, so it was not vacuous


def test_a_run_with_no_trial_within_the_bounds_says_so(make_config, data_dir, capsys):
    path = make_config(budget={"evaluations": 5}, objectives=[{"metric": "val_acc", "mode": "max", "bound": 101.0}])
    err = one_line_error(capsys, run_argv(path, data_dir))
    assert "no successful trial within the objectives' bounds" in err


def test_plot_of_a_run_directory_lacking_config_is_one_line(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    err = one_line_error(capsys, ["plot", str(tmp_path / "empty")])
    assert "not a nassearch run directory" in err
