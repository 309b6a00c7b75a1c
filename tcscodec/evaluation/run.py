"""The evaluation run: a movie through ``.tcs`` files and the codecs, scored row by row.

:func:`evaluate` encodes a movie into a ``.tcs`` file for each B and
measures, against the clean movie when one is given (else against the raw
frames), one :class:`EvalRow` per method:

* every available decoder of the ``.tcs`` file (run through
  :meth:`tcscodec.TcsReader.decode_group`, as users run them);
* ``Y/sum(C)`` (:data:`NAIVE`, :func:`naive_decode`): each group's
  ``Y / sum_b C_b`` repeated for the group's frames;
* ``oracle-static`` (:data:`ORACLE`, clean movie only): the mean of the
  clean frames of each group, the best any decoder that returns one static
  image per group could do;
* ``raw`` and ``raw+tv`` (clean movie only, once per movie): the
  uncompressed noisy frames, as decoded and TV-filtered;
* the conventional codecs of :mod:`.codecs` at equal real bytes
  (:mod:`.search`), each as decoded and followed by the oracle-tuned TV of
  :mod:`.tv`; the same TV after each decoder too (``<decoder>+tv``).
"""

from __future__ import annotations

import contextlib
import math
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TcsValueError
from ..format.config import ConfigDict
from ..grouping import AutoGroupsConfig
from .codecs import CODECS, DEFAULT_CODECS, codec_unavailable
from .metrics import psnr, psnr_per_frame, ssim
from .search import ByteSearch
from .tv import torch_threads, tune_tv

__all__ = ["EvalRow", "evaluate", "naive_decode", "reference_movie", "grouping", "B_order", "curve_name",
           "AUTO", "AUTO_CURVE", "DEFAULT_DECODERS", "NAIVE", "ORACLE", "STILL_SUFFIX", "MOTION_SUFFIX"]

#: the decoders :func:`evaluate` runs by default
DEFAULT_DECODERS = ("tcs-unfold", "gap-tv")
#: the naive decoder's row: each group's ``Y / sum_b C_b``
NAIVE = "Y/sum(C)"
#: the static oracle's row: the mean of each group's clean frames
ORACLE = "oracle-static"


