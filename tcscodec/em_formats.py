"""EM file formats as movie inputs: what rosettasciio reads (DM3/DM4, EMD
Velox and NCEM, SER/EMI, hspy/zspy, blockfile, TVIPS, ...) and HDF5
datasets named by path (``file.h5:/entry/data``, through h5py).

Both are optional (``pip install 'tcscodec[em]'``) and imported only when
such a file is opened; without them the file is refused with a
:class:`~tcscodec.TcsDependencyError` that names the package.  Files are
read lazily where the reader allows it (rosettasciio's ``lazy=True`` gives
dask arrays, h5py datasets read by slice), a block of frames at a time, so
large stacks stream through the encoder.

rosettasciio returns a list of signals, each with ``data``, ``axes`` and
hyperspy-style ``metadata``.  An image stack is a signal with one
navigation axis (the frames) and two signal axes (rows, columns), or,
from formats that do not say which axes navigate (NCEM EMD), three signal
axes of which the last two are in units of space (or none); its
calibration goes into the movie's metadata under the keys of
:mod:`tcscodec.calibration`.  Files with several image stacks (a Velox file
with HAADF and DF frames) need ``signal=`` (``--signal`` on the command
line); other signals (2-D images, spectra, spectrum images, 4D-STEM) are
refused with a message listing what the file holds.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from . import calibration
from .errors import TcsDependencyError, TcsInputError, TcsNotAMovieError, TcsValueError
from .movie_source import EXPECTED, MovieSource, check_stack

__all__ = [
    "RSCIIO_SUFFIXES",
    "HDF5_SUFFIXES",
    "have_rsciio",
    "rsciio_reads",
    "split_dataset_path",
    "is_plain_hdf5",
    "open_hdf5",
    "open_rsciio",
    "tiff_calibration",
]

#: suffixes sent to rosettasciio (and refused with an install hint without it)
RSCIIO_SUFFIXES = frozenset({
    ".dm3", ".dm4", ".emd", ".de5", ".ser", ".emi", ".hspy", ".hdf5", ".zspy", ".blo", ".tvips",
    ".mib", ".nxs", ".prz", ".unf", ".rpl", ".mrcz",
})
#: HDF5-based suffixes that take a dataset path after a colon
HDF5_SUFFIXES = frozenset({".h5", ".hdf5", ".hdf", ".he5", ".nxs", ".nx5", ".emd", ".hspy", ".cxi"})

_SUFFIX_PATTERN = "|".join(re.escape(s) for s in sorted(HDF5_SUFFIXES))
_DATASET_PATH = re.compile(rf"^(?P<file>.+?(?:{_SUFFIX_PATTERN})):(?P<dataset>/.*)$", re.IGNORECASE)

#: a block of frames read at once from a lazy array is at most this large
BLOCK_BYTES = 256 << 20


def have_rsciio() -> bool:
    """Whether rosettasciio is installed (without importing it)."""
    return importlib.util.find_spec("rsciio") is not None


def rsciio_reads(suffix: str) -> bool:
    """Whether an installed rosettasciio has a reader for ``suffix``."""
    if not suffix or not have_rsciio():
        return False
    return bool(_plugins_for(suffix))


def _plugins_for(suffix: str) -> list[dict]:
    from rsciio import IO_PLUGINS

    ext = suffix.lstrip(".").lower()
    return [p for p in IO_PLUGINS if ext in (e.lower() for e in p["file_extensions"])]


def split_dataset_path(text: str) -> tuple[Path, str | None]:
    """``"dir/file.h5:/entry/data"`` -> ``(Path("dir/file.h5"), "/entry/data")``;
    text without a dataset part -> ``(Path(text), None)``."""
    m = _DATASET_PATH.match(str(text))
    if m is None:
        return Path(text), None
    return Path(m["file"]), m["dataset"]


def _h5py():
    try:
        import h5py
    except ImportError as exc:
        raise TcsDependencyError("reading HDF5 datasets needs h5py: pip install 'tcscodec[em]'") from exc
    return h5py


def is_plain_hdf5(path: Path) -> bool:
    """An HDF5 file to read with h5py (``.h5``, ``.hdf``, ``.he5``, and
    ``.hdf5`` unless HyperSpy wrote it), not through rosettasciio."""
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf", ".he5"):
        return True
    if suffix != ".hdf5":
        return False
    h5py = _h5py()
    with h5py.File(path, "r") as f:
        fmt = f.attrs.get("file_format", b"")
        hyperspy = "Experiments" in f  # HyperSpy's own layout, also in files older than the attribute
    return not hyperspy and (fmt.decode() if isinstance(fmt, bytes) else str(fmt)) != "HyperSpy"


def _datasets(f) -> list[tuple[str, tuple, np.dtype]]:
    import h5py

    found = []
    f.visititems(lambda name, obj: found.append(("/" + name, obj.shape, obj.dtype))
                 if isinstance(obj, h5py.Dataset) and len(obj.shape) >= 2 else None)
    return found


def _listing(found) -> str:
    return ", ".join(f"{n} ({' x '.join(map(str, s))} {d})" for n, s, d in found[:12]) + (
        f", ... ({len(found)} in all)" if len(found) > 12 else "")


def open_hdf5(path: Path, dataset: str | None):
    """A :class:`~tcscodec.movies.MovieSource` over one HDF5 dataset of
    shape (T, H, W), read frame by frame.  With ``dataset`` None the file
    must hold exactly one 3-D dataset.  Dataset attributes named like the
    calibration keys (``pixel_size_A``, ``frame_rate_hz``, ...) are carried."""
    h5py = _h5py()
    path = Path(path)
    f = h5py.File(path, "r")
    try:
        if dataset is None:
            found = _datasets(f)
            stacks = [d for d in found if len(d[1]) == 3]
            if len(stacks) != 1:
                what = "no 3-D dataset" if not stacks else f"{len(stacks)} 3-D datasets"
                raise (TcsNotAMovieError if not stacks else TcsValueError)(
                    f"{path}: holds {what}; datasets: {_listing(found) or 'none'}. "
                    f"Name one as {path.name}:/path/to/dataset")
            dataset = stacks[0][0]
        obj = f.get(dataset)
        if obj is None or not isinstance(obj, h5py.Dataset):
            what = "a group, not a dataset" if obj is not None else "not in the file"
            raise TcsInputError(f"{path}:{dataset} is {what}; datasets: {_listing(_datasets(f)) or 'none'}")
        name = f"{path.name}:{dataset}"
        check_stack(name, obj.shape, obj.dtype)
        _check_filters(h5py, obj, name)
        meta = {k: calibration._plain(obj.attrs[k]) for k in calibration.KEYS
                if k in obj.attrs and k != "frame_axis"}
        return MovieSource(path, tuple(obj.shape), obj.dtype, obj.__getitem__, meta, f.close, name=name)
    except BaseException:
        f.close()
        raise


def _check_filters(h5py, dataset, name: str) -> None:
    """Refuse, at open rather than at the first frame, a dataset compressed
    with an HDF5 filter this h5py cannot load (bitshuffle, LZ4, ... from
    detector software: the ``hdf5plugin`` package provides them)."""
    plist = dataset.id.get_create_plist()
    for k in range(plist.get_nfilters()):
        code, _, _, label = plist.get_filter(k)
        if not h5py.h5z.filter_avail(code):
            label = label.decode(errors="replace") if isinstance(label, bytes) else str(label)
            raise TcsDependencyError(f"{name}: compressed with HDF5 filter {code} ({label}), which is not "
                                     "installed: pip install hdf5plugin, then import hdf5plugin before tcscodec")


# -- rosettasciio -------------------------------------------------------------------------------------
class _FrameBlocks:
    """Frames of a (T, H, W) numpy or dask array, computed a block of frames
    at a time: the array's own chunks along T when a block of them fits in
    :data:`BLOCK_BYTES`, else one frame at a time."""

    def __init__(self, data):
        self.data = data
        self.cache: tuple[int, int, np.ndarray] | None = None
        chunks = getattr(data, "chunks", None)
        self.bounds = None
        if chunks is not None and not isinstance(data, np.ndarray):
            T, H, W = data.shape
            if max(chunks[0]) * H * W * data.dtype.itemsize <= BLOCK_BYTES:
                self.bounds = np.cumsum((0,) + tuple(chunks[0]))

    def __call__(self, i: int) -> np.ndarray:
        if self.bounds is None:
            return np.asarray(self.data[i])
        if self.cache is None or not self.cache[0] <= i < self.cache[1]:
            b = int(np.searchsorted(self.bounds, i, side="right")) - 1
            t0, t1 = int(self.bounds[b]), int(self.bounds[b + 1])
            self.cache = None  # free the last block before reading the next
            self.cache = (t0, t1, np.asarray(self.data[t0:t1]))
        return self.cache[2][i - self.cache[0]]


def _sorted_axes(sig: Mapping[str, Any]) -> list[dict]:
    """A signal's axes in array order, filled in where a reader gave none
    (the last two are then the signal axes)."""
    ndim = sig["data"].ndim
    axes = [dict(a) for a in sig.get("axes") or ()]
    if len(axes) != ndim:
        axes = [{"name": None, "size": n, "navigate": i < ndim - 2} for i, n in enumerate(sig["data"].shape)]
    if all("index_in_array" in a for a in axes):
        axes.sort(key=lambda a: a["index_in_array"])
    for a in axes:
        a.setdefault("navigate", False)
    return axes


def _describe(i: int, sig: Mapping[str, Any]) -> str:
    data = sig["data"]
    title = (sig.get("metadata") or {}).get("General", {}).get("title") or ""
    parts = []
    for a in _sorted_axes(sig):
        units = a.get("units")
        units = f" {units}" if units not in (None, "", "<undefined>") else ""
        parts.append(f"{a.get('name') or '?'} {a.get('size', '?')}{units} "
                     f"({'navigation' if a['navigate'] else 'signal'})")
    return (f"signal {i}{f' {title!r}' if title else ''}: {' x '.join(map(str, data.shape))} "
            f"{np.dtype(data.dtype).name}, axes {', '.join(parts) or 'none'}")


def _stack_axes(sig: Mapping[str, Any]):
    """(frame, y, x) axes of an image stack, size-1 axes dropped, or None
    when the signal is not one (its data must then not be used)."""
    axes = [a for a in _sorted_axes(sig) if int(a.get("size") or 0) != 1]
    if len(axes) != 3 or sig["data"].dtype.kind not in "biuf":
        return None
    nav = [a["navigate"] for a in axes]
    if nav == [True, False, False]:
        return axes
    # Formats that do not record navigation (NCEM EMD, Semper) mark all three as
    # signal axes: a stack when rows and columns are in units of space.
    if not any(nav) and all(_spatial_units(a.get("units")) for a in axes[1:]):
        return axes
    return None


def _spatial_units(units) -> bool:
    if units in (None, "", "<undefined>", "[]", "px", "pixel", "pixels", "pix"):
        return True
    return calibration.length_to_A(1, units) is not None or calibration.inverse_length_to_inv_A(1, units) is not None


def _axis_names(sig) -> str:
    return ", ".join(str(a.get("name") or "?") for a in _sorted_axes(sig) if int(a.get("size") or 0) != 1)


def _squeezed(data):
    """``data`` without its size-1 axes (a lazy view for dask arrays)."""
    index = tuple(0 if n == 1 else slice(None) for n in data.shape)
    return data[index] if any(n == 1 for n in data.shape) else data


def _set(d: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        d = d.setdefault(p, {})
        if not isinstance(d, dict):
            return
    d[last] = value


def _mapped_metadata(sig: Mapping[str, Any]) -> dict:
    """hyperspy's metadata of a signal: rosettasciio leaves part of it to
    the ``mapping`` from original_metadata that hyperspy applies on load;
    this applies it the same way."""
    import copy

    md = copy.deepcopy(dict(sig.get("metadata") or {}))
    om = sig.get("original_metadata") or {}
    for src, (dst, fn) in (sig.get("mapping") or {}).items():
        value = calibration._get(om, src)
        if value is None:
            continue
        try:
            value = fn(value) if fn is not None else value
        except Exception:  # a reader's converter failing on odd metadata: skip that item
            continue
        if value is not None:
            _set(md, dst, value)
    return md


def _velox_extras(om: Mapping[str, Any]) -> dict:
    """Detector name and exposure time of a Velox image, which rosettasciio
    keeps in original_metadata only."""
    out: dict[str, Any] = {}
    br = om.get("BinaryResult") if isinstance(om, Mapping) else None
    if not isinstance(br, Mapping):
        return out
    det = calibration._get(om, f"Detectors.Detector-{br.get('DetectorIndex', 0)}") or {}
    name = br.get("Detector") or det.get("DetectorName")
    if name:
        out["detector"] = str(name)
    exposure = calibration._positive(det.get("ExposureTime"))
    if exposure is not None:
        out["exposure_time_s"] = exposure
    return out


def _read_signals(path: Path) -> tuple[dict, list]:
    suffix = path.suffix.lower()
    if not have_rsciio():
        raise TcsDependencyError(f"{path}: reading {suffix} files needs rosettasciio: "
                                 "pip install 'tcscodec[em]'")
    plugins = _plugins_for(suffix)
    if not plugins:
        raise TcsInputError(f"{path}: rosettasciio has no reader for {suffix!r}")
    errors: list[tuple[str, Exception]] = []
    for plugin in plugins:
        try:
            signals = _call_reader(plugin, path)
        except ImportError as exc:
            errors.append((plugin["name"], TcsDependencyError(
                f"needs {exc.name or 'a package'} (pip install 'rosettasciio[{plugin['name'].lower()}]')")))
            continue
        except Exception as exc:  # the next plugin for this suffix may read it
            errors.append((plugin["name"], exc))
            continue
        if signals:
            return plugin, list(signals)
        errors.append((plugin["name"], TcsInputError("no signal in the file")))
    text = "; ".join(f"{name} reader: {exc}" for name, exc in errors)
    if all(isinstance(exc, TcsDependencyError) for _, exc in errors):
        raise TcsDependencyError(f"{path}: rosettasciio's {text}")
    raise TcsInputError(f"{path}: cannot read {suffix} ({text})") from errors[-1][1]


def _call_reader(plugin: dict, path: Path) -> list:
    """rosettasciio's reader of ``plugin`` on ``path``: lazily where it
    takes ``lazy``, eagerly where lazy loading fails (some readers refuse
    it for some files, e.g. DM's RGBA images)."""
    reader = importlib.import_module(plugin["api"]).file_reader
    if "lazy" in inspect.signature(reader).parameters:
        try:
            return reader(str(path), lazy=True)
        except ImportError:
            raise
        except Exception:  # retried eagerly below; its error is the one reported
            pass
    return reader(str(path))


def open_rsciio(path: Path, signal: int | None = None):
    """A :class:`~tcscodec.movies.MovieSource` over the image stack of an
    EM file rosettasciio reads, lazily where the reader allows, with its
    calibration.  ``signal`` picks one of several signals (rosettasciio's
    order); without it the file must hold exactly one image stack."""
    path = Path(path)
    plugin, signals = _read_signals(path)
    described = "; ".join(_describe(i, s) for i, s in enumerate(signals))
    if signal is not None:
        if not -len(signals) <= signal < len(signals):
            raise TcsValueError(f"{path}: signal {signal} does not exist; the file holds {described}")
        chosen = signal % len(signals)
        if _stack_axes(signals[chosen]) is None:
            sig = signals[chosen]
            data = sig["data"]
            check_stack(f"{path} signal {chosen}", _squeezed(data).shape, data.dtype, _axis_names(sig))
            raise TcsNotAMovieError(f"{path}: found {_describe(chosen, sig)}; {EXPECTED} along one "
                                    "navigation axis")
    else:
        stacks = [i for i, s in enumerate(signals) if _stack_axes(s) is not None]
        if len(stacks) > 1:
            raise TcsValueError(f"{path}: holds {len(stacks)} image stacks ({described}); "
                                "choose one with signal=N (--signal N)")
        if not stacks:
            if len(signals) == 1:  # say "2-D image" or "4-D data" where that is what it is
                data = signals[0]["data"]
                check_stack(path, _squeezed(data).shape, data.dtype, _axis_names(signals[0]))
            raise TcsNotAMovieError(f"{path}: found {described}; {EXPECTED} along one navigation axis")
        chosen = stacks[0]
    sig = signals[chosen]
    frame_axis, y_axis, x_axis = _stack_axes(sig)
    data = _squeezed(sig["data"])
    check_stack(path, data.shape, data.dtype, _axis_names(sig))
    md = _mapped_metadata(sig)
    meta: dict[str, Any] = {"source_format": plugin["name"]}
    meta.update(calibration.from_hyperspy_metadata(md))
    meta.update(_velox_extras(sig.get("original_metadata") or {}))
    meta.update(calibration.from_axes(frame_axis, y_axis, x_axis))
    if len(signals) > 1:
        meta["source_signal"] = chosen
    name = path.name if len(signals) == 1 else f"{path.name} (signal {chosen})"
    return MovieSource(path, tuple(data.shape), np.dtype(data.dtype), _FrameBlocks(data), meta, None, name=name)


def tiff_calibration(path: Path) -> dict:
    """Calibration that rosettasciio reads from a TIFF stack's private tags
    (DigitalMicrograph, FEI, Zeiss, JEOL, ...), which tifffile's ImageJ and
    OME metadata do not hold; {} without rosettasciio or when it finds none.
    The frames themselves are still read with tifffile."""
    if not have_rsciio():
        return {}
    try:
        from rsciio.tiff import file_reader

        sig = file_reader(str(path), lazy=True)[0]
        axes = _stack_axes(sig)
        if axes is None:
            return {}
        out = calibration.from_hyperspy_metadata(_mapped_metadata(sig))
        out.pop("title", None)  # rosettasciio titles a TIFF by its file name
        out.update(calibration.from_axes(*axes))
        return out
    except Exception:  # calibration is optional: a reader failing on odd tags must not refuse the movie
        return {}
