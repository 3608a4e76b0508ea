"""The ProxylessNAS space (003 Fig. 2): count, strings, key, variation, graphs, networks and costs."""

import functools
import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nassearch.errors import InvalidArchitecture
from nassearch.model_cost import count_params
from nassearch.spaces.proxylessnas import (GRAPH_VOCAB, LAYER_CHOICES, MOBILE_WIDTHS, NUM_LAYERS, OPS,
                                           PROXYLESSNAS_ARCHITECTURES, TABLE2_ARCHITECTURES, ZERO, ProxylessNASSpace,
                                           Widths, canonical, format_arch, known_architecture)

TABLE2_FIRST = (0, 0, 6, 0, 0, 0, 0, 0, 6, 1, 4, 6, 2, 4, 0, 1, 5, 0, 2, 6, 2, 3)
#: Parameters of the released ProxylessNAS networks (the paper rounds them to 7.1 M and 4.1 M).
RELEASED_PARAMS = {"proxylessnas_gpu": 7_119_848, "proxylessnas_mobile": 4_080_512}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@functools.cache
def shared_space(flops_convention="macs"):
    return ProxylessNASSpace(flops_convention=flops_convention)


@pytest.fixture
def space():
    return shared_space()


def sampled(space, n, seed=0):
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


def is_member(arch):
    return (isinstance(arch, tuple) and len(arch) == NUM_LAYERS
            and all(type(i) is int and i in choices for i, choices in zip(arch, LAYER_CHOICES)))


# ------------------------------------------------------------------------------------------- count


def test_size_is_the_product_of_the_layers_choice_counts(space):
    counts = [len(c) for c in LAYER_CHOICES]
    assert counts == [3] + [6, 7, 7, 7] * 5 + [6]
    assert counts.count(3) == 1 and counts.count(6) == 6 and counts.count(7) == 15
    assert math.prod(counts) == 3 * 6 ** 6 * 7 ** 15 == 664_506_689_423_701_824 == space.size()
    assert f"{space.size():.2e}" == "6.65e+17"  # 003 Fig. 2 writes "approximately 6.64e17" (truncated)


def test_a_four_layer_stage_holds_1554_distinct_networks():
    """6 first layers times 1 + 6 + 36 + 216 sequences of non-zero later layers; the whole space then holds
    3 * 1554**5 * 6 distinct networks."""
    stage = list(itertools.product(range(ZERO), range(len(OPS)), range(len(OPS)), range(len(OPS))))
    assert len(stage) == 6 * 7 ** 3
    keys = set()
    for layers in stage:
        arch = (0, *layers, *TABLE2_FIRST[5:])
        keys.add(canonical(arch)[1:5])
    assert len(keys) == 6 * (1 + 6 + 36 + 216) == 1554


# ----------------------------------------------------------------------------------------- strings


def test_string_is_the_seed_tuple(space):
    text = "(0, 0, 6, 0, 0, 0, 0, 0, 6, 1, 4, 6, 2, 4, 0, 1, 5, 0, 2, 6, 2, 3)"
    assert space.from_str(text) == TABLE2_FIRST
    assert space.to_str(TABLE2_FIRST) == text
    assert space.from_str(text.replace(" ", "")) == TABLE2_FIRST
    assert space.from_str("  ( 0 ,0,6 , " + text[10:] + "\n") == TABLE2_FIRST


def test_ten_thousand_samples_round_trip(space):
    archs = sampled(space, 10_000, seed=1)
    for arch in archs:
        assert is_member(arch)
        text = space.to_str(arch)
        parsed = space.from_str(text)
        assert parsed == arch and space.to_str(parsed) == text and space.key(parsed) == space.key(arch)
    assert len({space.to_str(a) for a in archs}) == 10_000


def test_sampling_is_uniform_per_layer(space):
    archs = np.array(sampled(space, 10_000, seed=2))
    for layer, choices in enumerate(LAYER_CHOICES):
        counts = np.bincount(archs[:, layer], minlength=len(OPS))
        expected = 10_000 / len(choices)
        assert set(np.nonzero(counts)[0]) == set(choices)
        assert np.all(np.abs(counts[list(choices)] - expected) < 5 * np.sqrt(expected))


