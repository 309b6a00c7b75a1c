"""Where predict-rice's stored (zstd) payload beats its Rice code.

    python bench/stored_trial.py [--shared ../shared] [--size 256]

The predict-rice codec also tries a tile as a shuffle-zstd frame when its
Rice code takes under 2 bits per pixel, but only when at least half of the
tile's values are zero (``tcscodec.format.codecs._SPARSE_ZEROS``): that
trial costs about twice the Rice code.  This measures the rule on one tile
per case: scenes (the real micrographs of ``../shared/data/real`` that have
a ``--size`` square, scaled to mean 1, where present; a flat field; a field
half blank), doses 0.005-200 e-/px/frame, B = 4, 10, 30, uint16 and uint8
frames, lossless and ``quant_step="auto"`` (the step the writer picks).
It prints, over the tiles coded under 2 bits per pixel, how many zstd
wins, the smallest fraction of zeros among those it wins and the largest
among those it loses, and the cases where the rule would change a file
(zstd wins on a tile with fewer zeros than the rule asks).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import tcscodec
from tcscodec.encoder import encode_group
from tcscodec.format.codecs import _SPARSE_BITS, _SPARSE_ZEROS, _zstd_frame
from tcscodec.masks import mask_sum
from tcscodec.quantize import quantize, stored_dtype
from tcscodec.rice_kernels import encode_predicted

DOSES = (0.005, 0.02, 0.1, 0.5, 2.0, 20.0, 200.0)


def _scenes(shared: Path, size: int) -> dict[str, np.ndarray]:
    scenes = {}
    for path in sorted((shared / "data" / "real").glob("*.npy")):
        a = np.load(path).astype(np.float64)
        while a.ndim > 2:
            a = a[0]
        a = a[:size, :size] - a[:size, :size].min()
        if a.shape == (size, size) and a.mean() > 0:
            scenes[path.stem[:28]] = a / a.mean()
    scenes["flat"] = np.ones((size, size))
    half = np.ones((size, size))
    half[:, : size // 2] = 0
    scenes["half blank"] = half
    return scenes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    ap.add_argument("--size", type=int, default=256)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(5)
    wins, losses, changed = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.tcs"
        for name, scene in _scenes(a.shared, a.size).items():
            for dose in DOSES:
                for B in (4, 10, 30):
                    for dtype in (np.uint16, np.uint8):
                        frames = np.minimum(rng.poisson(scene * dose, (B, a.size, a.size)), np.iinfo(dtype).max)
                        frames = frames.astype(dtype)
                        y, csum = encode_group(frames, 1, B), mask_sum(1, B, a.size, a.size)
                        tcscodec.write(path, frames, B=B, seed=1, quant_step="auto")
                        with tcscodec.open(path) as r:
                            auto = r.header.quant_step
                        for step in sorted({1.0, auto}):
                            q = quantize(y, step, stored_dtype(y.dtype, step))
                            content = encode_predicted(q, csum)
                            if content is None or 8 * len(content) >= _SPARSE_BITS * q.size:
                                continue
                            zeros = 1 - np.count_nonzero(q) / q.size
                            case = (name, dose, B, np.dtype(dtype).name, step, zeros)
                            if 1 + len(_zstd_frame(q, True, 3)) < len(content):
                                wins.append(case)
                                if zeros < _SPARSE_ZEROS:
                                    changed.append(case)
                            else:
                                losses.append(case)
    print(f"{len(wins) + len(losses)} tiles under {_SPARSE_BITS} bits/px; zstd smaller on {len(wins)}")
    if wins:
        print(f"smallest fraction of zeros where zstd is smaller: {min(c[-1] for c in wins):.3f}")
    if losses:
        print(f"largest fraction of zeros where the Rice code is smaller: {max(c[-1] for c in losses):.3f}")
    print(f"tiles whose payload the {_SPARSE_ZEROS:g} rule changes: {len(changed)}")
    for case in changed:
        print("  ", case)


if __name__ == "__main__":
    main()
