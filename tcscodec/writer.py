"""Writing ``.tcs`` files: :class:`TcsWriter` (streaming) and :func:`write`.

The writer encodes frames as they arrive (one frame at a time is enough, as
from a detector), cuts each finished group's measurement into tiles and
compresses the tiles on its threads, so that encoding of the next group
overlaps the compression of the last.  All its work runs on one
:class:`~tcscodec.work_pool.WorkPool` of ``threads`` threads (the compiled
kernels and zstd release the GIL): a frame's mask sum and a group's
quantisation in row bands ahead of everything, the tiles' record coding
in between, so the writer keeps ``threads`` cores busy and no more (the
caller's thread only checks frames and hands work out).

Durability: one group at a time is compressing, and the pool thread that
finishes its last tile writes the group's records and flushes them to the
operating system at once.  A process killed at any moment therefore loses
at most that one group (and the incomplete group being encoded); its
``*.partial`` file holds every group before it (``tcscodec recover``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .encoder_factory import make_encoder
from .errors import TcsValueError
from .format import ContainerWriter, TcsHeader
from .format.codecs import get_codec
from .format.header import metadata_bytes
from .grouping import AUTO_MAX_B, AUTO_MIN_B, AutoGroups, AutoGroupsConfig, GroupPolicy, ListedGroups
from .masks import random_seed, stitched_mask_sum, tile_mask_sum
from .measurement import INPUT_DTYPES, Measurement, check_B, check_frame, measurement_dtype
from .quantize import quantize, stored_dtype
from .work_pool import WorkPool

__all__ = ["TcsWriter", "write", "DEFAULT_TILE"]

DEFAULT_TILE = (512, 512)
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
    B : int or "auto"
        Frames per measurement, 2..64; ``"auto"``: groups of variable
        length, each ended by the streaming decision of
        :class:`tcscodec.grouping.AutoGroups` (at a cut, or when the scene
        has changed by ``auto_tolerance`` since the group's start), between
        ``min_B`` and ``max_B`` frames.  Files with variable groups are
        format version 2 (unless their groups happen to fit version 1:
        :meth:`ContainerWriter.finish <tcscodec.format.ContainerWriter.finish>`).
    min_B, max_B : int, optional
        ``B="auto"``: the shortest group the change rule makes (default 4;
        a cut makes shorter ones) and the longest group (default 64).
    auto_tolerance : float, optional
        ``B="auto"``: the change since a group's start, in pixel shot-noise
        stds (rms over 8 x 8 bins), that ends it (default 0.5; smaller:
        shorter groups, better quality on motion, larger files).
    group_lengths : sequence of int, optional
        With an integer ``B``: the lengths of the first groups (each
        ``1..B``); the groups after them hold ``B`` frames.  Makes a file
        with variable groups, as does ``B="auto"``; in both,
        :meth:`end_group` ends a group early.
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
        Threads, so cores, the writer uses for the mask sums (CPU
        encoder), quantisation and record coding (default: all CPUs).
    shape, dtype : optional
        Frame shape (H, W) and dtype; otherwise taken from the first frame.
    encoder_options : dict, optional
        Options of the CUDA encoder (``lag``, ``masks``, ``staging``).

    Frames are passed to :meth:`write` one at a time (H x W) or as a stack
    (T x H x W).  A frame of the wrong shape or dtype, or with NaN/inf,
    raises :class:`~tcscodec.TcsValueError` before anything is changed (a
    numpy stack is checked whole before its first frame is encoded), so
    the writer stays usable.  An error once a group is complete (its
    measurement does not fit the quantisation step, the disk is full)
    ends the writer: the file can no longer be completed, and nothing of
    it is left.  Metadata a reader would refuse (keys that are
    not strings, beyond the format's limits) is refused by the constructor.

    The CUDA encoder makes fixed groups only: ``device="cuda"`` with
    ``B="auto"`` or ``group_lengths`` raises :class:`~tcscodec.TcsValueError`.

    Used as a context manager the file is finished on normal exit and
    discarded (no ``.partial`` left, destination untouched) on an
    exception, except :class:`KeyboardInterrupt`: then the groups written
    so far stay in :attr:`partial_path`, which ``tcscodec recover`` turns
    into a valid file.  A killed process (SIGKILL, power off for what the
    OS had) loses at most the group that was compressing.
    """

    def __init__(self, path, B: int | str, *, seed=None, tile=DEFAULT_TILE, metadata=None,
                 quant_step: float | str = 1.0, device: str = "cpu", level: int = 3,
                 codec: str = "predict-rice", threads: int | None = None,
                 shape=None, dtype=None, auto_fraction: float = AUTO_FRACTION,
                 encoder_options: dict | None = None, group_lengths=None,
                 min_B: int | None = None, max_B: int | None = None, auto_tolerance: float | None = None):
        self.path = Path(path)
        self.policy: GroupPolicy | None = _group_policy(B, group_lengths, min_B, max_B, auto_tolerance)
        self.B = self.policy.max_B if self.policy is not None else check_B(B)
        if self.policy is not None and device != "cpu":
            raise TcsValueError(f"device={device!r} encodes groups of one length only: B='auto' and "
                                "group_lengths need device='cpu'")
        self.seed = random_seed() if seed is None else int(seed)
        if not 0 <= self.seed < 2**64:
            raise TcsValueError(f"seed must be in 0..2**64-1, got {seed}")
        self.tile = _as_tile(tile)
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TcsValueError(f"metadata must be a dict, not {type(metadata).__name__}")
        self.metadata = dict(metadata or {})
        self.auto_quant = quant_step == "auto"
        self.auto_fraction = float(auto_fraction)
        # Refused here, before any file exists, if a reader would refuse it.
        if isinstance(self.policy, AutoGroups):
            c = self.policy.config
            self.metadata.setdefault("groups", f"auto: {c.min_B}..{c.max_B} frames, tolerance {c.tolerance:g}")
        metadata_bytes(self._auto_metadata() if self.auto_quant else self.metadata)
        try:
            self.quant_step = 1.0 if self.auto_quant else float(quant_step)
        except (TypeError, ValueError):
            raise TcsValueError(f"quant_step must be a number > 0 or 'auto', got {quant_step!r}") from None
        if not (np.isfinite(self.quant_step) and self.quant_step > 0):
            raise TcsValueError(f"quant_step must be a finite number > 0, got {quant_step}")
        self.device = device
        self._encoder_options = dict(encoder_options or {})
        self.level = int(level)
        self._codec = get_codec(codec, level=self.level)  # the registry refuses unknown names
        self.codec = codec
        self._threads = max(1, int(threads or os.cpu_count() or 1))
        self._encoder = None
        self._container: ContainerWriter | None = None
        self._pool: WorkPool | None = None
        self._inflight: _Group | None = None  # the one group compressing
        self._write_lock = threading.Lock()
        self._discard = False  # set by abort(): pool threads write nothing more
        self._probe: list[np.ndarray] = []  # first two frames (a crop), for quant_step="auto"
        self.frames_written = 0
        self.closed = False
        #: the ``.partial`` file an interrupted writer (KeyboardInterrupt) left, or None
        self.partial_path: Path | None = None
        if shape is not None or dtype is not None:
            if shape is None or dtype is None:
                raise TcsValueError("give both shape and dtype, or neither")
            self._start(tuple(shape), np.dtype(dtype))

    # -- set-up on the first frame ------------------------------------------------
    def _start(self, shape, dtype) -> None:
        if len(shape) != 2 or min(shape) < 1:
            raise TcsValueError(f"frames must be 2-D and non-empty, got shape {shape}")
        mdtype = measurement_dtype(dtype)
        self.header = TcsHeader(
            height=shape[0], width=shape[1], B=self.B, dtype=dtype.name,
            stored_dtype=stored_dtype(mdtype, self.quant_step).name, mask_seed=self.seed,
            tile=self.tile, quant_step=self.quant_step, codec=self.codec, metadata=self.metadata,
            variable_groups=self.policy is not None,
        )
        self._pool = WorkPool(self._threads, name="tcs-writer")
        try:
            # the file first: it exists as soon as the first frame is taken,
            # before the encoder's set-up (its masks, a compiled kernel's load)
            if not self.auto_quant:
                self._container = ContainerWriter(self.path, self.header)
            self._encoder = make_encoder(self.device, self.seed, self.B, shape, dtype, threads=self._threads,
                                         run=self._pool.run, **self._encoder_options)
            if isinstance(self.policy, AutoGroups):
                self.policy.use_pool(self._pool.run, self._threads)
        except BaseException:
            self._shutdown()  # no threads are left behind
            if self._container is not None:
                self._container.abort()  # nor a file
                self._container = None
            raise

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
        if isinstance(frames, np.ndarray):
            self._check_stack(frames)
        if self._encoder is None:
            dtype = np.dtype(str(frames.dtype).replace("torch.", ""))
            if dtype not in INPUT_DTYPES:
                measurement_dtype(dtype)  # raises the error listing the dtypes
            self._start(tuple(frames.shape[1:]), dtype)
        assert self._encoder is not None  # _start made it
        for frame in frames:
            if self.policy is None:
                m = self._encoder.push(frame)  # checks the frame first
            else:
                # checked before the policy sees it, and only then (policies
                # are CPU-only, so the encoder is a CpuEncoder)
                frame = check_frame(frame, self._encoder.shape, self._encoder.dtype, self.frames_written)
                if self.policy.starts_group(frame, self._encoder.in_group):
                    self._end_group()
                m = self._encoder.push_checked(frame)
            if self.auto_quant and len(self._probe) < 2 and self._container is None:
                self._probe.append(_host_crop(frame, _PROBE_SIZE))
            self.frames_written += 1
            if m is not None:
                self._submit_or_abort(m)

    def end_group(self) -> None:
        """End the current group now (a file with variable groups:
        ``B="auto"`` or ``group_lengths``); the next frame starts a new
        one.  Nothing happens when the current group is empty."""
        if self.closed:
            raise TcsValueError(f"{self.path}: writer is closed")
        if self.policy is None:
            raise TcsValueError("end_group needs a writer with variable groups: B='auto' or group_lengths=")
        if self._encoder is not None:
            self._end_group()

    def _end_group(self) -> None:
        assert self._encoder is not None
        m = self._encoder.end_group()
        if m is not None:
            self._submit_or_abort(m)

    def _submit_or_abort(self, m: Measurement) -> None:
        try:
            self._submit(m)
        except KeyboardInterrupt:
            raise
        except BaseException:
            # The group is consumed and cannot be written (it does not fit
            # the step, the disk is full): the file can no longer be
            # completed, so nothing of it is kept.
            self.abort()
            raise

    def _check_stack(self, frames: np.ndarray) -> None:
        """Refuse a numpy stack with a bad frame before any frame of it is
        encoded, naming the first bad one (a rejected write changes nothing)."""
        if not len(frames):
            return
        if self._encoder is not None:
            check_frame(frames[0], self._encoder.shape, self._encoder.dtype, self.frames_written)
        if frames.dtype.kind == "f":
            bad = ~np.isfinite(frames).all(axis=(1, 2))
            if bad.any():
                raise TcsValueError(f"frame {self.frames_written + int(np.argmax(bad))} contains NaN or "
                                    "infinite values")

    def _submit(self, m: Measurement) -> None:
        """Hand a group to the compression pool, once the group before it
        is on disk (one group compressing at a time: a kill loses at most it)."""
        if self._container is None:
            self._choose_step(m)
        assert self._pool is not None  # groups are submitted between _start and close
        stored = quantize(m.data, self.quant_step, np.dtype(self.header.stored_dtype), run=self._pool.run,
                          bands=self._threads)
        self._wait_inflight()
        rows, cols = self.header.grid
        job = _Group(m.group, m.n_frames, [(r, c) for r in range(rows) for c in range(cols)])
        for i, (r, c) in enumerate(job.keys):
            y0, y1, x0, x1 = self.header.tile_bounds(r, c)
            self._pool.submit(self._compress, job, i, stored[y0:y1, x0:x1], (y0, y1, x0, x1))
        # Only a fully submitted group can complete: one cut short by Ctrl-C
        # is not waited for (interrupt() would wait for nothing).
        self._inflight = job

    def _compress(self, job: _Group, i: int, tile: np.ndarray, bounds) -> None:
        """Pool task: compress tile ``i`` of ``job``; the task that finishes
        the group's last tile writes all its records and flushes them."""
        try:
            payload = self._encode_tile(tile, job.n_frames, bounds)
        except BaseException as exc:  # reported by _wait_inflight in the caller's thread
            payload, job.error = None, job.error or exc
        if not job.tile_done(i, payload):
            return
        try:
            if job.error is None and not self._discard:
                with self._write_lock:
                    assert self._container is not None and job.payloads is not None  # a complete group
                    for (r, c), p in zip(job.keys, job.payloads, strict=True):
                        self._container.write_record(job.group, r, c, job.n_frames, p)
                    self._container.flush()
        except BaseException as exc:
            job.error = exc
        finally:
            job.payloads = None
            job.done.set()

    def _wait_inflight(self, timeout: float | None = None) -> None:
        """Wait until the compressing group is on disk; re-raise its error."""
        job = self._inflight
        if job is None:
            return
        if not job.done.wait(timeout):
            return
        self._inflight = None
        if job.error is not None:
            raise job.error

    def _encode_tile(self, tile: np.ndarray, n_frames: int, bounds) -> bytes:
        csum = None
        if self._codec.uses_mask_sums(tile.dtype):
            csum = tile_mask_sum(self.seed, n_frames, self.header.height, self.header.width, bounds)
        return self._codec.encode(tile, csum)

    def _choose_step(self, m: Measurement) -> None:
        """quant_step="auto": fix the step from the first group, then write
        the header (so a killed writer's file always has the right step)."""
        from dataclasses import replace

        from .quantize import noise_rows, noise_std

        # the tiles' mask sums (cached: the records of this group need them
        # too), over the rows the estimate reads
        h = self.header
        tiles = [h.tile_bounds(r, c) for r in range(h.grid[0]) for c in range(h.grid[1])]
        csum = stitched_mask_sum(self.seed, m.n_frames, h.height, h.width, tiles, noise_rows(m.data.shape))
        assert self._pool is not None  # groups are submitted between _start and close
        step = self.auto_fraction * noise_std(m.data, csum, self._probe if len(self._probe) == 2 else None,
                                              run=self._pool.run, bands=self._threads)
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
                              metadata=self._auto_metadata())
        self._container = ContainerWriter(self.path, self.header)

    def _auto_metadata(self) -> dict:
        """The user's metadata with the note quant_step="auto" adds."""
        return {**self.metadata, "quantize": f"auto: {self.auto_fraction:g} x shot-noise std"}

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
            self._wait_inflight()
            self._container.finish(self.frames_written)
        except KeyboardInterrupt:
            self.interrupt()
            raise
        except BaseException:
            self.abort()
            raise
        self._shutdown()
        self.closed = True
        return self.path

    def abort(self) -> None:
        """Discard everything written; the destination file is not touched
        and no ``.partial`` file is left."""
        self._discard = True
        self._shutdown()
        if self._container is not None:
            self._container.abort()
        self._inflight = None
        self.closed = True

    def interrupt(self, timeout: float = 30.0) -> Path | None:
        """Stop writing but keep what is on disk: the group compressing is
        given up to ``timeout`` seconds to reach the file, then the
        ``.partial`` file is closed without index and left for ``tcscodec
        recover``.  Returns its path (None when no group had been written
        yet: then no file exists).  Used on KeyboardInterrupt."""
        if self.closed:
            return self.partial_path
        try:
            self._wait_inflight(timeout)
        except Exception:
            pass  # the group in flight is lost; those before it are on disk
        self._discard = True
        self._shutdown()
        self.closed = True
        if self._container is None:
            return None
        with self._write_lock:
            self.partial_path = self._container.keep_partial()
        return self.partial_path

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
        elif issubclass(exc_type, KeyboardInterrupt):
            self.interrupt()
        else:
            self.abort()


