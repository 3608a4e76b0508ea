"""NAS-Bench-201 (Dong & Yang, 2020): a 4-node cell with 6 edges, each carrying one of 5 operations.

An architecture is a tuple of 6 operation indices (into ``OPS``) in the official string's edge order:
node 1 <- 0; node 2 <- 0, 1; node 3 <- 0, 1, 2. Its string is the official
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``. The network is NB201's CIFAR "TinyNetwork": a 3x3 stem,
three stages of ``N`` cells with ``C``, ``2C``, ``4C`` channels separated by residual reduction blocks,
BatchNorm + ReLU, global average pooling and a linear classifier.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from functools import cached_property

import numpy as np
import torch
from torch import nn

from nassearch.validation import shown
from nassearch.errors import InvalidArchitecture
from nassearch.graph import ArchGraph
from nassearch.model_cost import ModelCost, model_cost
from nassearch.spaces.base import SearchSpace, arch_text
from nassearch.validation import require_positive
from nassearch.spaces.layers import ReLUConvBN

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: (source node, destination node) of each edge, in the order of the official string.
EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
NUM_EDGES = len(EDGES)
#: Node vocabulary of the encoded graph: input, the five operations, output.
GRAPH_VOCAB: tuple[str, ...] = ("input", *OPS, "output")
STRING_FORMAT = "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"

NB201Arch = tuple[int, ...]
#: One edge, ``op~source``: ASCII letters, digits and '_', then up to 9 ASCII digits (``\d`` would take any
#: script's digits, and ``int`` refuses thousands of them).
_TOKEN = re.compile(r"([a-z0-9_]+)~([0-9]{1,9})", re.ASCII)


def _arch_error(text: str, problem: str) -> InvalidArchitecture:
    return InvalidArchitecture(
        f"malformed NAS-Bench-201 architecture {shown(text)}: {problem}. "
        f"Expected {STRING_FORMAT} with op one of {', '.join(OPS)}"
    )


def parse_arch(text: str) -> NB201Arch:
    """Parse an official NB201 string into a tuple of op indices, naming any problem found."""
    text = arch_text(text, lambda problem: _arch_error(text, problem))
    if any(c.isspace() for c in text):
        raise _arch_error(text, "it contains whitespace; write it without spaces")
    nodes = text.split("+")
    if len(nodes) != 3:
        raise _arch_error(text, f"found {len(nodes)} node group(s) separated by '+', expected 3")
    ops: list[int] = []
    for node, group in enumerate(nodes, start=1):
        if not (group.startswith("|") and group.endswith("|")) or len(group) < 2:
            raise _arch_error(text, f"node {node} group {shown(group)} must start and end with '|'")
        tokens = group[1:-1].split("|")
        if len(tokens) != node:
            raise _arch_error(text, f"node {node} has {len(tokens)} input edge(s), expected {node}")
        for source, token in enumerate(tokens):
            match = _TOKEN.fullmatch(token)
            if not match:
                raise _arch_error(text, f"edge {shown(token)} is not of the form op~source")
            op, src = match.groups()
            if op not in OPS:
                raise _arch_error(text, f"unknown operation {shown(op)}")
            if src != str(source):
                raise _arch_error(text, f"node {node} edge {source} names source {src}, expected {source}")
            ops.append(OPS.index(op))
    return tuple(ops)


def format_arch(arch: NB201Arch) -> str:
    """The official NB201 string of an op-index tuple."""
    names = [OPS[i] for i in arch]
    return "|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*names)


def op_matrix(archs: Sequence[NB201Arch] | np.ndarray) -> np.ndarray:
    """Architectures as an int64 array (n, 6), checked: six op indices each, all in range."""
    ops = np.asarray(archs, dtype=np.int64)
    if ops.ndim != 2 or ops.shape[1] != NUM_EDGES:
        raise InvalidArchitecture(f"NAS-Bench-201 architectures need {NUM_EDGES} op indices each; "
                                  f"got an array of shape {ops.shape}")
    if ops.size and (ops.min() < 0 or ops.max() >= len(OPS)):
        raise InvalidArchitecture(f"NAS-Bench-201 op indices must lie in 0..{len(OPS) - 1}")
    return ops


def arch_codes(archs: Sequence[NB201Arch] | np.ndarray) -> np.ndarray:
    """Base-5 integer code of each architecture (edge 0 least significant): a dense id in [0, 5^6)."""
    return op_matrix(archs) @ (len(OPS) ** np.arange(NUM_EDGES, dtype=np.int64))


# ---------------------------------------------------------------------------------------------
# The network (NB201 TinyNetwork with the inferred cell).


class Zero(nn.Module):
    """The ``none`` operation: a zero tensor of the input's shape."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def _make_op(name: str, channels: int) -> nn.Module:
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1, 0)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1, 1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise InvalidArchitecture(f"unknown NAS-Bench-201 operation {name!r}")