BAD = [
    ("(0, 0, 6, 0, 0, 0, 0, 0, 6, 1, 4, 6, 2, 4, 0, 1, 5, 0, 2, 6, 2)",
     "malformed ProxylessNAS architecture '(0, 0, 6, 0, 0, 0, 0, 0, 6, 1, 4, 6, 2, 4, 0, 1, 5, 0, 2, 6, 2)': "
     "it has 21 comma-separated entries, expected 22. Expected (i1, i2, ..., i22), 22 operation indices"),
    ("(0, 0, 6, 0, 0, 6, 0, 0, 6, 1, 4, 6, 2, 4, 0, 1, 5, 0, 2, 6, 2, 3)",
     "malformed ProxylessNAS architecture '(0, 0, 6, 0, 0, 6, 0, 0, 6, 1, 4, 6, 2, 4, 0, 1, 5, 0, 2, 6, 2, 3)': "
     "layer 6 of 22 (the first layer of stage 2) is 6 (zero), which is forbidden in the first layer of a stage; "
     "it takes 0..5. Expected (i1, i2, ..., i22), 22 operation indices"),
    ("(0, 0, 6, 0, 0, 0, 0, 7, 6, 1, 4, 6, 2, 4, 0, 1, 5, 0, 2, 6, 2, 3)",
     "malformed ProxylessNAS architecture '(0, 0, 6, 0, 0, 0, 0, 7, 6, 1, 4, 6, 2, 4, 0, 1, 5, 0, 2, 6, 2, 3)': "
     "layer 8 of 22 (the third layer of stage 2) is 7, out of range; it takes 0..6. "
     "Expected (i1, i2, ..., i22), 22 operation indices"),
    ("(3, 0, 6, 0, 0, 0, 0, 0, 6, 1, 4, 6, 2, 4, 0, 1, 5, 0, 2, 6, 2, 3)",
     "malformed ProxylessNAS architecture '(3, 0, 6, 0, 0, 0, 0, 0, 6, 1, 4, 6, 2, 4, 0, 1, 5, 0, 2, 6, 2, 3)': "
     "layer 1 of 22 (the first, expansion-1 layer) is 3, out of range; it takes 0..2. "
     "Expected (i1, i2, ..., i22), 22 operation indices"),
    ("(0, 0, 6, 0, 0, 0, 0, 0, 6, 1, 4, 6, 2, 4, 0, 1, 5, 0, 2, 6, 2, 6)",
     "malformed ProxylessNAS architecture '(0, 0, 6, 0, 0, 0, 0, 0, 6, 1, 4, 6, 2, 4, 0, 1, 5, 0, 2, 6, 2, 6)': "
     "layer 22 of 22 (the first layer of stage 6) is 6 (zero), which is forbidden in the first layer of a stage; "
     "it takes 0..5. Expected (i1, i2, ..., i22), 22 operation indices"),
    ("0, 0, 6", "malformed ProxylessNAS architecture '0, 0, 6': it must be enclosed in parentheses. "
                "Expected (i1, i2, ..., i22), 22 operation indices"),
    ("(0, a, 6, 0, 0, 0, 0, 0, 6, 1, 4, 6, 2, 4, 0, 1, 5, 0, 2, 6, 2, 3)",
     "malformed ProxylessNAS architecture '(0, a, 6, 0, 0, 0, 0, 0, 6, 1, 4, 6, 2, 4, 0, 1, 5, 0, 2, 6, 2, 3)': "
     "entry 2 'a' is not an operation index. Expected (i1, i2, ..., i22), 22 operation indices"),
]


@pytest.mark.parametrize("text, message", BAD, ids=["length", "zero-first", "index-7", "first-layer-3",
                                                    "zero-last-stage", "no-parentheses", "letter"])
def test_bad_strings_name_the_problem(space, text, message):
    with pytest.raises(InvalidArchitecture) as info:
        space.from_str(text)
    assert str(info.value) == message


@pytest.mark.parametrize("arch", [TABLE2_FIRST[:-1], (*TABLE2_FIRST[:5], 6, *TABLE2_FIRST[6:]),
                                  (*TABLE2_FIRST[:3], 7, *TABLE2_FIRST[4:]), (True, *TABLE2_FIRST[1:]),
                                  list(TABLE2_FIRST)])
def test_invalid_tuples_are_refused(space, arch):
    for call in (space.to_str, space.key, space.encode, space.build_model, space.cost, space.input_shape):
        with pytest.raises(InvalidArchitecture):
            call(arch)


# --------------------------------------------------------------------------------------------- key


TAIL = canonical(TABLE2_FIRST)[5:]  # stages 2-6, zero layers last


