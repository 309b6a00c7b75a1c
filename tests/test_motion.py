"""Motion estimated from the measurements, and motion-compensated decoding."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tcscodec.masks import masks as spec_masks, measured_mean
from tcscodec.motion import (MAX_DOSE, MAX_NON_RIGIDITY, MAX_ROUGHNESS, MIN_EXCURSION, MIN_GROUPS, MIN_SPEED,
                             RIGID_START_FRAMES, RIGID_START_NON_RIGIDITY, RIGID_START_ROUGHNESS, MotionPath,
                             estimate_motion, register)
from tcscodec.simulate import texture_movie

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _texture(seed: int = 0, size: int = 384) -> np.ndarray:
    """A random, smooth-and-detailed 2-D texture (blobs over fine grain)."""
    rng = np.random.default_rng(seed)
    f2 = np.fft.fftfreq(size)[:, None] ** 2 + np.fft.rfftfreq(size)[None] ** 2
    noise = rng.standard_normal((size, size))
    coarse = np.fft.irfft2(np.fft.rfft2(noise) * np.exp(-2 * np.pi**2 * 6.0**2 * f2), s=noise.shape)
    fine = np.fft.irfft2(np.fft.rfft2(rng.standard_normal((size, size))) * np.exp(-2 * np.pi**2 * 1.0**2 * f2),
                         s=noise.shape)
    img = 1.0 + coarse / coarse.std() * 0.35 + fine / fine.std() * 0.15
    return np.clip(img, 0.05, None).astype(np.float32)


def _movie(drift=(0.9, -1.2), T=40, dose=40.0, size=96, seed=1, rotation_deg=0.0):
    return texture_movie(_texture(seed), T, np.random.default_rng(seed), dose, shape=(size, size),
                         drift_px=drift, drift_jitter_px=0.0, rotation_deg=rotation_deg, flicker=0.0)


def _group_means(frames, B, seed=5):
    T, H, W = frames.shape
    C = spec_masks(seed, B, H, W).astype(np.float64)
    sizes = [min(B, T - s) for s in range(0, T, B)]
    ys = [(C[:n] * frames[s:s + n]).sum(0) for s, n in zip(range(0, T, B), sizes)]
    return C, ys, [measured_mean(y, C[:n].sum(0)) for y, n in zip(ys, sizes)], sizes


def _estimate(frames, B):
    _, _, means, sizes = _group_means(frames.astype(np.float64), B)
    return estimate_motion(lambda g, w: means[g][w[0]:w[1], w[2]:w[3]], sizes, frames.shape[1:])


def _psnr(x, ref):
    r, mse = float(ref.max() - ref.min()), float(np.mean((x - ref) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(r * r / mse)


def test_register_finds_whole_and_subpixel_shifts_far_from_zero():
    img = _texture(3, 256).astype(np.float64)
    ref = img[60:188, 60:188]
    for dy, dx in [(0, 0), (7, -11), (-25, 31)]:
        moved = img[60 - dy:188 - dy, 60 - dx:188 - dx]
        ey, ex, score = register(ref, moved)
        assert (ey, ex) == pytest.approx((dy, dx), abs=0.05)
        assert score > 0.95
    # half a pixel: the mean of two neighbouring whole shifts
    moved = 0.5 * (img[50:178, 60:188] + img[49:177, 60:188])
    assert register(ref, moved)[:2] == pytest.approx((10.5, 0.0), abs=0.15)


def test_register_ignores_unmeasured_pixels():
    img = _texture(4, 256).astype(np.float64)
    ref, moved = img[60:188, 60:188].copy(), img[52:180, 65:193].copy()
    ref[::7, ::5] = np.nan
    moved[10:30, 40:90] = np.nan
    assert register(ref, moved)[:2] == pytest.approx((8, -5), abs=0.1)


def test_register_rejects_images_of_different_shapes():
    with pytest.raises(ValueError, match="one shape"):
        register(np.zeros((8, 8)), np.zeros((8, 9)))


@pytest.mark.parametrize("B", [5, 10, 20])
def test_estimate_motion_follows_a_constant_drift(B):
    m = _movie()
    path = _estimate(m.frames, B)
    truth = np.asarray(m.meta["drift_px"])
    assert path.frames.shape == truth.shape
    # the velocity, which is what a group's shifts are made of
    assert np.median(path.velocity(), axis=0) == pytest.approx((0.9, -1.2), abs=0.08)
    worst = max(np.abs(path.group_shifts(g) - (truth[s:s + n] - truth[s:s + n].mean(0))).max()
                for g, (s, n) in enumerate(zip(path.group_starts, [B] * len(path.group_starts))))
    assert worst < 0.25 * B * 0.1 + 0.6
    # a constant drift is smooth; with 2 groups (B = 20) smoothness cannot be seen: decoded as still
    n_groups = len(path.group_starts)
    assert all((path.compensated(g) is not None) == (n_groups >= MIN_GROUPS) for g in range(n_groups))
    assert (path.roughness() or 0.0) < 0.1


def test_estimate_motion_gives_the_same_path_on_any_number_of_threads():
    m = _movie(T=60, rotation_deg=0.3)
    _, _, means, sizes = _group_means(m.frames.astype(np.float64), 6)
    read = []

    def mean(g, w):
        read.append(g)
        return means[g][w[0]:w[1], w[2]:w[3]]

    one = estimate_motion(mean, sizes, m.frames.shape[1:]).to_dict()
    assert sorted(read) == list(range(10))  # each group read once
    for threads in (2, 3, 16):
        read.clear()
        assert estimate_motion(mean, sizes, m.frames.shape[1:], threads=threads).to_dict() == one
        assert sorted(read) == list(range(10))


def test_a_rotating_movie_is_measured_as_not_rigid_and_the_limit_decodes_it_as_still():
    drifting = _estimate(_movie(T=60).frames, 10)
    assert drifting.non_rigidity() < 0.1
    assert drifting.summary()["non_rigidity"] == drifting.non_rigidity()
    # 0.6 degree per frame moves the quarters' centres (~34 px out) 0.36 px/frame from their mean,
    # against a drift of 1.5 px/frame
    turning = _estimate(_movie(T=60, rotation_deg=0.6).frames, 10)
    assert turning.roughness() < MAX_ROUGHNESS  # the path itself is smooth...
    assert turning.non_rigidity() == pytest.approx(math.radians(0.6) * 34 / 1.5, rel=0.3)  # ...the scene is not
    assert turning.non_rigidity() < MAX_NON_RIGIDITY and turning.compensated(2) is not None
    assert all(turning.compensated(g, max_non_rigidity=0.2) is None for g in range(6))
    q = MotionPath.from_dict(json.loads(json.dumps(turning.to_dict())))
    assert q.local_spread == turning.local_spread and q.non_rigidity() == turning.non_rigidity()
    # not measured (a path stored before the measure existed): not checked
    legacy = {k: v for k, v in turning.to_dict().items() if k != "local_spread"}
    assert MotionPath.from_dict(legacy).non_rigidity() is None
    assert MotionPath.from_dict(legacy).compensated(2) is not None


def test_estimate_motion_of_a_still_movie_compensates_nothing():
    m = _movie(drift=(0.0, 0.0), dose=5.0)
    path = _estimate(m.frames, 10)
    assert np.abs(path.velocity()).max() < 0.03
    assert [path.compensated(g) for g in range(4)] == [None] * 4
    assert path.summary()["groups_compensated"] == 0


def test_estimate_motion_of_one_group_is_still_and_bad_sizes_are_refused():
    path = estimate_motion(lambda g, w: np.ones((8, 8)), [7], (8, 8))
    assert path.frames.shape == (7, 2) and not path.frames.any()
    assert path.compensated(0) is None
    with pytest.raises(ValueError, match="positive"):
        estimate_motion(lambda g, w: np.ones((8, 8)), [], (8, 8))


def test_estimate_motion_replaces_an_unregistrable_pair_by_the_median_velocity():
    m = _movie(T=50)
    frames = m.frames.astype(np.float64)
    frames[30:40] = np.random.default_rng(9).poisson(40.0, frames[30:40].shape)  # a blank group
    path = _estimate(frames, 10)
    assert np.median(path.velocity(), axis=0) == pytest.approx((0.9, -1.2), abs=0.1)


def test_motion_path_round_trips_through_a_dict_and_measures_groups():
    frames = np.cumsum(np.full((12, 2), 1.0), axis=0) - 1.0
    p = MotionPath(frames, (0, 5, 10), (0.9, 0.8))
    q = MotionPath.from_dict(p.to_dict())
    assert np.array_equal(q.frames, p.frames) and q.group_starts == p.group_starts and q.confidence == p.confidence
    assert q.dose is None
    assert p.group_shifts(0)[:, 0].tolist() == [-2.0, -1.0, 0.0, 1.0, 2.0]
    assert p.group_shifts(2)[:, 0].tolist() == [-0.5, 0.5]
    assert p.compensated(0, max_roughness=math.inf) is not None  # 3 groups: too few for roughness
    assert p.compensated(2, min_excursion=0.6, max_roughness=math.inf) is None  # 0.5 px from its middle
    assert MIN_EXCURSION == 0.5
    fast = MotionPath(np.cumsum(np.full((120, 2), 4.0), axis=0), (0, 30, 60, 90))
    assert fast.compensated(0) is None  # 58 px from the middle: decoded as still
    assert fast.compensated(0, max_excursion=60) is not None
    with pytest.raises(ValueError, match="out of range"):
        p.group_shifts(3)


def test_motion_path_compensates_only_fast_smooth_groups_of_low_dose_movies():
    starts = (0, 10, 20, 30)
    slow = MotionPath(np.cumsum(np.full((40, 2), 0.5), axis=0), starts, (), 5.0)  # 0.71 px/frame
    assert slow.compensated(0) is None and MIN_SPEED > 0.71
    assert slow.compensated(0, min_speed=0.7) is not None
    frames = np.cumsum(np.full((40, 2), 1.0), axis=0)  # 1.41 px/frame
    assert MotionPath(frames, starts, (), None).compensated(0) is not None  # dose unknown: not checked
    assert MotionPath(frames, starts, (), MAX_DOSE).compensated(0) is not None
    bright = MotionPath(frames, starts, (), 4 * MAX_DOSE)
    assert bright.compensated(0) is None and bright.compensated(0, max_dose=5 * MAX_DOSE) is not None
    assert bright.summary()["dose"] == 4 * MAX_DOSE and bright.summary()["groups_compensated"] == 0
    noiseless = MotionPath(frames, starts, (), math.inf)
    assert noiseless.compensated(0) is None
    assert MotionPath.from_dict(json.loads(json.dumps(noiseless.to_dict()))).dose == math.inf
    # two or three groups cannot show how smooth the drift is: still
    assert MotionPath(frames[:20], (0, 10), (), 5.0).roughness() is None
    assert MotionPath(frames[:20], (0, 10), (), 5.0).compensated(0) is None
    three = MotionPath(frames[:30], starts[:3], (), 5.0)
    assert three.roughness() is None and three.compensated(0) is None and MIN_GROUPS == 4




def test_a_rigid_start_needs_a_smooth_path_a_scene_moving_as_one_and_short_groups():
    starts = (0, 10, 20, 30)
    frames = np.cumsum(np.full((40, 2), 1.0), axis=0)  # constant drift: roughness 0
    rigid = MotionPath(frames, starts, (), 5.0, 0.05)  # quarters 0.05 px/frame apart of 1.41
    assert rigid.roughness() == 0 and rigid.non_rigidity() < RIGID_START_NON_RIGIDITY
    assert all(rigid.rigid_start(g) for g in range(4)) and RIGID_START_FRAMES == 10
    # particles moving on their own, or the spread not measured
    assert not MotionPath(frames, starts, (), 5.0, 0.3).rigid_start(0)
    assert not MotionPath(frames, starts, (), 5.0).rigid_start(0)
    # groups longer than RIGID_START_FRAMES, and the short last group of such a movie
    long = MotionPath(np.cumsum(np.full((50, 2), 1.0), axis=0), (0, 12, 24, 36, 48), (), 5.0, 0.05)
    assert [long.rigid_start(g) for g in range(5)] == [False] * 4 + [True]
    # ... whose start the path leaves to the measurements (the reader's start check)
    assert [long.rigid_start_open(g) for g in range(5)] == [True] * 4 + [False]
    assert long.summary()["groups_rigid_start"] == 1 and long.summary()["groups_start_open"] == 4
    assert not any(rigid.rigid_start_open(g) for g in range(4))
    assert not MotionPath(long.frames, long.group_starts, (), 5.0, 0.3).rigid_start_open(0)
    # a path whose velocity changes by more than RIGID_START_ROUGHNESS of the speed between groups
    bent = frames.copy()
    bent[20:] += np.arange(1, 21)[:, None] * np.array([0.3, -0.3])
    path = MotionPath(bent, starts, (), 5.0, 0.05)
    assert RIGID_START_ROUGHNESS < path.roughness() <= MAX_ROUGHNESS and path.compensated(0) is not None
    assert not path.rigid_start(0) and not path.rigid_start_open(0)


def test_start_groups_spread_over_the_candidates():
    from tcscodec.motion_check import START_CHECK_GROUPS, start_groups

    assert START_CHECK_GROUPS == 4
    assert start_groups([3, 5]) == [3, 5] and start_groups([]) == []
    assert start_groups(list(range(10))) == [0, 9, 3, 6]  # the outer two first
    assert start_groups(list(range(2, 7))) == [2, 6, 3, 5]
    assert start_groups([4, 7, 8]) == [4, 8, 7]


def test_the_start_check_stops_when_two_groups_are_clear(monkeypatch):
    from tcscodec import motion_check as mc

    monkeypatch.setattr(mc, "check_window", lambda reader: None)
    monkeypatch.setattr(mc, "_neighbours", lambda reader, g, window: (None, None))
    scores = {0: 2.0, 9: 1.0, 3: -5.0, 6: -5.0}  # by group (the fake decodes below are the group)
    monkeypatch.setattr(mc, "prediction_score", lambda soft, rigid, d, neighbours: scores[rigid])
    seen = []

    def decode(g, window, rigid):
        seen.append(g)
        return g

    assert mc.start_score(None, [0, 9, 3, 6], decode) == 1.5 and seen == [0, 0, 9, 9]
    scores.update({0: 0.3, 9: 0.2, 3: 0.0})  # means 0.25, then 0.17: within START_CLEAR of the margin
    seen.clear()
    assert mc.start_score(None, [0, 9, 3, 6], decode) == pytest.approx((0.3 + 0.2 - 5) / 4) and len(seen) == 8
    scores.update({0: 0.1 - mc.START_CLEAR, 9: 0.1 - mc.START_CLEAR})  # clear below the margin
    seen.clear()
    assert mc.start_score(None, [0, 9, 3, 6], decode) == pytest.approx(0.1 - mc.START_CLEAR) and len(seen) == 4


def test_a_jittery_path_is_rough_and_decoded_as_still():
    # the drift turns by 90 degrees every 20 frames: groups of 10 see their velocity change
    steps = np.repeat(np.array([[1.5, 0.0], [0.0, 1.5], [1.5, 0.0]]), 20, axis=0)
    starts = (0, 10, 20, 30, 40, 50)
    rough = MotionPath(np.cumsum(steps, axis=0), starts, (), 5.0)
    assert rough.roughness() > MAX_ROUGHNESS
    assert all(rough.compensated(g) is None for g in range(6))
    assert rough.compensated(1, max_roughness=math.inf) is not None
    smooth = MotionPath(np.cumsum(np.full((60, 2), 1.2), axis=0), starts, (), 5.0)
    assert smooth.roughness() == pytest.approx(0.0, abs=1e-9)
    assert smooth.summary()["roughness"] == smooth.roughness()
    assert all(smooth.compensated(g) is not None for g in range(6))


@pytest.mark.parametrize("dose, drift", [(2.0, (0.9, -1.2)), (10.0, (0.9, -1.2)), (400.0, (0.0, 0.0))])
def test_estimate_motion_measures_the_dose_from_the_shot_noise(dose, drift):
    m = _movie(dose=dose, drift=drift)
    C, ys, means, sizes = _group_means(m.frames.astype(np.float64), 10)
    path = estimate_motion(lambda g, w: means[g][w[0]:w[1], w[2]:w[3]], sizes, m.frames.shape[1:],
                           measurement=lambda g, w: (ys[g][w[0]:w[1], w[2]:w[3]],
                                                     C[:sizes[g]].sum(0)[w[0]:w[1], w[2]:w[3]]))
    if dose < MAX_DOSE:
        assert dose / 2 < path.dose < 1.2 * dose
    else:  # texture looks like noise at high dose: the estimate errs low, but not below the gate
        assert MAX_DOSE < path.dose < dose


def test_frame_warp_moves_content_exactly_and_back():
    from tcscodec.decoders.warp import FrameWarp

    x = torch.rand(2, 3, 20, 24)
    shifts = torch.tensor([[[0.0, 0.0], [2.2, -3.0], [-1.0, 4.6]]]).expand(2, 3, 2)
    w = FrameWarp(shifts, (20, 24), multiple=4)
    # |dy| <= 2 and |dx| <= 5 px, each margin rounded up to a multiple of 4
    assert w.margins == (4, 8) and w.canvas == (28, 40)
    z = w.align(x)
    # content of frame b at r + s_b in the detector is at r on the canvas
    assert torch.equal(z[:, 1, 4 - 2 + 5:4 + 10, 8 + 3:8 + 10], x[:, 1, 5:12, 0:7])
    assert torch.equal(z[:, 2, 4 + 1:4 + 20, 8 - 5:8 - 5 + 24], x[:, 2, 0:19, :])
    assert torch.equal(w.unalign(z), x)
    assert torch.equal(w.unalign(w.align(x, "zero")), x)
    cover = w.coverage(2, 3)
    assert torch.equal(w.align(torch.ones_like(x), "zero"), cover)
    with pytest.raises(ValueError, match="warp made for"):
        w.align(torch.rand(2, 3, 20, 20))


def _decode_groups(decoder, C, ys, sizes, path):
    out = []
    for g, (y, n) in enumerate(zip(ys, sizes)):
        s = None if path is None else path.compensated(g)
        kw = {} if s is None else {"shifts": torch.from_numpy(s).float()[None]}
        out.append(decoder.decode(torch.from_numpy(y).float()[None], torch.from_numpy(C[:n]).float()[None], **kw)[0])
    return torch.cat(out).numpy()


@pytest.mark.parametrize("name, gain", [("gap-tv", 0.8), ("tcs-unfold", 2.0)])
def test_compensated_decoding_beats_still_decoding_on_a_drifting_movie(name, gain):
    from tcscodec.decoders import get_decoder
    from tcscodec import weights

    if name == "tcs-unfold" and not weights.available(name):
        pytest.skip("learned weights not installed")
    m = _movie(drift=(1.5, 1.0), T=32, dose=30.0)
    C, ys, means, sizes = _group_means(m.frames.astype(np.float64), 8)
    path = estimate_motion(lambda g, w: means[g][w[0]:w[1], w[2]:w[3]], sizes, m.frames.shape[1:])
    dec = get_decoder(name)
    still = _psnr(_decode_groups(dec, C, ys, sizes, None), m.clean)
    moving = _psnr(_decode_groups(dec, C, ys, sizes, path), m.clean)
    assert moving > still + gain, (still, moving)


def test_gap_tv_with_zero_excursion_is_plain_gap_tv():
    from tcscodec.decoders.gap_tv import gap_tv

    g = torch.Generator().manual_seed(0)
    C = (torch.rand(1, 6, 32, 32, generator=g) > 0.5).float()
    y = (C * (5 + torch.rand(1, 6, 32, 32, generator=g))).sum(1)
    plain = gap_tv(y, C, iterations=8, temporal_weight=0.5)
    still = gap_tv(y, C, iterations=8, temporal_weight=0.5, shifts=torch.full((6, 2), 0.3))
    assert torch.equal(plain, still)


@pytest.fixture(scope="module")
def drifting_file(tmp_path_factory):
    import tcscodec

    m = _movie(drift=(1.5, 1.0), T=32, dose=30.0)  # 4 groups: enough to judge the path's roughness
    path = tmp_path_factory.mktemp("motion") / "drift.tcs"
    tcscodec.write(path, m.frames, B=8, seed=11)
    return path, m


def test_reader_estimates_motion_and_decodes_in_the_moving_frame(drifting_file):
    import tcscodec

    path, m = drifting_file
    with tcscodec.open(path, decoder="gap-tv") as r:
        motion = r.motion()
        assert motion is r.motion()  # computed once
        assert np.median(motion.velocity(), axis=0) == pytest.approx((1.5, 1.0), abs=0.1)
        assert motion.summary()["groups_compensated"] == 4
        moving = r.read()  # compensation is on by default
        still = r.read(motion=False)
        region = r.read(12, region=(20, 70, 10, 60))
    assert _psnr(moving, m.clean) > _psnr(still, m.clean) + 0.8
    # a region decodes as the whole frame does, up to the tiling's blending
    assert _psnr(region, moving[12, 20:70, 10:60]) > 35
    with tcscodec.open(path, decoder="gap-tv", motion=False) as r:
        assert np.array_equal(r.read(), still)
        assert r._motion is None  # off: the path is never estimated
    with tcscodec.open(path, decoder="gap-tv", motion=True) as r:
        assert np.array_equal(r.read(), moving)


def test_cli_info_shows_motion_and_decode_turns_it_off(drifting_file, tmp_path):
    from click.testing import CliRunner

    from tcscodec.cli.main import main

    path, m = drifting_file
    runner = CliRunner()
    res = runner.invoke(main, ["info", str(path), "--motion"])
    assert res.exit_code == 0, res.output
    assert "motion      drift 1.8" in res.output and "compensated in 4 of 4 groups" in res.output
    res = runner.invoke(main, ["info", str(path)])
    assert "\nmotion" not in res.output
    outs = {}
    for mode in ("auto", "off", "default"):
        out = tmp_path / f"{mode}.npy"
        flags = [] if mode == "default" else ["--motion", mode]
        res = runner.invoke(main, ["decode", str(path), "-o", str(out), "--decoder", "gap-tv", *flags, "-q"])
        assert res.exit_code == 0, res.output
        outs[mode] = np.load(out)
    assert _psnr(outs["auto"], m.clean) > _psnr(outs["off"], m.clean) + 0.8
    assert np.array_equal(outs["default"], outs["auto"])


def test_training_batches_carry_the_crops_drift_oriented_like_the_crop():
    from tcscodec.training import MoviePool, TrainConfig, _estimated_shifts

    cfg = TrainConfig(batch=16, crop=32, pool_movies=1, movie_frames=8, movie_size=48, texture_fraction=0.0)
    pool = MoviePool(cfg)
    frames = np.zeros((8, 48, 48), np.float32)
    frames[:, 20:24, 10:14] = 1.0  # a square moving (+1, +2) px per frame
    for t in range(8):
        frames[t] = np.roll(frames[0], (t, 2 * t), axis=(0, 1))
    drift = np.stack([np.arange(8.0), 2 * np.arange(8.0)], axis=1)
    pool.movies = [(frames, frames.copy(), drift)]
    X, Z, neighbours, D = pool.batch(4, np.random.default_rng(0))
    assert neighbours is None and D.shape == (16, 4, 2)
    checked = 0
    for x, d in zip(X, D):
        # the square's centre of mass moves as D says, whatever the crop's rotation
        if all(np.count_nonzero(f) == 16 for f in x):  # the square stays inside the crop
            com = [np.array(np.nonzero(f)).mean(1) for f in x]
            assert com[-1] - com[0] == pytest.approx(d[-1] - d[0])
            checked += 1
    assert checked >= 3
    cfg = TrainConfig(motion_error=0.0)
    s = _estimated_shifts(D, np.random.default_rng(1), cfg)
    assert s.shape == D.shape and np.allclose(s.mean(1), 0) and np.allclose(s[:, -1] - s[:, 0], D[:, -1] - D[:, 0])
    assert _estimated_shifts(np.zeros((3, 4, 2)), np.random.default_rng(1), cfg) is None


def test_training_with_motion_runs(tmp_path):
    from tcscodec.training import TrainConfig, train

    cfg = TrainConfig(steps=2, batch=2, crop=32, n_min=4, n_max=6, pool_movies=2, movie_frames=8,
                      movie_size=48, checkpoint_every=1, threads=1, motion_prob=1.0, texture_fraction=0.0,
                      model={"stages": 1, "width": 8, "blocks": 1, "factor": 2, "warm_start": 2})
    ckpt = train(cfg, tmp_path / "run", progress=False, log=lambda s: None)
    assert torch.load(ckpt, weights_only=True)["step"] == 2


def test_to_dask_estimates_the_motion_once_and_equals_read(tmp_path):
    pytest.importorskip("dask")
    import tcscodec

    m = _movie(drift=(1.0, -1.2), T=20, dose=10.0, size=64)
    path = tcscodec.write(tmp_path / "drift.tcs", m.frames, B=5, seed=2, tile=(32, 32))
    with tcscodec.open(path, decoder="gap-tv", iterations=4, motion=True, dtype=np.float32) as r:
        x = r.to_dask()
        assert r._motion is None  # not estimated to make the array: one task of its graph does it
        assert r.motion().summary()["groups_compensated"] == 4
        expected = r.read()
        assert np.array_equal(x.compute(scheduler="threads"), expected)
        # a reader that has the path already hands it to the tasks: no estimate in the graph
        assert not any("_motion_task" in str(k) for k in dict(r.to_dask().dask))
    # the path is estimated once per compute, however many chunks and threads
    # (the file's state below is new to every thread: no reader holds it yet)
    calls = []
    real = tcscodec.TcsReader.motion

    def counted(self, threads=None):
        if self._motion is None:
            calls.append(1)
        return real(self, threads)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tcscodec.TcsReader, "motion", counted)
        with tcscodec.open(path, decoder="gap-tv", iterations=4, dtype=np.float32) as fresh:
            y = fresh.to_dask(chunks=(5, 32, 32))
            assert calls == [] and len(y.chunks[1]) == 2
            assert np.array_equal(y.compute(scheduler="threads", num_workers=3), expected)
        assert calls == [1]


# -- motion across the field: a tile's own translation ------------------------------------------


def _shift_recorder():
    """A decoder that compensates motion and records the shifts each tile gets."""
    from tcscodec.decoders import Decoder

    class ShiftRecorder(Decoder):
        uses_motion = True
        receptive_margin = 0

        def __init__(self):
            super().__init__("cpu")
            self.seen: list[np.ndarray] = []

        def decode(self, y, masks, shifts=None):
            if shifts is not None:
                self.seen.extend(np.asarray(shifts))
            return masks.float() * (y / masks.sum(1).clamp_min(1))[:, None]

    return ShiftRecorder()


def test_each_tile_gets_the_shifts_of_the_field_at_its_centre():
    from tcscodec.decoders import decode_tiled

    n, H, W = 4, 96, 160
    C = spec_masks(3, n, H, W)
    y = (C * 7.0).sum(0).astype(np.float32)
    shifts = np.array([[-1.5, 0.5], [-0.5, 0.2], [0.5, -0.2], [1.5, -0.5]])
    grad = np.arange(n)[:, None, None] * np.array([[0.0, 0.01], [-0.01, 0.002]])
    plain, rec = _shift_recorder(), _shift_recorder()
    kw = dict(tile=64, overlap=8)
    a = decode_tiled(y, lambda *w: C[:, w[0]:w[1], w[2]:w[3]], n, decoder=plain, shifts=shifts, **kw)
    b = decode_tiled(y, lambda *w: C[:, w[0]:w[1], w[2]:w[3]], n, decoder=_shift_recorder(), shifts=shifts,
                     shift_gradient=np.zeros((n, 2, 2)), **kw)
    assert np.array_equal(a, b)  # no gradient: every tile the same shifts, as before
    assert all(np.allclose(s, shifts) for s in plain.seen) and len(plain.seen) > 1
    decode_tiled(y, lambda *w: C[:, w[0]:w[1], w[2]:w[3]], n, decoder=rec, shifts=shifts, shift_gradient=grad, **kw)
    assert len(rec.seen) == len(plain.seen)
    # each tile's shifts are those of the affine field at one point of the frame
    centres = [np.linalg.lstsq(grad[1], s[1] - shifts[1], rcond=None)[0] + ((H - 1) / 2, (W - 1) / 2)
               for s in rec.seen]
    for s, c in zip(rec.seen, centres):
        assert np.allclose(s, shifts + grad @ (c - ((H - 1) / 2, (W - 1) / 2)), atol=1e-4)
        assert 0 <= c[0] < H and 0 <= c[1] < W
    assert len({tuple(np.round(c, 3)) for c in centres}) == len(centres)  # one per tile
    with pytest.raises(ValueError, match="shift_gradient"):
        decode_tiled(y, lambda *w: C[:, w[0]:w[1], w[2]:w[3]], n, decoder=_shift_recorder(), shifts=shifts,
                     shift_gradient=np.zeros((n, 2)), **kw)


def test_the_tiling_grows_only_along_the_axes_the_scene_moves_along():
    """The overlap (and tile) grow by twice the largest shift along each
    axis apart: a drift along y leaves the tiling along x as still."""
    from tcscodec.decoders import decode_tiled

    n, H, W = 4, 200, 200
    C = spec_masks(3, n, H, W)
    y = (C * 7.0).sum(0).astype(np.float32)

    def tiles(shifts):
        rec = _shift_recorder()
        sizes = []
        real = rec.decode

        def decode(y, masks, shifts=None):
            sizes.append(tuple(y.shape[-2:]))
            return real(y, masks, shifts)

        rec.decode = decode
        decode_tiled(y, lambda *w: C[:, w[0]:w[1], w[2]:w[3]], n, decoder=rec, shifts=shifts, tile=64, overlap=8)
        return sizes

    still = tiles(None)
    along_y = tiles(np.array([[-9.0, 0.0], [-3.0, 0.0], [3.0, 0.0], [9.0, 0.0]]))
    along_x = tiles(np.array([[0.0, -9.0], [0.0, -3.0], [0.0, 3.0], [0.0, 9.0]]))
    assert {w for _, w in along_y} == {w for _, w in still} != {h for h, _ in along_y}
    assert {h for h, _ in along_x} == {h for h, _ in still} != {w for _, w in along_x}
    assert len(along_y) == len(along_x) > len(still)


def test_a_turning_scene_is_measured_as_an_affine_field():
    turning = _estimate(_movie(T=60, rotation_deg=0.6).frames, 10)
    w = math.radians(0.6)  # turning +x towards +y
    assert turning.velocity_gradient() == pytest.approx(np.array([[0.0, w], [-w, 0.0]]), abs=0.25 * w)
    assert turning.residual_spread < 0.2 * turning.local_spread  # the field explains the quarters
    # a tile a third of the window's side is aligned to within a limit the whole window is not
    assert turning.non_rigidity(32) < 0.5 * turning.non_rigidity()
    limit = 0.5 * (turning.non_rigidity(32) + turning.non_rigidity())
    assert turning.compensated(2, extent=32, max_non_rigidity=limit) is not None
    assert turning.compensated(2, max_non_rigidity=limit) is None
    g = turning.group_shift_gradient(2)
    assert g.shape == (10, 2, 2) and np.allclose(g[4] + g[5], 0) and np.allclose(g[9], 4.5 * turning.velocity_gradient())
    q = MotionPath.from_dict(json.loads(json.dumps(turning.to_dict())))
    assert q.gradient == turning.gradient and q.residual_spread == turning.residual_spread
    with pytest.raises(ValueError, match="4 values"):
        MotionPath.from_dict({**turning.to_dict(), "gradient": [0.0, 1.0]})
    drifting = _estimate(_movie(T=60).frames, 10)
    assert np.abs(drifting.velocity_gradient()).max() < 0.1 * w


def test_the_reader_aligns_each_tile_by_the_field(drifting_file):
    import tcscodec

    path, _ = drifting_file
    frames = np.cumsum(np.tile([1.5, 1.0], (32, 1)), axis=0)
    turning = MotionPath(frames, (0, 8, 16, 24), (), 10.0, 0.05, (0.0, 0.01, -0.01, 0.0), 0.0)
    rec = _shift_recorder()
    with tcscodec.open(path) as r:
        r._motion = turning
        r.decode_group(1, decoder=rec, motion=True, tile=48, overlap=8)
    s, g = turning.group_shifts(1), turning.group_shift_gradient(1)
    centres = {tuple(np.round(np.linalg.lstsq(g[0], t[0] - s[0], rcond=None)[0], 3)) for t in rec.seen}
    assert len(rec.seen) > 1 and len(centres) == len(rec.seen)  # a translation of its own per tile
    assert all(np.allclose(t, s + g @ (np.linalg.lstsq(g[0], t[0] - s[0], rcond=None)[0])) for t in rec.seen)
    # a frame of one tile: the path's own shifts, as before
    one = _shift_recorder()
    with tcscodec.open(path) as r:
        r._motion = turning
        r.decode_group(1, decoder=one, motion=True)
    assert len(one.seen) == 1 and np.allclose(one.seen[0], s)
