"""NAS-Bench-301 surrogate evaluator: CIFAR-10 validation accuracy of DARTS cells predicted by a model.

``nb301_surrogate`` runs YAHPO-Gym's NAS-Bench-301 surrogate (``nasbench301/yahpo_nb301_model_v2.onnx``,
onnxruntime) the way YAHPO-Gym v2 calls it (see the data README): 34 categorical inputs — the operation
on each of the 14 edges of the normal and the reduction cell, then the input pair of cell nodes 3-5 of
each cell — encoded with ``yahpo_nb301_encoding_v2.json`` (absent edges 0), and the training epoch
(98 = NB301's full budget). Outputs, in order: validation accuracy (a fraction; we report percent),
validation cross-entropy, the training runtime in seconds, and its increase per epoch.

Edge numbering (shared by NB301, NASLib and YAHPO): cell node ``k + 2`` (k = 0..3) owns edges
``start_k + input`` with ``start = 0, 2, 5, 9``, ``input`` ranging over the cell's earlier nodes. The
cost of a query is the surrogate's predicted runtime (seconds of the 98-epoch training it stands for).
Params and FLOPs (millions) come from the space's own cost model of the evaluation network, whose terms are
measured on 27 built networks once and then cached (``load_cost_model``).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nassearch.evaluators.base import Evaluator, Result
from nassearch.data.tables import TABLES, cache_dir, fix_hint, load_json, table_path
from nassearch.errors import DataError
from nassearch.threads import thread_limit
from nassearch.spaces.darts import SEARCH_OPS, DartsSpace
from nassearch.spaces.darts_notation import CELLS, Genotype

log = logging.getLogger(__name__)

_PREFIX = "NetworkSelectorDatasetInfo_COLON_darts_COLON_"
EDGE_START = (0, 2, 5, 9)
NUM_CELL_EDGES = 14
#: Categorical inputs of the surrogate, in the order of its ``x_cat`` columns.
INPUT_NAMES: tuple[str, ...] = (
    *(f"edge_normal_{i}" for i in range(NUM_CELL_EDGES)),
    *(f"edge_reduce_{i}" for i in range(NUM_CELL_EDGES)),
    *(f"inputs_node_normal_{k}" for k in (3, 4, 5)),
    *(f"inputs_node_reduce_{k}" for k in (3, 4, 5)),
)
FULL_BUDGET_EPOCH = 98
OUTPUTS = ("val_accuracy", "val_cross_entropy", "runtime", "runtime_increase")
#: The code the DARTS cost model is measured with: a change to any of these modules invalidates cached models.
COST_MODEL_MODULES = ("nassearch.spaces.darts", "nassearch.spaces.darts_network", "nassearch.spaces.layers", "nassearch.model_cost")


def surrogate_config(genotype: Genotype) -> dict[str, str]:
    """The genotype as NB301 hyperparameters (short names, e.g. ``edge_normal_4`` -> ``sep_conv_3x3``)."""
    config: dict[str, str] = {}
    for cell, pairs in (("normal", genotype.normal), ("reduce", genotype.reduce)):
        if len(pairs) != 2 * len(EDGE_START):
            raise ValueError(f"the NB301 surrogate takes 4 nodes per cell; the {cell} cell has {len(pairs) // 2}")
        for k, start in enumerate(EDGE_START):
            (op_a, in_a), (op_b, in_b) = pairs[2 * k], pairs[2 * k + 1]
            if in_a == in_b:
                raise ValueError(f"the NB301 surrogate needs distinct inputs per node; {cell} node {k + 2} "
                                 f"takes node {in_a} twice")
            config[f"edge_{cell}_{start + in_a}"] = op_a
            config[f"edge_{cell}_{start + in_b}"] = op_b
            if k >= 1:
                config[f"inputs_node_{cell}_{k + 2}"] = "{}_{}".format(*sorted((in_a, in_b)))
    return config


def _input_codes(encoding: dict, name: str) -> dict[str, int]:
    """The encoding's integer code of each choice of input ``name``; DataError unless it codes every choice a
    genotype of the space can make."""
    codes = encoding.get(_PREFIX + name)
    if name.startswith("edge_"):
        choices = set(SEARCH_OPS)
    else:
        node = int(name.rsplit("_", 1)[1])
        choices = {f"{a}_{b}" for b in range(node) for a in range(b)}
    if (not isinstance(codes, dict) or choices - set(codes)
            or not all(type(code) is int and 0 <= code < 2**31 for code in codes.values())):
        spec = TABLES["yahpo_nb301_encoding"]
        raise DataError(f"{spec.path}: {name} does not map each of {', '.join(sorted(choices))} to an integer "
                        f"code; {fix_hint(spec)}")
    return codes


def _surrogate_session(model: Path) -> object:
    """An onnxruntime session of the surrogate file, checked to take ``x_cat`` and ``x_cont``."""
    import onnxruntime  # deferred: only this evaluator needs it
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = thread_limit()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads yield their cores
    try:
        session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    except (ort_errors.Fail, ort_errors.InvalidProtobuf, ort_errors.InvalidGraph, ort_errors.InvalidArgument,
            ort_errors.NoSuchFile, ort_errors.NotImplemented, ort_errors.RuntimeException) as exc:
        reason = str(exc).strip().partition("\n")[0]
        raise DataError(f"onnxruntime {onnxruntime.__version__} cannot load the NB301 surrogate {model} ({reason}); "
                        f"{fix_hint(TABLES['yahpo_nb301_model'])}") from None
    inputs = sorted(node.name for node in session.get_inputs())
    if inputs != ["x_cat", "x_cont"]:
        raise DataError(f"{model} takes inputs {', '.join(inputs)}, not x_cat and x_cont: it is not the YAHPO NB301 "
                        f"v2 surrogate; {fix_hint(TABLES['yahpo_nb301_model'])}")
    return session


def _cost_model_key(space: DartsSpace) -> dict[str, Any]:
    """Everything the cost model's terms depend on: the network's settings, the operations and the code."""
    code = hashlib.sha256()
    for name in COST_MODEL_MODULES:
        code.update(Path(importlib.import_module(name).__file__).read_bytes())
    return {"init_channels": space.init_channels, "layers": space.layers, "num_classes": space.num_classes,
            "input_size": space.input_size, "ops": list(SEARCH_OPS), "code_sha256": code.hexdigest()}


def _cost_model_path(key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "nb301_cost_model" / f"darts-{digest}.json"


def _read_cost_model(path: Path, key: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached (base, terms) of ``DartsSpace.cost_batch``; None when the file is missing, or (with a
    warning) when it is not JSON, was made for other inputs, or holds values of the wrong shape or not finite."""
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text())
        base = np.array(payload["base"], dtype=np.float64)
        terms = np.array(payload["terms"], dtype=np.float64)
        valid = (payload["key"] == key and base.shape == (2,) and terms.shape == (len(CELLS), 2, len(SEARCH_OPS), 2)
                 and np.isfinite(base).all() and np.isfinite(terms).all())
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        log.warning("the cached NB301 cost model %s is damaged or stale; measuring it again", path)
        return None
    return base, terms


