"""imageio v3 plugin for ``.tcs`` files.

Registered through imageio's public config when :mod:`tcscodec` is imported
(imageio has no entry-point discovery)::

    import tcscodec, imageio.v3 as iio
    movie = iio.imread("movie.tcs")                # decoded, T x H x W, the input's dtype
    frame = iio.imread("movie.tcs", index=5)       # one frame
    iio.improps("movie.tcs").spacing               # (y, x) pixel size in Å, from pixel_size_A
    iio.imwrite("movie.tcs", frames, B=30)         # encode

Files without the ``.tcs`` magic, and writes to other extensions, raise
imageio's ``InitializationError`` so imageio moves on to other plugins.
"""

from __future__ import annotations

import numpy as np

PLUGIN_NAME = "tcscodec"

__all__ = ["TcsPlugin", "register", "PLUGIN_NAME"]


def register() -> bool:
    """Add the plugin and the ``.tcs`` extension to imageio's config.

    Returns False (and does nothing) when imageio is not installed.
    """
    try:
        from imageio.config import FileExtension, PluginConfig, known_extensions, known_plugins
    except ImportError:
        return False
    known_plugins[PLUGIN_NAME] = PluginConfig(
        name=PLUGIN_NAME, class_name="TcsPlugin", module_name=__name__
    )
    ext = FileExtension(
        extension=".tcs",
        priority=[PLUGIN_NAME],
        name="TCS",
        description="Temporal compressive sensing EM movie (tcscodec)",
        volume_support=True,  # type: ignore[call-arg]  # in the code, missing from its extensions.pyi
    )
    known_extensions[".tcs"] = [e for e in known_extensions.get(".tcs", []) if e.priority != [PLUGIN_NAME]] + [ext]
    return True


def _plugin_base():
    from imageio.core.v3_plugin_api import PluginV3

    return PluginV3


class TcsPlugin(_plugin_base()):  # type: ignore[misc]  # imageio is optional: its base is imported lazily
    """imageio v3 plugin wrapping :class:`tcscodec.TcsReader` / :class:`tcscodec.TcsWriter`.

    Reading: ``read(index=None)`` decodes the whole movie, ``read(index=i)``
    one frame; decoder options (``decoder``, ``device``, ``tile``, ...) are
    passed on.  Writing: ``write(frames, B=..., seed=..., ...)`` takes the
    keywords of :func:`tcscodec.write`.
    """

    def __init__(self, request, **kwargs):
        from imageio.core.request import InitializationError

        from .format import MAGIC

        super().__init__(request)
        self._reader = None
        if request.mode.io_mode == "r":
            if not request.firstbytes.startswith(MAGIC[:8]):
                raise InitializationError("not a .tcs file (no TCS magic)")
            from .reader import TcsReader

            self._reader = TcsReader(request.get_local_filename(), **kwargs)
        else:
            if request.extension not in (".tcs", None):
                raise InitializationError(f"tcscodec writes .tcs files, not {request.extension}")

    def read(self, *, index=None, **kwargs) -> np.ndarray:
        return self._reader.read(index, **kwargs)

    def iter(self, **kwargs):
        yield from self._reader.iter(**kwargs)

    def write(self, ndimage, *, B: int = 10, is_batch=None, **kwargs):
        from .writer import write

        frames = np.asarray(ndimage)
        write(self.request.get_local_filename(), frames, B=B, **kwargs)

    def properties(self, index=None):
        from imageio.core.v3_plugin_api import ImageProperties

        p = self._reader.properties(index)
        return ImageProperties(shape=p.shape, dtype=p.dtype, n_images=p.n_images, is_batch=p.is_batch,
                               spacing=p.spacing)

    def metadata(self, index=None, exclude_applied: bool = True):
        return self._reader.metadata(index)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        super().close()
