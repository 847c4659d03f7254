"""Ramp-fit step: rate image from the calibrated ramp, with jump detection."""

import copy
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from roman_datamodels import datamodels as dm
from roman_datamodels.dqflags import group

from romanimpreprocess.constants import (
    IPC_NOISE_GAIN_KEY,
    REF_BORDER,
    REFPIX_ROW_VARIANCE_KEY,
)
from romanimpreprocess.datamodels import resultant_times
from romanimpreprocess.parallel import step_threads, threads_of_this_thread
from romanimpreprocess.ramp_fitting import likely, ramp_fit, read_variance
from romanimpreprocess.ramp_fitting.jumps import JumpThresholds
from romanimpreprocess.ramp_fitting.optimal_weights import RampOptPars, optimal_weights
from romanimpreprocess.ramp_fitting.ramp_fit_frame import MAX_ENDSLICE_RESULTANTS
from romanimpreprocess.ramp_fitting.ramp_fit_legacy import legacy_error_roundtrip
from romanimpreprocess.stpipe import RipStep
from romanimpreprocess.stpipe.bands import BandPlan
from romanimpreprocess.utils.mapped import release_pages

__all__ = ["RampFitStep"]

log = logging.getLogger(__name__)

_BORDER_NAMES = ("left", "right", "top", "bottom")
# Arrays the L2 schema stores as float16 but the step keeps in float32.
_FLOAT16_FIELDS = ("err", "var_poisson", "var_rnoise", "chisq", "dumo")
_FLOAT16_MAX = float(np.finfo(np.float16).max)


def _save_float16(model, path):
    """Save ``model`` with the float16 fields the schema requires (clipped to range).

    The in-memory model keeps float32 (the next steps work on it); only the file gets
    float16, as the schema demands. The model is restored afterwards.
    """
    kept = {}
    try:
        for key in _FLOAT16_FIELDS:
            if key in model and model[key].dtype != np.float16:
                kept[key] = model[key]
                clipped = np.clip(kept[key], -_FLOAT16_MAX, _FLOAT16_MAX)
                model[key] = clipped.astype(np.float16)
        model.save(path)
    finally:
        for key, value in kept.items():
            model[key] = value


