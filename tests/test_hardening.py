"""Issue 17: every malformed file gives a TcsError quickly and in bounded
memory; one regression test per finding of the issue's fuzzer, plus a
fixed-seed slice of bench/fuzz.py."""

import importlib.util
import struct
import sys
import threading
import time
import tracemalloc
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import zstandard

import tcscodec
from tcscodec import TcsChecksumError, TcsError, TcsFormatError, TcsRecoveryWarning, TcsTruncatedError
from tcscodec.format import ContainerReader
from tcscodec.format.header import MAX_JSON_SIZE, TcsHeader, parse_metadata
from tcscodec.format.predictive import decode_predicted, encode_predicted

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("tcs_bench_fuzz", ROOT / "bench" / "fuzz.py")
fuzz = importlib.util.module_from_spec(_spec)
sys.modules["tcs_bench_fuzz"] = fuzz
_spec.loader.exec_module(fuzz)
Layout = fuzz.Layout


@pytest.fixture
def movie(tmp_path):
    """A 4-group predict-rice file of 2 x 2 tiles and its exact measurements."""
    frames = np.random.default_rng(7).poisson(30, (14, 40, 50)).astype(np.uint16)
    path = tmp_path / "m.tcs"
    tcscodec.write(path, frames, B=4, seed=11, tile=(20, 25), metadata={"a": 1})
    ys = [tcscodec.encoder.encode_group(frames[g * 4:(g + 1) * 4], 11, 4) for g in range(4)]
    return path, ys


def open_quietly(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TcsRecoveryWarning)
        return tcscodec.open(path)


def timed(fn, limit=2.0):
    """Run ``fn`` and check it took under ``limit`` seconds and under 32 MB
    of traced allocations (numpy arrays and bytes objects are traced)."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        fn()
    finally:
        dt = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert dt < limit, f"took {dt:.1f} s"
        assert peak < 32 << 20, f"allocated {peak / 2**20:.0f} MiB"


# -- sizes and offsets -----------------------------------------------------------------------------
@pytest.mark.parametrize("offset", [2**63, 2**63 - 1, 2**40])
def test_index_offset_beyond_the_file_is_refused(movie, offset):
    path, _ = movie
    lay = Layout.parse(path.read_bytes())
    entries = fuzz._entries(lay)
    entries[3] = (offset, *entries[3][1:])
    path.write_bytes(lay.build(entries=entries))  # index CRC recomputed
    with pytest.raises(TcsFormatError, match=rf"index entry 3 \(offset {offset}, group 0, tile \(1, 1\)\) "
                                             "is outside the file or the grid"):
        timed(lambda: tcscodec.open(path))


def test_payload_size_of_4_gib_is_refused_before_reading(movie):
    path, ys = movie
    lay = Layout.parse(path.read_bytes())
    lay.records[5].size = 2**32 - 1  # record CRC left as it is
    path.write_bytes(lay.build())
    with tcscodec.open(path) as r:
        g, row, col = lay.records[5].group, lay.records[5].row, lay.records[5].col
        with pytest.raises(TcsFormatError, match=rf"group {g} tile \({row}, {col}\): payload size "
                                                 r"4,294,967,295 is over the tile's limit 11,024"):
            timed(lambda: r.measurements(g))
        assert np.array_equal(r.measurements(g + 1), ys[g + 1])


def test_json_size_near_4_gib_is_refused_before_reading(movie):
    path, _ = movie
    data = bytearray(path.read_bytes())
    jsize = struct.unpack_from("<I", data, 68)[0]
    struct.pack_into("<I", data, 68, 2**32 - 80)
    struct.pack_into("<I", data, 12, 2**32 - 4)  # header_size agrees with it
    path.write_bytes(bytes(data))
    assert jsize < 100
    with pytest.raises(TcsFormatError, match="JSON size 4,294,967,216 is over the 1,048,576-byte limit"):
        timed(lambda: tcscodec.open(path))


@pytest.mark.parametrize("hw,message", [
    ((2**31, 2**31, 2**31, 2**31), r"invalid frame size 2147483648x2147483648"),
    ((2**20, 2**20, 2**20, 2**20), r"frame 1048576x1048576 has more than 268,435,456 pixels"),
    ((2**24, 2**24, 2**24, 2**24), r"frame 16777216x16777216 has more than 268,435,456 pixels"),
    ((2**24, 3, 2**24, 3), r"frame 16777216x3 has more than 268,435,456 pixels \(rows counted in 64-pixel"),
    ((2**22, 60, 2**22, 60), r"tile 4194304x60 has more than 67,108,864 pixels"),
    ((65535, 65535, 1, 1), r"frame 65535x65535 has more than 268,435,456 pixels"),
    ((16000, 16000, 1, 4), r"tile grid 16000x4000 has more than 1,048,576 tiles"),
])
def test_absurd_frame_and_tile_sizes_are_refused(movie, hw, message):
    path, _ = movie
    lay = Layout.parse(path.read_bytes())
    H, W, th, tw = hw
    path.write_bytes(lay.build(height=H, width=W, tile_h=th, tile_w=tw))  # header CRC recomputed
    with pytest.raises(TcsFormatError, match=message):
        timed(lambda: tcscodec.open(path))


@pytest.mark.parametrize("frames", [2**31, 2**40, 2**64 - 1])
def test_footer_frame_count_disagreeing_with_the_header_is_refused_fast(movie, frames):
    path, _ = movie
    lay = Layout.parse(path.read_bytes())
    path.write_bytes(lay.build(footer={"n_frames": frames}))  # footer CRC recomputed
    with pytest.raises(TcsFormatError, match=f"header says 14 frames, footer {frames}"):
        timed(lambda: tcscodec.open(path))


def test_huge_footer_frame_count_of_an_unfinished_header_is_refused_fast(movie):
    """Header T = 0 (killed while finishing): the index must still hold
    every record the footer's T needs, checked by count, not by listing."""
    path, _ = movie
    lay = Layout.parse(path.read_bytes())
    path.write_bytes(lay.build(n_frames=0, footer={"n_frames": 2**63}))
    with pytest.raises(TcsFormatError, match=r"index lists 16 records, 9223372036854775808 frames in 2x2 tiles"):
        timed(lambda: tcscodec.open(path))


