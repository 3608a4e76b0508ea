"""The OFA MobileNetV3 space: strings, keys, OFA's variation operators, encoding, the built subnet and its cost."""

from __future__ import annotations

import copy
import json
import time

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from nassearch.errors import InvalidArchitecture
from nassearch.model_cost import count_macs, measure_cost
from nassearch.spaces.ofa_mbv3 import (DEPTHS, EXPANDS, GRAPH_NODES, GRAPH_VOCAB, KERNELS, MAX_DEPTH, NUM_BLOCKS,
                                       RESOLUTIONS, STAGES, OFAArch, OFAMobileNetV3Space, active_blocks)

SPACE = OFAMobileNetV3Space()


def arch_of(ks=3, e=3, d=2, r=160) -> OFAArch:
    expand = lambda v, n: tuple(v) if isinstance(v, (list, tuple)) else (v,) * n  # noqa: E731
    return OFAArch(expand(ks, NUM_BLOCKS), expand(e, NUM_BLOCKS), expand(d, STAGES), r)


def valid_dict(**changes) -> dict:
    return {**arch_of(ks=5, e=4, d=3, r=192).to_dict(), **changes}


def test_constants_active_blocks_and_size():
    assert (KERNELS, EXPANDS, DEPTHS, STAGES, MAX_DEPTH) == ((3, 5, 7), (3, 4, 6), (2, 3, 4), 5, 4)
    assert RESOLUTIONS == tuple(range(160, 225, 4)) and len(RESOLUTIONS) == 17
    assert active_blocks(arch_of(d=(2, 3, 4, 2, 3))) == [0, 1, 4, 5, 6, 8, 9, 10, 11, 12, 13, 16, 17, 18]
    assert active_blocks(arch_of(d=4)) == list(range(20))
    assert SPACE.size() == (9 ** 2 + 9 ** 3 + 9 ** 4) ** 5 * 17 == 369_897_143_373_732_259_467
    assert OFAMobileNetV3Space(resolutions=(224,)).size() == 7371 ** 5


def test_round_trip_of_10000_samples_is_fast():
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    keys = set()
    for _ in range(10_000):
        arch = SPACE.sample(rng)
        text = SPACE.to_str(arch)
        parsed = SPACE.from_str(text)
        assert parsed == arch and SPACE.to_str(parsed) == text
        key = SPACE.key(parsed)
        assert key == SPACE.key(arch)
        keys.add(key)
    elapsed = time.perf_counter() - start
    assert elapsed < 10.0, f"10,000 round trips took {elapsed:.1f} s"
    assert len(keys) == 10_000  # a space of 3.7e20 networks: no repeats
    # the string is OFA's config dict, compact, keys in OFA's order
    raw = json.loads(text)
    assert list(raw) == ["ks", "e", "d", "r"] and " " not in text
    assert raw == arch.to_dict()


def test_mutate_and_crossover_give_valid_members():
    rng = np.random.default_rng(1)
    parents = [SPACE.sample(rng) for _ in range(1000)]
    for parent, other in zip(parents, parents[::-1]):
        child = SPACE.mutate(parent, rng)
        assert SPACE.key(child) != SPACE.key(parent)
        assert SPACE.from_str(SPACE.to_str(child)) == child
        mixed = SPACE.crossover(parent, other, rng)
        assert SPACE.from_str(SPACE.to_str(mixed)) == mixed
        for field in ("ks", "e", "d"):  # every gene from one of the parents
            assert all(g in (x, y) for g, x, y in zip(getattr(mixed, field), getattr(parent, field),
                                                       getattr(other, field)))
        assert mixed.r in (parent.r, other.r)


def test_mutation_follows_ofa_rates():
    """One OFA mutation redraws r w.p. 0.5 and each block pair / depth w.p. 0.1 (the old value included)."""
    rng = np.random.default_rng(2)
    parent = SPACE.sample(rng)
    n = 4000
    children = [SPACE._ofa_mutation(parent, rng) for _ in range(n)]
    r_changed = np.mean([c.r != parent.r for c in children])
    block_changed = np.mean([(c.ks[i], c.e[i]) != (parent.ks[i], parent.e[i]) for c in children for i in range(20)])
    depth_changed = np.mean([c.d[s] != parent.d[s] for c in children for s in range(5)])
    assert abs(r_changed - 0.5 * 16 / 17) < 0.03
    assert abs(block_changed - 0.1 * 8 / 9) < 0.01
    assert abs(depth_changed - 0.1 * 2 / 3) < 0.01
    # a tiny mutate_prob still changes the key (the forced fallback)
    lazy = OFAMobileNetV3Space(mutate_prob=1e-9, resolution_mutate_prob=0.0)
    assert lazy.key(lazy.mutate(parent, rng)) != lazy.key(parent)


