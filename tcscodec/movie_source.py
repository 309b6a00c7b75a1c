"""An input movie as the encoder sees it (:class:`MovieSource`) and the
checks every input goes through (:func:`check_stack`, :func:`supported_dtype`).

Both :mod:`tcscodec.movies` (TIFF, npy, MRC, folders) and
:mod:`tcscodec.em_formats` (HDF5, rosettasciio) build sources from here, so
neither has to import the other back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import TcsError, TcsInputError, TcsNotAMovieError, TcsValueError
from .measurement import INPUT_DTYPES

__all__ = ["EXPECTED", "MovieSource", "check_stack", "shape_text", "supported_dtype"]


def supported_dtype(dtype) -> np.dtype:
    """The encoder dtype frames of ``dtype`` are converted to.

    float16 becomes float32 (exactly), float64 float32 (rounded: a relative
    error below 6e-8, far under any detector's noise), non-negative signed
    integers the unsigned type of the same size and 64-bit integers uint32
    (both checked frame by frame), booleans uint8 0/1; other dtypes are refused.
    """
    dtype = np.dtype(dtype)
    if dtype in INPUT_DTYPES:
        return dtype
    if dtype.kind == "f" and dtype.itemsize in (2, 8):
        return np.dtype(np.float32)
    if dtype.kind in "iu" and dtype.itemsize == 8:
        return np.dtype(np.uint32)
    if dtype.kind == "b":
        return np.dtype(np.uint8)
    if dtype.kind == "i" and dtype.itemsize <= 4:
        return np.dtype(f"u{dtype.itemsize}")
    if dtype.kind == "c":
        raise TcsNotAMovieError(f"frames of complex dtype {dtype.name} (an FFT or a phase image?) are not "
                                "supported: a .tcs movie holds real intensities")
    raise TcsValueError(f"frames of dtype {dtype.name} are not supported (use uint8, uint16, uint32 or float32)")


#: what every input must be, for refusal messages
EXPECTED = "expected a T x H x W stack of grayscale frames (a movie)"


def shape_text(shape) -> str:
    """``shape`` as "T x H x W" for messages ("a scalar" for ())."""
    return " x ".join(str(int(n)) for n in shape) or "a scalar"


def check_stack(name, shape, dtype, axes: str | None = None) -> None:
    """Refuse what is not a T x H x W stack of grayscale frames.

    ``name`` is put in front of the message, ``axes`` (e.g. tifffile's
    ``"YXS"`` or rosettasciio's axis names) is quoted when known.  Arrays
    without axis names whose last axis has 3 or 4 entries under frames of
    at least 16 x 16 are taken for RGB(A) pictures.  Raises
    :class:`~tcscodec.TcsNotAMovieError` (a ``ValueError``).
    """
    shape = tuple(int(n) for n in shape)
    dtype = np.dtype(dtype)
    found = f"{shape_text(shape)} {dtype.name}" + (f" (axes {axes})" if axes else "")
    if len(shape) == 2:
        raise TcsNotAMovieError(f"{name}: found a single 2-D image, {found}; {EXPECTED}")
    if len(shape) != 3:
        raise TcsNotAMovieError(f"{name}: found {len(shape)}-D data, {found}; {EXPECTED}")
    if axes is None and shape[2] in (3, 4) and min(shape[:2]) >= 16:
        kind = "RGB" if shape[2] == 3 else "RGBA"
        raise TcsNotAMovieError(f"{name}: found {found}, which looks like an {kind} colour image of "
                                f"{shape[0]} x {shape[1]} pixels; {EXPECTED}")
    if 0 in shape:
        raise TcsNotAMovieError(f"{name}: found an empty stack, {found}; {EXPECTED}")
    try:
        supported_dtype(dtype)
    except TcsValueError as exc:
        raise type(exc)(f"{name}: {exc}") from None


@dataclass
class MovieSource:
    """A movie to encode: shape, dtype and a way to get its frames one by one.

    ``frame(i)`` returns frame ``i`` already converted to :attr:`dtype`.
    ``metadata`` holds what the file says about itself: calibration under
    the keys of :mod:`tcscodec.calibration` (``pixel_size_A``,
    ``frame_rate_hz``, ...) and, for EM formats, ``source_format``.
    ``name`` is how messages and the ``source`` metadata name the input
    (``file.h5:/path`` for an HDF5 dataset); it defaults to the file name.
    """

    path: Path
    shape: tuple[int, int, int]
    source_dtype: np.dtype
    _frame: Callable[[int], np.ndarray]
    metadata: dict[str, Any] = field(default_factory=dict)
    _close: Callable[[], None] | None = None
    name: str = ""

    def __post_init__(self):
        self.name = self.name or self.path.name

    @property
    def dtype(self) -> np.dtype:
        return supported_dtype(self.source_dtype)

    def __len__(self) -> int:
        return self.shape[0]

    def frame(self, i: int) -> np.ndarray:
        try:
            a = np.asarray(self._frame(i))
        except TcsError:
            raise
        except Exception as exc:  # a codec filter missing, a truncated file: name the file and frame
            raise TcsInputError(f"{self.name}: cannot read frame {i}: {exc}") from exc
        if a.shape != self.shape[1:]:
            raise TcsInputError(f"{self.path}: frame {i} has shape {a.shape}, expected {self.shape[1:]}")
        if a.dtype == self.dtype:
            return a
        if a.dtype.kind == "i" and a.size and a.min() < 0:
            raise TcsValueError(
                f"{self.path}: frame {i} has negative values; signed integer frames must be "
                "non-negative (add an offset, or save them as float32, which holds int16 exactly)"
            )
        if a.dtype.kind in "iu" and a.dtype.itemsize > self.dtype.itemsize and a.size \
                and a.max() > np.iinfo(self.dtype).max:
            raise TcsValueError(f"{self.path}: frame {i} has values above {np.iinfo(self.dtype).max}, "
                                f"more than {self.dtype.name} holds")
        return a.astype(self.dtype)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self.frame(i)

    def close(self) -> None:
        if self._close is not None:
            self._close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
