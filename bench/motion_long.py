"""The motion gate and compensation on fresh simulator movies long enough
for B = 20 and 30 to give the 4 groups the gate needs.

    python bench/motion_long.py                       # seeds 60000-60079, 120 frames, B = 10, 20, 30
    python bench/motion_long.py --seeds 60025 -B 30
    python bench/motion_long.py --movies sim201,sim202,drift2@240 -B 10   # bench/quality.py's movies
    python bench/motion_long.py --seeds 61000:61012 --dose 1:6 --speed 1:3   # low dose, fast drift

Each movie is ``random_config(default_rng(seed), (256, 256), frames)``
(seeds no training or bench run uses), written as ``tcscodec encode``
writes it (``--quantize auto``, mask seed 0) and decoded with the shipped
weights as ``tcscodec decode --motion off`` and ``--motion auto`` do.  One
line per movie and B: the estimated speed, dose, roughness and
non-rigidity, the groups the gate selects and, where it selects any, PSNR
(dB, against the noise-free movie) decoded still, compensated where the
gate selects (``--motion auto``, the default; where it starts any group
from the rigid-scene solution, :meth:`~tcscodec.motion.MotionPath.rigid_start`,
or leaves a group's start to the measurements,
:meth:`~tcscodec.motion.MotionPath.rigid_start_open`, also with GAP-TV
starts, ``rigid_start=False``) and with the held-out check
too (``--motion checked``, :meth:`TcsReader.motion_check`; ``--no-check``
skips it), with the
groups the check kept in the moving frame and those it decoded as one
rigid image (:meth:`TcsReader.motion_verdict`).  With ``--movies``,
the named movies of bench/quality.py instead (compared as it compares them).
``--textures`` moves real micrographs of ../shared/data/real along fresh
paths instead (one per seed, in turn; ``--speed`` and ``--dose`` draw their
speed and dose).  ``--checkpoint`` decodes the moving groups with a motion fine-tune's
checkpoint instead of the shipped ``tcs-unfold-motion`` weights.
``--dose LO:HI`` pins each movie's dose (e-/px/frame, drawn log-uniform in
that range) and ``--speed LO:HI`` rescales its drift (and the drift's
jitter with it) to a speed drawn uniform in that range, both from a second
generator of the same seed, so the rest of the movie is as without them.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from motion_eval import _psnr  # noqa: E402

import tcscodec  # noqa: E402
from tcscodec.evaluation.run import reference_movie  # noqa: E402
from tcscodec.simulate import random_config, simulate_movie  # noqa: E402


def _seeds(text: str) -> range:
    first, _, last = text.partition(":")
    return range(int(first), int(last) if last else int(first) + 1)


def _movies(a):
    """``(name, frames, reference)`` of each movie the arguments name."""
    if a.movies:
        from quality import reference_movies

        yield from reference_movies(a.movies.split(","), a.shared)
        return
    if a.textures:
        yield from _texture_drifts(a)
        return
    for seed in _seeds(a.seeds):
        pins = np.random.default_rng([seed, 1])
        kw = {}
        if a.dose:
            lo, hi = _range(a.dose)
            kw["dose"] = float(np.exp(pins.uniform(np.log(lo), np.log(hi))))
        cfg = random_config(np.random.default_rng(seed), shape=(256, 256), n_frames=a.frames, **kw)
        if a.speed:
            lo, hi = _range(a.speed)
            scale = pins.uniform(lo, hi) / max(float(np.hypot(*cfg.drift_px)), 1e-6)
            cfg = dataclasses.replace(cfg, drift_px=tuple(scale * d for d in cfg.drift_px),
                                      drift_jitter_px=scale * cfg.drift_jitter_px)
        movie = simulate_movie(cfg)
        yield f"seed {seed}", movie.frames, reference_movie(movie.frames, movie.clean, None)[0]


def _texture_drifts(a):
    """Real micrographs moved along fresh paths: for each seed, one of the
    2-D micrographs of ../shared/data/real (in turn), a 256² crop moved at
    a speed uniform in ``--speed`` (default 0.9-3 px/frame) in a random
    direction with bench/quality.py's jitter (5 % of the speed per frame),
    at a dose log-uniform in ``--dose`` (default 1-50 e-/px/frame),
    uint16."""
    from tcscodec.simulate import texture_movie

    files = sorted(p for p in (a.shared / "data" / "real").glob("*.npy") if np.load(p, mmap_mode="r").ndim == 2)
    if not files:
        raise SystemExit(f"no 2-D micrographs in {a.shared / 'data' / 'real'}")
    lo_s, hi_s = _range(a.speed or "0.9:3")
    lo_d, hi_d = _range(a.dose or "1:50")
    for seed in _seeds(a.seeds):
        rng = np.random.default_rng(seed)
        path = files[seed % len(files)]
        speed, angle = rng.uniform(lo_s, hi_s), rng.uniform(0, 2 * np.pi)
        dose = float(np.exp(rng.uniform(np.log(lo_d), np.log(hi_d))))
        m = texture_movie(np.load(path), a.frames, rng, dose, shape=(256, 256),
                          drift_px=(speed * np.sin(angle), speed * np.cos(angle)),
                          drift_jitter_px=0.05 * speed, dtype="uint16")
        name = f"seed {seed} ({path.name[:24]}, {speed:.2f} px/frame, dose {dose:.3g})"
        yield name, m.frames, reference_movie(m.frames, m.clean, None)[0]


def _range(text: str) -> tuple[float, float]:
    lo, _, hi = text.partition(":")
    return float(lo), float(hi or lo)


def _num(x) -> str:
    return "-" if x is None else f"{x:.3g}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="60000:60080", help="FIRST:END (END excluded), or one seed")
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("-B", default="10,20,30")
    ap.add_argument("--dose", help="LO:HI e-/px/frame, log-uniform (with --seeds)")
    ap.add_argument("--speed", help="LO:HI px/frame of drift (with --seeds)")
    ap.add_argument("--movies", help="bench/quality.py movie names instead of --seeds")
    ap.add_argument("--textures", action="store_true",
                    help="with --seeds: real micrographs of ../shared moved along fresh paths, not simulator movies")
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--checkpoint", type=Path, help="a motion fine-tune's checkpoint.pt: it decodes the groups "
                    "decoded in the moving frame, the shipped still weights the others (as it would ship)")
    ap.add_argument("--no-check", action="store_true", help="skip the decode with the held-out check")
    ap.add_argument("--also", default="", help="more decoders to compare on every movie, e.g. gap-tv,rigid-tv "
                    "(each decoded as tcscodec decode --decoder NAME decodes, gain over tcs-unfold still)")
    a = ap.parse_args(argv)

    import torch

    from tcscodec.decoders.learned import UnfoldDecoder

    torch.set_num_threads(a.threads)
    dec = UnfoldDecoder.from_checkpoint(a.checkpoint, moving_only=True) if a.checkpoint else UnfoldDecoder()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "movie.tcs"
        for name, frames, ref in _movies(a):
            for B in (int(b) for b in a.B.split(",")):
                tcscodec.write(path, frames, B=B, seed=0, quant_step="auto")
                with tcscodec.open(path, dtype=np.float32) as r:
                    m = r.motion()
                    s = m.summary()
                    gated = s["groups_compensated"]
                    line = (f"{name} B={B}: speed {s['speed_median_px']:.2f} px/frame, dose {_num(m.dose)}, "
                            f"roughness {_num(s['roughness'])}, non-rigidity {_num(s['non_rigidity'])}, "
                            f"compensated {gated}/{r.n_groups}")
                    extra = [d for d in a.also.split(",") if d]
                    if gated or extra:
                        still, gate = (np.concatenate([r.decode_group(g, decoder=dec, **kw) for g in range(r.n_groups)])
                                       for kw in ({"motion": False}, {}))
                        a0, a1 = _psnr(still, ref), _psnr(gate, ref)
                        line += f": still {a0:.2f}, gate {a1:.2f} ({a1 - a0:+.2f} dB)"
                        rigid_start, left_open = s["groups_rigid_start"], s["groups_start_open"]
                        if rigid_start or left_open:
                            soft = np.concatenate([r.decode_group(g, decoder=dec, rigid_start=False)
                                                   for g in range(r.n_groups)])
                            starts = f"{rigid_start} rigid start(s)" if rigid_start else ""
                            if left_open:
                                starts += f"{', ' if starts else ''}{left_open} start(s) left to the measurements"
                            line += f" with {starts}, {_psnr(soft, ref) - a0:+.2f} dB with GAP-TV starts"
                        if not a.no_check:
                            checked = np.concatenate([r.decode_group(g, decoder=dec, motion_check=True)
                                                      for g in range(r.n_groups)])
                            verdicts = [r.motion_verdict(g, decoder=dec) for g in range(r.n_groups)]
                            kept, rigid = verdicts.count("moving"), verdicts.count("rigid")
                            a2 = _psnr(checked, ref)
                            line += (f", gate + check {a2:.2f} ({a2 - a0:+.2f} dB; the check kept {kept} of {gated}, "
                                     f"rigid {rigid})")
                        for other in extra:
                            x = np.concatenate([r.decode_group(g, decoder=other) for g in range(r.n_groups)])
                            line += f", {other} {_psnr(x, ref):.2f} ({_psnr(x, ref) - a0:+.2f} dB)"
                print(line, flush=True)


if __name__ == "__main__":
    main()
