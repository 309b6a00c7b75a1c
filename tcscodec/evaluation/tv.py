"""The oracle-tuned spatio-temporal TV denoiser of the evaluation's ``+tv`` rows.

:func:`tv_denoise` is the proximal step of isotropic total variation over
(t, y, x), solved by the fast gradient projection on the dual (Beck and
Teboulle 2009) in torch float32.  :func:`tune_tv` picks its weights **on the
reference** (an oracle: an upper bound for the baselines, never a practical
decoder) and reports them as a :class:`TVFit`.

Not to be confused with :func:`tcscodec.decoders.gap_tv.tv_denoise`
(Chambolle's projection, a deliberately partial denoising repeated inside
GAP's loop): this one filters a finished movie, the same way after every
codec and decoder, so their TV gains compare.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import TcsValueError

__all__ = ["tv_denoise", "tune_tv", "TVFit", "TEMPORAL_CANDIDATES", "torch_threads"]


@contextlib.contextmanager
def torch_threads(n: int | None):
    """torch with ``n`` CPU threads for the block (None or 0: as it is),
    the count restored after."""
    import torch

    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield torch
    finally:
        torch.set_num_threads(old)


def _div_into(x, p, f, lam: float, tw: float):
    """x = f - lam * D^T p, with D the forward-difference gradient along
    (t, y, x), the temporal one weighted by ``tw`` (Neumann boundaries)."""
    x.copy_(f)
    a = lam * tw
    x[:-1].add_(p[0, :-1], alpha=a)
    x[1:].sub_(p[0, :-1], alpha=a)
    x[:, :-1].add_(p[1, :, :-1], alpha=lam)
    x[:, 1:].sub_(p[1, :, :-1], alpha=lam)
    x[:, :, :-1].add_(p[2, :, :, :-1], alpha=lam)
    x[:, :, 1:].sub_(p[2, :, :, :-1], alpha=lam)


def tv_denoise(movie, weight: float, *, temporal: float = 1.0, iterations: int = 60,
               threads: int | None = 1) -> np.ndarray:
    """Proximal step of isotropic spatio-temporal total variation.

    Solves ``argmin_x 0.5 ||x - movie||^2 + weight * TV(x)`` with
    ``TV(x) = sum sqrt((tw d_t x)^2 + (d_y x)^2 + (d_x x)^2)`` (forward
    differences, ``tw = temporal``) by the fast gradient projection on the
    dual (Beck and Teboulle 2009), ``iterations`` steps from a zero dual, in
    torch float32 (``threads`` CPU threads: one is fastest on a busy machine,
    the iteration is memory-bound).  ``weight`` is in the movie's units.
    A 2-D image is treated as a one-frame movie.
    """
    arr = np.asarray(movie, dtype=np.float32)
    squeeze = arr.ndim == 2
    if squeeze:
        arr = arr[None]
    if arr.ndim != 3:
        raise TcsValueError(f"expected a movie (T x H x W), got shape {arr.shape}")
    lam, tw = float(weight), float(temporal)
    if not lam > 0 or iterations <= 0:
        return arr.copy()[0] if squeeze else arr.copy()
    with torch_threads(threads) as torch:
        f = torch.from_numpy(np.ascontiguousarray(arr))
        shape = (3, *f.shape)
        p, r, pn = torch.zeros(shape), torch.zeros(shape), torch.empty(shape)
        x, nrm = torch.empty_like(f), torch.empty_like(f)
        step = 1.0 / (4.0 * (2.0 + tw * tw) * lam)  # 1 / (lam * ||D||^2 bound)
        t = 1.0
        for _ in range(int(iterations)):
            _div_into(x, r, f, lam, tw)
            torch.sub(x[1:], x[:-1], out=pn[0, :-1])
            pn[0, -1].zero_()
            pn[0].mul_(step * tw)
            torch.sub(x[:, 1:], x[:, :-1], out=pn[1, :, :-1])
            pn[1, :, -1].zero_()
            pn[1].mul_(step)
            torch.sub(x[:, :, 1:], x[:, :, :-1], out=pn[2, :, :, :-1])
            pn[2, :, :, -1].zero_()
            pn[2].mul_(step)
            pn.add_(r)
            # Projection onto the unit ball of each voxel's dual vector.
            torch.mul(pn[0], pn[0], out=nrm)
            nrm.addcmul_(pn[1], pn[1]).addcmul_(pn[2], pn[2]).sqrt_().clamp_(min=1.0)
            pn.div_(nrm)
            t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
            torch.sub(pn, p, out=r)
            r.mul_((t - 1.0) / t_next).add_(pn)
            p, pn = pn, p
            t = t_next
        _div_into(x, p, f, lam, tw)
        out = x.numpy().copy()
    return out[0] if squeeze else out


@dataclass(frozen=True)
class TVFit:
    """Result of :func:`tune_tv`: the weight in the movie's units, the same
    relative to the reference's data range, the temporal weight, the tuning
    PSNR (on the crop) and the number of TV solves the tuning took."""

    weight: float
    relative_weight: float
    temporal: float
    psnr: float
    evaluations: int

    def describe(self) -> str:
        return f"TV weight {self.relative_weight:.3g} x range, temporal {self.temporal:g}"


def _centre_crop(a: np.ndarray, size: int | None) -> np.ndarray:
    if not size:
        return a
    H, W = a.shape[-2:]
    y0, x0 = max(0, (H - size) // 2), max(0, (W - size) // 2)
    return a[..., y0:y0 + size, x0:x0 + size]


#: temporal weights :func:`tune_tv` walks over with ``temporal="auto"``
TEMPORAL_CANDIDATES = (0.25, 0.5, 1.0, 2.0, 4.0)


def tune_tv(movie, reference, *, data_range: float | None = None, temporal: float | str | Sequence[float] = 1.0,
            iterations: int = 40, crop: int | None = 128, grid=(0.003, 0.01, 0.03, 0.1, 0.3),
            refine: int = 4, threads: int | None = 1) -> tuple[np.ndarray, TVFit]:
    """TV-denoise ``movie`` with the weight that maximises PSNR against ``reference``.

    This is an *oracle*: the weight is chosen knowing the truth.  Candidate
    weights are ``grid`` (relative to the reference's data range, extended
    by factors of 3 while the best lies on the grid's edge), then ``refine``
    golden-section steps in log weight between the best point's neighbours.
    Weight 0 (no filtering) is a candidate too.

    ``temporal`` is the weight of the time differences in the TV (1: time
    like space), or a sequence of candidates (``"auto"``:
    :data:`TEMPORAL_CANDIDATES`) walked from the one nearest to 1 towards
    the better neighbour while PSNR improves, the weight tuned for each.
    Slow specimens favour > 1, fast drift < 1.

    Tuning runs on the central ``crop`` x ``crop`` window of every frame
    (the whole frame when ``crop`` is None) for speed; the chosen weights
    are then applied to the whole movie.  Returns ``(denoised movie, TVFit)``.
    """
    mov = np.asarray(movie, np.float32)
    ref = np.asarray(reference, np.float32)
    R = float(ref.max() - ref.min()) if data_range is None else float(data_range)
    R = R if R > 0 else 1.0
    mc, rc = _centre_crop(mov, crop), _centre_crop(ref, crop)
    unfiltered = float(np.mean((mc.astype(np.float64) - rc) ** 2))
    solves = 0

    def search(tw: float) -> tuple[float, float]:
        """(best relative weight, its MSE) for temporal weight ``tw``."""
        nonlocal solves
        scores: dict[float, float] = {}

        def mse(rel: float) -> float:
            nonlocal solves
            if rel not in scores:
                est = tv_denoise(mc, rel * R, temporal=tw, iterations=iterations, threads=threads)
                scores[rel] = float(np.mean((est.astype(np.float64) - rc) ** 2))
                solves += 1
            return scores[rel]

        pts = sorted(float(g) for g in grid)
        for g in pts:
            mse(g)
        for _ in range(4):  # extend the grid while the optimum sits on its edge
            best = min(pts, key=mse)
            if best == pts[0] and pts[0] > 1e-5:
                pts.insert(0, pts[0] / 3)
            elif best == pts[-1] and pts[-1] < 30:
                pts.append(pts[-1] * 3)
            else:
                break
            mse(pts[0]), mse(pts[-1])
        i = pts.index(min(pts, key=mse))
        a, b = math.log(pts[max(i - 1, 0)]), math.log(pts[min(i + 1, len(pts) - 1)])
        gr = (math.sqrt(5) - 1) / 2  # golden-section search on log(weight)
        c, d = b - gr * (b - a), a + gr * (b - a)
        for _ in range(refine if b > a else 0):
            if mse(math.exp(c)) < mse(math.exp(d)):
                b, d = d, c
                c = b - gr * (b - a)
            else:
                a, c = c, d
                d = a + gr * (b - a)
        best = min(scores, key=lambda w: scores[w])
        return best, scores[best]

    if isinstance(temporal, str):
        if temporal != "auto":
            raise TcsValueError(f"temporal must be a number, a sequence or 'auto', got {temporal!r}")
        temporal = TEMPORAL_CANDIDATES
    cands = sorted(float(t) for t in np.atleast_1d(temporal))
    results: dict[float, tuple[float, float]] = {}
    i = min(range(len(cands)), key=lambda j: abs(math.log(cands[j])))
    results[cands[i]] = search(cands[i])
    # Walk towards the better neighbour while the PSNR improves.
    for step in (-1, 1):
        j = i
        while 0 <= j + step < len(cands):
            results[cands[j + step]] = search(cands[j + step])
            if results[cands[j + step]][1] >= results[cands[j]][1]:
                break
            j += step
        if j != i:
            break
    tw = min(results, key=lambda t: results[t][1])
    rel, m = results[tw]
    if unfiltered <= m:
        rel, m = 0.0, unfiltered
    out = tv_denoise(mov, rel * R, temporal=tw, iterations=iterations, threads=threads)
    fit = TVFit(weight=rel * R, relative_weight=rel, temporal=tw,
                psnr=float("inf") if m == 0 else 10 * math.log10(R * R / m), evaluations=solves)
    return out, fit

