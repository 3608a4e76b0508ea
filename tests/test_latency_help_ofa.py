"""HELP's OFA MobileNetV3 latency table as a latency-benchmark source: rows -> OFAArch -> whole-network graphs
equal to tracing the built subnet, one clear DataError for a damaged table, and a tiny end-to-end benchmark."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nassearch.bench.latency import HELP_OFA_DEVICES, RESULTS, run_latency_bench, validate_latency_bench
from nassearch.data import tables
from nassearch.data.latency_dataset import (HELP_OFA_RESOLUTIONS, HELP_OFA_TABLE, OFAGraphBuilder,
                                            help_ofa_latency_archs)
from nassearch.errors import ConfigError, DataError
from nassearch.latency.network_graph import network_graph
from nassearch.spaces.ofa_mbv3 import MAX_DEPTH, NUM_BLOCKS, OFAMobileNetV3Space, active_blocks
from tests.test_latency_dataset import assert_same_graph
from tests.test_ofa_evaluators import reregister

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TABLE_PATH = tables.TABLES[HELP_OFA_TABLE].path


@pytest.fixture(scope="module")
def raw_table(data_dir) -> pd.DataFrame:
    """The table as pandas reads it (independently of nassearch.data.tables)."""
    return pd.read_csv(data_dir / TABLE_PATH)


@pytest.fixture(scope="module")
def help_archs(data_dir):
    return help_ofa_latency_archs(data_dir)[0]


@pytest.fixture(scope="module")
def builders() -> dict[int, OFAGraphBuilder]:
    """Graph builders at batch 1 and 32, shared so that their traced pieces are reused."""
    return {1: OFAGraphBuilder(1), 32: OFAGraphBuilder(32)}


@pytest.fixture
def table_copy(data_dir, tmp_path) -> Path:
    """A private data directory holding a copy of the table."""
    (tmp_path / TABLE_PATH).parent.mkdir(parents=True)
    shutil.copyfile(data_dir / TABLE_PATH, tmp_path / TABLE_PATH)
    return tmp_path


def write_table(monkeypatch, root: Path, frame: pd.DataFrame) -> None:
    """Write ``frame`` as the table under ``root`` and register its checksum and row count."""
    reregister(monkeypatch, root, HELP_OFA_TABLE, frame.to_csv(index=False).encode())
    monkeypatch.setitem(tables.TABLES, HELP_OFA_TABLE, dataclasses.replace(tables.TABLES[HELP_OFA_TABLE],
                                                                           rows=len(frame)))


# ------------------------------------------------------------------------------------------- rows -> archs


def test_every_row_becomes_its_arch(help_archs, raw_table):
    assert len(help_archs) == len(raw_table) == 5000
    space = OFAMobileNetV3Space(resolutions=HELP_OFA_RESOLUTIONS)
    for arch in help_archs:
        space.validate(arch)
    assert np.array_equal([a.r for a in help_archs], raw_table["r"])
    assert np.array_equal([a.d for a in help_archs], raw_table[[f"d_{s}" for s in range(5)]])
    assert {a.r for a in help_archs} == set(HELP_OFA_RESOLUTIONS)
    for row in (0, 1, 2345, 4999):
        arch, values = help_archs[row], raw_table.iloc[row]
        active = active_blocks(arch)
        assert [arch.ks[i] for i in active] == [values[f"ks_{i}"] for i in active]
        assert [arch.e[i] for i in active] == [values[f"e_{i}"] for i in active]
        inactive = [i for i in range(NUM_BLOCKS) if i not in active]
        assert inactive and all(arch.ks[i] == 3 and arch.e[i] == 3 for i in inactive)  # canonical
        assert arch == space.canonical(arch)


@pytest.mark.parametrize("row, batch", [(0, 1), (4999, 1), (2, 32)])
def test_builder_graph_equals_tracing_the_built_subnet(help_archs, builders, row, batch):
    arch = help_archs[row]
    model = OFAMobileNetV3Space(resolutions=HELP_OFA_RESOLUTIONS).build_model(arch)
    if batch > 1:
        model = model.to("meta")  # shapes only: a batch of 32 ImageNet images is not computed
    traced = network_graph(model, (batch, 3, arch.r, arch.r))
    built = builders[batch].graph(arch)
    assert_same_graph(built, traced)
    assert built.graph_attrs["batch_size"] == batch and 200 < built.num_nodes < 400


def test_batch_scales_flops_but_not_params(help_archs, builders):
    one, many = builders[1].graph(help_archs[2]), builders[32].graph(help_archs[2])
    assert many.graph_attrs["flops"] == pytest.approx(32 * one.graph_attrs["flops"])
    assert many.graph_attrs["params"] == one.graph_attrs["params"]
    # weights are read once per batch, activations once per image
    assert one.graph_attrs["memory_access"] < many.graph_attrs["memory_access"] < 32 * one.graph_attrs["memory_access"]
    assert np.array_equal(many.adjacency, one.adjacency)
    with pytest.raises(ValueError, match="batch must be >= 1"):
        OFAGraphBuilder(0)


# ------------------------------------------------------------------------------------------- damaged tables


def test_a_changed_byte_fails_the_checksum(table_copy):
    payload = bytearray((table_copy / TABLE_PATH).read_bytes())
    payload[len(payload) // 2] ^= 0x01
    (table_copy / TABLE_PATH).write_bytes(bytes(payload))
    with pytest.raises(DataError, match=rf"{TABLE_PATH} is corrupt: sha256"):
        help_ofa_latency_archs(table_copy)


@pytest.mark.parametrize("column, value, message", [
    ("ks_1", 4, "line 5: column ks_1 holds 4, expected an active block's kernel 3, 5 or 7"),
    ("e_8", "x", "line 5: column e_8 holds x, expected an active block's expansion 3, 4 or 6"),
    ("d_2", 5, "line 5: column d_2 holds 5, expected a depth 2, 3 or 4"),
    ("r", 130, "line 5: column r holds 130, expected a resolution 128..224 step 4"),
    ("r", None, "line 5: column r holds an empty value, expected a resolution"),
])
def test_a_bad_gene_names_the_line_and_column(monkeypatch, table_copy, raw_table, column, value, message):
    frame = raw_table.copy().astype({column: object})
    frame.loc[3, column] = value  # slots 1 and 8 are always active: every stage runs at least 2 blocks
    write_table(monkeypatch, table_copy, frame)
    with pytest.raises(DataError, match=f"{TABLE_PATH}, {message}.*replace it with the original"):
        help_ofa_latency_archs(table_copy)


def test_a_missing_column_is_named(monkeypatch, table_copy, raw_table):
    write_table(monkeypatch, table_copy, raw_table.drop(columns=["e_17"]))
    with pytest.raises(DataError, match=f"{TABLE_PATH} lacks column e_17; replace it with the original"):
        help_ofa_latency_archs(table_copy)


def test_inactive_slots_may_hold_anything(monkeypatch, table_copy, raw_table, help_archs):
    depths = raw_table[[f"d_{s}" for s in range(5)]].to_numpy()
    inactive = np.arange(NUM_BLOCKS) % MAX_DEPTH >= np.repeat(depths, MAX_DEPTH, axis=1)
    frame = raw_table.copy()
    for prefix, junk in (("ks", None), ("e", "junk")):  # empty kernels (a float column), text expansions
        columns = [f"{prefix}_{i}" for i in range(NUM_BLOCKS)]
        frame[columns] = frame[columns].astype(object).mask(inactive, junk)
    write_table(monkeypatch, table_copy, frame)
    assert help_ofa_latency_archs(table_copy)[0] == help_archs


# ------------------------------------------------------------------------------------------- the benchmark


def help_config(tmp_path, devices) -> dict:
    return {"name": "help", "seed": 0,
            "benchmark": {"source": {"name": "help_ofa", "devices": devices}, "train_fraction": 0.5, "seeds": 1,
                          "workers": 1, "predictors": [{"name": "static_xgb", "n_estimators": 20}]},
            "output": {"dir": str(tmp_path / "runs")}}


def test_config_devices(tmp_path):
    assert validate_latency_bench(help_config(tmp_path, "all")).source["devices"] == "all"
    source = validate_latency_bench(help_config(tmp_path, ["lat_v100_bs1", "titan_xp_bs64"])).source
    assert source == {"name": "help_ofa", "devices": ["v100_bs1", "titan_xp_bs64"]}
    assert len(HELP_OFA_DEVICES) == 12 and "2080ti_bs32" in HELP_OFA_DEVICES
    with pytest.raises(ConfigError, match="unknown HELP OFA latency device '1080ti_bs1'; known: all, 2080ti_bs1"):
        validate_latency_bench(help_config(tmp_path, ["1080ti_bs1"]))


def test_a_zero_latency_stops_the_benchmark_before_any_graph(monkeypatch, table_copy, raw_table, tmp_path):
    frame = raw_table.copy()
    frame.loc[10, "lat_titan_xp_bs1"] = 0.0
    write_table(monkeypatch, table_copy, frame)
    with pytest.raises(DataError, match="the HELP OFA latency table, line 12: column lat_titan_xp_bs1: latency 0 ms "
                                        r"\(1 such value\(s\) in all\); latencies must be finite and > 0"):
        run_latency_bench(help_config(tmp_path, ["v100_bs1", "titan_xp_bs1"]), data_dir=table_copy)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_tiny_benchmark_on_a_few_rows(monkeypatch, table_copy, raw_table, tmp_path):
    write_table(monkeypatch, table_copy, raw_table.iloc[:24])
    outcome = run_latency_bench(help_config(tmp_path, ["v100_bs1", "v100_bs32"]), data_dir=table_copy)
    rows = RESULTS.read(outcome.run_dir / "results.csv")
    assert [(r["device"], r["train_size"], r["test_size"]) for r in rows] == [("v100_bs1", 12, 12),
                                                                              ("v100_bs32", 12, 12)]
    assert all(np.isfinite(r["mape"]) and r["mape"] < 50 and 0 <= r["acc10"] <= 100 for r in rows)
    with np.load(outcome.run_dir / "predictions" / "static_xgb" / "v100_bs32__random.npz") as npz:
        assert np.array_equal(npz["true"], raw_table["lat_v100_bs32"].to_numpy()[npz["index"]])
    assert "HELP's OFA MobileNetV3 latency table (24 subnets" in (outcome.run_dir / "results.md").read_text()
    # the same rows with a damaged gene: the benchmark stops with the table's one error
    frame = raw_table.iloc[:24].copy()
    frame.loc[7, "d_4"] = 1
    write_table(monkeypatch, table_copy, frame)
    with pytest.raises(DataError, match="line 9: column d_4 holds 1, expected a depth 2, 3 or 4"):
        run_latency_bench(help_config(tmp_path, ["v100_bs1"]), data_dir=table_copy, overwrite=True)
