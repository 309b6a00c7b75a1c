"""Compiled CPU kernels of the encoder (numba).

:func:`masked_accumulate` is the encoder's whole work per frame: ``acc +=
C_b * frame`` for one frame, reading the mask straight from its bit-packed
words (64 pixels a word), in one pass over the frame with no temporaries,
row bands spread over numba's threads, or (:func:`accumulate_rows`) over
the caller's.  numpy needs three passes and two
temporaries for the same sum (unpack the mask bits, multiply in the frame's
dtype, a widening add), which made it compute-bound.

The sums are the numpy reference's exactly: integer additions are exact in
the measurement dtype, and float32 frames are added in float64 in frame
order, pixel by pixel, as numpy does (``tests/test_cpu_kernels.py``
compares the two on random inputs of every dtype, size and B).

numba compiles each kernel for each dtype on first use (about a second;
cached on disk where the package folder is writable).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["masked_accumulate", "accumulate_rows", "binned_sum", "change_statistics", "set_threads", "mask_words_all",
           "mask_sum"]

numba: Any
try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; numpy keeps working without it
    numba = None


if numba is not None:

    @numba.njit(inline="always")
    def _add_row(a, f, wr, W, first):
        """``a += C * f`` for one row; ``first``: ``a = 0 + C * f`` (the row
        is not read: no zeroed accumulator needed; the 0 + keeps a float
        sum's zeros positive, as adding to a zeroed one does)."""
        zero = a.dtype.type(0)
        full = W // 64  # words whose 64 pixels are all inside the row
        for w in range(full):
            word = wr[w]
            x0 = w * 64
            # Branch-free: every pixel adds frame * bit (0 or 1, exact),
            # which the compiler vectorises; a test per bit does not.
            for i in range(64):
                v = f[x0 + i] * ((word >> np.uint64(i)) & np.uint64(1))
                a[x0 + i] = (zero if first else a[x0 + i]) + v
        if full * 64 < W:
            word = wr[full]
            x0 = full * 64
            for i in range(W - x0):
                v = f[x0 + i] * ((word >> np.uint64(i)) & np.uint64(1))
                a[x0 + i] = (zero if first else a[x0 + i]) + v

    @numba.njit(inline="always")
    def _accumulate_row(a, f, wr, W, first):
        if first:  # two copies of the loop, each with a constant flag
            _add_row(a, f, wr, W, True)
        else:
            _add_row(a, f, wr, W, False)

    @numba.njit(parallel=True, cache=True, nogil=True)
    def _accumulate(acc, frame, words, first):
        H, W = frame.shape
        for y in numba.prange(H):
            _accumulate_row(acc[y], frame[y], words[y], W, first)

    @numba.njit(cache=True, nogil=True)
    def _accumulate_rows(acc, frame, words, y0, y1, first):
        # one band of rows on the calling thread (the writer's pool runs the bands)
        W = frame.shape[1]
        for y in range(y0, y1):
            _accumulate_row(acc[y], frame[y], words[y], W, first)


if numba is not None:

    _GOLDEN = np.uint64(0x9E3779B97F4A7C15)
    _MUL1 = np.uint64(0xBF58476D1CE4E5B9)
    _MUL2 = np.uint64(0x94D049BB133111EB)

    @numba.njit(inline="always")
    def _word(key, b, y, w):
        """The spec's mask word ``[b, y, w]`` (:func:`tcscodec.masks.mask_words`), mod 2^64."""
        counter = (np.uint64(b) << np.uint64(48)) | (np.uint64(y) << np.uint64(24)) | np.uint64(w)
        z = key + (counter + np.uint64(1)) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MUL1
        z = (z ^ (z >> np.uint64(27))) * _MUL2
        return z ^ (z >> np.uint64(31))

    @numba.njit(cache=True, nogil=True)
    def _mask_words(key, out):
        B, H, nw = out.shape
        for b in range(B):
            for y in range(H):
                for w in range(nw):
                    out[b, y, w] = _word(key, b, y, w)

    #: byte -> its 8 bits as the 8 bytes of a uint64 (bit k in byte k)
    _SPREAD = np.array([sum(((v >> k) & 1) << (8 * k) for k in range(8)) for v in range(256)], np.uint64)

    @numba.njit(cache=True, nogil=True)
    def _mask_sum(key, n, y0, x0, out):
        """``out[y - y0, x - x0] = sum_{b < n} C_b[y, x]`` for ``n <= 255``:
        per row, each mask word is made once and its bits added eight at a
        time, a byte of the word spread to eight byte counters of a uint64
        (no count passes 255, so none carries into the next), then the
        region's columns are copied out."""
        h, w = out.shape
        w0 = x0 // 64
        nw = (x0 + w - 1) // 64 + 1 - w0
        row = np.empty(8 * nw, np.uint64)
        counts = row.view(np.uint8)  # little-endian: byte k of row[8 j + i] is pixel 64 j + 8 i + k
        for yy in range(h):
            row[:] = 0
            for b in range(n):
                for j in range(nw):
                    word = _word(key, b, y0 + yy, w0 + j)
                    for i in range(8):
                        row[8 * j + i] += _SPREAD[(word >> np.uint64(8 * i)) & np.uint64(0xFF)]
            out[yy, :] = counts[x0 - 64 * w0:x0 - 64 * w0 + w]

    @numba.njit(cache=True, nogil=True)
    def _binned_rows_int(out, frame, s, j0, j1):
        # columns first in int64 (exact; the loop vectorises, which a float
        # sum may not, being unreorderable), then each bin's s columns
        wb = out.shape[1]
        acc = np.zeros(wb * s, np.int64)
        for j in range(j0, j1):
            acc[:] = 0
            for y in range(j * s, (j + 1) * s):
                f = frame[y]
                for x in range(wb * s):
                    acc[x] += f[x]
            for i in range(wb):
                t = 0
                for x in range(i * s, i * s + s):
                    t += acc[x]
                out[j, i] = t

    @numba.njit(cache=True, nogil=True)
    def _binned_rows_float(out, frame, s, j0, j1):
        wb = out.shape[1]
        for j in range(j0, j1):
            row = out[j]
            for i in range(wb):
                row[i] = 0.0
            for y in range(j * s, (j + 1) * s):
                f = frame[y]
                for i in range(wb):
                    t = 0.0
                    for x in range(i * s, i * s + s):
                        t += f[x]
                    row[i] += t

    @numba.njit(parallel=True, cache=True, nogil=True)
    def _binned_sum_int(out, frame, s, n):
        hb = out.shape[0]
        for c in numba.prange(n):
            _binned_rows_int(out, frame, s, hb * c // n, hb * (c + 1) // n)

    @numba.njit(parallel=True, cache=True, nogil=True)
    def _binned_sum_float(out, frame, s, n):
        hb = out.shape[0]
        for c in numba.prange(n):
            _binned_rows_float(out, frame, s, hb * c // n, hb * (c + 1) // n)


if numba is not None:

    @numba.njit(cache=True, nogil=True)
    def _change_statistics(x, ref, m, mu, flicker, a, g, ref_n, P, clip, local2):
        n = mu.size
        level = 0.0
        for i in range(n):
            level += a + g * max(mu[i], 0.0)
        floor = max(g * g, 1e-3 * (level / n) if n else 0.0, 1e-12)
        widen = 1.0 + 1.0 / ref_n
        clipped = 0.0
        moved = 0
        for i in range(n):
            var = widen * max(a + g * max(mu[i], 0.0), floor)
            d = x[i] * flicker - ref[i]
            clipped += min(d * d / var, clip)
            e = m[i] * flicker - mu[i]
            moved += e * e / (var / P) > local2
        return clipped / n, moved


def change_statistics(x: np.ndarray, ref: np.ndarray, m: np.ndarray, mu: np.ndarray, flicker: float, a: float,
                      g: float, ref_n: int, P: int, clip: float, local2: float) -> tuple[float, int] | None:
    """The two statistics of ``-B auto``'s change rule
    (:meth:`tcscodec.grouping.AutoGroups._changed`) in one pass over the
    bins: the mean over the sample grid of ``min(z^2, clip)`` and how many
    bin means moved more than ``local2`` in squared noise stds; None
    without numba (the caller computes them with numpy).  ``x``, ``ref``
    are the frame's and the reference's samples, ``m``, ``mu`` their bin
    means, all of one shape; the noise variance of a pixel of mean ``mu``
    is ``a + g * mu`` (at least ``g^2`` and a thousandth of its mean),
    widened by ``1 + 1 / ref_n`` for the reference's own noise."""
    if numba is None:  # pragma: no cover
        return None
    arrays = [np.ascontiguousarray(v).reshape(-1) for v in (x, ref, m, mu)]  # compiled per dtype: no copies
    mean, moved = _change_statistics(*arrays, float(flicker), float(a), float(g), float(ref_n), float(P),
                                     float(clip), float(local2))
    return float(mean), int(moved)


def binned_sum(frame: np.ndarray, s: int, out: np.ndarray, parallel: bool = True) -> np.ndarray:
    """Sums of ``frame`` over ``s`` x ``s`` bins, into ``out`` (float64,
    ``(H // s, W // s)``; the ragged right and bottom edges are left out):
    one pass over the frame, one addition per pixel.  Returns ``out``.
    ``parallel=False``: on the calling thread only (for a caller that
    splits the work over threads of its own; numba's would compete with
    them), the same sums."""
    hb, wb = out.shape
    if numba is None or frame.dtype.kind not in "uif":  # pragma: no cover
        part = np.asarray(frame[:hb * s, :wb * s], np.float64)
        out[...] = part.reshape(hb, s, wb * s).sum(axis=1).reshape(hb, wb, s).sum(axis=2)
        return out
    frame = np.ascontiguousarray(frame)
    integer = frame.dtype.kind in "iu"  # every value and sum exact: the same floats either way
    if parallel:  # a chunk of bin rows per thread
        (_binned_sum_int if integer else _binned_sum_float)(out, frame, s, max(1, min(hb, numba.get_num_threads())))
    else:
        (_binned_rows_int if integer else _binned_rows_float)(out, frame, s, 0, hb)
    return out


def masked_accumulate(acc: np.ndarray, frame: np.ndarray, words: np.ndarray, first: bool = False) -> None:
    """``acc += C * frame`` in place, ``C`` given as its bit-packed words;
    with ``first``, ``acc = 0 + C * frame`` (what it gives on a zeroed
    ``acc``, without reading ``acc``: a group's first frame).

    Parameters
    ----------
    acc : numpy.ndarray
        ``(H, W)`` running measurement, in the measurement dtype
        (:data:`tcscodec.measurement.MEASUREMENT_DTYPES`), C-contiguous.
    frame : numpy.ndarray
        ``(H, W)`` frame.
    words : numpy.ndarray
        ``(H, ceil(W / 64))`` uint64 mask words of this frame
        (:func:`tcscodec.masks.packed_masks`): bit ``x & 63`` of word
        ``[y, x >> 6]`` is ``C[y, x]``.
    """
    if numba is None:  # pragma: no cover
        # the bits of each row's words, little-endian (masks.unpack_words,
        # not imported: masks uses this module's kernels)
        raw = np.ascontiguousarray(words, dtype="<u8").view(np.uint8)
        mask = np.unpackbits(raw, axis=-1, bitorder="little")[..., :frame.shape[1]]
        if first:
            acc.fill(0)
        np.add(acc, np.multiply(frame, mask, dtype=frame.dtype), out=acc, casting="unsafe")
        return
    _accumulate(acc, np.ascontiguousarray(frame), words, bool(first))


def accumulate_rows(acc: np.ndarray, frame: np.ndarray, words: np.ndarray, y0: int, y1: int,
                    first: bool = False) -> None:
    """:func:`masked_accumulate` of rows ``y0:y1`` only, on the calling
    thread (no numba threads): bands of one frame on several threads at once."""
    if numba is None:  # pragma: no cover
        masked_accumulate(acc[y0:y1], frame[y0:y1], words[y0:y1], first)
        return
    _accumulate_rows(acc, frame, words, y0, y1, bool(first))


def mask_words_all(key: int, B: int, height: int, width: int) -> np.ndarray | None:
    """:func:`tcscodec.masks.packed_masks` for the mask key ``key``
    (``mix64(seed + GOLDEN)``), in one compiled pass; None without numba."""
    if numba is None:  # pragma: no cover
        return None
    out = np.empty((B, height, (width + 63) // 64), np.uint64)
    _mask_words(np.uint64(key), out)
    return out


def mask_sum(key: int, n: int, region: tuple[int, int, int, int]) -> np.ndarray | None:
    """``sum_{b<n} C_b`` over ``region`` ``(y0, y1, x0, x1)`` as uint8 for
    the mask key ``key``, in one compiled pass; None without numba or for
    ``n > 255`` (uint8 sums that wrap)."""
    if numba is None or not 0 <= n <= 255:
        return None
    y0, y1, x0, x1 = region
    out = np.empty((y1 - y0, x1 - x0), np.uint8)
    if out.size:
        _mask_sum(np.uint64(key), n, y0, x0, out)
    return out


def set_threads(n: int) -> int:
    """Use ``n`` threads for the kernels (capped at the cores numba sees);
    returns the number before."""
    if numba is None:  # pragma: no cover
        return 1
    old = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    return old