class RampFitStep(RipStep):
    """Fit a count rate to every pixel of the ramp and flag jumps.

    ``algorithm="optimal"`` (default) is the survey's fixed-weight optimal fit with
    single/double-difference jump detection (`romanimpreprocess.ramp_fitting.ramp_fit`);
    ``algorithm="likely"`` is romancal's likelihood fit through stcal
    (`romanimpreprocess.ramp_fitting.likely`). The output is an `ImageModel` of the
    science area: slope (DN/s), pixel flags, err and the Poisson / read-noise
    variances (float32 in memory), with the resultant times, weights and parameters in
    ``processinfo``.
    """

    class_alias = "rip_ramp_fit"
    cal_step_key = "ramp_fit"
    spec = """
        algorithm = option("optimal", "likely", default="optimal")  # fixed-weight fit or romancal likelihood fit
        opt_slope = float(default=0.4, min=0.0)  # RAMP_OPT_PARS slope: rate the weights are optimal for, DN/s
        opt_gain = float(default=1.8)  # RAMP_OPT_PARS gain assumed by the weights, e/DN (> 0)
        opt_sigma_read = float(default=6.5)  # RAMP_OPT_PARS sigma_read assumed by the weights, DN (> 0)
        sthresh_a = float(default=5.5)  # JUMP_DETECT_PARS SthreshA: jump threshold (sigma) at faint slopes
        sthresh_b = float(default=4.5)  # JUMP_DETECT_PARS SthreshB: jump threshold (sigma) at bright slopes
        ithresh_a = float(default=1.0)  # JUMP_DETECT_PARS IthreshA: slope (DN/s) at and below which sthresh_a applies
        ithresh_b = float(default=1000.0)  # JUMP_DETECT_PARS IthreshB: slope (DN/s) at and above which sthresh_b applies
        exclude_first = boolean(default=True)  # do not use resultant 0 (EXCLUDE_FIRST; keep equal to dq_init's)
        rejection_threshold = float(default=4.5, min=0.0)  # likely: jump rejection threshold, sigma (REJECTION_THRESHOLD)
        jump_kw = string(default="")  # likely: JUMP_KW as a YAML/JSON mapping, e.g. "{expand_large_events: true}"
        legacy_compat = boolean(default=False)  # reproduce the legacy 1.0.0 numbers, defects included
        suffix = string(default="rampfit")  # output file suffix
    """
    reference_file_types: ClassVar = ["readnoise", "gain"]

    def check_parameters(self):
        """Problems with this step's parameters, found before the pipeline starts.

        Returns
        -------
        list of str
            One line per problem (empty when the parameters can be used).
        """
        problems = []
        checks = (
            (lambda: RampOptPars(self.opt_slope, self.opt_gain, self.opt_sigma_read)),
            (
                lambda: JumpThresholds(
                    sthresh_a=self.sthresh_a,
                    sthresh_b=self.sthresh_b,
                    ithresh_a=self.ithresh_a,
                    ithresh_b=self.ithresh_b,
                ).check()
            ),
        )
        if self.algorithm == "likely":
            checks += ((lambda: likely.parse_jump_kw(self.jump_kw)),)
        for check in checks:
            try:
                check()
            except (TypeError, ValueError) as err:
                problems.append(str(err))
        return problems

    def process(self, dataset):
        """Return the rate `ImageModel` of the science area."""
        if self.algorithm == "optimal":
            return self.process_bands(dataset)
        model = self.open_ramp(dataset)
        context = self._prepare(model)
        began = time.perf_counter()
        arrays, weights = self._fit_likely(
            model, context.references, context.read_pattern, context.frame_time,
            context.start,
        )  # fmt: skip
        elapsed = time.perf_counter() - began
        return self._finish(model, context, arrays, weights, elapsed)

    def band_plan(self, model):
        """The optimal fit, band by band (``algorithm="optimal"`` only).

        Halo: the ``REF_BORDER`` rows around the rows fitted (`ramp_fit.fit_ramps`
        fits the inside of what it is given; every pixel is fitted alone, so these
        rows need not be exact). The outputs are full-frame planes filled band by
        band; `finish` makes the `ImageModel`.
        """
        if self.algorithm != "optimal":
            raise ValueError(
                f"step {self.name}: algorithm {self.algorithm!r} cannot run in row "
                f"bands (only 'optimal')"
            )
        context = self._prepare(model)
        return _RampFitPlan(self, model, context)

    def _prepare(self, model):
        """Checks, references, resultant times and the handed-over noise models."""
        nres = model.data.shape[0]
        exposure = model.meta.exposure
        read_pattern = [[int(k) for k in frames] for frames in exposure.read_pattern]
        frame_time = float(exposure.frame_time)
        if len(read_pattern) != nres:
            raise ValueError(
                f"meta.exposure.read_pattern has {len(read_pattern)} resultants but "
                f"the ramp has {nres}"
            )
        if not (np.isfinite(frame_time) and frame_time > 0):
            raise ValueError(f"meta.exposure.frame_time must be > 0, got {frame_time}")
        references = {}
        for reftype in self.reference_file_types:
            ref = self.load_reference(model, reftype, fields=["data"])
            if ref is None:
                raise ValueError(
                    f"step {self.name}: the ramp fit needs a {reftype} reference file; "
                    f"override_{reftype}='N/A' is not allowed"
                )
            references[reftype] = ref.data
        tbar, tau, n_frames = resultant_times(read_pattern, frame_time)
        start = self._start(model)
        # Noise models handed over by the IPC and refpix steps (not for the L2; taken
        # out of the ramp's processinfo so that nothing holds them after the fit).
        handed = model.get("processinfo", {})
        self._ipc_gain = handed.pop(IPC_NOISE_GAIN_KEY, None)
        self._row_variance = handed.pop(REFPIX_ROW_VARIANCE_KEY, None)
        info = dict(model["processinfo"]) if "processinfo" in model else {}
        if self.algorithm == "optimal" and (
            (self.jump_kw or "").strip() or self.rejection_threshold != 4.5
        ):
            log.info("jump_kw and rejection_threshold apply to algorithm='likely' only")
        return _FitContext(
            read_pattern=read_pattern,
            frame_time=frame_time,
            references=references,
            tbar=tbar,
            tau=tau,
            n_frames=n_frames,
            start=start,
            info=info,
        )

    def _finish(self, model, context, arrays, weights, elapsed):
        """The `ImageModel` of the fitted ``arrays``, with processinfo and the log."""
        self._ipc_gain = self._row_variance = None  # not held for the rest of the run
        image = self._image_model(model, arrays)
        info = context.info
        info.update(
            self._processinfo(
                context.read_pattern, context.frame_time, context.tbar, context.tau,
                context.n_frames, weights,
            )
        )  # fmt: skip
        info["exclude_first"] = bool(context.start)
        if arrays.get("endslice") is not None:
            info["endslice"] = arrays["endslice"]
        image["processinfo"] = info
        n_jump = int(arrays["n_jump"])
        npix = image.data.size
        log.info(
            "Ramp fit (%s%s): %d x %d science pixels in %.2f s; %d with jumps "
            "(%.3f%%), %d without a slope (DO_NOT_USE)",
            self.algorithm,
            ", legacy_compat" if self.legacy_compat else "",
            image.data.shape[0],
            image.data.shape[1],
            elapsed,
            n_jump,
            100.0 * n_jump / max(npix, 1),
            int(np.count_nonzero(~np.isfinite(image.data))),
        )
        self.record_cal_step(image, "COMPLETE")
        return image

    def output_writer(self):
        """Saving a ramp-fit product casts err, variances, chisq, dumo to float16."""
        return _save_float16

    # ---------------------------------------------------------------- helpers
    def _start(self, model):
        """First resultant used, from ``exclude_first``; warn if dq_init disagrees."""
        start = 1 if self.exclude_first else 0
        info = model.get("processinfo", {})
        if "exclude_first" in info and bool(info["exclude_first"]) != bool(start):
            log.warning(
                "exclude_first=%s here but %s in dq_init (processinfo); using %s",
                bool(start),
                bool(info["exclude_first"]),
                bool(start),
            )
        b = REF_BORDER
        first = model.groupdq[0, b:-b, b:-b]
        flagged = first.size and np.all(first & np.uint8(group.DO_NOT_USE))
        if start == 0 and flagged:
            if self.legacy_compat:
                log.warning(
                    "exclude_first=False but resultant 0 is DO_NOT_USE on every "
                    "pixel; legacy_compat fits it anyway (the legacy ignores the flag)"
                )
            else:
                log.warning(
                    "exclude_first=False but resultant 0 is DO_NOT_USE on every "
                    "pixel (dq_init exclude_first=True?): the fit starts at resultant 1"
                )
                start = 1
        return start

    def _optimal_parameters(self, start):
        """`RampOptPars` and `JumpThresholds` of the optimal fit (logged)."""
        opt = RampOptPars(
            slope=self.opt_slope, gain=self.opt_gain, sigma_read=self.opt_sigma_read
        )
        thresholds = JumpThresholds(
            sthresh_a=self.sthresh_a,
            sthresh_b=self.sthresh_b,
            ithresh_a=self.ithresh_a,
            ithresh_b=self.ithresh_b,
        )
        log.info(
            "Optimal weights at slope %g DN/s, gain %g e/DN, sigma_read %g DN "
            "(u = %.6g 1/s), first resultant used %d; jump thresholds %s",
            opt.slope,
            opt.gain,
            opt.sigma_read,
            opt.u,
            start,
            thresholds.as_dict(),
        )
        self._opt, self._thresholds = opt, thresholds
        return opt, thresholds

    def _calibration_variance(
        self, shape, var_rnoise, references, weights, n_frames, read_scale=1.0,
        rows=None, samples=None,
    ):  # fmt: skip
        """`read_variance.calibration_read_variance` with the earlier steps' models.

        ``shape``: the frame's ``(ny, nx)``; ``var_rnoise`` holds the science rows
        ``rows`` (a slice of science rows; default all). ``read_scale``: the fit's
        read noise over the file's (the likelihood fit is given σ√2, as romancal
        does), so that the pixel's weight sum is ``var_rnoise / (read_scale σ)²``.
        ``samples``: a list given the (before, after) values of every 64th row
        and column (the log's median ratio); default: logged here.
        """
        b = REF_BORDER
        ny, nx = shape
        rows = slice(0, ny - 2 * b) if rows is None else rows
        ipc_gain = self._ipc_gain
        if ipc_gain is not None:
            ipc_gain = np.asarray(ipc_gain)
            if ipc_gain.shape == (ny, nx):  # kernel over the full frame
                ipc_gain = ipc_gain[b:-b, b:-b]
            if ipc_gain.shape != (ny - 2 * b, nx - 2 * b):
                log.warning(
                    "IPC noise gain of shape %s does not match the science area; "
                    "not used",
                    ipc_gain.shape,
                )
                ipc_gain = self._ipc_gain = None
            else:
                ipc_gain = ipc_gain[rows]
        row_variance = self._row_variance
        if row_variance is not None:
            # ``border`` rows before the science rows, as the function expects
            row_variance = np.asarray(row_variance)[:, rows.start : rows.stop + 2 * b]
        first = -rows.start % 64  # every 64th row of the science area
        before = np.array(var_rnoise[first::64, ::64], dtype=np.float64)
        var_r = read_variance.calibration_read_variance(
            var_rnoise,
            # x * 1.0 == x: no float64 full-frame product for the optimal fit
            _scaled(np.asarray(references["readnoise"])[b:-b, b:-b][rows], read_scale),
            np.asarray(weights, dtype=np.float64),
            n_frames,
            ipc_gain=ipc_gain,
            row_variance=row_variance,
            border=b,
            nx=nx,
            inplace=var_rnoise.dtype == np.float32 and var_rnoise.flags.writeable,
        )
        after = np.asarray(var_r[first::64, ::64], dtype=np.float64)
        if samples is not None:
            samples.append((before, after))
        else:
            self._log_calibration_variance([(before, after)])
        return var_r

    def _log_calibration_variance(self, samples):
        """Log the median ratio of var_rnoise after / before the calibration terms."""
        before = np.concatenate([s[0].ravel() for s in samples])
        after = np.concatenate([s[1].ravel() for s in samples])
        good = np.isfinite(after) & np.isfinite(before) & (before > 0)
        if good.any():
            ratio = float(np.median(after[good] / before[good]))
            log.info(
                "var_rnoise through the calibration: median %.4f x the fit's white "
                "read noise (rounding, IPC %s, refpix rows %s)",
                ratio,
                "on" if self._ipc_gain is not None else "off",
                "on" if self._row_variance is not None else "off",
            )

    def _fit_likely(self, model, references, read_pattern, frame_time, start):
        jump_kw = likely.parse_jump_kw(self.jump_kw)
        log.info(
            "Likelihood ramp fit (stcal), rejection threshold %g, JUMP_KW %s",
            self.rejection_threshold,
            jump_kw,
        )
        res = likely.fit_likely(
            model.data,
            model.groupdq,
            model.pixeldq,
            references["gain"],
            references["readnoise"],
            read_pattern,
            frame_time,
            rejection_threshold=self.rejection_threshold,
            jump_kw=jump_kw,
            start=start,
        )
        var_p, var_r, err = res.var_poisson, res.var_rnoise, res.err
        chisq, dumo = res.chisq, res.dumo
        if not self.legacy_compat:
            # The terms of the calibration, with the optimal fit's full-ramp weights
            # standing in for the likelihood fit's (both GLS weights of the ramp).
            tbar, tau, n_frames = resultant_times(read_pattern, frame_time)
            opt = RampOptPars(
                slope=self.opt_slope, gain=self.opt_gain, sigma_read=self.opt_sigma_read
            )
            weights = optimal_weights(tbar, tau, n_frames, u=opt.u, start=start)
            var_r = self._calibration_variance(
                model.data.shape[1:], var_r, references, weights, n_frames,
                read_scale=likely.SQRT2,
            )  # fmt: skip
            err = np.sqrt(var_p + var_r)
        if self.legacy_compat:
            err, var_p, var_r = legacy_error_roundtrip(var_p, var_r)
            chisq = chisq.astype(np.float16).astype(np.float32)
            dumo = dumo.astype(np.float16).astype(np.float32)
        b = REF_BORDER
        endslice = (
            ramp_fit.end_slices(model.groupdq[:, b:-b, b:-b])
            if model.data.shape[0] < MAX_ENDSLICE_RESULTANTS
            else None
        )
        jumped = np.unique(res.jumps[:, 1:], axis=0).shape[0] if res.jumps.size else 0
        arrays = {
            "data": res.slope,
            "dq": res.dq,
            "err": err,
            "var_poisson": var_p,
            "var_rnoise": var_r,
            "chisq": chisq,
            "dumo": dumo,
            "endslice": endslice,
            "n_jump": jumped,
        }
        self._opt, self._thresholds = None, None
        self._jump_kw = jump_kw
        return arrays, None

    def _image_model(self, model, arrays):
        """The L2 `ImageModel` with the ramp's meta and the fitted arrays."""
        image = dm.ImageModel.create_fake_data(
            defaults={"meta": copy.deepcopy(model.meta)}, shape=(1, 1, 1)
        )
        image.meta.product_type = "l2"
        for key in ("data", "dq", "err", "var_poisson", "var_rnoise", "chisq", "dumo"):
            image[key] = arrays[key]
        image.amp33 = np.array(model.amp33, dtype=np.uint16)
        b = REF_BORDER
        data = model.data
        fallback = {
            "left": lambda a: a[..., :, :b],
            "right": lambda a: a[..., :, -b:],
            "top": lambda a: a[..., -b:, :],
            "bottom": lambda a: a[..., :b, :],
        }
        for side in _BORDER_NAMES:
            key, dq_key = f"border_ref_pix_{side}", f"dq_border_ref_pix_{side}"
            value = model[key] if key in model else fallback[side](data)
            image[key] = np.array(value, dtype=np.float32)
            value = model[dq_key] if dq_key in model else fallback[side](model.pixeldq)
            image[dq_key] = np.array(value, dtype=np.uint32)
        return image

    def _processinfo(self, read_pattern, frame_time, tbar, tau, n_frames, weights):
        """Legacy ``processinfo`` entries of the ramp fit (docs/output.rst)."""
        opt = self._opt.as_dict() if self._opt is not None else None
        jdp = self._thresholds.as_dict() if self._thresholds is not None else None
        meta = {
            "frame_time": frame_time,
            "read_pattern": read_pattern,
            "ngrp": len(read_pattern),
            "tbar": tbar.astype(np.float32),
            "tau": tau.astype(np.float32),
            "N": n_frames.astype(np.int16),
            "nborder": REF_BORDER,
            "K": weights,
            "ramp_opt_pars": opt,
        }
        out = {"meta": meta, "weights": weights, "ramp_opt_pars": opt}
        if jdp is not None:
            meta["jump_detect_pars"] = jdp
            out["jump_detect_pars"] = jdp
        if self.algorithm == "likely":
            out["rejection_threshold"] = float(self.rejection_threshold)
            out["jump_kw"] = dict(self._jump_kw)
        out["ramp_fit_algorithm"] = self.algorithm
        out["legacy_compat_ramp_fit"] = bool(self.legacy_compat)
        return out


