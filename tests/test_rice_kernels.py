"""The compiled predict-rice coder against the numpy reference of the
format layer: the same bytes, the same values, the same errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcscodec import TcsFormatError
from tcscodec.format import predictive
from tcscodec.format.predictive import MAX_ABS, decode_predicted_reference, encode_predicted_reference
from tcscodec.rice_kernels import decode_predicted, encode_predicted

DTYPES = ["uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64"]


def _tile(rng, dtype, shape, B, kind):
    """A tile of ``dtype`` and its uint8 mask sums (0..B)."""
    S = rng.integers(0, B, shape, endpoint=True).astype(np.uint8)
    info = np.iinfo(dtype)
    lo, hi = max(info.min, -MAX_ABS), min(info.max, MAX_ABS)
    if kind == "smooth":  # what a measurement looks like: mask sums times a scene, plus noise
        scene = 50 + 40 * np.sin(np.arange(shape[1]) / 3.0)[None, :]
        q = np.clip(S * scene + rng.normal(0, 3, shape), lo, hi)
    elif kind == "full":  # anywhere in the dtype's (predictable) range, negative values included
        q = rng.integers(lo, hi, shape, endpoint=True)
    else:  # hot pixels: escapes
        q = rng.poisson(2, shape).astype(np.float64)
        q.flat[rng.integers(0, q.size, 1 + q.size // 50)] = hi
    return q.astype(dtype), S


def _read_only(S):
    R = S.copy()
    R.flags.writeable = False
    return R


def _same(q, S):
    expected = encode_predicted_reference(q, S)
    content = encode_predicted(q, S)
    assert content == expected
    # read-only mask sums (the writer's cached tiles) are planned once, and
    # tiles of small non-negative values coded from their coding-order plan
    assert encode_predicted(q, _read_only(S)) == expected
    if content is not None:
        got = decode_predicted(content, S)
        assert got.dtype == np.int64 and np.array_equal(got, decode_predicted_reference(content, S))
        assert np.array_equal(got, q.astype(np.int64))
    return content


@settings(max_examples=150, deadline=None)
@given(dtype=st.sampled_from(DTYPES), H=st.integers(1, 70), W=st.integers(1, 70), B=st.integers(2, 64),
       kind=st.sampled_from(["smooth", "full", "hot"]), seed=st.integers(0, 2**32 - 1))
def test_encode_and_decode_equal_the_reference(dtype, H, W, B, kind, seed):
    _same(*_tile(np.random.default_rng(seed), dtype, (H, W), B, kind))


@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (16, 16), (17, 33), (45, 2), (130, 97)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_sizes_and_dtypes(shape, dtype):
    rng = np.random.default_rng(sum(shape))
    for kind in ("smooth", "full", "hot"):
        _same(*_tile(rng, dtype, shape, 10, kind))


def test_escapes_large_rice_parameters_and_values_beyond_2_52():
    rng = np.random.default_rng(5)
    S = rng.integers(0, 64, (40, 40), endpoint=True).astype(np.uint8)
    big = rng.integers(-MAX_ABS, MAX_ABS, (40, 40), endpoint=True)
    content = _same(big, S)  # Rice parameters above 32: remainders written in two parts
    assert max(content[2:11]) > 32
    q = np.zeros((40, 40), np.int64)
    q[::7, ::5] = MAX_ABS  # isolated extremes among zeros: escapes
    assert int.from_bytes(_same(q, S)[11:15], "little") > 0
    for tile in (np.full((4, 5), MAX_ABS + 1, np.uint64), np.full((4, 5), 2**64 - 1, np.uint64),
                 np.full((4, 5), -MAX_ABS - 1, np.int64)):
        assert encode_predicted(tile, S[:4, :5]) is None and encode_predicted_reference(tile, S[:4, :5]) is None


@pytest.mark.parametrize("over", [0, 1])
def test_residuals_at_the_edge_of_uint32(over):
    """The largest residuals a tile can have: a pixel of mask sum 255 whose
    four neighbours sum to 1, all at the largest magnitude, next to ones of
    the opposite sign; at the bound the residuals are kept as uint32, one
    above it as uint64, and the bytes are the reference's either way."""
    from tcscodec.rice_kernels import _residual_dtype

    largest = (2**32 - 4) // 2042 + over
    assert _residual_dtype(largest) == (np.uint64 if over else np.uint32)
    rng = np.random.default_rng(over)
    S = rng.choice(np.array([0, 1, 255], np.uint8), (48, 48), p=[0.6, 0.1, 0.3])
    q = rng.choice(np.array([-largest, largest]), (48, 48))
    _same(q, S)
    _same(np.abs(q), S)


