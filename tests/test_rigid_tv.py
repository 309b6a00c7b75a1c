"""The rigid-scene decoder: one image per group moved along the path."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tcscodec.decoders.rigid_tv import SubpixelShift, rigid_tv  # noqa: E402
from tcscodec.decoders.warp import FrameWarp  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _psnr(x, ref):
    x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
    r, mse = float(ref.max() - ref.min()), float(np.mean((x - ref) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(r * r / mse)


def _scene(shape, seed=0):
    """A smooth image with a few compact bright spots (what drift smears most)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]].astype(np.float64)
    z = np.full(shape, 10.0)
    for _ in range(12):
        cy, cx, r, a = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(1.5, 4), rng.uniform(20, 80)
        z += a * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    return torch.as_tensor(z, dtype=torch.float32)


@pytest.mark.parametrize("shape", [(3, 5, 2), (5, 2)])
def test_the_adjoint_is_the_transpose_of_the_shift(shape):
    shifts = np.random.default_rng(1).uniform(-4.5, 4.5, shape)
    op = SubpixelShift(shifts, (20, 24))
    g = torch.Generator().manual_seed(0)
    z = torch.randn((3, *op.canvas), generator=g, dtype=torch.float64)
    v = torch.randn((3, op.n, 20, 24), generator=g, dtype=torch.float64)
    assert float((op.forward(z) * v).sum()) == pytest.approx(float((z * op.adjoint(v)).sum()), rel=1e-12)
    assert op.margins == tuple(int(math.ceil(m)) + 1 for m in np.abs(shifts).reshape(-1, 2).max(0))


def test_whole_pixel_shifts_move_content_as_the_frame_warp_does():
    s = np.array([[2, -3], [0, 1], [-4, 0]])
    op, fw = SubpixelShift(s, (16, 16)), FrameWarp(s, (16, 16))
    z = torch.randn((1, *fw.canvas), generator=torch.Generator().manual_seed(2))
    (my, mx), (oy, ox) = fw.margins, op.margins
    zc = torch.zeros((1, *op.canvas))
    zc[:, oy - my:oy - my + fw.canvas[0], ox - mx:ox - mx + fw.canvas[1]] = z
    assert torch.equal(op.forward(zc), fw.unalign(z[:, None].expand(1, 3, *fw.canvas).contiguous()))


def test_a_half_pixel_shift_averages_the_two_neighbours():
    op = SubpixelShift([[0.0, 0.5]], (4, 4))
    z = torch.arange(float(np.prod(op.canvas))).view(1, *op.canvas)
    my, mx = op.margins
    expected = 0.5 * (z[0, my:my + 4, mx - 1:mx + 3] + z[0, my:my + 4, mx:mx + 4])
    assert torch.allclose(op.forward(z)[0, 0], expected)


def test_bad_shifts_and_samples_are_refused():
    from tcscodec.errors import TcsValueError

    with pytest.raises(TcsValueError, match="shifts must be finite"):
        SubpixelShift(np.zeros((4, 3)), (8, 8))
    with pytest.raises(ValueError, match="shifts must be finite"):
        SubpixelShift([[0.0, math.nan]], (8, 8))
    op = SubpixelShift(np.zeros((2, 4, 2)), (8, 8))
    with pytest.raises(TcsValueError, match="3 samples given to a shift made for 2"):
        op.forward(torch.zeros((3, *op.canvas)))
    with pytest.raises(TcsValueError, match="canvas of"):
        op.forward(torch.zeros((2, 8, 8)))
    with pytest.raises(TcsValueError, match="iterations must be >= 0"):
        rigid_tv(torch.zeros((1, 8, 8)), torch.ones((1, 2, 8, 8)), iterations=-1)


def _drifting_group(n=8, v=(1.3, -0.9), size=64, seed=0):
    """A rigid scene moved ``v`` px/frame through ``n`` frames (sub-pixel),
    its masks and noise-free measurement."""
    t = np.arange(n) - (n - 1) / 2
    shifts = np.stack([v[0] * t, v[1] * t], 1)
    op = SubpixelShift(shifts, (size, size))
    frames = op.forward(_scene(op.canvas, seed)[None])
    C = (torch.rand((1, n, size, size), generator=torch.Generator().manual_seed(seed)) > 0.5).float()
    return frames, C, (C * frames).sum(1), shifts


