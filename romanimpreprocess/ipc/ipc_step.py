"""IPC deconvolution step."""

import logging
from typing import ClassVar

import numpy as np
from roman_datamodels.dqflags import pixel

from romanimpreprocess.constants import IPC_NOISE_GAIN_KEY
from romanimpreprocess.ipc import ipc
from romanimpreprocess.stpipe.core import RipStep

__all__ = ["IPCStep"]

log = logging.getLogger(__name__)


class IPCStep(RipStep):
    """Deconvolve the per-pixel 3x3 inter-pixel capacitance from every resultant.

    Each resultant is converted to electrons with the gain, deconvolved with
    ``iterations`` fixed-point iterations of the inverse of the ``ipc4d`` kernel, and
    converted back (``R(g S) / g``) over the region the kernel covers. Without an
    ``ipc4d`` file the step is skipped. The algorithm is in
    `romanimpreprocess.ipc.ipc`.
    """

    class_alias = "rip_ipc"
    cal_step_key = "ipc"
    spec = """
        iterations = integer(default=2, min=0)  # fixed-point iterations of the inverse
        legacy_compat = boolean(default=False)  # legacy: unclipped gain, gain's dtype
        suffix = string(default="ipc")  # output file suffix
    """
    reference_file_types: ClassVar = ["ipc4d", "gain"]
    optional_reference_types = ("ipc4d",)

    def process(self, dataset):
        """Return the IPC-deconvolved `RampModel`."""
        model = self.open_ramp(dataset)
        kernel_ref = self.load_reference(model, "ipc4d", fields=["data"])
        if kernel_ref is None:
            return self.skip_model(model, reason="no ipc4d reference file")
        gain_ref = self.load_reference(model, "gain", fields=["data"])
        kernel = kernel_ref.data
        gain = gain_ref.data
        if self.legacy_compat:
            dtype = np.result_type(model.data.dtype, gain.dtype)
        else:
            dtype = np.dtype(np.float32)
        border = ipc.kernel_border(model.data.shape[1:], kernel.shape)
        log.info(
            "IPC deconvolution: %d iteration(s), kernel %dx%d (border %d), "
            "arithmetic %s, kernel centre range %.6g..%.6g",
            self.iterations,
            kernel.shape[-2],
            kernel.shape[-1],
            border,
            dtype.name,
            float(np.min(kernel[1, 1])),
            float(np.max(kernel[1, 1])),
        )
        bad_gain = ipc.deconvolve_cube(
            model.data,
            kernel,
            gain,
            iterations=self.iterations,
            dtype=dtype,
            clip_gain=not self.legacy_compat,
        )
        if not self.legacy_compat and self.iterations > 0:
            self.processinfo(model)[IPC_NOISE_GAIN_KEY] = ipc.noise_gain(
                kernel,
                np.asarray(gain)[_region(gain.shape, border)],
                iterations=self.iterations,
            )
        n_bad = int(np.count_nonzero(bad_gain))
        if n_bad:
            if self.legacy_compat:
                log.warning(
                    "IPC: %d pixel(s) with gain <= %g used as is (legacy_compat)",
                    n_bad,
                    ipc.MIN_GAIN,
                )
            else:
                model.pixeldq[bad_gain] |= np.uint32(pixel.NO_GAIN_VALUE)
                log.warning(
                    "IPC: %d pixel(s) with gain <= %g: clipped to %g, flagged "
                    "NO_GAIN_VALUE",
                    n_bad,
                    ipc.MIN_GAIN,
                    ipc.MIN_GAIN,
                )
        self.record_cal_step(model, "COMPLETE")
        return model


def _region(shape, border):
    """Slices of the region a kernel with ``border`` covers."""
    ny, nx = shape
    return slice(border, ny - border), slice(border, nx - border)
