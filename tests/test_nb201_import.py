"""`nassearch data import nasbench201`: official-format files built with the official packages' own result
classes (nas_201_api / nats_bench ArchResults and ResultsCount), imported, and checked value by value against
what the official APIs answer for the same queries; bad files; the imported table in `nb201_tabular` and a run."""

from __future__ import annotations

import bz2
import contextlib
import io
import json
import pickle
import tarfile
from pathlib import Path

import nas_201_api
import nats_bench
import numpy as np
import pandas as pd
import pytest
import torch

from nassearch.cli import main
from nassearch.data import tables as data
from nassearch.data.nb201_import import (DATASETS, EVAL_SETS, N_ARCHS, SEEDS, columns, compare_with_subset,
                                         import_nasbench201)
from nassearch.errors import DataError, NassearchError


pytestmark = pytest.mark.slow

#: Architectures with full results: two seeds, every epoch, both schedules (the rest: one seed, final epoch).
DETAILED = (0, 1, 77, 5000, 15624)
CLASSES = {"cifar10-valid": 10, "cifar10": 10, "cifar100": 100, "ImageNet16-120": 120}


def _results_count(package, arch_str: str, dataset: str, seed: int, epochs: int, rng, detailed: bool,
                   subset_val: float | None):
    """One trial as the official ResultsCount, filled through its own update methods."""
    last = epochs - 1
    kept = range(epochs) if detailed else [last]
    train_acc = {e: float(rng.uniform(10, 100)) for e in kept}
    train_loss = {e: float(rng.uniform(0, 3)) for e in kept}
    count = package.ResultsCount(dataset, None, train_acc, train_loss, float(rng.uniform(0.1, 1.5)),
                                 float(rng.uniform(5, 200)),
                                 {"arch_str": arch_str, "channel": 16, "num_cells": 5, "class_num": CLASSES[dataset]},
                                 seed, epochs, [float(rng.uniform(0.005, 0.03))])
    sets = sorted({*EVAL_SETS[dataset].values(), "ori-test"})
    if detailed:
        count.update_train_info(train_acc, None, train_loss, {e: float(rng.uniform(5, 20)) for e in range(epochs)})
        accs, losses, times = {}, {}, {}
        for name in sets:
            for e in range(epochs):
                accs[f"{name}@{e}"], losses[f"{name}@{e}"] = float(rng.uniform(10, 95)), float(rng.uniform(0, 3))
                times[f"{name}@{e}"] = float(rng.uniform(0.5, 2))
        if subset_val is not None and "x-valid" in sets:
            accs[f"x-valid@{last}"] = subset_val
        count.update_eval(accs, losses, times)
    else:
        for name in sets:
            value = subset_val if (name == "x-valid" and subset_val is not None) else float(rng.uniform(10, 95))
            count.update_OLD_eval(name, {last: value}, {last: float(rng.uniform(0, 3))})
    return count


def _arch_results(package, index: int, arch_str: str, rng, subset: dict) -> dict[int, object]:
    detailed = index in DETAILED
    results = {}
    for epochs in (200, 12):
        archres = package.ArchResults(index, arch_str)
        if epochs == 200 or detailed:
            for dataset in DATASETS:
                for seed in (SEEDS[:2] if detailed else SEEDS[:1]):
                    subset_val = subset.get((dataset, arch_str)) if epochs == 200 else None
                    archres.update(dataset, seed, _results_count(package, arch_str, dataset, seed, epochs, rng,
                                                                 detailed, subset_val))
        results[epochs] = archres
    return results


@pytest.fixture(scope="module")
def arch_strs(data_dir) -> list[str]:
    return data.load_csv("nb201_12epoch", data_dir)["arch_str"].tolist()


@pytest.fixture(scope="module")
def subset_values(data_dir) -> dict:
    """(official dataset, arch_str) -> the shared 200-epoch subset's val accuracy, for 10 architectures."""
    frame = data.load_csv("nb201_200epoch_subset", data_dir)
    names = {"cifar10": "cifar10-valid", "cifar100": "cifar100", "ImageNet16-120": "ImageNet16-120"}
    chosen = frame["arch_str"].drop_duplicates().head(10)
    rows = frame[frame["arch_str"].isin(chosen)]
    return {(names[d], a): float(v) for d, a, v in zip(rows["dataset"], rows["arch_str"], rows["val_accuracy"])}


