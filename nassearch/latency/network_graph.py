"""Whole-network graphs for latency prediction: one node per computing layer of a built network.

NAR-Former / NAR-Former V2 (and NNLQP, from ONNX) predict latency from the network as run: every
convolution, normalisation, activation, pooling, elementwise and shape operation is a node, edges follow
the data. :func:`network_graph` traces a ``torch.nn.Module`` with ``torch.fx``, propagates shapes for a
given input (batch included) and returns an :class:`~nassearch.graph.ArchGraph` whose ``op_vocab`` is
:data:`LAYER_VOCAB`, ``node_attrs["layer"]`` holds the :data:`~nassearch.graph.LAYER_ATTRIBUTES` of each
node and ``graph_attrs`` the :data:`~nassearch.graph.STATIC_PROPERTIES`.

Bookkeeping nodes are spliced out, their consumers inheriting their data inputs: ``getattr``/``size``
and integer arithmetic, indexing into tuples, parameters (``get_attr``), identities (``nn.Identity``,
``contiguous``, ``x + 0``, ``x * 1``) and what is the identity at inference (dropout, stochastic depth).

Attribute conventions (``node_attrs["layer"]``, float64, NaN where a layer has no such attribute): tuple
attributes (kernel (3, 3)) keep their first element; ``padding="same"`` is resolved to a number; ``bias``
is 0/1 (convolutions and linear layers); ``perm`` (permute/transpose only) is the permutation written as
a decimal number, e.g. (0, 2, 3, 1) -> 231; ``out_*`` come from the propagated output shape read as
(N, C, H, W): 2-d outputs have NaN height and width. Graph attributes: ``batch_size``; ``flops`` and
``params`` in millions, exactly :func:`~nassearch.model_cost.count_flops` (per sample, times the batch)
and :func:`~nassearch.model_cost.count_params`; ``memory_access`` in MB (1e6 bytes) read and written by
all layers, counting float32 inputs, outputs and weights (parameters and floating buffers).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

from nassearch.errors import NassearchError
from nassearch.graph import LAYER_ATTRIBUTES, ArchGraph
from nassearch.model_cost import count_flops, count_params

#: Layer types of every whole-network graph (``ArchGraph.op_vocab``); unknown operations are ``other``.
LAYER_VOCAB: tuple[str, ...] = (
    "input", "conv", "conv_transpose", "linear", "matmul", "batchnorm", "norm",
    "relu", "relu6", "hardswish", "hardsigmoid", "silu", "sigmoid", "gelu", "tanh", "softmax",
    "maxpool", "avgpool", "adaptive_avgpool", "adaptive_maxpool",
    "add", "sub", "mul", "div", "cat", "flatten", "reshape", "permute", "slice", "mean", "pad", "other")
BYTES_PER_ELEMENT = 4  # memory access is counted in float32
_ATTR = {name: i for i, name in enumerate(LAYER_ATTRIBUTES)}


class NetworkTraceError(NassearchError, ValueError):
    """A network cannot be traced with torch.fx or run on the given input shape."""


# ---------------------------------------------------------------------------------------------
# Layer types.

_MODULE_KINDS: tuple[tuple[type[nn.Module] | tuple[type[nn.Module], ...], str], ...] = (
    ((nn.Conv1d, nn.Conv2d, nn.Conv3d), "conv"),
    ((nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d), "conv_transpose"),
    (nn.Linear, "linear"),
    ((nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d), "batchnorm"),
    ((nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d), "norm"),
    (nn.ReLU, "relu"), (nn.ReLU6, "relu6"), (nn.Hardswish, "hardswish"), (nn.Hardsigmoid, "hardsigmoid"),
    (nn.SiLU, "silu"), (nn.Sigmoid, "sigmoid"), (nn.GELU, "gelu"), (nn.Tanh, "tanh"),
    ((nn.Softmax, nn.LogSoftmax), "softmax"),
    ((nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d), "maxpool"),
    ((nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d), "avgpool"),
    ((nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d), "adaptive_avgpool"),
    ((nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d), "adaptive_maxpool"),
    (nn.Flatten, "flatten"), (nn.Unflatten, "reshape"),
    ((nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d), "pad"),
)
#: Modules that are the identity at inference.
_IDENTITY_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)

#: Function / method names (in-place variants without their trailing underscore).
_FUNCTION_KINDS: dict[str, str] = {
    **dict.fromkeys(("conv1d", "conv2d", "conv3d"), "conv"),
    **dict.fromkeys(("conv_transpose1d", "conv_transpose2d", "conv_transpose3d"), "conv_transpose"),
    "linear": "linear", **dict.fromkeys(("matmul", "mm", "bmm", "baddbmm", "addmm", "einsum"), "matmul"),
    "batch_norm": "batchnorm", **dict.fromkeys(("layer_norm", "group_norm", "instance_norm"), "norm"),
    "relu": "relu", "relu6": "relu6", "hardswish": "hardswish", "hardsigmoid": "hardsigmoid",
    "silu": "silu", "sigmoid": "sigmoid", "gelu": "gelu", "tanh": "tanh",
    **dict.fromkeys(("softmax", "log_softmax"), "softmax"),
    **dict.fromkeys(("max_pool1d", "max_pool2d", "max_pool3d"), "maxpool"),
    **dict.fromkeys(("avg_pool1d", "avg_pool2d", "avg_pool3d"), "avgpool"),
    **dict.fromkeys(("adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d"), "adaptive_avgpool"),
    **dict.fromkeys(("adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d"), "adaptive_maxpool"),
    **dict.fromkeys(("add", "iadd"), "add"), **dict.fromkeys(("sub", "isub", "rsub"), "sub"),
    **dict.fromkeys(("mul", "imul"), "mul"), **dict.fromkeys(("truediv", "itruediv", "div"), "div"),
    **dict.fromkeys(("cat", "concat", "concatenate", "stack"), "cat"),
    "flatten": "flatten",
    **dict.fromkeys(("view", "reshape", "squeeze", "unsqueeze", "expand", "expand_as", "unflatten"), "reshape"),
    **dict.fromkeys(("permute", "transpose", "t"), "permute"),
    **dict.fromkeys(("getitem", "narrow", "chunk", "split", "unbind"), "slice"),
    "mean": "mean", "pad": "pad",
}
_IDENTITY_FUNCTIONS = frozenset(("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
                                 "feature_alpha_dropout", "stochastic_depth", "contiguous", "clone", "detach",
                                 "to", "type", "float", "type_as"))
#: Binary operations that are the identity with this scalar operand (and whether it may come first).
_NEUTRAL = {"add": (0, True), "sub": (0, False), "mul": (1, True), "div": (1, False)}


def _target_name(node: fx.Node) -> str:
    target = node.target
    name = target if isinstance(target, str) else getattr(target, "__name__", str(target))
    return name[:-1] if name.endswith("_") and not name.endswith("__") else name


# ---------------------------------------------------------------------------------------------
# Rows of node attributes.


def layer_row(out_shape: Sequence[int] | None = None, **attrs: float | None) -> np.ndarray:
    """One row of ``node_attrs["layer"]``: the given LAYER_ATTRIBUTES, out_* from ``out_shape``, else NaN."""
    row = np.full(len(LAYER_ATTRIBUTES), np.nan)
    for name, value in attrs.items():
        if value is not None:
            row[_ATTR[name]] = float(value)
    if out_shape is not None:
        for name, size in zip(("out_batch", "out_channels", "out_height", "out_width"), out_shape):
            row[_ATTR[name]] = float(size)
    return row


def tensor_bytes(shape: Sequence[int]) -> int:
    """Bytes of a float32 tensor of this shape."""
    return BYTES_PER_ELEMENT * math.prod(int(s) for s in shape)


def _first(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        return float(value[0]) if value else None
    return float(value)


def _padding(padding: Any, kernel: Any, dilation: Any) -> float | None:
    if isinstance(padding, str):  # "valid" / "same"
        return 0.0 if padding == "valid" else float((_first(dilation) or 1) * ((_first(kernel) or 1) - 1) // 2)
    return _first(padding)


def _perm_code(perm: Sequence[int]) -> float:
    return float(sum(int(p) * 10 ** (len(perm) - 1 - i) for i, p in enumerate(perm)))


def _module_attrs(kind: str, module: nn.Module) -> dict[str, float | None]:
    if kind in ("conv", "conv_transpose"):
        attrs = {"kernel": _first(module.kernel_size), "stride": _first(module.stride),
                 "padding": _padding(module.padding, module.kernel_size, module.dilation),
                 "dilation": _first(module.dilation), "groups": module.groups,
                 "bias": float(module.bias is not None)}
        if kind == "conv_transpose":
            attrs["output_padding"] = _first(module.output_padding)
        return attrs
    if kind == "linear":
        return {"bias": float(module.bias is not None)}
    if kind in ("maxpool", "avgpool"):
        stride = module.stride if module.stride is not None else module.kernel_size
        return {"kernel": _first(module.kernel_size), "stride": _first(stride), "padding": _first(module.padding),
                "dilation": _first(getattr(module, "dilation", None))}
    return {}


def _function_attrs(kind: str, node: fx.Node, args: dict[str, Any], in_rank: int | None) -> dict[str, float | None]:
    if kind in ("conv", "conv_transpose"):
        weight = args.get("weight")
        kernel = _meta_shape(weight)[2] if isinstance(weight, fx.Node) and _meta_shape(weight) else None
        attrs = {"kernel": kernel, "stride": _first(args.get("stride", 1)),
                 "padding": _padding(args.get("padding", 0), kernel, args.get("dilation", 1)),
                 "dilation": _first(args.get("dilation", 1)), "groups": args.get("groups", 1),
                 "bias": float(args.get("bias") is not None)}
        if kind == "conv_transpose":
            attrs["output_padding"] = _first(args.get("output_padding", 0))
        return attrs
    if kind == "linear":
        return {"bias": float(args.get("bias") is not None)}
    if kind in ("maxpool", "avgpool"):
        kernel = args.get("kernel_size")
        stride = args.get("stride") or kernel
        return {"kernel": _first(kernel), "stride": _first(stride), "padding": _first(args.get("padding", 0)),
                "dilation": _first(args.get("dilation")) if kind == "maxpool" else None}
    if kind == "permute":
        positional = [a for a in node.args[1:]]
        if _target_name(node) == "permute":
            dims = positional[0] if len(positional) == 1 and isinstance(positional[0], (tuple, list)) else positional
            dims = dims or node.kwargs.get("dims", ())
            if in_rank and all(isinstance(d, int) for d in dims):
                return {"perm": _perm_code([d % in_rank for d in dims])}
        elif in_rank:
            pair = positional or [node.kwargs.get("dim0"), node.kwargs.get("dim1")]
            if _target_name(node) == "t":
                pair = [0, 1]
            if len(pair) == 2 and all(isinstance(d, int) for d in pair):
                perm = list(range(in_rank))
                a, b = pair[0] % in_rank, pair[1] % in_rank
                perm[a], perm[b] = perm[b], perm[a]
                return {"perm": _perm_code(perm)}
    return {}


# ---------------------------------------------------------------------------------------------
# Shapes recorded by ShapeProp.


def _metas(value: Any) -> list[TensorMetadata]:
    """Tensor metadata of every tensor a node (or nested argument) stands for."""
    if isinstance(value, fx.Node):
        return _metas(value.meta.get("tensor_meta"))
    if isinstance(value, TensorMetadata):
        return [value]
    if isinstance(value, (tuple, list)):
        return [m for v in value for m in _metas(v)]
    if isinstance(value, dict):
        return [m for v in value.values() for m in _metas(v)]
    return []


def _meta_shape(node: Any) -> tuple[int, ...] | None:
    metas = _metas(node)
    return tuple(int(s) for s in metas[0].shape) if metas else None


def _is_tensor(node: fx.Node) -> bool:
    return isinstance(node.meta.get("tensor_meta"), TensorMetadata)


def _arg_nodes(value: Any) -> list[fx.Node]:
    nodes: list[fx.Node] = []
    fx.node.map_arg(value, nodes.append)
    return nodes


# ---------------------------------------------------------------------------------------------
# The layer list.


@dataclass
class LayerTrace:
    """Layers of a network in topological order before they become an ArchGraph; node 0 is the input.

    ``preds[i]`` are the nodes feeding node ``i``; ``rows[i]`` its LAYER_ATTRIBUTES; ``nbytes[i]`` the
    bytes it reads and writes; ``outputs`` the nodes whose tensors the traced module returns.
    """

    kinds: list[str] = field(default_factory=list)
    preds: list[tuple[int, ...]] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)
    nbytes: list[int] = field(default_factory=list)
    outputs: tuple[int, ...] = ()

    @classmethod
    def start(cls, input_shape: Sequence[int]) -> LayerTrace:
        """A trace holding only the input node."""
        trace = cls()
        trace.append("input", (), layer_row(input_shape), 0)
        trace.outputs = (0,)
        return trace

    def append(self, kind: str, preds: Iterable[int], row: np.ndarray, nbytes: int) -> int:
        """Add a layer fed by ``preds``; returns its node index."""
        self.kinds.append(kind)
        self.preds.append(tuple(sorted(set(preds))))
        self.rows.append(row)
        self.nbytes.append(int(nbytes))
        return len(self.kinds) - 1

    def extend(self, other: LayerTrace, inputs: Sequence[int]) -> tuple[int, ...]:
        """Append ``other``'s layers with its input node replaced by ``inputs``; returns its outputs here."""
        mapped: list[tuple[int, ...]] = [tuple(inputs)]
        for i in range(1, len(other.kinds)):
            preds = [p for q in other.preds[i] for p in mapped[q]]
            mapped.append((self.append(other.kinds[i], preds, other.rows[i], other.nbytes[i]),))
        return tuple(sorted({p for o in other.outputs for p in mapped[o]}))

    @property
    def total_bytes(self) -> int:
        return sum(self.nbytes)

    def to_graph(self, batch_size: int, flops: int, params: int) -> ArchGraph:
        """The ArchGraph; ``flops`` (whole batch) and ``params`` are raw counts."""
        n = len(self.kinds)
        adjacency = np.zeros((n, n), dtype=np.uint8)
        sources = [p for preds in self.preds for p in preds]
        targets = [j for j, preds in enumerate(self.preds) for _ in preds]
        adjacency[sources, targets] = 1
        layer = np.stack(self.rows) if n else np.zeros((0, len(LAYER_ATTRIBUTES)))
        graph_attrs = {"batch_size": float(batch_size), "flops": flops / 1e6, "params": params / 1e6,
                       "memory_access": self.total_bytes / 1e6}
        return ArchGraph(ops=np.array([LAYER_VOCAB.index(k) for k in self.kinds], dtype=np.int64),
                         adjacency=adjacency, op_vocab=LAYER_VOCAB, node_attrs={"layer": layer},
                         graph_attrs=graph_attrs)


