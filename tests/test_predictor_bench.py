"""The predictor benchmark on the NB201 table, with a tiny ridge predictor defined here."""

import csv
import math

import numpy as np
import pytest
import yaml

from nassearch.cli import main
from nassearch.errors import ConfigError, RunDirError
from nassearch.bench.harness import train_indices
from nassearch.bench.predictors import COLUMNS, RESULTS, Population, run_cell, run_predictor_bench, validate_bench
from nassearch.predictors.base import Predictor
from nassearch.spaces.nasbench201 import NasBench201Space


class Ridge(Predictor):
    """Ridge regression on one-hot ops and the upper triangle of the adjacency matrix."""

    name = "ridge"

    def __init__(self, seed: int = 0, alpha: float = 1.0) -> None:
        self.seed, self.alpha = seed, alpha
        self.fit_graphs = []

    @staticmethod
    def features(graphs) -> np.ndarray:
        return np.stack([np.concatenate([g.one_hot_ops().ravel(), g.adjacency[np.triu_indices(g.num_nodes, 1)]])
                         for g in graphs]).astype(float)

    def fit(self, graphs, y, val=None):
        self.fit_graphs = list(graphs)
        x = self.features(graphs)
        self.x_mean, self.y_mean = x.mean(axis=0), float(np.mean(y))
        xc = x - self.x_mean
        self.w = np.linalg.solve(xc.T @ xc + self.alpha * np.eye(x.shape[1]), xc.T @ (np.asarray(y) - self.y_mean))
        return self

    def predict(self, graphs) -> np.ndarray:
        return (self.features(graphs) - self.x_mean) @ self.w + self.y_mean


def counting_factory():
    calls = []

    def factory(spec, seed):
        calls.append((spec["name"], seed))
        return Ridge(seed=seed, alpha=spec.get("alpha", 1.0))

    return factory, calls


def bench_config(tmp_path, **benchmark) -> dict:
    return {"name": "pb", "seed": 3, "space": {"name": "nasbench201"},
            "evaluator": {"name": "nb201_tabular", "dataset": "cifar10"},
            "benchmark": {"train_sizes": [50, 200], "seeds": 5, "predictors": [{"name": "ridge", "alpha": 1.0}],
                          **benchmark},
            "output": {"dir": str(tmp_path / "runs")}}


@pytest.mark.slow
def test_bench_rows_files_resume_and_determinism(tmp_path, data_dir):
    factory, calls = counting_factory()
    outcome = run_predictor_bench(bench_config(tmp_path), overrides=["benchmark.seeds=2", "benchmark.workers=1"],
                                  data_dir=data_dir, predictor_factory=factory)
    run_dir = outcome.run_dir
    assert outcome.computed == 4 and len(calls) == 4 + 1  # + the prediction-speed measurement
    rows = sorted(RESULTS.read(run_dir / "results.csv"), key=lambda r: (r["train_size"], r["seed"]))
    assert [(r["predictor"], r["train_size"], r["seed"]) for r in rows] == [
        ("ridge", 50, 3), ("ridge", 50, 4), ("ridge", 200, 3), ("ridge", 200, 4)]
    assert all(math.isfinite(r[c]) for r in rows for c in COLUMNS[3:])
    assert all(r["kendall_heldout"] > 0.3 for r in rows if r["train_size"] == 200)
    assert all(r["predict_archs_per_s"] == pytest.approx(15625 / r["predict_s"]) for r in rows)
    stored = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert stored["benchmark"]["seeds"] == 2 and stored["benchmark"]["test_metric"] == "test_acc"
    assert "| ridge | 200 | 2 |" in (run_dir / "results.md").read_text() and "±" in outcome.table
    assert (run_dir / "plots" / "scatter_ridge.png").stat().st_size > 10_000

    with (run_dir / "results.csv").open() as handle:
        lines = handle.readlines()
    (run_dir / "results.csv").write_text("".join(line for line in lines if not line.startswith("ridge,200,3,")))
    calls.clear()
    again = run_predictor_bench(bench_config(tmp_path), overrides=["benchmark.seeds=2", "benchmark.workers=1"],
                                data_dir=data_dir, predictor_factory=factory)
    assert again.computed == 1 and calls == [("ridge", 3), ("ridge", 3)]
    assert "| ridge |" in again.table.split("prediction speed")[1]
    redone = [r for r in RESULTS.read(run_dir / "results.csv") if (r["train_size"], r["seed"]) == (200, 3)]
    original = next(r for r in rows if (r["train_size"], r["seed"]) == (200, 3))
    assert len(redone) == 1
    for column in COLUMNS[3:7]:
        assert redone[0][column] == pytest.approx(original[column], abs=1e-12)

    with pytest.raises(RunDirError, match="another benchmark.target"):
        run_predictor_bench(bench_config(tmp_path, target="test_acc"), data_dir=data_dir, predictor_factory=factory)
    with pytest.raises(RunDirError, match="predictor 'ridge' with other settings"):
        run_predictor_bench(bench_config(tmp_path, predictors=[{"name": "ridge", "alpha": 2.0}]), data_dir=data_dir,
                            predictor_factory=factory)


