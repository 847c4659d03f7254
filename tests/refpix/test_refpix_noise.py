"""The noise the reference-pixel correction leaves in the rows (issue 21), each term
against a Monte Carlo of that term alone."""

import numpy as np
import pytest

from romanimpreprocess.constants import AMP33_WIDTH, N_CHANNELS, REF_BORDER
from romanimpreprocess.refpix.refpix import (
    correct_resultant,
    median_variance,
    pink_alpha,
    residual_row_variance,
)
from romanimpreprocess.utils.pink import channel_image, readout_pink

B = REF_BORDER


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


def _frame_pink(rng, ny, width, pink, n_frames):
    """The 1/f of one resultant (mean of ``n_frames`` frames): channels and amp33."""
    rows = np.zeros((ny, width * N_CHANNELS))
    amp = np.zeros((ny, AMP33_WIDTH))
    for _ in range(n_frames):
        series = readout_pink(
            rng, ny, width, n_channels=N_CHANNELS, amp33_width=AMP33_WIDTH
        )
        rows += channel_image(series, pink["C_PINK"], pink["U_PINK"])
        amp += pink["M_PINK"] * pink["C_PINK"] * series.common[:, :AMP33_WIDTH]
        amp += pink["RU_PINK"] * series.own33
    return rows / n_frames, amp / n_frames


