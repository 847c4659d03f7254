"""The compiled pass of the default-mode ramp fit gives the numpy path's results."""

import numpy as np
import pytest
from roman_datamodels.dqflags import group

from romanimpreprocess.ramp_fitting import ramp_fit, ramp_fit_kernels
from romanimpreprocess.ramp_fitting.jumps import JumpThresholds
from romanimpreprocess.ramp_fitting.ramp_fit_frame import FrameFit

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
    # long enough for the screening through C⁻¹ d (ramp_fit_kernels.structured_tests)
    "long16": [[0]]
    + [[1 + 2 * i, 2 + 2 * i] for i in range(7)]
    + [[15 + i] for i in range(8)],
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


def test_compiled_pass_over_several_chunks_of_a_row():
    # rows wider than the kernel's chunk of pixels, ending in a partial chunk
    data, groupdq, pixeldq, gain, read_noise, *times = _exposure(
        PATTERNS["long16"], 48, seed=5
    )
    width = ramp_fit_kernels.CHUNK * 2 + 40
    reps = -(-width // 40)

    def wide(a):
        # 40 science columns repeated across the row, the border kept at both ends
        core = np.tile(a[..., 4:44], reps)[..., :width]
        return np.concatenate([a[..., :4], core, a[..., -4:]], axis=-1)

    arrays = (data, groupdq, pixeldq, gain, read_noise)
    inputs = [*(wide(a) for a in arrays), *times]
    ref = ramp_fit.fit_ramps(*inputs, engine="numpy")
    new = ramp_fit.fit_ramps(*inputs, engine="numba", threads=2)
    assert ref.slope.shape[1] == width
    np.testing.assert_allclose(new.slope, ref.slope, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(new.var_rnoise, ref.var_rnoise)
    np.testing.assert_array_equal(new.dq, ref.dq)
    np.testing.assert_array_equal(new.endslice, ref.endslice)
    np.testing.assert_array_equal(new.jumps, ref.jumps)
    assert new.counts == ref.counts
    # the last, partial chunk holds pixels that need more than the full-ramp fit
    tail = (ref.dq[:, 2 * ramp_fit_kernels.CHUNK :] != 0).sum()
    assert tail > 0


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


def _full_plan(pattern, start):
    n = len(pattern)
    tbar = np.array([np.mean(r) * FRAME_TIME for r in pattern])
    n_frames = np.array([len(r) for r in pattern])
    tau = tbar - FRAME_TIME * (n_frames - 1) * (n_frames + 1) / (6 * n_frames)
    planner = ramp_fit._Planner(tbar, tau, n_frames, u=5e-3, start=start)
    return planner, planner.plan(ramp_fit._full_labels(n, start))


def _structure(pattern, start):
    """(planner, full-ramp tests, `structured_tests` of them) for ``pattern``."""
    planner, full = _full_plan(pattern, start)
    tests = full.tests
    structure = ramp_fit_kernels.structured_tests(
        tests.weights,
        tests.flag,
        tests.double,
        planner.tbar,
        planner.tau,
        planner.n_frames,
        u=float(planner.u_value(0)),
        start=start,
    )
    return planner, tests, structure


def test_structured_statistics_equal_the_dot_products(rng):
    # Each test statistic rebuilt from y = C⁻¹ d (the compiled solve) and the four
    # sums must be the test's own weights applied to d, for ramps of any shape.
    pattern = [[0]] + [[1 + 3 * i, 2 + 3 * i, 3 + 3 * i] for i in range(23)]
    planner, tests, structure = _structure(pattern, start=1)
    assert structure is not None
    n = len(pattern)
    for _ in range(5):
        d = rng.normal(0, 10, n) + rng.uniform(0, 50) * planner.tbar
        d[rng.integers(1, n) :] += rng.uniform(-500, 500)  # and a jump
        y = np.zeros(n)
        work = np.zeros((2, n))
        ramp_fit_kernels._inverse_covariance_times(
            d,
            1,
            structure["inv_dprime"],
            structure["lower"],
            structure["inv_diag"],
            structure["upper"],
            work[0],
            work[1],
            y,
        )
        suffix = np.cumsum(y[::-1])[::-1]
        sums = np.column_stack(
            [
                np.full(tests.count, y.sum()),
                np.full(tests.count, planner.tbar @ y),
                suffix[structure["step_at"]],
                y[structure["free_at"]],
            ]
        )
        stats = np.sum(structure["coefs"] * sums, axis=1)
        np.testing.assert_allclose(stats, tests.weights @ d, rtol=1e-9, atol=1e-9)


def test_structured_statistics_refused_without_a_random_walk():
    # start = 0 with the first read at t = 0: the random walk's covariance is
    # singular there, so the dot products are used
    assert _structure(PATTERNS["long16"], start=0)[2] is None


@pytest.mark.parametrize("thresholds", [JumpThresholds(), JumpThresholds(8.0, 6.0)])
def test_structured_screening_marks_the_same_pixels(monkeypatch, thresholds):
    # The screening through C⁻¹ d must pick exactly the pixels the dot products
    # pick (the final results alone would hide a screen that marks too many).
    pattern = PATTERNS["long16"]
    data, groupdq, _, gain, read_noise, *_ = _exposure(pattern, 64, seed=3)
    planner, full = _full_plan(pattern, start=1)
    matrix = np.vstack([full.slope[None, :], full.tests.weights])

    def screen():
        sy = sx = 64 - 2 * ramp_fit.REF_BORDER
        frame = FrameFit(len(pattern), sy, sx)
        inputs = (data, groupdq, gain, read_noise, ramp_fit.REF_BORDER, matrix, 0)
        special = ramp_fit._screen_compiled(
            inputs, full, planner, 1, thresholds, frame, 2
        )
        outputs = (frame.slope, frame.var_poisson, frame.var_rnoise, frame.flags)
        return special, (*outputs, frame.endslice)

    structured, out_s = screen()
    monkeypatch.setattr(ramp_fit_kernels, "structured_tests", lambda *a, **k: None)
    dense, out_d = screen()
    np.testing.assert_array_equal(structured, dense)
    assert 0 < structured.size < 0.5 * 56 * 56  # the tests decide, not the flags
    for a, b in zip(out_s, out_d, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("engine", ["numba", "numpy"])
def test_rows_of_a_larger_cube_fit_as_the_cube_of_those_rows(engine):
    data, groupdq, pixeldq, gain, read_noise, *times = _exposure(
        PATTERNS["uneven8"], 48, seed=11
    )
    n, ny, nx = data.shape
    # rows around the frame that must not be read: NaN data, saturated flags
    padded = np.full((n, ny + 8, nx), np.nan, np.float32)
    padded_dq = np.full((n, ny + 8, nx), group.SATURATED, np.uint8)
    padded[:, 5 : 5 + ny] = data
    padded_dq[:, 5 : 5 + ny] = groupdq
    frame = (pixeldq, gain, read_noise, *times)
    ref = ramp_fit.fit_ramps(data, groupdq, *frame, engine=engine)
    new = ramp_fit.fit_ramps(
        padded, padded_dq, *frame, engine=engine, rows=slice(5, 5 + ny)
    )
    np.testing.assert_array_equal(new.slope, ref.slope)
    np.testing.assert_array_equal(new.var_poisson, ref.var_poisson)
    np.testing.assert_array_equal(new.dq, ref.dq)
    np.testing.assert_array_equal(new.jumps, ref.jumps)
    assert new.counts == ref.counts
    assert ref.counts["jump"] > 0