def _payload(package, arch_strs, subset, hp_keys):
    rng = np.random.default_rng(0)
    infos = {}
    for index, arch_str in enumerate(arch_strs):
        results = _arch_results(package, index, arch_str, rng, subset)
        infos[index] = {hp_keys[e]: results[e].state_dict() for e in (12, 200)}
    return {"meta_archs": list(arch_strs), "arch2infos": infos, "evaluated_indexes": list(range(len(arch_strs))),
            "total_archs": len(arch_strs)}


@pytest.fixture(scope="module")
def nb201_file(tmp_path_factory, arch_strs, subset_values) -> Path:
    path = tmp_path_factory.mktemp("nb201") / "NAS-Bench-201-v1_1-096897.pth"
    torch.save(_payload(nas_201_api, arch_strs, subset_values, {12: "less", 200: "full"}), path)
    return path


@pytest.fixture(scope="module")
def nats_payload(arch_strs, subset_values) -> dict:
    return _payload(nats_bench, arch_strs, subset_values, {12: "12", 200: "200"})


@pytest.fixture(scope="module")
def nats_file(tmp_path_factory, nats_payload) -> Path:
    path = tmp_path_factory.mktemp("nats") / "NATS-tss-v1_0-3ffb9-simple.pickle.pbz2"
    nats_bench.pickle_save(nats_payload, str(path)[:-len(".pbz2")])  # it appends .pbz2
    return path


@pytest.fixture(scope="module")
def nats_dir(tmp_path_factory, nats_payload) -> Path:
    root = tmp_path_factory.mktemp("natsdir") / "NATS-tss-v1_0-3ffb9-simple"
    root.mkdir()
    nats_bench.pickle_save({"meta_archs": nats_payload["meta_archs"]}, str(root / "meta.pickle"))
    for index, infos in nats_payload["arch2infos"].items():
        with bz2.BZ2File(root / f"{index:06d}.pickle.pbz2", "wb", compresslevel=1) as handle:
            pickle.dump(infos, handle, protocol=4)
    return root


@pytest.fixture(scope="module")
def imported_dir(tmp_path_factory, nb201_file, data_dir) -> Path:
    """A data directory holding the table imported from the synthetic .pth by the CLI (its output in cli.txt),
    with the shared 200-epoch subset beside it."""
    root = tmp_path_factory.mktemp("imported")
    (root / "nasbench201").mkdir()
    subset = data.TABLES["nb201_200epoch_subset"].path
    (root / subset).write_bytes((data_dir / subset).read_bytes())
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        assert main(["data", "import", "nasbench201", str(nb201_file), "--data-dir", str(root)]) == 0
    (root / "cli.txt").write_text(output.getvalue())
    return root


@pytest.fixture(scope="module")
def imported(imported_dir) -> pd.DataFrame:
    return _read(imported_dir / "nasbench201" / "nb201_official.csv.gz")


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={c: str for c in columns() if "_seeds_" in c})


