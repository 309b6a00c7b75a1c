"""B="auto": the streaming decision of where groups end, the event movies
it is made for, and ``tcscodec encode -B auto``."""

from __future__ import annotations

import numpy as np
import pytest

import tcscodec
from tcscodec import TcsValueError
from tcscodec.grouping import AutoGroups, AutoGroupsConfig, ListedGroups
from tcscodec.simulate import EVENT_KINDS, event_movie


def decide(frames, policy):
    """Group lengths the policy makes, as TcsWriter asks it."""
    lengths, n = [], 0
    for f in frames:
        if policy.starts_group(f, n):
            lengths.append(n)
            n = 0
        n += 1
        if n == policy.max_B:
            lengths.append(n)
            n = 0
    return lengths + ([n] if n else [])


def textured(rng, shape, dose):
    y, x = np.mgrid[:shape[0], :shape[1]]
    return dose * (1 + 0.5 * np.sin(x / 3.0 + rng.uniform(0, 6)) * np.cos(y / 5.0 + rng.uniform(0, 6)))


def test_still_noisy_movie_keeps_the_longest_groups():
    rng = np.random.default_rng(0)
    clean = textured(rng, (64, 64), 40.0)
    frames = rng.poisson(clean, (140, 64, 64)).astype(np.uint16)
    policy = AutoGroups()
    assert decide(frames, policy) == [64, 64, 12]
    assert policy.decisions == ["max_B", "max_B"]
    assert 0.8 < policy.gain < 1.25  # Poisson counts: gain 1


def test_a_cut_and_a_blanked_beam_start_groups():
    rng = np.random.default_rng(1)
    a, b = textured(rng, (64, 64), 30.0), textured(rng, (64, 64), 60.0)[::-1]
    clean = np.concatenate([np.broadcast_to(a, (30, 64, 64)), np.broadcast_to(b, (30, 64, 64))])
    clean[45:48] = 0.2  # the beam blanked for 3 frames
    frames = rng.poisson(clean).astype(np.uint16)
    policy = AutoGroups(AutoGroupsConfig(min_B=8, max_B=40))
    lengths = decide(frames, policy)
    assert np.cumsum(lengths)[:-1].tolist() == [30, 45, 48]
    assert policy.decisions == ["cut", "cut", "cut"]  # a cut ends a group under min_B too


def test_a_burst_ends_the_group_where_it_starts():
    m = event_movie("jump", shape=(96, 96), n_frames=40, burst=8, seed=3, dose=50, mode="stem")
    start, end = m.meta["burst"]
    lengths = decide(m.frames, AutoGroups())
    bounds = np.cumsum(lengths)[:-1]
    assert start <= bounds[0] <= start + 1  # the still stretch is one group, closed at the burst
    assert max(lengths) >= 16 and sum(lengths) == 40
    assert any(n <= 5 for n in lengths)  # short groups in the burst


def test_a_change_in_a_few_percent_of_the_field_ends_the_group():
    """A region brightening in place (a particle growing) is too small for
    the rms over the whole grid; the bin means see it."""
    rng = np.random.default_rng(5)
    clean = np.broadcast_to(textured(rng, (128, 128), 20.0), (40, 128, 128)).copy()
    clean[20:, 40:80, 40:80] *= 1.3  # 10 % of the field, from frame 20 on
    frames = rng.poisson(clean).astype(np.uint16)
    policy = AutoGroups()
    lengths = decide(frames, policy)
    assert np.cumsum(lengths)[0] == 20 and policy.decisions[0] == "change"
    still = rng.poisson(np.broadcast_to(clean[0], (40, 128, 128))).astype(np.uint16)
    assert decide(still, AutoGroups()) == [40]  # and noise alone does not


