"""Jump tests on arrays: thresholds, statistics, significance on simulated ramps."""

import math

import numpy as np
import pytest

from romanimpreprocess.ramp_fitting.jumps import (
    JumpThresholds,
    false_jump_probability,
    jump_threshold,
    step_tests,
)
from romanimpreprocess.ramp_fitting.optimal_weights import (
    RampOptPars,
    optimal_weights,
    segment_weights,
)
from romanimpreprocess.ramp_fitting.ramp_fit_legacy import legacy_tests
from tests.ramp_fitting.ramps import GAIN, SIGMA_READ, SURVEY_PATTERN, simulate, times

U_TEST = RampOptPars(0.4, 1.8, 7.0).u


def test_threshold_interpolation():
    thr = JumpThresholds()  # 5.5 at <= 1 DN/s, 4.5 at >= 1000 DN/s, log-linear between
    s = np.array([-5.0, 0.0, 0.5, 1.0, np.sqrt(1000.0), 1000.0, 1e6])
    np.testing.assert_allclose(
        jump_threshold(s, thr), [5.5, 5.5, 5.5, 5.5, 5.0, 4.5, 4.5], rtol=1e-12
    )
    custom = JumpThresholds(10.0, 4.5, 0.6, 600.0)  # the legacy test configuration
    x = (np.log(6.0) - np.log(0.6)) / np.log(1000.0)
    np.testing.assert_allclose(jump_threshold(np.array([6.0]), custom), 10 - 5.5 * x)


def test_threshold_validation():
    JumpThresholds().check()
    with pytest.raises(ValueError, match="ithresh"):
        JumpThresholds(ithresh_a=5.0, ithresh_b=5.0).check()
    with pytest.raises(ValueError, match="ithresh"):
        JumpThresholds(ithresh_a=0.0).check()
    # legacy behaviour of equal ends: NaN thresholds (never fire)
    assert np.isnan(jump_threshold(np.array([3.0]), JumpThresholds(1, 1, 2.0, 2.0)))


def test_false_jump_probability():
    assert false_jump_probability(0.0, two_sided=False) == pytest.approx(0.5)
    assert false_jump_probability(5.5, two_sided=False) == pytest.approx(
        0.5 * math.erfc(5.5 / math.sqrt(2))
    )
    assert false_jump_probability(3.0, two_sided=True) == pytest.approx(0.0026998, 1e-4)


def test_legacy_test_layout():
    # docs/ramp_fit/description.rst: 2(T − start) − 3 tests; only single differences with three
    # used resultants; the flag goes on the earlier resultant.
    tbar, tau, n = times(SURVEY_PATTERN, 3.04)
    k = optimal_weights(tbar, tau, n, u=U_TEST, start=1)
    tests = legacy_tests(k, tbar, tau, n, start=1, stop=6)
    assert tests.count == 2 * 5 - 3
    pairs = [(1, 2), (1, 3), (2, 3), (2, 4), (3, 4), (3, 5), (4, 5)]
    for w, flag, (i, j) in zip(tests.weights, tests.flag, pairs, strict=True):
        expected = -k.copy()
        expected[j] += 1 / (tbar[j] - tbar[i])
        expected[i] -= 1 / (tbar[j] - tbar[i])
        np.testing.assert_allclose(w, expected, rtol=1e-12, atol=1e-15)
        assert flag == i
    three = legacy_tests(k, tbar, tau, n, start=1, stop=4)
    assert three.count == 2 and not three.double.any()


def test_legacy_variance_formula(rng):
    # the jump-test variance (docs/ramp_fit/description.rst, Jumps): Var δ = Σ w²(dvardt τ + σ²/N) + 2 ΣΣ_{b<a} w_a w_b dvardt tbar_b
    tbar, tau, n = times(SURVEY_PATTERN, 3.04)
    k = optimal_weights(tbar, tau, n, u=U_TEST, start=1)
    tests = legacy_tests(k, tbar, tau, n, start=1, stop=6)
    dvardt, sigma = 3.3, 7.0
    for w, a, b in zip(tests.weights, tests.poisson, tests.read, strict=True):
        brute = 0.0
        for i in range(6):
            brute += w[i] ** 2 * (dvardt * tau[i] + sigma**2 / n[i])
            for j in range(i):
                brute += 2 * w[i] * w[j] * dvardt * tbar[j]
        np.testing.assert_allclose(dvardt * a + sigma**2 * b, brute, rtol=1e-12)


def _each_test(tests):
    """(weights, flag, double, labels_after, slopes, outlier) of every step test."""
    return zip(
        tests.weights,
        tests.flag,
        tests.double,
        tests.labels_after,
        tests.slopes,
        tests.outlier,
        strict=True,
    )


