"""When each pixel of a frame is read: the readout clock shared by every step.

Two steps need the read time of every pixel within a frame: the dark-decay
subtraction and the WFI18 transient fit. The clock model lives here, below both, so
neither step's module imports the other. It is romancal's ``frame_read_times``
(romancal 1.1.0 ``lib.basic_utils``) written for any frame shape: romancal builds a
4096x4096 map, so it cannot be used on the small simulated frames. On a full frame the
map here is bit-identical to romancal's; on a smaller frame the frame is read like a
scaled-down full frame (the same 16 guide-window excursions and the same fraction of
the frame time spent reading science pixels), so a small simulation sees the same
spread of read times as a real exposure (docs/dark_decay/index.rst).
"""

import numpy as np
from numpy.typing import NDArray

from romanimpreprocess.constants import FULL_FRAME, N_CHANNELS

__all__ = [
    "GW_PSEUDOTIME_FACTOR",
    "GW_STRIDE_FULL_FRAME",
    "PIXEL_TIME",
    "ROW_PAD_CLOCKS",
    "frame_read_times",
]

PIXEL_TIME = 4.915263e-6  # s, one pixel clock of the readout electronics
ROW_PAD_CLOCKS = 14  # clocks between two rows of a channel (after its columns)
GW_STRIDE_FULL_FRAME = 256  # science rows between guide-window excursions, full frame
GW_PSEUDOTIME_FACTOR = 1.5  # inflation of the guide-window time (romancal's fudge)
_FULL_CHANNEL_WIDTH = FULL_FRAME // N_CHANNELS
# Last science clock of a full-frame channel (127 + 142 * 4095 = 581617).
_FULL_CMAX = (_FULL_CHANNEL_WIDTH - 1) + (_FULL_CHANNEL_WIDTH + ROW_PAD_CLOCKS) * (
    FULL_FRAME - 1
)


def frame_read_times(
    shape: tuple[int, int],
    frame_time: float,
    sca: int,
    *,
    frame_number: float = 0.0,
    n_channels: int = N_CHANNELS,
) -> NDArray[np.float64]:
    """Read time of every pixel of one frame, seconds after the frame starts.

    Each of the ``n_channels`` channels reads its ``nx / n_channels`` columns row by
    row, one pixel per clock plus ``ROW_PAD_CLOCKS`` per row; the readout stops
    ``n_gw = FULL_FRAME // GW_STRIDE_FULL_FRAME`` (16) times to read the guide window,
    whose clocks (the frame time not spent on science pixels, inflated by
    ``GW_PSEUDOTIME_FACTOR``) are shared equally between the excursions. Clocks are
    scaled so that the last pixel plus one excursion fill ``frame_time``. Channels
    alternate readout direction; detectors with ``sca % 3 == 0`` then have their
    columns reversed, the others their rows (science orientation).

    For a frame smaller than the full frame the clock is slowed by ``cmax_full /
    cmax`` (cmax = last science clock), so that science pixels take the same fraction
    of ``frame_time`` as on a full frame, and excursion ``i`` starts at row
    ``i * ny // n_gw``. A full frame is computed exactly as romancal does (additions of
    the guide-window clocks one excursion at a time, in float64), and so agrees with
    romancal's map bit for bit.

    Parameters
    ----------
    shape : tuple of int
        Frame shape ``(ny, nx)`` including the reference border; ``nx`` must divide
        into ``n_channels`` channels and ``ny`` must be at least ``n_gw``.
    frame_time : float
        Frame time, seconds.
    sca : int
        Detector number, 1..18.
    frame_number : float
        Added as ``frame_number * frame_time`` (the frame's start time).
    n_channels : int
        Readout channels across the frame.

    Returns
    -------
    ndarray, shape (ny, nx), float64
        Read times, seconds (a new array).

    Raises
    ------
    ValueError
        Shape not divisible into channels, too few rows, or a frame time too short
        for the science pixels.
    """
    ny, nx = (int(v) for v in shape)
    n_gw = FULL_FRAME // GW_STRIDE_FULL_FRAME
    if nx % n_channels or nx < n_channels or n_channels % 2:
        raise ValueError(
            f"frame width {nx} does not divide into {n_channels} readout channels"
        )
    if ny < n_gw:
        raise ValueError(
            f"frame height {ny} is below the {n_gw} guide-window excursions per frame"
        )
    if not np.isfinite(frame_time) or frame_time <= 0:
        raise ValueError(f"frame time must be positive, got {frame_time!r}")
    width = nx // n_channels
    cols = np.arange(width, dtype=np.float64)
    rows = np.arange(ny, dtype=np.float64)
    clocks = cols[None, :] + rows[:, None] * float(width + ROW_PAD_CLOCKS)
    cmax = float((width - 1) + (width + ROW_PAD_CLOCKS) * (ny - 1))
    if cmax == _FULL_CMAX:
        total_clocks = frame_time / PIXEL_TIME
    else:
        total_clocks = frame_time / (PIXEL_TIME * _FULL_CMAX / cmax)
    gw_clocks = total_clocks - cmax
    if gw_clocks <= 0:
        raise ValueError(
            f"frame time {frame_time} s is shorter than the science readout "
            f"({cmax * PIXEL_TIME:.4g} s)"
        )
    per_gw = gw_clocks / n_gw * GW_PSEUDOTIME_FACTOR
    # One excursion at a time, as romancal adds them: a single multiply-add differs by
    # an ulp on most pixels, which is visible in the WFI18 fit (docs/dark_decay/index.rst).
    for i in range(1, n_gw):
        clocks[(i * ny) // n_gw :] += per_gw
    times = frame_time * clocks
    times /= clocks.max() + per_gw
    pair = np.concatenate([times, times[:, ::-1]], axis=1)
    full = np.tile(pair, (1, n_channels // 2))
    full = full[:, ::-1] if sca % 3 == 0 else full[::-1, :]
    full = np.ascontiguousarray(full)
    if frame_number:
        full += frame_number * frame_time
    return full
