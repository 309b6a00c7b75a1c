"""``tcscodec.open`` and ``tcscodec.write``: the imageio-v3-like entry points."""

from __future__ import annotations

from .errors import TcsValueError
from .reader import TcsReader
from .writer import TcsWriter, write

__all__ = ["open", "write", "to_dask"]


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


def to_dask(path, chunks=None, **kwargs):
    """The decoded movie of a ``.tcs`` file as a lazy dask array.

    ``kwargs`` are :class:`~tcscodec.reader.TcsReader`'s (``decoder``,
    ``dtype``, decoder options); ``chunks`` as in
    :meth:`~tcscodec.reader.TcsReader.to_dask`.  Each task reopens the file
    by path, so the array computes with dask's threaded, process and
    distributed schedulers::

        x = tcscodec.to_dask("movie.tcs")
        x[100:200].mean(axis=0).compute()
    """
    with TcsReader(path, **kwargs) as r:
        return r.to_dask(chunks)
