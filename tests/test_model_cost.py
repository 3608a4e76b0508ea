"""Params/FLOPs counting against hand-computed numbers in the documented convention.

Convention (nassearch/model_cost.py): conv ``kh*kw*C_in/groups*C_out`` per output position (+ C_out per
position with a bias); linear ``in*out`` (+ out); pooling ``kh*kw`` per output element; adaptive pooling
its input size; BatchNorm 2 per element if affine else 1; ReLU 1 per element; additions free.
"""

import pytest
import torch
from torch import nn

from nassearch.model_cost import ModelCost, count_flops, count_params, model_cost

INPUT = (3, 8, 8)


def tiny_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=True),       # -> 4x8x8
        nn.BatchNorm2d(4),                              # affine
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),                                # -> 4x4x4
        nn.Conv2d(4, 6, 1, bias=False),                 # -> 6x4x4
        nn.BatchNorm2d(6, affine=False),
        nn.AvgPool2d(3, stride=1, padding=1),           # -> 6x4x4
        nn.AdaptiveAvgPool2d(1),                        # -> 6x1x1
        nn.Flatten(),
        nn.Linear(6, 5),
    )


# Each layer by hand: (params, flops)
CONV3X3_BIAS = (3 * 3 * 3 * 4 + 4, (3 * 3 * 3 * 4 + 4) * 8 * 8)    # (112, 7168)
BN_AFFINE = (2 * 4, 2 * 4 * 8 * 8)                                    # (8, 512)
RELU = (0, 4 * 8 * 8)                                                 # (0, 256)
MAXPOOL2 = (0, 2 * 2 * 4 * 4 * 4)                                     # (0, 256)
CONV1X1_NO_BIAS = (4 * 6, 1 * 1 * 4 * 6 * 4 * 4)                      # (24, 384)
BN_PLAIN = (0, 1 * 6 * 4 * 4)                                         # (0, 96): running stats are buffers
AVGPOOL3 = (0, 3 * 3 * 6 * 4 * 4)                                     # (0, 864)
ADAPTIVE = (0, 6 * 4 * 4)                                             # (0, 96): its input size
LINEAR = (6 * 5 + 5, 6 * 5 + 5)                                       # (35, 35)
LAYERS = (CONV3X3_BIAS, BN_AFFINE, RELU, MAXPOOL2, CONV1X1_NO_BIAS, BN_PLAIN, AVGPOOL3, ADAPTIVE, LINEAR)


def test_tiny_sequential_params_and_flops():
    model = tiny_net()
    assert count_params(model) == sum(p for p, _ in LAYERS) == 179
    assert count_flops(model, INPUT) == sum(f for _, f in LAYERS) == 9667


def test_model_cost_is_in_millions():
    cost = model_cost(tiny_net(), INPUT)
    assert cost == ModelCost(params_m=179 / 1e6, flops_m=9667 / 1e6)


@pytest.mark.parametrize("layer, shape, flops", [
    (nn.Conv2d(3, 4, 3, padding=1, bias=False), (3, 8, 8), 3 * 3 * 3 * 4 * 64),
    (nn.Conv2d(3, 4, 3, padding=1, bias=True), (3, 8, 8), (3 * 3 * 3 * 4 + 4) * 64),
    (nn.Conv2d(3, 2, 3, stride=2, padding=1, bias=False), (3, 8, 8), 3 * 3 * 3 * 2 * 16),
    (nn.Conv2d(4, 8, 3, groups=2, bias=False), (4, 5, 5), 3 * 3 * (4 // 2) * 8 * 9),
    (nn.Conv2d(2, 3, (1, 3), padding=(0, 1), bias=False), (2, 4, 4), 1 * 3 * 2 * 3 * 16),
    (nn.BatchNorm2d(5), (5, 3, 3), 2 * 45),
    (nn.BatchNorm2d(5, affine=False), (5, 3, 3), 45),
    (nn.ReLU(), (5, 3, 3), 45),
    (nn.MaxPool2d(3, stride=2, padding=1), (2, 8, 8), 9 * 2 * 4 * 4),
    (nn.AvgPool2d(2), (2, 8, 8), 4 * 2 * 4 * 4),
    (nn.AdaptiveAvgPool2d(1), (7, 5, 5), 7 * 25),
    (nn.AdaptiveAvgPool2d(2), (7, 6, 6), 7 * 36),
    (nn.Linear(10, 3), (10,), 33),
    (nn.Linear(10, 3, bias=False), (10,), 30),
    (nn.Identity(), (3, 4, 4), 0),
    (nn.Flatten(), (3, 4, 4), 0),
])
def test_single_layer_flops(layer, shape, flops):
    assert count_flops(layer, shape) == flops


@pytest.mark.parametrize("layer, params", [
    (nn.Conv2d(3, 4, 3, bias=True), 3 * 3 * 3 * 4 + 4),
    (nn.Conv2d(3, 4, 3, bias=False), 3 * 3 * 3 * 4),
    (nn.Conv2d(4, 8, 3, groups=2, bias=False), 3 * 3 * 2 * 8),
    (nn.BatchNorm2d(5), 10),
    (nn.BatchNorm2d(5, affine=False), 0),
    (nn.Linear(10, 3), 33),
    (nn.ReLU(), 0),
])
def test_single_layer_params(layer, params):
    assert count_params(layer) == params


class WithAuxiliary(nn.Module):
    """A network with an auxiliary head (used in training only) and a frozen layer."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 3)                  # 15 params
        self.auxiliary_head = nn.Linear(4, 100)      # 500 params, excluded by name
        self.frozen = nn.Linear(4, 2)                # 10 params, not trainable
        self.frozen.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_params_exclude_auxiliary_heads_and_frozen_parameters():
    model = WithAuxiliary()
    assert count_params(model) == 15
    assert count_params(model, exclude="body") == 500
    assert model_cost(model, (4,)).params_m == 15 / 1e6


def test_flops_count_only_modules_that_run_forward():
    assert count_flops(WithAuxiliary(), (4,)) == 4 * 3 + 3


def test_count_flops_restores_training_mode_and_removes_hooks():
    model = tiny_net()
    model.train()
    count_flops(model, INPUT)
    assert model.training and all(m.training for m in model.modules())
    assert all(not m._forward_hooks for m in model.modules())
    model.eval()
    count_flops(model, INPUT)
    assert not model.training


def test_count_flops_does_not_update_batchnorm_statistics():
    model = tiny_net()
    before = model[1].running_mean.clone(), int(model[1].num_batches_tracked)
    count_flops(model, INPUT)
    assert torch.equal(model[1].running_mean, before[0]) and int(model[1].num_batches_tracked) == before[1]


def test_repeated_module_is_counted_each_time_it_runs():
    relu = nn.ReLU()
    model = nn.Sequential(relu, relu, relu)
    assert count_flops(model, (2, 3, 3)) == 3 * 18
