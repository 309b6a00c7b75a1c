"""The decoder interface and registry.

A decoder turns a batch of measurement tiles and their masks back into
frames.  Decoders are registered by name (as CompressAI registers
architectures) and built with :func:`get_decoder`; learned decoders load
their weights from :mod:`tcscodec.weights`, kept apart from the
architectures.

Contract of :meth:`Decoder.decode` (torch tensors, on the decoder's device):

* ``y``: ``(N, h, w)`` float32 measurement tiles, in the input's units
  (``Y = sum_b C_b * X_b``, already dequantised);
* ``masks``: ``(N, n, h, w)`` float32 0/1 masks of the ``n`` frames the
  measurement holds (``n <= B``; a short last group has fewer);
* ``context`` (only for decoders whose ``uses_context`` is true, and
  then optional): ``(N, 2, h, w)`` float32 ``Y / sum C`` of the group
  before and of the group after, NaN where there is none (the first or last
  group of a movie, a lone measurement, pixels no frame of it measured);
* ``shifts`` (only for decoders whose ``uses_motion`` is true, keyword,
  optional): ``(N, n, 2)`` float32 displacement ``(dy, dx)`` in pixels of
  each frame's content (:mod:`tcscodec.motion`, relative to the group's
  middle); None decodes the group as still;
* ``rigid_start`` (only for decoders whose ``takes_rigid_start`` is true,
  keyword, with ``shifts``): True where the reader chose the rigid-scene
  start, the scene most likely drifting as one (a smooth, rigid path:
  :meth:`tcscodec.motion.MotionPath.rigid_start`, or for longer groups the
  measurements: :func:`tcscodec.motion_check.start_score`); such a decoder
  then starts from the rigid-scene solution;
* returns ``(N, n, h, w)`` float32 frames in the input's units.

A decoder must be purely a function of its inputs (no state between
calls), so tiles can be batched and blended in any order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from ..errors import TcsDecoderError, TcsDependencyError, TcsValueError

__all__ = ["Decoder", "register_decoder", "get_decoder", "decoder_class", "available_decoders", "default_decoder",
           "require_torch"]

_REGISTRY: dict[str, Callable[..., Decoder]] = {}


class Decoder:
    """Base class of decoders: subclasses implement :meth:`decode`."""

    #: registry name, set by :func:`register_decoder`
    name: str = ""
    #: pixels of context a tile needs on each side for a seamless result;
    #: the tiling engine uses at least this overlap
    receptive_margin: int = 16
    #: whether :meth:`decode` takes the neighbouring groups' ``context``
    uses_context: bool = False
    #: whether :meth:`decode` takes per-frame ``shifts`` (motion compensation)
    uses_motion: bool = False
    #: whether :meth:`decode` takes ``rigid_start`` (with ``shifts``)
    takes_rigid_start: bool = False

    def __init__(self, device: str = "cpu", **options):
        self.device = device
        self.options = options

    def decode(self, y, masks):  # pragma: no cover - interface
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device!r})"


def register_decoder(name: str):
    """Class decorator registering a :class:`Decoder` under ``name``."""

    def wrap(cls):
        if name in _REGISTRY:
            raise TcsValueError(f"decoder {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def get_decoder(name: str, device: str = "cpu", **options) -> Decoder:
    """Build the decoder registered as ``name`` on ``device``."""
    return decoder_class(name)(device=device, **options)


def decoder_class(name: str) -> type[Decoder]:
    """The class registered as ``name`` (its flags, without building it)."""
    _load_builtin_decoders()
    try:
        # a registered factory (a checkpoint's) carries the class flags too
        return cast("type[Decoder]", _REGISTRY[name])
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise TcsDecoderError(f"unknown decoder {name!r}; available: {known}") from None


def available_decoders() -> list[str]:
    """Names of the registered decoders."""
    _load_builtin_decoders()
    return sorted(_REGISTRY)


def require_torch():
    """``torch``, or a :class:`~tcscodec.errors.TcsDependencyError` that
    says how to install it: encoding needs no torch, decoding does."""
    try:
        import torch
    except ImportError as exc:
        raise TcsDependencyError(
            "decoding needs PyTorch, which is not installed: pip install 'tcscodec[decode]' "
            "(or, CPU only, pip install torch==2.13.0)") from exc
    return torch


def _load_builtin_decoders() -> None:
    # Importing the modules registers them; done lazily so that importing
    # tcscodec never imports torch.
    require_torch()
    from . import _builtin  # noqa: F401


#: decoders in order of preference for :func:`default_decoder`
PREFERENCE = ("tcs-unfold", "gap-tv")


def default_decoder() -> str:
    """The best decoder available: the learned one when its weights ship
    with the package, else GAP-TV."""
    from .. import weights

    names = available_decoders()
    for name in PREFERENCE:
        # A learned decoder counts only when its weights ship.
        if name in names and (name == "gap-tv" or weights.available(name)):
            return name
    return names[0]
