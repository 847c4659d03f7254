"""ipc in row bands (romanimpreprocess.stpipe.bands) == ipc on the whole frame."""

import copy

import numpy as np
import pytest

from romanimpreprocess.constants import IPC_NOISE_GAIN_KEY
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


@pytest.mark.parametrize("iterations", [1, 3])
@pytest.mark.parametrize("height", [5, 37])
def test_noise_gain_banded_equals_whole_other_iterations(
    band_inputs, iterations, height
):
    """Not the compiled path's 2 iterations: the noise gain by impulses, per band."""
    pipeline, inputs = band_inputs
    pipeline.ipc.iterations = iterations
    try:
        whole, _ = assert_banded_equals_whole(pipeline, inputs["ipc"], "ipc", height)
    finally:
        pipeline.ipc.iterations = 2
    gain = np.asarray(whole["processinfo"][IPC_NOISE_GAIN_KEY])
    assert np.isfinite(gain).all() and (gain > 0).all()
    assert not np.allclose(gain, 1.0)  # the kernel spreads the noise
