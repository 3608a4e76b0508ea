"""NAR-Former V2: encodings, graph-aided attention, the SR loss, and fitting known functions of graphs."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau

from nassearch.graph import ArchGraph
from nassearch.predictors.narformer import sequence_ranking_loss
from nassearch.predictors.narformer_v2 import GraphAidedAttention, NARFormerV2Network, NARFormerV2Predictor
from nassearch.predictors.training import parameter_groups
from tests.test_predictors import VOCAB, assert_learns, synthetic_cells

LAYER_VOCAB = ("conv", "relu", "pool", "linear")
NAN = float("nan")


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: these small networks train fastest that way on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def code(value: float, length: int) -> list[float]:
    """The documented real-number code, written out: frequencies linspace(1, 2^(L-1), L), [sin, cos] pairs."""
    half = length // 2
    out = []
    for k in range(half):
        f = 1 + k * (2 ** (half - 1) - 1) / (half - 1)
        out += [math.sin(math.pi * f * value), math.cos(math.pi * f * value)]
    return out


def chain(ops, op_vocab=VOCAB, **kwargs) -> ArchGraph:
    n = len(ops)
    adjacency = np.zeros((n, n), dtype=np.uint8)
    adjacency[np.arange(n - 1), np.arange(1, n)] = 1
    return ArchGraph(ops=ops, adjacency=adjacency, op_vocab=op_vocab, **kwargs)


def layer_graph(rng: np.random.Generator) -> tuple[ArchGraph, float]:
    """A small whole-network-like chain (conv/relu/pool ... linear) and a latency that depends on it."""
    n = int(rng.integers(3, 8))
    ops = np.concatenate([rng.choice([0, 1, 2], n - 1), [3]])
    batch = float(rng.choice([1, 8]))
    channels, size, rows, latency = 3.0, 32.0, [], 0.05
    for op in ops:
        if op == 0:  # conv: kernel, stride, padding, dilation, groups, bias, perm, output_padding, shape
            kernel, channels = float(rng.choice([1, 3, 5])), float(rng.choice([16, 32, 64]))
            rows.append([kernel, 1, kernel // 2, 1, 1, 1, NAN, NAN, batch, channels, size, size])
            latency += 1e-6 * batch * channels * size * size * kernel ** 2
        elif op == 1:
            rows.append([NAN] * 8 + [batch, channels, size, size])
            latency += 1e-8 * batch * channels * size * size
        elif op == 2:
            size = max(1.0, size / 2)
            rows.append([2, 2, 0, 1, NAN, NAN, NAN, NAN, batch, channels, size, size])
            latency += 1e-8 * batch * channels * size * size
        else:
            rows.append([NAN] * 5 + [1, NAN, NAN, batch, 10, NAN, NAN])
            latency += 1e-7 * batch * channels * size * size
    static = {"batch_size": batch, "flops": 1e6 * latency, "params": 1e3 * n, "memory_access": 1e4 * n}
    graph = chain(ops, LAYER_VOCAB, node_attrs={"layer": np.array(rows)}, graph_attrs=static)
    return graph, latency


@pytest.fixture(scope="module")
def cells():
    return synthetic_cells(200, 300)


SMALL = dict(dim=32, blocks=2, groups=4, batch_size=16, lr=2e-3, ema_decay=None, device="cpu")


# ------------------------------------------------------------------------------------------ encoding


def test_accuracy_encoding_is_op_code_then_position_code():
    graph = chain([0, 2, 4])
    padded = chain([0, 1, 3, 4])
    inputs = NARFormerV2Predictor().featurize([graph, padded])
    nodes = inputs["nodes"].numpy()
    assert nodes.shape == (2, 4, 128)
    for i, op in enumerate([0, 2, 4]):
        np.testing.assert_allclose(nodes[0, i], code(op, 64) + code(i, 64), atol=1e-5)
    assert np.all(nodes[0, 3] == 0)  # padding node
    np.testing.assert_array_equal(inputs["mask"].numpy(), [[1, 1, 1, 0], [1, 1, 1, 1]])
    np.testing.assert_array_equal(inputs["degree"].numpy()[0], [[0, 1], [1, 1], [1, 0], [0, 0]])  # (in, out)


def test_latency_encoding_one_hot_attributes_and_static_properties():
    rows = np.array([[3, 1, 1, 1, 1, 1, NAN, NAN, 1, 16, 8, 8],
                     [NAN] * 8 + [1, 16, 8, 8],
                     [NAN] * 5 + [1, NAN, NAN, 1, 10, NAN, NAN]])
    static = {"batch_size": 1.0, "flops": 1e6, "params": 1e4, "memory_access": 2e5}
    graph = chain([0, 1, 3], LAYER_VOCAB, node_attrs={"layer": rows}, graph_attrs=static)
    inputs = NARFormerV2Predictor().featurize([graph])
    nodes, static_codes = inputs["nodes"].numpy()[0], inputs["static"].numpy()[0]
    assert nodes.shape == (3, 152) and static_codes.shape == (40,)

    def expected_attributes(row):
        return sum((code(math.log2(1 + v) / 32, 10) if not math.isnan(v) else [0.0] * 10 for v in row), [])

    for i, op in enumerate([0, 1, 3]):
        np.testing.assert_array_equal(nodes[i, :32], np.eye(32)[op])
        np.testing.assert_allclose(nodes[i, 32:], expected_attributes(rows[i]), atol=1e-6)
    np.testing.assert_allclose(nodes[0, 32:42], code(2 / 32, 10), atol=1e-6)  # kernel 3 -> log2(4) / 32
    assert np.all(nodes[1, 32:112] == 0)  # relu: no kernel ... output_padding
    np.testing.assert_allclose(static_codes, expected_attributes(list(static.values())), atol=1e-6)


def test_latency_encoding_rejects_bad_graphs():
    rows = np.full((2, 12), 1.0)
    static = {"batch_size": 1.0, "flops": 1.0, "params": 1.0, "memory_access": 1.0}
    big_vocab = tuple(f"op{i}" for i in range(33))
    with pytest.raises(ValueError, match="at most 32 layer types"):
        NARFormerV2Predictor().featurize([chain([0, 1], big_vocab, node_attrs={"layer": rows}, graph_attrs=static)])
    with pytest.raises(ValueError, match="lacks graph_attrs"):
        NARFormerV2Predictor().featurize([chain([0, 1], LAYER_VOCAB, node_attrs={"layer": rows})])
    with pytest.raises(ValueError, match=r"shape \(2, 12\)"):
        NARFormerV2Predictor().featurize([chain([0, 1], LAYER_VOCAB, node_attrs={"layer": rows[:, :5]},
                                                graph_attrs=static)])
    with pytest.raises(ValueError, match="all carry"):
        NARFormerV2Predictor().featurize([chain([0, 1]), chain([0, 1], LAYER_VOCAB, node_attrs={"layer": rows},
                                                                 graph_attrs=static)])


def test_neighbours_are_predecessors_successors_and_self_never_padding():
    graph = ArchGraph(ops=[0, 1, 2, 4], adjacency=[[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]],
                      op_vocab=VOCAB)
    neighbours = NARFormerV2Predictor().featurize([graph, chain([0, 4])])["neighbours"].numpy()
    np.testing.assert_array_equal(neighbours[0], [[1, 1, 1, 0], [1, 1, 0, 1], [1, 0, 1, 1], [0, 1, 1, 1]])
    np.testing.assert_array_equal(neighbours[1], [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])


def test_degrees_and_neighbours_count_only_edges_between_real_nodes():
    """Node 2 is a padding node of the space's own (NB101-style mask): its edges count nowhere."""
    graph = ArchGraph(ops=[0, 1, 2, 4], adjacency=[[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]],
                      op_vocab=VOCAB, node_attrs={"mask": np.array([1, 1, 0, 1])})
    inputs = NARFormerV2Predictor().featurize([graph, chain([0, 4], node_attrs={"mask": np.ones(2)})])
    np.testing.assert_array_equal(inputs["degree"][0].numpy(), [[0, 2], [1, 1], [0, 0], [2, 0]])  # (in, out)
    np.testing.assert_array_equal(inputs["degree"][1].numpy(), [[0, 1], [1, 0], [0, 0], [0, 0]])
    np.testing.assert_array_equal(inputs["neighbours"][0].numpy(),
                                  [[1, 1, 0, 1], [1, 1, 0, 1], [0, 0, 0, 0], [1, 1, 0, 1]])


