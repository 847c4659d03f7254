"""Numba kernel of the reference-pixel correction's application (`refpix.apply_terms`).

`refpix.apply_terms` subtracts a resultant's dark rows, its row step and its 32
channel lines from a band's rows and adds the dark back: numpy makes a float32 work
copy and passes over it 35 times (one per channel line, each a strided block), 0.68 s
of a full-frame 6-resultant run on two cores. `apply_terms_rows` does the same
arithmetic in one pass, element by element in numpy's order and precisions: the
float32 difference with the dark, the float64 row step and channel line rounded back
to float32 after each subtraction (numpy's ``casting="same_kind"`` of a float64
result into the float32 work array), the line ``y * slope + offset`` evaluated in
float64 as two roundings, and the float32 sum with the dark. The bits are those of
the numpy path; the test compares them on random terms.
"""

import numba
import numpy as np

__all__ = ["apply_terms_rows"]


@numba.njit(cache=True, nogil=True)
def apply_terms_rows(frame, dark, correction, first_row, edges, slopes, offsets):
    """``frame`` rows ``first_row ..`` corrected in place (`refpix.apply_terms`).

    ``frame`` and ``dark`` are float32 (h, nx); ``correction`` the row step of these
    rows (float64, h) or an empty array for none; ``edges`` the channel boundaries
    (int64, nchannels + 1), ``slopes`` and ``offsets`` each channel's line (float64).
    """
    h = frame.shape[0]
    with_correction = correction.size > 0
    for i in range(h):
        y = np.float64(first_row + i)
        step = correction[i] if with_correction else 0.0
        for c in range(edges.size - 1):
            line = y * slopes[c] + offsets[c]
            for x in range(edges[c], edges[c + 1]):
                d = dark[i, x]
                work = frame[i, x] - d
                if with_correction:
                    work = np.float32(np.float64(work) - step)
                work = np.float32(np.float64(work) - line)
                frame[i, x] = work + d
