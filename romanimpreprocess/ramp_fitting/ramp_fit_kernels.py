"""Compiled (numba) pass of the default-mode ramp fit over the ordinary pixels.

`screen_ramps` does, rows in parallel and SIMD across a row's pixels, what the
numpy block pass of `ramp_fit.fit_ramps` does with matrix products: the full-ramp
slope and its variances, the flags that follow from the group flags, the end slice,
and the jump screening (every step test at the weights' operating point, against the threshold
lowered by the screening margin). It marks the pixels that need more than the
full-ramp fit (unusable resultants, or a test that fires) as *special*; those go
through the same per-pattern code as in the numpy path, so both give the same
flags and, for ordinary pixels, slopes that agree to the float64 summation order
(a few 1e-16 relative before the float32 rounding).

Screening costs one dot product per test, about ``2 n`` tests of ``n`` resultants:
``2 n²`` operations a pixel, which made a 24-resultant ramp's screening eight times
the 6-resultant one's. `structured_tests` rewrites every test statistic through
``y = C⁻¹ d`` (``C`` the resultant covariance of the weights' operating point):
a step test is a fixed combination of ``Σ y``, ``Σ tbar y``, the suffix sum of ``y``
from the step on and, for a double difference, ``y`` of the dropped resultant. ``C``
is a diagonal plus a random-walk covariance, so ``y`` takes a tridiagonal solve
(Woodbury), and the screening costs about ``7 n + 4 · 2n`` operations a pixel. The
rewriting is checked against the tests' own weights before it is used; where it
does not hold (or the dot products are cheaper, short ramps), the dot products run.
"""

from typing import NamedTuple

import numpy as np
from numba import njit, prange

__all__ = [
    "ScreenInputs",
    "ScreenOutputs",
    "ScreenPattern",
    "ScreenRules",
    "screen_ramps",
    "structured_tests",
]

# The rewritten tests must give the tests' weights to this (relative to the largest).
_STRUCTURE_TOLERANCE = 1e-9


@njit(nogil=True, cache=True)
def _inverse_covariance_times(d, start, inv_dprime, lower, inv_diag, upper, v, w, y):
    """``y = C⁻¹ d`` over resultants ``start..n-1`` (``v``, ``w`` are work arrays).

    ``C = D' + u B`` (``B`` the random walk ``tbar_min(i,j)``), by Woodbury:
    ``C⁻¹ = D'⁻¹ - D'⁻¹ M⁻¹ D'⁻¹`` with ``M = B⁻¹/u + D'⁻¹`` tridiagonal, solved
    with its ``L D Lᵀ`` factors (``lower``: L below the diagonal, ``inv_diag``: 1/D,
    ``upper[i] = lower[i+1]``).
    """
    n = d.shape[0]
    carry = 0.0
    for i in range(start, n):
        v[i] = d[i] * inv_dprime[i]
        carry = v[i] - lower[i] * carry
        w[i] = carry
    carry = 0.0
    for i in range(n - 1, start - 1, -1):
        carry = w[i] * inv_diag[i] - upper[i] * carry
        y[i] = v[i] - carry * inv_dprime[i]


