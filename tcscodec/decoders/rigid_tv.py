"""Rigid-scene decoding: one still image per group, moved along the path.

When the specimen does not change during a group and only drifts (a static
sample under stage drift, a long exposure split into frames), the ``n``
frames of the group are one image ``z`` seen through ``n`` shifts::

    x_b(r) = z(r - s_b),        Y = sum_b C_b * x_b

Then the group has about as many unknowns as measured pixels (the canvas is
the frame plus the path's excursion), not ``n`` times as many, and the
masks' random pattern makes the system well posed: a compact bright feature
that every other decoder smears along the path comes back whole.  The
shifts are sub-pixel (bilinear), applied to the smooth image ``z``, never
to the masks, so nothing of the masks' pixel-random pattern is
interpolated (what made sub-pixel shifts ring in :mod:`.warp`).

It is solved by SIRT (the simultaneous iterative reconstruction of
tomography: each step divides the residual by the row sums of the forward
operator and the back-projection by its column sums, which converges for
any non-negative operator) with a 2-D total-variation step after each
iteration, whose weight decays along the iterations.

Measured on drifting 256² movies (``python bench/motion_long.py --movies
... --also rigid-tv``, bench/results/motion/rigid.md): far ahead of every
other decoder where the scene really is rigid (a real HAADF micrograph
moved 2.5 px/frame, B = 10: 48.2 dB against 37.6 for tcs-unfold decoding
still, 34.3 in the moving frame), behind where the scene changes within a
group (particles that diffuse, rotate or grow; scan jitter): there the
frames are not one image and the soft temporal prior of :func:`.gap_tv.gap_tv` or the learned
decoder does better.  Hence a decoder to choose (``decoder="rigid-tv"``),
not the default.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import TcsValueError
from .base import Decoder, register_decoder
from .gap_tv import tv_denoise
from .noise import noise_level

__all__ = ["SubpixelShift", "rigid_tv", "RigidTV"]

#: SIRT iterations (each with one TV step)
DEFAULT_ITERATIONS = 60
#: TV weight of the first iteration, relative to the tile's mean level
DEFAULT_TV_WEIGHT = 0.3
#: factor of the TV weight from one iteration to the next
DEFAULT_TV_DECAY = 0.97
#: the TV weight never falls below this many times the tile's relative noise
DEFAULT_NOISE_FLOOR = 1.0


class SubpixelShift:
    """Bilinear translation of one canvas image per sample to ``n`` frames,
    and its adjoint.

    Parameters
    ----------
    shifts : array_like
        ``(N, n, 2)`` or ``(n, 2)`` displacements ``(dy, dx)`` in pixels:
        the content of frame ``b`` sits at ``r + shifts[b]`` of where it
        sits in the canvas image (the convention of :class:`.warp.FrameWarp`).
    size : (h, w)
        Frame size.

    Attributes
    ----------
    margins : (int, int)
        Canvas pixels on each side of the frame along y and x: the largest
        displacement along that axis rounded up, plus one for the bilinear
        neighbour; the canvas is ``(h + 2 * my, w + 2 * mx)``.
    """

    def __init__(self, shifts, size: tuple[int, int]):
        s = np.asarray(torch.as_tensor(shifts).detach().cpu(), np.float64)
        if s.ndim == 2:
            s = s[None]
        if s.ndim != 3 or s.shape[-1] != 2 or not np.isfinite(s).all():
            raise TcsValueError(f"shifts must be finite, (N, n, 2) or (n, 2), got shape {tuple(s.shape)}")
        self.size = (int(size[0]), int(size[1]))
        largest = np.abs(s).reshape(-1, 2).max(0, initial=0.0)
        self.margins = tuple(int(math.ceil(float(v))) + 1 for v in largest)
        h, w = self.size
        self.canvas = (h + 2 * self.margins[0], w + 2 * self.margins[1])
        # Frame pixel r reads canvas pixel r + a with a = margin - s: the
        # corner floor(a) and the bilinear fraction of the next pixel.
        a = np.array(self.margins, np.float64) - s
        corner = np.floor(a).astype(np.int64)
        frac = a - corner
        self.n = s.shape[1]
        self._samples = s.shape[0]
        # (i, b, [(y, x, weight) of the four bilinear taps]) per frame, made
        # once: the solver applies the shift twice per iteration.
        self._taps = [(i, b, [(int(corner[i, b, 0]) + dy, int(corner[i, b, 1]) + dx, float(wy * wx))
                              for dy, wy in ((0, 1 - frac[i, b, 0]), (1, frac[i, b, 0]))
                              for dx, wx in ((0, 1 - frac[i, b, 1]), (1, frac[i, b, 1])) if wy * wx > 0])
                      for i in range(self._samples) for b in range(self.n)]

    def _check(self, N: int) -> int:
        if self._samples not in (1, N):
            raise TcsValueError(f"{N} samples given to a shift made for {self._samples}")
        return self._samples

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Canvas images ``(N, Hc, Wc)`` to shifted frames ``(N, n, h, w)``."""
        N = z.shape[0]
        if tuple(z.shape[1:]) != self.canvas:
            raise TcsValueError(f"canvas of {tuple(z.shape[1:])} given to a shift with canvas {self.canvas}")
        shared = self._check(N) == 1
        h, w = self.size
        out = z.new_zeros((N, self.n, h, w))
        for i, b, taps in self._taps:
            dst = out[:, b] if shared else out[i, b]
            src = z if shared else z[i]
            for y0, x0, wt in taps:
                dst.add_(src[..., y0:y0 + h, x0:x0 + w], alpha=wt)
        return out

    def adjoint(self, x: torch.Tensor) -> torch.Tensor:
        """Frames ``(N, n, h, w)`` back to the canvas ``(N, Hc, Wc)``: the
        transpose of :meth:`forward` (each frame's pixels summed onto the
        canvas pixels they read)."""
        N = x.shape[0]
        shared = self._check(N) == 1
        h, w = self.size
        out = x.new_zeros((N, *self.canvas))
        for i, b, taps in self._taps:
            src = x[:, b] if shared else x[i, b]
            dst = out if shared else out[i]
            for y0, x0, wt in taps:
                dst[..., y0:y0 + h, x0:x0 + w].add_(src, alpha=wt)
        return out


