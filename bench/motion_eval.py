"""Motion compensation with a training checkpoint, against the shipped weights.

    python bench/motion_eval.py runs/tcs-unfold-v13/checkpoint.pt --threads 2
    python bench/motion_eval.py CKPT --movies drift0,semireal -B 10,30

For each movie (``bench/quality.py --list``, or ``simN``) and B, the file
is written as ``tcscodec encode`` writes it by default (``--quantize auto``,
seed 0, the same files as bench/quality.py), and decoded three ways: the
shipped weights decoding every group as still (``--motion off``); the
checkpoint decoding every group that moves at least half a pixel in the
moving frame (no speed, dose, smoothness or rigidity gate); and as the checkpoint would ship
(``UnfoldDecoder.from_checkpoint(..., moving_only=True)``, ``motion=True``):
the shipped still weights on still groups, the checkpoint on the groups
:meth:`MotionPath.compensated` selects.  PSNR against the noise-free movie
(the quality bench's gain fit), the static oracle (each group's mean clean
frame), the seconds each decode took, the groups the gate selects, and the
estimated speed and dose it decides on.  A quick check of a fine-tune
before the full quality bench.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from quality import reference_movies  # noqa: E402

import tcscodec  # noqa: E402
from tcscodec.motion import MotionPath  # noqa: E402

MOVIES = "drift0,drift1,drift3,drift4,drift5,semireal,abtem,sample,sim0,sim1,sim2"


class _EveryMovingGroup(MotionPath):
    """A motion path that compensates every group moving half a pixel or more."""

    def compensated(self, group, **_):
        return super().compensated(group, min_speed=0.0, max_dose=math.inf, max_roughness=math.inf,
                                   max_non_rigidity=math.inf)


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
    new = UnfoldDecoder.from_checkpoint(a.checkpoint)
    shipped, gated = UnfoldDecoder(), UnfoldDecoder.from_checkpoint(a.checkpoint, moving_only=True)
    print(f"checkpoint {a.checkpoint}, step {new.step}")
    runs = (("shipped, still", shipped, False, False), ("checkpoint, every moving group", new, True, True),
            ("shipped + checkpoint, gated", gated, True, False))
    print("| movie | B | oracle | " + " | ".join(label for label, *_ in runs)
          + " | groups gated | speed (px/frame) | dose est. (e⁻/px) |")
    print("|---|---|---|" + "---|" * len(runs) + "---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, frames, ref in reference_movies(a.movies.split(","), a.shared):
            for B in (int(b) for b in a.B.split(",")):
                path = Path(tmp) / f"{name}_B{B}.tcs"
                tcscodec.write(path, frames, B=B, seed=0, quant_step="auto")
                oracle = np.concatenate([np.repeat(ref[s:s + B].mean(0, keepdims=True), len(ref[s:s + B]), 0)
                                         for s in range(0, len(ref), B)])
                cells = []
                with tcscodec.open(path, dtype=np.float32) as r:
                    path = r.motion()
                    for _, dec, motion, every in runs:
                        fields = {f.name: getattr(path, f.name) for f in dataclasses.fields(path)}
                        r._motion = _EveryMovingGroup(**fields) if every else path
                        t0 = time.perf_counter()
                        out = np.concatenate([r.decode_group(g, decoder=dec, motion=motion)
                                              for g in range(r.n_groups)])
                        cells.append(f"{_psnr(out, ref):.2f} ({time.perf_counter() - t0:.1f} s)")
                    s = path.summary()
                print(f"| {name} | {B} | {_psnr(oracle, ref):.2f} | " + " | ".join(cells)
                      + f" | {s['groups_compensated']}/{s['groups']} | {s['speed_median_px']:.2f} | {s['dose']:.3g} |",
                      flush=True)


if __name__ == "__main__":
    main()
