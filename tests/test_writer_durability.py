"""Issue 17, the writer: a killed writer loses at most the group in flight,
Ctrl-C leaves a recoverable .partial, every other failure leaves none, and
a rejected write() changes nothing."""

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest

import tcscodec
from tcscodec import TcsRecoveryWarning
from tcscodec.encoder import encode_group
from tcscodec.format.header import MAX_JSON_SIZE


def partials(folder):
    return sorted(folder.glob("*.partial"))


def read_partial(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TcsRecoveryWarning)
        return tcscodec.open(path)


def test_writer_refuses_metadata_a_reader_would_refuse(tmp_path):
    frames = np.zeros((2, 4, 4), np.uint8)
    nested = 1
    for _ in range(64):
        nested = [nested]
    cases = {
        "key 1 of type int; keys must be strings": {1: "a"},
        r"metadata\['x'\] has a key \(1, 2\) of type tuple": {"x": {(1, 2): 3}},
        "key 2 of type int": {"a": 1, 2: "mixed keys cannot be sorted"},
        "not JSON-serialisable": {"x": object()},
        "nested 65 deep": {"x": nested},
        "a number of 401 characters": {"n": 10**400},
        f"more than {MAX_JSON_SIZE:,}": {"s": "x" * MAX_JSON_SIZE},
        "metadata must be a dict, not list": [("a", 1)],
    }
    for message, meta in cases.items():
        with pytest.raises(tcscodec.TcsValueError, match=message):
            tcscodec.write(tmp_path / "m.tcs", frames, B=2, metadata=meta)
        assert list(tmp_path.iterdir()) == []  # nothing created, not even a .partial


