"""The compiled encoder kernel against the numpy reference, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcscodec.cpu_kernels import binned_sum, masked_accumulate, set_threads
from tcscodec.encoder import CpuEncoder, encode_group
from tcscodec.errors import TcsValueError
from tcscodec.masks import packed_masks, unpack_words


def _frames(rng, dtype, shape):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return (rng.standard_normal(shape) * rng.choice([1e-3, 1.0, 1e6])).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype, endpoint=True)


@settings(max_examples=40, deadline=None)
@given(dtype=st.sampled_from(["uint8", "uint16", "uint32", "float32"]), H=st.integers(1, 40),
       W=st.integers(1, 200), B=st.integers(2, 64), seed=st.integers(0, 2**64 - 1), threads=st.integers(1, 3))
def test_encoder_push_equals_numpy_reference(dtype, H, W, B, seed, threads):
    rng = np.random.default_rng(seed % 2**32)
    n = int(rng.integers(1, B + 1))
    frames = _frames(rng, dtype, (n, H, W))
    enc = CpuEncoder(seed, B, (H, W), dtype, threads=threads)
    out = [enc.push(f) for f in frames]
    m = out[-1] if n == B else enc.drain()[0]
    expected = encode_group(frames, seed, B)
    assert m.data.dtype == expected.dtype and np.array_equal(m.data, expected)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "uint32", "float32"])
def test_kernel_adds_exactly_the_masked_pixels(dtype):
    rng = np.random.default_rng(1)
    H, W = 9, 130  # two full words and a partial one per row
    words = packed_masks(77, 1, H, W)[0]
    frame = _frames(rng, dtype, (H, W))
    mdtype = {"uint8": np.uint16, "uint16": np.uint32, "uint32": np.uint64, "float32": np.float64}[dtype]
    acc = np.full((H, W), 3, mdtype)
    masked_accumulate(acc, frame, words)
    mask = unpack_words(words, 0, W).astype(bool)
    expected = np.full((H, W), 3, mdtype)
    expected[mask] += frame[mask].astype(mdtype)
    assert np.array_equal(acc, expected)


def test_set_threads_returns_the_previous_count():
    before = set_threads(1)
    assert set_threads(before) == 1


def test_drain_ends_the_stream():
    # drain() is the one end-of-stream call of both encoders: a list, then [] and no more pushes
    enc = CpuEncoder(1, 4, (3, 5), np.uint16)
    frames = np.arange(6 * 15, dtype=np.uint16).reshape(6, 3, 5)
    got = [m for m in map(enc.push, frames) if m is not None]
    tail = enc.drain()
    assert [m.n_frames for m in got + tail] == [4, 2]
    assert np.array_equal(tail[0].data, encode_group(frames[4:], 1, 4))
    assert enc.drain() == []
    with pytest.raises(TcsValueError, match="drained"):
        enc.push(frames[0])
    assert CpuEncoder(1, 4, (3, 5), np.uint16).drain() == []


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("threads", [1, 2])
def test_each_group_sums_its_own_frames_into_its_own_array(dtype, threads):
    """A group's first frame sets the sums (no zeroed buffer): every group
    equals the reference, negative float frames keep +0 where no frame
    was measured, and a measurement handed out is not touched by the
    groups after it."""
    from tcscodec.work_pool import WorkPool

    rng = np.random.default_rng(7)
    B, H, W = 4, 33, 150
    frames = _frames(rng, dtype, (3 * B + 2, H, W))
    if dtype == "float32":
        frames = -np.abs(frames)  # masked-out pixels give -0.0 products
    pool = WorkPool(threads) if threads > 1 else None
    try:
        enc = CpuEncoder(5, B, (H, W), dtype, threads=threads, run=None if pool is None else pool.run)
        got = [m for f in frames if (m := enc.push(f)) is not None] + enc.drain()
    finally:
        if pool is not None:
            pool.shutdown()
    assert len(got) == 4
    for m in got:
        expected = encode_group(frames[B * m.group:B * m.group + m.n_frames], 5, B)
        assert m.data.tobytes() == expected.tobytes()  # bytes: +0.0 and -0.0 differ
    assert len({id(m.data) for m in got}) == 4


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.float32])
@pytest.mark.parametrize("parallel", [True, False])
@pytest.mark.parametrize("shape, s", [((64, 72), 8), ((37, 51), 4), ((9, 9), 2)])
def test_binned_sum_equals_numpy_on_every_dtype(dtype, parallel, shape, s):
    rng = np.random.default_rng(shape[0] * s)
    top = np.iinfo(dtype).max if np.dtype(dtype).kind == "u" else 1e6
    frame = rng.integers(0, top, shape, endpoint=True).astype(dtype)  # extremes: int64 sums, exact floats
    hb, wb = shape[0] // s, shape[1] // s
    want = frame[:hb * s, :wb * s].astype(np.float64).reshape(hb, s, wb, s).sum((1, 3))
    out = np.full((hb, wb), np.nan)
    assert binned_sum(frame, s, out, parallel=parallel) is out and np.array_equal(out, want)
