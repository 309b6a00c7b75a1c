"""Tests of the tiled decoding engine (tcscodec.decoders.tiling)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tcscodec.decoders import Decoder, decode_tiled, register_decoder  # noqa: E402
from tcscodec.decoders.base import _REGISTRY  # noqa: E402
from tcscodec.decoders.tiling import _axis_weights, blend_window, tile_layout  # noqa: E402
from tcscodec.errors import TcsDecoderError, TcsDeviceError, TcsValueError  # noqa: E402
from tcscodec.masks import masks as spec_masks  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")





# -- test-only decoders ----------------------------------------------------------------------


class _PixelDecoder(Decoder):
    """Purely per-pixel: every frame gets Y / sum C (0 where unmeasured),
    plus a frame-dependent term so frames differ."""

    receptive_margin = 0

    def decode(self, y, masks):
        s = masks.sum(1)
        ybar = torch.where(s > 0, y / s.clamp_min(1), torch.zeros_like(y))
        return ybar[:, None] + 0.25 * masks * y[:, None]


class _Local3x3Decoder(Decoder):
    """3x3-local: box mean of Y over box mean of sum C, edge-replicated, so
    the result at a pixel depends on its 3x3 neighbourhood only (and a tile
    edge that is a frame edge behaves as in a whole-frame decode)."""

    receptive_margin = 0

    def decode(self, y, masks):
        s = masks.sum(1, keepdim=True)
        pad = lambda t: torch.nn.functional.pad(t, (1, 1, 1, 1), mode="replicate")  # noqa: E731
        ym = torch.nn.functional.avg_pool2d(pad(y[:, None]), 3, stride=1)
        sm = torch.nn.functional.avg_pool2d(pad(s), 3, stride=1)
        return ym / sm.clamp_min(1e-3) * (0.5 + masks)


class _Multiple8Decoder(_PixelDecoder):
    """Needs tile sizes that are multiples of 8 (as some networks do)."""

    tile_multiple = 8

    def decode(self, y, masks):
        assert y.shape[-1] % 8 == 0 and y.shape[-2] % 8 == 0
        return super().decode(y, masks)


@pytest.fixture(scope="module", autouse=True)
def _test_decoders():
    names = {
        "_test-pixel": _PixelDecoder,
        "_test-local3": _Local3x3Decoder,
        "_test-mult8": _Multiple8Decoder,
    }
    for name, cls in names.items():
        register_decoder(name)(cls)
    yield
    for name in names:
        _REGISTRY.pop(name, None)


def _problem(H, W, n=4, seed=7, level=50.0):
    """A measurement of a smooth moving pattern with the spec masks."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    frames = np.stack(
        [level * (1.5 + np.sin((xx - 1.5 * b) / 9.0) * np.cos((yy + b) / 13.0)) for b in range(n)]
    )
    C = spec_masks(seed, n, H, W)
    y = (C * frames).sum(0, dtype=np.float64).astype(np.float32)

    def mask_fn(y0, y1, x0, x1):
        return C[:, y0:y1, x0:x1]

    return y, mask_fn, frames, C


def _whole(y, mask_fn, n, decoder, **kw):
    H, W = y.shape
    return decode_tiled(y, mask_fn, n, decoder=decoder, tile=max(H, W) + 64, **kw)


# -- layout and windows ----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    length=st.integers(1, 3000),
    tile=st.integers(9, 600),
    overlap=st.integers(0, 64),
    multiple=st.sampled_from([1, 8, 16]),
)
def test_tile_layout_covers_with_overlap(length, tile, overlap, multiple):
    tile = max(tile, overlap + 1)
    if tile % multiple:
        tile += multiple - tile % multiple
    size, starts = tile_layout(length, tile, overlap, multiple)
    assert size <= min(tile, length)
    assert starts[0] == 0 and starts[-1] + size == length
    assert all(b > a for a, b in zip(starts, starts[1:]))
    for a, b in zip(starts, starts[1:]):
        assert a + size - b >= overlap
    # The normalised windows are a partition of unity over the axis.
    total = np.zeros(length)
    for s, w in zip(starts, _axis_weights(length, size, starts, overlap)):
        assert (w >= 0).all()
        total[s : s + size] += w
    np.testing.assert_allclose(total, 1.0, rtol=1e-5)


def test_tile_layout_shrinks_tiles():
    # 512 with tile 256 / overlap 32 needs 3 tiles; they shrink to 192.
    assert tile_layout(512, 256, 32) == (192, [0, 160, 320])
    assert tile_layout(100, 256, 32) == (100, [0])
    assert tile_layout(1, 256, 32) == (1, [0])