# ------------------------------------------------------------------------------------------ attention


def test_attention_follows_equations_one_to_three_with_root_term():
    torch.manual_seed(0)
    layer = GraphAidedAttention(6, 4, dropout=0.0, use_degree=False).eval()
    inputs = NARFormerV2Predictor().featurize([chain([0, 1, 2, 4])])
    h = torch.randn(1, 4, 6)
    out = layer(h, inputs["neighbours"], inputs["degree"])[0].double().detach().numpy()
    w = layer.weight.double().detach().numpy()
    w_q, w_a, w_r = w[:4], w[4:8], w[8:]  # W_q, W_a, W_r stacked
    b_q, b_a = layer.query_bias.double().detach().numpy(), layer.aggregate_bias.double().detach().numpy()
    hn, a = h[0].double().numpy(), inputs["neighbours"][0].double().numpy()
    x = 1 / (1 + np.exp(-(hn @ w_q.T + b_q)))  # (1)
    s = x @ x.T / math.sqrt(4) * a  # (2)
    z = w_a @ ((s / (s.sum(1, keepdims=True) + 1e-6)) @ hn).T  # (3), then the bias and the root term
    z = z.T + b_a + hn @ w_r.T
    np.testing.assert_allclose(out, np.maximum(z / np.linalg.norm(z, axis=1, keepdims=True), 0), atol=1e-6)


