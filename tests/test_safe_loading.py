"""Every file format the tool reads, damaged or crafted: one clear line naming the file, never code run.

CIFAR-10 batches (restricted unpickler), retrain checkpoints (``weights_only``), retrain configs and search run
directories, benchmark tables (values, truncation), the NB101 import, and the NB301 surrogate's files. Crafted
pickles carry a canary: the same bytes, given to an ordinary unpickler, create a file; loading them must not.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from numpy.core.multiarray import _reconstruct

from nassearch.training.datasets import BATCH_FOLDER, load_cifar10, write_synthetic_cifar10
from nassearch.training.retrain import RetrainConfig, resolve_target, retrain
from nassearch.evaluators.tabular import NasBench101Tabular
from nassearch.data import tables as data
from nassearch.cli import main
from nassearch.data.nb101_import import import_nasbench101
from nassearch.spaces.darts_notation import format_genotype
from nassearch.spaces.darts_genotypes import known_genotype
from tests.test_cli import one_line_error
from tests.test_data import fake_table
from tests.test_nb101_import import SPACE, record, synthetic_runs, write_runs, write_tfrecord
from tests.test_nb101_import import one_line_error as data_error


class Canary:
    """Unpickled by an ordinary unpickler, ``call(*args)`` runs: it creates the canary file."""

    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def canaries(path: Path) -> list[Canary]:
    """Two payloads that create ``path``: a shell command and a plain file open."""
    return [Canary(os.system, f"touch {path}"), Canary(open, str(path), "w")]


# --------------------------------------------------------------------------------------- CIFAR-10 batches


@pytest.fixture
def cifar(tmp_path) -> Path:
    """A small synthetic CIFAR-10 under ``tmp_path/cifar``; returns the root."""
    write_synthetic_cifar10(tmp_path / "cifar", n_train=20, n_test=5)
    return tmp_path / "cifar"


@pytest.mark.parametrize("payload", [0, 1], ids=["os.system", "open"])
def test_a_crafted_batch_never_runs_and_is_named(cifar, tmp_path, payload):
    canary = tmp_path / "canary"
    crafted = cifar / BATCH_FOLDER / "data_batch_2"
    crafted.write_bytes(pickle.dumps({"data": canaries(canary)[payload], "labels": [0]}, protocol=2))
    message = data_error(load_cifar10, cifar, train=True, verify_md5=False)
    assert not canary.exists()
    assert str(crafted) in message and "refused as unsafe" in message and "download: true" in message
    pickle.loads(crafted.read_bytes())  # the control: an ordinary unpickler runs the payload
    assert canary.exists()


def test_a_crafted_batch_is_refused_by_its_checksum_first(cifar, tmp_path):
    canary = tmp_path / "canary"
    crafted = cifar / BATCH_FOLDER / "test_batch"
    crafted.write_bytes(pickle.dumps(canaries(canary)[0]))
    message = data_error(load_cifar10, cifar, train=False, verify_md5=True)
    assert "md5 mismatch" in message and str(crafted) in message and not canary.exists()


def test_a_crafted_meta_file_never_runs(cifar, tmp_path):
    canary = tmp_path / "canary"
    meta = cifar / BATCH_FOLDER / "batches.meta"
    meta.write_bytes(pickle.dumps({"label_names": canaries(canary)[1]}))
    assert str(meta) in data_error(load_cifar10, cifar, train=False, verify_md5=False)
    assert not canary.exists()


@pytest.mark.parametrize("damage, words", [
    (lambda path: path.write_bytes(path.read_bytes()[:200]), "refused as unsafe or damaged: pickle data was truncated"),
    (lambda path: path.write_bytes(b""), "not a CIFAR-10 pickle (EOFError"),
    (lambda path: path.write_bytes(pickle.dumps([1, 2, 3])), "is not a CIFAR-10 batch"),
    (lambda path: path.write_bytes(pickle.dumps({"data": np.zeros((2, 3072)), "labels": [0, 1]})),
     "is not a CIFAR-10 batch"),  # float64 images
    (lambda path: path.write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]})),
     "one label in 0..9"),
    (lambda path: path.write_bytes(pickle.dumps({"data": np.zeros((2, 3072), object), "labels": [0, 1]})),
     "is not a CIFAR-10 batch"),  # an object array: its items are unpickled by the same restricted unpickler
    (lambda path: path.unlink(), "data_batch_3 is missing"),
])
def test_a_damaged_batch_is_one_line_naming_it(cifar, damage, words):
    path = cifar / BATCH_FOLDER / "data_batch_3"
    damage(path)
    message = data_error(load_cifar10, cifar, train=True, verify_md5=False)
    assert words in message and "cifar-10-batches-py" in message


class Py2StylePickler(pickle._Pickler):
    """Pickles as python 2's cPickle wrote the official CIFAR-10 files: protocol 2, ``numpy.core.multiarray``
    globals (numpy 1) and byte strings as BINSTRING (python 2 ``str``)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_bytes(self, obj):
        self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes

    def save_global(self, obj, name=None):
        if obj is _reconstruct:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def test_batches_in_the_official_python2_format_load(cifar):
    folder = cifar / BATCH_FOLDER
    rng = np.random.default_rng(0)
    images = {}
    for name in ("test_batch", "batches.meta"):
        payload = ({"data": rng.integers(0, 256, (5, 3072), dtype=np.uint8), "labels": [3, 1, 4, 1, 5]}
                   if name == "test_batch" else {"label_names": ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]})
        with (folder / name).open("wb") as handle:
            Py2StylePickler(handle, protocol=2).dump(payload)
        images[name] = payload
    raw = (folder / "test_batch").read_bytes()
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in raw and b"_codecs" not in raw
    test = load_cifar10(cifar, train=False, verify_md5=False)
    assert test.classes[0] == "a" and test.targets == [3, 1, 4, 1, 5]
    assert np.array_equal(test.data, images["test_batch"]["data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


# --------------------------------------------------------------------------------------- retrain: checkpoints


TINY = {"epochs": 1, "layers": 3, "init_channels": 4, "batch_size": 8, "num_workers": 0, "verify_md5": False,
        "max_train_batches": 1, "device": "cpu", "auxiliary": False, "amp": False}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished one-epoch retrain of DARTS_V2 (tiny network, synthetic data) to copy and damage."""
    root = tmp_path_factory.mktemp("retrain")
    write_synthetic_cifar10(root / "cifar", n_train=20, n_test=4)
    config = RetrainConfig(**TINY, data_root=str(root / "cifar"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        retrain(resolve_target("DARTS_V2"), config, root / "run")
    finally:
        torch.set_num_threads(threads)
    return root / "run"


def resume_argv(run: Path, finished_run: Path) -> list[str]:
    """``nassearch retrain --resume`` of a copy ``run`` of ``finished_run``, with the same settings."""
    settings = {**TINY, "data_root": finished_run.parent / "cifar"}
    return ["retrain", "DARTS_V2", "--resume", "--out", str(run),
            *[arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]]


def damaged_copy(finished_run: Path, tmp_path: Path, damage) -> Path:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    damage(run / "checkpoint.pt")
    return run


def _replace(path: Path, **changes) -> None:
    checkpoint = torch.load(path, weights_only=True)
    checkpoint.update(changes)
    torch.save({k: v for k, v in checkpoint.items() if v is not None}, path)


def _wrong_shape(path: Path) -> None:
    checkpoint = torch.load(path, weights_only=True)
    key = next(k for k, v in checkpoint["model"].items() if v.ndim == 4)
    checkpoint["model"][key] = torch.zeros(1, 1, 1, 1)
    torch.save(checkpoint, path)


@pytest.mark.parametrize("damage, words", [
    (lambda path: path.write_bytes(b""), "is empty (0 bytes)"),
    (lambda path: path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2]), "cannot be read, it is truncated"),
    (lambda path: path.write_bytes(b"not a checkpoint at all"), "is refused: it is damaged"),
    (lambda path: torch.save(torch.zeros(3), path), "holds a Tensor, not a mapping"),
    (lambda path: _replace(path, optimizer=None, log=None), "lacks key(s) optimizer, log"),
    (_wrong_shape, "does not fit the run's network and optimizer (RuntimeError: Error(s) in loading state_dict"),
    (lambda path: _replace(path, log=[{"epoch": 1}]), "has a log that is not one row"),
    (lambda path: _replace(path, log=[{"epoch": 5}]), "has a log that is not one row"),
    (lambda path: _replace(path, train_seconds=float("nan")), "train_seconds nan"),
])
def test_a_damaged_checkpoint_is_one_line_naming_it(finished_run, tmp_path, capsys, damage, words):
    run = damaged_copy(finished_run, tmp_path, damage)
    message = one_line_error(capsys, resume_argv(run, finished_run))
    assert words in message and str(run / "checkpoint.pt") in message
    assert "delete it to restart the run from epoch 0, or train into another --out" in message


def test_an_intact_checkpoint_resumes(finished_run, tmp_path, capsys):
    run = damaged_copy(finished_run, tmp_path, lambda path: None)
    assert main(resume_argv(run, finished_run)) == 0
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("payload", [0, 1], ids=["os.system", "open"])
def test_a_crafted_checkpoint_never_runs(finished_run, tmp_path, capsys, payload):
    canary = tmp_path / "canary"
    run = damaged_copy(finished_run, tmp_path,
                       lambda path: torch.save({"model": canaries(canary)[payload], "log": []}, path))
    message = one_line_error(capsys, resume_argv(run, finished_run))
    assert "is refused: it is damaged or holds objects other than tensors and plain data" in message
    assert "weights_only" not in message and not canary.exists()
    torch.load(run / "checkpoint.pt", weights_only=False)  # the control: a trusting load runs the payload
    assert canary.exists()


# --------------------------------------------------------------------------------------- retrain: configs, run dirs


@pytest.mark.parametrize("text, words", [
    ("- epochs: 2\n", "retrain config {path} must be a mapping of settings (epochs, batch_size"),
    ("epochs: !!python/object/apply:os.system ['touch {canary}']\n", "tag !!python/object/apply:os.system is not"),
    ("epochs: [2\n", "is not valid YAML"),
    ("epoch: 2\n", "epoch: unknown key in a retrain config (did you mean 'epochs'?)"),
    ("epochs: two\n", "epochs: expected an integer, got str 'two'"),
    ("learning_rate: .nan\n", "learning_rate: expected a finite number"),
    ("7\n", "must be a mapping of settings"),
])
def test_a_bad_retrain_config_is_one_line(tmp_path, capsys, text, words):
    path, canary = tmp_path / "retrain.yaml", tmp_path / "canary"
    path.write_text(text.format(canary=canary))
    message = one_line_error(capsys, ["retrain", "DARTS_V2", "--config", str(path), "--set", "seed=1"])
    assert words.format(path=path) in message and not canary.exists()


def search_run(root: Path, config, summary) -> Path:
    """A search run directory with ``config`` (YAML) and one seed's ``summary`` (JSON text when a str)."""
    run = root / "search"
    (run / "seed-0").mkdir(parents=True)
    (run / "config.yaml").write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    (run / "seed-0" / "summary.json").write_text(summary if isinstance(summary, str) else json.dumps(summary))
    return run


DARTS_CONFIG = {"space": {"name": "darts"}, "objectives": [{"metric": "val_acc", "mode": "max"}]}
BEST = {"best": {"arch": format_genotype(known_genotype("DARTS_V2")), "metrics": {"val_acc": 91.0}}}


@pytest.mark.parametrize("config, summary, words", [
    ({"space": {"name": "darts"}}, BEST, "config.yaml lacks objectives.0.metric: it is not the config.yaml"),
    ({**DARTS_CONFIG, "objectives": []}, BEST, "config.yaml lacks objectives.0.metric"),
    ({**DARTS_CONFIG, "objectives": [{"metric": "val_acc"}]}, BEST, "config.yaml lacks objectives.0.mode"),
    ({"space": "darts", "objectives": []}, BEST, "config.yaml lacks space.name"),
    (["space", "darts"], BEST, "config.yaml lacks space.name"),
    ("space: [darts\n", BEST, "is not valid YAML"),
    ({**DARTS_CONFIG, "objectives": [{"metric": "val_acc", "mode": "up"}]}, BEST, "mode is 'up', not max or min"),
    (DARTS_CONFIG, {"num_trials": 3}, "records no best architecture with its val_acc (the objective)"),
    (DARTS_CONFIG, {"best": {"arch": "x", "metrics": {"params": 1.0}}}, "records no best architecture with its"),
    (DARTS_CONFIG, "{not json", "records no best architecture"),
    (DARTS_CONFIG, {"best": {"arch": None, "metrics": {"val_acc": 91.0}}}, "expected a finite number and an architecture string"),
    (DARTS_CONFIG, {"best": {"arch": "x", "metrics": {"val_acc": None}}}, "expected a finite number and an architecture string"),
])
def test_a_damaged_search_run_is_one_line(tmp_path, capsys, config, summary, words):
    run = search_run(tmp_path, config, summary)
    assert words in one_line_error(capsys, ["retrain", str(run)])


def test_an_intact_search_run_gives_its_best_genotype(tmp_path):
    assert resolve_target(str(search_run(tmp_path, DARTS_CONFIG, BEST))).genotype == known_genotype("DARTS_V2")


@pytest.mark.parametrize("stored", ["- a list\n", "genotype: x\n", "{unclosed: \n"])
def test_a_damaged_retrain_run_config_is_one_line(finished_run, tmp_path, capsys, stored):
    run = damaged_copy(finished_run, tmp_path, lambda path: None)
    (run / "config.yaml").write_text(stored)
    message = one_line_error(capsys, resume_argv(run, finished_run))
    assert str(run / "config.yaml") in message


# --------------------------------------------------------------------------------------- benchmark tables


SUBSET = "nb201_200epoch_subset"
SUBSET_HEADER = "dataset,index,arch_str,val_accuracy,flops_m,params_m\n"


@pytest.mark.parametrize("row, words", [
    ("cifar10,1,x,NaN,1.0,0.5", "line 3: column val_accuracy holds an empty value, expected a number in [0, 100]"),
    ("cifar10,1,x,,1.0,0.5", "line 3: column val_accuracy holds an empty value"),
    ("cifar10,1,x,750,1.0,0.5", "line 3: column val_accuracy holds 750.0, expected a number in [0, 100]"),
    ("cifar10,1,x,-1,1.0,0.5", "column val_accuracy holds -1.0"),
    ("cifar10,1,x,90,inf,0.5", "column flops_m holds inf, expected a number in [0, inf]"),
    ("cifar10,1,x,90,1.0,-0.5", "column params_m holds -0.5"),
    ("cifar10,99999,x,90,1.0,0.5", "column index holds 99999.0, expected a number in [0, 15624]"),
    ("cifar10,1,x,ninety,1.0,0.5", "column(s) val_accuracy hold values that are not numbers"),
])
def test_a_table_value_out_of_bounds_is_named(monkeypatch, tmp_path, row, words):
    path = fake_table(monkeypatch, tmp_path, SUBSET, (SUBSET_HEADER + "cifar10,0,x,90,1.0,0.5\n" + row + "\n").encode(),
                      rows=2)
    message = data_error(data.load_csv, SUBSET, tmp_path)
    assert words in message and str(path) in message
    assert data.TABLES[SUBSET].sha256 in message  # how to check a replacement


def test_good_values_pass_and_latency_columns_are_matched_by_pattern(monkeypatch, tmp_path):
    fake_table(monkeypatch, tmp_path, SUBSET, (SUBSET_HEADER + "cifar10,0,x,90,1.0,0.5\n").encode(), rows=1)
    assert len(data.load_csv(SUBSET, tmp_path)) == 1
    header = "index,arch_str,lat_1080ti_bs1,lat_pixel3\n"
    payload = gzip.compress((header + "0,x,1.5,0.01\n1,y,2.0,-0.01\n").encode())
    fake_table(monkeypatch, tmp_path, "nb201_latency", payload, rows=2)
    assert "line 3: column lat_pixel3 holds -0.01" in data_error(data.load_csv, "nb201_latency", tmp_path)


def test_json_tables_refuse_nan_wrong_entry_counts_and_bad_values(monkeypatch, tmp_path):
    entry = {"val_accuracy": 90.0, "flops_m": 1.0, "params_m": 0.5}
    name = "nb101_naslib500"
    fake_table(monkeypatch, tmp_path, name, json.dumps({"archs": [entry]}).encode())
    assert "has 1 rows, expected 500" in data_error(data.load_json, name, tmp_path)
    cases = [
        ({"archs": [entry, {**entry, "val_accuracy": 750.0}]}, "archs[1]: column val_accuracy holds 750.0"),
        ({"archs": [entry, {"flops_m": 1.0, "params_m": 0.5}]}, "archs[1]: column val_accuracy holds an empty value"),
        ({"archs": [entry, 3]}, "'archs' is not a list of mappings"),
    ]
    for payload, words in cases:
        fake_table(monkeypatch, tmp_path, name, json.dumps(payload).encode(), rows=2)
        assert words in data_error(data.load_json, name, tmp_path)
    fake_table(monkeypatch, tmp_path, name, b'{"archs": [{"val_accuracy": NaN, "flops_m": 1, "params_m": 1}]}', rows=1)
    assert "NaN is not a number a table may hold" in data_error(data.load_json, name, tmp_path)
    fake_table(monkeypatch, tmp_path, name, json.dumps({"archs": [entry, entry]}).encode(), rows=2)
    assert len(data.load_json(name, tmp_path)["archs"]) == 2


# --------------------------------------------------------------------------------------- the imported NB101 table


@pytest.fixture
def imported(tmp_path) -> Path:
    """An NB101 table imported from a synthetic TFRecord with every budget; returns the data directory."""
    write_runs(tmp_path / "full.tfrecord", synthetic_runs((4, 12, 36, 108)))
    import_nasbench101(tmp_path / "full.tfrecord", tmp_path / "data" / data.TABLES["nb101_official"].path)
    return tmp_path / "data"


def official_table(data_dir: Path) -> Path:
    return data_dir / data.TABLES["nb101_official"].path


def edit_official(data_dir: Path, edit) -> None:
    path = official_table(data_dir)
    frame = pd.read_csv(path, dtype={"hash": str, "adjacency": str, "ops": str})
    edit(frame)
    frame.to_csv(path, index=False)


def nb101_official(data_dir: Path, **kwargs) -> NasBench101Tabular:
    return NasBench101Tabular(SPACE, data_dir=str(data_dir), tables=["nb101_official"], **kwargs)


def test_an_intact_import_serves_every_budget(imported):
    evaluator = nb101_official(imported, epochs=36)
    assert evaluator.metrics == ("val_acc", "val_acc_epoch4", "val_acc_epoch12", "val_acc_epoch36",
                                 "val_acc_epoch108", "test_acc", "params", "train_time_s")
    assert np.isfinite(evaluator.reference_values("val_acc")).all()


@pytest.mark.parametrize("row, column, value, words", [
    (0, "val_acc_epoch108", 7.5, "line 2: column val_acc_epoch108 holds 7.5"),
    (1, "test_acc_epoch108", np.nan, "line 3: column test_acc_epoch108 holds an empty value"),
    (2, "val_acc_epoch4_run1", 7.5, "column val_acc_epoch4_run1 holds 7.5"),
    (0, "train_time_s_epoch12", -1.0, "column train_time_s_epoch12 holds -1.0"),
    (0, "train_time_s", np.inf, "column train_time_s holds inf"),
    (3, "hash", np.nan, "line 5: column hash is empty"),
])
def test_a_damaged_import_is_refused_not_served(imported, row, column, value, words):
    edit_official(imported, lambda frame: frame.loc.__setitem__((row, column), value))
    message = data_error(nb101_official, imported)
    assert words in message and str(official_table(imported)) in message
    assert "delete it and make it again (source: made by `nassearch data import nasbench101" in message


def test_an_import_lacking_a_column_is_refused(imported):
    edit_official(imported, lambda frame: frame.pop("test_acc_epoch108"))
    assert "lacks column(s) test_acc_epoch108" in data_error(nb101_official, imported)


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_a_truncated_import_is_refused(imported, cut):
    path = official_table(imported)
    payload = path.read_bytes()
    path.write_bytes(payload[:int(len(payload) * cut)])
    message = data_error(nb101_official, imported)
    assert str(path) in message and "cannot be read as CSV" in message and "make it again" in message


def test_a_corrupt_gzip_import_is_refused(imported):
    path = official_table(imported)
    payload = bytearray(path.read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    path.write_bytes(bytes(payload))
    assert "cannot be read as CSV" in data_error(nb101_official, imported)


def test_an_import_missing_a_budget_for_some_cells_is_refused(imported):
    edit_official(imported, lambda f: f.loc.__setitem__((2, "val_acc_epoch12"), np.nan))
    message = data_error(nb101_official, imported)
    assert "lack val_acc_epoch12 for 1 of 5 cells" in message


def test_an_only108_import_serves_108_epochs_and_refuses_others(tmp_path):
    write_runs(tmp_path / "only108.tfrecord", synthetic_runs((108,)))
    import_nasbench101(tmp_path / "only108.tfrecord", official_table(tmp_path / "data"))
    evaluator = nb101_official(tmp_path / "data")
    assert evaluator.metrics == ("val_acc", "val_acc_epoch108", "test_acc", "params", "train_time_s")
    message = data_error(nb101_official, tmp_path / "data", epochs=12)
    assert "hold no results at 12 epochs: set epochs to 108" in message


@pytest.mark.parametrize("final, words", [
    ((7.5, 0.5, 10.0), "final validation_accuracy 7.5, not a finite number in [0, 1]"),
    ((float("nan"), 0.5, 10.0), "final validation_accuracy nan"),
    ((0.5, -0.1, 10.0), "final test_accuracy -0.1"),
    ((0.5, 0.5, float("inf")), "final training_time inf, not a finite number in [0, inf]"),
])
def test_the_importer_refuses_impossible_metrics(tmp_path, final, words):
    write_tfrecord(tmp_path / "bad.tfrecord", [record("two", 108, (0.5, 0.5, 10.0)), record("four", 108, final)])
    message = data_error(import_nasbench101, tmp_path / "bad.tfrecord", tmp_path / "out.csv")
    assert "record 1 " in message and words in message and not (tmp_path / "out.csv").exists()


def test_the_importer_refuses_negative_parameters_and_a_cell_missing_a_budget(tmp_path):
    negative = 2**64 - 5  # -5 as protobuf writes a negative int32
    write_tfrecord(tmp_path / "params.tfrecord", [record("two", 108, (0.5, 0.5, 10.0), params=negative)])
    assert "trainable_parameters -5, not a positive count" in data_error(
        import_nasbench101, tmp_path / "params.tfrecord", tmp_path / "out.csv")
    runs = synthetic_runs((4, 108))
    del runs["six", 4]
    write_runs(tmp_path / "cut.tfrecord", runs)
    message = data_error(import_nasbench101, tmp_path / "cut.tfrecord", tmp_path / "out.csv")
    assert "no record of cell" in message and "at 4 epochs" in message and "incomplete" in message


# --------------------------------------------------------------------------------------- NB301 surrogate files


@pytest.fixture
def nb301_dir(data_dir, tmp_path) -> Path:
    """A copy of the surrogate's model and encoding files in a data directory of its own."""
    for name in ("yahpo_nb301_model", "yahpo_nb301_encoding"):
        target = tmp_path / data.TABLES[name].path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data_dir / data.TABLES[name].path, target)
    return tmp_path


def surrogate(data_dir: Path):
    from nassearch.evaluators.surrogate import NasBench301Surrogate
    from nassearch.spaces.darts import DartsSpace

    return NasBench301Surrogate(DartsSpace(), data_dir=str(data_dir))


@pytest.mark.slow
def test_a_truncated_surrogate_model_is_one_line(monkeypatch, nb301_dir):
    path = nb301_dir / data.TABLES["yahpo_nb301_model"].path
    assert len(surrogate(nb301_dir).metrics) == 5  # the intact copy loads
    path.write_bytes(path.read_bytes()[:100_000])
    assert "is corrupt: sha256" in data_error(surrogate, nb301_dir)
    fake_table(monkeypatch, nb301_dir, "yahpo_nb301_model", path.read_bytes())  # checksum passes: onnxruntime refuses
    message = data_error(surrogate, nb301_dir)
    assert "cannot load the NB301 surrogate" in message and str(path) in message


def test_a_damaged_surrogate_encoding_is_one_line(monkeypatch, nb301_dir):
    path = nb301_dir / data.TABLES["yahpo_nb301_encoding"].path
    encoding = json.loads(path.read_text())
    fake_table(monkeypatch, nb301_dir, "yahpo_nb301_encoding", path.read_bytes()[:300])
    assert "cannot be read as JSON" in data_error(surrogate, nb301_dir)
    del encoding["NetworkSelectorDatasetInfo_COLON_darts_COLON_edge_reduce_3"]["sep_conv_5x5"]
    fake_table(monkeypatch, nb301_dir, "yahpo_nb301_encoding", json.dumps(encoding).encode())
    assert "edge_reduce_3 does not map each of" in data_error(surrogate, nb301_dir)
    encoding["NetworkSelectorDatasetInfo_COLON_darts_COLON_edge_reduce_3"]["sep_conv_5x5"] = "six"
    fake_table(monkeypatch, nb301_dir, "yahpo_nb301_encoding", json.dumps(encoding).encode())
    assert "to an integer code" in data_error(surrogate, nb301_dir)

