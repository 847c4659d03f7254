"""Pearson-system deviates: parameters against scipy's moments, samplers by Monte Carlo."""

import numpy as np
import pytest
import scipy.stats as st
from scipy.integrate import quad

from romanimpreprocess.noise import pearson

# (β₁, β₂) points inside each region of the Pearson diagram (β₁ = 0.5: gamma line at
# β₂ = 3.75, type V line at β₂ ≈ 3.9611).
REGIONS = {
    1: [(0.5, 2.5), (0.0, 2.2), (2.0, 4.0)],
    6: [(0.5, 3.85), (1.0, 4.8)],
    4: [(0.5, 4.5), (0.0, 5.0), (0.1, 9.0)],
}


def _moments_sample(x, mu):
    """|sample raw moment − target| in units of its standard error, for k = 1..4.

    The deviates have mean exactly 0, so raw moments about 0 are the central moments.
    """
    n = x.size
    z = []
    for k, target in zip((1, 2, 3, 4), mu, strict=True):
        xk = x**k
        z.append(abs(xk.mean() - target) / (xk.std() / np.sqrt(n)))
    return np.array(z)


@pytest.mark.parametrize(
    ("code", "b1", "b2"),
    [(c, b1, b2) for c, pts in REGIONS.items() for b1, b2 in pts],
)
def test_classification_regions(code, b1, b2):
    types = pearson.classify_pearson(np.array([b1]), np.array([b2]))
    assert types[0] == code


def test_classification_boundaries():
    b1 = 0.5
    # Gamma line 2β₂ − 3β₁ − 6 = 0.
    assert pearson.classify_pearson(np.array([b1]), np.array([3 + 1.5 * b1]))[0] == 3
    # Normal distribution.
    assert pearson.classify_pearson(np.array([0.0]), np.array([3.0]))[0] == 7
    # Inverse gamma of shape α has β₁ = 16(α−2)/(α−3)²; its β₂ from scipy.
    alpha = pearson._type5_shape(np.array([b1]))[0]
    skew, kurt = st.invgamma(alpha).stats("sk")
    np.testing.assert_allclose(float(skew) ** 2, b1, rtol=1e-12)
    types = pearson.classify_pearson(np.array([b1]), np.array([3 + float(kurt)]))
    assert types[0] == 5
    # No distribution has β₂ < β₁ + 1.
    assert pearson.classify_pearson(np.array([1.0]), np.array([1.9]))[0] == 2
    assert pearson.classify_pearson(np.array([np.nan]), np.array([3.0]))[0] == 0


@pytest.mark.parametrize(("b1", "b2"), REGIONS[1])
def test_type1_shapes_match_scipy_beta(b1, b2):
    a, b = pearson._type1_shapes(np.array([b1]), np.array([b2]))
    skew, kurt = st.beta(a[0], b[0]).stats("sk")
    np.testing.assert_allclose(float(skew), np.sqrt(b1), atol=1e-10)  # skew ≥ 0
    np.testing.assert_allclose(3 + float(kurt), b2, rtol=1e-10)


@pytest.mark.parametrize(("b1", "b2"), REGIONS[6])
def test_type6_shapes_match_scipy_betaprime(b1, b2):
    p, q = pearson._type6_shapes(np.array([b1]), np.array([b2]))
    skew, kurt = st.betaprime(p[0], q[0]).stats("sk")
    np.testing.assert_allclose(float(skew), np.sqrt(b1), rtol=1e-10)
    np.testing.assert_allclose(3 + float(kurt), b2, rtol=1e-10)


