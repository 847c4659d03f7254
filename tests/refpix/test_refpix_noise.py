"""The noise the reference-pixel correction leaves in the rows (issue 21), each term
against a Monte Carlo of that term alone."""

import numpy as np
import pytest

from romanimpreprocess.constants import AMP33_WIDTH, N_CHANNELS, REF_BORDER
from romanimpreprocess.refpix.refpix import (
    correct_resultant,
    median_variance,
    pink_alpha,
    pink_row_covariance,
    residual_row_variance,
)
from romanimpreprocess.simulate.simulate import _pink_rows

B = REF_BORDER


def test_pink_covariance_is_the_simulators():
    rng = np.random.default_rng(3)
    n = 256
    rows = _pink_rows(rng, (40000, n), 1.0).astype(np.float64)
    gamma = pink_row_covariance(n)
    lags = [0, 1, 2, 5, 20, 64, 128, 255]
    measured = np.array([np.mean(rows[:, 0] * rows[:, lag]) for lag in lags])
    # Each product's mean has a standard error below sqrt(2/n_real) of gamma[0].
    tol = 4 * np.sqrt(2 / rows.shape[0]) * gamma[0]
    np.testing.assert_allclose(measured, gamma[lags], atol=tol)
    assert gamma[0] > 2 * abs(gamma[128])  # and it is red: correlated over rows


@pytest.mark.parametrize(
    ("offset", "m"), [(0.0, 128), (0.0, 512), (10.0, 128), (10.0, 512), (27.5, 512)]
)
def test_median_variance_with_fixed_offsets(offset, m):
    """Offsets drawn once (a reset), white noise redrawn: the median's variance."""
    rng = np.random.default_rng(7)
    white = 6.5**2 / 4
    variances = []
    for _ in range(16):
        offsets = rng.normal(0.0, offset, m)
        noise = rng.normal(0.0, np.sqrt(white), (600, m))
        variances.append(np.var(np.median(offsets + noise, axis=1)))
    measured = np.mean(variances)
    predicted = median_variance(white, offset, m)
    # 16 offset draws x 600 medians: ~1.8 % statistical error; the asymptotic
    # formula is good to a few % at these m.
    assert measured == pytest.approx(predicted, rel=0.07)
    if offset == 0:
        assert predicted == pytest.approx(np.pi / 2 * white / m, rel=1e-6)
    else:  # the reset offsets make the median noisier
        assert predicted > 2 * np.pi / 2 * white / m


def _residual_rows(rng, n_real, ny, nx, *, sigma, n_frames, reset, pink, row_step):
    """Monte Carlo of correct_resultant: the row noise left in the science rows.

    Returns the variance over realizations of ``row noise - correction`` per row and
    channel (the reset offsets are fixed: their own median is a constant, which a
    slope does not see), and ``alpha``.
    """
    width = nx // N_CHANNELS
    offsets = rng.normal(0.0, reset, (ny, nx))
    amp_std = 4.0
    alpha = None
    if row_step:
        std = np.full((ny, AMP33_WIDTH), amp_std, np.float32)
        alpha = pink_alpha(pink["M_PINK"], pink["RU_PINK"], pink["C_PINK"], std, ny)
    scale = np.sqrt(1.0 / n_frames)
    total = np.zeros((ny, N_CHANNELS))
    total2 = np.zeros((ny, N_CHANNELS))
    # The dark the correction subtracts before its medians: its fractional part puts
    # the rounded pixels off a common integer grid, as in a real ramp (otherwise the
    # median of integers is itself quantised).
    dark = rng.uniform(0.0, 1.0, (ny, nx)).astype(np.float32)
    for _ in range(n_real):
        common = _pink_rows(rng, (ny,), pink["C_PINK"]).astype(np.float64) * scale
        own = _pink_rows(rng, (N_CHANNELS, ny), pink["U_PINK"]).astype(np.float64)
        rows = np.repeat(own.T * scale, width, axis=1) + common[:, None]
        pixel_noise = rng.normal(0.0, sigma * scale, (ny, nx)) + offsets
        level = 1000.0  # a bias level, removed by the channel line
        frame = np.rint(pixel_noise + rows + level + dark)
        amp33 = None
        if row_step:
            amp_rows = pink["M_PINK"] * common
            amp_rows += _pink_rows(rng, (ny,), pink["RU_PINK"]) * scale
            amp33 = np.rint(
                8000.0
                + amp_rows[:, None]
                + rng.normal(0.0, amp_std * scale, (ny, AMP33_WIDTH))
            )
        after = frame.astype(np.float32)
        correct_resultant(
            after,
            amp33,
            dark,
            amp33_median=None,
            alpha=alpha,
            border=B,
            block_width=AMP33_WIDTH,
        )
        # after = frame - correction; frame - rows - level is the pixel's own noise.
        left = after.astype(np.float64) - (frame - rows - level)
        per_channel = left.reshape(ny, N_CHANNELS, width)
        # The same in every column of a channel (up to the float32 storage).
        assert (
            np.ptp(per_channel[B:-B], axis=2).max() < 0.02 + 1e-3 * np.abs(left).max()
        )
        total += per_channel.mean(axis=2)
        total2 += per_channel.mean(axis=2) ** 2
    mean = total / n_real
    return total2 / n_real - mean**2, alpha


