"""Quality evaluation: TCS decoders against conventional codecs at equal real bytes.

:func:`evaluate` encodes a movie into a ``.tcs`` file for each B and
measures, against the clean movie when one is given (else against the raw
frames):

* every available decoder of the ``.tcs`` file (run through
  :meth:`tcscodec.TcsReader.decode_group`, as users run them);
* ``Y/sum(C)``: the naive decoder, each group's ``Y / sum_b C_b`` repeated
  for the group's frames;
* ``oracle-static`` (clean movie only): the mean of the clean frames of each
  group, the best any decoder that returns one static image per group could
  do;
* ``raw`` and ``raw+tv`` (clean movie only, once per movie): the
  uncompressed noisy frames, as decoded and TV-filtered;
* conventional codecs **at equal real bytes**: per-frame JPEG (Pillow),
  JPEG 2000 and JPEG XL (imagecodecs) and the H.264, H.265 and AV1 video
  codecs (ffmpeg with libx264, libx265, libaom-av1 or libsvtav1).  Each
  codec's knob (JPEG quality, OpenJPEG's PSNR target, JPEG XL distance,
  x264/x265 two-pass bitrate, AV1 CRF) is searched so that the whole
  movie's compressed bytes (every byte of every file or stream, headers
  included) come as close as possible to the ``.tcs`` file's bytes without
  exceeding them (within ``byte_rtol`` when the knob allows); the achieved
  byte ratio is reported.  Each codec is reported twice: as decoded, and
  followed by a spatio-temporal total-variation denoiser
  (:func:`tv_denoise`) whose weights are tuned per codec and B **on the
  reference** (an oracle-tuned upper bound for the baselines, since the TCS
  decoders are not tuned on the truth).  The same oracle TV after each
  decoder is reported too (``<decoder>+tv``), for comparison.

Frames are mapped to the codecs' integer samples by a recorded linear map
``code = round((x - lo) * scale)`` with ``lo``/``hi`` the movie's minimum and
maximum and ``scale = (2**depth - 1) / (hi - lo)`` (the full code range: the
fairest input for codecs tuned on full-range content), inverted after
decoding.  The bit depth is 8 when the movie is integer with at most 256
levels (no information lost), else the codec's deepest supported (16 for
JPEG 2000 / JPEG XL, 10 for H.264, 12 for H.265 and libaom AV1); Pillow's
JPEG is 8-bit only.

Metrics: PSNR (:func:`tcscodec.metrics.psnr`) and SSIM (:func:`ssim`, Wang et
al. 2004 with an 11x11 Gaussian window, sigma 1.5) over the whole movie, with
one data range, the reference's ``max - min``, for every method and frame.

Reports: :func:`markdown_table`, :func:`summary_table`, :func:`rows_to_json`
and :func:`save_figure` (raw / best decoder / JPEG panels of one frame with
their power spectra, and the PSNR of every frame for every method).

Needs scipy (SSIM); Pillow and imagecodecs for the image codecs, ffmpeg on
``PATH`` for the video codecs, matplotlib for the figure (all optional:
missing ones are skipped with a note).
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .metrics import psnr as _psnr
from .metrics import psnr_per_frame as _psnr_per_frame

__all__ = [
    "EvalRow",
    "evaluate",
    "naive_decode",
    "reference_movie",
    "ssim",
    "ssim_map",
    "tv_denoise",
    "tune_tv",
    "TVFit",
    "CODECS",
    "DEFAULT_CODECS",
    "DEFAULT_DECODERS",
    "codec_unavailable",
    "encode_at_bytes",
    "CodecOutput",
    "checkpoint_decoder",
    "with_checkpoint",
    "markdown_table",
    "summary_table",
    "margin_table",
    "sort_rows",
    "rows_to_json",
    "save_figure",
]

DEFAULT_DECODERS = ("tcs-unfold", "gap-tv")
DEFAULT_CODECS = ("jpeg", "jpeg2000", "jpegxl", "h264", "h265", "av1")
NAIVE = "Y/sum(C)"
ORACLE = "oracle-static"


# ==================================================================================================
# Metrics
# ==================================================================================================


def _as_stack(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"expected an image (H x W) or a movie (T x H x W), got shape {a.shape}")
    return a


def ssim_map(estimate, reference, data_range: float | None = None, *, sigma: float = 1.5,
             truncate: float = 3.5, K1: float = 0.01, K2: float = 0.03) -> np.ndarray:
    """The SSIM index of every pixel (Wang, Bovik, Sheikh, Simoncelli 2004).

    Local statistics are weighted by a Gaussian window of standard deviation
    ``sigma`` cut at ``truncate * sigma`` (11 x 11 for the defaults, the
    paper's window), normalised to sum 1; no sample-covariance correction
    (as in the paper).  ``C1 = (K1 L)^2``, ``C2 = (K2 L)^2`` with ``L`` the
    data range (default ``reference.max() - reference.min()``).

    Movies (T x H x W) are filtered frame by frame (never across time).
    Returns the map cropped by the window radius on each side, where the
    window lies inside the image (as scikit-image does), shape
    ``(T, H - 2r, W - 2r)`` (or ``(H - 2r, W - 2r)`` for an image).
    """
    from scipy.ndimage import gaussian_filter

    est, ref = _as_stack(estimate), _as_stack(reference)
    if est.shape != ref.shape:
        raise ValueError(f"shapes differ: {est.shape} vs {ref.shape}")
    L = float(ref.max() - ref.min()) if data_range is None else float(data_range)
    if not L > 0:
        raise ValueError("data range must be > 0 (give data_range for a constant reference)")
    C1, C2 = (K1 * L) ** 2, (K2 * L) ** 2
    r = int(truncate * sigma + 0.5)
    out = []
    # In chunks of frames: five filtered float64 stacks at once otherwise.
    for i in range(0, len(ref), 8):
        x, y = est[i:i + 8], ref[i:i + 8]

        def f(a):
            return gaussian_filter(a, sigma=(0, sigma, sigma), truncate=truncate, mode="reflect")

        mx, my = f(x), f(y)
        sxx = f(x * x) - mx * mx
        syy = f(y * y) - my * my
        sxy = f(x * y) - mx * my
        s = ((2 * mx * my + C1) * (2 * sxy + C2)) / ((mx * mx + my * my + C1) * (sxx + syy + C2))
        if s.shape[1] > 2 * r and s.shape[2] > 2 * r:
            s = s[:, r:-r, r:-r]
        out.append(s)
    s = np.concatenate(out)
    return s[0] if np.ndim(reference) == 2 else s


def ssim(estimate, reference, data_range: float | None = None, *, per_frame: bool = False, **kw):
    """Mean SSIM (see :func:`ssim_map`): of each frame, then over frames.

    ``per_frame=True`` returns the array of per-frame values instead.
    """
    m = ssim_map(estimate, reference, data_range, **kw)
    if m.ndim == 2:
        return float(m.mean())
    v = m.reshape(len(m), -1).mean(1)
    return v if per_frame else float(v.mean())


# ==================================================================================================
# Spatio-temporal total variation
# ==================================================================================================


@contextlib.contextmanager
def _torch_threads(n: int | None):
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
        raise ValueError(f"expected a movie (T x H x W), got shape {arr.shape}")
    lam, tw = float(weight), float(temporal)
    if not lam > 0 or iterations <= 0:
        return arr.copy()[0] if squeeze else arr.copy()
    with _torch_threads(threads) as torch:
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
        best = min(scores, key=scores.get)
        return best, scores[best]

    if isinstance(temporal, str):
        if temporal != "auto":
            raise ValueError(f"temporal must be a number, a sequence or 'auto', got {temporal!r}")
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


# ==================================================================================================
# Conventional codecs
# ==================================================================================================


@dataclass(frozen=True)
class _Mapping:
    """Linear map of the movie onto a codec's ``depth``-bit integer samples."""

    lo: float
    scale: float
    depth: int

    @classmethod
    def for_movie(cls, frames: np.ndarray, depth: int) -> "_Mapping":
        lo, hi = float(frames.min()), float(frames.max())
        return cls(lo, (2**depth - 1) / (hi - lo) if hi > lo else 1.0, depth)

    def encode(self, frames: np.ndarray) -> np.ndarray:
        codes = np.rint((np.asarray(frames, np.float64) - self.lo) * self.scale)
        return np.clip(codes, 0, 2**self.depth - 1).astype(np.uint8 if self.depth <= 8 else np.uint16)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return (codes.astype(np.float32) / np.float32(self.scale) + np.float32(self.lo)).astype(np.float32)

    def describe(self) -> str:
        return f"{self.depth}-bit, x -> (x - {self.lo:g}) * {self.scale:.4g}"


def _needed_depth(frames: np.ndarray) -> int | None:
    """8 when the movie is integer-valued with at most 256 levels (8 bits
    then lose nothing), else None (the codec uses its deepest sample depth)."""
    if frames.dtype.kind not in "ui" and not np.array_equal(frames, np.round(frames)):
        return None
    return 8 if float(frames.max()) - float(frames.min()) <= 255 else None


class _Codec:
    """A conventional codec with one quality knob (subclasses fill these in)."""

    name = ""
    label = ""
    knob = ""
    lo = 0.0
    hi = 1.0
    integer = False
    increasing = True  # bytes grow with the knob
    start = 0.5  # a typical setting, where the equal-bytes search starts
    step = 0.1  # first step of the search's bracketing
    depths: tuple[int, ...] = (8,)

    def unavailable(self) -> str | None:
        """None when usable here, else why not."""
        return None

    def depth_for(self, frames: np.ndarray, override: int | None = None) -> int:
        if override:
            fitting = [d for d in self.depths if d <= override]
            return max(fitting) if fitting else min(self.depths)
        return min(self.depths) if _needed_depth(frames) == 8 else max(self.depths)

    def guess(self, target: int, shape) -> tuple[float, float, bool]:
        """``(first setting, first step, whether the first setting is a
        good guess for ``target`` bytes)`` of the equal-bytes search."""
        return self.start, self.step, False

    def settings(self, knob: float) -> str:
        return f"{self.knob}={knob:g}" if self.integer else f"{self.knob}={knob:.3g}"

    def encode(self, codes: np.ndarray, depth: int, knob: float, tmp: Path) -> tuple[int, Any]:
        """Encode the whole movie of integer ``codes``; return (bytes, payload)."""
        raise NotImplementedError

    def decode(self, payload: Any, shape, depth: int, tmp: Path) -> np.ndarray:
        raise NotImplementedError


# -- still-image codecs, one file per frame ----------------------------------------------------------

_IJG_BASE: list[int] | None = None


def _ijg_table(quality: float) -> list[int]:
    """The IJG luminance table scaled as libjpeg's ``quality`` (continuous here)."""
    global _IJG_BASE
    if _IJG_BASE is None:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(buf, "JPEG", quality=50)
        _IJG_BASE = list(Image.open(io.BytesIO(buf.getvalue())).quantization[0])  # natural order
    q = min(max(float(quality), 1.0), 100.0)
    s = 5000.0 / q if q < 50 else 200.0 - 2.0 * q
    return [int(min(max((b * s + 50) // 100, 1), 255)) for b in _IJG_BASE]


class _Jpeg(_Codec):
    """Baseline JPEG per frame (Pillow/libjpeg, optimised Huffman tables).
    The knob is libjpeg's quality, made continuous by scaling the IJG table
    ourselves (libjpeg rounds quality to an integer)."""

    name, label, knob = "jpeg", "JPEG (Pillow)", "quality"
    lo, hi, increasing, depths = 1.0, 100.0, True, (8,)
    start, step = 20.0, 8.0

    def unavailable(self):
        try:
            import PIL  # noqa: F401
        except ImportError:
            return "Pillow is not installed"
        return None

    def encode(self, codes, depth, knob, tmp):
        from PIL import Image

        table = _ijg_table(knob)
        files = []
        for frame in codes:
            buf = io.BytesIO()
            Image.fromarray(frame).save(buf, "JPEG", qtables=[table], optimize=True)
            files.append(buf.getvalue())
        return sum(map(len, files)), files

    def decode(self, payload, shape, depth, tmp):
        from PIL import Image

        return np.stack([np.asarray(Image.open(io.BytesIO(b))) for b in payload])


class _ImagecodecsCodec(_Codec):
    """A per-frame image codec of imagecodecs: ``feature`` names its
    availability flag (``imagecodecs.JPEG2K``...) and its ``<codec>_decode``
    function; subclasses write ``encode``."""

    feature = feature_label = decode_function = ""

    def unavailable(self):
        try:
            import imagecodecs
        except ImportError:
            return "imagecodecs is not installed"
        if getattr(imagecodecs, self.feature).available:
            return None
        return f"imagecodecs was built without {self.feature_label}"

    def decode(self, payload, shape, depth, tmp):
        import imagecodecs

        decode = getattr(imagecodecs, self.decode_function)
        return np.stack([decode(b) for b in payload])


class _Jpeg2000(_ImagecodecsCodec):
    """JPEG 2000 per frame (OpenJPEG via imagecodecs; raw J2K codestream,
    irreversible 9/7 wavelet).  The knob is OpenJPEG's fixed-quality target
    in dB (its PSNR for the single quality layer)."""

    name, label, knob = "jpeg2000", "JPEG 2000 (OpenJPEG)", "psnr_target_dB"
    lo, hi, increasing, depths = 10.0, 90.0, True, (8, 16)
    start, step = 25.0, 3.0
    feature, feature_label, decode_function = "JPEG2K", "JPEG 2000", "jpeg2k_decode"

    def encode(self, codes, depth, knob, tmp):
        import imagecodecs

        files = [bytes(imagecodecs.jpeg2k_encode(f, level=float(knob), codecformat="j2k", reversible=False,
                                                 numthreads=1)) for f in codes]
        return sum(map(len, files)), files


class _JpegXL(_ImagecodecsCodec):
    """JPEG XL per frame (libjxl via imagecodecs; bare codestream, effort 7).
    The knob is the Butteraugli distance (smaller is better quality)."""

    name, label, knob = "jpegxl", "JPEG XL (libjxl)", "distance"
    lo, hi, increasing, depths = 0.05, 25.0, False, (8, 16)
    start, step = 5.0, 2.0
    feature, feature_label, decode_function = "JPEGXL", "JPEG XL", "jpegxl_decode"

    def encode(self, codes, depth, knob, tmp):
        import imagecodecs

        files = [bytes(imagecodecs.jpegxl_encode(f, distance=float(knob), effort=7, usecontainer=False,
                                                 numthreads=1)) for f in codes]
        return sum(map(len, files)), files


# -- video codecs through ffmpeg ----------------------------------------------------------------------

_GRAY = {8: "gray", 10: "gray10le", 12: "gray12le"}


@functools.lru_cache(maxsize=8)
def _ffmpeg_encoders(ffmpeg: str) -> frozenset:
    try:
        out = subprocess.run([ffmpeg, "-hide_banner", "-encoders"], capture_output=True, text=True,
                             timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(m.group(1) for m in re.finditer(r"^\s*V\S*\s+(\S+)", out, re.M))


def _ffmpeg() -> str | None:
    return shutil.which("ffmpeg")


def _strip_sei(data: bytes, hevc: bool) -> bytes:
    """Drop SEI NAL units from an Annex-B H.264/H.265 stream.

    x264 writes its version and full option string into a user-data SEI
    (about 0.6 kB) that no decoder needs (x265's is turned off with
    ``info=0``); SEI carries no picture data, so removing it leaves the same
    decoded frames.  The stripped stream is the one counted and decoded.
    """
    starts = [m.start() for m in re.finditer(b"\x00\x00\x01", data)]
    if not starts:
        return data
    keep = [data[:starts[0]]]
    for i, s in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(data)
        h = data[s + 3] if s + 3 < len(data) else 0
        sei = ((h >> 1) & 0x3F) in (39, 40) if hevc else (h & 0x1F) == 6
        if not sei:
            keep.append(data[s:end])
    return b"".join(keep)


class _Video(_Codec):
    """A video codec run by ffmpeg: raw gray frames in, an elementary stream
    out (Annex-B for H.264/H.265, low-overhead OBUs for AV1), every byte
    counted.  Default GOP (one intra frame for short movies); full-range
    samples (``-color_range pc``: no 16..235 squeeze).  Subclasses set the
    rate control (CRF by default: lower is better quality)."""

    integer = False
    increasing = False
    encoder = ""
    muxer = ""
    threads = 1

    def unavailable(self):
        ff = _ffmpeg()
        if ff is None:
            return "ffmpeg is not on PATH"
        if self.encoder not in _ffmpeg_encoders(ff):
            return f"ffmpeg has no {self.encoder} encoder"
        return None

    def pix_fmt(self, depth: int) -> str:
        return _GRAY[depth]

    def args(self, knob: float, depth: int) -> list[str]:
        raise NotImplementedError

    def _frames_in(self, codes: np.ndarray, depth: int) -> bytes:
        return np.ascontiguousarray(codes.astype("<u2" if depth > 8 else np.uint8)).tobytes()

    def passes(self, knob: float, depth: int, tmp: Path) -> list[list[str]]:
        """Encoder arguments of each pass (one pass by default)."""
        return [self.args(knob, depth)]

    def encode(self, codes, depth, knob, tmp):
        T, H, W = codes.shape
        out = Path(tmp) / f"{self.name}.{self.muxer}"
        frames = self._frames_in(codes, depth)
        passes = self.passes(knob, depth, Path(tmp))
        for i, args in enumerate(passes):
            # The (analysis) passes before the last write nothing.
            dest = ["-f", self.muxer, str(out)] if i == len(passes) - 1 else ["-f", "null", "-"]
            cmd = [_ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
                   "-f", "rawvideo", "-pix_fmt", self.pix_fmt(depth), "-s", f"{W}x{H}", "-framerate", "25",
                   "-color_range", "pc", "-i", "pipe:0", "-an", "-c:v", self.encoder, *args,
                   "-pix_fmt", self.pix_fmt(depth), "-color_range", "pc", *dest]
            proc = subprocess.run(cmd, input=frames, capture_output=True, timeout=1800, cwd=tmp)
            if proc.returncode != 0:
                raise RuntimeError(f"{self.encoder} failed: {proc.stderr.decode(errors='replace')[-500:]}")
        if not out.exists():
            raise RuntimeError(f"{self.encoder} wrote no stream")
        data = out.read_bytes()
        out.unlink()
        if self.muxer in ("h264", "hevc"):
            data = _strip_sei(data, self.muxer == "hevc")
        return len(data), data

    def decode(self, payload, shape, depth, tmp):
        T, H, W = shape
        src = Path(tmp) / f"{self.name}-dec.{self.muxer}"
        src.write_bytes(payload)
        fmt = self.pix_fmt(depth)
        cmd = [_ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", "-f", self.muxer, "-i", str(src),
               "-f", "rawvideo", "-pix_fmt", fmt, "pipe:1"]
        proc = subprocess.run(cmd, capture_output=True, timeout=1800)
        src.unlink()
        if proc.returncode != 0:
            raise RuntimeError(f"ffmpeg could not decode its {self.encoder} stream: "
                               f"{proc.stderr.decode(errors='replace')[-500:]}")
        return self._frames_out(proc.stdout, shape, depth)

    def _frames_out(self, raw: bytes, shape, depth) -> np.ndarray:
        T, H, W = shape
        a = np.frombuffer(raw, "<u2" if depth > 8 else np.uint8)
        if a.size != T * H * W:
            raise RuntimeError(f"{self.encoder}: decoded {a.size} samples, expected {T * H * W}")
        return a.reshape(T, H, W)


class _TwoPass(_Video):
    """x264/x265 in two-pass average-bitrate mode at a searched bitrate
    (the knob, kbit/s at a nominal 25 frames/s).  Their constant-quality
    (CRF) sizes jump by up to 60 % between neighbouring CRF values on
    noise-dominated movies (whole frames switch to skip blocks), so CRF
    cannot reach equal bytes; two-pass ABR spends a given size about as
    well as CRF would and lands within a few % of it.  ``-tune psnr`` (no
    psycho-visual optimisations, which spend bits on keeping noise texture)
    since the comparison is by PSNR/SSIM: it gained 1-4 dB unfiltered at
    equal bytes on the test movies."""

    knob, lo, hi, increasing = "kbps", 1.0, 1e6, True

    def guess(self, target, shape):
        kbps = 8 * target / 1000 / (shape[0] / 25)
        return kbps, 0.1 * kbps, True


class _H264(_TwoPass):
    name, label, encoder, muxer = "h264", "H.264 (x264 veryslow, tune psnr, 2-pass)", "libx264", "h264"
    depths = (8, 10)

    def passes(self, knob, depth, tmp):
        common = ["-preset", "veryslow", "-tune", "psnr", "-b:v", f"{knob:.3f}k", "-threads", str(self.threads),
                  "-passlogfile", str(tmp / "x264-2pass")]
        return [common + ["-pass", "1"], common + ["-pass", "2"]]


class _H265(_TwoPass):
    name, label, encoder, muxer = "h265", "H.265 (x265 slow, tune psnr, 2-pass)", "libx265", "hevc"
    depths = (8, 10, 12)

    def passes(self, knob, depth, tmp):
        params = f"log-level=error:info=0:pools={self.threads}:frame-threads=1:stats={tmp / 'x265-2pass.log'}"
        common = ["-preset", "slow", "-tune", "psnr", "-b:v", f"{knob:.3f}k"]
        return [common + ["-x265-params", params + ":pass=1"], common + ["-x265-params", params + ":pass=2"]]


class _AV1(_Video):
    """AV1 with libaom (gray, 8/10/12-bit, cpu-used 4) or, failing that,
    SVT-AV1 (4:2:0 only: neutral chroma planes are encoded and counted;
    frames of at least 64 x 64).  Their CRF is an integer, so AV1 can land a
    few to ~15 % below the byte target at low rates (the row's
    ``bytes / .tcs`` shows it); their bitrate modes were worse at equal
    bytes (1-pass VBR overshoots, 2-pass lost ~0.3 dB to CRF on abTEM)."""

    name, knob, muxer = "av1", "crf", "obu"
    lo, hi, integer = 0.0, 63.0, True
    start, step = 45.0, 4.0

    @property
    def encoder(self):  # the first of the two that this ffmpeg has
        ff = _ffmpeg()
        encs = _ffmpeg_encoders(ff) if ff else frozenset()
        return "libaom-av1" if "libaom-av1" in encs or "libsvtav1" not in encs else "libsvtav1"

    @property
    def svt(self) -> bool:
        return self.encoder == "libsvtav1"

    @property
    def depths(self):
        return (8, 10) if self.svt else (8, 10, 12)

    @property
    def label(self):
        return "AV1 (SVT-AV1 preset 6)" if self.svt else "AV1 (libaom cpu-used 4)"

    def pix_fmt(self, depth):
        if self.svt:
            return "yuv420p" if depth == 8 else "yuv420p10le"
        return _GRAY[depth]

    def args(self, knob, depth):
        if self.svt:
            return ["-crf", str(int(round(max(knob, 1)))), "-preset", "6"]
        return ["-crf", str(int(round(knob))), "-b:v", "0", "-cpu-used", "4", "-row-mt", "1",
                "-threads", str(self.threads)]

    def _frames_in(self, codes, depth):
        if not self.svt:
            return super()._frames_in(codes, depth)
        T, H, W = codes.shape
        if H % 2 or W % 2:
            raise RuntimeError("SVT-AV1 needs even frame sizes")
        dt = "<u2" if depth > 8 else np.uint8
        chroma = np.full((T, H // 2 * W // 2 * 2), 1 << (depth - 1), dt)  # neutral U and V
        return np.concatenate([codes.reshape(T, -1).astype(dt), chroma], 1).tobytes()

    def _frames_out(self, raw, shape, depth):
        if not self.svt:
            return super()._frames_out(raw, shape, depth)
        T, H, W = shape
        a = np.frombuffer(raw, "<u2" if depth > 8 else np.uint8).reshape(T, -1)
        return a[:, : H * W].reshape(T, H, W)  # the luma plane


CODECS: dict[str, _Codec] = {c.name: c for c in (_Jpeg(), _Jpeg2000(), _JpegXL(), _H264(), _H265(), _AV1())}


def codec_unavailable(name: str) -> str | None:
    """None when codec ``name`` (a key of :data:`CODECS`) can run here, else why not."""
    if name not in CODECS:
        return f"unknown codec {name!r} (known: {', '.join(CODECS)})"
    return CODECS[name].unavailable()


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


class _ByteSearch:
    """Equal-bytes search of one codec on one movie; evaluated settings are
    cached, so the searches for several budgets (B) share their encodes."""

    def __init__(self, codec: _Codec, frames: np.ndarray, tmp: Path, bit_depth: int | None = None):
        self.codec = codec
        self.depth = codec.depth_for(frames, bit_depth)
        self.mapping = _Mapping.for_movie(frames, self.depth)
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
            self.points[knob] = self.codec.encode(self.codes, self.depth, knob, self.tmp)
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
                    max_evals: int = 10, rtol: float = 0.01) -> CodecOutput:
    """Compress ``frames`` (T x H x W) with ``codec`` using as close to
    ``target_bytes`` bytes as the knob search finds without exceeding them,
    and decode the result (in the frames' units).  See :class:`_ByteSearch`."""
    why = codec_unavailable(codec)
    if why:
        raise RuntimeError(f"{codec}: {why}")
    frames = np.asarray(frames)
    with tempfile.TemporaryDirectory(prefix="tcs-eval-") as tmp:
        s = _ByteSearch(CODECS[codec], frames, Path(tmp), bit_depth)
        return s.output(int(target_bytes), max_evals=max_evals, rtol=rtol)


# ==================================================================================================
# The evaluation
# ==================================================================================================


@dataclass(frozen=True)
class EvalRow:
    """One method on one movie at one B.

    ``kind``: ``"decoder"`` (a decoder of the ``.tcs`` file; ``"decoder+tv"``
    followed by the oracle-tuned TV), ``"naive"``
    (``Y/sum(C)``), ``"oracle"`` (static oracle), ``"reference"`` (raw
    frames), ``"codec"`` / ``"codec+tv"`` (conventional codec as decoded /
    TV-filtered).  ``nbytes``: bytes this method stores (the ``.tcs`` file
    for decoders; ``None`` for oracles); ``tcs_bytes``: the ``.tcs`` file at
    this B (the budget).  ``psnr``/``ssim`` are NaN and ``skipped`` is True
    for methods that could not run (``note`` says why).  ``example`` (not
    serialised) is frame ``example_index`` of the result, for figures.
    """

    movie: str
    B: int
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
            "settings", "tv_weight", "seconds", "note", "skipped", "example_index")}
        d["ratio"] = self.ratio
        d["bytes_vs_tcs"] = self.bytes_vs_tcs
        d["psnr_frames"] = [clean(float(v)) for v in self.psnr_frames]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EvalRow":
        """Inverse of :meth:`to_dict` (without ``example``)."""
        kw = {f: d[f] for f in cls.__dataclass_fields__ if f in d and f != "example"}
        for f in ("psnr", "ssim"):
            kw[f] = float("nan") if kw.get(f) is None else float(kw[f])
        kw["psnr_frames"] = tuple(float("nan") if v is None else float(v) for v in d.get("psnr_frames", ()))
        return cls(**kw)


def checkpoint_decoder(path, *, name: str | None = None) -> str:
    """Register the learned decoder with the network of a training checkpoint.

    ``path`` is a ``checkpoint.pt`` of ``tcscodec train`` (``{"model",
    "config", "step", ...}``).  Registers a :class:`~tcscodec.decoders.learned.UnfoldDecoder`
    bound to that network under ``name`` (default ``"tcs-unfold@step<N>"``)
    and returns the name, to pass in ``evaluate(decoders=...)``, so the
    weights can be evaluated through the normal decoding path before they ship.
    """
    import torch

    from .decoders.base import available_decoders, register_decoder
    from .decoders.learned import UnfoldDecoder
    from .decoders.unfold_net import UnfoldConfig, UnfoldNet

    ck = torch.load(Path(path), map_location="cpu", weights_only=False)
    cfg = ck.get("config", {})
    model_cfg = cfg.get("model", cfg) if isinstance(cfg, dict) else {}
    net = UnfoldNet(UnfoldConfig.from_dict(model_cfg))
    net.load_state_dict(ck["model"] if "model" in ck else ck)
    net.eval()
    name = name or f"tcs-unfold@step{ck.get('step', '?')}"
    if name in available_decoders():
        raise ValueError(f"decoder {name!r} is already registered")

    class _CheckpointDecoder(UnfoldDecoder):
        def __init__(self, device: str = "cpu", net=None, **options):
            super().__init__(device, net=net if net is not None else _bound, **options)

    _bound = net
    _CheckpointDecoder.__name__ = "CheckpointUnfoldDecoder"
    _CheckpointDecoder.checkpoint = str(path)
    register_decoder(name)(_CheckpointDecoder)
    return name


def with_checkpoint(decoders: Sequence[str], checkpoint) -> list[str]:
    """``decoders`` with the network of ``checkpoint`` (registered by
    :func:`checkpoint_decoder`) in place of ``"tcs-unfold"``, or first when
    the list has no ``"tcs-unfold"``."""
    name = checkpoint_decoder(checkpoint)
    out = [name if d == "tcs-unfold" else d for d in decoders]
    if name not in out:
        out.insert(0, name)
    return out


def _tiling_available() -> bool:
    try:
        from .decoders import decode_tiled  # noqa: F401
    except ImportError:
        return False
    return True


def _decoder_unavailable(name: str, device: str, options: dict) -> str | None:
    from .decoders.base import available_decoders, get_decoder

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


def _decode_file(path: Path, name: str, device: str, options: dict) -> tuple[np.ndarray, str]:
    """Decode every group of a ``.tcs`` file with decoder ``name``.

    Through :meth:`TcsReader.decode_group` (tiling engine); when the tiling
    engine is not installed, the whole frame is decoded in one call of the
    decoder instead (noted)."""
    from .reader import TcsReader

    note = ""
    with TcsReader(path, device=device) as r:
        T, H, W = r.shape
        out = np.empty((T, H, W), np.float32)
        if _tiling_available():
            for g in range(r.n_groups):
                out[g * r.B: g * r.B + r.group_frames(g)] = r.decode_group(g, decoder=name, device=device,
                                                                          **options)
        else:
            import torch

            from .decoders.base import get_decoder

            dec = get_decoder(name, device=device, **options)
            note = "whole-frame decode (tiling engine not installed)"
            for g in range(r.n_groups):
                y = torch.from_numpy(np.asarray(r.measurements(g), np.float32))[None].to(device)
                c = torch.from_numpy(r.masks(g).astype(np.float32))[None].to(device)
                with torch.inference_mode():
                    out[g * r.B: g * r.B + r.group_frames(g)] = dec.decode(y, c)[0].float().cpu().numpy()
    return out, note


def naive_decode(path) -> np.ndarray:
    """``Y / sum_b C_b`` of each group (0 where no frame measured a pixel),
    repeated for the group's frames."""
    from .reader import TcsReader

    with TcsReader(path) as r:
        T, H, W = r.shape
        out = np.empty((T, H, W), np.float32)
        for g in range(r.n_groups):
            out[g * r.B: g * r.B + r.group_frames(g)] = np.nan_to_num(r.group_mean(g), nan=0.0)[None]
    return out


def _static_oracle(clean: np.ndarray, B: int) -> np.ndarray:
    out = np.empty(clean.shape, np.float32)
    for i in range(0, len(clean), B):
        out[i:i + B] = clean[i:i + B].mean(0, dtype=np.float64)[None]
    return out


def _frames_for_writer(frames) -> np.ndarray:
    a = np.asarray(frames)
    if a.ndim != 3:
        raise ValueError(f"frames must be a movie (T x H x W), got shape {a.shape}")
    if a.dtype == np.float64 or a.dtype == np.float16:
        a = a.astype(np.float32)
    elif a.dtype.kind == "i":
        if a.min() < 0:
            raise ValueError("signed frames with negative values are not supported")
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
        raise ValueError(f"clean movie shape {ref.shape} differs from the frames' {frames.shape}")
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


def evaluate(frames, clean=None, B_list: Sequence[int] = (10, 20, 30),
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
    B_list : ints
        Frames per measurement to evaluate.
    decoders : names
        Registered decoders to run (see :func:`checkpoint_decoder` for a
        training checkpoint); unavailable ones give a skipped row.  A name
        ending in :data:`STILL_SUFFIX` (``"tcs-unfold/still"``) runs that
        decoder without motion compensation.
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
    from . import write as tcs_write

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
            movie=name, B=int(B), method=method, kind=kind, reference=ref_note,
            psnr=_psnr(est, ref, R), ssim=ssim(est, ref, R), nbytes=nbytes, tcs_bytes=tcs_bytes,
            raw_bytes=raw_bytes, psnr_frames=tuple(float(v) for v in _psnr_per_frame(est, ref, R)),
            settings=settings, tv_weight=tvw, seconds=round(float(seconds), 3), note=note,
            example_index=k_ex, example=est[k_ex].copy())
        rows.append(row)
        say(f"  B={B:<3d} {method:<18s} PSNR {row.psnr:6.2f} dB  SSIM {row.ssim:.4f}"
            + (f"  {nbytes:,} B" if nbytes else "") + (f"  [{note}]" if note else ""))
        return row

    def skipped(B, method, kind, tcs_bytes, why):
        rows.append(EvalRow(movie=name, B=int(B), method=method, kind=kind, reference=ref_note,
                            psnr=float("nan"), ssim=float("nan"), nbytes=None, tcs_bytes=tcs_bytes,
                            raw_bytes=raw_bytes, note=f"skipped: {why}", skipped=True))
        say(f"  B={B:<3d} {method:<18s} skipped: {why}")

    tmp_ctx = tempfile.TemporaryDirectory(prefix="tcs-eval-") if workdir is None else contextlib.nullcontext(workdir)
    with tmp_ctx as tmp, _torch_threads(threads):
        tmp = Path(tmp)
        tmp.mkdir(parents=True, exist_ok=True)
        searches: dict[str, _ByteSearch | str] = {}
        temporal: dict[str, float] = {}  # TV temporal weight of each method, tuned at its first B
        for c in codecs:
            why = codec_unavailable(c)
            if why:
                searches[c] = why
                continue
            codec = CODECS[c]
            if isinstance(codec, _Video):
                codec.threads = max(1, int(threads or 1))
            searches[c] = _ByteSearch(codec, frames, tmp, bit_depth)

        for i, B in enumerate(B_list):
            B = int(B)
            path = tmp / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}_B{B}.tcs"
            t0 = time.perf_counter()
            tcs_write(path, frames, B=B, seed=seed, quant_step=quant_step)
            tcs_bytes = path.stat().st_size
            from .reader import TcsReader

            with TcsReader(path) as r:  # the step "auto" chose
                step_note = f"quant_step {r.header.quant_step:g}" + (" (auto)" if quant_step == "auto" else "")
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
                base = dname.removesuffix(STILL_SUFFIX)
                if base != dname:
                    opts["motion"] = False
                why = _decoder_unavailable(base, device, {k: v for k, v in opts.items() if k != "motion"})
                if why:
                    skipped(B, dname, "decoder", tcs_bytes, why)
                    continue
                t0 = time.perf_counter()
                try:
                    est, note = _decode_file(path, base, device, opts)
                except Exception as exc:  # a decoder bug must not lose the other rows
                    skipped(B, dname, "decoder", tcs_bytes, f"decoding failed: {type(exc).__name__}: {exc}")
                    continue
                measure(est, B, dname, "decoder", tcs_bytes, tcs_bytes, seconds=time.perf_counter() - t0,
                        note=note, settings=f"seed {seed}, {step_note}")
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
                measure(_static_oracle(ref, B), B, ORACLE, "oracle", None, tcs_bytes,
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


# ==================================================================================================
# Reports
# ==================================================================================================


_KIND_ORDER = {"reference": 0, "decoder": 1, "decoder+tv": 1, "naive": 2, "oracle": 3, "codec": 4, "codec+tv": 4}


def sort_rows(rows: Iterable[EvalRow]) -> list[EvalRow]:
    """Rows in report order: by movie (first appearance), B, then raw,
    decoders (each followed by its +tv), Y/sum(C), oracle, codecs in
    :data:`CODECS` order (each followed by its +tv)."""
    rows = list(rows)
    movies = {m: i for i, m in enumerate(dict.fromkeys(r.movie for r in rows))}
    codecs = {c: i for i, c in enumerate(CODECS)}
    first = {}
    for i, r in enumerate(rows):
        first.setdefault(r.method.removesuffix("+tv"), i)

    def key(r):
        base = r.method.removesuffix("+tv")
        within = codecs.get(base, len(codecs)) if r.kind.startswith("codec") else first[base]
        return (movies[r.movie], r.B, _KIND_ORDER.get(r.kind, 9), within, r.method.endswith("+tv"))

    return sorted(rows, key=key)


def _fmt(v, spec: str, dash: str = "—") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return dash
    return format(v, spec)


def markdown_table(rows: Iterable[EvalRow], *, title: str | None = None) -> str:
    """Every row as a markdown table (one per movie), grouped by B."""
    rows = list(rows)
    out = []
    for movie in dict.fromkeys(r.movie for r in rows):
        rs = [r for r in rows if r.movie == movie]
        ref = rs[0].reference if rs else ""
        out.append(f"### {title or movie}\n\nReference: {ref}. PSNR/SSIM over all frames; data range = "
                   "reference max - min. Codec bytes = every byte of their files/streams; "
                   "'+tv' = oracle-tuned spatio-temporal TV denoiser (upper bound for the baselines).\n")
        out.append("| B | method | bytes | bytes / .tcs | ratio | PSNR (dB) | SSIM | settings | note |")
        out.append("|---:|---|---:|---:|---:|---:|---:|---|---|")
        for r in rs:
            out.append(f"| {r.B} | {r.method} | {_fmt(r.nbytes, ',')} | {_fmt(r.bytes_vs_tcs, '.3f')} | "
                       f"{_fmt(r.ratio, '.1f')} | {_fmt(r.psnr, '.2f')} | {_fmt(r.ssim, '.4f')} | "
                       f"{r.settings.replace('|', '/')} | {r.note.replace('|', '/')} |")
        out.append("")
    return "\n".join(out)


def summary_table(rows: Iterable[EvalRow], *, metric: str = "both") -> str:
    """Methods down, B across: ``PSNR / SSIM`` (``metric``: "psnr", "ssim" or
    "both"), with each B's ``.tcs`` ratio in the header; one table per movie."""
    rows = list(rows)
    out = []
    for movie in dict.fromkeys(r.movie for r in rows):
        rs = [r for r in rows if r.movie == movie]
        Bs = list(dict.fromkeys(r.B for r in rs if r.kind not in ("reference",)))
        ratio = {B: next((r.raw_bytes / r.tcs_bytes for r in rs if r.B == B and r.tcs_bytes), None) for B in Bs}
        out.append(f"**{movie}** (vs {rs[0].reference})\n")
        out.append("| method | " + " | ".join(f"B={B} ({_fmt(ratio[B], '.0f')}x)" for B in Bs) + " |")
        out.append("|---|" + "---:|" * len(Bs))
        methods = list(dict.fromkeys(r.method for r in rs))
        for m in methods:
            cells = []
            for B in Bs:
                r = next((r for r in rs if r.method == m and (r.B == B or r.kind == "reference")), None)
                if r is None or r.skipped:
                    cells.append("—" if r is None else "skipped")
                elif metric == "psnr":
                    cells.append(_fmt(r.psnr, ".2f"))
                elif metric == "ssim":
                    cells.append(_fmt(r.ssim, ".3f"))
                else:
                    cells.append(f"{_fmt(r.psnr, '.2f')} / {_fmt(r.ssim, '.3f')}")
            out.append(f"| {m} | " + " | ".join(cells) + " |")
        notes = sorted({f"{r.method}: {r.note}" for r in rs if r.skipped})
        if notes:
            out.append("\n" + "\n".join(f"- {n}" for n in notes))
        out.append("")
    return "\n".join(out)


def margin_table(rows: Iterable[EvalRow], decoder: str = "tcs-unfold",
                 against: dict[str, float] | None = None) -> str:
    """How far ``decoder`` is ahead of other methods, in PSNR (dB).

    One line per movie and B; a column per method of ``against`` (method
    name -> required lead in dB, e.g. ``{"jpeg": 3.0, "h265": 0.0}``; default:
    every other as-decoded method at 0) giving ``PSNR(decoder) - PSNR(method)
    - required``, so a cell >= 0 means the requirement is met.  The last
    lines count, per column, the cells met out of those measured (skipped
    or missing methods are left out) and give the median lead.
    """
    rows = [r for r in rows if not r.skipped and math.isfinite(r.psnr)]
    if against is None:
        against = {m: 0.0 for m in dict.fromkeys(
            r.method for r in rows if r.method != decoder and r.kind in ("decoder", "naive", "codec"))}
    psnr = {(r.movie, r.B, r.method): r.psnr for r in rows}
    order = {m: i for i, m in enumerate(dict.fromkeys(r.movie for r in rows))}
    cells = sorted({(r.movie, r.B) for r in rows if r.method == decoder}, key=lambda k: (order[k[0]], k[1]))
    head = [f"{m} + {req:g}" if req else m for m, req in against.items()]
    out = [f"| movie | B | {decoder} | " + " | ".join(head) + " |", "|---|---:|---:|" + "---:|" * len(against)]
    leads = {m: [] for m in against}
    for movie, B in cells:
        own = psnr[movie, B, decoder]
        line = []
        for m, req in against.items():
            other = psnr.get((movie, B, m))
            if other is None:
                line.append("—")
                continue
            leads[m].append(own - other - req)
            line.append(f"{leads[m][-1]:+.2f}")
        out.append(f"| {movie} | {B} | {own:.2f} | " + " | ".join(line) + " |")
    out.append("| **met** | | | " + " | ".join(f"{sum(v >= 0 for v in x)} / {len(x)}" for x in leads.values()) + " |")
    out.append("| **median** | | | " + " | ".join(f"{np.median(x):+.2f}" if x else "—" for x in leads.values()) + " |")
    return "\n".join(out)


def rows_to_json(rows: Iterable[EvalRow], **meta) -> dict[str, Any]:
    """``{"meta": {...}, "rows": [row.to_dict(), ...]}``."""
    return {"meta": meta, "rows": [r.to_dict() for r in rows]}


def _spectrum(img: np.ndarray) -> np.ndarray:
    """log10 power spectrum, centred; a Hann window keeps the frame's
    non-periodic edges from drawing a bright cross through it."""
    img = np.asarray(img, np.float64)
    win = np.outer(np.hanning(img.shape[0]), np.hanning(img.shape[1]))
    f = np.fft.fftshift(np.fft.fft2((img - img.mean()) * win))
    return np.log10(np.abs(f) ** 2 + 1e-12)


def save_figure(path, rows: Iterable[EvalRow], frames, clean=None, *, B: int | None = None,
                title: str | None = None) -> Path | None:
    """Figure for one movie at one B (default: the largest): panels of one
    frame (``clean`` when given, raw, the best decoder, JPEG at equal bytes)
    with their log power spectra underneath, and the PSNR of every frame for
    every method.  Returns the path, or None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [r for r in rows if not r.skipped]
    if not rows:
        return None
    B = B if B is not None else max(r.B for r in rows if r.kind != "reference")
    at = [r for r in rows if r.B == B or r.kind == "reference"]
    k = next((r.example_index for r in at if r.example_index is not None), len(frames) // 2)
    panels = []
    if clean is not None:
        ref_row = at[0]
        gain = 1.0
        m = re.search(r"clean x ([0-9.eE+-]+)", ref_row.reference)
        if m:
            gain = float(m.group(1))
        panels.append(("clean", np.asarray(clean[k], np.float32) * gain))
    panels.append(("raw", np.asarray(frames[k], np.float32)))
    decs = [r for r in at if r.kind == "decoder" and r.B == B]
    best = max(decs, key=lambda r: r.psnr) if decs else next((r for r in at if r.kind == "naive" and r.B == B), None)
    if best is not None:
        panels.append((f"{best.method} (.tcs, {best.ratio:.0f}x)\n{best.psnr:.2f} dB", best.example))
    jpeg = next((r for r in at if r.method == "jpeg" and r.B == B), None)
    if jpeg is not None:
        panels.append((f"JPEG at {jpeg.bytes_vs_tcs:.2f}x .tcs bytes\n{jpeg.psnr:.2f} dB", jpeg.example))
    ref_img = panels[0][1]
    lo, hi = np.percentile(ref_img, [0.5, 99.5])
    spec_raw = _spectrum(np.asarray(frames[k], np.float32))  # one colour scale: the raw frame's
    slo, shi = np.percentile(spec_raw, [1, 99.95])
    n = len(panels)
    fig = plt.figure(figsize=(3.2 * n, 9.5), dpi=110)
    gs = fig.add_gridspec(3, n, height_ratios=[1, 1, 1.1])
    for j, (label, img) in enumerate(panels):
        ax = fig.add_subplot(gs[0, j])
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(label, fontsize=9)
        ax.axis("off")
        ax = fig.add_subplot(gs[1, j])
        ax.imshow(_spectrum(img), cmap="magma", vmin=slo, vmax=shi)
        ax.set_title("log power spectrum", fontsize=8)
        ax.axis("off")
    ax = fig.add_subplot(gs[2, :])
    plotted = [r for r in at if r.psnr_frames and (r.B == B or r.kind == "reference")]
    cmap = plt.get_cmap("tab20")
    for j, r in enumerate(plotted):
        style = {"decoder": "-", "decoder+tv": "--", "naive": "--", "oracle": ":", "reference": "-.",
                 "codec": "-", "codec+tv": ":"}.get(r.kind, "-")
        ax.plot(np.arange(len(r.psnr_frames)), r.psnr_frames, style, color=cmap(j % 20),
                lw=2.2 if r.kind == "decoder" else 1.1, label=f"{r.method} ({r.psnr:.1f})")
    ax.set_xlabel("frame")
    ax.set_ylabel(f"PSNR vs {at[0].reference.split(' ')[0]} (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=4, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.suptitle(title or f"{at[0].movie}: B={B}, frame {k}", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def save_report(out_dir, rows: Sequence[EvalRow], frames, clean=None, *, title: str | None = None,
                meta: dict | None = None) -> dict[str, Path]:
    """Write ``table.md`` (summary and full tables), ``results.json``
    (:func:`rows_to_json` with ``meta``) and ``figure.png`` (largest B; and
    ``figure_B<B>.png`` for every B) into ``out_dir``; returns the paths."""
    import json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"table": out / "table.md", "json": out / "results.json"}
    head = f"# {title}\n\n" if title else ""
    paths["table"].write_text(head + summary_table(rows) + "\n" + markdown_table(rows) + "\n" + TV_NOTE + "\n")
    paths["json"].write_text(json.dumps(rows_to_json(rows, **(meta or {})), indent=1) + "\n")
    Bs = sorted({r.B for r in rows if not r.skipped and r.kind != "reference"})
    for B in Bs:
        p = save_figure(out / f"figure_B{B}.png", rows, frames, clean, B=B)
        if p is not None:
            paths[f"figure_B{B}"] = p
    if Bs:
        p = save_figure(out / "figure.png", rows, frames, clean, B=Bs[-1])
        if p is not None:
            paths["figure"] = p
    return paths


#: How the baselines were made, for reports.
TV_NOTE = (
    "Baselines: each codec's quality knob was searched so that the whole movie's compressed bytes "
    "(every file/stream byte, headers included) match the .tcs file's bytes without exceeding them "
    "(column 'bytes / .tcs'). '+tv' rows add a spatio-temporal total-variation proximal step "
    "(FGP, isotropic over t, y, x; the temporal weight tuned per codec at the first B, the TV weight "
    "per codec and B) tuned on the reference itself: an oracle-tuned upper bound for the baselines, "
    "not a practical decoder. The TCS decoders themselves are not tuned on the reference; "
    "'<decoder>+tv' rows apply the same oracle TV to a decoder's output for comparison. "
    "'oracle-static' is the mean of each group's clean frames. H.264/H.265 run two-pass at a "
    "searched bitrate with -tune psnr; AV1 (libaom) runs at an integer CRF, so it can land "
    "below the byte target."
)
