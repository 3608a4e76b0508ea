"""Final training of any space's network on an ImageFolder dataset, as a recipe says (``nassearch retrain`` with
a recipe: ``experiments/retrain_*.yaml``).

The network is ``space.build_model(arch, num_classes=..., **recipe.model)`` (plus ``dropout`` when the recipe sets
one), so every space with a ``build_model`` trains here: ``ofa_mbv3``, ``proxylessnas``, ``darts`` ... The
architecture is a search run directory's best (its space taken from the run's config) or an architecture string
of the space named by ``--space``. Data: ``DATA_ROOT/train/<class>/`` and ``DATA_ROOT/val/<class>/``; with
``holdout: N`` the run validates on N training images held out from training (:func:`holdout_split`, drawn with
the recipe's seed), else on ``val/``.

Training follows the recipe (:mod:`nassearch.training.recipes`): its optimizer, the warm-up + cosine schedule
stepped after every optimizer step, label smoothing, gradient clipping, initialisation, batch-norm settings,
transforms and dropout. On CUDA with ``amp``: bfloat16 autocast where the GPU supports it, else float16 with a
gradient scaler; no autocast on CPU. ``channels_last`` converts the network and every batch.

Under torchrun each process trains on ``batch_size / WORLD_SIZE`` images of every global batch through
DistributedDataParallel (Gloo on CPU, NCCL on CUDA); metrics are summed over the processes (the evaluation set
padded as DistributedSampler pads it) and only rank 0 writes. Each epoch's data order and augmentation are
seeded from (seed, epoch, rank), so a run resumed from its checkpoint logs what an uninterrupted one does.

Outputs: ``config.yaml`` (space, architecture, source, data root and the resolved recipe; ``--resume`` refuses a
changed recipe), ``log.csv`` (``LOG_COLUMNS``, one row per epoch), ``checkpoint.pt`` (replaced atomically after
every epoch) and, at the end, ``retrain.json`` (params, the space's cost of the architecture, final top-1/top-5,
world size).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, Subset

from nassearch import config as cfg
from nassearch.errors import ConfigError, RunDirError
from nassearch.model_cost import count_params
from nassearch.spaces.base import SearchSpace
from nassearch.training.imagefolder import holdout_split, load_imagefolder, make_loader
from nassearch.training.loops import evaluate_loader, mean_loss_and_accuracy, top5_accuracy, train_epoch
from nassearch.training.process import Process, derived_seed, start_process
from nassearch.training.recipes import (Recipe, apply_bn_settings, apply_init, build_loss, build_optimizer,
                                        build_scheduler, build_transforms)
from nassearch.training.retrain import DEFAULT_OUT, RetrainOutcome
from nassearch.training.run_files import (check_out_dir, read_checkpoint, resume_run, write_checkpoint,
                                          write_log)
from nassearch.training.search_runs import best_of_search, read_search_config, search_setting

log = logging.getLogger(__name__)

LOG_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_top1", "val_top5", "images_per_s",
               "seconds")
#: Recipe settings that may differ when a run is resumed: they do not change its numbers.
RESUMABLE_CHANGES = ("num_workers",)
DEFAULT_DATA_ROOT = "data/imagenet"


def is_recipe_file(path: str | Path) -> bool:
    """Whether the YAML file ``path`` is a recipe (it names an ``optimizer``) rather than a DARTS retrain config."""
    raw = cfg.read_yaml(path, "retrain config")
    return isinstance(raw, dict) and "optimizer" in raw


@dataclass(frozen=True)
class ArchTarget:
    """The architecture to train, its space, a short name for its output directory, and where it came from."""

    name: str
    space_name: str
    space: SearchSpace
    arch: Any
    source: str

    @property
    def arch_str(self) -> str:
        return self.space.to_str(self.arch)


def resolve_arch_target(text: str, space_name: str | None = None) -> ArchTarget:
    """A search run directory (its best architecture over seeds, in the run's space) or an architecture string of
    the space ``space_name``."""
    path = Path(text)
    if path.is_dir():
        config, config_path = read_search_config(path)
        section = search_setting(config, config_path, "space")
        name = section if isinstance(section, str) else search_setting(config, config_path, "space", "name")
        if space_name is not None and space_name != name:
            raise RunDirError(f"{path} searched space {name!r}, not --space {space_name}; drop --space")
        space = _build_space(section)
        best = best_of_search(path, config, config_path, space.from_str)
        return ArchTarget(path.resolve().name, name, space, best.arch, best.describe(path))
    if space_name is None:
        raise ConfigError(f"{text}: no such run directory; to train an architecture string, name its space with "
                          "--space (e.g. --space ofa_mbv3)")
    space = _build_space(space_name)
    arch = space.from_str(text)
    digest = hashlib.sha1(space.to_str(arch).encode()).hexdigest()[:10]
    return ArchTarget(f"{space_name}-{digest}", space_name, space, arch, "architecture string")


def _build_space(section: str | dict[str, Any]) -> SearchSpace:
    return cfg.build_component("space", cfg.resolve_component("space", section))


def build_network(target: ArchTarget, recipe: Recipe, num_classes: int) -> nn.Module:
    """``target``'s network for ``num_classes`` classes with the recipe's ``model`` keywords and dropout, initialised
    and its batch norms set as the recipe says (weights drawn from torch's global generator)."""
    kwargs = {"num_classes": num_classes, **recipe.model}
    if recipe.dropout:
        kwargs["dropout"] = recipe.dropout
    build = target.space.build_model
    try:
        inspect.signature(build).bind(target.arch, **kwargs)
    except TypeError:
        accepted = [name for name in inspect.signature(build).parameters if name not in ("arch", "num_classes")]
        raise ConfigError(f"model / dropout: {target.space_name}'s build_model takes {', '.join(accepted) or 'no'} "
                          f"keyword(s), not {', '.join(sorted(set(kwargs) - set(accepted) - {'num_classes'}))}"
                          ) from None
    try:
        model = build(target.arch, **kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"model: {target.space_name} cannot build the network with {recipe.model}: {exc}") from None
    apply_init(recipe, model)
    apply_bn_settings(recipe, model)
    return model


def retrain_recipe(target: ArchTarget, recipe: Recipe, data_root: str | Path = DEFAULT_DATA_ROOT,
                   out_dir: str | Path | None = None, resume: bool = False, device: str = "auto") -> RetrainOutcome:
    """Train ``target``'s network on the ImageFolder dataset ``data_root`` as ``recipe`` says; write the record,
    log, checkpoints and ``retrain.json`` into ``out_dir`` (default ``runs/retrain/NAME``)."""
    out = Path(out_dir) if out_dir is not None else DEFAULT_OUT / target.name
    proc = start_process(device)
    try:
        return _retrain(proc, target, recipe, Path(data_root), out, resume)
    finally:
        if proc.world_size > 1:
            dist.destroy_process_group()


def _datasets(recipe: Recipe, root: Path) -> tuple[Dataset, Dataset, str, list[str]]:
    """(training set, evaluation set, the evaluation set's name, classes)."""
    train = load_imagefolder(root, "train", build_transforms(recipe, train=True))
    evaluation_transform = build_transforms(recipe, train=False)
    if not recipe.holdout:
        return train, load_imagefolder(root, "val", evaluation_transform), "val", train.classes
    train_idx, holdout_idx = holdout_split(len(train), recipe.holdout, recipe.seed)
    holdout = Subset(load_imagefolder(root, "train", evaluation_transform), holdout_idx.tolist())
    return Subset(train, train_idx.tolist()), holdout, "holdout", train.classes


def _retrain(proc: Process, target: ArchTarget, recipe: Recipe, data_root: Path, out: Path,
             resume: bool) -> RetrainOutcome:
    if recipe.batch_size % proc.world_size:
        raise ConfigError(f"batch_size: {recipe.batch_size} does not split evenly over {proc.world_size} processes")
    check_out_dir(out, resume, {"space": target.space_name, "arch": target.arch_str}, "recipe", recipe.to_dict(),
                  RESUMABLE_CHANGES)
    checkpoint_path = out / "checkpoint.pt"
    checkpoint = (read_checkpoint(checkpoint_path, recipe.epochs, LOG_COLUMNS)
                  if resume and checkpoint_path.is_file() else None)
    train_set, eval_set, eval_name, classes = _datasets(recipe, data_root)  # missing data: nothing written
    if proc.world_size > 1:
        dist.barrier()  # every process has checked the directory before rank 0 writes to it
    if proc.main:
        out.mkdir(parents=True, exist_ok=True)
        record = {"space": target.space_name, "arch": target.arch_str, "source": target.source,
                  "data_root": str(data_root), "recipe": recipe.to_dict()}
        (out / "config.yaml").write_text(yaml.safe_dump(record, sort_keys=False))

    torch.manual_seed(derived_seed(recipe.seed))
    memory_format = torch.channels_last if recipe.channels_last else torch.contiguous_format
    core = build_network(target, recipe, len(classes)).to(proc.device, memory_format=memory_format)
    params_m = count_params(core) / 1e6
    model: nn.Module = core
    if proc.world_size > 1:
        model = DistributedDataParallel(core, device_ids=[proc.device.index] if proc.device.type == "cuda" else None)
    batch = recipe.batch_size // proc.world_size
    steps_per_epoch = math.ceil(len(train_set) / proc.world_size) // batch  # the last, smaller batch dropped
    if steps_per_epoch == 0:
        raise ConfigError(f"batch_size: {recipe.batch_size} is more than the {len(train_set)} training images; "
                          "choose a smaller batch_size")
    optimizer = build_optimizer(recipe, core)
    scheduler = build_scheduler(recipe, optimizer, steps_per_epoch)
    amp = recipe.amp and proc.device.type == "cuda"
    bf16 = amp and torch.cuda.is_bf16_supported()
    autocast_dtype = torch.bfloat16 if bf16 else None
    scaler = torch.amp.GradScaler("cuda", enabled=amp and not bf16)
    criterion = build_loss(recipe)
    loader_options = {"rank": proc.rank, "world_size": proc.world_size, "num_workers": recipe.num_workers,
                      "pin_memory": proc.device.type == "cuda"}
    rows, train_seconds = resume_run(checkpoint_path, checkpoint, out, recipe.epochs, proc.main, model=core,
                                     optimizer=optimizer, scheduler=scheduler, scaler=scaler)

    for epoch in range(len(rows), recipe.epochs):
        start = time.perf_counter()
        torch.manual_seed(derived_seed(recipe.seed, epoch + 1, proc.rank, 0))  # augmentation, dropout
        lr = scheduler.get_last_lr()[0]
        train_loader = make_loader(train_set, batch, True, recipe.seed, epoch, drop_last=True, **loader_options)
        train = train_epoch(model, train_loader, optimizer, proc.device, grad_clip=recipe.grad_clip, scaler=scaler,
                            criterion=criterion, scheduler=scheduler, autocast_dtype=autocast_dtype,
                            channels_last=recipe.channels_last)
        train_time = time.perf_counter() - start
        val = evaluate_loader(core, make_loader(eval_set, batch, False, recipe.seed, epoch, **loader_options),
                              proc.device, amp=scaler.is_enabled(), autocast_dtype=autocast_dtype,
                              channels_last=recipe.channels_last)
        if proc.world_size > 1:
            dist.all_reduce(train)
            dist.all_reduce(val)
        seconds = time.perf_counter() - start
        train_seconds += seconds
        train_loss, train_acc = mean_loss_and_accuracy(train)
        val_loss, val_top1 = mean_loss_and_accuracy(val)
        rows.append({"epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "train_acc": train_acc,
                     "val_loss": val_loss, "val_top1": val_top1, "val_top5": top5_accuracy(val),
                     "images_per_s": train[2].item() / train_time, "seconds": seconds})
        if proc.main:
            log.info("epoch %d/%d: lr %.5f, train loss %.4f acc %.2f%%, %s loss %.4f top-1 %.2f%% (%.1f s)",
                     epoch + 1, recipe.epochs, lr, train_loss, train_acc, eval_name, val_loss, val_top1, seconds)
            write_checkpoint(checkpoint_path, {"model": core.state_dict(), "optimizer": optimizer.state_dict(),
                                               "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                                               "log": rows, "train_seconds": train_seconds})
            write_log(out / "log.csv", LOG_COLUMNS, rows)
    if not proc.main:
        return RetrainOutcome(out, None)
    cost = target.space.cost(target.arch)
    last = rows[-1]
    result = {"name": target.name, "source": target.source, "space": target.space_name, "arch": target.arch_str,
              "params_m": params_m, "space_params_m": cost.params_m, "flops_m": cost.flops_m,
              "classes": len(classes), "epochs": recipe.epochs, "eval_split": eval_name,
              "top1": last["val_top1"], "top5": last["val_top5"], "best_top1": max(row["val_top1"] for row in rows),
              "wall_s": train_seconds, "device": str(proc.device), "world_size": proc.world_size,
              "autocast": None if not amp else ("bfloat16" if bf16 else "float16")}
    (out / "retrain.json").write_text(json.dumps(result, indent=2) + "\n")
    return RetrainOutcome(out, result)

