"""Compiled predict-rice record coding (numba), installed into the format layer.

:mod:`tcscodec.format.predictive` holds the codec's numpy reference: stage
by stage over strided int64 copies, five trial Rice parameters as five
passes, bit strings built as arrays.  Here the same mapping runs pixel by
pixel in the coding order, in three compiled passes per tile (residuals and
their sums; the trial bit counts of each stage; the unary, escape and
remainder streams together, as 64-bit words), and decoding in one (each
value read from the streams and predicted as it comes).  Both work on the
tile padded with zeros, so that no neighbour needs a bounds test.  The
mask sums' part of each prediction is planned once per tile (the masks are
the same for every group): padded (:func:`_plan`), and for coding tiles of
small non-negative values, the writer's usual case, also in coding order
with each pixel's divisor as its magic number (:func:`_coded_plan`), a
residual pass without table lookups or tests that vectorises.

The bytes, values and errors are the reference's exactly:

* the arithmetic is its int64 arithmetic, wrapping alike, with the
  prediction's floor division ``(2 s num + den) // (2 den)``: a
  multiplication and a shift where the dividend is below 2^31 (exact
  there, :func:`_division_tables`), numba's ``//`` elsewhere (it floors
  negative quotients as numpy's does; float64 division, exact below
  2^41, measured slower);
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
    BASE_SPACING,
    ESCAPE,
    HEAD_SIZE,
    MAX_ABS,
    N_STAGES,
    content_head,
    decode_predicted_reference,
    encode_predicted_reference,
    fit_dtype,
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


def _division_tables() -> tuple[np.ndarray, np.ndarray]:
    """Per neighbour mask sum ``den`` (1 .. 4 x 255), ``(m, s)`` such that
    ``(n * m) >> s == n // (2 den)`` for every ``0 <= n < 2^31``: with ``l =
    ceil(log2(2 den))``, ``m = ceil(2^(31 + l) / (2 den))`` and ``s = 31 + l``
    (Granlund and Montgomery's round-up method: ``m * 2 den`` exceeds
    ``2^(31 + l)`` by less than ``2^l``, and ``n * m < 2^63``).  ``den = 0``
    gets ``m = 0``: the prediction 0 the reference gives it."""
    magic = np.zeros(4 * 255 + 1, np.uint64)
    shift = np.zeros(4 * 255 + 1, np.uint64)
    for den in range(1, magic.size):
        d = 2 * den
        bits = (d - 1).bit_length()
        magic[den] = -(-(1 << (31 + bits)) // d)
        shift[den] = 31 + bits
    return magic, shift


_MAGIC, _SHIFT = _division_tables()
#: predictions whose dividend is below this take the multiplication
_FITS = 1 << 31

#: zeros around a tile in the decoder's arrays: its farthest neighbour (half the base spacing)
PAD = BASE_SPACING // 2


@functools.lru_cache(maxsize=64)
def _stage_bounds(shape: tuple[int, int]) -> tuple[list[int], np.ndarray]:
    """Pixels per stage and the stages' start indices in the coding order."""
    counts = stage_counts(shape)
    return counts, np.cumsum([0, *counts]).astype(np.int64)


