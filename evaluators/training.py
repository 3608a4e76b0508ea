"""Proxy training: the ``train`` evaluator and the training/evaluation loops ``retrain`` shares.

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
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from evaluators.base import Evaluator, Result
from evaluators.datasets import TransformedSubset, cifar10_transforms, load_cifar10, train_valid_split
from nassearch.model_cost import model_cost
from spaces.base import Arch, SearchSpace, require_positive

log = logging.getLogger(__name__)

#: Keywords the ``train`` evaluator passes to ``space.build_model``.
BUILD_KEYWORDS = ("init_channels", "layers", "auxiliary")
IMAGE_SHAPE = (3, 32, 32)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; otherwise the named device, which must exist here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device: {name!r} is not a torch device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} asked for, but CUDA is not available here; use auto or cpu")
    return device


def classification_loss(outputs: torch.Tensor | Sequence[torch.Tensor | None], targets: torch.Tensor,
                        auxiliary_weight: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, logits) of a model output: cross-entropy of the logits, plus ``auxiliary_weight`` times the
    cross-entropy of the auxiliary logits when the model returned ``(logits, aux)`` with aux not None."""
    logits, aux = (outputs[0], outputs[1]) if isinstance(outputs, (tuple, list)) else (outputs, None)
    loss = nn.functional.cross_entropy(logits, targets)
    if aux is not None and auxiliary_weight:
        loss = loss + auxiliary_weight * nn.functional.cross_entropy(aux, targets)
    return loss, logits


def train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, device: torch.device, *,
                grad_clip: float | None = None, auxiliary_weight: float = 0.0,
                scaler: torch.amp.GradScaler | None = None, max_batches: int | None = None) -> torch.Tensor:
    """One pass of SGD over ``loader`` (at most ``max_batches`` batches); returns the totals
    ``[loss sum, correct, images]`` as a float64 tensor on ``device`` (sum it across processes under
    DDP). A ``scaler`` that is enabled turns on float16 autocast (CUDA mixed precision)."""
    model.train()
    totals = torch.zeros(3, dtype=torch.float64, device=device)
    amp = scaler is not None and scaler.is_enabled()
    for step, (images, targets) in enumerate(loader):
        if max_batches is not None and step >= max_batches:
            break
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            loss, logits = classification_loss(model(images), targets, auxiliary_weight)
        if amp:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if amp:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        totals += _batch_totals(loss, logits, targets)
    return totals


@torch.no_grad()
def evaluate_loader(model: nn.Module, loader: DataLoader, device: torch.device, amp: bool = False) -> torch.Tensor:
    """Cross-entropy and accuracy of ``model`` in eval mode over ``loader``, as totals like
    :func:`train_epoch`'s."""
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=device)
    for images, targets in loader:
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            loss, logits = classification_loss(model(images), targets)
        totals += _batch_totals(loss, logits, targets)
    return totals


def _batch_totals(loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    count = targets.numel()
    correct = (logits.argmax(1) == targets).sum()
    return torch.stack([loss.detach().double() * count, correct.double(),
                        torch.tensor(count, dtype=torch.float64, device=loss.device)])


def mean_loss_and_accuracy(totals: torch.Tensor) -> tuple[float, float]:
    """(mean loss, accuracy in percent) of ``[loss sum, correct, images]`` totals."""
    loss_sum, correct, count = totals.tolist()
    if count == 0:
        raise ValueError("no images were seen: the data loader is empty")
    return loss_sum / count, 100.0 * correct / count


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
