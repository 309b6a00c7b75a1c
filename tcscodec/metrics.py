"""Image-quality numbers used by the CLI report, ``tcscodec eval`` and benches."""

from __future__ import annotations

import numpy as np

from .errors import TcsValueError

__all__ = ["psnr", "psnr_per_frame"]


def psnr(estimate, reference, data_range: float | None = None) -> float:
    """PSNR in dB of ``estimate`` against ``reference`` over all their pixels.

    ``data_range`` defaults to ``reference.max() - reference.min()``.
    """
    ref = np.asarray(reference, np.float64)
    est = np.asarray(estimate, np.float64)
    if ref.shape != est.shape:
        raise TcsValueError(f"shapes differ: {est.shape} vs {ref.shape}")
    peak = float(ref.max() - ref.min()) if data_range is None else float(data_range)
    mse = float(np.mean((est - ref) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def psnr_per_frame(estimate, reference, data_range: float | None = None) -> np.ndarray:
    """PSNR of each frame (first axis), with one data range for the movie."""
    ref = np.asarray(reference, np.float64)
    if len(estimate) != len(ref):
        raise TcsValueError(f"{len(estimate)} frames vs {len(ref)} in the reference")
    peak = float(ref.max() - ref.min()) if data_range is None else float(data_range)
    return np.array([psnr(e, r, peak) for e, r in zip(estimate, ref, strict=True)])
