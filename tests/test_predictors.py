"""Predictors and their shared machinery, on synthetic graphs whose target is a known function."""

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau

from nassearch.graph import ArchGraph
from nassearch.predictors.encoders import flat_features, laplacian_eigenvectors, stack_graphs
from nassearch.predictors.gcn import GCNPredictor
from nassearch.predictors.mlp import MLPPredictor
from nassearch.predictors.tnasp import TNASPPredictor, softmax_last
from nassearch.predictors.training import (TrainSettings, epochs_for, lr_lambda, pairwise_ranking_loss, parameter_groups,
                                           train)
from nassearch.predictors.xgb import XGBPredictor

VOCAB = ("input", "conv", "pool", "skip", "output")
PREDICTORS_DIR = Path(__file__).resolve().parents[1] / "nassearch" / "predictors"


def random_dag(rng: np.random.Generator, nodes: int = 7) -> ArchGraph:
    adjacency = np.triu(rng.random((nodes, nodes)) < 0.4, 1).astype(np.uint8)
    adjacency[np.arange(nodes - 1), np.arange(1, nodes)] = 1  # a chain keeps every node connected
    ops = np.concatenate([[0], rng.integers(1, 4, nodes - 2), [4]])
    return ArchGraph(ops=ops, adjacency=adjacency, op_vocab=VOCAB)


def known_target(graph: ArchGraph) -> float:
    """Convolutions are good and pools bad, the more so the deeper they sit; each node's fan-in adds a little."""
    names = np.array(graph.op_names())
    weight = np.select([names == "conv", names == "pool"], [2.0, -1.0], 0.0)
    depth = 1.0 + np.arange(graph.num_nodes) / 10
    return float((weight * depth).sum() + 0.25 * graph.adjacency.sum())


def cell_like(rng: np.random.Generator, shapes: list[np.ndarray]) -> ArchGraph:
    """One of a few fixed topologies (like a cell space's shapes) with random interior operations."""
    adjacency = shapes[int(rng.integers(len(shapes)))]
    ops = np.concatenate([[0], rng.integers(1, 4, len(adjacency) - 2), [4]])
    return ArchGraph(ops=ops, adjacency=adjacency, op_vocab=VOCAB)


def synthetic_cells(train: int, test: int) -> tuple[list[ArchGraph], np.ndarray, list[ArchGraph], np.ndarray]:
    """``train`` + ``test`` cell-like graphs (4 fixed topologies) and their known targets."""
    rng = np.random.default_rng(0)
    shapes = [random_dag(rng).adjacency for _ in range(4)]
    graphs = [cell_like(rng, shapes) for _ in range(train + test)]
    y = np.array([known_target(g) for g in graphs])
    return graphs[:train], y[:train], graphs[train:], y[train:]


def assert_learns(predictor, data) -> None:
    """Fit on the training part; one prediction per test graph, Kendall tau > 0.9, original scale."""
    train_graphs, train_y, test_graphs, test_y = data
    predictions = predictor.fit(train_graphs, train_y).predict(test_graphs)
    assert predictions.shape == (len(test_graphs),)
    assert kendalltau(predictions, test_y).statistic > 0.9
    assert abs(predictions.mean() - test_y.mean()) < 0.5 * test_y.std()  # original scale, not z-scores


@pytest.fixture(scope="module")
def synthetic():
    return synthetic_cells(500, 1000)


@pytest.mark.parametrize("make", [
    lambda: XGBPredictor(seed=0, n_estimators=300),
    lambda: MLPPredictor(seed=0, epochs=40),
    lambda: GCNPredictor(seed=0, epochs=60, lr=1e-3),
    lambda: TNASPPredictor(seed=0, epochs=60, lr=1e-3),
], ids=["xgb", "mlp", "gcn", "tnasp"])
@pytest.mark.slow
def test_each_predictor_learns_a_known_function_of_the_graph(make, synthetic):
    assert_learns(make(), synthetic)


@pytest.mark.slow
def test_same_seed_same_predictions_other_seed_differs(synthetic):
    train_graphs, train_y, test_graphs, _ = synthetic
    a = GCNPredictor(seed=3, epochs=3).fit(train_graphs, train_y).predict(test_graphs)
    b = GCNPredictor(seed=3, epochs=3).fit(train_graphs, train_y).predict(test_graphs)
    c = GCNPredictor(seed=4, epochs=3).fit(train_graphs, train_y).predict(test_graphs)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_fitting_does_not_touch_the_global_torch_random_state(synthetic):
    train_graphs, train_y, _, _ = synthetic
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    MLPPredictor(seed=0, epochs=1).fit(train_graphs, train_y)
    assert torch.equal(torch.rand(3), expected)


