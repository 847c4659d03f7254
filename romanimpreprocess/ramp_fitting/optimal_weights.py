"""Fixed-weight ramp-fit weights and the resultant covariance model (docs/ramp_fit/description.rst).

A resultant ``d_i`` is the mean of ``N_i`` consecutive frames. For a pixel with count
rate ``f`` (DN/s, Poisson variance ``f/gain`` DN²/s) and single-read noise ``sigma``
(DN) the resultant covariance is

    Sigma_ii = sigma²/N_i + (f/gain) tau_i,   Sigma_ij = (f/gain) tbar_min(i,j)

(Casertano et al. 2022), with ``tbar`` the mean read time and ``tau`` the
variance-weighted time of each resultant. The weights are fixed for every pixel: they are
the generalised-least-squares weights for the covariance at one operating point
``u = slope / gain / sigma_read²`` (legacy ``RAMP_OPT_PARS``), in units of the
single-read variance: ``C_ii = 1/N_i + u tau_i``, ``C_ij = u tbar_min(i,j)``.

Every function here works on per-exposure vectors of length ``nresultants`` and returns
float64 (the legacy stores the full-ramp weights as float32; see
`ramp_fit_legacy.legacy_slope_coefficients`).
"""

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "RampOptPars",
    "gls_estimator",
    "gls_estimators",
    "optimal_weights",
    "poisson_covariance",
    "resultant_covariance",
    "segment_weights",
    "slope_variance_coefficients",
    "two_point_weights",
    "uniform_weights",
    "variance_coefficients",
]

# A normal matrix whose condition number exceeds this is treated as singular (the
# parameter is not determined by the usable resultants).
_MAX_CONDITION = 1e12


@dataclass(frozen=True)
class RampOptPars:
    """Operating point of the fixed weights (legacy ``RAMP_OPT_PARS``).

    Attributes
    ----------
    slope : float
        Count rate at which the weights are optimal, DN/s.
    gain : float
        Gain assumed for the weights, e/DN.
    sigma_read : float
        Single-read noise assumed for the weights, DN.
    """

    slope: float = 0.4
    gain: float = 1.8
    sigma_read: float = 6.5

    def __post_init__(self):
        if not (self.slope >= 0 and np.isfinite(self.slope)):
            raise ValueError(f"RAMP_OPT_PARS slope must be >= 0, got {self.slope}")
        if not (self.gain > 0 and np.isfinite(self.gain)):
            raise ValueError(f"RAMP_OPT_PARS gain must be > 0, got {self.gain}")
        if not (self.sigma_read > 0 and np.isfinite(self.sigma_read)):
            raise ValueError(
                f"RAMP_OPT_PARS sigma_read must be > 0, got {self.sigma_read}"
            )

    @property
    def u(self) -> float:
        """``slope / gain / sigma_read²`` (1/s)."""
        return self.slope / self.gain / self.sigma_read**2

    def as_dict(self) -> dict:
        """The legacy ``RAMP_OPT_PARS`` mapping."""
        return {"slope": self.slope, "gain": self.gain, "sigma_read": self.sigma_read}


def poisson_covariance(tbar: NDArray, tau: NDArray) -> NDArray[np.float64]:
    """Poisson part of the resultant covariance per unit variance rate.

    Parameters
    ----------
    tbar, tau : ndarray, shape (n,)
        Mean and variance-weighted read times of the resultants, s (increasing).

    Returns
    -------
    ndarray, shape (n, n), float64
        ``P_ii = tau_i``, ``P_ij = tbar_min(i,j)``; ``Cov(d) = (f/gain) P``.
    """
    tbar = np.asarray(tbar, dtype=np.float64)
    cov = np.minimum.outer(tbar, tbar)
    cov[np.diag_indices_from(cov)] = np.asarray(tau, dtype=np.float64)
    return cov


def resultant_covariance(
    tbar: NDArray, tau: NDArray, n_frames: NDArray, *, u: float
) -> NDArray[np.float64]:
    """Resultant covariance of the weights' operating point, single-read units.

    Parameters
    ----------
    tbar, tau : ndarray, shape (n,)
        Mean and variance-weighted read times, s.
    n_frames : ndarray, shape (n,)
        Frames averaged into each resultant.
    u : float
        ``slope / gain / sigma_read²``, 1/s.

    Returns
    -------
    ndarray, shape (n, n), float64
        ``C = diag(1/N) + u P`` (`poisson_covariance`).
    """
    cov = u * poisson_covariance(tbar, tau)
    cov[np.diag_indices_from(cov)] += 1.0 / np.asarray(n_frames, dtype=np.float64)
    return cov


