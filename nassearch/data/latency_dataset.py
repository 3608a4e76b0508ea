"""Latency datasets for whole-network latency predictors (NAR-Former V2, NNLQP style).

A :class:`LatencyDataset` pairs whole-network graphs (:func:`nassearch.network_graph.network_graph`) with
measured latencies. :func:`build_cpu_latency_dataset` samples networks from several families (NB201 cell
networks, NB101 cell networks, torchvision classics) and times them on this CPU;
:func:`nb201_latency_graphs` gives the graphs of the 15,625 NB201 networks in the order of the NB201
device-latency table (``nasbench201/nb201_latency_ms.csv.gz``), derived from a few traced pieces instead
of tracing every network; :func:`help_ofa_latency_archs` and :class:`OFAGraphBuilder` do the same for HELP's
5,000 OFA MobileNetV3 subnets (``ofa/help_ofa_5k_latency_ms.csv``) at any batch size.

Files are ``.npz`` without pickles: graphs packed into concatenated arrays (node counts, ops, edge lists,
node attributes, graph attributes) and a JSON string for names, families, device and vocabularies.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torchvision
from torch import nn

from nassearch.data.tables import TABLES, fix_hint, load_csv, resolve_data_dir
from nassearch.errors import DataError
from nassearch.graph import ArchGraph
from nassearch.latency.timing import measure_latency_ms
from nassearch.model_cost import count_flops, count_params
from nassearch.latency.network_graph import LayerTrace, layer_row, network_graph, tensor_bytes, trace_layers
from nassearch.spaces.nasbench101 import NasBench101Space
from nassearch.spaces.nasbench201 import EDGES, OPS, Cell, NasBench201Space, NB201Arch, NB201Network, format_arch, parse_arch
from nassearch.spaces.ofa_mbv3 import (CANONICAL_EXPAND, CANONICAL_KERNEL, DEPTHS, EXPANDS, KERNELS, MAX_DEPTH,
                                      NUM_BLOCKS, STAGES, OFAArch, active_blocks, build_network)

log = logging.getLogger(__name__)

FORMAT_NAME = "nassearch-latency-dataset"
FORMAT_VERSION = 1
FAMILIES: tuple[str, ...] = ("nb201", "nb101", "torchvision")
#: Input of the NB201 networks whose latencies the NB201 latency table holds (CIFAR, batch 1).
NB201_LATENCY_INPUT: tuple[int, int, int, int] = (1, 3, 32, 32)
_REBUILD = "rebuild it with `nassearch data measure-latency --out PATH`"


# ---------------------------------------------------------------------------------------------
# The dataset and its file format.


@dataclass(eq=False)
class LatencyDataset:
    """Whole-network graphs with one measured latency (ms) each, their names and families, and the device."""

    graphs: list[ArchGraph]
    latency_ms: np.ndarray
    names: list[str]
    families: list[str]
    device: str

    def __post_init__(self) -> None:
        self.latency_ms = np.asarray(self.latency_ms, dtype=np.float64)
        n = len(self.graphs)
        if self.latency_ms.shape != (n,) or len(self.names) != n or len(self.families) != n:
            raise ValueError(f"LatencyDataset needs one latency, name and family per graph: {n} graphs, "
                             f"latency_ms {self.latency_ms.shape}, {len(self.names)} names, "
                             f"{len(self.families)} families")

    def __len__(self) -> int:
        return len(self.graphs)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the dataset to ``path`` (an .npz, exactly that name; no pickles); returns the path."""
        path = Path(path).expanduser()
        arrays, meta = pack_graphs(self.graphs)
        meta.update(format=FORMAT_NAME, version=FORMAT_VERSION, names=list(self.names),
                    families=list(self.families), device=self.device)
        arrays["latency_ms"] = self.latency_ms
        arrays["metadata"] = np.array(json.dumps(meta))
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        with open(partial, "wb") as handle:
            np.savez_compressed(handle, **arrays)
        partial.replace(path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> LatencyDataset:
        """Read a dataset written by :meth:`save`; DataError if the file is missing or corrupt."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise DataError(f"latency dataset {path} not found: {_REBUILD}")
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
            meta = json.loads(str(arrays.pop("metadata")[()]))
            if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
                raise ValueError("no latency-dataset metadata")
            if meta.get("version") != FORMAT_VERSION:
                raise ValueError(f"format version {meta.get('version')}, this nassearch reads {FORMAT_VERSION}")
            graphs = unpack_graphs(arrays, meta)
            return cls(graphs, arrays["latency_ms"], list(meta["names"]), list(meta["families"]), str(meta["device"]))
        except (OSError, ValueError, KeyError, IndexError, TypeError, EOFError, zipfile.BadZipFile,
                zlib.error) as exc:
            raise DataError(f"latency dataset {path} is corrupt or not a latency dataset "
                            f"({type(exc).__name__}: {exc}): {_REBUILD}") from None


def pack_graphs(graphs: Sequence[ArchGraph]) -> tuple[dict[str, np.ndarray], dict]:
    """Graphs as flat arrays plus JSON-able metadata (vocabularies, attribute names); see :func:`unpack_graphs`."""
    node_names = sorted(graphs[0].node_attrs) if graphs else []
    for g in graphs:
        if sorted(g.node_attrs) != node_names:
            raise ValueError(f"graphs to pack must share node attributes: {sorted(g.node_attrs)} vs {node_names}")
    graph_names: list[str] = []
    for g in graphs:
        graph_names.extend(k for k in g.graph_attrs if k not in graph_names)
    vocabs: list[tuple[str, ...]] = []
    for g in graphs:
        if tuple(g.op_vocab) not in vocabs:
            vocabs.append(tuple(g.op_vocab))
    sources, targets = zip(*(np.nonzero(g.adjacency) for g in graphs)) if graphs else ((), ())
    arrays: dict[str, np.ndarray] = {
        "num_nodes": np.array([g.num_nodes for g in graphs], dtype=np.int64),
        "num_edges": np.array([len(s) for s in sources], dtype=np.int64),
        "ops": _concat([g.ops for g in graphs], np.int64),
        "edges": np.stack([_concat(sources, np.int64), _concat(targets, np.int64)], axis=1),
        "vocab_index": np.array([vocabs.index(tuple(g.op_vocab)) for g in graphs], dtype=np.int64),
        "graph_attrs": np.array([[g.graph_attrs.get(k, np.nan) for k in graph_names] for g in graphs],
                                dtype=np.float64).reshape(len(graphs), len(graph_names)),
        "graph_attr_present": np.array([[k in g.graph_attrs for k in graph_names] for g in graphs],
                                       dtype=bool).reshape(len(graphs), len(graph_names)),
        "has_cells": np.array([g.cells is not None for g in graphs], dtype=bool),
        "cells": _concat([g.cells if g.cells is not None else np.zeros(g.num_nodes, np.int64) for g in graphs],
                         np.int64),
    }
    for k, name in enumerate(node_names):
        arrays[f"node_attr_{k}"] = np.concatenate([np.asarray(g.node_attrs[name]) for g in graphs])
    meta = {"vocabs": [list(v) for v in vocabs], "node_attrs": node_names, "graph_attrs": graph_names}
    return arrays, meta


def _concat(parts: Sequence[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate([np.asarray(p, dtype=dtype) for p in parts]) if len(parts) else np.zeros(0, dtype)


def unpack_graphs(arrays: dict[str, np.ndarray], meta: dict) -> list[ArchGraph]:
    """Inverse of :func:`pack_graphs`; ValueError/KeyError on inconsistent arrays."""
    num_nodes, num_edges = arrays["num_nodes"], arrays["num_edges"]
    if num_nodes.ndim != 1 or num_edges.shape != num_nodes.shape or np.any(num_nodes < 0) or np.any(num_edges < 0):
        raise ValueError("node/edge counts are malformed")
    node_end, edge_end = np.cumsum(num_nodes), np.cumsum(num_edges)
    total_nodes = int(node_end[-1]) if len(node_end) else 0
    ops, edges, cells = arrays["ops"], arrays["edges"], arrays["cells"]
    node_arrays = {name: arrays[f"node_attr_{k}"] for k, name in enumerate(meta["node_attrs"])}
    if ops.shape != (total_nodes,) or cells.shape != (total_nodes,) or edges.shape != (int(edge_end[-1]) if len(
            edge_end) else 0, 2) or any(len(v) != total_nodes for v in node_arrays.values()):
        raise ValueError("array lengths do not match the node and edge counts")
    vocabs = [tuple(v) for v in meta["vocabs"]]
    graph_names = list(meta["graph_attrs"])
    values, present = arrays["graph_attrs"], arrays["graph_attr_present"]
    graphs = []
    for i, n in enumerate(num_nodes.tolist()):
        a, b = int(node_end[i]) - n, int(node_end[i])
        local = edges[int(edge_end[i]) - int(num_edges[i]): int(edge_end[i])]
        if local.size and (local.min() < 0 or local.max() >= n):
            raise ValueError(f"graph {i} has an edge to a node it does not have")
        adjacency = np.zeros((n, n), dtype=np.uint8)
        adjacency[local[:, 0], local[:, 1]] = 1
        graphs.append(ArchGraph(
            ops=ops[a:b], adjacency=adjacency, op_vocab=vocabs[int(arrays["vocab_index"][i])],
            node_attrs={name: v[a:b] for name, v in node_arrays.items()},
            graph_attrs={k: float(values[i, j]) for j, k in enumerate(graph_names) if present[i, j]},
            cells=cells[a:b] if arrays["has_cells"][i] else None))
    return graphs


# ---------------------------------------------------------------------------------------------
# Measuring networks on this CPU.

#: torchvision classics: (builder, keyword arguments, input resolutions).
_RESOLUTIONS = (32, 48, 64, 80, 96, 112, 128, 144, 160)
TORCHVISION_NETWORKS: tuple[tuple[str, dict, tuple[int, ...]], ...] = (
    ("resnet18", {}, _RESOLUTIONS), ("resnet34", {}, _RESOLUTIONS[:7]), ("resnet50", {}, _RESOLUTIONS[:7]),
    ("mobilenet_v2", {"width_mult": 0.5}, _RESOLUTIONS), ("mobilenet_v2", {"width_mult": 0.75}, _RESOLUTIONS),
    ("mobilenet_v2", {"width_mult": 1.0}, _RESOLUTIONS),
    ("mobilenet_v3_small", {}, _RESOLUTIONS), ("mobilenet_v3_large", {}, _RESOLUTIONS),
    ("efficientnet_b0", {}, _RESOLUTIONS), ("mnasnet0_5", {}, _RESOLUTIONS), ("mnasnet1_0", {}, _RESOLUTIONS),
    ("shufflenet_v2_x0_5", {}, _RESOLUTIONS), ("shufflenet_v2_x1_0", {}, _RESOLUTIONS),
    ("squeezenet1_1", {}, _RESOLUTIONS), ("regnet_x_400mf", {}, _RESOLUTIONS), ("regnet_y_400mf", {}, _RESOLUTIONS),
)
#: NB201 networks: (channels, input resolution); 5 cells per stage as in the benchmark.
NB201_SETTINGS: tuple[tuple[int, int], ...] = ((8, 32), (16, 32), (24, 32), (32, 32), (8, 64), (16, 64))
#: NB101 networks (CIFAR input 32): stem channels, stacks, modules per stack (the benchmark's 128/3/3 is slow).
NB101_SETTINGS: tuple[tuple[int, int, int], ...] = tuple(
    (stem, stacks, modules) for stem in (16, 32) for stacks in (2, 3) for modules in (1, 2, 3))


@dataclass(frozen=True)
class _Candidate:
    name: str
    family: str
    input_shape: tuple[int, ...]
    build: Callable[[], nn.Module]


def _sample_candidate(family: str, rng: np.random.Generator) -> _Candidate:
    """One network of ``family`` drawn from ``rng`` (name and shape fixed now, the module built lazily)."""
    if family == "nb201":
        channels, size = NB201_SETTINGS[int(rng.integers(len(NB201_SETTINGS)))]
        space = NasBench201Space(channels=channels)
        arch = space.sample(rng)
        return _Candidate(f"nb201:{format_arch(arch)}:C{channels}:N5:r{size}", family, (1, 3, size, size),
                          lambda: space.build_model(arch))
    if family == "nb101":
        stem, stacks, modules = NB101_SETTINGS[int(rng.integers(len(NB101_SETTINGS)))]
        space = NasBench101Space(stem_channels=stem, num_stacks=stacks, modules_per_stack=modules)
        cell = space.canonical(space.sample(rng))
        return _Candidate(f"nb101:{space.to_str(cell)}:C{stem}:S{stacks}:M{modules}:r32", family, (1, 3, 32, 32),
                          lambda: space.build_model(cell))
    if family == "torchvision":
        builder, kwargs, sizes = TORCHVISION_NETWORKS[int(rng.integers(len(TORCHVISION_NETWORKS)))]
        size = int(sizes[int(rng.integers(len(sizes)))])
        label = builder + "".join(f"_w{v}" for v in kwargs.values())
        return _Candidate(f"{label}:r{size}", family, (1, 3, size, size),
                          lambda: getattr(torchvision.models, builder)(weights=None, **kwargs))
    raise ValueError(f"unknown network family {family!r}; known: {', '.join(FAMILIES)}")


def cpu_device_name(threads: int = 1) -> str:
    """This CPU's model name and the thread count, e.g. ``cpu: AMD EPYC 7B13 (1 thread)``."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {name} ({threads} thread{'s' if threads > 1 else ''})"


def build_cpu_latency_dataset(count: int, seed: int, *, families: Sequence[str] = FAMILIES, warmup: int = 10,
                              repeats: int = 20, threads: int = 1, log_every: int = 10) -> LatencyDataset:
    """``count`` networks sampled reproducibly from ``families`` (in turn) and timed on this CPU.

    Network ``i`` comes from ``families[i % len(families)]``; its architecture, width and resolution come
    from ``numpy.random.default_rng(seed)``, and its (irrelevant) weights from a torch seed drawn from it,
    so the same seed gives the same names and graphs. Each network is timed with
    :func:`~nassearch.latency.timing.measure_latency_ms` (median of ``repeats`` runs after ``warmup``, batch 1).
    """
    if count < 1 or warmup < 0 or repeats < 1 or threads < 1:
        raise ValueError(f"need count >= 1, warmup >= 0, repeats >= 1 and threads >= 1; got count={count}, "
                         f"warmup={warmup}, repeats={repeats}, threads={threads}")
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise ValueError(f"families must be among {', '.join(FAMILIES)}; got {list(families)}")
    rng = np.random.default_rng(seed)
    graphs, latencies, names, fams = [], [], [], []
    seen: set[str] = set()
    start = time.perf_counter()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)  # tracing and shape propagation too: spare cores stay free
    try:
        for i in range(count):
            candidate = _new_candidate(families[i % len(families)], rng, seen)
            name, family, graph, latency = _measure_one(candidate, rng, warmup, repeats, threads)
            names.append(name)
            fams.append(family)
            graphs.append(graph)
            latencies.append(latency)
            if (i + 1) % log_every == 0 or i + 1 == count:
                elapsed = time.perf_counter() - start
                log.info("measured %d/%d networks in %.0f s (last %s: %.2f ms; about %.0f s left)", i + 1, count,
                         elapsed, names[-1], latencies[-1], elapsed / (i + 1) * (count - i - 1))
    finally:
        torch.set_num_threads(old_threads)
    return LatencyDataset(graphs, np.array(latencies), names, fams, cpu_device_name(threads))


