"""Tests of the GAP-TV decoder and of tcscodec.reconstruct."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tcscodec.decoders import GapTV, available_decoders, get_decoder, tv_denoise  # noqa: E402
from tcscodec.decoders.gap_tv import gap_tv, tv_weight_schedule  # noqa: E402
from tcscodec.errors import TcsValueError  # noqa: E402
from tcscodec.masks import masks as spec_masks  # noqa: E402
from tcscodec.reconstruction import reconstruct  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")





def _movie(B=8, H=64, W=64, level=100.0, noise=True):
    """A disk drifting over a smooth background; Poisson counts at ``level``."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    frames = []
    for b in range(B):
        disk = (yy - 30 - 0.8 * b) ** 2 + (xx - 22 - 1.5 * b) ** 2 < 12**2
        bg = 0.5 + 0.2 * np.sin(xx / 7.0 + 0.1 * b) * np.cos(yy / 11.0)
        frames.append(level * (bg + disk))
    clean = np.stack(frames)
    noisy = np.random.default_rng(0).poisson(clean).astype(np.float64) if noise else clean
    return clean, noisy


def _psnr(x, ref):
    peak = ref.max()
    return float(np.mean([20 * np.log10(peak / np.sqrt(((a - r) ** 2).mean())) for a, r in zip(x, ref)]))


def _t(a):
    return torch.as_tensor(np.asarray(a), dtype=torch.float32)


@pytest.fixture(scope="module")
def problem():
    clean, noisy = _movie()
    C = spec_masks(3, 8, 64, 64)
    y = (C * noisy).sum(0)
    return clean, C, y


def test_registered():
    assert "gap-tv" in available_decoders()
    dec = get_decoder("gap-tv", iterations=5)
    assert isinstance(dec, GapTV) and dec.options == {"iterations": 5}
    assert "iterations=5" in repr(dec)


def test_psnr_beats_baseline(problem):
    clean, C, y = problem
    baseline = np.broadcast_to(y / np.maximum(C.sum(0), 1), clean.shape)
    r = reconstruct(y, C, decoder="gap-tv")
    p_gap, p_base = _psnr(r, clean), _psnr(baseline, clean)
    # Measured 24.8 dB against 19.7 dB for Y / sum C.
    assert p_gap > p_base + 3.0
    assert 23.5 < p_gap < 27.0


def test_low_dose_uses_plain_gap():
    clean, noisy = _movie(level=5.0)
    C = spec_masks(3, 8, 64, 64)
    y = _t((C * noisy).sum(0))[None]
    Ct = _t(C)[None]
    auto = gap_tv(y, Ct, iterations=10)
    np.testing.assert_allclose(auto, gap_tv(y, Ct, iterations=10, accelerate=False), rtol=1e-5, atol=1e-4)
    baseline = np.broadcast_to(y[0].numpy() / np.maximum(C.sum(0), 1), clean.shape)
    assert _psnr(auto[0].numpy(), clean) > _psnr(baseline, clean) + 3.0


