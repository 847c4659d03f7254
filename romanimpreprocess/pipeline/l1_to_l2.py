"""`L1ToL2Pipeline`: the whole Level-1 -> Level-2 calibration, in the legacy order.

One model travels through the steps without copies: the decoded ramp cube up to the
ramp fit, then the rate image. Only the final L2 is saved (a step's
``save_results=True`` saves its intermediate product too). Before any work the input
and every reference file named by the steps are opened and checked against the
exposure's geometry, so a wrong file fails in seconds, not after the ramp fit.
"""

import logging
import os
import time

import roman_datamodels.datamodels as dm

from romanimpreprocess.biascorr import BiasCorrStep
from romanimpreprocess.dark_current import DarkCurrentStep
from romanimpreprocess.dark_decay import DarkDecayStep
from romanimpreprocess.datamodels import Geometry, open_reference
from romanimpreprocess.dq_init import DQInitStep
from romanimpreprocess.flatfield import FlatFieldStep
from romanimpreprocess.ipc import IPCStep
from romanimpreprocess.linearity import LinearityLegendreStep
from romanimpreprocess.noise import NoiseStep
from romanimpreprocess.photom import PhotomStep
from romanimpreprocess.ramp_fitting import RampFitStep
from romanimpreprocess.refpix import RefPixStep
from romanimpreprocess.saturation import SaturationStep
from romanimpreprocess.sky import SkyStep
from romanimpreprocess.stpipe import RipPipeline
from romanimpreprocess.wfi18_transient import WFI18TransientStep

__all__ = ["L1ToL2Pipeline", "ReferenceCheckError"]

log = logging.getLogger(__name__)


class ReferenceCheckError(ValueError):
    """Reference files that do not fit the exposure, found before any work."""


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
    wfi18_transient, linearity, ipc, ramp_fit, dark_current, flatfield, photom, sky, and
    the optional noise realisations (``steps.noise.skip=False``). The product is an ``ImageModel`` (DN/s, science area) with the legacy extras
    (``processinfo``, ``data_withsky``) and, with ``fits_output``, a FITS copy.
    """

    class_alias = "rip_l1l2"

    spec = """
        legacy_compat = boolean(default=False)  # reproduce legacy 1.0.0 numbers: sets legacy_compat on every step that has it (LEGACY_COMPAT)
        fits_output = boolean(default=False)  # also write <output stem>_asdf_to.fits (FITSOUT)
        sliceout = boolean(default=False)  # store processinfo.endslice, last unsaturated resultant per pixel (SLICEOUT)
        legacy_config = string(default="")  # legacy gen_cal_image YAML: its keys set the output, step parameters and reference files
        suffix = string(default="cal")  # output file suffix
    """

    reference_file_types = ()

    step_defs = {
        "dq_init": DQInitStep,
        "saturation": SaturationStep,
        "refpix": RefPixStep,
        "biascorr": BiasCorrStep,
        "dark_decay": DarkDecayStep,
        "wfi18_transient": WFI18TransientStep,
        "linearity": LinearityLegendreStep,
        "ipc": IPCStep,
        "ramp_fit": RampFitStep,
        "dark_current": DarkCurrentStep,
        "flatfield": FlatFieldStep,
        "photom": PhotomStep,
        "sky": SkyStep,
        "noise": NoiseStep,
    }

    # Set during a run for the noise step (R layers re-run the calibration).
    l1_model = None

    # ------------------------------------------------------------------ process
    def process(self, dataset=None):
        """Run every step on ``dataset`` (L1 path or model); return the L2 model.

        Without ``dataset`` the input is the ``IN`` of ``legacy_config``.
        """
        collector = _LogCollector()
        package_log = logging.getLogger("romanimpreprocess")
        package_log.addHandler(collector)
        try:
            config, legacy_input = self._apply_legacy_config()
            if dataset is None:
                dataset = legacy_input
            if dataset is None:
                raise ValueError(
                    "no input: give the L1 file (or set legacy_config, whose IN is used)"
                )
            self._check_output_is_not_input(dataset)
            self._propagate_legacy_compat()
            model = self.open_model(dataset)
            if not self.noise.skip and isinstance(model, dm.ScienceRawModel):
                self.l1_model = model
            model = self.open_ramp(model)
            self._check_references(model)
            # Hand the ramp over: no reference to it stays in this frame, so the
            # cube (0.5 GB on a full frame) is freed as soon as the ramp fit is done.
            handover = [model]
            del model
            model, step_times = self._run_steps(handover)
            from romanimpreprocess.datamodels.l2 import finalize_l2

            info = self.processinfo(model)
            info["step_times"] = step_times
            model = finalize_l2(
                model,
                cal_steps=self._cal_steps(model),
                config=config,
                log_text="\n".join(collector.lines),
                references=self._references_used(),
                sliceout=self.sliceout,
                legacy_compat=self.legacy_compat,
            )
            return model
        finally:
            package_log.removeHandler(collector)
            self.close_references()
            self.l1_model = None

    def calibrate_l1(self, l1):
        """Calibrate another L1 model exactly as this run (used by the noise step)."""
        model, _ = self._run_steps([self.open_ramp(l1)], until="noise")
        return model

    def _run_steps(self, handover, until=None):
        """Run the steps on ``handover[0]`` (taken out of the list; see process)."""
        model = handover.pop()
        step_times = {}
        for name in self.step_defs:
            if name == until:
                break
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
    def _apply_legacy_config(self):
        """Apply ``legacy_config`` (if given); return (config dict, its IN path)."""
        if not self.legacy_config:
            return getattr(self, "legacy_config_dict", None), None
        from romanimpreprocess.pipeline import legacy

        config = legacy.load_config(self.legacy_config)
        args = legacy.pipeline_args(config, source=self.legacy_config)
        self.apply_legacy_args(args)
        return config, args.input

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

    def _check_output_is_not_input(self, dataset):
        if not isinstance(dataset, str | os.PathLike) or not self.output_file:
            return
        source = os.path.realpath(os.fspath(dataset))
        target = os.path.realpath(os.path.expanduser(os.fspath(self.output_file)))
        if self.output_dir and not os.path.dirname(os.fspath(self.output_file)):
            target = os.path.realpath(os.path.join(self.output_dir, self.output_file))
        if source == target:
            raise ValueError(
                f"output_file {self.output_file} is the input file; it would be "
                f"overwritten (choose another output)"
            )

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
        problems = []
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
                try:
                    open_reference(reftype, path, geometry=geometry).close()
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
        return write_l2(model, path, fits_output=self.fits_output)
