"""Physical calibration of a movie: the documented keys of a ``.tcs`` file's
user metadata, and their conversion from and to other files' conventions.

A ``.tcs`` file keeps calibration in its user metadata (JSON) under these
keys, all optional:

==========================  ===================================================
``pixel_size_A``            real-space pixel size along x, in Å per pixel
``pixel_size_y_A``          along y, only where it differs from x
``pixel_size_inv_A``        reciprocal-space (diffraction) pixel size, 1/Å per
                            pixel (x); ``pixel_size_inv_y_A`` where y differs
``frame_rate_hz``           frames per second (the frame interval is its inverse)
``exposure_time_s``         exposure of one frame, where the file states it
``detector``                camera or detector name
``dose_e_per_A2``           electron dose of one frame, e⁻/Å²
``beam_energy_keV``         accelerating voltage, kV
``magnification``           nominal magnification
``camera_length_mm``        camera length
``beam_current_nA``         beam current
``microscope``              instrument name
``frame_axis``              for a stack along something other than time
                            (defocus, tilt, energy): ``{"name", "scale",
                            "offset", "units"}`` of that axis
==========================  ===================================================

Readers of input files (:mod:`tcscodec.movies`, :mod:`tcscodec.em_formats`)
fill them from TIFF tags (ImageJ, OME, resolution), MRC headers and
rosettasciio axes and metadata; writers of outputs (decoded TIFFs, the
imageio plugin's ``spacing``, :mod:`tcscodec.rsciio`, the napari reader)
read them back.  Values that are absent, zero or in units this module does
not know are left out rather than guessed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "KEYS",
    "length_to_A",
    "inverse_length_to_inv_A",
    "time_to_s",
    "from_axes",
    "from_hyperspy_metadata",
    "from_tiff",
    "from_mrc",
    "pixel_size",
    "spacing",
    "frame_interval_s",
    "tiff_output",
]

#: the documented calibration keys of a ``.tcs`` file's user metadata
KEYS = (
    "pixel_size_A", "pixel_size_y_A", "pixel_size_inv_A", "pixel_size_inv_y_A", "frame_rate_hz",
    "exposure_time_s", "detector", "dose_e_per_A2", "beam_energy_keV", "magnification",
    "camera_length_mm", "beam_current_nA", "microscope", "frame_axis",
)

# Lengths in Å; both micro signs (U+00B5, U+03BC) are normalised to "u".
_LENGTH_A = {
    "pm": 1e-2, "a": 1.0, "å": 1.0, "angstrom": 1.0, "ang": 1.0, "nm": 10.0, "um": 1e4, "micron": 1e4,
    "microns": 1e4, "micrometer": 1e4, "mm": 1e7, "cm": 1e8, "m": 1e10, "meter": 1e10,
}
_TIME_S = {
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "ms": 1e-3, "msec": 1e-3, "us": 1e-6,
    "ns": 1e-9, "min": 60.0, "h": 3600.0,
}


def _unit_key(unit) -> str | None:
    if unit is None:
        return None
    u = str(unit).strip().replace("\u00b5", "u").replace("\u03bc", "u").replace("\\u00B5", "u")
    u = u.replace("\u00c5", "å").replace("\u212b", "å")  # Å as a letter and as the Ångström sign
    return re.sub(r"\s+", "", u).lower()


def _positive(value) -> float | None:
    try:
        v = abs(float(value))
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def length_to_A(value, unit) -> float | None:
    """``value`` in ``unit`` (nm, µm, Å, pm, m, ...) as Å; None when the unit
    is not a length or the value is zero, missing or not finite.  A negative
    scale (an axis running backwards) gives its magnitude."""
    v, k = _positive(value), _unit_key(unit)
    if v is None or k not in _LENGTH_A:
        return None
    return v * _LENGTH_A[k]


def inverse_length_to_inv_A(value, unit) -> float | None:
    """``value`` in a reciprocal length unit ("1/nm", "1 / nm", "nm^-1",
    "1/Å") as 1/Å; None otherwise."""
    v, k = _positive(value), _unit_key(unit)
    if v is None or k is None:
        return None
    m = re.fullmatch(r"1/(.+)|(.+?)(?:\^-1|-1)", k)
    if not m:
        return None
    base = m.group(1) or m.group(2)
    if base not in _LENGTH_A:
        return None
    return v / _LENGTH_A[base]


def time_to_s(value, unit) -> float | None:
    """``value`` in a time unit (s, ms, µs, ns, min) as seconds; None otherwise."""
    v, k = _positive(value), _unit_key(unit)
    if v is None or k not in _TIME_S:
        return None
    return v * _TIME_S[k]


#: pixel sizes outside these bounds (Å, 1/Å) are dropped as mislabelled: TIA
#: stores diffraction calibration in 1/m, which a .ser file alone reports as m
_PLAUSIBLE = {"pixel_size": (1e-4, 1e9), "pixel_size_inv": (1e-9, 1e3)}


def _spatial(scale_y, scale_x, units) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for conv, key in ((length_to_A, "pixel_size"), (inverse_length_to_inv_A, "pixel_size_inv")):
        lo, hi = _PLAUSIBLE[key]
        x, y = conv(scale_x, units[1]), conv(scale_y, units[0])
        x, y = (v if v is not None and lo <= v <= hi else None for v in (x, y))
        if x is None and y is None:
            continue
        out[f"{key}_A"] = x if x is not None else y
        if x is not None and y is not None and not math.isclose(x, y, rel_tol=1e-6):
            out[f"{key}_y_A"] = y
        return out
    return out


def _plain(value):
    """A JSON-friendly copy of a numpy scalar or string."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value


