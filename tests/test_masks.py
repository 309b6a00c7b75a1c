"""The spec's mask generator (splitmix64-v1): known values and properties."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcscodec.masks import mask_frame, mask_sum, mask_words, masks, mix64, packed_masks, unpack_words

GOLDEN = 0x9E3779B97F4A7C15
M64 = (1 << 64) - 1


def reference_bit(seed, b, y, x):
    """The spec's formula in plain Python integers, one pixel at a time."""
    def mix(z):
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)
    key = mix((seed + GOLDEN) & M64)
    counter = (b << 48) | (y << 24) | (x >> 6)
    word = mix((key + (counter + 1) * GOLDEN) & M64)
    return (word >> (x & 63)) & 1


def test_splitmix64_known_value():
    # First output of SplitMix64 seeded with 0 (the published reference value).
    assert mix64(GOLDEN) == 0xE220A8397B1DCDAF
    assert int(mix64(np.array([GOLDEN], np.uint64))[0]) == 0xE220A8397B1DCDAF


@pytest.mark.parametrize("seed", [0, 1, 2**63 + 5, 2**64 - 1])
def test_masks_match_plain_python_formula(seed):
    rng = np.random.default_rng(seed % 1000)
    C = masks(seed, 5, 9, 200)
    for _ in range(200):
        b, y, x = rng.integers(5), rng.integers(9), rng.integers(200)
        assert C[b, y, x] == reference_bit(seed, int(b), int(y), int(x))


def test_far_coordinates():
    seed, b, y, x = 7, 63, 2**24 - 1, 2**30 - 1
    w = mask_words(seed, [b], [y], [x >> 6])
    assert (int(w[0, 0, 0]) >> (x & 63)) & 1 == reference_bit(seed, b, y, x)


def test_regions_frames_and_packing_agree():
    C = masks(3, 6, 50, 150)
    assert C.dtype == np.uint8 and set(np.unique(C)) == {0, 1}
    assert np.array_equal(masks(3, 6, 50, 150, region=(7, 40, 65, 130)), C[:, 7:40, 65:130])
    assert np.array_equal(mask_frame(3, 4, 50, 150), C[4])
    assert np.array_equal(unpack_words(packed_masks(3, 6, 50, 150), 0, 150), C)
    # the first n masks do not depend on B
    assert np.array_equal(masks(3, 2, 50, 150), C[:2])


def test_balance_and_independence():
    C = masks(11, 8, 256, 256).astype(np.float64)
    assert abs(C.mean() - 0.5) < 0.005
    # different frames and neighbouring pixels are uncorrelated
    assert abs(np.corrcoef(C[0].ravel(), C[1].ravel())[0, 1]) < 0.02
    assert abs(np.corrcoef(C[0, :, :-1].ravel(), C[0, :, 1:].ravel())[0, 1]) < 0.02
    assert not np.array_equal(masks(12, 1, 16, 16), masks(11, 1, 16, 16))


def test_bad_arguments():
    with pytest.raises(ValueError, match="outside"):
        masks(1, 2, 10, 10, region=(0, 11, 0, 5))
    with pytest.raises(ValueError, match="seed"):
        masks(-1, 2, 4, 4)
    with pytest.raises(TypeError, match="integer"):
        masks(1.5, 2, 4, 4)


def test_mask_sum_in_bands_equals_sum_of_masks():
    from tcscodec.masks import mask_sum

    assert np.array_equal(mask_sum(5, 7, 70, 90, band=16), masks(5, 7, 70, 90).sum(0))


def test_stitched_mask_sum_fills_the_rows_asked_for():
    from tcscodec.masks import stitched_mask_sum

    H, W = 70, 90
    tiles = [(y0, min(H, y0 + 32), x0, min(W, x0 + 48)) for y0 in range(0, H, 32) for x0 in range(0, W, 48)]
    whole = mask_sum(5, 7, H, W)
    assert np.array_equal(stitched_mask_sum(5, 7, H, W, tiles), whole)
    rows = [(0, 3), (30, 35), (64, 70)]  # within a tile, across two tiles' border, at the bottom
    part = stitched_mask_sum(5, 7, H, W, tiles, rows)
    inside = np.zeros(H, bool)
    for a, b in rows:
        inside[a:b] = True
    assert np.array_equal(part[inside], whole[inside]) and not part[~inside].any() and whole[~inside].any()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**64 - 1), n=st.integers(0, 300), H=st.integers(1, 40), W=st.integers(1, 300),
       data=st.data())
def test_compiled_words_and_sums_equal_the_numpy_formula(seed, n, H, W, data):
    """packed_masks and mask_sum run compiled kernels: the same words as
    mask_words, the same sums (uint8, wrapping past 255) as summing masks(),
    over any region."""
    y0 = data.draw(st.integers(0, H))
    x0 = data.draw(st.integers(0, W))
    region = (y0, data.draw(st.integers(y0, H)), x0, data.draw(st.integers(x0, W)))
    B = min(n, 70)
    assert np.array_equal(packed_masks(seed, B, H, W), mask_words(seed, range(B), range(H), range((W + 63) // 64)))
    expected = masks(seed, n, H, W, region).sum(0, dtype=np.uint8)
    got = mask_sum(seed, n, H, W, region=region)
    assert got.dtype == np.uint8 and np.array_equal(got, expected)
