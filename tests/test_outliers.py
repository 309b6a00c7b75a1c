"""Hot and dead pixels decoded apart, and the noise statistics behind it."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tcscodec.decoders import decode_tiled  # noqa: E402
from tcscodec.decoders.noise import counts_per_pixel, dark_level, noise_level  # noqa: E402
from tcscodec.decoders.outliers import decode_apart, find_outliers  # noqa: E402
from tcscodec.masks import masks as spec_masks  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _lattice(B=10, H=64, W=80, level=50.0, seed=0):
    """A drifting lattice of round columns (3-4 px wide), Poisson counts."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    clean = np.stack([level * (0.4 + 0.6 * (np.cos(0.7 * (xx - 0.3 * b)) * np.cos(0.7 * yy)) ** 8)
                      for b in range(B)])
    return clean, np.random.default_rng(seed).poisson(clean).astype(np.float64)


def _measure(frames, seed=3):
    C = spec_masks(seed, len(frames), *frames.shape[1:])
    return (C * frames).sum(0), C


@pytest.mark.parametrize("dose", [1.0, 10.0, 100.0])
def test_counts_per_pixel_reads_the_dose_in_any_units(dose):
    frames = np.random.default_rng(1).poisson(dose, (10, 96, 96)).astype(np.float32)
    y, C = _measure(frames)
    csum = torch.from_numpy(C.sum(0)).float()[None]
    ybar = torch.from_numpy(y / np.maximum(C.sum(0), 1)).float()[None]
    for gain in (1.0, 0.003):
        est = counts_per_pixel(ybar * gain / (ybar.mean() * gain), csum).item()
        assert est == pytest.approx(dose, rel=0.25)
    assert dark_level(ybar).item() <= ybar.mean().item()
    assert noise_level(ybar * 3).item() == pytest.approx(3 * noise_level(ybar).item(), rel=1e-5)


def test_no_outliers_in_a_noisy_lattice():
    # Columns wider than a pixel are features, not defects, at any dose.
    for level in (1.0, 50.0, 2000.0):
        _, noisy = _lattice(level=level)
        y, C = _measure(noisy)
        bad, _ = find_outliers(torch.tensor(y, dtype=torch.float32)[None],
                               torch.tensor(C.sum(0), dtype=torch.float32)[None])
        assert int(bad.sum()) == 0, level


def _hot_movie():
    clean, _ = _lattice(level=200.0)
    clean[:, 36:56, 50:70] = 200.0  # a flat bright patch (vacuum, thick support)
    noisy = np.random.default_rng(0).poisson(clean).astype(np.float64)
    hot = noisy.copy()
    hot[:, 20, 30] = 65535.0      # stuck bright pixel
    hot[:, 45, 60] = 0.0          # dead pixel in the bright patch
    return clean, noisy, hot


def test_find_outliers_flags_hot_and_dead_pixels():
    _, _, hot = _hot_movie()
    y, C = _measure(hot)
    bad, ybar = find_outliers(torch.tensor(y, dtype=torch.float32)[None],
                              torch.tensor(C.sum(0), dtype=torch.float32)[None])
    assert sorted(map(tuple, torch.nonzero(bad[0]).tolist())) == [(20, 30), (45, 60)]
    assert ybar[0, 20, 30].item() == pytest.approx(65535.0)
    # The decoder sees the median of the neighbours there; the output keeps
    # the pixel's own Y / sum C in every frame.
    seen = []
    Ct = torch.tensor(C, dtype=torch.float32)[None]
    out = decode_apart(lambda a, b: seen.append(a) or b * 0 + 7.0, torch.tensor(y, dtype=torch.float32)[None], Ct)
    fed = seen[0] / Ct.sum(1).clamp(min=1)
    assert 40 < fed[0, 20, 30].item() < 500 and fed[0, 45, 60].item() > 150
    assert torch.all(out[0, :, 20, 30] == ybar[0, 20, 30]) and torch.all(out[0, :, 21, 30] == 7.0)


def test_bright_pixels_two_apart_are_a_moving_feature_not_hot_pixels():
    """A compact feature far brighter than the scene, moving fast, leaves
    single bright pixels in Y / sum C where the masks opened on it; its
    trail has another bright pixel within two pixels, a stuck pixel has not."""
    rng = np.random.default_rng(4)
    ybar = 4.0 + rng.normal(0, 1.0, (1, 48, 48))
    ybar[0, 20, 20], ybar[0, 22, 21] = 300.0, 260.0  # two pixels of one trail, two apart
    ybar[0, 35, 10] = 300.0  # a stuck pixel: nothing bright within two
    csum = torch.full((1, 48, 48), 5.0)
    bad, _ = find_outliers(torch.tensor(ybar, dtype=torch.float32) * csum, csum)
    assert sorted(map(tuple, torch.nonzero(bad[0]).tolist())) == [(35, 10)]


@pytest.mark.parametrize("decoder", ["tcs-unfold", "gap-tv"])
def test_hot_pixel_does_not_smear(decoder):
    clean, noisy, hot = _hot_movie()
    outs = {}
    for name, frames in (("plain", noisy), ("hot", hot)):
        y, C = _measure(frames)
        mask_fn = lambda y0, y1, x0, x1, C=C: C[:, y0:y1, x0:x1]  # noqa: E731
        outs[name] = decode_tiled(y, mask_fn, len(frames), decoder=decoder)
        if name == "hot":
            outs["smeared"] = decode_tiled(y, mask_fn, len(frames), decoder=decoder, outliers=False)
    away = np.ones(clean.shape[1:], bool)
    away[20, 30] = away[45, 60] = False
    # The stuck pixel keeps its value in every frame ...
    np.testing.assert_allclose(outs["hot"][:, 20, 30], 65535.0, rtol=1e-4)
    # ... and every other pixel decodes as without the defects (the dead
    # pixel's neighbours lose a little of its information).
    err = np.abs(outs["hot"] - outs["plain"])[:, away]
    assert err.max() < 0.25 * clean.mean() and err.mean() < 0.01 * clean.mean()
    # Without isolation the stuck pixel spreads far beyond itself.
    ring = np.abs(outs["smeared"] - outs["plain"])[:, 17:24, 27:34].max()
    assert ring > clean.max()


def test_decode_apart_is_exact_without_outliers():
    _, noisy = _lattice()
    y, C = _measure(noisy)
    yt, Ct = torch.tensor(y, dtype=torch.float32)[None], torch.tensor(C, dtype=torch.float32)[None]
    calls = []

    def decode(a, b):
        calls.append(a)
        return b * a[:, None]

    assert torch.equal(decode_apart(decode, yt, Ct), Ct * yt[:, None])
    assert calls[0] is yt
