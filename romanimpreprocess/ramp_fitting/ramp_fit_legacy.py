"""The legacy fixed-weight ramp fit, bit for bit (``legacy_compat``).

`fit_ramps_legacy` reproduces romanimpreprocess 1.0.0's ``utils.fitting.ramp_fit``
(docs/ramp_fit/description.rst, differences from the legacy; docs/legacy_parity.rst):
full-ramp weights K for every pixel whatever its flags; the pixels whose first
SATURATED resultant is ``iend`` (``n-1 >= iend >= 3+start``) are refitted with the
two-point slope over ``start..iend-1``; one-sided residual tests (`legacy_tests`)
without refit, flags on the earlier resultant, full-ramp flags kept only for pixels
not saturated in the last resultant; float32 weights, slopes and variance
coefficients as the legacy computes them (`legacy_slope_coefficients`); raw group bits
OR-ed into the pixel flags. `legacy_error_roundtrip` is the legacy's float16 storage of
the errors. The default fit (`ramp_fit.fit_ramps`) dispatches here for ``legacy=True``.
"""

import numpy as np
from numpy.typing import NDArray

from romanimpreprocess.ramp_fitting.jumps import (
    JumpTests,
    JumpThresholds,
    jump_threshold,
)
from romanimpreprocess.ramp_fitting.optimal_weights import (
    RampOptPars,
    optimal_weights,
    slope_variance_coefficients,
)
from romanimpreprocess.ramp_fitting.ramp_fit_frame import (
    DNU,
    P_DNU,
    P_JUMP,
    SAT,
    FrameFit,
    RampFitResult,
    SlopePlan,
    row_blocks,
    saturation_and_dnu_flags,
    significance,
)

__all__ = [
    "fit_ramps_legacy",
    "legacy_error_roundtrip",
    "legacy_slope_coefficients",
    "legacy_tests",
]


def legacy_slope_coefficients(
    weights32: NDArray[np.float32],
    tbar: NDArray,
    tau: NDArray,
    n_frames: NDArray,
    *,
    start: int,
    stop: int,
) -> tuple[np.float32, np.float32]:
    """``coef`` and ``sqrt(ΣK²/N)`` evaluated as the legacy code does (float32).

    ``coef = Σ_{i=start}^{stop-1} [K_i² tau_i + 2 Σ_{j=start}^{i-1} K_i K_j tbar_j]``
    accumulated in float32 from float32 K, tau and tbar (docs/ramp_fit/description.rst).

    Parameters
    ----------
    weights32 : ndarray, shape (n,), float32
        Weights as the legacy stores them.
    tbar, tau : ndarray, shape (n,)
        Read times (cast to float32 as the legacy stores them).
    n_frames : ndarray, shape (n,)
        Frames per resultant.
    start, stop : int
        Resultants ``start..stop-1`` enter the sums.

    Returns
    -------
    tuple of numpy.float32
        ``(coef, sqrt(Σ K²/N))``.
    """
    k = np.asarray(weights32, dtype=np.float32)
    t32 = np.asarray(tbar, dtype=np.float32)
    tau32 = np.asarray(tau, dtype=np.float32)
    nf = np.asarray(n_frames)
    coef = np.float32(0.0)
    ksq = np.float32(0.0)
    for i in range(start, stop):
        coef += k[i] * k[i] * tau32[i]
        for j in range(start, i):
            coef += np.float32(2.0) * k[i] * k[j] * t32[j]
        ksq += k[i] * k[i] / np.float32(nf[i])
    return np.float32(coef), np.float32(np.sqrt(ksq))


