"""Numba kernels of the saturation passes (`saturation.flag_saturation`).

The numpy passes of `saturation.flag_saturation` sweep the whole cube a dozen times;
these kernels do the same work in three sweeps over rows (``numba.prange``), giving
the same flags bit for bit:

1. `forward_pass`: per pixel, the threshold (NaN / NO_SAT_CHECK -> 65536, cast to
   float32 as the numpy path does), the forward-persistent SATURATED flag, the A/D
   floor, and a bit mask of the resultants whose SATURATED flag is set *before*
   the growth (bit ``g`` for resultant ``first + g``).
2. `grow_and_partial`: the growth of that mask (the OR of the bit masks of the
   (2r+1)² box around each pixel: growing every resultant's mask at once), then
   the bit mask of the backward pass's "partial saturation" resultants.
3. `grow_partial_and_finish`: the growth of the partial mask (DO_NOT_USE), the
   second-group test and the backup passes, all per pixel.

The growth crosses pixels, so each growth reads the mask written by the previous
sweep and the sweeps cannot be fused. Every other test reads and writes one pixel,
and the backward pass's iterations are independent (iteration ``g`` writes only
DO_NOT_USE on resultant ``g``, and reads only SATURATED, which it does not change,
and resultant ``g``'s own flags), so per-pixel evaluation reproduces them.

Bit masks are stored in the smallest unsigned integer that holds the examined
resultants (`mask_dtype`); more than 63 resultants are left to the numpy path.
"""

import numba
import numpy as np
from roman_datamodels.dqflags import group, pixel

__all__ = [
    "MAX_RESULTANTS",
    "forward_pass",
    "grow_and_partial",
    "grow_partial_and_finish",
    "mask_dtype",
]

MAX_RESULTANTS = 63  # bit masks are handled as int64 inside the kernels

_SAT = np.uint8(group.SATURATED)
_DNU = np.uint8(group.DO_NOT_USE)
_FLOOR = np.uint8(group.AD_FLOOR | group.DO_NOT_USE)
_SAT_OR_DNU = np.uint8(group.SATURATED | group.DO_NOT_USE)
_NO_SAT_CHECK = np.uint32(pixel.NO_SAT_CHECK)

# error_model="numpy": float division by zero gives inf/NaN as in numpy (the
# second-group test divides by the mean frame of resultant 0, which can be 0).
_JIT = {"parallel": True, "cache": True, "nogil": True, "error_model": "numpy"}


