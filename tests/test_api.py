"""tcscodec.open / tcscodec.write, the streaming writer and the imageio plugin."""

import numpy as np
import pytest

import tcscodec
from tcscodec import TcsInputError, TcsValueError
from tcscodec.encoder import encode_group
from tcscodec.writer import AUTO_FRACTION


def test_writer_validates_frames_and_stays_usable(tmp_path):
    path = tmp_path / "m.tcs"
    good = np.ones((16, 20), np.float32)
    with tcscodec.open(path, "w", B=3, seed=1) as w:
        w.write(good)
        with pytest.raises(TcsValueError, match=r"frame 1 has shape \(16, 21\), expected \(16, 20\)"):
            w.write(np.ones((16, 21), np.float32))
        with pytest.raises(TcsValueError, match="frame 1 has dtype float64, expected float32"):
            w.write(np.ones((16, 20)))
        bad = good.copy()
        bad[3, 4] = np.nan
        with pytest.raises(TcsValueError, match="frame 1 contains NaN or infinite values"):
            w.write(bad)
        bad[3, 4] = np.inf
        with pytest.raises(TcsValueError, match="NaN or infinite"):
            w.write(bad)
        w.write(good * 2)
    with tcscodec.open(path) as r:
        assert r.n_frames == 2  # the rejected frames were not counted
        assert np.array_equal(r.measurements(0), encode_group(np.stack([good, good * 2]), 1, 3))


@pytest.mark.parametrize("B", [0, 1, 65, 100, -3])
def test_B_out_of_range(tmp_path, B):
    with pytest.raises(TcsValueError, match=f"B must be in 2..64, got {B}"):
        tcscodec.write(tmp_path / "m.tcs", np.zeros((4, 4, 4), np.uint8), B=B)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("dtype", ["int8", "float64", "complex64", "bool"])
def test_unsupported_dtype(tmp_path, dtype):
    with pytest.raises(TcsValueError, match=f"dtype {np.dtype(dtype).name} are not supported"):
        tcscodec.write(tmp_path / "m.tcs", np.zeros((4, 4, 4), dtype), B=2)


def test_other_argument_errors(tmp_path):
    with pytest.raises(TcsValueError, match="needs B="):
        tcscodec.open(tmp_path / "m.tcs", "w")
    with pytest.raises(TcsValueError, match="mode must be"):
        tcscodec.open(tmp_path / "m.tcs", "a")
    with pytest.raises(TcsValueError, match="quant_step"):
        tcscodec.write(tmp_path / "m.tcs", np.zeros((4, 4, 4), np.uint8), B=2, quant_step=0)
    with pytest.raises(TcsValueError, match="JSON"):
        tcscodec.write(tmp_path / "m.tcs", np.zeros((4, 4, 4), np.uint8), B=2, metadata={"x": object()})
    with pytest.raises(TcsValueError, match="no frames"):
        with tcscodec.open(tmp_path / "m.tcs", "w", B=2):
            pass
    with pytest.raises(TcsValueError, match="unknown device"):
        tcscodec.write(tmp_path / "m.tcs", np.zeros((4, 4, 4), np.uint8), B=2, device="tpu")
    with pytest.raises(TcsValueError, match="got 4-D"):
        tcscodec.write(tmp_path / "m.tcs", np.zeros((4, 4, 4, 4), np.uint8), B=2)
    assert not list(tmp_path.iterdir())


def test_open_missing_file(tmp_path):
    with pytest.raises(TcsInputError, match="nope.tcs: cannot open"):
        tcscodec.open(tmp_path / "nope.tcs")
    # a TcsInputError is an OSError too, like the builtin would be
    with pytest.raises(OSError):
        tcscodec.open(tmp_path / "nope.tcs")


def test_exception_inside_with_discards_output(tmp_path):
    path = tmp_path / "m.tcs"
    with pytest.raises(RuntimeError):
        with tcscodec.open(path, "w", B=2) as w:
            w.write(np.zeros((3, 8, 8), np.uint8))
            raise RuntimeError("acquisition aborted")
    assert not list(tmp_path.iterdir())


def test_error_classes_mix_in_builtins():
    assert issubclass(tcscodec.TcsFormatError, ValueError)
    assert issubclass(tcscodec.TcsTruncatedError, EOFError)
    assert issubclass(tcscodec.TcsInputError, OSError)
    assert issubclass(tcscodec.TcsDecoderError, LookupError)
    assert issubclass(tcscodec.TcsDeviceError, RuntimeError)
    for cls in (tcscodec.TcsFormatError, tcscodec.TcsValueError, tcscodec.TcsChecksumError):
        assert issubclass(cls, tcscodec.TcsError)


def test_import_does_not_pull_torch_or_cupy():
    import subprocess
    import sys

    code = "import sys, tcscodec; print('torch' in sys.modules, 'cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_imageio_plugin_registered_and_writes(tmp_path):
    iio = pytest.importorskip("imageio.v3")
    frames = np.random.default_rng(0).integers(0, 500, (6, 12, 14), dtype=np.uint16)
    iio.imwrite(tmp_path / "m.tcs", frames, B=3, seed=4)
    with tcscodec.open(tmp_path / "m.tcs") as r:
        assert r.shape == (6, 12, 14) and r.B == 3
        assert np.array_equal(r.measurements(1), encode_group(frames[3:], 4, 3))
    props = iio.improps(tmp_path / "m.tcs")
    assert props.shape == (6, 12, 14) and props.dtype == np.uint16 and props.is_batch  # decoded as the input
    meta = iio.immeta(tmp_path / "m.tcs")
    assert meta["B"] == 3 and meta["mask_seed"] == 4