def rigid_tv(y: torch.Tensor, masks: torch.Tensor, shifts=None, *, iterations: int = DEFAULT_ITERATIONS,
             tv_weight: float = DEFAULT_TV_WEIGHT, tv_decay: float = DEFAULT_TV_DECAY,
             tv_iterations: int = 5, noise_floor: float = DEFAULT_NOISE_FLOOR) -> torch.Tensor:
    """Reconstruct each group as one image moved along ``shifts``.

    Parameters
    ----------
    y : torch.Tensor
        ``(N, h, w)`` measurements ``sum_b C_b * X_b``.
    masks : torch.Tensor
        ``(N, n, h, w)`` 0/1 masks.
    shifts : array_like, optional
        ``(N, n, 2)`` or ``(n, 2)`` displacement of each frame's content
        (:class:`SubpixelShift`); None: the scene stands still (every frame
        the same image).
    iterations : int, optional
        SIRT iterations, each followed by one TV step (default 60).
    tv_weight : float, optional
        TV weight of the first iteration, relative to the tile's mean level
        (default 0.3).
    tv_decay : float, optional
        Factor of the TV weight from one iteration to the next (default
        0.97, so the last of 60 iterations denoises 6x less than the first).
    tv_iterations : int, optional
        Chambolle passes per TV step (default 5).
    noise_floor : float, optional
        The TV weight of a tile never falls below this many times its
        relative noise (:func:`.noise.noise_level` of ``Y / sum C`` over
        the tile's level; default 1), so that low-dose tiles stay denoised
        as the schedule decays.  Measured at B = 10 (no floor -> 1): a
        cryo-EM micrograph at 0.9 e-/px 17.5 -> 19.6 dB, MoS2 at 2 e-/px
        23.8 -> 24.3, HAADF at 5 e-/px 48.1 -> 49.2.

    Returns
    -------
    torch.Tensor
        ``(N, n, h, w)`` float32 frames, each the image moved by its shift.
    """
    if int(iterations) < 0:
        raise TcsValueError(f"iterations must be >= 0, got {iterations}")
    if not tv_weight >= 0 or not tv_decay > 0 or not noise_floor >= 0:
        raise TcsValueError(f"tv_weight and noise_floor must be >= 0 and tv_decay > 0, "
                            f"got {tv_weight}, {noise_floor} and {tv_decay}")
    y = y.to(torch.float32)
    C = masks.to(device=y.device, dtype=torch.float32)
    N, n, h, w = C.shape
    op = SubpixelShift(np.zeros((n, 2)) if shifts is None else shifts, (h, w))
    csum = C.sum(1)
    measured = csum > 0
    csum = torch.where(measured, csum, torch.ones_like(csum))
    # Work relative to each tile's mean level, so one TV weight fits all
    # units; a dark or dark-subtracted tile keeps scale 1.
    level = y.flatten(1).sum(1) / (csum * measured).flatten(1).sum(1).clamp(min=1)
    scale = torch.where(level > 0, level, torch.ones_like(level)).view(N, 1, 1)
    y = y / scale
    ybar = torch.where(measured, y / csum, torch.zeros_like(y))
    floor = [float(noise_floor) * float(s) for s in noise_level(ybar).flatten()]
    # Start from the mean of the frames' Y / sum C over the canvas pixels
    # they see (the smeared image); pixels no mask ever opens on stay there.
    seen = op.adjoint(measured[:, None].expand(N, n, h, w).float())
    z = op.adjoint(ybar[:, None].expand(N, n, h, w).contiguous()) / seen.clamp(min=1e-6)
    col = op.adjoint(C).clamp(min=1e-6)
    for k in range(int(iterations)):
        resid = (y - (C * op.forward(z)).sum(1)) / csum
        z = z + op.adjoint(C * resid[:, None]) / col
        if tv_iterations > 1:
            # one TV call per tile: each has its own noise floor
            scheduled = float(tv_weight) * float(tv_decay) ** k
            z = torch.stack([tv_denoise(z[i][None, None].contiguous(), max(scheduled, floor[i]), tv_iterations)[0, 0]
                             for i in range(N)])
    return op.forward(z) * scale[:, None]