def _write_cost_model(path: Path, key: dict[str, Any], base: np.ndarray, terms: np.ndarray) -> None:
    """Save the cost model through a rename (readers see a whole file or none); warn when that fails."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps({"key": key, "base": base.tolist(), "terms": terms.tolist()}))
        os.replace(partial, path)
    except OSError as exc:
        with contextlib.suppress(OSError):  # nothing to remove when the directory could not be made
            partial.unlink()
        log.warning("cannot cache the NB301 cost model in %s (%s); the next process measures it again", path,
                    exc.strerror or exc)


def load_cost_model(space: DartsSpace) -> Path:
    """Give ``space`` the terms of its vectorised cost model from the cache, or measure them (27 networks
    built and run: seconds, minutes on a busy machine) and cache them; return the cache file, which is named
    by a hash of the inputs (``_cost_model_key``)."""
    key = _cost_model_key(space)
    path = _cost_model_path(key)
    cached = _read_cost_model(path, key)
    if cached is None:
        _write_cost_model(path, key, *space._cost_terms)  # measured now: a cached_property of the space
    else:
        space._cost_terms = cached  # what cost_batch reads; the cached_property then never measures
    return path


class NasBench301Surrogate(Evaluator):
    """DARTS cells scored by the NB301 surrogate (YAHPO v2 ONNX model); metrics val_acc, runtime, params, flops."""

    batched = True
    name = "nb301_surrogate"

    def __init__(self, space: DartsSpace, data_dir: str | None = None, epoch: int = FULL_BUDGET_EPOCH) -> None:
        super().__init__(space)
        if not isinstance(space, DartsSpace):
            raise ValueError(f"nb301_surrogate answers only for space darts, not {space.name!r}")
        if not 1 <= epoch <= FULL_BUDGET_EPOCH:
            raise ValueError(f"epoch must lie in 1..{FULL_BUDGET_EPOCH} (the surrogate's budget), got {epoch}")
        encoding = load_json("yahpo_nb301_encoding", data_dir)
        self._codes = [_input_codes(encoding, name) for name in INPUT_NAMES]
        self._session = _surrogate_session(table_path("yahpo_nb301_model", data_dir))
        self.epoch = epoch
        load_cost_model(space)

    @property
    def metrics(self) -> tuple[str, ...]:
        return ("val_acc", "val_cross_entropy", "runtime_s", "params", "flops")

    def encode(self, genotypes: Sequence[Genotype]) -> np.ndarray:
        """int32 array (n, 34): the surrogate's categorical input for each genotype."""
        rows = np.zeros((len(genotypes), len(INPUT_NAMES)), dtype=np.int32)
        for i, genotype in enumerate(genotypes):
            config = surrogate_config(genotype)
            for j, (name, codes) in enumerate(zip(INPUT_NAMES, self._codes)):
                if name in config:
                    rows[i, j] = codes[config[name]]
        return rows

    def predict(self, genotypes: Sequence[Genotype]) -> np.ndarray:
        """Raw surrogate outputs, float array (n, 4) in the order of ``OUTPUTS``."""
        x_cat = self.encode(genotypes)
        x_cont = np.full((len(genotypes), 1), self.epoch, dtype=np.float32)
        return self._session.run(None, {"x_cat": x_cat, "x_cont": x_cont})[0]

    def evaluate(self, arch: Genotype) -> Result:
        return self.evaluate_batch([arch])[0]

    def evaluate_batch(self, archs: Sequence[Genotype]) -> list[Result]:
        start = time.perf_counter()
        params, flops = self.space.cost_batch(archs)  # validates every arch first
        outputs = self.predict(archs)
        wall = (time.perf_counter() - start) / max(len(archs), 1)
        return [Result({"val_acc": 100.0 * float(out[0]), "val_cross_entropy": float(out[1]),
                        "runtime_s": float(out[2]), "params": float(p), "flops": float(f)}, float(out[2]), wall)
                for out, p, f in zip(outputs, params, flops)]
