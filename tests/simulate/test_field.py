"""Pointing, dithers, the shared catalogue and the photometry of simulated exposures."""

import asdf
import numpy as np
import pytest
import roman_datamodels as rdm

from romanimpreprocess.constants import G_IDEAL, OMEGA_IDEAL
from romanimpreprocess.photom import photom
from romanimpreprocess.simulate import SimulationConfig, write_simulation
from romanimpreprocess.simulate.cli import main
from romanimpreprocess.simulate.dithers import write_dithered
from romanimpreprocess.simulate.field import (
    SourceCatalog,
    dither_offsets,
)


@pytest.fixture(scope="module")
def dithered(tmp_path_factory):
    config = SimulationConfig(size=64, seed=8, ra=150.1, dec=2.2, roll=75.0)
    return write_dithered(
        tmp_path_factory.mktemp("dithered"), config, 3, step=6.0, n_sources=30
    )


def _truth(path):
    with asdf.open(path, lazy_load=False) as af:
        return {
            "sources": {
                k: np.array(v) for k, v in af["sources"].items() if k != "note"
            },
            "photometry": dict(af["photometry"]),
            "rate_l2": np.array(af["rate_l2"]),
            "sky_rate_l2": float(af["sky_rate_l2"]),
            "bad_pixels": np.array(af["bad_pixels"]),
        }


def test_offsets_have_sub_pixel_and_large_parts():
    offsets = np.array(dither_offsets(4, 20.0))
    assert offsets[0].tolist() == [0.0, 0.0]
    fractions = np.sort(np.mod(offsets[:, 0], 1.0))
    np.testing.assert_allclose(fractions, [0, 0.25, 0.5, 0.75])
    assert np.all(np.diff(offsets[:, 0]) > 19)
    with pytest.raises(ValueError, match="dithers"):
        dither_offsets(0, 1.0)


def test_sources_move_by_minus_the_dither(dithered):
    first = _truth(dithered.exposures[0].truth)["sources"]
    for (dx, dy), paths in zip(
        dithered.offsets[1:], dithered.exposures[1:], strict=True
    ):
        other = _truth(paths.truth)["sources"]
        common, i0, i1 = np.intersect1d(
            first["index"], other["index"], return_indices=True
        )
        assert common.size >= 5
        np.testing.assert_allclose(other["x"][i1] - first["x"][i0], -dx, atol=0.02)
        np.testing.assert_allclose(other["y"][i1] - first["y"][i0], -dy, atol=0.02)


def test_same_detector_own_noise(dithered):
    a, b = (rdm.open(p.l1) for p in dithered.exposures[:2])
    with (
        asdf.open(dithered.exposures[0].caldir["gain"]) as g0,
        asdf.open(dithered.exposures[1].caldir["gain"]) as g1,
    ):
        np.testing.assert_array_equal(g0["roman"]["data"], g1["roman"]["data"])
    assert np.mean(np.asarray(a.data) != np.asarray(b.data)) > 0.5
    catalog = SourceCatalog.read(dithered.catalog)
    assert len(catalog) == 30


def test_catalogue_fluxes_become_the_right_count_rate(tmp_path):
    """One star, noiseless: its L2 truth sums to F * 10^(0.4 ZP) / 3631 Jy / G_IDEAL."""
    star = SourceCatalog(
        np.array([20.0]), np.array([-10.0]), np.array([40.0]), np.array([0.0])
    )
    config = SimulationConfig(
        size=64,
        seed=3,
        ra=20.0,
        dec=-10.0,
        roll=10.0,
        noiseless=True,
        catalog=star,
        hot_fraction=0.0,
        dead_fraction=0.0,
        low_qe_fraction=0.0,
    )
    paths = write_simulation(tmp_path, config)
    truth = _truth(paths.truth)
    sources = truth["sources"]
    # the star is at the reference pixel (the science-area centre)
    assert sources["x"][0] == pytest.approx(27.5, abs=1e-6)
    assert sources["y"][0] == pytest.approx(27.5, abs=1e-6)
    box = (slice(15, 41), slice(15, 41))
    rate = truth["rate_l2"][box] - truth["sky_rate_l2"]
    # the simulator always makes one dead pixel (no sky there either): left out,
    # after checking it is not on the star
    bad = truth["bad_pixels"][box]
    yy, xx = np.mgrid[15:41, 15:41]
    assert not (bad & (np.hypot(xx - 27.5, yy - 27.5) < 6)).any()
    rate[bad] = 0.0
    expected = 40e-6 / 3631 * 10 ** (0.4 * config.zero_point) / G_IDEAL
    assert rate.sum() == pytest.approx(expected, rel=2e-3)


def test_l1_and_photom_file_give_our_conversion(dithered, monkeypatch):
    paths = dithered.exposures[0]
    truth = _truth(paths.truth)["photometry"]
    # romancal's own photom step reads the file (an override). Offline, romancal
    # still asks CRDS for the context it "used" (romancal#832): answered here.
    from romancal.photom import PhotomStep as RomancalPhotom
    from romancal.stpipe import core as romancal_core

    monkeypatch.setenv("STPIPE_DISABLE_CRDS_STEPPARS", "true")
    client = romancal_core.crds_client
    monkeypatch.setattr(client, "get_context_used", lambda observatory: "offline")
    monkeypatch.setattr(client, "get_svn_version", lambda: "offline")

    image = rdm.datamodels.ImageModel.create_fake_data(shape=(8, 8))
    image.meta.instrument.optical_element = "F158"
    image.meta["cal_step"] = {}
    out = RomancalPhotom.call(image, override_photom=paths.caldir["photom"])
    row = truth["photom"]
    assert out.meta.photometry.conversion_megajanskys == pytest.approx(row["photmjsr"])
    assert out.meta.photometry.pixel_area == pytest.approx(OMEGA_IDEAL)
    # Both sources convert to the conversion of our units, from the zero point.
    with rdm.open(paths.l1) as raw:
        l1 = dict(raw.meta.photometry)
    for value, area in (
        (l1["conversion_megajanskys"], l1["pixel_area"]),
        (row["photmjsr"], row["pixelareasr"]),
    ):
        conv = photom.conversion_to_our_units(
            value,
            0.0,
            area,
            truth["median_gain"],
            g_ideal=G_IDEAL,
            omega_ideal=OMEGA_IDEAL,
            source="test",
        )
        assert conv.conversion_megajanskys == pytest.approx(truth["ours"], rel=1e-12)
    ab_zero_mjy = 3631e-6 / 10 ** (0.4 * truth["zero_point"])  # MJy of 1 e/s
    assert truth["ours"] == pytest.approx(ab_zero_mjy * G_IDEAL / OMEGA_IDEAL)


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (["--ra", "10"], "both"),
        (["--ra", "10", "--dec", "95"], "dec"),
        (["--dithers", "-2"], "dithers"),
    ],
)
def test_cli_refuses_bad_pointing(tmp_path, capsys, args, word):
    assert main(["--out", str(tmp_path / "x"), "--size", "64", *args]) == 2
    assert word in capsys.readouterr().err
