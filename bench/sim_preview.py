"""Visual and statistical check of tcscodec.simulate against reference data.

Usage::

    python bench/sim_preview.py [--out /tmp/sim_preview.png] [--shared ../shared]

Writes a PNG grid (simulated frames next to crops of the abTEM multislice
movie and real ADF-STEM images from ``shared/data``) and prints first-order
statistics side by side: relative contrast of the support and of particle
columns, radially averaged power spectra (log10, normalised), and counts
histograms at matched dose.  Runs in well under a minute on one core.
Without the shared folder it still draws the simulated panels.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from tcscodec import simulate as S


def rpsd(img, nb=24):
    """Radially averaged power spectral density of img / mean(img), Hann
    windowed and scaled so that white noise of variance s2 reads s2 in every
    bin (a Poisson floor at dose D reads 1/D); bins of width 0.5/nb
    cycles/px."""
    img = np.asarray(img, float)
    img = img / img.mean() - 1.0
    h, w = img.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    p = np.abs(np.fft.fft2(img * win)) ** 2 / (win**2).sum()
    r = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None])
    idx = np.minimum((r / 0.5 * nb).astype(int), nb)
    return np.bincount(idx.ravel(), p.ravel(), nb + 1)[:nb] / np.bincount(idx.ravel(), minlength=nb + 1)[:nb]


def hist_tv(a, b, top=40):
    """Total-variation distance between the count histograms of a and b."""
    ha = np.bincount(np.minimum(a.ravel().astype(np.int64), top), minlength=top + 1) / a.size
    hb = np.bincount(np.minimum(b.ravel().astype(np.int64), top), minlength=top + 1) / b.size
    return 0.5 * float(np.abs(ha - hb).sum())


def fmt(v):
    return " ".join(f"{x:6.2f}" for x in v)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/sim_preview.png")
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[1] / ".." / "shared"))
    args = ap.parse_args()
    data = Path(args.shared) / "data"
    have = data.is_dir()
    panels = []  # (title, image)

    # -- timings -------------------------------------------------------------------------
    t = time.perf_counter()
    demo = S.sample_movie()
    t256 = time.perf_counter() - t
    t = time.perf_counter()
    S.sample_movie((512, 512), 64)
    t512 = time.perf_counter() - t
    print(f"sample_movie 256x256x60: {t256:.2f} s   512x512x64: {t512:.2f} s")
    panels += [("sample_movie clean t=0", demo.clean[0]), ("sample_movie clean t=59", demo.clean[-1]),
               ("sample_movie counts t=0 (50 e/px)", demo.frames[0])]

    # -- HRTEM vs abTEM multislice -----------------------------------------------------------
    matched = S.SimConfig(n_frames=24, pixel_size_a=0.1875, lattice="fcc100", particle_radius_a=10.0,
                          radius_spread=0.0, defocus_nm=-14.0, dose=6.94, seed=3)
    sim = S.simulate_movie(matched)
    print("\nHRTEM: abTEM multislice Au/a-C vs simulate (fcc100, 0.1875 A/px, df -14 nm, 6.9 e/px)")
    rows = [("sim", sim.clean, sim.frames)]
    if have:
        import tifffile

        ab = np.load(data / "sim/sim_abtem_Au_aC_movie_clean.npy")
        abn = tifffile.imread(data / "sim/sim_abtem_Au_aC_movie_counts.tif")
        rows.insert(0, ("abTEM", ab[:24], abn[:24]))
        panels += [("abTEM clean (reference)", ab[0]), ("abTEM counts", abn[0])]
    panels += [("sim matched to abTEM, clean", sim.clean[0]), ("sim matched, counts", sim.frames[0])]
    for name, c, n in rows:
        c = c / c.mean()
        sup = np.concatenate([c[:, :48].ravel(), c[:, -48:].ravel()])
        h = c.shape[1] // 2
        core = c[:, h - 24:h + 24, h - 24:h + 24]
        print(f"  {name:6s} support rel. std {sup.std():.3f}   particle core std {core.std():.3f}"
              f"   range {c.min():.2f}..{c.max():.2f}   counts mean {n.mean():.2f} var/mean {n.var() / n.mean():.2f}")
        print(f"         support PSD {fmt(np.log10(rpsd(c[0][:64]))[1:16])}")
    if have:
        print(f"  counts histogram TV distance abTEM vs sim: {hist_tv(abn[:24], sim.frames):.3f}")

    # -- STEM vs real MoS2 (semireal: real image moved, ~1 e/px) ------------------------------------
    mos = S.SimConfig(n_frames=16, mode="stem", scene="crystal", lattice="honeycomb", pixel_size_a=0.137,
                      support_thickness_a=0.0, dose=1.0, probe_sigma_a=0.5, probe_tail=0.1,
                      stem_background=0.05, vacancy_fraction=0.02, dopant_fraction=0.03,
                      dopant_contrast=1.5, column_jitter_a=0.03, scan_jitter_px=0.25, seed=4)
    sm = S.simulate_movie(mos)
    panels += [("sim STEM honeycomb clean", sm.clean[0]), ("sim STEM counts (1 e/px)", sm.frames[0])]
    print("\nSTEM: real MoS2 ADF (semireal, 0.137 A/px, 1 e/px) vs simulate (honeycomb crystal)")
    rows = [("sim", sm.clean, sm.frames)]
    if have:
        import tifffile

        sr = np.load(data / "semireal/semireal_MoS2_ADF_64x256_clean.npy")[:16].astype(np.float32)
        srn = tifffile.imread(data / "semireal/semireal_MoS2_ADF_64x256_counts.tif")[:16]
        rows.insert(0, ("real", sr, srn))
        panels += [("real MoS2 ADF (semireal clean)", sr[0]), ("semireal counts", srn[0])]
    for name, c, n in rows:
        c = c / c.mean()
        print(f"  {name:6s} rel. std {c.std():.3f}  p1/p50/p99 {fmt(np.percentile(c, [1, 50, 99]))}"
              f"   P(n=0) {np.mean(n == 0):.3f} P(n=1) {np.mean(n == 1):.3f} max {n.max()}")
        print(f"         PSD {fmt(np.log10(rpsd(c[0]))[1:16])}")
    if have:
        print(f"  counts histogram TV distance real vs sim: {hist_tv(srn, sm.frames):.3f}")

    # -- STEM perovskite vs SrTiO3 (a single real frame: compare noisy with noisy) ---------------------
    print("\nSTEM: real SrTiO3 frame vs simulate (perovskite001) frame at about the same relative noise")
    dose = 200.0
    if have:
        st = np.load(data / "real/SrTiO3_STEM_TitanCubed_1024_uint16.npy")[:256, :256].astype(float)
        st = st - np.percentile(st, 0.5)
        # white-noise variance from the flat high-frequency floor of the power
        # spectrum (the probe-limited lattice has no power there) -> dose
        win = np.outer(np.hanning(256), np.hanning(256))
        pw = np.abs(np.fft.fft2((st - st.mean()) * win)) ** 2
        r = np.hypot(np.fft.fftfreq(256)[:, None], np.fft.fftfreq(256)[None])
        noise = float(pw[(r > 0.15) & (r < 0.35)].mean() / (win**2).sum())
        rel_noise = noise / st.mean() ** 2
        print(f"  real frame's relative noise variance {rel_noise:.4f} (Poisson-equivalent dose {1 / rel_noise:.0f} e/px)")
    per = S.SimConfig(n_frames=2, mode="stem", scene="crystal", lattice="perovskite001", pixel_size_a=0.14,
                      support_thickness_a=0.0, dose=dose, dtype="float32", probe_sigma_a=0.8, probe_tail=0.25,
                      stem_background=0.35, seed=5)
    if have:  # same relative noise after the same offset removal
        c0 = S.simulate_movie(per).clean[0]
        k = (c0 - np.percentile(c0, 0.5)).mean() / c0.mean()
        per = per.replace(dose=float(1.0 / (k * k * rel_noise)))
        print(f"  simulated at {per.dose:.0f} e/px")
    sp = S.simulate_movie(per)
    panels += [("sim STEM perovskite, same dose", sp.frames[0])]
    rows = [("sim", sp.frames[0])]
    if have:
        rows.insert(0, ("real", st))
        panels += [("real SrTiO3 STEM", st)]
    for name, c in rows:
        c = c - np.percentile(c, 0.5)
        c = c / c.mean()
        print(f"  {name:6s} rel. std {c.std():.3f}  PSD {fmt(np.log10(rpsd(c))[1:16])}")

    # -- random training configs and a texture movie ----------------------------------------------------
    rng = np.random.default_rng(11)
    for i in range(6):
        cfg = S.random_config(rng, shape=(192, 192), n_frames=6)
        t = time.perf_counter()
        m = S.simulate_movie(cfg)
        label = f"random {cfg.mode} {cfg.scene} {cfg.lattice} {cfg.dose:.0f}e"
        print(f"{label}: {time.perf_counter() - t:.2f} s")
        panels += [(label + " clean", m.clean[-1]), (label + " frames", m.frames[-1])]
    if have:
        img = np.load(data / "real/atomic_lattice_Acquisition18_1024_uint16.npy")
        tm = S.texture_movie(img, 8, np.random.default_rng(0), dose=20.0, prefilter_sigma=1.0)
        panels += [("texture_movie Acq18 clean", tm.clean[-1]), ("texture_movie counts 20e", tm.frames[-1])]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncol = 6
    nrow = -(-len(panels) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 3.4 * nrow))
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, im) in zip(axes.flat, panels):
        im = np.asarray(im, float)
        lo, hi = np.percentile(im, [0.5, 99.5])
        ax.imshow(im, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(title, fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=70)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
