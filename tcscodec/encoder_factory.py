"""The one place that picks a streaming encoder for a device.

It imports both :mod:`tcscodec.encoder` (numpy) and, lazily,
:mod:`tcscodec.cuda_encoder` (CuPy); neither of them imports the other or
this module, so the encoders form no import cycle.
"""

from __future__ import annotations

from collections.abc import Callable

from .encoder import CpuEncoder
from .errors import TcsValueError

__all__ = ["make_encoder"]


def make_encoder(device: str, seed: int, B: int, shape, dtype, *, threads: int = 1,
                 run: Callable | None = None, **options):
    """The streaming encoder for ``device`` ("cpu", "cuda" or "cuda:N");
    ``threads`` and ``run`` are :class:`~tcscodec.encoder.CpuEncoder`'s
    (the CUDA encoder adds on the GPU), ``options`` go to
    :class:`~tcscodec.cuda_encoder.CudaEncoder` (``lag``, ``masks``, ``staging``)."""
    if device == "cpu":
        if options:
            raise TcsValueError(f"options {sorted(options)} apply to device='cuda' only")
        return CpuEncoder(seed, B, shape, dtype, threads=threads, run=run)
    if device == "cuda" or str(device).startswith("cuda:"):
        from .cuda_encoder import CudaEncoder  # lazy: CuPy is optional

        device_id = int(str(device).partition(":")[2] or 0)
        return CudaEncoder(seed, B, shape, dtype, device_id=device_id, **options)
    raise TcsValueError(f"unknown device {device!r}; use 'cpu' or 'cuda'")
