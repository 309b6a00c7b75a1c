"""How a :class:`~tcscodec.TcsReader` decodes in the moving frame: the
motion path it estimates once, the groups the gate selects (per tile, on
frames of several tiles) and the held-out check of those groups
(:mod:`tcscodec.motion_check`).  A mixin of the reader, apart so that the
reader stays readable in one sitting."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import TcsFormatError
from .motion import MIN_GROUPS, MotionPath, estimate_motion
from .motion_check import START_MARGIN, check_group, check_window, start_groups, start_score, verdict

__all__ = ["MotionDecoding", "decode_key"]

#: the decoder a checked group decodes with where the scene moves as one
#: rigid image (:func:`tcscodec.motion_check.verdict`)
RIGID_DECODER = "rigid-tv"
#: the start check keeps a compared group's whole-frame decode for reuse
#: only up to this size (it holds both starts' until it decides: 8 at most)
KEEP_BYTES = 32 << 20


class MotionDecoding:
    """The motion methods of :class:`~tcscodec.TcsReader` (which provides
    the attributes below)."""

    header: Any
    decoder: Any
    decode_options: dict
    _motion: MotionPath | None
    #: held-out checks of compensated groups: key -> (scores in dB by mode, verdict)
    _checks: dict[tuple, tuple[dict, str]]
    #: whether the groups the path leaves open start rigid: key -> decision
    _starts: dict[tuple, bool]
    #: whole-frame decodes the start check made: (group, *key) -> (rigid_start, frames)
    _start_frames: dict[tuple, tuple[bool, np.ndarray]]

    if TYPE_CHECKING:  # what the reader defines
        @property
        def n_groups(self) -> int: ...

        def group_frames(self, group: int) -> int: ...

        def group_mean(self, group: int, region=None) -> np.ndarray: ...

        def _measurement_and_sum(self, group: int, region=None) -> tuple[np.ndarray, np.ndarray]: ...

        def _group_index(self, group) -> int: ...

        def decode_group(self, group: int, **options) -> np.ndarray: ...

        def _decode_tiled(self, group: int, region, name, device, out, progress, shifts, gradient,
                          opts: dict, rigid_start: bool | None = None) -> np.ndarray: ...

    def _compensates(self, options: dict, decoder=None) -> bool:
        """Whether decoding with ``options`` (``motion``, on by default)
        and ``decoder`` asks :meth:`motion` which groups to compensate: a
        decoder that can (``uses_motion``) on a file of at least
        :data:`~tcscodec.motion.MIN_GROUPS` groups, as fewer cannot show
        how smooth the drift is and always decode as still."""
        from .decoders import Decoder, decoder_class, default_decoder

        if not options.get("motion", True) or self.n_groups < MIN_GROUPS:
            return False
        name = decoder or self.decoder or default_decoder()
        return bool((name if isinstance(name, Decoder) else decoder_class(name)).uses_motion)

    def motion(self, threads: int | None = None) -> MotionPath:
        """The movie's global motion, estimated from the measurements
        (:func:`tcscodec.motion.estimate_motion`): registration of
        consecutive groups' :meth:`group_mean` over a central window of at
        most 2048 x 2048 pixels, and the dose that the shot noise of a few
        groups implies.  Computed once per reader (it reads that window of
        every group); a file of one group is still.  Decoders that
        compensate motion use it (``motion=True``, the default), on the
        groups :meth:`MotionPath.compensated` selects.  Its cost is mostly
        the registrations, over at most 512 x 512 binned pixels whatever
        the frame size, on ``threads`` threads (default: 2; the same path
        on any number).  Measured on 10 groups of 2048 x 2048: 6.4 s and a
        peak of 205 MiB on one thread, 3.7-4.2 s and 354 MiB on two, 565
        MiB on four."""
        if self._motion is None:
            # A damaged group is left out of the estimate (its pairs take
            # the others' velocity), so that damage in one group never
            # stops the others from decoding; decoding it still raises.
            def mean(g, window):
                try:
                    return self.group_mean(g, window)
                except TcsFormatError:
                    y0, y1, x0, x1 = window
                    return np.full((y1 - y0, x1 - x0), np.nan, np.float32)

            def measurement(g, window):
                try:
                    return self._measurement_and_sum(g, window)
                except TcsFormatError:
                    return None

            sizes = [self.group_frames(g) for g in range(self.n_groups)]
            n = min(2, os.cpu_count() or 1) if threads is None else max(1, int(threads))
            self._motion = estimate_motion(mean, sizes, (self.header.height, self.header.width),
                                           measurement=measurement, threads=n)
        return self._motion

    def motion_check(self, group: int, *, decoder=None, device=None, **options) -> float | None:
        """The held-out check of decoding ``group`` in the moving frame
        (:func:`tcscodec.motion_check.prediction_score`), in dB: how much
        better its compensated frames predict the neighbouring groups'
        measurements than its still frames; positive where compensation
        pays.  None where :meth:`~tcscodec.motion.MotionPath.compensated`
        does not select the group (it decodes as still), or where the path
        moves too far for any neighbour to be compared.

        With ``motion_check=True``, :meth:`decode_group` decodes a selected
        group as :meth:`motion_verdict` says: in the moving frame only where
        this is positive or None, unless one rigid image moved along the
        path predicts better still.  The check decodes the group still,
        compensated and (with any decoder but ``rigid-tv``) as one rigid
        image, over a central window
        :data:`~tcscodec.motion_check.CHECK_SIDE` pixels on a side, or
        over the whole frame where no side exceeds
        :data:`~tcscodec.motion_check.WHOLE_SIDE` (and then the frames of
        the verdict are those :meth:`decode_group` returns), once per
        reader, decoder and options: :meth:`to_dask` tasks check a group
        once in each thread that decodes part of it.  ``decoder``,
        ``device`` and ``options`` as for :meth:`decode_group`.
        """
        checked = self._checked(group, decoder, device, options)
        return None if checked is None else checked[0].get("moving")

    def motion_verdict(self, group: int, *, decoder=None, device=None, **options) -> str | None:
        """How ``group`` decodes with ``motion_check=True``: ``"still"``,
        ``"moving"`` (in the moving frame, with the decoder) or ``"rigid"``
        (as one image moved along the path, by the ``rigid-tv`` decoder:
        where that predicts the neighbours :data:`~tcscodec.motion_check.RIGID_MARGIN`
        dB better than the still decode and better than the compensated
        one; :func:`tcscodec.motion_check.verdict`).  None where the gate
        does not select the group (it decodes as still).  Arguments and
        cost as for :meth:`motion_check`, whose check this shares."""
        checked = self._checked(group, decoder, device, options)
        return None if checked is None else checked[1]

    def _checked(self, group: int, decoder, device, options: dict) -> tuple[dict, str] | None:
        """``(scores, verdict)`` of the check of ``group``, or None where
        the gate does not select it."""
        group = self._group_index(group)
        name, motion, _, opts = self._decode_setup(decoder, options)
        moving = self._group_shifts(group, name, motion, opts)
        if moving[0] is None:
            return None
        return self._check(group, name, device, opts, moving)[0]

    def _decode_setup(self, decoder, options: dict) -> tuple[Any, bool, bool, dict]:
        """``(decoder name, motion, motion_check, opts)`` of a decode with
        ``decoder`` and ``options`` over the reader's own: ``opts`` what the
        decoder and the tiling get (and what keys :meth:`_check`'s cache, so
        :meth:`decode_group` and :meth:`motion_check` must share it)."""
        from .decoders import default_decoder

        opts = {**self.decode_options, **options}
        opts.pop("skip_damaged", None)
        motion = opts.pop("motion", True)
        check = opts.pop("motion_check", False)
        return decoder or self.decoder or default_decoder(), motion, check, opts

    def _group_shifts(self, group: int, name, motion: bool, opts: dict):
        """``(shifts, gradient)`` the gate gives ``group`` (both None where
        it decodes as still) for decoder ``name`` with ``opts``."""
        if not self._compensates({"motion": motion}, name):
            return None, None
        # A tile aligned by its own translation (the path's shift plus its
        # gradient at the tile's centre) is judged over a tile's extent.
        from .decoders.tiling import TilingOptions

        H, W = self.header.height, self.header.width
        path = self.motion()
        tile = TilingOptions.take(opts.get("tiling"), {k: opts[k] for k in ("tile",) if k in opts}).tile
        shifts = path.compensated(group, extent=None if max(H, W) <= int(tile) else int(tile))
        return shifts, None if shifts is None else path.group_shift_gradient(group)

    def _check(self, group: int, name, device, opts: dict, moving) -> tuple[tuple[dict, str], np.ndarray | None]:
        """``((scores, verdict), frames)`` of the held-out check of ``group``
        (:meth:`motion_check`), whose gated ``(shifts, gradient)`` are
        ``moving``, run once per decoder and options; ``frames`` are the
        whole frame's decoded frames of the verdict when this call ran the
        check on the whole frame, else None."""
        key = (group, *decode_key(name, device, opts))
        if key in self._checks:
            return self._checks[key], None

        def decode(window, mode):
            if mode == "rigid":
                return self._decode_rigid(group, window, device, opts, moving)
            shifts, gradient = moving if mode == "moving" else (None, None)
            return self._decode_tiled(group, window, name, device, None, None, shifts, gradient, opts)

        rigid = getattr(name, "name", name) != RIGID_DECODER
        scores, frames, whole = check_group(self, group, decode, rigid=rigid)
        result = self._checks[key] = (scores, verdict(scores))
        return result, (frames[result[1]] if whole else None)

    def _rigid_start(self, group: int, name, device, opts: dict) -> bool:
        """Whether ``group``, decoded in the moving frame by decoder
        ``name`` with ``opts``, starts from the rigid-scene solution: where
        the path says so (:meth:`~tcscodec.motion.MotionPath.rigid_start`),
        or where it leaves the start open
        (:meth:`~tcscodec.motion.MotionPath.rigid_start_open`) and the rigid
        start of a few such groups predicts their neighbours' measurements
        better than the GAP-TV start (:func:`tcscodec.motion_check.start_score`,
        decided once per decoder and options for the whole movie)."""
        from .decoders import Decoder, decoder_class

        if not (name if isinstance(name, Decoder) else decoder_class(name)).takes_rigid_start:
            return False  # (GAP-TV, rigid-tv: one way to start, nothing to decide)
        path = self.motion()
        if path.rigid_start(group):
            return True
        if not path.rigid_start_open(group):
            return False
        key = decode_key(name, device, opts)
        if key not in self._starts:
            self._starts[key] = self._start_check(name, device, opts)
        return self._starts[key]

    def _start_decisions(self, options: dict | None = None) -> dict[tuple, bool]:
        """:meth:`_rigid_start`'s decisions for decoding with ``options``
        (as :meth:`decode_group` takes them), made here where the movie
        leaves any group's start open, so that tasks on other threads or
        processes get them with the reader's state instead of each
        decoding the compared groups again."""
        options = dict(options or {})
        device = options.pop("device", None)
        name, motion, _, opts = self._decode_setup(options.pop("decoder", None), options)
        opts = dict(opts)
        if opts.pop("rigid_start", True) and self._compensates({"motion": motion}, name):
            first = next(iter(self._open_groups(name, opts)), None)
            if first is not None and decode_key(name, device, opts) not in self._starts:
                self._rigid_start(first, name, device, opts)
                # the decision goes to the readers that decode; the frames
                # the check kept for this one would be held unused
                self._start_frames.clear()
        return dict(self._starts)

    def _open_groups(self, name, opts: dict) -> dict[int, tuple]:
        """The gated ``(shifts, gradient)`` of each group whose start the
        path leaves open, by group."""
        path = self.motion()
        groups = (g for g in range(self.n_groups) if path.rigid_start_open(g))
        return {g: shifts for g in groups if (shifts := self._group_shifts(g, name, True, opts))[0] is not None}

    def _start_check(self, name, device, opts: dict) -> bool:
        """:meth:`_rigid_start`'s decision for the groups the path leaves
        open.  Where the check window is the whole frame, the compared
        groups' decodes from the chosen start are kept for the decode that
        asks for them next (each at most :data:`KEEP_BYTES`)."""
        moving = self._open_groups(name, opts)
        whole = check_window(self) == (0, self.header.height, 0, self.header.width)
        decoded: dict[tuple[int, bool], np.ndarray] = {}

        def decode(g, window, rigid):
            frames = self._decode_tiled(g, window, name, device, None, None, *moving[g], opts, rigid_start=rigid)
            if whole and frames.nbytes <= KEEP_BYTES:
                decoded[g, rigid] = frames
            return frames

        score = start_score(self, start_groups(list(moving)), decode)
        rigid = score is not None and score >= START_MARGIN
        key = decode_key(name, device, opts)
        for (g, start), frames in decoded.items():
            if start == rigid:
                self._start_frames[(g,) + key] = (rigid, frames)
        return rigid

    def _decode_rigid(self, group: int, region, device, opts: dict, moving, out=None, progress=None) -> np.ndarray:
        """``group`` decoded by the rigid-scene decoder along its gated
        ``(shifts, gradient)`` ``moving``, with the tiling options of
        ``opts`` only (the reader's decoder's own options are not the rigid
        decoder's)."""
        from .decoders.tiling import TilingOptions

        tiling = TilingOptions.take(opts.get("tiling"), {k: v for k, v in opts.items() if k != "tiling"})
        shifts, gradient = moving
        return self._decode_tiled(group, region, RIGID_DECODER, device, out, progress, shifts, gradient,
                                  {"tiling": tiling})


def decode_key(name, device, opts: dict) -> tuple:
    """A decode's decoder, device and options as a key of the reader's caches."""
    return (name if isinstance(name, str) else id(name), device, tuple(sorted((k, repr(v)) for k, v in opts.items())))
