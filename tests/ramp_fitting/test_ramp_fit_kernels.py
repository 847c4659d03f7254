"""The compiled pass of the default-mode ramp fit gives the numpy path's results."""

import numpy as np
import pytest
from roman_datamodels.dqflags import group

from romanimpreprocess.ramp_fitting import ramp_fit
from romanimpreprocess.ramp_fitting.jumps import JumpThresholds

PATTERNS = {
    "survey6": [
        [0],
        [1, 2, 3],
        [4, 5, 6, 7, 8],
        [9, 10, 11, 12, 13],
        [14, 15, 16],
        [17],
    ],
    "uneven8": [[0], [1], [2, 3], [4, 5, 6], [7, 8, 9, 10], [11], [12, 13], [14]],
}
FRAME_TIME = 3.04


def _exposure(pattern, size, seed):
    rng = np.random.default_rng(seed)
    n = len(pattern)
    tbar = np.array([np.mean(r) * FRAME_TIME for r in pattern])
    n_frames = np.array([len(r) for r in pattern])
    tau = tbar - FRAME_TIME * (n_frames - 1) * (n_frames + 1) / (6 * n_frames)
    ny = nx = size
    rate = rng.lognormal(0.5, 2.0, (ny, nx))
    noise = rng.normal(0, 7.0, (n, ny, nx)) / np.sqrt(n_frames)[:, None, None]
    data = (rate[None] * tbar[:, None, None] + noise).astype(np.float32)
    # jumps of every size at random resultants, both signs
    jy, jx = rng.integers(4, size - 4, (2, 300))
    for y, x in zip(jy, jx, strict=True):
        data[rng.integers(1, n) :, y, x] += rng.choice([-1, 1]) * rng.uniform(5, 3000)
    groupdq = np.zeros((n, ny, nx), np.uint8)
    sy, sx = rng.integers(4, size - 4, (2, 200))
    for y, x in zip(sy, sx, strict=True):
        groupdq[rng.integers(1, n) :, y, x] |= np.uint8(group.SATURATED)
    dy, dx = rng.integers(4, size - 4, (2, 100))
    groupdq[rng.integers(0, n, 100), dy, dx] |= np.uint8(group.DO_NOT_USE)
    groupdq[rng.integers(0, n, 100), dx, dy] |= np.uint8(group.JUMP_DET)
    groupdq[rng.integers(0, n, 100), dy, dy] |= np.uint8(group.AD_FLOOR)
    data[rng.integers(0, n, 20), rng.integers(4, size - 4, 20), dx[:20]] = np.nan
    pixeldq = np.zeros((ny, nx), np.uint32)
    gain = rng.uniform(1.5, 2.2, (ny, nx))
    gain[5, 5] = np.nan
    gain[6, 6] = -1.0
    read_noise = rng.uniform(5, 9, (ny, nx)).astype(np.float32)
    return data, groupdq, pixeldq, gain, read_noise, tbar, tau, n_frames


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
@pytest.mark.parametrize("start", [0, 1])
@pytest.mark.parametrize(
    "thresholds",
    [
        JumpThresholds(),
        JumpThresholds(sthresh_a=3.0, sthresh_b=1.5, ithresh_a=0.5, ithresh_b=50.0),
    ],
    ids=["default", "low"],
)
def test_compiled_pass_equals_numpy(pattern, start, thresholds):
    inputs = _exposure(PATTERNS[pattern], 96, seed=len(pattern) + start)
    results = {
        engine: ramp_fit.fit_ramps(
            *inputs, start=start, thresholds=thresholds, engine=engine, threads=2
        )
        for engine in ("numpy", "numba")
    }
    ref, new = results["numpy"], results["numba"]
    # slopes agree to the float64 summation order, then float32 rounding
    np.testing.assert_allclose(new.slope, ref.slope, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(new.var_poisson, ref.var_poisson, rtol=1e-6)
    np.testing.assert_array_equal(new.var_rnoise, ref.var_rnoise)
    np.testing.assert_array_equal(new.dq, ref.dq)
    np.testing.assert_array_equal(new.endslice, ref.endslice)
    np.testing.assert_array_equal(new.jumps, ref.jumps)
    assert new.counts == ref.counts
    # the exposure exercises the special paths and the jump flags
    assert ref.counts["jump"] > 50
    assert ref.counts["two_point"] + ref.counts["segments"] > 50
    assert np.isnan(ref.slope).any()


def test_compiled_pass_does_not_depend_on_threads():
    inputs = _exposure(PATTERNS["survey6"], 64, seed=9)
    one = ramp_fit.fit_ramps(*inputs, engine="numba", threads=1)
    two = ramp_fit.fit_ramps(*inputs, engine="numba", threads=2)
    np.testing.assert_array_equal(one.slope, two.slope)
    np.testing.assert_array_equal(one.dq, two.dq)


def test_unknown_engine_is_refused():
    inputs = _exposure(PATTERNS["survey6"], 16, seed=1)
    with pytest.raises(ValueError, match="engine"):
        ramp_fit.fit_ramps(*inputs, engine="gpu")
