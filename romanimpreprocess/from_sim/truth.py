"""Synthetic truth images in the OpenUniverse layout, for tests and demonstrations.

`write_truth_image` writes ``<directory>/<prefix>_<obsid>_<sca>.fits``: HDU 0 electrons
per pixel over ``EXPTIME`` on the SCA's native grid (Gaussian sources on an empty
sky), with the header keys `romanimpreprocess.from_sim.sim_to_isim` reads (FILTER,
RA_TARG, DEC_TARG, PA_OBSY, DATE-OBS, EXPTIME) and a TAN-SIP WCS (CRPIX 1-based).
"""

import os

import numpy as np

__all__ = ["truth_header", "write_truth_image"]


def truth_header(size, *, ra=9.5, dec=-44.0, pa=30.0, exptime=139.8, filter="H158"):
    """FITS header of a ``size`` x ``size`` truth image (0.11 arcsec pixels)."""
    from astropy.io import fits

    from romanimpreprocess.simulate.field import tan_sip_header

    h = fits.Header()
    h["EXPTIME"] = (float(exptime), "s")
    h["FILTER"] = filter
    h["RA_TARG"] = float(ra)
    h["DEC_TARG"] = float(dec)
    h["PA_OBSY"] = float(pa)
    h["DATE-OBS"] = "2026-03-01 12:00:00.000"
    tan_sip_header(ra, dec, np.radians(pa), (size + 1) / 2.0, header=h)
    return h


def write_truth_image(
    directory,
    size,
    *,
    obsid=12345,
    sca=1,
    seed=0,
    n_sources=None,
    peak_rate=(20.0, 400.0),
    prefix="truth",
    **header_kwargs,
):
    """Write a truth image of Gaussian sources; return its path.

    ``peak_rate`` is the range of the peak pixel rates (e/s), drawn log-uniformly.
    """
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    header = truth_header(size, **header_kwargs)
    exptime = float(header["EXPTIME"])
    if n_sources is None:
        n_sources = max(size * size // 1500, 4)
    image = np.zeros((size, size))
    yy, xx = np.mgrid[0:size, 0:size]
    lo, hi = np.log(peak_rate[0]), np.log(peak_rate[1])
    half = 10
    for _ in range(n_sources):
        yc, xc = rng.uniform(half, size - half, 2)
        sigma = rng.uniform(1.0, 3.0)
        peak = np.exp(rng.uniform(lo, hi))
        y0, y1 = int(yc) - half, int(yc) + half + 1
        x0, x1 = int(xc) - half, int(xc) + half + 1
        stamp = np.exp(
            -((yy[y0:y1, x0:x1] - yc) ** 2 + (xx[y0:y1, x0:x1] - xc) ** 2)
            / (2 * sigma**2)
        )
        image[y0:y1, x0:x1] += peak * stamp
    path = os.path.join(os.fspath(directory), f"{prefix}_{obsid}_{sca}.fits")
    fits.PrimaryHDU((image * exptime).astype(np.float32), header=header).writeto(
        path, overwrite=True
    )
    return path
