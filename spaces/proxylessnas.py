"""The ProxylessNAS space (Cai et al., 2019) as searched by Neural Predictor (Wen et al., 2020, supplement
§3.2, Fig. 2 and Table 2).

The network is a MobileNetV2-like chain at 224x224: a 3x3 stride-2 convolution (``stem``, 32 channels),
22 searchable layers in 7 stages, a 1x1 convolution (``last``, 1280 channels), global average pooling and
a linear classifier. Every convolution is followed by BatchNorm and (except each block's 1x1 projection)
ReLU6, as in ProxylessNAS.

====== ======== ======== ======= ============================================================
stage  layers   channels stride  choices of each layer
====== ======== ======== ======= ============================================================
0      1        16       1       ``FIRST_OPS``: IB3x3-1, IB5x5-1, IB7x7-1 (expansion 1)
1      4        24       2       ``OPS``: IB3x3-3, IB5x5-3, IB7x7-3, IB3x3-6, IB5x5-6, IB7x7-6,
2      4        40       2       zero; zero is forbidden in the first layer of every stage
3      4        80       2
4      4        96       1
5      4        192      2
6      1        320      1
====== ======== ======== ======= ============================================================

An architecture is a tuple of 22 indices, one per layer, written as 003 Table 2 writes it:
``(0, 0, 6, 0, 0, 0, 0, 0, 6, 1, 4, 6, 2, 4, 0, 1, 5, 0, 2, 6, 2, 3)``. Index ``i`` of layer 1 selects
``FIRST_OPS[i]`` (kernel 3, 5, 7; expansion 1); index ``i`` of layers 2-22 selects ``OPS[i]``: 0 IB3x3-3,
1 IB5x5-3, 2 IB7x7-3, 3 IB3x3-6, 4 IB5x5-6, 5 IB7x7-6, 6 zero ("IBkxk-e": an inverted bottleneck with a
kxk depthwise convolution and expansion factor e). ``from_str`` reads the tuple with any spacing around its
commas (``(0,0,6,...)`` too); ``to_str`` writes the canonical ``", "``-separated form. The space has
``3 * 6**6 * 7**15`` (about 6.64e17) members.

**Identity (``key``).** A stage's first layer changes the channels or the resolution, so it is never
zero; every later layer of a stage keeps both and has an identity shortcut, so a zero layer there computes
``x + 0 = x``: it is the identity and holds no parameters. A stage ``[A, zero, B, zero]`` therefore computes
``B(A(x))`` with exactly the parameters of ``[A, B, zero, zero]``: the same network. ``key`` (and ``encode``
and ``build_model``) use the canonical form in which each stage's zero layers follow its other layers
(``canonical``). The space holds ``3 * (6 * 259)**5 * 6`` (about 5.3e16) distinct networks: a 4-layer stage
has 6 first layers times 1 + 6 + 36 + 216 = 259 sequences of at most 3 non-zero later layers.

**Widths.** ``Widths`` holds the stem, first-layer, per-stage and last channels; the defaults are Fig. 2's.
The published ProxylessNAS-GPU and ProxylessNAS-Mobile networks are in this space with their own widths
(``KNOWN_ARCHITECTURES``); ``build_model(arch, widths=...)`` builds any tuple at other widths.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch import nn

from nassearch.errors import InvalidArchitecture
from nassearch.graph import ArchGraph
from nassearch.model_cost import FlopsConvention, ModelCost, check_flops_convention, measure_cost
from nassearch.spaces.base import SearchSpace, arch_text
from nassearch.validation import require_positive, shown

FIRST_OPS: tuple[str, ...] = ("IB3x3-1", "IB5x5-1", "IB7x7-1")
OPS: tuple[str, ...] = ("IB3x3-3", "IB5x5-3", "IB7x7-3", "IB3x3-6", "IB5x5-6", "IB7x7-6", "zero")
ZERO = OPS.index("zero")
#: (kernel, expansion) of each index of ``FIRST_OPS`` and ``OPS`` (zero: (0, 0)).
FIRST_OP_SHAPES: tuple[tuple[int, int], ...] = ((3, 1), (5, 1), (7, 1))
OP_SHAPES: tuple[tuple[int, int], ...] = ((3, 3), (5, 3), (7, 3), (3, 6), (5, 6), (7, 6), (0, 0))
#: Layers and stride of each stage (stage 0 is the first, expansion-1 layer).
STAGE_DEPTHS: tuple[int, ...] = (1, 4, 4, 4, 4, 4, 1)
STAGE_STRIDES: tuple[int, ...] = (1, 2, 2, 2, 1, 2, 1)
NUM_LAYERS = sum(STAGE_DEPTHS)
#: Stage and position in its stage (0 = first) of each of the 22 layers.
LAYER_STAGE: tuple[int, ...] = tuple(s for s, depth in enumerate(STAGE_DEPTHS) for _ in range(depth))
LAYER_POSITION: tuple[int, ...] = tuple(p for depth in STAGE_DEPTHS for p in range(depth))
#: The valid indices of each layer: 0..2 for layer 1, 0..5 for a stage's first layer, 0..6 otherwise.
LAYER_CHOICES: tuple[tuple[int, ...], ...] = tuple(
    tuple(range(len(FIRST_OPS))) if stage == 0 else tuple(range(ZERO)) if position == 0 else tuple(range(len(OPS)))
    for stage, position in zip(LAYER_STAGE, LAYER_POSITION))
#: Node vocabulary of the encoded graph: the three first-layer operations, then ``OPS``.
GRAPH_VOCAB: tuple[str, ...] = (*FIRST_OPS, *OPS)
STRING_FORMAT = "(i1, i2, ..., i22), 22 operation indices"

ProxylessArch = tuple[int, ...]


@dataclass(frozen=True)
class Widths:
    """Channel widths of the backbone: stem convolution, first layer, the six searchable stages, last 1x1
    convolution. The defaults are 003 Fig. 2's (the ProxylessNAS search space)."""

    stem: int = 32
    first: int = 16
    stages: tuple[int, ...] = (24, 40, 80, 96, 192, 320)
    last: int = 1280

    def __post_init__(self) -> None:
        stages = tuple(int(c) for c in self.stages)
        if len(stages) != len(STAGE_DEPTHS) - 1:
            raise ValueError(f"Widths.stages needs {len(STAGE_DEPTHS) - 1} channel counts, got {len(stages)}")
        object.__setattr__(self, "stages", stages)
        require_positive(stem=self.stem, first=self.first, last=self.last,
                         **{f"stages[{i}]": c for i, c in enumerate(stages)})

    def stage_channels(self) -> tuple[int, ...]:
        """Output channels of stages 0..6."""
        return (self.first, *self.stages)


