"""The napari reader plugin, through npe2's Python API (no napari, no display):
the manifest shipped in the package, its reader contribution for *.tcs, and
the layer data it returns (a lazy dask array, contrast limits from one
decoded group, the pixel size as the layer's scale)."""

from importlib import resources

import numpy as np
import pytest

import tcscodec
from tcscodec import napari_reader

npe2 = pytest.importorskip("npe2")
da = pytest.importorskip("dask.array")


@pytest.fixture(scope="module")
def movie(tmp_path_factory):
    frames = np.random.default_rng(6).integers(100, 3000, (9, 24, 20), dtype=np.uint16)
    path = tmp_path_factory.mktemp("napari") / "movie.tcs"
    tcscodec.write(path, frames, B=4, seed=3, tile=16, metadata={"pixel_size_A": 0.67, "frame_rate_hz": 400.0})
    return path


@pytest.fixture
def plugin_manager():
    """npe2's plugin manager (the one commands execute through) holding the
    manifest shipped in the package, registered from the file unless the
    installed entry point has brought it already."""
    pm = npe2.PluginManager.instance()
    try:
        pm.get_manifest("tcscodec")
    except KeyError:
        pm.register(npe2.PluginManifest.from_file(resources.files("tcscodec") / "napari.yaml"))
    return pm


def test_manifest_declares_the_reader():
    plugin_manager = npe2.PluginManager()
    plugin_manager.register(npe2.PluginManifest.from_file(resources.files("tcscodec") / "napari.yaml"))
    readers = list(plugin_manager.iter_compatible_readers(["a/movie.tcs"]))
    assert [r.command for r in readers] == ["tcscodec.get_reader"]
    assert not list(plugin_manager.iter_compatible_readers(["a/movie.tif"]))
    assert plugin_manager.get_command("tcscodec.get_reader").python_name == "tcscodec.napari_reader:get_reader"


def test_reader_returns_a_lazy_layer(plugin_manager, movie, monkeypatch):
    decoded_groups = []
    real = tcscodec.TcsReader.decode_group

    def counting(self, group, **kw):
        decoded_groups.append(group)
        return real(self, group, **kw)

    monkeypatch.setattr(tcscodec.TcsReader, "decode_group", counting)
    (rdr,) = plugin_manager.iter_compatible_readers([str(movie)])
    read = rdr.exec(kwargs={"path": [str(movie)], "stack": False})
    assert callable(read) and read.__name__ == "read_tcs"
    (layer,) = read([str(movie)], stack=False)  # as napari calls it
    data, kwargs, kind = layer
    assert kind == "image" and isinstance(data, da.Array)
    assert data.shape == (9, 24, 20) and data.dtype == np.uint16
    # opening decoded one group only (the middle one, for the contrast limits)
    assert sorted(set(decoded_groups)) == [1]
    with tcscodec.open(movie) as r:
        group = r[4:8]
        assert kwargs["contrast_limits"] == [float(group.min()), float(group.max())]
        # a frame shown by the slider is exactly the reader's frame, and only its group decodes
        decoded_groups.clear()
        assert np.array_equal(np.asarray(data[8]), r[8])
    assert set(decoded_groups) == {2}
    assert kwargs["scale"] == pytest.approx((1.0, 0.067, 0.067))
    assert kwargs["name"] == "movie" and kwargs["metadata"]["tcs"]["user"]["frame_rate_hz"] == 400.0


def test_get_reader_declines_other_paths(movie):
    assert napari_reader.get_reader("x.tif") is None
    assert napari_reader.get_reader([str(movie), str(movie)]) is None
    assert napari_reader.get_reader([str(movie)]) is napari_reader.read_tcs


def test_installed_entry_point(movie):
    """The napari.manifest entry point of an installed tcscodec finds the same manifest."""
    from importlib.metadata import entry_points

    eps = [e for e in entry_points(group="napari.manifest") if e.name == "tcscodec"]
    if not eps:
        pytest.skip("tcscodec is installed without its napari.manifest entry point (reinstall it)")
    assert eps[0].value == "tcscodec:napari.yaml"
    pm = npe2.PluginManager()
    pm.discover(include_npe1=False)
    assert pm.get_manifest("tcscodec").contributions.readers[0].filename_patterns == ["*.tcs"]


def test_the_viewer_does_not_estimate_motion(tmp_path, monkeypatch):
    # 5 groups: enough for the motion gate, whose estimate would read every group on opening
    frames = np.random.default_rng(7).integers(100, 3000, (20, 24, 20), dtype=np.uint16)
    path = tmp_path / "long.tcs"
    tcscodec.write(path, frames, B=4, seed=3, tile=16)

    def refuse(self):
        raise AssertionError("the viewer estimated the drift")

    monkeypatch.setattr(tcscodec.TcsReader, "motion", refuse)
    from tcscodec.napari_reader import read_tcs

    ((data, _, _),) = read_tcs(str(path))
    with tcscodec.open(path, motion=False) as r:
        assert np.array_equal(np.asarray(data[9]), r[9])
