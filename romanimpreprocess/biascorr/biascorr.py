"""Bias correction (docs/biascorr/description.rst), pure arrays."""

import numpy as np
from numpy.typing import NDArray

__all__ = ["subtract_bias"]


def subtract_bias(
    data: NDArray[np.float32], bias: NDArray, border: int, done=None
) -> None:
    """Subtract the last ``n`` planes of ``bias`` from the science area, in place.

    ``bias`` has ``n_b >= n`` planes of the science size; the first ``n_b - n`` are
    the reference read an EXTRACT_REF-format L1 no longer has. ``done``, if given,
    is called with each plane of ``bias`` once it is subtracted (the step gives back
    a memory-mapped plane's pages there).
    """
    n = data.shape[0]
    n_b = bias.shape[0]
    if n_b < n:
        raise ValueError(f"bias correction has {n_b} planes, the ramp {n} resultants")
    offset = n_b - n
    b = border
    for j in range(n):
        data[j, b:-b, b:-b] -= np.asarray(bias[offset + j], dtype=np.float32)
        if done is not None:
            done(bias[offset + j])
