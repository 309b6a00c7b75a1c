"""Encoding speed of ``-B auto`` next to fixed B, on 1 and 2 threads.

    python bench/encode_auto.py [--size 2048] [--frames 60] [--rounds 3] [--dir /dev/shm]

``tcscodec.write`` (predict-rice, ``quant_step="auto"``) of Poisson frames
(mean 20, uint16) with B = 10, B = 30 and ``B="auto"``, each on 1 and 2
threads, interleaved rounds, median; MB/s of input.  A short ``B="auto"``
write first loads numba's cache.  Issue 19 asks ``-B auto`` for >= 0.9x
the speed of fixed B.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import tcscodec


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default=None, help="folder for the files (default: the temporary folder)")
    a = ap.parse_args(argv)
    frames = np.random.default_rng(0).poisson(20, (a.frames, a.size, a.size)).astype(np.uint16)
    times: dict[tuple, list[float]] = {}
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        tcscodec.write(Path(tmp) / "warm.tcs", frames[:12], B="auto", seed=0, quant_step="auto")
        for _ in range(a.rounds):
            for B in (10, 30, "auto"):
                for threads in (1, 2):
                    t0 = time.perf_counter()
                    tcscodec.write(Path(tmp) / f"{B}_{threads}.tcs", frames, B=B, seed=0, quant_step="auto",
                                   threads=threads)
                    times.setdefault((B, threads), []).append(time.perf_counter() - t0)
        with tcscodec.open(Path(tmp) / "auto_1.tcs") as r:
            groups = [r.group_frames(g) for g in range(r.n_groups)]
    rate = {k: frames.nbytes / float(np.median(v)) / 1e6 for k, v in times.items()}
    print(f"{a.frames} frames of {a.size}^2 uint16, median of {a.rounds} rounds; -B auto made groups {groups}\n")
    print("| B | 1 thread (MB/s) | 2 threads (MB/s) |\n|---|---:|---:|")
    for B in (10, 30, "auto"):
        print(f"| {B} | {rate[B, 1]:,.0f} | {rate[B, 2]:,.0f} |")
    for threads in (1, 2):
        print(f"\n-B auto / B = 10 on {threads} thread(s): {rate['auto', threads] / rate[10, threads]:.2f}x; "
              f"/ B = 30: {rate['auto', threads] / rate[30, threads]:.2f}x")


if __name__ == "__main__":
    main()
