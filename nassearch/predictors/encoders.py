"""ArchGraph -> arrays for predictors: flat one-hot + adjacency, padded graph tensors, Laplacian PEs, path counts.

All functions take a batch of graphs that share one operation vocabulary and return numpy arrays whose
first axis indexes the graphs; graphs with fewer nodes are padded (mask 0) up to the largest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nassearch.graph import ArchGraph


@dataclass(frozen=True)
class GraphBatch:
    """Padded graphs: op indices (n, M) with -1 padding, one-hot ops (n, M, V), adjacency (n, M, M), mask (n, M)."""

    ops: np.ndarray
    one_hot: np.ndarray
    adjacency: np.ndarray
    mask: np.ndarray

    @property
    def vocab_size(self) -> int:
        return self.one_hot.shape[2]


def stack_graphs(graphs: Sequence[ArchGraph], max_nodes: int | None = None) -> GraphBatch:
    """Pad and stack graphs (nodes beyond a graph's own are masked out)."""
    if not graphs:
        raise ValueError("no graphs to encode")
    vocab = graphs[0].op_vocab
    if any(g.op_vocab != vocab for g in graphs):
        raise ValueError("graphs of one batch must share an operation vocabulary (one search space)")
    m = max_nodes or max(g.num_nodes for g in graphs)
    n = len(graphs)
    ops = np.full((n, m), -1, dtype=np.int64)
    adjacency = np.zeros((n, m, m), dtype=np.float32)
    for i, graph in enumerate(graphs):
        k = graph.num_nodes
        ops[i, :k] = graph.ops
        adjacency[i, :k, :k] = graph.adjacency
    mask = (ops >= 0).astype(np.float32)
    if "mask" in graphs[0].node_attrs:  # the space marks padding nodes of its own (e.g. NB101 "pad")
        own = np.zeros((n, m), dtype=np.float32)
        for i, graph in enumerate(graphs):
            own[i, : graph.num_nodes] = graph.node_attrs["mask"]
        mask *= own
    one_hot = np.eye(len(vocab), dtype=np.float32)[np.maximum(ops, 0)] * (ops >= 0)[..., None]
    return GraphBatch(ops, one_hot, adjacency, mask)


def flat_features(graphs: Sequence[ArchGraph]) -> np.ndarray:
    """One-hot node operations followed by the flattened strict upper triangle of the adjacency
    (the Neural Predictor paper's MLP input), float32 (n, M * V + M (M - 1) / 2)."""
    batch = stack_graphs(graphs)
    m = batch.adjacency.shape[1]
    upper = np.triu_indices(m, k=1)
    return np.concatenate([batch.one_hot.reshape(len(graphs), -1), batch.adjacency[:, upper[0], upper[1]]], axis=1)


def laplacian_eigenvectors(adjacency: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Eigenvectors of the symmetric normalised Laplacian of each (undirected) graph, ascending
    eigenvalue order, as node features (n, M, M); the sign of each is fixed so its largest-magnitude
    entry is positive. Padding nodes get zero rows."""
    sym = np.maximum(adjacency, np.swapaxes(adjacency, 1, 2)) * mask[:, :, None] * mask[:, None, :]
    degree = sym.sum(axis=2)
    inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-12)), 0.0)
    eye = np.eye(adjacency.shape[1], dtype=np.float64)[None] * mask[:, :, None]
    laplacian = eye - inv_sqrt[:, :, None] * sym * inv_sqrt[:, None, :]
    _, vectors = np.linalg.eigh(laplacian)
    peak = np.take_along_axis(vectors, np.abs(vectors).argmax(axis=1, keepdims=True), axis=1)
    vectors = vectors * np.where(peak < 0, -1.0, 1.0)
    return (vectors * mask[:, :, None]).astype(np.float32)


#: Operations that end a path (their output is zero) and operations a path passes unchanged, by name.
PATH_ZERO_OPS = ("none", "pad")
PATH_IDENTITY_OPS = ("skip_connect",)
#: The most path sequences ``path_features`` enumerates (cell spaces have hundreds; chains have billions).
MAX_PATH_SEQUENCES = 20_000
_PATH_CHUNK = 1024


def _sequence_children(num_ops: int, max_length: int) -> np.ndarray:
    """Op sequences up to ``max_length`` numbered shortest first, then in op order (index 0 is the empty
    sequence): row s holds the index of s extended by each op, -1 for sequences already ``max_length`` long."""
    starts = np.cumsum([0] + [num_ops ** k for k in range(max_length + 1)])
    table = np.full((starts[-1], num_ops), -1, dtype=np.int64)
    for k in range(max_length):
        ranks = np.arange(num_ops ** k)[:, None]
        table[starts[k]:starts[k + 1]] = starts[k + 1] + ranks * num_ops + np.arange(num_ops)
    return table


def path_length(graphs: Sequence[ArchGraph]) -> int:
    """The most operations on one input->output path of any of ``graphs`` (an upper bound: the longest path
    of their union), the ``max_length`` that ``path_features`` needs to count every path of them."""
    union = stack_graphs(graphs).adjacency.any(axis=0)
    edges = np.zeros(len(union), dtype=np.int64)
    for v in range(1, len(union)):
        sources = np.flatnonzero(union[:v, v])
        edges[v] = edges[sources].max() + 1 if len(sources) else 0
    return max(int(edges.max()) - 1, 0)


def path_features(graphs: Sequence[ArchGraph], max_length: int | None = None) -> np.ndarray:
    """How many input->output paths carry each sequence of operations: BANANAS' path encoding (White et
    al., 2021) as counts, float32 (n, S) with S the op sequences of length 0..``max_length`` (default
    ``path_length(graphs)``; pass the same value for batches that one model reads). Longer paths are left out.

    A path through an operation of :data:`PATH_ZERO_OPS` contributes nothing; one of
    :data:`PATH_IDENTITY_OPS` adds nothing to the sequence, so a cell whose only route from input to
    output is two skip connections has the same empty-sequence path as one with a direct skip. Needs
    op-on-node graphs with an ``input`` and an ``output`` operation (NAS-Bench-101 and -201 cells);
    ValueError otherwise or when S exceeds :data:`MAX_PATH_SEQUENCES`.
    """
    batch = stack_graphs(graphs)
    vocab = graphs[0].op_vocab
    if "input" not in vocab or "output" not in vocab:
        raise ValueError(f"path features need cell graphs with an 'input' and an 'output' operation; "
                         f"this space's operations are {list(vocab)} (use the flat encoding)")
    counted = [i for i, op in enumerate(vocab)
               if op not in ("input", "output", *PATH_ZERO_OPS, *PATH_IDENTITY_OPS)]
    length = path_length(graphs) if max_length is None else max_length
    size = sum(len(counted) ** k for k in range(length + 1))
    if size > MAX_PATH_SEQUENCES:
        raise ValueError(f"path features would enumerate {size:,} operation sequences ({len(counted)} "
                         f"operations, paths up to {length} long; the limit is {MAX_PATH_SEQUENCES:,}): "
                         f"use the flat encoding for this space")
    children = _sequence_children(len(counted), length)
    extendable = np.flatnonzero(children[:, 0] >= 0)
    passing = [vocab.index(op) for op in ("output", *PATH_IDENTITY_OPS) if op in vocab]
    m = batch.adjacency.shape[1]
    out = np.zeros((len(graphs), size), dtype=np.float32)
    for lo in range(0, len(graphs), _PATH_CHUNK):  # counts hold (chunk, nodes, S) floats
        part = slice(lo, lo + _PATH_CHUNK)
        ops, adjacency = np.where(batch.mask[part] > 0, batch.ops[part], -1), batch.adjacency[part]
        counts = np.zeros((len(ops), m, size), dtype=np.float32)
        counts[:, 0, 0] = ops[:, 0] == vocab.index("input")
        for v in range(1, m):
            incoming = np.einsum("nu,nus->ns", adjacency[:, :v, v], counts[:, :v])
            node = counts[:, v]
            through = np.isin(ops[:, v], passing)
            node[through] = incoming[through]
            for j, code in enumerate(counted):
                rows = np.flatnonzero(ops[:, v] == code)
                node[np.ix_(rows, children[extendable, j])] = incoming[np.ix_(rows, extendable)]
        output = np.argmax(ops == vocab.index("output"), axis=1)
        out[part] = counts[np.arange(len(ops)), output]
    return out
