"""RampFitStep end to end: Step.call with overrides on small files, strun, errors."""

import logging

import numpy as np
import pytest
import roman_datamodels as rdm
from roman_datamodels import datamodels as dm
from roman_datamodels.dqflags import group, pixel

from romanimpreprocess.datamodels import (
    MissingReferenceError,
    raw_to_ramp,
    resultant_times,
)
from romanimpreprocess.ramp_fitting import RampFitStep
from romanimpreprocess.ramp_fitting.optimal_weights import optimal_weights
from tests.conftest import make_raw_model
from tests.linearity.test_linearity_step import strun
from tests.ramp_fitting.ramps import FRAME_TIME, SURVEY_PATTERN, simulate, to_cube

SIZE = 64
B = 4
SCI = SIZE - 2 * B
GAIN = 1.5
READ = 7.0
BIAS = 3000.0


@pytest.fixture
def truth(rng):
    """Per-pixel true rates (DN/s) of the science area, a few bright ones."""
    flux = rng.uniform(0.0, 30.0, (SCI, SCI))
    flux[::9, ::9] = 900.0
    return flux


@pytest.fixture
def raw(rng, truth):
    """A small L1 whose ramps are simulated from ``truth`` (uint16 resultants)."""
    model = make_raw_model(
        size=SIZE, read_pattern=SURVEY_PATTERN, frame_time=FRAME_TIME
    )
    res = simulate(
        truth.ravel(), rng, gain=GAIN, sigma_read=READ, bias=BIAS
    )  # (n, SCI*SCI)
    cube = to_cube(res, (SCI, SCI), border=B, fill=BIAS)
    model.data = np.round(cube).astype(np.uint16)
    return model


@pytest.fixture
def l1_file(tmp_path, raw):
    path = tmp_path / "rf_uncal.asdf"
    raw.save(path)
    return str(path)


@pytest.fixture
def ref_files(make_ref_file, rng):
    """Legacy-layout gain and read files (docs/reference_files.rst)."""
    gain = make_ref_file("gain.asdf", {"data": np.full((SIZE, SIZE), GAIN)})
    read = make_ref_file(
        "read.asdf",
        {
            "data": np.full((SIZE, SIZE), READ, np.float32),
            "resetnoise": np.full((SIZE, SIZE), 25.0, np.float32),
            "anc": {"C_PINK": 0.8, "U_PINK": 0.4},
        },
    )
    return {"override_gain": gain, "override_readnoise": read}


def test_call_fits_the_simulated_rates(l1_file, ref_files, truth):
    image = RampFitStep.call(l1_file, **ref_files)
    assert isinstance(image, dm.ImageModel)
    assert image.data.shape == (SCI, SCI) and image.data.dtype == np.float32
    assert image.dq.dtype == np.uint32
    for key in ("err", "var_poisson", "var_rnoise", "chisq", "dumo"):
        assert image[key].shape == (SCI, SCI) and image[key].dtype == np.float32
    assert image.meta.cal_step["ramp_fit"] == "COMPLETE"
    assert image.meta.ref_file["gain"] == ref_files["override_gain"]
    assert image.meta.ref_file["readnoise"] == ref_files["override_readnoise"]
    assert image.meta.model_type == "ImageModel"
    # rates: unbiased within the reported errors (3136 pixels; rounding to integer
    # DN adds 1/12 DN² per resultant, negligible against 49/N)
    z = (image.data - truth) / image.err
    assert abs(np.mean(z)) < 5 / SCI
    assert abs(np.mean(z**2) - 1) < 0.1
    np.testing.assert_allclose(
        image.err**2, image.var_poisson + image.var_rnoise, rtol=5e-7
    )  # float32
    # border and amp33 come from the ramp
    assert image.amp33.shape == (6, SIZE, 128) and image.amp33.dtype == np.uint16
    assert image.border_ref_pix_left.shape == (6, SIZE, B)
    assert image.border_ref_pix_top.shape == (6, B, SIZE)
    assert image.dq_border_ref_pix_bottom.shape == (B, SIZE)


def test_processinfo(l1_file, ref_files):
    image = RampFitStep.call(l1_file, **ref_files)
    info = image["processinfo"]
    tbar, tau, n = resultant_times(SURVEY_PATTERN, FRAME_TIME)
    meta = info["meta"]
    np.testing.assert_array_equal(meta["tbar"], tbar.astype(np.float32))
    np.testing.assert_array_equal(meta["tau"], tau.astype(np.float32))
    np.testing.assert_array_equal(meta["N"], n.astype(np.int16))
    assert meta["ngrp"] == 6 and meta["nborder"] == B
    assert meta["frame_time"] == FRAME_TIME and meta["read_pattern"] == SURVEY_PATTERN
    k = optimal_weights(tbar, tau, n, u=0.4 / 1.8 / 6.5**2, start=1)
    np.testing.assert_allclose(info["weights"], k, rtol=1e-6, atol=1e-9)
    assert info["weights"].dtype == np.float32
    np.testing.assert_array_equal(meta["K"], info["weights"])
    assert info["ramp_opt_pars"] == {"slope": 0.4, "gain": 1.8, "sigma_read": 6.5}
    assert info["jump_detect_pars"] == {
        "SthreshA": 5.5,
        "SthreshB": 4.5,
        "IthreshA": 1.0,
        "IthreshB": 1000.0,
    }
    assert info["exclude_first"] is True
    assert info["endslice"].shape == (SCI, SCI) and info["endslice"].dtype == np.int8


