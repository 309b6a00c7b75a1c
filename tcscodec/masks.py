"""The spec's pseudo-random binary masks (generator id 1, ``splitmix64-v1``).

A mask bit is a pure function of ``(seed, b, y, x)``, so any tile, region or
frame of the masks can be computed on its own, in any language, on the CPU
or the GPU, bit for bit (``spec/tcs-format.md``, section "Masks")::

    GOLDEN = 0x9E3779B97F4A7C15
    mix64(z) = SplitMix64 finaliser (shifts 30, 27, 31)
    key      = mix64(seed + GOLDEN)
    counter  = (b << 48) | (y << 24) | (x >> 6)
    word     = mix64(key + (counter + 1) * GOLDEN)      # all mod 2**64
    C_b[y, x] = (word >> (x & 63)) & 1

One 64-bit word holds the bits of 64 neighbouring pixels of a row, which
makes the bit-packed form (used by the CUDA encoder) the natural one.
P(bit = 1) = 1/2.  The same B masks serve every group of a movie.
"""

from __future__ import annotations

import functools
import secrets

import numpy as np

from . import cpu_kernels
from .errors import TcsMemoryError, TcsTypeError, TcsValueError
from .format.region import check_region

__all__ = [
    "GENERATOR_ID",
    "GENERATOR_NAME",
    "GOLDEN",
    "check_seed",
    "MAX_HEIGHT",
    "MAX_WIDTH",
    "mix64",
    "random_seed",
    "mask_words",
    "packed_masks",
    "unpack_words",
    "masks",
    "mask_frame",
    "mask_sum",
    "measured_mean",
    "stitched_mask_sum",
    "tile_mask_sum",
]

GENERATOR_ID = 1
GENERATOR_NAME = "splitmix64-v1"
MAX_HEIGHT = 1 << 24
#: masks() unpacks this many mask bits (bytes) at a time
_MASK_BAND_BITS = 1 << 22
MAX_WIDTH = 1 << 30

_M64 = (1 << 64) - 1
#: the SplitMix64 increment (2**64 / golden ratio); the CUDA kernels use it too
GOLDEN = 0x9E3779B97F4A7C15
_MUL1 = 0xBF58476D1CE4E5B9
_MUL2 = 0x94D049BB133111EB


