"""Fixed-weight ramp fit with jump detection over a frame (docs/ramp_fit/description.rst).

`fit_ramps` fits every science pixel of a ramp cube. Two behaviours:

Default (the legacy's defects fixed: docs/ramp_fit/description.rst, differences from
the legacy):
    A resultant is *used* when it is at or after ``start``, finite, and carries neither
    SATURATED nor DO_NOT_USE (docs/ramp_fit/description.rst, differences from the legacy). A pixel whose used resultants are exactly
    ``start..n-1`` gets the full-ramp weights K; a ramp cut short (saturation or a
    DO_NOT_USE resultant, then nothing usable after it) gets the two-point slope between
    its first and last used resultant -- including ramps cut at ``2+start`` (docs/ramp_fit/description.rst, differences from the legacy);
    any other pattern (gaps, jumps) gets the fixed-weight GLS slope with one intercept
    per segment. Jumps: the step tests of `jumps.step_tests` (two-sided), with weights
    at the pixel's own operating point ``u = max(s, 0)/gain/sigma²`` (binned); the most
    significant test above threshold is taken out -- the ramp is split there (and for
    a double difference the middle resultant dropped) -- the slope refitted and the
    tests repeated until none fires (docs/ramp_fit/description.rst, differences from the legacy). JUMP_DET goes on the resultant where the
    jump appears. Pixels with no slope (fewer than two used resultants in every
    segment) get NaN and DO_NOT_USE.

Legacy (``legacy=True``, docs/ramp_fit/description.rst exactly):
    Full-ramp K for every pixel whatever its flags; the pixels whose first SATURATED
    resultant is ``iend`` (``n-1 >= iend >= 3+start``) are refitted with the two-point
    slope over ``start..iend-1``; one-sided residual tests (`jumps.legacy_tests`)
    without refit, flags on the earlier resultant, full-ramp flags kept only for pixels
    not saturated in the last resultant; float32 weights and slopes.

The work is done in blocks of rows: one matrix product gives the slope and every test
statistic of the block's ordinary pixels; the few pixels that need something else
(flagged resultants, jumps) are gathered and handled per usage pattern. Memory beyond
the input cube: the float32 outputs plus a few float64 blocks of ``BLOCK_PIXELS``.
"""

import logging
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from roman_datamodels.dqflags import group, pixel
from scipy import special

from romanimpreprocess.constants import REF_BORDER
from romanimpreprocess.parallel import check_engine
from romanimpreprocess.ramp_fitting.jumps import (
    JumpTests,
    JumpThresholds,
    empty_tests,
    jump_threshold,
    legacy_tests,
    step_tests,
)
from romanimpreprocess.ramp_fitting.optimal_weights import (
    RampOptPars,
    legacy_slope_coefficients,
    optimal_weights,
    segment_weights,
    slope_variance_coefficients,
    two_point_weights,
)

__all__ = [
    "BLOCK_PIXELS",
    "GAIN_CLIP",
    "RampFitResult",
    "end_slices",
    "fit_ramps",
    "legacy_error_roundtrip",
]

log = logging.getLogger(__name__)

BLOCK_PIXELS = 2**16  # pixels per block of rows (0.5 MB per float64 plane)
# Pixels per chunk of the special-pixel jump tests (tests × chunk float64 temporaries
# of about 5 MB for a 24-resultant ramp's 40 tests).
SPECIAL_CHUNK = 2**14
GAIN_CLIP = (1e-4, 1e4)  # e/DN, clip of the gain in the Poisson variance (legacy)
MAX_ENDSLICE_RESULTANTS = 128  # endslice is int8 (legacy SLICEOUT limit)
# Default-mode jump tests use weights at the pixel's own operating point
# u = max(slope, 0) / gain / sigma_read², on a grid u_opt * U_STEP**k, k < U_BINS
# (u below u_opt uses u_opt: the weights hardly change in the read-noise limit).
U_STEP = 3.0
U_BINS = 12
U_FLOOR = 1e-4  # 1/s, grid start if RAMP_OPT_PARS slope is 0
# The block pass screens with the weights at u_opt and a threshold lowered by this
# many sigma, so that no pixel whose own-u test would fire is missed.
SCREEN_MARGIN = 2.0

