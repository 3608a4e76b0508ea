"""static_xgb: boosted trees on a whole network's four static properties only."""

import numpy as np
import pytest
from scipy import stats

from nassearch import config as cfg
from nassearch.graph import STATIC_PROPERTIES, ArchGraph
from nassearch.bench.latency import mape
from nassearch.predictors.static_xgb import StaticXGBPredictor, static_features

VOCAB = ("input", "conv", "relu")


def graph(rng: np.random.Generator, attrs: dict[str, float]) -> ArchGraph:
    """A random chain of 2-6 nodes carrying ``attrs`` as graph attributes."""
    n = int(rng.integers(2, 7))
    return ArchGraph(ops=rng.integers(0, len(VOCAB), n), adjacency=np.eye(n, k=1, dtype=np.uint8), op_vocab=VOCAB,
                     graph_attrs=dict(attrs))


def random_graphs(count: int, seed: int) -> tuple[list[ArchGraph], np.ndarray]:
    rng = np.random.default_rng(seed)
    graphs, latency = [], []
    for _ in range(count):
        attrs = {"batch_size": 1.0, "flops": rng.uniform(1, 500), "params": rng.uniform(0.1, 5),
                 "memory_access": rng.uniform(1, 100)}
        graphs.append(graph(rng, attrs))
        latency.append(1.0 + 0.02 * attrs["flops"] + 0.01 * attrs["memory_access"])
    return graphs, np.array(latency)


def test_features_are_the_static_properties_in_order():
    rng = np.random.default_rng(0)
    attrs = {"memory_access": 4.0, "params": 3.0, "flops": 2.0, "batch_size": 1.0, "resolution": 32.0}
    assert static_features([graph(rng, attrs), graph(rng, attrs)]).tolist() == [[1.0, 2.0, 3.0, 4.0]] * 2
    assert STATIC_PROPERTIES == ("batch_size", "flops", "params", "memory_access")
    with pytest.raises(ValueError, match=r"graph 1 lacks graph_attrs \['memory_access'\]"):
        static_features([graph(rng, attrs), graph(rng, {"batch_size": 1, "flops": 1, "params": 1})])


def test_learns_latency_from_static_properties_and_ignores_the_layers():
    graphs, latency = random_graphs(400, seed=1)
    test_graphs, test_latency = random_graphs(100, seed=2)
    predictor = StaticXGBPredictor(seed=0).fit(graphs, latency)
    pred = predictor.predict(test_graphs)
    assert mape(test_latency, pred) < 8.0 and stats.kendalltau(pred, test_latency).statistic > 0.9
    rng = np.random.default_rng(3)
    same_attrs = [graph(rng, test_graphs[0].graph_attrs) for _ in range(5)]  # other ops and sizes
    assert np.all(predictor.predict(same_attrs) == pred[0])
    again = StaticXGBPredictor(seed=0).fit(graphs, latency).predict(test_graphs)
    assert np.array_equal(again, pred)


def test_registered_with_the_xgb_settings():
    spec = cfg.resolve_component("predictor", {"name": "static_xgb", "n_estimators": 20})
    assert spec["n_estimators"] == 20 and spec["max_depth"] == 6
    predictor = cfg.build_component("predictor", spec, seed=5)
    assert isinstance(predictor, StaticXGBPredictor) and predictor.params["seed"] == 5
    with pytest.raises(RuntimeError, match="before fit"):
        predictor.predict(random_graphs(2, 0)[0])
