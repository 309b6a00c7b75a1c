"""What the neighbouring groups add: a checkpoint with context against the
same network without it, and against the shipped weights.

    python bench/context_ablation.py runs/tcs-unfold-v10/checkpoint.pt
    python bench/context_ablation.py CKPT --movies sample,semireal -B 10 --static

For each movie of ``bench/quality.py`` (``--movies``, default all) and B,
the ``.tcs`` file is written as ``tcscodec encode`` writes it by default
(``--quantize auto``, mask seed 0) and decoded three times through the reader:
with the shipped weights (``tcs-unfold``), with the checkpoint's network
reading the groups before and after as context (``ckpt``), and with the
same network told there are none (``no-context``).  PSNR (dB) against the
clean movie, as in the quality bench.

``--static`` adds texture movies of one real micrograph
(``../shared/data/real``, SrTiO3 STEM) that barely drift (0.02 and 0.3
px/frame, no rotation) at 2 and 20 e-/px, where the neighbours hold the
same scene, with GAP-TV alongside.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

DECODERS = ("tcs-unfold", "ckpt", "no-context")


def _register(checkpoint: str) -> None:
    """The checkpoint as ``ckpt``, and the same network with its context
    withheld as ``no-context``."""
    from tcscodec import evaluation as ev
    from tcscodec.decoders.base import register_decoder

    ev.checkpoint_decoder(checkpoint, name="ckpt")
    register_decoder("no-context")(ev.CheckpointFactory(checkpoint, context=False))


def _static_rows(shared: Path, B_list, tmp: Path):
    import tcscodec
    from tcscodec.metrics import psnr
    from tcscodec.simulate import texture_movie

    path = shared / "data" / "real" / "SrTiO3_STEM_TitanCubed_1024_uint16.npy"
    if not path.exists():
        print(f"skipping --static: {path} not found", file=sys.stderr)
        return
    img = np.load(path).astype(np.float32)
    for dose in (2.0, 20.0):
        for speed in (0.02, 0.3):
            m = texture_movie(img, 40, np.random.default_rng(5), dose, shape=(256, 256), speed=speed,
                              rotation_deg=0.0, dtype="uint16")
            for B in B_list:
                tcs = tmp / "static.tcs"
                tcscodec.write(tcs, m.frames, B=B, seed=3, quant_step="auto")
                with tcscodec.open(tcs) as r:
                    scores = {d: psnr(r.read(decoder=d), m.clean) for d in (*DECODERS, "gap-tv")}
                yield f"static {dose:g} e/px {speed:g} px/frame", B, scores


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", help="checkpoint.pt of a network with context")
    ap.add_argument("--movies", help="comma-separated quality-bench movies (default: all)")
    ap.add_argument("-B", default="10,20,30", help="comma-separated group sizes")
    ap.add_argument("--static", action="store_true", help="also the barely drifting texture movies")
    ap.add_argument("--shared", default=str(ROOT.parent.parent / "shared"), help="the shared data folder")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)

    import torch

    from quality import load_movie, movie_names
    from tcscodec import evaluation as ev

    torch.set_num_threads(a.threads)
    _register(a.checkpoint)
    B_list = [int(b) for b in a.B.split(",")]
    shared = Path(a.shared)
    header = f"{'movie':32s} {'B':>3s} " + " ".join(f"{d:>11s}" for d in DECODERS) + "  ckpt-shipped  context"
    print(header)

    def show(name, B, scores):
        gain, ctx = scores["ckpt"] - scores["tcs-unfold"], scores["ckpt"] - scores["no-context"]
        extra = f"  gap-tv {scores['gap-tv']:.2f}" if "gap-tv" in scores else ""
        print(f"{name:32s} {B:3d} " + " ".join(f"{scores[d]:11.2f}" for d in DECODERS)
              + f"  {gain:+12.2f}  {ctx:+7.2f}{extra}", flush=True)

    for name in (a.movies.split(",") if a.movies else movie_names()):
        loaded = load_movie(name, shared)
        if loaded is None:
            continue
        frames, clean, _, clean_scale = loaded
        rows = ev.evaluate(frames, clean, B_list, decoders=DECODERS, codecs=[], quant_step="auto", name=name,
                           tv=False, tv_decoders=False, clean_scale=clean_scale, threads=a.threads)
        for B in B_list:
            show(name, B, {r.method: r.psnr for r in rows if r.B == B and r.method in DECODERS})
    if a.static:
        with tempfile.TemporaryDirectory() as tmp:
            for name, B, scores in _static_rows(shared, B_list, Path(tmp)):
                show(name, B, scores)
    return 0


if __name__ == "__main__":
    sys.exit(main())
