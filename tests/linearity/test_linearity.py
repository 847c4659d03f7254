"""Legendre linearity on plain arrays: continuation, inversion, flags, legacy mode."""

import warnings

import numpy as np
import pytest
from numpy.polynomial import legendre
from roman_datamodels.dqflags import group, pixel

from romanimpreprocess.linearity import linearity as lin
from tests.linearity.legacy import legacy_case

NLC = pixel.NO_LIN_CORR


def legendre_model(rng, shape, *, smin0=5000.0, smax0=30000.0):
    """Per-pixel calibration whose Phi is d + beta d^2 + gamma d^3, d = S - Sref.

    Returns float32 Smin, Smax, Sref and the float32 Legendre coefficients (4, ...)
    of that cubic, converted from its power series in z exactly (numpy poly2leg).
    """
    smin = (smin0 + rng.uniform(-200, 200, shape)).astype(np.float32)
    smax = (smax0 + rng.uniform(-1000, 1000, shape)).astype(np.float32)
    sref = (smin + 300 + 100 * (np.indices(shape)[1] % 2)).astype(np.float32)
    beta = rng.uniform(1e-6, 3e-6, shape)
    gamma = rng.uniform(-2e-11, 2e-11, shape)
    span = smax.astype(np.float64) - smin
    u1 = span / 2  # d = u0 + u1 z
    u0 = smin - sref.astype(np.float64) + span / 2
    power = np.array(
        [
            u0 + beta * u0**2 + gamma * u0**3,
            u1 + 2 * beta * u0 * u1 + 3 * gamma * u0**2 * u1,
            beta * u1**2 + 3 * gamma * u0 * u1**2,
            gamma * u1**3,
        ]
    )
    to_leg = np.zeros((4, 4))  # column i: Legendre coefficients of z**i
    for i in range(4):
        leg = legendre.poly2leg(np.eye(4)[i])
        to_leg[: len(leg), i] = leg
    coeffs = np.einsum("ij,j...->i...", to_leg, power).astype(np.float32)
    return smin, smax, sref, coeffs


def phi64(signal, smin, smax, coeffs):
    """Independent float64 evaluation of Phi inside the range (numpy legval)."""
    z = -1 + 2 * (signal.astype(np.float64) - smin) / (smax.astype(np.float64) - smin)
    return legendre.legval(z, coeffs.astype(np.float64), tensor=False), z


def invert(target, smin, smax, coeffs, iterations=80):
    """Brute-force inverse of Phi by bisection in z (float64), per pixel."""
    lo = np.full(target.shape, -1.0)
    hi = np.full(target.shape, 1.0)
    c = coeffs.astype(np.float64)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        above = legendre.legval(mid, c, tensor=False) > target
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    z = (lo + hi) / 2
    return smin + (z + 1) / 2 * (smax.astype(np.float64) - smin)


def run(data, coeffs, smin, smax, sref, **kwargs):
    groupdq = kwargs.pop("groupdq", np.zeros(data.shape, np.uint8))
    lin_dq = kwargs.pop("lin_dq", np.zeros(data.shape[1:], np.uint32))
    kwargs.setdefault("do_not_flag_first", False)
    out = data.copy()
    flags = lin.apply_linearity(
        out, groupdq, coeffs, smin, smax, sref, lin_dq, **kwargs
    )
    return out, flags


