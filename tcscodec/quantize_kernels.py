"""Compiled kernels of quantisation and of the auto-step noise estimate (numba).

:mod:`tcscodec.quantize` keeps the numpy versions as the reference and
calls these; each gives the reference's numbers bit for bit
(``tests/test_quantize_kernels.py``):

* :func:`quantize_into` is ``floor(y / step + 0.5)`` in float64 and the
  range check in one vectorised pass, where numpy makes three temporaries
  and two reductions;
* :func:`highpass` is the 3x3 high-pass of the spatial gain estimate,
  the nine neighbours added in the order the reference's ``sum`` adds its
  shifted copies (float addition is not associative);
* :func:`median` is numba's quickselect, the same order statistics and
  ``(a + b) / 2`` for an even count as ``numpy.median``.

All release the GIL.  numba compiles them on first use (cached on disk
where the package folder is writable).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from .errors import TcsTypeError
from .work_pool import row_bands

__all__ = ["quantize_into", "highpass", "median", "abs_deviation_median", "temporal_gain", "temporal_gain_takes"]

#: integer arrays whose values span fewer than this many take a histogram median
_INT_SPAN = 1 << 22

numba: Any
try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; quantize.py falls back to numpy
    numba = None


if numba is not None:

    @numba.njit(cache=True, nogil=True)
    def _quantize(y, step, lo, hi, out):
        bad = False
        for i in range(y.shape[0]):
            yi, oi = y[i], out[i]
            for j in range(y.shape[1]):
                q = np.floor(np.float64(yi[j]) / step + 0.5)
                # out of range (the caller raises): the value is clipped, as its
                # cast would be undefined; branch-free, so the loop vectorises
                bad |= (q < lo) | (q > hi)
                oi[j] = min(max(q, lo), hi)
        return bad

    @numba.njit(cache=True, nogil=True)
    def _prepare(y, csum, xbar, per_electron, r0, r1):
        W = y.shape[1]
        for i in range(r0, r1):
            for j in range(W):
                s = max(csum[i, j], 1.0)
                xbar[i, j] = y[i, j] / s
                per_electron[i, j] = xbar[i, j] / s

    @numba.njit(cache=True, nogil=True)
    def _box(xbar, out, r0, r1):
        """Rows ``r0 .. r1 - 1`` of ``out``: xbar minus its 3x3 mean."""
        W = xbar.shape[1]
        for i in range(r0 + 1, r1 + 1):
            for j in range(1, W - 1):
                acc = 0.0  # the reference's sum() starts at 0, then adds row by row
                for di in range(3):
                    for dj in range(3):
                        acc += xbar[i + di - 1, j + dj - 1]
                out[i - 1, j - 1] = xbar[i, j] - acc / 9

    _TOP = np.uint64(1) << np.uint64(63)

    @numba.njit(inline="always")
    def _key(x):
        # float64 -> uint64 in the same order (negatives reversed below the positives)
        bits = np.float64(x).view(np.uint64)
        return bits ^ ((np.uint64(0) - (bits >> np.uint64(63))) | _TOP)

    @numba.njit
    def _value(key):
        if key & _TOP:
            return np.uint64(key ^ _TOP).view(np.float64)
        return np.uint64(~key).view(np.float64)

    @numba.njit(inline="always")
    def _bin(hist, k):
        """The bin holding the k-th smallest, and k within it."""
        b = 0
        while k >= hist[b]:
            k -= hist[b]
            b += 1
        return b, k

    @numba.njit(cache=True, nogil=True)
    def _kth(a, k):
        """The k-th smallest value of ``a`` (0-based): a radix selection on
        the order key, 12 bits a pass (a histogram that stays in L1), each
        pass over the values left in the bin that holds it; exact, as the
        key is the value."""
        mask = np.uint64(0xFFF)
        hist = np.zeros(1 << 12, np.int64)
        for v in a:
            hist[_key(v) >> np.uint64(52)] += 1
        b, k = _bin(hist, k)
        cand = np.empty(hist[b], np.uint64)
        n = 0
        for v in a:
            key = _key(v)
            if (key >> np.uint64(52)) == np.uint64(b):
                cand[n] = key
                n += 1
        for shift in (40, 28, 16, 4, 0):
            hist[:] = 0
            for key in cand:
                hist[(key >> np.uint64(shift)) & mask] += 1
            b, k = _bin(hist, k)
            n = 0
            for key in cand:
                if ((key >> np.uint64(shift)) & mask) == np.uint64(b):
                    cand[n] = key
                    n += 1
            cand = cand[:n]
        return _value(cand[0])

    @numba.njit(cache=True, nogil=True)
    def _median(a):
        # numpy.median: the middle value, or the mean (a + b) / 2 of the two middle values
        n = a.size
        lo = _kth(a, (n - 1) // 2)
        if n % 2:
            return lo
        # the next one up: lo again if it occurs more than once below n/2, else the smallest above it
        below = 0
        hi = np.inf
        for v in a:  # branch-free: the comparisons are coin flips near the median
            below += v <= lo
            hi = min(hi, v if v > lo else np.inf)
        if below > n // 2:
            hi = lo
        return (lo + hi) / 2

    @numba.njit(cache=True, nogil=True)
    def _abs_deviation(a, centre, out):
        for i in range(a.size):
            out[i] = abs(a[i] - centre)


    #: values sampled to bracket an order statistic (a stride through the array)
    _SAMPLE = 1 << 14

    @numba.njit(cache=True, nogil=True)
    def _pair(a, k, centre, dev):
        """The k-th and (k+1)-th smallest (0-based, k + 1 < a.size) of ``a``,
        or of ``abs(a - centre)`` with ``dev``, in one pass: a strided
        sample brackets them, the values inside the bracket are collected
        and selected exactly (:func:`_kth`); ``ok`` is False when the
        bracket missed them (then the caller takes the slower way)."""
        n = a.size
        ns = min(n, _SAMPLE)
        step = n // ns
        sample = np.empty(ns, np.float64)
        for i in range(ns):
            v = a[i * step]
            sample[i] = abs(v - centre) if dev else v
        # the ranks in the sample, widened by 4 standard deviations of a sample rank
        r = k * ns // n
        g = 2 * int(np.sqrt(ns)) + 2
        lo = _kth(sample, max(0, r - g))
        hi = _kth(sample, min(ns - 1, r + g))
        below = 0
        cap = n // 16 + 1
        inside = np.empty(cap + 1, np.float64)
        m = 0
        for i in range(n):  # branch-free: half the values fall below, at random
            v = abs(a[i] - centre) if dev else a[i]
            below += v < lo
            inside[min(m, cap)] = v
            m += (v >= lo) & (v <= hi)
        if m > cap or below > k or k + 1 >= below + m:
            return False, 0.0, 0.0
        inside = inside[:m]
        return True, _kth(inside, k - below), _kth(inside, k + 1 - below)

    @numba.njit(cache=True, nogil=True)
    def _int_pair(a, lo, span, k):
        """The k-th and (k+1)-th smallest of integers ``a``, all in ``lo ..
        lo + span - 1``: a histogram and a scan."""
        hist = np.zeros(span, np.int64)
        for v in a:
            hist[np.int64(v) - lo] += 1
        first, second = _order_statistics(hist, k)
        return lo + first, lo + second

    @numba.njit(cache=True, nogil=True)
    def _order_statistics(hist, k):
        """The ``k``-th and ``k + 1``-th smallest values (0-based) of a
        histogram's bins, as bin numbers."""
        c, b = hist[0], 0
        while c <= k:
            b += 1
            c += hist[b]
        first = b
        while c <= k + 1:
            b += 1
            c += hist[b]
        return first, b


