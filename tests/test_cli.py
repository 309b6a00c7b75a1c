"""The command line through click's CliRunner."""

import json

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

import tcscodec
from tcscodec.cli.main import main
from tcscodec.encoder import encode_group
from tcscodec.writer import AUTO_FRACTION


@pytest.fixture
def movie_tif(tmp_path):
    frames = np.random.default_rng(0).poisson(5, (13, 37, 45)).astype(np.uint16)
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, frames)
    return path, frames


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_help_everywhere():
    for cmd in ([], ["encode"], ["decode"], ["info"], ["verify"], ["recover"], ["demo"], ["decoders"]):
        res = run(*cmd, "--help")
        assert res.exit_code == 0 and "Usage:" in res.output, cmd


def test_encode_info_verify(movie_tif, tmp_path):
    src, frames = movie_tif
    out = tmp_path / "out.tcs"
    res = run("encode", src, "-B", 5, "-o", out, "--seed", 77, "--tile", 16, "--meta", "pixel_size_A=0.5",
              "--meta", "detector=K3", "--quantize", 1, "-q")
    assert res.exit_code == 0, res.output
    assert "13 frames 37x45 uint16, B=5, lossless" in res.output and "ratio" in res.output
    with tcscodec.open(out) as r:
        assert r.metadata()["user"] == {"pixel_size_A": 0.5, "detector": "K3", "source": "movie.tif"}
        for g in range(3):
            assert np.array_equal(r.measurements(g), encode_group(frames[5 * g:5 * g + 5], 77, 5))
    res = run("info", out)
    assert res.exit_code == 0
    assert "13 frames x 37 x 45  uint16" in res.output and "seed 77" in res.output
    assert "grid 3x3" in res.output and "pixel_size_A = 0.5" in res.output
    info = json.loads(run("info", out, "--json").output)
    assert info["ratio"] == pytest.approx(frames.nbytes / out.stat().st_size)
    assert info["groups"] == 3 and info["tile_grid"] == [3, 3]
    res = run("verify", out)
    assert res.exit_code == 0 and "OK, 3 groups x 9 tiles, 13 frames" in res.output


def test_encode_quantises_by_default(movie_tif, tmp_path):
    """The CLI default is --quantize auto: an odd whole step below 1.5 times
    the shot noise of the first measurement, recorded in the header and metadata."""
    src, frames = movie_tif
    out = tmp_path / "out.tcs"
    res = run("encode", src, "-B", 5, "-o", out, "--seed", 77, "-q")
    assert res.exit_code == 0
    with tcscodec.open(out) as r:
        step = r.header.quant_step
        assert f"B=5, quant_step {step:g}," in res.output
        assert r.metadata()["user"]["quantize"].startswith("auto")
        y = encode_group(frames[:5], 77, 5).astype(np.float64)
        assert step > 1 and step % 2 == 1
        assert step <= AUTO_FRACTION * np.sqrt(np.median(y)) * 1.2
        assert np.abs(r.measurements(0) - y).max() <= step // 2


def test_encode_codec_option(movie_tif, tmp_path):
    """--codec picks the record codec; the default predict-rice file says
    format 1.1, a shuffle-zstd file 1.0, and both hold the same measurements."""
    src, frames = movie_tif
    sizes = {}
    for codec in ("predict-rice", "shuffle-zstd"):
        out = tmp_path / f"{codec}.tcs"
        args = ("--codec", codec) if codec != "predict-rice" else ()
        assert run("encode", src, "-B", 5, "-o", out, "--seed", 3, "--quantize", 1, "-q", *args).exit_code == 0
        info = run("info", out).output
        assert f"codec {codec}" in info and ("format 1.1" if codec == "predict-rice" else "format 1.0") in info
        with tcscodec.open(out) as r:
            assert np.array_equal(r.measurements(2), encode_group(frames[10:], 3, 5))
        sizes[codec] = out.stat().st_size
    assert sizes["predict-rice"] < sizes["shuffle-zstd"]
    res = run("encode", src, "-o", tmp_path / "x.tcs", "--codec", "lz4")
    assert res.exit_code == 2 and "'lz4' is not one of" in res.output


def test_encode_refuses_to_overwrite(movie_tif, tmp_path):
    src, _ = movie_tif
    out = tmp_path / "out.tcs"
    out.write_bytes(b"keep")
    res = run("encode", src, "-o", out)
    assert res.exit_code == 1 and "exists; use --force" in res.output
    assert out.read_bytes() == b"keep"
    assert run("encode", src, "-o", out, "--force", "-q").exit_code == 0


def test_cli_errors_are_one_line(tmp_path):
    res = run("encode", tmp_path / "missing.tif", "-o", tmp_path / "o.tcs")
    assert res.exit_code == 1 and "Error: " in res.output and "missing.tif: no such file" in res.output
    res = run("encode", tmp_path / "missing.tif", "-B", 1)
    assert res.exit_code == 2 and "1 is not in 2..64 (or 'auto')" in res.output
    (tmp_path / "junk.tcs").write_bytes(b"junk" * 30)
    res = run("info", tmp_path / "junk.tcs")
    assert res.exit_code == 1 and "not a .tcs file" in res.output
    assert not (tmp_path / "o.tcs").exists()