def _new_candidate(family: str, rng: np.random.Generator, seen: set[str], attempts: int = 1000) -> _Candidate:
    """A network of ``family`` not drawn before (a dataset holds each network once, so a random split
    never puts one network in both the training and the test set)."""
    for _ in range(attempts):
        candidate = _sample_candidate(family, rng)
        if candidate.name not in seen:
            seen.add(candidate.name)
            return candidate
    raise ValueError(f"family {family!r} has no network left to draw after {len(seen)} networks; "
                     "ask for fewer networks")


def _measure_one(candidate: _Candidate, rng: np.random.Generator, warmup: int, repeats: int,
                 threads: int) -> tuple[str, str, ArchGraph, float]:
    """Build, trace and time one network: (name, family, graph, latency ms)."""
    torch_seed = int(rng.integers(2**31))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_seed)
        model = candidate.build()
    graph = network_graph(model, candidate.input_shape)
    latency = measure_latency_ms(model, candidate.input_shape, warmup, repeats, threads)
    return candidate.name, candidate.family, graph, latency


def family_counts(dataset: LatencyDataset) -> dict[str, int]:
    """Number of networks per family, in first-appearance order."""
    return dict(Counter(dataset.families))


# ---------------------------------------------------------------------------------------------
# NB201 graphs in the latency table's order.


