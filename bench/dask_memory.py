"""Peak memory of dask workers decoding a multi-gigabyte ``.tcs`` file.

    python bench/dask_memory.py [--file big.tcs] [--frames 2400] [--size 4096] [--chunks 12]

Writes (unless ``--file`` exists already) a lossless movie of ``--frames``
frames of ``--size``^2 uint16 (Poisson counts, mean 20, over a drifting
texture; B = 10, shuffle-zstd records) - a few seconds of a 4k counting
detector - then opens it with :func:`tcscodec.to_dask` on a
``dask.distributed.LocalCluster`` of 2 single-threaded worker processes
and computes ``--chunks`` chunks (one group by one 512^2 record tile each,
the default chunking) spread over the whole file, with the learned decoder.

Prints each worker's peak resident memory after the first chunk and after
all of them, next to the file's size, the decoded movie's size and one
chunk's size: a worker holds a chunk and the decoder, not the movie.  One
chunk is checked against :meth:`TcsReader.__getitem__` in this process.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import tcscodec

MB = 1 << 20


def _memory_mb() -> tuple[float, float]:
    """This process's resident memory now and at its peak (MB; Linux)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _reset_peak() -> tuple[float, float]:
    """Restart the peak at the present resident memory (a worker forked
    from a big client inherits the client's peak)."""
    Path("/proc/self/clear_refs").write_text("5")
    return _memory_mb()


def write_big(path: Path, frames: int, size: int, B: int = 10) -> None:
    """A drifting Poisson movie, streamed frame by frame (never held whole)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:size, :size].astype(np.float32)
    scene = 20 * (1 + 0.5 * np.sin(x / 7.0) * np.cos(y / 11.0))
    noisy = [rng.poisson(scene).astype(np.uint16) for _ in range(8)]  # Poisson draws, reused
    t0 = time.perf_counter()
    with tcscodec.TcsWriter(path, B, seed=0, codec="shuffle-zstd", level=1) as w:
        for t in range(frames):
            w.write(np.roll(noisy[t % len(noisy)], (t // 3, t // 2), axis=(0, 1)))
    print(f"wrote {path} ({path.stat().st_size / 1e9:.2f} GB, {frames} frames of {size}^2 uint16, B = {B}) "
          f"in {time.perf_counter() - t0:.0f} s")


def main(argv=None) -> None:
    import distributed
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", type=Path, default=Path("big.tcs"))
    ap.add_argument("--frames", type=int, default=2400)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--chunks", type=int, default=12)
    args = ap.parse_args(argv)
    if not args.file.exists():
        write_big(args.file, args.frames, args.size)
    torch.set_num_threads(1)
    arr = tcscodec.to_dask(args.file)
    ct, cy, cx = (c[0] for c in arr.chunks)
    grid = [len(c) for c in arr.chunks]
    rng = np.random.default_rng(1)
    picks = [(0, 0, 0)] + [tuple(int(rng.integers(n)) for n in grid) for _ in range(args.chunks - 1)]
    blocks = [arr.blocks[p] for p in picks]
    movie_bytes = np.prod(arr.shape) * arr.dtype.itemsize
    chunk_bytes = ct * cy * cx * arr.dtype.itemsize
    print(f"file {args.file.stat().st_size / 1e9:.2f} GB; decoded movie {arr.shape} {arr.dtype} "
          f"{movie_bytes / 1e9:.1f} GB in {np.prod(grid)} chunks of {chunk_bytes / MB:.1f} MB; computing {len(picks)}")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  env={"OMP_NUM_THREADS": "1"}) as cluster, distributed.Client(cluster) as client:
        idle = client.run(_reset_peak)
        t0 = time.perf_counter()
        first = blocks[0].compute()
        after_one = client.run(_memory_mb)
        results = client.compute(blocks[1:], sync=True)
        seconds = time.perf_counter() - t0
        after_all = client.run(_memory_mb)
    print(f"{len(picks)} chunks decoded in {seconds:.0f} s on 2 workers")
    for w in sorted(idle):
        print(f"worker {w}: resident {idle[w][0]:.0f} MB idle; peak {after_one[w][1]:.0f} MB by the first chunk, "
              f"{after_all[w][1]:.0f} MB by the last (resident then {after_all[w][0]:.0f} MB)")
    with tcscodec.open(args.file) as r:
        (t, i, j) = picks[0]
        ref = r[t * ct:(t + 1) * ct, i * cy:(i + 1) * cy, j * cx:(j + 1) * cx]
    print(f"first chunk equals the reader's: {np.array_equal(first, ref)}; "
          f"{len(results)} more chunks, mean {np.mean([float(b.mean()) for b in results]):.2f}; "
          f"client peak resident memory {_memory_mb()[1]:.0f} MB")


if __name__ == "__main__":
    main()
