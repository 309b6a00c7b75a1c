"""Translation of frame stacks onto a common canvas, for motion-compensated
decoding.

A decoder told each frame's displacement ``s_b`` (:mod:`tcscodec.motion`)
keeps its data-consistency steps in the detector's frame, where the
measurement is exact, and runs its prior (TV, or the learned denoiser) on
the *aligned* frames ``z_b(c) = x_b(c + s_b)``, where a drifting scene
stands still.  Only the prior's correction travels back::

    z = warp.align(x)
    x = x + warp.unalign(denoise(z) - z)

The aligned frames live on a canvas larger than the frame by the largest
displacement along each axis on both of its sides (a drift along x widens
the canvas only), so every detector pixel of every frame has a canvas
pixel of its own: a pixel that entered the field during the group
gets its own correction, never its neighbour's (the first version cropped
the canvas to the frame and let border pixels share corrections, which
made GAP diverge there) and nothing wraps around.  Canvas pixels a frame
does not see are filled with the mean of the frames that do (the still
scene's best guess), or with the frame's own border where none does.

Displacements are rounded to whole pixels, which makes both directions exact
copies of the pixels inside the field.  Sub-pixel Fourier shifts were tried
and spread the masks' pixel-random pattern, which the estimate between two
projections carries, into ringing; the half-pixel misalignment left is
within what the temporal prior and the learned denoiser absorb.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import TcsValueError

__all__ = ["FrameWarp"]


class FrameWarp:
    """Move ``(N, n, h, w)`` stacks to and from an aligned canvas.

    Parameters
    ----------
    shifts : array_like
        ``(N, n, 2)`` or ``(n, 2)`` displacements ``(dy, dx)`` in pixels
        (rounded to whole pixels): the content of frame ``b`` sits at
        ``r + shifts[b]`` of where it sits in the aligned frame.
    size : (h, w)
        Frame size of the stacks to warp.
    multiple : int, optional
        The canvas margins are multiples of this (so a canvas stays a
        multiple of a network's pixel-unshuffle factor when the frame is).

    Attributes
    ----------
    margins : (int, int)
        Canvas pixels above and below the frame, and left and right of it:
        the largest displacement along that axis, rounded up to
        ``multiple``; the canvas is ``(h + 2 * my, w + 2 * mx)``.  The
        decoders' prior runs on the whole canvas, so its area is their
        cost (a drift of 3 px/frame along x at B = 30 gives
        ``256 x (256 + 2 * 44)`` for a 256 tile, 1.34x the tile, where one
        margin for both axes gave 1.8x).
    """

    def __init__(self, shifts, size: tuple[int, int], multiple: int = 1):
        s = np.rint(np.asarray(torch.as_tensor(shifts).detach().cpu(), np.float64)).astype(np.int64)
        if s.ndim == 2:
            s = s[None]
        if s.ndim != 3 or s.shape[-1] != 2:
            raise TcsValueError(f"shifts must be (N, n, 2) or (n, 2), got {tuple(s.shape)}")
        self.shifts = s
        self.size = (int(size[0]), int(size[1]))
        m = max(int(multiple), 1)
        largest = np.abs(s).reshape(-1, 2).max(0, initial=0)
        self.margins = (-(-int(largest[0]) // m) * m, -(-int(largest[1]) // m) * m)
        h, w = self.size
        my, mx = self.margins
        self.canvas = (h + 2 * my, w + 2 * mx)
        self._coverage: torch.Tensor | None = None

    def _windows(self, N: int, n: int):
        """(i, b, y0, x0): where frame b of sample i sits on the canvas."""
        if self.shifts.shape[1] != n or self.shifts.shape[0] not in (1, N):
            raise TcsValueError(f"a stack of {N} x {n} frames given to a warp for {self.shifts.shape[:2]}")
        my, mx = self.margins
        for i in range(N):
            si = self.shifts[i if self.shifts.shape[0] > 1 else 0]
            for b in range(n):
                yield i, b, my - int(si[b, 0]), mx - int(si[b, 1])

    def coverage(self, N: int, n: int, device=None) -> torch.Tensor:
        """``(N, n, Hc, Wc)`` float32: 1 where a frame sees the canvas pixel."""
        if self._coverage is None or self._coverage.shape[:2] != (N, n):
            h, w = self.size
            cov = torch.zeros((N, n, *self.canvas), dtype=torch.float32, device=device)
            for i, b, y0, x0 in self._windows(N, n):
                cov[i, b, y0:y0 + h, x0:x0 + w] = 1
            self._coverage = cov
        return self._coverage.to(device)

    def align(self, x: torch.Tensor, fill: str = "mean") -> torch.Tensor:
        """Detector frames ``(N, n, h, w)`` to the canvas ``(N, n, Hc, Wc)``.

        ``fill``: what canvas pixels a frame does not see hold: ``"mean"``
        the mean of the frames that see them (their own border where none
        does), ``"edge"`` the frame's own border, ``"zero"`` 0 (for masks).
        """
        N, n, h, w = x.shape
        if (h, w) != self.size:
            raise TcsValueError(f"frames of {(h, w)} given to a warp made for {self.size}")
        my, mx = self.margins
        if my == mx == 0:
            return x
        if fill == "zero":
            out = x.new_zeros((N, n, *self.canvas))
            for i, b, y0, x0 in self._windows(N, n):
                out[i, b, y0:y0 + h, x0:x0 + w] = x[i, b]
            return out
        # Each frame on the canvas with its own border extended...
        xp = F.pad(x.reshape(N * n, 1, h, w), (2 * mx, 2 * mx, 2 * my, 2 * my),
                   mode="replicate").view(N, n, h + 4 * my, w + 4 * mx)
        out = torch.empty((N, n, *self.canvas), dtype=x.dtype, device=x.device)
        Hc, Wc = self.canvas
        for i, b, y0, x0 in self._windows(N, n):
            out[i, b] = xp[i, b, 2 * my - y0:2 * my - y0 + Hc, 2 * mx - x0:2 * mx - x0 + Wc]
        if fill == "edge":
            return out
        # ...then, where it is blind, the mean of the frames that see.
        cov = self.coverage(N, n, x.device).to(x.dtype)
        seen = cov.sum(1, keepdim=True)
        return torch.where((cov == 0) & (seen > 0), self.seen_mean(out, placed=True)[:, None], out)

    def seen_mean(self, x: torch.Tensor, placed: bool = False) -> torch.Tensor:
        """``(N, Hc, Wc)``: each canvas pixel's mean over the frames that see
        it (0 where none does), of detector frames ``x`` or, with
        ``placed``, of frames already on the canvas."""
        z = x if placed else self.align(x, "edge")
        cov = self.coverage(z.shape[0], z.shape[1], z.device).to(z.dtype)
        return (z * cov).sum(1) / cov.sum(1).clamp(min=1)

    def unalign(self, z: torch.Tensor) -> torch.Tensor:
        """Canvas ``(N, n, Hc, Wc)`` back to the detector frames ``(N, n, h, w)``."""
        N, n = z.shape[:2]
        if self.margins == (0, 0):
            return z
        h, w = self.size
        out = z.new_empty((N, n, h, w))
        for i, b, y0, x0 in self._windows(N, n):
            out[i, b] = z[i, b, y0:y0 + h, x0:x0 + w]
        return out