class NB201GraphBuilder:
    """Whole-network graphs of NB201 networks, assembled from traced pieces instead of tracing each network.

    The stem, the reduction blocks, the head and each operation at each stage width are traced once;
    a network's graph strings them together in the order torch.fx records them (per cell node, each
    incoming edge's operation followed by the sum), so it equals ``network_graph(space.build_model(arch),
    input_shape)`` node for node (the tests check this).
    """

    def __init__(self, space: NasBench201Space, input_shape: tuple[int, ...] = NB201_LATENCY_INPUT) -> None:
        self.space = space
        with torch.random.fork_rng(devices=[]):  # weights are irrelevant: leave the global generator alone
            self._trace_pieces(space, input_shape)

    def _trace_pieces(self, space: NasBench201Space, input_shape: tuple[int, ...]) -> None:
        self.input_shape = tuple(int(s) for s in input_shape)
        template = NB201Network((0,) * len(EDGES), space.channels, space.cells_per_stage, space.num_classes)
        template.eval()
        self.batch = self.input_shape[0]
        self.stem = trace_layers(template.stem, self.input_shape)
        self.pieces: list[tuple[int, ...] | LayerTrace] = []  # a cell's input shape, or a traced block
        self.op_traces: dict[tuple[int, ...], list[LayerTrace]] = {}
        self.op_costs: dict[tuple[int, ...], list[tuple[int, int]]] = {}
        with torch.no_grad():
            x = template.stem(torch.zeros(self.input_shape))
            for layer in template.cells:
                shape = tuple(x.shape)
                if isinstance(layer, Cell):
                    self.pieces.append(shape)
                    if shape not in self.op_traces:
                        # a cell whose edge i carries operation i: one module per operation at this width
                        ops = Cell(tuple(range(len(OPS))) + (0,), shape[1]).edges[: len(OPS)]
                        self.op_traces[shape] = [trace_layers(op, shape) for op in ops]
                        self.op_costs[shape] = [(count_flops(op, shape[1:]), count_params(op)) for op in ops]
                else:
                    self.pieces.append(trace_layers(layer, shape))
                x = layer(x)
            self.head = trace_layers(nn.Sequential(template.head, template.classifier), tuple(x.shape))
        cell_shapes = [p for p in self.pieces if isinstance(p, tuple)]
        none_flops = sum(self.op_costs[s][0][0] for s in cell_shapes) * len(EDGES)
        none_params = sum(self.op_costs[s][0][1] for s in cell_shapes) * len(EDGES)
        self.base_flops = count_flops(template, self.input_shape[1:]) - none_flops
        self.base_params = count_params(template) - none_params
        self._cells_arch: NB201Arch | None = None
        self._cells: dict[tuple[int, ...], LayerTrace] = {}  # the cells of ``_cells_arch`` at each stage

    def _cell(self, shape: tuple[int, ...], arch: NB201Arch) -> LayerTrace:
        if arch != self._cells_arch:
            self._cells_arch, self._cells = arch, {}
        if shape not in self._cells:
            cell = LayerTrace.start(shape)
            add_row, add_bytes = layer_row(shape), 3 * tensor_bytes(shape)
            nodes: list[tuple[int, ...]] = [(0,)]
            for dst in (1, 2, 3):
                total: tuple[int, ...] | None = None
                for (src, into), op in zip(EDGES, arch):
                    if into != dst:
                        continue
                    out = cell.extend(self.op_traces[shape][op], nodes[src])
                    total = out if total is None else (cell.append("add", total + out, add_row, add_bytes),)
                nodes.append(total)
            cell.outputs = nodes[3]
            self._cells[shape] = cell
        return self._cells[shape]

    def graph(self, arch: NB201Arch) -> ArchGraph:
        """The whole-network graph of ``arch``."""
        self.space.validate(arch)
        trace = LayerTrace.start(self.input_shape)
        out = trace.extend(self.stem, (0,))
        flops, params = self.base_flops, self.base_params
        for piece in self.pieces:
            if isinstance(piece, LayerTrace):
                out = trace.extend(piece, out)
            else:
                out = trace.extend(self._cell(piece, arch), out)
                costs = self.op_costs[piece]
                flops += sum(costs[op][0] for op in arch)
                params += sum(costs[op][1] for op in arch)
        trace.extend(self.head, out)
        return trace.to_graph(batch_size=self.batch, flops=flops * self.batch, params=params)


