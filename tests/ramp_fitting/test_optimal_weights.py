"""Fixed weights and error model: golden numbers, identities.

The golden numbers are the resultant times, weights and error-model coefficients of
docs/ramp_fit/description.rst evaluated for the survey's read patterns."""

import numpy as np
import pytest

from romanimpreprocess.ramp_fitting.optimal_weights import (
    RampOptPars,
    gls_estimators,
    optimal_weights,
    poisson_covariance,
    segment_weights,
    slope_variance_coefficients,
    two_point_weights,
    uniform_weights,
)
from romanimpreprocess.ramp_fitting.ramp_fit_legacy import legacy_slope_coefficients
from tests.ramp_fitting.ramps import SURVEY_PATTERN, times

U_DEFAULT = 5.259698e-3  # RAMP_OPT_PARS defaults 0.4 / 1.8 / 6.5
U_TEST = 4.535147e-3  # 0.4 / 1.8 / 7.0 (legacy test configuration)
SECOND_PATTERN = [[0], [1], [2, 3], list(range(4, 10)), list(range(10, 16))]
SECOND_PATTERN += [list(range(16, 24)), list(range(24, 34)), [34]]


def random_pattern(rng, nres):
    """Contiguous groups of 1..6 frames starting at frame 0."""
    sizes = rng.integers(1, 7, nres)
    edges = np.concatenate([[0], np.cumsum(sizes)])
    return [list(range(edges[i], edges[i + 1])) for i in range(nres)]


def test_times_golden():
    # the resultant times written out (docs/ramp_fit/description.rst, Resultant times)
    tbar, tau, n = times(SURVEY_PATTERN, 3.04)
    np.testing.assert_allclose(tbar, [0, 4.56, 12.16, 24.32, 34.96, 39.52], rtol=1e-6)
    np.testing.assert_allclose(
        tau, [0, 3.8, 10.808889, 21.888, 34.2, 39.52], rtol=1e-6, atol=1e-9
    )
    np.testing.assert_array_equal(n, [1, 2, 3, 5, 2, 1])


def test_opt_pars_u():
    assert RampOptPars().u == pytest.approx(U_DEFAULT, rel=1e-6)
    assert RampOptPars(0.4, 1.8, 7.0).u == pytest.approx(U_TEST, rel=1e-6)
    with pytest.raises(ValueError, match="gain"):
        RampOptPars(gain=0.0)
    with pytest.raises(ValueError, match="sigma_read"):
        RampOptPars(sigma_read=-1.0)


@pytest.mark.parametrize(
    ("u", "start", "golden"),
    [  # golden numbers of the weights (docs/ramp_fit/description.rst, The optimal fit), tolerance 1e-6 absolute
        (U_DEFAULT, 1, [0, -0.0216453, -0.0169305, 0.0092658, 0.0173463, 0.0119638]),
        (U_DEFAULT, 0, [-0.0102461, -0.0151551, -0.0109561, 0.0108625, 0.0152181,
                        0.0102766]),
        (U_TEST, 1, [0, -0.0216134, -0.0170097, 0.0093278, 0.0173699, 0.0119254]),
        (U_TEST, 0, [-0.0102084, -0.0151794, -0.0110291, 0.0109472, 0.0152345,
                     0.0102353]),
    ],
)  # fmt: skip
def test_golden_weights(u, start, golden):
    tbar, tau, n = times(SURVEY_PATTERN, 3.04)
    k = optimal_weights(tbar, tau, n, u=u, start=start)
    np.testing.assert_allclose(k, golden, atol=1e-6, rtol=0)


def test_golden_weights_second_pattern():
    tbar, tau, n = times(SECOND_PATTERN, 3.04)
    k = optimal_weights(tbar, tau, n, u=U_DEFAULT, start=1)
    golden = [0, -0.0021381, -0.0035325, -0.0062785, -0.0022908, 0.0009657,
              0.0110526, 0.0022215]  # fmt: skip
    np.testing.assert_allclose(k, golden, atol=1e-6, rtol=0)


