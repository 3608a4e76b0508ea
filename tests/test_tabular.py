"""The NB201 tabular evaluator against the raw benchmark tables."""

import numpy as np
import pandas as pd
import pytest

from nassearch.evaluators.tabular import NB201_DATASETS, NasBench201Tabular
from nassearch.errors import DataError, InvalidArchitecture
from nassearch.spaces.base import SearchSpace
from nassearch.spaces.nasbench201 import NasBench201Space, parse_arch

INDEX0_ARCH = parse_arch(
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|")


@pytest.fixture(scope="module")
def latency_evaluator(data_dir):
    return NasBench201Tabular(NasBench201Space(), data_dir=str(data_dir), latency_devices=["1080ti_bs1"],
                              cost_per_query_s=2.5)


def test_index0_metrics_come_from_the_first_row(nb201_evaluator):
    result = nb201_evaluator.evaluate(INDEX0_ARCH)
    assert nb201_evaluator.metrics == ("val_acc", "test_acc", "params", "flops")
    assert list(result.metrics) == list(nb201_evaluator.metrics)
    assert result.metrics["val_acc"] == 63.36399998046875
    assert result.metrics["test_acc"] == 69.55
    params, flops = NasBench201Space().cost_batch([INDEX0_ARCH])
    assert result.metrics["params"] == params[0] and result.metrics["flops"] == flops[0]
    assert result.cost_s == 1.0 and result.wall_s >= 0.0
    assert all(type(v) is float for v in result.metrics.values())


def test_query_batch_equals_per_arch_evaluate(nb201_evaluator, random_archs):
    archs = random_archs(1000, seed=0)
    values = nb201_evaluator.query_batch(archs)
    assert values.shape == (1000, 4)
    for arch, row in zip(archs, values):
        assert list(nb201_evaluator.evaluate(arch).metrics.values()) == list(row)
    np.testing.assert_array_equal(nb201_evaluator.query_batch(np.array(archs)), values)
    assert [r.metrics for r in nb201_evaluator.evaluate_batch(archs[:10])] == \
        [nb201_evaluator.evaluate(a).metrics for a in archs[:10]]


def test_query_batch_matches_the_table_by_arch_string(nb201_evaluator, nb201_table, nb201_space, random_archs):
    archs = random_archs(1000, seed=1)
    by_str = nb201_table.set_index("arch_str")
    rows = by_str.loc[[nb201_space.to_str(a) for a in archs]]
    values = nb201_evaluator.query_batch(archs)
    np.testing.assert_array_equal(values[:, 0], rows["cifar10_valid_val_acc"].to_numpy())
    np.testing.assert_array_equal(values[:, 1], rows["cifar10_test_acc"].to_numpy())
    assert [nb201_evaluator.index_of(a) for a in archs] == rows["index"].tolist()
    params, flops = nb201_space.cost_batch(archs)
    np.testing.assert_array_equal(values[:, 2], params)
    np.testing.assert_array_equal(values[:, 3], flops)


def test_reference_values_cover_the_space(nb201_evaluator, nb201_table):
    test_acc = nb201_evaluator.reference_values("test_acc")
    assert test_acc.shape == (15625,)
    assert test_acc.max() == nb201_table["cifar10_test_acc"].max() == 89.16
    np.testing.assert_array_equal(nb201_evaluator.reference_values("val_acc"),
                                  nb201_table["cifar10_valid_val_acc"].to_numpy())
    assert nb201_evaluator.reference_values("no_such_metric") is None


def test_out_of_range_ops_are_rejected(nb201_evaluator):
    with pytest.raises(InvalidArchitecture, match="op indices must lie in 0..4"):
        nb201_evaluator.query_batch([(0, 0, 0, 0, 0, 5)])
    with pytest.raises(InvalidArchitecture):
        nb201_evaluator.evaluate((-1, 0, 0, 0, 0, 0))


@pytest.mark.parametrize("query", [
    lambda ev: ev.evaluate((0,) * 12),
    lambda ev: ev.evaluate_batch([(0, 0, 0), (1, 1, 1)]),
    lambda ev: ev.evaluate((0, 0, 0)),
], ids=["12-ops", "two-3-op-archs", "3-ops"])
def test_archs_with_a_wrong_number_of_ops_are_rejected(nb201_evaluator, query):
    with pytest.raises(InvalidArchitecture, match="6 op"):
        query(nb201_evaluator)


@pytest.mark.parametrize("dataset, val_col, test_col, classes, size", [
    ("cifar100", "cifar100_val_acc", "cifar100_test_acc", 100, 32),
    ("ImageNet16-120", "imagenet16_val_acc", "imagenet16_test_acc", 120, 16),
])
def test_other_datasets_use_their_columns_and_network(dataset, val_col, test_col, classes, size, data_dir,
                                                      nb201_table):
    assert NB201_DATASETS[dataset] == (val_col, test_col, classes, size)
    evaluator = NasBench201Tabular(NasBench201Space(), data_dir=str(data_dir), dataset=dataset)
    np.testing.assert_array_equal(evaluator.reference_values("val_acc"), nb201_table[val_col].to_numpy())
    np.testing.assert_array_equal(evaluator.reference_values("test_acc"), nb201_table[test_col].to_numpy())
    result = evaluator.evaluate(INDEX0_ARCH)
    assert result.metrics["val_acc"] == nb201_table[val_col].iloc[0]
    assert result.metrics["test_acc"] == nb201_table[test_col].iloc[0]
    params, flops = NasBench201Space(num_classes=classes, input_size=size).cost_batch([INDEX0_ARCH])
    assert result.metrics["params"] == params[0] and result.metrics["flops"] == flops[0]
    cifar10_params, cifar10_flops = NasBench201Space().cost_batch([INDEX0_ARCH])
    assert params[0] > cifar10_params[0]  # a bigger classifier
    assert (flops[0] < cifar10_flops[0]) == (size < 32)  # 16x16 inputs are cheaper


def test_latency_devices_add_metrics_from_the_latency_table(latency_evaluator, data_dir):
    latency = pd.read_csv(data_dir / "nasbench201/nb201_latency_ms.csv.gz")
    assert latency_evaluator.metrics == ("val_acc", "test_acc", "params", "flops", "lat_1080ti_bs1")
    result = latency_evaluator.evaluate(INDEX0_ARCH)
    assert result.metrics["lat_1080ti_bs1"] == latency["lat_1080ti_bs1"].iloc[0] == 10.75437
    assert result.cost_s == 2.5
    np.testing.assert_array_equal(latency_evaluator.reference_values("lat_1080ti_bs1"),
                                  latency["lat_1080ti_bs1"].to_numpy())


def test_unknown_latency_device_lists_known_devices(data_dir):
    with pytest.raises(ValueError) as info:
        NasBench201Tabular(NasBench201Space(), data_dir=str(data_dir), latency_devices=["1080ti_bs1", "tpu_v9"])
    message = str(info.value)
    assert "unknown device(s) tpu_v9" in message
    assert "known: 1080ti_bs1, 1080ti_bs32" in message and "raspi4" in message and "lat_" not in message


@pytest.mark.parametrize("kwargs, configured", [({"channels": 32}, "configured with 32 and 5"),
                                                ({"cells_per_stage": 3}, "configured with 16 and 3")])
def test_non_benchmark_network_settings_are_rejected(kwargs, configured, tmp_path):
    with pytest.raises(ValueError, match="channels=16 and cells_per_stage=5") as info:
        NasBench201Tabular(NasBench201Space(**kwargs), data_dir=str(tmp_path))
    assert configured in str(info.value)


def test_other_spaces_and_bad_options_are_rejected(tmp_path):
    class OtherSpace(SearchSpace):
        name = "other"
        sample = mutate = encode = to_str = from_str = build_model = cost = None

    with pytest.raises(ValueError, match="only for space nasbench201, not 'other'"):
        NasBench201Tabular(OtherSpace(), data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="dataset must be one of cifar10, cifar100, ImageNet16-120, got 'mnist'"):
        NasBench201Tabular(NasBench201Space(), data_dir=str(tmp_path), dataset="mnist")
    with pytest.raises(ValueError, match="cost_per_query_s must be > 0"):
        NasBench201Tabular(NasBench201Space(), data_dir=str(tmp_path), cost_per_query_s=-1)


def test_missing_table_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="nasbench201/nb201_12epoch.csv.gz not found"):
        NasBench201Tabular(NasBench201Space(), data_dir=str(tmp_path))
