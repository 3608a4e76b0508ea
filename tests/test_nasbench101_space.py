"""NAS-Bench-101 space: validity and pruning, official fingerprints, strings, sampling, mutation,
encoding, the network builder and the tabular evaluator."""

import numpy as np
import pytest
import torch

from nassearch.evaluators.tabular import NasBench101Tabular
from nassearch.errors import DataError, InvalidArchitecture
from nassearch.model_cost import count_params
from nassearch.data.nb101_table import load_nb101_table
from nassearch.spaces.nasbench101 import (EDGE_MUTATION_PROB, OP_MUTATION_PROB, NasBench101Space, degree_profile,
                                          propose_mutation, vertex_channels)
from nassearch.spaces.nasbench101_cell import (CONV1X1, CONV3X3, INPUT, MAXPOOL3X3, OUTPUT, NB101Cell, cell_from_table,
                                               check_cell)

SPACE = NasBench101Space()


def cell(matrix, ops):
    return NB101Cell.from_arrays(np.array(matrix), ops)


CHAIN3 = cell([[0, 1, 0], [0, 0, 1], [0, 0, 0]], [INPUT, CONV3X3, OUTPUT])


@pytest.fixture(scope="module")
def nb101_table(data_dir):
    return load_nb101_table(data_dir)


@pytest.mark.slow
def test_every_stored_hash_is_reproduced(nb101_table):
    cells = [cell_from_table(a, o) for a, o in zip(nb101_table["adjacency"], nb101_table["ops"])]
    keys = [SPACE.key(c) for c in cells]
    assert len(keys) == 11_000
    assert keys == list(nb101_table["hash"])


def random_topological_order(matrix, rng):
    """A random linear extension of the DAG (input stays first, output last)."""
    remaining, order = set(range(len(matrix))), []
    while remaining:
        ready = [v for v in sorted(remaining) if not any(matrix[u, v] for u in remaining if u != v)]
        order.append(ready[int(rng.integers(len(ready)))])
        remaining.remove(order[-1])
    return order


def test_fingerprint_is_invariant_to_vertex_permutation(nb101_table):
    rng = np.random.default_rng(5)
    changed = 0
    for adjacency, ops, stored in list(zip(nb101_table["adjacency"], nb101_table["ops"], nb101_table["hash"]))[:100]:
        original = cell_from_table(adjacency, ops)
        order = random_topological_order(original.array(), rng)
        permuted = cell(original.array()[np.ix_(order, order)], [original.ops[i] for i in order])
        changed += permuted != original
        assert SPACE.key(permuted) == stored
        assert degree_profile(*check_cell(permuted)) == degree_profile(*check_cell(original))
    assert changed > 20


def test_pruning_drops_vertices_off_the_input_output_path():
    # vertex 2 has no outgoing edge and vertex 3 no incoming one: both are pruned
    c = cell([[0, 1, 1, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]],
             [INPUT, CONV3X3, MAXPOOL3X3, CONV1X1, OUTPUT])
    pruned = SPACE.canonical(c)
    assert pruned == cell([[0, 1, 0], [0, 0, 1], [0, 0, 0]], [INPUT, CONV3X3, OUTPUT])
    assert SPACE.key(c) == SPACE.key(pruned) == SPACE.key(CHAIN3)


@pytest.mark.parametrize("bad, message", [
    (cell(np.triu(np.ones((8, 8), dtype=int), 1) * np.eye(8, k=1, dtype=int), [INPUT] + [CONV3X3] * 6 + [OUTPUT]),
     "has 8 vertices on input->output paths; at most 7"),
    (cell(np.triu(np.ones((7, 7), dtype=int), 1) * (np.eye(7, k=1, dtype=int) + np.eye(7, k=2, dtype=int)
                                                     + np.eye(7, k=6, dtype=int)),
          [INPUT] + [CONV3X3] * 5 + [OUTPUT]), "12 edges; at most 9"),
    (cell([[0, 1, 0], [0, 0, 0], [0, 0, 0]], [INPUT, CONV3X3, OUTPUT]), "no path from input to output"),
    (cell([[0, 1, 0], [0, 0, 1], [0, 0, 0]], [INPUT, "conv5x5", OUTPUT]), "unknown NAS-Bench-101 operation 'conv5x5'"),
    (cell([[0, 1, 0], [0, 0, 1], [0, 0, 0]], [CONV3X3, CONV3X3, OUTPUT]), "must start with 'input'"),
    (cell([[0, 1, 0], [1, 0, 1], [0, 0, 0]], [INPUT, CONV3X3, OUTPUT]), "strictly upper triangular"),
])
def test_invalid_cells_say_what_is_wrong(bad, message):
    with pytest.raises(InvalidArchitecture, match=message):
        SPACE.validate(bad)
    assert not SPACE.is_valid(bad)


