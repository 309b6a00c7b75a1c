"""CPU encoding against memcpy and bitshuffle-LZ4 (issue 15's table), and the reading rate of records.

    python bench/encode_cpu.py [--size 2048] [--frames 60] [--rounds 5] [--dir /dev/shm] [--json out.json]

Every row is MB/s of *input* frames, the median of ``--rounds`` interleaved
rounds (each round runs every row once, so a noisy moment slows all rows
alike), with its ratio to numpy memcpy and to blosc2 bitshuffle + LZ4
(what detector software writes today) of the same frames.  Frames are
Poisson counts (mean 20) in uint16 and in uint8, ``size^2``, drawn with a
fresh seed each run (``--seed`` to repeat one); JPEG, as in the issue,
codes 512^2 uint8 frames (4x as many).  Rows with "2 threads" give the
codec two threads; the others one (``tcscodec.write(threads=1)`` keeps
the writer on one core).  Files go to ``--dir`` (default: the temporary
folder; a tmpfs such as /dev/shm keeps the disk out of the times).

Then: the file ratio of each write, the reading rate of records (one
thread, MB/s of stored measurement decoded, from files written above),
the auto-step estimate against one group's encode time, and how many host
cores the CUDA encoder's host stage (quantise + record coding; the GPU
does the sums) needs for 4096^2 uint16 at 400 frames/s (13.4 GB/s),
from the per-core rate measured here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import tcscodec
from tcscodec.encoder import CpuEncoder
from tcscodec.format import ContainerReader, get_codec
from tcscodec.masks import stitched_mask_sum, tile_mask_sum
from tcscodec.measurement import measurement_dtype
from tcscodec.quantize import noise_rows, noise_std, quantize
from tcscodec.writer import AUTO_FRACTION

#: the stream the CUDA encoder's host stage must keep up with: 4096^2 uint16 at 400 frames/s
GPU_STREAM = 4096 * 4096 * 2 * 400


def _optional(name: str):
    try:
        return __import__(name)
    except ImportError:
        return None


def _blosc2(frames: np.ndarray, threads: int) -> Callable[[], None] | None:
    blosc2 = _optional("blosc2")
    if blosc2 is None:
        return None
    cparams = dict(codec=blosc2.Codec.LZ4, filters=[blosc2.Filter.BITSHUFFLE], typesize=frames.itemsize,
                   nthreads=threads)
    return lambda: [blosc2.compress2(f, **cparams) for f in frames]


def _hdf5(frames: np.ndarray) -> Callable[[], None] | None:
    h5py, hdf5plugin = _optional("h5py"), _optional("hdf5plugin")
    if h5py is None or hdf5plugin is None:
        return None

    def run():
        with h5py.File("bench.h5", "w", driver="core", backing_store=False) as f:
            d = f.create_dataset("frames", frames.shape, frames.dtype, chunks=(1, *frames.shape[1:]),
                                 **hdf5plugin.Bitshuffle(cname="lz4"))
            for i, frame in enumerate(frames):
                d[i] = frame
    return run


def _jpeg(frames: np.ndarray) -> Callable[[], None] | None:
    imagecodecs = _optional("imagecodecs")
    if imagecodecs is not None:
        return lambda: [imagecodecs.jpeg8_encode(f, level=75) for f in frames]
    pil = _optional("PIL.Image")
    if pil is None:
        return None
    import io

    from PIL import Image

    return lambda: [Image.fromarray(f).save(io.BytesIO(), "JPEG", quality=75) for f in frames]


def _push(frames: np.ndarray, B: int, threads: int) -> Callable[[], None]:
    # one stream for all rounds: the masks are made once, outside the times (once per movie in use)
    enc = CpuEncoder(1, B, frames.shape[1:], frames.dtype, threads=threads)

    def run():
        for f in frames:
            enc.push(f)
    return run


def _accumulate(frames: np.ndarray) -> Callable[[], None]:
    acc = np.zeros(frames.shape[1:], measurement_dtype(frames.dtype))

    def run():
        for f in frames:
            np.add(acc, f, out=acc)
    return run


def _rows(frames: np.ndarray, folder: Path, files: dict) -> tuple[dict[str, Callable], list[str]]:
    """The timed rows of one dtype, and notes on rows that cannot run."""
    out = np.empty_like(frames[0])
    rows: dict[str, Callable] = {"numpy memcpy": lambda: [np.copyto(out, f) for f in frames]}
    mname = measurement_dtype(frames.dtype).name
    rows[f"numpy acc += frame ({mname} += {frames.dtype.name})"] = _accumulate(frames)
    notes = []
    for threads in (1, 2):
        blosc = _blosc2(frames, threads)
        if blosc is None:
            notes.append("blosc2 is not installed (pip install blosc2): no bitshuffle-LZ4 anchor, ratios to it left out")
            break
        rows[f"blosc2 bitshuffle + LZ4, {threads} thread{'s' * (threads > 1)}"] = blosc
    hdf5 = _hdf5(frames)
    if hdf5 is None:
        notes.append("HDF5 bitshuffle-LZ4 row left out: needs h5py and hdf5plugin")
    else:
        rows["HDF5 bitshuffle-LZ4 filter (hdf5plugin, in memory)"] = hdf5
    for B in (10, 30):
        for threads in (1, 2):
            rows[f"CpuEncoder.push, B = {B}, {threads} thread{'s' * (threads > 1)}"] = _push(frames, B, threads)
    for B in (10, 30):
        for codec in ("predict-rice", "shuffle-zstd"):
            for quant in ("auto", 1.0):
                for threads in (1, 2):
                    name = (f"tcscodec.write, {codec}, {'auto' if quant == 'auto' else 'lossless'}, B = {B}, "
                            f"{threads} thread{'s' * (threads > 1)}")
                    path = folder / f"{frames.dtype.name}-{codec}-{quant}-{B}-{threads}.tcs"
                    files[name] = path
                    rows[name] = (lambda path=path, B=B, codec=codec, quant=quant, threads=threads:
                                  tcscodec.write(path, frames, B=B, seed=1, codec=codec, quant_step=quant,
                                                 threads=threads))
    return rows, notes


def _read_rows(files: dict[str, Path]) -> dict[str, tuple[Callable, int]]:
    """Decoding every record of the B = 10 files: (run, bytes of stored measurement)."""
    rows = {}
    for name, path in files.items():
        if not name.endswith("B = 10, 1 thread"):
            continue
        with tcscodec.open(path) as r:
            h, n_groups = r.header, r.n_groups
        stored = h.height * h.width * np.dtype(h.stored_dtype).itemsize * n_groups

        def run(path=path, h=h, n_groups=n_groups):
            with ContainerReader(path, mask_sum=lambda n, b: tile_mask_sum(h.mask_seed, n, h.height, h.width, b)) as c:
                for g in range(n_groups):
                    c.read_measurement(g)
        rows[name.replace("tcscodec.write, ", "").replace(", 1 thread", "")] = (run, stored)
    return rows


def _host_stage(frames: np.ndarray, B: int) -> tuple[float, float]:
    """(seconds per group of quantise + predict-rice coding on one core, of
    the auto-step estimate), for the default write of ``frames``' first group."""
    y = sum(f.astype(np.uint32) for f in frames[:B])  # any measurement of the right size and range
    H, W = y.shape
    codec = get_codec("predict-rice")
    tiles = [(y0, min(H, y0 + 512), x0, min(W, x0 + 512)) for y0 in range(0, H, 512) for x0 in range(0, W, 512)]
    for b in tiles:
        tile_mask_sum(1, B, H, W, b)  # cached, as in the writer: the records need them too
    t_auto = float("inf")
    for _ in range(3):  # the best of three: the first call may load compiled kernels
        t0 = time.perf_counter()
        # as the writer's _choose_step: the tiles' cached mask sums stitched, the noise estimated
        csum = stitched_mask_sum(1, B, H, W, tiles, noise_rows((H, W)))
        step = AUTO_FRACTION * noise_std(y, csum, (frames[0, :512, :512], frames[1, :512, :512]))
        t_auto = min(t_auto, time.perf_counter() - t0)
    step = float(2 * np.floor((step - 1) / 2) + 1) if step >= 1 else 1.0
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        q = quantize(y, step, np.uint32)
        for y0, y1, x0, x1 in tiles:
            codec.encode(q[y0:y1, x0:x1], tile_mask_sum(1, B, H, W, (y0, y1, x0, x1)))
        best = min(best, time.perf_counter() - t0)
    return best, t_auto


