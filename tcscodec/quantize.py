"""Quantisation of measurements (the header's ``quant_step``).

With ``quant_step == 1`` the stored measurement is Y itself (lossless).  With
a larger step the writer stores ``q = floor(Y / step + 0.5)`` and readers
return ``q * step``: the error is at most ``step / 2`` per pixel, which is
invisible next to the shot noise of a sum of B frames when the step is
chosen below it.

The numpy functions here are the reference; :func:`quantize` and the
noise estimate run the compiled kernels of :mod:`tcscodec.quantize_kernels`,
which give the same numbers (``tests/test_quantize_kernels.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from . import quantize_kernels
from .errors import TcsValueError
from .work_pool import row_bands

__all__ = ["stored_dtype", "quantize", "quantize_reference", "dequantize", "noise_std", "noise_rows", "noise_step",
           "spatial_gain", "temporal_gain", "temporal_gain_reference", "dose_estimate", "cast_frames"]


#: measurements of more pixels than this estimate their noise from bands of
#: rows holding about this many (:func:`noise_rows`)
NOISE_SAMPLE_PIXELS = 1 << 17
#: how many bands of rows, spread from top to bottom
NOISE_SAMPLE_BANDS = 16


def stored_dtype(measurement_dtype, quant_step: float) -> np.dtype:
    """The dtype records hold for a measurement dtype and quantisation step."""
    mdtype = np.dtype(measurement_dtype)
    if quant_step == 1 or mdtype.kind != "f":
        return mdtype
    return np.dtype(np.int64)  # float measurements become signed integers


def quantize(y: np.ndarray, quant_step: float, dtype, run: Callable | None = None, bands: int = 1) -> np.ndarray:
    """Stored form of measurement ``y``: :func:`quantize_reference`, in one
    compiled pass per band of rows.

    ``run`` executes a list of callables and waits for them (the writer's
    :meth:`tcscodec.work_pool.WorkPool.run`), ``bands`` of them at most;
    without it they run here, one after the other.
    """
    dtype = np.dtype(dtype)
    if quant_step == 1 or y.ndim != 2 or dtype.kind not in "iu" or quantize_kernels.numba is None:
        return quantize_reference(y, quant_step, dtype)
    out = np.empty(y.shape, dtype)
    jobs = [lambda a=a, b=b: quantize_kernels.quantize_into(y[a:b], quant_step, out[a:b])
            for a, b in row_bands(y.shape, bands)]
    fits = [job() for job in jobs] if run is None else run(jobs)
    if not all(fits):
        return quantize_reference(y, quant_step, dtype)  # raises its error
    return out


def quantize_reference(y: np.ndarray, quant_step: float, dtype) -> np.ndarray:
    """Stored form of measurement ``y`` (numpy: the specification)."""
    if quant_step == 1:
        return y.astype(dtype, copy=False)
    q = np.floor(y / quant_step + 0.5)
    info = np.iinfo(dtype)
    if q.size and (q.min() < info.min or q.max() > info.max):
        raise TcsValueError(f"measurement / quant_step {quant_step:g} does not fit the stored dtype "
                            f"{np.dtype(dtype).name} (values up to {np.max(np.abs(y)):g}): use a larger step")
    return q.astype(dtype)


def dequantize(q: np.ndarray, quant_step: float) -> np.ndarray:
    """Measurement in the input's units from its stored form.

    Lossless files keep their exact integer dtype; quantised ones give float64.
    """
    if quant_step == 1:
        return q
    return q.astype(np.float64) * quant_step


def spatial_gain(y: np.ndarray, csum: np.ndarray, run: Callable | None = None, bands: int = 1,
                 also: list[Callable] | None = None, rows: list[tuple[int, int]] | None = None) -> float:
    """:func:`spatial_gain_reference` with the compiled high-pass and medians
    (the high-pass in ``bands`` bands of rows on ``run``, with the jobs
    ``also`` beside them, as :func:`tcscodec.quantize_kernels.highpass`).

    ``rows``: ``(start, stop)`` ranges of rows (at least 3 each) to
    estimate from instead of the whole measurement, each high-passed on its
    own and the statistics taken over all of them (:func:`noise_rows`);
    then the ranges are the jobs run on ``run``."""
    compiled = y.ndim == 2 and min(y.shape) >= 3 and quantize_kernels.numba is not None
    if rows is None:
        if not compiled:
            for job in also or []:
                job()
            return spatial_gain_reference(np.asarray(y, np.float64), np.asarray(csum, np.float64))
        per_pixel, hp = quantize_kernels.highpass(y, csum, run, bands, also)
        return _gain(float(np.mean(per_pixel)), hp, compiled)
    parts: list = [None] * len(rows)

    def band(i: int, a: int, b: int) -> None:
        if compiled:
            parts[i] = quantize_kernels.highpass(y[a:b], csum[a:b])
        else:
            parts[i] = _highpass_reference(np.asarray(y[a:b], np.float64), np.asarray(csum[a:b], np.float64))

    jobs = [partial(band, i, a, b) for i, (a, b) in enumerate(rows)] + list(also or [])
    if run is None:
        for job in jobs:
            job()
    else:
        run(jobs)
    per_electron = float(np.mean(np.concatenate([p.ravel() for p, _ in parts])))
    return _gain(per_electron, np.concatenate([h.ravel() for _, h in parts]), compiled)


def _gain(per_electron: float, hp: np.ndarray, compiled: bool) -> float:
    """The gain from the mean shot-noise variance per unit of gain and the high-pass."""
    if compiled:
        mad = quantize_kernels.abs_deviation_median(hp, quantize_kernels.median(hp))
    else:
        mad = np.median(np.abs(hp - np.median(hp)))
    var_hp = (1.4826 * mad) ** 2 * 9 / 8
    if per_electron <= 0 or var_hp <= 0:
        return 0.0
    return var_hp / per_electron


def _highpass_reference(y: np.ndarray, csum: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(xbar / s, hp)`` of :func:`tcscodec.quantize_kernels.highpass` in numpy."""
    xbar = y / np.maximum(csum, 1)
    pad = np.pad(xbar, 1, mode="reflect")
    local = sum(pad[i:i + y.shape[0], j:j + y.shape[1]] for i in range(3) for j in range(3)) / 9
    return xbar / np.maximum(csum, 1), (xbar - local)[1:-1, 1:-1]


