"""`utils.median.median` against `numpy.median` (the brute-force truth)."""

import numpy as np
import pytest

from romanimpreprocess.utils import median as median_module
from romanimpreprocess.utils.median import median

N = 1 << 20  # the size from which the bracket is used


@pytest.fixture
def numpy_calls(monkeypatch):
    """Calls of `numpy.median` made inside `median` (its fallback)."""
    calls = []
    original = np.median

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(median_module.np, "median", counted)
    return calls


def _same(values, numpy_calls=None, fallback=False):
    before = len(numpy_calls) if numpy_calls is not None else 0
    got = median(values)
    if numpy_calls is not None:
        assert len(numpy_calls) - before == int(fallback)
    expected = float(np.median(values))
    if np.isnan(expected):
        assert np.isnan(got)
    else:
        assert got == expected and type(got) is float


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("extra", [0, 1])  # an even and an odd count
def test_random_values_give_numpys_median(rng, dtype, extra, numpy_calls):
    values = rng.normal(1.8, 0.05, N + extra).astype(dtype)
    _same(values, numpy_calls)


def test_a_view_of_a_frame_gives_numpys_median(rng, numpy_calls):
    frame = rng.uniform(1.6, 2.0, (1040, 1040))
    science = frame[4:-4, 4:-4]  # not contiguous
    assert not science.flags.c_contiguous
    _same(science, numpy_calls)
    _same(frame[::-1, ::-1], numpy_calls)


def test_many_equal_values_and_infinities(rng, numpy_calls):
    values = np.full(N + 1, 1.8)
    values[: N // 3] = rng.normal(1.8, 0.01, N // 3)
    values[-10:] = np.inf
    values[:10] = -np.inf
    _same(values, numpy_calls)


def test_a_sample_unlike_the_array_falls_back_to_numpy(rng, numpy_calls):
    # sorted values whose every 9th is from another distribution: the bracket the
    # sample gives misses the middle ranks
    values = np.sort(rng.normal(size=N + 8))
    values[::9] = 1000.0
    _same(values, numpy_calls, fallback=True)


def test_nan_gives_nan(rng, numpy_calls):
    values = rng.normal(size=N)
    values[12345] = np.nan
    _same(values, numpy_calls, fallback=True)


def test_small_and_integer_arrays_are_numpys():
    _same(np.arange(11, dtype=np.float64))
    _same(np.arange(N + 2))  # integers: numpy's own
