"""Evaluators of the OFA MobileNetV3 space (``ofa_mbv3``): OFA's accuracy predictor and Note10 latency tables.

``ofa_accuracy`` answers with OFA's released ImageNet accuracy predictor (``ofa/ofa_mbv3_acc_predictor.npz``,
the MLP of OFA's tutorial), the stand-in for supernet-measured accuracy: a 128-float one-hot encoding of the
architecture (20 block slots x kernel, 20 slots x expansion, 8 resolution buckets; inactive slots set no bit)
through Linear-ReLU-Linear-ReLU-Linear-ReLU-Linear. The predictor outputs a fraction (top-1 on OFA's 10k-image
holdout split of the ImageNet *training* set, not the official val set); the metric ``val_acc`` is that
value in **percent**. Whole batches are encoded with array operations and pushed through the MLP at once.

``note10_latency`` answers with OFA's Samsung Note10 lookup tables (``ofa/latency_table_note10/<r>_lookup_
table.yaml``, one per input resolution 160..224 step 4): the latency of a subnet is the sum of the table's mean
latency of each of its layers (first conv, first block, every active MBConv block, final expand conv, global
average pool, feature-mix conv, classifier), keyed exactly as OFA's ``MBv3LatencyTable`` keys them. The metric
``latency_ms`` is that sum in **milliseconds** (Note10, batch 1). The tables are read once, and every
(resolution, block slot, kernel, expansion) latency is precomputed into one array, so a batch is a gather and
a sum.

Both answer from data, so a query stands for no training: each costs the documented constant
``cost_per_query_s`` (default 1 s, as for the tabular evaluators: a cost budget then counts queries; the
experiments of the OFA space budget in evaluations). Neither knows the metric over the whole space
(``reference_values`` is None: the space has about 10^19 members).
"""

from __future__ import annotations

from abc import abstractmethod
import os
import time
from collections.abc import Sequence
from itertools import chain
from typing import Literal

import numpy as np
import torch

from nassearch.data.tables import TABLES, load_npz, load_yaml
from nassearch.errors import DataError, InvalidArchitecture
from nassearch.evaluators.base import Evaluator, Result
from nassearch.spaces.base import SearchSpace
from nassearch.spaces.ofa_mbv3 import (DEPTHS, EXPANDS, FINAL_EXPAND_CHANNELS, FIRST_BLOCK_CHANNELS, KERNELS,
                                       LAST_CHANNELS, MAX_DEPTH, STAGE_ACTS, STAGE_CHANNELS, STAGE_SE, STAGE_STRIDES,
                                       STAGES, STEM_CHANNELS, OFAArch)

N_STAGES = STAGES
#: Block slots (stage s owns slots 4s .. 4s + d[s] - 1).
N_SLOTS = N_STAGES * MAX_DEPTH
#: Resolutions OFA's accuracy predictor encodes: bucket (r - 112) // 16 of 8.
PREDICTOR_RESOLUTIONS = range(112, 240)
#: Resolutions with a Note10 lookup table (the files ``ofa_note10_lut_<r>`` of the data directory).
NOTE10_RESOLUTIONS = tuple(range(160, 225, 4))
#: Classes of the ImageNet classifier the Note10 tables were measured with.
N_CLASSES = 1000

_PREDICTOR_LAYERS = ("0", "2", "4", "6")
_PREDICTOR_SHAPES = {"0.weight": (400, 128), "0.bias": (400,), "2.weight": (400, 400), "2.bias": (400,),
                     "4.weight": (400, 400), "4.bias": (400,), "6.weight": (1, 400), "6.bias": (1,)}
_N_FEATURES = 128


def _choice_index(choices: Sequence[int]) -> np.ndarray:
    """Lookup array value -> position in ``choices`` (-1 for values that are not choices)."""
    index = np.full(max(choices) + 1, -1, dtype=np.int64)
    index[list(choices)] = np.arange(len(choices))
    return index


_KERNEL_INDEX = _choice_index(KERNELS)
_EXPAND_INDEX = _choice_index(EXPANDS)
_DEPTH_INDEX = _choice_index(DEPTHS)
_PREDICTOR_RESOLUTION_INDEX = _choice_index(PREDICTOR_RESOLUTIONS)


