"""NAR-Former's real-number tokenizer: scalars (operation indices, node positions, layer attributes) to
fixed-length sinusoidal codes.

A value p becomes [sin(pi f_1 p), cos(pi f_1 p), ..., sin(pi f_L p), cos(pi f_L p)] with L = length / 2.
The paper writes the frequencies as powers of two, 2^0 .. 2^(L-1); with integer inputs those make every
sine 0 and every cosine +-1, so the authors' implementation spaces them linearly between 2^0 and
2^(L-1) instead, and so do we. Codes are computed in float64 (large frequencies times large positions
lose all precision in float32) and returned as float32. NaN marks an absent value and codes to zeros
("padded with zeros where absent").
"""

from __future__ import annotations

import numpy as np


def frequencies(length: int) -> np.ndarray:
    """The L = length / 2 frequencies of a code of ``length`` values."""
    if length < 2 or length % 2:
        raise ValueError(f"code length must be an even number >= 2, got {length}")
    half = length // 2
    return np.linspace(1.0, 2.0 ** (half - 1), half)


def real_number_encoding(values: np.ndarray | float, length: int) -> np.ndarray:
    """Sinusoidal code of each value: float32 array (*values.shape, length); NaN values give zeros."""
    values = np.asarray(values, dtype=np.float64)
    angles = np.pi * values[..., None] * frequencies(length)
    code = np.stack([np.sin(angles), np.cos(angles)], axis=-1).reshape(*values.shape, length)
    return np.where(np.isnan(values)[..., None], 0.0, code).astype(np.float32)


LOG_SCALE = 32.0


def log_scale(values: np.ndarray) -> np.ndarray:
    """sign(x) log2(1 + |x|) / 32, NaN kept: brings sizes, channels, FLOPs ... into about [-1, 1]."""
    values = np.asarray(values, dtype=np.float64)
    return np.sign(values) * np.log2(1.0 + np.abs(values)) / LOG_SCALE


def encode_values(values: np.ndarray, length: int) -> np.ndarray:
    """``real_number_encoding`` of an array, computing the code of each distinct value once (operation
    indices, positions and layer attributes repeat a lot): float32 (*values.shape, length)."""
    values = np.asarray(values, dtype=np.float64)
    distinct, inverse = np.unique(values, return_inverse=True)
    return real_number_encoding(distinct, length)[inverse.reshape(values.shape)]
