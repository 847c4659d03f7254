"""IPC deconvolution step."""

import logging
from typing import ClassVar

import numpy as np
from roman_datamodels.dqflags import pixel

from romanimpreprocess.constants import IPC_NOISE_GAIN_KEY
from romanimpreprocess.ipc import ipc
from romanimpreprocess.stpipe.bands import BandPlan
from romanimpreprocess.stpipe.core import RipStep
from romanimpreprocess.utils.mapped import release_pages

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
        return self.process_bands(dataset)

    def band_plan(self, model):
        """The deconvolution, band by band; halo ``iterations`` rows.

        Row ``y`` of the ``k``-iteration inverse reaches rows ``y - k .. y + k``. The
        noise gain handed to the ramp fit is computed here, on the whole frame.
        """
        kernel_ref = self.load_reference(model, "ipc4d", fields=["data"])
        if kernel_ref is None:
            return _IPCPlan(step=self, kernel=None)
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
        if not self.legacy_compat and self.iterations > 0:
            self.processinfo(model)[IPC_NOISE_GAIN_KEY] = ipc.noise_gain(
                kernel,
                np.asarray(gain)[_region(gain.shape, border)],
                iterations=self.iterations,
            )
            release_pages(kernel)
            release_pages(gain)
        plan = _IPCPlan(step=self, kernel=kernel, halo=max(int(self.iterations), 0))
        plan.gain, plan.dtype, plan.border = gain, dtype, border
        return plan


class _IPCPlan(BandPlan):
    def __init__(self, step, kernel, halo=0):
        super().__init__(halo=halo)
        self.step = step
        self.kernel = kernel
        self.gain = self.dtype = self.border = None

    def apply(self, band):
        if self.kernel is None:
            return
        step, b = self.step, self.border
        options = {
            "iterations": step.iterations,
            "dtype": self.dtype,
            "clip_gain": not step.legacy_compat,
        }
        if band.rows == slice(0, band.ny):
            bad = ipc.deconvolve_cube(band.data, self.kernel, self.gain, **options)
        else:
            bad = np.zeros(band.pixeldq.shape, dtype=bool)
            held = band.local(slice(b, band.ny - b))  # rows the kernel covers
            if held.stop > held.start:
                bad[held] = self._deconvolve_rows(band, held, options)
        kept = bad[band.inner_local]
        self.count("bad_gain", np.count_nonzero(kept))
        if not step.legacy_compat:
            band.pixeldq[bad] |= np.uint32(pixel.NO_GAIN_VALUE)

    def _deconvolve_rows(self, band, held, options):
        """`ipc.deconvolve_cube` on band rows ``held`` (inside the kernel's region).

        The rows are copied into a cube with ``border`` rows of padding on each side
        (never read) and given the matching rows of the kernel and the gain: the
        region of that cube is exactly these rows.
        """
        b = self.border
        n, _, nx = band.data.shape
        h = held.stop - held.start
        r0 = band.rows.start + held.start  # first frame row
        cube = np.zeros((n, h + 2 * b, nx), dtype=band.data.dtype)
        cube[:, b : b + h] = band.data[:, held]
        kernel = np.asarray(self.kernel)[:, :, r0 - b : r0 - b + h]
        gain = np.asarray(self.gain)[r0 - b : r0 + h + b]
        bad = ipc.deconvolve_cube(cube, kernel, gain, **options)
        release_pages(kernel)
        band.data[:, held] = cube[:, b : b + h]
        return bad[b : b + h]

    def finish(self, model):
        step = self.step
        if self.kernel is None:
            return step.skip_model(model, reason="no ipc4d reference file")
        n_bad = self.counts.get("bad_gain", 0)
        if n_bad:
            if step.legacy_compat:
                log.warning(
                    "IPC: %d pixel(s) with gain <= %g used as is (legacy_compat)",
                    n_bad,
                    ipc.MIN_GAIN,
                )
            else:
                log.warning(
                    "IPC: %d pixel(s) with gain <= %g: clipped to %g, flagged "
                    "NO_GAIN_VALUE",
                    n_bad,
                    ipc.MIN_GAIN,
                    ipc.MIN_GAIN,
                )
        self.kernel = self.gain = None
        step.record_cal_step(model, "COMPLETE")
        return model


def _region(shape, border):
    """Slices of the region a kernel with ``border`` covers."""
    ny, nx = shape
    return slice(border, ny - border), slice(border, nx - border)