def test_test_workflow_weights_bit_identical():
    # golden numbers of the weights (docs/ramp_fit/description.rst, The optimal fit): frame time 3.16247 s, u = 4.535147e-3, start = 1; the float32
    # K of the legacy test workflow's processinfo, its coef and sqrt(ΣK²/N), and the
    # two-point weights its log shows for T = 5 and T = 4.
    tbar, tau, n = times(SURVEY_PATTERN, 3.16247)
    tbar32, tau32 = tbar.astype(np.float32), tau.astype(np.float32)
    k = optimal_weights(tbar32, tau32, n, u=RampOptPars(0.4, 1.8, 7.0).u, start=1)
    k32 = k.astype(np.float32)
    golden = np.array(
        [0, -0.02078412, -0.01633177, 0.00895149, 0.01669153, 0.01147287], np.float32
    )
    np.testing.assert_allclose(k32, golden, rtol=0, atol=5e-9)
    coef, factor = legacy_slope_coefficients(k32, tbar32, tau32, n, start=1, stop=6)
    np.testing.assert_allclose(coef, 2.910663e-2, rtol=2e-7)
    np.testing.assert_allclose(factor, 2.432806e-2, rtol=2e-7)
    for stop, golden_k in ((5, 0.03162086), (4, 0.04864746)):
        kt = two_point_weights(tbar32, 1, stop - 1).astype(np.float32)
        # the log prints 8 decimals
        np.testing.assert_allclose(kt[stop - 1], golden_k, rtol=0, atol=1e-8)
        assert kt[1] == -kt[stop - 1]


def test_uniform_limit():
    # golden numbers of the weights (docs/ramp_fit/description.rst, The optimal fit): u -> 0, start = 0 is romancal's uniform weighting
    tbar, tau, n = times(SURVEY_PATTERN, 3.04)
    golden = [-0.0099681, -0.0153355, -0.0115017, 0.0115017, 0.0153355, 0.0099681]
    np.testing.assert_allclose(uniform_weights(tbar, n), golden, atol=1e-7)
    np.testing.assert_allclose(
        optimal_weights(tbar, tau, n, u=0.0, start=0),
        uniform_weights(tbar, n),
        rtol=0,
        atol=1e-9,
    )
    # romancal's formula on mean frame times, written out independently
    t = np.array([np.mean(r) for r in SURVEY_PATTERN]) * 3.04
    big_n, nt, ntt = n.sum(), (n * t).sum(), (n * t * t).sum()
    romancal = (big_n * n * t - nt * n) / (big_n * ntt - nt**2)
    np.testing.assert_allclose(uniform_weights(tbar, n), romancal, rtol=1e-12)


@pytest.mark.parametrize("start", [0, 1])
def test_identities_random_patterns(rng, start):
    for _ in range(20):
        nres = int(rng.integers(3, 12))
        tbar, tau, n = times(random_pattern(rng, nres), rng.uniform(1, 5))
        u = float(rng.choice([0.0, rng.uniform(0, 0.1)]))
        k = optimal_weights(tbar, tau, n, u=u, start=start)
        k32 = k.astype(np.float32).astype(np.float64)
        assert abs(k32.sum()) < 1e-6
        assert abs(k32 @ tbar - 1) < 1e-6
        assert np.all(k[:start] == 0)


def test_needs_two_used_resultants():
    tbar, tau, n = times([[0], [1]], 3.04)
    with pytest.raises(ValueError, match="at least 2"):
        optimal_weights(tbar, tau, n, u=U_DEFAULT, start=1)


@pytest.mark.parametrize(
    ("u", "start", "coef", "factor"),
    [  # golden numbers of the error model (docs/ramp_fit/description.rst, The optimal fit)
        (U_TEST, 1, 3.028290e-2, 2.530782e-2),
        (U_DEFAULT, 1, 3.026842e-2, 2.530922e-2),
        (U_DEFAULT, 0, 2.805371e-2, 2.246854e-2),
    ],
)
def test_error_model_golden(u, start, coef, factor):
    tbar, tau, n = times(SURVEY_PATTERN, 3.04)
    k = optimal_weights(tbar, tau, n, u=u, start=start)
    a, b = slope_variance_coefficients(k, tbar, tau, n)
    np.testing.assert_allclose(a, coef, rtol=2e-6)
    np.testing.assert_allclose(np.sqrt(b), factor, rtol=2e-6)


def test_error_model_is_quadratic_form(rng):
    # σ_R² + σ_P² = Kᵀ Σ K with Σ_ii = σ²/N_i + f tau_i, Σ_ij = f tbar_min(i,j)
    tbar, tau, n = times(SURVEY_PATTERN, 3.04)
    for _ in range(5):
        w = rng.normal(size=tbar.size)
        f, sigma = rng.uniform(0, 100), rng.uniform(1, 20)
        sig = np.empty((6, 6))
        for i in range(6):
            for j in range(6):
                sig[i, j] = f * tbar[min(i, j)]
            sig[i, i] = sigma**2 / n[i] + f * tau[i]
        a, b = slope_variance_coefficients(w, tbar, tau, n)
        np.testing.assert_allclose(f * a + sigma**2 * b, w @ sig @ w, rtol=1e-12)


