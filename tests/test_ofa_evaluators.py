"""The OFA MobileNetV3 evaluators: OFA's accuracy predictor (``ofa_accuracy``) and the Note10 lookup-table latency
(``note10_latency``), checked against the stored predictor outputs and against the ``ofa`` package itself."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import types
from pathlib import Path

import numpy as np
import pytest
import yaml

from nassearch.data import tables as data
from nassearch.errors import DataError, InvalidArchitecture
from nassearch.evaluators.ofa import (NOTE10_RESOLUTIONS, Note10Latency, OFAAccuracy, arch_arrays,
                                      measure_throughput)
from nassearch.spaces.ofa_mbv3 import OFAArch, OFAMobileNetV3Space

OFA_FILES = ["ofa/ofa_mbv3_acc_predictor.npz",
             *(f"ofa/latency_table_note10/{r}_lookup_table.yaml" for r in NOTE10_RESOLUTIONS)]


@pytest.fixture(scope="module")
def space():
    return OFAMobileNetV3Space()


@pytest.fixture(scope="module")
def accuracy(space, data_dir):
    return OFAAccuracy(space, data_dir=str(data_dir))


@pytest.fixture(scope="module")
def note10(space, data_dir):
    return Note10Latency(space, data_dir=str(data_dir))


def random_archs(n: int, seed: int = 0, resolutions=NOTE10_RESOLUTIONS) -> list[OFAArch]:
    rng = np.random.default_rng(seed)
    return [OFAArch(tuple(rng.choice((3, 5, 7), 20).tolist()), tuple(rng.choice((3, 4, 6), 20).tolist()),
                    tuple(rng.choice((2, 3, 4), 5).tolist()), int(rng.choice(resolutions))) for _ in range(n)]


def uniform(k: int, e: int, d: int, r: int) -> OFAArch:
    return OFAArch((k,) * 20, (e,) * 20, (d,) * 5, r)


# ------------------------------------------------------------------------------------------- ofa_accuracy


def test_accuracy_reproduces_help_acc_pred_ofa_on_all_5000_rows(accuracy, data_dir):
    frame = data.load_csv("ofa_help_5k_latency", data_dir)
    ks = frame[[f"ks_{i}" for i in range(20)]].to_numpy()
    e = frame[[f"e_{i}" for i in range(20)]].to_numpy()
    d = frame[[f"d_{i}" for i in range(5)]].to_numpy()
    predicted = accuracy.predict(ks, e, d, frame["r"].to_numpy())
    error = np.abs(predicted - frame["acc_pred_ofa"].to_numpy())
    print(f"\nofa_accuracy vs acc_pred_ofa on {len(frame)} rows: max abs error {error.max():.3g} (fraction)")
    assert len(frame) == 5000 and error.max() <= 1e-6


def test_accuracy_float32_mode_is_close(space, data_dir, accuracy):
    fast = OFAAccuracy(space, data_dir=str(data_dir), dtype="float32")
    archs = random_archs(500, seed=3)
    assert np.abs(fast.query_batch(archs) - accuracy.query_batch(archs)).max() < 1e-3  # percent


def test_accuracy_matches_the_readme_sanity_values(accuracy):
    values = accuracy.query_batch([uniform(3, 3, 2, 160), uniform(3, 3, 2, 224), uniform(7, 6, 4, 160),
                                   uniform(7, 6, 4, 224)])
    assert np.allclose(values, [75.3, 77.7, 80.8, 83.6], atol=0.06)


def test_accuracy_is_percent_and_batch_equals_single(accuracy):
    archs = random_archs(64, seed=1)
    batch = accuracy.evaluate_batch(archs)
    assert accuracy.metrics == ("val_acc",)
    for arch, result in zip(archs, batch):
        single = accuracy.evaluate(arch)
        assert single.metrics == result.metrics and set(single.metrics) == {"val_acc"}
        assert 70 < single.metrics["val_acc"] < 90 and single.cost_s == 1.0 and single.wall_s >= 0
    assert np.array_equal(accuracy.query_batch(archs), [r.metrics["val_acc"] for r in batch])
    assert accuracy.reference_values("val_acc") is None


def test_inactive_slots_do_not_change_either_metric(accuracy, note10):
    rng = np.random.default_rng(5)
    for arch in random_archs(20, seed=4):
        active = np.arange(20) % 4 < np.repeat(arch.d, 4)
        other = OFAArch(tuple(np.where(active, arch.ks, rng.choice((3, 5, 7), 20)).tolist()),
                        tuple(np.where(active, arch.e, rng.choice((3, 4, 6), 20)).tolist()), arch.d, arch.r)
        for evaluator in (accuracy, note10):
            assert evaluator.evaluate(arch).metrics == evaluator.evaluate(other).metrics


def test_accuracy_throughput_is_reported(space, data_dir, accuracy):
    """Benchmark output (not a target assert): archs/s in batches of 10,000, float64 and float32 MLP."""
    fast = OFAAccuracy(space, data_dir=str(data_dir), dtype="float32")
    rates = {"float64 arrays": measure_throughput(accuracy, n=40_000, batch_size=10_000),
             "float32 arrays": measure_throughput(fast, n=40_000, batch_size=10_000),
             "float64 evaluate_batch(OFAArch)": measure_throughput(accuracy, n=20_000, batch_size=10_000, archs=True)}
    print("\nofa_accuracy throughput (batches of 10,000): "
          + ", ".join(f"{name} {rate:,.0f} archs/s" for name, rate in rates.items()))
    assert all(rate > 0 for rate in rates.values())


# ------------------------------------------------------------------------------------------- note10_latency


@pytest.fixture(scope="module")
def ofa_reference(data_dir):
    """OFA's own estimator: ``MBv3LatencyTable`` per resolution, reading the local YAML files (its loader calls
    ``yaml.load`` without a Loader, so it is pointed at ``safe_load``; a local path means no download), and the
    ``OFAMobileNetV3(width_mult=1.2)`` supernet that gives each subnet's net config."""
    from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3
    from ofa.nas.efficiency_predictor import latency_lookup_table as lut

    def no_download(*args, **kwargs):
        raise AssertionError("the reference tried to download")

    patch = pytest.MonkeyPatch()
    patch.setattr(lut, "yaml", types.SimpleNamespace(load=yaml.safe_load))
    patch.setattr(lut, "download_url", no_download)
    try:
        tables = {r: lut.MBv3LatencyTable(url=str(data_dir / f"ofa/latency_table_note10/{r}_lookup_table.yaml"))
                  for r in NOTE10_RESOLUTIONS}
    finally:
        patch.undo()
    supernet = OFAMobileNetV3(width_mult=1.2, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4])
    return tables, supernet


