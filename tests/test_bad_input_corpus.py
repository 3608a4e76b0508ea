"""The bad-input corpus (issue 15, scope item 5): hostile and careless inputs run through the real CLI.

Every case is an id ``area/short-name``, a setup that writes what it needs into its own ``tmp_path``
(configs, architecture strings, broken tables, damaged run directories copied from a tiny real run,
retrain checkpoints, CIFAR batch files) and returns the CLI argv, and what must happen:

* ``"error"``: exit status 2, exactly one non-empty line on stderr, starting ``nassearch: error: ``,
  and no traceback anywhere;
* ``"ok"``: exit status 0 (valid input keeps working), no traceback.

An optional check runs afterwards (a user's file beside the run directory survives, a crafted pickle
never ran). Each case must finish within ``LIMIT_S`` seconds (10; ``$NASSEARCH_CORPUS_LIMIT_S``
changes it on a loaded machine) and within a memory cap, so a hang or a "billion laughs" cannot take
the machine down. The CLI runs in-process (``nassearch.cli.main``) in ``tmp_path`` as working
directory. A failure message starts with its kind: ``[traceback]``, ``[hang]``, ``[silent acceptance]``,
``[wrong exit]``, ``[more than one line]``, ``[bad message]`` or ``[side effect]`` (a file
deleted, a crafted pickle executed).

New spaces, importers and file formats add their cases here.
"""

from __future__ import annotations

import contextlib
import copy
import faulthandler
import functools
import gzip
import io
import json
import logging
import os
import pickle
import resource
import shutil
import signal
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.slow  # 334 cases, about a minute and a half; CI runs them (tests/conftest.py)

LIMIT_S = float(os.environ.get("NASSEARCH_CORPUS_LIMIT_S", "10"))
#: Address space a case may add to the process (a memory bomb ends in MemoryError, not in the OOM killer).
MEMORY_HEADROOM = 3 << 30
DATA = Path(os.environ.get("NASSEARCH_DATA", "/nonexistent"))
REPO = Path(__file__).resolve().parents[1]

NB201_BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
NB201_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
DARTS_V2 = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
            "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
            "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
            "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
            "('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])")
NB101_OPS = ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")

#: The tiny NB201 run every "run" case starts from (well under a second of search).
BASE_CONFIG: dict[str, Any] = {
    "name": "tiny", "seed": 0, "space": {"name": "nasbench201"}, "evaluator": {"name": "nb201_tabular"},
    "searcher": {"name": "regularized_evolution", "population_size": 4, "sample_size": 2},
    "budget": {"evaluations": 6}, "objectives": [{"metric": "val_acc", "mode": "max"}],
    "output": {"dir": "runs", "plots": False, "progress": False},
}
NB101_CONFIG: dict[str, Any] = {
    "name": "nb101", "space": {"name": "nasbench101"}, "evaluator": {"name": "nb101_tabular"},
    "searcher": {"name": "random_search"}, "budget": {"evaluations": 3}, "objectives": [{"metric": "val_acc"}],
    "output": {"dir": "runs", "report_metric": "val_acc", "plots": False, "progress": False},
}
DARTS_CONFIG: dict[str, Any] = {
    "name": "darts", "space": {"name": "darts", "layers": 5, "init_channels": 8},
    "evaluator": {"name": "nb301_surrogate"}, "searcher": {"name": "random_search"},
    "budget": {"evaluations": 2}, "objectives": [{"metric": "val_acc"}],
    "output": {"dir": "runs", "report_metric": "val_acc", "plots": False, "progress": False},
}
#: ``nassearch retrain`` settings small enough to train one batch in a second or two on a CPU.
RETRAIN_TINY = {"epochs": 1, "layers": 3, "init_channels": 4, "batch_size": 16, "num_workers": 0,
                "verify_md5": False, "max_train_batches": 1, "device": "cpu", "auxiliary": False, "amp": False}


# ---------------------------------------------------------------------------------------------
# The corpus


@dataclass(frozen=True)
class Case:
    id: str
    expect: str  # "error" | "ok"
    make: Callable[[Ctx], list[str]]
    check: Callable[[Ctx], str | None] | None = None

    @property
    def area(self) -> str:
        return self.id.split("/")[0]


CASES: list[Case] = []


def add(case_id: str, expect: str, make: Callable[[Ctx], list[str]],
        check: Callable[[Ctx], str | None] | None = None) -> None:
    assert expect in ("error", "ok"), expect
    assert "/" in case_id and case_id not in {c.id for c in CASES}, case_id
    CASES.append(Case(case_id, expect, make, check))