def test_predictors_never_import_spaces_evaluators_or_searchers():
    for path in PREDICTORS_DIR.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
        imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [m for m in imported if m.split(".")[0] in ("spaces", "evaluators", "searchers")], path.name


# ------------------------------------------------------------------------------------------ encoders


def test_flat_features_are_one_hot_ops_then_upper_triangle():
    graph = ArchGraph(ops=[0, 1, 4], adjacency=[[0, 1, 1], [0, 0, 1], [0, 0, 0]], op_vocab=VOCAB)
    features = flat_features([graph])[0]
    np.testing.assert_array_equal(features[:15].reshape(3, 5), np.eye(5)[[0, 1, 4]])
    np.testing.assert_array_equal(features[15:], [1, 1, 1])


def test_stack_graphs_pads_and_masks():
    small = ArchGraph(ops=[0, 4], adjacency=[[0, 1], [0, 0]], op_vocab=VOCAB)
    large = ArchGraph(ops=[0, 2, 4], adjacency=[[0, 1, 0], [0, 0, 1], [0, 0, 0]], op_vocab=VOCAB)
    batch = stack_graphs([small, large])
    assert batch.ops.tolist() == [[0, 4, -1], [0, 2, 4]]
    assert batch.mask.tolist() == [[1, 1, 0], [1, 1, 1]]
    assert batch.one_hot[0, 2].sum() == 0 and batch.adjacency[0, 0, 1] == 1
    with pytest.raises(ValueError, match="share an operation vocabulary"):
        stack_graphs([small, ArchGraph(ops=[0, 1], adjacency=[[0, 1], [0, 0]], op_vocab=("a", "b"))])


def test_laplacian_eigenvectors_solve_the_normalised_laplacian():
    batch = stack_graphs([random_dag(np.random.default_rng(i), 6) for i in range(4)], max_nodes=7)
    vectors = laplacian_eigenvectors(batch.adjacency, batch.mask).astype(np.float64)
    for a, m, v in zip(batch.adjacency, batch.mask, vectors):
        n = int(m.sum())
        sym = np.maximum(a, a.T)[:n, :n]
        d = sym.sum(1)
        lap = np.eye(n) - sym / np.sqrt(np.outer(d, d))
        real = v[:n, :n]
        values = np.diag(real.T @ lap @ real)
        np.testing.assert_allclose(lap @ real, real * values, atol=1e-5)
        np.testing.assert_allclose(real.max(axis=0), np.abs(real).max(axis=0), atol=1e-6)  # sign: peak positive
        assert np.all(v[n:] == 0)


# ------------------------------------------------------------------------------------------ trainer


def test_pairwise_ranking_loss_on_a_hand_example():
    scores = torch.tensor([2.0, 0.0, 1.0])
    targets = torch.tensor([3.0, 1.0, 2.0])
    pairs = [(0, 1), (0, 2), (2, 1)]  # (better, worse)
    expected = np.mean([np.log1p(np.exp(-(scores[i] - scores[j]).item())) for i, j in pairs])
    assert pairwise_ranking_loss(scores, targets).item() == pytest.approx(expected)
    assert pairwise_ranking_loss(scores, torch.ones(3)).item() == 0.0


def test_schedule_warms_up_then_decays():
    cosine = lr_lambda(TrainSettings(warmup_fraction=0.1, schedule="cosine"), 100)
    assert [cosine(i) for i in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert cosine(10) == pytest.approx(1.0) and cosine(55) == pytest.approx(0.5) and cosine(100) == pytest.approx(0.0)
    linear = lr_lambda(TrainSettings(schedule="linear"), 10)
    assert [linear(i) for i in (0, 5, 10)] == pytest.approx([1.0, 0.5, 0.0])


def test_max_steps_scales_the_epochs_to_the_data_size():
    capped = TrainSettings(epochs=300, batch_size=10, max_steps=500)
    assert [epochs_for(capped, n) for n in (20, 100, 250, 6000)] == [250, 50, 20, 1]
    assert epochs_for(TrainSettings(epochs=300, batch_size=10), 250) == 300
    assert epochs_for(TrainSettings(epochs=30, batch_size=10, max_steps=500), 20) == 30  # epochs still cap
    with pytest.raises(ValueError, match="max_steps must be >= 1"):
        TrainSettings(max_steps=0)


def test_training_takes_at_most_max_steps_optimiser_steps():
    model = torch.nn.Linear(3, 1)
    steps = []
    model.register_forward_hook(lambda module, args, out: steps.append(module.training))

    class Scores(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x):
            return self.inner(x).squeeze(-1)

    inputs = {"x": torch.randn(95, 3)}
    train(Scores(), inputs, torch.randn(95), TrainSettings(epochs=100, batch_size=10, max_steps=45), seed=0)
    assert sum(steps) == 40  # 4 epochs of 10 batches (45 // 10 = 4): never more than max_steps


def test_weight_decay_skips_biases_and_norms():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 1))
    decay, no_decay = parameter_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert {p.shape for p in decay["params"]} == {torch.Size([4, 3]), torch.Size([1, 4])}
    assert len(no_decay["params"]) == 4  # two biases, the norm's weight and bias


