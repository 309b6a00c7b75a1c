"""Reconstruct frames from one measurement and explicit masks.

:func:`reconstruct` is the array-level entry point for any masks (the spec's,
a benchmark's own, a simulation's): it validates the arrays, wraps the masks
into a tile-wise ``mask_fn`` and runs the tiled decoding engine
(:func:`tcscodec.decoders.tiling.decode_tiled`).  For ``.tcs`` files, where
the masks follow from the seed, use the reader instead.

torch is imported only when the function runs, not with this module.
"""

from __future__ import annotations

import numpy as np

from .errors import TcsValueError
from .format.header import MAX_B

__all__ = ["reconstruct", "MAX_FRAMES"]

#: Largest number of frames per measurement: the format's largest B.
MAX_FRAMES = MAX_B


def _to_numpy(a, what: str) -> np.ndarray:
    if type(a).__module__.startswith("torch"):
        a = a.detach().cpu().numpy()
    try:
        return np.asarray(a)
    except Exception as exc:  # e.g. ragged lists
        raise TcsValueError(f"{what} is not an array: {exc}") from None


def reconstruct(
    measurement,
    masks,
    decoder=None,
    device: str = "cpu",
    tile: int = 256,
    overlap: int = 32,
    batch: int | None = None,
    out: np.ndarray | None = None,
    progress=None,
    region=None,
    half: bool = False,
    context=None,
    **options,
) -> np.ndarray:
    """Reconstruct the B frames of a snapshot measurement.

    Parameters
    ----------
    measurement : array_like
        ``(H, W)`` measurement ``Y = sum_b C_b * X_b`` (numpy array, torch
        tensor or anything numpy accepts; any real dtype), in the frames'
        units.
    masks : array_like
        ``(B, H, W)`` 0/1 masks (bool, integer or float holding only 0 and
        1), numpy or torch, ``1 <= B <= 64``.
    decoder : str, Decoder or None, optional
        Registered decoder name, a
        :class:`~tcscodec.decoders.base.Decoder` instance, or None (default)
        for :func:`~tcscodec.decoders.base.default_decoder` (the learned
        decoder when its weights are installed, as for ``tcscodec decode``
        and :meth:`TcsReader.read`).
    device : str, optional
        ``"cpu"`` (default) or ``"cuda"``.
    tile, overlap, batch : int, optional
        Tiling of :func:`~tcscodec.decoders.tiling.decode_tiled` (defaults
        256, 32, and 8 tiles per batch on CUDA, 1 on the CPU).  Frames no
        larger than ``tile`` are decoded whole.
    out : numpy.ndarray, optional
        ``(B, H, W)`` array (or ``(B, h, w)`` for a ``region``) to write the
        frames into, e.g. a memmap.
    progress : callable, optional
        ``progress(n_done, n_total)`` tile counter.
    region : (y0, y1, x0, x1), optional
        Reconstruct only this window (with context decoded around it).
    half : bool, optional
        float16 autocast on CUDA (learned decoders; ignored on the CPU).
    context : array_like, optional
        ``(2, H, W)``: ``Y / sum C`` of the measurement before this one and
        of the one after (``measurement / masks.sum(0)`` of each), NaN where
        there is none.  Decoders that use it (``Decoder.uses_context``: a
        learned decoder whose config has ``context``; not the shipped
        weights) see that much more of a slowly changing scene; others
        ignore it.
    **options
        Options of the chosen decoder, e.g. ``iterations=60, tv_weight=0.4``
        with ``decoder="gap-tv"`` (:func:`tcscodec.decoders.gap_tv.gap_tv`);
        the learned decoder refuses options other than ``half``.

    Returns
    -------
    numpy.ndarray
        ``(B, H, W)`` float32 frames in the measurement's units (or ``out``).

    Raises
    ------
    TcsValueError
        If the shapes disagree, the masks are not 0/1, B is outside 1..64,
        or the measurement holds NaN or infinite values.
    TcsDeviceError
        If CUDA is requested and not available.

    Examples
    --------
    >>> import numpy as np
    >>> from tcscodec import reconstruct
    >>> rng = np.random.default_rng(0)
    >>> C = rng.integers(0, 2, (8, 64, 64), dtype=np.uint8)
    >>> X = np.full((8, 64, 64), 100.0, np.float32)
    >>> frames = reconstruct((C * X).sum(0), C, decoder="gap-tv", iterations=10)
    >>> frames.shape, frames.dtype
    ((8, 64, 64), dtype('float32'))
    """
    y = _to_numpy(measurement, "measurement")
    C = _to_numpy(masks, "masks")
    if y.ndim != 2:
        raise TcsValueError(f"measurement must be 2-D (H, W), got shape {y.shape}")
    if C.ndim == 2:
        C = C[None]
    if C.ndim != 3:
        raise TcsValueError(f"masks must be 3-D (B, H, W), got shape {C.shape}")
    if C.shape[1:] != y.shape:
        raise TcsValueError(
            f"masks {C.shape} do not match the measurement {y.shape}: "
            "expected (B, H, W) with the measurement's H and W"
        )
    B = C.shape[0]
    if not 1 <= B <= MAX_FRAMES:
        raise TcsValueError(f"B (masks.shape[0]) must be in 1..{MAX_FRAMES}, got {B}")
    if y.size == 0:
        raise TcsValueError(f"measurement is empty, shape {y.shape}")
    if y.dtype.kind not in "buif":
        raise TcsValueError(f"measurement must be real-valued, not {y.dtype}")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise TcsValueError("measurement contains NaN or infinite values")
    if C.dtype != np.bool_:
        if C.dtype.kind not in "uif":
            raise TcsValueError(f"masks must be 0/1 numbers or bool, not {C.dtype}")
        if not ((C == 0) | (C == 1)).all():
            raise TcsValueError("masks must hold only 0 and 1")
    C = C.astype(np.uint8, copy=False)

    def mask_fn(y0, y1, x0, x1):
        return C[:, y0:y1, x0:x1]

    context_fn = None
    if context is not None:
        ctx = _to_numpy(context, "context").astype(np.float32, copy=False)
        if ctx.shape != (2, *y.shape):
            raise TcsValueError(f"context must have shape {(2, *y.shape)} (before, after), got {ctx.shape}")

        def context_fn(y0, y1, x0, x1):
            return ctx[:, y0:y1, x0:x1]

    from .decoders import require_torch

    require_torch()
    from .decoders.tiling import TilingOptions, decode_tiled

    # an ``outliers=`` among the options still overrides the tiling's default
    tiling = TilingOptions(tile=tile, overlap=overlap, batch=batch, half=half)
    return decode_tiled(
        y,
        mask_fn,
        B,
        decoder=decoder,
        device=device,
        tiling=tiling,
        out=out,
        progress=progress,
        region=region,
        context_fn=context_fn,
        **options,
    )
