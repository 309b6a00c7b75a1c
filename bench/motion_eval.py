"""Motion compensation with a training checkpoint, against the shipped weights.

    python bench/motion_eval.py runs/tcs-unfold-v13/checkpoint.pt --threads 2
    python bench/motion_eval.py CKPT --movies drift0,semireal -B 10,30

For each movie (``bench/quality.py --list``) and B, the file is written as
``tcscodec encode`` writes it by default (``--quantize auto``, seed 0, the
same files as bench/quality.py), and decoded three ways: the shipped weights
decoding every group as still (today's default), the checkpoint as still,
and the checkpoint in the moving frame (``motion=True``).  PSNR against the
noise-free movie (the quality bench's gain fit), the static oracle (each
group's mean clean frame), the seconds each decode took, and how many
groups the estimated motion compensates.  A quick check of a fine-tune
before the full quality bench.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import tcscodec  # noqa: E402
from quality import reference_movies  # noqa: E402

MOVIES = "drift0,drift1,drift3,drift4,drift5,semireal,abtem,sample,sim0,sim1,sim2"


def _psnr(x: np.ndarray, ref: np.ndarray) -> float:
    r = float(ref.max() - ref.min())
    return 10 * math.log10(r * r / float(np.mean((x - ref) ** 2)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--movies", default=MOVIES)
    ap.add_argument("-B", default="10,30")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    a = ap.parse_args()

    import torch

    from tcscodec.decoders.learned import UnfoldDecoder

    torch.set_num_threads(a.threads)
    new, old = UnfoldDecoder.from_checkpoint(a.checkpoint), UnfoldDecoder()
    print(f"checkpoint {a.checkpoint}, step {new.step}")
    runs = (("shipped, still", old, False), ("checkpoint, still", new, False), ("checkpoint, moving", new, True))
    print("| movie | B | oracle | " + " | ".join(label for label, _, _ in runs) + " | groups compensated |")
    print("|---|---|---|" + "---|" * len(runs) + "---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, frames, ref in reference_movies(a.movies.split(","), a.shared):
            for B in (int(b) for b in a.B.split(",")):
                path = Path(tmp) / f"{name}_B{B}.tcs"
                tcscodec.write(path, frames, B=B, seed=0, quant_step="auto")
                oracle = np.concatenate([np.repeat(ref[s:s + B].mean(0, keepdims=True), len(ref[s:s + B]), 0)
                                         for s in range(0, len(ref), B)])
                cells = []
                with tcscodec.open(path, dtype=np.float32) as r:
                    for _, dec, motion in runs:
                        t0 = time.perf_counter()
                        out = np.concatenate([r.decode_group(g, decoder=dec, motion=motion)
                                              for g in range(r.n_groups)])
                        cells.append(f"{_psnr(out, ref):.2f} ({time.perf_counter() - t0:.1f} s)")
                    s = r.motion().summary()
                print(f"| {name} | {B} | {_psnr(oracle, ref):.2f} | " + " | ".join(cells)
                      + f" | {s['groups_compensated']}/{s['groups']} |", flush=True)


if __name__ == "__main__":
    main()
