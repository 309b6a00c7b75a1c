"""Decoding with the neighbouring groups as context: the network inputs,
the tiling engine, the reader and the training loop."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import tcscodec  # noqa: E402
from tcscodec import TcsValueError  # noqa: E402
from tcscodec.decoders import Decoder, decode_tiled, register_decoder  # noqa: E402
from tcscodec.decoders.base import _REGISTRY  # noqa: E402
from tcscodec.decoders.tiling import tile_layout  # noqa: E402
from tcscodec.decoders.learned import UnfoldDecoder  # noqa: E402
from tcscodec.decoders.unfold_net import UnfoldConfig, UnfoldNet  # noqa: E402
from tcscodec.masks import masks as spec_masks  # noqa: E402

SPY = "_test-context-spy"


class _ContextSpy(Decoder):
    """Returns Y / sum C in every frame and records the context it saw."""

    uses_context = True
    receptive_margin = 0
    seen: list = []

    def decode(self, y, masks, context=None):
        type(self).seen.append(None if context is None else context.clone())
        return (y / masks.sum(1).clamp(min=1))[:, None].expand_as(masks).clone()


@pytest.fixture(autouse=True)
def _spy():
    register_decoder(SPY)(_ContextSpy)
    _ContextSpy.seen = []
    yield
    _REGISTRY.pop(SPY, None)


def context_net(seed=0, context=True):
    torch.manual_seed(seed)
    net = UnfoldNet(UnfoldConfig(stages=2, width=8, blocks=1, factor=2, offset=True, context=context))
    for p in net.parameters():  # non-zero weights, context ones included
        torch.nn.init.normal_(p, std=0.05)
    return net


def _group(n=6, size=32, seed=3):
    C = torch.from_numpy(spec_masks(seed, n, size, size)).float()[None]
    X = torch.rand(1, n, size, size, generator=torch.Generator().manual_seed(seed)) * 20 + 30
    return (C * X).sum(1), C, X.mean(1, keepdim=True).expand(1, 2, size, size).clone()


def test_context_changes_the_output_and_absent_means_none():
    net = context_net()
    y, C, ctx = _group()
    with torch.no_grad():
        alone, with_ctx = net(y, C), net(y, C, ctx)
        nan = net(y, C, torch.full_like(ctx, float("nan")))
        half = ctx.clone()
        half[:, 1] = float("nan")
        one_side = net(y, C, half)
    assert not torch.allclose(alone, with_ctx, atol=1e-3)
    assert torch.equal(alone, nan)  # NaN everywhere reads as no neighbours
    assert not torch.allclose(one_side, with_ctx, atol=1e-4) and not torch.allclose(one_side, alone, atol=1e-4)
    with pytest.raises(ValueError, match="context must have shape"):
        net(y, C, ctx[:, :1])


def test_context_keeps_scale_equivariance():
    """Context is normalised like the measurement: scaling Y and its
    neighbours scales the frames."""
    net = context_net(1)
    y, C, ctx = _group(seed=5)
    with torch.no_grad():
        assert torch.allclose(net(y * 37.5, C, ctx * 37.5), net(y, C, ctx) * 37.5, rtol=1e-4, atol=1e-3)


def test_weights_without_context_load_and_start_unchanged():
    parent = context_net(2, context=False)
    child = UnfoldNet(UnfoldConfig(**{**parent.config.to_dict(), "context": True}))
    child.load_parent_state(parent.state_dict())
    y, C, ctx = _group()
    with torch.no_grad():
        assert torch.equal(parent(y, C), child(y, C, ctx))
    other = UnfoldNet(UnfoldConfig(stages=1, width=8, blocks=1, factor=2, context=True))
    with pytest.raises(RuntimeError, match="does not fit"):
        other.load_parent_state(parent.state_dict())


def test_weights_of_fewer_stages_load_and_start_unchanged():
    parent = context_net(2, context=False)
    cfg = parent.config.to_dict()
    child = UnfoldNet(UnfoldConfig(**{**cfg, "stages": cfg["stages"] + 2}))
    child.load_parent_state(parent.state_dict())
    assert torch.equal(child.steps[:cfg["stages"]], parent.steps) and not child.steps[cfg["stages"]:].any()
    y, C, _ = _group()
    with torch.no_grad():
        assert torch.equal(parent(y, C), child(y, C))
    fewer = UnfoldNet(UnfoldConfig(**{**cfg, "stages": cfg["stages"] - 1}))
    with pytest.raises(RuntimeError, match="does not fit"):
        fewer.load_parent_state(parent.state_dict())


def test_learned_decoder_passes_context_through_padding():
    dec = UnfoldDecoder(net=context_net(3))
    assert dec.uses_context
    y, C, ctx = _group(size=30)  # odd for the pixel-unshuffle factor: padded
    out = dec.decode(y, C, ctx)
    assert out.shape == C.shape and torch.isfinite(out).all()
    assert not torch.allclose(out, dec.decode(y, C), atol=1e-4)


def _movie_file(tmp_path, T=20, B=6, H=40, W=52):
    rng = np.random.default_rng(0)
    frames = rng.poisson(50, (T, H, W)).astype(np.uint16)
    path = tmp_path / "m.tcs"
    tcscodec.write(path, frames, B=B, seed=11, tile=32)
    return path


def test_reader_gives_the_neighbours_group_means(tmp_path):
    path = _movie_file(tmp_path)
    with tcscodec.open(path) as r:
        assert r.n_groups == 4  # the last group is short (2 frames)
        means = [r.group_mean(g) for g in range(r.n_groups)]
        # tile starts as the engine lays them out (whole frame, no region)
        th, ys = tile_layout(40, 24, 8)
        tw, xs = tile_layout(52, 24, 8)
        y, s = r.measurements(3).astype(np.float64), r.masks(3).sum(0)
        assert np.array_equal(np.isnan(means[3]), s == 0)
        assert np.allclose(means[3][s > 0], (y / np.maximum(s, 1))[s > 0])
        for g in range(r.n_groups):
            _ContextSpy.seen = []
            # small tiles: the engine slices the neighbours band by band
            r.decode_group(g, decoder=SPY, tile=24, overlap=8)
            assert len(_ContextSpy.seen) > 1
            before = means[g - 1] if g > 0 else np.full_like(means[0], np.nan)
            after = means[g + 1] if g + 1 < r.n_groups else np.full_like(means[0], np.nan)
            expect = np.stack([before, after])
            seen = _ContextSpy.seen
            k = 0
            for y0 in ys:
                for x0 in xs:
                    got = seen[k][0].numpy()
                    np.testing.assert_array_equal(got, expect[:, y0:y0 + th, x0:x0 + tw])
                    k += 1


def test_decoders_without_context_never_read_it(tmp_path):
    calls = []

    def context_fn(*window):
        calls.append(window)
        return np.zeros((2, window[1] - window[0], window[3] - window[2]), np.float32)

    C = spec_masks(1, 4, 32, 32)
    y = (C * 10.0).sum(0)
    decode_tiled(y, lambda a, b, c, d: C[:, a:b, c:d], 4, decoder="gap-tv", iterations=2, context_fn=context_fn)
    assert calls == []
    decode_tiled(y, lambda a, b, c, d: C[:, a:b, c:d], 4, decoder=SPY, context_fn=context_fn)
    assert len(calls) == 1
    with pytest.raises(TcsValueError, match="context_fn.*returned shape"):
        decode_tiled(y, lambda a, b, c, d: C[:, a:b, c:d], 4, decoder=SPY,
                     context_fn=lambda *w: np.zeros((1, 32, 32), np.float32))


def test_reconstruct_takes_context():
    C = spec_masks(1, 4, 32, 32)
    y = (C * 10.0).sum(0)
    ctx = np.full((2, 32, 32), 10.0, np.float32)
    tcscodec.reconstruct(y, C, decoder=SPY, context=ctx)
    assert torch.equal(_ContextSpy.seen[-1][0], torch.from_numpy(ctx))
    with pytest.raises(TcsValueError, match=r"context must have shape \(2, 32, 32\)"):
        tcscodec.reconstruct(y, C, decoder=SPY, context=ctx[:1])


def test_outliers_are_absent_in_the_context():
    """A stuck pixel is stuck in every group: the decoder sees it neither in
    the measurement nor in the neighbours."""
    C = spec_masks(2, 6, 32, 32)
    X = np.random.default_rng(1).poisson(40, (6, 32, 32)).astype(np.float32)
    X[:, 10, 12] = 60000
    y = (C * X).sum(0)
    ctx = np.stack([X.mean(0), X.mean(0)])
    tcscodec.reconstruct(y, C, decoder=SPY, context=ctx)
    seen = _ContextSpy.seen[-1][0].numpy()
    assert np.isnan(seen[:, 10, 12]).all() and np.isfinite(np.delete(seen.reshape(2, -1), 10 * 32 + 12, 1)).all()


def test_training_with_context(tmp_path):
    from tcscodec.training import TrainConfig, train

    cfg = TrainConfig(steps=2, batch=2, crop=32, n_min=2, n_max=4, pool_movies=2, movie_frames=12,
                      movie_size=48, threads=1, context_drop=0.5,
                      model={"stages": 1, "width": 8, "blocks": 1, "factor": 2, "context": True})
    ckpt = train(cfg, tmp_path / "run", progress=False, log=lambda s: None)
    state = torch.load(ckpt, weights_only=True)["model"]
    assert "denoisers.0.context_head.weight" in state
    # training moved the context weights off zero: the context reached the loss
    assert state["denoisers.0.context_head.weight"].abs().sum() > 0
