"""ArchGraph -> arrays for predictors: flat one-hot + adjacency, padded graph tensors, Laplacian PEs.

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
