"""Imports every built-in decoder module so each registers itself."""

from . import (
    gap_tv,  # noqa: F401
    learned,  # noqa: F401
    rigid_tv,  # noqa: F401
)
