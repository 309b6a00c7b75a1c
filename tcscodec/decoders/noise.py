"""What a measurement says about its own noise and levels: the robust noise
std, the dark level and the equivalent electron counts of a tile.

The decoders use these to behave the same whatever the units of the frames
(counts, gain-scaled 8/16-bit intensities, gain-normalised or
dark-subtracted floats): every quantity here is either scale-free or in the
input's units, estimated from ``Y / sum C`` alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["noise_level", "map_quantile", "dark_level", "counts_per_pixel", "DARK_QUANTILE"]

#: quantile of Y / sum C taken as the dark level
DARK_QUANTILE = 0.01

#: torch.quantile's size limit; a strided sample of a larger tile is enough
_QUANTILE_MAX = 1 << 20


def noise_level(xn: torch.Tensor) -> torch.Tensor:
    """Robust noise std of ``xn`` (N,h,w), e.g. a normalised ``Y / sum C``:
    the median absolute deviation of its difference with the 3x3 mean
    (signal-free for noise that is white), as a (N,1,1) tensor."""
    local = F.avg_pool2d(xn[:, None], 3, stride=1, padding=1, count_include_pad=False)[:, 0]
    hp = (xn - local)[:, 1:-1, 1:-1] if min(xn.shape[-2:]) > 2 else xn - local
    mad = hp.abs().flatten(1).median(dim=1).values
    return (1.4826 * mad * (9 / 8) ** 0.5)[:, None, None]


def map_quantile(filled: torch.Tensor, q):
    """The ``q`` quantile of each (h,w) map of ``filled`` (N,h,w), as
    (N,1,1), or for a sequence ``q`` a tuple of them (one sort); maps of
    more than 2**20 pixels are sampled with a stride.  Unmeasured pixels
    should be filled with a typical value first."""
    flat = filled.flatten(1)
    if flat.shape[1] > _QUANTILE_MAX:
        flat = flat[:, :: flat.shape[1] // _QUANTILE_MAX + 1]
    if isinstance(q, float):
        return torch.quantile(flat, q, dim=1)[:, None, None]
    qs = torch.quantile(flat, torch.tensor(q, dtype=flat.dtype, device=flat.device), dim=1)
    return tuple(v[:, None, None] for v in qs)


def dark_level(filled: torch.Tensor) -> torch.Tensor:
    """The :data:`DARK_QUANTILE` quantile of each map of ``filled`` (N,h,w),
    as (N,1,1): a camera's dark offset, or the floor of dark-subtracted
    data (see :func:`map_quantile`)."""
    return map_quantile(filled, DARK_QUANTILE)


def counts_per_pixel(xn: torch.Tensor, csum: torch.Tensor) -> torch.Tensor:
    """Equivalent electron counts per pixel and frame of each tile, (N,):
    the dose that Poisson noise alone would need to be as noisy.

    ``xn`` is ``Y / sum C`` divided by the tile's signal level (so its mean
    is 1 above the dark level) and ``csum`` the number of frames that
    measured each pixel.  For frames ``X = g N`` with ``N`` Poisson counts,
    ``var(Y / sum C) = g level / sum C`` with ``level = g E[N]``, so
    ``E[N] = E[1 / sum C] / var(xn)``, whatever the gain ``g``.  Texture
    and quantisation only add to the variance, so the estimate errs low.
    """
    sigma = noise_level(xn).view(-1)
    measured = csum > 0
    inv = torch.where(measured, 1.0 / csum.clamp(min=1), torch.zeros_like(csum))
    mean_inv = inv.flatten(1).sum(1) / measured.flatten(1).sum(1).clamp(min=1)
    return mean_inv / sigma.square().clamp(min=1e-30)
