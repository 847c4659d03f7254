"""The likelihood path (stcal): parity with romancal's ``likely``, agreement, options."""

import copy
from types import SimpleNamespace

import numpy as np
import pytest
from roman_datamodels.dqflags import group, pixel

from romanimpreprocess.datamodels import raw_to_ramp
from romanimpreprocess.ramp_fitting import likely, ramp_fit
from romanimpreprocess.ramp_fitting.optimal_weights import RampOptPars
from tests.conftest import make_raw_model
from tests.ramp_fitting.ramps import (
    FRAME_TIME,
    GAIN,
    SIGMA_READ,
    SURVEY_PATTERN,
    simulate,
    times,
    to_cube,
)

SIZE = 48  # full frame incl. the border; science area 40 x 40
SCI = SIZE - 8
PATTERN4 = [[0], [1, 2, 3], [4, 5, 6, 7], [8, 9]]


def make_ramp(rng, flux, pattern=SURVEY_PATTERN, **kwargs):
    raw = make_raw_model(size=SIZE, read_pattern=pattern, frame_time=FRAME_TIME)
    ramp = raw_to_ramp(raw)
    ramp.data = to_cube(simulate(flux, rng, read_pattern=pattern, **kwargs), (SCI, SCI))
    ramp.groupdq[0] |= group.DO_NOT_USE
    return ramp


def refs():
    return np.full((SIZE, SIZE), GAIN), np.full((SIZE, SIZE), SIGMA_READ, np.float32)


def run(ramp, **kwargs):
    gain, rn = refs()
    return likely.fit_likely(
        ramp.data,
        ramp.groupdq,
        ramp.pixeldq,
        gain,
        rn,
        ramp.meta.exposure.read_pattern,
        ramp.meta.exposure.frame_time,
        **kwargs,
    )


def test_matches_romancal_likely(rng):
    # Same stcal call as romancal 1.1.0's ``likely`` (which mutates its input and
    # returns float16 errors): identical slopes and flags, errors to float16.
    from romancal.ramp_fitting.ramp_fit_step import likely as romancal_likely

    flux = rng.uniform(0, 200, SCI * SCI)
    ramp = make_ramp(rng, flux)
    ramp.data[3:, 20, 20] += 400.0  # a jump
    ramp.groupdq[4:, 30, 30] |= group.SATURATED
    before = ramp.data.copy(), ramp.groupdq.copy(), ramp.pixeldq.copy()
    ours = run(ramp, rejection_threshold=4.5)
    for a, b in zip((ramp.data, ramp.groupdq, ramp.pixeldq), before, strict=True):
        np.testing.assert_array_equal(a, b)  # input untouched
    gain, rn = refs()
    theirs = romancal_likely(
        copy.deepcopy(ramp),
        SimpleNamespace(data=rn),
        SimpleNamespace(data=gain),
        rejection_threshold=4.5,
    )
    np.testing.assert_array_equal(ours.slope, theirs.data)
    np.testing.assert_array_equal(ours.dq, theirs.dq)
    np.testing.assert_array_equal(ours.err.astype(np.float16), theirs.err)
    np.testing.assert_array_equal(
        ours.var_poisson.astype(np.float16), theirs.var_poisson
    )
    np.testing.assert_allclose(
        ours.dumo, theirs.dumo.astype(np.float32), rtol=1e-3, atol=1e-3
    )
    assert ours.dq[16, 16] & pixel.JUMP_DET
    assert [3, 16, 16] in ours.jumps.tolist()
    assert ours.slope.dtype == ours.err.dtype == np.float32


