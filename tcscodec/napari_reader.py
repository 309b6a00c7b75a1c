"""napari reader plugin (npe2) for ``.tcs`` files.

Declared in ``tcscodec/napari.yaml`` and published through the
``napari.manifest`` entry point, so ``napari movie.tcs`` (or File > Open)
opens a file without importing anything by hand.  The movie opens lazily as
a dask array (:meth:`tcscodec.TcsReader.to_dask`, chunks of one group by
one record tile): moving the time slider decodes the group under it, and
napari's dask cache keeps the group for its other frames.  Only one group
is decoded on opening, for the contrast limits (napari would otherwise
compute them over the whole lazy array).  The pixel size becomes the
layer's scale in nm.

The viewer decodes every group as still (``motion=False``): drift
compensation, on by default elsewhere, first estimates the path from
every group of the file (10 groups of 2048 x 2048 frames: 4-6 s), which
would hold up opening a long movie for minutes.  ``tcscodec decode`` and
``tcscodec.open(path).read()`` give the compensated frames.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["get_reader", "read_tcs", "contrast_limits"]


def get_reader(path) -> Callable | None:
    """npe2 reader contribution: :func:`read_tcs` for a ``.tcs`` path (or a
    list of one), None for anything else so napari tries other readers."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    if not str(path).lower().endswith(".tcs"):
        return None
    return read_tcs


def contrast_limits(reader, group: int | None = None) -> list[float]:
    """``[min, max]`` of one decoded group (the middle one by default,
    where napari's slider starts)."""
    g = reader.n_groups // 2 if group is None else group
    t0 = reader.group_start(g)
    frames = reader[t0:t0 + reader.group_frames(g)]
    lo, hi = float(np.min(frames)), float(np.max(frames))
    return [lo, hi if hi > lo else lo + 1.0]


def read_tcs(path) -> list[tuple[Any, dict, str]]:
    """napari layer data of a ``.tcs`` file: ``[(dask array, kwargs, "image")]``
    with ``contrast_limits`` from one decoded group, ``scale`` (frames, y,
    x; y and x in nm, or 1/nm for diffraction, when the file has a pixel
    size) and the file's metadata."""
    from . import calibration
    from .reader import TcsReader

    if isinstance(path, (list, tuple)):
        path = path[0]
    with TcsReader(path, motion=False) as r:
        data = r.to_dask()
        meta = r.metadata()
        limits = contrast_limits(r)
    kwargs: dict[str, Any] = {"name": Path(path).stem, "contrast_limits": limits,
                              "metadata": {"tcs": meta}}
    p = calibration.pixel_size(meta["user"])
    if p is not None:
        factor = 0.1 if p[2] == "A" else 10.0  # Å -> nm, 1/Å -> 1/nm
        kwargs["scale"] = (1.0, p[0] * factor, p[1] * factor)
    return [(data, kwargs, "image")]
