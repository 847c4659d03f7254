"""Jump detection on single and double resultant differences (algorithms.md §10).

Every test is a linear statistic ``w·d`` of a pixel's resultants whose expectation is
zero for a straight ramp; its variance is ``(f/gain) A + sigma² B`` with the
coefficients of `optimal_weights.slope_variance_coefficients`, so its significance is
``z = w·d / sqrt(dvardt A + sigma_read² B)`` with ``dvardt = max(slope, 0)/gain``. A
test fires when ``z`` exceeds a threshold that is interpolated in log slope between
``SthreshA`` (at slopes <= ``IthreshA``) and ``SthreshB`` (at slopes >= ``IthreshB``).

Two families of tests are built here:

* `legacy_tests` -- the legacy statistic: the slope of the pair ``(i, i+di)`` minus
  the fitted slope, ``w = (e_{i+di} - e_i)/Δ - K``; one-sided; flags the earlier
  resultant ``i``.
* `step_tests` -- the default: the amplitude of a step between two consecutive used
  resultants (single difference) or across one dropped resultant (double difference),
  fitted together with the ramp (fixed-weight GLS; the likelihood-ratio test of a jump
  there). Two-sided; flags the resultant where the jump appears.
"""

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from romanimpreprocess.ramp_fitting.optimal_weights import (
    segment_weights,
    slope_variance_coefficients,
)

__all__ = [
    "DOUBLE_MIN_SIDE",
    "JumpTests",
    "JumpThresholds",
    "empty_tests",
    "false_jump_probability",
    "jump_threshold",
    "legacy_tests",
    "step_tests",
]

# A test whose read-noise coefficient is below this (relative to a single pair of
# reads) has no power: its statistic vanishes identically (e.g. two usable resultants).
_MIN_READ_COEF = 1e-10
# Used resultants required on each side of the resultant a double difference drops.
DOUBLE_MIN_SIDE = 2


@dataclass(frozen=True)
class JumpThresholds:
    """Legacy ``JUMP_DETECT_PARS``: significance thresholds vs slope.

    Attributes
    ----------
    sthresh_a : float
        Threshold (sigma) at slopes <= ``ithresh_a``.
    sthresh_b : float
        Threshold (sigma) at slopes >= ``ithresh_b``.
    ithresh_a, ithresh_b : float
        Ends of the log-slope interpolation, DN/s.
    """

    sthresh_a: float = 5.5
    sthresh_b: float = 4.5
    ithresh_a: float = 1.0
    ithresh_b: float = 1000.0

    def check(self):
        """Raise ValueError unless ``0 < ithresh_a < ithresh_b`` and thresholds > 0.

        (The legacy code accepts anything and gets NaN thresholds -- hence no jump
        flags -- when ``ithresh_a == ithresh_b``.)
        """
        if not (0 < self.ithresh_a < self.ithresh_b):
            raise ValueError(
                "jump thresholds need 0 < ithresh_a < ithresh_b, got "
                f"ithresh_a={self.ithresh_a}, ithresh_b={self.ithresh_b}"
            )
        if not (self.sthresh_a > 0 and self.sthresh_b > 0):
            raise ValueError(
                "jump thresholds sthresh_a and sthresh_b must be > 0, got "
                f"{self.sthresh_a}, {self.sthresh_b}"
            )

    def as_dict(self) -> dict:
        """The legacy ``JUMP_DETECT_PARS`` mapping."""
        return {
            "SthreshA": self.sthresh_a,
            "SthreshB": self.sthresh_b,
            "IthreshA": self.ithresh_a,
            "IthreshB": self.ithresh_b,
        }


def jump_threshold(slope: NDArray, thresholds: JumpThresholds) -> NDArray:
    """Per-pixel significance threshold, interpolated in log slope.

    ``x = (ln(clip(s, IA, IB)) - ln IA) / ln(IB/IA)``, ``S = SA + (SB - SA) x``.

    Parameters
    ----------
    slope : ndarray
        Fitted slope, DN/s (NaN gives a NaN threshold, which never fires).
    thresholds : JumpThresholds
        The four parameters.

    Returns
    -------
    ndarray
        Threshold in sigma, same shape and float dtype as ``slope``.
    """
    ia = np.float64(thresholds.ithresh_a)
    ib = np.float64(thresholds.ithresh_b)
    # Invalid parameters (ithresh_a == ithresh_b or <= 0) give NaN or infinite
    # thresholds, as in the legacy code; `JumpThresholds.check` refuses them up front.
    with np.errstate(invalid="ignore", divide="ignore"):
        x = (np.log(np.clip(slope, ia, ib)) - np.log(ia)) / np.log(ib / ia)
        return thresholds.sthresh_a + (thresholds.sthresh_b - thresholds.sthresh_a) * x


