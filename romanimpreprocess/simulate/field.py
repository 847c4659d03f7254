"""Pointing, dithers, a shared source catalogue and photometry of simulated exposures.

A field is simulated as N exposures of one detector (same calibration set, drawn from
the same ``seed``) whose pointings differ by dithers; each exposure has its own noise
and cosmic rays (``noise_seed``). The sources are one `SourceCatalog` on the sky with
fluxes in µJy; each exposure places them through its own WCS. The simulation's
photometric zero point (``SimulationConfig.zero_point``, AB magnitude of a source
giving 1 e/s at unit QE) converts fluxes to electrons and sets the photometry written
with the L1 (romanisim's convention) and the ``photom`` reference file (romancal's).
"""

import logging
import math
import os
from dataclasses import dataclass

import asdf
import numpy as np

from romanimpreprocess.constants import G_IDEAL, OMEGA_IDEAL, REF_BORDER

__all__ = [
    "PIXEL_SCALE",
    "PSF_SIGMA",
    "SourceCatalog",
    "dither_offsets",
    "tan_sip_header",
]

log = logging.getLogger(__name__)

PIXEL_SCALE = 0.11  # arcsec, the simulated detector's (wcs_header)
PSF_SIGMA = 1.1  # pixels, Gaussian PSF of a point source (as the random sources)
_AB_JY = 3631.0


@dataclass
class SourceCatalog:
    """Sources on the sky: position (deg), flux density (µJy), intrinsic size.

    ``sigma_arcsec`` is the Gaussian sigma of the source before the PSF (0: a star).
    """

    ra: np.ndarray
    dec: np.ndarray
    flux_ujy: np.ndarray
    sigma_arcsec: np.ndarray

    def __post_init__(self):
        arrays = [np.asarray(a, dtype=np.float64) for a in self.columns().values()]
        sizes = {a.shape for a in arrays}
        if len(sizes) != 1 or len(arrays[0].shape) != 1:
            raise ValueError(
                f"catalog: ra, dec, flux_ujy, sigma_arcsec must be 1-D arrays of one "
                f"length, got shapes {sorted(sizes)}"
            )
        if not all(np.isfinite(a).all() for a in arrays):
            raise ValueError("catalog: non-finite values")
        if (arrays[2] <= 0).any() or (arrays[3] < 0).any():
            raise ValueError("catalog: flux_ujy must be > 0 and sigma_arcsec >= 0")
        self.ra, self.dec, self.flux_ujy, self.sigma_arcsec = arrays

    def __len__(self):
        return self.ra.size

    def columns(self):
        """``{name: array}``."""
        return {
            "ra": self.ra,
            "dec": self.dec,
            "flux_ujy": self.flux_ujy,
            "sigma_arcsec": self.sigma_arcsec,
        }

    def write(self, path):
        """Write an ASDF file ``{catalog: {columns}, units}`` (temp file, renamed)."""
        tmp = f"{path}.tmp-{os.getpid()}"
        tree = {
            "catalog": self.columns(),
            "units": {
                "ra": "deg",
                "dec": "deg",
                "flux_ujy": "uJy",
                "sigma_arcsec": "arcsec",
            },
        }
        asdf.AsdfFile(tree).write_to(tmp)
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, path):
        """Read a catalogue written by `write`."""
        try:
            with asdf.open(path, lazy_load=False) as af:
                cols = {k: np.array(v) for k, v in af.tree["catalog"].items()}
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"catalog {path}: cannot be read ({err})") from err
        return cls(**cols)


def tan_sip_header(ra, dec, pa, crpix, header=None):
    """The simulated detector's TAN-SIP WCS cards, added to ``header`` (or a new one).

    ``PIXEL_SCALE`` pixels rotated by ``pa`` radians, the reference pixel ``crpix``
    (0-based for our FITSWCS files, 1-based for a FITS image) at (``ra``, ``dec``), and
    a small fixed distortion (~1 px at the corner of a full frame).
    """
    from astropy.io import fits

    h = fits.Header() if header is None else header
    scale = PIXEL_SCALE / 3600.0
    h["WCSAXES"] = 2
    h["CTYPE1"] = "RA---TAN-SIP"
    h["CTYPE2"] = "DEC--TAN-SIP"
    h["CRPIX1"] = crpix
    h["CRPIX2"] = crpix
    h["CRVAL1"] = float(ra)
    h["CRVAL2"] = float(dec)
    h["CD1_1"] = -scale * np.cos(pa)
    h["CD1_2"] = scale * np.sin(pa)
    h["CD2_1"] = scale * np.sin(pa)
    h["CD2_2"] = scale * np.cos(pa)
    h["A_ORDER"] = 2
    h["B_ORDER"] = 2
    h["A_2_0"] = 2.0e-8
    h["A_1_1"] = -1.0e-8
    h["A_0_2"] = 1.5e-8
    h["B_2_0"] = -1.0e-8
    h["B_1_1"] = 2.0e-8
    h["B_0_2"] = 1.0e-8
    return h


def check_pointing(config):
    """Validate the pointing, dither and catalogue options of a `SimulationConfig`."""
    if (config.ra is None) != (config.dec is None):
        raise ValueError("ra, dec: give both or neither")
    if config.ra is not None:
        if not math.isfinite(config.ra):
            raise ValueError(f"ra: must be finite, got {config.ra!r}")
        if not (-90.0 < config.dec < 90.0):
            raise ValueError(f"dec: must be within (-90, 90) deg, got {config.dec!r}")
    if config.roll is not None and not math.isfinite(config.roll):
        raise ValueError(f"roll: must be finite, got {config.roll!r}")
    try:
        dither = tuple(float(v) for v in config.dither)
    except (TypeError, ValueError):
        dither = ()
    if len(dither) != 2 or not all(math.isfinite(v) for v in dither):
        raise ValueError(f"dither: expected (dx, dy) in pixels, got {config.dither!r}")
    config.dither = dither
    if config.catalog is not None and not isinstance(config.catalog, SourceCatalog):
        raise ValueError(
            f"catalog: expected a SourceCatalog, got {type(config.catalog).__name__}"
        )
    if not math.isfinite(config.zero_point):
        raise ValueError(f"zero_point: must be finite, got {config.zero_point!r}")