@pytest.mark.slow
def test_parallel_workers_give_the_serial_numbers(tmp_path, data_dir):
    factory, _ = counting_factory()
    results = {}
    for workers in (1, 2):
        config = bench_config(tmp_path / str(workers), workers=workers, seeds=2)
        rows = run_predictor_bench(config, data_dir=data_dir, predictor_factory=factory).rows
        results[workers] = {(r["train_size"], r["seed"]): r["kendall_heldout"] for r in rows}
    assert len(results[2]) == 4 and results[1] == results[2]


def test_heldout_excludes_training_archs():
    space = NasBench201Space()
    graphs = [space.encode(a) for a in list(space.enumerate())[:300]]
    rng = np.random.default_rng(0)
    target = rng.normal(size=300)
    population = Population(graphs, target, target + 0.1 * rng.normal(size=300))
    predictor = Ridge()
    metrics, pred, heldout = run_cell(predictor, population, 40, seed=7)
    train = train_indices(300, 40, 7)
    assert len(set(train.tolist())) == 40 and np.array_equal(train, train_indices(300, 40, 7))
    assert {id(g) for g in predictor.fit_graphs} == {id(graphs[i]) for i in train}
    assert heldout.sum() == 260 and not heldout[train].any()
    assert pred.shape == (300,) and metrics["kendall_all"] > metrics["kendall_heldout"] - 0.2


@pytest.mark.parametrize("change, key", [
    ({"benchmark": {"train_sizes": [50], "predictors": ["ridge"], "sede": 1}}, "benchmark.sede"),
    ({"bench": {}}, "bench: unknown key"),
    ({"benchmark": {"train_sizes": [50, "x"], "predictors": ["ridge"]}}, "benchmark.train_sizes[1]"),
    ({"benchmark": {"train_sizes": [50], "predictors": ["ridge"], "seeds": 0}}, "benchmark.seeds"),
    ({"benchmark": {"train_sizes": [50], "predictors": ["ridge", "ridge"]}}, "benchmark.predictors[1]"),
    ({"benchmark": {"predictors": ["ridge"]}}, "benchmark.train_sizes: missing"),
    ({"output": {"dir": "x", "plots": True}}, "output.plots"),
    ({"evaluator": {"name": "nb201_tabular", "datset": "cifar10"}}, "evaluator.datset"),
])
def test_bad_config_names_the_key(tmp_path, change, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        validate_bench({**bench_config(tmp_path), **change}, resolve_predictors=False)


def test_predictor_sections_are_checked_against_the_registry(tmp_path):
    with pytest.raises(ConfigError, match=r"benchmark.predictors\[0\]: predictor.name: unknown predictor 'ridge'"):
        validate_bench(bench_config(tmp_path))


def test_cli_bench_predictors_reports_config_errors(tmp_path, capsys):
    path = tmp_path / "pb.yaml"
    path.write_text(yaml.safe_dump(bench_config(tmp_path)))
    assert main(["bench", "predictors", str(path), "--set", "benchmark.target=7"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nassearch: error: benchmark.target: expected str")


def test_results_file_ignores_a_half_written_row(tmp_path):
    path = tmp_path / "results.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        writer.writerow({c: 1 for c in COLUMNS} | {"predictor": "ridge"})
        handle.write("ridge,50,4,0.5")
    assert [(r["predictor"], r["train_size"]) for r in RESULTS.read(path)] == [("ridge", 1)]
