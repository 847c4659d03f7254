"""Photom step: ``meta.photometry`` in the units of our L2."""

import logging
from typing import ClassVar

import numpy as np

from romanimpreprocess.constants import G_IDEAL, OMEGA_IDEAL, REF_BORDER
from romanimpreprocess.photom import photom
from romanimpreprocess.stpipe import RipStep
from romanimpreprocess.stpipe.between_exposures import (
    reference_identity,
    reuse_between_exposures,
)

__all__ = ["PhotomStep"]

log = logging.getLogger(__name__)


class PhotomStep(RipStep):
    """Set ``meta.photometry`` for flattened DN/s per ideal pixel.

    Sources, in order: the ``photom`` reference file (romancal's WFI imaging photom
    type, row of the exposure's ``optical_element``); else the L1's
    ``meta.photometry`` (romanisim's convention); both are converted to our units
    with the median gain of the ``gain`` reference (`photom.conversion_to_our_units`).
    Without either, ``conversion_megajanskys`` is None (romancal's flux and catalogue
    steps then stop with an error instead of scaling by a placeholder), a warning is
    logged and cal_step ``photom`` is SKIPPED. ``pixel_area`` is always
    ``OMEGA_IDEAL``, the pixel the data are normalised to. The data are not changed.
    """

    class_alias = "rip_photom"
    cal_step_key = "photom"
    spec = """
        suffix = string(default="photom")  # output file suffix
    """
    reference_file_types: ClassVar = ["photom", "gain"]
    optional_reference_types = ("photom",)

    def process(self, dataset):
        """Return the `ImageModel` with ``meta.photometry`` set."""
        model = self.open_model(dataset)
        conversion = self._conversion(model)
        meta = model.meta
        meta.photometry = {
            "conversion_megajanskys": conversion.conversion_megajanskys,
            "conversion_megajanskys_uncertainty": (
                conversion.conversion_megajanskys_uncertainty
            ),
            "pixel_area": conversion.pixel_area,
        }
        self.processinfo(model)["photometry"] = conversion.record()
        if conversion.conversion_megajanskys is None:
            self.record_cal_step(model, "SKIPPED")
        else:
            log.info(
                "Photometry from %s: %.6g MJy/sr per DN/s per ideal pixel "
                "(input %.6g MJy/sr per DN/s per %.5g sr pixel, median gain %.4g "
                "e/DN, G_IDEAL %.4g)",
                conversion.source,
                conversion.conversion_megajanskys,
                conversion.input_conversion,
                conversion.input_pixel_area,
                conversion.detector_gain,
                G_IDEAL,
            )
            self.record_cal_step(model, "COMPLETE")
        return model

    def _conversion(self, model):
        ref = self.load_reference(model, "photom", fields=["phot_table"])
        element = str(model.meta.instrument.optical_element).upper()
        if ref is not None:
            row = self._table_row(ref, element)
            return photom.conversion_to_our_units(
                row.get("photmjsr"),
                row.get("uncertainty"),
                row.get("pixelareasr"),
                self._gain(model),
                g_ideal=G_IDEAL,
                omega_ideal=OMEGA_IDEAL,
                source=f"photom reference {ref.path} (phot_table.{element})",
            )
        l1 = model.meta.get("photometry") or {}
        if photom.is_set(l1.get("conversion_megajanskys")):
            try:
                return photom.conversion_to_our_units(
                    l1.get("conversion_megajanskys"),
                    l1.get("conversion_megajanskys_uncertainty"),
                    l1.get("pixel_area"),
                    self._gain(model),
                    g_ideal=G_IDEAL,
                    omega_ideal=OMEGA_IDEAL,
                    source="L1 meta.photometry",
                )
            except photom.PhotometryError as err:
                log.warning("%s: not used", err)
        log.warning(
            "No photometry: no photom reference file (override_photom) and no usable "
            "meta.photometry in the L1. meta.photometry.conversion_megajanskys is "
            "left None: romancal's FluxStep/SourceCatalogStep will stop on this L2 "
            "until a conversion is set"
        )
        return photom.placeholder(OMEGA_IDEAL)

    @staticmethod
    def _table_row(ref, element):
        table = ref.phot_table
        if element not in table:
            raise photom.PhotometryError(
                f"photom reference {ref.path}: phot_table has no row for the "
                f"exposure's optical_element {element!r}; rows: "
                f"{', '.join(sorted(map(str, table))) or 'none'}"
            )
        row = table[element]
        if not hasattr(row, "get"):
            raise photom.PhotometryError(
                f"photom reference {ref.path}: phot_table.{element} is "
                f"{type(row).__name__}, expected a mapping with photmjsr, "
                f"uncertainty, pixelareasr"
            )
        return {k: _plain_number(v) for k, v in row.items()}

    def _gain(self, model):
        median = self.reference_products(model)
        if median is None:
            raise photom.PhotometryError(
                "gain: no gain reference file (override_gain is N/A); the conversion "
                "needs the median gain"
            )
        if not np.isfinite(median):
            raise photom.PhotometryError(
                "gain: no positive finite value in the science area"
            )
        return median

    def reference_work(self, model):
        """The median of the good gains (`ReferenceFile.science_medians`): no pixels.

        A full frame's median (0.1 s, `romanimpreprocess.utils.median`) would be
        taken on the main thread once the image is made if it were left to
        ``process``; in a pipeline it is taken on the reference thread beside the
        ramp steps, and a later run on the same gain file reads it from the product
        cache (`reuse_between_exposures`). Computed once per process: the dark
        step's reference work takes the same medians.
        """
        gain_ref = self.load_reference(model, "gain", fields=["data"], cache=False)
        if gain_ref is None:
            return None

        def compute():
            return (gain_ref.science_medians("data", REF_BORDER)[1],)

        key = ("photom_gain_median", REF_BORDER, reference_identity(gain_ref))

        def work():
            try:
                return reuse_between_exposures(key, compute, "Photom: median gain")[0]
            finally:
                gain_ref.close()

        return work


def _plain_number(value):
    """A float from a number, a 0-d array or an astropy Quantity (older files)."""
    if value is None:
        return None
    value = getattr(value, "value", value)
    try:
        return float(np.asarray(value))
    except (TypeError, ValueError):
        return value
