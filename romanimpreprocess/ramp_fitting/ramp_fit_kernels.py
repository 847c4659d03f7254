"""Compiled (numba) pass of the default-mode ramp fit over the ordinary pixels.

`screen_ramps` does, pixel by pixel and rows in parallel, what the numpy block pass
of `ramp_fit.fit_ramps` does with matrix products: the full-ramp slope and its
variances, the flags that follow from the group flags, the end slice, and the jump
screening (every step test at the weights' operating point, against the threshold
lowered by the screening margin). It marks the pixels that need more than the
full-ramp fit (unusable resultants, or a test that fires) as *special*; those go
through the same per-pattern code as in the numpy path, so both give the same
flags and, for ordinary pixels, slopes that agree to the float64 summation order
(a few 1e-16 relative before the float32 rounding).
"""

import numpy as np
from numba import njit, prange

__all__ = ["screen_ramps"]


@njit(parallel=True, nogil=True, cache=True)
def screen_ramps(
    data,
    groupdq,
    gain,
    read_noise,
    border,
    matrix,
    test_poisson,
    test_read,
    coef_poisson,
    coef_read,
    start,
    thresholds,
    margin,
    gain_clip,
    group_to_pixel,
    bits,
    slope,
    var_poisson,
    var_rnoise,
    flags,
    endslice,
    special,
):
    """Fill ``slope``, ``var_*``, ``flags``, ``endslice`` and ``special`` in place.

    Parameters
    ----------
    data, groupdq : (n, ny, nx) float32 / uint8
        Resultants and group flags of the full frame.
    gain, read_noise : (ny, nx)
        Gain (e/DN) and single-read noise (DN).
    border : int
        Reference border left out.
    matrix : (1 + t, n) float64
        Full-ramp slope weights (row 0) and the ``t`` test weights.
    test_poisson, test_read : (t,) float64
        Variance coefficients of the tests.
    coef_poisson, coef_read : float
        Variance coefficients of the slope.
    start : int
        First used resultant.
    thresholds : (4,) float64
        ``SthreshA, SthreshB, IthreshA, IthreshB``.
    margin : float
        Screening margin in sigma.
    gain_clip : (2,) float64
        Clip of the gain in the Poisson variance.
    group_to_pixel : (k, 2) int64
        Group flag -> pixel flag carried over.
    bits : (5,) int64
        Group SATURATED, group DO_NOT_USE, group SATURATED|DO_NOT_USE, pixel
        DO_NOT_USE, pixel SATURATED.
    slope, var_poisson, var_rnoise : (sy, sx) float32
    flags : (sy, sx) uint32
    endslice : (sy, sx) int8, or a (1, 1) array when not wanted
    special : (sy, sx) bool
    """
    n = data.shape[0]
    sy, sx = slope.shape
    ntests = matrix.shape[0] - 1
    sa, sb, ia, ib = thresholds[0], thresholds[1], thresholds[2], thresholds[3]
    log_ia = np.log(ia)
    log_span = np.log(ib / ia)
    g_sat, g_dnu, g_unusable = np.uint8(bits[0]), np.uint8(bits[1]), np.uint8(bits[2])
    p_dnu, p_sat = np.uint32(bits[3]), np.uint32(bits[4])
    want_endslice = endslice.shape[0] == sy
    for y in prange(sy):
        d = np.empty(n)
        for x in range(sx):
            fy, fx = y + border, x + border
            finite = True
            for t in range(n):
                d[t] = np.float64(data[t, fy, fx])
                if t >= start and not np.isfinite(d[t]):
                    finite = False
            s = 0.0
            for t in range(n):
                s += matrix[0, t] * d[t]
            g = np.float64(gain[fy, fx])
            if not np.isnan(g):  # NaN stays NaN, as np.clip leaves it
                g = min(max(g, gain_clip[0]), gain_clip[1])
            rn = np.float64(read_noise[fy, fx])
            rn2 = rn * rn
            dvardt = s / g
            if dvardt < 0.0:  # noqa: PLR1730 (max() would not keep a NaN)
                dvardt = 0.0
            slope[y, x] = np.float32(s)
            var_poisson[y, x] = np.float32(coef_poisson * dvardt)
            var_rnoise[y, x] = np.float32(coef_read * rn * rn)

            # group flags -> pixel flags, end slice, unusable resultants
            nonsat = np.uint8(0)
            all_dnu = True
            any_sat = False
            unusable = False
            last = np.int8(-1)
            previous_sat = False
            for t in range(n):
                q = groupdq[t, fy, fx]
                is_sat = (q & g_sat) != 0
                if is_sat:
                    any_sat = True
                else:
                    nonsat |= q
                if (q & g_dnu) == 0:
                    all_dnu = False
                if t >= start and (q & g_unusable) != 0:
                    unusable = True
                if t >= 1 and is_sat and not previous_sat:
                    last = np.int8(t - 1)
                previous_sat = is_sat
            out = np.uint32(0)
            for k in range(group_to_pixel.shape[0]):
                if (nonsat & np.uint8(group_to_pixel[k, 0])) != 0:
                    out |= np.uint32(group_to_pixel[k, 1])
            if all_dnu:
                out |= p_dnu
            if any_sat:
                out |= p_sat
            flags[y, x] = out
            if want_endslice:
                endslice[y, x] = last

            # jump screening
            hit = False
            if ntests > 0:
                # a NaN slope gives a NaN threshold, which never fires
                if np.isnan(s):
                    threshold = s
                elif s <= ia:
                    threshold = sa
                elif s >= ib:
                    threshold = sb
                else:
                    threshold = sa + (sb - sa) * ((np.log(s) - log_ia) / log_span)
                limit = threshold - margin
                if limit < 0.0:
                    # |z| >= 0 > limit: every test fires (z = 0 included)
                    hit = True
                elif limit >= 0.0:
                    # |stat| / sqrt(var) > limit, without the square roots
                    limit2 = limit * limit
                    for k in range(ntests):
                        var = test_poisson[k] * dvardt + test_read[k] * rn2
                        if var > 0.0:
                            stat = 0.0
                            for t in range(n):
                                stat += matrix[1 + k, t] * d[t]
                            if stat * stat > limit2 * var:
                                hit = True
                                break
            special[y, x] = unusable or (not finite) or hit