def test_verify_finds_damage(movie_tif, tmp_path):
    src, _ = movie_tif
    out = tmp_path / "out.tcs"
    run("encode", src, "-B", 5, "-o", out, "--tile", 16, "--seed", 5, "-q")
    with tcscodec.open(out) as r:
        offset = r._container.records[(1, 1, 2)].offset
    data = bytearray(out.read_bytes())
    data[offset + 24 + 3] ^= 0x10  # a payload byte of group 1, tile (1, 2)
    out.write_bytes(bytes(data))
    res = run("verify", out)
    assert res.exit_code == 1 and "group 1 tile (1, 2): record checksum mismatch" in res.output


def test_recover_partial_file(movie_tif, tmp_path):
    src, frames = movie_tif
    out = tmp_path / "out.tcs"
    run("encode", src, "-B", 4, "-o", out, "--tile", 16, "--seed", 5, "-q")
    data = out.read_bytes()
    with tcscodec.open(out) as r:
        header = r.header.with_frames(0).to_bytes()
        cut = max(e.offset for e in r._container.records.values() if e.group == 2) + 10
        stored = r.measurements(1)  # quantised (the CLI default)
        assert r.header.quant_step > 1
    partial = tmp_path / "out.tcs.abc.partial"
    partial.write_bytes(header + data[len(header):cut])
    fixed = tmp_path / "fixed.tcs"
    res = run("recover", partial, "-o", fixed)
    assert res.exit_code == 0 and "8 frames in 2 complete groups" in res.output
    with tcscodec.open(fixed) as r:
        assert r.complete and r.shape == (8, 37, 45)
        assert np.array_equal(r.measurements(1), stored)
        step = r.header.quant_step
        assert np.abs(stored - encode_group(frames[4:8], r.header.mask_seed, 4)).max() <= step // 2


def test_python_dash_m(tmp_path):
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "tcscodec", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and tcscodec.__version__ in res.stdout


def test_decode_frames_region_and_dtype(movie_tif, tmp_path):
    src, frames = movie_tif
    tcs = tmp_path / "m.tcs"
    run("encode", src, "-B", 5, "-o", tcs, "--tile", 16, "-q")
    out = tmp_path / "d.tif"
    res = run("decode", tcs, "-o", out, "--decoder", "gap-tv", "--frames", "3:8", "--region", "4:30,10:41",
              "--dtype", "input", "-q")
    assert res.exit_code == 0, res.output
    part = tifffile.imread(out)
    assert part.shape == (5, 26, 31) and part.dtype == np.uint16
    with tcscodec.open(tcs) as r:
        full = r.read(decoder="gap-tv")
    # the region decode is exactly the crop of the full decode
    assert full.dtype == np.uint16 and np.array_equal(part, full[3:8, 4:30, 10:41])
    npy = tmp_path / "d.npy"
    assert run("decode", tcs, "-o", npy, "--frames", "12,-1", "-q").exit_code == 0
    assert np.load(npy).shape == (2, 37, 45) and np.load(npy).dtype == np.uint16  # the input's by default
    assert run("decode", tcs, "-o", npy, "--frames", "12,-1", "--dtype", "float32", "-q", "-f").exit_code == 0
    assert np.load(npy).dtype == np.float32
    res = run("decode", tcs, "-o", tmp_path / "bad.tif", "--region", "0:5")
    assert res.exit_code == 2 and "Y0:Y1,X0:X1" in res.output
    res = run("decode", tcs, "-o", tmp_path / "bad.tif", "--decoder", "nope")
    assert res.exit_code == 1 and "unknown decoder 'nope'" in res.output
    assert not (tmp_path / "bad.tif").exists()


def test_demo_small(tmp_path):
    res = run("demo", "--size", 64, "--frames", 8, "-B", 4, "--out", tmp_path, "--decoder", "gap-tv")
    assert res.exit_code == 0, res.output
    assert "report: ratio" in res.output and "PSNR vs clean: gap-tv" in res.output
    assert {p.name for p in tmp_path.iterdir()} >= {"sample.tif", "sample.tcs", "decoded.tif"}


def test_encode_many_inputs_in_parallel_names_the_one_that_fails(movie_tif, tmp_path):
    src, frames = movie_tif
    inputs = []
    for k in range(3):
        p = tmp_path / f"m{k}.npy"
        np.save(p, frames[: 6 + 2 * k])
        inputs.append(p)
    bad = tmp_path / "flat.npy"
    np.save(bad, frames[0])  # a single 2-D image is not a movie
    res = run("encode", *inputs, bad, "-B", 5, "--jobs", 2, "-q")
    assert res.exit_code == 1
    assert "flat.npy" in res.output and "T x H x W" in res.output
    assert not (tmp_path / "flat.tcs").exists()
    for k, p in enumerate(inputs):
        with tcscodec.open(p.with_suffix(".tcs")) as r:
            assert r.shape == (6 + 2 * k, *frames.shape[1:])
    res = run("encode", *inputs, "-o", tmp_path / "x.tcs")
    assert res.exit_code == 2 and "-o names one output" in res.output


def test_encode_threads_give_the_same_file(movie_tif, tmp_path):
    """--threads spreads the work over cores; the bytes do not depend on it."""
    src, _ = movie_tif
    for threads in (1, 3):
        res = run("encode", src, "-o", tmp_path / f"t{threads}.tcs", "-B", 4, "--seed", 9, "--tile", 16,
                  "--threads", threads, "-q")
        assert res.exit_code == 0, res.output
    assert (tmp_path / "t1.tcs").read_bytes() == (tmp_path / "t3.tcs").read_bytes()
    assert CliRunner().invoke(main, ["encode", str(src), "--threads", "0"]).exit_code == 2