def test_note10_equals_ofa_lookup_table_estimate_on_200_subnets(note10, ofa_reference):
    tables, supernet = ofa_reference
    archs = random_archs(200, seed=17)
    ours = note10.query_batch(archs)
    theirs = []
    for arch in archs:
        supernet.set_active_subnet(ks=list(arch.ks), e=list(arch.e), d=list(arch.d))
        theirs.append(tables[arch.r].predict_network_latency_given_config(supernet.get_active_net_config(), arch.r))
    difference = np.abs(ours - np.array(theirs))
    print(f"\nnote10_latency vs ofa MBv3LatencyTable on 200 subnets: max abs difference {difference.max():.3g} ms "
          f"(latencies {min(theirs):.2f}..{max(theirs):.2f} ms)")
    assert difference.max() <= 1e-9
    assert len({arch.r for arch in archs}) == len(NOTE10_RESOLUTIONS)  # every table was used


def test_note10_batch_equals_single_and_grows_with_the_network(note10):
    archs = random_archs(64, seed=2)
    batch = note10.evaluate_batch(archs)
    assert note10.metrics == ("latency_ms",)
    for arch, result in zip(archs, batch):
        assert note10.evaluate(arch).metrics == result.metrics and result.cost_s == 1.0
    small, large = note10.query_batch([uniform(3, 3, 2, 160), uniform(7, 6, 4, 224)])
    assert 0 < small < large
    assert note10.reference_values("latency_ms") is None


