"""Import the official NAS-Bench-201 / NATS-Bench topology (tss) release into one CSV table.

Inputs (the user names the file; nothing else is read):

- NAS-Bench-201 v1.0 / v1.1 (``NAS-Bench-201-v1_*.pth``): a torch file of plain containers, read by
  ``torch.load`` with the data-only unpickler below as its pickle module (what ``weights_only=True`` allows, less,
  and at the C unpickler's speed).
- NATS-Bench tss (``NATS-tss-v1_0-3ffb9-simple.pickle.pbz2``, the ``NATS-tss-*-simple`` / ``-full`` directory of
  per-architecture ``NNNNNN.pickle.pbz2`` files, or that directory as a ``.tar``): bz2 Python pickles, read by an
  unpickler that refuses every class but ``OrderedDict`` and numpy scalars, so a file cannot run code.

Each architecture's results are rebuilt with the official packages' own ``ArchResults`` (``nas_201_api`` or
``nats_bench``) and read with their ``get_metrics`` / ``get_compute_costs``, so every number is what the
official API answers. The table has one row per architecture in official index order (:func:`columns`):
for each schedule (200 and 12 epochs) and dataset, the final-epoch accuracies and losses averaged over the
official seeds and per seed, the training time, and params / FLOPs / latency. "Validation" and "test" follow the
NB201 paper (and NAR / NAR-Former): cifar10 validation is ``cifar10-valid`` ``x-valid`` (trained on the 25k train
split), cifar10 test is ``cifar10`` ``ori-test`` (trained on train + valid); cifar100 and ImageNet16-120 use
``x-valid`` and ``x-test``, the two halves of their evaluation set.
"""

from __future__ import annotations

import bz2
import io
import math
import pickle
import tarfile
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nassearch.data.tables import table_writer
from nassearch.errors import DataError, NassearchError
from nassearch.spaces.nasbench201 import NUM_EDGES, OPS, parse_arch

N_ARCHS = len(OPS) ** NUM_EDGES
#: official dataset name -> column prefix
DATASETS = {"cifar10-valid": "cifar10_valid", "cifar10": "cifar10", "cifar100": "cifar100",
            "ImageNet16-120": "imagenet16"}
#: official evaluation set of each dataset that is "validation" (val) and "test"
EVAL_SETS = {"cifar10-valid": {"val": "x-valid", "test": "ori-test"}, "cifar10": {"test": "ori-test"},
             "cifar100": {"val": "x-valid", "test": "x-test"}, "ImageNet16-120": {"val": "x-valid", "test": "x-test"}}
SCHEDULES = (200, 12)
#: the official seeds; a seed column is empty where that seed was not run
SEEDS = (777, 888, 999)
NB201_NAMES = "NAS-Bench-201-v1_0-e61699.pth or NAS-Bench-201-v1_1-096897.pth"
NATS_NAMES = "NATS-tss-v1_0-3ffb9-simple.pickle.pbz2, a NATS-tss-v1_0-3ffb9-{simple,full} directory or its .tar"
INSTALL = 'pip install -e ".[nb201]"  (the packages nas-bench-201 and nats_bench)'
_PICKLE_EXT = ".pickle.pbz2"


def metric_names(dataset: str) -> tuple[str, ...]:
    """The per-dataset metrics of the table (without schedule and seed suffixes)."""
    sets = EVAL_SETS[dataset]
    return ("train_acc", "train_loss", *(f"{role}_{kind}" for role in ("val", "test") if role in sets
                                         for kind in ("acc", "loss")))


def columns() -> list[str]:
    """Every column of the imported table, in order."""
    names = ["index", "arch_str"]
    for epochs in SCHEDULES:
        for dataset, prefix in DATASETS.items():
            for metric in metric_names(dataset):
                names.append(f"{prefix}_{metric}_e{epochs}")
                names.extend(f"{prefix}_{metric}_e{epochs}_seed{seed}" for seed in SEEDS)
            names += [f"{prefix}_train_time_s_e{epochs}", f"{prefix}_seeds_e{epochs}"]
    for prefix in DATASETS.values():
        names += [f"{prefix}_params_m", f"{prefix}_flops_m", f"{prefix}_latency_ms"]
    return names


@dataclass(frozen=True)
class ImportReport:
    """What an import wrote: the release's format, the architectures, the schedules present, the output."""

    source: str
    archs: int
    schedules: tuple[int, ...]
    out_path: Path


