"""Flat-field step with pixel-area normalisation."""

import dataclasses
import logging
from typing import ClassVar

import numpy as np
from roman_datamodels.dqflags import pixel

from romanimpreprocess.constants import OMEGA_IDEAL, REF_BORDER
from romanimpreprocess.datamodels import wcs as wcs_tools
from romanimpreprocess.flatfield import flatfield
from romanimpreprocess.stpipe import RipStep
from romanimpreprocess.stpipe.between_exposures import (
    reference_identity,
    reuse_between_exposures,
)

__all__ = ["FlatFieldStep"]

log = logging.getLogger(__name__)

_PERCENTILES = (1, 2, 5, 10, 25, 50, 75, 90, 95, 98, 99)


class FlatFieldStep(RipStep):
    """Divide by the IPC-deconvolved flat and normalise to the ideal pixel area.

    ``data``, ``err`` and the square roots of the variances are divided by
    ``F_eff = F / (Area / Omega_ideal)``: the output is flattened DN/s per ideal
    pixel. The WCS is the FITSWCS header text (``wcs_header``) or, without one, the
    model's gwcs; it becomes the L2's ``meta.wcs``. Without any WCS the area
    normalisation is skipped with a warning. The area map is evaluated at science
    pixel coordinates; ``legacy_compat`` reproduces the legacy 4-pixel shift
    (docs/flatfield/index.rst, differences from the legacy).
    """

    class_alias = "rip_flatfield"
    cal_step_key = "flat_field"
    spec = """
        wcs_header = string(default="")  # FITSWCS header text file (legacy); empty = the model's gwcs
        area_normalization = boolean(default=True)  # divide by the pixel area / Omega_ideal
        legacy_compat = boolean(default=False)  # legacy 4-pixel offset of the area map
        suffix = string(default="flatfield")  # output file suffix
    """
    reference_file_types: ClassVar = ["flat", "ipc4d", "gain"]
    optional_reference_types = ("ipc4d",)

    def process(self, dataset):
        """Return the flat-fielded rate `ImageModel`."""
        model = self.open_model(dataset)
        products = self.reference_products(model)
        model.dq[products.out_of_range] |= np.uint32(pixel.NO_FLAT_FIELD)
        model.dq[products.bad_gain] |= np.uint32(pixel.NO_GAIN_VALUE)
        log.info(
            "Flat percentiles %s (every 4th row and column): %s",
            _PERCENTILES,
            " ".join(f"{v:.4f}" for v in products.percentiles),
        )
        if products.area_range is None:
            F = products.flat
            area_of_rows = self._area_rows(model, F.shape)
            normalised = area_of_rows is not None
            if normalised:
                f_eff, area_range = flatfield.effective_flat(
                    F, area_of_rows, OMEGA_IDEAL
                )
                self._log_area(*area_range)
            else:
                f_eff = np.asarray(F, dtype=np.float32)
                if not f_eff.flags.writeable:  # F itself, kept for the next
                    f_eff = f_eff.copy()  # exposure: squared in place below
            del F, area_of_rows
        else:  # divided by the header's area ahead: the header is the model's WCS
            f_eff = products.flat
            self._wcs_from_header(model, f_eff.shape)
            self._log_area(*products.area_range)
            normalised = True
        del products
        model.data /= f_eff
        if "err" in model and model.err.shape == f_eff.shape:
            model.err = _divided(model.err, f_eff)
        np.multiply(f_eff, f_eff, out=f_eff)  # the variances scale with F_eff²
        for key in ("var_poisson", "var_rnoise", "var_flat"):
            if (
                key in model
                and model[key] is not None
                and model[key].shape == f_eff.shape
            ):
                model[key] = _divided(model[key], f_eff)
        self.processinfo(model)["area_normalization"] = normalised
        self.record_cal_step(model, "COMPLETE")
        return model

    def reference_work(self, model):
        """The clipped, IPC-deconvolved flat and the header's area: no pixel data.

        Returns a function giving `_FlatProducts`: `flatfield.prepare_flat` and the
        log's percentiles; with a ``wcs_header`` (and the normalisation on), the
        flat already divided by its pixel area (``F_eff``, float32: not the float64
        area map held to the step) and the area's range for the log.
        """
        flat_ref = self.load_reference(model, "flat", fields=["data"], cache=False)
        gain_ref = self.load_reference(model, "gain", fields=["data"], cache=False)
        kernel_ref = self.load_reference(model, "ipc4d", fields=["data"], cache=False)
        legacy = self.legacy_compat
        header_path = self.wcs_header if self.area_normalization else ""

        references = (flat_ref, gain_ref, kernel_ref)

        def prepare():
            gain = np.asarray(gain_ref.data)
            dtype = np.result_type(np.float32, gain.dtype) if legacy else np.float32
            F, out_of_range, bad_gain = flatfield.prepare_flat(
                np.asarray(flat_ref.data),
                None if kernel_ref is None else kernel_ref.data,
                gain,
                REF_BORDER,
                dtype=dtype,
            )
            return F, out_of_range, bad_gain, np.percentile(F[::4, ::4], _PERCENTILES)

        # the same files in a rip-batch worker's next exposure: the same flat (the
        # area, from each exposure's own WCS, is divided per exposure below)
        key = ("flatfield", legacy, *map(reference_identity, references))

        def work():
            try:
                F, out_of_range, bad_gain, percentiles = reuse_between_exposures(
                    key, prepare, "Flat field: clipped, IPC-deconvolved flat"
                )
            finally:
                for ref in references:
                    if ref is not None:
                        ref.close()
            products = _FlatProducts(
                flat=F,
                out_of_range=out_of_range,
                bad_gain=bad_gain,
                percentiles=percentiles,
            )
            if header_path:
                header = wcs_tools.read_wcs_header(header_path)
                products.flat, products.area_range = flatfield.effective_flat(
                    F, self._header_area_rows(header, F.shape), OMEGA_IDEAL
                )
            return products

        return work

    def _area_rows(self, model, shape):
        """The pixel-area map (sr) of the science area from the model's gwcs, by rows.

        `romanimpreprocess.datamodels.wcs.pixel_area_rows`; None when not
        normalising or without any WCS. (With a ``wcs_header`` the area is taken in
        `reference_work`, never here.)
        """
        if not self.area_normalization:
            log.info("Pixel-area normalisation off (area_normalization=False)")
            return None
        offset = REF_BORDER if self.legacy_compat else 0
        if model.meta.get("wcs") is None:
            log.warning(
                "No WCS (no wcs_header and no meta.wcs): pixel-area normalisation "
                "skipped, data stay per pixel"
            )
            return None
        return wcs_tools.pixel_area_rows(model.meta.wcs, shape, offset=offset)

    def _wcs_from_header(self, model, shape):
        """The ``wcs_header`` as the model's gwcs and wcsinfo."""
        header = wcs_tools.read_wcs_header(self.wcs_header)
        model.meta.wcs = wcs_tools.gwcs_from_header(header, shape)
        wcs_tools.update_wcsinfo(model.meta, model.meta.wcs, shape)

    def _header_area_rows(self, header, shape):
        """The pixel-area map of the science area from a FITS WCS header, by rows."""
        if self.legacy_compat:
            source = wcs_tools.legacy_world_function(header)
            area = wcs_tools.pixel_area_map(source, shape, offset=REF_BORDER)
            return lambda start, stop: area[start:stop]
        return wcs_tools.pixel_area_rows(header, shape, offset=0)

    def _log_area(self, smallest, largest):
        log.info(
            "Pixel area: %.5g..%.5g sr (Omega_ideal %.5g), offset %d",
            smallest,
            largest,
            OMEGA_IDEAL,
            REF_BORDER if self.legacy_compat else 0,
        )


@dataclasses.dataclass
class _FlatProducts:
    """What `FlatFieldStep.reference_work` computes (science area)."""

    flat: np.ndarray  # F, or F_eff when area_range is set
    out_of_range: np.ndarray
    bad_gain: np.ndarray
    percentiles: np.ndarray
    area_range: tuple | None = None  # (min, max) of the area F was divided by


def _divided(array, divisor):
    """``array / divisor`` as float32, in place when ``array`` is a float32 array."""
    array = np.asarray(array)
    if array.dtype == np.float32 and array.flags.writeable:
        array /= divisor
        return array
    return np.asarray(array, np.float32) / divisor
