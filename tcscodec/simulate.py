"""Simulated in-situ electron-microscopy movies with ground truth.

The simulator renders physics-inspired TEM (HRTEM phase contrast) and STEM
(ADF, Z contrast) movies of crystalline nanoparticles or crystal films on an
amorphous support, moving the way specimens move in in-situ experiments, and
returns both the noisy detector frames and their noise-free expectation.
It needs only numpy (all filtering is done with FFTs) and is fast enough to
make training data on the fly: see :func:`sample_movie` for timings.

What is modelled, frame by frame:

- Specimen.  Atom columns on projected lattices (``LATTICES``: fcc [100],
  [110], [111], zinc-blende [110] dumbbells, perovskite [001], MoS2-like
  honeycomb) cut into facetted particles (facet normals and families that
  the lattice allows, e.g. {100}/{111}/{110} for fcc [110]) with a thickness
  profile, so edge columns are weaker than central ones; or an extended
  crystal film with vacancies, dopants and a wavy edge.  The amorphous
  support is a random set of carbon atoms (about 0.1 atoms/A^3 times the
  support thickness) with slow mass-thickness variations: after the
  microscope transfer function it gives the familiar a-C speckle with the
  right power spectrum.  Columns and atoms have Gaussian projected
  profiles; positions are continuous (no pixel snapping).
- HRTEM image formation.  Projected phase grating ``exp(i phi - a phi)``
  (so strong columns are not linearised), wave aberration
  ``chi(k) = pi lambda k^2 (Cs lambda^2 k^2 / 2 - df)`` with two-fold
  astigmatism, objective aperture, temporal (focal spread) and spatial
  (source size) envelopes, intensity ``|psi|^2``, then detector MTF and
  motion blur along the drift during the exposure.  Contrast reversals,
  Fresnel fringes at particle edges and delocalisation come out of this.
  Bright atoms (negative Cs, overfocus) or dark atoms (positive Cs,
  underfocus) depend on the optics in :class:`SimConfig`.
- STEM/ADF image formation.  Incoherent Z-contrast: column intensities
  (basis weights roughly ``Z**1.7``) convolved with a probe (Gaussian core
  plus a wide tail), weak support signal, constant background, scan
  distortion from drift during the raster (each row is recorded at a
  different time) and line jitter.  No CTF, no detector MTF.
- Dynamics over T frames: smooth random-walk drift (sub-pixel, exact since
  positions are continuous), slow global rotation, per-particle rotation
  and diffusion, growth or shrinkage, sintering of two particles (approach,
  neck growth, oriented attachment into one lattice), surface hopping
  (columns in the surface shell appear and disappear), sudden jumps of a
  particle, zone-axis wobble (a particle tilting off zone loses its
  lattice fringes), focus drift, beam-current flicker.
- Dose and detector: Poisson counts with mean ``dose`` electrons per pixel
  per frame; output as uint32 counts, or uint8/uint16/float32 with gain,
  dark offset and Gaussian read noise.

``SimulatedMovie.clean`` is the exact expectation of ``frames`` before
read noise, rounding and clipping, in the same units.  Everything is
deterministic: the same :class:`SimConfig` gives bit-identical output on a
given platform (``numpy.random.Generator(PCG64)`` streams spawned from the
seed: scene, dynamics and noise draw from separate streams).

The simulator was compared with an abTEM multislice HRTEM movie of an Au
particle on amorphous carbon and with real ADF-STEM images (power spectrum
shape, support and column contrast, count histograms): see
``bench/sim_preview.py``.

Example::

    >>> from tcscodec.simulate import sample_movie, SimConfig, simulate_movie
    >>> movie = sample_movie((128, 128), n_frames=4, seed=1)
    >>> movie.frames.shape, movie.frames.dtype, movie.clean.dtype
    ((4, 128, 128), dtype('uint16'), dtype('float32'))
    >>> cfg = SimConfig(shape=(64, 96), n_frames=3, mode="stem", scene="crystal",
    ...                 lattice="honeycomb", dose=5.0, dtype="uint8", seed=7)
    >>> simulate_movie(cfg).frames.shape
    (3, 64, 96)
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import TcsValueError
from .format.config import ConfigDict

__all__ = [
    "LATTICES",
    "SimConfig",
    "SimulatedMovie",
    "simulate_movie",
    "random_config",
    "sample_movie",
    "event_movie",
    "EVENT_KINDS",
    "texture_movie",
    "electron_wavelength",
    "scherzer_defocus",
]

_S2 = math.sqrt(2.0)
_S3 = math.sqrt(3.0)
_S6 = math.sqrt(6.0)
_A111 = math.degrees(math.atan(_S2))  # angle of {111} normals from [001] in a [110] zone

# Projected lattices.  Vectors are (y, x) in units of the lattice constant;
# basis entries (u, v, weight) place a column at u*a1 + v*a2 with a relative
# scattering strength (roughly Z**1.7 times atoms per column, strongest = 1).
# facets are (normal angle in degrees, family) of the planes seen edge-on
# in that zone axis; flat lattices are monolayers (uniform thickness, no
# thickness profile).  ``a`` is the default lattice constant in A.
LATTICES: dict[str, dict[str, Any]] = {
    "fcc100": dict(
        a=4.08, a1=(0.0, 1.0), a2=(1.0, 0.0), flat=False,
        basis=((0.0, 0.0, 1.0), (0.5, 0.5, 1.0), (0.5, 0.0, 1.0), (0.0, 0.5, 1.0)),
        facets=tuple((45.0 * i, i % 2) for i in range(8)),
    ),
    "fcc110": dict(
        a=4.08, a1=(0.0, 1.0), a2=(1.0 / _S2, 0.0), flat=False,
        basis=((0.0, 0.0, 1.0), (0.5, 0.5, 1.0)),
        facets=((0.0, 0), (180.0, 0), (90.0, 2), (270.0, 2), (_A111, 1),
                (-_A111, 1), (180.0 - _A111, 1), (180.0 + _A111, 1)),
    ),
    "fcc111": dict(
        a=4.08, a1=(0.0, 1.0 / _S6), a2=(_S3 / 2.0 / _S6, 0.5 / _S6), flat=False,
        basis=((0.0, 0.0, 1.0),),
        facets=tuple((30.0 * i, i % 2) for i in range(12)),
    ),
    "zincblende110": dict(
        a=5.43, a1=(0.0, 1.0), a2=(1.0 / _S2, 0.0), flat=False,
        basis=((0.0, 0.0, 1.0), (0.5, 0.5, 1.0), (0.25, 0.0, 0.85), (0.75, 0.5, 0.85)),
        facets=((0.0, 0), (180.0, 0), (90.0, 2), (270.0, 2), (_A111, 1),
                (-_A111, 1), (180.0 - _A111, 1), (180.0 + _A111, 1)),
    ),
    "perovskite001": dict(
        a=3.905, a1=(0.0, 1.0), a2=(1.0, 0.0), flat=False,
        basis=((0.0, 0.0, 1.0), (0.5, 0.5, 0.45), (0.5, 0.0, 0.08), (0.0, 0.5, 0.08)),
        facets=tuple((45.0 * i, i % 2) for i in range(8)),
    ),
    "honeycomb": dict(
        a=3.16, a1=(0.0, 1.0), a2=(_S3 / 2.0, 0.5), flat=True,
        basis=((0.0, 0.0, 1.0), (1.0 / 3.0, 1.0 / 3.0, 0.45)),
        facets=tuple((30.0 + 120.0 * i, 0) for i in range(3))
        + tuple((90.0 + 120.0 * i, 1) for i in range(3))
        + tuple((60.0 * i, 2) for i in range(6)),
    ),
}

_MODES = ("hrtem", "stem")
_SCENES = ("particles", "crystal", "support")
_DTYPES = ("uint8", "uint16", "uint32", "float32")

# Amorphous carbon: number density (atoms per A^3) and, per projected atom,
# the integrated phase (rad A^2, HRTEM) and ADF signal (relative to one
# full-strength column, STEM).  The phase is tuned so a 30 A film gives
# ~10 % rms intensity speckle at Scherzer-like focus, as abTEM multislice of
# a-C on the same optics does; the ADF weight makes the support faint.
_C_DENSITY = 0.1
_C_PHASE_A2 = 0.045
_C_ADF = 0.0035
_OFFZONE_ABSORPTION = 0.35  # amplitude loss per radian of an off-zone crystal (HRTEM)
_T_MIN = 0.2  # relative weight of a one-atom-thick surface column (adatom)
_MAX_ATOMS_PER_PX = 0.6  # support atoms are merged beyond this density


def electron_wavelength(voltage_kv: float) -> float:
    """Relativistic electron wavelength in A for an accelerating voltage in kV.

    >>> round(electron_wavelength(300.0), 5)
    0.01969
    """
    v = float(voltage_kv) * 1e3
    return 12.2642598 / math.sqrt(v * (1.0 + 0.978475e-6 * v))


def scherzer_defocus(cs_mm: float, voltage_kv: float) -> float:
    """Scherzer defocus in nm, ``sign(Cs) * sqrt(1.5 |Cs| lambda)``.

    Positive is underfocus (dark atoms with positive Cs), negative is
    overfocus (bright atoms with negative Cs, NCSI).  Never smaller than
    2 nm in magnitude, so an aberration-free lens still gives contrast.
    """
    lam = electron_wavelength(voltage_kv)
    df = math.sqrt(1.5 * abs(cs_mm) * 1e7 * lam) / 10.0
    return math.copysign(max(df, 2.0), cs_mm if cs_mm != 0 else -1.0)


@dataclass(frozen=True)
class SimConfig(ConfigDict):
    """Every parameter of :func:`simulate_movie`, with the demo's defaults.

    Lengths carry their unit in the name (``_a``: Angstrom, ``_nm``,
    ``_mm``, ``_px``: pixels, ``_deg``: degrees); rates are per frame.
    Instances are immutable and hashable; use :meth:`replace` to vary one,
    :meth:`to_dict` / :meth:`from_dict` to store one as JSON.

    Geometry
        shape: (height, width) of a frame.  n_frames: T.  seed: 0..2**64-1.
        mode: 'hrtem' (phase contrast) or 'stem' (ADF Z contrast).
        pixel_size_a: sampling in A per pixel.
    Scene
        scene: 'particles' (facetted crystals on the support), 'crystal'
        (an extended crystal film) or 'support' (amorphous support only).
        lattice: a key of ``LATTICES`` (particles cycle through
        ``particle_lattices`` when given).  lattice_constant_a: 0 for the
        lattice's own.  n_particles, particle_radius_a (inscribed radius of
        the main facets), radius_spread (relative std), facet_irregularity.
        column_phase: HRTEM peak phase of a full-thickness column (rad);
        column_sigma_a: column profile width; absorption: amplitude loss
        per radian of phase.  column_jitter_a: per-frame rms displacement
        of columns (thermal/beam induced).  site_disorder: rms relative
        column-strength variation.  vacancy_fraction, dopant_fraction,
        dopant_contrast: point defects (crystal films and particles).
        crystal_coverage: fraction of the field the crystal film covers
        (edge to vacuum or support when < 1).  support_thickness_a: a-C
        thickness (0: no support).  support_sigma_a: carbon atom profile
        width.  thickness_variation: relative rms of slow mass-thickness
        variations.  support_coverage: fraction of the field on support.
        support_jitter_a: per-frame rms jitter of support atoms.
    HRTEM optics
        voltage_kv, cs_mm, defocus_nm (None: Scherzer for ``cs_mm``,
        positive = underfocus), defocus_drift_nm (per frame),
        focal_spread_nm, aperture_mrad (objective aperture semi-angle),
        source_mrad (illumination semi-angle), astig_nm / astig_deg
        (two-fold astigmatism), mtf_sigma_px (Gaussian detector MTF),
        exposure (fraction of the frame time the detector integrates:
        motion blur).
    STEM
        probe_sigma_a (probe core), probe_tail (fraction of the intensity in
        a 4x wider tail), stem_background (constant, relative to a full
        column), scan_jitter_px (rms line-to-line jitter).
    Dynamics
        drift_px: mean drift velocity (dy, dx) in pixels per frame;
        drift_jitter_px: rms of the velocity's random part, which is an
        AR(1) process with correlation drift_correlation.  rotation_deg:
        global rotation per frame (plus rotation_jitter_deg random walk).
        particle_rotation_deg: rms of each particle's own rotation rate.
        particle_diffusion_px: per-frame rms random step of particles.
        growth: relative size change over the movie (-0.3: shrinks by 30 %).
        sinter: particles 0 and 1 approach, touch at fraction
        sinter_start of the movie and coalesce with time constant
        sinter_tau (fraction of the movie).  hop_rate: per-frame
        probability that a surface-shell site (relative depth
        surface_shell) flips occupancy; in crystal films, the per-frame
        vacancy creation/annihilation rate.  jump_rate: expected sudden
        jumps per particle per frame, of about jump_px pixels.
        zone_wobble: how far particles tilt off zone (0..1).  flicker:
        relative rms of beam-current fluctuations.
    Dose and detector
        dose: mean expected electrons per pixel per frame (1..500 typical).
        dtype: 'uint8', 'uint16', 'uint32' or 'float32' frames.  gain: ADU
        per electron (None: 1, or less if the frames would saturate).
        offset: dark level in ADU.  read_noise: Gaussian rms in ADU.
    """

    shape: tuple[int, int] = (256, 256)
    n_frames: int = 60
    seed: int = 0
    mode: str = "hrtem"
    pixel_size_a: float = 0.19
    # scene
    scene: str = "particles"
    lattice: str = "fcc110"
    particle_lattices: tuple[str, ...] = ()
    lattice_constant_a: float = 0.0
    n_particles: int = 1
    particle_radius_a: float = 12.0
    radius_spread: float = 0.25
    facet_irregularity: float = 0.04
    column_phase: float = 3.0
    column_sigma_a: float = 0.4
    absorption: float = 0.08
    column_jitter_a: float = 0.02
    site_disorder: float = 0.05
    vacancy_fraction: float = 0.0
    dopant_fraction: float = 0.0
    dopant_contrast: float = 1.6
    crystal_coverage: float = 1.0
    support_thickness_a: float = 30.0
    support_sigma_a: float = 0.2
    thickness_variation: float = 0.15
    support_coverage: float = 1.0
    support_jitter_a: float = 0.0
    # HRTEM optics
    voltage_kv: float = 300.0
    cs_mm: float = -0.015
    defocus_nm: float | None = None
    defocus_drift_nm: float = 0.0
    focal_spread_nm: float = 3.0
    aperture_mrad: float = 30.0
    source_mrad: float = 0.05
    astig_nm: float = 0.0
    astig_deg: float = 0.0
    mtf_sigma_px: float = 0.7
    exposure: float = 0.9
    # STEM
    probe_sigma_a: float = 0.55
    probe_tail: float = 0.12
    stem_background: float = 0.03
    scan_jitter_px: float = 0.0
    # dynamics
    drift_px: tuple[float, float] = (0.35, -0.25)
    drift_jitter_px: float = 0.12
    drift_correlation: float = 0.9
    rotation_deg: float = 0.05
    rotation_jitter_deg: float = 0.01
    particle_rotation_deg: float = 0.05
    particle_diffusion_px: float = 0.05
    growth: float = 0.0
    sinter: bool = False
    sinter_start: float = 0.4
    sinter_tau: float = 0.25
    hop_rate: float = 0.02
    surface_shell: float = 0.12
    jump_rate: float = 0.0
    jump_px: float = 6.0
    zone_wobble: float = 0.0
    flicker: float = 0.03
    # dose and detector
    dose: float = 50.0
    dtype: str = "uint16"
    gain: float | None = 1.0
    offset: float = 0.0
    read_noise: float = 0.0

    def __post_init__(self):
        def fix(name, value):
            object.__setattr__(self, name, value)

        try:
            shape = tuple(int(s) for s in self.shape)
            drift = tuple(float(d) for d in self.drift_px)
        except (TypeError, ValueError):
            raise TcsValueError(f"bad shape {self.shape!r} or drift_px {self.drift_px!r}") from None
        if len(shape) != 2 or min(shape) < 8:
            raise TcsValueError(f"shape must be (height, width) >= 8, got {self.shape!r}")
        if len(drift) != 2:
            raise TcsValueError(f"drift_px must be (dy, dx), got {self.drift_px!r}")
        fix("shape", shape)
        fix("drift_px", drift)
        fix("particle_lattices", tuple(str(s) for s in self.particle_lattices))
        if isinstance(self.seed, bool) or not 0 <= int(self.seed) < 2**64:
            raise TcsValueError(f"seed must be in 0..2**64-1, got {self.seed!r}")
        fix("seed", int(self.seed))
        fix("n_frames", int(self.n_frames))
        fix("n_particles", int(self.n_particles))
        fix("sinter", bool(self.sinter))
        if self.n_frames < 1:
            raise TcsValueError(f"n_frames must be >= 1, got {self.n_frames}")
        for name, allowed in (("mode", _MODES), ("scene", _SCENES), ("dtype", _DTYPES)):
            if getattr(self, name) not in allowed:
                raise TcsValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for lat in (self.lattice,) + self.particle_lattices:
            if lat not in LATTICES:
                raise TcsValueError(f"unknown lattice {lat!r}; known: {sorted(LATTICES)}")
        positive = ("pixel_size_a", "column_sigma_a", "support_sigma_a", "voltage_kv",
                    "aperture_mrad", "probe_sigma_a", "dose")
        for name in positive:
            if not getattr(self, name) > 0:
                raise TcsValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        nonneg = ("lattice_constant_a", "particle_radius_a", "radius_spread", "column_phase",
                  "absorption", "column_jitter_a", "site_disorder", "support_thickness_a",
                  "thickness_variation", "support_jitter_a", "focal_spread_nm", "source_mrad",
                  "astig_nm", "mtf_sigma_px", "exposure", "probe_tail", "stem_background",
                  "scan_jitter_px", "drift_jitter_px", "rotation_jitter_deg",
                  "particle_rotation_deg", "particle_diffusion_px", "hop_rate",
                  "surface_shell", "jump_rate", "jump_px", "zone_wobble", "flicker",
                  "offset", "read_noise", "n_particles", "facet_irregularity")
        for name in nonneg:
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise TcsValueError(f"{name} must be finite and >= 0, got {value!r}")
        for name in ("vacancy_fraction", "dopant_fraction", "crystal_coverage",
                     "support_coverage", "drift_correlation", "sinter_start", "exposure",
                     "probe_tail", "hop_rate", "zone_wobble"):
            if not 0 <= getattr(self, name) <= 1:
                raise TcsValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if self.growth <= -0.9:
            raise TcsValueError(f"growth must be > -0.9, got {self.growth}")
        if self.sinter_tau <= 0:
            raise TcsValueError(f"sinter_tau must be > 0, got {self.sinter_tau}")
        if self.gain is not None and not self.gain > 0:
            raise TcsValueError(f"gain must be > 0 or None, got {self.gain!r}")

    # to_dict / from_dict come from ConfigDict (unknown keys raise TcsValueError)
    def _to_json(self, d: dict) -> dict:
        """Tuples become lists."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def replace(self, **changes) -> SimConfig:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, eq=False)