def nb201_latency_archs(data_dir: str | os.PathLike | None = None) -> tuple[list[NB201Arch], pd.DataFrame]:
    """Architectures of the NB201 latency table in its row order, and the table (a DataFrame)."""
    table = load_csv("nb201_latency", data_dir)
    return [parse_arch(s) for s in table["arch_str"]], table


def _check_nb201_space(space: NasBench201Space) -> None:
    if not isinstance(space, NasBench201Space):
        raise ValueError(f"nb201 latency graphs need a NasBench201Space, got {type(space).__name__}")
    if (space.channels, space.cells_per_stage) != (16, 5):
        raise ValueError("the NB201 latency table holds the network with channels=16 and cells_per_stage=5; "
                         f"the space has {space.channels} and {space.cells_per_stage}")


def nb201_latency_graphs(space: NasBench201Space, data_dir: str | os.PathLike | None = None,
                         rows: Sequence[int] | None = None) -> list[ArchGraph]:
    """Whole-network graphs (input 1x3x32x32) of the NB201 latency table's archs, in its row order.

    ``rows`` selects table rows (default: all 15,625). The graphs are assembled by
    :class:`NB201GraphBuilder` (a few traces, then about a millisecond per network).
    """
    _check_nb201_space(space)
    archs, _ = nb201_latency_archs(data_dir)
    if rows is not None:
        archs = [archs[int(r)] for r in rows]
    start = time.perf_counter()
    builder = NB201GraphBuilder(space)
    graphs = [builder.graph(arch) for arch in archs]
    log.info("built %d NB201 whole-network graphs in %.1f s", len(graphs), time.perf_counter() - start)
    return graphs


