"""Compiled predict-rice record coding (numba), installed into the format layer.

:mod:`tcscodec.format.predictive` holds the codec's numpy reference: stage
by stage over strided int64 copies, five trial Rice parameters as five
passes, bit strings built as arrays.  Here the same mapping runs pixel by
pixel in the coding order, in three compiled passes per tile (residuals and
their sums; the trial bit counts of each stage; the unary, escape and
remainder streams written straight into the content), and decoding in two
(the streams to residuals, the residuals to values in the coding order).

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
    def _u(i):
        # an index known to be >= 0, unsigned: numba then skips its test for negative (from-the-end) ones
        return np.uint64(i)

    @numba.njit(inline="always")
    def _neighbours(img, cs, y, x, h, diag, checked):
        """Sums of the values and mask sums of the 4 neighbours of pixel
        ``(y, x)`` at distance ``h``, diagonal or on the axes; with
        ``checked`` those outside the tile count 0 (the reference's zero
        padding), without, all must be inside (no tests: the interior)."""
        if diag:
            y0, x0, y1, x1, y2, x2, y3, x3 = y - h, x - h, y - h, x + h, y + h, x - h, y + h, x + h
        else:
            y0, x0, y1, x1, y2, x2, y3, x3 = y - h, x, y + h, x, y, x - h, y, x + h
        if not checked:
            y0, x0, y1, x1, y2, x2, y3, x3 = _u(y0), _u(x0), _u(y1), _u(x1), _u(y2), _u(x2), _u(y3), _u(x3)
            num = (np.int64(img[y0, x0]) + np.int64(img[y1, x1])) + (np.int64(img[y2, x2]) + np.int64(img[y3, x3]))
            den = (np.int64(cs[y0, x0]) + np.int64(cs[y1, x1])) + (np.int64(cs[y2, x2]) + np.int64(cs[y3, x3]))
            return num, den
        H, W = img.shape
        num = den = np.int64(0)
        if y0 >= 0 and y0 < H and x0 >= 0 and x0 < W:
            num += np.int64(img[_u(y0), _u(x0)])
            den += np.int64(cs[_u(y0), _u(x0)])
        if y1 >= 0 and y1 < H and x1 >= 0 and x1 < W:
            num += np.int64(img[_u(y1), _u(x1)])
            den += np.int64(cs[_u(y1), _u(x1)])
        if y2 >= 0 and y2 < H and x2 >= 0 and x2 < W:
            num += np.int64(img[_u(y2), _u(x2)])
            den += np.int64(cs[_u(y2), _u(x2)])
        if y3 >= 0 and y3 < H and x3 >= 0 and x3 < W:
            num += np.int64(img[_u(y3), _u(x3)])
            den += np.int64(cs[_u(y3), _u(x3)])
        return num, den

    @numba.njit(inline="always")
    def _inside(ox, s, h, W, n):
        """Of the ``n`` columns ``ox + k s`` of a row whose neighbours rows
        are in the tile, the range of k whose neighbours are all in it."""
        ka = min(n, (h - ox + s - 1) // s) if ox < h else 0
        kb = min(n, (W - h - 1 - ox) // s + 1) if W - h - 1 >= ox else 0
        return ka, max(ka, kb)

    @numba.njit(inline="always")
    def _zigzag(v, num, den, sc):
        r = v - _prediction(num, den, sc)
        return np.uint64((r << 1) ^ (r >> 63))  # 2r, or -2r - 1 below 0

    @numba.njit(cache=True, nogil=True)
    def _residuals(q, cs, parts, u, sums, maxes):
        """Zigzagged residuals in coding order into ``u``, and each stage's
        integer sum (mod 2^64) and largest residual."""
        H, W = q.shape
        i = 0
        for p in range(parts.shape[0]):
            st, s, oy, ox, nn = parts[p, 0], parts[p, 1], parts[p, 2], parts[p, 3], parts[p, 4]
            h = s // 2
            diag = parts[p, 6] != 0  # the first offset is (-h, -h) for corners, (-h, 0) for the axes
            n = (W - ox + s - 1) // s if ox < W else 0
            tot = mx = np.uint64(0)
            for y in range(oy, H, s):
                if nn == 0:  # the base stage: no prediction
                    for k in range(n):
                        z = _zigzag(np.int64(q[_u(y), _u(ox + k * s)]), 0, 0, 0)
                        u[i] = z
                        i += 1
                        tot += z
                        mx = max(mx, z)
                    continue
                # three loops, not one with a test per pixel: the middle run's
                # neighbours are all inside the tile, so it skips the border checks
                ka, kb = _inside(ox, s, h, W, n) if y >= h and y + h < H else (n, n)
                for k in range(ka):
                    x = ox + k * s
                    num, den = _neighbours(q, cs, y, x, h, diag, True)
                    z = _zigzag(np.int64(q[_u(y), _u(x)]), num, den, np.int64(cs[_u(y), _u(x)]))
                    u[i] = z
                    i += 1
                    tot += z
                    mx = max(mx, z)
                for k in range(ka, kb):
                    x = ox + k * s
                    num, den = _neighbours(q, cs, y, x, h, diag, False)
                    z = _zigzag(np.int64(q[_u(y), _u(x)]), num, den, np.int64(cs[_u(y), _u(x)]))
                    u[i] = z
                    i += 1
                    tot += z
                    mx = max(mx, z)
                for k in range(kb, n):
                    x = ox + k * s
                    num, den = _neighbours(q, cs, y, x, h, diag, True)
                    z = _zigzag(np.int64(q[_u(y), _u(x)]), num, den, np.int64(cs[_u(y), _u(x)]))
                    u[i] = z
                    i += 1
                    tot += z
                    mx = max(mx, z)
            sums[st] += tot
            maxes[st] = max(maxes[st], mx)

    @numba.njit(cache=True, nogil=True)
    def _trial_bits(u, klo):
        """Per k in ``klo .. klo + 4``: sum of min(u >> k, ESCAPE) and the
        number of escapes (u >> k >= ESCAPE), in one pass.  u >> klo is
        capped at 16 ESCAPE first (above it every k has an escape), so the
        five trials run on int32 lanes, summed in int32 over chunks short
        enough not to overflow."""
        cap = np.uint64(16 * ESCAPE)
        sums = np.zeros(5, np.int64)
        escapes = np.zeros(5, np.int64)
        for c0 in range(0, u.size, 1 << 24):
            s0 = s1 = s2 = s3 = s4 = np.int32(0)
            e0 = e1 = e2 = e3 = e4 = np.int32(0)
            for i in range(c0, min(u.size, c0 + (1 << 24))):
                m0 = np.int32(min(u[i] >> np.uint64(klo), cap))
                m1, m2, m3, m4 = m0 >> 1, m0 >> 2, m0 >> 3, m0 >> 4
                s0 += min(m0, np.int32(ESCAPE))
                s1 += min(m1, np.int32(ESCAPE))
                s2 += min(m2, np.int32(ESCAPE))
                s3 += min(m3, np.int32(ESCAPE))
                s4 += min(m4, np.int32(ESCAPE))
                e0 += np.int32(m0 >= ESCAPE)
                e1 += np.int32(m1 >= ESCAPE)
                e2 += np.int32(m2 >= ESCAPE)
                e3 += np.int32(m3 >= ESCAPE)
                e4 += np.int32(m4 >= ESCAPE)
            sums += np.array([s0, s1, s2, s3, s4], np.int64)
            escapes += np.array([e0, e1, e2, e3, e4], np.int64)
        return sums, escapes

    # The bit writers and readers below are written out in their loops: as
    # helpers returning their state (even inlined) they ran 10x slower.

    @numba.njit(inline="always")
    def _flush(out, pos, acc, n):
        """The last ``n`` (< 32) bits of a bit string, zero-padded to whole bytes."""
        w = acc << np.uint64(32 - n)
        for b in range((n + 7) // 8):
            out[pos + b] = (w >> np.uint64(24 - 8 * b)) & np.uint64(0xFF)

    @numba.njit(cache=True, nogil=True)
    def _pack(u, bounds, ks, out, esc_at, unary_at, rem_at):
        """The escape list, unary stream and remainder stream of ``u`` into
        ``out``.  A bit string (MSB first) keeps its last ``n`` < 32 bits in
        ``acc`` and writes whole 32-bit words."""
        esc = np.uint64(ESCAPE)
        acc = np.uint64(0)
        n = np.uint64(0)
        pos = np.uint64(unary_at)
        for st in range(bounds.size - 1):
            k = np.uint64(ks[st])
            for i in range(bounds[st], bounds[st + 1]):
                m = u[i] >> k
                if m >= esc:
                    for b in range(8):  # little-endian uint64
                        out[_u(esc_at + b)] = (m >> np.uint64(8 * b)) & np.uint64(0xFF)
                    esc_at += 8
                    m = esc
                # m ones, then a zero
                acc = (acc << (m + np.uint64(1))) | (((np.uint64(1) << m) - np.uint64(1)) << np.uint64(1))
                n += m + np.uint64(1)
                if n >= np.uint64(32):
                    n -= np.uint64(32)
                    w = acc >> n
                    out[pos] = (w >> np.uint64(24)) & np.uint64(0xFF)
                    out[pos + np.uint64(1)] = (w >> np.uint64(16)) & np.uint64(0xFF)
                    out[pos + np.uint64(2)] = (w >> np.uint64(8)) & np.uint64(0xFF)
                    out[pos + np.uint64(3)] = w & np.uint64(0xFF)
                    pos += np.uint64(4)
        _flush(out, pos, acc, n)
        acc = np.uint64(0)
        n = np.uint64(0)
        pos = np.uint64(rem_at)
        for st in range(bounds.size - 1):
            k = np.uint64(ks[st])
            if k == 0:
                continue
            # fields over 32 bits go in two parts: high k - 32 bits, then 32
            parts = 2 if k > np.uint64(32) else 1
            mask = (np.uint64(1) << k) - np.uint64(1)
            for i in range(bounds[st], bounds[st + 1]):
                v = u[i] & mask
                for part in range(parts):
                    width = k - np.uint64(32) if part < parts - 1 else min(k, np.uint64(32))
                    field = v >> np.uint64(32) if part < parts - 1 else v & np.uint64(0xFFFFFFFF)
                    acc = (acc << width) | field
                    n += width
                    if n >= np.uint64(32):
                        n -= np.uint64(32)
                        w = acc >> n
                        out[pos] = (w >> np.uint64(24)) & np.uint64(0xFF)
                        out[pos + np.uint64(1)] = (w >> np.uint64(16)) & np.uint64(0xFF)
                        out[pos + np.uint64(2)] = (w >> np.uint64(8)) & np.uint64(0xFF)
                        out[pos + np.uint64(3)] = w & np.uint64(0xFF)
                        pos += np.uint64(4)
        _flush(out, pos, acc, n)

    @numba.njit(cache=True, nogil=True)
    def _parse(unary, escapes, rem, ks, bounds, u):
        """The zigzagged residuals ``u`` from the streams; 0, or 1 for streams
        the reference refuses (codes, escapes or quotients out of bounds).
        A reader keeps its next ``n`` bits MSB-aligned in ``acc`` and tops
        it up a byte at a time (zeros past the end of its stream)."""
        ua = ra = np.uint64(0)
        un = rn = 0
        ub = rb = np.uint64(0)
        usize = np.uint64(unary.size)
        rsize = np.uint64(rem.size)
        j = 0
        for st in range(bounds.size - 1):
            k = ks[st]
            for i in range(bounds[st], bounds[st + 1]):
                # the unary code: a run of ones (any length), then a zero
                run = np.uint64(0)
                while True:
                    if un < 32:
                        while un <= 56:
                            byte = np.uint64(unary[ub]) if ub < usize else np.uint64(0)
                            ua |= byte << np.uint64(56 - un)
                            ub += np.uint64(1)
                            un += 8
                    ones = leading_zeros(~ua)
                    if ones < un:
                        run += np.uint64(ones)
                        ua = (ua << np.uint64(ones)) << np.uint64(1)
                        un -= ones + 1
                        break
                    run += np.uint64(un)
                    ua = np.uint64(0)
                    un = 0
                    if ub >= usize:
                        return 1  # fewer codes than values
                if np.int64(ub) * 8 - un > unary.size * 8:
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
                # the remainder: k bits, in parts of at most 32
                left = k
                while left > 0:
                    width = left - 32 if left > 32 else left
                    if rn < width:
                        while rn <= 56:
                            byte = np.uint64(rem[rb]) if rb < rsize else np.uint64(0)
                            ra |= byte << np.uint64(56 - rn)
                            rb += np.uint64(1)
                            rn += 8
                    left -= width
                    z |= (ra >> np.uint64(64 - width)) << np.uint64(left)
                    ra <<= np.uint64(width)
                    rn -= width
                u[i] = z
        if j != escapes.size:
            return 1
        # the last code's zero lies in the last byte, and the bits after it are zeros
        end = np.int64(ub) * 8 - un
        if (end - 1) // 8 != unary.size - 1 or (unary[unary.size - 1] & ((1 << ((8 - end % 8) % 8)) - 1)):
            return 1
        return 0

    @numba.njit(inline="always")
    def _value(z, num, den, sc):
        half = np.int64(z >> np.uint64(1))
        return (half ^ -np.int64(z & np.uint64(1))) + _prediction(num, den, sc)  # zigzag back: half, or -half - 1

    @numba.njit(cache=True, nogil=True)
    def _reconstruct(u, cs, parts, out):
        """The values from their residuals ``u``, in coding order (as
        :func:`_residuals` visits them); 0, or 1 where one is beyond 2^52."""
        H, W = out.shape
        i = 0
        bad = False
        for p in range(parts.shape[0]):
            s, oy, ox, nn = parts[p, 1], parts[p, 2], parts[p, 3], parts[p, 4]
            h = s // 2
            diag = parts[p, 6] != 0
            n = (W - ox + s - 1) // s if ox < W else 0
            for y in range(oy, H, s):
                if nn == 0:
                    for k in range(n):
                        v = _value(u[i], 0, 0, 0)
                        i += 1
                        bad |= v > MAX_ABS or v < -MAX_ABS
                        out[_u(y), _u(ox + k * s)] = v
                    continue
                ka, kb = _inside(ox, s, h, W, n) if y >= h and y + h < H else (n, n)
                for k in range(ka):
                    x = ox + k * s
                    num, den = _neighbours(out, cs, y, x, h, diag, True)
                    v = _value(u[i], num, den, np.int64(cs[_u(y), _u(x)]))
                    i += 1
                    bad |= v > MAX_ABS or v < -MAX_ABS
                    out[_u(y), _u(x)] = v
                for k in range(ka, kb):
                    x = ox + k * s
                    num, den = _neighbours(out, cs, y, x, h, diag, False)
                    v = _value(u[i], num, den, np.int64(cs[_u(y), _u(x)]))
                    i += 1
                    bad |= v > MAX_ABS or v < -MAX_ABS
                    out[_u(y), _u(x)] = v
                for k in range(kb, n):
                    x = ox + k * s
                    num, den = _neighbours(out, cs, y, x, h, diag, True)
                    v = _value(u[i], num, den, np.int64(cs[_u(y), _u(x)]))
                    i += 1
                    bad |= v > MAX_ABS or v < -MAX_ABS
                    out[_u(y), _u(x)] = v
            if bad:  # checked stage by stage, as the reference: later predictions stay exact
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
    # values beyond 2^52 are not predicted; only 64-bit dtypes can hold them
    if q.dtype.itemsize == 8 and (int(np.max(q)) > MAX_ABS or int(np.min(q)) < -MAX_ABS):
        return None
    counts, bounds = _stage_bounds(q.shape)
    u = np.empty(q.size, np.uint64)
    sums = np.zeros(N_STAGES, np.uint64)
    maxes = np.zeros(N_STAGES, np.uint64)
    _residuals(q, csum, _PARTS, u, sums, maxes)
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
    counts, bounds = _stage_bounds(csum.shape)
    rem_at = HEAD_SIZE + 8 * n_esc + unary_size
    rem_bits = sum(c * k for c, k in zip(counts, ks, strict=True))
    if len(content) - rem_at != -(-rem_bits // 8):
        return decode_predicted_reference(content, csum)  # raises its error
    buf = np.frombuffer(content, np.uint8)
    escapes = np.frombuffer(content, "<u8", n_esc, HEAD_SIZE)
    u = np.empty(csum.size, np.uint64)
    out = np.empty(csum.shape, np.int64)
    if (_parse(buf[HEAD_SIZE + 8 * n_esc:rem_at], escapes, buf[rem_at:], np.array(ks, np.int64), bounds, u)
            or _reconstruct(u, csum, _PARTS, out)):
        return decode_predicted_reference(content, csum)  # raises its error
    return out


def install() -> None:
    """Route the format layer's predict-rice coding through these kernels."""
    if numba is not None:
        predictive.use_kernels(encode_predicted, decode_predicted)