class SimulatedMovie:
    """A simulated movie and its ground truth.

    frames: (T, H, W) detector frames in ``config.dtype``.
    clean: (T, H, W) float32, the noise-free expectation of ``frames`` in the
    same units (offset and gain applied; before read noise, rounding and
    clipping).
    config: the :class:`SimConfig` that made it (None for
    :func:`texture_movie`, whose parameters are in ``meta``).
    meta: JSON-serialisable facts about the movie: per-frame drift
    (``drift_px``, content displacement from frame 0 in (dy, dx) pixels),
    ``rotation_deg``, ``flicker``, ``defocus_nm``, particle tracks,
    events (jumps, sintering contact), the gain and offset used, the
    realised mean dose and the run time.
    """

    frames: np.ndarray
    clean: np.ndarray
    config: SimConfig | None
    meta: dict

    def __iter__(self):  # allows ``frames, clean, config, meta = movie``
        return iter((self.frames, self.clean, self.config, self.meta))


# -- small numerical helpers -------------------------------------------------------------------


def _rng(seed_seq) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seed_seq))


def _next_fast_len(n: int) -> int:
    """Smallest 5-smooth integer >= n (fast FFT size)."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _ar1(rng: np.random.Generator, n: int, rho: float, size=()) -> np.ndarray:
    """Stationary unit-variance AR(1) sequence of length n (axis 0)."""
    z = rng.standard_normal((n,) + tuple(size))
    out = np.empty_like(z)
    out[0] = z[0]
    s = math.sqrt(max(1.0 - rho * rho, 0.0))
    for t in range(1, n):
        out[t] = rho * out[t - 1] + s * z[t]
    return out


def _rot(theta: float) -> np.ndarray:
    """Matrix rotating (y, x) row vectors by theta (counter-clockwise on screen
    with y down means clockwise; only consistency matters).  Use as ``p @ R``."""
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[c, -s], [s, c]])


def _smooth_field(rng: np.random.Generator, scale_a: float, n: int = 8):
    """Random smooth function of (y, x) in A: unit rms sum of n plane waves with
    wavelengths around ``scale_a``.  Returns a callable on (N, 2) arrays."""
    ang = rng.uniform(0, 2 * np.pi, n)
    lam = scale_a * np.exp(rng.uniform(-0.5, 0.5, n))
    k = np.stack([np.sin(ang), np.cos(ang)], 1) / lam[:, None]
    ph = rng.uniform(0, 2 * np.pi, n)
    amp = math.sqrt(2.0 / n)

    def f(p):
        return amp * np.cos(2 * np.pi * (p @ k.T) + ph).sum(1)

    return f


def _coverage_mask(rng: np.random.Generator, frac: float, half_a: float):
    """Region covering about ``frac`` of a square field of half-size half_a
    (A, centred on 0), bounded by a wavy edge.  Returns a callable
    ``inside(p) -> bool array`` (always True when frac >= 1)."""
    if frac >= 1.0:
        return lambda p: np.ones(len(p), bool)
    ang = rng.uniform(0, 2 * np.pi)
    n = np.array([math.sin(ang), math.cos(ang)])
    tang = np.array([n[1], -n[0]])
    waves = [(rng.uniform(0.2, 1.5) / half_a, rng.uniform(0, 2 * np.pi), rng.uniform(0.02, 0.08) * half_a)
             for _ in range(3)]

    def g(p):
        u = p @ tang
        return p @ n + sum(a * np.sin(2 * np.pi * k * u + ph) for k, ph, a in waves)

    grid = np.linspace(-half_a, half_a, 48)
    gy, gx = np.meshgrid(grid, grid, indexing="ij")
    level = np.quantile(g(np.stack([gy.ravel(), gx.ravel()], 1)), frac) if frac > 0 else -np.inf
    return lambda p: g(p) < level


def _splat(grid: np.ndarray, pos: np.ndarray, w: np.ndarray) -> None:
    """Add weights w at continuous (y, x) pixel positions into ``grid``
    (periodic), with quadratic B-spline weights.

    The quadratic B-spline has the same variance (1/4 px^2) for every
    sub-pixel position, so a column's width does not flicker as it drifts
    across pixels (linear splatting would); the 1/4 is taken off the
    Gaussian applied in Fourier space afterwards.
    """
    if len(w) == 0:
        return
    hc, wc = grid.shape
    iy = np.floor(pos[:, 0] + 0.5)
    ix = np.floor(pos[:, 1] + 0.5)
    uy = pos[:, 0] - iy
    ux = pos[:, 1] - ix
    wy = np.stack([0.5 * (0.5 - uy) ** 2, 0.75 - uy * uy, 0.5 * (0.5 + uy) ** 2], 1) * w[:, None]
    wx = np.stack([0.5 * (0.5 - ux) ** 2, 0.75 - ux * ux, 0.5 * (0.5 + ux) ** 2], 1)
    iy = iy.astype(np.int64)
    ix = ix.astype(np.int64)
    ry = (iy[:, None] + np.arange(-1, 2)) % hc
    rx = (ix[:, None] + np.arange(-1, 2)) % wc
    idx = (ry[:, :, None] * wc + rx[:, None, :]).ravel()
    grid.ravel()[:] += np.bincount(idx, (wy[:, :, None] * wx[:, None, :]).ravel(), minlength=hc * wc)


def _gauss_ft(f2: np.ndarray, sigma_px: float) -> np.ndarray:
    """Fourier transform of a unit-mass Gaussian (sigma in px) at squared
    frequencies f2 (cycles/px), less the splat kernel's 1/4 px^2 variance."""
    var = max(sigma_px * sigma_px - 0.25, 0.0)
    return np.exp(-2.0 * np.pi**2 * var * f2)


