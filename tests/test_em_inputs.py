"""EM inputs (tcscodec.em_formats): files rosettasciio reads, HDF5 datasets by
path, their calibration, refusals of what is not a movie, and the files of
rosettasciio's own test data when a copy is named by TCSCODEC_EM_TESTDATA."""

import json
import os
import uuid
from pathlib import Path

import numpy as np
import pytest

import tcscodec
from tcscodec import TcsDependencyError, TcsInputError, TcsNotAMovieError, TcsValueError
from tcscodec import em_formats
from tcscodec.encoder import encode_group
from tcscodec.movies import open_movie

FRAMES = (np.arange(6 * 20 * 24) * 7 % 251).astype(np.uint16).reshape(6, 20, 24)


def _signal(data, frame_scale=0.0025, frame_units="s", px_nm=0.067, title="Au movie", navigate=True):
    """A rosettasciio signal dict as hyperspy hands it to a writer."""
    *T, H, W = data.shape
    axes = [{"name": "y", "size": H, "scale": px_nm, "offset": 0.0, "units": "nm", "navigate": False},
            {"name": "x", "size": W, "scale": px_nm, "offset": 0.0, "units": "nm", "navigate": False}]
    if T:
        axes.insert(0, {"name": "time", "size": T[0], "scale": frame_scale, "offset": 0.0, "units": frame_units,
                        "navigate": navigate})
    return {
        "data": data,
        "axes": axes,
        "metadata": {"General": {"title": title}, "Signal": {"signal_type": ""},
                     "Acquisition_instrument": {"TEM": {"beam_energy": 300.0, "magnification": 500000.0,
                                                        "Detector": {"Camera": {"name": "K3", "exposure": 0.002}}}}},
        "original_metadata": {}, "tmp_parameters": {}, "attributes": {"_lazy": False}, "learning_results": {},
        "models": {}, "package_info": {"name": "tcscodec-tests", "version": "0"},
    }


def write_velox(path, data, pixel_m=8.2e-12, exposure_s=0.8, detector="BM-Ceta", kv=300000):
    """A minimal Velox EMD file of a TEM image stack, laid out as Velox
    writes one (Version, Data/Image/<uuid>/Data as y x frame, Metadata as
    JSON bytes per frame), with the fields rosettasciio's reader uses."""
    h5py = pytest.importorskip("h5py")
    T = data.shape[0]
    meta = {
        "BinaryResult": {"PixelSize": {"width": repr(pixel_m), "height": repr(pixel_m)}, "PixelUnitX": "m",
                         "PixelUnitY": "m", "Offset": {"x": "0", "y": "0"}, "DetectorIndex": "0",
                         "Detector": detector},
        "Detectors": {"Detector-0": {"DetectorName": detector, "ExposureTime": repr(exposure_s)}},
        "Scan": {}, "Optics": {"AccelerationVoltage": str(kv)}, "Instrument": {"InstrumentClass": "Titan"},
        "Acquisition": {"AcquisitionStartDatetime": {"DateTime": "1575540224"}}, "CustomProperties": {},
    }
    raw = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    with h5py.File(path, "w") as f:
        f.create_dataset("Version", data=np.array([json.dumps({"format": "Velox", "version": "11"}).encode()]))
        g = f.create_group(f"Data/Image/{uuid.uuid4().hex}")
        g.create_dataset("Data", data=np.moveaxis(data, 0, -1), chunks=(*data.shape[1:], 1))
        g.create_dataset("Metadata", data=np.repeat(raw[:, None], T, axis=1))


@pytest.fixture
def rsciio():
    return pytest.importorskip("rsciio")


def _frames(m):
    return np.stack(list(m))