def optimal_weights(
    tbar: NDArray, tau: NDArray, n_frames: NDArray, *, u: float, start: int = 0
) -> NDArray[np.float64]:
    """Full-ramp slope weights K of the legacy fit (docs/ramp_fit/description.rst).

    With ``W = C⁻¹`` over the resultants ``start..n-1``, ``F0 = 1ᵀW1``,
    ``F1 = 1ᵀW tbar``, ``F2 = tbarᵀW tbar`` and ``D = F0 F2 - F1²``:
    ``K = (F0 W tbar - F1 W 1) / D``, and ``K_i = 0`` for ``i < start``. The slope of a
    ramp ``d`` is ``K·d``; ``ΣK = 0`` and ``ΣK tbar = 1``.

    Parameters
    ----------
    tbar, tau : ndarray, shape (n,)
        Mean and variance-weighted read times, s.
    n_frames : ndarray, shape (n,)
        Frames per resultant.
    u : float
        Operating point ``slope / gain / sigma_read²``, 1/s (0 = read-noise only).
    start : int
        First resultant used (1 when the first resultant is excluded).

    Returns
    -------
    ndarray, shape (n,), float64
        Weights K, 1/s.

    Raises
    ------
    ValueError
        If fewer than two resultants are used.
    """
    tbar = np.asarray(tbar, dtype=np.float64)
    n = tbar.size
    if n - start < 2:
        raise ValueError(
            f"the ramp fit needs at least 2 used resultants; have {n} resultant(s) "
            f"with the first {start} excluded"
        )
    used = slice(start, n)
    t = tbar[used]
    weight = np.linalg.inv(
        resultant_covariance(t, np.asarray(tau)[used], np.asarray(n_frames)[used], u=u)
    )
    ones = np.ones_like(t)
    w1 = weight @ ones
    wt = weight @ t
    f0 = ones @ w1
    f1 = ones @ wt
    f2 = t @ wt
    k = np.zeros(n)
    k[used] = (f0 * wt - f1 * w1) / (f0 * f2 - f1 * f1)
    return k


def uniform_weights(tbar: NDArray, n_frames: NDArray) -> NDArray[np.float64]:
    """Read-noise-only (uniform) slope weights over all resultants.

    The ``u -> 0``, ``start = 0`` limit of `optimal_weights`, equal to romancal's
    uniform weights ``(ΣN·N_i t_i − ΣNt·N_i) / (ΣN·ΣNt² − (ΣNt)²)``; used for the
    ``dumo`` (uniform minus optimal slope) of the likelihood path.

    Parameters
    ----------
    tbar : ndarray, shape (n,)
        Mean read times, s.
    n_frames : ndarray, shape (n,)
        Frames per resultant.

    Returns
    -------
    ndarray, shape (n,), float64
        Weights, 1/s.
    """
    nf = np.asarray(n_frames, dtype=np.float64)
    t = np.asarray(tbar, dtype=np.float64)
    sn, snt, sntt = nf.sum(), (nf * t).sum(), (nf * t * t).sum()
    return (sn * nf * t - snt * nf) / (sn * sntt - snt**2)


def two_point_weights(tbar: NDArray, first: int, last: int) -> NDArray[np.float64]:
    """Two-point slope weights between resultants ``first`` and ``last``.

    The legacy refit of a ramp truncated by saturation (docs/ramp_fit/description.rst):
    ``K_last = 1/(tbar_last - tbar_first) = -K_first``, zero elsewhere.

    Parameters
    ----------
    tbar : ndarray, shape (n,)
        Mean read times, s.
    first, last : int
        Indices of the two resultants, ``first < last``.

    Returns
    -------
    ndarray, shape (n,), float64
        Weights, 1/s.
    """
    tbar = np.asarray(tbar, dtype=np.float64)
    k = np.zeros(tbar.size)
    k[last] = 1.0 / (tbar[last] - tbar[first])
    k[first] = -k[last]
    return k


def gls_estimator(design: NDArray, cov: NDArray, columns) -> NDArray[np.float64] | None:
    """Weights of parameters of a generalised-least-squares fit.

    Parameters
    ----------
    design : ndarray, shape (m, p)
        Design matrix of the model ``d = X beta``.
    cov : ndarray, shape (m, m)
        Covariance of ``d`` (any positive scale).
    columns : int or sequence of int
        Indices of the wanted parameters in ``beta``.

    Returns
    -------
    ndarray, shape (m,) or (len(columns), m), float64, or None
        Rows of ``(XᵀWX)⁻¹ XᵀW`` with ``W = cov⁻¹``; None when the parameters are not
        determined (singular normal matrix).
    """
    est, determined = gls_estimators(design[None], cov, columns)
    return est[0] if determined[0] else None


