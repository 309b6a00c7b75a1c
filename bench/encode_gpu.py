"""CUDA encoder throughput: kernel vs device copy bandwidth, and where the
end-to-end time goes.

    python bench/encode_gpu.py [--size 4096] [--B 10 30] [--frames 90]
                               [--json out.json]

Needs CuPy and a CUDA GPU (exits with a message otherwise).  Measures, for
``size x size`` uint16 frames (Poisson counts, mean ``--lam``, like a
low-dose counting detector):

1. device-to-device copy bandwidth of a large buffer (bytes read + written
   per second, CUDA events): the practical ceiling of a memory-bound kernel;
2. the mask-sum kernel on a device-resident group, at each B, with the mask
   words computed in the kernel ("fused", the encoder's default) and read
   from a packed buffer ("packed"): input bytes read + measurement bytes
   written per second, and that rate over the copy bandwidth;
3. the end-to-end rate, host numpy frames -> ``.tcs`` file in frames/s,
   through ``tcscodec.write(..., device="cuda")`` (skipped, with a note, if
   the writer has no CUDA path), and the CudaEncoder alone (push + drain);
4. each stage of that path timed on its own, as frames/s it could sustain
   alone: numpy -> pinned copy, host-to-device upload, kernel, measurement
   download + host copy, zstd of the measurement's tiles (the writer's
   codec, in ``--threads`` threads), and the file write (page cache, no
   fsync).  The slowest stage is named as the bottleneck.

Prints a markdown table; ``--json`` also writes the numbers to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from tcscodec.cuda_encoder import (
    KERNEL_NAMES,
    MASK_WORDS_KERNEL,
    CudaEncoder,
    _cuda_device,
    _import_cupy,
    _max_blocks,
    launch_config,
    load_module,
    mask_key,
    mask_sum_args,
    mask_sum_launch,
    mask_words_args,
    vector_ok,
)
from tcscodec.encoder import measurement_dtype
from tcscodec.errors import TcsDeviceError

SEED = 1


def need_gpu(device_id):
    """CuPy and the device, or exit with the reason."""
    try:
        cp = _import_cupy()
        device = _cuda_device(cp, device_id)
    except TcsDeviceError as exc:
        sys.exit(f"bench/encode_gpu.py needs a CUDA GPU: {exc}")
    return cp, device


def gpu_seconds(cp, fn, reps, warmup=2):
    """Mean GPU time of ``fn()`` (which enqueues work on the current stream)
    over ``reps`` back-to-back calls, by CUDA events."""
    for _ in range(warmup):
        fn()
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    for _ in range(reps):
        fn()
    stop.record()
    stop.synchronize()
    return cp.cuda.get_elapsed_time(start, stop) / 1e3 / reps


def host_seconds(fn, reps, warmup=1):
    """Best wall time of ``fn()`` over ``reps`` calls."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def copy_bandwidth(cp, nbytes, reps):
    """Device-to-device copy: (bytes read + written) / s."""
    a = cp.empty(nbytes, np.uint8)
    b = cp.empty(nbytes, np.uint8)
    a.fill(1)
    stream = cp.cuda.get_current_stream()

    def copy():
        cp.cuda.runtime.memcpyAsync(b.data.ptr, a.data.ptr, nbytes, 3, stream.ptr)

    return 2 * nbytes / gpu_seconds(cp, copy, reps)


