"""Dark-current subtraction step."""

import logging
from typing import ClassVar

import numpy as np

from romanimpreprocess.constants import REF_BORDER
from romanimpreprocess.dark_current import dark_current
from romanimpreprocess.stpipe import RipStep

__all__ = ["DarkCurrentStep"]

log = logging.getLogger(__name__)


class DarkCurrentStep(RipStep):
    """Subtract the IPC-deconvolved dark slope from the rate image; OR the dark dq.

    The data were IPC-deconvolved before the ramp fit, so the measured
    (IPC-convolved) dark slope is deconvolved the same way, ``R(d g)/g``. The
    median gain is stored as ``processinfo["medgain"]``: over the science pixels by
    default, over the whole frame with ``legacy_compat`` (docs/dark_current/index.rst, differences from the legacy).
    """

    class_alias = "rip_dark_current"
    cal_step_key = "dark"
    spec = """
        legacy_compat = boolean(default=False)  # unclipped gain, gain's dtype, full-frame medgain
        suffix = string(default="dark_current")  # output file suffix
    """
    reference_file_types: ClassVar = ["dark", "ipc4d", "gain"]
    optional_reference_types = ("ipc4d",)

    def process(self, dataset):
        """Return the dark-subtracted rate `ImageModel`."""
        model = self.open_model(dataset)
        dark = self.load_reference(model, "dark", fields=["dark_slope", "dq"])
        gain_ref = self.load_reference(model, "gain", fields=["data"])
        gain = np.asarray(gain_ref.data)
        kernel_ref = self.load_reference(model, "ipc4d", fields=["data"])
        kernel = None if kernel_ref is None else kernel_ref.data
        dtype = (
            np.result_type(np.float32, gain.dtype) if self.legacy_compat else np.float32
        )
        slope, bad_gain = dark_current.deconvolved_dark_slope(
            dark.dark_slope,
            kernel,
            gain,
            dtype=dtype,
            clip_gain=not self.legacy_compat,
        )
        b = REF_BORDER
        science = (slice(b, -b), slice(b, -b))
        model.data -= slope[science]
        # A NaN or inf in the dark slope (spread to its neighbours by the IPC
        # deconvolution) makes those pixels unusable: flagged, not left at dq 0.
        if not self.legacy_compat:
            from roman_datamodels.dqflags import pixel

            bad_slope = ~np.isfinite(slope[science])
            if bad_slope.any():
                log.warning(
                    "Dark current: %d pixel(s) with a non-finite deconvolved dark "
                    "slope in %s: flagged UNRELIABLE_DARK | DO_NOT_USE",
                    int(bad_slope.sum()),
                    dark.path,
                )
                model.dq[bad_slope] |= np.uint32(
                    pixel.UNRELIABLE_DARK | pixel.DO_NOT_USE
                )
        if "dq" in dark and dark.get("dq") is not None:
            model.dq |= np.asarray(dark.dq, dtype=np.uint32)[science]
        if not self.legacy_compat and bad_gain[science].any():
            from roman_datamodels.dqflags import pixel

            model.dq[bad_gain[science]] |= np.uint32(pixel.NO_GAIN_VALUE)
        if self.legacy_compat:
            medgain = float(np.median(gain))
        else:
            medgain = gain_ref.science_medians("data", b)[0]
        self.processinfo(model)["medgain"] = medgain
        log.info(
            "Dark current: median deconvolved dark slope %.4g DN/s (every 4th row "
            "and column; IPC %s); median gain %.4f e/DN",
            float(np.median(slope[science][::4, ::4])),
            "on" if kernel is not None else "off",
            medgain,
        )
        self.record_cal_step(model, "COMPLETE")
        return model