def test_a_rigid_drifting_scene_comes_back_sharp():
    from tcscodec.decoders.gap_tv import gap_tv

    frames, C, y, shifts = _drifting_group()
    rigid = rigid_tv(y, C, shifts)
    soft = gap_tv(y, C, shifts=torch.as_tensor(shifts))
    still = gap_tv(y, C)
    # measured 39.5 (rigid), 34.9 (GAP-TV in the moving frame), 30.2 (still)
    assert _psnr(rigid, frames) > 37
    assert _psnr(rigid, frames) > _psnr(soft, frames) + 3
    assert _psnr(soft, frames) > _psnr(still, frames)
    # the frames it gives are one image moved along the path
    assert rigid.shape == frames.shape and rigid.dtype == torch.float32


def test_without_shifts_every_frame_is_the_same_image():
    frames, C, _, _ = _drifting_group(v=(0.0, 0.0))
    y = (C * frames).sum(1)
    x = rigid_tv(y, C, None)
    assert torch.allclose(x, x[:, :1].expand_as(x))
    assert _psnr(x, frames) > 45  # measured 51.0


def test_units_do_not_change_the_result():
    frames, C, y, shifts = _drifting_group()
    a = rigid_tv(y, C, shifts)
    b = rigid_tv(1000 * y, C, shifts) / 1000
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)


def test_it_is_a_registered_decoder_the_reader_runs_along_the_path(tmp_path):
    import tcscodec
    from tcscodec.decoders import get_decoder

    from .test_motion import _movie

    with pytest.raises(ValueError, match="unknown rigid-tv option"):
        get_decoder("rigid-tv", weight=1)
    assert "RigidTV" in repr(get_decoder("rigid-tv", iterations=5))
    m = _movie(drift=(1.5, 1.0), T=32, dose=30.0)
    path = tmp_path / "drift.tcs"
    tcscodec.write(path, m.frames, B=8, seed=11)
    with tcscodec.open(path) as r:
        assert r.motion().summary()["groups_compensated"] == 4
        rigid = r.read(decoder="rigid-tv")
        soft = r.read(decoder="gap-tv")
    # measured: rigid-tv 27.1 dB, gap-tv in the moving frame 24.7, still 23.8
    assert _psnr(rigid, m.clean) > _psnr(soft, m.clean) + 1.5


def test_a_network_with_rigid_start_begins_from_the_rigid_solution_where_samples_move():
    from tcscodec.decoders.unfold_net import UnfoldConfig, UnfoldNet

    frames, C, y, shifts = _drifting_group()
    y2, C2 = torch.cat([y, y]), torch.cat([C, C])
    cfg = dict(stages=1, width=8, factor=2, warm_start=5)
    rigid, soft = UnfoldNet(UnfoldConfig(**cfg, rigid_start=7)), UnfoldNet(UnfoldConfig(**cfg))
    per_sample = torch.stack([torch.as_tensor(shifts, dtype=torch.float32), torch.zeros(len(shifts), 2)])
    _, start = rigid(y2, C2, shifts=per_sample, with_start=True)
    _, gap_start = soft(y2, C2, shifts=per_sample, with_start=True)
    # a moving sample starts from the rigid solution, a still one (zero shifts) from GAP-TV as before
    assert torch.allclose(start[0], rigid_tv(y, C, shifts, iterations=7)[0], rtol=1e-5, atol=1e-4)
    assert torch.equal(start[1], gap_start[1])
    # one path for every sample, and no shifts at all: as without the option
    _, shared = rigid(y2, C2, shifts=torch.as_tensor(shifts, dtype=torch.float32), with_start=True)
    assert torch.allclose(shared, torch.cat([start[:1], start[:1]]), rtol=1e-5, atol=1e-4)
    assert torch.equal(rigid(y2, C2, with_start=True)[1], soft(y2, C2, with_start=True)[1])


def test_the_reader_starts_the_learned_decoder_rigid_where_the_path_is_smooth(tmp_path):
    import tcscodec

    from .test_motion import _movie

    m = _movie(drift=(1.5, 1.0), T=32, dose=5.0)  # a texture moved as one along a straight path
    path = tmp_path / "drift.tcs"
    tcscodec.write(path, m.frames, B=8, seed=11)
    with tcscodec.open(path, dtype=np.float32) as r:
        p = r.motion()
        assert [p.rigid_start(g) for g in range(4)] == [True] * 4 and p.summary()["groups_compensated"] == 4
        rigid = r.read()
        soft = r.read(rigid_start=False)
        still = r.read(motion=False)
    # measured: 24.48 dB from the rigid start, 23.91 from GAP-TV in the moving frame, 22.44 still
    assert _psnr(rigid, m.clean) > _psnr(soft, m.clean) + 0.3
    assert _psnr(soft, m.clean) > _psnr(still, m.clean) + 1
    # the CLI: info counts the rigid starts, --no-rigid-start decodes as rigid_start=False
    from click.testing import CliRunner

    from tcscodec.cli.main import main

    runner = CliRunner()
    res = runner.invoke(main, ["info", str(path), "--motion"])
    assert res.exit_code == 0 and "compensated in 4 of 4 groups (4 from a rigid start)" in res.output, res.output
    for flag, want in (("--no-rigid-start", soft), ("--rigid-start", rigid)):
        out = tmp_path / f"{flag}.npy"
        res = runner.invoke(main, ["decode", str(path), "-o", str(out), "--frames", "0:8", flag, "--threads", "1",
                                   "--dtype", "float32", "-q"])
        assert res.exit_code == 0, res.output
        # (the CLI's worker threads round a few float32 values differently)
        assert np.allclose(np.load(out), want[:8], rtol=1e-5, atol=1e-4)
    assert not np.allclose(rigid[:8], soft[:8], rtol=1e-2, atol=1e-2)


