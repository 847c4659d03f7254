"""The exposure WCS from the legacy FITSWCS header text (docs/flatfield/index.rst).

The header is a TAN-SIP FITS header whose CRPIX is already 0-based (pixel (0, 0) is
the first science pixel). `gwcs_from_header` builds the equivalent gwcs for the L2's
``meta.wcs``; `pixel_area_map` evaluates the solid angle of every science pixel with
astropy's C WCS (the same mapping: shift by CRPIX, SIP, CD, TAN, rotation), which is
an order of magnitude faster than evaluating the gwcs model tree on 16.8 M points.
"""

import logging
import os

import numpy as np
from numpy.typing import NDArray

from romanimpreprocess.datamodels.errors import WCSHeaderError

__all__ = [
    "gwcs_from_header",
    "legacy_world_function",
    "pixel_area_map",
    "read_wcs_header",
    "update_wcsinfo",
]

log = logging.getLogger(__name__)

_REQUIRED = ("CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "CTYPE1", "CTYPE2")


def read_wcs_header(path):
    """Read a FITSWCS header text file; clear `WCSHeaderError` on any problem."""
    from astropy.io import fits

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WCSHeaderError(path, "WCS header file not found")
    try:
        with open(path) as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as err:
        raise WCSHeaderError(path, f"cannot read the WCS header ({err})") from None
    try:
        # The legacy writes FITS cards (Header.tofile: 80-character cards, no
        # newlines); a text header with one card per line is accepted too.
        sep = "\n" if "\n" in text.strip("\n") else ""
        header = fits.Header.fromstring(text, sep=sep)
    except Exception as err:
        raise WCSHeaderError(path, f"not a FITS header text ({err})") from None
    missing = [k for k in _REQUIRED if k not in header]
    if missing:
        raise WCSHeaderError(path, f"WCS header lacks {', '.join(missing)}")
    if not str(header["CTYPE1"]).endswith("TAN-SIP"):
        raise WCSHeaderError(
            path, f"WCS header must be TAN-SIP, CTYPE1 = {header['CTYPE1']!r}"
        )
    if not any(k in header for k in ("CD1_1", "PC1_1", "CDELT1")):
        raise WCSHeaderError(path, "WCS header has no CD/PC matrix")
    return header


def _cd_matrix(header):
    if "CD1_1" in header:
        return np.array(
            [
                [header["CD1_1"], header.get("CD1_2", 0.0)],
                [header.get("CD2_1", 0.0), header["CD2_2"]],
            ],
            dtype=np.float64,
        )
    pc = np.array(
        [
            [header.get("PC1_1", 1.0), header.get("PC1_2", 0.0)],
            [header.get("PC2_1", 0.0), header.get("PC2_2", 1.0)],
        ]
    )
    cdelt = np.array([header.get("CDELT1", 1.0), header.get("CDELT2", 1.0)])
    return pc * cdelt[:, None]


def _sip_coefficients(header, letter):
    order = int(header.get(f"{letter}_ORDER", 0))
    coeffs = {}
    for p in range(order + 1):
        for q in range(order + 1 - p):
            key = f"{letter}_{p}_{q}"
            if key in header:
                coeffs[f"{letter.lower()}_{p}_{q}"] = float(header[key])
    return order, coeffs


def _fitted_inverse(distortion, crpix, shape, order):
    """Polynomial inverse of the SIP distortion, fitted over the detector.

    gwcs inverts a transform without an analytic inverse numerically, which fails in
    gwcs 0.26 for a TAN projection; romancal's resample needs the inverse.
    """
    from astropy.modeling import fitting, models

    ny, nx = shape if shape is not None else (4088, 4088)
    x, y = np.meshgrid(
        np.linspace(-0.5, nx - 0.5, 41) - crpix[0],
        np.linspace(-0.5, ny - 0.5, 41) - crpix[1],
    )
    u, v = distortion(x, y)
    fitter = fitting.LinearLSQFitter()
    inverse_x = fitter(models.Polynomial2D(order + 1), u, v, x)
    inverse_y = fitter(models.Polynomial2D(order + 1), u, v, y)
    return models.Mapping((0, 1, 0, 1)) | (inverse_x & inverse_y)


def gwcs_from_header(header, shape=None):
    """The gwcs ``Shift(-CRPIX) | SIP | CD | TAN | RotateNative2Celestial``.

    With ``shape`` (science area ``(ny, nx)``) the bounding box covers those pixels,
    which romancal's resample and footprint code need.
    """
    from astropy import coordinates
    from astropy import units as u
    from astropy.modeling import models
    from gwcs import coordinate_frames as cf
    from gwcs import wcs

    crpix = (float(header["CRPIX1"]), float(header["CRPIX2"]))
    a_order, a_coeffs = _sip_coefficients(header, "A")
    b_order, b_coeffs = _sip_coefficients(header, "B")
    shift = models.Shift(-crpix[0]) & models.Shift(-crpix[1])
    if a_order >= 2 or b_order >= 2:
        # SIP: u' = u + sum A_pq u^p v^q ; same for v with B.
        poly_a = models.Polynomial2D(max(a_order, 1), c1_0=1.0)
        for key, value in a_coeffs.items():
            _, p, q = key.split("_")
            setattr(poly_a, f"c{p}_{q}", getattr(poly_a, f"c{p}_{q}").value + value)
        poly_b = models.Polynomial2D(max(b_order, 1), c0_1=1.0)
        for key, value in b_coeffs.items():
            _, p, q = key.split("_")
            setattr(poly_b, f"c{p}_{q}", getattr(poly_b, f"c{p}_{q}").value + value)
        distortion = models.Mapping((0, 1, 0, 1)) | (poly_a & poly_b)
        distortion.inverse = _fitted_inverse(distortion, crpix, shape, max(a_order, 2))
    else:
        distortion = models.Identity(2)
    cd = _cd_matrix(header)
    affine = models.AffineTransformation2D(matrix=cd, translation=[0.0, 0.0])
    tan = models.Pix2Sky_TAN()
    rotation = models.RotateNative2Celestial(
        float(header["CRVAL1"]), float(header["CRVAL2"]), 180.0
    )
    forward = shift | distortion | affine | tan | rotation
    detector = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    sky = cf.CelestialFrame(
        reference_frame=coordinates.ICRS(), name="world", unit=(u.deg, u.deg)
    )
    result = wcs.WCS([(detector, forward), (sky, None)])
    if shape is not None:
        ny, nx = shape
        result.bounding_box = ((-0.5, nx - 0.5), (-0.5, ny - 0.5))
    return result


def _astropy_wcs(header):
    from astropy.wcs import WCS

    # CRPIX is 0-based in these headers; with origin=1 astropy computes x - CRPIX.
    return WCS(header)


def legacy_world_function(header):
    """The legacy's WCS evaluation (docs/flatfield/index.rst), for ``legacy_compat``.

    The legacy converts the header into a gwcs whose polynomials carry the CD matrix
    (``Shift(-CRPIX) | Mapping | (P_x & P_y) | TAN | Rotate(CRVAL, 180)``) and
    evaluates it through astropy's modeling without the bounding box; the same model
    evaluated the same way gives the same bits (and costs tens of seconds on a full
    frame, where astropy's C WCS takes a few).
    """
    import warnings

    from astropy import wcs as fits_wcs
    from astropy.modeling.models import (
        Mapping,
        Pix2Sky_TAN,
        Polynomial2D,
        RotateNative2Celestial,
        Shift,
    )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits_wcs.FITSFixedWarning)
        w = fits_wcs.WCS(header)
    cd = w.wcs.piximg_matrix
    cfx, cfy = np.dot(cd, [w.sip.a.ravel(), w.sip.b.ravel()])
    a = np.reshape(cfx, w.sip.a.shape)
    b = np.reshape(cfy, w.sip.b.shape)
    a[1, 0], a[0, 1] = cd[0, 0], cd[0, 1]
    b[1, 0], b[0, 1] = cd[1, 0], cd[1, 1]

    def polynomial(matrix, degree):
        model = Polynomial2D(degree=degree)
        for i in range(matrix.shape[0]):
            for j in range(matrix.shape[1]):
                if 0 < i + j <= degree:
                    setattr(model, f"c{i}_{j}", matrix[i, j])
        return model

    x0, y0 = w.wcs.crpix
    transform = (
        (Shift(-x0) & Shift(-y0))
        | Mapping((0, 1, 0, 1))
        | (polynomial(a, w.sip.a_order) & polynomial(b, w.sip.b_order))
        | Pix2Sky_TAN()
        | RotateNative2Celestial(*w.wcs.crval, 180)
    )

    def world(x, y):
        return transform(x, y)

    world.legacy_radians = True
    return world


