"""Quality of TCS decoding against conventional codecs at equal real bytes.

    python bench/quality.py                                   # every movie below, B = 10, 20, 30
    python bench/quality.py --movies abtem --decoders gap-tv  # one movie, one decoder
    python bench/quality.py --checkpoint runs/tcs-unfold-v2/checkpoint.pt   # a training checkpoint as tcs-unfold
    python bench/quality.py --list                            # the movie names

Movies (all with a clean ground truth):

* ``sim0``, ``sim1``, ... : held-out simulator movies,
  ``random_config(np.random.default_rng(10_000 + k), shape=(256, 256), n_frames=60)``
  (training draws its configs from other seeds);
* ``sample``: the fixed demo movie ``sample_movie((256, 256), 60, seed=0)``
  (HRTEM, Au-like particle on a-C, dose 50 e-/px/frame);
* ``abtem``: ../shared/data/sim/sim_abtem_Au_aC_movie (abTEM multislice,
  48 x 256^2, ~7 counts/px; its clean movie is a normalised intensity, so a
  gain is fitted, see ``tcscodec.evaluation``);
* ``semireal``: ../shared/data/semireal/semireal_MoS2_ADF_64x256 (a real
  ADF-STEM image moved along a drift path, ~1 count/px);
* ``event_jump``, ``event_growth``, ``event_rotation``, ``event_sinter``
  (:data:`EVENT_MOVIES`, by name only): 48 frames still, a 10-frame burst,
  still again (``tcscodec.simulate.event_movie``, seeds 30000 + k);
* ``drift0`` ... ``drift9``: drift-dominated movies (:data:`DRIFT_MOVIES`),
  simulated HRTEM and STEM drifting 0.5 to 3 px/frame, and real micrographs
  of ../shared/data/real moved 1 to 6 px/frame (60 x 256^2; the drift's
  direction and the scenes come from seeds no training run uses; drift6 to
  drift9 were added for a last check, after every motion setting was
  made).  Compare ``--decoders tcs-unfold/still,tcs-unfold`` for what
  motion compensation adds (``/still``: the decoder with ``motion=False``;
  the plain name and ``/motion``: with ``motion=True``, the default, as
  ``tcscodec decode``).  ``drift2@240``
  is made by the same recipe (kind of scene, drift speed and direction,
  dose, dtype) 240 frames long, so that B = 20 and 30 give the 4 groups
  the motion gate needs to judge the path (its frames are not those of
  ``drift2``: the simulator draws the scene for the whole path).

Movies in ../shared are skipped with a message when it is absent.

The ``.tcs`` files are written as ``tcscodec encode`` writes them by default
(``--quantize auto``); ``--quantize 1`` measures lossless files (best kept in
another ``--out``: a movie's rows of one setting replace those of the other).

For each movie and B, :func:`tcscodec.evaluation.evaluate` reports the
decoders, Y/sum(C), the static oracle and the codecs at equal bytes (as
decoded and with an oracle-tuned TV denoiser).  Results accumulate in
``--out`` (default ``bench/results``): ``quality.json`` keeps the rows of
every movie ever run there (a re-run replaces the rows of the (movie, B,
method) it measured again, so ``--decoders X --codecs none`` adds a decoder
to earlier results), and ``quality.md`` is rebuilt from it, ending with the
targets of the learned decoder (:data:`TARGETS`: its lead over each method,
per movie and B); with ``--figures``, figures go to
``quality_<movie>_B<B>.png`` (about 2.5 MB of PNG per movie, so they are
made on demand and not kept in git; the report links those present).

Runtime: about 6 to 10 minutes per 48..64-frame 256^2 movie at B = 10, 20, 30
with every codec on two busy CPU cores (AV1 at cpu-used 4 and the TV tuning
dominate), plus the decoders' own time.  ``--no-tv`` and ``--codecs`` cut it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from tcscodec import evaluation as ev

ROOT = Path(__file__).resolve().parents[1]
SHARED_FILES = {
    "abtem": ("sim/sim_abtem_Au_aC_movie_counts.tif", "sim/sim_abtem_Au_aC_movie_clean.npy"),
    "semireal": ("semireal/semireal_MoS2_ADF_64x256_counts.tif", "semireal/semireal_MoS2_ADF_64x256_clean.npy"),
}
N_SIM = 3
#: drift-dominated movies: (kind, seed or texture file, dose e-/px/frame, dtype, speed px/frame)
DRIFT_MOVIES = {
    "drift0": ("hrtem", 20_000, 200.0, "uint16", 1.5),
    "drift1": ("stem", 20_001, 50.0, "uint16", 0.5),
    "drift2": ("hrtem", 20_002, 30.0, "uint8", 3.0),
    "drift3": ("HAADF_multi_signal_dm3_512_uint16.npy", 20_003, 5.0, "uint16", 6.0),
    "drift4": ("SrTiO3_STEM_TitanCubed_1024_uint16.npy", 20_004, 20.0, "uint16", 2.0),
    "drift5": ("MoS2_Se_ADF_STEM_60kV_1024_uint32.npy", 20_005, 2.0, "uint16", 1.0),
    # real micrographs no decision was set on, moved for the check of issue 20 (session 13)
    "drift6": ("atomic_lattice_Acquisition18_1024_uint16.npy", 20_006, 10.0, "uint16", 1.5),
    "drift7": ("HAADF_Velox_fei_emd_image_512_uint16.npy", 20_007, 5.0, "uint16", 2.5),
    "drift8": ("hologram_Fe_needle_Titan_512_uint16.npy", 20_008, 50.0, "uint16", 3.0),
    "drift9": ("cryoEM_EPU_micrograph_4096_uint16.npy", 20_009, 1.0, "uint16", 1.0),
}
#: event movies (still, a burst, still again; tcscodec.simulate.event_movie):
#: name -> (kind, seed); selectable with --movies, not in the default run
EVENT_MOVIES = {f"event_{kind}": (kind, 30_000 + i)
                for i, kind in enumerate(("jump", "growth", "rotation", "sinter"))}
#: The learned decoder's targets (issue 5): its PSNR lead over each method, in dB.
TARGETS = {"jpeg": 3.0, "Y/sum(C)": 1.5, "gap-tv": 3.0, "h265": 0.0, "av1": 0.0}


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, numpy {np.__version__}"


def movie_names(n_sim: int = N_SIM) -> list[str]:
    return ["abtem", "semireal", "sample"] + [f"sim{k}" for k in range(n_sim)] + list(DRIFT_MOVIES)


def load_movie(name: str, shared: Path):
    """``(frames, clean, description, clean_scale)`` of a movie name, or
    None with a message when its data are absent (see ``evaluate`` for
    ``clean_scale``)."""
    if name in SHARED_FILES:
        import tifffile

        counts, clean = (shared / "data" / rel for rel in SHARED_FILES[name])
        if not counts.exists() or not clean.exists():
            print(f"skipping {name}: {counts} not found (../shared is absent)", file=sys.stderr)
            return None
        # abTEM's clean movie is a normalised intensity: "auto" fits its gain.
        return tifffile.imread(counts), np.load(clean), f"{counts.name} vs {clean.name}", "auto"
    from tcscodec.simulate import random_config, sample_movie, simulate_movie, texture_movie

    base, _, length = name.partition("@")
    if base in DRIFT_MOVIES and (not length or length.isdigit() and int(length) >= 2):
        import dataclasses
        import math

        kind, seed, dose, dtype, speed = DRIFT_MOVIES[base]
        T = int(length) if length else 60
        rng = np.random.default_rng(seed)
        angle = rng.uniform(0, 2 * math.pi)
        drift = (speed * math.sin(angle), speed * math.cos(angle))
        if kind in ("hrtem", "stem"):
            cfg = random_config(rng, shape=(256, 256), n_frames=60)
            cfg = dataclasses.replace(cfg, n_frames=T, mode=kind, dose=dose, dtype=dtype, gain=1.0, offset=0.0,
                                      drift_px=drift, drift_jitter_px=0.05 * speed, rotation_deg=0.0)
            m = simulate_movie(cfg)
            what = f"{kind} {cfg.scene} {cfg.lattice}, dose {dose:g}, {dtype}, drift {speed:g} px/frame, {T} frames"
            return m.frames, m.clean, what, None
        path = shared / "data" / "real" / kind
        if not path.exists():
            print(f"skipping {name}: {path} not found (../shared is absent)", file=sys.stderr)
            return None
        m = texture_movie(np.load(path), T, rng, dose, shape=(256, 256), drift_px=drift,
                          drift_jitter_px=0.05 * speed, dtype=dtype)
        return m.frames, m.clean, f"{kind} moved {speed:g} px/frame, dose {dose:g}, {dtype}, {T} frames", None
    if name in EVENT_MOVIES:
        from tcscodec.simulate import event_movie

        kind, seed = EVENT_MOVIES[name]
        m = event_movie(kind, shape=(256, 256), n_frames=48, burst=10, seed=seed)
        start, end = m.meta["burst"]
        what = (f"event_movie({kind!r}, seed={seed}): {m.config.mode}, dose {m.config.dose:.3g}, "
                f"{m.config.dtype}, burst frames {start}-{end - 1}")
        return m.frames, m.clean, what, None
    if name == "sample":
        m = sample_movie((256, 256), 60, seed=0)
        return m.frames, m.clean, "sample_movie((256, 256), 60, seed=0): HRTEM, dose 50", None
    if name.startswith("sim") and name[3:].isdigit():
        k = int(name[3:])
        cfg = random_config(np.random.default_rng(10_000 + k), shape=(256, 256), n_frames=60)
        m = simulate_movie(cfg)
        what = (f"random_config(default_rng({10_000 + k}), (256, 256), 60): {cfg.mode} {cfg.scene} "
                f"{cfg.lattice}, dose {cfg.dose:.3g}, {cfg.dtype}")
        return m.frames, m.clean, what, None  # the simulator's clean is in the frames' units
    raise SystemExit(f"unknown movie {name!r}; known: {', '.join(movie_names())}, simN, "
                     f"{', '.join(EVENT_MOVIES)}, driftK@FRAMES")


def reference_movies(names, shared: Path):
    """``(name, frames, reference)`` of each movie whose data are present:
    the frames and what decoded frames are compared with, as this bench
    compares them (:func:`tcscodec.evaluation.reference_movie`)."""
    for name in names:
        loaded = load_movie(name, shared)
        if loaded is not None:
            frames, clean, _, clean_scale = loaded
            yield name, frames, ev.reference_movie(frames, clean, clean_scale)[0]


def _runs(info: dict) -> list[dict]:
    """The runs recorded for a movie (older files kept only the last one)."""
    if "runs" in info:
        return list(info["runs"])
    return [{k: info.get(k, "?") for k in ("command", "date", "seconds")}] if "command" in info else []


def report(rows: list[ev.EvalRow], movies: dict, meta: dict, folder: Path | None = None) -> str:
    """The combined markdown report."""
    out = ["# Quality at equal real bytes", "",
           f"Generated by `{meta['command']}` on {meta['date']} ({meta['machine']}).", "",
           ev.TV_NOTE, ""]
    names = list(dict.fromkeys(r.movie for r in rows))
    out += ["## Summary: PSNR (dB) / SSIM", ""]
    for n in names:
        info = movies.get(n, {})
        runs = "; ".join(f"`{r['command']}` ({r['date']}, {r['seconds']} s)" for r in _runs(info))
        out.append(f"### {n}\n\n{info.get('description', '')}; {info.get('shape', '')} {info.get('dtype', '')}; "
                   f".tcs files with --quantize {info.get('quantize', '1')}. Runs: {runs or '?'}\n")
        out.append(ev.summary_table([r for r in rows if r.movie == n]))
        figs = [f for f in info.get("figures", []) if folder is None or (folder / f).exists()]
        out += [f"![{n}]({Path(f).name})" for f in figs[-1:]]
        out.append("")
    out += ["## Targets", "",
            "PSNR lead of tcs-unfold over each method minus the lead the targets ask for (dB; >= 0: met). "
            "H.265 and AV1 are required at B >= 20, at B = 10 they are the stretch goal.", "",
            ev.margin_table(rows, "tcs-unfold", TARGETS), ""]
    if len({r.B for r in rows}) >= 2:
        out += ["## Bjøntegaard deltas over the B measured", "",
                "tcs-unfold's rate-distortion curve (its file bytes and PSNR at each B) against each codec's "
                "(matched to those bytes): BD-PSNR > 0 and BD-rate < 0 favour tcs-unfold; BD-rate reads each "
                "curve on its frontier (a point that one of fewer bytes matches in PSNR left out); where the "
                "PSNR ranges do not overlap, a bound ('< -60 %': the cheaper curve's cheapest point beats "
                "the other's every point).", "", ev.bd_table(rows, "tcs-unfold"), ""]
    out += ["## All rows", "", ev.markdown_table(rows)]
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--movies", default=",".join(movie_names()), help="comma-separated movie names")
    ap.add_argument("-B", default="10,20,30",
                    help="frames per measurement, comma-separated; 'auto' or 'auto:T' for -B auto files")
    ap.add_argument("--decoders", default="tcs-unfold,gap-tv", help="comma-separated, or 'none'")
    ap.add_argument("--codecs", default=",".join(ev.DEFAULT_CODECS), help="comma-separated, or 'none'")
    ap.add_argument("--checkpoint", type=Path, help="training checkpoint evaluated as the learned decoder")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--frames", type=int, help="use only the first N frames of each movie")
    ap.add_argument("--no-tv", action="store_true", help="skip the TV-filtered codec rows")
    ap.add_argument("--figures", action="store_true", help="also write PNG figures (2.5 MB a movie; not kept in git)")
    ap.add_argument("--no-figures", action="store_true", help=argparse.SUPPRESS)  # the default now
    ap.add_argument("--tv-iterations", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0, help="mask seed")
    ap.add_argument("--quantize", default="auto",
                    help="measurement quantisation of the .tcs files: 'auto' (the CLI default) or a step (1 = lossless)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fresh", action="store_true", help="forget earlier results in --out")
    ap.add_argument("--list", action="store_true", help="list the movie names and exit")
    ap.add_argument("--report-only", action="store_true", help="rebuild quality.md from quality.json and exit")
    a = ap.parse_args(argv)
    if a.list:
        print("\n".join(movie_names() + list(EVENT_MOVIES)))
        return
    store = a.out / "quality.json"
    if a.report_only:
        data = json.loads(store.read_text())
        rows = ev.sort_rows(ev.EvalRow.from_dict(r) for r in data["rows"])
        last = max((r for info in data["movies"].values() for r in _runs(info)), key=lambda r: str(r["date"]),
                   default={"command": "?", "date": "?"})
        (a.out / "quality.md").write_text(report(rows, data["movies"], {**last, "machine": _machine()}, a.out) + "\n")
        print(f"wrote {a.out / 'quality.md'}", file=sys.stderr)
        return
    quant_step = a.quantize if a.quantize == "auto" else float(a.quantize)
    Bs = [ev.grouping(b)[0] for b in a.B.split(",")]  # integers, or "auto" / "auto:T" (-B auto)
    decoders = [] if a.decoders == "none" else [d for d in a.decoders.split(",") if d]
    codecs = [] if a.codecs == "none" else [c for c in a.codecs.split(",") if c]
    if a.checkpoint:
        decoders = ev.with_checkpoint(decoders, a.checkpoint)
    a.out.mkdir(parents=True, exist_ok=True)
    old = json.loads(store.read_text()) if store.exists() and not a.fresh else {"movies": {}, "rows": []}
    meta = {"command": "python bench/quality.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": _machine()}
    for name in [m for m in a.movies.split(",") if m]:
        loaded = load_movie(name, a.shared)
        if loaded is None:
            continue
        frames, clean, what, clean_scale = loaded
        if a.frames:
            frames, clean = frames[: a.frames], clean[: a.frames]
        print(f"== {name}: {what}, {frames.shape} {frames.dtype}", file=sys.stderr)
        t0 = time.perf_counter()
        prev = old["movies"].get(name, {})
        if str(prev.get("quantize", "1")) != str(a.quantize) and prev:
            # Rows of other .tcs files (other byte budgets) must not mix with these.
            print(f"{name}: dropping earlier rows made with --quantize {prev.get('quantize', '1')}", file=sys.stderr)
            old["rows"] = [r for r in old["rows"] if r["movie"] != name]
            prev = old["movies"][name] = {}
        rows = ev.evaluate(frames, clean, Bs, decoders, codecs, seed=a.seed, quant_step=quant_step,
                           name=name, tv=not a.no_tv,
                           clean_scale=clean_scale,
                           tv_iterations=a.tv_iterations, threads=a.threads,
                           log=lambda msg: print(msg, file=sys.stderr, flush=True))
        seconds = round(time.perf_counter() - t0, 1)
        figs = []
        # A run without JPEG (say, a checkpoint alone) keeps the earlier, complete figures.
        keep_figs = "jpeg" not in codecs and old["movies"].get(name, {}).get("figures")
        for B in Bs if a.figures and not keep_figs else []:
            p = ev.save_figure(a.out / f"quality_{name}_B{B}.png", rows, frames, clean, B=B,
                               title=f"{name}: B={B}")
            if p is not None:
                figs.append(str(p.relative_to(a.out)))
        # Replace this run's (movie, B, method) rows, keep the others (e.g. a
        # checkpoint-only run keeps the codecs measured before).
        fresh = [r.to_dict() for r in rows]
        keys = {(r["movie"], r["B"], r["method"]) for r in fresh}
        old["rows"] = [r for r in old["rows"] if (r["movie"], r["B"], r["method"]) not in keys] + fresh
        order = {m: i for i, m in enumerate(dict.fromkeys(r["movie"] for r in old["rows"]))}
        old["rows"].sort(key=lambda r: (order[r["movie"]], ev.B_order(r["B"])))
        figs = figs or prev.get("figures", [])
        old["movies"][name] = {**prev, "description": what, "shape": list(frames.shape), "dtype": frames.dtype.name,
                               "seconds": seconds, "date": meta["date"], "command": meta["command"], "quantize": a.quantize,
                               "decoders": decoders, "codecs": codecs, "B": Bs, "figures": figs,
                               "checkpoint": str(a.checkpoint) if a.checkpoint else None,
                               "runs": _runs(prev) + [{"command": meta["command"], "date": meta["date"],
                                                       "seconds": seconds}]}
        store.write_text(json.dumps(old, indent=1) + "\n")  # after each movie: a long run keeps its results
        all_rows = ev.sort_rows(ev.EvalRow.from_dict(r) for r in old["rows"])
        (a.out / "quality.md").write_text(report(all_rows, old["movies"], meta, a.out) + "\n")
        print(ev.summary_table(rows))
        print(f"{name}: {seconds} s", file=sys.stderr)
    print(f"wrote {a.out / 'quality.md'} and {store}", file=sys.stderr)


if __name__ == "__main__":
    main()
