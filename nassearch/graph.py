"""ArchGraph: the one intermediate representation every predictor reads.

Spaces produce it (``SearchSpace.encode``); predictors consume it. Nodes are in topological order,
``adjacency[i, j] == 1`` means an edge from node ``i`` to node ``j`` (so the matrix is strictly upper
triangular), and ``ops[i]`` indexes ``op_vocab``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class ArchGraph:
    """A directed acyclic graph of operations with optional node and graph attributes.

    Attributes:
        ops: int64 array (num_nodes,), index into ``op_vocab`` for each node.
        adjacency: uint8 array (num_nodes, num_nodes), strictly upper triangular.
        op_vocab: names of all operations of the space (shared by every graph of that space).
        node_attrs: name -> array (num_nodes, ...) of numeric per-node attributes.
        graph_attrs: name -> float, whole-graph attributes (resolution, total FLOPs, ...).
        cells: int64 array (num_nodes,) giving the cell each node belongs to, or None.
    """

    ops: np.ndarray
    adjacency: np.ndarray
    op_vocab: tuple[str, ...]
    node_attrs: dict[str, np.ndarray] = field(default_factory=dict)
    graph_attrs: dict[str, float] = field(default_factory=dict)
    cells: np.ndarray | None = None

    def __post_init__(self) -> None:
        ops = np.asarray(self.ops, dtype=np.int64)
        adjacency = np.asarray(self.adjacency, dtype=np.uint8)
        if ops.ndim != 1:
            raise ValueError(f"ArchGraph.ops must be 1-d, got shape {ops.shape}")
        n = ops.shape[0]
        if adjacency.shape != (n, n):
            raise ValueError(f"ArchGraph.adjacency must be ({n}, {n}), got {adjacency.shape}")
        if np.any(np.tril(adjacency)):
            raise ValueError("ArchGraph.adjacency must be strictly upper triangular (topological order)")
        if n and (ops.min() < 0 or ops.max() >= len(self.op_vocab)):
            raise ValueError(f"ArchGraph.ops must index op_vocab (size {len(self.op_vocab)})")
        for name, values in self.node_attrs.items():
            rows = np.shape(values)[0] if np.ndim(values) else 0
            if rows != n:
                raise ValueError(f"node attribute {name!r} has {rows} rows for {n} nodes")
        object.__setattr__(self, "ops", ops)
        object.__setattr__(self, "adjacency", adjacency)
        if self.cells is not None:
            object.__setattr__(self, "cells", np.asarray(self.cells, dtype=np.int64))

    @property
    def num_nodes(self) -> int:
        return int(self.ops.shape[0])

    def op_names(self) -> list[str]:
        """Operation name of each node."""
        return [self.op_vocab[i] for i in self.ops]

    def one_hot_ops(self) -> np.ndarray:
        """float32 array (num_nodes, len(op_vocab)) with a one for each node's operation."""
        out = np.zeros((self.num_nodes, len(self.op_vocab)), dtype=np.float32)
        out[np.arange(self.num_nodes), self.ops] = 1.0
        return out


# Whole-network graphs (one node per layer, for latency prediction) carry these per-node attributes in
# ``node_attrs["layer"]`` (float array (num_nodes, 12), NaN where a layer has no such attribute: e.g. a
# ReLU has no kernel, a flattened output has no height/width), and these ``graph_attrs``.
LAYER_ATTRIBUTES: tuple[str, ...] = (
    "kernel", "stride", "padding", "dilation", "groups", "bias", "perm", "output_padding",
    "out_batch", "out_channels", "out_height", "out_width")
STATIC_PROPERTIES: tuple[str, ...] = ("batch_size", "flops", "params", "memory_access")

# Cell-based spaces (NB101, NB201) attach the cost of every node in every cell of the built network:
# ``node_attrs["cell_flops"]`` / ``node_attrs["cell_params"]``, float arrays (num_nodes, num_cells) in
# millions, measured with ``nassearch.model_cost`` on the built operations (zero for nodes without
# compute and for padding), and ``graph_attrs["flops"]`` / ``["params"]``, the whole network's cost
# (equal to the space's ``cost``). Graphs whose nodes stand for the edges of an op-on-edge cell (NB201)
# also carry ``node_attrs["cell_edge"]``, int array (num_nodes, 2): the (source, destination) cell node
# of the edge each graph node stands for, (-1, -1) for the graph's own input and output nodes.
CELL_COST_ATTRIBUTES: tuple[str, ...] = ("cell_flops", "cell_params")