def structured_tests(weights, flag, double, tbar, tau, n_frames, *, u, start):
    """The tests' statistics through ``y = C⁻¹ d``, or None where that does not hold.

    Parameters
    ----------
    weights : ndarray, shape (t, n)
        Weights of the full ramp's step tests (`jumps.step_tests`).
    flag, double : ndarray, shape (t,)
        Flagged resultant of each test and whether it is a double difference.
    tbar, tau, n_frames : ndarray, shape (n,)
        Read times and frames per resultant.
    u : float
        Operating point of the tests' weights, 1/s.
    start : int
        First used resultant.

    Returns
    -------
    dict of ndarray, or None
        The factors of `_inverse_covariance_times` (``inv_dprime``, ``lower``,
        ``inv_diag``, ``upper``, ``tbar``) and per test ``coefs`` (t, 4) of
        ``(Σ y, Σ tbar y, Σ_{i >= step_at} y, y[free_at])``, ``step_at``, ``free_at``.
    """
    tbar = np.asarray(tbar, dtype=np.float64)
    n = tbar.size
    used = np.arange(start, n)
    t = tbar[used]
    dprime = (
        1.0 / np.asarray(n_frames, dtype=np.float64)
        + u * (np.asarray(tau, dtype=np.float64) - tbar)
    )[used]
    if (
        used.size < 3
        or not u > 0
        or t[0] <= 0
        or np.any(np.diff(t) <= 0)
        or np.any(dprime <= 0)
    ):
        return None
    # B⁻¹ of the random walk: tridiagonal in the time steps (from t = 0)
    dt = np.diff(np.concatenate([[0.0], t]))
    m_diag = 1.0 / dt
    m_diag[:-1] += 1.0 / dt[1:]
    m_diag = m_diag / u + 1.0 / dprime
    m_off = -1.0 / dt[1:] / u
    diag = np.empty(used.size)
    low = np.zeros(used.size)
    diag[0] = m_diag[0]
    for i in range(1, used.size):
        low[i] = m_off[i - 1] / diag[i - 1]
        diag[i] = m_diag[i] - low[i] * m_off[i - 1]
    if np.any(diag <= 0):
        return None
    factors = {
        "inv_dprime": np.zeros(n),
        "lower": np.zeros(n),
        "inv_diag": np.zeros(n),
        "upper": np.zeros(n),
        "tbar": tbar.copy(),
    }
    factors["inv_dprime"][used] = 1.0 / dprime
    factors["lower"][used] = low
    factors["inv_diag"][used] = 1.0 / diag
    factors["upper"][used[:-1]] = low[1:]

    # C⁻¹ column by column through the compiled solve: the check below covers it
    inverse = np.zeros((n, n))
    work = np.zeros((3, n))  # contiguous, as in the kernel: one compiled version
    for i in used:
        unit = np.zeros(n)
        unit[i] = 1.0
        _inverse_covariance_times(
            unit,
            start,
            factors["inv_dprime"],
            factors["lower"],
            factors["inv_diag"],
            factors["upper"],
            work[0],
            work[1],
            work[2],
        )
        inverse[:, i] = work[2]
    # Each test's statistic as a combination of the four sums (GLS of its model,
    # whose columns are 1, tbar, the step and, for a double, the free offset).
    step_at = np.where(double, np.asarray(flag) + 1, flag).astype(np.int64)
    free_at = np.where(double, flag, start).astype(np.int64)
    ones = np.zeros(n)
    ones[used] = 1.0
    times = ones * tbar
    steps = ones[:, None] * (np.arange(n)[:, None] >= step_at)
    coefs = np.zeros((len(flag), 4))
    for k in range(len(flag)):
        columns = [ones, times, steps[:, k]]
        if double[k]:
            columns.append(np.eye(n)[free_at[k]])
        # the weight vectors of the four sums, as the kernel forms them from y
        basis = inverse.T @ np.column_stack(columns)
        coefs[k, : len(columns)] = np.linalg.lstsq(basis, weights[k], rcond=None)[0]
    rebuilt = (
        coefs[:, :1] * (ones @ inverse)
        + coefs[:, 1:2] * (times @ inverse)
        + coefs[:, 2:3] * (steps.T @ inverse)
        + coefs[:, 3:4] * inverse[free_at]
    )
    scale = np.max(np.abs(weights)) if weights.size else 0.0
    if (
        not scale > 0
        or np.max(np.abs(rebuilt - weights)) > _STRUCTURE_TOLERANCE * scale
    ):
        return None
    return {**factors, "coefs": coefs, "step_at": step_at, "free_at": free_at}


class ScreenInputs(NamedTuple):
    """The per-pixel inputs of `screen_ramps` (full frame).

    ``data`` and ``groupdq`` may hold more rows than the frame: the frame is rows
    ``row0 .. row0 + ny`` of them (a band's rows, read in place of a copy).
    """

    data: np.ndarray  # (n, row0 + ny + ..., nx) float32 resultants
    groupdq: np.ndarray  # (n, row0 + ny + ..., nx) uint8 group flags
    gain: np.ndarray  # (ny, nx) gain, e/DN
    read_noise: np.ndarray  # (ny, nx) single-read noise, DN
    border: int  # reference border left out
    row0: int = 0  # first frame row in data and groupdq