def test_blend_window_ramps():
    w = blend_window(64, 32, True, True)
    assert w[:8].max() == 0 and w[-8:].max() == 0  # outer quarter trimmed
    assert w[24:40].min() == 1
    # Two neighbours' ramps sum to one over the overlap.
    np.testing.assert_allclose(w[-32:] + w[:32], 1.0)
    assert blend_window(64, 32, False, False).min() == 1


# -- equivalence with whole-frame decoding -------------------------------------------------


@pytest.mark.parametrize("decoder", ["_test-pixel", "_test-local3"])
@pytest.mark.parametrize("tile,overlap,batch", [(32, 8, 3), (40, 12, 8), (17, 4, 1)])
def test_tiled_equals_whole_for_local_decoders(decoder, tile, overlap, batch):
    y, mask_fn, _, _ = _problem(70, 93, n=3)
    whole = _whole(y, mask_fn, 3, decoder)
    tiled = decode_tiled(y, mask_fn, 3, decoder=decoder, tile=tile, overlap=overlap, batch=batch)
    assert tiled.shape == (3, 70, 93) and tiled.dtype == np.float32
    # The trimmed blending window (overlap // 4 >= 1) drops the tile pixels
    # a 3x3 op gets wrong, so the match is exact everywhere.
    np.testing.assert_allclose(tiled, whole, rtol=2e-6, atol=1e-4)


@pytest.mark.parametrize("region", [(0, 70, 0, 93), (10, 41, 5, 60), (0, 1, 92, 93), (69, 70, 0, 93)])
def test_region_equals_crop_of_full_decode(region):
    y, mask_fn, _, _ = _problem(70, 93, n=3)
    full = decode_tiled(y, mask_fn, 3, decoder="_test-local3", tile=32, overlap=8)
    y0, y1, x0, x1 = region
    calls = []

    def spy(a0, a1, b0, b1):
        calls.append((a0, a1, b0, b1))
        return mask_fn(a0, a1, b0, b1)

    part = decode_tiled(y, spy, 3, decoder="_test-local3", tile=32, overlap=8, region=region)
    assert part.shape == (3, y1 - y0, x1 - x0)
    # The whole frame's tiles, blended alike: the same numbers.
    np.testing.assert_array_equal(part, full[:, y0:y1, x0:x1])
    # Only the tiles that touch the region are read (tiles of 31 x 32 here).
    th, ys = tile_layout(70, 32, 8)
    touching = [s for s in ys if s < y1 and s + th > y0]
    assert min(c[0] for c in calls) == touching[0] and max(c[1] for c in calls) == touching[-1] + th
    assert len(calls) == len(touching)


def test_band_memory_bound():
    # mask_fn is asked for one band of tiles at a time, never the frame.
    y, mask_fn, _, _ = _problem(300, 200, n=2)
    rows = []

    def spy(a0, a1, b0, b1):
        rows.append(a1 - a0)
        return mask_fn(a0, a1, b0, b1)

    decode_tiled(y, spy, 2, decoder="_test-pixel", tile=64, overlap=16)
    assert len(rows) > 1 and max(rows) <= 64


# -- sizes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 130), (130, 7), (33, 33), (5, 300)])
def test_odd_sizes_and_small_frames(shape):
    y, mask_fn, frames, _ = _problem(*shape, n=3)
    for dec, opts in [("_test-local3", {}), ("gap-tv", {"iterations": 3})]:
        r = decode_tiled(y, mask_fn, 3, decoder=dec, tile=32, overlap=8, **opts)
        assert r.shape == (3, *shape) and np.isfinite(r).all()
    # The per-pixel decoder is exact on any layout.
    np.testing.assert_allclose(
        decode_tiled(y, mask_fn, 3, decoder="_test-pixel", tile=32, overlap=8),
        _whole(y, mask_fn, 3, "_test-pixel"),
        rtol=2e-6,
        atol=1e-4,
    )


def test_large_non_square_frame():
    # The EM test size 3838 x 3710, with spec masks computed per band.
    H, W, n = 3838, 3710, 2
    rng = np.random.default_rng(0)
    y = rng.integers(0, 20, (H, W)).astype(np.uint16)

    def mask_fn(y0, y1, x0, x1):
        return spec_masks(99, n, H, W, (y0, y1, x0, x1))

    r = decode_tiled(y, mask_fn, n, decoder="_test-pixel", tile=1024, overlap=32, batch=4)
    assert r.shape == (n, H, W) and np.isfinite(r).all()
    C = mask_fn(1900, 1910, 1800, 1810)
    ref = _PixelDecoder().decode(
        torch.from_numpy(y[1900:1910, 1800:1810].astype(np.float32))[None],
        torch.from_numpy(C.astype(np.float32))[None],
    )[0].numpy()
    np.testing.assert_allclose(r[:, 1900:1910, 1800:1810], ref, rtol=1e-5)


