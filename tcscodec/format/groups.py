"""Where each frame of a ``.tcs`` file lies: the groups and their lengths.

Pure Python + numpy.  A version 1 file has groups of ``B`` frames (only the
last may be shorter), so frame ``t`` is frame ``t % B`` of group ``t // B``.
A version 2 file has groups of variable length ``1 <= n_g <= B``; their
lengths are the **group table** at the end of the index (spec section 5.1),
and frame ``t`` lies in the group whose first frame is the largest one
``<= t`` (first frames are the prefix sums of the lengths)::

    >>> layout = GroupLayout.variable([4, 2, 3], B=4)
    >>> layout.n_frames, layout.n_groups, layout.locate(5)
    (9, 3, (1, 1))
    >>> GroupLayout.fixed(4, 10).lengths().tolist()
    [4, 4, 2]

:func:`fixed_B` tells whether a list of lengths fits a version 1 file (all
groups but the last of one length, the last no longer), which writers use
to write the oldest version that holds their file.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

from ..errors import TcsFormatError

__all__ = ["GroupLayout", "fixed_B", "pack_group_table", "unpack_group_table", "GROUP_TABLE_HEAD_SIZE"]

#: the group table's head: ``u64`` number of groups
GROUP_TABLE_HEAD_SIZE = 8


class GroupLayout:
    """The groups of a movie: their lengths and first frames.

    Use :meth:`fixed` for a version 1 file (groups of ``B``, computed, no
    table in memory) and :meth:`variable` for a version 2 file (one entry
    per group: 9 bytes a group, so a 10^6-frame movie in groups of 2 costs
    4.5 MB).

    Attributes
    ----------
    B : int
        The largest group length (the header's ``B``).
    is_variable : bool
        True for a version 2 layout (a group table).
    """

    def __init__(self, B: int, n_frames: int, lengths: np.ndarray | None = None):
        self.B = int(B)
        self.is_variable = lengths is not None
        self._lengths = None if lengths is None else np.asarray(lengths, np.uint8)
        self._starts: np.ndarray | None = None
        if self._lengths is not None:
            self._starts = np.zeros(len(self._lengths) + 1, np.int64)
            np.cumsum(self._lengths, out=self._starts[1:])
            n_frames = int(self._starts[-1])
        self.n_frames = int(n_frames)

    @classmethod
    def fixed(cls, B: int, n_frames: int) -> GroupLayout:
        """Groups of ``B`` frames, the last shorter (version 1)."""
        return cls(B, n_frames)

    @classmethod
    def variable(cls, lengths: Sequence[int] | np.ndarray, B: int) -> GroupLayout:
        """Groups of the given lengths, each ``1..B`` (version 2).

        Raises :class:`TcsFormatError` for a length outside ``1..B``."""
        a = np.asarray(lengths, np.int64).reshape(-1)
        if a.size and (a.min() < 1 or a.max() > B):
            bad = int(np.argmax((a < 1) | (a > B)))
            raise TcsFormatError(f"group {bad} holds {int(a[bad])} frames, outside 1..B={B}")
        return cls(B, 0, a.astype(np.uint8))

    # -- queries -------------------------------------------------------------------------------
    @property
    def n_groups(self) -> int:
        if self._lengths is not None:
            return len(self._lengths)
        return -(-self.n_frames // self.B)

    def length(self, group: int) -> int:
        """Frames of ``group`` (``0 <= group < n_groups``, not checked)."""
        if self._lengths is not None:
            return int(self._lengths[group])
        return min(self.B, self.n_frames - group * self.B)

    def start(self, group: int) -> int:
        """First frame of ``group`` (``0 <= group <= n_groups``)."""
        if self._starts is not None:
            return int(self._starts[group])
        return min(group * self.B, self.n_frames)

    def locate(self, frame: int) -> tuple[int, int]:
        """``(group, position in the group)`` of ``frame`` (``0 <= frame < n_frames``)."""
        if self._starts is not None:
            g = int(np.searchsorted(self._starts, frame, side="right")) - 1
            return g, int(frame - self._starts[g])
        return frame // self.B, frame % self.B

    def lengths(self) -> np.ndarray:
        """Every group's length (int64)."""
        if self._lengths is not None:
            return self._lengths.astype(np.int64)
        out = np.full(self.n_groups, self.B, np.int64)
        if out.size:
            out[-1] = self.length(self.n_groups - 1)
        return out

    def histogram(self) -> dict[int, int]:
        """``{length: number of groups}``, by increasing length."""
        values, counts = np.unique(self.lengths(), return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts, strict=True)}

    def __repr__(self) -> str:
        kind = "variable" if self.is_variable else "fixed"
        return f"<GroupLayout {kind} B={self.B} {self.n_groups} groups {self.n_frames} frames>"


def fixed_B(lengths: Sequence[int] | np.ndarray, B: int) -> int | None:
    """The ``B`` of a version 1 file holding groups of ``lengths``, or None.

    They fit when every group but the last holds the same number ``L >= 2``
    of frames and the last no more (then ``B = L``); a single group (or
    none) fits with ``B`` itself.  Masks do not depend on ``B`` (spec
    section 6.1), so the records are the same in both versions."""
    a = np.asarray(lengths, np.int64).reshape(-1)
    if a.size <= 1:
        return B if (a.size == 0 or 1 <= a[0] <= B) else None
    L = int(a[0])
    if L < 2 or L > B or np.any(a[:-1] != L) or not 1 <= a[-1] <= L:
        return None
    return L


def pack_group_table(lengths: Sequence[int] | np.ndarray) -> bytes:
    """The group table: ``u64 G`` then ``G`` lengths, one ``u8`` each."""
    a = np.asarray(lengths, np.int64).reshape(-1)
    if a.size and (a.min() < 1 or a.max() > 255):
        raise TcsFormatError("group lengths must be 1..255")
    return struct.pack("<Q", a.size) + a.astype(np.uint8).tobytes()


def unpack_group_table(buf: bytes, offset: int = 0) -> np.ndarray:
    """The lengths of a group table starting at ``offset`` of ``buf``
    (the caller has checked that ``buf`` holds it whole)."""
    (count,) = struct.unpack_from("<Q", buf, offset)
    start = offset + GROUP_TABLE_HEAD_SIZE
    if start + count > len(buf):
        raise TcsFormatError(f"group table of {count} groups runs past the index")
    return np.frombuffer(buf, np.uint8, count, start).copy()
