"""DARTS' CIFAR network: operations, cells, drop path, shapes, auxiliary head and parameter counts."""

import pytest
import torch

from nassearch.spaces.darts_notation import Genotype
from nassearch.spaces.darts_genotypes import KNOWN_GENOTYPES, PUBLISHED_PARAMS_M
from nassearch.spaces.darts_network import (OPERATIONS, AuxiliaryHeadCIFAR, Cell, FactorizedReduce, NetworkCIFAR, SepConv,
                                  Zero, drop_path)

DARTS_V2 = KNOWN_GENOTYPES["DARTS_V2"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def images(batch=2, size=32):
    return torch.randn(batch, 3, size, size)


# --------------------------------------------------------------------------------------- operations


@pytest.mark.parametrize("name", sorted(OPERATIONS))
@pytest.mark.parametrize("stride", [1, 2])
def test_every_operation_keeps_channels_and_applies_its_stride(name, stride):
    out = OPERATIONS[name](8, stride)(torch.randn(2, 8, 16, 16))
    assert out.shape == (2, 8, 16 // stride, 16 // stride)


def test_zero_is_zero_of_the_strided_shape():
    out = Zero(2)(torch.randn(2, 4, 8, 8))
    assert out.shape == (2, 4, 4, 4) and not out.any()


def test_sep_conv_is_two_relu_dw_pw_bn_blocks():
    layers = [type(m).__name__ for m in SepConv(8, 16, 3, 2, 1).modules()
              if not isinstance(m, (SepConv, torch.nn.Sequential))]
    assert layers == ["ReLU", "Conv2d", "Conv2d", "BatchNorm2d"] * 2
    convs = [m for m in SepConv(8, 16, 3, 2, 1).modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.groups, c.stride, c.out_channels) for c in convs] == [(8, (2, 2), 8), (1, (1, 1), 8),
                                                                     (8, (1, 1), 8), (1, (1, 1), 16)]


def test_factorized_reduce_halves_the_resolution_and_needs_even_channels():
    assert FactorizedReduce(6, 8)(torch.randn(2, 6, 16, 16)).shape == (2, 8, 8, 8)
    with pytest.raises(ValueError, match="even number of output channels, got 7"):
        FactorizedReduce(6, 7)


def test_avg_pool_excludes_padding():
    out = OPERATIONS["avg_pool_3x3"](1, 1)(torch.ones(1, 1, 4, 4))
    assert torch.allclose(out, torch.ones_like(out))


def test_all_batchnorms_are_affine():
    model = NetworkCIFAR(DARTS_V2, C=8, layers=5)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.affine for m in norms)


# --------------------------------------------------------------------------------------- drop path


def test_drop_path_with_zero_probability_is_identity():
    x = torch.randn(4, 3, 2, 2)
    assert drop_path(x, 0.0) is x


