"""Import the official NAS-Bench-101 TFRecord files into a CSV table, without TensorFlow.

Reads ``nasbench_only108.tfrecord`` or ``nasbench_full.tfrecord`` (google-research/nasbench) record
by record: TFRecord framing with every CRC32C checked, a JSON row per record and a base64
``ModelMetrics`` protobuf inside it, decoded with message classes built here from the official
``model_metrics.proto`` schema. Only per-cell aggregates stay in memory; the output has one row
per cell with the final (``evaluation_data[2]``) metrics of every repeat and their means.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import struct
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
import pandas as pd
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from nassearch.data.tables import table_writer
from nassearch.errors import DataError

EPOCHS = (4, 12, 36, 108)
REPEATS = 3
MAX_VERTICES = 7
INTERIOR_OPS = ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")
DOWNLOAD = "https://storage.googleapis.com/nasbench/nasbench_only108.tfrecord"
CORRUPT = f"the file is corrupt or not a NAS-Bench-101 file; download it again ({DOWNLOAD})"

_HEADER = struct.Struct("<QI")
_CRC = struct.Struct("<I")
_MD5_HEX = re.compile(r"[0-9a-f]{32}")
_CHUNK_ROWS = 50_000

COLUMNS = (("hash", "num_vertices", "adjacency", "ops")
           + tuple(f"val_acc_epoch{e}" for e in EPOCHS) + ("train_time_s", "trainable_params")
           + tuple(column for e in EPOCHS for column in (
               f"test_acc_epoch{e}", f"train_time_s_epoch{e}",
               *(f"{metric}_epoch{e}_run{k}" for k in range(REPEATS)
                 for metric in ("val_acc", "test_acc", "train_time_s")))))


# --------------------------------------------------------------------------------------- TFRecord framing


def masked_crc32c(data: bytes) -> int:
    """The TFRecord checksum of ``data``: CRC32C rotated right by 15 bits plus ``0xa282ead8``, mod 2**32."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def write_tfrecord(path: str | Path, records: Iterable[bytes]) -> None:
    """Write ``records`` to ``path`` in TFRecord framing (length, length CRC, data, data CRC)."""
    with open(path, "wb") as handle:
        for data in records:
            length = struct.pack("<Q", len(data))
            handle.write(length + _CRC.pack(masked_crc32c(length)) + data + _CRC.pack(masked_crc32c(data)))


def read_tfrecord(path: str | Path) -> Iterator[bytes]:
    """The data of each record of a TFRecord file, in order; a bad CRC or a truncation raises DataError."""
    for _index, _offset, data in _framed_records(Path(path)):
        yield data


def _framed_records(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """``(record number, byte offset, data)`` for each record, every CRC and length checked."""
    try:
        size = path.stat().st_size
        handle = open(path, "rb")
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror}): pass the path of nasbench_only108.tfrecord "
                        f"or nasbench_full.tfrecord (download: {DOWNLOAD})") from None
    with handle:
        index = offset = 0
        while header := handle.read(_HEADER.size):
            where = f"{path}: record {index} (byte {offset})"
            if len(header) < _HEADER.size:
                raise DataError(f"{where} is truncated: its header has {len(header)} of {_HEADER.size} bytes; "
                                f"{CORRUPT}")
            length, length_crc = _HEADER.unpack(header)
            if masked_crc32c(header[:8]) != length_crc:
                raise DataError(f"{where} has a bad length CRC: {CORRUPT}")
            remaining = size - offset - _HEADER.size
            if length + _CRC.size > remaining:
                raise DataError(f"{where} is truncated: it needs {length + _CRC.size} more bytes but only "
                                f"{remaining} remain; {CORRUPT}")
            data = handle.read(length)
            (data_crc,) = _CRC.unpack(handle.read(_CRC.size))
            if masked_crc32c(data) != data_crc:
                raise DataError(f"{where} has a bad data CRC: {CORRUPT}")
            yield index, offset, data
            index += 1
            offset += _HEADER.size + length + _CRC.size


# --------------------------------------------------------------------------------------- ModelMetrics protobuf


def _build_model_metrics() -> type:
    """The ``nasbench.ModelMetrics`` message class, built from the official proto2 schema."""
    fields = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="nasbench/lib/model_metrics.proto", package="nasbench",
                                               syntax="proto2")
    evaluation = proto.message_type.add(name="EvaluationData")
    for number, name in enumerate(("current_epoch", "training_time", "train_accuracy", "validation_accuracy",
                                   "test_accuracy"), start=1):
        evaluation.field.add(name=name, number=number, type=fields.TYPE_DOUBLE, label=fields.LABEL_OPTIONAL)
    evaluation.field.add(name="checkpoint_path", number=6, type=fields.TYPE_STRING, label=fields.LABEL_OPTIONAL)
    metrics = proto.message_type.add(name="ModelMetrics")
    metrics.field.add(name="evaluation_data", number=1, type=fields.TYPE_MESSAGE, label=fields.LABEL_REPEATED,
                      type_name=".nasbench.EvaluationData")
    metrics.field.add(name="trainable_parameters", number=2, type=fields.TYPE_INT32, label=fields.LABEL_OPTIONAL)
    metrics.field.add(name="total_time", number=3, type=fields.TYPE_DOUBLE, label=fields.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("nasbench.ModelMetrics"))


