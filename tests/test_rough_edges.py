"""A new user's rough edges (issue 15, scope 8) and the NB301 cost-model cache (scope 6): the thread cap of
a run (``--threads`` / ``threads``), progress of long predictor fits, a budget smaller than a searcher's own
training set refused at config time, ``eval`` of published genotype names, the interrupt message's run path
and exit status, ``-v`` after the subcommand, plot units and titles, the contention benchmark."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import xgboost
import yaml
from torch import nn

from nassearch import config as cfg
from nassearch import runner, threads
from nassearch.cli import build_parser, main
from nassearch.errors import ConfigError

NAR_SEARCHER = {"name": "nar_sampling", "train_size": 1000, "val_size": 256}
NAR_PREDICTOR = {"name": "nar", "dim": 16, "ffn": 32, "layers": 1, "rank_hidden": 32, "tier_hidden": 32}


@pytest.fixture
def restore_threads(monkeypatch):
    """Put torch's and xgboost's thread counts and nassearch's cap back after the test."""
    torch_threads, xgb_threads = torch.get_num_threads(), xgboost.get_config()["nthread"]
    monkeypatch.setattr(threads, "_limit", threads._limit)
    yield
    torch.set_num_threads(torch_threads)
    xgboost.set_config(nthread=xgb_threads)


@pytest.fixture
def cache(monkeypatch, tmp_path) -> Path:
    """An empty NASSEARCH_CACHE."""
    monkeypatch.setenv("NASSEARCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def darts_config(tmp_path: Path) -> Path:
    path = tmp_path / "darts.yaml"
    path.write_text(yaml.safe_dump({
        "name": "d", "space": {"name": "darts", "layers": 5, "init_channels": 8},
        "evaluator": {"name": "nb301_surrogate"},
        "searcher": {"name": "random_search"}, "budget": {"evaluations": 4},
        "objectives": [{"metric": "val_acc"}], "output": {"dir": str(tmp_path / "runs"), "report_metric": "val_acc"}}))
    return path


def small_darts_space():
    """A DARTS space whose cost model takes about a second to measure."""
    from nassearch.spaces.darts import DartsSpace

    return DartsSpace(init_channels=8, layers=5)


# --- threads ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cpus, expected", [(1, 1), (2, 1), (6, 3), (64, 4)])
def test_default_threads_leave_half_the_cpus(monkeypatch, cpus, expected):
    monkeypatch.setattr(threads, "usable_cpus", lambda: cpus)
    assert threads.default_threads() == expected


def test_limit_threads_caps_torch_and_xgboost(restore_threads):
    assert threads.limit_threads(1) == 1 == torch.get_num_threads() == xgboost.get_config()["nthread"]
    assert threads.thread_limit() == 1
    with pytest.raises(ConfigError, match="threads: must be >= 1"):
        threads.limit_threads(0)


def test_threads_key_and_flag(make_config, data_dir, capsys, restore_threads):
    assert cfg.load(make_config(threads=2)).threads == 2
    assert cfg.load(make_config()).threads is None and cfg.load(make_config()).to_dict()["threads"] is None
    with pytest.raises(ConfigError, match=r"threads: must be >= 1 \(or null for the default\), got 0"):
        cfg.load(make_config(threads=0))
    torch.set_num_threads(2)
    assert main(["eval", str(make_config(threads=2)), "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
                 "--data-dir", str(data_dir), "--threads", "1"]) == 0
    assert torch.get_num_threads() == 1  # the flag wins over the config
    capsys.readouterr()


@pytest.mark.slow
def test_surrogate_session_uses_the_thread_cap(data_dir, cache, restore_threads):
    from nassearch.evaluators.surrogate import NasBench301Surrogate

    threads.limit_threads(2)
    surrogate = NasBench301Surrogate(small_darts_space(), data_dir=str(data_dir))
    assert surrogate._session.get_session_options().intra_op_num_threads == 2


# --- NB301 cost-model cache -------------------------------------------------------------------------------


class Built(Exception):
    """A network was built to measure the cost model."""


def test_cost_model_is_measured_once_then_read_from_the_cache(cache, monkeypatch):
    from nassearch.evaluators.surrogate import load_cost_model
    from nassearch.spaces.darts import DartsSpace

    measured = small_darts_space()
    path = load_cost_model(measured)
    assert path.parent == cache / "nb301_cost_model" and path.suffix == ".json"

    def build(*_):
        raise Built

    monkeypatch.setattr(DartsSpace, "cost", build)
    cached = small_darts_space()
    assert load_cost_model(cached) == path
    for mine, theirs in zip(cached._cost_terms, measured._cost_terms):
        np.testing.assert_array_equal(mine, theirs)
    with pytest.raises(Built):
        load_cost_model(DartsSpace(init_channels=8, layers=6))  # other settings: another file, measured


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["not json", "[]", "nan", "shape", "key"])
def test_damaged_cost_model_cache_is_measured_again(cache, caplog, damage):
    from nassearch.evaluators.surrogate import load_cost_model

    path = load_cost_model(small_darts_space())
    good = json.loads(path.read_text())
    bad = {"not json": "{", "[]": "[]",
           "nan": json.dumps({**good, "base": [math.nan, 1.0]}),
           "shape": json.dumps({**good, "terms": good["terms"][:1]}),
           "key": json.dumps({**good, "key": {**good["key"], "layers": 6}})}[damage]
    path.write_text(bad)
    space = small_darts_space()
    assert load_cost_model(space) == path
    assert "damaged or stale; measuring it again" in caplog.text
    assert json.loads(path.read_text()) == good
    assert space.cost_batch([space.sample(np.random.default_rng(0))])[0][0] > 0


