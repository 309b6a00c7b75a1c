"""Isolated outlier pixels (hot or dead detector pixels) decoded apart.

A hot pixel is bright in every frame, so it is an isolated spike in
``Y / sum C`` too.  Decoders that mix neighbouring pixels (every CNN, and
TV less so) spread such a spike over tens of pixels around it: one hot
pixel at 65535 in a frame of ~50 counts put errors of thousands of counts
into a 48 x 48 neighbourhood of the learned decoder's output.  The engine
therefore hands decoders a measurement in which those pixels hold the
median of their neighbours, and gives each of them its own ``Y / sum C`` in
every frame of the group (exact for a stuck pixel).

A pixel counts as an outlier only when it lies beyond *all eight* of its
neighbours by :data:`OUTLIER_SIGMAS` times the tile's noise std (scaled for
the Poisson noise of the brightest neighbour) and, above the dark level, is
more than twice the brightest pixel within two of it and twice the tile's
:data:`BRIGHT_QUANTILE` quantile (hot), or less than half its darkest
neighbour and below the tile's dark level (dead).  Two pixels, not one: a
compact feature far brighter than the rest of the scene (a heavy-atom
cluster 150 times the background, moving 2.5 px/frame) leaves single
bright pixels in ``Y / sum C`` where the masks opened on it, with a bright
pixel of its trail two pixels away; taken for hot pixels, they cost the
rigid-scene decoder 2.5 dB on that movie.  Atom columns and other
features wider than one pixel have a neighbour as bright as themselves, and
a feature that moved, seen by only one or two frames of the group, is no
brighter than the rest of the scene: neither is touched.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .noise import DARK_QUANTILE, map_quantile, noise_level

__all__ = ["find_outliers", "decode_apart", "OUTLIER_SIGMAS"]

#: how far (in noise std) a pixel must lie beyond its brightest (darkest)
#: neighbour to be taken as hot (dead)
OUTLIER_SIGMAS = 12.0
#: a hot pixel is also more than twice as bright (above the dark level) as
#: this quantile of the tile, so up to 0.5 % of a tile's pixels can be hot
BRIGHT_QUANTILE = 0.995


def _neighbours(a: torch.Tensor) -> torch.Tensor:
    """The 8 neighbours of every pixel of ``a`` (N,h,w) as (8,N,h,w),
    edges replicated."""
    p = F.pad(a[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    h, w = a.shape[-2:]
    return torch.stack([p[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
                        for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx])


def _ring_max(a: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """The brightest pixel within two of each pixel of ``a`` (N,h,w), the
    pixel itself left out: ``inner`` (its 8 neighbours' maximum) and the 16
    pixels two away, edges replicated."""
    p = F.pad(a[:, None], (2, 2, 2, 2), mode="replicate")[:, 0]
    h, w = a.shape[-2:]
    out = inner.clone()
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            if max(abs(dy), abs(dx)) == 2:
                torch.maximum(out, p[:, 2 + dy:2 + dy + h, 2 + dx:2 + dx + w], out=out)
    return out


def find_outliers(y: torch.Tensor, csum: torch.Tensor):
    """Isolated outliers of ``Y / sum C``.

    Parameters
    ----------
    y : torch.Tensor
        ``(N, h, w)`` measurements.
    csum : torch.Tensor
        ``(N, h, w)`` number of frames that measured each pixel.

    Returns
    -------
    (bad, ybar) : tuple of torch.Tensor
        ``bad`` (N,h,w) bool, the outliers (only measured pixels); ``ybar``
        ``Y / sum C`` with unmeasured pixels at the tile's mean.
    """
    measured = csum > 0
    N = y.shape[0]
    ybar = y / csum.clamp(min=1)
    level = (ybar * measured).flatten(1).sum(1) / measured.flatten(1).sum(1).clamp(min=1)
    ybar = torch.where(measured, ybar, level.view(N, 1, 1))
    nb = _neighbours(ybar)
    hi, lo = nb.max(0).values, nb.min(0).values
    ring = _ring_max(ybar, hi)
    dark, top = map_quantile(ybar, [DARK_QUANTILE, BRIGHT_QUANTILE])
    # A jump in proportion to the signal: in (nearly) noiseless data the
    # noise std is tiny, and the single-pixel mixtures of frames that motion
    # leaves in Y / sum C are signal, not defects.  And beyond the tile's own
    # range: where few frames measured a pixel, a moving feature can leave
    # one bright (or dark) pixel in Y / sum C, but never brighter than the
    # scene's brightest features or darker than its floor; a stuck pixel is.
    hot = (ybar - dark > 2 * (ring - dark)) & (ybar - dark > 2 * (top - dark))
    dead = (ybar - dark < 0.5 * (lo - dark)) & (ybar < dark)
    bad = (hot | dead) & measured
    if not bool(bad.any()):  # e.g. dark-field tiles with a floor at 0: no noise level needed
        return bad, ybar
    # Far beyond the noise too.  Poisson noise grows as the square root of
    # the signal above the dark level, so beside bright neighbours a larger
    # jump is needed.
    sigma = noise_level(ybar)
    span = (level.view(N, 1, 1) - dark).clamp(min=1e-30)
    hot &= ybar - hi > OUTLIER_SIGMAS * sigma * ((hi - dark) / span).clamp(min=1).sqrt()
    dead &= lo - ybar > OUTLIER_SIGMAS * sigma
    return (hot | dead) & measured & (sigma > 0), ybar


def decode_apart(decode, y: torch.Tensor, C: torch.Tensor, context: torch.Tensor | None = None,
                 **kwargs) -> torch.Tensor:
    """``decode(y, C)`` with the isolated outliers of ``Y / sum C``
    (:func:`find_outliers`) replaced by the median of their 8 neighbours for
    the decoder, and set to their own ``Y / sum C`` in every frame of its
    output.  Without outliers this is ``decode(y, C)`` exactly.

    With ``context`` (the neighbouring groups' ``Y / sum C``, see
    :class:`~.base.Decoder`) the call is ``decode(y, C, context)``, and the
    outliers are marked absent (NaN) in the context too: a stuck pixel is
    stuck in every group.  Other keyword arguments (``shifts``) go to
    ``decode`` as they are."""
    csum = C.sum(1)
    bad, ybar = find_outliers(y, csum)
    args = () if context is None else (context,)
    if not bool(bad.any()):
        return decode(y, C, *args, **kwargs)
    fill = _neighbours(ybar).median(0).values
    if context is not None:
        args = (torch.where(bad[:, None], torch.full_like(context, float("nan")), context),)
    x = decode(torch.where(bad, fill * csum, y), C, *args, **kwargs)
    return torch.where(bad[:, None], ybar[:, None].to(x.dtype), x)