def test_channel_medians_with_reset_noise():
    """White read noise + reset offsets: the channel line's own noise."""
    rng = np.random.default_rng(21)
    ny, nx = 256, 1024
    pink = {"C_PINK": 0.0, "U_PINK": 0.0, "M_PINK": 0.0, "RU_PINK": 0.0}
    measured, _ = _residual_rows(
        rng, 300, ny, nx, sigma=6.5, n_frames=4, reset=10.0, pink=pink, row_step=False
    )
    model = residual_row_variance(
        [4],
        ny,
        np.full((2, N_CHANNELS), 6.5**2),
        np.full((2, N_CHANNELS), 10.0),
        border=B,
        channel_width=nx // N_CHANNELS,
        pink=pink,
    )[0]
    sci = slice(B, ny - B)
    # 300 x 32 independent lines: ~1.5 % statistical error.
    assert np.mean(measured[sci]) == pytest.approx(np.mean(model[sci]), rel=0.06)
    # The profile: largest at the ends (one median), smallest mid-frame (both).
    ends = np.mean(measured[B : B + 16]) + np.mean(measured[-B - 16 : -B])
    middle = np.mean(measured[ny // 2 - 16 : ny // 2 + 16])
    model_ends = np.mean(model[B : B + 16]) + np.mean(model[-B - 16 : -B])
    assert ends / middle == pytest.approx(
        model_ends / np.mean(model[ny // 2 - 16 : ny // 2 + 16]), rel=0.15
    )


def test_one_over_f_left_by_the_row_step_and_the_channel_line():
    """1/f rows (common, per channel, amp33's own) through the row and channel steps.

    Amplitudes far above the simulator's so that the 1/f term dominates the white
    and median terms (which the model also carries).
    """
    rng = np.random.default_rng(5)
    ny, nx = 256, 1024
    pink = {"C_PINK": 150.0, "U_PINK": 80.0, "M_PINK": 0.9, "RU_PINK": 40.0}
    measured, alpha = _residual_rows(
        rng, 300, ny, nx, sigma=6.5, n_frames=2, reset=0.0, pink=pink, row_step=True
    )
    assert alpha is not None
    model = residual_row_variance(
        [2],
        ny,
        np.full((2, N_CHANNELS), 6.5**2),
        np.zeros((2, N_CHANNELS)),
        border=B,
        channel_width=nx // N_CHANNELS,
        pink=pink,
        alpha=alpha,
        amp33_white_var=16.0,
    )[0]
    sci = slice(B, ny - B)
    white_only = residual_row_variance(
        [2],
        ny,
        np.full((2, N_CHANNELS), 6.5**2),
        np.zeros((2, N_CHANNELS)),
        border=B,
        channel_width=nx // N_CHANNELS,
        pink={},
    )[0]
    assert np.mean(model[sci]) > 3 * np.mean(white_only[sci])  # 1/f dominates
    # The common mode is shared by the channels: fewer independent numbers.
    assert np.mean(measured[sci]) == pytest.approx(np.mean(model[sci]), rel=0.08)
    # Row by row (blocks of 31 rows) the profile follows the model.
    blocks = np.array_split(np.arange(B, ny - B), 8)
    got = np.array([measured[b].mean() for b in blocks])
    want = np.array([model[b].mean() for b in blocks])
    np.testing.assert_allclose(got / want, 1.0, atol=0.2)