def _check_against_api(frame: pd.DataFrame, api, hp_of: dict[int, str]) -> int:
    """Every value of the DETAILED rows (and one filler row) equals what the official API answers; returns the
    number of values compared."""
    compared = 0
    for index in (*DETAILED, 3):
        row = frame.loc[frame["index"] == index].iloc[0]
        assert row["arch_str"] == api.meta_archs[index]
        for epochs, hp in hp_of.items():
            archres = api.query_meta_info_by_index(index, hp=hp)
            for dataset, prefix in DATASETS.items():
                if dataset not in archres.get_dataset_names():
                    assert np.isnan(row[f"{prefix}_train_acc_e{epochs}"])
                    continue
                seeds = archres.get_dataset_seeds(dataset)
                for seed in (False, *SEEDS):
                    suffix = "" if seed is False else f"_seed{seed}"
                    if seed is not False and seed not in seeds:
                        assert np.isnan(row[f"{prefix}_train_acc_e{epochs}{suffix}"])
                        continue
                    info = api.get_more_info(index, dataset, hp=hp, is_random=seed)
                    expected = {"train_acc": info["train-accuracy"], "train_loss": info["train-loss"],
                                "test_acc": info["test-accuracy"], "test_loss": info["test-loss"]}
                    if "val" in EVAL_SETS[dataset]:
                        expected.update(val_acc=info["valid-accuracy"], val_loss=info["valid-loss"])
                    for metric, value in expected.items():
                        assert row[f"{prefix}_{metric}_e{epochs}{suffix}"] == pytest.approx(value, abs=1e-9), (
                            index, epochs, dataset, seed, metric)
                        compared += 1
                costs = api.get_cost_info(index, dataset, hp=hp)
                if epochs == 200:
                    assert row[f"{prefix}_params_m"] == pytest.approx(costs["params"], abs=1e-9)
                    assert row[f"{prefix}_flops_m"] == pytest.approx(costs["flops"], abs=1e-9)
                    assert row[f"{prefix}_latency_ms"] == pytest.approx(1000 * costs["latency"], abs=1e-9)
                    compared += 3
                train_time = costs.get("T-train@total")
                assert (np.isnan(row[f"{prefix}_train_time_s_e{epochs}"]) if train_time is None
                        else row[f"{prefix}_train_time_s_e{epochs}"] == pytest.approx(train_time, abs=1e-9))
                assert str(row[f"{prefix}_seeds_e{epochs}"]) == ";".join(map(str, seeds))
    return compared


def test_nb201_pth_import_equals_the_official_api(imported, nb201_file):
    api = nas_201_api.NASBench201API(str(nb201_file), verbose=False)
    compared = _check_against_api(imported, api, {200: "200", 12: "12"})
    assert compared > 500
    assert len(imported) == N_ARCHS and imported["index"].tolist() == list(range(N_ARCHS))


def test_import_prints_progress_result_and_subset_check(imported_dir):
    out = (imported_dir / "cli.txt").read_text()
    assert "15,625/15,625 architectures" in out
    assert "nasbench201: 15625 architectures, schedules 200 epochs, 12 epochs -> " in out
    # the synthetic file holds the subset's values for 10 architectures and random ones for the other 773
    assert "check against nb201_200epoch_subset" in out and "783 architectures, 2349 values" in out
    assert "best 200-epoch accuracy per column (NAR Table 2 'Optimal' in brackets): cifar10_valid_val_acc " in out


@pytest.mark.parametrize("form", ["file", "tar"])
def test_nats_tss_import_equals_the_official_api(form, nats_file, nats_dir, tmp_path):
    """The single-file release against the official API in its normal mode, the directory release (read as the
    .tar a user downloads, whose members are the directory's files) against the API in its fast mode."""
    if form == "tar":
        source = tmp_path / "NATS-tss-v1_0-3ffb9-simple.tar"
        with tarfile.open(source, "w") as archive:
            archive.add(nats_dir, arcname=nats_dir.name)
    else:
        source = nats_file
    out = tmp_path / "nb201_official.csv"
    report = import_nasbench201(source, out)
    assert (report.source, report.archs) == ("nats_tss", N_ARCHS)
    api = (nats_bench.create(str(nats_file), "tss", fast_mode=False, verbose=False) if form == "file"
           else nats_bench.create(str(nats_dir), "tss", fast_mode=True, verbose=False))
    assert _check_against_api(_read(out), api, {200: "200", 12: "12"}) > 500


def test_nats_directory_reads_like_its_tar(nats_dir, tmp_path, monkeypatch):
    """The directory form reads the same members as the .tar (the tar test checks the values): shown on the
    first architectures by stopping the import early."""
    import nassearch.data.nb201_import as importer

    seen = []
    real_row = importer._row
    monkeypatch.setattr(importer, "_row", lambda index, arch_str, results: seen.append(index) or (
        real_row(index, arch_str, results) if index < 3 else (_ for _ in ()).throw(DataError("stop"))))
    with pytest.raises(DataError, match="stop"):
        import_nasbench201(nats_dir, tmp_path / "t.csv")
    assert seen == [0, 1, 2, 3]