_SAT = np.uint8(group.SATURATED)
_DNU = np.uint8(group.DO_NOT_USE)
_UNUSABLE = np.uint8(group.SATURATED | group.DO_NOT_USE)
_P_SAT = np.uint32(pixel.SATURATED)
_P_DNU = np.uint32(pixel.DO_NOT_USE)
_P_JUMP = np.uint32(pixel.JUMP_DET)
_P_REF = np.uint32(pixel.REFERENCE_PIXEL)
# Group flags carried to the pixel flags by name (default mode). DO_NOT_USE and
# SATURATED have their own rules; WFI18_TRANSIENT marks a resultant that the fit does
# not use, so it is not carried (the legacy OR-ed its bit 7 in, which reads as OUTLIER).
_GROUP_TO_PIXEL = (
    (np.uint8(group.JUMP_DET), np.uint32(pixel.JUMP_DET)),
    (np.uint8(group.DROPOUT), np.uint32(pixel.DROPOUT)),
    (np.uint8(group.AD_FLOOR), np.uint32(pixel.AD_FLOOR)),
)


@dataclass
class RampFitResult:
    """Output of `fit_ramps` for the science area (border removed).

    Attributes
    ----------
    slope : ndarray, shape (sy, sx), float32
        Count rate, DN/s (NaN where not determined, default mode).
    var_poisson, var_rnoise : ndarray, shape (sy, sx), float32
        Poisson and read-noise variance of the slope, DN²/s².
    dq : ndarray, shape (sy, sx), uint32
        Input pixel flags with the fit's flags OR-ed in (not where REFERENCE_PIXEL).
    weights : ndarray, shape (n,)
        Full-ramp weights K (float32 in legacy mode, as stored by the legacy).
    jumps : ndarray of int, shape (k, 3)
        ``(resultant, y, x)`` of every JUMP_DET set by the fit (science coordinates).
    endslice : ndarray of int8, shape (sy, sx), or None
        Last unsaturated resultant, -1 if none saturates (None for >= 128 resultants).
    counts : dict
        Diagnostics: pixels fitted per kind (``full``, ``two_point``, ``segments``,
        ``no_slope``, ``jump``).
    """

    slope: NDArray[np.float32]
    var_poisson: NDArray[np.float32]
    var_rnoise: NDArray[np.float32]
    dq: NDArray[np.uint32]
    weights: NDArray
    jumps: NDArray[np.intp]
    endslice: NDArray[np.int8] | None
    counts: dict = field(default_factory=dict)


@dataclass(frozen=True)
class _Plan:
    """Slope weights, their variance coefficients and the jump tests of a pattern."""

    slope: NDArray[np.float64] | None
    coef_poisson: float
    coef_read: float
    tests: JumpTests
    kind: str


