"""Photometric conversion for our L2 units, pure numbers (docs/photom/index.rst).

Our L2 ``data`` are flattened DN/s per ideal pixel: a DN is ``G_IDEAL`` electrons at
unit relative QE (the flat is ``QE x G_IDEAL / gain``) and the values are normalised
to the ideal pixel solid angle ``OMEGA_IDEAL`` (the flat step's area normalisation).
The surface brightness that goes with them is

    S [MJy/sr] = C * data,    C = k / OMEGA_IDEAL,

with ``k`` the flux density [MJy] of a point source whose count rate is 1 flattened
DN/s (``G_IDEAL`` e/s at unit QE). A point source's flux density is
``C * OMEGA_IDEAL * sum(data)`` over its pixels.

romancal's photom reference (and romanisim's L1 photometry) use the other
convention: ``photmjsr`` is the MJy/sr of 1 DN/s in a pixel of area ``pixelareasr``
read out with the detector's gain, i.e. ``k_rc = photmjsr * pixelareasr`` MJy per
DN/s of ``g_det`` electrons. Then ``k = k_rc * G_IDEAL / g_det`` and

    C = photmjsr * (pixelareasr / OMEGA_IDEAL) * (G_IDEAL / g_det),

with ``g_det`` the median gain of the science area (romanisim's ``medgain``).
"""

import math
from dataclasses import dataclass

__all__ = [
    "Conversion",
    "PhotometryError",
    "conversion_to_our_units",
    "placeholder",
]

# roman_datamodels' placeholder for "not set"
PLACEHOLDER = -999999.0


class PhotometryError(ValueError):
    """Photometry values that cannot be converted (names the source and the key)."""


@dataclass(frozen=True)
class Conversion:
    """The photometry of one L2 and where it came from.

    ``conversion_megajanskys`` is None when there is no source: romancal's FluxStep
    and SourceCatalogStep then fail with a TypeError instead of writing garbage.
    """

    conversion_megajanskys: float | None
    conversion_megajanskys_uncertainty: float | None
    pixel_area: float
    source: str  # "photom reference", "L1 meta", "none"
    input_conversion: float | None = None
    input_uncertainty: float | None = None
    input_pixel_area: float | None = None
    detector_gain: float | None = None

    def record(self):
        """Plain dict for ``processinfo["photometry"]``."""
        return {
            "source": self.source,
            "conversion_megajanskys": self.conversion_megajanskys,
            "conversion_megajanskys_uncertainty": (
                self.conversion_megajanskys_uncertainty
            ),
            "pixel_area": self.pixel_area,
            "input_conversion_megajanskys": self.input_conversion,
            "input_conversion_megajanskys_uncertainty": self.input_uncertainty,
            "input_pixel_area": self.input_pixel_area,
            "detector_gain_median": self.detector_gain,
        }


def is_set(value):
    """True for a real number (not None, NaN, inf or the -999999 placeholder)."""
    if value is None or isinstance(value, bool):
        return False
    try:
        value = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(value) and value != PLACEHOLDER


def conversion_to_our_units(
    photmjsr,
    uncertainty,
    pixelareasr,
    detector_gain,
    *,
    g_ideal,
    omega_ideal,
    source,
):
    """`Conversion` of a romancal-convention ``photmjsr`` into our L2 units.

    Raises `PhotometryError` naming ``source`` for a value that is missing, not
    finite or not positive (the uncertainty may be absent: recorded as 0).
    """
    problems = []
    for name, value in (("photmjsr", photmjsr), ("pixelareasr", pixelareasr)):
        if not is_set(value) or float(value) <= 0:
            problems.append(f"{name} = {value!r} (need a finite number > 0)")
    if not (is_set(detector_gain) and float(detector_gain) > 0):
        problems.append(f"detector gain = {detector_gain!r} (need > 0)")
    if uncertainty is not None and is_set(uncertainty) and float(uncertainty) < 0:
        problems.append(f"uncertainty = {uncertainty!r} (need >= 0)")
    if problems:
        raise PhotometryError(f"{source}: " + "; ".join(problems))
    factor = (float(pixelareasr) / omega_ideal) * (g_ideal / float(detector_gain))
    unc = float(uncertainty) if is_set(uncertainty) else 0.0
    return Conversion(
        conversion_megajanskys=float(photmjsr) * factor,
        conversion_megajanskys_uncertainty=unc * factor,
        pixel_area=float(omega_ideal),
        source=source,
        input_conversion=float(photmjsr),
        input_uncertainty=unc if is_set(uncertainty) else None,
        input_pixel_area=float(pixelareasr),
        detector_gain=float(detector_gain),
    )


def placeholder(omega_ideal):
    """No photometry source: None (downstream fails loudly), the ideal pixel area."""
    return Conversion(
        conversion_megajanskys=None,
        conversion_megajanskys_uncertainty=None,
        pixel_area=float(omega_ideal),
        source="none",
    )