def _table(title: str, rates: dict[str, float], anchor: str | None, notes: list[str]) -> None:
    base = rates["numpy memcpy"]
    print(f"\n### {title}\n")
    print("| path | MB/s of input (median) | x memcpy | x bitshuffle-LZ4 |\n|---|---:|---:|---:|")
    for name, rate in rates.items():
        vs = f"{rate / rates[anchor]:.2f}" if anchor else "-"
        print(f"| {name} | {rate:,.0f} | {rate / base:.3f} | {vs} |")
    for note in notes:
        print(f"\n{note}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--dir", type=Path, help="where the files are written [the temporary folder]")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    movies = {dt: rng.poisson(20, (a.frames, a.size, a.size)).astype(dt) for dt in ("uint16", "uint8")}
    jpeg_frames = rng.poisson(20, (4 * a.frames, 512, 512)).astype(np.uint8)
    results: dict = {"size": a.size, "frames": a.frames, "rounds": a.rounds}
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        files: dict[str, dict[str, Path]] = {}
        plan: dict[str, dict[str, tuple[Callable, int]]] = {}
        notes: dict[str, list[str]] = {}
        for dt, frames in movies.items():
            files[dt] = {}
            rows, notes[dt] = _rows(frames, Path(tmp), files[dt])
            plan[dt] = {name: (fn, frames.nbytes) for name, fn in rows.items()}
        jpeg = _jpeg(jpeg_frames)
        if jpeg is None:
            notes["uint8"].append("JPEG row left out: needs imagecodecs or pillow")
        else:
            plan["uint8"]["libjpeg-turbo q75 (512^2 uint8)"] = (jpeg, jpeg_frames.nbytes)
        for fn, _ in (v for rows in plan.values() for v in rows.values()):
            fn()  # warm-up: numba compiles, caches fill, files exist for the read rows
        for dt in movies:
            plan[f"read {dt}"] = _read_rows(files[dt])
        times: dict[str, dict[str, list[float]]] = {k: {n: [] for n in rows} for k, rows in plan.items()}
        for _ in range(a.rounds):
            for key, rows in plan.items():
                for name, (fn, _) in rows.items():
                    t0 = time.perf_counter()
                    fn()
                    times[key][name].append(time.perf_counter() - t0)
        rates = {key: {n: plan[key][n][1] / statistics.median(ts) / 1e6 for n, ts in rows.items()}
                 for key, rows in times.items()}
        sizes = {dt: {n: movies[dt].nbytes / p.stat().st_size for n, p in files[dt].items()} for dt in movies}
    print(f"{a.frames} frames of {a.size}^2 (Poisson mean 20), median of {a.rounds} interleaved rounds")
    for dt in movies:
        anchor = "blosc2 bitshuffle + LZ4, 1 thread"
        _table(f"{dt}", rates[dt], anchor if anchor in rates[dt] else None, notes[dt])
        print("\n| file | ratio (raw / file) |\n|---|---:|")
        for name, ratio in sizes[dt].items():
            if name.endswith("1 thread"):
                print(f"| {name.removesuffix(', 1 thread')} | {ratio:.2f} |")
        print(f"\n#### reading records, {dt} (one thread, MB/s of stored measurement)\n")
        for name, rate in rates[f"read {dt}"].items():
            print(f"- {name}: {rate:,.0f} MB/s")
    frames = movies["uint16"]
    print("\n### host stage (quantise + predict-rice coding, one core), auto-step estimate\n")
    host = {}
    for B in (10, 30):
        t_group, t_auto = _host_stage(frames, B)
        rate = B * frames[0].nbytes / t_group / 1e6
        write = rates["uint16"][f"tcscodec.write, predict-rice, auto, B = {B}, 1 thread"]
        t_encode = B * frames[0].nbytes / write / 1e6
        host[B] = {"rate_MBps": rate, "cores_for_13.4GBps": GPU_STREAM / 1e6 / rate, "auto_step_s": t_auto,
                   "auto_step_vs_group": t_auto / t_encode}
        print(f"- B = {B}: {rate:,.0f} MB/s of input per core; 4096^2 uint16 at 400 frames/s (13.4 GB/s) needs "
              f"{GPU_STREAM / 1e6 / rate:.1f} host cores; auto-step estimate {t_auto * 1e3:.0f} ms = "
              f"{100 * t_auto / t_encode:.0f} % of one group's encode ({t_encode * 1e3:.0f} ms, 1 thread)")
    if a.json:
        results.update(rates=rates, ratios=sizes, host_stage=host, notes=notes)
        a.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
