"""The learned decoder: architecture, weights zoo, training loop (tiny runs)."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tcscodec import TcsDecoderError, weights  # noqa: E402
from tcscodec.decoders.learned import UnfoldDecoder  # noqa: E402
from tcscodec.decoders.unfold_net import UnfoldConfig, UnfoldNet, noise_level, normalise  # noqa: E402
from tcscodec.masks import masks  # noqa: E402


def small_net(seed=0):
    torch.manual_seed(seed)
    net = UnfoldNet(UnfoldConfig(stages=2, width=8, blocks=1, factor=2))
    for p in net.parameters():  # non-zero tails so the test sees a real network
        torch.nn.init.normal_(p, std=0.05)
    return net


@pytest.mark.parametrize("n", [1, 2, 7, 32, 64])
def test_any_number_of_frames(n):
    net = small_net()
    C = torch.from_numpy(masks(3, n, 16, 20)).float()[None]
    y = (C * 5).sum(1)
    out = net(y, C)
    assert out.shape == (1, n, 16, 20) and torch.isfinite(out).all()


def test_scale_equivariance():
    """Inputs are normalised: scaling Y scales the output (any dose, any units)."""
    net = small_net()
    C = torch.from_numpy(masks(1, 6, 32, 32)).float()[None]
    X = torch.rand(1, 6, 32, 32) * 10 + 1
    y = (C * X).sum(1)
    assert torch.allclose(net(y * 37.5, C), net(y, C) * 37.5, rtol=1e-4, atol=1e-3)


def test_scale_equivariance_with_warm_start():
    """The GAP-TV warm start judges the dose, not the units: Poisson counts
    at ~100 per pixel and the same frames in units of 1/100 count (a
    gain-normalised float movie) decode to the same frames."""
    torch.manual_seed(1)
    net = UnfoldNet(UnfoldConfig(stages=1, width=8, blocks=1, factor=2, warm_start=4, offset=True))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    C = torch.from_numpy(masks(1, 8, 32, 32)).float()[None]
    X = torch.poisson(torch.full((1, 8, 32, 32), 100.0), generator=torch.Generator().manual_seed(0))
    y = (C * X).sum(1)
    with torch.no_grad():
        assert torch.allclose(net(y * 0.01, C) * 100, net(y, C), rtol=1e-3, atol=1e-2)


def test_normalise_and_noise_level():
    C = torch.from_numpy(masks(2, 10, 64, 64)).float()[None]
    gen = torch.Generator().manual_seed(0)
    X = torch.poisson(torch.full((1, 10, 64, 64), 100.0), generator=gen)
    y = (C * X).sum(1)
    scale, xbar = normalise(y, C.sum(1))
    assert scale.item() == pytest.approx(100, rel=0.01)
    # xbar averages ~5 frames: relative noise ~ 1 / sqrt(5 * 100)
    assert noise_level(xbar / scale).item() == pytest.approx((1 / (5 * 100)) ** 0.5, rel=0.3)
    # unmeasured pixels do not produce NaN
    C0 = torch.zeros(1, 3, 8, 8)
    out = small_net()(torch.zeros(1, 8, 8), C0)
    assert torch.isfinite(out).all()


def test_decoder_pads_odd_tiles():
    dec = UnfoldDecoder(net=small_net())
    C = torch.from_numpy(masks(4, 5, 13, 11)).float()[None]
    y = (C * 3).sum(1)
    out = dec.decode(y, C)
    assert out.shape == (1, 5, 13, 11) and torch.isfinite(out).all()


def test_weights_are_checked(tmp_path, monkeypatch):
    net = small_net()
    import io

    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    (tmp_path / "m.pt").write_bytes(buf.getvalue())
    rec = {"file": "m.pt", "sha256": weights.sha256_of(buf.getvalue()), "config": net.config.to_dict()}
    (tmp_path / "zoo.json").write_text(json.dumps({"tcs-unfold": rec}))
    monkeypatch.setattr(weights.resources, "files", lambda name: tmp_path)
    assert weights.available("tcs-unfold")
    dec = UnfoldDecoder()
    C = torch.from_numpy(masks(4, 3, 8, 8)).float()[None]
    assert torch.allclose(dec.decode((C * 2).sum(1), C), net.eval()((C * 2).sum(1), C))
    (tmp_path / "m.pt").write_bytes(buf.getvalue()[:-1] + b"x")
    with pytest.raises(TcsDecoderError, match="m.pt is damaged: SHA-256"):
        UnfoldDecoder()
    with pytest.raises(TcsDecoderError, match="no weights for 'other'"):
        weights.load_state("other")


def test_training_runs_resumes_and_exports(tmp_path):
    from tcscodec.training import TrainConfig, export, train

    cfg = TrainConfig(steps=2, batch=2, crop=32, n_min=2, n_max=4, pool_movies=2, movie_frames=6,
                      movie_size=48, checkpoint_every=1, threads=1, refresh=1, refresh_every=1,
                      model={"stages": 1, "width": 8, "blocks": 1, "factor": 2})
    ckpt = train(cfg, tmp_path / "run", progress=False, log=lambda s: None)
    first = torch.load(ckpt, weights_only=True)
    assert first["step"] == 2
    longer = TrainConfig.from_dict({**cfg.to_dict(), "steps": 3})
    with pytest.raises(ValueError, match="another config"):
        train(longer, tmp_path / "run", progress=False, log=lambda s: None)
    lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert (tmp_path / "run" / "config.json").exists() and isinstance(lines, list)
    path = export(ckpt, command="tcscodec train --test", dest=tmp_path)
    zoo = json.loads((tmp_path / "zoo.json").read_text())["tcs-unfold"]
    assert path.name == zoo["file"] and zoo["sha256"] == weights.sha256_of(path.read_bytes())
    assert zoo["command"] == "tcscodec train --test" and zoo["steps"] == 2
    # same seed and config: the same weights, also when stopped and resumed
    train(cfg, tmp_path / "run2", progress=False, log=lambda s: None, stop_at=1)
    assert torch.load(tmp_path / "run2" / "checkpoint.pt", weights_only=True)["step"] == 1
    ckpt2 = train(cfg, tmp_path / "run2", progress=False, log=lambda s: None)
    second = torch.load(ckpt2, weights_only=True)["model"]
    assert all(torch.equal(first["model"][k], second[k]) for k in second)
    # a finished run re-run (to export it) keeps its weights and builds no movie pool
    said = []
    train(cfg, tmp_path / "run2", progress=False, log=said.append)
    again = torch.load(ckpt2, weights_only=True)
    assert again["step"] == 2 and all(torch.equal(again["model"][k], second[k]) for k in second)
    assert not any("pool" in s for s in said), said


def test_training_starts_from_pinned_weights(tmp_path):
    """init_from fine-tunes exported weights; init_sha256 refuses other ones."""
    from tcscodec.training import TrainConfig, export, initial_state, train

    base = dict(steps=1, batch=2, crop=32, n_min=2, n_max=3, pool_movies=2, movie_frames=6, movie_size=48,
                threads=1, model={"stages": 1, "width": 8, "blocks": 1, "factor": 2})
    exported = export(train(TrainConfig(**base), tmp_path / "a", progress=False, log=lambda s: None),
                      command="test", dest=tmp_path)
    digest = weights.sha256_of(exported.read_bytes())
    cfg = TrainConfig(**{**base, "seed": 1, "steps": 0}, init_from=str(exported), init_sha256=digest)
    ckpt = train(cfg, tmp_path / "b", progress=False, log=lambda s: None)
    start = torch.load(ckpt, weights_only=True)
    assert all(torch.equal(start["model"][k], v) for k, v in torch.load(exported).items())
    export(ckpt, command="fine-tune", dest=tmp_path)  # the zoo keeps how the parent weights were made
    rec = json.loads((tmp_path / "zoo.json").read_text())["tcs-unfold"]
    assert rec["command"] == "fine-tune" and rec["parent"]["sha256"] == digest and rec["parent"]["command"] == "test"
    # a fine-tune with motion compensation in the loop ships beside the still weights, not over them
    moving = TrainConfig(**{**base, "seed": 2, "steps": 0}, init_from=str(tmp_path / rec["file"]),
                         init_sha256=rec["sha256"], motion_prob=0.5)
    export(train(moving, tmp_path / "m", progress=False, log=lambda s: None), command="motion", dest=tmp_path)
    zoo = json.loads((tmp_path / "zoo.json").read_text())
    assert zoo["tcs-unfold"] == rec and (tmp_path / rec["file"]).is_file()
    assert zoo["tcs-unfold-motion"]["command"] == "motion"
    assert zoo["tcs-unfold-motion"]["parent"]["sha256"] == rec["sha256"]
    # the exporter's checkpoint gives the same state and hash as its exported file
    assert initial_state(TrainConfig(**base, init_from=str(tmp_path / "a" / "checkpoint.pt"),
                                     init_sha256=digest)).keys() == start["model"].keys()
    bad = TrainConfig(**base, init_from=str(exported), init_sha256="0" * 64)
    with pytest.raises(ValueError, match="init_sha256"):
        train(bad, tmp_path / "c", progress=False, log=lambda s: None)
    with pytest.raises(ValueError, match="texture_dose"):
        TrainConfig(texture_dose=(5, 1))


def test_warm_start_begins_at_gap_tv():
    """An untrained warm-started net returns the GAP-TV frames it starts from
    (learned steps and tails start at 0); training only refines them."""
    from tcscodec.decoders.gap_tv import gap_tv

    torch.manual_seed(0)
    net = UnfoldNet(UnfoldConfig(stages=2, width=8, blocks=1, factor=2, warm_start=5))
    C = torch.from_numpy(masks(7, 6, 24, 24)).float()[None]
    X = torch.rand(1, 6, 24, 24) * 40 + 5
    y = (C * X).sum(1)
    assert torch.allclose(net(y, C), gap_tv(y, C, iterations=5), rtol=1e-5, atol=1e-4)
    # the config round-trips and older configs (no warm_start) still load
    assert UnfoldConfig.from_dict(net.config.to_dict()) == net.config
    assert UnfoldConfig.from_dict({"stages": 1, "width": 8, "blocks": 1, "factor": 2}).warm_start == 0


def test_offset_normalisation_is_affine_equivariant():
    """With ``offset`` the net sees contrast: a camera offset added to every
    frame (Y + b * sum C) and a gain (a * Y) come straight through."""
    torch.manual_seed(1)
    net = UnfoldNet(UnfoldConfig(stages=2, width=8, blocks=1, factor=2, offset=True))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    C = torch.from_numpy(masks(2, 6, 32, 32)).float()[None]
    X = torch.rand(1, 6, 32, 32) * 10 + 1
    y = (C * X).sum(1)
    out = net(y, C)
    moved = net(3.5 * y + 400.0 * C.sum(1), C)
    assert torch.allclose(moved, 3.5 * out + 400.0, rtol=1e-4, atol=2e-2)
    from tcscodec.decoders.unfold_net import affine_normalise

    offset, spread, _ = affine_normalise(3.5 * y + 400.0 * C.sum(1), C.sum(1))
    assert 400 < offset.item() < 400 + 3.5 * 2 and spread.item() > 3.5 * 3


def test_unknown_options_are_refused():
    with pytest.raises(ValueError, match="takes no option.*iterations"):
        UnfoldDecoder(net=small_net(), iterations=5)


def _displacement(a, b):
    """Integer shift of b against a, by phase correlation."""
    f = np.fft.fft2(a - a.mean()).conj() * np.fft.fft2(b - b.mean())
    corr = np.fft.ifft2(f / (np.abs(f) + 1e-9)).real
    dy, dx = np.unravel_index(np.argmax(corr), corr.shape)
    n0, n1 = corr.shape
    return np.hypot((dy + n0 // 2) % n0 - n0 // 2, (dx + n1 // 2) % n1 - n1 // 2)


def test_texture_movies_drift_at_the_configured_speed(tmp_path):
    """texture_speed sets the drift of the training pool's texture movies; None keeps 0.1-1 px/frame."""
    from scipy.ndimage import gaussian_filter

    from tcscodec.training import MoviePool, TrainConfig

    texture = gaussian_filter(np.random.default_rng(0).normal(size=(320, 320)), 2.0)
    np.save(tmp_path / "texture.npy", (texture - texture.min()).astype(np.float32))
    base = dict(texture_dir=str(tmp_path), texture_fraction=1.0, pool_movies=1, movie_frames=6,
                movie_size=64, texture_dose=(1e4, 1e4))
    for speed, lo, hi in ((None, 0.0, 5.0), ((3.0, 3.0), 13.0, 17.0)):
        for k in range(3):
            _, clean, drift = MoviePool(TrainConfig(**base, texture_speed=speed)).make((1, k))
            assert drift.shape == (6, 2)
            assert lo <= _displacement(clean[0], clean[5]) <= hi, (speed, k)
    with pytest.raises(ValueError, match="texture_speed"):
        TrainConfig(texture_speed=(0.0, 1.0))