def nb201_latency_dataset(device: str, space: NasBench201Space | None = None,
                          data_dir: str | os.PathLike | None = None,
                          rows: Sequence[int] | None = None) -> LatencyDataset:
    """The NB201 latency table's column ``lat_<device>`` (ms) with the networks' whole-network graphs."""
    space = space if space is not None else NasBench201Space()
    _check_nb201_space(space)
    archs, table = nb201_latency_archs(data_dir)
    column = f"lat_{device}"
    if column not in table.columns:
        known = [c[len("lat_"):] for c in table.columns if c.startswith("lat_")]
        raise ValueError(f"unknown NB201 latency device {device!r}; known: {', '.join(known)}")
    selected = list(range(len(archs))) if rows is None else [int(r) for r in rows]
    builder = NB201GraphBuilder(space)
    graphs = [builder.graph(archs[r]) for r in selected]
    latency = table[column].to_numpy(float)[selected]
    names = [f"nb201:{format_arch(archs[r])}" for r in selected]
    return LatencyDataset(graphs, latency, names, ["nb201"] * len(selected), device)


# ---------------------------------------------------------------------------------------------
# HELP's OFA MobileNetV3 subnets in the latency table's order.

HELP_OFA_TABLE = "ofa_help_5k_latency"
#: Input resolutions of HELP's OFA subnets: OFA's training resolutions, 128..224 step 4.
HELP_OFA_RESOLUTIONS: tuple[int, ...] = tuple(range(128, 225, 4))


