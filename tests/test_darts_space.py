"""The DARTS space: genotype strings, sampling, variation, key, graph encoding and cost."""

import dataclasses

import numpy as np
import pytest
import torch

from nassearch.errors import InvalidArchitecture
from nassearch.registry import SPACES
from nassearch.spaces.darts import GRAPH_VOCAB, PRIMITIVES, SEARCH_OPS, DartsSpace
from nassearch.spaces.darts_notation import Genotype, format_genotype, parse_genotype
from nassearch.spaces.darts_genotypes import KNOWN_GENOTYPES, known_genotype

DARTS_V2 = KNOWN_GENOTYPES["DARTS_V2"]
V2_TEXT = format_genotype(DARTS_V2)
NODE = [("sep_conv_3x3", 0), ("sep_conv_3x3", 1)]


@pytest.fixture(scope="module")
def space():
    return DartsSpace()


def sampled(space, n, seed=0):
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


def cell_text(pairs):
    return "[" + ", ".join(f"('{op}', {i})" for op, i in pairs) + "]"


def genotype_text(normal=NODE * 4, reduce=NODE * 4, normal_concat="[2, 3, 4, 5]", reduce_concat="[2, 3, 4, 5]"):
    return (f"Genotype(normal={cell_text(normal)}, normal_concat={normal_concat}, "
            f"reduce={cell_text(reduce)}, reduce_concat={reduce_concat})")


# --------------------------------------------------------------------------------------- strings


def test_darts_v2_string_is_darts_notation():
    assert V2_TEXT.startswith("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0),")
    assert ", normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1)," in V2_TEXT
    assert V2_TEXT.endswith("('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])")


@pytest.mark.parametrize("name", sorted(KNOWN_GENOTYPES))
def test_known_genotypes_round_trip(name):
    genotype = KNOWN_GENOTYPES[name]
    assert parse_genotype(format_genotype(genotype)) == genotype
    assert format_genotype(parse_genotype(format_genotype(genotype))) == format_genotype(genotype)


def test_sampled_archs_round_trip(space):
    for arch in sampled(space, 100):
        text = space.to_str(arch)
        assert space.from_str(text) == arch
        assert format_genotype(parse_genotype(text)) == text


def test_range_concat_double_quotes_and_whitespace_are_accepted():
    text = V2_TEXT.replace("[2, 3, 4, 5]", "range(2, 6)").replace("'", '"').replace(", ", " ,\n  ")
    assert parse_genotype(f"\n  {text}  \n") == DARTS_V2
    assert KNOWN_GENOTYPES["PC_DARTS"].normal_concat == (2, 3, 4, 5)


def test_genotype_is_hashable_and_coerces_lists():
    genotype = Genotype(normal=[list(p) for p in DARTS_V2.normal], normal_concat=[2, 3, 4, 5],
                        reduce=list(DARTS_V2.reduce), reduce_concat=range(2, 6))
    assert genotype == DARTS_V2 and hash(genotype) == hash(DARTS_V2)
    assert {genotype, DARTS_V2} == {DARTS_V2}


@pytest.mark.parametrize("text, problem", [
    (genotype_text(normal=[("conv_3x3", 0)] + NODE[1:] + NODE * 3),
     "normal pair 0: unknown operation 'conv_3x3'; known: none, max_pool_3x3, avg_pool_3x3, skip_connect"),
    (genotype_text(reduce=NODE * 3 + [("sep_conv_3x3", 5), ("skip_connect", 0)]),
     "reduce pair 6 feeds node 5, which may take inputs 0..4, not 5"),
    (genotype_text(normal=[("sep_conv_3x3", 2), ("sep_conv_3x3", 1)] + NODE * 3),
     "normal pair 0 feeds node 2, which may take inputs 0..1, not 2"),
    (genotype_text(normal=NODE * 3 + NODE[:1]), "normal has 7 (op, input) pair(s)"),
    (genotype_text(normal=[]), "normal has 0 (op, input) pair(s)"),
    (genotype_text(reduce_concat="[2, 3, 6]"), "reduce_concat names node 6, but the reduce cell produces nodes 2..5"),
    (genotype_text(normal_concat="[2, 2]"), "normal_concat repeats a node"),
    (genotype_text(normal_concat="[]"), "normal_concat must be a non-empty list of node indices"),
    (genotype_text(normal_concat="range(2, x)"), "normal_concat = range(2, x) must be range() of"),
    (genotype_text().replace(", reduce_concat=[2, 3, 4, 5]", ""), "missing field(s) reduce_concat"),
    (genotype_text().replace("normal_concat", "normal_cat"), "unknown field 'normal_cat'"),
    (genotype_text().replace("('sep_conv_3x3', 0)", "('sep_conv_3x3', '0')", 1),
     "normal pair 0 must be ('op', input), got ('sep_conv_3x3', '0')"),
    (genotype_text().replace("('sep_conv_3x3', 0)", "('sep_conv_3x3', True)", 1), "normal pair 0 must be"),
    (genotype_text().replace("[2, 3, 4, 5]", "__import__('os')", 1),
     "normal_concat = __import__('os') is not a literal"),
    ("Genotype([('sep_conv_3x3', 0)])", "give the fields by name"),
    ("Cell(normal=[])", "expected an expression of the form Genotype(...)"),
    ("garbage (", "not a Genotype(...) expression"),
    ("", "the string is empty"),
])
def test_malformed_genotypes_are_named(text, problem):
    with pytest.raises(InvalidArchitecture) as error:
        parse_genotype(text)
    message = str(error.value)
    assert problem in message
    assert "Expected Genotype(normal=[('sep_conv_3x3', 0)" in message


