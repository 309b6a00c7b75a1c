"""CPU decode time of tcs-unfold: still, compensated where the gate
selects (the default), and with the held-out check too, with the CPU paths
of session 14 and without them.

    python bench/decode_motion.py --movies drift2@120,drift4,sample -B 10,20,30 --threads 2 --rounds 3

For each movie (bench/quality.py's names) and B, the file is written as
``tcscodec encode`` writes it by default (with mask seed 0, so that every
run decodes the same file) and its motion path estimated once
(not timed).  Then the whole movie is decoded six ways, in alternating
rounds in one process, the best round of each counted:

* ``before``: the tensor-only paths (each denoiser on the whole group at
  once, ``CHUNK_BYTES`` unlimited; the TV step as tensor operations), as
  decoding ran before the CPU kernels, still (``motion=False``) and
  compensated where the gate selects (``motion=True``, the default);
* ``now``: the shipped paths, still, gated (the default), and checked
  (``motion_check=True``: :meth:`TcsReader.motion_check` decodes each
  selected group three times, still, compensated and by the rigid-scene
  decoder, whole on frames of at most 768 pixels, where it keeps the
  frames of its verdict).  Each round opens the file
  afresh, so the check runs in every round;
* ``rigid-tv``: the rigid-scene decoder (``decoder="rigid-tv"``).

Printed: milliseconds per frame of each, and the ratios issue 20's time
target reads: gated ``now`` over still ``before`` (against the decoder as
it was when the target was set), and gated and checked over ``now`` still.
The largest difference between the ``before`` and ``now`` gated frames is
printed too (the chunked denoisers are exact; the compiled TV step agrees
to float32 rounding).
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
    from tcscodec.motion import MotionPath

    torch.set_num_threads(a.threads)
    chunk_bytes, compiled = unfold_net.CHUNK_BYTES, tv_kernels.available

    def use(now: bool) -> None:
        unfold_net.CHUNK_BYTES = chunk_bytes if now else 1 << 62
        tv_kernels.available = compiled if now else (lambda: False)

    ways = {"still before": (False, {"motion": False}), "gated before": (False, {}),
            "still now": (True, {"motion": False}), "gated now": (True, {}),
            "checked now": (True, {"motion_check": True}), "rigid-tv": (True, {"decoder": "rigid-tv"})}
    print("| movie | B | groups gated | check's verdicts (moving / rigid) | " + " | ".join(ways)
          + " | gated now / still before | gated / still now | checked / still now | rigid-tv / still now "
            "| largest difference |")
    print("|---|---|---|---|" + "---|" * len(ways) + "---|---|---|---|---|")
    tmp = Path(tempfile.mkdtemp())
    for name in a.movies.split(","):
        loaded = load_movie(name, a.shared)
        if loaded is None:
            continue
        frames = loaded[0]
        for B in (int(b) for b in a.B.split(",")):
            path = tmp / f"{name}-{B}.tcs"
            tcscodec.write(path, frames, B=B, seed=0)  # one mask seed: runs write the same file
            with tcscodec.open(path) as r:
                motion = r.motion(threads=a.threads)
                state = motion.to_dict()
                gated = [g for g in range(r.n_groups) if motion.compensated(g) is not None]
                verdicts = [r.motion_verdict(g) for g in gated]
            best: dict = {}
            out: dict = {}
            for _ in range(a.rounds):
                for way, (now, options) in ways.items():
                    use(now)
                    with tcscodec.open(path) as r:
                        r._motion = MotionPath.from_dict(state)  # estimated above: not timed
                        t0 = time.perf_counter()
                        out[way] = r.read(**options)
                        best[way] = min(best.get(way, np.inf), (time.perf_counter() - t0) / r.n_frames)
            use(True)
            diff = float(np.abs(out["gated now"].astype(np.float64) - out["gated before"]).max())
            ms = " | ".join(f"{best[w] * 1e3:.1f} ms" for w in ways)
            print(f"| {name} | {B} | {len(gated)}/{r.n_groups} | {verdicts.count('moving')} / "
                  f"{verdicts.count('rigid')} | {ms} "
                  f"| {best['gated now'] / best['still before']:.2f} | {best['gated now'] / best['still now']:.2f} "
                  f"| {best['checked now'] / best['still now']:.2f} | {best['rigid-tv'] / best['still now']:.2f} "
                  f"| {diff:.3g} |", flush=True)
            path.unlink()


if __name__ == "__main__":
    main()
