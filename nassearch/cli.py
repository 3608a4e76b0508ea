"""The ``nassearch`` command line: run, plot, compare, eval, data, spaces, bench, retrain.

User mistakes (bad config, bad architecture, missing data, unusable run directory) print one line,
``nassearch: error: ...``, and exit with status 2. Results go to stdout; progress and logs to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nassearch import __version__
from nassearch import config as cfg
from nassearch.errors import DataError, NassearchError, user_message
from nassearch.threads import limit_threads

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """A parser that takes ``-v`` too; its subcommands' parsers are of this class, so ``-v`` may follow any
    command's name (``nassearch run CONFIG -v``) as well as precede it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                          help="log progress details to stderr")


def _add_threads_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads of torch, xgboost, onnxruntime (default: the config's threads, else half "
                             "the CPUs, at most 4); 1 when sharing the machine with busy processes")


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment YAML, e.g. experiments/nb201_regevo.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value (repeatable), e.g. --set searcher.population_size=50")
    parser.add_argument("--data-dir", default=None, help="benchmark data folder (default: $NASSEARCH_DATA, "
                                                          "then ~/.cache/nassearch)")
    _add_threads_arg(parser)


def _load_config(args: argparse.Namespace) -> cfg.RunConfig:
    """The command's run config, its CPU thread cap applied (``--threads``, else the config's ``threads``)."""
    config = cfg.load(args.config, args.overrides)
    limit_threads(config.threads if args.threads is None else args.threads)
    return config


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nassearch", description="Predictor-guided neural architecture search.")
    parser.add_argument("--version", action="version", version=f"nassearch {__version__}")
    parser.set_defaults(verbose=False)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="search as a config says; write trials, summary and plots")
    _add_config_args(run)
    run.add_argument("--repeats", type=int, default=1, help="run seeds seed..seed+K-1 and report mean ± std")
    run.add_argument("--resume", metavar="RUN_DIR", default=None, help="continue a killed or shorter run")
    run.add_argument("--overwrite", action="store_true",
                     help="replace an existing run directory (only one that nassearch created)")
    run.add_argument("--repair", action="store_true",
                     help="with --resume: cut a damaged run directory back to its intact trials (keeping a backup) "
                          "and continue from there")
    run.add_argument("--quiet", action="store_true", help="no progress bar")

    plot = commands.add_parser("plot", help="overlay the search curves of one or more run directories")
    plot.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    plot.add_argument("--pareto", action="store_true",
                      help="overlay the runs' Pareto fronts (multi-objective runs) instead of search curves")
    plot.add_argument("--data-dir", default=None, help="benchmark data folder (the true front of --pareto, spaces "
                                                       "restricted to a table)")
    plot.add_argument("--metric", default=None, help="metric to plot (default: each run's report metric)")
    plot.add_argument("--out", default=None, help="output PNG (default: FIRST_RUN_DIR/plots/search_curves.png)")

    compare = commands.add_parser("compare", help="one markdown row per finished run directory: mean ± std, median / "
                                                   "mean / worst rank, hypervolume ratio over its seeds")
    compare.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")

    evaluate = commands.add_parser("eval", help="evaluate architecture strings with a config's evaluator")
    _add_config_args(evaluate)
    evaluate.add_argument("archs", nargs="+", metavar="ARCH", help="architecture string(s) in the space's notation; "
                                                                  "in the darts space also a published genotype's "
                                                                  "name (DARTS_V2, ...)")

    data = commands.add_parser("data", help="benchmark tables: list or verify them")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    for name, text in (("list", "every known table, present or missing, with its source"),
                       ("verify", "check sha256 and schema of every present table")):
        sub = data_commands.add_parser(name, help=text)
        sub.add_argument("--data-dir", default=None)
    importer = data_commands.add_parser("import", help="convert an official benchmark release into a table")
    importer.add_argument("benchmark", choices=["nasbench101", "nasbench201"])
    importer.add_argument("path", help="nasbench101: nasbench_only108.tfrecord or nasbench_full.tfrecord (no "
                                       "TensorFlow needed); nasbench201: NAS-Bench-201-v1_*.pth or a NATS-tss-v1_0-"
                                       "3ffb9 release (.pickle.pbz2 file, -simple/-full directory or its .tar). The "
                                       "official NB201/NATS files are Python pickles: only the path you give is read, "
                                       "by an unpickler that rebuilds containers, numbers and tensors and refuses "
                                       "anything else (needs: pip install -e \".[nb201]\")")
    importer.add_argument("--out", default=None, help="output table (default: DATA_DIR/nasbench101/nb101_official."
                                                      "csv.gz or DATA_DIR/nasbench201/nb201_official.csv.gz)")
    importer.add_argument("--data-dir", default=None)
    measure = data_commands.add_parser("measure-latency", help="time sampled networks (NB201, NB101, torchvision) "
                                                               "on this CPU; write graphs + latencies (.npz)")
    measure.add_argument("--out", required=True, help="output .npz (a LatencyDataset)")
    measure.add_argument("--count", type=int, default=300, help="number of networks (default 300)")
    measure.add_argument("--seed", type=int, default=0)
    measure.add_argument("--warmup", type=int, default=10, help="untimed forward passes per network")
    measure.add_argument("--repeats", type=int, default=20, help="timed forward passes per network (median)")
    measure.add_argument("--threads", type=int, default=1, help="torch CPU threads while timing")

    spaces = commands.add_parser("spaces", help="search spaces: list, enumerate, verify against the tables")
    space_commands = spaces.add_subparsers(dest="spaces_command", required=True)
    space_commands.add_parser("list", help="registered spaces and their sizes")
    enumerate_ = space_commands.add_parser("enumerate", help="generate every unique cell of a space")
    enumerate_.add_argument("space", choices=["nasbench101"])
    enumerate_.add_argument("--out", default=None, help="cache file (default: nasbench101/nb101_cells.npz in "
                                                        "$NASSEARCH_CACHE, else ~/.cache/nassearch)")
    verify = space_commands.add_parser("verify", help="check hashes, enumeration, params and FLOPs against "
                                                      "every row of the benchmark tables")
    verify.add_argument("space", choices=["nasbench101", "nasbench201"])
    verify.add_argument("--data-dir", default=None)

    retrain = commands.add_parser("retrain", help="train an architecture for real: a DARTS genotype on CIFAR-10 "
                                                  "with the DARTS protocol, or any space's network on an ImageFolder "
                                                  "dataset with a recipe")
    retrain.add_argument("target", metavar="ARCH_OR_RUN_DIR",
                         help="a search run directory (its best architecture); with the DARTS protocol also a "
                              "published genotype's name (DARTS_V2, ...) or a genotype in DARTS notation; with a "
                              "recipe also an architecture string of the space named by --space (darts: also a genotype name)")
    retrain.add_argument("--config", default=None, help="retrain YAML: a recipe (experiments/retrain_*.yaml) or the "
                                                        "DARTS protocol's settings (the default, as in "
                                                        "experiments/darts_retrain.yaml)")
    retrain.add_argument("--space", default=None, help="recipes: the space of an architecture string (a run "
                                                       "directory names its own)")
    retrain.add_argument("--data-root", default=None, help="recipes: the ImageFolder dataset (train/, val/; default "
                                                           "data/imagenet)")
    retrain.add_argument("--device", default="auto", help="recipes: auto (CUDA when present), cpu, cuda or cuda:N")
    retrain.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="override a setting (repeatable), e.g. --set epochs=50")
    retrain.add_argument("--out", default=None, help="output directory (default: runs/retrain/NAME)")
    retrain.add_argument("--resume", action="store_true", help="continue the run in the output directory")
    _add_threads_arg(retrain)

    bench = commands.add_parser("bench", help="performance benchmarks that print tables")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True)
    throughput = bench_commands.add_parser("evaluator", help="evaluator queries per second (batch API)")
    _add_config_args(throughput)
    throughput.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 1000, 100000])
    throughput.add_argument("--rounds", type=int, default=5)
    predictors = bench_commands.add_parser("predictors", help="predictor rank correlation (Kendall, Spearman) "
                                                              "and fit/predict time vs train size")
    _add_config_args(predictors)
    latency = bench_commands.add_parser("latency", help="latency predictors: MAPE, Acc(5%%), Acc(10%%), Kendall on "
                                                        "NB201 devices, HELP's OFA subnets or a measured latency "
                                                        "dataset")
    _add_config_args(latency)
    latency.add_argument("--workers", type=int, default=None, help="worker processes (default: benchmark.workers)")
    latency.add_argument("--overwrite", action="store_true", help="delete the benchmark directory's results first")
    executor = bench_commands.add_parser("executor", help="wall time of one search seed, serial vs the config's "
                                                          "executor, every evaluation delayed by --delay seconds")
    _add_config_args(executor)
    executor.add_argument("--delay", type=float, default=1.0, help="seconds added to every evaluation (default 1)")
    contention = bench_commands.add_parser("contention", help="wall time of one search run alone and beside "
                                                              "CPU-bound processes, at the run's thread cap")
    _add_config_args(contention)
    contention.add_argument("--competitors", type=int, default=1, help="busy processes beside the run (default 1)")
    contention.add_argument("--warm-cache", action="store_true", help="both runs read one NB301 cost-model cache "
                                                                      "(filled by an untimed run), not an empty one")
    overhead = bench_commands.add_parser("overhead", help="the engine's own time per query (ask/tell, store, "
                                                          "checkpoints) early and late in long runs, per config")
    overhead.add_argument("configs", nargs="+", metavar="CONFIG", help="run configs, e.g. "
                                                                       "experiments/bench_overhead_random.yaml")
    overhead.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                          help="override a value in every config (repeatable), e.g. --set budget.evaluations=20000")
    overhead.add_argument("--data-dir", default=None, help="benchmark data folder")
    overhead.add_argument("--early", type=int, default=1000, help="first query of the early window (default 1000)")
    overhead.add_argument("--window", type=int, default=1000, help="queries per window (default 1000); the late "
                                                                   "window is the run's last ones")
    overhead.add_argument("--prefill", action="append", default=[], metavar="SEARCHER",
                          help="for this searcher, fill the store with sampled trials up to the late window "
                               "instead of searching through it (repeatable)")
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from nassearch import runner
    from nassearch.predictors.training import fit_progress

    config = _load_config(args)
    if args.quiet:
        config = cfg.validate({**config.to_dict(), "output": {**config.output.to_dict(), "progress": False}})
    with fit_progress(config.output.progress):
        outcome = runner.run(config, repeats=args.repeats, resume=args.resume, overwrite=args.overwrite,
                             data_dir=args.data_dir, repair=args.repair)
    print(outcome.table)
    plots = "".join(f", {Path(p).relative_to(outcome.run_dir)}" for p in outcome.summary.get("plots", []))
    print(f"\nrun directory: {outcome.run_dir}  (summary.json, config.yaml, seed-*/trials.sqlite{plots})")
    if "retrain_command" in outcome.summary:
        print(f"retrain the best cell: {outcome.summary['retrain_command']}")
    return 0


