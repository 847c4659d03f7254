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


# ------------------------------------------------------------- run_in_threads
def _record(calls):
    import threading
    import time

    def function(item):
        time.sleep(0.002)  # long enough for the helpers to take items too
        calls.append((item, threading.get_ident()))

    return function


def test_every_item_once_on_at_most_the_threads_given():
    import threading

    calls = []
    parallel.run_in_threads(_record(calls), range(40), threads=3)
    assert sorted(item for item, _ in calls) == list(range(40))
    threads = {ident for _, ident in calls}
    assert 1 < len(threads) <= 3
    assert threading.get_ident() in threads  # the caller takes items too


def test_the_helpers_are_kept_from_call_to_call():
    import threading

    first, second = [], []
    parallel.run_in_threads(_record(first), range(20), threads=2)
    existing = {thread.ident for thread in threading.enumerate()}
    parallel.run_in_threads(_record(second), range(20), threads=2)
    used = {ident for _, ident in second}
    assert len(used) == 2
    assert used <= existing  # no thread started for the second call
    names = {t.name for t in threading.enumerate() if t.ident in used}
    assert any(name.startswith("rip-helper") for name in names)


def test_all_items_run_and_the_first_failure_in_order_is_raised():
    done = []

    def function(item):
        if item in (7, 3):
            raise ValueError(f"item {item}")
        done.append(item)

    with pytest.raises(ValueError, match="item 3"):
        parallel.run_in_threads(function, range(12), threads=2)
    assert sorted(done) == [i for i in range(12) if i not in (3, 7)]


def test_a_call_from_a_helper_runs_inline():
    """Work that itself runs items in threads must not wait for its own pool."""
    import threading

    inner = []

    def outer(item):
        parallel.run_in_threads(
            lambda j: inner.append((item, j, threading.get_ident())), range(3), 2
        )

    parallel.run_in_threads(outer, range(4), threads=2)
    assert sorted((i, j) for i, j, _ in inner) == [
        (i, j) for i in range(4) for j in range(3)
    ]


def test_an_interrupt_reaches_the_caller_and_the_helpers_stay_usable():
    def function(item):
        if item == 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        parallel.run_in_threads(function, range(8), threads=2)
    calls = []
    parallel.run_in_threads(_record(calls), range(10), threads=2)
    assert sorted(item for item, _ in calls) == list(range(10))