if numba is not None:

    @numba.njit(inline="always")
    def _prediction(num, den, s):
        # the reference's where(den > 0, (2 s num + den) // max(2 den, 1), 0)
        n = 2 * s * num + den
        if n >= 0 and n < _FITS:
            # a multiplication and a shift: the division's exact quotient
            # (_division_tables), a third of its cost; den = 0 has magic 0
            return np.int64((np.uint64(n) * _MAGIC[den]) >> _SHIFT[den])
        if den <= 0:
            return np.int64(0)
        # numba's // on int64 floors, as numpy's (not C's truncation)
        return n // (2 * den)

    @numba.njit(inline="always")
    def _u(i):
        # an index known to be >= 0, unsigned: numba then skips its test for negative (from-the-end) ones
        return np.uint64(i)

    @numba.njit(inline="always")
    def _predicted(img, plan, shift, c, o0, o1, o2, o3):
        """The prediction of flat pixel ``c`` of a zero-padded tile from its
        neighbours at offsets ``o0 .. o3`` (those outside the tile read the
        padding's zeros: the reference's zero padding, with no test) and
        its entry of the plan (:func:`_fill_plan`)."""
        num = (np.int64(img[_u(c + o0)]) + np.int64(img[_u(c + o1)])) + (np.int64(img[_u(c + o2)])
                                                                         + np.int64(img[_u(c + o3)]))
        e = np.int64(plan[_u(c)])
        return _prediction(num, e >> shift, e & ((1 << shift) - 1))

    @numba.njit(inline="always")
    def _offsets(parts, p, P):
        """The flat offsets of part ``p``'s four neighbours in rows of ``P``."""
        return (parts[p, 5] * P + parts[p, 6], parts[p, 7] * P + parts[p, 8],
                parts[p, 9] * P + parts[p, 10], parts[p, 11] * P + parts[p, 12])

    @numba.njit(cache=True, nogil=True)
    def _fill_plan(csp, parts, H, W, plan, shift):
        """Per pixel of the padded tile: the sum of its neighbours' mask sums
        (``den``, in its stage) and its own (``s``), as ``den << shift | s``;
        ``csp`` the mask sums padded with zeros, flat."""
        P = W + 2 * PAD
        for p in range(parts.shape[0]):
            s, oy, ox, nn = parts[p, 1], parts[p, 2], parts[p, 3], parts[p, 4]
            o0, o1, o2, o3 = _offsets(parts, p, P)
            n = (W - ox + s - 1) // s if ox < W else 0
            for y in range(oy, H, s):
                at = (y + PAD) * P + PAD + ox
                for kx in range(n):
                    c = at + kx * s
                    den = 0
                    if nn:
                        den = ((np.int64(csp[_u(c + o0)]) + np.int64(csp[_u(c + o1)]))
                               + (np.int64(csp[_u(c + o2)]) + np.int64(csp[_u(c + o3)])))
                    plan[_u(c)] = (den << shift) | np.int64(csp[_u(c)])

    @numba.njit(cache=True, nogil=True)
    def _residuals(qp, plan, shift, parts, H, W, u, sums, maxes):
        """Zigzagged residuals in coding order into ``u``, and each stage's
        integer sum (mod 2^64) and largest residual; ``qp`` is the tile
        padded with ``PAD`` zeros, flat, ``plan`` its plan."""
        P = W + 2 * PAD
        i = 0
        for p in range(parts.shape[0]):
            st, s, oy, ox, nn = parts[p, 0], parts[p, 1], parts[p, 2], parts[p, 3], parts[p, 4]
            o0, o1, o2, o3 = _offsets(parts, p, P)
            n = (W - ox + s - 1) // s if ox < W else 0
            tot = mx = np.uint64(0)
            for y in range(oy, H, s):
                at = (y + PAD) * P + PAD + ox
                for kx in range(n):
                    c = at + kx * s
                    r = np.int64(qp[_u(c)])
                    if nn:  # the base stage has no prediction
                        r -= _predicted(qp, plan, shift, c, o0, o1, o2, o3)
                    z = np.uint64((r << 1) ^ (r >> 63))  # zigzag: 2r, or -2r - 1 below 0
                    u[_u(i)] = z
                    i += 1
                    tot += z
                    mx = max(mx, z)
            sums[st] += tot
            maxes[st] = max(maxes[st], mx)

    @numba.njit(cache=True, nogil=True)
    def _fill_coded(plan, shift, parts, H, W, out):
        """Per pixel in coding order, all its prediction needs of the mask
        sums as one uint64: the divisor's magic number (32 bits), its shift
        (8), the pixel's own mask sum ``s`` (8) and its neighbours' ``den``
        (16), from the padded ``plan`` (:func:`_fill_plan`)."""
        P = W + 2 * PAD
        low = (1 << shift) - 1
        i = 0
        for p in range(parts.shape[0]):
            s, oy, ox = parts[p, 1], parts[p, 2], parts[p, 3]
            n = (W - ox + s - 1) // s if ox < W else 0
            for y in range(oy, H, s):
                at = (y + PAD) * P + PAD + ox
                for kx in range(n):
                    e = np.int64(plan[_u(at + kx * s)])
                    den = e >> shift
                    out[_u(i)] = (_MAGIC[den] | (_SHIFT[den] << np.uint64(32)) | (np.uint64(e & low) << np.uint64(40))
                                  | (np.uint64(den) << np.uint64(48)))
                    i += 1

    @numba.njit(inline="always")
    def _coded_run(qp, coded, u, i, at, n, o0, o1, o2, o3, tot, mx, stride):
        """:func:`_residuals`' inner loop over one row of a predicted part,
        from the coding-order plan: no table lookups and no test, so with
        ``stride`` a constant (each call site passes one) it vectorises."""
        m8 = np.uint64(0xFF)
        for kx in range(n):
            c = at + kx * stride
            num = ((np.uint64(qp[_u(c + o0)]) + np.uint64(qp[_u(c + o1)]))
                   + (np.uint64(qp[_u(c + o2)]) + np.uint64(qp[_u(c + o3)])))
            e = coded[_u(i + kx)]
            dividend = np.uint64(2) * ((e >> np.uint64(40)) & m8) * num + (e >> np.uint64(48))
            r = np.int64(qp[_u(c)]) - np.int64((dividend * (e & np.uint64(0xFFFFFFFF))) >> ((e >> np.uint64(32)) & m8))
            z = np.uint64((r << 1) ^ (r >> 63))
            u[_u(i + kx)] = z
            tot += z
            mx = max(mx, z)
        return tot, mx

    @numba.njit(cache=True, nogil=True)
    def _residuals_coded(qp, coded, parts, H, W, u, sums, maxes):
        """:func:`_residuals` for a tile whose values are all >= 0 and small
        enough that every prediction's dividend is below 2^31 (where the
        reference's division is the multiplication by the magic number),
        with the coding-order plan ``coded`` (:func:`_fill_coded`).  The
        base stage needs no case of its own: its pixels have no neighbours
        (``den`` 0, magic number 0), so their prediction is 0."""
        P = W + 2 * PAD
        i = 0
        for p in range(parts.shape[0]):
            st, s, oy, ox = parts[p, 0], parts[p, 1], parts[p, 2], parts[p, 3]
            o0, o1, o2, o3 = _offsets(parts, p, P)
            n = (W - ox + s - 1) // s if ox < W else 0
            tot = mx = np.uint64(0)
            for y in range(oy, H, s):
                at = (y + PAD) * P + PAD + ox
                if s == 2:  # the spacings of the stages, each a constant to its loop
                    tot, mx = _coded_run(qp, coded, u, i, at, n, o0, o1, o2, o3, tot, mx, 2)
                elif s == 4:
                    tot, mx = _coded_run(qp, coded, u, i, at, n, o0, o1, o2, o3, tot, mx, 4)
                elif s == 8:
                    tot, mx = _coded_run(qp, coded, u, i, at, n, o0, o1, o2, o3, tot, mx, 8)
                else:
                    tot, mx = _coded_run(qp, coded, u, i, at, n, o0, o1, o2, o3, tot, mx, s)
                i += n
            sums[st] += tot
            maxes[st] = max(maxes[st], mx)

    @numba.njit(cache=True, nogil=True)
    def _value_range(a):
        """``(min, max)`` of a 2-D integer array in one pass."""
        lo = hi = np.int64(a[0, 0])
        for y in range(a.shape[0]):
            for x in range(a.shape[1]):
                v = np.int64(a[y, x])
                lo = min(lo, v)
                hi = max(hi, v)
        return lo, hi

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

    @numba.njit(cache=True, nogil=True)
    def _pack(u, bounds, ks, escapes, uw, rw):
        """The escape list, unary stream and remainder stream of ``u``, in
        one pass: the streams as 64-bit words ``uw`` and ``rw``, MSB first
        (written big-endian, they are the streams' bytes; the last word
        zero-padded).  Each stream keeps its last
        ``n`` < 64 bits in a register and writes a word when it fills."""
        esc = np.uint64(ESCAPE)
        one = np.uint64(1)
        b64 = np.uint64(64)
        ua = ra = np.uint64(0)  # the bits not yet written
        un = rn = np.uint64(0)  # how many
        ui = ri = j = 0
        for st in range(bounds.size - 1):
            k = np.uint64(ks[st])
            mask = (one << k) - one
            for i in range(bounds[st], bounds[st + 1]):
                z = u[i]
                m = z >> k
                if m >= esc:
                    escapes[j] = m
                    j += 1
                    m = esc
                # m ones, then a zero: at most 25 bits
                length = m + one
                code = ((one << m) - one) << one
                if un + length < b64:
                    ua = (ua << length) | code
                    un += length
                else:  # un > 38: shifts stay below 64
                    spill = un + length - b64
                    uw[ui] = (ua << (b64 - un)) | (code >> spill)
                    ui += 1
                    ua = code & ((one << spill) - one)
                    un = spill
                if k:  # the remainder: k <= 62 bits
                    r = z & mask
                    if rn + k < b64:
                        ra = (ra << k) | r
                        rn += k
                    else:  # rn > 1
                        spill = rn + k - b64
                        rw[ri] = (ra << (b64 - rn)) | (r >> spill)
                        ri += 1
                        ra = r & ((one << spill) - one)
                        rn = spill
        if un:
            uw[ui] = ua << (b64 - un)
        if rn:
            rw[ri] = ra << (b64 - rn)

    @numba.njit(inline="always")
    def _peek(words, pos):
        """The 64 bits of a bit string from bit ``pos`` on (MSB first), read
        from its big-endian 64-bit words (zero words past its end)."""
        j = pos >> np.uint64(6)
        o = pos & np.uint64(63)
        # two shifts, as a shift by 64 (o = 0) is undefined
        return (words[j] << o) | ((words[j + np.uint64(1)] >> np.uint64(1)) >> (np.uint64(63) - o))

    @numba.njit
    def _ones(words, pos):
        """The length of the run of ones from bit ``pos`` (any length: the
        reference reads codes longer than an escape's)."""
        run = np.uint64(0)
        while True:
            ones = np.uint64(leading_zeros(~_peek(words, pos)))
            run += ones
            pos += ones
            if ones < np.uint64(64):
                return run

    @numba.njit(inline="always")
    def _signed(z):
        half = np.int64(z >> np.uint64(1))
        return half ^ -np.int64(z & np.uint64(1))  # zigzag back: half, or -half - 1

    @numba.njit(cache=True, nogil=True)
    def _decode(uw, ubits, escapes, rw, ks, plan, shift, parts, outp, H, W, lo, hi):
        """The values from the content's streams, each decoded and predicted
        as it is read, in coding order, into ``outp``: the tile with
        ``PAD`` zeros on every side (flat, as is its ``plan``), so that a
        neighbour outside the tile reads 0, the reference's zero padding,
        with no test.  ``uw`` and ``rw`` are the
        unary and remainder streams as big-endian words, ``ubits`` the unary
        stream's length in bits.  0, or 1 for a content the reference
        refuses (codes, escapes or quotients out of bounds, codes past the
        stream or bits after the last) or whose values are not all within
        ``lo .. hi`` (2^52, and the range of ``outp``'s dtype).

        The unary codes are read from a 64-bit window held in a register
        (refilled when fewer bits are left than the longest code), so a
        code costs a count of leading ones and a shift."""
        P = W + 2 * PAD
        esc = np.uint64(ESCAPE)
        one = np.uint64(1)
        upos = rpos = np.uint64(0)  # bits consumed of each stream
        window = np.uint64(0)  # the unary stream from upos on, MSB first
        avail = np.uint64(0)  # bits of it that are the stream's
        j = 0
        for p in range(parts.shape[0]):
            s, oy, ox, nn = parts[p, 1], parts[p, 2], parts[p, 3], parts[p, 4]
            k = np.uint64(ks[parts[p, 0]])
            lim = np.uint64(63) - k
            o0, o1, o2, o3 = _offsets(parts, p, P)
            n = (W - ox + s - 1) // s if ox < W else 0
            bad = False
            for y in range(oy, H, s):
                at = (y + PAD) * P + PAD + ox
                for kx in range(n):
                    c = at + kx * s
                    if avail <= esc:
                        window = _peek(uw, upos)
                        avail = np.uint64(64)
                    m = np.uint64(leading_zeros(~window))
                    if m < esc:
                        window <<= m + one
                        avail -= m + one
                        upos += m + one
                    else:  # an escape, or a longer code: read from the stream
                        m = _ones(uw, upos)
                        upos += m + one
                        avail = np.uint64(0)
                        if m == esc:
                            if j >= escapes.size:
                                return 1
                            m = escapes[j]
                            j += 1
                        if m >> lim:
                            return 1  # u = m << k | remainder would not fit 63 bits
                    z = m << k
                    if k:
                        z |= _peek(rw, rpos) >> (np.uint64(64) - k)
                        rpos += k
                    v = _signed(z)
                    if nn:
                        v += _predicted(outp, plan, shift, c, o0, o1, o2, o3)
                    bad |= (v > hi) | (v < lo)
                    outp[_u(c)] = v  # as outp's dtype: exact once checked
            # checked part by part, as the reference: later predictions stay exact;
            # a code ending past the stream is refused here (the window reads zeros there)
            if bad or upos > ubits:
                return 1
        if j != escapes.size:
            return 1
        # the last code's zero lies in the stream's last byte, and the bits after it are zeros
        if (upos - one) >> np.uint64(3) != (ubits >> np.uint64(3)) - one:
            return 1
        if upos < ubits and _peek(uw, upos) >> (np.uint64(64) - (ubits - upos)):
            return 1
        return 0


