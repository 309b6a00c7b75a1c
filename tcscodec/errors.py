"""Exception hierarchy of tcscodec.

Every error raised on purpose by tcscodec is a :class:`TcsError`.  Each
concrete class also subclasses the builtin that fits it, so callers that
only know Python's builtins (``except ValueError``, ``except OSError``)
still catch them, the way tifffile's ``TiffFileError(ValueError)`` works.
"""

from __future__ import annotations

__all__ = [
    "TcsError",
    "TcsFormatError",
    "TcsVersionError",
    "TcsChecksumError",
    "TcsTruncatedError",
    "TcsValueError",
    "TcsInputError",
    "TcsDecoderError",
    "TcsDeviceError",
    "TcsDependencyError",
    "TcsMemoryError",
    "TcsNotAMovieError",
    "TcsTypeError",
    "TcsRuntimeError",
]


class TcsError(Exception):
    """Base class of every error raised by tcscodec."""


class TcsFormatError(TcsError, ValueError):
    """A file is not a valid ``.tcs`` container (wrong magic, bad field)."""


class TcsVersionError(TcsFormatError):
    """A ``.tcs`` file has a major version this reader does not know."""


class TcsChecksumError(TcsFormatError):
    """A header, record or index failed its CRC-32 check."""


class TcsTruncatedError(TcsFormatError, EOFError):
    """A ``.tcs`` file ends inside a header, record or index."""


class TcsValueError(TcsError, ValueError):
    """An argument or a frame is invalid (shape, dtype, B, NaN, ...)."""


class TcsTypeError(TcsError, TypeError):
    """An argument has the wrong type (a float mask seed, a string index)."""


class TcsRuntimeError(TcsError, RuntimeError):
    """An operation failed that no argument check could foresee: an external
    program (ffmpeg) failed, a checkpoint does not fit its network."""


class TcsInputError(TcsError, OSError):
    """An input movie cannot be read (missing, unsupported, corrupt)."""


class TcsDecoderError(TcsError, LookupError):
    """A decoder name is unknown or its weights cannot be loaded."""


class TcsDeviceError(TcsError, RuntimeError):
    """The requested compute device (CUDA) is not available."""


class TcsDependencyError(TcsError, ImportError):
    """An optional dependency a feature needs (dask, torch, ...) is not installed."""


class TcsMemoryError(TcsError, MemoryError):
    """An array a file asks for (a frame, its masks) cannot be allocated."""


class TcsNotAMovieError(TcsValueError):
    """An input is readable but is not a T x H x W stack of grayscale frames
    (a 2-D image, RGB colour, a spectrum image, 4-D data, complex values);
    the message says what was found and what is expected."""