def test_note10_throughput_is_reported(note10):
    rate = measure_throughput(note10, n=100_000, batch_size=10_000)
    print(f"\nnote10_latency throughput: {rate:,.0f} archs/s on gene arrays (batches of 10,000)")
    assert rate > 0


# ------------------------------------------------------------------------------------------- invalid architectures


def genes(ks=(3,) * 20, e=(3,) * 20, d=(2,) * 5, r=160):
    """An unvalidated architecture-like object (OFAArch itself refuses bad genes on construction)."""
    return types.SimpleNamespace(ks=ks, e=e, d=d, r=r)


@pytest.mark.parametrize("arch, match", [
    (genes(r=150), r"resolution 150 is outside the Note10 lookup tables \(160..224 step 4\)"),
    (genes(r=228), r"resolution 228 is outside"),
    (genes(ks=(9,) + (3,) * 19), r"kernel size 9 in block slot 0 \(stage 0\) is not one of 3, 5, 7"),
    (genes(e=(3,) * 5 + (5,) + (3,) * 14), r"expansion 5 in block slot 5 \(stage 1\)"),
    (genes(d=(2, 2, 5, 2, 2)), r"depth 5 of stage 2 is not one of 2, 3, 4"),
    (genes(ks=(3,) * 19), r"ks must hold 20 values"),
])
def test_invalid_architectures_are_refused_clearly(note10, accuracy, arch, match):
    with pytest.raises(InvalidArchitecture, match=match):
        note10.evaluate(arch)
    if "outside" not in match:
        with pytest.raises(InvalidArchitecture, match=match):
            accuracy.evaluate(arch)


def test_space_resolutions_off_the_tables_are_refused(note10):
    with pytest.raises(InvalidArchitecture, match="architecture 1: resolution 161 is outside"):
        note10.evaluate_batch([uniform(3, 3, 2, 160), uniform(3, 3, 2, 161)])


def test_accuracy_refuses_a_resolution_the_predictor_cannot_encode(accuracy):
    with pytest.raises(InvalidArchitecture, match=r"resolution 100 is outside the accuracy predictor's range 112..239"):
        accuracy.evaluate(uniform(3, 3, 2, 100))


def test_evaluators_refuse_another_space(data_dir):
    for cls in (OFAAccuracy, Note10Latency):
        with pytest.raises(ValueError, match="only for space ofa_mbv3"):
            cls(types.SimpleNamespace(name="nasbench201"), data_dir=str(data_dir))


def test_arch_arrays_refuses_objects_that_are_not_ofa_archs():
    with pytest.raises(InvalidArchitecture, match="not OFA MobileNetV3 architectures"):
        arch_arrays(["|nor_conv_3x3~0|"])


# ------------------------------------------------------------------------------------------- missing / corrupt data


@pytest.fixture
def ofa_copy(data_dir, tmp_path) -> Path:
    """A private data directory holding copies of the OFA predictor and latency tables."""
    for name in OFA_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data_dir / name, tmp_path / name)
    return tmp_path


@pytest.mark.parametrize("cls, name", [(OFAAccuracy, "ofa/ofa_mbv3_acc_predictor.npz"),
                                       (Note10Latency, "ofa/latency_table_note10/196_lookup_table.yaml")])
def test_missing_file_is_one_data_error_naming_it(space, ofa_copy, cls, name):
    (ofa_copy / name).unlink()
    with pytest.raises(DataError, match=f"{name} not found in data directory"):
        cls(space, data_dir=str(ofa_copy))


@pytest.mark.parametrize("cls, name", [(OFAAccuracy, "ofa/ofa_mbv3_acc_predictor.npz"),
                                       (Note10Latency, "ofa/latency_table_note10/212_lookup_table.yaml")])
