"""The spline pixel-area map agrees with the per-pixel evaluation."""

import numpy as np
from astropy.io import fits

from romanimpreprocess.datamodels.wcs import pixel_area_map, pixel_area_rows
from romanimpreprocess.parallel import run_in_threads


def _header(a20=3e-8):
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    h["CRPIX1"] = h["CRPIX2"] = 100.0
    h["CRVAL1"], h["CRVAL2"] = 150.0, 2.0
    s = 0.11 / 3600
    h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = -s, 0.0, 0.0, s
    h["A_ORDER"] = h["B_ORDER"] = 2
    h["A_2_0"], h["B_0_2"], h["A_1_1"] = a20, -2e-8, 1e-8
    return h


def test_spline_matches_the_per_pixel_map():
    h = _header()
    for offset in (0, 4):
        exact = pixel_area_map(h, (200, 184), offset=offset)
        spline = pixel_area_rows(h, (200, 184), offset=offset)(0, 200)
        assert np.abs(spline / exact - 1).max() < 1e-8
        # and the distortion is visible at this level (the test can fail)
        assert np.ptp(exact) / exact.mean() > 1e-6


def test_row_blocks_on_threads_give_the_whole_frame_evaluation(monkeypatch):
    """Row blocks asked for on threads against one scipy call over the whole frame."""
    from scipy.interpolate import RectBivariateSpline

    captured = {}
    original = RectBivariateSpline.__init__

    def keep(self, *args, **kwargs):
        original(self, *args, **kwargs)
        captured["spline"] = self

    monkeypatch.setattr(RectBivariateSpline, "__init__", keep)
    shape = (200, 184)
    for threads in ("1", "2"):
        monkeypatch.setenv("RIP_THREADS", threads)
        area_of_rows = pixel_area_rows(_header(), shape)
        blocks = np.empty(shape)

        def evaluate(start, area_of_rows=area_of_rows, blocks=blocks):
            stop = min(shape[0], start + 37)
            blocks[start:stop] = area_of_rows(start, stop)

        run_in_threads(evaluate, range(0, shape[0], 37))
        whole = captured["spline"](np.arange(200.0), np.arange(184.0))
        np.testing.assert_array_equal(blocks, whole)


def test_rows_of_the_area_are_those_of_the_whole_map():
    shape = (200, 184)
    area_of_rows = pixel_area_rows(_header(), shape, offset=4)
    whole = area_of_rows(0, 200)
    for start, stop in ((0, 1), (0, 37), (37, 200), (199, 200)):
        np.testing.assert_array_equal(area_of_rows(start, stop), whole[start:stop])
    # a frame too small for the spline: rows of the per-pixel map
    small = (12, 12)
    np.testing.assert_array_equal(
        pixel_area_rows(_header(), small)(3, 9), pixel_area_map(_header(), small)[3:9]
    )
