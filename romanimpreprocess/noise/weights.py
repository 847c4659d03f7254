"""Ramp-fit weights of the noise layers (docs/noise/index.rst): which weight vector
each pixel's fit used, the coefficient of every frame-to-frame charge increment in
the slope, and the pseudo-Poisson moments of the O layer built from them.

Weights: a pixel whose last unsaturated resultant (``endslice``) is e uses the full
fit weights K if it never saturates, else the two-point weights between the first used
resultant and e (docs/ramp_fit/description.rst); pixels without a usable pair get no
O/P noise.
"""

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "endslice_rows",
    "increment_coefficients",
    "pseudo_poisson_moments",
    "tilde_moments",
    "weight_table",
]


def weight_table(
    weights: NDArray, tbar: NDArray, *, start: int
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Ramp-fit weight vector for each possible last usable resultant.

    Row ``e`` holds the weights applied to a pixel whose last unsaturated resultant
    is ``e``: the full fit weights K for ``e = n − 1``; for ``start < e < n − 1`` the
    two-point slope between resultants ``start`` and ``e``:
    K[e] = 1/(tbar[e] − tbar[start]), K[start] = −K[e] (docs/ramp_fit/description.rst).

    Parameters
    ----------
    weights : ndarray, shape (n,)
        Full-ramp weights K (1/s), 0 for excluded resultants.
    tbar : ndarray, shape (n,)
        Mean read time of each resultant (s).
    start : int
        First resultant used by the fit (1 with EXCLUDE_FIRST, else 0).

    Returns
    -------
    table : ndarray, shape (n, n), float64
        Row e = weight vector; rows without a usable pair are zero.
    valid : ndarray of bool, shape (n,)
        Rows that hold weights (e > start).
    """
    weights = np.asarray(weights, dtype=np.float64)
    tbar = np.asarray(tbar, dtype=np.float64)
    n = weights.size
    if tbar.size != n:
        raise ValueError(f"weights have {n} entries but tbar has {tbar.size}")
    if not 0 <= start < n - 1:
        raise ValueError(f"start {start} leaves no pair of resultants among {n}")
    table = np.zeros((n, n), dtype=np.float64)
    valid = np.zeros(n, dtype=bool)
    table[n - 1] = weights
    valid[n - 1] = True
    for e in range(start + 1, n - 1):
        table[e, e] = 1.0 / (tbar[e] - tbar[start])
        table[e, start] = -table[e, e]
        valid[e] = True
    return table, valid


def endslice_rows(
    endslice: NDArray | None,
    valid: NDArray[np.bool_],
    shape: tuple[int, int],
    *,
    legacy_compat: bool = False,
) -> NDArray[np.int16]:
    """Row of `weight_table` used by each pixel, −1 for no noise.

    Parameters
    ----------
    endslice : ndarray of int, shape (sy, sx), or None
        Last unsaturated resultant, −1 if the pixel never saturates
        (``processinfo.endslice``); None = no pixel saturates.
    valid : ndarray of bool, shape (n,)
        From `weight_table`.
    shape : tuple
        Science-area shape (used when ``endslice`` is None).
    legacy_compat : bool
        Legacy mapping: ``endslice > 0`` selects row ``endslice``, anything else the
        full weights (so a pixel whose last good resultant is 0 counts as
        unsaturated, docs/noise/index.rst, differences from the legacy). Default: ``endslice ≥ 0`` selects its
        row and −1 the full weights.

    Returns
    -------
    ndarray of int16, shape (sy, sx)
    """
    n = valid.size
    if endslice is None:
        return np.full(shape, n - 1, dtype=np.int16)
    endslice = np.asarray(endslice).astype(np.int16)
    if endslice.shape != tuple(shape):
        raise ValueError(f"endslice shape {endslice.shape} differs from {shape}")
    if np.any(endslice >= n) or np.any(endslice < -1):
        raise ValueError(f"endslice values must lie in [-1, {n - 1}]")
    saturated = endslice > 0 if legacy_compat else endslice >= 0
    rows = np.where(saturated, endslice, np.int16(n - 1)).astype(np.int16)
    rows[~valid[rows]] = -1
    return rows


def increment_coefficients(
    table: NDArray[np.float64], read_pattern: Sequence[Sequence[int]]
) -> NDArray[np.float64]:
    """Coefficient of each frame-to-frame charge increment in the fitted slope.

    With L[β, f] = 1/N_β for the frames f of resultant β, the charge n_j collected
    between frames j−1 and j enters resultant β with weight T[β, j] = Σ_{f ≥ j}
    L[β, f], so a slope Σ_β K_β R_β is Σ_j c_j n_j with c = K·T (j ≥ 1; the charge
    before the first frame is common to all resultants and cancels, ΣK = 0).

    Parameters
    ----------
    table : ndarray, shape (nrow, n)
        Weight vectors (`weight_table`), 1/s.
    read_pattern : list of list of int
        Frame indices of each resultant.

    Returns
    -------
    ndarray, shape (nrow, nframes − 1), float64
        c[row, j − 1] for increments j = 1 … last frame, 1/s.
    """
    nframes = max(max(frames) for frames in read_pattern) + 1
    averaging = np.zeros((len(read_pattern), nframes), dtype=np.float64)
    for beta, frames in enumerate(read_pattern):
        averaging[beta, list(frames)] = 1.0 / len(frames)
    tail = np.cumsum(averaging[:, ::-1], axis=1)[:, ::-1]
    return np.asarray(table, dtype=np.float64) @ tail[:, 1:]


def tilde_moments(coefficients: NDArray[np.float64]) -> NDArray[np.float64]:
    """ν̃₂₁, ν̃₃₁, ν̃₄₁ of a linear estimator of Poisson increments.

    With ν_p = Σ_j c_j^p (c dimensionless, the estimate in the units of the Poisson
    mean): ν̃₂₁ = ν₂, ν̃₃₁ = ν₃ − 3ν₂², ν̃₄₁ = ν₄ − 10ν₂ν₃ + 15ν₂³ (the moments of the
    noise evaluated at the *measured* rather than the true intensity; legacy
    ``find_tilnus``, "Noise bias and debiasing in photometric surveys" eq. 32).

    Parameters
    ----------
    coefficients : ndarray, shape (..., nincr)

    Returns
    -------
    ndarray, shape (..., 3)
    """
    c = np.asarray(coefficients, dtype=np.float64)
    nu2 = np.sum(c**2, axis=-1)
    nu3 = np.sum(c**3, axis=-1)
    nu4 = np.sum(c**4, axis=-1)
    return np.stack(
        [nu2, nu3 - 3.0 * nu2**2, nu4 - 10.0 * nu2 * nu3 + 15.0 * nu2**3], axis=-1
    )


def pseudo_poisson_moments(
    coefficients: NDArray[np.float64], frame_time: float, *, legacy_compat: bool = False
) -> NDArray[np.float64]:
    """Per-e/s moment coefficients (A, B, C) of the O layer for each weight row.

    A deviate for a pixel at rate I (e/s) has μ₂ = A·I, μ₃ = B·I, μ₄ = 3μ₂² + C·I
    (e/s units). The tilde moments are defined for an estimate in the units of the
    Poisson mean, i.e. per-frame weights t_fr·c; converting back to e/s gives
    A = ν̃₂₁(t_fr c)/t_fr, B = ν̃₃₁(t_fr c)/t_fr², C = ν̃₄₁(t_fr c)/t_fr³.

    The legacy tool computes the tilde moments from the per-second weights c and
    multiplies by t_fr, t_fr², t_fr³: the same A, but B and C mix units
    (e.g. B = t_fr²ν₃ − 3t_fr²ν₂² instead of t_fr ν₃ − 3t_fr²ν₂²).
    ``legacy_compat=True`` reproduces that.

    Parameters
    ----------
    coefficients : ndarray, shape (nrow, nincr)
        `increment_coefficients` (1/s).
    frame_time : float
        Frame time t_fr (s).
    legacy_compat : bool
        Legacy scaling (see above).

    Returns
    -------
    ndarray, shape (nrow, 3), float64
    """
    c = np.asarray(coefficients, dtype=np.float64)
    if legacy_compat:
        return tilde_moments(c) * np.array([frame_time, frame_time**2, frame_time**3])
    scaled = tilde_moments(c * frame_time)
    return scaled / np.array([frame_time, frame_time**2, frame_time**3])
