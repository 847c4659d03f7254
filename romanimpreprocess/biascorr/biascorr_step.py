"""Bias-correction step (optional ``biascorr`` reference)."""

import logging
from typing import ClassVar

from romanimpreprocess.biascorr import biascorr
from romanimpreprocess.constants import REF_BORDER
from romanimpreprocess.stpipe import RipStep
from romanimpreprocess.stpipe.bands import BandPlan
from romanimpreprocess.utils.mapped import release_pages

__all__ = ["BiasCorrStep"]

log = logging.getLogger(__name__)


class BiasCorrStep(RipStep):
    """Subtract the per-resultant bias correction from the science area.

    The last ``nresultants`` planes of the ``biascorr`` cube are used. Without a
    ``biascorr`` file (or ``N/A``) the step is skipped with one log line.
    """

    class_alias = "rip_biascorr"
    cal_step_key = "biascorr"
    spec = """
        suffix = string(default="biascorr")  # output file suffix
    """
    reference_file_types: ClassVar = ["biascorr"]
    optional_reference_types = ("biascorr",)

    def process(self, dataset):
        """Return the bias-corrected `RampModel`."""
        return self.process_bands(dataset)

    def band_plan(self, model):
        """The subtraction, band by band (`romanimpreprocess.stpipe.bands`)."""
        ref = self.load_reference(model, "biascorr", fields=["data"])
        if ref is not None:
            log.info(
                "Bias correction: planes %d..%d of %s",
                ref.data.shape[0] - model.data.shape[0],
                ref.data.shape[0] - 1,
                ref.path,
            )
        return _BiasPlan(step=self, bias=None if ref is None else ref.data)


class _BiasPlan(BandPlan):
    def __init__(self, step, bias):
        super().__init__()
        self.step = step
        self.bias = bias

    def apply(self, band):
        if self.bias is None:
            return
        # Each bias plane's mapped pages are given back once subtracted (the cube
        # is 1.6 GiB at 24 resultants; kept mapped, it set the run's peak).
        biascorr.subtract_bias(
            band.data,
            self.bias,
            REF_BORDER,
            done=release_pages,
            row0=band.rows.start,
            ny=band.ny,
        )

    def finish(self, model):
        if self.bias is None:
            return self.step.skip_model(model, reason="no biascorr reference file")
        self.step.record_cal_step(model, "COMPLETE")
        return model
