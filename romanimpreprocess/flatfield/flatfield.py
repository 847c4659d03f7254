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
            full, kernel, gain, iterations=iterations, dtype=dtype, clip_gain=True,
            band_rows=ipc.SINGLE_PLANE_BAND_ROWS,
        )  # fmt: skip
    else:
        with np.errstate(invalid="ignore"):
            bad_gain = ~(np.asarray(gain) > ipc.MIN_GAIN)
    return full[0][science], out_of_range[science], bad_gain[science]


def effective_flat(
    flat: NDArray, area_of_rows, omega: float, *, block_rows: int = 128
) -> tuple[NDArray[np.float32], tuple[float, float]]:
    """``F / (Area / Omega_ideal)`` (float64 area) as float32, and the area's range.

    ``area_of_rows(start, stop)`` gives rows ``start:stop`` of the area map (float64;
    `romanimpreprocess.datamodels.wcs.pixel_area_rows`). It is evaluated
    ``block_rows`` rows at a time, divided into and dropped: the float64 map (134 MB
    a full frame, fresh memory: 0.4 s of system time a run on a one-thread worker)
    is never whole and the temporaries stay in the cache. The same operations on
    every pixel whatever the blocks, so the same bits; the blocks run on
    `romanimpreprocess.parallel.run_in_threads`. Returns ``(F_eff, (smallest,
    largest area))``, the range for the log.
    """
    ny = np.shape(flat)[0]
    out = np.empty(np.shape(flat), dtype=np.float32)
    starts = range(0, ny, block_rows)
    smallest = np.empty(len(starts))
    largest = np.empty(len(starts))

    def divide(k):
        start = starts[k]
        stop = min(ny, start + block_rows)
        area = area_of_rows(start, stop)
        smallest[k], largest[k] = area.min(), area.max()
        out[start:stop] = flat[start:stop] / (area / omega)

    run_in_threads(divide, range(len(starts)))
    return out, (float(smallest.min()), float(largest.max()))
