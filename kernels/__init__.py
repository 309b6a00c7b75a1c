"""CUDA C++ sources of tcscodec's GPU kernels, shipped as package data.

Installed as ``tcscodec.kernels``; :func:`source` returns a kernel's text for
``cupy.RawModule`` (NVRTC), so the sources are compiled at run time on the
user's GPU.
"""

from importlib import resources

__all__ = ["source", "path"]


def source(name: str) -> str:
    """The text of the kernel source file ``name`` (e.g. ``"mask_sum.cu"``)."""
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def path(name: str):
    """A ``Traversable`` pointing at the kernel source file ``name``."""
    return resources.files(__name__).joinpath(name)
