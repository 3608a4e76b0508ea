"""Published DARTS-notation genotypes and the CIFAR-10 parameter counts their papers report.

The cells are those of the DARTS code release (``cnn/genotypes.py``: NASNet-A, AmoebaNet-A, DARTS_V1 from
first-order and DARTS_V2 from second-order search, both repeated in PC-DARTS' ``genotypes.py``) and of the
PC-DARTS release (``PC_DARTS_cifar``, searched on CIFAR-10). NASNet-A and
AmoebaNet-A have five intermediate nodes and operations outside the DARTS primitives, so they parse as
genotypes but lie outside :class:`nassearch.spaces.darts.DartsSpace`. (This module imports the notation only, so
the space can take these names: ``DartsSpace.parse("DARTS_V2")``.)
"""

from __future__ import annotations

from nassearch.validation import shown
from nassearch.errors import InvalidArchitecture
from nassearch.spaces.darts_notation import Genotype, parse_genotype

KNOWN_GENOTYPES: dict[str, Genotype] = {
    name: parse_genotype(text) for name, text in {
        "NASNet": (
            "Genotype("
            "normal=[('sep_conv_5x5', 1), ('sep_conv_3x3', 0), ('sep_conv_5x5', 0), ('sep_conv_3x3', 0),"
            " ('avg_pool_3x3', 1), ('skip_connect', 0), ('avg_pool_3x3', 0), ('avg_pool_3x3', 0),"
            " ('sep_conv_3x3', 1), ('skip_connect', 1)],"
            " normal_concat=[2, 3, 4, 5, 6],"
            " reduce=[('sep_conv_5x5', 1), ('sep_conv_7x7', 0), ('max_pool_3x3', 1), ('sep_conv_7x7', 0),"
            " ('avg_pool_3x3', 1), ('sep_conv_5x5', 0), ('skip_connect', 3), ('avg_pool_3x3', 2),"
            " ('sep_conv_3x3', 2), ('max_pool_3x3', 1)],"
            " reduce_concat=[4, 5, 6])"),
        "AmoebaNet": (
            "Genotype("
            "normal=[('avg_pool_3x3', 0), ('max_pool_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_5x5', 2),"
            " ('sep_conv_3x3', 0), ('avg_pool_3x3', 3), ('sep_conv_3x3', 1), ('skip_connect', 1),"
            " ('skip_connect', 0), ('avg_pool_3x3', 1)],"
            " normal_concat=[4, 5, 6],"
            " reduce=[('avg_pool_3x3', 0), ('sep_conv_3x3', 1), ('max_pool_3x3', 0), ('sep_conv_7x7', 2),"
            " ('sep_conv_7x7', 0), ('avg_pool_3x3', 1), ('max_pool_3x3', 0), ('max_pool_3x3', 1),"
            " ('conv_7x1_1x7', 0), ('sep_conv_3x3', 5)],"
            " reduce_concat=[3, 4, 6])"),
        "DARTS_V1": (
            "Genotype("
            "normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1),"
            " ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)],"
            " normal_concat=[2, 3, 4, 5],"
            " reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0),"
            " ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)],"
            " reduce_concat=[2, 3, 4, 5])"),
        "DARTS_V2": (
            "Genotype("
            "normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),"
            " ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)],"
            " normal_concat=[2, 3, 4, 5],"
            " reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1),"
            " ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)],"
            " reduce_concat=[2, 3, 4, 5])"),
        "PC_DARTS": (
            "Genotype("
            "normal=[('sep_conv_3x3', 1), ('skip_connect', 0), ('sep_conv_3x3', 0), ('dil_conv_3x3', 1),"
            " ('sep_conv_5x5', 0), ('sep_conv_3x3', 1), ('avg_pool_3x3', 0), ('dil_conv_3x3', 1)],"
            " normal_concat=range(2, 6),"
            " reduce=[('sep_conv_5x5', 1), ('max_pool_3x3', 0), ('sep_conv_5x5', 1), ('sep_conv_5x5', 2),"
            " ('sep_conv_3x3', 0), ('sep_conv_3x3', 3), ('sep_conv_3x3', 1), ('sep_conv_3x3', 2)],"
            " reduce_concat=range(2, 6))"),
    }.items()
}

#: Parameters (millions) of the CIFAR-10 networks as published.
PUBLISHED_PARAMS_M: dict[str, float] = {
    "NASNet": 3.3,    # DARTS paper (Liu et al., ICLR 2019), Table 1: NASNet-A + cutout
    "AmoebaNet": 3.2,  # DARTS paper, Table 1: AmoebaNet-A + cutout
    "DARTS_V1": 3.3,  # DARTS paper, Table 1: DARTS (first order) + cutout
    "DARTS_V2": 3.3,  # DARTS paper, Table 1: DARTS (second order) + cutout
    "PC_DARTS": 3.6,  # PC-DARTS paper (Xu et al., ICLR 2020), Table 1: PC-DARTS + cutout
}


def known_genotype(name: str) -> Genotype:
    """The published genotype called ``name`` (a key of KNOWN_GENOTYPES)."""
    if name not in KNOWN_GENOTYPES:
        raise InvalidArchitecture(f"unknown DARTS genotype name {shown(name)}; known: {', '.join(KNOWN_GENOTYPES)}")
    return KNOWN_GENOTYPES[name]
