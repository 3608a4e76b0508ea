"""NAR-Former: tokenizer values on hand-worked graphs, augmentation, losses, and learning a known function."""

import math

import numpy as np
import pytest
import torch

from nassearch import config as cfg
from nassearch.errors import ConfigError
from nassearch.graph import LAYER_ATTRIBUTES, STATIC_PROPERTIES, ArchGraph
from nassearch.predictors.narformer import (
    NARFormerNetwork, NARFormerPredictor, consistent_augmentation, real_number_encoding_torch, sequence_ranking_loss,
    tokenize, tokenize_mobilenet, topological_renumbering)
from nassearch.predictors.tokenizer import real_number_encoding
from nassearch.spaces.nasbench201 import NasBench201Space
from nassearch.spaces.ofa_mbv3 import OFAArch, OFAMobileNetV3Space, active_blocks
from tests.test_predictors import VOCAB, assert_learns, random_dag, synthetic_cells

SMALL = dict(dim=32, heads=4, hidden=64, depths=(1, 1, 1, 1), batch_size=32, lr=2e-3, device="cpu")


def code(p: float, length: int) -> list[float]:
    """The documented formula, written out independently: L = length/2 frequencies linspace(1, 2^(L-1), L)."""
    half = length // 2
    freqs = [1.0 + k * (2.0 ** (half - 1) - 1.0) / (half - 1) for k in range(half)] if half > 1 else [1.0]
    return [f(math.pi * freq * p) for freq in freqs for f in (math.sin, math.cos)]


def three_node_graph(**kwargs) -> ArchGraph:
    # input(0) -> conv(1) -> output(2), plus the skip input -> output
    return ArchGraph(ops=[0, 1, 4], adjacency=[[0, 1, 1], [0, 0, 1], [0, 0, 0]], op_vocab=VOCAB, **kwargs)


def test_real_number_encoding_matches_the_formula_and_zero_pads_nan():
    np.testing.assert_allclose(real_number_encoding(3.0, 8), code(3.0, 8), atol=1e-6)
    np.testing.assert_allclose(real_number_encoding(-1.0, 64), code(-1.0, 64), atol=1e-5)
    assert not real_number_encoding(np.nan, 10).any()
    with pytest.raises(ValueError, match="even"):
        real_number_encoding(1.0, 7)


def test_cell_tokens_of_a_hand_worked_three_node_graph():
    out = tokenize([three_node_graph()])
    tokens = out["tokens"][0]
    assert tokens.shape == (3, 192) and out["depth"].tolist() == [3.0]
    for node, op in enumerate([0, 1, 4]):
        np.testing.assert_allclose(tokens[node, :64], code(op, 64), atol=1e-5)
        np.testing.assert_allclose(tokens[node, 64:128], code(node, 64), atol=1e-5)
    np.testing.assert_allclose(tokens[0, 128:], code(-1, 64), atol=1e-5)  # the input has no source
    np.testing.assert_allclose(tokens[1, 128:], code(0, 64), atol=1e-5)
    np.testing.assert_allclose(tokens[2, 128:], np.add(code(0, 64), code(1, 64)), atol=1e-5)  # sum of sources


def test_whole_network_tokens_are_480_per_node_with_zero_padding():
    layer = np.full((3, 12), np.nan)
    layer[1, :8] = [3, 1, 1, 1, 1, 0, np.nan, np.nan]  # a conv: no perm, no output padding
    layer[:, 8:] = [[1, 3, 32, 32], [1, 16, 32, 32], [1, 10, np.nan, np.nan]]
    graph = three_node_graph(node_attrs={"layer": layer},
                             graph_attrs={"batch_size": 1, "flops": 12.5, "params": 0.3, "memory_access": 2.0})
    out = tokenize([graph])
    tokens = out["tokens"][0]
    assert len(LAYER_ATTRIBUTES) == 12 and tokens.shape == (3, 15 * 32)
    np.testing.assert_allclose(tokens[1, :32], code(1, 32), atol=1e-5)
    kernel = tokens[1, 96:128]
    np.testing.assert_allclose(kernel, code(math.log2(4.0) / 32, 32), atol=1e-5)  # log2(1 + 3) / 32
    assert not tokens[1, 96 + 6 * 32: 96 + 8 * 32].any()  # perm and output padding absent -> zeros
    assert not tokens[0, 96: 96 + 8 * 32].any()  # the input node has no attributes
    assert not tokens[2, -64:].any()  # a 2-d output has no height or width
    np.testing.assert_allclose(tokens[2, 96 + 9 * 32: 96 + 10 * 32], code(math.log2(11.0) / 32, 32), atol=1e-5)
    assert out["static"].shape == (1, len(STATIC_PROPERTIES))
    np.testing.assert_allclose(out["static"][0], np.log2(1 + np.array([1, 12.5, 0.3, 2.0])) / 32, rtol=1e-6)


