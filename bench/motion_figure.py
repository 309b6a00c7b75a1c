"""A drifting lattice decoded as still and in the moving frame (a figure).

    python bench/motion_figure.py --movie drift4 -B 10 --out bench/results/motion/drift4_B10.png
    python bench/motion_figure.py --checkpoint runs/tcs-unfold-v13/checkpoint.pt ...   # a training checkpoint
    python bench/motion_figure.py --movie drift7 --group 0 --at 56,103 --out bench/results/motion/drift7_B10.png

For the first, middle and last frame of one group of a drift-dominated
movie (``bench/quality.py --list``), encoded as ``tcscodec encode`` does
by default: the noise-free frame, the learned decoder and GAP-TV without
and with motion compensation, and the rigid-scene decoder (rigid-tv), each
with its PSNR against the noise-free frame, over a 96 x 96 crop (at the
frame's centre, or ``--at``) so the lattice shows.  Small PNG (~100 KB).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import tcscodec  # noqa: E402
from quality import load_movie  # noqa: E402


def _psnr(x: np.ndarray, ref: np.ndarray, r: float) -> float:
    mse = float(np.mean((x - ref) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(r * r / mse)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--movie", default="drift4")
    ap.add_argument("-B", type=int, default=10)
    ap.add_argument("--group", type=int, default=2)
    ap.add_argument("--crop", type=int, default=96)
    ap.add_argument("--at", help="Y,X: centre of the crop in the group's middle frame [the frame's centre]")
    ap.add_argument("--checkpoint", type=Path, help="training checkpoint used as the learned decoder")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "motion" / "lattice.png")
    a = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loaded = load_movie(a.movie, a.shared)
    if loaded is None:
        raise SystemExit(f"{a.movie}: its data are absent")
    frames, clean, what, _ = loaded
    learned = "tcs-unfold"
    if a.checkpoint:
        from tcscodec.decoders.learned import UnfoldDecoder

        learned = UnfoldDecoder.from_checkpoint(a.checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.tcs"
        tcscodec.write(path, frames, B=a.B, seed=0, quant_step="auto")
        with tcscodec.open(path, dtype=np.float32) as r:
            g, n = a.group, r.group_frames(a.group)
            rows = {"noise-free": clean[g * a.B:g * a.B + n].astype(np.float32)}
            for label, dec in (("tcs-unfold", learned), ("gap-tv", "gap-tv")):
                for motion in (False, True):
                    rows[f"{label}, {'moving frame' if motion else 'still'}"] = r.decode_group(
                        g, decoder=dec, motion=motion)
            rows["rigid-tv"] = r.decode_group(g, decoder="rigid-tv")
            speed = r.motion().summary()["speed_median_px"]
    ref = rows["noise-free"]
    H, W = ref.shape[1:]
    c = a.crop
    cy, cx = (H // 2, W // 2) if not a.at else (int(v) for v in a.at.split(","))
    y0, x0 = min(max(cy - c // 2, 0), H - c), min(max(cx - c // 2, 0), W - c)
    lo, hi = np.percentile(ref[:, y0:y0 + c, x0:x0 + c], [0.5, 99.5])
    R = float(ref.max() - ref.min())
    picks = [0, n // 2, n - 1]
    fig, axes = plt.subplots(len(rows), 3, figsize=(6.6, 2.2 * len(rows)), squeeze=False)
    for i, (label, movie) in enumerate(rows.items()):
        for j, b in enumerate(picks):
            ax = axes[i, j]
            ax.imshow(movie[b, y0:y0 + c, x0:x0 + c], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            title = f"frame {g * a.B + b}" if i == 0 else f"{_psnr(movie[b], ref[b], R):.1f} dB"
            ax.set_title(title, fontsize=8)
        axes[i, 0].set_ylabel(label, fontsize=8)
    fig.suptitle(f"{a.movie}, B = {a.B}, group {g}, estimated drift {speed:.2f} px/frame", fontsize=8)
    fig.tight_layout()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=60)
    print(f"wrote {a.out} ({a.out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
