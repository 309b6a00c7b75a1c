"""kernels/mask_sum.cu checked without a GPU.

* nvcc compiles it for sm_80 and sm_90 (cubin, so ptxas runs too) with no
  register spills, and the PTX has the 16-byte vector accesses and the
  round-to-nearest double adds the design relies on;
* NVRTC, when its library can be found (``TCS_NVRTC=/path/libnvrtc.so`` or a
  ``nvidia-cuda-nvrtc`` wheel), compiles it exactly as ``cupy.RawModule``
  does: no include paths, ``-std=c++17``;
* g++ compiles the *same* source through tests/cuda_host_shim.h into a shared
  library that runs a launch as loops over blocks and threads; its output is
  compared bit for bit with :func:`tcscodec.encoder.encode_group` and
  :func:`tcscodec.masks.packed_masks`, with the launch arguments built by
  :func:`tcscodec.cuda_encoder.mask_sum_args`, the function the encoder
  uses, and passed the way ``cuLaunchKernel`` takes them.

Each part skips cleanly when its compiler is missing.
"""

from __future__ import annotations

import ctypes
import glob
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tcscodec.cuda_launch import (
    BLOCK_SIZE,
    KERNEL_NAMES,
    MASK_WORDS_KERNEL,
    PIXELS_PER_THREAD,
    launch_config,
    mask_key,
    mask_sum_args,
    mask_sum_launch,
    mask_words_args,
    vector_ok,
)
from tcscodec.encoder import encode_group, measurement_dtype
from tcscodec.masks import GOLDEN, mask_words, mix64, packed_masks

from .cuda_shim import GXX, KERNEL, build_shim, launch

NVCC = shutil.which("nvcc")
ENTRIES = (*KERNEL_NAMES.values(), MASK_WORDS_KERNEL)
DTYPES = [np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.float32)]
SHAPES = [(1, 1), (7, 130), (65, 63), (33, 200), (9, 256), (3, 80)]
SEED = 0xC0FFEE_1234_5678
FLAG_PRESET = 0x7F7F7F7F  # what the encoder memsets the bad-frame flag to


# --- nvcc ----------------------------------------------------------------------