def _gwcs(header, ns):
    from romanimpreprocess.datamodels.wcs import gwcs_from_header

    return gwcs_from_header(header, (ns, ns))


def apply_dither(header, dither, ns):
    """Move the pointing by ``dither = (dx, dy)`` pixels (in place).

    The new reference point is the sky position of pixel ``centre + dither`` of the
    undithered WCS, so a source moves by ``-dither`` on the detector (the distortion
    stays with the detector).
    """
    centre = (ns - 1) / 2.0
    ra, dec = _gwcs(header, ns)(centre + dither[0], centre + dither[1])
    header["CRVAL1"], header["CRVAL2"] = float(ra), float(dec)


def catalog_on_detector(config, header, n):
    """Sources of ``config.catalog`` on this exposure's full frame.

    Returns ``(e/s, sigma px, y, x, placed)``: the full-frame positions of the sources
    whose image reaches the science area, and ``placed``, their truth (catalogue
    index, science-area x, y, e/s).
    """
    cat = config.catalog
    b = REF_BORDER
    ns = n - 2 * b
    x, y = _gwcs(header, ns).invert(cat.ra, cat.dec, with_bounding_box=False)
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    margin = 12  # the half-size of a source's stamp
    keep = (
        np.isfinite(x)
        & np.isfinite(y)
        & (x > -margin)
        & (y > -margin)
        & (x < ns - 1 + margin)
        & (y < ns - 1 + margin)
    )
    electrons = cat.flux_ujy * 1e-6 / _AB_JY * 10 ** (0.4 * config.zero_point)
    sigma = np.hypot(PSF_SIGMA, cat.sigma_arcsec / PIXEL_SCALE)
    index = np.flatnonzero(keep)
    placed = {
        "index": index.astype(np.int64),
        "x": x[keep],
        "y": y[keep],
        "rate_e": electrons[keep],
        "note": "science-area pixel coordinates (0-based) of the catalogue sources",
    }
    return electrons[keep], sigma[keep], y[keep] + b, x[keep] + b, placed


def photometry(config, gain, area):
    """``(photom table, truth)`` of the simulated telescope.

    ``gain`` and ``area`` are science-area maps. The L1 carries romanisim's
    convention (MJy/sr of 1 DN/s in the central pixel, median gain), the photom
    reference romancal's (MJy/sr of 1 DN/s in a pixel of ``pixelareasr`` = Omega_ideal,
    median gain). ``truth["ours"]`` is the conversion of our L2 units, from the zero
    point directly.
    """
    abflux = 10 ** (0.4 * config.zero_point)  # e/s of an AB 0 source, unit QE
    g_med = float(np.median(gain[np.isfinite(gain) & (gain > 0)]))
    ny, nx = area.shape
    a_centre = float(area[ny // 2, nx // 2])
    mjy_per_e = _AB_JY / abflux / 1e6  # MJy of a source giving 1 e/s
    l1 = {
        "conversion_megajanskys": g_med * mjy_per_e / a_centre,
        "conversion_megajanskys_uncertainty": 0.0,
        "pixel_area": a_centre,
    }
    row = {
        "photmjsr": g_med * mjy_per_e / OMEGA_IDEAL,
        "uncertainty": 0.0,
        "pixelareasr": OMEGA_IDEAL,
    }
    truth = {
        "zero_point": float(config.zero_point),
        "abflux_e_per_s": abflux,
        "median_gain": g_med,
        "l1": l1,
        "photom": row,
        "ours": G_IDEAL * mjy_per_e / OMEGA_IDEAL,
        "note": (
            "ours: MJy/sr per flattened DN/s per ideal pixel, what the photom step "
            "must write"
        ),
    }
    return {config.optical_element.upper(): row}, truth


def write_photom(path, table, config):
    """Write ``table`` as romancal's WFI imaging photom reference (WfiImgPhotomRefModel)."""
    from roman_datamodels import datamodels as dm

    model = dm.WfiImgPhotomRefModel.create_fake_data()
    model.meta.instrument.detector = config.detector
    model.meta.description = "romanimpreprocess simulation"
    model.meta.author = "romanimpreprocess"
    model.meta.pedigree = "DUMMY"
    # A flat 1.3-1.8 µm band: the simulation does not use it, the schema asks for it.
    band = {
        "collecting_area": 3.6,
        "wavelength": np.array([1.3, 1.8], np.float32),
        "effective_area": np.array([2.0, 2.0], np.float32),
    }
    model.phot_table = {key: {**row, **band} for key, row in table.items()}
    model.save(path)
    return path


# ------------------------------------------------------------------- dithers
def dither_offsets(count, step):
    """``count`` offsets (dx, dy) in pixels: multiples of ``step`` plus sub-pixel parts.

    Exposure ``i`` moves by ``i * step`` in x and ``0.6 * i * step`` in y, plus the
    fractions ``i / count`` (x) and ``(2 i mod count) / count`` (y) of a pixel, so the
    exposures sample different sub-pixel phases.
    """
    if count < 1:
        raise ValueError(f"dithers: need >= 1 exposure, got {count}")
    return [
        (i * step + i / count, 0.6 * i * step + (2 * i % count) / count)
        for i in range(count)
    ]
