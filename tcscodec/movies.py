"""Reading input movies (TIFF stacks, .npy, MRC, folders of TIFFs) and
writing decoded ones, frame by frame so large movies never sit in memory.

This is the CLI's file layer; the codec itself takes numpy arrays.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .encoder import INPUT_DTYPES
from .errors import TcsInputError, TcsValueError
from .format.container import default_permissions

__all__ = ["MovieSource", "open_movie", "supported_dtype", "atomic_output", "write_movie"]

TIFF_SUFFIXES = {".tif", ".tiff"}
MRC_SUFFIXES = {".mrc", ".mrcs", ".st", ".ali"}


def supported_dtype(dtype) -> np.dtype:
    """The encoder dtype frames of ``dtype`` are converted to (exactly).

    float16 becomes float32 and non-negative signed integers the unsigned
    type of the same size (checked frame by frame); other dtypes are refused.
    """
    dtype = np.dtype(dtype)
    if dtype in INPUT_DTYPES:
        return dtype
    if dtype == np.float16:
        return np.dtype(np.float32)
    if dtype.kind == "i" and dtype.itemsize <= 4:
        return np.dtype(f"u{dtype.itemsize}")
    if dtype == np.float64:
        raise TcsValueError("float64 frames are not supported: convert them to float32")
    raise TcsValueError(f"frames of dtype {dtype.name} are not supported (use uint8, uint16, uint32 or float32)")


@dataclass
class MovieSource:
    """A movie to encode: shape, dtype and a way to get its frames one by one.

    ``frame(i)`` returns frame ``i`` already converted to :attr:`dtype`.
    ``metadata`` holds what the file says about itself (pixel size, ...).
    """

    path: Path
    shape: tuple[int, int, int]
    source_dtype: np.dtype
    _frame: Callable[[int], np.ndarray]
    metadata: dict[str, Any] = field(default_factory=dict)
    _close: Callable[[], None] | None = None

    @property
    def dtype(self) -> np.dtype:
        return supported_dtype(self.source_dtype)

    def __len__(self) -> int:
        return self.shape[0]

    def frame(self, i: int) -> np.ndarray:
        a = np.asarray(self._frame(i))
        if a.shape != self.shape[1:]:
            raise TcsInputError(f"{self.path}: frame {i} has shape {a.shape}, expected {self.shape[1:]}")
        if a.dtype == self.dtype:
            return a
        if a.dtype.kind == "i" and a.size and a.min() < 0:
            raise TcsValueError(
                f"{self.path}: frame {i} has negative values; signed integer frames must be "
                "non-negative (add an offset, or save them as float32, which holds int16 exactly)"
            )
        return a.astype(self.dtype)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self.frame(i)

    def close(self) -> None:
        if self._close is not None:
            self._close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _from_array(path, arr, metadata=None, close=None) -> MovieSource:
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise TcsInputError(f"{path}: expected a 2-D frame or a 3-D (T, H, W) stack, got shape {arr.shape}")
    supported_dtype(arr.dtype)
    return MovieSource(Path(path), tuple(arr.shape), arr.dtype, arr.__getitem__, metadata or {}, close)


def _open_tiff(path: Path) -> MovieSource:
    import tifffile

    tif = tifffile.TiffFile(path)
    try:
        series = tif.series[0]
        shape = series.shape
        meta = {}
        if tif.imagej_metadata:
            meta.update({k: v for k, v in tif.imagej_metadata.items() if isinstance(v, (int, float, str))})
        if len(shape) == 2:
            return _from_array(path, series.asarray(), meta, tif.close)
        if len(shape) != 3:
            raise TcsInputError(f"{path}: expected a (T, H, W) stack, TIFF series has shape {shape}")
        pages = series.pages
        if len(pages) == shape[0]:
            # One page per frame: read pages on demand (bounded memory).
            return MovieSource(path, tuple(shape), series.dtype, lambda i: pages[i].asarray(), meta, tif.close)
        return _from_array(path, series.asarray(), meta, tif.close)
    except BaseException:
        tif.close()
        raise


def _open_mrc(path: Path) -> MovieSource:
    import mrcfile

    mrc = mrcfile.mmap(path, mode="r", permissive=False)
    meta = {}
    try:
        vs = mrc.voxel_size
        if float(vs.x) > 0:
            meta["pixel_size_A"] = float(vs.x)
    except Exception:  # voxel size is optional metadata
        pass
    return _from_array(path, mrc.data, meta, mrc.close)


def _open_folder(path: Path) -> MovieSource:
    import tifffile

    files = sorted(p for p in path.iterdir() if p.suffix.lower() in TIFF_SUFFIXES)
    if not files:
        raise TcsInputError(f"{path}: folder holds no .tif/.tiff files")
    first = tifffile.imread(files[0])
    if first.ndim != 2:
        raise TcsInputError(f"{files[0]}: folder input needs one 2-D frame per file, got shape {first.shape}")
    return MovieSource(path, (len(files), *first.shape), first.dtype, lambda i: tifffile.imread(files[i]))


def open_movie(path) -> MovieSource:
    """Open an input movie by its file type.

    Supported: multi-page TIFF (``.tif``/``.tiff``), ``.npy`` (memory-mapped),
    MRC (``.mrc``, ``.mrcs``, ``.st``, ``.ali``) and a folder of single-frame
    TIFFs (sorted by name).  Raises :class:`~tcscodec.TcsInputError` naming
    the file when it cannot be read.
    """
    path = Path(path)
    if not path.exists():
        raise TcsInputError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    try:
        if path.is_dir():
            return _open_folder(path)
        if suffix in TIFF_SUFFIXES:
            return _open_tiff(path)
        if suffix == ".npy":
            return _from_array(path, np.load(path, mmap_mode="r", allow_pickle=False))
        if suffix in MRC_SUFFIXES:
            return _open_mrc(path)
    except (TcsInputError, TcsValueError):
        raise
    except Exception as exc:  # each library has its own errors: name the file
        raise TcsInputError(f"{path}: cannot read {suffix or 'input'}: {exc}") from exc
    raise TcsInputError(f"{path}: unsupported input type {suffix!r} (use .tif, .npy, .mrc or a folder of TIFFs)")


@contextmanager
def atomic_output(path):
    """Yield a temporary path beside ``path``; rename it to ``path`` on
    success, delete it on failure (no half-written output)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".partial" + path.suffix, dir=path.parent or ".")
    os.close(fd)
    default_permissions(Path(tmp))
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_movie(path, frames: Iterator[np.ndarray], shape, dtype, metadata=None) -> Path:
    """Stream ``frames`` (each H x W) into a TIFF stack or ``.npy`` at ``path``,
    atomically.  ``shape`` is (T, H, W)."""
    path = Path(path)
    suffix = path.suffix.lower()
    dtype = np.dtype(dtype)
    with atomic_output(path) as tmp:
        if suffix in TIFF_SUFFIXES:
            import tifffile

            # ImageJ hyperstacks take uint8/uint16/float32 only.
            imagej = dtype in (np.uint8, np.uint16, np.float32)
            with tifffile.TiffWriter(tmp, bigtiff=not imagej and np.prod(shape) * dtype.itemsize > 2**31,
                                     imagej=imagej) as tw:
                tw.write(frames, shape=tuple(shape), dtype=dtype,
                         metadata={"axes": "TYX", **(metadata or {})} if imagej else None)
        elif suffix == ".npy":
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=tuple(shape))
            for i, f in enumerate(frames):
                out[i] = f
            out.flush()
            del out
        else:
            raise TcsValueError(f"{path}: output must be .tif, .tiff or .npy")
    return path
