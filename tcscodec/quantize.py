"""Quantisation of measurements (the header's ``quant_step``).

With ``quant_step == 1`` the stored measurement is Y itself (lossless).  With
a larger step the writer stores ``q = floor(Y / step + 0.5)`` and readers
return ``q * step``: the error is at most ``step / 2`` per pixel, which is
invisible next to the shot noise of a sum of B frames when the step is
chosen below it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["stored_dtype", "quantize", "dequantize", "noise_std", "noise_step"]


def stored_dtype(measurement_dtype, quant_step: float) -> np.dtype:
    """The dtype records hold for a measurement dtype and quantisation step."""
    mdtype = np.dtype(measurement_dtype)
    if quant_step == 1 or mdtype.kind != "f":
        return mdtype
    return np.dtype(np.int64)  # float measurements become signed integers


def quantize(y: np.ndarray, quant_step: float, dtype) -> np.ndarray:
    """Stored form of measurement ``y``."""
    if quant_step == 1:
        return y.astype(dtype, copy=False)
    return np.floor(y / quant_step + 0.5).astype(dtype)


def dequantize(q: np.ndarray, quant_step: float) -> np.ndarray:
    """Measurement in the input's units from its stored form.

    Lossless files keep their exact integer dtype; quantised ones give float64.
    """
    if quant_step == 1:
        return q
    return q.astype(np.float64) * quant_step


def noise_std(y: np.ndarray, csum: np.ndarray) -> float:
    """Typical shot-noise std of a measurement ``y`` (H x W), from the data.

    Shot noise of ``Y = sum_b C_b X_b`` has variance ``g * Y`` for a detector
    gain of ``g`` units per electron.  The gain is estimated from
    ``xbar = Y / sum C``: the robust (MAD) variance of its difference with the
    3x3 local mean is ``g * mean(xbar / sum C)`` for white noise (texture and
    motion only raise the estimate).  Returns ``sqrt(g * median(Y))``.
    """
    y = np.asarray(y, np.float64)
    csum = np.asarray(csum, np.float64)
    if min(y.shape) < 3:
        return 0.0
    xbar = y / np.maximum(csum, 1)
    pad = np.pad(xbar, 1, mode="reflect")
    local = sum(pad[i:i + y.shape[0], j:j + y.shape[1]] for i in range(3) for j in range(3)) / 9
    hp = (xbar - local)[1:-1, 1:-1]
    var_hp = (1.4826 * np.median(np.abs(hp - np.median(hp)))) ** 2 * 9 / 8
    per_electron = float(np.mean(xbar / np.maximum(csum, 1)))
    if per_electron <= 0 or var_hp <= 0:
        return 0.0
    gain = var_hp / per_electron
    return float(np.sqrt(gain * max(float(np.median(y)), 0.0)))


def noise_step(y: np.ndarray, csum_or_n, fraction: float = 1.0) -> float:
    """A quantisation step of ``fraction`` times :func:`noise_std` of ``y``.

    ``csum_or_n`` is the per-pixel mask sum, or the number of frames n (then
    n/2, the mean mask sum, is used).
    """
    csum = np.full(np.shape(y), csum_or_n / 2) if np.isscalar(csum_or_n) else csum_or_n
    return fraction * noise_std(y, csum)