def mask_dtype(n: int):
    """Smallest unsigned integer dtype with ``n`` bits (int64 up to 63 bits)."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if n <= np.iinfo(dtype).bits:
            return np.dtype(dtype)
    if n <= MAX_RESULTANTS:
        return np.dtype(np.int64)
    raise ValueError(f"{n} resultants: at most {MAX_RESULTANTS} in a bit mask")


@numba.njit(**_JIT)
def forward_pass(data, groupdq, threshold, sat_dq, no_check_threshold, thr, sat_bits):
    """Threshold, forward saturation and A/D floor; bit mask before the growth.

    Parameters
    ----------
    data : ndarray, shape (n, ny, nx), float
        Examined resultants (``data[first:]``).
    groupdq : ndarray, shape (n, ny, nx), uint8
        Their group flags, updated in place (SATURATED, AD_FLOOR | DO_NOT_USE).
    threshold : ndarray, shape (ny, nx), float
        Saturation threshold as given (NaN = no check).
    sat_dq : ndarray, shape (ny, nx), uint32
        Saturation-file flags; NO_SAT_CHECK added in place where the threshold is
        not finite.
    no_check_threshold : float32
        Threshold of NO_SAT_CHECK pixels.
    thr : ndarray, shape (ny, nx), float32
        Output: the threshold used.
    sat_bits : ndarray, shape (ny, nx), unsigned integer
        Output: bit ``g`` set where resultant ``g`` is SATURATED before the growth.
    """
    n, ny, nx = data.shape
    for y in numba.prange(ny):
        # Row buffers, resultants outside, pixels inside, no branches: the inner
        # loops run along contiguous rows and vectorise (several times faster than
        # a loop over the resultants of each pixel).
        level = np.empty(nx, np.float32)
        for x in range(nx):
            t = threshold[y, x]
            flags = sat_dq[y, x] | (np.uint32(not np.isfinite(t)) * _NO_SAT_CHECK)
            sat_dq[y, x] = flags
            level[x] = no_check_threshold if flags & _NO_SAT_CHECK else np.float32(t)
        thr[y] = level
        prev = np.zeros(nx, np.uint8)
        bits = np.zeros(nx, sat_bits.dtype)
        for g in range(n):
            for x in range(nx):
                value = data[g, y, x]
                saturated = prev[x] | np.uint8(value >= level[x])
                prev[x] = saturated
                flags = (
                    groupdq[g, y, x]
                    | (saturated * _SAT)
                    | (np.uint8(value <= 0) * _FLOOR)
                )
                groupdq[g, y, x] = flags
                bits[x] |= np.uint8((flags & _SAT) != 0) << g
        sat_bits[y] = bits


@numba.njit(inline="always")
def _box_or(bits, y, radius, column, row):
    """OR of ``bits`` over the (2 radius + 1)² box around each pixel of row ``y``.

    ``column`` (scratch, length nx) gets the OR over rows; ``row`` (length nx)
    gets the result. The box is clipped at the frame edges, as `saturation.grow`.
    """
    ny, nx = bits.shape
    column[:] = 0
    for yy in range(max(y - radius, 0), min(y + radius + 1, ny)):
        for x in range(nx):
            column[x] |= bits[yy, x]
    row[:] = column
    for shift in range(1, radius + 1):  # shifted ORs (vectorise; edges clipped)
        for x in range(shift, nx):
            row[x] |= column[x - shift]
        for x in range(nx - shift):
            row[x] |= column[x + shift]


@numba.njit(inline="always")
def _flag_grown(bits, y, radius, groupdq, flag):
    """OR ``flag`` into row ``y`` of every resultant whose bit is set in the box."""
    n, _, nx = groupdq.shape
    column = np.empty(nx, bits.dtype)
    grown = np.empty(nx, bits.dtype)
    _box_or(bits, y, radius, column, grown)
    for g in range(n):
        for x in range(nx):
            groupdq[g, y, x] |= np.uint8((grown[x] >> g) & 1) * flag


@numba.njit(**_JIT)
def grow_and_partial(
    data, groupdq, thr, sat_dq, sat_bits, radius, dilution, use_dilution, part_bits
):
    """Grown SATURATED flags, then the backward pass's partial-saturation mask.

    Parameters
    ----------
    data, groupdq : ndarray, shape (n, ny, nx)
        As in `forward_pass` (``groupdq`` gets the grown SATURATED flags).
    thr : ndarray, shape (ny, nx), float32
        Threshold from `forward_pass`.
    sat_dq : ndarray, shape (ny, nx), uint32
        Pixel flags from `forward_pass` (NO_SAT_CHECK: no dilution).
    sat_bits : ndarray, shape (ny, nx)
        Bit masks from `forward_pass`.
    radius : int
        Growth (box half-width, >= 0).
    dilution : ndarray, shape (n,), float32
        ``mean(frames) / last frame`` of each resultant.
    use_dilution : ndarray, shape (n,), bool
        Resultants the backward pass examines (ratio finite and not 1; never the
        last).
    part_bits : ndarray, shape (ny, nx)
        Output: bit ``g`` set where resultant ``g`` is partially saturated.
    """
    n, ny, nx = data.shape
    one = np.float32(1)
    for y in numba.prange(ny):
        _flag_grown(sat_bits, y, radius, groupdq, _SAT)
        partial = np.zeros(nx, part_bits.dtype)
        for g in range(n - 1):
            if not use_dilution[g]:
                continue
            for x in range(nx):
                no_check = (sat_dq[y, x] & _NO_SAT_CHECK) != 0
                factor = one if no_check else dilution[g]
                found = (
                    (data[g, y, x] >= thr[y, x] * factor)
                    & ((groupdq[g, y, x] & _SAT_OR_DNU) == 0)
                    & ((groupdq[g + 1, y, x] & _SAT) != 0)
                )
                partial[x] |= np.uint8(found) << g
        part_bits[y] = partial


@numba.njit(**_JIT)
def grow_partial_and_finish(
    data, groupdq, thr, part_bits, radius, second_group, mean0, last2, nframes1,
    multi_frame, backup,
):  # fmt: skip
    """Grown partial saturation (DO_NOT_USE), second-group test, backup passes.

    Parameters
    ----------
    data, groupdq : ndarray, shape (n, ny, nx)
        As in `forward_pass`.
    thr : ndarray, shape (ny, nx), float32
        Threshold from `forward_pass`.
    part_bits : ndarray, shape (ny, nx)
        Bit masks from `grow_and_partial`.
    radius : int
        Growth (box half-width, >= 0).
    second_group : bool
        Run the second-group test (more than 2 examined resultants).
    mean0, last2, nframes1 : float32
        Mean frame of resultant 0, last frame of resultant 2, frames of
        resultant 1 (of the examined ones).
    multi_frame : ndarray, shape (n,), bool
        Resultants of more than one frame (the backup passes move SATURATED
        into them).
    backup : int
        Number of backup passes.
    """
    n, ny, nx = data.shape
    for y in numba.prange(ny):
        _flag_grown(part_bits, y, radius, groupdq, _DNU)
        if second_group:
            for x in range(nx):
                d0 = data[0, y, x]
                d1 = data[1, y, x]
                level = thr[y, x]
                # float32 operations in numpy's order (mean0, last2, nframes1 are
                # float32 scalars, so nothing is promoted to float64)
                found = (
                    ((d0 / mean0) * last2 < level)
                    & (d1 - d0 > (level - d0) / nframes1)
                    & ((groupdq[2, y, x] & _SAT) != 0)
                    & ((groupdq[1, y, x] & _SAT) == 0)
                )
                groupdq[1, y, x] |= np.uint8(found) * _DNU
        for _ in range(backup):
            for g in range(n - 1):
                if multi_frame[g]:
                    for x in range(nx):
                        groupdq[g, y, x] |= groupdq[g + 1, y, x] & _SAT
