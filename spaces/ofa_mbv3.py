"""Once-for-All's MobileNetV3 space (Cai et al., ICLR 2020), width multiplier 1.2.

The network is OFA's ``ofa_mbv3_d234_e346_k357_w1.2``: a 3x3 stem (24 channels, stride 2, h-swish), a fixed
first MBConv block (kernel 3, expansion 1, 24 channels), five searchable stages of up to ``MAX_DEPTH`` = 4
MBConv blocks (32, 48, 96, 136, 192 channels; first-block strides 2, 2, 2, 1, 2; ReLU in stages 0-1 and
h-swish after; squeeze-and-excitation in stages 1, 3, 4), then a 1x1 conv to 1152 channels, global average
pooling, a 1x1 conv to 1536 channels (h-swish, no BN) and the classifier.

An architecture is an :class:`OFAArch`: 20 kernels ``ks`` and 20 expansions ``e`` (one per block slot, 4
per stage), 5 depths ``d`` and the input resolution ``r``. Stage ``s`` runs slots ``4s .. 4s + d[s] - 1``
(:func:`active_blocks`); the other slots are inactive and change nothing. The string is OFA's own JSON
config, written compact with the keys in OFA's order: ``{"ks":[...20],"e":[...20],"d":[...5],"r":R}``
(``from_str`` accepts any whitespace and key order, nothing else). ``to_str`` writes the genes as given,
inactive slots included; ``key`` is the string of the canonical form (:meth:`OFAMobileNetV3Space.canonical`),
where every inactive slot holds kernel 3 and expansion 3 (the smallest choices), so two strings of one
network share one key.

Variation follows OFA's evolutionary search (``ofa/nas/search_algorithm/evolution.py`` with
``MobileNetArchEncoder``): ``sample`` draws every gene uniformly (``random_sample_arch``; so depths are
uniform per stage, not networks uniform over the space); ``mutate`` redraws the resolution with probability
``resolution_mutate_prob`` (OFA's 0.5), each block's (kernel, expansion) pair with probability
``mutate_prob`` (OFA's ``arch_mutate_prob``, 0.1) and each stage depth with probability ``mutate_prob``, every
redraw uniform over all choices (the old value included), and repeats this until the key changes;
``crossover`` takes every gene (each list element and the resolution) from either parent with probability
1/2. All draws come from the ``np.random.Generator`` passed in.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from nassearch.errors import InvalidArchitecture
from nassearch.graph import ArchGraph
from nassearch.model_cost import FlopsConvention, ModelCost, check_flops_convention, measure_cost
from nassearch.spaces.base import SearchSpace, arch_text
from nassearch.validation import require_positive, shown

KERNELS: tuple[int, ...] = (3, 5, 7)
EXPANDS: tuple[int, ...] = (3, 4, 6)
DEPTHS: tuple[int, ...] = (2, 3, 4)
#: Input resolutions: those of OFA's shipped Note10 latency tables (160..224 step 4).
RESOLUTIONS: tuple[int, ...] = tuple(range(160, 225, 4))
STAGES = 5
MAX_DEPTH = 4
#: Block slots (genes of ``ks`` and ``e``).
NUM_BLOCKS = STAGES * MAX_DEPTH
WIDTH_MULT = 1.2
#: Value an inactive slot holds in the canonical form (``key``).
CANONICAL_KERNEL, CANONICAL_EXPAND = KERNELS[0], EXPANDS[0]

# The network around the searchable blocks (OFAMobileNetV3 at width 1.2; make_divisible(w * 1.2, 8) of
# OFA's base widths 16, 16, 24, 40, 80, 112, 160, 960, 1280).
STEM_CHANNELS = 24
FIRST_BLOCK_CHANNELS = 24
STAGE_CHANNELS: tuple[int, ...] = (32, 48, 96, 136, 192)
STAGE_STRIDES: tuple[int, ...] = (2, 2, 2, 1, 2)
STAGE_ACTS: tuple[str, ...] = ("relu", "relu", "h_swish", "h_swish", "h_swish")
STAGE_SE: tuple[bool, ...] = (False, True, False, True, True)
FINAL_EXPAND_CHANNELS = 1152
LAST_CHANNELS = 1536
DROPOUT = 0.1
BN_MOMENTUM, BN_EPS = 0.1, 1e-5

#: Node vocabulary of the encoded graph: input, one MBConv kind per (kernel, expansion), output, padding.
BLOCK_OPS: tuple[str, ...] = tuple(f"mb_k{k}_e{e}" for k in KERNELS for e in EXPANDS)
GRAPH_VOCAB: tuple[str, ...] = ("input", *BLOCK_OPS, "output", "pad")
#: Nodes of every encoded graph: input, the active blocks, padding up to NUM_BLOCKS, output.
GRAPH_NODES = NUM_BLOCKS + 2
STRING_FORMAT = '{"ks":[20 kernels],"e":[20 expansions],"d":[5 depths],"r":R}'
_KEYS = ("ks", "e", "d", "r")
_GENES = {"ks": ("kernel", "block", NUM_BLOCKS, KERNELS), "e": ("expansion", "block", NUM_BLOCKS, EXPANDS),
          "d": ("depth", "stage", STAGES, DEPTHS)}
_KERNEL_SET, _EXPAND_SET, _DEPTH_SET = frozenset(KERNELS), frozenset(EXPANDS), frozenset(DEPTHS)


def _listing(values: Sequence[int]) -> str:
    return ", ".join(map(str, values))


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _gene_problem(name: str, values: Any) -> str | None:
    """What is wrong with one list gene (``ks``, ``e`` or ``d``), or None."""
    what, unit, length, allowed = _GENES[name]
    if isinstance(values, np.ndarray) and values.ndim == 1:
        values = values.tolist()
    if not isinstance(values, (list, tuple)):
        return f"{name} must be a list of {length} {what}s, got {type(values).__name__} {shown(values)}"
    if len(values) != length:
        per = " (5 stages x 4 block slots)" if length == NUM_BLOCKS else " (one per stage)"
        return f"wrong length: {name} has {len(values)} values; expected {length}{per}"
    for i, value in enumerate(values):
        if not _is_int(value):
            return f"{what} {shown(value)} at {unit} {i} is not an integer; allowed {_listing(allowed)}"
        if value not in allowed:
            return f"{what} {value} at {unit} {i}; allowed {_listing(allowed)}"
    return None


def _problem(ks: Any, e: Any, d: Any, r: Any, resolutions: Sequence[int] | None) -> str | None:
    """The first problem of the genes (resolution checked against ``resolutions``, or only for being a positive
    integer when None), or None."""
    for name, values in (("ks", ks), ("e", e), ("d", d)):
        problem = _gene_problem(name, values)
        if problem:
            return problem
    if not _is_int(r) or r < 1:
        return f"resolution {shown(r)} is not a positive integer"
    if resolutions is not None and r not in resolutions:
        return f"resolution {r} is not one of the space's resolutions ({_resolution_listing(resolutions)})"
    return None


def _resolution_listing(resolutions: Sequence[int]) -> str:
    rs = sorted(resolutions)
    steps = {b - a for a, b in zip(rs, rs[1:])}
    if len(rs) > 3 and len(steps) == 1:
        return f"{rs[0]}..{rs[-1]} step {steps.pop()}"
    return _listing(rs)


@dataclass(frozen=True)
class OFAArch:
    """One OFA MobileNetV3 configuration, OFA's config dict as a hashable value: kernels ``ks`` (20) and
    expansions ``e`` (20) per block slot, depths ``d`` (5) per stage, input resolution ``r``.

    Construction converts the lists to tuples of ints and raises InvalidArchitecture for a wrong length or a
    value outside KERNELS / EXPANDS / DEPTHS; ``r`` need only be a positive integer here (the space checks it
    against its resolutions). Inactive slots keep what they are given (see ``OFAMobileNetV3Space.canonical``).
    """

    ks: tuple[int, ...]
    e: tuple[int, ...]
    d: tuple[int, ...]
    r: int

    def __post_init__(self) -> None:
        problem = _problem(self.ks, self.e, self.d, self.r, None)
        if problem:
            raise InvalidArchitecture(f"invalid OFA MobileNetV3 architecture: {problem}")
        for name in ("ks", "e", "d"):
            values = getattr(self, name)
            if type(values) is not tuple or not all(type(v) is int for v in values):
                object.__setattr__(self, name, tuple(int(v) for v in values))
        if type(self.r) is not int:
            object.__setattr__(self, "r", int(self.r))

    def to_dict(self) -> dict[str, Any]:
        """OFA's config dict ``{"ks": [...], "e": [...], "d": [...], "r": R}`` (lists of ints)."""
        return {"ks": list(self.ks), "e": list(self.e), "d": list(self.d), "r": self.r}


