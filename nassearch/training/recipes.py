"""Final-training recipes for ImageNet networks: a typed :class:`Recipe` read from YAML, and the builders that turn
it into an optimizer, a learning-rate schedule, a loss, transforms, and a network's initialisation and batch norm.

The shipped recipes are ``experiments/retrain_*_imagenet*.yaml``; each comment there says where every value
comes from. Conventions a recipe follows:

- **Learning rate and batch.** ``lr`` is the peak learning rate for the global batch ``lr_batch_size``;
  :func:`load_recipe` sets ``lr_batch_size`` to the ``batch_size`` written in the file unless the file names it.
  With ``scale_lr: true`` (the default) the optimizer uses ``lr * batch_size / lr_batch_size`` (the linear
  scaling rule of Goyal et al., 2017), so overriding ``batch_size`` (``--set batch_size=256``) scales the lr with
  it; ``scale_lr: false`` keeps ``lr`` whatever the batch.
- **TensorFlow conventions.** ``rmsprop_decay`` and ``rmsprop_eps`` are TensorFlow's RMSProp decay and epsilon
  (epsilon added inside the square root, mean square started at one): timm's ``RMSpropTF``, whose ``alpha`` is the
  decay. ``bn_momentum_tf`` is TensorFlow's batch-norm momentum, the fraction of the running statistics kept at
  each step; PyTorch's momentum is ``1 - bn_momentum_tf``.
- **Schedule.** ``cosine``: linear warm-up from ``peak / warmup_steps`` to the peak over ``warmup_epochs``, then
  cosine decay to 0 at the last step; evaluated per optimizer step by torch's ``LambdaLR`` (a standard torch
  scheduler: ``scheduler.step()`` after every ``optimizer.step()``, and its ``state_dict`` resumes it).
- **Weight decay** is the L2 gradient term ``weight_decay * w`` (TensorFlow's L2 regularisation rate in the
  ``tf.contrib`` sense), on every parameter except the final layer's when ``decay_final_layer`` is false and the
  one-dimensional ones (batch-norm scales and shifts, biases) when ``decay_norm_and_bias`` is false. The final
  layer is the network's last ``nn.Linear``; for its bias ``decay_final_layer`` decides.
- **Initialisation.** ``he_fan_in`` / ``he_fan_out``: convolution kernels drawn as TensorFlow's He normal draws
  them (a normal truncated at two standard deviations, rescaled so the standard deviation is ``sqrt(2 / fan)``),
  with the fans of grouped and depthwise convolutions counted right: ``fan_in = in_channels / groups * k * k`` and
  ``fan_out = out_channels / groups * k * k``. (TensorFlow's default overestimates a depthwise kernel's fan-in by
  its channel count; so does PyTorch's ``fan_out`` by ``groups``.) Convolution biases start at 0.
  ``final_layer_std`` draws the final layer's weight from N(0, std) and zeroes its bias. ``default`` keeps the
  network's own initialisation.
"""

from __future__ import annotations

import logging
import math
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from nassearch import config as cfg
from nassearch.errors import ConfigError
from nassearch.training.imagefolder import imagenet_transforms
from nassearch.validation import check_seed, reject_unknown, typed

log = logging.getLogger(__name__)

