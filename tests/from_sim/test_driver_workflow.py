"""The survey team's production driver, call for call, on a small truth image.

runs/summer2025run/OpenUniverse_to_L1L2.py of the legacy repository does, for every
exposure, exactly the four calls below (with its own config dicts ``c1`` and ``c2``);
they must run unchanged and the products must recover the truth.
"""

import os

import asdf
import numpy as np
import pytest
import roman_datamodels as rdm
import yaml
from astropy.io import fits

from romanimpreprocess.from_sim.ramps import orient_truth
from romanimpreprocess.from_sim.truth import write_truth_image
from romanimpreprocess.simulate import SimulationConfig, write_simulation

READS = [0, 1, 1, 3, 3, 6, 6, 10, 10, 14, 14, 18]
SIZE = 256  # full frame of the calibration set; the truth image is 248 x 248
SCA = 6  # a column-flipped SCA
SKY = 1.5  # e/s, sim_to_isim's default
G_IDEAL = 1.458


@pytest.fixture(scope="module")
def driver_products(tmp_path_factory):
    out = tmp_path_factory.mktemp("driver")
    pattern = [list(range(READS[i], READS[i + 1])) for i in range(0, len(READS), 2)]
    sim = write_simulation(
        out / "cal",
        SimulationConfig(
            size=SIZE,
            read_pattern=pattern,
            seed=5,
            n_sources=4,
            detector=f"WFI{SCA:02d}",
        ),
    )
    with open(sim.config_yaml) as f:
        base = yaml.safe_load(f)
    truth = write_truth_image(out, SIZE - 8, obsid=670, sca=SCA, seed=1)
    l1 = str(out / f"sim_{SCA}_L1.asdf")
    c1 = {
        "IN": truth,
        "OUT": l1,
        "READS": READS,
        "CALDIR": base["CALDIR"],
        "CNORM": 1.0,
        "SEED": 7,
        "FITSOUT": False,
    }
    c2 = {
        "IN": l1,
        "OUT": str(out / f"sim_{SCA}_L2.asdf"),
        "FITSWCS": l1[:-5] + "_asdf_wcshead.txt",
        "CALDIR": base["CALDIR"],
        "RAMP_OPT_PARS": base["RAMP_OPT_PARS"],
        "JUMP_DETECT_PARS": base["JUMP_DETECT_PARS"],
        "FITSOUT": False,
        "NOISE": {
            "LAYER": ["RS2", "Prb2"],
            "TEMP": str(out / "noise_temp.asdf"),
            "SEED": 11,
            "OUT": str(out / f"sim_{SCA}_noise.asdf"),
        },
    }

    # --- the driver, unchanged
    from romanimpreprocess.from_sim import sim_to_isim
    from romanimpreprocess.L1_to_L2 import gen_noise_image
    from romanimpreprocess.utils import maskhandling

    sim_to_isim.run_config(c1)  # truth image -> L1
    gen_noise_image.calibrateimage(c2 | {"SLICEOUT": True})  # L1 -> L2
    gen_noise_image.generate_all_noise(c2)  # noise layers
    maskhandling.PixelMask1.convert_file(c2["OUT"], c2["OUT"][:-5] + "_mask.fits")
    return {"c1": c1, "c2": c2, "truth": truth}


def test_every_file_appears(driver_products):
    c1, c2 = driver_products["c1"], driver_products["c2"]
    for path in (
        c1["OUT"],
        c1["OUT"][:-5] + "_asdf_wcshead.txt",
        c2["OUT"],
        c2["NOISE"]["OUT"],
        c2["OUT"][:-5] + "_mask.fits",
    ):
        assert os.path.isfile(path), path
    with asdf.open(c2["NOISE"]["OUT"]) as af:
        noise = np.asarray(af["noise"])
        assert list(af["config"]["NOISE"]["LAYER"]) == ["RS2", "Prb2"]
    assert noise.shape == (2, SIZE - 8, SIZE - 8) and noise.dtype == np.float32
    assert np.isfinite(noise).all()
    assert all(np.std(layer) > 0 for layer in noise)


def test_the_l2_recovers_the_truth(driver_products):
    c2, truth = driver_products["c2"], driver_products["truth"]
    with fits.open(truth) as hdus:
        image, header = hdus[0].data.astype(np.float64), hdus[0].header
    image, _ = orient_truth(image, header, SCA)
    expected = image / header["EXPTIME"] / G_IDEAL  # DN/s, the legacy scaling
    with fits.open(c2["OUT"][:-5] + "_mask.fits") as hdus:
        masked = hdus["MASK"].data.astype(bool)
    with rdm.open(c2["OUT"]) as model:
        data = np.array(model.data, dtype=np.float64)
        assert np.isfinite(data).all()
        assert model.meta.ephemeris.time > 60000  # a real MJD, not -999999
    # The sky, away from the sources: on a 248-pixel frame (8-column channels) the
    # 1/f noise left after the reference-pixel correction moves the whole frame by
    # a few 0.01 DN/s from run to run, so it is measured, as photometry does.
    empty = (expected < 0.01) & ~masked
    background = np.median(data[empty])
    assert background == pytest.approx(SKY / G_IDEAL, abs=0.1)
    sources = (expected > 10.0) & ~masked
    assert sources.sum() > 500
    ratio = (data[sources] - background) / expected[sources]
    assert abs(np.median(ratio) - 1.0) < 0.005


def test_the_mask_file_has_the_documented_layout(driver_products):
    c2 = driver_products["c2"]
    with fits.open(c2["OUT"][:-5] + "_mask.fits") as hdus:
        assert len(hdus) == 2
        assert hdus[1].header["EXTNAME"] == "MASK"
        assert hdus[0].data.dtype.kind == "f" and hdus[0].data.dtype.itemsize == 4
        assert hdus[1].data.dtype == np.dtype("int8")
        mask = hdus[1].data.astype(bool)
        image = np.array(hdus[0].data)
    with rdm.open(c2["OUT"]) as model:
        data = np.array(model.data)
        dq = np.array(model.dq)
    assert mask.shape == data.shape
    assert 0 < mask.mean() < 0.2
    np.testing.assert_array_equal(image[mask], -1000.0)
    np.testing.assert_array_equal(image[~mask], data[~mask])
    # DEAD and HOT pixels of the calibration set are masked
    from roman_datamodels.dqflags import pixel

    assert mask[(dq & (pixel.DEAD | pixel.HOT)) != 0].all()
