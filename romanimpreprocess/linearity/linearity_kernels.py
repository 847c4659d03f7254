"""Numba kernels of the Legendre linearity (`linearity.apply_linearity`).

`linearize` evaluates exactly what the numpy path evaluates, in the same order and
the same working precision, one row at a time (``numba.prange`` over rows): the
row's calibration is loaded once into buffers of the working dtype, and for each
resultant the normalised signal, the Legendre recursion and the continuation are
computed along the row with the Legendre order outside and the pixels inside, so
the inner loops vectorise. No fastmath and no fused multiply-add: every operation
is rounded to the working dtype as numpy rounds it (the scalar ratios of the
recursion come pre-rounded to that dtype from `recursion_constants`), so the
results are identical bit for bit.

The working dtype is that of the ``one`` argument (a 1-element array holding 1):
inputs are converted to it on loading, as ``np.asarray(a, dtype=dtype)`` does in
the numpy path, and the coefficient planes enter the products in their own dtype,
as in `linearity.legendre_phi` (never wider than the working dtype here).
"""

import numba
import numpy as np
from roman_datamodels.dqflags import group, pixel

__all__ = ["invalid_calibration", "linearize", "recursion_constants"]

_SAT = np.uint8(group.SATURATED)
_USE_RAW = np.uint32(pixel.NO_LIN_CORR | pixel.REFERENCE_PIXEL)
_NO_LIN_CORR = np.uint32(pixel.NO_LIN_CORR)
_BAD = np.uint32(pixel.NO_LIN_CORR | pixel.DO_NOT_USE)

# error_model="numpy": unusable calibrations divide by zero (Smax = Smin) and
# must give inf/NaN, as in numpy, instead of raising.
_JIT = {"parallel": True, "cache": True, "nogil": True, "error_model": "numpy"}


def recursion_constants(nterms: int, dtype) -> tuple[np.ndarray, ...]:
    """Scalars of `linearity.legendre_phi`, rounded to ``dtype`` as it rounds them.

    Returns
    -------
    slope, grow, shrink : ndarray, shape (nterms,)
        ``l (l+1) / 2`` (slope of ``P_l`` at 1), ``(2l+1)/(l+1)`` and
        ``l/(l+1)`` (the recursion) for each ``l`` (index 0 unused).
    """
    slope = np.array([k * (k + 1) / 2.0 for k in range(nterms)], dtype=dtype)
    grow = np.array([(2 * k + 1) / (k + 1) for k in range(nterms)], dtype=dtype)
    shrink = np.array([k / (k + 1) for k in range(nterms)], dtype=dtype)
    return slope, grow, shrink


@numba.njit(**_JIT)
def invalid_calibration(coeffs, smin, smax, sref, bad):
    """`linearity.invalid_calibration` in one pass; writes the mask into ``bad``."""
    nterms, ny, nx = coeffs.shape
    for y in numba.prange(ny):
        for x in range(nx):
            ok = (
                np.isfinite(smin[y, x])
                & np.isfinite(smax[y, x])
                & np.isfinite(sref[y, x])
                & (smax[y, x] > smin[y, x])
            )
            bad[y, x] = not ok
        for ell in range(nterms):
            for x in range(nx):
                bad[y, x] |= not np.isfinite(coeffs[ell, y, x])


