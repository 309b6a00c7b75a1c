"""Issue 17, damage tolerance and the command line: a file with a damaged
record keeps every other group (decode --skip-damaged, recover), verify
fails for anything that needed recovery, user strings are printed safely,
OSErrors and Ctrl-C give one line."""

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

import tcscodec
from tcscodec import TcsRecoveryWarning
from tcscodec.cli.main import main
from tcscodec.encoder import encode_group
from tcscodec.format import TcsDamageWarning

B, SEED = 3, 21


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def damaged(tmp_path):
    """A 5-group file, and a copy with one byte of group 2's tile (0, 1) flipped."""
    frames = np.random.default_rng(3).poisson(40, (14, 24, 30)).astype(np.uint16)
    good = tmp_path / "good.tcs"
    tcscodec.write(good, frames, B=B, seed=SEED, tile=16)
    with tcscodec.open(good) as r:
        rec = r._container.records[(2, 0, 1)]
        size = r._container._read(rec.offset + 16, 4)
    data = bytearray(good.read_bytes())
    data[rec.offset + 24 + int.from_bytes(size, "little") // 2] ^= 0x10
    bad = tmp_path / "bad.tcs"
    bad.write_bytes(bytes(data))
    return good, bad, frames


def test_reader_skips_and_names_damaged_groups(damaged):
    good, bad, frames = damaged
    with tcscodec.open(good, decoder="gap-tv", dtype="float32", iterations=5) as r:
        expected = r.read()
    with tcscodec.open(bad, decoder="gap-tv", dtype="float32", iterations=5) as r:
        with pytest.raises(tcscodec.TcsChecksumError, match=r"group 2 tile \(0, 1\): record checksum mismatch"):
            r.read(7)
        # the motion estimate (on by default) reads every group, but leaves
        # the damaged one out: the other groups still decode
        assert r.motion().confidence[1:3] == (0.0, 0.0)
        assert np.array_equal(r.read(0), expected[0])
    with tcscodec.open(bad, decoder="gap-tv", dtype="float32", iterations=5, skip_damaged=True) as r:
        with pytest.warns(TcsDamageWarning, match=r"group 2 is damaged, its frames are NaN: .*group 2 tile \(0, 1\)"):
            got = r.read()
        assert list(r.damaged) == [2]
    assert np.isnan(got[6:9]).all()
    keep = np.r_[0:6, 9:14]
    assert np.array_equal(got[keep], expected[keep])


def test_verify_names_damage_and_fails(damaged):
    good, bad, _ = damaged
    res = run("verify", good)
    assert res.exit_code == 0 and "OK, 5 groups x 4 tiles, 14 frames" in res.output
    res = run("verify", bad)
    assert res.exit_code == 1
    assert "group 2 tile (0, 1): record checksum mismatch" in res.output
    assert "FAILED: 1 damaged group(s) (2)" in res.stderr


def test_verify_fails_for_files_that_needed_recovery(damaged, tmp_path):
    good, _, _ = damaged
    with tcscodec.open(good) as r:
        last = max(e.offset for e in r._container.records.values())
    cut = tmp_path / "cut.tcs"
    cut.write_bytes(good.read_bytes()[:last + 10])  # inside group 4's last record
    res = run("verify", cut)
    assert res.exit_code == 1
    assert "no valid index (no valid footer): the records were rescanned, 4 complete group(s), 12 frame(s)" \
        in res.output
    assert "truncated: the header says 14 frames, 12 are left" in res.output
    assert "FAILED: no damaged record, needed recovery, truncated" in res.stderr
    partial = tmp_path / "k.tcs.x.partial"
    data = good.read_bytes()
    with tcscodec.open(good) as r:
        head = r.header.with_frames(0).to_bytes()
    partial.write_bytes(head + data[len(head):last])
    res = run("verify", partial)
    assert res.exit_code == 1 and "needed recovery" in res.stderr and "truncated" not in res.stderr


def test_decode_skip_damaged_writes_every_intact_group(damaged, tmp_path):
    good, bad, _ = damaged
    opts = ("--decoder", "gap-tv", "--threads", "1", "-q", "--dtype", "float32")
    assert run("decode", good, "-o", tmp_path / "good.npy", *opts).exit_code == 0
    res = run("decode", bad, "-o", tmp_path / "fail.npy", *opts)
    assert res.exit_code == 1 and "--skip-damaged decodes the others" in res.stderr
    assert "group 2 tile (0, 1): record checksum mismatch" in res.stderr
    assert not (tmp_path / "fail.npy").exists()
    res = run("decode", bad, "-o", tmp_path / "skip.npy", "--skip-damaged", *opts)
    assert res.exit_code == 0, res.output
    assert "warning: damaged group(s) 2 written as NaN (frames 6-8)" in res.stderr
    expected, got = np.load(tmp_path / "good.npy"), np.load(tmp_path / "skip.npy")
    assert np.isnan(got[6:9]).all()
    keep = np.r_[0:6, 9:14]
    assert np.array_equal(got[keep], expected[keep])
    res = run("decode", bad, "-o", tmp_path / "skip_int.npy", "--skip-damaged", "--decoder", "gap-tv", "-q")
    assert res.exit_code == 0 and "written as 0 (frames 6-8)" in res.stderr
    assert (np.load(tmp_path / "skip_int.npy")[6:9] == 0).all()


def test_recover_keeps_every_intact_group_and_the_damage(damaged, tmp_path):
    good, bad, frames = damaged
    out = tmp_path / "fixed.tcs"
    res = run("recover", bad, "-o", out)
    assert res.exit_code == 0, res.output
    assert "damaged group(s) 2 copied as they are" in res.stderr
    assert "14 frames in 5 complete groups, 1 of them damaged" in res.output
    with tcscodec.open(out) as r:
        assert r.complete and r.n_frames == 14
        for g in (0, 1, 3, 4):
            assert np.array_equal(r.measurements(g), encode_group(frames[g * B:g * B + B], SEED, B))
        with pytest.raises(tcscodec.TcsChecksumError, match=r"group 2 tile \(0, 1\)"):
            r.measurements(2)
    res = run("recover", bad, "-o", tmp_path / "strict.tcs", "--no-skip-damaged")
    assert res.exit_code == 1 and "--skip-damaged copies the damaged records" in res.stderr
    assert not (tmp_path / "strict.tcs").exists()
    assert sorted(p.name for p in tmp_path.glob("*.partial")) == []


def test_recover_of_a_rescanned_file_with_a_lost_record(damaged, tmp_path):
    """No index, and group 1's record (1, 1) header destroyed: the rescan
    skips it, recover writes an empty record that fails its checksum in its
    place, and groups 0 and 2..4 stay intact."""
    good, _, frames = damaged
    with tcscodec.open(good) as r:
        rec = r._container.records[(1, 1, 1)]
        index_at = max(e.offset for e in r._container.records.values()) + 200
    data = bytearray(good.read_bytes())
    data[rec.offset:rec.offset + 4] = b"JUNK"
    cut = tmp_path / "cut.tcs"
    cut.write_bytes(bytes(data[:index_at]))
    out = tmp_path / "fixed.tcs"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TcsRecoveryWarning)
        res = run("recover", cut, "-o", out)
    assert res.exit_code == 0, res.output
    assert "damaged group(s) 1, 1 damaged record header(s) skipped" in res.stderr
    with tcscodec.open(out) as r:
        assert r.complete and r.n_groups == 5
        for g in (0, 2, 3):
            assert np.array_equal(r.measurements(g), encode_group(frames[g * B:g * B + B], SEED, B))
        with pytest.raises(tcscodec.TcsChecksumError, match=r"group 1 tile \(1, 1\): record checksum"):
            r.measurements(1)