class Cell(nn.Module):
    """The NB201 cell: node j is the sum of its incoming edges' operations; node 3 is the output."""

    def __init__(self, arch: NB201Arch, channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(_make_op(OPS[op], channels) for op in arch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for dst in (1, 2, 3):
            nodes.append(sum(op(nodes[src]) for (src, d), op in zip(EDGES, self.edges) if d == dst))
        return nodes[3]


class ResidualReduction(nn.Module):
    """NB201's reduction block: a stride-2 ResNet basic block with an avg-pool + 1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.shortcut(x)


class NB201Network(nn.Module):
    """Stem, 3 stages of ``cells_per_stage`` cells (C, 2C, 4C), global pooling, classifier."""

    def __init__(self, arch: NB201Arch, channels: int = 16, cells_per_stage: int = 5, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        layers: list[nn.Module] = []
        c = channels
        for stage in range(3):
            if stage > 0:
                layers.append(ResidualReduction(c, 2 * c))
                c *= 2
            layers.extend(Cell(arch, c) for _ in range(cells_per_stage))
        self.cells = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.cells(self.stem(x))))


# ---------------------------------------------------------------------------------------------


def _encoding_adjacency() -> np.ndarray:
    """Adjacency of the op-on-node graph: input, one node per edge (in EDGES order), output."""
    n = NUM_EDGES + 2
    adjacency = np.zeros((n, n), dtype=np.uint8)
    for e, (src, dst) in enumerate(EDGES, start=1):
        if src == 0:
            adjacency[0, e] = 1
        for f, (_, into) in enumerate(EDGES, start=1):
            if into == src:
                adjacency[f, e] = 1
        if dst == 3:
            adjacency[e, n - 1] = 1
    return adjacency


_ADJACENCY = _encoding_adjacency()
#: ``node_attrs["cell_edge"]`` of the encoded graph: the (source, destination) cell node of each edge node.
_CELL_EDGE = np.array([(-1, -1), *EDGES, (-1, -1)], dtype=np.int64)


class NasBench201Space(SearchSpace):
    """The NAS-Bench-201 cell space (15,625 cells) with the CIFAR network and its cost model."""

    name = "nasbench201"

    def __init__(self, channels: int = 16, cells_per_stage: int = 5, num_classes: int = 10,
                 input_size: int = 32) -> None:
        require_positive(channels=channels, cells_per_stage=cells_per_stage, num_classes=num_classes,
                         input_size=input_size)
        self.channels = channels
        self.cells_per_stage = cells_per_stage
        self.num_classes = num_classes
        self.input_size = input_size

    def sample(self, rng: np.random.Generator) -> NB201Arch:
        return tuple(int(i) for i in rng.integers(0, len(OPS), size=NUM_EDGES))

    def sample_batch(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` uniform architectures as an int array (n, 6)."""
        return rng.integers(0, len(OPS), size=(n, NUM_EDGES))

    def mutate(self, arch: NB201Arch, rng: np.random.Generator) -> NB201Arch:
        """Change the operation of one uniformly chosen edge to a different operation."""
        edge = int(rng.integers(NUM_EDGES))
        new_op = int(rng.integers(len(OPS) - 1))
        new_op += new_op >= arch[edge]
        return tuple(new_op if i == edge else op for i, op in enumerate(arch))

    def crossover(self, a: NB201Arch, b: NB201Arch, rng: np.random.Generator) -> NB201Arch:
        """Uniform crossover: each edge's operation from either parent."""
        take_a = rng.random(NUM_EDGES) < 0.5
        return tuple(int(x if t else y) for x, y, t in zip(a, b, take_a))

    def encode(self, arch: NB201Arch) -> ArchGraph:
        """Op-on-node graph (input, one node per edge, output) with the cell-cost attributes of
        ``nassearch.graph``: ``cell_edge``, ``cell_flops``/``cell_params`` (each edge's operation in each
        of the ``3 * cells_per_stage`` cells) and graph attributes ``flops``/``params`` (= ``cost``)."""
        self.validate(arch)
        ops = np.array([0, *(op + 1 for op in arch), len(GRAPH_VOCAB) - 1], dtype=np.int64)
        cell_params, cell_flops = self._cell_unit_costs
        no_cost = np.zeros((1, cell_flops.shape[1]))
        params, flops = self.cost_batch([arch])
        return ArchGraph(ops=ops, adjacency=_ADJACENCY.copy(), op_vocab=GRAPH_VOCAB,
                         node_attrs={"cell_edge": _CELL_EDGE.copy(),
                                     "cell_flops": np.concatenate([no_cost, cell_flops[list(arch)], no_cost]),
                                     "cell_params": np.concatenate([no_cost, cell_params[list(arch)], no_cost])},
                         graph_attrs={"flops": float(flops[0]), "params": float(params[0])})

    def validate(self, arch: NB201Arch) -> None:
        """Raise InvalidArchitecture unless ``arch`` is a tuple of 6 op indices in range."""
        if (not isinstance(arch, tuple) or len(arch) != NUM_EDGES
                or not all(isinstance(op, (int, np.integer)) and not isinstance(op, bool) and 0 <= op < len(OPS)
                        for op in arch)):
            raise InvalidArchitecture(
                f"NAS-Bench-201 architecture must be a tuple of {NUM_EDGES} op indices in 0..{len(OPS) - 1}, "
                f"got {shown(arch)}")

    def to_str(self, arch: NB201Arch) -> str:
        self.validate(arch)
        return format_arch(arch)

    def from_str(self, text: str) -> NB201Arch:
        return parse_arch(text)

    def build_model(self, arch: NB201Arch, num_classes: int | None = None) -> NB201Network:
        self.validate(arch)
        classes = self.num_classes if num_classes is None else num_classes
        return NB201Network(arch, self.channels, self.cells_per_stage, classes)

    def cost(self, arch: NB201Arch) -> ModelCost:
        """Params and FLOPs of the built network for one ``input_size`` RGB image."""
        return model_cost(self.build_model(arch), (3, self.input_size, self.input_size))

    @cached_property
    def _unit_costs(self) -> tuple[np.ndarray, np.ndarray]:
        """(base, per-op) costs measured on built networks: cost is additive over the 6 edges."""
        empty = (0,) * NUM_EDGES
        base = self.cost(empty)
        per_op = [self.cost((op,) + empty[1:]) for op in range(len(OPS))]
        params = np.array([base.params_m] + [c.params_m - base.params_m for c in per_op])
        flops = np.array([base.flops_m] + [c.flops_m - base.flops_m for c in per_op])
        return params, flops

    @cached_property
    def _cell_unit_costs(self) -> tuple[np.ndarray, np.ndarray]:
        """(params, FLOPs) in millions, arrays (len(OPS), num_cells): one edge's operation in each cell of
        the network, measured on the built operation at that cell's channels and resolution."""
        params = np.zeros((len(OPS), 3 * self.cells_per_stage))
        flops = np.zeros_like(params)
        for stage in range(3):
            c, size = self.channels * 2 ** stage, -(-self.input_size // 2 ** stage)
            cells = slice(stage * self.cells_per_stage, (stage + 1) * self.cells_per_stage)
            for op, name in enumerate(OPS):
                unit = model_cost(_make_op(name, c), (c, size, size))
                params[op, cells], flops[op, cells] = unit.params_m, unit.flops_m
        return params, flops

    def cost_batch(self, archs: Sequence[NB201Arch]) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised ``cost``: base network plus the measured cost of each edge's operation."""
        ops = op_matrix(archs)
        params, flops = self._unit_costs
        return params[0] + params[1:][ops].sum(axis=1), flops[0] + flops[1:][ops].sum(axis=1)

    def enumerate(self) -> Iterator[NB201Arch]:
        return iter(itertools.product(range(len(OPS)), repeat=NUM_EDGES))

    def size(self) -> int:
        return len(OPS) ** NUM_EDGES