# -- rosettasciio formats ---------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["hspy", "zspy"])
def test_hyperspy_files_with_calibration(tmp_path, rsciio, fmt):
    if fmt == "zspy" and int(pytest.importorskip("zarr").__version__.split(".")[0]) >= 3:
        pytest.skip("rosettasciio's zspy needs zarr < 3")
    writer = pytest.importorskip(f"rsciio.{fmt}").file_writer
    path = tmp_path / f"movie.{fmt}"
    writer(str(path), _signal(FRAMES))
    with open_movie(path) as m:
        assert m.shape == FRAMES.shape and m.dtype == np.uint16
        assert np.array_equal(_frames(m), FRAMES)
        md = m.metadata
    assert md["pixel_size_A"] == pytest.approx(0.67, rel=1e-12)
    assert md["frame_rate_hz"] == pytest.approx(400.0, rel=1e-12)
    assert md["exposure_time_s"] == pytest.approx(0.002)
    assert (md["detector"], md["beam_energy_keV"], md["magnification"]) == ("K3", 300.0, 500000.0)
    assert md["title"] == "Au movie" and md["source_format"] == fmt.upper()


def test_ncem_emd_without_navigation_axes(tmp_path, rsciio):
    from rsciio.emd import file_writer

    path = tmp_path / "movie.emd"
    file_writer(str(path), _signal(FRAMES))  # NCEM EMD records no navigation: three signal axes
    with open_movie(path) as m:
        assert np.array_equal(_frames(m), FRAMES)
        assert m.metadata["pixel_size_A"] == pytest.approx(0.67, rel=1e-12)
        assert m.metadata["frame_rate_hz"] == pytest.approx(400.0, rel=1e-12)


def test_velox_emd_stack(tmp_path, rsciio):
    path = tmp_path / "velox.emd"
    write_velox(path, FRAMES, pixel_m=8.1728831922978511e-12, exposure_s=0.8)
    with open_movie(path) as m:
        assert np.array_equal(_frames(m), FRAMES)
        md = m.metadata
    assert md["pixel_size_A"] == pytest.approx(0.081728831922978511, rel=1e-9)
    assert md["frame_rate_hz"] == pytest.approx(1.25, rel=1e-9)
    assert md["exposure_time_s"] == pytest.approx(0.8)
    assert md["detector"] == "BM-Ceta" and md["beam_energy_keV"] == 300.0 and md["microscope"] == "Titan"


def test_non_time_frame_axis_is_kept(tmp_path, rsciio):
    from rsciio.hspy import file_writer

    sig = _signal(FRAMES, frame_scale=2.5, frame_units="nm")
    sig["axes"][0]["name"] = "defocus"
    file_writer(str(tmp_path / "focal.hspy"), sig)
    with open_movie(tmp_path / "focal.hspy") as m:
        assert "frame_rate_hz" not in m.metadata
        assert m.metadata["frame_axis"] == {"name": "defocus", "scale": 2.5, "offset": 0.0, "units": "nm"}


def test_lazy_frames_stream_in_blocks(tmp_path, rsciio):
    """A lazily read stack is computed one chunk of frames at a time, never whole."""
    da = pytest.importorskip("dask.array")
    from rsciio.hspy import file_writer

    big = np.random.default_rng(1).integers(0, 900, (40, 16, 16), dtype=np.uint16)
    file_writer(str(tmp_path / "long.hspy"), _signal(big), chunks=(5, 16, 16))
    with open_movie(tmp_path / "long.hspy") as m:
        blocks = m._frame
        assert isinstance(blocks.data, da.Array)
        assert list(blocks.bounds) == list(range(0, 45, 5))
        held = []
        for i in range(len(m)):
            assert np.array_equal(m.frame(i), big[i])
            held.append((blocks.cache[0], blocks.cache[1], blocks.cache[2].shape))
    assert held == [(t - t % 5, t - t % 5 + 5, (5, 16, 16)) for t in range(40)]


