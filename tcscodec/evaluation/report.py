"""Reports of the evaluation's rows: markdown tables and JSON.

:func:`sort_rows` puts rows in report order; :func:`markdown_table` lists
every row, :func:`summary_table` gives methods down and B across,
:func:`margin_table` the learned decoder's lead over the others,
:func:`bd_table` its Bjøntegaard deltas over the B swept;
:func:`rows_to_json` is what ``results.json`` and ``quality.json`` hold;
:data:`TV_NOTE` says how the baselines were made.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from .codecs import CODECS
from .rd import bd_psnr, bd_rate, bd_rate_bound, psnr_over_curve
from .run import AUTO_CURVE, B_order, EvalRow, curve_name

__all__ = ["sort_rows", "markdown_table", "summary_table", "margin_table", "bd_table", "rows_to_json", "TV_NOTE"]


_KIND_ORDER = {"reference": 0, "decoder": 1, "decoder+tv": 1, "naive": 2, "oracle": 3, "codec": 4, "codec+tv": 4}


def sort_rows(rows: Iterable[EvalRow]) -> list[EvalRow]:
    """Rows in report order: by movie (first appearance), B, then raw,
    decoders (each followed by its +tv), Y/sum(C), oracle, codecs in
    :data:`CODECS` order (each followed by its +tv)."""
    rows = list(rows)
    movies = {m: i for i, m in enumerate(dict.fromkeys(r.movie for r in rows))}
    codecs = {c: i for i, c in enumerate(CODECS)}
    first: dict = {}
    for i, r in enumerate(rows):
        first.setdefault(r.method.removesuffix("+tv"), i)

    def key(r):
        base = r.method.removesuffix("+tv")
        within = codecs.get(base, len(codecs)) if r.kind.startswith("codec") else first[base]
        return (movies[r.movie], B_order(r.B), _KIND_ORDER.get(r.kind, 9), within, r.method.endswith("+tv"))

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
    cells = sorted({(r.movie, r.B) for r in rows if r.method == decoder}, key=lambda k: (order[k[0]], B_order(k[1])))
    head = [f"{m} + {req:g}" if req else m for m, req in against.items()]
    out = [f"| movie | B | {decoder} | " + " | ".join(head) + " |", "|---|---:|---:|" + "---:|" * len(against)]
    leads: dict[str, list] = {m: [] for m in against}
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


def bd_table(rows: Iterable[EvalRow], decoder: str | None = None, against: Iterable[str] | None = None) -> str:
    """Bjøntegaard deltas of ``decoder`` (default: the first decoder in
    ``rows``) against each method of ``against`` (default: every codec in
    ``rows``, as decoded).

    Each method's points over the B of a movie (its stored bytes, its PSNR)
    make its rate-distortion curve (:mod:`.rd`).  A cell gives BD-PSNR (dB,
    > 0: the decoder is better at equal bytes) and BD-rate (%, < 0: the
    decoder needs fewer bytes for equal PSNR; each curve read on its
    frontier, :func:`~.rd.rd_frontier`; where the frontiers' PSNR ranges
    do not overlap, the bound of :func:`~.rd.bd_rate_bound`, "< -60 %" or
    "> +40 %"; "—" where a frontier of one point lies inside the other's
    range).  A movie or method with fewer than two points is "—".

    Where ``rows`` hold ``-B auto`` files (:func:`~.run.grouping`), the
    decoder on them is a curve of its own, "<decoder> (auto)", one line
    below the fixed-B one, with a last column: its BD-PSNR against the
    decoder's fixed-B curve (a single auto point is compared at its own
    bytes; "—" outside the fixed curve's bytes).
    """
    rows = [r for r in rows if not r.skipped and math.isfinite(r.psnr) and r.nbytes]
    if decoder is None:
        decoder = next((r.method for r in rows if r.kind == "decoder"), "tcs-unfold")
    if against is None:
        order = {m: i for i, m in enumerate(CODECS)}
        against = sorted({r.method for r in rows if r.kind == "codec"}, key=lambda m: order.get(m, len(order)))
    against = [m for m in against if any(r.method == m for r in rows)]
    auto = decoder + AUTO_CURVE
    with_auto = any(curve_name(r) == auto for r in rows)
    out = ["| movie | B | " + " | ".join(f"{decoder} vs {m}: BD-PSNR / BD-rate" for m in against)
           + (" | auto vs fixed B: BD-PSNR |" if with_auto else " |"),
           "|---|---|" + "---:|" * (len(against) + with_auto)]

    def curve(movie, name):
        pts = sorted((r.nbytes, r.psnr) for r in rows if r.movie == movie and curve_name(r) == name)
        return [b for b, _ in pts], [p for _, p in pts]

    for movie in dict.fromkeys(r.movie for r in rows):
        fixed = curve(movie, decoder)
        for name in (decoder, auto) if with_auto else (decoder,):
            own = curve(movie, name)
            if len(own[0]) < 2 and not (name == auto and own[0]):
                continue
            cells = []
            for m in against:
                other = curve(movie, m)
                if len(other[0]) < 2 or len(own[0]) < 2:
                    cells.append("—")
                    continue
                rate = bd_rate(*other, *own)
                bound = bd_rate_bound(*other, *own) if math.isnan(rate) else None
                rate_cell = (f"{rate:+.0f} %" if not math.isnan(rate)
                             else f"{bound[0]} {bound[1]:+.0f} %" if bound else "—")
                cells.append(f"{_fmt(bd_psnr(*other, *own), '+.2f')} dB / {rate_cell}")
            if with_auto:
                gap = math.nan
                if name == auto and len(fixed[0]) >= 2:
                    gap = (bd_psnr(fixed[0], fixed[1], *own) if len(own[0]) >= 2
                           else psnr_over_curve(fixed[0], fixed[1], own[0][0], own[1][0]))
                cells.append(_fmt(gap, "+.2f") + (" dB" if math.isfinite(gap) else ""))
            Bs = sorted({r.B for r in rows if r.movie == movie and curve_name(r) == name}, key=B_order)
            out.append(f"| {movie} | {','.join(map(str, Bs))} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def rows_to_json(rows: Iterable[EvalRow], **meta) -> dict[str, Any]:
    """``{"meta": {...}, "rows": [row.to_dict(), ...]}``."""
    return {"meta": meta, "rows": [r.to_dict() for r in rows]}


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