def mix64(z):
    """SplitMix64 finaliser of a Python int or a uint64 array (mod 2**64)."""
    if isinstance(z, (int, np.integer)):
        z = int(z) & _M64
        z = ((z ^ (z >> 30)) * _MUL1) & _M64
        z = ((z ^ (z >> 27)) * _MUL2) & _M64
        return z ^ (z >> 31)
    z = np.asarray(z, dtype=np.uint64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(_MUL1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(_MUL2)
    return z ^ (z >> np.uint64(31))


def random_seed() -> int:
    """A fresh 64-bit mask seed from the operating system's entropy."""
    return secrets.randbits(64)


def check_seed(seed) -> int:
    """Validate a mask seed (an integer in 0..2**64-1) and return it as an int."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TcsTypeError(f"mask seed must be an integer, not {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed <= _M64:
        raise TcsValueError(f"mask seed must be in 0..2**64-1, got {seed}")
    return seed


def mask_words(seed: int, frames, rows, words) -> np.ndarray:
    """The 64-bit mask words for frame indices ``frames``, rows ``rows`` and
    word columns ``words`` (each a range or 1-D integer sequence).

    Returns a uint64 array of shape ``(len(frames), len(rows), len(words))``;
    bit ``x & 63`` of word ``[b, y, x >> 6]`` is mask ``C_b[y, x]``.
    """
    key = np.uint64(mix64(check_seed(seed) + GOLDEN))
    b = np.asarray(frames, dtype=np.uint64)[:, None, None]
    y = np.asarray(rows, dtype=np.uint64)[None, :, None]
    w = np.asarray(words, dtype=np.uint64)[None, None, :]
    counter = (b << np.uint64(48)) | (y << np.uint64(24)) | w
    with np.errstate(over="ignore"):
        return mix64(key + (counter + np.uint64(1)) * np.uint64(GOLDEN))


def packed_masks(seed: int, B: int, height: int, width: int) -> np.ndarray:
    """All B masks of an ``height x width`` frame, bit-packed.

    Returns uint64 ``(B, height, ceil(width / 64))``; padding bits beyond
    ``width`` are whatever the generator gives (they are never used).
    :func:`mask_words`' numbers, from a compiled kernel where numba is
    there (one pass, no temporaries: 7x faster).
    """
    words = cpu_kernels.mask_words_all(mix64(check_seed(seed) + GOLDEN), B, height, width) if B >= 0 else None
    if words is None:  # no numba
        return mask_words(seed, range(B), range(height), range((width + 63) // 64))
    return words


def unpack_words(words: np.ndarray, x0: int, x1: int, word0: int = 0) -> np.ndarray:
    """Unpack uint64 mask words (last axis) to 0/1 uint8 for columns x0:x1.

    ``word0`` is the word-column index of ``words[..., 0]``.
    """
    raw = np.ascontiguousarray(words, dtype="<u8").view(np.uint8)
    bits = np.unpackbits(raw, axis=-1, bitorder="little")
    start = x0 - 64 * word0
    return bits[..., start : start + (x1 - x0)]


def masks(seed: int, B: int, height: int, width: int, region=None) -> np.ndarray:
    """The B masks as a 0/1 uint8 array ``(B, h, w)``.

    ``region`` is ``(y0, y1, x0, x1)`` to compute only that window of the
    ``height x width`` frame (default: all of it).  The output is allocated
    first (:class:`~tcscodec.TcsMemoryError` if it cannot be) and filled in
    bands of rows, so the work memory stays a few MiB at any frame size.
    """
    y0, y1, x0, x1 = check_region(region, height, width, allow_empty=True)
    if height > MAX_HEIGHT or width > MAX_WIDTH:
        raise TcsValueError(f"frame {height}x{width} exceeds the mask generator's range")
    try:
        out = np.empty((B, y1 - y0, x1 - x0), np.uint8)
    except MemoryError:
        raise TcsMemoryError(f"masks of {B} x {y1 - y0} x {x1 - x0} pixels do not fit in memory") from None
    w0, w1 = x0 // 64, (x1 + 63) // 64
    band = max(1, _MASK_BAND_BITS // max(1, B * 64 * (w1 - w0)))
    for a in range(y0, y1, band):
        b = min(y1, a + band)
        words = mask_words(seed, range(B), range(a, b), range(w0, max(w1, w0)))
        out[:, a - y0:b - y0] = unpack_words(words, x0, x1, w0)
    return out


def mask_frame(seed: int, b: int, height: int, width: int) -> np.ndarray:
    """Mask ``C_b`` of one frame as a 0/1 uint8 array ``(height, width)``."""
    words = mask_words(seed, [b], range(height), range((width + 63) // 64))
    return unpack_words(words, 0, width)[0]


def mask_sum(seed: int, n: int, height: int, width: int, band: int = 256, region=None) -> np.ndarray:
    """``sum_{b<n} C_b`` as uint8 ``(height, width)``: compiled, each mask
    word made once and its bits added (:func:`tcscodec.cpu_kernels.mask_sum`);
    without numba (or beyond 255 masks) in numpy, in bands of rows so that
    the n masks are never all in memory at once (4096^2 x 30 masks are 480
    MiB as bytes).  ``region`` ``(y0, y1, x0, x1)`` limits it to that window
    of the frame."""
    ry0, ry1, x0, x1 = (0, height, 0, width) if region is None else region
    if cpu_kernels.numba is not None and 0 <= n <= 255:
        # compiled: each mask word made once and its bits added, no mask array
        check_region((ry0, ry1, x0, x1), height, width, allow_empty=True)
        if height > MAX_HEIGHT or width > MAX_WIDTH:
            raise TcsValueError(f"frame {height}x{width} exceeds the mask generator's range")
        out = cpu_kernels.mask_sum(mix64(check_seed(seed) + GOLDEN), n, (ry0, ry1, x0, x1))
        if out is not None:
            return out
    out = np.empty((ry1 - ry0, x1 - x0), np.uint8)
    for y0 in range(ry0, ry1, band):
        y1 = min(ry1, y0 + band)
        out[y0 - ry0:y1 - ry0] = masks(seed, n, height, width, (y0, y1, x0, x1)).sum(0, dtype=np.uint8)
    return out


def measured_mean(y: np.ndarray, csum: np.ndarray) -> np.ndarray:
    """``Y / sum C``: the mean of the frames each pixel measured, NaN where
    no frame measured it (``csum == 0``), in the dtype of ``y / csum``."""
    return np.where(csum > 0, y / np.maximum(csum, 1), np.nan)


@functools.lru_cache(maxsize=256)
def tile_mask_sum(seed: int, n: int, height: int, width: int, region: tuple[int, int, int, int]) -> np.ndarray:
    """:func:`mask_sum` over one tile, cached and read-only: every group of a
    movie has the same masks, so writer and reader compute each tile's once
    (the ``predict-rice`` codec needs them for every record).  The cache
    holds 256 tiles: 64 MiB at most with the default 512 x 512 tiles."""
    out = mask_sum(seed, n, height, width, region=region)
    out.flags.writeable = False
    return out


def stitched_mask_sum(seed: int, n: int, height: int, width: int, tiles, rows=None) -> np.ndarray:
    """``sum_{b < n} C_b`` over the whole frame (uint8) from the ``tiles``'
    cached sums (:func:`tile_mask_sum`; ``tiles`` their ``(y0, y1, x0, x1)``
    bounds, covering the frame), filled only in the ``(start, stop)`` row
    ranges ``rows`` (all rows where None) and zero elsewhere: the writer's
    auto step reads a few bands of rows of a large frame
    (:func:`tcscodec.quantize.noise_rows`), and the tiles' sums are cached
    for its records anyway."""
    out = np.zeros((height, width), np.uint8)
    for y0, y1, x0, x1 in tiles:
        for a, b in rows if rows is not None else [(y0, y1)]:
            a, b = max(a, y0), min(b, y1)
            if a < b:
                out[a:b, x0:x1] = tile_mask_sum(seed, n, height, width, (y0, y1, x0, x1))[a - y0:b - y0]
    return out