ModelMetrics = _build_model_metrics()


# --------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class _Record:
    """One decoded NAS-Bench-101 record: a cell, an epoch budget and the final metrics of one repeat."""

    hash: str
    epochs: int
    num_vertices: int
    adjacency: str  # 49 chars, the VxV matrix in the top-left of a zero 7x7
    ops: str
    trainable_params: int
    val_acc: float
    test_acc: float
    train_time_s: float


def _parse_record(data: bytes, where: str) -> _Record:
    """Decode one record's JSON row and metrics; ``where`` prefixes the DataError of a malformed one."""
    try:
        module_hash, epochs, raw_adjacency, raw_operations, raw_metrics = json.loads(data)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{where} is not a JSON row [hash, epochs, adjacency, ops, metrics] ({exc}): "
                        f"{CORRUPT}") from None
    if not isinstance(module_hash, str) or not _MD5_HEX.fullmatch(module_hash):
        raise DataError(f"{where} has hash {module_hash!r}, not 32 hex digits: {CORRUPT}")
    if epochs not in EPOCHS:
        raise DataError(f"{where} has epoch budget {epochs!r}, not one of {', '.join(map(str, EPOCHS))}: {CORRUPT}")
    num_vertices = _check_cell(raw_adjacency, raw_operations, where)
    metrics = _decode_metrics(raw_metrics, where)
    final = metrics.evaluation_data[2]
    for name, value, high in (("validation_accuracy", final.validation_accuracy, 1.0),
                              ("test_accuracy", final.test_accuracy, 1.0),
                              ("training_time", final.training_time, math.inf)):
        if not (math.isfinite(value) and 0 <= value <= high):
            raise DataError(f"{where} has final {name} {value!r}, not a finite number in [0, {high:g}]: {CORRUPT}")
    if metrics.trainable_parameters <= 0:
        raise DataError(f"{where} has trainable_parameters {metrics.trainable_parameters}, not a positive count: "
                        f"{CORRUPT}")
    return _Record(module_hash, epochs, num_vertices, _pad_adjacency(raw_adjacency, num_vertices), raw_operations,
                  metrics.trainable_parameters, final.validation_accuracy, final.test_accuracy, final.training_time)


def _check_cell(raw_adjacency: object, raw_operations: object, where: str) -> int:
    """The number of vertices of a well-formed pruned cell; DataError for anything else."""
    num_vertices = math.isqrt(len(raw_adjacency)) if isinstance(raw_adjacency, str) else 0
    if (not 2 <= num_vertices <= MAX_VERTICES or num_vertices ** 2 != len(raw_adjacency)
            or set(raw_adjacency) - {"0", "1"} or not _strictly_upper(raw_adjacency, num_vertices)):
        raise DataError(f"{where} has adjacency {raw_adjacency!r}, not a strictly upper triangular 0/1 string of "
                        f"V*V chars with 2 <= V <= {MAX_VERTICES}: {CORRUPT}")
    ops = raw_operations.split(",") if isinstance(raw_operations, str) else []
    if (len(ops) != num_vertices or ops[0] != "input" or ops[-1] != "output"
            or any(op not in INTERIOR_OPS for op in ops[1:-1])):
        raise DataError(f"{where} has ops {raw_operations!r}, not 'input,...,output' with {num_vertices - 2} "
                        f"interior op(s) from {', '.join(INTERIOR_OPS)}: {CORRUPT}")
    return num_vertices


def _strictly_upper(raw_adjacency: str, num_vertices: int) -> bool:
    """Whether a row-major VxV 0/1 string has no edge on or below the diagonal (a DAG in topological order)."""
    return all(raw_adjacency[i * num_vertices + j] == "0" for i in range(num_vertices) for j in range(i + 1))


def _decode_metrics(raw_metrics: object, where: str) -> Message:
    """The ``ModelMetrics`` message of a record, with at least the three official evaluations."""
    try:
        metrics = ModelMetrics.FromString(base64.b64decode(raw_metrics, validate=True))
    except (binascii.Error, TypeError, ValueError, DecodeError) as exc:
        raise DataError(f"{where} has metrics that are not a base64 ModelMetrics protobuf ({exc}): "
                        f"{CORRUPT}") from None
    if len(metrics.evaluation_data) < 3:
        raise DataError(f"{where} has {len(metrics.evaluation_data)} evaluation_data entries, expected 3 "
                        f"(initial, halfway, final): {CORRUPT}")
    return metrics


