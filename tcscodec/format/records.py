"""Records, index and footer of the ``.tcs`` container (spec sections 3-5).

Every (group, tile) measurement is one self-describing record::

    offset size field
         0    4 magic        "TCSR"
         4    4 group        uint32
         8    2 tile_row     uint16
        10    2 tile_col     uint16
        12    2 n_frames     frames summed in this group (1..B)
        14    1 codec        1 = zstd, 2 = shuffle+zstd, 3 = predict-rice (same as header)
        15    1 reserved     0
        16    4 payload_size P
        20    4 crc          CRC-32 of bytes [0, 20) followed by the payload
        24    P payload      the tile's stored measurement, compressed by the codec

The index, written once at close, lists every record::

    "TCSI", uint64 count, count x (uint64 offset, uint32 group,
    uint16 tile_row, uint16 tile_col), [version 2: the group table, uint64 G
    and G x uint8 group lengths], uint32 CRC-32 of all before it

and the file ends with a fixed 32-byte footer::

    uint64 index_offset, uint64 n_frames, uint32 crc (of the 16 bytes
    before it), uint32 reserved (0), 8-byte magic "\\x89TCSEND\\n"
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from ..errors import TcsChecksumError, TcsFormatError, TcsTruncatedError
from .codecs import codec_id, get_codec, max_payload_size
from .groups import GROUP_TABLE_HEAD_SIZE, pack_group_table, unpack_group_table

__all__ = [
    "RECORD_MAGIC",
    "INDEX_MAGIC",
    "FOOTER_MAGIC",
    "RECORD_HEADER_SIZE",
    "FOOTER_SIZE",
    "RecordInfo",
    "encode_payload",
    "decode_payload",
    "pack_record",
    "unpack_record_header",
    "pack_index",
    "unpack_index",
    "unpack_index_head",
    "unpack_index_entries",
    "unpack_variable_index",
    "index_size",
    "INDEX_ENTRY_DTYPE",
    "max_payload_size",
    "pack_footer",
    "unpack_footer",
]

RECORD_MAGIC = b"TCSR"
INDEX_MAGIC = b"TCSI"
FOOTER_MAGIC = b"\x89TCSEND\n"

_RECORD = struct.Struct("<4sIHHHBBII")
RECORD_HEADER_SIZE = _RECORD.size  # 24
_ENTRY = struct.Struct("<QIHH")
_FOOTER = struct.Struct("<QQII8s")
FOOTER_SIZE = _FOOTER.size  # 32


@dataclass(frozen=True)
class RecordInfo:
    """Where one record lies and what it holds (from the index or a scan)."""

    offset: int
    group: int
    tile_row: int
    tile_col: int
    n_frames: int = 0
    payload_size: int = 0

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.group, self.tile_row, self.tile_col)


# -- payload ----------------------------------------------------------------
def encode_payload(tile: np.ndarray, codec: str, level: int = 3, csum: np.ndarray | None = None) -> bytes:
    """Compress a tile of the stored dtype into a record payload with the
    registered codec ``codec`` (:mod:`.codecs`); ``csum`` are the tile's
    mask sums, which ``predict-rice`` needs for integer tiles."""
    return get_codec(codec, level=level).encode(tile, csum)


def decode_payload(payload: bytes, codec: str, dtype, shape, csum: np.ndarray | None = None) -> np.ndarray:
    """Inverse of :func:`encode_payload`.

    Raises :class:`TcsFormatError` for any payload that does not hold
    exactly the tile: wrong size, bytes after the zstd frame, an unknown
    predict-rice mode, or values that do not fit ``dtype``."""
    dtype = np.dtype(dtype).newbyteorder("<")
    arr = get_codec(codec).decode(payload, dtype, shape, csum)
    return arr.astype(dtype.newbyteorder("="), copy=False)


# -- records ------------------------------------------------------------------
def pack_record(group: int, tile_row: int, tile_col: int, n_frames: int, codec: str, payload: bytes) -> bytes:
    head = _RECORD.pack(RECORD_MAGIC, group, tile_row, tile_col, n_frames,
                        codec_id(codec), 0, len(payload), 0)[:20]
    crc = zlib.crc32(payload, zlib.crc32(head))
    return head + struct.pack("<I", crc) + payload


def unpack_record_header(buf: bytes) -> tuple[int, int, int, int, int, int, int]:
    """``(group, tile_row, tile_col, n_frames, codec_id, payload_size, crc)``."""
    if len(buf) < RECORD_HEADER_SIZE:
        raise TcsTruncatedError("file ends inside a record header")
    magic, group, row, col, n, codec, _r, size, crc = _RECORD.unpack(buf[:RECORD_HEADER_SIZE])
    if magic != RECORD_MAGIC:
        raise TcsFormatError(f"bad record magic {magic!r}")
    return group, row, col, n, codec, size, crc


def record_crc(head20: bytes, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(head20))


def check_record_crc(buf24: bytes, payload: bytes, where: str) -> None:
    (crc,) = struct.unpack("<I", buf24[20:24])
    if record_crc(buf24[:20], payload) != crc:
        raise TcsChecksumError(f"{where}: record checksum mismatch (corrupted data)")


# -- index and footer ---------------------------------------------------------
def pack_index(entries, lengths=None) -> bytes:
    """The index of ``entries`` (sorted by the caller); with ``lengths``
    (version 2) followed by the group table of those group lengths."""
    body = INDEX_MAGIC + struct.pack("<Q", len(entries)) + b"".join(
        _ENTRY.pack(e.offset, e.group, e.tile_row, e.tile_col) for e in entries
    )
    if lengths is not None:
        body += pack_group_table(lengths)
    return body + struct.pack("<I", zlib.crc32(body))


INDEX_ENTRY_DTYPE = np.dtype([("offset", "<u8"), ("group", "<u4"), ("tile_row", "<u2"), ("tile_col", "<u2")])
INDEX_HEAD_SIZE = 12  # magic + count


def unpack_index_head(buf: bytes) -> int:
    """The entry count from the first :data:`INDEX_HEAD_SIZE` bytes of an index."""
    if len(buf) < INDEX_HEAD_SIZE or buf[:4] != INDEX_MAGIC:
        raise TcsFormatError("bad index magic")
    return struct.unpack_from("<Q", buf, 4)[0]


def unpack_index_entries(buf: bytes) -> np.ndarray:
    """The entries of a whole index (head, entries, CRC), CRC checked, as a
    structured array (:data:`INDEX_ENTRY_DTYPE`): one vectorised parse."""
    count = unpack_index_head(buf)
    end = INDEX_HEAD_SIZE + count * _ENTRY.size
    if len(buf) < end + 4:
        raise TcsTruncatedError("file ends inside the index")
    (crc,) = struct.unpack("<I", buf[end : end + 4])
    if zlib.crc32(buf[:end]) != crc:
        raise TcsChecksumError("index checksum mismatch")
    return np.frombuffer(buf, INDEX_ENTRY_DTYPE, count, INDEX_HEAD_SIZE)


def unpack_variable_index(buf: bytes) -> tuple[np.ndarray, np.ndarray]:
    """``(entries, group lengths)`` of a whole version 2 index (head,
    entries, group table, CRC), CRC checked.  ``buf`` must end with the
    CRC: the group table fills what lies between the entries and it."""
    count = unpack_index_head(buf)
    end = INDEX_HEAD_SIZE + count * _ENTRY.size
    if len(buf) < end + GROUP_TABLE_HEAD_SIZE + 4:
        raise TcsTruncatedError("file ends inside the index")
    (crc,) = struct.unpack("<I", buf[-4:])
    if zlib.crc32(buf[:-4]) != crc:
        raise TcsChecksumError("index checksum mismatch")
    lengths = unpack_group_table(buf[:-4], end)
    if end + GROUP_TABLE_HEAD_SIZE + len(lengths) != len(buf) - 4:
        raise TcsFormatError(f"group table of {len(lengths)} groups does not fill the index")
    return np.frombuffer(buf, INDEX_ENTRY_DTYPE, count, INDEX_HEAD_SIZE), lengths


def unpack_index(buf: bytes) -> list[RecordInfo]:
    entries = unpack_index_entries(buf)
    return [RecordInfo(int(e["offset"]), int(e["group"]), int(e["tile_row"]), int(e["tile_col"])) for e in entries]


def index_size(count: int, n_groups: int | None = None) -> int:
    """Bytes of an index of ``count`` entries (with a table of ``n_groups``
    group lengths in version 2)."""
    table = 0 if n_groups is None else GROUP_TABLE_HEAD_SIZE + n_groups
    return INDEX_HEAD_SIZE + count * _ENTRY.size + table + 4


def pack_footer(index_offset: int, n_frames: int) -> bytes:
    head = struct.pack("<QQ", index_offset, n_frames)
    return head + struct.pack("<II", zlib.crc32(head), 0) + FOOTER_MAGIC


def unpack_footer(buf: bytes) -> tuple[int, int] | None:
    """``(index_offset, n_frames)``, or None when ``buf`` is no valid footer
    (a writer that was killed before it finished leaves none)."""
    if len(buf) != FOOTER_SIZE:
        return None
    index_offset, n_frames, crc, _r, magic = _FOOTER.unpack(buf)
    if magic != FOOTER_MAGIC or zlib.crc32(buf[:16]) != crc:
        return None
    return index_offset, n_frames