def cmd_plot_pareto(args: argparse.Namespace) -> int:
    from nassearch.plots import plot_pareto
    from nassearch.runner import load_run_front

    runs, objectives, true_front = {}, None, None
    for run_dir in args.run_dirs:
        label, run_objectives, points, front = load_run_front(run_dir, args.data_dir)
        if objectives is not None and run_objectives != objectives:
            raise NassearchError(f"{run_dir} has other objectives than {args.run_dirs[0]}; overlay runs with the same "
                                 "objectives")
        runs[label], objectives = points, run_objectives
        true_front = front if true_front is None else true_front
    out = Path(args.out) if args.out else Path(args.run_dirs[0]) / "plots" / "pareto_overlay.png"
    print(plot_pareto(runs, objectives, out, true_front, _plot_title(args.run_dirs)))
    return 0


def _plot_title(run_dirs: list[str]) -> str:
    """The benchmarks (space / evaluator, dataset) of the overlaid runs."""
    from nassearch.plots import benchmark_title
    from nassearch.runner import read_run_config

    return "; ".join(sorted({benchmark_title(read_run_config(Path(run_dir))) for run_dir in run_dirs}))


def cmd_compare(args: argparse.Namespace) -> int:
    from nassearch.compare import comparison_table

    print(comparison_table(args.run_dirs))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from nassearch.plots import plot_search_curves
    from nassearch.runner import load_run_curves

    if args.pareto:
        return cmd_plot_pareto(args)
    curves, metrics = {}, set()
    for run_dir in args.run_dirs:
        label, metric, runs = load_run_curves(run_dir, args.metric, args.data_dir)
        curves[label] = runs
        metrics.add(metric)
    if len(metrics) > 1:
        raise NassearchError(f"the runs report different metrics ({', '.join(sorted(metrics))}); "
                             "choose one with --metric")
    out = Path(args.out) if args.out else Path(args.run_dirs[0]) / "plots" / "search_curves.png"
    print(plot_search_curves(curves, metrics.pop(), out, title=_plot_title(args.run_dirs)))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from nassearch.runner import build_components

    config = _load_config(args)
    parts = build_components(config, args.data_dir)
    archs = [parts.space.parse(text) for text in args.archs]
    for text, result in zip(args.archs, parts.evaluator.evaluate_batch(archs)):
        print(json.dumps({"arch": text, **result.metrics, "cost_s": result.cost_s}))
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from nassearch.data import tables as data

    if args.data_command == "measure-latency":
        return cmd_data_measure_latency(args)
    if args.data_command == "import":
        return cmd_data_import(args)
    if args.data_command == "list":
        statuses = data.list_tables(args.data_dir)
    else:
        statuses = data.verify_tables(args.data_dir)
    print(f"data directory: {data.resolve_data_dir(args.data_dir)}")
    width = max(len(s.spec.name) for s in statuses)
    for status in statuses:
        print(f"{status.spec.name:<{width}}  {status.state:<8}  {status.spec.path}  ({status.spec.source})")
    corrupt = [s.spec.name for s in statuses if s.state.startswith("corrupt")]
    if corrupt:
        raise DataError(f"{len(corrupt)} table(s) corrupt: {', '.join(corrupt)}; fetch them again (see the data "
                        "README) or re-import them")
    return 0