def legacy_tests(
    weights: NDArray,
    tbar: NDArray,
    tau: NDArray,
    n_frames: NDArray,
    *,
    start: int,
    stop: int,
) -> JumpTests:
    """The legacy residual tests of one ``jump_detect`` call (docs/ramp_fit/description.rst).

    Pairs ``(i, i+di)`` for ``i = start..stop-2`` with ``di in {1, 2}``, but only
    ``di = 1`` when ``i = stop-2`` or when ``stop - 1 - start == 2``; the statistic is
    ``δ = (d_{i+di} - d_i)/Δ - s`` with ``s = K·d``, i.e. ``w = (e_{i+di} - e_i)/Δ - K``;
    the flag goes on resultant ``i``. One-sided: a test fires when ``δ`` is *above*
    the threshold.

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
            rows.append((w, i, di == 2))
    if not rows:
        return JumpTests(
            weights=np.zeros((0, k.size)),
            poisson=np.zeros(0),
            read=np.zeros(0),
            flag=np.zeros(0, np.intp),
            double=np.zeros(0, bool),
        )
    weights = np.array([r[0] for r in rows])
    # One vector at a time: legacy_compat reproduces the legacy's float32 threshold
    # comparison from exactly these coefficient values.
    pairs = [slope_variance_coefficients(w, tbar, tau, n_frames) for w in weights]
    return JumpTests(
        weights=weights,
        poisson=np.array([c[0] for c in pairs]),
        read=np.array([c[1] for c in pairs]),
        flag=np.array([r[1] for r in rows], dtype=np.intp),
        double=np.array([r[2] for r in rows], dtype=bool),
    )


class _LegacyPlanner:
    """The legacy's slope plans: full ramp, and two-point up to each truncation."""

    def __init__(self, tbar, tau, n_frames, *, u, start):
        # The legacy stores tbar and tau as float32 and computes from those.
        self.tbar = np.asarray(np.asarray(tbar, dtype=np.float32), dtype=np.float64)
        self.tau = np.asarray(np.asarray(tau, dtype=np.float32), dtype=np.float64)
        self.n_frames = np.asarray(n_frames)
        self.n = self.tbar.size
        self.start = start
        k = optimal_weights(self.tbar, self.tau, self.n_frames, u=u, start=start)
        # The legacy stores K as float32 and fits with those values.
        self.full_weights = k.astype(np.float32)
        self._cache = {}

    def plan(self, stop: int) -> SlopePlan:
        """Plan of a legacy ``jump_detect`` call truncated at ``stop`` (``T``)."""
        if stop not in self._cache:
            if stop == self.n:
                k = self.full_weights
            else:
                # two-point weights in float32 arithmetic, as the legacy
                t32 = self.tbar.astype(np.float32)
                k = np.zeros(self.n, np.float32)
                k[stop - 1] = np.float32(1.0) / (t32[stop - 1] - t32[self.start])
                k[self.start] = -k[stop - 1]
            coef, factor = legacy_slope_coefficients(
                k, self.tbar, self.tau, self.n_frames, start=self.start, stop=stop
            )
            tests = legacy_tests(
                k.astype(np.float64),
                self.tbar,
                self.tau,
                self.n_frames,
                start=self.start,
                stop=stop,
            )
            kind = "full" if stop == self.n else "two_point"
            self._cache[stop] = SlopePlan(
                k.astype(np.float64), float(coef), float(factor) ** 2, tests, kind
            )
        return self._cache[stop]


def _legacy_slope(weights, d):
    """``sum_t K_t (d_t - d_1)`` as the legacy evaluates it.

    float32 weights and differences, products and the running sum over ``t`` rounded
    to float32 (numpy's einsum), so that ``legacy_compat`` slopes match the legacy's
    bits; ``d`` holds float32 values (possibly in a float64 array).
    """
    k = np.asarray(weights, dtype=np.float32)
    d32 = np.asarray(d[: k.size], dtype=np.float32)
    return np.einsum("t,tm->m", k, d32 - d32[1])


def _legacy_variances(plan, dvardt, sigma_read):
    """Poisson and read variances of the slope, through float32 sigmas as the legacy."""
    var_poisson = np.square(np.sqrt(plan.coef_poisson * dvardt).astype(np.float32))
    var_rnoise = np.square((sigma_read * np.sqrt(plan.coef_read)).astype(np.float32))
    return var_poisson, var_rnoise


def _legacy_group_flags(gq, sat, start):
    """Pixel flags from the group flags, the legacy way.

    Raw group bits (bit 7 WFI18_TRANSIENT lands as pixel OUTLIER,
    docs/ramp_fit/description.rst, differences from the legacy) and DO_NOT_USE when
    resultant ``1+start`` is saturated ("saturated too fast").
    """
    nonsat, out = saturation_and_dnu_flags(gq, sat)
    out |= (nonsat & ~DNU).astype(np.uint32)
    if 1 + start < gq.shape[0]:
        out[sat[1 + start]] |= P_DNU
    return out


def _legacy_truncation(sat, start):
    """``T`` of the legacy truncated refit per pixel (0 = none)."""
    n = sat.shape[0]
    trunc = np.zeros(sat.shape[1], np.int16)
    for iend in range(n - 1, 2 + start, -1):
        trunc[sat[iend] & ~sat[iend - 1]] = iend
    return trunc


