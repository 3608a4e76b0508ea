"""This process's place in a training job (torchrun or not) and the seeds it draws per epoch.

A run seeds each epoch's randomness from (seed, epoch, rank) with :func:`derived_seed`, so a checkpoint needs no
RNG states and a resumed run repeats what an uninterrupted one does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from nassearch.errors import ConfigError
from nassearch.training.loops import resolve_device


@dataclass(frozen=True)
class Process:
    """This process's place in a (torchrun) job: rank, world size and the device it trains on."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def start_process(device_name: str) -> Process:
    """The device to use, joining the torchrun process group when ``WORLD_SIZE`` > 1 (NCCL on CUDA,
    Gloo on CPU; each process takes GPU ``LOCAL_RANK``)."""
    try:
        device = resolve_device(device_name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Process(0, 1, device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Process(dist.get_rank(), world_size, device)


def derived_seed(*entropy: int) -> int:
    """A 63-bit seed from non-negative integers (e.g. seed, epoch, rank)."""
    return int(np.random.SeedSequence(list(entropy)).generate_state(1, np.uint64)[0] >> np.uint64(1))
