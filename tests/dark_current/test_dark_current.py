"""Dark current: IPC-deconvolved dark slope subtracted, dq OR-ed, median gain."""

import numpy as np
import roman_datamodels.datamodels as dm
from roman_datamodels.dqflags import pixel

from romanimpreprocess.dark_current import DarkCurrentStep, dark_current
from romanimpreprocess.ipc.ipc import ipc_forward
from tests.conftest import cross_kernel

N = 64
S = N - 8


def test_deconvolved_dark_is_the_inverse_of_the_forward_ipc(rng):
    true = rng.uniform(0.0, 0.1, (N, N))
    true[20, 20] = 30.0  # a hot pixel
    gain = rng.uniform(1.6, 2.0, (N, N))
    measured = np.array(true, np.float32)
    measured[4:-4, 4:-4] = (
        ipc_forward(
            true[4:-4, 4:-4] * gain[4:-4, 4:-4], cross_kernel(S).astype(np.float64)
        )
        / gain[4:-4, 4:-4]
    )
    slope, bad = dark_current.deconvolved_dark_slope(
        measured, cross_kernel(S), gain, iterations=10, dtype=np.float64
    )
    assert not bad.any()
    np.testing.assert_allclose(slope[4:-4, 4:-4], true[4:-4, 4:-4], atol=1e-5)
    # with the default 2 iterations the residual is of order eps^3 of the hot pixel
    two, _ = dark_current.deconvolved_dark_slope(measured, cross_kernel(S), gain)
    residual = np.abs(two[4:-4, 4:-4] - true[4:-4, 4:-4]).max()
    assert 1e-7 < residual < 30.0 * (8 * 0.02) ** 3


def test_step_subtracts_ors_dq_and_records_medgain(make_ref_file, rng):
    dark_slope = np.full((N, N), 0.25, np.float32)
    dark_dq = np.zeros((N, N), np.uint32)
    dark_dq[10, 11] = pixel.HOT
    gain = np.full((N, N), 1.5)
    gain[:4] = 0.0  # reference rows: only the legacy median sees them
    dark = make_ref_file(
        "dark.asdf",
        {
            "data": np.zeros((4, N, N), np.float32),
            "dark_slope": dark_slope,
            "dq": dark_dq,
        },
    )
    gain_file = make_ref_file("gain.asdf", {"data": gain})
    model = dm.ImageModel.create_fake_data(shape=(S, S))
    model.data = np.full((S, S), 3.0, np.float32)
    model.dq = np.zeros((S, S), np.uint32)
    model.meta.exposure.read_pattern = [[0], [1, 2], [3, 4], [5, 6]]
    out = DarkCurrentStep.call(
        model, override_dark=dark, override_gain=gain_file, override_ipc4d="N/A"
    )
    np.testing.assert_allclose(out.data, 2.75)
    assert out.dq[6, 7] & pixel.HOT
    assert out["processinfo"]["medgain"] == 1.5
    model2 = dm.ImageModel.create_fake_data(shape=(S, S))
    model2.data = np.full((S, S), 3.0, np.float32)
    model2.dq = np.zeros((S, S), np.uint32)
    model2.meta.exposure.read_pattern = [[0], [1, 2], [3, 4], [5, 6]]
    legacy = DarkCurrentStep.call(
        model2,
        override_dark=dark,
        override_gain=gain_file,
        override_ipc4d="N/A",
        legacy_compat=True,
    )
    assert legacy["processinfo"]["medgain"] == 1.5  # 4 of 64 rows at 0: median 1.5
