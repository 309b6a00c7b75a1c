"""Bjøntegaard deltas between rate-distortion curves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tcscodec.evaluation.rd import (_integral, bd_psnr, bd_rate, bd_rate_bound, psnr_over_curve, rd_curve,
                                    rd_frontier)

RATES = [1000.0, 2000.0, 4000.0, 8000.0]
PSNRS = [24.0, 27.5, 30.2, 32.0]


def test_a_curve_against_itself_has_no_delta():
    assert bd_psnr(RATES, PSNRS, RATES, PSNRS) == pytest.approx(0.0, abs=1e-12)
    assert bd_rate(RATES, PSNRS, RATES, PSNRS) == pytest.approx(0.0, abs=1e-12)


def test_a_curve_one_db_higher_gains_one_db_and_fewer_bytes():
    assert bd_psnr(RATES, PSNRS, RATES, [p + 1 for p in PSNRS]) == pytest.approx(1.0, abs=1e-12)
    assert bd_rate(RATES, PSNRS, RATES, [p + 1 for p in PSNRS]) < -10


def test_the_same_quality_at_80_percent_of_the_bytes_is_minus_20_percent():
    assert bd_rate(RATES, PSNRS, [0.8 * r for r in RATES], PSNRS) == pytest.approx(-20.0, abs=1e-9)
    assert bd_rate([0.8 * r for r in RATES], PSNRS, RATES, PSNRS) == pytest.approx(25.0, abs=1e-9)
    # a higher curve at equal rate is the same curve moved to fewer bytes: both deltas agree in sign
    assert bd_psnr(RATES, PSNRS, [0.8 * r for r in RATES], PSNRS) > 0


def test_points_in_any_order_and_two_points_make_a_line():
    order = [2, 0, 3, 1]
    assert bd_psnr(RATES, PSNRS, [RATES[i] for i in order], [PSNRS[i] + 0.5 for i in order]) == pytest.approx(0.5)
    # two points: straight lines in log-rate, so the mean gap is the gap at the middle
    a = bd_psnr([1e3, 1e4], [20.0, 30.0], [1e3, 1e4], [22.0, 30.0])
    assert a == pytest.approx(1.0, abs=1e-12)


def test_the_integral_matches_scipys_pchip():
    interpolate = pytest.importorskip("scipy.interpolate")
    rng = np.random.default_rng(0)
    for n in (2, 3, 4, 7):
        x = np.sort(rng.uniform(0, 5, n)) + np.arange(n) * 0.1
        y = rng.uniform(0, 10, n)  # not monotone: the extremum rules matter
        lo, hi = x[0] + 0.3 * (x[1] - x[0]), x[-1] - 0.2 * (x[-1] - x[-2])
        ref = interpolate.PchipInterpolator(x, y).integrate(lo, hi)
        assert _integral(x, y, lo, hi) == pytest.approx(ref, rel=1e-10, abs=1e-10)


def test_curves_that_do_not_overlap_have_no_delta_and_bad_curves_are_refused():
    assert math.isnan(bd_psnr([1e3, 2e3], [20, 25], [4e3, 8e3], [26, 30]))  # rates apart
    assert math.isnan(bd_rate(RATES, PSNRS, RATES, [p + 20 for p in PSNRS]))  # PSNRs apart
    assert math.isnan(bd_rate(RATES, [30, 27, 26, 25], RATES, PSNRS))  # the frontier is one point
    with pytest.raises(ValueError, match="two points"):
        bd_psnr(RATES, PSNRS, [1e3, 2e3], [20, float("nan")])
    with pytest.raises(ValueError, match="positive"):
        rd_curve([0.0, 1.0], [20, 21])
    with pytest.raises(ValueError, match="one length"):
        rd_curve([1.0, 2.0], [20.0])


def test_points_of_one_rate_are_merged():
    x, y = rd_curve([2e3, 1e3, 2e3], [30.0, 25.0, 28.0])
    assert x.tolist() == pytest.approx([3.0, math.log10(2e3)]) and y.tolist() == [25.0, 29.0]
    with pytest.raises(ValueError, match="two points"):
        rd_curve([1e3, 1e3], [20.0, 21.0])
    assert bd_psnr([1e3, 2e3, 2e3], [25, 28, 30], [1e3, 2e3], [26, 30]) == pytest.approx(1.0, abs=0.01)


def test_one_point_over_a_curve():
    assert psnr_over_curve(RATES, PSNRS, RATES[1], PSNRS[1] + 0.5) == pytest.approx(0.5, abs=0.01)
    assert math.isnan(psnr_over_curve(RATES, PSNRS, RATES[-1] * 3, 40.0))  # beyond the curve's bytes


def test_bd_rate_reads_each_curve_on_its_frontier():
    # the second point is beaten by the first (fewer bytes, higher PSNR): nobody would pick it
    rates, psnrs = [1000.0, 2000.0, 4000.0, 8000.0], [27.0, 26.0, 30.2, 32.0]
    x, y = rd_frontier(rates, psnrs)
    assert (10**x).tolist() == pytest.approx([1000.0, 4000.0, 8000.0]) and y.tolist() == [27.0, 30.2, 32.0]
    assert rd_frontier(RATES, PSNRS)[1].tolist() == PSNRS  # a rising curve is its own frontier
    assert rd_frontier([1e3, 2e3], [25.0, 25.0])[1].tolist() == [25.0]  # equal PSNR for more bytes: left out
    want = bd_rate(RATES, PSNRS, [1000.0, 4000.0, 8000.0], [27.0, 30.2, 32.0])
    assert math.isfinite(want) and bd_rate(RATES, PSNRS, rates, psnrs) == pytest.approx(want, abs=1e-12)
    assert bd_rate(rates, psnrs, RATES, PSNRS) == pytest.approx(bd_rate([1000.0, 4000.0, 8000.0],
                                                                        [27.0, 30.2, 32.0], RATES, PSNRS))


def test_curves_apart_in_psnr_get_a_bound_on_the_bd_rate():
    anchor = ([1000.0, 2000.0, 4000.0], [20.0, 22.0, 24.0])  # log-rate linear in PSNR: its mean rate is 2000
    above = ([500.0, 1000.0], [25.0, 26.0])  # its cheapest point beats the anchor's best
    assert math.isnan(bd_rate(*anchor, *above))
    sign, bound = bd_rate_bound(*anchor, *above)
    assert sign == "<" and bound == pytest.approx(500 / 2000 * 100 - 100)
    # seen from the other side: the curve below needs more than its mean rate over the cheapest point above
    sign, bound = bd_rate_bound(*above, *anchor)
    assert sign == ">" and bound == pytest.approx(2000 / 500 * 100 - 100)
    assert bd_rate_bound(RATES, PSNRS, RATES, [p + 1 for p in PSNRS]) is None  # overlapping: bd_rate has it
    # a dominated point does not widen the range: the frontier of the anchor here ends at 24
    sign, _ = bd_rate_bound([1000.0, 2000.0, 4000.0, 8000.0], [20.0, 22.0, 24.0, 23.0], *above)
    assert sign == "<"
