"""Fixed-weight ramp fit with jump detection over a frame (docs/ramp_fit/description.rst).

`fit_ramps` fits every science pixel of a ramp cube; with ``legacy=True`` it hands the
work to `ramp_fit_legacy.fit_ramps_legacy` (the legacy's behaviour, bit for bit).
The default (the legacy's defects fixed: docs/ramp_fit/description.rst, differences
from the legacy):

A resultant is *used* when it is at or after ``start``, finite, and carries neither
SATURATED nor DO_NOT_USE. A pixel whose used resultants are exactly ``start..n-1``
gets the full-ramp weights K; a ramp cut short (saturation or a DO_NOT_USE resultant,
then nothing usable after it) gets the two-point slope between its first and last used
resultant -- including ramps cut at ``2+start``; any other pattern (gaps, jumps) gets
the fixed-weight GLS slope with one intercept per segment. Jumps: the step tests of
`jumps.step_tests` (two-sided), with weights at the pixel's own operating point
``u = max(s, 0)/gain/sigma²`` (binned); the most significant test above threshold is
taken out -- the ramp is split there (and for a double difference the middle resultant
dropped) -- the slope refitted and the tests repeated until none fires. JUMP_DET goes
on the resultant where the jump appears. Pixels with no slope (fewer than two used
resultants in every segment) get NaN and DO_NOT_USE.

The work is done in blocks of rows (`ramp_fit_frame`): one pass gives the slope and
every test statistic of the ordinary pixels -- compiled (`ramp_fit_kernels`) or as
numpy matrix products; the few pixels that need something else (flagged resultants,
jumps) are gathered and handled per usage pattern. Memory beyond the input cube: the
float32 outputs plus a few float64 blocks of `ramp_fit_frame.BLOCK_PIXELS`.
"""

import logging

import numpy as np
from numpy.typing import NDArray
from roman_datamodels.dqflags import group, pixel

from romanimpreprocess.constants import REF_BORDER
from romanimpreprocess.parallel import check_engine
from romanimpreprocess.ramp_fitting.jumps import (
    JumpTests,
    JumpThresholds,
    empty_tests,
    jump_threshold,
    step_tests,
)
from romanimpreprocess.ramp_fitting.optimal_weights import (
    RampOptPars,
    optimal_weights,
    segment_weights,
    slope_variance_coefficients,
    two_point_weights,
)
from romanimpreprocess.ramp_fitting.ramp_fit_frame import (
    GAIN_CLIP,
    P_DNU,
    P_SAT,
    SAT,
    FrameFit,
    RampFitResult,
    SlopePlan,
    check_shapes,
    end_slices,
    row_blocks,
    saturation_and_dnu_flags,
    significance,
)
from romanimpreprocess.ramp_fitting.ramp_fit_legacy import fit_ramps_legacy

__all__ = ["RampFitResult", "end_slices", "fit_ramps"]

log = logging.getLogger(__name__)

# Pixels per chunk of the special-pixel jump tests (tests × chunk float64 temporaries
# of about 5 MB for a 24-resultant ramp's 40 tests).
SPECIAL_CHUNK = 2**14
# Jump tests use weights at the pixel's own operating point
# u = max(slope, 0) / gain / sigma_read², on a grid u_opt * U_STEP**k, k < U_BINS
# (u below u_opt uses u_opt: the weights hardly change in the read-noise limit).
U_STEP = 3.0
U_BINS = 12
U_FLOOR = 1e-4  # 1/s, grid start if RAMP_OPT_PARS slope is 0
# Ranking of the firing jump tests (`_chosen_tests`): a double difference (it drops a
# resultant) and a negative jump (cosmic rays add charge) are each charged this
# fraction of the squared threshold S², the improvement of a step of S/2. Without
# them noise picks between nearly equivalent remedies: a jump at the first frame of
# a resultant and one at the last frame of the resultant before it, or a step up
# near one end of a short ramp and a step down near the other (chosen on simulated
# ramps: docs/ramp_fit/description.rst, Jumps).
RANK_CHARGE = 0.25
# The block pass screens with the weights at u_opt and a threshold lowered by this
# many sigma, so that no pixel whose own-u test would fire is missed.
SCREEN_MARGIN = 2.0