def false_jump_probability(threshold: NDArray | float, *, two_sided: bool) -> NDArray:
    """Probability that one test of a clean ramp fires (Gaussian statistic).

    Parameters
    ----------
    threshold : float or ndarray
        Threshold in sigma.
    two_sided : bool
        True for the default tests, False for the legacy one-sided tests.

    Returns
    -------
    ndarray
        ``Q(S)`` (one-sided) or ``2 Q(S)`` with ``Q`` the normal upper tail.
    """
    q = 0.5 * np.vectorize(math.erfc)(np.asarray(threshold, np.float64) / math.sqrt(2))
    return 2 * q if two_sided else q


@dataclass(frozen=True)
class JumpTests:
    """The tests applied to ramps of one usage pattern.

    Attributes
    ----------
    weights : ndarray, shape (t, n), float64
        Weights of each test statistic.
    poisson, read : ndarray, shape (t,), float64
        Variance coefficients ``A`` and ``B`` of each statistic.
    flag : ndarray of int, shape (t,)
        Resultant that gets JUMP_DET when the test fires.
    double : ndarray of bool, shape (t,)
        True for double-difference tests.
    labels_after : ndarray of int8, shape (t, n), or None
        Segment labels of the ramp after the jump found by the test is taken out
        (`step_tests` only).
    slopes : ndarray, shape (t, n), float64, or None
        Slope weights of the model that includes the test's step (`step_tests`
        only): the slope that sets the Poisson variance of the statistic, unbiased by
        the jump the test is looking for.
    outlier : ndarray, shape (t, n), float64, or None
        For double differences (`step_tests`), the weights of the free offset of the
        dropped resultant in the current model (zero rows for single differences): its
        squared significance is the rest of the fit improvement of a double
        difference, which adds two parameters.
    outlier_poisson, outlier_read : ndarray, shape (t,), float64, or None
        Variance coefficients of ``outlier``.
    """

    weights: NDArray[np.float64]
    poisson: NDArray[np.float64]
    read: NDArray[np.float64]
    flag: NDArray[np.intp]
    double: NDArray[np.bool_]
    labels_after: NDArray[np.int8] | None = None
    slopes: NDArray[np.float64] | None = None
    outlier: NDArray[np.float64] | None = None
    outlier_poisson: NDArray[np.float64] | None = None
    outlier_read: NDArray[np.float64] | None = None

    @property
    def count(self) -> int:
        """Number of tests."""
        return int(self.flag.size)


def _pack(rows, tbar, tau, n_frames, with_labels):
    n = len(tbar)
    if not rows:
        empty = np.zeros((0, n)) if with_labels else None
        return JumpTests(
            weights=np.zeros((0, n)),
            poisson=np.zeros(0),
            read=np.zeros(0),
            flag=np.zeros(0, np.intp),
            double=np.zeros(0, bool),
            labels_after=np.zeros((0, n), np.int8) if with_labels else None,
            slopes=empty,
            outlier=empty,
            outlier_poisson=np.zeros(0) if with_labels else None,
            outlier_read=np.zeros(0) if with_labels else None,
        )

    def coefs(vectors):
        pairs = [slope_variance_coefficients(v, tbar, tau, n_frames) for v in vectors]
        return np.array([c[0] for c in pairs]), np.array([c[1] for c in pairs])

    weights = np.array([r[0] for r in rows], dtype=np.float64)
    poisson, read = coefs(weights)
    extra = {}
    if with_labels:
        outlier = np.array([r[5] for r in rows], dtype=np.float64)
        extra["outlier_poisson"], extra["outlier_read"] = coefs(outlier)
        extra["outlier"] = outlier
        extra["labels_after"] = np.array([r[3] for r in rows], dtype=np.int8)
        extra["slopes"] = np.array([r[4] for r in rows], dtype=np.float64)
    return JumpTests(
        weights=weights,
        poisson=poisson,
        read=read,
        flag=np.array([r[1] for r in rows], dtype=np.intp),
        double=np.array([r[2] for r in rows], dtype=bool),
        **extra,
    )


def empty_tests(n: int) -> JumpTests:
    """No tests, for ramps of ``n`` resultants whose slope is not determined."""
    return _pack([], np.zeros(n), np.zeros(n), np.ones(n), with_labels=True)


