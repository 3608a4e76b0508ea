"""NAS-Bench-101 (Ying et al., 2019): the space of cells (DAGs of at most 7 vertices and 9 edges; their
representation and rules are in :mod:`nassearch.spaces.nasbench101_cell`) and the network they build.
``key`` is the official fingerprint, invariant to vertex permutations.

Architectures keep the matrix they were made with (sampling draws 7-vertex matrices, as NB101's own
random sampling does, and mutation edits that matrix); ``canonical`` gives the pruned cell.
String form: ``<V*V adjacency bits, row-major>|<op,op,...>``, e.g.
``0110000000100000000001000000000000000000000000000|input,conv3x3-bn-relu,...``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch import nn

from nassearch.errors import InvalidArchitecture
from nassearch.graph import ArchGraph
from nassearch.model_cost import ModelCost, model_cost
from nassearch.spaces.base import SearchSpace
from nassearch.spaces.nasbench101_enumeration import default_cache, enumerate_cells
from nassearch.spaces.nasbench101_cell import (CONV1X1, CONV3X3, HASH_LABEL, INPUT, MAX_VERTICES, MAXPOOL3X3, OPS, OUTPUT,
                                               NB101Cell, cell_from_table, check_cell, format_cell, nb101_hash,
                                               parse_cell)
from nassearch.validation import require_positive

#: Node vocabulary of the encoded graph; ``pad`` fills cells with fewer than 7 vertices.
GRAPH_VOCAB: tuple[str, ...] = (INPUT, *OPS, OUTPUT, "pad")
#: Neural Predictor / NB101 regularized-evolution mutation rates (003 §2): per edge, per interior op.
EDGE_MUTATION_PROB = 1 / 14
OP_MUTATION_PROB = 1 / 10


# ---------------------------------------------------------------------------------------------
# The network (nasbench/lib/model_builder.py).


class ConvBnRelu(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> ReLU, NB101's convolution unit (BN momentum 0.997, eps 1e-5)."""

    def __init__(self, c_in: int, c_out: int, kernel: int) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(c_out, eps=1e-5, momentum=0.003), nn.ReLU(inplace=True))


def vertex_channels(c_in: int, c_out: int, matrix: np.ndarray) -> list[int]:
    """Channels of every vertex: output channels split over the vertices feeding the output (the
    remainder going to the first ones), other vertices the max of their successors."""
    n = matrix.shape[0]
    channels = [0] * n
    channels[0], channels[-1] = c_in, c_out
    if n == 2:
        return channels
    in_degree = matrix[1:].sum(axis=0)
    interior, correction = divmod(c_out, int(in_degree[n - 1]))
    for v in range(1, n - 1):
        if matrix[v, n - 1]:
            channels[v] = interior + (1 if correction > 0 else 0)
            correction -= 1
    for v in range(n - 3, 0, -1):
        if not matrix[v, n - 1]:
            channels[v] = max([channels[v]] + [channels[d] for d in range(v + 1, n - 1) if matrix[v, d]])
    return channels


