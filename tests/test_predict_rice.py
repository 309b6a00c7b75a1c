"""Record codec 3, predict-rice (spec section 4.2): a second decoder written
from the spec text, exact round trips, escapes, fallbacks and damage."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tcscodec
from tcscodec import TcsFormatError, TcsValueError
from tcscodec.format import ContainerReader
from tcscodec.format.predictive import MAX_ABS, decode_predicted, encode_predicted
from tcscodec.format.records import decode_payload, encode_payload
from tcscodec.masks import mask_sum

from .conftest import SPEC_VECTORS


# -- a decoder from the spec alone: plain Python ints, one pixel at a time --------------------------
def spec_stages(th, tw):
    """Section 4.2's table: per stage, (pixel list in coding order, neighbour offsets)."""
    stages = [([(y, x) for y in range(0, th, 16) for x in range(0, tw, 16)], [])]
    for s in (16, 8, 4, 2):
        h = s // 2
        centres = [(y, x) for y in range(th) for x in range(tw) if y % s == h and x % s == h]
        stages.append((centres, [(-h, -h), (-h, h), (h, -h), (h, h)]))
        edges = [(y, x) for y in range(th) for x in range(tw) if y % s == h and x % s == 0]
        edges += [(y, x) for y in range(th) for x in range(tw) if y % s == 0 and x % s == h]
        stages.append((edges, [(-h, 0), (h, 0), (0, -h), (0, h)]))
    return stages


class BitReader:
    def __init__(self, data: bytes):
        self.bits = "".join(f"{b:08b}" for b in data)
        self.pos = 0

    def read(self, k: int) -> int:
        v = int(self.bits[self.pos:self.pos + k] or "0", 2)
        self.pos += k
        return v

    def unary(self) -> int:
        end = self.bits.index("0", self.pos)
        m, self.pos = end - self.pos, end + 1
        return m


def spec_decode(payload: bytes, S: np.ndarray) -> list[list[int]]:
    th, tw = S.shape
    assert payload[0] == 1 and payload[1] == 9
    ks = list(payload[2:11])
    E = int.from_bytes(payload[11:15], "little")
    U = int.from_bytes(payload[15:19], "little")
    escapes = [int.from_bytes(payload[19 + 8 * i:27 + 8 * i], "little") for i in range(E)]
    unary = BitReader(payload[19 + 8 * E:19 + 8 * E + U])
    rem = BitReader(payload[19 + 8 * E + U:])
    stages = spec_stages(th, tw)
    # the unary stream holds every stage's quotients first (coding order)
    quotients = []
    for pixels, _ in stages:
        for _ in pixels:
            m = unary.unary()
            quotients.append(escapes.pop(0) if m == 24 else m)
    assert not escapes and len(quotients) == th * tw
    q = [[None] * tw for _ in range(th)]
    i = 0
    for k, (pixels, nbrs) in zip(ks, stages):
        for y, x in pixels:
            u = (quotients[i] << k) | rem.read(k)
            i += 1
            r = u >> 1 if u % 2 == 0 else -(u >> 1) - 1
            num = den = 0
            for dy, dx in nbrs:
                if 0 <= y + dy < th and 0 <= x + dx < tw:
                    assert q[y + dy][x + dx] is not None, "neighbour not decoded yet"
                    num += q[y + dy][x + dx]
                    den += int(S[y + dy, x + dx])
            pred = (2 * int(S[y, x]) * num + den) // (2 * den) if den > 0 else 0
            q[y][x] = r + pred
    return q


VECTORS = [v for v in json.loads((SPEC_VECTORS / "vectors.json").read_text())["vectors"]
           if v["codec"] == "predict-rice"]


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["name"])
def test_spec_vectors_decode_with_a_reader_written_from_the_spec(v):
    expected = np.load(SPEC_VECTORS / f"{v['name']}.measurements.npy")
    path = SPEC_VECTORS / f"{v['name']}.tcs"
    modes, escapes = set(), 0
    with ContainerReader(path) as c:  # no mask_sum: the payloads are decoded here
        h = c.header
        assert h.codec == "predict-rice" and h.version == ((2, 0) if "group_lengths" in v else (1, 1))
        rows, cols = h.grid
        for g in range(c.n_groups):
            n = c.group_frames(g)
            for r in range(rows):
                for col in range(cols):
                    y0, y1, x0, x1 = h.tile_bounds(r, col)
                    payload = c.read_payload(g, r, col)
                    modes.add(payload[0])
                    want = expected[g, y0:y1, x0:x1]
                    if payload[0] == 0:  # stored: a codec-2 payload behind the mode byte
                        got = decode_payload(payload[1:], "shuffle-zstd", h.stored_dtype, want.shape)
                        assert np.array_equal(got, want)
                        continue
                    escapes += int.from_bytes(payload[11:15], "little")
                    S = mask_sum(h.mask_seed, n, h.height, h.width)[y0:y1, x0:x1]
                    q = np.array(spec_decode(payload, S), dtype=object)
                    assert np.array_equal(q * h.quant_step if h.quant_step != 1 else q, want)
    if v["dtype"] == "float32":
        assert modes == {0}
    else:
        assert modes == {1}
    if "quantised" in v["name"]:
        assert escapes > 0  # the hot pixels exercise the escape list