@dataclass(frozen=True)
class KnownArchitecture:
    """A published architecture of the space: its 22-index tuple, the widths it was built with (None: the
    space's, Fig. 2's), and what its paper reports (``latency_ms``, ``top1`` and ``top1_std`` in percent,
    ``params_m``)."""

    arch: ProxylessArch
    source: str
    widths: Widths | None = None
    reported: dict[str, float] = field(default_factory=dict)


_TABLE2 = "Wen et al. 2020, supplement Table 2 (Neural Predictor frontier, 360 epochs)"
#: The nine frontier architectures of 003 Table 2, fastest first, with the reported TPU inference time and
#: top-1 ImageNet test accuracy (mean and std).
TABLE2_ARCHITECTURES: dict[str, KnownArchitecture] = {
    f"neural_predictor_{i}": KnownArchitecture(arch, _TABLE2, None,
                                               {"latency_ms": ms, "top1": top1, "top1_std": std})
    for i, (ms, top1, std, arch) in enumerate([
        (75.05, 73.76, 0.08, (0, 0, 6, 0, 0, 0, 0, 0, 6, 1, 4, 6, 2, 4, 0, 1, 5, 0, 2, 6, 2, 3)),
        (75.10, 74.07, 0.09, (0, 0, 6, 0, 6, 1, 2, 0, 6, 3, 0, 1, 5, 2, 0, 0, 1, 4, 0, 6, 5, 3)),
        (75.36, 73.86, 0.19, (0, 1, 6, 6, 6, 0, 4, 6, 6, 4, 6, 6, 1, 5, 5, 1, 3, 1, 5, 2, 2, 3)),
        (75.76, 74.16, 0.20, (0, 0, 6, 6, 6, 2, 0, 2, 3, 4, 6, 1, 6, 0, 1, 1, 1, 5, 4, 2, 3, 3)),
        (76.10, 74.35, 0.08, (0, 0, 6, 0, 6, 2, 3, 6, 0, 4, 3, 4, 5, 3, 0, 6, 0, 1, 0, 2, 2, 3)),
        (78.23, 74.70, 0.15, (0, 0, 0, 6, 6, 1, 0, 6, 0, 5, 0, 2, 1, 4, 0, 2, 2, 5, 5, 0, 2, 3)),
        (80.42, 74.61, 0.07, (0, 0, 6, 0, 6, 2, 0, 0, 2, 1, 0, 0, 6, 5, 0, 1, 3, 5, 5, 2, 2, 3)),
        (82.44, 74.70, 0.04, (0, 0, 6, 6, 0, 2, 0, 0, 4, 5, 4, 6, 2, 4, 3, 3, 6, 5, 1, 2, 2, 3)),
        (84.95, 74.75, 0.09, (0, 0, 0, 0, 6, 1, 3, 1, 6, 4, 2, 1, 0, 2, 6, 0, 5, 4, 2, 2, 5, 3)),
    ], start=1)}

