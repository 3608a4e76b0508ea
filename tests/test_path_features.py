"""path_features (BANANAS' path encoding as counts, skips contracted) and xgb's ``encoding: paths``."""

import itertools
from pathlib import Path

import numpy as np
import pytest

from nassearch.errors import ConfigError
from nassearch.graph import ArchGraph
from nassearch.predictors.encoders import MAX_PATH_SEQUENCES, path_features, path_length
from nassearch.predictors.static_xgb import StaticXGBPredictor
from nassearch.predictors.xgb import XGBPredictor
from nassearch.spaces.nasbench101 import NasBench101Space
from nassearch.spaces.nasbench201 import NasBench201Space, parse_arch

VOCAB = ("input", "none", "skip_connect", "conv", "pool", "output")


def paths_by_enumeration(graph: ArchGraph, counted: list[str]) -> dict[tuple[str, ...], int]:
    """Every input->output path, walked one by one: the independent reference for ``path_features``."""
    names, last = graph.op_names(), int(np.flatnonzero(np.array(graph.op_names()) == "output")[0])
    found: dict[tuple[str, ...], int] = {}

    def walk(node: int, sequence: tuple[str, ...]) -> None:
        if names[node] in ("none", "pad"):
            return
        if names[node] in counted:
            sequence += (names[node],)
        if node == last:
            found[sequence] = found.get(sequence, 0) + 1
            return
        for child in np.flatnonzero(graph.adjacency[node]):
            walk(int(child), sequence)

    walk(0, ())
    return found


def column(sequence: tuple[str, ...], counted: list[str]) -> int:
    """The column of ``sequence``: shorter sequences first, then in operation order."""
    shorter = sum(len(counted) ** k for k in range(len(sequence)))
    return shorter + sum(counted.index(op) * len(counted) ** i for i, op in enumerate(reversed(sequence)))


def as_counts(row: np.ndarray, counted: list[str], length: int) -> dict[tuple[str, ...], int]:
    sequences = [s for k in range(length + 1) for s in itertools.product(counted, repeat=k)]
    assert len(sequences) == len(row)
    return {s: int(row[column(s, counted)]) for s in sequences if row[column(s, counted)]}


def test_two_skips_give_the_same_identity_path_as_one_and_none_cuts_a_path():
    space = NasBench201Space()
    counted = ["nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
    cells = ["|skip_connect~0|+|none~0|nor_conv_3x3~1|+|nor_conv_3x3~0|skip_connect~1|nor_conv_3x3~2|",
             "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|skip_connect~1|nor_conv_3x3~2|"]
    features = path_features([space.encode(parse_arch(text)) for text in cells])
    assert features.shape == (2, 1 + 3 + 9 + 27)
    conv = "nor_conv_3x3"
    assert as_counts(features[0], counted, 3) == {(): 1, (conv,): 1, (conv, conv): 1}
    assert as_counts(features[1], counted, 3) == {(): 1, (conv,): 1, (conv, conv, conv): 1}
    nothing = space.encode(parse_arch("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"))
    assert not path_features([nothing]).any()


@pytest.mark.parametrize("seed", range(3))
def test_counts_match_walking_every_path(seed):
    rng = np.random.default_rng(seed)
    graphs = []
    for _ in range(40):
        adjacency = np.triu(rng.random((7, 7)) < 0.5, 1).astype(np.uint8)
        graphs.append(ArchGraph(ops=np.concatenate([[0], rng.integers(1, 5, 5), [5]]), adjacency=adjacency,
                                op_vocab=VOCAB))
    counted = ["conv", "pool"]
    features = path_features(graphs)
    length = path_length(graphs)
    for graph, row in zip(graphs, features):
        expected = {s: n for s, n in paths_by_enumeration(graph, counted).items() if len(s) <= length}
        assert as_counts(row, counted, length) == expected


def test_nasbench101_cells_pad_nodes_carry_no_path():
    space = NasBench101Space()
    rng = np.random.default_rng(0)
    graphs = [space.encode(space.sample(rng)) for _ in range(30)]
    counted = ["conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3"]
    features = path_features(graphs, max_length=5)
    assert features.shape == (30, 364)
    for graph, row in zip(graphs, features):
        assert as_counts(row, counted, 5) == paths_by_enumeration(graph, counted)


def test_a_shorter_max_length_drops_the_longer_paths_and_keeps_the_columns():
    space = NasBench201Space()
    graphs = [space.encode(space.sample(np.random.default_rng(i))) for i in range(50)]
    full, short = path_features(graphs), path_features(graphs, max_length=2)
    np.testing.assert_array_equal(short, full[:, :13])
    assert path_length(graphs) == 3


def test_spaces_the_encoding_cannot_read_are_refused_with_the_reason():
    two_inputs = ArchGraph(ops=[0, 1, 2], adjacency=[[0, 0, 1], [0, 0, 1], [0, 0, 0]], op_vocab=("c0", "c1", "output"))
    with pytest.raises(ValueError, match="'input' and an 'output'"):
        path_features([two_inputs])
    chain = ArchGraph(ops=[0, *range(1, 10), *range(1, 10), 10], adjacency=np.eye(20, k=1, dtype=np.uint8),
                      op_vocab=("input", *(f"op{i}" for i in range(9)), "output"))
    with pytest.raises(ValueError, match=f"limit is {MAX_PATH_SEQUENCES:,}"):
        path_features([chain])


def test_xgb_on_paths_learns_a_function_of_what_the_cell_computes():
    space = NasBench201Space()
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(400)]
    graphs = [space.encode(a) for a in archs]
    paths = path_features(graphs)
    deep = column(("nor_conv_3x3",) * 3, ["nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"])
    target = 2.0 * (paths[:, 0] > 0) + 3.0 * (paths[:, deep] > 0)  # an identity path, three 3x3 convs in a row
    model = XGBPredictor(n_estimators=200, encoding="paths").fit(graphs[:300], target[:300])
    assert model.max_path_length == 3
    error = np.abs(model.predict(graphs[300:]) - target[300:]).mean()
    assert error < 0.05 * target.std()


def test_xgb_encoding_is_checked_against_the_space_when_built():
    with pytest.raises(ValueError, match="'flat' or 'paths'"):
        XGBPredictor(encoding="path")
    with pytest.raises(ValueError, match="static_xgb reads features of its own"):
        StaticXGBPredictor(encoding="paths")

    class Chain:
        def sample(self, rng):
            return None

        def encode(self, arch):
            return ArchGraph(ops=[0, 1], adjacency=[[0, 1], [0, 0]], op_vocab=("stem", "output"))

    with pytest.raises(ValueError, match="'input' and an 'output'"):
        XGBPredictor(encoding="paths", space=Chain())
    XGBPredictor(encoding="flat", space=Chain())


def test_a_predictor_that_cannot_read_the_space_stops_the_run_before_its_directory(tmp_path, data_dir):
    from nassearch import config as cfg
    from nassearch.runner import run

    config = cfg.load(Path(__file__).parents[1] / "experiments" / "darts_guided.yaml",
                      [f"output.dir={tmp_path}", "predictor.encoding=paths"])
    with pytest.raises(ConfigError, match=r"predictor \(xgb\): path features need"):
        run(config, data_dir=str(data_dir))
    assert not any(tmp_path.iterdir())
