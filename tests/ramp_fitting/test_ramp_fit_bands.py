"""ramp_fit in row bands (romanimpreprocess.stpipe.bands) == ramp_fit on the whole frame."""

import numpy as np
import pytest
from roman_datamodels import dqflags

from tests.bands_check import HEIGHTS, assert_banded_equals_whole


@pytest.mark.parametrize("height", HEIGHTS)
def test_banded_equals_whole(band_inputs, height):
    pipeline, inputs = band_inputs
    before = inputs["ramp_fit"]
    whole, _ = assert_banded_equals_whole(pipeline, before, "ramp_fit", height)
    if height == HEIGHTS[0]:
        # jumps and pixels without a slope exist: per-band counts are summed
        assert np.any(whole.dq & np.uint32(dqflags.pixel.JUMP_DET))