def test_p3_continuation_golden_values():
    # the Legendre model (docs/linearity/index.rst): pure P3, z = -1.5 ... 1.5 in steps of 0.1.
    z = np.linspace(-1.5, 1.5, 31)
    golden = [-4.0, -3.4, -2.8, -2.2, -1.6, -1.0, -0.4725, -0.08, 0.1925, 0.36,
              0.4375, 0.44, 0.3825, 0.28, 0.1475, 0.0, -0.1475, -0.28, -0.3825,
              -0.44, -0.4375, -0.36, -0.1925, 0.08, 0.4725, 1.0, 1.6, 2.2, 2.8,
              3.4, 4.0]  # fmt: skip
    coeffs = np.zeros((4, 31))
    coeffs[3] = 1
    for dtype in (np.float64, np.float32):
        phi, exflag = lin.legendre_phi(z.astype(dtype), coeffs.astype(dtype))
        np.testing.assert_allclose(phi, golden, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(exflag, np.abs(z.astype(dtype)) > 1)


@pytest.mark.parametrize("ell", range(7))
def test_value_and_slope_continuous_at_range_ends(ell):
    coeffs = np.zeros((ell + 1, 3))
    coeffs[ell] = 1
    unit = np.eye(ell + 1)[ell]
    h = 1e-3
    for end in (-1.0, 1.0):
        # At the end, just inside, and beyond (where the continuation is a line).
        z = np.array([end, end - np.sign(end) * 1e-7, end + np.sign(end) * h])
        phi, exflag = lin.legendre_phi(z, coeffs)
        np.testing.assert_array_equal(exflag, [False, False, True])
        assert phi[0] == pytest.approx(end**ell, abs=1e-12)  # P_l(+-1) = (+-1)^l
        assert phi[1] == pytest.approx(legendre.legval(z[1], unit), abs=1e-12)
        slope_out = (phi[2] - phi[0]) / (z[2] - z[0])
        slope_in = legendre.legval(end, legendre.legder(unit))
        # P_l'(+-1) = (+-1)^(l+1) l(l+1)/2, on both sides of the end
        assert slope_in == pytest.approx(end ** (ell + 1) * ell * (ell + 1) / 2)
        assert slope_out == pytest.approx(slope_in, rel=1e-9, abs=1e-9)


def test_inside_range_matches_numpy_legval(rng):
    coeffs = rng.normal(size=(6, 50, 40))
    z = rng.uniform(-1, 1, (50, 40))
    phi, exflag = lin.legendre_phi(z, coeffs)
    np.testing.assert_allclose(
        phi, legendre.legval(z, coeffs, tensor=False), rtol=1e-12, atol=1e-12
    )
    assert not exflag.any()


def test_inverts_legendre_nonlinearity_over_fitted_range(rng):
    shape = (32, 32)
    smin, smax, sref, coeffs = legendre_model(rng, shape)
    lo, _ = phi64(smin, smin, smax, coeffs)
    hi, _ = phi64(smax, smin, smax, coeffs)
    frac = np.linspace(0.0, 1.0, 8)[:, None, None]
    target = lo + frac * (hi - lo)  # linear signal spanning the whole fitted range
    raw64 = invert(target, smin, smax, coeffs)
    raw = raw64.astype(np.float32)  # the cube is float32
    out, flags = run(raw, coeffs, smin, smax, sref, dtype=np.float64)
    truth, z = phi64(raw, smin, smax, coeffs)
    assert np.abs(z).max() <= 1
    # Evaluation error: below 0.002 DN (only the float32 rounding of the output).
    assert np.abs(out - truth).max() < 0.002
    # Against the targets, plus what the float32 storage of the input moved them.
    slope = (phi64(raw64 + 0.01, smin, smax, coeffs)[0] - truth) / 0.01
    allowed = 0.002 + np.abs(slope * (raw.astype(np.float64) - raw64))
    assert np.all(np.abs(out - target) < allowed)
    assert not (flags & NLC).any()


def test_float32_arithmetic_error_is_small_but_larger(rng):
    # The legacy float32 evaluation: ~1e-2 DN at the top of a 60000 DN range.
    shape = (32, 32)
    smin, smax, sref, coeffs = legendre_model(rng, shape, smax0=60000.0)
    raw = (smin + rng.uniform(0, 1, (4, *shape)) * (smax - smin)).astype(np.float32)
    truth, _ = phi64(raw, smin, smax, coeffs)
    out32, _ = run(raw, coeffs, smin, smax, sref)
    out64, _ = run(raw, coeffs, smin, smax, sref, dtype=np.float64)
    assert np.abs(out32 - truth).max() < 0.05
    half_ulp = np.spacing(np.abs(truth).astype(np.float32)) / 2
    assert np.all(np.abs(out64 - truth) <= half_ulp * 1.01 + 1e-9)


def test_continuation_and_flags_beyond_range(rng):
    shape = (4, 4)
    smin, smax, sref, coeffs = legendre_model(rng, shape)
    c64 = coeffs.astype(np.float64)
    span = smax.astype(np.float64) - smin
    nres = 4
    raw = np.empty((nres, *shape), np.float32)
    raw[:] = (smin + 0.5 * span).astype(np.float32)
    raw[2, 0, 0] = smax[0, 0] + 2000  # above the range, not saturated -> flagged
    raw[2, 0, 1] = smax[0, 1] + 2000  # above the range but SATURATED -> not flagged
    raw[2, 0, 2] = smin[0, 2] - 1000  # below the range -> flagged
    raw[0, 1, 0] = smax[1, 0] + 3000  # resultant 0 out of range
    groupdq = np.zeros(raw.shape, np.uint8)
    groupdq[2, 0, 1] = group.SATURATED
    out, flags = run(raw, coeffs, smin, smax, sref, groupdq=groupdq)
    out_first, flags_first = run(
        raw, coeffs, smin, smax, sref, groupdq=groupdq, do_not_flag_first=True
    )

    def tangent(y, x, end):
        # Phi(end) + Phi'(end) (z - end), from numpy's Legendre derivative.
        z = -1 + 2 * (raw[:, y, x].astype(np.float64) - smin[y, x]) / span[y, x]
        val = legendre.legval(end, c64[:, y, x])
        der = legendre.legval(end, legendre.legder(c64[:, y, x]))
        return val + der * (z - end)

    for y, x, end in ((0, 0, 1.0), (0, 1, 1.0), (0, 2, -1.0)):
        np.testing.assert_allclose(out[2, y, x], tangent(y, x, end)[2], rtol=1e-6)
    assert flags[0, 0] & NLC
    assert not flags[0, 1] & NLC
    assert flags[0, 2] & NLC
    # Resultant 0: extrapolated and flagged normally; clipped and never flagged when
    # it is the reset frame (do_not_flag_first).
    np.testing.assert_allclose(out[0, 1, 0], tangent(1, 0, 1.0)[0], rtol=1e-6)
    assert flags[1, 0] & NLC
    z_end = legendre.legval(1.0, c64[:, 1, 0])
    np.testing.assert_allclose(out_first[0, 1, 0], z_end, rtol=1e-6)
    assert not flags_first[1, 0] & NLC
    untouched = np.ones(shape, bool)
    untouched[0, :3] = untouched[1, 0] = False
    assert not (flags[untouched] & NLC).any()


def test_default_keeps_linearising_after_leaving_range_legacy_switches_off(rng):
    shape = (2, 2)
    smin, smax, sref, coeffs = legendre_model(rng, shape)
    span = smax - smin
    raw = np.empty((5, *shape), np.float32)
    for k in range(5):
        raw[k] = smin + (0.3 + 0.3 * k) * span  # leaves the range at k = 3
    out, flags = run(raw, coeffs, smin, smax, sref)
    old, old_flags = run(raw, coeffs, smin, smax, sref, legacy_compat=True)
    z = -1 + 2 * (raw.astype(np.float64) - smin) / (smax.astype(np.float64) - smin)
    phi_all = np.stack([lin.legendre_phi(zk, coeffs.astype(np.float64))[0] for zk in z])
    # Default: the same (extrapolated) Phi in every resultant.
    np.testing.assert_allclose(out, phi_all, rtol=1e-6)
    # Legacy: Phi up to and including the first out-of-range resultant (k = 3),
    # then S - Sref: a step in the ramp.
    np.testing.assert_allclose(old[:4], phi_all[:4], rtol=1e-6)
    np.testing.assert_array_equal(old[4], raw[4] - sref)
    assert np.abs(old[4] - out[4]).min() > 100  # the step is large (DN)
    np.testing.assert_array_equal(flags, old_flags)
    assert np.all(flags & NLC)


def test_linearity_file_flags_give_raw_minus_sref(rng):
    shape = (3, 3)
    smin, smax, sref, coeffs = legendre_model(rng, shape)
    raw = np.stack([smin + f * (smax - smin) for f in (0.2, 0.5)]).astype(np.float32)
    lin_dq = np.zeros(shape, np.uint32)
    lin_dq[0, 0] = pixel.REFERENCE_PIXEL
    lin_dq[1, 1] = pixel.NO_LIN_CORR | pixel.HOT
    lin_dq[2, 2] = pixel.HOT
    for compat in (False, True):
        out, flags = run(
            raw, coeffs, smin, smax, sref, lin_dq=lin_dq, legacy_compat=compat
        )
        for y, x in ((0, 0), (1, 1)):
            np.testing.assert_array_equal(out[:, y, x], raw[:, y, x] - sref[y, x])
        expect, _ = phi64(raw[:, 2, 2], smin[2, 2], smax[2, 2], coeffs[:, 2, 2, None])
        np.testing.assert_allclose(out[:, 2, 2], expect, rtol=1e-6)
        np.testing.assert_array_equal(flags & ~np.uint32(NLC), lin_dq & ~np.uint32(NLC))


def test_unusable_calibration_is_flagged_not_nan(rng):
    shape = (3, 3)
    smin, smax, sref, coeffs = legendre_model(rng, shape)
    coeffs[2, 0, 0] = np.nan
    smax[1, 1] = smin[1, 1]  # zero span: the legacy divides by zero
    sref[2, 2] = np.inf
    raw = np.stack([smin + f * (smax - smin + 100) for f in (0.2, 0.5)]).astype(
        np.float32
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, flags = run(raw, coeffs, smin, smax, sref)
    assert np.isfinite(out).all()
    for y, x in ((0, 0), (1, 1), (2, 2)):
        assert flags[y, x] & pixel.DO_NOT_USE and flags[y, x] & NLC
    np.testing.assert_array_equal(out[:, 0, 0], raw[:, 0, 0] - sref[0, 0])
    np.testing.assert_array_equal(out[:, 2, 2], raw[:, 2, 2])  # Sref taken as 0
    assert not flags[0, 1] & pixel.DO_NOT_USE


def test_inputs_other_than_data_are_not_modified(rng):
    shape = (8, 8)
    smin, smax, sref, coeffs = legendre_model(rng, shape)
    raw = (smin + rng.uniform(-0.2, 1.2, (3, *shape)) * (smax - smin)).astype(
        np.float32
    )
    groupdq = rng.integers(0, 4, raw.shape).astype(np.uint8)
    lin_dq = rng.integers(0, 2, shape).astype(np.uint32) * np.uint32(pixel.HOT)
    before = [a.copy() for a in (groupdq, coeffs, smin, smax, sref, lin_dq)]
    run(raw, coeffs, smin, smax, sref, groupdq=groupdq, lin_dq=lin_dq)
    for a, b in zip(before, (groupdq, coeffs, smin, smax, sref, lin_dq), strict=True):
        np.testing.assert_array_equal(a, b)


def multilin_inputs(rng):
    """A linearity file's arrays and ramps across its whole range (legacy case)."""
    shape = (48, 40)
    smin, smax, sref, coeffs = legendre_model(rng, shape, smax0=60000.0)
    nres = 6
    frac = np.sort(rng.uniform(-0.1, 1.15, (nres, *shape)), axis=0)
    raw = (smin + frac * (smax - smin)).astype(np.float32)
    groupdq = np.zeros(raw.shape, np.uint8)
    groupdq[4:, :5, :] = group.SATURATED
    lin_dq = np.zeros(shape, np.uint32)
    lin_dq[0, :] = pixel.REFERENCE_PIXEL
    lin_dq[5, 5] = pixel.NO_LIN_CORR
    lin_dq[6, 6] = pixel.HOT
    return {
        "raw": raw,
        "gdq": groupdq,
        "coeffs": coeffs,
        "smin": smin,
        "smax": smax,
        "sref": sref,
        "lin_dq": lin_dq,
    }


MULTILIN_SCRIPT = """
import asdf
from romanimpreprocess.utils import ipc_linearity
from roman_datamodels.dqflags import pixel
asdf.AsdfFile({"roman": {"data": inp["coeffs"], "Smin": inp["smin"],
    "Smax": inp["smax"], "Sref": inp["sref"], "dq": inp["lin_dq"]}}).write_to("lin.asdf")
phi, dq = ipc_linearity.multilin(inp["raw"], "lin.asdf",
    do_not_flag_first=bool(inp["first"]), attempt_corr=~inp["gdq"] & pixel.SATURATED)
out["phi"] = phi
out["dq"] = dq
"""


def test_legacy_compat_matches_legacy_multilin_bit_for_bit(rng):
    for first in (True, False):
        case = legacy_case(
            f"linearity_multilin_first{int(first)}",
            MULTILIN_SCRIPT,
            lambda first=first: {**multilin_inputs(rng), "first": first},
        )
        inp, legacy = case.inputs, case.outputs
        assert bool(inp["first"]) is first
        out, flags = run(
            inp["raw"],
            inp["coeffs"],
            inp["smin"],
            inp["smax"],
            inp["sref"],
            groupdq=inp["gdq"],
            lin_dq=inp["lin_dq"],
            do_not_flag_first=first,
            legacy_compat=True,
        )
        assert (flags & NLC).sum() > 10  # the test exercises the flagging
        np.testing.assert_array_equal(out, legacy["phi"])
        np.testing.assert_array_equal(flags, legacy["dq"])


@pytest.mark.parametrize("legacy_compat", [False, True])
def test_row_blocks_give_identical_values(rng, legacy_compat):
    shape = (13, 16)
    smin, smax, sref, coeffs = legendre_model(rng, shape)
    frac = np.sort(rng.uniform(-0.1, 1.2, (5, *shape)), axis=0)
    raw = (smin + frac * (smax - smin)).astype(np.float32)
    groupdq = np.zeros(raw.shape, np.uint8)
    groupdq[3:, 5] = group.SATURATED
    dtype = None if legacy_compat else np.float64
    kwargs = {"groupdq": groupdq, "legacy_compat": legacy_compat, "dtype": dtype}
    whole, flags_whole = run(raw, coeffs, smin, smax, sref, **kwargs)
    blocks, flags_blocks = run(raw, coeffs, smin, smax, sref, block_rows=3, **kwargs)
    assert (flags_whole & NLC).any()
    np.testing.assert_array_equal(blocks, whole)
    np.testing.assert_array_equal(flags_blocks, flags_whole)
