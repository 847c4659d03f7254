"""`L1ToL2Pipeline`: the whole Level-1 -> Level-2 calibration, in the legacy order.

One model travels through the steps without copies: the decoded ramp cube up to the
ramp fit, then the rate image. Only the final L2 is saved (a step's
``save_results=True`` saves its intermediate product too). Before any work the input
and every reference file named by the steps are opened and checked against the
exposure's geometry, so a wrong file fails in seconds, not after the ramp fit.
"""

import itertools
import logging
import os
import time

import roman_datamodels.datamodels as dm

from romanimpreprocess.constants import REF_BORDER
from romanimpreprocess.datamodels import ExposureInfo, Geometry, open_reference
from romanimpreprocess.datamodels.l2 import fits_path, mask_path
from romanimpreprocess.datamodels.wcs import read_wcs_header
from romanimpreprocess.noise.noise_step import temp_files
from romanimpreprocess.paths import overwrite_problems
from romanimpreprocess.pipeline import legacy
from romanimpreprocess.pipeline.steps import STEP_DEFS
from romanimpreprocess.stpipe import RipPipeline, RipStep

__all__ = ["L1ToL2Pipeline", "ReferenceCheckError", "RunConfigurationError"]

log = logging.getLogger(__name__)


def _chunk_rows(raw):
    """Rows per lz4 chunk of the L1 cube (0: not read by chunks)."""
    from romanimpreprocess.datamodels.l1 import lz4_chunk_rows

    return lz4_chunk_rows(raw)


def _band_starts(ny, height, halo, chunk_rows=0):
    """First frame row of each band of ``height`` rows (the bands tile the frame).

    When the L1 is read in lz4 chunks of ``chunk_rows`` rows and ``height`` is a
    multiple of it, the bands after the first start ``halo`` rows before a chunk
    boundary: each band then needs new rows from whole chunks only (the halo it
    shares with the band before is kept by the reader), so every chunk is
    decompressed once.
    """
    if chunk_rows and height % chunk_rows == 0 and 0 < halo < height:
        return [0, *range(height - halo, ny, height)]
    return list(range(0, ny, height))


class ReferenceCheckError(ValueError):
    """Reference files that do not fit the exposure, found before any work."""


class RunConfigurationError(ValueError):
    """Parameters or outputs that cannot work, found before any work."""


def _flag_non_finite(model, dataset):
    """DO_NOT_USE on every non-finite pixel left unflagged; warn if none is usable.

    The steps flag what they know to be bad (a NaN in a reference array, a pixel
    without a good gain, ...); this is the net under them: no NaN or inf leaves the
    pipeline with a dq of 0.
    """
    import numpy as np
    from roman_datamodels.dqflags import pixel

    bad = ~np.isfinite(model.data)
    # Only pixels with no flag at all: a flagged non-finite pixel (saturated,
    # no gain, ...) keeps the flags its step gave it.
    unflagged = bad & (model.dq == 0)
    if unflagged.any():
        log.warning(
            "%d non-finite pixel(s) not flagged by any step: flagged DO_NOT_USE",
            int(unflagged.sum()),
        )
        model.dq[unflagged] |= np.uint32(pixel.DO_NOT_USE)
    if not (model.dq == 0).any():
        name = dataset if isinstance(dataset, str | os.PathLike) else "the input"
        log.warning(
            "No usable pixel in the L2 of %s: every pixel is flagged (degenerate "
            "data or calibration)",
            name,
        )


class _LogCollector(logging.Handler):
    """Keeps the package's log lines of one run for ``processinfo["log"]``."""

    def __init__(self):
        super().__init__(level=logging.INFO)
        self.lines = []
        self.setFormatter(
            logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s")
        )

    def emit(self, record):
        try:
            self.lines.append(self.format(record))
        except Exception:
            self.handleError(record)