class ScreenPattern(NamedTuple):
    """The full ramp's constants, built once per exposure.

    ``structure`` is ``(5, n)``: ``inv_dprime, lower, inv_diag, upper, tbar`` of
    `structured_tests`, or ``(0, n)`` for the dot products; ``coefs`` (t, 4),
    ``step_at`` and ``free_at`` (t,) are the tests through ``y = C⁻¹ d`` (unused
    without ``structure``).
    """

    start: int  # first used resultant
    matrix: np.ndarray  # (1 + t, n) full-ramp slope weights (row 0) and t test weights
    test_poisson: np.ndarray  # (t,) Poisson variance coefficients of the tests
    test_read: np.ndarray  # (t,) read variance coefficients of the tests
    coef_poisson: float  # Poisson variance coefficient of the slope
    coef_read: float  # read variance coefficient of the slope
    structure: np.ndarray
    coefs: np.ndarray
    step_at: np.ndarray
    free_at: np.ndarray


class ScreenRules(NamedTuple):
    """Thresholds and flag bits of the screening."""

    thresholds: np.ndarray  # (4,) SthreshA, SthreshB, IthreshA, IthreshB
    margin: float  # screening margin, sigma
    gain_clip: np.ndarray  # (2,) clip of the gain in the Poisson variance
    group_to_pixel: np.ndarray  # (k, 2) int64: group flag -> pixel flag carried
    # (5,) int64: group SATURATED, group DO_NOT_USE, group SATURATED|DO_NOT_USE,
    # pixel DO_NOT_USE, pixel SATURATED
    bits: np.ndarray


class ScreenOutputs(NamedTuple):
    """The arrays `screen_ramps` fills, science area (sy, sx)."""

    slope: np.ndarray  # float32
    var_poisson: np.ndarray  # float32
    var_rnoise: np.ndarray  # float32
    flags: np.ndarray  # uint32
    endslice: np.ndarray  # int8, or a (1, 1) array when not wanted
    special: np.ndarray  # bool


# Pixels of a row handled together: the loops over them vectorise, and the chunk's
# float64 work planes (resultants × CHUNK) stay in the core's cache at 24 resultants.
CHUNK = 512


