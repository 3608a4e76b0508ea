"""Wall-clock latency of a network's forward pass on this machine's CPU."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn


def measure_latency_ms(model: nn.Module, input_shape: tuple[int, ...], warmup: int = 10, repeats: int = 20,
                       threads: int = 1) -> float:
    """Median wall time (ms) of ``repeats`` forward passes on CPU after ``warmup`` untimed ones.

    Runs in eval mode under ``torch.inference_mode`` with ``threads`` intra-op threads; the model's mode,
    device and the torch thread count are restored afterwards. ``input_shape`` includes the batch axis.
    """
    if warmup < 0 or repeats < 1 or threads < 1:
        raise ValueError(f"need warmup >= 0, repeats >= 1 and threads >= 1; got warmup={warmup}, "
                         f"repeats={repeats}, threads={threads}")
    shape = tuple(int(s) for s in input_shape)
    if not shape or min(shape) < 1:
        raise ValueError(f"input_shape must be positive sizes (batch, channels, ...), got {input_shape!r}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training, old_threads = model.training, torch.get_num_threads()
    inputs = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    times: list[float] = []
    try:
        model.to("cpu").eval()
        torch.set_num_threads(threads)
        with torch.inference_mode():
            for i in range(warmup + repeats):
                start = time.perf_counter()
                model(inputs)
                if i >= warmup:
                    times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(old_threads)
        model.to(device).train(was_training)
    return 1000.0 * statistics.median(times)