def _make(ks: tuple[int, ...], e: tuple[int, ...], d: tuple[int, ...], r: int) -> OFAArch:
    """An OFAArch from genes known to be valid tuples of ints (sampling, mutation): skips the checks."""
    arch = object.__new__(OFAArch)
    object.__setattr__(arch, "ks", ks)
    object.__setattr__(arch, "e", e)
    object.__setattr__(arch, "d", d)
    object.__setattr__(arch, "r", r)
    return arch


def active_blocks(arch: OFAArch) -> list[int]:
    """Indices of the active block slots, in network order: stage ``s`` uses slots ``4s .. 4s + d[s] - 1``."""
    return [MAX_DEPTH * s + i for s, depth in enumerate(arch.d) for i in range(depth)]


def format_arch(arch: OFAArch) -> str:
    """OFA's JSON config of ``arch``, compact, keys in the order ks, e, d, r."""
    return (f'{{"ks":[{",".join(map(str, arch.ks))}],"e":[{",".join(map(str, arch.e))}],'
            f'"d":[{",".join(map(str, arch.d))}],"r":{arch.r}}}')


def _arch_error(text: str, problem: str) -> InvalidArchitecture:
    return InvalidArchitecture(f"invalid OFA MobileNetV3 architecture {shown(text)}: {problem}. "
                               f"Expected OFA's JSON config {STRING_FORMAT}")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} appears twice")
        out[key] = value
    return out


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def parse_arch(text: str, resolutions: Sequence[int] = RESOLUTIONS) -> OFAArch:
    """Parse OFA's JSON config (any whitespace and key order), naming the first problem found."""
    text = arch_text(text, lambda problem: _arch_error(text, problem))
    try:
        raw = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_reject_constant)
    except RecursionError:
        raise _arch_error(text, "not JSON (nested too deeply)") from None
    except ValueError as exc:  # json.JSONDecodeError, a repeated key or NaN/Infinity
        raise _arch_error(text, f"not JSON ({exc})" if isinstance(exc, json.JSONDecodeError)
                          else f"bad JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise _arch_error(text, f"expected a JSON object, got {type(raw).__name__}")
    for key in _KEYS:
        if key not in raw:
            raise _arch_error(text, f"missing key {key!r}; the keys are exactly {', '.join(_KEYS)}")
    for key in raw:
        if key not in _KEYS:
            raise _arch_error(text, f"unknown key {shown(key)}; the keys are exactly {', '.join(_KEYS)}")
    problem = _problem(raw["ks"], raw["e"], raw["d"], raw["r"], resolutions)
    if problem:
        raise _arch_error(text, problem)
    return _make(tuple(raw["ks"]), tuple(raw["e"]), tuple(raw["d"]), raw["r"])


# ---------------------------------------------------------------------------------------------
# The network, built from the ofa package's layers exactly as OFAMobileNetV3.get_active_subnet builds it.


def _mid_channels(in_channels: int, expand: int) -> int:
    """OFA's middle width of an MBConv block: make_divisible(round(C_in * e), 8)."""
    return make_divisible(round(in_channels * expand), 8)


def _mb_block(stage: int, first: bool, kernel: int, expand: int) -> nn.Module:
    """One searchable MBConv block (ResidualBlock of an MBConvLayer, identity shortcut when shapes allow)."""
    from ofa.utils.layers import IdentityLayer, MBConvLayer, ResidualBlock

    c_in = (STAGE_CHANNELS[stage - 1] if stage else FIRST_BLOCK_CHANNELS) if first else STAGE_CHANNELS[stage]
    c_out, stride = STAGE_CHANNELS[stage], STAGE_STRIDES[stage] if first else 1
    conv = MBConvLayer(c_in, c_out, kernel_size=kernel, stride=stride, expand_ratio=expand,
                       mid_channels=_mid_channels(c_in, expand), act_func=STAGE_ACTS[stage], use_se=STAGE_SE[stage])
    shortcut = IdentityLayer(c_in, c_in) if stride == 1 and c_in == c_out else None
    return ResidualBlock(conv, shortcut)


def _stem() -> tuple[nn.Module, nn.Module]:
    """OFA's first conv and fixed first block."""
    from ofa.utils.layers import ConvLayer, IdentityLayer, MBConvLayer, ResidualBlock

    first_conv = ConvLayer(3, STEM_CHANNELS, kernel_size=3, stride=2, act_func="h_swish")
    first_block = ResidualBlock(
        MBConvLayer(STEM_CHANNELS, FIRST_BLOCK_CHANNELS, kernel_size=3, stride=1, expand_ratio=1, act_func="relu",
                    use_se=False),
        IdentityLayer(FIRST_BLOCK_CHANNELS, FIRST_BLOCK_CHANNELS))
    return first_conv, first_block


def _head(num_classes: int) -> tuple[nn.Module, nn.Module, nn.Module]:
    """OFA's final expand layer, feature mix layer and classifier."""
    from ofa.utils.layers import ConvLayer, LinearLayer

    final_expand = ConvLayer(STAGE_CHANNELS[-1], FINAL_EXPAND_CHANNELS, kernel_size=1, act_func="h_swish")
    feature_mix = ConvLayer(FINAL_EXPAND_CHANNELS, LAST_CHANNELS, kernel_size=1, bias=False, use_bn=False,
                            act_func="h_swish")
    classifier = LinearLayer(LAST_CHANNELS, num_classes, dropout_rate=DROPOUT)
    return final_expand, feature_mix, classifier


def build_network(arch: OFAArch, num_classes: int = 1000) -> nn.Module:
    """The subnet of ``arch`` as ofa's ``MobileNetV3`` (randomly initialised, BN momentum 0.1, eps 1e-5): the
    network ``OFAMobileNetV3(width_mult=1.2, ks_list=[3,5,7], expand_ratio_list=[3,4,6], depth_list=[2,3,4])
    .get_active_subnet()`` gives after ``set_active_subnet(ks, e, d)``, without building the supernet."""
    from ofa.imagenet_classification.networks import MobileNetV3

    first_conv, first_block = _stem()
    blocks = [first_block]
    for slot in active_blocks(arch):
        stage, position = divmod(slot, MAX_DEPTH)
        blocks.append(_mb_block(stage, position == 0, arch.ks[slot], arch.e[slot]))
    net = MobileNetV3(first_conv, blocks, *_head(num_classes))
    net.set_bn_param(momentum=BN_MOMENTUM, eps=BN_EPS)
    return net


def _out_size(size: int, stride: int) -> int:
    """Spatial size after a same-padded odd-kernel conv: ceil(size / stride)."""
    return -(-size // stride)


def stage_input_sizes(resolution: int) -> tuple[int, ...]:
    """Spatial size of the input of each stage's first block at ``resolution`` (the stem halves it)."""
    sizes, size = [], _out_size(resolution, 2)
    for stride in STAGE_STRIDES:
        sizes.append(size)
        size = _out_size(size, stride)
    return (*sizes, size)


class UnitCosts(NamedTuple):
    """Params and FLOPs (millions) of the parts of the network at one resolution (see ``unit_costs``)."""

    block_params: np.ndarray
    block_flops: np.ndarray
    stem_params: float
    stem_flops: float
    head_params: float
    head_flops: float


def make_divisible(value: float, divisor: int = 8) -> int:
    """OFA's (and TF MobileNet's) channel rounding: to the nearest multiple of ``divisor``, at least ``divisor``,
    never more than 10% below ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _block_cost(c_in: int, c_out: int, size: int, stride: int, kernel: int, expand: int, act: str, se: bool,
                convention: FlopsConvention) -> tuple[int, int]:
    """(params, FLOPs) of one MBConv block of the built network (OFA's MBConvLayer), counted in closed form."""
    mid = make_divisible(round(c_in * expand)) if expand != 1 else c_in
    out = _out_size(size, stride)
    relu = act == "relu"
    full = convention == "model_cost"
    params = flops = 0
    if expand != 1:  # inverted bottleneck: 1x1 conv, BN, act
        params += c_in * mid + 2 * mid
        flops += c_in * mid * size * size + full * (2 + relu) * mid * size * size
    params += kernel * kernel * mid + 2 * mid  # depthwise conv, BN, act
    flops += kernel * kernel * mid * out * out + full * (2 + relu) * mid * out * out
    if se:  # squeeze-and-excitation: 1x1 convs with bias on the pooled vector, ReLU, h-sigmoid
        squeeze = make_divisible(mid // 4)
        params += 2 * mid * squeeze + squeeze + mid
        flops += 2 * mid * squeeze + full * (squeeze + mid + squeeze)
    params += mid * c_out + 2 * c_out  # pointwise linear conv, BN
    flops += mid * c_out * out * out + full * 2 * c_out * out * out
    return params, flops


@lru_cache(maxsize=None)
def unit_costs(resolution: int, convention: FlopsConvention = "macs") -> UnitCosts:
    """Costs of the parts of the built network at ``resolution`` in millions, counted in closed form (equal to
    ``measure_cost`` of the built layers, which a test checks): block params and FLOPs, arrays (NUM_BLOCKS,
    len(KERNELS), len(EXPANDS)) indexed by slot, kernel and expansion index; the stem (first conv and first
    block); the head (final expand, feature mix, classifier with 1000 classes). A network's cost is stem + head
    + the sum over its active slots."""
    require_positive(resolution=resolution)
    full = convention == "model_cost"
    sizes = stage_input_sizes(resolution)
    params = np.zeros((NUM_BLOCKS, len(KERNELS), len(EXPANDS)))
    flops = np.zeros_like(params)
    for stage in range(STAGES):
        for position in range(MAX_DEPTH):
            first = position == 0
            c_in = (STAGE_CHANNELS[stage - 1] if stage else FIRST_BLOCK_CHANNELS) if first else STAGE_CHANNELS[stage]
            size = sizes[stage] if first else _out_size(sizes[stage], STAGE_STRIDES[stage])
            stride = STAGE_STRIDES[stage] if first else 1
            for i, kernel in enumerate(KERNELS):
                for j, expand in enumerate(EXPANDS):
                    p, f = _block_cost(c_in, STAGE_CHANNELS[stage], size, stride, kernel, expand, STAGE_ACTS[stage],
                                       STAGE_SE[stage], convention)
                    params[stage * MAX_DEPTH + position, i, j], flops[stage * MAX_DEPTH + position, i, j] = p, f
    stem_size = sizes[0]
    stem_params = 27 * STEM_CHANNELS + 2 * STEM_CHANNELS
    stem_flops = 27 * STEM_CHANNELS * stem_size ** 2 + full * 2 * STEM_CHANNELS * stem_size ** 2  # conv, BN, h-swish
    p, f = _block_cost(STEM_CHANNELS, FIRST_BLOCK_CHANNELS, stem_size, 1, 3, 1, "relu", False, convention)
    stem_params, stem_flops = stem_params + p, stem_flops + f
    last = sizes[-1]
    head_params = STAGE_CHANNELS[-1] * FINAL_EXPAND_CHANNELS + 2 * FINAL_EXPAND_CHANNELS  # 1x1 conv, BN, h-swish
    head_flops = STAGE_CHANNELS[-1] * FINAL_EXPAND_CHANNELS * last ** 2 + full * 2 * FINAL_EXPAND_CHANNELS * last ** 2
    head_params += FINAL_EXPAND_CHANNELS * LAST_CHANNELS  # feature mix: 1x1 conv without bias or BN, h-swish
    head_flops += FINAL_EXPAND_CHANNELS * LAST_CHANNELS
    head_params += LAST_CHANNELS * 1000 + 1000  # classifier
    head_flops += LAST_CHANNELS * 1000 + full * 1000
    params /= 1e6
    flops /= 1e6
    for table in (params, flops):
        table.setflags(write=False)
    return UnitCosts(params, flops, stem_params / 1e6, stem_flops / 1e6, head_params / 1e6, head_flops / 1e6)


_KERNEL_INDEX = {k: i for i, k in enumerate(KERNELS)}
_EXPAND_INDEX = {e: i for i, e in enumerate(EXPANDS)}


class OFAMobileNetV3Space(SearchSpace):
    """OFA's MobileNetV3 space (width 1.2): 5 stages of depth 2-4, kernel 3/5/7 and expansion 3/4/6 per block,
    input resolution from ``resolutions``; 17 x (9^2 + 9^3 + 9^4)^5 distinct networks with the default
    resolutions.

    Args:
        mutate_prob: OFA's ``arch_mutate_prob``: chance that ``mutate`` redraws each block's (kernel,
            expansion) pair and each stage's depth (default 0.1, OFA's).
        resolution_mutate_prob: OFA's ``resolution_mutate_prob``: chance that ``mutate`` redraws the
            resolution (default 0.5, OFA's).
        resolutions: the input resolutions of the space (default RESOLUTIONS, 160..224 step 4, the Note10
            latency tables' set; OFA trained 128..224 step 4).
        num_classes: classifier outputs of ``build_model`` (ImageNet's 1000).
        flops_convention: what ``cost`` counts as FLOPs (``nassearch.model_cost.FlopsConvention``, as in
            ``proxylessnas``). ``"macs"`` (default): multiply-adds of convolutions and linear layers only, as
            OFA's own counter and OFA's published MACs (half of ``torch.utils.flop_counter``'s FLOPs).
            ``"model_cost"``: the cell spaces' convention (adds batch norm, ReLU and biases; 4-5% more here).
    """

    name = "ofa_mbv3"

    def __init__(self, mutate_prob: float = 0.1, resolution_mutate_prob: float = 0.5,
                 resolutions: Sequence[int] = RESOLUTIONS, num_classes: int = 1000,
                 flops_convention: FlopsConvention = "macs") -> None:
        if not 0.0 < mutate_prob <= 1.0:
            raise ValueError(f"mutate_prob must lie in (0, 1], got {mutate_prob}")
        if not 0.0 <= resolution_mutate_prob <= 1.0:
            raise ValueError(f"resolution_mutate_prob must lie in [0, 1], got {resolution_mutate_prob}")
        resolutions = tuple(resolutions)
        if not resolutions or not all(_is_int(r) and r >= 32 for r in resolutions) \
                or len(set(resolutions)) != len(resolutions):
            raise ValueError(f"resolutions must be distinct integers >= 32, got {shown(resolutions)}")
        require_positive(num_classes=num_classes)
        self.flops_convention = check_flops_convention(flops_convention)
        self.mutate_prob = float(mutate_prob)
        self.resolution_mutate_prob = float(resolution_mutate_prob)
        self.resolutions = tuple(sorted(int(r) for r in resolutions))
        self._resolution_set = frozenset(self.resolutions)
        self.num_classes = num_classes

    # -- validity and strings

    def validate(self, arch: OFAArch) -> None:
        """Raise InvalidArchitecture unless ``arch`` is an OFAArch whose resolution is one of the space's."""
        if not isinstance(arch, OFAArch):
            raise InvalidArchitecture(f"an OFA MobileNetV3 architecture is an OFAArch, got {type(arch).__name__} "
                                      f"{shown(arch)}")
        if arch.r not in self._resolution_set:
            raise InvalidArchitecture(f"invalid OFA MobileNetV3 architecture: resolution {arch.r} is not one of the "
                                      f"space's resolutions ({_resolution_listing(self.resolutions)})")

    def to_str(self, arch: OFAArch) -> str:
        """OFA's JSON config, compact, inactive slots as given."""
        self.validate(arch)
        return format_arch(arch)

    def from_str(self, text: str) -> OFAArch:
        return parse_arch(text, self._resolution_set)

    def canonical(self, arch: OFAArch) -> OFAArch:
        """``arch`` with every inactive slot set to kernel 3 and expansion 3: one value per network."""
        self.validate(arch)
        ks, e = list(arch.ks), list(arch.e)
        for stage, depth in enumerate(arch.d):
            for slot in range(stage * MAX_DEPTH + depth, (stage + 1) * MAX_DEPTH):
                ks[slot], e[slot] = CANONICAL_KERNEL, CANONICAL_EXPAND
        return _make(tuple(ks), tuple(e), arch.d, arch.r)

    def key(self, arch: OFAArch) -> str:
        """The string of ``canonical(arch)``: equal for two configs of one network."""
        return format_arch(self.canonical(arch))

    # -- variation

    def sample(self, rng: np.random.Generator) -> OFAArch:
        """OFA's ``random_sample_arch``: every kernel, expansion, depth and the resolution uniform."""
        genes = rng.integers(0, 3, size=2 * NUM_BLOCKS + STAGES)
        r = self.resolutions[int(rng.integers(len(self.resolutions)))]
        return _make(tuple(KERNELS[i] for i in genes[:NUM_BLOCKS]),
                       tuple(EXPANDS[i] for i in genes[NUM_BLOCKS:2 * NUM_BLOCKS]),
                       tuple(DEPTHS[i] for i in genes[2 * NUM_BLOCKS:]), r)

    def _ofa_mutation(self, arch: OFAArch, rng: np.random.Generator) -> OFAArch:
        """One application of OFA's ``mutate_resolution`` + ``mutate_arch`` (may return ``arch`` unchanged)."""
        u = rng.random(1 + NUM_BLOCKS + STAGES)
        genes = rng.integers(0, 3, size=2 * NUM_BLOCKS + STAGES)
        new_r = self.resolutions[int(rng.integers(len(self.resolutions)))]
        r = new_r if u[0] < self.resolution_mutate_prob else arch.r
        p = self.mutate_prob
        block = u[1:1 + NUM_BLOCKS] < p
        stage = u[1 + NUM_BLOCKS:] < p
        ks = tuple(KERNELS[genes[i]] if block[i] else arch.ks[i] for i in range(NUM_BLOCKS))
        e = tuple(EXPANDS[genes[NUM_BLOCKS + i]] if block[i] else arch.e[i] for i in range(NUM_BLOCKS))
        d = tuple(DEPTHS[genes[2 * NUM_BLOCKS + s]] if stage[s] else arch.d[s] for s in range(STAGES))
        return _make(ks, e, d, r)

    def mutate(self, arch: OFAArch, rng: np.random.Generator) -> OFAArch:
        """OFA's mutation (see the module docstring), repeated on ``arch`` until the child's key differs from
        its parent's. After 1,000 tries without a change (only with a tiny ``mutate_prob``) one uniformly chosen
        gene that matters (an active block's kernel/expansion pair, a depth, or the resolution when the space
        has several) is redrawn among its other values instead."""
        parent = self.key(arch)
        for _ in range(1000):
            child = self._ofa_mutation(arch, rng)
            if self.key(child) != parent:
                return child
        return self._force_change(arch, rng)

    def _force_change(self, arch: OFAArch, rng: np.random.Generator) -> OFAArch:
        slots = active_blocks(arch)
        choices = len(slots) + STAGES + (len(self.resolutions) > 1)
        pick = int(rng.integers(choices))
        ks, e, d, r = list(arch.ks), list(arch.e), list(arch.d), arch.r
        if pick < len(slots):
            slot = slots[pick]
            pairs = [(k, x) for k in KERNELS for x in EXPANDS if (k, x) != (ks[slot], e[slot])]
            ks[slot], e[slot] = pairs[int(rng.integers(len(pairs)))]
        elif pick < len(slots) + STAGES:
            s = pick - len(slots)
            others = [v for v in DEPTHS if v != d[s]]
            d[s] = others[int(rng.integers(len(others)))]
        else:
            others = [v for v in self.resolutions if v != r]
            r = others[int(rng.integers(len(others)))]
        return _make(tuple(ks), tuple(e), tuple(d), r)

    def crossover(self, a: OFAArch, b: OFAArch, rng: np.random.Generator) -> OFAArch:
        """OFA's ``crossover_sample``: every gene (list element or resolution) from either parent."""
        self.validate(a)
        self.validate(b)
        take_a = rng.random(2 * NUM_BLOCKS + STAGES + 1) < 0.5
        ks = tuple(x if t else y for x, y, t in zip(a.ks, b.ks, take_a[:NUM_BLOCKS]))
        e = tuple(x if t else y for x, y, t in zip(a.e, b.e, take_a[NUM_BLOCKS:2 * NUM_BLOCKS]))
        d = tuple(x if t else y for x, y, t in zip(a.d, b.d, take_a[2 * NUM_BLOCKS:-1]))
        return _make(ks, e, d, a.r if take_a[-1] else b.r)

    # -- encoding, networks, costs

    def encode(self, arch: OFAArch) -> ArchGraph:
        """A chain: input -> the active blocks in network order -> output, with ``pad`` nodes (no edges, mask 0)
        before the output so every graph has GRAPH_NODES = 22 nodes (as NB101 pads its cells). Block nodes' ops
        are ``mb_k{kernel}_e{expansion}``. Node attributes (zero for input/output/padding unless said): ``kernel``,
        ``expansion``, ``stage`` (0-4), ``position`` (block index within its stage, 0-3), ``slot`` (0-19;
        -1 for non-blocks), ``mask`` (1 for input, blocks and output), and ``cell_flops`` / ``cell_params``
        (one column: each block's cost in millions at the architecture's resolution; the stem counts on the
        input node, the head on the output node). Graph attributes: ``resolution``, ``depth`` (active blocks),
        ``flops`` and ``params`` (= ``cost``)."""
        self.validate(arch)
        slots = active_blocks(arch)
        n = len(slots)
        units = unit_costs(arch.r, self.flops_convention)
        extra_params, extra_flops = self._classifier_delta()
        ops = np.full(GRAPH_NODES, GRAPH_VOCAB.index("pad"), dtype=np.int64)
        ops[0], ops[-1] = 0, GRAPH_VOCAB.index("output")
        kernel = np.zeros(GRAPH_NODES, dtype=np.int64)
        expansion = np.zeros(GRAPH_NODES, dtype=np.int64)
        stage = np.zeros(GRAPH_NODES, dtype=np.int64)
        position = np.zeros(GRAPH_NODES, dtype=np.int64)
        slot_attr = np.full(GRAPH_NODES, -1, dtype=np.int64)
        flops = np.zeros((GRAPH_NODES, 1))
        params = np.zeros((GRAPH_NODES, 1))
        for node, slot in enumerate(slots, start=1):
            k, x = arch.ks[slot], arch.e[slot]
            i, j = _KERNEL_INDEX[k], _EXPAND_INDEX[x]
            ops[node] = 1 + i * len(EXPANDS) + j
            kernel[node], expansion[node] = k, x
            stage[node], position[node] = divmod(slot, MAX_DEPTH)
            slot_attr[node] = slot
            flops[node, 0], params[node, 0] = units.block_flops[slot, i, j], units.block_params[slot, i, j]
        flops[0, 0], params[0, 0] = units.stem_flops, units.stem_params
        flops[-1, 0], params[-1, 0] = units.head_flops + extra_flops, units.head_params + extra_params
        mask = np.zeros(GRAPH_NODES, dtype=np.float32)
        mask[: n + 1] = 1.0
        mask[-1] = 1.0
        adjacency = np.zeros((GRAPH_NODES, GRAPH_NODES), dtype=np.uint8)
        chain = [*range(n + 1), GRAPH_NODES - 1]
        adjacency[chain[:-1], chain[1:]] = 1
        total_params, total_flops = float(params.sum()), float(flops.sum())
        return ArchGraph(ops=ops, adjacency=adjacency, op_vocab=GRAPH_VOCAB,
                         node_attrs={"kernel": kernel, "expansion": expansion, "stage": stage, "position": position,
                                     "slot": slot_attr, "mask": mask, "cell_flops": flops, "cell_params": params},
                         graph_attrs={"resolution": float(arch.r), "depth": float(n), "flops": total_flops,
                                      "params": total_params})

    def build_model(self, arch: OFAArch, num_classes: int | None = None) -> nn.Module:
        """The subnet as ofa's plain ``MobileNetV3`` module (random weights; see :func:`build_network`). It takes
        any input size; the architecture's resolution is ``arch.r``."""
        self.validate(arch)
        classes = self.num_classes if num_classes is None else num_classes
        require_positive(num_classes=classes)
        return build_network(arch, classes)

    def input_shape(self, arch: OFAArch) -> tuple[int, int, int]:
        """(channels, height, width) of one input image of ``arch``'s network: RGB at ``arch.r`` x ``arch.r``."""
        self.validate(arch)
        return 3, arch.r, arch.r

    def cost(self, arch: OFAArch) -> ModelCost:
        """Params and FLOPs (millions; ``flops_convention``) of ``build_model(arch)`` for one ``input_shape(arch)``
        image, counted on the built network."""
        self.validate(arch)
        with torch.random.fork_rng(devices=[]):
            model = build_network(arch, self.num_classes)
        return measure_cost(model, self.input_shape(arch), self.flops_convention)

    def cost_batch(self, archs: Sequence[OFAArch]) -> tuple[np.ndarray, np.ndarray]:
        """``cost`` of many architectures from the closed-form per-block costs of ``unit_costs`` (cached per
        resolution): equal to ``cost`` (a test checks it, 1e-9) without building the networks."""
        params = np.zeros(len(archs))
        flops = np.zeros(len(archs))
        head_params, head_flops = self._classifier_delta()
        for n, arch in enumerate(archs):
            self.validate(arch)
            units = unit_costs(arch.r, self.flops_convention)
            p = units.stem_params + units.head_params + head_params
            f = units.stem_flops + units.head_flops + head_flops
            for slot in active_blocks(arch):
                i, j = _KERNEL_INDEX[arch.ks[slot]], _EXPAND_INDEX[arch.e[slot]]
                p += units.block_params[slot, i, j]
                f += units.block_flops[slot, i, j]
            params[n], flops[n] = p, f
        return params, flops

    def _classifier_delta(self) -> tuple[float, float]:
        """Params and FLOPs (millions) the classifier adds for ``num_classes`` over the 1000 of ``unit_costs``."""
        classes = self.num_classes - 1000
        bias_flops = 1 if self.flops_convention == "model_cost" else 0
        return (LAST_CHANNELS + 1) * classes / 1e6, (LAST_CHANNELS + bias_flops) * classes / 1e6

    def size(self) -> int:
        """Distinct networks: per stage sum over d of 9^d block choices, to the 5th power, times resolutions."""
        per_stage = sum((len(KERNELS) * len(EXPANDS)) ** depth for depth in DEPTHS)
        return per_stage ** STAGES * len(self.resolutions)
