"""Groups of variable length (format 2.0): exact round trips, the group
table, rescans, the reader's frame -> group mapping, the writer's options."""

from __future__ import annotations

import struct
import warnings
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tcscodec
from tcscodec import TcsFormatError, TcsRecoveryWarning, TcsValueError
from tcscodec.format import ContainerReader
from tcscodec.format.groups import GroupLayout, fixed_B
from tcscodec.format.records import FOOTER_SIZE, unpack_footer

from .test_container import independent_measurement, movie


def starts_of(lengths):
    return np.cumsum([0, *lengths])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lengths=st.lists(st.integers(1, 12), min_size=1, max_size=6),
    H=st.integers(1, 30),
    W=st.integers(1, 90),
    dtype=st.sampled_from(["uint8", "uint16", "uint32", "float32"]),
    tile=st.tuples(st.integers(1, 20), st.integers(1, 64)),
    codec=st.sampled_from(["zstd", "shuffle-zstd", "predict-rice"]),
    seed=st.integers(0, 2**64 - 1),
)
def test_round_trip_exact_measurements(tmp_path, lengths, H, W, dtype, tile, codec, seed):
    B = max(2, max(lengths))
    T = sum(lengths)
    frames = movie(np.random.default_rng(seed % 2**32), dtype, (T, H, W))
    path = tmp_path / "v.tcs"
    tcscodec.write(path, frames, B=B, seed=seed, tile=tile, codec=codec, group_lengths=lengths)
    s = starts_of(lengths)
    with tcscodec.open(path) as r:
        assert r.shape == (T, H, W)
        # a list that fits groups of one length is written as version 1 (the oldest that holds it)
        fits = fixed_B(lengths, B)
        assert r.variable_groups == (fits is None) and r.header.version[0] == (1 if fits else 2)
        assert r.group_lengths().tolist() == lengths and r.n_groups == len(lengths)
        for g, n in enumerate(lengths):
            assert r.group_frames(g) == n and r.group_start(g) == s[g]
            y = r.measurements(g)
            expected = independent_measurement(frames[s[g]:s[g + 1]], seed, n)  # the first n masks
            if dtype == "float32":
                assert y.dtype == np.float64 and np.array_equal(y, expected)
            else:
                assert np.array_equal(y.astype(object), expected)
            assert np.array_equal(r.masks(g), tcscodec.masks.masks(seed, n, H, W))
        assert r.locate(T - 1) == (len(lengths) - 1, lengths[-1] - 1) and r.locate(-T) == (0, 0)


def test_end_group_streams_the_same_file(tmp_path):
    frames = movie(np.random.default_rng(1), "uint16", (20, 33, 41))
    lengths = [4, 1, 7, 2, 6]
    tcscodec.write(tmp_path / "a.tcs", frames, B=7, seed=5, tile=16, group_lengths=lengths)
    with tcscodec.open(tmp_path / "b.tcs", "w", B=7, seed=5, tile=16, group_lengths=()) as w:
        t = 0
        for n in lengths:
            for _ in range(n):
                w.write(frames[t])
                t += 1
            w.end_group()
            w.end_group()  # an empty group is no group
    assert (tmp_path / "a.tcs").read_bytes() == (tmp_path / "b.tcs").read_bytes()
    with tcscodec.open(tmp_path / "a.tcs") as r:
        assert r.header.version == (2, 0) and r.B == 7 and r.group_lengths().tolist() == lengths
        assert "B<=7" in repr(r) and r.metadata()["variable_groups"]


def test_lengths_that_fit_version_1_make_the_version_1_file(tmp_path):
    frames = movie(np.random.default_rng(2), "uint8", (17, 20, 70))
    tcscodec.write(tmp_path / "v.tcs", frames, B=16, seed=9, tile=32, group_lengths=[5, 5, 5, 2])
    tcscodec.write(tmp_path / "f.tcs", frames, B=5, seed=9, tile=32)
    assert (tmp_path / "v.tcs").read_bytes() == (tmp_path / "f.tcs").read_bytes()
    assert fixed_B([5, 5, 5, 2], 16) == 5 and fixed_B([5, 5, 6], 16) is None and fixed_B([1, 1], 16) is None
    assert fixed_B([3], 16) == 16 and fixed_B([], 8) == 8


def test_group_layout():
    v = GroupLayout.variable([4, 2, 3], B=4)
    assert (v.n_frames, v.n_groups, v.start(3)) == (9, 3, 9)
    assert [v.locate(t) for t in range(9)] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2)]
    assert v.histogram() == {2: 1, 3: 1, 4: 1}
    f = GroupLayout.fixed(4, 10)
    assert f.lengths().tolist() == [4, 4, 2] and f.locate(9) == (2, 1) and f.histogram() == {2: 1, 4: 2}
    with pytest.raises(TcsFormatError, match="group 1 holds 5 frames"):
        GroupLayout.variable([4, 5], B=4)