#: Widths of the published ProxylessNAS networks (Cai et al. 2019, released models).
GPU_WIDTHS = Widths(stem=40, first=24, stages=(32, 56, 112, 128, 256, 432), last=1728)
MOBILE_WIDTHS = Widths(stem=32, first=16, stages=(32, 40, 80, 96, 192, 320), last=1280)
_PROXYLESS = ("Cai et al. 2019, ProxylessNAS released {} model (per-layer kernel, expansion, skips and widths "
              "as in its released network config)")
#: The published ProxylessNAS networks. Both fit the space exactly (their skipped layers are zero layers
#: of it); only their widths differ from Fig. 2's. Reported parameters: the paper's 7.1 M and 4.1 M; their
#: released networks have 7,119,848 and 4,080,512 parameters.
PROXYLESSNAS_ARCHITECTURES: dict[str, KnownArchitecture] = {
    "proxylessnas_gpu": KnownArchitecture(
        (0, 1, 6, 6, 6, 2, 6, 6, 0, 5, 6, 6, 1, 4, 6, 0, 1, 5, 5, 5, 4, 5), _PROXYLESS.format("GPU"),
        GPU_WIDTHS, {"params_m": 7.1, "top1": 75.1}),
    "proxylessnas_mobile": KnownArchitecture(
        (0, 1, 0, 6, 6, 2, 0, 1, 1, 5, 1, 1, 1, 4, 1, 1, 1, 5, 5, 2, 2, 5), _PROXYLESS.format("Mobile"),
        MOBILE_WIDTHS, {"params_m": 4.1, "top1": 74.6}),
}
KNOWN_ARCHITECTURES: dict[str, KnownArchitecture] = {**TABLE2_ARCHITECTURES, **PROXYLESSNAS_ARCHITECTURES}


def known_architecture(name: str) -> KnownArchitecture:
    """The known architecture called ``name``; InvalidArchitecture naming the known ones otherwise."""
    try:
        return KNOWN_ARCHITECTURES[name]
    except (KeyError, TypeError):
        raise InvalidArchitecture(f"unknown ProxylessNAS architecture {shown(name)}; known: "
                                  f"{', '.join(KNOWN_ARCHITECTURES)}") from None


# ---------------------------------------------------------------------------------------------
# Strings and validity.


def _layer_name(layer: int) -> str:
    """``layer`` (0-based) as the messages name it: 1-based, with its stage and place in the stage."""
    stage, position = LAYER_STAGE[layer], LAYER_POSITION[layer]
    if stage == 0:
        return f"layer 1 of {NUM_LAYERS} (the first, expansion-1 layer)"
    place = "first" if position == 0 else ("second", "third", "fourth")[position - 1]
    return f"layer {layer + 1} of {NUM_LAYERS} (the {place} layer of stage {stage})"


