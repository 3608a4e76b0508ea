"""Parameter and FLOP counts of a built ``torch.nn.Module``.

FLOPs are counted with forward hooks, multiply-adds once, in the convention that reproduces the
NAS-Bench-201 cost tables: a convolution costs ``k_h * k_w * C_in / groups * C_out`` per output
position (+ ``C_out`` per position for a bias); a linear layer ``in * out`` (+ ``out``); a pooling layer
``k_h * k_w`` per output element (adaptive pooling: its input size); BatchNorm 2 per element with an
affine transform, 1 without; ReLU 1 per element; additions are free. Parameters are the trainable
ones, excluding auxiliary heads (as NAS benchmarks report them).

The ImageNet MobileNet spaces count by default in the convention of their papers (ProxylessNAS, OFA):
multiply-adds of convolutions and linear layers only (``count_macs``, half of what
``torch.utils.flop_counter`` reports); ``measure_cost`` counts in either convention (``FlopsConvention``).
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from nassearch.validation import shown


@dataclass(frozen=True)
class ModelCost:
    """Size of a network: trainable parameters and forward FLOPs for one input, both in millions."""

    params_m: float
    flops_m: float


def count_params(model: nn.Module, exclude: str = "auxiliary") -> int:
    """Number of trainable parameters whose name does not contain ``exclude``."""
    return sum(p.numel() for name, p in model.named_parameters() if p.requires_grad and exclude not in name)


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _layer_flops(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    positions = int(output.shape[2] * output.shape[3]) if output.dim() == 4 else 1
    if isinstance(module, nn.Conv2d):
        kh, kw = _pair(module.kernel_size)
        per_position = kh * kw * module.in_channels // module.groups * module.out_channels
        bias = module.out_channels if module.bias is not None else 0
        return (per_position + bias) * positions
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features + (module.out_features if module.bias is not None else 0)
    if isinstance(module, (nn.AvgPool2d, nn.MaxPool2d)):
        kh, kw = _pair(module.kernel_size)
        return kh * kw * int(output[0].numel())
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return int(inputs[0][0].numel())
    if isinstance(module, nn.BatchNorm2d):
        return (2 if module.affine else 1) * int(output[0].numel())
    if isinstance(module, nn.ReLU):
        return int(output[0].numel())
    return 0


_COUNTED = (nn.Conv2d, nn.Linear, nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
            nn.BatchNorm2d, nn.ReLU)


@torch.no_grad()
def count_flops(model: nn.Module, input_shape: tuple[int, ...],
                layer_flops: Callable[[nn.Module, tuple, torch.Tensor], int] | None = None,
                counted: tuple[type, ...] | None = None) -> int:
    """Forward FLOPs of ``model`` for one input of shape ``input_shape`` (without the batch axis): the sum of
    ``layer_flops(module, inputs, output)`` over its ``counted`` layer types (default: this module's rule for
    convolutions, linear, batch norm, ReLU and pooling layers)."""
    layer_flops = layer_flops or _layer_flops
    counted = counted or _COUNTED
    total = 0

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        out = output[0] if isinstance(output, (tuple, list)) else output
        total += layer_flops(module, inputs, out)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, counted)]
    was_training = model.training
    model.eval()
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        model(torch.zeros((1, *input_shape), device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total


def model_cost(model: nn.Module, input_shape: tuple[int, ...]) -> ModelCost:
    """Parameters and FLOPs (millions) of ``model`` for one input of ``input_shape``."""
    return ModelCost(params_m=count_params(model) / 1e6, flops_m=count_flops(model, input_shape) / 1e6)


#: What a space's ``cost`` counts as FLOPs. ``"macs"``: multiply-adds of convolutions and linear layers only
#: (``count_macs``; the ProxylessNAS / OFA papers' convention, e.g. ProxylessNAS-Mobile's published 320 M).
#: ``"model_cost"``: this module's ``count_flops``, which adds biases, batch norm, ReLU and pooling.
FlopsConvention = Literal["macs", "model_cost"]
FLOPS_CONVENTIONS: tuple[str, ...] = typing.get_args(FlopsConvention)


def check_flops_convention(convention: str) -> FlopsConvention:
    """``convention`` if it is one of FLOPS_CONVENTIONS; a one-line ValueError otherwise."""
    if convention not in FLOPS_CONVENTIONS:
        raise ValueError(f"flops_convention must be one of {', '.join(map(repr, FLOPS_CONVENTIONS))}, "
                         f"got {shown(convention)}")
    return convention


def _layer_macs(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        kh, kw = _pair(module.kernel_size)
        return kh * kw * module.in_channels // module.groups * int(output[0].numel())
    return module.in_features * module.out_features


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of the convolutions and linear layers of ``model`` for one input of ``input_shape``
    (without the batch axis); biases, normalisation, activations and pooling are not counted. Half of what
    ``torch.utils.flop_counter`` reports for such a network."""
    return count_flops(model, input_shape, _layer_macs, (nn.Conv2d, nn.Linear))


def measure_cost(model: nn.Module, input_shape: tuple[int, ...], convention: FlopsConvention = "macs") -> ModelCost:
    """Parameters and FLOPs (millions) of ``model`` for one input of ``input_shape``, FLOPs in ``convention``."""
    macs = check_flops_convention(convention) == "macs"
    flops = count_macs(model, input_shape) if macs else count_flops(model, input_shape)
    return ModelCost(params_m=count_params(model) / 1e6, flops_m=flops / 1e6)
