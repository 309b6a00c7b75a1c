"""Rate-distortion curves and Bjøntegaard deltas.

An evaluation over several B gives each method one point per B: the bytes
it stores and the PSNR it reaches (the codecs matched to each ``.tcs``
file's bytes).  Joined, the points are a rate-distortion curve, and two
curves compare by their Bjøntegaard deltas (G. Bjøntegaard, VCEG-M33,
2001; the piecewise-cubic form of VCEG-AL22 / JCTVC-L1100):

* **BD-PSNR**: the mean PSNR difference (dB) over the rates both curves
  span, the curves interpolated in log-rate;
* **BD-rate**: the mean rate difference (%) over the PSNRs both curves
  span, at equal PSNR; negative means fewer bytes for the same quality.
  It reads each curve's **frontier** (:func:`rd_frontier`): a point that
  one of fewer bytes matches or beats in PSNR is left out, as nobody would
  choose it (a learned decoder can be better at B = 8 than at B = 4, with
  half the bytes), so that rate is a function of PSNR.

Curves are interpolated with monotone piecewise cubics (Fritsch-Carlson,
as PCHIP), which neither overshoot between points nor need four of them:
two points give a line.  A delta whose common range is empty is NaN (the
curves do not overlap; extrapolating them would be a guess).  Where one
curve lies wholly above the other in PSNR, :func:`bd_rate_bound` still
bounds the BD-rate: the better curve's cheapest point reaches every PSNR
of the other one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..errors import TcsValueError

__all__ = ["bd_psnr", "bd_rate", "bd_rate_bound", "rd_curve", "rd_frontier", "psnr_over_curve"]


def rd_curve(rates: Sequence[float], psnrs: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """``(log10 rate, psnr)`` sorted by rate, non-finite points dropped and
    points of one rate merged (their mean PSNR: two settings that wrote the
    same bytes); refused when fewer than two rates remain or a rate is not
    positive."""
    r = np.asarray(rates, np.float64)
    p = np.asarray(psnrs, np.float64)
    if r.shape != p.shape or r.ndim != 1:
        raise TcsValueError(f"rates and PSNRs must be two 1-D sequences of one length, got {r.shape} and {p.shape}")
    keep = np.isfinite(r) & np.isfinite(p)
    r, p = r[keep], p[keep]
    if np.any(r <= 0):
        raise TcsValueError(f"rates must be positive, got {r.min():g}")
    r, inverse = np.unique(r, return_inverse=True)  # sorted
    p = np.bincount(inverse, weights=p) / np.bincount(inverse)
    if r.size < 2:
        raise TcsValueError(f"a rate-distortion curve needs two points or more, got {r.size}")
    return np.log10(r), p


def rd_frontier(rates: Sequence[float], psnrs: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`rd_curve`'s points (log10 rate, PSNR) less those that a point
    of fewer bytes matches or beats in PSNR: the curve's operational
    frontier, its PSNR rising with rate.  It may hold a single point."""
    x, y = rd_curve(rates, psnrs)
    keep = y > np.concatenate([[-np.inf], np.maximum.accumulate(y)[:-1]])
    return x[keep], y[keep]


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch-Carlson derivatives at the knots: zero at a local extremum,
    a weighted harmonic mean of the neighbouring secants elsewhere."""
    h = np.diff(x)
    delta = np.diff(y) / h
    n = x.size
    d = np.zeros(n)
    if n == 2:
        return np.full(2, delta[0])
    for k in range(1, n - 1):
        if delta[k - 1] * delta[k] > 0:
            w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k])
    for k, (hk, hn, dk, dn) in ((0, (h[0], h[1], delta[0], delta[1])), (n - 1, (h[-1], h[-2], delta[-1], delta[-2]))):
        s = ((2 * hk + hn) * dk - hk * dn) / (hk + hn)  # three-point end formula, kept monotone
        if np.sign(s) != np.sign(dk):
            s = 0.0
        elif np.sign(dk) != np.sign(dn) and abs(s) > abs(3 * dk):
            s = 3 * dk
        d[k] = s
    return d


def _integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """Integral over ``[lo, hi]`` of the monotone cubic through ``(x, y)``
    (``x`` increasing; ``lo``/``hi`` inside its range), in closed form per
    segment (Simpson's rule is exact on cubics)."""
    d = _pchip_slopes(x, y)

    def value(t: float) -> float:
        k = int(np.clip(np.searchsorted(x, t, side="right") - 1, 0, x.size - 2))
        h, s = x[k + 1] - x[k], (t - x[k]) / (x[k + 1] - x[k])
        h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
        h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
        return float(h00 * y[k] + h10 * h * d[k] + h01 * y[k + 1] + h11 * h * d[k + 1])

    edges = np.unique(np.concatenate([[lo, hi], x[(x > lo) & (x < hi)]]))
    pairs = zip(edges[:-1], edges[1:], strict=True)
    return sum((b - a) / 6 * (value(a) + 4 * value((a + b) / 2) + value(b)) for a, b in pairs)


def _mean_gap(xa: np.ndarray, ya: np.ndarray, xb: np.ndarray, yb: np.ndarray) -> float:
    """Mean of ``curve_b - curve_a`` over the ``x`` both span (NaN if none)."""
    lo, hi = max(xa[0], xb[0]), min(xa[-1], xb[-1])
    if not hi > lo:
        return math.nan
    return (_integral(xb, yb, lo, hi) - _integral(xa, ya, lo, hi)) / (hi - lo)


def bd_psnr(anchor_rates, anchor_psnrs, test_rates, test_psnrs) -> float:
    """Mean PSNR gain (dB) of the test curve over the anchor at equal rate."""
    la, pa = rd_curve(anchor_rates, anchor_psnrs)
    lt, pt = rd_curve(test_rates, test_psnrs)
    return _mean_gap(la, pa, lt, pt)


def psnr_over_curve(anchor_rates, anchor_psnrs, rate: float, psnr: float) -> float:
    """PSNR (dB) of one point over the anchor curve at the point's own rate
    (the curve interpolated as :func:`bd_psnr` does); NaN outside the
    anchor's rates."""
    return bd_psnr(anchor_rates, anchor_psnrs, [rate, rate * (1 + 1e-4)], [psnr, psnr])


def bd_rate(anchor_rates, anchor_psnrs, test_rates, test_psnrs) -> float:
    """Mean rate change (%) of the test curve against the anchor at equal
    PSNR: -30 means 30 % fewer bytes for the same quality, each curve read
    on its frontier (:func:`rd_frontier`).  NaN where the frontiers' PSNR
    ranges do not overlap, or a frontier has a single point."""
    la, pa = rd_frontier(anchor_rates, anchor_psnrs)
    lt, pt = rd_frontier(test_rates, test_psnrs)
    if la.size < 2 or lt.size < 2:
        return math.nan
    gap = _mean_gap(pa, la, pt, lt)  # mean log10-rate difference at equal PSNR
    return math.nan if math.isnan(gap) else (10**gap - 1) * 100


def _mean_log_rate(lr: np.ndarray, p: np.ndarray) -> float:
    """Mean log10 rate of a frontier over its PSNR range (its one point's
    where it has one)."""
    return float(lr[0]) if p.size < 2 else _integral(p, lr, p[0], p[-1]) / (p[-1] - p[0])


def bd_rate_bound(anchor_rates, anchor_psnrs, test_rates, test_psnrs) -> tuple[str, float] | None:
    """A bound on :func:`bd_rate` where the two frontiers' PSNR ranges do
    not overlap, as ``("<", percent)`` or ``(">", percent)``; None where
    they overlap (:func:`bd_rate` gives the value).

    Where the test frontier lies wholly above the anchor's, its cheapest
    point already beats every PSNR of the anchor's range, so at equal
    PSNR it needs at most that point's bytes (a frontier needs no more
    bytes for less PSNR): the BD-rate is below ``r_test_min / R - 1``,
    ``R`` the anchor's rate averaged as :func:`bd_rate` averages (in log
    rate over its PSNR range).  Where it lies wholly below, the anchor's
    cheapest point beats it all, and the BD-rate is above ``R_test /
    r_anchor_min - 1``.
    """
    la, pa = rd_frontier(anchor_rates, anchor_psnrs)
    lt, pt = rd_frontier(test_rates, test_psnrs)
    if pt[0] >= pa[-1] and pt[-1] > pa[-1]:
        return "<", (10 ** (lt[0] - _mean_log_rate(la, pa)) - 1) * 100
    if pt[-1] <= pa[0] and pt[0] < pa[0]:
        return ">", (10 ** (_mean_log_rate(lt, pt) - la[0]) - 1) * 100
    return None