def _world_function(header):
    if callable(header) and not hasattr(header, "tostring"):
        return header  # a gwcs or legacy_world_function: (x, y) -> (ra, dec) deg
    w = _astropy_wcs(header)

    def world(x, y):
        return w.all_pix2world(x, y, 1)

    return world


def _area_at(world, x, y, north):
    """Central-difference equal-area Jacobian at pixel centres ``(x, y)``."""
    deg = np.pi / 180.0

    def uv(px, py):
        ra, dec = world(px, py)
        ra = ra * deg
        dec = dec * deg
        theta = np.pi / 2 - dec if north else np.pi / 2 + dec
        radius = 2 * np.sin(theta / 2)
        return radius * np.cos(ra), radius * np.sin(ra)

    u_right, v_right = uv(x + 1, y)
    u_left, v_left = uv(x - 1, y)
    u_up, v_up = uv(x, y + 1)
    u_down, v_down = uv(x, y - 1)
    j11 = (u_right - u_left) / 2
    j21 = (v_right - v_left) / 2
    j12 = (u_up - u_down) / 2
    j22 = (v_up - v_down) / 2
    return np.abs(j11 * j22 - j21 * j12)


def pixel_area_rows(header, shape, *, offset: int = 0, step: int = 16):
    """`pixel_area_map` from a bicubic spline through every ``step``-th pixel, by rows.

    The area of a TAN-SIP (low-order polynomial) WCS is smooth: on a full frame with
    ``step = 16`` the spline agrees with the per-pixel map to 4e-9 relative (below the
    float32 resolution of the flat it divides) in a twentieth of the time.

    Returns ``area_of_rows(start, stop)``: rows ``start:stop`` of the map (float64,
    ``(stop - start, nx)``), each value the one a whole-frame evaluation gives
    (FITPACK's bispev releases the GIL: callers may ask for blocks on threads). The
    map itself (134 MB a full frame, fresh memory each run) is never made. A frame
    too small for the spline gets rows of `pixel_area_map`.
    """
    from scipy.interpolate import RectBivariateSpline

    ny, nx = shape
    world = _world_function(header)
    _, dec0 = world(np.array([offset - 1.0]), np.array([offset - 1.0]))
    north = bool(np.asarray(dec0).ravel()[0] > 0)
    xs = np.unique(np.r_[np.arange(0, nx, step), nx - 1]).astype(np.float64)
    ys = np.unique(np.r_[np.arange(0, ny, step), ny - 1]).astype(np.float64)
    if xs.size < 4 or ys.size < 4:
        whole = pixel_area_map(header, shape, offset=offset)
        return lambda start, stop: whole[start:stop]
    gx, gy = np.meshgrid(xs + offset, ys + offset)
    nodes = _area_at(world, gx, gy, north)
    spline = RectBivariateSpline(ys, xs, nodes, kx=3, ky=3)
    rows = np.arange(ny, dtype=np.float64)
    columns = np.arange(nx, dtype=np.float64)

    def area_of_rows(start, stop):
        return spline(rows[start:stop], columns)

    return area_of_rows


