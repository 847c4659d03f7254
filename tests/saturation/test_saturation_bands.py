"""saturation in row bands (romanimpreprocess.stpipe.bands) == saturation on the whole frame."""

import numpy as np
import pytest
from roman_datamodels import dqflags

from tests.bands_check import HEIGHTS, assert_banded_equals_whole


@pytest.mark.parametrize("height", HEIGHTS)
def test_banded_equals_whole(band_inputs, height):
    pipeline, inputs = band_inputs
    before = inputs["saturation"]
    whole, _ = assert_banded_equals_whole(pipeline, before, "saturation", height)
    if height == HEIGHTS[0]:
        # saturated stars (grown, partial saturation): something to compare
        assert np.any(whole.groupdq & np.uint8(dqflags.group.SATURATED))
