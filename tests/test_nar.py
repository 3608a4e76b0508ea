"""NAR ranker: feature tensors from the spaces' cell costs, eq. 13, batch tiers and statistics, learning."""

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau

from nassearch.predictors.nar import (NARPredictor, batch_statistics, batch_tiers, nar_features, tier_histogram,
                                      update_tier_embeddings)
from nassearch.spaces.nasbench101 import NasBench101Space

PAPER_NB201_CODES = {"input": 0, "none": 0, "skip_connect": 1, "nor_conv_1x1": 2, "nor_conv_3x3": 3,
                     "avg_pool_3x3": 4, "output": 0}


@pytest.fixture(scope="module")
def nb101_space():
    return NasBench101Space()


def test_feature_tensor_shapes(nb201_space, nb101_space):
    rng = np.random.default_rng(0)
    nb201 = NARPredictor().featurize([nb201_space.encode(nb201_space.sample(rng)) for _ in range(3)])
    nb101 = NARPredictor().featurize([nb101_space.encode(nb101_space.sample(rng)) for _ in range(3)])
    assert nb201.shape == (3, 31, 4, 4) and nb101.shape == (3, 19, 7, 7)


def test_nb201_feature_values_by_hand(nb201_space):
    """|none~0|+|skip~0|conv1x1~1|+|conv3x3~0|avgpool~1|none~2|: ops on the 4x4 cell's edges, each node's
    FLOPs / params the sum over its incoming edges, broadcast down the columns and masked by the edges."""
    graph = nb201_space.encode((0, 1, 2, 3, 4, 0))
    codes = np.array([PAPER_NB201_CODES[name] for name in graph.op_vocab])
    x = nar_features([graph], codes)[0]
    np.testing.assert_array_equal(x[0], [[0, 0, 1, 3], [0, 0, 2, 4], [0, 0, 0, 0], [0, 0, 0, 0]])
    # first cell: 16 channels, 32x32; conv1x1 = 16*16*1024 + BN 2*16384 + ReLU 16384 FLOPs, 256 + 32 params
    conv1x1_flops, conv3x3_flops, pool_flops = 0.311296, 9 * 0.262144 + 0.049152, 9 * 0.016384
    upper = np.triu(np.ones((4, 4)), 1)
    expected_flops = upper * np.array([0.0, 0.0, conv1x1_flops, conv3x3_flops + pool_flops])
    np.testing.assert_allclose(x[1], expected_flops, rtol=1e-6)
    np.testing.assert_allclose(x[2], upper * np.array([0.0, 0.0, 288e-6, (9 * 256 + 32) * 1e-6]), rtol=1e-6)
    # last cell (15): 64 channels at 8x8: conv1x1 = 64*64*64 + BN and ReLU 3*64*64 FLOPs, 64*64 + 128 params
    np.testing.assert_allclose(x[29, 0, 2], (64 * 64 * 64 + 3 * 64 * 64) / 1e6, rtol=1e-6)
    np.testing.assert_allclose(x[30, 0, 2], (64 * 64 + 2 * 64) / 1e6, rtol=1e-6)


def test_cell_costs_add_up_to_the_built_network(nb201_space, nb101_space):
    rng = np.random.default_rng(1)
    for space in (nb201_space, nb101_space):
        for arch in (space.sample(rng) for _ in range(3)):
            graph, built = space.encode(arch), space.cost(arch)
            assert graph.graph_attrs["flops"] == pytest.approx(built.flops_m, rel=1e-9)
            assert graph.graph_attrs["params"] == pytest.approx(built.params_m, rel=1e-9)
            params, flops = space.cost_batch([arch])
            assert flops[0] == pytest.approx(built.flops_m) and params[0] == pytest.approx(built.params_m)
            assert graph.node_attrs["cell_flops"].sum() < built.flops_m  # cells only: no stem / classifier


def test_nb101_features_use_adjacency_and_op_codes(nb101_space):
    rng = np.random.default_rng(2)
    graph = nb101_space.encode(nb101_space.sample(rng))
    x = nar_features([graph], np.arange(1, len(graph.op_vocab) + 1))[0]
    np.testing.assert_array_equal(x[0], graph.adjacency * (graph.ops + 1)[None, :])
    np.testing.assert_allclose(x[1], graph.adjacency * graph.node_attrs["cell_flops"][:, 0][None, :], rtol=1e-6)
    np.testing.assert_allclose(x[18], graph.adjacency * graph.node_attrs["cell_params"][:, 8][None, :], rtol=1e-6)


