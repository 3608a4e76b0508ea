"""The NAS-Bench-201 space: strings, enumeration, variation, encoding, network and cost model."""

import numpy as np
import pytest
import torch

from nassearch.errors import InvalidArchitecture
from nassearch.spaces.nasbench201 import (EDGES, GRAPH_VOCAB, NUM_EDGES, OPS, Cell, NasBench201Space, ResidualReduction,
                                arch_codes, format_arch, parse_arch)

#: Row 0 of nasbench201/nb201_12epoch.csv.gz (NB201 index 0).
INDEX0_STR = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
INDEX0_ARCH = (4, 2, 1, 2, 1, 1)

#: dataset of the 200-epoch subset -> (classes, input size) of its network
DATASETS = {"cifar10": (10, 32), "cifar100": (100, 32), "ImageNet16-120": (120, 16)}


# --------------------------------------------------------------------------------------- strings


def test_index0_string_parses_to_known_op_indices(nb201_space):
    assert parse_arch(INDEX0_STR) == INDEX0_ARCH
    assert format_arch(INDEX0_ARCH) == INDEX0_STR
    assert nb201_space.to_str(INDEX0_ARCH) == INDEX0_STR == nb201_space.key(INDEX0_ARCH)


def test_parse_format_round_trip_for_many_random_archs(nb201_space, random_archs):
    for arch in random_archs(500, seed=0):
        text = nb201_space.to_str(arch)
        assert nb201_space.from_str(text) == arch
        assert format_arch(parse_arch(text)) == text
        assert all(isinstance(op, int) for op in parse_arch(text))


def test_surrounding_whitespace_is_ignored():
    assert parse_arch(f"  {INDEX0_STR}\n") == INDEX0_ARCH


VALID_NODE1 = "|none~0|"
VALID_NODE2 = "|none~0|skip_connect~1|"
VALID_NODE3 = "|none~0|skip_connect~1|nor_conv_3x3~2|"


@pytest.mark.parametrize("text, problem", [
    (f"{VALID_NODE1}+{VALID_NODE2}", "found 2 node group(s) separated by '+', expected 3"),
    (f"{VALID_NODE1}+{VALID_NODE2}+{VALID_NODE3}+{VALID_NODE1}", "found 4 node group(s)"),
    ("", "the string is empty"),
    (f"|none~0|none~1|+{VALID_NODE2}+{VALID_NODE3}", "node 1 has 2 input edge(s), expected 1"),
    (f"{VALID_NODE1}+|none~0|+{VALID_NODE3}", "node 2 has 1 input edge(s), expected 2"),
    (f"{VALID_NODE1}+{VALID_NODE2}+|none~0|none~1|none~2|none~3|", "node 3 has 4 input edge(s), expected 3"),
    (f"|conv_3x3~0|+{VALID_NODE2}+{VALID_NODE3}", "unknown operation 'conv_3x3'"),
    (f"{VALID_NODE1}+{VALID_NODE2}+|none~0|max_pool_3x3~1|none~2|", "unknown operation 'max_pool_3x3'"),
    (f"|none~1|+{VALID_NODE2}+{VALID_NODE3}", "node 1 edge 0 names source 1, expected 0"),
    (f"{VALID_NODE1}+|none~0|none~0|+{VALID_NODE3}", "node 2 edge 1 names source 0, expected 1"),
    (f"{VALID_NODE1}+{VALID_NODE2}+|none~0|none~2|none~1|", "node 3 edge 1 names source 2, expected 1"),
    (f"none~0|+{VALID_NODE2}+{VALID_NODE3}", "node 1 group 'none~0|' must start and end with '|'"),
    (f"{VALID_NODE1}+|none~0|skip_connect~1+{VALID_NODE3}", "must start and end with '|'"),
    ("none~0+none~0|none~1+none~0|none~1|none~2", "must start and end with '|'"),
    (f"|none0|+{VALID_NODE2}+{VALID_NODE3}", "edge 'none0' is not of the form op~source"),
    (f"|none~|+{VALID_NODE2}+{VALID_NODE3}", "edge 'none~' is not of the form op~source"),
    (f"|NONE~0|+{VALID_NODE2}+{VALID_NODE3}", "is not of the form op~source"),
])
def test_malformed_strings_name_the_problem(text, problem):
    with pytest.raises(InvalidArchitecture) as info:
        parse_arch(text)
    message = str(info.value)
    assert problem in message
    assert "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|" in message
    assert "none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3" in message