if numba is not None:

    @numba.njit(cache=True, nogil=True)
    def _difference_range(f0, f1):
        """The smallest and largest ``f1 - f0``."""
        lo, hi = np.int64(f1[0, 0]) - np.int64(f0[0, 0]), np.int64(f1[0, 0]) - np.int64(f0[0, 0])
        for i in range(f0.shape[0]):
            for j in range(f0.shape[1]):
                d = np.int64(f1[i, j]) - np.int64(f0[i, j])
                lo, hi = min(lo, d), max(hi, d)
        return lo, hi

    @numba.njit(cache=True, nogil=True)
    def _difference_histogram(f0, f1, lo, hist):
        """Count each ``f1 - f0`` (2-D integer frames) in ``hist[d - lo]``."""
        for i in range(f0.shape[0]):
            for j in range(f0.shape[1]):
                hist[np.int64(f1[i, j]) - np.int64(f0[i, j]) - lo] += 1

    @numba.njit(cache=True, nogil=True)
    def _deviation_histogram(hist, lo, med2, dev2):
        """``dev2[|2 d - med2|]`` counts of the differences ``d`` in ``hist``."""
        for b in range(hist.shape[0]):
            if hist[b]:
                dev2[abs(2 * (lo + b) - med2)] += hist[b]

    @numba.njit(cache=True, nogil=True)
    def _kept_sums(f0, f1, med2, limit2):
        """Over the pixels with ``|2 (f1 - f0) - med2| <= limit2``: their
        count, and the sums of ``f0 + f1``, of ``f1 - f0`` and of its square."""
        n = s = s1 = s2 = 0
        for i in range(f0.shape[0]):
            for j in range(f0.shape[1]):
                a, b = np.int64(f0[i, j]), np.int64(f1[i, j])
                d = b - a
                if abs(2 * d - med2) <= limit2:
                    n += 1
                    s += a + b
                    s1 += d
                    s2 += d * d
        return n, s, s1, s2