def test_step_tests_are_ramp_invariant_and_unit_response():
    tbar, tau, n = times(SURVEY_PATTERN, 3.04)
    labels = np.array([-1, 0, 0, 0, 0, 0], np.int8)
    tests = step_tests(labels, tbar, tau, n, u=U_TEST)
    # 4 single differences of 5 used resultants; 3 double differences (dropping each
    # resultant with a used one on each side)
    assert tests.count == 4 + 3
    np.testing.assert_array_equal(tests.flag, [2, 3, 4, 5, 2, 3, 4])
    res = np.arange(6)
    for w, flag, double, after, slope, outlier in _each_test(tests):
        np.testing.assert_allclose(w @ np.ones(6), 0, atol=1e-10)
        np.testing.assert_allclose(w @ tbar, 0, atol=1e-9)
        assert w[0] == 0
        # a jump appearing at the flagged resultant (single) or after the dropped one
        first_after = flag if not double else flag + 1
        step = (res >= first_after).astype(float)
        np.testing.assert_allclose(w @ step, 1.0, rtol=1e-9)
        # the slope of the model with the step ignores the step
        np.testing.assert_allclose(slope @ (tbar + 40 * step), 1.0, rtol=1e-9)
        if double:
            # the middle resultant is not used, so its value does not matter
            assert w[flag] == 0 and after[flag] == -1
            # the outlier statistic measures an offset of the dropped resultant
            np.testing.assert_allclose(outlier @ (res == flag), 1.0, rtol=1e-9)
            np.testing.assert_allclose(outlier @ (3 + 2 * tbar), 0, atol=1e-8)
        else:
            assert not outlier.any()
        assert after[first_after] == after[-1] == 1 and after[1] == 0
    # three used resultants: single differences only (as the legacy)
    tests = step_tests(np.array([-1, 0, 0, 0, -1, -1], np.int8), tbar, tau, n, u=U_TEST)
    assert tests.count == 2 and not tests.double.any()
    # two used resultants: nothing to test
    tests = step_tests(np.array([-1, 0, 0, -1, -1, -1], np.int8), tbar, tau, n, u=0.01)
    assert tests.count == 0


@pytest.mark.parametrize("flux", [2.0, 50.0])
def test_significance_is_unit_normal(rng, flux):
    # the jump-test variance (docs/ramp_fit/description.rst, Jumps): on ramps simulated from the model (Poisson per frame +
    # Gaussian read noise) every test statistic has std 1 ± 0.02 with the variance
    # model, and its tail beyond 3 sigma matches the normal tail (binomial 5 sigma).
    npix = 100_000
    tbar, tau, n = times(SURVEY_PATTERN)
    d = simulate(np.full(npix, flux), rng)
    k = optimal_weights(tbar, tau, n, u=U_TEST, start=1)
    dvardt = np.maximum(k @ d, 0) / GAIN
    p3 = 2 * 0.5 * math.erfc(3 / math.sqrt(2))
    families = {
        "legacy": legacy_tests(k, tbar, tau, n, start=1, stop=6),
        "step": step_tests(np.array([-1, 0, 0, 0, 0, 0]), tbar, tau, n, u=U_TEST),
    }
    for tests in families.values():
        for w, a, b in zip(tests.weights, tests.poisson, tests.read, strict=True):
            z = (w @ d) / np.sqrt(dvardt * a + SIGMA_READ**2 * b)
            assert abs(np.std(z) - 1) < 0.02
            assert abs(np.mean(z)) < 5 / np.sqrt(npix)
            tail = np.mean(np.abs(z) > 3)
            assert abs(tail - p3) < 5 * np.sqrt(p3 / npix)


@pytest.mark.parametrize(
    "labels",
    [
        [-1] + [0] * 23,
        [-1, 0, 0, 0, -1, 1, 1, 1, 1, 1, 2, 2, 2, 2, -1, -1, 3, 3, 3, 3, 3, 4, -1, -1],
        [-1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, -1] + [-1] * 12,
    ],
)
def test_step_tests_match_one_model_at_a_time(labels):
    # The tests are solved as stacks of models; each one must be the GLS fit of its
    # own model (segment_weights, one call per model) and the remedy's labels the
    # segments written out by hand.
    labels = np.array(labels, np.int8)
    tbar, tau, n = times([[i] for i in range(labels.size)], 3.04)
    tests = step_tests(labels, tbar, tau, n, u=U_TEST)
    assert tests.count > 0
    for w, flag, double, after, slope, outlier in _each_test(tests):
        model = labels.copy()
        first_new = flag
        if double:
            model[flag] = -1
            first_new = np.flatnonzero(
                (labels == labels[flag]) & (np.arange(24) > flag)
            )[0]
            free = segment_weights(labels, tbar, tau, n, u=U_TEST, free_at=int(flag))
            np.testing.assert_allclose(outlier, free[0], rtol=1e-8, atol=1e-12)
        one = segment_weights(model, tbar, tau, n, u=U_TEST, step_from=int(first_new))
        np.testing.assert_allclose(w, one[0], rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(slope, one[1], rtol=1e-8, atol=1e-12)
        # remedy: the segment splits at first_new, later segments are renumbered
        expect, next_label, previous = np.full(24, -1), -1, None
        for i in range(24):
            if model[i] < 0:
                continue
            key = (model[i], i >= first_new and model[i] == labels[first_new])
            if key != previous:
                next_label, previous = next_label + 1, key
            expect[i] = next_label
        np.testing.assert_array_equal(after, expect)


def test_step_tests_reject_segments_that_are_not_runs():
    tbar, tau, n = times(SURVEY_PATTERN, 3.04)
    with pytest.raises(ValueError, match="not runs"):
        step_tests(np.array([-1, 0, 1, 0, 0, 0], np.int8), tbar, tau, n, u=U_TEST)
