"""NoiseStep on small in-memory L2 models and reference files (stand-in calibration)."""

import asdf
import numpy as np
import pytest
from astropy.io import fits
from roman_datamodels import datamodels as dm

from romanimpreprocess.datamodels import MissingReferenceError, raw_to_ramp
from romanimpreprocess.noise import NoiseStep
from romanimpreprocess.noise.layers import LayerSyntaxError
from tests.conftest import make_raw_model
from tests.noise.test_noise import optimal_weights, resultant_times

READ_PATTERN = [[0], [1, 2], [3, 4, 5], [6, 7, 8, 9, 10], [11, 12], [13]]
FRAME_TIME = 3.04
SIZE = 128  # full frame incl. the 4-pixel border; science area 120²
SCI = SIZE - 8
GAIN = 1.8
SIGMA_READ = 6.5


@pytest.fixture
def weights():
    return optimal_weights(READ_PATTERN, FRAME_TIME)


@pytest.fixture
def l2_model(weights):
    """An L2 model as the pipeline leaves it: data, data_withsky, processinfo."""
    model = dm.ImageModel.create_fake_data(shape=(SCI, SCI))
    model.meta.exposure.read_pattern = READ_PATTERN
    model.meta.exposure.frame_time = FRAME_TIME
    model.meta.filename = "expo_cal.asdf"
    model.data = np.zeros((SCI, SCI), np.float32)
    model["data_withsky"] = np.full((SCI, SCI), 3.0, np.float32)
    tbar, _, _ = resultant_times(READ_PATTERN, FRAME_TIME)
    endslice = np.full((SCI, SCI), -1, np.int8)
    endslice[: SCI // 2] = 3
    model["processinfo"] = {
        "weights": weights.astype(np.float32),
        "meta": {"tbar": tbar.astype(np.float32)},
        "exclude_first": True,
        "endslice": endslice,
    }
    return model


@pytest.fixture
def refs(make_ref_file):
    shape = (SIZE, SIZE)
    rng = np.random.default_rng(7)
    dark = 1000 + 20 * rng.random((6, *shape)).astype(np.float32)
    return {
        "override_gain": make_ref_file("gain.asdf", {"data": np.full(shape, GAIN)}),
        "override_readnoise": make_ref_file(
            "read.asdf",
            {
                "data": np.full(shape, SIGMA_READ, np.float32),
                "resetnoise": np.full(shape, 5.0, np.float32),
                "anc": {"C_PINK": 0.0, "U_PINK": 0.0},
            },
        ),
        "override_dark": make_ref_file(
            "dark.asdf",
            {"data": dark, "dark_slope": np.zeros(shape, np.float32)},
        ),
    }


def linear_calibration(weights):
    """Stand-in for the pipeline: decode the L1 and apply K to the science area."""

    def calibrate(l1):
        ramp = raw_to_ramp(l1)
        out = dm.ImageModel.create_fake_data(shape=(SCI, SCI))
        out.data = np.tensordot(weights, ramp.data[:, 4:-4, 4:-4], axes=1).astype(
            np.float32
        )
        return out

    return calibrate


def run(model, refs, tmp_path, name="noise.asdf", **pars):
    path = str(tmp_path / name)
    NoiseStep.call(model, noise_file=path, **refs, **pars)
    with asdf.open(path) as af:
        return np.array(af["noise"]), dict(af["config"])


def test_op_layers_written_with_model_statistics(l2_model, refs, tmp_path, weights):
    cube, config = run(l2_model, refs, tmp_path, layers=["O", "Pr", "CxP"], seed=3)
    assert cube.shape == (3, SCI, SCI) and cube.dtype == np.float32
    assert config["layers"] == ["O", "Pr", "CxP"] and config["seed"] == 3
    np.testing.assert_array_equal(cube[2], 0.0)  # P without r adds nothing
    # P layer, unsaturated half: variance sky·t·Σc²/gain (c = per-increment weights).
    from romanimpreprocess.noise import weights as fit_weights

    tbar, _, _ = resultant_times(READ_PATTERN, FRAME_TIME)
    table, _ = fit_weights.weight_table(weights, tbar, start=1)
    coef = fit_weights.increment_coefficients(table, READ_PATTERN)
    expected = 3.0 * FRAME_TIME * np.sum(coef[5] ** 2) / GAIN
    part = cube[1, SCI // 2 :].astype(float)
    np.testing.assert_allclose(part.var(), expected, rtol=5 * np.sqrt(2.2 / part.size))
    # Saturating half uses the two-point weights (start 1, end 3): larger variance.
    expected3 = 3.0 * FRAME_TIME * np.sum(coef[3] ** 2) / GAIN
    part = cube[1, : SCI // 2].astype(float)
    np.testing.assert_allclose(part.var(), expected3, rtol=5 * np.sqrt(2.2 / part.size))
    assert np.all(cube[0] != 0)


def test_same_seed_same_cube_other_seed_independent(l2_model, refs, tmp_path):
    a, _ = run(l2_model, refs, tmp_path, "a.asdf", layers=["O", "Pr"], seed=11)
    b, _ = run(l2_model, refs, tmp_path, "b.asdf", layers=["O", "Pr"], seed=11)
    c, _ = run(l2_model, refs, tmp_path, "c.asdf", layers=["O", "Pr"], seed=12)
    np.testing.assert_array_equal(a, b)
    for x, y in zip(a, c, strict=True):
        r = np.corrcoef(x.ravel(), y.ravel())[0, 1]
        assert abs(r) < 5 / np.sqrt(x.size)


def test_no_seed_draws_and_stores_one(l2_model, refs, tmp_path):
    cube, config = run(l2_model, refs, tmp_path, layers=["Pr"])
    assert isinstance(config["seed"], int)
    again, _ = run(
        l2_model, refs, tmp_path, "again.asdf", layers=["Pr"], seed=config["seed"]
    )
    np.testing.assert_array_equal(cube, again)


def test_precision_16_and_fits(l2_model, refs, tmp_path):
    cube, _ = run(
        l2_model, refs, tmp_path, layers=["Pr"], seed=1, precision=16, fits_output=True
    )
    assert cube.dtype == np.float16
    with fits.open(tmp_path / "noise_asdf_to.fits") as hdul:
        assert hdul[0].data.dtype == np.dtype(">f4")
        np.testing.assert_array_equal(hdul[0].data, cube.astype(np.float32))


@pytest.mark.parametrize("precision", [64, 8, 0])
def test_bad_precision(l2_model, refs, tmp_path, precision):
    with pytest.raises(ValueError, match="Unsupported noise precision"):
        run(l2_model, refs, tmp_path, layers=["Pr"], seed=1, precision=precision)
    assert not (tmp_path / "noise.asdf").exists()


def test_bad_layer_string(l2_model, refs, tmp_path):
    with pytest.raises(LayerSyntaxError, match="unknown command 'Q'"):
        run(l2_model, refs, tmp_path, layers=["O", "Q"], seed=1)


def test_op_need_weights_and_endslice(l2_model, refs, tmp_path):
    l2_model["processinfo"]["weights"] = None
    with pytest.raises(ValueError, match="ramp-fit weights"):
        run(l2_model, refs, tmp_path, layers=["O"], seed=1)
    l2_model["processinfo"]["endslice"] = None
    with pytest.raises(ValueError, match="endslice"):
        run(l2_model, refs, tmp_path, layers=["Pr"], seed=1)


def test_missing_gain_reference(l2_model, refs, tmp_path):
    del refs["override_gain"]
    with pytest.raises(MissingReferenceError, match="override_gain"):
        run(l2_model, refs, tmp_path, layers=["O"], seed=1)


@pytest.fixture
def l1_model():
    raw = make_raw_model(size=SIZE, read_pattern=READ_PATTERN, frame_time=FRAME_TIME)
    raw.data = np.full(raw.data.shape, 1010, np.uint16)
    return raw


def test_read_layer_variance_through_the_calibration(
    l2_model, refs, tmp_path, weights, l1_model
):
    """R layer, stand-in linear calibration: variance σ²ΣK²/N (the fit's σ_R²)."""
    step = NoiseStep(
        layers=["R", "Ra"],
        seed=5,
        noise_file=str(tmp_path / "r.asdf"),
        temp=str(tmp_path / "tmp.asdf"),
        **refs,
    )
    step.calibrate = linear_calibration(weights)
    step.l1 = l1_model
    step.run(l2_model)
    with asdf.open(tmp_path / "r.asdf") as af:
        cube = np.array(af["noise"])
    n = np.array([len(f) for f in READ_PATTERN])
    reported = SIGMA_READ**2 * np.sum(weights**2 / n)
    # Ra: noise added to the exposure (constant ramp: K·const = 0 = L2 data).
    for layer in cube:
        np.testing.assert_allclose(layer.var(), reported, rtol=0.03)
    # Legacy TEMP naming: the scratch L1, its L2 and the reference L2.
    for name in ("tmp.asdf", "tmp_L2.asdf", "tmp_refL2.asdf"):
        assert (tmp_path / name).exists()
    # The L1 given to the step is untouched.
    assert np.all(l1_model.data == 1010)


def test_read_layer_needs_l1_calibration_and_refs(l2_model, refs, tmp_path, l1_model):
    with pytest.raises(ValueError, match="exposure's L1"):
        run(l2_model, refs, tmp_path, layers=["R"], seed=1)
    step = NoiseStep(layers=["R"], seed=1, noise_file=str(tmp_path / "x.asdf"), **refs)
    step.l1 = l1_model
    with pytest.raises(ValueError, match="re-run the calibration"):
        step.run(l2_model)
    step = NoiseStep(
        layers=["R"],
        seed=1,
        noise_file=str(tmp_path / "x.asdf"),
        override_gain=refs["override_gain"],
    )
    step.l1 = l1_model
    step.calibrate = linear_calibration(np.zeros(6))
    with pytest.raises(MissingReferenceError, match="override_readnoise"):
        step.run(l2_model)
    assert not (tmp_path / "x.asdf").exists()


def test_from_l2_file_with_top_level_processinfo(l2_model, refs, tmp_path):
    """An L2 file as written ({roman, processinfo}); default output name."""
    info = l2_model["processinfo"]
    path = tmp_path / "expo_cal.asdf"
    delattr(l2_model, "processinfo")
    assert "processinfo" not in l2_model
    asdf.AsdfFile({"roman": l2_model._instance, "processinfo": info}).write_to(path)
    l2_model["processinfo"] = info
    NoiseStep.call(str(path), layers=["Pr"], seed=2, output_dir=str(tmp_path), **refs)
    with asdf.open(tmp_path / "expo_noise.asdf") as af:
        assert af["noise"].shape == (1, SCI, SCI)
    direct, _ = run(l2_model, refs, tmp_path, layers=["Pr"], seed=2)
    with asdf.open(tmp_path / "expo_noise.asdf") as af:
        np.testing.assert_array_equal(af["noise"], direct)


@pytest.mark.parametrize(
    ("legacy_compat", "handover"), [(False, False), (True, False), (False, True)]
)
def test_layers_written_one_by_one_equal_the_cube_made_at_once(
    l2_model, refs, tmp_path, weights, l1_model, legacy_compat, handover
):
    """The step makes and writes one layer at a time (reference files memory-mapped,
    the L1 re-read for the Ra layer, reference calibrated once): the file and its
    FITS copy hold exactly the cube of one `make_noise_cube` call on inputs built
    here from the same files. With ``handover`` the L1 is given as a file and the
    calibration takes the L1 model out of the list it gets (``takes_handover``)."""
    from romanimpreprocess.noise import noise
    from romanimpreprocess.noise.layers import parse_layers

    texts = ["Rz2S1", "O", "RaPbr", "Pr", "R", "CxP"]
    calls = []
    stand_in = linear_calibration(weights)

    def counted(l1):
        if handover:
            box, l1 = l1, l1.pop()
            assert box == []
        assert isinstance(l1, dm.ScienceRawModel)
        calls.append(1)
        return stand_in(l1)

    counted.takes_handover = handover
    l1_source = l1_model
    if handover:
        l1_source = str(tmp_path / "expo_uncal.asdf")
        l1_model.save(l1_source)

    step = NoiseStep(
        layers=texts,
        seed=9,
        noise_file=str(tmp_path / "n.asdf"),
        fits_output=True,
        legacy_compat=legacy_compat,
        **refs,
    )
    step.calibrate = counted
    step.l1 = l1_source
    step.run(l2_model)
    with asdf.open(tmp_path / "n.asdf") as af:
        written = np.array(af["noise"])
    with fits.open(tmp_path / "n_asdf_to.fits") as hdul:
        fits_copy = np.array(hdul[0].data, dtype=np.float32)
    # 3 noisy ramps (R, Rz2S1, Ra) and the noiseless reference once
    assert len(calls) == 4

    info = l2_model["processinfo"]
    with asdf.open(refs["override_dark"]) as af:
        dark = np.array(af["roman"]["data"])
    ramp = raw_to_ramp(l1_model)

    def calibrate(ramp, *, reference=False):
        science = np.asarray(ramp[0], np.float32)[:, 4:-4, 4:-4]
        return np.tensordot(weights, science, axes=1).astype(np.float32)

    inputs = noise.NoiseInputs(
        data=np.asarray(l2_model.data, np.float32),
        data_withsky=np.asarray(l2_model["data_withsky"], np.float32),
        gain=np.full((SCI, SCI), GAIN),
        read_pattern=READ_PATTERN,
        frame_time=FRAME_TIME,
        tbar=np.asarray(info["meta"]["tbar"], np.float64),
        weights=np.asarray(info["weights"], np.float64),
        start=1,
        endslice=np.asarray(info["endslice"]),
        l1_data=np.clip(np.round(ramp.data), 0, 65535).astype(np.uint16),
        l1_amp33=np.asarray(ramp.amp33, np.uint16),
        dark=dark,
        read_noise=np.full((SIZE, SIZE), SIGMA_READ, np.float32),
        reset_noise=np.full((SIZE, SIZE), 5.0, np.float32),
        calibrate=calibrate,
    )
    expected = noise.make_noise_cube(
        parse_layers(texts),
        inputs,
        np.random.default_rng(9),
        legacy_compat=legacy_compat,
    )
    assert written.shape == (len(texts), SCI, SCI)
    np.testing.assert_array_equal(written, expected)
    np.testing.assert_array_equal(fits_copy, expected)