@register_decoder("rigid-tv")
class RigidTV(Decoder):
    """The rigid-scene decoder (:func:`rigid_tv`), registered as
    ``"rigid-tv"``: each group is one image moved along the movie's
    estimated path (:meth:`tcscodec.TcsReader.motion`; groups the motion
    gate decodes as still are one image that stands still).

    For a specimen that does not change and only drifts; where it changes
    within a group, use the default decoder.  Options: the keyword
    arguments of :func:`rigid_tv` (``iterations``, ``tv_weight``,
    ``tv_decay``, ``tv_iterations``, ``noise_floor``).
    """

    #: the TV's and the bilinear shift's reach, beyond the path's own
    #: excursion (which the tiling adds)
    receptive_margin = 16
    uses_motion = True

    _OPTIONS = ("iterations", "tv_weight", "tv_decay", "tv_iterations", "noise_floor")

    def __init__(self, device: str = "cpu", **options):
        unknown = set(options) - set(self._OPTIONS)
        if unknown:
            raise TcsValueError(f"unknown rigid-tv option(s) {sorted(unknown)}; known: {', '.join(self._OPTIONS)}")
        super().__init__(device=device, **options)

    @torch.no_grad()
    def decode(self, y, masks, shifts=None):
        """Decode ``(N, h, w)`` measurements with ``(N, n, h, w)`` masks
        along per-frame ``shifts`` (None: a still scene)."""
        return rigid_tv(y, masks, shifts, **self.options)

    def __repr__(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"RigidTV(device={self.device!r}{opts})"
