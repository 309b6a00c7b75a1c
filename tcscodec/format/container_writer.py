"""Writing the ``.tcs`` container: :class:`ContainerWriter` (pure Python + numpy).

It appends records to a uniquely named temporary file beside the
destination and renames it into place only when
:meth:`~ContainerWriter.finish` has written the index and footer, so a
failed write never leaves a half-written file under the final name and
never clobbers an existing one.  A writer that is killed leaves the
temporary ``*.partial`` file, which :class:`~.container.ContainerReader`
opens by rescanning its records.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path

from ..errors import TcsValueError
from .groups import fixed_B
from .header import TcsHeader
from .records import RECORD_HEADER_SIZE, RecordInfo, pack_footer, pack_index, pack_record

__all__ = ["ContainerWriter", "default_permissions"]


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

    The header is serialised (and its metadata checked) before the
    temporary file is created, and written through to the operating system
    at once, so a writer killed at any time leaves either no file or a
    readable one.  :meth:`flush` hands the records written so far to the
    operating system: a process killed after it loses none of them.  Any
    error while creating the file removes it again.
    """

    def __init__(self, path, header: TcsHeader):
        self.path = Path(path)
        self.header = header
        head = header.to_bytes()  # raises on bad metadata before any file exists
        folder = self.path.parent if str(self.path.parent) else Path(".")
        if not folder.is_dir():
            raise FileNotFoundError(f"{self.path}: folder {folder} does not exist")
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".partial", dir=folder)
        self.temp_path = Path(tmp)
        self._entries: list[RecordInfo] = []
        self.closed = False
        try:
            self._fh = os.fdopen(fd, "w+b")
        except BaseException:
            os.close(fd)
            self.temp_path.unlink(missing_ok=True)
            raise
        try:
            default_permissions(self.temp_path)
            self._fh.write(head)
            self._fh.flush()
        except BaseException:
            self.abort()
            raise
        self._offset = len(head)

    def write_record(self, group: int, tile_row: int, tile_col: int, n_frames: int, payload: bytes) -> None:
        """Append one (group, tile) record whose payload is already encoded."""
        self._append(pack_record(group, tile_row, tile_col, n_frames, self.header.codec, payload),
                     RecordInfo(self._offset, group, tile_row, tile_col, n_frames, len(payload)))

    def write_raw_record(self, group: int, tile_row: int, tile_col: int, n_frames: int, raw: bytes) -> None:
        """Append a record's bytes as they are, indexed as (group, tile).

        ``tcscodec recover`` copies damaged records this way: their checksum
        still fails in the new file, which names the same damage, while a
        fresh checksum would pass the damage off as data."""
        self._append(bytes(raw), RecordInfo(self._offset, group, tile_row, tile_col, n_frames,
                                            max(0, len(raw) - RECORD_HEADER_SIZE)))

    def _append(self, data: bytes, info: RecordInfo) -> None:
        self._fh.write(data)
        self._offset += len(data)
        self._entries.append(info)

    def flush(self) -> None:
        """Hand everything written so far to the operating system (a killed
        process loses none of it; a power cut may: that needs fsync)."""
        self._fh.flush()

    def finish(self, n_frames: int) -> Path:
        """Write index and footer, record ``n_frames`` in the header, rename.

        With variable groups (a version 2 header) the index ends with the
        group table, the lengths the records say; when those lengths fit a
        version 1 file (:func:`~.groups.fixed_B`: all groups but the last
        of one length) the file is written as version 1 instead, with that
        length as B, so that older readers read it.  Raises
        :class:`TcsValueError` when the records do not make whole groups
        of ``n_frames`` frames in all (the file is left unfinished)."""
        entries = sorted(self._entries, key=lambda e: e.key)
        header = self.header.with_frames(n_frames)
        lengths = None
        if header.variable_groups:
            lengths = self._group_lengths(entries, n_frames)
            B = fixed_B(lengths, header.B)
            if B is not None:  # the oldest version that holds the file
                header = replace(header, B=B, variable_groups=False, version=None)
                lengths = None
        index_offset = self._offset
        self._fh.write(pack_index(entries, lengths))
        self._fh.write(pack_footer(index_offset, n_frames))
        # The header's size depends neither on n_frames nor on B or the
        # version, so it is patched in place.
        self._fh.seek(0)
        self.header = header
        self._fh.write(header.to_bytes())
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.temp_path, self.path)
        self.closed = True
        return self.path

    def _group_lengths(self, entries: list[RecordInfo], n_frames: int) -> list[int]:
        """Each group's length from its records (sorted by key), checked:
        groups 0, 1, ... each with a record per tile, agreeing on it."""
        rows, cols = self.header.grid
        tiles = rows * cols
        if len(entries) % tiles:
            raise TcsValueError(f"{self.path}: {len(entries)} records do not make whole groups of {tiles} tiles")
        lengths = []
        for g in range(len(entries) // tiles):
            group = entries[g * tiles:(g + 1) * tiles]
            if {e.group for e in group} != {g} or len({e.n_frames for e in group}) != 1:
                raise TcsValueError(f"{self.path}: the records of group {g} are missing or disagree on its length")
            lengths.append(group[0].n_frames)
        if sum(lengths) != n_frames:
            raise TcsValueError(f"{self.path}: the groups hold {sum(lengths)} frames, not {n_frames}")
        return lengths

    def keep_partial(self) -> Path:
        """Close the temporary file without index and leave it, readable by
        a rescan and repairable by ``tcscodec recover`` (an interrupted
        writer); returns its path."""
        if not self.closed:
            self.closed = True
            self._fh.close()
        return self.temp_path

    def abort(self) -> None:
        """Close and delete the temporary file; the destination is untouched.

        The file is deleted even when closing it fails (a full disk fails
        the last flush)."""
        if not self.closed:
            self.closed = True
            try:
                self._fh.close()
            except OSError:
                pass
            finally:
                self.temp_path.unlink(missing_ok=True)
