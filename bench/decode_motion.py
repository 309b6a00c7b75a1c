"""CPU decode time of tcs-unfold, still and motion-compensated, with the
CPU paths of session 14 and without them.

    python bench/decode_motion.py --movies drift2@120,drift4,sample -B 10,20,30 --threads 2 --rounds 3

For each movie (bench/quality.py's names) and B, the file is written as
``tcscodec encode`` writes it by default and its motion path estimated once
(not timed).  Then the whole movie is decoded four ways, in alternating
rounds in one process, the best round of each counted:

* ``before``: the tensor-only paths (each denoiser on the whole group at
  once, ``CHUNK_BYTES`` unlimited; the TV step as tensor operations), as
  decoding ran before the CPU kernels;
* ``now``: the shipped paths (denoisers a few frames at a time, the TV step
  compiled);

each with ``motion=False`` (still) and ``motion=True`` (the default: the
groups the gate selects decoded in the moving frame).  Printed: seconds
per frame of each, and the ratios issue 20's time target reads, compensated
over still with both in ``before`` (the cost of compensation as it was),
both in ``now``, and ``now`` compensated over ``before`` still (against the
decoder as it was when the target was set).  The largest difference
between the ``before`` and ``now`` frames is printed too (the chunked
denoisers are exact; the compiled TV step agrees to float32 rounding).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from quality import load_movie  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--movies", default="drift2@120,drift4,sample")
    ap.add_argument("-B", default="10,20,30")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    a = ap.parse_args()

    import torch

    import tcscodec
    from tcscodec.decoders import tv_kernels, unfold_net

    torch.set_num_threads(a.threads)
    chunk_bytes, compiled = unfold_net.CHUNK_BYTES, tv_kernels.available

    def use(now: bool) -> None:
        unfold_net.CHUNK_BYTES = chunk_bytes if now else 1 << 62
        tv_kernels.available = compiled if now else (lambda: False)

    print("| movie | B | groups compensated | still before | still now | compensated before | compensated now "
          "| comp/still before | comp/still now | comp now / still before | largest difference |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    tmp = Path(tempfile.mkdtemp())
    for name in a.movies.split(","):
        loaded = load_movie(name, a.shared)
        if loaded is None:
            continue
        frames = loaded[0]
        for B in (int(b) for b in a.B.split(",")):
            path = tmp / f"{name}-{B}.tcs"
            tcscodec.write(path, frames, B=B)
            with tcscodec.open(path) as r:
                motion = r.motion(threads=a.threads)
                n_comp = sum(motion.compensated(g) is not None for g in range(r.n_groups))
                best: dict = {}
                out: dict = {}
                for _ in range(a.rounds):
                    for now in (False, True):
                        use(now)
                        for moving in (False, True):
                            t0 = time.perf_counter()
                            out[now, moving] = r.read(motion=moving)
                            dt = (time.perf_counter() - t0) / r.n_frames
                            best[now, moving] = min(best.get((now, moving), np.inf), dt)
                use(True)
            diff = max(float(np.abs(out[True, m].astype(np.float64) - out[False, m]).max()) for m in (False, True))
            ms = {k: v * 1e3 for k, v in best.items()}
            print(f"| {name} | {B} | {n_comp}/{r.n_groups} | {ms[False, False]:.1f} ms | {ms[True, False]:.1f} ms "
                  f"| {ms[False, True]:.1f} ms | {ms[True, True]:.1f} ms | {best[False, True] / best[False, False]:.2f} "
                  f"| {best[True, True] / best[True, False]:.2f} | {best[True, True] / best[False, False]:.2f} "
                  f"| {diff:.3g} |", flush=True)
            path.unlink()


if __name__ == "__main__":
    main()
