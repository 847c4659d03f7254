"""Photom: the conversion to our units against a closed-form source, and the step."""

import logging

import numpy as np
import pytest
import roman_datamodels.datamodels as dm

from romanimpreprocess.constants import G_IDEAL, OMEGA_IDEAL
from romanimpreprocess.datamodels import l2
from romanimpreprocess.photom import PhotomStep, photom

N = 72
S = N - 8


def _romanisim_conversion(gain, abflux, pixel_area):
    """romanisim 0.14 ``update_photom_keywords``: MJy/sr of 1 DN/s in one pixel."""
    return gain * 3631 / abflux / 1e6 / pixel_area


def test_conversion_gives_back_the_flux_of_a_point_source():
    # A source of 50 uJy on a detector whose zero point is 2.0e10 e/s for AB 0.
    abflux, flux_mjy = 2.0e10, 50e-12
    g_det, pixel_area = 1.83, 2.95e-13  # the detector's gain and nominal pixel
    electrons = flux_mjy * 1e6 / 3631 * abflux  # e/s from the source (unit QE)
    # Our L2: DN of G_IDEAL electrons; a point source sums to electrons / G_IDEAL.
    total_dn = electrons / G_IDEAL
    conv = photom.conversion_to_our_units(
        _romanisim_conversion(g_det, abflux, pixel_area),
        0.0,
        pixel_area,
        g_det,
        g_ideal=G_IDEAL,
        omega_ideal=OMEGA_IDEAL,
        source="test",
    )
    assert conv.conversion_megajanskys * OMEGA_IDEAL * total_dn == pytest.approx(
        flux_mjy, rel=1e-12
    )
    assert conv.pixel_area == OMEGA_IDEAL
    # A uniform sky of 1 MJy/sr reads 1/C flattened DN/s per ideal pixel.
    sky_e = 1.0 * OMEGA_IDEAL * 1e6 / 3631 * abflux
    assert conv.conversion_megajanskys * sky_e / G_IDEAL == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("photmjsr", "area", "gain", "word"),
    [
        (-999999.0, 3e-13, 1.8, "photmjsr"),
        (float("nan"), 3e-13, 1.8, "photmjsr"),
        (0.5, None, 1.8, "pixelareasr"),
        (0.5, 3e-13, 0.0, "gain"),
    ],
)
def test_bad_values_are_refused_with_their_name(photmjsr, area, gain, word):
    with pytest.raises(photom.PhotometryError, match=word) as info:
        photom.conversion_to_our_units(
            photmjsr,
            0.0,
            area,
            gain,
            g_ideal=1.458,
            omega_ideal=OMEGA_IDEAL,
            source="my.asdf",
        )
    assert "my.asdf" in str(info.value)


def _image(filter_name="F158"):
    model = dm.ImageModel.create_fake_data(shape=(S, S))
    model.data = np.ones((S, S), np.float32)
    model.dq = np.zeros((S, S), np.uint32)
    model.meta.exposure.read_pattern = [[0], [1, 2], [3, 4]]
    model.meta.instrument.optical_element = filter_name
    model.meta["cal_step"] = {}  # as after our ramp fit
    return model


def _photom_file(tmp_path, table):
    ref = dm.WfiImgPhotomRefModel.create_fake_data()
    band = {
        "collecting_area": 3.6,
        "wavelength": np.array([1.4, 1.8], np.float32),
        "effective_area": np.array([2.0, 2.0], np.float32),
    }
    ref.phot_table = {key: {**row, **band} for key, row in table.items()}
    path = tmp_path / "photom.asdf"
    ref.save(path)
    return str(path)


@pytest.fixture
def gain_file(make_ref_file, rng):
    gain = rng.uniform(1.6, 2.0, (N, N))
    gain[:4] = 0.0  # reference rows: not part of the median
    return make_ref_file("gain.asdf", {"data": gain}), float(
        np.median(gain[4:-4, 4:-4])
    )


