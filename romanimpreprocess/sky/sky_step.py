"""Sky step: mode estimate (always) and optional polynomial sky subtraction."""

import logging
from typing import ClassVar

import numpy as np

from romanimpreprocess.constants import REF_BORDER
from romanimpreprocess.sky import sky
from romanimpreprocess.stpipe import RipStep

__all__ = ["SkyStep"]

log = logging.getLogger(__name__)


class SkyStep(RipStep):
    """Estimate the sky level and, with ``order``, subtract a Legendre sky model.

    The mode of the 4x4-binned, PixelMask1-masked image is stored as
    ``processinfo["medsky"]`` (nothing subtracted). With ``order`` (legacy SKYORDER)
    a 2-D Legendre polynomial fitted to 8x8 cell medians is subtracted; the image
    before subtraction is kept as ``data_withsky``. By default masked pixels are left
    out of both estimates and cells dominated by a source (residual beyond 5 robust
    sigmas) are dropped from the fit; ``legacy_compat`` includes the zero border bins
    in the mode and every pixel and cell in the fit, as the legacy did (docs/sky/index.rst, differences from the legacy).
    """

    class_alias = "rip_sky"
    cal_step_key = "sky"
    spec = """
        order = integer(default=None, min=0, max=9)  # Legendre order of the subtracted sky (SKYORDER, 0..9: 8x8 cell medians); None = no subtraction
        legacy_compat = boolean(default=False)  # legacy masking of the sky estimates
        suffix = string(default="sky")  # output file suffix
    """
    reference_file_types: ClassVar = []

    def process(self, dataset):
        """Return the `ImageModel` with the sky estimated (and subtracted)."""
        model = self.open_model(dataset)
        data = np.asarray(model.data)
        mask = sky.pixel_mask1(model.dq)
        info = self.processinfo(model)
        if self.legacy_compat:
            frame, frame_mask = self._legacy_frame(model, data)
        else:
            frame, frame_mask = data, mask
        binned = sky.bin4x4(np.where(frame_mask, np.nan, frame))
        model["data_withsky"] = data.astype(np.float32, copy=True)
        if not np.isfinite(binned).any():
            # Degenerate exposure (all resultants saturated or zero, every pixel
            # masked): nothing to estimate a sky from. The L2 is still written, with
            # its flags, instead of a traceback after every other step.
            log.warning(
                "Sky step: no usable pixel (every pixel flagged or not finite); sky "
                "not estimated (medsky NaN) and nothing subtracted"
            )
            info["medsky"] = float("nan")
            info["skyorder"] = -1
            info["skycoefs"] = np.zeros(0, dtype=np.float32)
            self.record_cal_step(model, "SKIPPED")
            return model
        medsky, _ = sky.smooth_mode(binned)
        info["medsky"] = medsky
        if self.order is None:
            info["skyorder"] = -1
            info["skycoefs"] = np.zeros(0, dtype=np.float32)
            log.info("Sky mode %.5g DN/s; no sky subtracted (order None)", medsky)
        else:
            source = data if self.legacy_compat else np.where(mask, np.nan, data)
            try:
                coefs, sky_model = sky.medfit(
                    source,
                    order=int(self.order),
                    clip=None if self.legacy_compat else 5.0,
                    legacy_evaluation=self.legacy_compat,
                )
            except np.linalg.LinAlgError:
                # Too few unmasked cells to fit the polynomial: no sky subtracted.
                log.warning(
                    "Sky step: too few usable 1/8-frame cells for an order-%d sky; "
                    "nothing subtracted",
                    self.order,
                )
                info["skyorder"] = -1
                info["skycoefs"] = np.zeros(0, dtype=np.float32)
                self.record_cal_step(model, "SKIPPED")
                return model
            model.data = np.subtract(data, sky_model, dtype=np.float32)
            info["skyorder"] = int(self.order)
            info["skycoefs"] = np.asarray(coefs, dtype=np.float64)
            log.info(
                "Sky mode %.5g DN/s; subtracted order-%d sky (mean %.5g DN/s)",
                medsky,
                self.order,
                float(sky_model.mean()),
            )
        self.record_cal_step(model, "COMPLETE")
        return model

    @staticmethod
    def _legacy_frame(model, data):
        """Full frame with the zero border and its dq, as the legacy binned it."""
        from romanimpreprocess.datamodels.l2 import full_frame_dq

        b = REF_BORDER
        frame = np.zeros((data.shape[0] + 2 * b, data.shape[1] + 2 * b), data.dtype)
        frame[b:-b, b:-b] = data
        return frame, sky.pixel_mask1(full_frame_dq(model))
