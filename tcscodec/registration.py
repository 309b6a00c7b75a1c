"""Sub-pixel registration of two images by masked normalised
cross-correlation, in two passes, for :mod:`tcscodec.motion`.

The coarse pass runs on both images low-passed far below any lattice
frequency, over every shift at which they overlap enough, so that a crystal
cannot lock it one lattice period off; the fine pass, low-passed only above
the shot noise, searches a few pixels around the coarse peak.  Each image's
transforms are kept in a :class:`Spectra`, so that an image registered
against two others (a group mean against both neighbours) is transformed
once.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import TcsValueError

__all__ = ["register", "register_spectra", "Spectra", "fill_invalid", "bin_mean",
           "COARSE_SIGMA", "FINE_SIGMA", "FINE_RADIUS", "MIN_OVERLAP"]

#: low-pass (Gaussian sigma, px) of the coarse registration pass: kills
#: lattice fringes of periods up to ~4 sigma, keeps a particle's outline
COARSE_SIGMA = 4.0
#: low-pass of the fine pass: above the shot noise of one pixel, below the
#: finest fringes a group mean keeps
FINE_SIGMA = 1.0
#: the fine pass searches this far (px) around the coarse peak
FINE_RADIUS = 2.5


def fill_invalid(a: np.ndarray) -> np.ndarray:
    """float64 copy with NaN (unmeasured pixels) replaced by the mean."""
    a = np.asarray(a, np.float64)
    ok = np.isfinite(a)
    if ok.all():
        return a.copy()
    fill = float(a[ok].mean()) if ok.any() else 0.0
    return np.where(ok, a, fill)


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian low-pass (std ``sigma`` px) through the FFT, edges mirrored."""
    if not sigma:
        return a
    h, w = a.shape
    m = np.pad(a, ((0, h), (0, w)), mode="symmetric")  # no wrap across the edges
    k2 = np.fft.fftfreq(2 * h)[:, None] ** 2 + np.fft.rfftfreq(2 * w)[None, :] ** 2
    return np.fft.irfft2(np.fft.rfft2(m) * np.exp(-2 * np.pi**2 * sigma**2 * k2), s=m.shape)[:h, :w]


class Spectra:
    """One image's share of :func:`_masked_ncc`: the spectra of ``a m``,
    ``a^2 m`` (at each low-pass) and ``m`` (``a`` the image with its NaN
    pixels filled, ``m`` 1 where it was finite), zero padded to twice its
    size.  Kept, so that a group mean registered against both neighbours
    is transformed once (the same numbers as transforming it twice)."""

    def __init__(self, image: np.ndarray):
        a = np.asarray(image, np.float64)
        self.shape = a.shape
        self.mask = np.isfinite(a).astype(np.float64)
        self.filled = fill_invalid(a)
        self._size = (2 * a.shape[0], 2 * a.shape[1])
        self.M = np.fft.rfft2(self.mask, s=self._size)
        self._at: dict[float, tuple[np.ndarray, np.ndarray]] = {}
        self._parts: dict[tuple, list[Spectra]] = {}

    def at(self, sigma: float) -> tuple[np.ndarray, np.ndarray]:
        """The spectra of ``a m`` and ``a^2 m``, ``a`` low-passed at ``sigma``."""
        hit = self._at.get(sigma)
        if hit is None:
            a, m = _blur(self.filled, sigma), self.mask
            hit = self._at[sigma] = (np.fft.rfft2(a * m, s=self._size), np.fft.rfft2(a * a * m, s=self._size))
        return hit

    def parts(self, bounds) -> list[Spectra]:
        """The spectra of the windows ``bounds`` (``(y0, y1, x0, x1)`` each)
        of the image, each its own image; kept per ``bounds``."""
        key = tuple(tuple(int(v) for v in b) for b in bounds)
        hit = self._parts.get(key)
        if hit is None:
            image = self.filled if self.mask.all() else np.where(self.mask > 0, self.filled, np.nan)
            hit = self._parts[key] = [Spectra(image[a:b, c:e]) for a, b, c, e in key]
        return hit


def _masked_ncc(a: Spectra, b: Spectra, sigma: float, min_overlap: float):
    """Normalised cross-correlation of images ``a`` and ``b`` (low-passed
    at ``sigma``) over their valid pixels at every integer shift ``d`` of
    ``b`` (Padfield, IEEE TIP 21, 2012): each shift is normalised over the
    pixels the two images share there, so large shifts are not biased
    towards 0.  Returns the fftshifted surface, NaN where the overlap is
    below ``min_overlap`` of the frame."""
    s = a._size  # zero padded: no wrap
    (A, A2), MA = a.at(sigma), a.M
    (Bf, B2), MB = b.at(sigma), b.M

    def x(f, g):  # sum_r f(r) g(r + d)
        return np.fft.fftshift(np.fft.irfft2(np.conj(f) * g, s=s))

    n = np.maximum(np.rint(x(MA, MB)), 1.0)
    sa, sb = x(A, MB), x(MA, Bf)
    num = x(A, Bf) - sa * sb / n
    va = x(A2, MB) - sa * sa / n
    vb = x(MA, B2) - sb * sb / n
    den = np.sqrt(np.maximum(va * vb, 0.0))
    ok = (n >= min_overlap * a.mask.sum()) & (den > 1e-12 * max(float(den.max()), 1e-300))
    return np.where(ok, num / np.where(ok, den, 1.0), np.nan)


