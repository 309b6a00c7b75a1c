"""Per-tile motion compensation on frames larger than a tile.

    python bench/motion_local.py --threads 2
    python bench/motion_local.py --size 512 --rotations 0,0.1,0.2 -B 10

A real micrograph of ../shared/data/real is moved along a drift that also
turns (``tcscodec.simulate.texture_movie``: ``--speed`` px/frame in a
seeded direction, ``--rotations`` degrees per frame, Poisson at ``--dose``
e⁻/px), or a source ``hrtem`` / ``stem`` is simulated so
(``tcscodec.simulate.simulate_movie`` of a seeded ``random_config``, as
bench/quality.py's drift movies), written as ``tcscodec encode`` writes it (``--quantize auto``), and
decoded with the shipped learned decoder (256-pixel tiles) four ways: as
still (``motion=False``); every moving group compensated by the path's one
translation for the whole frame; every moving group compensated per tile,
each tile by the translation of the path's affine field at its centre
(:meth:`tcscodec.motion.MotionPath.group_shift_gradient`); and as
``motion=True`` decodes (the gate's choice).  PSNR in dB against the
noise-free movie, the estimated rotation (from the field's gradient) and
the gate's non-rigidity over the whole window and over a tile.
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

from motion_eval import _EveryMovingGroup, _psnr  # noqa: E402  (every moving group compensated)

import tcscodec  # noqa: E402
from tcscodec.simulate import random_config, simulate_movie, texture_movie  # noqa: E402

SOURCES = "hrtem,stem,cryoEM_FEI_micrograph_3838x3710_uint16.npy"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", default=SOURCES, help="files of ../shared/data/real, comma-separated")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("-B", type=int, default=10)
    ap.add_argument("--speed", type=float, default=2.0)
    ap.add_argument("--dose", type=float, default=10.0)
    ap.add_argument("--rotations", default="0,0.1,0.2")
    ap.add_argument("--seed", type=int, default=21_000)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    a = ap.parse_args()

    import torch

    from tcscodec.decoders.learned import UnfoldDecoder

    torch.set_num_threads(a.threads)
    dec = UnfoldDecoder()
    print("| source | rotation (°/frame) | estimated (°/frame) | non-rigidity: window / tile | still | "
          "one translation | per tile | motion=True |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for k, source in enumerate(a.sources.split(",")):
            path = a.shared / "data" / "real" / source
            simulated = source in ("hrtem", "stem")
            if not simulated and not path.exists():
                print(f"skipping {source}: {path} not found (../shared is absent)")
                continue
            image = None if simulated else np.load(path)
            for rot in (float(v) for v in a.rotations.split(",")):
                rng = np.random.default_rng(a.seed + k)
                angle = rng.uniform(0, 2 * math.pi)
                drift = (a.speed * math.sin(angle), a.speed * math.cos(angle))
                if simulated:
                    cfg = random_config(rng, shape=(a.size, a.size), n_frames=a.frames)
                    m = simulate_movie(dataclasses.replace(
                        cfg, mode=source, dose=a.dose, dtype="uint16", gain=1.0, offset=0.0, drift_px=drift,
                        drift_jitter_px=0.05 * a.speed, rotation_deg=rot, flicker=0.0))
                else:
                    m = texture_movie(image, a.frames, rng, a.dose, shape=(a.size, a.size), drift_px=drift,
                                      drift_jitter_px=0.05 * a.speed, rotation_deg=rot, flicker=0.0)
                file = Path(tmp) / "m.tcs"
                tcscodec.write(file, m.frames, B=a.B, seed=0, quant_step="auto")
                cells = []
                with tcscodec.open(file, dtype=np.float32) as r:
                    est = r.motion()
                    fields = {f.name: getattr(est, f.name) for f in dataclasses.fields(est)}
                    runs = ((est, False), (_EveryMovingGroup(**{**fields, "gradient": None}), True),
                            (_EveryMovingGroup(**fields), True), (est, True))
                    for motion_path, motion in runs:
                        r._motion = motion_path
                        t0 = time.perf_counter()
                        out = np.concatenate([r.decode_group(g, decoder=dec, motion=motion)
                                              for g in range(r.n_groups)])
                        cells.append(f"{_psnr(out, m.clean):.2f} ({time.perf_counter() - t0:.0f} s)")
                g = est.velocity_gradient()
                turn = math.degrees(0.5 * (g[0, 1] - g[1, 0]))  # turning +x towards +y
                window, tile = est.non_rigidity(), est.non_rigidity(256)
                fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
                what = f"{source} ({cfg.scene}, {cfg.lattice})" if simulated else source.split("_")[0]
                print(f"| {what} | {rot:g} | {turn:.3f} | {fmt(window)} / {fmt(tile)} | "
                      + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
