"""Quantisation of measurements (the header's ``quant_step``).

With ``quant_step == 1`` the stored measurement is Y itself (lossless).  With
a larger step the writer stores ``q = floor(Y / step + 0.5)`` and readers
return ``q * step``: the error is at most ``step / 2`` per pixel, which is
invisible next to the shot noise of a sum of B frames when the step is
chosen below it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["stored_dtype", "quantize", "dequantize"]


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