def test_ten_edges_are_rejected():
    matrix = np.zeros((7, 7), dtype=int)
    edges = [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (1, 6), (2, 6), (3, 6), (4, 6), (5, 6)]
    for u, v in edges:
        matrix[u, v] = 1
    with pytest.raises(InvalidArchitecture, match="10 edges; at most 9"):
        SPACE.validate(cell(matrix, [INPUT] + [CONV3X3] * 5 + [OUTPUT]))


def test_strings_round_trip_and_malformed_strings_fail():
    rng = np.random.default_rng(0)
    for _ in range(50):
        c = SPACE.sample(rng)
        assert SPACE.from_str(SPACE.to_str(c)) == c
    assert SPACE.to_str(CHAIN3) == "010001000|input,conv3x3-bn-relu,output"
    for text, message in [("0100|input,output,x", "3 ops need 9 adjacency bits"),
                          ("010001000", "expected <V"), ("010001002|input,conv3x3-bn-relu,output", "0/1"),
                          ("010000000|input,conv3x3-bn-relu,output", "no path")]:
        with pytest.raises(InvalidArchitecture, match=message):
            SPACE.from_str(text)


def test_sampling_draws_valid_seven_vertex_matrices_like_nb101():
    rng = np.random.default_rng(1)
    cells = [SPACE.sample(rng) for _ in range(300)]
    assert all(SPACE.is_valid(c) and c.num_vertices == 7 for c in cells)
    assert len({SPACE.key(c) for c in cells}) > 150  # many draws prune to the same small cells
    ops = np.array([[CONV3X3, CONV1X1, MAXPOOL3X3].index(o) for c in cells for o in c.ops[1:-1]])
    assert np.all(np.bincount(ops, minlength=3) > 300)


@pytest.mark.slow
def test_mutation_proposal_rates_are_1_over_14_and_1_over_10():
    rng = np.random.default_rng(2)
    parent = cell(np.triu(np.ones((7, 7), dtype=int), 1) * np.eye(7, k=1, dtype=int), [INPUT] + [CONV3X3] * 5 + [OUTPUT])
    draws = [propose_mutation(parent, rng) for _ in range(20_000)]
    edge_flips = np.mean([np.sum(d.array() != parent.array()) for d in draws]) / 21
    op_changes = np.mean([sum(a != b for a, b in zip(d.ops, parent.ops)) for d in draws]) / 5
    assert edge_flips == pytest.approx(EDGE_MUTATION_PROB, rel=0.04)
    assert op_changes == pytest.approx(OP_MUTATION_PROB, rel=0.04)
    assert all(np.all(np.tril(d.array()) == 0) for d in draws[:500])


def test_mutate_returns_a_valid_cell_with_another_fingerprint():
    rng = np.random.default_rng(3)
    c = SPACE.sample(rng)
    for _ in range(100):
        child = SPACE.mutate(c, rng)
        assert SPACE.is_valid(child) and SPACE.key(child) != SPACE.key(c)
        c = child


@pytest.mark.slow
def test_restricted_space_samples_and_mutates_inside_the_table(data_dir, nb101_table):
    space = NasBench101Space(restrict_to_table=True, data_dir=str(data_dir))
    hashes = set(nb101_table["hash"])
    rng = np.random.default_rng(4)
    cells = [space.sample(rng) for _ in range(50)]
    assert all(space.key(c) in hashes for c in cells)
    children = [space.mutate(c, rng) for c in cells[:10]]
    assert all(space.key(c) in hashes for c in children)
    assert space.size() == 11_000 and sum(1 for _ in space.enumerate()) == 11_000


