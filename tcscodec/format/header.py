"""The ``.tcs`` file header (spec section 2): a frozen dataclass and its bytes.

Pure Python + numpy; no torch, no CuPy.  Layout (little-endian)::

    offset size field
         0    8 magic            89 54 43 53 0D 0A 1A 0A  ("\\x89TCS\\r\\n\\x1a\\n")
         8    2 version_major    1, or 2 for groups of variable length (group table, spec 5.1)
        10    2 version_minor    0, or 1 when the codec is 3 (predict-rice); 0 in version 2
        12    4 header_size      bytes from offset 0 to the end of header_crc
        16    4 flags            0 (reserved; readers ignore unknown bits)
        20    4 height           H >= 1
        24    4 width            W >= 1
        28    8 n_frames         T; 0 while the writer has not finished
        36    2 B                frames per group, 2..64 (version 2: the most a group holds)
        38    1 input_dtype      dtype code (table in DTYPE_CODES)
        39    1 stored_dtype     dtype code of the stored measurement
        40    1 mask_generator   1 = splitmix64-v1
        41    1 codec            record payload codec (1 = zstd, 2 = shuffle+zstd, 3 = predict-rice)
        42    2 reserved         0
        44    8 mask_seed        uint64
        52    4 tile_height      >= 1
        56    4 tile_width       >= 1
        60    8 quant_step       float64 > 0; 1.0 = lossless
        68    4 json_size        J
        72    J json             UTF-8 JSON object: user metadata
    72 + J    4 header_crc       CRC-32 (zlib) of bytes [0, 72 + J)
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import TcsChecksumError, TcsFormatError, TcsTruncatedError, TcsValueError, TcsVersionError
from .codecs import CODECS, codec_class, codec_id
from .config import ConfigDict

__all__ = [
    "MIN_B",
    "MAX_B",
    "MAGIC",
    "VERSION",
    "MAJOR_VERSIONS",
    "DTYPE_CODES",
    "CODECS",
    "TcsHeader",
    "HEADER_FIXED_SIZE",
    "MAX_PIXELS",
    "MAX_TILE_PIXELS",
    "MAX_TILES",
    "MAX_JSON_SIZE",
    "parse_metadata",
    "metadata_bytes",
]

MAGIC = b"\x89TCS\r\n\x1a\n"
#: B, the frames per group (one measurement), is 2..64 (spec section 2): the
#: one definition that the encoders and the reconstruction check against
MIN_B = 2
MAX_B = 64
#: the newest format version this package reads and writes.  Version 2
#: (groups of variable length) is a major version because a version 1
#: reader must refuse it: it checks ``version_major`` and ignores the
#: minor version and unknown flags (spec section 8)
VERSION = (2, 0)
#: the major versions this package reads
MAJOR_VERSIONS = (1, 2)

#: dtype code <-> numpy dtype (little-endian on disk)
DTYPE_CODES: dict[int, np.dtype] = {
    1: np.dtype("<u1"),
    2: np.dtype("<u2"),
    3: np.dtype("<u4"),
    4: np.dtype("<u8"),
    5: np.dtype("<f4"),
    6: np.dtype("<f8"),
    7: np.dtype("<i8"),
}
_CODE_OF = {v.newbyteorder("="): k for k, v in DTYPE_CODES.items()}


_FIXED = struct.Struct("<8sHHIIIIQHBBBBHQIIdI")
HEADER_FIXED_SIZE = _FIXED.size  # 72
assert HEADER_FIXED_SIZE == 72


#: Reader limits (spec section 8.1).  They hold every file a real detector
#: makes and refuse crafted headers before anything is allocated: a frame
#: of at most 2^28 pixels (16384^2) counted with its width rounded up to a
#: multiple of 64 (masks are made 64 pixels at a time, so a 2^24 x 3 frame
#: costs as much as a 2^24 x 64 one), a tile (clipped to the frame) of at
#: most 2^26 pixels (512 MiB of uint64), at most 2^20 tiles per frame, and
#: user metadata of at most 1 MiB, nested at most 64 deep, numbers of at
#: most 100 characters.  Writers refuse to make files beyond them.
MAX_PIXELS = 1 << 28
MAX_TILE_PIXELS = 1 << 26
MAX_TILES = 1 << 20
MAX_JSON_SIZE = 1 << 20
MAX_JSON_DEPTH = 64
MAX_JSON_NUMBER = 100
#: the mask generator's coordinate range (spec section 6.1: y < 2^24, x < 2^30)
MAX_HEIGHT = 1 << 24
MAX_WIDTH = 1 << 30


def _json_number(text: str):
    if len(text) > MAX_JSON_NUMBER:
        raise TcsFormatError(f"metadata holds a number of {len(text)} characters (at most {MAX_JSON_NUMBER})")
    return float(text) if any(ch in text for ch in ".eE") else int(text)


def _json_depth(raw: bytes) -> int:
    """The deepest nesting of ``[`` and ``{`` outside strings in JSON text
    ``raw``, found without parsing (so a 100,000-deep document costs a few
    vectorised passes, not a recursion)."""
    a = np.frombuffer(raw, np.uint8)
    if a.size == 0:
        return 0
    idx = np.arange(a.size)
    backslash = a == 0x5C
    # A quote is a string delimiter unless an odd run of backslashes precedes it.
    last_plain = np.maximum.accumulate(np.where(backslash, -1, idx))
    run = np.empty(a.size, np.int64)
    run[0] = 0
    run[1:] = idx[:-1] - last_plain[:-1]
    quote = (a == 0x22) & (run % 2 == 0)
    outside = np.cumsum(quote) % 2 == 0  # closing quotes count as outside: harmless
    step = ((a == 0x5B) | (a == 0x7B)).astype(np.int64) - ((a == 0x5D) | (a == 0x7D))
    return int(np.cumsum(np.where(outside, step, 0)).max())


def parse_metadata(raw: bytes, name: str = "<file>") -> dict[str, Any]:
    """The header's user metadata: UTF-8 JSON text that must be an object.

    Refuses, with :class:`TcsFormatError`, text over :data:`MAX_JSON_SIZE`
    bytes, nested deeper than :data:`MAX_JSON_DEPTH` (checked before
    parsing, so no recursion limit is hit) and numbers longer than
    :data:`MAX_JSON_NUMBER` characters (Python's int() of a long digit
    string is quadratic)."""
    if not raw:
        return {}
    if len(raw) > MAX_JSON_SIZE:
        raise TcsFormatError(f"{name}: metadata is {len(raw):,} bytes, more than {MAX_JSON_SIZE:,}")
    depth = _json_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise TcsFormatError(f"{name}: metadata is nested {depth} deep (at most {MAX_JSON_DEPTH})")
    try:
        value = json.loads(raw.decode("utf-8"), parse_int=_json_number, parse_float=_json_number)
    except TcsFormatError as exc:
        raise TcsFormatError(f"{name}: {exc}") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise TcsFormatError(f"{name}: metadata is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(value, dict):
        raise TcsFormatError(f"{name}: metadata is a JSON {type(value).__name__}, not an object")
    return value


def _check_keys(value, path: str = "metadata") -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TcsValueError(f"{path} has a key {k!r} of type {type(k).__name__}; keys must be strings")
            _check_keys(v, f"{path}[{k!r}]")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_keys(v, f"{path}[{i}]")


def metadata_bytes(metadata: dict[str, Any]) -> bytes:
    """The header's JSON text for ``metadata``, checked to read back.

    Raises :class:`TcsValueError` for metadata a reader would refuse or
    change: not a dict, keys that are not strings (JSON would turn ``1``
    into ``"1"``), values JSON cannot hold, or beyond the reader limits."""
    if not isinstance(metadata, dict):
        raise TcsValueError(f"metadata must be a dict, not {type(metadata).__name__}")
    if len(metadata) > MAX_JSON_SIZE:  # cheap bound before walking it
        raise TcsValueError(f"metadata has {len(metadata):,} keys")
    try:
        _check_keys(metadata)
        raw = json.dumps(metadata, sort_keys=True, separators=(",", ":")).encode()
    except TcsValueError:
        raise
    except (TypeError, ValueError, RecursionError) as exc:
        raise TcsValueError(f"metadata is not JSON-serialisable: {exc}") from None
    try:
        parse_metadata(raw, "metadata")
    except TcsFormatError as exc:
        raise TcsValueError(str(exc)) from None
    return raw


def dtype_code(dtype) -> int:
    try:
        return _CODE_OF[np.dtype(dtype).newbyteorder("=")]
    except KeyError:
        raise TcsFormatError(f"dtype {np.dtype(dtype).name} has no .tcs code") from None


@dataclass(frozen=True)
class TcsHeader(ConfigDict):
    """Everything the header of a ``.tcs`` file records.

    ``shape`` is ``(n_frames, height, width)``; ``n_frames`` is 0 in a file
    whose writer did not finish (the reader then counts complete groups).
    ``metadata`` is the user's JSON-serialisable dict (pixel size, frame
    rate, detector, ...).  ``variable_groups`` makes a version 2 file
    whose groups hold ``1..B`` frames each, their lengths in the index
    (spec section 5.1); otherwise groups hold ``B`` frames, the last fewer.
    """

    height: int
    width: int
    B: int
    dtype: str
    stored_dtype: str
    mask_seed: int
    tile: tuple[int, int] = (512, 512)
    n_frames: int = 0
    quant_step: float = 1.0
    mask_generator: int = 1
    codec: str = "predict-rice"
    flags: int = 0
    version: tuple[int, int] | None = None  # None: the oldest version that holds the file
    metadata: dict[str, Any] = field(default_factory=dict)
    variable_groups: bool = False

    def __post_init__(self):
        if not (1 <= self.height <= MAX_HEIGHT and 1 <= self.width <= MAX_WIDTH):
            raise TcsFormatError(f"invalid frame size {self.height}x{self.width} "
                                 f"(1..{MAX_HEIGHT} x 1..{MAX_WIDTH})")
        if self.height * -(-self.width // 64) * 64 > MAX_PIXELS:
            raise TcsFormatError(f"frame {self.height}x{self.width} has more than {MAX_PIXELS:,} pixels "
                                 "(rows counted in 64-pixel words)")
        if not MIN_B <= self.B <= MAX_B:
            raise TcsFormatError(f"B must be in {MIN_B}..{MAX_B}, got {self.B}")
        if not (self.tile[0] >= 1 and self.tile[1] >= 1):
            raise TcsFormatError(f"invalid tile size {self.tile}")
        if max(self.grid) >= 65536:
            raise TcsFormatError(f"tile grid {self.grid} exceeds 65535 rows or columns")
        rows, cols = self.grid
        if rows * cols > MAX_TILES:
            raise TcsFormatError(f"tile grid {rows}x{cols} has more than {MAX_TILES:,} tiles")
        th, tw = min(self.tile[0], self.height), min(self.tile[1], self.width)
        if th * tw > MAX_TILE_PIXELS:
            raise TcsFormatError(f"tile {th}x{tw} has more than {MAX_TILE_PIXELS:,} pixels")
        if not (math.isfinite(self.quant_step) and self.quant_step > 0):
            raise TcsFormatError(f"quant_step must be finite and > 0, got {self.quant_step}")
        if self.codec not in CODECS.values():
            raise TcsFormatError(f"unknown codec {self.codec!r}; known: {', '.join(CODECS.values())}")
        object.__setattr__(self, "variable_groups", bool(self.variable_groups))
        if self.version is None:  # the oldest version that holds the file: older readers read it
            oldest = (2, 0) if self.variable_groups else codec_class(self.codec).min_version
            object.__setattr__(self, "version", oldest)
        if (self.version[0] == 2) != self.variable_groups:
            raise TcsFormatError(f"version {self.version[0]}.{self.version[1]} does not go with "
                                 f"{'variable' if self.variable_groups else 'fixed'} groups "
                                 "(groups of variable length are version 2)")
        dtype_code(self.dtype), dtype_code(self.stored_dtype)
        if not 0 <= self.mask_seed < 2**64:
            raise TcsFormatError(f"mask seed out of range: {self.mask_seed}")

    # -- derived --------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """``(n_frames, height, width)``."""
        return (self.n_frames, self.height, self.width)

    @property
    def grid(self) -> tuple[int, int]:
        """Number of tile rows and columns."""
        return (-(-self.height // self.tile[0]), -(-self.width // self.tile[1]))

    @property
    def n_groups(self) -> int:
        """Number of groups for ``n_frames`` (the last may be short); for
        variable groups the index knows it (:class:`~.container.ContainerReader`)."""
        self._fixed_only("n_groups")
        return -(-self.n_frames // self.B)

    def _fixed_only(self, what: str) -> None:
        if self.variable_groups:
            raise TcsValueError(f"{what}: the groups of a version 2 file have variable lengths, "
                                "listed in its index (ContainerReader.layout)")

    def tile_bounds(self, row: int, col: int) -> tuple[int, int, int, int]:
        """``(y0, y1, x0, x1)`` of tile (row, col); edge tiles are smaller."""
        th, tw = self.tile
        return (row * th, min((row + 1) * th, self.height), col * tw, min((col + 1) * tw, self.width))

    def group_frames(self, group: int) -> int:
        """Frames held by ``group`` (B, or fewer for the last)."""
        self._fixed_only("group_frames")
        return min(self.B, self.n_frames - group * self.B)

    # -- serialisation (to_dict / from_dict from ConfigDict) -------------
    def _to_json(self, d: dict[str, Any]) -> dict[str, Any]:
        d["tile"] = list(self.tile)
        assert self.version is not None  # __post_init__ sets it
        d["version"] = list(self.version)
        return d

    @classmethod
    def _from_json(cls, d: dict[str, Any]) -> dict[str, Any]:
        d["tile"] = tuple(d.get("tile", (512, 512)))
        d["version"] = tuple(d["version"]) if d.get("version") else None
        return d

    def with_frames(self, n_frames: int) -> TcsHeader:
        return replace(self, n_frames=int(n_frames))

    def to_bytes(self) -> bytes:
        meta = metadata_bytes(self.metadata)
        assert self.version is not None  # __post_init__ sets it
        fixed = _FIXED.pack(
            MAGIC, self.version[0], self.version[1],
            HEADER_FIXED_SIZE + len(meta) + 4, self.flags,
            self.height, self.width, self.n_frames, self.B,
            dtype_code(self.dtype), dtype_code(self.stored_dtype),
            self.mask_generator, codec_id(self.codec), 0,
            self.mask_seed, self.tile[0], self.tile[1], self.quant_step, len(meta),
        )
        body = fixed + meta
        return body + struct.pack("<I", zlib.crc32(body))

    @classmethod
    def read_from(cls, fh, name: str = "<file>", file_size: int | None = None) -> TcsHeader:
        """Read and validate the header at the start of binary file ``fh``."""
        def read(offset, size):
            fh.seek(offset)
            return fh.read(size)

        return cls.read_at(read, name, file_size)[0]

    @classmethod
    def read_at(cls, read, name: str = "<file>", file_size: int | None = None) -> tuple[TcsHeader, int]:
        """Read and validate a header with ``read(offset, size) -> bytes``;
        returns ``(header, header_size)``.

        Every size is checked before it is used: ``json_size`` against
        :data:`MAX_JSON_SIZE` and ``file_size`` (when known) before the JSON
        is read, and the CRC before any field is trusted; then the fields'
        ranges and the reader limits (:data:`MAX_PIXELS`, ...), and the JSON
        is parsed with :func:`parse_metadata`'s limits.
        """
        fixed = read(0, HEADER_FIXED_SIZE)
        if len(fixed) >= 8 and fixed[:8] != MAGIC:
            raise TcsFormatError(f"{name}: not a .tcs file (wrong magic {fixed[:8]!r})")
        if len(fixed) < HEADER_FIXED_SIZE:
            raise TcsTruncatedError(f"{name}: file ends inside the header")
        (magic, major, minor, header_size, flags, height, width, n_frames, B,
         in_code, st_code, gen, codec, _reserved, seed, th, tw, qstep, jsize) = _FIXED.unpack(fixed)
        if major not in MAJOR_VERSIONS:
            raise TcsVersionError(
                f"{name}: .tcs major version {major} is not supported (this reader knows "
                f"{' and '.join(str(v) for v in MAJOR_VERSIONS)}): a newer tcscodec may read it"
            )
        if header_size != HEADER_FIXED_SIZE + jsize + 4:
            raise TcsFormatError(f"{name}: header size {header_size} disagrees with JSON size {jsize}")
        if jsize > MAX_JSON_SIZE:
            # Refused before reading: a damaged size must not make us read gigabytes.
            raise TcsFormatError(f"{name}: header's JSON size {jsize:,} is over the {MAX_JSON_SIZE:,}-byte limit")
        if file_size is not None and header_size > file_size:
            raise TcsTruncatedError(f"{name}: file ends inside the header")
        rest = read(HEADER_FIXED_SIZE, jsize + 4)
        if len(rest) < jsize + 4:
            raise TcsTruncatedError(f"{name}: file ends inside the header")
        body = fixed + rest[:jsize]
        (crc,) = struct.unpack("<I", rest[jsize:])
        if zlib.crc32(body) != crc:
            raise TcsChecksumError(f"{name}: header checksum mismatch")
        if in_code not in DTYPE_CODES or st_code not in DTYPE_CODES:
            raise TcsFormatError(f"{name}: unknown dtype code {in_code}/{st_code}")
        if gen != 1:
            raise TcsFormatError(f"{name}: unknown mask generator id {gen}")
        if codec not in CODECS:
            raise TcsFormatError(f"{name}: unknown record codec id {codec}")
        metadata = parse_metadata(rest[:jsize], name)
        try:
            header = cls(
                height=height, width=width, B=B,
                dtype=DTYPE_CODES[in_code].newbyteorder("=").name,
                stored_dtype=DTYPE_CODES[st_code].newbyteorder("=").name,
                mask_seed=seed, tile=(th, tw), n_frames=n_frames, quant_step=qstep,
                mask_generator=gen, codec=CODECS[codec], flags=flags,
                version=(major, minor), metadata=metadata, variable_groups=major == 2,
            )
        except TcsFormatError as exc:
            raise TcsFormatError(f"{name}: {exc}") from None
        return header, header_size

    @property
    def size(self) -> int:
        """Size in bytes of the serialised header."""
        return len(self.to_bytes())