def test_info_escapes_control_characters(tmp_path):
    path = tmp_path / "m.tcs"
    meta = {"note": "\x1b[2Jcleared", "bidi\u202e": "x\x07y", "nested": {"k": "\x1b]0;title\x07"}}
    tcscodec.write(path, np.zeros((2, 4, 4), np.uint8), B=2, metadata=meta)
    res = run("info", path)
    assert res.exit_code == 0
    assert "\x1b" not in res.output and "\x07" not in res.output and "\u202e" not in res.output
    assert "metadata    note = \\x1b[2Jcleared" in res.output
    assert "metadata    bidi\\u202e = x\\x07y" in res.output


def _unwritable_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        (ro / "probe").write_bytes(b"")
    except PermissionError:
        return ro
    (ro / "probe").unlink()  # root writes anywhere: sysfs refuses even root
    return "/sys"


def test_oserrors_are_one_line(tmp_path, damaged):
    good, _, _ = damaged
    folder = _unwritable_folder(tmp_path)
    res = run("recover", good, "-o", f"{folder}/out.tcs")
    assert res.exit_code == 1
    assert res.stderr.strip().endswith("Permission denied") and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = run("decode", good, "-o", f"{folder}/out.npy", "--decoder", "gap-tv", "-q")
    assert res.exit_code == 1 and "Permission denied" in res.stderr and "Traceback" not in res.stderr


