"""tcscodec.evaluation: metrics, TV prox, equal-bytes search, the evaluation loop, ``tcscodec eval``."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import numpy as np
import pytest

from tcscodec import evaluation as ev
from tcscodec.decoders.base import Decoder, _REGISTRY, register_decoder
from tcscodec.metrics import psnr

pytest.importorskip("scipy")

NAIVE_TEST = "test-eval-naive"


if NAIVE_TEST not in _REGISTRY:

    @register_decoder(NAIVE_TEST)
    class _NaiveDecoder(Decoder):
        """Y / sum(C) for every frame: the simplest decoder, to test the loop."""

        receptive_margin = 0

        def decode(self, y, masks):
            s = masks.sum(1).clamp(min=1)
            return (y / s)[:, None].expand(-1, masks.shape[1], -1, -1).contiguous()


def _movie(T=12, H=40, W=48, seed=0, dose=20.0):
    """A small moving-texture movie with Poisson noise and its clean truth."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    clean = np.stack([dose * (1.2 + np.sin((xx + 0.7 * t) / 3.0) * np.cos(yy / 4.0)) for t in range(T)])
    return rng.poisson(clean).astype(np.uint16), clean.astype(np.float32)


# -- SSIM / PSNR ---------------------------------------------------------------------------------


def _ssim_bruteforce(x, y, i, j, L, sigma=1.5, r=5):
    """SSIM at pixel (i, j) from the explicit 11x11 Gaussian window (Wang 2004)."""
    g = np.exp(-(np.arange(-r, r + 1) ** 2) / (2 * sigma**2))
    w = np.outer(g, g)
    w /= w.sum()
    a, b = x[i - r:i + r + 1, j - r:j + r + 1], y[i - r:i + r + 1, j - r:j + r + 1]
    mx, my = (w * a).sum(), (w * b).sum()
    vx, vy = (w * (a - mx) ** 2).sum(), (w * (b - my) ** 2).sum()
    cxy = (w * (a - mx) * (b - my)).sum()
    C1, C2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    return ((2 * mx * my + C1) * (2 * cxy + C2)) / ((mx**2 + my**2 + C1) * (vx + vy + C2))


def test_ssim_identical_and_constant_images():
    x = np.random.default_rng(1).random((3, 32, 32))
    assert ev.ssim(x, x) == pytest.approx(1.0)
    # Two constant images a, b: only the luminance term, (2ab + C1) / (a^2 + b^2 + C1).
    L = 10.0
    C1 = (0.01 * L) ** 2
    s = ev.ssim(np.full((24, 24), 2.0), np.full((24, 24), 3.0), data_range=L)
    assert s == pytest.approx((2 * 2 * 3 + C1) / (4 + 9 + C1), rel=1e-12)
    with pytest.raises(ValueError):
        ev.ssim(np.ones((16, 16)), np.ones((16, 16)))  # no data range for a constant reference


def test_ssim_map_matches_explicit_window():
    rng = np.random.default_rng(2)
    x = rng.random((40, 40)) * 100
    for y in (x + 7.0, x + rng.normal(0, 10, x.shape), 0.5 * x + 20):
        L = float(x.max() - x.min())
        m = ev.ssim_map(y, x)  # cropped by the radius 5
        assert m.shape == (30, 30)
        for i, j in ((5, 5), (12, 30), (20, 17), (34, 34)):
            assert m[i - 5, j - 5] == pytest.approx(_ssim_bruteforce(y, x, i, j, L), rel=1e-9, abs=1e-12)
    # A constant offset keeps structure and contrast: SSIM < 1 only through luminance.
    assert 0.9 < ev.ssim(x + 7.0, x) < 1.0


def test_psnr_known_values():
    ref = np.tile(np.arange(256, dtype=np.float64), (8, 1))  # range 255
    assert psnr(ref + 1.0, ref) == pytest.approx(20 * math.log10(255), rel=1e-12)
    assert psnr(ref, ref) == math.inf


# -- TV ----------------------------------------------------------------------------------------------


def test_tv_prox_reduces_noise_and_keeps_the_mean():
    rng = np.random.default_rng(3)
    noisy = (10.0 + rng.normal(0, 1, (8, 32, 32))).astype(np.float32)
    den = ev.tv_denoise(noisy, 0.5, iterations=80)
    assert den.shape == noisy.shape and den.dtype == np.float32
    assert den.std() < noisy.std() / 3
    assert den.mean() == pytest.approx(noisy.mean(), abs=1e-4)  # D^T p sums to zero
    assert np.array_equal(ev.tv_denoise(noisy, 0.0), noisy)
    # The oracle tuning on the truth beats the noisy input, and reports its weight.
    truth = np.full_like(noisy, 10.0)
    out, fit = ev.tune_tv(noisy, truth, data_range=1.0, iterations=30, crop=None, refine=2)
    assert fit.weight > 0 and psnr(out, truth, 1.0) > psnr(noisy, truth, 1.0) + 6


