"""Where groups end: fixed lengths, listed lengths, or the streaming decision
of ``B="auto"`` (format version 2, groups of variable length).

A **group policy** sees each frame before it is encoded and says whether it
starts a new group::

    policy.starts_group(frame, in_group) -> bool

``in_group`` is the number of frames already in the current group (0 when
the frame starts one anyway: the first frame, or after a group of
``max_B``).  :class:`~tcscodec.writer.TcsWriter` asks its policy for every
frame and ends the encoder's group (:meth:`CpuEncoder.end_group
<tcscodec.encoder.CpuEncoder.end_group>`) when it says so.

:class:`ListedGroups` ends groups at given lengths.  :class:`AutoGroups`
decides from the frames, in one pass and in bounded memory
(:class:`AutoGroupsConfig` holds its settings):

* every frame is summed over ``bin x bin`` bins (8 x 8 by default: one
  addition per pixel, :func:`tcscodec.cpu_kernels.binned_sum`), and the
  centre pixel of each bin is kept as the **sample grid**.  The decision
  holds two binned frames (float64) and the group's reference, its bins
  and sample grid (float32): 0.44 bytes per pixel with 8 x 8 bins, a fifth
  of a uint16 frame;
* the **noise model**: a pixel of mean ``mu`` (in the input's units) has
  variance ``a + g * mu`` (read noise and offset, shot noise of gain
  ``g``).  Each pair of consecutive frames gives an estimate from its
  bins' squared differences (``E[(m - m')^2] = 2 (a + g mu) / P`` for bins
  of ``P`` pixels): ``g`` alone (``a = 0``, Poisson) from their median,
  or a line through the medians of the four quartiles of the bins' means
  where those span a wide range over at least 1024 bins.  The model is
  the median over the last 16 pairs that were not cuts (motion can only
  raise it); before the first pair, the spatial estimate of the first
  frame (:func:`tcscodec.quantize.spatial_gain`);
* **cut**: a frame whose median bin differs from the previous frame's by
  more than ``cut`` pixel noise stds (a new scene, a jump of the stage,
  the beam blanked or back) always starts a group, whatever ``min_B``;
* **change**: otherwise the group closes before the first frame (at least
  ``min_B`` into the group) whose sample grid has changed since the
  group's start by more than ``tolerance``: the rms over the grid of the
  difference to the reference (the mean of the group's first
  ``ref_frames`` frames), the frame scaled to the reference's total
  intensity (beam-current flicker is no change), in units of the pixel
  noise std, after removing the noise's own share and with a margin of 4
  of its standard deviations (small frames have few samples); or before
  the first frame in which 2 % of the **bin means** (64 times less noisy
  than a sample) moved more than ``16 * tolerance`` of their noise stds: a
  change confined to a few percent of the field (a particle growing in
  place, a sintering neck), which the rms over the whole grid dilutes.
  Smaller tolerances make shorter groups (better on motion, larger files).

The thresholds are first settings, checked on eight held-out event movies
(``bench/auto_groups.py``) but not yet tuned on a rate-distortion sweep;
structure that moves only between the samples (finer than the
bins, in a flat region) is not seen.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import numpy as np

from .cpu_kernels import binned_sum, change_statistics
from .errors import TcsValueError
from .format.config import ConfigDict
from .measurement import MAX_B, check_B
from .quantize import spatial_gain

__all__ = ["GroupPolicy", "ListedGroups", "AutoGroupsConfig", "AutoGroups", "AUTO_MIN_B", "AUTO_MAX_B"]

#: ``B="auto"``'s default shortest and longest groups
AUTO_MIN_B = 4
AUTO_MAX_B = 64
#: per-pair gain estimates kept (their median is the temporal estimate)
_GAIN_PAIRS = 16
#: median of a chi-square variable of one degree of freedom
_CHI2_MEDIAN = 0.4549364231195724
#: side of the central crop of the first frame the spatial gain is estimated on
_SPATIAL_CROP = 256
#: the noise model fits an offset (read noise, dark level) only with this many bins
_FIT_BINS = 1024
#: the noise model and the cut rule look at this many bins at most, evenly strided
_NOISE_BINS = 4096
#: a bin's squared change counts at most this many times its noise variance
#: (hot pixels and single bright bins do not close a group on their own)
_CLIP = 400.0
#: the local rule: a bin mean that moved this many of its noise stds per unit
#: of ``tolerance`` (8 at the default 0.5: never by noise alone)...
_LOCAL_Z = 16.0
#: ... in this fraction of the bins, and in 3 bins at least, closes the group
#: (a particle growing or a neck forming in place changes a few % of them)
_LOCAL_FRACTION = 0.02


class GroupPolicy(Protocol):
    """Decides, frame by frame, where groups start."""

    max_B: int

    def starts_group(self, frame: np.ndarray, in_group: int) -> bool:
        """True when ``frame`` starts a new group although the current one
        holds ``in_group`` (``>= 1``) frames; called for every frame."""
        ...


class ListedGroups:
    """Groups of the listed lengths, then groups of ``B``.

    Parameters
    ----------
    lengths : sequence of int
        Lengths of the first groups, each ``1..B``.
    B : int
        The longest group, and the length of the groups after the listed ones.
    """

    def __init__(self, lengths: Sequence[int], B: int):
        self.max_B = check_B(B)
        self.lengths = [int(n) for n in lengths]
        bad = [n for n in self.lengths if not 1 <= n <= self.max_B]
        if bad:
            raise TcsValueError(f"group lengths must be in 1..B={self.max_B}, got {bad[0]}")
        self._group = -1

    def starts_group(self, frame, in_group: int) -> bool:
        if in_group == 0:
            self._group += 1
            return False
        n = self.lengths[self._group] if self._group < len(self.lengths) else self.max_B
        if in_group >= n:
            self._group += 1
            return True
        return False


@dataclass(frozen=True)
class AutoGroupsConfig(ConfigDict):
    """Settings of :class:`AutoGroups` (``B="auto"``).

    Attributes
    ----------
    min_B, max_B : int
        Shortest group the change rule makes (a cut makes shorter ones) and
        longest group, ``1 <= min_B <= max_B``, ``2 <= max_B <= 64``.
    tolerance : float
        Change since the group's start, as the rms of the binned difference
        in units of the pixel shot-noise std, that closes the group (the
        one quality knob: smaller is shorter groups, better quality on
        motion, larger files).
    cut : float
        A frame whose median bin differs from the previous frame's by more
        than ``cut`` pixel noise stds starts a group.
    bin : int
        Side of the bins the frames are summed over (a frame smaller than
        4 bins a side uses smaller bins).
    ref_frames : int
        Frames averaged into the group's reference.
    """

    min_B: int = AUTO_MIN_B
    max_B: int = AUTO_MAX_B
    tolerance: float = 0.5
    cut: float = 1.0
    bin: int = 8
    ref_frames: int = 2

    def __post_init__(self):
        check_B(self.max_B)
        if isinstance(self.min_B, bool) or not isinstance(self.min_B, (int, np.integer)) \
                or not 1 <= self.min_B <= self.max_B:
            raise TcsValueError(f"min_B must be an integer in 1..max_B={self.max_B}, got {self.min_B!r}")
        for name in ("tolerance", "cut"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float, np.number)) and np.isfinite(value) and value > 0):
                raise TcsValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not (isinstance(self.bin, (int, np.integer)) and 1 <= self.bin <= 256):
            raise TcsValueError(f"bin must be in 1..256, got {self.bin!r}")
        if not (isinstance(self.ref_frames, (int, np.integer)) and 1 <= self.ref_frames <= MAX_B):
            raise TcsValueError(f"ref_frames must be in 1..{MAX_B}, got {self.ref_frames!r}")


class AutoGroups:
    """The streaming decision of ``B="auto"`` (module docstring).

    Parameters
    ----------
    config : AutoGroupsConfig, optional
        Its settings (defaults: groups of 4 to 64 frames, tolerance 0.5).

    Attributes
    ----------
    gain : float
        The current shot-noise gain estimate (variance per unit of signal).
    decisions : list of str
        Why each group after the first started: ``"cut"``, ``"change"`` or
        ``"max_B"`` (the group before it was full).
    """

    def __init__(self, config: AutoGroupsConfig | None = None):
        self.config = config or AutoGroupsConfig()
        self.max_B = self.config.max_B
        self.gain = 0.0
        self.decisions: list[str] = []
        self._s = 0
        self._bins: np.ndarray | None = None  # the current frame's bin means
        self._prev: np.ndarray | None = None  # the previous frame's
        self._ref: np.ndarray | None = None  # the group's reference, on the sample grid
        self._ref_bins: np.ndarray | None = None  # and its bin means (its noise variance)
        self._ref_n = 0
        self._spatial = np.inf
        self._pairs: deque[tuple[float, float]] = deque(maxlen=_GAIN_PAIRS)
        self._started = False
        self._run: Callable[[list[Callable[[], Any]]], list] | None = None
        self._threads = 1

    def use_pool(self, run: Callable[[list[Callable[[], Any]]], list], threads: int) -> None:
        """Sum each frame's bins in ``threads`` bands of rows on ``run`` (the
        writer's :meth:`~tcscodec.work_pool.WorkPool.run`), each on one
        thread: numba's own threads, started from the caller's thread,
        competed with the writer's for the cores (``-B auto`` on 2 threads
        ran at 0.6x of fixed B).  The same sums, bin by bin."""
        self._run, self._threads = run, max(1, int(threads))

    def _bin_sums(self, frame: np.ndarray) -> np.ndarray:
        """:func:`binned_sum` of ``frame`` into the current bins: in bands on
        the pool given to :meth:`use_pool`, else numba's parallel kernel."""
        assert self._bins is not None
        s, hb = self._s, self._bins.shape[0]
        if self._run is None:
            return binned_sum(frame, s, self._bins)
        n = min(self._threads, hb)
        if n < 2:
            return binned_sum(frame, s, self._bins, parallel=False)
        frame = np.ascontiguousarray(frame)
        edges = [hb * i // n for i in range(n + 1)]
        self._run([partial(binned_sum, frame[r0 * s:r1 * s], s, self._bins[r0:r1], False)
                   for r0, r1 in zip(edges[:-1], edges[1:], strict=True)])
        return self._bins

    def _setup(self, frame: np.ndarray) -> None:
        H, W = frame.shape
        self._s = max(1, min(self.config.bin, H // 4, W // 4))
        self._bins = np.zeros((H // self._s, W // self._s))
        self._prev = np.empty_like(self._bins)
        y0, x0 = max(0, (H - _SPATIAL_CROP) // 2), max(0, (W - _SPATIAL_CROP) // 2)
        crop = np.asarray(frame[y0:y0 + _SPATIAL_CROP, x0:x0 + _SPATIAL_CROP], np.float64)
        g = spatial_gain(crop, np.ones_like(crop))
        self._spatial = g if g > 0 else np.inf

    def _samples(self, frame: np.ndarray) -> np.ndarray:
        """The sample grid: the centre pixel of every bin, as float32."""
        assert self._bins is not None
        s, h = self._s, self._s // 2
        hb, wb = self._bins.shape
        return np.asarray(frame[h:hb * s:s, h:wb * s:s], np.float32)

    def starts_group(self, frame, in_group: int) -> bool:
        frame = np.asarray(frame)
        if self._bins is None:
            self._setup(frame)
        assert self._bins is not None and self._prev is not None
        P = self._s * self._s
        m = self._bin_sums(frame)
        m /= P  # bin means
        x = self._samples(frame)
        start = False
        if self._started:
            # the noise model and the cut rule need only medians: a strided
            # subset of the bins gives them (on a 4k frame all of them took 80 %)
            every = max(1, m.size // _NOISE_BINS)
            now, before = m.ravel()[::every], self._prev.ravel()[::every]
            diff2 = np.square(now - before)
            mu = 0.5 * (now + before)
            pair = self._pair_noise(mu, diff2 * (P / 2))
            # the cut rule, in pixel noise stds, before this pair enters the noise model
            a, g = self._noise(pair)
            if float(np.median(diff2 / self._variance(mu, a, g))) > self.config.cut ** 2:
                start = in_group > 0
                if start:
                    self.decisions.append("cut")
            else:
                self._pairs.append(pair)
                a, g = self._noise(None)
                if in_group >= self.config.min_B and self._ref_n and self._changed(x, m, a, g):
                    start = True
                    self.decisions.append("change")
        if in_group == 0 and self._started:
            self.decisions.append("max_B")
        self._started = True
        if start or in_group == 0 or self._ref is None or self._ref_bins is None:
            self._ref, self._ref_bins = x, m.astype(np.float32)
            self._ref_n = 1
        elif self._ref_n < self.config.ref_frames:
            k = self._ref_n
            self._ref = (self._ref * k + x) / (k + 1)
            self._ref_bins = (self._ref_bins * k + m) / (k + 1)
            self._ref_n += 1
        self._prev, self._bins = m, self._prev
        return start

    @staticmethod
    def _pair_noise(mu: np.ndarray, v: np.ndarray) -> tuple[float, float]:
        """``(a, g)`` of the pixel noise variance ``a + g * mu`` (read noise
        and offset, shot noise) from one pair of frames: ``v`` is each bin's
        squared difference scaled to one pixel's variance (a chi-square
        variable of one degree of freedom), fitted robustly over the four
        quartiles of the bins' means where they span a wide range (STEM,
        dark and bright regions), else ``a = 0`` (Poisson)."""
        poisson = (0.0, float(np.median(v / np.maximum(mu, 1e-12))) / _CHI2_MEDIAN)
        if mu.size < _FIT_BINS:
            return poisson  # too few bins to tell an offset from the gain
        n = mu.size
        edges = [k * (n // 4) + min(k, n % 4) for k in range(5)]  # np.array_split's quartiles
        parts = [(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
        # Each quartile's median mean is the middle of its slice of the
        # sorted means (np.median's: the mean of the two middle values of an
        # even slice), whatever order ties take: the values are sorted, not
        # the bins, until the range asks for the fit.
        ranked = np.sort(mu, axis=None)
        mq = np.array([(ranked[(a + b - 1) // 2] + ranked[(a + b) // 2]) / 2.0 if (b - a) % 2 == 0
                       else ranked[(a + b) // 2] for a, b in parts], np.float64)
        if float(mq[-1] - mq[0]) <= 0.5 * max(float(np.mean(np.abs(mq))), 1e-12):
            return poisson  # too narrow a range of means to tell an offset from the gain
        # the bins in order of their means: each quartile a contiguous slice, read without gathers
        order = np.argsort(mu, axis=None)
        vs = v.ravel()[order]
        vq = np.array([float(np.median(vs[a:b])) / _CHI2_MEDIAN for a, b in parts])
        g, a = np.polyfit(mq, vq, 1)
        if g <= 0 or a < 0:
            return poisson
        return float(a), float(g)

    def _noise(self, pair: tuple[float, float] | None) -> tuple[float, float]:
        """The medians of ``a`` and ``g`` over the recent pairs [and ``pair``];
        before there is any, the spatial gain estimate of the first frame."""
        pairs = list(self._pairs) + ([pair] if pair is not None else [])
        if not pairs:
            g = self._spatial if np.isfinite(self._spatial) else 1.0
            self.gain = g
            return 0.0, g
        a = float(np.median([p[0] for p in pairs]))
        g = float(np.median([p[1] for p in pairs]))
        self.gain = g
        return a, g

    @staticmethod
    def _variance(mu: np.ndarray, a: float, g: float) -> np.ndarray:
        """Pixel noise variance ``a + g * mu``, at least what one electron gives."""
        var = a + g * np.maximum(mu, 0.0)
        floor = max(g * g, 1e-3 * float(np.mean(var)) if var.size else 0.0, 1e-12)
        return np.maximum(var, floor)

    def _changed(self, x: np.ndarray, m: np.ndarray, a: float, g: float) -> bool:
        """The change rule: rms change of the sample grid since the group's
        start, scaled to the reference's total intensity, over
        ``tolerance`` pixel noise stds (after the noise's own share); or
        the local rule on the bin means."""
        assert self._ref is not None and self._ref_bins is not None
        ref, mu = self._ref, self._ref_bins
        total = float(m.sum())  # this frame's bin means
        flicker = float(mu.sum()) / total if total > 0 else 1.0  # beam current is no change
        P = self._s * self._s
        local2 = (_LOCAL_Z * self.config.tolerance) ** 2
        found = change_statistics(x, ref, m, mu, flicker, a, g, self._ref_n, P, _CLIP, local2)
        mean_z2, moved = found if found is not None else self._change_statistics(x, m, flicker, a, g, local2)
        # the noise's own excess has std sqrt(2 / samples): a margin of 4 of
        # them keeps small frames (few samples) from closing groups on noise
        if mean_z2 - 1.0 > self.config.tolerance ** 2 + 4.0 * np.sqrt(2.0 / x.size):
            return True
        # The local rule, on the bin means (P pixels each: P times less noisy
        # than a sample): a change confined to a few bins, which the rms over
        # the whole grid dilutes (a particle growing in place).
        return moved >= max(3, _LOCAL_FRACTION * m.size)

    def _change_statistics(self, x: np.ndarray, m: np.ndarray, flicker: float, a: float, g: float,
                           local2: float) -> tuple[float, int]:
        """:func:`tcscodec.cpu_kernels.change_statistics` in numpy (the
        reference, and the path without numba)."""
        assert self._ref is not None and self._ref_bins is not None
        ref, mu = self._ref, self._ref_bins.astype(np.float64)
        # noise variance of (scaled - ref) for a pixel: var(mu) (1 + 1/ref_n), with
        # mu its bin's mean in the reference (the pixels' own values are too noisy)
        var = (1 + 1 / self._ref_n) * self._variance(mu, a, g)
        z2 = np.square(x * flicker - ref) / var
        zb2 = np.square(m * flicker - mu) / (var / (self._s * self._s))
        return float(np.mean(np.minimum(z2, _CLIP))), int(np.count_nonzero(zb2 > local2))
