"""Threads of the steps: the BLAS limit of a run (romanimpreprocess.parallel)."""

import pytest

from romanimpreprocess import parallel

threadpoolctl = pytest.importorskip("threadpoolctl")


def _blas_threads():
    """Thread count of every BLAS library loaded in this process."""
    import numpy as np

    np.ones((2, 2)) @ np.ones((2, 2))  # numpy's BLAS is loaded
    counts = [
        info["num_threads"]
        for info in threadpoolctl.threadpool_info()
        if info["user_api"] == "blas"
    ]
    if not counts:
        pytest.skip("no BLAS library that threadpoolctl can see")
    return counts


@pytest.fixture
def two_blas_threads():
    """The BLAS libraries at two threads (what a 2-core machine starts with)."""
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        assert set(_blas_threads()) == {2}
        yield


def test_one_thread_inside_and_the_libraries_own_count_after(two_blas_threads):
    with parallel.blas_on_one_thread():
        assert set(_blas_threads()) == {1}
    assert set(_blas_threads()) == {2}


def test_overlapping_blocks_keep_the_limit_until_the_last_one_ends(two_blas_threads):
    """Two runs at once (threads of a host): the first to end must not lift it."""
    first, second = parallel.blas_on_one_thread(), parallel.blas_on_one_thread()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert set(_blas_threads()) == {1}
    second.__exit__(None, None, None)
    assert set(_blas_threads()) == {2}


def test_the_limit_is_lifted_when_the_block_fails(two_blas_threads):
    with pytest.raises(RuntimeError), parallel.blas_on_one_thread():
        raise RuntimeError("a step failed")
    assert set(_blas_threads()) == {2}


def test_a_step_runs_with_blas_on_one_thread(
    simulated_set, two_blas_threads, monkeypatch
):
    """The outermost step of a run, in any process, and the count back after it."""
    from romanimpreprocess.dq_init import DQInitStep

    seen = []
    process = DQInitStep.process

    def recording_process(self, *args):
        seen.append(set(_blas_threads()))
        return process(self, *args)

    monkeypatch.setattr(DQInitStep, "process", recording_process)
    DQInitStep.call(simulated_set.l1, override_mask=simulated_set.caldir["mask"])
    assert seen == [{1}]
    assert set(_blas_threads()) == {2}