# -- scene ---------------------------------------------------------------------------------------


def _lattice_sites(name: str, a: float, radius: float, offset: np.ndarray):
    """Columns of lattice ``name`` (constant a, A) within ``radius`` of the
    origin, shifted by ``offset`` (fractional cell coordinates).
    Returns positions (N, 2) in A (y, x), basis weights (N,), and the
    lattice vectors (2, 2) in A."""
    lat = LATTICES[name]
    a1 = np.array(lat["a1"]) * a
    a2 = np.array(lat["a2"]) * a
    basis = np.array(lat["basis"])
    cell = np.stack([a1, a2])
    # enough cells to cover the disc: the cell's height along each axis
    area = abs(a1[0] * a2[1] - a1[1] * a2[0])
    n = int(math.ceil(radius * max(np.linalg.norm(a1), np.linalg.norm(a2)) / area)) + 2
    i = np.arange(-n, n + 1)
    ii, jj = np.meshgrid(i, i, indexing="ij")
    uv = np.stack([ii.ravel(), jj.ravel()], 1)[:, None, :] + basis[None, :, :2] + offset
    pos = (uv.reshape(-1, 2) @ cell)
    w = np.broadcast_to(basis[None, :, 2], uv.shape[:2]).ravel()
    keep = np.hypot(pos[:, 0], pos[:, 1]) <= radius
    return pos[keep], w[keep].copy(), cell


def _nn_distance(name: str, a: float) -> float:
    pos, _, _ = _lattice_sites(name, a, 3.0 * a, np.zeros(2))
    d = np.hypot(pos[:, 0] - pos[0, 0], pos[:, 1] - pos[0, 1])
    return float(np.min(d[d > 1e-6])) if np.any(d > 1e-6) else a


class _Particle:
    """One facetted crystal: sites in its own frame and its per-frame path."""

    def __init__(self, rng, cfg: SimConfig, lattice: str, radius: float, max_radius: float):
        lat = LATTICES[lattice]
        a = cfg.lattice_constant_a or lat["a"]
        self.lattice = lattice
        self.radius = radius
        self.flat = lat["flat"]
        self.offset = rng.uniform(0, 1, 2)
        # Facets: distances per family (main family 1), small irregularity.
        fams = np.array([f for _, f in lat["facets"]])
        angs = np.radians([ang for ang, _ in lat["facets"]])
        if lattice == "honeycomb":  # flakes are triangles to truncated triangles
            famd = np.array([1.0, rng.uniform(1.15, 2.0), rng.uniform(1.05, 1.6)])
        else:
            famd = np.array([1.0, rng.uniform(0.92, 1.15), rng.uniform(0.97, 1.3)])
        d = famd[fams] * np.exp(cfg.facet_irregularity * rng.standard_normal(len(fams)))
        self.normals = np.stack([np.sin(angs), np.cos(angs)], 1) / d[:, None]
        # sites out to the largest size the particle reaches, plus the surface shell
        reach = max_radius * float(np.max(d)) * (1.0 + cfg.surface_shell) * 1.15
        self.sites, w, self.cell = _lattice_sites(lattice, a, reach, self.offset)
        w = w * np.exp(cfg.site_disorder * rng.standard_normal(len(w)))
        if cfg.dopant_fraction > 0:
            w = np.where(rng.random(len(w)) < cfg.dopant_fraction, w * cfg.dopant_contrast, w)
        self.weight = w
        self.gauge0 = self.gauge(self.sites)
        self.occ: np.ndarray | None = None
        self.vacant = rng.random(len(w)) < cfg.vacancy_fraction
        self.spacing = _nn_distance(lattice, a)
        self.partner = -1

    def nearest_site(self, p: np.ndarray) -> np.ndarray:
        """Distance (A) from points p in the particle frame to the nearest site
        of the particle's infinite lattice (rounding in cell coordinates)."""
        uv = p @ np.linalg.inv(self.cell) - self.offset
        best = np.full(len(p), np.inf)
        for bu, bv, _ in LATTICES[self.lattice]["basis"]:
            d = uv - (bu, bv)
            d -= np.round(d)
            xy = d @ self.cell
            best = np.minimum(best, np.hypot(xy[:, 0], xy[:, 1]))
        return best

    def gauge(self, p: np.ndarray) -> np.ndarray:
        """Facet gauge in the particle frame: < 1 inside the unit-size shape."""
        return np.max(p @ self.normals.T, axis=1) / self.radius