def test_header_and_footer_frame_counts_are_cross_checked(movie):
    path, _ = movie
    lay = Layout.parse(path.read_bytes())
    path.write_bytes(lay.build(n_frames=13))  # header CRC recomputed, footer says 14
    with pytest.raises(TcsFormatError, match="header says 13 frames, footer 14"):
        tcscodec.open(path)


# -- metadata -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,message", [
    (b"[" * 100_000 + b"]" * 100_000, "metadata is nested 100000 deep"),
    (b'{"a": ' * 65 + b"1" + b"}" * 65, "metadata is nested 65 deep"),
    (b'{"n": ' + b"7" * 5000 + b"}", "metadata holds a number of 5000 characters"),
    (b"[1, 2]", "metadata is a JSON list, not an object"),
    (b"42", "metadata is a JSON int, not an object"),
    (b'"text"', "metadata is a JSON str, not an object"),
    (b'{"a": "\xff"}', "metadata is not valid UTF-8 JSON"),
])
def test_crafted_metadata_is_refused(movie, text, message):
    path, _ = movie
    lay = Layout.parse(path.read_bytes())
    lay.json = text
    path.write_bytes(lay.build())
    with pytest.raises(TcsFormatError, match=message):
        timed(lambda: tcscodec.open(path))


def test_metadata_depth_is_counted_outside_strings_only():
    deep_text = '{"s": "' + "[" * 500 + '\\"{{{", "t": "\\\\"}'
    assert parse_metadata(deep_text.encode()) == {"s": "[" * 500 + '"{{{', "t": "\\"}
    assert parse_metadata(b'{"a": ' * 64 + b"1" + b"}" * 64)["a"]["a"]["a"]


# -- payloads ----------------------------------------------------------------------------------------------
def _replace_payload(path, index, payload):
    lay = Layout.parse(path.read_bytes())
    rec = lay.records[index]
    rec.payload = payload
    path.write_bytes(lay.build())  # record CRC and index recomputed
    return rec


@pytest.mark.parametrize("declared", [True, False])
def test_zstd_bomb_fails_fast_without_allocating_it(tmp_path, declared):
    """A 32 KB zstd frame holding (and perhaps declaring) 1 GiB of zeros in
    place of a 128 x 128 x 4-byte tile (whose payload may be 328 KB)."""
    frames = np.random.default_rng(2).poisson(9, (8, 128, 128)).astype(np.uint16)
    path = tmp_path / "b.tcs"
    tcscodec.write(path, frames, B=4, seed=3, tile=128)
    bomb = fuzz.bomb(1 << 30, declared)
    assert len(bomb) < 64 << 10
    _replace_payload(path, 0, b"\x00" + bomb)  # predict-rice mode 0: a shuffled zstd frame
    message = "zstd frame declares 1,073,741,824 bytes, the tile holds 65,536" if declared else \
        "payload does not decompress"
    with tcscodec.open(path) as r:
        with pytest.raises(TcsFormatError, match=rf"group 0 tile \(0, 0\): {message}"):
            timed(lambda: r.measurements(0), limit=1.0)
        assert np.array_equal(r.measurements(1), tcscodec.encoder.encode_group(frames[4:], 3, 4))


