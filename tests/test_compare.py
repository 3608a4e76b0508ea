"""``nassearch compare``: one row per run directory, numbers taken from its summary."""

import json

import numpy as np
import pytest

from nassearch.cli import main
from nassearch.compare import comparison_row, comparison_table


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, data_dir):
    from nassearch import config as cfg
    from nassearch.runner import run as run_search

    root = tmp_path_factory.mktemp("compare")
    dirs = []
    for name, searcher in (("re", {"name": "regularized_evolution", "population_size": 10, "sample_size": 3}),
                           ("rs", {"name": "random_search"})):
        raw = {"name": name, "seed": 3, "space": {"name": "nasbench201"},
               "evaluator": {"name": "nb201_tabular", "dataset": "cifar100"}, "searcher": searcher,
               "budget": {"evaluations": 30}, "objectives": [{"metric": "val_acc", "mode": "max"}],
               "output": {"dir": str(root), "progress": False, "plots": False}}
        dirs.append(run_search(cfg.validate(raw), repeats=3, data_dir=str(data_dir)).run_dir)
    return dirs


def test_row_holds_the_seeds_mean_and_ranks(two_runs):
    summary = json.loads((two_runs[0] / "summary.json").read_text())
    accuracies = [s["best"]["metrics"]["test_acc"] for s in summary["per_seed"].values()]
    ranks = [s["best"]["standing"]["rank"] for s in summary["per_seed"].values()]
    row = comparison_row(two_runs[0])
    assert row[:6] == ["re", "regularized_evolution", "nasbench201 / nb201_tabular cifar100", "30", "3", "test_acc"]
    assert row[6] == f"{np.mean(accuracies):.3f} ± {np.std(accuracies):.3f}"
    assert row[7:10] == [f"{np.median(ranks):.0f}", f"{np.mean(ranks):.1f}", f"{max(ranks)}"]
    assert row[10] == ""  # single objective: no hypervolume


def test_table_has_a_header_and_one_row_per_run(two_runs, capsys):
    table = comparison_table(two_runs)
    lines = table.splitlines()
    assert len(lines) == 4 and lines[0].startswith("| run | searcher |") and lines[3].startswith("| rs | random_search")
    assert main(["compare", *map(str, two_runs)]) == 0
    assert capsys.readouterr().out.strip() == table


def test_a_directory_without_a_summary_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text("{not json")
    assert main(["compare", str(tmp_path / "missing")]) != 0
    assert "has no summary.json: it is not a finished run directory" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "broken")]) != 0
    assert "is not a run summary" in capsys.readouterr().err
