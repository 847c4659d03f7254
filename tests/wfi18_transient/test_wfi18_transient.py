"""WFI18 first-read transient on plain arrays: fit, masking fallback, row mask."""

import numpy as np
import pytest
from roman_datamodels.dqflags import group

from romanimpreprocess.dark_decay.dark_decay import frame_read_times
from romanimpreprocess.wfi18_transient import wfi18_transient as w18

READ_PATTERN = [[0], [1, 2], [3, 4, 5], [6, 7], [8, 9], [10]]
FRAME_TIME = 3.04
B = 4
TRUE = (-30.0, 6.0, 0.1, 0.5)  # a (DN), b (DN), tau_a (s), tau_b (s); romancal-like


def make_ramp(rng, size=128, noise=0.0, transient=TRUE, read_pattern=READ_PATTERN):
    """Linear ramps with resultant 0 raised by the transient at each pixel's time."""
    t_res = np.array([np.mean(np.array(r) * FRAME_TIME) for r in read_pattern])
    flux = rng.uniform(1, 20, (size, size))
    flux[40:44, 50:54] = 2000  # a bright source
    bias = 1000 + 50 * rng.random((size, size))
    clean = (bias + flux * t_res[:, None, None]).astype(np.float32)
    data = clean + rng.normal(0, noise, clean.shape).astype(np.float32)
    t_pixel = frame_read_times((size, size), FRAME_TIME, 18)
    a, b, tau_a, tau_b = transient
    model = a * np.exp(-t_pixel / tau_a) + b * np.exp(-t_pixel / tau_b)
    data[0, B:-B, B:-B] += model[B:-B, B:-B].astype(np.float32)
    return data, clean, np.zeros(data.shape, np.uint8)


@pytest.mark.parametrize("legacy_compat", [False, True])
def test_fit_removes_injected_transient(rng, legacy_compat):
    data, clean, groupdq = make_ramp(rng)
    before = data.copy()
    fit = w18.correct_transient(
        data, groupdq, READ_PATTERN, FRAME_TIME, legacy_compat=legacy_compat
    )
    assert fit is not None
    np.testing.assert_allclose(
        [fit.a, fit.b, fit.tau_a, fit.tau_b], TRUE, rtol=0.02, atol=0.2
    )
    sci = (slice(B, -B), slice(B, -B))
    injected = np.abs(before[0][sci] - clean[0][sci]).max()
    assert injected > 5
    # The fit is to row means of a model that varies slightly along a row.
    assert np.abs(data[0][sci] - clean[0][sci]).max() < 0.02 * injected
    np.testing.assert_array_equal(data[1:], before[1:])  # only resultant 0
    np.testing.assert_array_equal(data[0, :B], before[0, :B])  # reference pixels
    assert not groupdq.any()


def test_fit_with_noise_leaves_no_systematic_residual(rng):
    data, clean, groupdq = make_ramp(rng, noise=2.0)
    noise0 = data[0] - clean[0]
    w18.correct_transient(data, groupdq, READ_PATTERN, FRAME_TIME)
    sci = (slice(B, -B), slice(B, -B))
    t_pixel = frame_read_times(data.shape[1:], FRAME_TIME, 18)[sci]
    a, b, ta, tb = TRUE
    injected = a * np.exp(-t_pixel / ta) + b * np.exp(-t_pixel / tb)
    left = data[0][sci] - clean[0][sci] - (noise0[sci] - injected)
    # Per-row systematic residual well under the noise of one pixel (2 DN).
    assert np.abs(left.mean(axis=1)).max() < 0.5


def test_mask_rows_flags_first_rows_and_leaves_data(rng):
    data, _, groupdq = make_ramp(rng)
    before = data.copy()
    assert (
        w18.correct_transient(data, groupdq, READ_PATTERN, FRAME_TIME, mask_rows=True)
        is None
    )
    nrows = w18.masked_row_count(128)
    assert nrows == 32  # 1000 of 4096 rows, the same fraction of 128
    flag = group.DO_NOT_USE | group.WFI18_TRANSIENT
    assert np.all(groupdq[0, :nrows] == flag)
    assert not groupdq[0, nrows:].any() and not groupdq[1:].any()
    np.testing.assert_array_equal(data, before)
    assert w18.masked_row_count(4096) == 1000


def test_too_few_resultants_masks_rows(rng):
    data, _, groupdq = make_ramp(rng, read_pattern=READ_PATTERN[:4])
    assert w18.correct_transient(data, groupdq, READ_PATTERN[:4], FRAME_TIME) is None
    assert np.all(groupdq[0, :32] & group.WFI18_TRANSIENT)


def test_failed_fit_falls_back_to_masking(rng):
    data, _, groupdq = make_ramp(rng)
    data[0, B:-B, B:-B] = np.nan  # every row mean is NaN
    for compat in (False, True):
        gdq = groupdq.copy()
        assert (
            w18.correct_transient(
                data.copy(), gdq, READ_PATTERN, FRAME_TIME, legacy_compat=compat
            )
            is None
        )
        assert np.all(gdq[0, :32] & group.DO_NOT_USE)


def test_illuminated_mask_default_and_legacy_slip(rng):
    diff = rng.normal(size=(6, 6))
    median = np.median(diff, axis=1)
    own_row = np.array([[diff[y, x] > median[y] for x in range(6)] for y in range(6)])
    row_x = np.array([[diff[y, x] > median[x] for x in range(6)] for y in range(6)])
    np.testing.assert_array_equal(w18.illuminated_mask(diff), own_row)
    np.testing.assert_array_equal(w18.illuminated_mask(diff, legacy_compat=True), row_x)
    with pytest.raises(ValueError, match="square"):
        w18.illuminated_mask(diff[:5], legacy_compat=True)
