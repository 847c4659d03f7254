"""Reference-pixel correction (docs/refpix/description.rst), pure arrays.

Per resultant, on the frame with the amp33 block glued to its right (the dark cube
subtracted first, so that medians see noise, not the fixed pattern):

1. row step: the common 1/f row noise of the science channels is predicted from the
   amp33 row medians ``q_r`` with the Wiener coefficient ``alpha`` (`pink_alpha`) and
   subtracted from every row;
2. channel step: per 128-column block (32 channels and amp33), the line through the
   medians of the bottom and top reference rows is subtracted.

Everything is vectorised over rows and channels.
"""

import itertools

import numpy as np
from numpy.typing import NDArray

from romanimpreprocess.constants import N_CHANNELS

__all__ = ["channel_step", "correct_resultant", "pink_alpha", "row_step"]


def pink_alpha(m_pink: float, ru_pink: float, c_pink: float, std: NDArray, ny: int):
    """Wiener coefficient of the science-channel 1/f rows on the amp33 row medians.

    ``alpha = M C² / (M² C² + RU² + median(std)² / 128 / ln(ny))``; None when the
    denominator is 0 or not finite (no usable amp33 model).
    """
    width = std.shape[-1]
    # numpy scalar arithmetic as the legacy: the median of the float32 std stays
    # float32 through the square and the division by the width.
    white = float(np.median(std) ** 2 / width / np.log(ny))
    denominator = m_pink**2 * c_pink**2 + ru_pink**2 + white
    if not np.isfinite(denominator) or denominator == 0:
        return None
    alpha = np.float64(m_pink * c_pink**2 / denominator)
    return alpha if np.isfinite(alpha) else None


def row_step(work: NDArray[np.float32], nx: int, border: int, alpha) -> float:
    """Subtract ``alpha (q_r - median q)`` from every row of ``work`` (in place).

    ``work`` is ``(ny, nx + 128)``: frame then amp33 block. Without ``alpha`` the
    least-squares slope of the science row medians on ``q_r`` is used. Returns the
    coefficient applied.
    """
    q = np.median(work[:, nx:], axis=1)
    if alpha is None:
        s = np.median(work[:, border : nx - border], axis=1)
        qc = q.astype(np.float64) - q.mean()
        denominator = float(qc @ qc)
        alpha = np.float64((qc @ (s - s.mean())) / denominator) if denominator else 0.0
    ctr = np.median(q)
    correction = np.float64(alpha) * (q - ctr)  # float64, stored back as float32
    np.subtract(work, correction[:, None], out=work, casting="same_kind")
    return float(alpha)


def channel_step(work: NDArray[np.float32], edges, border: int) -> None:
    """Subtract per column block the line through its bottom/top reference medians.

    ``edges`` are the block boundaries (32 channels then the amp33 block). The line
    goes through the medians of the ``border`` bottom and top rows, placed at their
    mean row indices; it is evaluated in float64 and stored back as float32.
    """
    ny = work.shape[0]
    y_bottom = (border - 1) / 2.0
    y_top = ny - border + (border - 1) / 2.0
    rows = np.arange(ny, dtype=np.float64)[:, None]
    for start, stop in itertools.pairwise(edges):
        block = work[:, start:stop]
        bottom = np.median(block[:border])
        top = np.median(block[ny - border :])
        # The line through the two points, solved by least squares as the legacy
        # does (the last bits of slope and offset then match it exactly).
        design = np.array([[y_bottom, 1.0], [y_top, 1.0]])
        slope, offset = np.linalg.lstsq(design, [bottom, top], rcond=None)[0]
        np.subtract(block, rows * slope + offset, out=block, casting="same_kind")


def correct_resultant(
    frame: NDArray[np.float32],
    amp33: NDArray | None,
    dark: NDArray,
    *,
    amp33_median: NDArray | None,
    alpha,
    border: int,
    block_width: int,
    n_channels: int = N_CHANNELS,
) -> float | None:
    """Reference-pixel correct one resultant in place; return the row coefficient.

    Parameters
    ----------
    frame : ndarray, shape (ny, nx), float32
        Resultant, modified in place.
    amp33 : ndarray, shape (ny, 128) or None
        Reference output of this resultant; None = no row step.
    dark : ndarray, shape (ny, nx)
        Dark-cube plane of this resultant (subtracted, then added back).
    amp33_median : ndarray, shape (ny, 128) or None
        Median amp33 pattern of the read-noise file.
    alpha : float or None
        Row coefficient (`pink_alpha`); None = least-squares slope.
    border : int
        Reference border width.
    block_width : int
        Width of the amp33 block (128).
    n_channels : int
        Readout channels across the frame.
    """
    ny, nx = frame.shape
    width = nx + block_width
    channel = nx // n_channels
    edges = [*range(0, nx + 1, channel), width]
    work = np.zeros((ny, width), dtype=np.float32)
    np.subtract(frame, dark, out=work[:, :nx], casting="unsafe")
    applied = None
    if amp33 is not None:
        ref = np.asarray(amp33, dtype=np.float32)
        if amp33_median is not None:
            ref = ref - np.asarray(amp33_median, dtype=np.float32)
        work[:, nx:] = ref
        work[:, nx:] -= np.median(work[:, nx:])
        applied = row_step(work, nx, border, alpha)
    channel_step(work, edges, border)
    np.add(work[:, :nx], dark, out=frame, casting="unsafe")
    return applied
