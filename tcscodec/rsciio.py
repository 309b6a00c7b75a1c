"""A rosettasciio-style reader of ``.tcs`` files, for hyperspy and the other
tools that take one::

    import hyperspy.api as hs
    import tcscodec.rsciio

    s = hs.load("movie.tcs", file_format=tcscodec.rsciio)              # decoded movie
    s = hs.load("movie.tcs", file_format=tcscodec.rsciio, lazy=True)   # dask-backed: decodes on compute
    # hyperspy < 2.4: hs.load("movie.tcs", reader=tcscodec.rsciio)

:func:`file_reader` returns rosettasciio's signal format: a list of one dict
with ``data`` (T x H x W), ``axes`` (frames with the frame time in s, then
y and x with the pixel size in nm, or 1/nm for diffraction), ``metadata``
(hyperspy's tree: title, beam energy, detector, exposure) and
``original_metadata`` (the ``.tcs`` header and user metadata).  Neither
hyperspy nor rosettasciio is needed to call it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import calibration

__all__ = ["file_reader", "signal_axes", "signal_metadata"]

#: hyperspy metadata paths of the calibration keys under Acquisition_instrument.TEM
_TEM_PATHS = {
    "beam_energy_keV": "beam_energy",
    "magnification": "magnification",
    "camera_length_mm": "camera_length",
    "beam_current_nA": "beam_current",
    "microscope": "microscope",
    "detector": "Detector.Camera.name",
    "exposure_time_s": "Detector.Camera.exposure",
}


def signal_axes(shape, user: Mapping[str, Any]) -> list[dict]:
    """rosettasciio axis dicts of a (T, H, W) movie with user metadata
    ``user``: the frame axis (time in s from ``frame_rate_hz``, or the stored
    ``frame_axis``, else plain frame numbers) navigates; y and x carry the
    pixel size in nm (1/nm for ``pixel_size_inv_A``)."""
    T, H, W = shape
    frame = {"name": "time", "size": T, "scale": 1.0, "offset": 0.0, "units": "", "navigate": True}
    dt = calibration.frame_interval_s(user)
    if dt is not None:
        frame.update(scale=dt, units="s")
    elif isinstance(user.get("frame_axis"), Mapping):
        fa = user["frame_axis"]
        frame.update(name=str(fa.get("name") or "frame"), scale=float(fa.get("scale") or 1.0),
                     offset=float(fa.get("offset") or 0.0), units=str(fa.get("units") or ""))
    else:
        frame["name"] = "frame"
    p = calibration.pixel_size(user)
    if p is None:
        (sy, sx), units = (1.0, 1.0), ""
    elif p[2] == "A":
        (sy, sx), units = (p[0] / 10.0, p[1] / 10.0), "nm"
    else:
        (sy, sx), units = (p[0] * 10.0, p[1] * 10.0), "1/nm"
    axes = [frame,
            {"name": "y", "size": H, "scale": sy, "offset": 0.0, "units": units, "navigate": False},
            {"name": "x", "size": W, "scale": sx, "offset": 0.0, "units": units, "navigate": False}]
    for i, a in enumerate(axes):
        a["index_in_array"] = i
    return axes


def signal_metadata(user: Mapping[str, Any], filename: str) -> dict:
    """hyperspy's ``metadata`` tree from a ``.tcs`` file's user metadata."""
    md: dict[str, Any] = {
        "General": {"title": str(user.get("title") or Path(filename).stem),
                    "original_filename": Path(filename).name},
        "Signal": {"signal_type": ""},
    }
    tem: dict[str, Any] = {}
    for key, path in _TEM_PATHS.items():
        if user.get(key) is not None:
            node = tem
            *parents, last = path.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = user[key]
    if tem:
        md["Acquisition_instrument"] = {"TEM": tem}
    return md


def file_reader(filename, lazy: bool = False, chunks="auto", *, decoder: str | None = None,
                dtype="input", **kwds) -> list[dict]:
    """Read a ``.tcs`` file as rosettasciio signal dicts.

    Parameters
    ----------
    filename : str or Path
    lazy : bool
        False decodes the whole movie now; True returns a dask array from
        :meth:`tcscodec.TcsReader.to_dask` that decodes a group's tiles
        when computed.
    chunks : "auto" or dask chunks
        Chunks of the lazy array; "auto" is one group by one record tile.
    decoder, dtype
        As for :class:`tcscodec.TcsReader`.
    **kwds
        Decoder options (``tile``, ``overlap``, ...); keywords that loaders
        pass to every reader and that mean nothing here are ignored.

    Returns
    -------
    list of dict
        One signal: ``data``, ``axes``, ``metadata``, ``original_metadata``.
    """
    from .reader import TcsReader

    # keywords hyperspy passes to any reader
    for key in ("convert_units", "load_original_metadata", "signal_type", "stack", "stack_axis",
                "new_axis_name", "mmap_dir", "escape_square_brackets", "file_format", "reader"):
        kwds.pop(key, None)
    with TcsReader(filename, decoder=decoder, dtype=dtype, **kwds) as r:
        original = r.metadata()
        user = original["user"]
        if lazy:
            data = r.to_dask(None if isinstance(chunks, str) and chunks == "auto" else chunks)
        else:
            data = r.read()
        shape = r.shape
    original = {**original, "shape": list(original["shape"]), "tile": list(original["tile"])}
    return [{
        "data": data,
        "axes": signal_axes(shape, user),
        "metadata": signal_metadata(user, str(filename)),
        "original_metadata": original,
    }]
