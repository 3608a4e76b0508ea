"""The loops every training in nassearch shares: device choice, one training epoch, evaluation totals.

Used by the ``train`` evaluator (proxy training during a search) and by final training (``retrain``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader


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