def from_axes(frame_axis: Mapping[str, Any] | None, y_axis: Mapping[str, Any], x_axis: Mapping[str, Any]) -> dict:
    """Calibration keys from rosettasciio / hyperspy axis dicts (``name``,
    ``scale``, ``offset``, ``units``) of a stack's frame, row and column axes.

    A frame axis in time units gives ``frame_rate_hz``; any other frame
    axis with units, a scale other than 1 or an offset is kept as
    ``frame_axis`` (a plain frame counter is not).
    """
    out = _spatial(y_axis.get("scale"), x_axis.get("scale"), (y_axis.get("units"), x_axis.get("units")))
    if frame_axis is None:
        return out
    units = frame_axis.get("units")
    dt = time_to_s(frame_axis.get("scale"), units)
    if dt is not None:
        out["frame_rate_hz"] = 1.0 / dt
    elif _unit_key(units) not in _TIME_S and (units not in (None, "", "<undefined>", "[]")
                                             or frame_axis.get("scale") not in (None, 1, 1.0)
                                             or frame_axis.get("offset") not in (None, 0, 0.0)):
        out["frame_axis"] = {k: _plain(frame_axis.get(k)) for k in ("name", "scale", "offset", "units")
                             if frame_axis.get(k) is not None}
    return out


def _get(d, dotted: str):
    for part in dotted.split("."):
        if not isinstance(d, Mapping) or part not in d:
            return None
        d = d[part]
    return d


def from_hyperspy_metadata(md: Mapping[str, Any]) -> dict:
    """Calibration keys from a hyperspy/rosettasciio ``metadata`` tree
    (``Acquisition_instrument.TEM.*``, ``General.title``)."""
    out: dict[str, Any] = {}
    tem = _get(md, "Acquisition_instrument.TEM") or _get(md, "Acquisition_instrument.SEM") or {}
    for src, key in (("beam_energy", "beam_energy_keV"), ("magnification", "magnification"),
                     ("camera_length", "camera_length_mm"), ("beam_current", "beam_current_nA")):
        v = _positive(_get(tem, src))
        if v is not None:
            out[key] = v
    microscope = _get(tem, "microscope")
    if microscope:
        out["microscope"] = str(_plain(microscope))
    for path in ("Detector.Camera.exposure", "Camera.exposure", "Detector.exposure"):
        v = _positive(_get(tem, path))
        if v is not None:
            out["exposure_time_s"] = v
            break
    for path in ("Detector.Camera.name", "Detector.Camera.Name", "Detector.name"):
        v = _get(tem, path)
        if v:
            out["detector"] = str(_plain(v))
            break
    title = _get(md, "General.title")
    if title:
        out["title"] = str(_plain(title))
    return out