def test_imageio_plugin_declines_other_files(tmp_path):
    iio = pytest.importorskip("imageio.v3")
    from imageio.core.request import InitializationError, Request
    from tcscodec.imageio_plugin import TcsPlugin

    p = tmp_path / "x.tcs"
    p.write_bytes(b"not a tcs file at all")
    with pytest.raises(InitializationError, match="magic"):
        TcsPlugin(Request(p, "r"))
    with pytest.raises(InitializationError, match="not .png"):
        TcsPlugin(Request(tmp_path / "x.png", "w"))


def test_auto_quantisation_step_follows_shot_noise(tmp_path):
    rng = np.random.default_rng(5)
    for gain in (1, 4):
        frames = (rng.poisson(50, (12, 64, 64)) * gain).astype(np.uint16)
        tcscodec.write(tmp_path / "q.tcs", frames, B=12, seed=2, quant_step="auto")
        with tcscodec.open(tmp_path / "q.tcs") as r:
            step = r.header.quant_step
            # Y ~ gain * Poisson(6 * 50 * ...): std = sqrt(gain * median(Y))
            y = encode_group(frames, 2, 12).astype(np.float64)
            assert step == pytest.approx(AUTO_FRACTION * np.sqrt(gain * np.median(y)), rel=0.15)
            assert np.abs(r.measurements(0) - y).max() <= step / 2
            assert r.metadata()["user"]["quantize"].startswith("auto")


def test_auto_quantisation_sees_through_lattice_texture(tmp_path):
    """A sharp static lattice inflates the spatial noise estimate; the first
    two frames' difference keeps the step at the true shot noise."""
    from tcscodec.quantize import noise_std, temporal_gain

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:128, :128]
    scene = 400 * (1 + 0.8 * np.cos(2.1 * xx) * np.cos(1.9 * yy))  # 3 px lattice, high contrast
    frames = rng.poisson(scene, (10, 128, 128)).astype(np.uint16)
    assert temporal_gain(frames[0], frames[1]) == pytest.approx(1.0, rel=0.1)
    y = encode_group(frames, 4, 10).astype(np.float64)
    csum = tcscodec.masks.mask_sum(4, 10, 128, 128)
    truth = np.sqrt(np.median(y))
    assert noise_std(y, csum) > 1.3 * truth  # texture alone fools the spatial estimate
    assert noise_std(y, csum, frames[:2]) == pytest.approx(truth, rel=0.1)
    tcscodec.write(tmp_path / "q.tcs", frames, B=10, seed=4, quant_step="auto")
    with tcscodec.open(tmp_path / "q.tcs") as r:
        assert r.header.quant_step <= AUTO_FRACTION * truth and r.header.quant_step % 2 == 1


def test_auto_quantisation_of_sparse_counts_is_unbiased(tmp_path):
    """Integer frames get odd steps: an even step would round every half-way
    count up (+0.5 per pixel, a 5 % brightness bias at ~1 count/px)."""
    frames = np.random.default_rng(8).poisson(1.0, (20, 96, 96)).astype(np.uint8)
    tcscodec.write(tmp_path / "q.tcs", frames, B=20, seed=1, quant_step="auto")
    with tcscodec.open(tmp_path / "q.tcs") as r:
        step = r.header.quant_step
        assert step == 3  # shot-noise std of Y ~ Poisson(10) is 3.2
        err = r.measurements(0) - encode_group(frames, 1, 20)
        assert abs(err.mean()) < 0.05 and err.var() <= (step**2 - 1) / 12 * 1.1


def test_auto_quantisation_of_float_frames(tmp_path):
    rng = np.random.default_rng(2)
    noisy = (rng.poisson(20, (4, 32, 32)) * 0.37).astype(np.float32)
    tcscodec.write(tmp_path / "f.tcs", noisy, B=2, seed=1, quant_step="auto")
    with tcscodec.open(tmp_path / "f.tcs") as r:
        assert r.header.quant_step == pytest.approx(AUTO_FRACTION * np.sqrt(0.37 * 0.37 * 20), rel=0.2)
        assert r.header.stored_dtype == "int64"
    # no noise at all (a processed movie): lossless, not a 1e-30 step that overflows int64
    tcscodec.write(tmp_path / "c.tcs", np.full((4, 32, 32), 3.5, np.float32), B=2, quant_step="auto")
    with tcscodec.open(tmp_path / "c.tcs") as r:
        assert r.header.quant_step == 1.0
        assert np.all(r.measurements(0) == encode_group(np.full((2, 32, 32), 3.5, np.float32), r.header.mask_seed, 2))


def test_quantisation_step_too_small_for_int64(tmp_path):
    frames = np.full((2, 8, 8), 1e6, np.float32)
    with pytest.raises(TcsValueError, match="does not fit the stored dtype int64"):
        tcscodec.write(tmp_path / "t.tcs", frames, B=2, quant_step=1e-20)
    assert list(tmp_path.iterdir()) == []


def test_auto_quantisation_of_noiseless_integer_data_is_lossless(tmp_path):
    frames = np.full((4, 16, 16), 7, np.uint8)
    tcscodec.write(tmp_path / "q.tcs", frames, B=4, seed=2, quant_step="auto")
    with tcscodec.open(tmp_path / "q.tcs") as r:
        assert r.header.quant_step == 1.0
        assert np.array_equal(r.measurements(0), encode_group(frames, 2, 4))
