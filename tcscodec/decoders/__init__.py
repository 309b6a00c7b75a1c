"""Decoders: the registry, the tiled decoding engine and the built-in decoders.

Importing this package does not import torch; the engine and the decoders
(which need it) are loaded on first use of their names::

    from tcscodec.decoders import decode_tiled, get_decoder
    frames = decode_tiled(y, mask_fn, n_frames=10, decoder="gap-tv")

Public names
------------
:class:`Decoder`, :func:`register_decoder`, :func:`get_decoder`, :func:`decoder_class`,
:func:`available_decoders`, :func:`default_decoder`
    The decoder interface and registry (:mod:`.base`).
:func:`decode_tiled`, :func:`tile_layout`, :func:`blend_window`
    Tiled, batched inference with overlap blending (:mod:`.tiling`).
:class:`GapTV`, :func:`tv_denoise`
    The classical GAP-TV decoder, registered as ``"gap-tv"``; the function
    form is :func:`tcscodec.decoders.gap_tv.gap_tv` (the submodule owns the
    name ``gap_tv`` in this package).
"""

from .base import (
    Decoder,
    available_decoders,
    decoder_class,
    default_decoder,
    get_decoder,
    register_decoder,
    require_torch,
)

__all__ = [
    "Decoder",
    "register_decoder",
    "get_decoder",
    "decoder_class",
    "available_decoders",
    "default_decoder",
    "decode_tiled",
    "tile_layout",
    "blend_window",
    "GapTV",
    "tv_denoise",
]

# Names served lazily (PEP 562) so that `import tcscodec.decoders` stays
# free of torch.
_LAZY = {
    "decode_tiled": "tiling",
    "tile_layout": "tiling",
    "blend_window": "tiling",
    "GapTV": "gap_tv",
    "tv_denoise": "gap_tv",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    require_torch()
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