def _scaled(array, scale):
    """``scale * array``, or ``array`` itself when ``scale`` is 1 (the same values)."""
    return array if scale == 1.0 else scale * array


@dataclass
class _FitContext:
    """What `RampFitStep._prepare` found: pattern, references, times, start."""

    read_pattern: list
    frame_time: float
    references: dict
    tbar: np.ndarray
    tau: np.ndarray
    n_frames: np.ndarray
    start: int
    info: dict


class _RampFitPlan(BandPlan):
    """The optimal fit of a ramp, band by band, into full science-area planes."""

    def __init__(self, step, model, context):
        super().__init__(halo=REF_BORDER)
        self.step = step
        self.context = context
        self.opt, self.thresholds = step._optimal_parameters(context.start)
        n, ny, nx = model.data.shape
        b = REF_BORDER
        self.shape = (ny, nx)
        science = (ny - 2 * b, nx - 2 * b)
        # np.empty: pages are touched band by band.
        self.arrays = {
            "data": np.empty(science, np.float32),
            "dq": np.empty(science, np.uint32),
            "err": np.empty(science, np.float32),
            "var_poisson": np.empty(science, np.float32),
            "var_rnoise": np.empty(science, np.float32),
            "endslice": (
                np.empty(science, np.int8) if n < MAX_ENDSLICE_RESULTANTS else None
            ),
        }
        self.weights = None
        self.samples = []
        self.elapsed = 0.0
        self.elapsed_deferred = 0.0  # written by the special pixels' thread only
        self.kinds = {}
        # The special pixels of a band (flagged resultants, jumps: numpy on one
        # thread) are fitted on a thread of their own while the next band goes
        # through the earlier steps, which leave a core idle at times.
        self._special_pool = None
        self._pending = None
        if not step.legacy_compat and step_threads() >= 2:
            self._special_pool = ThreadPoolExecutor(
                1, thread_name_prefix="rip-ramp-special"
            )

    def apply(self, band):
        began = time.perf_counter()
        step, context, b = self.step, self.context, REF_BORDER
        ny = band.ny
        # Science rows to fit, and the rows given to the fit (``b`` more each side).
        s0 = max(band.inner.start, b)
        s1 = min(band.inner.stop, ny - b)
        if s1 <= s0:
            return
        given = band.local(slice(s0 - b, s1 + b))
        if given.stop - given.start != s1 - s0 + 2 * b:
            raise ValueError(
                f"band of rows {band.rows.start}:{band.rows.stop} lacks the "
                f"{b} rows around rows {s0}:{s1} (halo too small)"
            )
        # The band's cube is read in place (rows ``given`` of it): a copy of those
        # rows was 205 MB a band at 24 resultants.
        pixeldq = np.ascontiguousarray(band.pixeldq[given])
        rows = slice(s0 - b, s1 + b)
        refs = context.references
        gain = np.asarray(refs["gain"])[rows]
        read_noise = np.asarray(refs["readnoise"])[rows]
        deferred = self._special_pool is not None
        res = ramp_fit.fit_ramps(
            band.data,
            band.groupdq,
            pixeldq,
            gain,
            read_noise,
            context.tbar,
            context.tau,
            context.n_frames,
            opt=self.opt,
            thresholds=self.thresholds,
            start=context.start,
            legacy=step.legacy_compat,
            rows=given,
            defer_special=deferred,
        )
        del pixeldq
        place = (s0, s1, gain, read_noise)
        if deferred:
            self.elapsed += time.perf_counter() - began
            self._wait()  # the band before: the bands' results are stored in order
            self._pending = self._special_pool.submit(self._complete, res, place)
        else:
            self._store(res, place)
            self.elapsed += time.perf_counter() - began

    def _complete(self, fit_special_and_finish, place):
        """The deferred rest of a band's fit, on the special pixels' thread."""
        began = time.perf_counter()
        with threads_of_this_thread(1):
            self._store(fit_special_and_finish(), place)
        self.elapsed_deferred += time.perf_counter() - began

    def _wait(self):
        """Wait for the band in flight (its error, if any, is raised here)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self):
        """Wait for the band in flight and end the special pixels' thread."""
        pool, self._special_pool = self._special_pool, None
        try:
            self._wait()
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def _store(self, res, place):
        """Variances and error of a band's fit, into the science-area planes."""
        step, context, b = self.step, self.context, REF_BORDER
        s0, s1, gain, read_noise = place
        refs = context.references
        for kind, number in res.counts.items():
            self.kinds[kind] = self.kinds.get(kind, 0) + int(number)
        if step.legacy_compat:
            err, var_p, var_r = legacy_error_roundtrip(res.var_poisson, res.var_rnoise)
        else:
            var_p = res.var_poisson
            var_r = step._calibration_variance(
                self.shape, res.var_rnoise, {"readnoise": refs["readnoise"]},
                res.weights, context.n_frames, rows=slice(s0 - b, s1 - b),
                samples=self.samples,
            )  # fmt: skip
            err = np.add(var_p, var_r)
            np.sqrt(err, out=err)  # in place: one plane of the band less
        out = slice(s0 - b, s1 - b)  # science rows
        for key, value in (
            ("data", res.slope),
            ("dq", res.dq),
            ("err", err),
            ("var_poisson", var_p),
            ("var_rnoise", var_r),
            ("endslice", res.endslice),
        ):
            if self.arrays[key] is not None:
                self.arrays[key][out] = value
        self.weights = res.weights
        # The rows' mapped reference pages leave the process with the band.
        release_pages(gain)
        release_pages(read_noise)

    def finish(self, model):
        self.close()
        step = self.step
        log.info("Pixels by kind of fit: %s", self.kinds)
        if self.samples:
            step._log_calibration_variance(self.samples)
        arrays = dict(self.arrays)
        shape = arrays["data"].shape
        # Placeholders; np.zeros pages stay unallocated until written.
        arrays["chisq"] = np.zeros(shape, np.float32)
        arrays["dumo"] = np.zeros(shape, np.float32)
        arrays["n_jump"] = self.kinds.get("jump", 0)
        self.arrays = None
        weights = np.asarray(self.weights, dtype=np.float32)
        elapsed = self.elapsed + self.elapsed_deferred
        return step._finish(model, self.context, arrays, weights, elapsed)