@dataclass(frozen=True)
class EvalRow(ConfigDict):
    """One method on one movie at one B.

    ``kind``: ``"decoder"`` (a decoder of the ``.tcs`` file; ``"decoder+tv"``
    followed by the oracle-tuned TV), ``"naive"``
    (``Y/sum(C)``), ``"oracle"`` (static oracle), ``"reference"`` (raw
    frames), ``"codec"`` / ``"codec+tv"`` (conventional codec as decoded /
    TV-filtered).  ``nbytes``: bytes this method stores (the ``.tcs`` file
    for decoders; ``None`` for oracles); ``tcs_bytes``: the ``.tcs`` file at
    this B (the budget).  ``psnr``/``ssim`` are NaN and ``skipped`` is True
    for methods that could not run (``note`` says why).  ``gain``: the factor
    the clean movie was multiplied by to make the reference (1 when not
    fitted, or against the raw frames; see :func:`reference_movie`), so a
    figure can show the clean movie in the reference's units.  ``example``
    (not serialised) is frame ``example_index`` of the result, for figures.
    """

    movie: str
    B: int | str
    method: str
    kind: str
    reference: str
    psnr: float
    ssim: float
    nbytes: int | None
    tcs_bytes: int
    raw_bytes: int
    psnr_frames: tuple = ()
    settings: str = ""
    tv_weight: float | None = None
    seconds: float = 0.0
    note: str = ""
    skipped: bool = False
    gain: float = 1.0
    example_index: int | None = field(default=None, compare=False)
    example: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def ratio(self) -> float | None:
        """Real compression ratio: raw bytes / stored bytes."""
        return self.raw_bytes / self.nbytes if self.nbytes else None

    @property
    def bytes_vs_tcs(self) -> float | None:
        """Stored bytes / the ``.tcs`` file's bytes (1.0 = equal bytes; None
        for the uncompressed reference rows)."""
        if self.kind == "reference" or not (self.nbytes and self.tcs_bytes):
            return None
        return self.nbytes / self.tcs_bytes

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN/inf become None; adds ratio and bytes_vs_tcs)."""

        def clean(v):
            if isinstance(v, float) and not math.isfinite(v):
                return None
            return v

        d = {k: clean(getattr(self, k)) for k in (
            "movie", "B", "method", "kind", "reference", "psnr", "ssim", "nbytes", "tcs_bytes", "raw_bytes",
            "settings", "tv_weight", "seconds", "note", "skipped", "gain", "example_index")}
        d["ratio"] = self.ratio
        d["bytes_vs_tcs"] = self.bytes_vs_tcs
        d["psnr_frames"] = [clean(float(v)) for v in self.psnr_frames]
        return d

    #: computed from the fields by to_dict; from_dict skips them
    DERIVED_KEYS = ("ratio", "bytes_vs_tcs")

    @classmethod
    def _from_json(cls, d: dict[str, Any]) -> dict[str, Any]:
        """:meth:`from_dict` (from ConfigDict) is the inverse of :meth:`to_dict`:
        None is NaN again, and ``example`` is never read back."""
        d.pop("example", None)
        for f in ("psnr", "ssim"):
            d[f] = float("nan") if d.get(f) is None else float(d[f])
        d["psnr_frames"] = tuple(float("nan") if v is None else float(v) for v in d.get("psnr_frames", ()))
        return d


def _decoder_unavailable(name: str, device: str, options: dict) -> str | None:
    """None when decoder ``name`` can be built with ``options`` on
    ``device``, else why not (the row is then skipped, not the run)."""
    from ..decoders.base import available_decoders, get_decoder

    try:
        if name not in available_decoders():
            return f"decoder {name!r} is not available (registered: {', '.join(available_decoders()) or 'none'})"
        get_decoder(name, device=device, **options)
    except Exception as exc:  # missing weights, bad options: skip with the reason
        return f"decoder {name!r} cannot be built: {exc}"
    return None


#: a decoder name with this suffix (``"tcs-unfold/still"``) is that decoder
#: with motion compensation off (``motion=False``), for comparison
STILL_SUFFIX = "/still"
#: a decoder name with this suffix (``"tcs-unfold/motion"``) is that decoder
#: with motion compensation on (``motion=True``: the groups
#: :meth:`~tcscodec.motion.MotionPath.compensated` selects, as ``--motion auto``)
MOTION_SUFFIX = "/motion"


def _decode_file(path: Path, name: str, device: str, options: dict) -> np.ndarray:
    """Decode every group of a ``.tcs`` file with decoder ``name``, through
    :meth:`TcsReader.decode_group` (the tiling engine), as users decode."""
    from ..reader import TcsReader

    with TcsReader(path, device=device) as r:
        T, H, W = r.shape
        out = np.empty((T, H, W), np.float32)
        for g in range(r.n_groups):
            t0 = r.group_start(g)
            out[t0:t0 + r.group_frames(g)] = r.decode_group(g, decoder=name, device=device, **options)
    return out


def naive_decode(path) -> np.ndarray:
    """``Y / sum_b C_b`` of each group (0 where no frame measured a pixel),
    repeated for the group's frames."""
    from ..reader import TcsReader

    with TcsReader(path) as r:
        T, H, W = r.shape
        out = np.empty((T, H, W), np.float32)
        for g in range(r.n_groups):
            t0 = r.group_start(g)
            out[t0:t0 + r.group_frames(g)] = np.nan_to_num(r.group_mean(g), nan=0.0)[None]
    return out


