"""err and var_rnoise through the whole calibration (issue 21).

The terms of `read_variance.calibration_read_variance` each against a closed form or
a Monte Carlo of that term alone, and the property itself on a simulated exposure:
(data - truth)/err has unit robust scatter, in the sky and on sources.
"""

import asdf
import numpy as np
import pytest
from roman_datamodels import dqflags

from romanimpreprocess.datamodels import resultant_times
from romanimpreprocess.ramp_fitting.optimal_weights import RampOptPars, optimal_weights
from romanimpreprocess.ramp_fitting.read_variance import (
    ROUNDING_VARIANCE,
    calibration_read_variance,
)
from tests.ramp_fitting.ramps import FRAME_TIME, SURVEY_PATTERN

B = 4


def survey_weights():
    tbar, tau, n_frames = resultant_times(SURVEY_PATTERN, FRAME_TIME)
    weights = optimal_weights(tbar, tau, n_frames, u=RampOptPars().u, start=1)
    return np.asarray(weights, np.float64), np.asarray(n_frames, np.float64)


def test_rounded_resultants_carry_a_twelfth_per_resultant():
    """Monte Carlo of white read noise in resultants rounded to integers."""
    rng = np.random.default_rng(2)
    weights, n_frames = survey_weights()
    sigma = 2.0  # small, so that the rounding term is large (4 % here)
    n_pix = 200_000
    offsets = rng.uniform(0, 1, n_pix)  # off the integer grid, as a real bias level
    ramps = np.rint(
        offsets[:, None]
        + sigma * rng.standard_normal((len(n_frames), n_pix)).T / np.sqrt(n_frames)
    )
    slopes = ramps @ weights
    white = sigma**2 * np.sum(weights**2 / n_frames)
    got = calibration_read_variance(
        np.full((1, 1), white), np.full((1, 1), sigma), weights, n_frames
    )[0, 0]
    assert got == pytest.approx(
        white + ROUNDING_VARIANCE * np.sum(weights**2), rel=1e-6
    )
    assert got > 1.03 * white
    # The variance estimate of 2e5 slopes: 0.3 % statistical error.
    assert np.var(slopes) == pytest.approx(got, rel=0.015)


def test_terms_combine_per_pixel():
    """IPC gain multiplies the white part; rows add by channel, scaled by the weights."""
    rng = np.random.default_rng(4)
    weights, n_frames = survey_weights()
    sy, sx = 6, 120  # a frame 128 wide: 32 channels of 4 columns
    nx = sx + 2 * B
    coef = np.sum(weights**2 / n_frames)
    sigma = rng.uniform(5, 8, (sy, sx))
    var_fit = sigma**2 * coef
    var_fit[0, 0] *= 2.0  # a pixel with other weights (twice the white variance)
    var_fit[1, 1] = np.nan  # no slope
    gain_map = rng.uniform(1.1, 1.3, (sy, sx))
    rows = rng.uniform(0, 0.5, (len(n_frames), sy + 2 * B, 32))
    got = calibration_read_variance(
        var_fit, sigma, weights, n_frames, ipc_gain=gain_map, row_variance=rows, nx=nx
    )
    channel = np.arange(B, B + sx) // (nx // 32)
    per_row = np.einsum("k,kyc->yc", weights**2, rows[:, B:-B])[:, channel]
    rounding = ROUNDING_VARIANCE * np.sum(weights**2) / coef
    scale = var_fit / sigma**2 / coef
    want = scale * coef * (sigma**2 + rounding) * gain_map + scale * per_row
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert np.isnan(got[1, 1])
    assert got[0, 0] == pytest.approx(
        2 * (coef * (sigma[0, 0] ** 2 + rounding) * gain_map[0, 0] + per_row[0, 0]),
        rel=1e-5,
    )


# ------------------------------------------------------------------ the property
def _robust_std(x):
    q25, q75 = np.percentile(x, [25, 75])
    return (q75 - q25) / 1.3489795


@pytest.fixture(scope="module")
def simulated_256(tmp_path_factory):
    """A 256² survey6 simulation (seed 2)."""
    from romanimpreprocess.simulate import SimulationConfig, write_simulation

    return write_simulation(
        tmp_path_factory.mktemp("uncert256"), SimulationConfig(size=256, seed=2)
    )


@pytest.fixture(scope="module", params=["optimal", "likely"])
def calibrated_256(request, simulated_256):
    """The simulation through the default pipeline, with either ramp fit."""
    from romanimpreprocess.pipeline import L1ToL2Pipeline, legacy

    paths = simulated_256
    args = legacy.pipeline_args(legacy.load_config(paths.config_yaml))
    args.steps.setdefault("ramp_fit", {})["algorithm"] = request.param
    model = L1ToL2Pipeline(steps=args.steps, **args.parameters).run(args.input)
    with asdf.open(paths.truth) as af:
        truth = np.array(af["rate_l2"], np.float64)
        sky = float(af["sky_rate_l2"])
    out = {
        "data": np.array(model["data_withsky"], np.float64),
        "err": np.array(model.err, np.float64),
        "var_rnoise": np.array(model.var_rnoise, np.float64),
        "dq": np.array(model.dq),
        "truth": truth,
        "sky": sky,
    }
    assert "_ipc_noise_gain" not in model["processinfo"]
    assert "_refpix_row_variance" not in model["processinfo"]
    return out


def test_pulls_have_unit_scatter_in_the_sky_and_on_sources(calibrated_256):
    run = calibrated_256
    bad = (
        dqflags.pixel.DO_NOT_USE
        | dqflags.pixel.JUMP_DET
        | dqflags.pixel.SATURATED
        | dqflags.pixel.NO_GAIN_VALUE
        | dqflags.pixel.NO_FLAT_FIELD
    )
    good = ((run["dq"] & bad) == 0) & np.isfinite(run["data"]) & (run["err"] > 0)
    pull = (run["data"] - run["truth"]) / run["err"]
    sky = good & (run["truth"] < 1.05 * run["sky"])
    sources = good & (run["truth"] > 2.0 * run["sky"])
    # The robust std of n normal deviates scatters by about 0.8/sqrt(n); 4 of that.
    for mask, what in ((sky, "sky"), (sources, "sources")):
        n = int(mask.sum())
        assert n > 1500, (what, n)
        scatter = _robust_std(pull[mask])
        assert abs(scatter - 1.0) < 4 * 0.8 / np.sqrt(n) + 0.01, (what, n, scatter)