def _peak(corr: np.ndarray, centre=None, radius=None) -> tuple[float, float, float]:
    """Sub-pixel peak of a correlation surface (shift 0 at index
    ``(h // 2, w // 2)``, NaN where not searched), optionally only within
    ``radius`` of ``centre``.  Returns ``(dy, dx, height)``."""
    h, w = corr.shape
    cy, cx = h // 2, w // 2
    search = np.where(np.isfinite(corr), corr, -np.inf)
    if centre is not None:
        yy = np.arange(h)[:, None] - cy - centre[0]
        xx = np.arange(w)[None, :] - cx - centre[1]
        search = np.where(yy**2 + xx**2 <= radius**2, search, -np.inf)
    iy, ix = np.unravel_index(int(np.argmax(search)), corr.shape)
    c = float(search[iy, ix])
    if not np.isfinite(c):
        return 0.0, 0.0, 0.0

    def vertex(m, p):
        if not (np.isfinite(m) and np.isfinite(p)):
            return 0.0
        den = m - 2 * c + p
        return 0.0 if den >= 0 else float(np.clip(0.5 * (m - p) / den, -0.5, 0.5))

    oy = vertex(search[iy - 1, ix] if iy > 0 else np.nan, search[iy + 1, ix] if iy + 1 < h else np.nan)
    ox = vertex(search[iy, ix - 1] if ix > 0 else np.nan, search[iy, ix + 1] if ix + 1 < w else np.nan)
    return iy - cy + oy, ix - cx + ox, c


#: shifts at which the two images share less than this fraction of the
#: frame are not considered
MIN_OVERLAP = 0.2


def register(reference: np.ndarray, moved: np.ndarray, *, coarse_sigma: float = COARSE_SIGMA,
             fine_sigma: float | None = FINE_SIGMA, fine_radius: float = FINE_RADIUS,
             min_overlap: float = MIN_OVERLAP, near: tuple[float, float] | None = None,
             radius: float = math.inf) -> tuple[float, float, float]:
    """Displacement ``(dy, dx)`` of ``moved`` relative to ``reference``
    (``moved(r) ~ reference(r - d)``) and the correlation at it.

    Two passes of masked normalised cross-correlation (:func:`_masked_ncc`;
    NaN pixels are left out): the coarse one on both images low-passed at
    ``coarse_sigma`` px, over every shift at which they share at least
    ``min_overlap`` of the frame; the fine one low-passed at ``fine_sigma``
    and searched within ``fine_radius`` px of the coarse peak.  The third
    value is the coarse pass's correlation coefficient at its peak (near 1
    for a clean match; low for noise or a changed scene).  With ``near``,
    the coarse pass searches only within ``radius`` px of that displacement
    (a window's own motion, close to the whole frame's).
    """
    a, b = np.asarray(reference), np.asarray(moved)
    if a.shape != b.shape or a.ndim != 2:
        raise TcsValueError(f"register needs two 2-D images of one shape, got {a.shape} and {b.shape}")
    return register_spectra(Spectra(a), Spectra(b), coarse_sigma=coarse_sigma, fine_sigma=fine_sigma,
                     fine_radius=fine_radius, min_overlap=min_overlap, near=near, radius=radius)


def register_spectra(a: Spectra, b: Spectra, *, coarse_sigma: float = COARSE_SIGMA,
              fine_sigma: float | None = FINE_SIGMA, fine_radius: float = FINE_RADIUS,
              min_overlap: float = MIN_OVERLAP, near: tuple[float, float] | None = None,
              radius: float = math.inf) -> tuple[float, float, float]:
    """:func:`register` of two images' :class:`Spectra` (each kept for the
    next pair it is in)."""
    dy, dx, score = _peak(_masked_ncc(a, b, coarse_sigma, min_overlap), near, radius)  # near None: everywhere
    if fine_sigma is not None and fine_sigma < coarse_sigma:
        dy, dx, _ = _peak(_masked_ncc(a, b, fine_sigma, min_overlap), (dy, dx), fine_radius)
    return float(dy), float(dx), score


def bin_mean(a: np.ndarray, f: int) -> np.ndarray:
    """``a`` averaged over ``f`` x ``f`` blocks (a partial last row or column of blocks dropped)."""
    if f == 1:
        return a
    h, w = (a.shape[0] // f) * f, (a.shape[1] // f) * f
    return a[:h, :w].reshape(h // f, f, w // f, f).mean((1, 3))