class Module(nn.Module):
    """One NB101 cell instance: vertices sum truncated predecessors and a 1x1 projection of the input;
    the output concatenates the vertices feeding it and adds a projection of the input."""

    def __init__(self, matrix: np.ndarray, ops: Sequence[str], c_in: int, c_out: int) -> None:
        super().__init__()
        self.matrix = matrix
        self.channels = vertex_channels(c_in, c_out, matrix)
        n = matrix.shape[0]
        self.vertex_ops = nn.ModuleList([nn.Identity()])
        self.projections = nn.ModuleList([nn.Identity()])
        for v in range(1, n):
            self.projections.append(ConvBnRelu(c_in, self.channels[v], 1) if matrix[0, v] else nn.Identity())
            if v < n - 1:
                c = self.channels[v]
                op = ops[v]
                self.vertex_ops.append(ConvBnRelu(c, c, 3) if op == CONV3X3 else ConvBnRelu(c, c, 1)
                                       if op == CONV1X1 else nn.MaxPool2d(3, stride=1, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.matrix.shape[0]
        tensors = [x]
        for v in range(1, n - 1):
            inputs = [tensors[u][:, : self.channels[v]] for u in range(1, v) if self.matrix[u, v]]
            if self.matrix[0, v]:
                inputs.append(self.projections[v](x))
            tensors.append(self.vertex_ops[v](sum(inputs)))
        fan_in = [tensors[v] for v in range(1, n - 1) if self.matrix[v, n - 1]]
        if not fan_in:
            return self.projections[n - 1](x)
        out = torch.cat(fan_in, dim=1) if len(fan_in) > 1 else fan_in[0]
        return out + self.projections[n - 1](x) if self.matrix[0, n - 1] else out


class NB101Network(nn.Module):
    """3x3 stem (128 channels), stacks of modules with 2x2 max-pool downsampling that doubles the
    channels between stacks, global average pooling and a dense classifier."""

    def __init__(self, matrix: np.ndarray, ops: Sequence[str], stem_channels: int = 128, num_stacks: int = 3,
                 modules_per_stack: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvBnRelu(3, stem_channels, 3)]
        channels = stem_channels
        for stack in range(num_stacks):
            c_out = channels
            if stack > 0:
                layers.append(nn.MaxPool2d(2, stride=2))
                c_out = channels * 2
            for _ in range(modules_per_stack):
                layers.append(Module(matrix, ops, channels, c_out))
                channels = c_out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


# ---------------------------------------------------------------------------------------------


#: Cells whose fingerprint the space remembers before it starts afresh.
CACHED_FINGERPRINTS = 200_000


class NasBench101Space(SearchSpace):
    """The NAS-Bench-101 cell space (423,624 unique cells) with the CIFAR-10 network.

    ``restrict_to_table: true`` limits sampling and mutation to the cells of the NB101 tables in the
    data directory (the shared tables hold a subset of the space).
    """

    name = "nasbench101"

    def __init__(self, restrict_to_table: bool = False, data_dir: str | None = None, stem_channels: int = 128,
                 num_stacks: int = 3, modules_per_stack: int = 3, num_classes: int = 10) -> None:
        require_positive(stem_channels=stem_channels, num_stacks=num_stacks, modules_per_stack=modules_per_stack,
                         num_classes=num_classes)
        self.restrict_to_table = restrict_to_table
        self.data_dir = data_dir
        self._unit_costs: dict[tuple[str, int, int, int], tuple[float, float]] = {}
        self._fingerprints: dict[NB101Cell, str | None] = {}
        self._table_keys: dict[NB101Cell, str | None] = {}
        self.network = {"stem_channels": stem_channels, "num_stacks": num_stacks,
                        "modules_per_stack": modules_per_stack, "num_classes": num_classes}
        if restrict_to_table:
            _ = self.table_cells

    @cached_property
    def table_cells(self) -> tuple[list[NB101Cell], dict[str, int]]:
        """Cells of the data directory's NB101 tables and their position by hash."""
        from nassearch.data.nb101_table import load_nb101_table

        table = load_nb101_table(self.data_dir)
        cells = [cell_from_table(a, o) for a, o in zip(table["adjacency"], table["ops"])]
        return cells, {h: i for i, h in enumerate(table["hash"])}

    # validity, identity, strings ----------------------------------------------------------

    def validate(self, cell: NB101Cell) -> None:
        """Raise InvalidArchitecture unless ``cell`` is a valid NB101 cell."""
        if not isinstance(cell, NB101Cell):
            raise InvalidArchitecture(f"NAS-Bench-101 architecture must be an NB101Cell, got {type(cell).__name__}")
        check_cell(cell)

    def is_valid(self, cell: NB101Cell) -> bool:
        try:
            self.validate(cell)
        except InvalidArchitecture:
            return False
        return True

    def canonical(self, cell: NB101Cell) -> NB101Cell:
        """The pruned cell (what the network and the hash see)."""
        matrix, ops = check_cell(cell)
        return NB101Cell.from_arrays(matrix, ops)

    def key(self, cell: NB101Cell) -> str:
        key = self._fingerprint(cell) if isinstance(cell, NB101Cell) else None
        if key is None:
            self.validate(cell)  # raises what is wrong
        return key

    def _fingerprint(self, cell: NB101Cell) -> str | None:
        """The NB101 hash of a cell, None when it is invalid; remembered per cell (mutation in the table-restricted
        space draws about 40 children per accepted one, mostly the same few hundred per parent)."""
        if cell not in self._fingerprints:
            if len(self._fingerprints) >= CACHED_FINGERPRINTS:
                self._fingerprints.clear()
            try:
                matrix, ops = check_cell(cell)
            except InvalidArchitecture:
                self._fingerprints[cell] = None
            else:
                self._fingerprints[cell] = nb101_hash(matrix, [HASH_LABEL[op] for op in ops])
        return self._fingerprints[cell]

    def _table_key(self, cell: NB101Cell) -> str | None:
        """The NB101 hash of a cell when it is one of the table's cells, else None; remembered per cell. Cells
        whose :func:`degree_profile` no table cell has are rejected without hashing."""
        if cell not in self._table_keys:
            if len(self._table_keys) >= CACHED_FINGERPRINTS:
                self._table_keys.clear()
            key = None
            try:
                matrix, ops = check_cell(cell)
            except InvalidArchitecture:
                pass
            else:
                if degree_profile(matrix, ops) in self.table_profiles:
                    key = nb101_hash(matrix, [HASH_LABEL[op] for op in ops])
            self._table_keys[cell] = key if key in self.table_cells[1] else None
        return self._table_keys[cell]

    @cached_property
    def table_profiles(self) -> frozenset[tuple[tuple[int, int, str], ...]]:
        """The :func:`degree_profile` of every table cell."""
        return frozenset(degree_profile(*check_cell(cell)) for cell in self.table_cells[0])

    def to_str(self, cell: NB101Cell) -> str:
        self.validate(cell)
        return format_cell(cell)

    def from_str(self, text: str) -> NB101Cell:
        cell = parse_cell(text)
        self.validate(cell)
        return cell

    # sampling and variation ---------------------------------------------------------------

    def sample(self, rng: np.random.Generator) -> NB101Cell:
        """NB101's random sampling: a random upper-triangular 7x7 matrix and random interior ops,
        redrawn until valid (from the table's cells, uniformly, when restricted)."""
        if self.restrict_to_table:
            cells, _ = self.table_cells
            return cells[int(rng.integers(len(cells)))]
        while True:
            matrix = np.triu(rng.integers(0, 2, size=(MAX_VERTICES, MAX_VERTICES)), 1)
            ops = (INPUT, *(OPS[i] for i in rng.integers(0, len(OPS), size=MAX_VERTICES - 2)), OUTPUT)
            cell = NB101Cell.from_arrays(matrix, ops)
            if self.is_valid(cell):
                return cell

    def mutate(self, cell: NB101Cell, rng: np.random.Generator) -> NB101Cell:
        """``propose_mutation`` redrawn until the child is valid, of a different fingerprint, and (when
        restricted) in the table."""
        old_key = self.key(cell)
        while True:
            child = propose_mutation(cell, rng)
            key = self._table_key(child) if self.restrict_to_table else self._fingerprint(child)  # None: not allowed
            if key is not None and key != old_key:
                return child

    # encoding, network, cost --------------------------------------------------------------

    def encode(self, cell: NB101Cell) -> ArchGraph:
        """The pruned cell padded to 7 nodes: ``pad`` nodes (no edges) sit before the output. Carries the
        cell-cost attributes of ``nassearch.graph`` (``cell_flops``/``cell_params`` of each node in each of
        the 9 cells, zero for input and padding) and graph attributes ``flops``/``params`` (= ``cost``)."""
        matrix, ops = check_cell(cell)
        n = len(ops)
        order = list(range(n - 1)) + [MAX_VERTICES - 1]
        adjacency = np.zeros((MAX_VERTICES, MAX_VERTICES), dtype=np.uint8)
        adjacency[np.ix_(order, order)] = matrix
        names = list(ops[:-1]) + ["pad"] * (MAX_VERTICES - n) + [OUTPUT]
        mask = np.array([name != "pad" for name in names], dtype=np.float32)
        node_params, node_flops = self._node_costs(matrix, ops)
        cell_params = np.zeros((MAX_VERTICES, node_params.shape[1]))
        cell_flops = np.zeros_like(cell_params)
        cell_params[order], cell_flops[order] = node_params, node_flops
        base_params, base_flops = self._base_cost
        return ArchGraph(ops=[GRAPH_VOCAB.index(o) for o in names], adjacency=adjacency, op_vocab=GRAPH_VOCAB,
                         node_attrs={"mask": mask, "cell_flops": cell_flops, "cell_params": cell_params},
                         graph_attrs={"flops": base_flops + float(node_flops.sum()),
                                      "params": base_params + float(node_params.sum())})

    @cached_property
    def _cell_geometry(self) -> list[tuple[int, int, int]]:
        """(input channels, output channels, resolution) of each cell (module) of the network, in order."""
        geometry, channels, size = [], self.network["stem_channels"], 32
        for stack in range(self.network["num_stacks"]):
            c_out = channels
            if stack > 0:
                c_out, size = channels * 2, size // 2
            for _ in range(self.network["modules_per_stack"]):
                geometry.append((channels, c_out, size))
                channels = c_out
        return geometry

    def _unit_cost(self, kind: str, c_in: int, c_out: int, size: int) -> tuple[float, float]:
        """(params, FLOPs) in millions of one built vertex operation or input projection, measured once."""
        key = (kind, c_in, c_out, size)
        if key not in self._unit_costs:
            module = (nn.MaxPool2d(3, stride=1, padding=1) if kind == MAXPOOL3X3
                      else ConvBnRelu(c_in, c_out, 3 if kind == CONV3X3 else 1))
            cost = model_cost(module, (c_in, size, size))
            self._unit_costs[key] = (cost.params_m, cost.flops_m)
        return self._unit_costs[key]

    def _node_costs(self, matrix: np.ndarray, ops: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(params, FLOPs) in millions, arrays (V, num_cells), of each vertex of a pruned cell in each cell
        of the network: a vertex's operation plus the 1x1 projection of the cell input feeding it (the
        output vertex: its input projection only; concatenation, sums and truncation are free)."""
        n = len(ops)
        params, flops = np.zeros((n, len(self._cell_geometry))), np.zeros((n, len(self._cell_geometry)))
        for i, (c_in, c_out, size) in enumerate(self._cell_geometry):
            channels = vertex_channels(c_in, c_out, matrix)
            for v in range(1, n):
                units = [(ops[v], channels[v], channels[v])] if v < n - 1 else []
                if matrix[0, v]:
                    units.append((CONV1X1, c_in, channels[v]))
                for kind, a, b in units:
                    unit_params, unit_flops = self._unit_cost(kind, a, b, size)
                    params[v, i] += unit_params
                    flops[v, i] += unit_flops
        return params, flops

    @cached_property
    def _base_cost(self) -> tuple[float, float]:
        """(params, FLOPs) in millions of everything outside the cells (stem, pooling, classifier), measured
        on the built network of the smallest cell."""
        cell = NB101Cell.from_arrays([[0, 1], [0, 0]], (INPUT, OUTPUT))
        matrix, ops = check_cell(cell)
        total = self.cost(cell)
        params, flops = self._node_costs(matrix, ops)
        return total.params_m - float(params.sum()), total.flops_m - float(flops.sum())

    def cost_batch(self, archs: Sequence[NB101Cell]) -> tuple[np.ndarray, np.ndarray]:
        """``cost`` without building networks: the base network plus the measured cost of every vertex."""
        base_params, base_flops = self._base_cost
        costs = [self._node_costs(*check_cell(cell)) for cell in archs]
        return (np.array([base_params + p.sum() for p, _ in costs]),
                np.array([base_flops + f.sum() for _, f in costs]))

    def build_model(self, cell: NB101Cell, **overrides: Any) -> NB101Network:
        matrix, ops = check_cell(cell)
        return NB101Network(matrix, ops, **{**self.network, **overrides})

    def cost(self, cell: NB101Cell) -> ModelCost:
        return model_cost(self.build_model(cell), (3, 32, 32))

    def enumerate(self) -> Iterator[NB101Cell]:
        """Every unique cell (one representative per fingerprint; computed once, then cached in
        the cache directory: ``$NASSEARCH_CACHE``, else ``~/.cache/nassearch``), or the table's cells when restricted."""
        if self.restrict_to_table:
            return iter(self.table_cells[0])
        return iter(enumerate_cells(cache=default_cache()).cells())

    def size(self) -> int:
        return len(self.table_cells[0]) if self.restrict_to_table else 423_624


def degree_profile(matrix: np.ndarray, ops: Sequence[str]) -> tuple[tuple[int, int, str], ...]:
    """The sorted (in-degree, out-degree, op) of every vertex of a pruned cell: equal for cells of one
    fingerprint (isomorphic graphs), so a cheap first test of membership in a set of cells."""
    return tuple(sorted(zip(matrix.sum(axis=0).tolist(), matrix.sum(axis=1).tolist(), ops)))


#: Upper-triangle masks by vertex count (where an edge may flip).
_UPPER = {n: np.triu(np.ones((n, n), dtype=bool), 1) for n in range(2, MAX_VERTICES + 1)}


def propose_mutation(cell: NB101Cell, rng: np.random.Generator) -> NB101Cell:
    """One mutation draw (not checked for validity): each upper-triangular edge flips with probability
    1/14, each interior op changes to another op with probability 1/10."""
    n = cell.num_vertices
    flips = (rng.random((n, n)) < EDGE_MUTATION_PROB) & _UPPER[n]
    matrix = cell.array() ^ flips
    ops = list(cell.ops)
    for v in range(1, n - 1):
        if rng.random() < OP_MUTATION_PROB:
            others = [op for op in OPS if op != ops[v]]
            ops[v] = others[int(rng.integers(len(others)))]
    return NB101Cell.from_arrays(matrix, ops)
