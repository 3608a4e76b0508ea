"""The loops every training in nassearch shares: device choice, one training epoch, evaluation totals.

Used by the ``train`` evaluator (proxy training during a search) and by final training (``retrain``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

#: What the loops' totals tensors hold, in order (sums over images; sum them across processes under DDP).
TOTALS = ("loss_sum", "correct", "images", "correct_top5")
#: A loss of (logits, targets), e.g. ``nn.functional.cross_entropy`` or a recipe's ``nn.CrossEntropyLoss``.
Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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
                        auxiliary_weight: float = 0.0, criterion: Criterion = nn.functional.cross_entropy
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, logits) of a model output: ``criterion`` (cross-entropy) of the logits, plus ``auxiliary_weight``
    times that of the auxiliary logits when the model returned ``(logits, aux)`` with aux not None."""
    logits, aux = (outputs[0], outputs[1]) if isinstance(outputs, (tuple, list)) else (outputs, None)
    loss = criterion(logits, targets)
    if aux is not None and auxiliary_weight:
        loss = loss + auxiliary_weight * criterion(aux, targets)
    return loss, logits


def train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, device: torch.device, *,
                grad_clip: float | None = None, auxiliary_weight: float = 0.0,
                scaler: torch.amp.GradScaler | None = None, max_batches: int | None = None,
                criterion: Criterion = nn.functional.cross_entropy,
                scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                autocast_dtype: torch.dtype | None = None, channels_last: bool = False) -> torch.Tensor:
    """One pass of SGD over ``loader`` (at most ``max_batches`` batches); returns the totals
    ``[loss sum, correct, images, top-5 correct]`` as a float64 tensor on ``device`` (sum it across processes
    under DDP). A ``scaler`` that is enabled turns on float16 autocast (CUDA mixed precision); ``autocast_dtype``
    (e.g. bfloat16, no scaler needed) turns on autocast in that type. ``scheduler`` steps after every optimizer
    step; ``channels_last`` feeds the images in that memory format."""
    model.train()
    totals = torch.zeros(len(TOTALS), dtype=torch.float64, device=device)
    amp = scaler is not None and scaler.is_enabled()
    for step, (images, targets) in enumerate(loader):
        if max_batches is not None and step >= max_batches:
            break
        images, targets = _to_device(images, targets, device, channels_last)
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, amp, autocast_dtype):
            loss, logits = classification_loss(model(images), targets, auxiliary_weight, criterion)
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
        if scheduler is not None:
            scheduler.step()
        totals += _batch_totals(loss, logits, targets)
    return totals


@torch.no_grad()
def evaluate_loader(model: nn.Module, loader: DataLoader, device: torch.device, amp: bool = False,
                    autocast_dtype: torch.dtype | None = None, channels_last: bool = False) -> torch.Tensor:
    """Cross-entropy and accuracy of ``model`` in eval mode over ``loader``, as totals like
    :func:`train_epoch`'s; ``amp`` autocasts to float16, ``autocast_dtype`` to that type."""
    model.eval()
    totals = torch.zeros(len(TOTALS), dtype=torch.float64, device=device)
    for images, targets in loader:
        images, targets = _to_device(images, targets, device, channels_last)
        with _autocast(device, amp, autocast_dtype):
            loss, logits = classification_loss(model(images), targets)
        totals += _batch_totals(loss, logits, targets)
    return totals


def _autocast(device: torch.device, float16: bool, dtype: torch.dtype | None) -> torch.autocast:
    """Autocast to ``dtype`` when given, else to float16 when ``float16``; off otherwise."""
    return torch.autocast(device.type, dtype=dtype or torch.float16, enabled=float16 or dtype is not None)


def _to_device(images: torch.Tensor, targets: torch.Tensor, device: torch.device, channels_last: bool
               ) -> tuple[torch.Tensor, torch.Tensor]:
    images = images.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, targets.to(device, non_blocking=True)


def _batch_totals(loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    count = targets.numel()
    top = logits.topk(min(5, logits.shape[1]), dim=1).indices == targets[:, None]
    return torch.stack([loss.detach().double() * count, top[:, 0].sum().double(),
                        torch.tensor(count, dtype=torch.float64, device=loss.device), top.any(1).sum().double()])


def mean_loss_and_accuracy(totals: torch.Tensor) -> tuple[float, float]:
    """(mean loss, accuracy in percent) of totals (:data:`TOTALS`)."""
    loss_sum, correct, count, _ = totals.tolist()
    if count == 0:
        raise ValueError("no images were seen: the data loader is empty")
    return loss_sum / count, 100.0 * correct / count


def top5_accuracy(totals: torch.Tensor) -> float:
    """Top-5 accuracy in percent (top-k over all classes when there are fewer than 5) of totals (:data:`TOTALS`)."""
    count, correct5 = totals[2].item(), totals[3].item()
    if count == 0:
        raise ValueError("no images were seen: the data loader is empty")
    return 100.0 * correct5 / count