def temporal_gain_takes(f0: np.ndarray, f1: np.ndarray) -> bool:
    """Whether :func:`temporal_gain` takes these frames: numba present, two
    2-D frames of one 8- or 16-bit integer dtype and shape, two pixels or more."""
    return (numba is not None and f0.dtype.kind in "iu" and f0.dtype.itemsize <= 2 and f1.dtype == f0.dtype
            and f0.ndim == 2 and f0.shape == f1.shape and f0.size >= 2)


def temporal_gain(f0: np.ndarray, f1: np.ndarray) -> float:
    """:func:`tcscodec.quantize.temporal_gain_reference` of two 2-D frames
    of 8- or 16-bit integers in four passes over them, no temporaries:
    the differences' median and 0.999 quantile of the absolute deviation
    from a histogram (exact order statistics, interpolated as
    ``numpy.quantile`` does), then exact integer sums over the kept pixels
    (the mean and variance from them agree with numpy's to rounding)."""
    if not temporal_gain_takes(f0, f1):
        raise TcsTypeError(f"temporal_gain needs two 2-D frames of one 8- or 16-bit integer dtype, "
                           f"got {f0.dtype} {f0.shape} and {f1.dtype} {f1.shape}")
    n = f0.size
    lo, hi = (int(v) for v in _difference_range(f0, f1))
    hist = np.zeros(hi - lo + 1, np.int64)
    _difference_histogram(f0, f1, lo, hist)
    a, b = _order_statistics(hist, (n - 1) // 2)
    # twice the median: an integer either way
    med2 = 2 * (lo + a) if n % 2 else (lo + a) + (lo + b)
    dev2 = np.zeros(2 * hist.size, np.int64)  # |2 d - med2| <= 2 (hi - lo): med2 / 2 lies in lo..hi
    _deviation_histogram(hist, lo, med2, dev2)
    # numpy.quantile's linear method: its virtual index and its lerp
    q = 0.999
    virtual = n * q + (1 + q * (1 - 1 - 1)) - 1
    k = int(np.floor(virtual))
    gamma = virtual - k
    below, above = _order_statistics(dev2, k)  # 0 <= k <= n - 2: the quantile is under 1
    lower, upper = below / 2, above / 2
    diff = upper - lower
    limit = upper - diff * (1 - gamma) if gamma >= 0.5 else lower + diff * gamma
    kept, total, s1, s2 = _kept_sums(f0, f1, med2, 2 * limit)
    mean = float(np.float64(total) / kept) / 2
    if mean <= 0:
        return 0.0
    # the variance of the kept differences from exact integer sums
    variance = (int(s2) * int(kept) - int(s1) ** 2) / int(kept) ** 2
    return float(variance / (2 * mean))


def _middle(n: int, first: float, second: float) -> np.float64:
    """numpy.median from the two middle values (its mean of them for an even count)."""
    return np.float64(first) if n % 2 else np.float64((np.float64(first) + np.float64(second)) / 2)


def quantize_into(y: np.ndarray, step: float, out: np.ndarray) -> bool:
    """``out[...] = floor(y / step + 0.5)`` for a 2-D ``y``; False (and
    ``out`` incomplete) when a value does not fit ``out``'s integer dtype."""
    info = np.iinfo(out.dtype)
    # numpy compares the float values with the range's ends as floats
    return not _quantize(y, float(step), float(info.min), float(info.max), out)


def highpass(y: np.ndarray, csum: np.ndarray, run: Callable | None = None, bands: int = 1,
             also: list[Callable] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(xbar / s, hp)`` for ``s = max(csum, 1)`` and ``xbar = y / s``:
    the shot-noise variance per unit of gain, and the difference of xbar
    with its 3x3 mean on the pixels that have all 9 (float64, 2-D, at
    least 3x3).

    In ``bands`` bands of rows, each pixel computed as on one thread (the
    same numbers), on ``run`` (a pool's :meth:`~tcscodec.work_pool.WorkPool.run`)
    where given; ``also`` are more jobs run beside the first pass."""
    H, W = y.shape
    xbar = np.empty((H, W), np.float64)
    per_electron = np.empty((H, W), np.float64)
    out = np.empty((H - 2, W - 2), np.float64)
    first = [partial(_prepare, y, csum, xbar, per_electron, a, b) for a, b in row_bands((H, W), bands)]
    second = [partial(_box, xbar, out, a, b) for a, b in row_bands((H - 2, W), bands)]
    for jobs in (first + list(also or []), second):
        if run is None:
            for job in jobs:
                job()
        else:
            run(jobs)
    return per_electron, out


def median(a: np.ndarray) -> np.float64:
    """``numpy.median`` of an array (all of it), without its copies.

    Integer arrays of a narrow range (a measurement) take a histogram;
    float64 ones a sampled bracket and one pass (:func:`_pair`), else a
    radix selection over all of them."""
    flat = np.ascontiguousarray(a).reshape(-1)
    n = flat.size
    if n > 2 and flat.dtype.kind in "iu":
        lo, hi = int(flat.min()), int(flat.max())
        if hi - lo < _INT_SPAN and -(1 << 62) < lo and hi < 1 << 62:
            return _middle(n, *_int_pair(flat, lo, hi - lo + 1, (n - 1) // 2))
    flat = np.asarray(flat, np.float64)
    if n > 2:
        ok, first, second = _pair(flat, (n - 1) // 2, 0.0, False)
        if ok:
            return _middle(n, first, second)
    return np.float64(_median(flat))


def abs_deviation_median(a: np.ndarray, centre: float) -> np.float64:
    """``numpy.median(abs(a - centre))`` of a float64 array, without
    making ``abs(a - centre)`` where the sampled bracket holds."""
    flat = np.ascontiguousarray(a).reshape(-1)
    if flat.size > 2:
        ok, first, second = _pair(flat, (flat.size - 1) // 2, float(centre), True)
        if ok:
            return _middle(flat.size, first, second)
    dev = np.empty(flat.size, np.float64)
    _abs_deviation(flat, float(centre), dev)
    return np.float64(_median(dev))
