"""Writing ``.tcs`` files: :class:`TcsWriter` (streaming) and :func:`write`.

The writer encodes frames as they arrive (one frame at a time is enough, as
from a detector), cuts each finished group's measurement into tiles and
compresses the tiles with zstd in a thread pool (zstd releases the GIL), so
encoding of the next group overlaps the compression of the last.
"""

from __future__ import annotations

import collections
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .encoder import INPUT_DTYPES, Measurement, check_B, make_encoder, measurement_dtype
from .errors import TcsValueError
from .format import ContainerWriter, TcsHeader, encode_payload
from .format.header import CODECS
from .masks import random_seed, tile_mask_sum
from .quantize import quantize, stored_dtype

__all__ = ["TcsWriter", "write", "DEFAULT_TILE"]

DEFAULT_TILE = (512, 512)
#: groups whose tiles may be compressing at once (bounds memory)
_MAX_PENDING = 2
#: quant_step="auto": the step as a fraction of the measurement's shot-noise std
AUTO_FRACTION = 1.5


#: quant_step="auto": side of the central crop of the first two frames whose
#: difference checks the noise estimate (bounded work at any frame size)
_PROBE_SIZE = 512


def _host_crop(frame, size: int) -> np.ndarray:
    """Central ``size`` x ``size`` crop of a numpy, CuPy or torch frame, as numpy."""
    h, w = frame.shape[-2:]
    y0, x0 = max(0, (h - size) // 2), max(0, (w - size) // 2)
    crop = frame[y0:y0 + size, x0:x0 + size]
    if isinstance(crop, np.ndarray):
        return crop.copy()
    if hasattr(crop, "get"):  # CuPy
        return crop.get()
    if hasattr(crop, "cpu"):  # torch
        return crop.cpu().numpy()
    return np.array(crop)


def _as_tile(tile) -> tuple[int, int]:
    if isinstance(tile, (int, np.integer)):
        tile = (tile, tile)
    tile = tuple(int(t) for t in tile)
    if len(tile) != 2 or min(tile) < 1 or max(tile) > 65535:
        raise TcsValueError(f"tile must be one or two sizes in 1..65535, got {tile}")
    return tile


class TcsWriter:
    """Streaming writer of a ``.tcs`` file.

    Parameters
    ----------
    path : str or Path
        Output file.  Written under a temporary ``*.partial`` name and renamed
        on :meth:`close`; an existing file of that name is replaced only then.
    B : int
        Frames per measurement, 2..64.
    seed : int, optional
        64-bit mask seed; random when None (recorded in the header).
    tile : int or (int, int)
        Tile size of the stored measurements (random-access unit).
    metadata : dict, optional
        JSON-serialisable user metadata (pixel size, frame rate, ...).
    quant_step : float or "auto"
        Measurement quantisation step in the input's units; 1 is lossless.
        ``"auto"`` picks ``auto_fraction`` times the shot-noise std of the
        first group's measurement (:func:`tcscodec.quantize.noise_std`, with
        the gain checked against the first two frames' difference); for
        integer frames rounded down to an odd whole number (1, lossless,
        below 3), for float frames kept lossless when no noise is found.
    auto_fraction : float
        Step of ``quant_step="auto"`` relative to the measurement's noise.
    device : {"cpu", "cuda"}
        Where the encoder runs.
    level : int
        zstd level (1..22) of the ``zstd`` and ``shuffle-zstd`` codecs.
    codec : {"predict-rice", "shuffle-zstd", "zstd"}
        Record codec (spec section 4).  ``predict-rice``, the default,
        predicts each pixel from its neighbours divided by their mask sums
        and Rice-codes the residual: files 1.2 to 1.9x smaller than with
        ``shuffle-zstd`` for quantised measurements, up to 1.25x for
        lossless ones (``bench/ratio.py``).
        Files with the other codecs can be read by format 1.0 readers.
    threads : int, optional
        Compression threads (default: number of CPUs, at most 8).
    shape, dtype : optional
        Frame shape (H, W) and dtype; otherwise taken from the first frame.
    encoder_options : dict, optional
        Options of the CUDA encoder (``lag``, ``masks``, ``staging``).

    Frames are passed to :meth:`write` one at a time (H x W) or as a stack
    (T x H x W).  A frame of the wrong shape or dtype, or with NaN/inf,
    raises :class:`~tcscodec.TcsValueError` before anything is changed, so
    the writer stays usable.  Used as a context manager the file is finished
    on normal exit and discarded (destination untouched) on an exception.
    """

    def __init__(self, path, B: int, *, seed=None, tile=DEFAULT_TILE, metadata=None,
                 quant_step: float | str = 1.0, device: str = "cpu", level: int = 3,
                 codec: str = "predict-rice", threads: int | None = None,
                 shape=None, dtype=None, auto_fraction: float = AUTO_FRACTION,
                 encoder_options: dict | None = None):
        self.path = Path(path)
        self.B = check_B(B)
        self.seed = random_seed() if seed is None else int(seed)
        if not 0 <= self.seed < 2**64:
            raise TcsValueError(f"seed must be in 0..2**64-1, got {seed}")
        self.tile = _as_tile(tile)
        self.metadata = dict(metadata or {})
        self.auto_quant = quant_step == "auto"
        self.auto_fraction = float(auto_fraction)
        try:
            self.quant_step = 1.0 if self.auto_quant else float(quant_step)
        except (TypeError, ValueError):
            raise TcsValueError(f"quant_step must be a number > 0 or 'auto', got {quant_step!r}") from None
        if not (np.isfinite(self.quant_step) and self.quant_step > 0):
            raise TcsValueError(f"quant_step must be a finite number > 0, got {quant_step}")
        self.device = device
        self._encoder_options = dict(encoder_options or {})
        self.level = int(level)
        if codec not in CODECS.values():
            raise TcsValueError(f"unknown codec {codec!r}; known: {', '.join(CODECS.values())}")
        self.codec = codec
        self._threads = threads or min(8, os.cpu_count() or 1)
        self._encoder = None
        self._container: ContainerWriter | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pending: collections.deque = collections.deque()
        self._probe: list[np.ndarray] = []  # first two frames (a crop), for quant_step="auto"
        self.frames_written = 0
        self.closed = False
        if shape is not None or dtype is not None:
            if shape is None or dtype is None:
                raise TcsValueError("give both shape and dtype, or neither")
            self._start(tuple(shape), np.dtype(dtype))

    # -- set-up on the first frame ------------------------------------------------
    def _start(self, shape, dtype) -> None:
        if len(shape) != 2 or min(shape) < 1:
            raise TcsValueError(f"frames must be 2-D and non-empty, got shape {shape}")
        mdtype = measurement_dtype(dtype)
        try:
            json.dumps(self.metadata)
        except (TypeError, ValueError) as exc:
            raise TcsValueError(f"metadata is not JSON-serialisable: {exc}") from None
        self.header = TcsHeader(
            height=shape[0], width=shape[1], B=self.B, dtype=dtype.name,
            stored_dtype=stored_dtype(mdtype, self.quant_step).name, mask_seed=self.seed,
            tile=self.tile, quant_step=self.quant_step, codec=self.codec, metadata=self.metadata,
        )
        self._encoder = make_encoder(self.device, self.seed, self.B, shape, dtype, **self._encoder_options)
        if not self.auto_quant:
            self._container = ContainerWriter(self.path, self.header)
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="tcs-zstd")

    @property
    def shape(self):
        """(frames written, H, W), or None before the first frame."""
        return None if self._encoder is None else (self.frames_written, *self._encoder.shape)

    # -- writing -----------------------------------------------------------------------
    def write(self, frames) -> None:
        """Append one frame (H x W) or a stack of frames (T x H x W)."""
        if self.closed:
            raise TcsValueError(f"{self.path}: writer is closed")
        if not hasattr(frames, "ndim"):
            frames = np.asarray(frames)
        if frames.ndim == 2:
            frames = frames[None]
        elif frames.ndim != 3:
            raise TcsValueError(f"expected a frame (H x W) or a stack (T x H x W), got {frames.ndim}-D")
        if self._encoder is None:
            dtype = np.dtype(str(frames.dtype).replace("torch.", ""))
            if dtype not in INPUT_DTYPES:
                measurement_dtype(dtype)  # raises the error listing the dtypes
            self._start(tuple(frames.shape[1:]), dtype)
        for frame in frames:
            m = self._encoder.push(frame)  # checks the frame first
            if self.auto_quant and len(self._probe) < 2 and self._container is None:
                self._probe.append(_host_crop(frame, _PROBE_SIZE))
            self.frames_written += 1
            if m is not None:
                self._submit(m)

    def _submit(self, m: Measurement) -> None:
        if self._container is None:
            self._choose_step(m)
        stored = quantize(m.data, self.quant_step, np.dtype(self.header.stored_dtype))
        rows, cols = self.header.grid
        jobs = []
        for r in range(rows):
            for c in range(cols):
                y0, y1, x0, x1 = self.header.tile_bounds(r, c)
                tile = stored[y0:y1, x0:x1]
                jobs.append((r, c, self._pool.submit(self._encode_tile, tile, m.n_frames, (y0, y1, x0, x1))))
        self._pending.append((m.group, m.n_frames, jobs))
        while len(self._pending) > _MAX_PENDING:
            self._write_oldest()

    def _encode_tile(self, tile: np.ndarray, n_frames: int, bounds) -> bytes:
        csum = None
        if self.codec == "predict-rice":
            csum = tile_mask_sum(self.seed, n_frames, self.header.height, self.header.width, bounds)
        return encode_payload(tile, self.codec, self.level, csum)

    def _choose_step(self, m: Measurement) -> None:
        """quant_step="auto": fix the step from the first group, then write
        the header (so a killed writer's file always has the right step)."""
        from dataclasses import replace

        from .masks import mask_sum
        from .quantize import noise_std

        csum = mask_sum(self.seed, m.n_frames, *m.data.shape)
        step = self.auto_fraction * noise_std(m.data, csum, self._probe if len(self._probe) == 2 else None)
        self._probe = []
        if not step > 0:
            step = 1.0  # no shot noise found (a constant or processed movie): keep it lossless
        elif np.dtype(self.header.dtype).kind in "ui":
            # Odd whole steps: rounding integers to an even step sends every
            # half-way value up, a bias of +0.5 that shows at a few counts/px.
            step = float(2 * np.floor((step - 1) / 2) + 1) if step >= 1 else 1.0
        else:
            # float frames: keep |Y| / step far inside int64 for brighter later groups
            step = float(f"{max(step, float(np.max(np.abs(m.data))) * 2.0**-40):.3g}")
        self.quant_step = step
        mdtype = measurement_dtype(self.header.dtype)
        self.header = replace(self.header, quant_step=step, stored_dtype=stored_dtype(mdtype, step).name,
                              metadata={**self.header.metadata,
                                        "quantize": f"auto: {self.auto_fraction:g} x shot-noise std"})
        self._container = ContainerWriter(self.path, self.header)

    def _write_oldest(self) -> None:
        group, n, jobs = self._pending.popleft()
        for r, c, fut in jobs:
            self._container.write_record(group, r, c, n, fut.result())

    # -- finishing ---------------------------------------------------------------------
    def close(self) -> Path | None:
        """Encode the short last group, write index and footer, rename into place."""
        if self.closed:
            return self.path
        try:
            if self._encoder is None:
                raise TcsValueError(f"{self.path}: no frames were written")
            for m in self._encoder.drain():
                self._submit(m)
            while self._pending:
                self._write_oldest()
            self._container.finish(self.frames_written)
        except BaseException:
            self.abort()
            raise
        self._shutdown()
        self.closed = True
        return self.path

    def abort(self) -> None:
        """Discard everything written; the destination file is not touched."""
        if self._container is not None:
            self._container.abort()
        self._pending.clear()
        self._shutdown()
        self.closed = True

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        close = getattr(self._encoder, "close", None)
        if close is not None:
            close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write(path, frames, B: int, *, seed=None, tile=DEFAULT_TILE, metadata=None,
          quant_step: float | str = 1.0, device: str = "cpu", level: int = 3,
          progress: bool = False, **kwargs) -> Path:
    """Encode ``frames`` (T x H x W array, or an iterable of H x W frames) into
    a ``.tcs`` file at ``path`` and return the path.

    See :class:`TcsWriter` for the parameters.  Nothing is left at ``path`` if
    encoding fails.
    """
    it = frames
    if progress:
        from tqdm.auto import tqdm

        total = len(frames) if hasattr(frames, "__len__") else None
        it = tqdm(frames, total=total, unit="frame", desc="encode")
    with TcsWriter(path, B, seed=seed, tile=tile, metadata=metadata, quant_step=quant_step,
                   device=device, level=level, **kwargs) as w:
        if not progress and hasattr(frames, "ndim"):
            w.write(frames)
        else:
            for frame in it:
                w.write(frame)
    return Path(path)