@pytest.mark.parametrize("pattern", [SURVEY_PATTERN, PATTERN4])
def test_agrees_with_optimal_on_clean_ramps(rng, pattern):
    # Both fits are unbiased with correct errors; their difference is well inside
    # the uncertainties: |mean| < 0.05 err and the spread of (likely - optimal)/err
    # is a fraction of 1 (both use the same data).
    fluxes = np.repeat([0.5, 5.0, 50.0, 500.0], SCI * SCI // 4)
    ramp = make_ramp(rng, fluxes, pattern=pattern)
    lk = run(ramp)
    gain, rn = refs()
    tbar, tau, n = times(pattern)
    opt = ramp_fit.fit_ramps(
        ramp.data,
        ramp.groupdq,
        ramp.pixeldq,
        gain,
        rn,
        tbar,
        tau,
        n,
        opt=RampOptPars(0.4, 1.8, 7.0),
        start=1,
    )
    err = np.sqrt(opt.var_poisson + opt.var_rnoise).ravel()
    diff = (lk.slope.ravel() - opt.slope.ravel()) / err
    assert abs(np.mean(diff)) < 0.05
    assert np.std(diff) < 0.5
    assert np.all(np.abs(diff) < 5)
    np.testing.assert_allclose(np.median(lk.err), np.median(err), rtol=0.1)
    for f in np.unique(fluxes):
        sel = fluxes == f
        for s, e in ((lk.slope.ravel(), lk.err.ravel()), (opt.slope.ravel(), err)):
            z = (s[sel] - f) / e[sel]
            assert abs(np.mean(z)) < 5 / np.sqrt(sel.sum())
            assert 0.85 < np.std(z) < 1.15


def test_needs_four_resultants(rng):
    ramp = make_ramp(rng, np.full(SCI * SCI, 1.0), pattern=[[0], [1, 2], [3, 4]])
    with pytest.raises(ValueError, match="at least 4 resultants.*optimal"):
        run(ramp)


def test_rejection_threshold_is_honoured(rng):
    # romancal 1.1.0's RampFitStep never passes it to `likely` (so its default 4.5
    # always applies); we pass it through.
    ramp = make_ramp(rng, np.full(SCI * SCI, 2.0))
    ramp.data[3:, 10:20, 10:20] += 60.0  # ~8 sigma jumps
    low = run(ramp, rejection_threshold=4.5)
    high = run(ramp, rejection_threshold=99.0)
    block = (slice(6, 16), slice(6, 16))
    assert np.mean(low.dq[block] & pixel.JUMP_DET != 0) > 0.9
    assert not np.any(high.dq & pixel.JUMP_DET)


def test_snowball_option_runs(rng):
    # expand_large_events works on whole frames (one stcal call incl. the border).
    ramp = make_ramp(rng, np.full(SCI * SCI, 2.0))
    ramp.data[3:, 18:23, 18:23] += 3000.0
    ramp.groupdq[3:, 20, 20] |= group.SATURATED
    plain = run(ramp)
    snow = run(ramp, jump_kw={"expand_large_events": True, "min_jump_area": 1})
    assert np.count_nonzero(snow.dq & pixel.JUMP_DET) > np.count_nonzero(
        plain.dq & pixel.JUMP_DET
    )
    np.testing.assert_allclose(snow.slope[0:5, 0:5], plain.slope[0:5, 0:5])


def test_block_rows_do_not_matter(rng, monkeypatch):
    ramp = make_ramp(rng, rng.uniform(0, 100, SCI * SCI))
    ramp.data[3:, ::5, ::7] += 500.0
    ref = run(ramp)
    monkeypatch.setattr(likely, "BLOCK_ROWS", 7)
    small = run(ramp)
    for key in ("slope", "dq", "err", "chisq", "dumo"):
        np.testing.assert_array_equal(getattr(small, key), getattr(ref, key))
    np.testing.assert_array_equal(
        np.unique(small.jumps, axis=0), np.unique(ref.jumps, axis=0)
    )


def test_parse_jump_kw():
    assert likely.parse_jump_kw("") == likely.JUMP_KW_DEFAULTS
    assert likely.parse_jump_kw(None) == likely.JUMP_KW_DEFAULTS
    parsed = likely.parse_jump_kw("{expand_large_events: true, min_jump_area: 8}")
    assert parsed["expand_large_events"] is True and parsed["min_jump_area"] == 8.0
    parsed = likely.parse_jump_kw('{"sat_expand": 3, "maximum_cores": 2}')
    assert parsed["sat_expand"] == 3 and parsed["maximum_cores"] == "2"
    assert likely.parse_jump_kw({"edge_size": 4})["edge_size"] == 4
    with pytest.raises(ValueError, match="unknown key"):
        likely.parse_jump_kw("{snowballs: true}")
    with pytest.raises(ValueError, match="expand_large_events must be bool"):
        likely.parse_jump_kw("{expand_large_events: 3}")
    with pytest.raises(ValueError, match="sat_expand must be int"):
        likely.parse_jump_kw({"sat_expand": 2.5})
    with pytest.raises(ValueError, match="mapping"):
        likely.parse_jump_kw("[1, 2]")


def test_start_excludes_first_resultant(rng):
    # exclude_first without dq_init's flag: start=1 flags resultant 0 in the copy
    ramp = make_ramp(rng, rng.uniform(0, 50, SCI * SCI))
    flagged = run(ramp)
    ramp.groupdq[0] &= ~np.uint8(group.DO_NOT_USE)
    np.testing.assert_array_equal(run(ramp, start=1).slope, flagged.slope)
    ramp.data[0] += 500.0  # biases the fit if used
    # (stcal lets a DO_NOT_USE resultant move the fit at the 1e-5 level)
    np.testing.assert_allclose(run(ramp, start=1).slope, flagged.slope, atol=2e-3)
    # without start, resultant 0 is used: its offset shows up as jumps
    assert run(ramp).jumps.shape[0] > SCI * SCI / 2
    assert run(ramp, start=1).jumps.shape[0] == flagged.jumps.shape[0]
