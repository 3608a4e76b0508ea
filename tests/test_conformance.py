"""Every built-in space, searcher and predictor passes the conformance suites of ``nassearch.testing``."""

from __future__ import annotations

import functools
import os

import pytest

from nassearch.latency.network_graph import network_graph
from nassearch.objectives import Objective
from nassearch.predictors.gcn import GCNPredictor
from nassearch.predictors.mlp import MLPPredictor
from nassearch.predictors.nar import NARPredictor
from nassearch.predictors.narformer import NARFormerPredictor
from nassearch.predictors.narformer_v2 import NARFormerV2Predictor
from nassearch.predictors.static_xgb import StaticXGBPredictor
from nassearch.predictors.tnasp import TNASPPredictor
from nassearch.predictors.xgb import XGBPredictor
from nassearch.searchers.nar_sampling import NARSampling
from nassearch.searchers.neural_predictor import NeuralPredictorSearch
from nassearch.searchers.nsga2 import NSGA2
from nassearch.searchers.ofa_evolution import OFAEvolution
from nassearch.searchers.predictor_evolution import PredictorGuidedEvolution
from nassearch.searchers.random_search import RandomSearch
from nassearch.searchers.regularized_evolution import RegularizedEvolution
from nassearch.spaces.darts import DartsSpace
from nassearch.spaces.nasbench101 import NasBench101Space
from nassearch.spaces.nasbench201 import NasBench201Space
from nassearch.spaces.proxylessnas import ProxylessNASSpace
from nassearch.testing import PredictorConformance, SearcherConformance, SpaceConformance

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# Spaces are built once per session: they measure their unit costs (and read tables) on first use.

@functools.cache
def nb201() -> NasBench201Space:
    return NasBench201Space()


@functools.cache
def nb101() -> NasBench101Space:
    return NasBench101Space()


@functools.cache
def nb101_table(data_dir: str) -> NasBench101Space:
    return NasBench101Space(restrict_to_table=True, data_dir=data_dir)


@functools.cache
def darts() -> DartsSpace:
    return DartsSpace()


class NB201Networks(NasBench201Space):
    """NB201 (8 channels, one cell per stage) encoded as the whole built network's layer graph with its static
    properties: the graphs latency predictors read."""

    def __init__(self) -> None:
        super().__init__(channels=8, cells_per_stage=1)

    @functools.lru_cache(maxsize=None)  # tracing a network takes about 0.1 s; the suites draw the same archs
    def encode(self, arch):
        return network_graph(self.build_model(arch), (1, 3, self.input_size, self.input_size))


@functools.cache
def nb201_networks() -> NB201Networks:
    return NB201Networks()


def data_dir() -> str:
    if not os.environ.get("NASSEARCH_DATA"):
        pytest.skip("NASSEARCH_DATA not set")
    return os.environ["NASSEARCH_DATA"]


# --------------------------------------------------------------------------------------------- spaces


class TestNasBench201Space(SpaceConformance):
    def make_space(self):
        return nb201()


class TestNasBench101Space(SpaceConformance):
    def make_space(self):
        return nb101()


@pytest.mark.slow
class TestNasBench101TableSpace(SpaceConformance):
    def make_space(self):
        return nb101_table(data_dir())


class TestDartsSpace(SpaceConformance):
    def make_space(self):
        return darts()


@functools.cache
def proxylessnas() -> ProxylessNASSpace:
    return ProxylessNASSpace()


class TestProxylessNASSpace(SpaceConformance):
    def make_space(self):
        return proxylessnas()


# ------------------------------------------------------------------------------------------ searchers


class TestRandomSearch(SearcherConformance):
    def make_space(self):
        return nb201()

    def make_searcher(self, space, seed):
        return RandomSearch(space, self.objectives, seed)


class TestRegularizedEvolution(SearcherConformance):
    def make_space(self):
        return nb201()

    def make_searcher(self, space, seed):
        return RegularizedEvolution(space, self.objectives, seed, population_size=6, sample_size=3)


class TestNSGA2(SearcherConformance):
    objectives = [Objective("val_acc"), Objective("params", "min")]

    def make_space(self):
        return nb201()

    def make_searcher(self, space, seed):
        return NSGA2(space, self.objectives, seed, population_size=6)


