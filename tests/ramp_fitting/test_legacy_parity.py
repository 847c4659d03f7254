"""legacy_compat=True against the legacy ``utils.fitting.ramp_fit`` (romanimpreprocess
1.0.0), through its stored goldens (tests/linearity/legacy.py): runs in every
``make test``; ``bench/make_legacy_goldens.py`` remakes them."""

import numpy as np
from roman_datamodels.dqflags import group, pixel

from romanimpreprocess.ramp_fitting import ramp_fit
from romanimpreprocess.ramp_fitting.optimal_weights import RampOptPars
from tests.linearity.legacy import legacy_case
from tests.ramp_fitting.ramps import SURVEY_PATTERN, simulate, times, to_cube

SIDE = 96  # science area; frame SIDE + 8
B = 4

LEGACY_SCRIPT = """
import asdf
from romanimpreprocess.utils.fitting import construct_weights, ramp_fit
asdf.AsdfFile({"roman": {"data": inp["gain"]}}).write_to("gain.asdf")
asdf.AsdfFile({"roman": {"data": inp["read"]}}).write_to("read.asdf")
meta = {"ngrp": int(inp["ngrp"]), "N": inp["N"], "tbar": inp["tbar"],
        "tau": inp["tau"], "nborder": 4}
exclude_first = bool(inp["exclude_first"])
meta["K"] = construct_weights(float(inp["u"]), meta, exclude_first=exclude_first)
rdq, pdq, log = inp["rdq"].copy(), inp["pdq"].copy(), []
slope, err_read, err_poisson = ramp_fit(
    inp["data"], rdq, pdq, meta, {"gain": "gain.asdf", "read": "read.asdf"}, log,
    exclude_first=exclude_first)
out.update(slope=slope, err_read=err_read, err_poisson=err_poisson, rdq=rdq, pdq=pdq,
           K=meta["K"])
"""


def scene(rng, start):
    """Ramps with faint and bright pixels, saturation, jumps and flagged groups."""
    npix = SIDE * SIDE
    flux = rng.choice([0.0, 0.5, 3.0, 30.0, 300.0, 3000.0], npix)
    jump = np.where(rng.random(npix) < 0.05, rng.uniform(-300, 600, npix), 0.0)
    d = simulate(
        flux, rng, bias=2000.0, jump=jump, jump_frame=rng.integers(1, 14, npix)
    )
    n = d.shape[0]
    gdq = np.zeros(d.shape, np.uint8)
    gdq[np.maximum.accumulate(d >= 60000.0, axis=0)] |= group.SATURATED
    # some A/D floor, dropout and WFI18 flags (the legacy passes them on as bits)
    for flag, frac in (
        (group.AD_FLOOR | group.DO_NOT_USE, 0.01),
        (group.DROPOUT, 0.01),
    ):
        hit = rng.random((n, npix)) < frac
        gdq[hit] |= flag
    gdq[0, : npix // 50] |= group.WFI18_TRANSIENT | group.DO_NOT_USE
    if start:
        gdq[0] |= group.DO_NOT_USE
    cube = to_cube(d, (SIDE, SIDE), border=B, fill=2000.0)
    groupdq = np.zeros(cube.shape, np.uint8)
    groupdq[:, B:-B, B:-B] = gdq.reshape(n, SIDE, SIDE)
    pdq = np.zeros(cube.shape[1:], np.uint32)
    pdq[:B] = pdq[-B:] = pixel.REFERENCE_PIXEL
    pdq[B + 5, B + 5] = pixel.REFERENCE_PIXEL  # a science pixel marked as reference
    return cube, groupdq, pdq


def make_case(rng, start):
    """Inputs of one legacy run: the scene, the calibration and the weights' pars."""
    cube, groupdq, pdq = scene(rng, start)
    ny, nx = cube.shape[1:]
    tbar, tau, n = times(SURVEY_PATTERN)
    return {
        "data": cube,
        "rdq": groupdq,
        "pdq": pdq,
        "gain": rng.uniform(1.4, 1.6, (ny, nx)),  # float64, as the PIT files
        "read": rng.uniform(6.0, 11.0, (ny, nx)).astype(np.float32),
        "ngrp": len(tbar),
        "N": n.astype(np.int16),
        "tbar": tbar.astype(np.float32),
        "tau": tau.astype(np.float32),
        "u": OPT.u,
        "exclude_first": bool(start),
    }


OPT = RampOptPars(0.4, 1.8, 7.0)


def test_legacy_compat_matches_legacy(rng):
    for start in (1, 0):
        case = legacy_case(
            f"ramp_fit_start{start}",
            LEGACY_SCRIPT,
            lambda start=start: make_case(rng, start),
        )
        legacy, inp = case.outputs, case.inputs
        cube, groupdq, pdq = inp["data"], inp["rdq"], inp["pdq"]
        gain, read = inp["gain"], inp["read"]
        tbar, tau, n = times(SURVEY_PATTERN)
        # the stored run used this read pattern's timing
        np.testing.assert_array_equal(inp["tbar"], tbar.astype(np.float32))
        np.testing.assert_array_equal(inp["N"], n.astype(np.int16))
        opt = OPT
        ours = ramp_fit.fit_ramps(
            cube, groupdq, pdq, gain, read, tbar, tau, n,
            opt=opt, start=start, legacy=True,
        )  # fmt: skip
        sci = (slice(B, -B), slice(B, -B))
        np.testing.assert_array_equal(ours.weights, legacy["K"])
        # slopes: the legacy sums K_t (d_t - d_1) in float32, we sum in float64 and
        # round once: allow a few float32 roundings of every term
        d = cube[:, B:-B, B:-B].astype(np.float64)
        k = np.abs(legacy["K"].astype(np.float64))
        terms = np.einsum("t,tij->ij", k, np.abs(d) + np.abs(d[1]))
        slope_tol = 4 * np.finfo(np.float32).eps * terms
        assert np.all(np.abs(ours.slope - legacy["slope"][sci]) <= slope_tol)
        np.testing.assert_allclose(
            np.sqrt(ours.var_rnoise), legacy["err_read"][sci], rtol=1e-7
        )
        # σ_P² = coef max(s, 0)/gain: the slope tolerance times coef/gain, + rounding
        vp_legacy = legacy["err_poisson"][sci].astype(np.float64) ** 2
        coef_over_gain = 0.031 / gain[sci]
        assert np.all(
            np.abs(ours.var_poisson - vp_legacy)
            <= coef_over_gain * slope_tol + 1e-6 * vp_legacy + 1e-12
        )
        # flags: identical except threshold-boundary pixels (none seen here; a float32
        # rounding can flip a comparison on a handful of pixels of a full frame)
        assert np.count_nonzero(ours.dq != legacy["pdq"][sci]) <= 2
        jumps = np.zeros(groupdq[:, B:-B, B:-B].shape, bool)
        jumps[tuple(ours.jumps.T)] = True
        legacy_jumps = (legacy["rdq"][:, B:-B, B:-B] & group.JUMP_DET) != 0
        assert np.count_nonzero(jumps != legacy_jumps) <= 2
        assert legacy_jumps.sum() > 100  # the scene has jumps to find
        np.testing.assert_array_equal(
            ours.endslice, ramp_fit.end_slices(groupdq[:, B:-B, B:-B])
        )
