"""Low-level ``.tcs`` container reader and writer (pure Python + numpy).

:class:`ContainerWriter` appends records to a uniquely named temporary file
beside the destination and renames it into place only when
:meth:`~ContainerWriter.finish` has written the index and footer, so a failed
write never leaves a half-written file under the final name and never
clobbers an existing one.  A writer that is killed leaves the temporary
``*.partial`` file: :class:`ContainerReader` opens it by rescanning the
records and gives every complete group.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from ..errors import TcsChecksumError, TcsFormatError, TcsTruncatedError
from .header import CODECS, TcsHeader
from .records import (
    FOOTER_SIZE,
    RECORD_HEADER_SIZE,
    RecordInfo,
    check_record_crc,
    decode_payload,
    pack_footer,
    pack_index,
    pack_record,
    unpack_footer,
    unpack_index,
    unpack_record_header,
)

__all__ = ["ContainerReader", "ContainerWriter", "TcsRecoveryWarning", "default_permissions"]


class TcsRecoveryWarning(UserWarning):
    """A ``.tcs`` file had no valid index; its records were rescanned."""


def default_permissions(path: Path) -> None:
    """Give a mkstemp file (created 0600) the mode a plain open() would."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


class ContainerWriter:
    """Writes a ``.tcs`` container: header, records, then index and footer.

    Parameters
    ----------
    path : str or Path
        Final file name.  Data goes to ``<path>.<random>.partial`` in the same
        folder until :meth:`finish` renames it to ``path``.
    header : TcsHeader
        The header; its ``n_frames`` is rewritten by :meth:`finish`.
    """

    def __init__(self, path, header: TcsHeader):
        self.path = Path(path)
        self.header = header
        folder = self.path.parent if str(self.path.parent) else Path(".")
        if not folder.is_dir():
            raise FileNotFoundError(f"{self.path}: folder {folder} does not exist")
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".partial", dir=folder)
        self.temp_path = Path(tmp)
        default_permissions(self.temp_path)
        self._fh = os.fdopen(fd, "w+b")
        self._fh.write(header.to_bytes())
        self._entries: list[RecordInfo] = []
        self.closed = False

    def write_record(self, group: int, tile_row: int, tile_col: int, n_frames: int, payload: bytes) -> None:
        """Append one (group, tile) record whose payload is already encoded."""
        offset = self._fh.tell()
        self._fh.write(pack_record(group, tile_row, tile_col, n_frames, self.header.codec, payload))
        self._entries.append(RecordInfo(offset, group, tile_row, tile_col, n_frames, len(payload)))

    def finish(self, n_frames: int) -> Path:
        """Write index and footer, record ``n_frames`` in the header, rename."""
        entries = sorted(self._entries, key=lambda e: e.key)
        index_offset = self._fh.tell()
        self._fh.write(pack_index(entries))
        self._fh.write(pack_footer(index_offset, n_frames))
        # The header's size does not depend on n_frames, so it is patched in place.
        self._fh.seek(0)
        self._fh.write(self.header.with_frames(n_frames).to_bytes())
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.temp_path, self.path)
        self.closed = True
        return self.path

    def abort(self) -> None:
        """Close and delete the temporary file; the destination is untouched."""
        if not self.closed:
            self._fh.close()
            self.temp_path.unlink(missing_ok=True)
            self.closed = True