def test_drop_path_zeroes_whole_samples_and_rescales_survivors():
    x = torch.randn(64, 3, 2, 2)
    out = drop_path(x, 0.25, generator=torch.Generator().manual_seed(0))
    dropped = (out == 0).flatten(1).all(dim=1)
    kept = ~dropped
    assert torch.allclose(out[kept], x[kept] / 0.75)
    assert 4 <= int(dropped.sum()) <= 28
    again = drop_path(x, 0.25, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_drop_path_rejects_probabilities_outside_0_1():
    with pytest.raises(ValueError, match=r"drop_prob must lie in \[0, 1\), got 1.0"):
        drop_path(torch.ones(2, 1), 1.0)


def test_cell_drop_path_spares_identity_operations():
    identity_only = Genotype(normal=(("skip_connect", 0), ("skip_connect", 1)) * 2, normal_concat=(2, 3),
                             reduce=DARTS_V2.reduce, reduce_concat=DARTS_V2.reduce_concat)
    x = torch.randn(8, 8, 8, 8)
    cell = Cell(identity_only, 8, 8, 4, reduction=False, reduction_prev=False).train()
    assert torch.equal(cell(x, x, 0.9), cell(x, x, 0.9))
    cell = Cell(DARTS_V2, 8, 8, 4, reduction=False, reduction_prev=False).train()
    assert not torch.equal(cell(x, x, 0.5), cell(x, x, 0.5))
    assert torch.equal(cell.eval()(x, x, 0.5), cell(x, x, 0.5))


def test_network_forwards_drop_path_prob_to_its_cells():
    model = NetworkCIFAR(DARTS_V2, C=8, layers=5, auxiliary=False).train()
    x = images()
    assert torch.equal(model(x)[0], model(x)[0])
    model.drop_path_prob = 0.3
    assert not torch.equal(model(x)[0], model(x)[0])


# --------------------------------------------------------------------------------------- network


def test_forward_shapes_and_auxiliary_logits_only_in_training():
    model = NetworkCIFAR(DARTS_V2, C=8, num_classes=10, layers=5, auxiliary=True)
    logits, aux = model.train()(images())
    assert logits.shape == (2, 10) and aux.shape == (2, 10)
    logits, aux = model.eval()(images())
    assert logits.shape == (2, 10) and aux is None
    logits, aux = NetworkCIFAR(DARTS_V2, C=8, layers=5, auxiliary=False).train()(images())
    assert logits.shape == (2, 10) and aux is None


@pytest.mark.parametrize("layers, reductions", [(5, [1, 3]), (8, [2, 5]), (20, [6, 13])])
def test_reduction_cells_sit_at_one_and_two_thirds(layers, reductions):
    model = NetworkCIFAR(DARTS_V2, C=4, layers=layers, auxiliary=False)
    assert [i for i, cell in enumerate(model.cells) if cell.reduction] == reductions
    assert [i for i, cell in enumerate(model.cells) if isinstance(cell.preprocess0, FactorizedReduce)] == \
        [r + 1 for r in reductions]


def test_resolution_and_channels_per_cell():
    model = NetworkCIFAR(DARTS_V2, C=8, layers=5).eval()
    shapes = []
    for cell in model.cells:
        cell.register_forward_hook(lambda m, i, out: shapes.append(tuple(out.shape[1:])))
    model(images())
    assert shapes == [(32, 32, 32), (64, 16, 16), (64, 16, 16), (128, 8, 8), (128, 8, 8)]
    assert model.stem[0].out_channels == 24
    assert isinstance(model.auxiliary_head, AuxiliaryHeadCIFAR)
    assert model.auxiliary_head.features[2].in_channels == 128


@pytest.mark.parametrize("name", ["NASNet", "AmoebaNet"])
def test_five_node_literature_cells_build_and_run(name):
    model = NetworkCIFAR(KNOWN_GENOTYPES[name], C=8, layers=5).train()
    logits, aux = model(images())
    assert logits.shape == (2, 10) and aux.shape == (2, 10)
    widths = [len(c) for c in (KNOWN_GENOTYPES[name].normal_concat, KNOWN_GENOTYPES[name].reduce_concat)]
    assert model.cells[0].out_channels == widths[0] * 8 and model.cells[1].out_channels == widths[1] * 16


def test_num_params_excludes_the_auxiliary_head():
    model = NetworkCIFAR(DARTS_V2, C=8, layers=5)
    aux = sum(p.numel() for p in model.auxiliary_head.parameters())
    assert aux > 0
    assert model.num_params() == model.num_params(exclude_auxiliary=False) - aux
    assert model.num_params() == NetworkCIFAR(DARTS_V2, C=8, layers=5, auxiliary=False).num_params()


#: Our count (20 cells, 36 channels, auxiliary head excluded) for the genotypes whose published count
#: does not describe this network. DARTS_V1: the DARTS paper's Table 1 gives 3.3M for "DARTS (first order)",
#: but the first-order cell of the DARTS code release builds 3.169M in DARTS' own NetworkCIFAR (its normal
#: cell has three parameter-free skip connections where the second-order cell has two and a dil_conv_3x3;
#: our builder matches the second-order count to the parameter, 3,349,342). NASNet-A (3.3M) and
#: AmoebaNet-A (3.2M) are the counts of those papers' own networks (NASNet-A 6@768, AmoebaNet-A N=6 F=36),
#: which DARTS copied; the same cells in DARTS' network at 20 cells / 36 channels have other counts.
MEASURED_PARAMS_M = {"DARTS_V1": 3.169, "NASNet": 3.831, "AmoebaNet": 3.145}


@pytest.mark.parametrize("name", sorted(KNOWN_GENOTYPES))
def test_param_counts_at_20_cells_36_channels(name):
    params_m = NetworkCIFAR(KNOWN_GENOTYPES[name], C=36, layers=20).num_params() / 1e6
    if name in MEASURED_PARAMS_M:
        assert round(params_m, 3) == MEASURED_PARAMS_M[name]
    else:
        assert abs(params_m - PUBLISHED_PARAMS_M[name]) <= 0.05
    if name == "DARTS_V2":
        assert round(params_m * 1e6) == 3_349_342
