"""Quality evaluation: TCS decoders against conventional codecs at equal real bytes.

:func:`evaluate` encodes a movie into a ``.tcs`` file for each B (or
``-B auto`` at a tolerance: ``"auto"``, ``"auto:2"``, :func:`grouping`) and
measures, against the clean movie when one is given (else against the raw
frames), every decoder of the file, the naive ``Y/sum(C)``, a static oracle,
the raw frames, and conventional codecs whose knob is searched so that their
bytes equal the ``.tcs`` file's.  Each codec and decoder is also reported
followed by a spatio-temporal TV denoiser tuned **on the reference** (an
oracle-tuned upper bound for the baselines; the TCS decoders themselves are
not tuned on the truth).

One concept per module, in the order a run goes through them:

:mod:`.metrics`
    SSIM (:func:`ssim`, :func:`ssim_map`; Wang et al. 2004, 11 x 11
    Gaussian window, sigma 1.5) and the package's PSNR, over the whole movie
    with one data range, the reference's ``max - min``.
:mod:`.tv`
    The oracle-tuned TV denoiser of the ``+tv`` rows (:func:`tv_denoise`,
    :func:`tune_tv`, :class:`TVFit`).
:mod:`.codecs`
    The conventional codecs (:data:`CODECS`: per-frame JPEG, JPEG 2000,
    JPEG XL; H.264, H.265 and AV1 through ffmpeg) and the linear map of a
    movie onto their integer samples.
:mod:`.search`
    The equal-bytes search of a codec's knob (:func:`encode_at_bytes`).
:mod:`.checkpoints`
    Training checkpoints as registered decoders (:func:`checkpoint_decoder`,
    :func:`with_checkpoint`).
:mod:`.run`
    :func:`evaluate` and its rows (:class:`EvalRow`), the reference movie
    (:func:`reference_movie`), the naive decoder (:func:`naive_decode`),
    the B entries (:func:`grouping`, :func:`B_order`) and the
    rate-distortion curve a row is on (:func:`curve_name`).
:mod:`.report`
    Markdown tables and JSON (:func:`summary_table`, :func:`markdown_table`,
    :func:`margin_table`, :func:`rows_to_json`).
:mod:`.figure`
    The figure (:func:`save_figure`: one frame of raw / best decoder / JPEG
    with their power spectra, and the PSNR of every frame for every method)
    and the report folder of ``tcscodec eval`` (:func:`save_report`).

Every name is importable from here (``from tcscodec import evaluation as
ev; ev.evaluate(...)``).  Needs scipy (SSIM); Pillow and imagecodecs for the
image codecs, ffmpeg on ``PATH`` for the video codecs, matplotlib for the
figure (all optional: missing ones are skipped with a note).
"""

from __future__ import annotations

from .checkpoints import CheckpointFactory, checkpoint_decoder, with_checkpoint
from .codecs import CODECS, DEFAULT_CODECS, QUICK_CODECS, SampleMapping, codec_unavailable
from .codecs import _strip_sei as _strip_sei  # private: re-exported for the tests
from .figure import save_figure, save_rd_plot, save_report
from .metrics import ssim, ssim_map
from .rd import bd_psnr, bd_rate
from .report import TV_NOTE, bd_table, margin_table, markdown_table, rows_to_json, sort_rows, summary_table
from .run import (
    AUTO,
    DEFAULT_DECODERS,
    MOTION_SUFFIX,
    NAIVE,
    ORACLE,
    STILL_SUFFIX,
    B_order,
    EvalRow,
    curve_name,
    evaluate,
    grouping,
    naive_decode,
    reference_movie,
)
from .search import CodecOutput, encode_at_bytes
from .tv import TEMPORAL_CANDIDATES, TVFit, tune_tv, tv_denoise

_Mapping = SampleMapping  # the tests know it by its former name

__all__ = [
    "EvalRow",
    "evaluate",
    "naive_decode",
    "reference_movie",
    "NAIVE",
    "ORACLE",
    "STILL_SUFFIX",
    "MOTION_SUFFIX",
    "AUTO",
    "grouping",
    "B_order",
    "curve_name",
    "ssim",
    "ssim_map",
    "tv_denoise",
    "tune_tv",
    "TVFit",
    "TEMPORAL_CANDIDATES",
    "CODECS",
    "DEFAULT_CODECS",
    "QUICK_CODECS",
    "DEFAULT_DECODERS",
    "codec_unavailable",
    "encode_at_bytes",
    "CodecOutput",
    "CheckpointFactory",
    "checkpoint_decoder",
    "with_checkpoint",
    "markdown_table",
    "summary_table",
    "margin_table",
    "bd_table",
    "bd_psnr",
    "bd_rate",
    "sort_rows",
    "rows_to_json",
    "TV_NOTE",
    "save_figure",
    "save_rd_plot",
    "save_report",
]