class _Scene:
    """Specimen model and its per-frame configuration, in specimen A coordinates
    (origin at the field centre in frame 0)."""

    def __init__(self, cfg: SimConfig, rng: np.random.Generator, dyn: np.random.Generator,
                 cover_a: float, field_half_a: float):
        self.cfg = cfg
        self.particles: list[_Particle] = []
        self.events: list[dict] = []
        px = cfg.pixel_size_a
        # Support: random carbon atoms in a disc covering the canvas in every frame.
        self.sup_pos = np.zeros((0, 2))
        self.sup_w = np.zeros(0)
        if cfg.support_thickness_a > 0 and cfg.support_coverage > 0:
            rho = _C_DENSITY * cfg.support_thickness_a  # atoms per A^2
            merge = max(1.0, rho * px * px / _MAX_ATOMS_PER_PX)
            n = rng.poisson(rho / merge * math.pi * cover_a**2)
            r = cover_a * np.sqrt(rng.random(n))
            phi = rng.uniform(0, 2 * np.pi, n)
            pos = np.stack([r * np.sin(phi), r * np.cos(phi)], 1)
            thick = _smooth_field(rng, 25.0)
            # merged atoms keep the texture's variance, not its mean phase
            w = math.sqrt(merge) * np.clip(1.0 + cfg.thickness_variation * thick(pos), 0.0, None)
            inside = _coverage_mask(rng, cfg.support_coverage, field_half_a)(pos)
            self.sup_pos, self.sup_w = pos[inside], w[inside]
        # Crystal film.
        self.film = None
        if cfg.scene == "crystal":
            a = cfg.lattice_constant_a or LATTICES[cfg.lattice]["a"]
            pos, w, _ = _lattice_sites(cfg.lattice, a, cover_a, rng.uniform(0, 1, 2))
            pos = pos @ _rot(rng.uniform(0, 2 * np.pi))
            thick = _smooth_field(rng, 40.0)
            w = w * np.clip(1.0 + cfg.thickness_variation * thick(pos), 0.05, None)
            w = w * np.exp(cfg.site_disorder * rng.standard_normal(len(w)))
            if cfg.dopant_fraction > 0:
                w = np.where(rng.random(len(w)) < cfg.dopant_fraction, w * cfg.dopant_contrast, w)
            inside = _coverage_mask(rng, cfg.crystal_coverage, field_half_a)(pos)
            pos, w = pos[inside], w[inside]
            occ = rng.random(len(w)) >= cfg.vacancy_fraction
            self.film = dict(pos=pos, w=w, occ=occ, spacing=_nn_distance(cfg.lattice, a))
        # Particles and their paths.
        self.paths: dict[str, np.ndarray] = {}
        if cfg.scene == "particles" and cfg.n_particles > 0:
            self._make_particles(rng, dyn, field_half_a)

    # particles ------------------------------------------------------------------------------
    def _make_particles(self, rng, dyn, half_a):
        cfg = self.cfg
        T = cfg.n_frames
        px = cfg.pixel_size_a
        n = cfg.n_particles + (1 if cfg.sinter and cfg.n_particles == 1 else 0)
        lats = cfg.particle_lattices or (cfg.lattice,)
        grow = 1.0 + cfg.growth * np.linspace(0.0, 1.0, T)
        radii = cfg.particle_radius_a * np.exp(cfg.radius_spread * rng.standard_normal(n))
        radii = np.clip(radii, 3.0, None)
        max_radius = radii * max(1.0, 1.0 + cfg.growth)
        if cfg.sinter:  # particle 1 reuses particle 0's sites up to the merged size
            max_radius[0] = max(radii[0], radii[1], (radii[0] ** 3 + radii[1] ** 3) ** (1 / 3),
                                math.hypot(radii[0], radii[1])) * max(1.0, 1.0 + cfg.growth) * 1.1
        # Place centres without overlap (rejection), first one near the centre.
        centres = []
        for i in range(n):
            for _ in range(200):
                c = rng.uniform(-0.8, 0.8, 2) * half_a * (0.35 if i == 0 else 1.0)
                # radii[:len(centres)]: the particles placed so far
                if all(np.hypot(*(c - cj)) > 1.15 * (radii[i] + rj)
                       for cj, rj in zip(centres, radii[:len(centres)], strict=True)):
                    break
            centres.append(c)
        for i in range(n):
            lat = lats[0 if (cfg.sinter and i == 1) else i % len(lats)]  # a sintering pair shares a lattice
            self.particles.append(_Particle(rng, cfg, lat, radii[i], max_radius[i]))
        angle0 = rng.uniform(0, 2 * np.pi, n)
        # Own motion: rotation rate + diffusion + sudden jumps (in A, specimen frame).
        rate = np.radians(cfg.particle_rotation_deg) * dyn.standard_normal(n)
        steps = cfg.particle_diffusion_px * px * dyn.standard_normal((T, n, 2))
        jumps = dyn.random((T, n)) < cfg.jump_rate
        jump_vec = np.zeros((T, n, 2))
        jump_rot = np.zeros((T, n))
        for t, i in zip(*np.nonzero(jumps), strict=True):
            if t == 0:
                continue
            mag = cfg.jump_px * px * dyn.uniform(0.5, 1.5)
            ang = dyn.uniform(0, 2 * np.pi)
            jump_vec[t, i] = mag * np.array([math.sin(ang), math.cos(ang)])
            jump_rot[t, i] = np.radians(dyn.normal(0.0, 5.0))
            self.events.append(dict(frame=int(t), particle=int(i), kind="jump",
                                    shift_px=[float(v / px) for v in jump_vec[t, i]],
                                    rotation_deg=float(np.degrees(jump_rot[t, i]))))
        steps[0] = 0.0
        centre = np.asarray(centres)[None] + np.cumsum(steps + jump_vec, axis=0)
        angle = angle0[None] + rate[None] * np.arange(T)[:, None] + np.cumsum(jump_rot, axis=0)
        scale = np.repeat(grow[:, None], n, axis=1)
        smin_k = np.full(T, np.inf)
        if cfg.sinter:
            self._sinter_paths(dyn, centre, angle, scale, smin_k)
        self.paths = dict(centre=centre, angle=angle, scale=scale, smin_k=smin_k)
        # Zone-axis wobble: off-zone fraction per particle and frame.
        # (never fully off zone: some fringes usually survive)
        self.tau = np.clip(cfg.zone_wobble * np.abs(_ar1(dyn, T, 0.93, (n,))), 0.0, 0.85)
        if cfg.zone_wobble == 0:
            self.tau[:] = 0.0

    def _sinter_paths(self, dyn, centre, angle, scale, smin_k):
        """Particle 1 approaches particle 0, touches at frame t_c, then the two
        coalesce: the centre distance shrinks to a lattice vector of particle
        0, the misorientation relaxes to zero (oriented attachment), both
        grow towards the volume-conserving final size and the neck widens."""
        cfg = self.cfg
        T = cfg.n_frames
        pa, pb = self.particles[0], self.particles[1]
        pb.offset = pa.offset
        pb.sites, pb.weight = pa.sites.copy(), pa.weight.copy()
        pb.gauge0 = pb.gauge(pb.sites)
        pb.vacant = pa.vacant.copy()
        pb.flat, pb.lattice, pb.cell, pb.spacing = pa.flat, pa.lattice, pa.cell, pa.spacing
        pa.partner, pb.partner = 1, 0
        ra, rb = pa.radius, pb.radius
        rf = (ra**3 + rb**3) ** (1.0 / 3.0) if not pa.flat else math.hypot(ra, rb)
        u_ang = dyn.uniform(0, 2 * np.pi)
        u = np.array([math.sin(u_ang), math.cos(u_ang)])
        d_c = 0.95 * (ra + rb)
        d_0 = d_c * dyn.uniform(1.15, 1.4)
        t_c = cfg.sinter_start * (T - 1)
        tau = max(cfg.sinter_tau * T, 1.0)
        final = 0.25 * d_c * u
        # snap the final separation to a lattice vector of particle 0
        final = np.round(np.linalg.solve(pa.cell.T, final)) @ pa.cell
        mis0 = np.radians(dyn.uniform(-20.0, 20.0))
        t = np.arange(T, dtype=float)
        # coalescence progress: exponential-like, but complete after 3 tau
        x = np.clip((t - t_c) / tau, 0.0, 3.0)
        c = (1.0 - np.exp(-x)) / (1.0 - math.exp(-3.0))
        d = np.where(t <= t_c, d_0 + (d_c - d_0) * t / max(t_c, 1e-9), d_c)
        rel = np.where((t <= t_c)[:, None], d[:, None] * u[None], (1 - c)[:, None] * (d_c * u) + c[:, None] * final)
        mis = mis0 * (1.0 - c)
        for t_i in range(T):
            r = _rot(angle[t_i, 0])
            centre[t_i, 1] = centre[t_i, 0] + rel[t_i] @ r
            angle[t_i, 1] = angle[t_i, 0] + mis[t_i]
        scale[:, 0] *= 1.0 + c * (rf / ra - 1.0)
        scale[:, 1] *= 1.0 + c * (rf / rb - 1.0)
        smin_k[:] = np.where(t <= t_c, np.inf, 40.0 - 30.0 * c)
        self.events.append(dict(frame=int(math.ceil(t_c)), particle=0, kind="sinter_contact", partner=1))

    # per-frame state --------------------------------------------------------------------------
    def columns(self, t: int, rng: np.random.Generator):
        """Atom columns of frame t: positions (N, 2) in specimen A, sharp
        weights (N,), off-zone (blurred) weights (N,), in units of a full
        column; and the support atoms (positions, weights)."""
        cfg = self.cfg
        pos_l, w_l, b_l = [], [], []
        if self.film is not None:
            f = self.film
            if cfg.hop_rate > 0:
                v = max(cfg.vacancy_fraction, 0.01)
                r = rng.random(len(f["occ"]))
                f["occ"] = np.where(f["occ"], r >= cfg.hop_rate * v, r < cfg.hop_rate * (1 - v))
            keep = f["occ"]
            pos_l.append(f["pos"][keep])
            w_l.append(f["w"][keep])
            b_l.append(np.zeros(int(keep.sum())))
        if self.particles:
            P = self.paths
            delta = cfg.surface_shell
            for i, p in enumerate(self.particles):
                rot = _rot(P["angle"][t, i])
                spec = P["centre"][t, i] + p.sites @ rot
                d_own = p.gauge0 / P["scale"][t, i]
                u = d_own
                own = np.ones(len(u), bool)
                if p.partner >= 0:
                    j = p.partner
                    q = self.particles[j]
                    local = (spec - P["centre"][t, j]) @ _rot(P["angle"][t, j]).T
                    d_oth = q.gauge(local) / P["scale"][t, j]
                    k = P["smin_k"][t]
                    if np.isfinite(k):  # after contact: smooth union, the neck fills in
                        m = np.minimum(d_own, d_oth)
                        u = m - np.log(np.exp(-k * (d_own - m)) + np.exp(-k * (d_oth - m))) / k
                    # the particle whose centre is nearer (in gauge) owns a site;
                    # near the boundary, where the two lattices nearly coincide,
                    # particle 0 keeps the pair so no column is doubled
                    own = d_own < d_oth if i == 1 else d_own <= d_oth
                    band = np.abs(d_own - d_oth) < 2.0 * p.spacing / (p.radius * P["scale"][t, i])
                    if band.any():
                        close = np.zeros(len(u), bool)
                        close[band] = q.nearest_site(local[band]) < 0.6 * p.spacing
                        own = own | close if i == 0 else own & ~close
                inner = u < 1.0 - delta
                outer = u > 1.0 + delta
                if p.occ is None:
                    p.occ = u <= 1.0
                flip = rng.random(len(u)) < cfg.hop_rate
                p.occ = np.where(inner, True, np.where(outer, False, p.occ ^ flip))
                vis = p.occ & own & ~p.vacant
                if p.flat:
                    thick = np.ones(int(vis.sum()))
                else:
                    thick = np.sqrt(np.clip(1.0 - u[vis] ** 2, _T_MIN**2, 1.0))
                w = p.weight[vis] * thick
                tau = self.tau[t, i]
                pos_l.append(spec[vis])
                w_l.append(w * (1.0 - tau))
                b_l.append(w * tau)
        if pos_l:
            pos = np.concatenate(pos_l)
            w = np.concatenate(w_l)
            b = np.concatenate(b_l)
        else:
            pos, w, b = np.zeros((0, 2)), np.zeros(0), np.zeros(0)
        if cfg.column_jitter_a > 0 and len(w):
            pos = pos + cfg.column_jitter_a * rng.standard_normal(pos.shape)
        sup = self.sup_pos
        if cfg.support_jitter_a > 0 and len(sup):
            sup = sup + cfg.support_jitter_a * rng.standard_normal(sup.shape)
        return pos, w, b, sup, self.sup_w

    def blur_sigma_a(self) -> float:
        """Profile width of off-zone particles: enough to wash out the lattice."""
        if not self.particles:
            return 1.0
        return 0.6 * float(np.mean([p.spacing for p in self.particles]))