def cmd_data_import(args: argparse.Namespace) -> int:
    from nassearch.data import tables as data

    table = {"nasbench101": "nb101_official", "nasbench201": "nb201_official"}[args.benchmark]
    out = Path(args.out) if args.out else data.resolve_data_dir(args.data_dir) / data.TABLES[table].path
    start = time.perf_counter()
    if args.benchmark == "nasbench101":
        from nassearch.data.nb101_import import import_nasbench101

        report = import_nasbench101(args.path, out)
        print(f"{report.records} records, {report.cells} cells, epochs {', '.join(map(str, report.epochs))} "
              f"-> {report.out_path} ({time.perf_counter() - start:.0f} s)")
        return 0
    from nassearch.data.nb201_import import import_nasbench201, timed_progress

    print(f"reading {args.path} ...", flush=True)
    report = import_nasbench201(args.path, out, progress=timed_progress(sys.stdout))
    schedules = ", ".join(f"{epochs} epochs" for epochs in report.schedules)
    print(f"{report.source}: {report.archs} architectures, schedules {schedules} -> {report.out_path} "
          f"({time.perf_counter() - start:.0f} s)")
    print(_nb201_import_checks(report.out_path, args.data_dir))
    return 0


def _nb201_import_checks(table: Path, data_dir: str | None) -> str:
    """Two lines on an imported NB201 table: each column's best value next to the published optimum, and the
    agreement with the shared 200-epoch subset where they overlap."""
    import pandas as pd

    from nassearch.data import tables as data
    from nassearch.data.nb201_import import PUBLISHED_OPTIMA, column_optima, compare_with_subset

    frame = pd.read_csv(table, usecols=lambda c: c == "arch_str" or c.endswith("_acc_e200"))
    optima = ", ".join(f"{column[:-5]} {value:.2f} [{PUBLISHED_OPTIMA[column]:.2f}]"
                       for column, value in column_optima(frame).items())
    lines = [f"best 200-epoch accuracy per column (NAR Table 2 'Optimal' in brackets): {optima}"]
    try:
        subset = data.load_csv("nb201_200epoch_subset", data_dir)
    except DataError as exc:
        lines.append(f"no check against the shared 200-epoch subset ({exc})")
    else:
        report = compare_with_subset(frame, subset)
        lines.append(f"check against nb201_200epoch_subset (NASLib's copy of the official 200-epoch validation "
                     f"accuracy): {report.archs} architectures, {report.values} values, max |difference| "
                     f"{report.max_abs_diff:.6g} points")
    return "\n".join(lines)


