"""The simulator's files agree with its truth and with the readers."""

import os

import asdf
import numpy as np
import pytest

from romanimpreprocess.datamodels import Geometry, open_l1, open_reference, validate_l1
from romanimpreprocess.datamodels.reference import CALDIR_TO_REFTYPE
from romanimpreprocess.simulate import (
    SimulationConfig,
    simulate_exposure,
    write_simulation,
)
from romanimpreprocess.simulate.cli import main

QUIET = {
    "c_pink": 0.0,
    "u_pink": 0.0,
    "ru_pink": 0.0,
    "drift": 0.0,
    "cosmic_ray_rate": 0.0,
    "n_sources": 0,
    "hot_fraction": 0.0,
    "dead_fraction": 0.0,
    "low_qe_fraction": 0.0,
}


def test_same_seed_same_exposure_other_seed_other_noise():
    a = simulate_exposure(SimulationConfig(size=64, seed=3))[0]["data"]
    b = simulate_exposure(SimulationConfig(size=64, seed=3))[0]["data"]
    c = simulate_exposure(SimulationConfig(size=64, seed=4))[0]["data"]
    np.testing.assert_array_equal(a, b)
    assert np.mean(a != c) > 0.5


def test_files_pass_the_readers(simulated_set):
    raw = open_l1(simulated_set.l1)
    geometry = validate_l1(raw)
    assert geometry == Geometry(nresultants=6, ny=128, nx=128)
    for key, path in simulated_set.caldir.items():
        with open_reference(CALDIR_TO_REFTYPE[key], path, geometry=geometry) as ref:
            assert ref.path == os.path.abspath(path) or ref.path == path
    with asdf.open(simulated_set.truth) as af:
        assert af["rate_l2"].shape == (120, 120)
        assert af["jumps"].shape[1] == 4


def test_noiseless_ramp_linearised_and_deconvolved_gives_the_true_rate(tmp_path):
    """Linearity + IPC (4 iterations) on noiseless resultants: rate to 1e-4."""
    from romanimpreprocess.datamodels import resultant_times
    from romanimpreprocess.dq_init import DQInitStep
    from romanimpreprocess.ipc import IPCStep
    from romanimpreprocess.linearity import LinearityLegendreStep

    # Single-frame resultants: a mean of nonlinear reads is not the read of the mean
    # charge (a bias ~ beta Var(x) within a resultant that neither this package nor
    # the legacy corrects), so the exact inversion is tested without averaging.
    pattern = [[0], [1], [4], [10], [18], [30]]
    config = SimulationConfig(
        size=64, seed=5, noiseless=True, n_sources=12, read_pattern=pattern
    )
    paths = write_simulation(tmp_path, config)
    ramp = DQInitStep.call(paths.l1, override_mask="N/A")
    ramp = LinearityLegendreStep.call(
        ramp, override_linearitylegendre=paths.caldir["linearitylegendre"]
    )
    ramp = IPCStep.call(
        ramp,
        iterations=6,
        override_ipc4d=paths.caldir["ipc4d"],
        override_gain=paths.caldir["gain"],
    )
    tbar, _, _ = resultant_times(config.pattern, config.frame_time)
    data = np.asarray(ramp.data, dtype=np.float64)[:, 4:-4, 4:-4]
    rate = (data[-1] - data[1]) / (tbar[-1] - tbar[1])
    with asdf.open(paths.truth, lazy_load=False) as af:
        truth = np.array(af["rate_dn"]) + np.array(af["dark_dn"])
        saturated = np.array(af["saturated"])
    # Inside the fitted range of the Legendre model (36000 DN above Sref). The L1
    # stores whole DN: each resultant carries up to 0.5 DN of rounding, which the
    # linearity slope (<= 1.2 here) and the IPC inverse (<= 1.2) carry into the rate.
    from scipy.ndimage import binary_dilation

    over = binary_dilation(saturated | (truth * tbar[-1] >= 30000.0), iterations=3)
    usable = ~over & (truth > 0.3)
    assert usable.sum() > 1000
    rounding = 2 * 0.5 * 1.2 * 1.2 / (tbar[-1] - tbar[1])
    error = np.abs(rate[usable] - truth[usable])
    assert np.all(error <= 1e-4 * truth[usable] + rounding), error.max()
    # Without the rounding the inversion is exact: the errors are rounding-sized.
    assert np.median(error) < 0.5 * rounding


def test_read_noise_and_gain_statistics(tmp_path):
    """Flat illumination, single-frame resultants: read noise and gain within 3 %."""
    pattern = [[k] for k in range(7)]
    config = SimulationConfig(
        size=128,
        seed=6,
        read_pattern=pattern,
        sky_rate=200.0,
        dark_rate=0.0,
        ipc_alpha=0.0,
        nonlinearity=0.0,
        **QUIET,
    )
    l1, cal, _, _ = simulate_exposure(config)
    s = (slice(4, -4), slice(4, -4))
    d = l1["data"].astype(np.float64)[:, s[0], s[1]]
    sigma = np.asarray(cal["read"]["data"], np.float64)[s]
    gain = np.asarray(cal["gain"]["data"], np.float64)[s]
    # Differences of disjoint frame pairs are independent: Poisson + 2 sigma^2 each.
    diffs = d[2::2] - d[1:-1:2]
    mean = diffs.mean(axis=0)
    var = diffs.var(axis=0, ddof=1)
    ratio = np.mean((var - 2 * sigma**2) * gain / mean)
    assert abs(ratio - 1) < 0.03, ratio
    # Read noise alone: frame 1 - frame 0 of a dark, unilluminated simulation.
    dark = SimulationConfig(
        size=128, seed=7, read_pattern=pattern, sky_rate=0.0, dark_rate=0.0, **QUIET
    )
    l1, cal, _, _ = simulate_exposure(dark)
    d = l1["data"].astype(np.float64)[:, s[0], s[1]]
    sigma = np.asarray(cal["read"]["data"], np.float64)[s]
    measured = np.var(d[2] - d[1])
    expected = 2 * np.mean(sigma**2) + 2 / 12  # plus rounding to whole DN
    assert abs(measured / expected - 1) < 0.03, (measured, expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 100}, "size"),
        ({"size": 32}, "size"),
        ({"read_pattern": "survey7"}, "unknown pattern"),
        ({"read_pattern": [[0], [2, 1]]}, "read_pattern"),
        ({"detector": "WFI19"}, "detector"),
    ],
)
def test_bad_options_fail_before_anything_is_written(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        write_simulation(tmp_path / "out", SimulationConfig(**kwargs))
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_directory(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(ValueError, match="cannot be created or written"):
        write_simulation(locked / "sim", SimulationConfig(size=64))


def test_cli(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "sim"), "--size", "64", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "L1:" in out
    assert any(p.endswith("_uncal.asdf") for p in os.listdir(tmp_path / "sim"))
    assert main(["--out", str(tmp_path / "bad"), "--size", "65"]) == 2
    assert "size" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