# -- optics ----------------------------------------------------------------------------------------


class _Optics:
    """Fourier-space filters on the padded canvas."""

    def __init__(self, cfg: SimConfig, canvas: tuple[int, int]):
        self.cfg = cfg
        hc, wc = canvas
        px = cfg.pixel_size_a
        fy = np.fft.fftfreq(hc)[:, None]
        fx = np.fft.fftfreq(wc)[None, :]
        fxr = np.fft.rfftfreq(wc)[None, :]
        self.fy, self.fx, self.fxr = fy, fx, fxr
        self.f2r = fy**2 + fxr**2  # rfft grid, cycles/px
        self.lam = electron_wavelength(cfg.voltage_kv)
        if cfg.mode == "hrtem":
            self.k2 = (fy**2 + fx**2) / px**2  # full grid, 1/A^2
            self.kang = np.arctan2(fy, fx)
            k = np.sqrt(self.k2)
            k_ap = cfg.aperture_mrad * 1e-3 / self.lam
            edge = 0.01 * k_ap + 0.5 / (px * max(hc, wc))
            self.aperture = 0.5 * (1.0 - np.tanh((k - k_ap) / edge))
            delta = cfg.focal_spread_nm * 10.0
            self.env_t = np.exp(-0.5 * (np.pi * self.lam * delta) ** 2 * self.k2**2)
            self.mtf = np.exp(-2.0 * np.pi**2 * cfg.mtf_sigma_px**2 * self.f2r).astype(np.float32)
            self.fy32 = fy.astype(np.float32)
            self.fxr32 = fxr.astype(np.float32)
        self._h_cache: tuple[float | None, np.ndarray | None] = (None, None)

    def defocus_a(self, t: int) -> float:
        cfg = self.cfg
        df = scherzer_defocus(cfg.cs_mm, cfg.voltage_kv) if cfg.defocus_nm is None else cfg.defocus_nm
        return 10.0 * (df + cfg.defocus_drift_nm * t)

    def transfer(self, df: float) -> np.ndarray:
        """Wave transfer function exp(-i chi) x aperture x envelopes at defocus df (A)."""
        cached_df, cached_h = self._h_cache
        if cached_df == df and cached_h is not None:
            return cached_h
        cfg = self.cfg
        lam = self.lam
        cs = cfg.cs_mm * 1e7
        dfk = df + 5.0 * cfg.astig_nm * np.cos(2.0 * (self.kang - np.radians(cfg.astig_deg)))
        k2 = self.k2
        chi = np.pi * lam * k2 * (0.5 * cs * lam * lam * k2 - dfk)
        k = np.sqrt(k2)
        grad = cs * lam**3 * k2 * k - dfk * lam * k  # d chi / dk / (2 pi) * lambda ... in A
        env_s = np.exp(-((np.pi * cfg.source_mrad * 1e-3 / lam) ** 2) * grad**2)
        h = (np.exp(-1j * chi) * (self.aperture * self.env_t * env_s)).astype(np.complex64)
        self._h_cache = (df, h)
        return h

    def delocalisation_px(self) -> float:
        """Largest image shift of any transferred frequency over the movie, px."""
        cfg = self.cfg
        lam = self.lam
        k = np.linspace(0, cfg.aperture_mrad * 1e-3 / lam, 256)
        cs = cfg.cs_mm * 1e7
        dfs = [self.defocus_a(0), self.defocus_a(cfg.n_frames - 1)]
        r = max(float(np.max(np.abs(cs * lam**3 * k**3 - (df + 5 * cfg.astig_nm) * lam * k))) for df in dfs)
        return r / cfg.pixel_size_a


# -- the simulator ---------------------------------------------------------------------------------


def _trajectory(cfg: SimConfig, rng: np.random.Generator):
    """Global drift (T, 2) px, velocity (T, 2) px/frame, rotation (T,) rad, flicker (T,)."""
    T = cfg.n_frames
    v = np.asarray(cfg.drift_px)[None] + cfg.drift_jitter_px * _ar1(rng, T, cfg.drift_correlation, (2,))
    drift = np.concatenate([np.zeros((1, 2)), np.cumsum(v[:-1], axis=0)])
    rot = np.radians(cfg.rotation_deg * np.arange(T)
                     + cfg.rotation_jitter_deg * np.concatenate([[0.0], np.cumsum(rng.standard_normal(T - 1))]))
    flick = np.clip(1.0 + cfg.flicker * _ar1(rng, T, 0.8), 0.2, None)
    return drift, v, rot, flick


#: the largest value a frame of each output dtype holds
_INFO_MAX = {"uint8": 255.0, "uint16": 65535.0, "uint32": 4294967295.0, "float32": np.inf}


def _scale_output(clean_counts: np.ndarray, cfg_dtype: str, gain, offset: float):
    info_max = _INFO_MAX[cfg_dtype]
    if gain is None:
        peak = float(clean_counts.max())
        top = peak + 5.0 * math.sqrt(peak) + 5.0
        gain = 1.0 if not np.isfinite(info_max) else min(1.0, (0.9 * info_max - offset) / top)
        gain = max(gain, 1e-6)
    return float(gain), info_max


def _quantise(x: np.ndarray, dtype: str, info_max: float) -> np.ndarray:
    if dtype == "float32":
        return x.astype(np.float32)
    return np.clip(np.rint(x), 0, info_max).astype(dtype)


def _detect(expected: np.ndarray, cfg: SimConfig, gain: float, info_max: float,
            rng: np.random.Generator) -> np.ndarray:
    """Detector frames of ``expected`` electrons per pixel (T, H, W): Poisson
    counts, times ``gain``, plus the offset and read noise, quantised."""
    T = len(expected)
    frames = np.empty(expected.shape, cfg.dtype)
    for t in range(T):
        counts = rng.poisson(expected[t].astype(np.float64))
        if cfg.dtype == "uint32" and gain == 1.0 and cfg.offset == 0 and cfg.read_noise == 0:
            frames[t] = np.minimum(counts, info_max)
            continue
        x = cfg.offset + gain * counts
        if cfg.read_noise > 0:
            x = x + cfg.read_noise * rng.standard_normal(x.shape)
        frames[t] = _quantise(x, cfg.dtype, info_max)
    return frames


