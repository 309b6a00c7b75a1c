"""The ``.tcs`` file header (spec section 2): a frozen dataclass and its bytes.

Pure Python + numpy; no torch, no CuPy.  Layout (little-endian)::

    offset size field
         0    8 magic            89 54 43 53 0D 0A 1A 0A  ("\\x89TCS\\r\\n\\x1a\\n")
         8    2 version_major    1
        10    2 version_minor    0, or 1 when the codec is 3 (predict-rice)
        12    4 header_size      bytes from offset 0 to the end of header_crc
        16    4 flags            0 (reserved; readers ignore unknown bits)
        20    4 height           H >= 1
        24    4 width            W >= 1
        28    8 n_frames         T; 0 while the writer has not finished
        36    2 B                frames per group, 2..64
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
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import TcsFormatError, TcsTruncatedError, TcsVersionError, TcsChecksumError

__all__ = [
    "MAGIC",
    "VERSION",
    "DTYPE_CODES",
    "CODECS",
    "TcsHeader",
    "HEADER_FIXED_SIZE",
]

MAGIC = b"\x89TCS\r\n\x1a\n"
#: the newest format version this package reads and writes
VERSION = (1, 1)

#: dtype code <-> numpy dtype (little-endian on disk)
DTYPE_CODES = {
    1: np.dtype("<u1"),
    2: np.dtype("<u2"),
    3: np.dtype("<u4"),
    4: np.dtype("<u8"),
    5: np.dtype("<f4"),
    6: np.dtype("<f8"),
    7: np.dtype("<i8"),
}
_CODE_OF = {v.newbyteorder("="): k for k, v in DTYPE_CODES.items()}

#: record payload codec id -> name
CODECS = {1: "zstd", 2: "shuffle-zstd", 3: "predict-rice"}
_CODEC_ID = {v: k for k, v in CODECS.items()}
#: files are written with the oldest version that has their codec, so that
#: 1.0 readers keep reading every file that does not use codec 3
_CODEC_VERSION = {"zstd": (1, 0), "shuffle-zstd": (1, 0), "predict-rice": (1, 1)}

_FIXED = struct.Struct("<8sHHIIIIQHBBBBHQIIdI")
HEADER_FIXED_SIZE = _FIXED.size  # 72
assert HEADER_FIXED_SIZE == 72


def dtype_code(dtype) -> int:
    try:
        return _CODE_OF[np.dtype(dtype).newbyteorder("=")]
    except KeyError:
        raise TcsFormatError(f"dtype {np.dtype(dtype).name} has no .tcs code") from None


@dataclass(frozen=True)
class TcsHeader:
    """Everything the header of a ``.tcs`` file records.

    ``shape`` is ``(n_frames, height, width)``; ``n_frames`` is 0 in a file
    whose writer did not finish (the reader then counts complete groups).
    ``metadata`` is the user's JSON-serialisable dict (pixel size, frame
    rate, detector, ...).
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
    version: tuple[int, int] | None = None  # None: the oldest version that has the codec
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        from ..encoder import MIN_B, MAX_B  # one source of truth for B's range

        if not (1 <= self.height < 2**32 and 1 <= self.width < 2**32):
            raise TcsFormatError(f"invalid frame size {self.height}x{self.width}")
        if not MIN_B <= self.B <= MAX_B:
            raise TcsFormatError(f"B must be in {MIN_B}..{MAX_B}, got {self.B}")
        if not (self.tile[0] >= 1 and self.tile[1] >= 1):
            raise TcsFormatError(f"invalid tile size {self.tile}")
        if max(self.grid) >= 65536:
            raise TcsFormatError(f"tile grid {self.grid} exceeds 65535 rows or columns")
        if not (math.isfinite(self.quant_step) and self.quant_step > 0):
            raise TcsFormatError(f"quant_step must be finite and > 0, got {self.quant_step}")
        if self.codec not in _CODEC_ID:
            raise TcsFormatError(f"unknown codec {self.codec!r}; known: {', '.join(_CODEC_ID)}")
        if self.version is None:
            object.__setattr__(self, "version", _CODEC_VERSION[self.codec])
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
        """Number of groups for ``n_frames`` (the last may be short)."""
        return -(-self.n_frames // self.B)

    def tile_bounds(self, row: int, col: int) -> tuple[int, int, int, int]:
        """``(y0, y1, x0, x1)`` of tile (row, col); edge tiles are smaller."""
        th, tw = self.tile
        return (row * th, min((row + 1) * th, self.height), col * tw, min((col + 1) * tw, self.width))

    def group_frames(self, group: int) -> int:
        """Frames held by ``group`` (B, or fewer for the last)."""
        return min(self.B, self.n_frames - group * self.B)

    # -- serialisation ----------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tile"] = list(self.tile)
        d["version"] = list(self.version)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TcsHeader":
        d = dict(d)
        d["tile"] = tuple(d.get("tile", (512, 512)))
        d["version"] = tuple(d["version"]) if d.get("version") else None
        return cls(**d)

    def with_frames(self, n_frames: int) -> "TcsHeader":
        return replace(self, n_frames=int(n_frames))

    def to_bytes(self) -> bytes:
        meta = json.dumps(self.metadata, sort_keys=True, separators=(",", ":")).encode()
        fixed = _FIXED.pack(
            MAGIC, self.version[0], self.version[1],
            HEADER_FIXED_SIZE + len(meta) + 4, self.flags,
            self.height, self.width, self.n_frames, self.B,
            dtype_code(self.dtype), dtype_code(self.stored_dtype),
            self.mask_generator, _CODEC_ID[self.codec], 0,
            self.mask_seed, self.tile[0], self.tile[1], self.quant_step, len(meta),
        )
        body = fixed + meta
        return body + struct.pack("<I", zlib.crc32(body))

    @classmethod
    def read_from(cls, fh, name: str = "<file>") -> "TcsHeader":
        """Read and validate the header at the start of binary file ``fh``."""
        fixed = fh.read(HEADER_FIXED_SIZE)
        if len(fixed) >= 8 and fixed[:8] != MAGIC:
            raise TcsFormatError(f"{name}: not a .tcs file (wrong magic {fixed[:8]!r})")
        if len(fixed) < HEADER_FIXED_SIZE:
            raise TcsTruncatedError(f"{name}: file ends inside the header")
        (magic, major, minor, header_size, flags, height, width, n_frames, B,
         in_code, st_code, gen, codec, _reserved, seed, th, tw, qstep, jsize) = _FIXED.unpack(fixed)
        if major != VERSION[0]:
            raise TcsVersionError(
                f"{name}: .tcs major version {major} is not supported (this reader knows {VERSION[0]})"
            )
        if header_size != HEADER_FIXED_SIZE + jsize + 4:
            raise TcsFormatError(f"{name}: header size {header_size} disagrees with JSON size {jsize}")
        rest = fh.read(jsize + 4)
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
        try:
            metadata = json.loads(rest[:jsize].decode("utf-8")) if jsize else {}
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TcsFormatError(f"{name}: metadata is not valid UTF-8 JSON: {exc}") from None
        try:
            return cls(
                height=height, width=width, B=B,
                dtype=DTYPE_CODES[in_code].newbyteorder("=").name,
                stored_dtype=DTYPE_CODES[st_code].newbyteorder("=").name,
                mask_seed=seed, tile=(th, tw), n_frames=n_frames, quant_step=qstep,
                mask_generator=gen, codec=CODECS[codec], flags=flags,
                version=(major, minor), metadata=metadata,
            )
        except TcsFormatError as exc:
            raise TcsFormatError(f"{name}: {exc}") from None

    @property
    def size(self) -> int:
        """Size in bytes of the serialised header."""
        return len(self.to_bytes())
