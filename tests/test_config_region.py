"""One region check and one config-dict base (issue 18, deliverable 4)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from tcscodec.decoders.unfold_net import UnfoldConfig
from tcscodec.errors import TcsError, TcsRuntimeError, TcsTypeError, TcsValueError
from tcscodec.format import TcsHeader
from tcscodec.format.config import ConfigDict
from tcscodec.format.region import check_region
from tcscodec.masks import masks
from tcscodec.motion import MotionPath
from tcscodec.simulate import SimConfig
from tcscodec.training import TrainConfig


def test_check_region_accepts_windows_and_defaults_to_the_frame():
    assert check_region(None, 4, 6) == (0, 4, 0, 6)
    assert check_region((1, 3, 2, 6), 4, 6) == (1, 3, 2, 6)
    assert check_region([np.int64(0), 4, 0, 1], 4, 6) == (0, 4, 0, 1)
    assert check_region((2, 2, 0, 6), 4, 6, allow_empty=True) == (2, 2, 0, 6)


@pytest.mark.parametrize("region", [(0, 5, 0, 6), (-1, 2, 0, 6), (2, 2, 0, 6), (3, 1, 0, 6), (0, 4, 6, 7)])
def test_check_region_refuses_empty_or_outside(region):
    with pytest.raises(TcsValueError, match="empty or outside the 4x6 frame"):
        check_region(region, 4, 6)


@pytest.mark.parametrize("region", [(0, 1, 0), "abcd", 3, (0, 1, 0, "x")])
def test_check_region_refuses_what_is_not_four_integers(region):
    with pytest.raises(TcsValueError, match=r"region must be \(y0, y1, x0, x1\)"):
        check_region(region, 4, 6)


def test_masks_region_errors_are_tcs_value_errors():
    with pytest.raises(TcsValueError, match="outside the 4x6 frame"):
        masks(1, 2, 4, 6, (0, 5, 0, 6))
    assert masks(1, 2, 4, 6, (1, 1, 0, 6)).shape == (2, 0, 6)
    with pytest.raises(TcsTypeError, match="integer"):
        masks(1.5, 2, 4, 6)


def test_new_error_classes_keep_the_builtin():
    assert issubclass(TcsTypeError, TypeError) and issubclass(TcsTypeError, TcsError)
    assert issubclass(TcsRuntimeError, RuntimeError) and issubclass(TcsRuntimeError, TcsError)


@dataclass(frozen=True)
class _Point(ConfigDict):
    x: int
    y: int = 0
    tags: tuple = ()

    def _to_json(self, d):
        d["tags"] = list(self.tags)
        return d

    @classmethod
    def _from_json(cls, d):
        d["tags"] = tuple(d.get("tags", ()))
        return d


def test_config_dict_round_trip_and_hooks():
    p = _Point(1, 2, ("a",))
    d = json.loads(json.dumps(p.to_dict()))
    assert d == {"x": 1, "y": 2, "tags": ["a"]}
    assert _Point.from_dict(d) == p
    assert _Point.from_dict({"x": 3}) == _Point(3)


def test_config_dict_refuses_unknown_and_missing_keys():
    with pytest.raises(TcsValueError, match="unknown _Point key.*bogus, zz; the fields are tags, x, y"):
        _Point.from_dict({"x": 1, "zz": 0, "bogus": 2})
    with pytest.raises(TcsValueError, match="lacks the key.*x"):
        _Point.from_dict({"y": 1})
    with pytest.raises(TcsValueError, match="from a dict, not list"):
        _Point.from_dict([1, 2])


@pytest.mark.parametrize("obj", [
    TcsHeader(height=8, width=8, B=4, dtype="uint16", stored_dtype="uint32", mask_seed=1, metadata={"a": 1}),
    UnfoldConfig(stages=1, width=8),
    TrainConfig(),
    MotionPath(np.zeros((4, 2)), (0, 2), (0.5,)),
    SimConfig(),
])
def test_every_config_class_shares_the_behaviour(obj):
    cls = type(obj)
    d = json.loads(json.dumps(obj.to_dict()))
    back = cls.from_dict(d)
    if isinstance(obj, MotionPath):
        assert np.array_equal(back.frames, obj.frames) and back.group_starts == obj.group_starts
    else:
        assert back == obj
    with pytest.raises(TcsValueError, match=f"unknown {cls.__name__} key.*not_a_field"):
        cls.from_dict({**d, "not_a_field": 1})
