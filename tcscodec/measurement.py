"""What both streaming encoders share: the measurement, its dtype and the
checks of B and of each frame.

:mod:`tcscodec.encoder` (numpy) and :mod:`tcscodec.cuda_encoder` (CuPy)
import these from here, and :mod:`tcscodec.encoder_factory` picks one of the
two, so that neither encoder imports the other.  B's range is the format's
(:data:`tcscodec.format.header.MIN_B`, :data:`~tcscodec.format.header.MAX_B`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import TcsValueError
from .format.header import MAX_B, MIN_B

__all__ = [
    "MIN_B",
    "MAX_B",
    "INPUT_DTYPES",
    "MEASUREMENT_DTYPES",
    "measurement_dtype",
    "check_B",
    "check_frame",
    "Measurement",
]

#: Input dtype -> measurement dtype.  B * max(input) fits for every B <= 64;
#: float32 is summed exactly-rounded in float64, in the order b = 0, 1, ...
MEASUREMENT_DTYPES: dict[np.dtype, np.dtype] = {
    np.dtype(np.uint8): np.dtype(np.uint16),
    np.dtype(np.uint16): np.dtype(np.uint32),
    np.dtype(np.uint32): np.dtype(np.uint64),
    np.dtype(np.float32): np.dtype(np.float64),
}
INPUT_DTYPES = tuple(MEASUREMENT_DTYPES)


def measurement_dtype(dtype) -> np.dtype:
    """The measurement dtype the format stores for frames of ``dtype``."""
    dtype = np.dtype(dtype)
    try:
        return MEASUREMENT_DTYPES[dtype]
    except KeyError:
        names = ", ".join(d.name for d in INPUT_DTYPES)
        raise TcsValueError(
            f"frames of dtype {dtype.name} are not supported; use one of {names}"
        ) from None


def check_B(B) -> int:
    """Validate the group size B (2..64) and return it as an int."""
    if isinstance(B, str) and B == "auto":
        raise TcsValueError("B='auto' (groups of variable length) is a writer option on the CPU "
                            "(TcsWriter, tcscodec.write); an encoder takes an integer B")
    if isinstance(B, bool) or not isinstance(B, (int, np.integer)):
        raise TcsValueError(f"B must be an integer, not {type(B).__name__}")
    if not MIN_B <= int(B) <= MAX_B:
        raise TcsValueError(f"B must be in {MIN_B}..{MAX_B}, got {B}")
    return int(B)


def check_frame(frame, shape, dtype, index=None) -> np.ndarray:
    """Validate one frame against the movie's ``shape`` and ``dtype``.

    Raises :class:`TcsValueError` naming the frame for a wrong shape or dtype
    and for NaN or infinite values in float input.
    """
    where = "frame" if index is None else f"frame {index}"
    frame = np.asarray(frame)
    if frame.shape != tuple(shape):
        raise TcsValueError(
            f"{where} has shape {frame.shape}, expected {tuple(shape)}"
        )
    if frame.dtype != dtype:
        raise TcsValueError(
            f"{where} has dtype {frame.dtype.name}, expected {np.dtype(dtype).name}"
        )
    if frame.dtype.kind == "f" and not np.isfinite(frame).all():
        raise TcsValueError(f"{where} contains NaN or infinite values")
    return frame


@dataclass(frozen=True)
class Measurement:
    """One group's measurement: ``Y = sum_{b < n_frames} C_b * X_b``.

    ``group`` is the group index (with groups of B, frames
    ``group*B .. group*B+n_frames-1``); ``n_frames`` is B except for a
    short last group, or for any group ended early (variable groups).
    """

    group: int
    n_frames: int
    data: np.ndarray
