"""The temporal-compressive-sensing encoder on a CUDA GPU (CuPy).

:class:`CudaEncoder` computes the same measurements as
:class:`tcscodec.encoder.CpuEncoder`, bit for bit, for every input dtype:
``Y = sum_b C_b * X_b`` over each group of B frames, exact integers or
float64 summed in the order b = 0, 1, ...  The mask-sum kernels are in
``kernels/mask_sum.cu`` (installed as ``tcscodec.kernels``) and are compiled
at run time by NVRTC through ``cupy.RawModule``.

CuPy is imported lazily, only when a CUDA encoder is made, so ``import
tcscodec`` never needs it.  Without CuPy, or without a CUDA device,
:class:`CudaEncoder` raises :class:`~tcscodec.errors.TcsDeviceError`.
Limitation: groups of one length B only; ``B="auto"`` and variable groups
(format 2.0) are refused with :class:`~tcscodec.errors.TcsValueError`.

Contract of push and drain
--------------------------
``push(frame)`` takes one frame and returns at most one
:class:`~tcscodec.measurement.Measurement` (host numpy data, fresh array
owned by the caller), always in group order.  Which one depends on ``lag``:
with ``lag=1`` (default, pipelined) the push that completes group g launches
g's kernel and its device-to-host copy, then returns group ``g - 1``'s
measurement, whose copy has had a whole group of pushes to finish (the
writer compresses group g - 1 while the GPU encodes group g and the copy
engine uploads group g + 1); with ``lag=0`` it returns group g itself, as
:class:`~tcscodec.encoder.CpuEncoder` does.

``drain()`` is the one end-of-stream call of both encoders: a **list** of
every measurement not yet returned, in order (the lagged full group and/or
the short last group), as :meth:`tcscodec.writer.TcsWriter.close` uses it::

    for frame in frames:
        m = enc.push(frame)
        if m is not None:
            submit(m)
    for m in enc.drain():
        submit(m)

After ``drain()`` the stream is finished: further pushes raise
:class:`~tcscodec.errors.TcsValueError`.  ``close()`` (or leaving a ``with``
block) waits for the GPU and frees the encoder's buffers.

Frames
------
numpy frames are validated with :func:`~tcscodec.measurement.check_frame`
(a wrong shape, dtype or a NaN raises at ``push``, naming the frame), copied
into one of ``staging`` pinned host buffers and uploaded asynchronously into
the group's slot of one of two alternating device buffers, so the uploads of
group g + 1 overlap the kernel of group g.

Frames already on the GPU (CuPy arrays, torch CUDA tensors, anything with
``__cuda_array_interface__`` or a CUDA ``__dlpack__``, on the encoder's
device) are copied device to device, ordered after the producer's stream,
which then waits for the copy: the caller may reuse the frame as soon as
``push`` returns.  Shape, dtype and NaN/infinity are checked at ``push``
(the latter on the GPU), with the same errors as for numpy frames; the
kernel also flags non-finite values as a backstop (a frame rewritten by a
racing stream), raised when the group is collected, up to ``lag`` groups
later, and that group's measurement is lost.

Launch geometry, kernel arguments and the mask-generation design are in
:mod:`tcscodec.cuda_launch`.

Not thread safe: push frames of one encoder from one thread.
"""

from __future__ import annotations

import collections
import importlib

import numpy as np