# One function, past the package's complexity limit (C901): the pixel loop split into
# compiled helpers cost 20-100 % more CPU on 2048² frames (three variants tried:
# plain calls, inline="always", inlined with the constants passed in).
# The loops run over a chunk of a row's pixels inside the loop over resultants or
# tests, so that they vectorise (SIMD across pixels): every pixel's arithmetic is
# the one-pixel-at-a-time arithmetic, in the same order, so the bits are the same;
# a pixel's tests are all computed (no early exit), which changes only the time.
# error_model="numpy": no zero-division check in the loops (the gain is clipped
# away from 0; a NaN gain gives NaN as before).
@njit(parallel=True, nogil=True, cache=True, error_model="numpy")
def screen_ramps(inputs, pattern, rules, outputs):  # noqa: C901
    """Fill the arrays of ``outputs`` in place (module docstring).

    Parameters
    ----------
    inputs : ScreenInputs
        Resultants, group flags, gain and read noise of the full frame.
    pattern : ScreenPattern
        The full ramp's weights, tests and variance coefficients.
    rules : ScreenRules
        Thresholds, margin, gain clip and flag bits.
    outputs : ScreenOutputs
        Slope, variances, flags, end slice and the special-pixel mask.
    """
    # locals for the loop below (the tuples' fields are its constants)
    data, groupdq, gain, read_noise, border, row0 = inputs
    start, matrix = pattern.start, pattern.matrix
    test_poisson, test_read = pattern.test_poisson, pattern.test_read
    coef_poisson, coef_read = pattern.coef_poisson, pattern.coef_read
    structure, coefs = pattern.structure, pattern.coefs
    step_at, free_at = pattern.step_at, pattern.free_at
    thresholds, margin, gain_clip = rules.thresholds, rules.margin, rules.gain_clip
    group_to_pixel, bits = rules.group_to_pixel, rules.bits
    slope, var_poisson, var_rnoise, flags, endslice, special = outputs
    n = data.shape[0]
    sy, sx = slope.shape
    ntests = matrix.shape[0] - 1
    sa, sb, ia, ib = thresholds[0], thresholds[1], thresholds[2], thresholds[3]
    log_ia = np.log(ia)
    log_span = np.log(ib / ia)
    g_sat, g_dnu, g_unusable = np.uint8(bits[0]), np.uint8(bits[1]), np.uint8(bits[2])
    p_dnu, p_sat = np.uint32(bits[3]), np.uint32(bits[4])
    want_endslice = endslice.shape[0] == sy
    structured = structure.shape[0] > 0
    ntypes = group_to_pixel.shape[0]
    for y in prange(sy):
        fy = y + border  # frame row (gain, read noise)
        dy = fy + row0  # its row in data and groupdq
        d = np.empty((n, CHUNK))
        # C⁻¹ d and its suffix sums; rows before ``start`` stay 0
        v = np.zeros((n, CHUNK))
        w = np.zeros((n, CHUNK))
        cy = np.zeros((n, CHUNK))
        suffix = np.zeros((n, CHUNK))
        s = np.empty(CHUNK)
        dvardt = np.empty(CHUNK)
        rn2 = np.empty(CHUNK)
        limit2 = np.empty(CHUNK)
        screened = np.empty(CHUNK, np.bool_)
        hit = np.empty(CHUNK, np.bool_)
        usable = np.empty(CHUNK, np.bool_)
        carry = np.empty(CHUNK)
        total = np.empty(CHUNK)
        total_t = np.empty(CHUNK)
        stat = np.empty(CHUNK)
        nonsat = np.empty(CHUNK, np.uint8)
        all_dnu = np.empty(CHUNK, np.bool_)
        any_sat = np.empty(CHUNK, np.bool_)
        previous_sat = np.empty(CHUNK, np.bool_)
        last = np.empty(CHUNK, np.int8)
        for x0 in range(0, sx, CHUNK):
            m = min(CHUNK, sx - x0)
            f0 = x0 + border
            for j in range(m):
                s[j] = 0.0
                usable[j] = True
            for t in range(n):
                c = matrix[0, t]
                for j in range(m):
                    d[t, j] = np.float64(data[t, dy, f0 + j])
                    s[j] += c * d[t, j]
                if t >= start:
                    for j in range(m):
                        usable[j] &= np.isfinite(d[t, j])
            for j in range(m):
                g = np.float64(gain[fy, f0 + j])
                if not np.isnan(g):  # NaN stays NaN, as np.clip leaves it
                    g = min(max(g, gain_clip[0]), gain_clip[1])
                rn = np.float64(read_noise[fy, f0 + j])
                rn2[j] = rn * rn
                q = s[j] / g
                if q < 0.0:  # noqa: PLR1730 (max() would not keep a NaN)
                    q = 0.0
                dvardt[j] = q
                slope[y, x0 + j] = np.float32(s[j])
                var_poisson[y, x0 + j] = np.float32(coef_poisson * q)
                var_rnoise[y, x0 + j] = np.float32(coef_read * rn * rn)

            # group flags -> pixel flags, end slice, unusable resultants
            for j in range(m):
                nonsat[j] = 0
                all_dnu[j] = True
                any_sat[j] = False
                previous_sat[j] = False
                last[j] = -1
            # (branch-free forms: the loops vectorise)
            for t in range(n):
                unusable_bits = g_unusable if t >= start else np.uint8(0)
                for j in range(m):
                    q = groupdq[t, dy, f0 + j]
                    is_sat = (q & g_sat) != 0
                    any_sat[j] |= is_sat
                    nonsat[j] |= q & np.uint8(0 - np.uint8(not is_sat))
                    all_dnu[j] &= (q & g_dnu) != 0
                    usable[j] &= (q & unusable_bits) == 0
                    first_sat = is_sat and not previous_sat[j] and t >= 1
                    last[j] = np.int8(t - 1) if first_sat else last[j]
                    previous_sat[j] = is_sat
            for j in range(m):
                out = np.uint32(0)
                for k in range(ntypes):
                    if (nonsat[j] & np.uint8(group_to_pixel[k, 0])) != 0:
                        out |= np.uint32(group_to_pixel[k, 1])
                if all_dnu[j]:
                    out |= p_dnu
                if any_sat[j]:
                    out |= p_sat
                flags[y, x0 + j] = out
                if want_endslice:
                    endslice[y, x0 + j] = last[j]

            # jump screening: a pixel is screened where its lowered threshold is
            # >= 0; below 0 every test fires (|z| >= 0); a NaN slope gives a NaN
            # threshold, which never fires
            for j in range(m):
                hit[j] = False
                screened[j] = False
                if ntests > 0:
                    sj = s[j]
                    if np.isnan(sj):
                        threshold = sj
                    elif sj <= ia:
                        threshold = sa
                    elif sj >= ib:
                        threshold = sb
                    else:
                        threshold = sa + (sb - sa) * ((np.log(sj) - log_ia) / log_span)
                    limit = threshold - margin
                    if limit < 0.0:
                        hit[j] = True
                    elif limit >= 0.0:
                        # |stat| / sqrt(var) > limit, without the square roots
                        screened[j] = True
                        limit2[j] = limit * limit
                    else:
                        limit2[j] = 0.0
                if not screened[j]:
                    limit2[j] = 0.0
            if ntests > 0 and structured:
                inv_dprime, lower = structure[0], structure[1]
                inv_diag, upper, tbar = structure[2], structure[3], structure[4]
                for j in range(m):
                    carry[j] = 0.0
                for i in range(start, n):
                    for j in range(m):
                        v[i, j] = d[i, j] * inv_dprime[i]
                        carry[j] = v[i, j] - lower[i] * carry[j]
                        w[i, j] = carry[j]
                for j in range(m):
                    carry[j] = 0.0
                for i in range(n - 1, start - 1, -1):
                    for j in range(m):
                        carry[j] = w[i, j] * inv_diag[i] - upper[i] * carry[j]
                        cy[i, j] = v[i, j] - carry[j] * inv_dprime[i]
                for j in range(m):
                    total[j] = 0.0
                    total_t[j] = 0.0
                for t in range(n - 1, start - 1, -1):
                    for j in range(m):
                        total[j] += cy[t, j]
                        suffix[t, j] = total[j]
                        total_t[j] += tbar[t] * cy[t, j]
                for k in range(ntests):
                    c0, c1, c2, c3 = coefs[k, 0], coefs[k, 1], coefs[k, 2], coefs[k, 3]
                    tp, tr = test_poisson[k], test_read[k]
                    sk, fk = step_at[k], free_at[k]
                    for j in range(m):
                        var = tp * dvardt[j] + tr * rn2[j]
                        value = (
                            c0 * total[j]
                            + c1 * total_t[j]
                            + c2 * suffix[sk, j]
                            + c3 * cy[fk, j]
                        )
                        hit[j] |= (
                            screened[j]
                            and var > 0.0
                            and value * value > limit2[j] * var
                        )
            elif ntests > 0:
                for k in range(ntests):
                    for j in range(m):
                        stat[j] = 0.0
                    for t in range(n):
                        c = matrix[1 + k, t]
                        for j in range(m):
                            stat[j] += c * d[t, j]
                    tp, tr = test_poisson[k], test_read[k]
                    for j in range(m):
                        var = tp * dvardt[j] + tr * rn2[j]
                        hit[j] |= (
                            screened[j]
                            and var > 0.0
                            and stat[j] * stat[j] > limit2[j] * var
                        )
            for j in range(m):
                special[y, x0 + j] = (not usable[j]) or hit[j]