def test_zero_layers_of_a_stage_are_canonicalised(space):
    a = (0, 1, 6, 2, 6, *TAIL)
    b = (0, 1, 2, 6, 6, *TAIL)
    c = (0, 1, 6, 6, 2, *TAIL)
    d = (0, 1, 6, 6, 6, *TAIL)
    assert space.key(a) == space.key(b) == space.key(c) == space.to_str(b)
    assert space.key(d) != space.key(a)
    # the order of the non-zero layers is kept: B after A is another network than A after B
    assert space.key((0, 1, 2, 0, 6, *TAIL)) != space.key((0, 1, 0, 2, 6, *TAIL))
    # a zero layer cannot move across stages
    assert space.key((0, 1, 2, 2, 6, 1, 0, 0, 6, *TAIL[4:])) != space.key((0, 1, 2, 6, 6, 1, 0, 0, 0, *TAIL[4:]))
    # same network, so same graph, same parameters and same FLOPs
    assert np.array_equal(space.encode(a).ops, space.encode(b).ops)
    assert space.cost(a) == space.cost(b)
    assert [n for n, _ in space.build_model(a).layers.named_children()] == \
        [n for n, _ in space.build_model(b).layers.named_children()]


def test_key_identical_networks_compute_the_same_function(space):
    a = (0, 1, 6, 2, 6, *TAIL)
    b = (0, 1, 2, 6, 6, *TAIL)
    torch.manual_seed(0)
    model_a = space.build_model(a, num_classes=10).eval()
    model_b = space.build_model(b, num_classes=10).eval()
    model_b.load_state_dict(model_a.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model_a(x), model_b(x))


# --------------------------------------------------------------------------------------- variation


def test_mutations_are_valid_one_layer_neighbours_with_new_keys(space):
    rng = np.random.default_rng(3)
    parents = sampled(space, 1_000, seed=4)
    changed = np.zeros(NUM_LAYERS, dtype=int)
    for parent in parents:
        child = space.mutate(parent, rng)
        assert is_member(child) and space.from_str(space.to_str(child)) == child
        diff = [i for i in range(NUM_LAYERS) if child[i] != parent[i]]
        assert len(diff) == 1
        changed[diff[0]] += 1
        assert space.key(child) != space.key(parent)
    assert changed.min() > 0  # every layer gets mutated


def test_crossover_children_take_each_layer_from_a_parent(space):
    rng = np.random.default_rng(5)
    a_list, b_list = sampled(space, 1_000, seed=6), sampled(space, 1_000, seed=7)
    from_a = 0
    for a, b in zip(a_list, b_list):
        child = space.crossover(a, b, rng)
        assert is_member(child) and space.from_str(space.to_str(child)) == child
        assert all(c in (x, y) for c, x, y in zip(child, a, b))
        from_a += sum(c == x != y for c, x, y in zip(child, a, b))
    differing = sum(x != y for a, b in zip(a_list, b_list) for x, y in zip(a, b))
    assert abs(from_a / differing - 0.5) < 0.02


def test_sample_mutate_crossover_are_deterministic_per_seed(space):
    def run(seed):
        rng = np.random.default_rng(seed)
        archs = [space.sample(rng) for _ in range(50)]
        archs += [space.mutate(a, rng) for a in archs]
        archs += [space.crossover(a, b, rng) for a, b in zip(archs, archs[::-1])]
        return [space.to_str(a) for a in archs]

    assert run(11) == run(11)
    assert run(11) != run(12)


# ------------------------------------------------------------------------------------------- graph


