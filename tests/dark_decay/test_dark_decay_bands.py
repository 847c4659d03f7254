"""Dark decay in row bands: `subtract_signal` on any rows == the whole frame."""

import numpy as np
import pytest

from romanimpreprocess.dark_decay import dark_decay

PATTERN = [[0], [1, 2], [3, 4, 5], [6, 7], [8]]


@pytest.mark.parametrize("height", [1, 3, 37, 64])
def test_banded_equals_whole(rng, height):
    shape = (len(PATTERN), 64, 64)
    data = rng.normal(1000.0, 30.0, shape).astype(np.float32)
    args = (PATTERN, 3.04, 7, 25.0, 20.0)  # a non-zero amplitude
    whole = data.copy()
    dark_decay.subtract_dark_decay(whole, *args)
    assert not np.array_equal(whole, data)
    terms = dark_decay.dark_decay_signal(shape[1:], *args)
    for r0 in range(0, shape[1], height):
        rows = slice(r0, min(shape[1], r0 + height))
        band = data[:, rows].copy()
        dark_decay.subtract_signal(band, terms, rows)
        assert np.array_equal(band, whole[:, rows])
