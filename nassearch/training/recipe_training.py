"""Training one network as a recipe says, one epoch at a time: shared by final training (``nassearch retrain``
with a recipe) and the ``imagenet_train`` evaluator (short proxy training during a search).

:func:`build_network` builds a space's network with the recipe's ``model`` keywords, dropout, initialisation and
batch-norm settings; :func:`recipe_datasets` gives the training and evaluation sets of an ImageFolder dataset
(the hold-out of ``holdout`` training images drawn with ``holdout_seed``, or ``val/``); :class:`RecipeTraining`
holds the optimizer, schedule, loss and mixed-precision state of one training and runs its epochs.

Each epoch's data order, augmentation and dropout are seeded from (seed, epoch, rank), so a run resumed from its
checkpoint repeats what an uninterrupted one does. Under torchrun (``Process.world_size > 1``) each process trains
on ``batch_size / world_size`` images of every global batch and the epoch's totals are summed over processes.
"""

from __future__ import annotations

import inspect
import math
import time
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, Subset

from nassearch.errors import ConfigError
from nassearch.spaces.base import SearchSpace
from nassearch.training.imagefolder import holdout_split, load_imagefolder, make_loader
from nassearch.training.loops import evaluate_loader, mean_loss_and_accuracy, top5_accuracy, train_epoch
from nassearch.training.process import Process, derived_seed
from nassearch.training.recipes import (Recipe, apply_bn_settings, apply_init, build_loss, build_optimizer,
                                        build_scheduler, build_transforms)

#: One epoch's row of numbers, in ``log.csv``'s column order.
LOG_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_top1", "val_top5", "images_per_s",
               "seconds")


def build_network(space: SearchSpace, arch: Any, recipe: Recipe, num_classes: int) -> nn.Module:
    """``space``'s network of ``arch`` for ``num_classes`` classes with the recipe's ``model`` keywords and dropout,
    initialised and its batch norms set as the recipe says (weights drawn from torch's global generator)."""
    kwargs = {"num_classes": num_classes, **recipe.model}
    if recipe.dropout:
        kwargs["dropout"] = recipe.dropout
    build = space.build_model
    try:
        inspect.signature(build).bind(arch, **kwargs)
    except TypeError:
        accepted = [name for name in inspect.signature(build).parameters if name not in ("arch", "num_classes")]
        raise ConfigError(f"model / dropout: {space.name}'s build_model takes {', '.join(accepted) or 'no'} "
                          f"keyword(s), not {', '.join(sorted(set(kwargs) - set(accepted) - {'num_classes'}))}"
                          ) from None
    try:
        model = build(arch, **kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"model: {space.name} cannot build the network with {recipe.model}: {exc}") from None
    apply_init(recipe, model)
    apply_bn_settings(recipe, model)
    return model


def recipe_datasets(recipe: Recipe, root: str) -> tuple[Dataset, Dataset, str, list[str]]:
    """(training set, evaluation set, the evaluation set's name, classes) of the ImageFolder dataset ``root``:
    with ``recipe.holdout`` the evaluation set is that many training images (drawn with ``holdout_seed``) left out
    of training, named ``holdout``; else ``val/``."""
    train = load_imagefolder(root, "train", build_transforms(recipe, train=True))
    evaluation_transform = build_transforms(recipe, train=False)
    if not recipe.holdout:
        return train, load_imagefolder(root, "val", evaluation_transform), "val", train.classes
    train_idx, holdout_idx = holdout_split(len(train), recipe.holdout, recipe.holdout_seed)
    holdout = Subset(load_imagefolder(root, "train", evaluation_transform), holdout_idx.tolist())
    return Subset(train, train_idx.tolist()), holdout, "holdout", train.classes


def steps_per_epoch(recipe: Recipe, train_images: int, proc: Process) -> int:
    """Optimizer steps in one epoch of ``train_images`` images (each process's last, smaller batch is dropped);
    ConfigError when the global batch does not split over the processes or exceeds the training set."""
    if recipe.batch_size % proc.world_size:
        raise ConfigError(f"batch_size: {recipe.batch_size} does not split evenly over {proc.world_size} processes")
    steps = math.ceil(train_images / proc.world_size) // (recipe.batch_size // proc.world_size)
    if steps == 0:
        raise ConfigError(f"batch_size: {recipe.batch_size} is more than the {train_images} training images; "
                          "choose a smaller batch_size")
    return steps


