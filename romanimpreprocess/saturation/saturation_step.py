"""Saturation step."""

import logging
from typing import ClassVar

import numpy as np
from roman_datamodels.dqflags import group

from romanimpreprocess.saturation import saturation
from romanimpreprocess.stpipe import RipStep

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
        model = self.open_ramp(dataset)
        ref = self.load_reference(model, "saturation", fields=["data", "dq"])
        info = model.get("processinfo", {})
        exclude_first = bool(info.get("exclude_first", True))
        first = 1 if (self.legacy_compat or exclude_first) else 0
        read_pattern = [list(f) for f in model.meta.exposure.read_pattern]
        threshold_dq = ref.get("dq")
        sat_dq = saturation.flag_saturation(
            model.data,
            model.groupdq,
            np.asarray(ref.data),
            read_pattern,
            threshold_dq=None if threshold_dq is None else np.asarray(threshold_dq),
            first=first,
            n_pix_grow_sat=self.n_pix_grow_sat,
            backup=self.backup,
        )
        model.pixeldq |= sat_dq
        n_sat = int(np.count_nonzero((model.groupdq[-1] & group.SATURATED) != 0))
        log.info(
            "Saturation: resultants %d..%d examined, backup %d; %d pixel(s) saturated "
            "in the last resultant",
            first,
            model.data.shape[0] - 1,
            self.backup,
            n_sat,
        )
        self.record_cal_step(model, "COMPLETE")
        return model