def test_group_sizes_are_drawn_uniformly_or_log_uniformly():
    """n_draw="uniform" draws as before (rng.integers); "log-uniform" covers the
    range with each size in proportion to log((n + 1) / n)."""
    from tcscodec.training import TrainConfig, _group_size

    cfg = TrainConfig(n_min=2, n_max=64)
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    assert [_group_size(a, cfg) for _ in range(50)] == [int(b.integers(2, 65)) for _ in range(50)]
    log = TrainConfig.from_dict({**cfg.to_dict(), "n_draw": "log-uniform"})
    rng = np.random.default_rng(4)
    n = np.array([_group_size(rng, log) for _ in range(20000)])
    assert n.min() == 2 and n.max() == 64
    # P(n <= 32) = log(33 / 2) / log(65 / 2); uniform over 2..64 would give 31 / 63
    assert np.mean(n <= 32) == pytest.approx(np.log(33 / 2) / np.log(65 / 2), abs=0.01)
    with pytest.raises(ValueError, match="n_draw must be 'uniform' or 'log-uniform', got 'normal'"):
        TrainConfig(n_draw="normal")


def test_moving_groups_use_the_motion_network_and_still_ones_the_other(tmp_path):
    still_net, motion_net = small_net(1), small_net(2)
    both = UnfoldDecoder(net=still_net, motion_net=motion_net)
    y = torch.rand(1, 32, 32) * 4
    C = (torch.rand(1, 4, 32, 32) > 0.5).float()
    shifts = torch.tensor([[[-1.5, 0.0], [-0.5, 0.0], [0.5, 0.0], [1.5, 0.0]]])
    assert torch.equal(both.decode(y, C), UnfoldDecoder(net=still_net).decode(y, C))
    assert torch.equal(both.decode(y, C, shifts=shifts), UnfoldDecoder(net=motion_net).decode(y, C, shifts=shifts))
    assert not torch.equal(both.decode(y, C, shifts=shifts), UnfoldDecoder(net=still_net).decode(y, C, shifts=shifts))
    # a fine-tune ships for moving groups only: the checkpoint decodes those, the shipped weights the rest
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": motion_net.state_dict(), "config": {"model": motion_net.config.to_dict()}, "step": 7}, path)
    dec = UnfoldDecoder.from_checkpoint(path, moving_only=True)
    assert dec.step == 7 and dec.net.config == UnfoldDecoder().net.config != motion_net.config
    assert torch.equal(dec.decode(y, C, shifts=shifts), UnfoldDecoder(net=motion_net).decode(y, C, shifts=shifts))
    one = UnfoldDecoder.from_checkpoint(path)
    assert one.motion_net is one.net


