"""The held-out check of motion-compensated decoding (tcscodec.motion_check)
and how the reader uses it."""

from __future__ import annotations

import numpy as np
import pytest

from tcscodec.masks import masks as spec_masks
from tcscodec.motion_check import aligned_mean, predicted_measurement, prediction_score, shift_image
from tcscodec.quantize import cast_frames


def _scene(seed=0, size=80):
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(size)[:, None] ** 2 + np.fft.fftfreq(size)[None] ** 2
    img = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((size, size))) * np.exp(-60 * f * size)))
    return np.clip(50 + 15 * img / img.std(), 1, None)


def test_shift_image_moves_content_by_whole_and_fractional_pixels():
    img = _scene()
    moved = shift_image(img, (3, -5))
    np.testing.assert_array_equal(moved[3:, :-5], img[:-3, 5:])
    np.testing.assert_array_equal(moved[:3, :-5], np.repeat(img[:1, 5:], 3, 0))  # the border extends
    ramp = np.tile(np.arange(10.0), (4, 1))
    np.testing.assert_allclose(shift_image(ramp, (0, 0.25))[:, 1:], ramp[:, 1:] - 0.25)
    np.testing.assert_allclose(shift_image(shift_image(img, (1.5, -2.5)), (-1.5, 2.5))[4:-4, 4:-4],
                               shift_image(shift_image(img, (1.5, -2.5)), (-1.5, 2.5))[4:-4, 4:-4])
    np.testing.assert_array_equal(shift_image(img, (0, 0)), img)


def _drifting_groups(n=8, v=(1.0, -0.75), dose=None, seed=1):
    """Three groups of ``n`` frames of one scene drifting at ``v``:
    (displacements, frames, measurements, masks) per group."""
    scene = _scene(seed)
    C = spec_masks(seed, n, *scene.shape).astype(np.float64)
    rng = np.random.default_rng(seed)
    groups = []
    for g in range(3):
        d = np.array([[v[0] * t, v[1] * t] for t in range(g * n, (g + 1) * n)])
        frames = np.stack([shift_image(scene, s) for s in d])
        counts = frames if dose is None else rng.poisson(frames * dose) / dose
        groups.append((d, frames, (C * counts).sum(0), C))
    return groups


@pytest.mark.parametrize("dose, least", [(None, 10.0), (1.0, 0.02), (0.1, 0.001)])
def test_the_true_frames_predict_the_neighbours_better_than_their_mean(dose, least):
    """The truth beats the best still decode (the group's mean frame) by
    far on noise-free neighbours and by less as their shot noise (the same
    for both) dominates the errors, but on the right side of zero."""
    groups = _drifting_groups(dose=dose)
    d, truth, _, _ = groups[1]
    still = np.repeat(truth.mean(0, keepdims=True), len(truth), 0)
    neighbours = [(dn, y, C) for dn, _, y, C in (groups[0], groups[2])]
    score = prediction_score(still, truth, d, neighbours)
    assert score > least
    assert prediction_score(truth, still, d, neighbours) == pytest.approx(-score)  # the two sides swap
    assert prediction_score(truth, truth, d, neighbours) == 0.0
    if dose is None:
        assert prediction_score(still, truth, d, neighbours[1:]) > least  # one neighbour is enough


