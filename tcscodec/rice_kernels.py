"""Compiled predict-rice record coding (numba), installed into the format layer.

:mod:`tcscodec.format.predictive` holds the codec's numpy reference: stage
by stage over strided int64 copies, five trial Rice parameters as five
passes, bit strings built as arrays.  Here the same mapping runs pixel by
pixel in the coding order, in three compiled passes per tile (residuals and
their sums; the trial bit counts of each stage; the unary, escape and
remainder streams written straight into the content), and decoding in one.

The bytes, values and errors are the reference's exactly:

* the arithmetic is its int64 arithmetic, wrapping alike, with the
  prediction's floor division ``(2 s num + den) // (2 den)`` (numba's
  ``//`` floors negative quotients as numpy's does; float64 division,
  exact below 2^41, measured slower);
* each stage's ``log2(mean + 1)`` is numpy's, from the exact integer sum
  when it is below 2^53 (then numpy's float sum is exact too) and from
  numpy's own mean otherwise;
* a content the decoder finds invalid is decoded by the reference, which
  raises its own error; tiles of other shapes or mask-sum dtypes than
  the writer's (2-D, uint8) go to the reference whole.

:func:`install` (called when tcscodec is imported) routes
``encode_predicted`` and ``decode_predicted`` here; ``tests/test_rice_kernels.py``
compares both directions with the reference on random tiles.  The kernels
release the GIL, so the writer codes tiles on several threads at once.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .format import predictive
from .format.predictive import (
    ESCAPE,
    HEAD_SIZE,
    MAX_ABS,
    N_STAGES,
    content_head,
    decode_predicted_reference,
    encode_predicted_reference,
    parse_head,
    stage_counts,
    stage_specs,
)

__all__ = ["encode_predicted", "decode_predicted", "install"]

numba: Any
try:
    import numba
    from numba.cpython.unsafe.numbers import leading_zeros
except ImportError:  # pragma: no cover - numba is a dependency; the reference keeps working without it
    numba = None

def _parts_table() -> np.ndarray:
    """The coding order as rows ``(stage, spacing, y0, x0, neighbours, dy0,
    dx0, .., dy3, dx3)``: one row per pixel set, in order."""
    rows = []
    for stage, (s, sets, nbrs) in enumerate(stage_specs()):
        offsets = [d for nb in nbrs for d in nb] + [0] * (8 - 2 * len(nbrs))
        rows += [[stage, s, oy, ox, len(nbrs), *offsets] for oy, ox in sets]
    return np.array(rows, np.int64)


_PARTS = _parts_table()


@functools.lru_cache(maxsize=64)
def _stage_bounds(shape: tuple[int, int]) -> tuple[list[int], np.ndarray]:
    """Pixels per stage and the stages' start indices in the coding order."""
    counts = stage_counts(shape)
    return counts, np.cumsum([0, *counts]).astype(np.int64)


