"""Data-quality initialisation step."""

import logging
from typing import ClassVar

import numpy as np

from romanimpreprocess.dq_init import dq_init
from romanimpreprocess.stpipe import RipStep
from romanimpreprocess.stpipe.bands import BandPlan
from romanimpreprocess.utils.mapped import release_pages

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
        return self.process_bands(dataset)

    def band_plan(self, model):
        """The flags to set, band by band (`romanimpreprocess.stpipe.bands`)."""
        guide = model.meta.guide_star
        window = tuple(
            int(guide.get(f"window_{k}", -1))
            for k in ("xstart", "xstop", "ystart", "ystop")
        )
        # Set now: the later steps' preparations read it.
        self.processinfo(model)["exclude_first"] = bool(self.exclude_first)
        mask = self.load_reference(model, "mask")
        return _DQInitPlan(
            step=self,
            window=window,
            mask_dq=None if mask is None else mask.dq,
        )


class _DQInitPlan(BandPlan):
    def __init__(self, step, window, mask_dq):
        super().__init__()
        self.step = step
        self.window = window
        self.mask_dq = mask_dq
        self.window_flagged = False

    def apply(self, band):
        step = self.step
        self.window_flagged = dq_init.flag_guide_window(
            band.pixeldq,
            self.window,
            expand=step.expand_guide_window,
            row0=band.rows.start,
            ny=band.ny,
        )
        if step.exclude_first:
            dq_init.exclude_first_resultant(band.groupdq)
        if self.mask_dq is not None:
            rows = np.asarray(self.mask_dq)[band.rows]
            dq_init.apply_mask(band.pixeldq, rows)
            release_pages(rows)

    def finish(self, model):
        step = self.step
        if self.window_flagged:
            log.info("Flagged guide window x %d:%d, y %d:%d", *self.window)
        if step.exclude_first:
            log.info("Resultant 0 marked DO_NOT_USE (exclude_first)")
        if self.mask_dq is None:
            log.warning("No mask reference file: no bad-pixel flags applied")
            return step.skip_model(model, reason="no mask reference file")
        step.record_cal_step(model, "COMPLETE")
        return model
