"""The DARTS CIFAR network (Liu et al., 2019) that retrains a discrete genotype.

A 3x3 stem with ``3C`` channels, ``layers`` cells with reduction cells (stride 2, channels doubled) at
``layers // 3`` and ``2 * layers // 3``, an optional auxiliary head after the second reduction cell,
global average pooling and a linear classifier. A cell preprocesses its two inputs (the outputs of the
two previous cells) to ``C`` channels; each intermediate node sums two operations applied to earlier
nodes; the cell's output concatenates the nodes of its ``concat`` list. Every BatchNorm is affine, as in
DARTS' retraining network. The cell works for any number of intermediate nodes (NASNet-A and AmoebaNet-A
have five).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from nassearch.spaces.layers import ReLUConvBN

if TYPE_CHECKING:
    from nassearch.spaces.darts_notation import Genotype


class DilConv(nn.Sequential):
    """ReLU -> depthwise (dilated) conv -> pointwise conv -> BatchNorm."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride=stride, padding=padding, dilation=dilation, groups=c_in,
                      bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )


class SepConv(nn.Sequential):
    """Two undilated DilConv blocks: the first with ``stride`` and ``c_in`` outputs, the second stride 1."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding),
            DilConv(c_in, c_out, kernel, 1, padding),
        )


class Zero(nn.Module):
    """The ``none`` operation: zeros of the output's shape (spatially subsampled when ``stride`` > 1)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, ::self.stride, ::self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """ReLU, two 1x1 stride-2 convs on ``x`` and on ``x`` shifted by one pixel, concatenated, BatchNorm."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


class Conv7x1_1x7(nn.Sequential):
    """ReLU -> 1x7 conv -> 7x1 conv -> BatchNorm (an AmoebaNet-A operation)."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(channels, channels, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
            nn.Conv2d(channels, channels, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
            nn.BatchNorm2d(channels),
        )


OpFactory = Callable[[int, int], nn.Module]

#: Every operation a genotype may name -> factory(channels, stride). The first eight are the DARTS
#: primitives (in DARTS' order); the last two occur only in the NASNet-A and AmoebaNet-A genotypes.
OPERATIONS: dict[str, OpFactory] = {
    "none": lambda c, stride: Zero(stride),
    "max_pool_3x3": lambda c, stride: nn.MaxPool2d(3, stride=stride, padding=1),
    "avg_pool_3x3": lambda c, stride: nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False),
    "skip_connect": lambda c, stride: nn.Identity() if stride == 1 else FactorizedReduce(c, c),
    "sep_conv_3x3": lambda c, stride: SepConv(c, c, 3, stride, 1),
    "sep_conv_5x5": lambda c, stride: SepConv(c, c, 5, stride, 2),
    "dil_conv_3x3": lambda c, stride: DilConv(c, c, 3, stride, 2, dilation=2),
    "dil_conv_5x5": lambda c, stride: DilConv(c, c, 5, stride, 4, dilation=2),
    "sep_conv_7x7": lambda c, stride: SepConv(c, c, 7, stride, 3),
    "conv_7x1_1x7": Conv7x1_1x7,
}


def drop_path(x: torch.Tensor, drop_prob: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero whole samples of ``x`` with probability ``drop_prob``; scale the kept ones by 1 / (1 - p)."""
    if not 0.0 <= drop_prob < 1.0:
        raise ValueError(f"drop_prob must lie in [0, 1), got {drop_prob}")
    if drop_prob == 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
    mask.bernoulli_(keep, generator=generator)
    return x / keep * mask


class Cell(nn.Module):
    """One DARTS cell built from a genotype's normal or reduce half."""

    def __init__(self, genotype: Genotype, c_prev_prev: int, c_prev: int, channels: int, reduction: bool,
                 reduction_prev: bool) -> None:
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = (FactorizedReduce(c_prev_prev, channels) if reduction_prev
                            else ReLUConvBN(c_prev_prev, channels, 1, 1, 0))
        self.preprocess1 = ReLUConvBN(c_prev, channels, 1, 1, 0)
        pairs = genotype.reduce if reduction else genotype.normal
        self.concat: tuple[int, ...] = tuple(genotype.reduce_concat if reduction else genotype.normal_concat)
        self.inputs: tuple[int, ...] = tuple(index for _, index in pairs)
        self.ops = nn.ModuleList(
            OPERATIONS[name](channels, 2 if reduction and index < 2 else 1) for name, index in pairs)
        self.out_channels = len(self.concat) * channels

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for first in range(0, len(self.ops), 2):
            node = 0
            for op, index in zip(self.ops[first:first + 2], self.inputs[first:first + 2]):
                h = op(states[index])
                if self.training and drop_prob > 0 and not isinstance(op, nn.Identity):
                    h = drop_path(h, drop_prob)
                node = node + h
            states.append(node)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHeadCIFAR(nn.Module):
    """The auxiliary classifier on the 8x8 feature map after the second reduction cell."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),
            nn.Conv2d(channels, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def reduction_layers(layers: int) -> tuple[int, int]:
    """Indices of the two reduction cells of a network with ``layers`` cells."""
    return layers // 3, 2 * layers // 3


class NetworkCIFAR(nn.Module):
    """DARTS' CIFAR network for a genotype; ``forward`` returns ``(logits, auxiliary logits or None)``.

    ``drop_path_prob`` is read at every forward pass; training loops set it each epoch.
    """

    stem_multiplier = 3

    def __init__(self, genotype: Genotype, C: int = 36, num_classes: int = 10, layers: int = 20,
                 auxiliary: bool = True, drop_path_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_path_prob = drop_path_prob
        self.auxiliary_layer = reduction_layers(layers)[1]
        c_curr = self.stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(3, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_prev_prev, c_prev, c_curr = c_curr, c_curr, C
        cells: list[Cell] = []
        reduction_prev = False
        c_auxiliary = c_prev
        for i in range(layers):
            reduction = i in reduction_layers(layers)
            if reduction:
                c_curr *= 2
            cell = Cell(genotype, c_prev_prev, c_prev, c_curr, reduction, reduction_prev)
            cells.append(cell)
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, cell.out_channels
            if i == self.auxiliary_layer:
                c_auxiliary = c_prev
        self.cells = nn.ModuleList(cells)
        self.auxiliary_head = AuxiliaryHeadCIFAR(c_auxiliary, num_classes) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits_aux = None
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.auxiliary_layer and self.auxiliary_head is not None and self.training:
                logits_aux = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return logits, logits_aux

    def num_params(self, exclude_auxiliary: bool = True) -> int:
        """Number of parameters; without the auxiliary head's by default, as DARTS reports them."""
        total = sum(p.numel() for p in self.parameters())
        if exclude_auxiliary and self.auxiliary_head is not None:
            total -= sum(p.numel() for p in self.auxiliary_head.parameters())
        return total