def _static_oracle(clean: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """The mean of each group's clean frames (``sizes``: the groups'
    lengths), repeated for the group."""
    out = np.empty(clean.shape, np.float32)
    for i, n in zip(np.cumsum([0, *sizes[:-1]]), sizes, strict=True):
        out[i:i + n] = clean[i:i + n].mean(0, dtype=np.float64)[None]
    return out


#: an entry of ``B_list`` that writes ``-B auto`` files: "auto", or
#: "auto:T" for the quality knob ``auto_tolerance=T``
AUTO = "auto"


def grouping(B) -> tuple[int | str, dict]:
    """An entry of :func:`evaluate`'s ``B_list`` as ``(label, keywords of
    tcscodec.write)``: an integer B is itself (``{"B": B}``); ``"auto"`` and
    ``"auto:T"`` are content-adaptive groups (``{"B": "auto",
    "auto_tolerance": T}``), labelled as given.  Raises TcsValueError for
    anything else."""
    if isinstance(B, (int, np.integer)) and not isinstance(B, bool):
        return int(B), {"B": int(B)}
    text = str(B).strip()
    if text.isdigit():
        return int(text), {"B": int(text)}
    head, _, tol = text.partition(":")
    if head == AUTO:
        if not tol:
            return AUTO, {"B": AUTO}
        try:
            t = float(tol)
        except ValueError:
            t = math.nan
        if math.isfinite(t) and t > 0:
            return f"{AUTO}:{t:g}", {"B": AUTO, "auto_tolerance": t}
    raise TcsValueError(f"a B to evaluate is an integer, 'auto' or 'auto:T' (T > 0, the tolerance), got {B!r}")


def B_order(B) -> tuple:
    """Sort key of row labels: integer B first, ascending, then the
    ``-B auto`` labels by tolerance ("auto": the writer's default)."""
    if isinstance(B, int):
        return (0, B)
    tol = B.partition(":")[2]
    return (1, float(tol) if tol else AutoGroupsConfig().tolerance)


#: what :func:`curve_name` adds to a decoder's name for its ``-B auto`` curve
AUTO_CURVE = " (auto)"


def curve_name(row: EvalRow) -> str:
    """The rate-distortion curve a row belongs to: its method, and for a
    decoder of ``-B auto`` files (which sweep a knob, not B) its own
    curve, "<method> (auto)"; codecs matched to those files' bytes stay on
    their method's curve."""
    return row.method + AUTO_CURVE if isinstance(row.B, str) and row.kind in ("decoder", "naive") else row.method


def _lengths(sizes: Sequence[int]) -> str:
    """Group lengths in short: "12 x 4, 10 x 1"."""
    counts = Counter(sizes)
    return ", ".join(f"{n} x {counts[n]}" for n in sorted(counts, reverse=True))


def _frames_for_writer(frames) -> np.ndarray:
    """``frames`` in a dtype the writer takes: float64/float16 as float32,
    non-negative signed integers as unsigned of the same width."""
    a = np.asarray(frames)
    if a.ndim != 3:
        raise TcsValueError(f"frames must be a movie (T x H x W), got shape {a.shape}")
    if a.dtype == np.float64 or a.dtype == np.float16:
        a = a.astype(np.float32)
    elif a.dtype.kind == "i":
        if a.min() < 0:
            raise TcsValueError("signed frames with negative values are not supported")
        a = a.astype(f"u{a.dtype.itemsize}")
    return a


def reference_movie(frames: np.ndarray, clean, clean_scale="auto") -> tuple[np.ndarray, str, float]:
    """What decoded frames are compared with: ``(movie, "clean" or "raw", gain)``.

    The clean movie (float32) times its gain, or the raw frames when
    ``clean`` is None.  ``clean_scale`` "auto" fits the gain (the Poisson
    MLE) when the clean movie is in other units than the counts and the fit
    is off 1 by more than 1 %; a number sets it; None keeps 1.
    """
    if clean is None:
        return frames.astype(np.float32), "raw", 1.0
    ref = np.asarray(clean, np.float32)
    if ref.shape != frames.shape:
        raise TcsValueError(f"clean movie shape {ref.shape} differs from the frames' {frames.shape}")
    gain = 1.0
    if clean_scale == "auto":
        # The clean movie may be in other units than the counts (e.g. a
        # normalised intensity): fit the gain (the Poisson MLE sum/sum) when
        # it is off by more than 1 %.
        g = float(frames.sum(dtype=np.float64) / ref.sum(dtype=np.float64)) if ref.sum() else 1.0
        gain = g if abs(g - 1) > 0.01 else 1.0
    elif clean_scale is not None:
        gain = float(clean_scale)
    if gain != 1.0:
        ref = ref * np.float32(gain)
    return ref, "clean", gain


def evaluate(frames, clean=None, B_list: Sequence[int | str] = (10, 20, 30),
             decoders: Sequence[str] = DEFAULT_DECODERS, codecs: Sequence[str] = DEFAULT_CODECS, *,
             seed: int = 0, quant_step: float | str = 1.0, name: str = "movie", tv: bool = True,
             tv_decoders: bool = True, tv_iterations: int = 40, tv_temporal: float | str = "auto",
             tv_crop: int | None = 128,
             bit_depth: int | None = None, max_search: int = 10, byte_rtol: float = 0.02,
             decoder_options: dict[str, dict] | None = None, device: str = "cpu",
             example_frame: int | None = None, clean_scale: str | float | None = "auto",
             threads: int | None = 1, workdir=None,
             log: Callable[[str], None] | None = None) -> list[EvalRow]:
    """Evaluate TCS decoding against conventional codecs at equal real bytes.

    Parameters
    ----------
    frames : (T, H, W) array
        The raw movie (uint8/16/32 or float; what ``tcscodec.write`` accepts).
    clean : (T, H, W) array, optional
        Its noise-free truth.  Metrics are against ``clean`` when given (the
        oracle and ``raw`` rows need it), else against the raw frames.
    B_list : ints or str
        Frames per measurement to evaluate; ``"auto"`` or ``"auto:T"``
        (:func:`grouping`) for ``-B auto`` files (tolerance ``T``), whose
        rows carry that label as ``B`` and whose decoders form their own
        rate-distortion curve (:func:`curve_name`).
    decoders : names
        Registered decoders to run (see :func:`.checkpoints.checkpoint_decoder`
        for a training checkpoint); unavailable ones give a skipped row.  A name
        ending in :data:`STILL_SUFFIX` (``"tcs-unfold/still"``) runs that
        decoder without motion compensation, one ending in
        :data:`MOTION_SUFFIX` (``"tcs-unfold/motion"``) with it; a plain
        name as the API's default decodes.
    codecs : names
        Keys of :data:`CODECS`; unavailable ones give skipped rows.
    seed, quant_step
        Mask seed and measurement quantisation of the ``.tcs`` files (a step,
        or "auto" as in ``tcscodec encode --quantize auto``).
    name : str
        Movie name recorded in the rows.
    tv : bool
        Also report each codec followed by the oracle-tuned TV denoiser.
    tv_decoders : bool
        Also report each decoder followed by the same oracle-tuned TV
        (``"<decoder>+tv"``): how much of the baselines' TV gain the TCS
        decoders leave on the table.
    tv_iterations, tv_temporal, tv_crop
        TV solver iterations, temporal weight of the TV and the tuning crop
        (see :func:`tune_tv`).  With ``tv_temporal="auto"`` the temporal
        weight is tuned for each codec at the first B and kept for the
        others (the TV weight itself is tuned for every codec and B).
    bit_depth : int, optional
        Force the codecs' sample depth (clipped to what each supports).
    max_search, byte_rtol
        Equal-bytes search: at most ``max_search`` new encodes per codec and
        B; stop when within ``byte_rtol`` below the target.
    decoder_options : {name: dict}
        Options passed to ``decode_group`` for a decoder (tile, overlap, ...).
    device : str
        Decoding device.
    example_frame : int, optional
        Frame kept in every row's ``example`` for figures (default T // 2).
    clean_scale : "auto", float or None
        Gain applied to ``clean``: "auto" fits it when the clean movie is in
        other units than the frames (see :func:`reference_movie`), None keeps it.
    threads : int
        torch threads for TV and the codecs' threads.
    workdir : path, optional
        Folder for the ``.tcs`` files (default: a temporary folder, removed).
    log : callable, optional
        Called with progress messages.

    Returns
    -------
    list of :class:`EvalRow`, per B in order: each decoder (and
    decoder+tv), ``Y/sum(C)``, ``oracle-static``, then each codec and
    codec+tv; plus ``raw`` and ``raw+tv`` once (with the first B) when
    ``clean`` is given.  Without ``clean`` there are no TV rows (tuning the
    TV against the noisy frames themselves would be meaningless).
    """
    from ..reader import TcsReader
    from ..writer import write as tcs_write

    say = log or (lambda msg: None)
    frames = _frames_for_writer(frames)
    T, H, W = frames.shape
    ref, ref_name, gain = reference_movie(frames, clean, clean_scale)
    R = float(ref.max() - ref.min()) or 1.0
    k_ex = T // 2 if example_frame is None else int(example_frame) % T
    raw_bytes = int(frames.nbytes)
    decoder_options = decoder_options or {}
    rows: list[EvalRow] = []
    ref_note = f"clean x {gain:.4g} (fitted gain)" if gain != 1.0 else ref_name
    tv = tv and clean is not None

    def measure(est, B, method, kind, nbytes, tcs_bytes, settings="", tvw=None, seconds=0.0, note=""):
        est = np.asarray(est, np.float32)
        row = EvalRow(
            movie=name, B=B, method=method, kind=kind, reference=ref_note,
            psnr=psnr(est, ref, R), ssim=ssim(est, ref, R), nbytes=nbytes, tcs_bytes=tcs_bytes,
            raw_bytes=raw_bytes, psnr_frames=tuple(float(v) for v in psnr_per_frame(est, ref, R)),
            settings=settings, tv_weight=tvw, seconds=round(float(seconds), 3), note=note, gain=gain,
            example_index=k_ex, example=est[k_ex].copy())
        rows.append(row)
        say(f"  B={B!s:<3} {method:<18s} PSNR {row.psnr:6.2f} dB  SSIM {row.ssim:.4f}"
            + (f"  {nbytes:,} B" if nbytes else "") + (f"  [{note}]" if note else ""))
        return row

    def skipped(B, method, kind, tcs_bytes, why):
        rows.append(EvalRow(movie=name, B=B, method=method, kind=kind, reference=ref_note,
                            psnr=float("nan"), ssim=float("nan"), nbytes=None, tcs_bytes=tcs_bytes,
                            raw_bytes=raw_bytes, note=f"skipped: {why}", skipped=True, gain=gain))
        say(f"  B={B!s:<3} {method:<18s} skipped: {why}")

    tmp_ctx = tempfile.TemporaryDirectory(prefix="tcs-eval-") if workdir is None else contextlib.nullcontext(workdir)
    with tmp_ctx as tmp, torch_threads(threads):
        tmp = Path(tmp)
        tmp.mkdir(parents=True, exist_ok=True)
        searches: dict[str, ByteSearch | str] = {}
        temporal: dict[str, float] = {}  # TV temporal weight of each method, tuned at its first B
        for c in codecs:
            why = codec_unavailable(c)
            if why:
                searches[c] = why
                continue
            searches[c] = ByteSearch(CODECS[c], frames, tmp, bit_depth, threads=max(1, int(threads or 1)))

        for i, (B, write_B) in enumerate(grouping(b) for b in B_list):
            path = tmp / re.sub(r"[^A-Za-z0-9_.-]", "_", f"{name}_B{B}.tcs")
            t0 = time.perf_counter()
            tcs_write(path, frames, seed=seed, quant_step=quant_step, **write_B)
            tcs_bytes = path.stat().st_size
            with TcsReader(path) as r:  # the step "auto" chose, and the groups
                step_note = f"quant_step {r.header.quant_step:g}" + (" (auto)" if quant_step == "auto" else "")
                sizes = [r.group_frames(g) for g in range(r.n_groups)]
            if isinstance(B, str):
                step_note += f", groups {_lengths(sizes)}"
            say(f"{name}: B={B}: {path.name} {tcs_bytes:,} bytes, ratio {raw_bytes / tcs_bytes:.1f}x "
                f"({time.perf_counter() - t0:.2f} s)")
            if i == 0 and clean is not None:
                measure(frames, B, "raw", "reference", raw_bytes, tcs_bytes, note="uncompressed frames")
                if tv:
                    t0 = time.perf_counter()
                    den, fit = tune_tv(frames, ref, data_range=R, temporal=tv_temporal, iterations=tv_iterations,
                                       crop=tv_crop, threads=threads)
                    measure(den, B, "raw+tv", "reference", raw_bytes, tcs_bytes, settings=fit.describe(),
                            tvw=fit.weight,
                            seconds=time.perf_counter() - t0, note="oracle-tuned TV")

            # -- the .tcs file's decoders -------------------------------------------------------
            for dname in decoders:
                opts = dict(decoder_options.get(dname, {}))
                base = dname
                for suffix, motion in ((STILL_SUFFIX, False), (MOTION_SUFFIX, True)):
                    if dname.endswith(suffix):
                        base, opts["motion"] = dname.removesuffix(suffix), motion
                why = _decoder_unavailable(base, device, {k: v for k, v in opts.items() if k != "motion"})
                if why:
                    skipped(B, dname, "decoder", tcs_bytes, why)
                    continue
                t0 = time.perf_counter()
                try:
                    est = _decode_file(path, base, device, opts)
                except Exception as exc:  # a decoder bug must not lose the other rows
                    skipped(B, dname, "decoder", tcs_bytes, f"decoding failed: {type(exc).__name__}: {exc}")
                    continue
                measure(est, B, dname, "decoder", tcs_bytes, tcs_bytes, seconds=time.perf_counter() - t0,
                        settings=f"seed {seed}, {step_note}")
                if tv and tv_decoders:
                    t0 = time.perf_counter()
                    den, fit = tune_tv(est, ref, data_range=R, temporal=temporal.get(dname, tv_temporal),
                                       iterations=tv_iterations, crop=tv_crop, threads=threads)
                    temporal[dname] = fit.temporal
                    measure(den, B, dname + "+tv", "decoder+tv", tcs_bytes, tcs_bytes, settings=fit.describe(),
                            tvw=fit.weight, seconds=time.perf_counter() - t0,
                            note="TV weight oracle-tuned on the reference")
            t0 = time.perf_counter()
            measure(naive_decode(path), B, NAIVE, "naive", tcs_bytes, tcs_bytes, seconds=time.perf_counter() - t0)
            if clean is not None:
                measure(_static_oracle(ref, sizes), B, ORACLE, "oracle", None, tcs_bytes,
                        note="mean of each group's clean frames")

            # -- conventional codecs at equal bytes ----------------------------------------------------
            for c in codecs:
                s = searches[c]
                if isinstance(s, str):
                    skipped(B, c, "codec", tcs_bytes, s)
                    if tv:
                        skipped(B, c + "+tv", "codec+tv", tcs_bytes, s)
                    continue
                try:
                    out = s.output(tcs_bytes, max_evals=max_search, rtol=byte_rtol)
                except Exception as exc:  # an encoder failing must not lose the other rows
                    skipped(B, c, "codec", tcs_bytes, f"{type(exc).__name__}: {exc}")
                    if tv:
                        skipped(B, c + "+tv", "codec+tv", tcs_bytes, "the codec failed")
                    continue
                note = out.note or f"{out.evaluations} new encodes"
                measure(out.decoded, B, c, "codec", out.nbytes, tcs_bytes, settings=out.settings,
                        seconds=out.seconds, note=note)
                if tv:
                    t0 = time.perf_counter()
                    den, fit = tune_tv(out.decoded, ref, data_range=R, temporal=temporal.get(c, tv_temporal),
                                       iterations=tv_iterations, crop=tv_crop, threads=threads)
                    temporal[c] = fit.temporal
                    measure(den, B, c + "+tv", "codec+tv", out.nbytes, tcs_bytes,
                            settings=f"{out.settings}; {fit.describe()}",
                            tvw=fit.weight, seconds=time.perf_counter() - t0,
                            note="TV weight oracle-tuned on the reference")
    return rows