def test_other_inputs_go_to_the_reference():
    q = np.arange(12, dtype=np.uint16).reshape(3, 4)
    assert encode_predicted(q, np.ones((3, 4), np.int64)) == encode_predicted_reference(q, np.ones((3, 4), np.int64))
    assert encode_predicted(q.astype(np.float32), np.ones((3, 4), np.uint8)) is None


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), flips=st.integers(1, 4), cut=st.integers(-3, 3))
def test_damaged_content_gives_the_references_error_or_values(seed, flips, cut):
    rng = np.random.default_rng(seed)
    q, S = _tile(rng, "uint16", (int(rng.integers(1, 40)), int(rng.integers(1, 40))), 10, "hot")
    content = bytearray(encode_predicted_reference(q, S))
    for _ in range(flips):
        i = int(rng.integers(0, len(content)))
        content[i] ^= 1 << int(rng.integers(0, 8))
    content = bytes(content[:len(content) + cut] if cut < 0 else content + bytes(cut))
    try:
        expected = decode_predicted_reference(content, S)
    except TcsFormatError as exc:
        with pytest.raises(TcsFormatError) as got:
            decode_predicted(content, S)
        assert str(got.value) == str(exc)
    else:
        assert np.array_equal(decode_predicted(content, S), expected)


def test_importing_tcscodec_installs_the_kernels():
    before = predictive.use_kernels(None)
    try:
        assert before == (encode_predicted, decode_predicted)
        S = np.full((5, 5), 3, np.uint8)
        q = np.arange(25, dtype=np.uint16).reshape(5, 5)
        assert predictive.encode_predicted(q, S) == encode_predicted(q, S)  # the reference now
    finally:
        predictive.use_kernels(*before)


@pytest.mark.parametrize("shape", [(512, 512), (300, 257), (64, 700)])
@pytest.mark.parametrize("dtype", ["uint16", "uint32", "int32", "int64"])
def test_writer_sized_tiles(shape, dtype):
    """Tiles of the writer's sizes: the decoder's window refills, long rows
    and every stage's border run many times."""
    rng = np.random.default_rng(shape[0] * 7 + shape[1])
    for kind in ("smooth", "hot"):
        _same(*_tile(rng, dtype, shape, 30, kind))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), flips=st.integers(1, 3))
def test_damaged_large_tiles_give_the_references_error_or_values(seed, flips):
    rng = np.random.default_rng(seed)
    q, S = _tile(rng, "uint32", (int(rng.integers(100, 200)), int(rng.integers(100, 200))), 20,
                 str(rng.choice(["smooth", "hot"])))
    content = bytearray(encode_predicted_reference(q, S))
    for _ in range(flips):
        i = int(rng.integers(0, len(content)))
        content[i] ^= 1 << int(rng.integers(0, 8))
    try:
        expected = decode_predicted_reference(bytes(content), S)
    except TcsFormatError as exc:
        with pytest.raises(TcsFormatError) as got:
            decode_predicted(bytes(content), S)
        assert str(got.value) == str(exc)
    else:
        assert np.array_equal(decode_predicted(bytes(content), S), expected)