def help_ofa_latency_archs(data_dir: str | os.PathLike | None = None) -> tuple[list[OFAArch], pd.DataFrame]:
    """Architectures of HELP's OFA latency table in its row order, and the table (a DataFrame).

    Columns ``r``, ``d_0..d_4``, ``ks_0..ks_19`` and ``e_0..e_19``; the kernels and expansions of inactive
    slots (slot ``4s + i`` with ``i >= d_s``) are ignored, whatever they hold, and the arch carries the
    canonical kernel 3 / expansion 3 there. A missing column or a bad value raises DataError naming the file,
    the line and the column.
    """
    spec = TABLES[HELP_OFA_TABLE]
    table = load_csv(HELP_OFA_TABLE, data_dir)
    path = resolve_data_dir(data_dir) / spec.path

    def genes(columns: list[str], allowed: Sequence[int], what: str, active: np.ndarray | None = None,
              inactive: int = 0) -> np.ndarray:
        """The integer values of ``columns``, checked to lie in ``allowed`` where ``active``; ``inactive`` elsewhere."""
        missing = [c for c in columns if c not in table.columns]
        if missing:
            raise DataError(f"benchmark table {path} lacks column {missing[0]}; {fix_hint(spec)}")
        values = table[columns].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
        bad = ~np.isin(values, allowed)
        if active is not None:
            bad &= active
            values = np.where(active, values, inactive)
        if bad.any():
            row, column = np.argwhere(bad)[0]
            raw = table[columns[column]].iloc[row]
            choices = (f"{allowed[0]}..{allowed[-1]} step {allowed[1] - allowed[0]}" if len(allowed) > 3
                       else f"{', '.join(map(str, allowed[:-1]))} or {allowed[-1]}")
            raise DataError(f"benchmark table {path}, line {row + 2}: column {columns[column]} holds "
                            f"{'an empty value' if pd.isna(raw) else raw}, expected {what} {choices}; {fix_hint(spec)}")
        return values.astype(np.int64)

    r = genes(["r"], HELP_OFA_RESOLUTIONS, "a resolution")[:, 0]
    d = genes([f"d_{s}" for s in range(STAGES)], DEPTHS, "a depth")
    active = np.arange(NUM_BLOCKS) % MAX_DEPTH < np.repeat(d, MAX_DEPTH, axis=1)
    ks = genes([f"ks_{i}" for i in range(NUM_BLOCKS)], KERNELS, "an active block's kernel", active, CANONICAL_KERNEL)
    e = genes([f"e_{i}" for i in range(NUM_BLOCKS)], EXPANDS, "an active block's expansion", active, CANONICAL_EXPAND)
    return [OFAArch(tuple(ks[i].tolist()), tuple(e[i].tolist()), tuple(d[i].tolist()), int(r[i]))
            for i in range(len(table))], table


