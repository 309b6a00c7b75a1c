"""GAP-TV: the classical decoder (generalized alternating projection with
total-variation regularisation).

GAP-TV [1]_ alternates a Euclidean projection onto the measurement's
constraint set ``{x : sum_b C_b * x_b = y}`` with a total-variation
denoising step.  Because the masks are 0/1, ``Phi Phi^T`` is diagonal
(``sum_b C_b``, the number of frames that measured each pixel), so the
projection is pixel-wise::

    x <- x + lambda * C * (y' - Phi x) / sum_b C_b

where ``y' = y`` (plain GAP) or, in the accelerated variant [1]_, ``y1``,
updated as ``y1 <- y1 + (y - Phi x)`` at each iteration: the measurement
residual is added back, which drives ``Phi x`` onto ``y`` much faster.  The
denoising step is Chambolle's projection algorithm [2]_ for the ROF problem,
run for a few iterations from a cold start (as
``skimage.restoration.denoise_tv_chambolle`` with ``max_num_iter=5``), with a
spatio-temporal TV that also penalises, at half weight by default,
differences between consecutive frames (+0.3 to +0.7 dB on the benchmark
videos; ``temporal_weight=0`` gives the per-frame TV of [1]_).

Everything is vectorised torch over a batch of tiles, so the same code runs
on the CPU and on CUDA.  The input is normalised internally by its mean
intensity ``mean(Y) / mean(sum_b C_b)``, so one set of defaults works for
counts (~1-500 per pixel) and for uint8/uint16/float intensities alike; the
result is returned in the input's units.  Pixels that no frame measured
(``sum_b C_b = 0``) get no data update and are filled in by the TV step.

Performance (defaults, 40 iterations, one CPU thread): a 256 x 256 x 8 group
of the public benchmark videos decodes in about 0.3-0.5 s, at or above the
published GAP-TV PSNR (tests/test_sci_benchmark.py); bench/decode.py times
large frames through the tiling engine.

References
----------
.. [1] X. Yuan, "Generalized alternating projection based total variation
   minimization for compressive sensing", Proc. IEEE ICIP, pp. 2539-2543,
   2016.
.. [2] A. Chambolle, "An algorithm for total variation minimization and
   applications", J. Math. Imaging Vis. 20, pp. 89-97, 2004.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from ..errors import TcsValueError
from . import tv_kernels
from .base import Decoder, register_decoder
from .noise import counts_per_pixel, dark_level
from .warp import FrameWarp

__all__ = ["GapTV", "gap_tv", "tv_denoise", "tv_weight_schedule"]

#: A TV weight: one value, ``(start, end)`` for a geometric schedule, one
#: value per iteration, or ``f(k, iterations) -> weight``.
TvWeight = float | Sequence[float] | Callable[[int, int], float]

# Defaults, tuned on the public video-SCI benchmark (see
# tests/test_sci_benchmark.py) and on simulated low-dose EM movies; the
# weights are relative to the mean intensity of the tile.
DEFAULT_ITERATIONS = 40
DEFAULT_TV_WEIGHT = 0.8
DEFAULT_TV_ITERATIONS = 5
DEFAULT_TEMPORAL_WEIGHT = 0.5
#: temporal weight with ``shifts``: the aligned frames show a still scene, and
#: pooling them is worth more (bench drift movies, one group: 0.5 to 2.9 dB over
#: still GAP-TV; 2.0 gains up to 0.6 dB more on some and loses 1.2 dB on drift0)
MOTION_TEMPORAL_WEIGHT = 1.0
#: ``accelerate="auto"`` accelerates tiles whose mean frame intensity (in the
#: input's units, taken as counts) is at least this.
AUTO_ACCELERATE_LEVEL = 15.0


def tv_weight_schedule(tv_weight: TvWeight, iterations: int) -> list[float]:
    """Return the TV weight of each of ``iterations`` GAP iterations.

    Parameters
    ----------
    tv_weight : float, (float, float), sequence of float, or callable
        A single weight used at every iteration; a pair ``(start, end)``
        interpolated geometrically (a decreasing schedule denoises strongly
        first, then lets detail back in); a sequence of exactly
        ``iterations`` weights; or a callable ``f(k, iterations)`` giving the
        weight of iteration ``k`` (0-based).
    iterations : int
        Number of GAP iterations.

    Returns
    -------
    list of float
        The weights, all positive and finite.

    Raises
    ------
    TcsValueError
        If the schedule has the wrong length or a non-positive weight.
    """
    if callable(tv_weight):
        weights = [float(tv_weight(k, iterations)) for k in range(iterations)]
    elif isinstance(tv_weight, (int, float)):
        weights = [float(tv_weight)] * iterations
    else:
        seq = [float(w) for w in tv_weight]
        if len(seq) == 2 and iterations != 2:
            start, end = seq
            if start <= 0 or end <= 0:
                raise TcsValueError(f"TV weights must be positive, got {tuple(seq)}")
            den = max(iterations - 1, 1)
            weights = [start * (end / start) ** (k / den) for k in range(iterations)]
        elif len(seq) == iterations:
            weights = seq
        else:
            raise TcsValueError(
                f"tv_weight needs 1, 2 or {iterations} values, got {len(seq)}"
            )
    for w in weights:
        if not (w > 0 and math.isfinite(w)):
            raise TcsValueError(f"TV weights must be positive and finite, got {w}")
    return weights


class _TvWorkspace:
    """Buffers of :func:`tv_denoise`, reused across GAP iterations so the
    decoder allocates once per batch instead of once per inner step."""

    def __init__(self, x: torch.Tensor, temporal: bool):
        like = lambda: torch.empty_like(x)  # noqa: E731
        self.p = [like(), like()] + ([like()] if temporal else [])
        self.g = [like(), like()] + ([like()] if temporal else [])
        self.out = like()
        self.norm = like()
        # The forward differences are zero on the last row/column/frame
        # (Neumann boundary); those slices are never written again.
        for g in self.g:
            g.zero_()


def tv_denoise(
    x: torch.Tensor,
    weight: float,
    iterations: int = DEFAULT_TV_ITERATIONS,
    temporal_weight: float = 0.0,
    workspace: _TvWorkspace | None = None,
    eps: float = 1e-20,
) -> torch.Tensor:
    """Total-variation denoising of a batch of frame stacks (Chambolle 2004).

    Approximately solves, for each stack ``f`` of ``x``,
    ``min_u ||u - f||^2 / 2 + weight * TV(u)`` with the isotropic TV
    ``sum sqrt(|D_y u|^2 + |D_x u|^2 + a^2 |D_t u|^2)`` (``a`` =
    ``temporal_weight``; 0 gives independent 2-D TV of each frame, as
    ``denoise_tv_chambolle(..., channel_axis=...)``).  Chambolle's dual
    projection runs ``iterations`` times from a cold start; few iterations
    (the GAP-TV default: 5, i.e. 4 dual updates) give a deliberately partial
    denoising, which GAP's outer loop repeats.

    Parameters
    ----------
    x : torch.Tensor
        ``(N, n, h, w)`` float stacks of ``n`` frames.
    weight : float
        TV weight, in the units of ``x``.
    iterations : int, optional
        Passes of the algorithm (>= 1; 1 returns ``x`` unchanged).
    temporal_weight : float, optional
        Weight ``a`` of the temporal differences (>= 0).
    workspace : optional
        Buffers from a previous call on tensors of the same shape.
    eps : float, optional
        Added to the squared gradient norm before its square root, far below
        any gradient that matters (in the units of ``x``, squared).  CPU
        ``sqrt`` is ~15x slower on zeros and ~100x on denormals, which flat
        regions produce in bulk.

    Returns
    -------
    torch.Tensor
        The denoised stacks, same shape as ``x``.  With a ``workspace`` this
        is one of its buffers, overwritten by the next call.
    """
    a = float(temporal_weight)
    temporal = a > 0 and x.shape[1] > 1
    ws = workspace if workspace is not None else _TvWorkspace(x, temporal)
    if _compiled(x, ws):
        tv_kernels.tv_chambolle(x.numpy(), weight, iterations, a, eps, [p.numpy() for p in ws.p], ws.out.numpy(),
                                torch.get_num_threads())
        return ws.out
    if iterations <= 1:
        ws.out.copy_(x)
        return ws.out
    # Step size of the dual ascent: 1/4 is the bound for 2-D (||div||^2 <= 8),
    # shrunk when the temporal term adds to the operator norm.
    tau = 1.0 / (4.0 + 2.0 * a * a) if temporal else 0.25
    pv, pu = ws.p[0], ws.p[1]
    gv, gu = ws.g[0], ws.g[1]
    out, norm = ws.out, ws.norm
    src = x
    for i in range(iterations):
        if i > 0:
            # out = x + div(p)   (backward differences, adjoint of forward)
            torch.sub(x, pv, out=out)
            out.sub_(pu)
            out[..., 1:, :].add_(pv[..., :-1, :])
            out[..., :, 1:].add_(pu[..., :, :-1])
            if temporal:
                pt = ws.p[2]
                out.sub_(pt, alpha=a)
                out[:, 1:].add_(pt[:, :-1], alpha=a)
            src = out
        if i == iterations - 1:
            break
        # g = grad(out), forward differences with a zero last difference
        torch.sub(src[..., 1:, :], src[..., :-1, :], out=gv[..., :-1, :])
        torch.sub(src[..., :, 1:], src[..., :, :-1], out=gu[..., :, :-1])
        torch.mul(gv, gv, out=norm)
        norm.addcmul_(gu, gu)
        if temporal:
            # unscaled temporal difference; the weight a enters below
            gt = ws.g[2]
            torch.sub(src[:, 1:], src[:, :-1], out=gt[:, :-1])
            norm.addcmul_(gt, gt, value=a * a)
        norm.add_(eps).sqrt_().mul_(tau / weight).add_(1.0)
        if i == 0:  # cold start, p = 0: no need to clear p first
            torch.mul(gv, -tau, out=pv).div_(norm)
            torch.mul(gu, -tau, out=pu).div_(norm)
            if temporal:
                torch.mul(ws.g[2], -tau * a, out=ws.p[2]).div_(norm)
        else:
            pv.sub_(gv, alpha=tau).div_(norm)
            pu.sub_(gu, alpha=tau).div_(norm)
            if temporal:
                ws.p[2].sub_(ws.g[2], alpha=tau * a).div_(norm)
    return out


def _compiled(x: torch.Tensor, ws: _TvWorkspace) -> bool:
    """Whether :func:`tv_denoise` runs the compiled CPU kernel
    (:mod:`.tv_kernels`): float32 CPU stacks that autograd does not
    follow, where numba is installed."""
    tensors = [x, ws.out, *ws.p]
    return (tv_kernels.available() and x.device.type == "cpu"
            and all(t.is_contiguous() and t.dtype == torch.float32 and not t.requires_grad for t in tensors))


def gap_tv(
    y: torch.Tensor,
    masks: torch.Tensor,
    iterations: int = DEFAULT_ITERATIONS,
    tv_weight: TvWeight = DEFAULT_TV_WEIGHT,
    tv_iterations: int = DEFAULT_TV_ITERATIONS,
    temporal_weight: float | None = None,
    accelerate: bool | str = "auto",
    step: float = 1.0,
    nonnegative: bool = False,
    normalize: bool = True,
    callback: Callable[[int, torch.Tensor], None] | None = None,
    shifts: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reconstruct frames from snapshot measurements with GAP-TV.

    Parameters
    ----------
    y : torch.Tensor
        ``(N, h, w)`` float measurements ``sum_b C_b * X_b``.
    masks : torch.Tensor
        ``(N, n, h, w)`` 0/1 masks (any float or integer dtype).
    iterations : int, optional
        GAP iterations (default 40).
    tv_weight : float, (start, end), sequence or callable, optional
        TV weight schedule, relative to the tile's mean intensity when
        ``normalize`` (see :func:`tv_weight_schedule`; default 0.8).
    tv_iterations : int, optional
        Chambolle passes per GAP iteration (default 5).
    temporal_weight : float, optional
        Weight of the temporal differences in the TV (default 0.5, and
        :data:`MOTION_TEMPORAL_WEIGHT` (1) with ``shifts``, where the
        aligned frames show a still scene; 0 gives the per-frame 2-D TV of
        the original GAP-TV).
    accelerate : bool or "auto", optional
        Use the accelerated GAP that adds the residual back.  Acceleration
        converges to frames that fit the measurement exactly: best for
        moderate and high signal (the benchmark videos, EM at >~ 20 counts
        per pixel) but it fits the shot noise of very low-dose data, where
        plain GAP is ~2 dB better.  ``"auto"`` (default) accelerates the
        tiles whose mean frame intensity is at least
        :data:`AUTO_ACCELERATE_LEVEL` (15) *in the input's units*, which is
        right for counts and for 8/16-bit intensities, and the tiles whose
        noise shows at least that many counts per pixel
        (:func:`.noise.counts_per_pixel`), so data in units finer than
        counts (gain-normalised or dark-subtracted floats) are judged by
        their dose; pass True or False to decide yourself (e.g. for
        low-dose counts scaled up by a large gain).
    step : float, optional
        Relaxation ``lambda`` of the projection (default 1).
    nonnegative : bool, optional
        Clamp the estimate at 0 after each iteration (default False; it
        changes little for counts and would bias dark-subtracted data).
    normalize : bool, optional
        Divide by the mean intensity ``mean(y) / mean(sum_b C_b)`` of each
        tile before decoding (default True), so ``tv_weight`` is
        scale-free; if False, ``tv_weight`` is in the input's units.
        Tiles whose mean is <= 0 (dark-subtracted data) are first shifted
        by their dark level (:func:`.noise.dark_level`), which is added
        back to the result.
    callback : callable, optional
        ``callback(k, x)`` after iteration ``k`` with the current normalised
        estimate (for convergence studies; do not modify ``x``).
    shifts : torch.Tensor, optional
        ``(N, n, 2)`` or ``(n, 2)`` displacement ``(dy, dx)`` of each
        frame's content in pixels (:mod:`tcscodec.motion`).  The TV step
        then runs on the frames aligned by them (:class:`.warp.FrameWarp`),
        where a drifting scene stands still and the temporal term can pool
        the frames; the projection stays in the detector's frame.

    Returns
    -------
    torch.Tensor
        ``(N, n, h, w)`` float32 frames in the units of ``y``.  Pixels that
        no frame measured (``sum_b C_b == 0``) are filled in by the TV
        step from their neighbours.
    """
    if y.ndim != 3 or masks.ndim != 4 or masks.shape[:1] + masks.shape[2:] != y.shape:
        raise TcsValueError(
            f"gap_tv needs y (N, h, w) and masks (N, n, h, w), got "
            f"{tuple(y.shape)} and {tuple(masks.shape)}"
        )
    iterations = int(iterations)
    if iterations < 0:
        raise TcsValueError(f"iterations must be >= 0, got {iterations}")
    if accelerate not in (True, False, "auto"):
        raise TcsValueError(f"accelerate must be True, False or 'auto', got {accelerate!r}")
    if not step > 0:
        raise TcsValueError(f"step must be > 0, got {step}")
    if temporal_weight is None:
        temporal_weight = DEFAULT_TEMPORAL_WEIGHT if shifts is None else MOTION_TEMPORAL_WEIGHT
    if temporal_weight < 0:
        raise TcsValueError(f"temporal_weight must be >= 0, got {temporal_weight}")
    weights = tv_weight_schedule(tv_weight, iterations)
    y = y.to(torch.float32)
    C = masks.to(device=y.device, dtype=torch.float32)
    N = y.shape[0]

    csum = C.sum(1)
    measured = csum > 0
    # Where no frame measured a pixel, the projection leaves x alone (C = 0
    # there); any non-zero divisor avoids 0/0.
    csum = torch.where(measured, csum, torch.ones_like(csum))

    num = y.reshape(N, -1).mean(1)
    den = (csum * measured).reshape(N, -1).mean(1)
    level = torch.where(den > 0, num / den.clamp_min(1e-30), torch.zeros_like(num))
    # Dark-subtracted data (mean level <= 0): decode Y - o sum C =
    # sum_b C_b (X_b - o) with o its dark level, and add o back at the end.
    # GAP and TV commute with the shift; only the normalisation (and the
    # acceleration rule) need a positive level.
    shift = torch.zeros_like(level)
    if bool((level <= 0).any()):
        ybar0 = torch.where(measured, y / csum, level.view(N, 1, 1).expand_as(y))
        shift = torch.where(level <= 0, dark_level(ybar0).view(N), shift)
        y = y - shift.view(N, 1, 1) * csum * measured
        level = level - shift
    if normalize:
        # Mean intensity of a frame pixel.  Per tile, so the weights are
        # relative to the local brightness; an all-dark tile keeps scale 1.
        scale = torch.where(level > 0, level, torch.ones_like(level)).view(N, 1, 1)
    else:
        scale = torch.ones((N, 1, 1), dtype=torch.float32, device=y.device)
    y = y / scale

    # Start from the per-pixel mean Y / sum C in every frame (much closer
    # than Phi^T y); unmeasured pixels start at the tile's mean level.
    fill = (level / scale.view(N)).view(N, 1, 1)
    ybar = torch.where(measured, y / csum, fill)
    x = ybar.unsqueeze(1).expand_as(C).contiguous()
    if iterations == 0:
        return (x * scale.unsqueeze(1) + shift.view(N, 1, 1, 1)).float()

    temporal = temporal_weight > 0 and C.shape[1] > 1
    ws = _TvWorkspace(x, temporal)
    # sqrt guard of tv_denoise: (1e-10 x the mean level)^2 in x's units
    eps = 1e-20 if normalize else 1e-20 * max(float(level.max()), 1e-15) ** 2
    # Accelerated GAP: the projection targets y1 = y + sum of the residuals
    # y - Phi x so far (the residual is "added back").  Yuan's code starts y1
    # at 0 rather than y; both reach the same point, this one sooner.
    if accelerate == "auto":
        # Exact data consistency (what acceleration converges to) fits the
        # shot noise of very low-dose data: plain GAP is ~2 dB better below
        # ~15 counts per pixel, accelerated GAP better above.  Data in units
        # finer than counts (gain-normalised floats) say their dose through
        # their noise.
        acc = level >= AUTO_ACCELERATE_LEVEL
        if not bool(acc.all()):
            counts = counts_per_pixel(ybar / level.clamp_min(1e-30).view(N, 1, 1) * scale, csum * measured)
            acc = acc | (counts >= AUTO_ACCELERATE_LEVEL)
        acc_all, acc_any = bool(acc.all()), bool(acc.any())
    else:
        acc_all = acc_any = bool(accelerate)
    y1 = y.clone() if acc_any else y
    resid = torch.empty_like(y)
    phi = ws.norm  # free between TV calls, when the TV runs on x itself
    warp = None if shifts is None else FrameWarp(shifts, (y.shape[-2], y.shape[-1]))
    if warp is not None:
        ws = _TvWorkspace(warp.align(x, "edge"), temporal)  # the TV runs on the canvas
        phi = torch.empty_like(x)
    for k in range(iterations):
        # resid = (y' - Phi x) / sum C, with y' = y1 (accelerated) or y
        torch.mul(C, x, out=phi)
        torch.sum(phi, 1, out=resid)
        if acc_any:
            y1.add_(y).sub_(resid)
            target = y1 if acc_all else torch.where(acc.view(N, 1, 1), y1, y)
            torch.sub(target, resid, out=resid)
        else:
            torch.sub(y, resid, out=resid)
        resid.div_(csum)
        x.addcmul_(C, resid.unsqueeze(1), value=step)
        if warp is None:
            # tv_denoise writes into ws.out: swap buffers instead of copying
            den_x = tv_denoise(x, weights[k], tv_iterations, temporal_weight, ws, eps)
            ws.out, x = x, den_x
        else:
            # Denoise the aligned frames; only the correction goes back.
            z = warp.align(x)
            x.add_(warp.unalign(tv_denoise(z, weights[k], tv_iterations, temporal_weight, ws, eps) - z))
        if nonnegative:
            x.clamp_(min=0)
        if callback is not None:
            callback(k, x)
    x.mul_(scale.unsqueeze(1))
    return x.add_(shift.view(N, 1, 1, 1)) if bool(shift.any()) else x