def test_seeded_determinism():
    def run(seed):
        rng = np.random.default_rng(seed)
        a, b = SPACE.sample(rng), SPACE.sample(rng)
        return [SPACE.to_str(x) for x in (a, b, SPACE.mutate(a, rng), SPACE.crossover(a, b, rng))]

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_key_canonicalises_inactive_slots():
    arch = arch_of(ks=7, e=6, d=(2, 3, 4, 2, 3), r=200)
    other = dict(arch.to_dict())
    other["ks"] = list(arch.ks)
    other["e"] = list(arch.e)
    for slot in (2, 3, 7, 14, 15, 19):  # inactive slots
        other["ks"][slot], other["e"][slot] = 5, 4
    parsed = SPACE.from_str(json.dumps(other))
    assert parsed != arch and SPACE.to_str(parsed) != SPACE.to_str(arch)
    assert SPACE.key(parsed) == SPACE.key(arch)
    canonical = SPACE.canonical(arch)
    assert [canonical.ks[s] for s in (2, 3, 7, 14, 15, 19)] == [3] * 6
    assert [canonical.e[s] for s in (2, 3, 7, 14, 15, 19)] == [3] * 6
    assert SPACE.key(arch) == SPACE.to_str(canonical)
    # an active slot changes the key
    other["ks"][0] = 3
    assert SPACE.key(SPACE.from_str(json.dumps(other))) != SPACE.key(arch)


@pytest.mark.parametrize("text, message", [
    (json.dumps(valid_dict(ks=[5] * 19)), "wrong length: ks has 19 values; expected 20"),
    (json.dumps(valid_dict(d=[3] * 6)), "wrong length: d has 6 values; expected 5"),
    (json.dumps(valid_dict(ks=[5, 5, 5, 9] + [5] * 16)), "kernel 9 at block 3; allowed 3, 5, 7"),
    (json.dumps(valid_dict(e=[4] * 7 + [5] + [4] * 12)), "expansion 5 at block 7; allowed 3, 4, 6"),
    (json.dumps(valid_dict(d=[3, 3, 5, 3, 3])), "depth 5 at stage 2; allowed 2, 3, 4"),
    (json.dumps(valid_dict(r=150)), "resolution 150 is not one of the space's resolutions (160..224 step 4)"),
    (json.dumps(valid_dict(r=162)), "resolution 162 is not one of"),
    (json.dumps(valid_dict(r=192.0)), "resolution 192.0 is not a positive integer"),
    (json.dumps(valid_dict(ks=[5.0] * 20)), "kernel 5.0 at block 0 is not an integer"),
    (json.dumps(valid_dict(d=[True] * 5)), "depth True at stage 0 is not an integer"),
    ('{"ks": [3, 5', "not JSON"),
    ("ks=3,e=4", "not JSON"),
    (json.dumps({k: v for k, v in valid_dict().items() if k != "r"}), "missing key 'r'"),
    (json.dumps({**valid_dict(), "w": 1.2}), "unknown key 'w'"),
    (json.dumps([valid_dict()]), "expected a JSON object, got list"),
    (json.dumps(valid_dict())[:-1] + ', "r": 192}', "key 'r' appears twice"),
    (json.dumps(valid_dict(r=float("nan"))), "NaN is not a number"),
    ("[" * 5000, "not JSON"),
])
def test_bad_strings_give_one_clear_error(text, message):
    with pytest.raises(InvalidArchitecture) as info:
        SPACE.from_str(text)
    error = str(info.value)
    assert message in error
    assert error.startswith("invalid OFA MobileNetV3 architecture ") and '{"ks":[20 kernels]' in error
    assert "\n" not in error