@pytest.mark.parametrize(("b1", "b2"), REGIONS[4])
def test_type4_parameters_by_quadrature(b1, b2):
    """Moments of the Pearson IV density integrated numerically in θ = arctan ξ."""
    mu2 = 2.0
    m, nu, a, lam = (
        v[0] for v in pearson.type4_parameters(np.array([mu2]), [b1], [b2])
    )

    def h(theta):
        return np.cos(theta) ** (2 * m - 2) * np.exp(-nu * theta)

    norm = quad(h, -np.pi / 2, np.pi / 2)[0]
    np.testing.assert_allclose(
        np.log(norm), pearson.type4_log_norm(m, nu), rtol=1e-10
    )  # closed-form normalisation
    moments = [
        quad(lambda t, p=p: (lam + a * np.tan(t)) ** p * h(t), -np.pi / 2, np.pi / 2)[0]
        / norm
        for p in (1, 2, 3, 4)
    ]
    target = [0.0, mu2, np.sqrt(b1 * mu2**3), b2 * mu2**2]
    np.testing.assert_allclose(moments, target, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize(
    ("b1", "b2", "sign"),
    [
        (0.5, 2.5, 1),  # I
        (0.5, 2.5, -1),  # I, negative skew
        (0.0, 2.2, 1),  # II (symmetric beta)
        (0.5, 3.75, 1),  # III
        (0.5, 3.85, -1),  # VI
        (0.3, 6.0, 1),  # IV
        (0.3, 6.0, -1),  # IV, negative skew
        (0.0, 6.0, 1),  # VII (Student t)
        (0.0, 3.0, 1),  # normal
    ],
)
def test_deviates_have_requested_moments(rng, b1, b2, sign):
    n = 400_000
    mu2 = 3.0
    mu3 = sign * np.sqrt(b1 * mu2**3)
    mu4 = b2 * mu2**2
    x, types = pearson.pearson_deviates(
        np.full(n, mu2), np.full(n, mu3), np.full(n, mu4), rng
    )
    assert np.all(types == types[0]) and types[0] not in (0, 2)
    # 5 standard errors of the sample moment (computed from the sample itself).
    assert np.all(_moments_sample(x, [0.0, mu2, mu3, mu4]) < 5.0)


def test_type5_deviates(rng):
    b1 = 0.5
    alpha = pearson._type5_shape(np.array([b1]))[0]
    b2 = 3 + float(st.invgamma(alpha).stats("k"))
    n = 400_000
    x, types = pearson.pearson_deviates(
        np.full(n, 1.0), np.full(n, np.sqrt(b1)), np.full(n, b2), rng
    )
    assert np.all(types == 5)
    assert np.all(_moments_sample(x, [0.0, 1.0, np.sqrt(b1), b2]) < 5.0)


def test_type4_near_normal_and_extreme_skew(rng):
    """Huge m (near-normal, bright pixels) and strong skew stay exact and finite."""
    n = 200_000
    for b1, b2 in [(1e-6, 3.0 + 1e-5), (3.0, 30.0)]:
        mu3 = np.sqrt(b1)
        x, types = pearson.pearson_deviates(
            np.full(n, 1.0), np.full(n, mu3), np.full(n, b2), rng
        )
        assert np.all(types == 4)
        assert np.all(np.isfinite(x))
        z = _moments_sample(x, [0.0, 1.0, mu3, b2])
        assert np.all(z[:3] < 5.0)


def test_mixed_types_in_one_call(rng):
    """Each element gets its own family; the per-element moments hold."""
    n = 200_000
    b1 = np.repeat([0.5, 0.5, 0.5], n)
    b2 = np.repeat([2.5, 3.85, 4.5], n)
    mu2 = np.repeat([1.0, 4.0, 9.0], n)
    mu3 = np.sqrt(b1 * mu2**3)
    x, types = pearson.pearson_deviates(mu2, mu3, b2 * mu2**2, rng)
    for i, code in enumerate((1, 6, 4)):
        part = slice(i * n, (i + 1) * n)
        assert np.all(types[part] == code)
        target = [0.0, mu2[i * n], mu3[i * n], b2[i * n] * mu2[i * n] ** 2]
        assert np.all(_moments_sample(x[part], target) < 5.0)


def test_inadmissible_two_point_and_zero(rng):
    n = 200_000
    mu2, b1 = 2.0, 1.0
    mu3 = -np.sqrt(b1 * mu2**3)
    mu4 = 1.5 * mu2**2  # β₂ = 1.5 < β₁ + 1 = 2: no distribution
    x, types = pearson.pearson_deviates(
        np.full(n, mu2), np.full(n, mu3), np.full(n, mu4), rng
    )
    assert np.all(types == 2)
    assert np.unique(x).size == 2
    # Two-point: mean 0, μ₂ and μ₃ as requested, β₂ = β₁ + 1.
    z = _moments_sample(x, [0.0, mu2, mu3, (b1 + 1) * mu2**2])
    assert np.all(z < 5.0)
    x0, types0 = pearson.pearson_deviates(
        np.full(10, mu2), np.full(10, mu3), np.full(10, mu4), rng, inadmissible="zero"
    )
    assert np.all(x0 == 0) and np.all(types0 == 0)


def test_degenerate_inputs_give_zero(rng):
    mu2 = np.array([0.0, -1.0, np.nan, 1.0])
    mu3 = np.array([0.0, 0.0, 0.0, np.inf])
    x, types = pearson.pearson_deviates(mu2, mu3, np.full(4, 3.0), rng)
    np.testing.assert_array_equal(x, 0.0)
    np.testing.assert_array_equal(types, 0)


def test_reproducible_by_seed():
    args = (np.full(1000, 2.0), np.full(1000, 1.0), np.full(1000, 30.0))
    a, _ = pearson.pearson_deviates(*args, np.random.default_rng(5))
    b, _ = pearson.pearson_deviates(*args, np.random.default_rng(5))
    c, _ = pearson.pearson_deviates(*args, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_bad_option():
    with pytest.raises(ValueError, match="inadmissible"):
        pearson.pearson_deviates(
            [1.0], [0.0], [3.0], np.random.default_rng(0), inadmissible="nan"
        )
