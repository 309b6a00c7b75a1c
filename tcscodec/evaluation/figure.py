"""The evaluation's figures, and the report folder of ``tcscodec eval``.

:func:`save_figure` draws one movie at one B: panels of one frame (clean,
raw, the best decoder, JPEG at equal bytes) with their power spectra, and
the PSNR of every frame for every method.  :func:`save_rd_plot` draws the
rate-distortion curves over the B swept.  :func:`save_report` writes the
tables, the JSON and the figures into a folder.  Needs matplotlib (the
figures are skipped without it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from .report import TV_NOTE, bd_table, markdown_table, rows_to_json, summary_table
from .run import AUTO_CURVE, B_order, EvalRow, curve_name

__all__ = ["save_figure", "save_rd_plot", "save_report"]


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend, or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _spectrum(img: np.ndarray) -> np.ndarray:
    """log10 power spectrum, centred; a Hann window keeps the frame's
    non-periodic edges from drawing a bright cross through it."""
    img = np.asarray(img, np.float64)
    win = np.outer(np.hanning(img.shape[0]), np.hanning(img.shape[1]))
    f = np.fft.fftshift(np.fft.fft2((img - img.mean()) * win))
    return np.log10(np.abs(f) ** 2 + 1e-12)


def save_figure(path, rows: Iterable[EvalRow], frames, clean=None, *, B: int | str | None = None,
                title: str | None = None) -> Path | None:
    """Figure for one movie at one B (default: the largest): panels of one
    frame (``clean`` when given, raw, the best decoder, JPEG at equal bytes)
    with their log power spectra underneath, and the PSNR of every frame for
    every method.  Returns the path, or None when matplotlib is missing."""
    plt = _pyplot()
    if plt is None:
        return None
    rows = [r for r in rows if not r.skipped]
    if not rows:
        return None
    B = B if B is not None else max((r.B for r in rows if r.kind != "reference"), key=B_order)
    at = [r for r in rows if r.B == B or r.kind == "reference"]
    k = next((r.example_index for r in at if r.example_index is not None), len(frames) // 2)
    panels: list[tuple[str, np.ndarray]] = []
    if clean is not None:  # in the reference's units: times the gain the run fitted
        panels.append(("clean", np.asarray(clean[k], np.float32) * at[0].gain))
    panels.append(("raw", np.asarray(frames[k], np.float32)))
    decs = [r for r in at if r.kind == "decoder" and r.B == B]
    best = max(decs, key=lambda r: r.psnr) if decs else next((r for r in at if r.kind == "naive" and r.B == B), None)
    if best is not None and best.example is not None:
        panels.append((f"{best.method} (.tcs, {best.ratio:.0f}x)\n{best.psnr:.2f} dB", best.example))
    jpeg = next((r for r in at if r.method == "jpeg" and r.B == B), None)
    if jpeg is not None and jpeg.example is not None:
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


def save_rd_plot(path, rows: Iterable[EvalRow], *, title: str | None = None) -> Path | None:
    """PSNR against the real compression ratio (log scale, falling to the
    right: more bytes) for every method measured at two B or more, one
    panel per movie.  Returns the path, or None when matplotlib is missing
    or no method has two points."""
    plt = _pyplot()
    if plt is None:
        return None
    curves: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for r in rows:
        if not r.skipped and r.ratio and np.isfinite(r.psnr) and r.kind in ("decoder", "codec", "naive"):
            curves.setdefault(r.movie, {}).setdefault(curve_name(r), []).append((r.ratio, r.psnr))
    movies = [m for m, c in curves.items() if any(len(v) >= 2 for v in c.values())]
    if not movies:
        return None
    fig, axes = plt.subplots(1, len(movies), figsize=(5 * len(movies), 4), squeeze=False)
    for ax, movie in zip(axes[0], movies, strict=True):
        for method, pts in curves[movie].items():
            auto = method.endswith(AUTO_CURVE)
            if len(pts) >= 2 or auto:  # one -B auto point is worth a marker
                pts.sort()
                style = ("s:" if auto else "o-") if method.startswith("tcs") else ".--"
                ax.plot(*zip(*pts, strict=True), style, label=method)
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("compression ratio (raw bytes / stored bytes)")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(movie)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def save_report(out_dir, rows: Sequence[EvalRow], frames, clean=None, *, title: str | None = None,
                meta: dict | None = None) -> dict[str, Path]:
    """Write ``table.md`` (summary, Bjøntegaard deltas where two B or more
    were run, and full tables), ``results.json`` (:func:`rows_to_json` with
    ``meta``), ``figure.png`` (largest B; and ``figure_B<B>.png`` for every
    B) and ``rd.png`` (:func:`save_rd_plot`) into ``out_dir``; returns the
    paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"table": out / "table.md", "json": out / "results.json"}
    head = f"# {title}\n\n" if title else ""
    bd = bd_table(rows) if len({r.B for r in rows}) >= 2 else ""
    bd = f"\n## Bjøntegaard deltas over the B swept\n\n{bd}\n" if bd.count("\n") >= 2 else ""
    paths["table"].write_text(head + summary_table(rows) + "\n" + bd + markdown_table(rows) + "\n" + TV_NOTE + "\n")
    paths["json"].write_text(json.dumps(rows_to_json(rows, **(meta or {})), indent=1) + "\n")
    Bs = sorted({r.B for r in rows if not r.skipped and r.kind != "reference"}, key=B_order)
    for B in Bs:
        p = save_figure(out / f"figure_B{str(B).replace(':', '_')}.png", rows, frames, clean, B=B)
        if p is not None:
            paths[f"figure_B{B}"] = p
    if Bs:
        p = save_figure(out / "figure.png", rows, frames, clean, B=Bs[-1])
        if p is not None:
            paths["figure"] = p
    p = save_rd_plot(out / "rd.png", rows, title=title)
    if p is not None:
        paths["rd"] = p
    return paths

