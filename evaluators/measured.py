"""Latency measured on this machine: the ``measured_latency`` evaluator.

It builds each architecture's network (``space.build_model(arch)``, weights drawn from ``seed`` under a forked
torch RNG, so the process's RNG is left alone), puts it in eval mode and times inference of a batch of
``batch_size`` inputs of ``space.input_shape(arch)``: on the CPU with
:func:`nassearch.latency.timing.measure_latency_ms` (the median of ``repeats`` timed passes after ``warmup``
untimed ones, ``threads`` intra-op threads); on CUDA with :func:`measure_cuda_latency_ms` (the same median,
each pass timed with CUDA events). Params and FLOPs are ``space.cost(arch)``, in the space's
``flops_convention``. It times the spaces whose networks declare their input (:class:`DeclaresInputShape`):
``ofa_mbv3`` (``r`` x ``r``) and ``proxylessnas`` (``input_size``).
"""

from __future__ import annotations

import statistics
import time
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from nassearch.evaluators.base import Evaluator, Result
from nassearch.latency.timing import measure_latency_ms
from nassearch.spaces.base import Arch, SearchSpace
from nassearch.training.loops import resolve_device
from nassearch.validation import require_positive


@runtime_checkable
class DeclaresInputShape(Protocol):
    """A space whose networks say what one input is: ``input_shape(arch)`` -> (channels, height, width)."""

    def input_shape(self, arch: Arch) -> tuple[int, ...]: ...


def measure_cuda_latency_ms(model: nn.Module, input_shape: tuple[int, ...], warmup: int = 10,
                            repeats: int = 20) -> float:
    """Median time (ms) of ``repeats`` forward passes of ``model`` (eval mode, on a CUDA device) after ``warmup``
    untimed ones, each timed with CUDA events; ``input_shape`` includes the batch axis."""
    device = next(model.parameters()).device
    inputs = torch.randn(input_shape, generator=torch.Generator().manual_seed(0)).to(device)
    times: list[float] = []
    with torch.cuda.device(device), torch.inference_mode():
        for i in range(warmup + repeats):
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            model(inputs)
            end.record()
            end.synchronize()
            if i >= warmup:
                times.append(begin.elapsed_time(end))
    return statistics.median(times)


class MeasuredLatency(Evaluator):
    """Inference latency of the built network on this machine, with its params and FLOPs.

    Metrics: ``latency_ms`` (median wall time of one batch, ms), ``params`` and ``flops`` (millions,
    ``space.cost``). Options: ``batch_size`` (default 1), ``warmup`` / ``repeats`` (untimed and timed passes,
    default 10 / 20), ``threads`` (torch intra-op threads while timing on the CPU, default 1 for stable numbers;
    CUDA timing does not use it), ``device`` (``cpu`` by default, so that the metric does not change meaning
    with the machine's hardware; ``auto``, ``cuda``, ``cuda:N``), ``seed`` (the networks' weights, which do not
    change the latency). ``cost_per_query_s``: None (default) charges the seconds the evaluation took (build,
    count, time); a number charges that constant per query, so that a cost budget counts queries.
    """

    name = "measured_latency"
    #: Both spaces it times build ImageNet networks.
    dataset = "imagenet"

    def __init__(self, space: SearchSpace, batch_size: int = 1, warmup: int = 10, repeats: int = 20,
                 threads: int = 1, device: str = "cpu", seed: int = 0, cost_per_query_s: float | None = None) -> None:
        super().__init__(space)
        if not isinstance(space, DeclaresInputShape):
            raise ValueError(f"measured_latency times networks whose space declares their input shape "
                             f"(ofa_mbv3, proxylessnas); space {space.name!r} does not")
        require_positive(batch_size=batch_size, repeats=repeats, threads=threads)
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {warmup}")
        if cost_per_query_s is not None and cost_per_query_s <= 0:
            raise ValueError(f"cost_per_query_s must be > 0 (a cost budget charges it per query) or null (the "
                             f"measured seconds), got {cost_per_query_s}")
        self.device = resolve_device(device)
        if self.device.type not in ("cpu", "cuda"):
            raise ValueError(f"device: measured_latency times on cpu or cuda, not {device!r}")
        self.batch_size, self.warmup, self.repeats, self.threads = batch_size, warmup, repeats, threads
        self.seed = seed
        self.cost_per_query_s = cost_per_query_s

    @property
    def metrics(self) -> tuple[str, ...]:
        return ("latency_ms", "params", "flops")

    def evaluate(self, arch: Arch) -> Result:
        start = time.perf_counter()
        shape = (self.batch_size, *self.space.input_shape(arch))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = self.space.build_model(arch).eval()
            cost = self.space.cost(arch)
        if self.device.type == "cuda":
            latency = measure_cuda_latency_ms(model.to(self.device), shape, self.warmup, self.repeats)
        else:
            latency = measure_latency_ms(model, shape, self.warmup, self.repeats, self.threads)
        wall = time.perf_counter() - start
        metrics = {"latency_ms": latency, "params": cost.params_m, "flops": cost.flops_m}
        return Result(metrics, wall if self.cost_per_query_s is None else self.cost_per_query_s, wall)