def test_non_string_is_rejected():
    with pytest.raises(InvalidArchitecture, match="expected a string, got int"):
        parse_genotype(3)


def test_parse_accepts_literature_genotypes_that_the_space_rejects(space):
    nasnet = parse_genotype(format_genotype(KNOWN_GENOTYPES["NASNet"]))
    assert len(nasnet.normal) == 10 and nasnet.reduce_concat == (4, 5, 6)
    with pytest.raises(InvalidArchitecture, match="the normal cell has 5 intermediate nodes, the space's cells 4"):
        space.from_str(format_genotype(nasnet))


@pytest.mark.parametrize("text, problem", [
    (genotype_text(normal=NODE * 3 + [("sep_conv_3x3", 4), ("skip_connect", 4)]),
     "normal node 5 takes input 4 twice; the space's nodes take two distinct inputs"),
    (genotype_text(reduce=[("none", 0), ("sep_conv_3x3", 1)] + NODE * 3),
     "reduce pair 0 uses 'none'; the space's operations are max_pool_3x3"),
    (genotype_text(normal_concat="[2, 3, 5]"),
     "normal_concat is [2, 3, 5], the space's cells concatenate [2, 3, 4, 5]"),
])
def test_from_str_rejects_genotypes_outside_the_space(space, text, problem):
    parse_genotype(text)
    with pytest.raises(InvalidArchitecture, match="genotype not in the DARTS search space") as error:
        space.from_str(text)
    assert problem in str(error.value)


def test_validate_rejects_non_genotypes(space):
    with pytest.raises(InvalidArchitecture, match="must be a Genotype, got str"):
        space.to_str(V2_TEXT)


def test_known_genotype_names_the_known_ones():
    assert known_genotype("DARTS_V2") is DARTS_V2
    with pytest.raises(InvalidArchitecture, match="unknown DARTS genotype name 'DARTS'; known: NASNet, AmoebaNet"):
        known_genotype("DARTS")


def test_registry_knows_the_space():
    assert SPACES.get("darts") is DartsSpace


def test_constructor_rejects_non_positive_sizes():
    with pytest.raises(ValueError, match="layers must be >= 1, got 0"):
        DartsSpace(layers=0)


# --------------------------------------------------------------------------------------- variation


def test_sample_is_deterministic_valid_and_covers_the_choices(space):
    archs = sampled(space, 200, seed=1)
    assert archs == sampled(space, 200, seed=1)
    assert archs != sampled(space, 200, seed=2)
    for arch in archs:
        space.validate(arch)
    ops = {op for a in archs for op, _ in a.normal + a.reduce}
    assert ops == set(SEARCH_OPS)
    last_node_inputs = {i for a in archs for _, i in a.normal[6:]}
    assert last_node_inputs == {0, 1, 2, 3, 4}


def changed_pairs(a, b):
    return [(cell, i) for cell in ("normal", "reduce")
            for i, (x, y) in enumerate(zip(getattr(a, cell), getattr(b, cell))) if x != y]


def test_mutate_changes_exactly_one_pair_and_stays_valid(space):
    rng = np.random.default_rng(3)
    op_changes = input_changes = 0
    for arch in sampled(space, 300, seed=3):
        child = space.mutate(arch, rng)
        space.validate(child)
        assert child != arch
        [(cell, i)] = changed_pairs(arch, child)
        (op, index), (new_op, new_index) = getattr(arch, cell)[i], getattr(child, cell)[i]
        assert (op != new_op) != (index != new_index)
        op_changes += op != new_op
        input_changes += index != new_index
    assert op_changes > 100 and input_changes > 50


def test_mutate_changes_the_op_when_node_2_has_no_free_input(space):
    arch = dataclasses.replace(DARTS_V2, normal=tuple(NODE * 4), reduce=tuple(NODE * 4))
    rng = np.random.default_rng(0)
    for _ in range(200):
        child = space.mutate(arch, rng)
        for cell, i in changed_pairs(arch, child):
            if i < 2:
                assert getattr(child, cell)[i][1] == getattr(arch, cell)[i][1]


def test_mutate_is_deterministic_given_the_rng(space):
    arch = sampled(space, 1)[0]
    assert space.mutate(arch, np.random.default_rng(7)) == space.mutate(arch, np.random.default_rng(7))