def test_step_uses_the_photom_reference(tmp_path, gain_file):
    path, g_med = gain_file
    table = {
        "F158": {"photmjsr": 0.71, "uncertainty": 0.01, "pixelareasr": 2.9e-13},
        "F062": {"photmjsr": 0.2, "uncertainty": 0.0, "pixelareasr": 2.9e-13},
    }
    out = PhotomStep.call(
        _image(), override_photom=_photom_file(tmp_path, table), override_gain=path
    )
    factor = (2.9e-13 / OMEGA_IDEAL) * (G_IDEAL / g_med)
    phot = out.meta.photometry
    assert phot.conversion_megajanskys == pytest.approx(0.71 * factor, rel=1e-12)
    assert phot.conversion_megajanskys_uncertainty == pytest.approx(0.01 * factor)
    assert phot.pixel_area == OMEGA_IDEAL
    assert out.meta.cal_step.photom == "COMPLETE"
    assert out["processinfo"]["photometry"]["source"].startswith("photom reference")
    np.testing.assert_array_equal(out.data, 1.0)  # data untouched


def test_step_converts_the_l1_photometry(gain_file):
    path, g_med = gain_file
    model = _image()
    model.meta.photometry.conversion_megajanskys = 0.5
    model.meta.photometry.conversion_megajanskys_uncertainty = 0.0
    model.meta.photometry.pixel_area = 3.0e-13
    out = PhotomStep.call(model, override_photom="N/A", override_gain=path)
    expected = 0.5 * (3.0e-13 / OMEGA_IDEAL) * (G_IDEAL / g_med)
    assert out.meta.photometry.conversion_megajanskys == pytest.approx(expected)
    assert out.meta.cal_step.photom == "COMPLETE"
    assert out["processinfo"]["photometry"]["source"] == "L1 meta.photometry"


def test_step_without_a_source_leaves_none_and_warns(gain_file, caplog):
    path, _ = gain_file
    with caplog.at_level(logging.WARNING):
        out = PhotomStep.call(_image(), override_photom="N/A", override_gain=path)
    assert out.meta.photometry.conversion_megajanskys is None
    assert out.meta.cal_step.photom == "SKIPPED"
    assert "No photometry" in caplog.text
    # romancal's FluxStep stops on it instead of scaling by a placeholder.
    from romancal.flux.flux_step import apply_flux_correction

    out.meta.cal_step["flux"] = "INCOMPLETE"
    with pytest.raises(TypeError):
        apply_flux_correction(out)


def test_step_without_a_gain_file_says_the_median_gain_is_needed(tmp_path):
    table = {"F158": {"photmjsr": 0.71, "uncertainty": 0.01, "pixelareasr": 2.9e-13}}
    with pytest.raises(photom.PhotometryError, match="override_gain is N/A"):
        PhotomStep.call(
            _image(), override_photom=_photom_file(tmp_path, table), override_gain="N/A"
        )


def test_step_refuses_a_photom_file_without_the_filter(tmp_path, gain_file):
    path, _ = gain_file
    table = {"F062": {"photmjsr": 0.2, "uncertainty": 0.0, "pixelareasr": 2.9e-13}}
    ref = _photom_file(tmp_path, table)
    with pytest.raises(photom.PhotometryError, match="F158") as info:
        PhotomStep.call(_image(), override_photom=ref, override_gain=path)
    assert "photom.asdf" in str(info.value) and "F062" in str(info.value)


def test_finalize_never_keeps_a_placeholder_or_foreign_conversion():
    model = _image()
    model.meta.photometry.conversion_megajanskys = 0.5  # an L1's, other units
    l2.finalize_l2(model, cal_steps={"photom": "SKIPPED"})
    assert model.meta.photometry.conversion_megajanskys is None
    assert model.meta.photometry.pixel_area == OMEGA_IDEAL
    model = _image()
    l2.finalize_l2(model, cal_steps={"photom": "INCOMPLETE"})
    assert model.meta.photometry.conversion_megajanskys is None
