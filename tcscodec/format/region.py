"""The one check of a region: a window ``(y0, y1, x0, x1)`` of a frame.

Rows ``y0 <= y < y1`` and columns ``x0 <= x < x1``, half-open like Python
slices.  The reader, the container, the tiling engine and the masks all
check regions here, so they accept the same windows and refuse the others
with the same :class:`~tcscodec.errors.TcsValueError` message.
"""

from __future__ import annotations

from ..errors import TcsValueError

__all__ = ["check_region"]


def check_region(region, height: int, width: int, *, allow_empty: bool = False) -> tuple[int, int, int, int]:
    """``region`` as four ints, or the whole ``height x width`` frame for None.

    Raises :class:`~tcscodec.errors.TcsValueError` (a ``ValueError``) when
    ``region`` is not four integers, or is empty or reaches outside the
    frame.  ``allow_empty`` accepts empty windows (``y0 == y1`` or
    ``x0 == x1``): the mask generator computes those as empty arrays.
    """
    if region is None:
        return (0, int(height), 0, int(width))
    try:
        y0, y1, x0, x1 = (int(v) for v in region)
    except (TypeError, ValueError):
        raise TcsValueError(f"region must be (y0, y1, x0, x1), got {region!r}") from None
    if allow_empty:
        ok = 0 <= y0 <= y1 <= height and 0 <= x0 <= x1 <= width
    else:
        ok = 0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width
    if not ok:
        what = "outside" if allow_empty else "empty or outside"
        raise TcsValueError(f"region {tuple(region)} is {what} the {height}x{width} frame")
    return (y0, y1, x0, x1)
