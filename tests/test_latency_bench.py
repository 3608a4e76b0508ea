"""The latency-predictor benchmark: metrics on hand examples, config checks, and a tiny end-to-end run
on a synthetic LatencyDataset file (tiny torch networks traced by network_graph, latencies a known
function of their static properties)."""


import numpy as np
import pytest
import torch
import yaml
from torch import nn

from nassearch.cli import main
from nassearch.errors import ConfigError, DataError, RunDirError
from nassearch.bench.latency import (COLUMNS, METRIC_COLUMNS, RESULTS, LatencyTask, error_bound_accuracy,
                                     latency_metrics, mape, run_latency_bench, split_indices, validate_latency_bench)
from nassearch.data.latency_dataset import LatencyDataset
from nassearch.latency.network_graph import network_graph

# --------------------------------------------------------------------------------------------- metrics


def test_mape_on_hand_examples():
    assert mape([100.0, 200.0], [110.0, 180.0]) == pytest.approx(10.0)
    assert mape([1.0, 2.0, 4.0], [1.0, 3.0, 2.0]) == pytest.approx(100 / 3)
    assert mape([5.0], [5.0]) == 0.0
    with pytest.raises(ValueError, match="> 0"):
        mape([1.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="one length"):
        mape([1.0, 2.0], [1.0])


def test_error_bound_accuracy_counts_the_boundary():
    true = [100.0, 100.0, 100.0, 10.0]
    pred = [105.0, 110.0, 110.0001, 9.0]  # relative errors 0.05, 0.1, 0.100001, 0.1
    assert error_bound_accuracy(true, pred, 0.10) == pytest.approx(75.0)
    assert error_bound_accuracy(true, pred, 0.05) == pytest.approx(25.0)
    assert error_bound_accuracy(true, pred, 0.0) == 0.0
    # 3.3 * 1.1 is 3.6300000000000003: its relative error rounds to just above 0.1 but is on the boundary
    assert error_bound_accuracy([3.3], [3.3 * 1.1], 0.10) == 100.0
    assert error_bound_accuracy([3.3], [3.3 * 1.1 + 1e-9], 0.10) == 0.0


def test_latency_metrics_bundle():
    true = np.array([1.0, 2.0, 3.0, 4.0])
    metrics = latency_metrics(true, true * np.array([1.0, 1.04, 0.92, 1.2]))
    assert metrics["mape"] == pytest.approx((0 + 4 + 8 + 20) / 4)
    assert (metrics["acc5"], metrics["acc10"]) == (pytest.approx(50.0), pytest.approx(75.0))
    assert metrics["kendall"] == pytest.approx(1.0)


def test_split_indices_random_and_leave_family_out():
    families = np.array(["a"] * 15625)
    task = LatencyTask("d", "random", np.ones(15625))
    train, test = split_indices(task, families, 0.1, None, seed=0)
    assert len(train) == 1563 and len(test) == 14062 and not set(train) & set(test)
    again, _ = split_indices(LatencyTask("other", "random", np.ones(15625)), families, 0.1, None, seed=0)
    assert np.array_equal(train, again)  # every device of a seed trains on the same networks
    assert not np.array_equal(train, split_indices(task, families, 0.1, None, seed=1)[0])
    _, subset = split_indices(task, families, 0.1, 500, seed=0)
    assert len(subset) == 500 and set(subset) <= set(test) and np.all(np.diff(subset) > 0)
    families = np.array(["a", "b", "a", "c", "b"])
    train, test = split_indices(LatencyTask("d", "leave_out:b", np.ones(5)), families, 0.5, None, seed=3)
    assert train.tolist() == [0, 2, 3] and test.tolist() == [1, 4]


# --------------------------------------------------------------------------------------------- config


def nb201_config(tmp_path, **benchmark) -> dict:
    return {"name": "lb", "benchmark": {"source": {"name": "nb201", "devices": ["1080ti_bs1"]},
                                        "predictors": ["static_xgb"], **benchmark},
            "output": {"dir": str(tmp_path / "runs")}}


@pytest.mark.parametrize("change, message", [
    ({"source": {"name": "nb201", "devices": ["1080ti_bs1", "gtx9000"]}},
     "benchmark.source.devices: unknown NB201 latency device 'gtx9000'; known: all, 1080ti_bs1"),
    ({"train_fraction": 1.5}, "benchmark.train_fraction: must lie strictly between 0 and 1, got 1.5"),
    ({"train_fraction": 0}, "benchmark.train_fraction: must lie strictly between 0 and 1"),
    ({"train_fraction": "10%"}, "benchmark.train_fraction: expected a number"),
    ({"test_size": 0}, "benchmark.test_size: must be >= 1 or null"),
    ({"source": "nb101"}, "benchmark.source: expected nb201 or file"),
    ({"source": {"name": "nb201", "path": "x.npz"}}, "benchmark.source.path: unknown key for source 'nb201'"),
    ({"source": {"name": "file"}}, "benchmark.source.path: missing"),
    ({"source": {"name": "file", "path": "x.npz", "splits": ["kfold"]}}, "benchmark.source.splits: expected"),
    ({"seeds": 0}, "benchmark.seeds: must be >= 1"),
    ({"device": "all"}, "benchmark.device: unknown key"),
])
def test_bad_config_names_the_key(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_latency_bench(nb201_config(tmp_path, **change))


def test_devices_all_and_lat_prefix(tmp_path):
    assert validate_latency_bench(nb201_config(tmp_path)).source["devices"] == ["1080ti_bs1"]
    config = nb201_config(tmp_path, source={"name": "nb201", "devices": ["lat_pixel3"]})
    assert validate_latency_bench(config).source["devices"] == ["pixel3"]
    assert validate_latency_bench(nb201_config(tmp_path, source="nb201")).source == {"name": "nb201", "devices": "all"}


def test_cli_reports_a_bad_config_in_one_line(tmp_path, capsys):
    path = tmp_path / "lb.yaml"
    path.write_text(yaml.safe_dump(nb201_config(tmp_path, source={"name": "nb201", "devices": ["gtx9000"]})))
    assert main(["bench", "latency", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nassearch: error: benchmark.source.devices: unknown NB201 latency device 'gtx9000'")
    assert len(err.splitlines()) == 1
    assert main(["bench", "latency", str(path), "--set", "benchmark.source.devices=all", "--workers", "0"]) == 2
    assert capsys.readouterr().err.strip() == "nassearch: error: benchmark.workers: must be >= 1, got 0"


# --------------------------------------------------------------------------------------------- end to end


def tiny_network(width: int, depth: int, kernel: int) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(3, width, kernel, padding=kernel // 2), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Conv2d(width, width, kernel, padding=kernel // 2), nn.BatchNorm2d(width), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))


@pytest.fixture(scope="module")
def dataset_path(tmp_path_factory):
    """24 tiny networks in two families (3x3 and 1x1 convolutions) with latency = a known function of
    FLOPs and memory access, times 1-2 % noise."""
    rng = np.random.default_rng(0)
    graphs, names, families = [], [], []
    torch.manual_seed(0)
    for kernel, family in ((3, "conv3"), (1, "conv1")):
        for width in (4, 8, 16):
            for depth in (1, 2):
                for size in (8, 16):
                    graphs.append(network_graph(tiny_network(width, depth, kernel), (1, 3, size, size)))
                    names.append(f"{family}:w{width}:d{depth}:r{size}")
                    families.append(family)
    latency = np.array([0.05 + 20 * g.graph_attrs["flops"] + 0.1 * g.graph_attrs["memory_access"]
                        for g in graphs]) * rng.uniform(0.98, 1.02, len(graphs))
    path = tmp_path_factory.mktemp("latency") / "tiny.npz"
    return LatencyDataset(graphs, latency, names, families, "cpu: synthetic").save(path)


def file_config(tmp_path, dataset_path, **benchmark) -> dict:
    return {"name": "tiny", "seed": 4, "benchmark": {
        "source": {"name": "file", "path": str(dataset_path), "splits": ["random", "leave_family_out"]},
        "train_fraction": 0.5, "seeds": 2, "workers": 2,
        "predictors": [{"name": "static_xgb", "n_estimators": 100, "learning_rate": 0.3},
                       {"name": "narformer_v2", "dim": 8, "blocks": 1, "groups": 2, "epochs": 2,
                        "consistency_weight": 0.0}], **benchmark},
        "output": {"dir": str(tmp_path / "runs")}}


def metric_values(rows):
    return {(r["predictor"], r["device"], r["split"], r["seed"]): [r[c] for c in COLUMNS[4:10]] for r in rows}


@pytest.mark.slow
def test_end_to_end_files_numbers_and_resume(tmp_path, dataset_path):
    outcome = run_latency_bench(file_config(tmp_path, dataset_path))
    run_dir = outcome.run_dir
    # 2 predictors x (random + leave out conv3 + leave out conv1) x seeds 4, 5
    assert outcome.computed == 12 and len(outcome.rows) == 12
    rows = RESULTS.read(run_dir / "results.csv")
    assert {(r["split"], r["train_size"], r["test_size"]) for r in rows} == {
        ("random", 12, 12), ("leave_out:conv3", 12, 12), ("leave_out:conv1", 12, 12)}
    assert {r["device"] for r in rows} == {"cpu: synthetic"} and {r["seed"] for r in rows} == {4, 5}
    assert all(np.isfinite(r[c]) for r in rows for c in METRIC_COLUMNS if c != "kendall")
    xgb = [r for r in rows if r["predictor"] == "static_xgb" and r["split"] == "random"]
    assert all(r["mape"] < 40 and r["kendall"] > 0.8 for r in xgb)  # 12 training networks only

    # the stored first-seed predictions are the test networks and reproduce the row's numbers
    dataset = LatencyDataset.load(dataset_path)
    with np.load(run_dir / "predictions" / "static_xgb" / "cpu_synthetic__random.npz") as npz:
        index, true, pred = npz["index"], npz["true"], npz["pred"]
    task = LatencyTask("cpu: synthetic", "random", dataset.latency_ms)
    train, test = split_indices(task, np.array(dataset.families), 0.5, None, seed=4)
    assert np.array_equal(index, test) and np.array_equal(true, dataset.latency_ms[test])
    row = next(r for r in xgb if r["seed"] == 4)
    assert row["mape"] == pytest.approx(mape(true, pred)) and not set(train) & set(index)
    assert len(list((run_dir / "predictions").rglob("*.npz"))) == 6  # first seed only

    table = (run_dir / "results.md").read_text()
    assert "| cpu: synthetic | leave_out:conv1 | narformer_v2 | 2 | 12 | 12 |" in table and "±" in table
    assert "Mean over tasks" in table and outcome.table in table
    assert (run_dir / "plots" / "scatter_static_xgb.png").stat().st_size > 10_000
    assert (run_dir / "plots" / "scatter_narformer_v2.png").is_file()
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["benchmark"]["train_fraction"] == 0.5

    # kill one cell's row (and leave a half-written line): the rerun computes exactly that cell, serially,
    # and gets the numbers the parallel run got
    before = metric_values(rows)
    with (run_dir / "results.csv").open() as handle:
        lines = handle.readlines()
    dropped = next(i for i, line in enumerate(lines) if line.startswith("narformer_v2,") and ",random,5," in line)
    (run_dir / "results.csv").write_text("".join(lines[:dropped] + lines[dropped + 1:]) + "narformer_v2,cpu")
    again = run_latency_bench(file_config(tmp_path, dataset_path), workers=1)
    assert again.computed == 1
    after = metric_values(RESULTS.read(run_dir / "results.csv"))
    assert after.keys() == before.keys()
    for key in before:
        assert after[key] == pytest.approx(before[key], rel=1e-6), key

    # nothing left to do; another train fraction is refused; --overwrite starts afresh
    assert run_latency_bench(file_config(tmp_path, dataset_path)).computed == 0
    with pytest.raises(RunDirError, match="benchmark.train_fraction"):
        run_latency_bench(file_config(tmp_path, dataset_path), ["benchmark.train_fraction=0.6"])
    fresh = run_latency_bench(file_config(tmp_path, dataset_path, predictors=[{"name": "static_xgb"}], seeds=1),
                              overwrite=True)
    assert fresh.computed == 3 and len(RESULTS.read(run_dir / "results.csv")) == 3


def test_changed_data_missing_file_and_bad_split_sizes_are_refused(tmp_path, dataset_path):
    path = tmp_path / "data.npz"
    path.write_bytes(dataset_path.read_bytes())
    config = file_config(tmp_path, path, predictors=[{"name": "static_xgb", "n_estimators": 10}], seeds=1,
                         workers=1)
    assert run_latency_bench(config).computed == 3
    dataset = LatencyDataset.load(path)
    LatencyDataset(dataset.graphs, dataset.latency_ms * 2, dataset.names, dataset.families, dataset.device).save(path)
    with pytest.raises(RunDirError, match="benchmarked on other data"):
        run_latency_bench(config)
    with pytest.raises(RunDirError, match="another benchmark.source"):
        run_latency_bench(config, [f"benchmark.source.path={dataset_path}"])
    elsewhere = [f"output.dir={tmp_path / 'elsewhere'}"]
    with pytest.raises(ConfigError, match="benchmark.train_fraction: 0.01 of 24 networks gives 0 training"):
        run_latency_bench(config, ["benchmark.train_fraction=0.01", *elsewhere])
    with pytest.raises(DataError, match="missing.npz not found"):
        run_latency_bench(config, [f"benchmark.source.path={tmp_path / 'missing.npz'}", *elsewhere])
    one_family = LatencyDataset(dataset.graphs[:12], dataset.latency_ms[:12], dataset.names[:12],
                                dataset.families[:12], dataset.device).save(tmp_path / "one.npz")
    with pytest.raises(ConfigError, match="leave_family_out needs networks of at least two families"):
        run_latency_bench(config, [f"benchmark.source.path={one_family}", *elsewhere])
    assert not (tmp_path / "elsewhere").exists()


def _nb201_operation_count_groups(data_dir):
    import pandas as pd

    table = pd.read_csv(data_dir / "nasbench201" / "nb201_latency_ms.csv.gz")
    ops = table["arch_str"].str.findall(r"\|([a-z_0-9]+)~")
    names = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
    groups = ops.apply(lambda edge_ops: str([edge_ops.count(n) for n in names]))
    assert groups.nunique() == 210
    return table, groups


def test_nb201_gpu_latency_noise_ceiling(data_dir):
    """NB201 networks with the same operation counts do the same GPU work; predicting each one's latency by
    the mean of the rest of its group reaches Acc(10%) 94.0% on 2080ti_bs1 and 97.5% on titanxp_bs1."""
    table, groups = _nb201_operation_count_groups(data_dir)

    def leave_one_out_acc10(column):
        y = table[column]
        by_group = y.groupby(groups)
        others = (by_group.transform("sum") - y) / (by_group.transform("count") - 1)
        return float(((others - y).abs() / y <= 0.1).mean() * 100)

    assert leave_one_out_acc10("lat_2080ti_bs1") == pytest.approx(94.00, abs=0.01)
    assert leave_one_out_acc10("lat_titanxp_bs1") == pytest.approx(97.50, abs=0.01)


def test_nb201_2080ti_bs1_slow_sessions_cap_acc10_below_95(data_dir):
    """The README's case that no predictor reaches Acc(10%) 95% on 2080ti_bs1. Predicting each network by its
    operation-count group's median misses 5.67% of the column, and the misses come in runs of consecutive
    table indices (measurement sessions): 7 windows of 125 indices hold 71% of them. Even the best single
    prediction per group, chosen after seeing every latency in it (a prediction p is within 10% of the y in
    [p / 1.1, p / 0.9]), scores only 94.89%."""
    table, groups = _nb201_operation_count_groups(data_dir)
    y = table["lat_2080ti_bs1"].to_numpy()
    median = table["lat_2080ti_bs1"].groupby(groups).transform("median").to_numpy()
    missed = np.abs(median - y) / y > 0.1
    assert missed.mean() * 100 == pytest.approx(5.67, abs=0.01)
    per_window = missed.reshape(-1, 125).mean(axis=1)  # 125 windows of 125 consecutive indices
    assert (per_window > 0.5).sum() == 7 and (per_window < 0.05).sum() == 108
    assert missed[np.repeat(per_window > 0.5, 125)].sum() / missed.sum() == pytest.approx(0.714, abs=0.001)

    def best_window_hits(latencies):
        latencies = np.sort(latencies)
        return int((np.searchsorted(latencies, latencies * 1.1 / 0.9, side="right") - np.arange(len(latencies))).max())

    best = sum(best_window_hits(y[idx]) for idx in table.groupby(groups).indices.values())
    assert best / len(y) * 100 == pytest.approx(94.89, abs=0.01)
