"""The command line: results on stdout, and one-line errors with exit status 2 for user mistakes."""

import json
import subprocess
import sys

import pytest
import yaml

from nassearch.cli import main

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def one_line_error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("nassearch: error: ") and "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.slow
def test_run_prints_table_and_plot_overlays(make_config, data_dir, capsys, tmp_path):
    path = make_config(budget={"evaluations": 20})
    assert main(["run", str(path), "--repeats", "2", "--data-dir", str(data_dir), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "mean±std" in out and "percentile" in out
    run_dir = tmp_path / "runs" / "t"
    out_png = tmp_path / "overlay.png"
    assert main(["plot", str(run_dir), str(run_dir), "--out", str(out_png)]) == 0
    assert out_png.stat().st_size > 10_000


@pytest.mark.slow
def test_eval_prints_metrics_for_arch_strings(make_config, data_dir, capsys):
    assert main(["eval", str(make_config()), BEST, "--data-dir", str(data_dir)]) == 0
    record = json.loads(capsys.readouterr().out.strip())
    assert record["arch"] == BEST and 0 < record["test_acc"] <= 100 and record["params"] > 1.0


@pytest.mark.parametrize("argv_tail, message", [
    (["--set", "serch.x=1"], "serch: unknown key at the top level"),
    (["--set", "searcher.population_size=abc"], "searcher.population_size: expected an integer, got str 'abc'"),
    (["--set", "searcher.sample_size=500"], "sample_size must lie in 1..population_size"),
    (["--set", "objectives.0.metric=accuracy"], "objectives[0].metric: 'accuracy' is not a metric"),
])
@pytest.mark.slow
def test_bad_config_is_one_line(make_config, data_dir, capsys, argv_tail, message):
    err = one_line_error(capsys, ["run", str(make_config()), "--data-dir", str(data_dir), *argv_tail])
    assert message in err


@pytest.mark.slow
def test_malformed_arch_string_is_one_line(make_config, data_dir, capsys):
    err = one_line_error(capsys, ["eval", str(make_config()), "|nor_conv_3x3~0|+|conv_7x7~0|none~1|",
                                  "--data-dir", str(data_dir)])
    assert "malformed NAS-Bench-201 architecture" in err and "found 2 node group(s)" in err


def test_missing_data_dir_and_missing_table_are_one_line(make_config, capsys, tmp_path):
    err = one_line_error(capsys, ["run", str(make_config()), "--data-dir", str(tmp_path / "nowhere")])
    assert "does not exist" in err and "NASSEARCH_DATA" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    err = one_line_error(capsys, ["run", str(make_config(name="t3")), "--data-dir", str(empty)])
    assert "nasbench201/nb201_12epoch.csv.gz not found" in err


@pytest.mark.slow
def test_data_list_and_verify(data_dir, capsys, tmp_path):
    assert main(["data", "verify", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert out.count("  ok  ") >= 14 and "corrupt" not in out
    assert main(["data", "list", "--data-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.count("missing") >= 14


@pytest.mark.slow
def test_bench_evaluator_prints_throughput(make_config, data_dir, capsys):
    assert main(["bench", "evaluator", str(make_config()), "--data-dir", str(data_dir),
                 "--batch-sizes", "10", "1000", "--rounds", "2"]) == 0
    out = capsys.readouterr().out
    assert "query_batch" in out and "evaluate_batch" in out and "queries/s" in out


@pytest.mark.slow
def test_bench_executor_times_the_serial_executor_and_checks_delay(make_config, data_dir, capsys):
    config = str(make_config(budget={"evaluations": 6, "batch_size": 3}))
    assert main(["bench", "executor", config, "--delay", "0.05", "--data-dir", str(data_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "delayed by 0.05 s" in lines[0] and lines[1].split()[:4] == ["executor", "max_concurrent", "evaluations",
                                                                         "failed"]
    serial = lines[2].split()
    assert serial[:4] == ["serial", "1", "6", "0"] and float(serial[5]) >= 0.25 and serial[-1] == "yes"
    assert main(["bench", "executor", config, "--delay", "-1"]) == 2
    assert "--delay must be >= 0" in capsys.readouterr().err


@pytest.mark.slow
def test_console_script_exits_nonzero_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "x", "space": {"name": "nasbench201"}, "serch": 1}))
    proc = subprocess.run([sys.executable, "-m", "nassearch", "run", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("nassearch: error: serch: unknown key")
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_spaces_list_and_verify_nasbench201(data_dir, capsys):
    assert main(["spaces", "list"]) == 0
    out = capsys.readouterr().out
    assert "nasbench101    423,624 architectures" in out and "nasbench201    15,625 architectures" in out
    assert main(["spaces", "verify", "nasbench201", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "enumerate() == table cells              15625     15625" in out
    assert out.count("783       783") == 6


@pytest.mark.slow
def test_darts_search_prints_the_retrain_command_of_its_best_cell(data_dir, capsys, tmp_path):
    from nassearch.training.retrain import resolve_target
    from nassearch.spaces.darts_notation import format_genotype

    config = tmp_path / "darts.yaml"
    config.write_text(yaml.safe_dump({
        "name": "d", "space": {"name": "darts", "layers": 5, "init_channels": 8}, "evaluator": {"name": "nb301_surrogate"},
        "searcher": {"name": "random_search"}, "budget": {"evaluations": 4, "batch_size": 2},
        "objectives": [{"metric": "val_acc"}], "output": {"dir": str(tmp_path / "runs"), "report_metric": "val_acc"}}))
    assert main(["run", str(config), "--repeats", "2", "--data-dir", str(data_dir), "--quiet"]) == 0
    run_dir = tmp_path / "runs" / "d"
    command = f"nassearch retrain {run_dir} --config experiments/darts_retrain.yaml"
    assert f"retrain the best cell: {command}" in capsys.readouterr().out
    assert json.loads((run_dir / "summary.json").read_text())["retrain_command"] == command
    seeds = [json.loads((run_dir / f"seed-{s}" / "summary.json").read_text())["best"] for s in (0, 1)]
    best = max(seeds, key=lambda b: b["metrics"]["val_acc"])
    assert format_genotype(resolve_target(str(run_dir)).genotype) == best["arch"]