def test_unwritable_cache_warns_and_still_evaluates(tmp_path, monkeypatch, caplog):
    from nassearch.evaluators.surrogate import load_cost_model

    (tmp_path / "file").write_text("")
    monkeypatch.setenv("NASSEARCH_CACHE", str(tmp_path / "file"))
    space = small_darts_space()
    load_cost_model(space)
    assert "cannot cache the NB301 cost model" in caplog.text
    assert space.cost_batch([space.sample(np.random.default_rng(0))])[0][0] > 0


# --- progress of predictor fits ---------------------------------------------------------------------------


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).squeeze(-1)


@pytest.mark.parametrize("show", [True, False])
def test_predictor_fit_shows_its_epochs_inside_fit_progress(capsys, show):
    from nassearch.predictors.training import TrainSettings, fit_progress, train

    with fit_progress(show):
        train(Tiny(), {"x": torch.randn(20, 3)}, torch.randn(20), TrainSettings(epochs=3, batch_size=10), seed=0)
    err = capsys.readouterr().err
    assert ("fit Tiny" in err and "/3 " in err) is show
    assert show or err == ""


# --- budget vs a searcher's training set ------------------------------------------------------------------


def test_budget_smaller_than_the_nar_training_set_is_refused(make_config, capsys):
    path = make_config(predictor=NAR_PREDICTOR, searcher=NAR_SEARCHER, budget={"evaluations": 300})
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == ("nassearch: error: budget.evaluations: 300 leaves no search: searcher 'nar_sampling' spends its "
                   "first 1,256 evaluations on its own training set; give more than 1,256 or a smaller training "
                   "set\n")
    with pytest.raises(ConfigError, match="1,256 leaves no search"):
        cfg.load(make_config(predictor=NAR_PREDICTOR, searcher=NAR_SEARCHER, budget={"evaluations": 1256}))
    assert cfg.load(make_config(predictor=NAR_PREDICTOR, searcher=NAR_SEARCHER,
                                budget={"evaluations": 1257})).budget.evaluations == 1257


# --- eval of published genotype names ---------------------------------------------------------------------


def test_eval_takes_published_genotype_names(tmp_path, data_dir, cache, capsys):
    from nassearch.spaces.darts_notation import format_genotype
    from nassearch.spaces.darts_genotypes import KNOWN_GENOTYPES

    path = str(darts_config(tmp_path))
    assert main(["eval", path, "DARTS_V2", format_genotype(KNOWN_GENOTYPES["DARTS_V2"]),
                 "--data-dir", str(data_dir)]) == 0
    by_name, by_string = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert by_name["arch"] == "DARTS_V2" and by_name["val_acc"] > 90
    assert {k: v for k, v in by_name.items() if k != "arch"} == {k: v for k, v in by_string.items() if k != "arch"}
    assert main(["eval", path, "DARTS_V3", "--data-dir", str(data_dir)]) == 2
    assert "unknown DARTS genotype name 'DARTS_V3'; known: NASNet" in capsys.readouterr().err
    assert main(["eval", path, "NASNet", "--data-dir", str(data_dir)]) == 2
    assert "error: NASNet: genotype not in the DARTS search space" in capsys.readouterr().err


# --- the interrupt message --------------------------------------------------------------------------------


