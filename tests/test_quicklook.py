"""Quicklook: summary numbers, the figure, a mosaic, and the fallback without matplotlib."""

import sys

import numpy as np
import pytest
import roman_datamodels.datamodels as dm
from PIL import Image
from roman_datamodels.dqflags import pixel

from romanimpreprocess import quicklook
from romanimpreprocess.datamodels import l2


def test_png_round_trip(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    quicklook.write_png(path, rgb)
    with Image.open(path) as image:
        assert image.format == "PNG"
        np.testing.assert_array_equal(np.asarray(image.convert("RGB")), rgb)
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]  # no temporary left


@pytest.fixture
def l2_path(tmp_path):
    model = dm.ImageModel.create_fake_data(shape=(40, 40))
    model.data = np.full((40, 40), 2.0, np.float32)
    model.data[20, 20] = 50.0
    model.dq = np.zeros((40, 40), np.uint32)
    model.dq[:4, :10] = pixel.JUMP_DET  # 40 pixels = 2.5 %
    model.dq[30, 30] = pixel.HOT
    model.err = np.ones((40, 40), np.float32)
    model.var_poisson = np.ones((40, 40), np.float32)
    model.meta.instrument.optical_element = "F184"
    model.meta.instrument.detector = "WFI07"
    model.meta.exposure.exposure_time = 139.8
    model["processinfo"] = {"medsky": 1.75, "step_times": {"ramp_fit": 0.5}}
    l2.finalize_l2(model, cal_steps={"ramp_fit": "COMPLETE"})
    path = tmp_path / "x_cal.asdf"
    l2.write_l2(model, path)
    return path


def test_summary_of_an_l2(l2_path, tmp_path, capsys):
    summary = quicklook.quicklook(l2_path)
    assert summary.median_sky == 1.75
    assert summary.jump_pixels == 40
    assert summary.flagged_fraction["JUMP_DET"] == 40 / 1600
    assert summary.step_times == {"ramp_fit": 0.5}
    assert (summary.optical_element, summary.detector) == ("F184", "WFI07")
    assert summary.exposure_time == pytest.approx(139.8)
    assert summary.note == ""
    png = tmp_path / "x_cal_quicklook.png"
    with Image.open(png) as image:
        # a matplotlib figure (three panels, 17 x 5.8 in at 100 dpi), not the image
        assert image.size == (1700, 580)
        pixels = np.asarray(image.convert("RGB"))
    # more than a handful of colours: axes, colour maps, legend
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    assert quicklook.main([str(l2_path), "--no-png"]) == 0
    out = capsys.readouterr().out
    assert "JUMP_DET 2.500%" in out and "F184, WFI07, exposure 139.8 s" in out
    assert quicklook.main([str(tmp_path / "missing.asdf")]) == 2


def test_without_matplotlib_the_image_alone_and_a_message(
    l2_path, tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import raises
    png = tmp_path / "alone.png"
    assert quicklook.main([str(l2_path), "--png", str(png)]) == 0
    assert "pip install 'romanimpreprocess[quicklook]'" in capsys.readouterr().err
    with Image.open(png) as image:
        assert image.size == (40, 40)  # the image itself, one pixel per pixel
        rgb = np.asarray(image.convert("RGB"))
    # row 0 at the bottom: the bright pixel (20, 20) is white, masked JUMP_DET red
    assert tuple(rgb[40 - 1 - 20, 20]) == (255, 255, 255)
    assert tuple(rgb[40 - 1 - 0, 0]) == (200, 40, 40)


def test_a_romancal_mosaic(tmp_path, capsys):
    mosaic = dm.MosaicModel.create_fake_data(shape=(30, 50))
    mosaic.data = np.full((30, 50), 0.25, np.float32)
    context = np.zeros((1, 30, 50), np.uint32)
    context[0, :, :30] |= 1
    context[0, :, 20:] |= 2
    context[0, 10:, :] |= 4
    mosaic.context = context
    mosaic.meta.cal_step.flux = "COMPLETE"
    mosaic.meta.instrument.optical_element = "F158"
    path = tmp_path / "coadd.asdf"
    mosaic.save(path)
    summary = quicklook.quicklook(path)
    assert summary.kind == "mosaic" and summary.unit == "MJy/sr"
    assert summary.median_data == pytest.approx(0.25)
    assert quicklook.main([str(path), "--no-png"]) == 0
    assert "mosaic" in capsys.readouterr().out
    coverage = quicklook._load(path).coverage
    assert coverage[0, 0] == 1 and coverage[0, 25] == 2 and coverage[15, 25] == 3