#: Settings every recipe states; the others have defaults that switch a feature off or keep PyTorch's behaviour.
REQUIRED = ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay")
#: Standard deviation of a standard normal truncated at +-2, by which TensorFlow's truncated He normal is rescaled.
TRUNCATED_NORMAL_STD = 0.87962566103423978
CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@dataclass(frozen=True)
class Recipe:
    """How to train a network for real; see the module docstring for the conventions of each group of settings."""

    epochs: int
    batch_size: int  # global, over all processes
    optimizer: Literal["sgd", "rmsprop_tf"]
    lr: float  # peak learning rate for a global batch of lr_batch_size
    momentum: float
    weight_decay: float
    lr_batch_size: int | None = None  # None: batch_size
    scale_lr: bool = True
    nesterov: bool = False  # sgd only
    rmsprop_decay: float | None = None  # rmsprop_tf only (and required there)
    rmsprop_eps: float | None = None  # rmsprop_tf only (and required there)
    decay_final_layer: bool = True
    decay_norm_and_bias: bool = True
    schedule: Literal["cosine"] = "cosine"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    grad_clip: float | None = None  # max L2 norm of all gradients together; None: no clipping
    autoaugment: bool = False  # AutoAugment's ImageNet policy on training images
    image_size: int = 224  # RandomResizedCrop for training; resize to size / 0.875 and centre-crop for evaluation
    crop_scale: float = 0.08  # RandomResizedCrop's smallest crop, as a fraction of the image's area (Inception's)
    hflip: bool = True  # random horizontal flips of training images
    dropout: float = 0.0  # before the classifier
    bn_eps: float | None = None  # None: the network's own
    bn_momentum_tf: float | None = None  # None: the network's own
    init: Literal["default", "he_fan_in", "he_fan_out"] = "default"
    final_layer_std: float | None = None  # None: the network's own
    amp: bool = True  # float16 autocast with gradient scaling, on CUDA only
    channels_last: bool = False
    holdout: int = 0  # training images held out for validation (Neural Predictor: 50,046); 0 trains on all
    holdout_seed: int = 0  # draws the hold-out: keep it fixed so every run validates on the same images
    seed: int = 0  # weights, data order, augmentation, dropout
    num_workers: int = 8
    model: dict[str, Any] = field(default_factory=dict)  # keywords of the space's build_model, e.g. widths

    def __post_init__(self) -> None:
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr,
                    "image_size": self.image_size, "lr_batch_size": self.lr_batch_size, "grad_clip": self.grad_clip,
                    "bn_eps": self.bn_eps, "rmsprop_eps": self.rmsprop_eps, "final_layer_std": self.final_layer_std}
        for key, value in positive.items():
            if value is not None and value <= 0:
                raise ConfigError(f"{key}: must be > 0, got {value}")
        for key, value in {"weight_decay": self.weight_decay, "holdout": self.holdout,
                           "num_workers": self.num_workers}.items():
            if value < 0:
                raise ConfigError(f"{key}: must be >= 0, got {value}")
        for key, value in {"momentum": self.momentum, "label_smoothing": self.label_smoothing,
                           "dropout": self.dropout, "rmsprop_decay": self.rmsprop_decay,
                           "bn_momentum_tf": self.bn_momentum_tf}.items():
            if value is not None and not 0 <= value < 1:
                raise ConfigError(f"{key}: must lie in [0, 1), got {value}")
        if not 0 < self.crop_scale <= 1:
            raise ConfigError(f"crop_scale: must lie in (0, 1], got {self.crop_scale}")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ConfigError(f"warmup_epochs: must lie in [0, epochs={self.epochs}), got {self.warmup_epochs}")
        rmsprop = {"rmsprop_decay": self.rmsprop_decay, "rmsprop_eps": self.rmsprop_eps}
        for key, value in rmsprop.items():
            if self.optimizer == "rmsprop_tf" and value is None:
                raise ConfigError(f"{key}: missing; optimizer rmsprop_tf needs rmsprop_decay and rmsprop_eps "
                                  "(TensorFlow's, e.g. 0.9 and 0.1)")
            if self.optimizer == "sgd" and value is not None:
                raise ConfigError(f"{key}: applies to optimizer rmsprop_tf only; remove it or set optimizer: "
                                  "rmsprop_tf")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ConfigError("nesterov: needs optimizer sgd with momentum > 0; set nesterov: false or change those")

    @classmethod
    def from_raw(cls, raw: Any, source: str = "a recipe") -> Recipe:
        """A validated recipe from a flat mapping of settings; ``source`` names where ``raw`` comes from when it is
        not a mapping."""
        names = [f.name for f in fields(cls)]
        if not isinstance(raw, dict):
            raise ConfigError(f"{source} must be a mapping of settings ({', '.join(names)}), not a "
                              f"{type(raw).__name__}")
        reject_unknown(raw, names, "", " in a recipe")
        for key in REQUIRED:
            if raw.get(key) is None:
                raise ConfigError(f"{key}: missing; a recipe states {', '.join(REQUIRED)}")
        hints = typing.get_type_hints(cls)
        return cls(**{key: check_seed(value, key) if key in ("seed", "holdout_seed") else typed(key, value, hints[key])
                      for key, value in raw.items()})

    def to_dict(self) -> dict[str, Any]:
        """Plain data for YAML; ``from_raw(to_dict())`` gives back an equal recipe."""
        return asdict(self)

    @property
    def peak_lr(self) -> float:
        """The learning rate the optimizer is built with: ``lr``, scaled linearly to ``batch_size`` when
        ``scale_lr``."""
        if not self.scale_lr or self.lr_batch_size is None:
            return self.lr
        return self.lr * self.batch_size / self.lr_batch_size

    @property
    def bn_momentum_torch(self) -> float | None:
        """PyTorch's batch-norm momentum for ``bn_momentum_tf``: ``1 - bn_momentum_tf``."""
        return None if self.bn_momentum_tf is None else 1.0 - self.bn_momentum_tf


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = (),
                settings: dict[str, Any] | None = None) -> Recipe:
    """The recipe of a YAML file with ``settings`` (a mapping of recipe keys) and then ``key=value`` ``overrides``
    applied; the file's ``lr`` stays tied to the file's ``batch_size`` (see the module docstring)."""
    raw = cfg.read_yaml(path, "recipe")
    if isinstance(raw, dict):
        raw.setdefault("lr_batch_size", raw.get("batch_size"))
        raw.update(settings or {})
        for override in overrides:
            cfg.apply_override(raw, override)
    recipe = Recipe.from_raw(raw, f"recipe {path}")
    if recipe.peak_lr != recipe.lr:
        log.info("lr %g (for a batch of %d) scaled to %g for a batch of %d", recipe.lr, recipe.lr_batch_size,
                 recipe.peak_lr, recipe.batch_size)
    return recipe


# ---------------------------------------------------------------------------------------------
# Builders