def test_zstd_bomb_beyond_the_payload_limit_is_refused_unread(movie):
    path, _ = movie
    rec = _replace_payload(path, 6, b"\x00" + fuzz.bomb(1 << 30, True))
    with tcscodec.open(path) as r:
        with pytest.raises(TcsFormatError, match=rf"group {rec.group} tile \({rec.row}, {rec.col}\): "
                                                 r"payload size 32,7\d\d is over the tile's limit 11,024"):
            r.measurements(rec.group)


def test_bytes_after_a_zstd_frame_are_refused(tmp_path):
    frames = np.random.default_rng(1).integers(0, 255, (4, 8, 8), dtype=np.uint8)
    path = tmp_path / "z.tcs"
    tcscodec.write(path, frames, B=4, codec="shuffle-zstd")
    lay = Layout.parse(path.read_bytes())
    _replace_payload(path, 0, lay.records[0].payload + b"\x00")
    with tcscodec.open(path) as r:
        with pytest.raises(TcsFormatError, match="unused data"):
            r.measurements(0)


def test_zstd_frame_declaring_the_wrong_size_is_refused(tmp_path):
    frames = np.zeros((4, 8, 8), np.uint8)
    path = tmp_path / "z.tcs"
    tcscodec.write(path, frames, B=4, codec="zstd")
    _replace_payload(path, 0, zstandard.ZstdCompressor().compress(bytes(100)))
    with tcscodec.open(path) as r:
        with pytest.raises(TcsFormatError, match="zstd frame declares 100 bytes, the tile holds 128"):
            r.measurements(0)


def _escaped_content():
    """A predict-rice content with escapes, and (stage, k) of the first escape."""
    from tcscodec.format.predictive import ESCAPE, _slice_size, stage_slices

    rng = np.random.default_rng(1)
    S = rng.integers(0, 11, (20, 30)).astype(np.uint8)
    q = S.astype(np.int64) * 40 + rng.integers(-5, 5, S.shape)
    q[2, 3] = 10**6  # a hot pixel: escapes
    c = bytearray(encode_predicted(q, S))
    E, U = struct.unpack_from("<II", c, 11)
    assert E >= 1
    bits = np.unpackbits(np.frombuffer(bytes(c), np.uint8, U, 19 + 8 * E))
    m = np.diff(np.flatnonzero(bits == 0)[:S.size], prepend=-1) - 1
    first = int(np.argmax(m == ESCAPE))
    counts = np.cumsum([sum(_slice_size(t) for t, _ in parts) for parts in stage_slices(S.shape)])
    stage = int(np.searchsorted(counts, first, side="right"))
    return c, S, stage, c[2 + stage]


@pytest.mark.parametrize("quotient", [2**62, 2**63, 2**64 - 1])
def test_predict_rice_escape_out_of_range_is_refused_not_wrapped(quotient):
    """Spec 4.2: (m << k) | remainder must not wrap in 64 bits."""
    c, S, stage, k = _escaped_content()
    struct.pack_into("<Q", c, 19, quotient)
    with pytest.raises(TcsFormatError, match=f"stage {stage} has an escaped quotient {quotient} "
                                             f"out of range for k = {k}"):
        decode_predicted(bytes(c), S)


def test_predict_rice_escape_decoding_beyond_2_52_is_refused():
    c, S, stage, k = _escaped_content()
    struct.pack_into("<Q", c, 19, (2**54 >> k) + 1)  # |q| > 2^52: mode 1 never holds it
    with pytest.raises(TcsFormatError, match=f"stage {stage} decodes values beyond 2"):
        decode_predicted(bytes(c), S)


