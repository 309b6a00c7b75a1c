"""The conventional codecs the ``.tcs`` files are compared with.

Per-frame JPEG (Pillow), JPEG 2000 and JPEG XL (imagecodecs), and the H.264,
H.265 and AV1 video codecs (ffmpeg with libx264, libx265, libaom-av1 or
libsvtav1), each with one quality knob (JPEG quality, OpenJPEG's PSNR
target, JPEG XL distance, x264/x265 two-pass bitrate, AV1 CRF) that
:mod:`.search` turns until the bytes match a budget.  :data:`CODECS` holds
one stateless instance of each, by name; :func:`codec_unavailable` says why
one cannot run here (a missing library or encoder is a skipped row, not an
error).  Video encoders take their thread count as an argument of
:meth:`ConventionalCodec.encode`.

Frames are mapped to the codecs' integer samples by a recorded linear map
(:class:`SampleMapping`) ``code = round((x - lo) * scale)`` with ``lo``/``hi``
the movie's minimum and maximum and ``scale = (2**depth - 1) / (hi - lo)``
(the full code range: the fairest input for codecs tuned on full-range
content), inverted after decoding.  The bit depth is 8 when the movie is
integer with at most 256 levels (no information lost), else the codec's
deepest supported (16 for JPEG 2000 / JPEG XL, 10 for H.264, 12 for H.265
and libaom AV1); Pillow's JPEG is 8-bit only.
"""

from __future__ import annotations

import functools
import io
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TcsRuntimeError

__all__ = ["CODECS", "DEFAULT_CODECS", "QUICK_CODECS", "ConventionalCodec", "SampleMapping", "codec_unavailable"]

#: every codec of :data:`CODECS`, in report order
DEFAULT_CODECS = ("jpeg", "jpeg2000", "jpegxl", "h264", "h265", "av1")
#: the codecs a plain ``tcscodec eval`` compares with: the still-image and the
#: video codecs that set today's bar (JPEG 2000 and H.264 on request)
QUICK_CODECS = ("jpeg", "jpegxl", "h265", "av1")


@dataclass(frozen=True)
class SampleMapping:
    """Linear map of the movie onto a codec's ``depth``-bit integer samples."""

    lo: float
    scale: float
    depth: int

    @classmethod
    def for_movie(cls, frames: np.ndarray, depth: int) -> SampleMapping:
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


class ConventionalCodec:
    """A conventional codec with one quality knob (subclasses fill these in).

    Instances hold no state: :data:`CODECS` shares one of each, and what
    varies between calls (sample depth, knob, work folder, threads) is an
    argument.
    """

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

    def encode(self, codes: np.ndarray, depth: int, knob: float, tmp: Path, *,
               threads: int = 1) -> tuple[int, Any]:
        """Encode the whole movie of integer ``codes``; return (bytes, payload).

        ``tmp`` is a folder for the encoder's files; ``threads`` the
        encoder's threads (the video codecs; the per-frame image codecs
        always run one).
        """
        raise NotImplementedError

    def decode(self, payload: Any, shape, depth: int, tmp: Path) -> np.ndarray:
        raise NotImplementedError


# -- still-image codecs, one file per frame ----------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _ijg_base() -> tuple[int, ...]:
    """libjpeg's own luminance table at quality 50 (the IJG base table), in
    natural order: read back from a file Pillow writes, so it is the table
    of the libjpeg in use."""
    from PIL import Image, JpegImagePlugin

    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buf, "JPEG", quality=50)
    jpeg = Image.open(io.BytesIO(buf.getvalue()))
    assert isinstance(jpeg, JpegImagePlugin.JpegImageFile)  # what PIL reads a JPEG as; typed for .quantization
    return tuple(jpeg.quantization[0])


