"""The benchmark harness on a toy benchmark: results file, resumable cell loop, worker pool, tables."""

from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from nassearch.bench.harness import BenchConfigBase, CellRun, ResultColumns, aligned_table, mean_std

COLUMNS = ResultColumns({"name": str, "seed": int, "value": float}, key=2)


@dataclass(frozen=True)
class ToyConfig(BenchConfigBase):
    benchmark: dict[str, Any]


def square(job, shared):
    name, seed = job
    return name, seed, shared[name] * seed ** 2


def run_toy(run_dir, names, seeds=3, workers=1):
    config = ToyConfig("toy", 1, {"seeds": seeds})
    cells = CellRun(run_dir, config, COLUMNS, {(n, s): (n, s) for n in names for s in config.seeds})
    pending = list(cells.pending)
    for name, seed, value in cells.run(square, {"a": 1.0, "b": 10.0}, workers):
        cells.add({"name": name, "seed": seed, "value": value})
    return pending, cells.finish(lambda rows: f"{len(rows)} rows")


def test_results_file_round_trip_and_half_written_rows(tmp_path):
    path = tmp_path / "results.csv"
    assert COLUMNS.read(path) == []
    COLUMNS.write(path, [{"name": "a", "seed": 1, "value": 0.5}])
    COLUMNS.append(path, {"name": "b", "seed": 2, "value": 1.5})
    with path.open("a") as handle:
        handle.write("c,3")
    rows = COLUMNS.read(path)
    assert rows == [{"name": "a", "seed": 1, "value": 0.5}, {"name": "b", "seed": 2, "value": 1.5}]
    assert [COLUMNS.cell(r) for r in rows] == [("a", 1), ("b", 2)] and COLUMNS.names == ("name", "seed", "value")
    assert not path.with_suffix(".tmp").exists()


def test_cell_loop_skips_finished_cells_and_keeps_other_rows(tmp_path):
    pending, outcome = run_toy(tmp_path, ["a"])
    assert pending == [("a", 1), ("a", 2), ("a", 3)] and outcome.computed == 3 and outcome.table == "3 rows"
    assert (tmp_path / "results.md").read_text() == "3 rows\n"
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == {"name": "toy", "seed": 1,
                                                                      "benchmark": {"seeds": 3}}
    lines = (tmp_path / "results.csv").read_text().splitlines()
    (tmp_path / "results.csv").write_text("\n".join(lines[:2] + ["a,3,"]))  # seed 2 lost, seed 3 half-written
    pending, outcome = run_toy(tmp_path, ["a", "b"], seeds=2, workers=2)
    assert pending == [("a", 2), ("b", 1), ("b", 2)] and outcome.computed == 3
    assert sorted((r["name"], r["seed"], r["value"]) for r in outcome.rows) == [
        ("a", 1, 1.0), ("a", 2, 4.0), ("b", 1, 10.0), ("b", 2, 40.0)]
    pending, outcome = run_toy(tmp_path, ["b"], seeds=1)  # other cells' rows stay in the file, not in the outcome
    assert pending == [] and outcome.computed == 0 and [COLUMNS.cell(r) for r in outcome.rows] == [("b", 1)]
    assert len(COLUMNS.read(tmp_path / "results.csv")) == 4


def test_tables():
    assert mean_std([1.0, 3.0], ".2f") == "2.00 ± 1.00"
    assert aligned_table("T", ["ab", "c"], [["x", "yy"]]) == "T\nab  c\nx   yy"
    assert aligned_table("T", ["a", "b"], [["x", "1"]], specs=["<3", ">4"], sep="") == "T\na     b\nx     1"


@pytest.mark.parametrize("workers", [1, 2])
def test_serial_and_pool_give_the_same_rows(tmp_path, workers):
    _, outcome = run_toy(tmp_path, ["a", "b"], workers=workers)
    assert sorted(COLUMNS.cell(r) + (r["value"],) for r in outcome.rows) == [
        ("a", 1, 1.0), ("a", 2, 4.0), ("a", 3, 9.0), ("b", 1, 10.0), ("b", 2, 40.0), ("b", 3, 90.0)]
