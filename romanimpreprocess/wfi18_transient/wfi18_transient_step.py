"""WFI18 first-read transient step."""

import logging
from typing import ClassVar

from romanimpreprocess.stpipe import RipStep
from romanimpreprocess.stpipe.bands import BandPlan
from romanimpreprocess.wfi18_transient import wfi18_transient

__all__ = ["WFI18TransientStep"]

log = logging.getLogger(__name__)

WFI18 = "WFI18"


class WFI18TransientStep(RipStep):
    """Remove the first-read transient of detector WFI18 (other detectors: skipped).

    Resultant 0 is corrected with a double-exponential model of the transient fitted
    against the row read time; with ``mask_rows``, fewer than five resultants or a
    failed fit, its first rows are flagged DO_NOT_USE | WFI18_TRANSIENT instead. In the
    pipeline this step runs only with ``correct_wfi18_transient``; standalone it runs.
    The algorithm is in `romanimpreprocess.wfi18_transient.wfi18_transient`.
    """

    class_alias = "rip_wfi18_transient"
    cal_step_key = "wfi18_transient"
    spec = """
        mask_rows = boolean(default=False)  # mask the affected rows instead of fitting
        legacy_compat = boolean(default=False)  # reproduce romancal's row-median slip
        suffix = string(default="wfi18_transient")  # output file suffix
    """
    reference_file_types: ClassVar = []

    def band_plan(self, model):
        """Nothing to do on detectors other than WFI18; the fit needs the whole frame.

        Returns a plan that only records the skip, or None (WFI18: whole cube).
        """
        detector = str(model.meta.instrument.get("detector", ""))
        if detector == WFI18:
            return None
        return _NotWFI18Plan(self, detector)

    def process(self, dataset):
        """Return the corrected (or row-masked) `RampModel`."""
        model = self.open_ramp(dataset)
        if self.band_plan(model) is not None:  # not WFI18: nothing to do
            return self.process_bands(model)
        exposure = model.meta.exposure
        fit = wfi18_transient.correct_transient(
            model.data,
            model.groupdq,
            [list(r) for r in exposure.read_pattern],
            float(exposure.frame_time),
            mask_rows=self.mask_rows,
            legacy_compat=self.legacy_compat,
        )
        if fit is None:
            log.info("WFI18 transient: rows of resultant 0 masked, data unchanged")
        self.record_cal_step(model, "COMPLETE")
        return model


class _NotWFI18Plan(BandPlan):
    def __init__(self, step, detector):
        super().__init__()
        self.step = step
        self.detector = detector

    def finish(self, model):
        log.info("WFI18 transient: detector is %r, not %s", self.detector, WFI18)
        return self.step.skip_model(
            model, reason=f"detector {self.detector!r} is not WFI18"
        )
