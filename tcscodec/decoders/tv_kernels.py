"""Compiled CPU kernel of the total-variation step (numba).

:func:`tv_chambolle` is :func:`.gap_tv.tv_denoise` on the CPU: the same
Chambolle iterations, two passes over the stack per iteration (the
divergence of the dual field, then the gradient and the dual update), with
no temporaries.  Written as tensor operations the step is some twenty
passes over the stack per iteration, each a round trip through memory once
a stack outgrows the cache (30 frames of a 256 tile is 7.9 MB a buffer):
the TV step was half the CPU time of ``tcs-unfold``'s GAP-TV warm start
and of the ``gap-tv`` decoder.

The arithmetic is the tensor version's, operation for operation, in
float32; results agree to float32 rounding (``tests/test_gap_tv.py``
compares the two).  Frames are spread over numba's threads.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["tv_chambolle", "available"]

numba: Any
try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; the tensor version works without it
    numba = None


def available() -> bool:
    """Whether the compiled kernel can run (numba imports)."""
    return numba is not None


if numba is not None:

    @numba.njit(parallel=True, cache=True, nogil=True)
    def _divergence(x, pv, pu, pt, a, temporal, out):  # pragma: no cover - compiled
        """``out = x + div(p)``, backward differences (the adjoint of the
        forward ones), in the tensor version's order of operations."""
        N, n, h, w = x.shape
        for k in numba.prange(N * n):
            i, t = k // n, k % n
            for r in range(h):
                for c in range(w):
                    v = x[i, t, r, c] - pv[i, t, r, c]
                    v = v - pu[i, t, r, c]
                    if r > 0:
                        v = v + pv[i, t, r - 1, c]
                    if c > 0:
                        v = v + pu[i, t, r, c - 1]
                    if temporal:
                        v = v - a * pt[i, t, r, c]
                        if t > 0:
                            v = v + a * pt[i, t - 1, r, c]
                    out[i, t, r, c] = v

    @numba.njit(parallel=True, cache=True, nogil=True)
    def _dual_update(src, pv, pu, pt, a, temporal, tau, step, eps, first):  # pragma: no cover - compiled
        """``p = (p - tau * grad(src)) / (1 + step * |grad(src)|)``, forward
        differences with a zero last difference; ``first``: p = 0 before."""
        N, n, h, w = src.shape
        zero = np.float32(0.0)
        one = np.float32(1.0)
        a2 = a * a
        ta = tau * a
        for k in numba.prange(N * n):
            i, t = k // n, k % n
            for r in range(h):
                for c in range(w):
                    s = src[i, t, r, c]
                    gv = src[i, t, r + 1, c] - s if r < h - 1 else zero
                    gu = src[i, t, r, c + 1] - s if c < w - 1 else zero
                    norm = gv * gv
                    norm = norm + gu * gu
                    gt = zero
                    if temporal:
                        gt = src[i, t + 1, r, c] - s if t < n - 1 else zero
                        norm = norm + a2 * (gt * gt)
                    norm = np.sqrt(norm + eps) * step + one
                    if first:
                        pv[i, t, r, c] = (gv * -tau) / norm
                        pu[i, t, r, c] = (gu * -tau) / norm
                        if temporal:
                            pt[i, t, r, c] = (gt * -ta) / norm
                    else:
                        pv[i, t, r, c] = (pv[i, t, r, c] - tau * gv) / norm
                        pu[i, t, r, c] = (pu[i, t, r, c] - tau * gu) / norm
                        if temporal:
                            pt[i, t, r, c] = (pt[i, t, r, c] - ta * gt) / norm


def tv_chambolle(x: np.ndarray, weight: float, iterations: int, temporal_weight: float, eps: float,
                 p: list[np.ndarray], out: np.ndarray, threads: int = 1) -> np.ndarray:
    """Chambolle's TV denoising of ``(N, n, h, w)`` float32 stacks ``x``
    (see :func:`.gap_tv.tv_denoise` for the parameters), into ``out``, on
    ``threads`` threads (capped at the cores numba sees).

    ``p``: the dual field's buffers (two, or three with a temporal term),
    each like ``x``; all arrays C-contiguous float32 and ``out`` not ``x``.
    Returns ``out``.
    """
    if numba is None:  # pragma: no cover - callers check available()
        raise RuntimeError("numba is not installed")
    numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))
    a = float(temporal_weight)
    temporal = a > 0 and x.shape[1] > 1
    if iterations <= 1:
        np.copyto(out, x)
        return out
    tau = 1.0 / (4.0 + 2.0 * a * a) if temporal else 0.25
    pv, pu = p[0], p[1]
    pt = p[2] if temporal else p[0]  # never read without the temporal term
    f32 = np.float32
    src = x
    for i in range(iterations):
        if i > 0:
            _divergence(x, pv, pu, pt, f32(a), temporal, out)
            src = out
        if i == iterations - 1:
            break
        _dual_update(src, pv, pu, pt, f32(a), temporal, f32(tau), f32(tau / weight), f32(eps), i == 0)
    return out