@pytest.mark.parametrize("value, type_name", [(None, "NoneType"), (INDEX0_ARCH, "tuple"), (42, "int"),
                                              (INDEX0_STR.encode(), "bytes")])
def test_non_strings_are_rejected(value, type_name):
    with pytest.raises(InvalidArchitecture, match=f"expected a string, got {type_name}"):
        parse_arch(value)


def test_invalid_architecture_is_a_value_error():
    with pytest.raises(ValueError):
        parse_arch("nonsense")


@pytest.mark.parametrize("arch", [(0, 0, 0, 0, 0), (0,) * 7, (0, 0, 0, 0, 0, 5), (0, 0, 0, 0, 0, -1),
                                  [0] * 6, (0, 0, 0, 0, 0, "1"), (0.0,) * 6])
def test_invalid_op_tuples_are_rejected(nb201_space, arch):
    for method in (nb201_space.to_str, nb201_space.encode, nb201_space.build_model):
        with pytest.raises(InvalidArchitecture, match="tuple of 6 op indices in 0..4"):
            method(arch)


def test_numpy_integer_ops_are_accepted(nb201_space):
    arch = tuple(np.array(INDEX0_ARCH, dtype=np.int64))
    assert nb201_space.to_str(arch) == INDEX0_STR


# --------------------------------------------------------------------------------------- enumeration


def test_enumerate_yields_every_arch_once(nb201_space):
    archs = list(nb201_space.enumerate())
    assert len(archs) == 15625 == len(set(archs)) == nb201_space.size()
    assert all(len(a) == NUM_EDGES and all(0 <= op < len(OPS) for op in a) for a in archs)
    assert len({nb201_space.to_str(a) for a in archs}) == 15625


def test_arch_codes_are_a_dense_id(nb201_space):
    codes = arch_codes(list(nb201_space.enumerate()))
    np.testing.assert_array_equal(np.sort(codes), np.arange(15625))
    assert arch_codes([(1, 0, 0, 0, 0, 0)])[0] == 1 and arch_codes([(0, 0, 0, 0, 0, 1)])[0] == 5 ** 5


def test_enumeration_matches_the_benchmark_table(nb201_space, nb201_table):
    enumerated = {nb201_space.to_str(a) for a in nb201_space.enumerate()}
    assert len(nb201_table) == 15625
    assert set(nb201_table["arch_str"]) == enumerated


def test_table_row0_is_index0_and_the_evaluator_agrees(nb201_table, nb201_evaluator):
    assert nb201_table["index"].iloc[0] == 0
    assert nb201_table["arch_str"].iloc[0] == INDEX0_STR
    assert nb201_evaluator.index_of(parse_arch(INDEX0_STR)) == 0


# --------------------------------------------------------------------------------------- sampling and variation


def test_sample_gives_python_int_tuples_covering_all_ops(nb201_space):
    rng = np.random.default_rng(1)
    archs = [nb201_space.sample(rng) for _ in range(300)]
    assert all(isinstance(a, tuple) and len(a) == NUM_EDGES and all(type(op) is int for op in a) for a in archs)
    for edge in range(NUM_EDGES):
        assert {a[edge] for a in archs} == set(range(len(OPS)))
    batch = nb201_space.sample_batch(np.random.default_rng(1), 7)
    assert batch.shape == (7, NUM_EDGES) and batch.min() >= 0 and batch.max() < len(OPS)


def test_sampling_is_deterministic_per_seed(nb201_space):
    draw = lambda seed: [nb201_space.sample(np.random.default_rng(seed)) for _ in range(5)]  # noqa: E731
    assert draw(3) == draw(3)


