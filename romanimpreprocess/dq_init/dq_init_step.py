"""Data-quality initialisation step."""

import logging
from typing import ClassVar

from romanimpreprocess.dq_init import dq_init
from romanimpreprocess.stpipe import RipStep

__all__ = ["DQInitStep"]

log = logging.getLogger(__name__)


class DQInitStep(RipStep):
    """Decode the L1 exposure into a ramp and set its initial data-quality flags.

    The L1 resultants become a float32 ramp (reference read added back, data-encoding
    offset removed); the guide-star window is flagged, the bad-pixel mask is OR-ed into
    the pixel flags, and with ``exclude_first`` the first resultant (the reset read) is
    marked DO_NOT_USE. The algorithm is in `romanimpreprocess.dq_init.dq_init`.
    """

    class_alias = "rip_dq_init"
    cal_step_key = "dq_init"
    spec = """
        exclude_first = boolean(default=True)  # mark resultant 0 DO_NOT_USE (EXCLUDE_FIRST)
        expand_guide_window = integer(default=1, min=0)  # grow the guide-window flags by N px
        suffix = string(default="dq_init")  # output file suffix
    """
    reference_file_types: ClassVar = ["mask"]
    optional_reference_types = ("mask",)

    def process(self, dataset):
        """Return the decoded, flagged `RampModel`."""
        model = self.open_ramp(dataset)
        guide = model.meta.guide_star
        window = tuple(
            int(guide.get(f"window_{k}", -1))
            for k in ("xstart", "xstop", "ystart", "ystop")
        )
        if dq_init.flag_guide_window(
            model.pixeldq, window, expand=self.expand_guide_window
        ):
            log.info("Flagged guide window x %d:%d, y %d:%d", *window)
        if self.exclude_first:
            dq_init.exclude_first_resultant(model.groupdq)
            log.info("Resultant 0 marked DO_NOT_USE (exclude_first)")
        info = self.processinfo(model)
        info["exclude_first"] = bool(self.exclude_first)

        mask = self.load_reference(model, "mask")
        if mask is None:
            log.warning("No mask reference file: no bad-pixel flags applied")
            return self.skip_model(model, reason="no mask reference file")
        dq_init.apply_mask(model.pixeldq, mask.dq)
        self.record_cal_step(model, "COMPLETE")
        return model