def _pad_adjacency(raw_adjacency: str, num_vertices: int) -> str:
    """A row-major VxV 0/1 string as a row-major 7x7 one: the matrix top-left, zeros elsewhere."""
    pad = MAX_VERTICES - num_vertices
    rows = [raw_adjacency[i * num_vertices:(i + 1) * num_vertices] + "0" * pad for i in range(num_vertices)]
    return "".join(rows) + "0" * (MAX_VERTICES * pad)


# --------------------------------------------------------------------------------------- per-cell aggregates


class _Cell:
    """What one cell keeps in memory: its spec and each repeat's (val, test, time) per epoch budget."""

    __slots__ = ("spec", "runs", "counts")

    def __init__(self, record: _Record) -> None:
        self.spec = (record.num_vertices, record.adjacency, record.ops, record.trainable_params)
        self.runs = array("d", [math.nan] * (len(EPOCHS) * REPEATS * 3))  # [budget][repeat][metric]
        self.counts = array("b", [0] * len(EPOCHS))

    def add(self, record: _Record, where: str) -> None:
        """Store one repeat of ``record``, checked against the cell's earlier records."""
        spec = (record.num_vertices, record.adjacency, record.ops, record.trainable_params)
        for name, earlier, value in zip(("num_vertices", "adjacency", "ops", "trainable_parameters"), self.spec, spec):
            if value != earlier:
                raise DataError(f"{where} gives cell {record.hash} {name} {value!r} but an earlier record gave "
                                f"{earlier!r}: {CORRUPT}")
        budget = EPOCHS.index(record.epochs)
        repeat = self.counts[budget]
        if repeat == REPEATS:
            raise DataError(f"{where} is a repeat beyond the {REPEATS} of cell {record.hash} at {record.epochs} "
                            f"epochs: {CORRUPT}")
        start = (budget * REPEATS + repeat) * 3
        self.runs[start:start + 3] = array("d", (record.val_acc, record.test_acc, record.train_time_s))
        self.counts[budget] = repeat + 1

    def row(self, module_hash: str) -> list:
        """The cell's CSV row, in :data:`COLUMNS` order."""
        num_vertices, adjacency, ops, params = self.spec
        budgets = [self._budget(budget) for budget in range(len(EPOCHS))]
        mean_time_108 = budgets[EPOCHS.index(108)][0][2]
        val_means = [means[0] for means, _runs in budgets]
        row = [module_hash, num_vertices, adjacency, ops, *val_means, mean_time_108, params]
        for (_val, test, time), runs in budgets:
            row += [test, time, *runs]
        return row

    def _budget(self, budget: int) -> tuple[list[float], list[float]]:
        """Mean (val, test, time) over the repeats seen at one epoch budget, and its 9 per-run values."""
        start = budget * REPEATS * 3
        runs = self.runs[start:start + REPEATS * 3].tolist()
        seen = runs[:self.counts[budget] * 3]
        return [_mean(seen[metric::3]) for metric in range(3)], runs


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


# --------------------------------------------------------------------------------------- import


@dataclass(frozen=True)
class ImportReport:
    """What :func:`import_nasbench101` read and wrote."""

    records: int
    cells: int
    epochs: tuple[int, ...]
    out_path: Path


def import_nasbench101(tfrecord_path: str | Path, out_path: str | Path) -> ImportReport:
    """Convert an official NAS-Bench-101 TFRecord file to a CSV (gzip if ``out_path`` ends in .gz), one row per cell.

    Streams the file; malformed input raises DataError naming the record. Columns: :data:`COLUMNS`.
    """
    tfrecord_path, out_path = Path(tfrecord_path), Path(out_path)
    cells: dict[str, _Cell] = {}
    records = 0
    for index, offset, data in _framed_records(tfrecord_path):
        where = f"{tfrecord_path}: record {index} (byte {offset})"
        record = _parse_record(data, where)
        if record.hash not in cells:
            cells[record.hash] = _Cell(record)
        cells[record.hash].add(record, where)
        records += 1
    if not cells:
        raise DataError(f"{tfrecord_path} holds no records: {CORRUPT}")
    epochs = tuple(e for b, e in enumerate(EPOCHS) if any(cell.counts[b] for cell in cells.values()))
    held = [b for b, e in enumerate(EPOCHS) if e in epochs]
    for module_hash, cell in cells.items():
        lacking = [EPOCHS[b] for b in held if not cell.counts[b]]
        if lacking:
            raise DataError(f"{tfrecord_path} has no record of cell {module_hash} at {lacking[0]} epochs, though "
                            f"it has other cells at that budget: the file is incomplete; {CORRUPT}")
    _write_csv(cells, out_path)
    return ImportReport(records, len(cells), epochs, out_path)


def _write_csv(cells: dict[str, _Cell], out_path: Path) -> None:
    """Write the cells' rows sorted by hash, a chunk at a time, through :func:`table_writer`."""
    hashes = sorted(cells)
    with table_writer(out_path) as handle:
        for start in range(0, len(hashes), _CHUNK_ROWS):
            rows = [cells[h].row(h) for h in hashes[start:start + _CHUNK_ROWS]]
            pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(handle, index=False, header=start == 0)
