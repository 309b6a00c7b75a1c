"""Reading ``.tcs`` files: :class:`TcsReader`.

The reader gives two views of a file:

* the exact data: :meth:`TcsReader.measurements` (the stored Y of a group)
  and :meth:`TcsReader.masks` (the spec's masks, recomputed from the seed);
* decoded frames: :meth:`TcsReader.read` and :meth:`TcsReader.iter`, which run
  a decoder (:mod:`tcscodec.decoders`) tile by tile over the needed groups.

Reading one group or a region touches only the records it needs.
"""

from __future__ import annotations

import operator
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import TcsDependencyError, TcsFormatError, TcsInputError, TcsTypeError, TcsValueError
from .format import ContainerReader, TcsDamageWarning
from .format.region import check_region
from .masks import GENERATOR_NAME, mask_sum, measured_mean, tile_mask_sum
from .masks import masks as spec_masks
from .motion import MotionPath
from .quantize import cast_frames, dequantize
from .reader_motion import MotionDecoding, decode_key

__all__ = ["TcsReader", "TcsProperties"]


@dataclass(frozen=True)
class TcsProperties:
    """Shape and dtype of what :meth:`TcsReader.read` returns (imageio v3 style)."""

    shape: tuple[int, ...]
    dtype: np.dtype
    n_images: int | None = None
    is_batch: bool = False
    spacing: tuple | None = None


#: decoded groups larger than this go to a temporary memory-mapped file
RAM_LIMIT = 1 << 30


def _frames_buffer(shape) -> np.ndarray:
    """float32 buffer for one decoded group: in memory, or on disk when
    larger than :data:`RAM_LIMIT` (4096^2 x 30 frames is 2 GiB)."""
    if int(np.prod(shape)) * 4 <= RAM_LIMIT:
        return np.empty(shape, np.float32)
    import tempfile

    with tempfile.TemporaryFile(prefix="tcscodec-") as fh:  # the map outlives the file
        return np.memmap(fh, np.float32, "w+", shape=shape)


class _GroupMeasurement:
    """A group's measurement as a lazy ``(H, W)`` float32 array: 2-D slicing
    reads only the records under the slice (the tiling engine reads it band
    by band)."""

    dtype = np.dtype(np.float32)

    def __init__(self, reader: TcsReader, group: int):
        self.reader, self.group = reader, group
        self.shape = (reader.header.height, reader.header.width)

    def __getitem__(self, index) -> np.ndarray:
        rows, cols = index
        y0, y1, _ = rows.indices(self.shape[0])
        x0, x1, _ = cols.indices(self.shape[1])
        return self.reader.measurements(self.group, (y0, y1, x0, x1)).astype(np.float32)


