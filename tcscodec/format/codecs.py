"""Record payload codecs (spec section 4) as small classes registered by id,
in the spirit of numcodecs: each says how it encodes and decodes a tile,
its configuration, the oldest format version that has it, and whether it
needs the tile's mask sums.

The header's codec table (:data:`CODECS`), the writer and the CLI's
``--codec`` all read this registry; :func:`register_codec` adds a codec.
Pure Python + numpy + zstandard, like the rest of the format layer.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import zstandard

from ..errors import TcsFormatError, TcsValueError
from .predictive import MODE_PREDICTED, MODE_STORED, decode_predicted, encode_predicted

__all__ = ["CODECS", "RecordCodec", "register_codec", "get_codec", "codec_class", "codec_id"]

#: record codec id -> name: the table the header writes and reads (filled by register_codec)
CODECS: dict[int, str] = {}
_CLASSES: dict[str, type[RecordCodec]] = {}
#: predict-rice tiles coded in fewer bits per pixel than this are also
#: tried as stored (zstd) payloads, which win on sparse electron counts...
_SPARSE_BITS = 2
#: ...when at least this fraction of their values is zero.  Elsewhere the
#: measurement carries the masks' pattern (a constant scene gives
#: Y = x sum_b C_b), which the prediction removes and zstd cannot: zstd won
#: only on tiles with 61 % zeros or more, of 186 tiles below 2 bits/px
#: (bench/stored_trial.py: real micrographs, flat and half-blank scenes,
#: 0.005-200 e-/px, B = 4-30, lossless and auto steps), and its trial costs
#: twice the Rice code.
_SPARSE_ZEROS = 0.5


class RecordCodec:
    """A record payload codec: one tile of the stored dtype <-> bytes.

    Subclasses set :attr:`codec_id` (the byte in the header and in every
    record), :attr:`name`, :attr:`min_version` and :attr:`needs_mask_sums`,
    and implement :meth:`encode` and :meth:`decode`.
    """

    codec_id: ClassVar[int]
    name: ClassVar[str]
    #: files are written with the oldest version that has their codec, so
    #: that older readers keep reading every file that does not use a newer one
    min_version: ClassVar[tuple[int, int]] = (1, 0)
    #: whether integer tiles are coded against ``sum_b C_b`` over the tile
    needs_mask_sums: ClassVar[bool] = False

    def __init__(self, level: int = 3):
        self.level = int(level)

    def get_config(self) -> dict[str, Any]:
        """The codec as a JSON dict (numcodecs' ``get_config``)."""
        return {"id": self.name, "level": self.level}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> RecordCodec:
        """Inverse of :meth:`get_config`."""
        config = dict(config)
        return get_codec(config.pop("id"), **config)

    def uses_mask_sums(self, dtype) -> bool:
        """Whether tiles of stored ``dtype`` need their mask sums to code."""
        return self.needs_mask_sums and np.dtype(dtype).kind in "iu"

    def encode(self, tile: np.ndarray, csum: np.ndarray | None = None) -> bytes:
        raise NotImplementedError

    def decode(self, payload: bytes, dtype: np.dtype, shape, csum: np.ndarray | None = None) -> np.ndarray:
        """The tile of little-endian ``dtype`` and ``shape`` (native order is
        restored by the caller)."""
        raise NotImplementedError


def register_codec(cls: type[RecordCodec]) -> type[RecordCodec]:
    """Class decorator: make ``cls`` known by its id and name."""
    if CODECS.get(cls.codec_id, cls.name) != cls.name or _CLASSES.get(cls.name, cls) is not cls:
        raise TcsValueError(f"record codec {cls.codec_id} / {cls.name!r} is already registered")
    CODECS[cls.codec_id] = cls.name
    _CLASSES[cls.name] = cls
    return cls


def codec_class(name: str) -> type[RecordCodec]:
    """The codec class registered as ``name``."""
    try:
        return _CLASSES[name]
    except KeyError:
        raise TcsValueError(f"unknown codec {name!r}; known: {', '.join(_CLASSES)}") from None


def codec_id(name: str) -> int:
    """The id byte of codec ``name``."""
    return codec_class(name).codec_id


def get_codec(name: str, **config) -> RecordCodec:
    """A codec instance from its name and configuration (``level``)."""
    return codec_class(name)(**config)


def _zstd_frame(tile: np.ndarray, shuffle: bool, level: int) -> bytes:
    raw = np.ascontiguousarray(tile, dtype=tile.dtype.newbyteorder("<"))
    if shuffle and raw.dtype.itemsize > 1:
        raw = raw.view(np.uint8).reshape(-1, raw.dtype.itemsize).T.copy()
    cctx = zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=True)
    return cctx.compress(raw.tobytes())


