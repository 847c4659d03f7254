"""linearity in row bands (romanimpreprocess.stpipe.bands) == linearity on the whole frame."""

import numpy as np
import pytest

from tests.bands_check import HEIGHTS, assert_banded_equals_whole


@pytest.mark.parametrize("height", HEIGHTS)
def test_banded_equals_whole(band_inputs, height):
    pipeline, inputs = band_inputs
    before = inputs["linearity"]
    whole, _ = assert_banded_equals_whole(pipeline, before, "linearity", height)
    if height == HEIGHTS[0]:
        assert not np.array_equal(whole.data, before.data)  # the step did something