def pixel_area_map(header, shape, *, offset: int = 0) -> NDArray[np.float64]:
    """Solid angle (sr) of every pixel of a ``shape`` science area.

    ``header`` is the FITSWCS header or a gwcs (slower).

    The sky positions of the grid ``x, y = offset-1 .. offset+n`` are projected with
    the equal-area (Lambert azimuthal) projection about the pole of the hemisphere of
    the first grid point; the Jacobian is taken with central differences
    (docs/flatfield/index.rst). ``offset = 0`` is correct (pixel (0, 0) of the WCS is the
    first science pixel); ``offset = 4`` reproduces the legacy's shifted map.
    """
    ny, nx = shape
    world = _world_function(header)

    xs = np.arange(offset - 1, offset + nx + 1, dtype=np.float64)
    ys = np.arange(offset - 1, offset + ny + 1, dtype=np.float64)
    area = np.empty((ny, nx), dtype=np.float64)
    _, dec0 = world(xs[:1], ys[:1])
    north = dec0[0] > 0
    # Row blocks keep the temporaries small on a full frame.
    block = 512
    for y0 in range(0, ny, block):
        y1 = min(ny, y0 + block)
        yy = ys[y0 : y1 + 2]
        gx, gy = np.meshgrid(xs, yy)
        ra, dec = world(gx, gy)
        deg = np.pi / 180.0
        ra = ra * deg
        dec = dec * deg
        theta = np.pi / 2 - dec if north else np.pi / 2 + dec
        radius = 2 * np.sin(theta / 2)
        u_ = radius * np.cos(ra)
        v_ = radius * np.sin(ra)
        j11 = (u_[1:-1, 2:] - u_[1:-1, :-2]) / 2
        j21 = (v_[1:-1, 2:] - v_[1:-1, :-2]) / 2
        j12 = (u_[2:, 1:-1] - u_[:-2, 1:-1]) / 2
        j22 = (v_[2:, 1:-1] - v_[:-2, 1:-1]) / 2
        area[y0:y1] = np.abs(j11 * j22 - j21 * j12)
    return area


def update_wcsinfo(meta, wcs, shape):
    """Fill ``meta.wcsinfo`` (reference point, roll, s_region) from the gwcs.

    romancal's resample builds its output grid from these.
    """
    ny, nx = shape
    cx, cy = (nx - 1) / 2.0, (ny - 1) / 2.0
    ra, dec = wcs(cx, cy)
    ra_up, dec_up = wcs(cx, cy + 1.0)
    # Position angle of the detector +y axis, east of north.
    d_ra = np.radians(ra_up - ra) * np.cos(np.radians(dec))
    d_dec = np.radians(dec_up - dec)
    roll = float(np.degrees(np.arctan2(d_ra, d_dec)))
    info = meta.wcsinfo
    info["ra_ref"] = float(ra)
    info["dec_ref"] = float(dec)
    info["roll_ref"] = roll
    info["v3yangle"] = 0.0
    info["vparity"] = -1
    info["s_region"] = "POLYGON ICRS " + " ".join(
        f"{a:.8f} {d:.8f}" for a, d in wcs.footprint()
    )
