"""Bias correction (docs/biascorr/description.rst), pure arrays."""

import numpy as np
from numpy.typing import NDArray

__all__ = ["subtract_bias"]


def subtract_bias(
    data: NDArray[np.float32],
    bias: NDArray,
    border: int,
    done=None,
    *,
    row0: int = 0,
    ny: int | None = None,
) -> None:
    """Subtract the last ``n`` planes of ``bias`` from the science area, in place.

    ``bias`` has ``n_b >= n`` planes of the science size; the first ``n_b - n`` are
    the reference read an EXTRACT_REF-format L1 no longer has. ``done``, if given,
    is called with each plane of ``bias`` once it is subtracted (the step gives back
    a memory-mapped plane's pages there). ``data`` may hold frame rows ``row0 ...``
    of a frame of ``ny`` rows (a band; default: the whole frame).
    """
    n = data.shape[0]
    n_b = bias.shape[0]
    if n_b < n:
        raise ValueError(f"bias correction has {n_b} planes, the ramp {n} resultants")
    offset = n_b - n
    b = border
    ny = data.shape[1] if ny is None else int(ny)
    # The science rows held, in the band and in the bias planes.
    start = max(b, row0)
    stop = min(ny - b, row0 + data.shape[1])
    if stop <= start:
        return
    held = slice(start - row0, stop - row0)
    bias_rows = slice(start - b, stop - b)
    for j in range(n):
        plane = bias[offset + j][bias_rows]
        data[j, held, b:-b] -= np.asarray(plane, dtype=np.float32)
        if done is not None:
            done(plane)
