"""Proxy training on an ImageFolder dataset: the ``imagenet_train`` evaluator.

Each architecture's network is trained from scratch by the final-training pipeline
(:mod:`nassearch.training.recipe_training`) under a recipe (``experiments/retrain_*.yaml``) shortened by
``settings`` (e.g. ``{epochs: 5}``), on the dataset's training images minus a fixed hold-out of ``holdout`` images
(the Neural Predictor's 50,046 by default, drawn with the recipe's ``holdout_seed``), and scored on that hold-out:
the official validation images stay unseen by the search. The search seed seeds the weights, data order and
augmentation, so the same seed gives the same result on the same device.

The device is chosen when an architecture is evaluated, not when the evaluator is built: under ``executor: ray``
with ``num_gpus_per_trial`` the driver may have no GPU while every trial's worker has one (``device: auto``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from nassearch.errors import ConfigError
from nassearch.evaluators.base import Evaluator, Result
from nassearch.spaces.base import Arch, SearchSpace
from nassearch.training.imagefolder import DEFAULT_DATA_ROOT, NEURAL_PREDICTOR_HOLDOUT
from nassearch.training.loops import resolve_device
from nassearch.training.process import Process, derived_seed
from nassearch.training.recipe_training import RecipeTraining, build_network, recipe_datasets
from nassearch.training.recipes import load_recipe
from nassearch.validation import require_positive

log = logging.getLogger(__name__)


class ImageFolderTraining(Evaluator):
    """Trains each architecture under a (shortened) recipe and reports its accuracy on held-out training images.

    Metrics: ``val_acc`` and ``val_top5`` (percent, on the hold-out after the last epoch), ``train_loss`` (mean over
    the last epoch), and ``params`` / ``flops`` (millions) of the architecture as the space costs it (the deployed
    network at full width; ``recipe.model`` may train a narrower one). ``cost_s`` and ``wall_s`` are the seconds the
    training took. ``max_train_batches`` cuts every epoch short (smoke tests).
    """

    name = "imagenet_train"
    batched = False

    def __init__(self, space: SearchSpace, recipe: str, data_root: str = DEFAULT_DATA_ROOT,
                 settings: dict[str, Any] | None = None, holdout: int = NEURAL_PREDICTOR_HOLDOUT,
                 max_train_batches: int | None = None, device: str = "auto", seed: int = 0) -> None:
        super().__init__(space)
        require_positive(holdout=holdout)
        if max_train_batches is not None:
            require_positive(max_train_batches=max_train_batches)
        if settings is not None and not isinstance(settings, dict):
            raise ConfigError(f"settings: a mapping of recipe keys (e.g. {{epochs: 5}}), not {settings!r}")
        if "holdout" in (settings or {}) or "seed" in (settings or {}):
            raise ConfigError("settings: holdout and seed are the evaluator's own settings (holdout: N; the search "
                              "seed seeds training); remove them from settings")
        if device != "auto":
            resolve_device(device)  # a name torch knows; whether the device exists is checked where trials run
        self.recipe = load_recipe(recipe, settings={**(settings or {}), "holdout": holdout, "seed": seed})
        self.recipe_path, self.data_root, self.device_name = str(recipe), str(data_root), device
        self.max_train_batches = max_train_batches
        self.dataset = Path(data_root).name
        self.train_set, self.eval_set, _, self.classes = recipe_datasets(self.recipe, data_root)

    @property
    def metrics(self) -> tuple[str, ...]:
        return ("val_acc", "val_top5", "train_loss", "params", "flops")

    def evaluate(self, arch: Arch) -> Result:
        start = time.perf_counter()
        device = resolve_device(self.device_name)
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type="cuda"):
            torch.manual_seed(derived_seed(self.recipe.seed))
            network = build_network(self.space, arch, self.recipe, len(self.classes))
            training = RecipeTraining(self.recipe, network, self.train_set, self.eval_set, Process(0, 1, device),
                                      self.max_train_batches)
            for epoch in range(self.recipe.epochs):
                row = training.run_epoch(epoch)
        cost = self.space.cost(arch)
        wall = time.perf_counter() - start
        log.info("trained %s for %d epochs: hold-out top-1 %.2f%% in %.1f s", self.space.to_str(arch),
                 self.recipe.epochs, row["val_top1"], wall)
        metrics = {"val_acc": row["val_top1"], "val_top5": row["val_top5"], "train_loss": row["train_loss"],
                   "params": cost.params_m, "flops": cost.flops_m}
        return Result(metrics, cost_s=wall, wall_s=wall)
