"""Classical (Legendre) linearity step."""

import logging
from typing import ClassVar

import numpy as np
from roman_datamodels.dqflags import pixel

from romanimpreprocess.datamodels import ReferenceFileError
from romanimpreprocess.linearity import linearity
from romanimpreprocess.stpipe.bands import BandPlan
from romanimpreprocess.stpipe.core import RipStep
from romanimpreprocess.utils.mapped import RowBuffers, release_pages

__all__ = ["LinearityLegendreStep"]

log = logging.getLogger(__name__)


class LinearityLegendreStep(RipStep):
    """Linearise every resultant with the per-pixel Legendre model of the calibration.

    Each resultant ``S`` (DN_raw) becomes ``Phi(S)`` (DN_lin, 0 at ``Sref``), a
    Legendre series in the signal normalised to the fitted range ``[Smin, Smax]`` and
    continued linearly beyond it, evaluated in float64 (float32 as the legacy with
    ``legacy_compat``). Pixels leaving the range in a non-saturated
    resultant get NO_LIN_CORR; the linearity file's flags are OR-ed into the pixel
    flags. The algorithm is in `romanimpreprocess.linearity.linearity`.
    """

    class_alias = "rip_linearity"
    cal_step_key = "linearity"
    spec = """
        legacy_compat = boolean(default=False)  # reproduce the legacy mid-ramp switch-off
        suffix = string(default="linearity")  # output file suffix
    """
    reference_file_types: ClassVar = ["linearitylegendre"]

    def process(self, dataset):
        """Return the linearised `RampModel` (DN_lin)."""
        return self.process_bands(dataset)

    def band_plan(self, model):
        """The checked calibration, applied band by band (pixels are independent)."""
        ref = self.load_reference(
            model, "linearitylegendre", fields=["data", "Smin", "Smax", "Sref", "dq"]
        )
        if ref is None:
            return _LinearityPlan(step=self, ref=None)
        coeffs = ref.data
        if coeffs.shape[0] < 1:
            raise ReferenceFileError(
                ref.reftype,
                ref.path,
                "no Legendre coefficient planes",
                field="roman.data",
            )
        read_pattern = [list(r) for r in model.meta.exposure.read_pattern]
        plan = _LinearityPlan(step=self, ref=ref)
        plan.do_not_flag_first = read_pattern[0] == [0]
        log.info(
            "Legendre linearity: order %d, %d resultants, do_not_flag_first=%s, "
            "legacy_compat=%s",
            coeffs.shape[0] - 1,
            model.data.shape[0],
            plan.do_not_flag_first,
            self.legacy_compat,
        )
        # The unusable calibrations are found band by band, on the rows the band
        # reads anyway: a whole-frame scan here would read the 460 MB of a full
        # frame's calibration once more (0.4 s). A file with no usable pixel is
        # therefore reported when the last band is done, before anything is written.
        return plan


class _LinearityPlan(BandPlan):
    def __init__(self, step, ref):
        super().__init__()
        self.step = step
        self.ref = ref
        self.do_not_flag_first = False
        self.rows = RowBuffers()

    def apply(self, band):
        if self.ref is None:
            return
        ref, rows = self.ref, band.rows
        arrays = [
            np.asarray(getattr(ref, name))[..., rows, :]
            for name in ("data", "Smin", "Smax", "Sref", "dq")
        ]
        whole = rows == slice(0, band.ny)
        if not whole:
            # A band's rows are read from the file into buffers kept from band to
            # band: faulting the 460 MB mapping of a full frame's calibration cost
            # 0.1-0.2 s more. The whole frame (legacy_compat) reads the mapping
            # and gives its pages back: buffers would hold 0.2 GB more at the peak.
            arrays = [self.rows.read(i, a) for i, a in enumerate(arrays)]
        invalid = linearity.invalid_calibration(*arrays[:4])
        flags = linearity.apply_linearity(
            band.data,
            band.groupdq,
            *arrays,
            do_not_flag_first=self.do_not_flag_first,
            legacy_compat=self.step.legacy_compat,
            invalid=invalid,
            dtype=None if self.step.legacy_compat else np.float64,
        )
        if whole:
            for array in arrays:
                release_pages(array)
        elif band.last:
            self.rows.clear()
        inner = band.inner_local
        kept = flags[inner] & np.uint32(pixel.NO_LIN_CORR)
        self.count("no_lin_corr", np.count_nonzero(kept))
        self.count("invalid", np.count_nonzero(invalid[inner]))
        self.count("pixels", invalid[inner].size)
        band.pixeldq |= flags

    def finish(self, model):
        step = self.step
        if self.ref is None:
            return step.skip_model(model, reason="no linearitylegendre reference file")
        self.rows.clear()
        _check_invalid(
            self.ref, self.counts.get("invalid", 0), self.counts.get("pixels", 0)
        )
        log.info(
            "Linearity: %d pixel(s) flagged NO_LIN_CORR",
            self.counts.get("no_lin_corr", 0),
        )
        step.record_cal_step(model, "COMPLETE")
        return model


def _check_invalid(ref, n_bad, n_pixels):
    """Raise if no pixel has a usable calibration; log how many have none."""
    if n_pixels and n_bad == n_pixels:
        raise ReferenceFileError(
            ref.reftype,
            ref.path,
            "no pixel has a usable calibration (coefficients, Smin, Smax and Sref "
            "finite, Smax > Smin)",
        )
    if n_bad:
        log.warning(
            "Linearity: %d pixel(s) with an unusable calibration (non-finite values "
            "or Smax <= Smin): S - Sref used (Sref 0 if not finite), flagged "
            "NO_LIN_CORR | DO_NOT_USE",
            n_bad,
        )
