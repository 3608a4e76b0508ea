"""Proxy training: the ``train`` evaluator.

The ``train`` evaluator builds ``space.build_model(arch, init_channels=..., layers=..., auxiliary=False)``
(the DARTS space's keywords; DARTS searched with 16 channels and 8 cells) and trains it from scratch on
CIFAR-10's training images minus a held-out validation split (:func:`train_valid_split`), with SGD,
momentum, weight decay, gradient clipping and cosine annealing to 0, using DARTS's augmentation
without Cutout. It reports the validation accuracy after the last epoch. The run is deterministic:
the weights, augmentation and data order come from ``seed`` under a forked torch RNG, so the
process's global RNG is left untouched and the same seed gives the same result on the same device.
"""

from __future__ import annotations

import inspect
import logging
import time

import torch
from torch import nn
from torch.utils.data import DataLoader

from nassearch.evaluators.base import Evaluator, Result
from nassearch.training.datasets import TransformedSubset, cifar10_transforms, load_cifar10, train_valid_split
from nassearch.training.loops import evaluate_loader, mean_loss_and_accuracy, resolve_device, train_epoch
from nassearch.model_cost import model_cost
from nassearch.spaces.base import Arch, SearchSpace
from nassearch.validation import require_positive

log = logging.getLogger(__name__)

#: Keywords the ``train`` evaluator passes to ``space.build_model``.
BUILD_KEYWORDS = ("init_channels", "layers", "auxiliary")
IMAGE_SHAPE = (3, 32, 32)


class TrainingEvaluator(Evaluator):
    """Trains each architecture from scratch on CIFAR-10 and reports its held-out validation accuracy.

    Metrics: ``val_acc`` (percent, on the ``valid_fraction`` of the training images held out),
    ``train_loss`` (mean over the last epoch), and ``params`` / ``flops`` (millions) of the trained
    network as built (auxiliary head excluded; FLOPs for one 32x32 image). ``cost_s`` and ``wall_s``
    are the seconds the evaluation took. ``max_train_batches`` cuts every epoch short (smoke tests).
    ``verify_md5: false`` accepts data that is not the official release (e.g. synthetic test data).
    """

    name = "train"

    def __init__(self, space: SearchSpace, data_root: str = "data/cifar10", download: bool = False,
                 verify_md5: bool = True, epochs: int = 10, batch_size: int = 64, learning_rate: float = 0.025,
                 momentum: float = 0.9, weight_decay: float = 3e-4, grad_clip: float = 5.0,
                 valid_fraction: float = 0.1, init_channels: int = 16, layers: int = 8,
                 max_train_batches: int | None = None, device: str = "auto", num_workers: int = 0,
                 seed: int = 0) -> None:
        super().__init__(space)
        accepted = inspect.signature(space.build_model).parameters
        missing = [k for k in BUILD_KEYWORDS if k not in accepted]
        if missing:
            raise ValueError(f"the train evaluator builds networks with {', '.join(BUILD_KEYWORDS)}, but space "
                             f"{space.name!r} does not take {', '.join(missing)}; use it with the darts space")
        require_positive(epochs=epochs, batch_size=batch_size, init_channels=init_channels, layers=layers)
        if max_train_batches is not None:
            require_positive(max_train_batches=max_train_batches)
        if learning_rate <= 0 or momentum < 0 or weight_decay < 0 or grad_clip <= 0 or num_workers < 0:
            raise ValueError("learning_rate and grad_clip must be > 0; momentum, weight_decay and num_workers "
                             ">= 0")
        self.device = resolve_device(device)
        self.epochs, self.batch_size, self.num_workers = epochs, batch_size, num_workers
        self.learning_rate, self.momentum, self.weight_decay, self.grad_clip = (learning_rate, momentum,
                                                                                 weight_decay, grad_clip)
        self.init_channels, self.layers = init_channels, layers
        self.max_train_batches = max_train_batches
        self.seed = seed
        images = load_cifar10(data_root, train=True, download=download, verify_md5=verify_md5)
        train_idx, valid_idx = train_valid_split(len(images), valid_fraction, seed)
        self.train_set = TransformedSubset(images, train_idx, cifar10_transforms(train=True))
        self.valid_set = TransformedSubset(images, valid_idx, cifar10_transforms(train=False))

    @property
    def metrics(self) -> tuple[str, ...]:
        return ("val_acc", "train_loss", "params", "flops")

    def evaluate(self, arch: Arch) -> Result:
        start = time.perf_counter()
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type="cuda"):
            torch.manual_seed(self.seed)
            model = self.space.build_model(arch, init_channels=self.init_channels, layers=self.layers,
                                           auxiliary=False).to(self.device)
            cost = model_cost(model, IMAGE_SHAPE)
            train_loss = self._train(model)
            valid = DataLoader(self.valid_set, self.batch_size, num_workers=self.num_workers)
            _, val_acc = mean_loss_and_accuracy(evaluate_loader(model, valid, self.device))
        wall = time.perf_counter() - start
        log.info("trained %s: val_acc %.2f%% in %.1f s", self.space.to_str(arch), val_acc, wall)
        metrics = {"val_acc": val_acc, "train_loss": train_loss, "params": cost.params_m, "flops": cost.flops_m}
        return Result(metrics, cost_s=wall, wall_s=wall)

    def _train(self, model: nn.Module) -> float:
        """Train ``model`` for ``epochs``; the mean training loss of the last epoch."""
        loader = DataLoader(self.train_set, self.batch_size, shuffle=True, num_workers=self.num_workers,
                            generator=torch.Generator().manual_seed(self.seed), drop_last=False)
        optimizer = torch.optim.SGD(model.parameters(), self.learning_rate, momentum=self.momentum,
                                    weight_decay=self.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, self.epochs)
        for _ in range(self.epochs):
            totals = train_epoch(model, loader, optimizer, self.device, grad_clip=self.grad_clip,
                                 max_batches=self.max_train_batches)
            scheduler.step()
        return mean_loss_and_accuracy(totals)[0]
