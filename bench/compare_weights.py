"""Compare two sets of learned-decoder weights on movies neither was trained on.

    python bench/compare_weights.py runs/tcs-unfold-v7/checkpoint.pt runs/tcs-unfold-v4/checkpoint.pt
    python bench/compare_weights.py NEW.pt OLD.pt --only grid --source MoS2_Se_ADF_STEM_60kV_1024_uint32.npy

``NEW`` and ``OLD`` are training checkpoints (``tcscodec train``'s
``checkpoint.pt``), each registered through
:func:`tcscodec.evaluation.checkpoint_decoder`.  Three sets, PSNR (dB) against
the clean movie, one group of B frames each, mask seed 11 (``sim``, ``tex``)
or 77 (``grid``), GAP-TV alongside:

* ``sim``: held-out simulator movies ``random_config(default_rng(s))`` for
  s = 20000..20011 (training uses other seeds), 128², B = 10, 20, 30;
* ``tex``: three real micrographs of ``../shared/data/real`` moved by
  :func:`tcscodec.simulate.texture_movie` at 1, 10 and 100 e-/px and 0.5 or
  3 px/frame, B = 10 and 30 (skipped without ``../shared``);
* ``grid``: one micrograph (``--source``) at 1, 3 and 10 e-/px drifting 0.5
  to 3.5 px/frame, B = 10, with the static oracle (the mean of the group's
  clean frames): where the learned decoder falls back to the group mean.

Prints each set's mean difference NEW − OLD and against GAP-TV, then every row.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TEXTURES = ("SrTiO3_STEM_TitanCubed_1024_uint16.npy", "HAADF_Velox_fei_emd_image_512_uint16.npy",
            "cryoEM_EPU_micrograph_4096_uint16.npy")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("new", help="checkpoint.pt of the weights under test")
    ap.add_argument("old", help="checkpoint.pt to compare against")
    ap.add_argument("--only", choices=("sim", "tex", "grid"), action="append", help="run only these sets")
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"), help="the shared data folder")
    ap.add_argument("--source", default="MoS2_Se_ADF_STEM_60kV_1024_uint32.npy", help="micrograph of the grid")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)

    import torch

    from tcscodec import reconstruct
    from tcscodec.encoder import encode_group
    from tcscodec.evaluation import checkpoint_decoder
    from tcscodec.masks import masks
    from tcscodec.metrics import psnr
    from tcscodec.simulate import random_config, simulate_movie, texture_movie

    torch.set_num_threads(a.threads)
    names = [checkpoint_decoder(a.new, name="new"), checkpoint_decoder(a.old, name="old"), "gap-tv"]
    sets = a.only or ["sim", "tex", "grid"]
    real = Path(a.shared) / "data" / "real"

    def score(frames, clean, n, seed, extra=()):
        C = masks(seed, n, *frames.shape[1:])
        y = encode_group(frames[:n], seed)
        ref = clean[:n].astype(np.float32)
        R = float(ref.max() - ref.min())
        got = [psnr(reconstruct(y, C, k), ref, data_range=R) for k in names]
        if "oracle" in extra:
            got.append(psnr(np.repeat(ref.mean(0, keepdims=True), n, 0), ref, data_range=R))
        return got

    rows: dict[str, list] = {s: [] for s in sets}
    if "sim" in sets:
        for seed in range(20000, 20012):
            m = simulate_movie(random_config(np.random.default_rng(seed), shape=(128, 128), n_frames=30))
            for n in (10, 20, 30):
                rows["sim"].append((f"seed {seed} B={n}", score(m.frames, m.clean, n, 11)))
    if ("tex" in sets or "grid" in sets) and not real.is_dir():
        print(f"{real} not found: skipping the texture sets", file=sys.stderr)
        sets = [s for s in sets if s == "sim"]
    if "tex" in sets:
        for i, f in enumerate(TEXTURES):
            img = np.load(real / f).astype(np.float32)
            for dose in (1.0, 10.0, 100.0):
                for speed in (0.5, 3.0):
                    m = texture_movie(img, 30, np.random.default_rng(500 + i), dose, shape=(128, 128),
                                      drift_px=(speed * 0.6, -speed * 0.8), prefilter_sigma=1.5)
                    for n in (10, 30):
                        rows["tex"].append((f"{f[:12]} {dose:g} e/px {speed:g} px/frame B={n}",
                                            score(m.frames, m.clean, n, 11)))
    if "grid" in sets:
        img = np.load(real / a.source).astype(np.float32)
        for dose in (1.0, 3.0, 10.0):
            for speed in (0.5, 1.5, 2.5, 3.5):
                m = texture_movie(img, 10, np.random.default_rng(2), dose, shape=(128, 128),
                                  drift_px=(speed * 0.4, -speed * 0.92), prefilter_sigma=1.5, flicker=0.05)
                rows["grid"].append((f"{dose:g} e/px {speed:g} px/frame B=10",
                                     score(m.frames, m.clean, 10, 77, extra=("oracle",))))

    for s in sets:
        v = np.array([r[1][:3] for r in rows[s]])
        d, g_new, g_old = v[:, 0] - v[:, 1], v[:, 0] - v[:, 2], v[:, 1] - v[:, 2]
        print(f"{s}: new - old {d.mean():+.2f} dB (from {d.min():+.2f} to {d.max():+.2f}, worse in "
              f"{int((d < 0).sum())} of {len(d)}); vs gap-tv: new {g_new.mean():+.2f} (min {g_new.min():+.2f}), "
              f"old {g_old.mean():+.2f} (min {g_old.min():+.2f})")
    for s in sets:
        print(f"\n{s}: new / old / gap-tv" + (" / static oracle" if s == "grid" else "") + " (dB), new - old")
        for label, v in rows[s]:
            print(f"  {label:40s} " + " ".join(f"{x:6.2f}" for x in v) + f"  {v[0] - v[1]:+.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