# -- TIFF ---------------------------------------------------------------------------------------
def _ome_calibration(xml: str) -> dict:
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return {}
    pixels = next((e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return {}
    a = pixels.attrib
    out = _spatial(a.get("PhysicalSizeY"), a.get("PhysicalSizeX"),
                   (a.get("PhysicalSizeYUnit", "µm"), a.get("PhysicalSizeXUnit", "µm")))
    dt = time_to_s(a.get("TimeIncrement"), a.get("TimeIncrementUnit", "s"))
    if dt is not None:
        out["frame_rate_hz"] = 1.0 / dt
    return out


def from_tiff(tif) -> dict:
    """Calibration and carried metadata of an open :class:`tifffile.TiffFile`.

    Read, later sources overriding earlier ones: the user metadata a
    ``tcscodec decode`` TIFF carries (ImageJ ``Info`` or the ``tcscodec``
    entry of tifffile's JSON description), OME-XML (``PhysicalSizeX/Y``,
    ``TimeIncrement``), and ImageJ's ``unit`` with the resolution tags and
    ``finterval``/``fps``, or resolution tags in centimetres.  Resolution in
    inches is taken for screen dpi and ignored.
    """
    import json

    out: dict[str, Any] = {}
    ij = tif.imagej_metadata or {}
    carried = None
    if isinstance(ij.get("Info"), str) and ij["Info"].lstrip().startswith("{"):
        try:
            carried = json.loads(ij["Info"])
        except json.JSONDecodeError:
            carried = None
    shaped = tif.shaped_metadata or ()
    if carried is None and shaped and isinstance(shaped[0].get("tcscodec"), dict):
        carried = shaped[0]["tcscodec"]
    if isinstance(carried, dict):
        out.update(carried)
    if tif.is_ome and tif.ome_metadata:
        out.update(_ome_calibration(tif.ome_metadata))
    page = tif.pages[0]
    try:
        rx, ry = page.resolution
    except (TypeError, ValueError, AttributeError):
        rx = ry = 0
    unit = None
    if ij:
        unit = ij.get("unit")
    elif int(getattr(page, "resolutionunit", 1) or 1) == 3:  # centimetre
        unit = "cm"
    if unit and rx and ry:
        out.update(_spatial(1.0 / ry, 1.0 / rx, (unit, unit)))
    if ij:
        dt = time_to_s(ij.get("finterval"), ij.get("tunit", "s"))
        if dt is None and _positive(ij.get("fps")) is not None:
            dt = 1.0 / float(ij["fps"])
        if dt is not None:
            out["frame_rate_hz"] = 1.0 / dt
    return out


def from_mrc(mrc) -> dict:
    """Calibration of an open :mod:`mrcfile` object: the voxel size (Å) of
    the main header and, from an FEI1/FEI2 extended header (EPU, Velox),
    accelerating voltage, dose, integration time and camera name of the
    first section."""
    out: dict[str, Any] = {}
    try:
        vs = mrc.voxel_size
        px, py = _positive(vs.x), _positive(vs.y)
    except Exception:  # voxel size is optional metadata
        px = py = None
    if px is not None:
        out["pixel_size_A"] = px
        if py is not None and not math.isclose(px, py, rel_tol=1e-6):
            out["pixel_size_y_A"] = py
    try:
        ext = mrc.indexed_extended_header
    except Exception:  # unknown or damaged extended header: keep the main header's
        ext = None
    if ext is None or not len(ext) or ext.dtype.names is None:
        return out
    rec = ext[0]
    names = ext.dtype.names

    def field(name):
        return _plain(rec[name]) if name in names else None

    if px is None:
        x = length_to_A(field("Pixel size X"), "m")
        if x is not None:
            out["pixel_size_A"] = x
    for name, key, factor in (("HT", "beam_energy_keV", 1e-3), ("Dose", "dose_e_per_A2", 1e-20),
                              ("Integration time", "exposure_time_s", 1.0)):
        v = _positive(field(name))
        if v is not None:
            out[key] = v * factor
    camera = field("Camera name")
    if camera:
        out["detector"] = str(camera).strip("\x00 ")
    return out


# -- outputs -----------------------------------------------------------------------------------
def pixel_size(metadata: Mapping[str, Any]) -> tuple[float, float, str] | None:
    """``(y, x, unit)`` of a file's pixel: ``"A"`` for real space, ``"1/A"``
    for reciprocal space; None when the metadata holds neither."""
    for key, unit in (("pixel_size", "A"), ("pixel_size_inv", "1/A")):
        x = _positive(metadata.get(f"{key}_A"))
        if x is not None:
            y = _positive(metadata.get(f"{key}_y_A")) or x
            return y, x, unit
    return None


def spacing(metadata: Mapping[str, Any]) -> tuple[float, float] | None:
    """imageio's ``spacing`` of a frame: ``(y, x)`` pixel size in Å (or 1/Å
    for diffraction), None when the metadata holds none."""
    p = pixel_size(metadata)
    return None if p is None else (p[0], p[1])


def frame_interval_s(metadata: Mapping[str, Any]) -> float | None:
    """Seconds between frames, from ``frame_rate_hz``; None when unknown."""
    rate = _positive(metadata.get("frame_rate_hz"))
    return None if rate is None else 1.0 / rate


def tiff_output(metadata: Mapping[str, Any], imagej: bool, frame_step: int | None = 1) -> dict:
    """Keywords for :meth:`tifffile.TiffWriter.write` that carry a movie's
    calibration and user ``metadata`` into a TIFF.

    ImageJ files get the pixel size as resolution tags with ``unit`` nm (or
    1/nm), the frame interval as ``finterval`` (times ``frame_step`` for a
    decoded subset every ``frame_step`` frames; none when the frames are not
    evenly spaced, ``frame_step=None``) and the user metadata as JSON in
    ``Info``, which ImageJ shows under Image > Show Info.  Other TIFFs
    (uint32) get resolution tags in centimetres and the metadata under
    ``tcscodec`` in tifffile's JSON description.  :func:`from_tiff` reads
    both back.
    """
    import json

    user = dict(metadata)
    rate = _positive(user.get("frame_rate_hz"))
    if rate is not None:
        if frame_step:
            user["frame_rate_hz"] = rate / frame_step
        else:
            del user["frame_rate_hz"]  # frames not evenly spaced: no single rate
    kwargs: dict[str, Any] = {}
    p = pixel_size(user)
    if imagej:
        md: dict[str, Any] = {"axes": "TYX"}
        if p is not None:
            y, x, unit = p
            # ImageJ's resolution is pixels per unit; nm and 1/nm are the units EM tools show
            kwargs["resolution"] = (10.0 / x, 10.0 / y) if unit == "A" else (0.1 / x, 0.1 / y)
            md["unit"] = "nm" if unit == "A" else "1/nm"
        dt = frame_interval_s(user)
        if dt is not None:
            md["finterval"] = dt
        if user:
            md["Info"] = json.dumps(user, sort_keys=True)
        kwargs["metadata"] = md
    else:
        if p is not None and p[2] == "A":
            kwargs["resolution"] = (1e8 / p[1], 1e8 / p[0])  # pixels per cm
            kwargs["resolutionunit"] = "CENTIMETER"
        kwargs["metadata"] = {"tcscodec": user} if user else {}
        kwargs["photometric"] = "minisblack"
    return kwargs