def final_layer(model: nn.Module) -> nn.Linear | None:
    """The network's final layer: its last ``nn.Linear`` in registration order (the classifier); None without one."""
    return next((module for module in reversed(list(model.modules())) if isinstance(module, nn.Linear)), None)


def _no_final_layer(model: nn.Module, setting: str) -> ValueError:
    return ValueError(f"{type(model).__name__} has no nn.Linear, so no final layer for the recipe's {setting}")


def parameter_groups(recipe: Recipe, model: nn.Module) -> list[dict[str, Any]]:
    """The trainable parameters in a group with ``recipe.weight_decay`` and a group without weight decay (empty
    groups left out), as ``decay_final_layer`` and ``decay_norm_and_bias`` say."""
    final = final_layer(model)
    if final is None and not recipe.decay_final_layer:
        raise _no_final_layer(model, "decay_final_layer")
    final_ids = set() if final is None else {id(param) for param in final.parameters()}
    decayed, exempt = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        if id(param) in final_ids:
            decay = recipe.decay_final_layer
        else:
            decay = param.ndim > 1 or recipe.decay_norm_and_bias
        (decayed if decay else exempt).append(param)
    groups = [{"params": decayed, "weight_decay": recipe.weight_decay}, {"params": exempt, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


def build_optimizer(recipe: Recipe, model: nn.Module) -> torch.optim.Optimizer:
    """``torch.optim.SGD`` or timm's ``RMSpropTF`` over :func:`parameter_groups` at ``recipe.peak_lr``."""
    groups = parameter_groups(recipe, model)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.peak_lr, momentum=recipe.momentum, nesterov=recipe.nesterov)
    from timm.optim import RMSpropTF  # imported here: timm takes seconds to import and only this optimizer needs it

    return RMSpropTF(groups, lr=recipe.peak_lr, alpha=recipe.rmsprop_decay, eps=recipe.rmsprop_eps,
                     momentum=recipe.momentum)


def lr_factor(recipe: Recipe, steps_per_epoch: int) -> Callable[[int], float]:
    """The schedule as a function of the optimizer step (from 0) giving the fraction of the peak lr."""
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    total = recipe.epochs * steps_per_epoch
    warmup = int(recipe.warmup_epochs * steps_per_epoch)  # < total, as warmup_epochs < epochs

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(step - warmup, total - warmup) / (total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def build_scheduler(recipe: Recipe, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> LambdaLR:
    """Torch's ``LambdaLR`` over :func:`lr_factor`: call ``step()`` after every optimizer step."""
    return LambdaLR(optimizer, lr_factor(recipe, steps_per_epoch))


def build_loss(recipe: Recipe) -> nn.CrossEntropyLoss:
    """Cross-entropy with the recipe's label smoothing."""
    return nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)


def build_transforms(recipe: Recipe, train: bool) -> Callable:
    """ImageNet preprocessing at ``recipe.image_size``, with AutoAugment on training images when the recipe says so."""
    return imagenet_transforms(train, recipe.image_size, autoaugment=recipe.autoaugment and train,
                               crop_scale=recipe.crop_scale, hflip=recipe.hflip)


def conv_fans(conv: nn.Module) -> tuple[int, int]:
    """(fan_in, fan_out) of a convolution's kernel, grouped and depthwise ones counted right."""
    out_channels, in_per_group, *kernel = conv.weight.shape
    receptive = math.prod(kernel)
    return in_per_group * receptive, out_channels // conv.groups * receptive


@torch.no_grad()
def apply_init(recipe: Recipe, model: nn.Module) -> None:
    """Initialise ``model`` in place as ``recipe.init`` and ``recipe.final_layer_std`` say (torch's global
    generator draws the weights)."""
    if recipe.init != "default":
        use_fan_in = recipe.init == "he_fan_in"
        for module in model.modules():
            if isinstance(module, CONVOLUTIONS):
                fan_in, fan_out = conv_fans(module)
                std = math.sqrt(2.0 / (fan_in if use_fan_in else fan_out)) / TRUNCATED_NORMAL_STD
                nn.init.trunc_normal_(module.weight, 0.0, std, -2.0 * std, 2.0 * std)
                if module.bias is not None:
                    module.bias.zero_()
    if recipe.final_layer_std is not None:
        final = final_layer(model)
        if final is None:
            raise _no_final_layer(model, "final_layer_std")
        final.weight.normal_(0.0, recipe.final_layer_std)
        if final.bias is not None:
            final.bias.zero_()


def apply_bn_settings(recipe: Recipe, model: nn.Module) -> int:
    """Set ``bn_eps`` and PyTorch's momentum for ``bn_momentum_tf`` (those the recipe gives) on every batch norm
    of ``model``; return how many there are."""
    norms = [module for module in model.modules() if isinstance(module, BATCH_NORMS)]
    for norm in norms:
        if recipe.bn_eps is not None:
            norm.eps = recipe.bn_eps
        if recipe.bn_momentum_torch is not None:
            norm.momentum = recipe.bn_momentum_torch
    return len(norms)