def _fit_truncated(d, g, rn2, trunc, planner, thresholds):
    """Legacy two-point refits of pixels first saturating at ``T`` (per ``T``)."""
    m = d.shape[1]
    s_out = np.empty(m, np.float32)
    vp_out = np.empty(m, np.float32)
    vr_out = np.empty(m, np.float32)
    jump = np.zeros((m, planner.n), bool)
    kinds = {"two_point": m}
    for stop in np.unique(trunc):
        members = np.flatnonzero(trunc == stop)
        plan = planner.plan(int(stop))
        dm = d[:, members]
        s = _legacy_slope(plan.slope, dm)
        dvardt = np.maximum(s / g[members], 0.0)
        s_out[members] = s
        vp_out[members], vr_out[members] = _legacy_variances(
            plan, dvardt, np.sqrt(rn2[members])
        )
        if plan.tests.count:
            stats = plan.tests.weights @ dm
            z = significance(stats, plan.tests, dvardt, rn2[members])
            thr = jump_threshold(s, thresholds).astype(np.float32)
            fire = z.astype(np.float32) > thr
            t_idx, p_idx = np.nonzero(fire)
            jump[members[p_idx], plan.tests.flag[t_idx]] = True
    return s_out, vp_out, vr_out, jump, np.zeros(m, bool), kinds


def fit_ramps_legacy(
    inputs: tuple,
    *,
    opt: RampOptPars,
    thresholds: JumpThresholds,
    start: int,
    border: int,
) -> RampFitResult:
    """The legacy fit of the science area (module docstring); numpy only.

    `ramp_fit.fit_ramps` checks its arguments and calls this for ``legacy=True``;
    the thresholds are not checked, as in the legacy.

    Parameters
    ----------
    inputs : tuple
        The positional arguments of `ramp_fit.fit_ramps`: ``(data, groupdq, pixeldq,
        gain, read_noise, tbar, tau, n_frames)``.
    opt : RampOptPars
        Operating point of the fixed weights.
    thresholds : JumpThresholds
        Jump thresholds.
    start : int
        First resultant used.
    border : int
        Width of the reference border (not fitted).

    Returns
    -------
    RampFitResult
        ``weights`` float32; ``counts`` without ``segments`` or ``no_slope`` pixels.
    """
    data, groupdq, pixeldq, gain, read_noise, tbar, tau, n_frames = inputs
    n, ny, nx = data.shape
    planner = _LegacyPlanner(tbar, tau, n_frames, u=opt.u, start=start)
    full = planner.plan(n)
    frame = FrameFit(n, ny - 2 * border, nx - 2 * border)
    matrix = np.vstack([full.slope[None, :], full.tests.weights])
    truncate = []  # per block, the truncation T of its special pixels
    for block in row_blocks(data, groupdq, gain, read_noise, border):
        stats = matrix @ block.d
        s = _legacy_slope(full.slope, block.d)
        dvardt = np.maximum(s / block.gain, 0.0)
        var_p, var_r = _legacy_variances(full, dvardt, block.read_noise)
        sat = (block.gq & SAT) != 0
        flags = _legacy_group_flags(block.gq, sat, start)
        if full.tests.count:
            rn = block.read_noise
            z = significance(stats[1:], full.tests, dvardt, rn * rn)
            thr = jump_threshold(s, thresholds)
            # One-sided, on the float32 significance as the legacy computes it; the
            # full-ramp flags are kept only where the last resultant is unsaturated.
            fire = z.astype(np.float32) > thr.astype(np.float32)
            keep = fire.any(axis=0) & ~sat[n - 1]
            if keep.any():
                pix = np.flatnonzero(keep)
                t_idx, p_idx = np.nonzero(fire[:, pix])
                res = full.tests.flag[t_idx]
                frame.jumps.append(np.column_stack([res, pix[p_idx] + block.offset]))
                flags[pix] |= P_JUMP
        trunc = _legacy_truncation(sat, start)
        sel = np.flatnonzero(trunc)
        if sel.size:
            frame.special.append(sel + block.offset)
            truncate.append(trunc[sel])
        frame.counts["full"] += int(block.d.shape[1] - sel.size)
        frame.put_block(block, s, var_p, var_r, flags)

    special = frame.special_inputs(data, gain, read_noise, border)
    if special is not None:
        fitted = _fit_truncated(
            special.d,
            special.gain,
            special.rn2,
            np.concatenate(truncate),
            planner,
            thresholds,
        )
        frame.put_special(special.index, fitted)
    return frame.result(pixeldq, border, planner.full_weights)


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
