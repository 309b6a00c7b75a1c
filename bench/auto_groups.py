"""``-B auto`` against fixed B on event movies, at the bytes each file really takes.

    python bench/auto_groups.py                      # held-out seeds 40001-40004, all four kinds
    python bench/auto_groups.py --kinds jump --seeds 40001

Each movie (:func:`tcscodec.simulate.event_movie`: still, a 10-frame burst,
still again; 48 frames of 256²) is written as ``tcscodec encode`` writes it
(``--quantize auto``, mask seed 0) with B = 4, 8, 10, 16, 30 and with
``B="auto"`` (its defaults), and decoded with the learned decoder.  Per
file: bytes, PSNR over all frames and over the burst's frames against the
noise-free movie, encode seconds, the groups.  Then ``auto``'s PSNR against
the fixed-B rate-distortion curve at ``auto``'s bytes
(:func:`tcscodec.evaluation.rd.psnr_over_curve`; NaN where ``auto`` falls outside
the curve's bytes).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import tcscodec
from tcscodec.evaluation.metrics import psnr
from tcscodec.evaluation.rd import psnr_over_curve
from tcscodec.evaluation.run import reference_movie
from tcscodec.simulate import event_movie

FIXED_B = (4, 8, 10, 16, 30)


def main(argv=None) -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", default="jump,growth,rotation,sinter")
    ap.add_argument("--seeds", default="40001,40002,40003,40004", help="one per kind, in order")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    for kind, seed in zip(a.kinds.split(","), (int(s) for s in a.seeds.split(",")), strict=False):
        m = event_movie(kind, shape=(256, 256), n_frames=48, burst=10, seed=seed)
        ref = reference_movie(m.frames, m.clean)[0]
        R = float(ref.max() - ref.min())
        burst = np.asarray(m.meta["event_frames"], int)
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            for B in (*FIXED_B, "auto"):
                path = Path(tmp) / f"{B}.tcs"
                t0 = time.perf_counter()
                tcscodec.write(path, m.frames, B=B, seed=0, quant_step="auto")
                seconds = time.perf_counter() - t0
                with tcscodec.open(path, dtype=np.float32) as r:
                    out = r.read()
                    sizes = [r.group_frames(g) for g in range(r.n_groups)]
                rows.append((B, path.stat().st_size, psnr(out, ref, R), psnr(out[burst], ref[burst], R), seconds,
                             sizes))
        print(f"### event_{kind} (seed {seed}; burst frames {burst[0]}-{burst[-1]})\n")
        print("| B | bytes | PSNR | PSNR, burst frames | encode (s) | groups |\n|---|---:|---:|---:|---:|---|")
        for B, nbytes, p_all, p_burst, seconds, sizes in rows:
            groups = ",".join(map(str, sizes)) if B == "auto" else str(len(sizes))
            print(f"| {B} | {nbytes:,} | {p_all:.2f} | {p_burst:.2f} | {seconds:.2f} | {groups} |")
        fixed = [r for r in rows if r[0] != "auto"]
        auto = rows[-1]
        gap = psnr_over_curve([r[1] for r in fixed], [r[2] for r in fixed], auto[1], auto[2])
        print(f"\n`-B auto` against the fixed-B curve at its bytes: {gap:+.2f} dB\n", flush=True)


if __name__ == "__main__":
    main()
