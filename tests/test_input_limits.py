"""Input limits (issue 15, item 3): oversized or hostile YAML, non-finite and absurd numbers, and malformed
architecture strings are each refused quickly with one line naming what is wrong."""

import math
import time

import pytest
import yaml

from nassearch import config as cfg
from nassearch.validation import MAX_EVALUATIONS, MAX_SEED, MAX_SETTING, MAX_YAML_BYTES, MAX_YAML_DEPTH
from nassearch.cli import main
from nassearch.errors import ConfigError, InvalidArchitecture
from nassearch.spaces.darts import DartsSpace
from nassearch.spaces.darts_notation import format_genotype
from nassearch.spaces.darts_genotypes import KNOWN_GENOTYPES
from nassearch.spaces.nasbench101 import NasBench101Space
from nassearch.spaces.nasbench201 import NasBench201Space

NB201 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
NB101 = "0100001000010000|input,conv3x3-bn-relu,maxpool3x3,output"
DARTS = format_genotype(KNOWN_GENOTYPES["DARTS_V2"])


def base_raw():
    return {"name": "t", "space": {"name": "nasbench201"}, "evaluator": {"name": "nb201_tabular"},
            "searcher": {"name": "regularized_evolution"}, "budget": {"evaluations": 10},
            "objectives": [{"metric": "val_acc"}]}


def one_line(error: pytest.ExceptionInfo, *fragments: str) -> str:
    text = str(error.value)
    assert "\n" not in text and len(text) < 600, text
    for fragment in fragments:
        assert fragment in text
    return text


# ---------------------------------------------------------------------------------------------
# YAML

LAUGHS = ("a: &a [x, x, x, x, x, x, x, x, x, x]\n"
          + "".join(f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
                    for p, c in zip("abcdefgh", "bcdefghi")))


@pytest.mark.parametrize("text, fragments", [
    (LAUGHS + "seed: *i\n", ["line 5", "values once aliases are expanded"]),
    (LAUGHS.replace("[x,", "[xxxxxxxx,") + "name: *i\n", ["values once aliases are expanded"]),
    ("a: &a [1, *a]\n", ["alias *a refers to a value that contains it"]),
    ("seed: " + "[" * 10_000 + "]" * 10_000 + "\n", [f"nested more than {MAX_YAML_DEPTH} levels"]),
    ("seed: !!python/object/apply:os.system [touch /tmp/x]\n",
     ["line 1, column 7", "tag !!python/object/apply:os.system is not allowed", "plain YAML values"]),
    ("seed: !custom 3\n", ["tag !custom is not allowed"]),
    ("seed: " + "1" * 5000 + "\n", ["an integer of 5,000 characters is out of range"]),
    ("seed: 2024-13-45\n", ["line 1, column 7", "is not a valid timestamp"]),
    ("a: 1\n---\nb: 2\n", ["not valid YAML at line 2", "expected a single document"]),
])
def test_hostile_yaml_is_refused_quickly_in_one_line(tmp_path, text, fragments):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    start = time.perf_counter()
    with pytest.raises(ConfigError) as error:
        cfg.read_config(path)
    assert time.perf_counter() - start < 2.0
    one_line(error, f"config {path}", *fragments)


def test_yaml_within_the_limits_is_read(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: t\nseed: &s 3\nbudget: {evaluations: *s}\nlist: " + "[" * 20 + "1" + "]" * 20 + "\n"
                    + "base: &b {x: 1}\nmerged: {<<: *b, y: 2}\nday: 2024-02-29\n")
    raw = cfg.read_config(path)
    assert raw["seed"] == raw["budget"]["evaluations"] == 3 and raw["merged"] == {"x": 1, "y": 2}
    assert raw["day"].isoformat() == "2024-02-29"


