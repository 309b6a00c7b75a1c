"""What the quantisation step costs: real ratio and decoded PSNR per step.

    python bench/quantize.py                                   # all quality-bench movies
    python bench/quantize.py --movies sample,sim0 --fractions 1,1.5,2 -B 10,30
    python bench/quantize.py --checkpoint runs/tcs-unfold-v8/checkpoint.pt   # a training checkpoint

For each movie (the movies of ``bench/quality.py``) and B, the movie is
written lossless (``quant_step=1``) and with ``quant_step="auto"`` at each
``auto_fraction`` (the step as a multiple of the measurement's shot-noise
std; ``tcscodec encode`` uses ``tcscodec.writer.AUTO_FRACTION``), decoded
with the learned decoder, and compared with the clean movie.  Prints a
markdown table: step, real ratio (raw bytes / file bytes) and PSNR, and
the PSNR change from the lossless file.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import tcscodec
from tcscodec.metrics import psnr
from tcscodec.writer import AUTO_FRACTION

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import movie_names, reference_movies  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--movies", default=",".join(movie_names()))
    ap.add_argument("-B", default="10,20,30")
    ap.add_argument("--fractions", default="1,1.5,2,3")
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    ap.add_argument("--checkpoint", help="decode with this training checkpoint instead of the shipped weights")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--seed", type=int, default=7, help="mask seed")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    from tcscodec import evaluation as ev

    decoder = ev.with_checkpoint(["tcs-unfold"], a.checkpoint)[0] if a.checkpoint else "tcs-unfold"
    fractions = [float(f) for f in a.fractions.split(",")]
    print(f"tcscodec encode's default: auto_fraction {AUTO_FRACTION:g}\n")
    print("| movie | B | step | ratio | PSNR (dB) | vs lossless |\n|---|---:|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as d:
        for name, frames, ref in reference_movies(a.movies.split(","), a.shared):
            for B in (int(b) for b in a.B.split(",")):
                base = None
                for frac in [None, *fractions]:
                    path = Path(d) / "m.tcs"
                    step = 1.0 if frac is None else "auto"
                    tcscodec.write(path, frames, B=B, seed=a.seed, quant_step=step, auto_fraction=frac or 1.0)
                    with tcscodec.open(path, decoder=decoder) as r:
                        value = psnr(r.read(), ref)
                        used = r.header.quant_step
                    ratio = frames.nbytes / os.path.getsize(path)
                    base = value if frac is None else base
                    what = "lossless" if frac is None else f"{frac:g} x std = {used:g}"
                    print(f"| {name} | {B} | {what} | {ratio:.1f}x | {value:.2f} | {value - base:+.2f} |", flush=True)


if __name__ == "__main__":
    main()
