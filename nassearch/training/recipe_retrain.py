"""Final training of any space's network on an ImageFolder dataset, as a recipe says (``nassearch retrain`` with
a recipe: ``experiments/retrain_*.yaml``).

The network is ``space.build_model(arch, num_classes=..., **recipe.model)`` (plus ``dropout`` when the recipe sets
one), so every space with a ``build_model`` trains here: ``ofa_mbv3``, ``proxylessnas``, ``darts`` ... The
architecture is a search run directory's best (its space taken from the run's config) or an architecture string
of the space named by ``--space``. Data: ``DATA_ROOT/train/<class>/`` and ``DATA_ROOT/val/<class>/``; with
``holdout: N`` the run validates on N training images held out from training (:func:`holdout_split`, drawn with
the recipe's ``holdout_seed``), else on ``val/``.

Training follows the recipe (:mod:`nassearch.training.recipes`, run by
:mod:`nassearch.training.recipe_training`): its optimizer, the warm-up + cosine schedule
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
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml

from nassearch import config as cfg
from nassearch.errors import ConfigError, RunDirError
from nassearch.model_cost import count_params
from nassearch.spaces.base import SearchSpace
from nassearch.training.imagefolder import DEFAULT_DATA_ROOT
from nassearch.training.process import Process, derived_seed, start_process
from nassearch.training.recipe_training import (LOG_COLUMNS, RecipeTraining, build_network, recipe_datasets,
                                                steps_per_epoch)
from nassearch.training.recipes import Recipe
from nassearch.training.retrain import DEFAULT_OUT, RetrainOutcome
from nassearch.training.run_files import (check_out_dir, read_checkpoint, resume_run, write_checkpoint,
                                          write_log)
from nassearch.training.search_runs import best_of_search, read_search_config, search_setting

log = logging.getLogger(__name__)

#: Recipe settings that may differ when a run is resumed: they do not change its numbers.
RESUMABLE_CHANGES = ("num_workers",)


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
    if _is_dir(path):
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
    arch = space.parse(text)
    digest = hashlib.sha1(space.to_str(arch).encode()).hexdigest()[:10]
    return ArchTarget(f"{space_name}-{digest}", space_name, space, arch, "architecture string")


def _is_dir(path: Path) -> bool:
    """Whether ``path`` is a directory; False for text no file system takes as a path (an architecture string
    longer than a file name may be)."""
    try:
        return path.is_dir()
    except OSError:
        return False


def _build_space(section: str | dict[str, Any]) -> SearchSpace:
    return cfg.build_component("space", cfg.resolve_component("space", section))


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


def _retrain(proc: Process, target: ArchTarget, recipe: Recipe, data_root: Path, out: Path,
             resume: bool) -> RetrainOutcome:
    check_out_dir(out, resume, {"space": target.space_name, "arch": target.arch_str}, "recipe", recipe.to_dict(),
                  RESUMABLE_CHANGES)
    checkpoint_path = out / "checkpoint.pt"
    checkpoint = (read_checkpoint(checkpoint_path, recipe.epochs, LOG_COLUMNS)
                  if resume and checkpoint_path.is_file() else None)
    train_set, eval_set, eval_name, classes = recipe_datasets(recipe, data_root)  # bad data: nothing written
    steps_per_epoch(recipe, len(train_set), proc)  # nor for a batch the data cannot fill
    torch.manual_seed(derived_seed(recipe.seed))
    network = build_network(target.space, target.arch, recipe, len(classes))  # nor for a network it cannot build
    if proc.world_size > 1:
        dist.barrier()  # every process has checked the directory before rank 0 writes to it
    if proc.main:
        out.mkdir(parents=True, exist_ok=True)
        record = {"space": target.space_name, "arch": target.arch_str, "source": target.source,
                  "data_root": str(data_root), "recipe": recipe.to_dict()}
        (out / "config.yaml").write_text(yaml.safe_dump(record, sort_keys=False))

    params_m = count_params(network) / 1e6
    training = RecipeTraining(recipe, network, train_set, eval_set, proc)
    rows, train_seconds = resume_run(checkpoint_path, checkpoint, out, recipe.epochs, proc.main,
                                     model=training.network, optimizer=training.optimizer,
                                     scheduler=training.scheduler, scaler=training.scaler)
    for epoch in range(len(rows), recipe.epochs):
        row = training.run_epoch(epoch)
        rows.append(row)
        train_seconds += row["seconds"]
        if proc.main:
            log.info("epoch %d/%d: lr %.5f, train loss %.4f acc %.2f%%, %s loss %.4f top-1 %.2f%% (%.1f s)",
                     epoch + 1, recipe.epochs, row["lr"], row["train_loss"], row["train_acc"], eval_name,
                     row["val_loss"], row["val_top1"], row["seconds"])
            write_checkpoint(checkpoint_path, {**training.checkpoint(), "log": rows, "train_seconds": train_seconds})
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
              "autocast": training.autocast}
    (out / "retrain.json").write_text(json.dumps(result, indent=2) + "\n")
    return RetrainOutcome(out, result)
