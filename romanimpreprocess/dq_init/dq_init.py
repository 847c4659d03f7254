"""Initial data-quality flags of a ramp (docs/dq_init/index.rst).

Plain functions on arrays: the guide-window region, the bad-pixel mask and the
EXCLUDE_FIRST convention.
"""

import numpy as np
from numpy.typing import NDArray
from roman_datamodels.dqflags import group, pixel

__all__ = ["apply_mask", "exclude_first_resultant", "flag_guide_window"]


def flag_guide_window(
    pixeldq: NDArray[np.uint32],
    window: tuple[int, int, int, int],
    *,
    expand: int = 1,
    row0: int = 0,
    ny: int | None = None,
) -> bool:
    """Flag the guide-star window in ``pixeldq`` in place, as romancal's dq_init does.

    Columns ``xstart:xstop`` of every row are set to GW_AFFECTED_DATA (an assignment,
    as romancal does), then the window grown by ``expand`` pixels (clipped to the
    frame) is OR-ed with DO_NOT_USE | GW_AFFECTED_DATA.

    Parameters
    ----------
    pixeldq : ndarray, shape (ny, nx), uint32
        Pixel flags, modified in place.
    window : tuple of int
        ``(xstart, xstop, ystart, ystop)`` of the guide window, full-frame pixels.
    expand : int
        Pixels to grow the window by on every side.
    row0 : int
        Frame row of ``pixeldq``'s first row (a band of rows of the frame).
    ny : int, optional
        Rows of the whole frame (default: those of ``pixeldq``).

    Returns
    -------
    bool
        True if the window lies on the frame and was flagged.
    """
    xstart, xstop, ystart, ystop = (int(v) for v in window)
    rows, nx = pixeldq.shape
    ny = rows if ny is None else int(ny)
    if not (0 <= xstart < nx and 0 <= ystart < ny):
        return False
    pixeldq[:, xstart:xstop] = pixel.GW_AFFECTED_DATA
    xstart, xstop = np.clip([xstart - expand, xstop + expand], 0, nx)
    ystart, ystop = np.clip([ystart - expand, ystop + expand], 0, ny)
    # The window in the rows held (a band): frame rows less ``row0``, clipped.
    ystart, ystop = (int(np.clip(y - row0, 0, rows)) for y in (ystart, ystop))
    pixeldq[ystart:ystop, xstart:xstop] |= np.uint32(
        pixel.DO_NOT_USE | pixel.GW_AFFECTED_DATA
    )
    return True


def apply_mask(pixeldq: NDArray[np.uint32], mask_dq: NDArray) -> None:
    """OR the bad-pixel mask into ``pixeldq`` in place (shapes must match)."""
    pixeldq |= np.asarray(mask_dq).astype(np.uint32, copy=False)


def exclude_first_resultant(groupdq: NDArray[np.uint8]) -> None:
    """Mark resultant 0 DO_NOT_USE in place (the reset read is not used in the fit)."""
    groupdq[0] |= np.uint8(group.DO_NOT_USE)