def _nvcc(tmp_path, *args):
    result = subprocess.run(
        [NVCC, "-std=c++17", *args, str(KERNEL)], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, f"nvcc {' '.join(args)} failed:\n{result.stderr}"
    return result


@pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_nvcc_compiles_without_spills(arch, tmp_path):
    cubin = tmp_path / f"mask_sum_{arch}.cubin"
    result = _nvcc(tmp_path, f"-arch={arch}", "-cubin", "-Xptxas", "-v", "-o", str(cubin))
    assert cubin.stat().st_size > 0
    info = result.stderr
    for name in ENTRIES:
        assert f"Compiling entry function '{name}' for '{arch}'" in info
    # register spills would put the accumulators in local memory
    assert "bytes spill" in info
    assert not re.search(r"[1-9]\d* bytes spill", info), info


@pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH")
def test_ptx_has_vector_accesses_and_exact_double_adds(tmp_path):
    ptx_path = tmp_path / "mask_sum.ptx"
    _nvcc(tmp_path, "-arch=sm_90", "--ptx", "-o", str(ptx_path))
    ptx = ptx_path.read_text()
    for name in ENTRIES:
        assert re.search(rf"\.visible \.entry {name}\(", ptx), name
    # 16-byte read-only loads of the frames, 16-byte stores of Y
    assert "ld.global.nc.v4.u32" in ptx
    assert "st.global.v4.u32" in ptx
    # float32 -> float64 sums: explicit round-to-nearest adds, never an FMA
    assert "add.rn.f64" in ptx
    assert "fma.rn.f64" not in ptx


# --- NVRTC (what cupy.RawModule runs) ------------------------------------------


def _find_nvrtc() -> str | None:
    env = os.environ.get("TCS_NVRTC")
    if env:
        return env
    candidates = []
    for base in sys.path:  # nvidia-cuda-nvrtc(-cu12) wheels
        candidates += sorted(glob.glob(os.path.join(base, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so*")))
        candidates += sorted(glob.glob(os.path.join(base, "nvidia", "cu13", "lib", "libnvrtc.so*")))
    for root in filter(None, (os.environ.get("CUDA_PATH"), os.environ.get("CUDA_HOME"), "/usr/local/cuda")):
        candidates += sorted(glob.glob(os.path.join(root, "lib64", "libnvrtc.so*")))
    candidates = [c for c in candidates if "builtins" not in c and "alt" not in c]
    return candidates[0] if candidates else None


NVRTC = _find_nvrtc()


@pytest.mark.skipif(NVRTC is None, reason="no libnvrtc found (set TCS_NVRTC=/path/libnvrtc.so)")
@pytest.mark.parametrize("arch", ["compute_80", "compute_90"])
def test_nvrtc_compiles_like_cupy(arch):
    lib = ctypes.CDLL(NVRTC)
    prog = ctypes.c_void_p()
    source = KERNEL.read_bytes()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), source, b"mask_sum.cu", 0, None, None) == 0
    try:
        options = [b"-std=c++17", b"--gpu-architecture=" + arch.encode()]
        rc = lib.nvrtcCompileProgram(prog, len(options), (ctypes.c_char_p * len(options))(*options))
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        assert rc == 0, log.value.decode(errors="replace")
        # no warnings either: NVRTC builds this at run time on users' machines
        assert not log.value.strip(), log.value.decode(errors="replace")
        lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
        ptx = ctypes.create_string_buffer(size.value)
        assert lib.nvrtcGetPTX(prog, ptx) == 0
        for name in ENTRIES:
            assert f".entry {name}(".encode() in ptx.value
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


# --- g++ host shim: the same source, run on the CPU ------------------------------


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    if GXX is None:
        pytest.skip("g++ is not on PATH")
    return build_shim(tmp_path_factory.mktemp("shim"))


def aligned_empty(shape, dtype, offset_bytes=0, align=64):
    """An uninitialised array whose data starts ``offset_bytes`` past an
    ``align``-byte boundary (numpy's own alignment is not guaranteed)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + align + offset_bytes, np.uint8)
    start = (-raw.ctypes.data) % align + offset_bytes
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def run_mask_sum(lib, frames, seed, *, vec="auto", packed=False, max_blocks=None, out=None):
    """The shim's measurement of ``frames`` (n, H, W), any strides, the
    launch built exactly as the encoder builds it.  Returns (Y, vec used,
    bad-frame flag)."""
    n, height, width = frames.shape
    dtype = frames.dtype
    mdtype = measurement_dtype(dtype)
    if out is None:
        out = aligned_empty((height, width), mdtype)
    out.view(np.uint8).fill(0xA5)  # garbage: every pixel must be written
    words = packed_masks(seed, n, height, width) if packed else None
    flag = np.array([FLAG_PRESET], np.int32)
    item, oitem = dtype.itemsize, mdtype.itemsize
    strides = (frames.strides[0] // item, frames.strides[1] // item)
    out_row = out.strides[0] // oitem
    use_vec = vec_ok = vector_ok(item, frames.ctypes.data, *strides, oitem, out.ctypes.data, out_row)
    if vec != "auto":
        use_vec = bool(vec) and vec_ok
    grid, block = mask_sum_launch(height, width, dtype, max_blocks)
    args = mask_sum_args(
        frames.ctypes.data, *strides, n, height, width,
        0 if words is None else words.ctypes.data, mask_key(seed),
        out.ctypes.data, out_row, use_vec, flag.ctypes.data,
    )
    launch(lib, KERNEL_NAMES[dtype], grid, block, args)
    return out, use_vec, int(flag[0])


def make_frames(rng, n, shape, dtype, extreme=False):
    """Frames of every dtype's hard cases: full integer range; float32 of
    mixed signs and magnitudes (1e-30..1e30, subnormals, +-0, +-FLT_MAX) so
    the order of the float64 sum shows."""
    dtype = np.dtype(dtype)
    size = (n, *shape)
    if dtype.kind == "u":
        top = np.iinfo(dtype).max
        if extreme:
            return np.full(size, top, dtype)
        x = rng.integers(0, top, size, dtype=dtype, endpoint=True)
        x.flat[:: 7] = top
        return x
    if extreme:
        return np.full(size, np.finfo(np.float32).max, np.float32)
    mag = 10.0 ** rng.uniform(-30, 30, size)
    x = (rng.standard_normal(size) * mag).astype(np.float32)
    specials = np.array(
        [0.0, -0.0, 1.0, -1.0, 1e-45, -1e-45, 3e38, -3e38,
         np.finfo(np.float32).max, -np.finfo(np.float32).max, 1e-38, 16777217.0],
        np.float32,
    )
    x.flat[:: 5] = np.resize(specials, x.flat[:: 5].shape)
    return x


def assert_same(y, ref):
    assert y.dtype == ref.dtype and y.shape == ref.shape
    # bitwise, so -0.0 vs +0.0 or any last-bit rounding difference fails
    assert np.array_equal(y.view(f"u{y.itemsize}"), ref.view(f"u{ref.itemsize}"))


def test_shim_block_size_matches_python(shim):
    assert shim.shim_block_size() == BLOCK_SIZE


def test_shim_knows_every_entry(shim):
    cells = (ctypes.c_void_p * 1)()
    assert shim.shim_launch(b"no_such_kernel", 1, 1, 1, 1, cells) == -1
    for name in ENTRIES:
        assert re.search(rf"\b{name}\b", KERNEL.read_text())


@pytest.mark.parametrize("seed", [0, 1, 2**64 - 1, SEED])
@pytest.mark.parametrize("shape", [(1, 1), (7, 130), (65, 63), (4, 4096)])
def test_mask_words_kernel_bit_exact(shim, seed, shape):
    n_masks = 5
    height, width = shape
    ref = packed_masks(seed, n_masks, height, width)
    for max_blocks in (None, 2):  # one pass, and a grid-stride loop
        words = np.zeros_like(ref)
        grid, block = launch_config(ref.size, max_blocks)
        launch(shim, MASK_WORDS_KERNEL, grid, block,
               mask_words_args(mask_key(seed), n_masks, height, width, words.ctypes.data))
        assert np.array_equal(words, ref)


def test_mask_words_kernel_counter_fields(shim):
    # b = 63 and y = 2**24 - 1 exercise the top bits of the counter
    height, width = 3, 70
    words = np.zeros((64, height, 2), np.uint64)
    launch(shim, MASK_WORDS_KERNEL, *launch_config(words.size),
           mask_words_args(mask_key(SEED), 64, height, width, words.ctypes.data))
    assert np.array_equal(words[63], mask_words(SEED, [63], range(height), range(2))[0])


def test_mask_key_matches_masks_module():
    for seed in (0, 1, 2**64 - 1, SEED):
        key = mask_key(seed)
        assert key == mix64((seed + GOLDEN) % 2**64)
        word = mix64((key + GOLDEN) % 2**64)  # counter 0: b = y = w = 0
        assert word == int(mask_words(seed, [0], [0], [0])[0, 0, 0])


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_mask_sum_bit_exact(shim, dtype, shape):
    rng = np.random.default_rng([shape[0], shape[1], dtype.itemsize])
    aligned = (shape[1] * dtype.itemsize) % 16 == 0
    for B in (2, 10, 30, 64):
        frames_all = make_frames(rng, B, shape, dtype)
        frames_all_aligned = aligned_empty(frames_all.shape, dtype)
        frames_all_aligned[...] = frames_all
        # a full group and a short last group
        for n in sorted({B, max(1, B // 3)}):
            frames = frames_all_aligned[:n]
            ref = encode_group(frames, SEED, B)
            y, used_vec, flag = run_mask_sum(shim, frames, SEED)
            assert used_vec == aligned
            assert_same(y, ref)
            assert flag == FLAG_PRESET
            y, used_vec, _ = run_mask_sum(shim, frames, SEED, vec=False, max_blocks=3)
            assert not used_vec
            assert_same(y, ref)
            y, _, _ = run_mask_sum(shim, frames, SEED, packed=True)
            assert_same(y, ref)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_mask_sum_pitched_layout_uses_vectors_and_tail(shim, dtype):
    """Rows padded to a 16-byte pitch: vector loads for full chunks and the
    scalar tail for the last partial chunk of each row, in one launch."""
    rng = np.random.default_rng(7)
    n, height, width = 10, 11, 77
    pitch = 128  # elements; a multiple of 16 bytes for every dtype
    mdtype = measurement_dtype(dtype)
    frames = aligned_empty((n, height + 1, pitch), dtype)[:, :height, :width]
    frames[...] = make_frames(rng, n, (height, width), dtype)
    out = aligned_empty((height, pitch), mdtype)[:, :width]
    ref = encode_group(np.ascontiguousarray(frames), SEED, 30)
    y, used_vec, _ = run_mask_sum(shim, frames, SEED, out=out)
    assert used_vec
    assert_same(y, ref)
    y, used_vec, _ = run_mask_sum(shim, frames, SEED, out=out, packed=True, max_blocks=1)
    assert_same(y, ref)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_mask_sum_unaligned_base_falls_back_to_scalar(shim, dtype):
    rng = np.random.default_rng(3)
    n, shape = 6, (5, 256)
    frames = aligned_empty((n, *shape), dtype, offset_bytes=dtype.itemsize)
    frames[...] = make_frames(rng, n, shape, dtype)
    y, used_vec, _ = run_mask_sum(shim, frames, SEED)
    assert not used_vec
    assert_same(y, encode_group(frames, SEED, n))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
def test_mask_sum_max_values_at_B64_do_not_overflow(shim, dtype):
    rng = np.random.default_rng(0)
    for shape in ((33, 200), (4, 256)):
        frames = aligned_empty((64, *shape), dtype)
        frames[...] = make_frames(rng, 64, shape, dtype, extreme=True)
        ref = encode_group(frames, SEED, 64)
        for vec in ("auto", False):
            y, _, _ = run_mask_sum(shim, frames, SEED, vec=vec)
            assert_same(y, ref)
        # Y = max * (number of frames whose mask bit is 1), exactly
        top = frames.flat[0].item()
        from tcscodec.masks import masks

        count = masks(SEED, 64, *shape).sum(axis=0, dtype=np.uint64)
        if dtype.kind == "u":
            assert np.array_equal(y.astype(np.uint64), count * np.uint64(top))
        assert y.max() == ref.max() > 0


@pytest.mark.parametrize("vec", ["auto", False])
def test_nonfinite_float_frames_are_flagged(shim, vec):
    rng = np.random.default_rng(1)
    n, shape = 12, (9, 256)
    frames = aligned_empty((n, *shape), np.float32)
    frames[...] = make_frames(rng, n, shape, np.float32)
    _, _, flag = run_mask_sum(shim, frames, SEED, vec=vec)
    assert flag == FLAG_PRESET
    frames[5, 8, 255] = np.inf
    frames[3, 0, 0] = np.nan
    frames[9, 4, 17] = -np.inf
    _, _, flag = run_mask_sum(shim, frames, SEED, vec=vec)
    assert flag == 3  # the first bad frame, masked or not
    frames[3, 0, 0] = 1.0
    _, _, flag = run_mask_sum(shim, frames, SEED, vec=vec)
    assert flag == 5


def test_integer_kernels_leave_the_flag_alone(shim):
    frames = aligned_empty((4, 3, 64), np.uint16)
    frames[...] = 65535
    _, _, flag = run_mask_sum(shim, frames, SEED)
    assert flag == FLAG_PRESET


# --- launch helpers ------------------------------------------------------------------


def test_launch_config():
    assert launch_config(1) == (1, BLOCK_SIZE)
    assert launch_config(0) == (1, BLOCK_SIZE)
    assert launch_config(BLOCK_SIZE + 1) == (2, BLOCK_SIZE)
    assert launch_config(10**9, max_blocks=4224) == (4224, BLOCK_SIZE)
    assert launch_config(2**50)[0] == 2**31 - 1


def test_mask_sum_launch():
    # 4096 x 4096 uint16: 512 chunks of 8 pixels per row, 2 blocks per row
    assert mask_sum_launch(4096, 4096, np.uint16) == ((2, 4096), (256, 1))
    # narrow frames: several rows per block, no idle threads
    assert mask_sum_launch(65, 63, np.uint8) == ((1, 2), (4, 64))
    assert mask_sum_launch(1, 1, np.float32) == ((1, 1), (1, 256))
    assert mask_sum_launch(7, 130, np.uint16) == ((1, 1), (32, 8))
    # a capped grid: the kernel's grid-stride loops cover the rest
    assert mask_sum_launch(4096, 4096, np.uint16, max_blocks=4224) == ((2, 2112), (256, 1))
    assert mask_sum_launch(2**24, 64, np.uint8)[0] == (1, 65535)
    for dtype, p in PIXELS_PER_THREAD.items():
        assert p * dtype.itemsize == 16 and 64 % p == 0
        for width in (1, 5, 63, 64, 65, 1000, 4096, 5760, 2**20):
            (gx, gy), (bx, by) = mask_sum_launch(3, width, dtype)
            assert bx * by == BLOCK_SIZE and gx * bx >= -(-width // p)


def test_vector_ok():
    assert vector_ok(2, 256, 4096 * 4096, 4096, 4, 512, 4096)
    assert not vector_ok(2, 258, 4096 * 4096, 4096, 4, 512, 4096)  # base
    assert not vector_ok(2, 256, 7 * 130, 130, 4, 512, 130)  # row pitch
    assert not vector_ok(1, 256, 16 * 3 + 1, 16, 2, 512, 16)  # frame stride
    assert not vector_ok(2, 256, 64, 8, 4, 520, 8)  # out base
    assert vector_ok(1, 0, 32, 16, 2, 0, 8)


def test_mask_sum_args_layout():
    args = mask_sum_args(1, 2, 3, 4, 5, 6, 7, 2**64 - 1, 9, 10, True, 0)
    widths = [a.dtype.itemsize for a in args]
    assert widths == [8, 8, 8, 4, 4, 4, 8, 8, 8, 8, 4, 8]
    assert args[7] == np.uint64(2**64 - 1) and args[10] == 1