def test_corrupt_file_is_one_data_error_naming_it(space, ofa_copy, cls, name):
    payload = bytearray((ofa_copy / name).read_bytes())
    payload[len(payload) // 2] ^= 0x01
    (ofa_copy / name).write_bytes(bytes(payload))
    with pytest.raises(DataError, match=rf"{name} is corrupt: sha256"):
        cls(space, data_dir=str(ofa_copy))


def reregister(monkeypatch, root: Path, table: str, payload: bytes) -> Path:
    """Write ``payload`` as ``table`` under ``root`` and register its checksum (a file that passes the checksum)."""
    path = root / data.TABLES[table].path
    path.write_bytes(payload)
    spec = dataclasses.replace(data.TABLES[table], sha256=hashlib.sha256(payload).hexdigest())
    monkeypatch.setitem(data.TABLES, table, spec)
    return path


def test_a_lookup_table_lacking_an_entry_names_the_file_and_the_key(monkeypatch, space, ofa_copy):
    path = ofa_copy / data.TABLES["ofa_note10_lut_176"].path
    table = yaml.safe_load(path.read_text())
    key = next(k for k in table if k.startswith("expanded_conv") and "kernel:7" in k)
    table[key.replace("expanded_conv", "expanded_conv_renamed")] = table.pop(key)
    reregister(monkeypatch, ofa_copy, "ofa_note10_lut_176", yaml.safe_dump(table).encode())
    with pytest.raises(DataError, match=rf"176_lookup_table.yaml lacks the entry '{key}'"):
        Note10Latency(space, data_dir=str(ofa_copy))


def test_a_lookup_table_that_is_not_yaml_is_a_data_error(monkeypatch, space, ofa_copy):
    reregister(monkeypatch, ofa_copy, "ofa_note10_lut_160", b"key: [unclosed\n")
    with pytest.raises(DataError, match="160_lookup_table.yaml cannot be read as YAML"):
        Note10Latency(space, data_dir=str(ofa_copy))


def test_a_predictor_with_wrong_arrays_is_a_data_error(monkeypatch, space, ofa_copy, tmp_path):
    arrays = dict(np.load(ofa_copy / "ofa/ofa_mbv3_acc_predictor.npz"))
    arrays["2.weight"] = arrays["2.weight"][:, :300]
    scratch = tmp_path / "scratch.npz"
    np.savez(scratch, **arrays)
    reregister(monkeypatch, ofa_copy, "ofa_acc_predictor", scratch.read_bytes())
    with pytest.raises(DataError, match=r"ofa_mbv3_acc_predictor.npz: array '2.weight' has shape \(400, 300\)"):
        OFAAccuracy(space, data_dir=str(ofa_copy))
    del arrays["6.bias"]
    np.savez(scratch, **arrays)
    reregister(monkeypatch, ofa_copy, "ofa_acc_predictor", scratch.read_bytes())
    with pytest.raises(DataError, match=r"ofa_mbv3_acc_predictor.npz lacks column\(s\) 6.bias"):
        OFAAccuracy(space, data_dir=str(ofa_copy))


def test_ofa_files_are_known_tables_that_verify(data_dir):
    names = {spec.path: name for name, spec in data.TABLES.items()}
    assert all(path in names for path in OFA_FILES)
    assert data.load_npz("ofa_acc_predictor", data_dir)["0.weight"].shape == (400, 128)
    for r in NOTE10_RESOLUTIONS:
        assert len(data.load_yaml(f"ofa_note10_lut_{r}", data_dir)) == 96


def test_registered_names_resolve():
    from nassearch.registry import EVALUATORS

    assert EVALUATORS.get("ofa_accuracy") is OFAAccuracy
    assert EVALUATORS.get("note10_latency") is Note10Latency


def test_accuracy_can_add_note10_latency_for_one_config(space, data_dir, note10):
    both = OFAAccuracy(space, data_dir=str(data_dir), note10_latency=True)
    archs = random_archs(50, seed=7)
    results = both.evaluate_batch(archs)
    assert both.metrics == ("val_acc", "latency_ms")
    assert [r.metrics["latency_ms"] for r in results] == note10.query_batch(archs).tolist()
    assert [r.metrics["val_acc"] for r in results] == both.query_batch(archs).tolist()
    assert both.evaluate(archs[0]).metrics == results[0].metrics
