"""The equal-bytes search: a codec's knob turned until its bytes meet a budget.

For each codec and B, :func:`tcscodec.evaluation.evaluate` compares the
``.tcs`` file with the codec **at equal real bytes**: the knob is searched
so that the whole movie's compressed bytes (every byte of every file or
stream, headers included) come as close as possible to the ``.tcs`` file's
bytes without exceeding them (within a relative tolerance when the knob
allows); the achieved byte ratio is reported.  :class:`ByteSearch` does one
codec on one movie, caching every setting it encoded so the budgets of
several B share encodes; :func:`encode_at_bytes` is the one-shot form.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TcsRuntimeError
from .codecs import CODECS, ConventionalCodec, SampleMapping, codec_unavailable

__all__ = ["CodecOutput", "ByteSearch", "encode_at_bytes"]


@dataclass(frozen=True)
class CodecOutput:
    """A codec's best setting for a byte budget and its decoded movie."""

    codec: str
    knob: float
    nbytes: int
    target: int
    decoded: np.ndarray = field(repr=False)
    settings: str
    evaluations: int
    seconds: float
    note: str = ""


class ByteSearch:
    """Equal-bytes search of one codec on one movie; evaluated settings are
    cached, so the searches for several budgets (B) share their encodes.

    ``tmp`` is a folder for the encoders' files, ``bit_depth`` forces the
    sample depth (see :meth:`ConventionalCodec.depth_for`), ``threads`` is each
    encode's thread count.
    """

    def __init__(self, codec: ConventionalCodec, frames: np.ndarray, tmp: Path, bit_depth: int | None = None, *,
                 threads: int = 1):
        self.codec = codec
        self.threads = max(1, int(threads or 1))
        self.depth = codec.depth_for(frames, bit_depth)
        self.mapping = SampleMapping.for_movie(frames, self.depth)
        self.codes = self.mapping.encode(frames)
        self.shape = frames.shape
        self.tmp = tmp
        self.points: dict[float, tuple[int, Any]] = {}
        self.seconds = 0.0

    def _u(self, knob):  # search coordinate in which bytes increase
        return knob if self.codec.increasing else -knob

    def _knob(self, u):
        k = u if self.codec.increasing else -u
        k = min(max(k, self.codec.lo), self.codec.hi)
        return float(round(k)) if self.codec.integer else float(k)

    def size(self, knob: float) -> int:
        if knob not in self.points:
            t0 = time.perf_counter()
            self.points[knob] = self.codec.encode(self.codes, self.depth, knob, self.tmp, threads=self.threads)
            self.seconds += time.perf_counter() - t0
        return self.points[knob][0]

    def find(self, target: int, *, max_evals: int = 10, rtol: float = 0.01) -> tuple[float, str, int]:
        """The setting with the most bytes not above ``target``.

        Returns ``(knob, note, new encodes)``.  First brackets the target,
        stepping from the cached setting nearest to it (or the codec's
        typical setting) with doubling steps; then regula falsi on
        log(bytes) (Illinois variant, with a bisection step whenever a step
        did not halve the bracket).  Stops within ``rtol`` below the target,
        when the bracket cannot shrink, or after ``max_evals`` new encodes.
        When even the smallest setting exceeds the target, returns it with a
        note (the row then shows its byte ratio above 1).
        """
        c = self.codec
        n0 = len(self.points)
        ulo, uhi = sorted((self._u(c.lo), self._u(c.hi)))

        def new() -> int:
            return len(self.points) - n0

        def below() -> list[float]:
            return [k for k, (n, _) in self.points.items() if n <= target]

        def above() -> list[float]:
            return [k for k, (n, _) in self.points.items() if n > target]

        # -- bracket the target ------------------------------------------------------------------
        start, step, informed = c.guess(target, self.shape)
        if self.points and not informed:
            k = min(self.points, key=lambda k: abs(math.log(max(self.points[k][0], 1) / target)))
        else:
            k = self._knob(self._u(start))
            self.size(k)
        while not (below() and above()) and new() < max_evals:
            u = self._u(k) + (-step if self.points[k][0] > target else step)
            k_next = self._knob(min(max(u, ulo), uhi))
            if k_next == k:  # at the end of the knob's range
                break
            k = k_next
            self.size(k)
            step *= 2
        if not below():
            k = min(self.points, key=lambda k: self.points[k][0])
            return k, f"smallest setting tried gives {self.points[k][0] / target:.2f}x the target bytes", new()

        # -- shrink the bracket -------------------------------------------------------------------
        lo = max(below(), key=self._u)
        ups = [k for k in above() if self._u(k) > self._u(lo)]
        if ups:
            hi = min(ups, key=self._u)
            flo, fhi = (math.log(max(self.points[k][0], 1) / target) for k in (lo, hi))
            side, bisect = 0, False
            while new() < max_evals:
                if max(self.points[k][0] for k in below()) >= target * (1 - rtol):
                    break
                ua, ub = self._u(lo), self._u(hi)
                if abs(ub - ua) <= 1e-4 * max(abs(ua), abs(ub)):  # the knob cannot resolve more
                    break
                # Regula falsi on log(bytes); Illinois: halve the stale end's
                # residual so one end cannot stall; Dekker-like safeguard: a
                # step that did not halve the bracket is followed by bisection.
                a = 0.5 if bisect or fhi == flo else min(max(flo / (flo - fhi), 0.02), 0.98)
                k = self._knob(ua + a * (ub - ua))
                if not ua < self._u(k) < ub:  # integer knob: step inside the bracket, or stop
                    k = self._knob(ua + 1)
                    if not ua < self._u(k) < ub:
                        break
                if k in self.points:
                    break
                n = self.size(k)
                f = math.log(max(n, 1) / target)
                width = ub - ua
                if n <= target:
                    lo, flo = k, f
                    if side == -1:
                        fhi /= 2
                    side = -1
                else:
                    hi, fhi = k, f
                    if side == 1:
                        flo /= 2
                    side = 1
                bisect = not bisect and self._u(hi) - self._u(lo) > 0.5 * width
        best = max(below(), key=lambda k: self.points[k][0])
        note = ""
        if not above() and self._knob(uhi) in self.points:
            note = "the best setting stays below the target bytes"
        return best, note, new()

    def output(self, target: int, **kw) -> CodecOutput:
        t0, s0 = time.perf_counter(), self.seconds
        knob, note, evals = self.find(target, **kw)
        nbytes, payload = self.points[knob]
        dec = self.mapping.decode(self.codec.decode(payload, self.shape, self.depth, self.tmp))
        return CodecOutput(self.codec.name, knob, nbytes, target, dec,
                           f"{self.codec.settings(knob)}, {self.mapping.describe()}", evals,
                           self.seconds - s0 + (time.perf_counter() - t0), note)


def encode_at_bytes(codec: str, frames, target_bytes: int, *, bit_depth: int | None = None,
                    max_evals: int = 10, rtol: float = 0.01, threads: int = 1) -> CodecOutput:
    """Compress ``frames`` (T x H x W) with ``codec`` using as close to
    ``target_bytes`` bytes as the knob search finds without exceeding them,
    and decode the result (in the frames' units).  At most ``max_evals``
    encodes; stops within ``rtol`` below the target; ``threads`` encoder
    threads.  See :class:`ByteSearch`."""
    why = codec_unavailable(codec)
    if why:
        raise TcsRuntimeError(f"{codec}: {why}")
    frames = np.asarray(frames)
    with tempfile.TemporaryDirectory(prefix="tcs-eval-") as tmp:
        s = ByteSearch(CODECS[codec], frames, Path(tmp), bit_depth, threads=threads)
        return s.output(int(target_bytes), max_evals=max_evals, rtol=rtol)
