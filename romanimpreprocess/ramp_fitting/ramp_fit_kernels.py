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
    """The per-pixel inputs of `screen_ramps` (full frame)."""

    data: np.ndarray  # (n, ny, nx) float32 resultants
    groupdq: np.ndarray  # (n, ny, nx) uint8 group flags
    gain: np.ndarray  # (ny, nx) gain, e/DN
    read_noise: np.ndarray  # (ny, nx) single-read noise, DN
    border: int  # reference border left out


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


# One function, past the package's complexity limit (C901): the pixel loop split into
# compiled helpers cost 20-100 % more CPU on 2048² frames (three variants tried:
# plain calls, inline="always", inlined with the constants passed in).
@njit(parallel=True, nogil=True, cache=True)
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
    data, groupdq, gain, read_noise, border = inputs
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
    for y in prange(sy):
        d = np.empty(n)
        v = np.zeros(n)
        w = np.zeros(n)
        cy = np.zeros(n)
        suffix = np.zeros(n)
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
                    total = 0.0
                    total_t = 0.0
                    if structured:
                        _inverse_covariance_times(
                            d,
                            start,
                            structure[0],
                            structure[1],
                            structure[2],
                            structure[3],
                            v,
                            w,
                            cy,
                        )
                        for t in range(n - 1, start - 1, -1):
                            total += cy[t]
                            suffix[t] = total
                            total_t += structure[4, t] * cy[t]
                    # Two loops rather than a branch inside one: with the branch the
                    # structured screening took 2.9-3.2 s of CPU against 2.1-3.3 s
                    # (2040² × 24 resultants, three alternating runs each).
                    for k in range(ntests if structured else 0):
                        var = test_poisson[k] * dvardt + test_read[k] * rn2
                        if var > 0.0:
                            stat = (
                                coefs[k, 0] * total
                                + coefs[k, 1] * total_t
                                + coefs[k, 2] * suffix[step_at[k]]
                                + coefs[k, 3] * cy[free_at[k]]
                            )
                            if stat * stat > limit2 * var:
                                hit = True
                                break
                    for k in range(0 if structured else ntests):
                        var = test_poisson[k] * dvardt + test_read[k] * rn2
                        if var > 0.0:
                            stat = 0.0
                            for t in range(n):
                                stat += matrix[1 + k, t] * d[t]
                            if stat * stat > limit2 * var:
                                hit = True
                                break
            special[y, x] = unusable or (not finite) or hit