def test_tile_multiple_pads_small_frames():
    y, mask_fn, _, _ = _problem(13, 21, n=2)
    r = decode_tiled(y, mask_fn, 2, decoder="_test-mult8", tile=32, overlap=8)
    np.testing.assert_allclose(r, _whole(y, mask_fn, 2, "_test-pixel"), rtol=1e-6, atol=1e-4)
    y, mask_fn, _, _ = _problem(100, 75, n=2)
    r = decode_tiled(y, mask_fn, 2, decoder="_test-mult8", tile=32, overlap=8)
    np.testing.assert_allclose(r, _whole(y, mask_fn, 2, "_test-pixel"), rtol=1e-6, atol=1e-4)


# -- seams ----------------------------------------------------------------------------------


def test_no_seam_with_gap_tv():
    H, W, n = 96, 112, 4
    y, mask_fn, frames, _ = _problem(H, W, n=n)
    tile, overlap = 48, 16
    tiled = decode_tiled(y, mask_fn, n, decoder="gap-tv", tile=tile, overlap=overlap, iterations=20)
    whole = _whole(y, mask_fn, n, "gap-tv", iterations=20)
    err = np.abs(tiled - frames).mean(0)
    # Pixels within 2 px of a tile edge inside the frame (where a seam would
    # show) against the rest.
    seam = np.zeros((H, W), bool)
    for axis, length in ((0, H), (1, W)):
        size, starts = tile_layout(length, tile, overlap)
        edges = [s for s in starts[1:]] + [s + size for s in starts[:-1]]
        for e in edges:
            sl = slice(max(e - 2, 0), e + 2)
            if axis == 0:
                seam[sl, :] = True
            else:
                seam[:, sl] = True
    inner = ~seam
    inner[:4, :] = inner[-4:, :] = inner[:, :4] = inner[:, -4:] = False  # frame border
    assert err[seam].mean() < 1.15 * err[inner].mean()
    # ... and no worse there than the whole-frame decode (content cancels).
    err_whole = np.abs(whole - frames).mean(0)
    assert err[seam].mean() < 1.05 * err_whole[seam].mean()
    # Tiling moves the result much less than the reconstruction error.
    assert np.abs(tiled - whole).mean() < 0.25 * np.abs(whole - frames).mean()


# -- out, dtype, progress ------------------------------------------------------------------


def test_out_memmap(tmp_path):
    y, mask_fn, _, _ = _problem(50, 61, n=3)
    ref = decode_tiled(y, mask_fn, 3, decoder="_test-local3", tile=24, overlap=8)
    mm = np.lib.format.open_memmap(tmp_path / "out.npy", "w+", np.float32, (3, 50, 61))
    r = decode_tiled(y, mask_fn, 3, decoder="_test-local3", tile=24, overlap=8, out=mm)
    assert r is mm
    mm.flush()
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), ref)


def test_out_integer_and_dtype():
    y, mask_fn, _, _ = _problem(20, 30, n=2)
    ref = decode_tiled(y, mask_fn, 2, decoder="_test-pixel")
    out = np.zeros((2, 20, 30), np.uint16)
    decode_tiled(y, mask_fn, 2, decoder="_test-pixel", out=out)
    np.testing.assert_array_equal(out, np.clip(np.rint(ref), 0, 65535).astype(np.uint16))
    r64 = decode_tiled(y, mask_fn, 2, decoder="_test-pixel", dtype=np.float64)
    assert r64.dtype == np.float64


def test_progress_and_decoder_instance():
    y, mask_fn, _, _ = _problem(60, 60, n=2)
    seen = []
    dec = _PixelDecoder()
    decode_tiled(y, mask_fn, 2, decoder=dec, tile=24, overlap=8, batch=2,
                 progress=lambda d, t: seen.append((d, t)))
    total = seen[-1][1]
    assert seen[0] == (0, total) and seen[-1] == (total, total) and total > 1
    assert all(b[0] >= a[0] for a, b in zip(seen, seen[1:]))


def test_torch_measurement_and_unmeasured_pixels():
    y, mask_fn, _, C = _problem(30, 30, n=3)
    C = C.copy()
    C[:, 10:14, 10:14] = 0  # no frame measured these pixels
    y = (C * 10.0).sum(0).astype(np.float32)
    r = decode_tiled(torch.from_numpy(y), lambda a, b, c, d: C[:, a:b, c:d], 3, decoder="gap-tv", iterations=10)
    assert np.isfinite(r).all()


