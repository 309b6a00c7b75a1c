"""Global motion of a movie, estimated from its measurements alone.

Stage drift moves the whole scene by up to several pixels per frame, and a
group of ``B`` frames summed through the masks then holds a smeared scene.
A decoder that knows each frame's displacement can reconstruct in the
moving frame, where the scene is nearly still (:mod:`tcscodec.decoders`
take it as ``shifts``).  The displacement needs nothing but the file:

1. ``Y / sum C`` of each group (:func:`tcscodec.masks.measured_mean`) is the
   scene averaged over the group, centred on the group's middle time;
2. consecutive group means are registered (:func:`register`) by
   cross-correlation in two passes: a coarse one, low-passed far below any
   lattice frequency, which follows the scene's large features (a particle's
   outline, thickness, the support) and so cannot lock onto a lattice
   period, then a fine one, searched only within a few pixels of the coarse
   peak, for sub-pixel precision;
3. the displacements of the group centres are joined into a path, linear
   between centres and extended with the nearest segment's velocity before
   the first and after the last (:class:`MotionPath`).

Conventions: a displacement ``(dy, dx)`` in pixels is where the scene's
content has moved to, ``X_t(r) = Z(r - d_t)``; ``MotionPath.frames[t]`` is
the displacement of frame ``t`` from frame 0 (as ``drift_px`` in the
simulator's metadata).

Motion across the field is measured too: the four quarters of the
registration window, registered on their own, give an affine velocity field
(:attr:`MotionPath.gradient`: a rotation, a zoom) and what it leaves
(:attr:`MotionPath.residual_spread`: particles moving on their own).  A
decoder aligns each tile by the field's translation at the tile's centre
(:meth:`MotionPath.group_shift_gradient`), and a movie whose motion still
varies too much within a tile (:meth:`MotionPath.non_rigidity`) is decoded
as still.  Scene changes are left to the decoder's prior.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from .errors import TcsValueError
from .format.config import ConfigDict
from .quantize import dose_estimate
from .registration import COARSE_SIGMA, FINE_SIGMA, Spectra, bin_mean, fill_invalid, register, register_spectra

__all__ = [
    "MotionPath",
    "worth_compensating",
    "register",
    "estimate_motion",
    "COARSE_SIGMA",
    "FINE_SIGMA",
    "MIN_EXCURSION",
    "MAX_EXCURSION",
    "MIN_SPEED",
    "MAX_DOSE",
    "MAX_ROUGHNESS",
    "RIGID_START_ROUGHNESS",
    "RIGID_START_NON_RIGIDITY",
    "RIGID_START_FRAMES",
    "MIN_GROUPS",
    "MAX_NON_RIGIDITY",
    "MAX_SIDE",
]

#: a group whose frames move less than this (px, largest displacement from
#: the group's middle) is decoded as still: compensation could not gain
MIN_EXCURSION = 0.5
#: a group whose frames move further than this (px from its middle) is
#: decoded as still too: its scene crosses most of a tile within the group,
#: and the aligned canvas (the frame plus this margin on every side) would
#: cost the decoder up to (1 + 2 * 48 / 256)^2 = 1.9x the work of a 256 tile
MAX_EXCURSION = 48.0
#: a group moving slower than this (px/frame, first to last frame) is
#: decoded as still: whole-pixel alignment errs by up to half a pixel, and
#: the still decoder already follows slow drift through the masks
MIN_SPEED = 0.9
#: a movie of more than this many electrons per pixel per frame (estimated
#: from the measurements' shot noise, :func:`tcscodec.quantize.dose_estimate`)
#: is decoded as still: at high dose the masks alone resolve each frame,
#: and alignment's rounding costs more than it gains
MAX_DOSE = 50.0
#: a movie whose consecutive group velocities differ by more than this
#: fraction of its speed (median over the pairs) is decoded as still: the
#: path is linear between group centres, so drift that jitters within a
#: group, or particles moving on their own, put each frame where it is not
MAX_ROUGHNESS = 0.15
#: a compensated group of at most RIGID_START_FRAMES frames in a movie whose
#: path is this smooth and whose scene moves as one (non-rigidity at most
#: RIGID_START_NON_RIGIDITY; :meth:`MotionPath.rigid_start`) most likely
#: shows a specimen that only drifts: the learned decoder then starts from
#: the rigid-scene solution.  Set on the 16 drifting bench movies at B = 10,
#: where the rough ones (0.116-0.144: particles that move on their own)
#: lost 1.3-3.9 dB from a rigid start and the smooth ones (0.029-0.085)
#: gained up to 11.7, and on two fresh simulator movies, smooth (0.090,
#: 0.0997) but with particles moving on their own (non-rigidity 0.13,
#: 0.24), that lost 0.5 and 1.5 (bench/results/motion/rigid_start.md)
RIGID_START_ROUGHNESS = 0.1
#: see RIGID_START_ROUGHNESS
RIGID_START_NON_RIGIDITY = 0.1
#: longer groups do not start rigid on the path's word alone: a drift that
#: jitters from frame to frame, which the path (linear between group
#: centres) cannot show, turns a rigid start's gain into a loss (-2.6 dB at
#: 20 frames, -4.0 at 30, on a jittering HRTEM drift that loses 0.5 at 10)
#: where on others it gains up to 10 dB; the reader asks the measurements
#: (:meth:`MotionPath.rigid_start_open`, :mod:`tcscodec.motion_check`)
RIGID_START_FRAMES = 10
#: roughness is judged on at least this many groups (two changes of
#: velocity): on the three 20-frame groups of a 60-frame movie, the one change
#: measured missed a drift jittering 0.7 px/frame (sim188, -3.8 dB)
MIN_GROUPS = 4
#: a movie whose quarters move at velocities further apart than this
#: fraction of its speed (the largest departure of a quarter's velocity from
#: the quarters' mean, median over pairs of groups) is decoded as still: a
#: rotation or particles moving on their own, which one shift per tile
#: misplaces.  A guard, set on movies the gate had not seen
#: (bench/results/motion/v13.md): of seven whose non-rigidity measured
#: 0.20-0.37, six gained from compensation at B = 10 (+0.07 to +2.96 dB)
#: and one lost (sim99, 0.35, -1.1 dB), and five more (movie, B) of 0.22 to
#: 0.40 in 120-frame movies all gained; an earlier limit of 0.2, set on
#: sim99 alone, cost every other one its gain
MAX_NON_RIGIDITY = 0.4
#: group means are registered over a central window at most this many
#: pixels on a side (after binning), enough for a global displacement and
#: cheap on 4k frames
MAX_SIDE = 512


def worth_compensating(shifts: np.ndarray, min_excursion: float = MIN_EXCURSION,
                       max_excursion: float = MAX_EXCURSION) -> bool:
    """Whether a group whose frames sit at ``shifts`` (px from its middle)
    is decoded in the moving frame: it moves at least ``min_excursion``
    (less cannot gain) and at most ``max_excursion`` (more crosses the tile)."""
    return min_excursion <= float(np.abs(shifts).max(initial=0.0)) <= max_excursion


@dataclass(frozen=True)
class MotionPath(ConfigDict):
    """Per-frame global displacement of a movie.

    Attributes
    ----------
    frames : numpy.ndarray
        ``(T, 2)`` float64 displacement ``(dy, dx)`` of each frame's content
        from frame 0, in pixels.
    group_starts : tuple of int
        First frame of each group (``len == n_groups``); group ``g`` holds
        frames ``group_starts[g]`` up to the next start (or ``T``).
    confidence : tuple of float
        Correlation of each consecutive pair of groups' low-passed means at
        their registered shift (1 for a perfect match; empty for a single
        group).
    dose : float or None
        Electrons per pixel per frame estimated from the measurements' shot
        noise (:func:`tcscodec.quantize.dose_estimate`), or None when not
        estimated.
    local_spread : float or None
        How far the four quarters of the registration window move apart
        (px/frame): the largest distance of a quarter's velocity from the
        quarters' mean, median over the pairs of groups measured (see
        :func:`estimate_motion`); 0 for a rigid drift, None when not
        measured.
    gradient : tuple of 4 float or None
        How the velocity changes across the field, ``(dvy/dy, dvy/dx,
        dvx/dy, dvx/dx)`` per frame (a rotation of ``w`` rad/frame that
        turns +x towards +y is ``(0, w, -w, 0)``, a zoom ``(z, 0, 0, z)``),
        about the frame's centre: the affine field fitted to the quarters'
        velocities (median over the pairs measured); None when not
        measured.  Decoders apply it per tile (:meth:`group_shift_gradient`).
    residual_spread : float or None
        What that affine field leaves of the quarters' spread (px/frame):
        motion no tile's translation follows (particles moving on their
        own); None when not measured.
    """

    frames: np.ndarray
    group_starts: tuple[int, ...]
    confidence: tuple[float, ...] = ()
    dose: float | None = None
    local_spread: float | None = None
    gradient: tuple[float, float, float, float] | None = None
    residual_spread: float | None = None

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    def velocity(self) -> np.ndarray:
        """``(T, 2)`` displacement per frame (px/frame), the last repeated."""
        if self.n_frames < 2:
            return np.zeros_like(self.frames)
        v = np.diff(self.frames, axis=0)
        return np.concatenate([v, v[-1:]])

    def group_shifts(self, group: int) -> np.ndarray:
        """``(n, 2)`` displacements of the group's frames from the
        displacement at its middle time (so they straddle zero)."""
        starts = list(self.group_starts) + [self.n_frames]
        if not 0 <= group < len(self.group_starts):
            raise TcsValueError(f"group {group} out of range 0..{len(self.group_starts) - 1}")
        d = self.frames[starts[group]:starts[group + 1]]
        t = np.arange(len(d), dtype=np.float64)
        middle = np.array([np.interp((len(d) - 1) / 2, t, d[:, k]) for k in range(2)])
        return d - middle

    def compensated(self, group: int, min_excursion: float = MIN_EXCURSION,
                    max_excursion: float = MAX_EXCURSION, min_speed: float = MIN_SPEED,
                    max_dose: float = MAX_DOSE, max_roughness: float = MAX_ROUGHNESS,
                    max_non_rigidity: float = MAX_NON_RIGIDITY, extent: float | None = None) -> np.ndarray | None:
        """:meth:`group_shifts` where decoding in the moving frame pays,
        else None (decode the group as still).

        It pays where the group's frames move ``min_excursion`` to
        ``max_excursion`` px from its middle (:func:`worth_compensating`), at
        ``min_speed`` px/frame or faster, in a movie of at most ``max_dose``
        electrons per pixel per frame (:attr:`dose`; not checked where
        unknown) whose path is smooth: :meth:`roughness` at most
        ``max_roughness`` (a movie of fewer than :data:`MIN_GROUPS` groups
        cannot show it and is decoded as still, unless ``max_roughness`` is
        infinite), and whose scene moves as one: :meth:`non_rigidity` at
        most ``max_non_rigidity`` (not checked where unknown) over a tile of
        ``extent`` px that gets its own translation
        (:meth:`group_shift_gradient`; None: the registration window).
        Measured in bench/motion_eval.py and bench/motion_local.py: slower,
        higher-dose, jittery or fast-turning groups decode better as still.
        """
        s = self.group_shifts(group)
        if not worth_compensating(s, min_excursion, max_excursion):
            return None
        speed = float(np.hypot(*(s[-1] - s[0]))) / max(len(s) - 1, 1)
        if speed < min_speed or (self.dose is not None and self.dose > max_dose):
            return None
        if max_roughness < math.inf:
            rough = self.roughness()
            if rough is None or rough > max_roughness:
                return None
        if max_non_rigidity < math.inf:
            spread = self.non_rigidity(extent)
            if spread is not None and spread > max_non_rigidity:
                return None
        return s

    @cached_property
    def _centre_motion(self) -> tuple[np.ndarray, float]:
        """``(n_groups - 1, 2)`` velocities between consecutive group centres
        and their median speed (0 for fewer than 2 groups); kept, as
        :meth:`compensated` asks for them for every group, through
        :meth:`roughness` and :meth:`non_rigidity`."""
        starts = np.asarray(self.group_starts, np.float64)
        ends = np.append(starts[1:], self.n_frames)
        centres = (starts + ends - 1) / 2
        t = np.arange(self.n_frames, dtype=np.float64)
        pos = np.stack([np.interp(centres, t, self.frames[:, k]) for k in range(2)], axis=1)
        v = np.diff(pos, axis=0) / np.diff(centres)[:, None]
        return v, float(np.median(np.hypot(*v.T))) if len(v) else 0.0

    def rigid_start(self, group: int) -> bool:
        """Whether a decoder that can (``Decoder.takes_rigid_start``)
        should start ``group``, decoded in the moving frame, from the
        rigid-scene solution: a group of at most :data:`RIGID_START_FRAMES`
        frames in a movie whose :meth:`roughness` is at most
        :data:`RIGID_START_ROUGHNESS` and whose :meth:`non_rigidity` is at
        most :data:`RIGID_START_NON_RIGIDITY` (both measured)."""
        return self._rigid_path and len(self.group_shifts(group)) <= RIGID_START_FRAMES

    def rigid_start_open(self, group: int) -> bool:
        """Whether the path leaves ``group``'s start to the measurements: a
        group longer than :data:`RIGID_START_FRAMES` frames in a movie
        whose path passes :meth:`rigid_start`'s other limits.  The reader
        then decodes a few such groups from both starts and keeps the rigid
        one where it predicts the neighbouring groups' measurements better
        (:func:`tcscodec.motion_check.start_score`)."""
        return self._rigid_path and len(self.group_shifts(group)) > RIGID_START_FRAMES

    @cached_property
    def _rigid_path(self) -> bool:
        rough, spread = self.roughness(), self.non_rigidity()
        return (rough is not None and rough <= RIGID_START_ROUGHNESS
                and spread is not None and spread <= RIGID_START_NON_RIGIDITY)

    def roughness(self) -> float | None:
        """How far the drift is from the path's model, linear between group
        centres: the median change of velocity between consecutive pairs of
        groups over the median speed (0 for a constant drift); None for
        fewer than :data:`MIN_GROUPS` groups or a still movie."""
        return self._roughness

    @cached_property
    def _roughness(self) -> float | None:
        v, speed = self._centre_motion
        if len(self.group_starts) < MIN_GROUPS or speed <= 0:
            return None
        return float(np.median(np.hypot(*np.diff(v, axis=0).T))) / speed

    def non_rigidity(self, extent: float | None = None) -> float | None:
        """How far the scene is from moving as one over the field a decoder
        aligns with one translation, relative to the speed (the median
        between group centres); 0 for a rigid drift, None when not measured
        or for a still movie.

        Without ``extent``: :attr:`local_spread` over the speed, the whole
        registration window's quarters (a rotation of ``w`` rad/frame gives
        about ``w * r / speed``, ``r`` a quarter's distance from the centre).
        With ``extent`` (px: the side of a tile that gets its own
        translation from :attr:`gradient`): what is left inside such a tile,
        the field's spread over its quarters plus :attr:`residual_spread`,
        and never more than without.
        """
        if self.local_spread is None or len(self.group_starts) < 2:
            return None
        speed = self._centre_motion[1]
        if speed <= 0:
            return None
        spread = self.local_spread
        if extent is not None and self.gradient is not None and self.residual_spread is not None:
            q = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]], np.float64) * (extent / 4)
            inside = float(np.hypot(*(q @ self.velocity_gradient().T).T).max()) + self.residual_spread
            spread = min(spread, inside)
        return spread / speed

    def velocity_gradient(self) -> np.ndarray:
        """:attr:`gradient` as a ``(2, 2)`` matrix (zeros when not
        measured): ``v(r) = v(centre) + G @ (r - centre)``."""
        return np.zeros((2, 2)) if self.gradient is None else np.asarray(self.gradient, np.float64).reshape(2, 2)

    def group_shift_gradient(self, group: int) -> np.ndarray:
        """``(n, 2, 2)``: how the group's frame displacements
        (:meth:`group_shifts`, those at the frame's centre) change across the
        field; frame ``b``'s content at ``r`` moves by
        ``group_shifts(group)[b] + result[b] @ (r - centre)``."""
        n = len(self.group_shifts(group))
        t = np.arange(n, dtype=np.float64) - (n - 1) / 2
        return t[:, None, None] * self.velocity_gradient()[None]

    def summary(self) -> dict:
        """Speeds in px/frame (median and largest), total travel, how many
        groups are compensated and how many of those from a rigid start
        (:meth:`rigid_start`), and the estimated dose (e⁻/px/frame)."""
        speed = np.hypot(*self.velocity().T)
        gated = [g for g in range(len(self.group_starts)) if self.compensated(g) is not None]
        moving = len(gated)
        travel = float(np.hypot(*(self.frames[-1] - self.frames[0]))) if self.n_frames else 0.0
        return {
            "speed_median_px": float(np.median(speed)) if speed.size else 0.0,
            "speed_max_px": float(speed.max()) if speed.size else 0.0,
            "travel_px": travel,
            "groups_compensated": int(moving),
            "groups_rigid_start": sum(self.rigid_start(g) for g in gated),
            "groups_start_open": sum(self.rigid_start_open(g) for g in gated),
            "groups": len(self.group_starts),
            "confidence_min": float(min(self.confidence)) if self.confidence else None,
            "dose": self._dose_json(),
            "roughness": self.roughness(),
            "non_rigidity": self.non_rigidity(),
        }

    # to_dict / from_dict come from ConfigDict; these hooks give the JSON form
    def _to_json(self, d: dict) -> dict:
        return {"frames": self.frames.tolist(), "group_starts": list(self.group_starts),
                "confidence": list(self.confidence),
                "dose": self._dose_json(), "local_spread": self.local_spread,
                "gradient": None if self.gradient is None else list(self.gradient),
                "residual_spread": self.residual_spread}

    def _dose_json(self) -> float | str | None:
        """:attr:`dose` as JSON holds it: "inf" for a noise-free movie."""
        return self.dose if self.dose is None or math.isfinite(self.dose) else "inf"

    @classmethod
    def _from_json(cls, d: dict) -> dict:
        return {"frames": np.asarray(d["frames"], np.float64).reshape(-1, 2),
                "group_starts": tuple(int(v) for v in d["group_starts"]),
                "confidence": tuple(float(v) for v in d.get("confidence", ())),
                "dose": None if d.get("dose") is None else float(d["dose"]),
                "local_spread": None if d.get("local_spread") is None else float(d["local_spread"]),
                "gradient": None if d.get("gradient") is None else _four(d["gradient"]),
                "residual_spread": None if d.get("residual_spread") is None else float(d["residual_spread"])}

    @classmethod
    def still(cls, group_sizes: Sequence[int], dose: float | None = None) -> MotionPath:
        """No motion."""
        starts = tuple(int(v) for v in np.cumsum([0, *group_sizes[:-1]]))
        return cls(np.zeros((int(sum(group_sizes)), 2)), starts, (), dose)


def _four(values) -> tuple[float, float, float, float]:
    """A stored :attr:`MotionPath.gradient`: four numbers."""
    v = [float(x) for x in values]
    if len(v) != 4:
        raise TcsValueError(f"a motion gradient has 4 values (dvy/dy, dvy/dx, dvx/dy, dvx/dx), got {len(v)}")
    return v[0], v[1], v[2], v[3]


#: pairs of groups whose low-passed means correlate less than this at the
#: registered shift (a cut, a blanked beam) move at the median velocity of
#: the others
MIN_CONFIDENCE = 0.15
#: the quarters' own motion (:attr:`MotionPath.local_spread`) is measured on
#: this many pairs of groups, evenly spaced, at most
RIGIDITY_PAIRS = 8
#: quarters smaller than this (px on a side, after binning) are not registered
MIN_QUARTER = 32
#: a pair whose velocity is further than this (px/frame) plus half the
#: consensus speed from the velocity most pairs agree on is an outlier
#: (given >= 3 pairs)
OUTLIER_VELOCITY = 1.0


def estimate_motion(group_mean: Callable[[int, tuple[int, int, int, int]], np.ndarray],
                    group_sizes: Sequence[int], shape: tuple[int, int], *,
                    max_side: int = MAX_SIDE, threads: int = 1,
                    measurement: Callable[[int, tuple[int, int, int, int]], tuple[np.ndarray, np.ndarray]]
                    | None = None) -> MotionPath:
    """Estimate a movie's global motion path from its groups' ``Y / sum C``.

    Parameters
    ----------
    group_mean : callable
        ``group_mean(g, (y0, y1, x0, x1))`` returns ``Y / sum C`` of group
        ``g`` over that window (NaN where unmeasured, all NaN for a group
        that cannot be read: its pairs count as unreliable), e.g.
        :meth:`tcscodec.TcsReader.group_mean`.
    group_sizes : sequence of int
        Frames in each group.
    shape : (H, W)
        Frame size.
    max_side : int, optional
        Registration window: a central window of the frame, binned by the
        smallest factor that makes it at most ``max_side`` pixels on a side
        after binning, and at most ``4 * max_side`` before.
    threads : int, optional
        Groups read and pairs registered at once (``group_mean`` is then
        called from several threads); the same path on any number.
    measurement : callable, optional
        ``measurement(g, (y0, y1, x0, x1))`` returns ``(Y, sum C)`` of group
        ``g`` over that window, or None for a group that cannot be read
        (damaged: left out); with it the path records the movie's
        :attr:`MotionPath.dose` (the median of :data:`DOSE_GROUPS` groups'
        :func:`~tcscodec.quantize.dose_estimate` over a central window of
        ``max_side`` pixels).

    Besides the path, the four quarters of the registration window are
    registered on their own for up to :data:`RIGIDITY_PAIRS` pairs, each
    searched near the whole window's shift, for
    :attr:`MotionPath.local_spread`, :attr:`~MotionPath.gradient` and
    :attr:`~MotionPath.residual_spread`.

    Returns
    -------
    MotionPath
        Still for a single group (no neighbour to register against).
    """
    sizes = [int(n) for n in group_sizes]
    if not sizes or min(sizes) < 1:
        raise TcsValueError(f"group sizes must be positive, got {sizes}")
    G = len(sizes)
    H, W = (int(v) for v in shape)
    dose = None if measurement is None else _movie_dose(measurement, G, (H, W), max_side)
    if G < 2:
        return MotionPath.still(sizes, dose)
    side = 4 * max_side
    wy, wx = min(H, side), min(W, side)
    y0, x0 = (H - wy) // 2, (W - wx) // 2
    window = (y0, y0 + wy, x0, x0 + wx)
    f = max(1, math.ceil(max(wy, wx) / max_side))

    starts = np.cumsum([0, *sizes[:-1]])
    centres = starts + (np.asarray(sizes) - 1) / 2.0
    gaps = np.diff(centres)
    steps: list[tuple[float, float]] = []
    confidence = []
    quarters: dict[int, _Quarters] = {}  # pair (g - 1, g) -> the quarters' own motion
    measured = set(np.linspace(1, G - 1, min(G - 1, RIGIDITY_PAIRS)).round().astype(int).tolist())

    def quartered(shape: tuple[int, ...]) -> bool:
        return min(shape) >= 2 * MIN_QUARTER

    def prepare(g: int) -> Spectra:
        spectra = Spectra(bin_mean(fill_invalid(group_mean(g, window)), f))
        # transformed here, before the two pairs that share them run (on
        # two threads they would both transform them)
        parts = [spectra]
        if (g in measured or g + 1 in measured) and quartered(spectra.shape):
            parts += spectra.parts(_quarter_bounds(spectra.shape))
        for p in parts:
            p.at(COARSE_SIGMA), p.at(FINE_SIGMA)
        return spectra

    def pair(g: int, previous: Spectra, current: Spectra):
        dy, dx, c = register_spectra(previous, current)
        local = None
        if g in measured and quartered(current.shape):
            local = _quarters(previous, current, (dy, dx), f, gaps[g - 1])
        return dy, dx, c, local

    for g, (dy, dx, c, local) in enumerate(_pairs_in_order(prepare, pair, G, threads), start=1):
        steps.append((dy * f, dx * f))
        confidence.append(c)
        if local is not None:
            quarters[g - 1] = local
    moves = np.asarray(steps, np.float64)
    good = np.asarray(confidence) >= MIN_CONFIDENCE
    velocity = moves / gaps[:, None]
    if good.sum() >= 3:
        # With enough pairs, those far from the velocity most of them agree
        # on registered a blank group or a scene change, not the drift.
        def agree(v):
            return good & (np.hypot(*(velocity - v).T) <= OUTLIER_VELOCITY + 0.5 * np.hypot(*v))
        support = [(int(agree(v).sum()), i) for i, v in enumerate(velocity) if good[i]]
        good = agree(velocity[max(support)[1]])
    if not good.all():
        # An unreliable pair moves at the median velocity of the reliable
        # ones, or not at all.
        v = np.median(velocity[good], axis=0) if good.any() else np.zeros(2)
        moves[~good] = v * gaps[~good, None]
    positions = np.concatenate([np.zeros((1, 2)), np.cumsum(moves, axis=0)])
    t = np.arange(sum(sizes), dtype=np.float64)
    path = np.empty((t.size, 2))
    for k in range(2):
        p = np.interp(t, centres, positions[:, k])
        # Extend the end segments' velocities beyond the first and last centre.
        v0 = (positions[1, k] - positions[0, k]) / gaps[0]
        v1 = (positions[-1, k] - positions[-2, k]) / gaps[-1]
        p = np.where(t < centres[0], positions[0, k] + v0 * (t - centres[0]), p)
        p = np.where(t > centres[-1], positions[-1, k] + v1 * (t - centres[-1]), p)
        path[:, k] = p
    path -= path[0]
    local = [quarters[i] for i in sorted(quarters) if good[i]]
    spread = gradient = residual = None
    if local:
        spread = float(np.median([q.spread for q in local]))
        gradient = _four(np.median([q.gradient for q in local], axis=0).ravel())
        residual = float(np.median([q.residual for q in local]))
    return MotionPath(path, tuple(int(s) for s in starts), tuple(float(c) for c in confidence), dose,
                      spread, gradient, residual)


@dataclass(frozen=True)
class _Quarters:
    """The four quarters' own motion between two groups (px/frame)."""

    spread: float  # largest distance of a quarter's velocity from their mean
    gradient: np.ndarray  # (2, 2) affine velocity field fitted to them
    residual: float  # largest distance of a quarter's velocity from that field


def _pairs_in_order(prepare: Callable[[int], Spectra], pair: Callable[[int, Spectra, Spectra], Any],
                    n_groups: int, threads: int) -> Iterator:
    """``pair(g, prepare(g - 1), prepare(g))`` for ``g = 1 .. n_groups - 1``,
    in order, with each group prepared once; on ``threads`` threads (numpy's
    transforms release the GIL), reading at most ``threads`` groups ahead
    and keeping at most ``threads`` pairs in flight, so memory stays bounded
    on long movies.  The same numbers on any number of threads."""
    if threads <= 1 or n_groups < 3:
        previous = prepare(0)
        for g in range(1, n_groups):
            current = prepare(g)
            yield pair(g, previous, current)
            previous = current
        return
    with ThreadPoolExecutor(threads) as pool:
        ahead: deque[Future] = deque(pool.submit(prepare, g) for g in range(min(threads, n_groups)))
        flying: deque[Future] = deque()
        previous = ahead.popleft().result()
        for g in range(1, n_groups):
            if g + threads - 1 < n_groups:
                ahead.append(pool.submit(prepare, g + threads - 1))
            current = ahead.popleft().result()
            flying.append(pool.submit(pair, g, previous, current))
            previous = current
            while len(flying) > threads:
                yield flying.popleft().result()
        while flying:
            yield flying.popleft().result()


def _quarter_bounds(shape: tuple[int, ...]) -> list[tuple[int, int, int, int]]:
    """The four quarters ``(y0, y1, x0, x1)`` of an image of ``shape``."""
    h, w = shape[0], shape[1]
    return [(a, b, c, e) for a, b in ((0, h // 2), (h // 2, h)) for c, e in ((0, w // 2), (w // 2, w))]


def _quarters(previous: Spectra, current: Spectra, shift: tuple[float, float], f: int,
              gap: float) -> _Quarters:
    """Register the four quarters of two binned group means on their own,
    each searched within 2 px plus half the whole window's ``shift`` of it
    (a quarter alone has fewer features to lock on, and local motion is a
    correction to the global one), and fit an affine field to their
    velocities (``f``: the binning, ``gap``: frames between the groups)."""
    h, w = previous.shape
    radius = 2.0 + 0.5 * math.hypot(*shift)
    bounds = _quarter_bounds((h, w))
    v = np.array([register_spectra(p, q, near=shift, radius=radius)[:2]
                  for p, q in zip(previous.parts(bounds), current.parts(bounds), strict=True)]) * f / gap
    # quarter centres about the window's (= the frame's) centre, in frame pixels
    r = np.array([((a + b) / 2 - h / 2, (c + e) / 2 - w / 2) for a, b, c, e in bounds]) * f
    design = np.column_stack([np.ones(4), r])
    coef = np.linalg.lstsq(design, v, rcond=None)[0]  # (3, 2): v0, then d v / d (y, x)
    return _Quarters(float(np.hypot(*(v - v.mean(0)).T).max()), coef[1:].T.copy(),
                     float(np.hypot(*(v - design @ coef).T).max()))


#: the movie's dose is the median of this many groups' estimates, evenly spaced
DOSE_GROUPS = 8


def _movie_dose(measurement, n_groups: int, shape: tuple[int, int], side: int) -> float | None:
    """Median :func:`dose_estimate` of a few groups over a central window
    (shot noise needs no more pixels; a blank or changed group is
    outvoted); None when none of them can be read."""
    H, W = shape
    wy, wx = min(H, side), min(W, side)
    window = ((H - wy) // 2, (H - wy) // 2 + wy, (W - wx) // 2, (W - wx) // 2 + wx)
    groups = np.unique(np.linspace(0, n_groups - 1, min(n_groups, DOSE_GROUPS)).round().astype(int))
    read = [m for m in (measurement(int(g), window) for g in groups) if m is not None]
    return float(np.median([dose_estimate(*m) for m in read])) if read else None
