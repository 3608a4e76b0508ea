"""CPU latency datasets: reproducible sampling, exact npz round trip, clear errors; NB201 table graphs."""

import numpy as np
import pytest
import torch
from torch import nn

from nassearch.cli import main
from nassearch.errors import DataError
from nassearch.latency.timing import measure_latency_ms
from nassearch.data.latency_dataset import (FAMILIES, LatencyDataset, NB201GraphBuilder, build_cpu_latency_dataset,
                                       nb201_latency_dataset, nb201_latency_graphs)
from nassearch.latency.network_graph import LAYER_VOCAB, network_graph
from nassearch.spaces.nasbench201 import NasBench201Space, parse_arch

FAST = dict(warmup=1, repeats=2)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def small_dataset() -> LatencyDataset:
    return build_cpu_latency_dataset(count=6, seed=3, **FAST)


def assert_same_graph(a, b):
    assert a.op_vocab == b.op_vocab and a.op_names() == b.op_names()
    assert np.array_equal(a.adjacency, b.adjacency) and a.adjacency.dtype == b.adjacency.dtype
    assert sorted(a.node_attrs) == sorted(b.node_attrs)
    for name in a.node_attrs:
        assert np.array_equal(a.node_attrs[name], b.node_attrs[name], equal_nan=True)
        assert a.node_attrs[name].dtype == b.node_attrs[name].dtype
    assert a.graph_attrs == b.graph_attrs
    assert (a.cells is None) == (b.cells is None)
    if a.cells is not None:
        assert np.array_equal(a.cells, b.cells)


def test_small_dataset_covers_the_families(small_dataset):
    data = small_dataset
    assert len(data) == 6 and data.families == [*FAMILIES, *FAMILIES]
    assert [n.split(":")[0] for n in data.names[:2]] == ["nb201", "nb101"]
    assert data.latency_ms.dtype == np.float64 and np.all(data.latency_ms > 0)
    assert data.device.startswith("cpu") and "1 thread" in data.device
    for graph in data.graphs:
        assert graph.op_vocab == LAYER_VOCAB and graph.graph_attrs["batch_size"] == 1
        assert graph.graph_attrs["flops"] > 0 and graph.graph_attrs["memory_access"] > 0


def test_same_seed_same_networks(small_dataset):
    again = build_cpu_latency_dataset(count=3, seed=3, **FAST)
    assert again.names == small_dataset.names[:3] and again.families == small_dataset.families[:3]
    for a, b in zip(again.graphs, small_dataset.graphs):
        assert_same_graph(a, b)
    other = build_cpu_latency_dataset(count=1, seed=4, **FAST)
    assert other.names[0] != small_dataset.names[0]


def test_save_load_round_trip_is_exact(small_dataset, tmp_path):
    path = small_dataset.save(tmp_path / "lat.data")  # the exact name, no .npz appended
    assert path == tmp_path / "lat.data" and path.is_file()
    loaded = LatencyDataset.load(path)
    assert loaded.names == small_dataset.names and loaded.families == small_dataset.families
    assert loaded.device == small_dataset.device
    assert np.array_equal(loaded.latency_ms, small_dataset.latency_ms)
    for a, b in zip(loaded.graphs, small_dataset.graphs):
        assert_same_graph(a, b)


def test_round_trip_mixes_vocabularies_and_cells(small_dataset, tmp_path):
    from nassearch.graph import ArchGraph

    space = NasBench201Space()
    cell_graph = space.encode((1, 2, 3, 4, 0, 1))
    with_cells = ArchGraph(cell_graph.ops, cell_graph.adjacency, cell_graph.op_vocab,
                           node_attrs=dict(cell_graph.node_attrs), graph_attrs={"depth": 3.0},
                           cells=np.arange(cell_graph.num_nodes))
    data = LatencyDataset([cell_graph, with_cells], [1.5, 2.5], ["a", "b"], ["x", "y"], "dev")
    loaded = LatencyDataset.load(data.save(tmp_path / "mixed.npz"))
    for a, b in zip(loaded.graphs, data.graphs):
        assert_same_graph(a, b)


def test_missing_and_corrupt_files_raise_data_error(small_dataset, tmp_path):
    with pytest.raises(DataError, match="not found"):
        LatencyDataset.load(tmp_path / "absent.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all" * 10)
    with pytest.raises(DataError, match="corrupt"):
        LatencyDataset.load(garbage)
    good = small_dataset.save(tmp_path / "good.npz").read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="corrupt"):
        LatencyDataset.load(truncated)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.arange(3))
    with pytest.raises(DataError, match="corrupt or not a latency dataset"):
        LatencyDataset.load(other)


def test_measure_latency_restores_threads_and_mode():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).train()
    threads = torch.get_num_threads()
    latency = measure_latency_ms(model, (1, 3, 16, 16), warmup=1, repeats=3, threads=1)
    assert latency > 0 and model.training and torch.get_num_threads() == threads
    with pytest.raises(ValueError, match="repeats"):
        measure_latency_ms(model, (1, 3, 16, 16), repeats=0)


@pytest.mark.parametrize("arch", [(0,) * 6, (1,) * 6, (2, 3, 4, 1, 0, 3)])
def test_nb201_builder_equals_tracing(arch):
    space = NasBench201Space()
    derived = NB201GraphBuilder(space).graph(arch)
    assert_same_graph(derived, network_graph(space.build_model(arch), (1, 3, 32, 32)))


@pytest.mark.slow
def test_nb201_latency_graphs_follow_the_table(data_dir):
    import pandas as pd

    table = pd.read_csv(data_dir / "nasbench201/nb201_latency_ms.csv.gz")
    rows = [0, 1, 7000]
    space = NasBench201Space()
    graphs = nb201_latency_graphs(space, data_dir=data_dir, rows=rows)
    for row, graph in zip(rows, graphs):
        traced = network_graph(space.build_model(parse_arch(table["arch_str"][row])), (1, 3, 32, 32))
        assert_same_graph(graph, traced)
    data = nb201_latency_dataset("pixel3", data_dir=data_dir, rows=rows)
    assert np.array_equal(data.latency_ms, table["lat_pixel3"].to_numpy()[rows])
    with pytest.raises(ValueError, match="unknown NB201 latency device"):
        nb201_latency_dataset("abacus", data_dir=data_dir, rows=rows)
    with pytest.raises(ValueError, match="channels=16"):
        nb201_latency_graphs(NasBench201Space(channels=8), data_dir=data_dir, rows=rows)


def test_cli_measure_latency(tmp_path, capsys):
    out = tmp_path / "cpu.npz"
    assert main(["data", "measure-latency", "--out", str(out), "--count", "2", "--seed", "1",
                 "--warmup", "0", "--repeats", "1"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("2 networks (nb201 1, nb101 1)") and str(out) in line
    assert len(LatencyDataset.load(out)) == 2
    assert main(["data", "measure-latency", "--out", str(out), "--count", "0"]) == 2
