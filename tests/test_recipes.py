"""Final-training recipes: the shipped ImageNet recipes carry the seeds' numbers into the optimizer, schedule, loss,
transforms, initialisation and batch norm they build; bad recipes fail with one clear ConfigError."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from timm.optim import RMSpropTF
from torch import nn
from torchvision import transforms

from nassearch.errors import ConfigError
from nassearch.spaces.proxylessnas import ProxylessNASSpace
from nassearch.training.imagefolder import NEURAL_PREDICTOR_HOLDOUT
from nassearch.training.recipes import (Recipe, apply_bn_settings, apply_init, build_loss, build_optimizer,
                                        build_scheduler, build_transforms, load_recipe)

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
MOBILENET = EXPERIMENTS / "retrain_mobilenet_imagenet.yaml"
PROXYLESS = EXPERIMENTS / "retrain_proxyless_imagenet.yaml"
PROXYLESS_TEST = EXPERIMENTS / "retrain_proxyless_imagenet_test.yaml"
MINIMAL = {"epochs": 10, "batch_size": 256, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}


def tiny(channels: int = 8, multiplier: int = 1) -> nn.Sequential:
    """Stem conv + BN, a depthwise conv (``multiplier`` outputs per channel) with a bias + BN, and a classifier."""
    wide = channels * multiplier
    return nn.Sequential(nn.Conv2d(3, channels, 3, bias=False), nn.BatchNorm2d(channels),
                         nn.Conv2d(channels, wide, 3, groups=channels), nn.BatchNorm2d(wide),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(wide, 10))


def schedule(recipe: Recipe, steps_per_epoch: int) -> list[float]:
    """The lr of every optimizer step of the run, and after the last one."""
    optimizer = build_optimizer(recipe, tiny())
    scheduler = build_scheduler(recipe, optimizer, steps_per_epoch)
    lrs = []
    for _ in range(recipe.epochs * steps_per_epoch):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs + [optimizer.param_groups[0]["lr"]]


def group_of(optimizer: torch.optim.Optimizer, param: nn.Parameter) -> dict:
    return next(group for group in optimizer.param_groups if any(p is param for p in group["params"]))


def test_the_mobilenet_recipe_is_tnasp():
    recipe = load_recipe(MOBILENET)
    assert (recipe.epochs, recipe.batch_size, recipe.lr, recipe.peak_lr) == (240, 1024, 0.5, 0.5)
    assert (recipe.grad_clip, recipe.holdout, recipe.dropout, recipe.init) == (5.0, 0, 0.0, "default")

    model = tiny()
    optimizer = build_optimizer(recipe, model)
    assert type(optimizer) is torch.optim.SGD
    assert optimizer.defaults["lr"] == 0.5 and optimizer.defaults["momentum"] == 0.9
    assert not optimizer.defaults["nesterov"]
    stem, stem_bn, depthwise, _, _, _, classifier = model
    decayed = [stem.weight, depthwise.weight, classifier.weight, classifier.bias]  # RLNAS: kernels + classifier
    assert all(group_of(optimizer, p)["weight_decay"] == 4e-5 for p in decayed)
    assert all(group_of(optimizer, p)["weight_decay"] == 0 for p in (stem_bn.weight, stem_bn.bias, depthwise.bias))

    lrs = schedule(recipe, steps_per_epoch=2)  # no warm-up: cosine from 0.5 at the first step
    assert lrs[0] == 0.5
    assert lrs[240] == pytest.approx(0.25)
    assert lrs[-2] == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * 479 / 480)))
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert build_loss(recipe).label_smoothing == 0.1

    train, test = build_transforms(recipe, train=True).transforms, build_transforms(recipe, train=False).transforms
    crop = next(t for t in train if isinstance(t, transforms.RandomResizedCrop))
    autoaugment = next(t for t in train if isinstance(t, transforms.AutoAugment))
    assert crop.size == (224, 224) and autoaugment.policy == transforms.AutoAugmentPolicy.IMAGENET
    assert [type(t) for t in test[:2]] == [transforms.Resize, transforms.CenterCrop]
    assert (test[0].size, test[1].size) == (256, (224, 224))


def test_the_proxyless_recipe_is_the_neural_predictors():
    recipe = load_recipe(PROXYLESS)
    assert (recipe.epochs, recipe.batch_size, recipe.dropout, recipe.grad_clip) == (90, 32 * 128, 0.0, None)
    assert recipe.holdout == NEURAL_PREDICTOR_HOLDOUT == 50_046
    assert not recipe.autoaugment and recipe.image_size == 224

    torch.manual_seed(0)
    space = ProxylessNASSpace()
    model = space.build_model(space.sample(np.random.default_rng(0)))
    optimizer = build_optimizer(recipe, model)
    assert type(optimizer) is RMSpropTF
    hyper = {key: optimizer.defaults[key] for key in ("lr", "alpha", "eps", "momentum", "decoupled_decay")}
    assert hyper == {"lr": 2.64, "alpha": 0.9, "eps": 0.1, "momentum": 0.9, "decoupled_decay": False}
    kernels = {id(m.weight) for m in model.modules() if isinstance(m, nn.Conv2d)}
    by_decay = {group["weight_decay"]: {id(p) for p in group["params"]} for group in optimizer.param_groups}
    assert by_decay.keys() == {4e-5, 0.0}
    assert by_decay[4e-5] == kernels  # L2 on every convolution kernel and nothing else
    assert {id(model.classifier.weight), id(model.classifier.bias)} <= by_decay[0.0]

    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert apply_bn_settings(recipe, model) == len(norms) > 20
    assert {(m.eps, round(m.momentum, 12)) for m in norms} == {(1e-3, 0.01)}

    apply_init(recipe, model)
    assert model.classifier.weight.std().item() == pytest.approx(0.01, rel=0.02)
    assert model.classifier.weight.mean().abs().item() < 1e-4
    assert not model.classifier.bias.any()
    depthwise = max((m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1),
                    key=lambda m: m.weight.numel())
    assert depthwise.weight.std().item() == pytest.approx(math.sqrt(2 / depthwise.kernel_size[0] ** 2), rel=0.05)

    lrs = schedule(recipe, steps_per_epoch=4)  # warm-up 2.25 epochs = 9 steps, then cosine to 0
    assert lrs[0] == pytest.approx(2.64 / 9)
    assert lrs[8] == lrs[9] == pytest.approx(2.64)
    assert lrs[9 + (360 - 9) // 2] == pytest.approx(2.64 * 0.5 * (1 + math.cos(math.pi * 175 / 351)))
    assert lrs[-2] < 1e-3 and lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert build_loss(recipe).label_smoothing == 0.1


def test_the_proxyless_test_protocol_changes_only_epochs_dropout_holdout_and_warmup():
    validation, test = load_recipe(PROXYLESS).to_dict(), load_recipe(PROXYLESS_TEST).to_dict()
    changed = {key: test[key] for key in validation if test[key] != validation[key]}
    assert changed == {"epochs": 360, "dropout": 0.15, "holdout": 0, "warmup_epochs": 9.0}
    assert test["warmup_epochs"] / test["epochs"] == validation["warmup_epochs"] / validation["epochs"] == 0.025


@pytest.mark.parametrize("init, fan", [("he_fan_in", 9), ("he_fan_out", 18)])
def test_he_init_counts_the_fans_of_depthwise_convolutions_right(init, fan):
    torch.manual_seed(0)
    model = tiny(channels=2048, multiplier=2)  # depthwise 3x3: fan_in 9, fan_out 2 * 9 (torch's fan_out: 4096 * 9)
    depthwise = model[2]
    apply_init(Recipe.from_raw({**MINIMAL, "init": init}), model)
    std = math.sqrt(2 / fan)
    assert depthwise.weight.std().item() == pytest.approx(std, rel=0.03)
    assert depthwise.weight.abs().max().item() <= 2 * std / 0.87962566103423978  # truncated at 2 sigma
    assert not depthwise.bias.any()
    conv = nn.Conv2d(256, 512, 1)
    apply_init(Recipe.from_raw({**MINIMAL, "init": init}), nn.Sequential(conv, nn.Linear(512, 10)))
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (256 if init == "he_fan_in" else 512)), rel=0.03)


def test_the_default_recipe_leaves_initialisation_and_batch_norm_alone():
    model = tiny()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    recipe = Recipe.from_raw(MINIMAL)
    apply_init(recipe, model)
    assert apply_bn_settings(recipe, model) == 2
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    assert {(m.eps, m.momentum) for m in model.modules() if isinstance(m, nn.BatchNorm2d)} == {(1e-5, 0.1)}


def test_the_lr_follows_an_overridden_global_batch_unless_scale_lr_is_false():
    assert load_recipe(MOBILENET, ["batch_size=256"]).peak_lr == pytest.approx(0.125)
    assert load_recipe(PROXYLESS, ["batch_size=8192"]).peak_lr == pytest.approx(5.28)
    unscaled = load_recipe(MOBILENET, ["batch_size=256", "scale_lr=false"])
    assert unscaled.peak_lr == 0.5
    assert build_optimizer(load_recipe(MOBILENET, ["batch_size=512"]), tiny()).defaults["lr"] == pytest.approx(0.25)
    per_256 = Recipe.from_raw({**MINIMAL, "batch_size": 1024, "lr": 0.1, "lr_batch_size": 256})
    assert per_256.peak_lr == pytest.approx(0.4)
    assert Recipe.from_raw(MINIMAL).peak_lr == 0.1  # no lr_batch_size: the lr is for batch_size
    recipe = load_recipe(PROXYLESS, ["batch_size=1024"])
    assert Recipe.from_raw(recipe.to_dict()) == recipe


@pytest.mark.parametrize("change, message", [
    ({"label_smothing": 0.1},
     r"^label_smothing: unknown key in a recipe \(did you mean 'label_smoothing'\?\); allowed: epochs,"),
    ({"lr": -0.1}, r"^lr: must be > 0, got -0.1$"),
    ({"lr": "0.1"}, r"^lr: expected a number, got str '0.1'$"),
    ({"optimizer": "adam"}, r"^optimizer: 'adam' is not allowed; allowed values: sgd, rmsprop_tf$"),
    ({"optimizer": "rmsprop_tf", "rmsprop_decay": 0.9},
     r"^rmsprop_eps: missing; optimizer rmsprop_tf needs rmsprop_decay and rmsprop_eps"),
    ({"rmsprop_eps": 0.1}, r"^rmsprop_eps: applies to optimizer rmsprop_tf only; remove it or set optimizer"),
    ({"momentum": None}, r"^momentum: missing; a recipe states epochs, batch_size, optimizer, lr, momentum"),
    ({"warmup_epochs": 10}, r"^warmup_epochs: must lie in \[0, epochs=10\), got 10"),
    ({"bn_momentum_tf": 1.5}, r"^bn_momentum_tf: must lie in \[0, 1\), got 1.5$"),
    ({"init": "he"}, r"^init: 'he' is not allowed; allowed values: default, he_fan_in, he_fan_out$"),
    ({"momentum": 0.0, "nesterov": True}, r"^nesterov: needs optimizer sgd with momentum > 0"),
    ({"grad_clip": 0}, r"^grad_clip: must be > 0, got 0.0$"),
    ({"seed": -1}, r"^seed: must be >= 0, got -1$"),
    ({"holdout_seed": -2}, r"^holdout_seed: must be >= 0, got -2$"),
    ({"crop_scale": 0}, r"^crop_scale: must lie in \(0, 1\], got 0.0$"),
    ({"hflip": "no"}, r"^hflip: expected bool, got str 'no'$"),
])
def test_a_bad_recipe_value_gets_one_clear_config_error(change, message):
    with pytest.raises(ConfigError, match=message) as error:
        Recipe.from_raw({**MINIMAL, **change})
    assert "\n" not in str(error.value)


def test_a_recipe_file_that_is_not_a_mapping_or_a_bad_override_is_refused(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("- epochs\n")
    with pytest.raises(ConfigError, match=r"recipe .*recipe.yaml must be a mapping of settings \(epochs,"):
        load_recipe(path)
    with pytest.raises(ConfigError, match=r"^batch_size: expected an integer, got str 'big'$"):
        load_recipe(MOBILENET, ["batch_size=big"])


def test_final_layer_settings_need_a_final_linear_layer():
    convs = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
    recipe = Recipe.from_raw({**MINIMAL, "decay_final_layer": False, "final_layer_std": 0.01})
    with pytest.raises(ValueError, match="Sequential has no nn.Linear, so no final layer for the recipe's "
                                         "decay_final_layer"):
        build_optimizer(recipe, convs)
    with pytest.raises(ValueError, match="final_layer_std"):
        apply_init(recipe, convs)
