"""The ``train`` evaluator: trains a DARTS network on (synthetic) CIFAR-10, deterministically."""

import math

import pytest
import torch

from nassearch.training.datasets import write_synthetic_cifar10
from nassearch.evaluators.training import TrainingEvaluator
from nassearch import config as cfg
from nassearch.errors import ConfigError
from nassearch.model_cost import count_params
from nassearch.spaces.darts import DartsSpace
from nassearch.spaces.darts_genotypes import known_genotype
from nassearch.spaces.nasbench201 import NasBench201Space

TINY = {"epochs": 1, "batch_size": 16, "init_channels": 4, "layers": 3, "valid_fraction": 0.25,
        "verify_md5": False, "device": "cpu"}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_synthetic_cifar10(root, n_train=64, n_test=10)
    return str(root)


def test_trains_one_epoch_and_is_deterministic(data_root, one_torch_thread):
    space = DartsSpace()
    evaluator = TrainingEvaluator(space, data_root=data_root, **TINY)
    assert len(evaluator.train_set) == 48 and len(evaluator.valid_set) == 16
    arch = known_genotype("DARTS_V2")
    rng_before = torch.get_rng_state()
    result = evaluator.evaluate(arch)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is untouched
    assert set(result.metrics) == set(evaluator.metrics)
    assert 0 <= result.metrics["val_acc"] <= 100 and math.isfinite(result.metrics["train_loss"])
    built = space.build_model(arch, init_channels=4, layers=3, auxiliary=False)
    assert result.metrics["params"] == count_params(built) / 1e6 and result.metrics["flops"] > 0
    assert result.cost_s == result.wall_s > 0
    again = TrainingEvaluator(space, data_root=data_root, **TINY).evaluate(arch)
    assert again.metrics == result.metrics
    other_seed = TrainingEvaluator(space, data_root=data_root, seed=1, **TINY).evaluate(arch)
    assert other_seed.metrics["train_loss"] != result.metrics["train_loss"]


def test_config_section_builds_it_and_rejects_unknown_keys(data_root):
    spec = cfg.resolve_component("evaluator", {"name": "train", "data_root": data_root, **TINY})
    assert spec["learning_rate"] == 0.025 and spec["max_train_batches"] is None
    evaluator = cfg.build_component("evaluator", spec, space=DartsSpace(), seed=3)
    assert isinstance(evaluator, TrainingEvaluator) and evaluator.seed == 3
    with pytest.raises(ConfigError, match="evaluator.epoch: unknown key .*did you mean 'epochs'"):
        cfg.resolve_component("evaluator", {"name": "train", "epoch": 3})
    with pytest.raises(ConfigError, match="evaluator \\(train\\): .*does not take init_channels, layers"):
        cfg.build_component("evaluator", spec, space=NasBench201Space())