#: plans of read-only mask sums (the cached tiles of
#: :func:`tcscodec.masks.tile_mask_sum`, the same for every group), by identity
_PLANS: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}
#: bytes of plans kept at most: 64 default 512 x 512 tiles (a 4096^2 frame)
_PLANS_BYTES = 64 * 528 * 528 * 2
#: coding-order plans (:func:`_fill_coded`) of the mask sums in _PLANS, by
#: the same identity; each goes with its _PLANS entry
_CODED: dict[int, np.ndarray] = {}
#: bytes of them kept at most: 32 default tiles (a 2048 x 4096 frame).  A
#: tile beyond is coded from the padded plan: rebuilding its coding-order
#: plan costs more than it saves
_CODED_BYTES = 32 * 512 * 512 * 8
#: the largest value the coding-order plan's residuals take: every
#: dividend 2 s num + den (s <= 255, num <= 4 values, den <= 1020) is
#: then below 2^31
_CODED_MAX = (_FITS - 1 - 1020) // (2 * 255 * 4)


def _plan(csum: np.ndarray) -> tuple[np.ndarray, int]:
    """``(plan, shift)``: per pixel of the tile padded with ``PAD`` zeros
    (flat), ``den << shift | s``, its neighbours' mask sums and its own,
    all that a prediction reads of the mask sums (one load, not five).
    uint16 with ``shift`` 7 for mask sums up to 127 (all a writer makes),
    else uint32 with 8.  Kept for a read-only ``csum`` (the same for every
    group; it cannot change while this holds it)."""
    hit = _PLANS.get(id(csum))
    if hit is not None and hit[0] is csum and not csum.flags.writeable:
        return hit[1], hit[2]
    H, W = csum.shape
    csp = np.zeros((H + 2 * PAD, W + 2 * PAD), np.uint8)
    csp[PAD:PAD + H, PAD:PAD + W] = csum
    shift = 7 if int(csum.max()) <= 127 else 8
    plan = np.zeros(csp.size, np.uint16 if shift == 7 else np.uint32)
    _fill_plan(csp.reshape(-1), _PARTS, H, W, plan, shift)
    if not csum.flags.writeable and csum.base is None and plan.nbytes <= _PLANS_BYTES:
        plan.flags.writeable = False
        while _PLANS and sum(p.nbytes for _, p, _ in list(_PLANS.values())) + plan.nbytes > _PLANS_BYTES:
            try:  # the oldest goes first, with its coding-order plan
                oldest = next(iter(_PLANS))
                _PLANS.pop(oldest)
                _CODED.pop(oldest, None)
            except (KeyError, RuntimeError, StopIteration):  # another thread changed it first
                break
        _PLANS[id(csum)] = (csum, plan, shift)
    return plan, shift