def max_payload_size(n_elements: int) -> int:
    """The largest payload a record of a tile of ``n_elements`` may have
    (spec section 4): above any codec's worst case (zstd's bound for 8-byte
    elements is about 8.03 bytes per element, predict-rice's 18.9), so a
    damaged ``payload_size`` is refused before it is read."""
    return 1024 + 20 * n_elements


def _unzstd_frame(payload: bytes, shuffle: bool, dtype: np.dtype, shape) -> np.ndarray:
    """One zstd frame that must hold exactly the tile's bytes.

    Output is capped at the tile's size and the frame's declared content
    size is never trusted: a frame declaring another size is refused before
    anything is allocated, and one that declares none is decompressed into
    a buffer of the tile's size, failing as soon as it would overflow it (a
    32 KB frame can declare, and fill, 1 GiB).  The window is capped at the
    tile's size too, and bytes after the frame are refused.
    """
    n = int(np.prod(shape)) * dtype.itemsize
    try:
        declared = zstandard.frame_content_size(payload)
        if declared not in (-1, n):
            raise TcsFormatError(f"zstd frame declares {declared:,} bytes, the tile holds {n:,}")
        window = 1 << max(10, (n - 1).bit_length())
        raw = zstandard.ZstdDecompressor(max_window_size=window).decompress(
            payload, max_output_size=n, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise TcsFormatError(f"payload does not decompress: {exc}") from None
    if len(raw) != n:
        raise TcsFormatError(f"payload holds {len(raw)} bytes, expected {n}")
    arr = np.frombuffer(raw, np.uint8)
    if shuffle and dtype.itemsize > 1:
        arr = arr.reshape(dtype.itemsize, -1).T.copy()
    return arr.view(dtype).reshape(shape)


@register_codec
class ZstdCodec(RecordCodec):
    """One zstd frame of the values."""

    codec_id = 1
    name = "zstd"
    shuffle = False

    def encode(self, tile, csum=None):
        return _zstd_frame(tile, self.shuffle, self.level)

    def decode(self, payload, dtype, shape, csum=None):
        return _unzstd_frame(payload, self.shuffle, dtype, shape)


@register_codec
class ShuffleZstdCodec(ZstdCodec):
    """Byte k of every element grouped together first (the blosc/HDF5
    shuffle filter): the high bytes of a measurement are nearly constant,
    which zstd then codes in few bits."""

    codec_id = 2
    name = "shuffle-zstd"
    shuffle = True


@register_codec
class PredictRiceCodec(RecordCodec):
    """Integer tiles predicted from their neighbours and mask sums and Rice
    coded (:mod:`.predictive`); the shuffle-zstd frame behind a mode byte
    where prediction does not apply (float values, values beyond 2^52),
    where it would not be smaller than the raw values, and where that frame
    is smaller (sparse counts, below 2 bits per pixel)."""

    codec_id = 3
    name = "predict-rice"
    min_version = (1, 1)
    needs_mask_sums = True

    def encode(self, tile, csum=None):
        content = None
        if tile.dtype.kind in "iu":
            if csum is None or csum.shape != tile.shape:
                raise TcsValueError(f"predict-rice needs the tile's mask sums, shape {tile.shape}")
            content = encode_predicted(tile, csum)
        if content is not None and len(content) <= tile.nbytes and (
                _SPARSE_BITS * tile.size < 8 * len(content)
                or np.count_nonzero(tile) > (1 - _SPARSE_ZEROS) * tile.size):
            return content
        # Sparse counts (mostly zeros: Rice codes cost at least 1 bit per pixel,
        # zstd's matches much less), no prediction, or incompressible: store
        # whichever is smaller.
        stored = bytes([MODE_STORED]) + _zstd_frame(tile, True, self.level)
        return stored if content is None or len(stored) <= len(content) else content

    def decode(self, payload, dtype, shape, csum=None):
        if payload[:1] == bytes([MODE_STORED]):
            return _unzstd_frame(payload[1:], True, dtype, shape)
        if payload[:1] == bytes([MODE_PREDICTED]) and dtype.kind in "iu":
            if csum is None or csum.shape != tuple(shape):
                raise TcsValueError(f"predict-rice needs the tile's mask sums, shape {tuple(shape)}")
            # the values as the stored dtype, refused where one does not fit it
            return decode_predicted(payload, csum, dtype.newbyteorder("="))
        raise TcsFormatError(f"predict-rice payload has mode {payload[:1].hex() or 'none'} for stored {dtype.name}")