def kernel_rate(cp, device, frames, B, masks, reps):
    """Mask sum of one device-resident group: (frames bytes read +
    measurement bytes written) / s, and seconds per group."""
    n, height, width = frames.shape
    dtype = frames.dtype
    mdtype = measurement_dtype(dtype)
    module = load_module(device.id)
    out = cp.empty((height, width), mdtype)
    words_ptr = 0
    if masks == "packed":
        words = cp.empty((B, height, (width + 63) // 64), np.uint64)
        grid, block = launch_config(words.size, _max_blocks(device))
        module.get_function(MASK_WORDS_KERNEL)(
            (grid,), (block,), mask_words_args(mask_key(SEED), B, height, width, words.data.ptr)
        )
        words_ptr = words.data.ptr
    item = dtype.itemsize
    vec = vector_ok(item, frames.data.ptr, height * width, width, mdtype.itemsize, out.data.ptr, width)
    # arguments built once: the loop then measures the GPU, not Python
    args = mask_sum_args(
        frames.data.ptr, height * width, width, n, height, width, words_ptr,
        mask_key(SEED), out.data.ptr, width, vec, 0,
    )
    kernel = module.get_function(KERNEL_NAMES[np.dtype(dtype)])
    grid, block = mask_sum_launch(height, width, dtype, _max_blocks(device))
    t = gpu_seconds(cp, lambda: kernel(grid, block, args), reps)
    return (frames.nbytes + out.nbytes) / t, t


def stage_rates(cp, frame, B, kernel_fps, threads, level, tile, reps):
    """Frames/s each stage of the host -> .tcs path sustains on its own
    (``kernel_fps`` measured by :func:`kernel_rate`), in pipeline order."""
    import cupyx

    height, width = frame.shape
    mdtype = measurement_dtype(frame.dtype)
    rates = {}
    pinned = cupyx.empty_pinned(frame.shape, frame.dtype)
    rates["numpy -> pinned copy"] = 1 / host_seconds(lambda: np.copyto(pinned, frame), reps)
    dev = cp.empty(frame.shape, frame.dtype)
    stream = cp.cuda.Stream(non_blocking=False)
    with stream:
        t = gpu_seconds(
            cp, lambda: cp.cuda.runtime.memcpyAsync(dev.data.ptr, pinned.ctypes.data, frame.nbytes, 1, stream.ptr),
            reps,
        )
    rates["host -> device upload (pinned)"] = 1 / t
    rates["mask-sum kernel, fused masks"] = kernel_fps
    out = cp.asarray(np.random.default_rng(0).poisson(B / 2, frame.shape).astype(mdtype))
    host_out = cupyx.empty_pinned(frame.shape, mdtype)
    with stream:
        t = gpu_seconds(
            cp, lambda: cp.cuda.runtime.memcpyAsync(host_out.ctypes.data, out.data.ptr, out.nbytes, 2, stream.ptr),
            reps,
        )
    t += host_seconds(lambda: host_out.copy(), reps)  # the encoder's copy out of pinned memory
    rates["measurement download + host copy (per frame)"] = B / t
    measurement = host_out.copy()
    tiles = [
        (measurement[y : y + tile, x : x + tile], (y, min(y + tile, height), x, min(x + tile, width)))
        for y in range(0, height, tile)
        for x in range(0, width, tile)
    ]
    try:
        from tcscodec.format import encode_payload
        from tcscodec.masks import tile_mask_sum

        def compressor(codec):
            if codec == "predict-rice":  # mask sums are computed once per movie: not timed
                sums = [tile_mask_sum(SEED, B, height, width, bounds) for _, bounds in tiles]
                return lambda i: encode_payload(tiles[i][0], codec, level, sums[i])
            return lambda i: encode_payload(tiles[i][0], codec, level)
        codecs = ["shuffle-zstd", "predict-rice"]  # the default last: the ratio is of its payloads
    except ImportError:  # the container layer is absent: plain zstd
        import zstandard

        def compressor(codec):
            return lambda i: zstandard.ZstdCompressor(level=level).compress(np.ascontiguousarray(tiles[i][0]).tobytes())
        codecs = ["zstd"]
    payloads = []
    for codec in codecs:
        compress = compressor(codec)
        with ThreadPoolExecutor(threads) as pool:
            def run():
                payloads[:] = list(pool.map(compress, range(len(tiles))))
            t = host_seconds(run, max(2, reps // 4))
        name = codec if codec == "predict-rice" else f"{codec} -{level}"
        rates[f"{name} of the measurement, {threads} threads (per frame)"] = B / t
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "records.bin"

        def write():
            with open(path, "wb") as fh:
                for p in payloads:
                    fh.write(p)
        t = host_seconds(write, max(2, reps // 4))
    rates["file write, page cache (per frame)"] = B / t
    ratio = measurement.nbytes / sum(len(p) for p in payloads)
    return rates, ratio


def encoder_rate(frames, B, device_id):
    """CudaEncoder alone: numpy frames pushed, measurements drained."""
    with CudaEncoder(SEED, B, frames[0].shape, frames[0].dtype, device_id) as enc:
        for f in frames[: 2 * B]:  # warm-up: kernels compiled, buffers touched
            enc.push(f)
        enc.drain()
    with CudaEncoder(SEED, B, frames[0].shape, frames[0].dtype, device_id) as enc:
        t = time.perf_counter()
        for f in frames:
            enc.push(f)
        enc.drain()
        return len(frames) / (time.perf_counter() - t)


def writer_rate(frames, B, level, threads):
    """tcscodec.write(..., device="cuda"): frames/s, or None with the reason."""
    import tcscodec

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.tcs"
        try:
            t = time.perf_counter()
            tcscodec.write(path, frames, B=B, seed=SEED, device="cuda", level=level, threads=threads)
            dt = time.perf_counter() - t
        except (TypeError, AttributeError, NotImplementedError) as exc:
            return None, f"tcscodec.write(device='cuda') is not available: {exc}"
        return len(frames) / dt, f"file {path.stat().st_size / 2**20:,.1f} MiB"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=4096, help="frame height = width (default 4096)")
    ap.add_argument("--B", type=int, nargs="+", default=[10, 30], help="group sizes (default 10 30)")
    ap.add_argument("--frames", type=int, default=90, help="frames for the end-to-end runs")
    ap.add_argument("--lam", type=float, default=1.0, help="Poisson mean of the frames")
    ap.add_argument("--reps", type=int, default=20, help="repetitions of each GPU timing")
    ap.add_argument("--copy-mib", type=int, default=1024, help="size of the copy-bandwidth buffer")
    ap.add_argument("--level", type=int, default=3, help="zstd level")
    ap.add_argument("--threads", type=int, default=min(8, os.cpu_count() or 1))
    ap.add_argument("--tile", type=int, default=512, help="tile edge of the stored measurement")
    ap.add_argument("--device", type=int, default=0, help="CUDA device id")
    ap.add_argument("--json", type=Path, help="write the results here as JSON")
    a = ap.parse_args(argv)

    cp, device = need_gpu(a.device)
    size, dtype = a.size, np.dtype(np.uint16)
    rng = np.random.default_rng(0)
    props = cp.cuda.runtime.getDeviceProperties(device.id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    results = {"device": name, "size": size, "dtype": dtype.name, "kernel": {}, "end_to_end": {}}
    rows = []

    with device:
        copy_bw = copy_bandwidth(cp, a.copy_mib << 20, a.reps)
        results["copy_GBps"] = copy_bw / 1e9
        rows.append((f"device copy, {a.copy_mib} MiB (read + write)", f"{copy_bw / 1e9:,.1f} GB/s", ""))

        for B in a.B:
            frames = cp.random.poisson(a.lam, (B, size, size)).astype(dtype)
            for masks in ("fused", "packed"):
                bw, t = kernel_rate(cp, device, frames, B, masks, a.reps)
                results["kernel"][f"B={B},{masks}"] = {
                    "GBps": bw / 1e9, "ratio_to_copy": bw / copy_bw,
                    "ms_per_group": t * 1e3, "frames_per_s": B / t,
                }
                rows.append((
                    f"kernel B={B}, masks {masks} (frames read + Y written)",
                    f"{bw / 1e9:,.1f} GB/s", f"{bw / copy_bw:.0%} of copy; {B / t:,.0f} frames/s",
                ))
            del frames
        cp.get_default_memory_pool().free_all_blocks()

        pool = [rng.poisson(a.lam, (size, size)).astype(dtype) for _ in range(4)]
        host_frames = [pool[i % len(pool)] for i in range(a.frames)]
        for B in a.B:
            e2e = results["end_to_end"][f"B={B}"] = {}
            kernel_fps = results["kernel"][f"B={B},fused"]["frames_per_s"]
            rates, ratio = stage_rates(cp, pool[0], B, kernel_fps, a.threads, a.level, a.tile, a.reps)
            for what, fps in rates.items():
                rows.append((f"  B={B} stage: {what}", f"{fps:,.0f} frames/s", ""))
            slowest = min(rates, key=rates.get)
            e2e["stages_frames_per_s"] = rates
            e2e["bottleneck"] = slowest
            e2e["measurement_ratio"] = ratio
            enc_fps = encoder_rate(host_frames, B, device.id)
            e2e["encoder_frames_per_s"] = enc_fps
            rows.append((f"B={B} CudaEncoder, numpy frames (push + drain)", f"{enc_fps:,.0f} frames/s", ""))
            fps, note = writer_rate(host_frames, B, a.level, a.threads)
            e2e["writer_frames_per_s"] = fps
            e2e["writer_note"] = note
            rows.append((
                f"B={B} numpy -> .tcs, tcscodec.write(device='cuda')",
                "n/a" if fps is None else f"{fps:,.0f} frames/s", note,
            ))
            rows.append((f"B={B} bottleneck (slowest stage alone)", slowest, f"{rates[slowest]:,.0f} frames/s"))

    print(f"{name}: {size}x{size} {dtype.name} frames, Poisson mean {a.lam}\n")
    print("| what | rate | note |\n|---|---:|---|")
    for what, rate, note in rows:
        print(f"| {what} | {rate} | {note} |")
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))
        print(f"\nwrote {a.json}")


if __name__ == "__main__":
    main()