def test_an_aligned_scene_predicts_a_noise_free_measurement():
    groups = _drifting_groups(v=(1.0, -2.0))  # whole pixels: shifts that lose nothing
    d, truth, _, _ = groups[1]
    scene = aligned_mean(truth, d, d[len(d) // 2])
    dn, _, y, C = groups[2]
    pred = predicted_measurement(scene, d[len(d) // 2], dn, C)
    np.testing.assert_allclose(pred[24:-24, 24:-24], y[24:-24, 24:-24], rtol=1e-6)


def test_a_path_that_leaves_the_field_cannot_be_checked():
    groups = _drifting_groups(v=(4.0, 0.0))  # the neighbours sit 16-44 px away in an 80 px field
    d, truth, _, _ = groups[1]
    neighbours = [(dn, y, C) for dn, _, y, C in (groups[0], groups[2])]
    assert prediction_score(truth, truth, d, neighbours) is None
    assert prediction_score(truth, truth, d, []) is None


# -- in the reader ------------------------------------------------------------------------------

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def drifting_file(tmp_path_factory):
    import tcscodec

    from .test_motion import _movie

    m = _movie(drift=(1.5, 1.0), T=32, dose=30.0, size=64)  # 4 groups the gate selects
    path = tmp_path_factory.mktemp("check") / "drift.tcs"
    tcscodec.write(path, m.frames, B=8, seed=11)
    return path


@pytest.mark.usefixtures("torch_one_thread")
@pytest.mark.parametrize("side", [512, 40])
def test_the_reader_compensates_only_groups_the_check_approves(drifting_file, monkeypatch, side):
    """Frames no larger than CHECK_SIDE are checked whole, and the check's
    frames are returned; larger ones are checked on a central window, then
    decoded as the verdict says."""
    import tcscodec
    import tcscodec.motion_check as check_module

    monkeypatch.setattr(check_module, "CHECK_SIDE", side)
    monkeypatch.setattr(check_module, "WHOLE_SIDE", min(side, 64))
    monkeypatch.setattr(check_module, "RIGID_MARGIN", float("inf"))  # still or moving only (rigid: below)
    with tcscodec.open(drifting_file, decoder="gap-tv", iterations=6, dtype=np.float32) as r:
        still, gated = r.read(motion=False), r.read()
        assert not np.array_equal(still, gated)
        scores = [r.motion_check(g) for g in range(r.n_groups)]
        assert all(s is None or s > 0 for s in scores)  # compensation pays on this movie
        assert (None in scores) == (side < 64)  # a 40 px window is too small for 1.8 px/frame at B = 8
        assert np.array_equal(r.read(motion_check=True), gated)
        assert r.motion_check(0, motion=False) is None  # decoded as still: nothing to check
    calls = []

    def vetoing(still, moving, displacements, neighbours):
        calls.append(len(neighbours))
        return -1.0

    monkeypatch.setattr(check_module, "prediction_score", vetoing)
    with tcscodec.open(drifting_file, decoder="gap-tv", iterations=6, dtype=np.float32, motion_check=True) as r:
        assert np.array_equal(r.read(), still)  # every group vetoed: decoded as still, bit for bit
        # twice per group (compensated and rigid); the first and last have one neighbour
        assert calls == [1, 1, 2, 2, 2, 2, 1, 1]
        assert np.array_equal(r.read(5, region=(10, 40, 20, 50)), still[5, 10:40, 20:50])
        assert r.motion_check(2) == -1.0 and r.motion_verdict(2) == "still" and len(calls) == 8
        out = np.empty((8, 64, 64), np.uint16)
        assert r.decode_group(1, out=out) is out and np.array_equal(out, cast_frames(r.decode_group(1), np.uint16))
    monkeypatch.setattr(check_module, "prediction_score", lambda *a: None)  # cannot be checked: the gate decides
    with tcscodec.open(drifting_file, decoder="gap-tv", iterations=6, dtype=np.float32) as r:
        assert np.array_equal(r.read(motion_check=True), gated)


def test_the_verdict_takes_the_rigid_decode_only_by_a_margin():
    from tcscodec.motion_check import RIGID_MARGIN, verdict

    assert verdict({"moving": 0.3}) == "moving"
    assert verdict({"moving": -0.3}) == "still"
    assert verdict({"moving": None}) == "moving"  # nothing to compare: the gate decides
    assert verdict({"moving": -0.3, "rigid": RIGID_MARGIN}) == "rigid"
    assert verdict({"moving": -0.3, "rigid": RIGID_MARGIN - 0.01}) == "still"
    assert verdict({"moving": 0.3, "rigid": 0.9}) == "moving"  # near zero the score's sign is not trusted
    assert verdict({"moving": 5.0, "rigid": 4.0}) == "moving"
    assert verdict({"moving": None, "rigid": 2.0}) == "rigid"
    assert verdict({"moving": -1.0, "rigid": None}) == "still"


@pytest.mark.usefixtures("torch_one_thread")
@pytest.mark.parametrize("side", [512, 40])
def test_a_group_judged_rigid_decodes_as_the_rigid_decoder_does(drifting_file, monkeypatch, side):
    import tcscodec
    import tcscodec.motion_check as check_module
    import tcscodec.reader_motion as reader_motion

    monkeypatch.setattr(check_module, "CHECK_SIDE", side)
    monkeypatch.setattr(check_module, "WHOLE_SIDE", min(side, 64))
    with tcscodec.open(drifting_file, dtype=np.float32) as r:
        rigid = r.read(decoder="rigid-tv")
    with tcscodec.open(drifting_file, decoder="rigid-tv", dtype=np.float32, motion_check=True) as r:
        r.read(0)
        assert set(r._checks[next(iter(r._checks))][0]) == {"moving"}  # no second rigid candidate
    monkeypatch.setattr(reader_motion, "verdict", lambda scores: "rigid")
    # the decoder's own options (GAP-TV's iterations) do not reach the rigid decoder
    with tcscodec.open(drifting_file, decoder="gap-tv", iterations=6, dtype=np.float32, motion_check=True) as r:
        assert np.array_equal(r.read(), rigid)
        assert r.motion_verdict(1) == "rigid" and set(r._checks[next(iter(r._checks))][0]) == {"moving", "rigid"}
        assert np.array_equal(r.read(3, region=(5, 30, 10, 40)), rigid[3, 5:30, 10:40])


@pytest.mark.usefixtures("torch_one_thread")
def test_cli_decode_motion_checked_checks_and_auto_does_not(drifting_file, tmp_path, monkeypatch):
    from click.testing import CliRunner

    import tcscodec
    import tcscodec.motion_check as check_module
    from tcscodec.cli.main import main

    monkeypatch.setattr(check_module, "prediction_score", lambda *a: -1.0)  # the check turns every group down
    outs = {}
    for mode in ("auto", "checked", "off"):
        out = tmp_path / f"{mode}.npy"
        res = CliRunner().invoke(main, ["decode", str(drifting_file), "-o", str(out), "--decoder", "gap-tv",
                                        "--motion", mode, "--dtype", "float32", "--threads", "1", "-q"])
        assert res.exit_code == 0, res.output
        outs[mode] = np.load(out)
    with tcscodec.open(drifting_file, decoder="gap-tv", dtype=np.float32) as r:
        assert np.array_equal(outs["auto"], r.read())
        assert np.array_equal(outs["checked"], r.read(motion=False))
    assert np.array_equal(outs["checked"], outs["off"]) and not np.array_equal(outs["auto"], outs["off"])
    res = CliRunner().invoke(main, ["decode", "--help"])
    assert "checked: also decode as still" in " ".join(res.output.split())
