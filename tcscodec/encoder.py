"""The temporal-compressive-sensing encoder on the CPU (numpy).

For each group of ``B`` consecutive frames ``X_0 .. X_{B-1}`` the encoder
forms one measurement ``Y = sum_b C_b * X_b`` with the spec's binary masks
``C_b`` (:mod:`tcscodec.masks`).  Only additions of masked pixels: the
encoder is cheap enough to run next to the detector.

:class:`CpuEncoder` is streaming: frames are pushed one at a time and only the
running measurement of the current group is kept (plus the B masks,
bit-packed: B*H*W/8 bytes).  The measurement is exact, in the smallest type
that cannot overflow for B <= 64 (:data:`tcscodec.measurement.MEASUREMENT_DTYPES`).
:func:`tcscodec.encoder_factory.make_encoder` picks this encoder or the CUDA one.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from .cpu_kernels import accumulate_rows, masked_accumulate, set_threads
from .errors import TcsValueError
from .masks import masks, packed_masks
from .measurement import Measurement, check_B, check_frame, measurement_dtype
from .work_pool import row_bands

# measurement_dtype and Measurement stay importable from here for the scripts
# written against this module; B's limits and the dtype tables live in
# tcscodec.measurement
__all__ = ["CpuEncoder", "encode_group", "measurement_dtype", "Measurement"]

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
        Threads that add one frame, in row bands (default 1).
    run : callable, optional
        Runs a list of callables (the frame's row bands) and waits for
        them: :meth:`tcscodec.work_pool.WorkPool.run`, so that a writer's
        sums and record coding share its threads.  Without it the bands
        run on numba's threads.

    Push frames with :meth:`push`; it returns a :class:`Measurement` each time
    a group completes.  :meth:`end_group` ends the group early (groups of
    variable length, format version 2: a group of ``n < B`` frames uses the
    masks ``C_0 .. C_{n-1}``).  :meth:`drain` ends the stream and returns
    the short last group, if any, in a list (the same call ends a CUDA
    stream).
    Each push is one compiled pass over the frame
    (:func:`tcscodec.cpu_kernels.masked_accumulate`).
    """

    device = "cpu"

    def __init__(self, seed: int, B: int, shape, dtype, threads: int = 1, run: Callable | None = None):
        self.seed = int(seed)
        self.B = check_B(B)
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        self.mdtype = measurement_dtype(self.dtype)
        self._words = packed_masks(self.seed, self.B, *self.shape)
        self._acc = np.empty(self.shape, self.mdtype)  # set by each group's first frame
        self.threads = max(1, int(threads))
        self._run = run
        self._bands = row_bands(self.shape, self.threads)
        self.frames_pushed = 0
        self._group = 0  # index of the group being summed
        self._b = 0  # frames of it summed so far
        self._finished = False

    @property
    def group(self) -> int:
        """Index of the group the next frame belongs to."""
        return self._group

    @property
    def in_group(self) -> int:
        """Frames of the current group pushed so far (0 right after a group ended)."""
        return self._b

    def push(self, frame) -> Measurement | None:
        """Add one frame; return the group's measurement when it completes."""
        if self._finished:
            raise TcsValueError("the stream was drained; make a new encoder")
        return self.push_checked(check_frame(frame, self.shape, self.dtype, self.frames_pushed))

    def push_checked(self, frame: np.ndarray) -> Measurement | None:
        """:meth:`push` of a frame :func:`~tcscodec.measurement.check_frame`
        has passed already (a writer checks each frame before its group
        policy sees it; a float frame's finiteness is a pass of its own)."""
        if self._finished:
            raise TcsValueError("the stream was drained; make a new encoder")
        first = self._b == 0  # the group's first frame sets the sums: no zeroed buffer
        if self._run is not None:
            frame, words = np.ascontiguousarray(frame), self._words[self._b]
            self._run([partial(accumulate_rows, self._acc, frame, words, y0, y1, first) for y0, y1 in self._bands])
        else:
            before = set_threads(self.threads)
            try:
                masked_accumulate(self._acc, frame, self._words[self._b], first)
            finally:
                set_threads(before)
        self.frames_pushed += 1
        self._b += 1
        if self._b == self.B:
            return self._emit()
        return None

    def end_group(self) -> Measurement | None:
        """End the current group now: its measurement (of the
        :attr:`in_group` frames pushed into it), or None when it has none."""
        if self._finished:
            raise TcsValueError("the stream was drained; make a new encoder")
        return self._emit() if self._b else None

    def drain(self) -> list[Measurement]:
        """End the stream: every measurement not yet returned (the short last
        group's, if any), in order, as
        :meth:`CudaEncoder.drain <tcscodec.cuda_encoder.CudaEncoder.drain>`.
        A second call returns ``[]``; pushes after it raise."""
        if self._finished:
            return []
        last = [self._emit()] if self._b else []
        self._finished = True
        return last

    def _emit(self) -> Measurement:
        # the sums are handed out as they are; the next group sums into a new
        # buffer, which its first frame sets (no copy, no zeroing)
        out = Measurement(self._group, self._b, self._acc)
        self._acc = np.empty(self.shape, self.mdtype)
        self._group += 1
        self._b = 0
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
    C = masks(seed, B, H, W)[:n]
    y = np.zeros((H, W), mdtype)
    for b in range(n):
        y += np.where(C[b] == 1, frames[b], 0).astype(mdtype)
    return y
