"""Input movie readers (TIFF, .npy, MRC, folders) and atomic movie output."""

import numpy as np
import pytest
import tifffile

from tcscodec import TcsInputError, TcsValueError
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
    np.save(tmp_path / "f64.npy", np.zeros((2, 3, 3)))
    with pytest.raises(TcsValueError, match="float64 frames are not supported"):
        open_movie(tmp_path / "f64.npy")
    np.save(tmp_path / "4d.npy", np.zeros((2, 3, 3, 3), np.uint8))
    with pytest.raises(TcsInputError, match="shape"):
        open_movie(tmp_path / "4d.npy")


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
