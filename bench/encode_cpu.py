"""CPU encoder throughput, next to numpy memcpy and zstd on the raw frames.

    python bench/encode_cpu.py [--size 2048] [--frames 60] [--json out.json]

All figures are MB/s of *input* frames on one core (numpy is single-threaded
here; record compression is given one thread).  Frames are Poisson counts
(mean 20) in uint16, like a low-dose detector movie.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import zstandard

import tcscodec
from tcscodec.encoder import CpuEncoder


def rate(fn, nbytes, repeat=3, setup=None):
    """Best-of-``repeat`` MB/s of ``fn(setup())`` processing ``nbytes``;
    ``setup`` is not timed."""
    best = float("inf")
    for _ in range(repeat):
        arg = setup() if setup else None
        t = time.perf_counter()
        fn(arg) if setup else fn()
        best = min(best, time.perf_counter() - t)
    return nbytes / best / 1e6


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    frames = rng.poisson(20, (a.frames, a.size, a.size)).astype(np.uint16)
    nbytes = frames.nbytes
    out = np.empty_like(frames[0])
    rows, setup_s = {}, {}
    rows["numpy memcpy"] = rate(lambda: [np.copyto(out, f) for f in frames], nbytes)
    cctx = zstandard.ZstdCompressor(level=3)
    rows["zstd -3 of raw frames"] = rate(lambda: [cctx.compress(f.tobytes()) for f in frames], nbytes)
    for B in (10, 30):
        def push_all(enc):
            for f in frames:
                enc.push(f)
        # Mask set-up (once per movie) is not timed: it is amortised over the movie.
        rows[f"CpuEncoder.push, B={B}"] = rate(
            push_all, nbytes, setup=lambda: CpuEncoder(1, B, frames.shape[1:], frames.dtype))
        t = time.perf_counter()
        CpuEncoder(1, B, frames.shape[1:], frames.dtype)
        setup_s[B] = time.perf_counter() - t
        for codec in ("predict-rice", "shuffle-zstd"):
            with tempfile.TemporaryDirectory() as d:
                path = Path(d) / "m.tcs"
                rows[f"tcscodec.write (encode + {codec}, lossless, 1 thread), B={B}"] = rate(
                    lambda: tcscodec.write(path, frames, B=B, seed=1, threads=1, codec=codec), nbytes)
                rows[f"  file ratio, B={B}, {codec}"] = nbytes / path.stat().st_size
    print(f"{a.frames} frames of {a.size}x{a.size} uint16 (Poisson mean 20), one core\n")
    print("| what | MB/s of input |\n|---|---:|")
    for k, v in rows.items():
        print(f"| {k} | {v:,.1f}{'x' if 'ratio' in k else ''} |")
    print("\nmask set-up per movie: " + ", ".join(f"B={B}: {t * 1000:.0f} ms" for B, t in setup_s.items()))
    if a.json:
        a.json.write_text(json.dumps({**rows, "mask_setup_s": setup_s}, indent=1))


if __name__ == "__main__":
    main()