def _check_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(input_shape)
    if len(shape) < 2 or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0
                                 for s in shape):
        raise NetworkTraceError(f"input_shape must be positive integers (batch, channels, ...), got {input_shape!r}")
    return tuple(int(s) for s in shape)


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _symbolic_trace(model: nn.Module) -> fx.GraphModule:
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:  # torch.fx raises many types for untraceable Python
        raise NetworkTraceError(
            f"cannot trace {type(model).__name__} with torch.fx ({_reason(exc)}); whole-network "
            "graphs need a forward without data-dependent control flow (wrap such code in torch.fx.wrap'd "
            "functions or leaf modules)") from None


def trace_layers(model: nn.Module, input_shape: Sequence[int]) -> LayerTrace:
    """The layers of ``model`` run on a zero tensor of ``input_shape`` (batch first), traced with torch.fx."""
    shape = _check_shape(input_shape)
    was_training = model.training
    model.eval()
    try:
        # torch.fx traces into the root's forward: a lone torch.nn layer would become a functional call
        is_layer = type(model).__module__.startswith("torch.nn") and not isinstance(model, nn.Sequential)
        gm = _symbolic_trace(nn.Sequential(model) if is_layer else model)
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise NetworkTraceError(f"{type(model).__name__}.forward takes {len(placeholders)} inputs; "
                                    "whole-network graphs are traced for models with one tensor input")
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        try:
            with torch.no_grad():
                ShapeProp(gm).propagate(torch.zeros(shape, device=device))
        except Exception as exc:
            raise NetworkTraceError(f"running {type(model).__name__} on an input of shape {shape} failed "
                                    f"({_reason(exc)}); check input_shape (batch, channels, height, width)") from None
        return _layers_of(gm, shape)
    finally:
        model.train(was_training)


