"""Shared fixtures and skip conditions for the tcscodec tests."""

from __future__ import annotations

from pathlib import Path

import pytest

#: ../shared beside the repository root: real and simulated EM data (optional)
SHARED = Path(__file__).resolve().parents[2] / "shared"
SPEC_VECTORS = Path(__file__).resolve().parents[1] / "spec" / "vectors"


@pytest.fixture
def shared_data() -> Path:
    """The ../shared/data folder; skips the test when it is absent."""
    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip("../shared/data is not present")
    return data