def test_a_nan_frame_mid_stack_changes_nothing(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.normal(100, 10, (9, 12, 10)).astype(np.float32)
    bad = frames[3:6].copy()
    bad[2, 4, 4] = np.nan
    with tcscodec.open(tmp_path / "f.tcs", "w", B=3, seed=4, tile=8) as w:
        w.write(frames[:3])
        with pytest.raises(tcscodec.TcsValueError, match="frame 5 contains NaN or infinite values"):
            w.write(bad)
        assert w.frames_written == 3  # frames 3 and 4 were not encoded either
        with pytest.raises(tcscodec.TcsValueError, match=r"frame 3 has shape \(12, 11\), expected \(12, 10\)"):
            w.write(np.zeros((2, 12, 11), np.float32))
        assert w.frames_written == 3
        w.write(frames[3:])
    with tcscodec.open(tmp_path / "f.tcs") as r:
        assert r.shape == (9, 12, 10)
        for g in range(3):
            assert np.array_equal(r.measurements(g), encode_group(frames[3 * g:3 * g + 3], 4, 3))


def test_a_nan_frame_in_the_first_stack_creates_no_file(tmp_path):
    frames = np.ones((4, 8, 8), np.float32)
    frames[3, 0, 0] = np.inf
    with pytest.raises(tcscodec.TcsValueError, match="frame 3 contains NaN"):
        tcscodec.write(tmp_path / "f.tcs", frames, B=2)
    assert list(tmp_path.iterdir()) == []


_FSIZE_SCRIPT = textwrap.dedent("""
    import os, resource, signal, sys
    import numpy as np, tcscodec
    limit, folder = int(sys.argv[1]), sys.argv[2]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    frames = np.random.default_rng(1).integers(0, 4000, (24, 64, 64), dtype=np.uint16)
    try:
        tcscodec.write(os.path.join(folder, "m.tcs"), frames, B=4, tile=32, seed=1)
    except OSError as exc:
        print("OSError", exc.errno)
    else:
        print("written")
""")


@pytest.mark.parametrize("limit", [40, 3000, 30000])
def test_a_full_disk_leaves_no_partial(tmp_path, limit):
    """A write that fails for lack of space (here RLIMIT_FSIZE: EFBIG, as
    ENOSPC) in the header, among the records or in the index leaves nothing."""
    out = subprocess.run([sys.executable, "-c", _FSIZE_SCRIPT, str(limit), str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "OSError 27", out.stdout + out.stderr
    assert list(tmp_path.iterdir()) == []


def test_keyboard_interrupt_keeps_a_recoverable_partial(tmp_path):
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 255, (22, 20, 30), dtype=np.uint8)

    def stream():
        yield from frames[:21]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tcscodec.write(tmp_path / "m.tcs", stream(), B=4, seed=9, tile=16)
    assert not (tmp_path / "m.tcs").exists()
    (partial,) = partials(tmp_path)
    with read_partial(partial) as r:
        assert r.n_groups == 5  # every complete group: the interrupted writer waits for the last
        for g in range(5):
            assert np.array_equal(r.measurements(g), encode_group(frames[4 * g:4 * g + 4], 9, 4))


def test_interrupted_writer_reports_its_partial(tmp_path):
    w = tcscodec.open(tmp_path / "m.tcs", "w", B=2, quant_step="auto", seed=1)
    w.write(np.full((1, 8, 8), 7, np.uint16))
    assert w.interrupt() is None  # the auto step is not known yet: no file
    assert list(tmp_path.iterdir()) == []
    w = tcscodec.open(tmp_path / "m.tcs", "w", B=2, seed=1)
    w.write(np.full((3, 8, 8), 7, np.uint16))
    path = w.interrupt()
    assert path == w.partial_path and partials(tmp_path) == [path]


def test_first_group_reaches_the_file_once_the_auto_step_is_known(tmp_path):
    """With quant_step="auto" the file is created when the first group is
    complete, and that group is written at once, without waiting for more."""
    frames = np.random.default_rng(2).poisson(50, (5, 64, 64)).astype(np.uint16)
    w = tcscodec.open(tmp_path / "m.tcs", "w", B=4, quant_step="auto", seed=3, tile=32)
    w.write(frames[:4])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = partials(tmp_path)
        if found:
            with read_partial(found[0]) as r:
                if r.n_groups == 1:
                    break
        time.sleep(0.01)
    else:
        pytest.fail("group 0 did not reach the file")
    w.write(frames[4])
    w.close()
    with tcscodec.open(tmp_path / "m.tcs") as r:
        assert r.n_frames == 5 and r.header.quant_step > 1


_KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np, tcscodec
    path, seed, B = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    frames = np.random.default_rng(seed).poisson(200, (400, 96, 80)).astype(np.uint16)
    w = tcscodec.open(path, "w", B=B, seed=seed, tile=32, quant_step=sys.argv[4] if sys.argv[4] == "auto" else 1)
    print("ready", flush=True)
    for i, f in enumerate(frames):
        w.write(f)
        print(i + 1, flush=True)  # frames whose write() has returned
        time.sleep(0.002)
    w.close()
""")


def kill_writer_at_random(folder, seed, B, quant, when):
    """Start a writer, SIGKILL it ``when`` seconds after it began writing;
    returns (frames whose write() returned, .partial files)."""
    path = folder / "live.tcs"
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(path), str(seed), str(B), quant],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(when)
    proc.send_signal(signal.SIGKILL)
    lines = proc.stdout.read().split()
    proc.wait()
    done = int(lines[-1]) if lines else 0
    return done, partials(folder)


@pytest.mark.parametrize("k", range(int(os.environ.get("TCS_KILLS", "6"))))
def test_killed_writer_loses_at_most_the_group_in_flight(tmp_path, k):
    """SIGKILL at a random point: the .partial file holds every group whose
    frames were all written but at most the last (still compressing), and
    `tcscodec recover` turns it into a file with exactly those groups."""
    rng = np.random.default_rng(1000 + k)
    B, quant = int(rng.choice([2, 3, 5])), ("auto" if k % 3 == 2 else "1")
    seed = int(rng.integers(2**31))
    done, found = kill_writer_at_random(tmp_path, seed, B, quant, float(rng.uniform(0.0, 0.6)))
    complete = done // B
    assert not (tmp_path / "live.tcs").exists()
    if not found:
        assert quant == "auto" and complete <= 1  # the step (so the file) comes with group 0
        return
    (partial,) = found
    assert partial.stat().st_size > 0
    with read_partial(partial) as r:
        got = r.n_groups
        assert got >= complete - 1, f"{got} groups on disk, {complete} were complete"
        frames = np.random.default_rng(seed).poisson(200, (400, 96, 80)).astype(np.uint16)
        step = r.header.quant_step
        for g in range(got):
            y = encode_group(frames[g * B:(g + 1) * B], seed, B)
            expected = y if step == 1 else np.floor(y / step + 0.5) * step
            assert np.array_equal(r.measurements(g), expected)
    from click.testing import CliRunner

    from tcscodec.cli.main import main

    res = CliRunner().invoke(main, ["recover", str(partial), "-o", str(tmp_path / "fixed.tcs")])
    assert res.exit_code == 0, res.output
    with tcscodec.open(tmp_path / "fixed.tcs") as r:
        assert r.complete and r.n_groups == got


def test_writer_killed_in_its_first_frames_leaves_a_readable_partial(tmp_path):
    """The header is on disk as soon as the .partial exists (it was a 0-byte
    file): a writer killed before its first group is complete leaves a file
    that opens with no frames, and verify says it needed recovery."""
    script = textwrap.dedent(f"""
        import os, numpy as np, tcscodec
        w = tcscodec.open({str(tmp_path / 'live.tcs')!r}, "w", B=4, seed=2, tile=16, metadata={{"a": 1}})
        w.write(np.ones((2, 30, 40), np.uint8))
        os._exit(9)
    """)
    subprocess.run([sys.executable, "-c", script], check=False, timeout=120)
    (partial,) = partials(tmp_path)
    with pytest.warns(TcsRecoveryWarning, match=r"not finished by its writer: recovered 0 complete group"):
        r = tcscodec.open(partial)
    with r:
        assert r.n_frames == 0 and r.metadata()["user"] == {"a": 1}
    from click.testing import CliRunner

    from tcscodec.cli.main import main

    res = CliRunner().invoke(main, ["verify", str(partial)])
    assert res.exit_code == 1 and "0 complete group(s), 0 frame(s)" in res.output


def test_an_error_after_a_group_is_complete_ends_the_writer(tmp_path):
    """A measurement that does not fit the step cannot be written once its
    frames are consumed: the writer is discarded, not left with a hole."""
    w = tcscodec.open(tmp_path / "m.tcs", "w", B=2, quant_step=1e-30)
    w.write(np.full((8, 8), 1e20, np.float32))
    with pytest.raises(tcscodec.TcsValueError, match="does not fit the stored dtype"):
        w.write(np.full((8, 8), 1e20, np.float32))
    assert w.closed and list(tmp_path.iterdir()) == []
    with pytest.raises(tcscodec.TcsValueError, match="writer is closed"):
        w.write(np.zeros((8, 8), np.float32))