def test_ramp_model_input_untouched(raw, ref_files):
    ramp = raw_to_ramp(raw)
    ramp.groupdq[0] |= group.DO_NOT_USE  # as dq_init does with exclude_first
    ramp.groupdq[3:, 10, 10] |= group.SATURATED
    ramp["processinfo"] = {"exclude_first": True, "from_dq_init": 1}
    before = ramp.data.copy(), ramp.groupdq.copy(), ramp.pixeldq.copy()
    image = RampFitStep.call(ramp, **ref_files)
    for a, b in zip((ramp.data, ramp.groupdq, ramp.pixeldq), before, strict=True):
        np.testing.assert_array_equal(a, b)
    assert image["processinfo"]["from_dq_init"] == 1  # carried over
    assert image.dq[10 - B, 10 - B] & pixel.SATURATED
    assert image["processinfo"]["endslice"][10 - B, 10 - B] == 2


def test_saved_product_validates(l1_file, ref_files, tmp_path):
    out = tmp_path / "out" / "rf_rampfit.asdf"
    image = RampFitStep.call(l1_file, output_file=str(out), **ref_files)
    assert image.err.dtype == np.float32  # memory stays float32
    with rdm.open(out) as saved:
        assert saved.err.dtype == np.float16
        np.testing.assert_allclose(saved.err, image.err, rtol=1e-3)
        np.testing.assert_allclose(saved.data, image.data)
        saved.validate()
        assert saved.meta.cal_step["ramp_fit"] == "COMPLETE"


def test_legacy_compat_float16_round_trip(l1_file, ref_files):
    image = RampFitStep.call(l1_file, legacy_compat=True, **ref_files)
    default = RampFitStep.call(l1_file, **ref_files)
    # err and var_poisson hold float16-representable values (docs/ramp_fit/description.rst)
    np.testing.assert_array_equal(image.err.astype(np.float16).astype(np.float32),
                                  image.err)  # fmt: skip
    assert not np.array_equal(
        default.err.astype(np.float16).astype(np.float32), default.err
    )
    np.testing.assert_allclose(image.err, default.err, rtol=2e-3)


def test_likely(l1_file, ref_files, truth):
    image = RampFitStep.call(
        l1_file,
        algorithm="likely",
        rejection_threshold=5.0,
        jump_kw="{expand_large_events: false, min_jump_area: 8}",
        **ref_files,
    )
    z = (image.data - truth) / image.err
    assert abs(np.mean(z)) < 5 / SCI
    assert abs(np.mean(z**2) - 1) < 0.15
    info = image["processinfo"]
    assert info["weights"] is None and info["ramp_opt_pars"] is None
    assert info["rejection_threshold"] == 5.0
    assert info["jump_kw"]["min_jump_area"] == 8.0
    assert image.chisq.dtype == np.float32 and np.all(np.isfinite(image.chisq))
    assert image.meta.cal_step["ramp_fit"] == "COMPLETE"


def test_likely_needs_four_resultants(make_l1_file, ref_files):
    l1 = make_l1_file(read_pattern=[[0], [1, 2], [3, 4]], size=SIZE)
    with pytest.raises(ValueError, match="at least 4 resultants"):
        RampFitStep.call(l1, algorithm="likely", **ref_files)
    # the optimal fit works with 3 resultants
    image = RampFitStep.call(l1, **ref_files)
    assert image.data.shape == (SCI, SCI)


def test_bad_jump_kw(l1_file, ref_files):
    with pytest.raises(ValueError, match="unknown key"):
        RampFitStep.call(l1_file, algorithm="likely", jump_kw="{foo: 1}", **ref_files)


def test_exclude_first_mismatch(raw, ref_files, caplog):
    ramp = raw_to_ramp(raw)
    ramp.groupdq[0] |= group.DO_NOT_USE
    with caplog.at_level(logging.WARNING, logger="romanimpreprocess"):
        image = RampFitStep.call(ramp, exclude_first=False, **ref_files)
    assert "DO_NOT_USE on every pixel" in caplog.text
    assert image["processinfo"]["exclude_first"] is True
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="romanimpreprocess"):
        legacy = RampFitStep.call(
            ramp, exclude_first=False, legacy_compat=True, **ref_files
        )
    assert "legacy_compat fits it anyway" in caplog.text
    assert legacy["processinfo"]["exclude_first"] is False
    assert legacy["processinfo"]["weights"][0] != 0


def test_references_required(l1_file, ref_files):
    with pytest.raises(MissingReferenceError, match="override_readnoise"):
        RampFitStep.call(l1_file, override_gain=ref_files["override_gain"])
    with pytest.raises(ValueError, match="N/A"):
        RampFitStep.call(
            l1_file,
            override_gain="N/A",
            override_readnoise=ref_files["override_readnoise"],
        )


def test_invalid_parameters(l1_file, ref_files):
    with pytest.raises(ValueError, match="ithresh"):
        RampFitStep.call(l1_file, ithresh_a=10.0, ithresh_b=5.0, **ref_files)
    with pytest.raises(ValueError, match="gain"):
        RampFitStep.call(l1_file, opt_gain=0.0, **ref_files)


def test_strun(tmp_path, l1_file, ref_files):
    proc = strun(
        tmp_path,
        "rip_ramp_fit",
        l1_file,
        f"--override_gain={ref_files['override_gain']}",
        f"--override_readnoise={ref_files['override_readnoise']}",
        "--sthresh_a=6.0",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Ramp fit (optimal)" in proc.stderr
    out = tmp_path / "rf_rampfit.asdf"
    with rdm.open(out) as image:
        assert image.data.shape == (SCI, SCI)
        assert image["processinfo"]["jump_detect_pars"]["SthreshA"] == 6.0
