"""A CPU stand-in for the part of CuPy that tcscodec.cuda_encoder uses
(test helper).

"Device" memory is host memory, so device pointers are host pointers;
``memcpyAsync``/``memsetAsync`` are ``memmove``/``memset``; every stream
runs its work at once, in call order; ``RawModule`` kernels run through the
g++ shim of kernels/mask_sum.cu (tests/cuda_shim.py), with their arguments
packed the way CuPy packs them.  With it installed, the real
``_CupyBackend`` -- buffer and pointer arithmetic, slot offsets, kernel
argument tuples, the bad-frame flag round trip, copies of strided device
frames -- and bench/encode_gpu.py run without a GPU.

What it cannot check: stream and event ordering (everything here is
synchronous), asynchronous overlap, and real CuPy/NVRTC behaviour.
"""

from __future__ import annotations

import ctypes
import sys
import time
import types

import numpy as np

from .cuda_shim import launch


class CUDARuntimeError(RuntimeError):
    pass


class OutOfMemoryError(MemoryError):
    pass


class _Pointer:
    def __init__(self, ptr):
        self.ptr = ptr


class Device:
    def __init__(self, device_id=0):
        self.id = int(device_id)
        # one SM: a capped grid, so the kernels' grid-stride loops run
        self.attributes = {"MultiProcessorCount": 1}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class Event:
    def __init__(self, block=False, disable_timing=False, interprocess=False):
        self.time = None

    def record(self, stream=None):
        self.time = time.perf_counter()
        return self

    def synchronize(self):
        pass

    @property
    def done(self):
        return True


class Stream:
    _stack: list = []

    def __init__(self, non_blocking=False, ptr=None):
        self.ptr = id(self) if ptr is None else int(ptr)

    def __enter__(self):
        Stream._stack.append(self)
        return self

    def __exit__(self, *exc):
        Stream._stack.pop()
        return False

    def synchronize(self):
        pass

    def wait_event(self, event):
        pass

    def record(self, event=None):
        return (event or Event()).record(self)


Stream.null = Stream(ptr=0)
Stream.ptds = Stream(ptr=2)


def ExternalStream(ptr, device_id=-1):  # noqa: N802 - CuPy's name
    return Stream(ptr=ptr)


def get_current_stream():
    return Stream._stack[-1] if Stream._stack else Stream.null


def get_elapsed_time(start, stop):
    return (stop.time - start.time) * 1e3


class _Flags:
    def __init__(self, a):
        self.c_contiguous = a.flags.c_contiguous


class ndarray:  # noqa: N801 - CuPy's name
    """A "device" array: a numpy array that is not a numpy array."""

    def __init__(self, array):
        self._a = array

    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    strides = property(lambda self: self._a.strides)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    flags = property(lambda self: _Flags(self._a))
    data = property(lambda self: _Pointer(self._a.ctypes.data))
    device = property(lambda self: Device(0))

    @property
    def __cuda_array_interface__(self):
        return {
            "shape": self._a.shape, "typestr": self._a.dtype.str, "version": 3,
            "data": (self._a.ctypes.data, False), "strides": self._a.strides,
        }

    def __getitem__(self, key):
        return ndarray(self._a[key])

    def __setitem__(self, key, value):
        self._a[key] = _unwrap(value)

    def __iter__(self):
        return (ndarray(x) for x in self._a)

    def __len__(self):
        return len(self._a)

    def get(self):
        return self._a.copy()

    def set(self, array):
        np.copyto(self._a, array)

    def fill(self, value):
        self._a.fill(value)

    def astype(self, dtype):
        return ndarray(self._a.astype(dtype))

    def all(self):
        return ndarray(np.array(self._a.all()))

    def __bool__(self):
        return bool(self._a)


def _unwrap(x):
    return x._a if isinstance(x, ndarray) else x


def empty(shape, dtype=np.float64):
    return ndarray(np.empty(shape, dtype))


def zeros(shape, dtype=np.float64):
    return ndarray(np.zeros(shape, dtype))


def full(shape, value, dtype=None):
    return ndarray(np.full(shape, value, dtype))


def asarray(x, dtype=None):
    if isinstance(x, ndarray) and dtype is None:
        return x
    return ndarray(np.array(_unwrap(x), dtype=dtype))


def ascontiguousarray(x):
    return ndarray(np.ascontiguousarray(_unwrap(x)))


def copyto(dst, src):
    np.copyto(dst._a, _unwrap(src))


def isfinite(x):
    return ndarray(np.isfinite(_unwrap(x)))


def from_dlpack(x):
    return ndarray(np.from_dlpack(x))


class _Kernel:
    def __init__(self, lib, name):
        self.lib, self.name = lib, name

    def __call__(self, grid, block, args, **kwargs):
        packed = []
        for a in args:  # CuPy's rules (cupy/cuda/function.pyx _pointer)
            if a is None:
                a = np.uint64(0)
            elif isinstance(a, ndarray):
                a = np.uint64(a.data.ptr)
            elif isinstance(a, int):  # bool too, as in CuPy
                a = np.int64(a)
            elif isinstance(a, float):
                a = np.float64(a)
            elif not isinstance(a, np.generic):
                raise TypeError(f"Unsupported type {type(a)}")
            packed.append(a)
        launch(self.lib, self.name, grid, block, packed)


def make_modules(lib):
    """``(cupy, cupyx)`` module objects driving the shim library ``lib``."""
    runtime = types.SimpleNamespace(
        CUDARuntimeError=CUDARuntimeError,
        getDeviceCount=lambda: 1,
        getDeviceProperties=lambda device_id: {"name": b"fake CuPy (g++ shim)"},
        memcpyAsync=lambda dst, src, size, kind, stream: ctypes.memmove(dst, src, size),
        memsetAsync=lambda ptr, value, size, stream: ctypes.memset(ptr, value, size),
    )
    cuda = types.SimpleNamespace(
        runtime=runtime,
        memory=types.SimpleNamespace(OutOfMemoryError=OutOfMemoryError),
        Device=Device, Event=Event, Stream=Stream, ExternalStream=ExternalStream,
        get_current_stream=get_current_stream, get_elapsed_time=get_elapsed_time,
    )

    class RawModule:
        def __init__(self, code=None, options=(), **kwargs):
            assert "tcs_mask_sum_u16" in code and "-std=c++17" in options

        def get_function(self, name):
            return _Kernel(lib, name)

    cupy = types.ModuleType("cupy")
    cupy.__dict__.update(
        cuda=cuda, ndarray=ndarray, RawModule=RawModule, empty=empty, zeros=zeros,
        full=full, asarray=asarray, ascontiguousarray=ascontiguousarray, copyto=copyto,
        from_dlpack=from_dlpack, isfinite=isfinite,
        random=types.SimpleNamespace(
            poisson=lambda lam, size: ndarray(np.random.default_rng(0).poisson(lam, size))
        ),
        get_default_memory_pool=lambda: types.SimpleNamespace(free_all_blocks=lambda: None),
    )
    cupyx = types.ModuleType("cupyx")
    cupyx.empty_pinned = lambda shape, dtype=np.float64: np.empty(shape, dtype)
    return cupy, cupyx


def install(monkeypatch, lib):
    """Put the fake in ``sys.modules`` for one test; returns the fake cupy."""
    from tcscodec import cuda_encoder

    cupy, cupyx = make_modules(lib)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "cupyx", cupyx)
    monkeypatch.setattr(cuda_encoder, "_modules", {})
    return cupy
