"""dq_init in row bands (romanimpreprocess.stpipe.bands) == dq_init on the whole frame."""

import numpy as np
import pytest
from roman_datamodels import dqflags

from tests.bands_check import HEIGHTS, assert_banded_equals_whole


@pytest.mark.parametrize("height", HEIGHTS)
def test_banded_equals_whole(band_inputs, height):
    pipeline, inputs = band_inputs
    before = inputs["dq_init"]
    whole, _ = assert_banded_equals_whole(pipeline, before, "dq_init", height)
    if height == HEIGHTS[0]:
        # the guide window and the mask were flagged: something to compare
        assert np.any(whole.pixeldq & np.uint32(dqflags.pixel.GW_AFFECTED_DATA))
        assert np.any(whole.groupdq[0] & np.uint8(dqflags.group.DO_NOT_USE))