def gls_estimators(
    design: NDArray, cov: NDArray, columns
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """`gls_estimator` for a stack of models, in a few array operations.

    The jump tests of one usage pattern are tens of small models on the same
    resultants; solving them one call at a time costs far more in call overhead than
    in arithmetic.

    Parameters
    ----------
    design : ndarray, shape (t, m, p)
        Design matrices.
    cov : ndarray, shape (m, m) or (t, m, m)
        Covariance of ``d``, shared by all models or one per model.
    columns : int or sequence of int
        Indices of the wanted parameters in ``beta``.

    Returns
    -------
    est : ndarray, shape (t, m) or (t, len(columns), m), float64
        The weights of each model (zero where not determined).
    determined : ndarray of bool, shape (t,)
        False where the normal matrix is singular.
    """
    weight = np.linalg.inv(cov)
    xtw = np.swapaxes(design, -1, -2) @ weight
    normal = xtw @ design
    with np.errstate(divide="ignore", invalid="ignore"):
        determined = ~(np.linalg.cond(normal) > _MAX_CONDITION)
    est = np.zeros((design.shape[0], *xtw[0, columns].shape))
    if determined.any():
        est[determined] = np.linalg.solve(normal[determined], xtw[determined])[
            :, columns
        ]
    return est, determined


def variance_coefficients(
    weights: NDArray, tbar: NDArray, tau: NDArray, n_frames: NDArray
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """`slope_variance_coefficients` of each row of ``weights`` (shape (t, n)).

    Returns
    -------
    tuple of ndarray, shape (t,), float64
        ``(A, B)``.
    """
    w = np.asarray(weights, dtype=np.float64)
    a = np.einsum("ti,ij,tj->t", w, poisson_covariance(tbar, tau), w)
    b = np.sum(w * w / np.asarray(n_frames, dtype=np.float64), axis=-1)
    return a, b


def _design(labels: NDArray, tbar: NDArray, step_from=None, free_at=None):
    """Design matrix on the usable resultants: segment intercepts, slope, extra column.

    Returns ``(usable indices, X)``. ``step_from`` adds a column equal to 1 for usable
    resultants ``>= step_from`` in the same segment as ``step_from``; ``free_at`` adds
    the indicator of that one resultant (a free offset: the resultant is left out).
    """
    usable = np.flatnonzero(labels >= 0)
    segs = labels[usable]
    ids = np.unique(segs)
    cols = [(segs == g).astype(np.float64) for g in ids]
    cols.append(np.asarray(tbar, dtype=np.float64)[usable])
    if step_from is not None:
        cols.append(((usable >= step_from) & (segs == labels[step_from])).astype(float))
    elif free_at is not None:
        cols.append((usable == free_at).astype(np.float64))
    return usable, np.stack(cols, axis=1)


def segment_weights(
    labels: NDArray,
    tbar: NDArray,
    tau: NDArray,
    n_frames: NDArray,
    *,
    u: float,
    step_from: int | None = None,
    free_at: int | None = None,
) -> NDArray[np.float64] | None:
    """Fixed-weight GLS weights for a ramp split into segments.

    Each segment (a run of resultants separated by jumps) has its own intercept and all
    share one slope; unusable resultants get weight 0. With ``step_from`` the model gets
    an extra step starting at that resultant (within its segment): the jump test. With
    ``free_at`` it gets a free offset of that resultant: the outlier test.

    Parameters
    ----------
    labels : ndarray of int, shape (n,)
        Segment index of each resultant, -1 for resultants not used.
    tbar, tau : ndarray, shape (n,)
        Mean and variance-weighted read times, s.
    n_frames : ndarray, shape (n,)
        Frames per resultant.
    u : float
        Operating point of the weights, 1/s.
    step_from : int or None
        Add a step starting at this resultant.
    free_at : int or None
        Add a free offset of this resultant (ignored with ``step_from``).

    Returns
    -------
    ndarray, float64, or None
        Without an extra column: the slope weights, shape (n,), 1/s. With one: shape
        (2, n), the weights of the extra parameter (step or offset amplitude,
        dimensionless) and the slope weights of that model. None if not determined by
        the usable resultants.
    """
    labels = np.asarray(labels)
    usable, design = _design(labels, tbar, step_from, free_at)
    if usable.size < design.shape[1]:
        return None
    cov = resultant_covariance(
        np.asarray(tbar)[usable],
        np.asarray(tau)[usable],
        np.asarray(n_frames)[usable],
        u=u,
    )
    ncol = design.shape[1]
    # Columns: segment intercepts, slope, [step or offset].
    extra = step_from is not None or free_at is not None
    columns = [ncol - 1, ncol - 2] if extra else ncol - 1
    est = gls_estimator(design, cov, columns)
    if est is None:
        return None
    out = np.zeros((*est.shape[:-1], labels.size))
    out[..., usable] = est
    return out


def slope_variance_coefficients(
    weights: NDArray, tbar: NDArray, tau: NDArray, n_frames: NDArray
) -> tuple[float, float]:
    """Coefficients of the variance of a linear statistic ``w·d``.

    ``Var(w·d) = (f/gain) A + sigma² B`` with ``A = wᵀ P w`` (`poisson_covariance`)
    and ``B = Σ w²/N`` (docs/ramp_fit/description.rst: ``coef = A``, ``sigma_R = sigma sqrt(B)``).

    Parameters
    ----------
    weights : ndarray, shape (n,)
        Weights of the statistic.
    tbar, tau : ndarray, shape (n,)
        Mean and variance-weighted read times, s.
    n_frames : ndarray, shape (n,)
        Frames per resultant.

    Returns
    -------
    tuple of float
        ``(A, B)`` in float64.
    """
    w = np.asarray(weights, dtype=np.float64)
    a = float(w @ poisson_covariance(tbar, tau) @ w)
    b = float(np.sum(w * w / np.asarray(n_frames, dtype=np.float64)))
    return a, b
