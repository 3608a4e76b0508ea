"""Final training of a DARTS genotype on CIFAR-10 with the DARTS evaluation protocol (``nassearch retrain``).

Protocol (Liu et al., "DARTS: Differentiable Architecture Search", ICLR 2019, Sec. 3.3 and the
appendix on CIFAR-10 evaluation; :class:`RetrainConfig`'s defaults): a 20-cell network with 36 initial
channels, trained on all 50,000 training images for 600 epochs with batch size 96, SGD (momentum 0.9,
weight decay 3e-4, gradient norm clipped at 5), learning rate 0.025 cosine-annealed to 0, Cutout of
length 16, drop-path whose probability grows linearly from 0 (epoch e of E, counted from 0, uses
``drop_path_prob * e / E``) and an auxiliary head at 2/3 depth weighted 0.4. Test accuracy on the
10,000 test images is logged after every epoch; parameters exclude the auxiliary head.

Outputs in the output directory: ``config.yaml`` (genotype and resolved settings), ``log.csv`` (one
row per epoch), ``checkpoint.pt`` (replaced atomically after every epoch) and, at the end,
``retrain.json``. ``--resume`` continues from the last finished epoch. Each epoch draws its randomness
(data order, augmentation, drop-path) from generators seeded by (seed, epoch, rank), so the checkpoint
needs no RNG states and a resumed run on CPU logs exactly what an uninterrupted one does.

Mixed precision (float16 autocast with a gradient scaler) is used on CUDA when ``amp`` is true.
Several GPUs: launch with torchrun, e.g.::

    torchrun --standalone --nproc_per_node=4 -m nassearch retrain DARTS_V2 --config experiments/darts_retrain.yaml

Each process then trains on its share of every batch (``batch_size / WORLD_SIZE`` images, so the
global batch and the schedule stay as configured) through DistributedDataParallel; metrics are summed
over processes and only rank 0 writes files. The test set is split over the processes as
DistributedSampler does it (padded with up to WORLD_SIZE - 1 repeated images).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import typing
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from nassearch.training.datasets import cifar10_transforms, load_cifar10
from nassearch.training.loops import evaluate_loader, mean_loss_and_accuracy, train_epoch
from nassearch.training.process import Process, derived_seed, start_process
from nassearch.training.run_files import (check_out_dir, read_checkpoint, resume_run, write_checkpoint,
                                          write_log)
from nassearch.training.search_runs import best_of_search, read_search_config, search_setting
from nassearch import config as cfg
from nassearch.validation import check_seed, reject_unknown, typed
from nassearch.errors import ConfigError, RunDirError
from nassearch.model_cost import count_params
from nassearch.spaces.darts_notation import Genotype, format_genotype, parse_genotype
from nassearch.spaces.darts_genotypes import known_genotype
from nassearch.spaces.darts_network import NetworkCIFAR

log = logging.getLogger(__name__)

LOG_COLUMNS = ("epoch", "lr", "drop_path_prob", "train_loss", "train_acc", "test_loss", "test_acc", "seconds")
#: Settings that may differ when a run is resumed: they do not change its numbers.
RESUMABLE_CHANGES = ("data_root", "download", "num_workers")
GENOTYPE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_OUT = Path("runs") / "retrain"


@dataclass(frozen=True)
class RetrainConfig:
    """Settings of a final training run; the defaults are the DARTS CIFAR-10 protocol.

    ``max_train_batches`` cuts every training epoch short (smoke tests); ``verify_md5: false`` accepts
    data that is not the official release (e.g. from ``write_synthetic_cifar10``); ``amp`` applies on
    CUDA only.
    """

    epochs: int = 600
    batch_size: int = 96
    learning_rate: float = 0.025
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    cutout: bool = True
    cutout_length: int = 16
    drop_path_prob: float = 0.2
    auxiliary: bool = True
    auxiliary_weight: float = 0.4
    layers: int = 20
    init_channels: int = 36
    data_root: str = "data/cifar10"
    download: bool = False
    verify_md5: bool = True
    num_workers: int = 2
    seed: int = 0
    amp: bool = True
    device: str = "auto"
    max_train_batches: int | None = None

    def __post_init__(self) -> None:
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "layers": self.layers,
                    "init_channels": self.init_channels, "learning_rate": self.learning_rate,
                    "grad_clip": self.grad_clip}
        if self.max_train_batches is not None:
            positive["max_train_batches"] = self.max_train_batches
        non_negative = {"momentum": self.momentum, "weight_decay": self.weight_decay, "seed": self.seed,
                        "cutout_length": self.cutout_length, "auxiliary_weight": self.auxiliary_weight,
                        "num_workers": self.num_workers}
        for key, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{key}: must be > 0, got {value}")
        for key, value in non_negative.items():
            if value < 0:
                raise ConfigError(f"{key}: must be >= 0, got {value}")
        if not 0 <= self.drop_path_prob < 1:
            raise ConfigError(f"drop_path_prob: must lie in [0, 1), got {self.drop_path_prob}")

    @classmethod
    def from_dict(cls, raw: Any, source: str = "a retrain config") -> RetrainConfig:
        """A validated config from a flat mapping of settings; unset ones take their defaults. ``source`` names
        where ``raw`` comes from in the message when it is not a mapping."""
        names = [f.name for f in fields(cls)]
        if not isinstance(raw, dict):
            raise ConfigError(f"{source} must be a mapping of settings ({', '.join(names)}), not a "
                              f"{type(raw).__name__}")
        reject_unknown(raw, names, "", " in a retrain config")
        hints = typing.get_type_hints(cls)
        return cls(**{key: check_seed(value) if key == "seed" else typed(key, value, hints[key])
                      for key, value in raw.items()})

    def to_dict(self) -> dict[str, Any]:
        """Plain data for YAML; ``from_dict(to_dict())`` gives back an equal config."""
        return asdict(self)

    def drop_path_at(self, epoch: int) -> float:
        """Drop-path probability of epoch ``epoch`` (counted from 0): linear from 0 to the configured value."""
        return self.drop_path_prob * epoch / self.epochs


def load_retrain_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> RetrainConfig:
    """The config of a YAML file (or the protocol's defaults without one) with ``key=value`` overrides."""
    raw = {} if path is None else cfg.read_yaml(path, "retrain config")
    if isinstance(raw, dict):
        for override in overrides:
            cfg.apply_override(raw, override)
    return RetrainConfig.from_dict(raw, f"retrain config {path}")


# ---------------------------------------------------------------------------------------------
# What to train


@dataclass(frozen=True)
class RetrainTarget:
    """The genotype to train, a short name for its output directory, and where it came from."""

    name: str
    genotype: Genotype
    source: str


def resolve_target(text: str) -> RetrainTarget:
    """A search run directory (its best architecture over seeds), a published genotype's name
    (e.g. DARTS_V2), or a genotype in DARTS notation."""
    if "(" not in text:
        path = Path(text)
        if path.is_dir():
            return _best_of_run(path)
        if GENOTYPE_NAME.match(text):
            return RetrainTarget(text, known_genotype(text), text)
        raise RunDirError(f"{text}: no such run directory (nor a genotype name or a genotype in DARTS notation)")
    genotype = parse_genotype(text)
    digest = hashlib.sha1(format_genotype(genotype).encode()).hexdigest()[:10]
    return RetrainTarget(f"genotype-{digest}", genotype, "genotype string")


def _best_of_run(run_dir: Path) -> RetrainTarget:
    config, config_path = read_search_config(run_dir)
    space = search_setting(config, config_path, "space", "name")
    if space != "darts":
        raise RunDirError(f"{run_dir} searched space {space!r}; retrain trains genotypes of the darts space only")
    best = best_of_search(run_dir, config, config_path, parse_genotype)
    return RetrainTarget(run_dir.resolve().name, best.arch, best.describe(run_dir))


# ---------------------------------------------------------------------------------------------
# Output directory


def prepare_out_dir(out: Path, target: RetrainTarget, config: RetrainConfig, resume: bool) -> None:
    """Check that ``out`` may be used: fresh without ``resume``; started with the same genotype and
    (up to RESUMABLE_CHANGES) the same settings with it. Writes nothing."""
    check_out_dir(out, resume, {"genotype": format_genotype(target.genotype)}, "config", config.to_dict(),
                  RESUMABLE_CHANGES)


# ---------------------------------------------------------------------------------------------
# Training


@dataclass
class RetrainOutcome:
    """What :func:`retrain` returns: the output directory and, on rank 0, the ``retrain.json`` record."""

    out_dir: Path
    result: dict[str, Any] | None


def retrain(target: RetrainTarget, config: RetrainConfig, out_dir: str | Path | None = None,
            resume: bool = False) -> RetrainOutcome:
    """Train ``target``'s genotype as ``config`` says; write config, log, checkpoints and ``retrain.json``."""
    out = Path(out_dir) if out_dir is not None else DEFAULT_OUT / target.name
    proc = start_process(config.device)
    try:
        return _retrain(proc, target, config, out, resume)
    finally:
        if proc.world_size > 1:
            dist.destroy_process_group()


def _retrain(proc: Process, target: RetrainTarget, config: RetrainConfig, out: Path, resume: bool) -> RetrainOutcome:
    if config.batch_size % proc.world_size:
        raise ConfigError(f"batch_size: {config.batch_size} does not split evenly over {proc.world_size} processes")
    prepare_out_dir(out, target, config, resume)
    checkpoint_path = out / "checkpoint.pt"
    checkpoint = (read_checkpoint(checkpoint_path, config.epochs, LOG_COLUMNS)
                  if resume and checkpoint_path.is_file() else None)
    generator = torch.Generator()
    train_loader, train_sampler, test_loader = _loaders(config, proc, generator)  # missing data: nothing written
    if proc.world_size > 1:
        dist.barrier()  # every process has checked the directory before rank 0 writes to it
    if proc.main:
        out.mkdir(parents=True, exist_ok=True)
        record = {"genotype": format_genotype(target.genotype), "source": target.source, "config": config.to_dict()}
        (out / "config.yaml").write_text(yaml.safe_dump(record, sort_keys=False))

    torch.manual_seed(derived_seed(config.seed))
    core = NetworkCIFAR(target.genotype, C=config.init_channels, layers=config.layers,
                        auxiliary=config.auxiliary).to(proc.device)
    params_m = count_params(core) / 1e6
    model: nn.Module = core
    if proc.world_size > 1:
        model = DistributedDataParallel(core, device_ids=[proc.device.index] if proc.device.type == "cuda" else None)
    optimizer = torch.optim.SGD(model.parameters(), config.learning_rate, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.epochs)
    use_amp = config.amp and proc.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    rows, train_seconds = resume_run(checkpoint_path, checkpoint, out, config.epochs, proc.main, model=core,
                                     optimizer=optimizer, scheduler=scheduler, scaler=scaler)

    for epoch in range(len(rows), config.epochs):
        start = time.perf_counter()
        torch.manual_seed(derived_seed(config.seed, epoch + 1, proc.rank, 0))  # augmentation, drop-path
        generator.manual_seed(derived_seed(config.seed, epoch + 1, proc.rank, 1))  # data order, worker seeds
        if train_sampler is not None:
            train_sampler.set_epoch(epoch)
        lr = scheduler.get_last_lr()[0]
        core.drop_path_prob = config.drop_path_at(epoch)
        train = train_epoch(model, train_loader, optimizer, proc.device, grad_clip=config.grad_clip,
                            auxiliary_weight=config.auxiliary_weight if config.auxiliary else 0.0,
                            scaler=scaler, max_batches=config.max_train_batches)
        scheduler.step()
        test = evaluate_loader(core, test_loader, proc.device, amp=use_amp)
        if proc.world_size > 1:
            dist.all_reduce(train)
            dist.all_reduce(test)
        seconds = time.perf_counter() - start
        train_seconds += seconds
        train_loss, train_acc = mean_loss_and_accuracy(train)
        test_loss, test_acc = mean_loss_and_accuracy(test)
        rows.append({"epoch": epoch + 1, "lr": lr, "drop_path_prob": core.drop_path_prob, "train_loss": train_loss,
                     "train_acc": train_acc, "test_loss": test_loss, "test_acc": test_acc, "seconds": seconds})
        if proc.main:
            log.info("epoch %d/%d: lr %.5f, train loss %.4f acc %.2f%%, test loss %.4f acc %.2f%% (%.1f s)",
                     epoch + 1, config.epochs, lr, train_loss, train_acc, test_loss, test_acc, seconds)
            state = {"model": core.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "log": rows,
                     "train_seconds": train_seconds}
            write_checkpoint(checkpoint_path, state)
            write_log(out / "log.csv", LOG_COLUMNS, rows)
    if not proc.main:
        return RetrainOutcome(out, None)
    best = max(rows, key=lambda row: row["test_acc"])
    result = {"name": target.name, "source": target.source, "genotype": format_genotype(target.genotype),
              "params_m": params_m, "epochs": config.epochs, "test_acc": rows[-1]["test_acc"],
              "best_test_acc": best["test_acc"], "best_epoch": best["epoch"], "wall_s": train_seconds,
              "device": str(proc.device), "world_size": proc.world_size}
    (out / "retrain.json").write_text(json.dumps(result, indent=2) + "\n")
    return RetrainOutcome(out, result)


def _loaders(config: RetrainConfig, proc: Process, generator: torch.Generator
             ) -> tuple[DataLoader, DistributedSampler | None, DataLoader]:
    """Training loader (shuffled by ``generator``, or a DistributedSampler under torchrun) and test loader."""
    if proc.world_size > 1 and not proc.main:
        dist.barrier()  # rank 0 loads (and downloads) first
    train_set = load_cifar10(config.data_root, train=True, download=config.download,
                             transform=cifar10_transforms(True, config.cutout_length if config.cutout else 0),
                             verify_md5=config.verify_md5)
    test_set = load_cifar10(config.data_root, train=False, download=config.download,
                            transform=cifar10_transforms(False), verify_md5=config.verify_md5)
    if proc.world_size > 1 and proc.main:
        dist.barrier()
    batch = config.batch_size // proc.world_size
    common = {"num_workers": config.num_workers, "pin_memory": proc.device.type == "cuda"}
    if proc.world_size == 1:
        return (DataLoader(train_set, batch, shuffle=True, generator=generator, **common), None,
                DataLoader(test_set, batch, **common))
    train_sampler = DistributedSampler(train_set, seed=config.seed)
    return (DataLoader(train_set, batch, sampler=train_sampler, generator=generator, **common), train_sampler,
            DataLoader(test_set, batch, sampler=DistributedSampler(test_set, shuffle=False), **common))
