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


# --- CUDA -----------------------------------------------------------------------


def _cuda_available() -> bool:
    """CuPy imports and sees a CUDA device (never raises)."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


#: Whether this machine can run the CUDA encoder (CuPy + a GPU).
HAVE_CUDA = _cuda_available()

#: Reusable skip condition: ``@requires_cuda`` on a test or a module's
#: ``pytestmark``.  Tests marked ``@pytest.mark.gpu`` are skipped the same way
#: (see pytest_collection_modifyitems below).
requires_cuda = pytest.mark.skipif(not HAVE_CUDA, reason="needs CuPy and a CUDA GPU")


def pytest_collection_modifyitems(config, items):
    """Skip ``gpu``-marked tests without CuPy and a CUDA device, as the marker
    promises (pyproject.toml), so no GPU test fails on a CPU-only machine."""
    if HAVE_CUDA:
        return
    skip = pytest.mark.skip(reason="needs CuPy and a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def torch_one_thread():
    """One intra-op torch thread for a module: its tensors are small, and on a
    shared machine OpenMP threads waiting on busy cores slow torch down badly."""
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