def test_several_image_stacks_need_a_signal(tmp_path, rsciio, monkeypatch):
    a, b = FRAMES, FRAMES[::-1].copy()
    signals = [_signal(a, title="HAADF"), _signal(b, title="DF4"), _signal(FRAMES[0])]
    plugin = {"name": "Fake", "file_extensions": ["fake"], "api": "fake"}
    monkeypatch.setattr(em_formats, "_read_signals", lambda path: (plugin, signals))
    path = tmp_path / "two.emd"
    path.write_bytes(b"")
    with pytest.raises(TcsValueError, match=r"holds 2 image stacks .*'HAADF': 6 x 20 x 24 uint16.*'DF4'.*"
                                            r"choose one with signal=N \(--signal N\)"):
        open_movie(path)
    with open_movie(path, signal=1) as m:
        assert np.array_equal(_frames(m), b) and m.metadata["title"] == "DF4"
        assert m.metadata["source_signal"] == 1 and m.name == "two.emd (signal 1)"
    with pytest.raises(TcsNotAMovieError, match=r"signal 2: found a single 2-D image, 20 x 24 uint16"):
        open_movie(path, signal=2)
    with pytest.raises(TcsValueError, match="signal 5 does not exist"):
        open_movie(path, signal=5)


def test_spectrum_image_and_2d_image_are_refused(tmp_path, rsciio):
    from rsciio.hspy import file_writer

    si = _signal(np.zeros((4, 5, 30), np.uint16))
    si["axes"] = [{"name": "y", "size": 4, "scale": 1.0, "units": "nm", "navigate": True},
                  {"name": "x", "size": 5, "scale": 1.0, "units": "nm", "navigate": True},
                  {"name": "Energy", "size": 30, "scale": 5.0, "units": "eV", "navigate": False}]
    file_writer(str(tmp_path / "si.hspy"), si)
    with pytest.raises(TcsNotAMovieError) as err:
        open_movie(tmp_path / "si.hspy")
    msg = str(err.value)
    assert "4 x 5 x 30 uint16" in msg and "Energy 30 eV (signal)" in msg and "y 4 nm (navigation)" in msg
    assert "expected a T x H x W stack of grayscale frames" in msg
    assert isinstance(err.value, ValueError)

    image = _signal(FRAMES[0])
    file_writer(str(tmp_path / "image.hspy"), image)
    with pytest.raises(TcsNotAMovieError, match=r"image\.hspy: found a single 2-D image, 20 x 24 uint16 \(axes y, x\)"):
        open_movie(tmp_path / "image.hspy")


def test_missing_rosettasciio_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setattr(em_formats, "have_rsciio", lambda: False)
    (tmp_path / "movie.dm4").write_bytes(b"\0" * 64)
    with pytest.raises(TcsDependencyError, match=r"movie\.dm4: reading \.dm4 files needs rosettasciio: "
                                                 r"pip install 'tcscodec\[em\]'"):
        open_movie(tmp_path / "movie.dm4")
    (tmp_path / "movie.xyz").write_bytes(b"")
    with pytest.raises(TcsInputError, match=r"unsupported input type '\.xyz'.*pip install 'tcscodec\[em\]'"):
        open_movie(tmp_path / "movie.xyz")


def test_float64_and_int64_stacks_convert(tmp_path, rsciio):
    from rsciio.hspy import file_writer

    f64 = FRAMES.astype(np.float64) / 3
    file_writer(str(tmp_path / "f.hspy"), _signal(f64))
    with open_movie(tmp_path / "f.hspy") as m:
        assert m.dtype == np.float32
        assert np.array_equal(_frames(m), f64.astype(np.float32))
    file_writer(str(tmp_path / "i.hspy"), _signal(FRAMES.astype(np.int64) * 1000))
    with open_movie(tmp_path / "i.hspy") as m:
        assert m.dtype == np.uint32 and np.array_equal(_frames(m), FRAMES.astype(np.uint32) * 1000)
    file_writer(str(tmp_path / "big.hspy"), _signal(FRAMES.astype(np.int64) << 33))
    with open_movie(tmp_path / "big.hspy") as m, pytest.raises(TcsValueError, match="more than uint32 holds"):
        m.frame(1)