# -- errors ---------------------------------------------------------------------------------


def test_errors():
    y, mask_fn, _, _ = _problem(20, 20, n=2)
    with pytest.raises(TcsValueError):
        decode_tiled(y[None], mask_fn, 2)
    with pytest.raises(TcsValueError):
        decode_tiled(np.zeros((0, 5)), mask_fn, 2)
    with pytest.raises(TcsValueError, match="mask_fn"):
        decode_tiled(y, mask_fn, 3, decoder="_test-pixel")
    bad = y.copy()
    bad[3, 4] = np.nan
    with pytest.raises(TcsValueError, match="NaN"):
        decode_tiled(bad, mask_fn, 2, decoder="_test-pixel")
    with pytest.raises(TcsValueError):
        decode_tiled(y, mask_fn, 0)
    with pytest.raises(TcsValueError, match="region"):
        decode_tiled(y, mask_fn, 2, region=(5, 5, 0, 10))
    with pytest.raises(TcsValueError, match="region"):
        decode_tiled(y, mask_fn, 2, region=(0, 21, 0, 10))
    with pytest.raises(TcsValueError, match="out"):
        decode_tiled(y, mask_fn, 2, out=np.zeros((2, 20, 19), np.float32))
    with pytest.raises(TcsValueError, match="tile"):
        decode_tiled(y, mask_fn, 2, tile=16, overlap=16)
    with pytest.raises(TcsValueError, match="options"):
        decode_tiled(y, mask_fn, 2, decoder=_PixelDecoder(), iterations=3)
    with pytest.raises(TcsValueError):
        decode_tiled(y, mask_fn, 2, decoder=3)
    with pytest.raises(TcsDecoderError):
        decode_tiled(y, mask_fn, 2, decoder="no-such-decoder")
    with pytest.raises(TcsValueError):
        decode_tiled(y, mask_fn, 2, iterations=5, tv_weight=(1.0, 2.0, 3.0))
    if not torch.cuda.is_available():
        with pytest.raises(TcsDeviceError):
            decode_tiled(y, mask_fn, 2, device="cuda")


def test_half_is_ignored_on_cpu():
    y, mask_fn, _, _ = _problem(20, 20, n=2)
    a = decode_tiled(y, mask_fn, 2, decoder="_test-pixel", half=True)
    np.testing.assert_array_equal(a, decode_tiled(y, mask_fn, 2, decoder="_test-pixel"))


@pytest.mark.gpu
def test_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    y, mask_fn, _, _ = _problem(90, 70, n=4)
    cpu = decode_tiled(y, mask_fn, 4, tile=48, overlap=16, iterations=10)
    gpu = decode_tiled(y, mask_fn, 4, device="cuda", tile=48, overlap=16, iterations=10)
    np.testing.assert_allclose(gpu, cpu, rtol=1e-3, atol=1e-2 * float(np.abs(cpu).mean()))


def test_import_does_not_load_torch():
    code = (
        "import sys, tcscodec, tcscodec.decoders, tcscodec.reconstruction\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tiling_options_object_equals_keywords():
    from tcscodec.decoders.tiling import TilingOptions

    rng = np.random.default_rng(3)
    H, W = 40, 56
    C = rng.integers(0, 2, (3, H, W), dtype=np.uint8)
    y = (C * rng.uniform(10, 20, (3, H, W))).sum(0)

    def mask_fn(a, b, c, d):
        return C[:, a:b, c:d]

    by_kw = decode_tiled(y, mask_fn, 3, decoder="_test-local3", tile=24, overlap=8, batch=2, outliers=False)
    opts = TilingOptions(tile=24, overlap=8, batch=2, outliers=False)
    assert np.array_equal(decode_tiled(y, mask_fn, 3, decoder="_test-local3", tiling=opts), by_kw)
    # a keyword overrides the object's field; None keeps it (the CLI's "decoder default")
    mixed = decode_tiled(y, mask_fn, 3, decoder="_test-local3", tiling=TilingOptions(tile=99, overlap=8),
                         tile=24, overlap=None, batch=2, outliers=False)
    assert np.array_equal(mixed, by_kw)
    assert TilingOptions.take(None, {"tile": 8}) == TilingOptions(tile=8)
    left = {"tile": 8, "iterations": 3}
    TilingOptions.take(opts, left)
    assert left == {"iterations": 3}  # the decoder's options stay
    for bad in ({"overlap": -1}, {"batch": 0}, {"tile": 0}):
        with pytest.raises(TcsValueError):
            TilingOptions(**bad)