def test_cds_sanity():
    # two single-frame resultants Δt apart: K = (−1, 1)/Δt, σ_R = √2 σ/Δt, σ_P² = f/Δt
    tbar, tau, n = times([[2], [5]], 3.0)
    dt = 9.0
    k = optimal_weights(tbar, tau, n, u=U_DEFAULT, start=0)
    np.testing.assert_allclose(k, [-1 / dt, 1 / dt], rtol=1e-12)
    a, b = slope_variance_coefficients(k, tbar, tau, n)
    np.testing.assert_allclose(np.sqrt(b), np.sqrt(2) / dt, rtol=1e-12)
    np.testing.assert_allclose(a, 1 / dt, rtol=1e-12)


def test_legacy_coefficients_match_float64():
    tbar, tau, n = times(SURVEY_PATTERN, 3.04)
    k = optimal_weights(tbar, tau, n, u=U_TEST, start=1)
    coef, factor = legacy_slope_coefficients(
        k.astype(np.float32), tbar, tau, n, start=1, stop=6
    )
    a, b = slope_variance_coefficients(k, tbar, tau, n)
    np.testing.assert_allclose([coef, factor], [a, np.sqrt(b)], rtol=1e-6)


def test_poisson_covariance_matches_frames():
    # P is the covariance of frame means of a unit-rate Poisson process
    tbar, tau, _ = times(SURVEY_PATTERN, 1.0)
    p = poisson_covariance(tbar, tau)
    frames = [np.array(r, float) for r in SURVEY_PATTERN]
    brute = np.array(
        [[np.mean(np.minimum.outer(a, b)) for b in frames] for a in frames]
    )
    np.testing.assert_allclose(p, brute, rtol=1e-12, atol=1e-12)


def test_segment_weights_one_segment_is_optimal():
    tbar, tau, n = times(SURVEY_PATTERN, 3.04)
    labels = np.array([-1, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(
        segment_weights(labels, tbar, tau, n, u=U_TEST),
        optimal_weights(tbar, tau, n, u=U_TEST, start=1),
        rtol=1e-10,
        atol=1e-14,
    )


def test_segment_weights_ignore_segment_offsets(rng):
    # A ramp with a different intercept per segment has the common slope exactly.
    tbar, tau, n = times(SURVEY_PATTERN, 3.04)
    labels = np.array([-1, 0, 0, 1, 1, 1])
    k = segment_weights(labels, tbar, tau, n, u=U_TEST)
    d = 1234.0 + 2.5 * tbar + np.where(labels == 1, 777.0, 0.0)
    d[0] = 1e9  # not used
    np.testing.assert_allclose(k @ d, 2.5, rtol=1e-12)
    # a gap (unused resultant in the middle)
    labels = np.array([-1, 0, -1, 0, 0, 0])
    k = segment_weights(labels, tbar, tau, n, u=U_TEST)
    d = 50 + 0.3 * tbar
    d[2] = -1e6
    np.testing.assert_allclose(k @ d, 0.3, rtol=1e-12)


def test_segment_weights_undetermined():
    tbar, tau, n = times(SURVEY_PATTERN, 3.04)
    # every segment has a single resultant: no slope
    assert (
        segment_weights(np.array([-1, 0, 1, 2, -1, -1]), tbar, tau, n, u=0.01) is None
    )
    assert segment_weights(np.array([-1, -1, -1, 0, -1, -1]), tbar, tau, n, u=0) is None


def test_step_weights_measure_the_step():
    tbar, tau, n = times(SURVEY_PATTERN, 3.04)
    labels = np.array([-1, 0, 0, 0, 0, 0])
    step, slope = segment_weights(labels, tbar, tau, n, u=U_TEST, step_from=3)
    d = 100 + 3.0 * tbar + np.where(np.arange(6) >= 3, 55.0, 0.0)
    np.testing.assert_allclose(step @ d, 55.0, rtol=1e-10)
    np.testing.assert_allclose(slope @ d, 3.0, rtol=1e-10)


@pytest.mark.parametrize("shared", [True, False])
def test_gls_estimators_match_whitened_least_squares(rng, shared):
    # Each model of the stack against the textbook GLS: whiten with the Cholesky
    # factor of the covariance and take the pseudo-inverse of the whitened design.
    t, m, p = 6, 9, 3
    design = rng.normal(size=(t, m, p))
    design[-1, :, 2] = design[-1, :, 0]  # a singular model: two equal columns
    a = rng.normal(size=(1 if shared else t, m, m))
    cov = a @ np.swapaxes(a, 1, 2) + m * np.eye(m)
    est, determined = gls_estimators(design, cov[0] if shared else cov, [2, 0])
    np.testing.assert_array_equal(determined, [True] * (t - 1) + [False])
    assert not est[-1].any()
    for i in range(t - 1):
        chol = np.linalg.cholesky(cov[0 if shared else i])
        white = np.linalg.solve(chol, design[i])
        brute = np.linalg.pinv(white) @ np.linalg.inv(chol)
        np.testing.assert_allclose(est[i], brute[[2, 0]], rtol=1e-9, atol=1e-12)
