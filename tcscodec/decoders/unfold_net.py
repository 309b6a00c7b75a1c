"""The architecture of the learned decoder ``tcs-unfold`` (weights apart,
in :mod:`tcscodec.weights`, as CompressAI keeps its zoo).

A deep-unfolding network: ``stages`` rounds of

1. a GAP data-consistency step, ``x_b += step_k * C_b * (y - sum_b C_b x_b) / sum_b C_b``,
   which puts back what the measurement says about each frame, and
2. a small learned denoiser shared by all frames of the group: a 2-D CNN at
   half resolution (pixel-unshuffle by 2, lossless) whose blocks exchange
   information between frames by a temporal channel shift (TSM: a quarter of
   the channels from the previous frame, a quarter from the next) and by the
   mean of the features over the group.

With ``warm_start`` > 0 the first estimate is not Y / sum C but the frames
of that many GAP-TV iterations (:func:`.gap_tv.gap_tv`, run without
gradients), which the learned stages then refine.

With ``context`` the denoisers also see the neighbouring groups' Y / sum C
(NaN where there is none), through an extra head that starts at zero, so
weights trained without it fine-tune into it.

With ``shifts`` (each frame's displacement, :mod:`tcscodec.motion`) the
warm start is motion-compensated GAP-TV (or, with ``rigid_start``, the
group solved as one image moved along the shifts: :mod:`.rigid_tv`), and
each denoiser runs on the
frames aligned by the shifts, its masks aligned alike and, in place of
``Y / sum C``, the mean of the aligned starting frames: it sees a still
scene.  Its correction is moved back to the detector's frame, where the GAP
steps stay (:class:`.warp.FrameWarp`).

Nothing in it depends on B or on a particular mask: the masks enter
explicitly (as the GAP operator and as an input channel of the denoiser), and
the frame axis is only shifted and averaged over, so one model serves every
B and every seed.  Inputs are normalised by the mean of Y / sum C (so the
model sees ~1-valued frames at any dose or scaling; with ``offset`` a dark
level is subtracted first) and the denoiser is told
the noise level, estimated from the measurement itself.

CPU cost: 3-D and depthwise-temporal convolutions are slow on CPUs; plain
3x3 2-D convolutions at reduced resolution run at tens of GFLOP/s per core.
Their speed depends on staying in cache: CPU inference runs each denoiser a
few frames at a time (:data:`CHUNK_BYTES`), which leaves the frames bit for
bit the same and takes 0.5-0.7x the time on groups of 20-30 frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import TcsRuntimeError, TcsValueError
from ..format.config import ConfigDict
from .gap_tv import gap_tv
from .noise import dark_level, noise_level
from .rigid_tv import rigid_tv
from .warp import FrameWarp

#: context inputs of the denoiser: two neighbours and their presence flags
CONTEXT_CHANNELS = 4

__all__ = ["UnfoldConfig", "UnfoldNet", "normalise", "affine_normalise", "noise_level"]


@dataclass(frozen=True)
class UnfoldConfig(ConfigDict):
    """Hyper-parameters of :class:`UnfoldNet` (stored with the weights)."""

    stages: int = 3
    width: int = 24
    blocks: int = 2
    #: pixel-unshuffle factor of the denoiser (2: half resolution)
    factor: int = 2
    #: GAP-TV iterations that make the starting estimate (0: start from
    #: Y / sum C).  A classical start recovers most of the motion the
    #: measurement encodes at high dose, which a few learned stages cannot.
    warm_start: int = 0
    #: Also subtract a dark level (a low quantile of Y / sum C) before
    #: scaling, so bright-field HRTEM and offset cameras, whose contrast is a
    #: small modulation on a large level, reach the network as contrast.
    offset: bool = False
    #: Also see the neighbouring groups' ``Y / sum C`` (the group before and
    #: the one after): in a slowly changing scene they hold three times the
    #: electrons of the group alone, which the denoiser can use where they
    #: agree with it.
    context: bool = False
    #: With ``shifts``: start from this many iterations of the rigid-scene
    #: solution (:func:`.rigid_tv.rigid_tv`: the group as one image moved
    #: along the shifts) instead of motion-compensated GAP-TV (0).  A rigid
    #: start keeps a compact bright feature whole where GAP-TV smears it
    #: along the path; the stages learn to put back what changes within
    #: the group.  Samples whose shifts are all zero start from GAP-TV.
    #: The shipped weights start so where the reader finds the path smooth
    #: (``forward``'s ``rigid_start``, :class:`.learned.UnfoldDecoder`).
    rigid_start: int = 0


def normalise(y: torch.Tensor, csum: torch.Tensor):
    """Scale of each sample: the mean of Y / sum C over measured pixels.

    Returns ``(scale (N,1,1), xbar (N,h,w))`` where ``xbar = Y / sum C`` in
    the input's units (0 where no frame was measured).
    """
    measured = csum > 0
    xbar = torch.where(measured, y / csum.clamp(min=1), torch.zeros_like(y))
    count = measured.sum((-2, -1)).clamp(min=1)
    scale = xbar.sum((-2, -1)) / count
    # Dark or empty tiles: fall back to the mean magnitude, then to 1.
    scale = torch.where(scale.abs() > 1e-6, scale, xbar.abs().sum((-2, -1)) / count + 1e-6)
    return scale[:, None, None], xbar


def affine_normalise(y: torch.Tensor, csum: torch.Tensor):
    """Dark level and contrast scale of each sample, for ``offset=True``.

    Returns ``(offset, spread, xbar)``, the first two (N,1,1): ``offset`` is
    the dark level (:func:`.noise.dark_level`) of ``xbar = Y / sum C`` over
    measured pixels and ``spread`` the mean of ``xbar`` above it (at least
    1e-3 of the mean level), so ``(xbar - offset) / spread`` has mean 1 above a
    dark floor near 0 whatever the camera's offset and gain.  Because
    ``Y - offset * sum C = sum_b C_b (X_b - offset)``, the normalised
    measurement stays a measurement of the normalised frames.
    """
    scale, xbar = normalise(y, csum)
    offset = dark_level(torch.where(csum > 0, xbar, scale.expand_as(xbar)))
    offset = torch.minimum(offset, scale)  # never above the mean (negative data)
    spread = torch.maximum(scale - offset, 1e-3 * scale.abs()).clamp(min=1e-12)
    return offset, spread, xbar


class _Block(nn.Module):
    """Residual block: temporal shift, 3x3 conv, group-mean mixing."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.mix = nn.Conv2d(width, width, 1)

    def forward(self, h: torch.Tensor, n: int, chunk: int | None = None) -> torch.Tensor:
        """``h`` (N * n, c, H, W): features of groups of ``n`` frames, run
        ``chunk`` frames at a time (all at once by default)."""
        NB, c, H, W = h.shape
        t = h.view(NB // n, n, c, H, W)

        def conv(layer, x):  # a layer on (G, m, c, H, W) frames
            return layer(x.reshape(-1, c, H, W)).view(x.shape)

        spans = _frame_spans(n, chunk)
        z = _by_spans(spans, lambda a, b: F.silu(conv(self.conv1, self._shifted(t, a, b))))
        # The 1x1 mixing of the group mean is the same for every frame: once per group.
        mixed = self.mix(z.mean(1))[:, None]
        out = _by_spans(spans, lambda a, b: t[:, a:b] + conv(self.conv2, F.silu(z[:, a:b] + mixed)))
        return out.view(NB, c, H, W)

    @staticmethod
    def _shifted(t: torch.Tensor, a: int, b: int) -> torch.Tensor:
        """Frames ``a..b-1`` of ``t`` (G, n, c, H, W) after the temporal
        shift (TSM): channels [0, q) come from frame b-1, [q, 2q) from
        frame b+1 (zero beyond the group), q = c / 4."""
        n, q = t.shape[1], t.shape[2] // 4
        prev = F.pad(t[:, max(a - 1, 0):b - 1, :q], (0, 0, 0, 0, 0, 0, 1 if a == 0 else 0, 0))
        nxt = F.pad(t[:, a + 1:b + 1, q:2 * q], (0, 0, 0, 0, 0, 0, 0, 1 if b == n else 0))
        return torch.cat([prev, nxt, t[:, a:b, 2 * q:]], dim=2)


#: CPU inference runs the denoisers a few frames at a time so that a
#: chunk's features (about this many bytes) stay in cache from one
#: operation to the next; a whole group of 30 frames of a 256 tile is 24 MB
#: of features per layer, and each layer streamed it through memory again
#: (bench/results/decode_cache.md).  Results are bit for bit the same.
CHUNK_BYTES = 2 << 20


def _frame_spans(n: int, chunk: int | None) -> list[tuple[int, int]]:
    """``(a, b)`` frame ranges of ``chunk`` frames covering ``0..n-1``."""
    k = n if chunk is None else max(int(chunk), 1)
    return [(a, min(a + k, n)) for a in range(0, n, k)]


def _by_spans(spans, fn) -> torch.Tensor:
    """``fn(a, b)`` (G, b - a, ...) of each frame span, joined along the
    frame axis (the one result itself when there is one span, so autograd
    sees no copy)."""
    if len(spans) == 1:
        return fn(*spans[0])
    out = None
    for a, b in spans:
        part = fn(a, b)
        if out is None:
            out = part.new_empty((part.shape[0], spans[-1][1], *part.shape[2:]))
        out[:, a:b] = part
    assert out is not None  # spans is never empty
    return out


class _Denoiser(nn.Module):
    """Per-frame CNN at half resolution; input channels per frame:
    current estimate, own mask, Y / sum C, noise level (and with
    ``context``: the neighbouring groups' Y / sum C with their presence
    flags, and the frame's place in the group)."""

    def __init__(self, width: int, blocks: int, factor: int, context: bool = False):
        super().__init__()
        self.factor = factor
        self.head = nn.Conv2d(4 * factor**2, width, 3, padding=1)
        if context:
            # Apart from `head` and zero at first, so weights trained without
            # context load unchanged and start out ignoring it.
            self.context_head = nn.Conv2d(CONTEXT_CHANNELS * factor**2, width, 3, padding=1, bias=False)
            nn.init.zeros_(self.context_head.weight)
            self.position = nn.Parameter(torch.zeros(width))
        self.blocks = nn.ModuleList(_Block(width) for _ in range(blocks))
        self.tail = nn.Conv2d(width, factor**2, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)  # type: ignore[arg-type]  # Conv2d(bias=True): never None
        # Corrections are made in units of the noise level (plus a learned
        # floor for motion at high dose), so one network fits every dose: at
        # 500 e-/px the same features must not move pixels as far as at 1.
        self.floor = nn.Parameter(torch.tensor(-3.0))

    def forward(self, x, C, xbar, sigma, context=None):
        N, n, H, W = x.shape
        f, f2 = self.factor, self.factor**2
        width = self.head.out_channels
        chunk = self._chunk(x)
        spans = _frame_spans(n, chunk)
        # The head is linear: the part of its input shared by the group
        # (xbar, noise level) is convolved once per group, not per frame.
        # Unshuffled channels are grouped by input: x, C, xbar, sigma.
        w = self.head.weight
        shared = F.pixel_unshuffle(torch.stack([xbar, sigma.expand(N, H, W)], dim=1), f)
        group = F.conv2d(shared, w[:, 2 * f2:], padding=1)[:, None]
        if context is not None:
            seen = self.context_head(F.pixel_unshuffle(context, f))[:, None]
            # Place in the group, -1/2 (first frame) .. 1/2 (last): which
            # neighbour a frame is nearer to.
            place = (torch.arange(n, device=x.device, dtype=x.dtype) + 0.5) / n - 0.5
            placed = (place[:, None] * self.position[None, :])[None, :, :, None, None]

        def head(a, b):
            own = F.pixel_unshuffle(torch.stack([x[:, a:b], C[:, a:b]], dim=2).view(-1, 2, H, W), f)
            h = F.conv2d(own, w[:, :2 * f2], self.head.bias, padding=1).view(N, b - a, width, H // f, W // f)
            h = h + group
            if context is not None:
                h = h + seen
                h = h + placed[:, a:b]
            return F.silu(h)

        h = _by_spans(spans, head).view(N * n, width, H // f, W // f)
        for block in self.blocks:
            h = block(h, n, chunk)
        t = h.view(N, n, width, H // f, W // f)
        unit = (sigma + F.softplus(self.floor))[:, None]

        def tail(a, b):
            r = self.tail(t[:, a:b].reshape(-1, width, H // f, W // f))
            return x[:, a:b] + unit * F.pixel_shuffle(r, f).view(N, b - a, H, W)

        return _by_spans(spans, tail)

    def _chunk(self, x: torch.Tensor) -> int | None:
        """Frames per chunk: None (all at once) where gradients flow or off
        the CPU, else what keeps a chunk's features near CHUNK_BYTES."""
        if x.device.type != "cpu" or torch.is_grad_enabled():
            return None
        N, _, H, W = x.shape
        frame = N * self.head.out_channels * (H // self.factor) * (W // self.factor) * x.element_size()
        return max(1, CHUNK_BYTES // max(frame, 1))


class UnfoldNet(nn.Module):
    """GAP-unfolded decoder network.

    ``forward(y, C)`` takes a measurement ``y`` (N,h,w) and 0/1 masks ``C``
    (N,n,h,w), h and w multiples of ``config.factor``, in the input's units, and returns the frames
    (N,n,h,w) in the same units.
    """

    def __init__(self, config: UnfoldConfig = UnfoldConfig()):
        super().__init__()
        self.config = config
        # From a GAP-TV start the projection would put the noise back: start
        # the learned steps at 0, so an untrained net returns GAP-TV's frames.
        self.steps = nn.Parameter(torch.full((config.stages,), 0.0 if config.warm_start else 1.0))
        self.denoisers = nn.ModuleList(
            _Denoiser(config.width, config.blocks, config.factor, config.context) for _ in range(config.stages))

    def load_parent_state(self, state: dict) -> None:
        """Load the weights of a smaller parent network, so that this one
        starts out computing exactly what the parent does: a parent without
        context (the context inputs start at zero weight), or one with fewer
        stages (the extra stages come last and start as the identity: a zero
        GAP step and the denoiser's zero tail).  Other states load strictly."""
        own = self.state_dict()
        state = dict(state)
        n_parent = state["steps"].numel() if "steps" in state else len(self.steps)
        if n_parent < len(self.steps):
            state["steps"] = torch.cat([state["steps"], torch.zeros(len(self.steps) - n_parent)])
            with torch.no_grad():
                for extra in self.denoisers[n_parent:]:
                    tail = extra.tail
                    assert isinstance(tail, nn.Conv2d)  # for the type checker: Module attributes are untyped
                    tail.weight.zero_()
                    tail.bias.zero_()  # type: ignore[union-attr]  # Conv2d(bias=True)
        new_stage = {f"denoisers.{i}." for i in range(n_parent, len(self.steps))}

        def new(k):
            return ".context_head." in k or k.endswith(".position") or any(k.startswith(p) for p in new_stage)

        missing = [k for k in own if k not in state and not new(k)]
        wrong = [k for k in state if k not in own or state[k].shape != own[k].shape]
        if missing or wrong:
            raise TcsRuntimeError(f"state does not fit {type(self).__name__}({self.config}): "
                               f"missing {missing}, unexpected or of another shape {wrong}")
        self.load_state_dict(state, strict=False)

    def forward(self, y: torch.Tensor, C: torch.Tensor, context: torch.Tensor | None = None, *,
                shifts: torch.Tensor | None = None, with_start: bool = False, rigid_start: int | None = None):
        """Frames ``(N, n, h, w)``; with ``with_start`` also the starting
        estimate (GAP-TV or Y / sum C, same units) the stages refined.

        ``context`` (N, 2, h, w): ``Y / sum C`` of the group before and of
        the group after, in the input's units, NaN where there is none (the
        first or last group, or pixels no frame of that group measured).
        Networks without ``config.context`` ignore it; those with it read
        None as no neighbours.

        ``shifts`` (N, n, 2) or (n, 2): displacement (dy, dx) of each
        frame's content in pixels; None decodes the group as still.
        ``rigid_start``: iterations of the rigid-scene start with shifts
        (None: ``config.rigid_start``; 0: motion-compensated GAP-TV)."""
        csum = C.sum(1)
        if self.config.offset:
            offset, scale, xbar = affine_normalise(y, csum)
            xbar = torch.where(csum > 0, xbar - offset, torch.zeros_like(xbar))
        else:
            scale, xbar = normalise(y, csum)
            offset = torch.zeros_like(scale)
        yn, xbar = (y - offset * csum) / scale, xbar / scale
        sigma = noise_level(xbar)
        ctx = self._context_channels(context, xbar, offset, scale) if self.config.context else None
        inv = 1.0 / csum.clamp(min=1)
        rigid = self.config.rigid_start if rigid_start is None else int(rigid_start)
        if self.config.warm_start:
            with torch.no_grad():
                x = self._rigid_start(y, C, shifts, rigid) if shifts is not None and rigid > 0 else None
                if x is None:
                    x = gap_tv(y, C, iterations=self.config.warm_start, shifts=shifts)
                x = (x - offset[:, None]) / scale[:, None]
        else:
            x = xbar[:, None].expand_as(C).contiguous()
        start = x
        warp = None if shifts is None else FrameWarp(shifts, (y.shape[-2], y.shape[-1]), self.config.factor)
        if warp is not None:
            # The denoisers see the still scene on the warp's canvas: aligned
            # masks (0 where a frame does not see) and frames, and for
            # Y / sum C (smeared by the motion) the mean of the aligned start.
            C_seen = warp.align(C, "zero")
            xbar_seen = warp.seen_mean(x)
            if ctx is not None:
                my, mx = warp.margins
                ctx = F.pad(ctx, (mx, mx, my, my), mode="replicate")
        else:
            C_seen, xbar_seen = C, xbar
        for step, denoise in zip(self.steps, self.denoisers, strict=True):
            residual = (yn - (C * x).sum(1)) * inv
            x = x + step * C * residual[:, None]
            if warp is None:
                x = denoise(x, C, xbar, sigma, ctx)
            else:
                z = warp.align(x)
                x = x + warp.unalign(denoise(z, C_seen, xbar_seen, sigma, ctx) - z)
        x = x * scale[:, None] + offset[:, None]
        if with_start:
            return x, start * scale[:, None] + offset[:, None]
        return x

    def _rigid_start(self, y: torch.Tensor, C: torch.Tensor, shifts, iterations: int) -> torch.Tensor | None:
        """The warm start (input units): ``iterations`` of the rigid-scene
        solution for each sample whose shifts are not all zero, GAP-TV in
        the moving frame for the others; None where no sample moves."""
        s = torch.as_tensor(shifts, dtype=torch.float32)
        # (n, 2): one path for all samples, which the solver shares
        moving = s.flatten(-2).abs().amax(-1) > 0 if s.dim() == 3 else s.abs().max().gt(0).expand(y.shape[0])
        if not bool(moving.any()):
            return None
        if bool(moving.all()):
            return rigid_tv(y, C, s, iterations=iterations)
        x = gap_tv(y, C, iterations=self.config.warm_start, shifts=shifts)
        x[moving] = rigid_tv(y[moving], C[moving], s[moving], iterations=iterations)
        return x

    @staticmethod
    def _context_channels(context, xbar, offset, scale):
        """The denoiser's context inputs (N, 4, h, w): both neighbours
        normalised like ``xbar`` (``xbar`` itself where absent) and their
        presence flags."""
        N, h, w = xbar.shape
        if context is None:
            context = torch.full((N, 2, h, w), float("nan"), dtype=xbar.dtype, device=xbar.device)
        if context.shape != (N, 2, h, w):
            raise TcsValueError(f"context must have shape {(N, 2, h, w)}, got {tuple(context.shape)}")
        present = torch.isfinite(context)
        norm = (context - offset[:, None]) / scale[:, None]
        filled = torch.where(present, norm, xbar[:, None])
        return torch.cat([filled, present.to(xbar.dtype)], dim=1)
