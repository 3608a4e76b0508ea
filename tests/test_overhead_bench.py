"""``nassearch bench overhead``: the window arithmetic on synthetic timings, a tiny run of every searcher on the
DARTS space (a cheap stand-in evaluator), and the command's table."""

from __future__ import annotations

import pytest

from nassearch.evaluators.base import Evaluator, Result
from nassearch import config as cfg
from nassearch.cli import main
from nassearch.errors import ConfigError
from nassearch.executors import SerialExecutor
from nassearch.bench.overhead import Timings, format_rows, measure, ratio, verdict, window_costs
from nassearch.runner import Components
from nassearch.spaces.darts import DartsSpace


def synthetic(n: int, overhead_ms, evaluator_ms: float = 2.0, predictor_every: int = 0,
              slowdown=lambda i: 1.0) -> tuple[list[float], Timings]:
    """``finished`` timestamps and timings of ``n`` queries of one trial each: query ``i`` spends
    ``overhead_ms(i)`` of CPU time in the engine and searcher (half in ``ask``, a quarter each in the store's
    commit and in ``tell``), ``evaluator_ms`` in the evaluator and, every ``predictor_every`` queries, 50 ms
    fitting the predictor inside ``ask``; wall time is CPU time times ``slowdown(i)`` (other processes' load)."""
    timings = Timings()
    finished, clock = [], {"wall": 1000.0, "cpu": 5.0}

    def spend(ms: float, i: int) -> tuple[float, float]:
        clock["wall"] += ms * slowdown(i) / 1000
        clock["cpu"] += ms / 1000
        return ms * slowdown(i) / 1000, ms / 1000

    def call(kind: str, seconds: tuple[float, float]) -> None:
        timings.record(kind, clock["wall"], seconds[0], clock["cpu"], seconds[1])

    for i in range(n):
        fit = spend(50.0 if predictor_every and i % predictor_every == 0 else 0.0, i)
        if fit[0]:
            call("predictor", fit)
        ask = spend(overhead_ms(i) / 2, i)
        call("ask", (ask[0] + fit[0], ask[1] + fit[1]))
        call("evaluator", spend(evaluator_ms, i))
        spend(overhead_ms(i) / 4, i)  # the store's commit
        finished.append(clock["wall"])
        call("tell", spend(overhead_ms(i) / 4, i))
    return finished, timings


def test_window_costs_subtract_evaluator_and_predictor_and_split_the_rest():
    finished, timings = synthetic(400, lambda i: 1.0, predictor_every=100)
    early = window_costs(finished, timings, 100, 200)
    assert early.wall_ms == pytest.approx(1.0 + 2.0 + 0.5)  # one 50 ms fit in 100 queries
    assert early.evaluator_ms == pytest.approx(2.0)
    assert early.predictor_ms == pytest.approx(0.5)
    assert early.overhead_ms == pytest.approx(1.0) and early.cpu_overhead_ms == pytest.approx(1.0)
    assert early.searcher_ms == pytest.approx(0.75) and early.engine_ms == pytest.approx(0.25)
    late = window_costs(finished, timings, 300, 400)
    assert ratio(early, late) == pytest.approx(1.0) and verdict(early, late) == "yes"
    with pytest.raises(ValueError):
        window_costs(finished, timings, 0, 100)  # needs the trial before the window


def grows(i):
    return 1.0 + i / 100  # 1 ms at the start, 5 ms at the end


def test_growing_overhead_fails_the_limit_and_load_alone_does_not():
    def expected(a, b):  # ask + commit of queries a .. b - 1, tell of queries a - 1 .. b - 2
        return (0.75 * sum(grows(i) for i in range(a, b)) + 0.25 * sum(grows(i) for i in range(a - 1, b - 1))) / (b - a)

    finished, timings = synthetic(400, grows)
    early, late = window_costs(finished, timings, 100, 200), window_costs(finished, timings, 300, 400)
    assert early.overhead_ms == pytest.approx(expected(100, 200)) == pytest.approx(2.4925)
    assert late.overhead_ms == pytest.approx(expected(300, 400)) == pytest.approx(4.4925)
    assert ratio(early, late) == pytest.approx(4.4925 / 2.4925) and ratio(early, late, cpu=True) > 1.7
    assert verdict(early, late) == "NO"

    loaded = synthetic(400, lambda i: 1.0, slowdown=lambda i: 3.0 if i >= 250 else 1.0)
    loaded_early, loaded_late = window_costs(*loaded, 100, 200), window_costs(*loaded, 300, 400)
    assert loaded_late.overhead_ms == pytest.approx(3.0) and loaded_late.evaluator_ms == pytest.approx(6.0)
    assert loaded_late.cpu_overhead_ms == pytest.approx(1.0) and verdict(loaded_early, loaded_late) == "load"

    flat = synthetic(400, lambda i: 1.0)
    rows = [{"config": name, "searcher": "random_search", "queries": 400, "late_by": "searched", "early": a,
             "late": b, "ratio": ratio(a, b), "cpu_ratio": ratio(a, b, cpu=True), "verdict": verdict(a, b),
             "wall_s": 1.0}
            for name, a, b in (("grows", early, late), ("loaded", loaded_early, loaded_late),
                               ("flat", window_costs(*flat, 100, 200), window_costs(*flat, 300, 400)))]
    table = format_rows(rows, "title", 100, 100).splitlines()
    assert table[0] == "title" and "per-query overhead =" in table[1]
    cells = {line.split()[0]: line.split() for line in table[-3:]}
    assert cells["grows"][6] == "1.80" and cells["grows"][10] == "NO"
    assert cells["loaded"][6:11] == ["3.00", "1.000", "1.000", "1.00", "load"]
    assert cells["flat"][6] == "1.00" and cells["flat"][10] == "yes"