def legacy_tests(
    weights: NDArray,
    tbar: NDArray,
    tau: NDArray,
    n_frames: NDArray,
    *,
    start: int,
    stop: int,
) -> JumpTests:
    """The legacy residual tests of one ``jump_detect`` call (algorithms.md §10).

    Pairs ``(i, i+di)`` for ``i = start..stop-2`` with ``di in {1, 2}``, but only
    ``di = 1`` when ``i = stop-2`` or when ``stop - 1 - start == 2``; the statistic is
    ``δ = (d_{i+di} - d_i)/Δ - s`` with ``s = K·d``, i.e. ``w = (e_{i+di} - e_i)/Δ - K``;
    the flag goes on resultant ``i``.

    Parameters
    ----------
    weights : ndarray, shape (n,)
        Slope weights K of the call (zero beyond ``stop``).
    tbar, tau : ndarray, shape (n,)
        Mean and variance-weighted read times, s.
    n_frames : ndarray, shape (n,)
        Frames per resultant.
    start : int
        First used resultant.
    stop : int
        Resultants ``< stop`` are used (``T`` of the legacy; ``n`` for the full ramp).

    Returns
    -------
    JumpTests
        ``2 (stop - start) - 3`` tests (fewer when ``stop - start <= 3``).
    """
    k = np.asarray(weights, dtype=np.float64)
    tbar64 = np.asarray(tbar, dtype=np.float64)
    rows = []
    for i in range(start, stop - 1):
        steps = (1,) if (i == stop - 2 or stop - 1 - start == 2) else (1, 2)
        for di in steps:
            j = i + di
            w = -k.copy()
            delta = tbar64[j] - tbar64[i]
            w[j] += 1.0 / delta
            w[i] -= 1.0 / delta
            rows.append((w, i, di == 2, None, None))
    return _pack(rows, tbar, tau, n_frames, with_labels=False)


def _relabel(labels):
    """Renumber segment labels 0, 1, ... in order of first appearance (-1 kept)."""
    out = np.full_like(labels, -1)
    seen = {}
    for idx, lab in enumerate(labels):
        if lab >= 0:
            out[idx] = seen.setdefault(int(lab), len(seen))
    return out


def step_tests(
    labels: NDArray,
    tbar: NDArray,
    tau: NDArray,
    n_frames: NDArray,
    *,
    u: float,
) -> JumpTests:
    """Step (jump) tests for a ramp with the given segment labels.

    For every segment with used resultants ``p_0 < ... < p_{k-1}``:

    * single differences: a step starting at ``p_{a+1}`` (``a = 0..k-2``), fitted with
      the ramp; it fires on a jump between ``p_a`` and ``p_{a+1}``; the remedy is a new
      segment starting at ``p_{a+1}``, which is flagged;
    * double differences: ``p_{a+1}`` left out and a step starting at ``p_{a+2}``; it
      catches a jump inside the multi-frame resultant ``p_{a+1}`` that splits between
      two single differences; the remedy drops ``p_{a+1}`` (flagged) and starts a new
      segment at ``p_{a+2}``. Only where at least `DOUBLE_MIN_SIDE` used resultants
      remain on each side of the dropped one (so never with three used resultants, as
      in the legacy): a double difference next to the end of a ramp leaves a model with
      almost no residual freedom, which then "explains" a jump elsewhere as well as the
      right model does, and is picked by noise.

    Tests whose statistic is not determined (too few resultants) are left out.

    Parameters
    ----------
    labels : ndarray of int, shape (n,)
        Segment index of each resultant, -1 for resultants not used.
    tbar, tau : ndarray, shape (n,)
        Mean and variance-weighted read times, s.
    n_frames : ndarray, shape (n,)
        Frames per resultant.
    u : float
        Operating point of the fixed weights, 1/s.

    Returns
    -------
    JumpTests
        With ``labels_after`` set.
    """
    labels = np.asarray(labels, dtype=np.int8)
    rows = []
    for seg in np.unique(labels[labels >= 0]):
        pts = np.flatnonzero(labels == seg)
        k = pts.size
        for double in (False, True):
            if double and k < 4:
                continue
            for a in range(k - 2 if double else k - 1):
                if double and min(a + 1, k - a - 2) < DOUBLE_MIN_SIDE:
                    continue
                after = labels.copy()
                if double:
                    dropped, first_new = pts[a + 1], pts[a + 2]
                    after[dropped] = -1
                else:
                    dropped, first_new = None, pts[a + 1]
                after[pts[pts >= first_new]] = np.int8(max(labels.max(), 0) + 1)
                est = segment_weights(
                    labels if not double else _drop(labels, dropped),
                    tbar,
                    tau,
                    n_frames,
                    u=u,
                    step_from=int(first_new),
                )
                if est is None:
                    continue
                w, slope = est
                b = float(np.sum(w * w / np.asarray(n_frames, np.float64)))
                if b < _MIN_READ_COEF:
                    continue
                outlier = np.zeros(labels.size)
                if double:
                    free = segment_weights(
                        labels, tbar, tau, n_frames, u=u, free_at=int(dropped)
                    )
                    if free is None:
                        continue
                    outlier = free[0]
                flag = int(dropped) if double else int(first_new)
                rows.append((w, flag, double, _relabel(after), slope, outlier))
    return _pack(rows, tbar, tau, n_frames, with_labels=True)


def _drop(labels, index):
    out = labels.copy()
    out[index] = -1
    return out
