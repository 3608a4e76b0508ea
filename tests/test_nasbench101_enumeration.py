"""NB101 enumeration on small vertex counts: the vectorised path against brute force, official fingerprints,
the compact form, the cache, and the shared table's small cells.

The full enumeration (7 vertices, about two minutes) is not run here: it checks its own counts
(1,293,208 labelled graphs, 423,624 cells) and raises on a mismatch.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from nassearch.errors import DataError
from nassearch.spaces.nasbench101_cell import HASH_LABEL, OPS, cell_from_table, check_cell, nb101_hash
from nassearch.spaces.nasbench101_enumeration import (
    Enumeration,
    build_enumeration,
    enumerate_cells,
    enumerate_vertex_count,
)

SMALL = 5  # largest vertex count enumerated in these tests


def brute_force_graphs(num_vertices: int) -> list[tuple[np.ndarray, tuple[int, ...]]]:
    """Every valid pruned labelled cell of V vertices, by plain loops: (matrix, HASH_LABEL labels)."""
    slots = [(x, y) for y in range(1, num_vertices) for x in range(y)]
    graphs = []
    for mask in range(1 << len(slots)):
        matrix = np.zeros((num_vertices, num_vertices), dtype=np.int64)
        for bit, (x, y) in enumerate(slots):
            matrix[x, y] = (mask >> bit) & 1
        if matrix.sum() > 9 or not matrix[:-1].any(axis=1).all() or not matrix[:, 1:].any(axis=0).all():
            continue
        for interior in itertools.product(range(len(OPS)), repeat=num_vertices - 2):
            graphs.append((matrix, (-1, *interior, -2)))
    return graphs


def brute_force_classes(graphs: list[tuple[np.ndarray, tuple[int, ...]]]) -> int:
    """Number of isomorphism classes: canonical form = min over all vertex permutations of (matrix bits, labels)."""
    num_vertices = graphs[0][0].shape[0]
    matrices = np.stack([m for m, _ in graphs])
    labels = np.array([lab for _, lab in graphs]) + 2  # 0..4
    bit_weights = 1 << np.arange(num_vertices * num_vertices, dtype=np.int64)
    label_weights = 5 ** np.arange(num_vertices, dtype=np.int64)
    best = np.full(len(graphs), np.iinfo(np.int64).max)
    for perm in itertools.permutations(range(num_vertices)):
        permuted = matrices[:, perm][:, :, perm].reshape(len(graphs), -1)
        code = (permuted @ bit_weights) * 5**num_vertices + labels[:, perm] @ label_weights
        best = np.minimum(best, code)
    return len(np.unique(best))


@pytest.fixture(scope="module")
def small() -> Enumeration:
    return build_enumeration(max_vertices=SMALL, processes=2)


@pytest.mark.parametrize("num_vertices", range(2, SMALL + 1))
def test_classes_match_brute_force_isomorphism(num_vertices):
    graphs = brute_force_graphs(num_vertices)
    matrices, ops, labelled = enumerate_vertex_count(num_vertices)
    assert labelled == len(graphs)
    assert len(matrices) == len(ops) == brute_force_classes(graphs)


def test_representatives_are_first_in_generation_order():
    graphs = brute_force_graphs(4)
    matrices, ops, _ = enumerate_vertex_count(4)
    first: dict[str, tuple] = {}
    for matrix, labels in graphs:
        first.setdefault(nb101_hash(matrix, list(labels)), (matrix.tolist(), labels[1:-1]))
    assert [(m.tolist(), tuple(o.tolist())) for m, o in zip(matrices, ops)] == list(first.values())


def test_fingerprints_are_distinct_and_cover_every_labelled_graph(small):
    everything = {nb101_hash(m, list(lab)) for v in range(2, SMALL + 1) for m, lab in brute_force_graphs(v)}
    hashes = [h.decode() for h in small.hashes]
    assert len(set(hashes)) == len(hashes) == len(everything)
    assert set(hashes) == everything


def test_cells_round_trip_through_the_official_hash(small):
    for i, cell in enumerate(small.cells()):
        matrix, ops = check_cell(cell)  # valid, and already pruned
        assert matrix.tolist() == [list(row) for row in cell.matrix] and list(ops) == list(cell.ops)
        assert nb101_hash(cell.array(), [HASH_LABEL[op] for op in cell.ops]) == small.hashes[i].decode()
        assert small.index_of(small.hashes[i].decode()) == i
    with pytest.raises(KeyError, match="not the fingerprint"):
        small.index_of("0" * 32)


def test_compact_form(small):
    assert len(small) == 1 + 6 + 84 + 2441
    assert small.num_vertices.dtype == np.uint8 and small.adjacency.dtype == np.uint64
    assert small.ops.shape == (len(small), 5) and small.hashes.dtype == np.dtype("S32")
    i = int(np.flatnonzero(small.num_vertices == 4)[0])
    cell = small.cell(i)
    padded = np.zeros((7, 7), dtype=np.int64)
    padded[:4, :4] = cell.array()
    assert int(small.adjacency[i]) == int("".join(map(str, padded.ravel())), 2)
    assert small.ops[i].tolist() == [OPS.index(op) for op in cell.ops[1:-1]] + [255] * 3


def test_save_load_round_trip(small, tmp_path):
    path = tmp_path / "deep" / "enumeration.cache"
    small.save(path)
    assert path.is_file() and not list(path.parent.glob("*.partial"))
    loaded = Enumeration.load(path)
    for name in ("num_vertices", "adjacency", "ops", "hashes"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(small, name))
        assert getattr(loaded, name).dtype == getattr(small, name).dtype
    assert loaded.cell(len(loaded) - 1) == small.cell(len(small) - 1)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "npy"])
def test_corrupt_cache_is_named(small, tmp_path, damage):
    path = tmp_path / "enumeration.npz"
    small.save(path)
    data = path.read_bytes()
    if damage == "npy":
        with open(path, "wb") as handle:
            np.save(handle, small.adjacency)
    else:
        path.write_bytes(b"not an npz file" if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(DataError, match=f"{path}.*delete it"):
        enumerate_cells(cache=path)


def test_cache_of_the_wrong_size_is_rejected(small, tmp_path):
    path = tmp_path / "enumeration.npz"
    small.save(path)
    with pytest.raises(DataError, match="holds 2,532 cells, expected 423,624; delete it"):
        enumerate_cells(cache=path)


def test_cache_with_wrong_dtype_is_rejected(small, tmp_path):
    path = tmp_path / "enumeration.npz"
    np.savez(path, num_vertices=small.num_vertices, adjacency=small.adjacency.astype(np.int64), ops=small.ops,
             hashes=small.hashes)
    with pytest.raises(DataError, match="adjacency of dtype int64"):
        Enumeration.load(path)


@pytest.mark.parametrize("tables, counts", [(("nb101_10k",), {4: 5, 5: 53}), (("nb101_1k_specs",), {4: 1, 5: 8})])
def test_small_table_cells_are_the_representatives(small, data_dir, tables, counts):
    """The tables' cells of <= 5 vertices are enumerated, and their stored matrix/ops is our representative."""
    from nassearch.data.nb101_table import load_nb101_table

    table = load_nb101_table(data_dir, tables)
    rows = table[table["num_vertices"] <= SMALL]
    assert rows["num_vertices"].value_counts().to_dict() == counts
    for key, adjacency, ops in zip(rows["hash"], rows["adjacency"], rows["ops"]):
        assert small.cell(small.index_of(key)) == cell_from_table(adjacency, ops)


def test_the_default_cache_follows_nassearch_cache(monkeypatch, tmp_path):
    from pathlib import Path

    from nassearch.spaces.nasbench101_enumeration import default_cache

    monkeypatch.setenv("NASSEARCH_CACHE", str(tmp_path))
    assert default_cache() == tmp_path / "nasbench101" / "nb101_cells.npz"
    monkeypatch.delenv("NASSEARCH_CACHE")
    assert default_cache() == Path("~/.cache/nassearch/nasbench101/nb101_cells.npz").expanduser()
