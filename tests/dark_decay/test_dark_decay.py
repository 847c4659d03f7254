"""Per-pixel read times and the dark-decay subtraction on plain arrays."""

import numpy as np
import pytest

from romanimpreprocess.constants import FULL_FRAME, N_CHANNELS
from romanimpreprocess.dark_decay import dark_decay as dd


def brute_read_time(y, x, shape, frame_time, sca):
    """Read time of one science-oriented pixel, from the readout description."""
    ny, nx = shape
    width = nx // N_CHANNELS
    n_gw = 16  # guide-window excursions per frame (every 256 rows of 4096)
    cmax = (width - 1) + (width + dd.ROW_PAD_CLOCKS) * (ny - 1)
    full_width = FULL_FRAME // N_CHANNELS
    cmax_full = (full_width - 1) + (full_width + 14) * (FULL_FRAME - 1)
    clock_time = dd.PIXEL_TIME * cmax_full / cmax  # slower clock on a small frame
    per_gw = (frame_time / clock_time - cmax) / n_gw * 1.5
    # science -> detector orientation
    if sca % 3 == 0:
        xd, yd = nx - 1 - x, y
    else:
        xd, yd = x, ny - 1 - y
    channel, col = divmod(xd, width)
    if channel % 2:
        col = width - 1 - col  # odd channels read in the other direction
    excursions = sum(1 for i in range(1, n_gw) if yd >= i * ny // n_gw)
    clock = col + (width + 14) * yd + excursions * per_gw
    return frame_time * clock / (cmax + n_gw * per_gw)


@pytest.mark.parametrize(
    ("shape", "sca"), [((64, 64), 4), ((64, 128), 18), ((96, 64), 7)]
)
def test_read_times_match_readout_description(shape, sca):
    frame_time = 3.04
    times = dd.frame_read_times(shape, frame_time, sca)
    brute = np.array(
        [
            [brute_read_time(y, x, shape, frame_time, sca) for x in range(shape[1])]
            for y in range(shape[0])
        ]
    )
    np.testing.assert_allclose(times, brute, rtol=1e-12, atol=1e-12)
    assert times.min() >= 0 and times.max() < frame_time
    shifted = dd.frame_read_times(shape, frame_time, sca, frame_number=2.5)
    np.testing.assert_allclose(shifted - times, 2.5 * frame_time, rtol=1e-12)


@pytest.mark.parametrize("sca", [4, 18])
def test_full_frame_read_times_bit_identical_to_romancal(sca):
    from romancal.lib.basic_utils import frame_read_times as romancal_times

    shape = (FULL_FRAME, FULL_FRAME)
    for frame_number in (0, -0.5):
        ours = dd.frame_read_times(shape, 3.16247, sca, frame_number=frame_number)
        np.testing.assert_array_equal(ours, romancal_times(3.16247, sca, frame_number))


def test_subtracts_mean_decay_at_per_pixel_read_times():
    shape = (64, 64)
    frame_time, sca, amp, tau = 3.04, 4, 4.0, 5.0
    read_pattern = [[0], [1, 2], [3, 4, 5], [6, 7], [8]]
    level = 1000.0
    data = np.full((len(read_pattern), *shape), level, np.float32)
    dd.subtract_dark_decay(data, read_pattern, frame_time, sca, amp, tau)
    t0 = np.array(
        [[brute_read_time(y, x, shape, frame_time, sca) for x in range(64)]
         for y in range(64)]
    )  # fmt: skip
    for i, frames in enumerate(read_pattern):
        signal = np.mean(
            [amp * np.exp(-(t0 + (r - 1.5) * frame_time) / tau) for r in frames], axis=0
        )
        # float32 rounding of the stored difference
        np.testing.assert_allclose(data[i], level - signal, rtol=0, atol=1e-4)
    # Decaying: earlier resultants lose more, and resultant 0 gets the extrapolation
    # to before the reference time (frame -1.5 .. -0.5 after the amplitude's time).
    loss = level - data.mean(axis=(1, 2))
    assert np.all(np.diff(loss) < 0)
    assert loss[0] > amp * np.exp(-frame_time / tau)


def test_full_frame_matches_romancal_to_float32_rounding():
    from romancal.dark_decay.dark_decay import subtract_dark_decay

    rng = np.random.default_rng(3)
    read_pattern = [[0], [1, 2]]
    data = rng.uniform(5000, 6000, (2, FULL_FRAME, FULL_FRAME)).astype(np.float32)
    ref = data.copy()
    subtract_dark_decay(ref, 3.3, 2.1, 3.16247, read_pattern, 4)
    dd.subtract_dark_decay(data, read_pattern, 3.16247, 4, 3.3, 2.1)
    np.testing.assert_allclose(data, ref, rtol=0, atol=np.spacing(np.float32(6000)))


def test_zero_amplitude_changes_no_value():
    # The simulated calibration sets (and detectors without decay) have amplitude 0:
    # the subtraction is skipped, with the bits romancal's subtraction of 0 gives.
    from romancal.dark_decay.dark_decay import subtract_dark_decay

    rng = np.random.default_rng(4)
    read_pattern = [[0], [1, 2]]
    data = rng.normal(0, 1e4, (2, FULL_FRAME, FULL_FRAME)).astype(np.float32)
    data[0, 0, :3] = [np.nan, -0.0, np.inf]
    ref = data.copy()
    subtract_dark_decay(ref, 0.0, 2.1, 3.16247, read_pattern, 4)
    dd.subtract_dark_decay(data, read_pattern, 3.16247, 4, 0.0, 2.1)
    assert data.tobytes() == ref.tobytes()


def test_bad_arguments():
    with pytest.raises(ValueError, match="channels"):
        dd.frame_read_times((64, 70), 3.04, 4)
    with pytest.raises(ValueError, match="time constant"):
        dd.subtract_dark_decay(np.zeros((1, 64, 64), np.float32), [[0]], 3.04, 4, 1, 0)
    with pytest.raises(ValueError, match="amplitude"):
        dd.subtract_dark_decay(
            np.zeros((1, 64, 64), np.float32), [[0]], 3.04, 4, np.nan, 1
        )
    with pytest.raises(ValueError, match="read pattern"):
        dd.subtract_dark_decay(np.zeros((2, 64, 64), np.float32), [[0]], 3.04, 4, 1, 1)
