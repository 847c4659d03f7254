"""IPC deconvolution step."""

import logging
from typing import ClassVar

import numpy as np
from roman_datamodels.dqflags import pixel

from romanimpreprocess.constants import IPC_NOISE_GAIN_KEY
from romanimpreprocess.ipc import ipc
from romanimpreprocess.stpipe.bands import BandPlan
from romanimpreprocess.stpipe.core import RipStep
from romanimpreprocess.utils.mapped import RowBuffers, release_pages

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
        noise gain handed to the ramp fit is a full-frame array placed in
        ``processinfo`` here and filled band by band, from the kernel rows each band
        reads for its deconvolution (the ramp fit, later in the same band, reads only
        the band's kept rows): the 0.6 GB kernel of a full frame is read once.
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
        plan = _IPCPlan(step=self, kernel=kernel, halo=max(int(self.iterations), 0))
        plan.gain, plan.dtype, plan.border = gain, dtype, border
        if not self.legacy_compat and self.iterations > 0:
            # np.empty: the pages are touched band by band.
            plan.noise_gain = np.empty(kernel.shape[-2:], np.float32)
            self.processinfo(model)[IPC_NOISE_GAIN_KEY] = plan.noise_gain
        return plan


class _IPCPlan(BandPlan):
    def __init__(self, step, kernel, halo=0):
        super().__init__(halo=halo)
        self.step = step
        self.kernel = kernel
        self.gain = self.dtype = self.border = None
        self.noise_gain = None
        self.centre_range = (np.inf, -np.inf)
        self.rows = RowBuffers()  # the kernel rows of a band, reused band to band

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
            bad = self._deconvolve_frame(band, options)
        else:
            bad = np.zeros(band.pixeldq.shape, dtype=bool)
            held = band.local(slice(b, band.ny - b))  # rows the kernel covers
            if held.stop > held.start:
                bad[held] = self._deconvolve_rows(band, held, options)
        kept = bad[band.inner_local]
        self.count("bad_gain", np.count_nonzero(kept))
        if not step.legacy_compat:
            band.pixeldq[bad] |= np.uint32(pixel.NO_GAIN_VALUE)

    def _deconvolve_frame(self, band, options):
        """The whole frame: the kernel read in bands of rows by the functions."""
        kernel = self.kernel
        self.centre_range = (float(np.min(kernel[1, 1])), float(np.max(kernel[1, 1])))
        if self.noise_gain is not None:
            self.noise_gain[...] = ipc.noise_gain(
                kernel,
                np.asarray(self.gain)[_region(self.gain.shape, self.border)],
                iterations=self.step.iterations,
            )
            release_pages(kernel)
        return ipc.deconvolve_cube(band.data, kernel, self.gain, **options)

    def _deconvolve_rows(self, band, held, options):
        """`ipc.deconvolve_rows` on band rows ``held`` (inside the kernel's region).

        The kernel's rows are read once (contiguous, from the file) and serve the
        kernel centre's range, the noise gain of the kept rows and the
        deconvolution, which works on the band's rows in place (a padded copy of
        them was 0.2 GB at 24 resultants, the peak of the band).
        """
        b = self.border
        h = held.stop - held.start
        r0 = band.rows.start + held.start  # first frame row
        y0 = r0 - b  # first region row
        kernel = self.rows.read("kernel", self.kernel[:, :, y0 : y0 + h])
        centre = kernel[1, 1]
        if centre.size:
            low, high = self.centre_range
            self.centre_range = (
                min(low, float(np.min(centre))),
                max(high, float(np.max(centre))),
            )
        gain = np.asarray(self.gain)[r0 - b : r0 + h + b]
        if self.noise_gain is not None:
            self._noise_gain_rows(
                band, kernel, gain[b : b + h, _region(gain.shape, b)[1]], y0
            )
        bad = ipc.deconvolve_rows(
            band.data, held, kernel, gain[b : b + h],
            iterations=options["iterations"], clip_gain=options["clip_gain"],
            dtype=options["dtype"],
        )  # fmt: skip
        release_pages(gain)
        if band.last:
            self.rows.clear()
        return bad

    def _noise_gain_rows(self, band, kernel, gain, y0):
        """`ipc.noise_gain` of the band's kept rows, from its kernel rows.

        ``kernel`` and ``gain`` hold region rows ``y0 ..``. Row ``y`` of the noise
        gain needs rows ``y - k .. y + k`` (``k`` iterations); a band's halo is at
        least ``k`` rows, so the kept rows are computed on the band's rows, or, when
        ``k`` is not the compiled path's 2, on rows starting at a multiple of
        ``2k + 1`` from the mapped kernel (the impulses then fall where they fall on
        the whole frame, and every sum is taken in the same order).
        """
        k = int(self.step.iterations)
        sy = self.noise_gain.shape[0]
        lo = min(max(band.inner.start - self.border, 0), sy)
        hi = min(max(band.inner.stop - self.border, 0), sy)
        if hi <= lo:
            return
        if k == ipc.DEFAULT_ITERATIONS:
            # All the band's rows (its halo rows are wrong, and not kept): the
            # contiguous kernel rows as they are, no copy of a part of them.
            a = y0
            rows = ipc.noise_gain(kernel, gain, iterations=k)
        else:
            step = 2 * k + 1
            a, c = max(lo - k, 0) // step * step, min(hi + k, sy)
            columns = _region(self.gain.shape, self.border)[1]
            frame_rows = slice(a + self.border, c + self.border)
            rows = ipc.noise_gain(
                self.kernel[:, :, a:c],
                np.asarray(self.gain)[frame_rows, columns],
                iterations=k,
            )
        self.noise_gain[lo:hi] = rows[lo - a : hi - a]

    def finish(self, model):
        step = self.step
        if self.kernel is None:
            return step.skip_model(model, reason="no ipc4d reference file")
        log.info(
            "IPC deconvolution: %d iteration(s), kernel %dx%d (border %d), "
            "arithmetic %s, kernel centre range %.6g..%.6g",
            step.iterations,
            self.kernel.shape[-2],
            self.kernel.shape[-1],
            self.border,
            self.dtype.name,
            *self.centre_range,
        )
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
        self.rows.clear()
        self.kernel = self.gain = self.noise_gain = None
        step.record_cal_step(model, "COMPLETE")
        return model


def _region(shape, border):
    """Slices of the region a kernel with ``border`` covers."""
    ny, nx = shape
    return slice(border, ny - border), slice(border, nx - border)
