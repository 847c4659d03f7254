"""The FITSWCS header reader, the gwcs builder and the pixel-area map."""

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from romanimpreprocess.datamodels import InputFileError
from romanimpreprocess.datamodels import wcs as wcs_tools

SCALE = 0.11 / 3600  # deg


def _header(sip=True, crpix=50.0):
    h = fits.Header()
    h["CTYPE1"] = "RA---TAN-SIP" if sip else "RA---TAN"
    h["CTYPE2"] = "DEC--TAN-SIP" if sip else "DEC--TAN"
    h["CRPIX1"] = h["CRPIX2"] = crpix
    h["CRVAL1"], h["CRVAL2"] = 30.0, -40.0
    h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = -SCALE, 0.0, 0.0, SCALE
    if sip:
        h["A_ORDER"] = h["B_ORDER"] = 2
        h["A_2_0"], h["A_1_1"], h["B_0_2"] = 2e-7, -1e-7, 1.5e-7
    return h


def test_area_of_a_pure_tan_projection_is_analytic():
    """Gnomonic: d(solid angle) = dx dy / (1 + rho^2)^(3/2), rho in radians."""
    crpix = 50.0
    area = wcs_tools.pixel_area_map(_header(sip=False, crpix=crpix), (100, 120))
    y, x = np.mgrid[0:100, 0:120]
    s = np.radians(SCALE)
    rho2 = (s * (x - crpix)) ** 2 + (s * (y - crpix)) ** 2
    expected = s * s / (1 + rho2) ** 1.5
    np.testing.assert_allclose(area, expected, rtol=1e-6)


def test_offset_shifts_the_map(tmp_path):
    h = _header()
    shifted = wcs_tools.pixel_area_map(h, (40, 40), offset=4)
    full = wcs_tools.pixel_area_map(h, (48, 48))
    np.testing.assert_allclose(shifted, full[4:44, 4:44], rtol=1e-12)
    assert np.ptp(full) > 0


def test_gwcs_agrees_with_astropy(tmp_path):
    h = _header()
    g = wcs_tools.gwcs_from_header(h, shape=(100, 100))
    w = WCS(h)
    x, y = np.array([0.0, 10.0, 99.0, 57.3]), np.array([0.0, 80.0, 99.0, 12.1])
    ra, dec = g(x, y)
    ra_a, dec_a = w.all_pix2world(x, y, 1)  # CRPIX is 0-based in these headers
    np.testing.assert_allclose(ra, ra_a, atol=1e-10)
    np.testing.assert_allclose(dec, dec_a, atol=1e-10)
    xi, yi = g.invert(ra, dec)
    np.testing.assert_allclose(xi, x, atol=1e-3)
    np.testing.assert_allclose(yi, y, atol=1e-3)


def test_reader_accepts_cards_and_lines_and_names_problems(tmp_path):
    h = _header()
    cards = tmp_path / "cards.txt"
    h.tofile(cards)
    lines = tmp_path / "lines.txt"
    lines.write_text(h.tostring(sep="\n"))
    for path in (cards, lines):
        assert wcs_tools.read_wcs_header(path)["A_2_0"] == 2e-7
    with pytest.raises(InputFileError, match="missing.txt.*not found"):
        wcs_tools.read_wcs_header(tmp_path / "missing.txt")
    tan = tmp_path / "tan.txt"
    _header(sip=False).tofile(tan)
    with pytest.raises(InputFileError, match="TAN-SIP"):
        wcs_tools.read_wcs_header(tan)
    partial = _header()
    del partial["CRVAL2"]
    bad = tmp_path / "partial.txt"
    partial.tofile(bad)
    with pytest.raises(InputFileError, match="CRVAL2"):
        wcs_tools.read_wcs_header(bad)
