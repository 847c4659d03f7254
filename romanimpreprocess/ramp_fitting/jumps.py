"""Jump detection on single and double resultant differences (docs/ramp_fit/description.rst).

Every test is a linear statistic ``w·d`` of a pixel's resultants whose expectation is
zero for a straight ramp; its variance is ``(f/gain) A + sigma² B`` with the
coefficients of `optimal_weights.slope_variance_coefficients`, so its significance is
``z = w·d / sqrt(dvardt A + sigma_read² B)`` with ``dvardt = max(slope, 0)/gain``. A
test fires when ``z`` exceeds a threshold that is interpolated in log slope between
``SthreshA`` (at slopes <= ``IthreshA``) and ``SthreshB`` (at slopes >= ``IthreshB``).

The tests built here, `step_tests`, are the default: the amplitude of a step between
two consecutive used resultants (single difference) or across one dropped resultant
(double difference), fitted together with the ramp (fixed-weight GLS; the
likelihood-ratio test of a jump there). Two-sided; they flag the resultant where the
jump appears. (The legacy's one-sided residual tests are
`ramp_fit_legacy.legacy_tests`.)
"""

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from romanimpreprocess.ramp_fitting.optimal_weights import (
    gls_estimators,
    resultant_covariance,
    variance_coefficients,
)

__all__ = [
    "DOUBLE_MIN_SIDE",
    "JumpTests",
    "JumpThresholds",
    "empty_tests",
    "false_jump_probability",
    "jump_threshold",
    "step_tests",
]

# A test whose read-noise coefficient is below this (relative to a single pair of
# reads) has no power: its statistic vanishes identically (e.g. two usable resultants).
_MIN_READ_COEF = 1e-10
# Used resultants required on each side of the resultant a double difference drops.
DOUBLE_MIN_SIDE = 1


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
    position_weights : ndarray, shape (q, n), float64, or None
        Amplitude weights of the jump models that rank the tests (`step_tests`
        only): a jump between two frames, with the fraction of the frames of a
        resultant read after it, in the current segments.
    position_poisson, position_read : ndarray, shape (q,), float64, or None
        Variance coefficients of ``position_weights``.
    position_test : ndarray of int, shape (q,), or None
        Test whose remedy takes out the jump of each position model.
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
    position_weights: NDArray[np.float64] | None = None
    position_poisson: NDArray[np.float64] | None = None
    position_read: NDArray[np.float64] | None = None
    position_test: NDArray[np.intp] | None = None

    @property
    def count(self) -> int:
        """Number of tests."""
        return int(self.flag.size)


