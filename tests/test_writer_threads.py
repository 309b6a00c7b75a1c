"""The writer on its threads: the same bytes as the numpy reference path
and as the spec vectors, on any number of threads; the work pool."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

import tcscodec
from tcscodec import cpu_kernels, quantize_kernels
from tcscodec.format import predictive
from tcscodec.work_pool import WorkPool, row_bands

from .conftest import SPEC_VECTORS

VECTORS = json.loads((SPEC_VECTORS / "vectors.json").read_text())["vectors"]


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v["name"])
def test_the_writer_reproduces_the_spec_vectors_byte_for_byte(v, tmp_path):
    frames = np.load(SPEC_VECTORS / f"{v['name']}.frames.npy")
    path = tmp_path / "v.tcs"
    tcscodec.write(path, frames, B=v["B"], group_lengths=v.get("group_lengths"), seed=v["mask_seed"],
                   tile=tuple(v["tile"]), codec=v["codec"], quant_step=v["quant_step"],
                   metadata={"vector": v["name"], "pixel_size_A": 1.5}, threads=2)
    assert path.read_bytes() == (SPEC_VECTORS / f"{v['name']}.tcs").read_bytes()


def _movie(dtype):
    rng = np.random.default_rng(7)
    t, y, x = np.meshgrid(np.arange(13), np.arange(70), np.arange(83), indexing="ij")
    lam = 30 * (1 + np.sin((x - 0.5 * t) / 5.0) * np.cos(y / 7.0))
    frames = rng.poisson(lam).astype(np.float64)
    frames[:, 5, 9] = 250  # a hot pixel: escapes
    return frames.astype(dtype)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_kernels_and_threads_write_the_reference_bytes(dtype, tmp_path, monkeypatch):
    frames = _movie(dtype)
    options = dict(B=5, seed=11, tile=(32, 48), quant_step="auto")
    written = {}
    for threads in (1, 2, 3):
        written[threads] = tmp_path / f"t{threads}.tcs"
        tcscodec.write(written[threads], frames, threads=threads, **options)
    # the numpy reference everywhere: sums, quantisation, noise estimate, record coding
    monkeypatch.setattr(cpu_kernels, "numba", None)
    monkeypatch.setattr(quantize_kernels, "numba", None)
    before = predictive.use_kernels(None)
    try:
        tcscodec.write(tmp_path / "ref.tcs", frames, threads=1, **options)
    finally:
        predictive.use_kernels(*before)
    reference = (tmp_path / "ref.tcs").read_bytes()
    with tcscodec.open(tmp_path / "ref.tcs") as r:
        assert r.header.quant_step > 1  # quantised: the auto step and the quantiser were both compared
    for threads, path in written.items():
        assert path.read_bytes() == reference, f"{threads} threads"


def test_row_bands_cover_the_rows():
    assert row_bands((2048, 2048), 4) == [(0, 512), (512, 1024), (1024, 1536), (1536, 2048)]
    assert row_bands((10, 10), 4) == [(0, 10)]  # too few pixels for more than one band
    assert row_bands((3, 1 << 20), 8) == [(0, 1), (1, 2), (2, 3)]  # never more bands than rows


def test_the_pool_runs_urgent_work_first():
    pool = WorkPool(1)
    gate, running = threading.Event(), threading.Event()
    order = []
    try:
        pool.submit(lambda: (running.set(), gate.wait()))  # holds the one thread
        running.wait()
        normal = [pool.submit(order.append, f"tile {i}") for i in range(3)]
        urgent = threading.Thread(target=pool.run, args=([lambda: order.append("band")],))
        urgent.start()
        while not pool._queues[0]:  # the band is queued behind the running task
            threading.Event().wait(0.001)
        gate.set()
        urgent.join()
        for f in normal:
            f.result()
        assert order == ["band", "tile 0", "tile 1", "tile 2"]
    finally:
        pool.shutdown()


def test_the_pool_reports_errors_and_cancels_on_shutdown():
    pool = WorkPool(2)
    with pytest.raises(ZeroDivisionError):
        pool.run([lambda: 1, lambda: 1 / 0])
    assert pool.run([lambda: 1, lambda: 2]) == [1, 2]
    gate = threading.Event()
    running = [threading.Event(), threading.Event()]
    for started in running:
        pool.submit(lambda started=started: (started.set(), gate.wait()))  # holds both threads
    for started in running:
        started.wait()
    queued = pool.submit(lambda: 3)
    pool.shutdown(wait=False, cancel_futures=True)
    assert queued.cancelled()
    gate.set()
    pool.shutdown()  # joins the threads
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(lambda: 4)