def _ijg_table(quality: float) -> list[int]:
    """The IJG luminance table scaled as libjpeg's ``quality`` (continuous here)."""
    q = min(max(float(quality), 1.0), 100.0)
    s = 5000.0 / q if q < 50 else 200.0 - 2.0 * q
    return [int(min(max((b * s + 50) // 100, 1), 255)) for b in _ijg_base()]


class _Jpeg(ConventionalCodec):
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

    def encode(self, codes, depth, knob, tmp, *, threads=1):
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


class _ImagecodecsCodec(ConventionalCodec):
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

    def encode(self, codes, depth, knob, tmp, *, threads=1):
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

    def encode(self, codes, depth, knob, tmp, *, threads=1):
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


class _Video(ConventionalCodec):
    """A video codec run by ffmpeg: raw gray frames in, an elementary stream
    out (Annex-B for H.264/H.265, low-overhead OBUs for AV1), every byte
    counted.  Default GOP (one intra frame for short movies); full-range
    samples (``-color_range pc``: no 16..235 squeeze).  Subclasses set the
    rate control (CRF by default: lower is better quality)."""

    integer = False
    increasing = False
    encoder = ""
    muxer = ""

    def unavailable(self):
        ff = _ffmpeg()
        if ff is None:
            return "ffmpeg is not on PATH"
        if self.encoder not in _ffmpeg_encoders(ff):
            return f"ffmpeg has no {self.encoder} encoder"
        return None

    def pix_fmt(self, depth: int) -> str:
        return _GRAY[depth]

    def args(self, knob: float, depth: int, threads: int) -> list[str]:
        """Encoder arguments of a one-pass codec at setting ``knob``."""
        raise NotImplementedError

    def _frames_in(self, codes: np.ndarray, depth: int) -> bytes:
        return np.ascontiguousarray(codes.astype("<u2" if depth > 8 else np.uint8)).tobytes()

    def passes(self, knob: float, depth: int, tmp: Path, threads: int) -> list[list[str]]:
        """Encoder arguments of each pass (one pass by default)."""
        return [self.args(knob, depth, threads)]

    def encode(self, codes, depth, knob, tmp, *, threads=1):
        T, H, W = codes.shape
        out = Path(tmp) / f"{self.name}.{self.muxer}"
        frames = self._frames_in(codes, depth)
        passes = self.passes(knob, depth, Path(tmp), threads)
        for i, args in enumerate(passes):
            # The (analysis) passes before the last write nothing.
            dest = ["-f", self.muxer, str(out)] if i == len(passes) - 1 else ["-f", "null", "-"]
            cmd = [_ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
                   "-f", "rawvideo", "-pix_fmt", self.pix_fmt(depth), "-s", f"{W}x{H}", "-framerate", "25",
                   "-color_range", "pc", "-i", "pipe:0", "-an", "-c:v", self.encoder, *args,
                   "-pix_fmt", self.pix_fmt(depth), "-color_range", "pc", *dest]
            proc = subprocess.run(cmd, input=frames, capture_output=True, timeout=1800, cwd=tmp)
            if proc.returncode != 0:
                raise TcsRuntimeError(f"{self.encoder} failed: {proc.stderr.decode(errors='replace')[-500:]}")
        if not out.exists():
            raise TcsRuntimeError(f"{self.encoder} wrote no stream")
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
            raise TcsRuntimeError(f"ffmpeg could not decode its {self.encoder} stream: "
                               f"{proc.stderr.decode(errors='replace')[-500:]}")
        return self._frames_out(proc.stdout, shape, depth)

    def _frames_out(self, raw: bytes, shape, depth) -> np.ndarray:
        T, H, W = shape
        a = np.frombuffer(raw, "<u2" if depth > 8 else np.uint8)
        if a.size != T * H * W:
            raise TcsRuntimeError(f"{self.encoder}: decoded {a.size} samples, expected {T * H * W}")
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

    def passes(self, knob, depth, tmp, threads):
        common = ["-preset", "veryslow", "-tune", "psnr", "-b:v", f"{knob:.3f}k", "-threads", str(threads),
                  "-passlogfile", str(tmp / "x264-2pass")]
        return [common + ["-pass", "1"], common + ["-pass", "2"]]


class _H265(_TwoPass):
    name, label, encoder, muxer = "h265", "H.265 (x265 slow, tune psnr, 2-pass)", "libx265", "hevc"
    depths = (8, 10, 12)

    def passes(self, knob, depth, tmp, threads):
        params = f"log-level=error:info=0:pools={threads}:frame-threads=1:stats={tmp / 'x265-2pass.log'}"
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

    def args(self, knob, depth, threads):
        if self.svt:
            return ["-crf", str(int(round(max(knob, 1)))), "-preset", "6"]
        return ["-crf", str(int(round(knob))), "-b:v", "0", "-cpu-used", "4", "-row-mt", "1",
                "-threads", str(threads)]

    def _frames_in(self, codes, depth):
        if not self.svt:
            return super()._frames_in(codes, depth)
        T, H, W = codes.shape
        if H % 2 or W % 2:
            raise TcsRuntimeError("SVT-AV1 needs even frame sizes")
        dt = "<u2" if depth > 8 else np.uint8
        chroma = np.full((T, H // 2 * W // 2 * 2), 1 << (depth - 1), dt)  # neutral U and V
        return np.concatenate([codes.reshape(T, -1).astype(dt), chroma], 1).tobytes()

    def _frames_out(self, raw, shape, depth):
        if not self.svt:
            return super()._frames_out(raw, shape, depth)
        T, H, W = shape
        a = np.frombuffer(raw, "<u2" if depth > 8 else np.uint8).reshape(T, -1)
        return a[:, : H * W].reshape(T, H, W)  # the luma plane


CODECS: dict[str, ConventionalCodec] = {c.name: c for c in (_Jpeg(), _Jpeg2000(), _JpegXL(), _H264(), _H265(), _AV1())}


def codec_unavailable(name: str) -> str | None:
    """None when codec ``name`` (a key of :data:`CODECS`) can run here, else why not."""
    if name not in CODECS:
        return f"unknown codec {name!r} (known: {', '.join(CODECS)})"
    return CODECS[name].unavailable()

