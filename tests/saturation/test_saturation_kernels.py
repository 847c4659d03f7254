"""The numba saturation kernels give exactly the flags of the numpy passes."""

import numpy as np
import pytest
from roman_datamodels.dqflags import group, pixel

from romanimpreprocess.saturation.saturation import flag_saturation

PATTERN = [[0], [1, 2], [3, 4, 5], [6, 7, 8, 9, 10], [11, 12], [13]]


def random_exposure(rng, ny=64, nx=96):
    """Ramps crossing the threshold at every resultant, with every special case.

    Saturated blobs, pixels that saturate at a random resultant (or never), NaN
    thresholds, NO_SAT_CHECK pixels, data <= 0 (A/D floor), NaN data, ramps
    dipping below the threshold after crossing it, and random input group flags
    (SATURATED and DO_NOT_USE included).
    """
    n = len(PATTERN)
    thr = rng.uniform(20000, 40000, (ny, nx)).astype(np.float32)
    thr[rng.random((ny, nx)) < 0.03] = np.nan
    steps = rng.uniform(-2000, 15000, (n, ny, nx))
    data = (rng.uniform(1000, 30000, (ny, nx)) + np.cumsum(steps, axis=0)).astype(
        np.float32
    )
    for _ in range(4):  # saturated blobs starting at a random resultant
        y, x = rng.integers(0, ny), rng.integers(0, nx)
        g = rng.integers(0, n)
        data[g:, max(y - 3, 0) : y + 3, max(x - 2, 0) : x + 4] = 60000
    data[rng.random(data.shape) < 0.01] = 0
    data[rng.random(data.shape) < 0.01] = -5
    data[rng.random(data.shape) < 0.003] = np.nan
    # exactly at the threshold (>=) and at the diluted threshold of resultant 1
    data[2, 5, 7] = thr[5, 7]  # NaN where the threshold is
    data[1, 7, 6] = thr[7, 6] * np.float32(1.5 / 2)
    threshold_dq = np.zeros((ny, nx), np.uint32)
    threshold_dq[rng.random((ny, nx)) < 0.03] = pixel.NO_SAT_CHECK
    threshold_dq[rng.random((ny, nx)) < 0.03] |= pixel.DEAD
    groupdq = np.zeros((n, ny, nx), np.uint8)
    for flag in (group.SATURATED, group.DO_NOT_USE, group.JUMP_DET):
        groupdq[rng.random((n, ny, nx)) < 0.01] |= flag
    return data, groupdq, thr, threshold_dq


def run_both(data, groupdq, thr, threshold_dq, **kwargs):
    """(groupdq, pixel flags) of the numpy and numba engines on copies."""
    results = []
    for engine in ("numpy", "numba"):
        gdq = groupdq.copy()
        flags = flag_saturation(
            data, gdq, thr, PATTERN, threshold_dq=threshold_dq, engine=engine,
            **kwargs,
        )  # fmt: skip
        results.append((gdq, flags))
    return results


def assert_same(results):
    (gdq_np, flags_np), (gdq_nb, flags_nb) = results
    assert gdq_np.dtype == gdq_nb.dtype and flags_np.dtype == flags_nb.dtype
    assert np.array_equal(gdq_np, gdq_nb)
    assert np.array_equal(flags_np, flags_nb)


@pytest.mark.parametrize("first", [0, 1, 2])
@pytest.mark.parametrize("n_pix_grow_sat", [0, 1, 2])
@pytest.mark.parametrize("backup", [0, 1, 3])
def test_numba_equals_numpy(rng, first, n_pix_grow_sat, backup):
    data, groupdq, thr, threshold_dq = random_exposure(rng)
    data_before = data.copy()
    results = run_both(
        data, groupdq, thr, threshold_dq, first=first,
        n_pix_grow_sat=n_pix_grow_sat, backup=backup,
    )  # fmt: skip
    assert_same(results)
    assert np.array_equal(data, data_before, equal_nan=True)  # data not modified
    gdq = results[1][0]
    # the random frames exercise every kind of flag the passes set
    assert (gdq[first:] & group.SATURATED).any()
    assert (gdq[first:] & group.AD_FLOOR).any()
    assert np.array_equal(gdq[:first], groupdq[:first])  # skipped resultants


def test_numba_equals_numpy_square_frame_without_threshold_dq(rng):
    data, groupdq, thr, _ = random_exposure(rng, ny=128, nx=128)
    assert_same(run_both(data, groupdq, thr, None))


def test_partial_saturation_and_second_group_flags_agree(rng):
    # Examined resultants 1..5 (first=1). Top half: a ramp between the diluted and
    # the full threshold in resultant 3 (5 frames), saturated after it, so the
    # backward pass flags resultant 3. Bottom half: a steep ramp from a low
    # resultant 1 to resultant 3 saturated, so the second-group test flags
    # resultant 2. No backup, which would turn both into SATURATED.
    data, groupdq, thr, threshold_dq = random_exposure(rng)
    groupdq[:] = 0
    top, bottom = slice(0, 32), slice(32, None)
    data[1:3, top] = thr[top] * np.float32(0.3)
    data[3, top] = thr[top] * np.float32(0.9)
    data[4:, top] = thr[top] + 100
    data[1, bottom] = thr[bottom] * np.float32(0.1)
    data[2, bottom] = thr[bottom] * np.float32(0.7)
    data[3:, bottom] = thr[bottom] + 100
    results = run_both(
        data, groupdq, thr, threshold_dq, first=1, n_pix_grow_sat=1, backup=0
    )
    assert_same(results)
    gdq = results[1][0]
    dnu_only = ((gdq & group.DO_NOT_USE) != 0) & ((gdq & group.SATURATED) == 0)
    assert dnu_only[3, top].any() and dnu_only[2, bottom].any()


def test_float64_data_and_threshold(rng):
    data, groupdq, thr, threshold_dq = random_exposure(rng)
    assert_same(
        run_both(data.astype(np.float64), groupdq, thr.astype(np.float64),
                 threshold_dq, backup=2)
    )  # fmt: skip


@pytest.mark.parametrize("nres", [1, 2, 3])
def test_few_resultants(rng, nres):
    data, groupdq, thr, threshold_dq = random_exposure(rng)
    results = []
    for engine in ("numpy", "numba"):
        gdq = groupdq[:nres].copy()
        flags = flag_saturation(
            data[:nres], gdq, thr, PATTERN[:nres], threshold_dq=threshold_dq,
            first=0, engine=engine,
        )  # fmt: skip
        results.append((gdq, flags))
    assert_same(results)


def test_threads_give_identical_flags(rng):
    data, groupdq, thr, threshold_dq = random_exposure(rng, ny=128, nx=128)
    results = []
    for threads in (1, 2):
        gdq = groupdq.copy()
        flags = flag_saturation(
            data, gdq, thr, PATTERN, threshold_dq=threshold_dq, threads=threads
        )
        results.append((gdq, flags))
    assert_same(results)


def test_unknown_engine_rejected(rng):
    data, groupdq, thr, _ = random_exposure(rng, ny=8, nx=8)
    with pytest.raises(ValueError, match="engine"):
        flag_saturation(data, groupdq, thr, PATTERN, engine="cuda")
