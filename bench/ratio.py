"""Real byte ratio (raw bytes / .tcs file bytes) of the movies in ../shared/data.

    python bench/ratio.py [--shared ../shared] [-B 10,20,30] [--codecs predict-rice,shuffle-zstd]
                          [--quantize 1|auto] [--json out.json]

For reference it also gives the ratio of zstd -3 on the raw frames (lossless)
and the nominal ratio B.  Lossless measurements (quant_step 1) by default.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import zstandard

import tcscodec
from tcscodec.movies import open_movie

MOVIES = [
    "sim/sim_abtem_Au_aC_movie_counts.tif",
    "sim/sim_detwin_DE16_raw.tif",
    "semireal/semireal_MoS2_ADF_64x256_counts.tif",
    "real/STEM_scanning_preview_series_5x128x128_uint16.npy",
    "real/TEM_preview_series_5x64x64_float32.npy",
]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    ap.add_argument("-B", default="10,20,30")
    ap.add_argument("--codecs", default="predict-rice", help="record codecs, comma-separated")
    ap.add_argument("--quantize", default="1", help="quant_step: a number or 'auto'")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    Bs = [int(b) for b in a.B.split(",")]
    codecs = a.codecs.split(",")
    step = a.quantize if a.quantize == "auto" else float(a.quantize)
    cols = [(codec, B) for codec in codecs for B in Bs]
    rows = []
    for rel in MOVIES:
        path = a.shared / "data" / rel
        if not path.exists():
            print(f"skipping {rel}: not found")
            continue
        with open_movie(path) as m:
            frames = np.stack(list(m))
        raw = frames.nbytes
        row = {"movie": rel, "shape": frames.shape, "dtype": frames.dtype.name,
               "mean": float(frames.mean()),
               "zstd3_raw": raw / len(zstandard.ZstdCompressor(level=3).compress(frames.tobytes()))}
        with tempfile.TemporaryDirectory() as d:
            for codec, B in cols:
                out = Path(d) / "m.tcs"
                tcscodec.write(out, frames, B=B, seed=1, codec=codec, quant_step=step)
                row[f"{codec} B={B}"] = raw / out.stat().st_size
        rows.append(row)
    print(f"quant_step {a.quantize}")
    head = "| movie | shape | dtype | mean | zstd -3 raw | " + " | ".join(f"{c} B={B}" for c, B in cols) + " |"
    print(head + "\n|" + "---|" * (head.count("|") - 1))
    for r in rows:
        print(f"| {r['movie']} | {'x'.join(map(str, r['shape']))} | {r['dtype']} | {r['mean']:.1f} | "
              f"{r['zstd3_raw']:.2f}x | " + " | ".join(f"{r[f'{c} B={B}']:.1f}x" for c, B in cols) + " |")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1, default=list))


if __name__ == "__main__":
    main()
