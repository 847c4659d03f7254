"""Saturation flagging of the resultants (docs/saturation/description.rst), pure arrays.

The passes are those of stcal's ``flag_saturated_pixels`` as romancal calls it
(forward threshold test with A/D floor and 3x3 growth, backward partial-saturation
pass, second-group pass) followed by romancal's ``backup`` passes.
"""

import numpy as np
from numpy.typing import NDArray
from roman_datamodels.dqflags import group, pixel

from romanimpreprocess.parallel import ENGINES, check_engine

__all__ = ["ENGINES", "flag_saturation", "grow"]

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
    engine: str = "numba",
    threads: int | None = None,
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
    engine : {"numba", "numpy"}
        "numba": the compiled kernels (`saturation_kernels`, three sweeps over the
        rows), used for float data and at most 63 examined resultants, else the
        numpy passes; "numpy": the numpy passes (the reference). Same flags.
    threads : int, optional
        Threads of the numba kernels (default: `romanimpreprocess.parallel`'s
        ``step_threads``).

    Returns
    -------
    ndarray, shape (ny, nx), uint32
        ``threshold_dq`` with NO_SAT_CHECK added where the threshold is NaN.
    """
    check_engine(engine)
    shape = data.shape[1:]
    sat_dq = (
        np.zeros(shape, np.uint32)
        if threshold_dq is None
        else np.array(threshold_dq, dtype=np.uint32)
    )
    rp = [list(frames) for frames in read_pattern[first:]]
    if engine == "numba" and _kernel_applies(data, groupdq, threshold, first):
        _flag_numba(
            data, groupdq, threshold, rp, sat_dq, first, n_pix_grow_sat, backup,
            threads,
        )  # fmt: skip
        return sat_dq
    nan = ~np.isfinite(threshold)
    sat_dq[nan] |= np.uint32(pixel.NO_SAT_CHECK)
    no_check = (sat_dq & np.uint32(pixel.NO_SAT_CHECK)) != 0
    thr = np.array(threshold, dtype=np.float32)
    thr[no_check] = NO_CHECK_THRESHOLD

    d = data[first:]
    gdq = groupdq[first:]
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
        ratio = _dilution(rp[g])
        if ratio is None:
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


def _dilution(frames) -> float | None:
    """``mean(frames) / last frame``, None when the backward pass skips the resultant.

    The ratio scales the threshold of a partially saturated multi-frame resultant;
    it is skipped when it is 1 (one frame) or not finite (last frame 0).
    """
    ratio = float(np.mean(frames)) / frames[-1] if frames[-1] else float("nan")
    if ratio == 1 or not np.isfinite(ratio):
        return None
    return ratio


def _kernel_applies(data, groupdq, threshold, first) -> bool:
    """Whether the numba kernels reproduce the numpy passes for these arrays.

    They follow numpy's promotion rules for float data and thresholds only
    (integer resultants would wrap around differently in ``d[1] - d[0]``), and
    keep a bit mask of at most 63 examined resultants per pixel.
    """
    from romanimpreprocess.saturation.saturation_kernels import MAX_RESULTANTS

    n = data.shape[0] - first
    return (
        data.ndim == 3
        and np.issubdtype(data.dtype, np.floating)
        and np.issubdtype(np.asarray(threshold).dtype, np.floating)
        and groupdq.dtype == np.uint8
        and 0 <= n <= MAX_RESULTANTS
        and np.shape(threshold) == data.shape[1:]
    )


def _flag_numba(data, groupdq, threshold, rp, sat_dq, first, radius, backup, threads):
    """The passes of `flag_saturation` in the numba kernels (same flags)."""
    from romanimpreprocess.parallel import kernel_threads
    from romanimpreprocess.saturation import saturation_kernels as kernels

    d = data[first:]
    gdq = groupdq[first:]
    n, ny, nx = d.shape
    radius = max(int(radius), 0)  # grow() treats radius <= 0 as no growth
    bits_dtype = kernels.mask_dtype(max(n, 1))
    dilution = np.ones(n, np.float32)
    use_dilution = np.zeros(n, bool)
    for g in range(n - 1):
        ratio = _dilution(rp[g])
        if ratio is not None:
            dilution[g] = np.float32(ratio)
            use_dilution[g] = True
    second_group = n > 2
    mean0, last2, nframes1 = (
        (np.float32(np.mean(rp[0])), np.float32(rp[2][-1]), np.float32(len(rp[1])))
        if second_group
        else (np.float32(1), np.float32(1), np.float32(1))
    )
    multi_frame = np.zeros(max(n, 1), bool)
    for g in range(n - 1):
        multi_frame[g] = len(rp[g]) > 1
    thr = np.empty((ny, nx), np.float32)
    sat_bits = np.empty((ny, nx), bits_dtype)
    part_bits = np.empty((ny, nx), bits_dtype)
    threshold = np.asarray(threshold)
    with kernel_threads(threads):
        kernels.forward_pass(
            d, gdq, threshold, sat_dq, np.float32(NO_CHECK_THRESHOLD), thr, sat_bits
        )
        kernels.grow_and_partial(
            d, gdq, thr, sat_dq, sat_bits, radius, dilution, use_dilution, part_bits
        )
        kernels.grow_partial_and_finish(
            d, gdq, thr, part_bits, radius, second_group, mean0, last2, nframes1,
            multi_frame, max(int(backup), 0),
        )  # fmt: skip