def _layers_of(gm: fx.GraphModule, shape: tuple[int, ...]) -> LayerTrace:
    trace = LayerTrace()
    kept: dict[fx.Node, tuple[int, ...]] = {}  # node -> the layers that stand for its value
    is_data: dict[fx.Node, bool] = {}
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            kept[node] = (trace.append("input", (), layer_row(shape), 0),)
            is_data[node] = True
            continue
        inputs = _arg_nodes((node.args, node.kwargs))
        if node.op == "output":
            trace.outputs = tuple(sorted({p for a in inputs for p in kept.get(a, ())}))
            continue
        is_data[node] = node.op != "get_attr" and any(is_data.get(a, False) for a in inputs)
        data_preds = tuple(sorted({p for a in inputs for p in kept.get(a, ())}))
        kind = _kind(node, modules) if is_data[node] and _metas(node) else None
        if kind is None:
            kept[node] = data_preds
            continue
        module = modules.get(node.target) if node.op == "call_module" else None
        out = _meta_shape(node)
        if module is not None:
            attrs = _module_attrs(kind, module)
            weights = sum(t.numel() for t in (*module.parameters(), *module.buffers()) if t.is_floating_point())
        else:
            normalized = None
            if node.op == "call_function":
                try:
                    normalized = node.normalized_arguments(gm, normalize_to_only_use_kwargs=True)
                except Exception:  # signature not resolvable: attributes stay NaN
                    normalized = None
            in_shape = _meta_shape(inputs[0]) if inputs else None
            attrs = _function_attrs(kind, node, dict(normalized.kwargs) if normalized else {},
                                    len(in_shape) if in_shape else None)
            weights = 0
        read = sum(math.prod(m.shape) for a in inputs for m in _metas(a))
        written = sum(math.prod(m.shape) for m in _metas(node))
        nbytes = BYTES_PER_ELEMENT * (read + written + weights)
        kept[node] = (trace.append(kind, data_preds, layer_row(out, **attrs), nbytes),)
    return trace


