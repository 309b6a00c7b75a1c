"""Record codecs as small registered classes (issue 18, deliverable 2)."""

from __future__ import annotations

import numpy as np
import pytest

from tcscodec.errors import TcsValueError
from tcscodec.format import CODECS, RecordCodec, TcsHeader, get_codec, register_codec
from tcscodec.format.codecs import codec_class, codec_id
from tcscodec.format.records import decode_payload, encode_payload


def test_the_registry_is_the_header_table():
    assert CODECS == {1: "zstd", 2: "shuffle-zstd", 3: "predict-rice"}
    assert [codec_id(n) for n in CODECS.values()] == [1, 2, 3]
    assert [codec_class(n).min_version for n in CODECS.values()] == [(1, 0), (1, 0), (1, 1)]
    assert [codec_class(n).needs_mask_sums for n in CODECS.values()] == [False, False, True]
    h = TcsHeader(height=8, width=8, B=4, dtype="uint16", stored_dtype="uint32", mask_seed=1, codec="zstd")
    assert h.version == (1, 0)


@pytest.mark.parametrize("name", ["zstd", "shuffle-zstd", "predict-rice"])
def test_config_round_trip_and_payloads(name):
    codec = get_codec(name, level=5)
    assert codec.get_config() == {"id": name, "level": 5}
    again = RecordCodec.from_config(codec.get_config())
    assert type(again) is type(codec) and again.level == 5
    tile = np.random.default_rng(0).integers(0, 300, (9, 13)).astype(np.uint32)
    csum = np.full(tile.shape, 4, np.uint8)
    payload = codec.encode(tile, csum)
    assert payload == encode_payload(tile, name, 5, csum)
    assert np.array_equal(decode_payload(payload, name, np.uint32, tile.shape, csum), tile)
    assert codec.uses_mask_sums(np.uint32) == (name == "predict-rice")
    assert not codec.uses_mask_sums(np.float64)


def test_unknown_and_clashing_codecs_are_refused():
    with pytest.raises(TcsValueError, match="unknown codec 'lz4'"):
        get_codec("lz4")

    class Clash(RecordCodec):
        codec_id = 1
        name = "other"

    with pytest.raises(TcsValueError, match="already registered"):
        register_codec(Clash)
    assert CODECS[1] == "zstd"
