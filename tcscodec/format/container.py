"""Low-level ``.tcs`` container reader (pure Python + numpy); the writer,
:class:`ContainerWriter`, is in :mod:`.container_writer` and importable
from here.

A writer that is killed leaves its temporary ``*.partial`` file:
:class:`ContainerReader` opens it by rescanning the records and gives every
complete group.

:class:`ContainerReader` trusts no size or offset of the file before it has
checked it against the header and the file's real size (spec section 8.1),
so a damaged or crafted file fails quickly with a
:class:`~tcscodec.TcsError` and in memory bounded by one tile.  It reads
with positional reads (``os.pread``), so one reader may be shared by
threads.
"""

from __future__ import annotations

import os
import stat
import struct
import threading
import warnings
from pathlib import Path

import numpy as np

from ..errors import TcsChecksumError, TcsFormatError, TcsMemoryError, TcsTruncatedError, TcsValueError
from .codecs import CODECS, codec_class, codec_id
from .container_writer import ContainerWriter, default_permissions
from .groups import GroupLayout
from .header import TcsHeader
from .records import (
    FOOTER_SIZE,
    INDEX_HEAD_SIZE,
    RECORD_HEADER_SIZE,
    RECORD_MAGIC,
    RecordInfo,
    check_record_crc,
    decode_payload,
    index_size,
    max_payload_size,
    record_crc,
    unpack_footer,
    unpack_index_entries,
    unpack_index_head,
    unpack_record_header,
    unpack_variable_index,
)
from .region import check_region

__all__ = ["ContainerReader", "ContainerWriter", "TcsRecoveryWarning", "TcsDamageWarning", "default_permissions"]

#: a rescan that lost the record chain looks this far ahead for the next
#: record magic, and checks at most this many candidates' checksums
_RESYNC_WINDOW = 1 << 20
_RESYNC_BYTES = 64 << 20


class TcsRecoveryWarning(UserWarning):
    """A ``.tcs`` file had no valid index; its records were rescanned."""


class TcsDamageWarning(UserWarning):
    """Damaged groups of a ``.tcs`` file were skipped (``skip_damaged``)."""