_DNU = np.uint8(group.DO_NOT_USE)
_UNUSABLE = np.uint8(group.SATURATED | group.DO_NOT_USE)
# Group flags carried to the pixel flags by name. DO_NOT_USE and SATURATED have their
# own rules; WFI18_TRANSIENT marks a resultant that the fit does not use, so it is not
# carried (the legacy OR-ed its bit 7 in, which reads as OUTLIER).
_GROUP_TO_PIXEL = (
    (np.uint8(group.JUMP_DET), np.uint32(pixel.JUMP_DET)),
    (np.uint8(group.DROPOUT), np.uint32(pixel.DROPOUT)),
    (np.uint8(group.AD_FLOOR), np.uint32(pixel.AD_FLOOR)),
)


class _Planner:
    """Builds and caches the `SlopePlan` of each usage pattern of an exposure."""

    def __init__(self, tbar, tau, n_frames, *, u, start):
        self.tbar = np.asarray(tbar, dtype=np.float64)
        self.tau = np.asarray(tau, dtype=np.float64)
        self.n_frames = np.asarray(n_frames)
        self.n = self.tbar.size
        self.u = u
        self.start = start
        self.full_weights = optimal_weights(
            self.tbar, self.tau, self.n_frames, u=u, start=start
        )
        self._cache = {}

    def plan(self, labels: NDArray[np.int8]) -> SlopePlan:
        """Slope plan for a pixel's segment labels (-1 = not used).

        The plan's tests are the step tests at the weights' operating point ``u``;
        `tests` gives them at another ``u``.
        """
        key = labels.tobytes()
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        used = np.flatnonzero(labels >= 0)
        single = used.size > 0 and np.all(labels[used] == labels[used[0]])
        prefix = (
            single
            and used[0] == self.start
            and np.array_equal(used, np.arange(self.start, used[-1] + 1))
        )
        if prefix and used[-1] == self.n - 1:
            k, kind = self.full_weights, "full"
        elif prefix and used.size >= 2:
            k, kind = two_point_weights(self.tbar, used[0], used[-1]), "two_point"
        else:
            k = segment_weights(labels, self.tbar, self.tau, self.n_frames, u=self.u)
            kind = "segments" if k is not None else "no_slope"
        if k is None:
            plan = SlopePlan(None, np.nan, np.nan, empty_tests(self.n), kind)
        else:
            coef_p, coef_r = slope_variance_coefficients(
                k, self.tbar, self.tau, self.n_frames
            )
            plan = SlopePlan(k, coef_p, coef_r, self.tests(labels, 0), kind)
        self._cache[key] = plan
        return plan

    def u_value(self, k) -> NDArray[np.float64]:
        """Operating point ``u0 * U_STEP**k`` of test bin ``k``, 1/s."""
        u0 = self.u if self.u > 0 else U_FLOOR
        return u0 * U_STEP ** np.asarray(k, dtype=np.float64)

    def u_bin(self, u_pixel: NDArray) -> NDArray[np.intp]:
        """Index ``k`` of the test operating point nearest ``u_pixel`` (log scale)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            k = np.rint(np.log(u_pixel / self.u_value(0)) / np.log(U_STEP))
        k = np.where(np.isfinite(k), k, 0)
        return np.clip(k, 0, U_BINS - 1).astype(np.intp)

    def tests(self, labels: NDArray[np.int8], k: int) -> JumpTests:
        """Step tests for ``labels`` with weights at ``u_value(k)``."""
        key = (labels.tobytes(), int(k))
        cached = self._cache.get(key)
        if cached is None:
            u = float(self.u_value(k))
            cached = step_tests(labels, self.tbar, self.tau, self.n_frames, u=u)
            self._cache[key] = cached
        return cached


_PLANNERS = {}  # (read times, frames, u, start) -> _Planner; the last few kept
_PLANNERS_KEPT = 4


def _planner(tbar, tau, n_frames, *, u, start):
    """The `_Planner` of these read times: one per exposure's pattern, reused.

    The pipeline fits a frame band by band, each band a call of `fit_ramps`; a
    planner made per call computed the weights and step tests of every usage
    pattern again in every band (about 0.1 s of Python a band on a full frame). A
    planner's plans depend only on its key, so sharing it changes no value.
    """
    tbar = np.asarray(tbar, dtype=np.float64)
    tau = np.asarray(tau, dtype=np.float64)
    n_frames = np.asarray(n_frames)
    key = (tbar.tobytes(), tau.tobytes(), n_frames.tobytes(), str(n_frames.dtype),
           float(u), int(start))  # fmt: skip
    planner = _PLANNERS.pop(key, None)
    if planner is None:
        planner = _Planner(tbar, tau, n_frames, u=u, start=start)
    _PLANNERS[key] = planner  # the most recent last
    while len(_PLANNERS) > _PLANNERS_KEPT:
        del _PLANNERS[next(iter(_PLANNERS))]
    return planner


def fit_ramps(
    data: NDArray[np.float32],
    groupdq: NDArray[np.uint8],
    pixeldq: NDArray[np.uint32],
    gain: NDArray,
    read_noise: NDArray,
    tbar: NDArray,
    tau: NDArray,
    n_frames: NDArray,
    *,
    opt: RampOptPars | None = None,
    thresholds: JumpThresholds | None = None,
    start: int = 1,
    legacy: bool = False,
    border: int = REF_BORDER,
    engine: str = "numba",
    threads: int | None = None,
    rows: slice | None = None,
    defer_special: bool = False,
) -> RampFitResult:
    """Fit the ramps of the science area and detect jumps.

    Parameters
    ----------
    data : ndarray, shape (n, ny, nx), float32
        Linearised resultants, DN, full frame with the reference border. Not modified.
    groupdq : ndarray, shape (n, ny, nx), uint8
        Group flags. Not modified.
    pixeldq : ndarray, shape (ny, nx), uint32
        Pixel flags. Not modified.
    gain : ndarray, shape (ny, nx)
        Gain, e/DN (clipped to `GAIN_CLIP` in the Poisson variance).
    read_noise : ndarray, shape (ny, nx)
        Single-read noise, DN.
    tbar, tau : ndarray, shape (n,)
        Mean and variance-weighted read times, s.
    n_frames : ndarray, shape (n,)
        Frames per resultant.
    opt : RampOptPars or None
        Operating point of the fixed weights (RAMP_OPT_PARS); None = defaults.
    thresholds : JumpThresholds or None
        Jump thresholds (JUMP_DETECT_PARS); None = defaults.
    start : int
        First resultant used (1 = the first resultant is excluded).
    legacy : bool
        Reproduce the legacy behaviour (`ramp_fit_legacy.fit_ramps_legacy`).
    border : int
        Width of the reference border (not fitted).
    engine : {"numba", "numpy"}
        Default mode: the pass over the ordinary pixels runs compiled
        (`ramp_fit_kernels.screen_ramps`, rows in parallel) or as numpy blocks of
        matrix products; the pixels that need more go through the same code in
        both. Legacy mode always takes the numpy path (its float32 arithmetic).
    threads : int or None
        Threads of the compiled pass (None = `romanimpreprocess.parallel.
        step_threads`).
    rows : slice or None
        The rows of ``data`` and ``groupdq`` that hold the frame (reference border
        included); the others are not read. None: all of them. A band's rows are
        fitted this way without a copy of its cube (``pixeldq``, ``gain`` and
        ``read_noise`` are given for these rows only).
    defer_special : bool
        Default mode: return, instead of the result, a function of no arguments
        that fits the special pixels (flagged resultants, jumps) and returns the
        result. Everything it needs from ``data`` and ``groupdq`` is gathered
        before this returns, so the cube may be reused while the function runs on
        another thread (``pixeldq`` must stay as it is until then).

    Returns
    -------
    RampFitResult
        (or, with ``defer_special`` in default mode, the function that returns it)

    Raises
    ------
    ValueError
        With fewer than two used resultants (the legacy crashes, docs/ramp_fit/description.rst, differences from the legacy), or invalid
        thresholds in default mode.
    """
    opt = RampOptPars() if opt is None else opt
    thresholds = JumpThresholds() if thresholds is None else thresholds
    full_data, full_groupdq = data, groupdq
    row0 = 0
    if rows is not None:
        row0, _, step = rows.indices(data.shape[1])
        if step != 1:
            raise ValueError(f"rows must be a contiguous slice, not {rows}")
        data, groupdq = data[:, rows], groupdq[:, rows]
    check_shapes(data, groupdq, pixeldq)
    check_engine(engine)
    if legacy:
        inputs = (data, groupdq, pixeldq, gain, read_noise, tbar, tau, n_frames)
        return fit_ramps_legacy(
            inputs, opt=opt, thresholds=thresholds, start=start, border=border
        )
    thresholds.check()
    n, ny, nx = data.shape
    planner = _planner(tbar, tau, n_frames, u=opt.u, start=start)
    full = planner.plan(_full_labels(n, start))
    frame = FrameFit(n, ny - 2 * border, nx - 2 * border)
    matrix = np.vstack([full.slope[None, :], full.tests.weights])
    if engine == "numba":
        inputs = (full_data, full_groupdq, gain, read_noise, border, matrix, row0)
        frame.special.append(
            _screen_compiled(inputs, full, planner, start, thresholds, frame, threads)
        )
        frame.counts["full"] += int(frame.slope.size - frame.special[0].size)
    else:
        for block in row_blocks(data, groupdq, gain, read_noise, border):
            _screen_block(block, matrix, full, start, thresholds, frame)

    special = frame.special_inputs(data, gain, read_noise, border)
    if special is not None:
        gq = np.asarray(groupdq[:, special.ys, special.xs])

    def fit_special_and_finish():
        if special is not None:
            fitted = _fit_special(
                special.d, gq, special.gain, special.rn2, planner, thresholds, start
            )
            frame.put_special(special.index, fitted)
        return frame.result(pixeldq, border, planner.full_weights)

    return fit_special_and_finish if defer_special else fit_special_and_finish()


def _screen_block(block, matrix, full, start, thresholds, frame):
    """The numpy pass over one block: full-ramp fit, flags, and the special pixels."""
    d, rn = block.d, block.read_noise
    stats = matrix @ d
    s = stats[0]
    dvardt = np.maximum(s / block.gain, 0.0)
    var_p = full.coef_poisson * dvardt
    var_r = full.coef_read * rn * rn
    flags = _group_flags(block.gq, (block.gq & SAT) != 0)
    if full.tests.count:
        z = significance(stats[1:], full.tests, dvardt, rn * rn)
        fire = np.abs(z) > jump_threshold(s, thresholds) - SCREEN_MARGIN
        hit = fire.any(axis=0)
    else:
        hit = np.zeros(d.shape[1], bool)
    used = np.bitwise_or.reduce(block.gq[start:], axis=0) & _UNUSABLE
    bad = (used != 0) | ~np.isfinite(d[start:]).all(axis=0)
    sel = np.flatnonzero(bad | hit)
    if sel.size:
        frame.special.append(sel + block.offset)
    frame.counts["full"] += int(d.shape[1] - sel.size)
    frame.put_block(block, s, var_p, var_r, flags)


def _screen_compiled(inputs, full, planner, start, thresholds, frame, threads):
    """The compiled pass over every science pixel; returns the special ones (flat).

    ``inputs`` = (data, groupdq, gain, read_noise, border, matrix, row0): the frame
    is rows ``row0 ..`` of ``data`` and ``groupdq``; the outputs of ``frame`` (a
    `ramp_fit_frame.FrameFit`) are filled in place.
    """
    from romanimpreprocess.parallel import kernel_threads
    from romanimpreprocess.ramp_fitting import ramp_fit_kernels as kernels

    data, groupdq, gain, read_noise, border, matrix, row0 = inputs
    pixels = kernels.ScreenInputs(
        np.ascontiguousarray(data),
        np.ascontiguousarray(groupdq),
        np.ascontiguousarray(gain),
        np.ascontiguousarray(read_noise),
        int(border),
        int(row0),
    )
    pattern = _screen_pattern(full, planner, start, matrix)
    rules = kernels.ScreenRules(
        thresholds=np.array(
            [
                thresholds.sthresh_a,
                thresholds.sthresh_b,
                thresholds.ithresh_a,
                thresholds.ithresh_b,
            ],
            dtype=np.float64,
        ),
        margin=float(SCREEN_MARGIN),
        gain_clip=np.array(GAIN_CLIP, dtype=np.float64),
        group_to_pixel=np.array(
            [[int(g), int(p)] for g, p in _GROUP_TO_PIXEL], dtype=np.int64
        ).reshape(-1, 2),
        bits=np.array(
            [int(SAT), int(_DNU), int(_UNUSABLE), int(P_DNU), int(P_SAT)], np.int64
        ),
    )
    outputs = kernels.ScreenOutputs(
        slope=frame.slope,
        var_poisson=frame.var_poisson,
        var_rnoise=frame.var_rnoise,
        flags=frame.flags,
        endslice=frame.endslice
        if frame.endslice is not None
        else np.zeros((1, 1), np.int8),
        special=np.zeros(frame.slope.shape, bool),
    )
    with kernel_threads(threads):
        kernels.screen_ramps(pixels, pattern, rules, outputs)
    return np.flatnonzero(outputs.special)


def _screen_pattern(full, planner, start, matrix):
    """The full ramp's constants for the compiled pass (`ramp_fit_kernels`)."""
    from romanimpreprocess.ramp_fitting import ramp_fit_kernels as kernels

    n, ntests = matrix.shape[1], matrix.shape[0] - 1
    used = n - start
    # the statistics through C⁻¹ d where that is fewer operations than dot products
    structure = None
    if 7 * used + 4 * ntests < used * ntests:
        structure = kernels.structured_tests(
            full.tests.weights,
            full.tests.flag,
            full.tests.double,
            planner.tbar,
            planner.tau,
            planner.n_frames,
            u=float(planner.u_value(0)),
            start=start,
        )
    if structure is None:
        structure = {
            "coefs": np.zeros((ntests, 4)),
            "step_at": np.zeros(ntests, np.int64),
            "free_at": np.zeros(ntests, np.int64),
        }
        factors = np.zeros((0, n))
    else:
        factors = np.stack(
            [structure[k] for k in ("inv_dprime", "lower", "inv_diag", "upper", "tbar")]
        )
    return kernels.ScreenPattern(
        start=int(start),
        matrix=np.ascontiguousarray(matrix, dtype=np.float64),
        test_poisson=np.ascontiguousarray(full.tests.poisson, dtype=np.float64),
        test_read=np.ascontiguousarray(full.tests.read, dtype=np.float64),
        coef_poisson=float(full.coef_poisson),
        coef_read=float(full.coef_read),
        structure=factors,
        coefs=structure["coefs"],
        step_at=structure["step_at"],
        free_at=structure["free_at"],
    )


