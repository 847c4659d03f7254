"""Three dithered simulated exposures -> our pipeline -> romancal 1.1.0 MosaicPipeline.

The truth is the simulation's catalogue (µJy): the coadd must be finite over the
overlap, and the aperture fluxes of isolated stars on the coadd, converted with the
coadd's own units (MJy/sr after romancal's FluxStep, pixel area of its WCS), must give
the catalogue fluxes back within 2 %. Offline: no CRDS call is allowed (each raises),
every reference file is an override, and the mosaic's catalogue step is skipped (it
looks up the skycell map in CRDS).
"""

import math

import numpy as np
import pytest
import roman_datamodels as rdm

from romanimpreprocess.constants import REF_BORDER
from romanimpreprocess.pipeline import legacy
from romanimpreprocess.simulate import SimulationConfig
from romanimpreprocess.simulate.dithers import write_dithered
from romanimpreprocess.simulate.field import (
    SourceCatalog,
    dither_offsets,
)

SIZE = 128
COUNT = 3
STEP = 10.0  # px between exposures (plus sub-pixel parts)
APERTURE, ANNULUS = 6.0, (9.0, 14.0)  # px


def _no_crds(*args, **kwargs):
    raise AssertionError("CRDS was called")


def _star_grid(config):
    """Stars on a jittered 3x3 grid inside the overlap of the dithered exposures."""
    from romanimpreprocess.datamodels.wcs import gwcs_from_header
    from romanimpreprocess.simulate.simulate import wcs_header

    rng = np.random.default_rng(5)
    ns = SIZE - 2 * REF_BORDER
    offsets = dither_offsets(COUNT, STEP)
    x0 = max(o[0] for o in offsets) + 18
    y0 = max(o[1] for o in offsets) + 18
    xs = np.linspace(x0, ns - 18, 3)
    ys = np.linspace(y0, ns - 18, 3)
    x = (xs[None, :] + rng.uniform(-1.5, 1.5, (3, 3))).ravel()
    y = (ys[:, None] + rng.uniform(-1.5, 1.5, (3, 3))).ravel()
    ra, dec = gwcs_from_header(wcs_header(config, ns), (ns, ns))(x, y)
    flux = np.exp(rng.uniform(np.log(15.0), np.log(150.0), x.size))  # µJy
    return SourceCatalog(np.asarray(ra), np.asarray(dec), flux, np.zeros(x.size))


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory):
    import stpipe.crds_client
    from romancal.pipeline import MosaicPipeline

    from romanimpreprocess.L1_to_L2 import gen_cal_image

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STPIPE_DISABLE_CRDS_STEPPARS", "true")
        for name in ("get_reference_file", "get_multiple_reference_paths"):
            if hasattr(stpipe.crds_client, name):
                mp.setattr(stpipe.crds_client, name, _no_crds)
        import crds

        mp.setattr(crds, "getreferences", _no_crds)
        config = SimulationConfig(
            size=SIZE, seed=21, ra=53.1, dec=-27.8, roll=30.0, sky_rate=1.5
        )
        catalog = _star_grid(config)
        field = write_dithered(
            tmp_path_factory.mktemp("mosaic"),
            config,
            COUNT,
            step=STEP,
            catalog=catalog,
        )
        l2_paths = []
        for exposure in field.exposures:
            cfg = legacy.load_config(exposure.config_yaml)
            cfg["SKYORDER"] = 0
            gen_cal_image(cfg)
            l2_paths.append(cfg["OUT"])
        pipe = MosaicPipeline()
        pipe.resample_on_skycell = False
        pipe.source_catalog.skip = True
        coadd, _, _ = pipe.run(l2_paths)
    return coadd, catalog, l2_paths


def test_the_l2s_carry_photometry_for_their_units(mosaic):
    _, _, l2_paths = mosaic
    for path in l2_paths:
        with rdm.open(path) as model:
            assert model.meta.cal_step.photom == "COMPLETE"
            assert model.meta.photometry.conversion_megajanskys > 0


def test_coadd_is_finite_over_the_overlap(mosaic):
    coadd, _, l2_paths = mosaic
    data = np.asarray(coadd.data)
    yy, xx = np.mgrid[0 : data.shape[0], 0 : data.shape[1]]
    ra, dec = coadd.meta.wcs(xx, yy)
    overlap = np.ones(data.shape, bool)
    for path in l2_paths:
        with rdm.open(path) as model:
            ny, nx = model.data.shape
            x, y = model.meta.wcs.invert(ra, dec, with_bounding_box=False)
        overlap &= (x > 1) & (y > 1) & (x < nx - 2) & (y < ny - 2)
    assert overlap.sum() > 0.5 * (SIZE - 2 * REF_BORDER - COUNT * STEP) ** 2
    assert np.isfinite(data[overlap]).all()
    assert coadd.meta.cal_step.flux == "COMPLETE"


def test_star_fluxes_on_the_coadd_match_the_catalogue(mosaic):
    coadd, catalog, _ = mosaic
    data = np.asarray(coadd.data, dtype=np.float64)  # MJy/sr (FluxStep)
    err = np.asarray(coadd.err, dtype=np.float64)
    # The coadd's own pixel: its WCS pixel scale (deg) squared, in sr.
    pixel_sr = math.radians(coadd.meta.wcsinfo.pixel_scale) ** 2
    x, y = coadd.meta.wcs.invert(catalog.ra, catalog.dec)
    yy, xx = np.mgrid[0 : data.shape[0], 0 : data.shape[1]]
    ratios = []
    for i in range(len(catalog)):
        r = np.hypot(xx - x[i], yy - y[i])
        inside = r <= APERTURE
        ring = (r >= ANNULUS[0]) & (r <= ANNULUS[1])
        assert np.isfinite(data[inside]).all(), f"star {i}: masked pixel in aperture"
        background = np.nanmedian(data[ring])
        flux_ujy = np.sum(data[inside] - background) * pixel_sr * 1e12
        sigma_ujy = math.sqrt(np.sum(err[inside] ** 2)) * pixel_sr * 1e12
        # 2 % must be a >= 3 sigma bound for the star to test the calibration.
        if sigma_ujy > 0.02 / 3 * catalog.flux_ujy[i]:
            continue
        ratios.append(flux_ujy / catalog.flux_ujy[i])
    print("coadd / catalogue flux of the tested stars:", np.round(ratios, 4))
    assert len(ratios) >= 5, ratios
    np.testing.assert_allclose(ratios, 1.0, atol=0.02)