def test_tiff_calibration_through_rosettasciio(tmp_path, rsciio):
    """TIFFs whose calibration only rosettasciio reads (DigitalMicrograph, FEI
    tags) get it from its TIFF reader; here an ImageJ stack it also reads."""
    import tifffile

    tifffile.imwrite(tmp_path / "ij.tif", FRAMES, imagej=True, resolution=(1 / 0.0125, 1 / 0.0125),
                     metadata={"axes": "TYX", "unit": "micron"})
    assert em_formats.tiff_calibration(tmp_path / "ij.tif") == {"pixel_size_A": pytest.approx(125.0)}
    tifffile.imwrite(tmp_path / "plain.tif", FRAMES, imagej=True)
    assert em_formats.tiff_calibration(tmp_path / "plain.tif") == {}
    (tmp_path / "bad.tif").write_bytes(b"II*\0garbage")
    assert em_formats.tiff_calibration(tmp_path / "bad.tif") == {}


# -- HDF5 datasets by path ---------------------------------------------------------------------------
def test_hdf5_dataset_by_path(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("entry/data/frames", data=FRAMES, chunks=(1, 20, 24))
        d.attrs["pixel_size_A"] = 1.25
        d.attrs["frame_rate_hz"] = 1000.0
        f.create_dataset("entry/data/dark", data=FRAMES[0])
        f.create_dataset("entry/other", data=FRAMES[:3])
    with open_movie(f"{path}:/entry/data/frames") as m:
        assert m.name == "scan.h5:/entry/data/frames" and m.path == path
        assert np.array_equal(_frames(m), FRAMES)
        assert m.metadata == {"pixel_size_A": 1.25, "frame_rate_hz": 1000.0}
    with pytest.raises(TcsNotAMovieError, match=r"scan\.h5:/entry/data/dark: found a single 2-D image, 20 x 24"):
        open_movie(f"{path}:/entry/data/dark")
    with pytest.raises(TcsInputError, match=r":/entry/nope is not in the file; datasets: /entry/data/dark"):
        open_movie(f"{path}:/entry/nope")
    with pytest.raises(TcsInputError, match="is a group, not a dataset"):
        open_movie(f"{path}:/entry/data")
    with pytest.raises(TcsValueError, match=r"holds 2 3-D datasets.*Name one as scan\.h5:/path/to/dataset"):
        open_movie(path)
    with h5py.File(tmp_path / "one.h5", "w") as f:
        f.create_dataset("movie", data=FRAMES)
    with open_movie(tmp_path / "one.h5") as m:  # a single 3-D dataset needs no path
        assert np.array_equal(_frames(m), FRAMES)


def test_split_dataset_path():
    assert em_formats.split_dataset_path("d/a.H5:/x/y") == (Path("d/a.H5"), "/x/y")
    assert em_formats.split_dataset_path("d/a.nxs:/entry") == (Path("d/a.nxs"), "/entry")
    assert em_formats.split_dataset_path("d/a.h5") == (Path("d/a.h5"), None)
    assert em_formats.split_dataset_path("C:/data/a.tif") == (Path("C:/data/a.tif"), None)


def test_encode_cli_from_hdf5_and_hspy(tmp_path, rsciio):
    h5py = pytest.importorskip("h5py")
    from click.testing import CliRunner

    from rsciio.hspy import file_writer

    from tcscodec.cli.main import main

    with h5py.File(tmp_path / "scan.h5", "w") as f:
        f.create_dataset("entry/frames", data=FRAMES)
    file_writer(str(tmp_path / "m.hspy"), _signal(FRAMES))
    runner = CliRunner()
    res = runner.invoke(main, ["encode", f"{tmp_path / 'scan.h5'}:/entry/frames", "-B", "3", "--seed", "9",
                               "--quantize", "1", "-q"])
    assert res.exit_code == 0, res.output
    with tcscodec.open(tmp_path / "scan.tcs") as r:  # default output beside the HDF5 file
        assert r.metadata()["user"]["source"] == "scan.h5:/entry/frames"
        assert np.array_equal(r.measurements(1), encode_group(FRAMES[3:6], 9, 3))
    res = runner.invoke(main, ["encode", str(tmp_path / "m.hspy"), "-B", "2", "--meta", "dose_e_per_A2=1.5", "-q"])
    assert res.exit_code == 0, res.output
    with tcscodec.open(tmp_path / "m.tcs") as r:
        user = r.metadata()["user"]
    assert user["pixel_size_A"] == pytest.approx(0.67, rel=1e-12) and user["frame_rate_hz"] == pytest.approx(400)
    assert user["dose_e_per_A2"] == 1.5 and user["source"] == "m.hspy" and user["detector"] == "K3"


# -- rosettasciio's own test data, where a copy is at hand -----------------------------------------------
TESTDATA = os.environ.get("TCSCODEC_EM_TESTDATA")
_CALIBRATION = ("pixel_size_A", "pixel_size_y_A", "pixel_size_inv_A", "frame_rate_hz", "exposure_time_s", "detector",
                "beam_energy_keV", "frame_axis")


@pytest.mark.slow
@pytest.mark.skipif(not TESTDATA, reason="set TCSCODEC_EM_TESTDATA to a copy of rosettasciio's tests/data")
def test_rosettasciio_test_data_encode_with_calibration(tmp_path, rsciio):
    """Every file of rosettasciio's test data that opens as an image stack
    encodes; its calibration comes back from the .tcs file and its
    measurements are exact.  Everything else is refused with a TcsError."""
    import warnings

    rsciio.set_log_level("ERROR")
    encoded, refused = [], []
    for path in sorted(Path(TESTDATA).rglob("*")):
        if path.is_dir() and path.suffix != ".zspy" or any(p.suffix == ".zspy" for p in path.parents):
            continue
        if path.suffix.lower() in (".txt", ".csv", ".json", ".xml", ".zip", ".gz", ".npy"):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                with open_movie(path) as movie:
                    frames = np.stack(list(movie))
            except tcscodec.TcsError as exc:
                refused.append((path, exc))
                continue
        out = tmp_path / "x.tcs"
        tcscodec.write(out, frames, B=2, seed=3, metadata=movie.metadata)
        with tcscodec.open(out) as r:
            user = r.metadata()["user"]
            assert np.array_equal(r.measurements(0), encode_group(frames[:2], 3, 2)), path
        assert {k: user.get(k) for k in _CALIBRATION} == {k: movie.metadata.get(k) for k in _CALIBRATION}, path
        encoded.append(path)
    print(f"\n{len(encoded)} image stacks encoded, {len(refused)} files refused")
    assert encoded


def test_encode_cli_refuses_non_movies(tmp_path):
    import tifffile
    from click.testing import CliRunner

    from tcscodec.cli.main import main

    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((256, 256, 3), np.uint8))
    res = CliRunner().invoke(main, ["encode", str(tmp_path / "rgb.tif"), "-o", str(tmp_path / "x.tcs")])
    assert res.exit_code == 1
    assert "found an RGB(A) TIFF, 256 x 256 x 3 uint8 (axes YXS)" in res.output
    assert "expected a T x H x W stack of grayscale frames" in res.output
    np.save(tmp_path / "image.npy", np.zeros((64, 64), np.uint16))
    res = CliRunner().invoke(main, ["encode", str(tmp_path / "image.npy"), "-o", str(tmp_path / "x.tcs")])
    assert res.exit_code == 1 and "found a single 2-D image, 64 x 64 uint16" in res.output
    assert not (tmp_path / "x.tcs").exists()
