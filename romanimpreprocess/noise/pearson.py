"""Zero-mean random deviates of the Pearson system with given moments.

The pseudo-Poisson ("O") noise layer (docs/noise/index.rst) needs, for every pixel, a
deviate with a prescribed variance, third and fourth central moment. The Pearson
system covers every admissible (β₁, β₂) pair with one of a few classical families;
which one is decided by Pearson's criterion

.. math::

    \\kappa = \\frac{\\beta_1 (\\beta_2 + 3)^2}
                   {4 (4\\beta_2 - 3\\beta_1)(2\\beta_2 - 3\\beta_1 - 6)} ,

with β₁ = μ₃²/μ₂³ and β₂ = μ₄/μ₂²:

========================  ==============  ==========================================
region                    Pearson type    drawn as
========================  ==============  ==========================================
2β₂ − 3β₁ − 6 < 0          I              scaled, shifted Beta(α, β)
2β₂ − 3β₁ − 6 = 0          III            scaled, shifted Gamma(k) (normal if β₁ = 0)
κ > 1                      VI             scaled, shifted beta-prime G_p / G_q
κ = 1                      V              scaled, shifted inverse Gamma(α)
0 ≤ κ < 1                  IV (VII)       exact rejection sampler in θ = arctan ξ
========================  ==============  ==========================================

Every distribution is parametrised here from the moment equations of its family
(derived in the docstrings); the tests check the resulting parameters against
`scipy.stats` moments and the samplers by Monte Carlo.

Moments with β₂ < β₁ + 1 belong to no distribution. The legacy tool returns 0 for
such pixels; by default we draw the two-point distribution that matches μ₂ and μ₃
(it has the smallest possible kurtosis, β₂ = β₁ + 1).
"""

import numpy as np
from numpy.typing import NDArray
from scipy.special import loggamma

__all__ = [
    "PEARSON_TYPES",
    "classify_pearson",
    "pearson_deviates",
    "type4_log_norm",
    "type4_parameters",
]

# Codes returned by `classify_pearson` (0 = no deviate: zero variance or non-finite).
PEARSON_TYPES = {
    0: "none",
    1: "I (beta)",
    2: "two-point (inadmissible moments)",
    3: "III (gamma)",
    4: "IV",
    5: "V (inverse gamma)",
    6: "VI (beta prime)",
    7: "normal",
}


def classify_pearson(
    beta1: NDArray[np.float64],
    beta2: NDArray[np.float64],
    *,
    tol: float = 1e-9,
) -> NDArray[np.int8]:
    """Pearson type of each (β₁, β₂) pair.

    Parameters
    ----------
    beta1, beta2 : ndarray
        Squared skewness μ₃²/μ₂³ and kurtosis μ₄/μ₂² (same shape).
    tol : float
        Relative width of the bands treated as the boundary types III and V.

    Returns
    -------
    ndarray of int8
        Codes of `PEARSON_TYPES`: 2 where β₂ < β₁ + 1 (no distribution), 0 where a
        value is not finite.
    """
    beta1 = np.asarray(beta1, dtype=np.float64)
    beta2 = np.asarray(beta2, dtype=np.float64)
    types = np.zeros(np.broadcast(beta1, beta2).shape, dtype=np.int8)
    finite = np.isfinite(beta1) & np.isfinite(beta2) & (beta1 >= 0)
    scale = 1.0 + np.abs(beta2)
    with np.errstate(invalid="ignore", divide="ignore"):
        g = 2.0 * beta2 - 3.0 * beta1 - 6.0
        inadmissible = finite & (beta2 - beta1 - 1.0 < tol * scale)
        ok = finite & ~inadmissible
        on_gamma_line = ok & (np.abs(g) <= tol * scale)
        kappa = beta1 * (beta2 + 3.0) ** 2 / (4.0 * (4.0 * beta2 - 3.0 * beta1) * g)
    types[inadmissible] = 2
    types[ok & (g < 0) & ~on_gamma_line] = 1
    types[on_gamma_line & (beta1 > tol)] = 3
    types[on_gamma_line & (beta1 <= tol)] = 7
    upper = ok & (g > 0) & ~on_gamma_line
    types[upper & (np.abs(kappa - 1.0) <= tol)] = 5
    types[upper & (kappa > 1.0 + tol)] = 6
    types[upper & (kappa < 1.0 - tol)] = 4
    return types