def test_oversized_and_binary_config_files(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * (MAX_YAML_BYTES // 10) + "name: t\n")
    with pytest.raises(ConfigError) as error:
        cfg.read_config(big)
    one_line(error, "larger than 1 MiB", "is it the right file?")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"name: t\n\xff\xfe\x00")
    with pytest.raises(ConfigError) as error:
        cfg.read_config(binary)
    one_line(error, "is not UTF-8 text (byte 8)")
    with pytest.raises(ConfigError) as error:
        cfg.read_yaml(tmp_path, what="retrain config")
    one_line(error, "cannot read retrain config")


@pytest.mark.parametrize("override, fragment", [
    ("seed=!!python/object/apply:os.system [ls]", "tag !!python/object/apply:os.system is not allowed"),
    ("seed={" + LAUGHS.replace("\n", ", ") + "}", "values once aliases are expanded"),
    ("seed=" + "[" * 100 + "]" * 100, "nested more than"),
])
def test_overrides_go_through_the_same_reader(override, fragment):
    with pytest.raises(ConfigError) as error:
        cfg.apply_override(base_raw(), override)
    one_line(error, "--set", fragment)


def test_override_text_that_is_not_yaml_stays_text():
    raw = base_raw()
    cfg.apply_override(raw, "output.dir=a: b: c")
    assert raw["output"]["dir"] == "a: b: c"


# ---------------------------------------------------------------------------------------------
# Numbers


def _set(path: str, value):
    def mutate(raw):
        node = raw
        *parents, last = path.split(".")
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        node[last] = value
    return mutate


def _predictor(**settings):
    return lambda raw: raw.update(searcher={"name": "predictor_evolution"}, predictor=settings)


@pytest.mark.parametrize("mutate, fragment", [
    (lambda r: r.update(budget={"cost_seconds": math.nan}), "budget.cost_seconds: expected a finite number, got nan"),
    (lambda r: r.update(budget={"cost_seconds": math.inf}), "budget.cost_seconds: expected a finite number, got inf"),
    (lambda r: r.update(budget={"cost_seconds": 10**400}), "budget.cost_seconds: expected a finite number"),
    (lambda r: r.update(budget={"cost_seconds": 1e300}), "budget.cost_seconds: must lie in (0, 1e+09]"),
    (lambda r: r.update(budget={"evaluations": 10**15}), "budget.evaluations: 1000000000000000 is out of range"),
    (lambda r: r.update(budget={"evaluations": 10, "batch_size": 11}), "budget.batch_size: 11 is more than"),
    (lambda r: r.update(seed=2**32), "seed: 4294967296 is out of range; the limit is 4,294,967,295"),
    (lambda r: r.update(seed=10**99), "seed: 1000000000"),
    (lambda r: r.update(seed=10**5000), "seed: (a value holding an integer too long to print) is out of range"),
    (lambda r: r.update(output={"pareto_reference": [10**5000]}), "output.pareto_reference[0]: expected a finite"),
    (_set("objectives.0.bound", math.nan), "objectives[0].bound: expected a finite number, got nan"),
    (lambda r: r.update(output={"pareto_reference": [math.inf]}), "output.pareto_reference[0]: expected a finite"),
    (_set("evaluator.cost_per_query_s", math.nan), "evaluator.cost_per_query_s: expected a finite number"),
    (_set("searcher.population_size", 10**12), "searcher.population_size: 1000000000000 is out of range"),
    (lambda r: r.update(searcher={"name": "predictor_evolution", "pool_size": 10**9}, predictor={"name": "xgb"}),
     "searcher.pool_size: 1000000000 is out of range; the limit is 1,000,000"),
    (lambda r: r.update(searcher={"name": "nsga2", "crossover_prob": math.nan}), "searcher.crossover_prob: expected a finite"),
    (_predictor(name="gcn", lr=math.nan), "predictor.lr: expected a finite number, got nan"),
    (_predictor(name="nar", betas=[0.9, math.nan]), "predictor.betas[1]: expected a finite number"),
    (_predictor(name="nar", op_codes={"none": 10**9}), "predictor.op_codes.none: 1000000000 is out of range"),
    (_predictor(name="narformer", depths=[10**7]), "predictor.depths[0]: 10000000 is out of range"),
    (_predictor(name="mlp", hidden=[10**9]), "predictor.hidden[0]: 1000000000 is out of range"),
    (_predictor(name="narformer_v2", ema_decay=math.nan), "predictor.ema_decay: expected a finite number"),
])
def test_non_finite_and_absurd_numbers_are_refused(mutate, fragment):
    raw = base_raw()
    mutate(raw)
    with pytest.raises(ConfigError) as error:
        cfg.validate(raw)
    one_line(error, fragment)


def test_numbers_at_the_limits_are_accepted():
    config = cfg.validate({**base_raw(), "seed": MAX_SEED,
                           "budget": {"evaluations": MAX_EVALUATIONS, "batch_size": MAX_SETTING}})
    assert config.seed == 2**32 - 1 and config.budget.batch_size == 10**6
    assert cfg.validate({**base_raw(), "budget": {"cost_seconds": 1e9}}).budget.cost_seconds == 1e9


def test_yaml_nan_and_inf_reach_the_checks(tmp_path):
    path = tmp_path / "c.yaml"
    raw = base_raw()
    raw["objectives"][0]["bound"] = "BOUND"
    path.write_text(yaml.safe_dump(raw).replace("BOUND", ".NaN"))
    with pytest.raises(ConfigError) as error:
        cfg.load(path, ["budget.evaluations=5"])
    one_line(error, "objectives[0].bound: expected a finite number, got nan")
    with pytest.raises(ConfigError) as error:
        cfg.load(path, ["objectives.0.bound=1", "evaluator.cost_per_query_s=-.inf"])
    one_line(error, "evaluator.cost_per_query_s: expected a finite number, got -inf")


@pytest.mark.parametrize("section, spec, fragment", [
    ("predictor", {"name": "tnasp", "heads": 0}, "heads must be >= 1"),
    ("predictor", {"name": "narformer", "heads": 0}, "heads must be >= 1"),
    ("predictor", {"name": "nar", "heads": 0}, "heads must be >= 1"),
    ("predictor", {"name": "gcn", "dropout": 1.0}, "dropout must lie in [0, 1)"),
    ("predictor", {"name": "mlp", "hidden": [64, 0]}, "hidden[1] must be >= 1"),
    ("predictor", {"name": "xgb", "subsample": 0.0}, "subsample and colsample_bytree must lie in (0, 1]"),
    ("predictor", {"name": "nar", "eps": 0.0}, "eps > 0"),
    ("predictor", {"name": "nar", "betas": [0.9, 1.0]}, "betas must be two numbers in [0, 1)"),
])
def test_component_ranges_are_one_line_config_errors(section, spec, fragment):
    resolved = cfg.resolve_component(section, spec)
    with pytest.raises(ConfigError) as error:
        cfg.build_component(section, resolved, seed=0)
    one_line(error, f"{section} ({spec['name']}):", fragment)


def test_nan_ranges_are_refused_by_constructors_too():
    from nassearch.predictors.training import TrainSettings
    from nassearch.predictors.xgb import XGBPredictor

    with pytest.raises(ValueError, match="lr must be > 0"):
        TrainSettings(lr=math.nan)
    with pytest.raises(ValueError, match="min_child_weight >= 0"):
        XGBPredictor(min_child_weight=math.nan)


def test_nar_sampling_training_set_larger_than_the_space_is_refused():
    from nassearch.predictors.nar import NARPredictor
    from nassearch.objectives import Objective
    from nassearch.searchers.nar_sampling import NARSampling

    space, objectives = NasBench201Space(), [Objective("val_acc")]
    with pytest.raises(ValueError, match=r"train_size \+ val_size \(16,000\) distinct architectures exceed the 15,625"):
        NARSampling(space, objectives, 0, predictor=NARPredictor(), train_size=15_000, val_size=1_000)
    with pytest.raises(ValueError, match="kl_threshold >= 0"):
        NARSampling(space, objectives, 0, predictor=NARPredictor(), kl_threshold=math.nan)


# ---------------------------------------------------------------------------------------------
# Architecture strings

SPACES = {"nasbench201": NasBench201Space(), "nasbench101": NasBench101Space(), "darts": DartsSpace()}
GOOD = {"nasbench201": NB201, "nasbench101": NB101, "darts": DARTS}


@pytest.mark.parametrize("space", list(SPACES))
@pytest.mark.parametrize("text, fragment", [
    ("", "the string is empty"),
    (" \t\n ", "the string is empty"),
    ("x" * 10_001, "10,001 characters, more than the 10,000"),
    (None, "expected a string, got NoneType"),
])
def test_every_space_refuses_empty_long_and_non_strings(space, text, fragment):
    start = time.perf_counter()
    with pytest.raises(InvalidArchitecture) as error:
        SPACES[space].from_str(text)
    assert time.perf_counter() - start < 1.0
    one_line(error, fragment)


@pytest.mark.parametrize("space", list(SPACES))
def test_every_space_reads_its_strings_with_surrounding_whitespace(space):
    arch = SPACES[space].from_str(GOOD[space])
    assert SPACES[space].from_str(f"  {GOOD[space]}\n") == arch
    assert SPACES[space].to_str(arch).replace(" ", "") == GOOD[space].replace(" ", "")


@pytest.mark.parametrize("space, text, fragments", [
    ("nasbench201", NB201.replace("~1|+", "~" + "1" * 5000 + "|+"), ["edge 'avg_pool_3x3~111", "...",
                                                                      "is not of the form op~source"]),
    ("nasbench201", NB201.replace("~1|+", "~0000000001|+"), ["is not of the form op~source"]),
    ("nasbench201", NB201.replace("~1|+", "~\u0661|+"), ["'avg_pool_3x3~\u0661' is not of the form op~source"]),
    ("nasbench201", NB201.replace("~0|+", "~\uff10|+", 1), ["is not of the form op~source"]),
    ("nasbench201", NB201.replace("~0|+", "~00|+", 1), ["names source 00, expected 0"]),
    ("nasbench201", NB201.replace("|+|", "| + |"), ["it contains whitespace"]),
    ("nasbench201", NB201.replace("|+|", "|+\u00a0|"), ["it contains whitespace"]),
    ("nasbench201", NB201.replace("avg_pool_3x3", "max_pool_3x3"), ["unknown operation 'max_pool_3x3'"]),
    ("nasbench201", NB201.replace("skip_connect", "Skip_Connect"), ["is not of the form op~source",
                                                                    "with op one of none, skip_connect"]),
    ("nasbench201", NB201 + "|none~3|", ["node 3 has 5 input edge(s), expected 3"]),
    ("nasbench101", NB101.replace("1", "\u0661", 1), ["4 ops need 16 adjacency bits (0/1), got 16 characters"]),
    ("nasbench101", NB101.replace("maxpool3x3", "maxpool5x5"), ["unknown NAS-Bench-101 operation 'maxpool5x5'"]),
    ("nasbench101", NB101.replace("|", "||"), ["found 2 '|'"]),
    ("nasbench101", "0" * 90 ** 2 + "|" + ",".join(["input"] + ["maxpool3x3"] * 88 + ["output"]),
     ["no path from input to output"]),
    ("darts", DARTS.replace("[2, 3, 4, 5]", "range(1000000000)", 1), ["names 1,000,000,000 nodes"]),
    ("darts", DARTS.replace("[2, 3, 4, 5]", "tuple(range(10**9))", 1), ["tuple(range(10 ** 9)) is not a literal list"]),
    ("darts", DARTS.replace("[2, 3, 4, 5]", "[2] * 10**9", 1), ["is not a literal list"]),
    ("darts", DARTS.replace("[2, 3, 4, 5]", "range(2, 6, 0)", 1), ["a step other than 0"]),
    ("darts", DARTS.replace("[2, 3, 4, 5]", "[" + "2 + " * 400 + "2]", 1), ["nested more than 20 levels deep"]),
    ("darts", DARTS.replace("[2, 3, 4, 5]", "[" + "x, " * 300 + "]", 1), ["normal_concat = [x, x, x", "...",
                                                                        "is not a literal list"]),
    ("darts", DARTS.replace("[2, 3, 4, 5]", "[" * 150 + "2" + "]" * 150, 1), ["nested more than 20 levels deep"]),
    ("darts", DARTS.replace("[2, 3, 4, 5]", "[" * 300 + "]" * 300, 1), ["too many nested parentheses"]),
    ("darts", DARTS.replace("[2, 3, 4, 5]", "-" * 9000 + "1", 1), ["nested too deeply"]),
    ("darts", DARTS.replace("0)", "0x" + "f" * 5000 + ")", 1), ["an integer is out of range"]),
    ("darts", DARTS.replace("0)", "1" * 5000 + ")", 1), ["an integer is out of range"]),
    ("darts", DARTS.replace("[2, 3, 4, 5]", "[" + "2, " * 3000 + "]", 1), ["more than 2,000 parts"]),
    ("darts", DARTS.replace("normal=[", "normal=[" + "('sep_conv_3x3', 0), " * 130, 1), ["of which it may have 1 to 64"]),
    ("darts", DARTS.replace("0)", "\u0660)", 1), ["invalid character"]),
    ("darts", DARTS.replace("sep_conv_3x3", "sep_conv_9x9", 1), ["unknown operation 'sep_conv_9x9'"]),
    ("darts", DARTS.replace("reduce=", "normal=", 1), ["field normal is given twice"]),
    ("darts", "Genotype(normal=__import__('os').system('ls'))", ["is not a literal list"]),
])
def test_malformed_strings_name_the_problem(space, text, fragments):
    start = time.perf_counter()
    with pytest.raises(InvalidArchitecture) as error:
        SPACES[space].from_str(text)
    assert time.perf_counter() - start < 1.0
    one_line(error, *fragments)


def test_unknown_genotype_name_is_shortened():
    from nassearch.spaces.darts_genotypes import known_genotype

    with pytest.raises(InvalidArchitecture) as error:
        known_genotype("D" * 5000)
    one_line(error, "unknown DARTS genotype name 'DDD", "known: NASNet")


def test_cli_eval_refuses_a_5000_digit_node_index_in_one_line(make_config, data_dir, capsys):
    code = main(["eval", str(make_config()), NB201.replace("~1|+", "~" + "1" * 5000 + "|+"),
                 "--data-dir", str(data_dir)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("nassearch: error: malformed NAS-Bench-201 architecture")
    assert "\n" not in err and "Traceback" not in err and len(err) < 600