def test_import_overlap_with_the_shared_200_epoch_subset(imported, data_dir, subset_values):
    subset = data.load_csv("nb201_200epoch_subset", data_dir)
    chosen = subset[subset["arch_str"].isin({a for _, a in subset_values})]
    report = compare_with_subset(imported, chosen)
    assert (report.archs, report.values) == (10, 30)
    assert report.max_abs_diff == pytest.approx(0.0, abs=1e-9)
    shifted = imported.copy()
    shifted.loc[shifted["arch_str"] == next(a for d, a in subset_values if d == "cifar100"),
                "cifar100_val_acc_e200"] += 1.5
    assert compare_with_subset(shifted, chosen).max_abs_diff == pytest.approx(1.5, abs=1e-9)
    assert compare_with_subset(imported, subset).archs == 783  # the whole subset overlaps a full import


def test_imported_table_answers_nb201_tabular_and_a_search_runs(imported, imported_dir, tmp_path):
    from nassearch.evaluators.tabular import NasBench201Tabular
    from nassearch.spaces.nasbench201 import NasBench201Space, parse_arch

    row = imported.loc[imported["index"] == 77].iloc[0]
    for dataset, (val, test) in {"cifar10": ("cifar10_valid_val_acc", "cifar10_test_acc"),
                                 "cifar100": ("cifar100_val_acc", "cifar100_test_acc"),
                                 "ImageNet16-120": ("imagenet16_val_acc", "imagenet16_test_acc")}.items():
        evaluator = NasBench201Tabular(NasBench201Space(), str(imported_dir), dataset=dataset, table="nb201_official")
        metrics = evaluator.evaluate(parse_arch(row["arch_str"])).metrics
        assert (metrics["val_acc"], metrics["test_acc"]) == (row[f"{val}_e200"], row[f"{test}_e200"])
        assert evaluator.source.startswith("nb201_official, 200-epoch schedule")
    # the synthetic file has 12-epoch results for a handful of architectures only, as v1.0 has for most datasets
    with pytest.raises(ValueError, match="has no 12-epoch results for cifar100"):
        NasBench201Tabular(NasBench201Space(), str(imported_dir), dataset="cifar100", table="nb201_official", epochs=12)
    run_dir = tmp_path / "runs"
    assert main(["run", "experiments/nb201_regevo.yaml", "--data-dir", str(imported_dir), "--set",
                 "evaluator.table=nb201_official", "--set", "budget.evaluations=30", "--set",
                 f"output.dir={run_dir}", "--set", "output.plots=false"]) == 0
    summary = json.loads(next(run_dir.rglob("nb201_regevo*/summary.json")).read_text())
    assert summary["evaluator_source"].startswith("nb201_official, 200-epoch schedule")


# ------------------------------------------------------------------------------------------------ bad input


def _run_import(path, tmp_path, capsys) -> str:
    out = tmp_path / "out" / "nb201_official.csv.gz"
    assert main(["data", "import", "nasbench201", str(path), "--out", str(out)]) != 0
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_truncated_pth_is_one_line(nb201_file, tmp_path, capsys):
    broken = tmp_path / "NAS-Bench-201-v1_1-096897.pth"
    broken.write_bytes(nb201_file.read_bytes()[:100_000])
    assert "cannot be read as a NAS-Bench-201 file" in _run_import(broken, tmp_path, capsys)


def test_corrupt_nats_file_is_one_line(nats_file, tmp_path, capsys):
    broken = tmp_path / "NATS-tss-v1_0-3ffb9-simple.pickle.pbz2"
    broken.write_bytes(nats_file.read_bytes()[:5_000])
    assert "truncated, corrupt or not a NATS-Bench file" in _run_import(broken, tmp_path, capsys)