def layer_problem(layer: int, index: int) -> str | None:
    """Why ``index`` is not a valid choice of ``layer`` (0-based), or None when it is."""
    choices = LAYER_CHOICES[layer]
    if index in choices:
        return None
    if index == ZERO and LAYER_POSITION[layer] == 0 and LAYER_STAGE[layer] > 0:
        return (f"{_layer_name(layer)} is 6 (zero), which is forbidden in the first layer of a stage; "
                f"it takes 0..{choices[-1]}")
    return f"{_layer_name(layer)} is {index}, out of range; it takes 0..{choices[-1]}"


def _arch_error(text: str, problem: str) -> InvalidArchitecture:
    return InvalidArchitecture(f"malformed ProxylessNAS architecture {shown(text)}: {problem}. "
                               f"Expected {STRING_FORMAT}")


_INDEX = re.compile(r"[0-9]{1,9}", re.ASCII)
_TUPLE = re.compile(r"\((.*)\)", re.ASCII | re.DOTALL)


def parse_arch(text: str) -> ProxylessArch:
    """Parse ``(i1, ..., i22)`` (any spacing around the commas) into a tuple of indices, naming any problem."""
    text = arch_text(text, lambda problem: _arch_error(text, problem))
    match = _TUPLE.fullmatch(text)
    if not match:
        raise _arch_error(text, "it must be enclosed in parentheses")
    items = [item.strip(" \t") for item in match.group(1).split(",")]
    if len(items) != NUM_LAYERS:
        raise _arch_error(text, f"it has {len(items)} comma-separated entries, expected {NUM_LAYERS}")
    arch = []
    for layer, item in enumerate(items):
        if not _INDEX.fullmatch(item):
            raise _arch_error(text, f"entry {layer + 1} {shown(item)} is not an operation index")
        index = int(item)
        problem = layer_problem(layer, index)
        if problem:
            raise _arch_error(text, problem)
        arch.append(index)
    return tuple(arch)


def format_arch(arch: ProxylessArch) -> str:
    """The canonical string of an index tuple: ``(0, 0, 6, ...)`` as 003 Table 2 writes it."""
    return "(" + ", ".join(str(int(i)) for i in arch) + ")"


def canonical(arch: ProxylessArch) -> ProxylessArch:
    """``arch`` with each stage's zero layers moved behind its other layers (their order kept): the same
    network (a zero layer after a stage's first layer is the identity)."""
    out: list[int] = []
    start = 0
    for depth in STAGE_DEPTHS:
        stage = arch[start:start + depth]
        kept = [i for i in stage[1:] if i != ZERO]
        out.extend([stage[0], *kept, *[ZERO] * (depth - 1 - len(kept))])
        start += depth
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# The network.


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    """Convolution (no bias, 'same' padding), BatchNorm, and ReLU6 when ``act``."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(c_out)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedBottleneck(nn.Module):
    """MobileNetV2's block: 1x1 expansion (absent at expansion 1), kxk depthwise, 1x1 linear projection;
    an identity shortcut when ``shortcut``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, expansion: int, stride: int, shortcut: bool) -> None:
        super().__init__()
        mid = c_in * expansion
        layers = [conv_bn(c_in, mid, 1)] if expansion != 1 else []
        layers += [conv_bn(mid, mid, kernel, stride, groups=mid), conv_bn(mid, c_out, 1, act=False)]
        self.body = nn.Sequential(*layers)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.shortcut else out


@dataclass(frozen=True)
class LayerSpec:
    """One searchable layer of the built network: its 0-based index, input/output channels, stride,
    input resolution, and whether it has an identity shortcut."""

    layer: int
    c_in: int
    c_out: int
    stride: int
    resolution: int
    shortcut: bool