class _Group:
    """One group's tiles in the compression pool: their payloads as they
    finish, the first error, and an event set once the group's records are
    written (or it failed)."""

    def __init__(self, group: int, n_frames: int, keys):
        self.group, self.n_frames, self.keys = group, n_frames, keys
        self.payloads: list | None = [None] * len(keys)
        self.left = len(keys)
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._lock = threading.Lock()

    def tile_done(self, i: int, payload) -> bool:
        """Record tile ``i``'s payload; True for the call that completes the group."""
        with self._lock:
            assert self.payloads is not None  # dropped only once the group is written
            self.payloads[i] = payload
            self.left -= 1
            return self.left == 0


def _group_policy(B, group_lengths, min_B, max_B, auto_tolerance) -> GroupPolicy | None:
    """The writer's group policy: None for groups of ``B``, listed lengths,
    or the ``B="auto"`` decision; refuses options that do not go together."""
    if isinstance(B, str):
        if B != "auto":
            raise TcsValueError(f"B must be an integer in 2..64 or 'auto', got {B!r}")
        if group_lengths is not None:
            raise TcsValueError("group_lengths goes with an integer B (the longest group), not B='auto'")
        return AutoGroups(AutoGroupsConfig(min_B=AUTO_MIN_B if min_B is None else min_B,
                                           max_B=AUTO_MAX_B if max_B is None else max_B,
                                           **({} if auto_tolerance is None else {"tolerance": auto_tolerance})))
    unused = [n for n, v in (("min_B", min_B), ("max_B", max_B), ("auto_tolerance", auto_tolerance)) if v is not None]
    if unused:
        raise TcsValueError(f"{', '.join(unused)} go with B='auto'")
    if group_lengths is not None:
        if isinstance(group_lengths, (str, bytes)) or not hasattr(group_lengths, "__iter__"):
            raise TcsValueError(f"group_lengths must be a sequence of ints, not {type(group_lengths).__name__}")
        lengths = list(group_lengths)
        if not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in lengths):
            raise TcsValueError("group_lengths must be integers")
        return ListedGroups(lengths, check_B(B))
    return None


def write(path, frames, B: int | str, *, seed=None, tile=DEFAULT_TILE, metadata=None,
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
