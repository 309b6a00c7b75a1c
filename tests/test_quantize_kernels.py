"""Compiled quantisation and noise estimate against their numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcscodec import TcsTypeError, TcsValueError
from tcscodec.quantize import spatial_gain, spatial_gain_reference, quantize, quantize_reference
from tcscodec.quantize import NOISE_SAMPLE_BANDS, NOISE_SAMPLE_PIXELS, noise_rows, noise_std, temporal_gain
from tcscodec.quantize import temporal_gain_reference
from tcscodec.quantize_kernels import abs_deviation_median, median
from tcscodec.quantize_kernels import temporal_gain as kernel_temporal_gain
from tcscodec.work_pool import WorkPool

#: measurement dtype -> stored dtype of a quantised file
STORED = {"uint16": "uint16", "uint32": "uint32", "uint64": "uint64", "float64": "int64"}


def _measurement(rng, dtype, shape):
    if dtype == "float64":
        return rng.normal(0, 1000, shape) * rng.choice([1e-3, 1, 1e9])
    return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True, dtype=dtype)


@settings(max_examples=80, deadline=None)
@given(dtype=st.sampled_from(sorted(STORED)), H=st.integers(1, 50), W=st.integers(1, 50),
       step=st.sampled_from([1.0, 3.0, 7.0, 0.37, 1e-3]), bands=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_quantize_equals_the_reference(dtype, H, W, step, bands, seed):
    y = _measurement(np.random.default_rng(seed), dtype, (H, W))
    stored = np.dtype(STORED[dtype])
    try:
        expected = quantize_reference(y, step, stored)
    except TcsValueError as exc:
        with pytest.raises(TcsValueError) as got:
            quantize(y, step, stored, bands=bands)
        assert str(got.value) == str(exc)
        return
    got = quantize(y, step, stored, bands=bands)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)


def test_quantize_in_bands_on_a_pool():
    y = np.random.default_rng(1).integers(0, 2**20, (1100, 700)).astype(np.uint32)
    pool = WorkPool(3)
    try:
        assert np.array_equal(quantize(y, 5.0, np.uint32, run=pool.run, bands=3), quantize_reference(y, 5.0, np.uint32))
        with pytest.raises(TcsValueError, match="does not fit the stored dtype uint16"):
            quantize(y, 1.5, np.uint16, run=pool.run, bands=3)
    finally:
        pool.shutdown()


@settings(max_examples=60, deadline=None)
@given(H=st.integers(1, 60), W=st.integers(1, 60), B=st.integers(2, 64), mean=st.sampled_from([0.01, 2.0, 300.0]),
       seed=st.integers(0, 2**32 - 1))
def test_spatial_gain_equals_the_reference(H, W, B, mean, seed):
    rng = np.random.default_rng(seed)
    csum = rng.integers(0, B, (H, W), endpoint=True).astype(np.float64)
    y = rng.poisson(mean * np.maximum(csum, 1)).astype(np.float64)
    assert spatial_gain(y, csum) == spatial_gain_reference(y, csum)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 64, 1001, 4096])
def test_median_equals_numpy(n):
    rng = np.random.default_rng(n)
    cases = [rng.normal(0, 1, n), rng.integers(-3, 4, n).astype(np.float64), np.zeros(n),
             np.round(rng.normal(0, 1, n), 1) * 1e300, rng.choice([-0.0, 0.0, 1e-310, -1e-310, np.inf], n)]
    for a in cases:
        assert median(a) == np.median(a)
    assert median(cases[0].reshape(1, -1)[:, ::-1]) == np.median(cases[0])  # any layout


@pytest.mark.parametrize("n", [3, 4, 1001, 50_000, 300_001])
def test_median_paths_equal_numpy(n):
    """The histogram of integers, the sampled bracket of floats (ties,
    skewed and constant arrays) and the deviation from a centre."""
    rng = np.random.default_rng(n)
    ints = [rng.poisson(20, n).astype(np.uint32), rng.integers(-5, 6, n).astype(np.int16),
            np.full(n, 7, np.uint64), rng.integers(0, 2**40, n).astype(np.int64)]
    for a in ints:
        assert median(a) == np.median(a)
    floats = [rng.normal(0, 1, n), rng.poisson(3, n) / 7.0, rng.exponential(1, n) ** 4, np.zeros(n),
              np.sort(rng.normal(0, 1, n))]
    for a in floats:
        assert median(a) == np.median(a)
        centre = float(np.median(a))
        assert abs_deviation_median(a, centre) == np.median(np.abs(a - centre))
        assert abs_deviation_median(a, 0.3) == np.median(np.abs(a - 0.3))


def test_noise_std_reads_integer_measurements_as_their_float_values():
    rng = np.random.default_rng(3)
    csum = rng.integers(0, 10, (300, 200), endpoint=True).astype(np.uint8)
    y = rng.poisson(20 * np.maximum(csum, 1)).astype(np.uint32)
    frames = (rng.poisson(20, (64, 64)).astype(np.uint16), rng.poisson(20, (64, 64)).astype(np.uint16))
    got = noise_std(y, csum, frames)
    assert got > 0 and got == noise_std(y.astype(np.float64), csum.astype(np.float64), frames)


@pytest.mark.parametrize("bands", [1, 2, 3])
def test_noise_std_on_a_pool_in_bands_gives_the_same_number(bands):
    """The writer's noise estimate: the high-pass in bands of rows on its
    pool, the temporal estimate and the median beside them."""
    rng = np.random.default_rng(bands)
    csum = rng.integers(0, 12, (1030, 700), endpoint=True).astype(np.uint8)
    y = rng.poisson(7 * np.maximum(csum, 1)).astype(np.uint32)
    frames = (rng.poisson(7, (100, 90)).astype(np.uint16), rng.poisson(7, (100, 90)).astype(np.uint16))
    pool = WorkPool(2)
    try:
        for probe in (frames, None):
            assert noise_std(y, csum, probe, run=pool.run, bands=bands) == noise_std(y, csum, probe)
    finally:
        pool.shutdown()


@settings(max_examples=40, deadline=None)
@given(dtype=st.sampled_from([np.uint8, np.uint16, np.int16]), H=st.integers(1, 40), W=st.integers(2, 40),
       mean=st.floats(0.05, 300), jump=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_temporal_gain_equals_the_reference(dtype, H, W, mean, jump, seed):
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    f0 = np.clip(rng.poisson(mean, (H, W)), info.min, info.max).astype(dtype)
    f1 = np.clip(rng.poisson(mean, (H, W)), info.min, info.max).astype(dtype)
    if jump:  # a hot pixel or a jump: the 0.1 % the estimate leaves out
        f1[rng.integers(H), rng.integers(W)] = info.max
    ours, reference = temporal_gain(f0, f1), temporal_gain_reference(f0, f1)
    assert ours == pytest.approx(reference, rel=1e-12, abs=1e-300)


def test_temporal_gain_of_frames_without_signal_is_zero_and_other_inputs_take_the_reference():
    zero = np.zeros((8, 8), np.uint16)
    assert temporal_gain(zero, zero) == 0.0
    rng = np.random.default_rng(3)
    f0, f1 = (rng.poisson(50, (16, 16)).astype(np.uint32) for _ in range(2))  # 32-bit: numpy's path
    assert temporal_gain(f0, f1) == temporal_gain_reference(f0, f1)
    with pytest.raises(TcsTypeError, match="8- or 16-bit integer dtype, got uint32"):
        kernel_temporal_gain(f0, f1)


def test_noise_rows_spread_bands_over_a_large_measurement():
    assert noise_rows((NOISE_SAMPLE_PIXELS // 512, 512)) is None  # no more pixels than the sample: all
    rows = noise_rows((2048, 2048))
    assert len(rows) == NOISE_SAMPLE_BANDS and rows[0][0] == 0 and rows[-1][1] == 2048
    assert all(b - a == rows[0][1] - rows[0][0] >= 3 for a, b in rows)
    assert all(b0 <= a1 for (_, b0), (a1, _) in zip(rows, rows[1:]))
    # each band's high-pass keeps all but its first and last rows: at least the sample's pixels
    assert sum(b - a - 2 for a, b in rows) * 2046 >= NOISE_SAMPLE_PIXELS


def test_a_large_measurement_estimates_its_noise_from_bands_of_rows(monkeypatch):
    from tcscodec import quantize, quantize_kernels

    rng = np.random.default_rng(11)
    scene = 1 + 0.5 * np.sin(np.arange(1100)[:, None] / 9.0) * np.cos(np.arange(900)[None] / 13.0)
    csum = rng.integers(0, 10, scene.shape, endpoint=True).astype(np.uint8)
    y = rng.poisson(30 * scene * np.maximum(csum, 1)).astype(np.uint32)
    sampled = noise_std(y, csum)
    # the numpy path samples the same rows and gives the same number
    monkeypatch.setattr(quantize_kernels, "numba", None)
    assert noise_std(y, csum) == sampled
    monkeypatch.undo()
    monkeypatch.setattr(quantize, "NOISE_SAMPLE_PIXELS", y.size)
    whole = noise_std(y, csum)
    assert whole != sampled and sampled == pytest.approx(whole, rel=0.01)
