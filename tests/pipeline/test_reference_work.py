"""The later steps' reference-only work, run ahead on a spare thread.

The dark step's deconvolved dark slope and the flat step's effective flat depend on
the reference files alone; with two or more threads, and the ramp steps in bands,
the pipeline computes them on a thread of their own while the ramp steps run. The
L2 must not depend on it, an error there must reach the caller, and no thread may
outlive the run.
"""

import threading

import numpy as np
import pytest

from romanimpreprocess import _warmup
from romanimpreprocess.dark_current.dark_current_step import DarkCurrentStep
from romanimpreprocess.flatfield import flatfield
from romanimpreprocess.flatfield.flatfield_step import FlatFieldStep
from tests.bands_check import no_thread_left, read_l2, run_simulated

ARRAYS = ("data", "dq", "err", "var_poisson", "var_rnoise", "data_withsky")


def _run(simulated_set, out, **parameters):
    run_simulated(simulated_set, out, **parameters)
    return read_l2(out, ARRAYS)


@pytest.fixture
def work_threads(monkeypatch):
    """``{step class name: thread name}`` of every reference work that ran."""
    threads = {}
    for cls in (DarkCurrentStep, FlatFieldStep):
        original = cls.reference_work

        def spied(self, model, _original=original, _name=cls.__name__):
            work = _original(self, model)

            def run():
                threads[_name] = threading.current_thread().name
                return work()

            return run

        monkeypatch.setattr(cls, "reference_work", spied)
    return threads


def test_ahead_or_in_the_step_gives_the_same_l2(
    simulated_set, tmp_path, monkeypatch, work_threads
):
    warm_ups = []
    monkeypatch.setattr(_warmup, "start", lambda: warm_ups.append(1))
    monkeypatch.setenv("RIP_THREADS", "1")
    in_step = _run(simulated_set, tmp_path / "in_step_cal.asdf")
    assert work_threads == {
        "DarkCurrentStep": "MainThread",
        "FlatFieldStep": "MainThread",
    }
    assert not warm_ups  # one thread per step: no idle core to start numba on
    work_threads.clear()
    monkeypatch.setenv("RIP_THREADS", "2")
    # band_rows=0: the whole cube is held, nothing runs beside it
    for band_rows, ahead_expected in ((37, True), (0, False)):
        ahead = _run(simulated_set, tmp_path / "ahead_cal.asdf", band_rows=band_rows)
        assert sorted(work_threads) == ["DarkCurrentStep", "FlatFieldStep"]
        names = set(work_threads.values())
        if ahead_expected:
            assert all(name.startswith("rip-references") for name in names), names
        else:
            assert names == {"MainThread"}
        work_threads.clear()
        for key, expected in in_step.items():
            if isinstance(expected, np.ndarray):
                assert np.array_equal(ahead[key], expected, equal_nan=True), key
            else:
                assert ahead[key] == expected, key
    assert len(warm_ups) == 2  # numba started beside the opening of each run
    assert no_thread_left("rip-references")


def test_numba_warm_up_runs_its_kernel_once_per_process(monkeypatch):
    values = np.zeros(64, np.float32)
    _warmup._touch(values)
    assert np.array_equal(values, np.ones(64, np.float32))
    started = []
    monkeypatch.setattr(_warmup, "_started", threading.Event())
    monkeypatch.setattr(_warmup.threading, "Thread", _FakeThread(started))
    _warmup.start()
    _warmup.start()
    assert started == ["rip-numba-warm-up"]


class _FakeThread:
    def __init__(self, started):
        self.started = started

    def __call__(self, target, name, daemon):
        assert daemon and target is _warmup._warm
        self.started.append(name)
        return self

    def start(self):
        pass


def test_an_error_in_the_work_ahead_reaches_the_caller(
    simulated_set, tmp_path, monkeypatch
):
    monkeypatch.setenv("RIP_THREADS", "2")
    cache = tmp_path / "products"  # empty: the flat is prepared, not mapped
    monkeypatch.setenv("RIP_PRODUCT_CACHE", str(cache))

    def broken(*args, **kwargs):
        raise ValueError("flat preparation failed")

    monkeypatch.setattr(flatfield, "prepare_flat", broken)
    out = tmp_path / "broken_cal.asdf"
    with pytest.raises(ValueError, match="flat preparation failed"):
        _run(simulated_set, out)
    assert not out.exists()
    assert no_thread_left("rip-references")
    assert not any(p.name.startswith("flatfield") for p in cache.iterdir())


def test_a_run_stopped_early_ends_the_work_ahead(simulated_set, tmp_path, monkeypatch):
    from romanimpreprocess.ramp_fitting import ramp_fit

    monkeypatch.setenv("RIP_THREADS", "2")

    def broken(*args, **kwargs):
        raise ValueError("ramp fit failed")

    monkeypatch.setattr(ramp_fit, "fit_ramps", broken)
    with pytest.raises(ValueError, match="ramp fit failed"):
        _run(simulated_set, tmp_path / "stopped_cal.asdf")
    assert no_thread_left("rip-references")