@pytest.mark.parametrize("dtypes", [(np.float32, np.float32, np.float64, np.float32), (np.float64,) * 4])
def test_change_statistics_kernel_matches_the_numpy_reference(dtypes):
    """The compiled change rule gives the numpy reference's statistics (the
    mean clipped z^2 to rounding: the sums run in another order; the count
    of moved bins exactly: each bin's value is computed alike) on random
    bins with offsets, flicker and outliers."""
    from tcscodec.cpu_kernels import change_statistics, numba

    if numba is None:
        pytest.skip("needs numba")
    rng = np.random.default_rng(7)
    for trial in range(20):
        shape = tuple(rng.integers(3, 70, 2))
        mu = rng.uniform(-2, 50, shape) * (1 + 4 * (trial % 2))
        ref = mu + rng.normal(0, 2, shape)
        m = mu * rng.uniform(0.9, 1.1) + rng.normal(0, 0.5, shape)
        m.flat[: m.size // 3] += rng.uniform(0, 8, m.size // 3)  # a third of the bins change, by up to 8
        x = m + rng.normal(0, 3, shape)
        x.flat[rng.integers(0, x.size, 3)] += 500  # outliers the clip holds
        pol = AutoGroups()
        pol._ref, pol._ref_bins, pol._ref_n, pol._s = ref.astype(dtypes[1]), mu.astype(dtypes[3]), 1 + trial % 4, 8
        a, g, flicker, local2 = float(rng.uniform(0, 3)), float(rng.uniform(0.2, 2)), float(rng.uniform(0.9, 1.1)), 30.0
        args = (x.astype(dtypes[0]), m.astype(dtypes[2]))
        mean, moved = pol._change_statistics(*args, flicker, a, g, local2)
        k_mean, k_moved = change_statistics(args[0], pol._ref, args[1], pol._ref_bins, flicker, a, g, pol._ref_n,
                                            64, 400.0, local2)
        assert k_mean == pytest.approx(mean, rel=1e-6)
        assert k_moved == moved and 0 < moved < x.size


def _pair_noise_by_sorting(mu, v):
    """The noise model's fit as first written: every quartile's medians
    from the bins sorted by their means (the reference for the faster
    one, which sorts only the means until their range asks for the fit)."""
    from tcscodec.grouping import _CHI2_MEDIAN, _FIT_BINS

    poisson = (0.0, float(np.median(v / np.maximum(mu, 1e-12))) / _CHI2_MEDIAN)
    order = np.argsort(mu, axis=None)
    ms, vs = mu.ravel()[order], v.ravel()[order]
    parts = [p for p in np.array_split(np.arange(ms.size), 4) if p.size]
    mq = np.array([float(np.median(ms[p])) for p in parts])
    vq = np.array([float(np.median(vs[p])) / _CHI2_MEDIAN for p in parts])
    if mu.size < _FIT_BINS or float(mq[-1] - mq[0]) <= 0.5 * max(float(np.mean(np.abs(mq))), 1e-12):
        return poisson
    g, a = np.polyfit(mq, vq, 1)
    return poisson if g <= 0 or a < 0 else (float(a), float(g))


def test_noise_model_fit_matches_sorting_every_bin():
    """The same (a, g), to the last bit, on flat and wide ranges of bin
    means, with many ties (integer frames make them), odd sizes and 2-D bins."""
    rng = np.random.default_rng(11)
    fits = set()
    for trial in range(400):
        n = int(rng.choice([600, 1024, 1025, 1027, 4096, 4099, 8191]))
        mu = [20 + 0.56 * rng.standard_normal(n), rng.uniform(1, 300, n),
              np.round(rng.gamma(2, 20, n), 1), rng.integers(0, 40, n) / 64.0 + rng.choice([0.5, 50.0], n),
              rng.choice([1.0, 2.0, 100.0], n)][trial % 5]
        if trial % 3 == 0 and n % 2 == 0:
            mu = mu.reshape(2, -1)
        v = rng.chisquare(1, mu.shape) * (rng.uniform(0, 5) + rng.uniform(0.5, 2) * np.abs(mu))
        fit = AutoGroups._pair_noise(mu, v)
        assert fit == _pair_noise_by_sorting(mu, v)
        fits.add(fit[0] > 0)
    assert fits == {True, False}  # both branches: Poisson, and an offset fitted


def test_listed_groups():
    assert decide(np.zeros((20, 8, 8)), ListedGroups([3, 1, 5], 6)) == [3, 1, 5, 6, 5]
    with pytest.raises(TcsValueError, match="1..B=6, got 7"):
        ListedGroups([7], 6)


def test_config_round_trip_and_checks():
    c = AutoGroupsConfig(min_B=2, max_B=30, tolerance=0.3)
    assert AutoGroupsConfig.from_dict(c.to_dict()) == c
    with pytest.raises(TcsValueError, match="min_B"):
        AutoGroupsConfig(min_B=0)
    with pytest.raises(TcsValueError, match="unknown AutoGroupsConfig key"):
        AutoGroupsConfig.from_dict({"tolerence": 1})


def test_writer_auto_makes_the_decided_groups(tmp_path):
    m = event_movie("growth", shape=(64, 64), n_frames=36, burst=6, seed=2, dose=80, mode="stem")
    expected = decide(m.frames, AutoGroups(AutoGroupsConfig(min_B=3, max_B=24, tolerance=0.5)))
    path = tmp_path / "a.tcs"
    tcscodec.write(path, m.frames, B="auto", seed=7, tile=32, min_B=3, max_B=24, auto_tolerance=0.5)
    with tcscodec.open(path) as r:
        assert r.group_lengths().tolist() == expected and r.B == (24 if r.variable_groups else expected[0])
        assert r.header.metadata["groups"] == "auto: 3..24 frames, tolerance 0.5"
        t = 0
        for g, n in enumerate(expected):
            want = tcscodec.encoder.encode_group(m.frames[t:t + n], 7)
            assert np.array_equal(r.measurements(g), want)
            t += n


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_decisions_on_the_writers_threads_are_the_same(threads):
    m = event_movie("jump", shape=(72, 88), n_frames=30, burst=6, seed=4, dose=40, mode="stem")
    calls = []

    def run(jobs):  # the pool's contract: run every job, results in order
        calls.append(len(jobs))
        return [job() for job in jobs]

    alone, pooled = AutoGroups(AutoGroupsConfig(min_B=2)), AutoGroups(AutoGroupsConfig(min_B=2))
    pooled.use_pool(run, threads)
    assert decide(m.frames, pooled) == decide(m.frames, alone)
    assert pooled.decisions == alone.decisions and np.array_equal(pooled._ref_bins, alone._ref_bins)
    assert calls == ([] if threads == 1 else [min(threads, 72 // 8)] * 30)


def test_cli_encode_B_auto_and_info_histogram(tmp_path):
    from click.testing import CliRunner

    from tcscodec.cli.main import main

    rng = np.random.default_rng(4)
    a, b = textured(rng, (48, 48), 50.0), textured(rng, (48, 48), 20.0)
    clean = np.concatenate([np.broadcast_to(a, (20, 48, 48)), np.broadcast_to(b, (13, 48, 48))])
    np.save(tmp_path / "m.npy", rng.poisson(clean).astype(np.uint16))
    runner = CliRunner()
    out = runner.invoke(main, ["encode", str(tmp_path / "m.npy"), "-B", "auto", "--max-B", "16", "--min-B", "2",
                               "--auto-tolerance", "0.8", "--quantize", "1", "-q"])
    assert out.exit_code == 0, out.output
    assert "B=auto: 3 groups of 4..16 frames" in out.output
    with tcscodec.open(tmp_path / "m.tcs") as r:
        assert r.group_lengths().tolist() == [16, 4, 13] and r.header.version == (2, 0)
    out = runner.invoke(main, ["info", str(tmp_path / "m.tcs")])
    assert "16 frames x 1, 13 frames x 1, 4 frames x 1  (mean 11.0 frames)" in out.output
    for args, message in [(["-B", "8", "--max-B", "16"], "go with -B auto"),
                          (["-B", "auto", "--device", "cuda"], "-B auto encodes on the CPU only"),
                          (["-B", "sometimes"], "neither an integer in 2..64 nor 'auto'")]:
        out = runner.invoke(main, ["encode", str(tmp_path / "m.npy"), "-o", str(tmp_path / "x.tcs"), *args])
        assert out.exit_code == 2 and message in out.output, out.output
    assert not (tmp_path / "x.tcs").exists()


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_event_movies_are_still_then_burst_then_still(kind):
    m = event_movie(kind, shape=(48, 48), n_frames=20, burst=5, seed=1, dose=30)
    start, end = m.meta["burst"]
    assert (start, end) == (5, 10) and m.meta["event_frames"] == [5, 6, 7, 8, 9]
    assert m.frames.shape == m.clean.shape == (20, 48, 48) and m.frames.dtype == np.dtype(m.config.dtype)
    change = np.abs(np.diff(m.clean.astype(np.float64), axis=0)).max(axis=(1, 2))
    assert np.all(change[:start - 1] == 0) and np.all(change[end:] == 0)  # exactly still
    assert np.all(change[start - 1:end - 1] > 0)  # every burst frame differs from the one before
    again = event_movie(kind, shape=(48, 48), n_frames=20, burst=5, seed=1, dose=30)
    assert np.array_equal(again.frames, m.frames)
    assert not np.array_equal(m.frames[0], m.frames[1])  # fresh noise in the still stretch


def test_event_movie_arguments():
    with pytest.raises(TcsValueError, match="kind must be one of"):
        event_movie("explosion")
    with pytest.raises(TcsValueError, match="burst must be in 1..n_frames-1=19"):
        event_movie(n_frames=20, burst=20)