def spatial_gain_reference(y: np.ndarray, csum: np.ndarray) -> float:
    """Detector gain (variance per unit of signal) from one measurement.

    ``xbar = Y / sum C`` has shot-noise variance ``g * xbar / sum C``; the
    robust (MAD) variance of its difference with the 3x3 local mean gives
    ``g * mean(xbar / sum C)`` for white noise.  Texture, and motion within
    the group (which the masks turn into fine structure), only raise it.
    """
    if min(y.shape) < 3:
        return 0.0
    per_pixel, hp = _highpass_reference(y, csum)
    return _gain(float(np.mean(per_pixel)), hp, False)


def noise_rows(shape: tuple[int, int]) -> list[tuple[int, int]] | None:
    """The rows :func:`noise_std` estimates from: for a measurement of
    more than :data:`NOISE_SAMPLE_PIXELS` pixels, :data:`NOISE_SAMPLE_BANDS`
    bands of rows spread evenly from top to bottom holding about that many
    pixels between them; None (all rows) for a smaller one.  131 k pixels
    fix the noise's MAD to ~0.4 %, far inside the odd whole steps an
    integer movie's step is rounded to (on real micrographs scaled to
    2048²: the estimate -0.5 to +2.3 % off the whole frame's, the step the
    same in 21 cases), at a small fraction of a large frame's cost."""
    H, W = int(shape[0]), int(shape[1])
    if H * W <= NOISE_SAMPLE_PIXELS:
        return None
    k = NOISE_SAMPLE_BANDS
    # a band's high-pass loses its first and last rows and columns
    rows = -(-NOISE_SAMPLE_PIXELS // (max(W - 2, 1) * k)) + 2
    if k * rows >= H:
        return None
    return [(int(a), int(a) + rows) for a in np.linspace(0, H - rows, k).round()]


def dose_estimate(y: np.ndarray, csum: np.ndarray) -> float:
    """Electrons per pixel per frame that measurement ``y`` implies.

    Shot noise ties a detector's units to electrons: with ``g`` units per
    electron (:func:`spatial_gain`), a mean frame ``Y / sum C`` of ``m``
    units holds ``m / g`` electrons per pixel.  The figure is Poisson-
    equivalent (what a counting detector would have recorded) and errs low:
    texture and motion within the group raise the gain estimate (by up to
    3x on sharp lattice images).  ``inf`` where no noise is seen (noise-free
    or saturated data).
    """
    y = np.asarray(y, np.float64)
    csum = np.asarray(csum, np.float64)
    gain = spatial_gain(y, csum)
    if gain <= 0:
        return float("inf")
    return float(np.mean(y / np.maximum(csum, 1))) / gain


def temporal_gain(frame0, frame1) -> float:
    """:func:`temporal_gain_reference`, compiled for 2-D frames of 8- or
    16-bit integers (:func:`tcscodec.quantize_kernels.temporal_gain`: the
    same numbers to rounding, ~20x faster on a 512² probe)."""
    f0, f1 = np.asarray(frame0), np.asarray(frame1)
    if quantize_kernels.temporal_gain_takes(f0, f1):
        return quantize_kernels.temporal_gain(f0, f1)
    return temporal_gain_reference(f0, f1)


def temporal_gain_reference(frame0, frame1) -> float:
    """Detector gain from two consecutive raw frames.

    Their difference has variance ``2 g * mean`` where the scene holds still;
    motion only raises it.  The plain variance is used rather than the MAD,
    which is badly biased for sparse counts (0, 1, 2 electrons); the 0.1 %
    largest differences (hot pixels, defects, sudden jumps) are left out.
    Returns 0 when the frames carry no signal.
    """
    f0 = np.asarray(frame0, np.float64)
    f1 = np.asarray(frame1, np.float64)
    d = f1 - f0
    dev = np.abs(d - np.median(d))
    keep = dev <= np.quantile(dev, 0.999)
    mean = float(np.mean((f0 + f1)[keep])) / 2
    if mean <= 0:
        return 0.0
    return float(np.var(d[keep])) / (2 * mean)


def noise_std(y: np.ndarray, csum: np.ndarray, frames=None, run: Callable | None = None, bands: int = 1) -> float:
    """Typical shot-noise std of a measurement ``y`` (H x W), from the data.

    Shot noise of ``Y = sum_b C_b X_b`` has variance ``g * Y`` for a detector
    gain of ``g`` units per electron; returns ``sqrt(g * median(Y))``.  The
    gain is estimated from ``y`` itself (:func:`spatial_gain`) and, when
    two consecutive raw ``frames`` of the group are given, also from their
    difference (:func:`temporal_gain`).  Both estimates can only be raised
    by texture or motion, so the smaller one is used: the spatial one alone
    overestimates the noise of sharp lattice images by up to 1.7x.

    A measurement of more than :data:`NOISE_SAMPLE_PIXELS` pixels is
    estimated from bands of rows spread over it (:func:`noise_rows`): on
    2048² the estimate then reads 5.5 % of the measurement, on 4096² 2 %.

    ``run`` and ``bands``: the high-pass in bands of rows on a pool (the
    writer's), the temporal estimate and the median beside them; the same
    numbers as without.
    """
    y, csum = np.asarray(y), np.asarray(csum)
    if quantize_kernels.numba is None or y.ndim != 2 or y.dtype.kind not in "uif" or csum.dtype.kind not in "uif":
        y, csum = np.asarray(y, np.float64), np.asarray(csum, np.float64)
    # the kernels read integer measurements and mask sums as they are (each
    # value converted to float64 as it is read: the same numbers, no copies)
    rows = noise_rows(y.shape) if y.ndim == 2 else None
    sample = y if rows is None else np.concatenate([y[a:b] for a, b in rows])
    found: dict[str, float] = {}

    def others() -> None:
        if frames is not None:
            found["temporal"] = temporal_gain(*frames)
        found["centre"] = float(quantize_kernels.median(sample) if quantize_kernels.numba is not None
                                else np.median(sample))

    gain = spatial_gain(y, csum, run, bands, also=[others], rows=rows)
    if frames is not None:
        gain = min(gain, found["temporal"])
    if gain <= 0:
        return 0.0
    return float(np.sqrt(gain * max(found["centre"], 0.0)))


def noise_step(y: np.ndarray, csum_or_n: np.ndarray | float, fraction: float = 1.0) -> float:
    """A quantisation step of ``fraction`` times :func:`noise_std` of ``y``.

    ``csum_or_n`` is the per-pixel mask sum, or the number of frames n (then
    n/2, the mean mask sum, is used).
    """
    if isinstance(csum_or_n, (int, float, np.integer, np.floating)):
        csum = np.full(np.shape(y), csum_or_n / 2)
    else:
        csum = np.asarray(csum_or_n)
    return fraction * noise_std(y, csum)


def cast_frames(frames: np.ndarray, dtype) -> np.ndarray:
    """Decoded float frames in ``dtype``: integers rounded to the nearest
    and clipped to the dtype's range (a decoder's denoised values can
    overshoot it), NaN (a damaged group skipped) as 0; floats converted as
    they are."""
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        frames = np.clip(np.nan_to_num(np.rint(frames), nan=0.0), info.min, info.max)
    return frames.astype(dtype, copy=False)
