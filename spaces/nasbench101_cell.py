"""NAS-Bench-101 cells (Ying et al., 2019): the representation, its validity rules, the official fingerprint and
the string form.

A cell is an upper-triangular 0/1 adjacency matrix and one operation per vertex: ``input`` first,
``output`` last, interior vertices one of ``conv3x3-bn-relu``, ``conv1x1-bn-relu``, ``maxpool3x3``.
As in the official ``ModelSpec``, vertices not on an input->output path are pruned before a cell is
checked (at most 7 vertices, at most 9 edges) or hashed (:func:`nb101_hash`, the md5 iterative
neighbourhood hash of ``nasbench/lib/graph_util.py``, invariant to vertex permutations).
String form: ``<V*V adjacency bits, row-major>|<op,op,...>``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nassearch.errors import InvalidArchitecture
from nassearch.spaces.base import arch_text
from nassearch.validation import shown

INPUT, OUTPUT = "input", "output"
CONV3X3, CONV1X1, MAXPOOL3X3 = "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3"
OPS: tuple[str, ...] = (CONV3X3, CONV1X1, MAXPOOL3X3)
MAX_VERTICES = 7
MAX_EDGES = 9
#: Hash labels of graph_util: input -1, output -2, interior ops their index in OPS.
HASH_LABEL = {INPUT: -1, OUTPUT: -2, **{op: i for i, op in enumerate(OPS)}}
STRING_FORMAT = "<V*V adjacency bits, row-major>|input,<op>,...,output"


@dataclass(frozen=True)
class NB101Cell:
    """A (possibly unpruned) NB101 cell: V x V upper-triangular 0/1 matrix and V operations."""

    matrix: tuple[tuple[int, ...], ...]
    ops: tuple[str, ...]

    @staticmethod
    def from_arrays(matrix: np.ndarray | Sequence[Sequence[int]], ops: Sequence[str]) -> NB101Cell:
        return NB101Cell(tuple(map(tuple, np.asarray(matrix, dtype=np.int64).tolist())), tuple(ops))

    def array(self) -> np.ndarray:
        return np.array(self.matrix, dtype=np.int64).reshape(len(self.ops), len(self.ops))

    @property
    def num_vertices(self) -> int:
        return len(self.ops)


def nb101_hash(matrix: np.ndarray, labels: Sequence[int]) -> str:
    """The official NAS-Bench-101 fingerprint of a (pruned) cell (graph_util.hash_module)."""
    vertices = matrix.shape[0]
    edges = np.asarray(matrix).tolist()
    preds = [[w for w in range(vertices) if edges[w][v]] for v in range(vertices)]
    succs = [[w for w in range(vertices) if edges[v][w]] for v in range(vertices)]
    hashes = [hashlib.md5(str((len(succs[v]), len(preds[v]), labels[v])).encode("utf-8")).hexdigest()
              for v in range(vertices)]
    for _ in range(vertices):
        hashes = [hashlib.md5(("".join(sorted(hashes[w] for w in preds[v])) + "|"
                               + "".join(sorted(hashes[w] for w in succs[v])) + "|"
                               + hashes[v]).encode("utf-8")).hexdigest()
                  for v in range(vertices)]
    return hashlib.md5(str(sorted(hashes)).encode("utf-8")).hexdigest()


def prune(matrix: np.ndarray, ops: Sequence[str]) -> tuple[np.ndarray, list[str]] | None:
    """Drop vertices not on an input->output path (ModelSpec semantics); None if output is unreachable."""
    n = matrix.shape[0]
    from_input, to_output = {0}, {n - 1}
    for v in range(1, n):
        if any(matrix[u, v] for u in from_input if u < v):
            from_input.add(v)
    for v in range(n - 2, -1, -1):
        if any(matrix[v, w] for w in to_output if w > v):
            to_output.add(v)
    keep = sorted(from_input & to_output)
    if n - 1 not in from_input or 0 not in to_output:
        return None
    return matrix[np.ix_(keep, keep)], [ops[i] for i in keep]


def check_cell(cell: NB101Cell) -> tuple[np.ndarray, list[str]]:
    """The pruned (matrix, ops) of a cell, or InvalidArchitecture naming what is wrong."""
    n = len(cell.ops)
    if n < 2:
        raise InvalidArchitecture(f"NAS-Bench-101 cell needs at least input and output vertices, got {n}")
    if len(cell.matrix) != n or any(len(row) != n for row in cell.matrix):
        raise InvalidArchitecture(f"NAS-Bench-101 adjacency must be {n}x{n} for {n} ops")
    matrix = cell.array()
    if matrix.min() < 0 or matrix.max() > 1 or np.tril(matrix).any():
        raise InvalidArchitecture("NAS-Bench-101 adjacency must be 0/1 and strictly upper triangular")
    if cell.ops[0] != INPUT or cell.ops[-1] != OUTPUT:
        raise InvalidArchitecture(f"NAS-Bench-101 ops must start with {INPUT!r} and end with {OUTPUT!r}, "
                                  f"got {shown(cell.ops[0])} ... {shown(cell.ops[-1])}")
    unknown = [op for op in cell.ops[1:-1] if op not in OPS]
    if unknown:
        raise InvalidArchitecture(f"unknown NAS-Bench-101 operation {shown(unknown[0])}; allowed: {', '.join(OPS)}")
    pruned = prune(matrix, cell.ops)
    if pruned is None:
        raise InvalidArchitecture("NAS-Bench-101 cell has no path from input to output")
    matrix, ops = pruned
    if len(ops) > MAX_VERTICES:
        raise InvalidArchitecture(f"NAS-Bench-101 cell has {len(ops)} vertices on input->output paths; "
                                  f"at most {MAX_VERTICES} are allowed")
    if matrix.sum() > MAX_EDGES:
        raise InvalidArchitecture(f"NAS-Bench-101 cell has {int(matrix.sum())} edges; at most {MAX_EDGES} are allowed")
    return matrix, ops


def _cell_error(text: Any, problem: str) -> InvalidArchitecture:
    return InvalidArchitecture(f"malformed NAS-Bench-101 architecture {shown(text)}: {problem}; "
                               f"expected {STRING_FORMAT}")


def parse_cell(text: str) -> NB101Cell:
    """Parse ``<bits>|<ops>`` into a cell (not yet checked for validity)."""
    text = arch_text(text, lambda problem: _cell_error(text, problem))
    if text.count("|") != 1:
        raise _cell_error(text, f"found {text.count('|')} '|', expected one between the bits and the ops")
    bits, ops_text = text.split("|")
    ops = tuple(op.strip() for op in ops_text.split(","))
    if len(bits) != len(ops) ** 2 or set(bits) - {"0", "1"}:
        raise _cell_error(text, f"{len(ops)} ops need {len(ops) ** 2} adjacency bits (0/1), got {len(bits)} "
                                f"characters {shown(bits)}")
    matrix = np.array([int(b) for b in bits], dtype=np.int64).reshape(len(ops), len(ops))
    return NB101Cell.from_arrays(matrix, ops)


def format_cell(cell: NB101Cell) -> str:
    return "".join(str(v) for row in cell.matrix for v in row) + "|" + ",".join(cell.ops)


def cell_from_table(adjacency: str, ops: str) -> NB101Cell:
    """A cell from the tables' encoding: 49-char padded adjacency (V x V top-left block) and V ops."""
    names = ops.split(",")
    v = len(names)
    full = np.array([int(b) for b in adjacency], dtype=np.int64).reshape(MAX_VERTICES, MAX_VERTICES)
    return NB101Cell.from_arrays(full[:v, :v], names)
