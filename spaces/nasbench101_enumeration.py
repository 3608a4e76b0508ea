"""Exhaustive enumeration of the NAS-Bench-101 space: one representative per unique cell (423,624).

Generation order (as in the data README, "nasbench101/"): vertex count V = 2..7 ascending; for each V the
edge bitmask ascending, bit ``x + y(y-1)/2`` standing for edge x->y; for each matrix the interior labelings
in lexicographic order of op indices (``OPS`` order, which is the ``HASH_LABEL`` order). A matrix is kept
if it has at most 9 edges, every vertex but the output has an out-edge and every vertex but the input has
an in-edge, so every vertex lies on an input->output path and the graph is already pruned: 1,293,208
labelled graphs. Isomorphic graphs are merged with a vectorised uint64 Weisfeiler-Lehman hash and the
first graph of each class is kept (this reproduces NB101's stored ``module_adjacency``). The official md5
fingerprint is then computed for the representatives only; they must all differ, and the counts must
match the official ones, or the enumeration raises.

Compact form (:class:`Enumeration`): ``adjacency`` is the 7x7 row-major matrix (the VxV cell in the
top-left block, zeros elsewhere, as in the tables) read as a 49-bit binary number, first entry most
significant, i.e. ``int(table_adjacency_string, 2)`` and ``format(value, "049b")``; ``ops`` holds the
interior op indices into ``OPS``, padded with 255.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from nassearch.data.tables import cache_dir
from nassearch.errors import DataError
from nassearch.spaces.nasbench101_cell import HASH_LABEL, INPUT, MAX_EDGES, MAX_VERTICES, OPS, OUTPUT, NB101Cell, nb101_hash

log = logging.getLogger(__name__)

NUM_LABELLED_GRAPHS = 1_293_208
NUM_CELLS = 423_624
PAD_OP = 255
_FIELDS = ("num_vertices", "adjacency", "ops", "hashes")
_SHIFTS = np.arange(MAX_VERTICES**2 - 1, -1, -1, dtype=np.uint64)  # bit of each row-major 7x7 entry
_OP_LABELS = np.array([HASH_LABEL[op] for op in OPS], dtype=np.int64)
_CHUNK = 1 << 16  # labelled graphs hashed at once: a few (chunk, V, V) uint64 temporaries, ~25 MB each
_IN_SALT, _OUT_SALT = np.uint64(0x5851F42D4C957F2D), np.uint64(0x14057B7EF767814F)


@dataclass(frozen=True, eq=False)
class Enumeration:
    """The unique NB101 cells in generation order, in compact arrays (see the module docstring)."""

    num_vertices: np.ndarray  # uint8 (n,)
    adjacency: np.ndarray  # uint64 (n,): padded 7x7 row-major matrix, first entry most significant
    ops: np.ndarray  # uint8 (n, 5): interior op indices into OPS, padded with 255
    hashes: np.ndarray  # S32 (n,): official md5 fingerprints

    def __len__(self) -> int:
        return len(self.hashes)

    def cell(self, i: int) -> NB101Cell:
        """The i-th representative: its VxV matrix and V op names (already pruned)."""
        v = int(self.num_vertices[i])
        names = (INPUT, *(OPS[k] for k in self.ops[i, : v - 2]), OUTPUT)
        return NB101Cell.from_arrays(_matrix(self.adjacency[i], v), names)

    def cells(self) -> Iterator[NB101Cell]:
        return (self.cell(i) for i in range(len(self)))

    @cached_property
    def _hash_order(self) -> np.ndarray:
        return np.argsort(self.hashes)

    def index_of(self, fingerprint: str) -> int:
        """Position of the cell with this official fingerprint; KeyError if it is not in the enumeration."""
        key = np.bytes_(fingerprint.encode("utf-8"))
        pos = int(np.searchsorted(self.hashes, key, sorter=self._hash_order))
        if pos < len(self) and self.hashes[self._hash_order[pos]] == key:
            return int(self._hash_order[pos])
        raise KeyError(f"{fingerprint!r} is not the fingerprint of an enumerated NAS-Bench-101 cell")

    def save(self, path: str | Path) -> None:
        """Write a compressed .npz (atomically; parent directories are created)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        with open(partial, "wb") as handle:  # a file handle: np.savez would append ".npz" to a path
            np.savez_compressed(handle, **{name: getattr(self, name) for name in _FIELDS})
        os.replace(partial, path)

    @staticmethod
    def load(path: str | Path) -> Enumeration:
        """Read what :meth:`save` wrote; DataError naming the file if it is unreadable or malformed."""
        advice = f"NAS-Bench-101 enumeration cache {path}"
        try:
            data = np.load(path, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            with data:
                arrays = {name: data[name] for name in _FIELDS}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise DataError(f"{advice} cannot be read ({exc}); delete it to recompute") from None
        n = len(arrays["hashes"])
        expected = {"num_vertices": (np.uint8, (n,)), "adjacency": (np.uint64, (n,)),
                    "ops": (np.uint8, (n, MAX_VERTICES - 2)), "hashes": (np.dtype("S32"), (n,))}
        for name, (dtype, shape) in expected.items():
            if arrays[name].dtype != dtype or arrays[name].shape != shape:
                raise DataError(f"{advice} has {name} of dtype {arrays[name].dtype} and shape "
                                f"{arrays[name].shape}, expected {np.dtype(dtype)} {shape}; delete it to recompute")
        return Enumeration(**arrays)


def default_cache() -> Path:
    """Where `nassearch spaces enumerate nasbench101` and `NasBench101Space.enumerate` keep the cells:
    ``nasbench101/nb101_cells.npz`` in the cache directory (``$NASSEARCH_CACHE``, else ``~/.cache/nassearch``)."""
    return cache_dir() / "nasbench101" / "nb101_cells.npz"


def enumerate_cells(cache: str | Path | None = None, processes: int = 2) -> Enumeration:
    """All 423,624 unique NB101 cells: read from ``cache`` if it exists, else computed (and saved there)."""
    if cache is not None and Path(cache).exists():
        enumeration = Enumeration.load(cache)
        if len(enumeration) != NUM_CELLS:
            raise DataError(f"NAS-Bench-101 enumeration cache {cache} holds {len(enumeration):,} cells, "
                            f"expected {NUM_CELLS:,}; delete it to recompute")
        log.info("loaded %d NAS-Bench-101 cells from %s", len(enumeration), cache)
        return enumeration
    enumeration = build_enumeration(MAX_VERTICES, processes)
    if cache is not None:
        enumeration.save(cache)
        log.info("saved the NAS-Bench-101 enumeration to %s", cache)
    return enumeration


def build_enumeration(max_vertices: int = MAX_VERTICES, processes: int = 2) -> Enumeration:
    """The unique cells of 2..max_vertices vertices, with official fingerprints computed on ``processes``
    cores; RuntimeError if two representatives share a fingerprint or (for 7) a count is not the official one."""
    start = time.perf_counter()
    parts = [enumerate_vertex_count(v) for v in range(2, max_vertices + 1)]
    labelled = sum(part[2] for part in parts)
    num_vertices = np.concatenate([np.full(len(m), m.shape[1], dtype=np.uint8) for m, _, _ in parts])
    adjacency = np.concatenate([_pack(m) for m, _, _ in parts])
    ops = np.concatenate([np.pad(o, ((0, 0), (0, MAX_VERTICES - 2 - o.shape[1])), constant_values=PAD_OP)
                          for _, o, _ in parts])
    log.info("%d labelled graphs, %d isomorphism classes (%.1f s)", labelled, len(adjacency),
             time.perf_counter() - start)
    hashes = official_hashes(num_vertices, adjacency, ops, processes)
    if len(np.unique(hashes)) != len(hashes):
        raise RuntimeError(f"{len(hashes) - len(np.unique(hashes))} NAS-Bench-101 representatives share an official "
                           "fingerprint: the uint64 isomorphism hash split a class")
    if max_vertices == MAX_VERTICES and (labelled, len(hashes)) != (NUM_LABELLED_GRAPHS, NUM_CELLS):
        raise RuntimeError(f"NAS-Bench-101 enumeration found {labelled:,} labelled graphs and {len(hashes):,} "
                           f"unique cells, expected {NUM_LABELLED_GRAPHS:,} and {NUM_CELLS:,}")
    log.info("NAS-Bench-101 enumeration of up to %d vertices done in %.1f s", max_vertices,
             time.perf_counter() - start)
    return Enumeration(num_vertices, adjacency, ops, hashes)


def edge_slots(num_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """(sources, targets) of the V(V-1)/2 edge bits: bit ``x + y(y-1)/2`` is edge x->y."""
    pairs = [(x, y) for y in range(1, num_vertices) for x in range(y)]
    return np.array([x for x, _ in pairs], dtype=np.intp), np.array([y for _, y in pairs], dtype=np.intp)


def candidate_matrices(num_vertices: int) -> np.ndarray:
    """The (m, V, V) uint8 matrices of V vertices that are valid pruned cells, in edge-bitmask order."""
    sources, targets = edge_slots(num_vertices)
    bits = np.uint32(1) << np.arange(len(sources), dtype=np.uint32)
    masks = np.arange(1 << len(sources), dtype=np.uint32)
    keep = np.bitwise_count(masks) <= MAX_EDGES
    for v in range(num_vertices - 1):
        keep &= (masks & bits[sources == v].sum(dtype=np.uint32)) != 0
    for v in range(1, num_vertices):
        keep &= (masks & bits[targets == v].sum(dtype=np.uint32)) != 0
    masks = masks[keep]
    matrices = np.zeros((len(masks), num_vertices, num_vertices), dtype=np.uint8)
    matrices[:, sources, targets] = (masks[:, None] & bits) != 0
    return matrices


def labelings(num_vertices: int) -> np.ndarray:
    """The (3^(V-2), V-2) uint8 interior op indices, in lexicographic order."""
    rows = list(itertools.product(range(len(OPS)), repeat=num_vertices - 2))
    return np.array(rows, dtype=np.uint8).reshape(len(rows), num_vertices - 2)


def hash_labels(ops: np.ndarray) -> np.ndarray:
    """(n, V) HASH_LABEL labels of cells with interior op indices ``ops`` (n, V-2)."""
    n = len(ops)
    return np.hstack([np.full((n, 1), HASH_LABEL[INPUT]), _OP_LABELS[ops], np.full((n, 1), HASH_LABEL[OUTPUT])])


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 on a uint64 array (wrapping arithmetic)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def wl_hash(matrices: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """A uint64 isomorphism-invariant hash of each (V x V matrix, V labels) graph: V rounds of
    Weisfeiler-Lehman refinement, neighbour hashes summed (a multiset hash) with distinct in/out mixing."""
    n, v, _ = matrices.shape
    edges = matrices.astype(bool)
    in_degree, out_degree = matrices.sum(axis=1, dtype=np.int64), matrices.sum(axis=2, dtype=np.int64)
    start = (labels + 2) + 8 * in_degree + 64 * out_degree  # label, in- and out-degree, each < 8
    h = _mix(start.astype(np.uint64))
    for _ in range(v):
        from_predecessors = np.where(edges, _mix(h ^ _IN_SALT)[:, :, None], np.uint64(0)).sum(axis=1)
        from_successors = np.where(edges, _mix(h ^ _OUT_SALT)[:, None, :], np.uint64(0)).sum(axis=2)
        h = _mix(_mix(h + from_predecessors) ^ from_successors)
    graph = _mix(np.full(n, v, dtype=np.uint64))
    for column in np.sort(h, axis=1).T:
        graph = _mix(graph ^ column)
    return graph


def enumerate_vertex_count(num_vertices: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The first labelled graph of each isomorphism class with V vertices, in generation order:
    (matrices (k, V, V) uint8, interior op indices (k, V-2) uint8, number of labelled graphs)."""
    start = time.perf_counter()
    matrices, ops = candidate_matrices(num_vertices), labelings(num_vertices)
    total = len(matrices) * len(ops)
    hashes = np.empty(total, dtype=np.uint64)
    for begin in range(0, total, _CHUNK):
        matrix_index, op_index = np.divmod(np.arange(begin, min(begin + _CHUNK, total)), len(ops))
        hashes[begin: begin + _CHUNK] = wl_hash(matrices[matrix_index], hash_labels(ops[op_index]))
    _, first = np.unique(hashes, return_index=True)  # index of the first occurrence of each hash
    matrix_index, op_index = np.divmod(np.sort(first), len(ops))
    log.info("V=%d: %d matrices, %d labelled graphs, %d classes (%.1f s)", num_vertices, len(matrices), total,
             len(first), time.perf_counter() - start)
    return matrices[matrix_index], ops[op_index], total


def official_hashes(num_vertices: np.ndarray, adjacency: np.ndarray, ops: np.ndarray, processes: int) -> np.ndarray:
    """The md5 fingerprints (S32) of compact cells, computed on a pool of ``processes`` workers."""
    start = time.perf_counter()
    bounds = np.linspace(0, len(adjacency), 8 * processes + 1).astype(int)
    chunks = [(num_vertices[a:b], adjacency[a:b], ops[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    with Pool(processes) as pool:
        hashes = np.array([h for part in pool.map(_official_hashes_chunk, chunks) for h in part], dtype="S32")
    log.info("official fingerprints of %d cells on %d processes (%.1f s)", len(hashes), processes,
             time.perf_counter() - start)
    return hashes


def _official_hashes_chunk(chunk: tuple[np.ndarray, np.ndarray, np.ndarray]) -> list[str]:
    num_vertices, adjacency, ops = chunk
    op_labels = _OP_LABELS.tolist()  # Python ints: nb101_hash hashes their str()
    return [nb101_hash(_matrix(a, v), [HASH_LABEL[INPUT], *(op_labels[k] for k in row[: v - 2]), HASH_LABEL[OUTPUT]])
            for v, a, row in zip(num_vertices.tolist(), adjacency, ops.tolist())]


def _pack(matrices: np.ndarray) -> np.ndarray:
    """(k, V, V) matrices as uint64 49-bit numbers of the padded 7x7 row-major matrix."""
    padded = np.zeros((len(matrices), MAX_VERTICES, MAX_VERTICES), dtype=np.uint64)
    v = matrices.shape[1]
    padded[:, :v, :v] = matrices
    return (padded.reshape(len(matrices), -1) << _SHIFTS).sum(axis=1, dtype=np.uint64)


def _matrix(packed: np.uint64 | int, num_vertices: int) -> np.ndarray:
    """The V x V int64 matrix of a packed adjacency."""
    bits = (np.uint64(packed) >> _SHIFTS) & np.uint64(1)
    return bits.reshape(MAX_VERTICES, MAX_VERTICES)[:num_vertices, :num_vertices].astype(np.int64)
