"""The ramp fit's planner is shared by the calls with the same read times."""

import numpy as np

from romanimpreprocess.ramp_fitting import ramp_fit


def _times(n):
    tbar = np.arange(n, dtype=np.float64) * 3.04 + 1.52
    tau = tbar - 0.5
    return tbar, tau, np.ones(n, np.int64)


def test_same_pattern_same_planner_other_pattern_other():
    tbar, tau, n_frames = _times(6)
    first = ramp_fit._planner(tbar, tau, n_frames, u=0.005, start=1)
    again = ramp_fit._planner(
        tbar.copy(), tau.copy(), n_frames.copy(), u=0.005, start=1
    )
    assert again is first
    assert ramp_fit._planner(tbar, tau, n_frames, u=0.005, start=0) is not first
    assert ramp_fit._planner(tbar, tau, n_frames, u=0.01, start=1) is not first
    assert ramp_fit._planner(*_times(7), u=0.005, start=1) is not first


def test_only_the_last_few_planners_are_kept():
    planners = [
        ramp_fit._planner(*_times(n), u=0.005, start=1)
        for n in range(3, 4 + ramp_fit._PLANNERS_KEPT + 2)
    ]
    assert len(ramp_fit._PLANNERS) == ramp_fit._PLANNERS_KEPT
    assert ramp_fit._planner(*_times(3), u=0.005, start=1) is not planners[0]
    assert ramp_fit._planner(*_times(planners[-1].n), u=0.005, start=1) is planners[-1]
