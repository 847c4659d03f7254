"""biascorr in row bands (romanimpreprocess.stpipe.bands) == biascorr on the whole frame."""

import numpy as np
import pytest

from romanimpreprocess.biascorr.biascorr import subtract_bias
from romanimpreprocess.constants import REF_BORDER
from tests.bands_check import HEIGHTS, assert_banded_equals_whole


@pytest.mark.parametrize("height", HEIGHTS)
def test_banded_equals_whole(band_inputs, height):
    pipeline, inputs = band_inputs
    assert_banded_equals_whole(pipeline, inputs["biascorr"], "biascorr", height)


@pytest.mark.parametrize("height", [1, 3, 5, 37, 64])
def test_subtract_bias_on_rows(rng, height):
    """A random bias (the simulation's is flat): any rows give the frame's bits."""
    b, ny = REF_BORDER, 64
    data = rng.normal(1000.0, 30.0, (4, ny, 64)).astype(np.float32)
    bias = rng.normal(0.0, 5.0, (6, ny - 2 * b, 64 - 2 * b))  # 2 extra planes
    whole = data.copy()
    subtract_bias(whole, bias, b)
    assert not np.array_equal(whole, data)
    for r0 in range(0, ny, height):
        rows = slice(r0, min(ny, r0 + height))
        band = data[:, rows].copy()
        subtract_bias(band, bias, b, row0=r0, ny=ny)
        assert np.array_equal(band, whole[:, rows])