def cmd_data_measure_latency(args: argparse.Namespace) -> int:
    from nassearch.data.latency_dataset import build_cpu_latency_dataset, family_counts

    if args.count < 1 or args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        raise NassearchError("measure-latency needs --count >= 1, --repeats >= 1, --warmup >= 0, --threads >= 1")
    logging.getLogger("nassearch.data.latency_dataset").setLevel(logging.INFO)  # a progress line every 10 networks
    start = time.perf_counter()
    dataset = build_cpu_latency_dataset(args.count, args.seed, warmup=args.warmup, repeats=args.repeats,
                                        threads=args.threads)
    out = dataset.save(args.out)
    families = ", ".join(f"{name} {n}" for name, n in family_counts(dataset).items())
    print(f"{len(dataset)} networks ({families}); median latency {dataset.latency_ms.min():.2f}-"
          f"{dataset.latency_ms.max():.2f} ms on {dataset.device}; {time.perf_counter() - start:.0f} s -> {out}")
    return 0


def cmd_spaces(args: argparse.Namespace) -> int:
    if args.spaces_command == "list":
        from nassearch.registry import SPACES

        for name in SPACES.names():
            size = SPACES.get(name)().size()
            print(f"{name:<14} {size:,} architectures" if size else name)
        return 0
    if args.spaces_command == "enumerate":
        from nassearch.spaces.nasbench101_enumeration import default_cache, enumerate_cells

        start = time.perf_counter()
        out = Path(args.out).expanduser() if args.out else default_cache()
        cells = enumerate_cells(cache=out)
        print(f"nasbench101: {len(cells):,} unique cells in {time.perf_counter() - start:.1f} s -> {out}")
        return 0
    from nassearch.data import space_checks

    check = space_checks.verify_nasbench101 if args.space == "nasbench101" else space_checks.verify_nasbench201
    rows = check(args.data_dir)
    print(space_checks.format_rows(f"{args.space} against the benchmark tables", rows))
    return 0 if all(r["checked"] == r["matched"] for r in rows) else 1