def test_crossover_takes_each_node_from_one_parent(space):
    rng = np.random.default_rng(4)
    a_nodes = b_nodes = 0
    for a, b in zip(sampled(space, 50, seed=5), sampled(space, 50, seed=6)):
        child = space.crossover(a, b, rng)
        space.validate(child)
        for cell in ("normal", "reduce"):
            for k in range(4):
                node = getattr(child, cell)[2 * k:2 * k + 2]
                from_a, from_b = node == getattr(a, cell)[2 * k:2 * k + 2], node == getattr(b, cell)[2 * k:2 * k + 2]
                assert from_a or from_b
                a_nodes += from_a
                b_nodes += from_b
    assert a_nodes > 150 and b_nodes > 150


def test_key_ignores_the_order_of_a_nodes_two_pairs(space):
    arch = sampled(space, 1, seed=8)[0]
    normal = list(arch.normal)
    normal[2], normal[3] = normal[3], normal[2]
    swapped = dataclasses.replace(arch, normal=tuple(normal))
    assert swapped != arch
    assert space.key(swapped) == space.key(arch)
    canonical = space.from_str(space.key(arch))
    assert space.key(canonical) == space.key(arch)
    assert all(canonical.normal[k][1] < canonical.normal[k + 1][1] for k in range(0, 8, 2))
    assert space.key(DARTS_V2) != space.key(KNOWN_GENOTYPES["DARTS_V1"])


# --------------------------------------------------------------------------------------- encoding


def test_encode_darts_v2_by_hand(space):
    graph = space.encode(DARTS_V2)
    assert graph.num_nodes == 22
    assert graph.op_vocab == GRAPH_VOCAB == ("c_k-2", "c_k-1", *PRIMITIVES, "output")
    assert graph.cells.tolist() == [0] * 11 + [1] * 11
    assert graph.op_names() == [
        "c_k-2", "c_k-1", "sep_conv_3x3", "sep_conv_3x3", "sep_conv_3x3", "sep_conv_3x3", "sep_conv_3x3",
        "skip_connect", "skip_connect", "dil_conv_3x3", "output",
        "c_k-2", "c_k-1", "max_pool_3x3", "max_pool_3x3", "skip_connect", "max_pool_3x3", "max_pool_3x3",
        "skip_connect", "skip_connect", "max_pool_3x3", "output"]
    normal = {(0, 2), (1, 3), (0, 4), (1, 5), (1, 6), (0, 7), (0, 8), (2, 9), (3, 9)} | {(j, 10) for j in range(2, 10)}
    reduce = ({(11, 13), (12, 14), (13, 15), (14, 15), (12, 16), (11, 17), (13, 18), (14, 18), (13, 19), (14, 19),
               (12, 20)} | {(j, 21) for j in range(13, 21)})
    edges = {(int(i), int(j)) for i, j in zip(*np.nonzero(graph.adjacency))}
    assert edges == normal | reduce | {(10, 11), (10, 12)}


def test_encode_is_upper_triangular_for_sampled_archs(space):
    for arch in sampled(space, 50, seed=9):
        graph = space.encode(arch)
        assert graph.adjacency.shape == (22, 22)
        assert not np.tril(graph.adjacency).any()
        assert graph.adjacency[:, [0, 1]].sum() == 0 and graph.adjacency[:, [11, 12]].sum() == 2
        assert graph.adjacency[2:10, 10].all() and graph.adjacency[13:21, 21].all()


# --------------------------------------------------------------------------------------- networks


def test_cost_counts_params_without_the_auxiliary_head():
    torch.manual_seed(0)
    space = DartsSpace(init_channels=8, layers=5)
    model = space.build_model(DARTS_V2)
    assert model.auxiliary_head is not None
    manual = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("auxiliary_head."))
    cost = space.cost(DARTS_V2)
    assert cost.params_m * 1e6 == pytest.approx(manual, abs=0.5)
    assert cost.flops_m > 0


def test_build_model_takes_the_space_settings_and_overrides():
    space = DartsSpace(init_channels=8, layers=5, num_classes=7, auxiliary=False)
    model = space.build_model(DARTS_V2)
    assert len(model.cells) == 5 and model.classifier.out_features == 7 and model.auxiliary_head is None
    model = space.build_model(DARTS_V2, num_classes=3, layers=4, auxiliary=True, drop_path_prob=0.2)
    assert len(model.cells) == 4 and model.classifier.out_features == 3 and model.auxiliary_head is not None
    assert model.drop_path_prob == 0.2
    assert model.stem[0].out_channels == 24


def test_cost_batch_equals_cost_of_each_built_network():
    small = DartsSpace(init_channels=6, layers=5, auxiliary=True)
    rng = np.random.default_rng(11)
    archs = [small.sample(rng) for _ in range(6)] + [known_genotype("DARTS_V2"), known_genotype("PC_DARTS")]
    params, flops = small.cost_batch(archs)
    costs = [small.cost(a) for a in archs]
    np.testing.assert_allclose(params, [c.params_m for c in costs], rtol=0, atol=1e-9)
    np.testing.assert_allclose(flops, [c.flops_m for c in costs], rtol=0, atol=1e-6)