def test_tier_embedding_update_is_eq_13():
    """Worked example: tier 0 has seen 2 features with mean 1, tier 1 none yet, tier 2 one feature of 4."""
    embeddings = torch.tensor([1.0, 0.0, 4.0]).view(3, 1, 1)
    counts = torch.tensor([2.0, 0.0, 1.0])
    features = torch.tensor([4.0, 7.0, 3.0]).view(3, 1, 1)
    tiers = torch.tensor([0, 0, 1])
    updated, new_counts = update_tier_embeddings(embeddings, counts, features, tiers)
    # e_0 = (1 * 2 + 4 + 7) / 4 = 3.25; e_1 = 3 / 1; e_2 unchanged
    np.testing.assert_allclose(updated.flatten().numpy(), [3.25, 3.0, 4.0])
    np.testing.assert_allclose(new_counts.numpy(), [4.0, 1.0, 1.0])


def test_batch_tiers_split_by_quality():
    y = np.array([0.1, 0.9, 0.5, 0.7, 0.3, 0.2, 0.8, 0.4, 0.6, 0.0])
    np.testing.assert_array_equal(batch_tiers(y, 5), [4, 0, 2, 1, 3, 3, 0, 2, 1, 4])


def test_tier_histogram_bins_and_rounded_step():
    values = np.array([1.0, 1.5, 2.0, 3.0])
    edges, hist = tier_histogram(values, np.array([0, 0, 1, 1]), 2, 2)
    np.testing.assert_allclose(edges, [1.0, 2.0, 3.0])  # step (3 - 1) / 2 = 1 (already whole)
    np.testing.assert_allclose(hist, [[0.5, 0.0], [0.25, 0.25]])  # (τ_κ-1, τ_κ], the minimum in bin 1


def test_batch_statistics_count_ops_per_tier(nb201_space):
    graphs = [nb201_space.encode((3,) * 6), nb201_space.encode((0,) * 6)]
    stats = batch_statistics(graphs, np.array([0, 1]), 2, 4)
    conv = graphs[0].op_vocab.index("nor_conv_3x3")
    assert stats.op_counts[0, conv] == 6 and stats.op_counts[1, conv] == 0
    np.testing.assert_array_equal(stats.tier_counts, [1, 1])


def test_settings_are_checked():
    with pytest.raises(ValueError, match="mode"):
        NARPredictor(mode="tiers")
    with pytest.raises(ValueError, match="divisible"):
        NARPredictor(dim=30, heads=4)
    with pytest.raises(ValueError, match="batch_size"):
        NARPredictor(batch_size=3, tiers=5)


def small_nar(**overrides) -> NARPredictor:
    settings = dict(dim=32, ffn=64, layers=2, rank_hidden=64, tier_hidden=64, epochs=12, batch_size=50,
                    warmup_steps=10, lr_mul=0.3, ranking_weight=1.0, bins=5, device="cpu")
    return NARPredictor(**{**settings, **overrides})


@pytest.fixture(scope="module")
def synthetic(nb201_space):
    """NB201 cells whose target rewards 3x3 convolutions and punishes 'none' on the output node's edges."""
    rng = np.random.default_rng(3)
    archs = [nb201_space.sample(rng) for _ in range(500)]
    y = np.array([a.count(3) + 0.5 * a.count(2) - sum(a[i] == 0 for i in (3, 4, 5)) for a in archs], float)
    y += rng.normal(0, 0.1, len(y))
    return [nb201_space.encode(a) for a in archs], y


@pytest.mark.slow
def test_ranker_learns_a_synthetic_ranking(one_torch_thread, synthetic):
    graphs, y = synthetic
    nar = small_nar(seed=0, epochs=10).fit(graphs[:400], y[:400], val=(graphs[400:450], y[400:450]))
    assert kendalltau(nar.predict(graphs[450:]), y[450:]).statistic > 0.6
    tiers = nar.predict_tiers(graphs[450:])
    assert tiers.shape == (50, 5) and np.allclose(tiers.sum(axis=1), 1.0)
    assert len(nar.tier_statistics.batches) == 8 and nar.tier_statistics.batches[0].flops_hist.shape == (5, 5)


@pytest.mark.slow
def test_ablation_modes(one_torch_thread, synthetic):
    graphs, y = synthetic
    ranking = small_nar(mode="ranking", epochs=2, tiers=3).fit(graphs[:100], y[:100])
    again = small_nar(mode="ranking", epochs=2, tiers=3).fit(graphs[:100], y[:100])
    np.testing.assert_array_equal(again.predict(graphs[:20]), ranking.predict(graphs[:20]))  # same seed
    assert not ranking.capabilities.predict_tiers
    with pytest.raises(RuntimeError, match="no tier classifier"):
        ranking.predict_tiers(graphs[:2])
    classification = small_nar(mode="classification", epochs=2, tiers=7).fit(graphs[:100], y[:100])
    assert classification.predict_tiers(graphs[:3]).shape == (3, 7)
    np.testing.assert_allclose(np.exp(classification.predict(graphs[:3])),
                               classification.predict_tiers(graphs[:3])[:, 0], rtol=1e-5)
