"""Reading input movies and writing decoded ones, frame by frame so large
movies never sit in memory.

Inputs: TIFF stacks, ``.npy``, MRC, folders of TIFFs, and, through
:mod:`tcscodec.em_formats`, HDF5 datasets by path (``file.h5:/path``) and
the EM formats rosettasciio reads (DM3/DM4, EMD, SER/EMI, hspy/zspy, ...).
Every input must be a T x H x W stack of grayscale frames; anything else
(a 2-D image, RGB colour, a spectrum image, 4-D data) is refused with a
:class:`~tcscodec.TcsNotAMovieError` that says what was found.  Calibration
(pixel size, frame rate, ...) is read into :attr:`MovieSource.metadata`
under the keys of :mod:`tcscodec.calibration`.

This is the CLI's file layer; the codec itself takes numpy arrays.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from . import calibration
from .errors import TcsInputError, TcsNotAMovieError, TcsValueError
from .format.container import default_permissions
from .movie_source import EXPECTED, MovieSource, check_stack, shape_text, supported_dtype

__all__ = ["MovieSource", "open_movie", "supported_dtype", "check_stack", "atomic_output", "write_movie"]

TIFF_SUFFIXES = {".tif", ".tiff"}
MRC_SUFFIXES = {".mrc", ".mrcs", ".st", ".ali"}


def _from_array(path, arr, metadata=None, close=None, axes=None) -> MovieSource:
    try:
        check_stack(path, arr.shape, arr.dtype, axes)
    except BaseException:
        if close is not None:
            close()
        raise
    return MovieSource(Path(path), tuple(arr.shape), arr.dtype, arr.__getitem__, metadata or {}, close)


#: TIFF photometric interpretations of colour pictures (RGB, palette, YCbCr, CMYK, CIELab)
_COLOUR_PHOTOMETRIC = {2, 3, 5, 6, 8, 9, 10}


def _open_tiff(path: Path) -> MovieSource:
    import tifffile

    tif = tifffile.TiffFile(path)
    try:
        series = tif.series[0]
        shape, axes = tuple(series.shape), series.axes
        photometric = int(getattr(series.pages[0] if series.pages else tif.pages[0], "photometric", 1) or 1)
        if "S" in axes or photometric in _COLOUR_PHOTOMETRIC:
            kind = {3: "palette-colour", 5: "CMYK", 6: "YCbCr"}.get(photometric, "RGB(A)")
            raise TcsNotAMovieError(
                f"{path}: found {'an' if kind.startswith('RGB') else 'a'} {kind} TIFF, {shape_text(shape)} "
                f"{series.dtype.name} (axes {axes}); "
                f"{EXPECTED}: convert it to grayscale first")
        meta = calibration.from_tiff(tif)
        check_stack(path, shape, series.dtype, axes)
        if "pixel_size_A" not in meta and "pixel_size_inv_A" not in meta:
            from .em_formats import tiff_calibration

            meta = {**tiff_calibration(path), **meta}
        pages = series.pages
        if len(pages) == shape[0]:
            # One page per frame: read pages on demand (bounded memory).
            def read_page(i: int) -> np.ndarray:
                page = pages[i]
                if page is None:  # tifffile's series may list a page it could not find
                    raise TcsInputError(f"{path}: frame {i} has no TIFF page")
                return page.asarray()

            T, H, W = shape  # check_stack: 3-D
            return MovieSource(path, (T, H, W), series.dtype, read_page, meta, tif.close)
        return _from_array(path, series.asarray(), meta, tif.close, axes)
    except BaseException:
        tif.close()
        raise


def _open_mrc(path: Path) -> MovieSource:
    import mrcfile

    mrc = mrcfile.mmap(path, mode="r", permissive=False)
    try:
        meta = calibration.from_mrc(mrc)
    except BaseException:
        mrc.close()
        raise
    return _from_array(path, mrc.data, meta, mrc.close, "ZYX" if mrc.data.ndim == 3 else None)


def _open_folder(path: Path) -> MovieSource:
    import tifffile

    files = sorted(p for p in path.iterdir() if p.suffix.lower() in TIFF_SUFFIXES)
    if not files:
        raise TcsInputError(f"{path}: folder holds no .tif/.tiff files")
    with tifffile.TiffFile(files[0]) as tif:
        series = tif.series[0]
        meta = calibration.from_tiff(tif)
        if series.ndim != 2 or "S" in series.axes:
            raise TcsNotAMovieError(
                f"{files[0]}: found {shape_text(series.shape)} {series.dtype.name} (axes {series.axes}); "
                "a folder input needs one 2-D grayscale frame per file")
        shape, dtype = series.shape, series.dtype
    return MovieSource(path, (len(files), *shape), dtype, lambda i: tifffile.imread(files[i]), meta)


def open_movie(path, *, signal: int | None = None) -> MovieSource:
    """Open an input movie by its file type.

    Supported: multi-page TIFF (``.tif``/``.tiff``), ``.npy`` (memory-mapped),
    MRC (``.mrc``, ``.mrcs``, ``.st``, ``.ali``), a folder of single-frame
    TIFFs (sorted by name), an HDF5 dataset by path (``"file.h5:/group/data"``,
    or a ``.h5`` file holding one 3-D dataset; needs h5py) and, with
    rosettasciio installed (``pip install 'tcscodec[em]'``), the EM formats
    it reads: DM3/DM4, EMD (Velox, NCEM), SER/EMI, hspy/zspy, blockfile,
    TVIPS, ...  ``signal`` picks one signal of a file that holds several
    image stacks (rosettasciio's order).

    Raises :class:`~tcscodec.TcsInputError` naming the file when it cannot
    be read, :class:`~tcscodec.TcsNotAMovieError` (a ``ValueError``) when it
    is not a T x H x W stack of grayscale frames, and
    :class:`~tcscodec.TcsDependencyError` when the reader a format needs is
    not installed.
    """
    from . import em_formats

    text = str(path)
    path = Path(path)
    if not path.exists():
        file, dataset = em_formats.split_dataset_path(text)
        if dataset is not None and file.is_file():
            return _guarded(file, lambda: em_formats.open_hdf5(file, dataset))
        raise TcsInputError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if path.is_dir() and suffix not in em_formats.RSCIIO_SUFFIXES:  # a .zspy store is a folder
        return _guarded(path, lambda: _open_folder(path))
    if suffix in TIFF_SUFFIXES:
        return _guarded(path, lambda: _open_tiff(path))
    if suffix == ".npy":
        return _guarded(path, lambda: _from_array(path, np.load(path, mmap_mode="r", allow_pickle=False)))
    if suffix in MRC_SUFFIXES:
        return _guarded(path, lambda: _open_mrc(path))
    if em_formats.is_plain_hdf5(path):
        return _guarded(path, lambda: em_formats.open_hdf5(path, None))
    if suffix in em_formats.RSCIIO_SUFFIXES or em_formats.rsciio_reads(suffix):
        return _guarded(path, lambda: em_formats.open_rsciio(path, signal=signal))
    hint = " (more EM formats with pip install 'tcscodec[em]')" if not em_formats.have_rsciio() else ""
    raise TcsInputError(f"{path}: unsupported input type {suffix!r} (use .tif, .npy, .mrc, a folder of TIFFs, "
                        f"file.h5:/dataset or an EM format rosettasciio reads: .dm3, .dm4, .emd, .ser, "
                        f".hspy, ...){hint}")


def _guarded(path, opener) -> MovieSource:
    """Run ``opener``; tcscodec's own errors pass, each library's other
    errors become a :class:`~tcscodec.TcsInputError` naming the file."""
    from .errors import TcsError

    try:
        return opener()
    except TcsError:
        raise
    except Exception as exc:
        suffix = Path(path).suffix.lower()
        raise TcsInputError(f"{path}: cannot read {suffix or 'input'}: {exc}") from exc


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


def write_movie(path, frames: Iterator[np.ndarray], shape, dtype, metadata=None, frame_step: int | None = 1) -> Path:
    """Stream ``frames`` (each H x W) into a TIFF stack or ``.npy`` at ``path``,
    atomically.  ``shape`` is (T, H, W).

    ``metadata`` (a ``.tcs`` file's user metadata) goes into TIFFs with its
    calibration (:func:`tcscodec.calibration.tiff_output`): uint8, uint16 and
    float32 movies as ImageJ hyperstacks with pixel size (``unit`` nm),
    frame interval (``finterval``, times ``frame_step`` for every
    ``frame_step``-th frame, none when ``frame_step`` is None: unevenly
    spaced frames) and the metadata as JSON in ``Info``; uint32 movies as
    plain TIFFs with resolution tags in centimetres and the metadata in the
    JSON description.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    dtype = np.dtype(dtype)
    with atomic_output(path) as tmp:
        if suffix in TIFF_SUFFIXES:
            import tifffile

            # ImageJ hyperstacks take uint8/uint16/float32 only.
            imagej = dtype in (np.uint8, np.uint16, np.float32)
            kwargs = calibration.tiff_output(metadata or {}, imagej, frame_step)
            with tifffile.TiffWriter(tmp, bigtiff=not imagej and np.prod(shape) * dtype.itemsize > 2**31,
                                     imagej=imagej) as tw:
                tw.write(frames, shape=tuple(shape), dtype=dtype, **kwargs)
        elif suffix == ".npy":
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=tuple(shape))
            for i, f in enumerate(frames):
                out[i] = f
            out.flush()
            del out
        else:
            raise TcsValueError(f"{path}: output must be .tif, .tiff or .npy")
    return path