def simulate_movie(config: SimConfig) -> SimulatedMovie:
    """Render the movie described by ``config``.

    Returns a :class:`SimulatedMovie`; see the module docstring for the
    physics.  Deterministic for a given config.  Cost is roughly
    ``T * (canvas FFTs + support atoms)``: about 10 ms per 256x256 HRTEM
    frame, 40 ms per 512x512 frame, less in STEM mode.
    """
    if not isinstance(config, SimConfig):
        raise TcsValueError(f"config must be a SimConfig, not {type(config).__name__}")
    cfg = config
    t_start = time.perf_counter()
    ss = np.random.SeedSequence(cfg.seed)
    r_scene, r_dyn, r_frame, r_noise = (_rng(s) for s in ss.spawn(4))
    T = cfg.n_frames
    H, W = cfg.shape
    px = cfg.pixel_size_a
    hrtem = cfg.mode == "hrtem"

    drift, vel, rot, flick = _trajectory(cfg, r_dyn)

    # Padded canvas: FFT filtering wraps around, so pad by the optical reach.
    sig_col = cfg.column_sigma_a / px
    if hrtem:
        reach = _Optics(cfg, (16, 16)).delocalisation_px() + 3 * cfg.mtf_sigma_px + 3 * sig_col
    else:
        reach = 4.0 * cfg.probe_sigma_a / px * (4.0 if cfg.probe_tail > 0 else 1.0)
    pad = int(min(max(math.ceil(reach) + 6, 8), 96))
    if cfg.scan_jitter_px > 0 and not hrtem:
        pad = max(pad, int(4 * cfg.scan_jitter_px) + 8)
    hc, wc = _next_fast_len(H + 2 * pad), _next_fast_len(W + 2 * pad)
    oy, ox = (hc - H) // 2, (wc - W) // 2
    cy, cx = oy + (H - 1) / 2.0, ox + (W - 1) / 2.0
    optics = _Optics(cfg, (hc, wc))

    # Specimen region that is ever on the canvas (A, around the frame-0 centre).
    max_drift = float(np.max(np.hypot(drift[:, 0], drift[:, 1])))
    cover_a = (0.5 * math.hypot(hc, wc) + max_drift + 4.0) * px
    half_a = 0.5 * min(H, W) * px
    scene = _Scene(cfg, r_scene, r_dyn, cover_a, half_a)

    # Per-class profile filters (rfft grid).
    f2 = optics.f2r
    sig_sup = cfg.support_sigma_a / px
    sig_blur = math.hypot(scene.blur_sigma_a(), cfg.column_sigma_a) / px
    if hrtem:
        filt_col = _gauss_ft(f2, sig_col)
        filt_sup = _gauss_ft(f2, sig_sup)
        filt_blur = _gauss_ft(f2, sig_blur)
        w_col = cfg.column_phase * 2.0 * np.pi * sig_col**2  # integrated phase of a column, rad px^2
        w_sup = _C_PHASE_A2 / px**2
    else:
        sp = cfg.probe_sigma_a / px

        def probe(s):
            core = _gauss_ft(f2, math.hypot(s, sp))
            tail = _gauss_ft(f2, math.hypot(s, 4.0 * sp))
            return (1.0 - cfg.probe_tail) * core + cfg.probe_tail * tail

        filt_col, filt_sup, filt_blur = probe(sig_col), probe(sig_sup), probe(sig_blur)
        w_col = 2.0 * np.pi * (sig_col**2 + sp**2)  # unit peak for an isolated full column
        w_sup = _C_ADF * w_col
    use_blur = cfg.zone_wobble > 0 and bool(scene.particles)

    out = np.empty((T, H, W), np.float32)
    defocus = []
    g_col = np.zeros((hc, wc))
    g_sup = np.zeros((hc, wc))
    g_blur = np.zeros((hc, wc))
    lo, hi_y, hi_x = -2.0, hc + 1.0, wc + 1.0
    for t in range(T):
        cpos, cw, cb, spos, sw = scene.columns(t, r_frame)
        R = _rot(rot[t])

        def to_canvas(p, R=R, t=t):  # called in this iteration only; bound for the reader
            q = (p @ R) / px
            q[:, 0] += cy + drift[t, 0]
            q[:, 1] += cx + drift[t, 1]
            if not hrtem:
                # raster scan: row y is recorded (y - centre)/H frames after mid-frame
                q += vel[t][None] * ((q[:, :1] - cy) / H)
            return q

        g_col.fill(0.0)
        g_sup.fill(0.0)
        for pos, w, grid, scale in ((cpos, cw, g_col, w_col), (spos, sw, g_sup, w_sup)):
            if len(w) == 0:
                continue
            q = to_canvas(pos)
            ok = (q[:, 0] > lo) & (q[:, 0] < hi_y) & (q[:, 1] > lo) & (q[:, 1] < hi_x)
            _splat(grid, q[ok], w[ok] * scale)
        spec = np.fft.rfft2(g_col) * filt_col + np.fft.rfft2(g_sup) * filt_sup
        if use_blur:
            g_blur.fill(0.0)
            q = to_canvas(cpos)
            ok = (q[:, 0] > lo) & (q[:, 0] < hi_y) & (q[:, 1] > lo) & (q[:, 1] < hi_x) & (cb > 0)
            _splat(g_blur, q[ok], cb[ok] * w_col)
            spec_off = np.fft.rfft2(g_blur) * filt_blur
            if hrtem:
                phi_off = np.fft.irfft2(spec_off, s=(hc, wc)).astype(np.float32)
            else:
                spec += spec_off
        if hrtem:
            phi = np.fft.irfft2(spec, s=(hc, wc))
            # Phase grating with absorption; not linearised, so strong
            # columns show the non-linear contrast of real HRTEM.
            # (single precision from here: complex exp and FFTs dominate the cost)
            phi = phi.astype(np.float32)
            absorb = np.float32(cfg.absorption) * phi
            if use_blur:
                # off zone, a crystal loses its fringes but still scatters
                # outside the aperture (diffraction contrast): extra absorption
                phi += phi_off
                absorb += np.float32(cfg.absorption + _OFFZONE_ABSORPTION) * phi_off
            amp = np.exp(-absorb)
            psi: np.ndarray = np.empty((hc, wc), np.complex64)
            psi.real = np.cos(phi) * amp
            psi.imag = np.sin(phi) * amp
            df = optics.defocus_a(t)
            defocus.append(df / 10.0)
            psi = np.fft.ifft2(np.fft.fft2(psi) * optics.transfer(df))
            inten = psi.real**2 + psi.imag**2
            ispec = np.fft.rfft2(inten) * optics.mtf
            if cfg.exposure > 0:
                # box blur along the drift during the exposure
                arg = (np.float32(cfg.exposure * vel[t, 0]) * optics.fy32
                       + np.float32(cfg.exposure * vel[t, 1]) * optics.fxr32)
                ispec *= np.sinc(arg)
            img = np.fft.irfft2(ispec, s=(hc, wc))[oy:oy + H, ox:ox + W]
        else:
            m = pad // 2
            img = np.fft.irfft2(spec, s=(hc, wc))[oy:oy + H, ox - m:ox + W + m]
            if cfg.scan_jitter_px > 0:
                # line jitter: each scan row lands shifted along x
                shift = cfg.scan_jitter_px * r_frame.standard_normal(H)
                fr = np.fft.rfftfreq(img.shape[1])
                img = np.fft.irfft(np.fft.rfft(img, axis=1) * np.exp(-2j * np.pi * fr[None] * shift[:, None]),
                                   n=img.shape[1], axis=1)
            img = img[:, m:m + W] + cfg.stem_background
            np.maximum(img, 0.0, out=img)
        out[t] = img * flick[t]

    # Dose: scale the expectation to ``dose`` electrons per pixel per frame.
    mean = float(out.mean(dtype=np.float64))
    if not mean > 0:
        raise TcsValueError("the simulated scene has no signal (empty STEM field?)")
    out *= np.float32(cfg.dose / mean)
    gain, info_max = _scale_output(out, cfg.dtype, cfg.gain, cfg.offset)
    frames = _detect(out, cfg, gain, info_max, r_noise)
    clean = out
    if gain != 1.0 or cfg.offset != 0:
        clean = (cfg.offset + gain * out.astype(np.float64)).astype(np.float32)

    meta = dict(
        source="simulate_movie",
        mode=cfg.mode,
        pixel_size_a=px,
        dose_mean=float(cfg.dose),
        gain=gain,
        offset=float(cfg.offset),
        wavelength_a=optics.lam,
        canvas=[hc, wc],
        drift_px=drift.tolist(),
        rotation_deg=np.degrees(rot).tolist(),
        flicker=flick.tolist(),
        defocus_nm=defocus if hrtem else None,
        particles=[
            dict(lattice=p.lattice, radius_a=float(p.radius),
                 centre_px=(scene.paths["centre"][:, i] / px).tolist(),
                 angle_deg=np.degrees(scene.paths["angle"][:, i]).tolist(),
                 scale=scene.paths["scale"][:, i].tolist())
            for i, p in enumerate(scene.particles)
        ],
        events=scene.events,
        n_support_atoms=int(len(scene.sup_w)),
        seconds=time.perf_counter() - t_start,
    )
    return SimulatedMovie(frames=frames, clean=clean, config=cfg, meta=meta)


# -- presets ---------------------------------------------------------------------------------------


