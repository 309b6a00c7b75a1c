"""Compiled kernels of quantisation and of the auto-step noise estimate (numba).

:mod:`tcscodec.quantize` keeps the numpy versions as the reference and
calls these; each gives the reference's numbers bit for bit
(``tests/test_quantize_kernels.py``):

* :func:`quantize_into` is ``floor(y / step + 0.5)`` in float64 and the
  range check in one pass, where numpy makes three temporaries and two
  reductions;
* :func:`highpass` is the 3x3 high-pass of the spatial gain estimate,
  the nine neighbours added in the order the reference's ``sum`` adds its
  shifted copies (float addition is not associative);
* :func:`median` is numba's quickselect, the same order statistics and
  ``(a + b) / 2`` for an even count as ``numpy.median``.

All release the GIL.  numba compiles them on first use (cached on disk
where the package folder is writable).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["quantize_into", "highpass", "median", "abs_deviation_median"]

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
            for j in range(y.shape[1]):
                q = np.floor(np.float64(y[i, j]) / step + 0.5)
                # out of range (the caller raises): nothing is cast, as the cast would be undefined
                if q < lo or q > hi:
                    bad = True
                else:
                    out[i, j] = q
        return bad

    @numba.njit(cache=True, nogil=True)
    def _highpass(y, csum, xbar, per_electron, out):
        H, W = y.shape
        for i in range(H):
            for j in range(W):
                s = max(csum[i, j], 1.0)
                xbar[i, j] = y[i, j] / s
                per_electron[i, j] = xbar[i, j] / s
        for i in range(1, H - 1):
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


def quantize_into(y: np.ndarray, step: float, out: np.ndarray) -> bool:
    """``out[...] = floor(y / step + 0.5)`` for a 2-D ``y``; False (and
    ``out`` incomplete) when a value does not fit ``out``'s integer dtype."""
    info = np.iinfo(out.dtype)
    # numpy compares the float values with the range's ends as floats
    return not _quantize(y, float(step), float(info.min), float(info.max), out)


def highpass(y: np.ndarray, csum: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(xbar / s, hp)`` for ``s = max(csum, 1)`` and ``xbar = y / s``:
    the shot-noise variance per unit of gain, and the difference of xbar
    with its 3x3 mean on the pixels that have all 9 (float64, 2-D, at
    least 3x3)."""
    H, W = y.shape
    xbar = np.empty((H, W), np.float64)
    per_electron = np.empty((H, W), np.float64)
    out = np.empty((H - 2, W - 2), np.float64)
    _highpass(y, csum, xbar, per_electron, out)
    return per_electron, out


def median(a: np.ndarray) -> np.float64:
    """``numpy.median`` of a float64 array (all of it), without its copies."""
    return np.float64(_median(np.ascontiguousarray(a).reshape(-1)))


def abs_deviation_median(a: np.ndarray, centre: float) -> np.float64:
    """``numpy.median(abs(a - centre))``."""
    dev = np.empty(a.size, np.float64)
    _abs_deviation(np.ascontiguousarray(a).reshape(-1), float(centre), dev)
    return np.float64(_median(dev))
