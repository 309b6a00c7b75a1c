"""The decoding engine: tiled, batched inference with overlap blending.

:func:`decode_tiled` reconstructs the ``n`` frames of one measurement of any
size with any registered :class:`~tcscodec.decoders.base.Decoder`.  The frame
is cut into overlapping tiles, the tiles are decoded in batches and blended
with a smooth window so no seam shows.

Memory is bounded by one horizontal band of tiles, not by the frame: the
masks are computed band by band through ``mask_fn`` (a 4096 x 4096 movie at
B = 30 never holds all its masks), decoded tiles are accumulated into a band
buffer of ``n x tile_height x width`` float32, and each finished band is
written into the caller's ``out`` array (which may be a numpy memmap).

Blending
--------
Along each axis, tiles of equal size are spread evenly so that neighbours
share at least ``overlap`` pixels.  On a side that borders another tile, a
tile's weight is 0 over the outer quarter of the overlap (the pixels with the
least context, where a decoder's boundary effects live), rises as a raised
cosine (``sin^2``) over the middle half, and is 1 beyond.  Two neighbours'
ramps sum to exactly 1 (``sin^2 + cos^2``); the weights are nevertheless
normalised by their sum, which also covers unevenly spaced tiles.  On a side
at the frame border the weight stays 1, so border pixels are never divided
by a small number.  A decoder whose output depends only on pixels within
``overlap // 4`` gives the same result tiled as on the whole frame.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from ..errors import TcsDeviceError, TcsValueError
from ..format.region import check_region
from ..quantize import cast_frames
from .base import Decoder, default_decoder, get_decoder
from .outliers import decode_apart

__all__ = ["TilingOptions", "decode_tiled", "tile_layout", "blend_window"]

MaskFn = Callable[[int, int, int, int], np.ndarray]


def tile_layout(length: int, tile: int, overlap: int, multiple: int = 1):
    """Size and start offsets of the tiles along one axis.

    Parameters
    ----------
    length : int
        Length of the axis (>= 1).
    tile : int
        Largest tile size.
    overlap : int
        Smallest overlap between neighbouring tiles (< ``tile``).
    multiple : int, optional
        Tile sizes are rounded up to a multiple of this where the axis allows
        (decoders that need, say, multiples of 8).

    Returns
    -------
    size : int
        Common size of the tiles, ``<= min(tile, length)``.  Tiles are
        shrunk to the smallest size that needs no more tiles than ``tile``
        would, which saves work on the overlaps.
    starts : list of int
        Start offsets, increasing; the first is 0 and the last ends at
        ``length``; neighbours overlap by at least ``overlap`` pixels.
    """
    if length <= tile:
        return length, [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    size = math.ceil((length - overlap) / n) + overlap
    size = min(-(-size // multiple) * multiple, tile)
    # Even spacing; flooring keeps every step <= size - overlap.
    starts = [(k * (length - size)) // (n - 1) for k in range(n)]
    return size, starts


def blend_window(size: int, overlap: int, ramp_start: bool, ramp_end: bool) -> np.ndarray:
    """The 1-D blending weight of a tile of ``size`` pixels (float64).

    ``ramp_start`` / ``ramp_end`` say whether that side borders another tile;
    there the weight is 0 over ``overlap // 4`` pixels and then rises as
    ``sin^2`` over the middle half of the overlap.  Sides at the frame border
    keep weight 1.
    """
    w = np.ones(size)
    trim = overlap // 4
    width = overlap - 2 * trim  # ramp length, >= 1 when overlap >= 1
    if overlap <= 0 or width <= 0:
        return w
    d = np.arange(size) + 0.5 - trim  # distance from the trimmed edge
    ramp = np.sin(0.5 * np.pi * np.clip(d / width, 0.0, 1.0)) ** 2
    if ramp_start:
        w *= ramp
    if ramp_end:
        w *= ramp[::-1]
    return w


def _axis_weights(length: int, size: int, starts: list[int], overlap: int) -> list[np.ndarray]:
    """Per-tile 1-D windows along one axis, normalised so they sum to 1."""
    wins = [
        blend_window(size, overlap, k > 0, k < len(starts) - 1)
        for k in range(len(starts))
    ]
    total = np.zeros(length)
    for s, w in zip(starts, wins, strict=True):
        total[s : s + size] += w
    if total.min() <= 0:  # pragma: no cover - guaranteed by tile_layout
        raise AssertionError("tile windows leave pixels uncovered")
    return [(w / total[s : s + size]).astype(np.float32) for s, w in zip(starts, wins, strict=True)]


def _resolve_decoder(decoder, device, options) -> Decoder:
    if decoder is None:
        decoder = default_decoder()
    if isinstance(decoder, Decoder):
        if options:
            raise TcsValueError(
                f"decoder options {sorted(options)} given with a Decoder "
                "instance; pass them to get_decoder instead"
            )
        return decoder
    if not isinstance(decoder, str):
        raise TcsValueError(
            f"decoder must be a registered name or a Decoder, not {type(decoder).__name__}"
        )
    return get_decoder(decoder, device=device, **options)


def _check_device(device) -> torch.device:
    if device is None:
        device = "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise TcsValueError(f"invalid device {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TcsDeviceError(f"device {device!r} requested but CUDA is not available")
    return dev


def _store(out, index, src: np.ndarray) -> None:
    """``out[index] = src`` for float32 ``src`` and ``out`` of any numeric
    dtype (through ``__setitem__``, so zarr or h5py arrays work too)."""
    out[index] = cast_frames(src, out.dtype)


@dataclass(frozen=True)
class TilingOptions:
    """How :func:`decode_tiled` cuts a frame into tiles and runs the decoder
    on them: the options that travel together from the reader and
    :func:`~tcscodec.reconstruct` to the tiling engine.

    Each is also accepted as a keyword argument of :func:`decode_tiled`
    (``tile=128``), which overrides the field of ``tiling``.
    """

    #: largest tile size in pixels
    tile: int = 256
    #: smallest overlap of neighbouring tiles (at least the decoder's ``receptive_margin``)
    overlap: int = 32
    #: tiles decoded together (None: 8 on CUDA, 1 on the CPU)
    batch: int | None = None
    #: float16 autocast on CUDA
    half: bool = False
    #: decode isolated outlier pixels apart
    outliers: bool = True

    def __post_init__(self):
        if int(self.tile) < 1:
            raise TcsValueError(f"tile must be >= 1, got {self.tile}")
        if int(self.overlap) < 0:
            raise TcsValueError(f"overlap must be >= 0, got {self.overlap}")
        if self.batch is not None and int(self.batch) < 1:
            raise TcsValueError(f"batch must be >= 1, got {self.batch}")

    @classmethod
    def take(cls, tiling: TilingOptions | None, options: dict) -> TilingOptions:
        """``tiling`` (default: the defaults) with the fields named in
        ``options`` replaced; those keys are removed from ``options``, so
        what is left are the decoder's options.  ``tile=None`` and
        ``overlap=None`` keep the value of ``tiling`` (the CLI passes None
        for "the decoder's default")."""
        base = cls() if tiling is None else tiling
        given = {f.name: options.pop(f.name) for f in fields(cls) if f.name in options}
        given = {k: v for k, v in given.items() if v is not None or k not in ("tile", "overlap")}
        return replace(base, **given) if given else base


def _as_measurement(measurement):
    """The measurement as something with ``shape``, ``dtype`` and 2-D
    slicing (a tensor becomes numpy; a lazy view is kept as it is)."""
    meas = measurement
    if isinstance(meas, torch.Tensor):
        meas = meas.detach().cpu().numpy()
    if not (hasattr(meas, "shape") and hasattr(meas, "dtype") and hasattr(meas, "__getitem__")):
        meas = np.asarray(meas)
    if len(meas.shape) != 2 or 0 in meas.shape:
        raise TcsValueError(f"measurement must be a non-empty 2-D array, got shape {tuple(meas.shape)}")
    if np.dtype(meas.dtype).kind not in "uif":
        raise TcsValueError(f"measurement must be real-valued, not {meas.dtype}")
    return meas


def _decode_batch(dec, bands, xb, tw: int, pad, shifts_t, outliers: bool, rigid_start: bool = False
                  ) -> torch.Tensor:
    """Decode the tiles starting at columns ``xb`` of one band: ``bands`` are
    the band's measurement ``(th, Ww)``, masks ``(n, th, Ww)`` and context
    ``(2, th, Ww)`` or None; ``pad`` the rows and columns a tile smaller
    than the decoder's size multiple is padded by; ``shifts_t`` each tile's
    ``(len(xb), n, 2)`` frame shifts, or None, and ``rigid_start`` what
    the decoder is told with them where it takes it.  Returns ``(len(xb), n,
    th + pad_h, tw + pad_w)``."""
    yband_t, cband_t, xband_t = bands
    pad_h, pad_w = pad
    yt = torch.stack([yband_t[:, x : x + tw] for x in xb])
    ct = torch.stack([cband_t[:, :, x : x + tw] for x in xb]).to(torch.float32)
    xt = None if xband_t is None else torch.stack([xband_t[:, :, x : x + tw] for x in xb])
    if pad_h or pad_w:
        # Replicating both the measurement and the masks is a
        # consistent (edge-extended) scene.
        yt = torch.nn.functional.pad(yt[:, None], (0, pad_w, 0, pad_h), mode="replicate")[:, 0]
        ct = torch.nn.functional.pad(ct, (0, pad_w, 0, pad_h), mode="replicate")
        if xt is not None:
            xt = torch.nn.functional.pad(xt, (0, pad_w, 0, pad_h), mode="replicate")
    args = () if xt is None else (xt,)
    kw: dict = {} if shifts_t is None else {"shifts": shifts_t}
    if shifts_t is not None and getattr(dec, "takes_rigid_start", False):
        kw["rigid_start"] = bool(rigid_start)
    with torch.no_grad():
        rt = decode_apart(dec.decode, yt, ct, *args, **kw) if outliers else dec.decode(yt, ct, *args, **kw)
    if tuple(rt.shape) != tuple(ct.shape):
        raise TcsValueError(
            f"decoder {getattr(dec, 'name', dec)!r} returned shape "
            f"{tuple(rt.shape)}, expected {tuple(ct.shape)}"
        )
    return rt


def decode_tiled(
    measurement,
    mask_fn: MaskFn,
    n_frames: int,
    decoder=None,
    device="cpu",
    *,
    tiling: TilingOptions | None = None,
    out: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
    dtype=None,
    region=None,
    context_fn: MaskFn | None = None,
    shifts=None,
    shift_gradient=None,
    rigid_start: bool = False,
    **options,
) -> np.ndarray:
    """Decode the frames of one measurement, tile by tile.

    Parameters
    ----------
    measurement : array_like
        ``(H, W)`` measurement ``Y = sum_b C_b * X_b`` in the input's units
        (any real dtype).  Read band by band through 2-D slicing, so a numpy
        memmap, or any object with ``shape``, ``dtype`` and slicing (a
        reader's lazy view of a group), is only read where tiles need it.
    mask_fn : callable
        ``mask_fn(y0, y1, x0, x1)`` returns the 0/1 masks of the window
        ``[y0:y1, x0:x1]`` of the frame as an ``(n_frames, y1-y0, x1-x0)``
        array (uint8 or bool), in full-frame coordinates.  Called once per
        band of tiles.
    n_frames : int
        Frames held by the measurement (``B``, or fewer for a short group).
    decoder : str, Decoder or None, optional
        A registered decoder name (built with ``options`` on ``device``) or
        a :class:`Decoder` instance (which brings its own device; options
        must then be empty).  Default (None):
        :func:`~tcscodec.decoders.base.default_decoder`, as for
        :meth:`tcscodec.TcsReader.read` and :func:`tcscodec.reconstruct`.
    device : str, optional
        ``"cpu"`` (default; also for None), ``"cuda"`` or ``"cuda:N"``.
    tiling : TilingOptions, optional
        ``tile``, ``overlap``, ``batch``, ``half`` and ``outliers`` in one
        object; each may also be given as a keyword argument (below).
    tile : int, optional
        Largest tile size in pixels (default 256).  Tiles are shrunk to the
        smallest size that covers the frame with as many tiles; a frame
        smaller than one tile is decoded as a single tile of its own size.
    overlap : int, optional
        Smallest overlap of neighbouring tiles (default 32; at least the
        decoder's ``receptive_margin`` is used).  Also the context read
        around a ``region``.
    batch : int, optional
        Tiles decoded together.  Default (None): 8 on CUDA, 1 on the CPU,
        where small working sets that stay in cache are ~30 % faster than
        big batches.
    out : array, optional
        ``(n_frames, h, w)`` array to write into (``h, w`` = the frame or
        the region size): a numpy array or memmap, or anything with
        ``shape``, ``dtype`` and slice assignment (zarr, h5py).  Float
        dtypes receive the values as is; integer dtypes receive them
        rounded and clipped.  Written one band of rows at a time.
    progress : callable, optional
        ``progress(n_done, n_total)``, called with tile counts after each
        batch.
    dtype : numpy dtype, optional
        dtype of the array allocated when ``out`` is None (default float32).
    half : bool, optional
        Run the decoder under float16 autocast on CUDA (meant for learned
        decoders; no effect on the CPU).
    region : (y0, y1, x0, x1), optional
        Decode only this window of the frame.  ``measurement`` and
        ``mask_fn`` stay in full-frame coordinates.  The tiles of the whole
        frame's layout that touch the window are decoded and blended as for
        the whole frame, so the result equals that crop of the whole
        frame's decode exactly; only their rows and columns are read.
    outliers : bool, optional
        Decode isolated outlier pixels of ``Y / sum C`` (hot or dead
        detector pixels) apart (default True): the decoder sees the median
        of their neighbours there, and they get their own ``Y / sum C`` in
        every frame, so they do not smear over their neighbourhood
        (:mod:`tcscodec.decoders.outliers`).
    context_fn : callable, optional
        ``context_fn(y0, y1, x0, x1)`` returns the neighbouring groups'
        ``Y / sum C`` over that window as a ``(2, y1-y0, x1-x0)`` float
        array (group before, group after; NaN where there is none), in
        full-frame coordinates like ``mask_fn``.  Called once per band, and
        only for decoders that use it (``Decoder.uses_context``); without
        it such decoders decode the group alone.
    shifts : array_like, optional
        ``(n_frames, 2)`` displacement ``(dy, dx)`` in pixels of each
        frame's content (a global motion, :mod:`tcscodec.motion`), for
        decoders that compensate it (``Decoder.uses_motion``; others ignore
        it).  Every tile gets the same shifts, and the overlap along each
        axis grows by twice the largest shift along it, so that each tile
        also sees the content that moves into it during the group (the tile
        size along that axis grows with it, to at least twice the overlap;
        a drift along y leaves the tiling along x as it is).
    shift_gradient : array_like, optional
        ``(n_frames, 2, 2)``: how ``shifts`` change across the field (a
        rotation, a zoom; :meth:`~tcscodec.motion.MotionPath.group_shift_gradient`).
        Each tile then gets the shifts at its centre ``c``,
        ``shifts[b] + shift_gradient[b] @ (c - frame centre)``, and the
        overlap along each axis grows by twice the largest shift along it
        that any point of the frame gets.
    rigid_start : bool, optional
        With ``shifts``: tell a decoder that takes it
        (``Decoder.takes_rigid_start``) to start from the rigid-scene
        solution, as the reader decides (default False).
    **options
        Options of the decoder when ``decoder`` is a name (e.g.
        ``iterations=40`` for ``"gap-tv"``).

    Returns
    -------
    numpy.ndarray
        ``out`` (or a new array): ``(n_frames, h, w)`` frames in the
        measurement's units.

    Raises
    ------
    TcsValueError
        For bad shapes, sizes, region, NaN/inf measurements or a ``mask_fn``
        returning the wrong shape.
    TcsDeviceError
        If CUDA is requested but not available.
    TcsDecoderError
        If the decoder name is unknown.
    """
    meas = _as_measurement(measurement)
    H, W = (int(v) for v in meas.shape)
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
        raise TcsValueError(f"n_frames must be a positive integer, got {n_frames!r}")
    n = int(n_frames)
    options = dict(options)
    tiling = TilingOptions.take(tiling, options)
    tile, overlap, batch = int(tiling.tile), int(tiling.overlap), tiling.batch

    dev = _check_device(device)
    dec = _resolve_decoder(decoder, dev.type if dev.index is None else str(dev), options)
    dev = _check_device(getattr(dec, "device", device))
    if batch is None:
        batch = 8 if dev.type == "cuda" else 1
    batch = int(batch)
    overlap = max(overlap, int(getattr(dec, "receptive_margin", 0)))
    multiple = max(int(getattr(dec, "tile_multiple", 1)), 1)
    if tile <= overlap:
        raise TcsValueError(f"tile ({tile}) must be larger than the overlap ({overlap})")
    with_context = context_fn is not None and bool(getattr(dec, "uses_context", False))
    tile_shifts = None  # (y, x) of a tile's centre -> its (n, 2) shifts
    tiles, overlaps = [tile, tile], [overlap, overlap]  # along y and along x
    if shifts is not None and bool(getattr(dec, "uses_motion", False)):
        s = np.asarray(shifts, np.float64)
        if s.shape != (n, 2) or not np.isfinite(s).all():
            raise TcsValueError(f"shifts must be a finite ({n}, 2) array, got shape {s.shape}")
        grad = np.zeros((n, 2, 2)) if shift_gradient is None else np.asarray(shift_gradient, np.float64)
        if grad.shape != (n, 2, 2) or not np.isfinite(grad).all():
            raise TcsValueError(f"shift_gradient must be a finite ({n}, 2, 2) array, got shape {grad.shape}")
        centre = np.array([(H - 1) / 2, (W - 1) / 2])
        # The field is affine: its largest shift is at a corner of the frame.
        corners = np.array([[0, 0], [0, W - 1], [H - 1, 0], [H - 1, W - 1]], np.float64) - centre
        field = np.abs(s[:, None] + corners @ grad.transpose(0, 2, 1)).reshape(-1, 2)
        reach = np.ceil(field.max(0, initial=0.0)).astype(int)  # along y and along x
        if reach.any():
            overlaps = [overlap + 2 * int(r) for r in reach]
            tiles = [max(tile, 2 * o) if r else tile for r, o in zip(reach, overlaps, strict=True)]

            def tile_shifts(cy: float, cx: float) -> torch.Tensor:
                return torch.from_numpy((s + grad @ (np.array([cy, cx]) - centre)).astype(np.float32))

    ry0, ry1, rx0, rx1 = check_region(region, H, W)
    shape = (n, ry1 - ry0, rx1 - rx0)
    if out is None:
        out = np.empty(shape, np.float32 if dtype is None else dtype)
    elif tuple(out.shape) != shape:
        raise TcsValueError(f"out has shape {tuple(out.shape)}, expected {shape}")

    # Tiles are laid out over the whole frame, and a region decodes just the
    # tiles that touch it, blended with the same weights: a region is then
    # the same numbers as that crop of the whole frame, which lets any
    # window (a dask chunk, a napari view) be decoded on its own.
    th, ys_all = tile_layout(H, tiles[0], overlaps[0], multiple)
    tw, xs_all = tile_layout(W, tiles[1], overlaps[1], multiple)
    wys = _axis_weights(H, th, ys_all, overlaps[0])
    wxs_all = _axis_weights(W, tw, xs_all, overlaps[1])
    rows = [k for k, s in enumerate(ys_all) if s < ry1 and s + th > ry0]
    cols = [k for k, s in enumerate(xs_all) if s < rx1 and s + tw > rx0]
    # The decoded window: the columns of those tiles, in frame coordinates.
    wx0, wx1 = xs_all[cols[0]], xs_all[cols[-1]] + tw
    Ww = wx1 - wx0
    xs = [xs_all[k] - wx0 for k in cols]
    wxs = [torch.from_numpy(wxs_all[k]).to(dev) for k in cols]
    # A single tile smaller than the decoder's size multiple is padded.
    pad_h, pad_w = -th % multiple, -tw % multiple

    total = len(rows) * len(xs)
    done = 0
    acc = np.zeros((n, th, Ww), np.float32)  # the band accumulator
    # float16 autocast only exists for speed on CUDA; on the CPU it is ignored.
    half = bool(tiling.half) and dev.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.float16) if half else nullcontext()
    if progress is not None:
        progress(0, total)

    for iy in rows:
        y = ys_all[iy]
        a0, a1 = y, y + th  # band rows, frame coordinates
        yband = np.asarray(meas[a0:a1, wx0:wx1], dtype=np.float32)
        if not np.isfinite(yband).all():
            raise TcsValueError(f"measurement has NaN or infinite values in rows {a0}..{a1 - 1}")
        cband = np.asarray(mask_fn(a0, a1, wx0, wx1))
        if cband.shape != (n, th, Ww):
            raise TcsValueError(
                f"mask_fn{(a0, a1, wx0, wx1)} returned shape {cband.shape}, "
                f"expected {(n, th, Ww)}"
            )
        yband_t = torch.from_numpy(yband).to(dev)
        cband_t = torch.from_numpy(cband.astype(np.uint8, copy=False)).to(dev)
        wy = torch.from_numpy(wys[iy]).to(dev)
        xband_t = None
        if with_context:
            assert context_fn is not None  # with_context implies it
            xband = np.asarray(context_fn(a0, a1, wx0, wx1), dtype=np.float32)
            if xband.shape != (2, th, Ww):
                raise TcsValueError(f"context_fn{(a0, a1, wx0, wx1)} returned shape {xband.shape}, "
                                    f"expected {(2, th, Ww)}")
            xband_t = torch.from_numpy(xband).to(dev)

        for b0 in range(0, len(xs), batch):
            xb = xs[b0 : b0 + batch]
            shifts_t = None if tile_shifts is None else torch.stack(
                [tile_shifts(y + (th - 1) / 2, wx0 + x + (tw - 1) / 2) for x in xb]).to(dev)
            with autocast:
                rt = _decode_batch(dec, [yband_t, cband_t, xband_t], xb, tw, (pad_h, pad_w), shifts_t,
                                   tiling.outliers, rigid_start)
            rt = rt[..., :th, :tw].float()
            for j, x in enumerate(xb):
                wt = wy[:, None] * wxs[b0 + j][None, :]
                acc[:, :, x : x + tw] += (rt[j] * wt).cpu().numpy()
            done += len(xb)
            if progress is not None:
                progress(done, total)

        # Rows before the next band's start are final: write them out.
        last = iy == len(ys_all) - 1
        fin = th if last else ys_all[iy + 1] - y
        o0, o1 = max(a0, ry0), min(a0 + fin, ry1)
        if o0 < o1:
            _store(
                out,
                np.s_[:, o0 - ry0 : o1 - ry0, :],
                acc[:, o0 - a0 : o1 - a0, rx0 - wx0 : rx1 - wx0],
            )
        if not last:
            acc[:, : th - fin] = acc[:, fin:]  # numpy copes with the overlap
            acc[:, th - fin :] = 0
    return out
