"""Launch geometry and kernel arguments of the CUDA encoder's kernels.

Pure Python and numpy: no CuPy is needed, so the host-shim tests run these
on machines without a GPU.  :mod:`tcscodec.cuda_encoder` launches the
kernels of ``kernels/mask_sum.cu`` with them.

Design
------
Masks are not stored: the kernel computes each 64-bit mask word from the
seed's key with the spec's SplitMix64 function, fused into the sum
(``masks="fused"``, the default).  That saves the mask traffic (1/8 byte per
pixel and frame, +6 % for uint16 input), the B*H*W/8 bytes of device memory
and 0.7-1.5 s of numpy work per 4096 x 4096 movie (``packed_masks`` at
B = 30-64), for about 30 integer instructions per thread and frame that the
memory-bound kernel should hide (bench/encode_gpu.py measures both modes).
``masks="packed"`` generates the packed words once on the GPU
(``tcs_mask_words``, checked bit for bit against
:func:`tcscodec.masks.packed_masks`) and reads them instead; it exists for
benchmarking the two and for future mask generators.

Device memory: ``2 * B * H * W * itemsize`` for the frames (two groups) plus
two measurements (and ``B * H * W / 8`` with ``masks="packed"``), e.g.
4.4 GB for 4096 x 4096 uint16 frames at B = 64; pinned host memory: the
``staging`` frame buffers plus two measurements.
"""

from __future__ import annotations

import numpy as np

from .masks import GOLDEN, check_seed, mix64

__all__ = [
    "BLOCK_SIZE",
    "KERNEL_NAMES",
    "MASK_WORDS_KERNEL",
    "PIXELS_PER_THREAD",
    "launch_config",
    "mask_key",
    "mask_sum_args",
    "mask_sum_launch",
    "mask_words_args",
    "vector_ok",
]

#: Threads per block; kernels/mask_sum.cu is compiled for it (TCS_BLOCK_SIZE).
BLOCK_SIZE = 256

#: Input dtype -> pixels one thread sums (one 16-byte vector of input).
PIXELS_PER_THREAD = {
    np.dtype(np.uint8): 16,
    np.dtype(np.uint16): 8,
    np.dtype(np.uint32): 4,
    np.dtype(np.float32): 4,
}

#: Input dtype -> extern "C" mask-sum kernel in kernels/mask_sum.cu.
KERNEL_NAMES = {
    np.dtype(np.uint8): "tcs_mask_sum_u8",
    np.dtype(np.uint16): "tcs_mask_sum_u16",
    np.dtype(np.uint32): "tcs_mask_sum_u32",
    np.dtype(np.float32): "tcs_mask_sum_f32",
}

#: Kernel writing the packed mask words (layout of masks.packed_masks).
MASK_WORDS_KERNEL = "tcs_mask_words"


def mask_key(seed) -> int:
    """The splitmix64-v1 key ``mix64(seed + GOLDEN)`` of a 64-bit mask seed.

    The kernels take the key instead of the seed, so the per-movie constant
    is computed once, here, exactly as :func:`tcscodec.masks.mask_words`
    does.
    """
    return int(mix64((check_seed(seed) + GOLDEN) & ((1 << 64) - 1)))


def vector_ok(
    itemsize: int,
    frames_ptr: int,
    frame_stride: int,
    row_stride: int,
    out_itemsize: int,
    out_ptr: int,
    out_row_stride: int,
) -> bool:
    """Whether a mask-sum launch may use its 16-byte loads and stores.

    Strides are in elements.  Every thread starts at a multiple of 16 input
    bytes and 32 output bytes within a row, so aligned bases and row and
    frame strides that are multiples of 16 bytes make all its vector
    accesses aligned.
    """
    return (
        frames_ptr % 16 == 0
        and (frame_stride * itemsize) % 16 == 0
        and (row_stride * itemsize) % 16 == 0
        and out_ptr % 16 == 0
        and (out_row_stride * out_itemsize) % 16 == 0
    )


def mask_sum_args(
    frames_ptr: int,
    frame_stride: int,
    row_stride: int,
    n: int,
    height: int,
    width: int,
    words_ptr: int,
    key: int,
    out_ptr: int,
    out_row_stride: int,
    vec: bool,
    bad_frame_ptr: int,
) -> tuple:
    """The argument tuple of a ``tcs_mask_sum_*`` kernel, typed.

    Pointers are passed as uint64 values (0 for NULL), the other arguments
    as numpy scalars of the kernel's parameter widths, in the kernel's
    order; CuPy and the host shim of the tests both pass each scalar's bytes
    the way ``cuLaunchKernel`` does.
    """
    return (
        np.uint64(frames_ptr),
        np.int64(frame_stride),
        np.int64(row_stride),
        np.int32(n),
        np.int32(height),
        np.int32(width),
        np.uint64(words_ptr),
        np.uint64(key),
        np.uint64(out_ptr),
        np.int64(out_row_stride),
        np.int32(1 if vec else 0),
        np.uint64(bad_frame_ptr),
    )


def mask_words_args(key: int, n_masks: int, height: int, width: int, words_ptr: int) -> tuple:
    """The argument tuple of ``tcs_mask_words`` for ``(n_masks, height,
    ceil(width / 64))`` packed words at ``words_ptr``."""
    return (
        np.uint64(key),
        np.int32(n_masks),
        np.int32(height),
        np.int64((width + 63) // 64),
        np.uint64(words_ptr),
    )


def launch_config(n_items: int, max_blocks: int | None = None) -> tuple[int, int]:
    """``(blocks, threads)`` of a 1-D grid-stride launch over ``n_items``
    (``tcs_mask_words``: one item per word).  ``max_blocks`` caps the grid;
    the threads then loop."""
    blocks = max(1, -(-int(n_items) // BLOCK_SIZE))
    if max_blocks is not None:
        blocks = max(1, min(blocks, int(max_blocks)))
    return min(blocks, 2**31 - 1), BLOCK_SIZE


def mask_sum_launch(
    height: int, width: int, dtype, max_blocks: int | None = None
) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((grid_x, grid_y), (block_x, block_y))`` of a mask-sum launch.

    x runs over the ``ceil(width / P)`` chunks of a row (P from
    :data:`PIXELS_PER_THREAD`), y over rows.  ``block_x`` is the smallest
    power of two >= the chunks per row, at most :data:`BLOCK_SIZE`, and
    ``block_x * block_y == BLOCK_SIZE``, so narrow frames put several rows
    in a block instead of idling threads.  ``grid_y`` is capped at 65535
    and, with ``max_blocks``, so the grid holds about that many blocks; the
    kernel's grid-stride loops cover the rest.
    """
    chunks = -(-int(width) // PIXELS_PER_THREAD[np.dtype(dtype)])
    block_x = min(BLOCK_SIZE, 1 << max(0, (chunks - 1).bit_length()))
    block_y = BLOCK_SIZE // block_x
    grid_x = -(-chunks // block_x)
    grid_y = min(-(-int(height) // block_y), 65535)
    if max_blocks is not None:
        grid_y = max(1, min(grid_y, int(max_blocks) // grid_x))
    return (grid_x, grid_y), (block_x, block_y)