def layer_specs(widths: Widths, input_size: int = 224) -> tuple[LayerSpec, ...]:
    """The 22 layers' shapes for ``widths``: the stem halves the resolution, each stage's first layer
    applies its stride, later layers keep shape. A layer has a shortcut when it keeps the shape (stride 1,
    equal channels), except layer 1, which never has one (as in ProxylessNAS)."""
    specs = []
    c, size = widths.stem, -(-input_size // 2)
    for layer, (stage, position) in enumerate(zip(LAYER_STAGE, LAYER_POSITION)):
        c_out = widths.stage_channels()[stage]
        stride = STAGE_STRIDES[stage] if position == 0 else 1
        specs.append(LayerSpec(layer, c, c_out, stride, size, stage > 0 and stride == 1 and c == c_out))
        c, size = c_out, -(-size // stride)
    return tuple(specs)


def make_layer(spec: LayerSpec, index: int) -> nn.Module | None:
    """The module of choice ``index`` at ``spec``; None for a zero layer (with its shortcut: the identity)."""
    kernel, expansion = (FIRST_OP_SHAPES if spec.layer == 0 else OP_SHAPES)[index]
    if kernel == 0:
        return None
    return InvertedBottleneck(spec.c_in, spec.c_out, kernel, expansion, spec.stride, spec.shortcut)


class ProxylessNASNetwork(nn.Module):
    """Stem, the non-zero searchable layers (``layers``, named ``layer1``..``layer22``), last 1x1 conv,
    global average pooling, dropout and the classifier."""

    def __init__(self, arch: ProxylessArch, widths: Widths, num_classes: int = 1000, dropout: float = 0.0) -> None:
        super().__init__()
        self.stem = conv_bn(3, widths.stem, 3, stride=2)
        self.layers = nn.Sequential()
        for spec, index in zip(layer_specs(widths), canonical(arch)):
            module = make_layer(spec, index)
            if module is not None:
                self.layers.add_module(f"layer{spec.layer + 1}", module)
        self.last = conv_bn(widths.stage_channels()[-1], widths.last, 1)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(widths.last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.pool(self.last(self.layers(self.stem(x))))))


# ---------------------------------------------------------------------------------------------

_ADJACENCY = np.eye(NUM_LAYERS, k=1, dtype=np.uint8)


class ProxylessNASSpace(SearchSpace):
    """The 22-layer ProxylessNAS space of Neural Predictor (003 Fig. 2) with its ImageNet network.

    Args:
        widths: a :class:`Widths` or a dict of its fields (default: Fig. 2's widths).
        num_classes: classifier outputs of ``build_model``.
        input_size: input resolution of ``cost``, ``encode`` and ``input_shape``.
        flops_convention: what ``cost`` counts as FLOPs (``nassearch.model_cost.FlopsConvention``, as in
            ``ofa_mbv3``). ``"macs"`` (default): multiply-adds of convolutions and linear layers only, the
            ProxylessNAS paper's convention (ProxylessNAS-Mobile: 320 M; half of ``torch.utils.flop_counter``'s
            FLOPs). ``"model_cost"``: the cell spaces' convention (adds batch norm, pooling and the classifier's
            bias; 3-5% more here).
    """

    name = "proxylessnas"

    def __init__(self, widths: Widths | dict[str, Any] | None = None, num_classes: int = 1000,
                 input_size: int = 224, flops_convention: FlopsConvention = "macs") -> None:
        require_positive(num_classes=num_classes, input_size=input_size)
        self.flops_convention = check_flops_convention(flops_convention)
        self.widths = self._widths(widths)
        self.num_classes = num_classes
        self.input_size = input_size

    @staticmethod
    def _widths(widths: Widths | dict[str, Any] | None) -> Widths:
        if widths is None:
            return Widths()
        if isinstance(widths, Widths):
            return widths
        if isinstance(widths, dict):
            unknown = sorted(set(widths) - {"stem", "first", "stages", "last"})
            if unknown:
                raise ValueError(f"unknown widths key(s) {', '.join(map(repr, unknown))}; "
                                 "known: stem, first, stages, last")
            return Widths(**{k: tuple(v) if k == "stages" else v for k, v in widths.items()})
        raise ValueError(f"widths must be a Widths or a dict of its fields, got {type(widths).__name__}")

    # ---------------------------------------------------------------- architectures

    def validate(self, arch: ProxylessArch) -> None:
        """Raise InvalidArchitecture unless ``arch`` is a tuple of 22 valid indices, naming the first bad layer."""
        if not isinstance(arch, tuple) or len(arch) != NUM_LAYERS:
            raise InvalidArchitecture(f"a ProxylessNAS architecture must be a tuple of {NUM_LAYERS} operation "
                                      f"indices, got {shown(arch)}")
        for layer, index in enumerate(arch):
            if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
                raise InvalidArchitecture(f"ProxylessNAS architecture {shown(arch)}: {_layer_name(layer)} is "
                                          f"{shown(index)}, not an integer index")
            problem = layer_problem(layer, int(index))
            if problem:
                raise InvalidArchitecture(f"ProxylessNAS architecture {shown(arch)}: {problem}")

    def sample(self, rng: np.random.Generator) -> ProxylessArch:
        """Each layer's index uniform over its valid choices."""
        return tuple(int(choices[rng.integers(len(choices))]) for choices in LAYER_CHOICES)

    def mutate(self, arch: ProxylessArch, rng: np.random.Generator) -> ProxylessArch:
        """One uniformly chosen layer gets a different valid index, uniformly. Any such change alters the
        first layer of a stage or the sequence of a stage's non-zero later layers, so the key changes."""
        self.validate(arch)
        layer = int(rng.integers(NUM_LAYERS))
        others = [i for i in LAYER_CHOICES[layer] if i != arch[layer]]
        new = others[int(rng.integers(len(others)))]
        return tuple(new if i == layer else int(op) for i, op in enumerate(arch))

    def crossover(self, a: ProxylessArch, b: ProxylessArch, rng: np.random.Generator) -> ProxylessArch:
        """Uniform crossover: each layer's index from either parent (always valid: every layer has the same
        choices in both)."""
        self.validate(a)
        self.validate(b)
        take_a = rng.random(NUM_LAYERS) < 0.5
        return tuple(int(x if t else y) for x, y, t in zip(a, b, take_a))

    def to_str(self, arch: ProxylessArch) -> str:
        self.validate(arch)
        return format_arch(arch)

    def from_str(self, text: str) -> ProxylessArch:
        return parse_arch(text)

    def key(self, arch: ProxylessArch) -> str:
        """The string of the ``canonical`` form: equal for tuples that differ only in where a stage's zero
        (identity) layers sit."""
        self.validate(arch)
        return format_arch(canonical(arch))

    def size(self) -> int:
        """``3 * 6**6 * 7**15``: the product of the layers' choice counts."""
        return int(np.prod([len(c) for c in LAYER_CHOICES], dtype=object))

    # ---------------------------------------------------------------- graphs, networks, costs

    def encode(self, arch: ProxylessArch) -> ArchGraph:
        """A chain of the 22 layers of the ``canonical`` form (node i feeds node i+1), ops indexing
        ``GRAPH_VOCAB``, with node attributes ``kernel``, ``expansion`` (0 for zero), ``stage`` (0..6),
        ``position`` (in the stage, 0 = first), ``channels`` (output), ``stride``, ``resolution`` (input),
        ``flops`` and ``params`` (millions, of the layer in the built network) and graph attributes
        ``resolution``, ``flops`` and ``params`` (= ``cost``)."""
        self.validate(arch)
        arch = canonical(arch)
        ops = np.array([index if layer == 0 else len(FIRST_OPS) + index for layer, index in enumerate(arch)])
        shapes = [(FIRST_OP_SHAPES if layer == 0 else OP_SHAPES)[index] for layer, index in enumerate(arch)]
        specs = layer_specs(self.widths, self.input_size)
        base, layer_params, layer_flops = self._unit_costs
        rows = np.arange(NUM_LAYERS)
        params, flops = layer_params[rows, arch], layer_flops[rows, arch]
        node_attrs = {
            "kernel": np.array([k for k, _ in shapes], dtype=np.float32),
            "expansion": np.array([e for _, e in shapes], dtype=np.float32),
            "stage": np.array(LAYER_STAGE, dtype=np.float32),
            "position": np.array(LAYER_POSITION, dtype=np.float32),
            "channels": np.array([s.c_out for s in specs], dtype=np.float32),
            "stride": np.array([s.stride for s in specs], dtype=np.float32),
            "resolution": np.array([s.resolution for s in specs], dtype=np.float32),
            "flops": flops.astype(np.float32),
            "params": params.astype(np.float32),
        }
        return ArchGraph(ops=ops, adjacency=_ADJACENCY.copy(), op_vocab=GRAPH_VOCAB, node_attrs=node_attrs,
                         graph_attrs={"resolution": float(self.input_size),
                                      "flops": float(base.flops_m + flops.sum()),
                                      "params": float(base.params_m + params.sum())})

    def build_model(self, arch: ProxylessArch, num_classes: int | None = None,
                    widths: Widths | dict[str, Any] | None = None, dropout: float = 0.0) -> ProxylessNASNetwork:
        """The network of ``arch`` (a plain ``nn.Module``, randomly initialised) at the space's widths or
        ``widths``."""
        self.validate(arch)
        classes = self.num_classes if num_classes is None else num_classes
        require_positive(num_classes=classes)
        return ProxylessNASNetwork(arch, self.widths if widths is None else self._widths(widths), classes, dropout)

    def build_known(self, name: str, num_classes: int | None = None) -> ProxylessNASNetwork:
        """The network of a ``KNOWN_ARCHITECTURES`` entry at its own widths."""
        known = known_architecture(name)
        return self.build_model(known.arch, num_classes, widths=known.widths)

    def input_shape(self, arch: ProxylessArch) -> tuple[int, int, int]:
        """(channels, height, width) of one input image of ``arch``'s network: RGB at ``input_size``."""
        self.validate(arch)
        return 3, self.input_size, self.input_size

    def cost(self, arch: ProxylessArch) -> ModelCost:
        """Params and FLOPs (millions; ``flops_convention``) of the built network for one ``input_shape(arch)``
        image (built under a forked torch generator: counting leaves torch's global random state alone)."""
        with torch.random.fork_rng(devices=[]):
            model = self.build_model(arch)
        return measure_cost(model, self.input_shape(arch), self.flops_convention)

    @cached_property
    def _unit_costs(self) -> tuple[ModelCost, np.ndarray, np.ndarray]:
        """(backbone cost, params (22, 7), FLOPs (22, 7)): the network's cost is the backbone's (stem, last
        conv, pooling, classifier) plus each layer's, measured on the built layer at its shape."""
        params = np.zeros((NUM_LAYERS, len(OPS)))
        flops = np.zeros_like(params)
        measured: dict[tuple, ModelCost] = {}
        for spec in layer_specs(self.widths, self.input_size):
            for index in LAYER_CHOICES[spec.layer]:
                module = make_layer(spec, index)
                if module is None:
                    continue
                shape = (FIRST_OP_SHAPES if spec.layer == 0 else OP_SHAPES)[index]
                unit = (spec.c_in, spec.c_out, spec.stride, spec.resolution, spec.shortcut, shape)
                if unit not in measured:
                    measured[unit] = measure_cost(module, (spec.c_in, spec.resolution, spec.resolution),
                                                  self.flops_convention)
                params[spec.layer, index] = measured[unit].params_m
                flops[spec.layer, index] = measured[unit].flops_m
        whole = self.cost(canonical(tuple(c[0] for c in LAYER_CHOICES)))
        first = (0,) * NUM_LAYERS
        rows = np.arange(NUM_LAYERS)
        base = ModelCost(whole.params_m - params[rows, first].sum(), whole.flops_m - flops[rows, first].sum())
        return base, params, flops

    def cost_batch(self, archs: Sequence[ProxylessArch]) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised ``cost``: the backbone plus each layer's measured cost (equal to ``cost`` up to
        floating-point rounding)."""
        for arch in archs:
            self.validate(arch)
        ops = np.asarray(archs, dtype=np.int64).reshape(-1, NUM_LAYERS)
        base, params, flops = self._unit_costs
        rows = np.arange(NUM_LAYERS)
        return base.params_m + params[rows, ops].sum(axis=1), base.flops_m + flops[rows, ops].sum(axis=1)