def _kind(node: fx.Node, modules: dict[str, nn.Module]) -> str | None:
    """Layer type of a data node, or None for bookkeeping to splice out."""
    if node.op == "call_module":
        module = modules[node.target]
        if isinstance(module, _IDENTITY_MODULES):
            return None
        for types, kind in _MODULE_KINDS:
            if isinstance(module, types):
                return kind
        return "other"
    if node.op not in ("call_function", "call_method"):
        return None
    name = _target_name(node)
    if name in _IDENTITY_FUNCTIONS:
        return None
    kind = _FUNCTION_KINDS.get(name, "other")
    if kind == "slice" and node.target is operator.getitem and not _is_tensor(node.args[0]):
        return None  # picking an element of a tuple/list
    if kind in _NEUTRAL and len(node.args) == 2:
        neutral, either_side = _NEUTRAL[kind]
        a, b = node.args
        if isinstance(b, (int, float)) and not isinstance(b, bool) and b == neutral:
            return None
        if either_side and isinstance(a, (int, float)) and not isinstance(a, bool) and a == neutral:
            return None
    return kind


def network_graph(model: nn.Module, input_shape: tuple[int, ...]) -> ArchGraph:
    """The per-layer graph of ``model`` for an input of ``input_shape`` (batch first), with static properties.

    Raises NetworkTraceError if torch.fx cannot trace the model or the model cannot run on that shape.
    """
    trace = trace_layers(model, input_shape)
    shape = _check_shape(input_shape)
    flops = count_flops(model, shape[1:]) * shape[0]
    return trace.to_graph(batch_size=shape[0], flops=flops, params=count_params(model))
