"""romancal 1.1.0's own downstream steps accept our L2 as they accept theirs."""

import numpy as np
import pytest
import roman_datamodels as rdm

from romanimpreprocess.pipeline import legacy


@pytest.fixture(scope="module")
def sources_set(tmp_path_factory):
    """A small exposure with a few bright, unsaturated sources."""
    from romanimpreprocess.simulate import SimulationConfig, write_simulation

    config = SimulationConfig(size=128, seed=12, n_sources=10, max_source_flux=2500.0)
    return write_simulation(tmp_path_factory.mktemp("downstream"), config)


@pytest.fixture(scope="module")
def l2_path(sources_set):
    from romanimpreprocess.L1_to_L2 import gen_cal_image

    config = legacy.load_config(sources_set.config_yaml)
    config["SKYORDER"] = 0
    gen_cal_image(config)
    return config["OUT"]


def _aperture_flux(image, x, y, radius=6.0, annulus=(9.0, 14.0)):
    yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    r = np.hypot(xx - x, yy - y)
    inside = r <= radius
    ring = (r >= annulus[0]) & (r <= annulus[1]) & np.isfinite(image)
    background = np.median(image[ring])
    values = image[inside]
    assert np.all(np.isfinite(values)), "aperture touches a masked pixel"
    return float(np.sum(values - background))


def test_resample_conserves_the_flux_of_a_source(l2_path, sources_set):
    import asdf
    from romancal.resample import ResampleStep

    with asdf.open(sources_set.truth, lazy_load=False) as af:
        truth = np.array(af["rate_l2"], dtype=np.float64)
        saturated = np.array(af["saturated"])
    model = rdm.open(l2_path)
    data = np.array(model.data, dtype=np.float64)
    dq = np.array(model.dq)
    # The brightest isolated, unsaturated, unflagged source away from the edges.
    ny, nx = data.shape
    order = np.argsort(truth, axis=None)[::-1]
    for index in order:
        y, x = np.unravel_index(index, truth.shape)
        box = (slice(y - 7, y + 8), slice(x - 7, x + 8))
        if y < 15 or x < 15 or y >= ny - 15 or x >= nx - 15:
            continue
        # JUMP_DET pixels keep a refitted slope; anything else disqualifies.
        if saturated[box].any() or (dq[box] & ~np.uint32(4)).any():
            continue
        break
    else:
        pytest.skip("no isolated source in this simulation")
    assert truth[y, x] > 10 * np.median(truth), "no bright isolated source found"
    flux_in = _aperture_flux(data, x, y)

    step = ResampleStep()  # .run: no CRDS parameter lookup
    step.save_results = False
    mosaic = step.run(model)
    out = np.array(mosaic.data, dtype=np.float64)
    ra, dec = model.meta.wcs(x, y)
    ox, oy = mosaic.meta.wcs.invert(ra, dec)
    flux_out = _aperture_flux(out, float(ox), float(oy))
    assert flux_in > 0
    assert abs(flux_out / flux_in - 1) < 0.01, (flux_in, flux_out)
    assert mosaic.meta.cal_step.get("resample", "COMPLETE") == "COMPLETE"