def pearson_deviates(
    mu2: NDArray[np.float64],
    mu3: NDArray[np.float64],
    mu4: NDArray[np.float64],
    rng: np.random.Generator,
    *,
    inadmissible: str = "two-point",
    tol: float = 1e-9,
) -> tuple[NDArray[np.float64], NDArray[np.int8]]:
    """Draw one zero-mean deviate per element with central moments μ₂, μ₃, μ₄.

    Parameters
    ----------
    mu2, mu3, mu4 : ndarray
        Variance, third and fourth central moments (same shape). Elements with
        μ₂ ≤ 0 or a non-finite moment get 0.
    rng : numpy.random.Generator
        Source of randomness (consumed in a fixed order: reproducible by seed).
    inadmissible : {"two-point", "zero"}
        What to draw where β₂ < β₁ + 1: the two-point distribution matching μ₂, μ₃
        (default) or 0 (legacy behaviour).
    tol : float
        Relative band for the boundary types III and V (see `classify_pearson`).

    Returns
    -------
    deviates : ndarray of float64
        Same shape as the inputs.
    types : ndarray of int8
        Pearson type used per element (`PEARSON_TYPES`).
    """
    if inadmissible not in ("two-point", "zero"):
        raise ValueError(
            f"inadmissible must be 'two-point' or 'zero', got {inadmissible!r}"
        )
    mu2, mu3, mu4 = np.broadcast_arrays(
        *(np.asarray(m, dtype=np.float64) for m in (mu2, mu3, mu4))
    )
    shape = mu2.shape
    mu2, mu3, mu4 = (m.ravel() for m in (mu2, mu3, mu4))
    good = np.isfinite(mu2) & np.isfinite(mu3) & np.isfinite(mu4) & (mu2 > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        beta1 = np.where(good, mu3**2 / mu2**3, np.nan)
        beta2 = np.where(good, mu4 / mu2**2, np.nan)
    types = classify_pearson(beta1, beta2, tol=tol)
    sign = np.where(mu3 < 0, -1.0, 1.0)
    out = np.zeros(mu2.size, dtype=np.float64)

    for code, draw in (
        (1, _draw_type1),
        (3, _draw_type3),
        (4, _draw_type4),
        (5, _draw_type5),
        (6, _draw_type6),
        (7, _draw_normal),
    ):
        sel = np.flatnonzero(types == code)
        if sel.size:
            out[sel] = sign[sel] * draw(mu2[sel], beta1[sel], beta2[sel], rng)
    sel = np.flatnonzero(types == 2)
    if sel.size:
        if inadmissible == "two-point":
            out[sel] = sign[sel] * _draw_two_point(mu2[sel], beta1[sel], rng)
        else:
            types[sel] = 0
    return out.reshape(shape), types.reshape(shape)


# --------------------------------------------------------------------------- types
# Every drawer returns deviates with variance mu2, skewness +sqrt(beta1) (>= 0) and
# kurtosis beta2; the caller multiplies by the sign of mu3.


def _draw_normal(mu2, beta1, beta2, rng):
    return np.sqrt(mu2) * rng.standard_normal(mu2.size)


def _draw_two_point(mu2, beta1, rng):
    """Two values x₋ < 0 < x₊ with P(x₊) = p and skewness s = √β₁.

    Standardised: x₊ = √((1−p)/p), x₋ = −√(p/(1−p)); skewness (1−2p)/√(p(1−p)) = s
    gives p = (1 − s/√(s²+4))/2.
    """
    s = np.sqrt(beta1)
    p = 0.5 * (1.0 - s / np.sqrt(s * s + 4.0))
    upper = rng.random(mu2.size) < p
    x = np.where(upper, np.sqrt((1.0 - p) / p), -np.sqrt(p / (1.0 - p)))
    return np.sqrt(mu2) * x


def _type1_shapes(beta1, beta2):
    """Beta(α, β) shapes (α ≤ β, i.e. skewness ≥ 0) with the given β₁, β₂.

    With u = α + β and v = (α − β)²/(αβ) the Beta moments are
    β₁ = 4v(u+1)/(u+2)² and β₂ − 3 = 6[v(u+1) − (u+2)]/((u+2)(u+3)). Eliminating v:
    u = 3(β₁ − β₂ + 1)/(β₂ − 3 − 3β₁/2); then αβ = u²/(4+v) and
    α, β = u/2 · (1 ∓ √(v/(v+4))).
    """
    u = 3.0 * (beta1 - beta2 + 1.0) / (beta2 - 3.0 - 1.5 * beta1)
    v = beta1 * (u + 2.0) ** 2 / (4.0 * (u + 1.0))
    s = np.sqrt(v / (v + 4.0))
    return 0.5 * u * (1.0 - s), 0.5 * u * (1.0 + s)


def _draw_type1(mu2, beta1, beta2, rng):
    a, b = _type1_shapes(beta1, beta2)
    u = a + b
    var = a * b / (u * u * (u + 1.0))
    y = rng.beta(a, b)
    return np.sqrt(mu2 / var) * (y - a / u)


def _draw_type3(mu2, beta1, beta2, rng):
    """Gamma(k): skewness 2/√k, so k = 4/β₁; variance k."""
    k = 4.0 / beta1
    return np.sqrt(mu2 / k) * (rng.gamma(k) - k)


def _type5_shape(beta1):
    """Inverse-gamma shape α from β₁ = 16(α−2)/(α−3)² (root with α > 4)."""
    return (3.0 * beta1 + 8.0 + 4.0 * np.sqrt(4.0 + beta1)) / beta1


def _draw_type5(mu2, beta1, beta2, rng):
    """1/Gamma(α): mean 1/(α−1), variance 1/((α−1)²(α−2))."""
    alpha = _type5_shape(beta1)
    y = 1.0 / rng.gamma(alpha)
    scale = np.sqrt(mu2 * (alpha - 2.0)) * (alpha - 1.0)
    return scale * (y - 1.0 / (alpha - 1.0))


def _type6_shapes(beta1, beta2):
    """Beta-prime (p, q) shapes with the given β₁, β₂ (q > 4).

    With w = p(p+q−1) and z = (q−1)²/w the beta-prime moments are
    β₁ = 4(q−2)(4+z)/(q−3)² and β₂ − 3 = 6[(5q−11) + (q−2)z]/((q−3)(q−4)).
    Eliminating z: q = (8β₂ − 12 − 9β₁)/(2β₂ − 6 − 3β₁); then
    z = β₁(q−3)²/(4(q−2)) − 4 (> 0 exactly when κ > 1), w = (q−1)²/z and p is the
    positive root of p² + (q−1)p − w = 0.
    """
    q = (8.0 * beta2 - 12.0 - 9.0 * beta1) / (2.0 * beta2 - 6.0 - 3.0 * beta1)
    z = beta1 * (q - 3.0) ** 2 / (4.0 * (q - 2.0)) - 4.0
    w = (q - 1.0) ** 2 / z
    p = 0.5 * (np.sqrt((q - 1.0) ** 2 + 4.0 * w) - (q - 1.0))
    return p, q


def _draw_type6(mu2, beta1, beta2, rng):
    p, q = _type6_shapes(beta1, beta2)
    mean = p / (q - 1.0)
    var = p * (p + q - 1.0) / ((q - 2.0) * (q - 1.0) ** 2)
    y = rng.gamma(p) / rng.gamma(q)
    return np.sqrt(mu2 / var) * (y - mean)


def type4_parameters(
    mu2: NDArray[np.float64], beta1: NDArray[np.float64], beta2: NDArray[np.float64]
) -> tuple[NDArray, NDArray, NDArray, NDArray]:
    """Pearson IV parameters (m, ν, a, λ) for zero mean and skewness +√β₁.

    Density ∝ (1 + ξ²)^(−m) exp(−ν arctan ξ) with ξ = (x − λ)/a (Pearson 1895;
    Heinrich 2004, "A guide to the Pearson type IV distribution"):
    r = 6(β₂ − β₁ − 1)/(2β₂ − 3β₁ − 6), m = (r + 2)/2,
    ν = −r(r − 2)√β₁ / √(16(r − 1) − β₁(r − 2)²) (ν < 0 for positive skewness),
    a = √(μ₂ (16(r − 1) − β₁(r − 2)²))/4, and the mean λ − aν/(2(m − 1)) is set to 0.

    Returns
    -------
    m, nu, a, lam : ndarray
    """
    mu2, beta1, beta2 = (np.asarray(v, dtype=np.float64) for v in (mu2, beta1, beta2))
    r = 6.0 * (beta2 - beta1 - 1.0) / (2.0 * beta2 - 3.0 * beta1 - 6.0)
    d = 16.0 * (r - 1.0) - beta1 * (r - 2.0) ** 2
    m = 0.5 * (r + 2.0)
    nu = -r * (r - 2.0) * np.sqrt(beta1) / np.sqrt(d)
    a = np.sqrt(mu2 * d) / 4.0
    lam = a * nu / (2.0 * (m - 1.0))
    return m, nu, a, lam


def type4_log_norm(m: NDArray[np.float64], nu: NDArray[np.float64]) -> NDArray:
    """log ∫_{−π/2}^{π/2} cos^(2m−2)θ · exp(−νθ) dθ.

    Closed form ``π Γ(2m − 1) / (2^(2m−2) |Γ(m + iν/2)|²)`` (Heinrich 2004, eq. 4 in θ).
    """
    m = np.asarray(m, dtype=np.float64)
    nu = np.asarray(nu, dtype=np.float64)
    return (
        np.log(np.pi)
        + loggamma(2.0 * m - 1.0).real
        - (2.0 * m - 2.0) * np.log(2.0)
        - 2.0 * loggamma(m + 0.5j * nu).real
    )


def _log_cos(theta):
    # log cos θ = −½ log(1 + tan²θ): accurate for the tiny θ of near-normal cases.
    return -0.5 * np.log1p(np.tan(theta) ** 2)


def _draw_type4(mu2, beta1, beta2, rng):
    """Pearson IV by Devroye's (1984) rejection method for log-concave densities.

    In θ = arctan ξ the density h(θ) ∝ cos^(2m−2)θ · e^(−νθ) on (−π/2, π/2) is
    log-concave (m > 1) with mode θ_M = arctan(−ν/(2m−2)). With c = h(θ_M) (exact,
    from `type4_log_norm`), y = c(θ − θ_M) has a log-concave density with mode 0 and
    value 1 there, dominated by min(1, e^(1−|y|)) of area 4: on average 4 proposals
    per deviate, exact for any m, ν. Vectorised: rejected elements are redrawn.
    """
    m, nu, a, lam = type4_parameters(mu2, beta1, beta2)
    b = 2.0 * m - 2.0
    theta_m = np.arctan2(-nu, b)
    log_h_mode = b * _log_cos(theta_m) - nu * theta_m
    log_c = log_h_mode - type4_log_norm(m, nu)
    inv_c = np.exp(-log_c)
    theta = np.empty(mu2.size, dtype=np.float64)
    todo = np.arange(mu2.size)
    while todo.size:
        n = todo.size
        side = np.where(rng.random(n) < 0.5, -1.0, 1.0)
        tail = rng.random(n) < 0.5
        e = rng.standard_exponential(n)
        flat = rng.random(n)
        y = np.where(tail, 1.0 + e, flat)
        log_env = np.where(tail, -e, 0.0)
        th = theta_m[todo] + side * y * inv_c[todo]
        log_v = np.log(rng.random(n))
        inside = np.abs(th) < 0.5 * np.pi
        th_safe = np.where(inside, th, 0.0)
        log_f = b[todo] * (_log_cos(th_safe) - _log_cos(theta_m[todo])) - nu[todo] * (
            th_safe - theta_m[todo]
        )
        accept = inside & (log_v + log_env <= log_f)
        theta[todo[accept]] = th[accept]
        todo = todo[~accept]
    return lam + a * np.tan(theta)