class RecipeTraining:
    """The state of one network's training under ``recipe`` on ``proc``: the network (wrapped in
    DistributedDataParallel under torchrun), optimizer, per-step schedule, loss and mixed precision (bfloat16
    autocast on CUDA where supported, else float16 with a gradient scaler; none on CPU).

    ``max_train_batches`` cuts every training epoch short (smoke tests); the schedule still spans full epochs.
    """

    def __init__(self, recipe: Recipe, network: nn.Module, train_set: Dataset, eval_set: Dataset, proc: Process,
                 max_train_batches: int | None = None) -> None:
        self.recipe, self.proc, self.max_train_batches = recipe, proc, max_train_batches
        self.train_set, self.eval_set = train_set, eval_set
        memory_format = torch.channels_last if recipe.channels_last else torch.contiguous_format
        self.network = network.to(proc.device, memory_format=memory_format)
        self.model: nn.Module = self.network
        if proc.world_size > 1:
            device_ids = [proc.device.index] if proc.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.network, device_ids=device_ids)
        self.batch = recipe.batch_size // proc.world_size
        self.optimizer = build_optimizer(recipe, self.network)
        self.scheduler = build_scheduler(recipe, self.optimizer, steps_per_epoch(recipe, len(train_set), proc))
        amp = recipe.amp and proc.device.type == "cuda"
        bf16 = amp and torch.cuda.is_bf16_supported()
        self.autocast_dtype = torch.bfloat16 if bf16 else None
        self.autocast = None if not amp else ("bfloat16" if bf16 else "float16")
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp and not bf16)
        self.criterion = build_loss(recipe)

    def run_epoch(self, epoch: int) -> dict[str, float]:
        """Train epoch ``epoch`` (from 0) and evaluate; its :data:`LOG_COLUMNS` row (metrics summed over processes)."""
        recipe, proc = self.recipe, self.proc
        start = time.perf_counter()
        torch.manual_seed(derived_seed(recipe.seed, epoch + 1, proc.rank, 0))  # augmentation, dropout
        lr = self.scheduler.get_last_lr()[0]
        loader_options = {"rank": proc.rank, "world_size": proc.world_size, "num_workers": recipe.num_workers,
                          "pin_memory": proc.device.type == "cuda"}
        train_loader = make_loader(self.train_set, self.batch, True, recipe.seed, epoch, drop_last=True,
                                   **loader_options)
        train = train_epoch(self.model, train_loader, self.optimizer, proc.device, grad_clip=recipe.grad_clip,
                            scaler=self.scaler, criterion=self.criterion, scheduler=self.scheduler,
                            autocast_dtype=self.autocast_dtype, channels_last=recipe.channels_last,
                            max_batches=self.max_train_batches)
        train_time = time.perf_counter() - start
        eval_loader = make_loader(self.eval_set, self.batch, False, recipe.seed, epoch, **loader_options)
        val = evaluate_loader(self.network, eval_loader, proc.device, amp=self.scaler.is_enabled(),
                              autocast_dtype=self.autocast_dtype, channels_last=recipe.channels_last)
        if proc.world_size > 1:
            dist.all_reduce(train)
            dist.all_reduce(val)
        train_loss, train_acc = mean_loss_and_accuracy(train)
        val_loss, val_top1 = mean_loss_and_accuracy(val)
        return {"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "train_acc": train_acc, "val_loss": val_loss,
                "val_top1": val_top1, "val_top5": top5_accuracy(val), "images_per_s": train[2].item() / train_time,
                "seconds": time.perf_counter() - start}

    def checkpoint(self) -> dict[str, Any]:
        """The training state to save after an epoch (network, optimizer, scheduler, scaler)."""
        return {"model": self.network.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict()}