class _Planner:
    """Builds and caches the `_Plan` of each usage pattern of an exposure."""

    def __init__(self, tbar, tau, n_frames, *, u, start, legacy):
        if legacy:
            # The legacy stores tbar and tau as float32 and computes from those.
            tbar = np.asarray(tbar, dtype=np.float32)
            tau = np.asarray(tau, dtype=np.float32)
        self.tbar = np.asarray(tbar, dtype=np.float64)
        self.tau = np.asarray(tau, dtype=np.float64)
        self.n_frames = np.asarray(n_frames)
        self.n = self.tbar.size
        self.u = u
        self.start = start
        self.legacy = legacy
        k = optimal_weights(self.tbar, self.tau, self.n_frames, u=u, start=start)
        # The legacy stores K as float32 and fits with those values.
        self.full_weights = k.astype(np.float32) if legacy else k
        self._cache = {}

    def _coefs(self, k, stop):
        if self.legacy:
            coef, factor = legacy_slope_coefficients(
                k, self.tbar, self.tau, self.n_frames, start=self.start, stop=stop
            )
            return float(coef), float(factor) ** 2
        return slope_variance_coefficients(k, self.tbar, self.tau, self.n_frames)

    def legacy_plan(self, stop: int) -> _Plan:
        """Plan of a legacy ``jump_detect`` call truncated at ``stop`` (``T``)."""
        key = ("legacy", stop)
        if key not in self._cache:
            if stop == self.n:
                k = self.full_weights
            else:
                # two-point weights in float32 arithmetic, as the legacy
                t32 = self.tbar.astype(np.float32)
                k = np.zeros(self.n, np.float32)
                k[stop - 1] = np.float32(1.0) / (t32[stop - 1] - t32[self.start])
                k[self.start] = -k[stop - 1]
            coef_p, coef_r = self._coefs(k, stop)
            tests = legacy_tests(
                k.astype(np.float64),
                self.tbar,
                self.tau,
                self.n_frames,
                start=self.start,
                stop=stop,
            )
            kind = "full" if stop == self.n else "two_point"
            self._cache[key] = _Plan(k.astype(np.float64), coef_p, coef_r, tests, kind)
        return self._cache[key]

    def plan(self, labels: NDArray[np.int8]) -> _Plan:
        """Slope plan (default mode) for a pixel's segment labels (-1 = not used).

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
            plan = _Plan(None, np.nan, np.nan, empty_tests(self.n), kind)
        else:
            coef_p, coef_r = self._coefs(k, self.n)
            plan = _Plan(k, coef_p, coef_r, self.tests(labels, 0), kind)
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


def end_slices(groupdq: NDArray[np.uint8]) -> NDArray[np.int8]:
    """Last unsaturated resultant of each pixel, -1 when none saturates.

    Legacy SLICEOUT definition (docs/output.rst): for ``iend = 1..n-1`` ascending,
    ``endslice = iend - 1`` where resultant ``iend`` is SATURATED and ``iend - 1`` is
    not.

    Parameters
    ----------
    groupdq : ndarray, shape (n, ...), uint8
        Group flags.

    Returns
    -------
    ndarray of int8, shape groupdq.shape[1:]
    """
    out = np.full(groupdq.shape[1:], -1, dtype=np.int8)
    sat_prev = (groupdq[0] & _SAT) != 0
    for iend in range(1, groupdq.shape[0]):
        sat = (groupdq[iend] & _SAT) != 0
        out[sat & ~sat_prev] = iend - 1
        sat_prev = sat
    return out


def _significance(stats, tests, dvardt, rn2):
    """``z`` of each test (rows) for each pixel (columns); 0 where variance is 0.

    ``dvardt`` is per pixel (shape (m,)) or per test and pixel (shape (t, m)).
    """
    if dvardt.ndim == 1:
        var = np.multiply.outer(tests.poisson, dvardt)
    else:
        var = tests.poisson[:, None] * dvardt
    var += np.multiply.outer(tests.read, rn2)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = stats / np.sqrt(var)
    z[~(var > 0)] = 0.0
    return z


def _as_block(array, ysl, xsl, dtype):
    return np.asarray(array[ysl, xsl], dtype=dtype).ravel()


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
        Reproduce the legacy behaviour (module docstring).
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

    Returns
    -------
    RampFitResult

    Raises
    ------
    ValueError
        With fewer than two used resultants (the legacy crashes, docs/ramp_fit/description.rst, differences from the legacy), or invalid
        thresholds in default mode.
    """
    opt = RampOptPars() if opt is None else opt
    thresholds = JumpThresholds() if thresholds is None else thresholds
    n, ny, nx = data.shape
    if groupdq.shape != data.shape or pixeldq.shape != (ny, nx):
        raise ValueError(
            f"groupdq {groupdq.shape} / pixeldq {pixeldq.shape} do not match data "
            f"{data.shape}"
        )
    check_engine(engine)
    if not legacy:
        thresholds.check()
    planner = _Planner(tbar, tau, n_frames, u=opt.u, start=start, legacy=legacy)
    full = planner.legacy_plan(n) if legacy else planner.plan(_full_labels(n, start))
    sy, sx = ny - 2 * border, nx - 2 * border
    slope = np.empty((sy, sx), np.float32)
    var_p = np.empty((sy, sx), np.float32)
    var_r = np.empty((sy, sx), np.float32)
    flags = np.zeros((sy, sx), np.uint32)
    endslice = np.empty((sy, sx), np.int8) if n < MAX_ENDSLICE_RESULTANTS else None
    matrix = np.vstack([full.slope[None, :], full.tests.weights])
    special = []  # flat science indices handled outside the block pass
    truncate = []  # legacy: their truncation T
    jumps = []
    counts = {"full": 0, "two_point": 0, "segments": 0, "no_slope": 0, "jump": 0}
    rows = max(1, BLOCK_PIXELS // max(sx, 1))
    if not legacy and engine == "numba":
        inputs = (data, groupdq, gain, read_noise, border, matrix)
        outputs = (slope, var_p, var_r, flags, endslice)
        special.append(
            _screen_compiled(inputs, full, planner, start, thresholds, outputs, threads)
        )
        counts["full"] += int(sy * sx - special[0].size)
    else:
        for r0 in range(0, sy, rows):
            r1 = min(sy, r0 + rows)
            ysl, xsl = slice(border + r0, border + r1), slice(border, border + sx)
            d = np.asarray(data[:, ysl, xsl], dtype=np.float64).reshape(n, -1)
            gq = np.asarray(groupdq[:, ysl, xsl]).reshape(n, -1)
            g = np.clip(_as_block(gain, ysl, xsl, np.float64), *GAIN_CLIP)
            rn = _as_block(read_noise, ysl, xsl, np.float64)
            offset = r0 * sx
            out = (slice(r0, r1), slice(None))

            stats = matrix @ d
            s = stats[0]
            if legacy:
                s = _legacy_slope(full.slope, d)
            dvardt = np.maximum(s / g, 0.0)
            if legacy:
                var_p[out] = np.square(
                    np.sqrt(full.coef_poisson * dvardt).astype(np.float32)
                ).reshape(r1 - r0, sx)
                var_r[out] = np.square(
                    (rn * np.sqrt(full.coef_read)).astype(np.float32)
                ).reshape(r1 - r0, sx)
            else:
                var_p[out] = (full.coef_poisson * dvardt).reshape(r1 - r0, sx)
                var_r[out] = (full.coef_read * rn * rn).reshape(r1 - r0, sx)
            slope[out] = s.reshape(r1 - r0, sx)

            sat = (gq & _SAT) != 0
            if endslice is not None:
                endslice[out] = end_slices(gq.reshape(n, r1 - r0, sx))
            block_flags = _group_flags(gq, sat, start=start, legacy=legacy)

            if full.tests.count:
                z = _significance(stats[1:], full.tests, dvardt, rn * rn)
                thr = jump_threshold(s, thresholds)
                if legacy:
                    # One-sided, on the float32 significance as the legacy computes it.
                    fire = z.astype(np.float32) > thr.astype(np.float32)
                else:
                    fire = np.abs(z) > thr - SCREEN_MARGIN
                hit = fire.any(axis=0)
            else:
                fire = None
                hit = np.zeros(d.shape[1], bool)

            if legacy:
                keep = hit & ~sat[n - 1]
                if keep.any():
                    pix = np.flatnonzero(keep)
                    t_idx, p_idx = np.nonzero(fire[:, pix])
                    res = full.tests.flag[t_idx]
                    jumps.append(np.column_stack([res, pix[p_idx] + offset]))
                    block_flags[pix] |= _P_JUMP
                trunc = _legacy_truncation(gq, sat, start)
                sel = np.flatnonzero(trunc)
                if sel.size:
                    special.append(sel + offset)
                    truncate.append(trunc[sel])
                counts["full"] += int(d.shape[1] - sel.size)
            else:
                used = np.bitwise_or.reduce(gq[start:], axis=0) & _UNUSABLE
                bad = (used != 0) | ~np.isfinite(d[start:]).all(axis=0)
                sel = np.flatnonzero(bad | hit)
                if sel.size:
                    special.append(sel + offset)
                counts["full"] += int(d.shape[1] - sel.size)
            flags[out] = block_flags.reshape(r1 - r0, sx)

    special = np.concatenate(special) if special else np.zeros(0, np.intp)
    if special.size:
        ys, xs = np.divmod(special, sx)
        ys += border
        xs += border
        d = np.asarray(data[:, ys, xs], dtype=np.float64)
        g = np.clip(np.asarray(gain[ys, xs], dtype=np.float64), *GAIN_CLIP)
        rn2 = np.square(np.asarray(read_noise[ys, xs], dtype=np.float64))
        if legacy:
            res = _fit_truncated_legacy(
                d, g, rn2, np.concatenate(truncate), planner, thresholds
            )
        else:
            gq = np.asarray(groupdq[:, ys, xs])
            res = _fit_special(d, gq, g, rn2, planner, thresholds, start)
        s_sp, vp_sp, vr_sp, jump_sp, no_slope, kinds = res
        slope.ravel()[special] = s_sp
        var_p.ravel()[special] = vp_sp
        var_r.ravel()[special] = vr_sp
        flat_flags = flags.ravel()
        has_jump = jump_sp.any(axis=1)
        flat_flags[special[has_jump]] |= _P_JUMP
        flat_flags[special[no_slope]] |= _P_DNU
        pix, res_idx = np.nonzero(jump_sp)
        jumps.append(np.column_stack([res_idx, special[pix]]))
        for kind, number in kinds.items():
            counts[kind] = counts.get(kind, 0) + number
    jumps = np.concatenate(jumps) if jumps else np.zeros((0, 2), np.intp)
    jy, jx = np.divmod(jumps[:, 1], sx)
    jumps = np.column_stack([jumps[:, 0], jy, jx]).astype(np.intp)
    counts["jump"] = int(np.unique(jumps[:, 1] * sx + jumps[:, 2]).size)

    pdq = np.asarray(pixeldq[border : border + sy, border : border + sx])
    # In place in ``flags``, by row blocks: no full-frame temporaries (they set the
    # peak of a run at 12 resultants).
    for r0 in range(0, sy, rows):
        block, pdq_block = flags[r0 : r0 + rows], pdq[r0 : r0 + rows]
        block[(pdq_block & _P_REF) != 0] = 0
        block |= pdq_block.astype(np.uint32, copy=False)
    dq = flags
    return RampFitResult(
        slope=slope,
        var_poisson=var_p,
        var_rnoise=var_r,
        dq=dq.astype(np.uint32, copy=False),
        weights=planner.full_weights,
        jumps=jumps,
        endslice=endslice,
        counts=counts,
    )


def _screen_compiled(inputs, full, planner, start, thresholds, outputs, threads):
    """The compiled pass over every science pixel; returns the special ones (flat).

    ``inputs`` = (data, groupdq, gain, read_noise, border, matrix); ``outputs`` =
    (slope, var_p, var_r, flags, endslice), filled in place.
    """
    data, groupdq, gain, read_noise, border, matrix = inputs
    slope, var_p, var_r, flags, endslice = outputs
    from romanimpreprocess.parallel import kernel_threads
    from romanimpreprocess.ramp_fitting.ramp_fit_kernels import (
        screen_ramps,
        structured_tests,
    )

    sy, sx = slope.shape
    special = np.zeros((sy, sx), bool)
    group_to_pixel = np.array(
        [[int(g), int(p)] for g, p in _GROUP_TO_PIXEL], dtype=np.int64
    ).reshape(-1, 2)
    bits = np.array(
        [int(_SAT), int(_DNU), int(_UNUSABLE), int(_P_DNU), int(_P_SAT)], np.int64
    )
    limits = np.array(
        [
            thresholds.sthresh_a,
            thresholds.sthresh_b,
            thresholds.ithresh_a,
            thresholds.ithresh_b,
        ],
        dtype=np.float64,
    )
    no_endslice = np.zeros((1, 1), np.int8)
    n, ntests = matrix.shape[1], matrix.shape[0] - 1
    used = n - start
    # the statistics through C⁻¹ d where that is fewer operations than dot products
    structure = None
    if 7 * used + 4 * ntests < used * ntests:
        structure = structured_tests(
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
    with kernel_threads(threads):
        screen_ramps(
            np.ascontiguousarray(data),
            np.ascontiguousarray(groupdq),
            np.ascontiguousarray(gain),
            np.ascontiguousarray(read_noise),
            int(border),
            np.ascontiguousarray(matrix, dtype=np.float64),
            np.ascontiguousarray(full.tests.poisson, dtype=np.float64),
            np.ascontiguousarray(full.tests.read, dtype=np.float64),
            factors,
            structure["coefs"],
            structure["step_at"],
            structure["free_at"],
            float(full.coef_poisson),
            float(full.coef_read),
            int(start),
            limits,
            float(SCREEN_MARGIN),
            np.array(GAIN_CLIP, dtype=np.float64),
            group_to_pixel,
            bits,
            slope,
            var_p,
            var_r,
            flags,
            endslice if endslice is not None else no_endslice,
            special,
        )
    return np.flatnonzero(special)


def _full_labels(n, start):
    return np.where(np.arange(n) >= start, 0, -1).astype(np.int8)


def _group_flags(gq, sat, *, start, legacy):
    """Pixel flags that follow from the group flags alone (docs/ramp_fit/description.rst)."""
    n = gq.shape[0]
    nonsat = np.bitwise_or.reduce(np.where(sat, np.uint8(0), gq), axis=0)
    all_dnu = (np.bitwise_and.reduce(gq, axis=0) & _DNU) != 0
    any_sat = sat.any(axis=0)
    if legacy:
        # Raw group bits (bit 7 WFI18_TRANSIENT lands as pixel OUTLIER, docs/ramp_fit/description.rst, differences from the legacy).
        out = (nonsat & ~_DNU).astype(np.uint32)
        if 1 + start < n:
            out[sat[1 + start]] |= _P_DNU  # "saturated too fast"
    else:
        out = np.zeros(gq.shape[1], np.uint32)
        for gflag, pflag in _GROUP_TO_PIXEL:
            out[(nonsat & gflag) != 0] |= pflag
    out[all_dnu] |= _P_DNU
    out[any_sat] |= _P_SAT
    return out


def _legacy_truncation(gq, sat, start):
    """``T`` of the legacy truncated refit per pixel (0 = none)."""
    n = gq.shape[0]
    trunc = np.zeros(gq.shape[1], np.int16)
    for iend in range(n - 1, 2 + start, -1):
        trunc[sat[iend] & ~sat[iend - 1]] = iend
    return trunc


def _legacy_slope(weights, d):
    """``sum_t K_t (d_t - d_1)`` as the legacy evaluates it.

    float32 weights and differences, products and the running sum over ``t`` rounded
    to float32 (numpy's einsum), so that ``legacy_compat`` slopes match the legacy's
    bits; ``d`` holds float32 values (possibly in a float64 array).
    """
    k = np.asarray(weights, dtype=np.float32)
    d32 = np.asarray(d[: k.size], dtype=np.float32)
    return np.einsum("t,tm->m", k, d32 - d32[1])


def _fit_truncated_legacy(d, g, rn2, trunc, planner, thresholds):
    """Legacy two-point refits of pixels first saturating at ``T`` (per ``T``)."""
    m = d.shape[1]
    s_out = np.empty(m, np.float32)
    vp_out = np.empty(m, np.float32)
    vr_out = np.empty(m, np.float32)
    jump = np.zeros((m, planner.n), bool)
    kinds = {"two_point": m}
    for stop in np.unique(trunc):
        members = np.flatnonzero(trunc == stop)
        plan = planner.legacy_plan(int(stop))
        dm = d[:, members]
        s = _legacy_slope(plan.slope, dm)
        dvardt = np.maximum(s / g[members], 0.0)
        s_out[members] = s
        vp_out[members] = np.square(
            np.sqrt(plan.coef_poisson * dvardt).astype(np.float32)
        )
        vr_out[members] = np.square(
            (np.sqrt(rn2[members]) * np.sqrt(plan.coef_read)).astype(np.float32)
        )
        if plan.tests.count:
            stats = plan.tests.weights @ dm
            z = _significance(stats, plan.tests, dvardt, rn2[members])
            thr = jump_threshold(s, thresholds).astype(np.float32)
            fire = z.astype(np.float32) > thr
            t_idx, p_idx = np.nonzero(fire)
            jump[members[p_idx], plan.tests.flag[t_idx]] = True
    return s_out, vp_out, vr_out, jump, np.zeros(m, bool), kinds


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
    z = np.abs(_significance(amp, tests, dvardt_t, rn2[members]))
    fire = z > jump_threshold(s_out[members], thresholds)
    # Which firing test to act on: the most significant improvement of the fit, all
    # models compared under the covariance the weights assume (u of the bin): chi²
    # gain z² with one degree of freedom for a single difference; for a double
    # difference the gain of also freeing the dropped resultant is added, with two
    # degrees of freedom. (Comparing z alone favours double differences, whose models
    # have fewer residual degrees of freedom, and per-test variances favour wrong
    # models whose slope comes out low.)
    score = _log_p_value(amp, tests, dm, u_bin, rn2[members])
    return _choose(-score, fire)


def _choose(rank, fire):
    """Index of the firing test with the largest ``rank`` per pixel; -1 if none."""
    ranked = np.where(fire, rank, -np.inf)
    best = np.argmax(ranked, axis=0)
    ok = np.isfinite(ranked[best, np.arange(rank.shape[1])])
    return np.where(ok, best, -1)


def _log_p_value(amp, tests, dm, u, rn2):
    """Log p-value of each test's fit improvement under the bin's covariance."""
    dvardt = u * rn2  # the covariance σ²(diag(1/N) + u P) of the test weights
    chi2 = np.square(_significance(amp, tests, dvardt, rn2))
    double = tests.double
    if double.any():
        out_tests = JumpTests(
            weights=tests.outlier[double],
            poisson=tests.outlier_poisson[double],
            read=tests.outlier_read[double],
            flag=tests.flag[double],
            double=double[double],
        )
        free = _significance(out_tests.weights @ dm, out_tests, dvardt, rn2)
        chi2[double] += np.square(free)
    logp = np.empty_like(chi2)
    # chi² survival: one dof 2 Φ(-√x), two dof exp(-x/2)
    logp[~double] = special.log_ndtr(-np.sqrt(chi2[~double])) + np.log(2.0)
    logp[double] = -0.5 * chi2[double]
    return logp


def legacy_error_roundtrip(
    var_poisson: NDArray[np.float32], var_rnoise: NDArray[np.float32]
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """The legacy float16 round trip of the slope errors (docs/ramp_fit/description.rst, output and differences from the legacy).

    The legacy stores ``err = hypot(σ_R, σ_P)`` and ``var_poisson = σ_P²`` as float16
    and rebuilds ``σ_P = sqrt(var_poisson)``, ``σ_R = sqrt(max(err² - σ_P², 0))``.

    Parameters
    ----------
    var_poisson, var_rnoise : ndarray, float32
        Variances from the fit, DN²/s².

    Returns
    -------
    tuple of ndarray, float32
        ``(err, var_poisson, var_rnoise)`` after the round trip (new arrays).
    """
    sig_p = np.sqrt(var_poisson, dtype=np.float32)
    sig_r = np.sqrt(var_rnoise, dtype=np.float32)
    err16 = np.hypot(sig_r, sig_p).astype(np.float16).astype(np.float32)
    vp16 = np.square(sig_p).astype(np.float16).astype(np.float32)
    sig_p = np.sqrt(vp16)
    vp = np.square(sig_p)
    vr = np.maximum(np.square(err16) - vp, np.float32(0.0))
    err = np.sqrt(vp + vr)
    return err, vp, vr
