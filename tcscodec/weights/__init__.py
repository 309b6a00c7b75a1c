"""The weights zoo: trained parameters shipped inside the package.

Architectures live in :mod:`tcscodec.decoders`; this package only holds
weight files and their records (``zoo.json``): for each model, the file,
its SHA-256, the architecture config, and the command and training config
that produced it (``tcscodec train``), so every shipped file can be
reproduced and checked.  Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from typing import Any

from ..errors import TcsDecoderError

__all__ = ["zoo", "available", "weight_record", "load_state", "sha256_of"]


def zoo() -> dict[str, dict[str, Any]]:
    """The records of ``zoo.json`` (empty when no weights ship)."""
    f = resources.files(__name__).joinpath("zoo.json")
    if not f.is_file():
        return {}
    return json.loads(f.read_text(encoding="utf-8"))


def available(name: str) -> bool:
    """Whether weights for model ``name`` ship with this installation."""
    rec = zoo().get(name)
    return rec is not None and bool(rec) and resources.files(__name__).joinpath(rec["file"]).is_file()


def weight_record(name: str) -> dict[str, Any]:
    """The zoo record of model ``name``."""
    try:
        return zoo()[name]
    except KeyError:
        raise TcsDecoderError(
            f"no weights for {name!r} ship with this installation; train them with 'tcscodec train'"
        ) from None


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_state(name: str):
    """Load the state dict of model ``name``, verifying its SHA-256.

    Returns ``(state_dict, record)``.
    """
    import io

    import torch

    rec = weight_record(name)
    f = resources.files(__name__).joinpath(rec["file"])
    if not f.is_file():
        raise TcsDecoderError(f"weights file {rec['file']} of {name!r} is missing from the package")
    data = f.read_bytes()
    digest = sha256_of(data)
    if digest != rec["sha256"]:
        raise TcsDecoderError(
            f"weights file {rec['file']} is damaged: SHA-256 {digest[:16]}... != {rec['sha256'][:16]}..."
        )
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return state, rec
