"""``tcscodec.open`` and ``tcscodec.write``: the imageio-v3-like entry points."""

from __future__ import annotations

from .errors import TcsValueError
from .reader import TcsReader
from .writer import TcsWriter, write

__all__ = ["open", "write"]


def open(path, mode: str = "r", **kwargs):  # noqa: A001 - mirrors imageio.v3.imopen
    """Open a ``.tcs`` file for reading (``"r"``) or writing (``"w"``).

    ``open(path)`` returns a :class:`~tcscodec.reader.TcsReader`;
    ``open(path, "w", B=30, ...)`` a :class:`~tcscodec.writer.TcsWriter`.
    Both are context managers::

        with tcscodec.open("movie.tcs", "w", B=30) as w:
            for frame in detector:
                w.write(frame)
        with tcscodec.open("movie.tcs") as r:
            y = r.measurements(0)      # exact measurement of group 0
            frames = r.read()          # decoded movie
    """
    if mode == "r":
        return TcsReader(path, **kwargs)
    if mode == "w":
        if "B" not in kwargs:
            raise TcsValueError("open(path, 'w') needs B=, the number of frames per measurement")
        return TcsWriter(path, **kwargs)
    raise TcsValueError(f"mode must be 'r' or 'w', got {mode!r}")
