"""Build and drive the g++ host shim of kernels/mask_sum.cu (test helper).

``build_shim(folder)`` compiles tests/cuda_host_shim.cpp, which includes the
kernel source through tests/cuda_host_shim.h, into a shared library;
``launch(lib, name, grid, block, args)`` runs one kernel launch with the
arguments passed the way ``cuLaunchKernel`` (and so CuPy) passes them.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np

from tcscodec import kernels

TESTS = Path(__file__).resolve().parent
KERNEL = Path(str(kernels.path("mask_sum.cu")))
GXX = shutil.which("g++")


def build_shim(folder) -> ctypes.CDLL:
    """Compile the shim into ``folder`` and load it; needs g++."""
    lib_path = Path(folder) / "libtcs_shim.so"
    cmd = [
        GXX, "-std=c++17", "-O2", "-shared", "-fPIC",
        # the device's float semantics: no FMA contraction; vector loads that
        # reinterpret the frame's bytes, as on the GPU
        "-ffp-contract=off", "-fno-strict-aliasing",
        "-Wall", "-Werror", "-Wno-unknown-pragmas",
        "-I", str(TESTS), "-I", str(KERNEL.parent),
        str(TESTS / "cuda_host_shim.cpp"), "-o", str(lib_path),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"g++ failed:\n{result.stderr}")
    lib = ctypes.CDLL(str(lib_path))
    lib.shim_launch.argtypes = [ctypes.c_char_p, *[ctypes.c_uint] * 4, ctypes.POINTER(ctypes.c_void_p)]
    lib.shim_launch.restype = ctypes.c_int
    lib.shim_block_size.restype = ctypes.c_int
    return lib


def launch(lib, name, grid, block, args):
    """Run kernel ``name`` in the shim.  ``args`` are numpy scalars (or
    None for a NULL pointer), each passed as a pointer to its bytes like
    cuLaunchKernel's kernelParams; ``grid`` and ``block`` are ints or
    tuples of 1 or 2 ints."""
    def dims(d):
        d = (d,) if isinstance(d, (int, np.integer)) else tuple(int(v) for v in d)
        return (*d, 1)[:2] if len(d) < 2 else d[:2]

    cells = [np.array([np.uint64(0) if a is None else a]) for a in args]
    params = (ctypes.c_void_p * len(cells))(*[c.ctypes.data for c in cells])
    if lib.shim_launch(name.encode(), *dims(grid), *dims(block), params) != 0:
        raise LookupError(f"the shim has no kernel {name!r}")