def test_tv_prox_solves_the_problem():
    """The output's objective is not above that of nearby points (a
    minimiser of 0.5 |x - f|^2 + w TV(x))."""
    rng = np.random.default_rng(4)
    f = rng.normal(0, 1, (4, 12, 12)).astype(np.float64)
    w = 0.3

    def objective(x):
        dt = np.diff(x, axis=0, append=x[-1:])
        dy = np.diff(x, axis=1, append=x[:, -1:])
        dx = np.diff(x, axis=2, append=x[:, :, -1:])
        return 0.5 * np.sum((x - f) ** 2) + w * np.sum(np.sqrt(dt**2 + dy**2 + dx**2))

    x = ev.tv_denoise(f, w, iterations=400).astype(np.float64)
    best = objective(x)
    assert best < objective(f)
    for _ in range(5):
        assert best <= objective(x + rng.normal(0, 1e-2, x.shape)) + 1e-3


# -- codecs ------------------------------------------------------------------------------------------------


def test_jpeg_equal_bytes_search_lands_within_tolerance():
    pytest.importorskip("PIL")
    frames, _ = _movie(T=6, H=64, W=64)
    full = ev.encode_at_bytes("jpeg", frames, 10**9)  # the best quality: every setting fits
    target = full.nbytes // 6
    out = ev.encode_at_bytes("jpeg", frames, target, rtol=0.02, max_evals=12)
    assert out.nbytes <= target
    assert out.nbytes >= 0.9 * target  # JPEG sizes move in small steps of the table scale
    assert out.decoded.shape == frames.shape and out.decoded.dtype == np.float32
    assert "quality=" in out.settings and "8-bit" in out.settings
    # A budget below the smallest file is reported, not hidden.
    tiny = ev.encode_at_bytes("jpeg", frames, 10)
    assert tiny.nbytes > 10 and "target" in tiny.note


def test_mapping_is_exact_for_8_bit_integer_movies():
    frames = np.random.default_rng(5).integers(3, 200, (2, 8, 8)).astype(np.uint16)
    m = ev._Mapping.for_movie(frames, ev.CODECS["jpeg"].depth_for(frames))
    assert m.depth == 8
    assert np.array_equal(np.rint(m.decode(m.encode(frames))), frames)
    big = frames * 100
    assert ev.CODECS["jpeg2000"].depth_for(big) == 16 and ev.CODECS["h264"].depth_for(big) == 10


def test_strip_sei_keeps_other_nal_units():
    sps, sei, idr = b"\x00\x00\x00\x01\x67abc", b"\x00\x00\x01\x06x264 options", b"\x00\x00\x01\x65pix"
    assert ev._strip_sei(sps + sei + idr, hevc=False) == sps + idr
    hevc_sei = b"\x00\x00\x01" + bytes([39 << 1, 1]) + b"info"
    assert ev._strip_sei(sps + hevc_sei + idr, hevc=True) == sps + idr


@pytest.mark.parametrize("codec", ["h264", "h265", "av1"])
def test_video_codecs_keep_the_full_sample_range(codec, tmp_path):
    """Near-lossless round trip of a full-range ramp: no limited-range
    (16..235) conversion sneaks in between ffmpeg's encoder and decoder."""
    if ev.codec_unavailable(codec):
        pytest.skip(ev.codec_unavailable(codec))
    c = ev.CODECS[codec]
    ramp = np.ascontiguousarray(np.broadcast_to(np.arange(256, dtype=np.uint8)[None, None], (4, 16, 256)))
    knob = 20000.0 if c.knob == "kbps" else 0.0  # the best quality of either rate control
    n, payload = c.encode(ramp, 8, knob, tmp_path)
    dec = c.decode(payload, ramp.shape, 8, tmp_path)
    assert n == len(payload) and dec.shape == ramp.shape
    assert np.abs(dec.astype(int) - ramp).max() <= 2


