"""Record codec 3, ``predict-rice``: mask-aware prediction + Rice coding (spec section 4.2).

A measurement ``Y = sum_b C_b X_b`` looks like noise to a general-purpose
compressor: each pixel sums a random subset of the frames, so neighbouring
values differ by the mask pattern even where the scene is flat.  Its
entropy is large (4-6 bits per pixel for quantised HRTEM measurements),
while the mask sums ``s = sum_b C_b`` are known to writer and reader alike.
Dividing by them undoes the mask pattern: a pixel is predicted as ``s``
times the mean of ``Y / s`` of its neighbours, and only the residual is
stored.  That halves typical record sizes (about 3 bits per pixel).

Pixels are coded coarse to fine (an interlaced pyramid, like Adam7): first
every 16th pixel of every 16th row, then for spacing ``s = 16, 8, 4, 2``
the centres of the ``s x s`` cells (from their 4 diagonal corners) and the
edge midpoints (from their 4 axis neighbours).  Each stage is predicted
from pixels already coded, so the reader decodes a whole stage in one
vectorised step.  Residuals are zigzag-mapped and Rice coded with one
parameter per stage; unary quotients and fixed-width remainders go to two
separate bit streams so that both sides are vectorised too.

This module is pure numpy; the caller passes the tile's mask sums.  Its
numpy coder is the reference (the specification in code); a faster coder
of the same bytes can be installed with :func:`use_kernels`, as
:mod:`tcscodec.rice_kernels` does when tcscodec is imported, so that this
layer stays free of compilers.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np

from ..errors import TcsFormatError

__all__ = ["BASE_SPACING", "ESCAPE", "MAX_ABS", "HEAD_SIZE", "N_STAGES", "encode_predicted", "decode_predicted",
           "encode_predicted_reference", "decode_predicted_reference", "use_kernels", "stage_specs",
           "stage_slices", "stage_counts", "content_head", "parse_head", "fit_dtype"]

#: spacing of the base grid: the pixels coded first, with no prediction
BASE_SPACING = 16
#: unary quotients of this size are escapes: the true quotient is in the escape list
ESCAPE = 24
#: stored values up to this magnitude are predicted (keeps the integer arithmetic inside int64)
MAX_ABS = 1 << 52

MODE_STORED, MODE_PREDICTED = 0, 1
_HEAD = struct.Struct("<BB")
_COUNTS = struct.Struct("<II")


def _spacings() -> list[int]:
    s, out = BASE_SPACING, []
    while s >= 2:
        out.append(s)
        s //= 2
    return out


_Offsets = list[tuple[int, int]]


def stage_specs() -> list[tuple[int, _Offsets, _Offsets]]:
    """Per stage, in coding order: (spacing, offsets of its pixel sets,
    neighbour offsets), in pixels (spec section 4.2's table); the base
    stage has no neighbours."""
    specs: list[tuple[int, _Offsets, _Offsets]] = [(BASE_SPACING, [(0, 0)], [])]
    for s in _spacings():
        h = s // 2
        specs.append((s, [(h, h)], [(-h, -h), (-h, h), (h, -h), (h, h)]))
        specs.append((s, [(h, 0), (0, h)], [(-h, 0), (h, 0), (0, -h), (0, h)]))
    return specs


_STAGES = stage_specs()
N_STAGES = len(_STAGES)  # 9
#: bytes before the escape list: mode, stage count, the Rice parameters, the two counts
HEAD_SIZE = _HEAD.size + N_STAGES + _COUNTS.size


def stage_slices(shape):
    """The coding order of a tile of ``shape``, for arrays zero-padded by
    ``BASE_SPACING`` on every side.

    Yields, per stage, a list of ``(target, neighbours)`` where ``target`` is
    the 2-D slice of the stage's pixel set (row-major order) and
    ``neighbours`` the slices of its neighbours, each of the same shape.
    """
    h, w = shape
    p = BASE_SPACING
    for s, sets, nbrs in _STAGES:
        parts = []
        for oy, ox in sets:
            tgt = (slice(p + oy, p + h, s), slice(p + ox, p + w, s))
            nb = [(slice(p + oy + dy, p + h + dy, s), slice(p + ox + dx, p + w + dx, s)) for dy, dx in nbrs]
            parts.append((tgt, nb))
        yield parts


def _slice_size(target) -> int:
    rows, cols = target
    return len(range(rows.start, rows.stop, rows.step)) * len(range(cols.start, cols.stop, cols.step))


def _predict(qp: np.ndarray, sp: np.ndarray, tgt, nbrs) -> np.ndarray:
    """``floor((2 s num + den) / (2 den))`` (0 where den = 0): s times the
    neighbours' ratio of sums, rounded half up, in exact int64 arithmetic."""
    if not nbrs:
        return np.zeros(qp[tgt].shape, np.int64)
    num = sum(qp[n] for n in nbrs)
    den = sum(sp[n] for n in nbrs)
    s = sp[tgt]
    return np.where(den > 0, (2 * s * num + den) // np.maximum(2 * den, 1), 0)


def _padded(a: np.ndarray) -> np.ndarray:
    return np.pad(a.astype(np.int64, copy=False), BASE_SPACING)


def _rice_parameter(u: np.ndarray) -> int:
    """The Rice parameter in a window around log2(mean) with the fewest bits."""
    if u.size == 0:
        return 0
    k0 = int(np.log2(float(u.mean()) + 1.0))
    best: tuple[int, int] | None = None
    for k in range(max(0, k0 - 2), min(62, k0 + 2) + 1):
        m = u >> np.uint64(k)
        esc = int(np.count_nonzero(m >= ESCAPE))
        bits = int(np.minimum(m, ESCAPE).sum()) + u.size * (k + 1) + 64 * esc
        if best is None or bits < best[0]:
            best = (bits, k)
    assert best is not None  # the window holds at least one k
    return best[1]


def _pack_fields(values: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """The ``k``-bit fields of ``values``, MSB first: (bytes, number of bits).

    For ``k <= 8`` eight fields fill exactly ``k`` bytes, built as one
    big-endian uint64 per eight fields (no array of single bits)."""
    n = values.size
    if k == 0 or n == 0:
        return np.zeros(0, np.uint8), 0
    if k <= 8:
        m = -(-n // 8)
        v = np.zeros(8 * m, np.uint64)
        v[:n] = values
        shifts = np.arange(7, -1, -1, dtype=np.uint64) * np.uint64(k)
        acc = np.bitwise_or.reduce(v.reshape(m, 8) << shifts, axis=1)
        packed = acc.astype(">u8").view(np.uint8).reshape(m, 8)[:, 8 - k:].ravel()
    else:
        bits = (values[:, None] >> np.arange(k - 1, -1, -1, dtype=np.uint64)) & np.uint64(1)
        packed = np.packbits(bits.astype(np.uint8).ravel())
    return packed[: -(-n * k // 8)], n * k


def _concat_bits(chunks) -> np.ndarray:
    """Concatenate ``(bytes, number of bits)`` bit strings (MSB first; bits
    past the count are zero) into one byte array, zero-padded."""
    total = sum(nbits for _, nbits in chunks)
    out = np.zeros(-(-total // 8) + 1, np.uint8)
    pos = 0
    for data, nbits in chunks:
        byte, off = divmod(pos, 8)
        d = data.astype(np.uint16)
        out[byte:byte + d.size] |= (d >> off).astype(np.uint8)
        if off:
            out[byte + 1:byte + 1 + d.size] |= ((d << (8 - off)) & 0xFF).astype(np.uint8)
        pos += nbits
    return out[: -(-total // 8)]


def _take_bits(buf: np.ndarray, pos: int, nbits: int) -> np.ndarray:
    """Bits ``[pos, pos + nbits)`` of ``buf`` (MSB first), shifted to start a byte."""
    byte, off = divmod(pos, 8)
    size = -(-nbits // 8)
    seg = np.zeros(size + 1, np.uint16)
    part = buf[byte:byte + size + 1]
    seg[:part.size] = part
    return (((seg[:-1] << off) | (seg[1:] >> (8 - off))) & 0xFF).astype(np.uint8)


#: fields wider than a byte are unpacked this many at a time, so that the
#: bit array (k bytes per field) stays small whatever the tile's size
_FIELD_CHUNK = 1 << 11


def _unpack_fields(buf: np.ndarray, pos: int, count: int, k: int) -> np.ndarray:
    """``count`` ``k``-bit fields starting at bit ``pos`` of ``buf``."""
    if k == 0 or count == 0:
        return np.zeros(count, np.uint64)
    if k <= 8:
        data = _take_bits(buf, pos, count * k)
        m = -(-count // 8)
        flat = np.zeros(m * k, np.uint8)
        flat[:data.size] = data
        words = np.zeros((m, 8), np.uint8)
        words[:, 8 - k:] = flat.reshape(m, k)
        acc = words.view(">u8").ravel().astype(np.uint64)
        shifts = np.arange(7, -1, -1, dtype=np.uint64) * np.uint64(k)
        return ((acc[:, None] >> shifts) & np.uint64((1 << k) - 1)).ravel()[:count]
    out = np.empty(count, np.uint64)
    weights = np.uint64(1) << np.arange(k - 1, -1, -1, dtype=np.uint64)
    for start in range(0, count, _FIELD_CHUNK):
        n = min(_FIELD_CHUNK, count - start)
        bits = np.unpackbits(_take_bits(buf, pos + start * k, n * k))[: n * k].reshape(n, k)
        out[start:start + n] = (bits.astype(np.uint64) * weights).sum(1, dtype=np.uint64)
    return out


def stage_counts(shape) -> list[int]:
    """The number of pixels of each stage of a tile of ``shape``, in coding order."""
    return [sum(_slice_size(t) for t, _ in parts) for parts in stage_slices(shape)]


def content_head(ks, n_escapes: int, unary_size: int) -> bytes:
    """The first :data:`HEAD_SIZE` bytes of a mode-1 content: mode, stage
    count, the stages' Rice parameters ``ks``, escape count, unary stream size."""
    return _HEAD.pack(MODE_PREDICTED, N_STAGES) + bytes(ks) + _COUNTS.pack(n_escapes, unary_size)


def parse_head(content: bytes, n: int) -> tuple[list[int], int, int]:
    """``(ks, n_escapes, unary_size)`` of a mode-1 content for ``n`` values,
    checked before anything is unpacked: a code is at most ESCAPE + 1 bits,
    an escape is one per value at most, and both must lie in the content."""
    if len(content) < HEAD_SIZE:
        raise TcsFormatError("predict-rice content is shorter than its header")
    mode, n_stages = _HEAD.unpack_from(content)
    if mode != MODE_PREDICTED or n_stages != N_STAGES:
        raise TcsFormatError(f"predict-rice content has mode {mode} and {n_stages} stages, expected 1 and {N_STAGES}")
    ks = list(content[_HEAD.size:_HEAD.size + N_STAGES])
    if max(ks) > 62:
        raise TcsFormatError(f"predict-rice Rice parameter {max(ks)} is above 62")
    n_esc, unary_size = _COUNTS.unpack_from(content, _HEAD.size + N_STAGES)
    if n_esc > n:
        raise TcsFormatError(f"predict-rice content lists {n_esc} escapes for {n} values")
    if unary_size > -(-n * (ESCAPE + 1) // 8):
        raise TcsFormatError(f"predict-rice unary stream of {unary_size} bytes is too long for {n} values")
    if HEAD_SIZE + 8 * n_esc + unary_size > len(content):
        raise TcsFormatError("predict-rice escapes or unary stream run past the content")
    return ks, n_esc, unary_size


#: the installed coder, ``(encode, decode)`` with the signatures of
#: :func:`encode_predicted` and :func:`decode_predicted` (``decode(content,
#: csum, dtype)``); None: the reference
_kernels: tuple[Callable, Callable] | None = None


def use_kernels(encode: Callable | None, decode: Callable | None = None) -> tuple[Callable, Callable] | None:
    """Route :func:`encode_predicted` and :func:`decode_predicted` to
    ``encode`` and ``decode``, which must give the reference's bytes, values
    and errors exactly (None: back to the reference).  Returns the pair
    installed before."""
    global _kernels
    before = _kernels
    if encode is None or decode is None:
        _kernels = None
    else:
        _kernels = (encode, decode)
    return before


def encode_predicted(q: np.ndarray, csum: np.ndarray) -> bytes | None:
    """Mode-1 content for integer tile ``q`` with mask sums ``csum``, or
    None when the tile's values are too large to predict (``|q| > 2^52``).
    The installed coder (:func:`use_kernels`), else the reference."""
    if _kernels is not None:
        return _kernels[0](q, csum)
    return encode_predicted_reference(q, csum)


def decode_predicted(content: bytes, csum: np.ndarray, dtype=None) -> np.ndarray:
    """Inverse of :func:`encode_predicted`: ``content`` is the whole mode-1
    payload, mode byte first; returns int64 values of ``csum``'s shape, or
    with an integer ``dtype`` (native byte order) the values as that dtype,
    :class:`TcsFormatError` where one does not fit it.  The installed coder
    (:func:`use_kernels`), else the reference."""
    if _kernels is not None:
        return _kernels[1](content, csum, dtype)
    return fit_dtype(decode_predicted_reference(content, csum), dtype)


def fit_dtype(q: np.ndarray, dtype) -> np.ndarray:
    """Decoded values ``q`` (int64) as ``dtype``, refused where one does not
    fit it (None: ``q`` as it is)."""
    if dtype is None:
        return q
    dtype = np.dtype(dtype)
    info = np.iinfo(dtype)
    if q.size and (int(q.min()) < info.min or int(q.max()) > info.max):
        raise TcsFormatError(f"predict-rice values {q.min()}..{q.max()} do not fit {dtype.name}")
    return q.astype(dtype)


def encode_predicted_reference(q: np.ndarray, csum: np.ndarray) -> bytes | None:
    """:func:`encode_predicted` in numpy, stage by stage: the specification."""
    if q.size and (q.dtype.kind not in "iu" or int(np.max(q)) > MAX_ABS or int(np.min(q)) < -MAX_ABS):
        return None
    qp, sp = _padded(q), _padded(csum)
    ks, quotients, remainders = [], [], []
    for parts in stage_slices(q.shape):
        r = np.concatenate([(qp[t] - _predict(qp, sp, t, nb)).ravel() for t, nb in parts])
        u = np.where(r >= 0, 2 * r, -2 * r - 1).astype(np.uint64)  # zigzag
        k = _rice_parameter(u)
        ks.append(k)
        quotients.append(u >> np.uint64(k))
        remainders.append(_pack_fields(u & np.uint64((1 << k) - 1), k))
    m = np.concatenate(quotients)
    escapes = m[m >= ESCAPE]
    unary_len = np.minimum(m, ESCAPE).astype(np.int64) + 1
    unary = np.ones(int(unary_len.sum()), np.uint8)
    unary[np.cumsum(unary_len) - 1] = 0  # each code ends with a 0 bit
    unary_bytes = np.packbits(unary).tobytes()
    return b"".join([
        content_head(ks, escapes.size, len(unary_bytes)),
        escapes.astype("<u8").tobytes(), unary_bytes,
        _concat_bits(remainders).tobytes(),
    ])


def decode_predicted_reference(content: bytes, csum: np.ndarray) -> np.ndarray:
    """:func:`decode_predicted` in numpy, stage by stage: the specification."""
    shape = csum.shape
    n = int(np.prod(shape))
    ks, n_esc, unary_size = parse_head(content, n)
    pos = HEAD_SIZE + 8 * n_esc
    escapes = np.frombuffer(content, "<u8", n_esc, HEAD_SIZE).astype(np.uint64)
    unary = np.unpackbits(np.frombuffer(content, np.uint8, unary_size, pos))
    n_zero = unary.size - int(np.count_nonzero(unary))
    if not n <= n_zero < n + 8:  # the last byte's zero padding adds up to 7
        raise TcsFormatError(f"predict-rice unary stream holds {n_zero} codes where {n} are expected")
    ends = np.flatnonzero(unary == 0)[:n]
    if ends[n - 1] // 8 != unary_size - 1 or n_zero - n != unary.size - 1 - int(ends[n - 1]):
        raise TcsFormatError(f"predict-rice unary stream has bits after its {n} codes")
    del unary
    m = np.diff(ends, prepend=-1).astype(np.uint64) - np.uint64(1)
    is_esc = m == ESCAPE
    if int(is_esc.sum()) != n_esc:
        raise TcsFormatError(f"predict-rice content lists {n_esc} escapes but its codes hold {int(is_esc.sum())}")
    m[is_esc] = escapes
    rem = np.frombuffer(content, np.uint8, offset=pos + unary_size)
    stages = list(stage_slices(shape))
    counts = stage_counts(shape)
    total = sum(c * k for c, k in zip(counts, ks, strict=True))
    if rem.size != -(-total // 8):
        raise TcsFormatError(f"predict-rice remainder stream holds {rem.size} bytes, expected {-(-total // 8)}")
    qp, sp = np.zeros(np.add(shape, 2 * BASE_SPACING), np.int64), _padded(csum)
    done = bits = 0
    for i, (k, count, parts) in enumerate(zip(ks, counts, stages, strict=True)):
        quotients = m[done:done + count]
        # u = (m << k) | remainder must stay below 2^63: an escaped quotient
        # beyond that would wrap in uint64 and decode as a small value.
        if count and int(quotients.max()) >> (63 - k):
            raise TcsFormatError(f"predict-rice stage {i} has an escaped quotient "
                                 f"{int(quotients.max())} out of range for k = {k}")
        u = (quotients << np.uint64(k)) | _unpack_fields(rem, bits, count, k)
        half = (u >> np.uint64(1)).astype(np.int64)
        r = np.where(u & np.uint64(1), -half - 1, half)
        at = 0
        for t, nb in parts:
            size = qp[t].size
            # |r| < 2^62 and |prediction| <= 2^60 (values so far within
            # 2^52, mask sums <= 64): the sum cannot overflow int64.
            values = r[at:at + size].reshape(qp[t].shape) + _predict(qp, sp, t, nb)
            if values.size and (int(values.max()) > MAX_ABS or int(values.min()) < -MAX_ABS):
                raise TcsFormatError(f"predict-rice stage {i} decodes values beyond 2^52")
            qp[t] = values
            at += size
        done, bits = done + count, bits + count * k
    p = BASE_SPACING
    return qp[p:p + shape[0], p:p + shape[1]]