@dataclass(frozen=True)
class _Piece:
    """A traced part of an OFA network at one input shape: its layers, output shape, FLOPs (per sample) and params."""

    trace: LayerTrace
    out_shape: tuple[int, ...]
    flops: int
    params: int


class OFAGraphBuilder:
    """Whole-network graphs of OFA MobileNetV3 subnets at batch ``batch``, assembled from traced pieces.

    The stem (first conv and fixed first block), the head and each searchable block (stage, first or later
    in its stage, kernel, expansion) are traced once per input shape they meet, then strung together in
    network order, so a subnet's graph equals ``network_graph(build_network(arch), (batch, 3, arch.r, arch.r))``
    node for node (the tests check this) at a fraction of the cost. Pieces are traced on the CPU at batch 1
    and on PyTorch's ``meta`` device (shapes without computing) at larger batches.
    """

    def __init__(self, batch: int = 1) -> None:
        from ofa.imagenet_classification.networks import MobileNetV3

        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.batch = int(batch)
        self._device = torch.device("cpu" if batch == 1 else "meta")
        with torch.random.fork_rng(devices=[]), self._device:  # weights are irrelevant: leave the generator alone
            # one network per (kernel, expansion): depth 2 holds each stage's first block and a later one (the
            # resolution is no part of the module)
            self._templates = {(k, x): build_network(OFAArch((k,) * NUM_BLOCKS, (x,) * NUM_BLOCKS, (2,) * STAGES,
                                                             HELP_OFA_RESOLUTIONS[0])).eval()
                               for k in KERNELS for x in EXPANDS}
        template = self._templates[KERNELS[0], EXPANDS[0]]
        self._stem = nn.Sequential(template.first_conv, template.blocks[0])
        # the head as MobileNetV3.forward runs it (pooling, flattening view), behind an identity stem
        self._head = MobileNetV3(nn.Identity(), [], template.final_expand_layer, template.feature_mix_layer,
                                 template.classifier).eval()
        self._pieces: dict[tuple, _Piece] = {}

    def _piece(self, key: tuple, module: nn.Module, shape: tuple[int, ...]) -> _Piece:
        """``module`` (the part named ``key``) traced for an input of ``shape``, once per key and shape."""
        if (key, shape) not in self._pieces:
            with torch.no_grad():
                out = tuple(module(torch.zeros(shape, device=self._device)).shape)
            self._pieces[key, shape] = _Piece(trace_layers(module, shape), out, count_flops(module, shape[1:]),
                                              count_params(module))
        return self._pieces[key, shape]

    def graph(self, arch: OFAArch) -> ArchGraph:
        """The whole-network graph of ``arch`` for a ``batch`` x 3 x ``arch.r`` x ``arch.r`` input."""
        shape = (self.batch, 3, arch.r, arch.r)
        parts: list[tuple[tuple, nn.Module]] = [(("stem",), self._stem)]
        for slot in active_blocks(arch):
            stage, position = divmod(slot, MAX_DEPTH)
            kernel, expand = arch.ks[slot], arch.e[slot]
            block = self._templates[kernel, expand].blocks[1 + 2 * stage + (position > 0)]
            parts.append(((stage, position == 0, kernel, expand), block))
        parts.append((("head",), self._head))
        trace = LayerTrace.start(shape)
        out: tuple[int, ...] = (0,)
        flops = params = 0
        for key, module in parts:
            piece = self._piece(key, module, shape)
            out = trace.extend(piece.trace, out)
            shape, flops, params = piece.out_shape, flops + piece.flops, params + piece.params
        return trace.to_graph(batch_size=self.batch, flops=flops * self.batch, params=params)


def ofa_latency_graphs(archs: Sequence[OFAArch], batch: int = 1) -> list[ArchGraph]:
    """Whole-network graphs of ``archs`` at batch ``batch`` (:class:`OFAGraphBuilder`), in their order."""
    start = time.perf_counter()
    builder = OFAGraphBuilder(batch)
    graphs = [builder.graph(arch) for arch in archs]
    log.info("built %d OFA whole-network graphs (batch %d) in %.1f s", len(graphs), batch, time.perf_counter() - start)
    return graphs