def cmd_bench(args: argparse.Namespace) -> int:
    if args.bench_command == "predictors":
        return cmd_bench_predictors(args)
    if args.bench_command == "latency":
        return cmd_bench_latency(args)
    if args.bench_command == "executor":
        return cmd_bench_executor(args)
    if args.bench_command == "contention":
        return cmd_bench_contention(args)
    if args.bench_command == "overhead":
        return cmd_bench_overhead(args)
    from nassearch.bench.throughput import evaluator_throughput, format_throughput
    from nassearch.runner import build_components

    config = _load_config(args)
    parts = build_components(config, args.data_dir)
    rows = evaluator_throughput(parts.space, parts.evaluator, args.batch_sizes, args.rounds, config.seed)
    print(format_throughput(rows, f"{config.evaluator['name']} on {config.space['name']}: "
                                  f"median of {args.rounds} rounds"))
    return 0


def cmd_bench_executor(args: argparse.Namespace) -> int:
    from nassearch.bench.executors import executor_rows, format_executor_rows

    if args.delay < 0:
        raise cfg.ConfigError(f"--delay must be >= 0 seconds, got {args.delay}")
    config = _load_config(args)
    rows = executor_rows(config, args.delay, args.data_dir)
    print(format_executor_rows(rows, f"{config.name}: {config.searcher['name']} on {config.space['name']}, seed "
                                     f"{config.seed}, every evaluation delayed by {args.delay:g} s"))
    return 0