@pytest.fixture
def variable_file(tmp_path):
    frames = movie(np.random.default_rng(3), "uint16", (19, 24, 30))
    path = tmp_path / "v.tcs"
    lengths = [6, 2, 1, 6, 4]
    tcscodec.write(path, frames, B=6, seed=4, tile=(12, 16), group_lengths=lengths)
    return path, frames, lengths


def _rewrite_index(path, mutate):
    """Change the group table of a finished version 2 file and fix the index CRC."""
    data = bytearray(path.read_bytes())
    index_offset, _ = unpack_footer(bytes(data[-FOOTER_SIZE:]))
    end = len(data) - FOOTER_SIZE - 4
    count = struct.unpack_from("<Q", data, index_offset + 4)[0]
    table = index_offset + 12 + 16 * count + 8
    mutate(data, table)
    struct.pack_into("<I", data, end, zlib.crc32(bytes(data[index_offset:end])))
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("change, message", [
    (lambda d, at: d.__setitem__(at + 1, 0), "group 1 holds 0 frames"),
    (lambda d, at: d.__setitem__(at + 1, 7), "group 1 holds 7 frames"),
    (lambda d, at: d.__setitem__(at + 1, 3), "group table holds 20 frames, the footer says 19"),
    (lambda d, at: d.__setitem__(at - 8, 4), "group table of 4 groups does not fill the index"),
    (lambda d, at: d.__setitem__(at - 1, 1), "group table of .* groups runs past the index"),
])
def test_crafted_group_table_is_refused(variable_file, change, message):
    path, _, _ = variable_file
    _rewrite_index(path, change)
    with pytest.raises(TcsFormatError, match=message):
        tcscodec.open(path)


def test_killed_writer_keeps_the_complete_variable_groups(variable_file):
    path, _, lengths = variable_file
    data = path.read_bytes()
    with tcscodec.open(path) as r:
        header = r.header.with_frames(0).to_bytes()
        ends = sorted(e.offset for e in r._container.records.values())
        expected = [r.measurements(g) for g in range(r.n_groups)]
        tiles = int(np.prod(r.header.grid))
    s = starts_of(lengths)
    # cut after every record: the groups whose records are all there survive
    for i in range(0, len(ends), 3):
        cut = ends[i] + 10
        partial = path.with_name("k.tcs.partial")
        partial.write_bytes(header + data[len(header):cut])
        with pytest.warns(TcsRecoveryWarning):
            r = tcscodec.open(partial)
        with r:
            kept = i // tiles
            assert r.group_lengths().tolist() == lengths[:kept] and r.n_frames == s[kept]
            for g in range(kept):
                assert np.array_equal(r.measurements(g), expected[g])


def test_rescan_of_a_damaged_variable_group(variable_file):
    path, _, lengths = variable_file
    with tcscodec.open(path) as r:
        index_offset = r._container._records_end
        rec = r._container.records[(2, 0, 1)]  # a record of group 2 (1 frame)
    data = bytearray(path.read_bytes()[:index_offset])  # the index is lost
    data[rec.offset:rec.offset + 4] = b"XXXX"  # and one record header of group 2
    path.write_bytes(bytes(data))
    with pytest.warns(TcsRecoveryWarning, match="damaged group"):
        r = tcscodec.open(path)
    with r:
        # group 2's other records say its length: the groups after it keep their frames
        assert r.group_lengths().tolist() == lengths and 2 in r._container.damaged_groups
        with pytest.raises(TcsFormatError, match="group 2 is damaged"):
            r.measurements(2)
        assert r.measurements(3).shape == (24, 30)


def test_recover_and_verify_a_variable_file(variable_file, tmp_path):
    from click.testing import CliRunner

    from tcscodec.cli.main import main

    path, _, lengths = variable_file
    runner = CliRunner()
    out = runner.invoke(main, ["verify", str(path)])
    assert out.exit_code == 0 and "5 groups" in out.output and "19 frames" in out.output
    with tcscodec.open(path) as r:
        header = r.header.with_frames(0).to_bytes()
        index_offset = r._container._records_end
        expected = [r.measurements(g) for g in range(r.n_groups)]
    partial = tmp_path / "p.tcs.partial"
    partial.write_bytes(header + path.read_bytes()[len(header):index_offset])
    out = runner.invoke(main, ["recover", str(partial), "-o", str(tmp_path / "r.tcs")])
    assert out.exit_code == 0, out.output
    with tcscodec.open(tmp_path / "r.tcs") as r:
        assert r.complete and r.group_lengths().tolist() == lengths
        assert all(np.array_equal(r.measurements(g), expected[g]) for g in range(len(lengths)))
    out = runner.invoke(main, ["info", str(path)])
    assert out.exit_code == 0
    assert "B<=6 (variable groups)" in out.output and "6 frames x 2, " in out.output
    assert "(mean 3.8 frames)" in out.output
    out = runner.invoke(main, ["info", "--json", str(tmp_path / "r.tcs")])
    import json

    assert json.loads(out.output)["group_lengths"] == {"1": 1, "2": 1, "4": 1, "6": 2}