def test_attention_only_sees_neighbours():
    torch.manual_seed(0)
    layer = GraphAidedAttention(128, 16, dropout=0.05, use_degree=True).eval()
    inputs = NARFormerV2Predictor().featurize([chain([0, 1, 2, 3, 4]), chain([0, 4])])
    nodes = inputs["nodes"]
    base = layer(nodes, inputs["neighbours"], inputs["degree"])

    def node_two_after_perturbing(node: int) -> torch.Tensor:
        perturbed = nodes.clone()
        perturbed[0, node] += torch.randn(128)
        return layer(perturbed, inputs["neighbours"], inputs["degree"])[0, 2]

    for far in (0, 4):  # two hops away: not a neighbour of node 2
        assert torch.equal(node_two_after_perturbing(far), base[0, 2])
    for near in (1, 3):  # its predecessor and its successor
        assert not torch.allclose(node_two_after_perturbing(near), base[0, 2])
    padded = nodes.clone()
    padded[1, 2:] += 5.0  # padding nodes of the short graph
    assert torch.equal(layer(padded, inputs["neighbours"], inputs["degree"])[1, :2], base[1, :2])


def test_sequence_ranking_loss_on_a_hand_example():
    scores, targets = torch.tensor([1.0, 2.0, 4.0]), torch.tensor([0.0, 3.0, 3.0])
    # s - s[pi] = [-1, -2, 3]; y - y[pi] = [-3, 0, 3]; |gaps| = [2, 2, 0]
    assert sequence_ranking_loss(scores, targets, torch.tensor([1, 2, 0])).item() == pytest.approx(4 / 3)


def test_network_shape_and_weight_decay_only_on_matrices():
    network = NARFormerV2Network(128, 0, dim=32, blocks=3, groups=4, ffn_ratio=4, dropout=0.05, use_degree=True)
    assert network.fusion[0].in_features == 96 and network.fusion[2].out_features == 3
    decay, _ = parameter_groups(network, 0.01)
    names = {id(p): n for n, p in network.named_parameters()}
    decayed = [names[id(p)] for p in decay["params"]]
    assert not [n for n in decayed if "norm" in n or "bias" in n or "layer_scale" in n]
    assert network.blocks[0].layer_scale.detach()[0].item() == pytest.approx(1e-4)


def test_constructor_validates_parameters():
    with pytest.raises(ValueError, match="divisible by groups"):
        NARFormerV2Predictor(dim=30, groups=8)
    with pytest.raises(ValueError, match="dropout"):
        NARFormerV2Predictor(dropout=1.0)
    with pytest.raises(ValueError, match="sr_weight"):
        NARFormerV2Predictor(sr_weight=-0.1)
    with pytest.raises(ValueError, match=">= 1"):
        NARFormerV2Predictor(blocks=0)
    with pytest.raises(ValueError, match="ema_decay"):
        NARFormerV2Predictor(ema_decay=1.5)


# ------------------------------------------------------------------------------------------ fitting


@pytest.mark.slow
def test_learns_a_known_function_of_cell_graphs(cells):
    assert_learns(NARFormerV2Predictor(seed=0, epochs=25, **SMALL), cells)


def test_same_seed_same_predictions_other_seed_differs(cells):
    train_graphs, train_y, test_graphs, _ = cells
    make = lambda seed: NARFormerV2Predictor(seed=seed, epochs=2, **{**SMALL, "ema_decay": 0.9})  # noqa: E731
    a = make(3).fit(train_graphs[:64], train_y[:64]).predict(test_graphs[:50])
    b = make(3).fit(train_graphs[:64], train_y[:64]).predict(test_graphs[:50])
    c = make(4).fit(train_graphs[:64], train_y[:64]).predict(test_graphs[:50])
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.slow
def test_latency_mode_fits_whole_network_graphs():
    rng = np.random.default_rng(1)
    graphs, y = zip(*(layer_graph(rng) for _ in range(240)))
    y = np.array(y)
    predictor = NARFormerV2Predictor(seed=0, epochs=25, **SMALL).fit(graphs[:160], y[:160])
    predictions = predictor.predict(graphs[160:])
    assert predictor.latency and np.all(np.isfinite(predictions))
    assert np.median(predictions) > 0 and kendalltau(predictions, y[160:]).statistic > 0.75
    with pytest.raises(ValueError, match="fitted on latency"):
        predictor.predict([chain([0, 4])])


def test_registered_for_configs():
    from nassearch.registry import PREDICTORS

    assert PREDICTORS.get("narformer_v2") is NARFormerV2Predictor