def test_mutate_changes_exactly_one_edge_to_a_different_op(nb201_space, hamming, random_archs):
    rng = np.random.default_rng(2)
    for parent in random_archs(50, seed=3) + [(0,) * 6, (4,) * 6]:
        for _ in range(40):
            child = nb201_space.mutate(parent, rng)
            assert hamming(parent, child) == 1
            nb201_space.validate(child)
            assert all(type(op) is int for op in child)


def test_every_single_edge_change_is_reachable_by_mutation(nb201_space):
    rng = np.random.default_rng(4)
    parent = (0, 1, 2, 3, 4, 2)
    counts: dict[tuple[int, int], int] = {}
    draws = 2400
    for _ in range(draws):
        child = nb201_space.mutate(parent, rng)
        (edge,) = [i for i in range(NUM_EDGES) if child[i] != parent[i]]
        counts[(edge, child[edge])] = counts.get((edge, child[edge]), 0) + 1
    expected = {(e, op) for e in range(NUM_EDGES) for op in range(len(OPS)) if op != parent[e]}
    assert set(counts) == expected  # 6 edges x 4 other ops, every one reached
    assert min(counts.values()) > 0.5 * draws / len(expected)  # and roughly uniformly


def test_crossover_takes_each_edge_from_a_parent(nb201_space, random_archs):
    rng = np.random.default_rng(5)
    a, b = (0, 0, 0, 0, 0, 0), (3, 3, 3, 3, 3, 3)
    taken_from_a = np.zeros(NUM_EDGES, dtype=int)
    for _ in range(200):
        child = nb201_space.crossover(a, b, rng)
        assert len(child) == NUM_EDGES and all(c in (x, y) for c, x, y in zip(child, a, b))
        assert all(type(op) is int for op in child)
        taken_from_a += np.array(child) == 0
    assert np.all((taken_from_a > 50) & (taken_from_a < 150))  # both parents contribute on every edge
    for x, y in zip(random_archs(20, seed=6), random_archs(20, seed=7)):
        child = nb201_space.crossover(x, y, rng)
        assert all(c in (p, q) for c, p, q in zip(child, x, y))
    assert nb201_space.crossover(INDEX0_ARCH, INDEX0_ARCH, rng) == INDEX0_ARCH


# --------------------------------------------------------------------------------------- encoding

#: Hand-derived op-on-node graph: 0 input, 1..6 the edges in EDGES order, 7 output.
#: nodes: 1=(0,1) 2=(0,2) 3=(1,2) 4=(0,3) 5=(1,3) 6=(2,3)
EXPECTED_LINKS = {
    (0, 1), (0, 2), (0, 4),   # input feeds the edges leaving cell node 0
    (1, 3), (1, 5),           # edge (0,1) feeds the edges leaving cell node 1: (1,2) and (1,3)
    (2, 6), (3, 6),           # edges into cell node 2, (0,2) and (1,2), feed edge (2,3)
    (4, 7), (5, 7), (6, 7),   # edges into cell node 3 feed the output
}


def test_encode_has_input_edge_nodes_and_output(nb201_space):
    graph = nb201_space.encode(INDEX0_ARCH)
    assert graph.num_nodes == 8 and graph.op_vocab == GRAPH_VOCAB
    assert graph.op_names() == ["input", "avg_pool_3x3", "nor_conv_1x1", "skip_connect", "nor_conv_1x1",
                                "skip_connect", "skip_connect", "output"]
    np.testing.assert_array_equal(graph.ops, [0, 5, 3, 2, 3, 2, 2, 6])


def test_encode_adjacency_matches_the_cell_wiring(nb201_space):
    adjacency = nb201_space.encode(INDEX0_ARCH).adjacency
    assert adjacency.shape == (8, 8) and not np.any(np.tril(adjacency))
    links = {(int(i), int(j)) for i, j in zip(*np.nonzero(adjacency))}
    assert links == EXPECTED_LINKS
    # a few edges spelled out
    assert adjacency[0, EDGES.index((0, 1)) + 1] == 1 and adjacency[0, EDGES.index((1, 2)) + 1] == 0
    assert adjacency[EDGES.index((0, 1)) + 1, EDGES.index((1, 2)) + 1] == 1
    assert all(adjacency[EDGES.index(e) + 1, 7] == 1 for e in [(0, 3), (1, 3), (2, 3)])
    assert adjacency[EDGES.index((1, 2)) + 1, 7] == 0