@pytest.mark.parametrize("terminated", [False, True])
def test_interrupt_message_names_the_run_directory(make_config, capsys, monkeypatch, terminated):
    from nassearch.executors import TERMINATED

    def interrupted(*_, **__):
        if terminated:
            TERMINATED.set()
        raise runner.Interrupted(Path("runs/my_run")) from KeyboardInterrupt()

    monkeypatch.setattr(runner, "run", interrupted)
    try:
        code = main(["run", str(make_config())])
    finally:
        TERMINATED.clear()
    stop = "terminated" if terminated else "interrupted"
    assert code == (143 if terminated else 130)
    assert capsys.readouterr().err == (f"nassearch: {stop}; every finished trial is saved: continue with --resume "
                                       "runs/my_run\n")


# --- -v after the subcommand ------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, verbose", [
    (["run", "c.yaml"], False), (["-v", "run", "c.yaml"], True), (["run", "c.yaml", "-v"], True),
    (["run", "-v", "c.yaml", "--quiet"], True), (["bench", "executor", "c.yaml", "--verbose"], True),
    (["data", "list", "-v"], True), (["plot", "runs/x"], False)])
def test_verbose_flag_anywhere(argv, verbose):
    assert build_parser().parse_args(argv).verbose is verbose


# --- plots: units and titles ------------------------------------------------------------------------------


@pytest.mark.parametrize("metric, label", [
    ("val_acc", "val_acc (%)"), ("val_acc_epoch108", "val_acc_epoch108 (%)"), ("params", "params (M parameters)"),
    ("flops", "flops (M FLOPs)"), ("lat_1080ti_bs1", "lat_1080ti_bs1 (ms)"), ("runtime_s", "runtime_s (s)"),
    ("val_cross_entropy", "val_cross_entropy")])
def test_metric_labels_carry_units(metric, label):
    from nassearch.plots import metric_label

    assert metric_label(metric) == label


@pytest.fixture
def figures(monkeypatch):
    """The figures the plot functions close, kept open for inspection."""
    from nassearch import plots

    kept, close = [], plots.plt.close
    monkeypatch.setattr(plots.plt, "close", kept.append)
    yield kept
    for figure in kept:
        close(figure)


@pytest.mark.slow
def test_plot_command_titles_name_benchmark_and_dataset(make_config, data_dir, tmp_path, capsys, figures):
    from nassearch.objectives import Objective
    from nassearch.plots import plot_pareto

    config = make_config(evaluator={"name": "nb201_tabular", "dataset": "cifar100"}, budget={"evaluations": 20})
    assert main(["run", str(config), "--data-dir", str(data_dir), "--quiet"]) == 0
    figures.clear()
    assert main(["plot", str(tmp_path / "runs" / "t"), "--out", str(tmp_path / "curves.png")]) == 0
    (axes,) = figures[-1].axes
    assert axes.get_title() == "nasbench201 / nb201_tabular, cifar100"
    assert axes.get_ylabel() == "test_acc (%) of best-so-far architecture"
    objectives = [Objective("val_acc", "max"), Objective("lat_1080ti_bs1", "min")]
    plot_pareto({"run": np.array([[90.0, 5.0], [80.0, 2.0]])}, objectives, tmp_path / "front.png", title="T")
    axes = figures[-1].axes[0]
    assert figures[-1].get_suptitle() == "T"
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("val_acc (%), higher is better",
                                                      "lat_1080ti_bs1 (ms), lower is better")
    capsys.readouterr()


# --- the contention benchmark -----------------------------------------------------------------------------


@pytest.mark.slow
def test_contention_bench_times_a_quiet_and_a_competing_run(make_config, data_dir, capsys):
    assert main(["bench", "contention", str(make_config(budget={"evaluations": 10})), "--data-dir", str(data_dir),
                 "--threads", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "t: regularized_evolution on nasbench201, 1 thread(s), empty cache"
    assert lines[1].split() == ["condition", "busy", "processes", "wall", "s", "x", "quiet"]
    quiet, competing = (line.split() for line in lines[2:])
    assert quiet[:2] == ["quiet", "0"] and quiet[3] == "1.00" and competing[:2] == ["competing", "1"]
    assert float(competing[3]) == pytest.approx(float(competing[2]) / float(quiet[2]), abs=0.02)
    assert main(["bench", "contention", str(make_config(name="bad", budget={"evaluations": 10})),
                 "--set", "budget.evaluations=x", "--data-dir", str(data_dir)]) == 2
