"""Config reading, overrides, validation messages and default resolution."""

import pytest
import yaml

from nassearch import config as cfg
from nassearch.errors import ConfigError


def base_raw():
    return {"name": "t", "space": {"name": "nasbench201"}, "evaluator": {"name": "nb201_tabular"},
            "searcher": {"name": "regularized_evolution"}, "budget": {"evaluations": 10},
            "objectives": [{"metric": "val_acc"}]}


def test_defaults_are_resolved_from_constructor_signatures():
    config = cfg.validate(base_raw())
    assert config.seed == 0
    assert config.searcher == {"name": "regularized_evolution", "population_size": 100, "sample_size": 10}
    assert config.evaluator == {"name": "nb201_tabular", "dataset": "cifar10", "latency_devices": None,
                                "cost_per_query_s": 1.0, "table": "nb201_12epoch", "epochs": None}
    assert config.space["channels"] == 16
    assert config.executor == {"name": "serial"}
    assert config.budget == cfg.Budget(evaluations=10, cost_seconds=None, batch_size=1)
    assert config.objectives[0].mode == "max"
    assert config.output.dir == "runs" and config.output.report_metric == "test_acc"


def test_resolved_config_round_trips_through_yaml():
    config = cfg.validate(base_raw())
    again = cfg.validate(yaml.safe_load(yaml.safe_dump(config.to_dict())))
    assert again == config
    assert config.with_seed(7).seed == 7 and config.with_seed(7).searcher == config.searcher


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r.update(serch={}), "serch: unknown key"),
    (lambda r: r["searcher"].update(populaton_size=5), "did you mean 'population_size'"),
    (lambda r: r["searcher"].update(population_size="many"), "searcher.population_size: expected an integer"),
    (lambda r: r["searcher"].update(population_size=True), "expected an integer"),
    (lambda r: r["searcher"].update(population_size=5, sample_size=10), "sample_size must lie in 1..population_size"),
    (lambda r: r["evaluator"].update(dataset="mnist"), "dataset must be one of"),
    (lambda r: r["evaluator"].update(cost_per_query_s="x"), "expected a number"),
    (lambda r: r.update(budget={"evaluations": 0}), "budget.evaluations: must be >= 1"),
    (lambda r: r.update(budget={"evaluations": 5, "cost_seconds": 3}), "exactly one of"),
    (lambda r: r.update(budget={}), "exactly one of"),
    (lambda r: r.update(objectives=[{"metric": "val_acc", "mode": "up"}]), "allowed values: max, min"),
    (lambda r: r.update(objectives=[]), "non-empty list"),
    (lambda r: r.update(seed=-1), "seed: must be >= 0"),
    (lambda r: r.update(name="a b"), "is not a plain directory name"),
    (lambda r: r.pop("space"), "space: missing"),
    (lambda r: r.update(searcher={"name": "hill_climbing"}), "unknown searcher 'hill_climbing'; known: "),
    (lambda r: r["space"].update(seed=3), "space.seed: unknown key for space 'nasbench201'"),
    (lambda r: r.update(output={"plot": True}), "did you mean 'plots'"),
])
def test_bad_configs_name_key_and_fix(mutate, message):
    raw = base_raw()
    mutate(raw)
    with pytest.raises(ConfigError) as info:
        config = cfg.validate(raw)
        cfg.build_component("searcher", config.searcher, space=None, objectives=config.objectives, seed=0)
        cfg.build_component("evaluator", config.evaluator, space=cfg.build_component("space", config.space),
                            data_dir="/nonexistent-data-dir")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_overrides_parse_values_as_yaml_and_reach_lists(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(base_raw()))
    raw = cfg.read_config(path, ["searcher.population_size=50", "objectives.0.mode=min", "output.plots=false",
                                 "evaluator.latency_devices=[1080ti_bs1, pixel3]"])
    config = cfg.validate(raw)
    assert config.searcher["population_size"] == 50
    assert config.objectives[0].mode == "min"
    assert config.output.plots is False
    assert config.evaluator["latency_devices"] == ["1080ti_bs1", "pixel3"]


@pytest.mark.parametrize("override, message", [
    ("searcher.population_size", "expected section.key=value"),
    ("objectives.3.metric=x", "must be an index below 1"),
    ("name.x=1", "name is not a section"),
])
def test_bad_overrides(tmp_path, override, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(base_raw()))
    with pytest.raises(ConfigError, match=message):
        cfg.read_config(path, [override])


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        cfg.read_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nspace: {name: nasbench201\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        cfg.read_config(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        cfg.read_config(listing)


def test_metrics_are_checked_against_the_evaluator():
    config = cfg.validate({**base_raw(), "objectives": [{"metric": "val_accuracy"}]})
    with pytest.raises(ConfigError, match=r"objectives\[0\].metric: 'val_accuracy' is not a metric.*available: val_acc"):
        cfg.check_metrics(config.objectives, config.output.report_metric, ("val_acc", "test_acc"), "nb201_tabular")


def test_shipped_experiments_validate():
    from pathlib import Path

    from nassearch.training.recipes import load_recipe
    from nassearch.training.retrain import load_retrain_config
    from nassearch.bench.latency import validate_latency_bench
    from nassearch.bench.predictors import load_raw, validate_bench

    paths = sorted(Path(__file__).resolve().parents[1].joinpath("experiments").glob("*.yaml"))
    assert len(paths) >= 7
    for path in paths:
        if path.name.startswith("bench_predictors"):
            validate_bench(load_raw(path))
        elif path.name.startswith("bench_latency"):
            validate_latency_bench(load_raw(path))
        elif path.name.endswith("_retrain.yaml"):
            load_retrain_config(path)
        elif path.name.startswith("retrain_"):
            load_recipe(path)
        else:
            cfg.load(path)


def test_a_searcher_needing_a_capability_refuses_a_space_without_it_at_validation():
    raw = {**base_raw(), "space": {"name": "nasbench101"}, "evaluator": {"name": "nb101_tabular"},
           "searcher": {"name": "nsga2"}, "objectives": [{"metric": "val_acc"}, {"metric": "params", "mode": "min"}]}
    with pytest.raises(ConfigError, match="searcher 'nsga2' needs a space with SupportsCrossover"):
        cfg.validate(raw)
    with pytest.raises(ConfigError, match="searcher 'nar_sampling' needs a predictor with PredictsTiers"):
        cfg.validate({**base_raw(), "searcher": {"name": "nar_sampling", "train_size": 10, "val_size": 0},
                      "predictor": {"name": "xgb"}, "budget": {"evaluations": 100}})