def test_still_groups_of_48_frames_or_more_use_the_long_network():
    from tcscodec.decoders.learned import LONG_GROUP_FRAMES

    still_net, long_net, motion_net = small_net(1), small_net(3), small_net(2)
    dec = UnfoldDecoder(net=still_net, long_net=long_net, motion_net=motion_net)
    assert LONG_GROUP_FRAMES == 48
    y = torch.rand(1, 16, 16) * 40
    for n, expected in ((47, still_net), (48, long_net), (64, long_net)):
        C = (torch.rand(1, n, 16, 16) > 0.5).float()
        assert torch.equal(dec.decode(y, C), UnfoldDecoder(net=expected).decode(y, C)), n
    # a long group decoded in the moving frame keeps the motion network
    shifts = torch.zeros(1, 48, 2)
    shifts[0, :, 1] = torch.arange(48) - 23.5
    assert torch.equal(dec.decode(y, C[:, :48], shifts=shifts),
                       UnfoldDecoder(net=motion_net).decode(y, C[:, :48], shifts=shifts))
    # a network given alone decodes every group (training, checkpoints)
    one = UnfoldDecoder(net=still_net)
    assert one.long_net is one.net


def test_train_can_export_under_every_name_the_decoder_loads():
    from tcscodec.cli.train import train as train_command
    from tcscodec.decoders.learned import LONG_MODEL_NAME, MODEL_NAME, MOTION_MODEL_NAME

    option = next(p for p in train_command.params if p.name == "export_as")
    assert set(option.type.choices) == {MODEL_NAME, MOTION_MODEL_NAME, LONG_MODEL_NAME}