class _DataOnlyUnpickler(pickle.Unpickler):
    """Rebuilds containers, numbers, strings, numpy scalars and (in torch files) tensors: any other class or
    function named in the pickle is refused, so loading cannot run code."""

    _ALLOWED = {("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"),
                ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("numpy", "dtype"),
                ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor"),
                ("torch._utils", "_rebuild_parameter")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED or (module.startswith("numpy") and name.endswith("DType")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it holds a {module}.{name} object, which a results file does not")


def _unpickle_bz2(data: bytes, where: str) -> Any:
    try:
        return _DataOnlyUnpickler(io.BytesIO(bz2.decompress(data))).load()
    except (OSError, EOFError, ValueError, pickle.UnpicklingError, AttributeError, TypeError, IndexError) as exc:
        raise DataError(f"{where} cannot be read ({exc}): it is truncated, corrupt or not a NATS-Bench file; "
                        f"download it again (expected {NATS_NAMES})") from None


def _data_only_pickle_module() -> types.ModuleType:
    """A ``pickle_module`` for ``torch.load`` whose unpickler is :class:`_DataOnlyUnpickler` (torch adds its
    storage types; the tensor rebuild functions are allowed): it allows no more than ``weights_only=True`` and is
    about 10x faster, because it is the C unpickler, not torch's pure-Python one (2.7 s vs 31 s on a synthetic
    release of the real architecture count)."""
    module = types.ModuleType("data_only_pickle")
    module.Unpickler = _DataOnlyUnpickler
    module.load = lambda file, **kwargs: _DataOnlyUnpickler(file, **kwargs).load()
    return module


def _load_pth(path: Path) -> dict:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_data_only_pickle_module())
    except Exception as exc:  # torch raises many types for bad files; every one is the user's file, not our bug
        reason = str(exc).strip().partition("\n")[0][:300]
        raise DataError(f"{path} cannot be read as a NAS-Bench-201 file ({type(exc).__name__}: {reason}); it is "
                        f"truncated, corrupt or another benchmark's file: download {NB201_NAMES} again") from None


def _package(source: str):
    """The official package's ArchResults class for a release format."""
    module, extra = ("nas_201_api", "nas-bench-201") if source == "nasbench201" else ("nats_bench", "nats_bench")
    try:
        imported = __import__(module)
    except ImportError:
        raise NassearchError(f"reading the official {source} release needs the {extra} package: {INSTALL}") from None
    return imported.ArchResults


def _arch_states(path: Path) -> tuple[str, list[str], Iterator[tuple[int, dict[int, dict]]]]:
    """(format, meta arch strings, iterator of (index, {epochs: ArchResults state dict})) of a release."""
    name = path.name
    if path.is_dir() or name.endswith(".tar"):
        return _nats_archive(path)
    if name.endswith(_PICKLE_EXT):
        payload = _unpickle_bz2(_read_bytes(path), str(path))
        return "nats_tss", *_from_payload(payload, str(path), lambda hp: int(hp))
    if name.endswith(".pth"):
        payload = _load_pth(path)
        hp_epochs = {"full": 200, "less": 12}
        return "nasbench201", *_from_payload(payload, str(path), lambda hp: hp_epochs.get(hp, -1))
    raise DataError(f"{path} is not a NAS-Bench-201 / NATS-Bench release: expected {NB201_NAMES}, or {NATS_NAMES}")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror or exc}): check the path") from None


def _from_payload(payload: Any, where: str, epochs_of: Callable[[Any], int]):
    keys = ("meta_archs", "arch2infos", "evaluated_indexes")
    if not isinstance(payload, dict) or any(k not in payload for k in keys):
        found = ", ".join(map(str, list(payload)[:6])) if isinstance(payload, dict) else type(payload).__name__
        raise DataError(f"{where} is not a NAS-Bench-201 / NATS-Bench results file: it lacks "
                        f"{', '.join(keys)} (found {found}); expected {NB201_NAMES}, or {NATS_NAMES}")
    infos = payload["arch2infos"]

    def states() -> Iterator[tuple[int, dict[int, dict]]]:
        for index in sorted(infos):
            yield int(index), {epochs_of(hp): state for hp, state in infos[index].items()}

    return list(payload["meta_archs"]), states()


