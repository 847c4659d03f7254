"""The special pixels of a band fitted on a thread of their own.

With two or more threads the ramp fit leaves a band's special pixels (flagged
resultants, jumps) to a thread of their own while the next band goes through the
earlier steps. The L2 must not depend on it, the deferred work must need nothing
more from the band's cube, an error there must reach the caller with nothing
written, and no thread may outlive the run.
"""

import threading

import numpy as np
import pytest

from romanimpreprocess.ramp_fitting import ramp_fit
from romanimpreprocess.ramp_fitting.ramp_fit_step import _RampFitPlan
from tests.bands_check import no_thread_left, read_l2, run_simulated
from tests.ramp_fitting.ramps import (
    SIGMA_READ,
    SURVEY_PATTERN,
    simulate,
    times,
    to_cube,
)

ARRAYS = ("data", "dq", "err", "var_poisson", "var_rnoise", "data_withsky")
RESULT_FIELDS = ("slope", "var_poisson", "var_rnoise", "dq", "endslice", "jumps")


def _ramps_with_jumps():
    """A 24 x 24 ramp cube with jumps in a quarter of the pixels and a flagged read."""
    rng = np.random.default_rng(7)
    shape = (24, 24)
    npix = shape[0] * shape[1]
    jump = np.where(rng.random(npix) < 0.25, 400.0, 0.0)
    resultants = simulate(
        rng.uniform(0.5, 20.0, npix), rng, jump=jump, jump_frame=np.full(npix, 7)
    )
    data = to_cube(resultants, shape)
    groupdq = np.zeros(data.shape, np.uint8)
    groupdq[3, 10, 10:20] = 1  # DO_NOT_USE: special pixels of another kind
    ny, nx = data.shape[1:]
    tbar, tau, n_frames = times(SURVEY_PATTERN)
    return (
        data,
        groupdq,
        np.zeros((ny, nx), np.uint32),
        np.full((ny, nx), 1.5),
        np.full((ny, nx), SIGMA_READ),
        tbar,
        tau,
        n_frames,
    )


def test_the_deferred_fit_needs_nothing_more_from_the_cube():
    inputs = _ramps_with_jumps()
    direct = ramp_fit.fit_ramps(*inputs)
    assert direct.counts["jump"] > 50  # the deferred part has work to do
    data, groupdq = inputs[0], inputs[1]
    complete = ramp_fit.fit_ramps(*inputs, defer_special=True)
    data[...] = np.nan  # the next band reuses the memory
    groupdq[...] = 255
    deferred = complete()
    for name in RESULT_FIELDS:
        assert np.array_equal(
            getattr(deferred, name), getattr(direct, name), equal_nan=True
        ), name
    assert deferred.counts == direct.counts


def _run(simulated_set, out, **parameters):
    run_simulated(simulated_set, out, **parameters)
    return read_l2(out, ARRAYS)


def _spy(monkeypatch, cls, name, fail_at=None):
    """Names of the threads that call ``cls.name``, in order of the calls.

    Call number ``fail_at`` (1-based) raises ``ValueError("call <n> failed")``.
    """
    calls = []
    original = getattr(cls, name)

    def spied(self, *args):
        calls.append(threading.current_thread().name)
        if len(calls) == fail_at:
            raise ValueError(f"call {fail_at} failed")
        return original(self, *args)

    monkeypatch.setattr(cls, name, spied)
    return calls


@pytest.fixture
def special_threads(monkeypatch):
    """Names of the threads that completed a band's fit, in band order."""
    return _spy(monkeypatch, _RampFitPlan, "_store")


def test_on_its_own_thread_or_in_the_band_gives_the_same_l2(
    simulated_set, tmp_path, monkeypatch, special_threads
):
    monkeypatch.setenv("RIP_THREADS", "1")
    in_band = _run(simulated_set, tmp_path / "in_band_cal.asdf", band_rows=37)
    assert set(special_threads) == {"MainThread"}
    assert len(special_threads) > 2
    special_threads.clear()
    monkeypatch.setenv("RIP_THREADS", "2")
    deferred = _run(simulated_set, tmp_path / "deferred_cal.asdf", band_rows=37)
    assert len(special_threads) > 2
    assert all(name.startswith("rip-ramp-special") for name in special_threads)
    for key in ARRAYS:
        assert np.array_equal(deferred[key], in_band[key], equal_nan=True), key
    assert deferred["ref_file"] == in_band["ref_file"]
    assert no_thread_left("rip-ramp-special")


def test_an_error_in_the_deferred_fit_reaches_the_caller(
    simulated_set, tmp_path, monkeypatch
):
    monkeypatch.setenv("RIP_THREADS", "2")
    stores = _spy(monkeypatch, _RampFitPlan, "_store", fail_at=2)
    out = tmp_path / "broken_cal.asdf"
    with pytest.raises(ValueError, match="call 2 failed"):
        _run(simulated_set, out, band_rows=37)
    assert stores[1].startswith("rip-ramp-special")
    assert not out.exists()
    assert no_thread_left("rip-ramp-special")


def test_a_run_stopped_after_a_band_ends_the_thread(
    simulated_set, tmp_path, monkeypatch
):
    """A later step fails while a band's special pixels are in flight."""
    from romanimpreprocess.ipc.ipc_step import _IPCPlan

    monkeypatch.setenv("RIP_THREADS", "2")
    _spy(monkeypatch, _IPCPlan, "apply", fail_at=3)
    out = tmp_path / "stopped_cal.asdf"
    with pytest.raises(ValueError, match="call 3 failed"):
        _run(simulated_set, out, band_rows=37)
    assert not out.exists()
    assert no_thread_left("rip-ramp-special")
