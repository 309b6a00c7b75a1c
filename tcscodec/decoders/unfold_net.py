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
warm start is motion-compensated GAP-TV, and each denoiser runs on the
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
3x3 2-D convolutions at half resolution run at tens of GFLOP/s per core.
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

    def forward(self, h: torch.Tensor, n: int) -> torch.Tensor:
        NB, c, H, W = h.shape
        t = h.view(NB // n, n, c, H, W)
        q = c // 4
        # TSM: channels [0, q) come from frame b-1, [q, 2q) from frame b+1.
        shifted = torch.cat([
            F.pad(t[:, :-1, :q], (0, 0, 0, 0, 0, 0, 1, 0)),
            F.pad(t[:, 1:, q:2 * q], (0, 0, 0, 0, 0, 0, 0, 1)),
            t[:, :, 2 * q:],
        ], dim=2).view(NB, c, H, W)
        z = F.silu(self.conv1(shifted)).view(NB // n, n, c, H, W)
        # The 1x1 mixing of the group mean is the same for every frame: once per group.
        mixed = self.mix(z.mean(1))
        z = (z + mixed[:, None]).view(NB, c, H, W)
        return h + self.conv2(F.silu(z))


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
        f2 = self.factor**2
        # The head is linear: the part of its input shared by the group
        # (xbar, noise level) is convolved once per group, not per frame.
        # Unshuffled channels are grouped by input: x, C, xbar, sigma.
        own = F.pixel_unshuffle(torch.stack([x, C], dim=2).view(N * n, 2, H, W), self.factor)
        shared = F.pixel_unshuffle(torch.stack([xbar, sigma.expand(N, H, W)], dim=1), self.factor)
        w = self.head.weight
        h = F.conv2d(own, w[:, :2 * f2], self.head.bias, padding=1)
        h = h.view(N, n, *h.shape[1:]) + F.conv2d(shared, w[:, 2 * f2:], padding=1)[:, None]
        if context is not None:
            h = h + self.context_head(F.pixel_unshuffle(context, self.factor))[:, None]
            # Place in the group, -1/2 (first frame) .. 1/2 (last): which
            # neighbour a frame is nearer to.
            place = (torch.arange(n, device=x.device, dtype=x.dtype) + 0.5) / n - 0.5
            h = h + (place[:, None] * self.position[None, :])[None, :, :, None, None]
        h = F.silu(h.view(N * n, *h.shape[2:]))
        for block in self.blocks:
            h = block(h, n)
        unit = (sigma + F.softplus(self.floor))[:, None]
        return x + unit * F.pixel_shuffle(self.tail(h), self.factor).view(N, n, H, W)


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
                shifts: torch.Tensor | None = None, with_start: bool = False):
        """Frames ``(N, n, h, w)``; with ``with_start`` also the starting
        estimate (GAP-TV or Y / sum C, same units) the stages refined.

        ``context`` (N, 2, h, w): ``Y / sum C`` of the group before and of
        the group after, in the input's units, NaN where there is none (the
        first or last group, or pixels no frame of that group measured).
        Networks without ``config.context`` ignore it; those with it read
        None as no neighbours.

        ``shifts`` (N, n, 2) or (n, 2): displacement (dy, dx) of each
        frame's content in pixels; None decodes the group as still."""
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
        if self.config.warm_start:
            with torch.no_grad():
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