def cmd_bench_overhead(args: argparse.Namespace) -> int:
    from nassearch.bench.overhead import format_rows, overhead_rows

    configs = [cfg.load(path, args.overrides) for path in args.configs]
    rows = overhead_rows(configs, args.early, args.window, args.prefill, args.data_dir,
                         progress=lambda line: print(line, file=sys.stderr))
    print(format_rows(rows, f"per-query overhead of the search loop (serial executor), {len(rows)} config(s)",
                      args.early, args.window))
    return 0 if all(row["verdict"] != "NO" for row in rows) else 1


def cmd_bench_contention(args: argparse.Namespace) -> int:
    from nassearch.bench.contention import contention_rows, format_contention_rows
    from nassearch.threads import thread_limit

    if args.competitors < 1:
        raise cfg.ConfigError(f"--competitors must be >= 1, got {args.competitors}")
    config = _load_config(args)
    rows = contention_rows(args.config, args.overrides, thread_limit(), args.competitors, args.data_dir,
                           args.warm_cache)
    print(format_contention_rows(rows, f"{config.name}: {config.searcher['name']} on {config.space['name']}, "
                                       f"{thread_limit()} thread(s), {'warm' if args.warm_cache else 'empty'} cache"))
    return 0


def _print_bench(run: Callable[[], Any], logger: str) -> int:
    """Run a resumable benchmark (one progress line per cell on stderr) and print its table."""
    logging.getLogger(logger).setLevel(logging.INFO)
    try:
        outcome = run()
    except KeyboardInterrupt:
        return _interrupted("finished cells are in results.csv: rerun the same command to continue")
    print(outcome.table)
    print(f"\nresults: {outcome.run_dir}  (results.csv, results.md, config.yaml, plots/scatter_*.png)")
    return 0


def cmd_bench_predictors(args: argparse.Namespace) -> int:
    from nassearch.bench.predictors import run_predictor_bench

    limit_threads(args.threads)
    return _print_bench(lambda: run_predictor_bench(args.config, args.overrides, data_dir=args.data_dir),
                        "nassearch.bench.predictors")


def cmd_bench_latency(args: argparse.Namespace) -> int:
    from nassearch.bench.latency import run_latency_bench

    limit_threads(args.threads)
    return _print_bench(lambda: run_latency_bench(args.config, args.overrides, data_dir=args.data_dir,
                                                  workers=args.workers, overwrite=args.overwrite),
                        "nassearch.bench.latency")


