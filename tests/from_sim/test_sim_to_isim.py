"""sim_to_isim pieces: the WCS flip, the inverse linearity, config checks, EXTRACT_REF."""

import os

import numpy as np
import pytest
import roman_datamodels as rdm
import yaml
from astropy.io import fits
from astropy.wcs import WCS

from romanimpreprocess.datamodels import l1 as l1_io
from romanimpreprocess.from_sim import ramps, sim_to_isim
from romanimpreprocess.from_sim.truth import truth_header, write_truth_image
from romanimpreprocess.linearity.linearity import legendre_phi, normalized_signal
from romanimpreprocess.simulate import SimulationConfig, write_simulation

READS = [0, 1, 1, 3, 3, 5, 5, 8]


@pytest.mark.parametrize("sca", [1, 3, 17, 18])
def test_flipped_header_maps_the_flipped_pixel_to_the_same_sky(sca, rng):
    size = 40
    header = truth_header(size, pa=73.0)
    header["AP_ORDER"] = 1
    header["AP_1_0"] = 1e-6
    header["BP_ORDER"] = 1
    header["BP_0_1"] = -2e-6
    data = rng.normal(size=(size, size))
    flipped_data, flipped = ramps.orient_truth(data, header, sca)
    y, x = rng.integers(0, size, 2)
    if sca % 3 == 0:
        fy, fx = y, size - 1 - x
    else:
        fy, fx = size - 1 - y, x
    assert flipped_data[fy, fx] == data[y, x]
    # 0-based pixel coordinates in astropy; SIP terms included (the header has them)
    before = WCS(header).all_pix2world([[x + 0.3, y - 0.2]], 0)
    shift = (-0.3, -0.2) if sca % 3 == 0 else (0.3, 0.2)
    after = WCS(flipped).all_pix2world([[fx + shift[0], fy + shift[1]]], 0)
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-10)


def test_inverse_linearity_solves_the_pipeline_linearity(rng):
    shape = (6, 7)
    smin = rng.uniform(11000, 12000, shape)
    smax = smin + rng.uniform(40000, 45000, shape)
    coeffs = np.stack(
        [rng.uniform(-100, 100, shape), rng.uniform(2e4, 2.2e4, shape)]
        + [rng.uniform(-300, 300, shape) for _ in range(3)]
    )
    # targets inside the fitted range and beyond it (linear continuation)
    s_true = smin + (smax - smin) * rng.uniform(-0.1, 1.1, shape)
    z = normalized_signal(s_true, smin, smax - smin)
    target, _ = legendre_phi(z, coeffs)
    guess = smin + (smax - smin) * 0.5
    solved = ramps.invert_linearity(
        target, coeffs, smin, smax - smin, guess, iterations=8
    )
    np.testing.assert_allclose(solved, s_true, rtol=0, atol=1e-6)
    phi, slope = ramps.linearity_and_slope(s_true, coeffs, smin, smax - smin)
    np.testing.assert_allclose(phi, target, rtol=1e-12, atol=1e-8)
    eps = 1e-3
    numeric = (
        ramps.linearity_and_slope(s_true + eps, coeffs, smin, smax - smin)[0]
        - ramps.linearity_and_slope(s_true - eps, coeffs, smin, smax - smin)[0]
    ) / (2 * eps)
    np.testing.assert_allclose(slope, numeric, rtol=1e-6)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    """A 64x64 calibration set for READS and a 56x56 truth image."""
    out = tmp_path_factory.mktemp("sim_to_isim")
    pattern = [list(range(READS[i], READS[i + 1])) for i in range(0, len(READS), 2)]
    sim = write_simulation(
        out / "cal", SimulationConfig(size=64, read_pattern=pattern, seed=2)
    )
    with open(sim.config_yaml) as f:
        caldir = yaml.safe_load(f)["CALDIR"]
    truth = write_truth_image(out, 56, sca=4, seed=3)
    return out, caldir, truth


def test_config_problems_are_reported_together_before_any_work(small_set, tmp_path):
    _, caldir, _ = small_set
    bad = {
        "IN": str(tmp_path / "sim.fits"),
        "OUT": str(tmp_path / "x.fits"),
        "READS": [0, 1, 1],
        "CALDIR": {k: v for k, v in caldir.items() if k != "gain"} | {"flats": "x"},
        "SEED": -1,
        "EXTRACT_REF": {"data_encoding_offset": 70000},
    }
    with pytest.raises(ValueError) as info:
        sim_to_isim.run_config(bad)
    text = str(info.value)
    for words in (
        "IN:",
        "OUT:",
        "READS:",
        "CALDIR.gain: missing",
        "CALDIR.flats: unknown",
        "SEED:",
        "data_encoding_offset",
    ):
        assert words in text, words
    assert not list(tmp_path.iterdir())


def test_extract_ref_file_decodes_to_the_same_ramp(small_set, tmp_path):
    _, caldir, truth = small_set
    plain = {
        "IN": truth,
        "OUT": str(tmp_path / "plain_L1.asdf"),
        "READS": READS,
        "CALDIR": caldir,
        "SEED": 5,
        "FITSOUT": True,
    }
    coded = plain | {
        "OUT": str(tmp_path / "coded_L1.asdf"),
        "EXTRACT_REF": {"data_encoding_offset": 4000},
        "FITSOUT": False,
    }
    sim_to_isim.run_config(plain)
    sim_to_isim.run_config(coded)
    a = l1_io.raw_to_ramp(l1_io.open_l1(plain["OUT"]))
    b = l1_io.raw_to_ramp(l1_io.open_l1(coded["OUT"]))
    np.testing.assert_array_equal(b.data, a.data[1:])
    np.testing.assert_array_equal(b.amp33, a.amp33[1:])
    with rdm.open(coded["OUT"]) as raw:
        assert raw.meta.instrument.data_encoding_offset == 4000
        assert [list(r) for r in raw.meta.exposure.read_pattern] == [
            [1, 2],
            [3, 4],
            [5, 6, 7],
        ]
    with rdm.open(plain["OUT"]) as raw:
        raw.validate()
        assert raw.meta.instrument.detector == "WFI04"
        assert raw.meta.instrument.optical_element == "F158"
        # real times: DATE-OBS of the truth, 8 frames of 3.04 s, MJD mid-exposure
        assert raw.meta.exposure.start_time.isot == "2026-03-01T12:00:00.000"
        duration = 8 * sim_to_isim.FRAME_TIME
        assert raw.meta.exposure.end_time.unix - raw.meta.exposure.start_time.unix == (
            pytest.approx(duration, abs=1e-3)
        )
        assert raw.meta.ephemeris.time == pytest.approx(
            61100.5 + duration / 2 / 86400, abs=1e-8
        )
        assert raw.meta.pointing.target_ra == pytest.approx(9.5)
    with fits.open(plain["OUT"][:-5] + "_asdf_to.fits") as hdus:
        assert hdus[0].data.shape == (4, 64, 64 + 128)
    wcs_text = plain["OUT"][:-5] + "_asdf_wcshead.txt"
    assert os.path.isfile(wcs_text)
    from romanimpreprocess.datamodels.wcs import read_wcs_header

    wcs = read_wcs_header(wcs_text)
    with fits.open(truth) as hdus:
        original = hdus[0].header
    # SCA 4 is flipped in rows; CRPIX reduced by 1 (0-based science pixel)
    assert wcs["CRPIX2"] == pytest.approx(56 + 1 - original["CRPIX2"] - 1)
    assert wcs["CRPIX1"] == pytest.approx(original["CRPIX1"] - 1)