def test_container_writer_refuses_records_that_are_no_groups(tmp_path):
    from tcscodec.format import ContainerWriter, TcsHeader

    h = TcsHeader(height=4, width=4, B=4, dtype="uint8", stored_dtype="uint16", mask_seed=1, tile=(4, 4),
                  codec="zstd", variable_groups=True)
    w = ContainerWriter(tmp_path / "x.tcs", h)
    w.write_record(0, 0, 0, 3, b"")
    w.write_record(2, 0, 0, 3, b"")
    with pytest.raises(TcsValueError, match="records of group 1"):
        w.finish(6)
    w.abort()
    assert not list(tmp_path.iterdir())
    with pytest.raises(TcsFormatError, match="groups of variable length are version 2"):
        TcsHeader(height=4, width=4, B=4, dtype="uint8", stored_dtype="uint16", mask_seed=1,
                  variable_groups=True, version=(1, 1))
    with pytest.raises(TcsValueError, match="listed in its index"):
        _ = h.n_groups


@pytest.mark.parametrize("kwargs, message", [
    (dict(B=8, group_lengths=[3, 9]), "group lengths must be in 1..B=8, got 9"),
    (dict(B=8, group_lengths=[3, 0]), "got 0"),
    (dict(B=8, group_lengths="34"), "sequence of ints"),
    (dict(B=8, group_lengths=[2.5]), "integers"),
    (dict(B="auto", group_lengths=[3]), "integer B"),
    (dict(B=8, min_B=3), "min_B go with B='auto'"),
    (dict(B="auto", min_B=9, max_B=8), "min_B must be an integer in 1..max_B=8"),
    (dict(B="auto", max_B=65), "B must be in 2..64"),
    (dict(B="auto", auto_tolerance=0), "tolerance must be a finite number > 0"),
    (dict(B="fixed"), "integer in 2..64 or 'auto'"),
    (dict(B="auto", device="cuda"), "B='auto' and group_lengths need device='cpu'"),
    (dict(B=8, group_lengths=[3], device="cuda"), "need device='cpu'"),
])
def test_writer_refuses_bad_group_options(tmp_path, kwargs, message):
    with pytest.raises(TcsValueError, match=message):
        tcscodec.write(tmp_path / "x.tcs", np.zeros((4, 8, 8), np.uint8), **kwargs)
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_end_group_needs_variable_groups(tmp_path):
    with tcscodec.open(tmp_path / "x.tcs", "w", B=4) as w:
        w.write(np.zeros((8, 8), np.uint8))
        with pytest.raises(TcsValueError, match="end_group needs a writer with variable groups"):
            w.end_group()


def test_a_bad_frame_leaves_the_groups_unchanged(tmp_path):
    frames = movie(np.random.default_rng(5), "uint8", (9, 16, 16))
    with tcscodec.open(tmp_path / "x.tcs", "w", B="auto", seed=1, min_B=2) as w:
        w.write(frames[:4])
        with pytest.raises(TcsValueError, match="frame 4 has shape"):
            w.write(np.zeros((16, 15), np.uint8))
        w.write(frames[4:])
    with tcscodec.open(tmp_path / "x.tcs") as r:
        assert r.n_frames == 9
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ContainerReader(tmp_path / "x.tcs").close()


def test_reading_a_variable_file_is_unchanged_for_the_user(tmp_path):
    """read, iter, r[t], regions, to_dask, iter_groups and motion give each
    frame from its own group's decoding."""
    pytest.importorskip("torch")
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(6)
    frames = rng.poisson(rng.uniform(5, 200, (1, 24, 40)), (12, 24, 40)).astype(np.uint16)
    lengths = [5, 2, 5]
    path = tmp_path / "v.tcs"
    tcscodec.write(path, frames, B=5, seed=3, tile=(16, 32), group_lengths=lengths)
    fast = dict(decoder="gap-tv", iterations=3)
    with tcscodec.open(path, **fast, dtype=np.float32) as r:
        assert r.header.version == (2, 0)
        groups = [r.decode_group(g) for g in range(3)]
        assert [len(f) for f in groups] == lengths
        whole = np.concatenate(groups)
        assert np.array_equal(r.read(), whole)
        assert np.array_equal(np.stack(list(r.iter())), whole)
        for t in (0, 4, 5, 6, 7, 11, -1):
            assert np.array_equal(r[t], whole[t]) and np.array_equal(r.read(t), whole[t])
        assert np.array_equal(r[2:9, 3:20, 5:30], whole[2:9, 3:20, 5:30])
        assert np.array_equal(r.read(slice(4, 8), region=(0, 16, 0, 32)),
                              np.concatenate([r.decode_group(g, region=(0, 16, 0, 32)) for g in range(3)])[4:8])
        with ThreadPoolExecutor(2) as pool:
            got = dict(r.iter_groups(executor=pool))
        assert all(np.array_equal(got[g], groups[g]) for g in range(3))
        assert r.motion().group_starts == (0, 5, 7)
        pytest.importorskip("dask")
        x = r.to_dask()
        assert x.chunks[0] == tuple(lengths)
        assert np.array_equal(x.compute(scheduler="synchronous"), whole)