# -- round trips --------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    H=st.integers(1, 45), W=st.integers(1, 45), n=st.integers(1, 64),
    kind=st.sampled_from(["uint8", "uint16", "uint64", "int64", "smooth", "outliers"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_predicted_round_trip_is_exact(H, W, n, kind, seed):
    rng = np.random.default_rng(seed)
    S = rng.integers(0, n, (H, W), endpoint=True).astype(np.uint8)
    if kind == "smooth":
        q = (S * (1000 + 50 * np.sin(np.arange(W) / 3.0))[None, :] + rng.integers(-30, 30, (H, W))).astype(np.int64)
    elif kind == "outliers":
        q = rng.integers(0, 50, (H, W)).astype(np.uint32)
        q.flat[rng.integers(0, q.size, 3)] = 2**32 - 1
    elif kind == "int64":
        q = rng.integers(-MAX_ABS, MAX_ABS, (H, W), endpoint=True)
    else:
        q = rng.integers(0, 255 if kind == "uint8" else 65535 if kind == "uint16" else 2**40, (H, W)).astype(kind)
    content = encode_predicted(q, S)
    assert content is not None and content[0] == 1
    got = decode_predicted(content, S)
    assert got.dtype == np.int64 and np.array_equal(got, q.astype(np.int64))
    payload = encode_payload(q, "predict-rice", csum=S)
    assert np.array_equal(decode_payload(payload, "predict-rice", q.dtype, q.shape, S), q)


def test_values_beyond_2_52_and_floats_are_stored_as_codec_2():
    S = np.full((4, 5), 3, np.uint8)
    big = np.full((4, 5), MAX_ABS + 1, np.uint64)
    assert encode_predicted(big, S) is None
    for tile in (big, np.linspace(-1, 1, 20).reshape(4, 5)):
        payload = encode_payload(tile, "predict-rice", csum=S)
        assert payload[0] == 0
        assert np.array_equal(decode_payload(payload, "predict-rice", tile.dtype, tile.shape, S), tile)


def test_incompressible_tiles_fall_back_to_stored():
    rng = np.random.default_rng(0)
    S = rng.integers(0, 2, (32, 32)).astype(np.uint8)
    q = rng.integers(0, 256, (32, 32)).astype(np.uint8)  # white noise, 8 bits: prediction cannot help
    payload = encode_payload(q, "predict-rice", csum=S)
    assert payload[0] == 0 and np.array_equal(decode_payload(payload, "predict-rice", "uint8", q.shape, S), q)


def test_sparse_counts_keep_the_smaller_stored_payload():
    """Electron counting at 0.005 e-/px/frame: Y is mostly 0, where a Rice
    code costs 1 bit per pixel and zstd a tenth of that."""
    from tcscodec.encoder import encode_group

    frames = np.random.default_rng(3).poisson(0.005, (2, 128, 128)).astype(np.uint8)
    y, S = encode_group(frames, 3, 2), mask_sum(3, 2, 128, 128)
    payload = encode_payload(y, "predict-rice", csum=S)
    assert payload[0] == 0 and len(payload) < len(encode_predicted(y, S)) / 3
    assert np.array_equal(decode_payload(payload, "predict-rice", y.dtype, y.shape, S), y)


def test_dense_tiles_skip_the_stored_trial(monkeypatch):
    """A tile coded in under 2 bits/px whose values are mostly non-zero
    (quantised bright counts) keeps its Rice code without a zstd trial;
    one of mostly zeros is still tried and stored."""
    from tcscodec.encoder import encode_group
    from tcscodec.format import codecs

    trials = []
    real = codecs._zstd_frame
    monkeypatch.setattr(codecs, "_zstd_frame", lambda *a: trials.append(1) or real(*a))
    rng = np.random.default_rng(4)
    S = mask_sum(3, 30, 128, 128)
    y = np.round(encode_group(rng.poisson(20, (30, 128, 128)).astype(np.uint16), 3, 30) / 50).astype(np.uint32)
    payload = encode_payload(y, "predict-rice", csum=S)
    assert payload[0] == 1 and 8 * len(payload) < 2 * y.size and np.count_nonzero(y) > y.size / 2
    assert trials == [] and np.array_equal(decode_payload(payload, "predict-rice", y.dtype, y.shape, S), y)
    sparse = encode_group(rng.poisson(0.005, (2, 128, 128)).astype(np.uint8), 3, 2)
    assert encode_payload(sparse, "predict-rice", csum=mask_sum(3, 2, 128, 128))[0] == 0 and trials == [1]


def test_mask_sums_are_required_for_integer_tiles():
    q = np.arange(12, dtype=np.uint16).reshape(3, 4)
    with pytest.raises(ValueError, match="needs the tile's mask sums"):
        encode_payload(q, "predict-rice")
    with pytest.raises(ValueError, match="needs the tile's mask sums"):
        encode_payload(q, "predict-rice", csum=np.ones((4, 3), np.uint8))


# -- damaged content ----------------------------------------------------------------------------------
@pytest.fixture
def content():
    rng = np.random.default_rng(1)
    S = rng.integers(0, 11, (20, 30)).astype(np.uint8)
    q = (S.astype(np.int64) * 40 + rng.integers(-5, 5, S.shape))
    q[2, 3] = 10**6  # a hot pixel: it and a neighbour predicted from it are escapes
    return encode_predicted(q, S), S


def test_damaged_content_is_rejected(content):
    c, S = content
    assert int.from_bytes(c[11:15], "little") == 2
    U = int.from_bytes(c[15:19], "little")  # the unary stream starts at 19 + 8 * 2
    cases = {
        "shorter than its header": c[:10],
        "expected 1 and 9": c[:1] + b"\x08" + c[2:],
        "above 62": c[:2] + b"\x3f" + c[3:],
        "run past the content": c[:15] + (1800).to_bytes(4, "little") + c[19:],
        "unary stream of 1000000 bytes is too long for 600 values": c[:15] + (10**6).to_bytes(4, "little") + c[19:],
        "lists 601 escapes for 600 values": c[:11] + (601).to_bytes(4, "little") + c[15:],
        "remainder stream holds": c + b"\x00",
        "unary stream holds 613 codes where 600 are expected": (
            c[:15] + (U + 1).to_bytes(4, "little") + c[19:35 + U] + b"\x00" + c[35 + U:]),
        "unary stream has bits after its 600 codes": c[:34 + U] + bytes([c[34 + U] | 1]) + c[35 + U:],
        "lists 1 escapes but its codes hold 2": c[:11] + (1).to_bytes(4, "little") + c[15:27] + c[35:],
        "remainder stream holds .* bytes, expected": c[:-3],
    }
    for message, bad in cases.items():
        with pytest.raises(TcsFormatError, match=message):
            decode_predicted(bad, S)


def test_unknown_modes_are_rejected():
    S = np.ones((2, 2), np.uint8)
    with pytest.raises(TcsFormatError, match="mode 02 for stored uint16"):
        decode_payload(b"\x02abc", "predict-rice", "uint16", (2, 2), S)
    with pytest.raises(TcsFormatError, match="mode 01 for stored float64"):
        decode_payload(b"\x01abc", "predict-rice", "float64", (2, 2))


def test_decoded_values_must_fit_the_stored_dtype():
    S = np.full((3, 3), 2, np.uint8)
    c = encode_predicted(np.full((3, 3), 300, np.int64), S)
    with pytest.raises(TcsFormatError, match="do not fit uint8"):
        decode_payload(c, "predict-rice", "uint8", (3, 3), S)


# -- in files -----------------------------------------------------------------------------------------
def test_default_codec_is_predict_rice_and_smaller_on_a_quantised_movie(tmp_path):
    from tcscodec.simulate import sample_movie

    frames = sample_movie((128, 128), 20, seed=3).frames
    sizes = {}
    for codec in ("predict-rice", "shuffle-zstd"):
        path = tmp_path / f"{codec}.tcs"
        kwargs = {} if codec == "predict-rice" else {"codec": codec}
        tcscodec.write(path, frames, B=10, seed=5, quant_step="auto", **kwargs)
        sizes[codec] = path.stat().st_size
        with tcscodec.open(path) as r:
            assert r.header.codec == codec and r.header.version == ((1, 1) if codec == "predict-rice" else (1, 0))
            ys = [r.measurements(g) for g in range(r.n_groups)]
        if codec == "shuffle-zstd":
            assert all(np.array_equal(a, b) for a, b in zip(ys, first))
        first = ys
    assert sizes["predict-rice"] < 0.75 * sizes["shuffle-zstd"], sizes


def test_container_reader_without_mask_sums_names_the_problem(tmp_path):
    frames = np.random.default_rng(2).integers(0, 100, (4, 16, 16)).astype(np.uint16)
    tcscodec.write(tmp_path / "m.tcs", frames, B=4, seed=1)
    with ContainerReader(tmp_path / "m.tcs") as c:
        with pytest.raises(ValueError, match="needs the tiles' mask sums"):
            c.read_tile(0, 0, 0)


def test_unknown_codec_is_refused_by_the_writer(tmp_path):
    with pytest.raises(TcsValueError, match="unknown codec 'lz4'; known: zstd, shuffle-zstd, predict-rice"):
        tcscodec.open(tmp_path / "m.tcs", "w", B=4, codec="lz4")
    assert not list(tmp_path.iterdir())
