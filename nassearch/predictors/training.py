"""The shared predictor trainer: optimiser, warm-up + decay schedule, losses, EMA, best-epoch selection.

Weight decay applies to weight matrices only (not to biases or normalisation parameters). Losses: mean
squared error, the pairwise logistic ranking loss (NAR eq. 9: for every pair with y_i > y_j,
log(1 + exp(-(s_i - s_j)))), their sum, and an optional predictor-specific term. With a validation set,
the epoch with the lowest validation MSE is kept (and training stops after ``patience`` epochs without
improvement, when set); ``max_steps`` caps the optimiser steps by running fewer epochs on larger training sets
(epochs scaled to the data size, so refits inside a search loop cost about the same every round); with ``ema_decay``, the exponential moving average of the weights is what is
evaluated and returned. Inside ``fit_progress``, fits show their epochs as a transient bar on stderr.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from nassearch.training.loops import resolve_device

Inputs = dict[str, torch.Tensor]
ExtraLoss = Callable[[nn.Module, Inputs, torch.Tensor, torch.Tensor], torch.Tensor]

_show_epochs: ContextVar[bool] = ContextVar("show_fit_epochs", default=False)


@contextmanager
def fit_progress(show: bool = True) -> Iterator[None]:
    """While the block runs, predictor fits show a bar of their epochs on stderr (below a run's own bar), so a
    long fit does not look like a frozen run; each bar is cleared when its fit ends."""
    token = _show_epochs.set(show)
    try:
        yield
    finally:
        _show_epochs.reset(token)


def fit_epochs(epochs: int, what: str) -> Iterator[int]:
    """``range(epochs)``, shown as a transient bar named ``what`` inside ``fit_progress``."""
    return iter(tqdm(range(epochs), desc=what, unit="epoch", leave=False, file=sys.stderr, dynamic_ncols=True,
                     disable=not _show_epochs.get()))


@dataclass(frozen=True)
class TrainSettings:
    """How a predictor network is trained (defaults: the Neural Predictor / TNASP recipe)."""

    epochs: int = 300
    batch_size: int = 10
    lr: float = 1e-4
    weight_decay: float = 1e-3
    optimizer: Literal["adam", "adamw"] = "adam"
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_fraction: float = 0.0
    loss: Literal["mse", "ranking", "mse+ranking"] = "mse"
    ranking_weight: float = 1.0
    ema_decay: float | None = None
    patience: int | None = None
    max_steps: int | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        if not self.lr > 0 or not self.weight_decay >= 0 or not self.ranking_weight >= 0:
            raise ValueError("lr must be > 0, weight_decay and ranking_weight >= 0")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must lie in [0, 1), got {self.warmup_fraction}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 (or null: no cap), got {self.max_steps}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must lie in (0, 1), got {self.ema_decay}")
        if self.device != "auto":  # an unknown name, or CUDA asked for where there is none: a settings error now
            resolve_device(self.device)


def pairwise_ranking_loss(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of log(1 + exp(-(s_i - s_j))) over pairs with targets[i] > targets[j] (0 when none)."""
    better = targets[:, None] > targets[None, :]
    if not better.any():
        return scores.sum() * 0.0
    margins = scores[:, None] - scores[None, :]
    return nn.functional.softplus(-margins[better]).mean()


def _loss(settings: TrainSettings, scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    mse = nn.functional.mse_loss(scores, targets)
    if settings.loss == "mse":
        return mse
    ranking = pairwise_ranking_loss(scores, targets) * settings.ranking_weight
    return ranking if settings.loss == "ranking" else mse + ranking


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight matrices decay; biases, norms and other vectors do not."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_lambda(settings: TrainSettings, total_steps: int) -> Callable[[int], float]:
    """Linear warm-up for ``warmup_fraction`` of the steps, then cosine / linear decay to 0 (or constant)."""
    warmup = int(settings.warmup_fraction * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        if settings.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        if settings.schedule == "linear":
            return max(0.0, 1.0 - progress)
        return 1.0

    return factor


def epochs_for(settings: TrainSettings, n: int) -> int:
    """Epochs of a fit on ``n`` examples: ``epochs``, or fewer when ``max_steps`` caps the optimiser steps (so
    a fit's cost stops growing with the data: about ``max_steps`` steps once n * epochs / batch_size exceeds it)."""
    if settings.max_steps is None:
        return settings.epochs
    return max(1, min(settings.epochs, settings.max_steps // math.ceil(n / settings.batch_size)))


def _take(inputs: Inputs, index: torch.Tensor) -> Inputs:
    return {k: v[index] for k, v in inputs.items()}


@torch.no_grad()
def predict_scores(model: nn.Module, inputs: Inputs, batch_size: int = 256) -> torch.Tensor:
    """Forward ``inputs`` in batches in eval mode; scores on the CPU, shape (n,). Batches of a few hundred
    keep intermediate tensors small enough to be reused by the allocator, which on CPU beats larger ones."""
    model.eval()
    n = next(iter(inputs.values())).shape[0]
    device = next(model.parameters()).device
    out = [model(**{k: v[i:i + batch_size].to(device) for k, v in inputs.items()}).float().cpu()
           for i in range(0, n, batch_size)]
    return torch.cat(out) if out else torch.zeros(0)


def train(model: nn.Module, inputs: Inputs, targets: torch.Tensor, settings: TrainSettings, seed: int,
          val: tuple[Inputs, torch.Tensor] | None = None, extra_loss: ExtraLoss | None = None) -> nn.Module:
    """Train ``model`` (forward(**inputs) -> scores (B,)) on normalised targets; return the trained model
    (EMA weights when configured, the best validation epoch when ``val`` is given)."""
    device = resolve_device(settings.device)
    model.to(device)
    inputs = {k: v.to(device) for k, v in inputs.items()}
    targets = targets.to(device)
    n = targets.shape[0]
    steps_per_epoch = math.ceil(n / settings.batch_size)
    epochs = epochs_for(settings, n)
    optimizer_cls = torch.optim.AdamW if settings.optimizer == "adamw" else torch.optim.Adam
    optimizer = optimizer_cls(parameter_groups(model, settings.weight_decay), lr=settings.lr, fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(settings, epochs * steps_per_epoch))
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(settings.ema_decay)) if settings.ema_decay else None
    generator = torch.Generator().manual_seed(seed)
    best_loss, best_state, stale = math.inf, None, 0
    for _ in fit_epochs(epochs, f"fit {type(model).__name__}"):
        model.train()
        order = torch.randperm(n, generator=generator).to(device)
        for start in range(0, n, settings.batch_size):
            index = order[start:start + settings.batch_size]
            batch, batch_targets = _take(inputs, index), targets[index]
            scores = model(**batch)
            loss = _loss(settings, scores, batch_targets)
            if extra_loss is not None:
                loss = loss + extra_loss(model, batch, scores, batch_targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(model)
        if val is not None:
            evaluated = ema.module if ema is not None else model
            val_loss = nn.functional.mse_loss(predict_scores(evaluated, val[0]), val[1].cpu()).item()
            if val_loss < best_loss:
                best_loss, best_state, stale = val_loss, copy.deepcopy(evaluated.state_dict()), 0
            else:
                stale += 1
                if settings.patience is not None and stale >= settings.patience:
                    break
    final = ema.module if ema is not None else model
    if best_state is not None:
        final.load_state_dict(best_state)
    final.eval()
    return final