@pytest.mark.slow
def test_restricted_mutation_is_rejection_sampling_of_table_children(data_dir, nb101_table):
    """The table filter (cached fingerprints, degree profiles before hashing) changes nothing: the children equal
    those of plain rejection sampling, draw for draw."""
    space = NasBench101Space(restrict_to_table=True, data_dir=str(data_dir))
    hashes = set(nb101_table["hash"])

    def reference(parent, rng):
        while True:
            child = propose_mutation(parent, rng)
            if SPACE.is_valid(child) and SPACE.key(child) != SPACE.key(parent) and SPACE.key(child) in hashes:
                return child

    parents = [space.sample(np.random.default_rng(6)) for _ in range(5)]
    fast, slow = np.random.default_rng(7), np.random.default_rng(7)
    for parent in parents:
        for _ in range(8):  # the same parent again: children from the caches
            assert space.mutate(parent, fast) == reference(parent, slow)


def test_key_of_an_invalid_cell_raises_every_time():
    broken = cell([[0, 0, 0], [0, 0, 1], [0, 0, 0]], [INPUT, CONV3X3, OUTPUT])
    for _ in range(2):  # the second answer comes from the fingerprint cache
        with pytest.raises(InvalidArchitecture, match="no path from input to output"):
            SPACE.key(broken)


def test_encode_pads_to_seven_nodes_with_output_last():
    graph = SPACE.encode(CHAIN3)
    assert graph.num_nodes == 7
    assert graph.op_names() == [INPUT, CONV3X3, "pad", "pad", "pad", "pad", OUTPUT]
    assert graph.adjacency[0, 1] == 1 and graph.adjacency[1, 6] == 1 and graph.adjacency.sum() == 2
    assert graph.node_attrs["mask"].tolist() == [1, 1, 0, 0, 0, 0, 1]


def test_vertex_channels_split_output_and_propagate_backwards():
    # 1 -> 2 -> out, 1 -> 3 -> out... vertices 2 and 3 feed the output: 9 channels split 5 + 4
    matrix = np.array([[0, 1, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]])
    assert vertex_channels(16, 9, matrix) == [16, 5, 5, 4, 9]
    assert vertex_channels(16, 9, np.array([[0, 1], [0, 0]])) == [16, 9]


def test_network_forward_and_input_output_projection():
    c = cell([[0, 1, 1], [0, 0, 1], [0, 0, 0]], [INPUT, MAXPOOL3X3, OUTPUT])
    model = SPACE.build_model(c, stem_channels=8, num_stacks=2, modules_per_stack=1)
    assert model(torch.zeros(2, 3, 16, 16)).shape == (2, 10)
    direct = cell([[0, 1], [0, 0]], [INPUT, OUTPUT])
    assert SPACE.build_model(direct, stem_channels=8)(torch.zeros(1, 3, 8, 8)).shape == (1, 10)


@pytest.mark.slow
def test_built_network_parameter_counts_match_the_tables(nb101_table):
    """Every 100th table cell (the full check over all 11,292 is `nassearch spaces verify nasbench101`)."""
    sample = nb101_table.iloc[::100]
    for adjacency, ops, official in zip(sample["adjacency"], sample["ops"], sample["trainable_params"]):
        with torch.device("meta"):
            model = SPACE.build_model(cell_from_table(adjacency, ops))
        assert count_params(model) == official


def test_tabular_evaluator_answers_table_cells_and_rejects_others(data_dir, nb101_table):
    evaluator = NasBench101Tabular(SPACE, data_dir=str(data_dir))
    first = nb101_table.iloc[0]
    result = evaluator.evaluate(cell_from_table(first["adjacency"], first["ops"]))
    assert result.metrics["val_acc"] == pytest.approx(100 * first["val_acc_epoch108"])
    assert result.metrics["val_acc_epoch4"] == pytest.approx(100 * first["val_acc_epoch4"])
    assert result.metrics["params"] == first["trainable_params"] / 1e6
    assert result.cost_s == first["train_time_s"] and "test_acc" not in result.metrics
    short = NasBench101Tabular(SPACE, data_dir=str(data_dir), epochs=12)
    assert short.evaluate(cell_from_table(first["adjacency"], first["ops"])).cost_s == pytest.approx(
        first["train_time_s"] * 12 / 108)
    assert len(evaluator.reference_values("val_acc")) == 11_000
    outside = next(c for c in (SPACE.sample(np.random.default_rng(i)) for i in range(100))
                   if SPACE.key(c) not in set(nb101_table["hash"]))
    with pytest.raises(DataError, match="is not in the tables.*restrict_to_table"):
        evaluator.evaluate(outside)
