"""The DARTS cell search space (Liu et al., 2019), as NAS-Bench-301 and the DARTS paper define it.

An architecture is a :class:`~nassearch.spaces.darts_notation.Genotype`: a normal and a reduction cell, each a list of (operation, input)
pairs, two pairs per intermediate node (pair ``i`` feeds node ``i // 2 + 2``; nodes 0 and 1 are the
outputs of the two previous cells), and the nodes whose concatenation is the cell's output. Its string
is DARTS' own ``Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5], ...)``.
:func:`~nassearch.spaces.darts_notation.parse_genotype` accepts any genotype the network can build (literature cells such as NASNet-A
have five nodes); the space itself holds cells of four nodes whose two inputs differ, with operations
from ``SEARCH_OPS`` and concatenation ``[2, 3, 4, 5]``. The network is DARTS' ``NetworkCIFAR``
(:mod:`nassearch.spaces.darts_network`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import cached_property

import numpy as np

from nassearch.errors import InvalidArchitecture
from nassearch.graph import ArchGraph
from nassearch.model_cost import ModelCost, model_cost
from nassearch.spaces.base import SearchSpace
from nassearch.validation import require_positive
from nassearch.spaces.darts_network import NetworkCIFAR
from nassearch.spaces.darts_genotypes import known_genotype
from nassearch.spaces.darts_notation import CELLS, Genotype, Pairs, format_genotype, parse_genotype

#: The DARTS operations, in DARTS' order.
PRIMITIVES: tuple[str, ...] = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
                               "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
#: Operations of the space's architectures (sampling, mutation): the primitives without ``none``.
SEARCH_OPS: tuple[str, ...] = PRIMITIVES[1:]
#: Node vocabulary of the encoded graph: the two cell inputs, the primitives, the cell output.
GRAPH_VOCAB: tuple[str, ...] = ("c_k-2", "c_k-1", *PRIMITIVES, "output")
#: Intermediate nodes per cell, and the concatenation, of the space's architectures.
NODES = 4
SPACE_CONCAT: tuple[int, ...] = (2, 3, 4, 5)
def _cell_graph(pairs: Pairs, concat: tuple[int, ...]) -> tuple[list[int], np.ndarray]:
    """Op-on-node form of one cell: its two inputs, one node per pair, the output; (ops, adjacency)."""
    n = len(pairs) + 3
    adjacency = np.zeros((n, n), dtype=np.uint8)
    for p, (_, index) in enumerate(pairs):
        sources = [index] if index < 2 else [2 * index - 2, 2 * index - 1]  # the pair nodes of node ``index``
        adjacency[sources, p + 2] = 1
    for node in concat:
        adjacency[[2 * node - 2, 2 * node - 1], n - 1] = 1
    ops = [0, 1, *(2 + PRIMITIVES.index(op) for op, _ in pairs), len(GRAPH_VOCAB) - 1]
    return ops, adjacency


def _nodes(pairs: Pairs) -> list[Pairs]:
    """The pairs of a cell grouped by intermediate node (two per node)."""
    return [pairs[i:i + 2] for i in range(0, len(pairs), 2)]


def _space_problem(cell: str, pairs: Pairs, concat: tuple[int, ...]) -> str | None:
    """Why one (structurally valid) cell lies outside the space, or None."""
    if len(pairs) != 2 * NODES:
        return f"the {cell} cell has {len(pairs) // 2} intermediate nodes, the space's cells {NODES}"
    if concat != SPACE_CONCAT:
        return f"{cell}_concat is {list(concat)}, the space's cells concatenate {list(SPACE_CONCAT)}"
    for i, (op, _) in enumerate(pairs):
        if op not in SEARCH_OPS:
            return f"{cell} pair {i} uses {op!r}; the space's operations are {', '.join(SEARCH_OPS)}"
    for node, ((_, first), (_, second)) in enumerate(_nodes(pairs), start=2):
        if first == second:
            return f"{cell} node {node} takes input {first} twice; the space's nodes take two distinct inputs"
    return None


class DartsSpace(SearchSpace):
    """The DARTS / NAS-Bench-301 cell space with DARTS' CIFAR network (20 cells, 36 channels by default)."""

    name = "darts"

    def __init__(self, init_channels: int = 36, layers: int = 20, num_classes: int = 10, auxiliary: bool = True,
                 input_size: int = 32) -> None:
        require_positive(init_channels=init_channels, layers=layers, num_classes=num_classes,
                         input_size=input_size)
        self.init_channels = init_channels
        self.layers = layers
        self.num_classes = num_classes
        self.auxiliary = auxiliary
        self.input_size = input_size

    def validate(self, arch: Genotype) -> None:
        """Raise InvalidArchitecture unless ``arch`` is a Genotype of this space (see the module docstring)."""
        if not isinstance(arch, Genotype):
            raise InvalidArchitecture(f"a DARTS architecture must be a Genotype, got {type(arch).__name__}")
        for cell in CELLS:
            problem = _space_problem(cell, getattr(arch, cell), getattr(arch, f"{cell}_concat"))
            if problem:
                raise InvalidArchitecture(f"genotype not in the DARTS search space: {problem}")

    def sample(self, rng: np.random.Generator) -> Genotype:
        """Per cell and node: two distinct inputs uniformly from the earlier nodes, operations uniformly."""
        cells = []
        for _ in CELLS:
            pairs = []
            for k in range(NODES):
                inputs = rng.choice(k + 2, 2, replace=False)
                ops = rng.integers(len(SEARCH_OPS), size=2)
                pairs += [(SEARCH_OPS[op], int(index)) for op, index in zip(ops, inputs)]
            cells.append(tuple(pairs))
        return Genotype(cells[0], SPACE_CONCAT, cells[1], SPACE_CONCAT)

    def mutate(self, arch: Genotype, rng: np.random.Generator) -> Genotype:
        """NAS-Bench-301's rule: in one random pair of one random cell, change the operation or (with
        probability 1/2, when the node has another free input) the input."""
        self.validate(arch)
        cell = CELLS[int(rng.integers(len(CELLS)))]
        pairs = list(getattr(arch, cell))
        i = int(rng.integers(len(pairs)))
        op, index = pairs[i]
        free = [j for j in range(i // 2 + 2) if j not in (index, pairs[i ^ 1][1])]
        if rng.random() < 0.5 and free:
            index = free[int(rng.integers(len(free)))]
        else:
            others = [o for o in SEARCH_OPS if o != op]
            op = others[int(rng.integers(len(others)))]
        pairs[i] = (op, index)
        return dataclasses.replace(arch, **{cell: tuple(pairs)})

    def crossover(self, a: Genotype, b: Genotype, rng: np.random.Generator) -> Genotype:
        """Each node of each cell (both of its pairs) from ``a`` or ``b`` with probability 1/2."""
        self.validate(a)
        self.validate(b)
        from_a = rng.random((len(CELLS), NODES)) < 0.5
        cells = {}
        for c, cell in enumerate(CELLS):
            nodes = zip(_nodes(getattr(a, cell)), _nodes(getattr(b, cell)))
            cells[cell] = tuple(pair for k, (node_a, node_b) in enumerate(nodes)
                                for pair in (node_a if from_a[c, k] else node_b))
        return dataclasses.replace(a, **cells)

    def key(self, arch: Genotype) -> str:
        """The string of ``arch`` with each node's two pairs sorted by (input, op)."""
        self.validate(arch)
        cells = {cell: tuple(pair for node in _nodes(getattr(arch, cell))
                             for pair in sorted(node, key=lambda p: (p[1], p[0])))
                 for cell in CELLS}
        return format_genotype(dataclasses.replace(arch, **cells))

    def encode(self, arch: Genotype) -> ArchGraph:
        """Both cells as one op-on-node graph (11 nodes each; the normal cell's output feeds the reduction
        cell's inputs), with ``cells`` 0 = normal, 1 = reduce."""
        self.validate(arch)
        normal_ops, normal_adj = _cell_graph(arch.normal, arch.normal_concat)
        reduce_ops, reduce_adj = _cell_graph(arch.reduce, arch.reduce_concat)
        n = len(normal_ops)
        adjacency = np.zeros((2 * n, 2 * n), dtype=np.uint8)
        adjacency[:n, :n] = normal_adj
        adjacency[n:, n:] = reduce_adj
        adjacency[n - 1, [n, n + 1]] = 1
        return ArchGraph(ops=np.array(normal_ops + reduce_ops), adjacency=adjacency, op_vocab=GRAPH_VOCAB,
                         cells=np.repeat([0, 1], n))

    def to_str(self, arch: Genotype) -> str:
        self.validate(arch)
        return format_genotype(arch)

    def from_str(self, text: str) -> Genotype:
        arch = parse_genotype(text)
        self.validate(arch)
        return arch

    def parse(self, text: str) -> Genotype:
        """A ``Genotype(...)`` string or a published genotype's name (``DARTS_V2``, ...; ``darts_genotypes``)."""
        if "(" in text:
            return self.from_str(text)
        genotype = known_genotype(text)
        try:
            self.validate(genotype)
        except InvalidArchitecture as exc:
            raise InvalidArchitecture(f"{text}: {exc}") from None
        return genotype

    def build_model(self, arch: Genotype, num_classes: int | None = None, init_channels: int | None = None,
                    layers: int | None = None, auxiliary: bool | None = None,
                    drop_path_prob: float = 0.0) -> NetworkCIFAR:
        """DARTS' NetworkCIFAR of ``arch``; unset arguments take the space's settings."""
        self.validate(arch)
        return NetworkCIFAR(
            arch,
            C=self.init_channels if init_channels is None else init_channels,
            num_classes=self.num_classes if num_classes is None else num_classes,
            layers=self.layers if layers is None else layers,
            auxiliary=self.auxiliary if auxiliary is None else auxiliary,
            drop_path_prob=drop_path_prob,
        )

    def cost(self, arch: Genotype) -> ModelCost:
        """Params and FLOPs of the network without its auxiliary head (as DARTS reports them), for one
        ``input_size`` RGB image."""
        return model_cost(self.build_model(arch, auxiliary=False), (3, self.input_size, self.input_size))

    def cost_batch(self, archs: Sequence[Genotype]) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised ``cost``. A cell's operations all see the same channels, and the same resolution
        except that a reduction cell's operations on its two inputs have stride 2, so the network's cost
        is a base plus one term per pair that depends only on (cell, input is a cell input, operation);
        the terms are measured once on 27 built networks."""
        base, terms = self._cost_terms
        features = np.zeros((len(archs), *terms.shape[:-1]), dtype=np.int64)
        for a, arch in enumerate(archs):
            self.validate(arch)
            for c, cell in enumerate(CELLS):
                for op, index in getattr(arch, cell):
                    features[a, c, int(index >= 2), SEARCH_OPS.index(op)] += 1
        total = base + np.einsum("acio,ciok->ak", features, terms)
        return total[:, 0], total[:, 1]

    @cached_property
    def _cost_terms(self) -> tuple[np.ndarray, np.ndarray]:
        """(base (2,), terms (cells, 2, ops, 2)) of ``cost_batch``, (params, FLOPs) in the last axis.

        Reference: every pair a max-pool; node k + 2 takes inputs 0 and k + 1 (so pairs 3, 5, 7 read
        intermediate nodes). Terms are differences to the max-pool on a cell input (that term is 0).
        """
        pairs = tuple(("max_pool_3x3", index) for k in range(NODES) for index in (0, k + 1))
        reference = Genotype(pairs, SPACE_CONCAT, pairs, SPACE_CONCAT)

        def measured(cell: str, pair: int, op: str, index: int) -> np.ndarray:
            changed = list(pairs)
            changed[pair] = (op, index)
            cost = self.cost(dataclasses.replace(reference, **{cell: tuple(changed)}))
            return np.array([cost.params_m, cost.flops_m])

        reference_cost = self.cost(reference)
        at_reference = np.array([reference_cost.params_m, reference_cost.flops_m])
        terms = np.zeros((len(CELLS), 2, len(SEARCH_OPS), 2))
        for c, cell in enumerate(CELLS):
            intermediate_pool = measured(cell, 3, "max_pool_3x3", 1) - at_reference  # pair 3 reads node 2
            terms[c, 1, 0] = -intermediate_pool
            for o, op in enumerate(SEARCH_OPS[1:], start=1):
                terms[c, 0, o] = measured(cell, 0, op, 0) - at_reference
                terms[c, 1, o] = measured(cell, 3, op, 2) - at_reference + terms[c, 1, 0]
        base = at_reference - 3 * terms[:, 1, 0].sum(axis=0)
        return base, terms