def _nats_archive(path: Path):
    """A NATS tss directory or .tar: ``meta.pickle.pbz2`` and one ``NNNNNN.pickle.pbz2`` per architecture."""
    if path.is_dir():
        def read(member: str) -> bytes | None:
            file = path / member
            return _read_bytes(file) if file.is_file() else None
    else:
        try:
            archive = tarfile.open(path)
            by_name = {Path(m.name).name: m for m in archive.getmembers() if m.isfile()}
        except (OSError, tarfile.TarError, EOFError) as exc:
            raise DataError(f"{path} cannot be read as a .tar archive ({exc}): download it again "
                            f"(expected {NATS_NAMES})") from None

        def read(member: str) -> bytes | None:
            info = by_name.get(member)
            try:
                return None if info is None else archive.extractfile(info).read()
            except (OSError, tarfile.TarError, EOFError) as exc:
                raise DataError(f"{path}: member {member} cannot be read ({exc}): the archive is truncated or "
                                "corrupt; download it again") from None

    meta_bytes = read("meta" + _PICKLE_EXT)
    if meta_bytes is None:
        raise DataError(f"{path} holds no meta{_PICKLE_EXT}: it is not a NATS-Bench tss release (expected "
                        f"{NATS_NAMES})")
    meta = _unpickle_bz2(meta_bytes, f"{path}/meta{_PICKLE_EXT}")
    if not isinstance(meta, dict) or "meta_archs" not in meta:
        raise DataError(f"{path}/meta{_PICKLE_EXT} lacks meta_archs: it is not a NATS-Bench tss release")
    meta_archs = list(meta["meta_archs"])

    def states() -> Iterator[tuple[int, dict[int, dict]]]:
        for index in range(len(meta_archs)):
            data = read(f"{index:06d}{_PICKLE_EXT}")
            if data is None:
                raise DataError(f"{path} lacks {index:06d}{_PICKLE_EXT}: the release is incomplete; download it "
                                "again")
            xdata = _unpickle_bz2(data, f"{path}/{index:06d}{_PICKLE_EXT}")
            if not isinstance(xdata, dict):
                raise DataError(f"{path}/{index:06d}{_PICKLE_EXT} is not a results file; download the release again")
            yield index, {int(hp): state for hp, state in xdata.items()}

    return "nats_tss", meta_archs, states()


def _final(value: Any) -> float:
    return math.nan if value is None else float(value)


def _row(index: int, arch_str: str, results: dict[int, Any]) -> dict[str, Any]:
    """One table row from the official ArchResults of each schedule."""
    row: dict[str, Any] = {"index": index, "arch_str": arch_str}
    for epochs in SCHEDULES:
        result = results.get(epochs)
        for dataset, prefix in DATASETS.items():
            present = result is not None and dataset in result.get_dataset_names()
            seeds = result.get_dataset_seeds(dataset) if present else []
            for role, setname in (("train", "train"), *EVAL_SETS[dataset].items()):
                per_seed = {seed: result.get_metrics(dataset, setname, is_random=seed) for seed in seeds}
                for kind, key in (("acc", "accuracy"), ("loss", "loss")):
                    values = [_final(per_seed[seed][key]) for seed in seeds]
                    # the mean as get_metrics(is_random=False) takes it (np.mean sums up to 8 values in order)
                    row[f"{prefix}_{role}_{kind}_e{epochs}"] = sum(values) / len(values) if values else math.nan
                    for seed in SEEDS:
                        row[f"{prefix}_{role}_{kind}_e{epochs}_seed{seed}"] = (
                            values[seeds.index(seed)] if seed in seeds else math.nan)
            costs = result.get_compute_costs(dataset) if present else {}
            row[f"{prefix}_train_time_s_e{epochs}"] = _final(costs.get("T-train@total"))
            row[f"{prefix}_seeds_e{epochs}"] = ";".join(map(str, seeds))
            if epochs == SCHEDULES[0]:
                latency = costs.get("latency")
                row[f"{prefix}_params_m"] = _final(costs.get("params"))
                row[f"{prefix}_flops_m"] = _final(costs.get("flops"))
                row[f"{prefix}_latency_ms"] = math.nan if latency is None else 1000.0 * float(latency)
    return row


