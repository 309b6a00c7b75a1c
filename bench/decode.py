"""Decode time per frame and peak memory of the tiled engine with a decoder.

    python bench/decode.py [--sizes 512,4096] [--B 10,30] [--iterations 40]
                           [--decoder gap-tv] [--device cpu] [--tile 256]
                           [--overlap 32] [--batch N] [--threads 1]
                           [--repeat N] [--json out.json]
                           [--checkpoint runs/NAME/checkpoint.pt]   # a training checkpoint as the decoder

Each (size, B) configuration runs in its own subprocess, so its peak RSS
(``ru_maxrss``) is its own.  The measurement is a synthetic low-dose EM-like
movie (a drifting lattice with particles, Poisson counts, mean ~50 per
pixel) encoded with the spec masks, generated band by band; the masks are
computed per band of tiles by the engine (``mask_fn``), as the reader does.

Columns: seconds per decoded frame (the group's decode time / B, first
call included), the same for later calls (``--repeat``: the rate of a long
movie, weights loaded), total decode time of the first call, the GAP-TV
iteration count, peak RSS of the process, the size of the float32 output
array (allocated and touched before decoding, so it counts
in RSS), and the engine's own overhead: peak RSS during decoding minus the
RSS just before it (which already holds the output and the measurement).
The peak is reset before decoding where Linux allows (/proc/self/clear_refs),
so the synthesis of the movie does not count.  For sizes <= 1024 the PSNR of the decoded frames against
the noise-free movie is given, with that of the naive ``Y / sum C``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BAND = 256  # rows per band when synthesising the movie


def _rss_mb() -> float:
    """Current resident set size in MB (Linux /proc, else ru_maxrss)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:  # pragma: no cover - non-Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def _peak_rss_mb() -> float:
    """Peak RSS in MB: VmHWM (which clear_refs resets), else ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1e3
    except OSError:  # pragma: no cover - non-Linux
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1e6 if sys.platform == "darwin" else r / 1e3


def _reset_peak_rss() -> None:
    """Reset ru_maxrss to the current RSS (Linux >= 4.0; else a no-op)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _clean_band(y0, y1, W, b):
    """Noise-free frame b of the synthetic movie, rows y0:y1 (counts).

    A hexagonal lattice drifting by (0.3, 0.7) px per frame, with Gaussian
    particles (about one per 200 x 200 px) moving faster, mean ~50 counts.
    """
    yy, xx = np.mgrid[y0:y1, 0:W].astype(np.float32)
    u, v = xx - 0.7 * b, yy - 0.3 * b
    k = 0.55
    frame = 0.5 + 0.25 * (np.cos(k * u) + np.cos(k * (0.5 * u + 0.866 * v)))
    rng = np.random.default_rng(12345)  # the same particles in every band
    for _ in range(max(1, W * W // 40000)):
        cy, cx, r = rng.random() * W + 1.2 * b, rng.random() * W + 1.5 * b, 6 + 18 * rng.random()
        h = int(3 * r) + 1
        a0, a1 = max(int(cy) - h, y0), min(int(cy) + h, y1)
        c0, c1 = max(int(cx) - h, 0), min(int(cx) + h, W)
        if a0 < a1 and c0 < c1:
            d2 = (yy[a0 - y0 : a1 - y0, c0:c1] - cy) ** 2 + (xx[a0 - y0 : a1 - y0, c0:c1] - cx) ** 2
            frame[a0 - y0 : a1 - y0, c0:c1] += 0.8 * np.exp(-d2 / (2 * r * r))
    return 50.0 * frame


def _measurement(size, B, seed, keep_clean):
    from tcscodec.masks import masks as spec_masks

    rng = np.random.default_rng(0)
    y = np.zeros((size, size), np.float32)
    clean = np.zeros((B, size, size), np.float32) if keep_clean else None
    for y0 in range(0, size, BAND):
        y1 = min(y0 + BAND, size)
        C = spec_masks(seed, B, size, size, (y0, y1, 0, size))
        acc = np.zeros((y1 - y0, size), np.float64)
        for b in range(B):
            f = _clean_band(y0, y1, size, b)
            if keep_clean:
                clean[b, y0:y1] = f
            acc += C[b] * rng.poisson(f)
        y[y0:y1] = acc
    return y, clean


def _psnr(x, ref):
    peak = float(ref.max())
    mse = ((x.astype(np.float64) - ref) ** 2).mean(axis=(1, 2))
    return float(np.mean(20 * np.log10(peak / np.sqrt(mse))))


def worker(a) -> dict:
    import torch

    torch.set_num_threads(a.threads)
    from tcscodec.decoders import decode_tiled
    from tcscodec.masks import masks as spec_masks, measured_mean

    if a.checkpoint:
        from tcscodec.evaluation import checkpoint_decoder

        a.decoder = checkpoint_decoder(a.checkpoint)
    size, B, seed = a.size, int(a.B), 7
    y, clean = _measurement(size, B, seed, keep_clean=size <= 1024)

    def mask_fn(y0, y1, x0, x1):
        return spec_masks(seed, B, size, size, (y0, y1, x0, x1))

    def context_fn(y0, y1, x0, x1):
        # Neighbouring groups of a static scene (this group's Y / sum C), made
        # band by band as the reader reads them: what a decoder with context
        # costs in time and memory.
        mean = measured_mean(y[y0:y1, x0:x1], mask_fn(y0, y1, x0, x1).sum(0)).astype(np.float32)
        return np.stack([mean, mean])

    out = np.empty((B, size, size), np.float32)
    out.fill(0)  # touch the pages now: the output is not the engine's memory
    options = {}
    if a.decoder == "gap-tv":
        options["iterations"] = a.iterations
    _reset_peak_rss()
    rss0 = _rss_mb()
    times = []
    for _ in range(a.repeat):
        t = time.perf_counter()
        decode_tiled(y, mask_fn, B, decoder=a.decoder, device=a.device, tile=a.tile,
                     overlap=a.overlap, batch=a.batch, out=out, context_fn=context_fn, **options)
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    seconds = times[0]
    row = {
        "size": size,
        "B": B,
        "decoder": a.decoder,
        "device": a.device,
        "iterations": a.iterations if a.decoder == "gap-tv" else None,
        "tile": a.tile,
        "overlap": a.overlap,
        "batch": a.batch,
        "threads": a.threads,
        "seconds": round(seconds, 3),
        "s_per_frame": round(seconds / B, 4),
        # later calls: the rate of a long movie, with weights and kernels loaded
        "s_per_frame_steady": round(float(np.median(times[1:])) / B, 4) if len(times) > 1 else None,
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "rss_before_mb": round(rss0, 1),
        "out_mb": round(out.nbytes / 1e6, 1),
    }
    row["engine_mb"] = round(row["peak_rss_mb"] - rss0, 1)
    if a.device.startswith("cuda"):
        row["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 1e6, 1)
    if clean is not None:
        C = mask_fn(0, size, 0, size)
        base = np.broadcast_to(y / np.maximum(C.sum(0), 1), clean.shape)
        row["psnr_db"] = round(_psnr(out, clean), 2)
        row["psnr_baseline_db"] = round(_psnr(base, clean), 2)
    return row


def table(rows) -> str:
    head = ("| size | B | iterations | tile | batch | threads | s / frame | later calls s / frame | total s "
            "| peak RSS MB | out MB | engine MB | PSNR dB (Y/ΣC) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        psnr = f"{r['psnr_db']} ({r['psnr_baseline_db']})" if "psnr_db" in r else "-"
        lines.append(
            f"| {r['size']}² | {r['B']} | {r['iterations']} | {r['tile']} | {r['batch'] or 'auto'} "
            f"| {r['threads']} | {r['s_per_frame']:.3f} "
            f"| {'-' if r.get('s_per_frame_steady') is None else format(r['s_per_frame_steady'], '.3f')} "
            f"| {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} "
            f"| {r['out_mb']:.0f} | {r['engine_mb']:.0f} | {psnr} |"
        )
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="512,4096", help="comma-separated frame sizes (square)")
    ap.add_argument("--B", default="10,30", help="comma-separated group sizes")
    ap.add_argument("--iterations", type=int, default=40, help="GAP-TV iterations")
    ap.add_argument("--decoder", default="gap-tv")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--batch", type=int, default=None, help="tiles per batch (default: engine's)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--repeat", type=int, default=1,
                    help="decode the group this many times; later calls give the steady rate of a long movie")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    ap.add_argument("--checkpoint", help="decode with the network of this training checkpoint")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(a)))
        return
    rows = []
    for size in (int(s) for s in a.sizes.split(",")):
        for B in (int(b) for b in a.B.split(",")):
            cmd = [sys.executable, __file__, "--worker", "--size", str(size), "--B", str(B),
                   "--iterations", str(a.iterations), "--decoder", a.decoder, "--device", a.device,
                   "--tile", str(a.tile), "--overlap", str(a.overlap), "--threads", str(a.threads),
                   "--repeat", str(a.repeat)]
            if a.checkpoint:
                cmd += ["--checkpoint", a.checkpoint]
            if a.batch is not None:
                cmd += ["--batch", str(a.batch)]
            env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
            res = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if res.returncode:
                sys.stderr.write(res.stderr)
                raise SystemExit(f"configuration {size}² B={B} failed")
            row = json.loads(res.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{size}² B={B}: {row['s_per_frame']:.3f} s/frame, peak RSS {row['peak_rss_mb']:.0f} MB",
                  file=sys.stderr, flush=True)
    print(table(rows))
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