class ContainerReader:
    """Random access to the records of a ``.tcs`` file.

    Opening reads the header and the index (one read of the footer, one of
    the index).  Without a valid footer or index (a killed writer, a
    truncated copy, an index that disagrees with the header) the records
    are rescanned from the start: only their 24-byte headers are read, and
    every complete group is available (spec section 8).

    Attributes
    ----------
    indexed : bool
        False when the records were rescanned.
    recovery : str or None
        Why they were rescanned (None when indexed).
    expected_frames : int or None
        The frames the header says the file holds (0 or None: unknown).
    damaged_groups : dict
        Groups found damaged while opening (a rescan's groups with a
        missing record), group -> reason; reading them raises.

    ``mask_sum(n_frames, (y0, y1, x0, x1))`` gives a tile's mask sums
    (``tcscodec.masks.tile_mask_sum`` with the header's seed and frame
    size); only files with the ``predict-rice`` codec need it, to decode
    tiles.  The format layer does not compute masks itself.

    Reads are positional (``os.pread``): there is no shared file position,
    so threads may share one reader.
    """

    def __init__(self, path, mask_sum=None):
        self.path = Path(path)
        self.name = str(path)
        self.mask_sum = mask_sum
        self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        # Without pread (Windows) a lock keeps seek + read together.
        self._lock = None if hasattr(os, "pread") else threading.Lock()
        try:
            st = os.fstat(self._fd)
            if stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError(21, "Is a directory", self.name)
            if not stat.S_ISREG(st.st_mode):
                raise TcsFormatError(f"{self.name}: not a regular file")
            self.file_size = st.st_size
            self.header, self.data_offset = TcsHeader.read_at(self._read, self.name, self.file_size)
            self.damaged_groups: dict[int, str] = {}
            self.recovery: str | None = None
            #: the groups' lengths and first frames (set by the index or the rescan)
            self.layout: GroupLayout
            self._ends: dict[tuple[int, int, int], int] | None = None
            self.indexed = self._load_index()
            if not self.indexed:
                self._scan()
        except BaseException:
            os.close(self._fd)
            self._fd = -1
            raise

    # -- reading bytes ------------------------------------------------------------------
    def _read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` (fewer at the end of the file)."""
        if self._fd < 0:
            raise TcsValueError(f"{self.name}: reader is closed")
        size = max(0, min(size, self.file_size - offset))
        if self._lock is not None:
            with self._lock:
                os.lseek(self._fd, offset, os.SEEK_SET)
                return os.read(self._fd, size)
        chunks = []
        while size > 0:
            chunk = os.pread(self._fd, min(size, 1 << 30), offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    # -- opening ----------------------------------------------------------------------------
    def _tile_elements(self, row: int, col: int) -> int:
        y0, y1, x0, x1 = self.header.tile_bounds(row, col)
        return (y1 - y0) * (x1 - x0)

    def _max_payload(self) -> int:
        """The largest payload any tile of the grid may have."""
        th, tw = min(self.header.tile[0], self.header.height), min(self.header.tile[1], self.header.width)
        return max_payload_size(th * tw)

    def _rescan(self, why: str) -> bool:
        self.recovery = why
        warnings.warn(f"{self.name}: {why}; rescanning records", TcsRecoveryWarning, stacklevel=4)
        return False

    def _load_index(self) -> bool:
        """Read footer and index; False (rescan) when there is none or it is
        damaged (a checksum or magic fails).

        Every offset and count is checked before the index is read, and the
        index is read whole only when its size is what its count says.  A
        footer and index whose checksums hold but which disagree with the
        header or the file (frame count, number of records, an entry outside
        the file or the grid, a record listed twice) cannot come from
        damage: the file is refused (spec section 8.1)."""
        h = self.header
        if self.file_size < self.data_offset + INDEX_HEAD_SIZE + 4 + FOOTER_SIZE:
            self.recovery = "no index (file too short)"
            return False
        footer = unpack_footer(self._read(self.file_size - FOOTER_SIZE, FOOTER_SIZE))
        if footer is None:
            self.recovery = "no valid footer"
            return False
        index_offset, n_frames = footer
        index_end = self.file_size - FOOTER_SIZE
        if not self.data_offset <= index_offset <= index_end - INDEX_HEAD_SIZE - 4:
            raise TcsFormatError(f"{self.name}: footer's index offset {index_offset} is outside the file")
        if h.n_frames and n_frames != h.n_frames:
            raise TcsFormatError(f"{self.name}: header says {h.n_frames} frames, footer {n_frames}")
        try:
            count = unpack_index_head(self._read(index_offset, INDEX_HEAD_SIZE))
        except TcsFormatError as exc:
            return self._rescan(str(exc))
        rows, cols = h.grid
        table = -(-count // (rows * cols)) if h.variable_groups else None  # groups in the group table
        if index_size(count, table) != index_end - index_offset:
            return self._rescan(f"index of {count} entries does not fill the "
                                f"{index_end - index_offset} bytes before the footer")
        buf = self._read(index_offset, index_end - index_offset)
        try:
            if h.variable_groups:
                entries, lengths = unpack_variable_index(buf)
            else:
                entries = unpack_index_entries(buf)
        except (TcsChecksumError, TcsTruncatedError) as exc:
            return self._rescan(str(exc))
        except TcsFormatError as exc:
            if not h.variable_groups:
                return self._rescan(str(exc))
            # the checksum held: a group table that does not fit was made so
            raise TcsFormatError(f"{self.name}: {exc}") from None
        if h.variable_groups:
            # The checksums hold: a table that disagrees was made so (section 8.1).
            if len(lengths) * rows * cols != count:
                raise TcsFormatError(f"{self.name}: index lists {count} records, its group table "
                                     f"{len(lengths)} groups of {rows}x{cols} tiles")
            try:
                self.layout = GroupLayout.variable(lengths, h.B)
            except TcsFormatError as exc:
                raise TcsFormatError(f"{self.name}: group table: {exc}") from None
            if self.layout.n_frames != n_frames:
                raise TcsFormatError(f"{self.name}: group table holds {self.layout.n_frames} frames, "
                                     f"the footer says {n_frames}")
            groups = self.layout.n_groups
        else:
            self.layout = GroupLayout.fixed(h.B, n_frames)
            groups = -(-n_frames // h.B)
        if count != groups * rows * cols:
            raise TcsFormatError(f"{self.name}: index lists {count} records, {n_frames} frames in "
                                 f"{rows}x{cols} tiles need {groups * rows * cols}")
        if count:
            offset, group = entries["offset"], entries["group"]
            row, col = entries["tile_row"].astype(np.int64), entries["tile_col"].astype(np.int64)
            bad = ((offset < self.data_offset) | (offset > index_offset - RECORD_HEADER_SIZE)
                   | (group >= groups) | (row >= rows) | (col >= cols))
            if bad.any():
                i = int(np.argmax(bad))
                raise TcsFormatError(f"{self.name}: index entry {i} (offset {int(offset[i])}, group "
                                     f"{int(group[i])}, tile ({int(row[i])}, {int(col[i])})) is outside "
                                     "the file or the grid")
            keys = (group.astype(np.int64) * rows + row) * cols + col
            if np.unique(keys).size != count:
                raise TcsFormatError(f"{self.name}: index lists a record twice")
        self.expected_frames: int | None = n_frames
        self.records = {
            (int(g), int(r), int(c)): RecordInfo(int(o), int(g), int(r), int(c))
            for o, g, r, c in entries.tolist()
        }
        self._records_end = index_offset
        return True

    def _plausible_record(self, pos: int, head: bytes, known: bool):
        """``RecordInfo`` of the record header ``head`` at ``pos``, or None
        where it cannot be one of this file's records: wrong magic or
        codec, ``n_frames`` outside 1..B, a tile outside the grid, a payload
        larger than the tile allows or running past the end of the file.
        A candidate found by resynchronisation (``known`` False) must also
        pass its checksum."""
        try:
            g, r, c, n, codec, size, _crc = unpack_record_header(head)
        except TcsFormatError:
            return None
        rows, cols = self.header.grid
        if (codec != codec_id(self.header.codec) or not 1 <= n <= self.header.B
                or r >= rows or c >= cols or size > max_payload_size(self._tile_elements(r, c))
                or pos + RECORD_HEADER_SIZE + size > self.file_size):
            return None
        if not known:
            payload = self._read(pos + RECORD_HEADER_SIZE, size)
            if record_crc(head[:20], payload) != struct.unpack("<I", head[20:24])[0]:
                return None
        return RecordInfo(pos, g, r, c, n, size)

    def _resync(self, pos: int, budget: list[int]) -> int | None:
        """Position of the next valid record after ``pos`` (damage in the
        record chain), looking at most :data:`_RESYNC_WINDOW` bytes ahead."""
        end = min(self.file_size, pos + _RESYNC_WINDOW)
        window = self._read(pos, end - pos)
        budget[0] -= len(window)
        at = window.find(RECORD_MAGIC, 1)
        while at >= 0 and budget[0] > 0:
            cand = pos + at
            head = self._read(cand, RECORD_HEADER_SIZE)
            if len(head) < RECORD_HEADER_SIZE:
                return None
            budget[0] -= RECORD_HEADER_SIZE + struct.unpack_from("<I", head, 16)[0]
            if self._plausible_record(cand, head, known=False):
                return cand
            at = window.find(RECORD_MAGIC, at + 1)
        return None

    def _scan(self) -> None:
        """Rebuild the index by walking the records from the header on.

        A record header that cannot be one of this file's records (section
        8.1) ends the chain; the scan then looks for the next record whose
        checksum holds and goes on from there, so damage in one record does
        not lose the groups after it.  Groups ``0..k-1`` are kept, where
        ``k - 1`` is the last complete group (every tile present, all with
        the same ``n_frames``; only the last may be short); a group before
        it that is incomplete is damaged (it held B frames) and named in
        :attr:`damaged_groups`.
        """
        h = self.header
        records: dict = {}
        pos, budget, damage, skipped = self.data_offset, [_RESYNC_BYTES], [], 0
        while pos + RECORD_HEADER_SIZE <= self.file_size:
            info = self._plausible_record(pos, self._read(pos, RECORD_HEADER_SIZE), known=True)
            if info is None:
                nxt = self._resync(pos, budget)
                if nxt is None:
                    break  # the index, garbage, or the cut-off end of a killed writer's file
                damage.append(pos)
                skipped += nxt - pos
                pos = nxt
                continue
            records.setdefault(info.key, info)
            pos += RECORD_HEADER_SIZE + info.payload_size
        self._records_end = pos
        rows, cols = h.grid
        max_groups = -(-h.n_frames // h.B) if h.n_frames and not h.variable_groups else None
        complete: dict[int, int] = {}  # group -> n_frames, for every complete group
        seen: dict[int, set[int]] = {}  # group -> the n_frames its records say
        for g in sorted({k[0] for k in records}):
            if max_groups is not None and g >= max_groups:
                break  # records beyond the header's frame count are not this movie's
            sizes = set()
            for r in range(rows):  # stops at the first missing tile: work bounded by the records
                for c in range(cols):
                    rec = records.get((g, r, c))
                    if rec is None:
                        break
                    sizes.add(rec.n_frames)
                else:
                    continue
                break
            else:
                if len(sizes) == 1:
                    complete[g] = sizes.pop()
                    continue
            seen[g] = sizes
        # Missing groups can only lie in the skipped bytes (a record takes at
        # least 24): a damaged group id of 2^32 - 1 does not make 4 billion groups.
        plausible = (len(records) + skipped // RECORD_HEADER_SIZE) // (rows * cols) + 1
        complete = {g: n for g, n in complete.items() if g < plausible}
        if h.variable_groups:
            lengths = self._variable_run(complete, seen)
            n_groups = len(lengths)
            self.layout = GroupLayout.variable(lengths, h.B)
        else:
            # The run ends at the first short group whose records hold (only
            # the last group may be short); a short group whose checksums fail
            # is damaged, not short.
            last = -1
            for g in sorted(complete):
                n = complete[g]
                if n < h.B and any(g2 > g for g2 in complete) and not self._group_intact(g, records):
                    del complete[g]
                    continue
                last = g
                if n < h.B:
                    break
            n_groups = last + 1
            self.layout = GroupLayout.fixed(h.B, sum(complete.get(g, h.B) for g in range(n_groups)))
        self.records = {k: v for k, v in records.items() if k[0] < n_groups}
        self.expected_frames = h.n_frames or None
        for g in range(n_groups):
            if g not in complete:
                self.damaged_groups[g] = "records missing or damaged (found by a rescan)"
        what = ("was not finished by its writer" if not h.n_frames
                else "is truncated or its index is damaged")
        extra = ""
        if self.damaged_groups:
            extra = f", damaged group(s) {_group_list(self.damaged_groups)}"
        if damage:
            extra += f", {len(damage)} damaged record header(s) skipped"
        self.recovery = self.recovery or ("no valid footer" if not h.n_frames else "no valid index")
        warnings.warn(
            f"{self.name} {what}: recovered {n_groups} complete group(s), {self.n_frames} frame(s){extra}",
            TcsRecoveryWarning,
            stacklevel=3,
        )

    def _variable_run(self, complete: dict[int, int], seen: dict[int, set[int]]) -> list[int]:
        """The group lengths a rescan of a version 2 file keeps: groups 0,
        1, ... up to the last complete one.  A group before it that is not
        complete is damaged; its length is the one its surviving records
        agree on, and where none survives (or they disagree) the frames
        after it cannot be numbered, so the run ends before it.  With a
        header ``n_frames`` (a finished file truncated), groups beyond it
        are not this movie's."""
        lengths: list[int] = []
        total, limit = 0, self.header.n_frames or None
        last = max(complete, default=-1)
        for g in range(last + 1):
            n = complete.get(g)
            if n is None:
                sizes = seen.get(g, set())
                if len(sizes) != 1:
                    break
                n = next(iter(sizes))
            if limit is not None and total + n > limit:
                break
            lengths.append(n)
            total += n
        return lengths

    def _group_intact(self, group: int, records) -> bool:
        rows, cols = self.header.grid
        for r in range(rows):
            for c in range(cols):
                info = records[(group, r, c)]
                head = self._read(info.offset, RECORD_HEADER_SIZE)
                payload = self._read(info.offset + RECORD_HEADER_SIZE, info.payload_size)
                if record_crc(head[:20], payload) != struct.unpack("<I", head[20:24])[0]:
                    return False
        return True

    # -- queries ------------------------------------------------------------------
    @property
    def n_groups(self) -> int:
        return self.layout.n_groups

    @property
    def n_frames(self) -> int:
        """Frames in the groups available (every group of an indexed file)."""
        return self.layout.n_frames

    @property
    def truncated(self) -> bool:
        """True when the header says the file held frames it no longer has."""
        return self.expected_frames is not None and self.expected_frames > self.n_frames

    def group_frames(self, group: int) -> int:
        """Frames held by ``group``."""
        self._check_group(group)
        return self.layout.length(group)

    def group_start(self, group: int) -> int:
        """First frame of ``group``."""
        self._check_group(group)
        return self.layout.start(group)

    def locate(self, frame: int) -> tuple[int, int]:
        """``(group, position in the group)`` of ``frame`` (0 <= frame < n_frames)."""
        if not 0 <= frame < self.n_frames:
            raise IndexError(f"{self.name}: frame {frame} out of range 0..{self.n_frames - 1}")
        return self.layout.locate(frame)

    def _check_group(self, group: int) -> None:
        if not 0 <= group < self.n_groups:
            h = self.header
            missing = (self.n_frames < self.expected_frames if h.variable_groups
                       else group * h.B < self.expected_frames) if self.expected_frames else False
            if 0 <= group and missing:
                raise TcsTruncatedError(
                    f"{self.name}: group {group} is missing: the file is truncated "
                    f"({self.n_groups} complete group(s) recovered)"
                )
            raise IndexError(f"{self.name}: group {group} out of range 0..{self.n_groups - 1}")

    def read_payload(self, group: int, tile_row: int, tile_col: int) -> bytes:
        """The compressed payload of one record, checksum and ids verified.

        The record's ``payload_size`` is checked against the tile's largest
        payload and the file's size before the payload is read."""
        self._check_group(group)
        where = f"{self.name}: group {group} tile ({tile_row}, {tile_col})"
        info = self.records.get((group, tile_row, tile_col))
        if info is None:
            rows, cols = self.header.grid
            if not (0 <= tile_row < rows and 0 <= tile_col < cols):
                raise IndexError(f"{where}: no such tile in the {rows}x{cols} grid")
            raise TcsFormatError(f"{where}: the record is missing (damaged; found by a rescan)")
        head = self._read(info.offset, RECORD_HEADER_SIZE)
        try:
            g, r, c, n, codec, size, _crc = unpack_record_header(head)
        except TcsFormatError as exc:
            raise TcsFormatError(f"{where}: {exc}") from None
        if (g, r, c) != (group, tile_row, tile_col) or n != self.group_frames(group):
            raise TcsFormatError(f"{where}: record holds group {g} tile ({r}, {c}) of {n} frames")
        if CODECS.get(codec) != self.header.codec:
            raise TcsFormatError(f"{where}: record codec {codec} differs from the header's")
        limit = max_payload_size(self._tile_elements(tile_row, tile_col))
        if size > limit:
            raise TcsFormatError(f"{where}: payload size {size:,} is over the tile's limit {limit:,}")
        if info.offset + RECORD_HEADER_SIZE + size > self.file_size:
            raise TcsTruncatedError(f"{where}: file ends inside the record")
        payload = self._read(info.offset + RECORD_HEADER_SIZE, size)
        if len(payload) < size:
            raise TcsTruncatedError(f"{where}: file ends inside the record")
        check_record_crc(head, payload, where)
        return payload

    def raw_record(self, group: int, tile_row: int, tile_col: int) -> bytes:
        """The bytes of one record as they are in the file, damaged or not:
        from its offset to the next record's (at most the tile's largest
        record).  ``tcscodec recover`` copies damaged records with it."""
        self._check_group(group)
        info = self.records.get((group, tile_row, tile_col))
        if info is None:
            return b""
        if self._ends is None:
            starts = sorted(e.offset for e in self.records.values())
            nxt = dict(zip(starts, starts[1:] + [self._records_end], strict=True))
            self._ends = {k: nxt[e.offset] for k, e in self.records.items()}
        limit = RECORD_HEADER_SIZE + max_payload_size(self._tile_elements(tile_row, tile_col))
        end = min(self._ends[(group, tile_row, tile_col)], info.offset + limit)
        return self._read(info.offset, max(0, end - info.offset))

    def read_tile(self, group: int, tile_row: int, tile_col: int) -> np.ndarray:
        """The stored measurement of one tile, checksum verified."""
        payload = self.read_payload(group, tile_row, tile_col)
        where = f"{self.name}: group {group} tile ({tile_row}, {tile_col})"
        bounds = self.header.tile_bounds(tile_row, tile_col)
        csum = None
        if codec_class(self.header.codec)().uses_mask_sums(self.header.stored_dtype):
            if self.mask_sum is None:
                raise TcsValueError(f"{self.name}: the predict-rice codec needs the tiles' mask sums: "
                                    "pass ContainerReader(path, mask_sum=...) or use tcscodec.open()")
            csum = self.mask_sum(self.group_frames(group), bounds)
        y0, y1, x0, x1 = bounds
        try:
            return decode_payload(payload, self.header.codec, self.header.stored_dtype, (y1 - y0, x1 - x0), csum)
        except TcsFormatError as exc:
            raise TcsFormatError(f"{where}: {exc}") from None
        except MemoryError:
            raise TcsMemoryError(f"{where}: not enough memory to decode the tile") from None
        except (ValueError, IndexError, OverflowError) as exc:  # numpy on malformed data: ours to name
            raise TcsFormatError(f"{where}: payload does not decode: {exc}") from None

    def read_measurement(self, group: int, region=None) -> np.ndarray:
        """The stored measurement of ``group`` over ``region`` (y0, y1, x0, x1),
        reading only the tiles that intersect it."""
        H, W = self.header.height, self.header.width
        y0, y1, x0, x1 = check_region(region, H, W)
        self._check_group(group)
        if group in self.damaged_groups:
            raise TcsFormatError(f"{self.name}: group {group} is damaged: {self.damaged_groups[group]}")
        th, tw = self.header.tile
        try:
            out = np.empty((y1 - y0, x1 - x0), np.dtype(self.header.stored_dtype))
        except MemoryError:
            raise TcsMemoryError(f"{self.name}: a {y1 - y0}x{x1 - x0} measurement does not fit in memory") from None
        for r in range(y0 // th, (y1 - 1) // th + 1):
            for c in range(x0 // tw, (x1 - 1) // tw + 1):
                ty0, ty1, tx0, tx1 = self.header.tile_bounds(r, c)
                tile = self.read_tile(group, r, c)
                a0, a1, b0, b1 = max(y0, ty0), min(y1, ty1), max(x0, tx0), min(x1, tx1)
                out[a0 - y0 : a1 - y0, b0 - x0 : b1 - x0] = tile[a0 - ty0 : a1 - ty0, b0 - tx0 : b1 - tx0]
        return out

    def check_group(self, group: int) -> list[str]:
        """Every problem of ``group``'s records (checksums, ids, payloads),
        one message per damaged tile; empty when the group is intact."""
        if group in self.damaged_groups:
            return [f"{self.name}: group {group} is damaged: {self.damaged_groups[group]}"]
        rows, cols = self.header.grid
        problems = []
        for r in range(rows):
            for c in range(cols):
                try:
                    self.read_tile(group, r, c)
                except (TcsFormatError, TcsMemoryError) as exc:
                    problems.append(str(exc))
        return problems

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _group_list(groups, most: int = 10) -> str:
    """``"3, 7, 9"`` (the first ``most``, then a count)."""
    gs = sorted(groups)
    text = ", ".join(str(g) for g in gs[:most])
    return text + (f" and {len(gs) - most} more" if len(gs) > most else "")
