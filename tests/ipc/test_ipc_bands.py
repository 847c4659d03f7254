"""ipc in row bands (romanimpreprocess.stpipe.bands) == ipc on the whole frame."""

import copy

import numpy as np
import pytest

from tests.bands_check import HEIGHTS, assert_banded_equals_whole


@pytest.mark.parametrize("height", HEIGHTS)
def test_banded_equals_whole(band_inputs, height):
    pipeline, inputs = band_inputs
    before = inputs["ipc"]
    whole, _ = assert_banded_equals_whole(pipeline, before, "ipc", height)
    if height == HEIGHTS[0]:
        assert not np.array_equal(whole.data, before.data)  # the step did something
        # the IPC of a band edge reaches `iterations` rows into the next band
        assert (
            pipeline.ipc.band_plan(copy.deepcopy(before)).halo
            == pipeline.ipc.iterations
        )