@numba.njit(**_JIT)
def linearize(
    data, groupdq, coeffs, smin, smax, sref, dq, bad, any_bad, do_not_flag_first,
    legacy_compat, one, slope, grow, shrink,
):  # fmt: skip
    """Linearise ``data`` in place and update the pixel flags ``dq``.

    Parameters
    ----------
    data : ndarray, shape (nres, ny, nx), float
        Resultants, DN_raw in, DN_lin out.
    groupdq : ndarray, shape (nres, ny, nx), uint8
        Group flags (SATURATED resultants are never flagged). Not modified.
    coeffs : ndarray, shape (p+1, ny, nx)
        Legendre coefficients, DN_lin.
    smin, smax, sref : ndarray, shape (ny, nx)
        Fitted range and reference level, DN_raw.
    dq : ndarray, shape (ny, nx), uint32
        Linearity-file flags; NO_LIN_CORR (and DO_NOT_USE on ``bad``) added.
    bad : ndarray of bool, shape (ny, nx)
        Unusable calibrations (``S - Sref``, with ``Sref`` 0 where not finite).
    any_bad : bool
        ``bad.any()`` (the numpy path replaces non-finite ``Sref`` only then).
    do_not_flag_first : bool
        Clip resultant 0 to the range and never flag it.
    legacy_compat : bool
        ``S - Sref`` from the resultant after the first out-of-range one on.
    one : ndarray, shape (1,)
        1 in the working dtype.
    slope, grow, shrink : ndarray, shape (p+1,)
        `recursion_constants` in the working dtype.
    """
    nres, ny, nx = data.shape
    nterms = coeffs.shape[0]
    unit = one[0]
    two = unit + unit
    zero = unit - unit
    work = one.dtype
    for y in numba.prange(ny):
        b_smin = np.empty(nx, work)
        b_span = np.empty(nx, work)
        b_sref = np.empty(nx, work)
        signal = np.empty(nx, work)
        z = np.empty(nx, work)
        beyond = np.empty(nx, work)  # |z| - 1
        phi = np.empty(nx, work)
        prev = np.empty(nx, work)
        poly = np.empty(nx, work)
        nxt = np.empty(nx, work)
        outside = np.empty(nx, np.bool_)
        use_raw = np.empty(nx, np.bool_)
        out_of_range = np.zeros(nx, np.bool_)
        for x in range(nx):
            b_smin[x] = smin[y, x]
            b_span[x] = smax[y, x]
            s_ref = sref[y, x]
            if any_bad and not np.isfinite(s_ref):
                s_ref = 0
            b_sref[x] = s_ref
            use_raw[x] = ((dq[y, x] & _USE_RAW) != 0) | (any_bad & bad[y, x])
        for x in range(nx):
            b_span[x] = b_span[x] - b_smin[x]  # Smax - Smin in the working dtype
        for j in range(nres):
            first = j == 0 and do_not_flag_first
            for x in range(nx):
                signal[x] = data[j, y, x]
            # z = -1 + 2 (S - Smin) / span, rounded after every operation as
            # `linearity.normalized_signal` does
            for x in range(nx):
                value = (signal[x] - b_smin[x]) * two
                value = value / b_span[x]
                value = value - unit
                if first:  # np.clip(z, -1, 1); not min/max, so that NaN stays NaN
                    value = -unit if value < -unit else value  # noqa: FURB136
                    value = unit if value > unit else value  # noqa: FURB136
                z[x] = value
                size = abs(value)
                outside[x] = size > unit
                beyond[x] = size - unit
                phi[x] = coeffs[0, y, x] * unit  # C_0 in the working dtype
                prev[x] = unit
                poly[x] = value
            for ell in range(1, nterms):
                odd = ell % 2 == 1
                for x in range(nx):
                    # P~_l: P_l inside the range, its tangent line beyond
                    tangent = beyond[x] * slope[ell]
                    tangent = tangent + unit
                    if odd and z[x] < zero:
                        tangent = -tangent  # * sign(z) = -1, exact
                    term = tangent if outside[x] else poly[x]
                    phi[x] = phi[x] + term * coeffs[ell, y, x]
                if ell + 1 < nterms:
                    for x in range(nx):
                        value = grow[ell] * z[x]
                        value = value * poly[x]
                        prev[x] = prev[x] * shrink[ell]
                        nxt[x] = value - prev[x]
                    prev, poly, nxt = poly, nxt, prev
            for x in range(nx):
                raw = signal[x] - b_sref[x]
                keep_raw = use_raw[x] | (legacy_compat & out_of_range[x])
                data[j, y, x] = raw if keep_raw else phi[x]
            if not first:
                for x in range(nx):
                    unsaturated = (groupdq[j, y, x] & _SAT) == 0
                    out_of_range[x] |= outside[x] & unsaturated
        for x in range(nx):
            flags = dq[y, x]
            if out_of_range[x]:
                flags |= _NO_LIN_CORR
            if any_bad and bad[y, x]:
                flags |= _BAD
            dq[y, x] = flags
