"""Saturation flags against a per-pixel brute-force reference (forward, grow, backup)."""

import numpy as np
import pytest
from roman_datamodels.dqflags import group, pixel

from romanimpreprocess.saturation.saturation import flag_saturation

PATTERN = [[0], [1, 2], [3, 4, 5], [6, 7], [8], [9, 10]]


def simulate(rng, ny=12, nx=16):
    """Resultants far below threshold until a random onset, then far above."""
    n = len(PATTERN)
    thr = rng.uniform(20000, 40000, (ny, nx)).astype(np.float32)
    onset = rng.integers(1, n + 6, (ny, nx))  # >= n: never saturates
    onset[rng.random((ny, nx)) < 0.7] = n + 1
    data = np.empty((n, ny, nx), np.float32)
    for g in range(n):
        low = rng.uniform(100, 200, (ny, nx)) + 10 * g
        data[g] = np.where(g >= onset, thr + 1000, low)
    return data, thr, onset


def brute_force(onset, n, first, backup, radius=1):
    ny, nx = onset.shape
    flagged = np.zeros((n, ny, nx), bool)
    for y in range(ny):
        for x in range(nx):
            ys = slice(max(y - radius, 0), y + radius + 1)
            xs = slice(max(x - radius, 0), x + radius + 1)
            k = max(onset[ys, xs].min(), first)
            flagged[k:, y, x] = True
    for _ in range(backup):
        for g in range(first, n - 1):
            if len(PATTERN[g]) > 1:
                flagged[g] |= flagged[g + 1]
    return flagged


@pytest.mark.parametrize("backup", [0, 1, 2])
@pytest.mark.parametrize("first", [0, 1])
def test_flags_equal_brute_force(rng, backup, first):
    data, thr, onset = simulate(rng)
    n = data.shape[0]
    gdq = np.zeros(data.shape, np.uint8)
    flag_saturation(data, gdq, thr, PATTERN, first=first, backup=backup)
    truth = brute_force(onset, n, first, backup)
    assert np.array_equal((gdq & group.SATURATED) != 0, truth)
    assert not np.any(gdq & group.AD_FLOOR)


def test_no_check_and_nan_threshold_never_flagged(rng):
    data, thr, _ = simulate(rng)
    data[:] = 60000.0
    thr[2, 3] = np.nan
    sat_dq = np.zeros(thr.shape, np.uint32)
    sat_dq[5, 5] = pixel.NO_SAT_CHECK
    gdq = np.zeros(data.shape, np.uint8)
    out = flag_saturation(
        data, gdq, thr, PATTERN, threshold_dq=sat_dq, n_pix_grow_sat=0, backup=0
    )
    sat = (gdq & group.SATURATED) != 0
    assert not sat[:, 2, 3].any() and not sat[:, 5, 5].any()
    assert sat[1:].sum() == (data.shape[0] - 1) * (thr.size - 2)
    assert out[2, 3] & pixel.NO_SAT_CHECK and out[5, 5] & pixel.NO_SAT_CHECK


def test_ad_floor(rng):
    data, thr, _ = simulate(rng)
    data[3, 4, 4] = 0.0
    gdq = np.zeros(data.shape, np.uint8)
    flag_saturation(data, gdq, thr, PATTERN, backup=0)
    floor = (gdq & group.AD_FLOOR) != 0
    assert floor[3, 4, 4] and floor.sum() == 1
    assert gdq[3, 4, 4] & group.DO_NOT_USE