@pytest.mark.slow
class TestPrescreenedNSGA2(TestNSGA2):
    def make_searcher(self, space, seed):
        return NSGA2(space, self.objectives, seed, population_size=6, prescreen=4,
                     predictor=XGBPredictor(seed, n_estimators=10))


@pytest.mark.slow
class TestPredictorEvolution(SearcherConformance):
    def make_space(self):
        return nb201()

    def make_searcher(self, space, seed):
        return PredictorGuidedEvolution(space, self.objectives, seed, predictor=XGBPredictor(seed, n_estimators=10),
                                        initial_samples=6, num_parents=3, pool_size=12, evaluations_per_round=4)


class TestNeuralPredictorSearch(SearcherConformance):
    def make_space(self):
        return nb201()

    def make_searcher(self, space, seed):
        return NeuralPredictorSearch(space, self.objectives, seed, predictor=XGBPredictor(seed, n_estimators=10),
                                     initial_samples=6, evaluations_per_round=4, pool_size=30)


class TestOFAEvolution(SearcherConformance):
    def make_space(self):
        return nb201()

    def make_searcher(self, space, seed):
        return OFAEvolution(space, self.objectives, seed, population_size=8)


class TestOFAEvolutionOnPredictions(SearcherConformance):
    def make_space(self):
        return nb201()

    def make_searcher(self, space, seed):
        return OFAEvolution(space, self.objectives, seed, population_size=20, generations=3, initial_samples=16,
                            predictor=XGBPredictor(seed, n_estimators=10))


def tiny_nar(seed: int) -> NARPredictor:
    return NARPredictor(seed, dim=16, ffn=32, layers=1, rank_hidden=32, tier_hidden=32, epochs=2, batch_size=50,
                        warmup_steps=5, lr_mul=0.3, bins=5, device="cpu")


@pytest.mark.slow
class TestNARSampling(SearcherConformance):
    def make_space(self):
        return nb201()

    def make_searcher(self, space, seed):
        return NARSampling(space, self.objectives, seed, predictor=tiny_nar(seed), train_size=10, val_size=2,
                           sample_size=20, top_k=4, reuse=5)


# ----------------------------------------------------------------------------------------- predictors


class NB201Predictor(PredictorConformance):
    def make_space(self):
        return nb201()


class TestGCNPredictor(NB201Predictor):
    def make_predictor(self, seed):
        return GCNPredictor(seed, width=16, layers=2, hidden=16, epochs=3, batch_size=8, device="cpu")


class TestMLPPredictor(NB201Predictor):
    def make_predictor(self, seed):
        return MLPPredictor(seed, hidden=[16, 16], epochs=3, batch_size=8, device="cpu")


@pytest.mark.slow
class TestNARPredictor(NB201Predictor):
    def make_predictor(self, seed):
        return tiny_nar(seed)


class TestNARFormerPredictor(NB201Predictor):
    def make_predictor(self, seed):
        return NARFormerPredictor(seed, dim=16, heads=2, hidden=32, depths=(1,), epochs=3, batch_size=8, device="cpu")


@pytest.mark.slow
class TestNARFormerV2Predictor(NB201Predictor):
    def make_predictor(self, seed):
        return NARFormerV2Predictor(seed, dim=16, blocks=1, groups=2, epochs=3, batch_size=8, device="cpu")


@pytest.mark.slow
class TestNARFormerV2LatencyPredictor(TestNARFormerV2Predictor):
    def make_space(self):
        return nb201_networks()


@pytest.mark.slow
class TestStaticXGBPredictor(PredictorConformance):
    def make_space(self):
        return nb201_networks()

    def make_predictor(self, seed):
        return StaticXGBPredictor(seed, n_estimators=10)


class TestTNASPPredictor(NB201Predictor):
    def make_predictor(self, seed):
        return TNASPPredictor(seed, dim=16, layers=1, heads=2, hidden=16, epochs=3, batch_size=8,
                              self_evolution_epochs=2, device="cpu")


class TestXGBPredictor(NB201Predictor):
    def make_predictor(self, seed):
        return XGBPredictor(seed, n_estimators=10)


class TestOFAMobileNetV3Space(SpaceConformance):
    def make_space(self):
        from nassearch.spaces.ofa_mbv3 import OFAMobileNetV3Space

        return OFAMobileNetV3Space()
