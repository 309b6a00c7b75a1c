"""Parallel decoding: one thread against two, one dask worker against two.

    python bench/decode_parallel.py                 # an 80-frame 512^2 demo movie, B = 10, the learned decoder
    python bench/decode_parallel.py movie.tcs

Decodes every group with :meth:`tcscodec.TcsReader.iter_groups` four ways,
one torch thread per decoding thread or worker: here one group at a time,
a thread pool of 2, and dask.distributed local clusters of 1 and 2
single-threaded worker processes.  Best of two timed runs each, after a
warm-up; the speed-ups are ratios timed in the same run (this machine is
shared and noisy).  Start-up and the output file are not in the times.
"""

from __future__ import annotations

import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import tcscodec


def _decode_all(path, executor) -> float:
    t0 = time.perf_counter()
    with tcscodec.open(path) as r:
        for _ in r.iter_groups(executor=executor):
            pass
    return time.perf_counter() - t0


def _best(path, executor) -> float:
    _decode_all(path, executor)
    return min(_decode_all(path, executor) for _ in range(2))


def main() -> None:
    import distributed
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tmp) / "demo.tcs"
        if len(sys.argv) == 1:
            from tcscodec.simulate import sample_movie

            tcscodec.write(path, sample_movie((512, 512), 80, seed=1).frames, B=10, seed=0, quant_step="auto")
        times = {"1 thread": _best(path, None)}
        with ThreadPoolExecutor(2) as pool:
            times["2 threads"] = _best(path, pool)
        for n in (1, 2):
            with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                                          env={"OMP_NUM_THREADS": "1"}) as cluster, \
                    distributed.Client(cluster) as client:
                times[f"{n} dask worker{'s' * (n > 1)}"] = _best(path, client)
    for name, t in times.items():
        print(f"{name:15s} {t:6.1f} s")
    print(f"2 threads / 1 thread: {times['1 thread'] / times['2 threads']:.2f}x; "
          f"2 dask workers / 1: {times['1 dask worker'] / times['2 dask workers']:.2f}x")


if __name__ == "__main__":
    main()