def import_nasbench201(path: str | Path, out_path: str | Path,
                       progress: Callable[[int, int], None] | None = None) -> ImportReport:
    """Convert an official NB201 / NATS tss release to a CSV (gzip if ``out_path`` ends in .gz).

    Validates the result (15,625 architectures, each with results, every arch string valid in the space, the
    200-epoch schedule present) before the table replaces ``out_path``; a bad file raises DataError and leaves
    no table behind. ``progress(done, total)`` is called every 500 architectures.
    """
    path, out_path = Path(path), Path(out_path)
    if not path.exists():
        raise DataError(f"{path} does not exist: give the path of {NB201_NAMES}, or {NATS_NAMES}")
    source, meta_archs, states = _arch_states(path)
    arch_results = _package("nasbench201" if source == "nasbench201" else "nats")
    if len(meta_archs) != N_ARCHS:
        raise DataError(f"{path} lists {len(meta_archs)} architectures, not NAS-Bench-201's {N_ARCHS}: it is "
                        "another benchmark's file (NATS-Bench sss, NAS-Bench-101, ...) or damaged")
    for index, arch_str in enumerate(meta_archs):
        try:
            parse_arch(arch_str)
        except (NassearchError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: architecture {index} ({str(arch_str)[:80]!r}) is not a NAS-Bench-201 cell "
                            f"({exc}); the file is another benchmark's or damaged") from None
    rows, seen = [], set()
    for index, hp_states in states:
        where = f"{path}: architecture {index}"
        if not 0 <= index < N_ARCHS or index in seen:
            raise DataError(f"{where}: index out of range or repeated; the file is damaged")
        seen.add(index)
        try:
            results = {epochs: arch_results.create_from_state_dict(state) for epochs, state in hp_states.items()
                       if epochs in SCHEDULES}
            if SCHEDULES[0] not in results:
                raise DataError(f"{where} has no 200-epoch results (schedules: "
                                f"{', '.join(map(str, hp_states)) or 'none'}); the file is another benchmark's "
                                "or damaged")
            if results[SCHEDULES[0]].arch_str != meta_archs[index]:
                raise DataError(f"{where}: its results are for {results[SCHEDULES[0]].arch_str!r}, the file's list "
                                f"says {meta_archs[index]!r}; the file is damaged")
            rows.append(_row(index, meta_archs[index], results))
        except DataError:
            raise
        except Exception as exc:  # the official classes raise assertion, key and type errors on damaged data
            raise DataError(f"{where}: its results cannot be read by the official API ({type(exc).__name__}: "
                            f"{str(exc)[:200]}); the file is damaged: download it again") from None
        if progress is not None and (len(rows) % 500 == 0 or len(rows) == N_ARCHS):
            progress(len(rows), N_ARCHS)
    if len(rows) != N_ARCHS:
        raise DataError(f"{path} has results for {len(rows)} of the {N_ARCHS} architectures; the file is incomplete "
                        "or a partial release: download the full release")
    frame = pd.DataFrame(rows, columns=columns()).sort_values("index")
    schedules = tuple(e for e in SCHEDULES if frame[f"cifar10_valid_val_acc_e{e}"].notna().any())
    with table_writer(out_path) as handle:
        frame.to_csv(handle, index=False)
    return ImportReport(source, len(frame), schedules, out_path)


def timed_progress(stream) -> Callable[[int, int], None]:
    """A progress callback printing ``done/total architectures, seconds`` to ``stream``."""
    start = time.perf_counter()

    def report(done: int, total: int) -> None:
        print(f"  {done:,}/{total:,} architectures ({time.perf_counter() - start:.0f} s)", file=stream, flush=True)

    return report


#: shared 200-epoch subset dataset -> the imported column holding the same quantity (NASLib's val accuracy)
_SUBSET_COLUMNS = {"cifar10": "cifar10_valid_val_acc_e200", "cifar100": "cifar100_val_acc_e200",
                   "ImageNet16-120": "imagenet16_val_acc_e200"}


@dataclass(frozen=True)
class SubsetComparison:
    """How an imported table agrees with the shared 200-epoch subset on the architectures both hold."""

    archs: int
    values: int
    max_abs_diff: float


def compare_with_subset(imported: pd.DataFrame, subset: pd.DataFrame) -> SubsetComparison:
    """Compare the imported 200-epoch validation accuracies with ``nb201_200epoch_subset`` (NASLib's copy of the
    same official numbers) where they overlap, matched by arch string and dataset."""
    diffs, archs = [], set()
    for dataset, column in _SUBSET_COLUMNS.items():
        rows = subset[subset["dataset"] == dataset]
        merged = rows.merge(imported[["arch_str", column]], on="arch_str")
        diffs.append((merged["val_accuracy"] - merged[column]).abs().to_numpy(float))
        archs.update(merged["arch_str"])
    values = np.concatenate(diffs)
    return SubsetComparison(len(archs), len(values), float(values.max()) if len(values) else math.nan)


#: NAR (seed 004) Table 2, "Optimal": the best 200-epoch accuracy of each column over the official release
PUBLISHED_OPTIMA = {"cifar10_valid_val_acc_e200": 91.61, "cifar10_test_acc_e200": 94.37,
                    "cifar100_val_acc_e200": 73.49, "cifar100_test_acc_e200": 73.51,
                    "imagenet16_val_acc_e200": 46.73, "imagenet16_test_acc_e200": 47.31}


def column_optima(frame: pd.DataFrame) -> dict[str, float]:
    """The best value of each column of :data:`PUBLISHED_OPTIMA` in an imported table."""
    return {column: float(frame[column].max()) for column in PUBLISHED_OPTIMA}
