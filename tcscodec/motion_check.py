"""The held-out check of a motion-compensated decode.

:meth:`~tcscodec.motion.MotionPath.compensated` decides from the path and
the dose whether a group should decode in the moving frame.  It cannot see
how well the decoder then does, and on some movies the compensated frames
are worse than the still ones (a smooth HAADF micrograph moving 2.5
px/frame: -3.4 dB at B = 10; bench/results/motion/check.md).  The decoded
frames can show it, against data they were not decoded from: the
measurements of the neighbouring groups.

Each decode of a group (still and compensated) is turned into one image of
the scene, its frames aligned by the path and averaged, and that image,
moved along the path to each frame of a neighbouring group and multiplied
by its masks, predicts that group's measurement.  The decode whose
prediction is nearer (mean squared error over the pixels every shift keeps
inside the field) is the better model of the scene; both are judged with
the same path and the same noisy data, so the path's errors and the shot
noise weigh on both alike.  :func:`prediction_score` is the ratio of the two
errors in dB, positive where the compensated decode predicts better.

A third candidate can join (:func:`check_group` with ``rigid``): the group
decoded as one image moved along the path (the ``rigid-tv`` decoder,
:mod:`tcscodec.decoders.rigid_tv`), for a specimen that only drifts.  It
wins only by :data:`RIGID_MARGIN` dB or more over the still decode and by
more than the compensated one (:func:`verdict`): near zero the score's sign
is not reliable (a particle movie where the rigid decode was 3.5 dB worse
than still scored +0.01 to +0.17 dB; a drifting HAADF micrograph where it
was 6 to 12 dB better scored +3.2 to +7.3).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from .errors import TcsFormatError

__all__ = ["shift_image", "aligned_mean", "predicted_measurement", "prediction_score", "check_group", "verdict",
           "check_window", "start_groups", "start_score", "CHECK_SIDE", "WHOLE_SIDE", "RIGID_MARGIN",
           "START_MARGIN", "START_CHECK_GROUPS", "START_CLEAR", "MODES"]

#: side of the central window over which :func:`check_group` decodes a
#: group in each way it compares: wide enough for a neighbour's frames to
#: stay in the field at 3 px/frame and B = 30 (the prediction moves the
#: scene up to 1.5 B frames' drift), small beside a detector frame
CHECK_SIDE = 512
#: frames no larger than this are checked whole: the tiles under a central
#: CHECK_SIDE window would be most of the frame anyway (768²: all 16 of
#: 256), and a whole-frame check's frames are the output
WHOLE_SIDE = 768
#: pixels kept beyond the largest shift at the borders of the compared area
EDGE = 2
#: a neighbour is left out when the compared area would be narrower than this
MIN_SIDE = 16
#: the rigid-scene decode wins only where it predicts the neighbours at least
#: this much better (dB) than the still decode (see the module's text)
RIGID_MARGIN = 1.0
#: groups longer than the path's rigid-start limit start rigid where their
#: rigid start predicts the neighbours at least this much better (dB, mean
#: over the groups compared) than their GAP-TV start.  Over 18 drifting
#: (movie, B) at B = 20 and 30 (bench/results/motion/start_check.md): where
#: the GAP-TV start gave the better frames the mean was at most +0.045, where
#: the rigid one did it was +0.16 to +9.4, and +0.09 on one movie where both
#: starts gained over still (0.36-0.51 dB from GAP-TV, 0.93-1.04 rigid): a
#: small margin that errs towards the GAP-TV start
START_MARGIN = 0.1
#: at most this many groups, spread over the movie, decide its long groups'
#: start: each costs one more decode of the check window
START_CHECK_GROUPS = 4
#: the start check stops after the first two groups where their mean score
#: is this far from START_MARGIN: on 18 drifting (movie, B) the remaining
#: groups changed no such decision (bench/results/motion/start_check.md)
START_CLEAR = 0.5
#: the ways a checked group can decode: as still, in the moving frame with
#: the reader's decoder, or as one rigid image moved along the path
MODES = ("still", "moving", "rigid")


def shift_image(image: np.ndarray, shift) -> np.ndarray:
    """``image`` with its content moved by ``shift`` ``(dy, dx)`` pixels
    (``out[r] = image[r - shift]``), bilinear between pixels and the
    border pixels extended outside the field."""
    h, w = image.shape
    out = np.asarray(image, np.float64)
    for axis, s, n in ((0, float(shift[0]), h), (1, float(shift[1]), w)):
        whole = math.floor(s)
        frac = s - whole
        src = np.clip(np.arange(n) - whole, 0, n - 1)
        prev = np.clip(np.arange(n) - whole - 1, 0, n - 1)
        a, b = np.take(out, src, axis=axis), np.take(out, prev, axis=axis)
        out = a if frac == 0 else (1 - frac) * a + frac * b
    return out


def aligned_mean(frames: np.ndarray, displacements: np.ndarray, reference) -> np.ndarray:
    """The scene as it sits at displacement ``reference``: each of the
    ``(n, h, w)`` frames moved by ``reference - displacements[b]`` and
    averaged."""
    ref = np.asarray(reference, np.float64)
    return np.mean([shift_image(f, ref - d) for f, d in zip(frames, displacements, strict=True)], axis=0)


def predicted_measurement(scene: np.ndarray, reference, displacements: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """``sum_b C_b * X_b`` of frames that show ``scene`` (which sits at
    displacement ``reference``) moved to ``displacements[b]``."""
    ref = np.asarray(reference, np.float64)
    y = np.zeros(scene.shape, np.float64)
    for c, d in zip(masks, displacements, strict=True):
        y += c * shift_image(scene, np.asarray(d, np.float64) - ref)
    return y


def prediction_score(still: np.ndarray, moving: np.ndarray, displacements: np.ndarray,
                     neighbours: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> float | None:
    """How much better the compensated decode of a group predicts its
    neighbours' measurements than the still decode, in dB.

    Parameters
    ----------
    still, moving : numpy.ndarray
        ``(n, h, w)``: the group decoded as still and in the moving frame.
    displacements : numpy.ndarray
        ``(n, 2)``: the path's displacement of each of the group's frames
        (:attr:`~tcscodec.motion.MotionPath.frames`).
    neighbours : iterable of (displacements, measurement, masks)
        For each neighbouring group: its frames' displacements ``(m, 2)``,
        its measurement ``(h, w)`` and its masks ``(m, h, w)``, over the
        same pixels as the decoded frames.

    Returns
    -------
    float or None
        ``10 log10(E_still / E_moving)``, the squared errors of the two
        predictions summed over the neighbours, each over the pixels that
        every shift of its prediction keeps inside the field; None when no
        neighbour leaves :data:`MIN_SIDE` pixels (the path moves too far
        within the field).
    """
    d = np.asarray(displacements, np.float64)
    reference = d[len(d) // 2]
    scenes = [aligned_mean(x, d, reference) for x in (still, moving)]
    errors = [0.0, 0.0]
    used = False
    for dn, y, masks in neighbours:
        dn = np.asarray(dn, np.float64)
        h, w = y.shape
        m = int(math.ceil(float(np.abs(dn - reference).max(initial=0.0)))) + EDGE
        if min(h, w) - 2 * m < MIN_SIDE:
            continue
        inner = np.s_[m:h - m, m:w - m]
        measured = np.asarray(y, np.float64)[inner]
        for k, scene in enumerate(scenes):
            e = measured - predicted_measurement(scene, reference, dn, masks)[inner]
            errors[k] += float(np.mean(e * e))
        used = True
    if not used or errors[1] <= 0:
        return None
    return 10 * math.log10(max(errors[0], 1e-300) / errors[1])


def check_group(reader, group: int, decode, rigid: bool = False
                ) -> tuple[dict[str, float | None], dict[str, np.ndarray], bool]:
    """The check of ``group`` of ``reader`` (a :class:`~tcscodec.TcsReader`
    whose :meth:`~tcscodec.TcsReader.motion` path selects it).

    ``decode(window, mode)`` decodes the group over ``window`` ``(y0, y1,
    x0, x1)`` in one of :data:`MODES`: ``"still"``, ``"moving"`` and, with
    ``rigid``, ``"rigid"``.  The window is the frame's central
    :data:`CHECK_SIDE` x :data:`CHECK_SIDE` pixels, or the whole frame
    where no side exceeds :data:`WHOLE_SIDE`; a damaged neighbour is left
    out.
    Returns ``(scores, frames, whole)``: the :func:`prediction_score` of
    each mode but ``"still"`` against the still decode, the decodes by
    mode, and whether the window is the whole frame.
    """
    window = check_window(reader)
    frames = {mode: decode(window, mode) for mode in MODES[:3 if rigid else 2]}
    d, neighbours = _neighbours(reader, group, window)
    scores = {mode: prediction_score(frames["still"], x, d, neighbours)
              for mode, x in frames.items() if mode != "still"}
    y0, y1, x0, x1 = window
    return scores, frames, (y1 - y0, x1 - x0) == (reader.header.height, reader.header.width)


def check_window(reader) -> tuple[int, int, int, int]:
    """The window ``(y0, y1, x0, x1)`` a check decodes: the frame's central
    :data:`CHECK_SIDE` x :data:`CHECK_SIDE` pixels, or the whole frame
    where no side exceeds :data:`WHOLE_SIDE`."""
    H, W = reader.header.height, reader.header.width
    side = max(H, W) if max(H, W) <= WHOLE_SIDE else CHECK_SIDE
    hc, wc = min(H, side), min(W, side)
    y0, x0 = (H - hc) // 2, (W - wc) // 2
    return y0, y0 + hc, x0, x0 + wc


def _neighbours(reader, group: int, window) -> tuple[np.ndarray, list]:
    """``(displacements, neighbours)`` of ``group`` for
    :func:`prediction_score`: its frames' displacements and, for each
    neighbouring group that reads without damage, its displacements,
    measurement and masks over ``window``."""
    path = reader.motion()
    starts = [reader.group_start(g) for g in range(reader.n_groups)] + [reader.n_frames]
    neighbours = []
    for h in (group - 1, group + 1):
        if 0 <= h < reader.n_groups:
            try:
                y = reader.measurements(h, window)
            except TcsFormatError:
                continue
            neighbours.append((path.frames[starts[h]:starts[h + 1]], y, reader.masks(h, window)))
    return path.frames[starts[group]:starts[group + 1]], neighbours


def start_groups(candidates: list[int]) -> list[int]:
    """The groups, of ``candidates`` (in order), whose two starts
    :func:`start_score` compares: at most :data:`START_CHECK_GROUPS`,
    spread evenly from the first to the last, in the order they are
    compared: the first and the last, then those between."""
    if len(candidates) > START_CHECK_GROUPS:
        at = np.linspace(0, len(candidates) - 1, START_CHECK_GROUPS).round().astype(int)
        candidates = [candidates[i] for i in at]
    return candidates[:1] + candidates[-1:] + candidates[1:-1] if len(candidates) > 2 else list(candidates)


def start_score(reader, groups: Iterable[int], decode) -> float | None:
    """How much better the learned decoder's rigid start (the group as one
    image moved along the path) predicts the neighbouring groups'
    measurements than its GAP-TV start, in dB, averaged over ``groups``
    (:func:`start_groups`); None where no group can be scored.

    ``decode(group, window, rigid_start)`` decodes ``group`` in the moving
    frame over ``window`` (:func:`check_window`) from the rigid start or
    not.  No still decode is needed: :func:`prediction_score` of the GAP-TV
    decode against the rigid one is the difference of their scores against
    it.  The reader starts every group the path leaves open
    (:meth:`~tcscodec.motion.MotionPath.rigid_start_open`) rigid where this
    is at least :data:`START_MARGIN`.  Two scores at least
    :data:`START_CLEAR` from that margin on average end the check.
    """
    window = check_window(reader)
    scores: list[float] = []
    for g in groups:
        if len(scores) >= 2 and abs(np.mean(scores) - START_MARGIN) >= START_CLEAR:
            break
        d, neighbours = _neighbours(reader, g, window)
        score = prediction_score(decode(g, window, False), decode(g, window, True), d, neighbours)
        if score is not None:
            scores.append(score)
    return float(np.mean(scores)) if scores else None


def verdict(scores: dict[str, float | None]) -> str:
    """How a checked group decodes, from :func:`check_group`'s scores: as
    one rigid image where its score is at least :data:`RIGID_MARGIN` and
    above the compensated decode's, else in the moving frame where that
    scores above 0 or cannot be scored (no neighbour to compare: the gate
    decides), else as still."""
    moving, rigid = scores.get("moving"), scores.get("rigid")
    if rigid is not None and rigid >= RIGID_MARGIN and (moving is None or rigid > moving):
        return "rigid"
    return "moving" if moving is None or moving > 0 else "still"
