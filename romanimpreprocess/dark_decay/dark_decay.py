"""The dark-decay subtraction (docs/dark_decay/index.rst, algorithm).

The per-pixel read times come from `romanimpreprocess.utils.readout` (shared with the
WFI18 transient fit); they are re-exported here for the callers that used them from
this module.
"""

import numpy as np
from numpy.typing import NDArray

from romanimpreprocess.utils.readout import (
    GW_PSEUDOTIME_FACTOR,
    GW_STRIDE_FULL_FRAME,
    PIXEL_TIME,
    ROW_PAD_CLOCKS,
    frame_read_times,
)

__all__ = [
    "GW_PSEUDOTIME_FACTOR",
    "GW_STRIDE_FULL_FRAME",
    "PIXEL_TIME",
    "ROW_PAD_CLOCKS",
    "dark_decay_signal",
    "frame_read_times",
    "subtract_dark_decay",
]


def dark_decay_signal(
    shape: tuple[int, int],
    read_pattern,
    frame_time: float,
    sca: int,
    amplitude: float,
    time_constant: float,
    *,
    frame_offset: float = 1.5,
) -> list[tuple[NDArray[np.float64], float]]:
    """Factorised dark-decay signal of every resultant.

    The signal of resultant ``i`` is the mean over its frames ``r`` of
    ``amplitude * exp(-T_r / time_constant)`` with ``T_r`` the per-pixel read time of
    frame ``r - frame_offset`` (`frame_read_times`). Since ``T_r = T_0 + (r -
    frame_offset) * frame_time``, it equals ``E * s_i`` with the map ``E = amplitude *
    exp(-T_0 / time_constant)`` and the scalar ``s_i = mean_r exp(-(r - frame_offset)
    * frame_time / time_constant)``; this returns ``E`` and the ``s_i``.

    Parameters
    ----------
    shape : tuple of int
        Frame shape ``(ny, nx)``.
    read_pattern : list of list of int
        Frame indices of each resultant.
    frame_time : float
        Frame time, seconds.
    sca : int
        Detector number (sets the readout orientation).
    amplitude : float
        Decay amplitude, DN, at the reference time (``frame_offset`` frames).
    time_constant : float
        Decay time constant, seconds (> 0).
    frame_offset : float
        Frame number at which the amplitude is defined (1.5: middle of the first read).

    Returns
    -------
    list of (ndarray, float)
        One ``(E, s_i)`` pair per resultant; ``E`` (ny, nx) float64 is the same array
        for all of them.
    """
    if not np.isfinite(amplitude):
        raise ValueError(f"dark-decay amplitude must be finite, got {amplitude!r}")
    if not np.isfinite(time_constant) or time_constant <= 0:
        raise ValueError(
            f"dark-decay time constant must be positive, got {time_constant!r}"
        )
    base = frame_read_times(shape, frame_time, sca)
    base /= -time_constant
    np.exp(base, out=base)
    base *= amplitude
    scales = []
    for frames in read_pattern:
        offsets = (np.asarray(frames, dtype=np.float64) - frame_offset) * frame_time
        scales.append(float(np.mean(np.exp(-offsets / time_constant))))
    return [(base, s) for s in scales]


def subtract_dark_decay(
    data: NDArray[np.float32],
    read_pattern,
    frame_time: float,
    sca: int,
    amplitude: float,
    time_constant: float,
    *,
    frame_offset: float = 1.5,
) -> None:
    """Subtract the dark-decay signal from a resultant cube, in place.

    ``data[i] -= mean_{r in read_pattern[i]} amplitude * exp(-T_r / time_constant)``
    with the per-pixel read times of `frame_read_times` (docs/dark_decay/index.rst), over the
    full frame including the reference pixels. The signal is formed in float64 and
    the difference rounded to the cube's dtype, as romancal does.

    Parameters
    ----------
    data : ndarray, shape (nresultants, ny, nx)
        Resultants, DN; modified in place.
    read_pattern : list of list of int
        Frame indices of each resultant (``len == nresultants``).
    frame_time, sca, amplitude, time_constant, frame_offset
        See `dark_decay_signal`.
    """
    if len(read_pattern) != data.shape[0]:
        raise ValueError(
            f"read pattern has {len(read_pattern)} resultants, data {data.shape[0]}"
        )
    if amplitude == 0:
        # The signal is 0 everywhere: subtracting it would change no value.
        return
    terms = dark_decay_signal(
        data.shape[1:],
        read_pattern,
        frame_time,
        sca,
        amplitude,
        time_constant,
        frame_offset=frame_offset,
    )
    subtract_signal(data, terms)


def subtract_signal(data: NDArray[np.float32], terms, rows: slice | None = None):
    """Subtract the `dark_decay_signal` ``terms`` from ``data``, in place.

    ``data`` (nresultants, h, nx) holds frame rows ``rows`` (default: the whole
    frame); the signal of each resultant is formed in float64 and the difference
    rounded to the cube's dtype.
    """
    rows = slice(None) if rows is None else rows
    signal = np.empty(data.shape[1:], dtype=np.float64)  # one buffer, reused
    for i, (base, scale) in enumerate(terms):
        np.multiply(base[rows], scale, out=signal)
        np.subtract(data[i], signal, out=data[i], casting="unsafe")
