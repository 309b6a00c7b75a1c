"""tcscodec.rsciio: .tcs files in rosettasciio's signal format, and loaded by
hyperspy (eagerly and lazily) when hyperspy is installed."""

import numpy as np
import pytest

import tcscodec
import tcscodec.rsciio as tcs_rsciio

META = {"pixel_size_A": 0.67, "frame_rate_hz": 400.0, "detector": "K3", "beam_energy_keV": 300.0,
        "exposure_time_s": 0.002, "title": "Au on carbon"}


@pytest.fixture(scope="module")
def movie(tmp_path_factory):
    frames = np.random.default_rng(5).integers(50, 1200, (6, 24, 28), dtype=np.uint16)
    path = tmp_path_factory.mktemp("rsciio") / "movie.tcs"
    tcscodec.write(path, frames, B=3, seed=11, tile=16, metadata=META)
    with tcscodec.open(path, decoder="gap-tv") as r:
        decoded = r.read()
    return path, decoded


def test_file_reader_signal_dict(movie):
    path, decoded = movie
    (sig,) = tcs_rsciio.file_reader(path, decoder="gap-tv")
    assert isinstance(sig["data"], np.ndarray) and np.array_equal(sig["data"], decoded)
    t, y, x = sig["axes"]
    assert (t["name"], t["size"], t["units"], t["navigate"]) == ("time", 6, "s", True)
    assert t["scale"] == pytest.approx(0.0025)
    for a, n in ((y, 24), (x, 28)):
        assert a["size"] == n and a["units"] == "nm" and a["scale"] == pytest.approx(0.067) and not a["navigate"]
    md = sig["metadata"]
    assert md["General"] == {"title": "Au on carbon", "original_filename": "movie.tcs"}
    assert md["Acquisition_instrument"]["TEM"] == {"beam_energy": 300.0,
                                                   "Detector": {"Camera": {"name": "K3", "exposure": 0.002}}}
    om = sig["original_metadata"]
    assert om["B"] == 3 and om["mask_seed"] == 11 and om["user"] == META and om["shape"] == [6, 24, 28]


def test_file_reader_lazy(movie):
    da = pytest.importorskip("dask.array")
    path, decoded = movie
    (sig,) = tcs_rsciio.file_reader(path, lazy=True, decoder="gap-tv")
    data = sig["data"]
    assert isinstance(data, da.Array) and data.chunks == ((3, 3), (16, 8), (16, 12))
    assert np.array_equal(data[3:6].compute(scheduler="threads"), decoded[3:6])
    (sig,) = tcs_rsciio.file_reader(path, lazy=True, chunks=(1, 24, 28), decoder="gap-tv")
    assert sig["data"].chunks[0] == (1,) * 6


def test_axes_without_calibration():
    axes = tcs_rsciio.signal_axes((4, 5, 6), {})
    assert [(a["name"], a["scale"], a["units"], a["navigate"]) for a in axes] == [
        ("frame", 1.0, "", True), ("y", 1.0, "", False), ("x", 1.0, "", False)]
    axes = tcs_rsciio.signal_axes((4, 5, 6), {"pixel_size_inv_A": 0.01,
                                              "frame_axis": {"name": "defocus", "scale": 2.0, "units": "nm"}})
    assert (axes[0]["name"], axes[0]["scale"], axes[0]["units"]) == ("defocus", 2.0, "nm")
    assert axes[1]["units"] == "1/nm" and axes[1]["scale"] == pytest.approx(0.1)


def test_hyperspy_load(movie):
    hs = pytest.importorskip("hyperspy.api")
    path, decoded = movie
    import inspect

    import hyperspy.io

    # hyperspy >= 2.4 names it file_format (reader= still works, deprecated)
    key = "file_format" if "file_format" in inspect.getsource(hyperspy.io.load) else "reader"
    s = hs.load(path, decoder="gap-tv", **{key: tcs_rsciio})
    assert s.data.shape == (6, 24, 28) and np.array_equal(s.data, decoded)
    assert s.axes_manager.signal_dimension == 2 and s.axes_manager.navigation_shape == (6,)
    assert s.axes_manager["x"].scale == pytest.approx(0.067) and s.axes_manager["x"].units == "nm"
    assert s.axes_manager["time"].scale == pytest.approx(0.0025)
    assert s.metadata.General.title == "Au on carbon"
    assert s.metadata.Acquisition_instrument.TEM.beam_energy == 300.0
    lazy = hs.load(path, lazy=True, decoder="gap-tv", **{key: tcs_rsciio})
    assert lazy._lazy and np.array_equal(lazy.inav[4].data.compute(), decoded[4])