class ContainerReader:
    """Random access to the records of a ``.tcs`` file.

    Opening reads the header and the index (one seek to the footer, one to
    the index).  Without a valid footer or index (a killed writer, a
    truncated copy) the records are rescanned from the start: only their
    24-byte headers are read, and every complete group is available.

    ``mask_sum(n_frames, (y0, y1, x0, x1))`` gives a tile's mask sums
    (``tcscodec.masks.tile_mask_sum`` with the header's seed and frame
    size); only files with the ``predict-rice`` codec need it, to decode
    tiles.  The format layer does not compute masks itself.
    """

    def __init__(self, path, mask_sum=None):
        self.path = Path(path)
        self.name = str(path)
        self.mask_sum = mask_sum
        self._fh = open(self.path, "rb")
        try:
            self.file_size = os.fstat(self._fh.fileno()).st_size
            self.header = TcsHeader.read_from(self._fh, self.name)
            self.data_offset = self.header.size
            self.indexed = self._load_index()
            if not self.indexed:
                self._scan()
        except BaseException:
            self._fh.close()
            raise

    # -- opening ----------------------------------------------------------------
    def _load_index(self) -> bool:
        fh = self._fh
        if self.file_size < self.data_offset + FOOTER_SIZE:
            return False
        fh.seek(self.file_size - FOOTER_SIZE)
        footer = unpack_footer(fh.read(FOOTER_SIZE))
        if footer is None:
            return False
        index_offset, n_frames = footer
        if not self.data_offset <= index_offset <= self.file_size - FOOTER_SIZE:
            return False
        fh.seek(index_offset)
        try:
            entries = unpack_index(fh.read(self.file_size - FOOTER_SIZE - index_offset))
        except TcsFormatError as exc:
            warnings.warn(f"{self.name}: {exc}; rescanning records", TcsRecoveryWarning, stacklevel=3)
            return False
        self.n_frames = n_frames
        self.records = {e.key: e for e in entries}
        self.expected_frames = n_frames
        self._check_complete()
        return True

    def _scan(self) -> None:
        """Rebuild the index by walking the records from the header on."""
        fh, pos, records = self._fh, self.data_offset, {}
        while pos + RECORD_HEADER_SIZE <= self.file_size:
            fh.seek(pos)
            try:
                g, r, c, n, _codec, size, _crc = unpack_record_header(fh.read(RECORD_HEADER_SIZE))
            except TcsFormatError:
                break  # the index (or garbage) begins here
            end = pos + RECORD_HEADER_SIZE + size
            if end > self.file_size:
                break  # the last record was cut off
            records[(g, r, c)] = RecordInfo(pos, g, r, c, n, size)
            pos = end
        # Keep the complete groups 0, 1, ...: every tile present.
        rows, cols = self.header.grid
        n_frames, group = 0, 0
        while all((group, r, c) in records for r in range(rows) for c in range(cols)):
            sizes = {records[(group, r, c)].n_frames for r in range(rows) for c in range(cols)}
            if len(sizes) != 1:
                break
            n = sizes.pop()
            n_frames += n
            group += 1
            if n < self.header.B:
                break  # a short group is always the last one
        self.records = {k: v for k, v in records.items() if k[0] < group}
        self.n_frames = n_frames
        self.expected_frames = self.header.n_frames or None
        what = "was not finished by its writer" if not self.header.n_frames else "is truncated or its index is damaged"
        warnings.warn(
            f"{self.name} {what}: recovered {group} complete group(s), {n_frames} frame(s)",
            TcsRecoveryWarning,
            stacklevel=3,
        )

    def _check_complete(self) -> None:
        rows, cols = self.header.grid
        groups = -(-self.n_frames // self.header.B)
        missing = [(g, r, c) for g in range(groups) for r in range(rows) for c in range(cols)
                   if (g, r, c) not in self.records]
        if missing:
            g, r, c = missing[0]
            raise TcsFormatError(
                f"{self.name}: index lacks {len(missing)} record(s), first group {g} tile ({r}, {c})"
            )

    # -- queries ------------------------------------------------------------------
    @property
    def n_groups(self) -> int:
        return -(-self.n_frames // self.header.B)

    def group_frames(self, group: int) -> int:
        """Frames held by ``group``."""
        self._check_group(group)
        return min(self.header.B, self.n_frames - group * self.header.B)

    def _check_group(self, group: int) -> None:
        if not 0 <= group < self.n_groups:
            if self.expected_frames and group * self.header.B < self.expected_frames:
                raise TcsTruncatedError(
                    f"{self.name}: group {group} is missing: the file is truncated "
                    f"({self.n_groups} complete group(s) recovered)"
                )
            raise IndexError(f"{self.name}: group {group} out of range 0..{self.n_groups - 1}")

    def read_payload(self, group: int, tile_row: int, tile_col: int) -> bytes:
        """The compressed payload of one record, checksum and ids verified."""
        self._check_group(group)
        where = f"{self.name}: group {group} tile ({tile_row}, {tile_col})"
        info = self.records[(group, tile_row, tile_col)]
        self._fh.seek(info.offset)
        head = self._fh.read(RECORD_HEADER_SIZE)
        try:
            g, r, c, n, codec, size, _crc = unpack_record_header(head)
        except TcsFormatError as exc:
            raise TcsFormatError(f"{where}: {exc}") from None
        payload = self._fh.read(size)
        if len(payload) < size:
            raise TcsTruncatedError(f"{where}: file ends inside the record")
        check_record_crc(head, payload, where)
        if (g, r, c) != (group, tile_row, tile_col) or n != self.group_frames(group):
            raise TcsFormatError(f"{where}: record holds group {g} tile ({r}, {c}) of {n} frames")
        if CODECS.get(codec) != self.header.codec:
            raise TcsFormatError(f"{where}: record codec {codec} differs from the header's")
        return payload

    def read_tile(self, group: int, tile_row: int, tile_col: int) -> np.ndarray:
        """The stored measurement of one tile, checksum verified."""
        payload = self.read_payload(group, tile_row, tile_col)
        where = f"{self.name}: group {group} tile ({tile_row}, {tile_col})"
        bounds = self.header.tile_bounds(tile_row, tile_col)
        csum = None
        if self.header.codec == "predict-rice" and np.dtype(self.header.stored_dtype).kind in "iu":
            if self.mask_sum is None:
                raise ValueError(f"{self.name}: the predict-rice codec needs the tiles' mask sums: "
                                 "pass ContainerReader(path, mask_sum=...) or use tcscodec.open()")
            csum = self.mask_sum(self.group_frames(group), bounds)
        y0, y1, x0, x1 = bounds
        try:
            return decode_payload(payload, self.header.codec, self.header.stored_dtype, (y1 - y0, x1 - x0), csum)
        except TcsFormatError as exc:
            raise TcsFormatError(f"{where}: {exc}") from None
        except Exception as exc:  # zstd errors are not ours; re-raise named
            raise TcsChecksumError(f"{where}: payload does not decode: {exc}") from None

    def read_measurement(self, group: int, region=None) -> np.ndarray:
        """The stored measurement of ``group`` over ``region`` (y0, y1, x0, x1),
        reading only the tiles that intersect it."""
        H, W = self.header.height, self.header.width
        y0, y1, x0, x1 = (0, H, 0, W) if region is None else region
        if not (0 <= y0 < y1 <= H and 0 <= x0 < x1 <= W):
            raise ValueError(f"region {region} is empty or outside the {H}x{W} frame")
        th, tw = self.header.tile
        out = np.empty((y1 - y0, x1 - x0), np.dtype(self.header.stored_dtype))
        for r in range(y0 // th, (y1 - 1) // th + 1):
            for c in range(x0 // tw, (x1 - 1) // tw + 1):
                ty0, ty1, tx0, tx1 = self.header.tile_bounds(r, c)
                tile = self.read_tile(group, r, c)
                a0, a1, b0, b1 = max(y0, ty0), min(y1, ty1), max(x0, tx0), min(x1, tx1)
                out[a0 - y0 : a1 - y0, b0 - x0 : b1 - x0] = tile[a0 - ty0 : a1 - ty0, b0 - tx0 : b1 - tx0]
        return out

    def close(self) -> None:
        self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
