"""Dark-current subtraction (docs/dark_current/index.rst), pure arrays."""

import numpy as np
from numpy.typing import NDArray

from romanimpreprocess.ipc import ipc

__all__ = ["deconvolved_dark_slope"]


def deconvolved_dark_slope(
    dark_slope: NDArray,
    kernel: NDArray | None,
    gain: NDArray,
    *,
    iterations: int = ipc.DEFAULT_ITERATIONS,
    dtype=np.float32,
    clip_gain: bool = True,
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """The full-frame dark slope, IPC-deconvolved in electrons: ``R(d g) / g``.

    Returns the float32 slope and the pixels whose gain is unusable (NO_GAIN_VALUE).
    Without a kernel the slope is returned as is.
    """
    slope = np.array(dark_slope, dtype=np.float32)[None]
    bad = np.zeros(slope.shape[1:], dtype=bool)
    if kernel is not None:
        bad = ipc.deconvolve_cube(
            slope, kernel, gain, iterations=iterations, dtype=dtype,
            clip_gain=clip_gain, band_rows=ipc.SINGLE_PLANE_BAND_ROWS,
        )  # fmt: skip
    return slope[0], bad
