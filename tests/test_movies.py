"""Input movie readers (TIFF, .npy, MRC, folders), their calibration, refusals of
what is not a movie, and atomic movie output carrying calibration."""

import json

import numpy as np
import pytest
import tifffile

from tcscodec import TcsError, TcsInputError, TcsNotAMovieError, TcsValueError
from tcscodec.movies import open_movie, write_movie


@pytest.fixture
def frames():
    return np.random.default_rng(0).integers(0, 3000, (7, 19, 23), dtype=np.uint16)


def test_tiff_stack(tmp_path, frames):
    tifffile.imwrite(tmp_path / "m.tif", frames, imagej=True)
    with open_movie(tmp_path / "m.tif") as m:
        assert m.shape == frames.shape and m.dtype == np.uint16 and len(m) == 7
        assert np.array_equal(np.stack(list(m)), frames)


def test_npy_mrc_and_folder(tmp_path, frames):
    mrcfile = pytest.importorskip("mrcfile")
    np.save(tmp_path / "m.npy", frames)
    with mrcfile.new(tmp_path / "m.mrc") as mrc:
        mrc.set_data(frames.astype(np.int16))
        mrc.voxel_size = 0.67
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        tifffile.imwrite(folder / f"f{i:03d}.tif", f)
    for path in (tmp_path / "m.npy", tmp_path / "m.mrc", folder):
        with open_movie(path) as m:
            assert m.shape == frames.shape and m.dtype == np.uint16, path
            assert np.array_equal(np.stack(list(m)), frames), path
    with open_movie(tmp_path / "m.mrc") as m:
        assert m.metadata["pixel_size_A"] == pytest.approx(0.67, abs=1e-3)


def test_float16_becomes_float32(tmp_path):
    np.save(tmp_path / "h.npy", np.ones((2, 4, 4), np.float16))
    with open_movie(tmp_path / "h.npy") as m:
        assert m.dtype == np.float32 and m.frame(0).dtype == np.float32


def test_float64_rounds_to_float32_and_bool_to_uint8(tmp_path):
    f64 = np.random.default_rng(2).random((3, 5, 6)) * 1000
    np.save(tmp_path / "d.npy", f64)
    with open_movie(tmp_path / "d.npy") as m:
        assert m.dtype == np.float32 and np.array_equal(np.stack(list(m)), f64.astype(np.float32))
    np.save(tmp_path / "b.npy", f64 > 500)
    with open_movie(tmp_path / "b.npy") as m:
        assert m.dtype == np.uint8 and np.array_equal(np.stack(list(m)), (f64 > 500).astype(np.uint8))


def test_negative_signed_input_is_refused(tmp_path):
    np.save(tmp_path / "s.npy", np.full((2, 4, 4), -3, np.int16))
    with open_movie(tmp_path / "s.npy") as m, pytest.raises(TcsValueError, match="frame 0 has negative values"):
        m.frame(0)


def test_unreadable_inputs(tmp_path):
    with pytest.raises(TcsInputError, match="no such file"):
        open_movie(tmp_path / "missing.tif")
    (tmp_path / "bad.tif").write_bytes(b"garbage" * 10)
    with pytest.raises(TcsInputError, match=r"bad\.tif: cannot read \.tif"):
        open_movie(tmp_path / "bad.tif")
    (tmp_path / "x.avi").write_bytes(b"")
    with pytest.raises(TcsInputError, match="unsupported input type '.avi'"):
        open_movie(tmp_path / "x.avi")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TcsInputError, match="no .tif"):
        open_movie(tmp_path / "empty")
    np.save(tmp_path / "c64.npy", np.zeros((2, 3, 3), np.complex64))
    with pytest.raises(TcsNotAMovieError, match=r"c64\.npy: frames of complex dtype complex64"):
        open_movie(tmp_path / "c64.npy")


@pytest.mark.parametrize("suffix", [".tif", ".npy"])
def test_write_movie_streams_and_is_atomic(tmp_path, frames, suffix):
    out = tmp_path / f"o{suffix}"
    write_movie(out, iter(frames), frames.shape, frames.dtype)
    got = tifffile.imread(out) if suffix == ".tif" else np.load(out)
    assert np.array_equal(got, frames)

    def failing():
        yield frames[0]
        raise RuntimeError("decoder crashed")

    out.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        write_movie(out, failing(), frames.shape, frames.dtype)
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