def cmd_retrain(args: argparse.Namespace) -> int:
    from nassearch.training.recipe_retrain import is_recipe_file

    limit_threads(args.threads)
    logging.getLogger("nassearch.training").setLevel(logging.INFO)  # the best architecture, one line per epoch
    if args.config is not None and is_recipe_file(args.config):
        return _retrain_recipe(args)
    from nassearch.training.retrain import load_retrain_config, resolve_target, retrain

    for option, value in (("--space", args.space), ("--data-root", args.data_root)):
        if value is not None:
            raise cfg.ConfigError(f"{option} applies to recipes only; the DARTS protocol trains the darts space on "
                                  "CIFAR-10 (set its data_root with --set data_root=DIR)")
    if args.device != "auto":
        raise cfg.ConfigError("--device applies to recipes only; the DARTS protocol's is --set device=NAME")
    config = load_retrain_config(args.config, args.overrides)
    target = resolve_target(args.target)
    return _finish_retrain(lambda: retrain(target, config, args.out, resume=args.resume),
                           lambda r: f"{r['name']}: {r['params_m']:.3g} M params, test accuracy {r['test_acc']:.2f}% "
                                     f"after {r['epochs']} epochs (best {r['best_test_acc']:.2f}% at epoch "
                                     f"{r['best_epoch']}), {r['wall_s']:.0f} s on {r['device']} x{r['world_size']}")


def _retrain_recipe(args: argparse.Namespace) -> int:
    from nassearch.training.imagefolder import DEFAULT_DATA_ROOT
    from nassearch.training.recipe_retrain import resolve_arch_target, retrain_recipe
    from nassearch.training.recipes import load_recipe

    recipe = load_recipe(args.config, args.overrides)
    target = resolve_arch_target(args.target, args.space)
    return _finish_retrain(lambda: retrain_recipe(target, recipe, args.data_root or DEFAULT_DATA_ROOT, args.out,
                                                  resume=args.resume, device=args.device),
                           lambda r: f"{r['name']} ({r['space']}): {r['params_m']:.3g} M params, {r['eval_split']} "
                                     f"top-1 {r['top1']:.2f}% top-5 {r['top5']:.2f}% after {r['epochs']} epochs, "
                                     f"{r['wall_s']:.0f} s on {r['device']} x{r['world_size']}")


def _finish_retrain(train: Callable[[], Any], headline: Callable[[dict[str, Any]], str]) -> int:
    """Run a final training (``train()`` returns its ``RetrainOutcome``); the main process prints ``headline`` of
    its result and where the outputs are. Ctrl-C says how to continue."""
    try:
        outcome = train()
    except KeyboardInterrupt:
        return _interrupted("finished epochs are in checkpoint.pt: continue with --resume")
    if outcome.result is not None:
        print(headline(outcome.result))
        print(f"\noutput: {outcome.out_dir}  (retrain.json, log.csv, checkpoint.pt, config.yaml)")
    return 0


COMMANDS = {"run": cmd_run, "plot": cmd_plot, "eval": cmd_eval, "data": cmd_data, "spaces": cmd_spaces,
            "bench": cmd_bench, "retrain": cmd_retrain, "compare": cmd_compare}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return COMMANDS[args.command](args)
    except NassearchError as exc:
        print(f"nassearch: error: {user_message(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as exc:  # a path the user gave that cannot be read or written
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"nassearch: error: {where}{exc.strerror or exc}; check the path and its permissions", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as exc:
        from nassearch.runner import Interrupted

        if isinstance(exc, Interrupted):
            return _interrupted(f"every finished trial is saved: continue with --resume {exc.run_dir}")
        return _interrupted()


def _interrupted(kept: str = "") -> int:
    """Say that the command stopped at Ctrl-C (or SIGTERM, with a local Ray instance) and what it kept;
    return the shell's status for that signal, 128 + its number."""
    from nassearch.executors import TERMINATED

    stop = signal.SIGTERM if TERMINATED.is_set() else signal.SIGINT
    what = "terminated" if stop == signal.SIGTERM else "interrupted"
    print(f"nassearch: {what}{'; ' + kept if kept else ''}", file=sys.stderr)
    return 128 + stop