class L1ToL2Pipeline(RipPipeline):
    """Calibrate an L1 exposure into an L2 rate image (romanimpreprocess).

    Steps, in order: dq_init, saturation, refpix, biascorr, dark_decay,
    wfi18_transient, linearity, ipc, ramp_fit, dark_current, flatfield, photom, sky,
    and
    the optional noise realisations (``steps.noise.skip=False``). The product is an ``ImageModel`` (DN/s, science area) with the legacy extras
    (``processinfo``, ``data_withsky``) and, with ``fits_output``, a FITS copy.
    """

    class_alias = "rip_l1l2"

    spec = """
        legacy_compat = boolean(default=False)  # reproduce legacy 1.0.0 numbers: sets legacy_compat on every step that has it (LEGACY_COMPAT)
        fits_output = boolean(default=False)  # also write <output stem>_asdf_to.fits (FITSOUT)
        sliceout = boolean(default=False)  # store processinfo.endslice, last unsaturated resultant per pixel (SLICEOUT)
        mask_output = boolean(default=False)  # also write the PixelMask1 file <output stem>_mask.fits (MASKOUT)
        keep_nan = boolean(default=False)  # keep NaN where a pixel has no slope (default: finite values, DO_NOT_USE)
        float32_errors = boolean(default=False)  # also keep err and the variances in float32 in processinfo (200 MB more on a full frame; FLOAT32_ERRORS)
        band_rows = integer(default=256, min=0)  # rows per band of the ramp steps (the cube is never whole in memory); 0 = whole cube
        legacy_config = string(default="")  # legacy gen_cal_image YAML: its keys set the output, step parameters and reference files
        suffix = string(default="cal")  # output file suffix
    """

    reference_file_types = ()

    step_defs = dict(STEP_DEFS)

    # Set during a run for the noise step (R layers re-run the calibration).
    l1_model = None
    # The L1 whose rows the ramp steps decode band by band (None: whole cube).
    _band_source = None
    # The legacy config of this run, stored in processinfo.config.
    legacy_config_dict = None

    # ------------------------------------------------------------ legacy config
    @classmethod
    def from_legacy_config(
        cls,
        config,
        *,
        source=None,
        base_dir=None,
        output_file=None,
        require_noise=False,
        **parameters,
    ):
        """The one way from a legacy config to a run.

        ``gen_cal_image``, ``gen_noise_image``, ``rip-batch`` and ``strun rip_l1l2
        --legacy_config`` all come through here: one validation (every problem at
        once, before any work), one path resolution and the same
        ``processinfo.config``.

        Parameters
        ----------
        config : dict or str or os.PathLike
            The legacy configuration, or the path of its YAML file.
        source : str or None
            The config's file, for messages (default: ``config`` when it is a path).
        base_dir : str or None
            Directory relative paths are relative to (default: the current one).
        output_file : str or None
            Write here instead of the config's ``OUT``.
        require_noise : bool
            The caller writes noise layers: the ``NOISE`` block is required.
        **parameters
            Further `L1ToL2Pipeline` parameters (e.g. ``configure_log`` is not one).

        Returns
        -------
        pipeline : L1ToL2Pipeline
            Configured, with ``save_results`` on.
        input : str
            Absolute path of the L1 exposure (``IN``); run it with
            ``pipeline.run(input)``.
        """
        pipeline = cls(**parameters)
        input_path = pipeline.apply_legacy_config(
            config, source=source, base_dir=base_dir, require_noise=require_noise
        )
        if output_file:
            pipeline.output_file = os.fspath(output_file)
        return pipeline, input_path

    def apply_legacy_config(
        self, config, *, source=None, base_dir=None, require_noise=False
    ):
        """Validate a legacy config (dict or YAML path), apply it; return its IN.

        Step and pipeline parameters, reference files and the output come from the
        config, which is kept for ``processinfo.config``; ``save_results`` is on.
        """
        if isinstance(config, str | os.PathLike):
            source = os.fspath(config)
            config = legacy.load_config(source)
        args = legacy.pipeline_args(
            config, source=source, base_dir=base_dir, require_noise=require_noise
        )
        self.apply_legacy_args(args)
        self.save_results = True
        return args.input

    def apply_legacy_args(self, args):
        """Set step parameters, pipeline parameters and output from `PipelineArgs`."""
        for name, pars in args.steps.items():
            step = getattr(self, name)
            for key, value in pars.items():
                setattr(step, key, value)
        for key, value in args.parameters.items():
            setattr(self, key, value)
        if not self.output_file:
            self.output_file = args.output
        self.legacy_config_dict = args.config

    def run(self, *args):
        """stpipe's ``run``; with ``legacy_config``, its IN and OUT are the defaults.

        The YAML is applied before stpipe decides whether to save, so ``strun rip_l1l2
        --legacy_config=cfg.yaml`` (no input on the command line) writes OUT exactly as
        ``gen_cal_image cfg.yaml`` does.
        """
        if self.legacy_config:
            input_path = self.apply_legacy_config(self.legacy_config)
            if not args or args[0] is None:
                args = (input_path, *args[1:])
            # applied once: a second run of this object must not re-read the file
            self.legacy_config = ""
        return super().run(*args)

    # ------------------------------------------------------------------ process
    def process(self, dataset=None):
        """Run every step on ``dataset`` (L1 path or model); return the L2 model."""
        collector = _LogCollector()
        package_log = logging.getLogger("romanimpreprocess")
        package_log.addHandler(collector)
        try:
            if dataset is None:
                raise ValueError(
                    "no input: give the L1 file (or set legacy_config, whose IN is used)"
                )
            self._propagate_legacy_compat()
            self._start_numba()
            self._preflight(dataset)
            self._l1_checksums = self._checksums_ahead(dataset)
            model = self.open_model(dataset, checksums=self._l1_checksums)
            if not isinstance(model, dm.ScienceRawModel):
                self._finish_l1_checksums(check=False)  # only an L1's are checked
            if not self.noise.skip and isinstance(model, dm.ScienceRawModel):
                # a file is read again by the noise step: its resultants are not
                # held through the calibration
                path = isinstance(dataset, str | os.PathLike)
                self.l1_model = os.fspath(dataset) if path else model
            handover = [self._open_ramp_for_run(model)]
            del model
            self._check_references(handover[0])
            # Hand the ramp over: no reference to it stays in this frame, so the
            # cube (0.5 GB on a full frame) is freed as soon as the ramp fit is done.
            model, step_times = self._run_steps(handover)
            from romanimpreprocess.datamodels.l2 import finalize_l2

            _flag_non_finite(model, dataset)
            info = self.processinfo(model)
            info["step_times"] = step_times
            model = finalize_l2(
                model,
                cal_steps=self._cal_steps(model),
                config=self.legacy_config_dict,
                log_text="\n".join(collector.lines),
                references=self._references_used(),
                sliceout=self.sliceout,
                legacy_compat=self.legacy_compat,
                keep_nan=self.keep_nan,
                float32_errors=self.float32_errors,
            )
            return model
        finally:
            self._finish_l1_checksums(check=False)  # a run stopped before the steps
            package_log.removeHandler(collector)
            self.close_references()
            self.l1_model = None

    def _checksums_ahead(self, dataset):
        """The input file's block checksums started on a thread, or None.

        (`romanimpreprocess.datamodels.l1.ChecksumsAhead`; `_finish_l1_checksums`
        checks them before the first work on the data. With one thread per step
        there is no idle core: `open_model` computes them as it opens the file.)
        """
        from romanimpreprocess.datamodels.l1 import ChecksumsAhead
        from romanimpreprocess.parallel import step_threads

        if not isinstance(dataset, str | os.PathLike) or step_threads() < 2:
            return None
        path = os.fspath(self.make_input_path(os.fspath(dataset)))
        return ChecksumsAhead(path) if os.path.isfile(path) else None

    def _finish_l1_checksums(self, check=True):
        """Wait for `_checksums_ahead`'s work; with ``check``, refuse a corrupt L1."""
        pending = self.__dict__.pop("_l1_checksums", None)
        if pending is None:
            return
        if check:
            pending.check()
        else:
            pending.wait()

    @staticmethod
    def _start_numba():
        """numba's start-up on the idle core while the inputs are opened.

        (`romanimpreprocess._warmup`; not with one thread per step, where there is
        no idle core.)
        """
        from romanimpreprocess.parallel import step_threads

        if step_threads() >= 2:
            from romanimpreprocess import _warmup

            _warmup.start()

    def calibrate_l1(self, l1):
        """Calibrate another L1 model exactly as this run (used by the noise step).

        ``l1`` is the model or, handed over, a one-element list holding it: the
        model is then taken out of the list. On the whole-cube path its resultants
        go once decoded; on the band path the bands read their rows from it.
        """
        if isinstance(l1, list):
            l1 = l1.pop()
        handover = [self._open_ramp_for_run(l1)]
        del l1
        model, _ = self._run_steps(handover, until="noise")
        return model

    calibrate_l1.takes_handover = True

    # -------------------------------------------------------------- row bands
    def _open_ramp_for_run(self, model):
        """The ramp to run: a skeleton (`ramp_skeleton`) if the steps run in bands.

        The L1 of a skeleton is kept for the bands (``self._band_source``).
        """
        from romanimpreprocess.datamodels.l1 import ramp_skeleton, validate_l1

        reason = self._whole_cube_reason(model)
        if reason is not None:
            log.info("Ramp steps on the whole cube (%s)", reason)
            self._band_source = None
            self._finish_l1_checksums()
            return self.open_ramp(model)
        validate_l1(model)
        self._band_source = model
        try:
            # only the four reference rows at each end are decoded here
            return ramp_skeleton(model)
        except Exception:
            self._finish_l1_checksums()  # a corrupt file: its checksum says so
            raise

    def _ramp_step_names(self):
        """The steps up to the ramp fit (included): those that can run in bands."""
        names = list(self.step_defs)
        return names[: names.index("ramp_fit") + 1]

    def _whole_cube_reason(self, model):
        """Why the ramp steps must see the whole cube, or None (they run in bands)."""
        if not self.band_rows:
            return "band_rows = 0"
        if not isinstance(model, dm.ScienceRawModel):
            return f"the input is a {type(model).__name__}, not an L1"
        if self.legacy_compat:
            return "legacy_compat"
        for name in self._ramp_step_names():
            step = getattr(self, name)
            if step.skip:
                continue
            if step.save_results:
                return f"steps.{name}.save_results saves its whole ramp"
        fit = self.ramp_fit
        if fit.skip:
            return "steps.ramp_fit.skip"
        if fit.algorithm != "optimal":
            return f"steps.ramp_fit.algorithm = {fit.algorithm!r}"
        if not fit.exclude_first:
            return "steps.ramp_fit.exclude_first = False"
        detector = str(model.meta.instrument.get("detector", ""))
        if detector == "WFI18" and not self.wfi18_transient.skip:
            return "the WFI18 transient fit"
        return None

    def _run_ramp_steps_in_bands(self, model, step_times):
        """Every ramp step on row bands of the L1 (``self._band_source``).

        Each step prepares its plan on the skeleton ``model``; then, band after
        band, the band's rows (plus the summed halo) are decoded, every plan is
        applied in step order and the ramp fit keeps the band's rows; then the
        steps finish in order (``run_planned``: stpipe's run, logs, metadata).
        Returns the ramp fit's image.
        """
        from romanimpreprocess.datamodels.l1 import decode_rows
        from romanimpreprocess.stpipe.bands import Band

        raw = self._band_source
        names = self._ramp_step_names()
        plans = {}
        for name in names:
            step = getattr(self, name)
            if step.skip:
                continue
            start = time.perf_counter()
            step._reference_files_used = []  # those of the preparation, as in run
            plans[name] = step.band_plan(model)
            step_times[name] = time.perf_counter() - start
        halo = sum(plan.halo for plan in plans.values())
        ny = model.data.shape[1]
        height = max(1, int(self.band_rows))
        starts = _band_starts(ny, height, halo, _chunk_rows(raw))
        log.info(
            "Ramp steps in bands of %d rows (halo %d rows each side): %d bands",
            height,
            halo,
            len(starts),
        )
        # the plans are made (reference files read): the data are next
        self._finish_l1_checksums()
        decoding = 0.0
        try:
            for r0, r1 in itertools.pairwise([*starts, ny]):
                began = time.perf_counter()
                held = slice(max(0, r0 - halo), min(ny, r1 + halo))
                decoded = decode_rows(raw, held)
                band = Band(
                    data=decoded.data,
                    groupdq=decoded.groupdq,
                    pixeldq=model.pixeldq[held].copy(),
                    amp33=model.amp33[:, held],
                    rows=held,
                    inner=slice(r0, r1),
                    ny=ny,
                )
                del decoded
                decoding += time.perf_counter() - began
                # The skeleton's left/right border copies: the decoded columns.
                b = REF_BORDER
                kept = band.inner_local
                model.border_ref_pix_left[:, r0:r1] = band.data[:, kept, :b]
                model.border_ref_pix_right[:, r0:r1] = band.data[:, kept, -b:]
                for name, plan in plans.items():
                    start = time.perf_counter()
                    plan.apply(band)
                    step_times[name] += time.perf_counter() - start
                model.pixeldq[r0:r1] = band.pixeldq[band.inner_local]
                del band
        finally:
            # Work still in flight (the ramp fit's last band) ends here, whether
            # the bands failed or not, and before any step finishes: a finished
            # step closes the run's reference files.
            for plan in plans.values():
                plan.close()
        log.info("L1 rows decoded band by band in %.2f s", decoding)
        for name in names:
            step = getattr(self, name)
            start = time.perf_counter()
            if step.skip:
                model = step.run(model)
            else:
                model = step.run_planned(model, plans.pop(name))
            step_times[name] = round(step_times.get(name, 0.0) + time.perf_counter()
                                     - start, 4)  # fmt: skip
            self._after_step(name, step, model, step_times[name])
        self._band_source = None
        return model

    def _after_step(self, name, step, model, elapsed):
        """Close the step's references, record a skip, log the step's time."""
        # Unmap the reference arrays of this step: their pages would otherwise
        # stay resident to the end of the run (a later step reopens a file it
        # needs, which costs milliseconds).
        self.close_references()
        if step.skip:
            step.record_cal_step(model, "SKIPPED")
        self._drop_alias_entry(model, step)
        status = "n/a"
        if step.cal_step_key and "cal_step" in model.meta:
            status = model.meta.cal_step.get(step.cal_step_key, "n/a")
        log.info("Step %s: %s in %.2f s", name, status, elapsed)

    def _run_steps(self, handover, until=None):
        """Run the steps on ``handover[0]`` (taken out of the list; see process)."""
        model = handover.pop()
        self._start_reference_work(model, until)
        try:
            return self._run_steps_on(model, until)
        finally:
            self._stop_reference_work()

    def _stop_reference_work(self):
        """Drop reference work not taken (a run that stopped early); end the thread."""
        pool = self.__dict__.pop("_reference_pool", None)
        if pool is not None:
            for name in self.step_defs:
                getattr(self, name).drop_reference_work()
            pool.shutdown(wait=True, cancel_futures=True)

    def _start_reference_work(self, model, until=None):
        """Start the later steps' reference-only work on a spare thread.

        Started once the references are checked (`process`), as the steps start.
        Work that depends on the reference files alone (the dark step's
        deconvolved dark slope, the flat step's effective flat: each a pass over
        the 0.6 GB IPC kernel of a full frame) runs on one thread beside the ramp
        steps, which leave a core idle while they prepare. Not with one thread per
        step (``RIP_THREADS=1``, batch workers): there the other cores run other
        exposures. Nor when the ramp steps hold the whole cube (``legacy_compat``,
        ``likely``, ...; `_whole_cube_reason`): the work's arrays would be held with
        it (legacy_compat's float64 deconvolutions: 2.7 -> 4.1 GiB on a full frame).
        """
        from concurrent.futures import ThreadPoolExecutor

        from romanimpreprocess.parallel import step_threads

        if step_threads() < 2 or getattr(self, "_band_source", None) is None:
            return
        ramp_steps = self._ramp_step_names()
        later = [name for name in self.step_defs if name not in ramp_steps]
        if until in later:
            later = later[: later.index(until)]
        for name in later:
            step = getattr(self, name)
            if step.skip or type(step).reference_work is RipStep.reference_work:
                continue
            if getattr(self, "_reference_pool", None) is None:
                self._reference_pool = ThreadPoolExecutor(
                    1, thread_name_prefix="rip-references"
                )
            step.start_reference_work(model, self._reference_pool)

    def _run_steps_on(self, model, until):
        step_times = {}
        banded = getattr(self, "_band_source", None) is not None
        if banded:
            model = self._run_ramp_steps_in_bands(model, step_times)
        for name in self.step_defs:
            if name == until:
                break
            if banded and name in step_times:
                continue
            step = getattr(self, name)
            if name == "ramp_fit" and step.skip:
                raise ValueError(
                    "steps.ramp_fit.skip: the ramp fit cannot be skipped (every later "
                    "step works on the rate image it makes)"
                )
            start = time.perf_counter()
            model = step.run(model)
            elapsed = time.perf_counter() - start
            step_times[name] = round(elapsed, 4)
            self._after_step(name, step, model, elapsed)
        total = sum(step_times.values())
        log.info("All steps done in %.1f s", total)
        return model, step_times

    @staticmethod
    def _drop_alias_entry(model, step):
        """stpipe records skips under ``class_alias``; we use ``cal_step_key``."""
        meta = getattr(model, "meta", None)
        if (
            meta is not None
            and "cal_step" in meta
            and step.class_alias in meta.cal_step
        ):
            del meta.cal_step[step.class_alias]

    def _cal_steps(self, model):
        """``{cal_step key: status}`` of every step, as recorded or SKIPPED/INCOMPLETE."""
        recorded = dict(model.meta.cal_step) if "cal_step" in model.meta else {}
        out = {}
        for name in self.step_defs:
            step = getattr(self, name)
            key = step.cal_step_key or name
            out[key] = recorded.get(key, "SKIPPED" if step.skip else "INCOMPLETE")
            if out[key] not in ("COMPLETE", "SKIPPED", "INCOMPLETE", "FAILED", "N/A"):
                out[key] = "INCOMPLETE"
        return out

    # ------------------------------------------------------------ configuration
    def _preflight(self, dataset):
        """Every problem with the parameters and the outputs, before any work.

        Step parameters (each step's ``check_parameters``), the FITSWCS header, and
        outputs that would overwrite an input (the exposure, a reference file, the
        WCS header, the legacy config) or each other. All are reported together.
        """
        problems = []
        for name in self.step_defs:
            step = getattr(self, name)
            check = getattr(step, "check_parameters", None)
            if not step.skip and check is not None:
                problems += [f"steps.{name}: {p}" for p in check()]
        if not self.flatfield.skip and self.flatfield.wcs_header:
            try:
                read_wcs_header(self.flatfield.wcs_header)
            except ValueError as err:
                problems.append(f"steps.flatfield.wcs_header: {err}")
        problems += self._overwrite_problems(dataset)
        if problems:
            raise RunConfigurationError(
                f"{len(problems)} problem(s) with the run's parameters, nothing was "
                f"processed:\n  - " + "\n  - ".join(problems)
            )

    def _output_files(self):
        """``{what: path}`` of the files this run will write."""
        outputs = {}
        if self.save_results or self.output_file:
            try:
                path = os.path.abspath(self.make_output_path())
            except Exception:  # stpipe cannot name it yet: nothing to protect
                path = None
            if path:
                outputs["output_file"] = path
                if self.fits_output:
                    outputs["output_file (FITS copy)"] = fits_path(path)
                if self.mask_output:
                    outputs["output_file (mask file)"] = mask_path(path)
        if not self.noise.skip:
            if self.noise.noise_file:
                path = os.path.abspath(os.path.expanduser(self.noise.noise_file))
                outputs["steps.noise.noise_file"] = path
                if self.noise.fits_output:
                    outputs["steps.noise.noise_file (FITS copy)"] = fits_path(path)
            if self.noise.temp:
                temp = os.path.abspath(os.path.expanduser(self.noise.temp))
                for what, path in temp_files(temp).items():
                    key = "steps.noise.temp" + ("" if what == "L1" else f" ({what})")
                    outputs[key] = path
        return outputs

    def _input_files(self, dataset):
        """``{what: path}`` of every file this run reads."""
        inputs = {}
        if isinstance(dataset, str | os.PathLike):
            inputs["the input"] = os.path.abspath(os.fspath(dataset))
        for name in self.step_defs:
            step = getattr(self, name)
            for reftype in step.reference_file_types:
                path = step.get_ref_override(reftype)
                if isinstance(path, str) and path not in ("", "N/A"):
                    inputs[f"steps.{name}.override_{reftype}"] = os.path.abspath(path)
        if self.flatfield.wcs_header:
            inputs["steps.flatfield.wcs_header"] = os.path.abspath(
                self.flatfield.wcs_header
            )
        return inputs

    def _overwrite_problems(self, dataset):
        outputs = self._output_files()
        problems = overwrite_problems(outputs, self._input_files(dataset))
        problems += [
            f"{what}: {path} is an existing directory"
            for what, path in outputs.items()
            if os.path.isdir(path)
        ]
        return problems

    def _propagate_legacy_compat(self):
        if not self.legacy_compat:
            return
        for name in self.step_defs:
            step = getattr(self, name)
            if "legacy_compat" in step.spec:
                step.legacy_compat = True
        log.info(
            "legacy_compat: reproducing the legacy 1.0.0 numbers, defects included"
        )

    def _check_references(self, model):
        """Open every reference file of every step against the exposure geometry.

        Shapes, dtypes and presence of the fields are checked here, before any work
        (values, e.g. NaN, are checked when a step reads them). All problems are
        reported together.
        """
        geometry = Geometry.from_model(model)
        exposure = ExposureInfo.from_model(model)
        problems = []
        checked = set()
        for name in self.step_defs:
            step = getattr(self, name)
            if step.skip:
                continue
            for reftype in step.reference_file_types:
                try:
                    path = step.get_reference_file(model, reftype)
                except Exception as err:
                    problems.append(str(err))
                    continue
                if path in ("N/A", "", None) or not isinstance(path, str):
                    continue
                if (reftype, path) in checked:
                    continue  # the same file for another step: reported once
                checked.add((reftype, path))
                try:
                    open_reference(
                        reftype, path, geometry=geometry, exposure=exposure
                    ).close()
                except Exception as err:
                    problems.append(f"steps.{name}.override_{reftype}: {err}")
        if problems:
            unique = list(dict.fromkeys(problems))
            raise ReferenceCheckError(
                f"{len(unique)} problem(s) with the reference files, nothing was "
                f"processed:\n  - " + "\n  - ".join(unique)
            )

    def _references_used(self):
        """``{reftype: path}`` of every reference file the steps were given."""
        used = {}
        for name in self.step_defs:
            step = getattr(self, name)
            if step.skip:
                continue
            for reftype in step.reference_file_types:
                path = step.get_ref_override(reftype)
                if isinstance(path, str) and path not in ("", "N/A"):
                    used[reftype] = path
        return used

    # ------------------------------------------------------------------- output
    def _write(self, model, path):
        """Write the L2 product (ASDF, and FITS with ``fits_output``), atomically."""
        from romanimpreprocess.datamodels.l2 import write_l2

        if not isinstance(model, dm.ImageModel):
            return super()._write(model, path)
        return write_l2(
            model, path, fits_output=self.fits_output, mask_output=self.mask_output
        )