def test_predict_rice_wide_remainders_unpack_in_bounded_memory():
    """k = 62 on every stage of a 512 x 512 tile: the remainder stream is
    unpacked in chunks (it took 496 bytes per pixel at once); a legitimate
    tile's decoding needs about 60 bytes per pixel."""
    S = np.full((512, 512), 3, np.uint8)
    n = S.size
    head = bytes([1, 9]) + bytes([62] * 9) + struct.pack("<II", 0, n // 8)
    content = head + bytes(n // 8) + bytes(-(-n * 62 // 8))
    tracemalloc.start()
    try:
        q = decode_predicted(content, S)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert q.shape == (512, 512)
    assert peak < 64 * n, f"{peak / n:.0f} bytes per pixel"


# -- rescans -------------------------------------------------------------------------------------------------
def test_rescan_ignores_a_damaged_n_frames(movie):
    """A file without index whose record says 300 frames (B = 4): the
    rescan does not count it, and no later group raises KeyError."""
    path, ys = movie
    lay = Layout.parse(path.read_bytes())
    lay.records[4].n = 300  # group 1, with its CRC recomputed
    path.write_bytes(lay.build(index=False, n_frames=0))
    with pytest.warns(TcsRecoveryWarning, match=r"recovered 4 complete group\(s\), 14 frame\(s\), damaged group\(s\) 1"):
        r = tcscodec.open(path)
    with r:
        assert r.n_frames == 14 and r._container.damaged_groups == {1: "records missing or damaged (found by a rescan)"}
        for g in (0, 2, 3):
            assert np.array_equal(r.measurements(g), ys[g])
        with pytest.raises(TcsFormatError, match="group 1 is damaged"):
            r.measurements(1)


def test_rescan_resynchronises_after_a_damaged_record_header(movie):
    path, ys = movie
    data = bytearray(path.read_bytes())
    lay = Layout.parse(bytes(data))
    start = len(lay.header()) + sum(len(r.pack()) for r in lay.records[:5])
    data[start:start + 4] = b"XXXX"  # record 5's magic (group 1)
    with pytest.warns(TcsRecoveryWarning, match=r"damaged group\(s\) 1, 1 damaged record header\(s\) skipped"):
        r = tcscodec.open(bytes_to(path, bytes(data[:-40])))  # the index cut off too
    with r:
        assert r.n_groups == 4
        for g in (0, 2, 3):
            assert np.array_equal(r.measurements(g), ys[g])


def bytes_to(path, data):
    path.write_bytes(data)
    return path


def test_damaged_group_id_does_not_make_billions_of_groups(tmp_path):
    frames = np.random.default_rng(0).integers(0, 200, (8, 8, 8), dtype=np.uint8)
    path = tmp_path / "one_tile.tcs"
    tcscodec.write(path, frames, B=2, tile=8)
    lay = Layout.parse(path.read_bytes())
    lay.records[3].group = 2**32 - 1  # CRC recomputed
    path.write_bytes(lay.build(index=False, n_frames=0))
    t0 = time.perf_counter()
    with pytest.warns(TcsRecoveryWarning, match=r"recovered 3 complete group\(s\)"):
        r = tcscodec.open(path)
    r.close()
    assert time.perf_counter() - t0 < 1


# -- a closed reader, a directory ------------------------------------------------------------------------
def test_closed_reader_and_directory(movie, tmp_path):
    path, _ = movie
    r = tcscodec.open(path)
    r.close()
    with pytest.raises(tcscodec.TcsValueError, match="reader is closed"):
        r.measurements(0)
    with pytest.raises(tcscodec.TcsInputError, match="cannot open"):
        tcscodec.open(tmp_path)


# -- thread safety -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("codec", ["predict-rice", "shuffle-zstd"])
def test_one_reader_shared_by_8_threads_reads_every_record_exactly(tmp_path, codec):
    frames = np.random.default_rng(3).poisson(40, (40, 64, 72)).astype(np.uint16)
    path = tmp_path / "t.tcs"
    tcscodec.write(path, frames, B=4, seed=5, tile=(16, 24), codec=codec)
    with ContainerReader(path, mask_sum=tcscodec.open(path)._tile_mask_sum) as c:
        expected = [c.read_measurement(g) for g in range(c.n_groups)]
        jobs = [g for _ in range(12) for g in range(c.n_groups)]
        np.random.default_rng(0).shuffle(jobs)
        barrier = threading.Barrier(8)

        def read(g):
            if barrier.n_waiting < 8 and not barrier.broken:
                try:
                    barrier.wait(timeout=0.5)
                except threading.BrokenBarrierError:
                    pass
            return g, c.read_measurement(g)

        with ThreadPoolExecutor(8) as pool:
            for g, y in pool.map(read, jobs):
                assert np.array_equal(y, expected[g]), f"group {g}"
    for g in range(10):
        assert np.array_equal(expected[g], tcscodec.encoder.encode_group(frames[4 * g:4 * g + 4], 5, 4))


# -- the fuzzer's fixed-seed slice ---------------------------------------------------------------------------
def test_fuzz_slice():
    """800 fixed-seed cases of bench/fuzz.py, in this process: every one
    opens and reads, or is refused with a TcsError, each in under 5 s."""
    results = fuzz.run(800, seed=2024, in_process=True)
    rep = fuzz.summarise(results, slow=5.0)
    assert rep["cases"] == 800
    assert rep["errors"] == {}, "\n".join(f"case {i}: {e['error']} ({e['what']})\n{e['trace']}"
                                          for i, e in rep["errors"].items())
    assert rep["slow"] == {}
    assert rep["outcomes"].get("ok", 0) > 50 and rep["outcomes"].get("TcsFormatError", 0) > 200