def test_file_of_another_benchmark_is_one_line(tmp_path, capsys):
    other = tmp_path / "NATS-sss-v1_0-50262-simple.pickle.pbz2"
    nats_bench.pickle_save({"meta_archs": ["8:8:8:8:8"] * 32768, "arch2infos": {}, "evaluated_indexes": []},
                           str(other)[:-len(".pbz2")])
    assert "not NAS-Bench-201's 15625" in _run_import(other, tmp_path, capsys)
    nb101 = tmp_path / "nasbench_only108.pth"
    torch.save({"module_adjacency": [[0, 1], [0, 0]]}, nb101)
    assert "is not a NAS-Bench-201 / NATS-Bench results file" in _run_import(nb101, tmp_path, capsys)


def _side_effect(path: str) -> None:
    Path(path).write_text("the unpickler ran code")


def test_a_pickle_that_would_run_code_is_refused(tmp_path, capsys):
    marker = tmp_path / "ran.txt"

    class Payload:
        def __reduce__(self):
            return (_side_effect, (str(marker),))

    evil = tmp_path / "NATS-tss-v1_0-3ffb9-simple.pickle.pbz2"
    evil.write_bytes(bz2.compress(pickle.dumps({"meta_archs": Payload()})))
    err = _run_import(evil, tmp_path, capsys)
    assert "_side_effect object, which a results file does not" in err and not marker.exists()


def test_incomplete_release_is_one_line(nats_dir, tmp_path, capsys):
    partial = tmp_path / "NATS-tss-v1_0-3ffb9-simple"
    partial.mkdir()
    (partial / "meta.pickle.pbz2").write_bytes((nats_dir / "meta.pickle.pbz2").read_bytes())
    (partial / "000000.pickle.pbz2").write_bytes((nats_dir / "000000.pickle.pbz2").read_bytes())
    assert "lacks 000001.pickle.pbz2" in _run_import(partial, tmp_path, capsys)


def test_missing_package_says_what_to_install(nats_file, tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_nats(name, *args, **kwargs):
        if name == "nats_bench":
            raise ImportError("No module named 'nats_bench'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_nats)
    assert 'pip install -e ".[nb201]"' in _run_import(nats_file, tmp_path, capsys)


def test_evaluator_settings_are_checked(data_dir):
    from nassearch.evaluators.tabular import NasBench201Tabular
    from nassearch.spaces.nasbench201 import NasBench201Space

    with pytest.raises(ValueError, match="12-epoch schedule only"):
        NasBench201Tabular(NasBench201Space(), str(data_dir), epochs=200)
    with pytest.raises(ValueError, match="table must be one of nb201_12epoch, nb201_official"):
        NasBench201Tabular(NasBench201Space(), str(data_dir), table="nb201")
    with pytest.raises(DataError, match="nb201_official.csv.gz not found") as missing:
        NasBench201Tabular(NasBench201Space(), str(data_dir), table="nb201_official")
    assert "made by `nassearch data import nasbench201 FILE`" in str(missing.value)  # how to make it, not fetch it
    assert issubclass(DataError, NassearchError)


def test_every_shipped_nb201_experiment_takes_the_imported_table(imported_dir, data_dir):
    """`--set evaluator.table=nb201_official` works for each distinct evaluator section of experiments/*.yaml."""
    import yaml

    from nassearch import config as cfg
    from nassearch.spaces.nasbench201 import NasBench201Space

    latency = data.TABLES["nb201_latency"].path
    (imported_dir / latency).write_bytes((data_dir / latency).read_bytes())
    sections = {}
    for path in sorted(Path("experiments").glob("*.yaml")):
        section = (yaml.safe_load(path.read_text()) or {}).get("evaluator", {})
        if section.get("name") == "nb201_tabular":
            sections.setdefault(json.dumps(section, sort_keys=True), path.name)
    assert len(sections) >= 3
    for text, name in sections.items():
        section = cfg.resolve_component("evaluator", {**json.loads(text), "table": "nb201_official"})
        evaluator = cfg.build_component("evaluator", section, space=NasBench201Space(), data_dir=str(imported_dir))
        assert evaluator.epochs == 200 and len(evaluator.reference_values("val_acc")) == N_ARCHS, name