def test_augmentation_renumbers_nodes_in_another_topological_order():
    rng = np.random.default_rng(0)
    graph = random_dag(rng, 7)
    graph = ArchGraph(ops=graph.ops, adjacency=np.triu(np.ones((7, 7), np.uint8), 1) * 0 + graph.adjacency,
                      op_vocab=VOCAB)
    orders = {tuple(topological_renumbering(graph.adjacency, np.random.default_rng(s))) for s in range(30)}
    for order in orders:
        position = np.argsort(order)
        rows, cols = np.nonzero(graph.adjacency)
        assert np.all(position[rows] < position[cols])  # every edge still points forward
    wide = ArchGraph(ops=[0, 1, 2, 3, 4], adjacency=[[0, 1, 1, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1],
                                                       [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]], op_vocab=VOCAB)
    augmented = {tuple(consistent_augmentation(wide, np.random.default_rng(s)).ops) for s in range(30)}
    assert len(augmented) == 6  # the three parallel branches in any order
    for ops in augmented:
        assert ops[0] == 0 and ops[-1] == 4 and sorted(ops[1:4]) == [1, 2, 3]


def test_augmentation_keeps_padding_nodes_last():
    padded = ArchGraph(ops=[0, 1, 2, 4, 3], adjacency=[[0, 1, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 1, 0],
                                                         [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]], op_vocab=VOCAB,
                       node_attrs={"mask": np.array([1, 1, 1, 1, 0])})
    for seed in range(10):
        augmented = consistent_augmentation(padded, np.random.default_rng(seed))
        assert augmented.ops[-1] == 3 and augmented.node_attrs["mask"].tolist() == [1, 1, 1, 1, 0]


def test_sequence_ranking_loss_is_zero_for_shifted_predictions():
    targets = torch.randn(16)
    assert sequence_ranking_loss(targets + 3.0, targets).item() == pytest.approx(0.0, abs=1e-6)
    assert sequence_ranking_loss(-targets, targets).item() > 0


def test_padding_nodes_do_not_change_the_prediction():
    torch.manual_seed(0)
    network = NARFormerNetwork(192, 32, 4, 64, (2, 1, 1, 1), 0.0).eval()
    graph = three_node_graph()
    base = {k: torch.from_numpy(v) for k, v in tokenize([graph]).items()}
    padded = {k: torch.from_numpy(v) for k, v in tokenize([graph], max_nodes=6).items()}
    padded["tokens"][0, 3:] = torch.randn(3, 192)  # garbage in masked positions
    torch.testing.assert_close(network(**base), network(**padded), rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def synthetic():
    return synthetic_cells(200, 400)


@pytest.mark.slow
def test_narformer_learns_a_known_function_of_the_graph(synthetic):
    assert_learns(NARFormerPredictor(seed=0, epochs=25, **SMALL), synthetic)


@pytest.mark.slow
def test_same_seed_same_predictions(synthetic):
    train_graphs, train_y, test_graphs, _ = synthetic
    a = NARFormerPredictor(seed=1, epochs=2, **SMALL).fit(train_graphs, train_y).predict(test_graphs[:50])
    b = NARFormerPredictor(seed=1, epochs=2, **SMALL).fit(train_graphs, train_y).predict(test_graphs[:50])
    np.testing.assert_array_equal(a, b)


def test_latency_mode_reads_the_static_properties():
    rng = np.random.default_rng(0)
    graphs, y = [], []
    for _ in range(40):
        base = random_dag(rng, 5)
        layer = rng.integers(1, 64, (5, 12)).astype(float)
        static = dict(zip(STATIC_PROPERTIES, rng.uniform(1, 100, 4)))
        graphs.append(ArchGraph(ops=base.ops, adjacency=base.adjacency, op_vocab=VOCAB, node_attrs={"layer": layer},
                                graph_attrs=static))
        y.append(static["flops"] * 0.1 + 1.0)
    predictor = NARFormerPredictor(seed=0, epochs=3, **SMALL).fit(graphs, np.array(y))
    assert predictor.network.head[0].in_features == 32 + 4
    assert predictor.predict(graphs).shape == (40,)


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="divisible"):
        NARFormerPredictor(dim=50, heads=4)
    with pytest.raises(ValueError, match="depths"):
        NARFormerPredictor(depths=(2, 1, 1, 1, 1))


# The MobileNet tokenizer (000 §2.4) on OFA MobileNetV3 graphs.

KS = (3, 5, 7, 3, 5, 7, 5, 3, 7, 7, 3, 5, 5, 7, 3, 3, 7, 5, 3, 5)
ES = (3, 4, 6, 6, 4, 3, 3, 6, 4, 4, 6, 3, 6, 3, 4, 4, 3, 6, 6, 4)