def sample_movie(shape=(256, 256), n_frames: int = 60, seed: int = 0) -> SimulatedMovie:
    """The built-in demo movie: HRTEM of an Au-like particle on amorphous carbon.

    300 kV, Cs-corrected (Cs = -15 um, Scherzer overfocus: bright columns),
    fcc [110] particle of about a quarter of the field's width, drifting
    (~0.4 px/frame with jitter) and slowly rotating, with surface hopping
    and a little flicker; ~50 e-/px/frame Poisson counts as uint16.
    Deterministic for a given ``(shape, n_frames, seed)``.  Larger fields
    get more particles.  About 0.7 s (CPU) for 60 frames of 256x256 and
    2.6 s for 64 frames of 512x512 on one core.
    """
    h, w = (int(s) for s in shape)
    field = min(h, w)
    cfg = SimConfig(
        shape=(h, w), n_frames=int(n_frames), seed=int(seed),
        particle_radius_a=0.24 * field * 0.19, radius_spread=0.15,
        n_particles=1 if field <= 300 else max(1, (h * w) // (2 * 256 * 256)),
    )
    return simulate_movie(cfg)


def random_config(rng: np.random.Generator, shape=(256, 256), n_frames: int = 32, *,
                  mode: str | None = None, dose: float | None = None,
                  dtype: str | None = None, **overrides) -> SimConfig:
    """Draw a diverse :class:`SimConfig` for training or evaluation.

    Draws the imaging mode (HRTEM 60 %, STEM 40 %), scene, lattice, sampling,
    optics (aberration-corrected or not, bright or dark atoms, focal spread,
    astigmatism), dynamics (drift 0.05 to 3 px/frame, rotation, growth,
    sintering, hopping, jumps, zone wobble, flicker), dose (log-uniform over
    1..500 e-/px/frame) and output scaling.  ``mode``, ``dose`` and
    ``dtype`` pin those choices; other keyword arguments override fields of
    the result.  The config's own seed is drawn from ``rng``.
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    u = rng.uniform
    h, w = (int(s) for s in shape)
    mode = mode or ("hrtem" if u() < 0.6 else "stem")
    hrtem = mode == "hrtem"
    r = u()
    if hrtem:
        scene = "particles" if r < 0.6 else ("crystal" if r < 0.85 else "support")
    else:
        scene = "particles" if r < 0.55 else "crystal"
    lattice = str(rng.choice(sorted(LATTICES)))
    corrected = u() < 0.7
    if hrtem:  # uncorrected microscopes are not used at the finest sampling
        px = float(np.exp(u(np.log(0.08), np.log(0.3)) if corrected else u(np.log(0.18), np.log(0.5))))
    else:
        px = float(np.exp(u(np.log(0.06), np.log(0.3))))
    field = min(h, w) * px
    flat = LATTICES[lattice]["flat"]
    kw: dict[str, Any] = dict(shape=(h, w), n_frames=int(n_frames), seed=int(rng.integers(0, 2**63)),
                              mode=mode, scene=scene, lattice=lattice, pixel_size_a=px)
    if scene == "particles":
        n_p = int(rng.integers(1, 2 + int(field // 40)))
        kw.update(
            n_particles=min(n_p, 6),
            particle_radius_a=float(np.clip(u(0.08, 0.3) * field, 5.0, 80.0)),
            radius_spread=u(0.0, 0.35),
            particle_lattices=tuple(str(s) for s in rng.choice(sorted(LATTICES), size=2)) if u() < 0.3 else (),
            sinter=bool(u() < 0.25),
            growth=float(u(-0.3, 0.4)) if u() < 0.4 else 0.0,
            hop_rate=u(0.0, 0.06),
            jump_rate=u(0.005, 0.05) if u() < 0.3 else 0.0,
            jump_px=u(2.0, 15.0),
            zone_wobble=u(0.2, 1.0) if u() < 0.3 else 0.0,
            particle_rotation_deg=float(np.exp(u(np.log(0.01), np.log(0.5)))),
            particle_diffusion_px=u(0.0, 0.3),
        )
    elif scene == "crystal":
        kw.update(
            crystal_coverage=1.0 if u() < 0.6 else u(0.3, 0.9),
            vacancy_fraction=u(0.0, 0.05),
            dopant_fraction=u(0.0, 0.05) if u() < 0.4 else 0.0,
            dopant_contrast=u(0.5, 2.5),
            hop_rate=u(0.0, 0.02),
        )
    if hrtem:
        cs = u(-0.04, 0.03) if corrected else u(0.5, 1.5)
        kv = float(rng.choice([80.0, 200.0, 300.0]))
        df_s = scherzer_defocus(cs, kv)
        kw.update(
            voltage_kv=kv, cs_mm=cs,
            defocus_nm=float(df_s * u(0.6, 1.4) if u() < 0.7 else u(-30.0, 30.0)),
            defocus_drift_nm=float(rng.normal(0.0, 0.05)) if u() < 0.3 else 0.0,
            focal_spread_nm=u(1.5, 6.0),
            aperture_mrad=u(20.0, 40.0) if corrected else u(8.0, 16.0),
            source_mrad=u(0.02, 0.3),
            astig_nm=u(0.0, 4.0) if u() < 0.4 else 0.0,
            astig_deg=u(0.0, 180.0),
            mtf_sigma_px=u(0.3, 1.0),
            exposure=u(0.5, 1.0),
            column_phase=u(0.3, 1.0) if flat else u(0.8, 4.0),
            absorption=u(0.0, 0.15),
            support_thickness_a=u(0.0, 60.0) if scene != "support" else u(10.0, 100.0),
        )
    else:
        kw.update(
            probe_sigma_a=u(0.35, 1.0),
            probe_tail=u(0.0, 0.3),
            stem_background=u(0.0, 0.1),
            scan_jitter_px=u(0.0, 0.4) if u() < 0.5 else 0.0,
            support_thickness_a=u(0.0, 60.0) if scene == "particles" or u() < 0.3 else 0.0,
        )
    speed = float(np.exp(u(np.log(0.05), np.log(3.0))))
    ang = u(0, 2 * np.pi)
    kw.update(
        column_sigma_a=u(0.3, 0.5),
        column_jitter_a=u(0.0, 0.05),
        site_disorder=u(0.0, 0.1),
        thickness_variation=u(0.0, 0.3),
        support_coverage=1.0 if u() < 0.75 else u(0.4, 0.95),
        support_jitter_a=u(0.0, 0.08) if u() < 0.3 else 0.0,
        drift_px=(speed * math.sin(ang), speed * math.cos(ang)),
        drift_jitter_px=u(0.0, 0.5) * max(speed, 0.2),
        drift_correlation=u(0.6, 0.98),
        rotation_deg=float(rng.normal(0.0, 0.08)),
        rotation_jitter_deg=u(0.0, 0.03),
        flicker=u(0.0, 0.08),
    )
    dose = float(np.exp(u(0.0, np.log(500.0)))) if dose is None else float(dose)
    dtype = dtype or str(rng.choice(["uint8", "uint16", "uint32"], p=[0.2, 0.5, 0.3]))
    kw.update(dose=dose, dtype=dtype)
    if dtype == "uint8":
        kw.update(gain=None, offset=u(0.0, 10.0) if u() < 0.3 else 0.0)
    elif dtype == "uint16":
        integrating = u() < 0.4
        kw.update(gain=u(0.5, 8.0) if integrating else 1.0,
                  offset=u(0.0, 500.0) if integrating else 0.0,
                  read_noise=u(0.0, 3.0) if integrating else 0.0)
        if integrating:
            kw["gain"] = None if dose * 4 * kw["gain"] + kw["offset"] > 60000 else kw["gain"]
    else:
        kw.update(gain=1.0, offset=0.0, read_noise=0.0)
    kw.update(overrides)
    return SimConfig(**kw)


# -- event movies ----------------------------------------------------------------------------------

#: what happens in the burst of :func:`event_movie`
EVENT_KINDS = ("jump", "growth", "rotation", "sinter")

#: every dynamic of a :class:`SimConfig` switched off (the still stretches)
_STILL = dict(drift_px=(0.0, 0.0), drift_jitter_px=0.0, rotation_deg=0.0, rotation_jitter_deg=0.0,
              particle_rotation_deg=0.0, particle_diffusion_px=0.0, growth=0.0, sinter=False,
              jump_rate=0.0, hop_rate=0.0, flicker=0.0, defocus_drift_nm=0.0, column_jitter_a=0.0,
              support_jitter_a=0.0, zone_wobble=0.0, scan_jitter_px=0.0)


def event_movie(kind: str = "jump", *, shape=(256, 256), n_frames: int = 48, burst: int = 10,
                start: int | None = None, seed: int = 0, mode: str | None = None,
                dose: float | None = None, dtype: str | None = None) -> SimulatedMovie:
    """A movie that holds still, then bursts, then holds still again.

    Parameters
    ----------
    kind : {"jump", "growth", "rotation", "sinter"}
        The burst: the field slides 2 to 4 px per frame in a random
        direction (a stage jump, a particle on the move); the particles
        grow by 50 to 80 %; the field rotates 1 to 2.5 degrees per frame;
        two particles approach, touch and grow a sintering neck.
    shape, n_frames : optional
        Frame size and length of the movie.
    burst : int
        Frames of the burst (``1 <= burst < n_frames``); each differs from
        the frame before it.
    start : int, optional
        First frame of the burst (default: ``(n_frames - burst) // 3``).
    seed : int
        Seeds the scene, the imaging settings (:func:`random_config` with a
        particle scene), the burst's size and direction, and the noise.
    mode, dose, dtype : optional
        Pin the imaging mode, the dose (e-/px/frame) and the frames' dtype.

    Returns
    -------
    SimulatedMovie
        ``frames`` with fresh Poisson noise (and the detector's gain,
        offset and read noise) in every frame, ``clean`` the noise-free
        truth, ``config`` the :class:`SimConfig` that rendered the burst
        (its ``burst + 1`` frames: the state before it, then one per burst
        frame), and ``meta`` with ``kind``, ``burst`` (first and end frame),
        ``event_frames`` (the frames that differ from their predecessor),
        ``source_frames`` (the rendered frame each frame shows), ``seed``,
        the gain and offset, and the render's own ``meta``.  Deterministic
        for given arguments; the still stretches are exactly still (no
        drift, jitter, hopping or flicker).
    """
    if kind not in EVENT_KINDS:
        raise TcsValueError(f"kind must be one of {EVENT_KINDS}, got {kind!r}")
    n_frames, burst = int(n_frames), int(burst)
    if not 1 <= burst < n_frames:
        raise TcsValueError(f"burst must be in 1..n_frames-1={n_frames - 1}, got {burst}")
    start = (n_frames - burst) // 3 if start is None else int(start)
    if not 0 < start <= n_frames - burst:
        raise TcsValueError(f"start must be in 1..{n_frames - burst}, got {start}")
    rng = np.random.default_rng([int(seed), 0x5E7E])
    cfg = random_config(rng, shape, n_frames=burst + 1, mode=mode, dose=dose, dtype=dtype)
    field_a = min(cfg.shape) * cfg.pixel_size_a
    event: dict[str, Any] = dict(scene="particles", particle_radius_a=float(np.clip(0.12 * field_a, 5.0, 60.0)),
                                 radius_spread=0.15, n_particles=min(max(cfg.n_particles, 1), 3))
    angle = rng.uniform(0, 2 * np.pi)
    if kind == "jump":
        speed = rng.uniform(2.0, 4.0)
        event["drift_px"] = (speed * math.sin(angle), speed * math.cos(angle))
    elif kind == "growth":
        event.update(growth=rng.uniform(0.5, 0.8), particle_radius_a=float(np.clip(0.08 * field_a, 5.0, 40.0)))
    elif kind == "rotation":
        event["rotation_deg"] = float(rng.choice([-1.0, 1.0]) * rng.uniform(1.0, 2.5))
    else:
        event.update(sinter=True, n_particles=2, sinter_start=0.3, sinter_tau=0.4)
    cfg = cfg.replace(**{**_STILL, **event})
    rendered = simulate_movie(cfg)
    gain, offset = rendered.meta["gain"], rendered.meta["offset"]
    source = np.clip(np.arange(n_frames) - start + 1, 0, burst)
    clean = rendered.clean[source]
    expected = np.maximum((clean.astype(np.float64) - offset) / gain, 0.0)
    info_max = _INFO_MAX[cfg.dtype]
    frames = _detect(expected, cfg, gain, info_max, np.random.default_rng([int(seed), 0x0015E]))
    meta = dict(source="event_movie", kind=kind, seed=int(seed), burst=[start, start + burst],
                event_frames=list(range(start, start + burst)), source_frames=source.tolist(),
                gain=gain, offset=offset, rendered=rendered.meta)
    return SimulatedMovie(frames=frames, clean=clean, config=cfg, meta=meta)


# -- real textures ---------------------------------------------------------------------------------


def _keys(s: np.ndarray):
    """Keys cubic-convolution (a = -0.5) weights for offsets -1..2 of
    fractional positions s in [0, 1)."""
    s1 = s + 1.0
    s2 = 1.0 - s
    s3 = 2.0 - s
    a = -0.5
    w0 = ((a * s1 - 5 * a) * s1 + 8 * a) * s1 - 4 * a
    w1 = ((a + 2) * s - (a + 3)) * s * s + 1
    w2 = ((a + 2) * s2 - (a + 3)) * s2 * s2 + 1
    w3 = ((a * s3 - 5 * a) * s3 + 8 * a) * s3 - 4 * a
    return (w0, w1, w2, w3)


def _reflect(i: np.ndarray, n: int) -> np.ndarray:
    """Mirror indices into 0..n-1 (edge pixel not repeated twice)."""
    if n == 1:
        return np.zeros_like(i)
    period = 2 * (n - 1)
    i = np.abs(i) % period
    return np.where(i >= n, period - i, i)


def _sample_cubic(img: np.ndarray, sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
    """Keys cubic interpolation of img at (sy, sx), mirrored at the edges."""
    iy = np.floor(sy)
    ix = np.floor(sx)
    wy = _keys(sy - iy)
    wx = _keys(sx - ix)
    iy = iy.astype(np.int64)
    ix = ix.astype(np.int64)
    h, w = img.shape
    cols = [_reflect(ix + j - 1, w) for j in range(4)]
    out = np.zeros(sy.shape)
    for i in range(4):
        row = _reflect(iy + i - 1, h)
        acc = np.zeros(sy.shape)
        for j in range(4):
            acc += wx[j] * img[row, cols[j]]
        out += wy[i] * acc
    return out


def texture_movie(image, n_frames: int, rng: np.random.Generator, dose: float, *,
                  shape=None, drift_px=None, speed: float | None = None, drift_jitter_px: float = 0.1,
                  drift_correlation: float = 0.9, rotation_deg: float | None = None,
                  zoom: float = 1.0, flicker: float = 0.03, prefilter_sigma: float = 0.0,
                  offset_percentile: float = 0.5, dtype: str = "uint16", gain: float | None = 1.0,
                  offset: float = 0.0, read_noise: float = 0.0) -> SimulatedMovie:
    """Move a real 2-D micrograph along a synthetic drift/rotation path.

    A window of ``shape`` (default: the largest square up to 256 that fits)
    slides over ``image`` along a smooth random-walk drift (``drift_px``
    mean velocity in px/frame; default a random direction at ``speed``
    px/frame, itself drawn from 0.1 to 1 when not given; AR(1) jitter
    ``drift_jitter_px``) with slow rotation (``rotation_deg``
    per frame, default random around 0), magnified by ``1 / zoom`` (zoom is
    source pixels per output pixel), and is resampled with Keys cubic
    interpolation (mirrored at the image edges).  The source is first made
    non-negative by subtracting its ``offset_percentile`` percentile (real
    detector data often carry a large dark level) and optionally blurred
    with ``prefilter_sigma`` px to suppress its own noise.  ``clean`` is
    scaled to a mean of ``dose`` e-/px/frame (with beam ``flicker``) and
    ``frames`` are Poisson counts, scaled like :func:`simulate_movie`.

    Returns a :class:`SimulatedMovie` with ``config=None``; the parameters
    and the path are in ``meta``.  Deterministic for a given rng state.
    """
    img = np.asarray(image)
    if img.ndim != 2 or min(img.shape) < 8:
        raise TcsValueError(f"texture must be a 2-D image of at least 8x8, got shape {img.shape}")
    if dtype not in _DTYPES:
        raise TcsValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    if not dose > 0 or n_frames < 1 or not zoom > 0:
        raise TcsValueError("dose and zoom must be > 0 and n_frames >= 1")
    t0 = time.perf_counter()
    T = int(n_frames)
    if shape is None:
        side_px = int(min(256, min(img.shape) / zoom))
        shape = (side_px, side_px)
    H, W = (int(s) for s in shape)
    if drift_px is None:
        speed = rng.uniform(0.1, 1.0) if speed is None else float(speed)
        ang = rng.uniform(0, 2 * np.pi)
        drift_px = (speed * math.sin(ang), speed * math.cos(ang))
    if rotation_deg is None:
        rotation_deg = float(rng.normal(0.0, 0.05))
    v = np.asarray(drift_px, float)[None] + drift_jitter_px * _ar1(rng, T, drift_correlation, (2,))
    drift = np.concatenate([np.zeros((1, 2)), np.cumsum(v[:-1], axis=0)])
    rot = np.radians(rotation_deg * np.arange(T))
    flick = np.clip(1.0 + flicker * _ar1(rng, T, 0.8), 0.2, None)

    # Source centre: keep the whole path inside the image when possible.
    half = 0.5 * math.hypot(H, W) * zoom
    span_lo = (drift * zoom).min(0)
    span_hi = (drift * zoom).max(0)
    c0 = np.empty(2)
    for k, n in enumerate(img.shape):
        lo = half + span_hi[k]
        hi = n - 1 - half + span_lo[k]
        c0[k] = rng.uniform(lo, hi) if hi > lo else 0.5 * (n - 1)

    # Crop to the region the path touches (cheaper prefilter and percentile).
    y0 = max(int(c0[0] - half - span_hi[0]) - 4, 0)
    y1 = min(int(c0[0] + half - span_lo[0]) + 5, img.shape[0])
    x0 = max(int(c0[1] - half - span_hi[1]) - 4, 0)
    x1 = min(int(c0[1] + half - span_lo[1]) + 5, img.shape[1])
    if y0 == 0 or x0 == 0 or y1 == img.shape[0] or x1 == img.shape[1]:
        y0, y1, x0, x1 = 0, img.shape[0], 0, img.shape[1]  # mirroring needs the true edges
    src = img[y0:y1, x0:x1].astype(np.float64)
    if not np.all(np.isfinite(src)):
        src = np.nan_to_num(src, nan=float(np.nanmedian(src)))
    src = np.clip(src - np.percentile(src, offset_percentile), 0.0, None)
    if prefilter_sigma > 0:
        f2 = np.fft.fftfreq(src.shape[0])[:, None] ** 2 + np.fft.rfftfreq(src.shape[1])[None] ** 2
        src = np.fft.irfft2(np.fft.rfft2(src) * np.exp(-2 * np.pi**2 * prefilter_sigma**2 * f2), s=src.shape)
    m = src.mean()
    if not m > 0:
        raise TcsValueError("texture has no signal above its offset percentile")
    src /= m

    gy, gx = np.meshgrid(np.arange(H) - (H - 1) / 2.0, np.arange(W) - (W - 1) / 2.0, indexing="ij")
    clean = np.empty((T, H, W), np.float32)
    for t in range(T):
        c, s = math.cos(rot[t]), math.sin(rot[t])
        # output pixel p shows source point centre - drift + R(-theta) p, so
        # content moves by +drift and rotates by +theta
        ry = (c * gy - s * gx) * zoom
        rx = (s * gy + c * gx) * zoom
        sy = c0[0] - drift[t, 0] * zoom + ry - y0
        sx = c0[1] - drift[t, 1] * zoom + rx - x0
        clean[t] = np.clip(_sample_cubic(src, sy, sx), 0.0, None) * flick[t]
    clean *= np.float32(dose / float(clean.mean(dtype=np.float64)))
    g, info_max = _scale_output(clean, dtype, gain, offset)
    frames = np.empty((T, H, W), dtype)
    for t in range(T):
        x = offset + g * rng.poisson(clean[t].astype(np.float64))
        if read_noise > 0:
            x = x + read_noise * rng.standard_normal(x.shape)
        frames[t] = _quantise(x, dtype, info_max)
    if g != 1.0 or offset != 0:
        clean = (offset + g * clean.astype(np.float64)).astype(np.float32)
    meta = dict(
        source="texture_movie", texture_shape=list(img.shape), dose_mean=float(dose), gain=g,
        offset=float(offset), zoom=float(zoom), prefilter_sigma=float(prefilter_sigma),
        offset_percentile=float(offset_percentile), read_noise=float(read_noise),
        centre_px=[[float(c0[0] - d[0] * zoom), float(c0[1] - d[1] * zoom)] for d in drift],
        drift_px=drift.tolist(), rotation_deg=np.degrees(rot).tolist(), flicker=flick.tolist(),
        seconds=time.perf_counter() - t0,
    )
    return SimulatedMovie(frames=frames, clean=clean, config=None, meta=meta)