def test_accelerate_auto_per_tile(problem):
    clean, C, y = problem
    # One bright (accelerated) and one low-dose (plain) tile in the same batch.
    _, low = _movie(level=2.0)
    ys = _t(np.stack([y, (C * low).sum(0)]))
    Cs = _t(np.stack([C, C]))
    both = gap_tv(ys, Cs, iterations=6)
    bright = gap_tv(ys[:1], Cs[:1], iterations=6, accelerate=True)
    dark = gap_tv(ys[1:], Cs[1:], iterations=6, accelerate=False)
    np.testing.assert_allclose(both[0], bright[0], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(both[1], dark[0], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("gain", [1 / 50, 1e-4])
def test_accelerate_auto_judges_dose_not_units(problem, gain):
    # ~100 counts per pixel in units of 1/50 or 1e-4 count (gain-normalised
    # floats): accelerated like the counts, though the level is below 15.
    _, C, y = problem
    Ct = _t(C)[None]
    counts = gap_tv(_t(y)[None], Ct, iterations=6)
    scaled = gap_tv(_t(y * gain)[None], Ct, iterations=6)
    np.testing.assert_allclose(scaled / gain, counts, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(counts, gap_tv(_t(y)[None], Ct, iterations=6, accelerate=True))


def test_negative_level_is_shifted(problem):
    # Dark-subtracted floats with a negative mean decode as well as the
    # counts they came from (the result shifted back into their units).
    clean, C, y = problem
    dark = 80.0
    shifted = gap_tv(_t(y - dark * C.sum(0))[None], _t(C)[None])[0].numpy()
    counts = gap_tv(_t(y)[None], _t(C)[None])[0].numpy()
    assert float(shifted.mean()) < 0
    assert _psnr(shifted + dark, clean) > _psnr(counts, clean) - 0.5
    zero = gap_tv(torch.zeros(1, 16, 16), torch.ones(1, 4, 16, 16), iterations=3)
    assert torch.equal(zero, torch.zeros(1, 4, 16, 16))


def test_scale_invariance(problem):
    _, C, y = problem
    a = gap_tv(_t(y)[None], _t(C)[None], iterations=8, accelerate=True)
    b = gap_tv(_t(y * 1000.0)[None], _t(C)[None], iterations=8, accelerate=True)
    np.testing.assert_allclose(b / 1000.0, a, rtol=1e-4, atol=1e-3)


def test_batch_independence(problem):
    _, C, y = problem
    y2 = np.roll(y, 5, axis=1)
    C2 = np.roll(C, 5, axis=2)
    batch = gap_tv(_t(np.stack([y, y2])), _t(np.stack([C, C2])), iterations=5)
    one = gap_tv(_t(y2)[None], _t(C2)[None], iterations=5)
    np.testing.assert_allclose(batch[1], one[0], rtol=1e-5, atol=1e-3)


def test_static_scene_is_recovered():
    # A static scene: every frame equals Y / sum C, which GAP-TV keeps.
    rng = np.random.default_rng(1)
    X = np.broadcast_to(50 + 10 * rng.random((32, 32)), (6, 32, 32))
    C = spec_masks(5, 6, 32, 32)
    r = reconstruct((C * X).sum(0), C, iterations=30, tv_weight=0.01, decoder="gap-tv")
    assert np.abs(r - X).mean() < 0.05 * X.mean()


def test_unmeasured_pixels_and_zeros():
    C = spec_masks(1, 4, 24, 24).copy()
    C[:, 8:12, 8:12] = 0  # never measured
    X = np.full((4, 24, 24), 40.0)
    r = reconstruct((C * X).sum(0), C, iterations=20, decoder="gap-tv")
    assert np.isfinite(r).all()
    # Filled in from the neighbours by the TV step.
    assert abs(r[:, 8:12, 8:12].mean() - 40.0) < 4.0
    z = reconstruct(np.zeros((24, 24)), C, iterations=5, decoder="gap-tv")
    assert np.isfinite(z).all() and np.abs(z).max() == 0
    # Masks that measure nothing at all.
    e = reconstruct(np.zeros((8, 8)), np.zeros((3, 8, 8), np.uint8), iterations=3, decoder="gap-tv")
    assert np.isfinite(e).all()


def test_single_frame():
    rng = np.random.default_rng(2)
    x = 20 + 5 * rng.random((16, 16))
    r = reconstruct(x, np.ones((1, 16, 16), np.uint8), iterations=30, decoder="gap-tv")
    # Accelerated GAP converges to the data (one frame, fully measured).
    assert np.abs(r[0] - x).mean() < 0.01 * x.mean()


def test_options_and_schedules():
    assert tv_weight_schedule(0.5, 3) == [0.5, 0.5, 0.5]
    np.testing.assert_allclose(tv_weight_schedule((1.0, 0.01), 3), [1.0, 0.1, 0.01])
    assert tv_weight_schedule([3, 2, 1], 3) == [3.0, 2.0, 1.0]
    assert tv_weight_schedule(lambda k, n: k + 1.0, 2) == [1.0, 2.0]
    for bad in [(1.0, 2.0, 3.0), 0.0, -1.0, (0.0, 1.0), float("nan")]:
        with pytest.raises(TcsValueError):
            tv_weight_schedule(bad, 5)
    with pytest.raises(TcsValueError, match="option"):
        get_decoder("gap-tv", iteration=5)
    y, C = torch.ones(1, 4, 4), torch.ones(1, 2, 4, 4)
    for bad in [dict(accelerate="yes"), dict(step=0.0), dict(temporal_weight=-1.0), dict(iterations=-1)]:
        with pytest.raises(TcsValueError):
            gap_tv(y, C, **bad)
    with pytest.raises(TcsValueError):
        gap_tv(torch.ones(4, 4), C)
    r = gap_tv(y, C, iterations=0)
    np.testing.assert_allclose(r, 0.5)  # the Y / sum C start


def test_callback_and_options_change_result(problem):
    _, C, y = problem
    seen = []
    gap_tv(_t(y)[None], _t(C)[None], iterations=4, callback=lambda k, x: seen.append(k))
    assert seen == [0, 1, 2, 3]
    a = reconstruct(y, C, iterations=4, decoder="gap-tv")
    for opts in [dict(tv_weight=(2.0, 0.2)), dict(temporal_weight=0.0), dict(tv_iterations=2),
                 dict(accelerate=False), dict(normalize=False, tv_weight=50.0)]:
        b = reconstruct(y, C, iterations=4, **opts, decoder="gap-tv")
        assert np.isfinite(b).all() and not np.allclose(a, b)
    assert reconstruct(y, C, iterations=4, nonnegative=True, decoder="gap-tv").min() >= 0


def test_tv_denoise():
    rng = np.random.default_rng(3)
    clean = np.zeros((1, 2, 32, 32), np.float32)
    clean[..., 8:24, 8:24] = 1.0
    noisy = torch.from_numpy(clean + 0.2 * rng.standard_normal(clean.shape).astype(np.float32))
    for a in (0.0, 0.5):
        den = tv_denoise(noisy, 0.2, iterations=30, temporal_weight=a)
        assert np.abs(den.numpy() - clean).mean() < 0.6 * np.abs(noisy.numpy() - clean).mean()
    np.testing.assert_array_equal(tv_denoise(noisy, 0.2, iterations=1), noisy)


@pytest.mark.parametrize("shape", [(1, 7, 33, 17), (2, 1, 16, 40), (1, 30, 64, 48)])
@pytest.mark.parametrize("temporal_weight", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("iterations", [2, 5, 12])
def test_compiled_tv_matches_the_tensor_version(monkeypatch, shape, temporal_weight, iterations):
    """On the CPU the TV step is a numba kernel (two passes per iteration);
    it computes what the tensor operations compute, to float32 rounding,
    also when a workspace is reused across calls."""
    from tcscodec.decoders import gap_tv as module, tv_kernels

    if not tv_kernels.available():
        pytest.skip("numba is not installed")
    rng = np.random.default_rng(sum(shape) + iterations)
    x = torch.from_numpy((rng.random(shape) * 4).astype(np.float32))
    temporal = temporal_weight > 0 and shape[1] > 1
    got = {}
    for compiled in (True, False):
        monkeypatch.setattr(tv_kernels, "available", lambda c=compiled: c)
        ws = module._TvWorkspace(x, temporal)
        tv_denoise(x * 2, 0.3, iterations, temporal_weight, ws)  # the buffers hold another call's values
        got[compiled] = tv_denoise(x, 0.3, iterations, temporal_weight, ws).clone()
    assert not torch.equal(got[True], x)
    torch.testing.assert_close(got[True], got[False], rtol=2e-6, atol=2e-6)


# -- reconstruct() ---------------------------------------------------------------------------


def test_reconstruct_inputs(problem):
    clean, C, y = problem
    ref = reconstruct(y, C, iterations=3, decoder="gap-tv")
    assert ref.shape == C.shape and ref.dtype == np.float32
    # torch inputs, bool masks, integer measurement
    for yy, CC in [
        (torch.from_numpy(y), torch.from_numpy(C)),
        (y, C.astype(bool)),
        (y.astype(np.uint32), C.astype(np.float32)),
    ]:
        np.testing.assert_allclose(reconstruct(yy, CC, iterations=3, decoder="gap-tv"), ref, rtol=1e-5)
    part = reconstruct(y, C, iterations=3, region=(10, 30, 20, 50), decoder="gap-tv")
    assert part.shape == (8, 20, 30)


def test_package_level_reconstruct_stays_callable():
    import tcscodec

    C = np.ones((2, 8, 8), np.uint8)
    for _ in range(2):  # the name is the function, not the submodule
        r = tcscodec.reconstruct(np.full((8, 8), 4.0), C, decoder="gap-tv", iterations=2)
        assert r.shape == (2, 8, 8)


def test_reconstruct_errors():
    C = spec_masks(1, 4, 8, 8)
    y = (C * 3.0).sum(0)
    with pytest.raises(TcsValueError, match="match"):
        reconstruct(y[:7], C, decoder="gap-tv")
    with pytest.raises(TcsValueError, match="2-D"):
        reconstruct(y[None], C, decoder="gap-tv")
    with pytest.raises(TcsValueError, match="3-D"):
        reconstruct(y, C[None], decoder="gap-tv")
    with pytest.raises(TcsValueError, match="0 and 1"):
        reconstruct(y, C * 2, decoder="gap-tv")
    with pytest.raises(TcsValueError, match="0 and 1"):
        reconstruct(y, C * 0.5, decoder="gap-tv")
    with pytest.raises(TcsValueError, match="B"):
        reconstruct(y, np.zeros((0, 8, 8)), decoder="gap-tv")
    with pytest.raises(TcsValueError, match="B"):
        reconstruct(y, np.ones((65, 8, 8)), decoder="gap-tv")
    bad = y.astype(np.float32)
    bad[0, 0] = np.nan
    with pytest.raises(TcsValueError, match="NaN"):
        reconstruct(bad, C, decoder="gap-tv")
    bad[0, 0] = np.inf
    with pytest.raises(TcsValueError, match="NaN"):
        reconstruct(bad, C, decoder="gap-tv")
    with pytest.raises(TcsValueError):
        reconstruct(y.astype(complex), C, decoder="gap-tv")
    with pytest.raises(ValueError):  # TcsValueError is a ValueError
        reconstruct(y, C[:, :, :7], decoder="gap-tv")


@pytest.mark.gpu
def test_gap_tv_cuda_matches_cpu(problem):
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    _, C, y = problem
    cpu = reconstruct(y, C, iterations=10, decoder="gap-tv")
    gpu = reconstruct(y, C, iterations=10, device="cuda", decoder="gap-tv")
    np.testing.assert_allclose(gpu, cpu, rtol=1e-3, atol=1e-2 * float(np.abs(cpu).mean()))
