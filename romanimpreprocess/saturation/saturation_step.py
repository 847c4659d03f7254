"""Saturation step."""

import logging
from typing import ClassVar

import numpy as np
from roman_datamodels.dqflags import group

from romanimpreprocess.saturation import saturation
from romanimpreprocess.stpipe import RipStep
from romanimpreprocess.stpipe.bands import BandPlan
from romanimpreprocess.utils.mapped import release_pages

__all__ = ["SaturationStep"]

log = logging.getLogger(__name__)


class SaturationStep(RipStep):
    """Flag saturated resultants against the ``saturation`` thresholds.

    stcal's passes (threshold, A/D floor, 3x3 growth, partial saturation of
    multi-frame resultants, second-group test) then ``backup`` passes that move the
    flag one resultant back (legacy SATURATION_BACKUP). Resultant 0 is examined
    unless it is excluded (``exclude_first`` in dq_init); ``legacy_compat`` always
    skips it, as the legacy did (docs/saturation/description.rst, differences from the legacy).
    """

    class_alias = "rip_saturation"
    cal_step_key = "saturation"
    spec = """
        backup = integer(default=1, min=0)  # backup passes (SATURATION_BACKUP)
        n_pix_grow_sat = integer(default=1, min=0)  # growth of saturated pixels (box half-width)
        legacy_compat = boolean(default=False)  # always skip resultant 0 (legacy)
        suffix = string(default="saturation")  # output file suffix
    """
    reference_file_types: ClassVar = ["saturation"]

    def process(self, dataset):
        """Return the `RampModel` with SATURATED / DO_NOT_USE / AD_FLOOR flags."""
        return self.process_bands(dataset)

    def band_plan(self, model):
        """The saturation passes, band by band (`romanimpreprocess.stpipe.bands`).

        Halo: ``2 n_pix_grow_sat`` rows (the growth of a saturated pixel, then the
        growth of the partial saturation it causes one resultant earlier).
        """
        ref = self.load_reference(model, "saturation", fields=["data", "dq"])
        info = model.get("processinfo", {})
        exclude_first = bool(info.get("exclude_first", True))
        first = 1 if (self.legacy_compat or exclude_first) else 0
        return _SaturationPlan(
            step=self,
            threshold=ref.data,
            threshold_dq=ref.get("dq"),
            read_pattern=[list(f) for f in model.meta.exposure.read_pattern],
            first=first,
            halo=2 * max(int(self.n_pix_grow_sat), 0),
        )


class _SaturationPlan(BandPlan):
    def __init__(self, step, threshold, threshold_dq, read_pattern, first, halo):
        super().__init__(halo=halo)
        self.step = step
        self.threshold = threshold
        self.threshold_dq = threshold_dq
        self.read_pattern = read_pattern
        self.first = first
        self.n = len(read_pattern)

    def apply(self, band):
        step = self.step
        threshold = np.asarray(self.threshold)[band.rows]
        threshold_dq = (
            None
            if self.threshold_dq is None
            else np.asarray(self.threshold_dq)[band.rows]
        )
        sat_dq = saturation.flag_saturation(
            band.data,
            band.groupdq,
            threshold,
            self.read_pattern,
            threshold_dq=threshold_dq,
            first=self.first,
            n_pix_grow_sat=step.n_pix_grow_sat,
            backup=step.backup,
        )
        band.pixeldq |= sat_dq
        for array in (threshold, threshold_dq):
            release_pages(array)
        last = band.groupdq[-1, band.inner_local]
        self.count("saturated", np.count_nonzero((last & group.SATURATED) != 0))

    def finish(self, model):
        step = self.step
        log.info(
            "Saturation: resultants %d..%d examined, backup %d; %d pixel(s) saturated "
            "in the last resultant",
            self.first,
            self.n - 1,
            step.backup,
            self.counts.get("saturated", 0),
        )
        step.record_cal_step(model, "COMPLETE")
        return model