class CellCounts(Evaluator):
    """A cheap stand-in for the NB301 surrogate: val_acc and params from the cells' operation counts."""

    @property
    def metrics(self):
        return ("val_acc", "params")

    def evaluate(self, arch):
        ops = [op for op, _ in arch.normal + arch.reduce]
        convs = sum(op.startswith(("sep", "dil")) for op in ops)
        return Result({"val_acc": 90.0 + convs / 4 + len(set(arch.normal)) / 10, "params": 1.0 + convs / 8}, 1.0)


SEARCHERS = [
    ({"name": "random_search"}, None, False),
    ({"name": "regularized_evolution", "population_size": 20, "sample_size": 5}, None, False),
    ({"name": "nsga2", "population_size": 20}, None, False),
    ({"name": "predictor_evolution", "initial_samples": 10, "num_parents": 5, "pool_size": 40,
      "evaluations_per_round": 20}, {"name": "xgb", "n_estimators": 3, "max_depth": 2}, True),
]


def darts_config(searcher, predictor, evaluations=300):
    return cfg.validate({"name": f"t_{searcher['name']}", "space": {"name": "darts"},
                         "evaluator": {"name": "nb301_surrogate"}, "searcher": searcher, "predictor": predictor,
                         "budget": {"evaluations": evaluations, "batch_size": 1},
                         "objectives": [{"metric": "val_acc", "mode": "max"}, {"metric": "params", "mode": "min"}],
                         "output": {"progress": False, "plots": False}})


@pytest.fixture(scope="module")
def darts_parts():
    space = DartsSpace()
    return Components(space, CellCounts(space), SerialExecutor())


@pytest.mark.parametrize("searcher, predictor, prefill", SEARCHERS, ids=[s[0]["name"] for s in SEARCHERS])
def test_every_searcher_runs_through_the_real_loop(darts_parts, tmp_path, searcher, predictor, prefill):
    row = measure(darts_config(searcher, predictor), darts_parts, early=50, window=50, prefill=prefill,
                  directory=tmp_path)
    assert row["queries"] == 300 and row["searcher"] == searcher["name"]
    assert row["late_by"] == ("pre-filled to 249" if prefill else "searched")
    for window in (row["early"], row["late"]):
        assert window.overhead_ms > 0 and window.evaluator_ms > 0 and window.searcher_ms > 0
    assert (row["late"].predictor_ms > 0) == (predictor is not None)
    assert row["ratio"] == pytest.approx(row["late"].overhead_ms / row["early"].overhead_ms)
    assert searcher["name"] in format_rows([row], "t", 50, 50).splitlines()[-1]


def test_windows_and_prefill_are_checked(darts_parts):
    config = darts_config(*SEARCHERS[2][:2])
    with pytest.raises(ConfigError, match="replays its generations"):
        measure(config, darts_parts, early=50, window=50, prefill=True)
    with pytest.raises(ConfigError, match="must end before the late one"):
        measure(config, darts_parts, early=100, window=150)
    with pytest.raises(ConfigError, match="multiples of budget.batch_size"):
        measure(cfg.validate({**config.to_dict(), "budget": {"evaluations": 300, "batch_size": 20}}), darts_parts,
                early=50, window=50)


def test_bench_overhead_command_prints_the_table(make_config, data_dir, capsys):
    config = str(make_config(searcher={"name": "random_search"}, budget={"evaluations": 300}))
    assert main(["bench", "overhead", config, "--early", "100", "--window", "100", "--data-dir",
                 str(data_dir)]) in (0, 1)  # 1: a ratio over the limit (possible on a busy machine)
    out = capsys.readouterr().out.splitlines()
    assert "per-query overhead =" in out[1] and out[-2].split()[:3] == ["config", "searcher", "queries"]
    assert out[-1].split()[:4] == ["t", "random_search", "300", "searched"]
    assert main(["bench", "overhead", config, "--early", "0", "--data-dir", str(data_dir)]) == 2
    assert main(["bench", "overhead", config, "--prefill", "nsga2", "--data-dir", str(data_dir)]) == 2