def test_the_measurements_decide_the_start_of_long_groups(tmp_path, monkeypatch):
    """Groups of 12 frames (beyond RIGID_START_FRAMES) on a smooth rigid
    drift: the reader decodes them from both starts, finds that the rigid
    one predicts the neighbouring groups better, and starts them all rigid;
    with a margin no score reaches it keeps the GAP-TV start."""
    import tcscodec
    from tcscodec import motion_check

    from .test_motion import _movie

    m = _movie(drift=(1.5, 1.0), T=48, dose=5.0)
    path = tmp_path / "long.tcs"
    tcscodec.write(path, m.frames, B=12, seed=11)
    import tcscodec.decoders as decoders

    decodes = []
    real_decode = decoders.decode_tiled
    monkeypatch.setattr(decoders, "decode_tiled", lambda *a, **k: decodes.append(1) or real_decode(*a, **k))
    with tcscodec.open(path, dtype=np.float32) as r:
        p = r.motion()
        assert [p.rigid_start_open(g) for g in range(4)] == [True] * 4 and not p.rigid_start(0)
        rigid = r.read()
        # the four groups compared from both starts: their rigid decodes are the output
        assert list(r._starts.values()) == [True] and len(decodes) == 8 and r._start_frames == {}
        soft = r.read(rigid_start=False)
        still = r.read(motion=False)
    decodes.clear()
    with tcscodec.open(path, dtype=np.float32) as r:  # told the decision: each group decoded once, the same
        r._starts[("tcs-unfold", None, ())] = True
        assert np.array_equal(r.read(), rigid) and len(decodes) == 4
    monkeypatch.setattr(decoders, "decode_tiled", real_decode)
    # measured: 24.13 dB from the rigid start, 22.64 from GAP-TV, 21.89 still
    assert _psnr(rigid, m.clean) > _psnr(soft, m.clean) + 0.5 and _psnr(soft, m.clean) > _psnr(still, m.clean)
    # lazily: one task decides, the chunks reuse its decision
    pytest.importorskip("dask")
    from tcscodec.reader_motion import MotionDecoding

    calls = []
    real = MotionDecoding._start_check
    monkeypatch.setattr(MotionDecoding, "_start_check", lambda self, *a: calls.append(1) or real(self, *a))
    with tcscodec.open(path, dtype=np.float32) as r:
        lazy = r.to_dask()[12:36].compute(scheduler="threads")
    assert np.allclose(lazy, rigid[12:36], rtol=1e-5, atol=1e-4) and calls == [1]
    with tcscodec.open(path, dtype=np.float32) as r:  # the task state carries the decision, no frames stay
        assert list(r._task_state()["starts"].values()) == [True] and r._start_frames == {}
    with tcscodec.open(path, dtype=np.float32) as r:  # GAP-TV has one start: nothing to decide
        r.decode_group(0, decoder="gap-tv")
        assert calls == [1, 1] and r._starts == {}  # (the second: the task state's decision above)
    monkeypatch.setattr(motion_check, "START_MARGIN", 99.0)
    monkeypatch.setattr("tcscodec.reader_motion.START_MARGIN", 99.0)
    with tcscodec.open(path, dtype=np.float32) as r:
        assert np.array_equal(r.decode_group(1), soft[12:24]) and list(r._starts.values()) == [False]
    from click.testing import CliRunner

    from tcscodec.cli.main import main

    res = CliRunner().invoke(main, ["info", str(path), "--motion"])
    assert res.exit_code == 0, res.output
    assert ("compensated in 4 of 4 groups (0 from a rigid start, 4 whose start the decoder picks from the "
            "measurements)") in " ".join(res.output.split()), res.output