def _full_labels(n, start):
    return np.where(np.arange(n) >= start, 0, -1).astype(np.int8)


def _group_flags(gq, sat):
    """Pixel flags that follow from the group flags alone (docs/ramp_fit/description.rst)."""
    nonsat, out = saturation_and_dnu_flags(gq, sat)
    for gflag, pflag in _GROUP_TO_PIXEL:
        out[(nonsat & gflag) != 0] |= pflag
    return out


def _groups(keys):
    """Split the rows of ``keys`` (2-D int8) into groups of identical rows.

    Returns the distinct rows and, for each, the indices of its rows. (Rows are
    compared as raw bytes, much faster than ``np.unique(axis=0)``.)
    """
    keys = np.ascontiguousarray(keys)
    packed = keys.view(np.dtype((np.void, keys.shape[1] * keys.itemsize))).ravel()
    _, first, inverse = np.unique(packed, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    order = np.argsort(inverse, kind="stable")
    bounds = np.concatenate(
        [[0], np.cumsum(np.bincount(inverse, minlength=first.size))]
    )
    return keys[first], [order[bounds[i] : bounds[i + 1]] for i in range(first.size)]


def _fit_special(d, gq, g, rn2, planner, thresholds, start):
    """Default-mode fit of pixels with flagged resultants or jumps (iterative).

    Each round fits every active pixel with the slope plan of its segment labels, then
    runs the step tests at the pixel's own operating point; pixels where a test fires
    get the jump taken out (`_choose`) and stay active for the next round.
    """
    n, m = d.shape
    usable = ((gq & _UNUSABLE) == 0) & np.isfinite(d)
    usable[:start] = False
    d = np.where(usable, d, 0.0)  # weight 0 must not meet NaN or inf
    labels = np.where(usable.T, 0, -1).astype(np.int8)
    s_out = np.full(m, np.nan)
    vp_out = np.full(m, np.nan)
    vr_out = np.full(m, np.nan)
    dvardt = np.full(m, np.nan)
    jump = np.zeros((m, n), bool)
    kind_of = np.empty(m, dtype=object)
    active = np.arange(m)
    for _ in range(2 * n + 1):
        if active.size == 0:
            break
        patterns, members_of = _groups(labels[active])
        fitted = []
        for pattern, rows in zip(patterns, members_of, strict=True):
            members = active[rows]
            plan = planner.plan(pattern)
            kind_of[members] = plan.kind
            if plan.slope is None:
                s_out[members] = np.nan
                vp_out[members] = np.nan
                vr_out[members] = np.nan
                continue
            s = plan.slope @ d[:, members]
            dvardt[members] = np.maximum(s / g[members], 0.0)
            s_out[members] = s
            vp_out[members] = plan.coef_poisson * dvardt[members]
            vr_out[members] = plan.coef_read * rn2[members]
            fitted.append(members)
        if not fitted:
            break
        fitted = np.concatenate(fitted)
        with np.errstate(divide="ignore", invalid="ignore"):
            ubin = planner.u_bin(dvardt[fitted] / rn2[fitted])
        keys = np.column_stack([labels[fitted], ubin.astype(np.int8)])
        again = []
        for key, rows in zip(*_groups(keys), strict=True):
            tests = planner.tests(key[:-1], int(key[-1]))
            if not tests.count:
                continue
            u_bin = float(planner.u_value(key[-1]))
            # In chunks: the tests' temporaries (tests × pixels) stay small.
            for c0 in range(0, rows.size, SPECIAL_CHUNK):
                members = fitted[rows[c0 : c0 + SPECIAL_CHUNK]]
                choice = _chosen_tests(
                    d, g, rn2, s_out, members, tests, u_bin, thresholds
                )
                sel = choice >= 0
                if not sel.any():
                    continue
                pix, test = members[sel], choice[sel]
                labels[pix] = tests.labels_after[test]
                jump[pix, tests.flag[test]] = True
                again.append(pix)
        active = np.concatenate(again) if again else np.zeros(0, np.intp)
    else:
        log.warning("jump search stopped after %d rounds", 2 * n + 1)
    no_slope = kind_of == "no_slope"
    kinds = {k: int(np.count_nonzero(kind_of == k)) for k in set(kind_of.tolist())}
    return s_out, vp_out, vr_out, jump, no_slope, kinds


def _chosen_tests(d, g, rn2, s_out, members, tests, u_bin, thresholds):
    """Index of the test to act on for each of ``members``; -1 where none fires."""
    dm = d[:, members]
    amp = tests.weights @ dm
    # Whether a test fires: the Poisson part of its variance comes from the slope of
    # its own model (with the step), which the jump it looks for does not bias.
    dvardt_t = np.maximum((tests.slopes @ dm) / g[members], 0.0)
    z = np.abs(significance(amp, tests, dvardt_t, rn2[members]))
    # Which firing test to act on: the one whose remedy takes out the most likely
    # jump. A jump between two frames gives the resultant it falls in the fraction of
    # its frames read after it; each such position is a model with one parameter, so
    # the fit improvements (under the covariance the weights assume, u of the bin)
    # compare directly, and a test ranks by the best position its remedy takes out
    # (`jumps.step_tests`, position models). Ranking the tests' own models instead
    # favours a double difference next to a short end of the ramp, whose model keeps
    # almost no residual freedom and absorbs a jump elsewhere as well as the right
    # model (docs/ramp_fit/description.rst, Jumps).
    threshold = jump_threshold(s_out[members], thresholds)
    fire = z > threshold
    charge = RANK_CHARGE * np.square(threshold)
    gain = _position_gain(tests, dm, u_bin, rn2[members], charge)
    gain -= charge * tests.double[:, None]
    return _choose(gain, fire)


def _choose(rank, fire):
    """Index of the firing test with the largest ``rank`` per pixel; -1 if none."""
    ranked = np.where(fire, rank, -np.inf)
    best = np.argmax(ranked, axis=0)
    ok = np.isfinite(ranked[best, np.arange(rank.shape[1])])
    return np.where(ok, best, -1)


def _position_gain(tests, dm, u, rn2, charge):
    """Best chi² improvement of the jump positions each test takes out, (t, m).

    A negative jump is charged ``charge`` (per pixel): after the ramp is taken out a
    step down near one end of a short ramp looks much like a step up near the other,
    and the wrong remedy leaves the jump in a segment too short to find it.
    """
    dvardt = u * rn2  # the covariance σ²(diag(1/N) + u P) of the test weights
    var = np.multiply.outer(tests.position_poisson, dvardt)
    var += np.multiply.outer(tests.position_read, rn2)
    amp = tests.position_weights @ dm
    with np.errstate(invalid="ignore", divide="ignore"):
        chi2 = np.square(amp) / var - np.where(amp < 0, charge, 0.0)
    chi2 = np.where(var > 0, chi2, -np.inf)
    gain = np.full((tests.count, dm.shape[1]), -np.inf)
    if tests.position_test.size:
        # the maximum over each test's positions (np.maximum.at did the same
        # element by element, three times slower)
        order = np.argsort(tests.position_test, kind="stable")
        owner = tests.position_test[order]
        owners, starts = np.unique(owner, return_index=True)
        gain[owners] = np.maximum.reduceat(chi2[order], starts, axis=0)
    return gain