class Ctx:
    """What a case's setup may use: its directory (also the working directory) and the shared templates."""

    def __init__(self, tmp: Path, templates: Templates, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp, self.templates, self.monkeypatch = tmp, templates, monkeypatch

    def write(self, name: str, content: str | bytes) -> str:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        return name

    def config(self, base: dict[str, Any] | None = None, file: str = "c.yaml", **changes: Any) -> str:
        """Write ``base`` (default BASE_CONFIG) to ``file`` with changes (see :func:`changed`)."""
        return self.write(file, yaml.safe_dump(changed(base or BASE_CONFIG, changes), sort_keys=False))

    def canary(self) -> Path:
        return self.tmp / "canary"

    # data directories ------------------------------------------------------------------

    def data_copy(self) -> Path:
        """``tmp/data``: the shared data directory rebuilt from symlinks, one per file (replace any)."""
        root = self.tmp / "data"
        for item in DATA.iterdir():
            if item.is_dir():
                (root / item.name).mkdir(parents=True)
                for child in item.iterdir():
                    (root / item.name / child.name).symlink_to(child)
            else:
                root.mkdir(exist_ok=True)
                (root / item.name).symlink_to(item)
        return root

    def broken_data(self, relative: str, content: str | bytes | None) -> str:
        """A data copy whose ``relative`` file is replaced by ``content`` (None: removed)."""
        root = self.data_copy()
        target = root / relative
        if target.is_symlink() or target.exists():
            target.unlink()
        if content is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            (target.write_bytes if isinstance(content, bytes) else target.write_text)(content)
        return str(root)

    # run directories -------------------------------------------------------------------

    def tiny_run(self) -> str:
        """A copy of the finished tiny NB201 run at ``runs/tiny`` and its config at ``tiny.yaml``."""
        shutil.copytree(self.templates.nb201_run(), self.tmp / "runs" / "tiny", symlinks=True)
        self.config(file="tiny.yaml")
        return "runs/tiny"

    def store(self, run: str = "runs/tiny") -> sqlite3.Connection:
        return sqlite3.connect(self.tmp / run / "seed-0" / "trials.sqlite", isolation_level=None)

    def sql(self, *statements: str, run: str = "runs/tiny") -> None:
        """Damage the seed-0 store; an UPDATE or DELETE that changes no row is a broken case, not a pass."""
        db = self.store(run)
        try:
            for statement in statements:
                changed_rows = db.execute(statement).rowcount
                assert changed_rows != 0 or not statement.startswith(("UPDATE", "DELETE")), \
                    f"corpus setup: {statement!r} changed nothing (the store's schema changed?)"
        finally:
            db.close()

    def retrain_out(self) -> str:
        """A copy of a finished tiny retrain output directory (config.yaml, checkpoint.pt, log.csv)."""
        shutil.copytree(self.templates.retrain_run(), self.tmp / "out")
        return "out"


_DROP = object()


def changed(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with ``{"a__b__0__c": value}`` applied (``__`` separates path parts)."""
    raw = copy.deepcopy(base)
    for dotted, value in changes.items():
        parts = dotted.split("__")
        node: Any = raw
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        last: Any = int(parts[-1]) if isinstance(node, list) else parts[-1]
        if value is _DROP:
            del node[last]
        else:
            node[last] = value
    return raw


def run_argv(config: str, *extra: str) -> list[str]:
    return ["run", config, *extra]


def file_survives(relative: str) -> Callable[[Ctx], str | None]:
    def check(ctx: Ctx) -> str | None:
        return None if (ctx.tmp / relative).is_file() else f"{relative} was deleted"
    return check


def no_canary(ctx: Ctx) -> str | None:
    return "a crafted input executed code (the canary file exists)" if ctx.canary().exists() else None


def all_of(*checks: Callable[[Ctx], str | None]) -> Callable[[Ctx], str | None]:
    def check(ctx: Ctx) -> str | None:
        for one in checks:
            problem = one(ctx)
            if problem:
                return problem
        return None
    return check


def yaml_text(raw: dict[str, Any]) -> str:
    return yaml.safe_dump(raw, sort_keys=False)


def base_yaml_without(*keys: str) -> str:
    """BASE_CONFIG as YAML without the named top-level keys (to append hand-written YAML for them)."""
    return yaml_text({k: v for k, v in BASE_CONFIG.items() if k not in keys})


def alias_bomb(levels: int = 9) -> str:
    """A flow sequence whose last item expands to 10**levels strings ("billion laughs")."""
    items = ["&l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels):
        items.append(f"&l{level} [" + ", ".join([f"*l{level - 1}"] * 10) + "]")
    return "[" + ", ".join(items) + "]"


class _Canary:
    """Unpickling this opens (creates) the canary file: proof that a pickle executed a call."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


# ---------------------------------------------------------------------------------------------
# configs


def cfg(case_id: str, expect: str, *, text: str | bytes | None = None, extra: tuple[str, ...] = (),
        check: Callable[[Ctx], str | None] | None = None, prepare: Callable[[Ctx], None] | None = None,
        base: dict[str, Any] | None = None, **changes: Any) -> None:
    """A ``nassearch run`` case on a config: BASE_CONFIG with ``changes``, or the literal ``text``."""

    def make(ctx: Ctx) -> list[str]:
        if prepare:
            prepare(ctx)
        path = ctx.write("c.yaml", text) if text is not None else ctx.config(base, **changes)
        return run_argv(path, *extra)

    add(f"configs/{case_id}", expect, make, check)


# valid configs still run
cfg("ok-tiny-run", "ok")
cfg("ok-random-search", "ok", searcher={"name": "random_search"})
cfg("ok-searcher-shorthand", "ok", searcher="random_search")
cfg("ok-cost-budget", "ok", budget={"cost_seconds": 4})
cfg("ok-batches", "ok", budget={"evaluations": 6, "batch_size": 3})
cfg("ok-repeats-2", "ok", extra=("--repeats", "2"))
cfg("ok-quiet", "ok", extra=("--quiet",), output={"dir": "runs", "plots": False})
cfg("ok-set-overrides", "ok", extra=("--set", "searcher.population_size=3", "--set", "objectives.0.metric=test_acc"))
cfg("ok-nsga2-two-objectives", "ok", searcher={"name": "nsga2", "population_size": 4},
    evaluator={"name": "nb201_tabular", "latency_devices": ["gold_6240"]}, budget={"evaluations": 8, "batch_size": 4},
    objectives=[{"metric": "val_acc", "mode": "max"}, {"metric": "lat_gold_6240", "mode": "min"}])
cfg("ok-yaml-anchor-alias-merge", "ok", text=base_yaml_without("searcher", "budget", "output") + (
    "searcher: {name: regularized_evolution, population_size: &pop 4, sample_size: 2}\n"
    "budget: {evaluations: *pop}\n"
    "output: {<<: {plots: false, progress: false}, dir: runs}\n"))
cfg("ok-unicode-comment", "ok", text="# évolution régularisée ✓\n" + yaml_text(BASE_CONFIG))
cfg("ok-predictor-null", "ok", predictor=None)

# the file itself
add("configs/missing-file", "error", lambda ctx: run_argv("no-such-config.yaml"))
add("configs/a-directory", "error", lambda ctx: ((ctx.tmp / "dir.yaml").mkdir(), run_argv("dir.yaml"))[1])
cfg("empty-file", "error", text="")
cfg("whitespace-only", "error", text="  \n\n   \n")
cfg("comment-only", "error", text="# nothing here\n")
cfg("binary-file", "error", text=b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\xfd" + bytes(range(256)))
cfg("utf16-file", "error", text=yaml_text(BASE_CONFIG).encode("utf-16"))
cfg("huge-file-16mb", "error", text=yaml_text(BASE_CONFIG) + "# " + "x" * (16 << 20) + "\n")
cfg("deeply-nested", "error", text=base_yaml_without("name") + "name: " + "[" * 50_000 + "]" * 50_000 + "\n")
cfg("top-level-list", "error", text="- " + json.dumps(BASE_CONFIG) + "\n")
cfg("top-level-scalar", "error", text="42\n")
cfg("top-level-string", "error", text="nassearch please search\n")
cfg("two-documents", "error", text=yaml_text(BASE_CONFIG) + "---\n" + yaml_text(BASE_CONFIG))
cfg("yaml-syntax-error", "error", text=base_yaml_without("name") + "name: [unclosed\n")
cfg("tab-indentation", "error", text="name: tiny\n\tseed: 0\n")
cfg("unhashable-key", "error", text=yaml_text(BASE_CONFIG) + "? [a, b]\n: 1\n")
cfg("integer-key", "error", text=yaml_text(BASE_CONFIG) + "1: x\n")

# YAML features a config must not use
cfg("alias-bomb-name", "error", text=base_yaml_without("name") + f"name: {alias_bomb()}\n")
cfg("alias-bomb-seed", "error", text=base_yaml_without("seed") + f"seed: {alias_bomb()}\n")
cfg("alias-bomb-space-option", "error", text=base_yaml_without("space") +
    f"space: {{name: nasbench201, channels: {alias_bomb()}}}\n")
add("configs/python-tag-apply", "error",
    lambda ctx: run_argv(ctx.write("c.yaml", base_yaml_without("name") +
                                   f"name: !!python/object/apply:os.system ['touch {ctx.canary()}']\n")),
    no_canary)
cfg("python-tag-name", "error", text=base_yaml_without("seed") + "seed: !!python/name:os.getpid\n")
cfg("python-tag-object-new", "error", text=base_yaml_without("name") +
    "name: !!python/object/new:builtins.str ['tiny']\n")
cfg("binary-tag-name", "error", text=base_yaml_without("name") + "name: !!binary dGlueQ==\n")
cfg("timestamp-name", "error", text=base_yaml_without("name") + "name: 2024-01-01\n")
cfg("set-tag-objectives", "error", text=base_yaml_without("objectives") + "objectives: !!set {val_acc}\n")

# run names: one plain path component, nothing that escapes or hides
cfg("name-dot", "error", name=".")
cfg("name-dot-overwrite", "error", name=".", extra=("--overwrite",),
    prepare=lambda ctx: (ctx.write("runs/other/config.yaml", "name: other\n"), ctx.write("precious.txt", "mine")),
    check=all_of(file_survives("runs/other/config.yaml"), file_survives("precious.txt")))
cfg("name-dotdot", "error", name="..")
cfg("name-dotdot-overwrite", "error", name="..", extra=("--overwrite",),
    prepare=lambda ctx: (ctx.write("precious.txt", "mine"), (ctx.tmp / "runs").mkdir()),
    check=file_survives("precious.txt"))
cfg("name-slash", "error", name="a/b")
cfg("name-absolute", "error", name="/abs")
cfg("name-trailing-newline", "error", name="x\n")
cfg("name-empty", "error", name="")
cfg("name-nul", "error", name="a\x00b")
cfg("name-backslash", "error", name="a\\b")
cfg("name-space", "error", name="my run")
cfg("name-300-chars", "error", name="n" * 300)
cfg("name-integer", "error", name=5)
cfg("name-null", "error", name=None)
cfg("name-list", "error", name=["tiny"])

# top level and seed
cfg("unknown-top-level-key", "error", serch={"name": "random_search"})
cfg("seed-string", "error", seed="abc")
cfg("seed-negative", "error", seed=-1)
cfg("seed-float", "error", seed=1.5)
cfg("seed-bool", "error", seed=True)
cfg("seed-nan", "error", seed=float("nan"))

# each component: unknown name, unknown key, wrong type, bad value
cfg("space-unknown-name", "error", space={"name": "nasbench999"})
cfg("space-unknown-key", "error", space={"name": "nasbench201", "chanels": 16})
cfg("space-not-a-mapping", "error", space=["nasbench201"])
cfg("space-without-name", "error", space={"channels": 16})
cfg("space-channels-zero", "error", space={"name": "nasbench201", "channels": 0})
cfg("space-channels-string", "error", space={"name": "nasbench201", "channels": "sixteen"})
cfg("evaluator-unknown-name", "error", evaluator={"name": "nb201_oracle"})
cfg("evaluator-unknown-key", "error", evaluator={"name": "nb201_tabular", "datset": "cifar10"})
cfg("evaluator-unknown-dataset", "error", evaluator={"name": "nb201_tabular", "dataset": "cifar11"})
cfg("evaluator-unknown-latency-device", "error", evaluator={"name": "nb201_tabular", "latency_devices": ["abacus"]})
cfg("evaluator-for-another-space", "error", evaluator={"name": "nb101_tabular"})
cfg("evaluator-cost-nan", "error", evaluator={"name": "nb201_tabular", "cost_per_query_s": float("nan")})
cfg("evaluator-cost-inf", "error", evaluator={"name": "nb201_tabular", "cost_per_query_s": float("inf")})
cfg("evaluator-cost-negative", "error", evaluator={"name": "nb201_tabular", "cost_per_query_s": -1.0})
cfg("searcher-unknown-name", "error", searcher={"name": "gradient_descent"})
cfg("searcher-unknown-key", "error", searcher={"name": "regularized_evolution", "population": 4})
cfg("searcher-population-zero", "error", searcher={"name": "regularized_evolution", "population_size": 0})
cfg("searcher-population-string", "error", searcher={"name": "regularized_evolution", "population_size": "4"})
cfg("searcher-population-float", "error", searcher={"name": "regularized_evolution", "population_size": 4.5})
cfg("searcher-population-absurd", "error",
    searcher={"name": "regularized_evolution", "population_size": 10 ** 12, "sample_size": 2})
cfg("searcher-sample-above-population", "error",
    searcher={"name": "regularized_evolution", "population_size": 4, "sample_size": 9})
cfg("nsga2-crossover-nan", "error", searcher={"name": "nsga2", "population_size": 4, "crossover_prob": float("nan")})
cfg("nsga2-mutation-prob-5", "error", searcher={"name": "nsga2", "population_size": 4, "mutation_prob": 5.0})
cfg("predictor-evolution-without-predictor", "error", searcher={"name": "predictor_evolution"})
cfg("predictor-unknown-name", "error", predictor={"name": "crystal_ball"})
cfg("predictor-unknown-key", "error", predictor={"name": "xgb", "n_trees": 5})
cfg("executor-unknown-name", "error", executor={"name": "slurm"})
cfg("executor-unknown-key", "error", executor={"name": "serial", "workers": 4})
cfg("executor-ray-max-concurrent-zero", "error", executor={"name": "ray", "max_concurrent": 0})

# budget
cfg("budget-missing", "error", budget=_DROP)
cfg("budget-empty", "error", budget={})
cfg("budget-both-kinds", "error", budget={"evaluations": 5, "cost_seconds": 5})
cfg("budget-a-list", "error", budget=[5])
cfg("budget-unknown-key", "error", budget={"evaluations": 5, "max_hours": 1})
cfg("budget-evaluations-zero", "error", budget={"evaluations": 0})
cfg("budget-evaluations-negative", "error", budget={"evaluations": -5})
cfg("budget-evaluations-float", "error", budget={"evaluations": 2.5})
cfg("budget-evaluations-string", "error", budget={"evaluations": "ten"})
cfg("budget-evaluations-huge", "error", budget={"evaluations": 10 ** 40})
cfg("budget-cost-zero", "error", budget={"cost_seconds": 0})
cfg("budget-cost-negative", "error", budget={"cost_seconds": -5})
cfg("budget-cost-nan", "error", budget={"cost_seconds": float("nan")})
cfg("budget-cost-inf", "error", budget={"cost_seconds": float("inf")})
cfg("budget-cost-1e300", "error", budget={"cost_seconds": 1e300})
cfg("budget-batch-zero", "error", budget={"evaluations": 5, "batch_size": 0})

# objectives
cfg("objectives-missing", "error", objectives=_DROP)
cfg("objectives-empty", "error", objectives=[])
cfg("objectives-a-mapping", "error", objectives={"metric": "val_acc"})
cfg("objectives-item-string", "ok", objectives=["val_acc"])
cfg("objectives-unknown-metric", "error", objectives=[{"metric": "accuracy"}])
cfg("objectives-unknown-key", "error", objectives=[{"metric": "val_acc", "goal": "max"}])
cfg("objectives-bad-mode", "error", objectives=[{"metric": "val_acc", "mode": "maximize"}])
cfg("objectives-bound-nan", "error", objectives=[{"metric": "val_acc", "bound": float("nan")}])
cfg("objectives-bound-inf", "error", objectives=[{"metric": "val_acc", "bound": float("inf")}])
cfg("objectives-bound-string", "error", objectives=[{"metric": "val_acc", "bound": "high"}])
cfg("objectives-bound-unreachable", "error", objectives=[{"metric": "val_acc", "mode": "max", "bound": 101.0}])

# output
cfg("output-unknown-key", "error", output={"dir": "runs", "plots": False, "progress": False, "colour": True})
cfg("output-dir-integer", "error", output={"dir": 5, "plots": False, "progress": False})
cfg("output-plots-string", "error", output={"dir": "runs", "plots": "yes", "progress": False})
cfg("output-report-metric-unknown", "error", output={"dir": "runs", "plots": False, "progress": False,
                                                     "report_metric": "top5"})
cfg("output-pareto-reference-length", "error", output={"dir": "runs", "plots": False, "progress": False,
                                                       "pareto_reference": [1.0, 2.0, 3.0]})
cfg("output-pareto-reference-nan", "error",
    searcher={"name": "nsga2", "population_size": 4}, budget={"evaluations": 8, "batch_size": 4},
    evaluator={"name": "nb201_tabular", "latency_devices": ["gold_6240"]},
    objectives=[{"metric": "val_acc", "mode": "max"}, {"metric": "lat_gold_6240", "mode": "min"}],
    output={"dir": "runs", "plots": False, "progress": False, "pareto_reference": [float("nan"), 1.0]})
cfg("output-dir-is-a-file", "error", output={"dir": "afile", "plots": False, "progress": False},
    prepare=lambda ctx: ctx.write("afile", "not a directory"))

# --set overrides
for _id, _override in [("no-equals", "searcher"), ("empty-key", "=3"), ("unknown-section", "serch.x=1"),
                       ("index-out-of-range", "objectives.5.metric=val_acc"),
                       ("negative-index", "objectives.-1.metric=val_acc"),
                       ("non-numeric-index", "objectives.first.metric=val_acc"), ("into-a-scalar", "name.x=1"),
                       ("python-tag", "seed=!!python/object/apply:os.getpid []"), ("nan", "budget.evaluations=.nan"),
                       ("section-replaced-by-int", "searcher=5"), ("empty-path-part", "searcher..population_size=3"),
                       ("yaml-1e3-is-a-string", "budget.evaluations=1e3"), ("flow-garbage", "searcher.population_size=[")]:
    cfg(f"set-{_id}", "error", extra=("--set", _override))


# ---------------------------------------------------------------------------------------------
# architecture strings, through `nassearch eval`, for every space


def arch(space: str, case_id: str, expect: str, *texts: str | Callable[[Ctx], str],
         check: Callable[[Ctx], str | None] | None = None) -> None:
    base = {"nasbench201": BASE_CONFIG, "nasbench101": NB101_CONFIG, "darts": DARTS_CONFIG}[space]

    def make(ctx: Ctx) -> list[str]:
        return ["eval", ctx.config(base), *(t(ctx) if callable(t) else t for t in texts)]

    add(f"archs/{space}-{case_id}", expect, make, check)


# NAS-Bench-201
arch("nasbench201", "ok-best", "ok", NB201_BEST)
arch("nasbench201", "ok-all-none", "ok", NB201_NONE)
arch("nasbench201", "ok-two-archs", "ok", NB201_BEST, NB201_NONE)
arch("nasbench201", "empty", "error", "")
arch("nasbench201", "whitespace", "error", "   ")
arch("nasbench201", "two-groups", "error", "|nor_conv_3x3~0|+|conv_7x7~0|none~1|")
arch("nasbench201", "four-groups", "error", NB201_BEST + "+|none~0|")
arch("nasbench201", "trailing-plus", "error", NB201_BEST + "+")
arch("nasbench201", "missing-edge", "error", "|none~0|+|none~0|+|none~0|none~1|none~2|")
arch("nasbench201", "unknown-op", "error", NB201_BEST.replace("skip_connect", "conv_7x7"))
arch("nasbench201", "uppercase-op", "error", NB201_BEST.upper())
arch("nasbench201", "wrong-source", "error", NB201_BEST.replace("nor_conv_3x3~0|+|nor_conv_3x3~0", "nor_conv_3x3~1|+|nor_conv_3x3~0", 1))
arch("nasbench201", "missing-tilde", "error", NB201_BEST.replace("skip_connect~0", "skip_connect0"))
arch("nasbench201", "negative-source", "error", NB201_BEST.replace("skip_connect~0", "skip_connect~-1"))
arch("nasbench201", "5000-digit-source", "error", NB201_BEST.replace("skip_connect~0", "skip_connect~" + "9" * 5000))
arch("nasbench201", "arabic-indic-digit", "error", NB201_BEST.replace("skip_connect~0", "skip_connect~\u0660"))
arch("nasbench201", "fullwidth-digit", "error", NB201_BEST.replace("skip_connect~0", "skip_connect~\uff10"))
arch("nasbench201", "nul-byte", "error", NB201_BEST.replace("skip_connect", "skip\x00connect"))
arch("nasbench201", "newline-inside", "error", NB201_BEST.replace("+", "+\n", 1))
arch("nasbench201", "1mb-string", "error", "|" + "none~0|" * 150_000)
arch("nasbench201", "nb101-string", "error", "0100|input,output")
arch("nasbench201", "darts-genotype", "error", DARTS_V2)

# NAS-Bench-101 (the shared tables hold 11,000 cells; arch strings are "<V*V bits>|input,...,output")
@functools.lru_cache(maxsize=1)
def nb101_rows():
    import pandas as pd

    return pd.read_csv(DATA / "nasbench101" / "nb101_10k.csv.gz", dtype={"hash": str, "adjacency": str, "ops": str},
                       nrows=20)


def nb101_string(row: int = 0) -> str:
    record = nb101_rows().iloc[row]
    ops = record["ops"].split(",")
    v = len(ops)
    return "".join(record["adjacency"][r * 7:r * 7 + v] for r in range(v)) + "|" + ",".join(ops)


def nb101_chain(vertices: int) -> str:
    bits = ["0"] * (vertices * vertices)
    for v in range(vertices - 1):
        bits[v * vertices + v + 1] = "1"
    return "".join(bits) + "|" + ",".join(["input", *[NB101_OPS[i % 3] for i in range(vertices - 2)], "output"])


C3 = NB101_OPS[0]
arch("nasbench101", "ok-table-cell", "ok", lambda ctx: nb101_string(0))
arch("nasbench101", "ok-two-table-cells", "ok", lambda ctx: nb101_string(1), lambda ctx: nb101_string(2))
arch("nasbench101", "empty", "error", "")
arch("nasbench101", "no-separator", "error", "0100" + "input,output")
arch("nasbench101", "two-separators", "error", "0100|input|output")
arch("nasbench101", "wrong-bit-count", "error", "01000|input,output")
arch("nasbench101", "bit-2", "error", f"020001000|input,{C3},output")
arch("nasbench101", "arabic-indic-bits", "error", f"0\u0661\u06600\u0660\u06610\u0660\u0660|input,{C3},output")
arch("nasbench101", "lower-triangular", "error", f"000100010|input,{C3},output")
arch("nasbench101", "no-path", "error", f"010000000|input,{C3},output")
arch("nasbench101", "eight-vertices", "error", lambda ctx: nb101_chain(8))
arch("nasbench101", "too-many-edges", "error",
     "0111111001111100011110000111000001100000010000000|input," + ",".join([C3] * 5) + ",output")
arch("nasbench101", "unknown-op", "error", "011001000|input,conv5x5-bn-relu,output")
arch("nasbench101", "no-input-op", "error", f"011001000|{C3},{C3},output")
arch("nasbench101", "single-vertex", "error", "0|input")
arch("nasbench101", "3000-vertex-chain", "error", lambda ctx: nb101_chain(3000))
arch("nasbench101", "valid-cell-not-in-tables", "error", f"011001000|input,{C3},output")
arch("nasbench101", "nb201-string", "error", NB201_BEST)

# DARTS (NAS-Bench-301 surrogate)
arch("darts", "ok-darts-v2-string", "ok", DARTS_V2)
arch("darts", "ok-published-name", "ok", "DARTS_V2")
arch("darts", "empty", "error", "")
arch("darts", "plain-word", "error", "hello")
arch("darts", "unclosed-call", "error", "Genotype(")
arch("darts", "other-call", "error", "print(1)")
arch("darts", "code-injection", "error", lambda ctx: f"__import__('os').system('touch {ctx.canary()}')",
     check=no_canary)
arch("darts", "positional-fields", "error", "Genotype([('sep_conv_3x3', 0)], [2], [('sep_conv_3x3', 0)], [2])")
arch("darts", "unknown-field", "error", DARTS_V2.replace("reduce_concat=", "reduce_cat="))
arch("darts", "missing-field", "error", DARTS_V2.split(", reduce=")[0] + ")")
arch("darts", "unknown-op", "error", DARTS_V2.replace("dil_conv_3x3", "conv_9x9"))
arch("darts", "input-out-of-range", "error", DARTS_V2.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 7)"))
arch("darts", "concat-repeats", "error", DARTS_V2.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=[2, 2, 4, 5]"))
arch("darts", "odd-pair-count", "error", DARTS_V2.replace("('dil_conv_3x3', 2)], normal_concat", "], normal_concat"))
arch("darts", "none-op-outside-space", "error", DARTS_V2.replace("dil_conv_3x3", "none"))
arch("darts", "same-input-twice", "error", DARTS_V2.replace("normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)",
                                                              "normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 0)"))
arch("darts", "five-node-nasnet", "error", "NASNet")
arch("darts", "unknown-name", "error", "DARTS_V9")
arch("darts", "range-of-a-billion", "error", DARTS_V2.replace("normal_concat=[2, 3, 4, 5]",
                                                              "normal_concat=range(1000000000)"))
arch("darts", "tuple-range-10-pow-9", "error", DARTS_V2.replace("normal_concat=[2, 3, 4, 5]",
                                                                "normal_concat=tuple(range(10**9))"))
arch("darts", "list-times-a-billion", "error", DARTS_V2.replace("normal_concat=[2, 3, 4, 5]",
                                                                "normal_concat=[2] * 1000000000"))
arch("darts", "nested-150-lists", "error", DARTS_V2.replace("normal_concat=[2, 3, 4, 5]",
                                                            "normal_concat=" + "[" * 150 + "2" + "]" * 150))
arch("darts", "nested-300-parens", "error", DARTS_V2.replace("normal_concat=[2, 3, 4, 5]",
                                                             "normal_concat=" + "(" * 300 + "2" + ")" * 300))
arch("darts", "100k-unary-minus", "error", DARTS_V2.replace("('dil_conv_3x3', 2)",
                                                            "('dil_conv_3x3', " + "-" * 100_000 + "2)"))
arch("darts", "5000-digit-input", "error", DARTS_V2.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', " + "9" * 5000 + ")"))
arch("darts", "200k-pairs", "error", "Genotype(normal=[" + "('sep_conv_3x3', 0), " * 200_000 +
     "], normal_concat=[2], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1)], reduce_concat=[2])")
arch("darts", "nb201-string", "error", NB201_BEST)


# ---------------------------------------------------------------------------------------------
# data files: a tmp copy of the data directory (symlinks) with one file broken, via --data-dir


def data(case_id: str, expect: str, relative: str | None, content: Any, *, base: dict[str, Any] | None = None,
         archs: tuple[str | Callable[[Ctx], str], ...] = (NB201_BEST,), command: str = "eval",
         check: Callable[[Ctx], str | None] | None = None) -> None:
    """``nassearch eval`` (or ``data verify``) against a data copy whose ``relative`` file is ``content``
    (bytes/str; a callable(ctx) -> bytes/str; None removes it)."""

    def make(ctx: Ctx) -> list[str]:
        payload = content(ctx) if callable(content) else content
        root = ctx.broken_data(relative, payload) if relative else str(ctx.data_copy())
        if command == "verify":
            return ["data", "verify", "--data-dir", root]
        return ["eval", ctx.config(base), *(a(ctx) if callable(a) else a for a in archs), "--data-dir", root]

    add(f"data/{case_id}", expect, make, check)


def shared_bytes(relative: str) -> bytes:
    return (DATA / relative).read_bytes()


NB201_TABLE = "nasbench201/nb201_12epoch.csv.gz"
LATENCY_TABLE = "nasbench201/nb201_latency_ms.csv.gz"
OFFICIAL = "nasbench101/nb101_official.csv.gz"
LATENCY_CONFIG = changed(BASE_CONFIG, {"evaluator": {"name": "nb201_tabular", "latency_devices": ["gold_6240"]}})
OFFICIAL_CONFIG = changed(NB101_CONFIG, {"evaluator": {"name": "nb101_tabular", "tables": ["nb101_official"]}})


def official_table(edit: Callable[[Any], Any] | None = None, *, raw: bool = False) -> Callable[[Ctx], bytes]:
    """The NB101 table ``nassearch data import`` makes from a small synthetic release (its five cells:
    OFFICIAL_CELL and four more), edited by ``edit(frame)``; ``raw``: not gzip-compressed."""

    def build(ctx: Ctx) -> bytes:
        import pandas as pd

        good = ctx.templates.official_table()
        if edit is None and not raw:
            return good.read_bytes()
        frame = pd.read_csv(good, dtype={c: str for c in ("hash", "adjacency", "ops")})
        if edit is not None:
            frame = edit(frame)
        text = frame.to_csv(index=False).encode()
        return text if raw else gzip.compress(text)

    return build


def _set(prefix: str, value: Any, row: int = 0) -> Callable[[Any], Any]:
    """Set every column named ``prefix*`` of ``row`` (row 0 is OFFICIAL_CELL) to ``value``."""

    def edit(frame):
        frame = frame.sort_values("num_vertices", ascending=False, kind="stable").reset_index(drop=True)
        for column in [c for c in frame.columns if c.startswith(prefix)]:
            if isinstance(value, str):
                frame[column] = frame[column].astype(object)
            frame.loc[row, column] = value
        return frame

    return edit


data("ok-intact-copy", "ok", None, None)
add("data/ok-list", "ok", lambda ctx: ["data", "list", "--data-dir", str(ctx.data_copy())])
add("data/ok-list-empty-dir", "ok", lambda ctx: ((ctx.tmp / "empty").mkdir(), ["data", "list", "--data-dir", "empty"])[1])
data("ok-verify", "ok", None, None, command="verify")
data("ok-latency", "ok", None, None, base=LATENCY_CONFIG)
add("data/dir-missing", "error", lambda ctx: ["eval", ctx.config(), NB201_BEST, "--data-dir", "nowhere"])
add("data/dir-is-a-file", "error", lambda ctx: ["eval", ctx.config(), NB201_BEST, "--data-dir",
                                                ctx.write("afile", "x")])
add("data/env-dir-missing", "error",
    lambda ctx: (ctx.monkeypatch.setenv("NASSEARCH_DATA", str(ctx.tmp / "nowhere")), ["eval", ctx.config(), NB201_BEST])[1])
data("nb201-missing", "error", NB201_TABLE, None)
data("nb201-zero-bytes", "error", NB201_TABLE, b"")
data("nb201-truncated-gzip", "error", NB201_TABLE, lambda ctx: shared_bytes(NB201_TABLE)[:100_000])
data("nb201-garbage", "error", NB201_TABLE, bytes(range(256)) * 64)
data("nb201-plain-csv-not-gzip", "error", NB201_TABLE, "index,arch_str\n0,x\n")
add("data/nb201-is-a-directory", "error",
    lambda ctx: (lambda root: ((Path(root) / NB201_TABLE).mkdir(), ["eval", ctx.config(), NB201_BEST,
                                                                  "--data-dir", root])[1])(ctx.broken_data(NB201_TABLE, None)))
add("data/nb201-dangling-symlink", "error",
    lambda ctx: (lambda root: ((Path(root) / NB201_TABLE).symlink_to(ctx.tmp / "gone"),
                               ["eval", ctx.config(), NB201_BEST, "--data-dir", root])[1])(ctx.broken_data(NB201_TABLE, None)))
data("nb201-another-table", "error", NB201_TABLE, lambda ctx: shared_bytes("nasbench101/nb101_10k.csv.gz"))
data("latency-missing", "error", LATENCY_TABLE, None, base=LATENCY_CONFIG)
data("latency-truncated", "error", LATENCY_TABLE, lambda ctx: shared_bytes(LATENCY_TABLE)[:1000], base=LATENCY_CONFIG)
data("nb101-10k-corrupt-csv", "error", "nasbench101/nb101_10k.csv.gz", gzip.compress(b"hash,adjacency\n\"unclosed\n"),
     base=NB101_CONFIG, archs=(lambda ctx: nb101_string(0),))
data("nb101-specs-not-json", "error", "nasbench101/nb101_1k_specs.json", "{not json", base=NB101_CONFIG,
     archs=(lambda ctx: nb101_string(0),))
data("nb301-onnx-corrupt", "error", "nasbench301/yahpo_nb301_model_v2.onnx", b"\x08\x07garbage", base=DARTS_CONFIG,
     archs=(DARTS_V2,))
data("nb301-encoding-missing", "error", "nasbench301/yahpo_nb301_encoding_v2.json", None, base=DARTS_CONFIG,
     archs=(DARTS_V2,))
data("verify-truncated-table", "error", NB201_TABLE, lambda ctx: shared_bytes(NB201_TABLE)[:1000], command="verify")
# an imported official NB101 table has no published checksum: its content is validated on load
#: The 7-vertex cell of the synthetic release (the first row after sorting by num_vertices, descending).
OFFICIAL_CELL = ("0111000000010100000100000100000001000000010000000|"
                 "input,conv3x3-bn-relu,conv1x1-bn-relu,conv1x1-bn-relu,conv3x3-bn-relu,maxpool3x3,output")
_OFFICIAL = dict(base=OFFICIAL_CONFIG, archs=(OFFICIAL_CELL,))
data("ok-official-table", "ok", OFFICIAL, official_table(), **_OFFICIAL)
data("ok-official-table-edited-but-valid", "ok", OFFICIAL, official_table(_set("val_acc_epoch108", 0.5)), **_OFFICIAL)
data("official-truncated-gzip", "error", OFFICIAL, lambda ctx: official_table()(ctx)[:-40], **_OFFICIAL)
data("official-not-gzip", "error", OFFICIAL, official_table(raw=True), **_OFFICIAL)
data("official-empty-gzip", "error", OFFICIAL, gzip.compress(b""), **_OFFICIAL)
data("official-nan-accuracy", "error", OFFICIAL, official_table(_set("val_acc", float("nan"))), **_OFFICIAL)
data("official-750-percent", "error", OFFICIAL, official_table(_set("val_acc", 7.5)), **_OFFICIAL)
data("official-negative-accuracy", "error", OFFICIAL, official_table(_set("test_acc", -0.3)), **_OFFICIAL)
data("official-inf-train-time", "error", OFFICIAL, official_table(_set("train_time_s", float("inf"))), **_OFFICIAL)
data("official-negative-params", "error", OFFICIAL, official_table(_set("trainable_params", -5)), **_OFFICIAL)
data("official-text-accuracy", "error", OFFICIAL, official_table(_set("val_acc", "high", row=3)), **_OFFICIAL)
data("official-vertices-out-of-range", "error", OFFICIAL, official_table(_set("num_vertices", 70, row=2)), **_OFFICIAL)
data("official-missing-column", "error", OFFICIAL, official_table(lambda f: f.drop(columns=["train_time_s"])),
     **_OFFICIAL)
data("official-bad-adjacency", "error", OFFICIAL, official_table(_set("adjacency", "2" * 49, row=1)), **_OFFICIAL)
data("official-duplicate-hash", "error", OFFICIAL,
     official_table(lambda f: f.assign(hash=[f["hash"].iloc[0]] * len(f))), **_OFFICIAL)


def tfrecord(ctx: Ctx, records: list[bytes]) -> str:
    from nassearch.data.nb101_import import write_tfrecord

    write_tfrecord(ctx.tmp / "nb.tfrecord", records)
    return "nb.tfrecord"


add("data/import-missing-file", "error", lambda ctx: ["data", "import", "nasbench101", "missing.tfrecord",
                                                      "--out", "t.csv.gz"])
add("data/import-zero-bytes", "error", lambda ctx: ["data", "import", "nasbench101", ctx.write("nb.tfrecord", b""),
                                                    "--out", "t.csv.gz"])
add("data/import-garbage", "error", lambda ctx: ["data", "import", "nasbench101",
                                                 ctx.write("nb.tfrecord", bytes(range(256)) * 8), "--out", "t.csv.gz"])
add("data/import-truncated", "error",
    lambda ctx: ["data", "import", "nasbench101",
                 ctx.write("nb.tfrecord", (ctx.tmp / tfrecord(ctx, [b'["x"]' * 50])).read_bytes()[:-10]),
                 "--out", "t.csv.gz"])
add("data/import-record-not-json", "error",
    lambda ctx: ["data", "import", "nasbench101", tfrecord(ctx, [b"\xff\xfe not json"]), "--out", "t.csv.gz"])
add("data/import-row-empty-list", "error",
    lambda ctx: ["data", "import", "nasbench101", tfrecord(ctx, [b"[]"]), "--out", "t.csv.gz"])


# ---------------------------------------------------------------------------------------------
# run directories: --resume and plot on a copy of a finished tiny run, damaged one way each


def rundir(case_id: str, expect: str, damage: Callable[[Ctx], Any] | None, command: str = "resume",
           extra: tuple[str, ...] = (), check: Callable[[Ctx], str | None] | None = None) -> None:
    def make(ctx: Ctx) -> list[str]:
        run = ctx.tiny_run()
        if damage is not None:
            damage(ctx)
        if command == "resume":
            return run_argv("tiny.yaml", "--resume", run, *extra)
        return ["plot", run, "--out", "curve.png", *extra]

    add(f"rundirs/{command}-{case_id}", expect, make, check)


def _rm(relative: str) -> Callable[[Ctx], None]:
    def damage(ctx: Ctx) -> None:
        path = ctx.tmp / relative
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    return damage


def _put(relative: str, content: str | bytes) -> Callable[[Ctx], None]:
    def damage(ctx: Ctx) -> None:
        path = ctx.tmp / relative
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        ctx.write(relative, content)
    return damage


def _sql(*statements: str) -> Callable[[Ctx], None]:
    return lambda ctx: ctx.sql(*statements)


STORE = "runs/tiny/seed-0/trials.sqlite"
DAMAGES: dict[str, Callable[[Ctx], Any]] = {
    "no-config": _rm("runs/tiny/config.yaml"),
    "config-not-yaml": _put("runs/tiny/config.yaml", "name: [unclosed\n"),
    "config-empty": _put("runs/tiny/config.yaml", ""),
    "config-a-list": _put("runs/tiny/config.yaml", "- name: tiny\n"),
    "trials-table-dropped": _sql("DROP TABLE trials"),
    "trial-row-deleted": _sql("DELETE FROM trials WHERE idx = 2"),
    "metrics-not-json": _sql("UPDATE trials SET metrics = '{oops' WHERE idx = 3"),
    "arch-garbage": _sql("UPDATE trials SET arch = 'not an architecture' WHERE idx = 1"),
    "seed-dir-a-file": _put("runs/tiny/seed-0", "I am not a directory"),
    "store-garbage": _put(STORE, bytes(range(256)) * 16),
}
for _name, _damage in DAMAGES.items():
    rundir(_name, "error", _damage, "resume")
    if _name != "arch-garbage":  # plot reads arch strings as labels only
        rundir(_name, "error", _damage, "plot")

rundir("ok-intact", "ok", None, "resume")
rundir("ok-intact", "ok", None, "plot")
rundir("ok-before-first-trial", "ok", lambda ctx: (_rm("runs/tiny/seed-0")(ctx), _rm("runs/tiny/summary.json")(ctx)))
rundir("checkpoint-state-empty", "error", _sql("UPDATE checkpoint SET state = ''"))
rundir("checkpoint-state-not-json", "error", _sql("UPDATE checkpoint SET state = 'nope'"))
rundir("checkpoint-state-no-keys", "error", _sql("UPDATE checkpoint SET state = '{}'"))
rundir("checkpoint-beyond-trials", "error", _sql("UPDATE checkpoint SET num_trials = 99"))
rundir("checkpoint-negative", "error", _sql("UPDATE checkpoint SET num_trials = -3"))
rundir("meta-config-not-json", "error", _sql("UPDATE meta SET value = '{oops' WHERE key = 'config'"))
rundir("store-deleted", "error", _rm(STORE))
rundir("store-zero-bytes", "error", _put(STORE, b""))
rundir("other-config", "error", lambda ctx: ctx.config(file="tiny.yaml", searcher__population_size=3))
rundir("meta-search-start-garbage", "error", _sql("UPDATE meta SET value = '\"x\"' WHERE key = 'search_start'"),
       "plot")
rundir("unknown-metric", "error", None, "plot", extra=("--metric", "top5"))
rundir("pareto-of-single-objective", "error", None, "plot", extra=("--pareto",))
add("rundirs/resume-missing-dir", "error", lambda ctx: run_argv(ctx.config(), "--resume", "runs/nothing"))
add("rundirs/resume-a-file", "error", lambda ctx: run_argv(ctx.config(), "--resume", ctx.write("afile", "x")))
add("rundirs/plot-missing-dir", "error", lambda ctx: ["plot", "runs/nothing", "--out", "p.png"])
add("rundirs/plot-a-file", "error", lambda ctx: ["plot", ctx.write("afile", "x"), "--out", "p.png"])
add("rundirs/plot-out-under-a-file", "error",
    lambda ctx: ["plot", ctx.tiny_run(), "--out", ctx.write("afile", "x") + "/p.png"])
add("rundirs/exists-without-overwrite", "error", lambda ctx: (ctx.tiny_run(), run_argv("tiny.yaml"))[1])
add("rundirs/ok-overwrite-own-run", "ok", lambda ctx: (ctx.tiny_run(), run_argv("tiny.yaml", "--overwrite"))[1])
add("rundirs/overwrite-foreign-dir", "error",
    lambda ctx: (ctx.write("runs/tiny/precious.txt", "mine"), run_argv(ctx.config(), "--overwrite"))[1],
    file_survives("runs/tiny/precious.txt"))
add("rundirs/overwrite-a-file", "error",
    lambda ctx: (ctx.write("runs/tiny", "my notes"), run_argv(ctx.config(), "--overwrite"))[1],
    file_survives("runs/tiny"))


# ---------------------------------------------------------------------------------------------
# retraining: genotypes, retrain configs, checkpoints, CIFAR batch files


def retrain_argv(ctx: Ctx, target: str, *extra: str, data_root: str | None = None, **settings: Any) -> list[str]:
    sets = []
    for key, value in {**RETRAIN_TINY, "data_root": data_root or str(ctx.templates.cifar()), **settings}.items():
        sets += ["--set", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    return ["retrain", target, *sets, *extra]


def darts_run_dir(ctx: Ctx, summary: Any = None, config: str | None = None) -> str:
    """A hand-made darts search run directory whose seed-0 summary names DARTS_V2 as its best."""
    if config is None:  # what a real search writes: the config with every default filled in
        from nassearch.config import validate

        config = yaml_text(validate(copy.deepcopy(DARTS_CONFIG)).to_dict())
    ctx.write("search/config.yaml", config)
    if summary is None:
        summary = {"best": {"arch": DARTS_V2, "metrics": {"val_acc": 93.0}}}
    ctx.write("search/seed-0/summary.json", summary if isinstance(summary, str) else json.dumps(summary))
    return "search"


def retrain(case_id: str, expect: str, make: Callable[[Ctx], list[str]],
            check: Callable[[Ctx], str | None] | None = None) -> None:
    add(f"retrain/{case_id}", expect, make, check)


retrain("ok-tiny", "ok", lambda ctx: retrain_argv(ctx, "DARTS_V2", "--out", "out"))
retrain("ok-genotype-string", "ok", lambda ctx: retrain_argv(ctx, DARTS_V2, "--out", "out"))
retrain("ok-search-run-dir", "ok", lambda ctx: retrain_argv(ctx, darts_run_dir(ctx), "--out", "out"))
retrain("ok-resume-finished", "ok", lambda ctx: retrain_argv(ctx, "DARTS_V2", "--out", ctx.retrain_out(), "--resume"))
retrain("unknown-name", "error", lambda ctx: retrain_argv(ctx, "DARTS_V9", "--out", "out"))
retrain("empty-target", "error", lambda ctx: retrain_argv(ctx, "", "--out", "out"))
retrain("genotype-one-pair", "error",
        lambda ctx: retrain_argv(ctx, "Genotype(normal=[('sep_conv_3x3', 0)], normal_concat=[2])", "--out", "out"))
retrain("genotype-unclosed", "error", lambda ctx: retrain_argv(ctx, "Genotype(", "--out", "out"))
retrain("genotype-code-injection", "error",
        lambda ctx: retrain_argv(ctx, f"__import__('os').system('touch {ctx.canary()}')", "--out", "out"), no_canary)
retrain("genotype-range-of-a-billion", "error",
        lambda ctx: retrain_argv(ctx, DARTS_V2.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=range(1000000000)"),
                                 "--out", "out"))
retrain("target-missing-path", "error", lambda ctx: retrain_argv(ctx, "runs/no/such/run", "--out", "out"))
retrain("run-dir-of-nb201", "error", lambda ctx: retrain_argv(ctx, ctx.tiny_run(), "--out", "out"))
retrain("run-dir-without-seeds", "error",
        lambda ctx: (darts_run_dir(ctx), _rm("search/seed-0")(ctx), retrain_argv(ctx, "search", "--out", "out"))[2])
retrain("run-dir-summary-lacks-metric", "error",
        lambda ctx: retrain_argv(ctx, darts_run_dir(ctx, {"best": {"arch": DARTS_V2, "metrics": {}}}), "--out", "out"))
retrain("run-dir-summary-not-json", "error", lambda ctx: retrain_argv(ctx, darts_run_dir(ctx, "{oops"), "--out", "out"))
retrain("run-dir-summary-bad-arch", "error",
        lambda ctx: retrain_argv(ctx, darts_run_dir(ctx, {"best": {"arch": "Genotype(", "metrics": {"val_acc": 1.0}}}),
                                 "--out", "out"))
retrain("run-dir-config-not-yaml", "error",
        lambda ctx: retrain_argv(ctx, darts_run_dir(ctx, config="space: [unclosed\n"), "--out", "out"))
retrain("run-dir-config-a-list", "error",
        lambda ctx: retrain_argv(ctx, darts_run_dir(ctx, config="- space: darts\n"), "--out", "out"))
retrain("config-a-yaml-list", "error",
        lambda ctx: retrain_argv(ctx, "DARTS_V2", "--config", ctx.write("r.yaml", "- epochs: 1\n"), "--out", "out"))
retrain("config-python-tag", "error",
        lambda ctx: retrain_argv(ctx, "DARTS_V2", "--config",
                                 ctx.write("r.yaml", f"epochs: !!python/object/apply:os.system ['touch {ctx.canary()}']\n"),
                                 "--out", "out"), no_canary)
retrain("config-unknown-key", "error",
        lambda ctx: retrain_argv(ctx, "DARTS_V2", "--config", ctx.write("r.yaml", "epoch: 1\n"), "--out", "out"))
retrain("config-missing-file", "error", lambda ctx: retrain_argv(ctx, "DARTS_V2", "--config", "none.yaml", "--out", "out"))
retrain("config-binary-file", "error",
        lambda ctx: retrain_argv(ctx, "DARTS_V2", "--config", ctx.write("r.yaml", b"\xff\xfe\x00\x01" * 64), "--out", "out"))
retrain("set-learning-rate-nan", "error", lambda ctx: retrain_argv(ctx, "DARTS_V2", "--out", "out", learning_rate=".nan"))
retrain("set-grad-clip-inf", "error", lambda ctx: retrain_argv(ctx, "DARTS_V2", "--out", "out", grad_clip=".inf"))
retrain("set-drop-path-2", "error", lambda ctx: retrain_argv(ctx, "DARTS_V2", "--out", "out", drop_path_prob=2.0))
retrain("resume-without-out-dir", "error", lambda ctx: retrain_argv(ctx, "DARTS_V2", "--out", "out", "--resume"))


def _checkpoint(content: Callable[[Ctx, bytes], bytes]) -> Callable[[Ctx], list[str]]:
    """``retrain --resume`` of a copy of the finished tiny retrain run whose checkpoint.pt is replaced."""

    def make(ctx: Ctx) -> list[str]:
        out = ctx.retrain_out()
        path = ctx.tmp / out / "checkpoint.pt"
        path.write_bytes(content(ctx, path.read_bytes()))
        return retrain_argv(ctx, "DARTS_V2", "--out", out, "--resume")

    return make


def _torch_bytes(payload: Any) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


retrain("resume-checkpoint-zero-bytes", "error", _checkpoint(lambda ctx, good: b""))
retrain("resume-checkpoint-truncated", "error", _checkpoint(lambda ctx, good: good[: len(good) // 2]))
retrain("resume-checkpoint-garbage", "error", _checkpoint(lambda ctx, good: bytes(range(256)) * 8))
retrain("resume-checkpoint-wrong-keys", "error", _checkpoint(lambda ctx, good: _torch_bytes({"weights": [1, 2, 3]})))
retrain("resume-checkpoint-not-a-dict", "error", _checkpoint(lambda ctx, good: _torch_bytes([1, 2, 3])))
retrain("resume-checkpoint-wrong-shapes", "error", _checkpoint(
    lambda ctx, good: _torch_bytes({"model": {"stem.0.weight": __import__("torch").zeros(1)}, "optimizer": {},
                                    "scheduler": {}, "scaler": {}, "log": [], "train_seconds": 0.0})))
retrain("resume-checkpoint-crafted-pickle", "error",
        _checkpoint(lambda ctx, good: _torch_bytes({"model": _Canary(ctx.canary())})), no_canary)
retrain("resume-checkpoint-plain-pickle", "error",
        _checkpoint(lambda ctx, good: pickle.dumps({"model": _Canary(ctx.canary())}, protocol=2)), no_canary)
retrain("resume-out-config-not-yaml", "error",
        lambda ctx: (lambda out: (_put(f"{out}/config.yaml", "genotype: [unclosed\n")(ctx),
                                  retrain_argv(ctx, "DARTS_V2", "--out", out, "--resume"))[1])(ctx.retrain_out()))
retrain("resume-out-config-lacks-genotype", "error",
        lambda ctx: (lambda out: (_put(f"{out}/config.yaml", "source: DARTS_V2\n")(ctx),
                                  retrain_argv(ctx, "DARTS_V2", "--out", out, "--resume"))[1])(ctx.retrain_out()))


def _cifar(edit: Callable[[Ctx, Path], None]) -> Callable[[Ctx], list[str]]:
    """A fresh retrain on a copy of the tiny synthetic CIFAR-10 with one batch file edited."""

    def make(ctx: Ctx) -> list[str]:
        root = ctx.tmp / "cifar"
        shutil.copytree(ctx.templates.cifar(), root)
        edit(ctx, root / "cifar-10-batches-py")
        return retrain_argv(ctx, "DARTS_V2", "--out", "out", data_root=str(root))

    return make


def _crafted_batch(ctx: Ctx, folder: Path) -> None:
    with (folder / "data_batch_1").open("rb") as handle:
        batch = pickle.load(handle)
    batch["note"] = _Canary(ctx.canary())
    (folder / "data_batch_1").write_bytes(pickle.dumps(batch))


def _batch_payload(payload: Any) -> Callable[[Ctx, Path], None]:
    return lambda ctx, folder: (folder / "data_batch_1").write_bytes(pickle.dumps(payload))


retrain("cifar-crafted-pickle", "error", _cifar(_crafted_batch), no_canary)
retrain("cifar-truncated-batch", "error",
        _cifar(lambda ctx, folder: (folder / "data_batch_1").write_bytes((folder / "data_batch_1").read_bytes()[:500])))
retrain("cifar-zero-byte-batch", "error", _cifar(lambda ctx, folder: (folder / "test_batch").write_bytes(b"")))
retrain("cifar-batch-a-list", "error", _cifar(_batch_payload([1, 2, 3])))
retrain("cifar-batch-wrong-shape", "error",
        _cifar(_batch_payload({"data": __import__("numpy").zeros((10, 7), dtype="uint8"), "labels": [0] * 10})))
retrain("cifar-batch-labels-out-of-range", "error",
        _cifar(_batch_payload({"data": __import__("numpy").zeros((10, 3072), dtype="uint8"), "labels": [99] * 10})))
retrain("cifar-batch-missing", "error", _cifar(lambda ctx, folder: (folder / "data_batch_3").unlink()))
retrain("cifar-missing", "error",
        lambda ctx: retrain_argv(ctx, "DARTS_V2", "--out", "out", data_root=str(ctx.tmp / "no-cifar")))


# ---------------------------------------------------------------------------------------------
# Templates: a tiny real NB201 run, a tiny synthetic CIFAR-10 and a finished tiny retrain, made once


class Templates:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._built: dict[str, Path] = {}

    def _once(self, name: str, build: Callable[[Path], Path]) -> Path:
        if name not in self._built:
            where = self.root / name
            where.mkdir()
            self._built[name] = build(where)
        return self._built[name]

    def nb201_run(self) -> Path:
        def build(where: Path) -> Path:
            (where / "tiny.yaml").write_text(yaml_text(BASE_CONFIG))
            _in_dir(where, ["run", "tiny.yaml"])
            return where / "runs" / "tiny"

        return self._once("nb201", build)

    def cifar(self) -> Path:
        def build(where: Path) -> Path:
            from nassearch.training.datasets import write_synthetic_cifar10

            write_synthetic_cifar10(where, n_train=50, n_test=10)
            return where

        return self._once("cifar", build)

    def official_table(self) -> Path:
        def build(where: Path) -> Path:
            from tests.test_nb101_import import synthetic_runs, write_runs

            write_runs(where / "release.tfrecord", synthetic_runs((4, 12, 36, 108)))
            _in_dir(where, ["data", "import", "nasbench101", "release.tfrecord", "--out", "nb101_official.csv.gz"])
            return where / "nb101_official.csv.gz"

        return self._once("official", build)

    def retrain_run(self) -> Path:
        cifar = self.cifar()

        def build(where: Path) -> Path:
            sets = [a for k, v in {**RETRAIN_TINY, "data_root": str(cifar)}.items()
                    for a in ("--set", f"{k}={json.dumps(v) if not isinstance(v, str) else v}")]
            _in_dir(where, ["retrain", "DARTS_V2", *sets, "--out", "out"])
            return where / "out"

        return self._once("retrain", build)


def _in_dir(where: Path, argv: list[str]) -> None:
    from nassearch.cli import main

    previous = Path.cwd()
    os.chdir(where)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
            code = main(argv)
    finally:
        os.chdir(previous)
    assert code == 0, f"template {argv} failed: {err.getvalue()}"


@pytest.fixture(scope="module")
def templates(tmp_path_factory, data_dir) -> Templates:
    """The shared templates; the modules every case imports are imported here, outside the time limit."""
    import importlib

    for module in ("torch", "nassearch.cli", "nassearch.runner", "nassearch.plots", "nassearch.evaluators.tabular",
                   "nassearch.evaluators.surrogate", "nassearch.training.retrain", "nassearch.spaces.darts", "nassearch.spaces.nasbench101",
                   "nassearch.spaces.nasbench201", "nassearch.searchers.regularized_evolution", "nassearch.searchers.random_search",
                   "nassearch.searchers.nsga2"):
        importlib.import_module(module)
    return Templates(tmp_path_factory.mktemp("corpus-templates"))


# ---------------------------------------------------------------------------------------------
# The harness


class CaseTimeout(BaseException):
    """Raised by SIGALRM inside a case that runs past LIMIT_S (a BaseException: no ``except Exception``
    in the code under test can swallow it)."""


def _on_alarm(signum, frame):
    raise CaseTimeout()


def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


@contextlib.contextmanager
def _limits():
    """SIGALRM after LIMIT_S, an address-space cap of MEMORY_HEADROOM above the current size, and a
    last-resort watchdog that ends the process if a case hangs in C code where no signal gets through."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _vm_size() + MEMORY_HEADROOM
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, LIMIT_S)
    faulthandler.dump_traceback_later(max(120.0, 12 * LIMIT_S), exit=True, file=sys.__stderr__)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        faulthandler.cancel_dump_traceback_later()
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _short(text: str, limit: int = 300) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def run_case(case: Case, ctx: Ctx, capsys) -> tuple[str, str] | None:
    """Run one case; None when it behaves, else (kind, reason)."""
    from nassearch.cli import main

    argv = case.make(ctx)
    capsys.readouterr()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    for handler in handlers:  # basicConfig in main() then writes to this case's captured stderr
        root.removeHandler(handler)
    exception = None
    start = time.perf_counter()
    try:
        with _limits():
            code = main(argv)
    except CaseTimeout:
        return "hang", f"still running after {LIMIT_S:g} s"
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException as exc:  # noqa: BLE001 - any escaping exception is a traceback for the user
        exception = exc
        code = None
    finally:
        elapsed = time.perf_counter() - start
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
    out, err = capsys.readouterr()
    side_effect = case.check(ctx) if case.check else None
    failure = _classify(case, code, out, err, exception, elapsed)
    if side_effect:
        return ("side effect", side_effect + (f"; also [{failure[0]}] {failure[1]}" if failure else ""))
    return failure


def _classify(case: Case, code: int | None, out: str, err: str, exception: BaseException | None,
              elapsed: float) -> tuple[str, str] | None:
    import traceback

    if exception is not None:
        frames = traceback.extract_tb(exception.__traceback__)
        where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
        return "traceback", f"{type(exception).__name__}: {_short(str(exception), 200)}{where}"
    if elapsed > LIMIT_S:
        return "hang", f"took {elapsed:.1f} s (limit {LIMIT_S:g} s)"
    if "Traceback" in out or "Traceback" in err:
        return "traceback", f"a traceback was printed: {_short(err[err.find('Traceback'):], 200)}"
    lines = [line for line in err.splitlines() if line.strip()]
    if case.expect == "ok":
        if code != 0:
            return "wrong exit", f"valid input refused: exit {code}: {_short(err, 240)}"
        return None
    if code == 0:
        return "silent acceptance", f"exit 0; stdout: {_short(out, 160)}"
    if code != 2:
        return "wrong exit", f"exit {code} (expected 2): {_short(err, 240)}"
    if not lines:
        return "bad message", "exit 2 with nothing on stderr"
    if len(lines) > 1:
        return "more than one line", f"{len(lines)} lines on stderr: {_short(err, 240)}"
    if not lines[0].startswith("nassearch: error: "):
        return "bad message", f"stderr does not start with 'nassearch: error: ': {_short(lines[0], 200)}"
    return None


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, templates: Templates, tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NASSEARCH_DATA", str(DATA))
    failure = run_case(case, Ctx(tmp_path, templates, monkeypatch), capsys)
    if failure is not None:
        kind, reason = failure
        pytest.fail(f"[{kind}] {case.id}: {reason}", pytrace=False)


def area_counts() -> dict[str, int]:
    return dict(sorted(Counter(case.area for case in CASES).items()))


def test_corpus_size_and_areas(capsys):
    counts = area_counts()
    with capsys.disabled():
        print("\nbad-input corpus: " + ", ".join(f"{area} {n}" for area, n in counts.items())
              + f"; total {len(CASES)} ({sum(c.expect == 'ok' for c in CASES)} valid inputs)")
    assert len(CASES) >= 200
    assert set(counts) == {"configs", "archs", "data", "rundirs", "retrain"}
    for area in counts:  # every area proves that valid input still works
        assert any(c.expect == "ok" and c.area == area for c in CASES), area
    for space in ("nasbench201", "nasbench101", "darts"):
        assert sum(c.id.startswith(f"archs/{space}-") for c in CASES) >= 10, space