def test_full_disk_is_one_line(tmp_path):
    """`tcscodec encode` on a disk that fills up (RLIMIT_FSIZE: EFBIG) gives
    one line and leaves no .partial."""
    np.save(tmp_path / "m.npy", np.random.default_rng(0).integers(0, 999, (12, 64, 64), dtype=np.uint16))
    script = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000))
        from tcscodec.cli.main import main
        sys.argv = ["tcscodec", "encode", {str(tmp_path / 'm.npy')!r}, "-o", {str(tmp_path / 'o.tcs')!r},
                    "-q", "--quantize", "1"]
        main()
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    assert out.stderr.strip().splitlines() == [f"Error: {tmp_path / 'o.tcs'}: File too large"] or \
        out.stderr.strip().endswith("File too large"), out.stderr
    assert "Traceback" not in out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npy"]


def test_ctrl_c_in_encode_prints_the_recover_command(tmp_path, monkeypatch):
    frames = np.random.default_rng(1).integers(0, 999, (20, 16, 16), dtype=np.uint16)
    np.save(tmp_path / "m.npy", frames)
    import tcscodec.movies as movies

    real = movies.open_movie

    class Interrupting:
        """The movie, interrupted by Ctrl-C after 11 frames."""

        def __init__(self, movie):
            self.movie = movie

        def __getattr__(self, name):
            return getattr(self.movie, name)

        def __len__(self):
            return len(self.movie)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.movie.__exit__(*exc)

        def __iter__(self):
            for i, f in enumerate(self.movie):
                if i == 11:
                    raise KeyboardInterrupt
                yield f

    monkeypatch.setattr(movies, "open_movie", lambda *a, **k: Interrupting(real(*a, **k).__enter__()))
    out = tmp_path / "o.tcs"
    res = run("encode", tmp_path / "m.npy", "-o", out, "-B", 2, "--quantize", 1, "-q", "--seed", 4)
    assert res.exit_code == 130
    (partial,) = tmp_path.glob("o.tcs.*.partial")
    assert f"interrupted after 11 frames; the complete groups are in {partial}" in res.stderr
    assert f"tcscodec recover {partial} -o {out}" in res.stderr
    assert run("recover", partial, "-o", out).exit_code == 0
    with tcscodec.open(out) as r:
        assert r.n_groups == 5
        for g in range(5):
            assert np.array_equal(r.measurements(g), encode_group(frames[2 * g:2 * g + 2], 4, 2))


@pytest.mark.parametrize("text,message", [
    (b"[1, 2]", "metadata is a JSON list, not an object"),
    (b'{"n": ' + b"1" * 5000 + b"}", "metadata holds a number of 5000 characters"),
    (b"[" * 100_000 + b"]" * 100_000, "metadata is nested 100000 deep"),
], ids=["list", "long-number", "deep"])
def test_crafted_metadata_is_one_line_in_every_command(tmp_path, text, message):
    from .test_hardening import fuzz  # bench/fuzz.py: takes files apart and rebuilds them

    path = tmp_path / "m.tcs"
    tcscodec.write(path, np.zeros((4, 8, 8), np.uint8), B=2)
    lay = fuzz.Layout.parse(path.read_bytes())
    lay.json = text
    path.write_bytes(lay.build())  # header CRC and index recomputed
    for args in (["info", path], ["info", path, "--json"], ["verify", path],
                 ["recover", path, "-o", tmp_path / "r.tcs"], ["decode", path, "-o", tmp_path / "d.npy"]):
        res = run(*args)
        assert res.exit_code == 1, args
        assert res.stderr.strip().splitlines() == [f"Error: {path}: {message}"] or \
            (len(res.stderr.strip().splitlines()) == 1 and message in res.stderr), (args, res.stderr)