def test_arch_type_checks_and_normalises():
    arch = OFAArch([np.int64(3)] * 20, [4] * 20, np.array([2] * 5), np.int64(160))
    assert arch.ks == (3,) * 20 and type(arch.ks[0]) is int and type(arch.r) is int and arch.d == (2,) * 5
    assert arch == arch_of(ks=3, e=4, d=2, r=160) and hash(arch) == hash(arch_of(ks=3, e=4, d=2, r=160))
    with pytest.raises(InvalidArchitecture, match="kernel 4 at block 0"):
        arch_of(ks=4)
    with pytest.raises(InvalidArchitecture, match="wrong length: e has 3 values"):
        OFAArch((3,) * 20, (3,) * 3, (2,) * 5, 160)
    # the type holds any positive resolution (HELP's 128..156); the space checks its own set
    low = arch_of(r=128)
    with pytest.raises(InvalidArchitecture, match="resolution 128 is not one of"):
        SPACE.to_str(low)
    assert OFAMobileNetV3Space(resolutions=range(128, 225, 4)).to_str(low).endswith('"r":128}')
    with pytest.raises(InvalidArchitecture, match="is an OFAArch, got tuple"):
        SPACE.key((3,) * 20)


def test_encode_is_a_padded_chain_of_active_blocks():
    arch = OFAArch(ks=tuple([3, 5, 7, 7] * 5), e=tuple([3, 4, 6, 6] * 5), d=(2, 3, 4, 2, 3), r=192)
    graph = SPACE.encode(arch)
    n = len(active_blocks(arch))  # 14
    assert graph.num_nodes == GRAPH_NODES == 22 and graph.op_vocab == GRAPH_VOCAB and len(GRAPH_VOCAB) == 12
    names = graph.op_names()
    assert names[0] == "input" and names[-1] == "output" and names[n + 1:-1] == ["pad"] * (20 - n)
    assert names[1:4] == ["mb_k3_e3", "mb_k5_e4", "mb_k3_e3"]  # stage 0 slots 0, 1; stage 1 slot 4
    chain = [*range(n + 1), 21]
    expected = np.zeros((22, 22), dtype=np.uint8)
    expected[chain[:-1], chain[1:]] = 1
    assert np.array_equal(graph.adjacency, expected)
    attrs = graph.node_attrs
    assert attrs["kernel"][1:n + 1].tolist() == [arch.ks[s] for s in active_blocks(arch)]
    assert attrs["expansion"][1:n + 1].tolist() == [arch.e[s] for s in active_blocks(arch)]
    assert attrs["stage"][1:n + 1].tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 4, 4, 4]
    assert attrs["position"][1:n + 1].tolist() == [0, 1, 0, 1, 2, 0, 1, 2, 3, 0, 1, 0, 1, 2]
    assert attrs["slot"][1:n + 1].tolist() == active_blocks(arch)
    assert attrs["mask"].tolist() == [1.0] * (n + 1) + [0.0] * (20 - n) + [1.0]
    assert attrs["cell_flops"].shape == attrs["cell_params"].shape == (22, 1)
    assert graph.graph_attrs["resolution"] == 192.0 and graph.graph_attrs["depth"] == 14.0
    params, flops = SPACE.cost_batch([arch])
    assert graph.graph_attrs["flops"] == pytest.approx(flops[0], abs=1e-9)
    assert graph.graph_attrs["params"] == pytest.approx(params[0], abs=1e-9)
    assert attrs["cell_flops"].sum() == pytest.approx(flops[0], abs=1e-9)
    # inactive slots do not change the encoding
    other = SPACE.encode(SPACE.canonical(arch))
    assert np.array_equal(other.ops, graph.ops) and other.graph_attrs == graph.graph_attrs


def test_build_model_forward_pass():
    torch.manual_seed(0)
    arch = SPACE.sample(np.random.default_rng(3))
    model = SPACE.build_model(arch).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 160, 160))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
    assert SPACE.build_model(arch, num_classes=10).classifier.linear.out_features == 10
    assert sum(1 for _ in model.blocks) == 1 + sum(arch.d)
    assert SPACE.input_shape(arch) == (3, arch.r, arch.r)
    with pytest.raises(InvalidArchitecture, match="resolution 128 is not one of"):
        SPACE.input_shape(arch_of(r=128))


def test_build_model_equals_ofa_supernet_subnet():
    """The directly built subnet is the one OFAMobileNetV3(w1.2).get_active_subnet gives, layer for layer."""
    from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3

    supernet = OFAMobileNetV3(width_mult=1.2, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4])
    rng = np.random.default_rng(4)
    for arch in [SPACE.sample(rng) for _ in range(3)] + [arch_of(ks=7, e=6, d=4, r=224)]:
        supernet.set_active_subnet(ks=list(arch.ks), e=list(arch.e), d=list(arch.d))
        reference = supernet.get_active_subnet(preserve_weight=False)
        built = SPACE.build_model(arch)
        assert built.config == reference.config
        assert [(n, tuple(p.shape)) for n, p in built.named_parameters()] == \
            [(n, tuple(p.shape)) for n, p in reference.named_parameters()]


