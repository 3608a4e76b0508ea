"""The ``measured_latency`` evaluator: built networks timed on this machine, with the space's params and FLOPs."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

import nassearch
from nassearch.errors import ConfigError
from nassearch.evaluators import measured
from nassearch.evaluators.measured import MeasuredLatency
from nassearch.spaces.nasbench201 import NasBench201Space
from nassearch.spaces.ofa_mbv3 import OFAArch, OFAMobileNetV3Space
from nassearch.spaces.proxylessnas import LAYER_CHOICES, ProxylessNASSpace

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = {"warmup": 1, "repeats": 3}
#: The smallest network of each space: OFA's k3 e3 d2 at 160, and ProxylessNAS with every skippable layer zero.
SMALLEST = {"ofa_mbv3": OFAArch((3,) * 20, (3,) * 20, (2,) * 5, 160),
            "proxylessnas": tuple(choices[-1] if len(choices) == 7 else 0 for choices in LAYER_CHOICES)}


@functools.cache
def space_named(name: str):
    return OFAMobileNetV3Space() if name == "ofa_mbv3" else ProxylessNASSpace()


@pytest.fixture
def timings(monkeypatch):
    """Replaces the CPU timer by a recorder of its calls (model, input shape, warmup, repeats, threads)."""
    calls = []

    def record(model, input_shape, warmup, repeats, threads):
        calls.append((model, input_shape, warmup, repeats, threads))
        return 1.5

    monkeypatch.setattr(measured, "measure_latency_ms", record)
    return calls


@pytest.mark.parametrize("name", ["ofa_mbv3", "proxylessnas"])
def test_measures_latency_params_and_flops_on_both_spaces(name):
    space = space_named(name)
    evaluator = MeasuredLatency(space, **FAST)
    rng = np.random.default_rng(0)
    for arch in (SMALLEST[name], space.sample(rng)):
        result = evaluator.evaluate(arch)
        assert set(result.metrics) == set(evaluator.metrics) == {"latency_ms", "params", "flops"}
        assert math.isfinite(result.metrics["latency_ms"]) and result.metrics["latency_ms"] > 0
        cost = space.cost(arch)
        assert (result.metrics["params"], result.metrics["flops"]) == (cost.params_m, cost.flops_m)
        assert result.cost_s == result.wall_s > result.metrics["latency_ms"] / 1000


def test_times_the_architectures_input_in_eval_mode(timings):
    space = space_named("ofa_mbv3")
    arch = OFAArch((5,) * 20, (4,) * 20, (3,) * 5, 192)
    result = MeasuredLatency(space, batch_size=2, warmup=4, repeats=7, threads=2).evaluate(arch)
    assert result.metrics["latency_ms"] == 1.5
    ((model, shape, warmup, repeats, threads),) = timings
    assert shape == (2, 3, 192, 192) and (warmup, repeats, threads) == (4, 7, 2) and not model.training
    MeasuredLatency(ProxylessNASSpace(input_size=160)).evaluate(SMALLEST["proxylessnas"])
    assert timings[1][1:] == ((1, 3, 160, 160), 10, 20, 1)


def test_weights_come_from_the_seed_and_the_global_rng_is_left_alone(timings):
    space, arch = space_named("proxylessnas"), SMALLEST["proxylessnas"]
    state = torch.random.get_rng_state()
    for seed in (0, 0, 1):
        MeasuredLatency(space, seed=seed).evaluate(arch)
    assert torch.equal(torch.random.get_rng_state(), state)
    first, again, other = (call[0].stem[0].weight for call in timings)
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_a_constant_cost_per_query(timings):
    result = MeasuredLatency(space_named("proxylessnas"), cost_per_query_s=2.5).evaluate(SMALLEST["proxylessnas"])
    assert result.cost_s == 2.5 and result.wall_s > 0


@pytest.mark.parametrize("options, message", [
    ({"batch_size": 0}, "^batch_size must be >= 1, got 0$"),
    ({"repeats": 0}, "^repeats must be >= 1, got 0$"),
    ({"threads": 0}, "^threads must be >= 1, got 0$"),
    ({"warmup": -1}, "^warmup must be >= 0, got -1$"),
    ({"cost_per_query_s": 0.0}, r"^cost_per_query_s must be > 0 \(a cost budget charges it per query\) or null"),
    ({"device": "gpu"}, "^device: 'gpu' is not a torch device; use auto, cpu, cuda or cuda:N$"),
    ({"device": "meta"}, "^device: measured_latency times on cpu or cuda, not 'meta'$"),
])
def test_bad_options_are_refused_in_one_line(options, message):
    with pytest.raises(ValueError, match=message):
        MeasuredLatency(space_named("proxylessnas"), **options)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_is_refused_where_there_is_none():
    with pytest.raises(ValueError, match="CUDA is not available here"):
        MeasuredLatency(space_named("proxylessnas"), device="cuda")


def test_spaces_without_an_input_shape_are_refused():
    with pytest.raises(ValueError, match="^measured_latency times networks whose space declares their input shape "
                                         r"\(ofa_mbv3, proxylessnas\); space 'nasbench201' does not$"):
        MeasuredLatency(NasBench201Space())


@pytest.mark.parametrize("evaluator, message", [
    ({"name": "measured_latency", "repeat": 3}, "did you mean 'repeats'"),
    ({"name": "measured_latency", "warmup": -1}, r"^evaluator \(measured_latency\): warmup must be >= 0, got -1$"),
    ({"name": "measured_latency", "threads": 1.5}, "expected an integer"),
])
def test_config_mistakes_are_config_errors(evaluator, message):
    with pytest.raises(ConfigError, match=message):
        nassearch.search("proxylessnas", evaluator, "random_search", objectives=["latency_ms"], budget=3)


def test_a_space_without_an_input_shape_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^evaluator \(measured_latency\): measured_latency times networks"):
        nassearch.search("nasbench201", "measured_latency", "random_search", objectives=["latency_ms"], budget=3)


def test_random_search_minimises_measured_latency_from_a_config():
    result = nassearch.search({"name": "ofa_mbv3", "resolutions": [160]},
                              {"name": "measured_latency", **FAST, "cost_per_query_s": 1.0}, "random_search",
                              objectives=[{"metric": "latency_ms", "mode": "min"}], budget=3, seed=0)
    assert len(result.trials) == 3 and all(t.ok for t in result.trials)
    latencies = [t.metrics["latency_ms"] for t in result.trials]
    assert all(math.isfinite(v) and v > 0 for v in latencies)
    assert result.best.metrics["latency_ms"] == min(latencies)
    assert sum(t.cost_s for t in result.trials) == 3.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_latency():
    space = space_named("ofa_mbv3")
    result = MeasuredLatency(space, device="cuda", **FAST).evaluate(SMALLEST["ofa_mbv3"])
    assert math.isfinite(result.metrics["latency_ms"]) and result.metrics["latency_ms"] > 0


def test_registered():
    from nassearch.registry import EVALUATORS

    assert EVALUATORS.get("measured_latency") is MeasuredLatency and MeasuredLatency.dataset == "imagenet"