def _residual_rows(rng, n_real, ny, nx, *, sigma, n_frames, reset, pink, row_step):
    """Monte Carlo of correct_resultant: the read noise left beyond the pixel's own.

    Returns the variance over realizations of ``1/f noise - correction`` per pixel,
    averaged over the columns of each channel (rows x channels), and ``alpha`` (the
    reset offsets are fixed: their own median is a constant, which a slope does not
    see).
    """
    width = nx // N_CHANNELS
    offsets = rng.normal(0.0, reset, (ny, nx))
    amp_std = 4.0
    alpha = None
    if row_step:
        std = np.full((ny, AMP33_WIDTH), amp_std, np.float32)
        alpha = pink_alpha(pink["M_PINK"], pink["RU_PINK"], pink["C_PINK"], std, ny)
    scale = np.sqrt(1.0 / n_frames)
    total = np.zeros((ny, nx))
    total2 = np.zeros((ny, nx))
    # The dark the correction subtracts before its medians: its fractional part puts
    # the rounded pixels off a common integer grid, as in a real ramp (otherwise the
    # median of integers is itself quantised).
    dark = rng.uniform(0.0, 1.0, (ny, nx)).astype(np.float32)
    use_pink = any(pink.get(k, 0) for k in ("C_PINK", "U_PINK", "RU_PINK"))
    for _ in range(n_real):
        rows = amp_rows = 0.0
        if use_pink:
            rows, amp_rows = _frame_pink(rng, ny, width, pink, n_frames)
        pixel_noise = rng.normal(0.0, sigma * scale, (ny, nx)) + offsets
        level = 1000.0  # a bias level, removed by the channel line
        frame = np.rint(pixel_noise + rows + level + dark)
        amp33 = None
        if row_step:
            amp33 = np.rint(
                8000.0 + amp_rows + rng.normal(0.0, amp_std * scale, (ny, AMP33_WIDTH))
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
        total += left
        total2 += left**2
    mean = total / n_real
    variance = total2 / n_real - mean**2
    return variance.reshape(ny, N_CHANNELS, width).mean(axis=2), alpha


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


@pytest.mark.parametrize(
    ("pink", "n_frames"),
    [
        # 1/f far above the white noise (the medians see the 1/f pattern)
        ({"C_PINK": 150.0, "U_PINK": 80.0, "M_PINK": 0.9, "RU_PINK": 40.0}, 2),
        # the simulator's ratios, 4x: 1/f comparable to the white noise
        ({"C_PINK": 4.0, "U_PINK": 2.0, "M_PINK": 1.0, "RU_PINK": 1.2}, 1),
    ],
)
def test_one_over_f_left_by_the_row_step_and_the_channel_line(pink, n_frames):
    """The read-noise file's 1/f (utils.pink: common, per channel, amp33's own, in
    readout order) through the row and channel steps, against the closed form."""
    rng = np.random.default_rng(5)
    ny, nx = 128, 1024
    measured, alpha = _residual_rows(
        rng, 60, ny, nx, sigma=6.5, n_frames=n_frames, reset=0.0, pink=pink,
        row_step=True,
    )  # fmt: skip
    assert alpha is not None
    kwargs = {"border": B, "channel_width": nx // N_CHANNELS, "alpha": alpha}
    white = np.full((2, N_CHANNELS), 6.5**2)
    zero = np.zeros((2, N_CHANNELS))
    model = residual_row_variance(
        [n_frames], ny, white, zero, pink=pink, amp33_white_var=16.0, **kwargs
    )[0]
    white_only = residual_row_variance(
        [n_frames], ny, white, zero, pink={}, amp33_white_var=16.0, **kwargs
    )[0]
    sci = slice(B, ny - B)
    assert np.mean(model[sci]) > 20 * np.mean(white_only[sci])  # 1/f dominates
    # 60 realisations x 32 channels x 30 columns (the common mode and the 1/f
    # correlation along the row make far fewer independent numbers): ~1.5 %.
    assert np.mean(measured[sci]) == pytest.approx(np.mean(model[sci]), rel=0.05)
    # Row by row (blocks of 15 rows) the profile follows the model.
    blocks = np.array_split(np.arange(B, ny - B), 8)
    got = np.array([measured[b].mean() for b in blocks])
    want = np.array([model[b].mean() for b in blocks])
    np.testing.assert_allclose(got / want, 1.0, atol=0.1)


def test_one_over_f_closed_form_against_the_structure_of_a_row():
    """Without a row step, a pixel less the channel line: the grouped closed form
    equals the brute-force quadratic form -½ aᵀDa over every sample involved."""
    from romanimpreprocess.refpix.refpix import pink_residual_variance
    from romanimpreprocess.utils.pink import structure_function

    ny, width = 64, 8
    unit = pink_residual_variance(
        ny, border=B, channel_width=width, amp33_width=AMP33_WIDTH
    )
    y = 10
    x = (y - (B - 1) / 2) / (ny - B)
    clocks = AMP33_WIDTH
    times, weights = [], []
    for rr in range(B):
        for c in range(width):
            times.append(rr * clocks + c)
            weights.append(-(1 - x) / (B * width))
    for rr in range(ny - B, ny):
        for c in range(width):
            times.append(rr * clocks + c)
            weights.append(-x / (B * width))
    times, weights = np.array(times), np.array(weights)
    per_column = []
    for c in range(width):
        t = np.r_[y * clocks + c, times]
        a = np.r_[1.0, weights]
        d = structure_function(t[:, None] - t[None, :])
        per_column.append(-0.5 * a @ d @ a)
    assert unit["own"][y] == pytest.approx(np.mean(per_column), rel=1e-9)
    assert unit["common"][y] == pytest.approx(unit["own"][y], rel=1e-12)  # alpha 0


def test_pink_block_variance_against_the_generator():
    """Spread of unit 1/f about its mean over a 4-row block of a channel's first 8
    clocks (128 per row), Monte Carlo of utils.pink against the closed form."""
    from romanimpreprocess.refpix.refpix import pink_block_variance
    from romanimpreprocess.utils.pink import unit_pink

    rng = np.random.default_rng(12)
    clocks, width = AMP33_WIDTH, 8
    series = unit_pink(64 * clocks, rng, count=400).reshape(400, 64, clocks)
    block = series[:, 30 : 30 + B, :width].reshape(400, -1)
    measured = np.mean(np.var(block, axis=1))
    # 400 blocks: the spread of a block's variance is ~40 % of it: ~2 % error.
    expected = pink_block_variance(B, width, clocks)
    assert measured == pytest.approx(expected, rel=0.08)