from .cuda_launch import (
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
from .errors import TcsDeviceError, TcsValueError
from .masks import MAX_HEIGHT, MAX_WIDTH, check_seed
from .measurement import Measurement, check_B, check_frame, measurement_dtype

# the launch helpers are re-exported: the benches and the kernel tests import them from here
__all__ = [
    "BLOCK_SIZE", "KERNEL_NAMES", "MASK_WORDS_KERNEL", "PIXELS_PER_THREAD", "CudaEncoder",
    "cuda_available", "encode_group_device", "launch_config", "load_module", "mask_sum_launch",
    "mask_key", "mask_sum_args", "mask_words_args", "vector_ok",
]

MASK_MODES = ("fused", "packed")

_NEEDS_CUDA = "device='cuda' needs CuPy and a CUDA GPU: pip install 'tcscodec[cuda]'"
_NVRTC_OPTIONS = ("-std=c++17",)

# cudaMemcpyKind
_H2D, _D2H, _D2D = 1, 2, 3
# DLPack device types holding device memory: kDLCUDA, kDLCUDAManaged
_DLPACK_CUDA = (2, 13)
# memset byte for the bad-frame flag: 0x7f7f7f7f, larger than any frame index
_FLAG_FILL = 0x7F

_modules: dict = {}


def _check_shape(shape) -> tuple[int, int]:
    try:
        height, width = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise TcsValueError(f"shape must be (height, width), got {shape!r}") from None
    if not (1 <= height <= MAX_HEIGHT and 1 <= width <= MAX_WIDTH):
        raise TcsValueError(
            f"frame shape {height}x{width} is outside 1..{MAX_HEIGHT} x 1..{MAX_WIDTH}"
        )
    return height, width


def _is_device_array(obj) -> bool:
    """Whether ``obj`` is an array in CUDA device memory (no CuPy needed)."""
    if isinstance(obj, np.ndarray):
        return False
    if type(obj).__module__.split(".")[0] == "torch" and hasattr(obj, "is_cuda"):
        # torch raises RuntimeError, not AttributeError, for the interface of
        # tensors that require grad; ask it directly
        return bool(obj.is_cuda)
    if hasattr(obj, "__cuda_array_interface__"):
        return True
    dlpack_device = getattr(obj, "__dlpack_device__", None)
    if dlpack_device is not None:
        try:
            return int(dlpack_device()[0]) in _DLPACK_CUDA
        except Exception:
            return False
    return False


def _check_device_frame(arr, shape, dtype, index) -> None:
    """:func:`~tcscodec.encoder.check_frame`'s shape and dtype checks, with
    its messages, for a device array (finiteness is the kernel's job)."""
    where = f"frame {index}"
    if tuple(arr.shape) != tuple(shape):
        raise TcsValueError(f"{where} has shape {tuple(arr.shape)}, expected {tuple(shape)}")
    if np.dtype(arr.dtype) != dtype:
        raise TcsValueError(
            f"{where} has dtype {np.dtype(arr.dtype).name}, expected {np.dtype(dtype).name}"
        )


# --- CuPy --------------------------------------------------------------------


def _import_cupy():
    try:
        import cupy
    except Exception as exc:  # ImportError, or CUDA libraries that fail to load
        raise TcsDeviceError(f"{_NEEDS_CUDA} (cannot import cupy: {exc})") from exc
    return cupy


def _cuda_device(cp, device_id: int):
    """``cupy.cuda.Device(device_id)``, or TcsDeviceError why not."""
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver, no device
        raise TcsDeviceError(f"{_NEEDS_CUDA} (no usable CUDA device: {exc})") from exc
    if count < 1:
        raise TcsDeviceError(f"{_NEEDS_CUDA} (no CUDA device found)")
    if isinstance(device_id, bool) or not 0 <= int(device_id) < count:
        raise TcsDeviceError(
            f"CUDA device {device_id!r} does not exist; this machine has {count} (0..{count - 1})"
        )
    return cp.cuda.Device(int(device_id))


def cuda_available() -> bool:
    """True if CuPy imports and sees at least one CUDA device."""
    try:
        cp = _import_cupy()
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def load_module(device_id: int = 0):
    """The compiled ``mask_sum.cu`` as a ``cupy.RawModule`` for a device.

    Compiled by NVRTC on first use (CuPy caches the binary on disk too) and
    kept for the process.  Raises TcsDeviceError if CuPy, the device or
    NVRTC is missing or the compilation fails.
    """
    cp = _import_cupy()
    device = _cuda_device(cp, device_id)
    module = _modules.get(device.id)
    if module is None:
        # installed as tcscodec.kernels from the top-level kernels/ folder, so not beside this module
        kernels = importlib.import_module(f"{__package__}.kernels")

        try:
            with device:
                module = cp.RawModule(code=kernels.source("mask_sum.cu"), options=_NVRTC_OPTIONS)
                # compile now, so a broken toolchain fails here, not mid-movie
                for name in (*KERNEL_NAMES.values(), MASK_WORDS_KERNEL):
                    module.get_function(name)
        except Exception as exc:
            raise TcsDeviceError(f"cannot compile kernels/mask_sum.cu with NVRTC: {exc}") from exc
        _modules[device.id] = module
    return module


def _max_blocks(device) -> int:
    # 32 blocks of 256 threads per SM is 4x what can be resident: enough to
    # fill the GPU, few enough that big frames reuse threads (grid stride)
    return 32 * int(device.attributes["MultiProcessorCount"])


def encode_group_device(frames, seed, B=None, *, words=None, out=None):
    """One-shot measurement of a device-resident group, on the GPU.

    The GPU counterpart of :func:`tcscodec.encoder.encode_group`, without
    copies: the kernel reads the stack where it lies.

    Parameters
    ----------
    frames : cupy.ndarray or device array, shape (n, H, W)
        The group's frames, n <= B, uint8, uint16, uint32 or float32; any
        layout with a unit pixel stride (else a contiguous copy is made).
    seed : int
        Mask seed.
    B : int, optional
        Group size, for validation (default n).  Frame b uses mask C_b.
    words : cupy.ndarray, optional
        Packed masks ``(>= n, H, ceil(W / 64))`` uint64, C-contiguous, e.g.
        from a ``tcs_mask_words`` launch; default: computed in the kernel.
    out : cupy.ndarray, optional
        (H, W) array of the measurement dtype to write into.

    Returns
    -------
    cupy.ndarray
        The (H, W) measurement, written on the current stream.  For float32
        input this waits for the kernel, to raise TcsValueError for NaN or
        infinite values.
    """
    cp = _import_cupy()
    frames = frames if isinstance(frames, cp.ndarray) else cp.asarray(frames)
    if frames.ndim != 3:
        raise TcsValueError(f"frames must be (n, H, W), got shape {frames.shape}")
    n, height, width = frames.shape
    B = n if B is None else check_B(B)
    if not 1 <= n <= B:
        raise TcsValueError(f"a group holds 1..B={B} frames, got {n}")
    _check_shape((height, width))
    dtype = np.dtype(frames.dtype)
    mdtype = measurement_dtype(dtype)
    item = dtype.itemsize
    module = load_module(frames.device.id)
    kernel = module.get_function(KERNEL_NAMES[dtype])
    with frames.device:
        if frames.strides[2] != item or any(s < 0 or s % item for s in frames.strides):
            frames = cp.ascontiguousarray(frames)
        if out is None:
            out = cp.empty((height, width), mdtype)
        elif (
            out.shape != (height, width)
            or np.dtype(out.dtype) != mdtype
            or out.device.id != frames.device.id
            or out.strides[1] != mdtype.itemsize
            or out.strides[0] < 0
            or out.strides[0] % mdtype.itemsize
        ):
            raise TcsValueError(
                f"out must be a ({height}, {width}) {mdtype.name} array with unit pixel "
                "stride on the frames' device"
            )
        words_ptr = 0
        if words is not None:
            wpr = (width + 63) // 64
            if (
                np.dtype(words.dtype) != np.uint64
                or words.ndim != 3
                or words.shape[0] < n
                or tuple(words.shape[1:]) != (height, wpr)
                or not words.flags.c_contiguous
                or words.device.id != frames.device.id
            ):
                raise TcsValueError(
                    f"words must be C-contiguous uint64 (>={n}, {height}, {wpr}) "
                    "on the frames' device"
                )
            words_ptr = words.data.ptr
        frame_stride, row_stride = frames.strides[0] // item, frames.strides[1] // item
        out_row_stride = out.strides[0] // mdtype.itemsize
        vec = vector_ok(
            item, frames.data.ptr, frame_stride, row_stride,
            mdtype.itemsize, out.data.ptr, out_row_stride,
        )
        # preset above any frame index; the kernel lowers it on NaN/inf
        flag = cp.full(1, n, np.int32) if dtype.kind == "f" else None
        grid, block = mask_sum_launch(height, width, dtype, _max_blocks(frames.device))
        kernel(
            grid,
            block,
            mask_sum_args(
                frames.data.ptr, frame_stride, row_stride, n, height, width,
                words_ptr, mask_key(seed), out.data.ptr, out_row_stride, vec,
                0 if flag is None else flag.data.ptr,
            ),
        )
        if flag is not None:
            bad = int(flag.get()[0])
            if bad < n:
                raise TcsValueError(f"frame {bad} contains NaN or infinite values")
    return out


def _external_stream(cp, ptr: int):
    if ptr == 1:  # __cuda_array_interface__: legacy default stream
        return cp.cuda.Stream.null
    if ptr == 2:  # per-thread default stream
        return cp.cuda.Stream.ptds
    return cp.cuda.ExternalStream(int(ptr))


class _CupyBackend:
    """The GPU side of :class:`CudaEncoder`: buffers, streams, events and
    launches.  The encoder decides what happens when; this class only
    enqueues work and waits where a buffer must be free.

    Two group slots alternate: slot s holds frames (B, H, W), a measurement
    (H, W) on the device and in pinned host memory, and a bad-frame flag.
    Three streams: uploads (``copy``), kernels (``compute``) and downloads
    (``d2h``), so an upload, a kernel and a download can run at once; events
    order them.  All streams are blocking streams, so work the caller queues
    on the legacy default stream is also ordered with them.
    """

    def __init__(self, seed, B, shape, dtype, device_id, masks, staging):
        cp = self.cp = _import_cupy()
        self.device = _cuda_device(cp, device_id)
        self.device_id = self.device.id
        module = load_module(self.device_id)
        self.B = B
        self.height, self.width = shape
        self.dtype = dtype
        self.mdtype = measurement_dtype(dtype)
        self.key = mask_key(seed)
        self.frame_bytes = self.height * self.width * dtype.itemsize
        self.out_bytes = self.height * self.width * self.mdtype.itemsize
        import cupyx

        try:
            with self.device:
                self.kernel = module.get_function(KERNEL_NAMES[dtype])
                self.grid, self.block = mask_sum_launch(
                    self.height, self.width, dtype, _max_blocks(self.device)
                )
                self.copy_stream = cp.cuda.Stream(non_blocking=False)
                self.compute_stream = cp.cuda.Stream(non_blocking=False)
                self.d2h_stream = cp.cuda.Stream(non_blocking=False)

                def event():
                    # block=True: a waiting host thread sleeps instead of
                    # spinning on a core the writer's zstd threads need
                    return cp.cuda.Event(block=True, disable_timing=True)

                self.frames = cp.empty((2, B, self.height, self.width), dtype)
                self.out = cp.empty((2, self.height, self.width), self.mdtype)
                self.flags = cp.empty(2, np.int32)
                self.host_out = cupyx.empty_pinned((2, self.height, self.width), self.mdtype)
                self.host_flags = cupyx.empty_pinned(2, np.int32)
                self.staging = cupyx.empty_pinned((staging, self.height, self.width), dtype)
                self.staging_free = [event() for _ in range(staging)]
                self.frames_free = [event(), event()]
                self.d2h_done = [event(), event()]
                self._ev_copies = event()
                self._ev_source = event()
                self._ev_copied = event()
                self.words = None
                if masks == "packed":
                    self.words = cp.empty(
                        (B, self.height, (self.width + 63) // 64), np.uint64
                    )
                    n_words = self.words.size
                    grid, block = launch_config(n_words, _max_blocks(self.device))
                    with self.compute_stream:
                        module.get_function(MASK_WORDS_KERNEL)(
                            (grid,),
                            (block,),
                            mask_words_args(
                                self.key, B, self.height, self.width, self.words.data.ptr
                            ),
                        )
        except (cp.cuda.memory.OutOfMemoryError, cp.cuda.runtime.CUDARuntimeError) as exc:
            # device memory (OutOfMemoryError) or pinned host memory
            need = 2 * B * self.frame_bytes + 4 * self.out_bytes
            raise TcsDeviceError(
                f"cannot allocate the buffers of a {self.height}x{self.width} {dtype.name} "
                f"encoder at B={B} (about {need / 2**30:.2f} GiB of GPU memory): {exc}"
            ) from exc
        self.vec = [
            vector_ok(
                dtype.itemsize, self._frame_ptr(s, 0), self.height * self.width, self.width,
                self.mdtype.itemsize, self._out_ptr(s), self.width,
            )
            for s in (0, 1)
        ]
        self.n = [0, 0]
        self._staged = 0

    def _frame_ptr(self, slot, b):
        return self.frames.data.ptr + (slot * self.B + b) * self.frame_bytes

    def _out_ptr(self, slot):
        return self.out.data.ptr + slot * self.out_bytes

    def to_device(self, frame):
        """``frame`` as a CuPy array (a view, no copy) on the encoder's device."""
        cp = self.cp
        with self.device:
            if isinstance(frame, cp.ndarray):
                arr = frame
            elif type(frame).__module__.split(".")[0] == "torch":
                arr = cp.asarray(frame.detach())  # __cuda_array_interface__ view
            elif hasattr(frame, "__cuda_array_interface__"):
                arr = cp.asarray(frame)
            else:
                # the producer makes our copy stream wait for its work
                with self.copy_stream:
                    arr = cp.from_dlpack(frame)
        if arr.device.id != self.device_id:
            raise TcsValueError(
                f"frame is on CUDA device {arr.device.id}, the encoder on device {self.device_id}"
            )
        return arr

    def producer_stream(self, frame):
        """The stream whose queued work may still write ``frame``."""
        cp = self.cp
        if type(frame).__module__.split(".")[0] == "torch":
            import torch

            ptr = torch.cuda.current_stream(frame.device).cuda_stream
            return cp.cuda.Stream.null if ptr == 0 else cp.cuda.ExternalStream(ptr)
        if not isinstance(frame, cp.ndarray):
            cai = getattr(frame, "__cuda_array_interface__", None)
            if isinstance(cai, dict) and cai.get("stream"):
                return _external_stream(cp, cai["stream"])
        return cp.cuda.get_current_stream()

    def stage_host(self, frame: np.ndarray, slot: int, b: int) -> None:
        """Upload a validated host frame into frame b of group slot ``slot``."""
        rt = self.cp.cuda.runtime
        s = self._staged % len(self.staging)
        self._staged += 1
        self.staging_free[s].synchronize()  # its previous upload has finished
        np.copyto(self.staging[s], frame)
        with self.device:
            if b == 0:  # the kernel that read this slot two groups ago is done
                self.copy_stream.wait_event(self.frames_free[slot])
            rt.memcpyAsync(
                self._frame_ptr(slot, b), self.staging[s].ctypes.data, self.frame_bytes,
                _H2D, self.copy_stream.ptr,
            )
            self.staging_free[s].record(self.copy_stream)

    def all_finite(self, arr, frame) -> bool:
        """Whether a float device frame holds no NaN or infinity; computed
        on the producer's stream, after its pending writes."""
        cp = self.cp
        with self.device, self.producer_stream(frame):
            return bool(cp.isfinite(arr).all())

    def stage_device(self, arr, frame, slot: int, b: int) -> None:
        """Copy a validated device frame (``arr``, a CuPy view of the pushed
        ``frame``) into frame b of group slot ``slot``."""
        cp = self.cp
        with self.device:
            producer = self.producer_stream(frame)
            if b == 0:
                self.copy_stream.wait_event(self.frames_free[slot])
            self._ev_source.record(producer)
            self.copy_stream.wait_event(self._ev_source)
            if arr.flags.c_contiguous:
                cp.cuda.runtime.memcpyAsync(
                    self._frame_ptr(slot, b), arr.data.ptr, self.frame_bytes, _D2D,
                    self.copy_stream.ptr,
                )
            else:
                with self.copy_stream:
                    cp.copyto(self.frames[slot, b], arr)
            # the caller may reuse the frame once its stream passes this point
            self._ev_copied.record(self.copy_stream)
            producer.wait_event(self._ev_copied)

    def launch(self, slot: int, n: int) -> None:
        """Enqueue the mask sum of the n frames in ``slot`` and its download."""
        rt = self.cp.cuda.runtime
        cs = self.compute_stream
        flag_ptr = self.flags.data.ptr + 4 * slot
        with self.device:
            self._ev_copies.record(self.copy_stream)
            cs.wait_event(self._ev_copies)
            # the measurement buffers of this slot (group g - 2) have been
            # downloaded; the host copied them out before this launch
            cs.wait_event(self.d2h_done[slot])
            rt.memsetAsync(flag_ptr, _FLAG_FILL, 4, cs.ptr)
            args = mask_sum_args(
                self._frame_ptr(slot, 0), self.height * self.width, self.width, n,
                self.height, self.width, 0 if self.words is None else self.words.data.ptr,
                self.key, self._out_ptr(slot), self.width, self.vec[slot], flag_ptr,
            )
            with cs:
                self.kernel(self.grid, self.block, args)
            self.frames_free[slot].record(cs)
            self.d2h_stream.wait_event(self.frames_free[slot])
            rt.memcpyAsync(
                self.host_out[slot].ctypes.data, self._out_ptr(slot), self.out_bytes, _D2H,
                self.d2h_stream.ptr,
            )
            rt.memcpyAsync(
                self.host_flags.ctypes.data + 4 * slot, flag_ptr, 4, _D2H, self.d2h_stream.ptr
            )
            self.d2h_done[slot].record(self.d2h_stream)
        self.n[slot] = n

    def collect(self, slot: int) -> tuple[np.ndarray, int]:
        """Wait for slot's download; return (measurement copy, first bad
        frame index within the group or -1)."""
        self.d2h_done[slot].synchronize()
        data = self.host_out[slot].copy()
        bad = int(self.host_flags[slot])
        return data, bad if 0 <= bad < self.n[slot] else -1

    def close(self) -> None:
        with self.device:
            for stream in (self.copy_stream, self.compute_stream, self.d2h_stream):
                stream.synchronize()
        self.frames = self.out = self.flags = self.words = None
        self.host_out = self.host_flags = self.staging = None


class CudaEncoder:
    """Streaming encoder of one movie on a CUDA GPU.

    Parameters
    ----------
    seed : int
        Mask seed (64-bit).
    B : int
        Frames per group, 2..64.
    shape : (int, int)
        Frame height and width.
    dtype : numpy dtype
        Frame dtype: uint8, uint16, uint32 or float32.
    device_id : int, optional
        CUDA device (default 0).
    lag : {1, 0}, optional
        1 (default): ``push`` returns each measurement one group late, so
        its download overlaps the next group; end with :meth:`drain`.
        0: :class:`~tcscodec.encoder.CpuEncoder`'s exact semantics.  See the
        module docstring.
    masks : {"fused", "packed"}, optional
        Compute the mask words inside the sum kernel (default) or generate
        them once on the GPU and read them.
    staging : int, optional
        Pinned host buffers for uploading numpy frames (default 2: the next
        frame is copied in while the previous one uploads).

    Raises
    ------
    TcsValueError
        For an invalid B, shape, dtype, lag, masks or staging.
    TcsDeviceError
        Without CuPy, without a CUDA device, without enough GPU memory, or
        if NVRTC cannot compile the kernels.
    """

    device = "cuda"

    def __init__(
        self, seed: int, B: int, shape, dtype, device_id: int = 0, *,
        lag: int = 1, masks: str = "fused", staging: int = 2,
    ):
        self.seed = check_seed(seed)
        self.B = check_B(B)
        self.shape = _check_shape(shape)
        self.dtype = np.dtype(dtype)
        self.mdtype = measurement_dtype(self.dtype)
        if isinstance(lag, bool) or lag not in (0, 1):
            raise TcsValueError(f"lag must be 0 or 1, got {lag!r}")
        if masks not in MASK_MODES:
            raise TcsValueError(f"masks must be one of {MASK_MODES}, got {masks!r}")
        if isinstance(staging, bool) or not isinstance(staging, int) or staging < 1:
            raise TcsValueError(f"staging must be a positive int, got {staging!r}")
        self.lag = int(lag)
        self.masks = masks
        self.device_id = device_id
        self.frames_pushed = 0
        # (group, n_frames, slot) of the groups launched and not yet returned
        self._pending: collections.deque[tuple[int, int, int]] = collections.deque()
        self._finished = False
        self._backend = None
        self._backend = _CupyBackend(
            self.seed, self.B, self.shape, self.dtype, device_id, masks, staging
        )

    @property
    def group(self) -> int:
        """Index of the group the next frame belongs to."""
        return self.frames_pushed // self.B

    @property
    def closed(self) -> bool:
        return self._backend is None

    def __repr__(self) -> str:
        return (
            f"<CudaEncoder B={self.B} shape={self.shape} dtype={self.dtype.name} "
            f"device_id={self.device_id} lag={self.lag} masks={self.masks!r} "
            f"frames_pushed={self.frames_pushed}{' closed' if self.closed else ''}>"
        )

    def push(self, frame) -> Measurement | None:
        """Add one frame; return a completed group's measurement or None.

        With ``lag=0`` that is the group this frame completes; with
        ``lag=1`` the group before it (see the module docstring).
        """
        backend = self._usable()
        index = self.frames_pushed
        b = index % self.B
        slot = (index // self.B) % 2
        if _is_device_array(frame):
            arr = backend.to_device(frame)
            _check_device_frame(arr, self.shape, self.dtype, index)
            if self.dtype.kind == "f" and not backend.all_finite(arr, frame):
                raise TcsValueError(f"frame {index} contains NaN or infinite values")
            backend.stage_device(arr, frame, slot, b)
        else:
            frame = check_frame(frame, self.shape, self.dtype, index)
            backend.stage_host(frame, slot, b)
        self.frames_pushed += 1
        if b < self.B - 1:
            return None
        backend.launch(slot, self.B)
        self._pending.append((index // self.B, self.B, slot))
        if len(self._pending) > self.lag:
            return self._collect()
        return None

    def drain(self) -> list[Measurement]:
        """Finish the stream: all measurements not yet returned, in order
        (the lagged full group and/or the short last group)."""
        backend = self._backend
        if self._finished or backend is None:
            return []
        self._finished = True
        n = self.frames_pushed % self.B
        if n:
            group = self.frames_pushed // self.B
            backend.launch(group % 2, n)
            self._pending.append((group, n, group % 2))
        out = []
        while self._pending:
            out.append(self._collect())
        return out

    def close(self) -> None:
        """Wait for the GPU and free the buffers; the encoder is unusable
        after this.  Measurements not yet returned are dropped."""
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()

    def _usable(self):
        if self._backend is None:
            raise TcsValueError("the encoder is closed")
        if self._finished:
            raise TcsValueError("the stream was drained; make a new encoder")
        return self._backend

    def _collect(self) -> Measurement:
        group, n, slot = self._pending.popleft()
        assert self._backend is not None  # pending groups exist only while the backend does
        data, bad = self._backend.collect(slot)
        if bad >= 0:
            raise TcsValueError(f"frame {group * self.B + bad} contains NaN or infinite values")
        return Measurement(group, n, data)
