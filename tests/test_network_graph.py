"""Whole-network graphs: nodes, edges, layer attributes and static properties of traced networks."""

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from nassearch.errors import NassearchError
from nassearch.graph import LAYER_ATTRIBUTES, STATIC_PROPERTIES
from nassearch.model_cost import count_flops, count_params
from nassearch.latency.network_graph import LAYER_VOCAB, NetworkTraceError, network_graph
from nassearch.spaces.nasbench201 import NasBench201Space

NAN = np.nan


class TinyResidual(nn.Module):
    """conv-bn-relu, a 1x1 conv with a residual add, pooling, flatten, dropout, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=True)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn(self.conv1(x)))
        z = self.conv2(y) + y
        return self.fc(self.drop(torch.flatten(self.pool(z), 1)))


SHAPE = (2, 3, 8, 8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_graph():
    torch.manual_seed(0)
    model = TinyResidual()
    return model, network_graph(model, SHAPE)


def row(graph, i):
    return dict(zip(LAYER_ATTRIBUTES, graph.node_attrs["layer"][i]))


def test_vocab_is_small_and_has_input_and_other():
    assert len(LAYER_VOCAB) <= 32 and len(set(LAYER_VOCAB)) == len(LAYER_VOCAB)
    assert LAYER_VOCAB[0] == "input" and "other" in LAYER_VOCAB


def test_tiny_nodes_and_edges(tiny_graph):
    _, graph = tiny_graph
    assert graph.op_vocab == LAYER_VOCAB
    assert graph.op_names() == ["input", "conv", "batchnorm", "relu", "conv", "add", "adaptive_avgpool",
                                "flatten", "linear"]  # dropout spliced out
    edges = {(int(i), int(j)) for i, j in zip(*np.nonzero(graph.adjacency))}
    assert edges == {(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (3, 5), (5, 6), (6, 7), (7, 8)}
    assert graph.node_attrs["layer"].shape == (9, 12) and graph.node_attrs["layer"].dtype == np.float64


def test_tiny_layer_attributes(tiny_graph):
    _, graph = tiny_graph
    conv = row(graph, 1)
    assert conv == pytest.approx(dict(kernel=3, stride=2, padding=1, dilation=1, groups=1, bias=1, perm=NAN,
                                      output_padding=NAN, out_batch=2, out_channels=4, out_height=4, out_width=4),
                                 nan_ok=True)
    assert row(graph, 4)["bias"] == 0 and row(graph, 4)["kernel"] == 1
    linear = row(graph, 8)
    assert linear["bias"] == 1 and (linear["out_batch"], linear["out_channels"]) == (2, 5)
    assert all(np.isnan(linear[k]) for k in LAYER_ATTRIBUTES if k not in ("bias", "out_batch", "out_channels"))
    relu = row(graph, 3)
    assert all(np.isnan(relu[k]) for k in LAYER_ATTRIBUTES[:8])
    assert [relu[k] for k in LAYER_ATTRIBUTES[8:]] == [2, 4, 4, 4]
    assert [row(graph, 0)[k] for k in LAYER_ATTRIBUTES[8:]] == [2, 3, 8, 8]  # the input
    assert np.isnan(row(graph, 7)["out_height"]) and np.isnan(row(graph, 7)["out_width"])  # flattened


def test_tiny_static_properties(tiny_graph):
    model, graph = tiny_graph
    assert tuple(graph.graph_attrs) == STATIC_PROPERTIES
    assert graph.graph_attrs["batch_size"] == 2
    assert graph.graph_attrs["flops"] == 2 * count_flops(model, SHAPE[1:]) / 1e6
    assert graph.graph_attrs["params"] == count_params(model) / 1e6
    # elements read + written (+ weights) per layer, float32
    conv1 = 384 + 128 + (4 * 3 * 9 + 4)
    bn = 128 + 128 + 4 * 4  # weight, bias, running mean and var
    relu, conv2, add = 128 + 128, 128 + 128 + 16, 3 * 128
    pool, flatten, linear = 128 + 8, 8 + 8, 8 + 10 + 4 * 5 + 5
    elements = conv1 + bn + relu + conv2 + add + pool + flatten + linear
    assert graph.graph_attrs["memory_access"] == pytest.approx(4 * elements / 1e6)


class Permuting(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.permute(0, 2, 3, 1).contiguous()
        return torch.transpose(y, 1, 2) * 1 + 0


def test_permute_and_transpose_codes_and_identities_spliced():
    graph = network_graph(Permuting(), (1, 3, 4, 5))
    assert graph.op_names() == ["input", "permute", "permute"]
    assert row(graph, 1)["perm"] == 231 and row(graph, 2)["perm"] == 213
    assert [row(graph, 2)[k] for k in LAYER_ATTRIBUTES[8:]] == [1, 5, 4, 3]


def test_nb201_network_graph_matches_cost_model():
    space = NasBench201Space()
    arch = (3, 4, 0, 1, 2, 3)
    model = space.build_model(arch)
    graph = network_graph(model, (1, 3, 32, 32))
    assert np.all(graph.adjacency.sum(axis=0)[1:] >= 1) and graph.adjacency[:, 0].sum() == 0  # one source
    assert graph.adjacency.sum(axis=1)[-1] == 0 and graph.op_names()[-1] == "linear"  # the classifier ends it
    assert graph.graph_attrs["params"] == count_params(model) / 1e6
    assert graph.graph_attrs["flops"] == pytest.approx(space.cost(arch).flops_m)
    names = graph.op_names()
    assert names.count("conv") == 1 + 2 * 3 + 3 * 15  # stem, reductions (2 + shortcut), three conv edges per cell
    assert names.count("mul") == 15  # one "none" edge per cell


def test_torchvision_mobilenet_v2_traces():
    model = torchvision.models.mobilenet_v2(weights=None)
    graph = network_graph(model, (1, 3, 32, 32))
    names = graph.op_names()
    assert (names.count("conv"), names.count("batchnorm"), names.count("relu6"), names.count("add")) == (52, 52, 35, 10)
    assert "other" not in names and names[-1] == "linear"
    assert graph.graph_attrs["params"] == count_params(model) / 1e6
    depthwise = graph.node_attrs["layer"][graph.ops == LAYER_VOCAB.index("conv"), LAYER_ATTRIBUTES.index("groups")]
    assert depthwise.max() > 1


class Untraceable(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.sum() > 0 else -x


def test_untraceable_model_and_bad_shape_raise_clear_errors():
    with pytest.raises(NetworkTraceError, match="cannot trace Untraceable with torch.fx"):
        network_graph(Untraceable(), (1, 3, 4, 4))
    with pytest.raises(NassearchError, match="input of shape"):
        network_graph(TinyResidual(), (1, 5, 8, 8))
    with pytest.raises(NetworkTraceError, match="input_shape"):
        network_graph(TinyResidual(), (3, 8, 0))
