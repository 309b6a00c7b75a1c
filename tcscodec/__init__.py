"""tcscodec: temporal compressive sensing for electron-microscopy movies.

Each group of B frames X_b is encoded into one measurement
Y = sum_b C_b * X_b with the spec's pseudo-random binary masks C_b, stored in
a ``.tcs`` container, and decoded (reconstructed and denoised) later::

    import tcscodec
    tcscodec.write("movie.tcs", frames, B=30)
    with tcscodec.open("movie.tcs") as r:
        decoded = r.read()

Importing tcscodec registers its imageio v3 plugin (``imageio.v3.imread``
of ``.tcs`` files) when imageio is installed; torch and CuPy are imported
only when decoding or encoding on the GPU.
"""

from ._version import __version__
from .api import open, to_dask, write
from .errors import (
    TcsChecksumError,
    TcsDecoderError,
    TcsDependencyError,
    TcsDeviceError,
    TcsError,
    TcsFormatError,
    TcsInputError,
    TcsMemoryError,
    TcsNotAMovieError,
    TcsRuntimeError,
    TcsTruncatedError,
    TcsTypeError,
    TcsValueError,
    TcsVersionError,
)
from .format import TcsHeader, TcsRecoveryWarning
from .reader import TcsReader
from .reconstruction import reconstruct  # imports torch only when called
from .writer import TcsWriter

__all__ = [
    "__version__",
    "open",
    "write",
    "to_dask",
    "reconstruct",
    "TcsReader",
    "TcsWriter",
    "TcsHeader",
    "TcsRecoveryWarning",
    "TcsError",
    "TcsFormatError",
    "TcsVersionError",
    "TcsChecksumError",
    "TcsTruncatedError",
    "TcsValueError",
    "TcsInputError",
    "TcsDecoderError",
    "TcsDeviceError",
    "TcsMemoryError",
    "TcsDependencyError",
    "TcsNotAMovieError",
    "TcsTypeError",
    "TcsRuntimeError",
]

from . import imageio_plugin as _imageio_plugin  # noqa: E402
from . import rice_kernels as _rice_kernels  # noqa: E402

_imageio_plugin.register()
# readers and writers code predict-rice records with the compiled kernels
# (the format layer alone keeps its numpy reference)
_rice_kernels.install()