@pytest.mark.parametrize("context", [False, True])
def test_cpu_inference_by_frame_chunks_is_bit_identical(monkeypatch, context):
    """On the CPU without gradients the denoisers run a few frames at a time
    (cache-sized chunks); the frames are the same, bit for bit, as a whole
    group at once, for every chunk size, with context and shifts, and
    training (gradients on) runs the whole group."""
    import tcscodec.decoders.unfold_net as unfold_net

    torch.manual_seed(2)
    net = UnfoldNet(UnfoldConfig(stages=2, width=8, blocks=2, factor=2, context=context))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    n = 7
    C = torch.from_numpy(masks(4, n, 24, 20)).float()[None].repeat(2, 1, 1, 1)
    X = torch.rand(2, n, 24, 20) * 10 + 1
    y = (C * X).sum(1)
    ctx = torch.rand(2, 2, 24, 20) * 10 if context else None
    shifts = torch.tensor([[0.0, 2.0 * b - n] for b in range(n)])
    frame = 2 * 8 * 12 * 10 * 4  # bytes of one frame's features (2 samples)
    outs = []
    for chunk_bytes in (1 << 40, frame, 3 * frame, 4 * frame):
        monkeypatch.setattr(unfold_net, "CHUNK_BYTES", chunk_bytes)
        with torch.inference_mode():
            assert net.denoisers[0]._chunk(X) == min(chunk_bytes // frame, 2**40 // frame)
            outs.append((net(y, C, ctx), net(y, C, ctx, shifts=shifts)))
    for still, moving in outs[1:]:
        assert torch.equal(still, outs[0][0]) and torch.equal(moving, outs[0][1])
    assert not torch.equal(outs[0][0], outs[0][1])  # the shifts did something
    assert net.denoisers[0]._chunk(X) is None  # gradients on: the whole group
