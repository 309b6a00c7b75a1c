"""GAP-TV on the public grayscale video-SCI benchmark (B = 8).

With each file's own mask, ``tcscodec.reconstruct`` with the default GAP-TV
options must match the published GAP-TV PSNR (cacti tables: Traffic 20.65,
Runner 30.13, Drop 34.50 dB) within 0.3 dB, or beat it.  PSNR is the mean
over frames of ``20 log10(255 / RMSE)`` on [0, 255].

Layout of the files (checked below): ``scipy.io.loadmat`` gives ``orig``
(256, 256, T) uint8, ``mask`` (256, 256, 8) and ``meas`` (256, 256, G) as
(row, column, frame), i.e. frame t is ``orig[:, :, t]`` with no spatial
transpose, and ``meas[:, :, g] == sum_b mask[:, :, b] * orig[:, :, 8g + b]``
for every complete group g of ``orig`` (the runner and drop files hold more
measurements than ground-truth frames; only the first is used).

Skipped when ../shared (beside the repository root) is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
scipy_io = pytest.importorskip("scipy.io")

import tcscodec.reconstruction as tr  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
BENCH = SHARED / "data" / "sci_benchmark"

#: file -> published GAP-TV PSNR (dB) with the file's own mask
PUBLISHED = {
    "traffic_cacti.mat": 20.65,
    "runner8_cacti.mat": 30.13,
    "drop8_cacti.mat": 34.50,
}
TOLERANCE = 0.3

pytestmark = [pytest.mark.shared, pytest.mark.usefixtures("torch_one_thread")]




def _load(path: Path) -> dict[str, np.ndarray]:
    """The file's arrays in MATLAB (row, column, frame) order."""
    try:
        return {k: v for k, v in scipy_io.loadmat(path).items() if not k.startswith("__")}
    except NotImplementedError:  # MATLAB v7.3 is HDF5
        h5py = pytest.importorskip("h5py")
        with h5py.File(path, "r") as f:
            # HDF5 stores MATLAB's column-major arrays with the axes reversed.
            return {k: np.transpose(f[k][()]) for k in f.keys()}


def _psnr(x: np.ndarray, ref: np.ndarray) -> float:
    """Mean over frames of 20 log10(255 / RMSE), on [0, 255]."""
    x = np.clip(x.astype(np.float64), 0, 255)
    ref = ref.astype(np.float64)
    rmse = np.sqrt(((x - ref) ** 2).mean(axis=(1, 2)))
    return float(np.mean(20 * np.log10(255.0 / rmse)))


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_gap_tv_matches_published_psnr(name):
    path = BENCH / name
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    d = _load(path)
    orig = np.moveaxis(d["orig"], -1, 0).astype(np.float64)  # (T, H, W)
    mask = np.moveaxis(d["mask"], -1, 0).astype(np.uint8)  # (B, H, W)
    meas = np.moveaxis(d["meas"], -1, 0).astype(np.float64)  # (G, H, W)
    B = mask.shape[0]
    assert B == 8 and set(np.unique(mask)) <= {0, 1}
    groups = orig.shape[0] // B

    recon = []
    for g in range(groups):
        truth = orig[g * B : (g + 1) * B]
        # The stored measurement is the sum of the masked frames.
        np.testing.assert_allclose(meas[g], (mask * truth).sum(0), atol=1e-6)
        recon.append(tr.reconstruct(meas[g], mask, decoder="gap-tv"))
    recon = np.concatenate(recon)
    psnr = _psnr(recon, orig[: groups * B])
    print(f"{name}: GAP-TV {psnr:.2f} dB (published {PUBLISHED[name]:.2f})")
    assert psnr >= PUBLISHED[name] - TOLERANCE
