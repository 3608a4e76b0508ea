"""NB301 surrogate evaluator on the shared data: encoding and outputs match YAHPO-Gym's on 500 archs."""

import numpy as np
import pytest

from nassearch.evaluators.surrogate import INPUT_NAMES, NasBench301Surrogate, surrogate_config
from nassearch import config as cfg
from nassearch.data.tables import load_json
from nassearch.errors import ConfigError
from nassearch.spaces.darts import DartsSpace
from nassearch.spaces.darts_notation import Genotype

PREFIX = "NetworkSelectorDatasetInfo_COLON_darts_COLON_"


def genotype_of(record: dict) -> Genotype:
    g = record["genotype"]
    return Genotype(normal=tuple((op, i) for op, i in g["normal"]), normal_concat=tuple(g["normal_concat"]),
                    reduce=tuple((op, i) for op, i in g["reduce"]), reduce_concat=tuple(g["reduce_concat"]))


@pytest.fixture(scope="module")
def naslib500(data_dir):
    return load_json("nb301_naslib500", data_dir)["archs"]


@pytest.fixture(scope="module")
def surrogate(data_dir):
    return NasBench301Surrogate(DartsSpace(init_channels=8, layers=5), data_dir=str(data_dir))  # cheap cost terms


def test_genotype_to_surrogate_config_matches_yahpo_on_500_archs(naslib500):
    for record in naslib500:
        expected = {k[len(PREFIX):]: v for k, v in record["yahpo_config"].items() if k != "epoch"}
        assert surrogate_config(genotype_of(record)) == expected


def test_outputs_match_yahpo_predictions_on_500_archs(surrogate, naslib500):
    outputs = surrogate.predict([genotype_of(r) for r in naslib500])
    expected = np.array([[r["yahpo_v2_pred"][k] for k in ("val_accuracy", "val_cross_entropy", "runtime",
                                                           "runtime_increase")] for r in naslib500])
    np.testing.assert_allclose(outputs, expected, rtol=1e-5)
    assert 0.90 < outputs[:, 0].min() and outputs[:, 0].max() < 0.94


def test_evaluate_reports_percent_runtime_cost_and_params(surrogate, naslib500):
    record = naslib500[0]
    result = surrogate.evaluate(genotype_of(record))
    assert set(result.metrics) == set(surrogate.metrics)
    assert result.metrics["val_acc"] == pytest.approx(100 * record["yahpo_v2_pred"]["val_accuracy"], rel=1e-5)
    assert result.cost_s == pytest.approx(record["yahpo_v2_pred"]["runtime"], rel=1e-5)
    assert result.metrics["params"] > 0.01


def test_batch_and_single_evaluation_agree(surrogate):
    rng = np.random.default_rng(0)
    archs = [surrogate.space.sample(rng) for _ in range(5)]
    batch = [r.metrics for r in surrogate.evaluate_batch(archs)]
    assert batch == [surrogate.evaluate(a).metrics for a in archs]
    assert len(INPUT_NAMES) == 34


def test_surrogate_rejects_other_spaces_and_budgets(data_dir, nb201_space):
    with pytest.raises(ValueError, match="only for space darts"):
        NasBench301Surrogate(nb201_space, data_dir=str(data_dir))
    with pytest.raises(ValueError, match="epoch"):
        NasBench301Surrogate(DartsSpace(), data_dir=str(data_dir), epoch=99)


def test_duplicate_inputs_are_refused():
    normal = (("sep_conv_3x3", 0), ("sep_conv_3x3", 0)) + (("skip_connect", 0), ("skip_connect", 1)) * 3
    genotype = Genotype(normal=normal, normal_concat=(2, 3, 4, 5), reduce=normal, reduce_concat=(2, 3, 4, 5))
    with pytest.raises(ValueError, match="distinct inputs"):
        surrogate_config(genotype)


def test_surrogate_config_keys_are_checked():
    with pytest.raises(ConfigError, match="evaluator.epochs: unknown key"):
        cfg.validate({"name": "x", "space": {"name": "darts"}, "evaluator": {"name": "nb301_surrogate", "epochs": 9},
                      "searcher": {"name": "random_search"}, "budget": {"evaluations": 3},
                      "objectives": [{"metric": "val_acc"}]})
