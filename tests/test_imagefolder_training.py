"""The ``imagenet_train`` evaluator: proxy training of each candidate by the recipe pipeline on an ImageFolder
dataset, validated on held-out training images; deterministic; built from config sections; searched with."""

import json
import math
import os
import sqlite3
import subprocess
import sys

import pytest
import torch
import yaml

from nassearch import config as cfg
from nassearch.cli import main
from nassearch.errors import ConfigError, DataError
from nassearch.evaluators.imagefolder_training import ImageFolderTraining
from nassearch.spaces.proxylessnas import ProxylessNASSpace
from nassearch.training.imagefolder import NEURAL_PREDICTOR_HOLDOUT, write_synthetic_imagefolder
from tests.test_cli import one_line_error
from tests.test_retrain_recipes import PROXYLESS, PROXYLESS_ARCH, REPO

NEURAL_PREDICTOR = REPO / "experiments" / "proxyless_neural_predictor.yaml"

TINY_WIDTHS = {"stem": 8, "first": 8, "stages": [8, 8, 16, 16, 16, 16], "last": 32}
#: The Neural Predictor's validation recipe cut to one short epoch on 32-pixel images and tiny widths.
SHORT = {"epochs": 1, "warmup_epochs": 0, "batch_size": 8, "image_size": 32, "num_workers": 0,
         "model": {"widths": TINY_WIDTHS}}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_synthetic_imagefolder(tmp_path_factory.mktemp("imagefolder") / "data", classes=3,
                                       train_per_class=10, val_per_class=2, size=32)


def _evaluator(data, **options):
    options = {"recipe": str(PROXYLESS), "data_root": str(data), "settings": SHORT, "holdout": 6, "device": "cpu",
               **options}
    return ImageFolderTraining(ProxylessNASSpace(), **options)


def test_trains_on_the_training_images_minus_a_holdout_and_is_deterministic(data, one_torch_thread):
    evaluator = _evaluator(data)
    assert len(evaluator.train_set) == 24 and len(evaluator.eval_set) == 6 and len(evaluator.classes) == 3
    assert evaluator.recipe.optimizer == "rmsprop_tf" and evaluator.recipe.holdout == 6  # the recipe, shortened
    arch = ProxylessNASSpace().from_str(PROXYLESS_ARCH)
    rng_before = torch.get_rng_state()
    result = evaluator.evaluate(arch)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is untouched
    assert set(result.metrics) == set(evaluator.metrics)
    metrics = result.metrics
    assert 0 <= metrics["val_acc"] <= metrics["val_top5"] == 100 and math.isfinite(metrics["train_loss"])
    cost = ProxylessNASSpace().cost(arch)  # the deployed architecture's cost, not the narrow trained network's
    assert (metrics["params"], metrics["flops"]) == (cost.params_m, cost.flops_m)
    assert result.cost_s == result.wall_s > 0
    assert _evaluator(data).evaluate(arch).metrics == metrics
    other_seed = _evaluator(data, seed=1).evaluate(arch).metrics
    assert other_seed["train_loss"] != metrics["train_loss"]
    # the hold-out is drawn with the recipe's holdout_seed, not the search seed: every seed validates alike
    assert _evaluator(data, seed=1).eval_set.indices == evaluator.eval_set.indices


def test_max_train_batches_cuts_epochs_short(data, one_torch_thread, monkeypatch):
    seen = []
    network_forward = torch.nn.Module.__call__

    def counting(module, *args, **kwargs):
        if module.__class__.__name__ == "ProxylessNASNetwork" and module.training:
            seen.append(args[0].shape[0])
        return network_forward(module, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "__call__", counting)
    _evaluator(data, max_train_batches=2).evaluate(ProxylessNASSpace().from_str(PROXYLESS_ARCH))
    assert seen == [8, 8]