@pytest.mark.slow
def test_validation_selects_the_best_epoch_and_ema_is_used(synthetic):
    train_graphs, train_y, test_graphs, test_y = synthetic
    val = (test_graphs[:100], test_y[:100])
    predictor = MLPPredictor(seed=0, epochs=15)
    predictor.settings = TrainSettings(epochs=15, batch_size=10, lr=1e-3, ema_decay=0.9, patience=3)
    predictor.fit(train_graphs, train_y, val=val)
    assert kendalltau(predictor.predict(val[0]), val[1]).statistic > 0.8


@pytest.mark.slow
def test_tnasp_self_evolution_trains_further_against_the_validation_constraints(synthetic):
    train_graphs, train_y, test_graphs, test_y = synthetic
    val = (test_graphs[:200], test_y[:200])
    plain = TNASPPredictor(seed=0, epochs=5, lr=1e-3).fit(train_graphs[:100], train_y[:100])
    evolved = TNASPPredictor(seed=0, epochs=5, lr=1e-3, self_evolution_epochs=3).fit(
        train_graphs[:100], train_y[:100], val=val)
    without_val = TNASPPredictor(seed=0, epochs=5, lr=1e-3, self_evolution_epochs=3).fit(
        train_graphs[:100], train_y[:100])
    np.testing.assert_array_equal(without_val.predict(val[0]), plain.predict(val[0]))
    evolved_predictions = evolved.predict(val[0])
    assert np.all(np.isfinite(evolved_predictions))
    assert not np.allclose(evolved_predictions, plain.predict(val[0]))


@pytest.mark.slow
def test_gcn_two_stage_ranks_rejected_architectures_last(synthetic):
    train_graphs, train_y, test_graphs, _ = synthetic
    predictor = GCNPredictor(seed=0, epochs=20, lr=1e-3, two_stage=True).fit(train_graphs, train_y)
    scores = predictor.predict(test_graphs)
    probability = predictor.classifier(**predictor.featurize(test_graphs)).detach().numpy()
    accepted = probability >= 0.5
    assert accepted.any() and (~accepted).any()
    assert scores[~accepted].max() < scores[accepted].min()


def test_gcn_head_takes_the_imagenet_predictors_two_hidden_layers(synthetic):
    train_graphs, train_y, test_graphs, _ = synthetic
    predictor = GCNPredictor(seed=0, width=16, layers=18, hidden=[512, 128], epochs=2).fit(train_graphs[:30],
                                                                                          train_y[:30])
    network = predictor.make_network(predictor.featurize(test_graphs[:2]))
    assert len(network.convs) == 18 and network.convs[-1].forward_weight.out_features == 16
    sizes = [(layer.in_features, layer.out_features) for layer in network.head if isinstance(layer, torch.nn.Linear)]
    assert sizes == [(16, 512), (512, 128), (128, 1)]
    assert np.all(np.isfinite(predictor.predict(test_graphs[:5])))
    with pytest.raises(ValueError, match=r"hidden\[1\] must be >= 1, got 0"):
        GCNPredictor(hidden=[64, 0])
    with pytest.raises(ValueError, match="hidden must name at least one layer size"):
        GCNPredictor(hidden=[])


def test_softmax_last_matches_torch():
    scores = torch.randn(5, 4, 8, 8)
    torch.testing.assert_close(softmax_last(scores), scores.softmax(dim=-1))


def test_a_device_that_is_not_there_is_a_settings_error():
    with pytest.raises(ValueError, match="not a torch device"):
        TrainSettings(device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available here"):
            MLPPredictor(device="cuda")
    assert TrainSettings(device="cpu").device == "cpu"