def test_encode_adjacency_is_the_same_for_every_arch_and_not_shared(nb201_space):
    a, b = nb201_space.encode((0,) * 6), nb201_space.encode((4,) * 6)
    np.testing.assert_array_equal(a.adjacency, b.adjacency)
    a.adjacency[0, 7] = 1
    assert nb201_space.encode((0,) * 6).adjacency[0, 7] == 0


# --------------------------------------------------------------------------------------- network and costs


def test_network_forward_gives_class_logits(nb201_space):
    torch.manual_seed(0)
    model = nb201_space.build_model(INDEX0_ARCH)
    assert sum(isinstance(m, Cell) for m in model.modules()) == 15
    assert sum(isinstance(m, ResidualReduction) for m in model.modules()) == 2
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_network_num_classes_and_input_size():
    space = NasBench201Space(num_classes=120, input_size=16)
    with torch.no_grad():
        assert space.build_model(INDEX0_ARCH)(torch.zeros(2, 3, 16, 16)).shape == (2, 120)
        assert space.build_model(INDEX0_ARCH, num_classes=7)(torch.zeros(1, 3, 16, 16)).shape == (1, 7)


@pytest.mark.parametrize("key", ["channels", "cells_per_stage", "num_classes", "input_size"])
def test_space_settings_must_be_positive(key):
    with pytest.raises(ValueError, match=f"{key} must be >= 1"):
        NasBench201Space(**{key: 0})


def test_cost_batch_equals_built_network_cost(nb201_space, random_archs):
    archs = random_archs(20, seed=8) + [(0,) * 6, (3,) * 6]
    params, flops = nb201_space.cost_batch(archs)
    assert params.shape == flops.shape == (len(archs),)
    for arch, p, f in zip(archs, params, flops):
        cost = nb201_space.cost(arch)
        assert p == pytest.approx(cost.params_m, rel=1e-12, abs=1e-12)
        assert f == pytest.approx(cost.flops_m, rel=1e-12, abs=1e-12)


def test_cost_batch_accepts_an_int_array(nb201_space):
    batch = nb201_space.sample_batch(np.random.default_rng(9), 5)
    np.testing.assert_allclose(nb201_space.cost_batch(batch), nb201_space.cost_batch([tuple(r) for r in batch]))


def test_cost_ordering_of_ops(nb201_space):
    params, flops = nb201_space.cost_batch([(op,) * 6 for op in range(len(OPS))])
    none, skip, conv1, conv3, pool = range(len(OPS))
    assert params[none] == params[skip] == params[pool] < params[conv1] < params[conv3]
    assert flops[none] == flops[skip] < flops[pool] < flops[conv1] < flops[conv3]


def test_cost_batch_rejects_archs_with_a_wrong_number_of_ops(nb201_space):
    with pytest.raises(InvalidArchitecture):
        nb201_space.cost_batch([(0, 0, 0), (1, 1, 1)])


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_cost_batch_matches_official_params_and_flops(dataset, nb201_200epoch_subset):
    rows = nb201_200epoch_subset[nb201_200epoch_subset["dataset"] == dataset]
    assert len(rows) == 783
    classes, size = DATASETS[dataset]
    space = NasBench201Space(num_classes=classes, input_size=size)
    params, flops = space.cost_batch([parse_arch(s) for s in rows["arch_str"]])
    rel_params = np.abs(params - rows["params_m"].to_numpy()) / rows["params_m"].to_numpy()
    rel_flops = np.abs(flops - rows["flops_m"].to_numpy()) / rows["flops_m"].to_numpy()
    print(f"\n{dataset}: worst relative error params {rel_params.max():.3g}, flops {rel_flops.max():.3g}")
    assert rel_params.max() < 0.005
    assert rel_flops.max() < 0.005