def test_config_section_builds_it_and_bad_settings_are_one_clear_error(data, tmp_path):
    spec = cfg.resolve_component("evaluator", {"name": "imagenet_train", "recipe": str(PROXYLESS),
                                               "data_root": str(data), "settings": SHORT, "holdout": 6})
    assert spec["max_train_batches"] is None and spec["device"] == "auto"
    evaluator = cfg.build_component("evaluator", spec, space=ProxylessNASSpace(), seed=3)
    assert isinstance(evaluator, ImageFolderTraining) and evaluator.recipe.seed == 3
    assert evaluator.dataset == "data"
    default = cfg.resolve_component("evaluator", {"name": "imagenet_train", "recipe": "r.yaml"})
    assert default["holdout"] == NEURAL_PREDICTOR_HOLDOUT and default["settings"] is None
    cases = [
        ({"settings": {**SHORT, "epoch": 2}}, r"epoch: unknown key in a recipe \(did you mean 'epochs'\?\)"),
        ({"settings": {**SHORT, "holdout": 10}}, "settings: holdout and seed are the evaluator's own settings"),
        ({"settings": [1]}, r"settings: a mapping of recipe keys"),
        ({"holdout": 0}, "holdout must be >= 1, got 0"),
        ({"holdout": 40}, "holdout: 40 images asked for, but the training set has only 30"),
        ({"recipe": str(tmp_path / "none.yaml")}, "cannot read recipe .*none.yaml"),
        ({"device": "gpu"}, "device: 'gpu' is not a torch device"),
    ]
    for change, message in cases:
        section = {**spec, **change}
        with pytest.raises(ConfigError, match=message):
            cfg.build_component("evaluator", section, space=ProxylessNASSpace(), seed=0)
    with pytest.raises(DataError, match="image dataset not found: no folder"):
        cfg.build_component("evaluator", {**spec, "data_root": str(tmp_path / "missing")}, space=ProxylessNASSpace(),
                            seed=0)


@pytest.mark.slow
def test_the_shipped_neural_predictor_search_runs_on_a_small_imagefolder(data, tmp_path, capsys):
    """``experiments/proxyless_neural_predictor.yaml`` shrunk by overrides (data, schedule, N, K, predictor epochs):
    trainings in this process, then in Ray worker processes (``num_gpus_per_trial`` on a GPU cluster), which find
    the same trials."""
    short = yaml.safe_dump(SHORT, default_flow_style=True).strip()
    args = ["run", str(NEURAL_PREDICTOR), "--threads", "1", "--set", f"output.dir={tmp_path / 'runs'}",
            "--set", "output.progress=false", "--set", f"evaluator.data_root={data}",
            "--set", f"evaluator.settings={short}", "--set", "evaluator.holdout=6",
            "--set", "evaluator.max_train_batches=2", "--set", "predictor.epochs=5", "--set", "predictor.layers=2",
            "--set", "searcher.initial_samples=3", "--set", "searcher.evaluations_per_round=1",
            "--set", "searcher.pool_size=50", "--set", "budget.evaluations=4"]
    assert main([*args, "--set", "executor={name: serial}"]) == 0
    serial = tmp_path / "runs" / "proxyless_neural_predictor"
    summary = json.loads((serial / "seed-0" / "summary.json").read_text())
    assert summary["num_trials"] == 4 and 0 <= summary["best"]["metrics"]["val_acc"] <= 100
    err = one_line_error(capsys, [*args, "--set", "evaluator.settings={epochs: 0}", "--overwrite"])
    assert "epochs: must be > 0, got 0" in err
    ray_executor = "executor={name: ray, num_cpus: 2, num_cpus_per_trial: 1, num_gpus_per_trial: 0}"
    # in a fresh process, as a user runs it: a local Ray instance must be started before anything imports ray
    command = [sys.executable, "-m", "nassearch", *args, "--set", "name=np_ray", "--set", ray_executor]
    done = subprocess.run(command, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    trials = [_trials(run / "seed-0" / "trials.sqlite") for run in (serial, tmp_path / "runs" / "np_ray")]
    assert len(trials[0]) == 4 and trials[0] == trials[1]


def _trials(path):
    with sqlite3.connect(path) as connection:
        return sorted(connection.execute("SELECT arch, metrics FROM trials").fetchall())
