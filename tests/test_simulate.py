"""The in-situ EM movie simulator: determinism, units, dose, motion, configs."""

import json

import numpy as np
import pytest

from tcscodec.errors import TcsValueError
from tcscodec.simulate import (
    LATTICES,
    SimConfig,
    SimulatedMovie,
    electron_wavelength,
    random_config,
    sample_movie,
    scherzer_defocus,
    simulate_movie,
    texture_movie,
)

SMALL = dict(shape=(64, 80), n_frames=5)

#: every source of motion and change switched off
STATIC = dict(drift_px=(0.0, 0.0), drift_jitter_px=0.0, rotation_deg=0.0, rotation_jitter_deg=0.0,
              particle_rotation_deg=0.0, particle_diffusion_px=0.0, hop_rate=0.0, column_jitter_a=0.0,
              flicker=0.0, jump_rate=0.0, zone_wobble=0.0, growth=0.0)


def measured_shift(a, b, margin=16):
    """Sub-pixel (dy, dx) by which the content of b is displaced from a.

    Integer peak of the (Hann-windowed) phase correlation, then Lucas-Kanade refinement:
    a is Fourier-shifted by the estimate and the residual shift solved by
    least squares on the gradients, away from the (wrapped) borders.
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    win = np.outer(np.hanning(a.shape[0]), np.hanning(a.shape[1]))
    fa = np.fft.fft2((a - a.mean()) * win)
    r = np.fft.fft2((b - b.mean()) * win) * np.conj(fa)
    r = np.fft.ifft2(r / (np.abs(r) + 1e-12)).real
    s = np.array(np.unravel_index(np.argmax(r), r.shape), float)
    s = np.where(s > np.array(r.shape) / 2, s - r.shape, s)
    fy = np.fft.fftfreq(a.shape[0])[:, None]
    fx = np.fft.fftfreq(a.shape[1])[None, :]
    inner = (slice(margin, -margin), slice(margin, -margin))
    for _ in range(4):
        sa = np.fft.ifft2(np.fft.fft2(a) * np.exp(-2j * np.pi * (fy * s[0] + fx * s[1]))).real
        gy, gx = np.gradient(sa)
        gy, gx, d = gy[inner].ravel(), gx[inner].ravel(), (b - sa)[inner].ravel()
        G = np.array([[gy @ gy, gy @ gx], [gx @ gy, gx @ gx]])
        s = s - np.linalg.solve(G, np.array([gy @ d, gx @ d]))
    return s


def test_physics_helpers():
    assert electron_wavelength(300) == pytest.approx(0.019687, abs=2e-5)
    assert electron_wavelength(200) == pytest.approx(0.025079, abs=2e-5)
    assert electron_wavelength(80) == pytest.approx(0.041757, abs=2e-5)
    # Scherzer: underfocus for positive Cs, overfocus for negative Cs
    assert scherzer_defocus(1.0, 300) == pytest.approx(54.3, abs=0.5)
    assert scherzer_defocus(-0.015, 300) < 0


def test_deterministic_and_seeded():
    cfg = SimConfig(**SMALL, seed=3, jump_rate=0.3, hop_rate=0.05, zone_wobble=0.5, sinter=True,
                    n_particles=2, particle_radius_a=4.0)
    a, b = simulate_movie(cfg), simulate_movie(cfg)
    assert np.array_equal(a.frames, b.frames)
    assert np.array_equal(a.clean, b.clean)
    assert a.meta["drift_px"] == b.meta["drift_px"]
    c = simulate_movie(cfg.replace(seed=4))
    assert not np.array_equal(a.clean, c.clean)
    # noise is its own stream: changing the dose leaves the scene's shape alone
    d = simulate_movie(cfg.replace(dose=5.0))
    np.testing.assert_allclose(d.clean * (50.0 / 5.0), a.clean, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("mode", ["hrtem", "stem"])
@pytest.mark.parametrize("scene", ["particles", "crystal", "support"])
def test_modes_and_scenes(mode, scene):
    cfg = SimConfig(**SMALL, mode=mode, scene=scene, dose=20.0, particle_radius_a=5.0,
                    support_thickness_a=20.0, seed=1)
    m = simulate_movie(cfg)
    assert isinstance(m, SimulatedMovie)
    assert m.frames.shape == m.clean.shape == (5, 64, 80)
    assert m.frames.dtype == np.uint16 and m.clean.dtype == np.float32
    assert np.all(np.isfinite(m.clean)) and m.clean.min() >= 0
    assert float(m.clean.mean()) == pytest.approx(20.0, rel=1e-4)
    assert m.clean.std() > 0.02 * m.clean.mean()  # there is contrast
    frames, clean, config, meta = m  # unpacks like a tuple
    assert config is cfg and meta["mode"] == mode
    json.dumps(meta)


@pytest.mark.parametrize("lattice", sorted(LATTICES))
def test_every_lattice_renders(lattice):
    for mode in ("hrtem", "stem"):
        m = simulate_movie(SimConfig(shape=(48, 48), n_frames=2, mode=mode, lattice=lattice,
                                     particle_radius_a=4.0, dose=10.0))
        assert float(m.clean.mean()) == pytest.approx(10.0, rel=1e-4)


@pytest.mark.parametrize("dose", [1.0, 50.0, 500.0])
def test_mean_dose(dose):
    m = simulate_movie(SimConfig(**SMALL, dose=dose, dtype="uint32", seed=2))
    n = m.frames.size
    assert m.frames.dtype == np.uint32
    assert float(m.clean.mean()) == pytest.approx(dose, rel=1e-4)
    assert abs(float(m.frames.mean()) - dose) < 5 * np.sqrt(dose / n)
    assert m.meta["gain"] == 1.0 and m.meta["offset"] == 0.0


def test_clean_is_the_expectation():
    m = simulate_movie(SimConfig(shape=(96, 96), n_frames=8, dose=20.0, dtype="uint32", seed=5))
    lam = m.clean.astype(np.float64).ravel()
    n = m.frames.astype(np.float64).ravel()
    # per-intensity-level agreement, not just the global mean
    order = np.argsort(lam)
    for part in np.array_split(order, 8):
        mu = lam[part].mean()
        assert abs(n[part].mean() - mu) < 5 * np.sqrt(mu / len(part))
    # Poisson: variance equals the mean
    assert np.mean((n - lam) ** 2) / lam.mean() == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize("dtype, gain, offset, read_noise", [
    ("uint8", None, 0.0, 0.0),
    ("uint8", None, 10.0, 0.0),
    ("uint16", 2.5, 100.0, 1.5),
    ("uint16", None, 0.0, 0.0),
    ("float32", 0.5, 3.0, 0.0),
])
def test_output_scaling(dtype, gain, offset, read_noise):
    cfg = SimConfig(**SMALL, dose=400.0, dtype=dtype, gain=gain, offset=offset, read_noise=read_noise, seed=6)
    m = simulate_movie(cfg)
    assert m.frames.dtype == np.dtype(dtype) and m.clean.dtype == np.float32
    g = m.meta["gain"]
    if gain is not None:
        assert g == gain
    if dtype == "uint8":
        assert g < 1.0  # 400 e/px would saturate 8 bits
        assert np.mean(m.frames == 255) < 1e-3
    # clean is in frame units: offset + gain * expected counts
    assert float(m.clean.mean()) == pytest.approx(offset + g * 400.0, rel=1e-4)
    assert m.clean.min() >= offset
    assert abs(float(m.frames.mean()) - float(m.clean.mean())) < 0.01 * m.clean.mean() + 0.5


def test_motion_matches_configured_drift():
    v = (1.5, -2.0)
    for mode in ("hrtem", "stem"):
        cfg = SimConfig(shape=(96, 96), n_frames=5, mode=mode, dose=100.0, seed=7, particle_radius_a=4.0,
                        **{**STATIC, "drift_px": v})
        m = simulate_movie(cfg)
        assert np.allclose(m.meta["drift_px"][4], [4 * v[0], 4 * v[1]])
        s = measured_shift(m.clean[0], m.clean[4])
        # STEM: the raster records rows at different times, which scales the
        # apparent translation by (1 + v/H): ~0.13 px here
        np.testing.assert_allclose(s, [4 * v[0], 4 * v[1]], atol=0.3)


def test_random_drift_path_is_followed():
    cfg = SimConfig(shape=(96, 96), n_frames=8, dose=100.0, seed=8, particle_radius_a=4.0,
                    **{**STATIC, "drift_px": (0.6, 0.3), "drift_jitter_px": 0.5})
    m = simulate_movie(cfg)
    drift = np.array(m.meta["drift_px"])
    assert np.ptp(np.diff(drift, axis=0), axis=0).max() > 0.2  # the velocity really varies
    for t in (3, 7):
        np.testing.assert_allclose(measured_shift(m.clean[0], m.clean[t]), drift[t], atol=0.3)


def test_dynamics_change_the_frames():
    base = dict(shape=(64, 64), n_frames=4, dose=100.0, seed=9, particle_radius_a=4.0)
    still = simulate_movie(SimConfig(**base, **STATIC)).clean
    np.testing.assert_allclose(still[1], still[0], rtol=1e-4, atol=1e-3)
    for change in ({"hop_rate": 0.3}, {"particle_rotation_deg": 2.0}, {"drift_px": (0.3, 0.0)},
                   {"flicker": 0.1}, {"growth": 0.5}, {"column_jitter_a": 0.05}):
        moving = simulate_movie(SimConfig(**base, **{**STATIC, **change})).clean
        assert np.abs(moving[3] - moving[0]).mean() > 0.01 * moving.mean(), change
    m = simulate_movie(SimConfig(**{**base, "n_frames": 12}, jump_rate=0.3, sinter=True, sinter_start=0.2))
    kinds = {e["kind"] for e in m.meta["events"]}
    assert {"jump", "sinter_contact"} <= kinds
    grown = simulate_movie(SimConfig(**base, growth=0.5))
    assert grown.meta["particles"][0]["scale"][-1] == pytest.approx(1.5)


def test_config_round_trip_and_validation():
    rng = np.random.default_rng(0)
    for _ in range(20):
        cfg = random_config(rng, shape=(48, 64), n_frames=4)
        d = json.loads(json.dumps(cfg.to_dict()))
        assert SimConfig.from_dict(d) == cfg
        assert hash(SimConfig.from_dict(d)) == hash(cfg)
    assert SimConfig.from_dict({}) == SimConfig()
    with pytest.raises(TcsValueError, match="unknown"):
        SimConfig.from_dict({"shape": [8, 8], "bogus": 1})
    for bad in ({"mode": "sem"}, {"dtype": "int8"}, {"lattice": "bcc999"}, {"dose": 0.0},
                {"shape": (4, 4)}, {"n_frames": 0}, {"hop_rate": 2.0}, {"gain": -1.0}, {"seed": -1}):
        with pytest.raises(ValueError):
            SimConfig(**bad)


def test_random_config_is_diverse_and_runs():
    rng = np.random.default_rng(1)
    cfgs = [random_config(rng, shape=(48, 48), n_frames=3) for _ in range(40)]
    assert {c.mode for c in cfgs} == {"hrtem", "stem"}
    assert len({c.scene for c in cfgs}) == 3 and len({c.lattice for c in cfgs}) >= 4
    assert len({c.dtype for c in cfgs}) == 3
    doses = [c.dose for c in cfgs]
    assert 1.0 <= min(doses) < 10.0 and 100.0 < max(doses) <= 500.0
    for cfg in cfgs[:6]:
        m = simulate_movie(cfg)
        assert m.frames.shape == (3, 48, 48) and np.all(np.isfinite(m.clean))
    pinned = random_config(rng, mode="stem", dose=7.0, dtype="uint8", n_frames=2, sinter=True)
    assert (pinned.mode, pinned.dose, pinned.dtype, pinned.sinter) == ("stem", 7.0, "uint8", True)


def test_sample_movie():
    m = sample_movie((128, 128), n_frames=6, seed=0)
    again = sample_movie((128, 128), n_frames=6, seed=0)
    assert np.array_equal(m.frames, again.frames)
    assert m.frames.shape == (6, 128, 128) and m.frames.dtype == np.uint16
    assert m.config.mode == "hrtem" and m.config.lattice == "fcc110"
    assert float(m.clean.mean()) == pytest.approx(50.0, rel=1e-4)
    assert not np.array_equal(sample_movie((128, 128), n_frames=6, seed=1).frames, m.frames)


def test_texture_movie():
    # a smooth random texture (a periodic one would make the shift ambiguous)
    noise = np.random.default_rng(0).standard_normal((200, 230))
    f2 = np.fft.fftfreq(200)[:, None] ** 2 + np.fft.fftfreq(230)[None] ** 2
    img = 1000 + 3000 * np.fft.ifft2(np.fft.fft2(noise) * np.exp(-f2 * 400)).real
    kw = dict(shape=(64, 64), drift_px=(0.8, -1.2), drift_jitter_px=0.0, rotation_deg=0.0, flicker=0.0)
    m = texture_movie(img, 6, np.random.default_rng(3), 30.0, **kw)
    again = texture_movie(img, 6, np.random.default_rng(3), 30.0, **kw)
    assert np.array_equal(m.frames, again.frames)
    assert m.config is None and m.meta["source"] == "texture_movie"
    assert m.frames.shape == (6, 64, 64) and m.frames.dtype == np.uint16
    assert float(m.clean.mean()) == pytest.approx(30.0, rel=1e-4)
    np.testing.assert_allclose(measured_shift(m.clean[0], m.clean[5]), [4.0, -6.0], atol=0.3)
    u8 = texture_movie(img.astype(np.uint16), 3, np.random.default_rng(0), 300.0, dtype="uint8", gain=None)
    assert u8.frames.dtype == np.uint8 and u8.meta["gain"] < 1.0
    with pytest.raises(TcsValueError):
        texture_movie(np.zeros((4, 5, 6)), 3, np.random.default_rng(0), 1.0)


@pytest.mark.shared
def test_texture_movie_on_real_micrograph(shared_data):
    img = np.load(shared_data / "real" / "MoS2_Se_ADF_STEM_60kV_1024_uint32.npy")
    m = texture_movie(img, 4, np.random.default_rng(0), 1.0, shape=(128, 128), prefilter_sigma=1.0)
    assert float(m.clean.mean()) == pytest.approx(1.0, rel=1e-4)
    assert m.clean.std() > 0.2  # the dark level was removed, the lattice contrast kept
