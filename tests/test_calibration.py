"""Calibration keys (tcscodec.calibration): unit conversions, and the pixel
size and frame rate carried out of a .tcs file into decoded TIFFs and
imageio's spacing."""

import json

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

import tcscodec
from tcscodec import calibration
from tcscodec.cli.main import main


def test_unit_conversions():
    assert calibration.length_to_A(0.067, "nm") == pytest.approx(0.67)
    assert calibration.length_to_A(8.17, "pm") == pytest.approx(0.0817)
    for micro in ("µm", "μm", "um", "micron", "\\u00B5m"):  # both micro signs, ImageJ's spellings
        assert calibration.length_to_A(0.02, micro) == pytest.approx(200.0), micro
    assert calibration.length_to_A(-0.5, "Å") == 0.5  # an axis running backwards
    assert calibration.inverse_length_to_inv_A(0.5, "1 / nm") == pytest.approx(0.05)
    assert calibration.inverse_length_to_inv_A(2.0, "nm^-1") == pytest.approx(0.2)
    assert calibration.time_to_s(2.5, "ms") == pytest.approx(0.0025)
    for value, unit in ((1.0, ""), (0.0, "nm"), (1.0, "eV"), (float("nan"), "nm"), (None, "s"), (1.0, None)):
        assert calibration.length_to_A(value, unit) is None and calibration.time_to_s(value, unit) is None


def test_from_axes():
    t = {"name": "Time", "scale": 0.8, "units": "s"}
    px = {"scale": 8.1728831922978511, "units": "pm"}
    assert calibration.from_axes(t, px, px) == {"pixel_size_A": pytest.approx(0.081728831922978511),
                                                "frame_rate_hz": pytest.approx(1.25)}
    # rectangular pixels, a reciprocal-space pattern, a non-time stack axis
    assert calibration.from_axes(None, {"scale": 2, "units": "nm"}, {"scale": 1, "units": "nm"}) == {
        "pixel_size_A": 10.0, "pixel_size_y_A": 20.0}
    energy = {"name": "Energy loss", "scale": 1.0, "offset": 300.0, "units": "eV"}
    assert calibration.from_axes(energy, {"scale": 0.5, "units": "1/nm"}, {"scale": 0.5, "units": "1/nm"}) == {
        "pixel_size_inv_A": pytest.approx(0.05),
        "frame_axis": {"name": "Energy loss", "scale": 1.0, "offset": 300.0, "units": "eV"}}
    # defaults say nothing; a TIA .ser diffraction scale of 4e16 "nm" is mislabelled 1/m
    plain = {"name": "z", "scale": 1.0, "units": ""}
    assert calibration.from_axes(plain, {"scale": 1.0, "units": ""}, {"scale": 1.0, "units": ""}) == {}
    assert calibration.from_axes(None, {"scale": 4.2e16, "units": "nm"}, {"scale": 4.2e16, "units": "nm"}) == {}


def test_spacing_and_tiff_keywords():
    assert calibration.spacing({}) is None
    assert calibration.spacing({"pixel_size_A": 0.67}) == (0.67, 0.67)
    assert calibration.spacing({"pixel_size_A": 1.0, "pixel_size_y_A": 2.0}) == (2.0, 1.0)
    assert calibration.spacing({"pixel_size_inv_A": 0.01}) == (0.01, 0.01)
    kw = calibration.tiff_output({"pixel_size_inv_A": 0.01, "frame_rate_hz": 50.0}, imagej=True, frame_step=2)
    assert kw["metadata"]["unit"] == "1/nm" and kw["resolution"] == pytest.approx((10.0, 10.0))
    assert kw["metadata"]["finterval"] == pytest.approx(0.04)
    assert json.loads(kw["metadata"]["Info"]) == {"pixel_size_inv_A": 0.01, "frame_rate_hz": 25.0}


@pytest.fixture(scope="module")
def calibrated_tcs(tmp_path_factory):
    frames = np.random.default_rng(4).integers(100, 900, (8, 32, 40), dtype=np.uint16)
    path = tmp_path_factory.mktemp("cal") / "m.tcs"
    tcscodec.write(path, frames, B=4, seed=2, tile=32,
                   metadata={"pixel_size_A": 0.67, "frame_rate_hz": 400.0, "detector": "K3"})
    return path


def test_decode_writes_calibrated_imagej_tiff(calibrated_tcs, tmp_path):
    runner = CliRunner()
    out = tmp_path / "d.tif"
    res = runner.invoke(main, ["decode", str(calibrated_tcs), "-o", str(out), "--decoder", "gap-tv", "-q"])
    assert res.exit_code == 0, res.output
    with tifffile.TiffFile(out) as tif:
        ij = tif.imagej_metadata
        assert tif.series[0].axes == "TYX" and tif.series[0].shape == (8, 32, 40)
        assert ij["unit"] == "nm" and ij["finterval"] == pytest.approx(0.0025)
        assert 10.0 / tif.pages[0].resolution[0] == pytest.approx(0.67, rel=1e-6)
        assert json.loads(ij["Info"]) == {"pixel_size_A": 0.67, "frame_rate_hz": 400.0, "detector": "K3"}
    # every second frame: twice the interval; re-encoding keeps the calibration
    res = runner.invoke(main, ["decode", str(calibrated_tcs), "-o", str(tmp_path / "e.tif"), "--decoder", "gap-tv",
                               "--frames", "0:8:2", "-q"])
    assert res.exit_code == 0, res.output
    with tifffile.TiffFile(tmp_path / "e.tif") as tif:
        assert tif.imagej_metadata["finterval"] == pytest.approx(0.005)
    res = runner.invoke(main, ["encode", str(tmp_path / "e.tif"), "-B", "2", "-q"])
    assert res.exit_code == 0, res.output
    with tcscodec.open(tmp_path / "e.tcs") as r:
        user = r.metadata()["user"]
    assert user["pixel_size_A"] == pytest.approx(0.67, rel=1e-6) and user["frame_rate_hz"] == pytest.approx(200.0)
    assert user["detector"] == "K3" and user["source"] == "e.tif"


def test_imageio_spacing(calibrated_tcs, tmp_path):
    iio = pytest.importorskip("imageio.v3")
    assert iio.improps(calibrated_tcs).spacing == (0.67, 0.67)
    assert iio.improps(calibrated_tcs, index=3).spacing == (0.67, 0.67)
    plain = tmp_path / "plain.tcs"
    tcscodec.write(plain, np.zeros((4, 16, 16), np.uint8), B=2)
    assert iio.improps(plain).spacing is None
