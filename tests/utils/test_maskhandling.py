"""CombinedMask / PixelMask1 against a brute-force mask; the mask file layout."""

import asdf
import numpy as np
import pytest
import roman_datamodels.datamodels as dm
from astropy.io import fits
from roman_datamodels.dqflags import pixel

from romanimpreprocess.datamodels import l2
from romanimpreprocess.sky import sky
from romanimpreprocess.utils import maskhandling
from romanimpreprocess.utils.maskhandling import CombinedMask, PixelMask1

_SHAPES = {
    1: [(0, 0)],
    5: [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)],
    9: [(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)],
    25: [(a, b) for a in range(-2, 3) for b in range(-2, 3)],
}


def _brute(dq, bits_and_footprints):
    ny, nx = dq.shape
    out = np.zeros(dq.shape, bool)
    for y in range(ny):
        for x in range(nx):
            for bit, footprint in bits_and_footprints:
                if int(dq[y, x]) & bit:
                    for dy, dx in _SHAPES[footprint]:
                        if 0 <= y + dy < ny and 0 <= x + dx < nx:
                            out[y + dy, x + dx] = True
    return out


def test_names_any_case_and_bit_numbers_grow_by_their_footprint(rng):
    spec = {"jump_det": 5, "Dead": 9, 13: 25, "GW_AFFECTED_DATA": 1}  # bit 13: LOW_QE
    bits = [
        (int(pixel.JUMP_DET), 5),
        (int(pixel.DEAD), 9),
        (1 << 13, 25),
        (int(pixel.GW_AFFECTED_DATA), 1),
    ]
    dq = np.zeros((20, 27), np.uint32)
    candidates = [b for b, _ in bits] + [int(pixel.SATURATED), int(pixel.OUTLIER)]
    for _ in range(30):
        y, x = rng.integers(0, 20), rng.integers(0, 27)
        dq[y, x] |= np.uint32(candidates[rng.integers(len(candidates))])
    mask = CombinedMask(spec).build(dq)
    np.testing.assert_array_equal(mask, _brute(dq, bits))
    # flags not listed never mask
    only_other = np.where(dq & np.uint32(pixel.SATURATED | pixel.OUTLIER), dq, 0)
    only_other &= np.uint32(pixel.SATURATED | pixel.OUTLIER)
    assert not CombinedMask(spec).build(only_other).any()


def test_pixelmask1_is_the_one_mask_of_the_sky_and_matches_brute_force(rng):
    assert sky.pixel_mask1 is maskhandling.pixel_mask1
    assert sky.PIXEL_MASK1 is maskhandling.PIXEL_MASK1
    names = list(maskhandling.PIXEL_MASK1)
    dq = np.zeros((24, 30), np.uint32)
    for _ in range(40):
        y, x = rng.integers(0, 24), rng.integers(0, 30)
        dq[y, x] |= np.uint32(pixel[names[rng.integers(len(names))]])
    bits = [(int(pixel[n]), f) for n, f in maskhandling.PIXEL_MASK1.items()]
    np.testing.assert_array_equal(PixelMask1.build(dq), _brute(dq, bits))


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"NOT_A_FLAG": 1}, "NOT_A_FLAG"),
        ({"HOT": 3}, "footprint must be 1, 5, 9 or 25"),
        ({32: 1}, "0 to 31"),
        ({}, "non-empty"),
    ],
)
def test_bad_mask_specifications_are_refused_with_the_key(spec, words):
    with pytest.raises(ValueError, match=words):
        CombinedMask(spec)


def _l2_model(shape=(24, 32), seed=0):
    rng = np.random.default_rng(seed)
    model = dm.ImageModel.create_fake_data(shape=shape)
    model.data = rng.normal(5.0, 1.0, shape).astype(np.float32)
    dq = np.zeros(shape, np.uint32)
    dq[5, 7] = pixel.HOT
    dq[15, 20] = pixel.JUMP_DET
    dq[10, 3] = pixel.SATURATED  # not in PixelMask1
    model.dq = dq
    model.err = np.ones(shape, np.float32)
    model.var_poisson = np.ones(shape, np.float32)
    model.var_rnoise = np.ones(shape, np.float32)
    # a flagged reference pixel next to the science area masks its neighbours
    left = np.zeros((shape[0] + 8, 4), np.uint32)
    left[4 + 12, 3] = pixel.DEAD
    model.dq_border_ref_pix_left = left
    l2.finalize_l2(model)
    return model


def test_write_l2_mask_file_fits_copy_and_convert_file_agree(tmp_path):
    model = _l2_model()
    path = tmp_path / "x_cal.asdf"
    l2.write_l2(model, path, fits_output=True, mask_output=True)
    mask_file = tmp_path / "x_cal_mask.fits"
    assert l2.mask_path(str(path)) == str(mask_file)
    with fits.open(mask_file) as hdus:
        assert hdus[0].data.dtype == np.dtype(">f4")
        assert hdus[1].name == "MASK" and hdus[1].header["EXTNAME"] == "MASK"
        assert hdus[1].data.dtype == np.dtype("int8")
        mask = hdus[1].data.astype(bool)
        image = np.array(hdus[0].data)
    # expected: HOT 3x3, JUMP cross, the border DEAD 3x3 reaching column 0
    expected = np.zeros(model.data.shape, bool)
    expected[4:7, 6:9] = True
    expected[15, 19:22] = expected[14:17, 20] = True
    expected[11:14, 0] = True
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(image[mask], -1000.0)
    np.testing.assert_array_equal(image[~mask], np.asarray(model.data)[~mask])
    with fits.open(tmp_path / "x_cal_asdf_to.fits") as hdus:
        np.testing.assert_array_equal(hdus["MASKED"].data, image)
    # the stand-alone conversion of the written file gives the same file contents
    again = tmp_path / "again_mask.fits"
    PixelMask1.convert_file(str(path), str(again))
    with fits.open(again) as hdus:
        np.testing.assert_array_equal(hdus["MASK"].data.astype(bool), expected)
        np.testing.assert_array_equal(hdus[0].data, image)
    as_asdf = tmp_path / "x_mask.asdf"
    PixelMask1.convert_file(path, as_asdf)
    with asdf.open(as_asdf) as af:
        assert af["mask"].dtype == bool
        np.testing.assert_array_equal(af["mask"], expected)


def test_rip_mask_command_and_its_errors(tmp_path, capsys):
    model = _l2_model()
    path = tmp_path / "y_cal.asdf"
    l2.write_l2(model, path)
    assert maskhandling.main([str(path)]) == 0
    assert (tmp_path / "y_cal_mask.fits").exists()
    assert maskhandling.main([str(path), str(tmp_path / "m.txt")]) == 1
    assert "must end in .fits or .asdf" in capsys.readouterr().err
    assert maskhandling.main([str(tmp_path / "missing.asdf")]) == 1
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "m.txt").exists()