@register_decoder("gap-tv")
class GapTV(Decoder):
    """GAP-TV decoder (:func:`gap_tv`) in the decoder registry.

    Build with ``get_decoder("gap-tv", device, **options)``; the options are
    the keyword arguments of :func:`gap_tv` (``iterations``, ``tv_weight``,
    ``tv_iterations``, ``temporal_weight``, ``accelerate``, ``step``,
    ``nonnegative``, ``normalize``).

    Examples
    --------
    >>> import torch
    >>> from tcscodec.decoders import get_decoder
    >>> dec = get_decoder("gap-tv", iterations=20)
    >>> C = (torch.rand(1, 4, 32, 32) > 0.5).float()
    >>> x = torch.full((1, 4, 32, 32), 5.0)
    >>> out = dec.decode((C * x).sum(1), C)
    >>> out.shape
    torch.Size([1, 4, 32, 32])
    """

    #: GAP-TV is not strictly local, but its influence decays within a few
    #: pixels; 16 pixels of context make tile seams invisible.
    receptive_margin = 16

    _OPTIONS = (
        "iterations",
        "tv_weight",
        "tv_iterations",
        "temporal_weight",
        "accelerate",
        "step",
        "nonnegative",
        "normalize",
    )

    def __init__(self, device: str = "cpu", **options):
        unknown = set(options) - set(self._OPTIONS)
        if unknown:
            raise TcsValueError(
                f"unknown gap-tv option(s) {sorted(unknown)}; "
                f"known: {', '.join(self._OPTIONS)}"
            )
        iterations = int(options.get("iterations", DEFAULT_ITERATIONS))
        # Validate the schedule now rather than at the first tile.
        tv_weight_schedule(options.get("tv_weight", DEFAULT_TV_WEIGHT), iterations)
        super().__init__(device=device, **options)

    uses_motion = True

    @torch.no_grad()
    def decode(self, y, masks, shifts=None):
        """Decode ``(N, h, w)`` measurements with ``(N, n, h, w)`` masks
        (and per-frame ``shifts``, see :func:`gap_tv`)."""
        return gap_tv(y, masks, shifts=shifts, **self.options)

    def __repr__(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"GapTV(device={self.device!r}{opts})"