def test_missing_ffmpeg_is_skipped_with_a_note(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    for c in ("h264", "h265", "av1"):
        assert ev.codec_unavailable(c) == "ffmpeg is not on PATH"
    assert "unknown codec" in ev.codec_unavailable("mpeg1")
    frames, clean = _movie(T=8, H=32, W=32)
    rows = ev.evaluate(frames, clean, B_list=(4,), decoders=(), codecs=("h264", "av1"), tv=True)
    skipped = [r for r in rows if r.skipped]
    assert {r.method for r in skipped} == {"h264", "h264+tv", "av1", "av1+tv"}
    assert all("ffmpeg is not on PATH" in r.note for r in skipped)
    assert all(math.isnan(r.psnr) for r in skipped)
    assert "skipped" in ev.summary_table(rows)


def test_margin_table_gives_leads_over_required_margins_and_counts_them():
    def row(movie, B, method, kind, psnr, skipped=False):
        return ev.EvalRow(movie=movie, B=B, method=method, kind=kind, reference="clean", psnr=psnr, ssim=0.5,
                          nbytes=100, tcs_bytes=100, raw_bytes=1000, skipped=skipped)

    rows = [row("a", 10, "tcs-unfold", "decoder", 30.0), row("a", 10, "jpeg", "codec", 26.5),
            row("a", 10, "h265", "codec", 31.0), row("a", 30, "tcs-unfold", "decoder", 25.0),
            row("a", 30, "jpeg", "codec", 23.0), row("a", 30, "h265", "codec", float("nan"), skipped=True),
            row("b", 10, "tcs-unfold", "decoder", 20.0), row("b", 10, "jpeg", "codec", 21.0),
            row("b", 10, "h265", "codec", 19.99)]
    lines = ev.margin_table(rows, against={"jpeg": 3.0, "h265": 0.0}).splitlines()
    assert lines[0] == "| movie | B | tcs-unfold | jpeg + 3 | h265 |"
    assert lines[2] == "| a | 10 | 30.00 | +0.50 | -1.00 |"
    assert lines[3] == "| a | 30 | 25.00 | -1.00 | — |"  # skipped H.265 is not a cell
    assert lines[4] == "| b | 10 | 20.00 | -4.00 | +0.01 |"
    assert lines[5] == "| **met** | | | 1 / 3 | 1 / 2 |"
    assert lines[6] == "| **median** | | | -1.00 | -0.49 |"
    # Without `against`: every other as-decoded method, at a required lead of 0.
    assert ev.margin_table(rows).splitlines()[0] == "| movie | B | tcs-unfold | jpeg | h265 |"


def test_bd_table_gives_each_codecs_bjontegaard_deltas_over_the_b_swept():
    def row(B, method, kind, nbytes, psnr):
        return ev.EvalRow(movie="a", B=B, method=method, kind=kind, reference="clean", psnr=psnr, ssim=0.5,
                          nbytes=nbytes, tcs_bytes=nbytes, raw_bytes=10**6)

    sizes = {10: 8000, 20: 4000, 30: 2000}
    rows = [row(B, "tcs-unfold", "decoder", n, 30.0 - B / 10) for B, n in sizes.items()]
    rows += [row(B, "h265", "codec", n, 30.0 - B / 10 - 1.5) for B, n in sizes.items()]  # 1.5 dB lower
    # PSNR falls with rate: its frontier is its cheapest point, above every tcs-unfold point
    rows += [row(B, "jpeg", "codec", n, 40.0 + B) for B, n in sizes.items()]
    rows += [row(10, "av1", "codec", 8000, 31.0)]  # one point: no curve
    lines = ev.bd_table(rows).splitlines()
    assert lines[0] == ("| movie | B | tcs-unfold vs jpeg: BD-PSNR / BD-rate | tcs-unfold vs h265: BD-PSNR / BD-rate"
                        " | tcs-unfold vs av1: BD-PSNR / BD-rate |")
    cells = lines[2].split(" | ")
    # tcs-unfold needs on average 4000 bytes where jpeg's 2000 already beat it: more than +100 %
    assert cells[1] == "10,20,30" and cells[2].endswith("dB / > +100 %") and cells[4] == "— |"
    assert cells[3].startswith("+1.50 dB / -") and float(cells[3].split("/ ")[1].split(" %")[0]) < -10


# -- the evaluation loop ---------------------------------------------------------------------------------


def test_evaluate_tiny_movie(tmp_path):
    pytest.importorskip("PIL")
    frames, clean = _movie()
    rows = ev.evaluate(frames, clean, B_list=(4, 6), decoders=(NAIVE_TEST, "no-such-decoder"),
                       codecs=("jpeg",), tv=True, tv_iterations=15, name="tiny", example_frame=5)
    by = {(r.B, r.method): r for r in rows}
    assert {"raw", "raw+tv"} <= {m for _, m in by}
    for B in (4, 6):
        dec, naive, oracle = by[(B, NAIVE_TEST)], by[(B, ev.NAIVE)], by[(B, ev.ORACLE)]
        # The test decoder is Y/sum(C): the same numbers as the built-in naive row.
        assert dec.psnr == pytest.approx(naive.psnr, abs=1e-3) and dec.ssim == pytest.approx(naive.ssim, abs=1e-4)
        assert dec.nbytes == dec.tcs_bytes == naive.nbytes and dec.kind == "decoder"
        assert oracle.nbytes is None and oracle.psnr > naive.psnr
        assert len(dec.psnr_frames) == len(frames) and dec.example.shape == frames.shape[1:]
        assert dec.example_index == 5 and dec.reference == "clean"
        jpeg, jpeg_tv = by[(B, "jpeg")], by[(B, "jpeg+tv")]
        assert jpeg.nbytes <= jpeg.tcs_bytes and jpeg.bytes_vs_tcs <= 1.0
        assert jpeg_tv.nbytes == jpeg.nbytes and jpeg_tv.psnr >= jpeg.psnr - 1e-6 and jpeg_tv.tv_weight is not None
        dec_tv = by[(B, NAIVE_TEST + "+tv")]
        assert dec_tv.kind == "decoder+tv" and dec_tv.psnr >= dec.psnr - 1e-6 and dec_tv.nbytes == dec.nbytes
        skipped = by[(B, "no-such-decoder")]
        assert skipped.skipped and "no-such-decoder" in skipped.note
        assert 0 < dec.ratio == dec.raw_bytes / dec.nbytes
    assert by[(4, ev.NAIVE)].tcs_bytes > by[(6, ev.NAIVE)].tcs_bytes
    # Serialisation round trip, and the reports name every method.
    blob = json.dumps(ev.rows_to_json(rows, movie="tiny"))
    back = [ev.EvalRow.from_dict(d) for d in json.loads(blob)["rows"]]
    assert [(r.B, r.method, r.nbytes) for r in back] == [(r.B, r.method, r.nbytes) for r in rows]
    md, summary = ev.markdown_table(rows), ev.summary_table(rows)
    for m in ("raw", ev.NAIVE, ev.ORACLE, NAIVE_TEST, "jpeg+tv"):
        assert m in md and m in summary
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert ev.save_figure(tmp_path / "f.png", rows, frames, clean).stat().st_size > 1000
    paths = ev.save_report(tmp_path / "report", rows, frames, clean, title="tiny")
    assert paths["rd"].stat().st_size > 1000
    assert "Bjøntegaard" in paths["table"].read_text()


def test_evaluate_decodes_with_and_without_motion_compensation_by_suffix():
    from tcscodec.simulate import texture_movie

    rng = np.random.default_rng(1)
    f2 = np.fft.fftfreq(192)[:, None] ** 2 + np.fft.rfftfreq(192)[None] ** 2
    blobs = np.fft.irfft2(np.fft.rfft2(rng.standard_normal((192, 192))) * np.exp(-2 * np.pi**2 * 9 * f2), s=(192, 192))
    m = texture_movie(np.clip(1 + blobs / blobs.std() * 0.4, 0.05, None), 32, rng, 30.0, shape=(96, 96),
                      drift_px=(1.5, 1.0), drift_jitter_px=0.0, rotation_deg=0.0, flicker=0.0)
    rows = ev.evaluate(m.frames, m.clean, B_list=(8,), codecs=(), tv=False,
                       decoders=("gap-tv", "gap-tv" + ev.STILL_SUFFIX, "gap-tv" + ev.MOTION_SUFFIX))
    by = {r.method: r for r in rows}
    assert not any(r.skipped for r in rows)
    assert by["gap-tv"].psnr == by["gap-tv/motion"].psnr  # the API's default: compensated
    assert by["gap-tv/motion"].psnr > by["gap-tv/still"].psnr + 0.8


def test_evaluate_auto_groups_beside_fixed_B():
    pytest.importorskip("PIL")
    yy, xx = np.mgrid[0:32, 0:32]
    still = 20 * (1.2 + np.sin(xx / 3) * np.cos(yy / 4))
    # a cut to another still scene: -B auto starts a group there
    clean = np.stack([still] * 12 + [still[::-1, ::-1] * (0.6 + 0.8 * xx / 31)] * 12).astype(np.float32)
    frames = np.random.default_rng(0).poisson(clean).astype(np.uint16)
    rows = ev.evaluate(frames, clean, B_list=(4, 24, "auto:4"), decoders=(NAIVE_TEST,), codecs=("jpeg",),
                       tv=False, name="cut")
    rows = [r if r.B != "auto:4" else dataclasses.replace(r, B="auto") for r in rows]  # as if run with "auto"
    by = {(r.B, r.method): r for r in rows}
    assert [B for B in dict.fromkeys(r.B for r in rows)] == [4, 24, "auto"]
    auto = by[("auto", NAIVE_TEST)]
    assert "groups 12 x 2" in auto.settings and auto.nbytes == auto.tcs_bytes
    assert by[("auto", "jpeg")].tcs_bytes == auto.tcs_bytes  # the codec matched to the auto file
    # the static oracle follows the auto file's groups (the cut is not averaged over)
    assert by[("auto", ev.ORACLE)].psnr > by[(24, ev.ORACLE)].psnr
    assert ev.curve_name(auto) == f"{NAIVE_TEST} (auto)" and ev.curve_name(by[(4, NAIVE_TEST)]) == NAIVE_TEST
    assert ev.curve_name(by[("auto", "jpeg")]) == "jpeg"
    bd = ev.bd_table(rows, decoder=NAIVE_TEST)
    line = next(ln for ln in bd.splitlines() if ln.startswith("| cut | auto |"))
    # one auto point, between B = 4 and 24 in bytes, compared with their curve at its own bytes
    assert by[(4, NAIVE_TEST)].nbytes > auto.nbytes > by[(24, NAIVE_TEST)].nbytes
    assert line.rstrip(" |").endswith("dB") and "auto vs fixed B" in bd
    back = [ev.EvalRow.from_dict(d) for d in json.loads(json.dumps(ev.rows_to_json(rows)))["rows"]]
    assert [r.B for r in back] == [r.B for r in rows]
    assert [r.B for r in ev.sort_rows(reversed(rows))][-1] == "auto"
    assert sorted(["auto:2", "auto", 64, "auto:0.25", 4], key=ev.B_order) == [4, 64, "auto:0.25", "auto", "auto:2"]
    assert "B=auto" in ev.summary_table(rows)


@pytest.mark.parametrize("B, label, kw", [(8, 8, {"B": 8}), ("16", 16, {"B": 16}), ("auto", "auto", {"B": "auto"}),
                                          ("auto:0.5", "auto:0.5", {"B": "auto", "auto_tolerance": 0.5})])
def test_grouping_labels(B, label, kw):
    assert ev.grouping(B) == (label, kw)


@pytest.mark.parametrize("bad", ["auto:-1", "auto:x", "automatic", "auto:inf", 2.5, True])
def test_grouping_refuses_what_it_cannot_write(bad):
    with pytest.raises(ValueError, match="'auto' or 'auto:T'"):
        ev.grouping(bad)


def test_evaluate_without_clean_measures_against_the_raw_frames():
    frames, _ = _movie(T=8, H=32, W=32)
    rows = ev.evaluate(frames, None, B_list=(4,), decoders=(), codecs=(), tv=False)
    assert [r.method for r in rows] == [ev.NAIVE]
    assert rows[0].reference == "raw" and math.isfinite(rows[0].psnr)


def test_clean_in_other_units_gets_a_fitted_gain():
    frames, clean = _movie(T=8, H=32, W=32)
    rows = ev.evaluate(frames, clean / 7.0, B_list=(4,), decoders=(), codecs=(), tv=False)
    assert "fitted gain" in rows[0].reference
    same = ev.evaluate(frames, clean, B_list=(4,), decoders=(), codecs=(), tv=False)
    assert rows[0].psnr == pytest.approx(same[0].psnr, abs=0.05)


# -- the command line -------------------------------------------------------------------------------------


def test_cli_eval(tmp_path):
    pytest.importorskip("PIL")
    import tifffile
    from click.testing import CliRunner

    from tcscodec.cli.main import main

    frames, clean = _movie(T=8, H=32, W=32)
    src, truth, out = tmp_path / "m.tif", tmp_path / "clean.npy", tmp_path / "res"
    tifffile.imwrite(src, frames)
    np.save(truth, clean)
    res = CliRunner().invoke(main, ["eval", str(src), "-B", "4", "--clean", str(truth), "--decoders", NAIVE_TEST,
                                    "--codecs", "jpeg", "--no-tv", "--out", str(out), "-q"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "jpeg" in res.output and NAIVE_TEST in res.output
    assert (out / "table.md").exists() and (out / "results.json").exists()
    data = json.loads((out / "results.json").read_text())
    assert data["meta"]["B"] == [4] and {r["method"] for r in data["rows"]} >= {"jpeg", NAIVE_TEST}
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (out / "figure.png").exists()
    res = CliRunner().invoke(main, ["eval", str(src), "-B", "4", "--codecs", "nope"])
    assert res.exit_code != 0 and "unknown codec" in res.output
    for bad in ("4,autox", "4,auto:-1", "1"):
        res = CliRunner().invoke(main, ["eval", str(src), "-B", bad])
        assert res.exit_code == 2 and "-B" in res.output, res.output
    # -B auto beside fixed B: its own line in the Bjøntegaard table
    res = CliRunner().invoke(main, ["eval", str(src), "-B", "2,4,auto", "--clean", str(truth), "--decoders", NAIVE_TEST,
                                    "--codecs", "none", "-q"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "B=auto" in res.output
    assert "auto vs fixed B: BD-PSNR" in res.output
    # two B or more: the Bjøntegaard deltas and the rate-distortion plot
    res = CliRunner().invoke(main, ["eval", str(src), "-B", "2,4", "--clean", str(truth), "--decoders", NAIVE_TEST,
                                    "--codecs", "jpeg", "--out", str(out), "-q"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "jpeg+tv" not in res.output  # the oracle TV rows only on request (--tv)
    assert f"{NAIVE_TEST} vs jpeg: BD-PSNR / BD-rate" in res.output and (out / "rd.png").exists()


def test_cli_eval_quantize_auto(tmp_path):
    """--quantize auto measures the file the encoder's auto step writes and
    records the step it chose; a bad step is refused."""
    import tifffile
    from click.testing import CliRunner

    from tcscodec.cli.main import main

    frames, clean = _movie(T=8, H=32, W=32)
    src, out = tmp_path / "m.tif", tmp_path / "res"
    tifffile.imwrite(src, frames)
    res = CliRunner().invoke(main, ["eval", str(src), "-B", "4", "--decoders", NAIVE_TEST, "--codecs", "none",
                                    "--quantize", "auto", "--no-tv", "--out", str(out), "-q"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    rows = json.loads((out / "results.json").read_text())["rows"]
    settings = [r["settings"] for r in rows if r["method"] == NAIVE_TEST]
    assert settings and all(s.startswith("seed 0, quant_step ") and s.endswith(" (auto)") for s in settings)
    res = CliRunner().invoke(main, ["eval", str(src), "-B", "4", "--quantize", "-2"])
    assert res.exit_code != 0 and "must be > 0" in res.output


def test_with_checkpoint_stands_in_for_the_learned_decoder(tmp_path):
    torch = pytest.importorskip("torch")
    from tcscodec.decoders import get_decoder
    from tcscodec.decoders.unfold_net import UnfoldConfig, UnfoldNet

    cfg = UnfoldConfig(stages=1, width=8, blocks=1, factor=2)
    torch.save({"model": UnfoldNet(cfg).state_dict(), "config": {"model": cfg.to_dict()}, "step": 7},
               tmp_path / "checkpoint.pt")
    names = ev.with_checkpoint(["gap-tv", "tcs-unfold"], tmp_path / "checkpoint.pt")
    try:
        assert names == ["gap-tv", "tcs-unfold@step7"]
        assert get_decoder(names[1]).net.config == cfg
        with pytest.raises(ValueError, match="already registered"):
            ev.checkpoint_decoder(tmp_path / "checkpoint.pt", name=names[1])
    finally:
        _REGISTRY.pop("tcs-unfold@step7", None)
    # without "tcs-unfold" in the list, the checkpoint comes first
    try:
        assert ev.with_checkpoint(["gap-tv"], tmp_path / "checkpoint.pt") == ["tcs-unfold@step7", "gap-tv"]
    finally:
        _REGISTRY.pop("tcs-unfold@step7", None)
    # with motion compensation off or on: the checkpoint's network so decoded
    try:
        names = ev.with_checkpoint(["tcs-unfold/still", "gap-tv/motion"], tmp_path / "checkpoint.pt")
        assert names == ["tcs-unfold@step7/still", "gap-tv/motion"]
    finally:
        _REGISTRY.pop("tcs-unfold@step7", None)
