"""The temporal-compressive-sensing encoder on the CPU (numpy).

For each group of ``B`` consecutive frames ``X_0 .. X_{B-1}`` the encoder
forms one measurement ``Y = sum_b C_b * X_b`` with the spec's binary masks
``C_b`` (:mod:`tcscodec.masks`).  Only additions of masked pixels: the
encoder is cheap enough to run next to the detector.

:class:`CpuEncoder` is streaming: frames are pushed one at a time and only the
running measurement of the current group is kept (plus the B masks,
bit-packed: B*H*W/8 bytes).  The measurement is exact, in the smallest type
that cannot overflow for B <= 64 (:data:`MEASUREMENT_DTYPES`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cpu_kernels import masked_accumulate, set_threads
from .errors import TcsValueError
from .masks import packed_masks

__all__ = [
    "MIN_B",
    "MAX_B",
    "INPUT_DTYPES",
    "MEASUREMENT_DTYPES",
    "measurement_dtype",
    "check_B",
    "check_frame",
    "Measurement",
    "CpuEncoder",
    "encode_group",
]

MIN_B = 2
MAX_B = 64

#: Input dtype -> measurement dtype.  B * max(input) fits for every B <= 64;
#: float32 is summed exactly-rounded in float64, in the order b = 0, 1, ...
MEASUREMENT_DTYPES = {
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

    ``group`` is the group index (frames ``group*B .. group*B+n_frames-1``);
    ``n_frames`` is B except for a short last group.
    """

    group: int
    n_frames: int
    data: np.ndarray


class CpuEncoder:
    """Streaming numpy encoder of one movie.

    Parameters
    ----------
    seed : int
        Mask seed (64-bit).
    B : int
        Frames per group, 2..64.
    shape : (int, int)
        Frame height and width.
    dtype : numpy dtype
        Frame dtype: uint8, uint16, uint32 or float32.
    threads : int, optional
        Threads that add one frame (row bands; default 1: a writer runs
        its record coding on the other cores).

    Push frames with :meth:`push`; it returns a :class:`Measurement` each time
    a group completes.  :meth:`flush` returns the short last group, if any.
    Each push is one compiled pass over the frame
    (:func:`tcscodec.cpu_kernels.masked_accumulate`).
    """

    device = "cpu"

    def __init__(self, seed: int, B: int, shape, dtype, threads: int = 1):
        self.seed = int(seed)
        self.B = check_B(B)
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        self.mdtype = measurement_dtype(self.dtype)
        self._words = packed_masks(self.seed, self.B, *self.shape)
        self._acc = np.zeros(self.shape, self.mdtype)
        self.threads = max(1, int(threads))
        self.frames_pushed = 0

    @property
    def group(self) -> int:
        """Index of the group the next frame belongs to."""
        return self.frames_pushed // self.B

    def push(self, frame) -> Measurement | None:
        """Add one frame; return the group's measurement when it completes."""
        frame = check_frame(frame, self.shape, self.dtype, self.frames_pushed)
        b = self.frames_pushed % self.B
        before = set_threads(self.threads)
        try:
            masked_accumulate(self._acc, frame, self._words[b])
        finally:
            set_threads(before)
        self.frames_pushed += 1
        if b == self.B - 1:
            return self._emit(self.B)
        return None

    def flush(self) -> Measurement | None:
        """Return the measurement of a short last group, or None."""
        n = self.frames_pushed % self.B
        return self._emit(n) if n else None

    def drain(self) -> list[Measurement]:
        """End the stream: every measurement not yet returned, in order (the
        same call ends a :class:`~tcscodec.cuda_encoder.CudaEncoder` stream)."""
        m = self.flush()
        return [] if m is None else [m]

    def _emit(self, n: int) -> Measurement:
        group = (self.frames_pushed - 1) // self.B
        out = Measurement(group, n, self._acc.copy())
        self._acc.fill(0)
        return out


def encode_group(frames, seed: int, B: int | None = None) -> np.ndarray:
    """One-shot measurement of a whole group ``frames`` (n x H x W), n <= B.

    A reference implementation independent of :class:`CpuEncoder`'s
    streaming machinery (used by the tests and by decoders' checks).
    """
    frames = np.asarray(frames)
    n, H, W = frames.shape
    B = n if B is None else check_B(B)
    mdtype = measurement_dtype(frames.dtype)
    from .masks import masks

    C = masks(seed, B, H, W)[:n]
    y = np.zeros((H, W), mdtype)
    for b in range(n):
        y += np.where(C[b] == 1, frames[b], 0).astype(mdtype)
    return y


def make_encoder(device: str, seed: int, B: int, shape, dtype, **options):
    """The streaming encoder for ``device`` ("cpu", "cuda" or "cuda:N");
    ``options`` go to :class:`~tcscodec.cuda_encoder.CudaEncoder` (``lag``,
    ``masks``, ``staging``)."""
    if device == "cpu":
        if options:
            raise TcsValueError(f"options {sorted(options)} apply to device='cuda' only")
        return CpuEncoder(seed, B, shape, dtype)
    if device == "cuda" or str(device).startswith("cuda:"):
        from .cuda_encoder import CudaEncoder

        device_id = int(str(device).partition(":")[2] or 0)
        return CudaEncoder(seed, B, shape, dtype, device_id=device_id, **options)
    raise TcsValueError(f"unknown device {device!r}; use 'cpu' or 'cuda'")
