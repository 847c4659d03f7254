"""Dark-current subtraction step."""

import logging
from typing import ClassVar

import numpy as np

from romanimpreprocess.constants import REF_BORDER
from romanimpreprocess.dark_current import dark_current
from romanimpreprocess.stpipe import RipStep
from romanimpreprocess.stpipe.between_exposures import (
    reference_identity,
    reuse_between_exposures,
)

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
        slope, bad_gain, medgain, ipc_on = self.reference_products(model)
        dark = self.load_reference(model, "dark", fields=["dark_slope", "dq"])
        b = REF_BORDER
        science = (slice(b, -b), slice(b, -b))
        model.data -= slope
        # A NaN or inf in the dark slope (spread to its neighbours by the IPC
        # deconvolution) makes those pixels unusable: flagged, not left at dq 0.
        if not self.legacy_compat:
            from roman_datamodels.dqflags import pixel

            bad_slope = ~np.isfinite(slope)
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
        if not self.legacy_compat and bad_gain.any():
            from roman_datamodels.dqflags import pixel

            model.dq[bad_gain] |= np.uint32(pixel.NO_GAIN_VALUE)
        self.processinfo(model)["medgain"] = medgain
        log.info(
            "Dark current: median deconvolved dark slope %.4g DN/s (every 4th row "
            "and column; IPC %s); median gain %.4f e/DN",
            float(np.median(slope[::4, ::4])),
            "on" if ipc_on else "off",
            medgain,
        )
        self.record_cal_step(model, "COMPLETE")
        return model

    def reference_work(self, model):
        """The deconvolved dark slope and the median gain: reference files alone.

        Returns a function giving ``(slope, bad_gain, medgain, ipc_on)``: the
        science area of `dark_current.deconvolved_dark_slope` (float32) and of its
        unusable gains, the median gain and whether a kernel was used.
        """
        dark = self.load_reference(model, "dark", fields=["dark_slope"], cache=False)
        gain_ref = self.load_reference(model, "gain", fields=["data"], cache=False)
        kernel_ref = self.load_reference(model, "ipc4d", fields=["data"], cache=False)
        legacy = self.legacy_compat

        references = (dark, gain_ref, kernel_ref)

        def compute():
            gain = np.asarray(gain_ref.data)
            dtype = np.result_type(np.float32, gain.dtype) if legacy else np.float32
            slope, bad_gain = dark_current.deconvolved_dark_slope(
                dark.dark_slope,
                None if kernel_ref is None else kernel_ref.data,
                gain,
                dtype=dtype,
                clip_gain=not legacy,
            )
            b = REF_BORDER
            science = (slice(b, -b), slice(b, -b))
            # the legacy's median is over the whole frame (border 0)
            medgain = gain_ref.science_medians("data", 0 if legacy else b)[0]
            return (
                np.ascontiguousarray(slope[science]),
                np.ascontiguousarray(bad_gain[science]),
                medgain,
                kernel_ref is not None,
            )

        # the same files in a rip-batch worker's next exposure: the same products
        key = ("dark_current", legacy, *map(reference_identity, references))

        def work():
            try:
                return reuse_between_exposures(
                    key, compute, "Dark current: deconvolved dark slope"
                )
            finally:
                for ref in references:
                    if ref is not None:
                        ref.close()

        return work