def _flop_counter_macs(model: torch.nn.Module, r: int) -> float:
    """torch's FLOPs / 2 of one forward pass, run on the meta device (shapes only: fast)."""
    model = copy.deepcopy(model).to("meta").eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, r, r, device="meta"))
    return counter.get_total_flops() / 2 / 1e6


def _check_cost_against_flop_counter(count: int, seed: int) -> float:
    """``cost`` (the first network) / ``measure_cost`` of the built network and the closed-form ``cost_batch``
    against torch's flop counter; the worst relative FLOPs difference."""
    rng = np.random.default_rng(seed)
    archs = [SPACE.sample(rng) for _ in range(count)]
    params, flops = SPACE.cost_batch(archs)
    worst = 0.0
    for i, arch in enumerate(archs):
        model = SPACE.build_model(arch)
        cost = SPACE.cost(arch) if i == 0 else measure_cost(model, (3, arch.r, arch.r))
        reference = _flop_counter_macs(model, arch.r)
        worst = max(worst, abs(cost.flops_m - reference) / reference)
        assert cost.params_m == pytest.approx(sum(p.numel() for p in model.parameters()) / 1e6, abs=1e-12)
        assert (params[i], flops[i]) == pytest.approx((cost.params_m, cost.flops_m), abs=1e-9)
    assert worst < 0.01
    return worst


def test_cost_agrees_with_flop_counter():
    assert _check_cost_against_flop_counter(5, seed=5) < 1e-9  # exact: both count conv and linear MACs


@pytest.mark.slow
def test_cost_agrees_with_flop_counter_on_50_networks():
    assert _check_cost_against_flop_counter(50, seed=50) < 1e-9


def test_cost_of_known_networks_and_conventions():
    smallest, largest = arch_of(ks=3, e=3, d=2, r=160), arch_of(ks=7, e=6, d=4, r=224)
    models = {arch: SPACE.build_model(arch) for arch in (smallest, largest)}
    small, large = SPACE.cost(smallest), measure_cost(models[largest], (3, 224, 224))
    # the largest subnet at 224 (the supernet's own max net, see test_build_model_equals_ofa_supernet_subnet)
    assert (large.params_m, large.flops_m) == pytest.approx((10.701632, 843.10104), abs=1e-9)
    assert small.flops_m < 200 < large.flops_m
    # the closed-form tables hold at odd resolutions too
    odd = OFAMobileNetV3Space(resolutions=(129,))
    arch = arch_of(ks=5, e=4, d=2, r=129)
    assert odd.cost_batch([arch])[1][0] == pytest.approx(odd.cost(arch).flops_m, abs=1e-9)
    assert count_macs(models[largest], (3, 224, 224)) == round(large.flops_m * 1e6)
    assert SPACE.cost_batch([largest])[1][0] == pytest.approx(large.flops_m, abs=1e-9)
    # nassearch.model_cost's convention adds BN, ReLU and biases
    house = OFAMobileNetV3Space(flops_convention="model_cost")
    for arch in (smallest, largest):
        cost = measure_cost(models[arch], (3, arch.r, arch.r), "model_cost")
        assert 1.0 < cost.flops_m / SPACE.cost(arch).flops_m < 1.1
        assert house.cost_batch([arch])[1][0] == pytest.approx(cost.flops_m, abs=1e-9)
        assert house.encode(arch).graph_attrs["flops"] == pytest.approx(cost.flops_m, abs=1e-9)
    ten = OFAMobileNetV3Space(num_classes=10)
    cost = ten.cost(smallest)
    assert ten.cost_batch([smallest])[0][0] == pytest.approx(cost.params_m, abs=1e-9)
    assert ten.cost_batch([smallest])[1][0] == pytest.approx(cost.flops_m, abs=1e-9)


def test_constructor_checks():
    for kwargs, message in [({"mutate_prob": 0.0}, "mutate_prob"), ({"resolution_mutate_prob": 1.5}, "resolution"),
                            ({"resolutions": ()}, "resolutions"), ({"num_classes": 0}, "num_classes"),
                            ({"flops_convention": "ofa"}, "^flops_convention must be one of 'macs', 'model_cost', "
                                                          "got 'ofa'$")]:
        with pytest.raises(ValueError, match=message):
            OFAMobileNetV3Space(**kwargs)