def _coded_plan(csum: np.ndarray, plan: np.ndarray, shift: int) -> np.ndarray | None:
    """The coding-order plan of a ``csum`` whose padded ``plan`` is kept in
    _PLANS, made once (within :data:`_CODED_BYTES`); None where it is not
    kept (the padded plan serves)."""
    key = id(csum)
    entry = _PLANS.get(key)
    if entry is None or entry[0] is not csum or entry[1] is not plan:
        return None
    coded = _CODED.get(key)
    if coded is not None:
        return coded
    if sum(c.nbytes for c in list(_CODED.values())) + 8 * csum.size > _CODED_BYTES:
        return None
    coded = np.empty(csum.size, np.uint64)
    _fill_coded(plan, shift, _PARTS, *csum.shape, coded)
    coded.flags.writeable = False
    _CODED[key] = coded
    return coded


def _words(stream: np.ndarray) -> np.ndarray:
    """A bit string's bytes as big-endian uint64 words, with two zero words after."""
    padded = np.zeros(8 * (-(-stream.size // 8) + 2), np.uint8)
    padded[:stream.size] = stream
    return padded.view(">u8").astype(np.uint64)


def _usable(tile: np.ndarray, csum: np.ndarray) -> bool:
    """Whether the compiled coder takes this tile (the writer's: 2-D,
    uint8 mask sums of its shape); any other goes to the reference."""
    return (numba is not None and tile.ndim == 2 and tile.size > 0 and csum.dtype == np.uint8
            and csum.shape == tile.shape)


def _residual_dtype(largest: int) -> type:
    """The dtype that holds every zigzagged residual of a tile whose values
    are at most ``largest`` in magnitude: a prediction, the pixel's mask
    sum (at most 255) times its four neighbours' values over their mask
    sums (at least 1 where it is made), rounded, is at most
    ``4 x 255 x largest + 1``, so a residual at most
    ``2 x 1021 x largest + 3`` once zigzagged.  uint32 where that fits (half the memory traffic of the
    three passes over it), else uint64."""
    return np.uint32 if 2 * 1021 * largest + 3 < 2**32 else np.uint64


def encode_predicted(q: np.ndarray, csum: np.ndarray) -> bytes | None:
    """:func:`tcscodec.format.predictive.encode_predicted`, compiled."""
    if q.dtype.kind not in "iu" or not _usable(q, csum):
        return encode_predicted_reference(q, csum)
    lo, hi = (int(v) for v in _value_range(q)) if q.dtype.itemsize <= 4 else (int(np.min(q)), int(np.max(q)))
    if hi > MAX_ABS or lo < -MAX_ABS:  # values beyond 2^52 (64-bit dtypes only) are not predicted
        return None
    counts, bounds = _stage_bounds(q.shape)
    u: np.ndarray = np.empty(q.size, _residual_dtype(max(-lo, hi)))
    sums = np.zeros(N_STAGES, np.uint64)
    maxes = np.zeros(N_STAGES, np.uint64)
    H, W = q.shape
    qp = np.zeros((H + 2 * PAD, W + 2 * PAD), np.uint16 if 0 <= lo and hi <= 0xFFFF else q.dtype)
    qp[PAD:PAD + H, PAD:PAD + W] = q
    plan, shift = _plan(csum)
    coded = _coded_plan(csum, plan, shift) if 0 <= lo and hi <= _CODED_MAX else None
    if coded is not None:
        _residuals_coded(qp.reshape(-1), coded, _PARTS, H, W, u, sums, maxes)
    else:
        _residuals(qp.reshape(-1), plan, shift, _PARTS, H, W, u, sums, maxes)
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
    escapes = np.empty(n_esc, np.uint64)
    uw = np.empty(-(-unary_bits // 64), np.uint64)
    rw = np.empty(-(-rem_bits // 64), np.uint64)
    _pack(u, bounds, np.array(ks, np.int64), escapes, uw, rw)
    return b"".join([content_head(ks, n_esc, unary_size), escapes.astype("<u8").tobytes(),
                     uw.astype(">u8").tobytes()[:unary_size], rw.astype(">u8").tobytes()[:-(-rem_bits // 8)]])


def decode_predicted(content: bytes, csum: np.ndarray, dtype=None) -> np.ndarray:
    """:func:`tcscodec.format.predictive.decode_predicted`, compiled: with
    ``dtype``, the values are decoded into an array of it (the range check
    made as they are decoded); a content or value the reference refuses
    is decoded again by it, which raises its error."""
    out_dtype = np.dtype(np.int64 if dtype is None else dtype)
    if not _usable(csum, csum) or out_dtype.kind not in "iu" or not out_dtype.isnative:
        return fit_dtype(decode_predicted_reference(content, csum), dtype)
    ks, n_esc, unary_size = parse_head(content, csum.size)
    counts, _ = _stage_bounds(csum.shape)
    rem_at = HEAD_SIZE + 8 * n_esc + unary_size
    rem_bits = sum(c * k for c, k in zip(counts, ks, strict=True))
    if len(content) - rem_at != -(-rem_bits // 8):
        return fit_dtype(decode_predicted_reference(content, csum), dtype)  # raises its error
    buf = np.frombuffer(content, np.uint8)
    escapes = np.frombuffer(content, "<u8", n_esc, HEAD_SIZE)
    H, W = csum.shape
    outp = np.zeros((H + 2 * PAD, W + 2 * PAD), out_dtype)
    info = np.iinfo(out_dtype)
    if _decode(_words(buf[HEAD_SIZE + 8 * n_esc:rem_at]), np.uint64(8 * unary_size), escapes,
               _words(buf[rem_at:]), np.array(ks, np.int64), *_plan(csum), _PARTS, outp.reshape(-1), H, W,
               max(info.min, -MAX_ABS), min(info.max, MAX_ABS)):
        return fit_dtype(decode_predicted_reference(content, csum), dtype)  # raises its error
    return outp[PAD:PAD + H, PAD:PAD + W]  # a view, as the reference's


def install() -> None:
    """Route the format layer's predict-rice coding through these kernels."""
    if numba is not None:
        predictive.use_kernels(encode_predicted, decode_predicted)
