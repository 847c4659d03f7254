"""Bias-correction step (optional ``biascorr`` reference)."""

import logging
from typing import ClassVar

from romanimpreprocess.biascorr import biascorr
from romanimpreprocess.constants import REF_BORDER
from romanimpreprocess.stpipe import RipStep
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
        model = self.open_ramp(dataset)
        ref = self.load_reference(model, "biascorr", fields=["data"])
        if ref is None:
            return self.skip_model(model, reason="no biascorr reference file")
        bias = ref.data
        log.info(
            "Bias correction: planes %d..%d of %s",
            bias.shape[0] - model.data.shape[0],
            bias.shape[0] - 1,
            ref.path,
        )
        # Each bias plane's mapped pages are given back once it is subtracted (the
        # cube is 1.6 GiB at 24 resultants; kept mapped, it set the run's peak).
        biascorr.subtract_bias(model.data, bias, REF_BORDER, done=release_pages)
        self.record_cal_step(model, "COMPLETE")
        return model
