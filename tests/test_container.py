"""Round trips of the .tcs container: exact measurements, vectors, damage."""

import json
import os
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tcscodec
from tcscodec import (
    TcsChecksumError,
    TcsFormatError,
    TcsRecoveryWarning,
    TcsTruncatedError,
    TcsVersionError,
)
from tcscodec.format import MAGIC, TcsHeader

from .conftest import SPEC_VECTORS


def independent_measurement(frames, seed, B):
    """Y = sum_b C_b * X_b from the masks the reader reports, in Python ints."""
    from tcscodec.masks import masks

    n, H, W = frames.shape
    C = masks(seed, B, H, W)
    if frames.dtype.kind == "f":
        y = np.zeros((H, W), np.float64)
        for b in range(n):
            y = y + np.where(C[b] == 1, frames[b].astype(np.float64), 0.0)
        return y
    return (C[:n].astype(object) * frames.astype(object)).sum(axis=0)


def movie(rng, dtype, shape):
    if dtype == "float32":
        return (rng.standard_normal(shape) * 300).astype(np.float32)
    info = np.iinfo(dtype)
    return rng.integers(0, info.max, shape, dtype=dtype, endpoint=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    T=st.integers(1, 13),
    H=st.integers(1, 40),
    W=st.integers(1, 140),
    B=st.integers(2, 64),
    dtype=st.sampled_from(["uint8", "uint16", "uint32", "float32"]),
    tile=st.tuples(st.integers(1, 33), st.integers(1, 70)),
    codec=st.sampled_from(["zstd", "shuffle-zstd", "predict-rice"]),
    seed=st.integers(0, 2**64 - 1),
)
def test_round_trip_exact_measurements(tmp_path, T, H, W, B, dtype, tile, codec, seed):
    rng = np.random.default_rng(seed % 2**32)
    frames = movie(rng, dtype, (T, H, W))
    path = tmp_path / "m.tcs"
    tcscodec.write(path, frames, B=B, seed=seed, tile=tile, codec=codec)
    with tcscodec.open(path) as r:
        assert r.shape == (T, H, W) and r.B == B and r.dtype == np.dtype(dtype)
        assert r.n_groups == -(-T // B)
        for g in range(r.n_groups):
            chunk = frames[g * B:(g + 1) * B]
            y = r.measurements(g)
            assert r.group_frames(g) == len(chunk)
            expected = independent_measurement(chunk, seed, B)
            if dtype == "float32":
                assert y.dtype == np.float64 and np.array_equal(y, expected)
            else:
                assert y.dtype == tcscodec.encoder.measurement_dtype(dtype)
                assert np.array_equal(y.astype(object), expected)
        assert np.array_equal(r.masks(), tcscodec.masks.masks(seed, B, H, W))


def test_streaming_writer_equals_one_shot(tmp_path):
    rng = np.random.default_rng(1)
    frames = movie(rng, "uint16", (23, 50, 61))
    tcscodec.write(tmp_path / "a.tcs", frames, B=7, seed=5, tile=16)
    with tcscodec.open(tmp_path / "b.tcs", "w", B=7, seed=5, tile=16) as w:
        for f in frames:
            w.write(f)
    with tcscodec.open(tmp_path / "a.tcs") as a, tcscodec.open(tmp_path / "b.tcs") as b:
        for g in range(a.n_groups):
            assert np.array_equal(a.measurements(g), b.measurements(g))
    assert (tmp_path / "a.tcs").read_bytes() == (tmp_path / "b.tcs").read_bytes()


def test_region_reads_only_needed_records(tmp_path, monkeypatch):
    frames = movie(np.random.default_rng(2), "uint8", (10, 100, 100))
    tcscodec.write(tmp_path / "m.tcs", frames, B=5, seed=1, tile=32)
    with tcscodec.open(tmp_path / "m.tcs") as r:
        full = r.measurements(1)
        seen = []
        orig = r._container.read_tile
        monkeypatch.setattr(r._container, "read_tile", lambda *k: seen.append(k) or orig(*k))
        part = r.measurements(1, region=(40, 60, 70, 90))
        assert np.array_equal(part, full[40:60, 70:90])
        assert seen == [(1, 1, 2)]  # rows 32..63, cols 64..95: one tile
        assert np.array_equal(r.masks(region=(40, 60, 70, 90)), r.masks()[:, 40:60, 70:90])
        assert r.masks(1).shape == (5, 100, 100)


def test_metadata_and_properties(tmp_path):
    meta = {"pixel_size_A": 0.67, "frame_rate_hz": 400, "detector": "K3", "nested": {"a": [1, 2]}}
    tcscodec.write(tmp_path / "m.tcs", np.zeros((12, 8, 9), np.uint16), B=5, seed=3, metadata=meta)
    with tcscodec.open(tmp_path / "m.tcs") as r:
        m = r.metadata()
        assert m["user"] == meta and m["B"] == 5 and m["mask_seed"] == 3 and m["shape"] == (12, 8, 9)
        assert r.properties().shape == (12, 8, 9) and r.properties().is_batch
        assert r.properties(0).shape == (8, 9)
        assert r.group_frames(2) == 2


def test_quantised_round_trip(tmp_path):
    frames = movie(np.random.default_rng(3), "uint16", (8, 20, 20))
    tcscodec.write(tmp_path / "q.tcs", frames, B=8, seed=1, quant_step=16)
    with tcscodec.open(tmp_path / "q.tcs") as r:
        y = tcscodec.encoder.encode_group(frames, 1, 8).astype(np.float64)
        q = r.measurements(0)
        assert q.dtype == np.float64 and np.abs(q - y).max() <= 8
        assert np.array_equal(q, np.floor(y / 16 + 0.5) * 16)


def test_header_bytes_round_trip():
    h = TcsHeader(height=3, width=4, B=2, dtype="float32", stored_dtype="float64", mask_seed=9,
                  tile=(2, 3), n_frames=5, quant_step=0.5, metadata={"x": "ü"})
    import io

    assert TcsHeader.read_from(io.BytesIO(h.to_bytes())) == h
    assert TcsHeader.from_dict(json.loads(json.dumps(h.to_dict()))) == h


# -- spec vectors ---------------------------------------------------------------------------------
VECTORS = json.loads((SPEC_VECTORS / "vectors.json").read_text())


@pytest.mark.parametrize("v", VECTORS["vectors"], ids=lambda v: v["name"])
def test_spec_vectors(v):
    frames = np.load(SPEC_VECTORS / f"{v['name']}.frames.npy")
    expected = np.load(SPEC_VECTORS / f"{v['name']}.measurements.npy")
    B, step = v["B"], v["quant_step"]
    T = v["shape"][0]
    lengths = v.get("group_lengths") or [min(B, T - t) for t in range(0, T, B)]
    starts = np.cumsum([0, *lengths])
    with tcscodec.open(SPEC_VECTORS / f"{v['name']}.tcs") as r:
        assert r.shape == tuple(v["shape"]) and r.B == B and r.header.tile == tuple(v["tile"])
        assert r.header.codec == v["codec"] and r.header.mask_seed == v["mask_seed"]
        assert r.variable_groups == ("group_lengths" in v)
        assert r.header.version[0] == (2 if "group_lengths" in v else 1)
        assert r.group_lengths().tolist() == lengths
        assert [r.group_start(g) for g in range(r.n_groups)] == starts[:-1].tolist()
        assert [r.locate(t) for t in range(T)] == [(g, t - starts[g]) for g in range(len(lengths))
                                                     for t in range(starts[g], starts[g + 1])]
        got = np.stack([r.measurements(g) for g in range(r.n_groups)])
        assert np.array_equal(got, expected)
        assert all(r.masks(g).shape[0] == n for g, n in enumerate(lengths))
    # and the measurements follow from the frames by the spec's formula
    for g in range(len(expected)):
        y = tcscodec.encoder.encode_group(frames[starts[g]:starts[g + 1]], v["mask_seed"], B)
        y = y if step == 1 else np.floor(y / step + 0.5) * step
        assert np.array_equal(y, expected[g])


def test_spec_vector_mask_words():
    from tcscodec.masks import mask_words

    for c in VECTORS["mask_words"]:
        w = mask_words(c["seed"], [c["b"]], [c["y"]], [c["word_col"]])
        assert "0x%016x" % int(w[0, 0, 0]) == c["word"]


def test_spec_vector_killed_writer():
    kw = VECTORS["killed_writer"]
    with pytest.warns(TcsRecoveryWarning, match="not finished"):
        r = tcscodec.open(SPEC_VECTORS / kw["file"])
    with r:
        assert r.n_frames == kw["complete_frames"] and not r.complete
        expected = np.load(SPEC_VECTORS / "uint8_B4_short_last_group.measurements.npy")
        for g in range(r.n_groups):
            assert np.array_equal(r.measurements(g), expected[g])
        with pytest.raises(IndexError):
            r.measurements(r.n_groups)


def test_spec_vector_killed_variable_writer():
    kw = VECTORS["killed_writer_variable"]
    with pytest.warns(TcsRecoveryWarning, match="not finished"):
        r = tcscodec.open(SPEC_VECTORS / kw["file"])
    with r:
        assert r.n_frames == kw["complete_frames"] and r.group_lengths().tolist() == kw["group_lengths"]
        expected = np.load(SPEC_VECTORS / f"{kw['of']}.measurements.npy")
        for g in range(r.n_groups):
            assert np.array_equal(r.measurements(g), expected[g])


def test_a_version_1_reader_refuses_variable_groups(monkeypatch):
    """A reader that knows only major version 1 (as the 1.1 spec and
    tcscodec before variable groups) refuses a version 2 file with a
    clear error, although it ignores the minor version and flags."""
    import tcscodec.format.header as header_module

    v = next(v for v in VECTORS["vectors"] if "group_lengths" in v)
    raw = (SPEC_VECTORS / f"{v['name']}.tcs").read_bytes()
    # by the 1.1 spec's rule, on the bytes
    assert int.from_bytes(raw[8:10], "little") == 2 and int.from_bytes(raw[16:20], "little") == 0
    monkeypatch.setattr(header_module, "MAJOR_VERSIONS", (1,))
    with pytest.raises(TcsVersionError, match="major version 2 is not supported .this reader knows 1."):
        tcscodec.open(SPEC_VECTORS / f"{v['name']}.tcs")
    # the version 1 vectors are still read by it
    with tcscodec.open(SPEC_VECTORS / "uint8_B4_short_last_group.tcs") as r:
        assert r.n_frames == 10


# -- damage ----------------------------------------------------------------------------------------
@pytest.fixture
def sample_file(tmp_path):
    frames = movie(np.random.default_rng(4), "uint16", (20, 40, 50))
    path = tmp_path / "s.tcs"
    tcscodec.write(path, frames, B=5, seed=8, tile=(20, 25))
    return path, frames


def test_wrong_magic(tmp_path):
    p = tmp_path / "x.tcs"
    p.write_bytes(b"II*\x00" + bytes(100))
    with pytest.raises(TcsFormatError, match=r"x\.tcs: not a \.tcs file"):
        tcscodec.open(p)


def test_unknown_major_version(sample_file):
    path, _ = sample_file
    data = bytearray(path.read_bytes())
    data[8:10] = (3).to_bytes(2, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(TcsVersionError, match="major version 3 is not supported .this reader knows 1 and 2"):
        tcscodec.open(path)


def test_header_byte_flip(sample_file):
    path, _ = sample_file
    data = bytearray(path.read_bytes())
    data[21] ^= 0x01  # height
    path.write_bytes(bytes(data))
    with pytest.raises(TcsChecksumError, match="header checksum"):
        tcscodec.open(path)


def test_byte_flip_in_every_record(sample_file):
    path, frames = sample_file
    good = path.read_bytes()
    with tcscodec.open(path) as r:
        records = sorted(r._container.records.values(), key=lambda e: e.offset)
    rng = np.random.default_rng(0)
    for rec in records:
        data = bytearray(good)
        pos = rec.offset + int(rng.integers(0, 24 + rec.payload_size))
        data[pos] ^= 1 << int(rng.integers(8))
        path.write_bytes(bytes(data))
        with tcscodec.open(path) as r:
            with pytest.raises(TcsFormatError, match=rf"group {rec.group} tile \({rec.tile_row}, {rec.tile_col}\)"):
                r.measurements(rec.group)
            # the other groups are untouched
            other = (rec.group + 1) % r.n_groups
            assert np.array_equal(r.measurements(other), tcscodec.encoder.encode_group(
                frames[other * 5:(other + 1) * 5], 8, 5))


def test_damaged_index_falls_back_to_scan(sample_file):
    path, frames = sample_file
    data = bytearray(path.read_bytes())
    data[-40] ^= 0xFF  # inside the index
    path.write_bytes(bytes(data))
    with pytest.warns(TcsRecoveryWarning) as caught:
        r = tcscodec.open(path)
    messages = [str(w.message) for w in caught]
    assert any("index checksum" in m for m in messages)
    assert any("recovered 4 complete group(s), 20 frame(s)" in m for m in messages)
    with r:
        assert r.n_frames == 20
        assert np.array_equal(r.measurements(3), tcscodec.encoder.encode_group(frames[15:], 8, 5))


@pytest.mark.parametrize("cut", [10, 60, 100, 1000, 3000, -33, -1])
def test_truncated_file(sample_file, cut):
    path, frames = sample_file
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    if cut in (10, 60):
        with pytest.raises(TcsTruncatedError, match="ends inside the header"):
            tcscodec.open(path)
        return
    with pytest.warns(TcsRecoveryWarning, match="truncated"):
        r = tcscodec.open(path)
    with r:
        for g in range(r.n_groups):
            assert np.array_equal(r.measurements(g), tcscodec.encoder.encode_group(frames[g * 5:(g + 1) * 5], 8, 5))
        if r.n_groups < 4:
            with pytest.raises(TcsTruncatedError, match=rf"group {r.n_groups} is missing: the file is truncated"):
                r.measurements(r.n_groups)


def test_killed_writer_keeps_complete_groups(tmp_path):
    """A writer process killed mid-movie: its .partial file gives every complete group."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import os, numpy as np, tcscodec
        rng = np.random.default_rng(0)
        w = tcscodec.open({str(tmp_path / 'live.tcs')!r}, "w", B=4, seed=2, tile=16)
        for i in range(4 * 6 + 2):
            w.write(rng.integers(0, 255, (30, 40), dtype=np.uint8))
        os._exit(9)  # killed: no close(), no index, the last group maybe still compressing
    """)
    subprocess.run([sys.executable, "-c", script], check=False)
    assert not (tmp_path / "live.tcs").exists()  # nothing under the final name
    (partial,) = tmp_path.glob("live.tcs.*.partial")
    rng = np.random.default_rng(0)
    frames = np.stack([rng.integers(0, 255, (30, 40), dtype=np.uint8) for _ in range(26)])
    with pytest.warns(TcsRecoveryWarning, match="not finished"):
        r = tcscodec.open(partial)
    with r:
        assert r.n_groups >= 5 and not r.complete  # all but the group in flight
        for g in range(r.n_groups):
            assert np.array_equal(r.measurements(g), tcscodec.encoder.encode_group(frames[4 * g:4 * g + 4], 2, 4))


def test_failed_write_leaves_nothing_and_keeps_old_file(tmp_path):
    path = tmp_path / "m.tcs"
    path.write_bytes(b"precious")
    frames = [np.zeros((8, 8), np.uint16)] * 10 + [np.zeros((8, 8), np.uint8)]
    with pytest.raises(tcscodec.TcsValueError, match="frame 10 has dtype uint8, expected uint16"):
        tcscodec.write(path, iter(frames), B=4)
    assert path.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["m.tcs"]


def test_output_permissions_follow_umask(tmp_path):
    tcscodec.write(tmp_path / "m.tcs", np.zeros((2, 4, 4), np.uint8), B=2)
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "m.tcs").stat().st_mode & 0o777 == 0o666 & ~umask


def test_magic_constant():
    assert MAGIC == bytes([0x89, 0x54, 0x43, 0x53, 0x0D, 0x0A, 0x1A, 0x0A])