def test_encode_is_a_chain_of_22_layers_with_attributes(space):
    graph = space.encode(TABLE2_FIRST)
    canon = canonical(TABLE2_FIRST)
    assert canon == (0, 0, 0, 0, 6, 0, 0, 0, 6, 1, 4, 2, 6, 4, 0, 1, 5, 0, 2, 2, 6, 3)
    assert graph.num_nodes == 22 and graph.op_vocab == GRAPH_VOCAB
    assert np.array_equal(graph.adjacency, np.eye(22, k=1))
    assert graph.op_names()[:6] == ["IB3x3-1", "IB3x3-3", "IB3x3-3", "IB3x3-3", "zero", "IB3x3-3"]
    attrs = graph.node_attrs
    assert attrs["kernel"][:5].tolist() == [3, 3, 3, 3, 0] and attrs["expansion"][9:12].tolist() == [3, 6, 3]
    assert attrs["stage"].tolist() == [0] + [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4 + [5] * 4 + [6]
    assert attrs["position"].tolist() == [0] + [0, 1, 2, 3] * 5 + [0]
    assert attrs["channels"].tolist() == [16] + [24] * 4 + [40] * 4 + [80] * 4 + [96] * 4 + [192] * 4 + [320]
    assert attrs["stride"].tolist() == [1, 2, 1, 1, 1, 2, 1, 1, 1, 2] + [1] * 7 + [2] + [1] * 4
    assert attrs["resolution"][[0, 1, 2, 5, 9, 13, 17, 18, 21]].tolist() == [112, 112, 56, 56, 28, 14, 14, 7, 7]
    assert attrs["flops"][4] == 0 and attrs["params"][4] == 0
    cost = space.cost(TABLE2_FIRST)
    assert graph.graph_attrs["resolution"] == 224
    assert graph.graph_attrs["params"] == pytest.approx(cost.params_m, rel=1e-9)
    assert graph.graph_attrs["flops"] == pytest.approx(cost.flops_m, rel=1e-9)


# ---------------------------------------------------------------------------------- networks, costs


@pytest.mark.parametrize("convention", ["macs", "model_cost"])
def test_cost_batch_equals_the_built_networks_cost(convention):
    space = shared_space(convention)
    archs = sampled(space, 2, seed=8) + [TABLE2_FIRST]
    params, flops = space.cost_batch(archs)
    for arch, p, f in zip(archs, params, flops):
        cost = space.cost(arch)
        assert p == pytest.approx(cost.params_m, rel=1e-9) and f == pytest.approx(cost.flops_m, rel=1e-9)


@pytest.mark.parametrize("name", sorted(PROXYLESSNAS_ARCHITECTURES))
def test_published_proxylessnas_networks_have_their_parameter_counts(space, name):
    known = known_architecture(name)
    model = space.build_known(name)
    params = count_params(model)
    print(f"{name}: {params:,} parameters (released {RELEASED_PARAMS[name]:,}, paper "
          f"{known.reported['params_m']} M)")
    assert abs(params / 1e6 - known.reported["params_m"]) < 0.05
    assert params == RELEASED_PARAMS[name]
    assert space.build_model(known.arch, widths=known.widths).state_dict().keys() == model.state_dict().keys()


def test_published_mobile_network_has_the_papers_320m_macs():
    """ProxylessNAS reports 320 M multiply-adds for ProxylessNAS-Mobile: the default convention gives 320.4 M."""
    mobile = PROXYLESSNAS_ARCHITECTURES["proxylessnas_mobile"].arch
    assert ProxylessNASSpace(widths=MOBILE_WIDTHS).cost(mobile).flops_m == pytest.approx(320.43, abs=0.005)


def test_flops_convention_is_an_option_checked_in_the_constructor():
    with pytest.raises(ValueError, match="^flops_convention must be one of 'macs', 'model_cost', got 'ofa'$"):
        ProxylessNASSpace(flops_convention="ofa")
    macs, full = shared_space().cost(TABLE2_FIRST), shared_space("model_cost").cost(TABLE2_FIRST)
    assert macs.params_m == full.params_m and 1.03 < full.flops_m / macs.flops_m < 1.04


def test_widths_are_options(space):
    wide = ProxylessNASSpace(widths={"stem": 40, "first": 24, "stages": [32, 56, 112, 128, 256, 432], "last": 1728})
    gpu = PROXYLESSNAS_ARCHITECTURES["proxylessnas_gpu"].arch
    assert wide.cost(gpu).params_m * 1e6 == pytest.approx(RELEASED_PARAMS["proxylessnas_gpu"], abs=0.5)
    assert wide.widths == PROXYLESSNAS_ARCHITECTURES["proxylessnas_gpu"].widths
    with pytest.raises(ValueError, match="needs 6 channel counts"):
        Widths(stages=(24, 40))
    with pytest.raises(ValueError, match="last must be >= 1"):
        Widths(last=0)


def test_table2_architectures_parse_with_their_costs(space):
    """The nine frontier architectures of 003 Table 2 parse; their params/FLOPs table (from cost_batch, equal to
    cost() by test_cost_batch_equals_the_built_networks_cost) is printed."""
    assert len(TABLE2_ARCHITECTURES) == 9
    latencies = [k.reported["latency_ms"] for k in TABLE2_ARCHITECTURES.values()]
    assert latencies == sorted(latencies) and latencies[0] == 75.05 and latencies[-1] == 84.95
    params, flops = space.cost_batch([k.arch for k in TABLE2_ARCHITECTURES.values()])
    rows = []
    for (name, known), p, f in zip(TABLE2_ARCHITECTURES.items(), params, flops):
        assert space.from_str(format_arch(known.arch)) == known.arch
        rows.append(f"{name}  {format_arch(known.arch)}  {known.reported['latency_ms']:6.2f} ms  "
                    f"{known.reported['top1']:.2f}%  {p:6.3f} M params  {f:7.2f} M FLOPs")
    print("\n" + "\n".join(rows))
    assert params.round(3).tolist() == [3.454, 3.716, 3.95, 4.062, 3.696, 3.998, 4.012, 3.823, 3.975]
    assert np.round(flops * 1e6).astype(int).tolist() == [272_785_472, 274_751_744, 278_434_976, 275_683_136,
                                                          284_211_488, 287_875_904, 294_541_472, 304_800_896,
                                                          301_620_992]


@pytest.mark.slow
def test_table2_architectures_build_and_run_at_224(space):
    """All nine build and run a forward pass at 224x224, batch 1 (about 6 s on the shared 2-core machine)."""
    for known in TABLE2_ARCHITECTURES.values():
        model = space.build_model(known.arch).eval()
        with torch.no_grad():
            out = model(torch.randn(1, 3, 224, 224))
        assert out.shape == (1, 1000) and torch.isfinite(out).all()
        assert count_params(model) / 1e6 == pytest.approx(space.cost_batch([known.arch])[0][0], rel=1e-9)


def test_the_fastest_table2_architecture_runs_at_224(space):
    model = space.build_model(TABLE2_FIRST).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
    assert space.input_shape(TABLE2_FIRST) == (3, 224, 224)
    assert ProxylessNASSpace(input_size=160).input_shape(TABLE2_FIRST) == (3, 160, 160)


def elementwise_hooks(model):
    """Forward hooks that add up what model_cost counts beside convolutions and linear layers, from tensor
    shapes: 2 per BatchNorm output element, one per adaptive-pooling input element, the classifier's bias
    (ReLU6 is not counted). Returns the handles and a one-element list holding the running total."""
    total = [0]

    def bn(module, inputs, output):
        total[0] += 2 * output[0].numel()

    def pool(module, inputs, output):
        total[0] += inputs[0][0].numel()

    def bias(module, inputs, output):
        total[0] += module.out_features if module.bias is not None else 0

    handles = [m.register_forward_hook(bn) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    handles += [m.register_forward_hook(pool) for m in model.modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    handles += [m.register_forward_hook(bias) for m in model.modules() if isinstance(m, nn.Linear)]
    return handles, total


def flop_agreement(archs):
    """Worst relative differences of cost's FLOPs from FlopCounterMode's (FLOPs = 2 x MACs): (a) the default
    convention ("macs", ``cost``) against the counter's MACs and (b) "model_cost" (``cost_batch``, equal to
    ``cost`` by test_cost_batch_equals_the_built_networks_cost) against those MACs plus the elementwise terms
    counted from shapes."""
    space = shared_space()
    _, full_flops = shared_space("model_cost").cost_batch(archs)
    worst_macs = worst_full = 0.0
    x = torch.zeros(1, 3, 224, 224)
    for arch, full in zip(archs, full_flops * 1e6):
        model = space.build_model(arch).eval()
        handles, elementwise = elementwise_hooks(model)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
        for handle in handles:
            handle.remove()
        macs = counter.get_total_flops() / 2
        worst_macs = max(worst_macs, abs(space.cost(arch).flops_m * 1e6 - macs) / macs)
        worst_full = max(worst_full, abs(full - (macs + elementwise[0])) / (macs + elementwise[0]))
    return worst_macs, worst_full


def test_cost_flops_agree_with_torch_flop_counter():
    worst_macs, worst_full = flop_agreement(sampled(shared_space(), 5, seed=9))
    print(f"worst relative difference: macs {worst_macs:.2e}, model_cost {worst_full:.2e}")
    assert worst_macs < 1e-9 and worst_full < 1e-9


@pytest.mark.slow
def test_cost_flops_agree_with_torch_flop_counter_on_50_networks():
    worst_macs, worst_full = flop_agreement(sampled(shared_space(), 50, seed=10))
    print(f"worst relative difference: macs {worst_macs:.2e}, model_cost {worst_full:.2e}")
    assert worst_macs < 1e-9 and worst_full < 1e-9


def test_registered():
    from nassearch.registry import SPACES

    assert SPACES.get("proxylessnas") is ProxylessNASSpace
