"""Image-quality metrics of the evaluation: SSIM here, PSNR from :mod:`tcscodec.metrics`.

Every method is scored over the whole movie with one data range, the
reference's ``max - min``, for every method and frame (see
:func:`tcscodec.evaluation.evaluate`).  PSNR is the package's own
(:func:`tcscodec.metrics.psnr`, re-exported here so the evaluation measures
through one module); SSIM is Wang et al. 2004 with an 11 x 11 Gaussian
window, sigma 1.5 (:func:`ssim_map`, :func:`ssim`).  Needs scipy.
"""

from __future__ import annotations

import numpy as np

from ..errors import TcsValueError
from ..metrics import psnr, psnr_per_frame

__all__ = ["ssim_map", "ssim", "psnr", "psnr_per_frame"]


def _as_stack(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise TcsValueError(f"expected an image (H x W) or a movie (T x H x W), got shape {a.shape}")
    return a


def ssim_map(estimate, reference, data_range: float | None = None, *, sigma: float = 1.5,
             truncate: float = 3.5, K1: float = 0.01, K2: float = 0.03) -> np.ndarray:
    """The SSIM index of every pixel (Wang, Bovik, Sheikh, Simoncelli 2004).

    Local statistics are weighted by a Gaussian window of standard deviation
    ``sigma`` cut at ``truncate * sigma`` (11 x 11 for the defaults, the
    paper's window), normalised to sum 1; no sample-covariance correction
    (as in the paper).  ``C1 = (K1 L)^2``, ``C2 = (K2 L)^2`` with ``L`` the
    data range (default ``reference.max() - reference.min()``).

    Movies (T x H x W) are filtered frame by frame (never across time).
    Returns the map cropped by the window radius on each side, where the
    window lies inside the image (as scikit-image does), shape
    ``(T, H - 2r, W - 2r)`` (or ``(H - 2r, W - 2r)`` for an image).
    """
    from scipy.ndimage import gaussian_filter

    est, ref = _as_stack(estimate), _as_stack(reference)
    if est.shape != ref.shape:
        raise TcsValueError(f"shapes differ: {est.shape} vs {ref.shape}")
    L = float(ref.max() - ref.min()) if data_range is None else float(data_range)
    if not L > 0:
        raise TcsValueError("data range must be > 0 (give data_range for a constant reference)")
    C1, C2 = (K1 * L) ** 2, (K2 * L) ** 2
    r = int(truncate * sigma + 0.5)
    out = []
    # In chunks of frames: five filtered float64 stacks at once otherwise.
    for i in range(0, len(ref), 8):
        x, y = est[i:i + 8], ref[i:i + 8]

        def f(a):
            return gaussian_filter(a, sigma=(0, sigma, sigma), truncate=truncate, mode="reflect")

        mx, my = f(x), f(y)
        sxx = f(x * x) - mx * mx
        syy = f(y * y) - my * my
        sxy = f(x * y) - mx * my
        s = ((2 * mx * my + C1) * (2 * sxy + C2)) / ((mx * mx + my * my + C1) * (sxx + syy + C2))
        if s.shape[1] > 2 * r and s.shape[2] > 2 * r:
            s = s[:, r:-r, r:-r]
        out.append(s)
    s = np.concatenate(out)
    return s[0] if np.ndim(reference) == 2 else s


def ssim(estimate, reference, data_range: float | None = None, *, per_frame: bool = False, **kw):
    """Mean SSIM (see :func:`ssim_map`): of each frame, then over frames.

    ``per_frame=True`` returns the array of per-frame values instead.
    """
    m = ssim_map(estimate, reference, data_range, **kw)
    if m.ndim == 2:
        return float(m.mean())
    v = m.reshape(len(m), -1).mean(1)
    return v if per_frame else float(v.mean())

