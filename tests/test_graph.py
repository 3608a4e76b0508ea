"""ArchGraph: validation of its arrays and the per-node views predictors read."""

import numpy as np
import pytest

from nassearch.graph import ArchGraph

VOCAB = ("input", "conv", "pool", "output")


def chain(n: int) -> np.ndarray:
    """Adjacency of the path 0 -> 1 -> ... -> n-1 (strictly upper triangular)."""
    return np.eye(n, k=1, dtype=np.uint8)


def test_valid_graph_is_normalised_to_int64_ops_and_uint8_adjacency():
    graph = ArchGraph(ops=[0, 1, 2, 3], adjacency=chain(4).astype(bool), op_vocab=VOCAB)
    assert graph.ops.dtype == np.int64 and graph.adjacency.dtype == np.uint8
    assert graph.num_nodes == 4
    np.testing.assert_array_equal(graph.adjacency, chain(4))
    assert graph.cells is None


def test_cells_are_converted_to_int64():
    graph = ArchGraph(ops=[0, 3], adjacency=chain(2), op_vocab=VOCAB, cells=[0.0, 1.0])
    assert graph.cells.dtype == np.int64
    np.testing.assert_array_equal(graph.cells, [0, 1])


@pytest.mark.parametrize("adjacency", [np.zeros((3, 4)), np.zeros((4, 4)), np.zeros((3,))])
def test_adjacency_must_be_square_with_one_row_per_node(adjacency):
    with pytest.raises(ValueError, match=r"adjacency must be \(3, 3\)"):
        ArchGraph(ops=[0, 1, 3], adjacency=adjacency, op_vocab=VOCAB)


@pytest.mark.parametrize("entry", [(1, 0), (2, 0), (2, 1), (1, 1), (0, 0)])
def test_adjacency_entries_on_or_below_the_diagonal_are_rejected(entry):
    adjacency = chain(3)
    adjacency[entry] = 1
    with pytest.raises(ValueError, match="strictly upper triangular"):
        ArchGraph(ops=[0, 1, 3], adjacency=adjacency, op_vocab=VOCAB)


@pytest.mark.parametrize("ops", [[0, 1, 4], [-1, 1, 3], [0, 99, 3]])
def test_op_index_outside_the_vocabulary_is_rejected(ops):
    with pytest.raises(ValueError, match=r"must index op_vocab \(size 4\)"):
        ArchGraph(ops=ops, adjacency=chain(3), op_vocab=VOCAB)


def test_last_vocabulary_index_is_allowed():
    graph = ArchGraph(ops=[3, 3, 3], adjacency=chain(3), op_vocab=VOCAB)
    assert graph.op_names() == ["output"] * 3


def test_ops_must_be_one_dimensional():
    with pytest.raises(ValueError, match="must be 1-d"):
        ArchGraph(ops=[[0], [1]], adjacency=chain(2), op_vocab=VOCAB)


def test_scalar_ops_raise_value_error():
    with pytest.raises(ValueError, match="must be 1-d"):
        ArchGraph(ops=np.int64(0), adjacency=np.zeros((1, 1)), op_vocab=VOCAB)


def test_node_attribute_with_wrong_number_of_rows_is_rejected():
    with pytest.raises(ValueError, match=r"node attribute 'channels' has 2 rows for 3 nodes"):
        ArchGraph(ops=[0, 1, 3], adjacency=chain(3), op_vocab=VOCAB, node_attrs={"channels": np.ones((2, 5))})


def test_node_attributes_with_matching_rows_are_kept():
    attrs = {"channels": np.array([16, 32, 64]), "shape": np.zeros((3, 2))}
    graph = ArchGraph(ops=[0, 1, 3], adjacency=chain(3), op_vocab=VOCAB, node_attrs=attrs,
                      graph_attrs={"flops": 1.5})
    assert set(graph.node_attrs) == {"channels", "shape"} and graph.graph_attrs == {"flops": 1.5}


def test_one_hot_ops_has_a_single_one_per_node_at_its_op():
    graph = ArchGraph(ops=[0, 2, 2, 1, 3], adjacency=chain(5), op_vocab=VOCAB)
    one_hot = graph.one_hot_ops()
    assert one_hot.dtype == np.float32 and one_hot.shape == (5, 4)
    expected = np.array([[1, 0, 0, 0],
                         [0, 0, 1, 0],
                         [0, 0, 1, 0],
                         [0, 1, 0, 0],
                         [0, 0, 0, 1]], dtype=np.float32)
    np.testing.assert_array_equal(one_hot, expected)


def test_empty_graph_has_empty_views():
    graph = ArchGraph(ops=np.zeros(0, dtype=np.int64), adjacency=np.zeros((0, 0)), op_vocab=VOCAB)
    assert graph.num_nodes == 0 and graph.op_names() == []
    assert graph.one_hot_ops().shape == (0, 4)


def test_op_names_follow_node_order():
    graph = ArchGraph(ops=[0, 1, 2, 1, 3], adjacency=chain(5), op_vocab=VOCAB)
    assert graph.op_names() == ["input", "conv", "pool", "conv", "output"]