# -- refusals: what is not a T x H x W stack of grayscale frames ------------------------------------------
def _refusal(path) -> str:
    with pytest.raises(TcsNotAMovieError) as err:
        open_movie(path)
    assert isinstance(err.value, ValueError) and isinstance(err.value, TcsError)
    msg = str(err.value)
    assert msg.startswith(str(path)) and "expected a T x H x W stack of grayscale frames" in msg, msg
    return msg


def test_rgb_tiffs_are_refused(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb)  # the RGB TIFF: once 256 frames of 256 x 3
    assert "found an RGB(A) TIFF, 256 x 256 x 3 uint8 (axes YXS)" in _refusal(tmp_path / "rgb.tif")
    tifffile.imwrite(tmp_path / "rgba.tif", np.zeros((64, 48, 4), np.uint8), photometric="rgb")
    assert "64 x 48 x 4 uint8 (axes YXS)" in _refusal(tmp_path / "rgba.tif")
    tifffile.imwrite(tmp_path / "planar.tif", np.zeros((3, 64, 48), np.uint16), photometric="rgb",
                     planarconfig="separate")
    assert "3 x 64 x 48 uint16 (axes SYX)" in _refusal(tmp_path / "planar.tif")
    tifffile.imwrite(tmp_path / "pal.tif", np.zeros((32, 32), np.uint8), photometric="palette",
                     colormap=np.zeros((3, 256), np.uint16))
    assert "palette-colour TIFF" in _refusal(tmp_path / "pal.tif")


