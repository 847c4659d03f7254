"""Flat field and pixel-area normalisation (docs/flatfield/index.rst), pure arrays."""

import numpy as np
from numpy.typing import NDArray

from romanimpreprocess.ipc import ipc
from romanimpreprocess.parallel import run_in_threads

__all__ = ["FLAT_RANGE", "effective_flat", "prepare_flat"]

FLAT_RANGE = (0.1, 10.0)  # flat values outside are clipped and flagged NO_FLAT_FIELD


def prepare_flat(
    flat: NDArray,
    kernel: NDArray | None,
    gain: NDArray,
    border: int,
    *,
    iterations: int = ipc.DEFAULT_ITERATIONS,
    dtype=np.float32,
) -> tuple[NDArray[np.float32], NDArray[np.bool_], NDArray[np.bool_]]:
    """Clip the flat, IPC-deconvolve it in electrons; return the science-area flat.

    Returns ``(F, out_of_range, bad_gain)`` on the science area: the flat, the pixels
    clipped to `FLAT_RANGE` and those whose gain is ``<= 0.1`` (clipped).
    """
    ny, nx = flat.shape
    b = border
    science = (slice(b, ny - b), slice(b, nx - b))
    full = np.ones((1, ny, nx), dtype=np.float32)
    full[0][science] = flat[science]
    lo, hi = FLAT_RANGE
    with np.errstate(invalid="ignore"):
        out_of_range = ~((full[0] >= lo) & (full[0] <= hi))
    np.clip(full, lo, hi, out=full)
    full[0][~np.isfinite(full[0])] = 1.0
    bad_gain = np.zeros((ny, nx), dtype=bool)
    if kernel is not None:
        bad_gain = ipc.deconvolve_cube(
            full, kernel, gain, iterations=iterations, dtype=dtype, clip_gain=True
        )
    else:
        with np.errstate(invalid="ignore"):
            bad_gain = ~(np.asarray(gain) > ipc.MIN_GAIN)
    return full[0][science], out_of_range[science], bad_gain[science]


def effective_flat(
    flat: NDArray, area: NDArray | None, omega: float, *, block_rows: int = 128
) -> NDArray:
    """``F / (Area / Omega_ideal)`` (float64 area), cast to float32.

    Evaluated ``block_rows`` rows at a time (the same operations on every pixel, so
    the same bits), which keeps the float64 temporaries in the cache; the blocks run
    on `romanimpreprocess.parallel.run_in_threads`.
    """
    if area is None:
        return np.asarray(flat, dtype=np.float32)
    out = np.empty(np.shape(flat), dtype=np.float32)

    def divide(r0):
        rows = slice(r0, r0 + block_rows)
        out[rows] = flat[rows] / (area[rows] / omega)

    run_in_threads(divide, range(0, out.shape[0], block_rows))
    return out