def _not_in(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Bool mask of the values that are not choices of the lookup ``index`` (``_choice_index``)."""
    inside = (values >= 0) & (values < len(index))
    return ~inside | (index[np.where(inside, values, 0)] < 0)


def arch_arrays(archs: Sequence[OFAArch]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The genes of a batch as int arrays: ks (n, 20), e (n, 20), d (n, 5), r (n,)."""
    if len(archs) == 0:
        return (np.zeros((0, N_SLOTS), np.int64), np.zeros((0, N_SLOTS), np.int64),
                np.zeros((0, N_STAGES), np.int64), np.zeros(0, np.int64))
    try:
        try:  # the fast path: the 45 genes of ks, e and d each fit a byte
            genes = np.frombuffer(bytes(chain.from_iterable(chain.from_iterable((a.ks, a.e, a.d) for a in archs))),
                                  np.uint8).reshape(len(archs), 2 * N_SLOTS + N_STAGES).astype(np.int64)
            r = np.fromiter((a.r for a in archs), np.int64, len(archs))
            return genes[:, :N_SLOTS], genes[:, N_SLOTS:2 * N_SLOTS], genes[:, 2 * N_SLOTS:], r
        except ValueError:  # a gene of 256 or more, or a wrong length: per field, so that the check names it
            return tuple(np.array([getattr(a, name) for a in archs], dtype=np.int64) for name in ("ks", "e", "d", "r"))
    except (AttributeError, TypeError, ValueError) as exc:
        raise InvalidArchitecture(f"not OFA MobileNetV3 architectures (ks[20], e[20], d[5], r): {exc}") from None


def active_slots(d: np.ndarray) -> np.ndarray:
    """Bool (n, 20): which block slots the depths ``d`` (n, 5) use (slot 4s + j of stage s is active iff j < d[s])."""
    position = np.arange(N_SLOTS) % MAX_DEPTH
    return position[None, :] < np.repeat(np.asarray(d), MAX_DEPTH, axis=1)


def _check_genes(ks: np.ndarray, e: np.ndarray, d: np.ndarray, r: np.ndarray,
                 resolution_index: np.ndarray, resolution_source: str) -> np.ndarray:
    """Validate a batch; return the active-slot mask. Inactive slots may hold anything (OFA writes 0 there)."""
    n = len(r)
    for name, genes, width in (("ks", ks, N_SLOTS), ("e", e, N_SLOTS), ("d", d, N_STAGES)):
        if genes.shape != (n, width):
            raise InvalidArchitecture(f"OFA architecture {name} must hold {width} values per architecture, "
                                      f"got shape {genes.shape[1:] if genes.ndim == 2 else genes.shape}")
    bad = _not_in(d, _DEPTH_INDEX)
    if bad.any():
        i, s = np.argwhere(bad)[0]
        raise InvalidArchitecture(f"architecture {i}: depth {d[i, s]} of stage {s} is not one of "
                                  f"{', '.join(map(str, DEPTHS))}")
    active = active_slots(d)
    for name, genes, choices, index in (("kernel size", ks, KERNELS, _KERNEL_INDEX),
                                        ("expansion", e, EXPANDS, _EXPAND_INDEX)):
        bad = active & _not_in(genes, index)
        if bad.any():
            i, slot = np.argwhere(bad)[0]
            raise InvalidArchitecture(f"architecture {i}: {name} {genes[i, slot]} in block slot {slot} (stage "
                                      f"{slot // MAX_DEPTH}) is not one of {', '.join(map(str, choices))}")
    bad = _not_in(r, resolution_index)
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidArchitecture(f"architecture {i}: resolution {r[i]} is outside {resolution_source}")
    return active


def _resolution_text(resolutions: Sequence[int]) -> str:
    step = resolutions[1] - resolutions[0]
    return f"{resolutions[0]}..{resolutions[-1]}" + (f" step {step}" if step != 1 else "")


#: ``val_acc`` is rounded to this many decimals (of a percent): far below the float32 predictor's own precision
#: (~1e-5 %), and it makes a float64 answer independent of the batch it was computed in (BLAS picks other
#: kernels for other batch sizes, which moves the last bits).
VAL_ACC_DECIMALS = 6


class _OFAQuery(Evaluator):
    """An evaluator of ``ofa_mbv3`` architectures that answers one metric (``metric``) for a whole batch at
    once (``query_batch``); each query costs ``cost_per_query_s``."""

    metric = ""
    dataset = "imagenet"
    batched = True

    def __init__(self, space: SearchSpace, cost_per_query_s: float) -> None:
        super().__init__(space)
        if getattr(space, "name", None) != "ofa_mbv3":
            raise ValueError(f"{self.name} answers only for space ofa_mbv3, not {getattr(space, 'name', space)!r}")
        if cost_per_query_s <= 0:
            raise ValueError(f"cost_per_query_s must be > 0 (a cost budget charges it per query), got {cost_per_query_s}")
        self.cost_per_query_s = float(cost_per_query_s)

    @property
    def metrics(self) -> tuple[str, ...]:
        return (self.metric,)

    @abstractmethod
    def query_batch(self, archs: Sequence[OFAArch]) -> np.ndarray:
        """The metric of each architecture, float (n,)."""

    def evaluate(self, arch: OFAArch) -> Result:
        return self.evaluate_batch([arch])[0]

    def evaluate_batch(self, archs: Sequence[OFAArch]) -> list[Result]:
        start = time.perf_counter()
        values = self.query_batch(archs)
        wall = (time.perf_counter() - start) / max(len(archs), 1)
        return [Result({self.metric: value}, self.cost_per_query_s, wall) for value in values.tolist()]


class OFAAccuracy(_OFAQuery):
    """OFA's ImageNet accuracy predictor (the released MLP) for ``ofa_mbv3`` architectures.

    Metric: ``val_acc``, predicted top-1 accuracy in percent (100 x the predictor's fraction; OFA's holdout
    split of ImageNet train), rounded to 6 decimals. ``dtype`` is the arithmetic of the MLP: float64 (default;
    an architecture gets the same value in every batch) or float32 (about 4x faster; values move by ~1e-5 %
    with the batch composition). Both reproduce the stored outputs of OFA's predictor to < 1e-6 (fraction).
    ``note10_latency: true`` adds the ``latency_ms`` of :class:`Note10Latency` to every result, so that one
    config can search accuracy against Note10 latency (as ``nb201_tabular`` adds device latencies).
    """

    name = "ofa_accuracy"
    metric = "val_acc"

    def __init__(self, space: SearchSpace, data_dir: str | None = None, cost_per_query_s: float = 1.0,
                 dtype: Literal["float64", "float32"] = "float64", chunk_size: int = 2048,
                 note10_latency: bool = False) -> None:
        super().__init__(space, cost_per_query_s)
        self.note10 = Note10Latency(space, data_dir, cost_per_query_s) if note10_latency else None
        if dtype not in ("float64", "float32"):
            raise ValueError(f"dtype must be float64 or float32, got {dtype!r}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.chunk_size = int(chunk_size)
        arrays = load_npz("ofa_acc_predictor", data_dir)
        path = TABLES["ofa_acc_predictor"].path
        for key, shape in _PREDICTOR_SHAPES.items():
            if arrays[key].shape != shape:
                raise DataError(f"benchmark table {path}: array {key!r} has shape {arrays[key].shape}, expected "
                                f"{shape}; replace it with the original (sha256 {TABLES['ofa_acc_predictor'].sha256})")
        # y = x W^T + b, weights kept transposed and contiguous for the batch matmuls (torch's addmm: ~10% faster
        # than numpy's BLAS on this MLP).
        self._weights = [torch.from_numpy(np.ascontiguousarray(arrays[f"{layer}.weight"].T, dtype=dtype))
                         for layer in _PREDICTOR_LAYERS]
        self._biases = [torch.from_numpy(arrays[f"{layer}.bias"].astype(dtype)) for layer in _PREDICTOR_LAYERS]
        self.dtype = np.dtype(dtype)

    @staticmethod
    def features(ks: np.ndarray, e: np.ndarray, d: np.ndarray, r: np.ndarray, dtype=np.float64) -> np.ndarray:
        """OFA's predictor encoding (tutorial ``spec2feats``) of a batch: float (n, 128).

        x[3i + {3,5,7}.index(ks[i])] = 1 and x[60 + 3i + {3,4,6}.index(e[i])] = 1 for each active slot i,
        x[120 + (r - 112) // 16] = 1.
        """
        ks, e, d, r = (np.asarray(a, dtype=np.int64) for a in (ks, e, d, r))
        active = _check_genes(ks, e, d, r, _PREDICTOR_RESOLUTION_INDEX,
                              f"the accuracy predictor's range {_resolution_text(PREDICTOR_RESOLUTIONS)}")
        n = len(r)
        # One column per set bit; an inactive slot points at a spare column N_FEATURES that is cut off at the end.
        slots = 3 * np.arange(N_SLOTS)
        columns = np.concatenate([
            np.where(active, slots + _KERNEL_INDEX[np.clip(ks, 0, len(_KERNEL_INDEX) - 1)], _N_FEATURES),
            np.where(active, 60 + slots + _EXPAND_INDEX[np.clip(e, 0, len(_EXPAND_INDEX) - 1)], _N_FEATURES),
            (120 + (r - 112) // 16)[:, None]], axis=1)
        x = np.zeros((n, _N_FEATURES + 1), dtype=dtype)
        np.put_along_axis(x, columns, 1, axis=1)
        return np.ascontiguousarray(x[:, :_N_FEATURES])

    def predict(self, ks: np.ndarray, e: np.ndarray, d: np.ndarray, r: np.ndarray) -> np.ndarray:
        """The predictor's output for a batch given as gene arrays: float (n,), a fraction (not percent)."""
        x = torch.from_numpy(self.features(ks, e, d, r, self.dtype))
        out = np.empty(len(x), dtype=np.float64)
        with torch.no_grad():
            for start in range(0, len(x), self.chunk_size):
                h = x[start:start + self.chunk_size]
                for layer, (weight, bias) in enumerate(zip(self._weights, self._biases)):
                    h = torch.addmm(bias, h, weight)
                    if layer < len(self._weights) - 1:
                        h.relu_()
                out[start:start + len(h)] = h[:, 0].numpy()
        return out

    def query_batch(self, archs: Sequence[OFAArch]) -> np.ndarray:
        """Vectorised query: ``val_acc`` (percent, rounded to ``VAL_ACC_DECIMALS``) of each architecture, (n,)."""
        return np.round(100.0 * self.predict(*arch_arrays(archs)), VAL_ACC_DECIMALS)

    @property
    def metrics(self) -> tuple[str, ...]:
        return (self.metric,) if self.note10 is None else (self.metric, self.note10.metric)

    def evaluate_batch(self, archs: Sequence[OFAArch]) -> list[Result]:
        results = super().evaluate_batch(archs)
        if self.note10 is None:
            return results
        latency = self.note10.query_batch(archs).tolist()
        return [Result({**result.metrics, self.note10.metric: value}, result.cost_s, result.wall_s)
                for result, value in zip(results, latency)]


class Note10Latency(_OFAQuery):
    """Samsung Note10 latency of ``ofa_mbv3`` architectures from OFA's per-layer lookup tables.

    Metric: ``latency_ms``, milliseconds (sum of the tables' mean layer latencies, batch 1, as OFA's
    ``MBv3LatencyTable.predict_network_latency_given_config``). Resolutions: 160..224 step 4.
    """

    name = "note10_latency"
    metric = "latency_ms"

    def __init__(self, space: SearchSpace, data_dir: str | None = None, cost_per_query_s: float = 1.0) -> None:
        super().__init__(space, cost_per_query_s)
        self.resolutions = NOTE10_RESOLUTIONS
        self._row_of_resolution = _choice_index(self.resolutions)
        #: fixed layers per resolution (n_res,); block latency per (resolution, slot, kernel, expansion)
        self._fixed = np.zeros(len(self.resolutions))
        self._blocks = np.zeros((len(self.resolutions), N_SLOTS, len(KERNELS), len(EXPANDS)))
        for row, resolution in enumerate(self.resolutions):
            self._fixed[row], self._blocks[row] = self._resolution_latencies(resolution, data_dir)

    @staticmethod
    def _resolution_latencies(resolution: int, data_dir: str | os.PathLike | None) -> tuple[float, np.ndarray]:
        """(latency of the fixed layers, block latencies (20, kernels, expansions)) at one resolution."""
        name = f"ofa_note10_lut_{resolution}"
        table = load_yaml(name, data_dir)

        def query(kind: str, input_shape: Sequence[int], output_shape: Sequence[int], **block: int) -> float:
            key = "-".join([kind, "input:" + "x".join(map(str, input_shape)),
                            "output:" + "x".join(map(str, output_shape)),
                            *(f"{field}:{value}" for field, value in block.items())])
            entry = table.get(key)
            mean = entry.get("mean") if isinstance(entry, dict) else None
            if isinstance(mean, bool) or not isinstance(mean, (int, float)) or not np.isfinite(mean) or mean < 0:
                spec = TABLES[name]
                problem = "lacks the entry" if entry is None else "has no valid 'mean' in the entry"
                raise DataError(f"benchmark table {spec.path} {problem} {key!r}; replace it with the original "
                                f"(source: {spec.source}; sha256 {spec.sha256})")
            return float(mean)

        size = (resolution + 1) // 2
        fixed = query("Conv", [resolution, resolution, 3], [size, size, STEM_CHANNELS])
        fixed += query("expanded_conv", [size, size, STEM_CHANNELS], [size, size, FIRST_BLOCK_CHANNELS],
                       expand=STEM_CHANNELS, kernel=3, stride=1, idskip=int(STEM_CHANNELS == FIRST_BLOCK_CHANNELS),
                       se=0, hs=0)
        blocks = np.zeros((N_SLOTS, len(KERNELS), len(EXPANDS)))
        channels = FIRST_BLOCK_CHANNELS
        for stage, width in enumerate(STAGE_CHANNELS):
            for position in range(MAX_DEPTH):
                stride = STAGE_STRIDES[stage] if position == 0 else 1
                in_channels = channels if position == 0 else width
                out_size = int((size - 1) / stride + 1)
                for k, kernel in enumerate(KERNELS):
                    for x, expand in enumerate(EXPANDS):
                        blocks[stage * MAX_DEPTH + position, k, x] = query(
                            "expanded_conv", [size, size, in_channels], [out_size, out_size, width],
                            expand=_make_divisible(round(in_channels * expand), 8), kernel=kernel, stride=stride,
                            idskip=int(stride == 1 and in_channels == width), se=int(STAGE_SE[stage]),
                            hs=int(STAGE_ACTS[stage] == "h_swish"))
                if position == 0:
                    size = out_size
            channels = width
        fixed += query("Conv_1", [size, size, channels], [size, size, FINAL_EXPAND_CHANNELS])
        fixed += query("AvgPool2D", [size, size, FINAL_EXPAND_CHANNELS], [1, 1, FINAL_EXPAND_CHANNELS])
        fixed += query("Conv_2", [1, 1, FINAL_EXPAND_CHANNELS], [1, 1, LAST_CHANNELS])
        fixed += query("Logits", [1, 1, LAST_CHANNELS], [N_CLASSES])
        return fixed, blocks

    def latency(self, ks: np.ndarray, e: np.ndarray, d: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Note10 latency (ms) of a batch given as gene arrays: float (n,)."""
        ks, e, d, r = (np.asarray(a, dtype=np.int64) for a in (ks, e, d, r))
        active = _check_genes(ks, e, d, r, self._row_of_resolution,
                              f"the Note10 lookup tables ({_resolution_text(self.resolutions)})")
        rows = self._row_of_resolution[r]
        k = np.where(active, _KERNEL_INDEX[np.clip(ks, 0, len(_KERNEL_INDEX) - 1)], 0)
        x = np.where(active, _EXPAND_INDEX[np.clip(e, 0, len(_EXPAND_INDEX) - 1)], 0)
        per_block = self._blocks[rows[:, None], np.arange(N_SLOTS)[None, :], k, x]
        return self._fixed[rows] + np.where(active, per_block, 0.0).sum(axis=1)

    def query_batch(self, archs: Sequence[OFAArch]) -> np.ndarray:
        """Vectorised query: ``latency_ms`` of each architecture, float (n,)."""
        return self.latency(*arch_arrays(archs))


def _make_divisible(value: float, divisor: int) -> int:
    """OFA's ``make_divisible``: the nearest multiple of ``divisor`` (>= divisor), not below 90% of ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def measure_throughput(evaluator: OFAAccuracy | Note10Latency, n: int = 200_000, batch_size: int = 10_000,
                       seed: int = 0, archs: bool = False) -> float:
    """Architectures per second of ``evaluator`` on ``n`` random architectures in batches of ``batch_size``:
    on gene arrays (``archs=False``: encoding + model, the hot path) or on OFAArch objects through
    ``evaluate_batch`` (``archs=True``: also the conversion to arrays and the Result objects)."""
    rng = np.random.default_rng(seed)
    ks = rng.choice(KERNELS, size=(n, N_SLOTS))
    e = rng.choice(EXPANDS, size=(n, N_SLOTS))
    d = rng.choice(DEPTHS, size=(n, N_STAGES))
    r = rng.choice(NOTE10_RESOLUTIONS, size=n)
    run = evaluator.predict if isinstance(evaluator, OFAAccuracy) else evaluator.latency
    batches = []
    for start in range(0, n, batch_size):
        part = slice(start, start + batch_size)
        if archs:
            batches.append([OFAArch(tuple(a), tuple(b), tuple(c), int(s))
                            for a, b, c, s in zip(ks[part].tolist(), e[part].tolist(), d[part].tolist(), r[part])])
        else:
            batches.append((ks[part], e[part], d[part], r[part]))
    begin = time.perf_counter()
    for batch in batches:
        evaluator.evaluate_batch(batch) if archs else run(*batch)
    return n / (time.perf_counter() - begin)