def empty_tests(n: int) -> JumpTests:
    """No tests, for ramps of ``n`` resultants whose slope is not determined."""
    return JumpTests(
        weights=np.zeros((0, n)),
        poisson=np.zeros(0),
        read=np.zeros(0),
        flag=np.zeros(0, np.intp),
        double=np.zeros(0, bool),
        labels_after=np.zeros((0, n), np.int8),
        slopes=np.zeros((0, n)),
        outlier=np.zeros((0, n)),
        outlier_poisson=np.zeros(0),
        outlier_read=np.zeros(0),
        position_weights=np.zeros((0, n)),
        position_poisson=np.zeros(0),
        position_read=np.zeros(0),
        position_test=np.zeros(0, np.intp),
    )


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

    Each test is the fixed-weight GLS fit (`optimal_weights.segment_weights`) of the
    ramp's segments plus the step; the models of one ramp are solved as stacks
    (`optimal_weights.gls_estimators`). Tests whose statistic is not determined (too
    few resultants) are left out.

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

    Raises
    ------
    ValueError
        If a segment is not one run of resultants (labels of the used resultants
        must not decrease in order of first appearance).
    """
    labels = _relabel(np.asarray(labels, dtype=np.int8))
    if np.any(np.diff(labels[labels >= 0]) < 0):
        raise ValueError(f"segment labels {labels.tolist()} are not runs")
    n = labels.size
    tbar64 = np.asarray(tbar, dtype=np.float64)
    # (first resultant of the step, dropped resultant or -1), in the order the tests
    # are listed: per segment, single differences then double differences
    candidates = []
    for seg in np.unique(labels[labels >= 0]):
        pts = np.flatnonzero(labels == seg)
        k = pts.size
        candidates += [(pts[a + 1], -1) for a in range(k - 1)]
        if k >= 4:
            candidates += [
                (pts[a + 2], pts[a + 1])
                for a in range(k - 2)
                if min(a + 1, k - a - 2) >= DOUBLE_MIN_SIDE
            ]
    if not candidates:
        return empty_tests(n)
    first_new, dropped = np.array(candidates, dtype=np.intp).T
    double = dropped >= 0

    # Design on the usable resultants U: segment intercepts, slope, extra column.
    usable = np.flatnonzero(labels >= 0)
    segs = labels[usable]
    base = np.column_stack(
        [(segs == g).astype(np.float64) for g in np.unique(segs)] + [tbar64[usable]]
    )
    cov = resultant_covariance(tbar, tau, n_frames, u=u)
    t, m, p = first_new.size, usable.size, base.shape[1] + 1
    # step model: a step from first_new on, within its segment
    step_col = (usable[None, :] >= first_new[:, None]) & (
        segs[None, :] == labels[first_new][:, None]
    )
    step_design = np.concatenate(
        [np.broadcast_to(base, (t, m, p - 1)), step_col[:, :, None]], axis=2
    )
    # Columns: [extra, slope] as `segment_weights` with an extra column.
    columns = [p - 1, p - 2]
    weights = np.zeros((t, n))
    slopes = np.zeros((t, n))
    valid = np.zeros(t, bool)
    single = np.flatnonzero(~double)
    if single.size and m >= p:
        est, ok = gls_estimators(
            step_design[single], cov[np.ix_(usable, usable)], columns
        )
        weights[np.ix_(single, usable)] = est[:, 0]
        slopes[np.ix_(single, usable)] = est[:, 1]
        valid[single] = ok
    outlier = np.zeros((t, n))
    doubles = np.flatnonzero(double)
    if doubles.size and m - 1 >= p:
        # the step model without the dropped resultant (each its own covariance) ...
        keep = usable[None, :] != dropped[doubles][:, None]
        rows = np.nonzero(keep)[1].reshape(doubles.size, m - 1)
        kept = usable[rows]
        design = np.take_along_axis(step_design[doubles], rows[:, :, None], axis=1)
        est, ok = gls_estimators(
            design, cov[kept[:, :, None], kept[:, None, :]], columns
        )
        weights[doubles[:, None], kept] = est[:, 0]
        slopes[doubles[:, None], kept] = est[:, 1]
        # ... and the current model with a free offset of the dropped resultant
        free_col = usable[None, :] == dropped[doubles][:, None]
        free_design = np.concatenate(
            [np.broadcast_to(base, (doubles.size, m, p - 1)), free_col[:, :, None]],
            axis=2,
        )
        free, free_ok = gls_estimators(
            free_design, cov[np.ix_(usable, usable)], columns
        )
        outlier[np.ix_(doubles, usable)] = free[:, 0]
        valid[doubles] = ok & free_ok
    poisson, read = variance_coefficients(weights, tbar, tau, n_frames)
    valid &= read >= _MIN_READ_COEF
    first_new, dropped, double = first_new[valid], dropped[valid], double[valid]
    weights, slopes, outlier = weights[valid], slopes[valid], outlier[valid]
    poisson, read = poisson[valid], read[valid]

    # Labels after the remedy: the step's segment splits at first_new, the segments
    # after it move up by one, and a double difference's resultant is dropped.
    segment = labels[first_new][:, None]
    after = (
        labels
        + (labels > segment)
        + ((labels == segment) & (np.arange(n) >= first_new[:, None]))
    ).astype(np.int8)
    after[:, labels < 0] = -1
    after[np.flatnonzero(double), dropped[double]] = -1
    outlier_poisson, outlier_read = variance_coefficients(outlier, tbar, tau, n_frames)
    position_test, columns_of = _position_columns(
        labels, usable, first_new, dropped, np.asarray(n_frames)
    )
    position_weights = np.zeros((position_test.size, n))
    if position_test.size:
        design = np.concatenate(
            [
                np.broadcast_to(base, (position_test.size, m, p - 1)),
                columns_of[:, :, None],
            ],
            axis=2,
        )
        est, _ = gls_estimators(design, cov[np.ix_(usable, usable)], p - 1)
        position_weights[:, usable] = est
    position_poisson, position_read = variance_coefficients(
        position_weights, tbar, tau, n_frames
    )
    return JumpTests(
        weights=weights,
        poisson=poisson,
        read=read,
        flag=np.where(double, dropped, first_new).astype(np.intp),
        double=double,
        labels_after=after,
        slopes=slopes,
        outlier=outlier,
        outlier_poisson=outlier_poisson,
        outlier_read=outlier_read,
        position_weights=position_weights,
        position_poisson=position_poisson,
        position_read=position_read,
        position_test=position_test,
    )


def _position_columns(labels, usable, first_new, dropped, n_frames):
    """The jump positions each test's remedy takes out, as step columns.

    A jump between two frames adds ``J`` to every later frame, so to a resultant of
    ``N`` frames it adds ``J`` times the fraction of its frames read after the jump:
    1 for the resultants after it, ``(N - j)/N`` (``j = 1..N-1`` frames before the
    jump) for the resultant it falls in, 0 before. Each position is one model with one
    parameter, so their fit improvements compare directly (most likely position).
    The remedy of a double difference dropping ``r`` takes out a jump anywhere inside
    ``r``; the remedy of a single difference at ``q`` one at the boundary before
    ``q``, and also one inside the resultant before ``q`` when that is the first of
    its segment, or inside ``q`` when ``q`` is the last (either is then left alone
    in a segment of its own). A dropped resultant of one frame has no inside: its
    double difference takes out a jump at either of its boundaries.

    Returns
    -------
    position_test : ndarray of int, shape (q,)
        Test of each position.
    columns : ndarray, shape (q, m), float64
        Step column of each position on the usable resultants ``usable``.
    """
    segs = labels[usable]
    tests, columns = [], []

    def add(test, after, inside):
        # `after`: first used resultant with the whole jump; `inside`: the resultant
        # the jump falls in (or -1 for a boundary)
        whole = (usable >= after) & (segs == labels[after])
        if inside < 0:
            tests.append(test)
            columns.append(whole.astype(np.float64))
            return
        frames = int(n_frames[inside])
        for j in range(1, frames):
            tests.append(test)
            columns.append(np.where(usable == inside, (frames - j) / frames, whole))

    for test, (after, drop) in enumerate(zip(first_new, dropped, strict=True)):
        if drop >= 0 and n_frames[drop] > 1:
            add(test, after, drop)
            continue
        if drop >= 0:
            # one frame: nothing inside; the jumps it takes out are at its boundaries
            add(test, drop, -1)
            add(test, after, -1)
            continue
        add(test, after, -1)
        members = usable[segs == labels[after]]
        before = members[np.searchsorted(members, after) - 1]
        if before == members[0]:
            add(test, after, before)
        if after == members[-1]:
            add(test, after, after)
    if not tests:
        return np.zeros(0, np.intp), np.zeros((0, usable.size))
    return np.array(tests, np.intp), np.array(columns, np.float64)