def test_codes_longer_than_an_escape_decode_as_the_reference():
    """The reference reads a run of more than ESCAPE ones as that quotient
    (no writer makes one): the compiled reader reads it alike, at any
    length, across its 64-bit window."""
    S = np.full((1, 8), 2, np.uint8)
    for run in (25, 40, 63, 64, 65, 130):
        unary = "1" * run + "0" + "0" * 7  # the first value's code, then seven zeros
        unary += "0" * (-len(unary) % 8)
        body = int(unary, 2).to_bytes(len(unary) // 8, "big")
        content = predictive.content_head([0] * predictive.N_STAGES, 0, len(body)) + body
        expected = decode_predicted_reference(content, S)
        assert expected[0, 0] == (run // 2 if run % 2 == 0 else -(run // 2) - 1)
        assert np.array_equal(decode_predicted(content, S), expected)


def test_division_tables_give_the_exact_quotient_below_2_31():
    """The prediction's multiplication and shift equal n // (2 den) for
    every neighbour mask sum and dividends at and around each multiple
    (where a rounding error would show), and at the ends of the range."""
    from tcscodec.rice_kernels import _FITS, _MAGIC, _SHIFT

    assert _MAGIC[0] == 0  # den = 0: the prediction is 0
    rng = np.random.default_rng(0)
    for den in range(1, _MAGIC.size):
        d = 2 * den
        q = np.unique(np.concatenate([np.arange(0, 64), rng.integers(0, _FITS // d, 2000), [_FITS // d]]))
        n = (q[:, None] * d + np.array([-1, 0, 1, d - 1])).ravel()
        n = np.concatenate([n[(n >= 0) & (n < _FITS)], np.arange(_FITS - 300, _FITS)]).astype(np.uint64)
        assert np.array_equal((n * _MAGIC[den]) >> _SHIFT[den], n // np.uint64(d)), den


@pytest.mark.parametrize("stored", DTYPES)
@pytest.mark.parametrize("source", ["uint16", "int32", "int64"])
def test_decoding_into_a_stored_dtype_equals_the_reference_and_its_error(stored, source):
    """decode_predicted(content, csum, dtype): the values as ``dtype``, or
    the reference's error where one does not fit it."""
    rng = np.random.default_rng(len(stored) * 13 + len(source))
    for kind in ("smooth", "full", "hot"):
        q, S = _tile(rng, source, (70, 90), 12, kind)
        content = encode_predicted_reference(q, S)
        if content is None:
            continue
        try:
            expected = predictive.fit_dtype(decode_predicted_reference(content, S), np.dtype(stored))
        except TcsFormatError as exc:
            with pytest.raises(TcsFormatError) as got:
                decode_predicted(content, S, np.dtype(stored))
            assert str(got.value) == str(exc)
        else:
            got = decode_predicted(content, S, np.dtype(stored))
            assert got.dtype == np.dtype(stored) and np.array_equal(got, expected)
            assert np.array_equal(got, q)


def test_plans_are_kept_only_for_read_only_mask_sums():
    from tcscodec.rice_kernels import _plan

    S = np.arange(12, dtype=np.uint8).reshape(3, 4)
    q = np.arange(12, dtype=np.uint16).reshape(3, 4) * 7
    first = _plan(S)[0]
    content = encode_predicted(q, S)
    S[1, 1] = 60  # a writeable array may change: planned again each time
    assert first is not _plan(S)[0]
    assert encode_predicted(q, S) == encode_predicted_reference(q, S) != content
    R = S.copy()
    R.flags.writeable = False
    assert _plan(R)[0] is _plan(R)[0]
    assert np.array_equal(decode_predicted(encode_predicted(q, R), R), q)


@pytest.mark.parametrize("top", [127, 128, 255])
def test_mask_sums_past_127_take_the_wide_plan(top):
    from tcscodec.rice_kernels import _plan

    rng = np.random.default_rng(top)
    S = rng.integers(0, top, (40, 50), endpoint=True).astype(np.uint8)
    S[0, 0] = top
    q = rng.integers(0, 5000, (40, 50)).astype(np.uint32)
    assert _plan(S)[1] == (7 if top <= 127 else 8)
    _same(q, S)


def test_plans_kept_stay_within_their_bytes(monkeypatch):
    from tcscodec import rice_kernels

    monkeypatch.setattr(rice_kernels, "_PLANS", {})
    monkeypatch.setattr(rice_kernels, "_PLANS_BYTES", 3 * (64 + 16) ** 2 * 2)
    sums = []
    for i in range(6):
        S = np.full((64, 64), i % 5, np.uint8)
        S.flags.writeable = False
        sums.append(S)
        rice_kernels._plan(S)
        assert sum(p.nbytes for _, p, _ in rice_kernels._PLANS.values()) <= rice_kernels._PLANS_BYTES
    assert [entry[0] for entry in rice_kernels._PLANS.values()] == sums[3:]  # the newest three


@pytest.mark.parametrize("dtype", ["uint16", "uint32", "int64"])
def test_the_coding_order_plan_up_to_its_largest_value(monkeypatch, dtype):
    """Tiles of non-negative values up to _CODED_MAX go through the
    coding-order plan (every dividend below 2^31 with mask sums of 255),
    one past it through the padded plan: the reference's bytes either way."""
    from tcscodec import rice_kernels

    calls = []
    real = rice_kernels._residuals_coded
    monkeypatch.setattr(rice_kernels, "_residuals_coded", lambda *a: calls.append(1) or real(*a))
    rng = np.random.default_rng(5)
    S = rng.integers(0, 255, (70, 90), endpoint=True).astype(np.uint8)
    S[:8, :8] = 0  # unmeasured pixels: predictions of 0 from no neighbour
    R = _read_only(S)
    top = rice_kernels._CODED_MAX
    for hi, coded in ((min(top, np.iinfo(dtype).max), True), (top + 1, False)):
        if hi > np.iinfo(dtype).max:
            continue
        q = rng.integers(0, hi, S.shape, endpoint=True).astype(dtype)
        q[-1, -1] = hi
        calls.clear()
        assert encode_predicted(q, R) == encode_predicted_reference(q, S)
        assert bool(calls) == coded
        assert np.array_equal(decode_predicted(encode_predicted(q, R), R), q.astype(np.int64))
    negative = rng.integers(-5, 50, S.shape).astype(np.int64)
    calls.clear()
    assert encode_predicted(negative, R) == encode_predicted_reference(negative, S) and not calls


def test_coding_order_plans_stay_within_their_bytes_and_go_with_their_plans(monkeypatch):
    from tcscodec import rice_kernels

    monkeypatch.setattr(rice_kernels, "_PLANS", {})
    monkeypatch.setattr(rice_kernels, "_CODED", {})
    monkeypatch.setattr(rice_kernels, "_PLANS_BYTES", 3 * (64 + 16) ** 2 * 2)
    monkeypatch.setattr(rice_kernels, "_CODED_BYTES", 2 * 64 * 64 * 8)
    q = np.random.default_rng(1).integers(0, 100, (64, 64)).astype(np.uint16)
    sums = [_read_only(np.full((64, 64), 1 + i, np.uint8)) for i in range(6)]
    for i, S in enumerate(sums):
        assert encode_predicted(q, S) == encode_predicted_reference(q, S)
        assert sum(c.nbytes for c in rice_kernels._CODED.values()) <= rice_kernels._CODED_BYTES
        assert set(rice_kernels._CODED) <= set(rice_kernels._PLANS)  # a coding-order plan goes with its plan
    # the first two got coding-order plans; when their plans were dropped the next ones took their place
    assert [id(S) for S in sums[3:]] == list(rice_kernels._PLANS) and len(rice_kernels._CODED) == 2
