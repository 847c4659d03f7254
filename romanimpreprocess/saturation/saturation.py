"""Saturation flagging of the resultants (algorithms.md §2), pure arrays.

The passes are those of stcal's ``flag_saturated_pixels`` as romancal calls it
(forward threshold test with A/D floor and 3x3 growth, backward partial-saturation
pass, second-group pass) followed by romancal's ``backup`` passes.
"""

import numpy as np
from numpy.typing import NDArray
from roman_datamodels.dqflags import group, pixel

__all__ = ["flag_saturation", "grow"]

# Threshold given to pixels that must never be flagged (NaN or NO_SAT_CHECK).
NO_CHECK_THRESHOLD = 65536.0

_SAT = np.uint8(group.SATURATED)
_DNU = np.uint8(group.DO_NOT_USE)
_FLOOR = np.uint8(group.AD_FLOOR | group.DO_NOT_USE)


def grow(mask: NDArray[np.bool_], radius: int = 1) -> NDArray[np.bool_]:
    """Grow ``mask`` by a (2 radius + 1)² box (shifted ORs; edges handled)."""
    if radius <= 0 or not mask.any():
        return mask.copy()
    out = mask.copy()
    for _ in range(radius):
        rows = out.copy()
        rows[1:] |= out[:-1]
        rows[:-1] |= out[1:]
        out = rows.copy()
        out[:, 1:] |= rows[:, :-1]
        out[:, :-1] |= rows[:, 1:]
    return out


def flag_saturation(
    data: NDArray,
    groupdq: NDArray[np.uint8],
    threshold: NDArray,
    read_pattern,
    *,
    threshold_dq: NDArray | None = None,
    first: int = 1,
    n_pix_grow_sat: int = 1,
    backup: int = 1,
) -> NDArray[np.uint32]:
    """Flag saturated resultants in ``groupdq`` (in place); return pixel flags to OR.

    Parameters
    ----------
    data : ndarray, shape (n, ny, nx)
        Raw resultants, DN_raw. Not modified.
    groupdq : ndarray, shape (n, ny, nx), uint8
        Group flags, updated in place (resultants ``first..n-1`` only).
    threshold : ndarray, shape (ny, nx)
        Saturation threshold, DN_raw; NaN = no check.
    read_pattern : list of list of int
        Frames of each resultant (as stored in the exposure meta).
    threshold_dq : ndarray, shape (ny, nx), optional
        Saturation-file flags (NO_SAT_CHECK pixels are never flagged).
    first : int
        First resultant examined (1 when resultant 0 is the excluded reset read).
    n_pix_grow_sat : int
        Growth of every saturated pixel (box half-width).
    backup : int
        Number of romancal backup passes (SATURATION_BACKUP).

    Returns
    -------
    ndarray, shape (ny, nx), uint32
        ``threshold_dq`` with NO_SAT_CHECK added where the threshold is NaN.
    """
    shape = data.shape[1:]
    sat_dq = (
        np.zeros(shape, np.uint32)
        if threshold_dq is None
        else np.array(threshold_dq, dtype=np.uint32)
    )
    nan = ~np.isfinite(threshold)
    sat_dq[nan] |= np.uint32(pixel.NO_SAT_CHECK)
    no_check = (sat_dq & np.uint32(pixel.NO_SAT_CHECK)) != 0
    thr = np.array(threshold, dtype=np.float32)
    thr[no_check] = NO_CHECK_THRESHOLD

    d = data[first:]
    gdq = groupdq[first:]
    rp = [list(frames) for frames in read_pattern[first:]]
    n = d.shape[0]

    # 1. forward pass
    prev = np.zeros(shape, bool)
    for g in range(n):
        prev |= d[g] >= thr
        gdq[g][prev] |= _SAT
        gdq[g][d[g] <= 0] |= _FLOOR
        gdq[g][grow((gdq[g] & _SAT) != 0, n_pix_grow_sat)] |= _SAT

    # 2. backward pass: partial saturation inside multi-frame resultants
    for g in range(n - 2, -1, -1):
        ratio = float(np.mean(rp[g])) / rp[g][-1] if rp[g][-1] else float("nan")
        if ratio == 1 or not np.isfinite(ratio):
            continue
        dilution = np.where(no_check, np.float32(1), np.float32(ratio))
        partial = (
            (d[g] >= thr * dilution)
            & ((gdq[g] & (_SAT | _DNU)) == 0)
            & ((gdq[g + 1] & _SAT) != 0)
        )
        gdq[g][grow(partial, n_pix_grow_sat)] |= _DNU

    # 3. second-group pass
    if n > 2:
        with np.errstate(invalid="ignore", divide="ignore"):
            mask = (d[0] / np.float32(np.mean(rp[0]))) * np.float32(rp[2][-1]) < thr
            mask &= d[1] - d[0] > (thr - d[0]) / np.float32(len(rp[1]))
        mask &= (gdq[2] & _SAT) != 0
        mask &= (gdq[1] & _SAT) == 0
        gdq[1][mask] |= _DNU

    # 5. backup: move SATURATED one resultant back into multi-frame resultants
    for _ in range(max(int(backup), 0)):
        for g in range(n - 1):
            if len(rp[g]) > 1:
                gdq[g] |= gdq[g + 1] & _SAT
    return sat_dq