class TcsReader(MotionDecoding):
    """Reader of a ``.tcs`` file.

    Parameters
    ----------
    path : str or Path
        The file.  A file whose writer was killed (``*.partial``) opens too:
        its complete groups are recovered, with a
        :class:`~tcscodec.format.TcsRecoveryWarning`.
    decoder : str, optional
        Decoder used by :meth:`read` and :meth:`iter` (default: the best
        available, :func:`tcscodec.decoders.default_decoder`).
    device : str
        "cpu" or "cuda" for decoding.
    dtype : numpy dtype or "input", optional
        dtype of the decoded frames :meth:`read`, indexing and :meth:`to_dask`
        give: ``"input"`` (default) the encoded movie's (integers rounded
        and clipped to their range), or e.g. ``np.float32`` for the
        decoders' own values.
    **decode_options
        Passed to the decoder and the tiling engine (``tile``, ``overlap``,
        ``batch``, ``motion``, and the decoder's options, e.g.
        ``iterations`` with ``decoder="gap-tv"``).

    Notes
    -----
    The reader is array-like: ``len(r)``, ``r.shape``, ``r.dtype``,
    ``r.ndim``, ``r[t]``, ``r[t0:t1, y0:y1, x0:x1]`` (decoding only the
    groups and tiles the index touches, exactly the numbers :meth:`read`
    gives), iteration over frames and ``np.asarray(r)``.  It pickles as its
    path and options and reopens the file when unpickled, so it can be sent
    to worker processes; :meth:`to_dask` builds a lazy dask array whose
    tasks do that.  One reader may be shared by threads for
    :meth:`measurements`; decoding keeps a one-group cache per reader, so
    give each decoding thread its own (as :meth:`to_dask` does).
    """

    def __init__(self, path, *, decoder: str | None = None, device: str = "cpu", dtype="input",
                 **decode_options):
        self.path = Path(path)
        try:
            self._container = ContainerReader(self.path, mask_sum=self._tile_mask_sum)
        except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            raise TcsInputError(f"{path}: cannot open: {exc.strerror or exc}") from exc
        self.header = self._container.header
        self.decoder = decoder
        self.device = device
        self.decode_options = decode_options
        self._dtype_option = dtype
        try:
            self.dtype = self.input_dtype if isinstance(dtype, str) and dtype == "input" else np.dtype(dtype)
        except TypeError:
            raise TcsValueError(f"dtype must be 'input' or a numpy dtype, got {dtype!r}") from None
        if self.dtype.kind not in "uif":
            raise TcsValueError(f"dtype must be an integer or float dtype, got {self.dtype}")
        self._cache: tuple[Any, np.ndarray] | None = None
        self._motion: MotionPath | None = None
        #: held-out checks of compensated groups: key -> (scores in dB by mode, verdict)
        self._checks: dict[tuple, tuple[dict, str]] = {}
        #: whether the groups the path leaves open start rigid: key -> decision
        self._starts: dict[tuple, bool] = {}
        #: whole-frame decodes the start check made: (group, *key) -> (rigid_start, frames), each used once
        self._start_frames: dict[tuple, tuple[bool, np.ndarray]] = {}
        #: groups found damaged while decoding with ``skip_damaged``: group -> the error
        self.damaged: dict[int, str] = {}

    # -- pickling: the path and options travel, the file is reopened --------------------
    def __getstate__(self) -> dict:
        return {"path": str(self.path), "decoder": self.decoder, "device": self.device,
                "dtype": self._dtype_option, "decode_options": dict(self.decode_options),
                "motion": None if self._motion is None else self._motion.to_dict()}

    def _task_state(self, options: dict | None = None) -> dict:
        """:meth:`__getstate__` for tasks on other threads or processes,
        with the motion path and the start of long groups when decoding
        compensates: estimated and decided once here, not by every task
        (the path reads every group; the start decodes a few twice)."""
        state = self.__getstate__()
        if self._compensates({**self.decode_options, **(options or {})}):
            if state["motion"] is None:
                state["motion"] = self.motion().to_dict()
            state["starts"] = self._start_decisions(options)
        return state

    def __setstate__(self, state: dict) -> None:
        TcsReader.__init__(self, state["path"], decoder=state["decoder"], device=state["device"],
                           dtype=state["dtype"], **state["decode_options"])
        if state.get("motion") is not None:
            self._motion = MotionPath.from_dict(state["motion"])

    def _tile_mask_sum(self, n_frames: int, bounds) -> np.ndarray:
        h = self._container.header
        return tile_mask_sum(h.mask_seed, n_frames, h.height, h.width, tuple(bounds))

    # -- basic facts -------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """(frames available, H, W)."""
        return (self._container.n_frames, self.header.height, self.header.width)

    @property
    def n_frames(self) -> int:
        return self._container.n_frames

    @property
    def n_groups(self) -> int:
        return self._container.n_groups

    @property
    def B(self) -> int:
        """Frames per group; with :attr:`variable_groups` the most a group holds."""
        return self.header.B

    @property
    def variable_groups(self) -> bool:
        """True for a file whose groups have variable lengths (format version 2)."""
        return self.header.variable_groups

    def group_lengths(self) -> np.ndarray:
        """Every group's number of frames (int64, ``n_groups`` long)."""
        return self._container.layout.lengths()

    def group_start(self, group: int) -> int:
        """The first frame of ``group``."""
        return self._container.group_start(self._group_index(group))

    def locate(self, frame: int) -> tuple[int, int]:
        """``(group, position in the group)`` of ``frame`` (negative counts
        from the end): where the frame is measured.  IndexError out of range."""
        i = int(frame)
        if i < 0:
            i += self.n_frames
        if not 0 <= i < self.n_frames:
            raise IndexError(f"{self.path}: frame {frame} out of range 0..{self.n_frames - 1}")
        return self._container.locate(i)

    @property
    def input_dtype(self) -> np.dtype:
        """dtype of the frames that were encoded."""
        return np.dtype(self.header.dtype)

    @property
    def ndim(self) -> int:
        return 3

    def __len__(self) -> int:
        return self.n_frames

    @property
    def complete(self) -> bool:
        """False when the file had no valid index (killed writer, truncated)."""
        return self._container.indexed

    def group_frames(self, group: int) -> int:
        """Number of frames in ``group`` (B except for a short last group,
        or any length up to B with :attr:`variable_groups`)."""
        return self._container.group_frames(group)

    def properties(self, index=None) -> TcsProperties:
        """Shape and dtype of ``read(index)`` (dtype: :attr:`dtype`);
        ``spacing`` is the (y, x) pixel size in Å (1/Å for diffraction)
        from the metadata (:func:`tcscodec.calibration.spacing`), None
        without one."""
        from .calibration import spacing

        H, W = self.header.height, self.header.width
        px = spacing(self.header.metadata)
        if index is None:
            return TcsProperties((self.n_frames, H, W), self.dtype, self.n_frames, True, px)
        return TcsProperties((H, W), self.dtype, self.n_frames, False, px)

    def metadata(self, index=None) -> dict[str, Any]:
        """The header's fields and, under ``"user"``, the user metadata."""
        h = self.header
        return {
            "shape": self.shape,
            "B": h.B,
            "variable_groups": h.variable_groups,
            "dtype": h.dtype,
            "stored_dtype": h.stored_dtype,
            "mask_seed": h.mask_seed,
            "mask_generator": GENERATOR_NAME,
            "tile": h.tile,
            "quant_step": h.quant_step,
            "codec": h.codec,
            "version": f"{h.version[0]}.{h.version[1]}",
            "complete": self.complete,
            "user": dict(h.metadata),
        }

    # -- exact data ------------------------------------------------------------------------
    def measurements(self, group: int, region=None) -> np.ndarray:
        """The measurement Y of ``group`` (H x W, or the ``region``
        (y0, y1, x0, x1)): exact, in the stored integer dtype for lossless
        files; float64 ``q * quant_step`` for quantised ones."""
        group = self._group_index(group)
        region = check_region(region, self.header.height, self.header.width)
        return dequantize(self._container.read_measurement(group, region), self.header.quant_step)

    def group_mean(self, group: int, region=None) -> np.ndarray:
        """``Y / sum_b C_b`` of ``group`` (H x W float32, or the
        ``region``'s): the mean of the frames each pixel measured, NaN where
        no frame of the group measured it.  Learned decoders with
        ``context`` read those of the neighbouring groups."""
        return measured_mean(*self._measurement_and_sum(group, region)).astype(np.float32)

    def _measurement_and_sum(self, group: int, region=None) -> tuple[np.ndarray, np.ndarray]:
        """``Y`` (float64) and ``sum_b C_b`` of ``group`` over ``region``."""
        group = self._group_index(group)
        H, W = self.header.height, self.header.width
        bounds = check_region(region, H, W)
        s = mask_sum(self.header.mask_seed, self.group_frames(group), H, W, region=bounds)
        return np.asarray(self.measurements(group, bounds), np.float64), s

    def masks(self, group: int | None = None, region=None) -> np.ndarray:
        """The masks C_b as 0/1 uint8, shape (B, H, W) (or the region's).

        The same B masks serve every group; with ``group`` given, only the
        masks of that group's frames are returned: the first ``n`` of them
        for a group of ``n`` frames (a short last group, or variable groups).
        """
        n = self.B if group is None else self.group_frames(self._group_index(group))
        H, W = self.header.height, self.header.width
        return spec_masks(self.header.mask_seed, n, H, W, check_region(region, H, W))

    def _group_index(self, group) -> int:
        g = int(group)
        if g < 0:
            g += self.n_groups
        self._container.group_frames(g)  # range and truncation check
        return g

    # -- decoding --------------------------------------------------------------------------------
    def decode_group(self, group: int, *, region=None, decoder=None, device=None,
                     out=None, progress=None, motion: bool | None = None, **options) -> np.ndarray:
        """Decode one group into ``(n, h, w)`` float32 frames in the input's units.

        With ``motion=True`` (the default, or the reader's ``motion``
        option) a decoder that compensates motion (``Decoder.uses_motion``:
        GAP-TV and the learned one, which then uses its
        ``tcs-unfold-motion`` weights) gets the group's frame displacements
        from :meth:`motion` where
        :meth:`~tcscodec.motion.MotionPath.compensated` selects the group
        (>= 0.9 px/frame, <= 50 e-/px/frame, a smooth path, a scene that
        moves as one within a tile); on a frame of several tiles each tile
        is aligned by the path's affine field at its centre (a rotation
        moves the corners unlike the centre).  Every other group decodes as
        still, exactly as with ``motion=False``.  Measured: up to +4 dB on
        smooth drift, but 1-4.6 dB lost on some movies the gate lets
        through (README, "Motion").  A compensated group of at most 10
        frames in a movie whose path is smooth and whose scene moves as one
        (:meth:`~tcscodec.motion.MotionPath.rigid_start`) is decoded by the
        learned decoder from the rigid-scene solution (the group as one
        image moved along the path) instead of GAP-TV in the moving frame:
        on a drifting HAADF micrograph -3.4 -> +8.3 dB against still at
        B = 10.  Where such a movie's groups are longer
        (:meth:`~tcscodec.motion.MotionPath.rigid_start_open`), the first
        decode that meets one decodes up to four of them (two where those
        are clear) from both starts over the check window and starts them
        all rigid where that predicts the neighbouring groups' measurements
        better
        (:func:`tcscodec.motion_check.start_score`).  ``rigid_start=False``
        keeps the GAP-TV start everywhere.

        With ``motion_check=True`` a selected group is also checked
        (:meth:`motion_check`: do its compensated frames predict the
        neighbouring groups' measurements better than its still ones?) and
        decodes as still where they do not, and as one rigid image moved
        along the path (the ``rigid-tv`` decoder) where that predicts them
        far better (:meth:`motion_verdict`): on the 51 (movie, B) of
        bench/results/motion/rigid.md it lost at most 1.9 dB against
        still, where the gate alone lost up to 4.6, and gained up to 9 dB
        where the specimen only drifts, but it gave up some gains the gate
        keeps on fresh simulator movies.

        The first compensating decode of a file of 4 groups or more
        estimates the path, which reads and registers every group once (see
        :meth:`motion`): ``motion=False`` skips it, for quick access to
        single frames of a long file.

        Only the records under the tiles that touch ``region`` are read, and
        the region's frames are exactly that crop of the whole frame's.  A
        decoder that reads context (the learned one with ``context`` in its
        config) also gets ``Y / sum C`` of groups ``group - 1`` and
        ``group + 1`` (:meth:`group_mean`) over the same tiles, so a group
        decodes slightly differently once its successor has been written.

        With ``skip_damaged=True`` (an option here or of the reader, e.g.
        ``tcscodec.open(path, skip_damaged=True)``) a group whose records
        are damaged decodes to NaN frames instead of raising; it is named
        in :attr:`damaged` and in a :class:`~tcscodec.format.TcsDamageWarning`.
        """
        group = self._group_index(group)
        if {**self.decode_options, **options}.get("skip_damaged"):
            return self._decode_or_nan(group, region=region, decoder=decoder, device=device, out=out,
                                       progress=progress, motion=motion, **options)
        H, W = self.header.height, self.header.width
        y0, y1, x0, x1 = check_region(region, H, W)
        name, given, check, opts = self._decode_setup(decoder, options)
        motion = given if motion is None else motion
        shifts, gradient = self._group_shifts(group, name, motion, opts)
        if shifts is not None and check:
            (_, mode), frames = self._check(group, name, device, opts, (shifts, gradient))
            if frames is not None:  # the check decoded the whole frame: no more decoding
                return _region_of(frames, (y0, y1, x0, x1), out)
            if mode == "rigid":
                return self._decode_rigid(group, (y0, y1, x0, x1), device, opts, (shifts, gradient), out=out,
                                          progress=progress)
            if mode == "still":
                shifts = gradient = None
        return self._decode_tiled(group, (y0, y1, x0, x1), name, device, out, progress, shifts, gradient, opts)

    def _decode_tiled(self, group: int, region, name, device, out, progress, shifts, gradient, opts: dict,
                      rigid_start: bool | None = None):
        """:meth:`decode_group`'s decode of ``group`` over ``region`` by
        decoder ``name`` with ``opts`` (its options and the tiling's) along
        ``shifts`` (None: still) and their ``gradient``; from the rigid
        start where ``rigid_start`` says so, or (None) where
        :meth:`_rigid_start` does and the ``rigid_start`` option allows."""
        from .decoders import decode_tiled

        H, W = self.header.height, self.header.width
        n = self.group_frames(group)
        seed = self.header.mask_seed

        def mask_fn(a0, a1, b0, b1):
            return spec_masks(seed, n, H, W, (a0, a1, b0, b1))

        def context_fn(a0, a1, b0, b1):
            # The neighbours' Y / sum C over one band, read only when the
            # decoder asks for them.
            return np.stack([
                self.group_mean(g, (a0, a1, b0, b1)) if 0 <= g < self.n_groups
                else np.full((a1 - a0, b1 - b0), np.nan, np.float32)
                for g in (group - 1, group + 1)])

        # where the path is smooth, the moving-frame decode may start rigid
        opts = dict(opts)
        allowed = opts.pop("rigid_start", True)
        if rigid_start is None:
            rigid_start = bool(allowed) and shifts is not None and self._rigid_start(group, name, device, opts)
            if shifts is not None and self._start_frames:
                kept = self._start_frames.pop((group,) + decode_key(name, device, opts), None)
                if kept is not None and kept[0] == rigid_start:  # the start check decoded it whole
                    return _region_of(kept[1], region, out)
        return decode_tiled(
            _GroupMeasurement(self, group), mask_fn, n, decoder=name, device=device or self.device, out=out,
            progress=progress, region=region, context_fn=context_fn, shifts=shifts,
            shift_gradient=gradient, rigid_start=rigid_start, **opts,
        )

    def _decode_or_nan(self, group: int, *, region=None, out=None, **options) -> np.ndarray:
        """:meth:`decode_group` that gives NaN frames for a damaged group."""
        options.pop("skip_damaged", None)
        try:
            return self.decode_group(group, region=region, out=out, skip_damaged=False, **options)
        except TcsFormatError as exc:
            self.damaged[group] = str(exc)
            warnings.warn(f"group {group} is damaged, its frames are NaN: {exc}",
                          TcsDamageWarning, stacklevel=3)
            y0, y1, x0, x1 = check_region(region, self.header.height, self.header.width)
            frames = out if out is not None else np.empty((self.group_frames(group), y1 - y0, x1 - x0), np.float32)
            frames[...] = np.nan
            return frames

    def _group_frames_cached(self, group: int, region, **options) -> np.ndarray:
        key = (group, region, tuple(sorted(options.items())))
        if self._cache is None or self._cache[0] != key:
            self._cache = None  # free the last group before decoding the next
            y0, y1, x0, x1 = check_region(region, self.header.height, self.header.width)
            out = _frames_buffer((self.group_frames(group), y1 - y0, x1 - x0))
            self._cache = (key, self.decode_group(group, region=region, out=out, **options))
        return self._cache[1]

    def read(self, index=None, *, region=None, **options) -> np.ndarray:
        """Decoded frames in the input's units, as :attr:`dtype`.

        ``index`` None gives all frames (T x H x W); an int gives one frame
        (H x W), decoding only its group; a slice gives those frames.
        ``region`` (y0, y1, x0, x1) decodes only that window, the same
        numbers as that crop of the whole frame.
        """
        if index is None:
            index = slice(None)
        if isinstance(index, slice):
            frames = range(*index.indices(self.n_frames))
            if not frames:
                y0, y1, x0, x1 = check_region(region, self.header.height, self.header.width)
                return np.empty((0, y1 - y0, x1 - x0), self.dtype)
            return np.stack(list(self._frames(frames, region, **options)))
        g, b = self.locate(index)
        return cast_frames(self._group_frames_cached(g, region, **options)[b], self.dtype).copy()

    def iter(self, *, region=None, **options) -> Iterator[np.ndarray]:
        """Yield decoded frames (H x W, :attr:`dtype`) one by one, group by group."""
        yield from self._frames(range(self.n_frames), region, **options)

    def _frames(self, frames, region, **options):
        for i in frames:
            g, b = self._container.locate(i)
            yield cast_frames(self._group_frames_cached(g, region, **options)[b], self.dtype)

    # -- array protocol ------------------------------------------------------------------------
    def __iter__(self) -> Iterator[np.ndarray]:
        return self.iter()

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        a = self.read()
        return a if dtype is None else a.astype(dtype, copy=False)

    def __getitem__(self, key) -> np.ndarray:
        """``r[t]``, ``r[t0:t1]``, ``r[t, y0:y1, x0:x1]``, ``r[..., y, x]``:
        integers and slices (any step) over (frame, row, column).  Decodes
        only the groups of the selected frames, over the tiles under the
        selected rows and columns."""
        if not isinstance(key, tuple):
            key = (key,)
        if sum(k is Ellipsis for k in key) > 1:
            raise IndexError("an index can only have a single ellipsis ('...')")
        if Ellipsis in key:
            at = key.index(Ellipsis)
            key = key[:at] + (slice(None),) * (3 - len(key) + 1) + key[at + 1:]
        if len(key) > 3:
            raise IndexError(f"too many indices for a 3-D movie: {len(key)}")
        key = key + (slice(None),) * (3 - len(key))
        ranges, squeeze = [], []
        for axis, (k, n) in enumerate(zip(key, self.shape, strict=True)):
            if isinstance(k, slice):
                ranges.append(range(*k.indices(n)))
            else:
                try:
                    i = operator.index(k)
                except TypeError:
                    raise TcsTypeError(f"a .tcs movie takes integers and slices as indices, not "
                                    f"{type(k).__name__}") from None
                if not -n <= i < n:
                    raise IndexError(f"index {i} is out of range for axis {axis} of size {n}")
                ranges.append(range(i % n, i % n + 1))
                squeeze.append(axis)
        t, ys, xs = ranges
        shape = (len(t), len(ys), len(xs))
        if 0 in shape:
            out = np.empty(shape, self.dtype)
        else:
            y0, x0 = min(ys), min(xs)
            region = (y0, max(ys) + 1, x0, max(xs) + 1)
            rows = np.asarray(ys) - y0
            cols = np.asarray(xs) - x0
            out = np.stack([f[np.ix_(rows, cols)] for f in self._frames(t, region)])
        return out.squeeze(axis=tuple(squeeze)) if squeeze else out

    def to_dask(self, chunks=None):
        """The decoded movie as a lazy dask array (needs ``dask``).

        ``chunks`` (dask's forms; default: one group of frames by one
        record tile of the file, each group's own length with variable
        groups) sets the tasks.  Each task opens the file
        by path in its own thread or process (the reader pickles as its path
        and options) and decodes its window exactly as :meth:`read` does,
        so ``to_dask(...).compute()`` equals ``read()`` with the threaded,
        process and distributed schedulers alike.  Where decoding
        compensates motion and this reader has not estimated the path yet,
        the estimate is one task of the graph, run once at the first compute
        (it reads every group), so making the array stays instant.
        """
        try:
            import dask.array as da
        except ImportError as exc:
            raise TcsDependencyError("to_dask needs dask: pip install 'tcscodec[dask]'") from exc
        th, tw = self.header.tile
        if chunks is None:
            chunks = (tuple(int(n) for n in self.group_lengths()) if self.variable_groups else self.B, th, tw)
        chunks = da.core.normalize_chunks(chunks, self.shape, dtype=self.dtype)
        state, motion, starts = self.__getstate__(), None, None
        if self._compensates(self.decode_options):
            import dask

            if state["motion"] is None:
                motion = dask.delayed(_motion_task, pure=True)(state)
            starts = dask.delayed(_starts_task, pure=True)(state, motion)
        return da.map_blocks(_dask_block, chunks=chunks, dtype=self.dtype, meta=np.empty((0, 0, 0), self.dtype),
                             state=state, motion=motion, starts=starts, name=f"tcs-{self.path.name}-{id(self):x}")

    def iter_groups(self, groups=None, *, region=None, executor=None, ahead: int | None = None,
                    **options) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(group, frames)`` for ``groups`` (default all), decoded, in
        order; frames in :attr:`dtype`.

        With ``executor`` (a ``concurrent.futures`` executor, or a
        ``dask.distributed.Client``) the groups are decoded in parallel by
        its workers, each reopening the file by path (threads keep one
        reader each), ``ahead`` groups at a time (default: twice the
        executor's workers), so memory stays bounded by a few groups
        whatever the movie's length.  Give each worker one torch thread
        (``torch.set_num_threads(1)`` in this process for a thread pool):
        on small tiles torch's own threads make decoding 3-5x slower.
        """
        groups = range(self.n_groups) if groups is None else [self._group_index(g) for g in groups]
        if executor is None:
            for g in groups:
                yield g, cast_frames(self.decode_group(g, region=region, **options), self.dtype)
            return
        state = self._task_state(options)
        workers = getattr(executor, "_max_workers", None)
        if workers is None and hasattr(executor, "nthreads"):
            workers = sum(executor.nthreads().values())
        ahead = max(1, ahead or 2 * (workers or 2))
        pending: list = []
        todo = iter(groups)
        for g in todo:
            pending.append((g, executor.submit(_decode_group_task, state, g, region, options)))
            if len(pending) >= ahead:
                break
        while pending:
            g, future = pending.pop(0)
            frames = future.result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append((nxt, executor.submit(_decode_group_task, state, nxt, region, options)))
            yield g, frames

    # -- lifetime -------------------------------------------------------------------------
    def close(self) -> None:
        self._container.close()
        self._cache = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        T, H, W = self.shape
        B = f"B<={self.B}" if self.variable_groups else f"B={self.B}"
        return f"<TcsReader {str(self.path)!r} {T}x{H}x{W} {self.header.dtype} {B}>"


#: one reader per (thread, file state): dask tasks reuse it across chunks,
#: and threads never share a reader's decoded-group cache
_task_readers = threading.local()


def _region_of(frames: np.ndarray, region, out=None) -> np.ndarray:
    """``region`` ``(y0, y1, x0, x1)`` of whole-frame decoded ``frames``,
    as :meth:`TcsReader.decode_group` returns it (into ``out`` if given)."""
    y0, y1, x0, x1 = region
    crop = frames[:, y0:y1, x0:x1]
    if out is None:
        return np.ascontiguousarray(crop)
    if tuple(out.shape) != crop.shape:
        raise TcsValueError(f"out has shape {tuple(out.shape)}, expected {crop.shape}")
    out[...] = cast_frames(crop, out.dtype)
    return out


def _task_reader(state: dict) -> TcsReader:
    """This thread's reader of the file ``state`` (:meth:`TcsReader.__getstate__`) describes."""
    readers = getattr(_task_readers, "readers", None)
    if readers is None:
        readers = _task_readers.readers = {}
    key = repr(sorted((k, repr(v)) for k, v in state.items() if k not in ("motion", "starts")))
    reader = readers.get(key)
    if reader is None:
        if len(readers) >= 4:
            readers.pop(next(iter(readers))).close()
        reader = readers[key] = TcsReader.__new__(TcsReader)
        reader.__setstate__(state)
    elif reader._motion is None and state.get("motion") is not None:
        reader._motion = MotionPath.from_dict(state["motion"])
    for decode, rigid in (state.get("starts") or {}).items():
        reader._starts.setdefault(decode, rigid)  # decided once, where the task state was made
    return reader


def _motion_task(state: dict) -> dict:
    """The motion path of the file ``state`` describes, as a dict: the one
    task of a :meth:`TcsReader.to_dask` graph that every chunk waits for."""
    return _task_reader(state).motion().to_dict()


def _starts_task(state: dict, motion: dict | None) -> dict:
    """The start decisions of :meth:`TcsReader.to_dask`'s decode
    (:meth:`~tcscodec.reader_motion.MotionDecoding._start_decisions`): one
    task after :func:`_motion_task`, so no chunk decodes the compared
    groups again."""
    return _task_reader(state if motion is None else {**state, "motion": motion})._start_decisions()


def _dask_block(block_info=None, state=None, motion=None, starts=None) -> np.ndarray:
    """One chunk of :meth:`TcsReader.to_dask`: the chunk's window, decoded
    by this thread's reader of the file (with ``motion``, the path
    :func:`_motion_task` estimated, and ``starts``, the decisions of
    :func:`_starts_task`)."""
    (t0, t1), (y0, y1), (x0, x1) = block_info[None]["array-location"]
    if motion is not None:
        state = {**state, "motion": motion}
    if starts is not None:
        state = {**state, "starts": starts}
    return _task_reader(state)[t0:t1, y0:y1, x0:x1]


def _decode_group_task(state: dict, group: int, region, options: dict) -> np.ndarray:
    """One group of :meth:`TcsReader.iter_groups` on a worker."""
    reader = _task_reader(state)
    return cast_frames(reader.decode_group(group, region=region, **options), reader.dtype)