def test_2d_and_other_shapes_are_refused(tmp_path):
    tifffile.imwrite(tmp_path / "image.tif", np.zeros((40, 50), np.uint16))
    assert "found a single 2-D image, 40 x 50 uint16 (axes YX)" in _refusal(tmp_path / "image.tif")
    np.save(tmp_path / "image.npy", np.zeros((40, 50), np.float32))
    assert "found a single 2-D image, 40 x 50 float32" in _refusal(tmp_path / "image.npy")
    np.save(tmp_path / "rgb.npy", np.zeros((40, 50, 3), np.uint8))
    assert "looks like an RGB colour image of 40 x 50 pixels" in _refusal(tmp_path / "rgb.npy")
    np.save(tmp_path / "4d.npy", np.zeros((2, 3, 8, 8), np.uint8))
    assert "found 4-D data, 2 x 3 x 8 x 8 uint8" in _refusal(tmp_path / "4d.npy")
    np.save(tmp_path / "empty.npy", np.zeros((0, 8, 8), np.uint8))
    assert "found an empty stack" in _refusal(tmp_path / "empty.npy")
    folder = tmp_path / "rgbframes"
    folder.mkdir()
    tifffile.imwrite(folder / "f0.tif", np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(TcsNotAMovieError, match=r"f0\.tif: found 20 x 20 x 3 uint8 \(axes YXS\); a folder input "
                                                r"needs one 2-D grayscale frame per file"):
        open_movie(folder)
    # three frames are a movie, not colour, when nothing says colour
    tifffile.imwrite(tmp_path / "three.tif", np.zeros((3, 20, 20), np.uint16), imagej=True)
    with open_movie(tmp_path / "three.tif") as m:
        assert m.shape == (3, 20, 20)


# -- calibration in -------------------------------------------------------------------------------
def test_tiff_calibration_imagej(tmp_path, frames):
    tifffile.imwrite(tmp_path / "ij.tif", frames, imagej=True, resolution=(1 / 0.067, 1 / 0.067),
                     metadata={"axes": "TYX", "unit": "nm", "finterval": 0.0025})
    with open_movie(tmp_path / "ij.tif") as m:
        assert m.metadata["pixel_size_A"] == pytest.approx(0.67, rel=1e-6)
        assert m.metadata["frame_rate_hz"] == pytest.approx(400.0, rel=1e-12)
    tifffile.imwrite(tmp_path / "um.tif", frames, imagej=True, resolution=(50.0, 25.0),
                     metadata={"axes": "TYX", "unit": "micron", "fps": 20.0})
    with open_movie(tmp_path / "um.tif") as m:  # 0.02 x 0.04 µm pixels, 20 frames/s
        assert m.metadata["pixel_size_A"] == pytest.approx(200.0, rel=1e-9)
        assert m.metadata["pixel_size_y_A"] == pytest.approx(400.0, rel=1e-9)
        assert m.metadata["frame_rate_hz"] == pytest.approx(20.0)


def test_tiff_calibration_ome_and_centimetres(tmp_path, frames):
    tifffile.imwrite(tmp_path / "ome.tif", frames, ome=True,
                     metadata={"axes": "TYX", "PhysicalSizeX": 0.125, "PhysicalSizeXUnit": "nm",
                               "PhysicalSizeY": 0.125, "PhysicalSizeYUnit": "nm", "TimeIncrement": 2.5,
                               "TimeIncrementUnit": "ms"})
    with open_movie(tmp_path / "ome.tif") as m:
        assert m.metadata == {"pixel_size_A": pytest.approx(1.25), "frame_rate_hz": pytest.approx(400.0)}
    tifffile.imwrite(tmp_path / "cm.tif", frames, resolution=(1e7, 1e7), resolutionunit="CENTIMETER",
                     photometric="minisblack")
    with open_movie(tmp_path / "cm.tif") as m:  # 1e7 pixels per cm: 10 Å
        assert m.metadata == {"pixel_size_A": pytest.approx(10.0)}
    tifffile.imwrite(tmp_path / "dpi.tif", frames, resolution=(72, 72), resolutionunit="INCH",
                     photometric="minisblack")
    with open_movie(tmp_path / "dpi.tif") as m:  # screen dpi is not a pixel size
        assert m.metadata == {}


def test_mrc_fei_extended_header(tmp_path, frames):
    mrcfile = pytest.importorskip("mrcfile")
    from mrcfile.dtypes import get_ext_header_dtype

    ext = np.zeros(len(frames), get_ext_header_dtype(b"FEI1"))
    ext["Metadata size"] = ext.dtype.itemsize
    ext["HT"] = 300000.0
    ext["Dose"] = 2.5e20  # e/m^2
    ext["Integration time"] = 0.004
    ext["Camera name"] = b"Falcon 4i"
    with mrcfile.new(tmp_path / "fei.mrc") as mrc:
        mrc.set_data(frames)
        mrc.voxel_size = 0.83
        mrc.set_extended_header(ext)
        mrc.header.exttyp = b"FEI1"
    with open_movie(tmp_path / "fei.mrc") as m:
        md = m.metadata
    assert md["pixel_size_A"] == pytest.approx(0.83, abs=1e-6)
    assert md["beam_energy_keV"] == 300.0 and md["dose_e_per_A2"] == pytest.approx(2.5)
    assert md["exposure_time_s"] == pytest.approx(0.004) and md["detector"] == "Falcon 4i"


# -- calibration out ------------------------------------------------------------------------------
def test_write_movie_carries_calibration(tmp_path, frames):
    meta = {"pixel_size_A": 0.67, "frame_rate_hz": 400.0, "detector": "K3", "note": [1, 2]}
    write_movie(tmp_path / "o.tif", iter(frames), frames.shape, frames.dtype, metadata=meta)
    with tifffile.TiffFile(tmp_path / "o.tif") as tif:
        ij = tif.imagej_metadata
        assert ij["unit"] == "nm" and ij["finterval"] == pytest.approx(0.0025)
        assert json.loads(ij["Info"]) == meta
        assert 10.0 / tif.pages[0].resolution[0] == pytest.approx(0.67, rel=1e-6)
    with open_movie(tmp_path / "o.tif") as m:  # a decoded TIFF encodes again with its metadata
        assert m.metadata["detector"] == "K3" and m.metadata["note"] == [1, 2]
        assert m.metadata["pixel_size_A"] == pytest.approx(0.67, rel=1e-6)
        assert m.metadata["frame_rate_hz"] == pytest.approx(400.0)
    # every 3rd frame: three times the interval
    write_movie(tmp_path / "s.tif", iter(frames[::3]), frames[::3].shape, frames.dtype, metadata=meta, frame_step=3)
    with open_movie(tmp_path / "s.tif") as m:
        assert m.metadata["frame_rate_hz"] == pytest.approx(400.0 / 3)
    # unevenly spaced frames: no frame rate at all
    write_movie(tmp_path / "u.tif", iter(frames[:2]), frames[:2].shape, frames.dtype, metadata=meta, frame_step=None)
    with open_movie(tmp_path / "u.tif") as m:
        assert "frame_rate_hz" not in m.metadata and m.metadata["detector"] == "K3"
    # uint32 is no ImageJ type: resolution in centimetres, metadata in the JSON description
    big = frames.astype(np.uint32)[:3] * 70000
    write_movie(tmp_path / "w.tif", iter(big), big.shape, big.dtype, metadata=meta)
    with open_movie(tmp_path / "w.tif") as m:
        assert m.shape == big.shape and np.array_equal(np.stack(list(m)), big)
        assert m.metadata["pixel_size_A"] == pytest.approx(0.67, rel=1e-6) and m.metadata["detector"] == "K3"
