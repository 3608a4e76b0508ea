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
Params and FLOPs (millions) come from the space's own cost model of the evaluation network.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from evaluators.base import Evaluator, Result
from nassearch.data import load_json, table_path
from nassearch.errors import DataError
from spaces.darts import DartsSpace, Genotype

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


class NasBench301Surrogate(Evaluator):
    """DARTS cells scored by the NB301 surrogate (YAHPO v2 ONNX model); metrics val_acc, runtime, params, flops."""

    name = "nb301_surrogate"

    def __init__(self, space: DartsSpace, data_dir: str | None = None, epoch: int = FULL_BUDGET_EPOCH) -> None:
        super().__init__(space)
        if not isinstance(space, DartsSpace):
            raise ValueError(f"nb301_surrogate answers only for space darts, not {space.name!r}")
        if not 1 <= epoch <= FULL_BUDGET_EPOCH:
            raise ValueError(f"epoch must lie in 1..{FULL_BUDGET_EPOCH} (the surrogate's budget), got {epoch}")
        import onnxruntime  # deferred: only this evaluator needs it

        encoding = load_json("yahpo_nb301_encoding", data_dir)
        try:
            self._codes = [encoding[_PREFIX + name] for name in INPUT_NAMES]
        except KeyError as exc:
            raise DataError(f"nasbench301/yahpo_nb301_encoding_v2.json lacks {exc}; replace the file") from None
        model = table_path("yahpo_nb301_model", data_dir)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.epoch = epoch

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