if numba is not None:

    @numba.njit(inline="always")
    def _prediction(num, den, s):
        # the reference's where(den > 0, (2 s num + den) // max(2 den, 1), 0)
        if den <= 0:
            return np.int64(0)
        # numba's // on int64 floors, as numpy's (not C's truncation)
        return (2 * s * num + den) // (2 * den)

    @numba.njit(inline="always")
    def _neighbours(img, cs, y, x, inside, d):
        """Sums of the values and mask sums of the 4 neighbours ``d`` (offsets
        ``(dy0, dx0, .., dy3, dx3)``) of pixel ``(y, x)``, 0 outside the tile
        as the reference's zero padding; ``inside``: all are in the tile."""
        if inside:
            num = (np.int64(img[y + d[0], x + d[1]]) + np.int64(img[y + d[2], x + d[3]])
                   + np.int64(img[y + d[4], x + d[5]]) + np.int64(img[y + d[6], x + d[7]]))
            den = (np.int64(cs[y + d[0], x + d[1]]) + np.int64(cs[y + d[2], x + d[3]])
                   + np.int64(cs[y + d[4], x + d[5]]) + np.int64(cs[y + d[6], x + d[7]]))
            return num, den
        H, W = img.shape
        num = den = np.int64(0)
        for t in range(4):
            yy = y + d[2 * t]
            xx = x + d[2 * t + 1]
            if yy >= 0 and yy < H and xx >= 0 and xx < W:
                num += np.int64(img[yy, xx])
                den += np.int64(cs[yy, xx])
        return num, den

    @numba.njit(inline="always")
    def _offsets(parts, p):
        return (parts[p, 5], parts[p, 6], parts[p, 7], parts[p, 8],
                parts[p, 9], parts[p, 10], parts[p, 11], parts[p, 12])

    @numba.njit(cache=True, nogil=True)
    def _residuals(q, cs, parts, u, sums, maxes):
        """Zigzagged residuals in coding order into ``u``; each stage's
        integer sum (mod 2^64) and largest residual; returns q's min and max."""
        H, W = q.shape
        qmin = qmax = np.int64(q[0, 0])
        i = 0
        for p in range(parts.shape[0]):
            st, s, oy, ox, nn = parts[p, 0], parts[p, 1], parts[p, 2], parts[p, 3], parts[p, 4]
            d = _offsets(parts, p)
            h = s // 2
            tot = mx = np.uint64(0)
            for y in range(oy, H, s):
                rows_in = nn > 0 and y >= h and y + h < H  # offsets are within +-h
                for x in range(ox, W, s):
                    v = np.int64(q[y, x])
                    qmin = min(qmin, v)
                    qmax = max(qmax, v)
                    num = den = np.int64(0)
                    if nn:
                        num, den = _neighbours(q, cs, y, x, rows_in and x >= h and x + h < W, d)
                    r = v - _prediction(num, den, np.int64(cs[y, x]))
                    z = np.uint64((r << 1) ^ (r >> 63))  # zigzag: 2r, or -2r - 1 below 0
                    u[i] = z
                    i += 1
                    tot += z
                    mx = max(mx, z)
            sums[st] += tot
            maxes[st] = max(maxes[st], mx)
        return qmin, qmax

    @numba.njit(cache=True, nogil=True)
    def _trial_bits(u, klo):
        """Per k in ``klo .. klo + 4``: sum of min(u >> k, ESCAPE) and the
        number of escapes (u >> k >= ESCAPE), in one pass."""
        esc = np.uint64(ESCAPE)
        s0 = s1 = s2 = s3 = s4 = np.uint64(0)
        e0 = e1 = e2 = e3 = e4 = np.uint64(0)
        for v in u:
            m0 = v >> np.uint64(klo)
            m1 = m0 >> np.uint64(1)
            m2 = m1 >> np.uint64(1)
            m3 = m2 >> np.uint64(1)
            m4 = m3 >> np.uint64(1)
            s0 += min(m0, esc)
            s1 += min(m1, esc)
            s2 += min(m2, esc)
            s3 += min(m3, esc)
            s4 += min(m4, esc)
            e0 += np.uint64(m0 >= esc)
            e1 += np.uint64(m1 >= esc)
            e2 += np.uint64(m2 >= esc)
            e3 += np.uint64(m3 >= esc)
            e4 += np.uint64(m4 >= esc)
        return (np.array([s0, s1, s2, s3, s4], np.int64), np.array([e0, e1, e2, e3, e4], np.int64))

    @numba.njit(inline="always")
    def _put(out, pos, acc, n, value, width):
        """Append the ``width`` (<= 32) low bits of ``value`` to a bit string
        (MSB first) whose last ``n`` (< 32) bits wait in ``acc``; whole
        32-bit words go to ``out[pos:]``.  Returns (pos, acc, n)."""
        acc = (acc << np.uint64(width)) | value
        n += width
        if n >= 32:
            n -= 32
            w = acc >> np.uint64(n)
            out[pos] = (w >> np.uint64(24)) & np.uint64(0xFF)
            out[pos + 1] = (w >> np.uint64(16)) & np.uint64(0xFF)
            out[pos + 2] = (w >> np.uint64(8)) & np.uint64(0xFF)
            out[pos + 3] = w & np.uint64(0xFF)
            pos += 4
        return pos, acc, n

    @numba.njit(inline="always")
    def _flush(out, pos, acc, n):
        """The last ``n`` bits of a bit string, zero-padded to whole bytes."""
        w = acc << np.uint64(32 - n)
        for b in range((n + 7) // 8):
            out[pos + b] = (w >> np.uint64(24 - 8 * b)) & np.uint64(0xFF)

    @numba.njit(cache=True, nogil=True)
    def _pack(u, bounds, ks, out, esc_at, unary_at, rem_at):
        """The escape list, unary stream and remainder stream of ``u`` into ``out``."""
        esc = np.uint64(ESCAPE)
        ua = ra = np.uint64(0)
        un = rn = 0
        up, rp = unary_at, rem_at
        for st in range(bounds.size - 1):
            k = ks[st]
            mask = (np.uint64(1) << np.uint64(k)) - np.uint64(1)
            for i in range(bounds[st], bounds[st + 1]):
                v = u[i]
                m = v >> np.uint64(k)
                if m >= esc:
                    for b in range(8):  # little-endian uint64
                        out[esc_at + b] = (m >> np.uint64(8 * b)) & np.uint64(0xFF)
                    esc_at += 8
                    m = esc
                # m ones, then a zero
                up, ua, un = _put(out, up, ua, un, ((np.uint64(1) << m) - np.uint64(1)) << np.uint64(1),
                                  np.int64(m) + 1)
                if k > 32:
                    rp, ra, rn = _put(out, rp, ra, rn, (v & mask) >> np.uint64(32), k - 32)
                    rp, ra, rn = _put(out, rp, ra, rn, v & np.uint64(0xFFFFFFFF), 32)
                elif k:
                    rp, ra, rn = _put(out, rp, ra, rn, v & mask, k)
        _flush(out, up, ua, un)
        _flush(out, rp, ra, rn)

    @numba.njit(inline="always")
    def _refill(buf, bp, acc, n):
        """Top up a reader's ``acc`` (its ``n`` bits MSB-aligned) from
        ``buf[bp:]``, zeros past its end.  Returns (bp, acc, n)."""
        while n <= 56:
            byte = np.uint64(buf[bp]) if bp < buf.size else np.uint64(0)
            acc |= byte << np.uint64(56 - n)
            bp += 1
            n += 8
        return bp, acc, n

    @numba.njit(inline="always")
    def _take(buf, bp, acc, n, width):
        """The next ``width`` (1..32) bits.  Returns (value, bp, acc, n)."""
        if n < width:
            bp, acc, n = _refill(buf, bp, acc, n)
        v = acc >> np.uint64(64 - width)
        return v, bp, (acc << np.uint64(width)), n - width

    @numba.njit(cache=True, nogil=True)
    def _decode(unary, escapes, rem, ks, cs, parts, out):
        """Decode into ``out`` in coding order; 0, or 1 for a content the
        reference refuses (its codes, escapes or values are out of bounds)."""
        H, W = out.shape
        ua = ra = np.uint64(0)
        ub = un = rb = rn = 0
        j = 0
        for p in range(parts.shape[0]):
            st, s, oy, ox, nn = parts[p, 0], parts[p, 1], parts[p, 2], parts[p, 3], parts[p, 4]
            d = _offsets(parts, p)
            h = s // 2
            k = ks[st]
            for y in range(oy, H, s):
                rows_in = y >= h and y + h < H
                for x in range(ox, W, s):
                    # the unary code: a run of ones (any length), then a zero
                    run = np.uint64(0)
                    while True:
                        if un < 32:
                            ub, ua, un = _refill(unary, ub, ua, un)
                        ones = leading_zeros(~ua)
                        if ones < un:
                            run += np.uint64(ones)
                            ua = (ua << np.uint64(ones)) << np.uint64(1)
                            un -= ones + 1
                            break
                        run += np.uint64(un)
                        ua = np.uint64(0)
                        un = 0
                        if ub >= unary.size:
                            return 1  # fewer codes than values
                    if ub * 8 - un > unary.size * 8:
                        return 1  # the code ended in the zeros past the stream
                    m = run
                    if run == ESCAPE:
                        if j >= escapes.size:
                            return 1
                        m = escapes[j]
                        j += 1
                    if k and m >> np.uint64(63 - k):
                        return 1  # u = m << k | remainder would not fit 63 bits
                    z = m << np.uint64(k)
                    if k > 32:
                        hi, rb, ra, rn = _take(rem, rb, ra, rn, k - 32)
                        lo, rb, ra, rn = _take(rem, rb, ra, rn, 32)
                        z |= (hi << np.uint64(32)) | lo
                    elif k:
                        lo, rb, ra, rn = _take(rem, rb, ra, rn, k)
                        z |= lo
                    half = np.int64(z >> np.uint64(1))
                    r = half ^ -np.int64(z & np.uint64(1))  # zigzag back: half, or -half - 1
                    num = den = np.int64(0)
                    if nn:
                        num, den = _neighbours(out, cs, y, x, rows_in and x >= h and x + h < W, d)
                    v = r + _prediction(num, den, np.int64(cs[y, x]))
                    if v > MAX_ABS or v < -MAX_ABS:
                        return 1
                    out[y, x] = v
        if j != escapes.size:
            return 1
        # the last code's zero lies in the last byte, and the bits after it are zeros
        end = ub * 8 - un
        if (end - 1) // 8 != unary.size - 1 or (unary[unary.size - 1] & ((1 << ((8 - end % 8) % 8)) - 1)):
            return 1
        return 0


def _usable(tile: np.ndarray, csum: np.ndarray) -> bool:
    """Whether the compiled coder takes this tile (the writer's: 2-D,
    uint8 mask sums of its shape); any other goes to the reference."""
    return (numba is not None and tile.ndim == 2 and tile.size > 0 and csum.dtype == np.uint8
            and csum.shape == tile.shape)


def encode_predicted(q: np.ndarray, csum: np.ndarray) -> bytes | None:
    """:func:`tcscodec.format.predictive.encode_predicted`, compiled."""
    if q.dtype.kind not in "iu" or not _usable(q, csum):
        return encode_predicted_reference(q, csum)
    if q.dtype == np.uint64 and int(np.max(q)) > MAX_ABS:  # the one dtype the kernel's int64 would wrap
        return None
    counts, bounds = _stage_bounds(q.shape)
    u = np.empty(q.size, np.uint64)
    sums = np.zeros(N_STAGES, np.uint64)
    maxes = np.zeros(N_STAGES, np.uint64)
    qmin, qmax = _residuals(q, csum, _PARTS, u, sums, maxes)
    if qmax > MAX_ABS or qmin < -MAX_ABS:
        return None
    ks, unary_bits, n_esc, rem_bits = [], 0, 0, 0
    for st, count in enumerate(counts):
        if count == 0:
            ks.append(0)
            continue
        stage = u[bounds[st]:bounds[st + 1]]
        # numpy's mean, exactly: its float sum is the integer sum while that is below 2^53
        mean = int(sums[st]) / count if int(maxes[st]) * count < 2**53 else float(stage.mean())
        k0 = int(np.log2(mean + 1.0))
        klo = max(0, k0 - 2)
        s, e = _trial_bits(stage, klo)
        best = None
        for j, k in enumerate(range(klo, min(62, k0 + 2) + 1)):
            bits = int(s[j]) + count * (k + 1) + 64 * int(e[j])
            if best is None or bits < best[0]:
                best = (bits, k, j)
        assert best is not None  # the window holds at least one k
        _, k, j = best
        ks.append(k)
        unary_bits += int(s[j]) + count
        n_esc += int(e[j])
        rem_bits += count * k
    unary_size = -(-unary_bits // 8)
    unary_at = HEAD_SIZE + 8 * n_esc
    out = np.empty(unary_at + unary_size + -(-rem_bits // 8), np.uint8)
    out[:HEAD_SIZE] = np.frombuffer(content_head(ks, n_esc, unary_size), np.uint8)
    _pack(u, bounds, np.array(ks, np.int64), out, HEAD_SIZE, unary_at, unary_at + unary_size)
    return out.tobytes()


def decode_predicted(content: bytes, csum: np.ndarray) -> np.ndarray:
    """:func:`tcscodec.format.predictive.decode_predicted`, compiled."""
    if not _usable(csum, csum):
        return decode_predicted_reference(content, csum)
    ks, n_esc, unary_size = parse_head(content, csum.size)
    counts, _ = _stage_bounds(csum.shape)
    rem_at = HEAD_SIZE + 8 * n_esc + unary_size
    rem_bits = sum(c * k for c, k in zip(counts, ks, strict=True))
    if len(content) - rem_at != -(-rem_bits // 8):
        return decode_predicted_reference(content, csum)  # raises its error
    buf = np.frombuffer(content, np.uint8)
    escapes = np.frombuffer(content, "<u8", n_esc, HEAD_SIZE)
    out = np.empty(csum.shape, np.int64)
    if _decode(buf[HEAD_SIZE + 8 * n_esc:rem_at], escapes, buf[rem_at:], np.array(ks, np.int64), csum, _PARTS, out):
        return decode_predicted_reference(content, csum)  # raises its error
    return out


def install() -> None:
    """Route the format layer's predict-rice coding through these kernels."""
    if numba is not None:
        predictive.use_kernels(encode_predicted, decode_predicted)