def test_default_tokenizer_output_is_unchanged():
    # values recorded from tokenize() before the mobilenet option existed
    space = NasBench201Space()
    graph = space.encode(space.from_str(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"))
    out = NARFormerPredictor(device="cpu").featurize([graph])
    tokens = out["tokens"].double().numpy()
    assert tokens.shape == (1, 8, 192) and out["depth"].tolist() == [8.0] and out["mask"].sum() == 8
    assert tokens.sum() == pytest.approx(105.22125590852579, rel=1e-6)
    assert (tokens * np.arange(tokens.size).reshape(tokens.shape)).sum() == pytest.approx(5981.549072032434, rel=1e-6)
    assert np.abs(tokens).sum() == pytest.approx(957.6396804023324, rel=1e-6)


def test_mobilenet_tokens_of_known_ofa_architectures():
    space = OFAMobileNetV3Space()
    deep, shallow = OFAArch(KS, ES, (2, 3, 4, 2, 3), 192), OFAArch(KS, ES, (2, 2, 2, 2, 2), 160)
    out = NARFormerPredictor(tokenizer="mobilenet", device="cpu").featurize([space.encode(deep), space.encode(shallow)])
    tokens = out["tokens"].numpy()
    assert tokens.shape == (2, 14, 192)
    assert out["mask"].sum(dim=1).tolist() == [14.0, 10.0] and out["mask"][1, 10:].sum() == 0
    assert out["depth"].tolist() == [192.0, 160.0]
    for row, arch in enumerate((deep, shallow)):
        for position, slot in enumerate(active_blocks(arch), start=1):
            token = tokens[row, position - 1]
            np.testing.assert_array_equal(token[:64], real_number_encoding(arch.ks[slot], 64))
            np.testing.assert_array_equal(token[64:128], real_number_encoding(arch.e[slot], 64))
            np.testing.assert_array_equal(token[128:], real_number_encoding(position, 64))
    assert not tokens[1, 10:].any()


def test_mobilenet_resolution_changes_only_the_graph_token():
    space = OFAMobileNetV3Space()
    low, high = (space.encode(OFAArch(KS, ES, (4, 3, 2, 4, 3), r)) for r in (160, 224))
    a, b = tokenize_mobilenet([low]), tokenize_mobilenet([high])
    np.testing.assert_array_equal(a["tokens"], b["tokens"])
    np.testing.assert_array_equal(a["mask"], b["mask"])
    torch.manual_seed(0)
    network = NARFormerNetwork(192, 32, 2, 64, (1, 1), 0.0).eval()
    depth = torch.tensor([160.0, 224.0])
    graph_tokens = torch.relu(network.depth_map(real_number_encoding_torch(depth, 192)))
    assert not torch.allclose(graph_tokens[0], graph_tokens[1])
    both = {k: torch.from_numpy(v) for k, v in tokenize_mobilenet([low, high]).items()}
    scores = network(**both)
    assert scores[0] != scores[1]


def test_mobilenet_tokenizer_names_missing_attributes():
    with pytest.raises(ValueError, match=r"node attribute 'kernel'.*graph attribute 'resolution'.*ofa_mbv3"):
        tokenize_mobilenet([three_node_graph()])
    predictor = NARFormerPredictor(tokenizer="mobilenet", epochs=1, device="cpu")
    with pytest.raises(ValueError, match="tokenizer 'mobilenet' needs graph attribute 'resolution'"):
        predictor.fit([three_node_graph(node_attrs={"kernel": np.ones(3), "expansion": np.ones(3)})] * 2,
                      np.array([0.0, 1.0]))


def test_tokenizer_option_is_checked_in_python_and_in_configs():
    with pytest.raises(ValueError, match="tokenizer must be one of graph, mobilenet, got 'ofa'"):
        NARFormerPredictor(tokenizer="ofa")
    spec = cfg.resolve_component("predictor", {"name": "narformer", "tokenizer": "mobilenet"})
    assert spec["tokenizer"] == "mobilenet"
    assert cfg.resolve_component("predictor", {"name": "narformer"})["tokenizer"] == "graph"
    with pytest.raises(ConfigError, match="predictor.tokenizer: 'ofa' is not allowed; allowed values: graph, mobilenet"):
        cfg.resolve_component("predictor", {"name": "narformer", "tokenizer": "ofa"})


def test_augmentation_leaves_the_mobilenet_tokens_of_an_ofa_chain_alone():
    space = OFAMobileNetV3Space()
    graph = space.encode(space.sample(np.random.default_rng(3)))
    original = tokenize_mobilenet([graph])
    for seed in range(5):
        augmented = consistent_augmentation(graph, np.random.default_rng(seed))  # moves only the padding
        for key, value in tokenize_mobilenet([augmented]).items():
            np.testing.assert_array_equal(value, original[key])


def test_mobilenet_fit_predict_is_deterministic():
    space, rng = OFAMobileNetV3Space(), np.random.default_rng(0)
    graphs = [space.encode(space.sample(rng)) for _ in range(40)]
    y = rng.normal(size=40)
    settings = dict(tokenizer="mobilenet", epochs=3, dim=32, heads=2, hidden=64, depths=(1, 1), batch_size=16,
                    device="cpu")
    first = NARFormerPredictor(seed=0, **settings)
    assert not any(k.startswith("augmented_") for k in first.featurize_train(graphs))  # one view of a chain
    a = first.fit(graphs, y).predict(graphs)
    b = NARFormerPredictor(seed=0, **settings).fit(graphs, y).predict(graphs)
    assert a.shape == (40,) and np.isfinite(a).all() and np.ptp(a) > 0
    np.testing.assert_array_equal(a, b)
